//! Order and position anomalies: a reorder (the late message's path and what held it back:
//! a redelivery, another broker, a fault), a non-monotonic read or a poll skip (what moved
//! the consumer's position between its two reads), inconsistent offsets (what rewrote the
//! log between the two sightings of one offset).

use super::cause::Cause;
use super::{ms, named_ids, Explainer, Explanation};
use crate::checker::{inconsistent_offsets::INCONSISTENT_OFFSETS, reorder, Anomaly};
use crate::history::{EventKind, Name};

pub fn explain(x: &Explainer<'_>, anomaly: &Anomaly) -> Explanation {
    if reorder::KINDS.contains(&anomaly.kind) {
        return reordered(x, anomaly);
    }
    let mut ids = vec![anomaly.id];
    ids.extend(named_ids(anomaly));
    let witnesses = x.witnesses(anomaly, &ids);
    let from = anomaly.times.first().map_or(0, |t| t.0);
    let to = anomaly.times.last().map_or(from, |t| t.0);
    let mut hosts: Vec<&str> = anomaly.hosts.iter().map(Name::as_str).collect();
    // A log is rewritten by its brokers: every delivery's and publish's broker is involved.
    for &i in &witnesses {
        if let EventKind::Deliver { node: Some(node), .. } = &x.event(i).kind {
            hosts.push(node);
        }
    }
    hosts.sort_unstable();
    hosts.dedup();
    let log_wide = anomaly.kind == INCONSISTENT_OFFSETS;
    let cause = x.between(from, to, &hosts, log_wide);
    let mut steps = x.steps(&witnesses);
    steps.extend(cause.steps.iter().cloned());
    let summary = format!(
        "{} {}; {}",
        anomaly.id,
        super::bare_detail(anomaly),
        cause.phrase()
    );
    Explanation::new(summary, steps)
}

/// A message delivered after one published later: both messages' publishes, the two
/// deliveries, and what held the late one back.
fn reordered(x: &Explainer<'_>, anomaly: &Anomaly) -> Explanation {
    let group = x.group_of(anomaly);
    let group = group.as_deref();
    let other = named_ids(anomaly).first().copied();
    let late_at = anomaly.times.last().map_or(0, |t| t.0);
    let mine = x.message(anomaly.id, group);
    let deliveries: Vec<usize> = mine
        .iter()
        .copied()
        .filter(|&i| matches!(x.event(i).kind, EventKind::Deliver { .. }) && x.event(i).time.0 <= late_at)
        .collect();
    let publish = |id| {
        x.message(id, group)
            .into_iter()
            .filter(|&i| {
                matches!(
                    x.event(i).kind,
                    EventKind::Publish { .. } | EventKind::PublishOk { .. }
                )
            })
            .collect::<Vec<_>>()
    };
    let mut shown = publish(anomaly.id);
    shown.extend(other.map(publish).unwrap_or_default());
    shown.extend(x.witnesses(
        anomaly,
        &[anomaly.id].into_iter().chain(other).collect::<Vec<_>>(),
    ));
    shown.extend(&deliveries);
    let mut steps = x.steps(&shown);
    let cause = match deliveries.as_slice() {
        [.., prev, late] => x.came_back(anomaly.id, *prev, *late, group),
        _ => held_back(x, anomaly, &shown),
    };
    steps.extend(cause.steps.iter().cloned());
    let summary = format!(
        "{} delivered at {} after {}, which was published later; {}",
        anomaly.id,
        ms(late_at),
        other.map_or("another message".to_string(), |o| o.to_string()),
        cause.phrase()
    );
    Explanation::new(summary, steps)
}

/// A first delivery that came late: through another broker than the message before it, or
/// held by a fault or a note between its publish and its delivery.
fn held_back(x: &Explainer<'_>, anomaly: &Anomaly, shown: &[usize]) -> Cause {
    let nodes: Vec<&str> = shown
        .iter()
        .filter_map(|&i| match &x.event(i).kind {
            EventKind::Deliver { node: Some(node), .. } => Some(node.as_str()),
            _ => None,
        })
        .collect();
    let from = shown.first().map_or(0, |&i| x.event(i).time.0);
    let to = anomaly.times.last().map_or(from, |t| t.0);
    let mut hosts: Vec<&str> = shown.iter().map(|&i| x.event(i).host.as_str()).collect();
    hosts.extend(&nodes);
    hosts.sort_unstable();
    hosts.dedup();
    let mut cause = x.between(from, to, &hosts, false);
    let mut distinct = nodes.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() > 1 {
        cause.short.insert(
            0,
            format!(
                "the two came through different brokers ({}), which order nothing between them",
                distinct.join(", ")
            ),
        );
    }
    cause
}
