//! `aborted-read` (Jepsen's `:G1a`): a consumer delivered a message of a transaction its
//! producer aborted (reference §2.5, §2.7). Kafka allows it to read_uncommitted consumers;
//! read_committed consumers must never see one, yet a delayed EndTxn or Produce under the
//! pre-KIP-890 protocol can make an aborted transaction's message readable anyway.
//! The transaction's outcome is the producer's (`transactions.rs`), as Jepsen judges it.
//! A read is of the aborted record when it is at the record's written position; by id only
//! where the history does not know that position (`Reads::first_read`), so a committed copy
//! of the same message written again later (consume-transform-produce after an abort) is
//! not taken for it.

use super::transactions::{transactions, Reads, TxnOutcome};
use super::{Anomaly, AnomalyKind, Checker, PublishIndex, Runs};
use crate::history::{History, Name};

pub const ABORTED_READ: AnomalyKind = AnomalyKind::message("aborted-read");

/// Each consumer group reads on its own.
pub const CHECKER: Checker = Checker {
    kinds: &[ABORTED_READ],
    runs: Runs::PerGroup,
    check: |history, index, found| check_indexed(history, index).into_iter().for_each(found),
};

pub fn check(history: &History) -> Vec<Anomaly> {
    check_indexed(history, &PublishIndex::build(history))
}

pub fn check_indexed(history: &History, _index: &PublishIndex) -> Vec<Anomaly> {
    let txns = transactions(history);
    let reads = Reads::build(history, &txns);
    let mut anomalies = Vec::new();
    for (name, txn) in &txns {
        let Some((TxnOutcome::Aborted, aborted_at, producer)) = &txn.outcome else {
            continue;
        };
        for id in &txn.members {
            let Some((time, consumer)) = reads.first_read(txn, *id) else {
                continue;
            };
            let (mut times, mut hosts) = (vec![*aborted_at, time], vec![Name::new(producer), consumer.clone()]);
            if time < *aborted_at {
                times.reverse();
                hosts.reverse();
            }
            anomalies.push(Anomaly {
                kind: ABORTED_READ,
                id: *id,
                times,
                hosts,
                detail: format!("of transaction {name}, which {producer} aborted, delivered to {consumer}"),
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

    #[test]
    fn a_delivered_message_of_an_aborted_transaction_is_an_aborted_read() {
        let h = Build::new()
            .publish(1)
            .note("p", TXN_PUBLISH, "txn=p#1 id=m1")
            .publish(2)
            .note("p", TXN_PUBLISH, "txn=p#2 id=m2")
            .note("p", TXN_ABORTED, "txn=p#1")
            .note("p", TXN_COMMITTED, "txn=p#2")
            .deliver(1, 1)
            .deliver(2, 1)
            .history();
        let found = check(&h);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].id.0, 1);
        assert!(found[0].detail.contains("p#1"));
    }

    #[test]
    fn an_undelivered_aborted_message_or_an_unknown_outcome_is_not() {
        let h = Build::new()
            .publish(1)
            .note("p", TXN_PUBLISH, "txn=p#1 id=m1")
            .note("p", TXN_ABORTED, "txn=p#1")
            .publish(2)
            .note("p", TXN_PUBLISH, "txn=p#2 id=m2")
            .deliver(2, 1)
            .history();
        assert!(check(&h).is_empty());
    }

    /// Consume-transform-produce: the producer's committed m1 in `in-0`, the transformer's
    /// aborted copy at `out-0@0`, its committed copy at `out-0@1`. A read of `out-0@1` is
    /// the committed copy's; by id alone it was taken for the aborted one.
    fn rewritten_after_an_abort() -> Build {
        let mut b = Build::new();
        b.publish(1)
            .note("p", TXN_PUBLISH, "txn=p#1 id=m1")
            .note("p", TXN_WRITTEN, "txn=p#1 id=m1 partition=in-0 offset=0")
            .note("p", TXN_COMMITTED, "txn=p#1")
            .note("t", TXN_PUBLISH, "txn=t#1 id=m1")
            .note("t", TXN_WRITTEN, "txn=t#1 id=m1 partition=out-0 offset=0")
            .note("t", TXN_ABORTED, "txn=t#1")
            .note("t", TXN_PUBLISH, "txn=t#2 id=m1")
            .note("t", TXN_WRITTEN, "txn=t#2 id=m1 partition=out-0 offset=2")
            .note("t", TXN_COMMITTED, "txn=t#2");
        b
    }

    #[test]
    fn a_read_of_the_committed_copy_of_a_rewritten_message_is_not_an_aborted_read() {
        let h = rewritten_after_an_abort().read_at(1, "c", "out-0", 2).history();
        assert!(check(&h).is_empty(), "{:?}", check(&h));
    }

    #[test]
    fn a_read_at_the_aborted_copys_position_is_an_aborted_read() {
        let h = rewritten_after_an_abort().read_at(1, "c", "out-0", 0).history();
        let found = check(&h);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].detail.contains("t#1"), "{found:?}");
    }

    #[test]
    fn without_the_aborted_copys_position_reads_at_other_records_positions_are_not_its() {
        // t#1's produce went unanswered: its position is unknown, so reads are matched by
        // id, except one at a position another transaction wrote m1 at.
        let mut b = Build::new();
        b.publish(1)
            .note("t", TXN_PUBLISH, "txn=t#1 id=m1")
            .note("t", TXN_ABORTED, "txn=t#1")
            .note("t", TXN_PUBLISH, "txn=t#2 id=m1")
            .note("t", TXN_WRITTEN, "txn=t#2 id=m1 partition=out-0 offset=1")
            .note("t", TXN_COMMITTED, "txn=t#2");
        b.read_at(1, "c", "out-0", 1);
        assert!(check(&b.history()).is_empty());
        b.read_at(1, "c", "out-0", 0);
        assert_eq!(check(&b.history()).len(), 1, "a read nothing else explains is judged by id");
    }
}
