//! `inconsistent-offsets` (Jepsen's `:inconsistent-offsets`): one offset of a partition holds
//! two different messages, by what producers were told and consumers read. Replicas whose
//! logs diverged and were never reconciled show it (reference §2.2, scenario 2).

use super::positions::{positions, Position};
use super::{Anomaly, AnomalyKind, Checker, PublishIndex, Runs, WITNESS_OCCURRENCES_MAX};
use crate::history::{History, MsgId, Name};
use std::collections::BTreeMap;

pub const INCONSISTENT_OFFSETS: AnomalyKind = AnomalyKind::message("inconsistent-offsets");

/// The log is the system's, not a consumer group's: judged once on the whole history.
pub const CHECKER: Checker = Checker {
    kinds: &[INCONSISTENT_OFFSETS],
    runs: Runs::Once,
    check: |history, index, found| check_indexed(history, index).into_iter().for_each(found),
};

pub fn check(history: &History) -> Vec<Anomaly> {
    check_indexed(history, &PublishIndex::build(history))
}

pub fn check_indexed(history: &History, _index: &PublishIndex) -> Vec<Anomaly> {
    let mut at: BTreeMap<(&str, i64), Vec<Position<'_>>> = BTreeMap::new();
    for position in positions(history) {
        at.entry((position.partition, position.offset)).or_default().push(position);
    }
    let mut anomalies = Vec::new();
    for ((partition, offset), seen) in at {
        let mut ids: Vec<MsgId> = seen.iter().map(|p| p.id).collect();
        ids.sort();
        ids.dedup();
        if ids.len() < 2 {
            continue;
        }
        let witness: Vec<&Position<'_>> = seen.iter().take(WITNESS_OCCURRENCES_MAX).collect();
        let said: Vec<String> = witness
            .iter()
            .map(|p| format!("{} {} at {}", p.id, p.source.verb(), p.host))
            .collect();
        anomalies.push(Anomaly {
            kind: INCONSISTENT_OFFSETS,
            id: ids[0],
            times: witness.iter().map(|p| p.time).collect(),
            hosts: witness.iter().map(|p| Name::new(p.host)).collect(),
            detail: format!("{partition}@{offset} holds {} messages: {}", ids.len(), said.join(", ")),
        });
    }
    anomalies
}
