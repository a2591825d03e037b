//! Kafka's requests, answered by a [`Broker`]: the one place the wire protocol's messages
//! meet the broker's core, shared by the simulated broker and the real server.
//!
//! Each API is one function from the request to a [`Handled`]: an answer now, nothing (a
//! produce with acks=0 is never answered, as in Kafka), an answer later (acks=all), or work
//! for the controller first (CreateTopics, a new block of producer ids).
//!
//! Departures from Kafka, on purpose: topics are not created by Metadata requests
//! (`auto.create.topics.enable=false`, the setting Jepsen's safe mode and most production
//! clusters use); FindCoordinator finds group coordinators (`handler_group`) and transaction
//! coordinators ([`super::handler_txn`]); fetches are answered at once, and the driver waits
//! out `max.wait.ms`.

// A sans-I/O core: every function reads at once (ARCHITECTURE.md, "Short functions").
#![deny(clippy::too_many_lines)]

use super::batch::Batch;
use super::broker::{Broker, PartitionAnswer, RequestId};
use super::controller::{ControllerError, TopicPartition};
use super::error::KafkaError;
use super::handler_txn;
use super::partition::{Acks, CommittedFetch, ReplicaLog};
use super::read_committed::aborted_to_wire;
use super::wire::{api_versions_response, Request, Response};
use super::wire_records::{decode_produce_batch, encode_batch};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    create_topics_response::CreatableTopicResult, fetch_response, find_coordinator_response,
    list_offsets_response, metadata_response, offset_for_leader_epoch_response, produce_response, BrokerId,
    CreateTopicsResponse, FetchRequest, FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    InitProducerIdResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ProduceRequest, ProduceResponse, ProducerId,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

/// UNKNOWN_TOPIC_OR_PARTITION.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// COORDINATOR_NOT_AVAILABLE.
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
/// The most bytes one consumer fetch answer carries, whatever the client asks.
pub const FETCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Who is in the cluster, for Metadata answers.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub cluster_id: String,
    pub controller: i32,
    /// Every broker: id, host, port.
    pub brokers: Vec<(i32, String, i32)>,
}

/// What a request comes to.
#[derive(Debug)]
pub enum Handled {
    Respond(Response),
    /// acks=0: Kafka sends no response.
    Silent,
    /// acks=all: [`produce_response`] answers it when the broker says it is done.
    Waiting(RequestId),
    /// The controller creates these topics (name, partitions, replication factor); answer
    /// with [`create_topics_response`].
    CreateTopics(Vec<(String, i32, i16)>),
    /// The broker's producer ids are used up: get a block from the controller and ask again.
    NeedProducerIds,
    /// A group request waits (`handler_group`): answer it with
    /// [`super::handler_group::group_response`] when the broker's `GroupAnswered` comes.
    WaitingGroup(RequestId),
    /// Answer now, and have the controller create these topics without waiting for it
    /// (FindCoordinator creating `__consumer_offsets`, as Kafka's broker does).
    RespondAndCreateTopics {
        answer: Response,
        topics: Vec<(String, i32, i16)>,
    },
    /// A transactional request waits for the coordinator's state write: answer it with
    /// [`handler_txn::txn_response`] and these partitions (the request's) once the broker
    /// says [`super::broker::BrokerOutput::TxnAnswered`] for it.
    TxnWaiting {
        request: RequestId,
        partitions: Vec<TopicPartition>,
    },
    /// A WriteTxnMarkers waits for its acks=all appends: answer it with
    /// [`super::handler_markers::markers_response`]`(asked, answers)` when the broker's
    /// `Produced` comes for `request`.
    WaitingMarkers {
        request: RequestId,
        asked: Vec<super::handler_markers::AskedMarker>,
    },
}

/// Answers one request.
pub fn handle<L: ReplicaLog>(
    broker: &mut Broker<L>,
    cluster: &Cluster,
    request: Request,
    id: RequestId,
    now_ms: u64,
) -> Handled {
    match request {
        Request::ApiVersions(_) => Handled::Respond(Response::ApiVersions(api_versions_response())),
        Request::Metadata(metadata) => {
            Handled::Respond(Response::Metadata(answer_metadata(broker, cluster, &metadata)))
        }
        Request::Produce(produce) => handle_produce(broker, produce, id, now_ms),
        Request::Fetch(fetch) => Handled::Respond(Response::Fetch(answer_fetch(broker, &fetch, now_ms))),
        Request::ListOffsets(list) => {
            Handled::Respond(Response::ListOffsets(answer_list_offsets(broker, &list)))
        }
        Request::CreateTopics(create) => Handled::CreateTopics(
            create
                .topics
                .iter()
                .map(|t| (t.name.0.to_string(), t.num_partitions, t.replication_factor))
                .collect(),
        ),
        Request::InitProducerId(request)
            if request.transactional_id.as_ref().is_some_and(|t| !t.0.is_empty()) =>
        {
            handler_txn::init_producer_id(broker, &request, id, now_ms)
        }
        Request::AddPartitionsToTxn(request) => handler_txn::add_partitions(broker, &request, id, now_ms),
        Request::EndTxn(request) => handler_txn::end_txn(broker, &request, id, now_ms),
        Request::AddOffsetsToTxn(request) => {
            super::handler_txn_offsets::add_offsets(broker, &request, id, now_ms)
        }
        Request::TxnOffsetCommit(request) => {
            super::handler_txn_offsets::txn_offset_commit(broker, &request, id, now_ms)
        }
        Request::WriteTxnMarkers(request) => {
            super::handler_markers::write_markers(broker, &request, id, now_ms)
        }
        Request::InitProducerId(_) => match broker.next_producer_id() {
            Some(producer_id) => Handled::Respond(init_producer_id_response(producer_id)),
            None => Handled::NeedProducerIds,
        },
        Request::FindCoordinator(request) if handler_txn::is_transaction_lookup(&request) => {
            match handler_txn::find_coordinator(broker, cluster, &request) {
                (answer, None) => Handled::Respond(Response::FindCoordinator(answer)),
                (answer, Some(topic)) => Handled::RespondAndCreateTopics {
                    answer: Response::FindCoordinator(answer),
                    topics: vec![topic],
                },
            }
        }
        Request::FindCoordinator(request) => {
            match super::handler_group::find_group_coordinator(broker, cluster, &request) {
                Some((answer, None)) => Handled::Respond(Response::FindCoordinator(answer)),
                Some((answer, Some(topic))) => Handled::RespondAndCreateTopics {
                    answer: Response::FindCoordinator(answer),
                    topics: vec![topic],
                },
                None => Handled::Respond(Response::FindCoordinator(answer_find_coordinator(&request))),
            }
        }
        request @ (Request::JoinGroup(_)
        | Request::SyncGroup(_)
        | Request::Heartbeat(_)
        | Request::LeaveGroup(_)
        | Request::OffsetCommit(_)
        | Request::OffsetFetch(_)) => super::handler_group::handle_group(broker, request, id, now_ms),
        Request::OffsetForLeaderEpoch(request) => Handled::Respond(Response::OffsetForLeaderEpoch(
            answer_epoch_ends(broker, &request),
        )),
    }
}

/// COORDINATOR_NOT_AVAILABLE, in the shape of the request's version, which the body tells:
/// v0-3 name one `key` and carry the answer at the top level; v4+ (KIP-699, batched) name
/// `coordinator_keys` and get one `Coordinator` each, with no top-level error field (setting
/// it makes the answer impossible to encode at v4+). Kafka's "no node" is id -1, host "",
/// port -1 (`Node.noNode`). A request with neither (an empty key, or no keys) gets an answer
/// without errors, which encodes at every version.
fn answer_find_coordinator(request: &FindCoordinatorRequest) -> FindCoordinatorResponse {
    let answer = FindCoordinatorResponse::default();
    if !request.coordinator_keys.is_empty() {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                find_coordinator_response::Coordinator::default()
                    .with_key(key.clone())
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(COORDINATOR_NOT_AVAILABLE)
            })
            .collect();
        return answer.with_coordinators(coordinators);
    }
    if request.key.is_empty() {
        return answer;
    }
    answer
        .with_error_code(COORDINATOR_NOT_AVAILABLE)
        .with_node_id(BrokerId(-1))
        .with_port(-1)
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn answer_metadata<L: ReplicaLog>(
    broker: &Broker<L>,
    cluster: &Cluster,
    request: &MetadataRequest,
) -> MetadataResponse {
    let brokers = cluster
        .brokers
        .iter()
        .map(|(id, host, port)| {
            metadata_response::MetadataResponseBroker::default()
                .with_node_id(BrokerId(*id))
                .with_host(StrBytes::from_string(host.clone()))
                .with_port(*port)
        })
        .collect();
    let known: Vec<String> = broker.metadata().keys().map(|tp| tp.topic.clone()).collect();
    let mut wanted: Vec<String> = match &request.topics {
        None => known.clone(), // all topics
        Some(topics) => topics
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .collect(),
    };
    wanted.dedup();
    let topics = wanted.iter().map(|name| metadata_topic(broker, name)).collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(cluster.cluster_id.clone())))
        .with_controller_id(BrokerId(cluster.controller))
        .with_topics(topics)
}

fn metadata_topic<L: ReplicaLog>(broker: &Broker<L>, name: &str) -> metadata_response::MetadataResponseTopic {
    let partitions: Vec<metadata_response::MetadataResponsePartition> = broker
        .metadata()
        .iter()
        .filter(|(tp, _)| tp.topic == name)
        .map(|(tp, state)| {
            let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
            let error = if state.leader.is_none() { 5 } else { 0 }; // LEADER_NOT_AVAILABLE
            metadata_response::MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(tp.partition)
                .with_leader_id(BrokerId(state.leader.unwrap_or(-1)))
                .with_leader_epoch(state.leader_epoch)
                .with_replica_nodes(ids(&state.replicas))
                .with_isr_nodes(ids(&state.isr))
        })
        .collect();
    let error = if partitions.is_empty() {
        UNKNOWN_TOPIC_OR_PARTITION
    } else {
        0
    };
    metadata_response::MetadataResponseTopic::default()
        .with_error_code(error)
        .with_name(Some(topic_name(name)))
        .with_partitions(partitions)
}

fn acks(value: i16) -> Acks {
    match value {
        0 => Acks::None,
        1 => Acks::Leader,
        _ => Acks::All,
    }
}

fn handle_produce<L: ReplicaLog>(
    broker: &mut Broker<L>,
    request: ProduceRequest,
    id: RequestId,
    now_ms: u64,
) -> Handled {
    let acks = acks(request.acks);
    let timeout_ms = u64::try_from(request.timeout_ms.max(0)).unwrap_or(0);
    let mut batches = Vec::new();
    for topic in &request.topic_data {
        for data in &topic.partition_data {
            let tp = TopicPartition {
                topic: topic.name.0.to_string(),
                partition: data.index,
            };
            let batch = match data.records.as_ref() {
                Some(records) => decode_produce_batch(records).map_err(|e| e.kafka_error()),
                None => Err(KafkaError::CorruptMessage),
            };
            batches.push((tp, batch));
        }
    }
    let answered = broker.produce(id, acks, timeout_ms, batches, now_ms);
    match (acks, answered) {
        (Acks::None, _) => Handled::Silent,
        (_, None) => Handled::Waiting(id),
        (_, Some(answers)) => Handled::Respond(produce_response(answers)),
    }
}

/// The produce response for a request's answers (for one that waited, too), topics in
/// the order they first appear, partitions in the order answered.
pub fn produce_response(answers: Vec<PartitionAnswer>) -> Response {
    let mut topics: Vec<produce_response::TopicProduceResponse> = Vec::new();
    for (tp, result) in answers {
        let (code, offset) = match result {
            Ok(offset) => (0, offset),
            Err(error) => (error.code(), -1),
        };
        let partition = produce_response::PartitionProduceResponse::default()
            .with_index(tp.partition)
            .with_error_code(code)
            .with_base_offset(offset)
            .with_log_append_time_ms(-1);
        match topics.iter_mut().find(|t| t.name.0.as_str() == tp.topic) {
            Some(topic) => topic.partition_responses.push(partition),
            None => topics.push(
                produce_response::TopicProduceResponse::default()
                    .with_name(topic_name(&tp.topic))
                    .with_partition_responses(vec![partition]),
            ),
        }
    }
    Response::Produce(ProduceResponse::default().with_responses(topics))
}

/// A fetch from a consumer (replica id -1) or a follower (its broker id).
fn answer_fetch<L: ReplicaLog>(broker: &mut Broker<L>, request: &FetchRequest, now_ms: u64) -> FetchResponse {
    let replica = (request.replica_id.0 >= 0).then_some(request.replica_id.0);
    let read_committed = replica.is_none() && request.isolation_level == 1;
    let mut responses = Vec::new();
    for topic in &request.topics {
        let mut partitions = Vec::new();
        for p in &topic.partitions {
            let tp = TopicPartition {
                topic: topic.topic.0.to_string(),
                partition: p.partition,
            };
            let max_bytes = usize::try_from(p.partition_max_bytes.max(0))
                .unwrap_or(0)
                .min(FETCH_BYTES_MAX);
            let answer = match read_committed {
                true => broker.fetch_committed(&tp, p.fetch_offset, max_bytes),
                false => broker
                    .fetch(replica, &tp, p.fetch_offset, max_bytes, now_ms)
                    .map(|fetched| {
                        let last_stable_offset = broker
                            .replica(&tp)
                            .map_or(fetched.high_watermark, |r| r.last_stable_offset());
                        CommittedFetch {
                            batches: fetched.batches,
                            high_watermark: fetched.high_watermark,
                            last_stable_offset,
                            aborted: Vec::new(),
                        }
                    }),
            };
            let data = match answer {
                Ok(answer) => fetch_response::PartitionData::default()
                    .with_partition_index(p.partition)
                    .with_high_watermark(answer.high_watermark)
                    .with_last_stable_offset(answer.last_stable_offset)
                    .with_log_start_offset(0)
                    .with_aborted_transactions(read_committed.then(|| aborted_to_wire(&answer.aborted)))
                    .with_records(Some(records(&answer.batches, now_ms))),
                Err(error) => fetch_response::PartitionData::default()
                    .with_partition_index(p.partition)
                    .with_error_code(error.code())
                    .with_high_watermark(-1),
            };
            partitions.push(data);
        }
        responses.push(
            fetch_response::FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions),
        );
    }
    FetchResponse::default().with_responses(responses)
}

/// Batches as RecordBatch v2 bytes, one after another, as a fetch response carries them.
fn records(batches: &[Batch], now_ms: u64) -> Bytes {
    let mut bytes = BytesMut::new();
    for batch in batches {
        bytes.extend_from_slice(&encode_batch(batch, now_ms as i64));
    }
    bytes.freeze()
}

/// ListOffsets: -2 is the log start, -1 the end a consumer may read to (the HW, or the last
/// stable offset for isolation_level 1, read_committed; a follower asking with its id gets
/// the LEO). Other timestamps are not indexed here: the end.
fn answer_list_offsets<L: ReplicaLog>(
    broker: &Broker<L>,
    request: &ListOffsetsRequest,
) -> ListOffsetsResponse {
    let follower = request.replica_id.0 >= 0;
    let read_committed = request.isolation_level == 1;
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let tp = TopicPartition {
                        topic: topic.name.0.to_string(),
                        partition: p.partition_index,
                    };
                    let answer = list_offsets_response::ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1);
                    match broker.replica(&tp).filter(|r| r.is_leader()) {
                        None => answer
                            .with_error_code(KafkaError::NotLeaderOrFollower.code())
                            .with_offset(-1),
                        Some(_) if p.timestamp == -2 => answer.with_offset(0),
                        Some(r) if follower => answer.with_offset(r.log_end_offset()),
                        Some(r) if read_committed => answer.with_offset(r.last_stable_offset()),
                        Some(r) => answer.with_offset(r.high_watermark()),
                    }
                })
                .collect();
            list_offsets_response::ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

fn answer_epoch_ends<L: ReplicaLog>(
    broker: &Broker<L>,
    request: &OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let tp = TopicPartition {
                        topic: topic.topic.0.to_string(),
                        partition: p.partition,
                    };
                    let answer = offset_for_leader_epoch_response::EpochEndOffset::default()
                        .with_partition(p.partition);
                    match broker.epoch_end(&tp, p.leader_epoch) {
                        Ok(Some((epoch, end))) => answer.with_leader_epoch(epoch).with_end_offset(end),
                        Ok(None) => answer.with_leader_epoch(-1).with_end_offset(-1),
                        Err(error) => answer.with_error_code(error.code()),
                    }
                })
                .collect();
            offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

pub fn init_producer_id_response(producer_id: i64) -> Response {
    Response::InitProducerId(
        InitProducerIdResponse::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(0),
    )
}

/// What the controller made of one topic to create: its partitions and replication factor.
pub type TopicCreated = (String, Result<(i32, i16), ControllerError>);

/// The answer to CreateTopics once the controller has acted.
pub fn create_topics_response(results: Vec<TopicCreated>) -> Response {
    let topics = results
        .into_iter()
        .map(|(name, result)| {
            let answer = CreatableTopicResult::default().with_name(topic_name(&name));
            match result {
                Ok((partitions, replication)) => answer
                    .with_num_partitions(partitions)
                    .with_replication_factor(replication),
                Err(error) => answer
                    .with_error_code(error.code())
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            }
        })
        .collect();
    Response::CreateTopics(CreateTopicsResponse::default().with_topics(topics))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::batch::Record;
    use crate::kafka::mem_log::MemLog;
    use crate::kafka::partition::{LeaderAndIsr, PartitionConfig};
    use crate::kafka::wire::{
        decode_request, decode_response, encode_request, encode_response, supported_versions, Inbound,
    };
    use crate::kafka::wire_records::decode_fetched_batches;
    use kafka_protocol::messages::{fetch_request, produce_request, InitProducerIdRequest, MetadataRequest};

    fn single_broker() -> (Broker<MemLog>, Cluster) {
        let mut broker = Broker::new(1, PartitionConfig::default());
        let state = LeaderAndIsr {
            leader: Some(1),
            leader_epoch: 0,
            isr: vec![1],
            replicas: vec![1],
            partition_epoch: 0,
        };
        let tp = TopicPartition {
            topic: "orders".into(),
            partition: 0,
        };
        broker.apply(tp, state, 0, &mut |_| MemLog::default());
        let cluster = Cluster {
            cluster_id: "jetsam".into(),
            controller: 1,
            brokers: vec![(1, "broker1".into(), 9092)],
        };
        (broker, cluster)
    }

    /// A request through the wire both ways, as a client sends it and reads the answer.
    fn call(
        broker: &mut Broker<MemLog>,
        cluster: &Cluster,
        version: i16,
        request: Request,
        now_ms: u64,
    ) -> Option<Response> {
        let (in_flight, frame) = encode_request(7, "test", version, &request);
        let Inbound::Request { header, request } = decode_request(frame.slice(4..)).unwrap() else {
            panic!("supported")
        };
        let answer = match handle(broker, cluster, request, RequestId(1), now_ms) {
            Handled::Respond(response) | Handled::RespondAndCreateTopics { answer: response, .. } => response,
            Handled::Silent => return None,
            other => panic!("{other:?}"),
        };
        let bytes = encode_response(&header, &answer);
        Some(decode_response(bytes.slice(4..), &in_flight).unwrap())
    }

    fn produce(value: &str, producer_id: i64, sequence: i32, acks: i16) -> Request {
        let batch = Batch {
            producer_id,
            producer_epoch: 0,
            base_sequence: sequence,
            ..Batch::plain(vec![Record {
                key: None,
                value: Some(value.as_bytes().to_vec()),
            }])
        };
        let partition = produce_request::PartitionProduceData::default()
            .with_index(0)
            .with_records(Some(encode_batch(&batch, 0)));
        let topic = produce_request::TopicProduceData::default()
            .with_name(topic_name("orders"))
            .with_partition_data(vec![partition]);
        Request::Produce(
            ProduceRequest::default()
                .with_acks(acks)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![topic]),
        )
    }

    fn produced_offset(response: Option<Response>) -> (i16, i64) {
        let Some(Response::Produce(produce)) = response else {
            panic!("{response:?}")
        };
        let p = &produce.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }

    #[test]
    fn a_client_learns_the_leader_gets_an_id_produces_idempotently_and_reads_back() {
        let (mut broker, cluster) = single_broker();
        let metadata = MetadataRequest::default().with_topics(None);
        let Some(Response::Metadata(answer)) =
            call(&mut broker, &cluster, 12, Request::Metadata(metadata), 0)
        else {
            panic!()
        };
        assert_eq!(answer.topics[0].partitions[0].leader_id, BrokerId(1));
        assert!(matches!(
            handle(
                &mut broker,
                &cluster,
                Request::InitProducerId(InitProducerIdRequest::default()),
                RequestId(2),
                0
            ),
            Handled::NeedProducerIds
        ));
        broker.add_producer_id_block(4000, 1000);
        let Some(Response::InitProducerId(id)) = call(
            &mut broker,
            &cluster,
            4,
            Request::InitProducerId(InitProducerIdRequest::default()),
            0,
        ) else {
            panic!()
        };
        assert_eq!(id.producer_id, ProducerId(4000));
        assert_eq!(
            produced_offset(call(&mut broker, &cluster, 9, produce("m1", 4000, 0, -1), 1)),
            (0, 0)
        );
        // The reply was lost and the client retries: the same offset, one copy.
        assert_eq!(
            produced_offset(call(&mut broker, &cluster, 9, produce("m1", 4000, 0, -1), 2)),
            (0, 0)
        );
        assert_eq!(
            call(&mut broker, &cluster, 9, produce("m2", 4000, 1, 0), 3),
            None,
            "acks=0: no answer"
        );
        let partition = fetch_request::FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(0)
            .with_partition_max_bytes(1 << 20);
        let topic = fetch_request::FetchTopic::default()
            .with_topic(topic_name("orders"))
            .with_partitions(vec![partition]);
        let fetch = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![topic]);
        let Some(Response::Fetch(fetched)) = call(&mut broker, &cluster, 12, Request::Fetch(fetch), 4) else {
            panic!()
        };
        let data = &fetched.responses[0].partitions[0];
        assert_eq!(data.high_watermark, 2);
        let batches = decode_fetched_batches(data.records.as_ref().unwrap()).unwrap();
        let values: Vec<&[u8]> = batches
            .iter()
            .map(|b| b.records[0].value.as_deref().unwrap())
            .collect();
        assert_eq!(values, [b"m1".as_slice(), b"m2".as_slice()]);
    }

    /// Encodes `response` as the answer to a request of `api_key` at `version`, as the real
    /// server does, and decodes it as a client would.
    fn encode_at(api_key: kafka_protocol::messages::ApiKey, version: i16, response: &Response) -> Response {
        let header = kafka_protocol::messages::RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(3);
        let in_flight = crate::kafka::wire::InFlight {
            api_key,
            api_version: version,
            correlation_id: 3,
        };
        let bytes = encode_response(&header, response);
        decode_response(bytes.slice(4..), &in_flight).unwrap()
    }

    fn find_coordinator(version: i16) -> Request {
        let request = kafka_protocol::messages::FindCoordinatorRequest::default();
        Request::FindCoordinator(if version >= 4 {
            request.with_coordinator_keys(vec![StrBytes::from_static_str("grp")])
        } else {
            request.with_key(StrBytes::from_static_str("grp"))
        })
    }

    /// kafka-python asks FindCoordinator v6 and librdkafka v2 (reference §2.9). From v4
    /// (KIP-699) the answer is a list of coordinators, one per key, and the top-level error
    /// code is gone: an answer with it set could not be encoded, and the server's connection
    /// task panicked on kafka-python's first consumer with a group id.
    #[test]
    fn find_coordinator_is_answered_in_each_versions_shape() {
        let (mut broker, cluster) = single_broker();
        for version in supported_versions(kafka_protocol::messages::ApiKey::FindCoordinator).unwrap() {
            let Some(Response::FindCoordinator(answer)) =
                call(&mut broker, &cluster, version, find_coordinator(version), 0)
            else {
                panic!("v{version}")
            };
            if version >= 4 {
                assert_eq!(answer.coordinators.len(), 1, "v{version}");
                assert_eq!(answer.coordinators[0].key.as_str(), "grp");
                assert_eq!(answer.coordinators[0].error_code, COORDINATOR_NOT_AVAILABLE);
                assert_eq!(answer.coordinators[0].node_id, BrokerId(-1));
            } else {
                assert_eq!(answer.error_code, COORDINATOR_NOT_AVAILABLE, "v{version}");
                assert_eq!(answer.node_id, BrokerId(-1));
            }
        }
        // A v4+ request without keys (or a v0-3 one with an empty key) cannot be told apart
        // here; its answer has no error of either shape, and still encodes at every version.
        let empty = kafka_protocol::messages::FindCoordinatorRequest::default();
        let (Handled::Respond(answer) | Handled::RespondAndCreateTopics { answer, .. }) = handle(
            &mut broker,
            &cluster,
            Request::FindCoordinator(empty),
            RequestId(9),
            0,
        ) else {
            panic!()
        };
        for version in supported_versions(kafka_protocol::messages::ApiKey::FindCoordinator).unwrap() {
            encode_at(
                kafka_protocol::messages::ApiKey::FindCoordinator,
                version,
                &answer,
            );
        }
    }

    /// Every answer the handler builds encodes at every version we advertise: a client may
    /// pick any of them, and an answer that cannot be encoded is a panic in the server.
    #[test]
    fn every_answer_encodes_at_every_advertised_version() {
        use kafka_protocol::messages::ApiKey;
        let (mut broker, cluster) = single_broker();
        broker.add_producer_id_block(0, 1000);
        let answers = [
            (
                ApiKey::Metadata,
                Request::Metadata(MetadataRequest::default().with_topics(None)),
            ),
            (ApiKey::Produce, produce("m", -1, -1, 1)),
            (
                ApiKey::Fetch,
                Request::Fetch(FetchRequest::default().with_replica_id(BrokerId(-1)).with_topics(
                    vec![fetch_request::FetchTopic::default()
                            .with_topic(topic_name("orders"))
                            .with_partitions(vec![fetch_request::FetchPartition::default()
                                .with_partition_max_bytes(1 << 20)])],
                )),
            ),
            (
                ApiKey::InitProducerId,
                Request::InitProducerId(InitProducerIdRequest::default()),
            ),
            (
                ApiKey::ListOffsets,
                Request::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
                    kafka_protocol::messages::list_offsets_request::ListOffsetsTopic::default()
                        .with_name(topic_name("orders"))
                        .with_partitions(vec![
                            kafka_protocol::messages::list_offsets_request::ListOffsetsPartition::default()
                                .with_timestamp(-1),
                        ]),
                ])),
            ),
            (
                ApiKey::OffsetForLeaderEpoch,
                Request::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default().with_topics(vec![
                    kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                        .with_topic(topic_name("orders"))
                        .with_partitions(vec![Default::default()]),
                ])),
            ),
        ];
        for (api_key, request) in answers {
            let Handled::Respond(answer) = handle(&mut broker, &cluster, request, RequestId(1), 0) else {
                panic!("{api_key:?}")
            };
            for version in supported_versions(api_key).unwrap() {
                encode_at(api_key, version, &answer);
            }
        }
        let created = create_topics_response(vec![
            ("a".into(), Ok((3, 1))),
            ("b".into(), Err(ControllerError::TopicAlreadyExists)),
        ]);
        for version in supported_versions(ApiKey::CreateTopics).unwrap() {
            encode_at(ApiKey::CreateTopics, version, &created);
        }
        for version in supported_versions(ApiKey::ApiVersions).unwrap() {
            encode_at(
                ApiKey::ApiVersions,
                version,
                &Response::ApiVersions(api_versions_response()),
            );
        }
    }

    #[test]
    fn a_corrupt_batch_and_an_unknown_partition_get_kafkas_errors() {
        let (mut broker, cluster) = single_broker();
        let partition = produce_request::PartitionProduceData::default()
            .with_index(0)
            .with_records(Some(Bytes::from_static(
                b"not a record batch at all, not even close",
            )));
        let topic = produce_request::TopicProduceData::default()
            .with_name(topic_name("orders"))
            .with_partition_data(vec![partition]);
        let request = Request::Produce(
            ProduceRequest::default()
                .with_acks(1)
                .with_topic_data(vec![topic]),
        );
        let (code, _) = produced_offset(call(&mut broker, &cluster, 9, request, 0));
        assert_eq!(code, KafkaError::CorruptMessage.code());
        let metadata = MetadataRequest::default().with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(topic_name("nope"))),
        ]));
        let Some(Response::Metadata(answer)) =
            call(&mut broker, &cluster, 12, Request::Metadata(metadata), 0)
        else {
            panic!()
        };
        assert_eq!(answer.topics[0].error_code, UNKNOWN_TOPIC_OR_PARTITION);
    }
}
