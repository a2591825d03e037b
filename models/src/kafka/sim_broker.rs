//! A broker host in the simulation: the [`Broker`] core on the host's simulated disk, clients
//! served on Kafka's wire protocol ([`handler`]), a control connection to the controller
//! ([`super::control`]), and a replica fetcher copying from partition leaders.
//!
//! A connection's requests are answered one at a time, in order: Kafka mutes a connection
//! while one of its requests is being handled, so a waiting acks=all produce holds the
//! connection's later requests back.

use super::broker::{Broker, BrokerOutput, PartitionAnswer, RequestId};
use super::control::{ToBroker, ToController, CONTROLLER_PORT, HEARTBEAT_INTERVAL_MS};
use super::controller::TopicPartition;
use super::error::KafkaError;
use super::group::GroupConfig;
use super::group_coordinator::CoordinatorAnswer;
use super::handler::{self, Cluster, Handled, TopicCreated};
use super::handler_txn;
use super::log::{LogConfig, PartitionLog};
use super::partition::{BrokerId, PartitionConfig};
use super::txn_coordinator::{TxnAnswer, TxnProtocol};
use super::wire::{decode_request, encode_response, FrameDecoder, Inbound, Request};
use crate::db::wire::{decode, encode};
use sim::disk::SimDisk;
use sim::{Env, Process};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use turmoil::net::{TcpListener, TcpStream};

/// Kafka's client port.
pub const BROKER_PORT: u16 = 9092;
/// How often replicas' timers run (ISR lag, waiting produces, flush.ms, HW checkpoints).
const TICK: Duration = Duration::from_millis(10);
/// How long the control connection waits before reconnecting.
const RECONNECT: Duration = Duration::from_millis(500);
/// How long the control connection may go unanswered before it is dropped and reopened.
const CONTROL_TIMEOUT_MS: u64 = 2 * HEARTBEAT_INTERVAL_MS + 1_000;
/// Bound on the control messages queued while the controller is unreachable.
const CONTROL_QUEUE_MAX: usize = 10_000;

pub type SimLog = PartitionLog<SimDisk>;

/// Each leader's high watermark per partition, by broker id: where the design sees how far
/// consumers can read (its drain probe only).
pub type Watermarks = Rc<RefCell<BTreeMap<(BrokerId, TopicPartition), i64>>>;

/// What a broker host needs besides its id.
#[derive(Clone, Debug)]
pub struct BrokerSettings {
    pub cluster: Cluster,
    pub controller: String,
    pub partition: PartitionConfig,
    pub log: LogConfig,
    /// The group coordinator's settings (`offsets.topic.num.partitions` and the rest).
    pub group: GroupConfig,
    /// The transaction coordinator's settings.
    pub transactions: TxnSettings,
    pub watermarks: Option<Watermarks>,
}

/// The transaction coordinator's settings: the protocol, and the partitions of
/// `__transaction_state` (`transaction.state.log.num.partitions`, which must be the topic's).
#[derive(Clone, Copy, Debug)]
pub struct TxnSettings {
    pub protocol: TxnProtocol,
    pub state_partitions: i32,
}

impl Default for TxnSettings {
    /// Kafka's 50 state partitions cost a simulation as the offsets topic's do (see
    /// `offsets_topic_partitions`), so 3; the protocol before KIP-890.
    fn default() -> TxnSettings {
        TxnSettings {
            protocol: TxnProtocol::V1,
            state_partitions: 3,
        }
    }
}

/// What the control connection answers, in the order asked.
enum Awaiting {
    Heartbeat,
    AlterPartition,
    ProducerIds(oneshot::Sender<()>),
    TopicsCreated(oneshot::Sender<Vec<TopicCreated>>),
}

/// The broker process's shared state.
pub(super) struct Node {
    pub(super) env: Env,
    pub(super) host: String,
    pub(super) process: Process,
    pub(super) broker: RefCell<Broker<SimLog>>,
    settings: BrokerSettings,
    /// acks=all produces waiting for their answer.
    waiting: RefCell<BTreeMap<RequestId, oneshot::Sender<Vec<PartitionAnswer>>>>,
    /// Group requests waiting for their answer (a join, a sync, an offset commit).
    waiting_groups: RefCell<BTreeMap<RequestId, oneshot::Sender<CoordinatorAnswer>>>,
    /// Transactional requests waiting for the coordinator's answer.
    txn_waiting: RefCell<BTreeMap<RequestId, oneshot::Sender<TxnAnswer>>>,
    txn_early: RefCell<BTreeMap<RequestId, TxnAnswer>>,
    next_request: RefCell<u64>,
    control: mpsc::UnboundedSender<(ToController, Awaiting)>,
    /// The coordinator's markers for partitions other brokers lead, to [`super::sim_markers`].
    markers_out: mpsc::UnboundedSender<(BrokerId, super::txn_coordinator::Markers)>,
    /// Answers the replica fetcher must act on: OffsetsForLeaderEpoch to ask.
    pub(super) epoch_questions: RefCell<VecDeque<(TopicPartition, BrokerId, i32)>>,
}

impl Node {
    pub(super) fn now_ms(&self) -> u64 {
        self.env.now().0 / 1000
    }

    fn open_log(&self, partition: &TopicPartition, now_ms: u64) -> SimLog {
        let dir = format!("{}-{}/", partition.topic, partition.partition);
        match PartitionLog::open(self.env.disk(&self.host), &dir, self.settings.log.clone(), now_ms) {
            Ok((log, report)) => {
                if report.bytes_truncated > 0 {
                    self.env.note(&self.host, "kafka.log_tail_truncated_on_recovery");
                }
                log
            }
            // The simulated disk does not fail reads; a failure here is a model bug.
            Err(e) => panic!("{}: cannot open {dir}: {e}", self.host),
        }
    }

    /// The controller published a partition's state.
    fn apply(&self, partition: TopicPartition, state: super::partition::LeaderAndIsr) {
        let now = self.now_ms();
        let mut open = |tp: &TopicPartition| self.open_log(tp, now);
        self.broker.borrow_mut().apply(partition, state, now, &mut open);
        self.pump();
    }

    /// The broker's outputs go where they belong.
    pub(super) fn pump(&self) {
        let outputs = self.broker.borrow_mut().take_outputs();
        for output in outputs {
            match output {
                BrokerOutput::Produced { request, answers } => {
                    if let Some(waiter) = self.waiting.borrow_mut().remove(&request) {
                        let _ = waiter.send(answers);
                    }
                }
                BrokerOutput::AlterIsr {
                    partition,
                    leader_epoch,
                    partition_epoch,
                    isr,
                } => {
                    let broker = self.broker.borrow().id();
                    let message = ToController::AlterPartition {
                        broker,
                        partition,
                        leader_epoch,
                        partition_epoch,
                        isr,
                    };
                    let _ = self.control.send((message, Awaiting::AlterPartition));
                }
                BrokerOutput::AskEpochEnd {
                    partition,
                    leader,
                    epoch,
                } => {
                    self.epoch_questions
                        .borrow_mut()
                        .push_back((partition, leader, epoch));
                }
                BrokerOutput::Note(name) => self.env.note(&self.host, name),
                BrokerOutput::GroupAnswered { request, answer } => {
                    if let Some(waiter) = self.waiting_groups.borrow_mut().remove(&request) {
                        let _ = waiter.send(answer);
                    }
                }
                BrokerOutput::TxnAnswered { request, answer } => {
                    match self.txn_waiting.borrow_mut().remove(&request) {
                        Some(waiter) => {
                            let _ = waiter.send(answer);
                        }
                        // Answered before its connection started waiting (an error at once).
                        None => {
                            self.txn_early.borrow_mut().insert(request, answer);
                        }
                    }
                }
                BrokerOutput::WriteMarkers { leader, markers } => {
                    // The sender task lives as long as the process.
                    let _ = self.markers_out.send((leader, markers));
                }
            }
        }
    }

    fn next_request_id(&self) -> RequestId {
        let mut next = self.next_request.borrow_mut();
        *next += 1;
        RequestId(*next)
    }
}

/// The broker process on `host`.
pub async fn run(env: Env, host: String, id: BrokerId, settings: BrokerSettings) -> turmoil::Result {
    let process = env.process(&host);
    let _running = process.start();
    let (control, queue) = mpsc::unbounded_channel();
    let (markers_out, markers_queue) = mpsc::unbounded_channel();
    let mut broker = Broker::new(id, settings.partition.clone());
    broker.set_group_config(settings.group.clone());
    broker.configure_transactions(
        settings.transactions.protocol,
        settings.transactions.state_partitions,
    );
    let node = Rc::new(Node {
        broker: RefCell::new(broker),
        env: env.clone(),
        host: host.clone(),
        process: process.clone(),
        settings,
        waiting: RefCell::new(BTreeMap::new()),
        waiting_groups: RefCell::new(BTreeMap::new()),
        txn_waiting: RefCell::new(BTreeMap::new()),
        txn_early: RefCell::new(BTreeMap::new()),
        next_request: RefCell::new(0),
        control,
        markers_out,
        epoch_questions: RefCell::new(VecDeque::new()),
    });
    tokio::task::spawn_local(control_link(node.clone(), queue));
    tokio::task::spawn_local(tick_loop(node.clone()));
    tokio::task::spawn_local(super::sim_fetcher::run(node.clone()));
    tokio::task::spawn_local(super::sim_markers::run(node.clone(), markers_queue));
    let listener = TcpListener::bind(("0.0.0.0", BROKER_PORT)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::task::spawn_local(serve_client(node.clone(), stream));
    }
}

async fn tick_loop(node: Rc<Node>) {
    loop {
        node.process.sleep(TICK).await;
        let now = node.now_ms();
        node.broker.borrow_mut().tick(now);
        node.pump();
        if let Some(watermarks) = &node.settings.watermarks {
            let broker = node.broker.borrow();
            let mut shown = watermarks.borrow_mut();
            for tp in broker.metadata().keys() {
                if let Some(replica) = broker.replica(tp).filter(|r| r.is_leader()) {
                    shown.insert((broker.id(), tp.clone()), replica.high_watermark());
                }
            }
        }
    }
}

/// One client connection: requests decoded, answered in order.
async fn serve_client(node: Rc<Node>, stream: TcpStream) {
    let (mut read, mut write) = stream.into_split();
    let mut frames = FrameDecoder::default();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match read.read(&mut chunk).await {
            Ok(n) if n > 0 => n,
            _ => return,
        };
        node.process.checkpoint().await;
        let Ok(decoded) = frames.decode(&chunk[..n]) else {
            node.env.note(&node.host, "kafka.bad_frame");
            return; // Kafka closes a connection whose frame size is invalid
        };
        for frame in decoded {
            let (header, request) = match decode_request(frame) {
                Ok(Inbound::Request { header, request }) => (header, request),
                Ok(Inbound::UnsupportedApiVersions { header }) => {
                    let answer =
                        super::wire::Response::ApiVersions(super::wire::unsupported_api_versions_response());
                    if write.write_all(&encode_response(&header, &answer)).await.is_err() {
                        return;
                    }
                    continue;
                }
                Err(_) => {
                    node.env.note(&node.host, "kafka.bad_request");
                    return; // Kafka closes the connection on a request it cannot parse
                }
            };
            let Some(answer) = answer_request(&node, request).await else {
                continue; // acks=0
            };
            if write.write_all(&encode_response(&header, &answer)).await.is_err() {
                return;
            }
        }
    }
}

/// Handles one request to its answer, waiting for the controller or for acks=all as needed.
async fn answer_request(node: &Rc<Node>, request: Request) -> Option<super::wire::Response> {
    let mut request = Some(request);
    loop {
        let id = node.next_request_id();
        let current = request.take()?;
        // An InitProducerId is asked again once the controller gave producer ids, with its
        // transactional id if it has one.
        let retry = matches!(current, Request::InitProducerId(_)).then(|| current.clone());
        let handled = {
            let now = node.now_ms();
            let mut broker = node.broker.borrow_mut();
            handler::handle(&mut broker, &node.settings.cluster, current, id, now)
        };
        node.pump();
        match handled {
            Handled::Respond(answer) => return Some(answer),
            Handled::Silent => return None,
            Handled::Waiting(id) => return Some(wait_for_produce(node, id).await),
            Handled::WaitingMarkers { request, asked } => {
                let answers = wait_for_answers(node, request).await;
                return Some(super::handler_markers::markers_response(&asked, answers));
            }
            Handled::TxnWaiting { request, partitions } => {
                let early = node.txn_early.borrow_mut().remove(&request);
                let answer = match early {
                    Some(answer) => answer,
                    None => {
                        let (tx, rx) = oneshot::channel();
                        node.txn_waiting.borrow_mut().insert(request, tx);
                        rx.await
                            .unwrap_or(TxnAnswer::EndTxn(Err(KafkaError::NotCoordinator)))
                    }
                };
                return Some(handler_txn::txn_response(answer, &partitions));
            }
            Handled::CreateTopics(topics) => return Some(create_topics(node, topics).await),
            Handled::WaitingGroup(id) => return wait_for_group(node, id).await,
            Handled::RespondAndCreateTopics { answer, topics } => {
                // Kafka's broker answers at once and lets the controller create the topic.
                let (tx, _) = oneshot::channel();
                let _ = node
                    .control
                    .send((ToController::CreateTopics { topics }, Awaiting::TopicsCreated(tx)));
                return Some(answer);
            }
            Handled::NeedProducerIds => {
                let (tx, rx) = oneshot::channel();
                let broker = node.broker.borrow().id();
                let _ = node.control.send((
                    ToController::AllocateProducerIds { broker },
                    Awaiting::ProducerIds(tx),
                ));
                if rx.await.is_err() {
                    // Refused (this broker is fenced) or the controller is unreachable: the
                    // client's own timeout decides; ask again after a pause.
                    node.process.sleep(RECONNECT).await;
                }
                request = retry;
            }
        }
    }
}

async fn wait_for_produce(node: &Rc<Node>, id: RequestId) -> super::wire::Response {
    handler::produce_response(wait_for_answers(node, id).await)
}

/// An acks=all append's per-partition answers (a produce's, or a WriteTxnMarkers').
async fn wait_for_answers(node: &Rc<Node>, id: RequestId) -> Vec<PartitionAnswer> {
    let (tx, rx) = oneshot::channel();
    node.waiting.borrow_mut().insert(id, tx);
    node.pump(); // it may have completed already
    rx.await.unwrap_or_default()
}

/// A group request's answer; none if the broker went away first (the client times out).
async fn wait_for_group(node: &Rc<Node>, id: RequestId) -> Option<super::wire::Response> {
    let (tx, rx) = oneshot::channel();
    node.waiting_groups.borrow_mut().insert(id, tx);
    node.pump();
    match rx.await {
        Ok(answer) => Some(super::handler_group::group_response(answer)),
        // Every waiting group request is answered while the broker runs.
        Err(_) => std::future::pending().await,
    }
}

async fn create_topics(node: &Rc<Node>, topics: Vec<(String, i32, i16)>) -> super::wire::Response {
    let (tx, rx) = oneshot::channel();
    let _ = node.control.send((
        ToController::CreateTopics {
            topics: topics.clone(),
        },
        Awaiting::TopicsCreated(tx),
    ));
    let results = rx.await.unwrap_or_else(|_| {
        // The controller is unreachable: Kafka's answer after its timeout.
        topics
            .into_iter()
            .map(|(name, _, _)| {
                (
                    name,
                    Err(super::controller::ControllerError::UnknownTopicOrPartition),
                )
            })
            .collect()
    });
    handler::create_topics_response(results)
}

/// The control connection: heartbeats, queued requests and their answers in order, and
/// the controller's published partition states. Reconnects when it drops.
async fn control_link(node: Rc<Node>, mut queue: mpsc::UnboundedReceiver<(ToController, Awaiting)>) {
    loop {
        let connected = tokio::time::timeout(
            Duration::from_secs(5),
            sim::connect(&node.env, &node.host, &node.settings.controller, CONTROLLER_PORT),
        )
        .await;
        if let Ok(Ok(stream)) = connected {
            control_session(&node, stream, &mut queue).await;
        }
        node.process.sleep(RECONNECT).await;
    }
}

async fn control_session(
    node: &Rc<Node>,
    stream: TcpStream,
    queue: &mut mpsc::UnboundedReceiver<(ToController, Awaiting)>,
) {
    let (mut read, mut write) = stream.into_split();
    let mut awaiting: VecDeque<Awaiting> = VecDeque::new();
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let broker = node.broker.borrow().id();
    let mut heartbeat = tokio::time::interval(Duration::from_millis(HEARTBEAT_INTERVAL_MS));
    let mut last_heard_ms = node.now_ms();
    loop {
        let message = tokio::select! {
            _ = heartbeat.tick() => {
                // Unanswered for too long: the stream lost bytes (a partition drops them, and
                // turmoil does not retransmit) or the controller is gone. Kafka's broker
                // times the heartbeat request out and reconnects; so does this one.
                if !awaiting.is_empty() && node.now_ms() - last_heard_ms > CONTROL_TIMEOUT_MS {
                    node.env.note(&node.host, "kafka.controller_connection_timed_out");
                    return;
                }
                Some((ToController::Heartbeat { broker }, Awaiting::Heartbeat))
            }
            queued = queue.recv() => queued,
            read_some = read.read(&mut chunk) => {
                let n = match read_some { Ok(n) if n > 0 => n, _ => return };
                last_heard_ms = node.now_ms();
                buffer.extend_from_slice(&chunk[..n]);
                if !take_control_messages(node, &mut buffer, &mut awaiting) {
                    return;
                }
                None
            }
        };
        node.process.checkpoint().await;
        if let Some((message, waiter)) = message {
            assert!(awaiting.len() < CONTROL_QUEUE_MAX, "control answers never came");
            awaiting.push_back(waiter);
            if write.write_all(&encode(&message)).await.is_err() {
                return;
            }
        }
    }
}

/// Applies every whole message in `buffer`; false if the stream is garbled.
fn take_control_messages(node: &Rc<Node>, buffer: &mut Vec<u8>, awaiting: &mut VecDeque<Awaiting>) -> bool {
    loop {
        match decode::<ToBroker>(buffer) {
            Ok(Some((message, used))) => {
                buffer.drain(..used);
                on_control_message(node, message, awaiting);
            }
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

fn on_control_message(node: &Rc<Node>, message: ToBroker, awaiting: &mut VecDeque<Awaiting>) {
    if let ToBroker::Published(change) = message {
        node.apply(change.partition, change.state);
        return;
    }
    let waiter = awaiting.pop_front();
    match (message, waiter) {
        (ToBroker::AlterPartition { partition, result }, _) => match result {
            Ok(state) => node.apply(partition, state),
            Err(_) => node.broker.borrow_mut().alter_isr_refused(&partition),
        },
        (ToBroker::ProducerIds { first, length }, Some(Awaiting::ProducerIds(tx))) => {
            node.broker.borrow_mut().add_producer_id_block(first, length);
            let _ = tx.send(());
        }
        (ToBroker::TopicsCreated { results }, Some(Awaiting::TopicsCreated(tx))) => {
            let _ = tx.send(results);
        }
        (ToBroker::Heartbeat { fenced: true }, _) => node.env.note(&node.host, "kafka.broker_fenced"),
        _ => {}
    }
}

#[cfg(test)]
#[path = "sim_cluster_tests.rs"]
mod tests;
