//! One broker that leads both a data partition and the transaction state partition, driven
//! through the wire: the transactional producer's requests, then read_committed and
//! read_uncommitted fetches, as a client sends and reads them.

use super::*;
use crate::kafka::batch::{Batch, Record};
use crate::kafka::broker::{Broker, BrokerOutput};
use crate::kafka::group_coordinator::OFFSETS_TOPIC;
use crate::kafka::handler::{handle, Cluster, Handled};
use crate::kafka::mem_log::MemLog;
use crate::kafka::partition::{Acks, LeaderAndIsr, PartitionConfig};
use crate::kafka::read_committed::{aborted_from_wire, deliverable, IsolationLevel};
use crate::kafka::txn_coordinator::TxnProtocol;
use crate::kafka::txn_state::TRANSACTION_STATE_TOPIC;
use crate::kafka::wire::{
    decode_request, decode_response, encode_request, encode_response, Inbound, Request,
};
use crate::kafka::wire_records::{decode_fetched_batches, encode_batch};
use kafka_protocol::messages::{
    add_partitions_to_txn_request, fetch_request, produce_request, FetchRequest, ProduceRequest,
    TransactionalId,
};

const TXN: &str = "orders-app";

struct Client {
    broker: Broker<MemLog>,
    cluster: Cluster,
    next: u64,
    now_ms: u64,
}

fn tp(topic: &str) -> TopicPartition {
    TopicPartition {
        topic: topic.into(),
        partition: 0,
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

impl Client {
    fn new(protocol: TxnProtocol) -> Client {
        let mut broker = Broker::new(1, PartitionConfig::default());
        broker.configure_transactions(protocol, 1);
        broker.add_producer_id_block(1_000, 10);
        let state = LeaderAndIsr {
            leader: Some(1),
            leader_epoch: 0,
            isr: vec![1],
            replicas: vec![1],
            partition_epoch: 0,
        };
        broker.set_group_config(crate::kafka::group::GroupConfig {
            offsets_topic_partitions: 1,
            ..crate::kafka::group::GroupConfig::default()
        });
        for topic in ["orders", TRANSACTION_STATE_TOPIC, OFFSETS_TOPIC] {
            broker.apply(tp(topic), state.clone(), 0, &mut |_| MemLog::default());
        }
        broker.tick(0); // the offsets partition loads
        let cluster = Cluster {
            cluster_id: "jetsam".into(),
            controller: 1,
            brokers: vec![(1, "broker1".into(), 9092)],
        };
        Client {
            broker,
            cluster,
            next: 0,
            now_ms: 0,
        }
    }

    /// A request through the wire both ways; a transactional one is answered once the
    /// broker's outputs say so.
    fn call(&mut self, version: i16, request: Request) -> Response {
        self.next += 1;
        self.now_ms += 1;
        let (in_flight, frame) = encode_request(7, "test", version, &request);
        let Inbound::Request { header, request } = decode_request(frame.slice(4..)).unwrap() else {
            panic!("supported")
        };
        let answer = match handle(
            &mut self.broker,
            &self.cluster,
            request,
            RequestId(self.next),
            self.now_ms,
        ) {
            Handled::Respond(response) => response,
            Handled::TxnWaiting { request, partitions } => {
                let outputs = self.broker.take_outputs();
                let answer = outputs.into_iter().find_map(|o| match o {
                    BrokerOutput::TxnAnswered { request: r, answer } if r == request => Some(answer),
                    _ => None,
                });
                txn_response(answer.expect("a single broker answers at once"), &partitions)
            }
            other => panic!("{other:?}"),
        };
        let bytes = encode_response(&header, &answer);
        decode_response(bytes.slice(4..), &in_flight).unwrap()
    }

    fn init(&mut self) -> (i64, i16) {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(TXN))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let Response::InitProducerId(answer) = self.call(4, Request::InitProducerId(request)) else {
            panic!()
        };
        assert_eq!(answer.error_code, 0);
        (answer.producer_id.0, answer.producer_epoch)
    }

    fn add(&mut self, (pid, epoch): (i64, i16)) -> i16 {
        let topic = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
            .with_name(name("orders"))
            .with_partitions(vec![0]);
        let request = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_static_str(TXN)))
            .with_v3_and_below_producer_id(ProducerId(pid))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(vec![topic]);
        let Response::AddPartitionsToTxn(answer) = self.call(3, Request::AddPartitionsToTxn(request)) else {
            panic!()
        };
        answer.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
    }

    fn produce(&mut self, (pid, epoch): (i64, i16), sequence: i32, value: &str) -> i16 {
        let batch = Batch {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: sequence,
            transactional: true,
            ..Batch::plain(vec![Record {
                key: None,
                value: Some(value.as_bytes().to_vec()),
            }])
        };
        let partition = produce_request::PartitionProduceData::default()
            .with_index(0)
            .with_records(Some(encode_batch(&batch, 0)));
        let topic = produce_request::TopicProduceData::default()
            .with_name(name("orders"))
            .with_partition_data(vec![partition]);
        let request = ProduceRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(TXN))))
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![topic]);
        let Response::Produce(answer) = self.call(9, Request::Produce(request)) else {
            panic!()
        };
        answer.responses[0].partition_responses[0].error_code
    }

    fn end(&mut self, producer: (i64, i16), commit: bool) -> i16 {
        self.end_at(3, producer, commit).0
    }

    /// EndTxn at `version`: its error and the producer id and epoch it answers (v5 only).
    fn end_at(&mut self, version: i16, (pid, epoch): (i64, i16), commit: bool) -> (i16, (i64, i16)) {
        let request = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_static_str(TXN)))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_committed(commit);
        let Response::EndTxn(answer) = self.call(version, Request::EndTxn(request)) else {
            panic!()
        };
        self.broker.tick(self.now_ms); // the markers and the completion
        (answer.error_code, (answer.producer_id.0, answer.producer_epoch))
    }

    /// A consumer's fetch from offset 0, and the values it hands the application.
    fn read(&mut self, isolation: IsolationLevel) -> (i64, Vec<String>) {
        let partition = fetch_request::FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(0)
            .with_partition_max_bytes(1 << 20);
        let topic = fetch_request::FetchTopic::default()
            .with_topic(name("orders"))
            .with_partitions(vec![partition]);
        let request = FetchRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_max_bytes(1 << 20)
            .with_isolation_level(isolation.wire())
            .with_topics(vec![topic]);
        let Response::Fetch(answer) = self.call(12, Request::Fetch(request)) else {
            panic!()
        };
        let data = &answer.responses[0].partitions[0];
        let batches = decode_fetched_batches(data.records.as_ref().unwrap()).unwrap();
        let aborted = aborted_from_wire(data).unwrap();
        let values = deliverable(isolation, &batches, &aborted, 0)
            .into_iter()
            .map(|(_, r)| String::from_utf8(r.value.unwrap()).unwrap())
            .collect();
        (data.last_stable_offset, values)
    }
}

#[test]
fn an_aborted_transaction_is_hidden_from_read_committed_and_a_committed_one_is_not() {
    let mut c = Client::new(TxnProtocol::V1);
    let producer = c.init();
    assert_eq!(producer, (1_000, 0));
    assert_eq!(c.add(producer), 0);
    assert_eq!(c.produce(producer, 0, "aborted"), 0);
    assert_eq!(
        c.read(IsolationLevel::ReadCommitted),
        (0, vec![]),
        "the LSO holds at the open transaction"
    );
    assert_eq!(c.end(producer, false), 0);
    assert_eq!(c.read(IsolationLevel::ReadCommitted).1, Vec::<String>::new());
    assert_eq!(c.read(IsolationLevel::ReadUncommitted).1, ["aborted"]);
    assert_eq!(c.add(producer), 0);
    assert_eq!(c.produce(producer, 1, "committed"), 0);
    assert_eq!(c.end(producer, true), 0);
    let (lso, values) = c.read(IsolationLevel::ReadCommitted);
    assert_eq!(values, ["committed"]);
    assert_eq!(lso, 4, "two records and two markers");
}

#[test]
fn a_second_instance_fences_the_first_and_aborts_what_it_left_open() {
    let mut c = Client::new(TxnProtocol::V1);
    let first = c.init();
    c.add(first);
    c.produce(first, 0, "zombie");
    // The new instance's first InitProducerId aborts the open transaction and asks to retry.
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(TXN))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let Response::InitProducerId(answer) = c.call(4, Request::InitProducerId(request)) else {
        panic!()
    };
    assert_eq!(answer.error_code, KafkaError::ConcurrentTransactions.code());
    c.broker.tick(c.now_ms);
    let second = c.init();
    assert_eq!(second, (first.0, first.1 + 2));
    assert_eq!(
        c.produce(first, 1, "late"),
        KafkaError::InvalidProducerEpoch.code()
    );
    assert_eq!(c.end(first, true), KafkaError::ProducerFenced.code());
    assert_eq!(c.read(IsolationLevel::ReadCommitted).1, Vec::<String>::new());
}

/// KIP-890's delayed produce: the producer's second batch of a transaction it then aborts
/// is held up in the network, and reaches the leader after the abort, while the producer's
/// next transaction is open. EndTxn is sent at v5, which answers the epoch to go on with.
fn delayed_produce(protocol: TxnProtocol) -> (Client, i16, Vec<String>) {
    let mut c = Client::new(protocol);
    let producer = c.init();
    c.add(producer);
    assert_eq!(c.produce(producer, 0, "aborted-0"), 0);
    let (error, next) = c.end_at(5, producer, false);
    assert_eq!(error, 0);
    c.add(next);
    // The held-up batch, sequence 1 of the old epoch, arrives now.
    let late = c.produce(producer, 1, "aborted-1");
    let sequence = if next == producer { 2 } else { 0 };
    assert_eq!(c.produce(next, sequence, "committed-0"), 0);
    assert_eq!(c.end_at(5, next, true).0, 0);
    let read = c.read(IsolationLevel::ReadCommitted).1;
    (c, late, read)
}

#[test]
fn under_v1_a_delayed_produce_of_an_aborted_transaction_is_committed_with_the_next() {
    let (_, late, read) = delayed_produce(TxnProtocol::V1);
    assert_eq!(late, 0, "same producer id and epoch, next in sequence: appended");
    assert_eq!(
        read,
        ["aborted-1", "committed-0"],
        "read_committed reads an aborted write"
    );
}

#[test]
fn under_v2_the_delayed_produce_carries_the_old_epoch_and_is_fenced() {
    let (_, late, read) = delayed_produce(TxnProtocol::V2);
    assert_eq!(late, KafkaError::InvalidProducerEpoch.code());
    assert_eq!(read, ["committed-0"]);
}

#[test]
fn the_first_transactional_find_coordinator_has_the_state_topic_created() {
    let mut broker: Broker<MemLog> = Broker::new(1, PartitionConfig::default());
    broker.configure_transactions(TxnProtocol::V1, 4);
    let cluster = Cluster {
        cluster_id: "jetsam".into(),
        controller: 1,
        brokers: (1..=5).map(|i| (i, format!("broker{i}"), 9092)).collect(),
    };
    let request = kafka_protocol::messages::FindCoordinatorRequest::default()
        .with_key(StrBytes::from_static_str(TXN))
        .with_key_type(1);
    let Handled::RespondAndCreateTopics { answer, topics } = handle(
        &mut broker,
        &cluster,
        Request::FindCoordinator(request.clone()),
        RequestId(1),
        0,
    ) else {
        panic!("the topic is asked for")
    };
    let Response::FindCoordinator(answer) = answer else {
        panic!()
    };
    assert_eq!(answer.error_code, KafkaError::CoordinatorNotAvailable.code());
    assert_eq!(
        topics,
        [(TRANSACTION_STATE_TOPIC.to_string(), 4, 3)],
        "min(3, brokers) replicas"
    );
    let state = LeaderAndIsr {
        leader: Some(2),
        leader_epoch: 0,
        isr: vec![2],
        replicas: vec![2],
        partition_epoch: 0,
    };
    for p in 0..4 {
        let tp = TopicPartition {
            topic: TRANSACTION_STATE_TOPIC.into(),
            partition: p,
        };
        broker.apply(tp, state.clone(), 0, &mut |_| MemLog::default());
    }
    let handled = handle(
        &mut broker,
        &cluster,
        Request::FindCoordinator(request),
        RequestId(2),
        0,
    );
    let Handled::Respond(Response::FindCoordinator(answer)) = handled else {
        panic!("{handled:?}")
    };
    assert_eq!((answer.error_code, answer.node_id.0), (0, 2));
}

#[test]
fn the_state_topic_wants_two_in_sync_replicas_whatever_the_brokers_default() {
    let mut broker: Broker<MemLog> = Broker::new(1, PartitionConfig::default());
    let shrunk = LeaderAndIsr {
        leader: Some(1),
        leader_epoch: 0,
        isr: vec![1],
        replicas: vec![1, 2, 3],
        partition_epoch: 0,
    };
    for topic in ["orders", TRANSACTION_STATE_TOPIC] {
        broker.apply(tp(topic), shrunk.clone(), 0, &mut |_| MemLog::default());
    }
    let write = |broker: &mut Broker<MemLog>, topic: &str, id: u64| {
        let batch = Batch::plain(vec![Record {
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
        }]);
        let answers = broker.produce(RequestId(id), Acks::All, 1_000, vec![(tp(topic), Ok(batch))], 1);
        answers.expect("refused or written at once")[0].1
    };
    assert_eq!(write(&mut broker, "orders", 1), Ok(0), "min.insync.replicas 1");
    assert_eq!(
        write(&mut broker, TRANSACTION_STATE_TOPIC, 2),
        Err(KafkaError::NotEnoughReplicas),
        "transaction.state.log.min.isr 2"
    );
    // A state topic of one replica (one broker) can still be written.
    let mut single: Broker<MemLog> = Broker::new(1, PartitionConfig::default());
    let alone = LeaderAndIsr {
        replicas: vec![1],
        ..shrunk
    };
    single.apply(tp(TRANSACTION_STATE_TOPIC), alone, 0, &mut |_| MemLog::default());
    assert_eq!(write(&mut single, TRANSACTION_STATE_TOPIC, 3), Ok(0));
}

impl Client {
    /// AddOffsetsToTxn v3 as the producer's driver builds it.
    fn add_offsets(&mut self, producer: (i64, i16), group: &str) -> i16 {
        let request = crate::kafka::txn_offsets::add_offsets_request(TXN, producer, group);
        let Response::AddOffsetsToTxn(answer) = self.call(3, Request::AddOffsetsToTxn(request)) else {
            panic!()
        };
        answer.error_code
    }

    /// TxnOffsetCommit v3 of `offset` for orders-0 in group "g", as the producer's driver
    /// builds it, and the one code it takes from the answer.
    fn commit_offset(&mut self, producer: (i64, i16), offset: i64, member: &str, generation: i32) -> i16 {
        use crate::kafka::txn_offsets::{commit_code, commit_request, PendingOffsets};
        let pending = PendingOffsets::new("g", "orders", generation, member, vec![(0, offset)]).unwrap();
        let request = commit_request(TXN, producer, &pending);
        let Response::TxnOffsetCommit(answer) = self.call(3, Request::TxnOffsetCommit(request)) else {
            panic!()
        };
        assert_eq!(
            answer.topics[0].name.0.as_str(),
            "orders",
            "the input topic's answer"
        );
        commit_code(&answer)
    }

    /// Group "g"'s committed offset of orders-0 (-1 for none).
    fn committed(&mut self) -> i64 {
        self.committed_stable(false).1
    }

    /// OffsetFetch v7 of orders-0 in group "g", with `require_stable`: the partition's error
    /// code and committed offset.
    fn committed_stable(&mut self, require_stable: bool) -> (i16, i64) {
        use kafka_protocol::messages::offset_fetch_request as f;
        let request = kafka_protocol::messages::OffsetFetchRequest::default()
            .with_group_id(kafka_protocol::messages::GroupId(StrBytes::from_static_str("g")))
            .with_topics(Some(vec![f::OffsetFetchRequestTopic::default()
                .with_name(name("orders"))
                .with_partition_indexes(vec![0])]))
            .with_require_stable(require_stable);
        let Response::OffsetFetch(answer) = self.call(7, Request::OffsetFetch(request)) else {
            panic!()
        };
        let partition = &answer.topics[0].partitions[0];
        (partition.error_code, partition.committed_offset)
    }
}

#[test]
fn a_stable_offset_fetch_waits_out_pending_transactional_offsets() {
    // KIP-447: a new owner of the partition must not start from the offset before a
    // transaction that is about to commit past it.
    let mut c = Client::new(TxnProtocol::V2);
    let producer = c.init();
    assert_eq!(c.add_offsets(producer, "g"), 0);
    assert_eq!(c.commit_offset(producer, 7, "", -1), 0);
    assert_eq!(
        c.committed_stable(true),
        (88, -1),
        "UNSTABLE_OFFSET_COMMIT while pending"
    );
    assert_eq!(
        c.committed_stable(false),
        (0, -1),
        "without require_stable: the last committed"
    );
    assert_eq!(c.end(producer, true), 0);
    assert_eq!(c.committed_stable(true), (0, 7));
}

/// A consume-transform-produce round: the output record and the input's offset in one
/// transaction, ended with `commit`; the group's committed offset before and after the end.
fn offsets_in_a_transaction(commit: bool) -> (i64, i64) {
    let mut c = Client::new(TxnProtocol::V1);
    let producer = c.init();
    assert_eq!(c.add(producer), 0);
    assert_eq!(c.produce(producer, 0, "output"), 0);
    assert_eq!(c.add_offsets(producer, "g"), 0);
    assert_eq!(c.commit_offset(producer, 7, "", -1), 0);
    let before = c.committed();
    assert_eq!(c.end(producer, commit), 0);
    (before, c.committed())
}

#[test]
fn offsets_committed_in_a_transaction_become_the_groups_at_its_commit_marker() {
    assert_eq!(
        offsets_in_a_transaction(true),
        (-1, 7),
        "pending until the marker"
    );
}

#[test]
fn offsets_committed_in_an_aborted_transaction_are_dropped() {
    assert_eq!(offsets_in_a_transaction(false), (-1, -1));
}

#[test]
fn the_offsets_partition_joins_the_transaction_and_takes_its_marker() {
    let mut c = Client::new(TxnProtocol::V1);
    let producer = c.init();
    assert_eq!(c.add_offsets(producer, "g"), 0);
    let metadata = c.broker.txn_coordinator().metadata(TXN).unwrap().clone();
    assert!(metadata.partitions.contains(&tp(OFFSETS_TOPIC)), "{metadata:?}");
    assert_eq!(c.commit_offset(producer, 3, "", -1), 0);
    assert_eq!(c.end(producer, true), 0);
    let log = c.broker.replica(&tp(OFFSETS_TOPIC)).unwrap().log();
    let batches = log.read(0, log.log_end_offset(), usize::MAX).unwrap();
    let kinds: Vec<(bool, bool)> = batches.iter().map(|b| (b.transactional, b.control)).collect();
    assert_eq!(
        kinds,
        [(true, false), (true, true)],
        "the offsets, then the marker"
    );
}

#[test]
fn a_txn_offset_commit_from_an_unknown_member_or_another_generation_fails() {
    let mut c = Client::new(TxnProtocol::V1);
    let producer = c.init();
    assert_eq!(c.add_offsets(producer, "g"), 0);
    assert_eq!(c.commit_offset(producer, 3, "ghost", -1), 25, "UNKNOWN_MEMBER_ID");
    assert_eq!(c.commit_offset(producer, 3, "", 4), 22, "ILLEGAL_GENERATION");
    assert_eq!(c.end(producer, true), 0);
    assert_eq!(c.committed(), -1);
}

#[test]
fn a_txn_offset_commit_from_a_fenced_producer_epoch_is_refused_by_the_log() {
    let mut c = Client::new(TxnProtocol::V1);
    let producer = c.init();
    assert_eq!(c.add_offsets(producer, "g"), 0);
    assert_eq!(c.commit_offset(producer, 3, "", -1), 0);
    assert_eq!(c.end(producer, true), 0);
    // An older epoch than the partition has seen (the marker's): INVALID_PRODUCER_EPOCH.
    let stale = (producer.0, producer.1 - 1);
    assert_eq!(
        c.commit_offset(stale, 9, "", -1),
        KafkaError::InvalidProducerEpoch.code()
    );
    assert_eq!(c.committed(), 3);
}

#[test]
fn a_new_coordinator_replays_transactional_offsets_and_their_markers_from_the_log() {
    let mut c = Client::new(TxnProtocol::V1);
    let producer = c.init();
    for (offset, end) in [(3, Some(true)), (8, Some(false)), (11, None)] {
        assert_eq!(c.add_offsets(producer, "g"), 0);
        assert_eq!(c.commit_offset(producer, offset, "", -1), 0);
        if let Some(commit) = end {
            assert_eq!(c.end(producer, commit), 0);
        }
    }
    // The offsets partition's leadership goes to broker 2 and comes back: the group
    // coordinator unloads, then loads the partition from its log.
    for (leader, epoch) in [(2, 1), (1, 2)] {
        let state = LeaderAndIsr {
            leader: Some(leader),
            leader_epoch: epoch,
            isr: vec![1, 2],
            replicas: vec![1, 2],
            partition_epoch: epoch,
        };
        c.broker
            .apply(tp(OFFSETS_TOPIC), state, 10, &mut |_| MemLog::default());
        c.broker.tick(10);
    }
    assert_eq!(
        c.committed(),
        3,
        "the committed transaction's, not the aborted one's"
    );
    let pending = c.broker.groups().pending_txn_offsets("g", producer.0);
    assert_eq!(
        pending,
        [("orders".to_string(), 0, 11)],
        "the open one still waits"
    );
}

/// The transactional producer's state machine against this broker: each request it asks for
/// is sent through the wire and its answer handed back, until it asks for nothing more. The
/// output record is produced once its partition is added.
fn drive(c: &mut Client, m: &mut crate::kafka::txn_manager::TxnManager, member: &str, generation: i32) {
    use crate::kafka::txn_manager::TxnRequest;
    let code = |e: i16| {
        if e == 0 {
            Ok(())
        } else {
            Err(KafkaError::from_code(e).unwrap())
        }
    };
    for _ in 0..20 {
        let Some(request) = m.next_request(false) else {
            return;
        };
        match request {
            TxnRequest::AddPartitions { producer, .. } => {
                let answer = c.add(producer);
                m.on_add_partitions(code(answer));
                assert_eq!(c.produce(producer, 0, "output"), 0);
            }
            TxnRequest::AddOffsets { producer, group } => {
                m.on_add_offsets(code(c.add_offsets(producer, &group)))
            }
            // One broker: it coordinates the group too.
            TxnRequest::FindGroupCoordinator { .. } => m.on_find_group_coordinator(Ok(())),
            TxnRequest::TxnOffsetCommit { producer, offsets } => {
                assert_eq!(offsets.offsets, [(0, 7)]);
                let answer = c.commit_offset(producer, 7, member, generation);
                m.on_txn_offset_commit(Some(answer));
            }
            TxnRequest::EndTxn { producer, commit } => {
                let (answer, next) = c.end_at(3, producer, commit);
                m.on_end_txn(code(answer).map(|()| next));
            }
            other => panic!("not expected here: {other:?}"),
        }
    }
    panic!("the manager kept asking");
}

/// A manager in a transaction whose output record goes to orders-0 and whose input offset
/// (7) is sent to group "g" as `member` of `generation`.
fn manager_round(member: &str, generation: i32) -> (Client, crate::kafka::txn_manager::TxnManager) {
    use crate::kafka::txn_manager::{ClientProtocol, TxnManager};
    use crate::kafka::txn_offsets::PendingOffsets;
    let mut c = Client::new(TxnProtocol::V1);
    let producer = c.init();
    let mut m = TxnManager::new(ClientProtocol::V1);
    m.initialize();
    m.on_find_coordinator(Ok(()));
    let _ = m.next_request(false);
    m.on_init(Ok(producer));
    m.begin().unwrap();
    m.add_partition(0);
    m.send_offsets(PendingOffsets::new("g", "orders", generation, member, vec![(0, 7)]).unwrap())
        .unwrap();
    drive(&mut c, &mut m, member, generation);
    (c, m)
}

#[test]
fn the_managers_offsets_become_the_groups_with_its_commit_and_not_before() {
    let (mut c, mut m) = manager_round("", -1);
    assert_eq!(c.committed(), -1, "pending until the marker");
    m.begin_commit().unwrap();
    drive(&mut c, &mut m, "", -1);
    assert_eq!(m.take_ended(), Some(crate::kafka::txn_manager::TxnEnd::Committed));
    assert_eq!(c.committed(), 7);
    assert_eq!(c.read(IsolationLevel::ReadCommitted).1, ["output"]);
}

#[test]
fn a_stale_generation_makes_the_manager_abort_output_and_offsets_together() {
    let (mut c, mut m) = manager_round("", 4);
    assert_eq!(
        m.state(),
        &crate::kafka::txn_manager::TxnState::AbortableError,
        "ILLEGAL_GENERATION: CommitFailedException"
    );
    m.begin_abort().unwrap();
    drive(&mut c, &mut m, "", 4);
    assert_eq!(m.take_ended(), Some(crate::kafka::txn_manager::TxnEnd::Aborted));
    assert_eq!(c.committed(), -1);
    assert_eq!(c.read(IsolationLevel::ReadCommitted).1, Vec::<String>::new());
}
