//! Tests of `wire`, `wire_schema` and `wire_records`: round trips of every API in the table,
//! Kafka's answers to what the broker does not understand, framing, hostile bytes, record
//! batches, and the first bytes a real client (kafka-python 3.0.12) sends.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use proptest::prelude::*;

use super::batch::{Batch, Record, NO_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE};
use super::wire::*;
use super::wire_records::*;
use super::wire_schema::check_request;

fn name(text: &'static str) -> StrBytes {
    StrBytes::from_static_str(text)
}

fn topic() -> TopicName {
    TopicName(name("orders"))
}

fn sample_batch() -> Batch {
    Batch {
        base_offset: 42,
        leader_epoch: 3,
        producer_id: 1000,
        producer_epoch: 2,
        base_sequence: 17,
        transactional: false,
        control: false,
        records: vec![
            Record {
                key: Some(b"k1".to_vec()),
                value: Some(b"message 1".to_vec()),
            },
            Record {
                key: None,
                value: Some(b"message 2".to_vec()),
            },
            Record {
                key: Some(b"k3".to_vec()),
                value: None,
            },
        ],
    }
}

/// A request with every array filled, using only the fields `version` has.
fn sample_request(api_key: ApiKey, version: i16) -> Request {
    match api_key {
        ApiKey::ApiVersions => Request::ApiVersions(sample_api_versions_request(version)),
        ApiKey::Metadata => Request::Metadata(sample_metadata_request(version)),
        ApiKey::Produce => Request::Produce(sample_produce_request()),
        ApiKey::Fetch => Request::Fetch(sample_fetch_request(version)),
        ApiKey::ListOffsets => Request::ListOffsets(sample_list_offsets_request(version)),
        ApiKey::CreateTopics => Request::CreateTopics(sample_create_topics_request()),
        ApiKey::InitProducerId => Request::InitProducerId(sample_init_producer_id_request(version)),
        ApiKey::FindCoordinator => Request::FindCoordinator(sample_find_coordinator_request(version)),
        ApiKey::OffsetForLeaderEpoch => {
            Request::OffsetForLeaderEpoch(sample_offset_for_leader_epoch_request())
        }
        ApiKey::AddPartitionsToTxn => Request::AddPartitionsToTxn(sample_add_partitions_to_txn_request()),
        ApiKey::EndTxn => Request::EndTxn(sample_end_txn_request()),
        ApiKey::WriteTxnMarkers => crate::kafka::handler_markers::markers_request(&sample_markers()),
        ApiKey::AddOffsetsToTxn => Request::AddOffsetsToTxn(
            kafka_protocol::messages::AddOffsetsToTxnRequest::default()
                .with_transactional_id(kafka_protocol::messages::TransactionalId(name("txn-1")))
                .with_producer_id(kafka_protocol::messages::ProducerId(1000))
                .with_producer_epoch(2)
                .with_group_id(kafka_protocol::messages::GroupId(name("g"))),
        ),
        ApiKey::TxnOffsetCommit => Request::TxnOffsetCommit(sample_txn_offset_commit_request(version)),
        other => super::wire_group_tests::sample_request(other, version),
    }
}

fn sample_add_partitions_to_txn_request() -> kafka_protocol::messages::AddPartitionsToTxnRequest {
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    let topic = AddPartitionsToTxnTopic::default()
        .with_name(topic())
        .with_partitions(vec![0, 2]);
    kafka_protocol::messages::AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(kafka_protocol::messages::TransactionalId(name("txn-1")))
        .with_v3_and_below_producer_id(kafka_protocol::messages::ProducerId(1000))
        .with_v3_and_below_producer_epoch(2)
        .with_v3_and_below_topics(vec![topic])
}

fn sample_txn_offset_commit_request(version: i16) -> kafka_protocol::messages::TxnOffsetCommitRequest {
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    let partition = TxnOffsetCommitRequestPartition::default()
        .with_partition_index(2)
        .with_committed_offset(42)
        .with_committed_leader_epoch(if version >= 2 { 3 } else { -1 })
        .with_committed_metadata(Some(name("meta")));
    let request = kafka_protocol::messages::TxnOffsetCommitRequest::default()
        .with_transactional_id(kafka_protocol::messages::TransactionalId(name("txn-1")))
        .with_group_id(kafka_protocol::messages::GroupId(name("g")))
        .with_producer_id(kafka_protocol::messages::ProducerId(1000))
        .with_producer_epoch(2)
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(topic())
            .with_partitions(vec![partition])]);
    if version < 3 {
        return request;
    }
    request
        .with_generation_id(4)
        .with_member_id(name("member-1"))
        .with_group_instance_id(Some(name("instance-1")))
}

fn sample_markers() -> crate::kafka::txn_coordinator::Markers {
    let tp = |topic: &str, partition| crate::kafka::controller::TopicPartition {
        topic: topic.into(),
        partition,
    };
    crate::kafka::txn_coordinator::Markers {
        transactional_id: "txn-1".into(),
        producer_id: 1000,
        producer_epoch: 2,
        commit: true,
        coordinator_epoch: 5,
        partitions: vec![tp("orders", 0), tp("orders", 2), tp("audit", 1)],
    }
}

fn sample_end_txn_request() -> kafka_protocol::messages::EndTxnRequest {
    kafka_protocol::messages::EndTxnRequest::default()
        .with_transactional_id(kafka_protocol::messages::TransactionalId(name("txn-1")))
        .with_producer_id(kafka_protocol::messages::ProducerId(1000))
        .with_producer_epoch(2)
        .with_committed(true)
}

fn sample_api_versions_request(version: i16) -> ApiVersionsRequest {
    let request = ApiVersionsRequest::default();
    if version < 3 {
        return request;
    }
    request
        .with_client_software_name(name("jetsam"))
        .with_client_software_version(name("0.1"))
}

fn sample_metadata_request(version: i16) -> MetadataRequest {
    let topics = vec![MetadataRequestTopic::default().with_name(Some(topic()))];
    let request = MetadataRequest::default().with_topics(Some(topics));
    if version >= 4 {
        return request.with_allow_auto_topic_creation(false);
    }
    request
}

fn sample_produce_request() -> ProduceRequest {
    let partition = PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(encode_batch(&sample_batch(), 1_700_000_000_000)));
    let topic_data = TopicProduceData::default()
        .with_name(topic())
        .with_partition_data(vec![partition]);
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![topic_data])
}

fn sample_fetch_request(version: i16) -> FetchRequest {
    let mut partition = FetchPartition::default()
        .with_partition(0)
        .with_fetch_offset(42)
        .with_partition_max_bytes(1 << 20);
    if version >= 9 {
        partition = partition.with_current_leader_epoch(3);
    }
    if version >= 12 {
        partition = partition.with_last_fetched_epoch(2);
    }
    let topics = vec![FetchTopic::default()
        .with_topic(topic())
        .with_partitions(vec![partition])];
    let mut request = FetchRequest::default()
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(topics);
    if version >= 7 {
        let forgotten = ForgottenTopic::default()
            .with_topic(TopicName(name("old")))
            .with_partitions(vec![1, 2]);
        request = request
            .with_forgotten_topics_data(vec![forgotten])
            .with_session_id(5);
    }
    if version >= 11 {
        request = request.with_rack_id(name("rack-a"));
    }
    request
}

fn sample_list_offsets_request(version: i16) -> ListOffsetsRequest {
    let mut partition = ListOffsetsPartition::default()
        .with_partition_index(0)
        .with_timestamp(-1);
    if version >= 4 {
        partition = partition.with_current_leader_epoch(3);
    }
    let topics = vec![ListOffsetsTopic::default()
        .with_name(topic())
        .with_partitions(vec![partition])];
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(topics);
    if version >= 2 {
        return request.with_isolation_level(1);
    }
    request
}

fn sample_create_topics_request() -> CreateTopicsRequest {
    let assignment = CreatableReplicaAssignment::default()
        .with_partition_index(0)
        .with_broker_ids(vec![BrokerId(1), BrokerId(2)]);
    let config = CreatableTopicConfig::default()
        .with_name(name("min.insync.replicas"))
        .with_value(Some(name("2")));
    let topic = CreatableTopic::default()
        .with_name(topic())
        .with_num_partitions(-1)
        .with_replication_factor(-1)
        .with_assignments(vec![assignment])
        .with_configs(vec![config]);
    CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(30_000)
}

fn sample_init_producer_id_request(version: i16) -> InitProducerIdRequest {
    let request = InitProducerIdRequest::default().with_transaction_timeout_ms(60_000);
    if version >= 3 {
        return request.with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    }
    request
}

fn sample_find_coordinator_request(version: i16) -> FindCoordinatorRequest {
    if version >= 4 {
        return FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![name("producer-a")]);
    }
    let request = FindCoordinatorRequest::default().with_key(name("group-a"));
    if version >= 1 {
        return request.with_key_type(0);
    }
    request
}

fn sample_offset_for_leader_epoch_request() -> OffsetForLeaderEpochRequest {
    let partition = OffsetForLeaderPartition::default()
        .with_partition(0)
        .with_current_leader_epoch(3)
        .with_leader_epoch(2);
    let topic = OffsetForLeaderTopic::default()
        .with_topic(topic())
        .with_partitions(vec![partition]);
    OffsetForLeaderEpochRequest::default().with_topics(vec![topic])
}

/// A response with every array filled, using only fields all our versions have.
fn sample_response(api_key: ApiKey, version: i16) -> Response {
    match api_key {
        ApiKey::ApiVersions => Response::ApiVersions(api_versions_response()),
        ApiKey::Metadata => Response::Metadata(sample_metadata_response()),
        ApiKey::Produce => Response::Produce(sample_produce_response()),
        ApiKey::Fetch => Response::Fetch(sample_fetch_response()),
        ApiKey::ListOffsets => Response::ListOffsets(sample_list_offsets_response()),
        ApiKey::CreateTopics => Response::CreateTopics(sample_create_topics_response()),
        ApiKey::InitProducerId => Response::InitProducerId(
            InitProducerIdResponse::default()
                .with_producer_id(ProducerId(1000))
                .with_producer_epoch(0),
        ),
        ApiKey::FindCoordinator => Response::FindCoordinator(sample_find_coordinator_response(version)),
        ApiKey::OffsetForLeaderEpoch => {
            Response::OffsetForLeaderEpoch(sample_offset_for_leader_epoch_response())
        }
        ApiKey::AddPartitionsToTxn => crate::kafka::handler_txn::txn_response(
            crate::kafka::txn_coordinator::TxnAnswer::AddPartitions(Err(
                crate::kafka::error::KafkaError::ConcurrentTransactions,
            )),
            &[
                crate::kafka::controller::TopicPartition {
                    topic: "orders".into(),
                    partition: 0,
                },
                crate::kafka::controller::TopicPartition {
                    topic: "orders".into(),
                    partition: 2,
                },
            ],
        ),
        // The producer id and epoch only exist from v5 on.
        ApiKey::EndTxn => {
            Response::EndTxn(kafka_protocol::messages::EndTxnResponse::default().with_error_code(51))
        }
        ApiKey::WriteTxnMarkers => {
            let markers = sample_markers();
            let asked: Vec<_> = markers.partitions.iter().map(|tp| (1000, tp.clone())).collect();
            let answers = vec![
                (markers.partitions[0].clone(), Ok(7)),
                (
                    markers.partitions[2].clone(),
                    Err(crate::kafka::error::KafkaError::NotLeaderOrFollower),
                ),
            ];
            crate::kafka::handler_markers::markers_response(&asked, answers)
        }
        ApiKey::AddOffsetsToTxn => crate::kafka::handler_txn_offsets::add_offsets_response(Err(
            crate::kafka::error::KafkaError::ConcurrentTransactions,
        )),
        ApiKey::TxnOffsetCommit => crate::kafka::handler_txn_offsets::txn_commit_response(vec![
            ("orders".into(), 0, Ok(())),
            (
                "orders".into(),
                2,
                Err(crate::kafka::group::GroupError::IllegalGeneration),
            ),
        ]),
        other => super::wire_group_tests::sample_response(other, version),
    }
}

fn sample_metadata_response() -> MetadataResponse {
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(1))
        .with_host(name("kafka-1"))
        .with_port(9092);
    let partition = MetadataResponsePartition::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(1))
        .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
        .with_isr_nodes(vec![BrokerId(1)]);
    let topic = MetadataResponseTopic::default()
        .with_name(Some(topic()))
        .with_partitions(vec![partition]);
    MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_topics(vec![topic])
}

fn sample_produce_response() -> ProduceResponse {
    let partition = PartitionProduceResponse::default()
        .with_index(0)
        .with_base_offset(42);
    let topic = TopicProduceResponse::default()
        .with_name(topic())
        .with_partition_responses(vec![partition]);
    ProduceResponse::default().with_responses(vec![topic])
}

fn sample_fetch_response() -> FetchResponse {
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_high_watermark(45)
        .with_last_stable_offset(45)
        .with_records(Some(encode_batch(&sample_batch(), 1_700_000_000_000)));
    let topic = FetchableTopicResponse::default()
        .with_topic(topic())
        .with_partitions(vec![partition]);
    FetchResponse::default().with_responses(vec![topic])
}

fn sample_list_offsets_response() -> ListOffsetsResponse {
    let partition = ListOffsetsPartitionResponse::default()
        .with_partition_index(0)
        .with_timestamp(-1)
        .with_offset(45);
    let topic = ListOffsetsTopicResponse::default()
        .with_name(topic())
        .with_partitions(vec![partition]);
    ListOffsetsResponse::default().with_topics(vec![topic])
}

fn sample_create_topics_response() -> CreateTopicsResponse {
    let result = CreatableTopicResult::default()
        .with_name(topic())
        .with_error_code(36);
    CreateTopicsResponse::default().with_topics(vec![result])
}

fn sample_find_coordinator_response(version: i16) -> FindCoordinatorResponse {
    if version >= 4 {
        let coordinator = Coordinator::default()
            .with_key(name("producer-a"))
            .with_node_id(BrokerId(2))
            .with_host(name("kafka-2"))
            .with_port(9092);
        return FindCoordinatorResponse::default().with_coordinators(vec![coordinator]);
    }
    FindCoordinatorResponse::default()
        .with_node_id(BrokerId(2))
        .with_host(name("kafka-2"))
        .with_port(9092)
}

fn sample_offset_for_leader_epoch_response() -> OffsetForLeaderEpochResponse {
    let partition = EpochEndOffset::default()
        .with_partition(0)
        .with_leader_epoch(2)
        .with_end_offset(40);
    let topic = OffsetForLeaderTopicResult::default()
        .with_topic(topic())
        .with_partitions(vec![partition]);
    OffsetForLeaderEpochResponse::default().with_topics(vec![topic])
}

/// The one frame in `bytes`, through the incremental decoder.
fn unframe(bytes: &[u8]) -> Bytes {
    let mut frames = FrameDecoder::default().decode(bytes).expect("a valid frame");
    assert_eq!(frames.len(), 1, "one frame");
    frames.remove(0)
}

fn request_frame(api_key: i16, api_version: i16, body: &[u8]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(api_key);
    buf.put_i16(api_version);
    buf.put_i32(7);
    buf.put_i16(-1);
    let header_version = ApiKey::try_from(api_key).map_or(1, |key| key.request_header_version(api_version));
    if header_version >= 2 {
        buf.put_u8(0); // no tagged fields
    }
    buf.put_slice(body);
    buf.freeze()
}

/// Client to broker and back, at `version`: the broker sees the request and header the
/// client sent, and the client reads the response the broker sent.
fn round_trip(api_key: ApiKey, version: i16) {
    let request = sample_request(api_key, version);
    let (in_flight, bytes) = encode_request(99, "jetsam-client", version, &request);
    let inbound =
        decode_request(unframe(&bytes)).unwrap_or_else(|error| panic!("{api_key:?} v{version}: {error}"));
    let Inbound::Request {
        header,
        request: decoded,
    } = inbound
    else {
        panic!("{api_key:?} v{version} is in the table")
    };
    assert_eq!(decoded, request, "{api_key:?} v{version} request");
    assert_eq!(header.correlation_id, 99);
    assert_eq!(header.request_api_version, version);
    assert_eq!(header.client_id.as_deref(), Some("jetsam-client"));

    let response = sample_response(api_key, version);
    let bytes = encode_response(&header, &response);
    let decoded = decode_response(unframe(&bytes), &in_flight)
        .unwrap_or_else(|error| panic!("{api_key:?} v{version}: {error}"));
    assert_eq!(decoded, response, "{api_key:?} v{version} response");
}

#[test]
fn every_api_round_trips_at_its_lowest_and_highest_version() {
    for api in SUPPORTED_APIS {
        round_trip(api.api_key, api.version_min);
        round_trip(api.api_key, api.version_max);
    }
}

#[test]
fn request_layouts_match_kafka_protocol_at_every_version() {
    for api in SUPPORTED_APIS {
        for version in api.versions() {
            let mut body = BytesMut::new();
            match sample_request(api.api_key, version) {
                Request::ApiVersions(r) => r.encode(&mut body, version),
                Request::Metadata(r) => r.encode(&mut body, version),
                Request::Produce(r) => r.encode(&mut body, version),
                Request::Fetch(r) => r.encode(&mut body, version),
                Request::ListOffsets(r) => r.encode(&mut body, version),
                Request::CreateTopics(r) => r.encode(&mut body, version),
                Request::InitProducerId(r) => r.encode(&mut body, version),
                Request::FindCoordinator(r) => r.encode(&mut body, version),
                Request::OffsetForLeaderEpoch(r) => r.encode(&mut body, version),
                Request::JoinGroup(r) => r.encode(&mut body, version),
                Request::SyncGroup(r) => r.encode(&mut body, version),
                Request::Heartbeat(r) => r.encode(&mut body, version),
                Request::LeaveGroup(r) => r.encode(&mut body, version),
                Request::OffsetCommit(r) => r.encode(&mut body, version),
                Request::OffsetFetch(r) => r.encode(&mut body, version),
                Request::AddPartitionsToTxn(r) => r.encode(&mut body, version),
                Request::EndTxn(r) => r.encode(&mut body, version),
                Request::WriteTxnMarkers(r) => r.encode(&mut body, version),
                Request::AddOffsetsToTxn(r) => r.encode(&mut body, version),
                Request::TxnOffsetCommit(r) => r.encode(&mut body, version),
            }
            .unwrap_or_else(|error| panic!("{:?} v{version}: {error}", api.api_key));
            let used = check_request(api.api_key, version, &body)
                .unwrap_or_else(|error| panic!("{:?} v{version}: {error}", api.api_key));
            assert_eq!(
                used,
                body.len(),
                "{:?} v{version} layout covers the body",
                api.api_key
            );
        }
    }
}

#[test]
fn table_is_within_what_kafka_protocol_supports() {
    for api in SUPPORTED_APIS {
        let valid = api.api_key.valid_versions();
        assert!(
            valid.min <= api.version_min && api.version_max <= valid.max,
            "{api:?} vs {valid}"
        );
    }
    let advertised = api_versions_response();
    assert_eq!(advertised.api_keys.len(), SUPPORTED_APIS.len());
    assert_eq!(negotiate_version(&advertised, ApiKey::Fetch), Some(12));
    assert_eq!(negotiate_version(&advertised, ApiKey::JoinGroup), Some(9));
    assert_eq!(negotiate_version(&advertised, ApiKey::DescribeGroups), None);
}

#[test]
fn api_versions_at_an_unknown_version_is_answered_at_v0_with_unsupported_version() {
    // A client from the future sends ApiVersions v9 (header v2, since v3+ is flexible), with
    // a body we cannot know; Kafka does not parse it.
    let mut buf = BytesMut::new();
    buf.put_i16(ApiKey::ApiVersions as i16);
    buf.put_i16(9);
    buf.put_i32(5);
    buf.put_i16(3);
    buf.put_slice(b"cli");
    buf.put_u8(0); // no tagged fields in the header
    buf.put_slice(&[0xff, 0xfe, 0xfd]);
    let inbound = decode_request(buf.freeze()).expect("answered, not closed");
    let Inbound::UnsupportedApiVersions { header } = &inbound else {
        panic!("{inbound:?}")
    };
    assert_eq!(header.correlation_id, 5);
    assert_eq!(response_version(header), 0);
    let response = Response::ApiVersions(unsupported_api_versions_response());
    let frame = unframe(&encode_response(header, &response));
    // A v0 response header (correlation id only) and a v0 body: error 35, then one entry.
    let expected: &[u8] = &[0, 0, 0, 5, 0, 35, 0, 0, 0, 1, 0, 18, 0, 0, 0, 4];
    assert_eq!(&frame[..], expected);
    // The client that sent v9 falls back to reading v0 and learns to retry with v4.
    let in_flight = InFlight {
        api_key: ApiKey::ApiVersions,
        api_version: 3,
        correlation_id: 5,
    };
    let Ok(Response::ApiVersions(decoded)) = decode_response(frame, &in_flight) else {
        panic!("the client reads the v0 answer")
    };
    assert_eq!(decoded.error_code, UNSUPPORTED_VERSION);
    assert_eq!(negotiate_version(&decoded, ApiKey::ApiVersions), Some(4));
}

#[test]
fn other_apis_at_an_unsupported_version_close_the_connection() {
    // Produce v2 (below Kafka 4.0's floor), Fetch v13 (above our table), JoinGroup v3 (below
    // our floor: it cannot be told MEMBER_ID_REQUIRED), DescribeGroups (not ours).
    for (api_key, api_version) in [(0, 2), (1, 13), (11, 3), (15, 5)] {
        let error = decode_request(request_frame(api_key, api_version, &[])).unwrap_err();
        assert_eq!(error, RequestError::UnsupportedVersion { api_key, api_version });
    }
    let error = decode_request(request_frame(999, 0, &[])).unwrap_err();
    assert_eq!(error, RequestError::UnknownApiKey { api_key: 999 });
}

#[test]
fn a_null_client_id_reads_as_empty_as_kafka_does() {
    let inbound = decode_request(request_frame(ApiKey::ApiVersions as i16, 0, &[])).unwrap();
    assert_eq!(inbound.header().client_id.as_deref(), Some(""));
}

#[test]
fn an_array_claiming_more_than_the_frame_is_refused_before_allocating() {
    // Without wire_schema this frame aborts the process: kafka-protocol reserves room for
    // i32::MAX topics (over 100 GiB) as soon as it reads the length.
    let mut body = BytesMut::new();
    body.put_i32(i32::MAX);
    let error = decode_request(request_frame(ApiKey::Metadata as i16, 0, &body)).unwrap_err();
    assert!(
        matches!(
            error,
            RequestError::InvalidBody {
                api_key: 3,
                api_version: 0,
                ..
            }
        ),
        "{error}"
    );
    // The same at a flexible version (compact array, unsigned varint length + 1).
    let mut frame = BytesMut::new();
    frame.put_slice(&request_frame(ApiKey::Metadata as i16, 12, &[]));
    frame.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    let error = decode_request(frame.freeze()).unwrap_err();
    assert!(matches!(error, RequestError::InvalidBody { .. }), "{error}");
}

#[test]
fn frames_split_byte_by_byte_come_out_whole() {
    let (_, first) = encode_request(1, "c", 12, &sample_request(ApiKey::Metadata, 12));
    let (_, second) = encode_request(2, "c", 10, &sample_request(ApiKey::Produce, 10));
    let stream: Vec<u8> = [&first[..], &second[..]].concat();
    let mut decoder = FrameDecoder::default();
    let mut frames = Vec::new();
    for byte in &stream {
        frames.extend(decoder.decode(std::slice::from_ref(byte)).unwrap());
        assert!(decoder.buffered_bytes() < first.len().max(second.len()));
    }
    assert_eq!(frames, vec![first.slice(4..), second.slice(4..)]);
    assert_eq!(decoder.buffered_bytes(), 0);
}

#[test]
fn oversized_and_negative_frames_close_the_connection_before_buffering() {
    let mut decoder = FrameDecoder::new(1024);
    let error = decoder.decode(&1025i32.to_be_bytes()).unwrap_err();
    assert_eq!(
        error,
        FrameError::TooLarge {
            size: 1025,
            frame_bytes_max: 1024
        }
    );
    assert_eq!(
        error.to_string(),
        "Invalid receive (size = 1025 larger than 1024)"
    );
    assert_eq!(decoder.buffered_bytes(), 0);
    assert_eq!(decoder.decode(&[0; 8]), Err(error), "the connection stays failed");

    let mut decoder = FrameDecoder::default();
    assert_eq!(
        decoder.decode(&[0xff, 0xff, 0xff, 0xff]),
        Err(FrameError::Negative { size: -1 })
    );
    let mut decoder = FrameDecoder::default();
    let error = decoder
        .decode(&(FRAME_BYTES_MAX as i32 + 1).to_be_bytes())
        .unwrap_err();
    assert!(matches!(error, FrameError::TooLarge { .. }));
}

#[test]
fn kafka_python_first_request_is_api_versions_v4() {
    // Captured from kafka-python 3.0.12 (pip install kafka-python): a Python TCP listener on
    // 127.0.0.1 read the first frame `KafkaProducer(bootstrap_servers="127.0.0.1:PORT",
    // client_id="jetsam-capture")` sent, and wrote it to this file unchanged (size prefix
    // included).
    let captured = include_bytes!("fixtures/kafka_python_3_0_12_api_versions.bin");
    let inbound = decode_request(unframe(captured)).expect("a real client's request decodes");
    let Inbound::Request {
        header,
        request: Request::ApiVersions(request),
    } = &inbound
    else {
        panic!("{inbound:?}")
    };
    assert_eq!(header.request_api_version, 4);
    assert_eq!(header.correlation_id, 1);
    assert_eq!(header.client_id.as_deref(), Some("jetsam-capture"));
    assert_eq!(request.client_software_name.as_str(), "kafka-python");
    assert_eq!(request.client_software_version.as_str(), "3.0.12");
    // Our answer: a v0 response header and the v4 body of our table.
    let frame = unframe(&encode_response(
        header,
        &Response::ApiVersions(api_versions_response()),
    ));
    assert_eq!(
        &frame[..4],
        &1i32.to_be_bytes(),
        "correlation id, and no tagged fields after it"
    );
}

#[test]
fn batch_round_trips_through_record_batch_v2() {
    let idempotent = sample_batch();
    let bytes = encode_batch(&idempotent, 1_700_000_000_000);
    assert_eq!(decode_produce_batch(&bytes), Ok(idempotent.clone()));

    let mut plain = Batch::plain(vec![Record {
        key: None,
        value: Some(b"only".to_vec()),
    }]);
    plain.base_offset = 7;
    let bytes = encode_batch(&plain, 0);
    let decoded = decode_produce_batch(&bytes).unwrap();
    assert_eq!(decoded, plain);
    assert_eq!(
        (decoded.producer_id, decoded.base_sequence, decoded.leader_epoch),
        (NO_PRODUCER_ID, NO_SEQUENCE, NO_EPOCH)
    );
}

#[test]
fn fetched_batches_skip_a_partial_last_batch() {
    let first = sample_batch();
    let mut second = sample_batch();
    second.base_offset = first.next_offset();
    let mut records = BytesMut::new();
    records.put_slice(&encode_batch(&first, 0));
    let second_bytes = encode_batch(&second, 0);
    records.put_slice(&second_bytes);
    let whole = records.clone().freeze();
    assert_eq!(decode_fetched_batches(&whole), Ok(vec![first.clone(), second]));
    let cut = whole.slice(..whole.len() - 5);
    assert_eq!(decode_fetched_batches(&cut), Ok(vec![first]));
    assert!(
        matches!(decode_produce_batch(&whole), Err(BatchError::Invalid(_))),
        "one batch per partition"
    );
}

#[test]
fn corrupt_batches_are_errors_with_kafkas_codes() {
    let bytes = encode_batch(&sample_batch(), 0);
    let mut flipped = bytes.to_vec();
    *flipped.last_mut().unwrap() ^= 0x01;
    let error = decode_produce_batch(&Bytes::from(flipped)).unwrap_err();
    assert_eq!(error.error_code(), 2, "CORRUPT_MESSAGE for a bad CRC: {error}");

    let truncated = bytes.slice(..bytes.len() - 1);
    assert_eq!(decode_produce_batch(&truncated).unwrap_err().error_code(), 2);

    let mut gzip = bytes.to_vec();
    gzip[22] |= 1;
    assert_eq!(
        decode_produce_batch(&Bytes::from(gzip)),
        Err(BatchError::Compressed { codec: 1 })
    );

    // A record count no batch of this size could hold: refused before the decoder reserves it.
    let mut huge = bytes.to_vec();
    huge[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    assert_eq!(
        decode_produce_batch(&Bytes::from(huge)).unwrap_err().error_code(),
        2
    );

    assert_eq!(
        decode_produce_batch(&Bytes::new()).unwrap_err().error_code(),
        87,
        "INVALID_RECORD"
    );
}

proptest! {
    #[test]
    fn garbage_requests_are_errors_not_panics(
        api_key in prop::sample::select(vec![0i16, 1, 2, 3, 10, 18, 19, 22, 23, 11, 999]),
        api_version in -1i16..16,
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut frame = BytesMut::new();
        frame.put_i16(api_key);
        frame.put_i16(api_version);
        frame.put_slice(&body);
        let _ = decode_request(frame.freeze());
    }

    #[test]
    fn mutated_requests_are_errors_not_panics(
        api in prop::sample::select(SUPPORTED_APIS.to_vec()),
        high in any::<bool>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let version = if high { api.version_max } else { api.version_min };
        let (_, bytes) = encode_request(1, "c", version, &sample_request(api.api_key, version));
        let mut frame = bytes[4..].to_vec();
        for (index, byte) in flips {
            let at = index.index(frame.len());
            frame[at] = byte;
        }
        let _ = decode_request(Bytes::from(frame));
    }

    #[test]
    fn garbage_batches_are_errors_not_panics(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = encode_batch(&sample_batch(), 0).to_vec();
        for (index, byte) in flips {
            let at = index.index(bytes.len());
            bytes[at] = byte;
        }
        let bytes = Bytes::from(bytes);
        let _ = decode_produce_batch(&bytes);
        let _ = decode_fetched_batches(&bytes);
    }
}

/// CRC-32C (Castagnoli), the checksum of RecordBatch v2, bit by bit.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn a_header_count_past_the_record_is_refused_even_with_a_good_crc() {
    // One record with no key, no value and no headers: its last byte is the header count.
    let batch = Batch::plain(vec![Record {
        key: None,
        value: None,
    }]);
    let mut bytes = encode_batch(&batch, 0).to_vec();
    assert_eq!(bytes.last(), Some(&0));
    let stored_crc = u32::from_be_bytes(bytes[17..21].try_into().unwrap());
    assert_eq!(crc32c(&bytes[21..]), stored_crc, "our CRC-32C is Kafka's");
    // Claim i32::MAX headers (zig-zag varint), fix the lengths and the CRC: only the shape
    // check stands between this and kafka-protocol reserving room for them.
    bytes.pop();
    bytes.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0x0f]);
    bytes[61] += 8; // the record's length (zig-zag: +4 bytes)
    let batch_length = (bytes.len() - 12) as i32;
    bytes[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    let error = decode_produce_batch(&Bytes::from(bytes)).unwrap_err();
    assert_eq!(
        error,
        BatchError::Corrupt("record header count past the record".into())
    );
}
