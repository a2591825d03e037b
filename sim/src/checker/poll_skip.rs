//! `poll-skip` (Jepsen's `:poll-skip`, reference §2.7): one consumer, within one incarnation
//! and one assignment, reads a partition at an offset and next at a later one, jumping over an
//! offset where the history shows a message (someone read it there, or its producer was told
//! it is there). Offsets a log leaves empty (transaction markers, truncated tails nobody saw)
//! are not skips: as Jepsen does, only offsets known to hold a message count. Reads are
//! compared only between restarts and reassignments ([`super::positions::reads_restart`]),
//! where Jepsen too allows a consumer to start elsewhere.

use super::positions::{positions, reads_restart};
use super::{Anomaly, AnomalyKind, Checker, PublishIndex, Runs};
use crate::history::{EventKind, History, MsgId, SimTime};
use std::collections::{BTreeMap, BTreeSet};

pub const POLL_SKIP: AnomalyKind = AnomalyKind::message("poll-skip");

pub const CHECKER: Checker = Checker {
    kinds: &[POLL_SKIP],
    runs: Runs::Once,
    check: |history, index, found| check_indexed(history, index).into_iter().for_each(found),
};

pub fn check(history: &History) -> Vec<Anomaly> {
    check_indexed(history, &PublishIndex::build(history))
}

pub fn check_indexed(history: &History, _index: &PublishIndex) -> Vec<Anomaly> {
    // Every offset of each partition known to hold a message, from reads and acknowledgements.
    let mut known: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    for position in positions(history) {
        known.entry(position.partition).or_default().insert(position.offset);
    }
    // (consumer, partition) -> the last read: offset, message, time.
    let mut last: BTreeMap<(&str, &str), (i64, MsgId, SimTime)> = BTreeMap::new();
    let mut anomalies = Vec::new();
    for event in history.events() {
        let restarted = reads_restart(event);
        if !restarted.is_empty() {
            last.retain(|(consumer, _), _| !restarted.contains(consumer));
        }
        let EventKind::Deliver {
            id,
            consumer,
            partition: Some(partition),
            offset: Some(offset),
            ..
        } = &event.kind
        else {
            continue;
        };
        let key = (consumer.as_str(), partition.as_str());
        if let Some((previous, previous_id, previous_time)) = last.get(&key).copied() {
            let skipped: Vec<i64> = if *offset > previous + 1 {
                known[partition.as_str()].range(previous + 1..*offset).copied().collect()
            } else {
                Vec::new()
            };
            if !skipped.is_empty() {
                anomalies.push(Anomaly {
                    kind: POLL_SKIP,
                    id: *id,
                    times: vec![previous_time, event.time],
                    hosts: vec![event.host.clone(), event.host.clone()],
                    detail: format!(
                        "{consumer} read {partition}@{offset} after {partition}@{previous} ({previous_id}), skipping {} offset(s) from {partition}@{}",
                        skipped.len(),
                        skipped[0]
                    ),
                });
            }
        }
        last.insert(key, (*offset, *id, event.time));
    }
    anomalies
}
