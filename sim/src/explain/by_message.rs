//! `ByMessage`: the indexes of each message's events in a history, packed. An explainer
//! holds it beside the history for as long as a report is written, so it must stay small
//! beside it: a map of one `Vec` per message cost about 130 bytes a message, a third of a
//! million-message history's own size, where this costs 4 bytes an event and 4 a message id.

use crate::history::{Event, MsgId};
use std::collections::BTreeMap;

pub(super) struct ByMessage {
    /// Message `id`'s events are `indexes[starts[id]..starts[id + 1]]`, for every id below
    /// `starts.len() - 1`.
    starts: Vec<u32>,
    indexes: Vec<u32>,
    /// Ids above the history's length, kept apart so that one large id cannot make the
    /// dense table large (workloads number their messages from 1, and a history records at
    /// least one event per message, so these are rare).
    sparse: BTreeMap<MsgId, Vec<u32>>,
}

impl ByMessage {
    pub(super) fn build(events: &[Event]) -> ByMessage {
        // `HISTORY_EVENTS_MAX` keeps a history's indexes within u32.
        let len = u32::try_from(events.len()).expect("a history's events are indexed by u32");
        let dense = |id: MsgId| (id.0 <= u64::from(len)).then_some(id.0 as usize);
        let ids = || {
            events
                .iter()
                .enumerate()
                .filter_map(|(i, e)| Some((i as u32, e.kind.msg_id()?)))
        };
        let dense_len = ids()
            .filter_map(|(_, id)| dense(id))
            .max()
            .map_or(0, |top| top + 1);
        let mut starts = vec![0u32; dense_len + 1];
        let mut sparse: BTreeMap<MsgId, Vec<u32>> = BTreeMap::new();
        for (i, id) in ids() {
            match dense(id) {
                Some(at) => starts[at + 1] += 1,
                None => sparse.entry(id).or_default().push(i),
            }
        }
        for at in 1..starts.len() {
            starts[at] += starts[at - 1];
        }
        let mut next = starts.clone();
        let mut indexes = vec![0u32; starts[dense_len] as usize];
        for (i, at) in ids().filter_map(|(i, id)| Some((i, dense(id)?))) {
            indexes[next[at] as usize] = i;
            next[at] += 1;
        }
        ByMessage {
            starts,
            indexes,
            sparse,
        }
    }

    /// The indexes of message `id`'s events, in history order.
    pub(super) fn get(&self, id: MsgId) -> &[u32] {
        let at = id.0 as usize;
        if id.0 < (self.starts.len() as u64).saturating_sub(1) {
            return &self.indexes[self.starts[at] as usize..self.starts[at + 1] as usize];
        }
        self.sparse.get(&id).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::test_support::Build;

    #[test]
    fn each_message_gets_its_own_events_in_order_whatever_its_id() {
        let mut b = Build::new();
        b.publish(2)
            .publish(u64::MAX)
            .publish(0)
            .deliver(2, 1)
            .deliver(u64::MAX, 1)
            .deliver(2, 2);
        let h = b.history();
        let by = ByMessage::build(h.events());
        let expect = |id: u64| -> Vec<u32> {
            let events = h.events().iter().enumerate();
            events
                .filter(|(_, e)| e.kind.msg_id() == Some(MsgId(id)))
                .map(|(i, _)| i as u32)
                .collect()
        };
        for id in [0, 1, 2, 3, 99, u64::MAX] {
            assert_eq!(by.get(MsgId(id)), expect(id).as_slice(), "m{id}");
        }
        assert_eq!(by.get(MsgId(2)).len(), 3);
        assert_eq!(by.get(MsgId(u64::MAX)).len(), 2);
    }
}
