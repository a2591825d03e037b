//! The Java consumer as a simulated process, part 1: partitions assigned by the design
//! (`assign()`, no consumer group), positions in memory only (reference §2.6).
//!
//! Every position starts at the log's start (`auto.offset.reset=earliest`, Jepsen's safe
//! mode; our logs start at 0). The consumer fetches each assigned partition from its leader
//! (from Metadata, asked again on NOT_LEADER_OR_FOLLOWER and the like, on a disconnect and
//! every `metadata.max.age.ms`), records each record it reads as a `Deliver` at its offset,
//! processes it, and moves its position past it: the position moving is its acknowledgement,
//! as nothing is committed. A restarted process has lost its positions and reads the whole
//! log again; the history shows those reads as redeliveries. A user's handler (issue 13)
//! that answers requeue or fails gets a Java application's `seek()` back to its record, so
//! the next poll reads it again.
//!
//! With a consumer group (`subscribe()`, part 2) the partitions come from the group, the
//! positions from its committed offsets, and the application commits by its strategy: all of
//! that is the child module `consumer_group.rs`.

use super::batch::Batch;
use super::client::{
    conn_error_note, fetch_metadata, is_stale_metadata, partition_name, Timeouts, TopicMetadata,
};
use super::connection::Connection;
use super::error::KafkaError;
use super::read_committed::{aborted_from_wire, deliverable, IsolationLevel};
use super::wire::{Request, Response};
use super::wire_records::decode_fetched_batches;
use crate::db::sink::{DbConsumer, DbSink, Handled};
use crate::source::decode_value;
use kafka_protocol::messages::{fetch_request, fetch_response, BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use sim::history::{EventKind, MsgId};
use sim::{Env, Process};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

#[path = "consumer_group.rs"]
mod group;
use group::{user_record, GroupState, Polled};
pub use group::{
    CommitStrategy, GroupSettings, OffsetReset, Transform, TRANSFORMER_SEEK_TO_COMMITTED,
    WORKER_DROPPED_FAILED_RECORD, WORKER_QUEUE_MAX,
};
pub use group::{USER_ERROR_SEEK_BACK, USER_REQUEUE_SEEK_BACK};

/// Partitions one consumer may be assigned.
pub const ASSIGNED_PARTITIONS_MAX: usize = 1024;

/// One consumer process's settings (Kafka's names, Kafka's defaults in [`ConsumerSettings::new`]).
#[derive(Clone, Debug)]
pub struct ConsumerSettings {
    pub topic: String,
    /// `bootstrap.servers`: hosts asked for metadata, in turn.
    pub brokers: Vec<String>,
    /// The partitions given to `assign()`.
    pub partitions: Vec<i32>,
    /// `fetch.max.wait.ms` (500).
    pub fetch_max_wait_ms: u64,
    /// `fetch.min.bytes` (1).
    pub fetch_min_bytes: i32,
    /// `fetch.max.bytes` (52428800).
    pub fetch_max_bytes: i32,
    /// `max.partition.fetch.bytes` (1048576).
    pub max_partition_fetch_bytes: i32,
    /// The application's work per record.
    pub processing_ms: u64,
    /// `socket.connection.setup.timeout.ms` (10000).
    pub connect_timeout_ms: u64,
    /// `request.timeout.ms` (30000).
    pub request_timeout_ms: u64,
    /// `retry.backoff.ms` (100).
    pub retry_backoff_ms: u64,
    /// `metadata.max.age.ms` (300000).
    pub metadata_max_age_ms: u64,
    /// Where the design reads the positions from (to end its drain), if it wants them.
    pub progress: Option<ConsumerProgress>,
    /// `isolation.level` (read_uncommitted).
    pub isolation: IsolationLevel,
    /// The consumer group to `subscribe()` in; `None`: `assign()` of `partitions`.
    pub group: Option<GroupSettings>,
}

impl ConsumerSettings {
    pub fn new(topic: &str, brokers: Vec<String>, partitions: Vec<i32>) -> ConsumerSettings {
        ConsumerSettings {
            topic: topic.to_string(),
            brokers,
            partitions,
            fetch_max_wait_ms: 500,
            fetch_min_bytes: 1,
            fetch_max_bytes: 52_428_800,
            max_partition_fetch_bytes: 1_048_576,
            processing_ms: 0,
            connect_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            retry_backoff_ms: 100,
            metadata_max_age_ms: 300_000,
            progress: None,
            isolation: IsolationLevel::ReadUncommitted,
            group: None,
        }
    }
}

/// The consumer's positions as the design sees them: the next offset it will read, per
/// assigned partition. A process that dies takes its positions with it; the next one starts
/// again from the log's start and says so here.
/// With the auto strategy it also counts, per consumer host, the records handed to its
/// worker and not yet processed: a group's positions can run ahead of its work (a member
/// given a partition starts from a committed offset its worker has not reached), so the
/// run is not drained while a worker still holds records.
#[derive(Clone, Debug, Default)]
pub struct ConsumerProgress(
    Rc<RefCell<BTreeMap<i32, i64>>>,
    Rc<RefCell<BTreeMap<String, usize>>>,
);

impl ConsumerProgress {
    pub fn positions(&self) -> BTreeMap<i32, i64> {
        self.0.borrow().clone()
    }

    /// The first consumer whose worker holds unprocessed records, with how many.
    pub fn in_workers(&self) -> Option<(String, usize)> {
        self.1
            .borrow()
            .iter()
            .find(|(_, n)| **n > 0)
            .map(|(h, n)| (h.clone(), *n))
    }

    /// A worker starts empty: its process's queue died with the process before it.
    fn worker_started(&self, host: &str) {
        self.1.borrow_mut().insert(host.to_string(), 0);
    }

    fn handed_to_worker(&self, host: &str) {
        *self.1.borrow_mut().entry(host.to_string()).or_default() += 1;
    }

    fn worker_done(&self, host: &str) {
        if let Some(n) = self.1.borrow_mut().get_mut(host) {
            *n = n.saturating_sub(1);
        }
    }

    fn set(&self, partition: i32, position: i64) {
        self.0.borrow_mut().insert(partition, position);
    }

    /// A group's progress, shared by its members: the furthest any member processed (or
    /// started from) in each partition. A partition changes hands, so it only moves forward.
    fn advance(&self, partition: i32, position: i64) {
        let mut positions = self.0.borrow_mut();
        let at = positions.entry(partition).or_insert(position);
        *at = (*at).max(position);
    }
}

/// A consumer process: fetches its partitions for ever, until a stop request.
pub async fn run_consumer(
    env: Env,
    host: String,
    settings: ConsumerSettings,
    handler: Option<DbSink>,
) -> turmoil::Result {
    let process = env.process(&host);
    let _running = process.start();
    let mut partitions = settings.partitions.clone();
    partitions.sort_unstable();
    partitions.dedup();
    partitions.truncate(ASSIGNED_PARTITIONS_MAX);
    let in_group = settings.group.is_some();
    // A group member owns nothing until the group assigns it partitions.
    let positions: BTreeMap<i32, i64> = if in_group {
        BTreeMap::new()
    } else {
        partitions.iter().map(|p| (*p, 0)).collect()
    };
    if let Some(progress) = settings.progress.as_ref().filter(|_| !in_group) {
        progress.0.replace(positions.clone());
    }
    let group = settings.group.clone().map(|group| {
        let timeouts = Timeouts {
            connect: Duration::from_millis(settings.connect_timeout_ms),
            request: Duration::from_millis(settings.request_timeout_ms),
        };
        let worker = settings
            .progress
            .clone()
            .map(|progress| (progress, settings.processing_ms));
        GroupState::start(&env, &host, group, settings.brokers.clone(), timeouts, worker)
    });
    let mut consumer = Consumer {
        group,
        db: handler.as_ref().map(DbSink::consumer),
        env,
        host,
        settings,
        process,
        positions,
        metadata: None,
        metadata_fetched_ms: 0,
        metadata_stale: true,
        bootstrap_next: 0,
        connections: BTreeMap::new(),
        stalled: BTreeMap::new(),
    };
    consumer.run().await;
    Ok(())
}

struct Consumer {
    group: Option<GroupState>,
    env: Env,
    host: String,
    settings: ConsumerSettings,
    process: Process,
    db: Option<DbConsumer>,
    positions: BTreeMap<i32, i64>,
    metadata: Option<TopicMetadata>,
    metadata_fetched_ms: u64,
    metadata_stale: bool,
    bootstrap_next: usize,
    connections: BTreeMap<i32, Connection>,
    /// read_committed: the partitions held at their last stable offset by an open
    /// transaction, with that offset, for the timeline's notes.
    stalled: BTreeMap<i32, i64>,
}

impl Consumer {
    fn now_ms(&self) -> u64 {
        self.env.now().0 / 1_000
    }

    fn note(&self, name: &str) {
        self.env.note(&self.host, &format!("consumer.{name}"));
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: Duration::from_millis(self.settings.connect_timeout_ms),
            request: Duration::from_millis(self.settings.request_timeout_ms),
        }
    }

    async fn run(&mut self) {
        loop {
            self.process.checkpoint().await;
            if self.process.stop_requested() || self.group.as_ref().is_some_and(|g| g.closed) {
                return;
            }
            let group_ready = self.group.is_none() || self.group_poll().await;
            if !group_ready || !self.refresh_metadata().await {
                self.process
                    .sleep(Duration::from_millis(self.settings.retry_backoff_ms))
                    .await;
                continue;
            }
            let started_ms = self.now_ms();
            let mut read = 0;
            for (broker, partitions) in self.by_leader() {
                read += self.fetch_from(broker, &partitions).await;
            }
            // Our brokers may answer an empty fetch at once; a Java consumer's fetch would
            // have waited up to fetch.max.wait.ms there, so the rest is waited out here.
            let waited_ms = self.now_ms().saturating_sub(started_ms);
            if read == 0 {
                let rest_ms = self.settings.fetch_max_wait_ms.saturating_sub(waited_ms).max(1);
                self.process.sleep(Duration::from_millis(rest_ms)).await;
            }
        }
    }

    /// Metadata, if it is missing, stale or old; false to back off.
    async fn refresh_metadata(&mut self) -> bool {
        let age_ms = self.now_ms().saturating_sub(self.metadata_fetched_ms);
        if self.metadata.is_some() && !self.metadata_stale && age_ms < self.settings.metadata_max_age_ms {
            return true;
        }
        let brokers = &self.settings.brokers;
        let broker = brokers[self.bootstrap_next % brokers.len()].clone();
        self.bootstrap_next = self.bootstrap_next.wrapping_add(1);
        match fetch_metadata(
            &self.env,
            &self.host,
            &broker,
            &self.settings.topic,
            self.timeouts(),
        )
        .await
        {
            Ok(metadata) => {
                self.metadata = Some(metadata);
                self.metadata_fetched_ms = self.now_ms();
                self.metadata_stale = false;
                true
            }
            Err(_) => {
                self.note("metadata_failed");
                false
            }
        }
    }

    /// The assigned partitions grouped by their leader; a partition without a known leader
    /// waits for new metadata.
    fn by_leader(&mut self) -> BTreeMap<i32, Vec<i32>> {
        let mut grouped: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        let Some(metadata) = &self.metadata else {
            return grouped;
        };
        let mut leaderless = false;
        for partition in self.positions.keys() {
            match metadata.leaders.get(partition).copied().flatten() {
                Some(leader) if metadata.brokers.contains_key(&leader) => {
                    grouped.entry(leader).or_default().push(*partition)
                }
                _ => leaderless = true,
            }
        }
        if leaderless {
            self.metadata_stale = true;
        }
        grouped
    }

    /// One fetch from `broker` for `partitions` at their positions; the records read.
    async fn fetch_from(&mut self, broker: i32, partitions: &[i32]) -> usize {
        let Some(host) = self
            .metadata
            .as_ref()
            .and_then(|m| m.brokers.get(&broker))
            .cloned()
        else {
            return 0;
        };
        if !self.connections.get(&broker).is_some_and(Connection::is_open) {
            let timeouts = self.timeouts();
            match Connection::open(&self.env, &self.host, &host, timeouts.connect, timeouts.request).await {
                Ok(connection) => self.connections.insert(broker, connection),
                Err(error) => {
                    self.note(conn_error_note(&error));
                    self.metadata_stale = true;
                    return 0;
                }
            };
        }
        let request = self.fetch_request(partitions);
        let connection = self.connections.get_mut(&broker).expect("opened above");
        let answer = match connection.request(&request).await {
            Ok(Response::Fetch(answer)) => answer,
            Ok(_) | Err(_) => {
                self.note("fetch_failed");
                self.connections.remove(&broker);
                self.metadata_stale = true;
                return 0;
            }
        };
        let mut read = 0;
        let topic_name = self.settings.topic.clone();
        let mut polled = Vec::new();
        for topic in answer
            .responses
            .iter()
            .filter(|t| t.topic.0.as_str() == topic_name)
        {
            for data in &topic.partitions {
                if !partitions.contains(&data.partition_index) {
                    continue;
                }
                if self.group.is_some() {
                    polled.extend(self.poll_partition(data));
                } else {
                    read += self.take_partition(data, &host).await;
                }
            }
        }
        read += polled.len();
        if self.group.is_some() {
            self.handle_polled(polled, &host).await;
        }
        read
    }

    /// One partition's part of a fetch answer for a group member: its records at or past the
    /// position, which poll returns, or its error acted on.
    fn poll_partition(&mut self, data: &fetch_response::PartitionData) -> Vec<Polled> {
        let partition = data.partition_index;
        let Some(position) = self.positions.get(&partition).copied() else {
            return Vec::new();
        };
        if data.error_code == KafkaError::OffsetOutOfRange.code() {
            // auto.offset.reset: the member asks again where to start.
            self.note("offset_reset");
            self.positions.remove(&partition);
            if let Some(group) = self.group.as_mut() {
                group.reset(partition);
            }
            return Vec::new();
        }
        if data.error_code != 0 {
            if is_stale_metadata(data.error_code) {
                self.metadata_stale = true;
            }
            self.note("fetch_error");
            return Vec::new();
        }
        self.watch_stable_offset(data);
        let Some(batches) = data.records.as_ref().map(decode_fetched_batches) else {
            return Vec::new();
        };
        let Ok(batches) = batches else {
            self.note("corrupt_batch");
            return Vec::new();
        };
        // By `isolation.level`, as the Java fetcher hands records to poll.
        let Some(records) = self.isolated(data, &batches, partition) else {
            return Vec::new();
        };
        let mut polled = Vec::new();
        for (offset, record) in records {
            match record.value.as_deref().and_then(decode_value) {
                Some(id) => polled.push(Polled {
                    id,
                    partition,
                    offset,
                }),
                None => self.note("bad_value"),
            }
        }
        // A fetch of markers and aborted batches only: past them, as the Java fetcher moves
        // on (with records, the next fetch comes back to what follows them).
        let end = batches.last().map_or(0, Batch::next_offset);
        if polled.is_empty() && end > position {
            self.positions.insert(partition, end);
            if let Some(progress) = &self.settings.progress {
                progress.advance(partition, end);
            }
        }
        polled
    }

    fn fetch_request(&self, partitions: &[i32]) -> Request {
        let wanted = partitions
            .iter()
            .map(|p| {
                fetch_request::FetchPartition::default()
                    .with_partition(*p)
                    .with_fetch_offset(self.positions[p])
                    .with_partition_max_bytes(self.settings.max_partition_fetch_bytes)
                    .with_current_leader_epoch(-1)
                    .with_last_fetched_epoch(-1)
                    .with_log_start_offset(-1)
            })
            .collect();
        let topic = fetch_request::FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(self.settings.topic.clone())))
            .with_partitions(wanted);
        // No fetch session (epoch -1, FINAL_EPOCH): every fetch names all its partitions.
        Request::Fetch(
            FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(i32::try_from(self.settings.fetch_max_wait_ms).unwrap_or(i32::MAX))
                .with_min_bytes(self.settings.fetch_min_bytes)
                .with_max_bytes(self.settings.fetch_max_bytes)
                .with_isolation_level(self.settings.isolation.wire())
                .with_session_id(0)
                .with_session_epoch(-1)
                .with_topics(vec![topic]),
        )
    }

    /// One partition's part of a fetch answer: its records delivered and processed in
    /// offset order, or its error acted on. Returns the records read.
    async fn take_partition(&mut self, data: &fetch_response::PartitionData, leader: &str) -> usize {
        let partition = data.partition_index;
        if data.error_code == KafkaError::OffsetOutOfRange.code() {
            // auto.offset.reset=earliest: back to the log's start, which is 0 here (our logs
            // are never cleaned; Kafka would ask ListOffsets for it).
            self.note("offset_reset");
            self.set_position(partition, 0);
            return 0;
        }
        if data.error_code != 0 {
            if is_stale_metadata(data.error_code) {
                self.metadata_stale = true;
            }
            self.note("fetch_error");
            return 0;
        }
        self.watch_stable_offset(data);
        let Some(bytes) = data.records.as_ref() else {
            return 0;
        };
        let batches = match decode_fetched_batches(bytes) {
            Ok(batches) => batches,
            Err(_) => {
                // Kafka's consumer raises CorruptRecordException to the application, which
                // polls again at the same position.
                self.note("corrupt_batch");
                return 0;
            }
        };
        let Some(records) = self.isolated(data, &batches, partition) else {
            return 0;
        };
        let mut read = 0;
        for (offset, record) in records {
            read += 1;
            let handled = match record.value.as_deref().and_then(decode_value) {
                Some(id) => self.deliver(id, partition, offset, leader).await,
                None => {
                    self.note("bad_value");
                    Handled::Acked
                }
            };
            if handled == Handled::Failed {
                // The user's handler did not ack: seek back to the record (the position
                // stays on it), and the rest of this fetch is not handed out.
                self.set_position(partition, offset);
                return read;
            }
            self.set_position(partition, offset + 1);
        }
        // Past the markers and aborted batches skipped, as the Java fetcher moves on.
        let end = batches.last().map_or(0, Batch::next_offset);
        if end > self.positions[&partition] {
            self.set_position(partition, end);
        }
        read
    }

    /// The records the application gets by `isolation.level`, from the position on (a fetch
    /// returns whole batches: records before the position were read). `None` for an answer
    /// whose aborted-transaction list we cannot take.
    fn isolated(
        &self,
        data: &fetch_response::PartitionData,
        batches: &[Batch],
        partition: i32,
    ) -> Option<Vec<(i64, super::batch::Record)>> {
        let aborted = match aborted_from_wire(data) {
            Ok(aborted) => aborted,
            Err(_) => {
                self.note("bad_aborted_transactions");
                return None;
            }
        };
        let position = self.positions[&partition];
        Some(deliverable(self.settings.isolation, batches, &aborted, position))
    }

    /// read_committed reads stop at the last stable offset: a note when the position
    /// reaches it below the high watermark (an open transaction holds the reader), and when
    /// it moves on (reference §2.5: "a hanging transaction blocks them").
    fn watch_stable_offset(&mut self, data: &fetch_response::PartitionData) {
        if self.settings.isolation != IsolationLevel::ReadCommitted || data.last_stable_offset < 0 {
            return;
        }
        let partition = data.partition_index;
        let at = self.positions.get(&partition).copied().unwrap_or(0);
        let held = data.last_stable_offset < data.high_watermark && at >= data.last_stable_offset;
        let detail = format!(
            "{} lso {} hw {}",
            partition_name(&self.settings.topic, partition),
            data.last_stable_offset,
            data.high_watermark
        );
        match (held, self.stalled.get(&partition).copied()) {
            (true, Some(lso)) if lso == data.last_stable_offset => {}
            (true, _) => {
                self.stalled.insert(partition, data.last_stable_offset);
                self.env
                    .note_with(&self.host, "consumer.read_committed_held_at_lso", detail);
            }
            (false, Some(_)) => {
                self.stalled.remove(&partition);
                self.env
                    .note_with(&self.host, "consumer.read_committed_lso_advanced", detail);
            }
            (false, None) => {}
        }
    }

    fn set_position(&mut self, partition: i32, position: i64) {
        self.positions.insert(partition, position);
        if let Some(progress) = &self.settings.progress {
            progress.set(partition, position);
        }
    }

    /// One record to the application: recorded as delivered, then processed (through the
    /// database sink when there is one). `Failed` only when a user's handler did not ack.
    async fn deliver(&mut self, id: MsgId, partition: i32, offset: i64, leader: &str) -> Handled {
        self.process.checkpoint().await;
        self.env.record(
            &self.host,
            EventKind::Deliver {
                id,
                attempt: 1,
                consumer: self.host.as_str().into(),
                partition: Some(partition_name(&self.settings.topic, partition).into()),
                node: Some(leader.into()),
                offset: Some(offset),
            },
        );
        self.process
            .sleep(Duration::from_millis(self.settings.processing_ms))
            .await;
        let (env, host) = (&self.env, self.host.as_str());
        let ack = || {
            env.record(
                host,
                EventKind::Ack {
                    id,
                    consumer: host.into(),
                },
            )
        };
        match self.db.as_mut() {
            Some(db) if db.runs_user() => user_record(env, host, &self.process, db, id, ack).await,
            Some(db) => {
                // The position moves on whatever the transaction came to: part 1 has no
                // commit to hold back (reference §2.6).
                db.handle(env, host, id.0, &self.process, ack).await;
                Handled::Acked
            }
            None => {
                env.record(
                    host,
                    EventKind::Effect {
                        id,
                        consumer: host.into(),
                    },
                );
                ack();
                Handled::Acked
            }
        }
    }
}
