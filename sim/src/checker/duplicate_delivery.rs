//! `duplicate-delivery`: a published message delivered to consumers more than once (any
//! attempts, any consumers). Expected under at-least-once; an anomaly for at-most-once designs.

use super::{repeated, Anomaly, AnomalyKind, Checker, PublishIndex, Runs};
use crate::history::{EventKind, History};

pub const DUPLICATE_DELIVERY: AnomalyKind = AnomalyKind::message("duplicate-delivery");

pub const CHECKER: Checker = Checker {
    kinds: &[DUPLICATE_DELIVERY],
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
        DUPLICATE_DELIVERY,
        |kind| match kind {
            EventKind::Deliver { id, .. } => Some(*id),
            _ => None,
        },
        "delivered",
    )
}
