//! `write-cycle` (Elle's G0, as Jepsen's Kafka checker derives it): committed producer
//! transactions whose writes are ordered one way in one partition and the other way in
//! another (or interleaved within one), so no serial order of the transactions explains every
//! partition's log. Each partition's offsets are a version order: a transaction whose record
//! sits just before another transaction's record precedes it (a ww dependency); a cycle of
//! such dependencies is G0.
//!
//! Kafka promises no isolation between transactions' writes: Jepsen's checker lists `:G0` as
//! always allowed (reference §2.5, §2.7), so a design's promise leaves `no-write-cycle` out
//! and a scenario that shows one is a calibration case. Writes are placed by the offsets the
//! history records: the producer's acknowledgement (`publish_ok` with partition and offset),
//! else a consumer's read. Only transactions their producer committed count (aborted ones
//! wrote nothing readable), from the notes `transactions.rs` reads.

use super::transactions::{transactions, Txn, TxnOutcome};
use super::{Anomaly, AnomalyKind, Checker, PublishIndex, Runs};
use crate::history::{EventKind, History, MsgId, Name, SimTime};
use std::collections::{BTreeMap, BTreeSet};

pub const WRITE_CYCLE: AnomalyKind = AnomalyKind::message("write-cycle");

/// The most dependencies one anomaly's detail names (a cycle can span many transactions).
const DETAIL_EDGES_MAX: usize = 6;

/// The logs are the system's state, which no consumer group owns.
pub const CHECKER: Checker = Checker {
    kinds: &[WRITE_CYCLE],
    runs: Runs::Once,
    check: |history, index, found| check_indexed(history, index).into_iter().for_each(found),
};

/// A ww dependency `from` → `to`, with the partition and the offsets that order them.
#[derive(Clone, Debug)]
struct Edge {
    to: usize,
    partition: String,
    offsets: (i64, i64),
    /// The later write, which names the anomaly.
    witness: MsgId,
}

pub fn check(history: &History) -> Vec<Anomaly> {
    check_indexed(history, &PublishIndex::build(history))
}

pub fn check_indexed(history: &History, _index: &PublishIndex) -> Vec<Anomaly> {
    let committed: Vec<(String, SimTime, String, Txn)> = transactions(history)
        .into_iter()
        .filter_map(|(name, txn)| match &txn.outcome {
            Some((TxnOutcome::Committed, at, producer)) => Some((name, *at, producer.clone(), txn)),
            _ => None,
        })
        .collect();
    let edges = dependencies(&placements(history, &committed), committed.len());
    let mut anomalies = Vec::new();
    for cycle in cyclic_components(&edges) {
        let inside: Vec<&Edge> = cycle
            .iter()
            .flat_map(|from| edges[*from].iter().map(move |e| (from, e)))
            .filter(|(_, e)| cycle.contains(&e.to))
            .map(|(_, e)| e)
            .collect();
        let mut times: Vec<SimTime> = cycle.iter().map(|t| committed[*t].1).collect();
        times.sort();
        let said: Vec<String> = cycle
            .iter()
            .flat_map(|from| edges[*from].iter().map(move |e| (*from, e)))
            .filter(|(_, e)| cycle.contains(&e.to))
            .take(DETAIL_EDGES_MAX)
            .map(|(from, e)| {
                format!(
                    "{} before {} in {} (offsets {} < {})",
                    committed[from].0, committed[e.to].0, e.partition, e.offsets.0, e.offsets.1
                )
            })
            .collect();
        let hosts: BTreeSet<String> = cycle.iter().map(|t| committed[*t].2.clone()).collect();
        anomalies.push(Anomaly {
            kind: WRITE_CYCLE,
            id: inside.iter().map(|e| e.witness).min().expect("a cycle has edges"),
            times,
            hosts: hosts.into_iter().map(Name::from).collect(),
            detail: format!(
                "{} committed transactions in a write cycle: {}",
                cycle.len(),
                said.join(", ")
            ),
        });
    }
    anomalies
}

/// Each committed transactional write's place: partition → offset → the message and its
/// transaction. Where the producer noted it (`txn_written`) first; else, for a message only
/// one committed transaction wrote, the producer's acknowledgement or a read (a message two
/// transactions wrote, a transformer's copy of its input, is placed by its notes only).
fn placements(
    history: &History,
    committed: &[(String, SimTime, String, Txn)],
) -> BTreeMap<String, BTreeMap<i64, (MsgId, usize)>> {
    let mut logs: BTreeMap<String, BTreeMap<i64, (MsgId, usize)>> = BTreeMap::new();
    let mut writers: BTreeMap<MsgId, Vec<usize>> = BTreeMap::new();
    for (i, (_, _, _, txn)) in committed.iter().enumerate() {
        for id in &txn.members {
            match txn.written.get(id) {
                Some((partition, offset)) => {
                    logs.entry(partition.clone()).or_default().insert(*offset, (*id, i));
                }
                None => writers.entry(*id).or_default().push(i),
            }
        }
    }
    let mut placed: BTreeMap<MsgId, (String, i64)> = BTreeMap::new();
    for event in history.events() {
        let (id, partition, offset) = match &event.kind {
            EventKind::PublishOk {
                id,
                partition: Some(p),
                offset: Some(o),
            } => (id, p, o),
            EventKind::Deliver {
                id,
                partition: Some(p),
                offset: Some(o),
                ..
            } => (id, p, o),
            _ => continue,
        };
        if writers.get(id).is_some_and(|w| w.len() == 1) {
            placed.entry(*id).or_insert_with(|| (partition.to_string(), *offset));
        }
    }
    for (id, (partition, offset)) in placed {
        let log = logs.entry(partition).or_default();
        log.entry(offset).or_insert((id, writers[&id][0]));
    }
    logs
}

/// The ww dependencies: in each partition, each write's transaction precedes the next
/// write's, when they differ. Outgoing edges per transaction, in partition and offset order.
fn dependencies(logs: &BTreeMap<String, BTreeMap<i64, (MsgId, usize)>>, txns: usize) -> Vec<Vec<Edge>> {
    let mut edges: Vec<Vec<Edge>> = vec![Vec::new(); txns];
    for (partition, log) in logs {
        let writes: Vec<(i64, MsgId, usize)> = log.iter().map(|(o, (id, t))| (*o, *id, *t)).collect();
        for pair in writes.windows(2) {
            let ((first_offset, _, from), (second_offset, second, to)) = (pair[0], pair[1]);
            if from != to && !edges[from].iter().any(|e| e.to == to) {
                edges[from].push(Edge {
                    to,
                    partition: partition.clone(),
                    offsets: (first_offset, second_offset),
                    witness: second,
                });
            }
        }
    }
    edges
}

/// The strongly connected components with more than one transaction (Tarjan's algorithm,
/// iterative so a long chain of transactions cannot overflow the stack), each sorted.
fn cyclic_components(edges: &[Vec<Edge>]) -> Vec<Vec<usize>> {
    const UNSEEN: usize = usize::MAX;
    let n = edges.len();
    let (mut index, mut low, mut on_stack) = (vec![UNSEEN; n], vec![0; n], vec![false; n]);
    let (mut next_index, mut stack, mut components) = (0, Vec::new(), Vec::new());
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        // (node, the next of its edges to follow)
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some((node, edge)) = work.last().copied() {
            if let Some(e) = edges[node].get(edge) {
                work.last_mut().expect("not empty").1 += 1;
                if index[e.to] == UNSEEN {
                    index[e.to] = next_index;
                    low[e.to] = next_index;
                    next_index += 1;
                    stack.push(e.to);
                    on_stack[e.to] = true;
                    work.push((e.to, 0));
                } else if on_stack[e.to] {
                    low[node] = low[node].min(index[e.to]);
                }
                continue;
            }
            work.pop();
            if let Some((parent, _)) = work.last() {
                low[*parent] = low[*parent].min(low[node]);
            }
            if low[node] == index[node] {
                let mut component = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort_unstable();
                    components.push(component);
                }
            }
        }
    }
    components
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::test_support::Build;
    use crate::checker::transactions::{TXN_ABORTED, TXN_COMMITTED, TXN_PUBLISH, TXN_WRITTEN};

    /// Two producers' transactions, each writing one record to partitions a and b, at the
    /// given offsets: `a` = (p's offset, q's offset) in partition a, `b` likewise.
    fn two_transactions(a: (i64, i64), b: (i64, i64), q_outcome: &str) -> History {
        let mut h = Build::new();
        h.publish(1)
            .note("p", TXN_PUBLISH, "txn=p#1 id=m1")
            .publish(2)
            .note("p", TXN_PUBLISH, "txn=p#1 id=m2")
            .publish(3)
            .note("q", TXN_PUBLISH, "txn=q#1 id=m3")
            .publish(4)
            .note("q", TXN_PUBLISH, "txn=q#1 id=m4")
            .ok_at(1, "t-a", a.0)
            .ok_at(2, "t-b", b.0)
            .note("p", TXN_COMMITTED, "txn=p#1")
            .ok_at(3, "t-a", a.1)
            .ok_at(4, "t-b", b.1)
            .note("q", q_outcome, "txn=q#1");
        h.history()
    }

    #[test]
    fn commits_ordered_differently_in_two_partitions_are_a_cycle() {
        let found = check(&two_transactions((0, 1), (1, 0), TXN_COMMITTED));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].detail.contains("p#1 before q#1 in t-a"), "{}", found[0].detail);
        assert!(found[0].detail.contains("q#1 before p#1 in t-b"), "{}", found[0].detail);
        assert_eq!(found[0].hosts, ["p", "q"]);
    }

    #[test]
    fn the_same_order_everywhere_or_an_aborted_side_is_no_cycle() {
        assert!(check(&two_transactions((0, 1), (0, 1), TXN_COMMITTED)).is_empty());
        assert!(check(&two_transactions((0, 1), (1, 0), TXN_ABORTED)).is_empty());
    }

    #[test]
    fn writes_interleaved_within_one_partition_are_a_cycle_and_reads_place_unacked_ones() {
        let mut h = Build::new();
        h.note("p", TXN_PUBLISH, "txn=p#1 id=m1")
            .note("q", TXN_PUBLISH, "txn=q#1 id=m2")
            .note("p", TXN_PUBLISH, "txn=p#1 id=m3")
            .note("p", TXN_COMMITTED, "txn=p#1")
            .note("q", TXN_COMMITTED, "txn=q#1")
            .read_at(1, "c", "t-a", 5)
            .read_at(2, "c", "t-a", 6)
            .read_at(3, "c", "t-a", 7);
        let found = check(&h.history());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].id, MsgId(2));
    }

    #[test]
    fn a_transformers_serial_output_is_placed_by_its_notes_not_by_its_inputs_offsets() {
        // Plain publishes m1, m3 in in-0 and m4, m2 in in-1; a transformer commits t#1 {m1,
        // m2}, then t#2 {m3, m4} to out-0 in that order. Placed by id at their input
        // offsets, t#1 and t#2 would cross (in-0: t#1 first, in-1: t#2 first).
        let mut h = Build::new();
        for id in 1..=4 {
            h.publish(id);
        }
        h.ok_at(1, "in-0", 0).ok_at(3, "in-0", 1).ok_at(4, "in-1", 0).ok_at(2, "in-1", 1);
        for (t, ids, first) in [("t#1", [1, 2], 0), ("t#2", [3, 4], 2)] {
            for (k, id) in ids.into_iter().enumerate() {
                h.note("t", TXN_PUBLISH, &format!("txn={t} id=m{id}"));
                let at = first + k;
                h.note("t", TXN_WRITTEN, &format!("txn={t} id=m{id} partition=out-0 offset={at}"));
            }
            h.note("t", TXN_COMMITTED, &format!("txn={t}"));
        }
        let found = check(&h.history());
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_chain_of_three_closing_on_itself_is_one_cycle_of_three() {
        let mut h = Build::new();
        for (t, ids) in [("p#1", [1, 2]), ("q#1", [3, 4]), ("r#1", [5, 6])] {
            for id in ids {
                h.note(&t[..1], TXN_PUBLISH, &format!("txn={t} id=m{id}"));
            }
            h.note(&t[..1], TXN_COMMITTED, &format!("txn={t}"));
        }
        // a: p, q; b: q, r; c: r, p.
        h.ok_at(1, "a", 0).ok_at(3, "a", 1);
        h.ok_at(4, "b", 0).ok_at(5, "b", 1);
        h.ok_at(6, "c", 0).ok_at(2, "c", 1);
        let found = check(&h.history());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].detail.starts_with("3 committed transactions"), "{}", found[0].detail);
    }
}
