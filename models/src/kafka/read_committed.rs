//! What a consumer hands the application from fetched batches, by `isolation.level`, sans
//! I/O (the Java client's `CompletedFetch.nextFetchedRecord`; reference §2.5).
//!
//! - read_uncommitted (Kafka's default): every data record, aborted or not; control batches
//!   (transaction markers) are skipped either way.
//! - read_committed: the broker served only batches below the last stable offset, with the
//!   aborted transactions they overlap. Walking the batches in offset order, a transaction
//!   becomes "aborted" for its producer once a batch reaches its first offset; that
//!   producer's transactional batches are dropped until its ABORT marker is passed. The
//!   consumer trusts the broker's list: a record the broker failed to list as aborted is
//!   delivered.

use super::batch::{Batch, ControlType, Record};
use super::txn_index::AbortedTxn;
use kafka_protocol::messages::{fetch_response, ProducerId};
use std::collections::BTreeSet;

/// The most aborted transactions one partition's fetch answer may list for us to act on; a
/// bound on what a broker's answer can make the consumer hold.
pub const FETCH_ABORTED_MAX: usize = 100_000;

/// An aborted transaction as a fetch answer names it: its producer and first offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedAt {
    pub producer_id: i64,
    pub first_offset: i64,
}

/// The broker's list, in the Fetch response's shape.
pub fn aborted_to_wire(aborted: &[AbortedTxn]) -> Vec<fetch_response::AbortedTransaction> {
    aborted
        .iter()
        .map(|a| {
            fetch_response::AbortedTransaction::default()
                .with_producer_id(ProducerId(a.producer_id))
                .with_first_offset(a.first_offset)
        })
        .collect()
}

/// The consumer's reading of a partition's answer (null, as read_uncommitted gets, is empty).
/// A list longer than [`FETCH_ABORTED_MAX`] is an error: the consumer does not guess.
pub fn aborted_from_wire(data: &fetch_response::PartitionData) -> Result<Vec<AbortedAt>, String> {
    let Some(list) = data.aborted_transactions.as_ref() else {
        return Ok(Vec::new());
    };
    if list.len() > FETCH_ABORTED_MAX {
        return Err(format!("{} aborted transactions in one fetch answer", list.len()));
    }
    Ok(list
        .iter()
        .map(|a| AbortedAt {
            producer_id: a.producer_id.0,
            first_offset: a.first_offset,
        })
        .collect())
}

/// `isolation.level`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IsolationLevel {
    #[default]
    ReadUncommitted,
    ReadCommitted,
}

impl IsolationLevel {
    /// The Fetch request's `isolation_level` field.
    pub fn wire(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

/// The records the application sees from `batches` (in offset order), from `from_offset` on,
/// with their offsets. `aborted` is the fetch answer's list (ignored for read_uncommitted).
pub fn deliverable(
    isolation: IsolationLevel,
    batches: &[Batch],
    aborted: &[AbortedAt],
    from_offset: i64,
) -> Vec<(i64, Record)> {
    let mut pending: Vec<AbortedAt> = aborted.to_vec();
    // Kafka's priority queue by first offset; taken from the front as batches reach them.
    pending.sort_by_key(|a| (a.first_offset, a.producer_id));
    let mut pending = pending.into_iter().peekable();
    let mut aborted_producers = BTreeSet::new();
    let mut out = Vec::new();
    for batch in batches {
        if isolation == IsolationLevel::ReadCommitted && batch.transactional {
            while let Some(a) = pending.next_if(|a| a.first_offset <= batch.last_offset()) {
                aborted_producers.insert(a.producer_id);
            }
            if batch.control {
                if batch.control_type() == Some(ControlType::Abort) {
                    aborted_producers.remove(&batch.producer_id);
                }
                continue;
            }
            if aborted_producers.contains(&batch.producer_id) {
                continue;
            }
        }
        if batch.control {
            continue;
        }
        for (index, record) in batch.records.iter().enumerate() {
            let offset = batch.base_offset + index as i64;
            if offset >= from_offset {
                out.push((offset, record.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: i64, mut b: Batch) -> Batch {
        b.base_offset = offset;
        b
    }

    fn data(producer_id: i64, value: &str) -> Batch {
        Batch {
            producer_id,
            producer_epoch: 0,
            base_sequence: 0,
            transactional: true,
            ..Batch::plain(vec![Record {
                key: None,
                value: Some(value.as_bytes().to_vec()),
            }])
        }
    }

    fn values(records: &[(i64, Record)]) -> Vec<String> {
        records
            .iter()
            .map(|(_, r)| String::from_utf8(r.value.clone().unwrap()).unwrap())
            .collect()
    }

    /// Producer 7 commits "a"; producer 8 aborts "x", interleaved with 7's "b".
    fn log() -> (Vec<Batch>, Vec<AbortedAt>) {
        let batches = vec![
            at(0, data(7, "a")),
            at(1, data(8, "x")),
            at(2, Batch::marker(7, 0, ControlType::Commit, 0)),
            at(3, data(7, "b")),
            at(4, Batch::marker(8, 0, ControlType::Abort, 0)),
            at(5, Batch::marker(7, 0, ControlType::Commit, 0)),
        ];
        let aborted = AbortedTxn {
            producer_id: 8,
            first_offset: 1,
            last_offset: 4,
        };
        // Through the wire, as the broker sends it and the consumer reads it.
        let data = fetch_response::PartitionData::default()
            .with_aborted_transactions(Some(aborted_to_wire(&[aborted])));
        (batches, aborted_from_wire(&data).unwrap())
    }

    #[test]
    fn read_committed_drops_an_aborted_transaction_and_every_marker() {
        let (batches, aborted) = log();
        let got = deliverable(IsolationLevel::ReadCommitted, &batches, &aborted, 0);
        assert_eq!(values(&got), ["a", "b"]);
        assert_eq!(got.iter().map(|(o, _)| *o).collect::<Vec<_>>(), [0, 3]);
    }

    #[test]
    fn read_uncommitted_delivers_the_aborted_record_too() {
        let (batches, aborted) = log();
        let got = deliverable(IsolationLevel::ReadUncommitted, &batches, &aborted, 0);
        assert_eq!(values(&got), ["a", "x", "b"]);
    }

    #[test]
    fn a_later_transaction_of_the_same_producer_is_not_dropped_with_the_aborted_one() {
        let batches = vec![
            at(0, data(8, "x")),
            at(1, Batch::marker(8, 0, ControlType::Abort, 0)),
            at(2, data(8, "y")),
        ];
        let aborted = vec![AbortedAt {
            producer_id: 8,
            first_offset: 0,
        }];
        let got = deliverable(IsolationLevel::ReadCommitted, &batches, &aborted, 0);
        assert_eq!(values(&got), ["y"]);
    }

    #[test]
    fn records_before_the_position_are_skipped() {
        let (batches, aborted) = log();
        let got = deliverable(IsolationLevel::ReadCommitted, &batches, &aborted, 1);
        assert_eq!(values(&got), ["b"]);
    }
}
