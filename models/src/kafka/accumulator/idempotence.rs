//! The idempotent producer's sequence bookkeeping (Kafka `TransactionManager` for a
//! producer without `transactional.id`).

use super::*;

impl Accumulator {
    /// Kafka `shouldStopDrainBatchesForPartition`, negated.
    pub(super) fn idempotent_may_drain(&self, first: &ProducerBatch) -> bool {
        let Some(current) = self.producer else {
            // No producer id yet: nothing is sent until InitProducerId is answered.
            return false;
        };
        let sequences = self.sequences.get(&first.partition);
        let outstanding = sequences.is_some_and(|s| !s.outstanding.is_empty());
        if first.base_sequence.is_none() {
            // A new batch waits while older batches of another producer id or epoch are
            // outstanding (its sequence 0 could overtake them), and while the fate of an
            // expired batch's sequence is unknown.
            let stale = sequences.is_some_and(|s| s.producer != Some(current));
            if outstanding && stale {
                return false;
            }
            if sequences.is_some_and(|s| s.unresolved.is_some()) {
                return false;
            }
        }
        // A retried batch goes only when it is the lowest outstanding sequence, which brings
        // the partition down to one request in flight until the retries are through.
        match (
            first.base_sequence,
            self.first_outstanding_sequence(first.partition),
        ) {
            (Some(sequence), Some(lowest)) => sequence == lowest,
            _ => true,
        }
    }

    fn first_outstanding_sequence(&self, partition: Partition) -> Option<i32> {
        let sequences = self.sequences.get(&partition)?;
        sequences
            .outstanding
            .iter()
            .filter_map(|id| self.batches[id].base_sequence)
            .min()
    }

    /// Kafka's drain for a batch without a sequence: move the partition to the current
    /// producer id and epoch if it has nothing outstanding, then number the batch.
    pub(super) fn assign_sequence(&mut self, id: BatchId) {
        let current = self.producer.expect("drained with a producer id");
        let partition = self.batches[&id].partition;
        let sequences = self.sequences.entry(partition).or_insert_with(Sequences::new);
        if sequences.producer != Some(current) && sequences.outstanding.is_empty() {
            self.start_sequences_at_beginning(partition);
        }
        let sequences = self.sequences.get_mut(&partition).expect("created above");
        let b = self.batches.get_mut(&id).expect("drained batch");
        (b.producer_id, b.producer_epoch) = current;
        b.base_sequence = Some(sequences.next_sequence);
        sequences.next_sequence = increment_sequence(sequences.next_sequence, b.records.len() as i32);
        sequences.outstanding.insert(id);
    }

    /// Kafka `startSequencesAtBeginning`: renumber the outstanding batches from 0 under the
    /// current producer id and epoch.
    fn start_sequences_at_beginning(&mut self, partition: Partition) {
        let current = self.producer;
        let sequences = self.sequences.entry(partition).or_insert_with(Sequences::new);
        let mut outstanding: Vec<BatchId> = sequences.outstanding.iter().copied().collect();
        outstanding.sort_by_key(|id| self.batches[id].base_sequence);
        let mut next = 0;
        for id in outstanding {
            let b = self.batches.get_mut(&id).expect("outstanding batch");
            if let Some((producer_id, epoch)) = current {
                (b.producer_id, b.producer_epoch) = (producer_id, epoch);
            }
            b.base_sequence = Some(next);
            b.sequence_reset = true;
            next = increment_sequence(next, b.records.len() as i32);
        }
        sequences.producer = current;
        sequences.next_sequence = next;
        sequences.last_acked_sequence = -1;
    }

    /// Kafka `TransactionManager.canRetry` for an idempotent producer.
    pub(super) fn idempotent_can_retry(&mut self, id: BatchId, error: KafkaError) -> bool {
        let b = &self.batches[&id];
        let (partition, base, reset) = (b.partition, b.base_sequence, b.sequence_reset);
        let sequences = self
            .sequences
            .get(&partition)
            .expect("a sent batch has sequences");
        match error {
            KafkaError::UnknownProducerId => {
                if !reset {
                    self.request_epoch_bump(partition);
                }
                true
            }
            KafkaError::OutOfOrderSequenceNumber => {
                let base = base.expect("a sent batch has a sequence");
                let unresolved = sequences.unresolved;
                if unresolved.is_none() && (reset || !sequences.is_next(base)) {
                    // Not the next batch: the one before it failed; wait for its retry.
                    return true;
                }
                if unresolved.is_none() || unresolved == Some(base) {
                    // A real gap in the sequence: bump the epoch and start again at 0.
                    self.request_epoch_bump(partition);
                }
                true
            }
            _ => error.is_retriable(),
        }
    }

    fn request_epoch_bump(&mut self, partition: Partition) {
        self.epoch_bump_required = true;
        self.epoch_bump_partitions.insert(partition);
    }

    /// Kafka `bumpIdempotentEpochAndResetIdIfNeeded`: the idempotent producer bumps its epoch
    /// locally, with no request to the broker, and renumbers the partitions that asked.
    pub(super) fn bump_epoch_if_required(&mut self) {
        if !self.epoch_bump_required {
            return;
        }
        let Some((producer_id, epoch)) = self.producer else {
            return;
        };
        // At the last epoch Kafka drops the id and asks InitProducerId for a new one.
        self.producer = (epoch < i16::MAX).then_some((producer_id, epoch + 1));
        let partitions = std::mem::take(&mut self.epoch_bump_partitions);
        for partition in partitions {
            self.start_sequences_at_beginning(partition);
            if let Some(s) = self.sequences.get_mut(&partition) {
                s.unresolved = None;
            }
        }
        self.epoch_bump_required = false;
    }

    /// Kafka `maybeResolveSequences`: once an unresolved partition has nothing outstanding,
    /// either later batches were acknowledged past the expired one, or the epoch is bumped.
    pub(super) fn resolve_sequences(&mut self) {
        let unresolved: Vec<Partition> = self
            .sequences
            .iter()
            .filter(|(_, s)| s.unresolved.is_some() && s.outstanding.is_empty())
            .map(|(p, _)| *p)
            .collect();
        for partition in unresolved {
            let s = self.sequences.get_mut(&partition).expect("listed above");
            let caught_up = s.is_next(s.next_sequence);
            s.unresolved = None;
            if !caught_up {
                self.request_epoch_bump(partition);
            }
        }
    }

    /// Kafka `markSequenceUnresolved`, for a batch that expired after a retry.
    pub(super) fn mark_unresolved(&mut self, id: BatchId) {
        let b = &self.batches[&id];
        let Some(last) = b.last_sequence() else {
            return;
        };
        let next = increment_sequence(last, 1);
        let s = self
            .sequences
            .get_mut(&b.partition)
            .expect("a sent batch has sequences");
        s.unresolved = Some(s.unresolved.map_or(next, |u| u.max(next)));
    }

    /// Kafka `handleCompletedBatch`.
    pub(super) fn sequence_acked(&mut self, id: BatchId) {
        let b = &self.batches[&id];
        let last = b.last_sequence();
        let Some(s) = self.sequences.get_mut(&b.partition) else {
            return;
        };
        if let Some(last) = last {
            s.last_acked_sequence = s.last_acked_sequence.max(last);
        }
        s.outstanding.remove(&id);
    }

    /// Kafka `handleFailedBatch` for an idempotent producer: a sequence error, or a batch
    /// failed while it still had retries (so its sequence may be spent), bumps the epoch.
    pub(super) fn sequence_failed(&mut self, id: BatchId, reason: FailReason, adjust_sequences: bool) {
        let partition = self.batches[&id].partition;
        if let Some(s) = self.sequences.get_mut(&partition) {
            s.outstanding.remove(&id);
        }
        let sequence_error = matches!(
            reason,
            FailReason::Broker(KafkaError::OutOfOrderSequenceNumber | KafkaError::UnknownProducerId)
        );
        if sequence_error || adjust_sequences {
            self.request_epoch_bump(partition);
        }
    }
}
