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
