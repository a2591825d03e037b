//! Transaction anomalies: an aborted read (the transaction's records, its abort and what led
//! to it, the read), a torn transaction (its commit, the part read, and where the unread
//! part was last seen), a partial transaction (the commit that wrote only some parts, and
//! the errors and faults around it).

use super::cause::Cause;
use super::{ms, Explainer, Explanation, Step};
use crate::checker::transactions::{TXN_ABORTED, TXN_COMMITTED, TXN_PUBLISH};
use crate::checker::{
    aborted_read::ABORTED_READ, partial::PARTIAL_TRANSACTION, write_cycle::WRITE_CYCLE, Anomaly,
};
use crate::history::EventKind;

pub fn explain(x: &Explainer<'_>, anomaly: &Anomaly) -> Explanation {
    if anomaly.kind == PARTIAL_TRANSACTION {
        return partial(x, anomaly);
    }
    if anomaly.kind == WRITE_CYCLE {
        return cycle(x, anomaly);
    }
    let Some(name) = txn_name(super::bare_detail(anomaly)) else {
        return super::state::explain(x, anomaly);
    };
    let notes = txn_notes(x, name);
    let ended = notes.iter().copied().find(|&i| {
        matches!(&x.event(i).kind, EventKind::Note { name, .. } if name == TXN_ABORTED || name == TXN_COMMITTED)
    });
    if anomaly.kind == ABORTED_READ {
        return aborted(x, anomaly, name, &notes, ended);
    }
    // Torn: explain the unread part as a loss, after the transaction's own story.
    let mut loss = super::loss::explain(x, anomaly);
    loss.steps.extend(x.steps(&notes));
    let committed = ended.map_or(String::new(), |i| {
        format!(" committed at {}", ms(x.event(i).time.0))
    });
    let summary = format!(
        "{} of transaction {name}{committed}, never delivered though part of it was; {}",
        anomaly.id,
        loss.summary
            .split_once("; ")
            .map_or(loss.summary.as_str(), |(_, why)| why)
    );
    Explanation::new(summary, loss.steps)
}

/// A write cycle (G0): the commits of the transactions in the cycle, and the partitions'
/// orders that contradict each other, from the checker's detail.
fn cycle(x: &Explainer<'_>, anomaly: &Anomaly) -> Explanation {
    let detail = super::bare_detail(anomaly);
    let orders = detail.split_once(": ").map_or(detail, |(_, orders)| orders);
    // `A before B in P (offsets i < j), ...`: the transactions named.
    let mut names: Vec<&str> = orders
        .split(", ")
        .filter_map(|edge| edge.split_once(" in ").map(|(pair, _)| pair))
        .flat_map(|pair| pair.split(" before "))
        .collect();
    names.sort_unstable();
    names.dedup();
    let commits: Vec<usize> = names
        .iter()
        .flat_map(|name| txn_notes(x, name))
        .filter(|&i| matches!(&x.event(i).kind, EventKind::Note { name, .. } if name == TXN_COMMITTED))
        .collect();
    let mut steps = x.steps(&commits);
    steps.sort_by_key(|s| s.t_us);
    let summary = format!(
        "{} committed transactions ({}) wrote in orders no serial order explains: {orders}; \
         Kafka does not isolate transactions' writes from each other, so this is allowed (G0)",
        names.len(),
        names.join(", ")
    );
    Explanation::new(summary, steps)
}

/// `of transaction NAME, which ...`: the transaction's name.
fn txn_name(detail: &str) -> Option<&str> {
    detail.strip_prefix("of transaction ")?.split(", ").next()
}

/// The notes about transaction `name`: its records, and its commit or abort.
fn txn_notes(x: &Explainer<'_>, name: &str) -> Vec<usize> {
    let field = format!("txn={name}");
    (0..x.events.len())
        .filter(|&i| match &x.event(i).kind {
            EventKind::Note {
                name: note,
                detail: Some(detail),
            } => {
                [TXN_PUBLISH, TXN_ABORTED, TXN_COMMITTED].contains(&note.as_str())
                    && detail.split_whitespace().any(|f| f == field)
            }
            _ => false,
        })
        .collect()
}

fn aborted(
    x: &Explainer<'_>,
    anomaly: &Anomaly,
    name: &str,
    notes: &[usize],
    ended: Option<usize>,
) -> Explanation {
    let group = x.group_of(anomaly);
    // The transaction's end and this message's record in it (not every other record).
    let own = format!("id={}", anomaly.id);
    let cited: Vec<usize> = notes
        .iter()
        .copied()
        .filter(|&i| match &x.event(i).kind {
            EventKind::Note { name, detail } if name == TXN_PUBLISH => detail
                .as_deref()
                .is_some_and(|d| d.split_whitespace().any(|f| f == own)),
            _ => true,
        })
        .collect();
    let mut steps = x.steps(&cited);
    let mine = x.message(anomaly.id, group.as_deref());
    steps.extend(x.steps(&mine));
    let begun = notes.first().map_or(0, |&i| x.event(i).time.0);
    let (abort_at, producer) = ended.map_or((begun, ""), |i| (x.event(i).time.0, x.event(i).host.as_str()));
    // Why it aborted: what stood on the producer (and was noted anywhere) while it was open.
    let cause: Cause = x.between(begun, abort_at, &[producer], true);
    steps.extend(cause.steps.iter().cloned());
    let read = mine
        .iter()
        .find(|&&i| matches!(x.event(i).kind, EventKind::Deliver { .. }))
        .map(|&i| x.event(i));
    let read = read.map_or(String::new(), |e| {
        format!(", read by {} at {}", e.host, ms(e.time.0))
    });
    let summary = format!(
        "{} of transaction {name}, aborted by {producer} at {}{read}; why it aborted: {}",
        anomaly.id,
        ms(abort_at),
        cause.phrase()
    );
    Explanation::new(summary, steps)
}

/// A commit that wrote only some of an effect's parts: the message's path to it and what
/// stood on the consumer and its database until then.
fn partial(x: &Explainer<'_>, anomaly: &Anomaly) -> Explanation {
    let mine = x.message(anomaly.id, None);
    let write_at = anomaly.times.first().map_or(0, |t| t.0);
    let shown: Vec<usize> = mine
        .iter()
        .copied()
        .filter(|&i| x.event(i).time.0 <= write_at)
        .collect();
    let mut steps: Vec<Step> = x.steps(&shown);
    let from = shown.first().map_or(write_at, |&i| x.event(i).time.0);
    let mut hosts: Vec<&str> = shown.iter().map(|&i| x.event(i).host.as_str()).collect();
    hosts.sort_unstable();
    hosts.dedup();
    let cause = x.between(from, write_at, &hosts, false);
    steps.extend(cause.steps.iter().cloned());
    let summary = format!(
        "{} {}; {}",
        anomaly.id,
        super::bare_detail(anomaly),
        cause.phrase()
    );
    Explanation::new(summary, steps)
}
