//! `unseen`: an acknowledged publish not processed in a run that did not drain. It may be lost
//! or only late; the run's liveness verdict says the drain did not finish.

use super::{unprocessed, Anomaly, AnomalyKind, Checker, PublishIndex, Runs};
use crate::history::History;

pub const UNSEEN: AnomalyKind = AnomalyKind::message("unseen");

pub const CHECKER: Checker = Checker {
    kinds: &[UNSEEN],
    runs: Runs::PerGroup,
    check: |history, index, found| check_indexed(history, index).into_iter().for_each(found),
};

pub fn check(history: &History) -> Vec<Anomaly> {
    check_indexed(history, &PublishIndex::build(history))
}

pub fn check_indexed(history: &History, index: &PublishIndex) -> Vec<Anomaly> {
    if history.drained() {
        return Vec::new(); // judged by `lost`
    }
    unprocessed(history, index, UNSEEN)
}
