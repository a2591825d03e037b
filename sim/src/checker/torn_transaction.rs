//! `torn-transaction`: in a run that drained, a consumer group delivered some messages of a
//! transaction its producer committed but never another of them (Jepsen's Bufstream analysis,
//! reference §2.5: a delayed commit or abort applied to the wrong transaction tears it). In a
//! run that did not drain the missing part may only be late, so nothing is judged.

use super::transactions::{first_deliveries, transactions, TxnOutcome};
use super::{Anomaly, AnomalyKind, Checker, PublishIndex, Runs};
use crate::history::{History, Name};

pub const TORN_TRANSACTION: AnomalyKind = AnomalyKind::message("torn-transaction");

/// Each consumer group owes every committed transaction whole.
pub const CHECKER: Checker = Checker {
    kinds: &[TORN_TRANSACTION],
    runs: Runs::PerGroup,
    check: check_indexed,
};

pub fn check(history: &History) -> Vec<Anomaly> {
    check_indexed(history, &PublishIndex::build(history))
}

pub fn check_indexed(history: &History, _index: &PublishIndex) -> Vec<Anomaly> {
    if !history.drained() {
        return Vec::new();
    }
    let delivered = first_deliveries(history);
    let mut anomalies = Vec::new();
    for (name, txn) in transactions(history) {
        let Some((TxnOutcome::Committed, committed_at, producer)) = &txn.outcome else {
            continue;
        };
        let Some(seen) = txn.members.iter().find(|id| delivered.contains_key(id)) else {
            continue; // nothing of it read: `lost` judges whole losses
        };
        let (seen_at, consumer) = &delivered[seen];
        for id in txn.members.iter().filter(|id| !delivered.contains_key(id)) {
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
    use crate::checker::transactions::{TXN_COMMITTED, TXN_PUBLISH};

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
}
