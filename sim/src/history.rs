//! The recorded history of a run: every observable event with its simulated time.
//!
//! **Boundary:** the history is the only thing checkers read. Whatever a checker needs to
//! know must be recorded here by a model or by the harness, never looked up in live state.
//!
//! Publish outcomes follow Jepsen: an invocation (`publish`) completes with `publish_ok`,
//! `publish_fail` (definitely not applied) or `publish_info` (unknown: it may or may not have
//! been applied, e.g. the reply never arrived).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Write;

pub use crate::name::Name;

/// Application-level message identity, carried in the payload, independent of any broker id.
///
/// Workloads number messages from 1. Id 0 is the zero value: a consumer that reads one
/// (e.g. from a closed Go channel without checking `ok`) records a phantom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MsgId(pub u64);

impl MsgId {
    pub const ZERO: MsgId = MsgId(0);
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m{}", self.0)
    }
}

/// Simulated time since the start of the run, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SimTime(pub u64);

impl SimTime {
    pub fn from_duration(d: std::time::Duration) -> SimTime {
        SimTime(u64::try_from(d.as_micros()).expect("simulated time fits in u64 microseconds"))
    }
}

impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0 / 1000;
        let us = self.0 % 1000;
        write!(f, "{:>6}.{:03}ms", ms, us)
    }
}

/// One recorded event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "t_us")]
    pub time: SimTime,
    /// The host that observed the event (the harness records faults as `jetsam`).
    pub host: Name,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Which phase of the run the harness entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Faults are injected (from the schedule or the swarm draw).
    Fault,
    /// Every partition healed, every paused process resumed, every down host restarted.
    Heal,
    /// The design reported quiescence: everything it will ever deliver has been delivered.
    Drained,
    /// The drain budget ran out before the design was quiescent.
    DrainTimeout,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A producer invoked a publish. `seq` is the producer's own publish order.
    Publish {
        id: MsgId,
        producer: Name,
        seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// The publish was applied. A log-based broker (Kafka) says where: the partition and
    /// the offset the message got, which the log checkers compare with what consumers read.
    PublishOk {
        id: MsgId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partition: Option<Name>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<i64>,
    },
    PublishFail {
        id: MsgId,
        error: String,
    },
    PublishInfo {
        id: MsgId,
        reason: String,
    },
    /// A consumer received the message. `attempt` counts deliveries of this message (1 = first).
    Deliver {
        id: MsgId,
        attempt: u32,
        consumer: Name,
        /// The unit of ordering the delivery came through (a Kafka partition; an nsqd's
        /// channel, named by the nsqd): what `ordered(partition)` judges.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partition: Option<Name>,
        /// The broker host that sent it (an nsqd, a Kafka broker), which reports draw the
        /// delivery through; `None` when no broker host is in between (a Go channel). Apart
        /// from `partition` because a Kafka partition moves between brokers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<Name>,
        /// Where in the partition's log the message was read, for a log-based broker.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<i64>,
    },
    /// The consumer's side effect for the message was applied.
    Effect {
        id: MsgId,
        consumer: Name,
    },
    /// A database transaction committed these parts of the message's effect (see
    /// `effect_parts`). A transaction that commits only some of them is a partial transaction.
    Write {
        id: MsgId,
        txn: u64,
        parts: Vec<String>,
    },
    /// The design declares what a whole effect writes, e.g. `["inbox", "debit", "credit"]`:
    /// the schema the partial-transaction checker judges `write` events against.
    EffectParts {
        parts: Vec<String>,
    },
    /// Consumers in several groups (NSQ channels, Kafka consumer groups), each of which must
    /// get every message: `(consumer, group)` pairs. Checkers judge each group on its own.
    Groups {
        members: Vec<(String, String)>,
    },
    /// The consumer acknowledged the message to the queue (FIN, commit, ...).
    Ack {
        id: MsgId,
        consumer: Name,
    },
    /// A fault the harness injected, or healed.
    Fault {
        action: Name,
        hosts: Vec<String>,
        #[serde(default, skip_serializing_if = "Name::is_empty")]
        detail: Name,
    },
    /// A model read a value that must not change, e.g. the total of all account balances
    /// after a commit (a Jepsen-style read of the system's state, recorded when it is made).
    Observe {
        name: Name,
        value: i64,
    },
    /// A statistic of a host's queues changed, e.g. `orders/billing depth` (what nsqadmin
    /// shows). For reports only: no checker reads gauges.
    Gauge {
        name: Name,
        value: i64,
    },
    /// A model observed something worth counting ("sometimes" checks), e.g. a select that
    /// chose quit while data was still buffered.
    Note {
        name: Name,
        /// What the model saw, for the timeline (a partition's new leader and ISR); counters
        /// count by name only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    Phase {
        phase: Phase,
        /// For `drain_timeout`: what the design still had pending.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
    },
    /// A model panicked or a host's software failed: the run stops here. Or, with
    /// `exit_status`, a simulated program exited abnormally on its own (Go's runtime exits
    /// with status 2 on an unrecovered panic, `os.Exit(n)` with n): the event's host is down
    /// as after a kill, and the run goes on (the drain restarts it, as a supervisor would).
    /// Histories recorded before `exit_status` existed read as run crashes.
    Crash {
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_status: Option<i32>,
    },
}

impl EventKind {
    /// A publish applied, where the broker does not say where (every queue but a log).
    pub fn publish_ok(id: MsgId) -> EventKind {
        EventKind::PublishOk {
            id,
            partition: None,
            offset: None,
        }
    }

    /// The message this event is about, if any.
    pub fn msg_id(&self) -> Option<MsgId> {
        match self {
            EventKind::Publish { id, .. }
            | EventKind::PublishOk { id, .. }
            | EventKind::PublishFail { id, .. }
            | EventKind::PublishInfo { id, .. }
            | EventKind::Deliver { id, .. }
            | EventKind::Effect { id, .. }
            | EventKind::Write { id, .. }
            | EventKind::Ack { id, .. } => Some(*id),
            _ => None,
        }
    }
}

/// Bound on recorded events; a run that records more is a runaway model.
pub const HISTORY_EVENTS_MAX: usize = 50_000_000;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    events: Vec<Event>,
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    pub fn from_events(events: Vec<Event>) -> History {
        assert!(events.len() <= HISTORY_EVENTS_MAX);
        History { events }
    }

    pub fn push(&mut self, event: Event) {
        assert!(
            self.events.len() < HISTORY_EVENTS_MAX,
            "history exceeded {HISTORY_EVENTS_MAX} events: runaway model"
        );
        debug_assert!(
            self.events.last().is_none_or(|last| last.time <= event.time),
            "history must be recorded in simulated-time order"
        );
        self.events.push(event);
    }

    /// Appends a step's events, already in time order and no earlier than the last one: one
    /// bound check and one reservation for the step rather than one per event.
    pub fn extend_ordered(&mut self, events: impl ExactSizeIterator<Item = Event>) {
        assert!(
            events.len() <= HISTORY_EVENTS_MAX - self.events.len(),
            "history exceeded {HISTORY_EVENTS_MAX} events: runaway model"
        );
        let start = self.events.len();
        self.events.extend(events);
        debug_assert!(
            self.events[start.saturating_sub(1)..]
                .windows(2)
                .all(|pair| pair[0].time <= pair[1].time),
            "history must be recorded in simulated-time order"
        );
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Whether the harness saw the design drain (so "never processed" means lost, not unseen).
    /// What was pending when the drain budget ran out, if it did.
    pub fn drain_timeout(&self) -> Option<&str> {
        self.events.iter().rev().find_map(|e| match &e.kind {
            EventKind::Phase {
                phase: Phase::DrainTimeout,
                detail,
            } => Some(detail.as_str()),
            _ => None,
        })
    }

    pub fn drained(&self) -> bool {
        self.events.iter().rev().any(|e| {
            matches!(
                e.kind,
                EventKind::Phase {
                    phase: Phase::Drained,
                    ..
                }
            )
        })
    }

    /// Writes the history as JSON lines, one event per line.
    pub fn write_jsonl(&self, mut out: impl Write) -> std::io::Result<()> {
        for event in &self.events {
            serde_json::to_writer(&mut out, event)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// [`Self::write_jsonl`] after a first line naming the file's format,
    /// `{"format":1}` ([`HISTORY_FORMAT`]): what `jetsam run --history FILE` writes, so a
    /// reader can refuse a file it does not understand. The hash covers the events only.
    pub fn write_jsonl_file(&self, mut out: impl Write) -> std::io::Result<()> {
        serde_json::to_writer(
            &mut out,
            &HistoryHeader {
                format: HISTORY_FORMAT,
            },
        )?;
        out.write_all(b"\n")?;
        self.write_jsonl(out)
    }

    /// Reads JSON lines, one event per line, after an optional format line (refused when it
    /// names another format than [`HISTORY_FORMAT`]).
    pub fn read_jsonl(text: &str) -> Result<History, HistoryParseError> {
        let mut events = Vec::new();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            if events.is_empty() {
                if let Ok(header) = serde_json::from_str::<HistoryHeader>(line) {
                    if header.format != HISTORY_FORMAT {
                        let source = <serde_json::Error as serde::de::Error>::custom(format!(
                            "history format {}; this jetsam reads format {HISTORY_FORMAT}",
                            header.format
                        ));
                        return Err(HistoryParseError {
                            line: index + 1,
                            source,
                        });
                    }
                    continue;
                }
            }
            let event = serde_json::from_str(line).map_err(|source| HistoryParseError {
                line: index + 1,
                source,
            })?;
            events.push(event);
        }
        Ok(History::from_events(events))
    }

    /// SHA-256 of the JSON-lines form, hex encoded: equal hashes mean byte-identical histories.
    pub fn hash(&self) -> String {
        let mut hasher = Sha256::new();
        self.write_jsonl(HashWriter(&mut hasher))
            .expect("hashing cannot fail");
        let digest = hasher.finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The version of the history file's JSON-lines form, in its first line.
pub const HISTORY_FORMAT: u32 = 1;

/// A history file's first line.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryHeader {
    format: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("history line {line}: {source}")]
pub struct HistoryParseError {
    pub line: usize,
    #[source]
    pub source: serde_json::Error,
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_file_names_its_format_and_another_format_is_refused() {
        let history =
            History::read_jsonl(r#"{"t_us":5,"host":"app","type":"crash","message":"boom"}"#).unwrap();
        let mut bytes = Vec::new();
        history.write_jsonl_file(&mut bytes).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("{\"format\":1}\n"), "{text}");
        let back = History::read_jsonl(&text).unwrap();
        assert_eq!(back.hash(), history.hash(), "the format line is not an event");
        let newer = text.replace("{\"format\":1}", "{\"format\":2}");
        let err = History::read_jsonl(&newer).unwrap_err().to_string();
        assert!(
            err.contains("line 1") && err.contains("history format 2"),
            "{err}"
        );
    }

    #[test]
    fn jsonl_round_trips_and_hash_is_stable() {
        let mut history = History::new();
        history.push(Event {
            time: SimTime(10),
            host: "app".into(),
            kind: EventKind::Publish {
                id: MsgId(1),
                producer: "p".into(),
                seq: 1,
                key: None,
            },
        });
        history.push(Event {
            time: SimTime(20),
            host: "app".into(),
            kind: EventKind::Deliver {
                id: MsgId(1),
                attempt: 1,
                consumer: "c".into(),
                partition: Some("q".into()),
                node: Some("broker".into()),
                offset: Some(7),
            },
        });
        let mut bytes = Vec::new();
        history.write_jsonl(&mut bytes).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with(r#"{"t_us":10,"host":"app","type":"publish","id":1"#));
        assert!(
            text.contains(r#""partition":"q","node":"broker","offset":7}"#),
            "{text}"
        );
        let back = History::read_jsonl(&text).unwrap();
        assert_eq!(back, history);
        assert_eq!(back.hash(), history.hash());
        assert_eq!(history.hash().len(), 64);
    }

    #[test]
    fn a_delivery_without_a_node_or_partition_omits_them_and_reads_back() {
        let line = r#"{"t_us":1,"host":"c","type":"deliver","id":1,"attempt":1,"consumer":"c"}"#;
        let history = History::read_jsonl(line).unwrap();
        let mut bytes = Vec::new();
        history.write_jsonl(&mut bytes).unwrap();
        assert_eq!(String::from_utf8(bytes).unwrap().trim_end(), line);
    }

    #[test]
    fn a_crash_without_an_exit_status_reads_back_as_a_run_crash() {
        // Histories written before `exit_status` existed.
        let old = r#"{"t_us":5,"host":"jetsam","type":"crash","message":"boom"}"#;
        let history = History::read_jsonl(old).unwrap();
        let EventKind::Crash { message, exit_status } = &history.events()[0].kind else {
            panic!("{history:?}")
        };
        assert_eq!((message.as_str(), *exit_status), ("boom", None));
        let exited = r#"{"t_us":5,"host":"app","type":"crash","message":"panic: send on closed channel","exit_status":2}"#;
        let history = History::read_jsonl(exited).unwrap();
        assert!(matches!(
            history.events()[0].kind,
            EventKind::Crash {
                exit_status: Some(2),
                ..
            }
        ));
        let verdicts = crate::verdict::Verdicts::judge(&history, &crate::checker::check_all(&history));
        assert_eq!(
            verdicts.crash.as_deref(),
            Some("app exited with status 2: panic: send on closed channel")
        );
    }

    /// What a million-message run pays per event before any name (issue 14): names are
    /// shared pointers, and no variant outgrows `Deliver`.
    #[test]
    fn an_event_stays_compact() {
        assert_eq!(std::mem::size_of::<EventKind>(), 56);
        assert_eq!(std::mem::size_of::<Event>(), 72);
    }

    #[test]
    fn a_step_appended_in_order_keeps_its_order_and_refuses_to_go_back() {
        let at = |t: u64| Event {
            time: SimTime(t),
            host: "h".into(),
            kind: EventKind::Gauge {
                name: "g".into(),
                value: t as i64,
            },
        };
        let mut history = History::new();
        history.extend_ordered(vec![at(1), at(2), at(2)].into_iter());
        history.extend_ordered(vec![at(3)].into_iter());
        let times: Vec<u64> = history.events().iter().map(|e| e.time.0).collect();
        assert_eq!(times, [1, 2, 2, 3]);
        let back = std::panic::catch_unwind(move || history.extend_ordered(vec![at(0)].into_iter()));
        assert_eq!(
            back.is_err(),
            cfg!(debug_assertions),
            "out of order caught in debug"
        );
    }

    #[test]
    fn garbled_line_names_its_line() {
        let err = History::read_jsonl("\n{\"t_us\":1}\n").unwrap_err();
        assert_eq!(err.line, 2);
    }
}
