//! Duplicates: where each copy was delivered or applied, and why the message came back
//! between one and the next (see `cause.rs`); for a log duplicate, the publishes that put
//! it in the log twice.

use super::cause::Cause;
use super::{ms, Explainer, Explanation, Step};
use crate::checker::{duplicate_effect::DUPLICATE_EFFECT, log_duplicate::LOG_DUPLICATE, Anomaly};
use crate::history::EventKind;

pub fn explain(x: &Explainer<'_>, anomaly: &Anomaly) -> Explanation {
    let group = x.group_of(anomaly);
    let group = group.as_deref();
    let mine = x.message(anomaly.id, group);
    if anomaly.kind == LOG_DUPLICATE {
        return in_the_log(x, anomaly, &mine);
    }
    let effect = anomaly.kind == DUPLICATE_EFFECT;
    let is_delivery = |i: &usize| matches!(x.event(*i).kind, EventKind::Deliver { .. });
    let occurrences: Vec<usize> = mine
        .iter()
        .copied()
        .filter(|&i| match x.event(i).kind {
            EventKind::Effect { .. } => effect,
            EventKind::Deliver { .. } => !effect,
            _ => false,
        })
        .collect();
    // The delivery each occurrence came from: itself, or the last one before an effect.
    let source = |occurrence: usize| {
        mine.iter()
            .copied()
            .filter(is_delivery)
            .take_while(|&d| d <= occurrence)
            .last()
    };
    let mut steps = x.steps(&mine);
    let mut causes: Vec<String> = Vec::new();
    for pair in occurrences.windows(2) {
        let cause = match (source(pair[0]), source(pair[1])) {
            (Some(a), Some(b)) if a != b => x.came_back(anomaly.id, a, b, group),
            _ => reapplied(x, pair[0], pair[1]),
        };
        causes.push(cause.phrase());
        steps.extend(cause.steps);
    }
    let noun = if effect { "applied" } else { "delivered" };
    let at: Vec<String> = occurrences
        .iter()
        .map(|&i| format!("{} on {}", ms(x.event(i).time.0), x.event(i).host))
        .collect();
    let summary = format!(
        "{} {noun} {} times ({}); {}",
        anomaly.id,
        occurrences.len(),
        at.join(", "),
        causes.first().cloned().unwrap_or_default()
    );
    Explanation::new(summary, steps)
}

/// Two effects from one delivery: the consumer applied it again itself (a retry of its
/// processing, e.g. after its database's reply was lost).
fn reapplied(x: &Explainer<'_>, first: usize, second: usize) -> Cause {
    let (a, b) = (x.event(first), x.event(second));
    let consumer = match &b.kind {
        EventKind::Effect { consumer, .. } => consumer.as_str(),
        _ => b.host.as_str(),
    };
    let mut cause = x.gap_faults(a.time.0, b.time.0, (consumer, Some(a.host.as_str())));
    cause.short[0] = format!(
        "applied twice from one delivery: {consumer} processed it again ({})",
        cause.short[0]
    );
    let notes = x.notes_on(a.time.0, b.time.0, &[consumer, &a.host]);
    if let Some(first) = notes.first() {
        cause
            .short
            .push(format!("{} {} at {}", first.host, first.text, ms(first.t_us)));
    }
    cause.steps.extend(notes);
    cause
}

/// A message at two places in a log: its publishes and their answers, and the faults and
/// notes on its producer from the first publish to the last answer.
fn in_the_log(x: &Explainer<'_>, anomaly: &Anomaly, mine: &[usize]) -> Explanation {
    let writes: Vec<usize> = mine
        .iter()
        .copied()
        .filter(|&i| {
            matches!(
                x.event(i).kind,
                EventKind::Publish { .. } | EventKind::PublishOk { .. } | EventKind::PublishInfo { .. }
            ) || matches!(x.event(i).kind, EventKind::Deliver { offset: Some(_), .. })
        })
        .collect();
    let mut steps: Vec<Step> = x.steps(&writes);
    let (from, to) = match (writes.first(), writes.last()) {
        (Some(&f), Some(&l)) => (x.event(f).time.0, x.event(l).time.0),
        _ => (0, 0),
    };
    let producer = writes.first().map_or("", |&i| x.event(i).host.as_str());
    let faults = x.faults_on(from, to, &[producer]);
    let notes = x.notes_on(from, to, &[producer]);
    let why = match (faults.first(), notes.first()) {
        (Some(fault), _) => format!("{} stood on {producer} while it published", fault.describe()),
        (None, Some(note)) => format!("{producer} {} at {}", note.text, ms(note.t_us)),
        (None, None) => format!("no fault stood on {producer} and no retry was noted while it published"),
    };
    steps.extend(faults.iter().map(|w| x.fault_step(w)));
    steps.extend(notes);
    let detail = super::bare_detail(anomaly);
    Explanation::new(format!("{} {detail}; {why}", anomaly.id), steps)
}
