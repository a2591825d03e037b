//! The hand-over inside a transformer process (consume-transform-produce, reference §2.5):
//! its poll loop gives one polled batch at a time, with the offsets to send to the
//! transaction, to its transactional producer, and waits for how that transaction ended.
//! The Java application does this on one thread (`beginTransaction`, `send` per record,
//! `sendOffsetsToTransaction`, `commitTransaction`); here the producer's own loop runs the
//! transaction and the feed carries the batch across. Sans I/O but for the wake-ups.

use super::txn_offsets::PendingOffsets;
use sim::history::MsgId;
use std::cell::RefCell;
use std::collections::VecDeque;
use tokio::sync::Notify;

/// The most records one batch may hand over (a bound on memory): a poll returns at most
/// `max.poll.records` (500) per partition fetched.
pub const FEED_RECORDS_MAX: usize = 100_000;

/// How the transaction of a batch ended, as the application learns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchOutcome {
    /// commitTransaction returned: the output and (with send_offsets) the offsets are in.
    Committed,
    /// Aborted (an abortable error, a failed TxnOffsetCommit) or lost with a producer
    /// instance that failed: the application seeks back to the group's committed offsets.
    Aborted,
    /// ProducerFencedException: another instance has the transactional id; this one closes.
    Fenced,
}

#[derive(Debug, Default)]
struct State {
    /// Records of the batch the producer has not taken yet: the message and its input
    /// partition, which is also its output partition (the output topic has as many).
    records: VecDeque<(MsgId, i32)>,
    offsets: Option<PendingOffsets>,
    /// A batch is handed over and its transaction has not ended.
    open: bool,
    outcome: Option<BatchOutcome>,
    /// The producer was fenced: it has stopped, and no batch will be written again.
    fenced: bool,
}

/// Shared by the poll loop and the producer of one transformer incarnation.
#[derive(Debug, Default)]
pub struct TransformFeed {
    state: RefCell<State>,
    /// Wakes the producer when a batch comes.
    batch: Notify,
    /// Wakes the poll loop when the batch's transaction ends.
    ended: Notify,
}

impl TransformFeed {
    /// Hands a batch over. One at a time: the poll loop waits for its outcome first.
    pub fn submit(&self, records: Vec<(MsgId, i32)>, offsets: Option<PendingOffsets>) -> Result<(), String> {
        let mut state = self.state.borrow_mut();
        if state.fenced {
            return Err("the producer was fenced".into());
        }
        if state.open {
            return Err("a batch is already in a transaction".into());
        }
        if records.is_empty() || records.len() > FEED_RECORDS_MAX {
            return Err(format!("a batch holds 1 to {FEED_RECORDS_MAX} records"));
        }
        *state = State {
            records: records.into(),
            offsets,
            open: true,
            outcome: None,
            fenced: false,
        };
        drop(state);
        self.batch.notify_one();
        Ok(())
    }

    /// The next record for the producer's `send()`.
    pub fn take(&self) -> Option<(MsgId, i32)> {
        self.state.borrow_mut().records.pop_front()
    }

    /// Records handed over and not yet sent.
    pub fn unsent(&self) -> u64 {
        self.state.borrow().records.len() as u64
    }

    /// Whether the producer was fenced (and has stopped).
    pub fn fenced(&self) -> bool {
        self.state.borrow().fenced
    }

    /// Whether a batch waits for its transaction to begin or end.
    pub fn open(&self) -> bool {
        self.state.borrow().open
    }

    /// The batch's offsets, for `sendOffsetsToTransaction` (once).
    pub fn take_offsets(&self) -> Option<PendingOffsets> {
        self.state.borrow_mut().offsets.take()
    }

    /// The producer's word on the batch's transaction. Nothing open: nothing to say (a
    /// fenced producer with no batch).
    pub fn settle(&self, outcome: BatchOutcome) {
        let mut state = self.state.borrow_mut();
        if !state.open && outcome != BatchOutcome::Fenced {
            return;
        }
        state.records.clear();
        state.offsets = None;
        state.open = false;
        state.outcome = Some(outcome);
        state.fenced |= outcome == BatchOutcome::Fenced;
        drop(state);
        self.ended.notify_one();
    }

    /// Waits for the batch's outcome.
    pub async fn outcome(&self) -> BatchOutcome {
        loop {
            let ended = self.ended.notified();
            if let Some(outcome) = self.state.borrow_mut().outcome.take() {
                return outcome;
            }
            ended.await;
        }
    }

    /// Resolves when a batch is handed over (for the producer's sleep).
    pub async fn batch_came(&self) {
        self.batch.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_batch_at_a_time_and_its_outcome_once() {
        let feed = TransformFeed::default();
        assert!(feed.submit(Vec::new(), None).is_err(), "an empty batch");
        feed.submit(vec![(MsgId(1), 0), (MsgId(2), 0)], None).unwrap();
        assert!(
            feed.submit(vec![(MsgId(3), 0)], None).is_err(),
            "one open at a time"
        );
        assert_eq!(feed.take(), Some((MsgId(1), 0)));
        assert_eq!(feed.unsent(), 1);
        feed.settle(BatchOutcome::Aborted);
        assert!(!feed.open());
        assert_eq!(feed.unsent(), 0, "an aborted batch's rest is not sent");
        let outcome = block_on(feed.outcome());
        assert_eq!(outcome, BatchOutcome::Aborted);
        feed.settle(BatchOutcome::Committed);
        feed.submit(vec![(MsgId(3), 0)], None).unwrap();
    }

    #[test]
    fn a_fenced_producer_takes_no_batch_any_more() {
        let feed = TransformFeed::default();
        feed.settle(BatchOutcome::Fenced); // between batches
        assert!(feed.fenced());
        assert!(
            feed.submit(vec![(MsgId(1), 0)], None).is_err(),
            "nobody would write it"
        );
    }

    /// Polls a future that is ready (the feed's outcome once settled).
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(future)
    }
}
