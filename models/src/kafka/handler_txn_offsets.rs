//! Consume-transform-produce on the wire: AddOffsetsToTxn at the transaction coordinator
//! (the group's `__consumer_offsets` partition joins the transaction, so the EndTxn's
//! marker reaches it) and TxnOffsetCommit at the group coordinator (the offsets wait there
//! for that marker, [`super::group_coordinator::GroupCoordinator::txn_commit`]).
//!
//! AddOffsetsToTxn waits like AddPartitionsToTxn ([`Handled::TxnWaiting`] with the offsets
//! partition; [`super::handler_txn::txn_response`] answers a wait for exactly one
//! `__consumer_offsets` partition in AddOffsetsToTxn's shape, as no producer adds an
//! offsets partition with AddPartitionsToTxn). TxnOffsetCommit waits like OffsetCommit
//! ([`Handled::WaitingGroup`]).

// A sans-I/O core: every function reads at once (ARCHITECTURE.md, "Short functions").
#![deny(clippy::too_many_lines)]

use super::broker::{Broker, RequestId};
use super::controller::TopicPartition;
use super::error::KafkaError;
use super::group::GroupError;
use super::group_coordinator::{CommitRequest, CommitStep, OffsetToCommit, PartitionCommit, OFFSETS_TOPIC};
use super::handler::Handled;
use super::offset_record::CommittedOffset;
use super::partition::{Acks, ReplicaLog};
use super::txn_coordinator::CallId;
use super::wire::Response;
use kafka_protocol::messages::{
    txn_offset_commit_response, AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, TopicName,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;

/// UNKNOWN_TOPIC_OR_PARTITION.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// The most partitions one TxnOffsetCommit may name: a bound on what one request stores.
pub const TXN_OFFSETS_MAX: usize = 10_000;

/// AddOffsetsToTxn: the group's offsets partition joins the transaction.
pub fn add_offsets<L: ReplicaLog>(
    broker: &mut Broker<L>,
    request: &AddOffsetsToTxnRequest,
    id: RequestId,
    now_ms: u64,
) -> Handled {
    let partition = broker.groups().partition_of(request.group_id.0.as_str());
    broker.txn_coordinator().add_partitions(
        CallId(id.0),
        request.transactional_id.0.as_str(),
        request.producer_id.0,
        request.producer_epoch,
        vec![partition.clone()],
        now_ms,
    );
    broker.pump_transactions(now_ms);
    Handled::TxnWaiting {
        request: id,
        partitions: vec![partition],
    }
}

/// Whether a transactional wait is an AddOffsetsToTxn's (see the module doc).
pub fn is_add_offsets(partitions: &[TopicPartition]) -> bool {
    matches!(partitions, [only] if only.topic == OFFSETS_TOPIC)
}

pub fn add_offsets_response(result: Result<(), KafkaError>) -> Response {
    let code = result.err().map_or(0, KafkaError::code);
    Response::AddOffsetsToTxn(AddOffsetsToTxnResponse::default().with_error_code(code))
}

/// TxnOffsetCommit: the offsets, appended as the producer's transactional batch to the
/// group's offsets partition, pending until the transaction ends.
pub fn txn_offset_commit<L: ReplicaLog>(
    broker: &mut Broker<L>,
    commit: &TxnOffsetCommitRequest,
    id: RequestId,
    now_ms: u64,
) -> Handled {
    let (offsets, refused) = offsets_of(broker, commit, now_ms);
    let request = CommitRequest {
        group: commit.group_id.0.to_string(),
        member_id: commit.member_id.to_string(),
        generation_id: commit.generation_id,
        offsets,
        refused,
    };
    let producer = (commit.producer_id.0, commit.producer_epoch);
    let groups = broker.groups_mut();
    let (partition, batch) = match groups.txn_commit(id, request, producer, now_ms) {
        CommitStep::Done(answers) => return Handled::Respond(txn_commit_response(answers)),
        CommitStep::Append { partition, batch } => (partition, batch),
    };
    let timeout_ms = groups.config().offsets_commit_timeout_ms;
    match broker.produce(id, Acks::All, timeout_ms, vec![(partition, Ok(batch))], now_ms) {
        None => Handled::WaitingGroup(id),
        Some(answers) => {
            let result = answers
                .into_iter()
                .next()
                .map_or(Err(KafkaError::UnknownServerError), |(_, r)| r);
            let partitions = broker.groups_mut().commit_appended(id, result);
            Handled::Respond(txn_commit_response(partitions))
        }
    }
}

/// The request's offsets, and the partitions refused at once (unknown to the metadata, or
/// past [`TXN_OFFSETS_MAX`]).
fn offsets_of<L: ReplicaLog>(
    broker: &Broker<L>,
    commit: &TxnOffsetCommitRequest,
    now_ms: u64,
) -> (Vec<OffsetToCommit>, Vec<PartitionCommit>) {
    let mut offsets = Vec::new();
    let mut refused: Vec<PartitionCommit> = Vec::new();
    for topic in &commit.topics {
        for p in &topic.partitions {
            let tp = TopicPartition {
                topic: topic.name.0.to_string(),
                partition: p.partition_index,
            };
            let known = tp.topic != OFFSETS_TOPIC && broker.metadata().contains_key(&tp);
            if !known || offsets.len() >= TXN_OFFSETS_MAX {
                refused.push((
                    tp.topic,
                    tp.partition,
                    Err(GroupError::Other(UNKNOWN_TOPIC_OR_PARTITION)),
                ));
                continue;
            }
            let offset = CommittedOffset {
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_deref().unwrap_or("").to_string(),
                commit_timestamp_ms: now_ms as i64,
            };
            offsets.push(OffsetToCommit {
                topic: tp.topic,
                partition: tp.partition,
                offset,
            });
        }
    }
    (offsets, refused)
}

/// Topics in the order they first appear, partitions in the order answered.
pub fn txn_commit_response(partitions: Vec<PartitionCommit>) -> Response {
    let mut topics: Vec<txn_offset_commit_response::TxnOffsetCommitResponseTopic> = Vec::new();
    for (topic, partition, result) in partitions {
        let answer = txn_offset_commit_response::TxnOffsetCommitResponsePartition::default()
            .with_partition_index(partition)
            .with_error_code(result.err().map_or(0, GroupError::code));
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partitions.push(answer),
            None => topics.push(
                txn_offset_commit_response::TxnOffsetCommitResponseTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic)))
                    .with_partitions(vec![answer]),
            ),
        }
    }
    Response::TxnOffsetCommit(TxnOffsetCommitResponse::default().with_topics(topics))
}
