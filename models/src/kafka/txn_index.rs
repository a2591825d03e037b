//! What a partition replica knows of transactions, sans I/O (Kafka `ProducerStateManager`'s
//! ongoing and unreplicated transactions, the `TransactionIndex` of aborted transactions, and
//! `UnifiedLog`'s last stable offset; reference §2.5).
//!
//! - A producer's first transactional batch opens its transaction on this partition at that
//!   batch's offset; its COMMIT or ABORT marker (a control batch the coordinator writes)
//!   completes it. Until then the transaction is *ongoing*.
//! - A completed transaction stays *unstable* until its marker is below the high watermark
//!   (Kafka's `unreplicatedTxns`), so a read_committed consumer never reads a transaction's
//!   records before every replica in sync could tell it how the transaction ended.
//! - The last stable offset (LSO) is the first offset of the earliest unstable transaction,
//!   or the high watermark if none is earlier. read_committed consumers read below it.
//! - Every aborted transaction is kept (producer id, first offset, the marker's offset) so a
//!   fetch can list those it overlaps; the consumer drops their records.
//! - Every replica keeps this from its own log, as the producer state, and rebuilds it after
//!   a truncation; a leader also refuses a plain batch from a producer whose transaction is
//!   open here (`INVALID_TXN_STATE`) and a marker from a fenced coordinator.

use super::batch::{Batch, ControlType};
use super::error::KafkaError;
use std::collections::BTreeMap;

/// The most aborted transactions one partition remembers. Kafka drops them with the log's
/// segments; we keep no retention, so this bounds a run.
pub const ABORTED_TXNS_MAX: usize = 1_000_000;
/// The most transactions open at once on one partition.
pub const ONGOING_TXNS_MAX: usize = 100_000;

/// An aborted transaction as a fetch reports it (Kafka `AbortedTxn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The ABORT marker's offset.
    pub last_offset: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Completed {
    first_offset: i64,
    last_offset: i64,
}

#[derive(Clone, Debug, Default)]
pub struct TxnIndex {
    /// Producer id → the first offset of its open transaction here.
    ongoing: BTreeMap<i64, i64>,
    /// Completed transactions whose marker may not be below the high watermark yet, by
    /// marker offset.
    unreplicated: BTreeMap<i64, Completed>,
    /// Aborted transactions in marker order.
    aborted: Vec<AbortedTxn>,
    /// The latest coordinator epoch each producer's markers came with.
    coordinator_epochs: BTreeMap<i64, i32>,
}

impl TxnIndex {
    pub fn new() -> TxnIndex {
        TxnIndex::default()
    }

    /// The leader's check of a batch before appending it (Kafka `ProducerAppendInfo`).
    pub fn check(&self, batch: &Batch) -> Result<(), KafkaError> {
        if !batch.is_idempotent() {
            return Ok(());
        }
        if batch.control {
            let epoch = batch.marker_coordinator_epoch().unwrap_or(-1);
            let known = self.coordinator_epochs.get(&batch.producer_id).copied();
            if known.is_some_and(|k| epoch < k) {
                return Err(KafkaError::TransactionCoordinatorFenced);
            }
            return Ok(());
        }
        if !batch.transactional && self.ongoing.contains_key(&batch.producer_id) {
            // "Expected transactional write from producer": a plain batch cannot join.
            return Err(KafkaError::InvalidTxnState);
        }
        Ok(())
    }

    /// Takes a batch appended to the log (by the leader, or copied by a follower), with the
    /// replica's high watermark then.
    pub fn record(&mut self, batch: &Batch, high_watermark: i64) {
        if !batch.is_idempotent() || !batch.transactional {
            return;
        }
        if batch.control {
            self.complete(batch);
        } else if !self.ongoing.contains_key(&batch.producer_id) {
            assert!(
                self.ongoing.len() < ONGOING_TXNS_MAX,
                "more than {ONGOING_TXNS_MAX} open transactions"
            );
            self.ongoing.insert(batch.producer_id, batch.base_offset);
        }
        self.prune(high_watermark);
    }

    /// A marker completes the producer's transaction. A marker with nothing open here
    /// completes an empty one at its own offset, as Kafka's `appendEndTxnMarker` does.
    fn complete(&mut self, marker: &Batch) {
        let Some(control) = marker.control_type() else {
            return; // a control record of a type we do not know: Kafka ignores it too
        };
        let last_offset = marker.base_offset;
        let first_offset = self.ongoing.remove(&marker.producer_id).unwrap_or(last_offset);
        if let Some(epoch) = marker.marker_coordinator_epoch() {
            self.coordinator_epochs.insert(marker.producer_id, epoch);
        }
        self.unreplicated.insert(
            last_offset,
            Completed {
                first_offset,
                last_offset,
            },
        );
        if control == ControlType::Abort {
            assert!(
                self.aborted.len() < ABORTED_TXNS_MAX,
                "more than {ABORTED_TXNS_MAX} aborted transactions"
            );
            self.aborted.push(AbortedTxn {
                producer_id: marker.producer_id,
                first_offset,
                last_offset,
            });
        }
    }

    /// Forgets completed transactions whose marker is below the high watermark.
    pub fn prune(&mut self, high_watermark: i64) {
        self.unreplicated.retain(|last, _| *last >= high_watermark);
    }

    /// Whether a producer has a transaction open here.
    pub fn is_ongoing(&self, producer_id: i64) -> bool {
        self.ongoing.contains_key(&producer_id)
    }

    /// Kafka's `firstUnstableOffset`: where the earliest transaction not yet known to be
    /// stable starts.
    pub fn first_unstable_offset(&self, high_watermark: i64) -> Option<i64> {
        let ongoing = self.ongoing.values().copied();
        let unreplicated = self
            .unreplicated
            .values()
            .filter(|c| c.last_offset >= high_watermark)
            .map(|c| c.first_offset);
        ongoing.chain(unreplicated).min()
    }

    /// The last stable offset: read_committed consumers read below it.
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        self.first_unstable_offset(high_watermark)
            .map_or(high_watermark, |first| first.min(high_watermark))
    }

    /// The aborted transactions that overlap `[from_offset, until_offset)` (Kafka's
    /// `collectAbortedTxns`: ending at or after the start, beginning before the end).
    pub fn aborted_in(&self, from_offset: i64, until_offset: i64) -> Vec<AbortedTxn> {
        self.aborted
            .iter()
            .filter(|a| a.last_offset >= from_offset && a.first_offset < until_offset)
            .copied()
            .collect()
    }

    /// Forgets everything and replays the log's batches (after opening it or truncating it).
    pub fn rebuild<'a>(&mut self, log: impl IntoIterator<Item = &'a Batch>, high_watermark: i64) {
        *self = TxnIndex::new();
        for batch in log {
            self.record(batch, high_watermark);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::batch::Record;

    /// A toy log: appends with offsets, feeding the index.
    struct Log {
        index: TxnIndex,
        batches: Vec<Batch>,
        end: i64,
    }

    impl Log {
        fn new() -> Log {
            Log {
                index: TxnIndex::new(),
                batches: Vec::new(),
                end: 0,
            }
        }

        fn append(&mut self, mut b: Batch, hw: i64) -> Result<i64, KafkaError> {
            self.index.check(&b)?;
            b.base_offset = self.end;
            self.end = b.next_offset();
            self.index.record(&b, hw);
            self.batches.push(b);
            Ok(self.end - 1)
        }
    }

    fn data(producer_id: i64, transactional: bool) -> Batch {
        Batch {
            producer_id,
            producer_epoch: 0,
            base_sequence: 0,
            transactional,
            ..Batch::plain(vec![Record {
                key: None,
                value: Some(b"v".to_vec()),
            }])
        }
    }

    fn marker(producer_id: i64, control: ControlType) -> Batch {
        Batch::marker(producer_id, 0, control, 0)
    }

    #[test]
    fn the_lso_stops_at_an_open_transaction_until_its_marker_is_below_the_high_watermark() {
        let mut log = Log::new();
        log.append(data(1, false), 0).unwrap(); // offset 0, not transactional
        log.append(data(7, true), 0).unwrap(); // offset 1, opens 7's transaction
        log.append(data(8, true), 0).unwrap(); // offset 2
        assert_eq!(log.index.last_stable_offset(3), 1);
        log.append(marker(7, ControlType::Commit), 3).unwrap(); // offset 3
        assert_eq!(log.index.last_stable_offset(4), 2, "8 is still open");
        log.append(marker(8, ControlType::Abort), 4).unwrap(); // offset 4
        assert_eq!(
            log.index.last_stable_offset(4),
            2,
            "8's marker is not below the HW yet"
        );
        assert_eq!(log.index.last_stable_offset(5), 5);
        assert_eq!(
            log.index.aborted_in(0, 5),
            vec![AbortedTxn {
                producer_id: 8,
                first_offset: 2,
                last_offset: 4
            }]
        );
        assert!(
            log.index.aborted_in(5, 9).is_empty(),
            "ends before the fetch starts"
        );
        assert!(log.index.aborted_in(0, 2).is_empty(), "begins at the fetch's end");
    }

    #[test]
    fn a_plain_batch_from_a_producer_in_a_transaction_is_refused() {
        let mut log = Log::new();
        log.append(data(7, true), 0).unwrap();
        assert_eq!(log.append(data(7, false), 0), Err(KafkaError::InvalidTxnState));
        log.append(marker(7, ControlType::Commit), 0).unwrap();
        assert!(log.append(data(7, false), 0).is_ok());
    }

    #[test]
    fn a_marker_from_an_older_coordinator_is_fenced() {
        let mut log = Log::new();
        log.append(data(7, true), 0).unwrap();
        log.append(Batch::marker(7, 0, ControlType::Commit, 5), 0)
            .unwrap();
        log.append(data(7, true), 0).unwrap();
        assert_eq!(
            log.append(Batch::marker(7, 0, ControlType::Abort, 4), 0),
            Err(KafkaError::TransactionCoordinatorFenced)
        );
    }

    #[test]
    fn rebuilding_from_a_truncated_log_reopens_what_its_marker_no_longer_closes() {
        let mut log = Log::new();
        log.append(data(7, true), 0).unwrap();
        log.append(marker(7, ControlType::Abort), 0).unwrap();
        let kept: Vec<Batch> = log.batches[..1].to_vec();
        log.index.rebuild(kept.iter(), 1);
        assert!(log.index.is_ongoing(7));
        assert!(log.index.aborted_in(0, 10).is_empty());
        assert_eq!(log.index.last_stable_offset(1), 0);
    }
}
