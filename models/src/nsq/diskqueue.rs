//! go-diskqueue's on-disk FIFO, over the [`Disk`] interface, with time passed in (reference
//! §1.3, `nsqio/go-diskqueue/diskqueue.go`).
//!
//! - Records are `[int32 big-endian length][data]`, appended to `NAME.diskqueue.%06d.dat`,
//!   rolled to the next file once a write reaches `max_bytes_per_file`.
//! - Metadata `NAME.diskqueue.meta.dat` holds `depth\nreadFileNum,readPos\nwriteFileNum,writePos\n`,
//!   written to a tmp file, fsynced, then renamed over the old one.
//! - `sync` fsyncs the current write file and persists the metadata. It runs after
//!   `sync_every` reads plus writes, on the `sync_timeout` tick when there was activity, when
//!   the reader moves to a new file, when the writer rolls, after a read error, and at close.
//! - The read position advances when a message is handed out ([`DiskQueue::advance`]), not when
//!   it is read ahead ([`DiskQueue::peek`]). From then on the only copy is the caller's.
//! - On open without a metadata file (or with one that does not parse) the queue starts
//!   empty at file 0, position 0: data files are not read, and the next write overwrites
//!   file 0 from its start.
//! - On open, a write file longer than the metadata's write position means the metadata is
//!   stale (a crash after unsynced writes): writes skip to a new file, and the reader reads the
//!   old file to its real end, salvaging those writes. A stale read position replays messages
//!   read since the last sync: the duplicates the reference's crash table predicts.
//! - A record that cannot be read (bad length, short file) renames the file `.bad` and skips
//!   it: its remaining messages are lost.
//! - `empty` (nsqd's `/topic/empty`, `/channel/empty` and deletes) removes the data files and
//!   the metadata and moves on to the next file number.

// A sans-I/O core: its functions stay within clippy.toml's too-many-lines-threshold (issue 9).
#![deny(clippy::too_many_lines)]

use sim::disk::Disk;
use std::io;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskQueueConfig {
    pub max_bytes_per_file: u64,
    pub min_msg_size: u32,
    pub max_msg_size: u32,
    /// Reads plus writes between syncs.
    pub sync_every: u64,
    pub sync_timeout: Duration,
}

impl Default for DiskQueueConfig {
    /// nsqd's defaults: 100 MiB files, messages of 26 bytes (id + timestamp + attempts) up to
    /// 1 MiB of body, sync every 2500 operations or 2 s.
    fn default() -> DiskQueueConfig {
        DiskQueueConfig {
            max_bytes_per_file: 100 * 1024 * 1024,
            min_msg_size: 26,
            max_msg_size: 1024 * 1024 + 26,
            sync_every: 2500,
            sync_timeout: Duration::from_secs(2),
        }
    }
}

/// Something the queue noticed that the owner may want in the history ("sometimes" notes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskQueueNote {
    /// Opened with a write file longer than the metadata said: writes moved to a new file.
    StaleWritePosition,
    /// A read failed; the file was renamed `.bad` and skipped.
    BadFileSkipped,
    /// The reader reached the tail with a positive depth left: messages were lost.
    DataLossAtTail,
    Synced,
}

#[derive(Clone, Debug)]
struct Peeked {
    data: Vec<u8>,
    next_file_num: u64,
    next_pos: u64,
}

pub struct DiskQueue<D: Disk> {
    name: String,
    disk: D,
    config: DiskQueueConfig,
    read_file_num: u64,
    read_pos: u64,
    write_file_num: u64,
    write_pos: u64,
    depth: i64,
    peeked: Option<Peeked>,
    /// Reads plus writes since the last sync.
    ops_since_sync: u64,
    need_sync: bool,
    next_tick: Duration,
    notes: Vec<DiskQueueNote>,
}

impl<D: Disk> DiskQueue<D> {
    /// Opens (or creates) the queue `name`, recovering its state from the metadata file.
    pub fn open(name: &str, disk: D, config: DiskQueueConfig, now: Duration) -> DiskQueue<D> {
        assert!(config.sync_every > 0 && config.max_bytes_per_file > 0);
        let mut queue = DiskQueue {
            name: name.to_string(),
            disk,
            next_tick: now + config.sync_timeout,
            config,
            read_file_num: 0,
            read_pos: 0,
            write_file_num: 0,
            write_pos: 0,
            depth: 0,
            peeked: None,
            ops_since_sync: 0,
            need_sync: false,
            notes: Vec::new(),
        };
        // A missing or unreadable metadata file starts an empty queue at file 0, position 0,
        // as go-diskqueue's `New` does (it ignores the open error and logs a parse error):
        // whatever data files exist are not read, and the next write overwrites file 0 from
        // its start. Only metadata that was read can be stale.
        if let Some((depth, read, write)) = queue
            .disk
            .read(&queue.meta_file())
            .ok()
            .and_then(|bytes| parse_meta(&bytes))
        {
            queue.depth = depth;
            (queue.read_file_num, queue.read_pos) = read;
            (queue.write_file_num, queue.write_pos) = write;
            queue.skip_a_stale_write_file();
        }
        queue
    }

    /// A write file longer than the metadata's write position means the metadata is stale
    /// (a crash after unsynced writes): writes move to a new file, and the reader reads the
    /// old one to its real end (go-diskqueue's `retrieveMetaData`).
    fn skip_a_stale_write_file(&mut self) {
        let write_file = self.file_name(self.write_file_num);
        if self.disk.len(&write_file).is_ok_and(|len| len > self.write_pos) {
            self.write_file_num += 1;
            self.write_pos = 0;
            self.need_sync = true;
            self.notes.push(DiskQueueNote::StaleWritePosition);
        }
    }

    pub fn file_name(&self, num: u64) -> String {
        format!("{}.diskqueue.{num:06}.dat", self.name)
    }

    pub fn meta_file(&self) -> String {
        format!("{}.diskqueue.meta.dat", self.name)
    }

    pub fn depth(&self) -> i64 {
        self.depth
    }

    /// Whether there is anything not yet handed out.
    pub fn has_data(&self) -> bool {
        self.read_file_num < self.write_file_num || self.read_pos < self.write_pos
    }

    /// Notes since the last call.
    pub fn take_notes(&mut self) -> Vec<DiskQueueNote> {
        std::mem::take(&mut self.notes)
    }

    pub fn put(&mut self, data: &[u8]) -> io::Result<()> {
        let len = data.len() as u64;
        if len < u64::from(self.config.min_msg_size) || len > u64::from(self.config.max_msg_size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "invalid message write size ({len}) maxMsgSize={}",
                    self.config.max_msg_size
                ),
            ));
        }
        let mut record = Vec::with_capacity(4 + data.len());
        record.extend_from_slice(&(len as u32).to_be_bytes());
        record.extend_from_slice(data);
        let file = self.file_name(self.write_file_num);
        self.disk.write_at(&file, self.write_pos, &record)?;
        self.write_pos += 4 + len;
        self.depth += 1;
        self.ops_since_sync += 1;
        if self.write_pos >= self.config.max_bytes_per_file {
            // Sync every time a new file is started.
            self.sync()?;
            self.write_file_num += 1;
            self.write_pos = 0;
        }
        self.sync_if_due()
    }

    /// The next message, read ahead but not yet handed out. Unreadable files are skipped
    /// (renamed `.bad`) on the way.
    pub fn peek(&mut self) -> Option<&[u8]> {
        while self.peeked.is_none() && self.has_data() {
            match self.read_one() {
                Ok(peeked) => self.peeked = Some(peeked),
                Err(_) => self.handle_read_error(),
            }
        }
        self.peeked.as_ref().map(|p| p.data.as_slice())
    }

    /// Hands out the peeked message: the read position moves past it.
    pub fn advance(&mut self) -> io::Result<Vec<u8>> {
        let peeked = self.peeked.take().expect("advance only after a successful peek");
        let old_file = self.read_file_num;
        self.read_file_num = peeked.next_file_num;
        self.read_pos = peeked.next_pos;
        self.depth -= 1;
        self.ops_since_sync += 1;
        if old_file != self.read_file_num {
            // Sync every time the reader starts a new file, and drop the finished one.
            self.need_sync = true;
            let _ = self.disk.remove(&self.file_name(old_file));
        }
        self.check_tail();
        self.sync_if_due()?;
        Ok(peeked.data)
    }

    /// The `sync_timeout` ticker: syncs if there was any activity since the last sync.
    pub fn tick(&mut self, now: Duration) -> io::Result<()> {
        if now < self.next_tick {
            return Ok(());
        }
        self.next_tick = now + self.config.sync_timeout;
        if self.ops_since_sync > 0 {
            self.need_sync = true;
        }
        self.sync_if_due()
    }

    /// When the ticker next fires, for drivers that sleep until then.
    pub fn next_tick(&self) -> Duration {
        self.next_tick
    }

    /// Graceful close: sync.
    pub fn close(&mut self) -> io::Result<()> {
        self.sync()
    }

    /// `Empty` (go-diskqueue's `deleteAllFiles`): every data file from the read file to the
    /// write file and the metadata file are removed, and the queue moves on to the next
    /// file number, empty. Nothing is synced: until the next sync there is no metadata, so a
    /// crash now reopens an empty queue. Returns the depth it dropped. `Delete` is this
    /// followed by dropping the queue without the close's sync (nsqd empties before it
    /// deletes).
    pub fn empty(&mut self) -> io::Result<i64> {
        let dropped = self.depth.max(0);
        let mut result = Ok(());
        for num in self.read_file_num..=self.write_file_num {
            match self.disk.remove(&self.file_name(num)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => result = Err(e),
                _ => {}
            }
        }
        self.write_file_num += 1;
        self.write_pos = 0;
        self.read_file_num = self.write_file_num;
        self.read_pos = 0;
        self.peeked = None;
        self.depth = 0;
        self.ops_since_sync = 0;
        match self.disk.remove(&self.meta_file()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        result.map(|()| dropped)
    }

    fn sync_if_due(&mut self) -> io::Result<()> {
        if self.ops_since_sync >= self.config.sync_every {
            self.need_sync = true;
        }
        if self.need_sync {
            self.sync()?;
        }
        Ok(())
    }

    /// fsync the write file, then persist the metadata (write tmp, fsync, rename).
    pub fn sync(&mut self) -> io::Result<()> {
        let write_file = self.file_name(self.write_file_num);
        if self.disk.len(&write_file).is_ok() {
            self.disk.fsync(&write_file)?;
        }
        let meta = format!(
            "{}\n{},{}\n{},{}\n",
            self.depth, self.read_file_num, self.read_pos, self.write_file_num, self.write_pos
        );
        let tmp = format!("{}.tmp", self.meta_file());
        let _ = self.disk.remove(&tmp);
        self.disk.write_at(&tmp, 0, meta.as_bytes())?;
        self.disk.fsync(&tmp)?;
        self.disk.rename(&tmp, &self.meta_file())?;
        self.ops_since_sync = 0;
        self.need_sync = false;
        self.notes.push(DiskQueueNote::Synced);
        Ok(())
    }

    fn read_one(&mut self) -> io::Result<Peeked> {
        let file = self.file_name(self.read_file_num);
        // A finished file is read to its real end (salvaging writes past stale metadata);
        // the file being written is read up to the write position.
        let limit = if self.read_file_num < self.write_file_num {
            self.disk.len(&file)?
        } else {
            self.write_pos
        };
        if self.read_pos >= limit {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the file",
            ));
        }
        let header = self.disk.read_at(&file, self.read_pos, 4)?;
        let size = u32::from_be_bytes(
            header
                .as_slice()
                .try_into()
                .map_err(|_| io::Error::new(io::ErrorKind::UnexpectedEof, "short length"))?,
        );
        if size < self.config.min_msg_size || size > self.config.max_msg_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("invalid message read size ({size})"),
            ));
        }
        let data = self.disk.read_at(&file, self.read_pos + 4, size as usize)?;
        if data.len() != size as usize {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short message"));
        }
        let mut next_file_num = self.read_file_num;
        let mut next_pos = self.read_pos + 4 + u64::from(size);
        if self.read_file_num < self.write_file_num && next_pos >= limit {
            next_file_num += 1;
            next_pos = 0;
        }
        Ok(Peeked {
            data,
            next_file_num,
            next_pos,
        })
    }

    fn handle_read_error(&mut self) {
        if self.read_file_num == self.write_file_num {
            // The file being written is unreadable: skip it too.
            self.write_file_num += 1;
            self.write_pos = 0;
        }
        let bad = self.file_name(self.read_file_num);
        let _ = self.disk.rename(&bad, &format!("{bad}.bad"));
        self.notes.push(DiskQueueNote::BadFileSkipped);
        self.read_file_num += 1;
        self.read_pos = 0;
        self.need_sync = true;
    }

    fn check_tail(&mut self) {
        if self.has_data() {
            return;
        }
        if self.depth != 0 {
            if self.depth > 0 {
                self.notes.push(DiskQueueNote::DataLossAtTail);
            }
            self.depth = 0;
            self.need_sync = true;
        }
    }
}

/// `(depth, (readFileNum, readPos), (writeFileNum, writePos))` as the metadata file holds them.
type Meta = (i64, (u64, u64), (u64, u64));

/// Parses `depth\nreadFileNum,readPos\nwriteFileNum,writePos\n`.
fn parse_meta(bytes: &[u8]) -> Option<Meta> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    let depth = lines.next()?.trim().parse().ok()?;
    let pair = |line: &str| -> Option<(u64, u64)> {
        let (a, b) = line.split_once(',')?;
        Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
    };
    let read = pair(lines.next()?)?;
    let write = pair(lines.next()?)?;
    Some((depth, read, write))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use sim::disk::SimDisk;

    fn config() -> DiskQueueConfig {
        DiskQueueConfig {
            max_bytes_per_file: 300,
            min_msg_size: 1,
            max_msg_size: 1000,
            sync_every: 1000,
            sync_timeout: Duration::from_secs(2),
        }
    }

    fn msg(i: u32) -> Vec<u8> {
        format!("message-{i:04}").into_bytes()
    }

    fn drain<D: Disk>(q: &mut DiskQueue<D>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while q.peek().is_some() {
            out.push(q.advance().unwrap());
        }
        out
    }

    #[test]
    fn fifo_across_file_rolls_and_finished_files_are_removed() {
        let disk = SimDisk::new();
        let mut q = DiskQueue::open("t", disk.clone(), config(), Duration::ZERO);
        for i in 0..50 {
            q.put(&msg(i)).unwrap();
        }
        assert!(disk.list().unwrap().len() > 3, "rolled into several files");
        assert_eq!(q.depth(), 50);
        assert_eq!(drain(&mut q), (0..50).map(msg).collect::<Vec<_>>());
        assert_eq!(q.depth(), 0);
        let data_files = disk
            .list()
            .unwrap()
            .into_iter()
            .filter(|f| f.ends_with(".dat") && !f.contains("meta"))
            .count();
        assert!(data_files <= 1);
    }

    #[test]
    fn empty_removes_the_files_and_the_metadata_and_moves_to_the_next_file() {
        let disk = SimDisk::new();
        let mut q = DiskQueue::open("t", disk.clone(), config(), Duration::ZERO);
        for i in 0..30 {
            q.put(&msg(i)).unwrap();
        }
        q.sync().unwrap();
        q.peek();
        assert_eq!(q.empty().unwrap(), 30);
        assert_eq!((q.depth(), q.has_data(), q.peek()), (0, false, None));
        assert!(disk.list().unwrap().is_empty(), "{:?}", disk.list().unwrap());
        q.put(&msg(99)).unwrap();
        assert!(
            disk.list().unwrap().iter().all(|f| !f.ends_with("000000.dat")),
            "the next file number"
        );
        assert_eq!(drain(&mut q), vec![msg(99)]);
        // No metadata until the next sync: a reopen now starts empty.
        let reopened = DiskQueue::open("t", disk.clone(), config(), Duration::ZERO);
        assert_eq!(reopened.depth(), 0);
    }

    #[test]
    fn metadata_is_go_diskqueues_text_format() {
        let disk = SimDisk::new();
        let mut q = DiskQueue::open("topic", disk.clone(), config(), Duration::ZERO);
        q.put(&msg(1)).unwrap();
        q.put(&msg(2)).unwrap();
        q.peek();
        q.advance().unwrap();
        q.close().unwrap();
        assert_eq!(disk.read("topic.diskqueue.meta.dat").unwrap(), b"1\n0,16\n0,32\n");
        assert_eq!(
            &disk.read("topic.diskqueue.000000.dat").unwrap()[..4],
            &[0, 0, 0, 12]
        );
    }

    #[test]
    fn a_clean_close_and_reopen_continues_where_it_stopped() {
        let disk = SimDisk::new();
        let mut q = DiskQueue::open("t", disk.clone(), config(), Duration::ZERO);
        for i in 0..30 {
            q.put(&msg(i)).unwrap();
        }
        for _ in 0..10 {
            q.peek();
            q.advance().unwrap();
        }
        q.close().unwrap();
        let mut q = DiskQueue::open("t", disk, config(), Duration::ZERO);
        assert!(
            q.take_notes().is_empty(),
            "a clean close leaves the write file exactly as long as its metadata says: not stale"
        );
        assert_eq!(q.depth(), 20);
        assert_eq!(drain(&mut q), (10..30).map(msg).collect::<Vec<_>>());
    }

    #[test]
    fn a_kill_before_the_metadata_sync_replays_what_was_read_and_salvages_what_was_written() {
        let disk = SimDisk::new();
        let mut q = DiskQueue::open("t", disk.clone(), config(), Duration::ZERO);
        for i in 0..5 {
            q.put(&msg(i)).unwrap();
        }
        q.sync().unwrap(); // metadata: 5 written, none read
        for _ in 0..3 {
            q.peek();
            q.advance().unwrap(); // handed out, metadata not synced
        }
        for i in 5..8 {
            q.put(&msg(i)).unwrap(); // written, metadata not synced
        }
        drop(q); // kill: the page cache keeps every write
        let mut q = DiskQueue::open("t", disk, config(), Duration::ZERO);
        assert_eq!(q.take_notes(), vec![DiskQueueNote::StaleWritePosition]);
        // The three handed-out messages come again (duplicates), then everything else.
        assert_eq!(drain(&mut q), (0..8).map(msg).collect::<Vec<_>>());
    }

    #[test]
    fn no_metadata_file_starts_empty_and_the_next_write_overwrites_file_zero() {
        let disk = SimDisk::new();
        let mut q = DiskQueue::open("t", disk.clone(), config(), Duration::ZERO);
        for i in 0..3 {
            q.put(&msg(i)).unwrap();
        }
        drop(q); // killed before the first sync: file 0 exists, the metadata never did
        assert!(disk.read("t.diskqueue.meta.dat").is_err());
        let mut q = DiskQueue::open("t", disk.clone(), config(), Duration::ZERO);
        assert!(q.take_notes().is_empty(), "not stale: there is no metadata");
        assert_eq!(q.depth(), 0);
        assert!(q.peek().is_none(), "the old records are not replayed");
        q.put(&msg(9)).unwrap();
        let file = disk.read("t.diskqueue.000000.dat").unwrap();
        assert_eq!(&file[..4], &[0, 0, 0, 12]);
        assert_eq!(&file[4..16], msg(9).as_slice(), "written at position 0 of file 0");
        assert_eq!(drain(&mut q), vec![msg(9)]);
    }

    #[test]
    fn a_power_failure_loses_unsynced_writes() {
        let disk = SimDisk::new();
        let mut q = DiskQueue::open("t", disk.clone(), config(), Duration::ZERO);
        for i in 0..4 {
            q.put(&msg(i)).unwrap();
        }
        q.sync().unwrap();
        for i in 4..9 {
            q.put(&msg(i)).unwrap();
        }
        drop(q);
        disk.power_fail(false, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        let mut q = DiskQueue::open("t", disk, config(), Duration::ZERO);
        assert_eq!(drain(&mut q), (0..4).map(msg).collect::<Vec<_>>());
    }

    #[test]
    fn sync_every_and_the_timeout_tick_persist_positions() {
        let disk = SimDisk::new();
        let mut q = DiskQueue::open(
            "t",
            disk.clone(),
            DiskQueueConfig {
                sync_every: 4,
                ..config()
            },
            Duration::ZERO,
        );
        for i in 0..3 {
            q.put(&msg(i)).unwrap();
        }
        assert!(disk.read("t.diskqueue.meta.dat").is_err(), "3 ops: not yet");
        q.put(&msg(3)).unwrap();
        assert_eq!(disk.read("t.diskqueue.meta.dat").unwrap(), b"4\n0,0\n0,64\n");
        q.put(&msg(4)).unwrap();
        q.tick(Duration::from_millis(1999)).unwrap();
        assert_eq!(
            disk.read("t.diskqueue.meta.dat").unwrap(),
            b"4\n0,0\n0,64\n",
            "before the tick"
        );
        q.tick(Duration::from_secs(2)).unwrap();
        assert_eq!(disk.read("t.diskqueue.meta.dat").unwrap(), b"5\n0,0\n0,80\n");
        assert_eq!(disk.unsynced_bytes(), 0, "the data file was fsynced too");
    }

    #[test]
    fn a_corrupt_record_skips_the_file_as_bad_and_loses_its_messages() {
        let disk = SimDisk::new();
        let mut q = DiskQueue::open("t", disk.clone(), config(), Duration::ZERO);
        for i in 0..25 {
            q.put(&msg(i)).unwrap(); // 16 bytes each: 19 per file of 300
        }
        q.close().unwrap();
        disk.write_at("t.diskqueue.000000.dat", 16 * 3, &[0xff, 0xff, 0xff, 0xff])
            .unwrap();
        let mut q = DiskQueue::open("t", disk.clone(), config(), Duration::ZERO);
        let got = drain(&mut q);
        assert_eq!(&got[..3], &[msg(0), msg(1), msg(2)]);
        assert_eq!(got[3], msg(19), "the rest of file 0 is skipped");
        assert!(q.take_notes().contains(&DiskQueueNote::BadFileSkipped));
        assert!(disk.list().unwrap().iter().any(|f| f.ends_with(".dat.bad")));
    }

    #[test]
    fn a_record_of_exactly_the_maximum_size_is_written_and_read_back() {
        let disk = SimDisk::new();
        let mut q = DiskQueue::open("t", disk.clone(), config(), Duration::ZERO);
        let largest = vec![7u8; 1000];
        q.put(&largest).unwrap();
        assert!(q.put(&[7u8; 1001]).is_err(), "one byte over the maximum");
        q.put(&[1u8]).unwrap(); // exactly the minimum
        q.close().unwrap();
        let mut q = DiskQueue::open("t", disk, config(), Duration::ZERO);
        assert_eq!(drain(&mut q), vec![largest, vec![1u8]]);
    }

    #[test]
    fn a_corrupt_length_header_that_fits_in_the_file_hands_out_a_garbled_record() {
        // go-diskqueue has no checksum: a length that is in range and inside the file is
        // believed. Record 0 claims 28 bytes, swallowing record 1 whole; record 2 still reads.
        let disk = SimDisk::new();
        let mut q = DiskQueue::open("t", disk.clone(), config(), Duration::ZERO);
        for i in 0..3 {
            q.put(&msg(i)).unwrap(); // 4 + 12 bytes each
        }
        q.close().unwrap();
        disk.write_at("t.diskqueue.000000.dat", 0, &28u32.to_be_bytes())
            .unwrap();
        let mut q = DiskQueue::open("t", disk, config(), Duration::ZERO);
        let mut garbled = msg(0);
        garbled.extend_from_slice(&[0, 0, 0, 12]);
        garbled.extend_from_slice(&msg(1));
        assert_eq!(drain(&mut q), vec![garbled, msg(2)]);
        assert_eq!(q.depth(), 0, "reset at the tail");
        assert!(
            q.take_notes().contains(&DiskQueueNote::DataLossAtTail),
            "three records counted, two read: logged as data loss"
        );
    }

    #[test]
    fn a_length_header_below_the_minimum_or_above_the_maximum_is_corrupt() {
        for claimed in [0u32, 1001] {
            let disk = SimDisk::new();
            let mut q = DiskQueue::open("t", disk.clone(), config(), Duration::ZERO);
            for i in 0..3 {
                q.put(&msg(i)).unwrap();
            }
            q.close().unwrap();
            disk.write_at("t.diskqueue.000000.dat", 0, &claimed.to_be_bytes())
                .unwrap();
            let mut q = DiskQueue::open("t", disk, config(), Duration::ZERO);
            assert!(
                drain(&mut q).is_empty(),
                "a {claimed}-byte claim makes the file bad"
            );
        }
    }

    #[test]
    fn a_reader_moves_from_a_finished_file_to_the_next_without_calling_it_bad() {
        let mut q = DiskQueue::open("t", SimDisk::new(), config(), Duration::ZERO);
        for i in 0..60 {
            q.put(&msg(i)).unwrap(); // 16 bytes a record, 300 a file: four files
        }
        q.take_notes();
        assert_eq!(drain(&mut q), (0..60).map(msg).collect::<Vec<_>>());
        let notes = q.take_notes();
        assert!(
            !notes.contains(&DiskQueueNote::BadFileSkipped)
                && !notes.contains(&DiskQueueNote::DataLossAtTail),
            "{notes:?}"
        );
    }

    #[test]
    fn a_negative_depth_at_the_tail_is_reset_without_calling_it_data_loss() {
        // go-diskqueue's checkTailCorruption: below zero is metadata corruption, not loss.
        let disk = SimDisk::new();
        let mut q = DiskQueue::open("t", disk.clone(), config(), Duration::ZERO);
        q.put(&msg(0)).unwrap();
        q.close().unwrap();
        disk.write_at("t.diskqueue.meta.dat", 0, b"-3\n0,0\n0,16\n")
            .unwrap();
        let mut q = DiskQueue::open("t", disk, config(), Duration::ZERO);
        q.take_notes();
        assert_eq!(drain(&mut q), vec![msg(0)]);
        assert_eq!(q.depth(), 0, "reset at the tail");
        assert!(!q.take_notes().contains(&DiskQueueNote::DataLossAtTail));
    }

    #[test]
    fn a_record_of_exactly_the_minimum_size_reads_back() {
        let exact = DiskQueueConfig {
            min_msg_size: msg(0).len() as u32,
            ..config()
        };
        let mut q = DiskQueue::open("t", SimDisk::new(), exact, Duration::ZERO);
        q.put(&msg(0)).unwrap();
        assert_eq!(drain(&mut q), vec![msg(0)]);
    }

    #[test]
    fn a_read_alone_is_activity_the_sync_ticker_syncs() {
        let mut q = DiskQueue::open("t", SimDisk::new(), config(), Duration::ZERO);
        q.put(&msg(0)).unwrap();
        q.sync().unwrap();
        q.peek();
        q.advance().unwrap();
        q.take_notes();
        q.tick(Duration::from_secs(2)).unwrap();
        assert!(
            q.take_notes().contains(&DiskQueueNote::Synced),
            "the read position moved: the metadata is due"
        );
    }

    #[test]
    fn a_corrupt_record_in_the_file_being_written_moves_the_writer_to_a_new_file() {
        let disk = SimDisk::new();
        let mut q = DiskQueue::open("t", disk.clone(), config(), Duration::ZERO);
        for i in 0..3 {
            q.put(&msg(i)).unwrap(); // one file: reader and writer share file 0
        }
        q.close().unwrap();
        disk.write_at("t.diskqueue.000000.dat", 16, &[0xff, 0xff, 0xff, 0xff])
            .unwrap();
        let mut q = DiskQueue::open("t", disk.clone(), config(), Duration::ZERO);
        assert_eq!(drain(&mut q), vec![msg(0)], "the rest of file 0 is lost");
        assert!(q.take_notes().contains(&DiskQueueNote::BadFileSkipped));
        // go-diskqueue's handleReadError skips the write file too: new writes go to file 1.
        q.put(&msg(9)).unwrap();
        assert!(disk.read("t.diskqueue.000001.dat").is_ok());
        assert!(disk.read("t.diskqueue.000000.dat.bad").is_ok());
        assert_eq!(drain(&mut q), vec![msg(9)]);
    }

    #[test]
    fn the_timeout_syncs_after_every_period_with_activity_not_only_the_first() {
        let disk = SimDisk::new();
        let mut q = DiskQueue::open("t", disk.clone(), config(), Duration::ZERO);
        let meta = |disk: &SimDisk| disk.read("t.diskqueue.meta.dat").unwrap();
        q.put(&msg(0)).unwrap();
        q.tick(Duration::from_secs(2)).unwrap();
        assert_eq!(meta(&disk), b"1\n0,0\n0,16\n");
        assert_eq!(q.next_tick(), Duration::from_secs(4));
        q.put(&msg(1)).unwrap();
        q.tick(Duration::from_secs(3)).unwrap();
        assert_eq!(meta(&disk), b"1\n0,0\n0,16\n", "the next period has not ended");
        q.tick(Duration::from_secs(4)).unwrap();
        assert_eq!(meta(&disk), b"2\n0,0\n0,32\n", "the second period syncs too");
        q.take_notes();
        q.tick(Duration::from_secs(6)).unwrap();
        assert!(q.take_notes().is_empty(), "no activity, no sync");
        assert_eq!(disk.unsynced_bytes(), 0);
    }

    #[test]
    fn message_size_limits_are_enforced() {
        let mut q = DiskQueue::open(
            "t",
            SimDisk::new(),
            DiskQueueConfig {
                min_msg_size: 26,
                ..config()
            },
            Duration::ZERO,
        );
        assert!(q.put(b"short").is_err());
        assert_eq!(q.depth(), 0);
    }
}
