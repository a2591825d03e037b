//! Causes: what the history recorded between two moments on the hosts involved (the faults
//! that stood on them or on the link between them, the notes their software made about
//! timeouts, requeues, retries and reconnects) and, for a message that came back, the
//! acknowledgement that did not take and the publish that was retried.

use super::window::FaultWindow;
use super::{ms, Explainer, Step};
use crate::history::{EventKind, MsgId};

/// Notes cited for one gap at most (distinct names, first occurrence each); more are counted.
pub const NOTES_CITED_MAX: usize = 3;

/// Words in a note's name that say it may explain a message's fate: a timeout, a requeue, a
/// lost connection or acknowledgement, a retry or resend, a rebalance, a truncation, a drop.
const CAUSE_WORDS: &[&str] = &[
    "timeout",
    "timed_out",
    "requeue",
    "lost",
    "retry",
    "resend",
    "resent",
    "resume",
    "reconnect",
    "assigned",
    "revoked",
    "rebalance",
    "gave_up",
    "error",
    "failed",
    "fenced",
    "reset",
    "truncat",
    "unclean",
    "election",
    "drop",
    "discard",
    "overflow",
    "emptied",
    "deleted",
    "quota",
    "abort",
    "skipped",
    "session",
    "exit",
    "seek",
    "duplicate",
    "zero_value",
    "backlog",
    "deadlock",
    "rollback",
    "restored",
    "leader",
    "partial",
    "1205",
    "1213",
    "victim",
];

/// What explains a gap: steps to list and a short phrase for the summary.
#[derive(Default)]
pub struct Cause {
    pub steps: Vec<Step>,
    pub short: Vec<String>,
}

impl Cause {
    pub fn phrase(&self) -> String {
        self.short.join("; ")
    }
}

impl Explainer<'_> {
    /// Faults standing at some moment of `[from_us, to_us]` on any of `hosts`.
    pub(super) fn faults_on(&self, from_us: u64, to_us: u64, hosts: &[&str]) -> Vec<&FaultWindow> {
        self.windows
            .iter()
            .filter(|w| w.overlaps(from_us, to_us) && hosts.iter().any(|h| w.names(h)))
            .collect()
    }

    /// Faults standing at some moment of `[from_us, to_us]` on the link `a`-`b`.
    pub(super) fn faults_on_link(&self, from_us: u64, to_us: u64, a: &str, b: &str) -> Vec<&FaultWindow> {
        self.windows
            .iter()
            .filter(|w| w.overlaps(from_us, to_us) && w.on_link(a, b))
            .collect()
    }

    /// A fault as a step, at the moment it opened.
    pub(super) fn fault_step(&self, window: &FaultWindow) -> Step {
        Step {
            t_us: window.start_us,
            host: window.hosts.first().cloned().unwrap_or_else(|| "jetsam".into()),
            text: format!("FAULT {}", window.describe()),
            event: Some(window.event),
        }
    }

    /// Notes in `[from_us, to_us]` recorded on any of `hosts` whose names say a cause: the
    /// first of each name, at most [`NOTES_CITED_MAX`], and a step counting the rest.
    pub(super) fn notes_on(&self, from_us: u64, to_us: u64, hosts: &[&str]) -> Vec<Step> {
        let start = self.events.partition_point(|e| e.time.0 < from_us);
        let mut names: Vec<&str> = Vec::new();
        let mut steps = Vec::new();
        let mut more = 0usize;
        for (i, event) in self.events.iter().enumerate().skip(start) {
            if event.time.0 > to_us {
                break;
            }
            let EventKind::Note { name, .. } = &event.kind else {
                continue;
            };
            if !hosts.contains(&event.host.as_str()) || !CAUSE_WORDS.iter().any(|w| name.contains(w)) {
                continue;
            }
            if names.contains(&name.as_str()) {
                continue;
            }
            if names.len() == NOTES_CITED_MAX {
                more += 1;
                continue;
            }
            names.push(name);
            steps.push(self.step(i));
        }
        if more > 0 {
            let last = steps.last().map_or(from_us, |s: &Step| s.t_us);
            steps.push(Step {
                t_us: last,
                host: String::new(),
                text: format!("... and {more} other kind(s) of note by then"),
                event: None,
            });
        }
        steps
    }

    /// The faults standing in the gap on `hosts` (or on the link, when both ends are known),
    /// as steps, and the first one in words for the summary.
    pub(super) fn gap_faults(&self, from_us: u64, to_us: u64, ends: (&str, Option<&str>)) -> Cause {
        let faults = match ends {
            (a, Some(b)) if a != b => self.faults_on_link(from_us, to_us, a, b),
            (a, _) => self.faults_on(from_us, to_us, &[a]),
        };
        let link = match ends {
            (a, Some(b)) if a != b => format!("{a}<->{b}"),
            (a, _) => a.to_string(),
        };
        let mut cause = Cause::default();
        match faults.first() {
            Some(first) => cause.short.push(format!("{} stood on {link}", first.describe())),
            None => cause.short.push(format!(
                "no fault stood on {link} between {} and {}",
                ms(from_us),
                ms(to_us)
            )),
        }
        cause.steps.extend(faults.iter().map(|w| self.fault_step(w)));
        cause
    }

    /// What stood between two moments on some hosts (every host's faults that take one down,
    /// for a log rewritten by any broker): faults and notes, or that nothing was recorded.
    pub(super) fn between(&self, from: u64, to: u64, hosts: &[&str], log_wide: bool) -> Cause {
        let mut cause = Cause::default();
        let faults: Vec<_> = self
            .windows
            .iter()
            .filter(|w| w.overlaps(from, to))
            .filter(|w| hosts.iter().any(|h| w.names(h)) || (log_wide && w.takes_down()))
            .collect();
        let notes: Vec<Step> = if log_wide {
            let everyone: Vec<&str> = self
                .events
                .iter()
                .map(|e| e.host.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            self.notes_on(from, to, &everyone)
        } else {
            self.notes_on(from, to, hosts)
        };
        if let Some(fault) = faults.first() {
            cause.short.push(format!(
                "{} stood between {} and {}",
                fault.describe(),
                ms(from),
                ms(to)
            ));
        }
        if let Some(note) = notes.first() {
            cause
                .short
                .push(format!("{} {} at {}", note.host, note.text, ms(note.t_us)));
        }
        if cause.short.is_empty() {
            cause.short.push(format!(
                "no fault stood on {} and nothing was noted between {} and {}",
                hosts.join(","),
                ms(from),
                ms(to)
            ));
        }
        cause.steps.extend(faults.iter().map(|w| self.fault_step(w)));
        cause.steps.extend(notes);
        cause
    }

    /// Why message `id` was seen again at event `next` after event `prev` (deliveries or
    /// effects): a second copy published, an acknowledgement that came too late or did not
    /// take, no acknowledgement at all, or a position that went back.
    pub(super) fn came_back(&self, id: MsgId, prev: usize, next: usize, group: Option<&str>) -> Cause {
        let (p, n) = (self.event(prev), self.event(next));
        let (from, to) = (p.time.0, n.time.0);
        let (consumer, node, offset) = seen_by(&p.kind);
        let (next_consumer, next_node, next_offset) = seen_by(&n.kind);
        let attempt = match &n.kind {
            EventKind::Deliver { attempt, .. } => Some(*attempt),
            _ => None,
        };
        let mut hosts: Vec<&str> = vec![consumer, next_consumer, &p.host, &n.host];
        hosts.extend(node.into_iter().chain(next_node));
        hosts.sort_unstable();
        hosts.dedup();
        // A log says which: another offset is another copy, the same offset a re-read;
        // otherwise a delivery counted as a first attempt again is another copy.
        let second_copy = match (offset, next_offset) {
            (Some(a), Some(b)) => a != b,
            _ => matches!(p.kind, EventKind::Deliver { .. }) && attempt == Some(1),
        };
        let mut cause = if second_copy {
            self.second_copy(id, group, to)
        } else if offset.is_some() && offset == next_offset {
            let mut cause = self.gap_faults(from, to, (next_consumer, None));
            cause.short[0] = format!(
                "{next_consumer} read it again at the same offset, its position gone back: {}",
                cause.short[0]
            );
            cause
        } else {
            self.unacknowledged(id, (from, to), (consumer, node), group)
        };
        let notes = self.notes_on(from, to, &hosts);
        let said = cause.phrase();
        if let (Some(first), true) = (notes.first(), cause.short.len() < 2) {
            if said.contains(&first.text) {
                cause.steps.extend(notes);
                return cause;
            }
            cause
                .short
                .push(format!("{} {} at {}", first.host, first.text, ms(first.t_us)));
        }
        cause.steps.extend(notes);
        cause
    }

    /// A redelivery to `consumer` (from `node`) in `(from, to)`: its acknowledgement, if it
    /// sent one, came after the broker timed the message out, or was lost to a fault, or
    /// nothing recorded says why; without one, the faults on its link say why it did not.
    fn unacknowledged(
        &self,
        id: MsgId,
        (from, to): (u64, u64),
        ends: (&str, Option<&str>),
        group: Option<&str>,
    ) -> Cause {
        let consumer = ends.0;
        let ack = self.message(id, group).into_iter().find(|&i| {
            let e = self.event(i);
            e.time.0 >= from
                && e.time.0 <= to
                && matches!(&e.kind, EventKind::Ack { consumer: c, .. } if c == consumer)
        });
        let Some(ack) = ack else {
            let mut cause = self.gap_faults(from, to, ends);
            cause.short[0] = format!(
                "{consumer} did not acknowledge it after {}: {}",
                ms(from),
                cause.short[0]
            );
            return cause;
        };
        let at = self.event(ack).time.0;
        // A timeout the broker noted between the delivery and the acknowledgement: the
        // acknowledgement came too late (nsqd answers a FIN for a timed-out message with an error).
        let broker: Vec<&str> = ends.1.into_iter().collect();
        let timed_out = self.notes_on(from, at, &broker).into_iter().find(|s| {
            s.text.contains("timeout") || s.text.contains("timed_out") || s.text.contains("requeue")
        });
        let mut cause = match timed_out {
            Some(note) => {
                let mut cause = Cause::default();
                cause.short.push(format!(
                    "{} {} at {}, before {consumer} acknowledged it at {}: the acknowledgement came too late",
                    note.host,
                    note.text,
                    ms(note.t_us),
                    ms(at)
                ));
                cause.steps.push(note);
                cause
            }
            None => {
                let mut cause = self.gap_faults(at, to, ends);
                cause.short[0] = format!(
                    "{consumer} acknowledged it at {}, yet it came back: {}",
                    ms(at),
                    cause.short[0]
                );
                cause
            }
        };
        cause.steps.push(self.step(ack));
        cause
    }

    /// The publishes of a message seen twice as two copies: more than one publish (a retry
    /// after an unanswered one), with the faults on the producer at the first.
    fn second_copy(&self, id: MsgId, group: Option<&str>, seen_again: u64) -> Cause {
        let mine = self.message(id, group);
        let publishes: Vec<usize> = mine
            .iter()
            .copied()
            .filter(|&i| {
                matches!(
                    self.event(i).kind,
                    EventKind::Publish { .. } | EventKind::PublishInfo { .. } | EventKind::PublishOk { .. }
                )
            })
            .collect();
        let invoked = publishes
            .iter()
            .filter(|&&i| matches!(self.event(i).kind, EventKind::Publish { .. }))
            .count();
        let mut cause = Cause::default();
        let (Some(&first), Some(&last)) = (publishes.first(), publishes.last()) else {
            return cause;
        };
        let (from, to, producer) = (
            self.event(first).time.0,
            self.event(last).time.0,
            &self.event(first).host,
        );
        cause.short.push(if invoked > 1 {
            format!("a second copy, not a redelivery: {producer} published it {invoked} times")
        } else {
            format!(
                "a second copy, not a redelivery: {producer} invoked one publish, and the queue got it twice"
            )
        });
        cause.steps.extend(self.steps(&publishes));
        let faults = self.faults_on(from, to.max(from + 1), &[producer]);
        // Another process may have sent the copy (an outbox relay): a fault anywhere before
        // the copy arrived is cited, as standing at the same time, not as proven cause.
        let meanwhile: Vec<&FaultWindow> = self
            .windows
            .iter()
            .filter(|w| w.overlaps(from, seen_again))
            .collect();
        match (faults.first(), meanwhile.first()) {
            (Some(first), _) => cause.short.push(format!(
                "its publish at {} was not answered while {} stood",
                ms(from),
                first.describe()
            )),
            (None, Some(other)) => {
                cause.short.push(format!(
                    "no fault stood on {producer} while it published; meanwhile {}",
                    other.describe()
                ));
                cause.steps.push(self.fault_step(other));
            }
            (None, None) => cause.short.push(format!(
                "no fault stood on {producer} from its publish at {} to its answer at {}",
                ms(from),
                ms(to)
            )),
        }
        cause.steps.extend(faults.iter().map(|w| self.fault_step(w)));
        let notes = self.notes_on(from, to, &[producer]);
        if let Some(first) = notes.first() {
            cause
                .short
                .push(format!("{producer} {} at {}", first.text, ms(first.t_us)));
        }
        cause.steps.extend(notes);
        cause
    }
}

/// Who saw a delivery or effect: (consumer, the broker host it came from, its offset).
fn seen_by(kind: &EventKind) -> (&str, Option<&str>, Option<i64>) {
    match kind {
        EventKind::Deliver {
            consumer,
            node,
            offset,
            ..
        } => (consumer, node.as_deref(), *offset),
        EventKind::Effect { consumer, .. } | EventKind::Ack { consumer, .. } => (consumer, None, None),
        _ => ("", None, None),
    }
}
