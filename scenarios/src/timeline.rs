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
        EventKind::PublishOk {
            id,
            partition,
            offset,
        } => match (partition, offset) {
            (Some(p), Some(o)) => format!("  ok     {id} at {p}@{o}"),
            _ => format!("  ok     {id}"),
        },
        EventKind::PublishFail { id, error } => format!("  fail   {id}: {error}"),
        EventKind::PublishInfo { id, reason } => format!("  info   {id}: {reason}"),
        EventKind::Deliver {
            id,
            attempt,
            consumer,
            partition,
            node,
            offset,
        } => {
            let from = node.as_deref().map(|n| format!(" from {n}")).unwrap_or_default();
            // NSQ's partition is its nsqd, already named; a Kafka partition is not its broker.
            let within = match (partition, offset) {
                (Some(p), Some(o)) => format!(" in {p}@{o}"),
                (Some(p), None) if Some(p) != node.as_ref() => format!(" in {p}"),
                _ => String::new(),
            };
            format!("deliver  {id} to {consumer}{from}{within} (attempt {attempt})")
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
        EventKind::Note { name, detail } => match detail {
            Some(detail) => format!("note     {name}: {detail}"),
            None => format!("note     {name}"),
        },
        EventKind::Observe { name, value } => format!("observe  {name} = {value}"),
        EventKind::Phase { phase, detail } if detail.is_empty() => format!("PHASE    {phase:?}"),
        EventKind::Phase { phase, detail } => format!("PHASE    {phase:?}: {detail}"),
        EventKind::Crash {
            message,
            exit_status: None,
        } => format!("CRASH    {message}"),
        EventKind::Crash {
            message,
            exit_status: Some(status),
        } => format!("CRASH    exit status {status}: {message}"),
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

#[cfg(test)]
mod tests {
    use super::line;
    use sim::history::{Event, EventKind, MsgId, SimTime};

    fn deliver(partition: Option<&str>, node: Option<&str>) -> String {
        line(&Event {
            time: SimTime(1_000),
            host: "c1".into(),
            kind: EventKind::Deliver {
                id: MsgId(7),
                attempt: 1,
                consumer: "c1".into(),
                partition: partition.map(Into::into),
                node: node.map(Into::into),
                offset: None,
            },
        })
    }

    #[test]
    fn a_delivery_names_its_node_and_a_partition_only_when_it_is_not_the_node() {
        assert!(deliver(Some("nsqd1"), Some("nsqd1")).ends_with("deliver  m7 to c1 from nsqd1 (attempt 1)"));
        assert!(deliver(Some("orders-3"), Some("broker2"))
            .ends_with("deliver  m7 to c1 from broker2 in orders-3 (attempt 1)"));
        assert!(deliver(None, None).ends_with("deliver  m7 to c1 (attempt 1)"));
    }
}
