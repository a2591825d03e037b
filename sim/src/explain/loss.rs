//! Losses (`lost`, `unseen`, `lost-write`): where the acknowledged message was last seen
//! (its publish answer, its last delivery and who held it then) and what can have erased it
//! after that: a crash, power failure, kill or stop of a host that held it, or a note of a
//! truncation, an unclean election or a drop.

use super::{ms, Explainer, Explanation, Step};
use crate::checker::{lost_write::LOST_WRITE, unseen::UNSEEN, Anomaly};
use crate::history::EventKind;

/// Words in a note's name that say a broker threw messages away.
const ERASING_WORDS: &[&str] = &[
    "truncat",
    "unclean",
    "drop",
    "discard",
    "emptied",
    "deleted",
    "quota",
    "session_discarded",
    "reset",
];
/// Faults that can have erased a message cited at most.
const ERASERS_CITED_MAX: usize = 4;
/// Erasing notes cited at most.
const ERASING_NOTES_MAX: usize = 3;

pub fn explain(x: &Explainer<'_>, anomaly: &Anomaly) -> Explanation {
    let group = x.group_of(anomaly);
    let mine = x.message(anomaly.id, group.as_deref());
    let mut steps = x.steps(&mine);
    let last = mine.last().map(|&i| x.event(i));
    let since = last.map_or(0, |e| e.time.0);
    let delivered = mine
        .iter()
        .rev()
        .find(|&&i| matches!(x.event(i).kind, EventKind::Deliver { .. }))
        .map(|&i| x.event(i));
    // Who held it after its last sighting: the consumer, its host and the broker of its last
    // delivery; else anyone (the history does not say which broker stored it), its
    // producer's host last (a process's memory can hold it too, as a Go channel does).
    let holders: Vec<&str> = match delivered.map(|e| (e, &e.kind)) {
        Some((event, EventKind::Deliver { consumer, node, .. })) => {
            let mut hosts: Vec<&str> = vec![consumer.as_str(), event.host.as_str()];
            hosts.extend(node.as_deref());
            hosts.dedup();
            hosts
        }
        _ => Vec::new(),
    };
    let producer = mine.first().map_or("", |&i| x.event(i).host.as_str());
    // Never delivered: any host but the run's clients can have stored it (its brokers, the
    // ones that delivered something first), and so can its producer's own process.
    let (brokers, clients) = roles(x, producer);
    let mut erasers: Vec<_> = x
        .windows
        .iter()
        .filter(|w| w.takes_down() && w.end_us.is_none_or(|end| end >= since))
        .filter(|w| match holders.is_empty() {
            true => w.hosts.iter().any(|h| !clients.contains(&h.as_str())),
            false => holders.iter().any(|h| w.names(h)),
        })
        .collect();
    // The likeliest first: what struck a known broker after the last sighting, then what
    // already stood, the producer's own faults last.
    erasers.sort_by_key(|w| {
        let broker = brokers.iter().any(|b| w.names(b));
        (
            w.names(producer) && holders.is_empty(),
            !broker,
            w.start_us < since,
            w.start_us,
        )
    });
    erasers.truncate(ERASERS_CITED_MAX);
    steps.extend(erasers.iter().map(|w| x.fault_step(w)));
    let mut notes = erasing_notes(x, since);
    if let Some(event) = delivered {
        // What its holder noted after receiving it (an error, a give-up, a partial commit).
        let end = x.events.last().map_or(since, |e| e.time.0);
        notes.splice(0..0, x.notes_on(event.time.0, end, &holders));
    }
    let why = why(&erasers, &notes, &holders, acked_without_effect(x, &mine));
    steps.extend(notes);
    // lost and unseen details give microseconds; human output speaks milliseconds.
    let what = match anomaly.kind {
        k if k == LOST_WRITE => super::bare_detail(anomaly),
        _ => "was acknowledged and never processed",
    };
    let mut summary = format!("{} {what}: {}, {}; {why}", anomaly.id, seen(last), held(&holders));
    if anomaly.kind == UNSEEN {
        if let Some(pending) = x.drain_timeout() {
            summary.push_str(&format!(" (the run did not drain: {pending})"));
        }
    }
    Explanation::new(summary, steps)
}

/// The run's brokers (the hosts its deliveries came from) and its clients (the hosts that
/// publish or consume, but for `producer`).
fn roles<'a>(x: &Explainer<'a>, producer: &str) -> (Vec<&'a str>, Vec<&'a str>) {
    let (mut brokers, mut clients) = (Vec::new(), Vec::new());
    for event in x.events {
        match &event.kind {
            EventKind::Deliver { node, .. } => {
                brokers.extend(node.as_deref());
                clients.push(event.host.as_str());
            }
            EventKind::Publish { .. } | EventKind::Effect { .. } | EventKind::Ack { .. } => {
                clients.push(event.host.as_str())
            }
            _ => {}
        }
    }
    for list in [&mut brokers, &mut clients] {
        list.sort_unstable();
        list.dedup();
    }
    // A host that delivers is a broker even if it also records publishes (an outbox relay's
    // nsqd does not, but a Go program's one host does both).
    clients.retain(|h| *h != producer && !brokers.contains(h));
    (brokers, clients)
}

/// Where it was last seen: its place in a log when that was its publish's answer.
fn seen(last: Option<&crate::history::Event>) -> String {
    match last.map(|e| (e, &e.kind)) {
        Some((
            event,
            EventKind::PublishOk {
                partition: Some(p),
                offset: Some(o),
                ..
            },
        )) => {
            format!(
                "acknowledged at {p}@{o} at {} on {}",
                ms(event.time.0),
                event.host
            )
        }
        Some((event, _)) => format!("last seen at {} on {}", ms(event.time.0), event.host),
        None => "never recorded".to_string(),
    }
}

fn held(holders: &[&str]) -> String {
    match holders {
        [] => "never delivered".to_string(),
        [consumer] => format!("last held by {consumer}"),
        [consumer, rest @ ..] => format!("last held by {consumer} (on {})", rest.join(", ")),
    }
}

/// A consumer that acknowledged the message after its last delivery without an effect.
fn acked_without_effect(x: &Explainer<'_>, mine: &[usize]) -> Option<String> {
    let last_delivery = mine
        .iter()
        .rposition(|&i| matches!(x.event(i).kind, EventKind::Deliver { .. }))?;
    mine[last_delivery..]
        .iter()
        .find_map(|&i| match &x.event(i).kind {
            EventKind::Ack { consumer, .. } => Some(format!(
                "{consumer} acknowledged it at {} without applying its effect",
                ms(x.event(i).time.0)
            )),
            _ => None,
        })
}

/// The erasing fault, the notes, or that nothing recorded explains the loss.
fn why(erasers: &[&super::FaultWindow], notes: &[Step], holders: &[&str], acked: Option<String>) -> String {
    let mut why: Vec<String> = acked.into_iter().collect();
    if let Some(first) = erasers.first() {
        why.push(format!("then {}", first.describe()));
        let also: Vec<String> = erasers[1..]
            .iter()
            .map(|w| format!("{} {}", w.action, w.hosts.join(",")))
            .collect();
        if !also.is_empty() {
            why.push(format!("also {}", also.join(", ")));
        }
    }
    if let Some(note) = notes.first() {
        why.push(format!("{} {} at {}", note.host, note.text, ms(note.t_us)));
    }
    if erasers.is_empty() && notes.is_empty() {
        why.push(format!(
            "no crash, kill, stop or power failure of {} and no drop or truncation was recorded after that",
            if holders.is_empty() {
                "a host that can have held it".to_string()
            } else {
                holders.join(" or ")
            }
        ));
    }
    why.join("; ")
}

/// Notes after `since`, on any host, saying a broker threw messages away: the first of each
/// name.
fn erasing_notes(x: &Explainer<'_>, since: u64) -> Vec<Step> {
    let start = x.events.partition_point(|e| e.time.0 < since);
    let mut names: Vec<&str> = Vec::new();
    let mut steps = Vec::new();
    for (i, event) in x.events.iter().enumerate().skip(start) {
        let EventKind::Note { name, .. } = &event.kind else {
            continue;
        };
        if ERASING_WORDS.iter().any(|w| name.contains(w)) && !names.contains(&name.as_str()) {
            names.push(name);
            steps.push(x.step(i));
            if steps.len() == ERASING_NOTES_MAX {
                break;
            }
        }
    }
    steps
}
