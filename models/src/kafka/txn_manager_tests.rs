//! The transactional producer's state machine, request by request.

use super::*;

const PRODUCER: (i64, i16) = (1_000, 0);

/// Initialized and Ready, with the coordinator found.
fn ready(protocol: ClientProtocol) -> TxnManager {
    let mut m = TxnManager::new(protocol);
    assert_eq!(m.next_request(false), None, "nothing before initTransactions");
    m.initialize();
    assert_eq!(m.next_request(false), Some(TxnRequest::FindCoordinator));
    assert_eq!(m.next_request(false), None, "one request at a time");
    m.on_find_coordinator(Ok(()));
    assert_eq!(
        m.next_request(false),
        Some(TxnRequest::InitProducerId { expected: None })
    );
    m.on_init(Ok(PRODUCER));
    assert_eq!(m.state(), &TxnState::Ready);
    m
}

/// A transaction with partition 3 added.
fn open(protocol: ClientProtocol) -> TxnManager {
    let mut m = ready(protocol);
    m.begin().unwrap();
    m.add_partition(3);
    assert!(!m.send_allowed(3), "not before AddPartitionsToTxn is answered");
    assert_eq!(
        m.next_request(true),
        Some(TxnRequest::AddPartitions {
            producer: PRODUCER,
            partitions: vec![3]
        })
    );
    m.on_add_partitions(Ok(()));
    assert!(m.send_allowed(3));
    m.add_partition(3);
    assert_eq!(m.next_request(true), None, "a partition is added once");
    m
}

#[test]
fn end_txn_waits_for_incomplete_batches_and_v1_keeps_the_epoch() {
    let mut m = open(ClientProtocol::V1);
    m.begin_commit().unwrap();
    assert_eq!(m.next_request(true), None, "EndTxn waits for the flush");
    assert_eq!(
        m.next_request(false),
        Some(TxnRequest::EndTxn {
            producer: PRODUCER,
            commit: true
        })
    );
    assert_eq!(m.on_end_txn(Ok(PRODUCER)), Some(TxnEnd::Committed));
    assert_eq!((m.state(), m.producer()), (&TxnState::Ready, Some(PRODUCER)));
    assert!(
        !m.send_allowed(3),
        "the next transaction adds its partitions again"
    );
}

#[test]
fn v2_takes_the_bumped_epoch_from_the_end_txn_answer() {
    let mut m = open(ClientProtocol::V2);
    m.begin_abort().unwrap();
    let Some(TxnRequest::EndTxn { commit: false, .. }) = m.next_request(false) else {
        panic!("an abort")
    };
    assert_eq!(m.on_end_txn(Ok((1_000, 1))), Some(TxnEnd::Aborted));
    assert_eq!(m.producer(), Some((1_000, 1)));
}

#[test]
fn a_fenced_instance_stops_for_good() {
    let mut m = open(ClientProtocol::V1);
    m.begin_commit().unwrap();
    m.next_request(false).unwrap();
    assert_eq!(m.on_end_txn(Err(KafkaError::ProducerFenced)), None);
    assert!(m.is_fatal());
    assert_eq!(m.next_request(false), None);
    assert_eq!(m.begin(), Err(KafkaError::InvalidTxnState));
    let mut m = open(ClientProtocol::V1);
    m.add_partition(4);
    m.next_request(true).unwrap();
    m.on_add_partitions(Err(KafkaError::InvalidProducerEpoch));
    assert_eq!(m.state(), &TxnState::Fatal(KafkaError::ProducerFenced));
}

#[test]
fn coordinator_errors_are_retried_after_a_new_lookup() {
    let mut m = open(ClientProtocol::V1);
    m.add_partition(4);
    m.next_request(true).unwrap();
    m.on_add_partitions(Err(KafkaError::NotCoordinator));
    assert_eq!(m.next_request(true), Some(TxnRequest::FindCoordinator));
    m.on_find_coordinator(Ok(()));
    let Some(TxnRequest::AddPartitions { partitions, .. }) = m.next_request(true) else {
        panic!("the add again")
    };
    assert_eq!(partitions, vec![4]);
    m.on_add_partitions(Err(KafkaError::ConcurrentTransactions));
    assert!(matches!(
        m.next_request(true),
        Some(TxnRequest::AddPartitions { .. })
    ));
    m.on_no_answer();
    assert_eq!(m.next_request(true), Some(TxnRequest::FindCoordinator));
}

#[test]
fn a_failed_batch_leaves_only_an_abort_and_v1_bumps_the_epoch_after_it() {
    let mut m = open(ClientProtocol::V1);
    m.batch_failed(Some(KafkaError::NetworkException));
    assert_eq!(m.state(), &TxnState::AbortableError);
    assert_eq!(m.begin_commit(), Err(KafkaError::InvalidTxnState));
    m.begin_abort().unwrap();
    m.next_request(false).unwrap();
    assert_eq!(m.on_end_txn(Ok(PRODUCER)), Some(TxnEnd::Aborted));
    assert_eq!(m.state(), &TxnState::Initializing);
    assert_eq!(
        m.next_request(false),
        Some(TxnRequest::InitProducerId {
            expected: Some(PRODUCER)
        })
    );
    m.on_init(Ok((1_000, 1)));
    assert_eq!(m.state(), &TxnState::Ready);
}

#[test]
fn a_failure_while_aborting_asks_no_bump_and_an_empty_transaction_sends_no_end_txn() {
    let mut m = open(ClientProtocol::V1);
    m.begin_abort().unwrap();
    m.batch_failed(None);
    m.next_request(false).unwrap();
    m.on_end_txn(Ok(PRODUCER));
    assert_eq!(m.state(), &TxnState::Ready, "isCompleting: no bump");
    m.begin().unwrap();
    m.begin_commit().unwrap();
    assert_eq!(m.next_request(false), None, "nothing added, nothing sent");
    assert_eq!(m.state(), &TxnState::Ready);
}
