//! Record batches: the unit a producer sends, a leader appends, a follower copies and a
//! consumer fetches (Kafka's RecordBatch v2, reference §2.4), as plain data.
//!
//! Offsets are assigned by the partition leader when it appends a batch; a follower keeps
//! the leader's offsets. Each batch carries the leader epoch it was appended in (KIP-101) and,
//! from an idempotent producer, its producer id, epoch and first sequence number.
//!
//! A transactional producer's batches carry the transactional attribute; the coordinator's
//! COMMIT and ABORT markers are control batches of one record (Kafka's `EndTransactionMarker`:
//! key = version 0 and the marker type, value = version 0 and the coordinator epoch, all
//! big-endian), which consumers never see as records.

/// No producer id: the batch comes from a producer without idempotence.
pub const NO_PRODUCER_ID: i64 = -1;
/// No sequence number (Kafka's `RecordBatch.NO_SEQUENCE`).
pub const NO_SEQUENCE: i32 = -1;
/// No leader epoch yet (Kafka's `RecordBatch.NO_PARTITION_LEADER_EPOCH`).
pub const NO_EPOCH: i32 = -1;

/// One record: its key and value as the application gave them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// A batch of records for one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// The offset of the first record; set by the leader on append.
    pub base_offset: i64,
    /// The leader epoch the batch was appended in; set by the leader on append.
    pub leader_epoch: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The first record's sequence number for (producer id, partition), or [`NO_SEQUENCE`].
    pub base_sequence: i32,
    /// Kafka's `isTransactional` attribute (bit 4): part of a transaction.
    pub transactional: bool,
    /// Kafka's `isControl` attribute (bit 5): a transaction marker, not data.
    pub control: bool,
    pub records: Vec<Record>,
}

/// What a control batch marks (Kafka `ControlRecordType`: ABORT = 0, COMMIT = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlType {
    Abort,
    Commit,
}

/// A control record's key: version 0 and the type code.
fn control_key(control: ControlType) -> Vec<u8> {
    let code: i16 = match control {
        ControlType::Abort => 0,
        ControlType::Commit => 1,
    };
    [0i16.to_be_bytes(), code.to_be_bytes()].concat()
}

impl Batch {
    /// A batch from a producer without idempotence, before the leader appends it.
    pub fn plain(records: Vec<Record>) -> Batch {
        Batch {
            base_offset: 0,
            leader_epoch: NO_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: -1,
            base_sequence: NO_SEQUENCE,
            transactional: false,
            control: false,
            records,
        }
    }

    /// The transaction marker the coordinator writes for a producer's transaction
    /// (Kafka `MemoryRecords.withEndTransactionMarker`): a transactional control batch.
    pub fn marker(
        producer_id: i64,
        producer_epoch: i16,
        control: ControlType,
        coordinator_epoch: i32,
    ) -> Batch {
        let value = [&0i16.to_be_bytes()[..], &coordinator_epoch.to_be_bytes()[..]].concat();
        Batch {
            producer_id,
            producer_epoch,
            transactional: true,
            control: true,
            ..Batch::plain(vec![Record {
                key: Some(control_key(control)),
                value: Some(value),
            }])
        }
    }

    /// The marker a control batch holds, or `None` for data or an unreadable control key
    /// (Kafka skips control records of types it does not know).
    pub fn control_type(&self) -> Option<ControlType> {
        if !self.control {
            return None;
        }
        let key = self.records.first()?.key.as_deref()?;
        match key {
            [0, 0, 0, 0] => Some(ControlType::Abort),
            [0, 0, 0, 1] => Some(ControlType::Commit),
            _ => None,
        }
    }

    /// The coordinator epoch a marker carries.
    pub fn marker_coordinator_epoch(&self) -> Option<i32> {
        let value = self.records.first()?.value.as_deref()?;
        let bytes: [u8; 4] = value.get(2..6)?.try_into().ok()?;
        Some(i32::from_be_bytes(bytes))
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The offset of the last record.
    pub fn last_offset(&self) -> i64 {
        assert!(!self.records.is_empty(), "a batch holds at least one record");
        self.base_offset + self.records.len() as i64 - 1
    }

    /// The offset after the batch: where the next batch starts.
    pub fn next_offset(&self) -> i64 {
        self.base_offset + self.records.len() as i64
    }

    /// The last record's sequence number, for an idempotent batch.
    pub fn last_sequence(&self) -> Option<i32> {
        (self.base_sequence != NO_SEQUENCE).then(|| self.base_sequence + self.records.len() as i32 - 1)
    }

    pub fn is_idempotent(&self) -> bool {
        self.producer_id != NO_PRODUCER_ID
    }

    /// The bytes the records take, for fetch size limits (keys and values only).
    pub fn payload_bytes(&self) -> usize {
        self.records
            .iter()
            .map(|r| r.key.as_ref().map_or(0, Vec::len) + r.value.as_ref().map_or(0, Vec::len))
            .sum()
    }
}
