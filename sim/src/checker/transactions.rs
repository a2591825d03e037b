//! Producer transactions as a history records them (Kafka's transactional producer), for
//! the transaction checkers. A model records, as notes from the producer's host:
//! - [`TXN_PUBLISH`] with detail `txn=<name> id=<message>` when a publish joins a transaction
//!   (`<message>` as [`MsgId`] displays it, `m17`);
//! - [`TXN_COMMITTED`] or [`TXN_ABORTED`] with detail `txn=<name>` once the producer knows how
//!   the transaction ended (commitTransaction or abortTransaction returned). A transaction
//!   with neither note ended unknown to its producer (it crashed, or was fenced);
//! - [`TXN_WRITTEN`] with detail `txn=<name> id=<message> partition=<p> offset=<o>` where the
//!   producer learnt the log position its record was written at (the produce answer),
//!   whether the transaction then committed or aborted.
//!
//! Transaction names are the model's, unique within a run (e.g. `producer-1#3`).
//!
//! One message id may be written by several transactions: a consume-transform-produce
//! application writes again in its output topic what a producer wrote in its input topic, and
//! after an abort it writes the same input again in a later transaction. So a read is a
//! member's when it is at the member's written position; only where the history does not
//! know that position is a read matched by id, and then not a read at a position the history
//! places another transactional record at ([`Reads::first_read`]).

use crate::history::{EventKind, History, MsgId, Name, SimTime};
use std::collections::{BTreeMap, BTreeSet};

pub const TXN_PUBLISH: &str = "txn_publish";
pub const TXN_COMMITTED: &str = "txn_committed";
pub const TXN_ABORTED: &str = "txn_aborted";
pub const TXN_WRITTEN: &str = "txn_written";

/// A record's place in a log: partition name and offset.
pub type Position = (String, i64);

/// How the producer saw a transaction end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnOutcome {
    Committed,
    Aborted,
}

/// One transaction: its messages and how it ended, with when and where the producer said so.
#[derive(Clone, Debug, Default)]
pub struct Txn {
    pub members: Vec<MsgId>,
    pub outcome: Option<(TxnOutcome, SimTime, String)>,
    /// Where members were written, as the producer learnt it ([`TXN_WRITTEN`]).
    pub written: BTreeMap<MsgId, Position>,
}

/// `key=value` fields of a note's detail.
fn field<'a>(detail: &'a str, key: &str) -> Option<&'a str> {
    detail
        .split_whitespace()
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
}

fn msg_id(text: &str) -> Option<MsgId> {
    text.strip_prefix('m')?.parse().ok().map(MsgId)
}

/// Every transaction the history names, by name. Notes that do not parse are not
/// transactions (a checker must not guess).
pub fn transactions(history: &History) -> BTreeMap<String, Txn> {
    let mut txns: BTreeMap<String, Txn> = BTreeMap::new();
    for event in history.events() {
        let EventKind::Note {
            name,
            detail: Some(detail),
        } = &event.kind
        else {
            continue;
        };
        let Some(txn) = field(detail, "txn") else {
            continue;
        };
        let outcome = match name.as_str() {
            TXN_PUBLISH => {
                if let Some(id) = field(detail, "id").and_then(msg_id) {
                    txns.entry(txn.to_string()).or_default().members.push(id);
                }
                continue;
            }
            TXN_WRITTEN => {
                let id = field(detail, "id").and_then(msg_id);
                let partition = field(detail, "partition");
                let offset = field(detail, "offset").and_then(|o| o.parse::<i64>().ok());
                if let (Some(id), Some(partition), Some(offset)) = (id, partition, offset) {
                    let written = &mut txns.entry(txn.to_string()).or_default().written;
                    written.insert(id, (partition.to_string(), offset));
                }
                continue;
            }
            TXN_COMMITTED => TxnOutcome::Committed,
            TXN_ABORTED => TxnOutcome::Aborted,
            _ => continue,
        };
        txns.entry(txn.to_string()).or_default().outcome =
            Some((outcome, event.time, event.host.to_string()));
    }
    txns
}

/// A history's reads of transactional records, for judging which transaction's record each
/// one was. Only reads [`Reads::first_read`] can ask about are kept: a read at a position a
/// [`TXN_WRITTEN`] note names, and a member's reads by id where some transaction of it does
/// not know its position. A history without transactions (NSQ's, a million messages) keeps
/// none, where keeping every delivery cost more than the history itself.
#[derive(Debug, Default)]
pub struct Reads {
    /// The first read of each message at each position a transactional record was written at.
    at: BTreeMap<(Position, MsgId), (SimTime, Name)>,
    /// The reads in order, with their position where the consumer recorded it, of each
    /// member some transaction of which does not know where it was written.
    by_id: BTreeMap<MsgId, Vec<(SimTime, Name, Option<Position>)>>,
    /// Every position a [`TXN_WRITTEN`] note places a record at.
    known: BTreeSet<Position>,
}

impl Reads {
    pub fn build(history: &History, txns: &BTreeMap<String, Txn>) -> Reads {
        let mut reads = Reads {
            known: txns.values().flat_map(|t| t.written.values().cloned()).collect(),
            ..Reads::default()
        };
        // Members whose position one of their transactions lacks: only these are read by id.
        let unplaced: BTreeSet<MsgId> = txns
            .values()
            .flat_map(|t| t.members.iter().filter(|id| !t.written.contains_key(id)))
            .copied()
            .collect();
        if reads.known.is_empty() && unplaced.is_empty() {
            return reads;
        }
        for event in history.events() {
            let EventKind::Deliver {
                id,
                consumer,
                partition,
                offset,
                ..
            } = &event.kind
            else {
                continue;
            };
            let by_id = unplaced.contains(id);
            let position = partition.as_ref().zip(*offset).map(|(p, o)| (p.to_string(), o));
            let at = position
                .as_ref()
                .is_some_and(|position| reads.known.contains(position));
            if !at && !by_id {
                continue;
            }
            if let (true, Some(position)) = (at, &position) {
                reads
                    .at
                    .entry((position.clone(), *id))
                    .or_insert_with(|| (event.time, consumer.clone()));
            }
            if by_id {
                reads
                    .by_id
                    .entry(*id)
                    .or_default()
                    .push((event.time, consumer.clone(), position));
            }
        }
        reads
    }

    /// The first read of member `id` of `txn`: at its written position when the history
    /// knows it; else the first read of the id that is not at a position another
    /// transactional record was written at (that read was the other record's).
    pub fn first_read(&self, txn: &Txn, id: MsgId) -> Option<(SimTime, Name)> {
        if let Some(position) = txn.written.get(&id) {
            return self.at.get(&(position.clone(), id)).cloned();
        }
        self.by_id
            .get(&id)?
            .iter()
            .find(|(_, _, position)| position.as_ref().is_none_or(|p| !self.known.contains(p)))
            .map(|(time, consumer, _)| (*time, consumer.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::test_support::Build;

    fn kept(reads: &Reads) -> (usize, usize) {
        (reads.at.len(), reads.by_id.values().map(Vec::len).sum())
    }

    #[test]
    fn a_history_without_transactions_keeps_no_reads() {
        let mut b = Build::new();
        b.published(1..=3)
            .read_at(1, "c", "q-0", 0)
            .deliver(2, 1)
            .deliver(3, 1)
            .deliver(3, 2);
        let h = b.history();
        assert_eq!(kept(&Reads::build(&h, &transactions(&h))), (0, 0));
    }

    #[test]
    fn only_reads_a_transaction_can_ask_about_are_kept() {
        // m1's position is known (read at it, and elsewhere: only the first is kept); m2's is
        // not (every read of it kept, by id); m3 is in no transaction (none kept).
        let mut b = Build::new();
        b.published(1..=3)
            .note("p", TXN_PUBLISH, "txn=p#1 id=m1")
            .note("p", TXN_WRITTEN, "txn=p#1 id=m1 partition=t-0 offset=4")
            .note("p", TXN_PUBLISH, "txn=p#1 id=m2")
            .note("p", TXN_COMMITTED, "txn=p#1")
            .read_at(1, "c", "t-0", 4)
            .read_at(1, "c", "t-0", 4)
            .read_at(1, "c", "t-0", 9)
            .read_at(2, "c", "t-0", 5)
            .read_at(2, "d", "t-0", 5)
            .read_at(3, "c", "t-0", 6);
        let h = b.history();
        let txns = transactions(&h);
        let reads = Reads::build(&h, &txns);
        assert_eq!(kept(&reads), (1, 2));
        let txn = &txns["p#1"];
        assert_eq!(
            reads.first_read(txn, MsgId(1)).map(|(_, c)| c.to_string()),
            Some("c".into())
        );
        assert_eq!(
            reads.first_read(txn, MsgId(2)).map(|(_, c)| c.to_string()),
            Some("c".into())
        );
        assert_eq!(reads.first_read(txn, MsgId(3)), None);
    }
}
