//! The Java producer as a simulated process (reference §2.4): it takes its share of the
//! workload from the [`Source`], records each message's `Publish`, appends it to the
//! [`Accumulator`] (the sans-I/O batching, retries and idempotence), and sends the produce
//! requests the accumulator plans to each partition's leader, one connection per broker.
//! Outcomes go to the history as Jepsen's: `ok` with the partition and offset, `fail`,
//! `info` (ARCHITECTURE.md, "Publish outcomes").
//!
//! Like Kafka's `Sender` it drains only to leaders it has a connection to
//! (`RecordAccumulator.ready` asks `NetworkClient.ready(node)`), closes a connection whose
//! request timed out, and asks for new metadata on a disconnect or an
//! `InvalidMetadataException` (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, ...), and every
//! `metadata.max.age.ms`. With idempotence it gets its producer id from InitProducerId
//! before anything is sent, retrying until it has one.

use super::accumulator::{
    Accumulator, ConfigError, FailReason, Outcome, PartitionResult, ProducerConfig, RecordId, RequestId,
};
use super::batch::Record;
use super::client::{
    conn_error_note, fetch_metadata, is_stale_metadata, partition_name, Timeouts, TopicMetadata,
};
use super::connection::{ConnError, Connection};
use super::error::KafkaError;
use super::partitioner::Partitioner;
use super::transform_feed::{BatchOutcome, TransformFeed};
use super::wire::{Request, Response};
use super::wire_records::encode_batch;
use crate::source::{encode_value, Source};
use kafka_protocol::messages::{
    produce_request, InitProducerIdRequest, ProduceRequest, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sim::history::{EventKind, MsgId};
use sim::{Env, Process};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Records appended and not yet settled, at most: Kafka's `buffer.memory` (32 MiB), counted
/// in records. `send()` blocks while it is full; here the workload waits.
pub const PENDING_RECORDS_MAX: usize = 10_000;
/// Answers waiting to be read by the producer's loop.
const ANSWERS_MAX: usize = 256;
/// The longest the loop sleeps without looking at the clock again.
const IDLE_MS_MAX: u64 = 1_000;

/// One producer process's settings.
#[derive(Clone, Debug)]
pub struct ProducerSettings {
    pub topic: String,
    /// `bootstrap.servers`: hosts asked for metadata and producer ids, in turn.
    pub brokers: Vec<String>,
    /// Batching, retries, timeouts, idempotence and `acks`.
    pub producer: ProducerConfig,
    /// `socket.connection.setup.timeout.ms` (10000).
    pub connect_timeout_ms: u64,
    /// `metadata.max.age.ms` (300000).
    pub metadata_max_age_ms: u64,
    /// `reconnect.backoff.ms` (50).
    pub reconnect_backoff_ms: u64,
    /// The workload's pace: the pause between two `send()` calls.
    pub publish_interval_ms: u64,
    /// Simulated time of the first `send()` (the workload's `start_ms`).
    pub start_ms: u64,
    /// The application's own retry: a record whose send failed is sent again through a
    /// new producer instance (see [`Producer::renew`]).
    pub resend_with_new_producer: bool,
    /// A `transactional.id` and the application's transactions (`producer_txn.rs`).
    pub transactions: Option<TxnSettings>,
}

impl ProducerSettings {
    /// Kafka's defaults for `topic` on `brokers`.
    pub fn new(topic: &str, brokers: Vec<String>) -> ProducerSettings {
        ProducerSettings {
            topic: topic.to_string(),
            brokers,
            producer: ProducerConfig::default(),
            connect_timeout_ms: 10_000,
            metadata_max_age_ms: 300_000,
            reconnect_backoff_ms: 50,
            publish_interval_ms: 1,
            start_ms: 0,
            resend_with_new_producer: false,
            transactions: None,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.producer.validate()?;
        if self.transactions.is_some() != self.producer.transactional {
            return Err(ConfigError::TransactionalWithoutIdempotence);
        }
        if self.brokers.is_empty() {
            return Err(ConfigError::Zero {
                key: "bootstrap.servers",
            });
        }
        Ok(())
    }
}

/// A producer process: publishes the source's messages until it is exhausted and every
/// record has its outcome, then exits.
pub async fn run_producer(
    env: Env,
    host: String,
    settings: ProducerSettings,
    source: Rc<Source>,
) -> turmoil::Result {
    let process = env.process(&host);
    let _running = process.start();
    run_instance(env, host, settings, Feed::Workload(source), process).await
}

/// A transformer's producer (`transformer.rs`): the same process as its poll loop, which
/// started it, writing each batch the feed hands over in a transaction of its own.
pub async fn run_transform_producer(
    env: Env,
    host: String,
    settings: ProducerSettings,
    feed: Rc<TransformFeed>,
) -> turmoil::Result {
    let process = env.process(&host);
    run_instance(env, host, settings, Feed::Transform(feed), process).await
}

async fn run_instance(
    env: Env,
    host: String,
    settings: ProducerSettings,
    feed: Feed,
    process: Process,
) -> turmoil::Result {
    let Ok(accumulator) = Accumulator::new(settings.producer.clone()) else {
        // The design validates settings before installing hosts; a process given bad ones
        // exits, as KafkaProducer's constructor throws.
        env.note(&host, "producer.bad_config");
        return Ok(());
    };
    process
        .sleep(Duration::from_millis(settings.start_ms).saturating_sub(now(&env)))
        .await;
    let mut producer = Producer::new(env, host, settings, feed, process, accumulator);
    producer.run().await;
    Ok(())
}

fn now(env: &Env) -> Duration {
    Duration::from_micros(env.now().0)
}

/// A produce request on the wire, until it is answered or its connection goes.
struct Sent {
    broker: i32,
    partitions: Vec<u32>,
    deadline_ms: u64,
}

type Answer = (RequestId, Result<Response, ConnError>);

/// Where a producer's records come from.
#[derive(Clone)]
pub(super) enum Feed {
    /// The workload's source: the producer records each message's publish.
    Workload(Rc<Source>),
    /// A transformer's batches: messages published upstream, written again to the output
    /// topic in their input partition, one transaction per batch. Their publishes are the
    /// upstream producer's; the history gets the transaction notes only.
    Transform(Rc<TransformFeed>),
}

impl Feed {
    /// The next record: its message, key and, for a transformer, its partition.
    fn take(&self) -> Option<(MsgId, Option<String>, Option<i32>)> {
        match self {
            Feed::Workload(source) => source.take().map(|(id, key)| (id, key, None)),
            Feed::Transform(feed) => feed.take().map(|(id, partition)| (id, None, Some(partition))),
        }
    }

    fn unpublished(&self) -> u64 {
        match self {
            Feed::Workload(source) => source.unpublished(),
            Feed::Transform(feed) => feed.unsent(),
        }
    }

    /// A transformer's producer runs until its process ends.
    fn endless(&self) -> bool {
        matches!(self, Feed::Transform(_))
    }

    pub(super) fn transform(&self) -> Option<&TransformFeed> {
        match self {
            Feed::Transform(feed) => Some(feed),
            Feed::Workload(_) => None,
        }
    }
}

struct Producer {
    env: Env,
    host: String,
    /// The history's producer name: one per incarnation (a restart is a new producer).
    name: String,
    settings: ProducerSettings,
    feed: Feed,
    process: Process,
    accumulator: Accumulator,
    partitioner: Partitioner,
    metadata: Option<TopicMetadata>,
    metadata_fetched_ms: u64,
    metadata_stale: bool,
    metadata_retry_at_ms: u64,
    bootstrap_next: usize,
    connections: BTreeMap<i32, Connection>,
    reconnect_at_ms: BTreeMap<i32, u64>,
    sent: BTreeMap<RequestId, Sent>,
    records: BTreeMap<RecordId, (MsgId, i32, Record)>,
    answers_tx: mpsc::Sender<Answer>,
    answers: mpsc::Receiver<Answer>,
    seq: u64,
    next_publish_ms: u64,
    /// Records whose send failed, for the application to send again through a new
    /// producer instance, in the order they failed.
    resend: Vec<(MsgId, i32, Record)>,
    /// With a `transactional.id`: the transactions (`producer_txn.rs`).
    txn: Option<TxnApp>,
}

impl Producer {
    fn new(
        env: Env,
        host: String,
        settings: ProducerSettings,
        feed: Feed,
        process: Process,
        accumulator: Accumulator,
    ) -> Producer {
        let (answers_tx, answers) = mpsc::channel(ANSWERS_MAX);
        Producer {
            name: format!("{host}@{}", process.incarnation()),
            env,
            host,
            feed,
            process,
            accumulator,
            partitioner: Partitioner::default(),
            metadata: None,
            metadata_fetched_ms: 0,
            metadata_stale: true,
            metadata_retry_at_ms: 0,
            bootstrap_next: 0,
            connections: BTreeMap::new(),
            reconnect_at_ms: BTreeMap::new(),
            sent: BTreeMap::new(),
            records: BTreeMap::new(),
            answers_tx,
            answers,
            seq: 0,
            next_publish_ms: 0,
            resend: Vec::new(),
            txn: settings.transactions.clone().map(TxnApp::new),
            settings,
        }
    }

    fn now_ms(&self) -> u64 {
        now(&self.env).as_millis() as u64
    }

    fn note(&self, name: &str) {
        self.env.note(&self.host, &format!("producer.{name}"));
    }

    async fn run(&mut self) {
        loop {
            self.process.checkpoint().await;
            if self.process.stop_requested() {
                // Kafka's close() would wait for the records in flight; their publishes stay
                // open and the run closes them as `info`.
                return;
            }
            if !self.prepared().await {
                self.process
                    .sleep(Duration::from_millis(self.settings.producer.retry_backoff_ms))
                    .await;
                continue;
            }
            if !self.txn_turn().await {
                if self.txn.as_ref().is_some_and(TxnApp::fenced) {
                    return; // another instance has the transactional id: this one closes
                }
                // Any other fatal error: the application closes this producer and builds a
                // new one with the same transactional.id (reference §2.5: "recreate").
                self.renew_transactional(self.now_ms());
                continue;
            }
            self.connect_leaders().await;
            let now_ms = self.now_ms();
            self.time_out_requests(now_ms);
            self.publish_due(now_ms);
            self.send_ready(now_ms).await;
            self.record_outcomes();
            if !self.resend.is_empty() && self.accumulator.pending_records() == 0 {
                self.renew(self.now_ms());
                continue;
            }
            let txn_idle = self.txn.as_ref().is_none_or(TxnApp::idle);
            let done = self.feed.unpublished() == 0 && self.records.is_empty() && self.resend.is_empty();
            if done && txn_idle && !self.feed.endless() {
                return;
            }
            self.wait(now_ms).await;
        }
    }

    /// Metadata (refreshed when stale or old, at most once per `retry.backoff.ms`), and a
    /// producer id if one is needed; false to back off. Stale metadata is still used while
    /// a refresh fails, so batches keep expiring at their delivery timeout, as Kafka's
    /// sender keeps running without fresh metadata.
    async fn prepared(&mut self) -> bool {
        let now_ms = self.now_ms();
        let age_ms = now_ms.saturating_sub(self.metadata_fetched_ms);
        let wanted =
            self.metadata.is_none() || self.metadata_stale || age_ms >= self.settings.metadata_max_age_ms;
        if wanted && now_ms >= self.metadata_retry_at_ms {
            let broker = self.next_bootstrap();
            let topic = self.settings.topic.clone();
            match fetch_metadata(&self.env, &self.host, &broker, &topic, self.timeouts()).await {
                Ok(metadata) => {
                    self.metadata = Some(metadata);
                    self.metadata_fetched_ms = self.now_ms();
                    self.metadata_stale = false;
                    self.sync_leaders();
                }
                Err(_) => {
                    self.note("metadata_failed");
                    self.metadata_retry_at_ms = self.now_ms() + self.settings.producer.retry_backoff_ms;
                }
            }
        }
        if self.txn.is_some() {
            // The transaction manager gets the producer id (`txn_turn`).
            return self.metadata.is_some();
        }
        if self.accumulator.needs_producer_id() && !self.init_producer_id().await {
            self.note("init_producer_id_failed");
            return false;
        }
        self.metadata.is_some()
    }

    fn next_bootstrap(&mut self) -> String {
        let broker = self.settings.brokers[self.bootstrap_next % self.settings.brokers.len()].clone();
        self.bootstrap_next = self.bootstrap_next.wrapping_add(1);
        broker
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: Duration::from_millis(self.settings.connect_timeout_ms),
            request: Duration::from_millis(self.settings.producer.request_timeout_ms),
        }
    }

    /// InitProducerId from the next bootstrap broker (no transactional id: Kafka's
    /// idempotent producer, `TransactionManager.initializeTransactions`).
    async fn init_producer_id(&mut self) -> bool {
        let broker = self.next_bootstrap();
        let timeouts = self.timeouts();
        let Ok(mut connection) =
            Connection::open(&self.env, &self.host, &broker, timeouts.connect, timeouts.request).await
        else {
            return false;
        };
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(i32::MAX)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        match connection.request(&Request::InitProducerId(request)).await {
            Ok(Response::InitProducerId(answer))
                if answer.error_code == 0 && answer.producer_id.0 >= 0 && answer.producer_epoch >= 0 =>
            {
                self.accumulator
                    .set_producer_id(answer.producer_id.0, answer.producer_epoch);
                true
            }
            _ => false,
        }
    }

    /// Tells the accumulator each partition's leader, if there is a connection to it.
    fn sync_leaders(&mut self) {
        let Some(metadata) = &self.metadata else {
            return;
        };
        for (partition, leader) in &metadata.leaders {
            let ready = leader.filter(|b| self.connections.get(b).is_some_and(Connection::is_open));
            self.accumulator
                .set_leader(u32::try_from(*partition).expect("dense from 0"), ready);
        }
    }

    /// Opens a connection to every leader without one, after the reconnect backoff.
    async fn connect_leaders(&mut self) {
        let Some(metadata) = self.metadata.clone() else {
            return;
        };
        let closed: Vec<i32> = self
            .connections
            .iter()
            .filter(|(_, c)| !c.is_open())
            .map(|(b, _)| *b)
            .collect();
        for broker in closed {
            self.drop_connection(broker, self.now_ms());
        }
        let leaders: BTreeSet<i32> = metadata.leaders.values().flatten().copied().collect();
        for broker in leaders {
            let due = self
                .reconnect_at_ms
                .get(&broker)
                .is_none_or(|t| *t <= self.now_ms());
            if self.connections.contains_key(&broker) || !due {
                continue;
            }
            let Some(host) = metadata.brokers.get(&broker) else {
                self.metadata_stale = true;
                continue;
            };
            let timeouts = self.timeouts();
            match Connection::open(&self.env, &self.host, host, timeouts.connect, timeouts.request).await {
                Ok(connection) => {
                    self.connections.insert(broker, connection);
                }
                Err(error) => {
                    self.note(conn_error_note(&error));
                    self.reconnect_at_ms
                        .insert(broker, self.now_ms() + self.settings.reconnect_backoff_ms);
                    self.metadata_stale = true;
                }
            }
        }
        self.sync_leaders();
    }

    /// Closes the connection to `broker`: its requests in flight fail with
    /// NETWORK_EXCEPTION, its partitions wait for a new connection, and metadata is asked
    /// for again (Kafka `NetworkClient.processDisconnection` requests an update).
    fn drop_connection(&mut self, broker: i32, now_ms: u64) {
        self.connections.remove(&broker);
        self.sent.retain(|_, s| s.broker != broker);
        self.accumulator.on_disconnect(broker, now_ms);
        self.reconnect_at_ms
            .insert(broker, now_ms + self.settings.reconnect_backoff_ms);
        self.metadata_stale = true;
        self.sync_leaders();
    }

    /// A request unanswered after `request.timeout.ms` closes its connection.
    fn time_out_requests(&mut self, now_ms: u64) {
        let late: BTreeSet<i32> = self
            .sent
            .values()
            .filter(|s| s.deadline_ms <= now_ms)
            .map(|s| s.broker)
            .collect();
        for broker in late {
            self.note("request_timed_out");
            self.drop_connection(broker, now_ms);
        }
    }

    /// The workload's `send()` calls that are due, while the buffer has room.
    fn publish_due(&mut self, now_ms: u64) {
        let Some(partitions) = self.metadata.as_ref().map(TopicMetadata::partitions) else {
            return;
        };
        if !self.resend.is_empty() {
            return; // the application is handling a failed send first
        }
        while now_ms >= self.next_publish_ms && self.accumulator.pending_records() < PENDING_RECORDS_MAX {
            if self.txn.as_ref().is_some_and(|t| !t.may_send()) {
                return;
            }
            let Some((id, key, given)) = self.feed.take() else {
                return;
            };
            self.seq += 1;
            if given.is_none() {
                self.env.record(
                    &self.host,
                    EventKind::Publish {
                        id,
                        producer: self.name.as_str().into(),
                        seq: self.seq,
                        key: key.clone(),
                    },
                );
            }
            let key = key.map(String::into_bytes);
            let partition = match given {
                // The input partition, which the output topic also has.
                Some(p) => u32::try_from(p).expect("partitions count from 0") % partitions as u32,
                None => self.partitioner.partition(key.as_deref(), partitions as u32),
            };
            let record = Record {
                key,
                value: Some(encode_value(id)),
            };
            let record_id = self.accumulator.append(partition, record.clone(), now_ms);
            self.records.insert(record_id, (id, partition as i32, record));
            if self.txn.is_some() {
                self.txn_sent(record_id, id, partition as i32);
            }
            self.next_publish_ms = now_ms + self.settings.publish_interval_ms;
            if self.settings.publish_interval_ms > 0 {
                return;
            }
        }
    }

    /// One turn of the sender: the accumulator's plans, as produce requests.
    async fn send_ready(&mut self, now_ms: u64) {
        for plan in self.accumulator.ready(now_ms) {
            let partitions: Vec<u32> = plan.batches.iter().map(|(p, _)| *p).collect();
            let request = self.produce_request(&plan.batches, now_ms);
            let sent = Sent {
                broker: plan.broker,
                partitions,
                deadline_ms: now_ms + self.settings.producer.request_timeout_ms,
            };
            // The accumulator drains only to leaders with a connection (`sync_leaders`).
            let sending = match self.connections.get_mut(&plan.broker) {
                Some(connection) => connection.send(&request).await,
                None => Err(ConnError::Closed),
            };
            match sending {
                Ok(Some(answer)) => {
                    self.sent.insert(plan.request_id, sent);
                    let (tx, request_id) = (self.answers_tx.clone(), plan.request_id);
                    tokio::task::spawn_local(async move {
                        let result = answer.await.unwrap_or(Err(ConnError::Closed));
                        let _ = tx.send((request_id, result)).await;
                    });
                }
                Ok(None) => {} // acks=0: done when sent
                Err(error) => {
                    self.note(conn_error_note(&error));
                    self.drop_connection(plan.broker, now_ms);
                }
            }
        }
    }

    fn produce_request(&self, batches: &[(u32, super::batch::Batch)], now_ms: u64) -> Request {
        let partition_data = batches
            .iter()
            .map(|(partition, batch)| {
                produce_request::PartitionProduceData::default()
                    .with_index(*partition as i32)
                    .with_records(Some(encode_batch(batch, now_ms as i64)))
            })
            .collect();
        let topic = produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(self.settings.topic.clone())))
            .with_partition_data(partition_data);
        let timeout_ms = i32::try_from(self.settings.producer.request_timeout_ms).unwrap_or(i32::MAX);
        Request::Produce(
            ProduceRequest::default()
                .with_acks(self.settings.producer.acks)
                .with_timeout_ms(timeout_ms)
                .with_topic_data(vec![topic]),
        )
    }

    /// Sleeps until the next thing to do, or an answer comes.
    async fn wait(&mut self, now_ms: u64) {
        let publishing = self.feed.unpublished() > 0
            && self.metadata.is_some()
            && self.accumulator.pending_records() < PENDING_RECORDS_MAX;
        let wakeups = [
            self.accumulator.next_wakeup_ms(now_ms),
            publishing.then_some(self.next_publish_ms),
            self.sent.values().map(|s| s.deadline_ms).min(),
            Some(self.metadata_fetched_ms + self.settings.metadata_max_age_ms),
            Some(self.metadata_retry_at_ms),
            self.reconnect_at_ms
                .values()
                .copied()
                .filter(|t| *t > now_ms)
                .min(),
            Some(now_ms + IDLE_MS_MAX),
            self.txn_wakeup_ms(now_ms),
        ];
        // Only what lies ahead: a metadata refresh or retry that is due already is tried at
        // the top of the loop, not spun on here.
        let until_ms = wakeups
            .into_iter()
            .flatten()
            .filter(|t| *t > now_ms)
            .min()
            .expect("the idle bound is ahead");
        let sleep = tokio::time::sleep(Duration::from_millis(until_ms - now_ms));
        let feed = self.feed.clone();
        let batch = async {
            match feed.transform() {
                Some(feed) if !feed.open() => feed.batch_came().await,
                _ => std::future::pending().await,
            }
        };
        let answer = tokio::select! {
            answer = self.answers.recv() => answer,
            _ = sleep => None,
            _ = self.process.stopping() => None,
            _ = batch => None,
        };
        if let Some((request_id, result)) = answer {
            self.on_answer(request_id, result);
        }
    }

    fn on_answer(&mut self, request_id: RequestId, result: Result<Response, ConnError>) {
        let now_ms = self.now_ms();
        let Some(sent) = self.sent.remove(&request_id) else {
            return; // its connection was closed since: the accumulator has settled it
        };
        match result {
            Ok(Response::Produce(answer)) => {
                let results = self.partition_results(&answer, &sent.partitions);
                let stale = results
                    .iter()
                    .any(|(_, r)| r.is_err_and(|e| is_stale_metadata(e.code())));
                if stale {
                    self.note("stale_metadata");
                    self.metadata_stale = true;
                }
                self.accumulator.on_response(request_id, &results, now_ms);
            }
            // The accumulator still has the request: closing its connection settles it.
            Ok(other) => {
                tracing::debug!(host = self.host, api = ?other.api_key(), "not a produce answer");
                self.note("garbled_answer");
                self.drop_connection(sent.broker, now_ms);
            }
            Err(error) => {
                self.note(conn_error_note(&error));
                self.drop_connection(sent.broker, now_ms);
            }
        }
    }

    /// The answer for each partition the request carried. A partition the broker left out
    /// is taken as a lost answer (NETWORK_EXCEPTION: retried, and it may have been appended).
    fn partition_results(
        &self,
        answer: &kafka_protocol::messages::ProduceResponse,
        partitions: &[u32],
    ) -> Vec<(u32, PartitionResult)> {
        let ours = answer
            .responses
            .iter()
            .filter(|t| t.name.0.as_str() == self.settings.topic)
            .flat_map(|t| t.partition_responses.iter());
        let mut found: BTreeMap<u32, PartitionResult> = BTreeMap::new();
        for p in ours {
            let Ok(index) = u32::try_from(p.index) else {
                continue;
            };
            let result = match p.error_code {
                0 => Ok(p.base_offset),
                code => Err(KafkaError::from_code(code).unwrap_or(KafkaError::UnknownServerError)),
            };
            found.entry(index).or_insert(result);
        }
        partitions
            .iter()
            .map(|p| {
                (
                    *p,
                    found.get(p).copied().unwrap_or(Err(KafkaError::NetworkException)),
                )
            })
            .collect()
    }

    /// A new transactional producer instance: the old one's connections, batches and
    /// transaction manager go; the new one starts with FindCoordinator and InitProducerId.
    fn renew_transactional(&mut self, now_ms: u64) {
        self.drop_instance(now_ms);
        // Records of the old instance's open transaction were settled `info` already.
        self.records.clear();
        let old = self.txn.take().expect("transactional");
        self.txn = Some(TxnApp::after(old));
        self.env.note(&self.host, "producer.txn_new_instance");
    }

    /// Closes this producer instance: its connections, in-flight requests and batches go.
    /// Answers to the old instance's requests go nowhere: its channel goes with it.
    fn drop_instance(&mut self, now_ms: u64) {
        let brokers: Vec<i32> = self.connections.keys().copied().collect();
        for broker in brokers {
            self.drop_connection(broker, now_ms);
        }
        self.reconnect_at_ms.clear();
        self.sent.clear();
        let (answers_tx, answers) = mpsc::channel(ANSWERS_MAX);
        (self.answers_tx, self.answers) = (answers_tx, answers);
        self.accumulator =
            Accumulator::new(self.settings.producer.clone()).expect("validated when the process started");
    }

    /// The application's resend after a failed `send()` (reference §2.4): it closes this
    /// producer instance once nothing is pending in it and builds a new one, which asks
    /// InitProducerId for a new producer id, then sends the failed records again first.
    /// The leader's duplicate check is per producer id, so a record the old instance did
    /// write (its answer lost, its delivery timeout passed) is appended a second time.
    fn renew(&mut self, now_ms: u64) {
        self.drop_instance(now_ms);
        self.env.note_with(
            &self.host,
            "producer.new_instance",
            format!("resending {} record(s)", self.resend.len()),
        );
        for (id, partition, record) in std::mem::take(&mut self.resend) {
            let partition_index = u32::try_from(partition).expect("partitions count from 0");
            let record_id = self.accumulator.append(partition_index, record.clone(), now_ms);
            self.records.insert(record_id, (id, partition, record));
        }
    }

    fn record_outcomes(&mut self) {
        for (record_id, outcome) in self.accumulator.poll_outcomes() {
            let (id, partition, record) = self
                .records
                .remove(&record_id)
                .expect("every record appended is known");
            if self.txn_outcome(record_id, outcome) {
                continue; // settled when its transaction ends
            }
            if self.settings.resend_with_new_producer && !matches!(outcome, Outcome::Acked { .. }) {
                self.note("send_failed_application_resends");
                self.resend.push((id, partition, record));
                continue;
            }
            let kind = match outcome {
                Outcome::Acked { offset } => EventKind::PublishOk {
                    id,
                    partition: Some(partition_name(&self.settings.topic, partition).into()),
                    offset,
                },
                Outcome::Failed { reason } => EventKind::PublishFail {
                    id,
                    error: format!("{reason:?}"),
                },
                Outcome::Unknown { reason } => EventKind::PublishInfo {
                    id,
                    reason: format!("{reason:?}"),
                },
            };
            self.env.record(&self.host, kind);
        }
    }
}

#[path = "producer_txn.rs"]
mod txn;
use txn::TxnApp;
pub use txn::{TxnSettings, TXN_AFTER_UNANSWERED_END_TXN, TXN_AFTER_UNANSWERED_PRODUCE};
