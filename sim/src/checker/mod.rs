//! Checkers: pure functions over a [`History`], one file each.
//!
//! **Invariant:** a checker reads only the history. Each returns anomalies with a witness
//! (message id, simulated times, hosts) that a person can find in `jetsam replay`.
//!
//! "Processed" means the consumer's side effect was recorded (`effect`); "delivered" means the
//! consumer received the message (`deliver`).
//!
//! Adding a checker: write `my_checker.rs` with its kind constants, `check_indexed` and a
//! `pub const CHECKER: Checker` (whose `check` hands `check_indexed`'s anomalies to the sink), then add its module name to `registry!` below. If a property
//! judges its kinds, add them to that property's row in `verdict::PROPERTIES`; otherwise list
//! them in `verdict::INFORMATIONAL`. The tests in `registry_tests.rs` fail until one is done.

mod findings;
pub(crate) mod id_slots;
mod index;
mod positions;
pub mod transactions;

pub use findings::{check_all, Findings};
pub use index::{Outcome, PublishIndex, PublishInfo};
pub use positions::ASSIGNED_NOTE;
pub use reorder::OrderScope;

use crate::history::{History, MsgId, Name, SimTime};
use serde::Serialize;
use std::fmt;

/// Declares each checker's module and registers its `CHECKER`, in the order `check_all` runs
/// them. One name does both, so a checker cannot be written and then forgotten: a module that
/// is declared but not registered would never run, and no test could notice.
macro_rules! registry {
    ($($module:ident),* $(,)?) => {
        $(pub mod $module;)*
        /// Every checker `check_all` runs.
        pub const CHECKERS: &[Checker] = &[$($module::CHECKER),*];
    };
}

registry! {
    lost,
    unseen,
    duplicate_delivery,
    duplicate_effect,
    phantom,
    reorder,
    invariant,
    partial,
    lost_write,
    inconsistent_offsets,
    log_duplicate,
    nonmonotonic_read,
    aborted_read,
    torn_transaction,
    poll_skip,
    write_cycle,
}

/// How many occurrences a witness lists before it only counts.
pub const WITNESS_OCCURRENCES_MAX: usize = 8;

/// How many anomalies of one kind `check_all` keeps as witnesses; past it, it only counts
/// them (and keeps the earliest one's time, which promises read). Reports list far fewer, and
/// the memory of a million-message run stays bounded (issue 14).
pub const WITNESSES_PER_KIND_MAX: usize = 1000;

/// One registered checker: what it finds, over which history, and the pure function that finds it.
#[derive(Clone, Copy, Debug)]
pub struct Checker {
    /// Every kind its anomalies may have; `check_all` asserts it, and the property table and
    /// the registry tests read it.
    pub kinds: &'static [AnomalyKind],
    pub runs: Runs,
    /// A pure function over the history. The index is the one built for that same history
    /// (the group's projection, for `Runs::PerGroup`), shared by all checkers. It hands each
    /// anomaly to the sink as it finds it, so that `check_all` keeps only a bounded number of
    /// witnesses per kind (a swarm run of a million messages finds hundreds of thousands of
    /// reorders) without a checker ever holding them all.
    pub check: fn(&History, &PublishIndex, &mut dyn FnMut(Anomaly)),
}

/// Which history a checker judges when the history declares consumer groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runs {
    /// Once per group, on that group's projection (only its consumers' deliveries, effects
    /// and acks), each anomaly tagged `[group]`: each group is owed every message, so message
    /// checkers judge groups apart. Without groups: once, on the whole history.
    PerGroup,
    /// Once, on the whole history: the checker judges the system's state (observations,
    /// committed transactions), which no single group owns.
    Once,
}

/// What an anomaly is: a stable kebab-case name (what reports, JSON and `Display` show), an
/// optional scope (reorder's four ordering scopes are four kinds named `reorder`), and whether
/// it is about one message.
///
/// A value type rather than an enum so that a checker defines its kinds in its own file
/// (`pub const LOST: AnomalyKind = AnomalyKind::message("lost")`) and adding one (Kafka's
/// offset with two values, non-monotonic reads, aborted reads) touches no shared list. What an
/// enum's exhaustive matches gave is kept by `registry_tests`: no two registered checkers
/// share a kind, every kind the property table names is registered, and every registered kind
/// is judged by a property or listed as informational. Code compares kinds only against the
/// owning checker's constants, never against names it spells itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AnomalyKind {
    name: &'static str,
    scope: Option<&'static str>,
    /// False for anomalies about the system's state (an invariant), whose `id` means nothing.
    names_message: bool,
}

impl AnomalyKind {
    /// A kind of anomaly about one message, which `Display` names.
    pub const fn message(name: &'static str) -> AnomalyKind {
        AnomalyKind {
            name,
            scope: None,
            names_message: true,
        }
    }

    /// A kind of anomaly about the system's state rather than one message.
    pub const fn state(name: &'static str) -> AnomalyKind {
        AnomalyKind {
            name,
            scope: None,
            names_message: false,
        }
    }

    /// The same kind, within one scope (`reorder` in the producer scope).
    pub const fn scoped(self, scope: &'static str) -> AnomalyKind {
        AnomalyKind {
            scope: Some(scope),
            ..self
        }
    }

    /// What reports, JSON and anomaly lines show: the scope is not part of it (the anomaly's
    /// detail says it), so reports read as they did when reorder was one kind.
    pub fn name(self) -> &'static str {
        self.name
    }

    pub fn scope(self) -> Option<&'static str> {
        self.scope
    }

    pub fn names_message(self) -> bool {
        self.names_message
    }

    /// The name with its scope, `reorder(producer)`: unique among registered kinds.
    pub fn key(self) -> String {
        match self.scope {
            Some(scope) => format!("{}({scope})", self.name),
            None => self.name.to_string(),
        }
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl Serialize for AnomalyKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name)
    }
}

/// One anomaly and its witness.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    pub id: MsgId,
    /// The simulated times of the events that make the anomaly, earliest first.
    pub times: Vec<SimTime>,
    /// The hosts those events were observed on, in the same order as `times` (shared
    /// names: a swarm run of a million messages finds hundreds of thousands of reorders).
    pub hosts: Vec<Name>,
    pub detail: String,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind.names_message() {
            write!(f, "{} {}: {}", self.kind, self.id, self.detail)?;
        } else {
            write!(f, "{}: {}", self.kind, self.detail)?;
        }
        let at: Vec<String> = self
            .times
            .iter()
            .zip(&self.hosts)
            .map(|(t, h)| format!("{} ms on {h}", ms_text(*t)))
            .collect();
        if !at.is_empty() {
            write!(f, " [at {}]", at.join(", "))?;
        }
        Ok(())
    }
}

/// A simulated time in milliseconds for people: `973`, or `973.25` when it is not a whole
/// millisecond (human output uses one unit, ms, everywhere).
pub fn ms_text(t: SimTime) -> String {
    let (ms, us) = (t.0 / 1000, t.0 % 1000);
    match us {
        0 => ms.to_string(),
        _ => format!("{ms}.{us:03}").trim_end_matches('0').to_string(),
    }
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
                "acknowledged to {} at {} ms, never processed (delivered {} time(s))",
                info.producer,
                ms_text(ok_time),
                delivered[slot]
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
    // Per slot: occurrences, counted in a first pass so that the second keeps witnesses (the
    // first few occurrences) only of repeated messages, not one per message.
    let mut seen: Vec<u32> = vec![0; index.len()];
    let occurrences = || {
        history.events().iter().filter_map(|event| {
            let id = select(&event.kind)?;
            // Never published: the phantom checker's business.
            Some((index.slot(id)?, event))
        })
    };
    for (slot, _) in occurrences() {
        seen[slot] += 1;
    }
    let mut by_slot: std::collections::BTreeMap<usize, Anomaly> = std::collections::BTreeMap::new();
    for (slot, event) in occurrences() {
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
        if anomaly.times.len() < WITNESS_OCCURRENCES_MAX {
            anomaly.times.push(event.time);
            anomaly.hosts.push(event.host.clone());
        }
    }
    by_slot.into_values().collect()
}

#[cfg(test)]
mod log_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod registry_tests;
#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
