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
            } if *d == id => Some((e.time.0, *attempt, consumer.to_string())),
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
        .find(|e| matches!(&e.kind, EventKind::Note { name, .. } if name == "nsqd.msg_timeout"))
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
            } if *attempt > 1 => Some((e.time.0, *attempt, consumer.to_string())),
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
                in_flight.insert(event.host.to_string(), *value);
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
                first_from.push((nsqd.to_string(), event.time.0));
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

/// The fault names a role; the history says which host it resolved to, and the messages that
/// come back after msg_timeout are the ones that host had in flight when it died.
#[test]
fn a_kill_by_role_hits_one_consumer_and_its_in_flight_messages_come_back() {
    let outcome = load("scenarios/nsq/consumer-killed-by-role-redelivers-after-msg-timeout.toml").run(1);
    let events = outcome.history.events();
    let (kill_us, victim) = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Fault {
                action,
                hosts,
                detail,
            } if action == "kill" => {
                assert!(detail.starts_with("role consumer -> "), "{detail}");
                Some((e.time.0, hosts[0].clone()))
            }
            _ => None,
        })
        .expect("the kill fired");
    assert!(victim.starts_with("consumer"), "{victim}");
    let restarted = events.iter().any(|e| {
        matches!(&e.kind, EventKind::Fault { action, hosts, .. } if action == "restart" && hosts[0] == victim)
    });
    assert!(
        restarted,
        "the restart by role pairs with the host the kill picked"
    );
    // A message the victim held when it died comes back only after nsqd's msg_timeout (2 s),
    // never on disconnect. Its first delivery may never have been recorded: the victim can die
    // with it still queued for a busy handler.
    let redeliveries: Vec<(u64, MsgId)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Deliver { id, attempt, .. } if *attempt > 1 => Some((e.time.0, *id)),
            _ => None,
        })
        .collect();
    assert!(!redeliveries.is_empty());
    for (at_us, id) in redeliveries {
        assert!(
            at_us >= kill_us + 1_900_000,
            "{id} came back at {at_us}us, before msg_timeout"
        );
        for (time, _, consumer) in deliveries(&outcome.history, id) {
            if time < kill_us {
                assert_eq!(
                    consumer, victim,
                    "{id} was with {consumer}, not the killed consumer"
                );
            }
        }
    }
}

/// `[swarm] roles` keeps every drawn fault on hosts of those roles, seed after seed.
#[test]
fn a_swarm_restricted_to_nsqds_only_hits_nsqds() {
    let path = super::root().join("scenarios/nsq/swarm-standard.toml");
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("[swarm]\n", "[swarm]\nroles = [\"nsqd\"]\n");
    let loaded = scenarios::Loaded::parse("swarm-nsqd.toml", &text).unwrap();
    let mut process_faults = 0;
    for seed in 1..20 {
        let design = models::build(&loaded.scenario).unwrap();
        let schedule = sim::schedule_for(&loaded.scenario, &design.topology(), seed).unwrap();
        for fault in &schedule {
            use sim::fault::FaultAction as F;
            match &fault.action {
                F::Kill { host } | F::PowerFail { host, .. } | F::Pause { host } | F::Stop { host } => {
                    assert!(host.starts_with("nsqd"), "seed {seed}: {:?}", fault.action);
                    process_faults += 1;
                }
                _ => {}
            }
        }
    }
    assert!(process_faults > 0, "the draw had process faults to check");
}

fn inline(name: &str, config: &str, workload: &str) -> scenarios::Loaded {
    let text = format!(
        "name = \"{name}\"\ndesign = \"nsq\"\n[config]\n{config}\n[workload]\n{workload}\n[run]\nfault_phase_ms = 500\n"
    );
    scenarios::Loaded::parse("inline.toml", &text).unwrap_or_else(|e| panic!("{e}"))
}

fn attempts_of(history: &sim::History, id: MsgId) -> Vec<u32> {
    deliveries(history, id)
        .into_iter()
        .map(|(_, attempt, _)| attempt)
        .collect()
}

#[test]
fn a_scheduled_handler_failure_fails_exactly_the_listed_attempts() {
    let loaded = inline(
        "scheduled failures",
        "fail_messages = [{ id = 2, attempts = [1, 2] }]\nrequeue_delay_ms = 10\nbackoff = false",
        "messages = 4\npublish_interval_ms = 1",
    );
    let outcome = loaded.run(1);
    assert_eq!(attempts_of(&outcome.history, MsgId(2)), vec![1, 2, 3]);
    for id in [1, 3, 4] {
        assert_eq!(attempts_of(&outcome.history, MsgId(id)), vec![1], "message {id}");
    }
    assert_eq!(
        outcome.verdicts.counters.get("note.consumer.handler_error"),
        Some(&2)
    );
}

#[test]
fn a_consumer_that_joins_late_gets_nothing_before_it_starts() {
    let loaded = inline(
        "late consumer",
        "consumers = 2\nconsumer_start_ms = [0, 300]",
        "messages = 40\npublish_interval_ms = 20",
    );
    let outcome = loaded.run(1);
    let late: Vec<u64> = outcome
        .history
        .events()
        .iter()
        .filter(|e| e.host == "consumer2" && matches!(e.kind, EventKind::Deliver { .. }))
        .map(|e| e.time.0)
        .collect();
    assert!(!late.is_empty(), "consumer2 took part once it joined");
    assert!(late.iter().all(|t| *t >= 300_000), "{late:?}");
    let early = outcome
        .history
        .events()
        .iter()
        .filter(|e| {
            e.host == "consumer1" && e.time.0 < 300_000 && matches!(e.kind, EventKind::Deliver { .. })
        })
        .count();
    assert!(early > 5, "consumer1 had every message before 300 ms: {early}");
    assert_eq!(
        outcome.verdicts.counters.get("note.consumer.joined_late"),
        Some(&1)
    );
}

#[test]
fn deduplicating_by_message_id_skips_the_redelivery_after_msg_timeout() {
    let config = "processing_ms = 1500\nmsg_timeout_ms = 1000";
    let workload = "messages = 4\npublish_interval_ms = 1";
    let plain = inline("plain", config, workload).run(1);
    assert!(
        !plain.findings.get(DUPLICATE_EFFECT).is_empty(),
        "without dedup the redelivery is applied again"
    );
    let deduped = inline("dedup", &format!("{config}\ndedupe_message_ids = true"), workload).run(1);
    assert!(deduped.findings.get(DUPLICATE_EFFECT).is_empty());
    assert!(deduped.findings.get(LOST).is_empty());
    assert!(deduped
        .verdicts
        .counters
        .get("note.consumer.deduplicated")
        .is_some_and(|n| *n > 0));
}

/// go-nsq's incomingMessages is unbuffered: with the only handler busy for longer than two
/// heartbeats, the connection's read loop waits with a message in hand, answers no
/// heartbeat, and nsqd closes the connection at its read deadline (2 s); the consumer sees
/// it when the handler takes the message at 3 s and the loop reads again. (With an
/// unbounded queue the read loop kept answering heartbeats and the connection lived.)
#[test]
fn a_read_loop_blocked_on_busy_handlers_misses_heartbeats_and_loses_its_connection() {
    let loaded = inline(
        "busy handlers",
        "max_in_flight = 2\nprocessing_ms = 3000\nheartbeat_interval_ms = 1000\nbackoff = false",
        "messages = 3\npublish_interval_ms = 1",
    );
    let outcome = loaded.run(1);
    let lost_at = outcome.history.events().iter().find_map(|e| {
        matches!(&e.kind, EventKind::Note { name, .. } if name == "consumer.connection_lost")
            .then_some(e.time.0)
    });
    assert!(lost_at.is_some_and(|t| t < 3_100_000), "{lost_at:?}");
}

/// An `#ephemeral` channel drops what overflows its memory queue (nsqd's dummy backend); the
/// drop is noted, so the loss falls in the documented window instead of breaking the promise.
#[test]
fn an_ephemeral_channels_overflow_is_a_documented_loss() {
    let loaded = inline(
        "ephemeral channel overflow",
        "channel = \"billing#ephemeral\"\nprocessing_ms = 50\n[config.nsqd]\nmem_queue_size = 2",
        "messages = 20\npublish_interval_ms = 1",
    );
    let outcome = loaded.run(1);
    assert!(!outcome.findings.get(LOST).is_empty(), "the overflow was lost");
    assert!(outcome
        .verdicts
        .counters
        .get("note.nsqd.ephemeral_channel_overflow_dropped")
        .is_some_and(|n| *n > 0));
    assert_eq!(outcome.kept.name(), "outside", "{:?}", outcome.kept);
}

fn publish_times(history: &sim::History) -> std::collections::BTreeMap<MsgId, u64> {
    history
        .events()
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Publish { id, .. } => Some((id, e.time.0)),
            _ => None,
        })
        .collect()
}

/// DPUB defers a message only while it is in the topic's memory: with no channel yet, the
/// topic holds mem_queue_size messages and the rest spill to its disk queue without their
/// deferral (nsqd topic.go), so they reach the consumer long before the deferral ends.
#[test]
fn a_deferred_message_that_spills_to_the_topics_disk_queue_loses_its_deferral() {
    let loaded = inline(
        "dpub spill",
        "defer_fraction = 1.0\ndefer_ms = 2000\nconsumer_start_ms = [500]\n[config.nsqd]\nmem_queue_size = 2",
        "messages = 10\npublish_interval_ms = 1",
    );
    let outcome = loaded.run(1);
    let published = publish_times(&outcome.history);
    let first = |id: MsgId| {
        deliveries(&outcome.history, id)
            .first()
            .map(|d| d.0)
            .expect("delivered")
    };
    let early = published
        .iter()
        .filter(|(id, t)| first(**id) < **t + 2_000_000)
        .count();
    let deferred = published
        .iter()
        .filter(|(id, t)| first(**id) >= **t + 2_000_000)
        .count();
    assert_eq!((deferred, early), (2, 8), "the topic's memory kept two deferrals");
    assert!(outcome
        .verdicts
        .counters
        .contains_key("note.nsqd.topic_overflow_to_disk"));
}

#[test]
fn mpub_batches_are_answered_together() {
    let loaded = inline(
        "mpub",
        "mpub_batch = 5",
        "messages = 10\npublish_interval_ms = 10",
    );
    let outcome = loaded.run(1);
    let ok_times: std::collections::BTreeSet<u64> = outcome
        .history
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::PublishOk { .. }))
        .map(|e| e.time.0)
        .collect();
    assert_eq!(ok_times.len(), 2, "two MPUBs of five");
    assert!(outcome.findings.get(LOST).is_empty());
    for id in 1..=10 {
        assert_eq!(attempts_of(&outcome.history, MsgId(id)), vec![1], "message {id}");
    }
}
