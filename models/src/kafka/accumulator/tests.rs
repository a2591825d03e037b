use super::*;
use crate::kafka::producer_state::{Check, ProducerState, PRODUCER_ID_EXPIRATION_MS_DEFAULT};

const BROKER: BrokerId = 1;
const P0: Partition = 0;

fn record(value: u8) -> Record {
    Record {
        key: None,
        value: Some(vec![value]),
    }
}

fn config(idempotence: bool, max_in_flight: usize) -> ProducerConfig {
    ProducerConfig {
        linger_ms: 0,
        max_in_flight,
        enable_idempotence: idempotence,
        ..ProducerConfig::default()
    }
}

/// A producer with partition 0 led by [`BROKER`] and, when idempotent, producer id `pid`.
fn producer(config: ProducerConfig, pid: i64) -> Accumulator {
    let mut acc = Accumulator::new(config).unwrap();
    acc.set_leader(P0, Some(BROKER));
    if acc.needs_producer_id() {
        acc.set_producer_id(pid, 0);
    }
    acc
}

/// A toy partition leader: an in-memory log and the producer state that guards it.
/// `dedupe: false` answers a cached duplicate with OUT_OF_ORDER_SEQUENCE_NUMBER, as Redpanda
/// up to 21.10.2 did (#3039).
struct Leader {
    log: Vec<Batch>,
    state: ProducerState,
    dedupe: bool,
}

impl Leader {
    fn new() -> Leader {
        Leader {
            log: Vec::new(),
            state: ProducerState::new(PRODUCER_ID_EXPIRATION_MS_DEFAULT),
            dedupe: true,
        }
    }

    fn end_offset(&self) -> i64 {
        self.log.last().map_or(0, Batch::next_offset)
    }

    fn produce(&mut self, mut batch: Batch, now_ms: u64) -> PartitionResult {
        if batch.is_idempotent() {
            match self.state.check(&batch)? {
                Check::Duplicate { base_offset, .. } if self.dedupe => return Ok(base_offset),
                Check::Duplicate { .. } => return Err(KafkaError::OutOfOrderSequenceNumber),
                Check::Append => {}
            }
        }
        batch.base_offset = self.end_offset();
        self.state.record(&batch, now_ms);
        self.log.push(batch.clone());
        Ok(batch.base_offset)
    }

    /// The records' values in log order.
    fn values(&self) -> Vec<u8> {
        self.log
            .iter()
            .flat_map(|b| b.records.iter().map(|r| r.value.as_ref().unwrap()[0]))
            .collect()
    }
}

/// The leader appends (or refuses) every batch of the request; the reply is returned, not
/// delivered, so a test can lose it.
fn handle(leader: &mut Leader, plan: &ProduceRequestPlan, now_ms: u64) -> Vec<(Partition, PartitionResult)> {
    plan.batches
        .iter()
        .map(|(p, b)| (*p, leader.produce(b.clone(), now_ms)))
        .collect()
}

fn send_one(acc: &mut Accumulator, now_ms: u64) -> ProduceRequestPlan {
    let mut plans = acc.ready(now_ms);
    assert_eq!(plans.len(), 1, "one request expected: {plans:?}");
    plans.pop().unwrap()
}

#[test]
fn idempotence_refuses_more_than_five_in_flight_and_no_retries() {
    let err = Accumulator::new(config(true, 6)).unwrap_err();
    assert_eq!(err, ConfigError::InFlightAboveIdempotentMax { max_in_flight: 6 });
    let no_retries = ProducerConfig {
        retries: 0,
        ..config(true, 5)
    };
    assert_eq!(
        Accumulator::new(no_retries).unwrap_err(),
        ConfigError::IdempotenceWithoutRetries
    );
    assert!(
        Accumulator::new(config(false, 6)).is_ok(),
        "without idempotence any limit goes"
    );
}

#[test]
fn idempotence_needs_acks_all_and_acks_is_0_1_or_all() {
    for acks in [0, 1] {
        let cfg = ProducerConfig {
            acks,
            ..config(true, 5)
        };
        assert_eq!(
            Accumulator::new(cfg).unwrap_err(),
            ConfigError::IdempotenceWithoutAcksAll { acks }
        );
        let plain = ProducerConfig {
            acks,
            ..config(false, 5)
        };
        assert!(Accumulator::new(plain).is_ok());
    }
    let cfg = ProducerConfig {
        acks: 2,
        ..config(false, 5)
    };
    assert_eq!(Accumulator::new(cfg).unwrap_err(), ConfigError::Acks { acks: 2 });
}

#[test]
fn with_acks_0_a_sent_batch_is_acknowledged_without_an_offset_and_holds_no_slot() {
    let cfg = ProducerConfig {
        acks: 0,
        batch_size_bytes: 1,
        ..config(false, 1)
    };
    let mut acc = producer(cfg, 0);
    for v in 0..3 {
        acc.append(P0, record(v), 0);
    }
    // max.in.flight 1 would mute the partition while a batch is in flight: none is.
    let plans = acc.ready(0);
    assert_eq!(plans.len(), 1);
    assert_eq!(acc.in_flight(BROKER), 0);
    assert_eq!(acc.poll_outcomes(), [(1, Outcome::Acked { offset: None })]);
    let second = send_one(&mut acc, 0);
    assert_eq!(second.batches[0].1.records, [record(1)]);
    // A disconnect afterwards changes nothing: the batch was done when it was sent.
    acc.on_disconnect(BROKER, 1);
    assert_eq!(acc.poll_outcomes(), [(2, Outcome::Acked { offset: None })]);
    assert_eq!(acc.pending_records(), 1);
    assert_eq!(
        acc.next_wakeup_ms(0),
        Some(120_000),
        "only the last batch's delivery timeout"
    );
}

#[test]
fn with_acks_1_a_batch_waits_for_its_answer_as_with_acks_all() {
    let cfg = ProducerConfig {
        acks: 1,
        ..config(false, 5)
    };
    let mut acc = producer(cfg, 0);
    acc.append(P0, record(7), 0);
    let plan = send_one(&mut acc, 0);
    assert!(acc.poll_outcomes().is_empty());
    acc.on_response(plan.request_id, &[(P0, Ok(41))], 1);
    assert_eq!(acc.poll_outcomes(), [(1, Outcome::Acked { offset: Some(41) })]);
}

#[test]
fn a_batch_waits_for_linger_unless_it_is_full() {
    let cfg = ProducerConfig {
        linger_ms: 10,
        batch_size_bytes: 3,
        ..config(false, 5)
    };
    let mut acc = producer(cfg, 0);
    acc.append(P0, record(1), 0);
    assert!(acc.ready(5).is_empty(), "lingering");
    assert_eq!(acc.next_wakeup_ms(5), Some(10));
    acc.append(P0, record(2), 6);
    acc.append(P0, record(3), 7); // 3 bytes: the batch is full
    let plan = send_one(&mut acc, 7);
    assert_eq!(plan.batches[0].1.len(), 3);
    assert!(!plan.batches[0].1.is_idempotent());
}

#[test]
fn the_connection_holds_at_most_max_in_flight_requests() {
    // One byte per batch: each record fills its own; one batch per partition per request.
    let cfg = ProducerConfig {
        batch_size_bytes: 1,
        ..config(false, 2)
    };
    let mut acc = producer(cfg, 0);
    for v in 0..3 {
        acc.append(P0, record(v), 0);
    }
    let first = send_one(&mut acc, 0);
    let second = send_one(&mut acc, 0);
    assert!(acc.ready(0).is_empty(), "two in flight, the third waits");
    assert_eq!(acc.in_flight(BROKER), 2);
    acc.on_response(first.request_id, &[(P0, Ok(0))], 1);
    assert_eq!(send_one(&mut acc, 1).batches[0].1.records, vec![record(2)]);
    assert_ne!(first.request_id, second.request_id);
}

#[test]
fn without_idempotence_a_retried_first_batch_lands_after_the_second() {
    let mut leader = Leader::new();
    let mut acc = producer(config(false, 2), 0);
    let a = acc.append(P0, record(1), 0);
    let first = send_one(&mut acc, 0);
    let b = acc.append(P0, record(2), 0);
    let second = send_one(&mut acc, 0);
    // The first request meets a leader change; the second reaches the new leader.
    acc.on_response(first.request_id, &[(P0, Err(KafkaError::NotLeaderOrFollower))], 1);
    let reply = handle(&mut leader, &second, 1);
    acc.on_response(second.request_id, &reply, 1);
    assert!(acc.ready(50).is_empty(), "backing off retry.backoff.ms");
    let retry = send_one(&mut acc, 101);
    let reply = handle(&mut leader, &retry, 101);
    acc.on_response(retry.request_id, &reply, 102);
    assert_eq!(leader.values(), vec![2, 1], "reordered");
    let outcomes = acc.poll_outcomes();
    assert_eq!(outcomes[0], (b, Outcome::Acked { offset: Some(0) }));
    assert_eq!(outcomes[1], (a, Outcome::Acked { offset: Some(1) }));
}

#[test]
fn with_idempotence_the_second_batch_is_refused_until_the_first_retry_lands() {
    let mut leader = Leader::new();
    let mut acc = producer(config(true, 2), 7);
    // A first batch gives the leader state for producer 7 (with none it takes any sequence).
    acc.append(P0, record(0), 0);
    let zero = send_one(&mut acc, 0);
    let reply = handle(&mut leader, &zero, 0);
    acc.on_response(zero.request_id, &reply, 0);
    acc.append(P0, record(1), 1);
    let first = send_one(&mut acc, 1);
    acc.append(P0, record(2), 1);
    let second = send_one(&mut acc, 1);
    assert_eq!(second.batches[0].1.base_sequence, 2);
    acc.on_response(first.request_id, &[(P0, Err(KafkaError::NotLeaderOrFollower))], 2);
    let reply = handle(&mut leader, &second, 2);
    assert_eq!(reply[0].1, Err(KafkaError::OutOfOrderSequenceNumber));
    acc.on_response(second.request_id, &reply, 2);
    // Both wait to be retried; the lower sequence goes first, alone.
    let retry = send_one(&mut acc, 102);
    assert_eq!(retry.batches[0].1.base_sequence, 1);
    assert!(acc.ready(102).is_empty(), "sequence 2 waits for sequence 1");
    let reply = handle(&mut leader, &retry, 102);
    acc.on_response(retry.request_id, &reply, 103);
    let retry = send_one(&mut acc, 103);
    let reply = handle(&mut leader, &retry, 103);
    acc.on_response(retry.request_id, &reply, 104);
    assert_eq!(leader.values(), vec![0, 1, 2], "in order");
    assert_eq!(
        acc.producer_id_and_epoch(),
        Some((7, 0)),
        "no epoch bump was needed"
    );
}

/// The request reaches the leader and is appended; the reply is lost; the request times out
/// and the batch is sent again.
fn lost_reply_then_retry(idempotence: bool) -> (Leader, Vec<(RecordId, Outcome)>) {
    let mut leader = Leader::new();
    let mut acc = producer(config(idempotence, 5), 3);
    acc.append(P0, record(9), 0);
    let first = send_one(&mut acc, 0);
    let _lost = handle(&mut leader, &first, 1);
    let timeout_ms = acc.config().request_timeout_ms;
    assert_eq!(acc.next_wakeup_ms(1), Some(timeout_ms));
    assert!(acc.ready(timeout_ms).is_empty(), "timed out, backing off");
    let retry = send_one(&mut acc, timeout_ms + 100);
    assert_eq!(
        retry.batches[0].1, first.batches[0].1,
        "same batch, same sequence"
    );
    let reply = handle(&mut leader, &retry, timeout_ms + 100);
    acc.on_response(retry.request_id, &reply, timeout_ms + 101);
    (leader, acc.poll_outcomes())
}

#[test]
fn a_retry_after_a_lost_reply_is_appended_once_with_idempotence() {
    let (leader, outcomes) = lost_reply_then_retry(true);
    assert_eq!(leader.values(), vec![9]);
    assert_eq!(
        outcomes,
        vec![(1, Outcome::Acked { offset: Some(0) })],
        "the first offset"
    );
}

#[test]
fn a_retry_after_a_lost_reply_is_appended_twice_without_idempotence() {
    let (leader, outcomes) = lost_reply_then_retry(false);
    assert_eq!(leader.values(), vec![9, 9]);
    assert_eq!(outcomes, vec![(1, Outcome::Acked { offset: Some(1) })]);
}

#[test]
fn a_new_producer_instance_resending_a_record_duplicates_it() {
    let mut leader = Leader::new();
    let mut old = producer(config(true, 5), 100);
    old.append(P0, record(5), 0);
    let plan = send_one(&mut old, 0);
    let _lost = handle(&mut leader, &plan, 0);
    // The application gives up on the old producer and sends the record again from a new
    // one: a new producer id, so a new record to the leader.
    let mut new = producer(config(true, 5), 101);
    new.append(P0, record(5), 10);
    let plan = send_one(&mut new, 10);
    assert_eq!(plan.batches[0].1.base_sequence, 0);
    let reply = handle(&mut leader, &plan, 10);
    new.on_response(plan.request_id, &reply, 11);
    assert_eq!(leader.values(), vec![5, 5]);
}

#[test]
fn redpanda_3039_a_leader_without_the_batch_cache_makes_the_epoch_bump_duplicate() {
    let mut leader = Leader::new();
    leader.dedupe = false;
    let mut acc = producer(config(true, 5), 3);
    acc.append(P0, record(9), 0);
    let first = send_one(&mut acc, 0);
    let _lost = handle(&mut leader, &first, 0);
    acc.on_disconnect(BROKER, 1);
    let retry = send_one(&mut acc, 101);
    let reply = handle(&mut leader, &retry, 101);
    assert_eq!(reply[0].1, Err(KafkaError::OutOfOrderSequenceNumber));
    acc.on_response(retry.request_id, &reply, 101);
    // The batch is the next expected sequence, so the gap looks real: bump and renumber.
    let again = send_one(&mut acc, 201);
    assert_eq!(acc.producer_id_and_epoch(), Some((3, 1)));
    assert_eq!(
        (
            again.batches[0].1.producer_epoch,
            again.batches[0].1.base_sequence
        ),
        (1, 0)
    );
    let reply = handle(&mut leader, &again, 201);
    acc.on_response(again.request_id, &reply, 201);
    assert_eq!(leader.values(), vec![9, 9], "appended under both epochs");
    assert_eq!(acc.poll_outcomes(), vec![(1, Outcome::Acked { offset: Some(1) })]);
}

#[test]
fn a_record_never_sent_fails_at_the_delivery_timeout_and_a_sent_one_is_unknown() {
    let mut acc = producer(config(false, 5), 0);
    acc.set_leader(1, None); // partition 1 has no known leader: never sent
    let unsent = acc.append(1, record(1), 0);
    let sent = acc.append(P0, record(2), 0);
    let _plan = send_one(&mut acc, 0);
    let deadline_ms = acc.config().delivery_timeout_ms;
    assert!(acc
        .ready(deadline_ms - 1)
        .iter()
        .all(|p| p.batches.iter().all(|(p, _)| *p == P0)));
    acc.ready(deadline_ms);
    let outcomes = acc.poll_outcomes();
    let reason = FailReason::DeliveryTimeout;
    assert!(
        outcomes.contains(&(unsent, Outcome::Failed { reason })),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&(sent, Outcome::Unknown { reason })),
        "{outcomes:?}"
    );
    assert_eq!(acc.pending_records(), 0);
}

#[test]
fn a_refusal_on_the_only_attempt_is_a_failure_but_after_a_timeout_it_is_unknown() {
    let mut acc = producer(config(false, 5), 0);
    let a = acc.append(P0, record(1), 0);
    let plan = send_one(&mut acc, 0);
    acc.on_response(plan.request_id, &[(P0, Err(KafkaError::MessageTooLarge))], 1);
    let reason = FailReason::Broker(KafkaError::MessageTooLarge);
    assert_eq!(acc.poll_outcomes(), vec![(a, Outcome::Failed { reason })]);

    let b = acc.append(P0, record(2), 2);
    let _plan = send_one(&mut acc, 2);
    acc.on_disconnect(BROKER, 3); // may have been appended
    let retry = send_one(&mut acc, 103);
    acc.on_response(retry.request_id, &[(P0, Err(KafkaError::MessageTooLarge))], 104);
    assert_eq!(acc.poll_outcomes(), vec![(b, Outcome::Unknown { reason })]);
}

/// The network between one producer and the toy leader, as a proptest drives it: requests
/// reach the leader in order; a lost reply breaks the connection, and what the producer sends
/// on it until it notices (request timeout) is lost too.
struct Wire {
    pending: VecDeque<ProduceRequestPlan>,
    broken: bool,
}

impl Wire {
    fn send(&mut self, acc: &Accumulator, plans: Vec<ProduceRequestPlan>) {
        if self.broken && acc.in_flight(BROKER) == 0 {
            self.broken = false;
        }
        if !self.broken {
            self.pending.extend(plans);
        }
    }

    /// The oldest request reaches the leader; its reply is delivered unless `lose_reply`.
    fn deliver(&mut self, acc: &mut Accumulator, leader: &mut Leader, lose_reply: bool, now_ms: u64) {
        let Some(plan) = self.pending.pop_front() else {
            return;
        };
        let reply = handle(leader, &plan, now_ms);
        if lose_reply {
            self.broken = true;
            self.pending.clear();
        } else {
            acc.on_response(plan.request_id, &reply, now_ms);
        }
    }
}

fn decode(record: &Record) -> u16 {
    let v = record.value.as_ref().unwrap();
    u16::from_le_bytes([v[0], v[1]])
}

/// Acknowledged records are in the log at their offset, failed ones nowhere, and (when
/// `no_duplicates`) no record is there twice.
fn check_log(
    leader: &Leader,
    values: &BTreeMap<RecordId, u16>,
    outcomes: &BTreeMap<RecordId, Outcome>,
    no_duplicates: bool,
) -> Result<(), proptest::test_runner::TestCaseError> {
    let log: Vec<(i64, u16)> = leader
        .log
        .iter()
        .flat_map(|b| {
            b.records
                .iter()
                .enumerate()
                .map(move |(i, r)| (b.base_offset + i as i64, decode(r)))
        })
        .collect();
    for (id, outcome) in outcomes {
        let value = values[id];
        match outcome {
            Outcome::Acked { offset: Some(offset) } => {
                proptest::prop_assert!(log.contains(&(*offset, value)), "{} not at {}", value, offset);
            }
            Outcome::Acked { offset: None } | Outcome::Unknown { .. } => {}
            Outcome::Failed { .. } => {
                proptest::prop_assert!(
                    log.iter().all(|(_, v)| *v != value),
                    "failed {} is in the log",
                    value
                );
            }
        }
    }
    if no_duplicates {
        let distinct: BTreeSet<u16> = log.iter().map(|(_, v)| *v).collect();
        proptest::prop_assert_eq!(distinct.len(), log.len(), "a record appended twice: {:?}", log);
    }
    Ok(())
}

proptest::proptest! {
    /// Whatever the network does, every record gets exactly one outcome once it heals; an
    /// acknowledged record is in the log at its offset, a failed one never is; and with
    /// idempotence and no delivery timeout, the log never holds a record twice.
    #[test]
    fn outcomes_match_the_leaders_log(
        idempotence in proptest::prelude::any::<bool>(),
        delivery_expires in proptest::prelude::any::<bool>(),
        steps in proptest::collection::vec((0u8..7, 0u64..40_000), 1..120),
    ) {
        let cfg = ProducerConfig {
            batch_size_bytes: 4,
            delivery_timeout_ms: if delivery_expires { 120_000 } else { u64::MAX / 4 },
            ..config(idempotence, 3)
        };
        let mut acc = producer(cfg, 42);
        let mut leader = Leader::new();
        let mut wire = Wire { pending: VecDeque::new(), broken: false };
        let mut values: BTreeMap<RecordId, u16> = BTreeMap::new();
        let mut outcomes: BTreeMap<RecordId, Outcome> = BTreeMap::new();
        let mut now_ms = 0;
        for (step, arg) in steps {
            match step {
                0 => {
                    let value = values.len() as u16;
                    let id = acc.append(P0, Record { key: None, value: Some(value.to_le_bytes().to_vec()) }, now_ms);
                    values.insert(id, value);
                }
                1 => { let plans = acc.ready(now_ms); wire.send(&acc, plans); }
                2 => wire.deliver(&mut acc, &mut leader, false, now_ms),
                3 => wire.deliver(&mut acc, &mut leader, true, now_ms),
                4 => {
                    // Leadership moves away and back: every request in the pipe is refused.
                    // (Refusing one and appending the next would let a leader with no state
                    // for the producer take sequence 1 before 0, after which Kafka retries
                    // sequence 0 until delivery.timeout.ms.)
                    while let Some(plan) = wire.pending.pop_front() {
                        let refused: Vec<_> = plan.batches.iter().map(|(p, _)| (*p, Err(KafkaError::NotLeaderOrFollower))).collect();
                        acc.on_response(plan.request_id, &refused, now_ms);
                    }
                }
                5 => { acc.on_disconnect(BROKER, now_ms); wire.pending.clear(); wire.broken = false; }
                _ => now_ms += arg,
            }
            proptest::prop_assert!(acc.in_flight(BROKER) <= 3);
            for (id, outcome) in acc.poll_outcomes() {
                proptest::prop_assert!(outcomes.insert(id, outcome).is_none(), "two outcomes for {}", id);
            }
        }
        // Heal: nothing is lost any more; run until every record has its outcome.
        for _ in 0..10_000 {
            if acc.pending_records() == 0 { break; }
            let plans = acc.ready(now_ms);
            wire.send(&acc, plans);
            while !wire.pending.is_empty() {
                wire.deliver(&mut acc, &mut leader, false, now_ms);
            }
            now_ms = acc.next_wakeup_ms(now_ms).unwrap_or(now_ms + 1);
        }
        proptest::prop_assert_eq!(acc.pending_records(), 0);
        for (id, outcome) in acc.poll_outcomes() {
            proptest::prop_assert!(outcomes.insert(id, outcome).is_none(), "two outcomes for {}", id);
        }
        proptest::prop_assert_eq!(outcomes.len(), values.len());
        check_log(&leader, &values, &outcomes, idempotence && !delivery_expires)?;
    }
}
