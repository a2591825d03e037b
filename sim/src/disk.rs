//! Disks: one small interface, a simulated implementation with crash semantics, and a real one.
//!
//! The simulated disk separates what a process has written (the OS page cache) from what is
//! durable (fsynced). A process crash (`kill`) loses nothing written; a machine crash
//! (`power_fail`) reverts every file to its durable content, optionally keeping a torn prefix
//! of the last unsynced write.
//!
//! A truncation is a change to the file's contents like a write: it stays in the page cache
//! until fsync, so a power failure before the fsync brings the cut tail back (ext4 does not
//! promise an unsynced `ftruncate` either).
//!
//! Namespace operations (create, rename, remove) are durable when they return. That is what
//! ext4 gives with its metadata journal and `auto_da_alloc` for the write-tmp-fsync-rename
//! pattern go-diskqueue uses; the file *contents* still need fsync. A renamed file that was
//! never fsynced comes back after power loss with its durable (possibly empty) content: the
//! classic zero-length-file outcome.

use rand::Rng;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;

/// File operations a model's storage code may use. Paths are relative names within the
/// host's data directory (`topic.diskqueue.000001.dat`), with `/` as separator.
pub trait Disk {
    fn read(&self, path: &str) -> io::Result<Vec<u8>>;
    /// Reads up to `len` bytes at `offset` (fewer at the end of the file).
    fn read_at(&self, path: &str, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Writes at `offset`, creating the file if missing and zero-filling any gap.
    fn write_at(&self, path: &str, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Appends and returns the offset the data was written at.
    fn append(&self, path: &str, data: &[u8]) -> io::Result<u64>;
    fn len(&self, path: &str) -> io::Result<u64>;
    fn fsync(&self, path: &str) -> io::Result<()>;
    /// Sets the file's length, as `ftruncate` does: a shorter length cuts the tail, a longer
    /// one zero-fills. Like a write, the new length is in the page cache until `fsync`.
    fn truncate(&self, path: &str, len: u64) -> io::Result<()>;
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    fn remove(&self, path: &str) -> io::Result<()>;
    /// Every file name, sorted.
    fn list(&self) -> io::Result<Vec<String>>;
}

fn not_found(path: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no such file: {path}"))
}

#[derive(Clone, Debug, Default)]
struct SimFile {
    /// What readers see: the page cache.
    data: Vec<u8>,
    /// What survives power loss.
    durable: Vec<u8>,
    /// Byte ranges written since the last fsync, oldest first.
    dirty: Vec<(u64, u64)>,
}

/// What a power failure did to one disk, for the history's fault detail.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PowerFailReport {
    pub files_reverted: usize,
    pub bytes_lost: u64,
    pub torn_bytes_kept: u64,
}

/// A host's simulated disk. Cloning shares the disk: it outlives the host's process, as a
/// real disk outlives a killed process.
#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    files: Rc<RefCell<BTreeMap<String, SimFile>>>,
}

/// Bound on one simulated file, to catch runaway writers.
pub const SIM_FILE_BYTES_MAX: u64 = 1 << 32;

impl SimDisk {
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    /// Machine crash: every file loses what was not fsynced. With `torn`, the last unsynced
    /// write of each file may survive as a random prefix (a torn write).
    pub fn power_fail(&self, torn: bool, rng: &mut impl Rng) -> PowerFailReport {
        let mut report = PowerFailReport::default();
        for file in self.files.borrow_mut().values_mut() {
            if file.dirty.is_empty() && file.data.len() == file.durable.len() {
                continue;
            }
            report.files_reverted += 1;
            let last = file.dirty.last().copied();
            let lost: u64 = file.dirty.iter().map(|(_, len)| len).sum();
            let mut data = file.durable.clone();
            if let (true, Some((offset, len))) = (torn, last) {
                let kept = rng.random_range(0..=len);
                if kept > 0 {
                    let start = offset as usize;
                    let end = (offset + kept) as usize;
                    if data.len() < end {
                        data.resize(end, 0);
                    }
                    data[start..end].copy_from_slice(&file.data[start..end]);
                    report.torn_bytes_kept += kept;
                }
            }
            report.bytes_lost += lost;
            file.data = data.clone();
            file.durable = data;
            file.dirty.clear();
        }
        report
    }

    /// Bytes written but not yet durable, summed over files.
    pub fn unsynced_bytes(&self) -> u64 {
        self.files
            .borrow()
            .values()
            .flat_map(|f| f.dirty.iter().map(|(_, len)| len))
            .sum()
    }
}

impl Disk for SimDisk {
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        let files = self.files.borrow();
        files
            .get(path)
            .map(|f| f.data.clone())
            .ok_or_else(|| not_found(path))
    }

    fn read_at(&self, path: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let files = self.files.borrow();
        let file = files.get(path).ok_or_else(|| not_found(path))?;
        let start = (offset as usize).min(file.data.len());
        let end = start.saturating_add(len).min(file.data.len());
        Ok(file.data[start..end].to_vec())
    }

    fn write_at(&self, path: &str, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset + data.len() as u64;
        assert!(
            end <= SIM_FILE_BYTES_MAX,
            "simulated file {path} over {SIM_FILE_BYTES_MAX} bytes"
        );
        let mut files = self.files.borrow_mut();
        let file = files.entry(path.to_string()).or_default();
        let old_len = file.data.len() as u64;
        if old_len < offset {
            // The zero-filled gap is written too: after a truncation the durable copy may
            // still hold old bytes there, and fsync must replace them.
            file.dirty.push((old_len, offset - old_len));
        }
        if (file.data.len() as u64) < end {
            file.data.resize(end as usize, 0);
        }
        file.data[offset as usize..end as usize].copy_from_slice(data);
        if !data.is_empty() {
            file.dirty.push((offset, data.len() as u64));
        }
        Ok(())
    }

    fn append(&self, path: &str, data: &[u8]) -> io::Result<u64> {
        let offset = self.files.borrow().get(path).map_or(0, |f| f.data.len() as u64);
        self.write_at(path, offset, data)?;
        Ok(offset)
    }

    fn len(&self, path: &str) -> io::Result<u64> {
        let files = self.files.borrow();
        files
            .get(path)
            .map(|f| f.data.len() as u64)
            .ok_or_else(|| not_found(path))
    }

    fn fsync(&self, path: &str) -> io::Result<()> {
        let mut files = self.files.borrow_mut();
        let file = files.get_mut(path).ok_or_else(|| not_found(path))?;
        // Copy only what changed: fsync cost is proportional to dirty bytes, as on a real disk.
        file.durable.resize(file.data.len(), 0);
        for (offset, len) in file.dirty.drain(..) {
            let (start, end) = (offset as usize, (offset + len) as usize);
            let end = end.min(file.data.len());
            if start < end {
                file.durable[start..end].copy_from_slice(&file.data[start..end]);
            }
        }
        Ok(())
    }

    fn truncate(&self, path: &str, len: u64) -> io::Result<()> {
        assert!(
            len <= SIM_FILE_BYTES_MAX,
            "simulated file {path} over {SIM_FILE_BYTES_MAX} bytes"
        );
        let mut files = self.files.borrow_mut();
        let file = files.get_mut(path).ok_or_else(|| not_found(path))?;
        let old_len = file.data.len() as u64;
        file.data.resize(len as usize, 0);
        // Dirty ranges past the cut no longer exist in the page cache; fsync resizes the
        // durable copy to the new length. A longer length is a zero-filled write.
        file.dirty.retain_mut(|(offset, dirty_len)| {
            *dirty_len = (*dirty_len).min(len.saturating_sub(*offset));
            *dirty_len > 0
        });
        if len > old_len {
            file.dirty.push((old_len, len - old_len));
        }
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut files = self.files.borrow_mut();
        let file = files.remove(from).ok_or_else(|| not_found(from))?;
        files.insert(to.to_string(), file);
        Ok(())
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        self.files
            .borrow_mut()
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.files.borrow().keys().cloned().collect())
    }
}

/// The same interface on a real directory, for the real-socket drivers.
#[derive(Clone, Debug)]
pub struct RealDisk {
    root: PathBuf,
}

impl RealDisk {
    pub fn open(root: impl Into<PathBuf>) -> io::Result<RealDisk> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(RealDisk { root })
    }

    fn path(&self, name: &str) -> io::Result<PathBuf> {
        if name.is_empty() || name.split('/').any(|part| part == ".." || part.is_empty()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad file name: {name:?}"),
            ));
        }
        Ok(self.root.join(name))
    }

    /// The path for a file about to be written: its directories are created first, as a
    /// `/` in a name is a directory (Kafka keeps each partition's log in its own directory
    /// under `log.dirs`, `orders-0/`, and creates it with the log: `LogManager.getOrCreateLog`).
    fn path_for_write(&self, name: &str) -> io::Result<PathBuf> {
        let path = self.path(name)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        Ok(path)
    }

    /// Appends every file under `dir` (relative to the root) to `names`, as `a/b` paths.
    fn list_into(&self, dir: &std::path::Path, prefix: &str, names: &mut Vec<String>) -> io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type()?;
            if kind.is_file() {
                names.push(format!("{prefix}{name}"));
            } else if kind.is_dir() {
                self.list_into(&entry.path(), &format!("{prefix}{name}/"), names)?;
            }
        }
        Ok(())
    }
}

impl Disk for RealDisk {
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.path(path)?)
    }

    fn read_at(&self, path: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::File::open(self.path(path)?)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut out = Vec::with_capacity(len);
        file.take(len as u64).read_to_end(&mut out)?;
        Ok(out)
    }

    fn write_at(&self, path: &str, offset: u64, data: &[u8]) -> io::Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.path_for_write(path)?)?;
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(data)
    }

    fn append(&self, path: &str, data: &[u8]) -> io::Result<u64> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path_for_write(path)?)?;
        let offset = file.metadata()?.len();
        file.write_all(data)?;
        Ok(offset)
    }

    fn len(&self, path: &str) -> io::Result<u64> {
        Ok(std::fs::metadata(self.path(path)?)?.len())
    }

    fn fsync(&self, path: &str) -> io::Result<()> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(self.path(path)?)?
            .sync_all()
    }

    fn truncate(&self, path: &str, len: u64) -> io::Result<()> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(self.path(path)?)?
            .set_len(len)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.path(from)?, self.path_for_write(to)?)
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        std::fs::remove_file(self.path(path)?)
    }

    /// Every file under the root, in subdirectories too, named by its path from the root
    /// with `/` (what `SimDisk` lists for the same writes). Symlinks are not followed.
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        self.list_into(&self.root, "", &mut names)?;
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(7)
    }

    #[test]
    fn a_kill_loses_nothing_written() {
        // A kill does not touch the disk at all: the harness only drops the process.
        let disk = SimDisk::new();
        disk.append("q.dat", b"abc").unwrap();
        assert_eq!(disk.read("q.dat").unwrap(), b"abc");
        assert_eq!(disk.read_at("q.dat", 1, 5).unwrap(), b"bc");
        assert_eq!(disk.unsynced_bytes(), 3);
    }

    #[test]
    fn power_fail_keeps_only_what_was_fsynced() {
        let disk = SimDisk::new();
        disk.append("q.dat", b"synced").unwrap();
        disk.fsync("q.dat").unwrap();
        disk.append("q.dat", b"+lost").unwrap();
        disk.write_at("q.dat", 0, b"S").unwrap();
        let report = disk.power_fail(false, &mut rng());
        assert_eq!(disk.read("q.dat").unwrap(), b"synced");
        assert_eq!(report.bytes_lost, 6);
        assert_eq!(disk.unsynced_bytes(), 0);
    }

    #[test]
    fn torn_power_fail_keeps_a_prefix_of_the_last_write_only() {
        let mut saw_partial = false;
        for seed in 0..64 {
            let disk = SimDisk::new();
            disk.append("f", b"base").unwrap();
            disk.fsync("f").unwrap();
            disk.append("f", b"XXXX").unwrap();
            disk.append("f", b"0123456789").unwrap();
            disk.power_fail(true, &mut ChaCha8Rng::seed_from_u64(seed));
            let after = disk.read("f").unwrap();
            assert!(after.starts_with(b"base"));
            // The first unsynced write never survives (only the last can be torn), so any
            // surviving bytes past "base" are zero fill plus a prefix of the last write.
            let tail = &after[4..];
            if !tail.is_empty() {
                assert_eq!(&tail[..4], b"\0\0\0\0");
                assert!(b"0123456789".starts_with(&tail[4..]));
                saw_partial |= tail.len() > 4 && tail.len() < 14;
            }
        }
        assert!(saw_partial, "some seed should tear the write part-way");
    }

    #[test]
    fn write_fsync_rename_is_durable_and_unsynced_rename_is_empty() {
        let disk = SimDisk::new();
        disk.write_at("meta.tmp", 0, b"depth=3").unwrap();
        disk.fsync("meta.tmp").unwrap();
        disk.rename("meta.tmp", "meta.dat").unwrap();
        disk.write_at("other.tmp", 0, b"never synced").unwrap();
        disk.rename("other.tmp", "other.dat").unwrap();
        disk.power_fail(false, &mut rng());
        assert_eq!(disk.read("meta.dat").unwrap(), b"depth=3");
        assert_eq!(disk.read("other.dat").unwrap(), b"");
        assert!(disk.read("meta.tmp").is_err());
        assert_eq!(disk.list().unwrap(), vec!["meta.dat", "other.dat"]);
    }

    #[test]
    fn a_truncation_is_in_the_page_cache_until_fsync() {
        let disk = SimDisk::new();
        disk.append("seg", b"0123456789").unwrap();
        disk.fsync("seg").unwrap();
        disk.truncate("seg", 4).unwrap();
        assert_eq!(disk.read("seg").unwrap(), b"0123");
        assert_eq!(disk.len("seg").unwrap(), 4);
        // A kill keeps the cut (the process's view is the page cache); a power failure
        // before the fsync brings the tail back.
        disk.power_fail(false, &mut rng());
        assert_eq!(disk.read("seg").unwrap(), b"0123456789");
        disk.truncate("seg", 4).unwrap();
        disk.fsync("seg").unwrap();
        disk.power_fail(false, &mut rng());
        assert_eq!(disk.read("seg").unwrap(), b"0123");
        assert!(disk.truncate("missing", 0).is_err());
    }

    #[test]
    fn a_write_after_a_truncation_is_lost_with_it_and_never_torn_past_the_data() {
        let disk = SimDisk::new();
        disk.append("seg", b"aaaa").unwrap();
        disk.fsync("seg").unwrap();
        disk.append("seg", b"bbbbbb").unwrap();
        // The cut shortens the unsynced write's dirty range, then a new write follows.
        disk.truncate("seg", 6).unwrap();
        disk.append("seg", b"cc").unwrap();
        assert_eq!(disk.read("seg").unwrap(), b"aaaabbcc");
        disk.power_fail(false, &mut rng());
        assert_eq!(disk.read("seg").unwrap(), b"aaaa");
        for seed in 0..16 {
            disk.append("seg", b"bbbbbb").unwrap();
            disk.truncate("seg", 5).unwrap();
            disk.power_fail(true, &mut ChaCha8Rng::seed_from_u64(seed));
            let after = disk.read("seg").unwrap();
            assert!(after == b"aaaa" || after == b"aaaab", "{after:?}");
        }
    }

    #[test]
    fn a_gap_written_after_a_truncation_is_zeros_once_fsynced() {
        let disk = SimDisk::new();
        disk.append("f", b"abcd").unwrap();
        disk.fsync("f").unwrap();
        disk.truncate("f", 2).unwrap();
        disk.write_at("f", 3, b"x").unwrap();
        disk.fsync("f").unwrap();
        disk.power_fail(false, &mut rng());
        assert_eq!(disk.read("f").unwrap(), b"ab\0x");
    }

    #[test]
    fn truncating_longer_zero_fills_and_is_a_write() {
        let disk = SimDisk::new();
        disk.append("f", b"ab").unwrap();
        disk.fsync("f").unwrap();
        disk.truncate("f", 5).unwrap();
        assert_eq!(disk.read("f").unwrap(), b"ab\0\0\0");
        assert_eq!(disk.unsynced_bytes(), 3);
        disk.fsync("f").unwrap();
        disk.power_fail(false, &mut rng());
        assert_eq!(disk.read("f").unwrap(), b"ab\0\0\0");
    }

    #[test]
    fn real_disk_has_the_same_interface() {
        let dir = std::env::temp_dir().join(format!("jetsam-disk-test-{}", std::process::id()));
        let disk = RealDisk::open(&dir).unwrap();
        assert_eq!(disk.append("a", b"12").unwrap(), 0);
        assert_eq!(disk.append("a", b"34").unwrap(), 2);
        disk.write_at("a", 1, b"x").unwrap();
        assert_eq!(disk.read_at("a", 1, 2).unwrap(), b"x3");
        assert_eq!(disk.read_at("a", 3, 9).unwrap(), b"4");
        disk.fsync("a").unwrap();
        disk.rename("a", "b").unwrap();
        assert_eq!(disk.read("b").unwrap(), b"1x34");
        disk.truncate("b", 3).unwrap();
        assert_eq!(disk.read("b").unwrap(), b"1x3");
        disk.truncate("b", 4).unwrap();
        assert_eq!(disk.read("b").unwrap(), b"1x3\0");
        assert_eq!(disk.list().unwrap(), vec!["b"]);
        assert!(disk.read("../etc").is_err());
        disk.remove("b").unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn real_disk_makes_and_lists_directories_as_sim_disk_names_them() {
        let dir = std::env::temp_dir().join(format!("jetsam-disk-dirs-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let real = RealDisk::open(&dir).unwrap();
        let sim = SimDisk::new();
        for disk in [&real as &dyn Disk, &sim as &dyn Disk] {
            disk.append("orders-0/00000000000000000000.log", b"batch")
                .unwrap();
            disk.write_at("orders-0/leader-epoch-checkpoint.tmp", 0, b"0\n")
                .unwrap();
            disk.rename(
                "orders-0/leader-epoch-checkpoint.tmp",
                "orders-0/leader-epoch-checkpoint",
            )
            .unwrap();
            disk.append("a/b/c", b"deep").unwrap();
            disk.append("top", b"flat").unwrap();
            assert_eq!(
                disk.list().unwrap(),
                vec![
                    "a/b/c",
                    "orders-0/00000000000000000000.log",
                    "orders-0/leader-epoch-checkpoint",
                    "top"
                ]
            );
            assert_eq!(disk.read("orders-0/00000000000000000000.log").unwrap(), b"batch");
        }
        assert!(
            real.append("orders-0//x", b"").is_err(),
            "an empty part is refused"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
