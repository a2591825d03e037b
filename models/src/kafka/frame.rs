//! The on-disk frame of one record batch in a log segment: a length prefix, a CRC-32C and
//! every [`Batch`] field.
//!
//! This is our own format, not Kafka's RecordBatch v2: nothing outside the simulated disk
//! reads a segment, so only the properties recovery relies on are kept. Like v2, a frame
//! starts with its length and carries a CRC-32C (Castagnoli, as v2 uses), so a torn or
//! corrupt tail is detected batch by batch; unlike v2, the CRC covers the base offset and
//! leader epoch too (v2 leaves them out so a leader can rewrite them without recomputing).
//!
//! ```text
//! frame   = length:u32  crc32c:u32  body            (big-endian; length counts crc + body)
//! body    = version:u8 (= 1)  base_offset:i64  leader_epoch:i32  producer_id:i64
//!           producer_epoch:i16  base_sequence:i32  record_count:u32  record*
//!         | version:u8 (= 2)  flags:u8  (then as version 1)
//! flags   = bit 0: transactional, bit 1: control
//! record  = key_length:i32 (-1 = null)  key  value_length:i32 (-1 = null)  value
//! ```

use super::batch::{Batch, Record};

/// Bytes before the body: the length and the CRC.
pub const FRAME_HEADER_BYTES: usize = 8;
/// The smallest body: the fixed fields and one record with a null key and value.
const BODY_FIXED_BYTES: usize = 1 + 8 + 4 + 8 + 2 + 4 + 4;
const RECORD_MIN_BYTES: usize = 8;
const FORMAT_VERSION: u8 = 1;
/// Version 2 adds a flags byte for transactional and control batches. Batches without
/// either keep version 1, so logs written before transactions read and size the same.
const FORMAT_VERSION_FLAGS: u8 = 2;
const FLAG_TRANSACTIONAL: u8 = 1;
const FLAG_CONTROL: u8 = 2;

fn flags(batch: &Batch) -> u8 {
    let mut flags = 0;
    if batch.transactional {
        flags |= FLAG_TRANSACTIONAL;
    }
    if batch.control {
        flags |= FLAG_CONTROL;
    }
    flags
}

/// The largest frame we ever write or accept when reading: a bound on what a corrupt
/// length prefix can make recovery allocate. Kafka's `message.max.bytes` default is
/// 1 MiB + 12 bytes; a topic may raise it, so we leave room.
pub const FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;
/// The most records in one batch. Kafka has no separate limit (a batch's record count is
/// an int32 bounded by the batch size); ours bounds what a corrupt count can make us do.
pub const BATCH_RECORDS_MAX: usize = 100_000;

/// Why bytes at some position in a segment are not a whole, valid frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The bytes end before the frame does: a torn write at the tail.
    Incomplete,
    /// The frame is whole but wrong: bad length, CRC or body.
    Corrupt(&'static str),
}

/// The frame's size for `batch`, without encoding it.
pub fn frame_bytes(batch: &Batch) -> usize {
    let records: usize = batch
        .records
        .iter()
        .map(|r| RECORD_MIN_BYTES + r.key.as_ref().map_or(0, Vec::len) + r.value.as_ref().map_or(0, Vec::len))
        .sum();
    let flags_bytes = usize::from(flags(batch) != 0);
    FRAME_HEADER_BYTES + BODY_FIXED_BYTES + flags_bytes + records
}

/// Encodes `batch` as one frame. The caller has checked the limits.
pub fn encode(batch: &Batch) -> Vec<u8> {
    assert!(!batch.records.is_empty(), "a batch holds at least one record");
    assert!(batch.records.len() <= BATCH_RECORDS_MAX);
    let size = frame_bytes(batch);
    assert!(size <= FRAME_BYTES_MAX, "frame of {size} bytes");
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    match flags(batch) {
        0 => out.push(FORMAT_VERSION),
        flags => out.extend_from_slice(&[FORMAT_VERSION_FLAGS, flags]),
    }
    out.extend_from_slice(&batch.base_offset.to_be_bytes());
    out.extend_from_slice(&batch.leader_epoch.to_be_bytes());
    out.extend_from_slice(&batch.producer_id.to_be_bytes());
    out.extend_from_slice(&batch.producer_epoch.to_be_bytes());
    out.extend_from_slice(&batch.base_sequence.to_be_bytes());
    out.extend_from_slice(&(batch.records.len() as u32).to_be_bytes());
    for record in &batch.records {
        put_bytes(&mut out, record.key.as_deref());
        put_bytes(&mut out, record.value.as_deref());
    }
    assert_eq!(out.len(), size);
    let crc = crc32c(&out[FRAME_HEADER_BYTES..]);
    out[0..4].copy_from_slice(&((size - 4) as u32).to_be_bytes());
    out[4..8].copy_from_slice(&crc.to_be_bytes());
    out
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(b) => {
            out.extend_from_slice(&(b.len() as i32).to_be_bytes());
            out.extend_from_slice(b);
        }
    }
}

/// The length of the frame starting at `bytes[0]`, from its prefix alone, once at least
/// four bytes are there. A length outside the bounds is corrupt, whatever follows.
pub fn frame_len(bytes: &[u8]) -> Result<usize, FrameError> {
    let prefix: [u8; 4] = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(FrameError::Incomplete)?;
    let len = u32::from_be_bytes(prefix) as usize + 4;
    let smallest = FRAME_HEADER_BYTES + BODY_FIXED_BYTES + RECORD_MIN_BYTES;
    if !(smallest..=FRAME_BYTES_MAX).contains(&len) {
        return Err(FrameError::Corrupt("frame length out of bounds"));
    }
    Ok(len)
}

/// Decodes the frame at the start of `bytes`; returns the batch and the frame's length.
/// Never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<(Batch, usize), FrameError> {
    let len = frame_len(bytes)?;
    let frame = bytes.get(..len).ok_or(FrameError::Incomplete)?;
    let crc = u32::from_be_bytes(frame[4..8].try_into().expect("eight header bytes"));
    let body = &frame[FRAME_HEADER_BYTES..];
    if crc32c(body) != crc {
        return Err(FrameError::Corrupt("CRC mismatch"));
    }
    let batch = decode_body(body).ok_or(FrameError::Corrupt("malformed body"))?;
    Ok((batch, len))
}

/// Reads big-endian fields off the front of a slice, failing (never panicking) at its end.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn optional_bytes(&mut self) -> Option<Option<Vec<u8>>> {
        match i32::from_be_bytes(self.array()?) {
            -1 => Some(None),
            n if n >= 0 => Some(Some(self.take(n as usize)?.to_vec())),
            _ => None,
        }
    }
}

fn decode_body(body: &[u8]) -> Option<Batch> {
    let mut r = Reader { bytes: body };
    let flags = match r.array::<1>()?[0] {
        FORMAT_VERSION => 0,
        FORMAT_VERSION_FLAGS => r.array::<1>()?[0],
        _ => return None,
    };
    if flags & !(FLAG_TRANSACTIONAL | FLAG_CONTROL) != 0 {
        return None;
    }
    let base_offset = i64::from_be_bytes(r.array()?);
    let leader_epoch = i32::from_be_bytes(r.array()?);
    let producer_id = i64::from_be_bytes(r.array()?);
    let producer_epoch = i16::from_be_bytes(r.array()?);
    let base_sequence = i32::from_be_bytes(r.array()?);
    let count = u32::from_be_bytes(r.array()?) as usize;
    if count == 0 || count > BATCH_RECORDS_MAX || base_offset < 0 {
        return None;
    }
    let mut records = Vec::with_capacity(count.min(body.len() / RECORD_MIN_BYTES));
    for _ in 0..count {
        let key = r.optional_bytes()?;
        let value = r.optional_bytes()?;
        records.push(Record { key, value });
    }
    if !r.bytes.is_empty() {
        return None;
    }
    Some(Batch {
        base_offset,
        leader_epoch,
        producer_id,
        producer_epoch,
        base_sequence,
        transactional: flags & FLAG_TRANSACTIONAL != 0,
        control: flags & FLAG_CONTROL != 0,
        records,
    })
}

/// CRC-32C (Castagnoli), the checksum Kafka's record batches carry.
pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc = CRC32C_TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

const CRC32C_TABLE: [u32; 256] = crc32c_table();

const fn crc32c_table() -> [u32; 256] {
    // The reflected Castagnoli polynomial.
    const POLYNOMIAL: u32 = 0x82F6_3B78;
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLYNOMIAL
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Batch {
        Batch {
            base_offset: 42,
            leader_epoch: 3,
            producer_id: 7,
            producer_epoch: 1,
            base_sequence: 10,
            transactional: false,
            control: false,
            records: vec![
                Record {
                    key: None,
                    value: Some(b"v1".to_vec()),
                },
                Record {
                    key: Some(b"k".to_vec()),
                    value: None,
                },
                Record {
                    key: Some(Vec::new()),
                    value: Some(Vec::new()),
                },
            ],
        }
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // The check value of CRC-32C over "123456789" (RFC 3720, appendix B.4).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn a_frame_round_trips_every_field() {
        let frame = encode(&batch());
        assert_eq!(frame.len(), frame_bytes(&batch()));
        assert_eq!(decode(&frame), Ok((batch(), frame.len())));
        let mut two = frame.clone();
        two.extend_from_slice(&frame);
        assert_eq!(decode(&two).unwrap().1, frame.len());
    }

    #[test]
    fn transactional_and_control_batches_round_trip_and_plain_ones_keep_version_one() {
        assert_eq!(encode(&batch())[FRAME_HEADER_BYTES], FORMAT_VERSION);
        let data = Batch {
            transactional: true,
            ..batch()
        };
        let marker = Batch {
            base_offset: 45,
            ..Batch::marker(7, 1, crate::kafka::batch::ControlType::Commit, 4)
        };
        for b in [data, marker] {
            let frame = encode(&b);
            assert_eq!(frame.len(), frame_bytes(&b));
            assert_eq!(frame[FRAME_HEADER_BYTES], FORMAT_VERSION_FLAGS);
            assert_eq!(decode(&frame), Ok((b.clone(), frame.len())));
        }
    }

    #[test]
    fn every_prefix_is_incomplete_and_every_flipped_bit_is_caught() {
        let frame = encode(&batch());
        for cut in 0..frame.len() {
            assert_eq!(decode(&frame[..cut]), Err(FrameError::Incomplete), "cut at {cut}");
        }
        for bit in 0..frame.len() * 8 {
            let mut bad = frame.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&bad).is_err(), "flipped bit {bit} went unnoticed");
        }
    }

    #[test]
    fn zeros_and_garbage_are_corrupt_not_a_panic() {
        assert_eq!(
            decode(&[0; 64]),
            Err(FrameError::Corrupt("frame length out of bounds"))
        );
        assert!(decode(&[0xff; 64]).is_err());
        let mut state = 1u64;
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..48)
                .map(|_| {
                    state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    (state >> 56) as u8
                })
                .collect();
            let _ = decode(&bytes);
        }
    }
}
