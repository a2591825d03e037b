//! The transactional APIs on the wire, mapped to the broker's coordinator: InitProducerId
//! with a transactional id, AddPartitionsToTxn (v0-3, one transaction per request) and
//! EndTxn. Each goes to [`Broker`]'s coordinator and waits for its state write; the answer
//! comes back as [`super::broker::BrokerOutput::TxnAnswered`] and [`txn_response`] shapes
//! it. TxnOffsetCommit and AddOffsetsToTxn are in [`super::handler_txn_offsets`].

// A sans-I/O core: every function reads at once (ARCHITECTURE.md, "Short functions").
#![deny(clippy::too_many_lines)]

use super::broker::{Broker, RequestId};
use super::controller::TopicPartition;
use super::error::KafkaError;
use super::handler::{Cluster, Handled};
use super::partition::ReplicaLog;
use super::txn_coordinator::{CallId, InitStarted, TxnAnswer};
use super::txn_state::TRANSACTION_STATE_TOPIC;
use super::wire::Response;
use kafka_protocol::messages::{
    add_partitions_to_txn_response, find_coordinator_response, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, BrokerId, EndTxnRequest, EndTxnResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, InitProducerIdRequest, InitProducerIdResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;

/// FindCoordinator's key type for a transactional id (Kafka `CoordinatorType.TRANSACTION`).
pub const KEY_TYPE_TRANSACTION: i8 = 1;

/// Whether a FindCoordinator asks for transaction coordinators.
pub fn is_transaction_lookup(request: &FindCoordinatorRequest) -> bool {
    request.key_type == KEY_TYPE_TRANSACTION
}

/// `transaction.state.log.replication.factor`: the state topic's replicas, fewer if the
/// cluster has fewer brokers.
pub const TRANSACTION_STATE_REPLICATION_FACTOR: i16 = 3;

/// The state topic to create (name, partitions, replication factor), as Kafka's broker does
/// at the first transactional FindCoordinator when `__transaction_state` does not exist.
fn state_topic_to_create<L: ReplicaLog>(broker: &Broker<L>, cluster: &Cluster) -> Option<(String, i32, i16)> {
    let exists = broker
        .metadata()
        .keys()
        .any(|tp| tp.topic == TRANSACTION_STATE_TOPIC);
    let brokers = i16::try_from(cluster.brokers.len()).unwrap_or(i16::MAX).max(1);
    (!exists).then(|| {
        (
            TRANSACTION_STATE_TOPIC.to_string(),
            broker.txn_state_partitions(),
            TRANSACTION_STATE_REPLICATION_FACTOR.min(brokers),
        )
    })
}

/// The transaction coordinator of each key: the leader of its `__transaction_state`
/// partition as this broker's metadata has it, or COORDINATOR_NOT_AVAILABLE (the topic or
/// its leader is missing; clients ask again). v0-3 carry one key at the top level, v4+ a list
/// (the same shapes as the group answer in [`super::handler`]). With the state topic not
/// there yet, also the topic for the controller to create (the answer does not wait for it).
pub fn find_coordinator<L: ReplicaLog>(
    broker: &Broker<L>,
    cluster: &Cluster,
    request: &FindCoordinatorRequest,
) -> (FindCoordinatorResponse, Option<(String, i32, i16)>) {
    let create = state_topic_to_create(broker, cluster);
    (coordinators(broker, cluster, request), create)
}

fn coordinators<L: ReplicaLog>(
    broker: &Broker<L>,
    cluster: &Cluster,
    request: &FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let locate = |key: &str| -> Result<(i32, String, i32), KafkaError> {
        let partition = TopicPartition {
            topic: TRANSACTION_STATE_TOPIC.to_string(),
            partition: broker.txn_state_partition(key),
        };
        let leader = broker.metadata().get(&partition).and_then(|s| s.leader);
        let node = leader.and_then(|l| cluster.brokers.iter().find(|(id, _, _)| *id == l));
        node.cloned().ok_or(KafkaError::CoordinatorNotAvailable)
    };
    let answer = FindCoordinatorResponse::default();
    if !request.coordinator_keys.is_empty() {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let entry = find_coordinator_response::Coordinator::default().with_key(key.clone());
                match locate(key.as_str()) {
                    Ok((id, host, port)) => entry
                        .with_node_id(BrokerId(id))
                        .with_host(StrBytes::from_string(host))
                        .with_port(port),
                    Err(e) => entry
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(e.code()),
                }
            })
            .collect();
        return answer.with_coordinators(coordinators);
    }
    match locate(request.key.as_str()) {
        Ok((id, host, port)) => answer
            .with_node_id(BrokerId(id))
            .with_host(StrBytes::from_string(host))
            .with_port(port),
        Err(e) => answer
            .with_error_code(e.code())
            .with_node_id(BrokerId(-1))
            .with_port(-1),
    }
}

/// The most partitions one AddPartitionsToTxn may name.
pub const ADD_PARTITIONS_MAX: usize = 10_000;

/// InitProducerId naming a transactional id (the handler sends the others elsewhere).
pub fn init_producer_id<L: ReplicaLog>(
    broker: &mut Broker<L>,
    request: &InitProducerIdRequest,
    id: RequestId,
    now_ms: u64,
) -> Handled {
    let transactional_id = request.transactional_id.as_ref().map_or("", |t| t.0.as_str());
    assert!(
        !transactional_id.is_empty(),
        "only transactional InitProducerId comes here"
    );
    let expected = (request.producer_id.0 >= 0).then_some((request.producer_id.0, request.producer_epoch));
    let timeout_ms = u32::try_from(request.transaction_timeout_ms).unwrap_or(0);
    match broker.txn_init_producer_id(CallId(id.0), transactional_id, timeout_ms, expected, now_ms) {
        InitStarted::Started => Handled::TxnWaiting {
            request: id,
            partitions: Vec::new(),
        },
        InitStarted::NeedProducerIds => Handled::NeedProducerIds,
    }
}

/// AddPartitionsToTxn v0-3: one transaction's partitions.
pub fn add_partitions<L: ReplicaLog>(
    broker: &mut Broker<L>,
    request: &AddPartitionsToTxnRequest,
    id: RequestId,
    now_ms: u64,
) -> Handled {
    let partitions: Vec<TopicPartition> = request
        .v3_and_below_topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| TopicPartition {
                topic: t.name.0.to_string(),
                partition: *p,
            })
        })
        .take(ADD_PARTITIONS_MAX + 1)
        .collect();
    let call = CallId(id.0);
    let coordinator = broker.txn_coordinator();
    if partitions.len() > ADD_PARTITIONS_MAX {
        coordinator.refuse(call, TxnAnswer::AddPartitions(Err(KafkaError::InvalidTxnState)));
    } else {
        coordinator.add_partitions(
            call,
            request.v3_and_below_transactional_id.0.as_str(),
            request.v3_and_below_producer_id.0,
            request.v3_and_below_producer_epoch,
            partitions.clone(),
            now_ms,
        );
    }
    broker.pump_transactions(now_ms);
    Handled::TxnWaiting {
        request: id,
        partitions,
    }
}

/// EndTxn: commit or abort.
pub fn end_txn<L: ReplicaLog>(
    broker: &mut Broker<L>,
    request: &EndTxnRequest,
    id: RequestId,
    now_ms: u64,
) -> Handled {
    broker.txn_coordinator().end_txn(
        CallId(id.0),
        request.transactional_id.0.as_str(),
        request.producer_id.0,
        request.producer_epoch,
        request.committed,
        now_ms,
    );
    broker.pump_transactions(now_ms);
    Handled::TxnWaiting {
        request: id,
        partitions: Vec::new(),
    }
}

fn code(result: &Result<impl Sized, KafkaError>) -> i16 {
    result.as_ref().err().map_or(0, |e| e.code())
}

/// The coordinator's answer in its API's response; `partitions` are the request's, which
/// AddPartitionsToTxn v0-3 answers one by one (all with the transaction's one error).
pub fn txn_response(answer: TxnAnswer, partitions: &[TopicPartition]) -> Response {
    match answer {
        TxnAnswer::InitProducerId(result) => {
            let (producer_id, epoch) = *result.as_ref().unwrap_or(&(-1, -1));
            Response::InitProducerId(
                InitProducerIdResponse::default()
                    .with_error_code(code(&result))
                    .with_producer_id(ProducerId(producer_id))
                    .with_producer_epoch(epoch),
            )
        }
        TxnAnswer::EndTxn(result) => {
            let (producer_id, epoch) = *result.as_ref().unwrap_or(&(-1, -1));
            Response::EndTxn(
                EndTxnResponse::default()
                    .with_error_code(code(&result))
                    .with_producer_id(ProducerId(producer_id))
                    .with_producer_epoch(epoch),
            )
        }
        TxnAnswer::AddPartitions(result) if super::handler_txn_offsets::is_add_offsets(partitions) => {
            super::handler_txn_offsets::add_offsets_response(result.map(|_| ()))
        }
        TxnAnswer::AddPartitions(result) => {
            Response::AddPartitionsToTxn(add_partitions_response(code(&result), partitions))
        }
    }
}

fn add_partitions_response(error: i16, partitions: &[TopicPartition]) -> AddPartitionsToTxnResponse {
    let mut topics: Vec<add_partitions_to_txn_response::AddPartitionsToTxnTopicResult> = Vec::new();
    for tp in partitions {
        let result = add_partitions_to_txn_response::AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(tp.partition)
            .with_partition_error_code(error);
        match topics.iter_mut().find(|t| t.name.0.as_str() == tp.topic) {
            Some(topic) => topic.results_by_partition.push(result),
            None => topics.push(
                add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default()
                    .with_name(TopicName(StrBytes::from_string(tp.topic.clone())))
                    .with_results_by_partition(vec![result]),
            ),
        }
    }
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics)
}

#[cfg(test)]
#[path = "handler_txn_tests.rs"]
mod tests;
