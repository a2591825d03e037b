//! A real Kafka server on tokio sockets, real log directories and the real clock, running
//! the same cores as the simulation (`Broker`, `Controller`, `wire`, `handler`), for real
//! clients (kafka-python, confluent-kafka) to use (issue 10).
//!
//! A single node ([`run`], [`run_on`]) is broker 1 with its controller in the same process:
//! KRaft's "combined mode" (`process.roles=broker,controller`) on one node, where the
//! broker's heartbeats and AllocateProducerIds/AlterPartition go to an in-process
//! `Controller` instead of over a socket. A cluster ([`run_cluster_on`]) is brokers 1..=n
//! in one process with that one controller; the brokers replicate between them over TCP,
//! as followers fetching from leaders. One of them can be killed
//! ([`run_cluster_killable`]), the controller cannot.
//!
//! Kafka's socket server handles one request per connection at a time: `Processor` mutes a
//! channel when a request arrives and unmutes it once the response is sent, so a
//! connection's answers come back in request order and an acks=all produce holds every later
//! request on its connection. We do the same: a connection reads no more bytes while a
//! request it sent is being answered, so memory per connection is one read buffer, the
//! frames that read completed, and one partial frame (`wire::FRAME_BYTES_MAX`).
//!
//! Departures from Kafka: the controller's metadata is not persisted (KRaft keeps it in
//! `__cluster_metadata`); on start the topics are found again from the partition
//! directories under `--log-dirs` (`<topic>-<partition>/`), their replicas assigned afresh;
//! only the producer ids handed out are kept (`producer-ids-checkpoint`). Record
//! headers and timestamps are not kept by the log (`batch::Record`): a fetch carries the
//! fetch time as each record's CreateTime, and ListOffsets by timestamp answers the end.
//! Compressed batches are refused (UNSUPPORTED_COMPRESSION_TYPE), as `wire_records` says.
//!
//! This is the one file of the Kafka design that reads the wall clock (clippy.toml's
//! determinism bans are for simulations; [`RealClock`] says where it opts out).

use super::broker::{Broker, BrokerOutput, PartitionAnswer, RequestId};
use super::broker_txn::marker_batch;
use super::checkpoint;
use super::controller::{Controller, ControllerConfig, TopicPartition};
use super::group_coordinator::CoordinatorAnswer;
use super::txn_coordinator::TxnProtocol;
use super::txn_state::TRANSACTION_STATE_TOPIC;

/// `transaction.state.log.num.partitions` of the real server: Kafka's default is 50; a few
/// are enough for a test server and keep its log directories few.
pub const TRANSACTION_STATE_PARTITIONS: i32 = 3;
use super::error::KafkaError;
use super::handler::{self, create_topics_response, produce_response, Cluster, Handled, TopicCreated};
use super::handler_txn::txn_response;
use super::log::{LogConfig, PartitionLog};
use super::partition::Acks;
use super::partition::{BrokerId, PartitionConfig};
use super::partition::{FetchPosition, ReplicaFetch};
use super::txn_coordinator::{Markers, TxnAnswer};
use super::wire::{
    decode_request, encode_response, unsupported_api_versions_response, FrameDecoder, Inbound, Request,
    Response,
};
use super::wire::{decode_response, encode_request, supported_versions};
use super::wire_records::decode_fetched_batches;
use bytes::Bytes;
use kafka_protocol::messages::{
    fetch_request, list_offsets_request, offset_for_leader_epoch_request, ApiKey, BrokerId as KafkaBrokerId,
    FetchRequest, FetchResponse, InitProducerIdResponse, ListOffsetsRequest, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sim::disk::RealDisk;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};

/// The broker id of the single node (Kafka's quickstart `node.id=1`).
pub const NODE_ID: BrokerId = 1;
/// Bytes read from a socket at once.
const READ_BYTES: usize = 64 * 1024;
/// `max.connections`: past this many open connections the acceptor stops accepting until
/// one closes, as Kafka's `Acceptor` does (its default is unlimited; ours keeps memory and
/// the broker's waiting produce requests bounded: `broker::PENDING_REQUESTS_MAX`).
pub const CONNECTIONS_MAX: usize = 1000;
/// How often replicas, produce timeouts and the controller's sessions are ticked.
const TICK_INTERVAL_MS: u64 = 10;
/// `broker.heartbeat.interval.ms` (2 s): the broker's heartbeats to its controller.
const HEARTBEAT_INTERVAL_MS: u64 = 2_000;
/// The longest a fetch waits for data, whatever its `max_wait_ms` says (consumers ask for
/// 500 ms, `fetch.max.wait.ms`; followers 500 ms, `replica.fetch.wait.max.ms`).
const FETCH_WAIT_MAX_MS: u64 = 30_000;
/// Kafka's COORDINATOR_LOAD_IN_PROGRESS: retriable, for an InitProducerId the controller
/// cannot serve yet.
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
/// Kafka's INVALID_TOPIC_EXCEPTION.
const INVALID_TOPIC_EXCEPTION: i16 = 17;
/// The most epoch-end questions a broker keeps for its fetchers (one per follower replica
/// at a time, in practice).
const EPOCH_ASKS_MAX: usize = super::broker::REPLICAS_MAX;
/// Kafka's `Topic.MAX_NAME_LENGTH`.
const TOPIC_NAME_LENGTH_MAX: usize = 249;
/// The first producer id not yet handed out, in a checkpoint file under `--log-dirs`: our
/// stand-in for the `ProducerIdsRecord` KRaft keeps in `__cluster_metadata`. Without it a
/// restarted node handed out producer id 0 again, and each partition's producer state
/// (rebuilt from its log) took the new producer's first batches for duplicates of the old
/// producer's: answered with success, and not stored (confluent-kafka found it: 5 records
/// acknowledged after a restart, none readable).
const PRODUCER_IDS_FILE: &str = "producer-ids-checkpoint";

/// The real clock, as Unix milliseconds that never go back: the wall clock read once at
/// start, plus a monotonic clock's elapsed time (record timestamps are Unix ms; sessions,
/// timeouts and flush intervals only take differences).
pub struct RealClock {
    #[allow(clippy::disallowed_types)]
    start: std::time::Instant,
    start_unix_ms: u64,
}

impl RealClock {
    #[allow(clippy::disallowed_types, clippy::disallowed_methods)]
    pub fn new() -> RealClock {
        let start_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        RealClock {
            start: std::time::Instant::now(),
            start_unix_ms,
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.start_unix_ms + self.start.elapsed().as_millis() as u64
    }
}

impl Default for RealClock {
    fn default() -> RealClock {
        RealClock::new()
    }
}

/// The server's settings, named as Kafka's broker configs.
#[derive(Clone, Debug)]
pub struct KafkaServer {
    /// `listeners`: where clients connect.
    pub listen_address: SocketAddr,
    /// `advertised.listeners`: the host:port Metadata names for this broker (default: the
    /// listen address, 127.0.0.1 for an unspecified IP, with the port actually bound).
    pub advertised_address: Option<String>,
    /// `log.dirs`: partition logs live in `<topic>-<partition>/` under it.
    pub log_dirs: PathBuf,
    /// `min.insync.replicas`.
    pub min_insync_replicas: usize,
    /// `num.partitions`: for a CreateTopics that leaves the count to the broker (-1).
    pub num_partitions: i32,
}

/// Where Metadata says this broker is: `--advertised-address`, or the bound address.
fn advertised(server: &KafkaServer, bound: SocketAddr) -> io::Result<(String, i32)> {
    let Some(address) = &server.advertised_address else {
        let ip = bound.ip();
        let host = if ip.is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            ip.to_string()
        };
        return Ok((host, i32::from(bound.port())));
    };
    let invalid = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--advertised-address {address:?} is not host:port"),
        )
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(invalid)?;
    let port: u16 = port.parse().map_err(|_| invalid())?;
    if host.is_empty() {
        return Err(invalid());
    }
    Ok((host.to_string(), i32::from(port)))
}

/// Kafka's `Topic.validate`: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`. It also keeps
/// a topic's directory under `--log-dirs`.
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= TOPIC_NAME_LENGTH_MAX
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
}

type RealBroker = Broker<PartitionLog<RealDisk>>;

/// One broker of this process.
struct Member {
    broker: RealBroker,
    log_dirs: PathBuf,
    last_heartbeat_ms: u64,
    /// OffsetsForLeaderEpoch questions its follower replicas have for their leaders
    /// (partition, leader, epoch), for the replica fetchers to ask over TCP.
    epoch_asks: Vec<(TopicPartition, BrokerId, i32)>,
}

/// The process: its brokers, the controller, and the produce requests waiting for answers.
struct Node {
    members: BTreeMap<BrokerId, Member>,
    controller: Controller,
    cluster: Cluster,
    /// Where the controller keeps what it must not forget (the first broker's `--log-dirs`).
    metadata_dir: PathBuf,
    num_partitions: i32,
    clock: RealClock,
    next_request: u64,
    /// acks=all produce requests still to be answered, and the connection that waits.
    waiting: BTreeMap<RequestId, Rc<Notify>>,
    /// Answers for waiting connections, taken by them when woken.
    completed: BTreeMap<RequestId, Vec<PartitionAnswer>>,
    /// Answers for group requests that waited (joins, syncs, offset commits).
    completed_groups: BTreeMap<RequestId, CoordinatorAnswer>,
    /// The coordinator's answers for waiting transactional requests.
    txn_completed: BTreeMap<RequestId, TxnAnswer>,
    /// Produce requests handled so far: a waiting fetch looks again when it changes.
    produces: u64,
    /// Producer ids below this were handed out by an earlier run; the controller's blocks
    /// (which start at 0 in every run) are shifted past them.
    producer_id_base: i64,
    /// Brokers killed ([`run_cluster_killable`]): they no longer heartbeat, tick or learn
    /// metadata.
    stopped: BTreeSet<BrokerId>,
}

type Shared = Rc<RefCell<Node>>;

impl Node {
    /// Brokers 1..=n, `servers[i]` being broker i+1's settings (`min.insync.replicas` and
    /// `num.partitions` are the first's, cluster-wide here).
    fn new(servers: &[KafkaServer], cluster: Cluster) -> io::Result<Node> {
        let clock = RealClock::new();
        let now_ms = clock.now_ms();
        let config = PartitionConfig {
            min_insync_replicas: servers[0].min_insync_replicas,
            ..PartitionConfig::default()
        };
        let ids: Vec<BrokerId> = (1..=servers.len() as BrokerId).collect();
        let mut controller = Controller::new(ControllerConfig::default(), &ids);
        let mut members = BTreeMap::new();
        for (id, server) in ids.iter().zip(servers) {
            // A broker registers and heartbeats before it serves (KRaft: a broker is fenced
            // until its first heartbeat is answered).
            controller.heartbeat(*id, now_ms);
            std::fs::create_dir_all(&server.log_dirs)?;
            let mut broker = Broker::new(*id, config.clone());
            broker.configure_transactions(TxnProtocol::V1, TRANSACTION_STATE_PARTITIONS);
            let member = Member {
                broker,
                log_dirs: server.log_dirs.clone(),
                last_heartbeat_ms: now_ms,
                epoch_asks: Vec::new(),
            };
            members.insert(*id, member);
        }
        let metadata_dir = servers[0].log_dirs.clone();
        let producer_id_base = read_producer_ids(&metadata_dir)?;
        Ok(Node {
            members,
            controller,
            cluster,
            metadata_dir,
            num_partitions: servers[0].num_partitions,
            clock,
            next_request: 0,
            waiting: BTreeMap::new(),
            completed: BTreeMap::new(),
            completed_groups: BTreeMap::new(),
            txn_completed: BTreeMap::new(),
            produces: 0,
            producer_id_base,
            stopped: BTreeSet::new(),
        })
    }

    fn next_request_id(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    /// `broker` answers one request, or says it waits (`Handled::Waiting`, with `notify`
    /// woken when its answer is in `completed`) or needs nothing sent (acks=0).
    fn handle(&mut self, broker: BrokerId, request: Request, notify: &Rc<Notify>) -> Handled {
        let now_ms = self.clock.now_ms();
        if matches!(request, Request::Produce(_)) {
            self.produces += 1;
        }
        let retry = matches!(request, Request::InitProducerId(_)).then(|| request.clone());
        let id = self.next_request_id();
        let member = self.members.get_mut(&broker).expect("a broker of this process");
        let handled = match handler::handle(&mut member.broker, &self.cluster, request, id, now_ms) {
            Handled::CreateTopics(topics) => Handled::Respond(self.create_topics(topics, now_ms)),
            Handled::NeedProducerIds => match self.init_producer_id(broker, retry, id, now_ms) {
                Handled::TxnWaiting { request, partitions } => {
                    self.waiting.insert(request, notify.clone());
                    Handled::TxnWaiting { request, partitions }
                }
                other => other,
            },
            Handled::Waiting(id) => {
                self.waiting.insert(id, notify.clone());
                Handled::Waiting(id)
            }
            Handled::WaitingGroup(id) => {
                self.waiting.insert(id, notify.clone());
                Handled::WaitingGroup(id)
            }
            Handled::RespondAndCreateTopics { answer, topics } => {
                // The answer does not wait for the topic (Kafka's FindCoordinator).
                self.create_topics(topics, now_ms);
                Handled::Respond(answer)
            }
            Handled::TxnWaiting { request, partitions } => {
                self.waiting.insert(request, notify.clone());
                Handled::TxnWaiting { request, partitions }
            }
            Handled::WaitingMarkers { request, asked } => {
                self.waiting.insert(request, notify.clone());
                Handled::WaitingMarkers { request, asked }
            }
            other => other,
        };
        if let Some(member) = self.members.get_mut(&broker) {
            member.broker.tick(now_ms);
        }
        self.dispatch(now_ms);
        handled
    }

    /// A broker's producer ids ran out: AllocateProducerIds from the controller, then the
    /// InitProducerId again (Kafka's `RPCProducerIdManager`).
    fn init_producer_id(
        &mut self,
        broker: BrokerId,
        request: Option<Request>,
        id: RequestId,
        now_ms: u64,
    ) -> Handled {
        let not_yet = Handled::Respond(Response::InitProducerId(
            InitProducerIdResponse::default().with_error_code(COORDINATOR_LOAD_IN_PROGRESS),
        ));
        let (Some((first, length)), Some(request)) = (self.controller.allocate_producer_ids(broker), request)
        else {
            return not_yet;
        };
        let first = self.producer_id_base + first;
        // Recorded before any id of the block is used, as KRaft commits the record before
        // it answers AllocateProducerIds.
        if let Err(error) = write_producer_ids(&self.metadata_dir, first + length) {
            eprintln!("jetsam kafka: cannot record producer ids: {error}");
            return not_yet;
        }
        let member = self.members.get_mut(&broker).expect("a broker of this process");
        member.broker.add_producer_id_block(first, length);
        match handler::handle(&mut member.broker, &self.cluster, request, id, now_ms) {
            Handled::Respond(answer) => Handled::Respond(answer),
            // A transactional id's: the coordinator answers once its state is written.
            waiting @ Handled::TxnWaiting { .. } => waiting,
            _ => not_yet,
        }
    }

    /// CreateTopics through the in-process controller; `-1` partitions or replication
    /// factor take the broker's defaults (`num.partitions`, `default.replication.factor`=1),
    /// as KIP-464 has it.
    fn create_topics(&mut self, topics: Vec<(String, i32, i16)>, now_ms: u64) -> Response {
        let mut results: Vec<TopicCreated> = Vec::new();
        let mut invalid = Vec::new();
        for (name, partitions, replication_factor) in topics {
            if !valid_topic_name(&name) {
                invalid.push(name);
                continue;
            }
            let partitions = if partitions == -1 {
                self.num_partitions
            } else {
                partitions
            };
            let replication_factor = if replication_factor == -1 {
                1
            } else {
                replication_factor
            };
            let created = match usize::try_from(replication_factor) {
                Ok(factor) => self.controller.create_topic(&name, partitions, factor),
                Err(_) => Err(super::controller::ControllerError::InvalidReplicationFactor),
            };
            results.push((name, created.map(|()| (partitions, replication_factor))));
        }
        self.apply_published(now_ms);
        let mut response = create_topics_response(results);
        if let Response::CreateTopics(answer) = &mut response {
            for name in invalid {
                answer.topics.push(
                    kafka_protocol::messages::create_topics_response::CreatableTopicResult::default()
                        .with_name(TopicName(StrBytes::from_string(name)))
                        .with_error_code(INVALID_TOPIC_EXCEPTION)
                        .with_num_partitions(-1)
                        .with_replication_factor(-1),
                );
            }
        }
        response
    }

    /// Applies what the controller published to every broker (KRaft brokers replay the
    /// metadata log), opening each new replica's log under its `--log-dirs`. A log that
    /// does not open (a disk error) is logged and that replica left out, so clients get
    /// NOT_LEADER_OR_FOLLOWER from it (Kafka takes the log directory offline).
    fn apply_published(&mut self, now_ms: u64) {
        for published in self.controller.take_published() {
            let tp = published.partition;
            let stopped = &self.stopped;
            for (id, member) in self.members.iter_mut().filter(|(id, _)| !stopped.contains(id)) {
                let mut log = None;
                if published.state.replicas.contains(id) && member.broker.replica(&tp).is_none() {
                    match open_log(&member.log_dirs, &tp, now_ms) {
                        Ok(opened) => log = Some(opened),
                        Err(error) => {
                            eprintln!(
                                "jetsam kafka: broker {id} cannot open the log of {}-{}: {error}",
                                tp.topic, tp.partition
                            );
                            continue;
                        }
                    }
                }
                let mut open = |_: &TopicPartition| log.take().expect("opened above for a new replica");
                member
                    .broker
                    .apply(tp.clone(), published.state.clone(), now_ms, &mut open);
            }
        }
    }

    /// What the brokers asked for: answers for waiting produce requests (a connection that
    /// went away has none waiting, and its answer is dropped), ISR changes for the
    /// controller, and epoch-end questions for the replica fetchers.
    fn dispatch(&mut self, now_ms: u64) {
        let ids: Vec<BrokerId> = self.members.keys().copied().collect();
        for id in ids {
            let outputs = self.members.get_mut(&id).expect("listed").broker.take_outputs();
            for output in outputs {
                self.dispatch_one(id, output, now_ms);
            }
        }
    }

    /// WriteTxnMarkers between brokers of this process, in process: the leader appends each
    /// marker (acks=1 here, where Kafka's handler waits for acks=all) and the coordinator
    /// takes the answers.
    fn write_markers(&mut self, from: BrokerId, leader: BrokerId, markers: &Markers, now_ms: u64) {
        let mut answers = Vec::new();
        for tp in &markers.partitions {
            let result = match self
                .members
                .get_mut(&leader)
                .filter(|_| !self.stopped.contains(&leader))
            {
                Some(member) => {
                    let batch = vec![(tp.clone(), Ok(marker_batch(markers)))];
                    let answer = member
                        .broker
                        .produce(RequestId(0), Acks::Leader, 0, batch, now_ms);
                    answer
                        .and_then(|a| a.first().map(|(_, r)| r.map(|_| ())))
                        .unwrap_or(Err(KafkaError::RequestTimedOut))
                }
                None => Err(KafkaError::NotLeaderOrFollower),
            };
            answers.push((tp.clone(), result));
        }
        if let Some(member) = self.members.get_mut(&from) {
            member.broker.markers_answered(markers, answers, now_ms);
        }
    }

    fn dispatch_one(&mut self, from: BrokerId, output: BrokerOutput, now_ms: u64) {
        match output {
            // The simulation counts these for "sometimes" checks; a real server has no history.
            BrokerOutput::Note(name) => tracing::debug!(broker = from, note = name, "kafka"),
            BrokerOutput::Produced { request, answers } => {
                // Only for a connection still there to take it (it holds the other `Rc`):
                // a killed broker's connections are gone.
                let waiting = self.waiting.remove(&request);
                if let Some(notify) = waiting.filter(|notify| Rc::strong_count(notify) > 1) {
                    self.completed.insert(request, answers);
                    notify.notify_one();
                }
            }
            BrokerOutput::GroupAnswered { request, answer } => {
                let waiting = self.waiting.remove(&request);
                if let Some(notify) = waiting.filter(|notify| Rc::strong_count(notify) > 1) {
                    self.completed_groups.insert(request, answer);
                    notify.notify_one();
                }
            }
            BrokerOutput::TxnAnswered { request, answer } => {
                let waiting = self.waiting.remove(&request);
                if let Some(notify) = waiting.filter(|notify| Rc::strong_count(notify) > 1) {
                    self.txn_completed.insert(request, answer);
                    notify.notify_one();
                }
            }
            BrokerOutput::WriteMarkers { leader, markers } => {
                self.write_markers(from, leader, &markers, now_ms)
            }
            BrokerOutput::AlterIsr {
                partition,
                leader_epoch,
                partition_epoch,
                isr,
            } => {
                let altered =
                    self.controller
                        .alter_partition(from, &partition, leader_epoch, partition_epoch, isr);
                if let Err(error) = altered {
                    eprintln!("jetsam kafka: AlterPartition from broker {from} refused: {error:?}");
                    // The leader forgets the proposal, so it can propose again later.
                    if let Some(member) = self.members.get_mut(&from) {
                        member.broker.alter_isr_refused(&partition);
                    }
                }
                self.apply_published(now_ms);
            }
            BrokerOutput::AskEpochEnd {
                partition,
                leader,
                epoch,
            } => {
                let member = self.members.get_mut(&from).expect("a broker of this process");
                if member.epoch_asks.len() < EPOCH_ASKS_MAX {
                    member.epoch_asks.push((partition, leader, epoch));
                }
            }
        }
    }

    /// Time passes: replicas (produce timeouts, ISR shrinks, flushes), heartbeats and the
    /// controller's sessions.
    fn tick(&mut self) {
        let now_ms = self.clock.now_ms();
        let stopped = &self.stopped;
        for (id, member) in self.members.iter_mut().filter(|(id, _)| !stopped.contains(id)) {
            if now_ms.saturating_sub(member.last_heartbeat_ms) >= HEARTBEAT_INTERVAL_MS {
                self.controller.heartbeat(*id, now_ms);
                member.last_heartbeat_ms = now_ms;
            }
            member.broker.tick(now_ms);
        }
        self.controller.tick(now_ms);
        self.apply_published(now_ms);
        self.dispatch(now_ms);
    }

    /// Topics whose partition directories are under the brokers' `--log-dirs` from an
    /// earlier run, created again (partitions 0..=the highest found, as many replicas as
    /// brokers that have a directory for one). The controller assigns the replicas afresh.
    fn recover_topics(&mut self) -> io::Result<()> {
        let mut found: BTreeMap<(String, i32), usize> = BTreeMap::new();
        for member in self.members.values() {
            for (topic, partition) in partition_dirs(&member.log_dirs)? {
                *found.entry((topic, partition)).or_insert(0) += 1;
            }
        }
        let mut topics: BTreeMap<String, (i32, usize)> = BTreeMap::new();
        for ((topic, partition), replicas) in found {
            let entry = topics.entry(topic).or_insert((partition, replicas));
            *entry = (entry.0.max(partition), entry.1.max(replicas));
        }
        for (topic, (highest, replicas)) in topics {
            let _ = self.controller.create_topic(&topic, highest + 1, replicas);
        }
        // Kafka creates the state topic at the first transactional FindCoordinator, with
        // transaction.state.log.replication.factor (3) replicas; we create it at start, with
        // as many as there are brokers up to 3 (a recovered one already exists).
        let replicas = self.members.len().min(3);
        let _ = self
            .controller
            .create_topic(TRANSACTION_STATE_TOPIC, TRANSACTION_STATE_PARTITIONS, replicas);
        self.apply_published(self.clock.now_ms());
        Ok(())
    }
}

/// The `<topic>-<partition>` directories under a log directory.
fn partition_dirs(log_dirs: &std::path::Path) -> io::Result<Vec<(String, i32)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(log_dirs)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((topic, partition)) = name.rsplit_once('-') else {
            continue;
        };
        let Ok(partition) = partition.parse::<i32>() else {
            continue;
        };
        if valid_topic_name(topic) && (0..super::controller::PARTITIONS_MAX).contains(&partition) {
            found.push((topic.to_string(), partition));
        }
    }
    Ok(found)
}

/// The first producer id no earlier run handed out (0 for a new `--log-dirs`).
fn read_producer_ids(log_dirs: &std::path::Path) -> io::Result<i64> {
    let disk = RealDisk::open(log_dirs)?;
    let Some(entries) = checkpoint::read(&disk, PRODUCER_IDS_FILE)? else {
        return Ok(0);
    };
    entries
        .first()
        .and_then(|entry| entry.first())
        .and_then(|next| next.parse::<i64>().ok())
        .filter(|next| *next >= 0)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("malformed {PRODUCER_IDS_FILE}"),
            )
        })
}

/// Records that producer ids below `next` are handed out (replaced atomically, fsynced).
fn write_producer_ids(log_dirs: &std::path::Path, next: i64) -> io::Result<()> {
    let disk = RealDisk::open(log_dirs)?;
    checkpoint::write_atomic(&disk, PRODUCER_IDS_FILE, &[vec![next.to_string()]])
}

fn open_log(
    log_dirs: &std::path::Path,
    tp: &TopicPartition,
    now_ms: u64,
) -> io::Result<PartitionLog<RealDisk>> {
    let disk = RealDisk::open(log_dirs)?;
    let dir = format!("{}-{}/", tp.topic, tp.partition);
    let (log, _report) = PartitionLog::open(disk, &dir, LogConfig::default(), now_ms)?;
    Ok(log)
}

/// Serves one node until `shutdown` resolves, on a listener already bound (so a caller
/// that bound port 0 knows the port). Needs a `LocalSet` ([`crate::server::block_on`]).
pub async fn run_on(
    server: KafkaServer,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    run_cluster_on(vec![(server, listener)], shutdown).await
}

/// Binds `server.listen_address` and serves until `shutdown` resolves.
pub async fn run(server: KafkaServer, shutdown: impl std::future::Future<Output = ()>) -> io::Result<()> {
    let listener = TcpListener::bind(server.listen_address).await?;
    run_on(server, listener, shutdown).await
}

/// Serves brokers 1..=n in this process, broker i+1 on `brokers[i]`, with one controller
/// (on broker 1's side, as a KRaft controller quorum of one). The brokers reach the
/// controller in process, and each other over TCP: a follower replica fetches from its
/// leader with Fetch (its broker id as `replica_id`), OffsetsForLeaderEpoch and ListOffsets,
/// as Kafka's `ReplicaFetcherThread` does, on the leader's advertised address.
pub async fn run_cluster_on(
    brokers: Vec<(KafkaServer, TcpListener)>,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    let (_no_kills, kills) = tokio::sync::mpsc::unbounded_channel();
    run_cluster_killable(brokers, kills, shutdown).await
}

/// [`run_cluster_on`], where each broker id that arrives on `kills` stops as a killed
/// process would: its listener and connections close, it no longer heartbeats, ticks or
/// fetches, and what its logs hold stays on disk. The controller fences it once its session
/// expires (`broker.session.timeout.ms`) and elects new leaders from the rest of the ISR.
/// The controller itself is never killed (it stands for a quorum that outlives a broker).
pub async fn run_cluster_killable(
    brokers: Vec<(KafkaServer, TcpListener)>,
    mut kills: tokio::sync::mpsc::UnboundedReceiver<BrokerId>,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    assert!(!brokers.is_empty(), "a cluster has brokers");
    let mut addresses = Vec::new();
    for (index, (server, listener)) in brokers.iter().enumerate() {
        let (host, port) = advertised(server, listener.local_addr()?)?;
        addresses.push((index as BrokerId + 1, host, port));
    }
    let cluster = Cluster {
        // A KRaft cluster id is 16 bytes in base64 (`kafka-storage random-uuid`).
        cluster_id: "amV0c2FtLWthZmthLXJlYWw".to_string(),
        controller: NODE_ID,
        brokers: addresses.clone(),
    };
    let servers: Vec<KafkaServer> = brokers.iter().map(|(server, _)| server.clone()).collect();
    let node = Rc::new(RefCell::new(Node::new(&servers, cluster)?));
    node.borrow_mut().recover_topics()?;
    let alive: BTreeMap<BrokerId, watch::Sender<bool>> = addresses
        .iter()
        .map(|(id, _, _)| (*id, watch::channel(false).0))
        .collect();
    let mut tasks = vec![tokio::task::spawn_local(tick_loop(node.clone()))];
    for (follower, _, _) in &addresses {
        for (leader, host, port) in &addresses {
            if follower != leader {
                let fetcher = replica_fetcher(node.clone(), *follower, *leader, format!("{host}:{port}"));
                tasks.push(tokio::task::spawn_local(until_killed(
                    alive[follower].subscribe(),
                    fetcher,
                )));
            }
        }
    }
    let connections = std::sync::Arc::new(Semaphore::new(CONNECTIONS_MAX));
    for ((id, _, _), (_, listener)) in addresses.iter().zip(brokers) {
        let killed = alive[id].subscribe();
        let acceptor = accept_loop(node.clone(), *id, listener, connections.clone(), killed.clone());
        tasks.push(tokio::task::spawn_local(until_killed(killed, acceptor)));
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(id) = kills.recv() => {
                if let Some(killer) = alive.get(&id) {
                    eprintln!("jetsam kafka: broker {id} killed");
                    node.borrow_mut().stopped.insert(id);
                    let _ = killer.send(true);
                }
            }
        }
    }
    for task in tasks {
        task.abort();
    }
    Ok(())
}

/// Runs `work` until the broker is killed (its `killed` flag turns true), then drops it,
/// closing whatever sockets it held.
async fn until_killed(mut killed: watch::Receiver<bool>, work: impl std::future::Future<Output = ()>) {
    let kill = async move {
        // The senders live as long as the cluster runs; a dropped one kills nothing.
        if killed.wait_for(|killed| *killed).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = work => {}
        _ = kill => {}
    }
}

/// Accepts connections for `broker`, one task each, while fewer than `CONNECTIONS_MAX` are
/// open (in the whole process).
async fn accept_loop(
    node: Shared,
    broker: BrokerId,
    listener: TcpListener,
    connections: std::sync::Arc<Semaphore>,
    killed: watch::Receiver<bool>,
) {
    loop {
        let Ok(permit) = connections.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                let connection = serve_connection(node.clone(), broker, stream);
                tokio::task::spawn_local(until_killed(killed.clone(), async move {
                    connection.await;
                    drop(permit);
                }));
            }
            // Kafka's Acceptor logs and goes on (too many open files, a reset handshake).
            Err(error) => {
                eprintln!("jetsam kafka: broker {broker} cannot accept: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn tick_loop(node: Shared) {
    let mut interval = tokio::time::interval(Duration::from_millis(TICK_INTERVAL_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        node.borrow_mut().tick();
    }
}

/// One connection to `broker`: frames in, one request answered at a time, answers out in
/// order. A request we do not implement closes the connection, logged, as Kafka's
/// `SocketServer` does (`wire` module docs).
async fn serve_connection(node: Shared, broker: BrokerId, stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let _ = stream.set_nodelay(true);
    let (mut read, mut write) = stream.into_split();
    let mut decoder = FrameDecoder::default();
    let mut frames: VecDeque<Bytes> = VecDeque::new();
    let mut buffer = vec![0u8; READ_BYTES];
    let notify = Rc::new(Notify::new());
    loop {
        while let Some(frame) = frames.pop_front() {
            match answer(&node, broker, &notify, frame).await {
                Ok(Some(bytes)) => {
                    if write.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    eprintln!("jetsam kafka: closing socket for {peer} because of error: {error}");
                    return;
                }
            }
        }
        let read_bytes = match read.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        match decoder.decode(&buffer[..read_bytes]) {
            Ok(decoded) => frames.extend(decoded),
            Err(error) => {
                eprintln!("jetsam kafka: closing socket for {peer} because of error: {error}");
                return;
            }
        }
    }
}

/// One request frame's answer, as bytes to send (`None` for acks=0).
async fn answer(
    node: &Shared,
    broker: BrokerId,
    notify: &Rc<Notify>,
    frame: Bytes,
) -> Result<Option<Bytes>, String> {
    let (header, request) = match decode_request(frame).map_err(|error| error.to_string())? {
        Inbound::UnsupportedApiVersions { header } => {
            let response = Response::ApiVersions(unsupported_api_versions_response());
            return Ok(Some(encode_response(&header, &response)));
        }
        Inbound::Request { header, request } => (header, request),
    };
    let response = match request {
        Request::Fetch(fetch) => Some(Response::Fetch(fetch_waiting(node, broker, fetch).await)),
        request => {
            let handled = node.borrow_mut().handle(broker, request, notify);
            match handled {
                Handled::Respond(response) => Some(response),
                Handled::Silent => None,
                Handled::Waiting(id) => Some(produced(node, notify, id).await),
                Handled::WaitingGroup(id) => Some(group_answered(node, notify, id).await),
                Handled::TxnWaiting { request, partitions } => {
                    Some(txn_answered(node, notify, request, &partitions).await)
                }
                Handled::WaitingMarkers { request, asked } => {
                    Some(markers_written(node, notify, request, &asked).await)
                }
                Handled::CreateTopics(_)
                | Handled::NeedProducerIds
                | Handled::RespondAndCreateTopics { .. } => {
                    unreachable!("Node::handle completes these")
                }
            }
        }
    };
    Ok(response.map(|response| encode_response(&header, &response)))
}

/// Waits for an acks=all produce's answer (the broker answers a timeout itself).
async fn produced(node: &Shared, notify: &Rc<Notify>, id: RequestId) -> Response {
    loop {
        notify.notified().await;
        if let Some(answers) = node.borrow_mut().completed.remove(&id) {
            return produce_response(answers);
        }
    }
}

/// Waits for a WriteTxnMarkers' appends (a marker sent to this process from outside).
async fn markers_written(
    node: &Shared,
    notify: &Rc<Notify>,
    id: RequestId,
    asked: &[super::handler_markers::AskedMarker],
) -> Response {
    loop {
        notify.notified().await;
        if let Some(answers) = node.borrow_mut().completed.remove(&id) {
            return super::handler_markers::markers_response(asked, answers);
        }
    }
}

/// Waits for a group request's answer (a join, a sync, an offset commit).
async fn group_answered(node: &Shared, notify: &Rc<Notify>, id: RequestId) -> Response {
    loop {
        notify.notified().await;
        if let Some(answer) = node.borrow_mut().completed_groups.remove(&id) {
            return super::handler_group::group_response(answer);
        }
    }
}

/// Waits for the transaction coordinator's answer to a transactional request.
async fn txn_answered(
    node: &Shared,
    notify: &Rc<Notify>,
    id: RequestId,
    partitions: &[TopicPartition],
) -> Response {
    loop {
        if let Some(answer) = node.borrow_mut().txn_completed.remove(&id) {
            return txn_response(answer, partitions);
        }
        notify.notified().await;
    }
}

/// A fetch that waits, as Kafka's `DelayedFetch` does, until it has `min_bytes` of records,
/// a partition answers an error, or `max_wait_ms` is up: it looks again after each produce.
async fn fetch_waiting(node: &Shared, broker: BrokerId, fetch: FetchRequest) -> FetchResponse {
    let clock_start = node.borrow().clock.now_ms();
    let wait_ms = u64::try_from(fetch.max_wait_ms.max(0))
        .unwrap_or(0)
        .min(FETCH_WAIT_MAX_MS);
    let deadline_ms = clock_start + wait_ms;
    let min_bytes = usize::try_from(fetch.min_bytes.max(1)).unwrap_or(1);
    loop {
        let produces = node.borrow().produces;
        let response = node.borrow_mut().fetch(broker, &fetch);
        if fetch_is_done(&response, min_bytes) || node.borrow().clock.now_ms() >= deadline_ms {
            return response;
        }
        while node.borrow().produces == produces && node.borrow().clock.now_ms() < deadline_ms {
            tokio::time::sleep(Duration::from_millis(TICK_INTERVAL_MS)).await;
        }
    }
}

impl Node {
    /// A fetch answered at once (by the handler), and what it changed dispatched: a
    /// follower's fetch may advance the high watermark and complete acks=all produces.
    fn fetch(&mut self, broker: BrokerId, fetch: &FetchRequest) -> FetchResponse {
        let now_ms = self.clock.now_ms();
        let id = self.next_request_id();
        let member = self.members.get_mut(&broker).expect("a broker of this process");
        let request = Request::Fetch(fetch.clone());
        let handled = handler::handle(&mut member.broker, &self.cluster, request, id, now_ms);
        self.dispatch(now_ms);
        match handled {
            Handled::Respond(Response::Fetch(response)) => response,
            other => unreachable!("a fetch is answered at once: {other:?}"),
        }
    }
}

/// Kafka's `DelayedFetch.tryComplete`: enough bytes, or an error to report.
fn fetch_is_done(response: &FetchResponse, min_bytes: usize) -> bool {
    let mut bytes = 0;
    for partition in response.responses.iter().flat_map(|t| t.partitions.iter()) {
        if partition.error_code != 0 {
            return true;
        }
        bytes += partition.records.as_ref().map_or(0, Bytes::len);
    }
    bytes >= min_bytes || response.error_code != 0
}

// ---------------------------------------------------------------------------------------------
// Replication between brokers, over TCP

/// `replica.fetch.wait.max.ms` (500 ms).
const REPLICA_FETCH_WAIT_MAX_MS: i32 = 500;
/// `replica.fetch.backoff.ms` (1 s): the wait after a failed fetch.
const REPLICA_FETCH_BACKOFF_MS: u64 = 1_000;
/// `replica.socket.timeout.ms` (30 s): a leader silent this long is disconnected.
const REPLICA_SOCKET_TIMEOUT_MS: u64 = 30_000;
/// How long a fetcher with nothing to fetch waits before it looks again.
const FETCHER_IDLE_MS: u64 = 20;
/// `replica.fetch.max.bytes` (1 MiB), per partition.
const REPLICA_FETCH_PARTITION_BYTES: i32 = 1024 * 1024;
/// Kafka's OFFSET_OUT_OF_RANGE.
const OFFSET_OUT_OF_RANGE: i16 = 1;

/// The highest version we implement of `api_key`: what our fetchers send our brokers.
fn our_version(api_key: ApiKey) -> i16 {
    *supported_versions(api_key).expect("an API we implement").end()
}

/// A follower broker's connection to a leader: one request in flight at a time.
struct LeaderLink {
    stream: TcpStream,
    decoder: FrameDecoder,
    correlation_id: i32,
    client_id: String,
}

impl LeaderLink {
    async fn connect(address: &str, follower: BrokerId) -> io::Result<LeaderLink> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(LeaderLink {
            stream,
            decoder: FrameDecoder::default(),
            correlation_id: 0,
            // Kafka's fetcher threads name themselves so: ReplicaFetcherThread-0-<leader>.
            client_id: format!("broker-{follower}-fetcher"),
        })
    }

    async fn call(&mut self, request: &Request) -> io::Result<Response> {
        let invalid = |error: String| io::Error::new(io::ErrorKind::InvalidData, error);
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let version = our_version(request.api_key());
        let (in_flight, bytes) = encode_request(self.correlation_id, &self.client_id, version, request);
        self.stream.write_all(&bytes).await?;
        let mut buffer = vec![0u8; READ_BYTES];
        loop {
            let read_bytes = self.stream.read(&mut buffer).await?;
            if read_bytes == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let frames = self
                .decoder
                .decode(&buffer[..read_bytes])
                .map_err(|error| invalid(error.to_string()))?;
            // One request in flight: its answer is the only frame that can come.
            if let Some(frame) = frames.into_iter().next() {
                return decode_response(frame, &in_flight).map_err(|error| invalid(error.to_string()));
            }
        }
    }
}

/// What a follower broker fetches from one leader: epoch-end questions first, then its
/// follower replicas' positions.
type FetcherWork = (Vec<(TopicPartition, i32)>, Vec<(TopicPartition, FetchPosition)>);

impl Node {
    fn fetcher_work(&mut self, follower: BrokerId, leader: BrokerId) -> FetcherWork {
        let member = self.members.get_mut(&follower).expect("a broker of this process");
        let (asks, others): (Vec<_>, Vec<_>) = std::mem::take(&mut member.epoch_asks)
            .into_iter()
            .partition(|(_, to, _)| *to == leader);
        member.epoch_asks = others;
        let asks = asks.into_iter().map(|(tp, _, epoch)| (tp, epoch)).collect();
        let positions = member
            .broker
            .follower_fetches()
            .into_iter()
            .filter(|(_, position)| position.leader == leader)
            .collect();
        (asks, positions)
    }

    /// Epoch-end questions a failed connection did not get answered, for the next try.
    fn ask_again(&mut self, follower: BrokerId, leader: BrokerId, asks: Vec<(TopicPartition, i32)>) {
        let member = self.members.get_mut(&follower).expect("a broker of this process");
        for (tp, epoch) in asks {
            if member.epoch_asks.len() < EPOCH_ASKS_MAX {
                member.epoch_asks.push((tp, leader, epoch));
            }
        }
    }

    /// The leader's OffsetsForLeaderEpoch answers, for the follower's replicas. A partition
    /// the leader answered with an error is left to the next metadata change (a new leader
    /// makes the replica ask again).
    fn epoch_ends_answered(&mut self, follower: BrokerId, answer: &OffsetForLeaderEpochResponse) {
        let member = self.members.get_mut(&follower).expect("a broker of this process");
        for topic in &answer.topics {
            for p in topic.partitions.iter().filter(|p| p.error_code == 0) {
                let tp = TopicPartition {
                    topic: topic.topic.0.to_string(),
                    partition: p.partition,
                };
                let end = (p.end_offset >= 0).then_some((p.leader_epoch, p.end_offset));
                member.broker.epoch_end_answered(&tp, end);
            }
        }
        self.dispatch(self.clock.now_ms());
    }

    /// The leader's fetch answer, for the follower's replicas; the partitions it answered
    /// OFFSET_OUT_OF_RANGE, for ListOffsets.
    fn replica_fetched(&mut self, follower: BrokerId, answer: &FetchResponse) -> Vec<TopicPartition> {
        let now_ms = self.clock.now_ms();
        let member = self.members.get_mut(&follower).expect("a broker of this process");
        let mut out_of_range = Vec::new();
        for topic in &answer.responses {
            for p in &topic.partitions {
                let tp = TopicPartition {
                    topic: topic.topic.0.to_string(),
                    partition: p.partition_index,
                };
                if p.error_code == OFFSET_OUT_OF_RANGE {
                    out_of_range.push(tp);
                    continue;
                }
                let records = p.records.clone().unwrap_or_default();
                let Ok(batches) = decode_fetched_batches(&records) else {
                    continue;
                };
                if p.error_code == 0 {
                    let fetched = ReplicaFetch {
                        batches,
                        high_watermark: p.high_watermark,
                        log_end_offset: -1,
                    };
                    member.broker.replica_fetched(&tp, Ok(fetched), now_ms);
                }
            }
        }
        self.dispatch(now_ms);
        out_of_range
    }
}

/// One follower broker's fetcher for one leader broker (Kafka's `ReplicaFetcherThread`):
/// it asks where epochs end, fetches, and after a failure drops the connection and waits
/// `replica.fetch.backoff.ms`.
async fn replica_fetcher(node: Shared, follower: BrokerId, leader: BrokerId, address: String) {
    let mut link: Option<LeaderLink> = None;
    loop {
        let (asks, positions) = node.borrow_mut().fetcher_work(follower, leader);
        if asks.is_empty() && positions.is_empty() {
            tokio::time::sleep(Duration::from_millis(FETCHER_IDLE_MS)).await;
            continue;
        }
        let timeout = Duration::from_millis(REPLICA_SOCKET_TIMEOUT_MS);
        let fetched = tokio::time::timeout(
            timeout,
            fetch_once(&node, &mut link, follower, &address, &asks, &positions),
        )
        .await;
        if !matches!(fetched, Ok(Ok(()))) {
            link = None;
            node.borrow_mut().ask_again(follower, leader, asks);
            tokio::time::sleep(Duration::from_millis(REPLICA_FETCH_BACKOFF_MS)).await;
        }
    }
}

async fn fetch_once(
    node: &Shared,
    link: &mut Option<LeaderLink>,
    follower: BrokerId,
    address: &str,
    asks: &[(TopicPartition, i32)],
    positions: &[(TopicPartition, FetchPosition)],
) -> io::Result<()> {
    let unexpected = || io::Error::new(io::ErrorKind::InvalidData, "an answer to another request");
    if link.is_none() {
        *link = Some(LeaderLink::connect(address, follower).await?);
    }
    let link = link.as_mut().expect("connected above");
    if !asks.is_empty() {
        let Response::OffsetForLeaderEpoch(answer) = link.call(&epoch_request(follower, asks)).await? else {
            return Err(unexpected());
        };
        node.borrow_mut().epoch_ends_answered(follower, &answer);
    }
    if positions.is_empty() {
        return Ok(());
    }
    let Response::Fetch(answer) = link.call(&replica_fetch_request(follower, positions)).await? else {
        return Err(unexpected());
    };
    let out_of_range = node.borrow_mut().replica_fetched(follower, &answer);
    for tp in out_of_range {
        let Response::ListOffsets(answer) = link.call(&latest_offset_request(follower, &tp)).await? else {
            return Err(unexpected());
        };
        let offset = answer
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .filter(|p| p.error_code == 0)
            .map(|p| p.offset);
        if let Some(offset) = offset {
            let mut node = node.borrow_mut();
            let member = node.members.get_mut(&follower).expect("a broker of this process");
            member.broker.replica_out_of_range(&tp, offset);
        }
    }
    Ok(())
}

/// Topics of a request, in order of first appearance, each with its partitions.
fn by_topic<T>(items: impl IntoIterator<Item = (String, T)>) -> Vec<(String, Vec<T>)> {
    let mut topics: Vec<(String, Vec<T>)> = Vec::new();
    for (topic, item) in items {
        match topics.iter_mut().find(|(name, _)| *name == topic) {
            Some((_, list)) => list.push(item),
            None => topics.push((topic, vec![item])),
        }
    }
    topics
}

fn topic_name(name: String) -> TopicName {
    TopicName(StrBytes::from_string(name))
}

fn replica_fetch_request(follower: BrokerId, positions: &[(TopicPartition, FetchPosition)]) -> Request {
    let partitions = positions.iter().map(|(tp, position)| {
        let partition = fetch_request::FetchPartition::default()
            .with_partition(tp.partition)
            .with_current_leader_epoch(position.leader_epoch)
            .with_fetch_offset(position.offset)
            .with_partition_max_bytes(REPLICA_FETCH_PARTITION_BYTES);
        (tp.topic.clone(), partition)
    });
    let topics = by_topic(partitions)
        .into_iter()
        .map(|(topic, partitions)| {
            fetch_request::FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(partitions)
        })
        .collect();
    Request::Fetch(
        FetchRequest::default()
            .with_replica_id(KafkaBrokerId(follower))
            .with_max_wait_ms(REPLICA_FETCH_WAIT_MAX_MS)
            .with_min_bytes(1)
            .with_max_bytes(handler::FETCH_BYTES_MAX as i32)
            .with_topics(topics),
    )
}

fn epoch_request(follower: BrokerId, asks: &[(TopicPartition, i32)]) -> Request {
    let partitions = asks.iter().map(|(tp, epoch)| {
        let partition = offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
            .with_partition(tp.partition)
            .with_leader_epoch(*epoch);
        (tp.topic.clone(), partition)
    });
    let topics = by_topic(partitions)
        .into_iter()
        .map(|(topic, partitions)| {
            offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(partitions)
        })
        .collect();
    Request::OffsetForLeaderEpoch(
        OffsetForLeaderEpochRequest::default()
            .with_replica_id(KafkaBrokerId(follower))
            .with_topics(topics),
    )
}

/// ListOffsets for the latest offset, as a follower asks it (the leader's LEO).
fn latest_offset_request(follower: BrokerId, tp: &TopicPartition) -> Request {
    let partition = list_offsets_request::ListOffsetsPartition::default()
        .with_partition_index(tp.partition)
        .with_timestamp(-1);
    let topic = list_offsets_request::ListOffsetsTopic::default()
        .with_name(topic_name(tp.topic.clone()))
        .with_partitions(vec![partition]);
    Request::ListOffsets(
        ListOffsetsRequest::default()
            .with_replica_id(KafkaBrokerId(follower))
            .with_topics(vec![topic]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_are_kafkas() {
        assert!(valid_topic_name("orders"));
        assert!(valid_topic_name("a.b_c-1"));
        assert!(!valid_topic_name(""));
        assert!(!valid_topic_name("."));
        assert!(!valid_topic_name(".."));
        assert!(!valid_topic_name("../etc"));
        assert!(!valid_topic_name("a/b"));
        assert!(!valid_topic_name(&"x".repeat(250)));
    }

    #[test]
    fn producer_ids_handed_out_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("jetsam-kafka-pids-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(read_producer_ids(&dir).unwrap(), 0, "a new log dir starts at 0");
        write_producer_ids(&dir, 2000).unwrap();
        assert_eq!(read_producer_ids(&dir).unwrap(), 2000);
        std::fs::write(dir.join(PRODUCER_IDS_FILE), "0\n1\nnot-a-number\n").unwrap();
        assert!(
            read_producer_ids(&dir).is_err(),
            "garbage is an error, not id 0 again"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_advertised_address_defaults_to_the_bound_one() {
        let server = KafkaServer {
            listen_address: "0.0.0.0:0".parse().unwrap(),
            advertised_address: None,
            log_dirs: PathBuf::from("unused"),
            min_insync_replicas: 1,
            num_partitions: 1,
        };
        let bound: SocketAddr = "0.0.0.0:39092".parse().unwrap();
        assert_eq!(
            advertised(&server, bound).unwrap(),
            ("127.0.0.1".to_string(), 39092)
        );
        let named = KafkaServer {
            advertised_address: Some("kafka.local:9092".into()),
            ..server.clone()
        };
        assert_eq!(
            advertised(&named, bound).unwrap(),
            ("kafka.local".to_string(), 9092)
        );
        let broken = KafkaServer {
            advertised_address: Some("kafka.local".into()),
            ..server
        };
        assert!(advertised(&broken, bound).is_err());
    }
}
