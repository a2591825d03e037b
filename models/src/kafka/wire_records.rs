//! Our [`Batch`] as Kafka's RecordBatch v2 bytes (the `records` field of Produce requests and
//! Fetch responses), through kafka-protocol's `RecordBatchEncoder`/`RecordBatchDecoder`.
//!
//! RecordBatch v2 (Kafka's `DefaultRecordBatch`): base offset (8), batch length (4),
//! partition leader epoch (4), magic = 2 (1), CRC-32C of what follows (4), attributes (2),
//! last offset delta (4), first and max timestamps (8 + 8), producer id (8), producer epoch
//! (2), base sequence (4), record count (4), then the records, each with varint-encoded
//! length, attributes, timestamp and offset deltas, key, value and headers.
//!
//! Kept: base offset, partition leader epoch, producer id and epoch, base sequence, keys and
//! values. Not kept, since [`Batch`] has no place for them: timestamps (we write the one given
//! to [`encode_batch`]) and record headers (dropped on decode). Not accepted: compressed
//! batches (the workspace builds kafka-protocol without compression), and control batches
//! in a produce request (only the coordinator's WriteTxnMarkers writes markers, as in Kafka).
//! Transactional batches and fetched control batches keep their attributes.
//!
//! Decoding never panics and never allocates more than the input justifies: kafka-protocol
//! reserves room for the record count and each record's header count before reading them, so
//! [`check_shape`] bounds both by the bytes present first.

use std::fmt;

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record as WireRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType,
};
use kafka_protocol::ResponseError;

use super::batch::{Batch, Record};

/// Bytes before the first record (Kafka's `DefaultRecordBatch.RECORD_BATCH_OVERHEAD`).
pub const BATCH_HEADER_BYTES: usize = 61;
/// The base offset and batch length, which the batch length does not count
/// (Kafka's `Records.LOG_OVERHEAD`).
const LOG_OVERHEAD_BYTES: usize = 12;
const MAGIC_OFFSET: usize = 16;
const ATTRIBUTES_OFFSET: usize = 21;
const RECORD_COUNT_OFFSET: usize = 57;
/// The smallest record: length, attributes, timestamp delta, offset delta, key length, value
/// length and header count, one byte each.
const RECORD_BYTES_MIN: usize = 7;
/// The smallest header: key length and value length, one byte each.
const HEADER_BYTES_MIN: usize = 2;

/// Why a record batch from the network is refused, with the error code Kafka answers for it
/// in the partition's produce response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchError {
    /// Truncated, a bad CRC, lengths that do not add up. Kafka: `CorruptRecordException`,
    /// `CORRUPT_MESSAGE` (2).
    Corrupt(String),
    /// Well formed but not acceptable: not exactly one batch in a produce request, a magic
    /// other than 2, offsets that are not consecutive, a transactional or control batch.
    /// Kafka: `InvalidRecordException`, `INVALID_RECORD` (87).
    Invalid(String),
    /// A compressed batch, which we cannot read. Kafka would accept it; we answer
    /// `UNSUPPORTED_COMPRESSION_TYPE` (76), what Kafka answers a codec it refuses.
    Compressed { codec: i16 },
}

impl BatchError {
    /// The error code for the partition's produce response.
    /// The broker's error for a produce carrying this batch.
    pub fn kafka_error(&self) -> crate::kafka::error::KafkaError {
        use crate::kafka::error::KafkaError;
        match self {
            BatchError::Corrupt(_) => KafkaError::CorruptMessage,
            BatchError::Invalid(_) => KafkaError::InvalidRecord,
            BatchError::Compressed { .. } => KafkaError::UnsupportedCompressionType,
        }
    }

    pub fn error_code(&self) -> i16 {
        match self {
            BatchError::Corrupt(_) => ResponseError::CorruptMessage.code(),
            BatchError::Invalid(_) => ResponseError::InvalidRecord.code(),
            BatchError::Compressed { .. } => ResponseError::UnsupportedCompressionType.code(),
        }
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Corrupt(reason) => write!(f, "corrupt record batch: {reason}"),
            BatchError::Invalid(reason) => write!(f, "invalid record batch: {reason}"),
            BatchError::Compressed { codec } => write!(f, "compressed record batch (codec {codec})"),
        }
    }
}

impl std::error::Error for BatchError {}

/// Encodes `batch` as one RecordBatch v2, every record with `timestamp_ms` (CreateTime).
/// Panics on an empty batch: Kafka has no empty batches on the wire from a producer.
pub fn encode_batch(batch: &Batch, timestamp_ms: i64) -> Bytes {
    assert!(!batch.is_empty(), "a record batch holds at least one record");
    let records: Vec<WireRecord> = batch
        .records
        .iter()
        .enumerate()
        .map(|(index, record)| wire_record(batch, index as i32, record, timestamp_ms))
        .collect();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &options)
        .unwrap_or_else(|error| panic!("encoding a record batch: {error}"));
    let bytes = buf.freeze();
    assert_eq!(
        batch_count(&bytes),
        1,
        "the encoder splits records into batches on differing fields; ours share them"
    );
    bytes
}

fn wire_record(batch: &Batch, index: i32, record: &Record, timestamp_ms: i64) -> WireRecord {
    WireRecord {
        transactional: batch.transactional,
        control: batch.control,
        delete_horizon: false,
        partition_leader_epoch: batch.leader_epoch,
        producer_id: batch.producer_id,
        producer_epoch: batch.producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: batch.base_offset + index as i64,
        // The encoder keeps records in one batch while offset - sequence stays the same and
        // writes the first record's sequence as the base sequence: so count on from it even
        // for NO_SEQUENCE (-1), which then stays the base sequence.
        sequence: batch.base_sequence.wrapping_add(index),
        timestamp: timestamp_ms,
        key: record.key.clone().map(Bytes::from),
        value: record.value.clone().map(Bytes::from),
        headers: IndexMap::new(),
    }
}

/// How many batches `bytes` holds, from their length fields (for the encoder's assertion).
fn batch_count(bytes: &[u8]) -> usize {
    let mut count = 0;
    let mut rest = bytes;
    while let Some(length) = batch_length(rest) {
        count += 1;
        rest = &rest[(LOG_OVERHEAD_BYTES + length).min(rest.len())..];
    }
    count
}

/// The batch length field of the batch at the start of `bytes`, if its header is there.
fn batch_length(bytes: &[u8]) -> Option<usize> {
    let field: [u8; 4] = bytes.get(8..LOG_OVERHEAD_BYTES)?.try_into().ok()?;
    usize::try_from(i32::from_be_bytes(field)).ok()
}

/// Decodes the records of one partition in a produce request: Kafka (`ProduceRequest
/// .validateRecords`) requires exactly one batch, of magic 2, from v3 on.
pub fn decode_produce_batch(records: &Bytes) -> Result<Batch, BatchError> {
    let length = batch_length(records)
        .ok_or_else(|| BatchError::Invalid("produce requests must have exactly one record batch".into()))?;
    let end = LOG_OVERHEAD_BYTES.saturating_add(length);
    if end < records.len() {
        return Err(BatchError::Invalid(
            "produce requests may hold exactly one record batch per partition".into(),
        ));
    }
    let batch = decode_batch(records)?;
    if batch.control {
        return Err(BatchError::Invalid("a control batch from a client".into()));
    }
    Ok(batch)
}

/// Decodes the batches of a fetch response's records. Kafka may cut the last batch short at
/// the fetch size limit; consumers skip that partial batch (the Java client's
/// `ByteBufferLogInputStream` stops when the rest is shorter than the batch), and so do we.
pub fn decode_fetched_batches(records: &Bytes) -> Result<Vec<Batch>, BatchError> {
    let mut batches = Vec::new();
    let mut start = 0;
    while let Some(length) = batch_length(&records[start..]) {
        let end = start + LOG_OVERHEAD_BYTES + length;
        if end > records.len() {
            break;
        }
        batches.push(decode_batch(&records.slice(start..end))?);
        start = end;
    }
    Ok(batches)
}

/// Decodes one RecordBatch v2 that `bytes` holds exactly.
fn decode_batch(bytes: &Bytes) -> Result<Batch, BatchError> {
    check_shape(bytes)?;
    let mut buf = bytes.clone();
    let set = RecordBatchDecoder::decode(&mut buf).map_err(|error| BatchError::Corrupt(error.to_string()))?;
    let first = set
        .records
        .first()
        .ok_or_else(|| BatchError::Invalid("a record batch with no records".into()))?;
    let base_offset = i64::from_be_bytes(bytes[..8].try_into().expect("checked by check_shape"));
    let base_sequence = i32::from_be_bytes(bytes[53..57].try_into().expect("checked by check_shape"));
    let mut records = Vec::with_capacity(set.records.len());
    for (index, record) in set.records.iter().enumerate() {
        if record.offset != base_offset + index as i64 {
            return Err(BatchError::Invalid(format!(
                "record {index} has offset delta {}, not {index}",
                record.offset - base_offset
            )));
        }
        records.push(Record {
            key: record.key.as_ref().map(|key| key.to_vec()),
            value: record.value.as_ref().map(|value| value.to_vec()),
        });
    }
    Ok(Batch {
        base_offset,
        leader_epoch: first.partition_leader_epoch,
        producer_id: first.producer_id,
        producer_epoch: first.producer_epoch,
        base_sequence,
        transactional: first.transactional,
        control: first.control,
        records,
    })
}

/// Checks what kafka-protocol trusts before it allocates: the header is all there, the batch
/// length matches the bytes, the magic is 2, no compression, no transaction, and the record
/// count and each record's header count are no more than the bytes could hold.
fn check_shape(bytes: &[u8]) -> Result<(), BatchError> {
    if bytes.len() < BATCH_HEADER_BYTES {
        return Err(BatchError::Corrupt(format!(
            "{} bytes is shorter than a batch header ({BATCH_HEADER_BYTES})",
            bytes.len()
        )));
    }
    let length = batch_length(bytes).ok_or_else(|| BatchError::Corrupt("negative batch length".into()))?;
    if LOG_OVERHEAD_BYTES.saturating_add(length) != bytes.len() {
        return Err(BatchError::Corrupt(format!(
            "batch length {length} does not match the {} bytes after the header",
            bytes.len() - LOG_OVERHEAD_BYTES
        )));
    }
    if bytes[MAGIC_OFFSET] != 2 {
        return Err(BatchError::Invalid(format!(
            "magic {} (only record batches with magic 2 are accepted)",
            bytes[MAGIC_OFFSET] as i8
        )));
    }
    let attributes = i16::from_be_bytes([bytes[ATTRIBUTES_OFFSET], bytes[ATTRIBUTES_OFFSET + 1]]);
    if attributes & 0x7 != 0 {
        return Err(BatchError::Compressed {
            codec: attributes & 0x7,
        });
    }
    if attributes & (1 << 5) != 0 && attributes & (1 << 4) == 0 {
        // Kafka writes control records only for transactions.
        return Err(BatchError::Invalid(
            "a control batch that is not transactional".into(),
        ));
    }
    let count_field: [u8; 4] = bytes[RECORD_COUNT_OFFSET..BATCH_HEADER_BYTES]
        .try_into()
        .expect("the header is all there");
    let record_count = i32::from_be_bytes(count_field);
    let records = &bytes[BATCH_HEADER_BYTES..];
    if record_count < 0 || record_count as usize > records.len() / RECORD_BYTES_MIN {
        return Err(BatchError::Corrupt(format!(
            "{record_count} records cannot fit in {} bytes",
            records.len()
        )));
    }
    check_records(records)
}

/// Walks the records (lengths only) and checks each header count against its record's bytes.
fn check_records(mut records: &[u8]) -> Result<(), BatchError> {
    let corrupt = |what: &str| BatchError::Corrupt(format!("record {what}"));
    while !records.is_empty() {
        let (length, used) = read_varint(records).ok_or_else(|| corrupt("length"))?;
        let record = usize::try_from(length)
            .ok()
            .and_then(|length| records.get(used..used.checked_add(length)?))
            .ok_or_else(|| corrupt("length past the batch"))?;
        records = &records[used + record.len()..];
        let mut rest = record.get(1..).ok_or_else(|| corrupt("attributes"))?;
        for field in ["timestamp delta", "offset delta"] {
            let (_, used) = read_varint(rest).ok_or_else(|| corrupt(field))?;
            rest = &rest[used..];
        }
        for field in ["key", "value"] {
            let (length, used) = read_varint(rest).ok_or_else(|| corrupt(field))?;
            let skip = usize::try_from(length.max(0)).map_err(|_| corrupt(field))?;
            rest = rest
                .get(used.saturating_add(skip)..)
                .ok_or_else(|| corrupt(field))?;
        }
        let (headers, used) = read_varint(rest).ok_or_else(|| corrupt("header count"))?;
        let room = (rest.len() - used) / HEADER_BYTES_MIN;
        if headers < 0 || headers as u64 > room as u64 {
            return Err(corrupt("header count past the record"));
        }
    }
    Ok(())
}

/// A zig-zag varint (Kafka's `ByteUtils.readVarlong`): its value and the bytes it took.
fn read_varint(bytes: &[u8]) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for (index, byte) in bytes.iter().take(10).enumerate() {
        raw |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            let value = (raw >> 1) as i64 ^ -((raw & 1) as i64);
            return Some((value, index + 1));
        }
    }
    None
}
