//! Hand-built histories for checker tests.

use crate::history::{Event, EventKind, History, MsgId, Name, Phase, SimTime};

#[derive(Default)]
pub struct Build {
    events: Vec<Event>,
    time: u64,
}

impl Build {
    pub fn new() -> Build {
        Build::default()
    }

    fn at(&mut self, host: &str, kind: EventKind) -> &mut Build {
        self.time += 10;
        self.events.push(Event {
            time: SimTime(self.time),
            host: host.into(),
            kind,
        });
        self
    }

    /// Any event, on `host`, 10 us after the last.
    pub fn push(&mut self, host: &str, kind: EventKind) -> &mut Build {
        self.at(host, kind)
    }

    /// `consumer` receives message `id` from broker `node` (NSQ: the nsqd is the partition).
    pub fn deliver_to(&mut self, id: u64, attempt: u32, consumer: &str, node: &str) -> &mut Build {
        self.at(
            consumer,
            EventKind::Deliver {
                id: MsgId(id),
                attempt,
                consumer: consumer.into(),
                partition: Some(node.into()),
                node: Some(node.into()),
                offset: None,
            },
        )
    }

    /// `consumer` applies message `id`'s effect.
    pub fn effect_by(&mut self, id: u64, consumer: &str) -> &mut Build {
        self.at(
            consumer,
            EventKind::Effect {
                id: MsgId(id),
                consumer: consumer.into(),
            },
        )
    }

    /// `consumer` acknowledges message `id` to the queue.
    pub fn ack_by(&mut self, id: u64, consumer: &str) -> &mut Build {
        self.at(
            consumer,
            EventKind::Ack {
                id: MsgId(id),
                consumer: consumer.into(),
            },
        )
    }

    /// A fault on several hosts with the harness's detail (`a <-/-> b` for a partition).
    pub fn fault(&mut self, action: &str, hosts: &[&str], detail: &str) -> &mut Build {
        self.at(
            "jetsam",
            EventKind::Fault {
                action: action.into(),
                hosts: hosts.iter().map(|h| h.to_string()).collect(),
                detail: detail.into(),
            },
        )
    }

    pub fn publish_keyed(&mut self, id: u64, producer: &str, seq: u64, key: Option<&str>) -> &mut Build {
        self.at(
            producer,
            EventKind::Publish {
                id: MsgId(id),
                producer: producer.into(),
                seq,
                key: key.map(str::to_string),
            },
        )
    }

    /// A model's note from `host`, with a detail.
    pub fn note(&mut self, host: &str, name: &str, detail: &str) -> &mut Build {
        self.at(
            host,
            EventKind::Note {
                name: name.into(),
                detail: Some(detail.to_string()),
            },
        )
    }

    pub fn publish(&mut self, id: u64) -> &mut Build {
        self.publish_keyed(id, "p", id, None)
    }

    pub fn ok(&mut self, id: u64) -> &mut Build {
        self.at("p", EventKind::publish_ok(MsgId(id)))
    }

    pub fn fail(&mut self, id: u64) -> &mut Build {
        self.at(
            "p",
            EventKind::PublishFail {
                id: MsgId(id),
                error: "E_PUB_FAILED".into(),
            },
        )
    }

    pub fn info(&mut self, id: u64) -> &mut Build {
        self.at(
            "p",
            EventKind::PublishInfo {
                id: MsgId(id),
                reason: "timeout".into(),
            },
        )
    }

    pub fn published(&mut self, ids: impl IntoIterator<Item = u64>) -> &mut Build {
        for id in ids {
            self.publish(id).ok(id);
        }
        self
    }

    pub fn deliver_in(&mut self, id: u64, attempt: u32, partition: Option<&str>) -> &mut Build {
        self.at(
            "c",
            EventKind::Deliver {
                id: MsgId(id),
                attempt,
                consumer: "c".into(),
                partition: partition.map(Name::from),
                node: None,
                offset: None,
            },
        )
    }

    /// A publish acknowledged at `partition@offset` (a log-based broker's answer).
    pub fn ok_at(&mut self, id: u64, partition: &str, offset: i64) -> &mut Build {
        self.at(
            "p",
            EventKind::PublishOk {
                id: MsgId(id),
                partition: Some(partition.into()),
                offset: Some(offset),
            },
        )
    }

    /// `consumer` reads message `id` at `partition@offset`.
    pub fn read_at(&mut self, id: u64, consumer: &str, partition: &str, offset: i64) -> &mut Build {
        self.at(
            consumer,
            EventKind::Deliver {
                id: MsgId(id),
                attempt: 1,
                consumer: consumer.into(),
                partition: Some(partition.into()),
                node: None,
                offset: Some(offset),
            },
        )
    }

    /// A note `name` on `host` (a consumer group assignment starts a consumer's reads over).
    pub fn note_on(&mut self, host: &str, name: &str) -> &mut Build {
        self.at(
            host,
            EventKind::Note {
                name: name.into(),
                detail: None,
            },
        )
    }

    /// A fault on `host` (a restart ends a consumer's incarnation).
    pub fn fault_on(&mut self, action: &str, host: &str) -> &mut Build {
        self.at(
            "jetsam",
            EventKind::Fault {
                action: action.into(),
                hosts: vec![host.to_string()],
                detail: Name::default(),
            },
        )
    }

    pub fn deliver(&mut self, id: u64, attempt: u32) -> &mut Build {
        self.deliver_in(id, attempt, None)
    }

    pub fn effect(&mut self, id: u64) -> &mut Build {
        self.at(
            "c",
            EventKind::Effect {
                id: MsgId(id),
                consumer: "c".into(),
            },
        )
    }

    /// Deliver and process once, in order.
    pub fn processed(&mut self, ids: impl IntoIterator<Item = u64>) -> &mut Build {
        for id in ids {
            self.deliver(id, 1).effect(id);
        }
        self
    }

    pub fn drained(&mut self) -> &mut Build {
        self.at(
            "jetsam",
            EventKind::Phase {
                phase: Phase::Drained,
                detail: String::new(),
            },
        )
    }

    pub fn history(&self) -> History {
        History::from_events(self.events.clone())
    }
}
