//! `lost`: an acknowledged (`ok`) publish that was never processed, in a run that drained.

use super::{unprocessed, Anomaly, AnomalyKind, Checker, PublishIndex, Runs};
use crate::history::History;

pub const LOST: AnomalyKind = AnomalyKind::message("lost");

pub const CHECKER: Checker = Checker {
    kinds: &[LOST],
    runs: Runs::PerGroup,
    check: |history, index, found| check_indexed(history, index).into_iter().for_each(found),
};

pub fn check(history: &History) -> Vec<Anomaly> {
    check_indexed(history, &PublishIndex::build(history))
}

pub fn check_indexed(history: &History, index: &PublishIndex) -> Vec<Anomaly> {
    if !history.drained() {
        return Vec::new(); // not yet judgeable: see `unseen`
    }
    unprocessed(history, index, LOST)
}
