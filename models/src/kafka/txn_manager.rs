//! The transactional producer's state machine, sans I/O (Kafka's `TransactionManager` with a
//! `transactional.id`; reference §2.5, KIP-98, KIP-360, KIP-890). The driver asks
//! [`TxnManager::next_request`] what to send to the coordinator, sends it, and hands the
//! answer back; the application calls [`TxnManager::begin`], [`TxnManager::begin_commit`]
//! and [`TxnManager::begin_abort`] as `beginTransaction`, `commitTransaction` and
//! `abortTransaction` do.
//!
//! - FindCoordinator (key type 1) first, and again after NOT_COORDINATOR or
//!   COORDINATOR_NOT_AVAILABLE; then InitProducerId with the transactional id and
//!   `transaction.timeout.ms`. Another instance's InitProducerId bumps the epoch: this one's
//!   next request gets PRODUCER_FENCED (or INVALID_PRODUCER_EPOCH) and it stops for good,
//!   as Java's producer turns fatal.
//! - A partition a record goes to joins the transaction by AddPartitionsToTxn before its
//!   first batch may be sent (`isSendToPartitionAllowed`). Kafka 4's transaction version 2
//!   lets the partition leader add it; the brokers here take it from the producer under both
//!   protocols, which only moves the request, not the window.
//! - EndTxn is sent only once no batch of the transaction is incomplete ("Do not send the
//!   EndTxn until all batches have been flushed"), and not at all when nothing was added.
//!   Under [`ClientProtocol::V2`] its answer carries the bumped epoch the next transaction
//!   uses; under V1 the epoch stays, unless a batch failed during the transaction: then the
//!   client bumps it itself with InitProducerId naming its id and epoch (KIP-360,
//!   `epochBumpRequired`) once the abort is done. An abort with no AddPartitionsToTxn answered
//!   sends no EndTxn but still that bump (Java: only an answered add sets
//!   `transactionStarted`; the error state fails a re-enqueued add). If the coordinator did
//!   write the add, the bump finds this producer's own transaction open, fences it, and the
//!   retry is PRODUCER_FENCED: the producer fenced itself, as Java's would.
//! - A failed batch puts an open transaction in the abortable error state: it can only be
//!   aborted. CONCURRENT_TRANSACTIONS and COORDINATOR_LOAD_IN_PROGRESS are retried.
//! - `sendOffsetsToTransaction` ([`TxnManager::send_offsets`], the child `txn_offsets.rs`):
//!   AddOffsetsToTxn, the group's coordinator, TxnOffsetCommit, all before the EndTxn. An
//!   abort drops offsets not yet committed (the abort discards them at the group coordinator
//!   anyway; Java fails the queued handlers only on an error).

// A sans-I/O core: every function reads at once (ARCHITECTURE.md, "Short functions").
#![deny(clippy::too_many_lines)]

use super::accumulator::Partition;
use super::error::KafkaError;
use super::txn_offsets::{commit_answer, CommitAnswer, OffsetsStage, PendingOffsets};
use std::collections::BTreeSet;

/// The client's side of `transaction_protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientProtocol {
    /// Before KIP-890: one epoch for every transaction.
    V1,
    /// KIP-890 part 2: EndTxn answers the next transaction's epoch.
    V2,
}

/// Kafka's `TransactionManager.State`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnState {
    Uninitialized,
    Initializing,
    Ready,
    InTransaction,
    Committing,
    Aborting,
    AbortableError,
    /// Fenced or broken: nothing more is sent.
    Fatal(KafkaError),
}

/// A request for the coordinator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnRequest {
    FindCoordinator,
    /// `expected`: the id and epoch to bump (KIP-360), or `None` at start.
    InitProducerId {
        expected: Option<(i64, i16)>,
    },
    AddPartitions {
        producer: (i64, i16),
        partitions: Vec<Partition>,
    },
    EndTxn {
        producer: (i64, i16),
        commit: bool,
    },
    /// AddOffsetsToTxn: the group's offsets partition joins the transaction.
    AddOffsets {
        producer: (i64, i16),
        group: String,
    },
    /// FindCoordinator with key type 0, for the group (sent apart, like FindCoordinator).
    FindGroupCoordinator {
        group: String,
    },
    /// TxnOffsetCommit to the group's coordinator.
    TxnOffsetCommit {
        producer: (i64, i16),
        offsets: PendingOffsets,
    },
}

/// How a transaction ended, as the application learns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnEnd {
    Committed,
    Aborted,
}

/// The most partitions one transaction may span here (a bound on memory).
pub const TXN_PARTITIONS_MAX: usize = 4096;

#[derive(Clone, Debug)]
pub struct TxnManager {
    protocol: ClientProtocol,
    state: TxnState,
    coordinator_known: bool,
    producer: Option<(i64, i16)>,
    /// Partitions a record went to, not yet asked for.
    new_partitions: BTreeSet<Partition>,
    /// Asked for, not yet answered.
    pending_partitions: BTreeSet<Partition>,
    /// In the transaction: batches may go there.
    partitions: BTreeSet<Partition>,
    epoch_bump_required: bool,
    /// A request is out: nothing else goes until its answer.
    in_flight: bool,
    /// A transaction that ended since [`TxnManager::take_ended`] was last called.
    ended: Option<TxnEnd>,
    /// `sendOffsetsToTransaction` offsets not yet committed to the group's coordinator.
    offsets: Option<PendingOffsets>,
    group_coordinator_known: bool,
}

impl TxnManager {
    pub fn new(protocol: ClientProtocol) -> TxnManager {
        TxnManager {
            protocol,
            state: TxnState::Uninitialized,
            coordinator_known: false,
            producer: None,
            new_partitions: BTreeSet::new(),
            pending_partitions: BTreeSet::new(),
            partitions: BTreeSet::new(),
            epoch_bump_required: false,
            in_flight: false,
            ended: None,
            offsets: None,
            group_coordinator_known: false,
        }
    }

    pub fn state(&self) -> &TxnState {
        &self.state
    }

    pub fn producer(&self) -> Option<(i64, i16)> {
        self.producer
    }

    pub fn is_fatal(&self) -> bool {
        matches!(self.state, TxnState::Fatal(_))
    }

    /// `initTransactions()`.
    pub fn initialize(&mut self) {
        assert_eq!(self.state, TxnState::Uninitialized, "initTransactions runs once");
        self.state = TxnState::Initializing;
    }

    /// `beginTransaction()`: only from Ready.
    pub fn begin(&mut self) -> Result<(), KafkaError> {
        if self.state != TxnState::Ready {
            return Err(KafkaError::InvalidTxnState);
        }
        self.state = TxnState::InTransaction;
        Ok(())
    }

    /// A record was appended for `partition` (`maybeAddPartition`).
    pub fn add_partition(&mut self, partition: Partition) {
        assert_eq!(self.state, TxnState::InTransaction, "send() inside a transaction");
        let known = self.partitions.contains(&partition) || self.pending_partitions.contains(&partition);
        if !known {
            assert!(
                self.partitions.len() + self.pending_partitions.len() + self.new_partitions.len()
                    < TXN_PARTITIONS_MAX,
                "more than {TXN_PARTITIONS_MAX} partitions in a transaction"
            );
            self.new_partitions.insert(partition);
        }
    }

    /// Whether batches for `partition` may be sent (`isSendToPartitionAllowed`).
    pub fn send_allowed(&self, partition: Partition) -> bool {
        self.partitions.contains(&partition)
    }

    /// The partitions batches may be sent to now.
    pub fn partitions(&self) -> &BTreeSet<Partition> {
        &self.partitions
    }

    /// `commitTransaction()`: from an open transaction; one with an error must abort.
    pub fn begin_commit(&mut self) -> Result<(), KafkaError> {
        match self.state {
            TxnState::InTransaction => {
                self.state = TxnState::Committing;
                Ok(())
            }
            _ => Err(KafkaError::InvalidTxnState),
        }
    }

    /// `abortTransaction()`: from an open transaction, with or without an error.
    pub fn begin_abort(&mut self) -> Result<(), KafkaError> {
        match self.state {
            TxnState::InTransaction | TxnState::AbortableError | TxnState::Committing => {
                self.state = TxnState::Aborting;
                self.offsets = None;
                Ok(())
            }
            _ => Err(KafkaError::InvalidTxnState),
        }
    }

    /// A batch of the transaction failed (Kafka `maybeTransitionToErrorState`): fencing is
    /// fatal; anything else leaves only an abort, and under V1 asks for a client epoch bump
    /// unless the transaction is ending already.
    pub fn batch_failed(&mut self, error: Option<KafkaError>) {
        if matches!(error, Some(KafkaError::ProducerFenced)) {
            self.state = TxnState::Fatal(KafkaError::ProducerFenced);
            return;
        }
        let completing = matches!(self.state, TxnState::Aborting);
        if self.protocol == ClientProtocol::V1 && !completing {
            self.epoch_bump_required = true;
        }
        if matches!(self.state, TxnState::InTransaction | TxnState::Committing) {
            self.state = TxnState::AbortableError;
        }
    }

    /// The next request for the coordinator, if one is due; `incomplete`: batches of the
    /// transaction not yet done.
    pub fn next_request(&mut self, incomplete: bool) -> Option<TxnRequest> {
        if self.in_flight || self.is_fatal() || self.state == TxnState::Uninitialized {
            return None;
        }
        if !self.coordinator_known {
            return self.sending(TxnRequest::FindCoordinator);
        }
        if self.state == TxnState::Initializing {
            let expected = self.epoch_bump_required.then_some(self.producer).flatten();
            return self.sending(TxnRequest::InitProducerId { expected });
        }
        let producer = self.producer.expect("initialized");
        let open = matches!(
            self.state,
            TxnState::InTransaction | TxnState::Committing | TxnState::Aborting
        );
        if open && !self.new_partitions.is_empty() && self.state != TxnState::Aborting {
            self.pending_partitions.append(&mut self.new_partitions);
            let partitions = self.pending_partitions.iter().copied().collect();
            return self.sending(TxnRequest::AddPartitions { producer, partitions });
        }
        if let Some(request) = self.offsets_request(producer) {
            return self.sending(request);
        }
        let ending = matches!(self.state, TxnState::Committing | TxnState::Aborting);
        if !ending || incomplete || !self.pending_partitions.is_empty() || self.offsets.is_some() {
            return None;
        }
        if self.partitions.is_empty() {
            // Nothing was added: no EndTxn (Java completes the transaction locally).
            self.complete(producer, self.ending());
            return None;
        }
        let commit = self.state == TxnState::Committing;
        self.sending(TxnRequest::EndTxn { producer, commit })
    }

    /// Whether [`TxnManager::next_request`] would have something to do now.
    pub fn has_request(&self, incomplete: bool) -> bool {
        if self.in_flight || self.is_fatal() || self.state == TxnState::Uninitialized {
            return false;
        }
        let adding = matches!(self.state, TxnState::InTransaction | TxnState::Committing)
            && !self.new_partitions.is_empty();
        let offsets =
            matches!(self.state, TxnState::InTransaction | TxnState::Committing) && self.offsets.is_some();
        let ending = matches!(self.state, TxnState::Committing | TxnState::Aborting)
            && !incomplete
            && self.pending_partitions.is_empty()
            && self.offsets.is_none();
        !self.coordinator_known || self.state == TxnState::Initializing || adding || offsets || ending
    }

    fn sending(&mut self, request: TxnRequest) -> Option<TxnRequest> {
        self.in_flight = true;
        Some(request)
    }

    /// The request went unanswered (timeout, disconnect): look the coordinator up again and
    /// send it again.
    pub fn on_no_answer(&mut self) {
        self.in_flight = false;
        self.coordinator_known = false;
        self.new_partitions.append(&mut self.pending_partitions);
    }

    pub fn on_find_coordinator(&mut self, found: Result<(), KafkaError>) {
        self.in_flight = false;
        self.coordinator_known = found.is_ok();
    }

    /// The InitProducerId answer.
    pub fn on_init(&mut self, answer: Result<(i64, i16), KafkaError>) {
        self.in_flight = false;
        match answer {
            Ok(producer) => {
                self.producer = Some(producer);
                self.epoch_bump_required = false;
                self.state = TxnState::Ready;
            }
            Err(error) => self.on_error(error),
        }
    }

    /// The AddPartitionsToTxn answer (one error for the whole request here).
    pub fn on_add_partitions(&mut self, answer: Result<(), KafkaError>) {
        self.in_flight = false;
        match answer {
            Ok(()) => self.partitions.append(&mut self.pending_partitions),
            Err(error) => {
                self.new_partitions.append(&mut self.pending_partitions);
                self.on_error(error);
            }
        }
    }

    /// The EndTxn answer: how the transaction ended, once it has.
    pub fn on_end_txn(&mut self, answer: Result<(i64, i16), KafkaError>) -> Option<TxnEnd> {
        self.in_flight = false;
        let ended = self.ending();
        match answer {
            Ok(producer) => {
                let next = match self.protocol {
                    // Transaction version 2: the answer's epoch is the next transaction's.
                    ClientProtocol::V2 => producer,
                    ClientProtocol::V1 => self.producer.expect("initialized"),
                };
                self.complete(next, ended);
                Some(ended)
            }
            Err(error) => {
                self.on_error(error);
                None
            }
        }
    }

    /// `sendOffsetsToTransaction(offsets, groupMetadata)`: only inside a transaction, one call
    /// at a time here; the offsets commit with the transaction.
    pub fn send_offsets(&mut self, offsets: PendingOffsets) -> Result<(), KafkaError> {
        if self.state != TxnState::InTransaction || self.offsets.is_some() {
            return Err(KafkaError::InvalidTxnState);
        }
        self.offsets = Some(offsets);
        Ok(())
    }

    /// Whether offsets of the open transaction are still to be committed.
    pub fn offsets_pending(&self) -> bool {
        self.offsets.is_some()
    }

    /// The offsets' next request, while the transaction may still commit.
    fn offsets_request(&mut self, producer: (i64, i16)) -> Option<TxnRequest> {
        if !matches!(self.state, TxnState::InTransaction | TxnState::Committing) {
            return None;
        }
        let pending = self.offsets.as_ref()?;
        Some(match pending.stage {
            OffsetsStage::AddToTxn => TxnRequest::AddOffsets {
                producer,
                group: pending.group.clone(),
            },
            OffsetsStage::FindGroupCoordinator => TxnRequest::FindGroupCoordinator {
                group: pending.group.clone(),
            },
            OffsetsStage::Commit => TxnRequest::TxnOffsetCommit {
                producer,
                offsets: pending.clone(),
            },
        })
    }

    fn offsets_stage(&mut self, stage: OffsetsStage) {
        if let Some(pending) = self.offsets.as_mut() {
            pending.stage = stage;
        }
    }

    /// The AddOffsetsToTxn answer: errors as AddPartitionsToTxn's.
    pub fn on_add_offsets(&mut self, answer: Result<(), KafkaError>) {
        self.in_flight = false;
        match answer {
            Ok(()) => match self.group_coordinator_known {
                true => self.offsets_stage(OffsetsStage::Commit),
                false => self.offsets_stage(OffsetsStage::FindGroupCoordinator),
            },
            Err(error) => self.on_error(error),
        }
    }

    /// The group's FindCoordinator answer (or no answer).
    pub fn on_find_group_coordinator(&mut self, found: Result<(), KafkaError>) {
        self.in_flight = false;
        self.group_coordinator_known = found.is_ok();
        if found.is_ok() {
            self.offsets_stage(OffsetsStage::Commit);
        }
    }

    /// The TxnOffsetCommit answer by its error code, or `None` when it went unanswered (the
    /// group's coordinator is looked up again, as after NOT_COORDINATOR).
    pub fn on_txn_offset_commit(&mut self, code: Option<i16>) {
        self.in_flight = false;
        let answer = code.map_or(CommitAnswer::Retry { rediscover: true }, commit_answer);
        match answer {
            CommitAnswer::Done => self.offsets = None,
            CommitAnswer::Retry { rediscover: true } => {
                self.group_coordinator_known = false;
                self.offsets_stage(OffsetsStage::FindGroupCoordinator);
            }
            CommitAnswer::Retry { rediscover: false } => {}
            CommitAnswer::Abortable(_) => {
                self.offsets = None;
                if matches!(self.state, TxnState::InTransaction | TxnState::Committing) {
                    self.state = TxnState::AbortableError;
                }
            }
            CommitAnswer::Fatal => self.state = TxnState::Fatal(KafkaError::ProducerFenced),
        }
    }

    fn ending(&self) -> TxnEnd {
        match self.state {
            TxnState::Committing => TxnEnd::Committed,
            _ => TxnEnd::Aborted,
        }
    }

    /// The transaction that ended since the last call, if any.
    pub fn take_ended(&mut self) -> Option<TxnEnd> {
        self.ended.take()
    }

    /// Kafka `completeTransaction`: Ready, or Initializing to bump the epoch first.
    fn complete(&mut self, producer: (i64, i16), ended: TxnEnd) {
        self.ended = Some(ended);
        self.producer = Some(producer);
        self.state = match self.epoch_bump_required {
            true => TxnState::Initializing,
            false => TxnState::Ready,
        };
        self.new_partitions.clear();
        self.pending_partitions.clear();
        self.partitions.clear();
        self.offsets = None;
    }

    /// The handlers' shared error handling: coordinator moves and concurrent transactions
    /// are retried, fencing and the rest are fatal.
    fn on_error(&mut self, error: KafkaError) {
        match error {
            KafkaError::NotCoordinator | KafkaError::CoordinatorNotAvailable => {
                self.coordinator_known = false;
            }
            KafkaError::ConcurrentTransactions | KafkaError::CoordinatorLoadInProgress => {}
            // INVALID_PRODUCER_EPOCH from a transactional request is a fence too (Java
            // turns it into ProducerFencedException).
            KafkaError::ProducerFenced | KafkaError::InvalidProducerEpoch => {
                self.state = TxnState::Fatal(KafkaError::ProducerFenced);
            }
            other => self.state = TxnState::Fatal(other),
        }
    }
}

#[cfg(test)]
#[path = "txn_manager_tests.rs"]
mod tests;
