//! Faults on roles: static roles drawn from the seed and paired, dynamic roles asked of the
//! design when the fault fires, and what is recorded when a role names no host.

use sim::fault::Topology;
use sim::history::EventKind;
use sim::scenario::Scenario;
use sim::world::{run, schedule_for, RunOutcome};
use sim::{Design, Env};
use std::time::Duration;

const BROKERS: [&str; 3] = ["b1", "b2", "b3"];
const CONSUMERS: [&str; 2] = ["c1", "c2"];

/// Three brokers and two consumers that only stay alive. The dynamic role `leader` is the
/// first broker whose process runs, so it moves when the leader is killed; `nobody` never
/// resolves; `ghost` resolves to a host the design does not have (a broken model).
struct Cluster;

impl Design for Cluster {
    fn topology(&self) -> Topology {
        let hosts = BROKERS.iter().chain(&CONSUMERS).map(|h| h.to_string()).collect();
        Topology::new(hosts)
            .with_role("broker", BROKERS)
            .with_role("consumer", CONSUMERS)
            .with_dynamic_role("leader", "the first broker whose process runs")
            .with_dynamic_role("nobody", "never played")
            .with_dynamic_role("ghost", "a host the design does not have")
    }

    fn install<'a>(&'a self, sim: &mut turmoil::Sim<'a>, env: &Env) {
        for host in BROKERS.iter().chain(&CONSUMERS) {
            let env = env.clone();
            sim.host(*host, move || {
                let process = env.process(host);
                async move {
                    let _running = process.start();
                    loop {
                        process.sleep(Duration::from_millis(10)).await;
                    }
                }
            });
        }
    }

    fn pending(&self, _env: &Env) -> Option<String> {
        None
    }

    fn resolve_role(&self, role: &str, env: &Env) -> Option<String> {
        match role {
            "leader" => BROKERS
                .iter()
                .find(|b| env.process(b).is_running())
                .map(|b| b.to_string()),
            "ghost" => Some("b9".into()),
            _ => None,
        }
    }
}

fn scenario(faults: &str) -> Scenario {
    let text = format!("design = \"cluster\"\n[run]\nfault_phase_ms = 1000\ndrain_ms = 100\n{faults}");
    Scenario::parse("cluster.toml", &text).unwrap_or_else(|e| panic!("{e}"))
}

fn run_cluster(faults: &str, seed: u64) -> RunOutcome {
    let scenario = scenario(faults);
    let schedule = schedule_for(&scenario, &Cluster.topology(), seed).unwrap_or_else(|e| panic!("{e}"));
    run(&scenario, &Cluster, schedule, seed)
}

/// The fault events of the fault phase: (time ms, action, hosts, detail).
fn faults(outcome: &RunOutcome) -> Vec<(u64, String, Vec<String>, String)> {
    outcome
        .history
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Fault {
                action,
                hosts,
                detail,
            } if detail != "heal" => Some((
                e.time.0 / 1000,
                action.to_string(),
                hosts.clone(),
                detail.to_string(),
            )),
            _ => None,
        })
        .collect()
}

fn fault(at_ms: u64, action: &str, fields: &str) -> String {
    format!("[[faults]]\nat_ms = {at_ms}\naction = \"{action}\"\n{fields}\n")
}

#[test]
fn a_kill_by_role_kills_a_host_of_the_role_and_its_restart_brings_that_host_back() {
    let faults_text =
        fault(100, "kill", "role = \"consumer\"") + &fault(300, "restart", "role = \"consumer\"");
    let mut picked = std::collections::BTreeSet::new();
    for seed in 1..=12 {
        let outcome = run_cluster(&faults_text, seed);
        let events = faults(&outcome);
        assert_eq!(events.len(), 2, "seed {seed}: {events:?}");
        let (_, action, hosts, detail) = &events[0];
        assert_eq!(action, "kill");
        assert_eq!(hosts.len(), 1);
        let host = &hosts[0];
        assert!(CONSUMERS.contains(&host.as_str()), "seed {seed}: killed {host}");
        assert_eq!(detail, &format!("role consumer -> {host}"));
        assert_eq!(
            (&events[1].1, &events[1].2),
            (&"restart".to_string(), &vec![host.clone()]),
            "seed {seed}: the restart pairs with the kill"
        );
        // The same seed picks the same host.
        assert_eq!(faults(&run_cluster(&faults_text, seed)), events);
        picked.insert(host.clone());
    }
    assert_eq!(picked.len(), 2, "the seed decides which consumer: {picked:?}");
}

#[test]
fn a_dynamic_role_resolves_when_the_fault_fires_and_follows_the_leader() {
    // The leader is killed, so the next kill on `leader` finds the new one; the restarts
    // pair with the kills, latest first.
    let outcome = run_cluster(
        &(fault(100, "kill", "role = \"leader\"")
            + &fault(200, "kill", "role = \"leader\"")
            + &fault(300, "restart", "role = \"leader\"")
            + &fault(400, "pause", "role = \"leader\"")
            + &fault(500, "restart", "role = \"leader\"")
            + &fault(600, "resume", "role = \"leader\"")),
        1,
    );
    let seen: Vec<(u64, String, Vec<String>, String)> = faults(&outcome);
    let expected = [
        (100, "kill", "b1"),
        (200, "kill", "b2"),
        (300, "restart", "b2"),
        (400, "pause", "b2"),
        (500, "restart", "b1"),
        (600, "resume", "b2"),
    ];
    assert_eq!(seen.len(), expected.len(), "{seen:?}");
    for ((at, action, hosts, detail), (want_at, want_action, want_host)) in seen.iter().zip(expected) {
        assert_eq!(
            (*at, action.as_str(), hosts.as_slice(), detail.as_str()),
            (
                want_at,
                want_action,
                &[want_host.to_string()][..],
                format!("role leader -> {want_host}").as_str()
            ),
        );
    }
}

#[test]
fn a_role_that_names_no_host_now_applies_nothing_and_says_so() {
    let outcome = run_cluster(
        &(fault(100, "kill", "role = \"nobody\"") + &fault(200, "restart", "role = \"consumer\"")),
        1,
    );
    assert_eq!(
        faults(&outcome),
        vec![
            (
                100,
                "unresolved".to_string(),
                vec![],
                "kill role nobody: no host holds it now; nothing applied".to_string()
            ),
            (
                200,
                "unresolved".to_string(),
                vec![],
                "restart role consumer: no earlier fault on this role to pair with; nothing applied"
                    .to_string()
            ),
        ]
    );
    assert!(outcome.verdicts.crash.is_none());
    assert_eq!(
        outcome.stats.faults_applied, 0,
        "recorded, but nothing was applied"
    );
}

#[test]
fn a_dynamic_role_resolved_to_a_host_the_design_lacks_is_a_crash_verdict() {
    let outcome = run_cluster(&fault(100, "kill", "role = \"ghost\""), 1);
    let crash = outcome.verdicts.crash.expect("a crash verdict");
    assert!(crash.contains("role `ghost` to `b9`"), "{crash}");
}

#[test]
fn network_faults_by_role_isolate_and_lose_replies_around_the_role_host() {
    let outcome = run_cluster(
        &(fault(100, "partition", "shape = \"isolate\"\nrole = \"leader\"")
            + &fault(150, "heal", "")
            + &fault(
                200,
                "lose_replies",
                "from_role = \"broker\"\nto_role = \"consumer\"\nduration_ms = 50",
            )),
        3,
    );
    let seen = faults(&outcome);
    assert_eq!(seen[0].1, "partition");
    assert_eq!(
        seen[0].2,
        ["b1", "b2", "b3", "c1", "c2"].map(String::from),
        "b1 first: isolated"
    );
    assert_eq!(seen[0].3, "role leader -> b1; b1 <-/-> b2,b3,c1,c2");
    let (_, action, hosts, detail) = &seen[2];
    assert_eq!(action, "lose_replies");
    assert!(
        BROKERS.contains(&hosts[0].as_str()) && CONSUMERS.contains(&hosts[1].as_str()),
        "{hosts:?}"
    );
    assert!(
        detail.starts_with(&format!(
            "role broker -> {}, role consumer -> {}; ",
            hosts[0], hosts[1]
        )),
        "{detail}"
    );
}

#[test]
fn a_swarm_restricted_to_a_role_only_hits_its_hosts() {
    let text = "design = \"cluster\"\n[run]\nfault_phase_ms = 3000\n[swarm]\nroles = [\"consumer\"]\ninterval_ms = [20, 100]\n";
    let scenario = Scenario::parse("swarm.toml", text).unwrap();
    let mut hit = std::collections::BTreeSet::new();
    for seed in 0..100 {
        for fault in schedule_for(&scenario, &Cluster.topology(), seed).unwrap() {
            use sim::fault::FaultAction::*;
            let host = match &fault.action {
                Kill { host }
                | PowerFail { host, .. }
                | Restart { host }
                | Pause { host }
                | Resume { host }
                | Stop { host } => host,
                LoseReplies { from, .. } => from,
                Latency { a, .. } => &a[0],
                Partition { .. } | Heal => continue,
            };
            assert!(CONSUMERS.contains(&host.as_str()), "seed {seed}: {fault:?}");
            hit.insert(host.clone());
        }
    }
    assert_eq!(hit.len(), 2, "both consumers are drawn: {hit:?}");
}

#[test]
fn unknown_roles_are_one_line_errors_naming_the_known_roles() {
    let topology = Cluster.topology();
    let err = scenario(&fault(100, "kill", "role = \"lead\""))
        .schedule(&topology)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cluster.toml:5: faults[0]: unknown role `lead`; this design's roles are: broker, consumer, ghost, leader, nobody"
    );
    let err = scenario(&fault(100, "kill", "role = \"leader\"\nhost = \"b1\""))
        .schedule(&topology)
        .unwrap_err();
    assert!(err.message.contains("give `host` or `role`, not both"), "{err}");
    let err = scenario(&fault(100, "partition", "shape = \"halves\"\nrole = \"broker\""))
        .schedule(&topology)
        .unwrap_err();
    assert!(
        err.message.contains("shape `halves` does not take `role`"),
        "{err}"
    );

    let swarm = |roles: &str| {
        let text = format!("design = \"cluster\"\n\n[swarm]\nactions = [\"kill\"]\nroles = {roles}\n");
        Scenario::parse("swarm.toml", &text).and_then(|s| s.schedule(&topology))
    };
    let err = swarm("[\"consumer\", \"nsqd\"]").unwrap_err();
    assert_eq!(err.line, Some(5), "{err}");
    assert!(
        err.to_string()
            .contains("swarm.roles: unknown role `nsqd`; this design's roles are: broker"),
        "{err}"
    );
    let err = swarm("[\"leader\"]").unwrap_err();
    assert!(err.message.contains("`leader` is a dynamic role"), "{err}");
    assert!(swarm("[]").unwrap_err().message.contains("names no role"));
    assert!(swarm("[\"broker\"]").is_ok());
}
