use super::*;

const ID: &str = "txn-1";
const PARTITIONS: i32 = 3;

fn tp(partition: i32) -> TopicPartition {
    TopicPartition {
        topic: "orders".into(),
        partition,
    }
}

/// A coordinator that owns every state partition, a state log its writes commit to, and the
/// markers it asked for.
struct World {
    c: TxnCoordinator,
    log: Vec<(i32, Vec<u8>, Vec<u8>)>,
    answers: Vec<(CallId, TxnAnswer)>,
    markers: Vec<Markers>,
    notes: Vec<&'static str>,
    /// Writes held back instead of committed.
    held: Vec<WriteId>,
    hold: bool,
    next_pid: i64,
    next_call: u64,
}

impl World {
    fn new(protocol: TxnProtocol) -> World {
        let mut c = TxnCoordinator::new(protocol, PARTITIONS, TRANSACTION_MAX_TIMEOUT_MS_DEFAULT);
        for p in 0..PARTITIONS {
            c.load(p, 0, std::iter::empty());
        }
        World {
            c,
            log: Vec::new(),
            answers: Vec::new(),
            markers: Vec::new(),
            notes: Vec::new(),
            held: Vec::new(),
            hold: false,
            next_pid: 1000,
            next_call: 0,
        }
    }

    fn call(&mut self) -> CallId {
        self.next_call += 1;
        CallId(self.next_call)
    }

    /// Commits every write (unless held) until nothing more comes out.
    fn settle(&mut self) {
        loop {
            let outputs = self.c.take_outputs();
            if outputs.is_empty() {
                return;
            }
            for output in outputs {
                match output {
                    TxnOutput::Answer { call, answer } => self.answers.push((call, answer)),
                    TxnOutput::Persist {
                        write,
                        state_partition,
                        key,
                        value,
                    } => {
                        if self.hold {
                            self.held.push(write);
                        } else {
                            self.log.push((state_partition, key, value));
                            self.c.persisted(write, Ok(()));
                        }
                    }
                    TxnOutput::WriteMarkers(m) => self.markers.push(m),
                    TxnOutput::Note(n) => self.notes.push(n),
                }
            }
        }
    }

    fn answer_to(&self, call: CallId) -> TxnAnswer {
        let found = self.answers.iter().find(|(c, _)| *c == call);
        found
            .unwrap_or_else(|| panic!("no answer to {call:?}: {:?}", self.answers))
            .1
            .clone()
    }

    fn init(&mut self, expected: Option<(i64, i16)>, now_ms: u64) -> Result<(i64, i16), KafkaError> {
        let call = self.call();
        let mut pid = self.next_pid;
        let started = self
            .c
            .init_producer_id(call, ID, 60_000, expected, now_ms, &mut || {
                pid += 1;
                Some(pid)
            });
        self.next_pid = pid;
        assert_eq!(started, InitStarted::Started);
        self.settle();
        match self.answer_to(call) {
            TxnAnswer::InitProducerId(result) => result,
            other => panic!("{other:?}"),
        }
    }

    fn add(&mut self, (pid, epoch): (i64, i16), partitions: &[i32], now_ms: u64) -> Result<(), KafkaError> {
        let call = self.call();
        let tps = partitions.iter().map(|p| tp(*p)).collect();
        self.c.add_partitions(call, ID, pid, epoch, tps, now_ms);
        self.settle();
        match self.answer_to(call) {
            TxnAnswer::AddPartitions(result) => result,
            other => panic!("{other:?}"),
        }
    }

    fn end(&mut self, (pid, epoch): (i64, i16), commit: bool, now_ms: u64) -> Result<(i64, i16), KafkaError> {
        let call = self.call();
        self.c.end_txn(call, ID, pid, epoch, commit, now_ms);
        self.settle();
        match self.answer_to(call) {
            TxnAnswer::EndTxn(result) => result,
            other => panic!("{other:?}"),
        }
    }

    /// Every partition took the last markers asked for.
    fn markers_done(&mut self, now_ms: u64) -> Markers {
        let m = self.markers.last().expect("markers were asked for").clone();
        self.c
            .markers_written(&m.transactional_id, m.producer_id, m.producer_epoch, now_ms);
        self.settle();
        m
    }

    fn state(&self) -> TxnState {
        self.c.metadata(ID).unwrap().state
    }
}

#[test]
fn init_gives_epoch_zero_and_a_second_init_fences_the_first_instance() {
    let mut w = World::new(TxnProtocol::V1);
    let first = w.init(None, 0).unwrap();
    assert_eq!(first.1, 0);
    let second = w.init(None, 1).unwrap();
    assert_eq!(second, (first.0, 1), "same producer id, bumped epoch");
    assert_eq!(w.add(first, &[0], 2), Err(KafkaError::ProducerFenced));
    assert_eq!(w.add(second, &[0], 2), Ok(()));
}

#[test]
fn a_commit_is_prepared_answered_marked_on_every_partition_then_completed() {
    let mut w = World::new(TxnProtocol::V1);
    let producer = w.init(None, 0).unwrap();
    w.add(producer, &[0, 1], 1).unwrap();
    assert_eq!(
        w.add(producer, &[1], 2),
        Ok(()),
        "already in: answered without a write"
    );
    assert_eq!(w.state(), TxnState::Ongoing);
    assert_eq!(w.end(producer, true, 3), Ok(producer), "v1 keeps the epoch");
    assert_eq!(w.state(), TxnState::PrepareCommit);
    let m = w.markers.last().unwrap().clone();
    assert!(m.commit);
    assert_eq!(m.partitions, vec![tp(0), tp(1)]);
    assert_eq!(w.add(producer, &[2], 4), Err(KafkaError::ConcurrentTransactions));
    w.markers_done(5);
    assert_eq!(w.state(), TxnState::CompleteCommit);
    assert!(w.c.metadata(ID).unwrap().partitions.is_empty());
    // Each transition went through the state log first.
    let states: Vec<TxnState> = w
        .log
        .iter()
        .map(|(_, _, v)| decode_value(v).unwrap().state)
        .collect();
    assert_eq!(
        states,
        [
            TxnState::Empty,
            TxnState::Ongoing,
            TxnState::PrepareCommit,
            TxnState::CompleteCommit
        ]
    );
}

#[test]
fn init_while_a_transaction_is_open_aborts_it_with_a_bumped_epoch_and_asks_to_retry() {
    let mut w = World::new(TxnProtocol::V1);
    let old = w.init(None, 0).unwrap();
    w.add(old, &[0], 1).unwrap();
    assert_eq!(w.init(None, 2), Err(KafkaError::ConcurrentTransactions));
    assert_eq!(w.state(), TxnState::PrepareAbort);
    let m = w.markers.last().unwrap().clone();
    assert!(!m.commit);
    assert_eq!(
        m.producer_epoch,
        old.1 + 1,
        "the markers fence the old epoch at the partitions"
    );
    assert_eq!(
        w.init(None, 3),
        Err(KafkaError::ConcurrentTransactions),
        "markers still owed"
    );
    w.markers_done(4);
    assert_eq!(w.state(), TxnState::CompleteAbort);
    assert_eq!(w.init(None, 5), Ok((old.0, old.1 + 2)));
    assert_eq!(w.end(old, true, 6), Err(KafkaError::ProducerFenced));
}

/// A producer's own KIP-360 bump over a transaction the coordinator holds open (its
/// AddPartitionsToTxn was written, the answer lost): Kafka's `handleInitProducerId` fences the
/// open transaction (`prepareFenceProducerEpoch`: epoch + 1, last epoch -1, abort) and asks
/// to retry; the retry names the old epoch, neither the current nor the last one, so
/// `prepareIncrementProducerEpoch` answers PRODUCER_FENCED: the producer fenced itself.
#[test]
fn a_bump_over_its_own_open_transaction_fences_the_producer() {
    let mut w = World::new(TxnProtocol::V1);
    let producer = w.init(None, 0).unwrap();
    w.add(producer, &[0], 1).unwrap();
    assert_eq!(w.init(Some(producer), 2), Err(KafkaError::ConcurrentTransactions));
    assert!(w.notes.contains(&"kafka.txn_fenced_by_init"));
    w.markers_done(3);
    assert_eq!(w.state(), TxnState::CompleteAbort);
    assert_eq!(w.init(Some(producer), 4), Err(KafkaError::ProducerFenced));
    assert_eq!(w.end(producer, false, 5), Err(KafkaError::ProducerFenced));
}

#[test]
fn a_transaction_past_its_timeout_is_aborted_by_the_coordinator() {
    let mut w = World::new(TxnProtocol::V1);
    let producer = w.init(None, 0).unwrap();
    w.add(producer, &[0], 1_000).unwrap();
    w.c.tick(60_000);
    w.settle();
    assert_eq!(
        w.state(),
        TxnState::Ongoing,
        "60 s have not passed since the first add"
    );
    w.c.tick(71_000);
    w.settle();
    assert!(w.notes.contains(&"kafka.txn_timed_out_aborted"));
    assert_eq!(w.state(), TxnState::PrepareAbort);
    w.markers_done(71_001);
    assert_eq!(w.state(), TxnState::CompleteAbort);
    assert_eq!(w.end(producer, true, 72_000), Err(KafkaError::ProducerFenced));
}

/// KIP-890's delayed EndTxn: the first transaction's commit is answered, the producer opens
/// the next one in the same epoch, and a copy of the first EndTxn arrives late.
fn late_end_txn(protocol: TxnProtocol) -> (World, Result<(i64, i16), KafkaError>) {
    let mut w = World::new(protocol);
    let producer = w.init(None, 0).unwrap();
    w.add(producer, &[0], 1).unwrap();
    let next = w.end(producer, true, 2).unwrap();
    w.markers_done(3);
    w.add(next, &[1], 4).unwrap();
    let late = w.end(producer, true, 5);
    (w, late)
}

#[test]
fn under_v1_a_late_end_txn_commits_the_next_transaction() {
    let (w, late) = late_end_txn(TxnProtocol::V1);
    assert!(late.is_ok());
    assert_eq!(
        w.state(),
        TxnState::PrepareCommit,
        "the second transaction is being committed"
    );
    assert_eq!(w.markers.last().unwrap().partitions, vec![tp(1)]);
}

#[test]
fn under_v2_a_late_end_txn_carries_the_old_epoch_and_is_fenced() {
    let (w, late) = late_end_txn(TxnProtocol::V2);
    assert_eq!(late, Err(KafkaError::ProducerFenced));
    assert_eq!(w.state(), TxnState::Ongoing);
}

#[test]
fn under_v2_each_end_txn_bumps_the_epoch_and_a_retry_with_the_previous_one_is_answered() {
    let mut w = World::new(TxnProtocol::V2);
    let producer = w.init(None, 0).unwrap();
    w.add(producer, &[0], 1).unwrap();
    let next = w.end(producer, true, 2).unwrap();
    assert_eq!(next, (producer.0, producer.1 + 1));
    assert_eq!(
        w.markers.last().unwrap().producer_epoch,
        next.1,
        "markers carry the new epoch"
    );
    assert_eq!(w.end(producer, true, 3), Err(KafkaError::ConcurrentTransactions));
    w.markers_done(4);
    assert_eq!(
        w.end(producer, true, 5),
        Ok(next),
        "a retry of the completed commit"
    );
    assert_eq!(w.end(producer, false, 6), Err(KafkaError::ProducerFenced));
}

#[test]
fn a_new_coordinator_loads_the_state_log_and_sends_owed_markers_again() {
    let mut w = World::new(TxnProtocol::V1);
    let producer = w.init(None, 0).unwrap();
    w.add(producer, &[0, 2], 1).unwrap();
    w.end(producer, false, 2).unwrap();
    let partition = w.c.partition_for(ID);
    let mut next = TxnCoordinator::new(TxnProtocol::V1, PARTITIONS, TRANSACTION_MAX_TIMEOUT_MS_DEFAULT);
    let records: Vec<(&[u8], &[u8])> = w
        .log
        .iter()
        .filter(|(p, _, _)| *p == partition)
        .map(|(_, k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    next.load(partition, 1, records);
    assert_eq!(next.metadata(ID).unwrap().state, TxnState::PrepareAbort);
    let outputs = next.take_outputs();
    let markers: Vec<&Markers> = outputs
        .iter()
        .filter_map(|o| match o {
            TxnOutput::WriteMarkers(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(markers.len(), 1);
    assert_eq!(markers[0].coordinator_epoch, 1);
    assert_eq!(markers[0].partitions, vec![tp(0), tp(2)]);
}

#[test]
fn ids_of_other_partitions_are_not_ours_and_an_unloaded_partition_answers_waiting_calls() {
    let mut c = TxnCoordinator::new(TxnProtocol::V1, PARTITIONS, TRANSACTION_MAX_TIMEOUT_MS_DEFAULT);
    c.init_producer_id(CallId(1), ID, 60_000, None, 0, &mut || Some(1));
    assert_eq!(
        c.take_outputs(),
        vec![TxnOutput::Answer {
            call: CallId(1),
            answer: TxnAnswer::InitProducerId(Err(KafkaError::NotCoordinator))
        }]
    );
    let partition = c.partition_for(ID);
    c.load(partition, 0, std::iter::empty());
    c.init_producer_id(CallId(2), ID, 60_000, None, 0, &mut || Some(1));
    assert!(matches!(c.take_outputs()[..], [TxnOutput::Persist { .. }]));
    c.unload(partition);
    assert_eq!(
        c.take_outputs(),
        vec![TxnOutput::Answer {
            call: CallId(2),
            answer: TxnAnswer::InitProducerId(Err(KafkaError::NotCoordinator))
        }]
    );
}

#[test]
fn a_failed_state_write_changes_nothing_and_a_pending_one_makes_others_wait() {
    let mut w = World::new(TxnProtocol::V1);
    let producer = w.init(None, 0).unwrap();
    w.hold = true;
    let call = w.call();
    w.c.add_partitions(call, ID, producer.0, producer.1, vec![tp(0)], 1);
    w.settle();
    assert_eq!(w.add(producer, &[1], 2), Err(KafkaError::ConcurrentTransactions));
    let write = w.held.pop().unwrap();
    w.c.persisted(write, Err(KafkaError::NotEnoughReplicas));
    w.settle();
    assert_eq!(
        w.answer_to(call),
        TxnAnswer::AddPartitions(Err(KafkaError::CoordinatorNotAvailable))
    );
    assert_eq!(w.state(), TxnState::Empty);
}

#[test]
fn a_timeout_above_the_maximum_is_refused() {
    let mut c = TxnCoordinator::new(TxnProtocol::V1, PARTITIONS, 1_000);
    c.load(c.partition_for(ID), 0, std::iter::empty());
    c.init_producer_id(CallId(1), ID, 1_001, None, 0, &mut || Some(1));
    assert_eq!(
        c.take_outputs(),
        vec![TxnOutput::Answer {
            call: CallId(1),
            answer: TxnAnswer::InitProducerId(Err(KafkaError::InvalidTransactionTimeout))
        }]
    );
}

#[test]
fn an_id_with_no_producer_ids_left_asks_for_a_block() {
    let mut c = TxnCoordinator::new(TxnProtocol::V1, PARTITIONS, TRANSACTION_MAX_TIMEOUT_MS_DEFAULT);
    c.load(c.partition_for(ID), 0, std::iter::empty());
    let started = c.init_producer_id(CallId(1), ID, 60_000, None, 0, &mut || None);
    assert_eq!(started, InitStarted::NeedProducerIds);
    assert!(c.take_outputs().is_empty());
}
