//! What a design variant promises, and whether a run kept it.
//!
//! A promise is stated in the terms of the reference's designs-by-guarantees table: the
//! properties the variant guarantees, and the documented windows in which it does not (a
//! fault on some hosts, or something the model notes, such as go-nsq giving up after
//! `max_attempts`). A run's verdict on the promise is one of three:
//! - **held**: every promised property held;
//! - **outside**: a promised property was violated, and the run contains an event the
//!   promise excludes (named as the cause);
//! - **broken**: a promised property was violated with no excuse in the run, or the model
//!   crashed. Either a model bug or a real finding; reports show it loudly.
//!
//! Attribution is by co-occurrence, not by causal proof: a violation counts as outside the
//! promise when the run contains an excluded event at or after the earliest event of the
//! anomalies (a fault before a message was published cannot have lost it), even if another
//! mechanism caused it. This errs towards "outside", never towards "held".

use crate::history::{EventKind, History};
use crate::verdict::{Property, Verdicts};
use serde::{Deserialize, Serialize};

/// A documented window outside the promise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Excuse {
    /// The fault `action` on a host whose name starts with `hosts` ("" for any host).
    Fault { action: String, hosts: String },
    /// The model noted `name` (a `note` event), e.g. `consumer.gave_up`.
    Note { name: String },
}

impl Excuse {
    pub fn fault(action: &str, hosts: &str) -> Excuse {
        Excuse::Fault {
            action: action.into(),
            hosts: hosts.into(),
        }
    }

    pub fn note(name: &str) -> Excuse {
        Excuse::Note { name: name.into() }
    }

    /// The window in a few words: `kill nsqd`, `partition` (any host), `consumer.gave_up`.
    pub fn describe(&self) -> String {
        match self {
            Excuse::Fault { action, hosts } if hosts.is_empty() => action.clone(),
            Excuse::Fault { action, hosts } => format!("{action} {hosts}"),
            Excuse::Note { name } => name.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Promise {
    /// In words, with the reference table row it comes from.
    pub text: String,
    pub properties: Vec<Property>,
    pub excuses: Vec<Excuse>,
}

/// A run's verdict on the promise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum Kept {
    Held,
    /// `causes` are the excusing events (`kill nsqd2 at 340 ms`), `windows` the documented
    /// windows they fall in (`kill nsqd`).
    Outside {
        properties: Vec<String>,
        causes: Vec<String>,
        windows: Vec<String>,
    },
    Broken {
        properties: Vec<String>,
        crash: bool,
    },
}

/// How many causes a verdict names before it stops.
const CAUSES_MAX: usize = 3;

impl Promise {
    /// A design that declares nothing: every run holds it, so reports say so plainly.
    pub fn none() -> Promise {
        Promise {
            text: "nothing declared".into(),
            properties: Vec::new(),
            excuses: Vec::new(),
        }
    }

    pub fn judge(&self, verdicts: &Verdicts, history: &History) -> Kept {
        let violated: Vec<String> = self
            .properties
            .iter()
            .filter(|p| !verdicts.get(**p).holds)
            .map(|p| p.name())
            .collect();
        if verdicts.crash.is_some() {
            return Kept::Broken {
                properties: violated,
                crash: true,
            };
        }
        if violated.is_empty() {
            return Kept::Held;
        }
        // An excuse can only explain an anomaly that was under way when it happened: it must
        // come at or after the earliest event of some anomaly breaking the promise (a kill
        // before a message was even published cannot have lost it).
        let since = self
            .properties
            .iter()
            .map(|p| verdicts.get(*p))
            .filter(|v| !v.holds)
            .filter_map(|v| v.earliest)
            .min()
            .unwrap_or(crate::history::SimTime(0));
        let mut causes: Vec<String> = Vec::new();
        let mut windows: Vec<String> = Vec::new();
        for event in history.events().iter().filter(|e| e.time >= since) {
            let cause = match &event.kind {
                EventKind::Fault { action, hosts, .. } => self.excuses.iter().find_map(|e| match e {
                    Excuse::Fault {
                        action: a,
                        hosts: prefix,
                    } if a == action && hosts.iter().any(|h| h.starts_with(prefix.as_str())) => Some((
                        format!("{action} {} at {} ms", hosts.join(","), event.time.0 / 1000),
                        e,
                    )),
                    _ => None,
                }),
                EventKind::Note { name, .. } => self.excuses.iter().find_map(|e| match e {
                    Excuse::Note { name: n } if n == name => Some((format!("{name} on {}", event.host), e)),
                    _ => None,
                }),
                _ => None,
            };
            if let Some((cause, excuse)) = cause {
                if !causes.contains(&cause) {
                    causes.push(cause);
                }
                let window = excuse.describe();
                if !windows.contains(&window) {
                    windows.push(window);
                }
                if causes.len() == CAUSES_MAX {
                    break;
                }
            }
        }
        if causes.is_empty() {
            Kept::Broken {
                properties: violated,
                crash: false,
            }
        } else {
            Kept::Outside {
                properties: violated,
                causes,
                windows,
            }
        }
    }
}

impl Kept {
    pub fn name(&self) -> &'static str {
        match self {
            Kept::Held => "held",
            Kept::Outside { .. } => "outside",
            Kept::Broken { .. } => "broken",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::check_all;
    use crate::history::{Event, MsgId, SimTime};

    fn event(t: u64, host: &str, kind: EventKind) -> Event {
        Event {
            time: SimTime(t),
            host: host.into(),
            kind,
        }
    }

    /// One acknowledged publish, never processed; with `fault` in the run if given.
    fn lost(fault: Option<(&str, &str)>) -> History {
        let mut events = vec![
            event(
                1,
                "p",
                EventKind::Publish {
                    id: MsgId(1),
                    producer: "p".into(),
                    seq: 1,
                    key: None,
                },
            ),
            event(2, "p", EventKind::publish_ok(MsgId(1))),
        ];
        if let Some((action, host)) = fault {
            events.push(event(
                3,
                host,
                EventKind::Fault {
                    action: action.into(),
                    hosts: vec![host.into()],
                    detail: Default::default(),
                },
            ));
        }
        events.push(event(
            4,
            "harness",
            EventKind::Phase {
                phase: crate::history::Phase::Drained,
                detail: String::new(),
            },
        ));
        History::from_events(events)
    }

    fn judge(promise: &Promise, history: &History) -> Kept {
        promise.judge(&Verdicts::judge(history, &check_all(history)), history)
    }

    #[test]
    fn a_loss_is_outside_the_promise_only_with_an_excused_fault_in_the_run() {
        let promise = Promise {
            text: "at-least-once assuming nsqd does not fail".into(),
            properties: vec![Property::AtLeastOnce],
            excuses: vec![Excuse::fault("kill", "nsqd")],
        };
        assert_eq!(
            judge(&promise, &lost(Some(("kill", "nsqd2")))),
            Kept::Outside {
                properties: vec!["at-least-once".into()],
                causes: vec!["kill nsqd2 at 0 ms".into()],
                windows: vec!["kill nsqd".into()],
            }
        );
        for other in [None, Some(("kill", "consumer1")), Some(("pause", "nsqd2"))] {
            assert_eq!(
                judge(&promise, &lost(other)).name(),
                "broken",
                "{other:?} is not an excuse"
            );
        }
        // A kill before the message was published cannot have lost it.
        let mut early = lost(None).events().to_vec();
        early.insert(
            0,
            event(
                0,
                "nsqd1",
                EventKind::Fault {
                    action: "kill".into(),
                    hosts: vec!["nsqd1".into()],
                    detail: Default::default(),
                },
            ),
        );
        assert_eq!(judge(&promise, &History::from_events(early)).name(), "broken");
        let unpromised = Promise {
            properties: vec![Property::AtMostOnce],
            ..promise
        };
        assert_eq!(
            judge(&unpromised, &lost(None)),
            Kept::Held,
            "loss was never promised"
        );
    }
}
