//! A message's trail: each of its own recorded events (publish, outcome, deliveries,
//! effects, commits, acknowledgements) as a step in words.

use super::{Explainer, Step};
use crate::history::EventKind;

/// Words for one event about a message; `None` for an event that is not about one.
pub fn words(kind: &EventKind) -> Option<String> {
    Some(match kind {
        EventKind::Publish {
            id, producer, seq, ..
        } => format!("{producer} publishes {id} (its publish #{seq})"),
        EventKind::PublishOk {
            id,
            partition: Some(p),
            offset: Some(o),
        } => format!("the broker acknowledges {id}'s publish at {p}@{o}"),
        EventKind::PublishOk { id, .. } => format!("the broker acknowledges {id}'s publish"),
        EventKind::PublishFail { id, error } => format!("{id}'s publish fails: {error}"),
        EventKind::PublishInfo { id, reason } => {
            format!("{id}'s publish goes unanswered ({reason}): outcome unknown")
        }
        EventKind::Deliver {
            id,
            attempt,
            consumer,
            partition,
            node,
            offset,
        } => {
            let from = node.as_deref().map(|n| format!(" from {n}")).unwrap_or_default();
            let at = match (partition, offset) {
                (Some(p), Some(o)) => format!(" at {p}@{o}"),
                _ => String::new(),
            };
            format!("{id} delivered to {consumer}{from}{at} (attempt {attempt})")
        }
        EventKind::Effect { id, consumer } => format!("{id}'s effect applied by {consumer}"),
        EventKind::Write { id, txn, parts } => {
            format!("transaction {txn} commits {id}'s {}", parts.join(", "))
        }
        EventKind::Ack { id, consumer } => format!("{consumer} acknowledges {id} to the queue (FIN/commit)"),
        _ => return None,
    })
}

impl Explainer<'_> {
    /// The step saying event `i`, in the words above or, for any other event, the timeline's.
    pub(super) fn step(&self, i: usize) -> Step {
        let event = self.event(i);
        let text = words(&event.kind).unwrap_or_else(|| other_words(&event.kind));
        Step {
            t_us: event.time.0,
            host: event.host.to_string(),
            text,
            event: Some(i),
        }
    }

    /// Steps for a list of event indexes, in history order.
    pub(super) fn steps(&self, indexes: &[usize]) -> Vec<Step> {
        indexes.iter().map(|&i| self.step(i)).collect()
    }
}

/// A note, an observation or a crash in words.
fn other_words(kind: &EventKind) -> String {
    match kind {
        EventKind::Note {
            name,
            detail: Some(detail),
        } => format!("noted {name}: {detail}"),
        EventKind::Note { name, detail: None } => format!("noted {name}"),
        EventKind::Observe { name, value } => format!("observes {name} = {value}"),
        EventKind::Crash { message, .. } => format!("crash: {message}"),
        EventKind::Fault {
            action,
            hosts,
            detail,
        } => format!("fault {action} {} {detail}", hosts.join(",")),
        other => format!("{other:?}"),
    }
}
