//! State anomalies: an invariant that changed (the two observations and the commits, faults
//! and notes between them) and a phantom (a message no publish accounts for: its failed
//! publish, or the zero value a consumer read, and what stood on the hosts then).

use super::{ms, Explainer, Explanation};
use crate::checker::{invariant::INVARIANT, Anomaly};
use crate::history::{EventKind, MsgId, Name};

/// Commits cited between an invariant's two observations at most.
const COMMITS_CITED_MAX: usize = 4;

pub fn explain(x: &Explainer<'_>, anomaly: &Anomaly) -> Explanation {
    if anomaly.kind == INVARIANT {
        return invariant(x, anomaly);
    }
    let group = x.group_of(anomaly);
    let mine = x.message(anomaly.id, group.as_deref());
    let mut steps = x.steps(&mine);
    let from = mine.first().map_or(0, |&i| x.event(i).time.0);
    let to = mine.last().map_or(from, |&i| x.event(i).time.0);
    let mut hosts: Vec<&str> = mine.iter().map(|&i| x.event(i).host.as_str()).collect();
    hosts.extend(anomaly.hosts.iter().map(Name::as_str));
    hosts.sort_unstable();
    hosts.dedup();
    let cause = x.between(from, to, &hosts, false);
    steps.extend(cause.steps.iter().cloned());
    let origin = if anomaly.id == MsgId::ZERO {
        "the zero value, which no producer publishes (a consumer read an empty or closed queue)".to_string()
    } else {
        match mine.iter().find_map(|&i| match &x.event(i).kind {
            EventKind::PublishFail { error, .. } => Some((x.event(i).time.0, error)),
            _ => None,
        }) {
            Some((at, error)) => format!(
                "its publish failed at {} ({error}), yet a consumer got it",
                ms(at)
            ),
            None => "never published, yet a consumer got it".to_string(),
        }
    };
    let summary = format!("{}: {origin}; {}", anomaly.id, cause.phrase());
    Explanation::new(summary, steps)
}

fn invariant(x: &Explainer<'_>, anomaly: &Anomaly) -> Explanation {
    let from = anomaly.times.first().map_or(0, |t| t.0);
    let to = anomaly.times.last().map_or(from, |t| t.0);
    let name = super::bare_detail(anomaly).split(" was ").next().unwrap_or("");
    let observed: Vec<usize> = (0..x.events.len())
        .filter(|&i| {
            let e = x.event(i);
            (e.time.0 == from || e.time.0 == to)
                && matches!(&e.kind, EventKind::Observe { name: n, .. } if n == name)
        })
        .collect();
    let commits: Vec<usize> = (0..x.events.len())
        .filter(|&i| {
            let e = x.event(i);
            e.time.0 >= from
                && e.time.0 <= to
                && matches!(e.kind, EventKind::Write { .. } | EventKind::Effect { .. })
        })
        .take(COMMITS_CITED_MAX)
        .collect();
    let mut steps = x.steps(&observed);
    steps.extend(x.steps(&commits));
    let mut hosts: Vec<&str> = anomaly.hosts.iter().map(Name::as_str).collect();
    hosts.extend(commits.iter().map(|&i| x.event(i).host.as_str()));
    hosts.sort_unstable();
    hosts.dedup();
    let cause = x.between(from, to, &hosts, false);
    steps.extend(cause.steps.iter().cloned());
    let summary = format!("{}; {}", super::bare_detail(anomaly), cause.phrase());
    Explanation::new(summary, steps)
}
