//! WriteTxnMarkers (ApiKey 27) on the wire, both ends: the request a transaction coordinator
//! sends to a partition's leader ([`markers_request`]), the leader appending each marker
//! ([`write_markers`], Kafka's `KafkaApis.handleWriteTxnMarkersRequest`), its answer
//! ([`markers_response`]) and the coordinator reading it back ([`markers_results`]).
//!
//! - The leader appends every marker with acks=all and the request timeout, as Kafka's
//!   handler does (`requiredAcks = -1`, origin COORDINATOR), and answers once all are in.
//! - A partition this broker has no replica of is UNKNOWN_TOPIC_OR_PARTITION, one it
//!   follows NOT_LEADER_OR_FOLLOWER, a marker from a fenced epoch INVALID_PRODUCER_EPOCH:
//!   the partition's own answer, per partition. The coordinator retries the retriable ones
//!   and drops the fenced ones ([`super::broker_txn`]).
//! - An answer that does not name a partition it was asked, or a request that got no answer,
//!   counts as that partition failing: the coordinator sends it again.

// A sans-I/O core: every function reads at once (ARCHITECTURE.md, "Short functions").
#![deny(clippy::too_many_lines)]

use super::broker::{Broker, PartitionAnswer, RequestId};
use super::broker_txn::{marker_batch, TXN_WRITE_TIMEOUT_MS};
use super::controller::TopicPartition;
use super::error::KafkaError;
use super::handler::Handled;
use super::partition::{Acks, ReplicaLog};
use super::txn_coordinator::Markers;
use super::wire::{Request, Response};
use kafka_protocol::messages::{
    write_txn_markers_request, write_txn_markers_response, ProducerId, TopicName, WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::{BTreeMap, VecDeque};

/// UNKNOWN_TOPIC_OR_PARTITION: a partition this broker holds no replica of.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// INVALID_REQUEST: a request over [`MARKER_PARTITIONS_MAX`].
const INVALID_REQUEST: i16 = 42;
/// The most partitions one WriteTxnMarkers may name (all markers together): a bound on the
/// appends one request starts. Kafka's coordinator sends one transaction's partitions per
/// marker, and a transaction holds at most [`super::txn_state::TXN_PARTITIONS_MAX`].
pub const MARKER_PARTITIONS_MAX: usize = 10_000;

/// One asked partition: the marker's producer id and the partition, in request order.
pub type AskedMarker = (i64, TopicPartition);

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// The WriteTxnMarkers request for one transaction's markers to one leader.
pub fn markers_request(markers: &Markers) -> Request {
    let mut topics: Vec<write_txn_markers_request::WritableTxnMarkerTopic> = Vec::new();
    for tp in &markers.partitions {
        match topics.iter_mut().find(|t| t.name.0.as_str() == tp.topic) {
            Some(topic) => topic.partition_indexes.push(tp.partition),
            None => topics.push(
                write_txn_markers_request::WritableTxnMarkerTopic::default()
                    .with_name(topic_name(&tp.topic))
                    .with_partition_indexes(vec![tp.partition]),
            ),
        }
    }
    let marker = write_txn_markers_request::WritableTxnMarker::default()
        .with_producer_id(ProducerId(markers.producer_id))
        .with_producer_epoch(markers.producer_epoch)
        .with_transaction_result(markers.commit)
        .with_coordinator_epoch(markers.coordinator_epoch)
        .with_topics(topics);
    Request::WriteTxnMarkers(WriteTxnMarkersRequest::default().with_markers(vec![marker]))
}

/// The leader's side: every marker appended (acks=all) to the partitions it names.
pub fn write_markers<L: ReplicaLog>(
    broker: &mut Broker<L>,
    request: &WriteTxnMarkersRequest,
    id: RequestId,
    now_ms: u64,
) -> Handled {
    let mut asked: Vec<AskedMarker> = Vec::new();
    let mut batches = Vec::new();
    for marker in &request.markers {
        let markers = Markers {
            transactional_id: String::new(), // not on the wire; a partition does not need it
            producer_id: marker.producer_id.0,
            producer_epoch: marker.producer_epoch,
            commit: marker.transaction_result,
            coordinator_epoch: marker.coordinator_epoch,
            partitions: Vec::new(),
        };
        for topic in &marker.topics {
            for partition in &topic.partition_indexes {
                let tp = TopicPartition {
                    topic: topic.name.0.to_string(),
                    partition: *partition,
                };
                // No replica here: no append, and the answer says UNKNOWN_TOPIC_OR_PARTITION.
                if broker.replica(&tp).is_some() {
                    batches.push((tp.clone(), Ok(marker_batch(&markers))));
                }
                asked.push((markers.producer_id, tp));
            }
        }
    }
    if asked.len() > MARKER_PARTITIONS_MAX {
        // More appends than one request may start: none is made, every partition refused.
        return Handled::Respond(refused_response(&asked));
    }
    match broker.produce(id, Acks::All, TXN_WRITE_TIMEOUT_MS, batches, now_ms) {
        Some(answers) => Handled::Respond(markers_response(&asked, answers)),
        None => Handled::WaitingMarkers { request: id, asked },
    }
}

/// Every partition INVALID_REQUEST.
fn refused_response(asked: &[AskedMarker]) -> Response {
    response_with(asked, |_| INVALID_REQUEST)
}

/// The answer: per marker (producer id), per topic, per partition, the partition's error
/// code. `answers` are the appends' (in any order); a partition of `asked` without one (no
/// replica here) is UNKNOWN_TOPIC_OR_PARTITION. A partition named twice takes its answers in
/// order.
pub fn markers_response(asked: &[AskedMarker], answers: Vec<PartitionAnswer>) -> Response {
    let mut by_partition: BTreeMap<TopicPartition, VecDeque<Result<i64, KafkaError>>> = BTreeMap::new();
    for (tp, result) in answers {
        by_partition.entry(tp).or_default().push_back(result);
    }
    response_with(asked, |tp| {
        match by_partition.get_mut(tp).and_then(VecDeque::pop_front) {
            Some(Ok(_)) => 0,
            Some(Err(error)) => error.code(),
            None => UNKNOWN_TOPIC_OR_PARTITION,
        }
    })
}

/// The answer's shape, each partition with `code(partition)`, markers in request order.
fn response_with(asked: &[AskedMarker], mut code: impl FnMut(&TopicPartition) -> i16) -> Response {
    let mut markers: Vec<write_txn_markers_response::WritableTxnMarkerResult> = Vec::new();
    for (producer_id, tp) in asked {
        let result = write_txn_markers_response::WritableTxnMarkerPartitionResult::default()
            .with_partition_index(tp.partition)
            .with_error_code(code(tp));
        if markers.last().is_none_or(|m| m.producer_id.0 != *producer_id) {
            markers.push(
                write_txn_markers_response::WritableTxnMarkerResult::default()
                    .with_producer_id(ProducerId(*producer_id)),
            );
        }
        let marker = markers.last_mut().expect("pushed above");
        match marker.topics.iter_mut().find(|t| t.name.0.as_str() == tp.topic) {
            Some(topic) => topic.partitions.push(result),
            None => marker.topics.push(
                write_txn_markers_response::WritableTxnMarkerTopicResult::default()
                    .with_name(topic_name(&tp.topic))
                    .with_partitions(vec![result]),
            ),
        }
    }
    Response::WriteTxnMarkers(WriteTxnMarkersResponse::default().with_markers(markers))
}

/// The coordinator's reading of an answer to [`markers_request`]`(markers)`: one result per
/// partition it asked. A partition the answer does not name, or names with a code we do not
/// know, failed (and is sent again).
pub fn markers_results(
    markers: &Markers,
    response: &WriteTxnMarkersResponse,
) -> Vec<(TopicPartition, Result<(), KafkaError>)> {
    let mut codes: BTreeMap<TopicPartition, i16> = BTreeMap::new();
    for marker in response
        .markers
        .iter()
        .filter(|m| m.producer_id.0 == markers.producer_id)
    {
        for topic in &marker.topics {
            for p in &topic.partitions {
                let tp = TopicPartition {
                    topic: topic.name.0.to_string(),
                    partition: p.partition_index,
                };
                codes.insert(tp, p.error_code);
            }
        }
    }
    markers
        .partitions
        .iter()
        .map(|tp| {
            let result = match codes.get(tp) {
                Some(0) => Ok(()),
                Some(code) => Err(KafkaError::from_code(*code).unwrap_or(KafkaError::UnknownServerError)),
                None => Err(KafkaError::NetworkException),
            };
            (tp.clone(), result)
        })
        .collect()
}

/// Every partition of `markers` failed (no connection, no answer in time).
pub fn markers_failed(markers: &Markers) -> Vec<(TopicPartition, Result<(), KafkaError>)> {
    markers
        .partitions
        .iter()
        .map(|tp| (tp.clone(), Err(KafkaError::NetworkException)))
        .collect()
}

#[cfg(test)]
#[path = "handler_markers_tests.rs"]
mod tests;
