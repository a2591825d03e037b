//! A broker's transaction coordinator at work, sans I/O: the [`TxnCoordinator`] core wired to
//! the broker's own replicas (Kafka's `TransactionStateManager.appendTransactionToLog` and
//! `TransactionMarkerChannelManager`).
//!
//! - Leading a `__transaction_state` partition makes this broker the coordinator of its ids:
//!   the coordinator loads the partition's log when the broker becomes leader, with the
//!   leader epoch as coordinator epoch, and forgets it when leadership moves.
//! - A state record is produced to that partition with acks=all; its answer is the write's.
//! - Markers for a partition this broker leads are appended here (acks=all, as Kafka's
//!   WriteTxnMarkers handler does); the others go out as [`BrokerOutput::WriteMarkers`] to
//!   the partitions' leaders, and come back through [`Broker::markers_answered`]. A failed
//!   partition is tried again every [`MARKER_RETRY_MS`] until it takes its marker, as Kafka
//!   retries until the partition has it.

// A sans-I/O core: every function reads at once (ARCHITECTURE.md, "Short functions").
#![deny(clippy::too_many_lines)]

use super::batch::{Batch, ControlType, Record};
use super::broker::{Broker, BrokerOutput, RequestId};
use super::controller::TopicPartition;
use super::error::KafkaError;
use super::partition::{Acks, ReplicaLog};
use super::txn_coordinator::{CallId, InitStarted, Markers, TxnCoordinator, TxnOutput, WriteId};
use super::txn_state::TRANSACTION_STATE_TOPIC;
use std::collections::{BTreeMap, BTreeSet};

/// How long a state write or a local marker append may wait for acks=all
/// (`transaction.state.log` writes use the request timeout, 30 s).
pub const TXN_WRITE_TIMEOUT_MS: u64 = 30_000;
/// How often partitions that refused their marker are tried again.
pub const MARKER_RETRY_MS: u64 = 100;
/// Internal produce requests get ids from this bit up, apart from the drivers' ids.
const INTERNAL_REQUEST_BASE: u64 = 1 << 62;

/// What an internal produce request was for.
#[derive(Clone, Debug)]
pub(super) enum Internal {
    StateWrite(WriteId),
    Marker {
        transactional_id: String,
        partition: TopicPartition,
    },
}

/// One transaction's markers on their way to its partitions.
#[derive(Clone, Debug)]
pub(super) struct MarkerRound {
    markers: Markers,
    /// Partitions not yet answered NONE.
    pending: BTreeSet<TopicPartition>,
    /// Partitions to (re)send at the next retry.
    to_send: BTreeSet<TopicPartition>,
    next_retry_ms: u64,
}

/// The transaction side of one broker.
pub(super) struct TxnSide {
    pub(super) coordinator: TxnCoordinator,
    pub(super) internal: BTreeMap<RequestId, Internal>,
    next_internal: u64,
    pub(super) rounds: BTreeMap<String, MarkerRound>,
    /// The state partitions loaded, with the leader epoch they were loaded in.
    loaded: BTreeMap<i32, i32>,
}

impl TxnSide {
    pub(super) fn new(coordinator: TxnCoordinator) -> TxnSide {
        TxnSide {
            coordinator,
            internal: BTreeMap::new(),
            next_internal: INTERNAL_REQUEST_BASE,
            rounds: BTreeMap::new(),
            loaded: BTreeMap::new(),
        }
    }

    fn next_request(&mut self) -> RequestId {
        self.next_internal += 1;
        RequestId(self.next_internal)
    }
}

fn state_partition(partition: i32) -> TopicPartition {
    TopicPartition {
        topic: TRANSACTION_STATE_TOPIC.to_string(),
        partition,
    }
}

impl<L: ReplicaLog> Broker<L> {
    /// The coordinator, for requests the handler maps.
    pub fn txn_coordinator(&mut self) -> &mut TxnCoordinator {
        &mut self.txn.coordinator
    }

    /// `transaction.state.log.num.partitions`.
    pub fn txn_state_partitions(&self) -> i32 {
        self.txn.coordinator.state_partitions()
    }

    /// The `__transaction_state` partition whose leader coordinates `transactional_id`.
    pub fn txn_state_partition(&self, transactional_id: &str) -> i32 {
        self.txn.coordinator.partition_for(transactional_id)
    }

    /// InitProducerId with a transactional id, with this broker's producer ids.
    pub fn txn_init_producer_id(
        &mut self,
        call: CallId,
        transactional_id: &str,
        timeout_ms: u32,
        expected: Option<(i64, i16)>,
        now_ms: u64,
    ) -> InitStarted {
        let mut ids = self.producer_ids;
        let mut fresh = || {
            let (next, end) = ids;
            (next < end).then(|| {
                ids.0 += 1;
                next
            })
        };
        let started = self.txn.coordinator.init_producer_id(
            call,
            transactional_id,
            timeout_ms,
            expected,
            now_ms,
            &mut fresh,
        );
        self.producer_ids = ids;
        self.pump_txn(now_ms);
        started
    }

    /// Carries out what the coordinator asked after a request the handler gave it.
    pub fn pump_transactions(&mut self, now_ms: u64) {
        self.pump_txn(now_ms);
    }

    /// After a replica's leadership may have changed: load or unload state partitions.
    pub(super) fn sync_txn_partitions(&mut self, now_ms: u64) {
        let mut leading: BTreeMap<i32, i32> = BTreeMap::new();
        for (tp, replica) in &self.replicas {
            if tp.topic == TRANSACTION_STATE_TOPIC && replica.is_leader() {
                leading.insert(tp.partition, replica.state().leader_epoch);
            }
        }
        let lost: Vec<i32> = self
            .txn
            .loaded
            .iter()
            .filter(|(p, epoch)| leading.get(p) != Some(epoch))
            .map(|(p, _)| *p)
            .collect();
        for p in lost {
            self.txn.loaded.remove(&p);
            self.txn.coordinator.unload(p);
        }
        for (p, epoch) in leading {
            if self.txn.loaded.contains_key(&p) {
                continue;
            }
            let replica = &self.replicas[&state_partition(p)];
            let log = replica.log();
            let batches = log.read(0, log.log_end_offset(), usize::MAX).unwrap_or_default();
            let records: Vec<(&[u8], &[u8])> = batches
                .iter()
                .flat_map(|b| b.records.iter())
                .filter_map(|r| Some((r.key.as_deref()?, r.value.as_deref()?)))
                .collect();
            self.txn.coordinator.load(p, epoch, records);
            self.txn.loaded.insert(p, epoch);
        }
        self.pump_txn(now_ms);
    }

    /// Carries out what the coordinator asked: state writes, markers, answers, notes.
    pub(super) fn pump_txn(&mut self, now_ms: u64) {
        loop {
            let outputs = self.txn.coordinator.take_outputs();
            if outputs.is_empty() {
                return;
            }
            for output in outputs {
                match output {
                    TxnOutput::Answer { call, answer } => self.outputs.push(BrokerOutput::TxnAnswered {
                        request: RequestId(call.0),
                        answer,
                    }),
                    TxnOutput::Persist {
                        write,
                        state_partition: p,
                        key,
                        value,
                    } => self.write_state(write, p, key, value, now_ms),
                    TxnOutput::WriteMarkers(markers) => self.start_markers(markers, now_ms),
                    TxnOutput::Note(name) => self.outputs.push(BrokerOutput::Note(name)),
                }
            }
        }
    }

    fn write_state(&mut self, write: WriteId, p: i32, key: Vec<u8>, value: Vec<u8>, now_ms: u64) {
        let record = Record {
            key: Some(key),
            value: Some(value),
        };
        let request = self.txn.next_request();
        self.txn.internal.insert(request, Internal::StateWrite(write));
        let batch = vec![(state_partition(p), Ok(Batch::plain(vec![record])))];
        if let Some(answers) = self.produce(request, Acks::All, TXN_WRITE_TIMEOUT_MS, batch, now_ms) {
            self.internal_answered(request, &answers[0].1, now_ms);
        }
    }

    fn start_markers(&mut self, markers: Markers, now_ms: u64) {
        let partitions: BTreeSet<TopicPartition> = markers.partitions.iter().cloned().collect();
        let id = markers.transactional_id.clone();
        if partitions.is_empty() {
            self.txn
                .coordinator
                .markers_written(&id, markers.producer_id, markers.producer_epoch, now_ms);
            return;
        }
        let round = MarkerRound {
            markers,
            pending: partitions.clone(),
            to_send: partitions,
            next_retry_ms: now_ms,
        };
        self.txn.rounds.insert(id.clone(), round);
        self.send_markers(&id, now_ms);
    }

    /// Sends the round's markers that are due: appended here for partitions this broker
    /// leads, asked of their leaders for the others (grouped by leader).
    fn send_markers(&mut self, id: &str, now_ms: u64) {
        let Some(round) = self.txn.rounds.get_mut(id) else {
            return;
        };
        let due: Vec<TopicPartition> = std::mem::take(&mut round.to_send).into_iter().collect();
        round.next_retry_ms = now_ms + MARKER_RETRY_MS;
        let markers = round.markers.clone();
        let mut remote: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
        for tp in due {
            let leader = self.metadata.get(&tp).and_then(|s| s.leader);
            match leader {
                Some(leader) if leader == self.id => self.append_marker(&markers, tp, now_ms),
                Some(leader) => remote.entry(leader).or_default().push(tp),
                None => self.marker_failed(id, tp),
            }
        }
        for (leader, partitions) in remote {
            let markers = Markers {
                partitions,
                ..markers.clone()
            };
            self.outputs.push(BrokerOutput::WriteMarkers { leader, markers });
        }
    }

    fn append_marker(&mut self, markers: &Markers, tp: TopicPartition, now_ms: u64) {
        let request = self.txn.next_request();
        let internal = Internal::Marker {
            transactional_id: markers.transactional_id.clone(),
            partition: tp.clone(),
        };
        self.txn.internal.insert(request, internal);
        let batch = vec![(tp, Ok(marker_batch(markers)))];
        if let Some(answers) = self.produce(request, Acks::All, TXN_WRITE_TIMEOUT_MS, batch, now_ms) {
            self.internal_answered(request, &answers[0].1, now_ms);
        }
    }

    fn marker_failed(&mut self, id: &str, tp: TopicPartition) {
        if let Some(round) = self.txn.rounds.get_mut(id) {
            round.to_send.insert(tp);
        }
    }

    /// A partition answered its marker (here, or from its leader over the network).
    fn marker_answered(&mut self, id: &str, tp: TopicPartition, result: Result<(), KafkaError>, now_ms: u64) {
        let Some(round) = self.txn.rounds.get_mut(id) else {
            return;
        };
        match result {
            // Kafka's marker handler drops a partition whose producer epoch moved past the
            // marker's: a newer marker fenced it, so this one is done with.
            Ok(())
            | Err(KafkaError::InvalidProducerEpoch)
            | Err(KafkaError::TransactionCoordinatorFenced) => {
                round.pending.remove(&tp);
            }
            Err(_) => {
                round.to_send.insert(tp);
                return;
            }
        }
        if round.pending.is_empty() {
            let round = self.txn.rounds.remove(id).expect("present");
            let m = round.markers;
            self.txn.coordinator.markers_written(
                &m.transactional_id,
                m.producer_id,
                m.producer_epoch,
                now_ms,
            );
        }
    }

    /// The answer to a WriteTxnMarkers this broker sent for `markers`: per partition.
    pub fn markers_answered(
        &mut self,
        markers: &Markers,
        answers: Vec<(TopicPartition, Result<(), KafkaError>)>,
        now_ms: u64,
    ) {
        for (tp, result) in answers {
            self.marker_answered(&markers.transactional_id, tp, result, now_ms);
        }
        self.pump_txn(now_ms);
    }

    /// An internal produce (a state write or a local marker) was answered.
    pub(super) fn internal_answered(
        &mut self,
        request: RequestId,
        result: &Result<i64, KafkaError>,
        now_ms: u64,
    ) {
        let Some(internal) = self.txn.internal.remove(&request) else {
            return;
        };
        let result = result.map(|_| ());
        match internal {
            Internal::StateWrite(write) => self.txn.coordinator.persisted(write, result),
            Internal::Marker {
                transactional_id,
                partition,
            } => self.marker_answered(&transactional_id, partition, result, now_ms),
        }
        self.pump_txn(now_ms);
    }

    /// Whether a produce answer is for an internal request.
    pub(super) fn is_internal(request: RequestId) -> bool {
        request.0 > INTERNAL_REQUEST_BASE
    }

    /// Time passes for the coordinator: timeouts, and markers due again.
    pub(super) fn tick_txn(&mut self, now_ms: u64) {
        self.txn.coordinator.tick(now_ms);
        let due: Vec<String> = self
            .txn
            .rounds
            .iter()
            .filter(|(_, r)| !r.to_send.is_empty() && r.next_retry_ms <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.send_markers(&id, now_ms);
        }
        self.pump_txn(now_ms);
    }
}

/// The control batch for one partition of a marker round.
pub fn marker_batch(markers: &Markers) -> Batch {
    let control = match markers.commit {
        true => ControlType::Commit,
        false => ControlType::Abort,
    };
    Batch::marker(
        markers.producer_id,
        markers.producer_epoch,
        control,
        markers.coordinator_epoch,
    )
}
