//! `aborted-read` (Jepsen's `:G1a`): a consumer delivered a message of a transaction its
//! producer aborted (reference §2.5, §2.7). Kafka allows it to read_uncommitted consumers;
//! read_committed consumers must never see one, yet a delayed EndTxn or Produce under the
//! pre-KIP-890 protocol can make an aborted transaction's message readable anyway.
//! The transaction's outcome is the producer's (`transactions.rs`), as Jepsen judges it.

use super::transactions::{first_deliveries, transactions, TxnOutcome};
use super::{Anomaly, AnomalyKind, Checker, PublishIndex, Runs};
use crate::history::{History, Name};

pub const ABORTED_READ: AnomalyKind = AnomalyKind::message("aborted-read");

/// Each consumer group reads on its own.
pub const CHECKER: Checker = Checker {
    kinds: &[ABORTED_READ],
    runs: Runs::PerGroup,
    check: check_indexed,
};

pub fn check(history: &History) -> Vec<Anomaly> {
    check_indexed(history, &PublishIndex::build(history))
}

pub fn check_indexed(history: &History, _index: &PublishIndex) -> Vec<Anomaly> {
    let delivered = first_deliveries(history);
    let mut anomalies = Vec::new();
    for (name, txn) in transactions(history) {
        let Some((TxnOutcome::Aborted, aborted_at, producer)) = &txn.outcome else {
            continue;
        };
        for id in &txn.members {
            let Some((time, consumer)) = delivered.get(id) else {
                continue;
            };
            let (mut times, mut hosts) = (vec![*aborted_at, *time], vec![Name::new(producer), consumer.clone()]);
            if time < aborted_at {
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
    use crate::checker::transactions::{TXN_ABORTED, TXN_COMMITTED, TXN_PUBLISH};

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
}
