//! Database scenarios checked beyond their verdicts.

use super::load;
use sim::checker::{
    duplicate_effect::DUPLICATE_EFFECT, lost::LOST, partial::PARTIAL_TRANSACTION, phantom::PHANTOM,
};
use sim::verdict::Property;

#[test]
fn the_careless_1205_handling_loses_effects_that_retrying_the_whole_transaction_keeps() {
    let careless = load("scenarios/db/careless-1205-commits-partial-transaction.toml");
    let outcome = careless.run(1);
    assert!(!outcome.verdicts.get(Property::NoLoss).holds);
    assert!(outcome
        .verdicts
        .counters
        .get("note.consumer.committed_partial_after_1205")
        .is_some_and(|n| *n > 0));
    assert!(
        outcome
            .findings
            .get(LOST)
            .iter()
            .all(|a| a.detail.contains("delivered")),
        "lost after delivery"
    );

    let text = careless
        .scenario
        .text
        .replace("commit_after_timeout", "whole_transaction");
    let careful = scenarios::Loaded::parse("careful.toml", &text).unwrap();
    let outcome = careful.run(1);
    assert!(
        outcome.verdicts.get(Property::NoLoss).holds,
        "same schedule, whole-transaction retry"
    );
    assert!(
        outcome
            .verdicts
            .counters
            .get("note.db.lock_wait_timeout")
            .is_some_and(|n| *n > 0),
        "1205 still happened"
    );
}

#[test]
fn deadlocks_between_concurrent_transfers_are_real_and_every_effect_lands() {
    let outcome = load("scenarios/db/deadlocks-without-injection.toml").run(1);
    let deadlocks = outcome
        .verdicts
        .counters
        .get("note.db.deadlock")
        .copied()
        .unwrap_or(0);
    assert!(deadlocks >= 5, "{deadlocks} deadlocks");
    assert!(outcome.verdicts.get(Property::AtLeastOnce).holds);
    assert!(outcome.findings.get(PHANTOM).is_empty());
}

#[test]
fn a_retry_loop_past_msg_timeout_has_two_consumers_on_one_message_at_once() {
    use sim::history::EventKind;
    let loaded = load("scenarios/db/retry-outlives-msg-timeout-duplicates.toml");
    let outcome = loaded.run(loaded.scenario.run.seed);
    let events = outcome.history.events();
    // Some duplicated message was held by both consumers before either committed it.
    let overlapping = outcome.findings.get(DUPLICATE_EFFECT).iter().filter(|anomaly| {
        let first_effect = events
            .iter()
            .find(|e| matches!(&e.kind, EventKind::Effect { id, .. } if *id == anomaly.id))
            .map_or(0, |e| e.time.0);
        let consumers: std::collections::BTreeSet<&str> = events
            .iter()
            .filter(|e| e.time.0 < first_effect)
            .filter_map(|e| match &e.kind {
                EventKind::Deliver { id, consumer, .. } if *id == anomaly.id => Some(consumer.as_str()),
                _ => None,
            })
            .collect();
        consumers.len() == 2
    });
    assert!(
        overlapping.count() > 0,
        "no duplicated message was processed by two consumers at once"
    );
}

#[test]
fn only_the_light_transfers_starve_while_the_heavy_batches_win_every_deadlock() {
    let starved = load("scenarios/db/starved-deadlock-victim-dropped.toml");
    let outcome = starved.run(1);
    let lost: Vec<u64> = outcome.findings.get(LOST).iter().map(|a| a.id.0).collect();
    assert!(!lost.is_empty(), "some message was dropped");
    assert!(
        lost.iter().all(|id| id % 2 == 1),
        "every dropped message is a plain transfer (batches are even): {lost:?}"
    );

    // The same workload with every transaction of one weight: the even messages are plain
    // transfers too, and they starve like the rest. Weight is what protected the batches.
    let text = starved
        .scenario
        .text
        .replace("batch_every = 2", "batch_every = 0");
    let even = scenarios::Loaded::parse("even.toml", &text).unwrap().run(1);
    assert!(
        even.findings.get(LOST).iter().any(|a| a.id.0 % 2 == 0),
        "with equal weights, even messages are dropped too"
    );
}

#[test]
fn the_partial_transaction_checker_names_what_a_careless_commit_left_out() {
    let outcome = load("scenarios/db/careless-continue-after-1213-commits-inbox-alone.toml").run(1);
    assert!(!outcome.findings.get(PARTIAL_TRANSACTION).is_empty());
    for anomaly in outcome.findings.get(PARTIAL_TRANSACTION) {
        assert!(
            anomaly.detail.contains("committed inbox without debit, credit"),
            "{}",
            anomaly.detail
        );
    }
    // Each partial commit is also a lost effect: the inbox row makes redelivery skip it.
    let lost: Vec<_> = outcome.findings.get(LOST).iter().map(|a| a.id).collect();
    assert!(outcome
        .findings
        .get(PARTIAL_TRANSACTION)
        .iter()
        .all(|a| lost.contains(&a.id)));
}
