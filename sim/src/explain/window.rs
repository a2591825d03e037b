//! `FaultWindow`: one injected fault from the history, from the event that opened it to the
//! one that undid it, and which hosts and links it stood on. Read from the recorded `fault`
//! events (and a program's own abnormal exit, a `crash` with an exit status), never from the
//! harness: an explanation can only name what the history says.

use super::ms;
use crate::history::{Event, EventKind};

/// One fault, opened at `start_us` by `event` and undone at `end_us` (None: never undone
/// before the run ended).
#[derive(Clone, Debug, PartialEq)]
pub struct FaultWindow {
    /// The fault action (`partition`, `lose_replies`, `pause`, `kill`, `power_fail`, `stop`,
    /// `latency`), or `exit` for a program that ended itself.
    pub action: String,
    pub hosts: Vec<String>,
    pub detail: String,
    pub start_us: u64,
    pub end_us: Option<u64>,
    /// The index of the opening event in the history.
    pub event: usize,
    /// A partition's two sides and whether it cuts one way only, read from its detail.
    sides: Option<(Vec<String>, Vec<String>, bool)>,
}

/// What undoes each opening action (`heal` undoes every link fault at once).
fn closers(action: &str) -> Option<&'static [&'static str]> {
    Some(match action {
        "partition" | "latency" => &["heal", "latency_end"],
        "kill" | "power_fail" | "stop" | "exit" => &["restart"],
        "pause" => &["resume", "kill", "power_fail"],
        "lose_replies" => &["lose_replies_end", "heal"],
        _ => return None,
    })
}

/// A partition's detail ends with `a,b <-/-> c` or `a -/-> c` (after a role's `role x -> h; `).
fn sides(detail: &str) -> Option<(Vec<String>, Vec<String>, bool)> {
    let cut = detail.rsplit("; ").next()?;
    let (oneway, (left, right)) = match cut.split_once(" <-/-> ") {
        Some(pair) => (false, pair),
        None => (true, cut.split_once(" -/-> ")?),
    };
    let names = |text: &str| text.split(',').map(|h| h.trim().to_string()).collect::<Vec<_>>();
    Some((
        names(left),
        names(right.split_whitespace().next().unwrap_or(right)),
        oneway,
    ))
}

/// Every fault window of the history, in the order the faults opened.
pub fn windows(events: &[Event]) -> Vec<FaultWindow> {
    let mut windows = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let (action, hosts, detail) = match &event.kind {
            EventKind::Fault {
                action,
                hosts,
                detail,
            } => (action.to_string(), hosts.clone(), detail.to_string()),
            EventKind::Crash {
                message,
                exit_status: Some(status),
            } => (
                "exit".to_string(),
                vec![event.host.to_string()],
                format!("status {status}: {message}"),
            ),
            _ => continue,
        };
        let Some(undo) = closers(&action) else {
            continue;
        };
        let end_us = events[i + 1..]
            .iter()
            .find(|later| match &later.kind {
                EventKind::Fault {
                    action: other,
                    hosts: others,
                    ..
                } => undo.contains(&other.as_str()) && (other == "heal" || others == &hosts),
                _ => false,
            })
            .map(|e| e.time.0);
        let sides = if action == "partition" {
            sides(&detail)
        } else {
            None
        };
        windows.push(FaultWindow {
            action,
            hosts,
            detail,
            start_us: event.time.0,
            end_us,
            event: i,
            sides,
        });
    }
    windows
}

impl FaultWindow {
    /// Whether the fault stood at some moment of `[from_us, to_us]`.
    pub fn overlaps(&self, from_us: u64, to_us: u64) -> bool {
        self.start_us <= to_us && self.end_us.is_none_or(|end| end >= from_us)
    }

    /// Whether it names `host` (a fault on the host, or a link fault with it at one end).
    pub fn names(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h == host)
    }

    /// Whether it cut or held traffic between `a` and `b`: a partition between their sides,
    /// lost replies between them, or either end paused, stopped, killed or without power.
    pub fn on_link(&self, a: &str, b: &str) -> bool {
        match self.action.as_str() {
            "partition" => match &self.sides {
                Some((left, right, _)) => {
                    let has = |side: &[String], h: &str| side.iter().any(|x| x == h);
                    (has(left, a) && has(right, b)) || (has(left, b) && has(right, a))
                }
                None => self.names(a) && self.names(b),
            },
            "lose_replies" | "latency" => self.names(a) && self.names(b),
            _ => self.names(a) || self.names(b),
        }
    }

    /// Whether the fault takes a host's process or machine down (what erases memory).
    pub fn takes_down(&self) -> bool {
        matches!(self.action.as_str(), "kill" | "power_fail" | "stop" | "exit")
    }

    /// The fault in words: its kind, where, and when it stood.
    pub fn describe(&self) -> String {
        let what = match self.action.as_str() {
            "partition" | "lose_replies" | "latency" if !self.detail.is_empty() => self
                .detail
                .rsplit("; ")
                .next()
                .unwrap_or(&self.detail)
                .to_string(),
            _ => self.hosts.join(","),
        };
        let until = match self.end_us {
            Some(end) => format!("from {} to {}", ms(self.start_us), ms(end)),
            None => format!("from {}, never undone", ms(self.start_us)),
        };
        let extra = match self.action.as_str() {
            "power_fail" | "exit" if !self.detail.is_empty() => format!(" ({})", self.detail),
            _ => String::new(),
        };
        format!("{} {what} {until}{extra}", self.action)
    }
}
