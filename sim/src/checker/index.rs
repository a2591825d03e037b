//! One pass over the publishes of a history, shared by the checkers.

use super::id_slots::IdSlots;
use crate::history::{EventKind, History, MsgId, Name, SimTime};
use std::collections::BTreeMap;

/// Ids below this are stored densely (the workloads number messages 1..=n).
const DENSE_IDS_MAX: u64 = 1 << 24;

/// The final outcome of a publish, in Jepsen's sense.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Fail,
    Info,
    /// Invoked and never completed (the harness normally closes these as `info`).
    Pending,
}

#[derive(Clone, Debug)]
pub struct PublishInfo {
    pub id: MsgId,
    pub host: Name,
    pub producer: Name,
    /// Interned producer, for per-producer scopes.
    pub producer_index: u32,
    pub seq: u64,
    /// Interned key, for per-key scopes.
    pub key_index: Option<u32>,
    /// Position of the invocation among all invocations: the global publish order.
    pub rank: u64,
    pub invoked: SimTime,
    pub completed: Option<SimTime>,
    /// `ok` wins over `info` if a message was published more than once.
    pub outcome: Outcome,
}

/// Publishes by id. A message id published twice (a producer retry) keeps its first invocation
/// and its best outcome: one `ok` is enough for the message to be owed.
pub struct PublishIndex {
    slots: IdSlots,
    entries: Vec<PublishInfo>,
    producers: usize,
    keys: usize,
}

impl PublishIndex {
    pub fn build(history: &History) -> PublishIndex {
        let mut index = PublishIndex {
            slots: IdSlots::new(DENSE_IDS_MAX),
            entries: Vec::new(),
            producers: 0,
            keys: 0,
        };
        let mut producers: BTreeMap<&str, u32> = BTreeMap::new();
        let mut keys: BTreeMap<&str, u32> = BTreeMap::new();
        let mut rank = 0u64;
        for event in history.events() {
            match &event.kind {
                EventKind::Publish {
                    id,
                    producer,
                    seq,
                    key,
                } => {
                    if index.slot(*id).is_some() {
                        continue;
                    }
                    let next = producers.len() as u32;
                    let producer_index = *producers.entry(producer.as_str()).or_insert(next);
                    let key_index = key.as_deref().map(|k| {
                        let next = keys.len() as u32;
                        *keys.entry(k).or_insert(next)
                    });
                    let slot = u32::try_from(index.entries.len()).expect("fewer than 2^32 messages");
                    index.slots.insert(*id, slot);
                    index.entries.push(PublishInfo {
                        id: *id,
                        host: event.host.clone(),
                        producer: producer.clone(),
                        producer_index,
                        seq: *seq,
                        key_index,
                        rank,
                        invoked: event.time,
                        completed: None,
                        outcome: Outcome::Pending,
                    });
                    rank += 1;
                }
                EventKind::PublishOk { id, .. } => index.complete(*id, event.time, Outcome::Ok),
                EventKind::PublishFail { id, .. } => index.complete(*id, event.time, Outcome::Fail),
                EventKind::PublishInfo { id, .. } => index.complete(*id, event.time, Outcome::Info),
                _ => {}
            }
        }
        index.producers = producers.len();
        index.keys = keys.len();
        index
    }

    fn complete(&mut self, id: MsgId, time: SimTime, outcome: Outcome) {
        let Some(slot) = self.slot(id) else {
            return;
        };
        let entry = &mut self.entries[slot];
        // Strength: ok > info > fail > pending. A retried publish that was once ok is owed.
        let strength = |o: Outcome| match o {
            Outcome::Ok => 3,
            Outcome::Info => 2,
            Outcome::Fail => 1,
            Outcome::Pending => 0,
        };
        if strength(outcome) > strength(entry.outcome) {
            entry.outcome = outcome;
            entry.completed = Some(time);
        }
    }

    #[inline]
    pub fn slot(&self, id: MsgId) -> Option<usize> {
        self.slots.get(id)
    }

    pub fn get(&self, id: MsgId) -> Option<&PublishInfo> {
        self.slot(id).map(|slot| &self.entries[slot])
    }

    pub fn entries(&self) -> &[PublishInfo] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn producer_count(&self) -> usize {
        self.producers
    }

    pub fn key_count(&self) -> usize {
        self.keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::test_support::Build;

    #[test]
    fn an_outcome_keeps_the_strongest_answer_and_its_first_time() {
        let mut b = Build::new();
        b.publish(1).info(1).publish(2).fail(2).publish(3).ok(3).ok(3);
        let index = PublishIndex::build(&b.history());
        assert_eq!(index.get(MsgId(1)).unwrap().outcome, Outcome::Info);
        assert_eq!(index.get(MsgId(2)).unwrap().outcome, Outcome::Fail);
        let three = index.get(MsgId(3)).unwrap();
        assert_eq!(three.outcome, Outcome::Ok);
        assert!(
            three.completed.unwrap() < SimTime(three.invoked.0 + 20),
            "the first ok's time"
        );
    }

    #[test]
    fn small_ids_are_dense_and_ids_from_the_bound_up_are_sparse() {
        let mut b = Build::new();
        b.publish(1)
            .publish(DENSE_IDS_MAX - 1)
            .publish(DENSE_IDS_MAX)
            .publish(u64::MAX - 1);
        let index = PublishIndex::build(&b.history());
        for id in [1, DENSE_IDS_MAX - 1, DENSE_IDS_MAX, u64::MAX - 1] {
            assert_eq!(index.get(MsgId(id)).map(|p| p.id), Some(MsgId(id)), "id {id}");
        }
        let (dense, sparse) = index.slots.lens();
        assert!(dense >= DENSE_IDS_MAX as usize && sparse == 2);
        assert_eq!(index.len(), 4);
        assert!(!index.is_empty() && PublishIndex::build(&Build::new().history()).is_empty());
    }
}
