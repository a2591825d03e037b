//! `lost-write` (Jepsen's `:lost-write`): a publish acknowledged at an offset that no
//! consumer ever read, although a consumer read a later offset of the same partition. Unlike
//! `lost`, it needs no drain: the log moved past the message, so it is gone, not late (an
//! acks=1 leader dying before its followers copied the write, reference §2.1).

use super::positions::{positions, Source};
use super::{Anomaly, AnomalyKind, Checker, PublishIndex, Runs};
use crate::history::{History, MsgId};
use std::collections::{BTreeMap, BTreeSet};

pub const LOST_WRITE: AnomalyKind = AnomalyKind::message("lost-write");

/// Each consumer group reads the whole log, so each is judged on its own reads.
pub const CHECKER: Checker = Checker {
    kinds: &[LOST_WRITE],
    runs: Runs::PerGroup,
    check: |history, index, found| check_indexed(history, index).into_iter().for_each(found),
};

pub fn check(history: &History) -> Vec<Anomaly> {
    check_indexed(history, &PublishIndex::build(history))
}

pub fn check_indexed(history: &History, _index: &PublishIndex) -> Vec<Anomaly> {
    let all = positions(history);
    let read: BTreeSet<MsgId> = all.iter().filter(|p| p.source == Source::Read).map(|p| p.id).collect();
    let mut highest_read: BTreeMap<&str, i64> = BTreeMap::new();
    for p in all.iter().filter(|p| p.source == Source::Read) {
        let highest = highest_read.entry(p.partition).or_insert(p.offset);
        *highest = (*highest).max(p.offset);
    }
    let mut reported = BTreeSet::new();
    let mut anomalies = Vec::new();
    for p in all.iter().filter(|p| p.source == Source::Acknowledged) {
        let Some(&highest) = highest_read.get(p.partition) else {
            continue;
        };
        if read.contains(&p.id) || highest <= p.offset || !reported.insert(p.id) {
            continue;
        }
        anomalies.push(Anomaly {
            kind: LOST_WRITE,
            id: p.id,
            times: vec![p.time],
            hosts: vec![p.host.into()],
            detail: format!(
                "acknowledged at {}@{}, never read, though offset {highest} of {} was",
                p.partition, p.offset, p.partition
            ),
        });
    }
    anomalies
}
