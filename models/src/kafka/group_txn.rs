//! Transactional offset commits at the group coordinator (KIP-98's consume-transform-produce;
//! Kafka's `GroupCoordinator.handleTxnCommitOffsets` and `GroupMetadata`'s pending
//! transactional offsets).
//!
//! - TxnOffsetCommit appends the offsets to the group's `__consumer_offsets` partition as a
//!   transactional batch of the producer (acks=all). Once appended they are pending for that
//!   producer id, invisible to OffsetFetch.
//! - The transaction's marker on that partition ends them: COMMIT makes them the group's
//!   committed offsets, ABORT drops them ([`GroupCoordinator::txn_completed`]). Here that
//!   happens when the leader appends the marker; Kafka waits for the append's acks=all.
//! - A commit naming a member must come from a member of the group, and one naming a
//!   generation from the current one (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION); one naming
//!   neither (TxnOffsetCommit v0-2, or a producer outside the group) is taken, as Kafka's is.
//!
//! - A coordinator loading the partition (after a failover) replays the log's transactional
//!   batches and markers the same way, as Kafka's `doLoadGroupsAndOffsets` does: offsets of
//!   a transaction the log has no marker for yet stay pending.

use super::*;
use crate::kafka::batch::NO_SEQUENCE;

impl GroupCoordinator {
    /// TxnOffsetCommit: checks the group, member and generation, then appends the offsets
    /// as the producer's transactional batch.
    pub fn txn_commit(
        &mut self,
        request: RequestId,
        commit: CommitRequest,
        (producer_id, producer_epoch): (i64, i16),
        now_ms: u64,
    ) -> CommitStep {
        let CommitRequest {
            group,
            member_id,
            generation_id,
            offsets,
            mut refused,
        } = commit;
        let checked = self
            .status(&group)
            .and_then(|()| self.validate_txn_commit(&group, &member_id, generation_id));
        if let Err(error) = checked {
            refused.extend(offsets.iter().map(|o| (o.topic.clone(), o.partition, Err(error))));
            return CommitStep::Done(refused);
        }
        if offsets.is_empty() {
            return CommitStep::Done(refused);
        }
        let records = offsets.iter().map(|o| commit_record(&group, o)).collect();
        let batch = Batch {
            producer_id,
            producer_epoch,
            // The coordinator's own write: Kafka appends it without a sequence.
            base_sequence: NO_SEQUENCE,
            transactional: true,
            ..Batch::plain(records)
        };
        let partition = self.partition_of(&group);
        self.pending_commits.insert(
            request,
            PendingCommit {
                group,
                stored: offsets,
                refused,
                producer_id: Some(producer_id),
            },
        );
        let _ = now_ms; // a TxnOffsetCommit does not extend the member's session
        CommitStep::Append { partition, batch }
    }

    /// Kafka's `doTxnCommitOffsets` checks: the group is created if new (a producer outside
    /// any group may commit offsets), a named member must be one, a named generation the
    /// current one.
    fn validate_txn_commit(
        &mut self,
        group: &str,
        member_id: &str,
        generation_id: i32,
    ) -> Result<(), GroupError> {
        if !self.groups.contains_key(group) {
            if self.groups.len() >= GROUPS_MAX {
                return Err(GroupError::CoordinatorNotAvailable);
            }
            self.groups
                .insert(group.to_string(), Group::new(self.config.clone()));
        }
        let state = &self.groups[group];
        if state.state() == crate::kafka::group::GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if !member_id.is_empty() && !state.has_member(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if generation_id >= 0 && generation_id != state.generation_id() {
            return Err(GroupError::IllegalGeneration);
        }
        Ok(())
    }

    /// Whether `request` is a TxnOffsetCommit waiting for its append.
    pub fn is_txn_commit(&self, request: RequestId) -> bool {
        self.pending_commits
            .get(&request)
            .is_some_and(|p| p.producer_id.is_some())
    }

    /// The TxnOffsetCommit's batch was appended (or refused): on success its offsets wait
    /// for the transaction's end.
    pub(super) fn txn_commit_appended(
        &mut self,
        pending: PendingCommit,
        producer_id: i64,
        outcome: Result<(), GroupError>,
        loaded: bool,
    ) -> Vec<PartitionCommit> {
        let outcome = if loaded {
            outcome
        } else {
            Err(GroupError::NotCoordinator)
        };
        let mut answers = pending.refused;
        if outcome.is_ok() {
            let waiting = self
                .txn_offsets
                .entry(pending.group.clone())
                .or_default()
                .entry(producer_id)
                .or_default();
            for stored in &pending.stored {
                if waiting.len() < GROUP_OFFSETS_MAX {
                    waiting.insert((stored.topic.clone(), stored.partition), stored.offset.clone());
                }
            }
        }
        answers.extend(
            pending
                .stored
                .into_iter()
                .map(|s| (s.topic, s.partition, outcome)),
        );
        answers
    }

    /// A transaction marker was appended to offsets partition `partition`: the producer's
    /// pending offsets of every group there become committed (`commit`) or are dropped.
    pub fn txn_completed(&mut self, partition: i32, producer_id: i64, commit: bool) {
        let n = self.config.offsets_topic_partitions;
        let groups: Vec<String> = self
            .txn_offsets
            .keys()
            .filter(|g| partition_for(g, n) == partition)
            .cloned()
            .collect();
        for group in groups {
            let pending = self.txn_offsets.get_mut(&group).expect("listed");
            let Some(offsets) = pending.remove(&producer_id) else {
                continue;
            };
            if pending.is_empty() {
                self.txn_offsets.remove(&group);
            }
            if !commit {
                self.notes.push("kafka.txn_offsets_aborted");
                continue;
            }
            let cache = self.offsets.entry(group).or_default();
            for (key, offset) in offsets {
                if cache.len() < GROUP_OFFSETS_MAX || cache.contains_key(&key) {
                    cache.insert(key, offset);
                }
            }
            self.notes.push("kafka.txn_offsets_committed");
        }
    }

    /// Loading: one transactional batch of the partition's log, a TxnOffsetCommit's offsets
    /// (pending) or a marker (ending them).
    pub(super) fn load_txn_batch(&mut self, partition: i32, batch: &Batch) {
        if batch.control {
            if let Some(control) = batch.control_type() {
                let commit = control == crate::kafka::batch::ControlType::Commit;
                self.txn_completed(partition, batch.producer_id, commit);
            }
            return;
        }
        for record in &batch.records {
            let Some(key) = record.key.as_deref() else {
                continue;
            };
            match offset_record::decode(key, record.value.as_deref()) {
                Ok(OffsetsRecord::Commit(key, value)) => {
                    let waiting = self
                        .txn_offsets
                        .entry(key.group)
                        .or_default()
                        .entry(batch.producer_id)
                        .or_default();
                    if waiting.len() < GROUP_OFFSETS_MAX {
                        waiting.insert((key.topic, key.partition), value);
                    }
                }
                Ok(_) => {}
                Err(_) => self.notes.push("kafka.offsets_record_unreadable"),
            }
        }
    }

    /// Whether an open transaction would commit an offset of `group` for this partition
    /// (OffsetFetch's `require_stable` answers UNSTABLE_OFFSET_COMMIT then).
    pub fn txn_offsets_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        let key = (topic.to_string(), partition);
        self.txn_offsets
            .get(group)
            .is_some_and(|by_producer| by_producer.values().any(|offsets| offsets.contains_key(&key)))
    }

    /// The offsets a producer's open transaction would commit for `group` (for tests and
    /// the timeline).
    pub fn pending_txn_offsets(&self, group: &str, producer_id: i64) -> Vec<(String, i32, i64)> {
        self.txn_offsets
            .get(group)
            .and_then(|p| p.get(&producer_id))
            .into_iter()
            .flatten()
            .map(|((t, p), o)| (t.clone(), *p, o.offset))
            .collect()
    }
}
