//! One small hand-built history per anomaly kind: the checker finds the anomaly, and its
//! explanation names the fault (by kind and hosts) or the note that made it, or says
//! honestly that nothing recorded explains it.

use super::*;
use crate::checker::test_support::Build;
use crate::checker::transactions::{TXN_ABORTED, TXN_COMMITTED, TXN_PUBLISH};
use crate::checker::*;
use crate::history::SimTime;

/// The explanation of the first anomaly of `kind` the checkers find in the history.
fn explained(build: &Build, kind: AnomalyKind) -> Explanation {
    let history = build.history();
    let findings = check_all(&history);
    let anomaly = findings
        .get(kind)
        .first()
        .unwrap_or_else(|| panic!("no {} in {findings:?}", kind.key()));
    let explanation = explain(&history, anomaly);
    assert!(explanation.steps.len() <= STEPS_MAX);
    assert!(
        explanation.summary.contains(&anomaly.id.to_string()) || !kind.names_message(),
        "{explanation:?}"
    );
    explanation
}

fn says(explanation: &Explanation, words: &[&str]) {
    let text = explanation.render("");
    for word in words {
        assert!(text.contains(word), "{word:?} missing from:\n{text}");
    }
}

#[test]
fn every_registered_kind_has_an_explanation_family() {
    for checker in CHECKERS {
        for kind in checker.kinds {
            assert!(family(*kind).is_some(), "{} has no explanation", kind.key());
        }
    }
}

#[test]
fn a_duplicate_effect_names_the_partition_that_lost_the_fin_and_the_timeout() {
    let mut b = Build::new();
    b.publish(1)
        .ok(1)
        .deliver_to(1, 1, "c1", "nsqd1")
        .effect_by(1, "c1");
    b.fault("partition", &["c1", "nsqd1"], "c1 <-/-> nsqd1")
        .ack_by(1, "c1")
        .note("nsqd1", "nsqd.msg_timeout", "")
        .fault("heal", &[], "")
        .deliver_to(1, 2, "c1", "nsqd1")
        .effect_by(1, "c1")
        .ack_by(1, "c1");
    let e = explained(&b, duplicate_effect::DUPLICATE_EFFECT);
    assert!(e.summary.contains("c1 acknowledged it"), "{}", e.summary);
    assert!(e.summary.contains("partition c1 <-/-> nsqd1"), "{}", e.summary);
    says(&e, &["FAULT partition", "noted nsqd.msg_timeout", "attempt 2"]);
    let history = b.history();
    assert_eq!(e.hosts(history.events()), ["p", "c1", "nsqd1"]);
}

#[test]
fn an_ack_after_the_brokers_timeout_came_too_late() {
    let mut b = Build::new();
    b.publish(1).ok(1).deliver_to(1, 1, "c1", "nsqd1");
    b.note("nsqd1", "nsqd.msg_timeout", "")
        .effect_by(1, "c1")
        .ack_by(1, "c1");
    b.deliver_to(1, 2, "c2", "nsqd1").effect_by(1, "c2");
    let e = explained(&b, duplicate_effect::DUPLICATE_EFFECT);
    assert!(e.summary.contains("came too late"), "{}", e.summary);
    assert!(e.summary.contains("nsqd.msg_timeout"), "{}", e.summary);
}

#[test]
fn a_redelivery_with_nothing_recorded_says_so() {
    let mut b = Build::new();
    b.publish(1)
        .ok(1)
        .deliver_to(1, 1, "c1", "nsqd1")
        .deliver_to(1, 2, "c1", "nsqd1");
    let e = explained(&b, duplicate_delivery::DUPLICATE_DELIVERY);
    assert!(e.summary.contains("c1 did not acknowledge it"), "{}", e.summary);
    assert!(
        e.summary.contains("no fault stood on c1<->nsqd1"),
        "{}",
        e.summary
    );
}

#[test]
fn a_second_copy_names_the_unanswered_publish_and_the_lost_replies() {
    let mut b = Build::new();
    b.fault("lose_replies", &["nsqd1", "p"], "nsqd1 -/-> p for 100ms")
        .publish(1);
    b.deliver_to(1, 1, "c1", "nsqd1")
        .effect_by(1, "c1")
        .ack_by(1, "c1");
    b.note("p", "producer.retry", "")
        .fault("lose_replies_end", &["nsqd1", "p"], "");
    b.ok(1).deliver_to(1, 1, "c1", "nsqd1").effect_by(1, "c1");
    let e = explained(&b, duplicate_effect::DUPLICATE_EFFECT);
    assert!(e.summary.contains("a second copy"), "{}", e.summary);
    assert!(e.summary.contains("lose_replies nsqd1 -/-> p"), "{}", e.summary);
    assert!(e.summary.contains("producer.retry"), "{}", e.summary);
}

#[test]
fn two_effects_from_one_delivery_are_a_reapplication() {
    let mut b = Build::new();
    b.publish(1)
        .ok(1)
        .deliver_to(1, 1, "c1", "nsqd1")
        .effect_by(1, "c1");
    b.note("c1", "consumer.handler_error", "commit reply lost")
        .effect_by(1, "c1");
    let e = explained(&b, duplicate_effect::DUPLICATE_EFFECT);
    assert!(e.summary.contains("from one delivery"), "{}", e.summary);
    assert!(e.summary.contains("handler_error"), "{}", e.summary);
}

#[test]
fn a_loss_names_where_it_was_last_held_and_the_power_failure() {
    let mut b = Build::new();
    b.publish(1).ok(1).deliver_to(1, 1, "c1", "nsqd1");
    b.fault("power_fail", &["nsqd1"], "unsynced bytes lost: 10")
        .fault("restart", &["nsqd1"], "")
        .drained();
    let e = explained(&b, lost::LOST);
    assert!(e.summary.contains("last held by c1 (on nsqd1)"), "{}", e.summary);
    assert!(e.summary.contains("power_fail nsqd1"), "{}", e.summary);
    says(&e, &["unsynced bytes lost: 10"]);
}

#[test]
fn a_loss_with_nothing_recorded_says_so() {
    let mut b = Build::new();
    b.publish(1)
        .ok(1)
        .fault("partition", &["p", "nsqd1"], "p <-/-> nsqd1")
        .drained();
    let e = explained(&b, lost::LOST);
    assert!(e.summary.contains("never delivered"), "{}", e.summary);
    assert!(
        e.summary.contains("no crash, kill, stop or power failure"),
        "{}",
        e.summary
    );
}

#[test]
fn an_unseen_message_names_the_kill_of_a_broker() {
    let mut b = Build::new();
    b.publish(1).ok(1).fault("kill", &["broker1"], "");
    let e = explained(&b, unseen::UNSEEN);
    assert!(e.summary.contains("kill broker1"), "{}", e.summary);
}

#[test]
fn a_lost_write_names_the_truncation() {
    let mut b = Build::new();
    b.publish(1).ok_at(1, "t-0", 0).publish(2).ok_at(2, "t-0", 1);
    b.note("broker2", "kafka.truncated_to_high_watermark", "")
        .read_at(2, "c", "t-0", 1);
    let e = explained(&b, lost_write::LOST_WRITE);
    assert!(e.summary.contains("acknowledged at t-0@0"), "{}", e.summary);
    assert!(
        e.summary
            .contains("broker2 noted kafka.truncated_to_high_watermark"),
        "{}",
        e.summary
    );
}

#[test]
fn a_log_duplicate_names_the_producers_retry() {
    let mut b = Build::new();
    b.publish(1)
        .fault("lose_replies", &["broker1", "p"], "broker1 -/-> p for 50ms");
    b.note("p", "producer.retry", "")
        .ok_at(1, "t-0", 0)
        .ok_at(1, "t-0", 1);
    let e = explained(&b, log_duplicate::LOG_DUPLICATE);
    assert!(e.summary.contains("lose_replies broker1 -/-> p"), "{}", e.summary);
    says(&e, &["noted producer.retry", "t-0@1"]);
}

#[test]
fn inconsistent_offsets_name_the_power_failure_between_them() {
    let mut b = Build::new();
    b.publish(1)
        .ok_at(1, "t-0", 0)
        .fault("power_fail", &["broker1"], "");
    b.publish(2).ok_at(2, "t-0", 0);
    let e = explained(&b, inconsistent_offsets::INCONSISTENT_OFFSETS);
    assert!(e.summary.contains("power_fail broker1"), "{}", e.summary);
}

#[test]
fn a_nonmonotonic_read_names_the_offset_reset() {
    let mut b = Build::new();
    b.read_at(1, "c", "t-0", 0).read_at(2, "c", "t-0", 1);
    b.note("c", "consumer.offset_reset", "").read_at(1, "c", "t-0", 0);
    let e = explained(&b, nonmonotonic_read::NONMONOTONIC_READ);
    assert!(
        e.summary.contains("c noted consumer.offset_reset"),
        "{}",
        e.summary
    );
}

#[test]
fn a_poll_skip_names_what_moved_the_position() {
    let mut b = Build::new();
    b.ok_at(1, "t-0", 0)
        .ok_at(2, "t-0", 1)
        .ok_at(3, "t-0", 2)
        .read_at(1, "c", "t-0", 0);
    b.note("c", "consumer.batch_skipped_after_commit_failure", "")
        .read_at(3, "c", "t-0", 2);
    let e = explained(&b, poll_skip::POLL_SKIP);
    assert!(
        e.summary.contains("batch_skipped_after_commit_failure"),
        "{}",
        e.summary
    );
}

#[test]
fn a_reorder_names_the_redelivery_and_the_kill_behind_it() {
    let mut b = Build::new();
    b.publish(1)
        .ok(1)
        .publish(2)
        .ok(2)
        .deliver_to(1, 1, "c1", "nsqd1");
    b.fault("kill", &["c1"], "").fault("restart", &["c1"], "");
    b.deliver_to(2, 1, "c1", "nsqd1").deliver_to(1, 2, "c1", "nsqd1");
    let e = explained(&b, reorder::kind(OrderScope::Producer));
    assert!(e.summary.contains("after m2"), "{}", e.summary);
    assert!(e.summary.contains("kill c1"), "{}", e.summary);
}

#[test]
fn a_phantom_names_the_failed_publish() {
    let mut b = Build::new();
    b.publish(1).fail(1).deliver(1, 1);
    let e = explained(&b, phantom::PHANTOM);
    assert!(e.summary.contains("its publish failed"), "{}", e.summary);
    assert!(e.summary.contains("E_PUB_FAILED"), "{}", e.summary);
}

#[test]
fn a_changed_invariant_names_the_commits_and_the_kill_between() {
    let mut b = Build::new();
    let observe = |value| EventKind::Observe {
        name: "total".into(),
        value,
    };
    b.push("db", observe(100))
        .effect_by(1, "c1")
        .fault("kill", &["db"], "");
    b.push("db", observe(90));
    let e = explained(&b, invariant::INVARIANT);
    assert!(e.summary.contains("total was 100, then 90"), "{}", e.summary);
    assert!(e.summary.contains("kill db"), "{}", e.summary);
    says(&e, &["m1's effect applied by c1"]);
}

#[test]
fn a_partial_transaction_names_the_handler_error_before_it() {
    let mut b = Build::new();
    let parts = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    b.push(
        "c1",
        EventKind::EffectParts {
            parts: parts(&["inbox", "debit"]),
        },
    );
    b.publish(1).ok(1).deliver_to(1, 1, "c1", "nsqd1");
    b.note("c1", "consumer.handler_error", "1205 lock wait timeout");
    b.push(
        "c1",
        EventKind::Write {
            id: MsgId(1),
            txn: 7,
            parts: parts(&["inbox"]),
        },
    );
    let e = explained(&b, partial::PARTIAL_TRANSACTION);
    assert!(e.summary.contains("without debit"), "{}", e.summary);
    assert!(e.summary.contains("handler_error"), "{}", e.summary);
}

#[test]
fn an_aborted_read_names_who_aborted_and_why() {
    let mut b = Build::new();
    b.publish(1).note("p", TXN_PUBLISH, "txn=p#1 id=m1").publish(2);
    b.note("p", TXN_PUBLISH, "txn=p#1 id=m2")
        .fault("pause", &["p"], "");
    b.note("p", TXN_ABORTED, "txn=p#1").deliver(1, 1);
    let e = explained(&b, aborted_read::ABORTED_READ);
    assert!(e.summary.contains("aborted by p"), "{}", e.summary);
    assert!(e.summary.contains("pause p"), "{}", e.summary);
    let text = e.render("");
    assert!(!text.contains("id=m2"), "only its own record is cited:\n{text}");
}

#[test]
fn a_torn_transaction_names_where_the_unread_part_was_lost() {
    let mut b = Build::new();
    b.publish(1).note("p", TXN_PUBLISH, "txn=p#1 id=m1").publish(2);
    b.note("p", TXN_PUBLISH, "txn=p#1 id=m2")
        .note("p", TXN_COMMITTED, "txn=p#1");
    b.fault("power_fail", &["broker1"], "").deliver(1, 1).drained();
    let e = explained(&b, torn_transaction::TORN_TRANSACTION);
    assert!(
        e.summary.contains("of transaction p#1 committed"),
        "{}",
        e.summary
    );
    assert!(e.summary.contains("power_fail broker1"), "{}", e.summary);
}

#[test]
fn a_groups_duplicate_reads_only_that_groups_consumers() {
    let mut b = Build::new();
    let members = vec![
        ("a1".to_string(), "ga".to_string()),
        ("b1".to_string(), "gb".to_string()),
    ];
    b.push("jetsam", EventKind::Groups { members });
    b.publish(1)
        .ok(1)
        .deliver_to(1, 1, "a1", "nsqd1")
        .deliver_to(1, 1, "b1", "nsqd1");
    b.deliver_to(1, 2, "a1", "nsqd1");
    let e = explained(&b, duplicate_delivery::DUPLICATE_DELIVERY);
    assert!(e.summary.contains("delivered 2 times"), "{}", e.summary);
    assert!(!e.render("").contains("to b1"), "{e:?}");
}

#[test]
fn a_partition_window_knows_its_sides() {
    let mut b = Build::new();
    b.fault(
        "partition",
        &["c1", "nsqd1", "nsqd2"],
        "role consumer -> c1; c1 <-/-> nsqd1,nsqd2",
    );
    b.fault("heal", &[], "");
    let history = b.history();
    let windows = window::windows(history.events());
    assert_eq!(windows.len(), 1);
    let w = &windows[0];
    assert!(w.on_link("nsqd2", "c1") && w.on_link("c1", "nsqd1"));
    assert!(!w.on_link("nsqd1", "nsqd2"), "both on one side");
    assert_eq!(w.end_us, Some(20));
    assert!(
        w.describe().starts_with("partition c1 <-/-> nsqd1,nsqd2 from"),
        "{}",
        w.describe()
    );
}

#[test]
fn a_long_chain_is_capped_and_counts_what_it_left_out() {
    let mut b = Build::new();
    b.publish(1).ok(1);
    for attempt in 1..=20 {
        b.deliver_to(1, attempt, "c1", "nsqd1");
    }
    let e = explained(&b, duplicate_delivery::DUPLICATE_DELIVERY);
    assert_eq!(e.steps.len(), STEPS_MAX);
    assert!(e.steps.last().unwrap().text.contains("more step(s) left out"));
    assert_eq!(ms(1_500), "1.500 ms");
    assert_eq!(ms(SimTime(2_000).0), "2 ms");
}

#[test]
fn a_reread_at_the_same_offset_names_the_consumers_crash() {
    let mut b = Build::new();
    b.publish(1).ok_at(1, "t-0", 0).read_at(1, "c", "t-0", 0);
    b.fault("kill", &["c"], "")
        .fault("restart", &["c"], "")
        .read_at(1, "c", "t-0", 0);
    let e = explained(&b, duplicate_delivery::DUPLICATE_DELIVERY);
    assert!(
        e.summary.contains("read it again at the same offset"),
        "{}",
        e.summary
    );
    assert!(e.summary.contains("kill c"), "{}", e.summary);
}

#[test]
fn a_message_never_delivered_blames_a_brokers_fault_not_a_consumers() {
    let mut b = Build::new();
    b.publish(1)
        .ok(1)
        .publish(2)
        .ok(2)
        .deliver_to(2, 1, "c1", "nsqd1")
        .effect_by(2, "c1");
    b.fault("kill", &["c1"], "")
        .fault("power_fail", &["nsqd1"], "")
        .drained();
    let e = explained(&b, lost::LOST);
    assert!(
        e.summary.contains("never delivered; then power_fail nsqd1"),
        "{}",
        e.summary
    );
    assert!(
        !e.summary.contains("kill c1"),
        "a consumer never held it: {}",
        e.summary
    );
}
