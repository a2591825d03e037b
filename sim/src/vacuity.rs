//! Vacuity: a run whose faults cannot have touched its workload tested nothing, however
//! green its verdicts. A fault touches the workload when its window (from the fault to what
//! undoes it: `heal`, `restart`, `resume`, `lose_replies_end`, or the end of the run)
//! overlaps a message in flight (from its publish to the last thing recorded about it: an
//! acknowledgement, a delivery, an effect, or the end of the run if it never completed).
//! Read from the history only, like the checkers.

use crate::checker::id_slots::IdSlots;
use crate::history::{Event, EventKind, History, MsgId, SimTime};

/// Why the run's faults cannot have touched its workload, or `None` when one did (or the
/// run had no fault to judge).
pub fn vacuity(history: &History) -> Option<String> {
    let events = history.events();
    let end = events.last().map_or(SimTime(0), |e| e.time);
    let faults = fault_windows(events, end);
    if faults.is_empty() {
        return None;
    }
    let flight = in_flight(events, end);
    let (Some(first), Some(last)) = (flight.first(), flight.last()) else {
        return Some(format!("{} fault(s), and no message was published", faults.len()));
    };
    if faults.iter().any(|window| overlaps(&flight, *window)) {
        return None;
    }
    let (from, to) = (faults[0].0, faults.iter().map(|w| w.1).max().unwrap_or(end));
    Some(format!(
        "vacuous: no fault overlapped a message in flight ({} fault(s) between {} ms and {} ms; \
         messages in flight between {} ms and {} ms)",
        faults.len(),
        from.0 / 1000,
        to.0 / 1000,
        first.0 .0 / 1000,
        last.1 .0 / 1000
    ))
}

/// The window of every fault that opens one, in order of its start.
fn fault_windows(events: &[Event], end: SimTime) -> Vec<(SimTime, SimTime)> {
    let mut windows = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let EventKind::Fault { action, hosts, .. } = &event.kind else {
            continue;
        };
        let closers: &[&str] = match action.as_str() {
            "partition" | "latency" => &["heal"],
            "kill" | "power_fail" | "stop" => &["restart"],
            "pause" => &["resume", "kill", "power_fail"],
            "lose_replies" => &["lose_replies_end", "heal"],
            _ => continue,
        };
        let closed = events[i + 1..].iter().find(|later| match &later.kind {
            EventKind::Fault {
                action: other,
                hosts: others,
                ..
            } => closers.contains(&other.as_str()) && (other == "heal" || others == hosts),
            _ => false,
        });
        windows.push((event.time, closed.map_or(end, |e| e.time)));
    }
    windows
}

/// A message's (publish, last seen, completed).
type Span = (SimTime, SimTime, bool);

/// Each message's span, in publish order, found by id through [`IdSlots`] (ids up to the
/// history's length in its array): 28 bytes a message where a map's nodes cost far more.
struct Spans {
    slots: IdSlots,
    spans: Vec<Span>,
}

impl Spans {
    fn new(events: usize) -> Spans {
        Spans {
            slots: IdSlots::new(events as u64 + 1),
            spans: Vec::new(),
        }
    }

    /// Starts `id`'s span at its first publish.
    fn publish(&mut self, id: MsgId, at: SimTime) {
        if self.slots.get(id).is_none() {
            let slot = u32::try_from(self.spans.len()).expect("fewer than 2^32 messages");
            self.slots.insert(id, slot);
            self.spans.push((at, at, false));
        }
    }

    fn get_mut(&mut self, id: MsgId) -> Option<&mut Span> {
        self.slots.get(id).map(|slot| &mut self.spans[slot])
    }
}

/// The times messages were in flight, merged into disjoint intervals in order.
fn in_flight(events: &[Event], end: SimTime) -> Vec<(SimTime, SimTime)> {
    let mut spans = Spans::new(events.len());
    for event in events {
        let (id, completes) = match &event.kind {
            EventKind::Publish { id, .. } => {
                spans.publish(*id, event.time);
                continue;
            }
            EventKind::PublishOk { id, .. } | EventKind::Deliver { id, .. } => (*id, false),
            EventKind::PublishFail { id, .. } | EventKind::Effect { id, .. } | EventKind::Ack { id, .. } => {
                (*id, true)
            }
            _ => continue,
        };
        if let Some(span) = spans.get_mut(id) {
            span.1 = event.time;
            span.2 |= completes;
        }
    }
    let mut intervals: Vec<(SimTime, SimTime)> = spans
        .spans
        .into_iter()
        .map(|(from, last, done)| (from, if done { last } else { end }))
        .collect();
    intervals.sort();
    let mut merged: Vec<(SimTime, SimTime)> = Vec::new();
    for (from, to) in intervals {
        match merged.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => merged.push((from, to)),
        }
    }
    merged
}

fn overlaps(merged: &[(SimTime, SimTime)], (from, to): (SimTime, SimTime)) -> bool {
    // The first interval that ends at or after the window starts.
    let i = merged.partition_point(|interval| interval.1 < from);
    merged.get(i).is_some_and(|interval| interval.0 <= to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::test_support::Build;

    /// A pause and its resume on `n1` while message `id` is (or is not) in flight.
    fn paused_around(id: u64, in_flight: bool) -> Option<String> {
        let mut b = Build::new();
        b.publish(1).ok(1).effect(1).publish(id).ok(id);
        if !in_flight {
            b.effect(id);
        }
        b.fault("pause", &["n1"], "").fault("resume", &["n1"], "");
        if in_flight {
            b.effect(id);
        }
        vacuity(&b.history())
    }

    #[test]
    fn a_message_is_in_flight_from_its_publish_to_its_completion_whatever_its_id() {
        for id in [2, 3, u64::MAX] {
            assert_eq!(
                paused_around(id, true),
                None,
                "m{id} was in flight across the pause"
            );
            let warning = paused_around(id, false).unwrap_or_else(|| panic!("m{id} had completed"));
            assert!(warning.starts_with("vacuous"), "{warning}");
        }
    }
}
