//! The leader epoch cache (KIP-101; Kafka's `LeaderEpochFileCache`): for each leader epoch
//! that has data in the log, the offset of its first batch. It answers
//! OffsetsForLeaderEpoch, which a follower asks to find where its log diverges from the
//! leader's (reference §2.2). In memory only: [`super::log::PartitionLog`] persists it.

use std::collections::BTreeMap;

/// The most entries a cache holds: one per leader election that wrote data, so far more than
/// any run makes.
pub const EPOCH_ENTRIES_MAX: usize = 10_000;

/// Epoch -> start offset, both increasing together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: BTreeMap<i32, i64>,
}

impl LeaderEpochCache {
    pub fn new() -> LeaderEpochCache {
        LeaderEpochCache::default()
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> Vec<(i32, i64)> {
        self.entries.iter().map(|(&e, &o)| (e, o)).collect()
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.keys().next_back().copied()
    }

    /// Records that `epoch` starts at `start_offset`; returns whether the cache changed.
    ///
    /// As Kafka's `assign`: nothing changes if `epoch` is already the latest and starts no
    /// later; otherwise every entry that would break monotonicity (an epoch at or above
    /// `epoch`, or a start at or above `start_offset`) is dropped first.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        assert!(
            epoch >= 0 && start_offset >= 0,
            "invalid epoch entry ({epoch}, {start_offset})"
        );
        let needed = match self.entries.iter().next_back() {
            None => true,
            Some((&latest, &latest_start)) => epoch != latest || start_offset < latest_start,
        };
        if !needed {
            return false;
        }
        while let Some((&e, &o)) = self.entries.iter().next_back() {
            if e < epoch && o < start_offset {
                break;
            }
            self.entries.remove(&e);
        }
        self.entries.insert(epoch, start_offset);
        assert!(
            self.entries.len() <= EPOCH_ENTRIES_MAX,
            "over {EPOCH_ENTRIES_MAX} epochs"
        );
        self.assert_monotonic();
        true
    }

    /// Drops every entry starting at or above `end_offset` (Kafka's `truncateFromEnd`, run
    /// when the log is truncated to `end_offset`); returns whether the cache changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|_, &mut start| start < end_offset);
        self.entries.len() != before
    }

    /// Drops the entries wholly below `start_offset` and moves the latest of them up to it
    /// (Kafka's `truncateFromStart`: the epoch in force at the new log start keeps an entry).
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let removed: Vec<(i32, i64)> = self
            .entries
            .iter()
            .take_while(|(_, &start)| start <= start_offset)
            .map(|(&e, &o)| (e, o))
            .collect();
        let Some(&(last_epoch, _)) = removed.last() else {
            return false;
        };
        for (e, _) in &removed {
            self.entries.remove(e);
        }
        self.entries.insert(last_epoch, start_offset);
        true
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Kafka's OffsetsForLeaderEpoch answer (`LeaderEpochFileCache.endOffsetFor`): the
    /// largest epoch at or below `requested_epoch` and the offset where it ends, which is the
    /// start of the next higher epoch, or `log_end_offset` if `requested_epoch` is the latest.
    /// `None` is Kafka's (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET): a requested epoch of -1,
    /// or one above every epoch the cache knows (including an empty cache).
    ///
    /// A requested epoch below the first entry is answered with the requested epoch itself
    /// and the first entry's start offset, not UNDEFINED: Kafka's code does this since 2.0
    /// (KIP-279) although its doc comment still describes the older UNDEFINED answer. The
    /// data before that offset is gone, and the follower should truncate to where the
    /// leader's known history starts.
    pub fn end_offset_for(&self, requested_epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        if requested_epoch < 0 {
            return None;
        }
        if self.latest_epoch() == Some(requested_epoch) {
            return Some((requested_epoch, log_end_offset));
        }
        let (_, &higher_start) = self.entries.range(requested_epoch + 1..).next()?;
        match self.entries.range(..=requested_epoch).next_back() {
            None => Some((requested_epoch, higher_start)),
            Some((&floor_epoch, _)) => Some((floor_epoch, higher_start)),
        }
    }

    /// The epoch of the batch at `offset` (Kafka's `epochForOffset`).
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.entries
            .iter()
            .take_while(|(_, &start)| start <= offset)
            .last()
            .map(|(&e, _)| e)
    }

    fn assert_monotonic(&self) {
        let starts: Vec<i64> = self.entries.values().copied().collect();
        assert!(
            starts.windows(2).all(|w| w[0] < w[1]),
            "epoch start offsets not increasing: {:?}",
            self.entries
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(pairs: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::new();
        for &(e, o) in pairs {
            assert!(c.assign(e, o));
        }
        c
    }

    #[test]
    fn end_offset_for_answers_as_kafka_does() {
        // Epochs 2 from 10, 4 from 15, 6 from 20; log end 25.
        let c = cache(&[(2, 10), (4, 15), (6, 20)]);
        assert_eq!(c.end_offset_for(-1, 25), None, "UNDEFINED_EPOCH asked");
        assert_eq!(
            c.end_offset_for(6, 25),
            Some((6, 25)),
            "the latest ends at the LEO"
        );
        assert_eq!(c.end_offset_for(4, 25), Some((4, 20)));
        assert_eq!(
            c.end_offset_for(5, 25),
            Some((4, 20)),
            "a gap answers the epoch below"
        );
        assert_eq!(c.end_offset_for(2, 25), Some((2, 15)));
        assert_eq!(
            c.end_offset_for(1, 25),
            Some((1, 10)),
            "below the first: its start"
        );
        assert_eq!(c.end_offset_for(7, 25), None, "above every known epoch");
        assert_eq!(LeaderEpochCache::new().end_offset_for(0, 0), None);
    }

    #[test]
    fn assign_keeps_only_monotonic_entries() {
        let mut c = cache(&[(1, 0), (3, 5)]);
        assert!(!c.assign(3, 7), "same epoch, later start: nothing to do");
        assert!(c.assign(3, 4), "same epoch, earlier start moves it");
        assert_eq!(c.entries(), vec![(1, 0), (3, 4)]);
        assert!(
            c.assign(2, 4),
            "an older epoch at the same start replaces the newer"
        );
        assert_eq!(c.entries(), vec![(1, 0), (2, 4)]);
        assert!(c.assign(5, 3));
        assert_eq!(c.entries(), vec![(1, 0), (5, 3)]);
    }

    #[test]
    fn truncation_from_either_end() {
        let mut c = cache(&[(1, 0), (3, 5), (4, 9)]);
        assert!(!c.truncate_from_end(10));
        assert!(c.truncate_from_end(9));
        assert_eq!(c.entries(), vec![(1, 0), (3, 5)]);
        assert_eq!(c.epoch_for_offset(4), Some(1));
        assert_eq!(c.epoch_for_offset(6), Some(3));
        assert!(c.truncate_from_start(6));
        assert_eq!(c.entries(), vec![(3, 6)]);
        assert!(!c.truncate_from_start(2));
        assert_eq!(c.epoch_for_offset(2), None);
    }
}
