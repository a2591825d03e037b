//! Kafka's checkpoint files (`leader-epoch-checkpoint`, `replication-offset-checkpoint`):
//! a version line, a count line, then one entry per line with fields separated by spaces.
//!
//! A checkpoint is replaced whole, never edited in place: written to `NAME.tmp`, fsynced,
//! then renamed over `NAME` (Kafka's `CheckpointFile.write`, then
//! `Utils.atomicMoveWithFallback`). A power failure therefore leaves either the old or the
//! new content, never a mix.

use sim::disk::Disk;
use std::io;

/// The only version either checkpoint has ever had.
pub const CHECKPOINT_VERSION: u32 = 0;
/// Bound on the entries we accept when reading, so a corrupt count cannot run away.
pub const CHECKPOINT_ENTRIES_MAX: usize = 100_000;

/// Replaces `path` with the checkpoint holding `entries` (each a list of fields).
pub fn write_atomic<D: Disk>(disk: &D, path: &str, entries: &[Vec<String>]) -> io::Result<()> {
    assert!(entries.len() <= CHECKPOINT_ENTRIES_MAX);
    let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", entries.len());
    for entry in entries {
        text.push_str(&entry.join(" "));
        text.push('\n');
    }
    let tmp = format!("{path}.tmp");
    // A tmp file left by an earlier crash is overwritten from scratch, as Kafka does.
    if disk.len(&tmp).is_ok() {
        disk.remove(&tmp)?;
    }
    disk.write_at(&tmp, 0, text.as_bytes())?;
    disk.fsync(&tmp)?;
    disk.rename(&tmp, path)
}

/// The entries of the checkpoint at `path`: `Ok(None)` if there is no file, `Err` with
/// `InvalidData` if it is not a checkpoint (Kafka fails the log directory then; our
/// callers decide).
pub fn read<D: Disk>(disk: &D, path: &str) -> io::Result<Option<Vec<Vec<String>>>> {
    let bytes = match disk.read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    parse(&bytes)
        .map(Some)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("malformed checkpoint {path}")))
}

fn parse(bytes: &[u8]) -> Option<Vec<Vec<String>>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    let version: u32 = lines.next()?.trim().parse().ok()?;
    let count: usize = lines.next()?.trim().parse().ok()?;
    if version != CHECKPOINT_VERSION || count > CHECKPOINT_ENTRIES_MAX {
        return None;
    }
    let entries: Vec<Vec<String>> = lines
        .take(count + 1)
        .map(|line| line.split_whitespace().map(str::to_string).collect())
        .collect();
    // Kafka checks the count against the lines it found, both ways.
    (entries.len() == count).then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use sim::disk::SimDisk;

    fn entries(pairs: &[(i32, i64)]) -> Vec<Vec<String>> {
        pairs
            .iter()
            .map(|(e, o)| vec![e.to_string(), o.to_string()])
            .collect()
    }

    #[test]
    fn the_format_is_kafkas_and_survives_power_loss() {
        let disk = SimDisk::new();
        write_atomic(&disk, "p/leader-epoch-checkpoint", &entries(&[(0, 0), (2, 15)])).unwrap();
        assert_eq!(
            disk.read("p/leader-epoch-checkpoint").unwrap(),
            b"0\n2\n0 0\n2 15\n"
        );
        disk.power_fail(false, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        let read_back = read(&disk, "p/leader-epoch-checkpoint").unwrap().unwrap();
        assert_eq!(read_back, entries(&[(0, 0), (2, 15)]));
        assert_eq!(disk.list().unwrap(), vec!["p/leader-epoch-checkpoint"]);
    }

    #[test]
    fn missing_is_none_and_garbage_is_an_error() {
        let disk = SimDisk::new();
        assert!(read(&disk, "c").unwrap().is_none());
        for garbage in [
            &b""[..],
            b"0\n3\n1 1\n",
            b"1\n0\n",
            b"x",
            b"0\n1\n1 1\n2 2\n",
            b"\xff\xfe",
        ] {
            disk.write_at("c", 0, garbage).unwrap();
            disk.truncate("c", garbage.len() as u64).unwrap();
            assert_eq!(read(&disk, "c").unwrap_err().kind(), io::ErrorKind::InvalidData);
        }
    }
}
