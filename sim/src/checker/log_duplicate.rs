//! `log-duplicate` (Jepsen's `:duplicate`): one message at more than one offset, i.e. the log
//! holds it twice. A producer retry without idempotence, or an application's resend through
//! a new producer id, writes it twice (reference §2.4); a consumer then reads both copies.
//! Judged per topic (a partition `<topic>-<n>`): a consume-transform-produce application's
//! copy of its input in its output topic is another log's record, not a duplicate.

use super::positions::positions;
use super::{Anomaly, AnomalyKind, Checker, PublishIndex, Runs, WITNESS_OCCURRENCES_MAX};
use crate::history::{History, MsgId, Name, SimTime};
use std::collections::BTreeMap;

pub const LOG_DUPLICATE: AnomalyKind = AnomalyKind::message("log-duplicate");

/// The log is the system's, not a consumer group's: judged once on the whole history.
pub const CHECKER: Checker = Checker {
    kinds: &[LOG_DUPLICATE],
    runs: Runs::Once,
    check: |history, index, found| check_indexed(history, index).into_iter().for_each(found),
};

pub fn check(history: &History) -> Vec<Anomaly> {
    check_indexed(history, &PublishIndex::build(history))
}

/// A Kafka partition's topic: its name without the `-<n>` index; any other name as it is.
fn topic_of(partition: &str) -> &str {
    match partition.rsplit_once('-') {
        Some((topic, index)) if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) => topic,
        _ => partition,
    }
}

type Seen<'a> = Vec<((&'a str, i64), SimTime, &'a str)>;

pub fn check_indexed(history: &History, _index: &PublishIndex) -> Vec<Anomaly> {
    let mut by_id: BTreeMap<(MsgId, &str), Seen<'_>> = BTreeMap::new();
    for p in positions(history) {
        by_id
            .entry((p.id, topic_of(p.partition)))
            .or_default()
            .push(((p.partition, p.offset), p.time, p.host));
    }
    let mut anomalies = Vec::new();
    for ((id, _), seen) in by_id {
        let mut places: Vec<(&str, i64)> = seen.iter().map(|(place, _, _)| *place).collect();
        places.sort();
        places.dedup();
        if places.len() < 2 {
            continue;
        }
        let witness: Vec<_> = seen.iter().take(WITNESS_OCCURRENCES_MAX).collect();
        let named: Vec<String> = places.iter().map(|(p, o)| format!("{p}@{o}")).collect();
        anomalies.push(Anomaly {
            kind: LOG_DUPLICATE,
            id,
            times: witness.iter().map(|(_, time, _)| *time).collect(),
            hosts: witness.iter().map(|(_, _, host)| Name::new(host)).collect(),
            detail: format!("in the log {} times: {}", places.len(), named.join(", ")),
        });
    }
    anomalies
}
