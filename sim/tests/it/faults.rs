use super::echo::Echo;
use sim::checker::Outcome;
use sim::checker::{lost::LOST, phantom::PHANTOM};
use sim::history::{EventKind, MsgId};
use sim::scenario::Scenario;
use sim::world::{run, schedule_for, RunOutcome};

fn scenario(faults: &str) -> Scenario {
    let text = format!("design = \"echo\"\n[run]\nfault_phase_ms = 1000\ndrain_ms = 2000\n{faults}");
    Scenario::parse("echo.toml", &text).unwrap()
}

fn run_echo(faults: &str, messages: u64) -> RunOutcome {
    let scenario = scenario(faults);
    let design = Echo::new(messages);
    let schedule = schedule_for(&scenario, &sim::Design::topology(&design), 1).unwrap();
    run(&scenario, &design, schedule, 1)
}

fn outcomes(run: &RunOutcome) -> Vec<(MsgId, Outcome, bool)> {
    let index = sim::checker::PublishIndex::build(&run.history);
    let applied: std::collections::BTreeSet<MsgId> = run
        .history
        .events()
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Effect { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    index
        .entries()
        .iter()
        .map(|p| (p.id, p.outcome, applied.contains(&p.id)))
        .collect()
}

#[test]
fn without_faults_every_publish_is_ok_and_applied_once() {
    let run = run_echo("", 50);
    assert!(run.verdicts.drained);
    for (id, outcome, applied) in outcomes(&run) {
        assert_eq!((outcome, applied), (Outcome::Ok, true), "{id}");
    }
    assert!(run.verdicts.get(sim::verdict::Property::ExactlyOnce).holds);
}

#[test]
fn lost_replies_make_publishes_info_that_were_applied_anyway() {
    let run = run_echo(
        "[[faults]]\nat_ms = 100\naction = \"lose_replies\"\nfrom = \"server\"\nto = \"client\"\nduration_ms = 60\n",
        50,
    );
    let ambiguous: Vec<_> = outcomes(&run)
        .into_iter()
        .filter(|(_, o, _)| *o == Outcome::Info)
        .collect();
    assert!(!ambiguous.is_empty());
    assert!(
        ambiguous.iter().any(|(_, _, applied)| *applied),
        "the request arrived and was applied; only the reply was lost: {ambiguous:?}"
    );
    assert_eq!(run.verdicts.counters.get("fault.lose_replies"), Some(&1));
    assert_eq!(run.verdicts.counters.get("fault.lose_replies_end"), Some(&1));
    // An info publish that was applied is neither lost nor a phantom.
    assert!(run.findings.get(PHANTOM).is_empty() && run.findings.get(LOST).is_empty());
}

#[test]
fn a_symmetric_partition_applies_nothing_while_it_lasts() {
    let run = run_echo(
        "[[faults]]\nat_ms = 100\naction = \"partition\"\na = [\"client\"]\nb = [\"server\"]\n[[faults]]\nat_ms = 300\naction = \"heal\"\n",
        100,
    );
    let effects_during: usize = run
        .history
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Effect { .. }) && e.time.0 > 102_000 && e.time.0 < 300_000)
        .count();
    assert_eq!(effects_during, 0);
    let outcomes = outcomes(&run);
    assert!(
        outcomes.iter().any(|(_, o, _)| *o != Outcome::Ok),
        "requests during the partition failed"
    );
    assert!(
        outcomes.iter().filter(|(_, o, _)| *o == Outcome::Ok).count() > 50,
        "and traffic resumed after heal"
    );
}

fn effect_times(run: &RunOutcome) -> Vec<u64> {
    run.history
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Effect { .. }))
        .map(|e| e.time.0)
        .collect()
}

#[test]
fn a_fault_after_the_last_message_is_vacuous_and_one_during_the_traffic_is_not() {
    // 50 messages every 5 ms are done by about 260 ms.
    let partition = |at: u64| {
        format!("[[faults]]\nat_ms = {at}\naction = \"partition\"\na = [\"client\"]\nb = [\"server\"]\n[[faults]]\nat_ms = {}\naction = \"heal\"\n", at + 50)
    };
    let late = run_echo(&partition(800), 50);
    let warning = sim::vacuity::vacuity(&late.history).expect("nothing was in flight at 800 ms");
    assert!(
        warning.contains("no fault overlapped a message in flight"),
        "{warning}"
    );
    let during = run_echo(&partition(100), 50);
    assert_eq!(sim::vacuity::vacuity(&during.history), None);
    assert_eq!(
        sim::vacuity::vacuity(&run_echo("", 50).history),
        None,
        "no fault, nothing to judge"
    );
}

#[test]
fn a_partition_holds_what_it_swallowed_and_delivers_it_after_the_heal() {
    // TCP retransmits: a request written into a partition is not lost, it arrives once the
    // partition heals, though its sender has long given up on it (info, then applied).
    let run = run_echo(
        "[[faults]]\nat_ms = 100\naction = \"partition\"\na = [\"client\"]\nb = [\"server\"]\n[[faults]]\nat_ms = 300\naction = \"heal\"\n",
        100,
    );
    let applied_at_heal = effect_times(&run)
        .iter()
        .filter(|t| (300_000..310_000).contains(*t))
        .count();
    assert!(applied_at_heal > 0, "what the partition held lands at the heal");
    let late_info_applied = outcomes(&run)
        .iter()
        .filter(|(_, o, a)| *o == Outcome::Info && *a)
        .count();
    assert!(
        late_info_applied > 0,
        "timed out at the client, applied at the server"
    );
}

#[test]
fn a_one_way_partition_holds_one_direction_and_lets_the_other_flow() {
    let run = run_echo(
        "[[faults]]\nat_ms = 100\naction = \"partition\"\na = [\"server\"]\nb = [\"client\"]\noneway = true\n[[faults]]\nat_ms = 300\naction = \"heal\"\n",
        100,
    );
    let during = effect_times(&run)
        .iter()
        .filter(|t| (110_000..290_000).contains(*t))
        .count();
    assert!(
        during > 0,
        "requests still reach the server while its replies cannot get out"
    );
    let info = outcomes(&run)
        .iter()
        .filter(|(_, o, _)| *o == Outcome::Info)
        .count();
    assert!(info > 0, "the replies were held past the client's timeout");
}

#[test]
fn a_pause_holds_the_network_and_delivers_late() {
    let run = run_echo(
        "[[faults]]\nat_ms = 100\naction = \"pause\"\nhost = \"server\"\n[[faults]]\nat_ms = 400\naction = \"resume\"\nhost = \"server\"\n",
        80,
    );
    let times: Vec<u64> = run
        .history
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Effect { .. }))
        .map(|e| e.time.0)
        .collect();
    assert!(
        times.iter().all(|t| *t < 101_000 || *t >= 400_000),
        "nothing applied while paused"
    );
    // Requests sent during the pause were held, not dropped: applied after resume though
    // their publishes had already timed out (info).
    let late_info_applied = outcomes(&run)
        .iter()
        .filter(|(_, o, a)| *o == Outcome::Info && *a)
        .count();
    assert!(late_info_applied > 0);
}

#[test]
fn latency_slows_every_round_trip() {
    let run = run_echo(
        "[[faults]]\nat_ms = 100\naction = \"latency\"\na = [\"client\"]\nb = [\"server\"]\nlatency_ms = 15\njitter_ms = 5\n[[faults]]\nat_ms = 400\naction = \"heal\"\n",
        60,
    );
    let index = sim::checker::PublishIndex::build(&run.history);
    let slow: Vec<u64> = index
        .entries()
        .iter()
        .filter(|p| p.invoked.0 > 110_000 && p.invoked.0 < 380_000 && p.outcome == Outcome::Ok)
        .map(|p| p.completed.unwrap().0 - p.invoked.0)
        .collect();
    assert!(!slow.is_empty());
    assert!(
        slow.iter().all(|rtt| *rtt >= 30_000),
        "two 15 ms hops at least: {slow:?}"
    );
    let fast: Vec<u64> = index
        .entries()
        .iter()
        .filter(|p| p.invoked.0 > 450_000 && p.outcome == Outcome::Ok)
        .map(|p| p.completed.unwrap().0 - p.invoked.0)
        .collect();
    assert!(
        fast.iter().all(|rtt| *rtt < 30_000),
        "heal resets latency: {fast:?}"
    );
}

#[test]
fn a_killed_server_restarts_and_the_client_reconnects() {
    let run = run_echo(
        "[[faults]]\nat_ms = 100\naction = \"kill\"\nhost = \"server\"\n[[faults]]\nat_ms = 200\naction = \"restart\"\nhost = \"server\"\n",
        100,
    );
    let outcomes = outcomes(&run);
    assert!(outcomes.iter().any(|(_, o, _)| *o != Outcome::Ok));
    let last = outcomes.last().unwrap();
    assert_eq!(
        (last.1, last.2),
        (Outcome::Ok, true),
        "the client is served again after the restart"
    );
}

#[test]
fn the_run_heals_everything_before_the_drain() {
    // Partition never healed by the schedule and a kill never restarted: the harness heals,
    // restarts and the run still drains.
    let run = run_echo(
        "[[faults]]\nat_ms = 900\naction = \"partition\"\nshape = \"halves\"\n[[faults]]\nat_ms = 950\naction = \"kill\"\nhost = \"server\"\n",
        250,
    );
    assert!(run.verdicts.drained, "{:?}", run.verdicts.pending);
    let restarts: Vec<_> = run
        .history
        .events()
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Fault { action, detail, .. } if action == "restart" && detail == "heal"))
        .collect();
    assert_eq!(restarts.len(), 1);
}

#[test]
fn a_panicking_model_is_a_crash_verdict_with_the_seed_not_a_harness_panic() {
    struct Panics;
    impl sim::Design for Panics {
        fn topology(&self) -> sim::fault::Topology {
            sim::fault::Topology::new(vec!["h".into()])
        }
        fn install<'a>(&'a self, sim: &mut turmoil::Sim<'a>, _env: &sim::Env) {
            sim.host("h", || async {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                panic!("invariant broken: in flight and queued at once");
            });
        }
        fn pending(&self, _env: &sim::Env) -> Option<String> {
            Some("never".into())
        }
    }
    let scenario = scenario("");
    let outcome = run(&scenario, &Panics, Vec::new(), 42);
    let crash = outcome.verdicts.crash.clone().expect("a crash verdict");
    assert!(
        crash.contains("invariant broken") && crash.contains("faults.rs"),
        "{crash}"
    );
    assert_eq!(outcome.seed, 42);
    assert!(!outcome.verdicts.unmet(&scenario.expect).is_empty());
}

fn first_info_reason(run: &RunOutcome) -> String {
    run.history
        .events()
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::PublishInfo { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .expect("an unanswered publish")
}

#[test]
fn a_killed_process_closes_its_connections_but_a_machine_without_power_goes_silent() {
    let killed = run_echo(
        "[[faults]]\nat_ms = 100\naction = \"kill\"\nhost = \"server\"\n[[faults]]\nat_ms = 300\naction = \"restart\"\nhost = \"server\"\n",
        100,
    );
    let reason = first_info_reason(&killed);
    assert!(
        reason.starts_with("connection error"),
        "the kernel closed the socket: {reason}"
    );

    let powered_off = run_echo(
        "[[faults]]\nat_ms = 100\naction = \"power_fail\"\nhost = \"server\"\n[[faults]]\nat_ms = 300\naction = \"restart\"\nhost = \"server\"\n",
        100,
    );
    let reason = first_info_reason(&powered_off);
    assert_eq!(
        reason, "timed out",
        "nothing came back from a machine without power"
    );
    // And it comes back: served again after the restart.
    let outcomes = outcomes(&powered_off);
    assert_eq!(outcomes.last().map(|o| (o.1, o.2)), Some((Outcome::Ok, true)));
}

#[test]
fn a_partition_that_outlives_a_power_failure_is_restored_with_the_host() {
    let run = run_echo(
        "[[faults]]\nat_ms = 50\naction = \"partition\"\na = [\"client\"]\nb = [\"server\"]\n\
         [[faults]]\nat_ms = 100\naction = \"power_fail\"\nhost = \"server\"\n\
         [[faults]]\nat_ms = 150\naction = \"restart\"\nhost = \"server\"\n\
         [[faults]]\nat_ms = 400\naction = \"heal\"\n",
        150,
    );
    let effects_while_partitioned = run
        .history
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Effect { .. }) && e.time.0 > 52_000 && e.time.0 < 400_000)
        .count();
    assert_eq!(
        effects_while_partitioned, 0,
        "the restart did not lift the scheduled partition"
    );
}

#[test]
fn a_connect_across_a_partition_waits_for_the_syn_retry_instead_of_being_refused() {
    // The client's first connect comes while the link is cut. turmoil alone refuses it at
    // once; the harness's connect retries the SYN after 1 s, as Linux does, and by then the
    // partition has healed, so the first publish goes through about a second late.
    let scenario = scenario(
        "[[faults]]\nat_ms = 0\naction = \"partition\"\na = [\"client\"]\nb = [\"server\"]\n\
         [[faults]]\nat_ms = 600\naction = \"heal\"\n",
    );
    let mut design = Echo::new(3);
    design.timeout = std::time::Duration::from_secs(3);
    let schedule = schedule_for(&scenario, &sim::Design::topology(&design), 1).unwrap();
    let run = run(&scenario, &design, schedule, 1);
    let first_ok = run
        .history
        .events()
        .iter()
        .find(|e| matches!(e.kind, EventKind::PublishOk { id, .. } if id == MsgId(1)))
        .map(|e| e.time.0)
        .expect("the first publish went through");
    assert!(
        (1_000_000..1_200_000).contains(&first_ok),
        "the SYN retried after 1 s: ok at {first_ok} us"
    );
    assert!(outcomes(&run)
        .iter()
        .all(|(_, o, applied)| *o == Outcome::Ok && *applied));
}

/// A pause is SIGSTOP: the paused client's reply timeout comes due during the pause but
/// fires only after `resume`, so nothing of the client's is recorded while it is stopped.
#[test]
fn a_paused_process_runs_none_of_its_timers_until_resumed() {
    let run = run_echo(
        "[[faults]]\nat_ms = 100\naction = \"pause\"\nhost = \"server\"\n\
         [[faults]]\nat_ms = 110\naction = \"pause\"\nhost = \"client\"\n\
         [[faults]]\nat_ms = 300\naction = \"resume\"\nhost = \"server\"\n\
         [[faults]]\nat_ms = 400\naction = \"resume\"\nhost = \"client\"\n",
        80,
    );
    let during: Vec<_> = run
        .history
        .events()
        .iter()
        .filter(|e| e.host == "client" && e.time.0 > 111_000 && e.time.0 < 400_000)
        .collect();
    assert!(during.is_empty(), "the paused client ran: {during:?}");
    // What came due during the pause (the reply timer, the reply held with the client's
    // links) runs at the resume itself; both are ready then, and the reply wins the race as
    // tokio's `timeout` polls its future before its timer.
    let resumed = run
        .history
        .events()
        .iter()
        .find(|e| e.host == "client" && e.time.0 >= 111_000);
    assert_eq!(resumed.map(|e| e.time.0), Some(400_000), "{resumed:?}");
}
