//! One partition replica's log on a [`Disk`], sans I/O beyond the disk: segments, recovery,
//! the flush policy, the leader epoch cache and the high-watermark checkpoint (reference
//! §2.1-2.3; Kafka's `UnifiedLog`, `LocalLog`, `LogSegment`, `LogLoader`).
//!
//! - The log lives under a directory prefix (`orders-0/`). Segments are named by their base
//!   offset (`00000000000000000000.log`); each batch is one frame ([`super::frame`]). A batch
//!   goes into a new segment when it would take the active one past `segment_bytes` (Kafka's
//!   `LogSegment.shouldRoll`, size part). Kafka's offset and time indexes are kept in memory
//!   here, rebuilt by the scan on open as Kafka rebuilds them after an unclean shutdown.
//! - Nothing is fsynced on append unless the flush policy says so. Kafka's defaults
//!   (`log.flush.interval.messages` and `log.flush.interval.ms` both `Long.MAX_VALUE`) never
//!   fsync and rely on replication (reference §2.1), with one exception: a roll schedules an
//!   asynchronous flush of the segments before the new one (`UnifiedLog.roll`). Here that
//!   flush runs at the next [`PartitionLog::tick`], so a power failure right after a roll
//!   still loses the old segment's unsynced tail, as it can in Kafka.
//! - Opening scans every segment (Kafka scans only those past its recovery-point checkpoint;
//!   we keep no such checkpoint, so the whole log is "unflushed"), keeps whole valid batches
//!   and truncates at the first torn or corrupt frame, deleting every later segment
//!   (`LogLoader.recoverLog`).
//! - The leader epoch cache is persisted to `leader-epoch-checkpoint` whenever it changes.
//!   The high watermark is persisted only when the owner says (`replication-offset-checkpoint`,
//!   every `replica.high.watermark.checkpoint.interval.ms` in Kafka's replica manager).

use super::batch::Batch;
use super::checkpoint;
use super::epoch_cache::LeaderEpochCache;
use super::frame::{self, FrameError, BATCH_RECORDS_MAX, FRAME_BYTES_MAX};
use sim::disk::Disk;
use std::fmt;
use std::io;

/// The most segments one log may have. Kafka has no limit but file handles; with no
/// retention here, a runaway writer hits this first.
pub const SEGMENT_COUNT_MAX: usize = 10_000;
const SEGMENT_SUFFIX: &str = ".log";
const SEGMENT_NAME_DIGITS: usize = 20;
const EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
const HIGH_WATERMARK_CHECKPOINT_FILE: &str = "replication-offset-checkpoint";

/// A topic's log settings, named as Kafka's topic configs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: a segment is rolled before it would pass this size.
    pub segment_bytes: u64,
    /// `max.message.bytes`: the largest batch (frame) a produce may append.
    pub max_message_bytes: usize,
    /// `flush.messages`: fsync once this many messages are unflushed; `None` never does
    /// (Kafka's default, `Long.MAX_VALUE`).
    pub flush_interval_messages: Option<u64>,
    /// `flush.ms`: fsync at a tick this long after the last flush; `None` never does.
    pub flush_interval_ms: Option<u64>,
}

impl Default for LogConfig {
    /// Kafka's defaults: 1 GiB segments, 1 MiB + 12 byte batches, no fsync.
    fn default() -> LogConfig {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            max_message_bytes: 1024 * 1024 + 12,
            flush_interval_messages: None,
            flush_interval_ms: None,
        }
    }
}

/// What opening the log found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub batches: usize,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// Bytes dropped: a torn or corrupt tail, and every segment after it.
    pub bytes_truncated: u64,
    /// The offset the log was cut at, when something was dropped.
    pub truncated_at_offset: Option<i64>,
    /// Base offsets of the segments deleted because they followed a cut.
    pub segments_deleted: Vec<i64>,
    /// The epoch cache entries as recovered, and whether the checkpoint file had to be
    /// rewritten to match (stale entries past the recovered end, or missing ones).
    pub epoch_entries: Vec<(i32, i64)>,
    pub epoch_checkpoint_rewritten: bool,
    /// A checkpoint file that could not be parsed (Kafka would fail the log directory; we
    /// start from what the segments say).
    pub unreadable_checkpoints: Vec<String>,
    pub high_watermark_checkpoint: Option<i64>,
}

/// Errors a caller can act on. A broken invariant panics instead.
#[derive(Debug)]
pub enum LogError {
    /// Kafka's RECORD_TOO_LARGE: the batch is over `max.message.bytes`.
    RecordTooLarge {
        frame_bytes: usize,
        max_message_bytes: usize,
    },
    /// Kafka's RecordBatchTooLargeException: the batch would not fit in any segment.
    BatchLargerThanSegment {
        frame_bytes: usize,
        segment_bytes: u64,
    },
    /// An empty batch, or one over [`BATCH_RECORDS_MAX`] records.
    InvalidRecordCount {
        records: usize,
    },
    /// Kafka's OFFSET_OUT_OF_RANGE: a read outside `[log_start_offset, log_end_offset]`.
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// A frame read back from the page cache is not what was written.
    Corrupt {
        offset: i64,
        reason: &'static str,
    },
    Io(io::Error),
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::RecordTooLarge {
                frame_bytes,
                max_message_bytes,
            } => {
                write!(
                    f,
                    "batch of {frame_bytes} bytes is over max.message.bytes {max_message_bytes}"
                )
            }
            LogError::BatchLargerThanSegment {
                frame_bytes,
                segment_bytes,
            } => {
                write!(
                    f,
                    "batch of {frame_bytes} bytes is over segment.bytes {segment_bytes}"
                )
            }
            LogError::InvalidRecordCount { records } => {
                write!(f, "batch of {records} records (1..={BATCH_RECORDS_MAX})")
            }
            LogError::OffsetOutOfRange {
                offset,
                log_start_offset,
                log_end_offset,
            } => write!(
                f,
                "offset {offset} out of range [{log_start_offset}, {log_end_offset}]"
            ),
            LogError::Corrupt { offset, reason } => write!(f, "batch at {offset} corrupt: {reason}"),
            LogError::Io(e) => write!(f, "log i/o: {e}"),
        }
    }
}

impl std::error::Error for LogError {}

impl From<io::Error> for LogError {
    fn from(e: io::Error) -> LogError {
        LogError::Io(e)
    }
}

/// Where one batch is, in memory (Kafka's offset index, but for every batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BatchEntry {
    base_offset: i64,
    next_offset: i64,
    position: u64,
    frame_bytes: u64,
}

#[derive(Clone, Debug)]
struct Segment {
    base_offset: i64,
    file: String,
    batches: Vec<BatchEntry>,
    size_bytes: u64,
    /// Written (or cut) since its last fsync.
    unflushed: bool,
}

impl Segment {
    fn next_offset(&self) -> i64 {
        self.batches.last().map_or(self.base_offset, |b| b.next_offset)
    }
}

/// One partition replica's log.
pub struct PartitionLog<D: Disk> {
    disk: D,
    dir: String,
    config: LogConfig,
    /// By base offset; the last is the active segment. Never empty.
    segments: Vec<Segment>,
    log_start_offset: i64,
    epochs: LeaderEpochCache,
    /// Every offset below is fsynced (Kafka's recovery point).
    recovery_point: i64,
    last_flush_ms: u64,
    /// The flush a roll scheduled: up to this offset, at the next tick.
    roll_flush_offset: Option<i64>,
    high_watermark_checkpoint: Option<i64>,
}

impl<D: Disk> PartitionLog<D> {
    /// Opens (or creates) the log under `dir`, recovering it as Kafka's log loader does
    /// after an unclean shutdown. Garbage on disk is cut, never a panic.
    pub fn open(
        disk: D,
        dir: &str,
        config: LogConfig,
        now_ms: u64,
    ) -> io::Result<(PartitionLog<D>, RecoveryReport)> {
        assert!(config.segment_bytes > 0, "segment.bytes must be positive");
        assert!(
            config.max_message_bytes > 0 && config.max_message_bytes <= FRAME_BYTES_MAX,
            "max.message.bytes must be in 1..={FRAME_BYTES_MAX}"
        );
        assert!(
            config.flush_interval_messages != Some(0),
            "flush.messages must be positive"
        );
        let mut log = PartitionLog {
            disk,
            dir: dir.to_string(),
            config,
            segments: Vec::new(),
            log_start_offset: 0,
            epochs: LeaderEpochCache::new(),
            recovery_point: 0,
            last_flush_ms: now_ms,
            roll_flush_offset: None,
            high_watermark_checkpoint: None,
        };
        let mut report = RecoveryReport::default();
        let checkpointed_epochs = log.load_epoch_checkpoint(&mut report)?;
        log.epochs = checkpointed_epochs.clone();
        log.recover_segments(&mut report)?;
        log.epochs.truncate_from_end(log.log_end_offset());
        if log.epochs != checkpointed_epochs {
            log.persist_epochs()?;
            report.epoch_checkpoint_rewritten = true;
        }
        log.high_watermark_checkpoint = log.load_high_watermark_checkpoint(&mut report)?;
        // We cannot know what of the recovered data is durable (a kill leaves it all in the
        // page cache), so everything counts as unflushed until the next flush.
        log.recovery_point = log.log_start_offset;
        report.segments = log.segments.len();
        report.batches = log.segments.iter().map(|s| s.batches.len()).sum();
        report.log_start_offset = log.log_start_offset;
        report.log_end_offset = log.log_end_offset();
        report.epoch_entries = log.epochs.entries();
        report.high_watermark_checkpoint = log.high_watermark_checkpoint;
        log.check_invariants();
        Ok((log, report))
    }

    fn segment_file(&self, base_offset: i64) -> String {
        format!(
            "{}{base_offset:0width$}{SEGMENT_SUFFIX}",
            self.dir,
            width = SEGMENT_NAME_DIGITS
        )
    }

    fn epoch_checkpoint_file(&self) -> String {
        format!("{}{EPOCH_CHECKPOINT_FILE}", self.dir)
    }

    fn high_watermark_checkpoint_file(&self) -> String {
        format!("{}{HIGH_WATERMARK_CHECKPOINT_FILE}", self.dir)
    }

    /// The base offsets of the segment files under the directory, sorted.
    fn list_segment_offsets(&self) -> io::Result<Vec<i64>> {
        let mut offsets: Vec<i64> = self
            .disk
            .list()?
            .iter()
            .filter_map(|name| name.strip_prefix(self.dir.as_str()))
            .filter_map(|name| name.strip_suffix(SEGMENT_SUFFIX))
            .filter(|digits| {
                digits.len() == SEGMENT_NAME_DIGITS && digits.bytes().all(|b| b.is_ascii_digit())
            })
            .filter_map(|digits| digits.parse().ok())
            .collect();
        offsets.sort_unstable();
        Ok(offsets)
    }

    /// Scans every segment, keeps the valid prefix of the log and cuts the rest.
    fn recover_segments(&mut self, report: &mut RecoveryReport) -> io::Result<()> {
        let offsets = self.list_segment_offsets()?;
        assert!(offsets.len() <= SEGMENT_COUNT_MAX, "{} segments", offsets.len());
        let mut cut = false;
        for base_offset in offsets {
            let file = self.segment_file(base_offset);
            if cut {
                report.bytes_truncated += self.disk.len(&file)?;
                report.segments_deleted.push(base_offset);
                self.disk.remove(&file)?;
                continue;
            }
            // Offsets continue from segment to segment. Kafka allows gaps (compaction), but
            // without compaction a gap can only come from power loss reverting an earlier
            // segment's tail while a later one survived; it is cut like a corrupt tail.
            let expected = self.segments.last().map_or(base_offset, Segment::next_offset);
            let segment = self.scan_segment(base_offset, expected, report)?;
            cut = report.truncated_at_offset.is_some();
            if cut && segment.batches.is_empty() && !self.segments.is_empty() {
                report.segments_deleted.push(base_offset);
                self.disk.remove(&file)?;
            } else {
                self.segments.push(segment);
            }
        }
        if self.segments.is_empty() {
            self.create_segment(0)?;
        }
        self.log_start_offset = self.segments[0].base_offset;
        Ok(())
    }

    /// Reads one segment's valid batches and truncates the file after the last of them
    /// (Kafka's `LogSegment.recover`), re-assigning leader epochs from the batches as it goes.
    fn scan_segment(
        &mut self,
        base_offset: i64,
        expected_offset: i64,
        report: &mut RecoveryReport,
    ) -> io::Result<Segment> {
        let file = self.segment_file(base_offset);
        let bytes = self.disk.read(&file)?;
        let mut segment = Segment {
            base_offset,
            file,
            batches: Vec::new(),
            size_bytes: 0,
            unflushed: true,
        };
        let mut next_offset = expected_offset;
        let mut position = 0usize;
        let mut valid = base_offset == expected_offset;
        while valid && position < bytes.len() {
            match frame::decode(&bytes[position..]) {
                Ok((batch, len)) if batch.base_offset == next_offset => {
                    // Kafka's LogSegment.recover assigns an epoch only when it is newer
                    // than the latest the cache knows.
                    if batch.leader_epoch >= 0
                        && self.epochs.latest_epoch().is_none_or(|e| batch.leader_epoch > e)
                    {
                        self.epochs.assign(batch.leader_epoch, batch.base_offset);
                    }
                    segment.batches.push(BatchEntry {
                        base_offset: batch.base_offset,
                        next_offset: batch.next_offset(),
                        position: position as u64,
                        frame_bytes: len as u64,
                    });
                    next_offset = batch.next_offset();
                    position += len;
                }
                Ok(_) | Err(FrameError::Incomplete) | Err(FrameError::Corrupt(_)) => valid = false,
            }
        }
        if position < bytes.len() {
            report.bytes_truncated += (bytes.len() - position) as u64;
            report.truncated_at_offset = Some(next_offset);
            self.disk.truncate(&segment.file, position as u64)?;
        }
        if !valid && report.truncated_at_offset.is_none() {
            // An empty segment whose name does not continue the log.
            report.truncated_at_offset = Some(next_offset);
        }
        segment.size_bytes = position as u64;
        Ok(segment)
    }

    fn load_epoch_checkpoint(&self, report: &mut RecoveryReport) -> io::Result<LeaderEpochCache> {
        let mut cache = LeaderEpochCache::new();
        let path = self.epoch_checkpoint_file();
        let entries = match checkpoint::read(&self.disk, &path) {
            Ok(entries) => entries.unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                report.unreadable_checkpoints.push(path);
                return Ok(cache);
            }
            Err(e) => return Err(e),
        };
        for fields in entries {
            match fields.as_slice() {
                [epoch, offset] => match (epoch.parse::<i32>(), offset.parse::<i64>()) {
                    (Ok(e), Ok(o)) if e >= 0 && o >= 0 => {
                        cache.assign(e, o);
                    }
                    _ => {
                        report.unreadable_checkpoints.push(path);
                        return Ok(LeaderEpochCache::new());
                    }
                },
                _ => {
                    report.unreadable_checkpoints.push(path);
                    return Ok(LeaderEpochCache::new());
                }
            }
        }
        Ok(cache)
    }

    fn load_high_watermark_checkpoint(&self, report: &mut RecoveryReport) -> io::Result<Option<i64>> {
        let path = self.high_watermark_checkpoint_file();
        let entries = match checkpoint::read(&self.disk, &path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => None,
            Err(e) => return Err(e),
        };
        let Some(entries) = entries else {
            return Ok(None);
        };
        let high_watermark = match entries.as_slice() {
            [fields] if fields.len() == 2 => fields[1].parse::<i64>().ok().filter(|hw| *hw >= 0),
            _ => None,
        };
        if high_watermark.is_none() {
            report.unreadable_checkpoints.push(path);
        }
        Ok(high_watermark)
    }

    fn persist_epochs(&self) -> io::Result<()> {
        let entries: Vec<Vec<String>> = self
            .epochs
            .entries()
            .iter()
            .map(|(e, o)| vec![e.to_string(), o.to_string()])
            .collect();
        checkpoint::write_atomic(&self.disk, &self.epoch_checkpoint_file(), &entries)
    }

    fn create_segment(&mut self, base_offset: i64) -> io::Result<()> {
        assert!(
            self.segments.len() < SEGMENT_COUNT_MAX,
            "over {SEGMENT_COUNT_MAX} segments"
        );
        let file = self.segment_file(base_offset);
        // Kafka replaces an existing file of that name (an empty active segment rolled at
        // the same offset); after a cut there may be stale bytes to clear as well.
        self.disk.write_at(&file, 0, &[])?;
        self.disk.truncate(&file, 0)?;
        self.segments.push(Segment {
            base_offset,
            file,
            batches: Vec::new(),
            size_bytes: 0,
            unflushed: true,
        });
        Ok(())
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// The log end offset (LEO): the offset the next batch gets.
    pub fn log_end_offset(&self) -> i64 {
        self.segments
            .last()
            .expect("a log has an active segment")
            .next_offset()
    }

    /// Every offset below this is fsynced (Kafka's recovery point).
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// The base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.iter().map(|s| s.base_offset).collect()
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// The leader epoch cache's entries (epoch, start offset), oldest first.
    pub fn epoch_entries(&self) -> Vec<(i32, i64)> {
        self.epochs.entries()
    }

    /// Kafka's OffsetsForLeaderEpoch answer for this replica
    /// ([`LeaderEpochCache::end_offset_for`]); `None` is UNDEFINED.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// Appends `batch` as the leader of `epoch`: the batch gets offsets from the log end
    /// and the epoch. Returns its base offset.
    pub fn append_as_leader(&mut self, mut batch: Batch, epoch: i32, now_ms: u64) -> Result<i64, LogError> {
        assert!(epoch >= 0, "a leader has an epoch");
        assert!(
            self.latest_epoch().is_none_or(|latest| epoch >= latest),
            "leader epoch {epoch} below the log's latest {:?}: the caller must fence it",
            self.latest_epoch()
        );
        batch.base_offset = self.log_end_offset();
        batch.leader_epoch = epoch;
        let base_offset = batch.base_offset;
        self.append(&batch, now_ms)?;
        Ok(base_offset)
    }

    /// Appends `batch` as a follower: offsets and epoch are the leader's, and must continue
    /// this log (the fetcher truncates first when they do not).
    pub fn append_as_follower(&mut self, batch: Batch, now_ms: u64) -> Result<(), LogError> {
        assert_eq!(
            batch.base_offset,
            self.log_end_offset(),
            "a follower's batch must start at its log end offset"
        );
        assert!(
            batch.leader_epoch >= 0,
            "a replicated batch carries its leader's epoch"
        );
        self.append(&batch, now_ms)
    }

    fn validate(&self, batch: &Batch) -> Result<Vec<u8>, LogError> {
        if batch.records.is_empty() || batch.records.len() > BATCH_RECORDS_MAX {
            return Err(LogError::InvalidRecordCount {
                records: batch.records.len(),
            });
        }
        let frame_bytes = frame::frame_bytes(batch);
        if frame_bytes > self.config.max_message_bytes {
            return Err(LogError::RecordTooLarge {
                frame_bytes,
                max_message_bytes: self.config.max_message_bytes,
            });
        }
        if frame_bytes as u64 > self.config.segment_bytes {
            return Err(LogError::BatchLargerThanSegment {
                frame_bytes,
                segment_bytes: self.config.segment_bytes,
            });
        }
        Ok(frame::encode(batch))
    }

    fn append(&mut self, batch: &Batch, now_ms: u64) -> Result<(), LogError> {
        let frame = self.validate(batch)?;
        self.maybe_roll(frame.len() as u64)?;
        let segment = self.segments.last_mut().expect("a log has an active segment");
        self.disk.write_at(&segment.file, segment.size_bytes, &frame)?;
        segment.batches.push(BatchEntry {
            base_offset: batch.base_offset,
            next_offset: batch.next_offset(),
            position: segment.size_bytes,
            frame_bytes: frame.len() as u64,
        });
        segment.size_bytes += frame.len() as u64;
        segment.unflushed = true;
        // UnifiedLog.append: the epoch stamped on the batch updates the cache (a no-op
        // unless it is the first batch of a newer epoch).
        if self.epochs.assign(batch.leader_epoch, batch.base_offset) {
            self.persist_epochs()?;
        }
        let unflushed_messages = (self.log_end_offset() - self.recovery_point) as u64;
        if self
            .config
            .flush_interval_messages
            .is_some_and(|n| unflushed_messages >= n)
        {
            self.flush(now_ms)?;
        }
        Ok(())
    }

    /// Starts a new segment if `frame_bytes` more would take the active one past
    /// `segment_bytes`, and schedules the flush of the old ones for the next tick.
    fn maybe_roll(&mut self, frame_bytes: u64) -> io::Result<()> {
        let active = self.segments.last().expect("a log has an active segment");
        if active.size_bytes == 0 || active.size_bytes + frame_bytes <= self.config.segment_bytes {
            return Ok(());
        }
        let base_offset = self.log_end_offset();
        self.create_segment(base_offset)?;
        self.roll_flush_offset = Some(base_offset);
        Ok(())
    }

    /// The scheduler's work: the flush a roll scheduled, and `flush.ms`. Kafka's log
    /// manager checks `flush.ms` every `log.flush.scheduler.interval.ms`; the driver's
    /// tick interval plays that part.
    pub fn tick(&mut self, now_ms: u64) -> io::Result<()> {
        if let Some(offset) = self.roll_flush_offset.take() {
            self.flush_up_to(offset, now_ms)?;
        }
        let due = self
            .config
            .flush_interval_ms
            .is_some_and(|ms| now_ms.saturating_sub(self.last_flush_ms) >= ms);
        if due {
            self.flush(now_ms)?;
        }
        Ok(())
    }

    /// fsyncs the whole log.
    pub fn flush(&mut self, now_ms: u64) -> io::Result<()> {
        self.flush_up_to(self.log_end_offset(), now_ms)
    }

    /// fsyncs every unflushed segment holding offsets below `offset`, or every segment when
    /// `offset` is the log end (Kafka's `LocalLog.flush`), and moves the recovery point up.
    /// A segment cut by a truncation is unflushed too, so the next flush makes the cut
    /// durable even when no offset was added since.
    fn flush_up_to(&mut self, offset: i64, now_ms: u64) -> io::Result<()> {
        let whole_log = offset >= self.log_end_offset();
        let mut synced = false;
        for segment in self.segments.iter_mut() {
            if segment.unflushed && (whole_log || segment.base_offset < offset) {
                self.disk.fsync(&segment.file)?;
                segment.unflushed = false;
                synced = true;
            }
        }
        self.recovery_point = self.recovery_point.max(offset.min(self.log_end_offset()));
        if synced {
            // Kafka moves `lastFlushTime` only when a flush did something.
            self.last_flush_ms = now_ms;
        }
        Ok(())
    }

    /// Whole batches holding offsets in `[from_offset, max_offset_exclusive)` that end at or
    /// before `max_offset_exclusive` (the high watermark, for a consumer), up to `max_bytes`
    /// of frames, but at least one batch if any is in range: Kafka returns the first batch
    /// even over the fetch size, so a consumer always makes progress. A batch that starts
    /// before `from_offset` is returned whole, as Kafka does; the reader skips its head.
    pub fn read(
        &self,
        from_offset: i64,
        max_offset_exclusive: i64,
        max_bytes: usize,
    ) -> Result<Vec<Batch>, LogError> {
        let log_end_offset = self.log_end_offset();
        if from_offset < self.log_start_offset || from_offset > log_end_offset {
            return Err(LogError::OffsetOutOfRange {
                offset: from_offset,
                log_start_offset: self.log_start_offset,
                log_end_offset,
            });
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let first = self.segments.partition_point(|s| s.next_offset() <= from_offset);
        for segment in &self.segments[first.min(self.segments.len())..] {
            let start = segment.batches.partition_point(|b| b.next_offset <= from_offset);
            for entry in &segment.batches[start..] {
                if entry.next_offset > max_offset_exclusive {
                    return Ok(out);
                }
                if !out.is_empty() && bytes + entry.frame_bytes > max_bytes as u64 {
                    return Ok(out);
                }
                out.push(self.read_batch(segment, entry)?);
                bytes += entry.frame_bytes;
            }
        }
        Ok(out)
    }

    fn read_batch(&self, segment: &Segment, entry: &BatchEntry) -> Result<Batch, LogError> {
        let bytes = self
            .disk
            .read_at(&segment.file, entry.position, entry.frame_bytes as usize)?;
        let corrupt = |reason| LogError::Corrupt {
            offset: entry.base_offset,
            reason,
        };
        match frame::decode(&bytes) {
            Ok((batch, len)) if len as u64 == entry.frame_bytes && batch.base_offset == entry.base_offset => {
                Ok(batch)
            }
            Ok(_) => Err(corrupt("frame differs from the index")),
            Err(FrameError::Incomplete) => Err(corrupt("short frame")),
            Err(FrameError::Corrupt(reason)) => Err(corrupt(reason)),
        }
    }

    /// Drops every batch holding an offset at or above `offset` (Kafka's `truncateTo`), and
    /// the epoch cache entries from the new log end. A batch that straddles `offset` goes
    /// whole, as `LogSegment.truncateTo` cuts at a batch boundary, so the new log end may be
    /// below `offset`. The cut is not fsynced (a power failure before the next flush brings
    /// the tail back, as it can in Kafka). Returns the new log end offset.
    pub fn truncate_to(&mut self, offset: i64) -> io::Result<i64> {
        assert!(offset >= 0, "truncation to a negative offset");
        if offset >= self.log_end_offset() {
            // Kafka still truncates the epoch cache: a leader may have assigned an epoch at
            // its log end and lost leadership before appending.
            let log_end_offset = self.log_end_offset();
            if self.epochs.truncate_from_end(log_end_offset) {
                self.persist_epochs()?;
            }
            return Ok(log_end_offset);
        }
        if offset < self.log_start_offset {
            self.truncate_fully_and_start_at(offset)?;
            return Ok(offset);
        }
        while self.segments.len() > 1 && self.segments.last().is_some_and(|s| s.base_offset > offset) {
            let segment = self.segments.pop().expect("checked above");
            // Kafka renames a deleted segment `.deleted` and removes it later; a removal is
            // durable at once here either way.
            self.disk.remove(&segment.file)?;
        }
        let segment = self.segments.last_mut().expect("a log has an active segment");
        let keep = segment.batches.partition_point(|b| b.next_offset <= offset);
        let position = segment
            .batches
            .get(keep)
            .map_or(segment.size_bytes, |b| b.position);
        segment.batches.truncate(keep);
        segment.size_bytes = position;
        segment.unflushed = true;
        self.disk.truncate(&segment.file, position)?;
        let log_end_offset = self.log_end_offset();
        self.recovery_point = self.recovery_point.min(log_end_offset);
        self.roll_flush_offset = self.roll_flush_offset.map(|o| o.min(log_end_offset));
        if self.epochs.truncate_from_end(log_end_offset) {
            self.persist_epochs()?;
        }
        self.check_invariants();
        Ok(log_end_offset)
    }

    /// Deletes everything and starts an empty log at `offset` (Kafka's
    /// `truncateFullyAndStartAt`: a follower whose log is entirely below the leader's log
    /// start, or a truncation below the log start). The epoch cache is cleared.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> io::Result<()> {
        assert!(offset >= 0, "a log starts at a non-negative offset");
        for segment in std::mem::take(&mut self.segments) {
            self.disk.remove(&segment.file)?;
        }
        self.create_segment(offset)?;
        self.log_start_offset = offset;
        self.recovery_point = offset;
        self.roll_flush_offset = None;
        self.epochs.clear();
        self.persist_epochs()?;
        self.check_invariants();
        Ok(())
    }

    /// Records that `epoch` starts at `start_offset` without appending, as Kafka's
    /// `Partition.makeLeader` does with the log end offset when a replica becomes leader.
    pub fn assign_epoch_start(&mut self, epoch: i32, start_offset: i64) -> io::Result<()> {
        assert!(
            start_offset <= self.log_end_offset(),
            "an epoch starts within the log"
        );
        if self.epochs.assign(epoch, start_offset) {
            self.persist_epochs()?;
        }
        Ok(())
    }

    /// Persists the high watermark (Kafka's `replication-offset-checkpoint`, written every
    /// `replica.high.watermark.checkpoint.interval.ms`, 5 s by default). Kafka keeps one
    /// file per log directory with a `topic partition offset` line per partition; the log
    /// owns its directory here, so the file holds one `directory offset` line.
    pub fn checkpoint_high_watermark(&mut self, high_watermark: i64) -> io::Result<()> {
        assert!(
            (0..=self.log_end_offset()).contains(&high_watermark),
            "high watermark {high_watermark} outside [0, {}]",
            self.log_end_offset()
        );
        let name = self.dir.trim_end_matches('/');
        let name = if name.is_empty() { "-" } else { name };
        let entry = vec![name.to_string(), high_watermark.to_string()];
        checkpoint::write_atomic(&self.disk, &self.high_watermark_checkpoint_file(), &[entry])?;
        self.high_watermark_checkpoint = Some(high_watermark);
        Ok(())
    }

    /// The high watermark last checkpointed, as found on open or written since. Kafka
    /// starts a replica's high watermark from it (0 if absent), clamped to the log; the
    /// pre-KIP-101 follower truncated to it on restart (reference §2.2, scenario 1).
    pub fn checkpointed_high_watermark(&self) -> Option<i64> {
        self.high_watermark_checkpoint
    }

    fn check_invariants(&self) {
        assert!(!self.segments.is_empty() && self.segments.len() <= SEGMENT_COUNT_MAX);
        assert_eq!(self.segments[0].base_offset, self.log_start_offset);
        let mut next = self.log_start_offset;
        for segment in &self.segments {
            assert_eq!(segment.base_offset, next, "segments continue each other");
            for batch in &segment.batches {
                assert_eq!(batch.base_offset, next, "batches continue each other");
                next = batch.next_offset;
            }
        }
        assert!(self.recovery_point <= self.log_end_offset());
    }
}
