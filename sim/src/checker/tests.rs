//! Each checker against a clean history and against one with exactly one anomaly of its kind.

use super::test_support::Build;
use super::*;
use crate::history::MsgId;

fn clean() -> History {
    Build::new().published(1..=5).processed(1..=5).drained().history()
}

#[test]
fn clean_history_has_no_anomalies() {
    let history = clean();
    assert_eq!(check_all(&history), Findings::default());
}

#[test]
fn lost_finds_the_one_acknowledged_message_never_processed() {
    let history = Build::new()
        .published(1..=5)
        .processed([1, 2, 4, 5])
        .drained()
        .history();
    let lost = lost::check(&history);
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].id, MsgId(3));
    assert_eq!(lost[0].kind, lost::LOST);
    assert!(unseen::check(&history).is_empty());
}

#[test]
fn lost_ignores_info_and_fail_publishes() {
    let history = Build::new()
        .published([1])
        .publish(2)
        .info(2)
        .publish(3)
        .fail(3)
        .processed([1])
        .drained()
        .history();
    assert!(lost::check(&history).is_empty());
}

#[test]
fn a_message_delivered_but_never_processed_is_lost() {
    let history = Build::new()
        .published(1..=2)
        .processed([1])
        .deliver(2, 1)
        .drained()
        .history();
    let lost = lost::check(&history);
    assert_eq!(lost.len(), 1);
    assert!(lost[0].detail.contains("delivered 1 time"), "{}", lost[0]);
}

#[test]
fn unseen_replaces_lost_when_the_run_did_not_drain() {
    let history = Build::new().published(1..=3).processed([1, 2]).history();
    assert!(lost::check(&history).is_empty());
    let unseen = unseen::check(&history);
    assert_eq!(unseen.len(), 1);
    assert_eq!(unseen[0].id, MsgId(3));
    assert!(unseen::check(&clean()).is_empty());
}

#[test]
fn duplicate_delivery_finds_a_redelivery() {
    let history = Build::new()
        .published(1..=3)
        .processed([1, 2])
        .deliver(2, 2)
        .processed([3])
        .drained()
        .history();
    let found = duplicate_delivery::check(&history);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, MsgId(2));
    assert_eq!(found[0].times.len(), 2);
    assert!(duplicate_effect::check(&history).is_empty());
}

#[test]
fn duplicate_effect_finds_a_second_effect() {
    let history = Build::new()
        .published(1..=3)
        .processed(1..=3)
        .effect(3)
        .drained()
        .history();
    let found = duplicate_effect::check(&history);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, MsgId(3));
    assert!(duplicate_delivery::check(&history).is_empty());
}

#[test]
fn phantom_finds_unpublished_and_failed_deliveries() {
    let zero = Build::new()
        .published(1..=2)
        .processed(1..=2)
        .deliver(0, 1)
        .drained()
        .history();
    let found = phantom::check(&zero);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, MsgId::ZERO);
    assert!(found[0].detail.contains("never published"));

    let failed = Build::new()
        .published([1])
        .publish(2)
        .fail(2)
        .processed(1..=2)
        .drained()
        .history();
    let found = phantom::check(&failed);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, MsgId(2));
    assert!(found[0].detail.contains("only with fail"));

    // An info publish that shows up is not a phantom: it may have been applied.
    let info = Build::new().publish(1).info(1).processed([1]).drained().history();
    assert!(phantom::check(&info).is_empty());
}

#[test]
fn reorder_finds_one_swap_in_each_scope() {
    let history = Build::new()
        .published(1..=4)
        .processed([1, 3, 2, 4])
        .drained()
        .history();
    for scope in [OrderScope::Producer, OrderScope::Global] {
        let found = reorder::check(&history, scope);
        assert_eq!(found.len(), 1, "{scope:?}");
        assert_eq!(found[0].id, MsgId(2));
    }
    assert!(reorder::check(&clean(), OrderScope::Global).is_empty());
}

#[test]
fn reorder_by_producer_ignores_interleaving_between_producers() {
    // a1 a2 from producer a, b1 b2 from b; delivered b1 a1 b2 a2: per-producer order holds,
    // global (invocation) order does not.
    let history = Build::new()
        .publish_keyed(1, "a", 1, None)
        .ok(1)
        .publish_keyed(2, "a", 2, None)
        .ok(2)
        .publish_keyed(3, "b", 1, None)
        .ok(3)
        .publish_keyed(4, "b", 2, None)
        .ok(4)
        .processed([3, 1, 4, 2])
        .drained()
        .history();
    assert!(reorder::check(&history, OrderScope::Producer).is_empty());
    assert_eq!(reorder::check(&history, OrderScope::Global).len(), 2);
}

#[test]
fn reorder_by_key_and_partition() {
    let history = Build::new()
        .publish_keyed(1, "p", 1, Some("k1"))
        .ok(1)
        .publish_keyed(2, "p", 2, Some("k2"))
        .ok(2)
        .publish_keyed(3, "p", 3, Some("k1"))
        .ok(3)
        // k1: 3 then 1 is a reorder; k2 alone is fine.
        .deliver_in(3, 1, Some("q0"))
        .deliver_in(2, 1, Some("q1"))
        .deliver_in(1, 1, Some("q1"))
        .drained()
        .history();
    let by_key = reorder::check(&history, OrderScope::Key);
    assert_eq!(by_key.len(), 1);
    assert_eq!(by_key[0].id, MsgId(1));
    // q1 saw 2 then 1: a reorder within that partition; q0 saw only 3.
    let by_partition = reorder::check(&history, OrderScope::Partition);
    assert_eq!(by_partition.len(), 1);
    assert_eq!(by_partition[0].id, MsgId(1));
}

#[test]
fn a_tail_requeue_is_a_reorder_but_an_immediate_repeat_is_not() {
    let requeued = Build::new()
        .published(1..=2)
        .deliver(1, 1)
        .deliver(2, 1)
        .deliver(1, 2)
        .effect(2)
        .effect(1)
        .drained()
        .history();
    assert_eq!(reorder::check(&requeued, OrderScope::Global).len(), 1);
    let repeated = Build::new()
        .published(1..=2)
        .deliver(1, 1)
        .deliver(1, 2)
        .deliver(2, 1)
        .drained()
        .history();
    assert!(reorder::check(&repeated, OrderScope::Global).is_empty());
}

#[test]
fn invariant_finds_a_changed_total_and_passes_a_constant_one() {
    use crate::history::{Event, EventKind, SimTime};
    let observe = |t: u64, value: i64| Event {
        time: SimTime(t),
        host: "db".into(),
        kind: EventKind::Observe {
            name: "accounts.total_balance".into(),
            value,
        },
    };
    let constant = History::from_events(vec![observe(1, 4000), observe(2, 4000), observe(3, 4000)]);
    assert!(invariant::check(&constant).is_empty());
    let created = History::from_events(vec![observe(1, 4000), observe(2, 4001), observe(3, 4001)]);
    let found = invariant::check(&created);
    assert_eq!(found.len(), 2, "every observation off the reference: {found:?}");
    assert_eq!(found[0].kind, invariant::INVARIANT);
    assert!(
        found[0].to_string().contains("was 4000, then 4001 (+1)"),
        "{}",
        found[0]
    );
}

#[test]
fn partial_finds_a_transaction_that_committed_part_of_an_effect() {
    use crate::history::{Event, EventKind, MsgId, SimTime};
    let event = |t: u64, kind: EventKind| Event {
        time: SimTime(t),
        host: "db".into(),
        kind,
    };
    let parts = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let write = |t: u64, id: u64, txn: u64, names: &[&str]| {
        event(
            t,
            EventKind::Write {
                id: MsgId(id),
                txn,
                parts: parts(names),
            },
        )
    };
    let schema = event(
        0,
        EventKind::EffectParts {
            parts: parts(&["inbox", "debit", "credit"]),
        },
    );
    let whole = History::from_events(vec![
        schema.clone(),
        write(1, 1, 7, &["inbox", "debit", "credit"]),
        write(2, 2, 8, &["credit", "inbox", "debit"]),
    ]);
    assert!(
        partial::check(&whole).is_empty(),
        "order of parts does not matter"
    );
    let torn = History::from_events(vec![
        schema,
        write(1, 1, 7, &["inbox"]),
        write(2, 1, 9, &["debit", "credit"]),
    ]);
    let found = partial::check(&torn);
    assert_eq!(
        found.len(),
        2,
        "two transactions, each with part of the effect: {found:?}"
    );
    assert_eq!(found[0].kind, partial::PARTIAL_TRANSACTION);
    assert!(found[0]
        .detail
        .contains("transaction 7 committed inbox without debit, credit"));
    assert!(found[1].detail.contains("without inbox"));
    let undeclared = History::from_events(vec![write(1, 1, 7, &["inbox"])]);
    assert!(
        partial::check(&undeclared).is_empty(),
        "no schema, nothing to judge"
    );
}

#[test]
fn with_declared_groups_each_group_is_owed_every_message_and_copies_across_groups_are_not_duplicates() {
    use crate::history::{Event, EventKind, History, SimTime};
    let base = Build::new().published(1..=2).history();
    let mut events: Vec<Event> = base.events().to_vec();
    let mut t = 1_000;
    let mut at = |host: &str, kind: EventKind| {
        t += 10;
        Event {
            time: SimTime(t),
            host: host.into(),
            kind,
        }
    };
    events.push(at(
        "jetsam",
        EventKind::Groups {
            members: vec![("c1".into(), "billing".into()), ("c2".into(), "audit".into())],
        },
    ));
    for (consumer, ids) in [("c1", vec![1, 2]), ("c2", vec![2])] {
        for id in ids {
            events.push(at(
                consumer,
                EventKind::Deliver {
                    id: MsgId(id),
                    attempt: 1,
                    consumer: consumer.into(),
                    partition: None,
                    node: None,
                    offset: None,
                },
            ));
            events.push(at(
                consumer,
                EventKind::Effect {
                    id: MsgId(id),
                    consumer: consumer.into(),
                },
            ));
        }
    }
    events.push(at(
        "jetsam",
        EventKind::Phase {
            phase: crate::history::Phase::Drained,
            detail: String::new(),
        },
    ));
    let findings = check_all(&History::from_events(events));
    assert_eq!(
        findings.get(lost::LOST).len(),
        1,
        "audit never processed m1: {:?}",
        findings.get(lost::LOST)
    );
    assert_eq!(findings.get(lost::LOST)[0].id, MsgId(1));
    assert!(
        findings.get(lost::LOST)[0].detail.starts_with("[audit]"),
        "{}",
        findings.get(lost::LOST)[0].detail
    );
    assert!(
        findings.get(duplicate_effect::DUPLICATE_EFFECT).is_empty(),
        "m2 once per channel is not a duplicate"
    );
    assert!(findings.get(duplicate_delivery::DUPLICATE_DELIVERY).is_empty());
}

#[test]
fn an_anomaly_reads_as_its_kind_its_message_and_where_it_was_seen() {
    let history = Build::new()
        .published(1..=3)
        .processed([1, 2])
        .drained()
        .history();
    let lost = &lost::check(&history)[0];
    assert_eq!(lost.kind.name(), "lost");
    assert_eq!(lost.kind.to_string(), "lost");
    let line = lost.to_string();
    assert!(
        line.starts_with("lost m3: "),
        "a message kind names the message: {line}"
    );
    assert!(
        line.ends_with(" [at 0.05 ms on p, 0.06 ms on p]"),
        "its events: {line}"
    );
    let bare = Anomaly {
        times: Vec::new(),
        hosts: Vec::new(),
        ..lost.clone()
    };
    assert!(
        !bare.to_string().contains("[at "),
        "no events, no witness list: {bare}"
    );
    let state = Anomaly {
        kind: invariant::INVARIANT,
        detail: "rows 3 != 4".into(),
        ..bare.clone()
    };
    assert_eq!(
        state.to_string(),
        "invariant: rows 3 != 4",
        "a state kind names no message"
    );
    assert!(lost.kind.names_message() && !invariant::INVARIANT.names_message());
}

#[test]
fn reorder_kinds_share_a_name_and_differ_by_scope() {
    let scopes: Vec<Option<&str>> = reorder::KINDS.iter().map(|k| k.scope()).collect();
    assert!(scopes
        .iter()
        .all(|s| s.is_some_and(|s| !s.is_empty() && s != "xyzzy")));
    assert!(reorder::KINDS.iter().all(|k| k.name() == "reorder"));
    assert_eq!(
        reorder::KINDS[0].key(),
        format!("reorder({})", scopes[0].unwrap())
    );
    assert_eq!(lost::LOST.scope(), None);
    assert_eq!(lost::LOST.key(), "lost");
}

#[test]
fn findings_are_empty_only_without_anomalies() {
    assert!(check_all(&clean()).is_empty());
    let lossy = Build::new().published(1..=2).processed([1]).drained().history();
    assert!(!check_all(&lossy).is_empty());
}

#[test]
fn one_declared_group_is_judged_on_the_whole_history_without_a_group_label() {
    use crate::history::{Event, EventKind};
    let base = Build::new().published(1..=2).processed([1]).drained().history();
    let mut events: Vec<Event> = base.events().to_vec();
    events.insert(
        0,
        Event {
            time: SimTime(1),
            host: "jetsam".into(),
            kind: EventKind::Groups {
                members: vec![("c1".into(), "billing".into())],
            },
        },
    );
    let findings = check_all(&History::from_events(events));
    let lost: Vec<_> = findings.get(lost::LOST).to_vec();
    assert_eq!(lost.len(), 1);
    assert!(!lost[0].detail.starts_with("[billing]"), "{}", lost[0].detail);
}

#[test]
fn findings_keep_a_bounded_number_of_witnesses_but_count_every_anomaly() {
    // The last message delivered first, then every other one: each of those is a reorder.
    let last = WITNESSES_PER_KIND_MAX as u64 + 2;
    let mut b = Build::new();
    b.published(1..=last).deliver(last, 1);
    for id in 1..last {
        b.deliver(id, 1);
    }
    let history = b.drained().history();
    let global = reorder::kind(OrderScope::Global);
    let all = reorder::check(&history, OrderScope::Global);
    assert_eq!(all.len(), WITNESSES_PER_KIND_MAX + 1);
    let findings = check_all(&history);
    assert_eq!(findings.count(global), WITNESSES_PER_KIND_MAX + 1);
    assert_eq!(
        findings.get(global),
        &all[..WITNESSES_PER_KIND_MAX],
        "the first ones found"
    );
    let earliest = all.iter().filter_map(|a| a.times.first()).min().copied();
    assert_eq!(findings.earliest(global), earliest);
    let verdicts = crate::verdict::Verdicts::judge(&history, &findings);
    let ordered = verdicts.get(crate::verdict::Property::Ordered(OrderScope::Global));
    assert_eq!(ordered.safety.len(), WITNESSES_PER_KIND_MAX);
    assert_eq!(ordered.safety_count, WITNESSES_PER_KIND_MAX + 1);
    assert_eq!(ordered.anomaly_count(), WITNESSES_PER_KIND_MAX + 1);
    assert_eq!(ordered.earliest, earliest);
}
