//! `jetsam replay`: the history as a readable timeline with simulated timestamps.

use sim::history::{Event, EventKind, History};
use std::fmt::Write;

pub fn line(event: &Event) -> String {
    let what = match &event.kind {
        EventKind::Publish {
            id,
            producer,
            seq,
            key,
        } => match key {
            Some(key) => format!("publish  {id} by {producer} (seq {seq}, key {key})"),
            None => format!("publish  {id} by {producer} (seq {seq})"),
        },
        EventKind::PublishOk { id } => format!("  ok     {id}"),
        EventKind::PublishFail { id, error } => format!("  fail   {id}: {error}"),
        EventKind::PublishInfo { id, reason } => format!("  info   {id}: {reason}"),
        EventKind::Deliver {
            id,
            attempt,
            consumer,
            partition,
        } => {
            let from = partition
                .as_deref()
                .map(|p| format!(" from {p}"))
                .unwrap_or_default();
            format!("deliver  {id} to {consumer}{from} (attempt {attempt})")
        }
        EventKind::Effect { id, consumer } => format!("effect   {id} by {consumer}"),
        EventKind::Ack { id, consumer } => format!("ack      {id} by {consumer}"),
        EventKind::Fault {
            action,
            hosts,
            detail,
        } => {
            let detail = if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            };
            format!("FAULT    {action} {}{detail}", hosts.join(","))
        }
        EventKind::Write { id, txn, parts } => format!("write    {id} txn {txn}: {}", parts.join(", ")),
        EventKind::EffectParts { parts } => format!("schema   an effect writes {}", parts.join(", ")),
        EventKind::Groups { members } => format!(
            "schema   groups: {}",
            members
                .iter()
                .map(|(c, g)| format!("{c} in {g}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        EventKind::Gauge { name, value } => format!("gauge    {name} = {value}"),
        EventKind::Note { name } => format!("note     {name}"),
        EventKind::Observe { name, value } => format!("observe  {name} = {value}"),
        EventKind::Phase { phase, detail } if detail.is_empty() => format!("PHASE    {phase:?}"),
        EventKind::Phase { phase, detail } => format!("PHASE    {phase:?}: {detail}"),
        EventKind::Crash { message } => format!("CRASH    {message}"),
    };
    format!("{}  {:<10} {}", event.time, event.host, what)
}

pub fn render(history: &History) -> String {
    let mut out = String::new();
    for event in history.events() {
        let _ = writeln!(out, "{}", line(event));
    }
    out
}
