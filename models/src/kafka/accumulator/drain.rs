//! Which batches go out now, and in which requests (Kafka `RecordAccumulator.ready`,
//! `drainBatchesForOneNode`, `shouldStopDrainBatchesForPartition`).

use super::*;

impl Accumulator {
    /// One request per broker whose connection has room, one batch per ready partition.
    pub(super) fn drain(&mut self, now_ms: u64) -> Vec<ProduceRequestPlan> {
        let mut by_broker: BTreeMap<BrokerId, Vec<Partition>> = BTreeMap::new();
        for (partition, broker) in &self.leaders {
            by_broker.entry(*broker).or_default().push(*partition);
        }
        let mut plans = Vec::new();
        for (broker, partitions) in by_broker {
            if self.in_flight(broker) >= self.config.max_in_flight {
                continue;
            }
            let mut batch_ids = Vec::new();
            for partition in partitions {
                if self.is_drainable(partition, now_ms) {
                    let id = self
                        .queues
                        .get_mut(&partition)
                        .and_then(VecDeque::pop_front)
                        .expect("drainable");
                    batch_ids.push(id);
                }
            }
            if batch_ids.is_empty() {
                continue;
            }
            let request_id = self.next_request_id;
            self.next_request_id += 1;
            let batches = batch_ids
                .iter()
                .map(|id| self.send_batch(*id, request_id))
                .collect();
            self.requests.insert(
                request_id,
                InFlight {
                    broker,
                    batches: batch_ids,
                    deadline_ms: now_ms + self.config.request_timeout_ms,
                },
            );
            if self.config.acks == 0 {
                self.complete_unanswered(request_id);
            }
            plans.push(ProduceRequestPlan {
                request_id,
                broker,
                batches,
            });
        }
        plans
    }

    /// acks=0: the request is done once sent, its batches succeed without an offset (Kafka
    /// `Sender.handleProduceResponse`, "this is the acks = 0 case, just complete all
    /// requests").
    fn complete_unanswered(&mut self, request_id: RequestId) {
        let request = self.requests.remove(&request_id).expect("just planned");
        for batch_id in request.batches {
            let b = self.batches.get_mut(&batch_id).expect("a batch in a request");
            b.in_request = None;
            self.succeed(batch_id, None);
            self.forget_if_finished(batch_id);
        }
    }

    /// Whether the partition's first batch can be sent now.
    fn is_drainable(&self, partition: Partition, now_ms: u64) -> bool {
        let Some(queue) = self.queues.get(&partition) else {
            return false;
        };
        let Some(first) = queue.front().map(|id| &self.batches[id]) else {
            return false;
        };
        if self.config.transactional && !self.transaction_partitions.contains(&partition) {
            // Kafka `isSendToPartitionAllowed`: not before AddPartitionsToTxn is answered.
            return false;
        }
        let waited_ms = now_ms.saturating_sub(first.last_attempt_ms);
        let backing_off = first.attempts > 0 && waited_ms < self.config.retry_backoff_ms;
        let full = queue.len() > 1 || first.closed;
        if backing_off || !(full || waited_ms >= self.config.linger_ms) {
            return false;
        }
        // Kafka's guaranteeMessageOrder: with one request per connection, a partition with a
        // batch in flight is muted until it completes.
        if self.config.max_in_flight == 1 && self.has_batch_in_flight(partition) {
            return false;
        }
        !self.config.enable_idempotence || self.idempotent_may_drain(first)
    }

    fn has_batch_in_flight(&self, partition: Partition) -> bool {
        self.requests
            .values()
            .flat_map(|r| r.batches.iter())
            .any(|id| self.batches[id].partition == partition)
    }

    /// Close the batch, give it its producer state if it has none, and build what the wire
    /// carries.
    fn send_batch(&mut self, id: BatchId, request_id: RequestId) -> (Partition, Batch) {
        if self.config.enable_idempotence && self.batches[&id].base_sequence.is_none() {
            self.assign_sequence(id);
        }
        let b = self.batches.get_mut(&id).expect("drained batch");
        b.closed = true;
        b.in_request = Some(request_id);
        let batch = Batch {
            producer_id: b.producer_id,
            producer_epoch: b.producer_epoch,
            base_sequence: b.base_sequence.unwrap_or(super::super::batch::NO_SEQUENCE),
            transactional: self.config.transactional,
            ..Batch::plain(b.records.iter().map(|(_, r)| r.clone()).collect())
        };
        (b.partition, batch)
    }
}
