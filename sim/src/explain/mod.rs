//! Elle-style explanations: for each anomaly, the chain of recorded events that made it, in
//! words. A duplicate says where each copy was applied and why the message came back (the
//! acknowledgement that was sent and the fault standing on its link then, the timeout or
//! requeue the broker noted, the publish the producer retried); a loss says where the
//! acknowledged message was last seen and the fault that can have erased it.
//!
//! **Boundary:** like the checkers, an explanation reads only the history (faults, notes and
//! the message's own events), never a model's live state. When the history does not say why,
//! the explanation says what is known and that nothing recorded explains the rest.
//!
//! One file per anomaly family: `duplicate.rs` (duplicate effects, deliveries, log
//! duplicates), `loss.rs` (lost, unseen, lost writes), `order.rs` (reorders, non-monotonic
//! reads, poll skips, inconsistent offsets), `txn.rs` (aborted reads, torn and partial
//! transactions), `state.rs` (invariants, phantoms); `window.rs` reads the fault windows,
//! `trail.rs` says a message's own events and `cause.rs` finds what stood between two moments;
//! `by_message.rs` indexes each message's events.
#![deny(clippy::too_many_lines)]

mod by_message;
mod cause;
mod duplicate;
mod loss;
mod order;
mod state;
mod trail;
mod txn;
mod window;

#[cfg(test)]
mod tests;

pub use window::FaultWindow;

use crate::checker::{self, Anomaly, AnomalyKind, Findings};
use crate::history::{Event, EventKind, History, MsgId};
use serde::Serialize;
use std::fmt::Write;

/// Steps an explanation lists at most; a last step counts what was left out.
pub const STEPS_MAX: usize = 16;

/// One recorded event in words, at its simulated time on the host that saw it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    pub t_us: u64,
    pub host: String,
    pub text: String,
    /// The history index of the event the step says (for the HTML report's diagram).
    #[serde(skip)]
    pub event: Option<usize>,
}

/// Why an anomaly happened: a one-line summary and the chain of events, earliest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Explanation {
    pub summary: String,
    pub steps: Vec<Step>,
}

/// An anomaly with its explanation: what `--json` and the reports carry per finding.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explained {
    #[serde(flatten)]
    pub anomaly: Anomaly,
    pub explanation: Explanation,
}

/// Simulated microseconds as milliseconds, the one unit human output uses.
pub fn ms(t_us: u64) -> String {
    if t_us % 1000 == 0 {
        format!("{} ms", t_us / 1000)
    } else {
        format!("{:.3} ms", t_us as f64 / 1000.0)
    }
}

impl Explanation {
    /// Every host a step names, first mention first (the hosts of a cited fault too).
    pub fn hosts(&self, events: &[Event]) -> Vec<String> {
        let mut hosts: Vec<String> = Vec::new();
        for step in &self.steps {
            let cited = step.event.and_then(|i| events.get(i));
            let fault_hosts = match cited.map(|e| &e.kind) {
                Some(EventKind::Fault { hosts, .. }) => hosts.clone(),
                _ => Vec::new(),
            };
            for host in std::iter::once(&step.host).chain(&fault_hosts) {
                if !host.is_empty() && !hosts.contains(host) {
                    hosts.push(host.clone());
                }
            }
        }
        hosts
    }

    /// The summary and one line per step, each indented by `indent`.
    pub fn render(&self, indent: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{indent}why: {}", self.summary);
        for step in &self.steps {
            let _ = writeln!(
                out,
                "{indent}  {:>12}  {:<10} {}",
                ms(step.t_us),
                step.host,
                step.text
            );
        }
        out
    }

    /// An explanation from steps gathered in any order: sorted by time (stable), each cited
    /// event said once.
    fn new(summary: String, mut steps: Vec<Step>) -> Explanation {
        steps.sort_by_key(|s| s.t_us);
        let mut cited = std::collections::BTreeSet::new();
        steps.retain(|s| s.event.is_none_or(|i| cited.insert(i)));
        Explanation { summary, steps }
    }

    fn cap(&mut self) {
        if self.steps.len() > STEPS_MAX {
            let left = self.steps.len() - (STEPS_MAX - 1);
            self.steps.truncate(STEPS_MAX - 1);
            let last = self.steps.last().map_or(0, |s| s.t_us);
            self.steps.push(Step {
                t_us: last,
                host: String::new(),
                text: format!("... {left} more step(s) left out"),
                event: None,
            });
        }
    }
}

/// The family of explanation an anomaly kind gets; `None` for a kind no family knows (the
/// registry tests fail on one).
pub fn family(kind: AnomalyKind) -> Option<&'static str> {
    use checker::*;
    let reorder = reorder::KINDS.contains(&kind);
    Some(match kind {
        _ if reorder => "order",
        k if k == duplicate_effect::DUPLICATE_EFFECT || k == duplicate_delivery::DUPLICATE_DELIVERY => {
            "duplicate"
        }
        k if k == log_duplicate::LOG_DUPLICATE => "duplicate",
        k if k == lost::LOST || k == unseen::UNSEEN || k == lost_write::LOST_WRITE => "loss",
        k if k == nonmonotonic_read::NONMONOTONIC_READ || k == poll_skip::POLL_SKIP => "order",
        k if k == inconsistent_offsets::INCONSISTENT_OFFSETS => "order",
        k if k == aborted_read::ABORTED_READ || k == torn_transaction::TORN_TRANSACTION => "txn",
        k if k == partial::PARTIAL_TRANSACTION || k == write_cycle::WRITE_CYCLE => "txn",
        k if k == invariant::INVARIANT || k == phantom::PHANTOM => "state",
        _ => return None,
    })
}

/// What every explanation reads, built once per history: the fault windows, each message's
/// events, and the declared consumer groups.
pub struct Explainer<'a> {
    events: &'a [Event],
    windows: Vec<FaultWindow>,
    by_msg: by_message::ByMessage,
    /// (consumer, group) pairs, when the history declares groups.
    groups: Vec<(String, String)>,
}

impl<'a> Explainer<'a> {
    pub fn new(history: &'a History) -> Explainer<'a> {
        let events = history.events();
        let mut groups = Vec::new();
        for event in events {
            if let EventKind::Groups { members } = &event.kind {
                groups.clone_from(members);
            }
        }
        Explainer {
            events,
            windows: window::windows(events),
            by_msg: by_message::ByMessage::build(events),
            groups,
        }
    }

    /// The explanation of one anomaly found in this history.
    pub fn explain(&self, anomaly: &Anomaly) -> Explanation {
        let mut explanation = match family(anomaly.kind) {
            Some("duplicate") => duplicate::explain(self, anomaly),
            Some("loss") => loss::explain(self, anomaly),
            Some("order") => order::explain(self, anomaly),
            Some("txn") => txn::explain(self, anomaly),
            _ => state::explain(self, anomaly),
        };
        explanation.cap();
        explanation
    }

    /// The group an anomaly was judged in (`[group] ` before its detail), if any.
    fn group_of(&self, anomaly: &Anomaly) -> Option<String> {
        let rest = anomaly.detail.strip_prefix('[')?;
        let (group, _) = rest.split_once("] ")?;
        self.groups
            .iter()
            .any(|(_, g)| g == group)
            .then(|| group.to_string())
    }

    /// The indexes of a message's events, keeping only `group`'s consumers' deliveries,
    /// effects and acks when a group is given (as the checker judged it).
    fn message(&self, id: MsgId, group: Option<&str>) -> Vec<usize> {
        self.by_msg
            .get(id)
            .iter()
            .map(|&i| i as usize)
            .filter(|&i| match (&self.events[i].kind, group) {
                (
                    EventKind::Deliver { consumer, .. }
                    | EventKind::Effect { consumer, .. }
                    | EventKind::Ack { consumer, .. },
                    Some(group),
                ) => self.groups.iter().any(|(c, g)| c == consumer && g == group),
                _ => true,
            })
            .collect()
    }

    fn event(&self, i: usize) -> &'a Event {
        &self.events[i]
    }

    /// What was pending when the drain budget ran out, if it did.
    fn drain_timeout(&self) -> Option<&'a str> {
        self.events.iter().rev().find_map(|e| match &e.kind {
            EventKind::Phase {
                phase: crate::history::Phase::DrainTimeout,
                detail,
            } => Some(detail.as_str()),
            _ => None,
        })
    }

    /// The events at the anomaly's witness moments (time and host) about one of `ids`.
    fn witnesses(&self, anomaly: &Anomaly, ids: &[MsgId]) -> Vec<usize> {
        let mut found = Vec::new();
        for (time, host) in anomaly.times.iter().zip(&anomaly.hosts) {
            let start = self.events.partition_point(|e| e.time < *time);
            for (i, event) in self.events.iter().enumerate().skip(start) {
                if event.time != *time {
                    break;
                }
                let about = event.kind.msg_id().is_some_and(|id| ids.contains(&id));
                if about && event.host == *host && !found.contains(&i) {
                    found.push(i);
                }
            }
        }
        found.sort_unstable();
        found
    }
}

/// An anomaly's detail without the `[group] ` its checker run put before it.
fn bare_detail(anomaly: &Anomaly) -> &str {
    match anomaly
        .detail
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
    {
        Some((_, detail)) => detail,
        None => &anomaly.detail,
    }
}

/// The message ids an anomaly's detail names besides its own (`after m7`, `though m3`).
fn named_ids(anomaly: &Anomaly) -> Vec<MsgId> {
    bare_detail(anomaly)
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter_map(|word| word.strip_prefix('m')?.parse().ok().map(MsgId))
        .filter(|id| *id != anomaly.id)
        .collect()
}

/// Explains every anomaly of `findings` (in `Findings::iter` order), sharing one
/// `Explainer`.
pub fn explain_all(history: &History, findings: &Findings) -> Vec<Explained> {
    let explainer = Explainer::new(history);
    findings
        .iter()
        .map(|anomaly| Explained {
            anomaly: anomaly.clone(),
            explanation: explainer.explain(anomaly),
        })
        .collect()
}

/// Explains one anomaly (building the history's index: use [`Explainer`] for many).
pub fn explain(history: &History, anomaly: &Anomaly) -> Explanation {
    Explainer::new(history).explain(anomaly)
}
