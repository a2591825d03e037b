//! The log checkers (Jepsen's Kafka taxonomy, reference §2.7) on hand-built histories: each
//! finds exactly the anomaly it names, and nothing in a clean log or a history without
//! offsets.

use super::test_support::Build;
use super::*;
use crate::history::MsgId;

#[test]
fn a_clean_log_and_a_history_without_offsets_have_no_log_anomalies() {
    let mut clean = Build::new();
    clean.publish(1).ok_at(1, "t-0", 0).publish(2).ok_at(2, "t-0", 1);
    clean
        .read_at(1, "c1", "t-0", 0)
        .read_at(2, "c1", "t-0", 1)
        .drained();
    let plain = Build::new()
        .published([1, 2])
        .processed([1, 2])
        .drained()
        .history();
    for history in [clean.history(), plain] {
        assert!(inconsistent_offsets::check(&history).is_empty());
        assert!(log_duplicate::check(&history).is_empty());
        assert!(lost_write::check(&history).is_empty());
        assert!(nonmonotonic_read::check(&history).is_empty());
    }
}

#[test]
fn two_messages_at_one_offset_are_inconsistent_offsets() {
    let mut b = Build::new();
    b.publish(1).ok_at(1, "t-0", 1).publish(2).ok_at(2, "t-0", 1);
    let found = inconsistent_offsets::check(&b.history());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, MsgId(1));
    assert!(
        found[0].detail.starts_with("t-0@1 holds 2 messages"),
        "{}",
        found[0].detail
    );
    assert!(
        found[0].detail.contains("m1 acknowledged at") && found[0].detail.contains("m2 acknowledged at"),
        "each witness says how the offset was learnt: {}",
        found[0].detail
    );
    let mut b = Build::new();
    b.publish(1)
        .ok_at(1, "t-0", 1)
        .publish(2)
        .read_at(2, "c1", "t-0", 1);
    let found = inconsistent_offsets::check(&b.history());
    assert!(found[0].detail.contains("m2 read at c1"), "{}", found[0].detail);
    // The same message acknowledged and read at one offset is consistent.
    let mut b = Build::new();
    b.publish(1).ok_at(1, "t-0", 1).read_at(1, "c1", "t-0", 1);
    assert!(inconsistent_offsets::check(&b.history()).is_empty());
}

#[test]
fn one_message_at_two_offsets_is_a_log_duplicate() {
    let mut b = Build::new();
    b.publish(1)
        .ok_at(1, "t-0", 0)
        .read_at(1, "c1", "t-0", 0)
        .read_at(1, "c1", "t-0", 3);
    let found = log_duplicate::check(&b.history());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].detail, "in the log 2 times: t-0@0, t-0@3");
    // Read twice at the same offset (a redelivery) is not a duplicate in the log.
    let mut b = Build::new();
    b.publish(1)
        .ok_at(1, "t-0", 0)
        .read_at(1, "c1", "t-0", 0)
        .read_at(1, "c2", "t-0", 0);
    assert!(log_duplicate::check(&b.history()).is_empty());
}

#[test]
fn a_copy_in_another_topic_is_not_a_log_duplicate_but_two_partitions_of_one_are() {
    // A transformer wrote m1 of `orders` again in `orders-out`: two logs, one copy each.
    let mut b = Build::new();
    b.publish(1)
        .ok_at(1, "orders-0", 0)
        .read_at(1, "c1", "orders-out-0", 4);
    assert!(log_duplicate::check(&b.history()).is_empty());
    b.read_at(1, "c1", "orders-out-1", 2);
    let found = log_duplicate::check(&b.history());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0].detail,
        "in the log 2 times: orders-out-0@4, orders-out-1@2"
    );
}

#[test]
fn an_acknowledged_offset_skipped_by_reads_past_it_is_a_lost_write() {
    let mut b = Build::new();
    b.publish(1)
        .ok_at(1, "t-0", 0)
        .publish(2)
        .ok_at(2, "t-0", 1)
        .publish(3)
        .ok_at(3, "t-1", 0);
    b.read_at(2, "c1", "t-0", 1);
    let found = lost_write::check(&b.history());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].id, MsgId(1));
    // m3's partition was never read past it: not (yet) lost, only unseen.
    assert!(found.iter().all(|a| a.id != MsgId(3)));
}

#[test]
fn reading_backwards_within_one_incarnation_is_nonmonotonic_but_not_after_a_restart() {
    let mut b = Build::new();
    b.read_at(1, "c1", "t-0", 0)
        .read_at(2, "c1", "t-0", 1)
        .read_at(1, "c1", "t-0", 0);
    let found = nonmonotonic_read::check(&b.history());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].detail, "c1 read t-0@0 after t-0@1 (m2)");
    let mut b = Build::new();
    b.read_at(1, "c1", "t-0", 0).read_at(2, "c1", "t-0", 1);
    b.fault_on("kill", "c1")
        .fault_on("restart", "c1")
        .read_at(1, "c1", "t-0", 0);
    b.read_at(2, "c2", "t-0", 1).read_at(1, "c2", "t-1", 0);
    assert!(nonmonotonic_read::check(&b.history()).is_empty());
}

#[test]
fn jumping_over_a_known_message_within_one_assignment_is_a_poll_skip() {
    let mut b = Build::new();
    b.publish(2).ok_at(2, "t-0", 1);
    b.read_at(1, "c1", "t-0", 0).read_at(3, "c1", "t-0", 2);
    let found = poll_skip::check(&b.history());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].id, MsgId(3));
    assert_eq!(
        found[0].detail,
        "c1 read t-0@2 after t-0@0 (m1), skipping 1 offset(s) from t-0@1"
    );
    // An offset nobody saw a message at (a transaction marker) is not skipped.
    let mut b = Build::new();
    b.read_at(1, "c1", "t-0", 0).read_at(3, "c1", "t-0", 2);
    assert!(poll_skip::check(&b.history()).is_empty());
    // After a new assignment, or a restart, a consumer may start anywhere (Jepsen's
    // re-assign); another consumer's reads are its own.
    let mut b = Build::new();
    b.read_at(2, "c2", "t-0", 1);
    b.read_at(1, "c1", "t-0", 0)
        .note_on("c1", positions::ASSIGNED_NOTE)
        .read_at(3, "c1", "t-0", 2)
        .read_at(1, "c1", "t-0", 0);
    assert!(poll_skip::check(&b.history()).is_empty());
    assert_eq!(
        nonmonotonic_read::check(&b.history()).len(),
        1,
        "backwards within the assignment"
    );
    let mut b = Build::new();
    b.read_at(2, "c1", "t-0", 1)
        .note_on("c1", positions::ASSIGNED_NOTE)
        .read_at(1, "c1", "t-0", 0);
    assert!(
        nonmonotonic_read::check(&b.history()).is_empty(),
        "a new assignment starts over"
    );
}

#[test]
fn the_properties_judge_the_log_kinds() {
    use crate::verdict::{Property, Verdicts};
    let mut b = Build::new();
    b.publish(1).ok_at(1, "t-0", 0).publish(2).ok_at(2, "t-0", 0);
    b.read_at(2, "c1", "t-0", 1).read_at(2, "c1", "t-0", 0).drained();
    let history = b.history();
    let verdicts = Verdicts::judge(&history, &check_all(&history));
    for property in [
        Property::ConsistentOffsets,
        Property::NoLogDuplicate,
        Property::MonotonicReads,
        Property::NoLoss,
    ] {
        assert!(!verdicts.get(property).holds, "{property} should be violated");
    }
}

#[test]
fn producer_partition_order_is_per_consumer_process_per_producer_per_partition() {
    let mut b = Build::new();
    b.publish_keyed(1, "p1", 1, None)
        .ok(1)
        .publish_keyed(2, "p1", 2, None)
        .ok(2);
    b.publish_keyed(3, "p2", 1, None).ok(3);
    // p2's m3 after p1's m2 is not an order Kafka promises; m1 after m2 in one partition is.
    b.read_at(3, "c1", "t-0", 0)
        .read_at(2, "c1", "t-0", 1)
        .read_at(1, "c1", "t-0", 2);
    let found = reorder::check(&b.history(), OrderScope::ProducerPartition);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].id, MsgId(1));
    // Across partitions, or after the consumer restarted and reads again: no reorder.
    let mut b = Build::new();
    b.publish_keyed(1, "p1", 1, None)
        .ok(1)
        .publish_keyed(2, "p1", 2, None)
        .ok(2);
    b.read_at(2, "c1", "t-1", 0).read_at(1, "c1", "t-0", 0);
    b.fault_on("kill", "c1")
        .fault_on("restart", "c1")
        .read_at(1, "c1", "t-1", 0);
    assert!(reorder::check(&b.history(), OrderScope::ProducerPartition).is_empty());
}
