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

/// The self-fence a swarm run showed (swarm-transactions-v1, seed 1): the AddPartitionsToTxn
/// went unanswered (it may have been written at the coordinator all the same), a batch then
/// timed out, and the abort that follows sends no EndTxn, since no add was ever answered,
/// but the KIP-360 bump: InitProducerId naming this producer's id and epoch. Java does the
/// same: only a successful AddPartitionsToTxn answer sets `transactionStarted`, `nextRequest`
/// skips the EndTxn without it, the ABORTABLE_ERROR state fails the re-enqueued
/// AddPartitionsToTxn (`maybeTerminateRequestWithError`), and `beginCompletingTransaction`
/// enqueues the EPOCH_BUMP InitProducerId. What the coordinator answers is
/// `txn_coordinator_tests::a_bump_over_its_own_open_transaction_fences_the_producer`.
#[test]
fn an_abort_with_no_add_answered_sends_no_end_txn_and_bumps_with_init_producer_id() {
    let mut m = ready(ClientProtocol::V1);
    m.begin().unwrap();
    m.add_partition(3);
    assert!(matches!(
        m.next_request(true),
        Some(TxnRequest::AddPartitions { .. })
    ));
    m.on_no_answer();
    m.batch_failed(None); // the batch's delivery.timeout.ms passed while it waited
    assert_eq!(m.state(), &TxnState::AbortableError);
    assert_eq!(m.next_request(true), Some(TxnRequest::FindCoordinator));
    m.on_find_coordinator(Ok(()));
    assert_eq!(m.next_request(true), None, "no add in the error state");
    m.begin_abort().unwrap();
    assert_eq!(
        m.next_request(false),
        None,
        "no EndTxn: no partition was added as far as the client knows"
    );
    assert_eq!(m.take_ended(), Some(TxnEnd::Aborted), "completed locally");
    assert_eq!(m.state(), &TxnState::Initializing);
    assert_eq!(
        m.next_request(false),
        Some(TxnRequest::InitProducerId {
            expected: Some(PRODUCER)
        })
    );
    m.on_init(Err(KafkaError::ConcurrentTransactions));
    assert_eq!(
        m.next_request(false),
        Some(TxnRequest::InitProducerId {
            expected: Some(PRODUCER)
        }),
        "CONCURRENT_TRANSACTIONS: the same bump again"
    );
    m.on_init(Err(KafkaError::ProducerFenced));
    assert!(m.is_fatal());
    assert_eq!(m.next_request(false), None);
}

fn offsets() -> crate::kafka::txn_offsets::PendingOffsets {
    crate::kafka::txn_offsets::PendingOffsets::new("g", "orders", 4, "member-1", vec![(0, 17)]).unwrap()
}

/// sendOffsetsToTransaction in an open transaction: AddOffsetsToTxn, the group's coordinator,
/// TxnOffsetCommit, and only then the EndTxn.
#[test]
fn offsets_join_and_commit_before_the_end_txn() {
    let mut m = open(ClientProtocol::V1);
    m.send_offsets(offsets()).unwrap();
    assert_eq!(
        m.send_offsets(offsets()),
        Err(KafkaError::InvalidTxnState),
        "one call at a time"
    );
    m.begin_commit().unwrap();
    assert_eq!(
        m.next_request(false),
        Some(TxnRequest::AddOffsets {
            producer: PRODUCER,
            group: "g".into()
        })
    );
    m.on_add_offsets(Err(KafkaError::ConcurrentTransactions));
    assert!(
        matches!(m.next_request(false), Some(TxnRequest::AddOffsets { .. })),
        "retried"
    );
    m.on_add_offsets(Ok(()));
    assert_eq!(
        m.next_request(false),
        Some(TxnRequest::FindGroupCoordinator { group: "g".into() })
    );
    m.on_find_group_coordinator(Ok(()));
    let Some(TxnRequest::TxnOffsetCommit {
        producer,
        offsets: sent,
    }) = m.next_request(false)
    else {
        panic!("the commit follows")
    };
    assert_eq!(
        (producer, sent.generation, sent.offsets),
        (PRODUCER, 4, vec![(0, 17)])
    );
    // Unanswered: the group's coordinator is looked up again, then the commit sent again.
    m.on_txn_offset_commit(None);
    assert!(matches!(
        m.next_request(false),
        Some(TxnRequest::FindGroupCoordinator { .. })
    ));
    m.on_find_group_coordinator(Ok(()));
    assert!(matches!(
        m.next_request(false),
        Some(TxnRequest::TxnOffsetCommit { .. })
    ));
    assert!(m.offsets_pending());
    m.on_txn_offset_commit(Some(0));
    assert!(!m.offsets_pending());
    assert!(matches!(
        m.next_request(false),
        Some(TxnRequest::EndTxn { commit: true, .. })
    ));
}

/// A rebalance took the input away (ILLEGAL_GENERATION): CommitFailedException, and the
/// transaction can only abort; the abort's EndTxn still goes.
#[test]
fn a_stale_generation_leaves_only_an_abort_and_a_fence_is_fatal() {
    let mut m = open(ClientProtocol::V2);
    m.send_offsets(offsets()).unwrap();
    let _ = m.next_request(false);
    m.on_add_offsets(Ok(()));
    let _ = m.next_request(false);
    m.on_find_group_coordinator(Ok(()));
    let _ = m.next_request(false);
    m.on_txn_offset_commit(Some(22));
    assert_eq!(m.state(), &TxnState::AbortableError);
    assert_eq!(m.begin_commit(), Err(KafkaError::InvalidTxnState));
    m.begin_abort().unwrap();
    assert!(matches!(
        m.next_request(false),
        Some(TxnRequest::EndTxn { commit: false, .. })
    ));

    let mut fenced = open(ClientProtocol::V2);
    fenced.send_offsets(offsets()).unwrap();
    let _ = fenced.next_request(false);
    fenced.on_add_offsets(Ok(()));
    let _ = fenced.next_request(false);
    fenced.on_find_group_coordinator(Ok(()));
    let _ = fenced.next_request(false);
    fenced.on_txn_offset_commit(Some(KafkaError::ProducerFenced.code()));
    assert!(fenced.is_fatal());
    assert_eq!(fenced.next_request(false), None);
}

/// An abort drops offsets not yet committed, and offsets outside a transaction are refused.
#[test]
fn an_abort_drops_pending_offsets_and_none_go_outside_a_transaction() {
    let mut m = ready(ClientProtocol::V1);
    assert_eq!(m.send_offsets(offsets()), Err(KafkaError::InvalidTxnState));
    let mut m = open(ClientProtocol::V1);
    m.send_offsets(offsets()).unwrap();
    m.begin_abort().unwrap();
    assert!(!m.offsets_pending());
    assert!(matches!(
        m.next_request(false),
        Some(TxnRequest::EndTxn { commit: false, .. })
    ));
}
