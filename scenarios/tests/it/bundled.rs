//! Every bundled scenario meets its expectations on its seed (1), and the go-channel ones
//! show what the reference predicts.

use super::{bundled, load};
use sim::checker::{lost::LOST, phantom::PHANTOM};
use sim::verdict::Property;

#[test]
fn every_bundled_scenario_meets_its_expectations() {
    let scenarios = bundled();
    assert!(
        scenarios.len() >= 9,
        "bundled scenarios went missing: {scenarios:?}"
    );
    let mut failures = Vec::new();
    for path in &scenarios {
        let loaded = load(path);
        assert!(
            !loaded.scenario.expect.properties.is_empty(),
            "{path}: a scenario must assert at least one verdict"
        );
        let outcome = loaded.run(loaded.scenario.run.seed);
        for line in loaded.unmet(&outcome) {
            failures.push(format!("{path}: {line}"));
        }
        // A bundled scenario's faults must reach its workload, or it tests nothing.
        if let Some(vacuous) = sim::vacuity::vacuity(&outcome.history) {
            failures.push(format!("{path}: {vacuous}"));
        }
    }
    assert!(
        failures.is_empty(),
        "unmet expectations:\n{}",
        failures.join("\n")
    );
}

#[test]
fn go_channel_kill_loses_exactly_what_was_buffered_or_in_the_handler() {
    let outcome = load("scenarios/go-channel/kill-loses-buffered.toml").run(1);
    let lost = outcome.findings.get(LOST);
    assert!(!lost.is_empty());
    let kill_us = 300_000;
    for anomaly in lost {
        // Acknowledged before the kill (the channel took it), never processed.
        assert!(anomaly.times[1].0 <= kill_us, "{anomaly}");
    }
    // The buffer held capacity (16) messages plus one in the handler.
    assert!(lost.len() <= 17 && lost.len() >= 16, "{} lost", lost.len());
    assert_eq!(
        outcome.verdicts.counters.get("publish.info"),
        Some(&1),
        "the blocked send"
    );
}

#[test]
fn go_channel_send_on_closed_exits_with_status_2_and_loses_the_buffer() {
    let outcome = load("scenarios/go-channel/send-on-closed-crashes.toml").run(1);
    let crash = outcome.verdicts.crash.clone().expect("a crash verdict");
    assert!(
        crash.starts_with("app exited with status 2: panic: send on closed channel"),
        "{crash}"
    );
    // The close found 15 values buffered (the consumer had one in its handler): all lost,
    // every one acknowledged before the stop, none after the restart.
    let stop_us = 200_000;
    let lost = outcome.findings.get(LOST);
    assert_eq!(lost.len(), 16, "{lost:?}");
    assert!(lost.iter().all(|a| a.times[1].0 <= stop_us), "{lost:?}");
    // The drain restarted the program as a new incarnation, which published the rest.
    assert!(outcome.verdicts.drained);
}

#[test]
fn go_channel_os_exit_loses_only_what_the_deferred_flush_would_have_written() {
    let exit = load("scenarios/go-channel/os-exit-skips-deferred-flush.toml").run(1);
    let crash = exit
        .verdicts
        .crash
        .clone()
        .expect("os.Exit(1) is a crash verdict");
    assert!(
        crash.starts_with("app exited with status 1: os.Exit(1)"),
        "{crash}"
    );
    let lost = exit.findings.get(LOST);
    // Each shutdown loses less than one writer's buffer (8), and both shutdowns lose some.
    assert!(!lost.is_empty() && lost.len() < 16, "{lost:?}");
    assert_eq!(exit.verdicts.counters.get("note.defer.flush_skipped"), Some(&2));
    let flushed = load("scenarios/go-channel/deferred-flush-on-return.toml").run(1);
    assert!(flushed.findings.get(LOST).is_empty());
    assert!(flushed.verdicts.crash.is_none());
}

#[test]
fn go_channel_careless_shutdown_phantoms_are_zero_values() {
    let outcome = load("scenarios/go-channel/careless-shutdown-phantom.toml").run(1);
    let phantoms = outcome.findings.get(PHANTOM);
    assert_eq!(phantoms.len(), 1);
    assert_eq!(phantoms[0].id, sim::MsgId::ZERO);
    assert_eq!(phantoms[0].kind, PHANTOM);
    // Only shutdown produces them: nothing acknowledged is lost, since the channel was empty.
    assert!(outcome.verdicts.get(Property::NoLoss).holds);
}

#[test]
fn the_same_scenario_without_its_kill_loses_nothing() {
    let mut loaded = load("scenarios/go-channel/kill-loses-buffered.toml");
    loaded.scenario.faults = sim::scenario::FaultPlan::None;
    let outcome = loaded.run(1);
    assert!(outcome.verdicts.get(Property::ExactlyOnce).holds);
    assert!(outcome.verdicts.drained);
}

/// Verdict summaries of every bundled scenario on seed 1, so a behaviour change is a
/// readable diff (`cargo insta review`).
#[test]
fn verdict_summaries() {
    let mut summary = String::new();
    for path in bundled() {
        let loaded = load(&path);
        let outcome = loaded.run(loaded.scenario.run.seed);
        let violated: Vec<String> = outcome
            .verdicts
            .properties
            .iter()
            .filter(|v| !v.holds)
            .map(|v| format!("{}({})", v.property, v.anomaly_count()))
            .collect();
        summary.push_str(&format!(
            "{path}\n  events {} drained {} promise {} violated: {}\n",
            outcome.history.len(),
            outcome.verdicts.drained,
            outcome.kept.name(),
            if violated.is_empty() {
                "none".to_string()
            } else {
                violated.join(" ")
            }
        ));
    }
    insta::assert_snapshot!(summary);
}

#[test]
fn a_run_that_does_not_drain_is_a_liveness_failure_naming_what_is_pending() {
    // A drain budget too short to publish everything after the fault phase.
    let mut loaded = load("scenarios/go-channel/fifo-no-faults.toml");
    loaded.scenario.run.fault_phase_ms = 50;
    loaded.scenario.run.drain_ms = 50;
    let outcome = loaded.run(1);
    assert!(!outcome.verdicts.drained);
    let unmet = loaded.unmet(&outcome);
    assert!(
        unmet
            .iter()
            .any(|l| l.starts_with("liveness:") && l.contains("not yet published")),
        "{unmet:?}"
    );
    // Acknowledged but unprocessed messages are `unseen`, not `lost`, in a run that did not drain.
    assert!(outcome.findings.get(LOST).is_empty());
}

#[test]
fn every_bundled_scenario_drains() {
    for path in bundled() {
        let loaded = load(&path);
        if !loaded.scenario.expect.drains {
            continue; // its point is a program that never finishes (a spinning receive loop)
        }
        let outcome = loaded.run(loaded.scenario.run.seed);
        assert!(
            outcome.verdicts.drained,
            "{path}: pending {:?}",
            outcome.verdicts.pending
        );
    }
}

#[test]
fn signals_a_coalesced_sigusr1_is_an_ok_publish_then_lost_and_eagain_is_a_fail() {
    let burst = load("scenarios/signals/standard-burst-coalesces.toml").run(1);
    let coalesced = burst
        .verdicts
        .counters
        .get("note.signal.coalesced")
        .copied()
        .unwrap_or(0);
    // Every coalesced send, and only those, is lost: sigqueue returned 0 for each.
    assert!(coalesced > 10, "{coalesced}");
    assert_eq!(burst.findings.get(LOST).len() as u64, coalesced);
    let limited = load("scenarios/signals/realtime-eagain-past-limit.toml").run(1);
    let eagain = limited
        .verdicts
        .counters
        .get("note.sigqueue.eagain")
        .copied()
        .unwrap_or(0);
    assert!(eagain > 0);
    assert_eq!(
        limited.verdicts.counters.get("publish.fail").copied(),
        Some(eagain)
    );
    assert!(limited.findings.get(LOST).is_empty());
}

#[test]
fn signals_sigterm_draining_first_loses_nothing_of_what_was_queued() {
    let mut loaded = load("scenarios/signals/sigterm-discards-pending.toml");
    let discarded = loaded.run(1);
    assert!(!discarded.findings.get(LOST).is_empty());
    loaded.scenario.text = loaded.scenario.text.replace(
        "rlimit_sigpending = 1000",
        "rlimit_sigpending = 1000\ndrain_on_sigterm = true",
    );
    let drained = loaded.run(1);
    assert!(
        drained.findings.get(LOST).is_empty(),
        "{:?}",
        drained.findings.get(LOST)
    );
    assert_eq!(drained.verdicts.counters.get("note.shutdown.drained"), Some(&1));
}
