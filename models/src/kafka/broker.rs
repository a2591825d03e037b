//! One Kafka broker, sans I/O: the replicas it hosts, the metadata the controller published,
//! and the requests clients and other brokers send it, as typed values (the wire codec maps
//! Kafka's protocol onto them; the drivers move them).
//!
//! A produce to several partitions is answered once every partition has its answer, as
//! Kafka's `DelayedProduce` does; with acks=0 it is not answered at all. A fetch is answered
//! at once (the driver waits out `max.wait.ms` by fetching again). Producer ids come from
//! blocks the controller hands out, so no two producers ever share one, across restarts too.

// A sans-I/O core: every function reads at once (ARCHITECTURE.md, "Short functions").
#![deny(clippy::too_many_lines)]

use super::batch::Batch;
use super::broker_txn::TxnSide;
use super::controller::TopicPartition;
use super::error::KafkaError;
use super::group::GroupConfig;
use super::group_coordinator::{CoordinatorAnswer, GroupCoordinator};
use super::partition::{
    Acks, BrokerId, CommittedFetch, FetchPosition, LeaderAndIsr, Output, Partition, PartitionConfig,
    ProduceId, ReplicaFetch, ReplicaLog,
};
use super::txn_coordinator::{
    Markers, TxnAnswer, TxnCoordinator, TxnProtocol, TRANSACTION_MAX_TIMEOUT_MS_DEFAULT,
    TRANSACTION_STATE_PARTITIONS_DEFAULT,
};
use super::txn_state::TRANSACTION_STATE_TOPIC;

/// `transaction.state.log.min.isr`: the state topic's `min.insync.replicas`.
pub const TRANSACTION_STATE_MIN_ISR: usize = 2;
use std::collections::{BTreeMap, BTreeSet};

/// The most partitions one broker hosts here.
pub const REPLICAS_MAX: usize = 4096;
/// The most produce requests waiting for acks=all at once.
pub const PENDING_REQUESTS_MAX: usize = 10_000;

/// The caller's handle on a produce request that waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// One partition's answer to a produce: its base offset, or Kafka's error.
pub type PartitionAnswer = (TopicPartition, Result<i64, KafkaError>);

/// What the broker asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerOutput {
    /// Answer a produce request that waited.
    Produced {
        request: RequestId,
        answers: Vec<PartitionAnswer>,
    },
    /// Send AlterPartition to the controller.
    AlterIsr {
        partition: TopicPartition,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<BrokerId>,
    },
    /// Ask `leader` where `epoch` ends (OffsetsForLeaderEpoch) for this replica.
    AskEpochEnd {
        partition: TopicPartition,
        leader: BrokerId,
        epoch: i32,
    },
    /// A replica's note for the history.
    Note(&'static str),
    /// Answer a group request that waited (JoinGroup, SyncGroup, OffsetCommit).
    GroupAnswered {
        request: RequestId,
        answer: CoordinatorAnswer,
    },
    /// The coordinator answered a transactional request ([`super::handler_txn`] maps it).
    TxnAnswered { request: RequestId, answer: TxnAnswer },
    /// Send WriteTxnMarkers for these partitions to their leader, then give its answer to
    /// [`Broker::markers_answered`].
    WriteMarkers { leader: BrokerId, markers: Markers },
}

struct WaitingRequest {
    /// Partitions still waiting for acks=all.
    waiting: BTreeSet<ProduceId>,
    answers: Vec<PartitionAnswer>,
}

pub struct Broker<L: ReplicaLog> {
    pub(super) id: BrokerId,
    config: PartitionConfig,
    pub(super) replicas: BTreeMap<TopicPartition, Partition<L>>,
    /// Every partition's state as the controller last published it.
    pub(super) metadata: BTreeMap<TopicPartition, LeaderAndIsr>,
    /// Produce ids of waiting partitions, and the request each belongs to.
    waiting_partitions: BTreeMap<ProduceId, (RequestId, TopicPartition)>,
    waiting_requests: BTreeMap<RequestId, WaitingRequest>,
    next_produce_id: u64,
    /// The latest time any call passed in, for answers the broker finishes on its own.
    clock_ms: u64,
    /// The producer id block the controller gave this broker: the next id and the end.
    pub(super) producer_ids: (i64, i64),
    /// The consumer groups this broker coordinates (`group_coordinator`).
    pub(super) groups: GroupCoordinator,
    pub(super) outputs: Vec<BrokerOutput>,
    /// The transaction coordinator and its writes in flight ([`super::broker_txn`]).
    pub(super) txn: TxnSide,
}

impl<L: ReplicaLog> Broker<L> {
    pub fn new(id: BrokerId, config: PartitionConfig) -> Broker<L> {
        Broker {
            id,
            config,
            replicas: BTreeMap::new(),
            metadata: BTreeMap::new(),
            waiting_partitions: BTreeMap::new(),
            waiting_requests: BTreeMap::new(),
            next_produce_id: 0,
            clock_ms: 0,
            producer_ids: (0, 0),
            groups: GroupCoordinator::new(GroupConfig::default()),
            outputs: Vec::new(),
            txn: TxnSide::new(TxnCoordinator::new(
                TxnProtocol::V1,
                TRANSACTION_STATE_PARTITIONS_DEFAULT,
                TRANSACTION_MAX_TIMEOUT_MS_DEFAULT,
            )),
        }
    }

    /// Sets the transaction protocol and the `__transaction_state` partition count (which
    /// must be the topic's), before the broker serves anything.
    pub fn configure_transactions(&mut self, protocol: TxnProtocol, state_partitions: i32) {
        assert!(self.replicas.is_empty(), "configured before any replica opens");
        self.txn = TxnSide::new(TxnCoordinator::new(
            protocol,
            state_partitions,
            TRANSACTION_MAX_TIMEOUT_MS_DEFAULT,
        ));
    }

    pub fn id(&self) -> BrokerId {
        self.id
    }

    pub fn metadata(&self) -> &BTreeMap<TopicPartition, LeaderAndIsr> {
        &self.metadata
    }

    /// The broker's group settings; the coordinator starts afresh with them.
    pub fn set_group_config(&mut self, config: GroupConfig) {
        self.groups = GroupCoordinator::new(config);
    }

    pub fn groups(&self) -> &GroupCoordinator {
        &self.groups
    }

    pub fn groups_mut(&mut self) -> &mut GroupCoordinator {
        &mut self.groups
    }

    pub fn replica(&self, partition: &TopicPartition) -> Option<&Partition<L>> {
        self.replicas.get(partition)
    }

    pub fn take_outputs(&mut self) -> Vec<BrokerOutput> {
        self.collect_outputs();
        // The coordinator's own produces are answered here, not by a driver; each answer may
        // start more (a completion after the markers), so until none is left.
        loop {
            let (internal, external): (Vec<BrokerOutput>, Vec<BrokerOutput>) = std::mem::take(
                &mut self.outputs,
            )
            .into_iter()
            .partition(
                |o| matches!(o, BrokerOutput::Produced { request, .. } if Broker::<L>::is_internal(*request)),
            );
            self.outputs = external;
            if internal.is_empty() {
                return std::mem::take(&mut self.outputs);
            }
            let now_ms = self.clock_ms;
            for output in internal {
                if let BrokerOutput::Produced { request, answers } = output {
                    let result = answers
                        .first()
                        .map_or(Err(KafkaError::UnknownServerError), |a| a.1);
                    self.internal_answered(request, &result, now_ms);
                }
            }
            self.collect_outputs();
        }
    }

    /// The controller published a partition's state. A replica of this broker is opened
    /// with `open_log` the first time it appears.
    pub fn apply(
        &mut self,
        partition: TopicPartition,
        state: LeaderAndIsr,
        now_ms: u64,
        open_log: &mut dyn FnMut(&TopicPartition) -> L,
    ) {
        self.metadata.insert(partition.clone(), state.clone());
        if !state.replicas.contains(&self.id) {
            return;
        }
        if !self.replicas.contains_key(&partition) {
            assert!(
                self.replicas.len() < REPLICAS_MAX,
                "more than {REPLICAS_MAX} replicas"
            );
            let log = open_log(&partition);
            let replica = Partition::open(self.id, log, self.topic_config(&partition, &state), now_ms);
            self.replicas.insert(partition.clone(), replica);
        }
        let replica = self.replicas.get_mut(&partition).expect("opened above");
        // A stale state (an older epoch) is refused by the replica and changes nothing.
        let _ = replica.apply(state, now_ms);
        self.clock_ms = self.clock_ms.max(now_ms);
        if partition.topic == super::group_coordinator::OFFSETS_TOPIC {
            self.groups.follow_leadership(&self.replicas);
            self.collect_outputs();
        }
        if partition.topic == TRANSACTION_STATE_TOPIC {
            self.sync_txn_partitions(now_ms);
        }
    }

    /// A replica's settings: the broker's, but `__transaction_state` has its own
    /// `min.insync.replicas`, `transaction.state.log.min.isr` (2), at most its replicas.
    fn topic_config(&self, partition: &TopicPartition, state: &LeaderAndIsr) -> PartitionConfig {
        let mut config = self.config.clone();
        if partition.topic == TRANSACTION_STATE_TOPIC {
            config.min_insync_replicas = TRANSACTION_STATE_MIN_ISR.min(state.replicas.len()).max(1);
        }
        config
    }

    /// A produce request: per partition a batch, or the error its bytes already came to (a
    /// corrupt batch is answered in the same response as the rest, as in Kafka). `None` when
    /// it waits (acks=all) and will come back as [`BrokerOutput::Produced`]; with acks=0 the
    /// answers are for the record only.
    pub fn produce(
        &mut self,
        request: RequestId,
        acks: Acks,
        timeout_ms: u64,
        batches: Vec<(TopicPartition, Result<Batch, KafkaError>)>,
        now_ms: u64,
    ) -> Option<Vec<PartitionAnswer>> {
        let mut waiting = BTreeSet::new();
        let mut answers = Vec::new();
        for (partition, batch) in batches {
            let id = ProduceId(self.next_produce_id);
            self.next_produce_id += 1;
            let txn_end = offsets_marker(&partition, &batch);
            let result = match (batch, self.replicas.get_mut(&partition)) {
                (Err(error), _) => Err(error),
                (Ok(batch), Some(replica)) => replica.produce(id, batch, acks, timeout_ms, now_ms),
                (Ok(_), None) => Err(KafkaError::NotLeaderOrFollower),
            };
            if let (Some((producer_id, commit)), Ok(_)) = (txn_end, &result) {
                // The group coordinator ends the producer's pending offsets once the marker
                // is in its log (Kafka: after the marker's append, `onTransactionCompleted`).
                self.groups
                    .txn_completed(partition.partition, producer_id, commit);
            }
            match result {
                Ok(Some(offset)) => answers.push((partition, Ok(offset))),
                Ok(None) => {
                    waiting.insert(id);
                    self.waiting_partitions.insert(id, (request, partition));
                }
                Err(error) => answers.push((partition, Err(error))),
            }
        }
        if waiting.is_empty() {
            return Some(answers);
        }
        assert!(
            self.waiting_requests.len() < PENDING_REQUESTS_MAX,
            "more than {PENDING_REQUESTS_MAX} produce requests waiting"
        );
        self.waiting_requests
            .insert(request, WaitingRequest { waiting, answers });
        self.collect_outputs();
        None
    }

    /// A fetch from a follower (`replica` is its broker id) or a consumer (`None`).
    pub fn fetch(
        &mut self,
        replica: Option<BrokerId>,
        partition: &TopicPartition,
        offset: i64,
        max_bytes: usize,
        now_ms: u64,
    ) -> Result<ReplicaFetch, KafkaError> {
        let Some(local) = self.replicas.get_mut(partition) else {
            return Err(KafkaError::NotLeaderOrFollower);
        };
        let answer = match replica {
            Some(follower) => local.follower_fetch(follower, offset, now_ms),
            None => local
                .consumer_fetch(offset, max_bytes)
                .map(|(batches, high_watermark)| ReplicaFetch {
                    batches,
                    high_watermark,
                    log_end_offset: local.log_end_offset(),
                }),
        };
        self.collect_outputs();
        answer
    }

    /// A read_committed consumer's fetch: below the last stable offset, with the aborted
    /// transactions the answer overlaps.
    pub fn fetch_committed(
        &self,
        partition: &TopicPartition,
        offset: i64,
        max_bytes: usize,
    ) -> Result<CommittedFetch, KafkaError> {
        match self.replicas.get(partition) {
            Some(local) => local.committed_fetch(offset, max_bytes),
            None => Err(KafkaError::NotLeaderOrFollower),
        }
    }

    /// OffsetsForLeaderEpoch, answered by a leader.
    pub fn epoch_end(
        &self,
        partition: &TopicPartition,
        epoch: i32,
    ) -> Result<Option<(i32, i64)>, KafkaError> {
        match self.replicas.get(partition) {
            Some(local) => local.epoch_end(epoch),
            None => Err(KafkaError::NotLeaderOrFollower),
        }
    }

    /// A follower replica takes its leader's answers.
    pub fn replica_fetched(
        &mut self,
        partition: &TopicPartition,
        answer: Result<ReplicaFetch, KafkaError>,
        now_ms: u64,
    ) {
        let Some(local) = self.replicas.get_mut(partition) else {
            return;
        };
        // Other errors (the leader moved, a timeout) leave the replica to fetch again once
        // new metadata arrives. OFFSET_OUT_OF_RANGE goes through ListOffsets first
        // ([`Broker::replica_out_of_range`]).
        if let Ok(fetched) = answer {
            let _ = local.fetched(fetched, now_ms);
        }
    }

    /// The leader answered OFFSET_OUT_OF_RANGE and ListOffsets gave its LEO: it has less than
    /// this follower (an unclean election), so the follower truncates to it.
    pub fn replica_out_of_range(&mut self, partition: &TopicPartition, leader_log_end_offset: i64) {
        if let Some(local) = self.replicas.get_mut(partition) {
            let _ = local.fetched_out_of_range(leader_log_end_offset);
        }
        self.collect_outputs();
    }

    pub fn epoch_end_answered(&mut self, partition: &TopicPartition, answer: Option<(i32, i64)>) {
        if let Some(local) = self.replicas.get_mut(partition) {
            let _ = local.epoch_end_answer(answer);
        }
        self.collect_outputs();
    }

    /// What this broker's follower replicas fetch next, by leader.
    pub fn follower_fetches(&self) -> Vec<(TopicPartition, FetchPosition)> {
        self.replicas
            .iter()
            .filter_map(|(tp, r)| r.next_fetch().map(|at| (tp.clone(), at)))
            .collect()
    }

    /// The controller refused this broker's ISR proposal: the leader may propose again.
    pub fn alter_isr_refused(&mut self, partition: &TopicPartition) {
        if let Some(local) = self.replicas.get_mut(partition) {
            local.alter_isr_refused();
        }
    }

    /// A new producer id (InitProducerId without a transactional id), or `None` when this
    /// broker's block is used up and the driver must ask the controller for another.
    pub fn next_producer_id(&mut self) -> Option<i64> {
        let (next, end) = self.producer_ids;
        if next >= end {
            return None;
        }
        self.producer_ids.0 += 1;
        Some(next)
    }

    pub fn add_producer_id_block(&mut self, first: i64, length: i64) {
        assert!(length > 0);
        self.producer_ids = (first, first + length);
    }

    /// Time passes for every replica.
    pub fn tick(&mut self, now_ms: u64) {
        self.clock_ms = self.clock_ms.max(now_ms);
        for replica in self.replicas.values_mut() {
            replica.tick(now_ms);
        }
        self.groups.tick(&self.replicas, now_ms);
        self.collect_outputs();
        self.tick_txn(now_ms);
    }

    /// The replicas' outputs become the broker's: answered partitions complete their
    /// requests, the rest go to the driver.
    fn collect_outputs(&mut self) {
        let mut done = Vec::new();
        for (tp, replica) in self.replicas.iter_mut() {
            for output in replica.take_outputs() {
                match output {
                    Output::ProduceDone { id, result } => done.push((id, result)),
                    Output::AlterIsr {
                        leader_epoch,
                        partition_epoch,
                        isr,
                    } => self.outputs.push(BrokerOutput::AlterIsr {
                        partition: tp.clone(),
                        leader_epoch,
                        partition_epoch,
                        isr,
                    }),
                    Output::AskEpochEnd { leader, epoch } => self.outputs.push(BrokerOutput::AskEpochEnd {
                        partition: tp.clone(),
                        leader,
                        epoch,
                    }),
                    Output::Note(name) => self.outputs.push(BrokerOutput::Note(name)),
                }
            }
        }
        for (id, result) in done {
            self.partition_answered(id, result);
        }
        for (request, answer) in self.groups.take_answers() {
            self.outputs.push(BrokerOutput::GroupAnswered { request, answer });
        }
        for note in self.groups.take_notes() {
            self.outputs.push(BrokerOutput::Note(note));
        }
    }

    fn partition_answered(&mut self, id: ProduceId, result: Result<i64, KafkaError>) {
        let Some((request, partition)) = self.waiting_partitions.remove(&id) else {
            return;
        };
        let entry = self
            .waiting_requests
            .get_mut(&request)
            .expect("a waiting partition's request waits");
        entry.waiting.remove(&id);
        entry.answers.push((partition, result));
        if entry.waiting.is_empty() {
            let finished = self.waiting_requests.remove(&request).expect("present");
            if self.groups.is_pending_commit(request) {
                // An offset commit's record: the coordinator answers the commit.
                let result = finished
                    .answers
                    .into_iter()
                    .next()
                    .map_or(Err(KafkaError::UnknownServerError), |(_, r)| r);
                let txn = self.groups.is_txn_commit(request);
                let answers = self.groups.commit_appended(request, result);
                let answer = match txn {
                    true => CoordinatorAnswer::TxnCommit(answers),
                    false => CoordinatorAnswer::Commit(answers),
                };
                self.outputs.push(BrokerOutput::GroupAnswered { request, answer });
                return;
            }
            self.outputs.push(BrokerOutput::Produced {
                request,
                answers: finished.answers,
            });
        }
    }
}

/// A transaction marker for an offsets partition: its producer id, and commit or abort.
fn offsets_marker(partition: &TopicPartition, batch: &Result<Batch, KafkaError>) -> Option<(i64, bool)> {
    let batch = batch.as_ref().ok().filter(|b| b.control)?;
    let commit = batch.control_type()? == super::batch::ControlType::Commit;
    (partition.topic == super::group_coordinator::OFFSETS_TOPIC).then_some((batch.producer_id, commit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::batch::Record;
    use crate::kafka::mem_log::MemLog;

    fn tp(partition: i32) -> TopicPartition {
        TopicPartition {
            topic: "orders".into(),
            partition,
        }
    }

    fn batch(value: &str) -> Batch {
        Batch::plain(vec![Record {
            key: None,
            value: Some(value.as_bytes().to_vec()),
        }])
    }

    /// Brokers 1 and 2; broker 1 leads partitions 0 and 1, both replicated on 2.
    fn cluster() -> (Broker<MemLog>, Broker<MemLog>) {
        let mut one = Broker::new(1, PartitionConfig::default());
        let mut two = Broker::new(2, PartitionConfig::default());
        for p in [0, 1] {
            let state = LeaderAndIsr {
                leader: Some(1),
                leader_epoch: 0,
                isr: vec![1, 2],
                replicas: vec![1, 2],
                partition_epoch: 0,
            };
            one.apply(tp(p), state.clone(), 0, &mut |_| MemLog::default());
            two.apply(tp(p), state, 0, &mut |_| MemLog::default());
        }
        (one, two)
    }

    /// Broker 2 fetches every partition it follows once.
    fn replicate(one: &mut Broker<MemLog>, two: &mut Broker<MemLog>, now_ms: u64) {
        for (partition, at) in two.follower_fetches() {
            let answer = one.fetch(Some(2), &partition, at.offset, 1 << 20, now_ms);
            two.replica_fetched(&partition, answer, now_ms);
        }
    }

    #[test]
    fn an_acks_all_request_over_two_partitions_is_answered_once_both_are_committed() {
        let (mut one, mut two) = cluster();
        let batches = vec![(tp(0), Ok(batch("a"))), (tp(1), Ok(batch("b")))];
        assert_eq!(one.produce(RequestId(1), Acks::All, 30_000, batches, 0), None);
        assert!(one.take_outputs().is_empty());
        replicate(&mut one, &mut two, 1);
        assert!(
            one.take_outputs().is_empty(),
            "the follower has them; the leader learns next fetch"
        );
        replicate(&mut one, &mut two, 2);
        let outputs = one.take_outputs();
        assert_eq!(outputs.len(), 1, "{outputs:?}");
        let BrokerOutput::Produced { request, answers } = &outputs[0] else {
            panic!("{outputs:?}")
        };
        assert_eq!(*request, RequestId(1));
        assert_eq!(answers, &vec![(tp(0), Ok(0)), (tp(1), Ok(0))]);
    }

    #[test]
    fn acks_one_answers_at_once_and_an_unknown_partition_is_not_leader() {
        let (mut one, _two) = cluster();
        let answers = one.produce(
            RequestId(1),
            Acks::Leader,
            30_000,
            vec![(tp(0), Ok(batch("a"))), (tp(7), Ok(batch("b")))],
            0,
        );
        assert_eq!(
            answers,
            Some(vec![
                (tp(0), Ok(0)),
                (tp(7), Err(KafkaError::NotLeaderOrFollower))
            ])
        );
        let (_one, mut two) = cluster();
        let answers = two.produce(
            RequestId(2),
            Acks::Leader,
            30_000,
            vec![(tp(0), Ok(batch("a")))],
            0,
        );
        assert_eq!(answers, Some(vec![(tp(0), Err(KafkaError::NotLeaderOrFollower))]));
    }

    #[test]
    fn consumers_read_only_what_is_committed() {
        let (mut one, mut two) = cluster();
        one.produce(
            RequestId(1),
            Acks::Leader,
            30_000,
            vec![(tp(0), Ok(batch("a")))],
            0,
        );
        assert!(one.fetch(None, &tp(0), 0, 1 << 20, 1).unwrap().batches.is_empty());
        replicate(&mut one, &mut two, 2);
        replicate(&mut one, &mut two, 3);
        assert_eq!(one.fetch(None, &tp(0), 0, 1 << 20, 4).unwrap().batches.len(), 1);
    }

    #[test]
    fn producer_ids_come_from_the_controllers_block_and_run_out() {
        let (mut one, _two) = cluster();
        assert_eq!(one.next_producer_id(), None);
        one.add_producer_id_block(1_000, 2);
        assert_eq!(one.next_producer_id(), Some(1_000));
        assert_eq!(one.next_producer_id(), Some(1_001));
        assert_eq!(one.next_producer_id(), None);
    }
}
