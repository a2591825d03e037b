//! `partial-transaction`: a database transaction committed some parts of a message's effect
//! but not all of them, e.g. the inbox row without the business update (reference §5.2,
//! pitfalls 1 and 2). The design declares what a whole effect writes (`effect_parts`); the
//! database records each committed transaction's tagged writes (`write`). A history with no
//! declaration has no transactions to judge.

use super::{Anomaly, AnomalyKind, Checker, Runs};
use crate::history::{EventKind, History};

pub const PARTIAL_TRANSACTION: AnomalyKind = AnomalyKind::message("partial-transaction");

/// Once on the whole history: the database's commits are not one consumer group's. It needs
/// no publish index.
pub const CHECKER: Checker = Checker {
    kinds: &[PARTIAL_TRANSACTION],
    runs: Runs::Once,
    check: |history, _, found| check(history).into_iter().for_each(found),
};

pub fn check(history: &History) -> Vec<Anomaly> {
    let Some(whole) = history.events().iter().find_map(|event| match &event.kind {
        EventKind::EffectParts { parts } => Some(parts),
        _ => None,
    }) else {
        return Vec::new();
    };
    let mut anomalies = Vec::new();
    for event in history.events() {
        let EventKind::Write { id, txn, parts } = &event.kind else {
            continue;
        };
        let missing: Vec<&str> = whole
            .iter()
            .filter(|part| !parts.contains(part))
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            continue;
        }
        anomalies.push(Anomaly {
            kind: PARTIAL_TRANSACTION,
            id: *id,
            times: vec![event.time],
            hosts: vec![event.host.clone()],
            detail: format!(
                "transaction {txn} committed {} without {}",
                parts.join(", "),
                missing.join(", ")
            ),
        });
    }
    anomalies
}
