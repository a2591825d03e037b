//! `IdSlots`: message id to a slot in a caller's table, for the passes over a whole history
//! that keep something per message. Workloads number their messages from 1, so ids below a
//! bound sit in a plain array (4 bytes an id); any id at or above it goes in a map, so that
//! one large id cannot make the array large.

use crate::history::MsgId;
use std::collections::BTreeMap;

const NO_SLOT: u32 = u32::MAX;

pub(crate) struct IdSlots {
    dense: Vec<u32>,
    dense_max: u64,
    sparse: BTreeMap<u64, u32>,
}

impl IdSlots {
    /// Ids below `dense_max` go in the array.
    pub(crate) fn new(dense_max: u64) -> IdSlots {
        IdSlots {
            dense: Vec::new(),
            dense_max,
            sparse: BTreeMap::new(),
        }
    }

    /// Gives `id` the slot `slot` (below `u32::MAX`), replacing any it had.
    pub(crate) fn insert(&mut self, id: MsgId, slot: u32) {
        assert!(slot != NO_SLOT, "slot {slot} is the empty marker");
        if id.0 < self.dense_max {
            let at = id.0 as usize;
            if self.dense.len() <= at {
                self.dense.resize((at + 1).next_power_of_two(), NO_SLOT);
            }
            self.dense[at] = slot;
        } else {
            self.sparse.insert(id.0, slot);
        }
    }

    #[inline]
    pub(crate) fn get(&self, id: MsgId) -> Option<usize> {
        let slot = if id.0 < self.dense_max {
            *self.dense.get(id.0 as usize)?
        } else {
            *self.sparse.get(&id.0)?
        };
        (slot != NO_SLOT).then_some(slot as usize)
    }

    /// (ids the array has room for, ids in the map), for tests of the split.
    #[cfg(test)]
    pub(crate) fn lens(&self) -> (usize, usize) {
        (self.dense.len(), self.sparse.len())
    }
}
