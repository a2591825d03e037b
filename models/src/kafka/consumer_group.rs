//! The consumer's group side (`subscribe()`, reference §2.6): the driver of the
//! [`GroupMember`] core on turmoil, and what the application does with the records each poll
//! returns under its commit strategy.
//!
//! The poll loop joins (FindCoordinator, JoinGroup, SyncGroup), seeks each assigned partition
//! to the group's committed offset (OffsetFetch; without one, `auto.offset.reset`) or, with
//! offsets kept in the database, to the database's stored position, then fetches. A
//! heartbeat task beside it heartbeats on a connection of its own, and leaves the group when
//! poll was not called for `max.poll.interval.ms`: a slow handler keeps its membership, a
//! paused process (SIGSTOP stops every task) does not.
//!
//! The strategies ([`CommitStrategy`]): `auto` hands each record to a worker task and commits
//! the positions of the records poll returned every `auto.commit.interval.ms` (the documented
//! way to lose records: they are committed before the worker processes them);
//! `before_process` commits a poll's records, then processes them; `after_process` processes
//! them, then commits; `db` commits nothing to Kafka and keeps each partition's next offset in
//! the database, in the transaction of the effect. Before a rebalance the member commits what
//! it consumed (auto, as `onJoinPrepare` does) or processed (the sync strategies, as an
//! `onPartitionsRevoked` that commits), then gives up its partitions.
//!
//! The history gets each deliver, each commit and its failure (`consumer.commit` with the
//! generation and offsets, `consumer.commit_failed` for CommitFailedException) and each
//! assignment and revocation (`consumer.group.*`, from the core's notes).

use super::super::client::Timeouts;
use super::super::connection::Connection;
use super::super::group_member::{CommitError, GroupMember, HeartbeatStep, JoinStep, MemberConfig, Versions};
use super::super::transform_feed::{BatchOutcome, TransformFeed};
use super::super::txn_offsets::PendingOffsets;
use super::super::wire::{Request, Response};
use super::{Consumer, ConsumerProgress};
use crate::db::client::PositionMark;
use crate::db::sink::{DbConsumer, DbSink, Handled};
use crate::db::user::{Delivered, Replied};
use kafka_protocol::messages::{
    list_offsets_request, ApiKey, BrokerId, FindCoordinatorRequest, ListOffsetsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sim::history::{EventKind, MsgId};
use sim::{Env, Process};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Records handed to the auto-commit strategy's worker and not yet processed: a full queue
/// blocks the poll loop, as a bounded executor's does.
pub const WORKER_QUEUE_MAX: usize = 1024;
/// `default.api.timeout.ms`: how long a commitSync retries a retriable error.
const COMMIT_TIMEOUT_MS: u64 = 60_000;

/// When a consumer in a group commits its offsets (the `commit` key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommitStrategy {
    /// `enable.auto.commit` (Kafka's default): every `auto.commit.interval.ms`, inside poll,
    /// the positions of the records poll returned, while a worker task processes them
    /// asynchronously. A crash loses what was committed and not yet processed.
    Auto,
    /// commitSync of a poll's records before processing them: at most once.
    BeforeProcess,
    /// commitSync after processing a poll's records: at least once (a crash in between
    /// processes them again).
    AfterProcess,
    /// No Kafka commit: each partition's next offset is stored in the database in the
    /// transaction of the effect (the database's `position` strategy), and read back on
    /// assignment (exactly-once effects).
    Db,
    /// A transformer's (`transformers`, not a `commit` value): each poll's records written
    /// to the output topic in a transaction of its producer, the offsets sent to that
    /// transaction or committed after it (`GroupSettings::transform`).
    #[serde(skip)]
    #[schemars(skip)]
    Transaction,
}

/// A transformer's note when its batch's transaction aborted and it seeks back to the
/// group's committed offsets.
pub const TRANSFORMER_SEEK_TO_COMMITTED: &str = "transformer.seek_to_committed";

/// A transformer's side of its group membership: the feed to its producer, made fresh by
/// each incarnation (`transformer.rs`), and where the offsets go.
#[derive(Clone, Debug)]
pub struct Transform {
    pub feed: Rc<TransformFeed>,
    /// `sendOffsetsToTransaction` (Kafka's exactly-once loop); false: a plain commitSync
    /// after commitTransaction returned.
    pub offsets_in_transaction: bool,
}

/// `auto.offset.reset`: where a partition without a committed offset starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OffsetReset {
    /// The log's start.
    Earliest,
    /// The log's end (Kafka's default): what is already in the log is never read.
    Latest,
}

/// A group consumer's settings.
#[derive(Clone, Debug)]
pub struct GroupSettings {
    pub member: MemberConfig,
    pub commit: CommitStrategy,
    /// `auto.commit.interval.ms` (5000).
    pub auto_commit_interval_ms: u64,
    pub auto_offset_reset: OffsetReset,
    /// The database, for the worker of the auto strategy (its own connection).
    pub sink: Option<DbSink>,
    /// With the `Transaction` strategy: the transformer's producer.
    pub transform: Option<Transform>,
}

/// One record poll returned.
#[derive(Clone, Copy, Debug)]
pub(super) struct Polled {
    pub id: MsgId,
    pub partition: i32,
    pub offset: i64,
}

/// The group side of one consumer process.
pub(super) struct GroupState {
    settings: GroupSettings,
    member: Rc<RefCell<GroupMember>>,
    coordinator: Option<Connection>,
    heartbeat: tokio::task::JoinHandle<()>,
    last_auto_commit_ms: u64,
    /// Partitions assigned whose starting position is still to be read.
    awaiting_positions: Vec<i32>,
    /// The next offset after the last record processed, per owned partition.
    processed: BTreeMap<i32, i64>,
    worker: Option<mpsc::Sender<Polled>>,
    /// A transformer whose producer was fenced: the application closes.
    pub(super) closed: bool,
}

impl GroupState {
    /// The partition's position is lost (OFFSET_OUT_OF_RANGE): read it again by
    /// `auto.offset.reset`.
    pub(super) fn reset(&mut self, partition: i32) {
        if !self.awaiting_positions.contains(&partition) {
            self.awaiting_positions.push(partition);
        }
    }
}

impl Drop for GroupState {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

impl GroupState {
    pub(super) fn start(
        env: &Env,
        host: &str,
        settings: GroupSettings,
        brokers: Vec<String>,
        timeouts: Timeouts,
        worker: Option<(ConsumerProgress, u64)>,
    ) -> GroupState {
        let now_ms = env.now().0 / 1_000;
        let member = GroupMember::new(settings.member.clone(), now_ms)
            .expect("the design validated the group settings");
        let member = Rc::new(RefCell::new(member));
        let heartbeat = tokio::task::spawn_local(heartbeat_task(
            env.clone(),
            host.to_string(),
            member.clone(),
            brokers,
            timeouts,
        ));
        let worker = match (settings.commit, worker) {
            (CommitStrategy::Auto, Some((progress, processing_ms))) => {
                let (tx, rx) = mpsc::channel(WORKER_QUEUE_MAX);
                let db = settings.sink.as_ref().map(DbSink::consumer);
                progress.worker_started(host);
                let task = worker_task(env.clone(), host.to_string(), rx, db, progress, processing_ms);
                tokio::task::spawn_local(task);
                Some(tx)
            }
            _ => None,
        };
        GroupState {
            settings,
            member,
            coordinator: None,
            heartbeat,
            last_auto_commit_ms: now_ms,
            awaiting_positions: Vec::new(),
            processed: BTreeMap::new(),
            worker,
            closed: false,
        }
    }
}

/// Records the core's notes as the consumer's.
fn record_notes(env: &Env, host: &str, member: &RefCell<GroupMember>) {
    for (name, detail) in member.borrow_mut().take_notes() {
        env.note_with(host, &format!("consumer.{name}"), detail);
    }
}

/// Asks a broker for the group's coordinator, on a connection opened for it.
async fn find_coordinator(
    env: &Env,
    host: &str,
    broker: &str,
    request: FindCoordinatorRequest,
    member: &RefCell<GroupMember>,
    timeouts: Timeouts,
) {
    let now_ms = || env.now().0 / 1_000;
    let mut conn = match Connection::open(env, host, broker, timeouts.connect, timeouts.request).await {
        Ok(conn) => conn,
        Err(error) => {
            member
                .borrow_mut()
                .coordinator_failed(now_ms(), &error.to_string());
            return;
        }
    };
    let version = conn.version(ApiKey::FindCoordinator).unwrap_or(0);
    let versions = Versions {
        find_coordinator: version,
        ..*member.borrow().versions()
    };
    member.borrow_mut().set_versions(versions);
    // The request was built for the version the last connection had; build it again for
    // this one if the layout differs (v4 moved the key into an array).
    let request = rebuild_find(request, version);
    match conn.request(&Request::FindCoordinator(request)).await {
        Ok(Response::FindCoordinator(answer)) => member.borrow_mut().on_find_coordinator(&answer, now_ms()),
        Ok(_) | Err(_) => member
            .borrow_mut()
            .coordinator_failed(now_ms(), "FindCoordinator unanswered"),
    }
}

fn rebuild_find(request: FindCoordinatorRequest, version: i16) -> FindCoordinatorRequest {
    let key = request
        .coordinator_keys
        .first()
        .cloned()
        .unwrap_or_else(|| request.key.clone());
    let fresh = FindCoordinatorRequest::default().with_key_type(request.key_type);
    if version >= 4 {
        fresh.with_coordinator_keys(vec![key])
    } else {
        fresh.with_key(key)
    }
}

/// A connection to the coordinator the member knows, reusing `conn` if it still goes there.
async fn coordinator_conn<'a>(
    env: &Env,
    host: &str,
    member: &RefCell<GroupMember>,
    conn: &'a mut Option<Connection>,
    timeouts: Timeouts,
) -> Option<&'a mut Connection> {
    let target = member.borrow().coordinator()?.host.clone();
    if !conn.as_ref().is_some_and(|c| c.is_open() && c.broker() == target) {
        match Connection::open(env, host, &target, timeouts.connect, timeouts.request).await {
            Ok(opened) => {
                let v = |api| opened.version(api).ok();
                let mut versions = *member.borrow().versions();
                versions.join_group = v(ApiKey::JoinGroup).unwrap_or(versions.join_group);
                versions.sync_group = v(ApiKey::SyncGroup).unwrap_or(versions.sync_group);
                versions.leave_group = v(ApiKey::LeaveGroup).unwrap_or(versions.leave_group);
                versions.offset_fetch = v(ApiKey::OffsetFetch).unwrap_or(versions.offset_fetch);
                member.borrow_mut().set_versions(versions);
                *conn = Some(opened);
            }
            Err(error) => {
                member
                    .borrow_mut()
                    .coordinator_failed(env.now().0 / 1_000, &error.to_string());
                *conn = None;
                return None;
            }
        }
    }
    conn.as_mut()
}

/// The heartbeat thread: its own connection to the coordinator, time from the simulation.
async fn heartbeat_task(
    env: Env,
    host: String,
    member: Rc<RefCell<GroupMember>>,
    brokers: Vec<String>,
    timeouts: Timeouts,
) {
    let process = env.process(&host);
    let mut conn: Option<Connection> = None;
    let mut bootstrap_next = 0usize;
    loop {
        let now_ms = env.now().0 / 1_000;
        let step = member.borrow_mut().heartbeat_step(now_ms);
        record_notes(&env, &host, &member);
        match step {
            HeartbeatStep::WaitUntil(at_ms) => {
                process
                    .sleep(Duration::from_millis(at_ms.saturating_sub(now_ms).max(1)))
                    .await;
            }
            HeartbeatStep::FindCoordinator(request) => {
                let broker = brokers[bootstrap_next % brokers.len()].clone();
                bootstrap_next = bootstrap_next.wrapping_add(1);
                find_coordinator(&env, &host, &broker, request, &member, timeouts).await;
            }
            HeartbeatStep::Send(request) => {
                let Some(c) = coordinator_conn(&env, &host, &member, &mut conn, timeouts).await else {
                    member
                        .borrow_mut()
                        .heartbeat_failed(env.now().0 / 1_000, "no connection");
                    continue;
                };
                let answer = c.request(&Request::Heartbeat(request)).await;
                let now_ms = env.now().0 / 1_000;
                match answer {
                    Ok(Response::Heartbeat(answer)) => member.borrow_mut().on_heartbeat(&answer, now_ms),
                    Ok(_) | Err(_) => {
                        conn = None;
                        member
                            .borrow_mut()
                            .heartbeat_failed(now_ms, "heartbeat unanswered");
                    }
                }
            }
            HeartbeatStep::Leave(request) => {
                // Java sends the LeaveGroup and does not wait for its answer.
                if let Some(c) = conn.as_mut().filter(|c| c.is_open()) {
                    let _ = c.send(&Request::LeaveGroup(request)).await;
                }
            }
        }
        record_notes(&env, &host, &member);
    }
}

/// The note of the auto strategy's worker giving up a record whose transaction failed.
pub const WORKER_DROPPED_FAILED_RECORD: &str = "consumer.worker_dropped_failed_record";

/// The auto strategy's worker: processes handed records in order, apart from the poll loop.
async fn worker_task(
    env: Env,
    host: String,
    mut queue: mpsc::Receiver<Polled>,
    mut db: Option<DbConsumer>,
    progress: ConsumerProgress,
    processing_ms: u64,
) {
    let process = env.process(&host);
    while let Some(record) = queue.recv().await {
        // An executor's task that fails is logged and forgotten: the record is not retried,
        // and auto-commit has moved (or will move) past it. The note makes the loss visible.
        let handled = process_record(&env, &host, &process, db.as_mut(), record, processing_ms, None).await;
        if handled == Handled::Failed {
            env.note(&host, WORKER_DROPPED_FAILED_RECORD);
        }
        progress.advance(record.partition, record.offset + 1);
        progress.worker_done(&host);
    }
}

/// The application's work on one record: its processing time, then its effect (in memory,
/// or a database transaction; with offsets in the database, the partition's next offset is
/// written in the same transaction).
async fn process_record(
    env: &Env,
    host: &str,
    process: &Process,
    db: Option<&mut DbConsumer>,
    record: Polled,
    processing_ms: u64,
    mark: Option<PositionMark>,
) -> Handled {
    process.sleep(Duration::from_millis(processing_ms)).await;
    let id = record.id;
    let ack = || {
        env.record(
            host,
            EventKind::Ack {
                id,
                consumer: host.into(),
            },
        )
    };
    match db {
        Some(db) if db.runs_user() => user_record(env, host, process, db, id, ack).await,
        Some(db) => {
            let mark = mark.unwrap_or_else(|| PositionMark::of_message(id.0));
            db.handle_at(env, host, id.0, mark, process, ack).await
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

/// The note of a user's handler that answered requeue: the application seeks the
/// partition back to the record, after the handler's delay, so the next poll fetches it again.
pub const USER_REQUEUE_SEEK_BACK: &str = "consumer.user_requeue_seek_back";
/// The note of a user's handler that failed: the same seek back, without a delay.
pub const USER_ERROR_SEEK_BACK: &str = "consumer.user_error_seek_back";

/// A record through the user's handler (issue 13). Kafka has no per-record
/// acknowledgement: an ack lets the position (and, by the commit strategy, the committed
/// offset) pass the record; requeue or an error is a Java application's `seek()` back to it,
/// which the caller does on `Failed` (a requeue first sleeps its delay, in the poll loop, as
/// a `Thread.sleep` before the seek would).
pub(super) async fn user_record(
    env: &Env,
    host: &str,
    process: &Process,
    db: &mut DbConsumer,
    id: MsgId,
    ack: impl FnOnce(),
) -> Handled {
    let delivered = Delivered {
        id: id.0,
        body: crate::source::encode_value(id),
        attempts: 1,
    };
    match db.handle_user(env, host, &delivered, process).await {
        Replied::Ack => {
            ack();
            Handled::Acked
        }
        Replied::Requeue(delay) => {
            env.note(host, USER_REQUEUE_SEEK_BACK);
            process.sleep(delay).await;
            Handled::Failed
        }
        Replied::Error(_) => {
            env.note(host, USER_ERROR_SEEK_BACK);
            Handled::Failed
        }
    }
}

impl Consumer {
    fn group(&mut self) -> &mut GroupState {
        self.group.as_mut().expect("only group consumers come here")
    }

    /// The group's part of poll: false while the member is not ready to fetch (the caller
    /// backs off). Joins when the member must, reads starting positions, auto-commits.
    pub(super) async fn group_poll(&mut self) -> bool {
        let now_ms = self.now_ms();
        let member = self.group().member.clone();
        member.borrow_mut().polled(now_ms);
        record_notes(&self.env, &self.host, &member);
        if member.borrow().needs_join() {
            if !self.refresh_metadata().await {
                return false;
            }
            return self.join().await;
        }
        if !self.group().awaiting_positions.is_empty() {
            return self.read_positions().await;
        }
        let group = self.group();
        if group.settings.commit == CommitStrategy::Auto
            && now_ms >= group.last_auto_commit_ms + group.settings.auto_commit_interval_ms
        {
            group.last_auto_commit_ms = now_ms;
            let consumed = self.positions.clone();
            let _ = self.commit(consumed, "auto").await;
        }
        true
    }

    /// Java's `joinGroupIfNeeded`: the revocation (after the strategy's commit), then the
    /// join requests until the member is stable or must wait.
    async fn join(&mut self) -> bool {
        let member = self.group().member.clone();
        if member.borrow().join_prepare_pending() {
            self.commit_on_revocation().await;
            if let Some(revocation) = member.borrow_mut().begin_join() {
                for partition in &revocation.partitions {
                    self.positions.remove(partition);
                    self.group().processed.remove(partition);
                }
            }
            self.group().awaiting_positions.clear();
            record_notes(&self.env, &self.host, &member);
        }
        for _ in 0..8 {
            let now_ms = self.now_ms();
            let step = member.borrow_mut().join_step(now_ms);
            record_notes(&self.env, &self.host, &member);
            match step {
                JoinStep::Stable => return self.read_positions().await,
                JoinStep::BackoffUntil(_) => return false,
                JoinStep::FindCoordinator(request) => {
                    let brokers = &self.settings.brokers;
                    let broker = brokers[self.bootstrap_next % brokers.len()].clone();
                    self.bootstrap_next = self.bootstrap_next.wrapping_add(1);
                    let timeouts = self.timeouts();
                    find_coordinator(&self.env, &self.host, &broker, request, &member, timeouts).await;
                }
                JoinStep::JoinGroup(request) => {
                    let partitions = self.metadata.as_ref().map_or(0, |m| m.partitions() as i32);
                    match self.ask_coordinator(Request::JoinGroup(request)).await {
                        Some(Response::JoinGroup(answer)) => {
                            member
                                .borrow_mut()
                                .on_join_group(&answer, partitions, self.now_ms())
                        }
                        _ => member
                            .borrow_mut()
                            .join_failed(self.now_ms(), "JoinGroup unanswered"),
                    }
                }
                JoinStep::SyncGroup(request) => match self.ask_coordinator(Request::SyncGroup(request)).await
                {
                    Some(Response::SyncGroup(answer)) => {
                        if let Some(partitions) = member.borrow_mut().on_sync_group(&answer, self.now_ms()) {
                            self.group().awaiting_positions = partitions;
                        }
                    }
                    _ => member
                        .borrow_mut()
                        .join_failed(self.now_ms(), "SyncGroup unanswered"),
                },
            }
        }
        false
    }

    /// A request to the coordinator on the poll loop's connection; `None` if unanswered.
    async fn ask_coordinator(&mut self, request: Request) -> Option<Response> {
        let timeouts = self.timeouts();
        let (env, host) = (self.env.clone(), self.host.clone());
        let group = self.group.as_mut().expect("a group consumer");
        let member = group.member.clone();
        let conn = coordinator_conn(&env, &host, &member, &mut group.coordinator, timeouts).await?;
        match conn.request(&request).await {
            Ok(answer) => Some(answer),
            Err(_) => {
                group.coordinator = None;
                member
                    .borrow_mut()
                    .coordinator_failed(env.now().0 / 1_000, "request unanswered");
                None
            }
        }
    }

    /// Seeks each newly assigned partition: to the database's stored position (offsets kept
    /// there), else to the committed offset, else by `auto.offset.reset`.
    async fn read_positions(&mut self) -> bool {
        let partitions = self.group().awaiting_positions.clone();
        if partitions.is_empty() {
            return true;
        }
        let starts = if self.group().settings.commit == CommitStrategy::Db {
            self.positions_from_db(&partitions).await
        } else {
            self.committed_positions(&partitions).await
        };
        let Some(starts) = starts else {
            return false;
        };
        let generation = self.group().member.borrow().generation().id;
        let mut detail = format!("generation {generation}");
        for (partition, start) in &starts {
            self.positions.insert(*partition, *start);
            self.group().processed.insert(*partition, *start);
            if let Some(progress) = &self.settings.progress {
                progress.advance(*partition, *start);
            }
            detail.push_str(&format!(
                " {}@{start}",
                super::partition_name(&self.settings.topic, *partition)
            ));
        }
        self.env.note_with(&self.host, "consumer.group.positions", detail);
        self.group().awaiting_positions.clear();
        true
    }

    async fn positions_from_db(&mut self, partitions: &[i32]) -> Option<BTreeMap<i32, i64>> {
        let (env, host) = (self.env.clone(), self.host.clone());
        let db = self.db.as_mut()?;
        let mut starts = BTreeMap::new();
        for partition in partitions {
            let stored = db.stored_position(&env, &host, i64::from(*partition)).await?;
            if stored > 0 {
                // The seek the strategy exists for: past what the database already applied.
                env.note(&host, "consumer.group.seek_to_db_position");
            }
            starts.insert(*partition, stored);
        }
        Some(starts)
    }

    async fn committed_positions(&mut self, partitions: &[i32]) -> Option<BTreeMap<i32, i64>> {
        let member = self.group().member.clone();
        let request = member.borrow().offset_fetch_request(partitions);
        let answer = match self.ask_coordinator(Request::OffsetFetch(request)).await {
            Some(Response::OffsetFetch(answer)) => answer,
            _ => return None,
        };
        let committed = member.borrow_mut().on_offset_fetch(&answer, self.now_ms()).ok()?;
        let mut starts = BTreeMap::new();
        for partition in partitions {
            let start = match committed.get(partition).copied().flatten() {
                Some(offset) => {
                    self.note("group.committed_offset_found");
                    offset
                }
                None => {
                    self.note("offset_reset");
                    self.reset_position(*partition).await?
                }
            };
            starts.insert(*partition, start);
        }
        Some(starts)
    }

    /// `auto.offset.reset` for a partition without a committed offset: the log's start (0:
    /// our logs are never cleaned), or its end, asked of the leader with ListOffsets.
    async fn reset_position(&mut self, partition: i32) -> Option<i64> {
        if self.group().settings.auto_offset_reset == OffsetReset::Earliest {
            return Some(0);
        }
        let leader = self.metadata.as_ref()?.leader_host(partition)?.to_string();
        let timeouts = self.timeouts();
        let mut conn = Connection::open(&self.env, &self.host, &leader, timeouts.connect, timeouts.request)
            .await
            .ok()?;
        let wanted = list_offsets_request::ListOffsetsPartition::default()
            .with_partition_index(partition)
            .with_timestamp(-1);
        let topic = list_offsets_request::ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(self.settings.topic.clone())))
            .with_partitions(vec![wanted]);
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![topic]);
        match conn.request(&Request::ListOffsets(request)).await.ok()? {
            Response::ListOffsets(answer) => answer
                .topics
                .iter()
                .flat_map(|t| &t.partitions)
                .find(|p| p.partition_index == partition && p.error_code == 0)
                .map(|p| p.offset),
            _ => None,
        }
    }

    /// What the strategy commits before its partitions are revoked.
    async fn commit_on_revocation(&mut self) {
        let group = self.group();
        let offsets = match group.settings.commit {
            CommitStrategy::Auto | CommitStrategy::BeforeProcess => self.positions.clone(),
            CommitStrategy::AfterProcess => group.processed.clone(),
            // A transformer's offsets go with its transactions (or after each), not here.
            CommitStrategy::Db | CommitStrategy::Transaction => return,
        };
        if !offsets.is_empty() {
            let _ = self.commit(offsets, "revocation").await;
        }
    }

    /// commitSync of `offsets`: retried while the error is retriable, for at most
    /// `default.api.timeout.ms`; CommitFailedException is noted and returned.
    pub(super) async fn commit(&mut self, offsets: BTreeMap<i32, i64>, why: &str) -> Result<(), CommitError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let member = self.group().member.clone();
        let deadline_ms = self.now_ms() + COMMIT_TIMEOUT_MS;
        let topic = self.settings.topic.clone();
        let detail = |generation: i32| {
            let mut text = format!("{why} generation {generation}");
            for (p, o) in &offsets {
                text.push_str(&format!(" {}@{o}", super::partition_name(&topic, *p)));
            }
            text
        };
        loop {
            let generation = member.borrow().generation().id;
            let result = member.borrow().commit_request(&offsets);
            let result = match result {
                Ok(request) => match self.ask_coordinator(Request::OffsetCommit(request)).await {
                    Some(Response::OffsetCommit(answer)) => {
                        member.borrow_mut().on_commit(&answer, self.now_ms())
                    }
                    _ => Err(CommitError::Retriable("OffsetCommit unanswered".into())),
                },
                Err(error) => Err(error),
            };
            record_notes(&self.env, &self.host, &member);
            match result {
                Ok(()) => {
                    self.env
                        .note_with(&self.host, "consumer.commit", detail(generation));
                    return Ok(());
                }
                Err(CommitError::Retriable(_)) if self.now_ms() < deadline_ms => {
                    if member.borrow().coordinator().is_none() {
                        let brokers = self.settings.brokers.clone();
                        let broker = brokers[self.bootstrap_next % brokers.len()].clone();
                        self.bootstrap_next = self.bootstrap_next.wrapping_add(1);
                        let request = FindCoordinatorRequest::default()
                            .with_key(StrBytes::from_string(member.borrow().config().group_id.clone()));
                        let timeouts = self.timeouts();
                        find_coordinator(&self.env, &self.host, &broker, request, &member, timeouts).await;
                    }
                    self.process
                        .sleep(Duration::from_millis(self.settings.retry_backoff_ms))
                        .await;
                }
                Err(error) => {
                    let name = match &error {
                        CommitError::Failed(_) => "consumer.commit_failed",
                        CommitError::RebalanceInProgress => "consumer.commit_rebalance_in_progress",
                        CommitError::Retriable(_) => "consumer.commit_timed_out",
                    };
                    self.env
                        .note_with(&self.host, name, format!("{} ({error:?})", detail(generation)));
                    return Err(error);
                }
            }
        }
    }

    /// What the application does with one poll's records, by strategy.
    pub(super) async fn handle_polled(&mut self, records: Vec<Polled>, leader: &str) {
        if records.is_empty() {
            return;
        }
        let transform = self.group().settings.commit == CommitStrategy::Transaction;
        for record in &records {
            self.process.checkpoint().await;
            if !transform {
                // A transformer's reads are not deliveries: its output's readers' are.
                self.record_deliver(*record, leader);
            }
            self.positions.insert(record.partition, record.offset + 1);
            if let Some(worker) = self.group().worker.clone() {
                if let Some(progress) = &self.settings.progress {
                    progress.handed_to_worker(&self.host);
                }
                let _ = worker.send(*record).await;
            }
        }
        match self.group().settings.commit {
            CommitStrategy::Auto => {}
            CommitStrategy::BeforeProcess => {
                let consumed = self.positions.clone();
                if self.commit(consumed, "before processing").await.is_err() {
                    // commitSync threw: the application polls again without processing.
                    self.note("batch_skipped_after_commit_failure");
                    return;
                }
                self.process_all(&records).await;
            }
            CommitStrategy::AfterProcess => {
                self.process_all(&records).await;
                let processed = self.group().processed.clone();
                let _ = self.commit(processed, "after processing").await;
            }
            CommitStrategy::Db => self.process_all(&records).await,
            CommitStrategy::Transaction => self.transform_batch(&records).await,
        }
    }

    /// Java's consume-transform-produce loop for one poll: the records go to the producer's
    /// transaction with the offsets after them (sendOffsetsToTransaction with the member's
    /// generation and id, `ConsumerGroupMetadata`), or committed by commitSync once the
    /// transaction has committed. An aborted transaction seeks back to the group's committed
    /// offsets (the positions are read again), as the application must; a fenced producer
    /// closes the application.
    async fn transform_batch(&mut self, records: &[Polled]) {
        let transform = self.group().settings.transform.clone().expect("a transformer");
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for record in records {
            let at = next.entry(record.partition).or_insert(0);
            *at = (*at).max(record.offset + 1);
        }
        let member = self.group().member.clone();
        let (group_id, generation) = {
            let member = member.borrow();
            (member.config().group_id.clone(), member.generation().clone())
        };
        let offsets = match transform.offsets_in_transaction {
            false => None,
            true => {
                let list = next.iter().map(|(p, o)| (*p as u32, *o)).collect();
                let topic = &self.settings.topic;
                match PendingOffsets::new(&group_id, topic, generation.id, &generation.member_id, list) {
                    Ok(offsets) => Some(offsets),
                    Err(error) => {
                        self.env.note_with(&self.host, "transformer.bad_offsets", error);
                        return;
                    }
                }
            }
        };
        let batch = records.iter().map(|r| (r.id, r.partition)).collect();
        if let Err(error) = transform.feed.submit(batch, offsets) {
            self.env.note_with(&self.host, "transformer.batch_refused", error);
            // Fenced between batches: the application closes, as after a fenced commit.
            self.group().closed = transform.feed.fenced();
            return;
        }
        match transform.feed.outcome().await {
            BatchOutcome::Committed => {
                if !transform.offsets_in_transaction {
                    // Outside the transaction: a crash before this commit leaves the output
                    // committed and the offsets behind it.
                    let _ = self.commit(next.clone(), "after the transaction").await;
                }
                for (partition, offset) in next {
                    self.group().processed.insert(partition, offset);
                    if let Some(progress) = &self.settings.progress {
                        progress.advance(partition, offset);
                    }
                }
            }
            BatchOutcome::Aborted => {
                self.env.note(&self.host, TRANSFORMER_SEEK_TO_COMMITTED);
                let owned: Vec<i32> = self.positions.keys().copied().collect();
                self.group().awaiting_positions = owned;
            }
            BatchOutcome::Fenced => {
                self.env.note(&self.host, "transformer.fenced_closes");
                self.group().closed = true;
            }
        }
    }

    /// Processes a poll's records in order. A failed database transaction stops the batch:
    /// the application seeks each partition back to its first unprocessed record, so the
    /// next poll reads them again (and nothing past them is committed).
    async fn process_all(&mut self, records: &[Polled]) {
        let in_db = self.group().settings.commit == CommitStrategy::Db;
        for (index, record) in records.iter().enumerate() {
            let mark = in_db.then_some(PositionMark {
                row: i64::from(record.partition),
                value: record.offset + 1,
            });
            let (env, host, process) = (self.env.clone(), self.host.clone(), self.process.clone());
            let ms = self.settings.processing_ms;
            let handled = process_record(&env, &host, &process, self.db.as_mut(), *record, ms, mark).await;
            if handled == Handled::Failed {
                for later in &records[index..] {
                    let at = self.positions.entry(later.partition).or_insert(later.offset);
                    *at = (*at).min(later.offset);
                }
                self.note("seek_back_after_failed_transaction");
                return;
            }
            self.group().processed.insert(record.partition, record.offset + 1);
            if let Some(progress) = &self.settings.progress {
                progress.advance(record.partition, record.offset + 1);
            }
        }
    }

    fn record_deliver(&self, record: Polled, leader: &str) {
        self.env.record(
            &self.host,
            EventKind::Deliver {
                id: record.id,
                attempt: 1,
                consumer: self.host.as_str().into(),
                partition: Some(super::partition_name(&self.settings.topic, record.partition).into()),
                node: Some(leader.into()),
                offset: Some(record.offset),
            },
        );
    }
}
