//! The transaction coordinator of one broker, sans I/O (Kafka `TransactionCoordinator`,
//! `TransactionStateManager`; reference §2.5, KIP-98, KIP-890). Time comes in as `now_ms`,
//! requests as calls with the driver's [`CallId`], and what must happen next comes out as
//! [`TxnOutput`]s: answers, state records to write, markers to send.
//!
//! - A transactional id belongs to the `__transaction_state` partition
//!   [`partition_for`]`(id)`; the broker leading that partition is its coordinator
//!   ([`TxnCoordinator::load`] when it becomes leader, replaying the partition's records;
//!   [`TxnCoordinator::unload`] when it stops). Anything else is `NOT_COORDINATOR`.
//! - Every change is written first ([`TxnOutput::Persist`], acks=all to the state
//!   partition) and applied only once the write is committed ([`TxnCoordinator::persisted`]).
//!   While a write is out the id has a pending transition, and other requests for it get
//!   `CONCURRENT_TRANSACTIONS`, which clients retry.
//! - InitProducerId bumps the epoch (a new id gets a producer id and epoch 0), fencing the
//!   previous instance. If that instance left a transaction open, the bump is written as
//!   PrepareAbort with the new epoch, the markers abort it, and the caller gets
//!   `CONCURRENT_TRANSACTIONS` and asks again (Kafka's `prepareFenceProducerEpoch`).
//! - AddPartitionsToTxn writes Ongoing with the partitions; EndTxn writes PrepareCommit or
//!   PrepareAbort, answers, then asks for markers on every partition
//!   ([`TxnOutput::WriteMarkers`]); once all are written ([`TxnCoordinator::markers_written`])
//!   it writes CompleteCommit or CompleteAbort.
//! - A transaction open longer than its `transaction.timeout.ms` is aborted by the
//!   coordinator with an epoch bump, checked every
//!   [`ABORT_TIMED_OUT_TRANSACTIONS_INTERVAL_MS`].
//! - [`TxnProtocol::V1`] (before KIP-890) keeps one epoch across a producer's transactions:
//!   an EndTxn(commit) arriving late finds the *next* transaction Ongoing in the same epoch
//!   and commits it, and a CompleteCommit answers any EndTxn(commit) with NONE.
//!   [`TxnProtocol::V2`] (Kafka 4's transaction version 2, EndTxn v5) bumps the epoch at every
//!   EndTxn and writes the markers with the new epoch, so a late EndTxn or Produce of the
//!   previous transaction carries an old epoch and is fenced; an EndTxn retry is recognised
//!   by carrying the previous epoch.

// A sans-I/O core: every function reads at once (ARCHITECTURE.md, "Short functions").
#![deny(clippy::too_many_lines)]

use super::controller::TopicPartition;
use super::error::KafkaError;
use super::txn_state::{
    decode_key, decode_value, encode_key, encode_value, partition_for, TxnMetadata, TxnState,
    NO_PRODUCER_EPOCH, TXN_PARTITIONS_MAX,
};
use std::collections::BTreeMap;

/// `transaction.abort.timed.out.transaction.cleanup.interval.ms` default: 10 s.
pub const ABORT_TIMED_OUT_TRANSACTIONS_INTERVAL_MS: u64 = 10_000;
/// `transaction.max.timeout.ms` default: 15 minutes. A longer `transaction.timeout.ms` is
/// refused with INVALID_TRANSACTION_TIMEOUT.
pub const TRANSACTION_MAX_TIMEOUT_MS_DEFAULT: u32 = 900_000;
/// `transaction.state.log.num.partitions` default (ours is configurable and small).
pub const TRANSACTION_STATE_PARTITIONS_DEFAULT: i32 = 50;
/// The most transactional ids one coordinator keeps: a bound on memory.
pub const TRANSACTIONAL_IDS_MAX: usize = 100_000;

/// Which transaction protocol the cluster speaks (`transaction_protocol` in the design).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnProtocol {
    /// Before KIP-890: one epoch for all of a producer's transactions.
    V1,
    /// KIP-890 part 2 (Kafka 4.0, TV2): an epoch bump per transaction.
    V2,
}

/// The driver's handle on a request that waits for a state write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// The coordinator's handle on one state write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WriteId(pub u64);

/// A request's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnAnswer {
    /// The producer id and epoch to use.
    InitProducerId(Result<(i64, i16), KafkaError>),
    /// One error for every partition of the request, as Kafka answers a transition.
    AddPartitions(Result<(), KafkaError>),
    /// The producer id and epoch for the next transaction (v2 bumps it; v1 keeps it).
    EndTxn(Result<(i64, i16), KafkaError>),
}

/// Markers to write: one control batch on every partition of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Markers {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    /// The state partition's leader epoch: a partition refuses markers from an older one.
    pub coordinator_epoch: i32,
    pub partitions: Vec<TopicPartition>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOutput {
    Answer {
        call: CallId,
        answer: TxnAnswer,
    },
    /// Append this record to `__transaction_state` partition `state_partition` with
    /// acks=all, then call [`TxnCoordinator::persisted`].
    Persist {
        write: WriteId,
        state_partition: i32,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Send WriteTxnMarkers to the partitions' leaders, retrying until every partition has
    /// it, then call [`TxnCoordinator::markers_written`].
    WriteMarkers(Markers),
    /// Something for the history's timeline.
    Note(&'static str),
}

/// What happens once a write is committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterWrite {
    AnswerInit(CallId),
    AnswerAdd(CallId),
    /// Answer EndTxn, then write the markers.
    AnswerEnd(CallId),
    /// An InitProducerId fenced an open transaction: answer CONCURRENT_TRANSACTIONS, then
    /// write the abort markers.
    FenceAbort(CallId),
    /// The coordinator aborted a timed-out transaction: write the abort markers.
    TimeoutAbort,
    /// CompleteCommit or CompleteAbort: nothing more.
    Complete,
}

#[derive(Clone, Debug)]
struct Pending {
    write: WriteId,
    target: TxnMetadata,
    after: AfterWrite,
}

#[derive(Clone, Debug)]
struct Entry {
    meta: TxnMetadata,
    pending: Option<Pending>,
}

/// Did an InitProducerId get going?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitStarted {
    /// Its answer comes as a [`TxnOutput::Answer`].
    Started,
    /// This broker's producer ids are used up: get a block from the controller, ask again.
    NeedProducerIds,
}

pub struct TxnCoordinator {
    protocol: TxnProtocol,
    state_partitions: i32,
    max_timeout_ms: u32,
    /// The state partitions this broker leads, with their leader epoch (coordinator epoch).
    owned: BTreeMap<i32, i32>,
    txns: BTreeMap<String, Entry>,
    /// Which id each write in flight is for.
    writes: BTreeMap<WriteId, String>,
    next_write: u64,
    last_timeout_check_ms: u64,
    outputs: Vec<TxnOutput>,
}

impl TxnCoordinator {
    pub fn new(protocol: TxnProtocol, state_partitions: i32, max_timeout_ms: u32) -> TxnCoordinator {
        assert!(
            state_partitions > 0,
            "transaction.state.log.num.partitions is at least 1"
        );
        assert!(max_timeout_ms > 0);
        TxnCoordinator {
            protocol,
            state_partitions,
            max_timeout_ms,
            owned: BTreeMap::new(),
            txns: BTreeMap::new(),
            writes: BTreeMap::new(),
            next_write: 0,
            last_timeout_check_ms: 0,
            outputs: Vec::new(),
        }
    }

    pub fn protocol(&self) -> TxnProtocol {
        self.protocol
    }

    /// `transaction.state.log.num.partitions`: the partitions `__transaction_state` has.
    pub fn state_partitions(&self) -> i32 {
        self.state_partitions
    }

    pub fn take_outputs(&mut self) -> Vec<TxnOutput> {
        std::mem::take(&mut self.outputs)
    }

    /// The state partition of `transactional_id`: its leader is the coordinator.
    pub fn partition_for(&self, transactional_id: &str) -> i32 {
        partition_for(transactional_id, self.state_partitions)
    }

    /// The committed metadata of an id this coordinator owns.
    pub fn metadata(&self, transactional_id: &str) -> Option<&TxnMetadata> {
        self.txns.get(transactional_id).map(|e| &e.meta)
    }

    /// Whether this broker coordinates `transactional_id` now.
    pub fn owns(&self, transactional_id: &str) -> bool {
        self.owned.contains_key(&self.partition_for(transactional_id))
    }

    fn check_owner(&self, transactional_id: &str) -> Result<(), KafkaError> {
        if transactional_id.is_empty() || transactional_id.len() > super::txn_state::NAME_BYTES_MAX {
            // Kafka answers INVALID_REQUEST; a client never sends it, so the closest we have.
            return Err(KafkaError::InvalidTxnState);
        }
        match self.owns(transactional_id) {
            true => Ok(()),
            false => Err(KafkaError::NotCoordinator),
        }
    }

    /// This broker became leader of state partition `state_partition` in `coordinator_epoch`:
    /// replay its records (key, value) in offset order, the last per id winning. Markers owed
    /// by a transaction in PrepareCommit or PrepareAbort are sent again, as Kafka's
    /// `loadTransactionsForTxnTopicPartition` does.
    pub fn load<'a>(
        &mut self,
        state_partition: i32,
        coordinator_epoch: i32,
        records: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) {
        assert!((0..self.state_partitions).contains(&state_partition));
        self.unload(state_partition);
        self.owned.insert(state_partition, coordinator_epoch);
        for (key, value) in records {
            // A record we cannot read is skipped: Kafka's loader logs and goes on.
            let (Ok(id), Ok(meta)) = (decode_key(key), decode_value(value)) else {
                self.outputs
                    .push(TxnOutput::Note("kafka.txn_state_record_unreadable"));
                continue;
            };
            if self.partition_for(&id) != state_partition {
                continue;
            }
            if !self.txns.contains_key(&id) && self.txns.len() >= TRANSACTIONAL_IDS_MAX {
                continue;
            }
            self.txns.insert(id, Entry { meta, pending: None });
        }
        let owed: Vec<(String, TxnMetadata)> = self
            .txns
            .iter()
            .filter(|(id, e)| self.partition_for(id) == state_partition && e.meta.state.is_prepare())
            .map(|(id, e)| (id.clone(), e.meta.clone()))
            .collect();
        for (id, meta) in owed {
            self.outputs
                .push(TxnOutput::Note("kafka.txn_markers_resent_after_load"));
            self.send_markers(&id, &meta);
        }
    }

    /// This broker no longer leads `state_partition`: forget its ids. Requests waiting on a
    /// write are answered NOT_COORDINATOR (Kafka's `removeTransactionsForTxnTopicPartition`).
    pub fn unload(&mut self, state_partition: i32) {
        self.owned.remove(&state_partition);
        let ids: Vec<String> = self
            .txns
            .keys()
            .filter(|id| self.partition_for(id) == state_partition)
            .cloned()
            .collect();
        for id in ids {
            let entry = self.txns.remove(&id).expect("listed above");
            if let Some(pending) = entry.pending {
                self.writes.remove(&pending.write);
                self.answer_failed(pending.after, KafkaError::NotCoordinator);
            }
        }
    }

    /// InitProducerId with a transactional id. `expected` is the producer id and epoch the
    /// client already has (KIP-360), or `None` at startup; `fresh_producer_id` hands out a
    /// new producer id when one is needed.
    pub fn init_producer_id(
        &mut self,
        call: CallId,
        transactional_id: &str,
        timeout_ms: u32,
        expected: Option<(i64, i16)>,
        now_ms: u64,
        fresh_producer_id: &mut dyn FnMut() -> Option<i64>,
    ) -> InitStarted {
        let answer = |e| TxnAnswer::InitProducerId(Err(e));
        if let Err(error) = self.check_owner(transactional_id) {
            self.answer(call, answer(error));
            return InitStarted::Started;
        }
        if timeout_ms == 0 || timeout_ms > self.max_timeout_ms {
            self.answer(call, answer(KafkaError::InvalidTransactionTimeout));
            return InitStarted::Started;
        }
        if !self.txns.contains_key(transactional_id) {
            if self.txns.len() >= TRANSACTIONAL_IDS_MAX {
                self.answer(call, answer(KafkaError::CoordinatorNotAvailable));
                return InitStarted::Started;
            }
            let Some(producer_id) = fresh_producer_id() else {
                return InitStarted::NeedProducerIds;
            };
            let meta = TxnMetadata::new(producer_id, timeout_ms, now_ms);
            self.txns
                .insert(transactional_id.to_string(), Entry { meta, pending: None });
        }
        let entry = &self.txns[transactional_id];
        let meta = entry.meta.clone();
        if entry.pending.is_some() || meta.state.is_prepare() {
            self.answer(call, answer(KafkaError::ConcurrentTransactions));
            return InitStarted::Started;
        }
        if let Some(expected) = expected {
            if !expected_is_valid(&meta, expected) {
                self.answer(call, answer(KafkaError::ProducerFenced));
                return InitStarted::Started;
            }
        }
        if meta.state == TxnState::Ongoing {
            // Fence the open transaction: bump, abort it, and let the caller ask again.
            let target = fence_abort(&meta, now_ms);
            self.outputs.push(TxnOutput::Note("kafka.txn_fenced_by_init"));
            self.write(transactional_id, target, AfterWrite::FenceAbort(call));
            return InitStarted::Started;
        }
        match self.bumped_for_init(&meta, timeout_ms, expected, now_ms, fresh_producer_id) {
            Ok(Some(target)) => self.write(transactional_id, target, AfterWrite::AnswerInit(call)),
            Ok(None) => self.answer(
                call,
                TxnAnswer::InitProducerId(Ok((meta.producer_id, meta.producer_epoch))),
            ),
            Err(InitError::Kafka(error)) => self.answer(call, answer(error)),
            Err(InitError::NeedProducerIds) => return InitStarted::NeedProducerIds,
        }
        InitStarted::Started
    }

    /// Kafka's `prepareIncrementProducerEpoch` and `prepareProducerIdRotation`, for an id with
    /// no open transaction. `Ok(None)`: a retry of a bump already made (KIP-360), answered
    /// with the current id and epoch.
    fn bumped_for_init(
        &self,
        meta: &TxnMetadata,
        timeout_ms: u32,
        expected: Option<(i64, i16)>,
        now_ms: u64,
        fresh_producer_id: &mut dyn FnMut() -> Option<i64>,
    ) -> Result<Option<TxnMetadata>, InitError> {
        let mut target = meta.clone();
        target.timeout_ms = timeout_ms;
        target.state = TxnState::Empty;
        target.partitions.clear();
        target.last_update_ms = now_ms;
        let rotate = meta.epoch_exhausted() && expected.is_none_or(|(_, e)| e == meta.producer_epoch);
        if rotate {
            let producer_id = fresh_producer_id().ok_or(InitError::NeedProducerIds)?;
            target.last_producer_id = meta.producer_id;
            target.producer_id = producer_id;
            target.last_producer_epoch = NO_PRODUCER_EPOCH;
            target.producer_epoch = 0;
            return Ok(Some(target));
        }
        match expected {
            Some((_, epoch)) if meta.producer_epoch != NO_PRODUCER_EPOCH && epoch != meta.producer_epoch => {
                if epoch == meta.last_producer_epoch {
                    return Ok(None); // the client's retry of the bump it missed the answer to
                }
                Err(InitError::Kafka(KafkaError::ProducerFenced))
            }
            _ => {
                target.last_producer_epoch = meta.producer_epoch;
                target.producer_epoch = meta.producer_epoch + 1;
                Ok(Some(target))
            }
        }
    }

    /// AddPartitionsToTxn: the partitions join the open transaction (opening it if none).
    pub fn add_partitions(
        &mut self,
        call: CallId,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<TopicPartition>,
        now_ms: u64,
    ) {
        let fail = |e| TxnAnswer::AddPartitions(Err(e));
        let meta = match self.current(transactional_id, producer_id, producer_epoch) {
            Ok(meta) => meta,
            Err(error) => return self.answer(call, fail(error)),
        };
        if meta.state.is_prepare() {
            return self.answer(call, fail(KafkaError::ConcurrentTransactions));
        }
        if meta.state == TxnState::Ongoing && partitions.iter().all(|p| meta.partitions.contains(p)) {
            return self.answer(call, TxnAnswer::AddPartitions(Ok(())));
        }
        if meta.partitions.len() + partitions.len() > TXN_PARTITIONS_MAX {
            return self.answer(call, fail(KafkaError::InvalidTxnState));
        }
        let mut target = meta.clone();
        if meta.state != TxnState::Ongoing {
            target.start_ms = now_ms;
        }
        target.state = TxnState::Ongoing;
        target.partitions.extend(partitions);
        target.last_update_ms = now_ms;
        self.write(transactional_id, target, AfterWrite::AnswerAdd(call));
    }

    /// The id's committed metadata, if the caller's producer id and epoch are current and no
    /// transition is in flight.
    fn current(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<TxnMetadata, KafkaError> {
        self.check_owner(transactional_id)?;
        let entry = self
            .txns
            .get(transactional_id)
            .ok_or(KafkaError::InvalidProducerIdMapping)?;
        if entry.meta.producer_id != producer_id {
            return Err(KafkaError::InvalidProducerIdMapping);
        }
        if entry.meta.producer_epoch != epoch {
            return Err(KafkaError::ProducerFenced);
        }
        if entry.pending.is_some() {
            return Err(KafkaError::ConcurrentTransactions);
        }
        Ok(entry.meta.clone())
    }

    /// EndTxn from the producer: commit or abort its transaction.
    pub fn end_txn(
        &mut self,
        call: CallId,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        now_ms: u64,
    ) {
        let decided = match self.protocol {
            TxnProtocol::V1 => self.end_txn_v1(transactional_id, producer_id, producer_epoch, commit, now_ms),
            TxnProtocol::V2 => self.end_txn_v2(transactional_id, producer_id, producer_epoch, commit, now_ms),
        };
        match decided {
            Ok(EndDecision::Write(target)) => {
                self.write(transactional_id, target, AfterWrite::AnswerEnd(call))
            }
            Ok(EndDecision::Done(meta)) => {
                self.answer(
                    call,
                    TxnAnswer::EndTxn(Ok((meta.producer_id, meta.producer_epoch))),
                );
            }
            Err(error) => {
                if error == KafkaError::ProducerFenced {
                    // For the timeline: a late or zombie EndTxn refused by its old epoch.
                    self.outputs.push(TxnOutput::Note("kafka.txn_end_txn_fenced"));
                }
                self.answer(call, TxnAnswer::EndTxn(Err(error)))
            }
        }
    }

    /// Before KIP-890: same epoch; a CompleteCommit answers any commit with NONE (a retry, as
    /// far as the coordinator can tell) and an Ongoing one is prepared whatever transaction
    /// the request was meant for.
    fn end_txn_v1(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now_ms: u64,
    ) -> Result<EndDecision, KafkaError> {
        let meta = self.current(transactional_id, producer_id, epoch)?;
        match (meta.state, commit) {
            (TxnState::Ongoing, _) => Ok(EndDecision::Write(prepared(
                &meta,
                commit,
                meta.producer_epoch,
                now_ms,
            ))),
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                Ok(EndDecision::Done(meta))
            }
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(KafkaError::ConcurrentTransactions)
            }
            _ => Err(KafkaError::InvalidTxnState),
        }
    }

    /// Transaction version 2: the epoch is bumped at every EndTxn and the markers carry the
    /// new one. A request with the previous epoch is a retry only if the transaction it
    /// ended is the last one; otherwise it is fenced.
    fn end_txn_v2(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now_ms: u64,
    ) -> Result<EndDecision, KafkaError> {
        self.check_owner(transactional_id)?;
        let entry = self
            .txns
            .get(transactional_id)
            .ok_or(KafkaError::InvalidProducerIdMapping)?;
        let meta = &entry.meta;
        if meta.producer_id != producer_id {
            return Err(KafkaError::InvalidProducerIdMapping);
        }
        let is_retry = epoch != NO_PRODUCER_EPOCH && epoch == meta.last_producer_epoch;
        let same_result = matches!(
            (meta.state, commit),
            (TxnState::PrepareCommit | TxnState::CompleteCommit, true)
                | (TxnState::PrepareAbort | TxnState::CompleteAbort, false)
        );
        if is_retry && same_result {
            return match meta.state.is_prepare() || entry.pending.is_some() {
                true => Err(KafkaError::ConcurrentTransactions),
                false => Ok(EndDecision::Done(meta.clone())),
            };
        }
        let meta = self.current(transactional_id, producer_id, epoch)?;
        if meta.epoch_exhausted() {
            // Kafka rotates the producer id here; we bound runs well below 32,766 transactions.
            return Err(KafkaError::ProducerFenced);
        }
        let bumped = meta.producer_epoch + 1;
        match (meta.state, commit) {
            (TxnState::Ongoing, _) => Ok(EndDecision::Write(prepared(&meta, commit, bumped, now_ms))),
            // TV2 lets a producer abort with nothing added, to bump its epoch.
            (TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort, false) => {
                Ok(EndDecision::Write(prepared(&meta, false, bumped, now_ms)))
            }
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(KafkaError::ConcurrentTransactions)
            }
            _ => Err(KafkaError::InvalidTxnState),
        }
    }

    /// KIP-890 part 1's check by a partition leader before the first transactional batch of
    /// a producer: is `partition` in the open transaction of this producer id and epoch?
    pub fn verify(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partition: &TopicPartition,
    ) -> Result<(), KafkaError> {
        let meta = self.current(transactional_id, producer_id, epoch)?;
        match meta.state == TxnState::Ongoing && meta.partitions.contains(partition) {
            true => Ok(()),
            false => Err(KafkaError::InvalidTxnState),
        }
    }

    /// Time passes: open transactions past their timeout are aborted with an epoch bump
    /// (Kafka's `abortTimedOutTransactions`), checked every
    /// [`ABORT_TIMED_OUT_TRANSACTIONS_INTERVAL_MS`].
    pub fn tick(&mut self, now_ms: u64) {
        if now_ms < self.last_timeout_check_ms + ABORT_TIMED_OUT_TRANSACTIONS_INTERVAL_MS {
            return;
        }
        self.last_timeout_check_ms = now_ms;
        let timed_out: Vec<(String, TxnMetadata)> = self
            .txns
            .iter()
            .filter(|(_, e)| e.pending.is_none() && e.meta.state == TxnState::Ongoing)
            .filter(|(_, e)| e.meta.start_ms + u64::from(e.meta.timeout_ms) < now_ms)
            .map(|(id, e)| (id.clone(), e.meta.clone()))
            .collect();
        for (id, meta) in timed_out {
            self.outputs.push(TxnOutput::Note("kafka.txn_timed_out_aborted"));
            self.write(&id, fence_abort(&meta, now_ms), AfterWrite::TimeoutAbort);
        }
    }

    /// Every partition of the transaction has its marker: write the completion.
    pub fn markers_written(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        now_ms: u64,
    ) {
        let Some(entry) = self.txns.get(transactional_id) else {
            return; // unloaded meanwhile: the new coordinator sends the markers again
        };
        let meta = &entry.meta;
        if entry.pending.is_some()
            || !meta.state.is_prepare()
            || meta.producer_id != producer_id
            || meta.producer_epoch != producer_epoch
        {
            return; // stale: another round completed it already
        }
        let mut target = meta.clone();
        target.state = match meta.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            _ => TxnState::CompleteAbort,
        };
        target.partitions.clear();
        target.last_update_ms = now_ms;
        self.write(transactional_id, target, AfterWrite::Complete);
    }

    /// A state write came back: committed (`Ok`) or failed with the produce's error.
    pub fn persisted(&mut self, write: WriteId, result: Result<(), KafkaError>) {
        let Some(id) = self.writes.remove(&write) else {
            return; // its partition was unloaded
        };
        let entry = self.txns.get_mut(&id).expect("a write's id is kept");
        let pending = entry.pending.take().expect("a write in flight is pending");
        assert_eq!(pending.write, write);
        if let Err(error) = result {
            if pending.after == AfterWrite::Complete {
                // The markers are written; only the completion is owed. Kafka retries it.
                let meta = entry.meta.clone();
                self.send_markers(&id, &meta);
                return;
            }
            // Kafka's appendTransactionToLog maps produce errors to what clients retry.
            let mapped = match error {
                KafkaError::NotLeaderOrFollower => KafkaError::NotCoordinator,
                _ => KafkaError::CoordinatorNotAvailable,
            };
            return self.answer_failed(pending.after, mapped);
        }
        entry.meta = pending.target.clone();
        let meta = pending.target;
        match pending.after {
            AfterWrite::AnswerInit(call) => {
                self.answer(
                    call,
                    TxnAnswer::InitProducerId(Ok((meta.producer_id, meta.producer_epoch))),
                );
            }
            AfterWrite::AnswerAdd(call) => self.answer(call, TxnAnswer::AddPartitions(Ok(()))),
            AfterWrite::AnswerEnd(call) => {
                self.answer(
                    call,
                    TxnAnswer::EndTxn(Ok((meta.producer_id, meta.producer_epoch))),
                );
                self.send_markers(&id, &meta);
            }
            AfterWrite::FenceAbort(call) => {
                self.answer(
                    call,
                    TxnAnswer::InitProducerId(Err(KafkaError::ConcurrentTransactions)),
                );
                self.send_markers(&id, &meta);
            }
            AfterWrite::TimeoutAbort => self.send_markers(&id, &meta),
            AfterWrite::Complete => {}
        }
    }

    fn send_markers(&mut self, id: &str, meta: &TxnMetadata) {
        let commit = meta.state == TxnState::PrepareCommit;
        let coordinator_epoch = self.owned.get(&self.partition_for(id)).copied().unwrap_or(-1);
        self.outputs.push(TxnOutput::Note(match commit {
            true => "kafka.txn_prepare_commit",
            false => "kafka.txn_prepare_abort",
        }));
        self.outputs.push(TxnOutput::WriteMarkers(Markers {
            transactional_id: id.to_string(),
            producer_id: meta.producer_id,
            producer_epoch: meta.producer_epoch,
            commit,
            coordinator_epoch,
            partitions: meta.partitions.iter().cloned().collect(),
        }));
    }

    /// Starts writing `target` as the id's next state.
    fn write(&mut self, id: &str, target: TxnMetadata, after: AfterWrite) {
        let write = WriteId(self.next_write);
        self.next_write += 1;
        let entry = self.txns.get_mut(id).expect("written ids are kept");
        assert!(
            entry.pending.is_none(),
            "one transition at a time per transactional id"
        );
        self.outputs.push(TxnOutput::Persist {
            write,
            state_partition: partition_for(id, self.state_partitions),
            key: encode_key(id),
            value: encode_value(&target),
        });
        entry.pending = Some(Pending { write, target, after });
        self.writes.insert(write, id.to_string());
    }

    /// Answers a call the handler refused before it reached the coordinator's state.
    pub fn refuse(&mut self, call: CallId, answer: TxnAnswer) {
        self.answer(call, answer);
    }

    fn answer(&mut self, call: CallId, answer: TxnAnswer) {
        self.outputs.push(TxnOutput::Answer { call, answer });
    }

    fn answer_failed(&mut self, after: AfterWrite, error: KafkaError) {
        let answer = match after {
            AfterWrite::AnswerInit(call) | AfterWrite::FenceAbort(call) => {
                (call, TxnAnswer::InitProducerId(Err(error)))
            }
            AfterWrite::AnswerAdd(call) => (call, TxnAnswer::AddPartitions(Err(error))),
            AfterWrite::AnswerEnd(call) => (call, TxnAnswer::EndTxn(Err(error))),
            AfterWrite::TimeoutAbort | AfterWrite::Complete => return,
        };
        self.answer(answer.0, answer.1);
    }
}

enum InitError {
    Kafka(KafkaError),
    NeedProducerIds,
}

enum EndDecision {
    Write(TxnMetadata),
    /// Nothing to write: answered with this metadata's producer id and epoch.
    Done(TxnMetadata),
}

/// Kafka's `isValidProducerId` for an InitProducerId that names the client's id and epoch.
fn expected_is_valid(meta: &TxnMetadata, (producer_id, epoch): (i64, i16)) -> bool {
    meta.producer_epoch == NO_PRODUCER_EPOCH
        || producer_id == meta.producer_id
        || (producer_id == meta.last_producer_id && epoch >= i16::MAX - 1)
}

/// The open transaction aborted with a bumped epoch, so the old instance is fenced at the
/// coordinator and, through the markers, at every partition.
fn fence_abort(meta: &TxnMetadata, now_ms: u64) -> TxnMetadata {
    let mut target = meta.clone();
    target.producer_epoch = meta.producer_epoch.saturating_add(1);
    target.last_producer_epoch = NO_PRODUCER_EPOCH;
    target.state = TxnState::PrepareAbort;
    target.last_update_ms = now_ms;
    target
}

fn prepared(meta: &TxnMetadata, commit: bool, epoch: i16, now_ms: u64) -> TxnMetadata {
    let mut target = meta.clone();
    if epoch != meta.producer_epoch {
        target.last_producer_epoch = meta.producer_epoch;
        target.producer_epoch = epoch;
    }
    target.state = match commit {
        true => TxnState::PrepareCommit,
        false => TxnState::PrepareAbort,
    };
    target.last_update_ms = now_ms;
    target
}

#[cfg(test)]
#[path = "txn_coordinator_tests.rs"]
mod tests;
