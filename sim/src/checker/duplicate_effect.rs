//! `duplicate-effect`: a published message whose side effect was applied more than once.

use super::{repeated, Anomaly, AnomalyKind, Checker, PublishIndex, Runs};
use crate::history::{EventKind, History};

pub const DUPLICATE_EFFECT: AnomalyKind = AnomalyKind::message("duplicate-effect");

pub const CHECKER: Checker = Checker {
    kinds: &[DUPLICATE_EFFECT],
    runs: Runs::PerGroup,
    check: |history, index, found| check_indexed(history, index).into_iter().for_each(found),
};

pub fn check(history: &History) -> Vec<Anomaly> {
    check_indexed(history, &PublishIndex::build(history))
}

pub fn check_indexed(history: &History, index: &PublishIndex) -> Vec<Anomaly> {
    repeated(
        history,
        index,
        DUPLICATE_EFFECT,
        |kind| match kind {
            EventKind::Effect { id, .. } => Some(*id),
            _ => None,
        },
        "effect applied",
    )
}
