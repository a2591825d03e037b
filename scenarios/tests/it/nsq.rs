//! NSQ scenarios checked against the reference's timings and witnesses, not only verdicts.

use super::load;
use scenarios::explore::explore;
use scenarios::parse_expect_override;
use sim::checker::{duplicate_effect::DUPLICATE_EFFECT, lost::LOST};
use sim::history::{EventKind, MsgId};

fn deliveries(history: &sim::History, id: MsgId) -> Vec<(u64, u32, String)> {
    history
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Deliver {
                id: d,
                attempt,
                consumer,
                ..
            } if *d == id => Some((e.time.0, *attempt, consumer.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn msg_timeout_fires_at_most_a_queue_scan_late_and_the_message_goes_to_the_other_consumer() {
    let outcome = load("scenarios/nsq/duplicate-after-msg-timeout.toml").run(1);
    let events = outcome.history.events();
    let first_delivery = events
        .iter()
        .find(|e| matches!(e.kind, EventKind::Deliver { .. }))
        .expect("a delivery")
        .time
        .0;
    let first_timeout = events
        .iter()
        .find(|e| matches!(&e.kind, EventKind::Note { name } if name == "nsqd.msg_timeout"))
        .expect("a timeout")
        .time
        .0;
    // msg_timeout 1000 ms; the queue scan runs every 100 ms, so up to 100 ms late.
    let after_ms = (first_timeout - first_delivery) / 1000;
    assert!(
        (1000..=1100).contains(&after_ms),
        "timed out {after_ms} ms after delivery"
    );
    let duplicated = outcome
        .findings
        .get(DUPLICATE_EFFECT)
        .first()
        .expect("a duplicate effect")
        .id;
    let seen = deliveries(&outcome.history, duplicated);
    assert_eq!(seen[1].1, 2, "attempt 2");
    assert_ne!(seen[0].2, seen[1].2, "redelivered to the other consumer");
}

#[test]
fn a_disconnected_consumers_message_waits_the_whole_msg_timeout() {
    let outcome = load("scenarios/nsq/no-requeue-on-disconnect.toml").run(1);
    let kill_us = outcome
        .history
        .events()
        .iter()
        .find_map(|e| {
            matches!(&e.kind, EventKind::Fault { action, .. } if action == "kill").then_some(e.time.0)
        })
        .expect("the kill");
    let redelivered: Vec<(u64, u32, String)> = outcome
        .history
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Deliver {
                attempt, consumer, ..
            } if *attempt > 1 => Some((e.time.0, *attempt, consumer.clone())),
            _ => None,
        })
        .collect();
    assert!(!redelivered.is_empty());
    for (time, _, consumer) in &redelivered {
        assert!(
            *time >= kill_us + 4_600_000,
            "not requeued on disconnect: redelivered at {time}us, kill at {kill_us}us"
        );
        assert_eq!(consumer, "consumer2");
    }
}

#[test]
fn the_message_lost_on_kill_was_in_flight() {
    let outcome = load("scenarios/nsq/in-flight-lost-on-kill.toml").run(1);
    assert_eq!(
        outcome.findings.get(LOST).len(),
        1,
        "only the in-flight one: the disk queue kept the rest"
    );
    assert!(
        outcome.findings.get(LOST)[0].detail.contains("delivered 1 time"),
        "{}",
        outcome.findings.get(LOST)[0]
    );
}

#[test]
fn kill_with_memory_backlog_loses_only_what_nsqd_held_in_memory() {
    let outcome = load("scenarios/nsq/kill-with-memory-backlog.toml").run(1);
    let kill_us = 200_000;
    assert!(!outcome.findings.get(LOST).is_empty());
    for lost in outcome.findings.get(LOST) {
        assert!(lost.times[1].0 <= kill_us, "acknowledged before the kill: {lost}");
    }
    assert!(outcome.findings.get(DUPLICATE_EFFECT).is_empty());
}

#[test]
fn swarm_faults_find_nsqs_loss_and_duplicate_windows_on_their_own() {
    for claim in ["no-loss=holds", "at-most-once=holds"] {
        let mut loaded = load("scenarios/nsq/swarm-standard.toml");
        loaded.override_expectations(&[parse_expect_override(claim).unwrap()]);
        let found = explore(&loaded, &(0..300).collect::<Vec<u64>>(), 2, &|_| {}).first_failure;
        let failure = found.unwrap_or_else(|| panic!("explore finds a seed breaking {claim}"));
        // The replay shows the same thing.
        let replay = loaded.run(failure.seed);
        assert!(!loaded.unmet(&replay).is_empty());
    }
}

#[test]
fn nsq_never_delivers_a_message_nobody_published_whatever_the_swarm_draws() {
    let loaded = load("scenarios/nsq/swarm-standard.toml");
    let result = explore(&loaded, &(0..60).collect::<Vec<u64>>(), 2, &|_| {});
    assert_eq!(result.first_failure, None);
}

#[test]
fn an_nsqd_cut_off_from_every_lookupd_is_consumed_only_after_it_registers() {
    let outcome = load("scenarios/nsq/lookupd-partition-delays-discovery.toml").run(1);
    let from_nsqd2: Vec<u64> = outcome
        .history
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Deliver { node: Some(n), .. } if n == "nsqd2" => Some(e.time.0),
            _ => None,
        })
        .collect();
    assert_eq!(from_nsqd2.len(), 50, "producer2's whole backlog");
    assert!(
        from_nsqd2.iter().all(|t| *t >= 2_000_000),
        "nothing from nsqd2 before the heal"
    );
    assert_eq!(
        outcome.verdicts.counters.get("note.consumer.discovered_nsqd"),
        Some(&2)
    );
    assert!(outcome.verdicts.get(sim::verdict::Property::AtLeastOnce).holds);
}

#[test]
fn go_nsq_never_has_more_in_flight_than_max_in_flight_and_starved_nsqds_wait_for_redistribution() {
    use sim::history::EventKind;
    let outcome = load("scenarios/nsq/rdy-redistributed-over-more-nsqds-than-max-in-flight.toml").run(1);
    // nsqds' own in-flight gauges, summed: never above the consumer's max_in_flight of 1.
    let mut in_flight: std::collections::BTreeMap<String, i64> = Default::default();
    for event in outcome.history.events() {
        if let EventKind::Gauge { name, value } = &event.kind {
            if name.ends_with(" in_flight") {
                in_flight.insert(event.host.clone(), *value);
                let total: i64 = in_flight.values().sum();
                assert!(total <= 1, "{total} in flight at {}", event.time);
            }
        }
    }
    // Deliveries come nsqd by nsqd: the first from the second nsqd to be served waits for
    // a connection to sit idle for go-nsq's LowRdyIdleTimeout.
    let mut first_from: Vec<(String, u64)> = Vec::new();
    for event in outcome.history.events() {
        if let EventKind::Deliver { node: Some(nsqd), .. } = &event.kind {
            if !first_from.iter().any(|(n, _)| n == nsqd) {
                first_from.push((nsqd.clone(), event.time.0));
            }
        }
    }
    assert_eq!(
        first_from.len(),
        3,
        "every nsqd is drained in the end: {first_from:?}"
    );
    assert!(
        first_from[1].1 >= first_from[0].1 + 10_000_000,
        "the second nsqd waited for redistribution: {first_from:?}"
    );
}
