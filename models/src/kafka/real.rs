//! A real Kafka server: one node on tokio sockets, a real log directory and the real clock,
//! running the same cores as the simulation (`Broker`, `Controller`, `wire`, `handler`), for
//! real clients (kafka-python, confluent-kafka) to use (issue 10).
//!
//! It is broker 1 with its controller in the same process: KRaft's "combined mode"
//! (`process.roles=broker,controller`) on a single node, where the broker's heartbeats and
//! AllocateProducerIds/AlterPartition go to an in-process `Controller` instead of over a
//! socket. Every partition has one replica, on this broker.
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
//! directories under `--log-dirs` (`<topic>-<partition>/`), with one replica each. Record
//! headers and timestamps are not kept by the log (`batch::Record`): a fetch carries the
//! fetch time as each record's CreateTime.
//!
//! This is the one file of the Kafka design that reads the wall clock (clippy.toml's
//! determinism bans are for simulations; [`RealClock`] says where it opts out).

use super::broker::{Broker, BrokerOutput, PartitionAnswer, RequestId};
use super::checkpoint;
use super::controller::{Controller, ControllerConfig, TopicPartition};
use super::handler::{self, create_topics_response, produce_response, Cluster, Handled, TopicCreated};
use super::log::{LogConfig, PartitionLog};
use super::partition::{BrokerId, PartitionConfig};
use super::wire::{
    decode_request, encode_response, unsupported_api_versions_response, FrameDecoder, Inbound, Request,
    Response,
};
use bytes::Bytes;
use kafka_protocol::messages::{FetchRequest, FetchResponse, InitProducerIdResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use sim::disk::RealDisk;
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};

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

/// The node: broker 1, its controller, and the produce requests waiting for their answers.
struct Node {
    broker: RealBroker,
    controller: Controller,
    cluster: Cluster,
    log_dirs: PathBuf,
    num_partitions: i32,
    clock: RealClock,
    next_request: u64,
    last_heartbeat_ms: u64,
    /// acks=all produce requests still to be answered, and the connection that waits.
    waiting: BTreeMap<RequestId, Rc<Notify>>,
    /// Answers for waiting connections, taken by them when woken.
    completed: BTreeMap<RequestId, Vec<PartitionAnswer>>,
    /// Produce requests handled so far: a waiting fetch looks again when it changes.
    produces: u64,
    /// Producer ids below this were handed out by an earlier run; the controller's blocks
    /// (which start at 0 in every run) are shifted past them.
    producer_id_base: i64,
}

type Shared = Rc<RefCell<Node>>;

impl Node {
    fn new(server: &KafkaServer, cluster: Cluster) -> io::Result<Node> {
        let clock = RealClock::new();
        let now_ms = clock.now_ms();
        let config = PartitionConfig {
            min_insync_replicas: server.min_insync_replicas,
            ..PartitionConfig::default()
        };
        let mut controller = Controller::new(ControllerConfig::default(), &[NODE_ID]);
        // The broker registers and heartbeats before it serves (KRaft: a broker is fenced
        // until its first heartbeat is answered).
        controller.heartbeat(NODE_ID, now_ms);
        let producer_id_base = read_producer_ids(&server.log_dirs)?;
        Ok(Node {
            broker: Broker::new(NODE_ID, config),
            controller,
            cluster,
            log_dirs: server.log_dirs.clone(),
            num_partitions: server.num_partitions,
            clock,
            next_request: 0,
            last_heartbeat_ms: now_ms,
            waiting: BTreeMap::new(),
            completed: BTreeMap::new(),
            produces: 0,
            producer_id_base,
        })
    }

    /// Answers one request, or says it waits (`Handled::Waiting`, with `notify` woken when
    /// its answer is in `completed`) or needs nothing sent (acks=0).
    fn handle(&mut self, request: Request, notify: &Rc<Notify>) -> Handled {
        let now_ms = self.clock.now_ms();
        if matches!(request, Request::Produce(_)) {
            self.produces += 1;
        }
        let retry = matches!(request, Request::InitProducerId(_)).then(|| request.clone());
        let id = RequestId(self.next_request);
        self.next_request += 1;
        let handled = match handler::handle(&mut self.broker, &self.cluster, request, id, now_ms) {
            Handled::CreateTopics(topics) => Handled::Respond(self.create_topics(topics, now_ms)),
            Handled::NeedProducerIds => self.init_producer_id(retry, id, now_ms),
            Handled::Waiting(id) => {
                self.waiting.insert(id, notify.clone());
                Handled::Waiting(id)
            }
            other => other,
        };
        self.broker.tick(now_ms);
        self.dispatch(now_ms);
        handled
    }

    /// The broker's producer ids ran out: AllocateProducerIds from the controller, then the
    /// InitProducerId again (Kafka's `RPCProducerIdManager`).
    fn init_producer_id(&mut self, request: Option<Request>, id: RequestId, now_ms: u64) -> Handled {
        if let (Some((first, length)), Some(request)) =
            (self.controller.allocate_producer_ids(NODE_ID), request)
        {
            let first = self.producer_id_base + first;
            // Recorded before any id of the block is used, as KRaft commits the record
            // before it answers AllocateProducerIds.
            if let Err(error) = write_producer_ids(&self.log_dirs, first + length) {
                eprintln!("jetsam kafka: cannot record producer ids: {error}");
                return Handled::Respond(Response::InitProducerId(
                    InitProducerIdResponse::default().with_error_code(COORDINATOR_LOAD_IN_PROGRESS),
                ));
            }
            self.broker.add_producer_id_block(first, length);
            if let Handled::Respond(answer) =
                handler::handle(&mut self.broker, &self.cluster, request, id, now_ms)
            {
                return Handled::Respond(answer);
            }
        }
        Handled::Respond(Response::InitProducerId(
            InitProducerIdResponse::default().with_error_code(COORDINATOR_LOAD_IN_PROGRESS),
        ))
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

    /// Applies what the controller published to the broker, opening each new replica's log
    /// under `--log-dirs`. A log that does not open (a disk error) is logged and its
    /// partition left without a replica here, so clients get NOT_LEADER_OR_FOLLOWER for it
    /// (Kafka takes the log directory offline).
    fn apply_published(&mut self, now_ms: u64) {
        for published in self.controller.take_published() {
            let tp = published.partition;
            let mut log = None;
            if published.state.replicas.contains(&NODE_ID) && self.broker.replica(&tp).is_none() {
                match open_log(&self.log_dirs, &tp, now_ms) {
                    Ok(opened) => log = Some(opened),
                    Err(error) => {
                        eprintln!(
                            "jetsam kafka: cannot open the log of {}-{}: {error}",
                            tp.topic, tp.partition
                        );
                        continue;
                    }
                }
            }
            let mut open = |_: &TopicPartition| log.take().expect("opened above for a new replica");
            self.broker.apply(tp, published.state, now_ms, &mut open);
        }
    }

    /// What the broker asked for: answers for waiting produce requests (a connection that
    /// went away has none waiting, and its answer is dropped), ISR changes for the
    /// controller.
    fn dispatch(&mut self, now_ms: u64) {
        for output in self.broker.take_outputs() {
            match output {
                BrokerOutput::Produced { request, answers } => {
                    if let Some(notify) = self.waiting.remove(&request) {
                        self.completed.insert(request, answers);
                        notify.notify_one();
                    }
                }
                BrokerOutput::AlterIsr {
                    partition,
                    leader_epoch,
                    partition_epoch,
                    isr,
                } => {
                    let altered = self.controller.alter_partition(
                        NODE_ID,
                        &partition,
                        leader_epoch,
                        partition_epoch,
                        isr,
                    );
                    if let Err(error) = altered {
                        eprintln!("jetsam kafka: AlterPartition refused: {error:?}");
                    }
                    self.apply_published(now_ms);
                }
                // Only a follower asks; every replica here leads.
                BrokerOutput::AskEpochEnd { .. } => {}
            }
        }
    }

    /// Time passes: replicas (produce timeouts, flushes), heartbeats and the controller's
    /// sessions.
    fn tick(&mut self) {
        let now_ms = self.clock.now_ms();
        if now_ms.saturating_sub(self.last_heartbeat_ms) >= HEARTBEAT_INTERVAL_MS {
            self.controller.heartbeat(NODE_ID, now_ms);
            self.last_heartbeat_ms = now_ms;
        }
        self.controller.tick(now_ms);
        self.apply_published(now_ms);
        self.broker.tick(now_ms);
        self.dispatch(now_ms);
    }

    /// Topics whose partition directories are under `--log-dirs` from an earlier run, created
    /// again with one replica each (partitions 0..=the highest found).
    fn recover_topics(&mut self) -> io::Result<()> {
        let mut topics: BTreeMap<String, i32> = BTreeMap::new();
        for entry in std::fs::read_dir(&self.log_dirs)? {
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
                let highest = topics.entry(topic.to_string()).or_insert(partition);
                *highest = (*highest).max(partition);
            }
        }
        for (topic, highest) in topics {
            let _ = self.controller.create_topic(&topic, highest + 1, 1);
        }
        self.apply_published(self.clock.now_ms());
        Ok(())
    }
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

/// Serves until `shutdown` resolves, on a listener already bound (so a caller that bound
/// port 0 knows the port). Needs a `LocalSet` ([`crate::server::block_on`]).
pub async fn run_on(
    server: KafkaServer,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    let bound = listener.local_addr()?;
    let (host, port) = advertised(&server, bound)?;
    std::fs::create_dir_all(&server.log_dirs)?;
    let cluster = Cluster {
        // A KRaft cluster id is 16 bytes in base64 (`kafka-storage random-uuid`).
        cluster_id: "amV0c2FtLWthZmthLXJlYWw".to_string(),
        controller: NODE_ID,
        brokers: vec![(NODE_ID, host, port)],
    };
    let node = Rc::new(RefCell::new(Node::new(&server, cluster)?));
    node.borrow_mut().recover_topics()?;
    let ticker = tokio::task::spawn_local(tick_loop(node.clone()));
    let connections = std::sync::Arc::new(Semaphore::new(CONNECTIONS_MAX));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = connections.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else { break };
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let node = node.clone();
                tokio::task::spawn_local(async move {
                    serve_connection(node, stream).await;
                    drop(permit);
                });
            }
        }
    }
    ticker.abort();
    Ok(())
}

/// Binds `server.listen_address` and serves until `shutdown` resolves.
pub async fn run(server: KafkaServer, shutdown: impl std::future::Future<Output = ()>) -> io::Result<()> {
    let listener = TcpListener::bind(server.listen_address).await?;
    run_on(server, listener, shutdown).await
}

async fn tick_loop(node: Shared) {
    let mut interval = tokio::time::interval(Duration::from_millis(TICK_INTERVAL_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        node.borrow_mut().tick();
    }
}

/// One connection: frames in, one request answered at a time, answers out in order. A
/// request we do not implement closes the connection, logged, as Kafka's `SocketServer`
/// does (`wire` module docs).
async fn serve_connection(node: Shared, stream: TcpStream) {
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
            match answer(&node, &notify, frame).await {
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
async fn answer(node: &Shared, notify: &Rc<Notify>, frame: Bytes) -> Result<Option<Bytes>, String> {
    let (header, request) = match decode_request(frame).map_err(|error| error.to_string())? {
        Inbound::UnsupportedApiVersions { header } => {
            let response = Response::ApiVersions(unsupported_api_versions_response());
            return Ok(Some(encode_response(&header, &response)));
        }
        Inbound::Request { header, request } => (header, request),
    };
    let response = match request {
        Request::Fetch(fetch) => Some(Response::Fetch(fetch_waiting(node, fetch).await)),
        request => {
            let handled = node.borrow_mut().handle(request, notify);
            match handled {
                Handled::Respond(response) => Some(response),
                Handled::Silent => None,
                Handled::Waiting(id) => Some(produced(node, notify, id).await),
                Handled::CreateTopics(_) | Handled::NeedProducerIds => {
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

/// A fetch that waits, as Kafka's `DelayedFetch` does, until it has `min_bytes` of records,
/// a partition answers an error, or `max_wait_ms` is up: it looks again after each produce.
async fn fetch_waiting(node: &Shared, fetch: FetchRequest) -> FetchResponse {
    let clock_start = node.borrow().clock.now_ms();
    let wait_ms = u64::try_from(fetch.max_wait_ms.max(0))
        .unwrap_or(0)
        .min(FETCH_WAIT_MAX_MS);
    let deadline_ms = clock_start + wait_ms;
    let min_bytes = usize::try_from(fetch.min_bytes.max(1)).unwrap_or(1);
    loop {
        let produces = node.borrow().produces;
        let response = {
            let mut node = node.borrow_mut();
            let node = &mut *node;
            let now_ms = node.clock.now_ms();
            let id = RequestId(node.next_request);
            node.next_request += 1;
            let request = Request::Fetch(fetch.clone());
            let handled = handler::handle(&mut node.broker, &node.cluster, request, id, now_ms);
            node.dispatch(now_ms);
            match handled {
                Handled::Respond(Response::Fetch(response)) => response,
                other => unreachable!("a fetch is answered at once: {other:?}"),
            }
        };
        if fetch_is_done(&response, min_bytes) || node.borrow().clock.now_ms() >= deadline_ms {
            return response;
        }
        while node.borrow().produces == produces && node.borrow().clock.now_ms() < deadline_ms {
            tokio::time::sleep(Duration::from_millis(TICK_INTERVAL_MS)).await;
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
