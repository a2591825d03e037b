//! A committed offset as a record of `__consumer_offsets`, in Kafka's own layout
//! (`GroupMetadataManager`; `OffsetCommitKey` v1 and `OffsetCommitValue` v3 in Kafka's
//! `group-coordinator` schemas), so a commit shares the replicated log's failure modes:
//! - key: int16 version (1), string group, string topic, int32 partition;
//! - value: int16 version (3), int64 offset, int32 leader epoch, string metadata, int64
//!   commit timestamp. A null value is a tombstone (the offset was deleted).
//!
//! Strings are an int16 length and UTF-8 bytes. Group metadata records (key version 2) are
//! recognised and skipped: membership is not persisted here (`group_coordinator`).

use std::fmt;

/// The key version of an offset commit (0 and 1 share the layout).
const OFFSET_KEY_VERSION: i16 = 1;
/// The key version of a group metadata record.
const GROUP_METADATA_KEY_VERSION: i16 = 2;
/// The value version written: v3 carries the leader epoch and no expiry.
const OFFSET_VALUE_VERSION: i16 = 3;

/// What a group committed for one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    /// -1 when the client did not say.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// The key of an offset commit record.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OffsetKey {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

/// A record of `__consumer_offsets`, read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OffsetsRecord {
    Commit(OffsetKey, CommittedOffset),
    Tombstone(OffsetKey),
    /// A group metadata record (not used here).
    GroupMetadata,
}

/// Bytes that are not an offsets record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordError(pub String);

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad __consumer_offsets record: {}", self.0)
    }
}

impl std::error::Error for RecordError {}

fn put_string(out: &mut Vec<u8>, text: &str) {
    // Group ids, topics and metadata are bounded far below i16::MAX by the coordinator.
    let length = i16::try_from(text.len()).expect("a string of an offsets record fits an int16 length");
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// The record key of a commit.
pub fn encode_key(key: &OffsetKey) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&OFFSET_KEY_VERSION.to_be_bytes());
    put_string(&mut out, &key.group);
    put_string(&mut out, &key.topic);
    out.extend_from_slice(&key.partition.to_be_bytes());
    out
}

/// The record value of a commit.
pub fn encode_value(value: &CommittedOffset) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&OFFSET_VALUE_VERSION.to_be_bytes());
    out.extend_from_slice(&value.offset.to_be_bytes());
    out.extend_from_slice(&value.leader_epoch.to_be_bytes());
    put_string(&mut out, &value.metadata);
    out.extend_from_slice(&value.commit_timestamp_ms.to_be_bytes());
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], RecordError> {
        if self.bytes.len() < n {
            return Err(RecordError(format!(
                "{n} bytes wanted, {} left",
                self.bytes.len()
            )));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16, RecordError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn string(&mut self) -> Result<String, RecordError> {
        let length = self.i16()?;
        let length = usize::try_from(length).map_err(|_| RecordError(format!("string length {length}")))?;
        let bytes = self.take(length)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| RecordError("a string is not UTF-8".into()))
    }
}

/// Reads a record of `__consumer_offsets`. Value versions 0 to 3 are read as Kafka writes
/// them (v1 and v2 carry an expiry, v3 a leader epoch).
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<OffsetsRecord, RecordError> {
    let mut reader = Reader { bytes: key };
    let version = reader.i16()?;
    if version == GROUP_METADATA_KEY_VERSION {
        return Ok(OffsetsRecord::GroupMetadata);
    }
    if !(0..=OFFSET_KEY_VERSION).contains(&version) {
        return Err(RecordError(format!("key version {version}")));
    }
    let key = OffsetKey {
        group: reader.string()?,
        topic: reader.string()?,
        partition: reader.i32()?,
    };
    let Some(value) = value else {
        return Ok(OffsetsRecord::Tombstone(key));
    };
    let mut reader = Reader { bytes: value };
    let version = reader.i16()?;
    if !(0..=OFFSET_VALUE_VERSION).contains(&version) {
        return Err(RecordError(format!("value version {version}")));
    }
    let offset = reader.i64()?;
    let leader_epoch = if version >= 3 { reader.i32()? } else { -1 };
    let metadata = reader.string()?;
    let commit_timestamp_ms = reader.i64()?;
    if version == 1 {
        reader.i64()?; // expire timestamp
    }
    let value = CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    };
    Ok(OffsetsRecord::Commit(key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_reads_back_and_bad_bytes_are_an_error() {
        let key = OffsetKey {
            group: "g".into(),
            topic: "orders".into(),
            partition: 2,
        };
        let value = CommittedOffset {
            offset: 42,
            leader_epoch: 3,
            metadata: "m".into(),
            commit_timestamp_ms: 7,
        };
        let (k, v) = (encode_key(&key), encode_value(&value));
        assert_eq!(
            decode(&k, Some(&v)),
            Ok(OffsetsRecord::Commit(key.clone(), value))
        );
        assert_eq!(decode(&k, None), Ok(OffsetsRecord::Tombstone(key)));
        assert!(decode(&k[..5], None).is_err());
        assert!(decode(&k, Some(&v[..9])).is_err());
        assert!(decode(&[0, 9], None).is_err());
        assert_eq!(
            decode(&[0, 2, 0, 1, b'g'], None),
            Ok(OffsetsRecord::GroupMetadata)
        );
    }
}
