//! Real Kafka clients against the real Kafka server (issues 10 and 12): kafka-python and
//! confluent-kafka (librdkafka) create topics, produce with acks=all and idempotence, and
//! read every record back, through `tests/kafka_clients/produce_consume.py`; then the server
//! restarts on the same log directory and new producers of both clients append to what is
//! there. A group of one consumer of each client shares a topic and commits, and new
//! consumers resume from the committed offsets after a restart (`group_consume.py`).
//!
//! Needs `python3` with `kafka-python` and `confluent-kafka` (`.ci/run` installs them). In CI
//! (`CI=true`, or `JETSAM_REQUIRE_KAFKA_CLIENTS` set) their absence fails the test;
//! elsewhere it says SKIPPED and passes.

use models::kafka::real::{run_cluster_killable, KafkaServer};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The longest the clients' script may run (it bounds each of its own waits at 30 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var_os("JETSAM_REQUIRE_KAFKA_CLIENTS").is_some()
}

/// Whether python3 can import both clients.
fn clients_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import kafka, confluent_kafka"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Running brokers: a thread with its own runtime, stopped when dropped.
struct Server {
    /// The brokers' addresses, as a client's bootstrap list (`host:port,host:port`).
    bootstrap: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Kills a broker by id, as `kill -9` would.
    kill: tokio::sync::mpsc::UnboundedSender<i32>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(log_dirs: &Path) -> Server {
        Server::start_cluster(log_dirs, 1, 1)
    }

    /// `brokers` brokers in one process, each with its own log directory under `log_dirs`
    /// (just `log_dirs` for one).
    fn start_cluster(log_dirs: &Path, brokers: usize, min_insync_replicas: usize) -> Server {
        let mut bound = Vec::new();
        for id in 1..=brokers {
            // Bound here, on a free port, so the port is known before the server runs.
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let server = KafkaServer {
                listen_address: listener.local_addr().unwrap(),
                advertised_address: None,
                log_dirs: if brokers == 1 {
                    log_dirs.to_path_buf()
                } else {
                    log_dirs.join(format!("broker-{id}"))
                },
                min_insync_replicas,
                num_partitions: 1,
            };
            bound.push((server, listener));
        }
        let bootstrap = bound
            .iter()
            .map(|(server, _)| server.listen_address.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (kill, kills) = tokio::sync::mpsc::unbounded_channel();
        // A test outside any simulation: the server runs on its own thread, as a real
        // server beside its clients (clippy.toml bans threads for simulations).
        #[allow(clippy::disallowed_methods)]
        let thread = std::thread::spawn(move || {
            let served = models::server::block_on(async move {
                let mut brokers = Vec::new();
                for (server, listener) in bound {
                    brokers.push((server, tokio::net::TcpListener::from_std(listener)?));
                }
                run_cluster_killable(brokers, kills, async move {
                    let _ = stopped.await;
                })
                .await
            });
            if let Err(error) = served {
                panic!("the Kafka server failed: {error:?}");
            }
        });
        Server {
            bootstrap,
            kill,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs the script to its end or kills it at `SCRIPT_TIMEOUT`; its output and whether it
/// succeeded.
fn run_script(script: &Path, bootstrap: &str, phase: &str) -> (bool, String) {
    let mut child = Command::new("python3")
        .arg(script)
        .arg(bootstrap)
        .arg(phase)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut waited = Duration::ZERO;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if waited >= SCRIPT_TIMEOUT {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
        waited += Duration::from_millis(100);
    };
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    match status {
        Some(status) => (status.success(), text),
        None => (false, format!("{text}\nkilled after {SCRIPT_TIMEOUT:?}")),
    }
}

/// Whether the clients are there to test with; without them, a failure in CI and a
/// skip elsewhere.
fn clients_or_skip() -> bool {
    if clients_installed() {
        return true;
    }
    assert!(
        !required(),
        "CI needs python3 with kafka-python and confluent-kafka \
         (pip install kafka-python==3.0.12 confluent-kafka==2.16.1, as .ci/run does)"
    );
    eprintln!("SKIPPED: python3 lacks kafka-python or confluent-kafka (CI installs them)");
    false
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kafka_clients/produce_consume.py")
}

/// Consumer groups (issue 12): a kafka-python and a confluent-kafka consumer of one group
/// share a 3-partition topic (each gets partitions of its own, between them they read it
/// all, and they commit); then the server restarts on the same log directory, its
/// coordinator loads the offsets from `__consumer_offsets`, and a new consumer of each
/// client resumes at the committed offsets, through `tests/kafka_clients/group_consume.py`.
#[test]
fn a_group_of_two_real_consumers_shares_a_topic_and_resumes_from_committed_offsets() {
    if !clients_or_skip() {
        return;
    }
    let log_dirs = std::env::temp_dir().join(format!("jetsam-kafka-group-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&log_dirs);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kafka_clients/group_consume.py");
    for phase in ["share", "resume"] {
        let server = Server::start(&log_dirs);
        let (ok, output) = run_script(&script, &server.bootstrap, phase);
        drop(server);
        eprintln!("{phase}:\n{output}");
        if !ok {
            let _ = std::fs::remove_dir_all(&log_dirs);
        }
        assert!(ok, "the real consumers failed ({phase}):\n{output}");
        assert!(output.contains("\nOK"), "{output}");
    }
    let _ = std::fs::remove_dir_all(&log_dirs);
}

#[test]
fn kafka_python_and_confluent_kafka_create_produce_and_read_back() {
    if !clients_or_skip() {
        return;
    }
    let log_dirs = std::env::temp_dir().join(format!("jetsam-kafka-real-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&log_dirs);
    let script = script();
    for phase in ["first", "after-restart"] {
        let server = Server::start(&log_dirs);
        let (ok, output) = run_script(&script, &server.bootstrap, phase);
        drop(server);
        eprintln!("{phase}:\n{output}");
        if !ok {
            let _ = std::fs::remove_dir_all(&log_dirs);
        }
        assert!(ok, "the real clients failed ({phase}):\n{output}");
        assert!(output.contains("\nOK"), "{output}");
    }
    let _ = std::fs::remove_dir_all(&log_dirs);
}

/// Three brokers with `min.insync.replicas=3`: an acknowledged acks=all produce is on all
/// three, so the followers fetched it from the leaders over TCP (Fetch with their replica
/// ids), and the high watermark moved with them.
#[test]
fn three_brokers_replicate_over_tcp_for_real_clients() {
    if !clients_or_skip() {
        return;
    }
    let log_dirs = std::env::temp_dir().join(format!("jetsam-kafka-cluster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&log_dirs);
    let server = Server::start_cluster(&log_dirs, 3, 3);
    let (ok, output) = run_script(&script(), &server.bootstrap, "cluster");
    drop(server);
    eprintln!("{output}");
    let segments = replica_segment_bytes(&log_dirs);
    let _ = std::fs::remove_dir_all(&log_dirs);
    assert!(ok, "the real clients failed against three brokers:\n{output}");
    assert!(output.contains("\nOK"), "{output}");
    // Each partition's first segment, on each broker: the same bytes on all three.
    for partition in 0..2 {
        let sizes: Vec<u64> = (1..=3).map(|broker| segments[&(broker, partition)]).collect();
        assert!(
            sizes[0] > 0 && sizes.iter().all(|s| *s == sizes[0]),
            "partition {partition}: {sizes:?}"
        );
    }
}

/// The size of `replicated-<partition>`'s first segment in each broker's log directory.
fn replica_segment_bytes(log_dirs: &Path) -> std::collections::BTreeMap<(u32, u32), u64> {
    let mut sizes = std::collections::BTreeMap::new();
    for broker in 1..=3 {
        for partition in 0..2 {
            let segment = log_dirs
                .join(format!("broker-{broker}"))
                .join(format!("replicated-{partition}"))
                .join("00000000000000000000.log");
            let bytes = std::fs::metadata(&segment).map_or(0, |m| m.len());
            sizes.insert((broker, partition), bytes);
        }
    }
    sizes
}

/// Three brokers with `min.insync.replicas=2`; broker 2, which leads one partition, is
/// killed between two rounds of produces. The clients must find the new leader once the
/// controller fences broker 2 (`broker.session.timeout.ms`, 9 s), and their idempotent
/// retries must not duplicate what timed out meanwhile: every record read exactly once.
/// (The fence takes about 9 s; the script allows its waits a generous 90 s here.)
#[test]
fn a_killed_broker_s_partitions_move_and_real_clients_lose_nothing() {
    if !clients_or_skip() {
        return;
    }
    let log_dirs = std::env::temp_dir().join(format!("jetsam-kafka-failover-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&log_dirs);
    let server = Server::start_cluster(&log_dirs, 3, 2);
    let mut outputs = String::new();
    for phase in ["before-kill", "after-kill"] {
        if phase == "after-kill" {
            server.kill.send(2).unwrap();
        }
        let (ok, output) = run_script(&script(), &server.bootstrap, phase);
        outputs.push_str(&format!("{phase}:\n{output}\n"));
        if !ok {
            break;
        }
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&log_dirs);
    eprintln!("{outputs}");
    assert_eq!(outputs.matches("\nOK").count(), 2, "{outputs}");
}

/// Each client's transactional producer (confluent-kafka, then kafka-python) commits, aborts
/// and commits again; its read_committed consumer reads only the committed records and its
/// read_uncommitted one reads all (reference §2.5). Then each sends a group's offsets to a
/// committed and to an aborted transaction: the group's committed offset is the first.
#[test]
fn transactional_producers_hide_aborted_records_from_read_committed_consumers() {
    if !clients_or_skip() {
        return;
    }
    let log_dirs = std::env::temp_dir().join(format!("jetsam-kafka-txn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&log_dirs);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kafka_clients/transactions.py");
    let server = Server::start(&log_dirs);
    let (ok, output) = run_script(&script, &server.bootstrap, "");
    drop(server);
    let _ = std::fs::remove_dir_all(&log_dirs);
    eprintln!("{output}");
    assert!(ok, "the transactional client failed:\n{output}");
    assert!(output.contains("\nOK"), "{output}");
}
