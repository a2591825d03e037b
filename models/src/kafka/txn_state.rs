//! One transactional id's state as the transaction coordinator keeps it, and its record in
//! the replicated `__transaction_state` topic, sans I/O (Kafka `TransactionMetadata`,
//! `TransactionState`, `TransactionLog`; reference §2.5).
//!
//! Every state change the coordinator makes is first written as one record to the state
//! topic's partition that owns the transactional id (key: the id; value: the whole metadata
//! after the change), and only takes effect once that write is committed. A broker that
//! becomes leader of a state partition replays its records, the last one per id winning,
//! which is how a new coordinator learns every transaction in flight.
//!
//! The value is our own compact encoding of the fields Kafka's `TransactionLogValue` holds
//! (producer id and epoch, the previous ones, the timeout, the state, the partitions, the
//! start and last-update times), not Kafka's schema: only this coordinator reads it.

use super::controller::TopicPartition;
use std::collections::BTreeSet;

/// The state topic's name (Kafka `Topic.TRANSACTION_STATE_TOPIC_NAME`).
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// Kafka `RecordBatch.NO_PRODUCER_EPOCH`.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// Kafka `RecordBatch.NO_PRODUCER_ID`.
pub const NO_PRODUCER_ID: i64 = -1;
/// The most partitions one transaction names; a bound on what a record holds.
pub const TXN_PARTITIONS_MAX: usize = 10_000;
/// The longest transactional id or topic name a record carries (Kafka's strings are i16
/// length-prefixed).
pub const NAME_BYTES_MAX: usize = i16::MAX as usize;
const VALUE_VERSION: u8 = 1;

/// Kafka `TransactionState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TxnState {
    /// No transaction yet, or the producer id was just (re)initialised.
    Empty,
    /// Partitions were added; the transaction is open.
    Ongoing,
    /// EndTxn(commit) was written; markers are being sent.
    PrepareCommit,
    /// EndTxn(abort), a timeout or a fence was written; markers are being sent.
    PrepareAbort,
    /// Every partition has its COMMIT marker.
    CompleteCommit,
    /// Every partition has its ABORT marker.
    CompleteAbort,
}

impl TxnState {
    fn code(self) -> u8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
        }
    }

    fn from_code(code: u8) -> Option<TxnState> {
        [
            TxnState::Empty,
            TxnState::Ongoing,
            TxnState::PrepareCommit,
            TxnState::PrepareAbort,
            TxnState::CompleteCommit,
            TxnState::CompleteAbort,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }

    /// Kafka's state names, as `DescribeTransactions` and the logs show them.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    /// Markers are owed to the partitions.
    pub fn is_prepare(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// One transactional id's metadata (Kafka `TransactionMetadata` without its locks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnMetadata {
    pub producer_id: i64,
    /// The producer id before the last rotation (an exhausted epoch), for KIP-360 retries.
    pub last_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump: a v2 EndTxn retry carries it.
    pub last_producer_epoch: i16,
    /// `transaction.timeout.ms` as the producer asked at InitProducerId.
    pub timeout_ms: u32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    /// When the first partition was added (Kafka `txnStartTimestamp`), for the timeout.
    pub start_ms: u64,
    pub last_update_ms: u64,
}

impl TxnMetadata {
    /// A new id's metadata before its first epoch (Kafka creates it with no epoch).
    pub fn new(producer_id: i64, timeout_ms: u32, now_ms: u64) -> TxnMetadata {
        TxnMetadata {
            producer_id,
            last_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: now_ms,
            last_update_ms: now_ms,
        }
    }

    /// Kafka's `isProducerEpochExhausted`: one bump is kept in reserve for a fence.
    pub fn epoch_exhausted(&self) -> bool {
        self.producer_epoch >= i16::MAX - 1
    }
}

/// Kafka's `Utils.abs(transactionalId.hashCode) % partitions`: Java's `String.hashCode`
/// over UTF-16 code units, with `Integer.MIN_VALUE` mapped to 0.
pub fn partition_for(transactional_id: &str, partitions: i32) -> i32 {
    assert!(partitions > 0, "the state topic has partitions");
    let hash = transactional_id
        .encode_utf16()
        .fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)));
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partitions
}

/// The record key: the transactional id's bytes.
pub fn encode_key(transactional_id: &str) -> Vec<u8> {
    transactional_id.as_bytes().to_vec()
}

pub fn decode_key(key: &[u8]) -> Result<String, String> {
    String::from_utf8(key.to_vec()).map_err(|_| "a transactional id that is not UTF-8".to_string())
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    assert!(s.len() <= NAME_BYTES_MAX, "a name of {} bytes", s.len());
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The record value: the whole metadata after a change.
pub fn encode_value(m: &TxnMetadata) -> Vec<u8> {
    assert!(m.partitions.len() <= TXN_PARTITIONS_MAX);
    let mut out = vec![VALUE_VERSION];
    out.extend_from_slice(&m.producer_id.to_be_bytes());
    out.extend_from_slice(&m.last_producer_id.to_be_bytes());
    out.extend_from_slice(&m.producer_epoch.to_be_bytes());
    out.extend_from_slice(&m.last_producer_epoch.to_be_bytes());
    out.extend_from_slice(&m.timeout_ms.to_be_bytes());
    out.push(m.state.code());
    out.extend_from_slice(&m.start_ms.to_be_bytes());
    out.extend_from_slice(&m.last_update_ms.to_be_bytes());
    out.extend_from_slice(&(m.partitions.len() as u32).to_be_bytes());
    for tp in &m.partitions {
        put_str(&mut out, &tp.topic);
        out.extend_from_slice(&tp.partition.to_be_bytes());
    }
    out
}

/// Reads big-endian fields, failing (never panicking) at the end of the bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("a transaction state record ends early".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }
}

/// Decodes a record value; a malformed one is a clear error, never a panic.
pub fn decode_value(bytes: &[u8]) -> Result<TxnMetadata, String> {
    let mut r = Reader(bytes);
    let version = r.array::<1>()?[0];
    if version != VALUE_VERSION {
        return Err(format!("transaction state record version {version}"));
    }
    let producer_id = i64::from_be_bytes(r.array()?);
    let last_producer_id = i64::from_be_bytes(r.array()?);
    let producer_epoch = i16::from_be_bytes(r.array()?);
    let last_producer_epoch = i16::from_be_bytes(r.array()?);
    let timeout_ms = u32::from_be_bytes(r.array()?);
    let state_code = r.array::<1>()?[0];
    let state = TxnState::from_code(state_code).ok_or(format!("transaction state {state_code}"))?;
    let start_ms = u64::from_be_bytes(r.array()?);
    let last_update_ms = u64::from_be_bytes(r.array()?);
    let count = u32::from_be_bytes(r.array()?) as usize;
    if count > TXN_PARTITIONS_MAX {
        return Err(format!("{count} partitions in one transaction"));
    }
    let mut partitions = BTreeSet::new();
    for _ in 0..count {
        let len = u16::from_be_bytes(r.array()?) as usize;
        let topic = String::from_utf8(r.take(len)?.to_vec()).map_err(|_| "a topic that is not UTF-8")?;
        let partition = i32::from_be_bytes(r.array()?);
        partitions.insert(TopicPartition { topic, partition });
    }
    if !r.0.is_empty() {
        return Err("bytes after a transaction state record".into());
    }
    Ok(TxnMetadata {
        producer_id,
        last_producer_id,
        producer_epoch,
        last_producer_epoch,
        timeout_ms,
        state,
        partitions,
        start_ms,
        last_update_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partition_is_javas_string_hash_code_modulo_the_partition_count() {
        // "".hashCode() == 0; "a".hashCode() == 97; "txn-1".hashCode() == 110_810_510.
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("a", 50), 97 % 50);
        assert_eq!(partition_for("txn-1", 50), 110_810_510 % 50);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE, which Kafka's Utils.abs maps to 0.
        assert_eq!(partition_for("polygenelubricants", 7), 0);
        // A negative hash: "zzzzzzzz".hashCode() == -1_910_022_912 (it wraps); abs is taken.
        assert_eq!(partition_for("zzzzzzzz", 1000), 1_910_022_912 % 1000);
    }

    #[test]
    fn a_record_round_trips_and_malformed_bytes_are_an_error() {
        let mut m = TxnMetadata::new(7, 60_000, 5);
        m.producer_epoch = 3;
        m.state = TxnState::PrepareCommit;
        m.partitions.insert(TopicPartition {
            topic: "orders".into(),
            partition: 2,
        });
        let bytes = encode_value(&m);
        assert_eq!(decode_value(&bytes), Ok(m));
        for cut in 0..bytes.len() {
            assert!(decode_value(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_state = bytes.clone();
        bad_state[1 + 8 + 8 + 2 + 2 + 4] = 9;
        assert!(decode_value(&bad_state).is_err());
    }
}
