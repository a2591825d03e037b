//! WriteTxnMarkers at both ends: a leader appends the markers it leads and answers each
//! partition with its own error; a coordinator whose partition another broker leads sends
//! the marker there, sends it again after a failure, and completes on the answer.

use super::*;
use crate::kafka::batch::ControlType;
use crate::kafka::broker::BrokerOutput;
use crate::kafka::broker_txn::MARKER_RETRY_MS;
use crate::kafka::mem_log::MemLog;
use crate::kafka::partition::{LeaderAndIsr, PartitionConfig};
use crate::kafka::txn_coordinator::{CallId, TxnProtocol};
use crate::kafka::txn_state::{TxnState, TRANSACTION_STATE_TOPIC};
use crate::kafka::wire::{decode_request, decode_response, encode_request, encode_response, Inbound};

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition {
        topic: topic.into(),
        partition,
    }
}

fn state(leader: i32, replicas: Vec<i32>) -> LeaderAndIsr {
    LeaderAndIsr {
        leader: Some(leader),
        leader_epoch: 0,
        isr: replicas.clone(),
        replicas,
        partition_epoch: 0,
    }
}

/// Broker 1: leads orders-0 and the state partition, follows orders-1 (led by broker 2).
fn broker() -> Broker<MemLog> {
    let mut broker = Broker::new(1, PartitionConfig::default());
    broker.configure_transactions(TxnProtocol::V1, 1);
    broker.add_producer_id_block(1_000, 10);
    let mut open = |_: &TopicPartition| MemLog::default();
    broker.apply(tp("orders", 0), state(1, vec![1]), 0, &mut open);
    broker.apply(tp("orders", 1), state(2, vec![2, 1]), 0, &mut open);
    broker.apply(tp(TRANSACTION_STATE_TOPIC, 0), state(1, vec![1]), 0, &mut open);
    broker
}

fn markers(partitions: Vec<TopicPartition>, epoch: i16) -> Markers {
    Markers {
        transactional_id: "app".into(),
        producer_id: 1_000,
        producer_epoch: epoch,
        commit: true,
        coordinator_epoch: 0,
        partitions,
    }
}

/// The request through the wire, handled, the answer through the wire, read back.
fn write(broker: &mut Broker<MemLog>, markers: &Markers) -> Vec<(TopicPartition, Result<(), KafkaError>)> {
    let (in_flight, frame) = encode_request(3, "broker2", 1, &markers_request(markers));
    let Inbound::Request { header, request } = decode_request(frame.slice(4..)).unwrap() else {
        panic!("WriteTxnMarkers v1 is supported")
    };
    let Request::WriteTxnMarkers(request) = request else {
        panic!("{request:?}")
    };
    let Handled::Respond(answer) = write_markers(broker, &request, RequestId(1), 5) else {
        panic!("an ISR of one answers at once")
    };
    let bytes = encode_response(&header, &answer);
    let Response::WriteTxnMarkers(response) = decode_response(bytes.slice(4..), &in_flight).unwrap() else {
        panic!()
    };
    markers_results(markers, &response)
}

#[test]
fn a_leader_appends_its_markers_and_answers_each_partition_with_its_own_error() {
    let mut b = broker();
    let asked = markers(vec![tp("orders", 0), tp("orders", 1), tp("audit", 0)], 0);
    let results = write(&mut b, &asked);
    assert_eq!(
        results,
        [
            (tp("orders", 0), Ok(())),
            (tp("orders", 1), Err(KafkaError::NotLeaderOrFollower)),
            // UNKNOWN_TOPIC_OR_PARTITION is not among our errors: read as a failure to retry.
            (tp("audit", 0), Err(KafkaError::UnknownServerError)),
        ]
    );
    let log = b.replica(&tp("orders", 0)).unwrap().log();
    let batches = log.read(0, log.log_end_offset(), usize::MAX).unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].control_type(), Some(ControlType::Commit));
    assert_eq!(batches[0].producer_id, 1_000);
}

#[test]
fn unknown_partitions_are_named_unknown_topic_or_partition_on_the_wire() {
    let asked = vec![(1_000, tp("audit", 0)), (1_000, tp("orders", 0))];
    let Response::WriteTxnMarkers(response) = markers_response(&asked, vec![(tp("orders", 0), Ok(3))]) else {
        panic!()
    };
    let codes: Vec<(String, i16)> = response.markers[0]
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), p.error_code)))
        .collect();
    assert_eq!(codes, [("audit".to_string(), 3), ("orders".to_string(), 0)]);
}

#[test]
fn a_marker_from_an_older_producer_epoch_is_refused_as_fenced() {
    let mut b = broker();
    assert_eq!(write(&mut b, &markers(vec![tp("orders", 0)], 3))[0].1, Ok(()));
    let results = write(&mut b, &markers(vec![tp("orders", 0)], 2));
    assert_eq!(
        results,
        [(tp("orders", 0), Err(KafkaError::InvalidProducerEpoch))]
    );
}

#[test]
fn an_answer_that_leaves_a_partition_out_or_names_another_producer_fails_that_partition() {
    let asked = markers(vec![tp("orders", 0), tp("orders", 1)], 0);
    let other = vec![(7, tp("orders", 0)), (1_000, tp("orders", 1))];
    let Response::WriteTxnMarkers(response) =
        markers_response(&other, vec![(tp("orders", 0), Ok(0)), (tp("orders", 1), Ok(0))])
    else {
        panic!()
    };
    assert_eq!(
        markers_results(&asked, &response),
        [
            (tp("orders", 0), Err(KafkaError::NetworkException)),
            (tp("orders", 1), Ok(())),
        ]
    );
    assert!(markers_failed(&asked).iter().all(|(_, r)| r.is_err()));
}

#[test]
fn a_request_over_the_partition_limit_is_refused_without_an_append() {
    let mut b = broker();
    let many = (0..=MARKER_PARTITIONS_MAX as i32)
        .map(|p| tp("orders", p % 2))
        .collect();
    let results = write(&mut b, &markers(many, 0));
    assert!(results.iter().all(|(_, r)| r.is_err()), "every partition refused");
    assert_eq!(b.replica(&tp("orders", 0)).unwrap().log().log_end_offset(), 0);
}

/// The coordinator's outputs: the WriteMarkers it asks the driver to send.
fn sent(b: &mut Broker<MemLog>) -> Vec<(i32, Markers)> {
    b.take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            BrokerOutput::WriteMarkers { leader, markers } => Some((leader, markers)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_remote_marker_is_sent_to_its_leader_again_after_a_failure_and_completes_on_success() {
    let mut b = broker();
    let coordinator = b.txn_coordinator();
    coordinator.init_producer_id(CallId(1), "app", 60_000, None, 0, &mut || Some(1_000));
    b.pump_transactions(0);
    let coordinator = b.txn_coordinator();
    coordinator.add_partitions(CallId(2), "app", 1_000, 0, vec![tp("orders", 1)], 1);
    b.pump_transactions(1);
    b.txn_coordinator().end_txn(CallId(3), "app", 1_000, 0, true, 2);
    b.pump_transactions(2);
    let first = sent(&mut b);
    assert_eq!(first.len(), 1, "{first:?}");
    let (leader, round) = first[0].clone();
    assert_eq!((leader, round.partitions.clone()), (2, vec![tp("orders", 1)]));
    b.markers_answered(&round, markers_failed(&round), 3);
    b.tick(3 + MARKER_RETRY_MS / 2);
    assert!(sent(&mut b).is_empty(), "not before the retry interval");
    b.tick(3 + MARKER_RETRY_MS);
    let again = sent(&mut b);
    assert_eq!(again.len(), 1, "sent again: {again:?}");
    let state = |b: &mut Broker<MemLog>| b.txn_coordinator().metadata("app").map(|m| m.state);
    assert_eq!(state(&mut b), Some(TxnState::PrepareCommit));
    b.markers_answered(&again[0].1, vec![(tp("orders", 1), Ok(()))], 200);
    b.take_outputs();
    assert_eq!(state(&mut b), Some(TxnState::CompleteCommit));
}
