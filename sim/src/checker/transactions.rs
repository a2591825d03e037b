//! Producer transactions as a history records them (Kafka's transactional producer), for
//! the transaction checkers. A model records, as notes from the producer's host:
//! - [`TXN_PUBLISH`] with detail `txn=<name> id=<message>` when a publish joins a transaction
//!   (`<message>` as [`MsgId`] displays it, `m17`);
//! - [`TXN_COMMITTED`] or [`TXN_ABORTED`] with detail `txn=<name>` once the producer knows how
//!   the transaction ended (commitTransaction or abortTransaction returned). A transaction
//!   with neither note ended unknown to its producer (it crashed, or was fenced).
//!
//! Transaction names are the model's, unique within a run (e.g. `producer-1#3`).

use crate::history::{EventKind, History, MsgId, Name, SimTime};
use std::collections::BTreeMap;

pub const TXN_PUBLISH: &str = "txn_publish";
pub const TXN_COMMITTED: &str = "txn_committed";
pub const TXN_ABORTED: &str = "txn_aborted";

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
            TXN_COMMITTED => TxnOutcome::Committed,
            TXN_ABORTED => TxnOutcome::Aborted,
            _ => continue,
        };
        txns.entry(txn.to_string()).or_default().outcome = Some((outcome, event.time, event.host.to_string()));
    }
    txns
}

/// Each message's first delivery: when and to which consumer.
pub fn first_deliveries(history: &History) -> BTreeMap<MsgId, (SimTime, Name)> {
    let mut seen = BTreeMap::new();
    for event in history.events() {
        if let EventKind::Deliver { id, consumer, .. } = &event.kind {
            seen.entry(*id).or_insert_with(|| (event.time, consumer.clone()));
        }
    }
    seen
}
