//! `invariant`: a value that must not change did. Models record `observe` events (a read of
//! the system's state, e.g. the total of all balances after a commit); the first observation
//! of each name is the reference, and every later one that differs is an anomaly.

use super::{Anomaly, AnomalyKind, Checker, Runs};
use crate::history::{EventKind, History, MsgId, SimTime};
use std::collections::BTreeMap;

/// About the system's state, not a message: its anomalies carry `MsgId::ZERO`, unshown.
pub const INVARIANT: AnomalyKind = AnomalyKind::state("invariant");

/// Once on the whole history: an observation reads the whole system, which no consumer
/// group owns. It needs no publish index.
pub const CHECKER: Checker = Checker {
    kinds: &[INVARIANT],
    runs: Runs::Once,
    check: |history, _, found| check(history).into_iter().for_each(found),
};

pub fn check(history: &History) -> Vec<Anomaly> {
    let mut first: BTreeMap<&str, (i64, SimTime, &str)> = BTreeMap::new();
    let mut anomalies = Vec::new();
    for event in history.events() {
        let EventKind::Observe { name, value } = &event.kind else {
            continue;
        };
        let (expected, since, host) =
            *first
                .entry(name.as_str())
                .or_insert((*value, event.time, event.host.as_str()));
        if *value != expected {
            anomalies.push(Anomaly {
                kind: INVARIANT,
                id: MsgId::ZERO,
                times: vec![since, event.time],
                hosts: vec![host.into(), event.host.clone()],
                detail: format!("{name} was {expected}, then {value} ({:+})", value - expected),
            });
        }
    }
    anomalies
}
