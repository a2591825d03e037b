//! What a partition's leader remembers about idempotent producers, and the check it makes
//! before appending one of their batches, sans I/O (Kafka `ProducerStateManager`,
//! `ProducerStateEntry`, `ProducerAppendInfo`, `UnifiedLog.analyzeAndValidateProducerState`;
//! reference §2.4).
//!
//! - Per producer id: its epoch and the metadata (first/last sequence, first/last offset) of
//!   its last [`NUM_BATCHES_TO_RETAIN`] batches, oldest first.
//! - A batch whose epoch and exact sequence range match a remembered batch is a duplicate: it
//!   is not appended and the producer is answered with the original offset. The duplicate
//!   check comes first, before the epoch and sequence checks.
//! - A lower epoch is refused (`INVALID_PRODUCER_EPOCH`). A higher epoch must start at
//!   sequence 0, the same epoch at the last sequence plus one (`OUT_OF_ORDER_SEQUENCE_NUMBER`
//!   otherwise, which is also the answer to a retry older than the five remembered batches).
//! - With no state for the producer id (never seen, expired, or its batches deleted), any
//!   sequence is accepted: "If there is no current producer epoch ... accept writes with any
//!   sequence number" (`ProducerAppendInfo.checkSequence`).
//! - A follower, or a leader after truncating its log, rebuilds this state from the batches
//!   in its log, without checks (Kafka's `AppendOrigin.REPLICATION` and `truncateAndReload`).
//! - A producer whose last batch is `producer.id.expiration.ms` old is forgotten; Kafka looks
//!   every `producer.id.expiration.check.interval.ms`.
//!
//! Kafka keeps each batch's max timestamp as the producer's last timestamp; our batches carry
//! no timestamp, so the caller passes the time the batch was appended.

use super::batch::Batch;
use super::error::KafkaError;
use std::collections::{BTreeMap, VecDeque};

/// Kafka `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`: why `max.in.flight.requests.per.connection`
/// must be at most 5 with idempotence.
pub const NUM_BATCHES_TO_RETAIN: usize = 5;
/// `producer.id.expiration.ms` default: one day.
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: u64 = 86_400_000;
/// `producer.id.expiration.check.interval.ms` default: ten minutes.
pub const PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS: u64 = 600_000;
/// Kafka `RecordBatch.NO_PRODUCER_EPOCH`: no state for the producer.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// A bound on the producers one partition remembers, so a run cannot grow without limit.
pub const PRODUCERS_MAX: usize = 100_000;

/// The sequence `count` records after `sequence`, wrapping past `i32::MAX` to 0 as Kafka's
/// `DefaultRecordBatch.incrementSequence` does.
pub fn increment_sequence(sequence: i32, count: i32) -> i32 {
    assert!(sequence >= 0 && count >= 0, "sequences are never negative");
    let next = sequence as i64 + count as i64;
    if next > i32::MAX as i64 {
        (next - i32::MAX as i64 - 1) as i32
    } else {
        next as i32
    }
}

/// The last sequence of an idempotent batch, with Kafka's wrap-around.
fn last_sequence(batch: &Batch) -> i32 {
    increment_sequence(batch.base_sequence, batch.len() as i32 - 1)
}

/// Kafka `ProducerAppendInfo.inSequence`.
fn in_sequence(last: i32, next: i32) -> bool {
    next as i64 == last as i64 + 1 || (next == 0 && last == i32::MAX)
}

/// One remembered batch (Kafka `BatchMetadata`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// What the leader remembers about one producer id on this partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Oldest first; at most [`NUM_BATCHES_TO_RETAIN`].
    pub batches: VecDeque<BatchMetadata>,
    /// When its last batch was appended.
    pub last_timestamp_ms: u64,
}

impl ProducerEntry {
    pub fn last_sequence(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_sequence)
    }

    /// Kafka `ProducerStateEntry.findDuplicateBatch`: same epoch, exact sequence range.
    fn find_duplicate(&self, batch: &Batch) -> Option<BatchMetadata> {
        if batch.producer_epoch != self.epoch {
            return None;
        }
        let last = last_sequence(batch);
        self.batches
            .iter()
            .find(|b| b.first_sequence == batch.base_sequence && b.last_sequence == last)
            .copied()
    }
}

/// What the leader does with an idempotent batch that passed the check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Append it, then [`ProducerState::record`] it.
    Append,
    /// It is already in the log: do not append, answer NONE with the original offsets.
    Duplicate { base_offset: i64, last_offset: i64 },
}

/// The producer state of one partition.
#[derive(Clone, Debug)]
pub struct ProducerState {
    producers: BTreeMap<i64, ProducerEntry>,
    expiration_ms: u64,
}

impl ProducerState {
    pub fn new(expiration_ms: u64) -> ProducerState {
        assert!(expiration_ms > 0, "producer.id.expiration.ms is at least 1");
        ProducerState {
            producers: BTreeMap::new(),
            expiration_ms,
        }
    }

    pub fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// The leader's check of a batch from a client, before appending it.
    pub fn check(&self, batch: &Batch) -> Result<Check, KafkaError> {
        assert!(batch.is_idempotent(), "only idempotent batches are checked");
        assert!(
            !batch.is_empty() && batch.base_sequence >= 0,
            "an idempotent batch has a sequence"
        );
        let entry = self.producers.get(&batch.producer_id);
        if let Some(dup) = entry.and_then(|e| e.find_duplicate(batch)) {
            return Ok(Check::Duplicate {
                base_offset: dup.first_offset,
                last_offset: dup.last_offset,
            });
        }
        let current_epoch = entry.map_or(NO_PRODUCER_EPOCH, |e| e.epoch);
        if batch.producer_epoch < current_epoch {
            return Err(KafkaError::InvalidProducerEpoch);
        }
        if current_epoch == NO_PRODUCER_EPOCH {
            // No state: any sequence is accepted.
            return Ok(Check::Append);
        }
        if batch.producer_epoch != current_epoch {
            return if batch.base_sequence == 0 {
                Ok(Check::Append)
            } else {
                Err(KafkaError::OutOfOrderSequenceNumber)
            };
        }
        let last = entry.and_then(ProducerEntry::last_sequence).unwrap_or(-1);
        if in_sequence(last, batch.base_sequence) {
            Ok(Check::Append)
        } else {
            Err(KafkaError::OutOfOrderSequenceNumber)
        }
    }

    /// The leader's check of a transaction marker: one from an older epoch than the
    /// producer's is refused (Kafka `ProducerAppendInfo.appendEndTxnMarker`). A newer epoch
    /// is taken: the coordinator bumped it (a fence, a timeout, or transaction version 2).
    pub fn check_marker(&self, marker: &Batch) -> Result<(), KafkaError> {
        assert!(
            marker.control && marker.is_idempotent(),
            "a marker names its producer"
        );
        let current = self
            .producers
            .get(&marker.producer_id)
            .map_or(NO_PRODUCER_EPOCH, |e| e.epoch);
        match marker.producer_epoch < current {
            true => Err(KafkaError::InvalidProducerEpoch),
            false => Ok(()),
        }
    }

    /// Remember a batch that was appended (its `base_offset` set by the leader), at `now_ms`.
    /// A new epoch forgets the old epoch's batches (Kafka `maybeUpdateProducerEpoch`). A
    /// marker carries no sequence: it only moves the epoch.
    pub fn record(&mut self, batch: &Batch, now_ms: u64) {
        if !batch.is_idempotent() {
            return;
        }
        if batch.control {
            self.record_marker(batch, now_ms);
            return;
        }
        assert!(!batch.is_empty(), "an appended batch holds a record");
        if !self.producers.contains_key(&batch.producer_id) {
            assert!(
                self.producers.len() < PRODUCERS_MAX,
                "more than {PRODUCERS_MAX} producers"
            );
        }
        let entry = self
            .producers
            .entry(batch.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: NO_PRODUCER_EPOCH,
                batches: VecDeque::new(),
                last_timestamp_ms: now_ms,
            });
        if entry.epoch != batch.producer_epoch {
            entry.batches.clear();
            entry.epoch = batch.producer_epoch;
        }
        entry.last_timestamp_ms = now_ms;
        if batch.base_sequence == super::batch::NO_SEQUENCE {
            // A group coordinator's transactional write (TxnOffsetCommit): it carries the
            // producer's epoch but no sequence, so there is nothing to deduplicate against.
            return;
        }
        if entry.batches.len() == NUM_BATCHES_TO_RETAIN {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMetadata {
            first_sequence: batch.base_sequence,
            last_sequence: last_sequence(batch),
            first_offset: batch.base_offset,
            last_offset: batch.last_offset(),
        });
        entry.last_timestamp_ms = now_ms;
        assert!(entry.batches.len() <= NUM_BATCHES_TO_RETAIN);
    }

    fn record_marker(&mut self, marker: &Batch, now_ms: u64) {
        if !self.producers.contains_key(&marker.producer_id) {
            assert!(
                self.producers.len() < PRODUCERS_MAX,
                "more than {PRODUCERS_MAX} producers"
            );
        }
        let entry = self
            .producers
            .entry(marker.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: NO_PRODUCER_EPOCH,
                batches: VecDeque::new(),
                last_timestamp_ms: now_ms,
            });
        if entry.epoch != marker.producer_epoch {
            entry.batches.clear();
            entry.epoch = marker.producer_epoch;
        }
        entry.last_timestamp_ms = now_ms;
    }

    /// Forget everything and replay the log's batches in offset order, each with the time it
    /// was appended, then forget the producers that have expired by `now_ms`.
    pub fn rebuild<'a>(&mut self, log: impl IntoIterator<Item = (&'a Batch, u64)>, now_ms: u64) {
        self.producers.clear();
        let mut next_offset = i64::MIN;
        for (batch, appended_ms) in log {
            assert!(batch.base_offset >= next_offset, "the log is in offset order");
            next_offset = batch.next_offset();
            self.record(batch, appended_ms);
        }
        self.remove_expired(now_ms);
    }

    /// The log was truncated to end before `end_offset`: rebuild from what is left of `log`.
    /// Only the log can say what remains, since the five remembered batches may all be gone
    /// while older batches of the same producer stay.
    pub fn truncate_to<'a>(
        &mut self,
        end_offset: i64,
        log: impl IntoIterator<Item = (&'a Batch, u64)>,
        now_ms: u64,
    ) {
        let kept = log.into_iter().filter(|(b, _)| b.next_offset() <= end_offset);
        self.rebuild(kept, now_ms);
    }

    /// Kafka `removeExpiredProducers`: forget producers idle for `producer.id.expiration.ms`.
    pub fn remove_expired(&mut self, now_ms: u64) {
        let expiration_ms = self.expiration_ms;
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_timestamp_ms) < expiration_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::batch::Record;

    const PID: i64 = 1000;

    fn records(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                key: None,
                value: Some(vec![i as u8]),
            })
            .collect()
    }

    fn batch(epoch: i16, base_sequence: i32, n: usize) -> Batch {
        Batch {
            producer_id: PID,
            producer_epoch: epoch,
            base_sequence,
            ..Batch::plain(records(n))
        }
    }

    /// A toy leader: check, append at the log end, record.
    fn produce(state: &mut ProducerState, log_end: &mut i64, mut b: Batch) -> Result<Check, KafkaError> {
        let check = state.check(&b)?;
        if check == Check::Append {
            b.base_offset = *log_end;
            *log_end = b.next_offset();
            state.record(&b, 0);
        }
        Ok(check)
    }

    #[test]
    fn in_sequence_batches_append_and_a_retry_of_a_cached_batch_gets_its_original_offset() {
        let mut s = ProducerState::new(PRODUCER_ID_EXPIRATION_MS_DEFAULT);
        let mut end = 0;
        assert_eq!(produce(&mut s, &mut end, batch(0, 0, 3)), Ok(Check::Append));
        assert_eq!(produce(&mut s, &mut end, batch(0, 3, 2)), Ok(Check::Append));
        assert_eq!(end, 5);
        assert_eq!(
            produce(&mut s, &mut end, batch(0, 0, 3)),
            Ok(Check::Duplicate {
                base_offset: 0,
                last_offset: 2
            })
        );
        assert_eq!(end, 5, "a duplicate is not appended");
    }

    #[test]
    fn a_gap_or_a_partial_overlap_is_out_of_order() {
        let mut s = ProducerState::new(PRODUCER_ID_EXPIRATION_MS_DEFAULT);
        let mut end = 0;
        produce(&mut s, &mut end, batch(0, 0, 3)).unwrap();
        assert_eq!(
            s.check(&batch(0, 4, 1)),
            Err(KafkaError::OutOfOrderSequenceNumber)
        );
        assert_eq!(
            s.check(&batch(0, 1, 2)),
            Err(KafkaError::OutOfOrderSequenceNumber)
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut s = ProducerState::new(PRODUCER_ID_EXPIRATION_MS_DEFAULT);
        let mut end = 0;
        for seq in 0..6 {
            produce(&mut s, &mut end, batch(0, seq, 1)).unwrap();
        }
        assert_eq!(s.entry(PID).unwrap().batches.len(), NUM_BATCHES_TO_RETAIN);
        assert_eq!(
            s.check(&batch(0, 1, 1)),
            Ok(Check::Duplicate {
                base_offset: 1,
                last_offset: 1
            })
        );
        // The first batch fell out of the cache: its retry is out of order, not a duplicate.
        assert_eq!(
            s.check(&batch(0, 0, 1)),
            Err(KafkaError::OutOfOrderSequenceNumber)
        );
    }

    #[test]
    fn a_new_epoch_starts_at_zero_and_fences_the_old_one() {
        let mut s = ProducerState::new(PRODUCER_ID_EXPIRATION_MS_DEFAULT);
        let mut end = 0;
        produce(&mut s, &mut end, batch(0, 0, 2)).unwrap();
        assert_eq!(
            s.check(&batch(1, 2, 1)),
            Err(KafkaError::OutOfOrderSequenceNumber)
        );
        assert_eq!(produce(&mut s, &mut end, batch(1, 0, 1)), Ok(Check::Append));
        assert_eq!(s.check(&batch(0, 2, 1)), Err(KafkaError::InvalidProducerEpoch));
        // The old epoch's batches are forgotten: even an exact retry of one is fenced.
        assert_eq!(s.check(&batch(0, 0, 2)), Err(KafkaError::InvalidProducerEpoch));
    }

    #[test]
    fn an_unknown_producer_may_start_at_any_sequence() {
        let s = ProducerState::new(PRODUCER_ID_EXPIRATION_MS_DEFAULT);
        assert_eq!(s.check(&batch(3, 17, 2)), Ok(Check::Append));
    }

    #[test]
    fn an_expired_producer_is_forgotten_and_then_accepts_any_sequence() {
        let mut s = ProducerState::new(1_000);
        let mut b = batch(0, 0, 1);
        b.base_offset = 0;
        s.record(&b, 5_000);
        s.remove_expired(5_999);
        assert!(s.entry(PID).is_some(), "not yet");
        s.remove_expired(6_000);
        assert!(s.entry(PID).is_none());
        assert_eq!(s.check(&batch(0, 40, 1)), Ok(Check::Append));
    }

    #[test]
    fn truncation_rebuilds_from_the_log_that_is_left() {
        let mut s = ProducerState::new(PRODUCER_ID_EXPIRATION_MS_DEFAULT);
        let mut log: Vec<Batch> = Vec::new();
        for seq in 0..8 {
            let mut b = batch(0, seq, 1);
            b.base_offset = seq as i64;
            s.record(&b, 0);
            log.push(b);
        }
        // Offsets 2.. are gone; the cache (batches 3..7) had nothing left, the log has 0 and 1.
        s.truncate_to(2, log.iter().map(|b| (b, 0)), 0);
        let entry = s.entry(PID).unwrap();
        assert_eq!(entry.last_sequence(), Some(1));
        assert_eq!(s.check(&batch(0, 2, 1)), Ok(Check::Append));
        assert_eq!(
            s.check(&batch(0, 1, 1)),
            Ok(Check::Duplicate {
                base_offset: 1,
                last_offset: 1
            })
        );
    }

    #[test]
    fn sequences_wrap_past_i32_max_to_zero() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        let mut s = ProducerState::new(PRODUCER_ID_EXPIRATION_MS_DEFAULT);
        let mut end = 0;
        produce(&mut s, &mut end, batch(0, i32::MAX - 1, 2)).unwrap();
        assert_eq!(s.check(&batch(0, 0, 1)), Ok(Check::Append));
    }

    proptest::proptest! {
        /// Whatever retries, reorderings and epoch bumps a producer sends, the leader's log
        /// never holds one (epoch, sequence) twice, never holds a gap within an epoch, and
        /// every duplicate answer points at the offsets where that range was appended.
        #[test]
        fn the_log_never_holds_a_sequence_twice_or_a_gap(
            sends in proptest::collection::vec((0i16..3, 0i32..12, 1usize..4), 1..80),
        ) {
            let mut s = ProducerState::new(PRODUCER_ID_EXPIRATION_MS_DEFAULT);
            let mut end = 0;
            let mut log: Vec<Batch> = Vec::new();
            for (epoch, seq, n) in sends {
                let mut b = batch(epoch, seq, n);
                match s.check(&b) {
                    Ok(Check::Append) => {
                        b.base_offset = end;
                        end = b.next_offset();
                        s.record(&b, 0);
                        log.push(b);
                    }
                    Ok(Check::Duplicate { base_offset, last_offset }) => {
                        let original = log.iter().find(|l| l.base_offset == base_offset).unwrap();
                        proptest::prop_assert_eq!(original.producer_epoch, epoch);
                        proptest::prop_assert_eq!(original.base_sequence, seq);
                        proptest::prop_assert_eq!(original.last_offset(), last_offset);
                    }
                    Err(_) => {}
                }
                let cached = s.entry(PID).map_or(0, |e| e.batches.len());
                proptest::prop_assert!(cached <= NUM_BATCHES_TO_RETAIN);
            }
            // Within one epoch after the first batch, sequences follow on with no gap.
            for pair in log.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                proptest::prop_assert!(b.producer_epoch >= a.producer_epoch);
                if a.producer_epoch == b.producer_epoch {
                    proptest::prop_assert_eq!(b.base_sequence, a.last_sequence().unwrap() + 1);
                } else {
                    proptest::prop_assert_eq!(b.base_sequence, 0);
                }
            }
        }
    }
}
