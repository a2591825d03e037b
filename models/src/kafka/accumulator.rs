//! The Java producer's batching and sending, sans I/O (Kafka `RecordAccumulator`, `Sender`,
//! `TransactionManager` for an idempotent, non-transactional producer; reference §2.4).
//!
//! - Records are appended to the last open batch of their partition; a batch is closed when
//!   `batch.size` bytes would be passed (keys and values only: our records have no wire
//!   overhead) or when it is drained. A partition is ready when its first batch is closed, or
//!   has waited `linger.ms`, and is not backing off `retry.backoff.ms` after a failure.
//! - [`Accumulator::ready`] drains one batch per ready partition into one request per broker,
//!   while that connection has fewer than `max.in.flight.requests.per.connection` requests
//!   out. With a limit of 1 a partition with a batch in flight is not drained at all (Kafka's
//!   `guaranteeMessageOrder`, which mutes it).
//! - A retriable error puts the batch back at the front of its queue, while `retries` and
//!   `delivery.timeout.ms` allow. Without idempotence and with more than one request in
//!   flight, a failed first batch retried after a successful second one lands after it:
//!   "Allowing retries while setting enable.idempotence to false and
//!   max.in.flight.requests.per.connection to greater than 1 will potentially change the
//!   ordering of records" (Kafka's `retries` documentation).
//! - A request unanswered after `request.timeout.ms` closes its connection, and every request
//!   in flight on it fails with NETWORK_EXCEPTION (Kafka `NetworkClient.handleTimedOutRequests`).
//! - A batch not delivered `delivery.timeout.ms` after it was created fails. For our history
//!   (ARCHITECTURE.md, "Publish outcomes"): a batch that was never sent, or whose every attempt
//!   the leader refused, is [`Outcome::Failed`] (`fail`); one with an attempt that may have
//!   been appended (in flight, timed out, disconnected, or an error such as
//!   NOT_ENOUGH_REPLICAS_AFTER_APPEND) is [`Outcome::Unknown`] (`info`). Kafka reports both as
//!   a `TimeoutException`; the distinction is what the client could know, not what it says.
//!
//! With `enable.idempotence`:
//! - The producer id and epoch come from InitProducerId ([`Accumulator::set_producer_id`]);
//!   nothing is drained before. A new producer instance gets a new id, so resending the same
//!   application record from it is a new record to the leader (reference §2.4).
//! - A batch gets its sequence number when it is first drained and keeps it across retries.
//!   Only the lowest outstanding sequence of a partition is resent, so retries go in order.
//! - OUT_OF_ORDER_SEQUENCE_NUMBER and UNKNOWN_PRODUCER_ID are retried: a batch that is not the
//!   next expected one waits for the one before it; otherwise the client bumps its epoch
//!   locally and renumbers that partition's outstanding batches from 0 (KIP-360, Kafka
//!   `TransactionManager.canRetry`, `bumpIdempotentProducerEpoch`). Against a leader that does
//!   not remember the batches it appended, that resends an appended batch under the new epoch
//!   and duplicates it: Redpanda #3039 (reference §2.4).
//! - A batch that expires after being retried leaves its partition "unresolved": no new batch
//!   is drained there until the outstanding ones finish, and the epoch is bumped if the
//!   sequence did not catch up (`markSequenceUnresolved`, `maybeResolveSequences`).
//!
//! Not modelled: `max.request.size` and the drain's rotation over partitions, the exponential
//! `retry.backoff.max.ms` (KIP-580) and its jitter, splitting a batch after MESSAGE_TOO_LARGE,
//! buffer memory and `max.block.ms`, UNKNOWN_PRODUCER_ID's log-start-offset cases, and
//! transactions.
//!
//! `acks`: with 1 or all (-1) the leader answers, and the accumulator cannot tell them apart
//! (the difference is the leader's). With 0 the leader never answers, so a batch is done as
//! soon as its request is planned: Kafka's `NetworkClient` completes a request that expects no
//! response once it is sent, and `Sender.handleProduceResponse` completes its batches as
//! successes with offset -1 (`ProduceResponse.INVALID_OFFSET`), here [`Outcome::Acked`]
//! without an offset. Nothing is retried and nothing counts against
//! `max.in.flight.requests.per.connection`.

use super::batch::{Batch, Record};
use super::error::KafkaError;
use super::producer_state::{increment_sequence, NUM_BATCHES_TO_RETAIN};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

/// The application's handle on one appended record.
pub type RecordId = u64;
/// One produce request, as [`Accumulator::ready`] planned it.
pub type RequestId = u64;
pub type BrokerId = i32;
pub type Partition = u32;
type BatchId = u64;

/// With idempotence the leader remembers only this many batches per producer, so no more
/// requests may be in flight per connection (Kafka `ProducerConfig`, reference §2.4).
pub const IDEMPOTENT_IN_FLIGHT_MAX: usize = NUM_BATCHES_TO_RETAIN;
/// A bound on the batches one producer holds (queued, in flight, or awaiting a late reply).
pub const BATCHES_MAX: usize = 100_000;

/// The Java producer's settings that shape delivery, with Kafka's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerConfig {
    /// `batch.size` (16384).
    pub batch_size_bytes: usize,
    /// `linger.ms` (5 since Kafka 4.0, KIP-1030; 0 before).
    pub linger_ms: u64,
    /// `max.in.flight.requests.per.connection` (5).
    pub max_in_flight: usize,
    /// `retries` (`Integer.MAX_VALUE`).
    pub retries: u32,
    /// `retry.backoff.ms` (100).
    pub retry_backoff_ms: u64,
    /// `delivery.timeout.ms` (120000).
    pub delivery_timeout_ms: u64,
    /// `request.timeout.ms` (30000).
    pub request_timeout_ms: u64,
    /// `enable.idempotence` (true since Kafka 3.0, KIP-679).
    pub enable_idempotence: bool,
    /// `acks`: 0 (no answer), 1 (the leader's append) or -1 (`all`, the default since 3.0).
    pub acks: i16,
    /// A `transactional.id` is set: batches carry the transactional attribute, go only to
    /// partitions in the transaction ([`Accumulator::set_transaction_partitions`]), and the
    /// epoch is bumped by the coordinator, never locally.
    pub transactional: bool,
}

impl Default for ProducerConfig {
    fn default() -> ProducerConfig {
        ProducerConfig {
            batch_size_bytes: 16_384,
            linger_ms: 5,
            max_in_flight: 5,
            retries: i32::MAX as u32,
            retry_backoff_ms: 100,
            delivery_timeout_ms: 120_000,
            request_timeout_ms: 30_000,
            enable_idempotence: true,
            acks: ACKS_ALL,
            transactional: false,
        }
    }
}

/// `acks=all`, as the wire carries it.
pub const ACKS_ALL: i16 = -1;

/// A configuration the Java producer refuses (Kafka `ProducerConfig` validation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// Idempotence needs `max.in.flight.requests.per.connection` <= 5.
    InFlightAboveIdempotentMax { max_in_flight: usize },
    /// Idempotence needs `retries` > 0.
    IdempotenceWithoutRetries,
    /// `delivery.timeout.ms` must be at least `linger.ms` + `request.timeout.ms`.
    DeliveryTimeoutTooShort {
        delivery_timeout_ms: u64,
        needed_ms: u64,
    },
    /// `batch.size` and `max.in.flight.requests.per.connection` must be at least 1.
    Zero { key: &'static str },
    /// `acks` is one of 0, 1 and -1 (`all`).
    Acks { acks: i16 },
    /// Idempotence needs `acks=all` ("Must set acks to all in order to use the idempotent
    /// producer. Otherwise we cannot guarantee idempotence.", Kafka `ProducerConfig`).
    IdempotenceWithoutAcksAll { acks: i16 },
    /// "Cannot set a transactional.id without also enabling idempotence" (Kafka
    /// `ProducerConfig`).
    TransactionalWithoutIdempotence,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::InFlightAboveIdempotentMax { max_in_flight } => write!(
                f,
                "max.in.flight.requests.per.connection {max_in_flight} must be at most \
                 {IDEMPOTENT_IN_FLIGHT_MAX} with enable.idempotence"
            ),
            ConfigError::IdempotenceWithoutRetries => {
                write!(f, "retries must be greater than 0 with enable.idempotence")
            }
            ConfigError::DeliveryTimeoutTooShort {
                delivery_timeout_ms,
                needed_ms,
            } => write!(
                f,
                "delivery.timeout.ms {delivery_timeout_ms} must be at least linger.ms + \
                 request.timeout.ms ({needed_ms})"
            ),
            ConfigError::Zero { key } => write!(f, "{key} must be at least 1"),
            ConfigError::Acks { acks } => write!(f, "acks {acks} must be 0, 1 or -1 (all)"),
            ConfigError::IdempotenceWithoutAcksAll { acks } => write!(
                f,
                "acks {acks}: must set acks to all in order to use the idempotent producer"
            ),
            ConfigError::TransactionalWithoutIdempotence => write!(
                f,
                "cannot set a transactional.id without also enabling idempotence"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ProducerConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.batch_size_bytes == 0 {
            return Err(ConfigError::Zero { key: "batch.size" });
        }
        if self.max_in_flight == 0 {
            return Err(ConfigError::Zero {
                key: "max.in.flight.requests.per.connection",
            });
        }
        if self.enable_idempotence && self.max_in_flight > IDEMPOTENT_IN_FLIGHT_MAX {
            return Err(ConfigError::InFlightAboveIdempotentMax {
                max_in_flight: self.max_in_flight,
            });
        }
        if self.enable_idempotence && self.retries == 0 {
            return Err(ConfigError::IdempotenceWithoutRetries);
        }
        if ![0, 1, ACKS_ALL].contains(&self.acks) {
            return Err(ConfigError::Acks { acks: self.acks });
        }
        if self.transactional && !self.enable_idempotence {
            return Err(ConfigError::TransactionalWithoutIdempotence);
        }
        if self.enable_idempotence && self.acks != ACKS_ALL {
            return Err(ConfigError::IdempotenceWithoutAcksAll { acks: self.acks });
        }
        let needed_ms = self.linger_ms + self.request_timeout_ms;
        if self.delivery_timeout_ms < needed_ms {
            return Err(ConfigError::DeliveryTimeoutTooShort {
                delivery_timeout_ms: self.delivery_timeout_ms,
                needed_ms,
            });
        }
        Ok(())
    }
}

/// Why a record was not acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailReason {
    /// `delivery.timeout.ms` passed.
    DeliveryTimeout,
    /// The leader's answer, not retried (not retriable, or retries spent).
    Broker(KafkaError),
    /// Never sent: its transaction was aborted (Kafka `abortUndrainedBatches`).
    TransactionAborted,
}

/// What became of a record, as our history records publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `ok`: appended at `offset`. `None` after DUPLICATE_SEQUENCE_NUMBER, which Kafka
    /// completes as a success without an offset.
    Acked { offset: Option<i64> },
    /// `fail`: never appended.
    Failed { reason: FailReason },
    /// `info`: may have been appended.
    Unknown { reason: FailReason },
}

/// A produce request to send: to `broker`, one batch per partition, as the wire will carry
/// them (producer id, epoch and base sequence set when idempotent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProduceRequestPlan {
    pub request_id: RequestId,
    pub broker: BrokerId,
    pub batches: Vec<(Partition, Batch)>,
}

/// A partition's answer in a produce response: the base offset, or an error.
pub type PartitionResult = Result<i64, KafkaError>;

#[derive(Clone, Debug)]
struct ProducerBatch {
    partition: Partition,
    records: Vec<(RecordId, Record)>,
    bytes: usize,
    created_ms: u64,
    /// No more appends: drained once, or a record did not fit.
    closed: bool,
    /// Kafka's `attempts()`: how often the batch was put back for a retry.
    attempts: u32,
    last_attempt_ms: u64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: Option<i32>,
    /// Kafka's `sequenceHasBeenReset()`: renumbered by an epoch bump.
    sequence_reset: bool,
    /// An attempt may have been appended (see the module doc).
    maybe_appended: bool,
    /// Its outcome is out; it may still wait for a late reply.
    done: bool,
    in_request: Option<RequestId>,
}

impl ProducerBatch {
    fn last_sequence(&self) -> Option<i32> {
        self.base_sequence
            .map(|s| increment_sequence(s, self.records.len() as i32 - 1))
    }
}

#[derive(Clone, Debug)]
struct InFlight {
    broker: BrokerId,
    batches: Vec<BatchId>,
    deadline_ms: u64,
}

/// Kafka `TransactionManager.TopicPartitionEntry`: one partition's sequence bookkeeping.
#[derive(Clone, Debug)]
struct Sequences {
    producer: Option<(i64, i16)>,
    next_sequence: i32,
    /// -1 before the first acknowledgement (Kafka `NO_LAST_ACKED_SEQUENCE_NUMBER`).
    last_acked_sequence: i32,
    /// Batches with a sequence that are not done, in flight or queued for a retry.
    outstanding: BTreeSet<BatchId>,
    /// The sequence after a batch that expired after being sent (`markSequenceUnresolved`).
    unresolved: Option<i32>,
}

impl Sequences {
    fn new() -> Sequences {
        Sequences {
            producer: None,
            next_sequence: 0,
            last_acked_sequence: -1,
            outstanding: BTreeSet::new(),
            unresolved: None,
        }
    }

    fn is_next(&self, sequence: i32) -> bool {
        sequence as i64 - self.last_acked_sequence as i64 == 1
    }
}

/// One producer's record accumulator and sender.
#[derive(Clone, Debug)]
pub struct Accumulator {
    config: ProducerConfig,
    leaders: BTreeMap<Partition, BrokerId>,
    queues: BTreeMap<Partition, VecDeque<BatchId>>,
    batches: BTreeMap<BatchId, ProducerBatch>,
    requests: BTreeMap<RequestId, InFlight>,
    sequences: BTreeMap<Partition, Sequences>,
    producer: Option<(i64, i16)>,
    epoch_bump_partitions: BTreeSet<Partition>,
    epoch_bump_required: bool,
    /// Transactional: the partitions batches may be drained to.
    transaction_partitions: BTreeSet<Partition>,
    outcomes: Vec<(RecordId, Outcome)>,
    next_record_id: RecordId,
    next_batch_id: BatchId,
    next_request_id: RequestId,
}

impl Accumulator {
    pub fn new(config: ProducerConfig) -> Result<Accumulator, ConfigError> {
        config.validate()?;
        Ok(Accumulator {
            config,
            leaders: BTreeMap::new(),
            queues: BTreeMap::new(),
            batches: BTreeMap::new(),
            requests: BTreeMap::new(),
            sequences: BTreeMap::new(),
            producer: None,
            epoch_bump_partitions: BTreeSet::new(),
            epoch_bump_required: false,
            transaction_partitions: BTreeSet::new(),
            outcomes: Vec::new(),
            next_record_id: 1,
            next_batch_id: 1,
            next_request_id: 1,
        })
    }

    pub fn config(&self) -> &ProducerConfig {
        &self.config
    }

    /// The partition's leader as the producer's metadata knows it; `None` while unknown.
    pub fn set_leader(&mut self, partition: Partition, leader: Option<BrokerId>) {
        match leader {
            Some(broker) => self.leaders.insert(partition, broker),
            None => self.leaders.remove(&partition),
        };
    }

    /// With idempotence, whether an InitProducerId answer is needed before sending.
    pub fn needs_producer_id(&self) -> bool {
        self.config.enable_idempotence && self.producer.is_none()
    }

    /// The InitProducerId answer.
    pub fn set_producer_id(&mut self, producer_id: i64, epoch: i16) {
        assert!(
            self.config.enable_idempotence,
            "only an idempotent producer has an id"
        );
        assert!(producer_id >= 0 && epoch >= 0, "a valid producer id and epoch");
        self.producer = Some((producer_id, epoch));
    }

    /// The producer id and epoch batches are drained with now.
    pub fn producer_id_and_epoch(&self) -> Option<(i64, i16)> {
        self.producer
    }

    /// Requests in flight on the connection to `broker`.
    pub fn in_flight(&self, broker: BrokerId) -> usize {
        self.requests.values().filter(|r| r.broker == broker).count()
    }

    /// Records whose outcome is not out yet.
    pub fn pending_records(&self) -> usize {
        self.batches
            .values()
            .filter(|b| !b.done)
            .map(|b| b.records.len())
            .sum()
    }

    /// The outcomes decided since the last call, in the order they were decided.
    pub fn poll_outcomes(&mut self) -> Vec<(RecordId, Outcome)> {
        std::mem::take(&mut self.outcomes)
    }

    /// Add a record to its partition's open batch, or to a new one.
    pub fn append(&mut self, partition: Partition, record: Record, now_ms: u64) -> RecordId {
        let id = self.next_record_id;
        self.next_record_id += 1;
        let bytes = record.key.as_ref().map_or(0, Vec::len) + record.value.as_ref().map_or(0, Vec::len);
        let batch_size_bytes = self.config.batch_size_bytes;
        let queue = self.queues.entry(partition).or_default();
        if let Some(last) = queue.back().and_then(|b| self.batches.get_mut(b)) {
            if !last.closed && last.bytes + bytes <= batch_size_bytes {
                last.records.push((id, record));
                last.bytes += bytes;
                last.closed = last.bytes >= batch_size_bytes;
                return id;
            }
            // The record does not fit: the batch is full (Kafka `isFull`).
            last.closed = true;
        }
        assert!(
            self.batches.len() < BATCHES_MAX,
            "more than {BATCHES_MAX} batches"
        );
        let batch_id = self.next_batch_id;
        self.next_batch_id += 1;
        self.batches.insert(
            batch_id,
            ProducerBatch {
                partition,
                records: vec![(id, record)],
                bytes,
                created_ms: now_ms,
                closed: bytes >= batch_size_bytes,
                attempts: 0,
                last_attempt_ms: now_ms,
                producer_id: super::batch::NO_PRODUCER_ID,
                producer_epoch: -1,
                base_sequence: None,
                sequence_reset: false,
                maybe_appended: false,
                done: false,
                in_request: None,
            },
        );
        queue.push_back(batch_id);
        id
    }

    /// The earliest time after `now_ms` at which [`Accumulator::ready`] has something to do
    /// without any other event: a linger or backoff ending, a request or delivery timeout.
    pub fn next_wakeup_ms(&self, now_ms: u64) -> Option<u64> {
        let heads = self.queues.values().filter_map(|q| q.front()).map(|id| {
            let b = &self.batches[id];
            if b.attempts > 0 {
                b.last_attempt_ms + self.config.retry_backoff_ms
            } else {
                b.created_ms + self.config.linger_ms
            }
        });
        let deliveries = self
            .batches
            .values()
            .filter(|b| !b.done)
            .map(|b| b.created_ms + self.config.delivery_timeout_ms);
        let requests = self.requests.values().map(|r| r.deadline_ms);
        heads
            .chain(deliveries)
            .chain(requests)
            .filter(|t| *t > now_ms)
            .min()
    }

    /// One turn of Kafka's sender loop: time out requests, settle unresolved sequences, bump
    /// the epoch if asked, expire batches, and plan the requests to send now.
    pub fn ready(&mut self, now_ms: u64) -> Vec<ProduceRequestPlan> {
        self.time_out_requests(now_ms);
        if self.config.enable_idempotence {
            self.resolve_sequences();
            if !self.config.transactional {
                self.bump_epoch_if_required();
            }
        }
        // Kafka drains before it expires within one turn; expiring first keeps a batch at
        // its deadline from being sent only to be declared failed in the same instant.
        self.expire_batches(now_ms);
        let plans = self.drain(now_ms);
        self.check_invariants();
        plans
    }

    /// The connection to `broker` closed: every request in flight on it fails with
    /// NETWORK_EXCEPTION (Kafka `Sender.handleProduceResponse` on a disconnect).
    pub fn on_disconnect(&mut self, broker: BrokerId, now_ms: u64) {
        let ids: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, r)| r.broker == broker)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let request = self.requests.remove(&id).expect("listed above");
            for batch_id in request.batches {
                self.complete_attempt(batch_id, Err(KafkaError::NetworkException), now_ms);
            }
        }
    }

    /// The response to `request_id`: one result per partition it carried. A response to a
    /// request that timed out or whose connection closed is never read (Kafka drops the
    /// connection with it), so it is ignored here.
    pub fn on_response(
        &mut self,
        request_id: RequestId,
        results: &[(Partition, PartitionResult)],
        now_ms: u64,
    ) {
        let Some(request) = self.requests.remove(&request_id) else {
            return;
        };
        for batch_id in request.batches {
            let partition = self.batches[&batch_id].partition;
            let result = results
                .iter()
                .find(|(p, _)| *p == partition)
                .map(|(_, r)| *r)
                .unwrap_or_else(|| panic!("the response to {request_id} misses partition {partition}"));
            self.complete_attempt(batch_id, result, now_ms);
        }
    }

    fn time_out_requests(&mut self, now_ms: u64) {
        let brokers: BTreeSet<BrokerId> = self
            .requests
            .values()
            .filter(|r| r.deadline_ms <= now_ms)
            .map(|r| r.broker)
            .collect();
        for broker in brokers {
            self.on_disconnect(broker, now_ms);
        }
    }

    fn check_invariants(&self) {
        assert!(self.batches.len() <= BATCHES_MAX);
        let in_flight: BTreeSet<BatchId> = self
            .requests
            .values()
            .flat_map(|r| r.batches.iter().copied())
            .collect();
        for (id, b) in &self.batches {
            assert_eq!(
                b.in_request.is_some(),
                in_flight.contains(id),
                "batch {id} in flight"
            );
            let queued = self.queues.get(&b.partition).is_some_and(|q| q.contains(id));
            assert!(
                !(queued && b.in_request.is_some()),
                "batch {id} both queued and in flight"
            );
            assert!(!(queued && b.done), "batch {id} done but queued");
        }
        let brokers: BTreeSet<BrokerId> = self.requests.values().map(|r| r.broker).collect();
        for broker in brokers {
            assert!(
                self.in_flight(broker) <= self.config.max_in_flight,
                "broker {broker} over max in flight"
            );
        }
    }
}

mod drain;
mod idempotence;
mod settle;
#[cfg(test)]
mod tests;
mod transactional;
