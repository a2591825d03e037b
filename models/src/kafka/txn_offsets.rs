//! A transaction's consumer offsets, sans I/O (the `sendOffsetsToTransaction` half of Kafka's
//! `TransactionManager`, consume-transform-produce; reference §2.5, KIP-98, KIP-447): the
//! group's offsets partition joins the transaction by AddOffsetsToTxn to the transaction
//! coordinator, then the offsets go to the group's coordinator in a TxnOffsetCommit, named by
//! the producer id and epoch and the member's generation, and become the group's only with
//! the transaction's COMMIT marker.
//!
//! - Java's handlers run in priority order, so both requests are answered before the EndTxn
//!   is sent: [`super::txn_manager::TxnManager`] holds the EndTxn while offsets are pending.
//! - TxnOffsetCommit's answers, as Java's `TxnOffsetCommitHandler` takes them: a moved or
//!   missing group coordinator is looked up again; COORDINATOR_LOAD_IN_PROGRESS,
//!   UNKNOWN_TOPIC_OR_PARTITION and CONCURRENT_TRANSACTIONS are retried; UNKNOWN_MEMBER_ID,
//!   ILLEGAL_GENERATION and FENCED_INSTANCE_ID are `CommitFailedException`, an abortable error
//!   (a rebalance took the input partitions away: this transaction's output must not commit);
//!   a fenced producer is fatal; anything else is abortable.
//! - Kafka 4's transaction version 2 sends no AddOffsetsToTxn (the group coordinator adds the
//!   partition itself); the brokers here take it from the producer under both protocols, as
//!   they do AddPartitionsToTxn, which only moves the request.
//! - The two requests' wire form ([`add_offsets_request`], [`commit_request`]) and the one
//!   code a TxnOffsetCommit answer comes to ([`commit_code`]), shared by the producer's driver
//!   and the tests that drive a broker with them.

use super::accumulator::Partition;
use super::error::KafkaError;
use super::group::GroupError;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, GroupId, ProducerId, TopicName, TransactionalId, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;

/// The most offsets one `sendOffsetsToTransaction` may carry here (a bound on memory).
pub const TXN_OFFSETS_MAX: usize = 4096;

/// Where the offsets stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetsStage {
    /// AddOffsetsToTxn to the transaction coordinator is owed.
    AddToTxn,
    /// FindCoordinator(key type 0) for the group, then the commit.
    FindGroupCoordinator,
    /// TxnOffsetCommit to the group's coordinator is owed.
    Commit,
}

/// The offsets of one `sendOffsetsToTransaction` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingOffsets {
    pub group: String,
    /// The input topic the offsets are of (one here: the transformer reads one topic).
    pub topic: String,
    /// The member's generation and id (`ConsumerGroupMetadata`), which the group coordinator
    /// checks as it checks an OffsetCommit's.
    pub generation: i32,
    pub member: String,
    /// Input partitions and the next offset to read in each.
    pub offsets: Vec<(Partition, i64)>,
    pub stage: OffsetsStage,
}

/// What a TxnOffsetCommit answer means for the transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitAnswer {
    Done,
    /// Send it again, after looking the group coordinator up again when `rediscover`.
    Retry {
        rediscover: bool,
    },
    /// The transaction can only abort (`CommitFailedException` or another error).
    Abortable(KafkaError),
    /// Fenced by a newer instance: the producer stops.
    Fatal,
}

impl PendingOffsets {
    /// Checks the call's input: a group, at most [`TXN_OFFSETS_MAX`] offsets, none negative
    /// (Java's `OffsetAndMetadata` throws "Invalid negative offset").
    pub fn new(
        group: &str,
        topic: &str,
        generation: i32,
        member: &str,
        offsets: Vec<(Partition, i64)>,
    ) -> Result<PendingOffsets, String> {
        if group.is_empty() {
            return Err("sendOffsetsToTransaction needs a group id".into());
        }
        if topic.is_empty() {
            return Err("sendOffsetsToTransaction needs the input topic".into());
        }
        if offsets.len() > TXN_OFFSETS_MAX {
            return Err(format!("more than {TXN_OFFSETS_MAX} offsets in one call"));
        }
        if let Some((partition, offset)) = offsets.iter().find(|(_, o)| *o < 0) {
            return Err(format!("offset {offset} of partition {partition} is negative"));
        }
        Ok(PendingOffsets {
            group: group.to_string(),
            topic: topic.to_string(),
            generation,
            member: member.to_string(),
            offsets,
            stage: OffsetsStage::AddToTxn,
        })
    }
}

/// The AddOffsetsToTxn the transaction coordinator gets for `group`.
pub fn add_offsets_request(
    transactional_id: &str,
    producer: (i64, i16),
    group: &str,
) -> AddOffsetsToTxnRequest {
    AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from_string(transactional_id.into())))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
}

/// The TxnOffsetCommit the group's coordinator gets: the producer's id and epoch (the
/// offsets stay pending until its marker) and the member's generation and id (KIP-447: the
/// coordinator checks them as it checks an OffsetCommit's). No leader epoch is known here.
pub fn commit_request(
    transactional_id: &str,
    producer: (i64, i16),
    pending: &PendingOffsets,
) -> TxnOffsetCommitRequest {
    let partitions = pending
        .offsets
        .iter()
        .map(|(partition, offset)| {
            TxnOffsetCommitRequestPartition::default()
                .with_partition_index(*partition as i32)
                .with_committed_offset(*offset)
                .with_committed_leader_epoch(-1)
        })
        .collect();
    TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from_string(transactional_id.into())))
        .with_group_id(GroupId(StrBytes::from_string(pending.group.clone())))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_generation_id(pending.generation)
        .with_member_id(StrBytes::from_string(pending.member.clone()))
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(pending.topic.clone())))
            .with_partitions(partitions)])
}

/// A TxnOffsetCommit answer's one error code: the first partition's error (Java's handler
/// takes each partition's, and any error fails the whole call), 0 when every partition
/// succeeded; an answer naming no partition is UNKNOWN_SERVER_ERROR (-1): abortable.
pub fn commit_code(answer: &TxnOffsetCommitResponse) -> i16 {
    let mut codes = answer
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| p.error_code)
        .peekable();
    if codes.peek().is_none() {
        return -1;
    }
    codes.find(|c| *c != 0).unwrap_or(0)
}

/// Java's `TxnOffsetCommitHandler.handleResponse`, by the answer's error code (0: none).
pub fn commit_answer(code: i16) -> CommitAnswer {
    let group = |e: GroupError| e.code();
    let kafka = |e: KafkaError| e.code();
    match code {
        0 => CommitAnswer::Done,
        c if c == kafka(KafkaError::NotCoordinator) || c == kafka(KafkaError::CoordinatorNotAvailable) => {
            CommitAnswer::Retry { rediscover: true }
        }
        // UNKNOWN_TOPIC_OR_PARTITION (3): the offsets topic is not there yet.
        3 => CommitAnswer::Retry { rediscover: false },
        c if c == kafka(KafkaError::CoordinatorLoadInProgress)
            || c == kafka(KafkaError::ConcurrentTransactions) =>
        {
            CommitAnswer::Retry { rediscover: false }
        }
        // FENCED_INSTANCE_ID (82) is the static member's form of the same rebalance.
        c if c == group(GroupError::UnknownMemberId)
            || c == group(GroupError::IllegalGeneration)
            || c == 82 =>
        {
            CommitAnswer::Abortable(KafkaError::InvalidTxnState)
        }
        c if c == kafka(KafkaError::ProducerFenced) || c == kafka(KafkaError::InvalidProducerEpoch) => {
            CommitAnswer::Fatal
        }
        c => CommitAnswer::Abortable(KafkaError::from_code(c).unwrap_or(KafkaError::UnknownServerError)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_calls_get_a_one_line_error() {
        assert!(PendingOffsets::new("", "orders", 1, "m", vec![(0, 1)]).is_err());
        assert!(PendingOffsets::new("g", "orders", 1, "m", vec![(0, -1)]).is_err());
        let many = (0..=TXN_OFFSETS_MAX as u32).map(|p| (p, 0)).collect();
        assert!(PendingOffsets::new("g", "orders", 1, "m", many).is_err());
        let ok = PendingOffsets::new("g", "orders", 1, "m", vec![(0, 5)]).unwrap();
        assert_eq!(ok.stage, OffsetsStage::AddToTxn);
    }

    #[test]
    fn an_answer_is_its_first_failed_partition_and_an_empty_one_a_failure() {
        use kafka_protocol::messages::txn_offset_commit_response::{
            TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
        };
        let answer = |codes: &[i16]| {
            let partitions = codes
                .iter()
                .map(|c| TxnOffsetCommitResponsePartition::default().with_error_code(*c))
                .collect();
            TxnOffsetCommitResponse::default().with_topics(vec![
                TxnOffsetCommitResponseTopic::default().with_partitions(partitions)
            ])
        };
        assert_eq!(commit_code(&answer(&[0, 0])), 0);
        assert_eq!(commit_code(&answer(&[0, 22, 16])), 22);
        assert_eq!(commit_code(&TxnOffsetCommitResponse::default()), -1);
        let request = commit_request(
            "t",
            (5, 2),
            &PendingOffsets::new("g", "in", 3, "m", vec![(1, 9)]).unwrap(),
        );
        assert_eq!((request.generation_id, request.member_id.as_str()), (3, "m"));
        assert_eq!(request.topics[0].partitions[0].committed_offset, 9);
    }

    #[test]
    fn answers_are_taken_as_javas_handler_takes_them() {
        assert_eq!(commit_answer(0), CommitAnswer::Done);
        assert_eq!(commit_answer(16), CommitAnswer::Retry { rediscover: true });
        assert_eq!(commit_answer(14), CommitAnswer::Retry { rediscover: false });
        assert_eq!(
            commit_answer(22),
            CommitAnswer::Abortable(KafkaError::InvalidTxnState),
            "ILLEGAL_GENERATION: CommitFailedException"
        );
        assert_eq!(
            commit_answer(25),
            CommitAnswer::Abortable(KafkaError::InvalidTxnState)
        );
        assert_eq!(commit_answer(90), CommitAnswer::Fatal);
        assert_eq!(commit_answer(47), CommitAnswer::Fatal);
        assert!(matches!(commit_answer(2), CommitAnswer::Abortable(_)));
    }
}
