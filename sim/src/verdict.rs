//! Properties built on the checkers, verdicts, "sometimes" counters and expectations.
//!
//! A verdict separates three things: **safety** (something bad happened: a loss, a duplicate,
//! a reorder, a phantom), **liveness** (something owed never happened before the drain budget
//! ran out: `unseen`), and **crash** (a model panicked and the run stopped, with its seed; or a
//! simulated program exited abnormally, with its exit status and panic message).

use crate::checker::aborted_read::ABORTED_READ;
use crate::checker::duplicate_delivery::DUPLICATE_DELIVERY;
use crate::checker::duplicate_effect::DUPLICATE_EFFECT;
use crate::checker::inconsistent_offsets::INCONSISTENT_OFFSETS;
use crate::checker::invariant::INVARIANT;
use crate::checker::log_duplicate::LOG_DUPLICATE;
use crate::checker::lost::LOST;
use crate::checker::lost_write::LOST_WRITE;
use crate::checker::nonmonotonic_read::NONMONOTONIC_READ;
use crate::checker::partial::PARTIAL_TRANSACTION;
use crate::checker::phantom::PHANTOM;
use crate::checker::poll_skip::POLL_SKIP;
use crate::checker::torn_transaction::TORN_TRANSACTION;
use crate::checker::unseen::UNSEEN;
use crate::checker::write_cycle::WRITE_CYCLE;
use crate::checker::{reorder, Anomaly, AnomalyKind, Findings, OrderScope};
use crate::history::{EventKind, History, SimTime};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Property {
    /// No acknowledged publish was lost (safety only; `unseen` does not count).
    NoLoss,
    /// Every acknowledged publish was processed at least once: no loss, and the run drained.
    AtLeastOnce,
    /// No message's side effect was applied twice.
    AtMostOnce,
    /// At-least-once and at-most-once, and nothing processed that was never published.
    ExactlyOnce,
    /// No message was delivered twice (stricter than at-most-once effects).
    NoDuplicateDelivery,
    /// Nothing delivered that was never published, or only published with `fail`.
    NoPhantom,
    /// Every observed invariant kept its value (e.g. transfers neither create nor destroy money).
    Conserved,
    /// Every transaction that wrote part of a message's effect wrote all of it.
    Atomic,
    Ordered(OrderScope),
    /// Every offset of a log holds one message (log-based designs).
    ConsistentOffsets,
    /// No message is in a log twice (log-based designs).
    NoLogDuplicate,
    /// A consumer process never reads a partition backwards (log-based designs).
    MonotonicReads,
    /// Committed producer transactions' writes fit one serial order (no G0).
    NoWriteCycle,
}

/// One row of the property table: what a property means and which anomaly kinds break it.
#[derive(Clone, Copy, Debug)]
pub struct PropertyRule {
    pub property: Property,
    pub describe: &'static str,
    /// Kinds whose anomalies are safety violations of the property.
    pub safety: &'static [AnomalyKind],
    /// Kinds whose anomalies are liveness violations (owed, not seen before the drain budget
    /// ran out).
    pub liveness: &'static [AnomalyKind],
}

const fn rule(
    property: Property,
    describe: &'static str,
    safety: &'static [AnomalyKind],
    liveness: &'static [AnomalyKind],
) -> PropertyRule {
    PropertyRule {
        property,
        describe,
        safety,
        liveness,
    }
}

/// The property table, in report order: the one place properties meet anomaly kinds.
/// `Verdicts::judge` reads nothing else, and `Property::ALL` is its first column.
pub const PROPERTIES: [PropertyRule; 17] = [
    rule(
        Property::NoLoss,
        "no acknowledged publish was lost (checker: lost; lost-write where the log moved past it)",
        &[LOST, LOST_WRITE],
        &[],
    ),
    rule(
        Property::AtLeastOnce,
        "every acknowledged publish was processed (lost, lost-write, unseen)",
        &[LOST, LOST_WRITE],
        &[UNSEEN],
    ),
    rule(
        Property::AtMostOnce,
        "no side effect applied twice (duplicate-effect)",
        &[DUPLICATE_EFFECT],
        &[],
    ),
    rule(
        Property::ExactlyOnce,
        "at-least-once, at-most-once, atomic, no phantoms (lost, lost-write, unseen, \
         duplicate-effect, partial-transaction, phantom)",
        &[LOST, LOST_WRITE, DUPLICATE_EFFECT, PARTIAL_TRANSACTION, PHANTOM],
        &[UNSEEN],
    ),
    rule(
        Property::NoDuplicateDelivery,
        "no message delivered twice (duplicate-delivery)",
        &[DUPLICATE_DELIVERY],
        &[],
    ),
    rule(
        Property::NoPhantom,
        "nothing delivered that was not published (phantom)",
        &[PHANTOM],
        &[],
    ),
    rule(
        Property::Conserved,
        "observed invariants keep their value, e.g. the ledger total (invariant)",
        &[INVARIANT],
        &[],
    ),
    rule(
        Property::Atomic,
        "no transaction committed part of a message's effect (partial-transaction), no \
         message of an aborted producer transaction delivered (aborted-read), no committed \
         one delivered in part (torn-transaction)",
        &[PARTIAL_TRANSACTION, ABORTED_READ, TORN_TRANSACTION],
        &[],
    ),
    rule(
        Property::Ordered(OrderScope::Producer),
        "deliveries follow each producer's publish order (reorder)",
        &[reorder::kind(OrderScope::Producer)],
        &[],
    ),
    rule(
        Property::Ordered(OrderScope::Key),
        "deliveries follow publish order per key (reorder)",
        &[reorder::kind(OrderScope::Key)],
        &[],
    ),
    rule(
        Property::Ordered(OrderScope::Partition),
        "deliveries follow publish order per partition (reorder)",
        &[reorder::kind(OrderScope::Partition)],
        &[],
    ),
    rule(
        Property::Ordered(OrderScope::Global),
        "deliveries follow the global publish order (reorder)",
        &[reorder::kind(OrderScope::Global)],
        &[],
    ),
    rule(
        Property::Ordered(OrderScope::ProducerPartition),
        "each consumer process reads a producer's messages of a partition in publish order (reorder)",
        &[reorder::kind(OrderScope::ProducerPartition)],
        &[],
    ),
    rule(
        Property::ConsistentOffsets,
        "every offset of a partition holds one message, by acks and reads (inconsistent-offsets)",
        &[INCONSISTENT_OFFSETS],
        &[],
    ),
    rule(
        Property::NoLogDuplicate,
        "no message sits at two offsets of the log (log-duplicate)",
        &[LOG_DUPLICATE],
        &[],
    ),
    rule(
        Property::MonotonicReads,
        "a consumer process reads each partition forwards only, skipping no offset known to hold a \
         message, within one incarnation and assignment (nonmonotonic-read, poll-skip)",
        &[NONMONOTONIC_READ, POLL_SKIP],
        &[],
    ),
    rule(
        Property::NoWriteCycle,
        "committed producer transactions' writes are in one order in every partition (write-cycle, \
         Elle's G0; Kafka allows it)",
        &[WRITE_CYCLE],
        &[],
    ),
];

/// Kinds a registered checker finds that no property judges: they stay in `Findings` (and a
/// replay's findings) without breaking anything. None yet; a checker added ahead of its
/// property lists its kinds here, and the registry tests accept nothing else.
pub const INFORMATIONAL: &[AnomalyKind] = &[];

impl Property {
    /// Every property, in the property table's order.
    pub const ALL: [Property; PROPERTIES.len()] = {
        let mut all = [Property::NoLoss; PROPERTIES.len()];
        let mut row = 0;
        while row < PROPERTIES.len() {
            all[row] = PROPERTIES[row].property;
            row += 1;
        }
        all
    };

    pub fn name(self) -> String {
        match self {
            Property::NoLoss => "no-loss".into(),
            Property::AtLeastOnce => "at-least-once".into(),
            Property::AtMostOnce => "at-most-once".into(),
            Property::ExactlyOnce => "exactly-once".into(),
            Property::NoDuplicateDelivery => "no-duplicate-delivery".into(),
            Property::NoPhantom => "no-phantom".into(),
            Property::Conserved => "conserved".into(),
            Property::Atomic => "atomic".into(),
            Property::Ordered(scope) => format!("ordered({})", scope.name()),
            Property::ConsistentOffsets => "consistent-offsets".into(),
            Property::NoLogDuplicate => "no-log-duplicate".into(),
            Property::MonotonicReads => "monotonic-reads".into(),
            Property::NoWriteCycle => "no-write-cycle".into(),
        }
    }

    pub fn names() -> Vec<String> {
        Property::ALL.iter().map(|p| p.name()).collect()
    }

    pub fn parse(text: &str) -> Option<Property> {
        Property::ALL.into_iter().find(|p| p.name() == text)
    }

    /// This property's row of the property table.
    pub fn rule(self) -> &'static PropertyRule {
        PROPERTIES
            .iter()
            .find(|rule| rule.property == self)
            .expect("Property::ALL is the table's first column")
    }

    pub fn describe(self) -> &'static str {
        self.rule().describe
    }

    /// The (safety, liveness) anomalies that break this property, kind by kind in the
    /// table's order.
    fn anomalies(self, findings: &Findings) -> (Vec<&Anomaly>, Vec<&Anomaly>) {
        let rule = self.rule();
        let of = |kinds: &[AnomalyKind]| kinds.iter().flat_map(|kind| findings.get(*kind)).collect();
        (of(rule.safety), of(rule.liveness))
    }
}

impl fmt::Display for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for Property {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expectation {
    Holds,
    Violated,
}

impl Expectation {
    pub fn parse(text: &str) -> Option<Expectation> {
        match text {
            "holds" => Some(Expectation::Holds),
            "violated" => Some(Expectation::Violated),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PropertyVerdict {
    pub property: Property,
    pub holds: bool,
    /// Anomalies that are safety violations.
    pub safety: Vec<Anomaly>,
    /// Anomalies that are liveness violations (owed, not seen before the drain budget ran out).
    pub liveness: Vec<Anomaly>,
    /// How many safety anomalies there were: `safety` keeps at most
    /// `checker::WITNESSES_PER_KIND_MAX` of each kind.
    pub safety_count: usize,
    /// How many liveness anomalies there were, kept in `liveness` or not.
    pub liveness_count: usize,
    /// The earliest time any of its anomalies names, kept or not (what promises read).
    #[serde(skip)]
    pub earliest: Option<SimTime>,
}

impl PropertyVerdict {
    /// Every anomaly found against it, safety and liveness, kept as a witness or not.
    pub fn anomaly_count(&self) -> usize {
        self.safety_count + self.liveness_count
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdicts {
    pub properties: Vec<PropertyVerdict>,
    /// Whether the design drained (everything owed was delivered) within the budget.
    pub drained: bool,
    /// When it did not: what the design still had pending (a liveness verdict).
    pub pending: Option<String>,
    /// A model panic or host failure, if the run crashed; or the first simulated program that
    /// exited abnormally (`<host> exited with status <n>: <message>`).
    pub crash: Option<String>,
    /// "Sometimes" counters: how often each fault, outcome and model note occurred.
    pub counters: BTreeMap<String, u64>,
}

impl Verdicts {
    pub fn judge(history: &History, findings: &Findings) -> Verdicts {
        let crash = history.events().iter().find_map(|e| match &e.kind {
            EventKind::Crash {
                message,
                exit_status: None,
            } => Some(message.clone()),
            EventKind::Crash {
                message,
                exit_status: Some(status),
            } => Some(format!("{} exited with status {status}: {message}", e.host)),
            _ => None,
        });
        let properties = Property::ALL
            .iter()
            .map(|&property| {
                let (safety, liveness) = property.anomalies(findings);
                let rule = property.rule();
                let count = |kinds: &[AnomalyKind]| kinds.iter().map(|kind| findings.count(*kind)).sum();
                let earliest = rule
                    .safety
                    .iter()
                    .chain(rule.liveness)
                    .filter_map(|kind| findings.earliest(*kind))
                    .min();
                PropertyVerdict {
                    property,
                    holds: safety.is_empty() && liveness.is_empty(),
                    safety: safety.into_iter().cloned().collect(),
                    liveness: liveness.into_iter().cloned().collect(),
                    safety_count: count(rule.safety),
                    liveness_count: count(rule.liveness),
                    earliest,
                }
            })
            .collect();
        Verdicts {
            properties,
            drained: history.drained(),
            pending: history.drain_timeout().map(str::to_string),
            crash,
            counters: counters(history),
        }
    }

    pub fn get(&self, property: Property) -> &PropertyVerdict {
        self.properties
            .iter()
            .find(|v| v.property == property)
            .expect("every property is judged")
    }

    /// Every expectation of the scenario that this run does not meet, as one line each.
    pub fn unmet(&self, expect: &crate::scenario::Expect) -> Vec<String> {
        let mut unmet = Vec::new();
        match (&self.crash, expect.crash) {
            (Some(message), false) => unmet.push(format!("crash: the model crashed: {message}")),
            (None, true) => unmet.push("crash: expected a crash, none happened".to_string()),
            _ => {}
        }
        if let (Some(pending), true, None) = (&self.pending, expect.drains, &self.crash) {
            unmet.push(format!(
                "liveness: the run did not drain within run.drain_ms; pending: {pending}"
            ));
        }
        if self.drained && !expect.drains {
            unmet.push("liveness: expected the run not to drain, but it drained".to_string());
        }
        for (property, expectation) in &expect.properties {
            let verdict = self.get(*property);
            let met = match expectation {
                Expectation::Holds => verdict.holds,
                Expectation::Violated => !verdict.holds,
            };
            if !met {
                let first = verdict
                    .safety
                    .iter()
                    .chain(&verdict.liveness)
                    .next()
                    .map(|a| format!("; first: {a}"))
                    .unwrap_or_default();
                unmet.push(format!(
                    "{property}: expected {}, but it {}{first}",
                    match expectation {
                        Expectation::Holds => "holds",
                        Expectation::Violated => "violated",
                    },
                    if verdict.holds { "held" } else { "was violated" }
                ));
            }
        }
        for counter in &expect.sometimes {
            if self.counters.get(counter).copied().unwrap_or(0) == 0 {
                unmet.push(format!(
                    "sometimes {counter}: never happened, so the fault path did not run"
                ));
            }
        }
        unmet
    }
}

/// Counts of what happened, read from the history: `fault.<action>`, `publish.<outcome>`,
/// `deliver`, `deliver.redelivery` (attempt > 1), `effect`, `ack`, `note.<name>`, `crash`.
pub fn counters(history: &History) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut bump = |name: &str| {
        if let Some(count) = counts.get_mut(name) {
            *count += 1;
        } else {
            counts.insert(name.to_string(), 1);
        }
    };
    for event in history.events() {
        match &event.kind {
            EventKind::Publish { .. } => bump("publish"),
            EventKind::PublishOk { .. } => bump("publish.ok"),
            EventKind::PublishFail { .. } => bump("publish.fail"),
            EventKind::PublishInfo { .. } => bump("publish.info"),
            EventKind::Deliver { attempt, .. } => {
                bump("deliver");
                if *attempt > 1 {
                    bump("deliver.redelivery");
                }
            }
            EventKind::Effect { .. } => bump("effect"),
            EventKind::Ack { .. } => bump("ack"),
            EventKind::Write { .. } => bump("write"),
            EventKind::Fault { action, .. } => bump(&format!("fault.{action}")),
            EventKind::Note { name, .. } => bump(&format!("note.{name}")),
            EventKind::Observe { .. } => bump("observe"),
            EventKind::Crash { .. } => bump("crash"),
            EventKind::Phase { .. }
            | EventKind::EffectParts { .. }
            | EventKind::Gauge { .. }
            | EventKind::Groups { .. } => {}
        }
    }
    counts
}
