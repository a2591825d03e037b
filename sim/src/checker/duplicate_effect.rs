//! `duplicate-effect`: a published message whose side effect was applied more than once.

use super::{repeated, Anomaly, AnomalyKind, PublishIndex};
use crate::history::{EventKind, History};

pub fn check(history: &History) -> Vec<Anomaly> {
    check_indexed(history, &PublishIndex::build(history))
}

pub fn check_indexed(history: &History, index: &PublishIndex) -> Vec<Anomaly> {
    repeated(
        history,
        index,
        AnomalyKind::DuplicateEffect,
        |kind| match kind {
            EventKind::Effect { id, .. } => Some(*id),
            _ => None,
        },
        "effect applied",
    )
}
