//! What happens to a batch after an attempt, or when its delivery timeout passes (Kafka
//! `Sender.completeBatch`, `canRetry`, `failBatch`, `RecordAccumulator.reenqueue`,
//! `expiredBatches`, `Sender.getExpiredInflightBatches`).

use super::*;

impl Accumulator {
    /// An attempt of `id` ended with `result`; the batch is no longer in a request.
    pub(super) fn complete_attempt(&mut self, id: BatchId, result: PartitionResult, now_ms: u64) {
        let b = self.batches.get_mut(&id).expect("a batch in a request");
        b.in_request = None;
        match result {
            Ok(base_offset) => self.succeed(id, Some(base_offset)),
            Err(error) => {
                if error.may_have_appended() {
                    b.maybe_appended = true;
                }
                if self.can_retry(id, error, now_ms) {
                    self.reenqueue(id, now_ms);
                } else if error == KafkaError::DuplicateSequenceNumber {
                    // The leader has the batch but no longer its offset: Kafka completes it
                    // as a success without one.
                    self.succeed(id, None);
                } else {
                    let adjust = self.batches[&id].attempts < self.config.retries;
                    self.fail(id, FailReason::Broker(error), adjust);
                }
            }
        }
        self.forget_if_finished(id);
    }

    fn delivery_deadline_passed(&self, b: &ProducerBatch, now_ms: u64) -> bool {
        now_ms.saturating_sub(b.created_ms) >= self.config.delivery_timeout_ms
    }

    /// Kafka `Sender.canRetry`.
    fn can_retry(&mut self, id: BatchId, error: KafkaError, now_ms: u64) -> bool {
        let b = &self.batches[&id];
        if self.delivery_deadline_passed(b, now_ms) || b.attempts >= self.config.retries || b.done {
            return false;
        }
        if self.config.enable_idempotence {
            self.idempotent_can_retry(id, error)
        } else {
            error.is_retriable()
        }
    }

    /// Back into its queue: at the front, or with idempotence in sequence order among the
    /// batches that already have one (Kafka `insertInSequenceOrder`). Without idempotence a
    /// closed connection's requests come back oldest first (`InFlightRequests.clearAll`
    /// walks its deque backwards) and each goes to the front (`addFirst`), so the retries
    /// leave newest first: the reordering of reference §2.4.
    fn reenqueue(&mut self, id: BatchId, now_ms: u64) {
        let b = self.batches.get_mut(&id).expect("a batch to retry");
        b.attempts += 1;
        b.last_attempt_ms = now_ms;
        let (partition, sequence) = (b.partition, b.base_sequence);
        let queue = self.queues.entry(partition).or_default();
        let position = match sequence {
            None => 0,
            Some(s) => queue
                .iter()
                .position(|q| self.batches[q].base_sequence.is_none_or(|t| t > s))
                .unwrap_or(queue.len()),
        };
        queue.insert(position, id);
    }

    pub(super) fn succeed(&mut self, id: BatchId, base_offset: Option<i64>) {
        if self.config.enable_idempotence {
            self.sequence_acked(id);
        }
        let b = self.batches.get_mut(&id).expect("a batch to complete");
        if b.done {
            // It expired while in flight; the reply still counts for the sequences above.
            return;
        }
        b.done = true;
        for (i, (record, _)) in b.records.iter().enumerate() {
            let offset = base_offset.map(|o| o + i as i64);
            self.outcomes.push((*record, Outcome::Acked { offset }));
        }
    }

    fn fail(&mut self, id: BatchId, reason: FailReason, adjust_sequences: bool) {
        if self.config.enable_idempotence {
            self.sequence_failed(id, reason, adjust_sequences);
        }
        let b = self.batches.get_mut(&id).expect("a batch to fail");
        if b.done {
            return;
        }
        b.done = true;
        let outcome = if b.maybe_appended || b.in_request.is_some() {
            Outcome::Unknown { reason }
        } else {
            Outcome::Failed { reason }
        };
        for (record, _) in &b.records {
            self.outcomes.push((*record, outcome));
        }
    }

    /// Drop a batch once its outcome is out and no request carries it.
    pub(super) fn forget_if_finished(&mut self, id: BatchId) {
        if self
            .batches
            .get(&id)
            .is_some_and(|b| b.done && b.in_request.is_none())
        {
            self.batches.remove(&id);
        }
    }

    /// Fail the batches `delivery.timeout.ms` after their creation: queued ones from the
    /// front of each queue, in-flight ones where they stand (their request keeps its slot
    /// until it is answered or times out).
    pub(super) fn expire_batches(&mut self, now_ms: u64) {
        let mut expired = Vec::new();
        let partitions: Vec<Partition> = self.queues.keys().copied().collect();
        for partition in partitions {
            while let Some(id) = self.queues[&partition].front().copied() {
                if !self.delivery_deadline_passed(&self.batches[&id], now_ms) {
                    break;
                }
                self.queues.get_mut(&partition).expect("listed").pop_front();
                expired.push(id);
            }
        }
        expired.extend(
            self.batches
                .iter()
                .filter(|(_, b)| {
                    b.in_request.is_some() && !b.done && self.delivery_deadline_passed(b, now_ms)
                })
                .map(|(id, _)| *id),
        );
        for id in expired {
            self.fail(id, FailReason::DeliveryTimeout, false);
            if self.config.enable_idempotence && self.batches[&id].attempts > 0 {
                // Kafka marks only a batch in retry: its earlier attempt may have landed.
                self.mark_unresolved(id);
            }
            self.forget_if_finished(id);
        }
    }
}
