//! Where messages sit in a log, as the history says: the (partition, offset) a producer was
//! told its publish got, and the one a consumer read it at. Only log-based designs (Kafka)
//! record offsets; for every other design this is empty and the log checkers find nothing.

use crate::history::{EventKind, History, MsgId, SimTime};

/// Who reported the position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The producer's acknowledgement (the offset the leader assigned).
    Acknowledged,
    /// A consumer's read.
    Read,
}

#[derive(Clone, Debug)]
pub struct Position<'a> {
    pub partition: &'a str,
    pub offset: i64,
    pub id: MsgId,
    pub time: SimTime,
    pub host: &'a str,
    pub source: Source,
}

/// Every recorded position, in history order.
pub fn positions(history: &History) -> Vec<Position<'_>> {
    history
        .events()
        .iter()
        .filter_map(|event| {
            let (id, partition, offset, source) = match &event.kind {
                EventKind::PublishOk {
                    id,
                    partition: Some(p),
                    offset: Some(o),
                } => (*id, p, *o, Source::Acknowledged),
                EventKind::Deliver {
                    id,
                    partition: Some(p),
                    offset: Some(o),
                    ..
                } => (*id, p, *o, Source::Read),
                _ => return None,
            };
            Some(Position {
                partition,
                offset,
                id,
                time: event.time,
                host: &event.host,
                source,
            })
        })
        .collect()
}

impl Source {
    pub fn verb(self) -> &'static str {
        match self {
            Source::Acknowledged => "acknowledged",
            Source::Read => "read",
        }
    }
}

/// The note a design records, on the consumer's host, when a consumer is given its
/// partitions again (a Kafka consumer group's assignment after a rebalance): Jepsen's
/// re-assign, after which a consumer's reads may legitimately start anywhere.
pub const ASSIGNED_NOTE: &str = "consumer.group.assigned";

/// The consumers whose reads start over at `event`: the hosts of a fault (a restart is a new
/// incarnation, which starts from its committed position), or the consumer whose host noted
/// a new assignment. Reads are compared only between two such events.
pub fn reads_restart(event: &crate::history::Event) -> Vec<&str> {
    match &event.kind {
        EventKind::Fault { hosts, .. } => hosts.iter().map(String::as_str).collect(),
        EventKind::Note { name, .. } if name == ASSIGNED_NOTE => vec![event.host.as_str()],
        _ => Vec::new(),
    }
}
