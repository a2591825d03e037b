//! `phantom`: a message delivered (or processed) that was never published, or whose every
//! publish failed. Reading a closed Go channel without checking `ok` yields these as zero
//! values (reference §6); an aborted write read back is the broker-side form (Jepsen's G1a).

use super::{Anomaly, AnomalyKind, Checker, Outcome, PublishIndex, Runs, WITNESS_OCCURRENCES_MAX};
use crate::history::{EventKind, History, MsgId};
use std::collections::BTreeMap;

/// About a message, even id 0: reading a closed Go channel yields the zero value.
pub const PHANTOM: AnomalyKind = AnomalyKind::message("phantom");

pub const CHECKER: Checker = Checker {
    kinds: &[PHANTOM],
    runs: Runs::PerGroup,
    check: |history, index, found| check_indexed(history, index).into_iter().for_each(found),
};

pub fn check(history: &History) -> Vec<Anomaly> {
    check_indexed(history, &PublishIndex::build(history))
}

pub fn check_indexed(history: &History, index: &PublishIndex) -> Vec<Anomaly> {
    let mut by_id: BTreeMap<MsgId, (Anomaly, u64)> = BTreeMap::new();
    for event in history.events() {
        let id = match &event.kind {
            EventKind::Deliver { id, .. } | EventKind::Effect { id, .. } => *id,
            _ => continue,
        };
        let why = match index.get(id) {
            None => "never published",
            Some(info) if info.outcome == Outcome::Fail => "published only with fail",
            Some(_) => continue,
        };
        let (anomaly, count) = by_id.entry(id).or_insert_with(|| {
            (
                Anomaly {
                    kind: PHANTOM,
                    id,
                    times: Vec::new(),
                    hosts: Vec::new(),
                    detail: String::new(),
                },
                0,
            )
        });
        *count += 1;
        anomaly.detail = format!("{why}, yet seen by a consumer {count} time(s)");
        if anomaly.times.len() < WITNESS_OCCURRENCES_MAX {
            anomaly.times.push(event.time);
            anomaly.hosts.push(event.host.clone());
        }
    }
    by_id.into_values().map(|(anomaly, _)| anomaly).collect()
}
