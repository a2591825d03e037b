//! `reorder`: within a scope, a delivery of a message that was published before a message
//! already delivered in that scope. Every delivery counts, so a redelivery that comes after a
//! later message (NSQ's tail requeue) is a reorder; a repeat of the latest message is not.

use super::{Anomaly, AnomalyKind, OrderScope, PublishIndex};
use crate::history::{EventKind, History, MsgId, SimTime};
use std::collections::BTreeMap;

pub fn check(history: &History, scope: OrderScope) -> Vec<Anomaly> {
    check_indexed(history, &PublishIndex::build(history), scope)
}

#[derive(Clone, Copy)]
struct Latest {
    order: u64,
    id: MsgId,
    time: SimTime,
    event: usize,
}

pub fn check_indexed(history: &History, index: &PublishIndex, scope: OrderScope) -> Vec<Anomaly> {
    let groups = match scope {
        OrderScope::Producer => index.producer_count(),
        OrderScope::Key => index.key_count(),
        OrderScope::Global => 1,
        OrderScope::Partition => 0, // grown as partitions appear
    };
    let mut latest: Vec<Option<Latest>> = vec![None; groups];
    let mut partitions: BTreeMap<&str, usize> = BTreeMap::new();
    let mut anomalies = Vec::new();
    let events = history.events();
    for (at, event) in events.iter().enumerate() {
        let EventKind::Deliver { id, partition, .. } = &event.kind else {
            continue;
        };
        let Some(info) = index.get(*id) else {
            continue; // phantom
        };
        let (group, order) = match scope {
            OrderScope::Producer => (info.producer_index as usize, info.seq),
            OrderScope::Key => match info.key_index {
                Some(key) => (key as usize, info.rank),
                None => continue,
            },
            OrderScope::Global => (0, info.rank),
            OrderScope::Partition => {
                let Some(partition) = partition.as_deref() else {
                    continue;
                };
                let next = partitions.len();
                let group = *partitions.entry(partition).or_insert(next);
                if group == latest.len() {
                    latest.push(None);
                }
                (group, info.rank)
            }
        };
        match latest[group] {
            Some(prior) if order < prior.order => {
                let prior_host = events[prior.event].host.clone();
                anomalies.push(Anomaly {
                    kind: AnomalyKind::Reorder,
                    id: *id,
                    times: vec![prior.time, event.time],
                    hosts: vec![prior_host, event.host.clone()],
                    detail: format!(
                        "{} scope: delivered after {}, which was published later",
                        scope.name(),
                        prior.id
                    ),
                });
            }
            Some(prior) if order == prior.order => {}
            _ => {
                latest[group] = Some(Latest {
                    order,
                    id: *id,
                    time: event.time,
                    event: at,
                })
            }
        }
    }
    anomalies
}
