//! Checkers: pure functions over a [`History`], one file each.
//!
//! **Invariant:** a checker reads only the history. Each returns anomalies with a witness
//! (message id, simulated times, hosts) that a person can find in `jetsam replay`.
//!
//! "Processed" means the consumer's side effect was recorded (`effect`); "delivered" means the
//! consumer received the message (`deliver`).

pub mod duplicate_delivery;
pub mod duplicate_effect;
pub mod invariant;
pub mod lost;
pub mod partial;
pub mod phantom;
pub mod reorder;
pub mod unseen;

mod index;

pub use index::{Outcome, PublishIndex, PublishInfo};

use crate::history::{History, MsgId, SimTime};
use serde::Serialize;
use std::fmt;

/// How many occurrences a witness lists before it only counts.
pub const WITNESS_OCCURRENCES_MAX: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnomalyKind {
    /// An acknowledged publish was never processed, and the run drained.
    Lost,
    /// An acknowledged publish was not processed, but the run did not drain.
    Unseen,
    DuplicateDelivery,
    DuplicateEffect,
    Reorder,
    /// Delivered but never published, or published only with `fail`.
    Phantom,
    /// A value that must stay constant (an `observe` event) changed, e.g. money created or
    /// destroyed by transfers.
    Invariant,
    /// A transaction committed part of a message's effect, not all of it.
    PartialTransaction,
}

impl AnomalyKind {
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::Lost => "lost",
            AnomalyKind::Unseen => "unseen",
            AnomalyKind::DuplicateDelivery => "duplicate-delivery",
            AnomalyKind::DuplicateEffect => "duplicate-effect",
            AnomalyKind::Reorder => "reorder",
            AnomalyKind::Phantom => "phantom",
            AnomalyKind::Invariant => "invariant",
            AnomalyKind::PartialTransaction => "partial-transaction",
        }
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One anomaly and its witness.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    pub id: MsgId,
    /// The simulated times of the events that make the anomaly, earliest first.
    pub times: Vec<SimTime>,
    /// The hosts those events were observed on, in the same order as `times`.
    pub hosts: Vec<String>,
    pub detail: String,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == AnomalyKind::Invariant {
            write!(f, "{}: {}", self.kind, self.detail)?;
        } else {
            write!(f, "{} {}: {}", self.kind, self.id, self.detail)?;
        }
        let at: Vec<String> = self
            .times
            .iter()
            .zip(&self.hosts)
            .map(|(t, h)| format!("{}@{}", t.0, h))
            .collect();
        if !at.is_empty() {
            write!(f, " [t_us@host: {}]", at.join(", "))?;
        }
        Ok(())
    }
}

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
}

impl OrderScope {
    pub const ALL: [OrderScope; 4] = [
        OrderScope::Producer,
        OrderScope::Key,
        OrderScope::Partition,
        OrderScope::Global,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OrderScope::Producer => "producer",
            OrderScope::Key => "key",
            OrderScope::Partition => "partition",
            OrderScope::Global => "global",
        }
    }

    pub fn parse(text: &str) -> Option<OrderScope> {
        OrderScope::ALL.into_iter().find(|s| s.name() == text)
    }
}

/// The output of every checker over one history.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Findings {
    pub lost: Vec<Anomaly>,
    pub unseen: Vec<Anomaly>,
    pub duplicate_delivery: Vec<Anomaly>,
    pub duplicate_effect: Vec<Anomaly>,
    pub phantom: Vec<Anomaly>,
    pub invariant: Vec<Anomaly>,
    pub partial: Vec<Anomaly>,
    /// Indexed like [`OrderScope::ALL`].
    pub reorder: [Vec<Anomaly>; 4],
}

impl Findings {
    pub fn reorder(&self, scope: OrderScope) -> &[Anomaly] {
        let slot = OrderScope::ALL
            .iter()
            .position(|s| *s == scope)
            .expect("every scope is in ALL");
        &self.reorder[slot]
    }
}

/// Runs every checker, sharing one publish index. When the history declares consumer groups
/// (`groups`: NSQ channels, each owed a copy of every message), the message checkers judge
/// each group on its own history (publishes, faults and everything else, with only that
/// group's consumers' deliveries, effects and acks), and each anomaly names its group.
pub fn check_all(history: &History) -> Findings {
    let mut findings = match groups(history) {
        Some(groups) if groups.len() > 1 => {
            let mut all = Findings::default();
            for (group, members) in groups {
                let projected = project(history, &members);
                let mut found = check_messages(&projected);
                let tag = |list: &mut Vec<Anomaly>| {
                    for anomaly in list.iter_mut() {
                        anomaly.detail = format!("[{group}] {}", anomaly.detail);
                    }
                };
                tag(&mut found.lost);
                tag(&mut found.unseen);
                tag(&mut found.duplicate_delivery);
                tag(&mut found.duplicate_effect);
                tag(&mut found.phantom);
                found.reorder.iter_mut().for_each(tag);
                all.lost.extend(found.lost);
                all.unseen.extend(found.unseen);
                all.duplicate_delivery.extend(found.duplicate_delivery);
                all.duplicate_effect.extend(found.duplicate_effect);
                all.phantom.extend(found.phantom);
                for (into, from) in all.reorder.iter_mut().zip(found.reorder) {
                    into.extend(from);
                }
            }
            all
        }
        _ => check_messages(history),
    };
    findings.invariant = invariant::check(history);
    findings.partial = partial::check(history);
    findings
}

fn check_messages(history: &History) -> Findings {
    let index = PublishIndex::build(history);
    Findings {
        lost: lost::check_indexed(history, &index),
        unseen: unseen::check_indexed(history, &index),
        duplicate_delivery: duplicate_delivery::check_indexed(history, &index),
        duplicate_effect: duplicate_effect::check_indexed(history, &index),
        phantom: phantom::check_indexed(history, &index),
        invariant: Vec::new(),
        partial: Vec::new(),
        reorder: OrderScope::ALL.map(|scope| reorder::check_indexed(history, &index, scope)),
    }
}

/// The declared groups and their consumers, in the order first declared.
fn groups(history: &History) -> Option<Vec<(String, Vec<String>)>> {
    let members = history.events().iter().find_map(|e| match &e.kind {
        crate::history::EventKind::Groups { members } => Some(members),
        _ => None,
    })?;
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for (consumer, group) in members {
        match groups.iter_mut().find(|(g, _)| g == group) {
            Some((_, list)) => list.push(consumer.clone()),
            None => groups.push((group.clone(), vec![consumer.clone()])),
        }
    }
    Some(groups)
}

/// The history as one group sees it: other groups' consumers' deliveries, effects and acks
/// left out.
fn project(history: &History, members: &[String]) -> History {
    use crate::history::EventKind;
    let keep = |consumer: &String| members.contains(consumer);
    History::from_events(
        history
            .events()
            .iter()
            .filter(|e| match &e.kind {
                EventKind::Deliver { consumer, .. }
                | EventKind::Effect { consumer, .. }
                | EventKind::Ack { consumer, .. } => keep(consumer),
                _ => true,
            })
            .cloned()
            .collect(),
    )
}

/// Shared by the two "never processed" checkers: acknowledged publishes with no effect.
fn unprocessed(history: &History, index: &PublishIndex, kind: AnomalyKind) -> Vec<Anomaly> {
    let mut processed = vec![false; index.len()];
    let mut delivered = vec![0u32; index.len()];
    for event in history.events() {
        match &event.kind {
            crate::history::EventKind::Effect { id, .. } => {
                if let Some(slot) = index.slot(*id) {
                    processed[slot] = true;
                }
            }
            crate::history::EventKind::Deliver { id, .. } => {
                if let Some(slot) = index.slot(*id) {
                    delivered[slot] += 1;
                }
            }
            _ => {}
        }
    }
    let mut anomalies = Vec::new();
    for (slot, info) in index.entries().iter().enumerate() {
        if info.outcome != Outcome::Ok || processed[slot] {
            continue;
        }
        let ok_time = info.completed.expect("an ok publish has a completion time");
        anomalies.push(Anomaly {
            kind,
            id: info.id,
            times: vec![info.invoked, ok_time],
            hosts: vec![info.host.clone(), info.host.clone()],
            detail: format!(
                "acknowledged to {} at {}us, never processed (delivered {} time(s))",
                info.producer, ok_time.0, delivered[slot]
            ),
        });
    }
    anomalies
}

/// Shared by the two duplicate checkers: published messages seen more than once.
fn repeated(
    history: &History,
    index: &PublishIndex,
    kind: AnomalyKind,
    select: impl Fn(&crate::history::EventKind) -> Option<MsgId>,
    noun: &str,
) -> Vec<Anomaly> {
    // Per slot: occurrences count and first occurrences (bounded witness).
    let mut seen: Vec<u32> = vec![0; index.len()];
    let mut witness: Vec<(usize, SimTime, String)> = Vec::new();
    for event in history.events() {
        let Some(id) = select(&event.kind) else {
            continue;
        };
        let Some(slot) = index.slot(id) else {
            continue; // never published: the phantom checker's business
        };
        seen[slot] += 1;
        if seen[slot] as usize <= WITNESS_OCCURRENCES_MAX {
            witness.push((slot, event.time, event.host.clone()));
        }
    }
    let mut by_slot: std::collections::BTreeMap<usize, Anomaly> = std::collections::BTreeMap::new();
    for (slot, time, host) in witness {
        if seen[slot] < 2 {
            continue;
        }
        let anomaly = by_slot.entry(slot).or_insert_with(|| Anomaly {
            kind,
            id: index.entries()[slot].id,
            times: Vec::new(),
            hosts: Vec::new(),
            detail: format!("{noun} {} times", seen[slot]),
        });
        anomaly.times.push(time);
        anomaly.hosts.push(host);
    }
    by_slot.into_values().collect()
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
