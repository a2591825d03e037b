//! The shape of each request body we implement, checked before kafka-protocol decodes it.
//!
//! Why: kafka-protocol 0.18 reserves `Vec::with_capacity(n)` for an array as soon as it reads
//! the array's length, before reading any element. A 12-byte Metadata request claiming
//! `i32::MAX` topics asks for over 100 GiB, and the allocator aborts the whole process (a
//! hostile client kills the broker; `wire_tests` has that frame). Kafka's Java parser checks a
//! length against the bytes left first. So do we: [`check_request`] walks the body with the
//! field layout of the API's version (from Kafka's `*Request.json` schemas, the versions
//! within [`super::wire::SUPPORTED_APIS`]) and refuses any array, string or byte field that
//! claims more than the bytes left. Tagged fields are skipped by their size, so only the
//! regular fields are listed. `wire_tests` checks every layout against kafka-protocol's own
//! encoding at every version in the table.

use kafka_protocol::messages::ApiKey;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Int8,
    Int16,
    Int32,
    Int64,
    Uuid,
    Bool,
    /// A string, nullable or not (int16 length, or compact: unsigned varint length + 1).
    Str,
    /// Bytes, nullable or not (int32 length, or compact).
    Bytes,
    /// An array of int32.
    Int32s,
    /// An array of strings.
    Strs,
    /// An array of structs with these fields.
    Structs(&'static [Field]),
}

/// A field present in versions `version_min..=version_max`.
#[derive(Clone, Copy, Debug)]
struct Field {
    kind: Kind,
    version_min: i16,
    version_max: i16,
}

const fn all(kind: Kind) -> Field {
    from(kind, 0)
}

const fn from(kind: Kind, version_min: i16) -> Field {
    Field {
        kind,
        version_min,
        version_max: i16::MAX,
    }
}

const fn until(kind: Kind, version_min: i16, version_max: i16) -> Field {
    Field {
        kind,
        version_min,
        version_max,
    }
}

use Kind::*;

const API_VERSIONS: &[Field] = &[from(Str, 3), from(Str, 3)];

const METADATA_TOPIC: &[Field] = &[from(Uuid, 10), all(Str)];
const METADATA: &[Field] = &[
    all(Structs(METADATA_TOPIC)),
    from(Bool, 4),
    until(Bool, 8, 10),
    from(Bool, 8),
];

const PRODUCE_PARTITION: &[Field] = &[all(Int32), all(Bytes)];
const PRODUCE_TOPIC: &[Field] = &[until(Str, 0, 12), from(Uuid, 13), all(Structs(PRODUCE_PARTITION))];
const PRODUCE: &[Field] = &[from(Str, 3), all(Int16), all(Int32), all(Structs(PRODUCE_TOPIC))];

const FETCH_PARTITION: &[Field] = &[
    all(Int32),
    from(Int32, 9),
    all(Int64),
    from(Int32, 12),
    from(Int64, 5),
    all(Int32),
];
const FETCH_TOPIC: &[Field] = &[until(Str, 0, 12), from(Uuid, 13), all(Structs(FETCH_PARTITION))];
const FETCH_FORGOTTEN: &[Field] = &[until(Str, 7, 12), from(Uuid, 13), from(Int32s, 7)];
const FETCH: &[Field] = &[
    until(Int32, 0, 14),
    all(Int32),
    all(Int32),
    from(Int32, 3),
    from(Int8, 4),
    from(Int32, 7),
    from(Int32, 7),
    all(Structs(FETCH_TOPIC)),
    from(Structs(FETCH_FORGOTTEN), 7),
    from(Str, 11),
];

const LIST_OFFSETS_PARTITION: &[Field] = &[all(Int32), from(Int32, 4), all(Int64), until(Int32, 0, 0)];
const LIST_OFFSETS_TOPIC: &[Field] = &[all(Str), all(Structs(LIST_OFFSETS_PARTITION))];
const LIST_OFFSETS: &[Field] = &[
    all(Int32),
    from(Int8, 2),
    all(Structs(LIST_OFFSETS_TOPIC)),
    from(Int32, 10),
];

const CREATE_TOPICS_ASSIGNMENT: &[Field] = &[all(Int32), all(Int32s)];
const CREATE_TOPICS_CONFIG: &[Field] = &[all(Str), all(Str)];
const CREATE_TOPICS_TOPIC: &[Field] = &[
    all(Str),
    all(Int32),
    all(Int16),
    all(Structs(CREATE_TOPICS_ASSIGNMENT)),
    all(Structs(CREATE_TOPICS_CONFIG)),
];
const CREATE_TOPICS: &[Field] = &[all(Structs(CREATE_TOPICS_TOPIC)), all(Int32), from(Bool, 1)];

const INIT_PRODUCER_ID: &[Field] = &[
    all(Str),
    all(Int32),
    from(Int64, 3),
    from(Int16, 3),
    from(Bool, 6),
    from(Bool, 6),
];

const FIND_COORDINATOR: &[Field] = &[until(Str, 0, 3), from(Int8, 1), from(Strs, 4)];

const OFFSET_FOR_LEADER_EPOCH_PARTITION: &[Field] = &[all(Int32), from(Int32, 2), all(Int32)];
const OFFSET_FOR_LEADER_EPOCH_TOPIC: &[Field] = &[all(Str), all(Structs(OFFSET_FOR_LEADER_EPOCH_PARTITION))];
const OFFSET_FOR_LEADER_EPOCH: &[Field] = &[from(Int32, 3), all(Structs(OFFSET_FOR_LEADER_EPOCH_TOPIC))];

// The classic group protocol (Kafka's JoinGroupRequest.json and siblings).
const JOIN_GROUP_PROTOCOL: &[Field] = &[all(Str), all(Bytes)];
const JOIN_GROUP: &[Field] = &[
    all(Str),
    all(Int32),
    from(Int32, 1),
    all(Str),
    from(Str, 5),
    all(Str),
    all(Structs(JOIN_GROUP_PROTOCOL)),
    from(Str, 8),
];
const SYNC_GROUP_ASSIGNMENT: &[Field] = &[all(Str), all(Bytes)];
const SYNC_GROUP: &[Field] = &[
    all(Str),
    all(Int32),
    all(Str),
    from(Str, 3),
    from(Str, 5),
    from(Str, 5),
    all(Structs(SYNC_GROUP_ASSIGNMENT)),
];
const HEARTBEAT: &[Field] = &[all(Str), all(Int32), all(Str), from(Str, 3)];
const LEAVE_GROUP_MEMBER: &[Field] = &[all(Str), all(Str), from(Str, 5)];
const LEAVE_GROUP: &[Field] = &[all(Str), until(Str, 0, 2), from(Structs(LEAVE_GROUP_MEMBER), 3)];
const OFFSET_COMMIT_PARTITION: &[Field] = &[
    all(Int32),
    all(Int64),
    from(Int32, 6),
    until(Int64, 1, 1),
    all(Str),
];
const OFFSET_COMMIT_TOPIC: &[Field] = &[
    until(Str, 0, 9),
    from(Uuid, 10),
    all(Structs(OFFSET_COMMIT_PARTITION)),
];
const OFFSET_COMMIT: &[Field] = &[
    all(Str),
    from(Int32, 1),
    from(Str, 1),
    from(Str, 7),
    until(Int64, 2, 4),
    all(Structs(OFFSET_COMMIT_TOPIC)),
];
const OFFSET_FETCH_TOPIC: &[Field] = &[all(Str), all(Int32s)];
const OFFSET_FETCH_GROUP: &[Field] = &[
    all(Str),
    from(Str, 9),
    from(Int32, 9),
    all(Structs(OFFSET_FETCH_TOPIC)),
];
const OFFSET_FETCH: &[Field] = &[
    until(Str, 0, 7),
    until(Structs(OFFSET_FETCH_TOPIC), 0, 7),
    from(Structs(OFFSET_FETCH_GROUP), 8),
    from(Bool, 7),
];

const ADD_PARTITIONS_TO_TXN_TOPIC: &[Field] = &[all(Str), all(Int32s)];
const ADD_PARTITIONS_TO_TXN: &[Field] = &[
    until(Str, 0, 3),
    until(Int64, 0, 3),
    until(Int16, 0, 3),
    until(Structs(ADD_PARTITIONS_TO_TXN_TOPIC), 0, 3),
];

const END_TXN: &[Field] = &[all(Str), all(Int64), all(Int16), all(Bool)];

const WRITE_TXN_MARKERS_TOPIC: &[Field] = &[all(Str), all(Int32s)];
const WRITE_TXN_MARKERS_MARKER: &[Field] = &[
    all(Int64),
    all(Int16),
    all(Bool),
    all(Structs(WRITE_TXN_MARKERS_TOPIC)),
    all(Int32),
];
const WRITE_TXN_MARKERS: &[Field] = &[all(Structs(WRITE_TXN_MARKERS_MARKER))];

const ADD_OFFSETS_TO_TXN: &[Field] = &[all(Str), all(Int64), all(Int16), all(Str)];

const TXN_OFFSET_COMMIT_PARTITION: &[Field] = &[all(Int32), all(Int64), from(Int32, 2), all(Str)];
const TXN_OFFSET_COMMIT_TOPIC: &[Field] = &[all(Str), all(Structs(TXN_OFFSET_COMMIT_PARTITION))];
const TXN_OFFSET_COMMIT: &[Field] = &[
    all(Str),
    all(Str),
    all(Int64),
    all(Int16),
    from(Int32, 3),
    from(Str, 3),
    from(Str, 3),
    all(Structs(TXN_OFFSET_COMMIT_TOPIC)),
];

/// The body's fields and the first flexible version (which uses compact lengths and tagged
/// fields), for the APIs we implement.
fn layout(api_key: ApiKey) -> Option<(&'static [Field], i16)> {
    Some(match api_key {
        ApiKey::ApiVersions => (API_VERSIONS, 3),
        ApiKey::Metadata => (METADATA, 9),
        ApiKey::Produce => (PRODUCE, 9),
        ApiKey::Fetch => (FETCH, 12),
        ApiKey::ListOffsets => (LIST_OFFSETS, 6),
        ApiKey::CreateTopics => (CREATE_TOPICS, 5),
        ApiKey::InitProducerId => (INIT_PRODUCER_ID, 2),
        ApiKey::FindCoordinator => (FIND_COORDINATOR, 3),
        ApiKey::OffsetForLeaderEpoch => (OFFSET_FOR_LEADER_EPOCH, 4),
        ApiKey::JoinGroup => (JOIN_GROUP, 6),
        ApiKey::SyncGroup => (SYNC_GROUP, 4),
        ApiKey::Heartbeat => (HEARTBEAT, 4),
        ApiKey::LeaveGroup => (LEAVE_GROUP, 4),
        ApiKey::OffsetCommit => (OFFSET_COMMIT, 8),
        ApiKey::OffsetFetch => (OFFSET_FETCH, 6),
        ApiKey::AddPartitionsToTxn => (ADD_PARTITIONS_TO_TXN, 3),
        ApiKey::EndTxn => (END_TXN, 3),
        ApiKey::WriteTxnMarkers => (WRITE_TXN_MARKERS, 1),
        ApiKey::AddOffsetsToTxn => (ADD_OFFSETS_TO_TXN, 3),
        ApiKey::TxnOffsetCommit => (TXN_OFFSET_COMMIT, 3),
        _ => return None,
    })
}

/// Checks that `body` has the shape of an `api_key` request at `version`, every length
/// within the bytes left. Returns how many bytes the body took. Panics for an API without a
/// layout: the caller checks the API is ours first.
pub(crate) fn check_request(api_key: ApiKey, version: i16, body: &[u8]) -> Result<usize, String> {
    let (fields, flexible_from) = layout(api_key).unwrap_or_else(|| panic!("no layout for {api_key:?}"));
    let mut walker = Walker {
        bytes: body,
        position: 0,
        version,
        flexible: version >= flexible_from,
    };
    walker.fields(fields)?;
    Ok(walker.position)
}

struct Walker<'a> {
    bytes: &'a [u8],
    position: usize,
    version: i16,
    flexible: bool,
}

impl Walker<'_> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    /// A struct: its fields in this version, then (flexible versions) its tagged fields.
    fn fields(&mut self, fields: &[Field]) -> Result<(), String> {
        for field in fields {
            if (field.version_min..=field.version_max).contains(&self.version) {
                self.field(field.kind)?;
            }
        }
        if self.flexible {
            self.tagged_fields()?;
        }
        Ok(())
    }

    fn field(&mut self, kind: Kind) -> Result<(), String> {
        match kind {
            Int8 | Bool => self.skip(1),
            Int16 => self.skip(2),
            Int32 => self.skip(4),
            Int64 => self.skip(8),
            Uuid => self.skip(16),
            Str => {
                let length = self.length(2)?;
                self.skip(length)
            }
            Bytes => {
                let length = self.length(4)?;
                self.skip(length)
            }
            Int32s => {
                let count = self.array_count()?;
                self.skip(count.saturating_mul(4))
            }
            Strs => (0..self.array_count()?).try_for_each(|_| self.field(Str)),
            Structs(fields) => (0..self.array_count()?).try_for_each(|_| self.fields(fields)),
        }
    }

    fn skip(&mut self, bytes: usize) -> Result<(), String> {
        if bytes > self.remaining() {
            return Err(format!("{bytes} bytes claimed, {} left", self.remaining()));
        }
        self.position += bytes;
        Ok(())
    }

    /// A string's or bytes' length: a signed `width`-byte length, or compact (unsigned
    /// varint, length + 1); null (-1, or 0 compact) is no bytes.
    fn length(&mut self, width: usize) -> Result<usize, String> {
        let length = if self.flexible {
            i64::from(self.unsigned_varint()?) - 1
        } else {
            let field = self
                .bytes
                .get(self.position..self.position + width)
                .ok_or("truncated length")?;
            self.position += width;
            match width {
                2 => i64::from(i16::from_be_bytes([field[0], field[1]])),
                _ => i64::from(i32::from_be_bytes([field[0], field[1], field[2], field[3]])),
            }
        };
        if length < -1 {
            return Err(format!("negative length {length}"));
        }
        Ok(length.max(0) as usize)
    }

    /// An array's element count, which cannot exceed the bytes left (every element takes at
    /// least one).
    fn array_count(&mut self) -> Result<usize, String> {
        let count = self.length(4)?;
        if count > self.remaining() {
            return Err(format!("an array of {count} in {} bytes", self.remaining()));
        }
        Ok(count)
    }

    fn tagged_fields(&mut self) -> Result<(), String> {
        let count = self.unsigned_varint()? as usize;
        if count > self.remaining() {
            return Err(format!("{count} tagged fields in {} bytes", self.remaining()));
        }
        for _ in 0..count {
            self.unsigned_varint()?;
            let size = self.unsigned_varint()? as usize;
            self.skip(size)?;
        }
        Ok(())
    }

    /// An unsigned varint of at most 5 bytes (a u32), as Kafka's `ByteUtils.readUnsignedVarint`.
    fn unsigned_varint(&mut self) -> Result<u32, String> {
        let mut value: u64 = 0;
        for index in 0..5 {
            let byte = *self.bytes.get(self.position).ok_or("truncated varint")?;
            self.position += 1;
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return u32::try_from(value).map_err(|_| "varint over 32 bits".to_string());
            }
        }
        Err("varint longer than 5 bytes".to_string())
    }
}
