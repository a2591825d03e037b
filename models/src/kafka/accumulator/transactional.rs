//! What the transactional producer asks of the accumulator (Kafka `RecordAccumulator` and
//! `TransactionManager` with a `transactional.id`): which partitions may be drained, the
//! abort of batches never sent, and the epoch the coordinator hands out.

use super::*;

impl Accumulator {
    /// The partitions in the transaction now: only their batches are drained.
    pub fn set_transaction_partitions(&mut self, partitions: &BTreeSet<Partition>) {
        assert!(
            self.config.transactional,
            "only a transactional producer has partitions in a transaction"
        );
        self.transaction_partitions = partitions.clone();
    }

    /// Kafka `abortUndrainedBatches` with a transaction manager: batches without a sequence
    /// (never sent) fail; a batch that was sent keeps its sequence and must complete, so the
    /// EndTxn waits for it.
    pub fn abort_undrained(&mut self) {
        let undrained: Vec<BatchId> = self
            .queues
            .values()
            .flatten()
            .copied()
            .filter(|id| self.batches[id].base_sequence.is_none())
            .collect();
        for id in undrained {
            let partition = self.batches[&id].partition;
            if let Some(queue) = self.queues.get_mut(&partition) {
                queue.retain(|q| *q != id);
            }
            let b = self.batches.get_mut(&id).expect("queued batch");
            b.done = true;
            for (record, _) in &b.records {
                self.outcomes.push((
                    *record,
                    Outcome::Failed {
                        reason: FailReason::TransactionAborted,
                    },
                ));
            }
            self.forget_if_finished(id);
        }
    }

    /// Whether the sequences asked for an epoch bump since the last call (an expired batch
    /// whose sequence was not caught up): the transactional producer gets it from the
    /// coordinator (Kafka `maybeResolveSequences` setting `epochBumpRequired`).
    pub fn take_epoch_bump_request(&mut self) -> bool {
        self.epoch_bump_partitions.clear();
        std::mem::take(&mut self.epoch_bump_required)
    }
}
