//! `nonmonotonic-read` (Jepsen's `:nonmonotonic-poll`): one consumer process reads a
//! partition at an offset at or below one it already read from it. A consumer restart (a
//! fault on its host) starts over from its committed position, and a consumer group member
//! given its partitions again starts from the group's committed offsets, so reads are
//! compared only within one incarnation and one assignment ([`super::positions::reads_restart`]).

use super::positions::reads_restart;
use super::{Anomaly, AnomalyKind, Checker, PublishIndex, Runs};
use crate::history::{EventKind, History, MsgId, SimTime};
use std::collections::BTreeMap;

pub const NONMONOTONIC_READ: AnomalyKind = AnomalyKind::message("nonmonotonic-read");

pub const CHECKER: Checker = Checker {
    kinds: &[NONMONOTONIC_READ],
    runs: Runs::Once,
    check: |history, index, found| check_indexed(history, index).into_iter().for_each(found),
};

pub fn check(history: &History) -> Vec<Anomaly> {
    check_indexed(history, &PublishIndex::build(history))
}

pub fn check_indexed(history: &History, _index: &PublishIndex) -> Vec<Anomaly> {
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
            if *offset <= previous {
                anomalies.push(Anomaly {
                    kind: NONMONOTONIC_READ,
                    id: *id,
                    times: vec![previous_time, event.time],
                    hosts: vec![event.host.clone(), event.host.clone()],
                    detail: format!(
                        "{consumer} read {partition}@{offset} after {partition}@{previous} ({previous_id})"
                    ),
                });
            }
        }
        last.insert(key, (*offset, *id, event.time));
    }
    anomalies
}
