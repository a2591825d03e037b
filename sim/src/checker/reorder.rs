//! `reorder`: within a scope, a delivery of a message that was published before a message
//! already delivered in that scope. Every delivery counts, so a redelivery that comes after a
//! later message (NSQ's tail requeue) is a reorder; a repeat of the latest message is not.

use super::{Anomaly, AnomalyKind, Checker, PublishIndex, Runs};
use crate::history::{EventKind, History, MsgId, SimTime};
use serde::Serialize;
use std::collections::BTreeMap;

/// Ordering scopes for the reorder checker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrderScope {
    /// Among one producer's messages, in the producer's publish order.
    Producer,
    /// Among messages with the same key, in publish-invocation order.
    Key,
    /// Among deliveries from the same partition (as the consumer recorded it).
    Partition,
    /// Among all messages, in publish-invocation order.
    Global,
    /// Among one producer's messages read from one partition by one consumer process, in
    /// the producer's publish order: Kafka's ordering promise (with idempotence, or one
    /// request in flight). A consumer that restarts and reads the log again starts afresh.
    ProducerPartition,
}

impl OrderScope {
    pub const ALL: [OrderScope; 5] = [
        OrderScope::Producer,
        OrderScope::Key,
        OrderScope::Partition,
        OrderScope::Global,
        OrderScope::ProducerPartition,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            OrderScope::Producer => "producer",
            OrderScope::Key => "key",
            OrderScope::Partition => "partition",
            OrderScope::Global => "global",
            OrderScope::ProducerPartition => "producer-partition",
        }
    }

    pub fn parse(text: &str) -> Option<OrderScope> {
        OrderScope::ALL.into_iter().find(|s| s.name() == text)
    }
}

/// One kind per scope, all named `reorder` (the anomaly's detail names its scope): each
/// `ordered(scope)` property is broken by its own scope's reorders only.
pub const fn kind(scope: OrderScope) -> AnomalyKind {
    AnomalyKind::message("reorder").scoped(scope.name())
}

pub const KINDS: [AnomalyKind; 5] = [
    kind(OrderScope::Producer),
    kind(OrderScope::Key),
    kind(OrderScope::Partition),
    kind(OrderScope::Global),
    kind(OrderScope::ProducerPartition),
];

pub const CHECKER: Checker = Checker {
    kinds: &KINDS,
    runs: Runs::PerGroup,
    check: every_scope_into,
};

pub fn check(history: &History, scope: OrderScope) -> Vec<Anomaly> {
    check_indexed(history, &PublishIndex::build(history), scope)
}

/// Every scope's reorders, scope by scope in `OrderScope::ALL` order.
pub fn check_every_scope(history: &History, index: &PublishIndex) -> Vec<Anomaly> {
    let mut anomalies = Vec::new();
    every_scope_into(history, index, &mut |anomaly| anomalies.push(anomaly));
    anomalies
}

/// Every scope's reorders handed to `found` one by one: a swarm run finds hundreds of
/// thousands, which `check_all` counts without keeping.
fn every_scope_into(history: &History, index: &PublishIndex, found: &mut dyn FnMut(Anomaly)) {
    for scope in OrderScope::ALL {
        scan(history, index, scope, found);
    }
}

#[derive(Clone, Copy)]
struct Latest {
    order: u64,
    id: MsgId,
    time: SimTime,
    event: usize,
}

pub fn check_indexed(history: &History, index: &PublishIndex, scope: OrderScope) -> Vec<Anomaly> {
    let mut anomalies = Vec::new();
    scan(history, index, scope, &mut |anomaly| anomalies.push(anomaly));
    anomalies
}

/// One scope's reorders, handed to `found` in the order of the deliveries that make them.
fn scan(history: &History, index: &PublishIndex, scope: OrderScope, found: &mut dyn FnMut(Anomaly)) {
    if scope == OrderScope::ProducerPartition {
        return check_producer_partition(history, index, found);
    }
    let groups = match scope {
        OrderScope::Producer => index.producer_count(),
        OrderScope::Key => index.key_count(),
        OrderScope::Global => 1,
        OrderScope::Partition | OrderScope::ProducerPartition => 0, // grown as they appear
    };
    let mut latest: Vec<Option<Latest>> = vec![None; groups];
    let mut partitions: BTreeMap<&str, usize> = BTreeMap::new();
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
            OrderScope::ProducerPartition => unreachable!("checked on its own above"),
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
                found(Anomaly {
                    kind: kind(scope),
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
}

/// The producer-partition scope: per (consumer, producer, partition), in the producer's
/// publish order; a fault on a consumer's host ends its incarnation and its groups with it
/// (a restarted Kafka consumer reads its partitions again from its position, which is
/// redelivery, not reordering), and so does a new consumer group assignment (the member
/// starts again from the group's committed offsets).
fn check_producer_partition(history: &History, index: &PublishIndex, found: &mut dyn FnMut(Anomaly)) {
    // (consumer, producer, partition) -> the latest read: its seq, message, time and host.
    type Group<'a> = (&'a str, u32, &'a str);
    type Read<'a> = (u64, MsgId, SimTime, &'a str);
    let mut latest: BTreeMap<Group<'_>, Read<'_>> = BTreeMap::new();
    for event in history.events() {
        let restarted = super::positions::reads_restart(event);
        if !restarted.is_empty() {
            latest.retain(|(consumer, _, _), _| !restarted.contains(consumer));
            continue;
        }
        let (id, consumer, partition) = match &event.kind {
            EventKind::Deliver {
                id,
                consumer,
                partition: Some(partition),
                ..
            } => (*id, consumer.as_str(), partition.as_str()),
            _ => continue,
        };
        let Some(info) = index.get(id) else {
            continue; // phantom
        };
        let group = (consumer, info.producer_index, partition);
        match latest.get(&group).copied() {
            Some((prior_seq, prior_id, prior_time, prior_host)) if info.seq < prior_seq => {
                found(Anomaly {
                    kind: kind(OrderScope::ProducerPartition),
                    id,
                    times: vec![prior_time, event.time],
                    hosts: vec![prior_host.into(), event.host.clone()],
                    detail: format!(
                        "producer-partition scope: {consumer} read it from {partition} after {prior_id}, \
                         which {} published later",
                        info.producer
                    ),
                });
            }
            Some((prior_seq, ..)) if info.seq == prior_seq => {}
            _ => {
                latest.insert(group, (info.seq, id, event.time, &event.host));
            }
        }
    }
}
