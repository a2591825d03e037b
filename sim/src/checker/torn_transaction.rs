//! `torn-transaction`: in a run that drained, a consumer group delivered some messages of a
//! transaction its producer committed but never another of them (Jepsen's Bufstream analysis,
//! reference §2.5: a delayed commit or abort applied to the wrong transaction tears it). In a
//! run that did not drain the missing part may only be late, so nothing is judged. A member
//! counts as read when it was read at its written position (by id where the history does not
//! know it: `Reads::first_read`), not when another transaction's copy of it was.

use super::transactions::{transactions, Reads, TxnOutcome};
use super::{Anomaly, AnomalyKind, Checker, PublishIndex, Runs};
use crate::history::{History, MsgId, Name, SimTime};

pub const TORN_TRANSACTION: AnomalyKind = AnomalyKind::message("torn-transaction");

/// Each consumer group owes every committed transaction whole.
pub const CHECKER: Checker = Checker {
    kinds: &[TORN_TRANSACTION],
    runs: Runs::PerGroup,
    check: |history, index, found| check_indexed(history, index).into_iter().for_each(found),
};

pub fn check(history: &History) -> Vec<Anomaly> {
    check_indexed(history, &PublishIndex::build(history))
}

pub fn check_indexed(history: &History, _index: &PublishIndex) -> Vec<Anomaly> {
    if !history.drained() {
        return Vec::new();
    }
    let txns = transactions(history);
    let reads = Reads::build(history, &txns);
    let mut anomalies = Vec::new();
    for (name, txn) in &txns {
        let Some((TxnOutcome::Committed, committed_at, producer)) = &txn.outcome else {
            continue;
        };
        let read: Vec<(MsgId, Option<(SimTime, Name)>)> =
            txn.members.iter().map(|id| (*id, reads.first_read(txn, *id))).collect();
        let Some((seen, Some((seen_at, consumer)))) = read.iter().find(|(_, r)| r.is_some()) else {
            continue; // nothing of it read: `lost` judges whole losses
        };
        for (id, _) in read.iter().filter(|(_, r)| r.is_none()) {
            anomalies.push(Anomaly {
                kind: TORN_TRANSACTION,
                id: *id,
                times: vec![*committed_at, *seen_at],
                hosts: vec![Name::new(producer), consumer.clone()],
                detail: format!(
                    "of transaction {name}, which {producer} committed, never delivered, though {seen} of it was"
                ),
            });
        }
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::test_support::Build;
    use crate::checker::transactions::{TXN_ABORTED, TXN_COMMITTED, TXN_PUBLISH, TXN_WRITTEN};

    fn committed_pair() -> Build {
        let mut b = Build::new();
        b.publish(1)
            .note("p", TXN_PUBLISH, "txn=p#1 id=m1")
            .publish(2)
            .note("p", TXN_PUBLISH, "txn=p#1 id=m2")
            .note("p", TXN_COMMITTED, "txn=p#1")
            .deliver(1, 1);
        b
    }

    #[test]
    fn a_committed_transaction_read_in_part_by_a_drained_run_is_torn() {
        let h = committed_pair().drained().history();
        let found = check(&h);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].id.0, 2);
    }

    #[test]
    fn a_whole_one_or_a_run_that_did_not_drain_is_not_judged_torn() {
        assert!(check(&committed_pair().history()).is_empty(), "not drained: maybe late");
        let whole = committed_pair().deliver(2, 1).drained().history();
        assert!(check(&whole).is_empty());
    }

    #[test]
    fn a_member_read_only_as_another_transactions_copy_is_torn() {
        // t#2 committed m1 and m2 at out-0@2 and @3; a read_uncommitted consumer read t#1's
        // aborted copies of both at @0 and @1, and t#2's m1 only: m2 of t#2 was never read,
        // which by id alone the aborted copy's read hid.
        let h = Build::new()
            .publish(1)
            .publish(2)
            .note("t", TXN_PUBLISH, "txn=t#1 id=m1")
            .note("t", TXN_PUBLISH, "txn=t#1 id=m2")
            .note("t", TXN_WRITTEN, "txn=t#1 id=m1 partition=out-0 offset=0")
            .note("t", TXN_WRITTEN, "txn=t#1 id=m2 partition=out-0 offset=1")
            .note("t", TXN_ABORTED, "txn=t#1")
            .note("t", TXN_PUBLISH, "txn=t#2 id=m1")
            .note("t", TXN_PUBLISH, "txn=t#2 id=m2")
            .note("t", TXN_WRITTEN, "txn=t#2 id=m1 partition=out-0 offset=2")
            .note("t", TXN_WRITTEN, "txn=t#2 id=m2 partition=out-0 offset=3")
            .note("t", TXN_COMMITTED, "txn=t#2")
            .read_at(1, "c", "out-0", 0)
            .read_at(2, "c", "out-0", 1)
            .read_at(1, "c", "out-0", 2)
            .drained()
            .history();
        let found = check(&h);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].id.0, 2);
        assert!(found[0].detail.contains("t#2"), "{found:?}");
    }
}
