//! `duplicate-delivery`: a published message delivered to consumers more than once (any
//! attempts, any consumers). Expected under at-least-once; an anomaly for at-most-once designs.

use super::{repeated, Anomaly, AnomalyKind, PublishIndex};
use crate::history::{EventKind, History};

pub fn check(history: &History) -> Vec<Anomaly> {
    check_indexed(history, &PublishIndex::build(history))
}

pub fn check_indexed(history: &History, index: &PublishIndex) -> Vec<Anomaly> {
    repeated(
        history,
        index,
        AnomalyKind::DuplicateDelivery,
        |kind| match kind {
            EventKind::Deliver { id, .. } => Some(*id),
            _ => None,
        },
        "delivered",
    )
}
