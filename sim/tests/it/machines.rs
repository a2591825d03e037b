//! Machines and processes (issue 14): `colocate` puts `server` and `local` on one machine,
//! `remote` on its own. Every process records a `beat` note every 20 ms while it runs; the
//! two clients ping the server (`local` over loopback, `remote` over the network) and record
//! `ok` for each reply. Kill, pause and restart act on one process; power_fail and partitions
//! on the machine, and no partition cuts the loopback.

use sim::fault::Topology;
use sim::history::{Event, EventKind};
use sim::scenario::Scenario;
use sim::world::{run, schedule_for, RunOutcome};
use sim::{Design, Env};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use turmoil::net::TcpListener;

const PORT: u16 = 7100;
const BEAT: Duration = Duration::from_millis(20);
const PING_TIMEOUT: Duration = Duration::from_millis(50);

struct Trio;

impl Design for Trio {
    fn topology(&self) -> Topology {
        Topology::new(vec!["server".into(), "local".into(), "remote".into()])
    }

    fn install<'a>(&'a self, sim: &mut turmoil::Sim<'a>, env: &Env) {
        let server_env = env.clone();
        env.process("server")
            .install(sim, move || server(server_env.clone()));
        for name in ["local", "remote"] {
            let env_for = env.clone();
            env.process(name)
                .install(sim, move || pinger(env_for.clone(), name));
        }
    }

    fn pending(&self, _env: &Env) -> Option<String> {
        None
    }
}

async fn beat(env: Env, name: &'static str) {
    let process = env.process(name);
    loop {
        env.note(name, "beat");
        process.sleep(BEAT).await;
    }
}

async fn server(env: Env) -> turmoil::Result {
    let process = env.process("server");
    let _running = process.start();
    tokio::task::spawn_local(beat(env.clone(), "server"));
    let listener = TcpListener::bind(("0.0.0.0", PORT)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::task::spawn_local(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(_)) = lines.next_line().await {
                if write.write_all(b"ok\n").await.is_err() {
                    return;
                }
            }
        });
    }
}

type Connection = (
    BufReader<turmoil::net::tcp::OwnedReadHalf>,
    turmoil::net::tcp::OwnedWriteHalf,
);

async fn pinger(env: Env, name: &'static str) -> turmoil::Result {
    let process = env.process(name);
    let _running = process.start();
    tokio::task::spawn_local(beat(env.clone(), name));
    let mut connection: Option<Connection> = None;
    loop {
        process.sleep(Duration::from_millis(10)).await;
        if connection.is_none() {
            if let Ok(Ok(stream)) =
                tokio::time::timeout(PING_TIMEOUT, sim::connect(&env, name, "server", PORT)).await
            {
                let (read, write) = stream.into_split();
                connection = Some((BufReader::new(read), write));
            } else {
                continue;
            }
        }
        let (read, write) = connection.as_mut().expect("connected above");
        let exchange = async {
            write.write_all(b"ping\n").await?;
            let mut reply = String::new();
            read.read_line(&mut reply).await?;
            Ok::<_, std::io::Error>(!reply.is_empty())
        };
        match tokio::time::timeout(PING_TIMEOUT, exchange).await {
            Ok(Ok(true)) => env.note(name, "ok"),
            _ => connection = None,
        }
    }
}

fn scenario(colocate: &str, faults: &str) -> Result<Scenario, String> {
    let text =
        format!("design = \"trio\"\n[run]\nfault_phase_ms = 2000\ndrain_ms = 100\n{colocate}\n{faults}");
    let scenario = Scenario::parse("trio.toml", &text).map_err(|e| e.to_string())?;
    scenario.schedule(&Trio.topology()).map_err(|e| e.to_string())?;
    Ok(scenario)
}

const COLOCATED: &str = "colocate = [[\"server\", \"local\"]]";

fn run_trio(colocate: &str, faults: &str, seed: u64) -> RunOutcome {
    let scenario = scenario(colocate, faults).unwrap_or_else(|e| panic!("{e}"));
    let schedule = schedule_for(&scenario, &Trio.topology(), seed).unwrap();
    run(&scenario, &Trio, schedule, seed)
}

/// How many `note` events named `note` `host` recorded in (from_ms, to_ms).
fn notes(run: &RunOutcome, host: &str, note: &str, from_ms: u64, to_ms: u64) -> usize {
    run.history
        .events()
        .iter()
        .filter(|e| e.host == host && e.time.0 > from_ms * 1000 && e.time.0 < to_ms * 1000)
        .filter(|e| matches!(&e.kind, EventKind::Note { name, .. } if name == note))
        .count()
}

fn faults(run: &RunOutcome, action: &str) -> Vec<Event> {
    run.history
        .events()
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Fault { action: a, .. } if a == action))
        .cloned()
        .collect()
}

#[test]
fn killing_one_process_leaves_the_other_on_its_machine_running() {
    let run = run_trio(
        COLOCATED,
        "[[faults]]\nat_ms = 500\naction = \"kill\"\nhost = \"local\"\n[[faults]]\nat_ms = 1000\naction = \"restart\"\nhost = \"local\"\n",
        1,
    );
    assert!(
        notes(&run, "local", "beat", 0, 500) > 20,
        "local ran before the kill"
    );
    assert_eq!(
        notes(&run, "local", "beat", 502, 1000),
        0,
        "the killed process ran"
    );
    assert!(
        notes(&run, "server", "beat", 502, 1000) > 20,
        "its machine mate stopped with it"
    );
    assert!(
        notes(&run, "remote", "ok", 502, 1000) > 20,
        "the server stopped answering"
    );
    assert!(
        notes(&run, "local", "beat", 1001, 2000) > 20,
        "the restart did not start it"
    );
    assert!(
        notes(&run, "local", "ok", 1001, 2000) > 20,
        "no loopback after the restart"
    );
}

#[test]
fn a_power_failure_takes_every_process_on_the_machine() {
    let run = run_trio(
        COLOCATED,
        "[[faults]]\nat_ms = 500\naction = \"power_fail\"\nhost = \"server\"\n[[faults]]\nat_ms = 1000\naction = \"restart\"\nhost = \"server\"\n",
        1,
    );
    for host in ["server", "local"] {
        assert!(notes(&run, host, "beat", 0, 500) > 20, "{host} ran before");
        assert_eq!(
            notes(&run, host, "beat", 502, 1000),
            0,
            "{host} ran without power"
        );
        assert!(notes(&run, host, "beat", 1001, 2000) > 20, "{host} did not boot");
    }
    assert!(
        notes(&run, "remote", "beat", 502, 1000) > 20,
        "another machine lost power"
    );
    let power = faults(&run, "power_fail");
    let EventKind::Fault { hosts, detail, .. } = &power[0].kind else {
        unreachable!()
    };
    assert_eq!(hosts, &["server".to_string(), "local".to_string()]);
    assert!(detail.contains("machine m-server"), "{detail}");
    let restart = faults(&run, "restart");
    let EventKind::Fault { hosts, .. } = &restart[0].kind else {
        unreachable!()
    };
    assert_eq!(
        hosts,
        &["server".to_string(), "local".to_string()],
        "the boot starts both"
    );
}

#[test]
fn a_partition_cuts_the_machine_but_not_its_loopback() {
    // Naming `local` cuts its machine, which `server` shares: `remote` loses the server too.
    let run = run_trio(
        COLOCATED,
        "[[faults]]\nat_ms = 300\naction = \"partition\"\na = [\"remote\"]\nb = [\"local\"]\n[[faults]]\nat_ms = 1000\naction = \"heal\"\n",
        1,
    );
    assert!(notes(&run, "remote", "ok", 0, 300) > 10);
    assert_eq!(
        notes(&run, "remote", "ok", 302, 1000),
        0,
        "the partition let remote through"
    );
    assert!(
        notes(&run, "local", "ok", 302, 1000) > 20,
        "the partition cut the loopback"
    );
    assert!(
        notes(&run, "remote", "ok", 1100, 2000) > 10,
        "remote never came back"
    );
    let partition = faults(&run, "partition");
    let EventKind::Fault { detail, .. } = &partition[0].kind else {
        unreachable!()
    };
    assert!(detail.contains("local (on machine m-server)"), "{detail}");
}

#[test]
fn pausing_one_process_stops_only_it() {
    let run = run_trio(
        COLOCATED,
        "[[faults]]\nat_ms = 500\naction = \"pause\"\nhost = \"server\"\n[[faults]]\nat_ms = 1000\naction = \"resume\"\nhost = \"server\"\n",
        1,
    );
    assert_eq!(
        notes(&run, "server", "beat", 502, 1000),
        0,
        "the paused process ran"
    );
    assert!(
        notes(&run, "local", "beat", 502, 1000) > 20,
        "its machine mate paused too"
    );
    assert!(
        notes(&run, "local", "ok", 1001, 2000) > 20,
        "the server never answered again"
    );
}

#[test]
fn without_colocation_the_same_faults_stay_per_host() {
    // The control for the tests above: alone on its machine, a partition from `remote` to
    // `local` leaves `remote`'s pings to the server alone.
    let run = run_trio(
        "",
        "[[faults]]\nat_ms = 300\naction = \"partition\"\na = [\"remote\"]\nb = [\"local\"]\n[[faults]]\nat_ms = 1000\naction = \"heal\"\n",
        1,
    );
    assert!(notes(&run, "remote", "ok", 302, 1000) > 20);
}

#[test]
fn a_colocated_run_replays_bit_for_bit() {
    let swarm = "[swarm]\nactions = [\"kill\", \"power_fail\", \"pause\", \"partition\", \"stop\"]\ninterval_ms = [50, 300]\nduration_ms = [50, 400]\n";
    for seed in 1..4 {
        let first = run_trio(COLOCATED, swarm, seed);
        let second = run_trio(COLOCATED, swarm, seed);
        assert!(first.stats.faults_applied > 0);
        assert_eq!(first.history.hash(), second.history.hash(), "seed {seed}");
    }
}

#[test]
fn colocate_names_are_checked() {
    let unknown = scenario("colocate = [[\"server\", \"nobody\"]]", "").unwrap_err();
    assert!(
        unknown.contains("unknown process `nobody`; processes are: server, local, remote"),
        "{unknown}"
    );
    let twice = scenario(
        "colocate = [[\"server\", \"local\"], [\"local\", \"remote\"]]",
        "",
    )
    .unwrap_err();
    assert!(
        twice.contains("`local` is already placed by colocate[0]"),
        "{twice}"
    );
    assert!(twice.starts_with("trio.toml:5:"), "{twice}");
}
