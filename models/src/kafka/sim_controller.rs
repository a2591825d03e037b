//! The controller host in the simulation: the [`Controller`] core behind one control-plane
//! connection per broker ([`super::control`]), its state kept on the host's disk.
//!
//! Every decision is written to disk and fsynced before any broker hears of it, as KRaft
//! commits its metadata log before brokers apply it; a restarted controller reads it back
//! with every broker fenced until it heartbeats again.

use super::control::{ToBroker, ToController, CONTROLLER_PORT};
use super::controller::{Controller, ControllerConfig, Published, Snapshot, TopicPartition};
use super::partition::BrokerId;
use crate::db::wire::{decode, encode};
use sim::disk::Disk;
use sim::{Env, Process};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::{TcpListener, TcpStream};

const STATE_FILE: &str = "controller/metadata.json";
/// How often session timeouts are checked.
const TICK: Duration = Duration::from_millis(100);
/// How often a connection looks for published changes to push.
const PUSH_INTERVAL: Duration = Duration::from_millis(5);
/// Bound on the published log a connection replays (a run makes far fewer changes).
const PUBLISHED_MAX: usize = 1_000_000;

/// Where the design sees each partition's leader, for faults on the dynamic role `leader`
/// (resolved when a fault fires): as the controller last committed it.
pub type Leaders = Rc<RefCell<BTreeMap<TopicPartition, Option<BrokerId>>>>;

/// The topic the design creates when the cluster starts.
#[derive(Clone, Debug)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: usize,
}

struct Shared {
    controller: Controller,
    /// Every change ever published, for connections to push in order.
    published: Vec<Published>,
    leaders: Leaders,
}

fn now_ms(env: &Env) -> u64 {
    env.now().0 / 1000
}

/// The controller process on `host`.
pub async fn run(
    env: Env,
    host: String,
    config: ControllerConfig,
    brokers: Vec<BrokerId>,
    topics: Vec<TopicSpec>,
    leaders: Leaders,
) -> turmoil::Result {
    let process = env.process(&host);
    let _running = process.start();
    let disk = env.disk(&host);
    let controller = match disk
        .read(STATE_FILE)
        .ok()
        .and_then(|b| serde_json::from_slice::<Snapshot>(&b).ok())
    {
        Some(snapshot) => Controller::restore(config, &brokers, snapshot),
        None => {
            let mut fresh = Controller::new(config, &brokers);
            for topic in &topics {
                fresh
                    .create_topic(&topic.name, topic.partitions, topic.replication_factor)
                    .expect("the design's topics are valid: checked when the scenario was built");
            }
            fresh
        }
    };
    let shared = Rc::new(RefCell::new(Shared {
        controller,
        published: Vec::new(),
        leaders,
    }));
    commit(&env, &host, &shared);
    let ticker = tokio::task::spawn_local(tick_loop(
        env.clone(),
        host.clone(),
        shared.clone(),
        process.clone(),
    ));
    let listener = TcpListener::bind(("0.0.0.0", CONTROLLER_PORT)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let (env, host, shared, process) = (env.clone(), host.clone(), shared.clone(), process.clone());
        tokio::task::spawn_local(serve_broker(env, host, shared, process, stream));
        if ticker.is_finished() {
            return Ok(());
        }
    }
}

/// Writes the controller's state durably, then makes its new decisions visible to brokers
/// and to the history (a `note` per change, which the timeline shows).
fn commit(env: &Env, host: &str, shared: &Rc<RefCell<Shared>>) {
    let mut shared = shared.borrow_mut();
    let changes = shared.controller.take_published();
    if changes.is_empty() && !shared.published.is_empty() {
        return;
    }
    let snapshot = serde_json::to_vec(&shared.controller.snapshot()).expect("state serializes");
    let current = shared
        .controller
        .partitions()
        .iter()
        .map(|(tp, s)| (tp.clone(), s.leader))
        .collect();
    // The leaders before these changes, to tell a failover from any other change.
    let mut previous = std::mem::replace(&mut *shared.leaders.borrow_mut(), current);
    let disk = env.disk(host);
    // Written whole, then fsynced: a power failure keeps the last committed state.
    let _ = disk
        .write_at(STATE_FILE, 0, &snapshot)
        .and_then(|_| disk.truncate(STATE_FILE, snapshot.len() as u64));
    let _ = disk.fsync(STATE_FILE);
    if shared.published.is_empty() {
        // A fresh start (or a restart): brokers get every partition's state on connect.
        let all: Vec<Published> = shared
            .controller
            .partitions()
            .iter()
            .map(|(tp, state)| Published {
                partition: tp.clone(),
                state: state.clone(),
                reason: "controller started".into(),
            })
            .collect();
        shared.published.extend(all);
    }
    for change in changes {
        let leader = change
            .state
            .leader
            .map_or("none".to_string(), |l| format!("broker{l}"));
        let detail = format!(
            "{}-{}: leader {leader}, epoch {}, isr {:?} ({})",
            change.partition.topic,
            change.partition.partition,
            change.state.leader_epoch,
            change.state.isr,
            change.reason
        );
        let before = previous
            .insert(change.partition.clone(), change.state.leader)
            .flatten();
        let name = note_name(&change, before);
        env.note_with(host, name, detail);
        shared.published.push(change);
    }
    assert!(
        shared.published.len() <= PUBLISHED_MAX,
        "more than {PUBLISHED_MAX} partition changes"
    );
}

/// What kind of change it is, counted by name: "sometimes" checks ask for a failover
/// (`kafka.leader_changed`: a partition led by one broker is now led by another), which
/// a cluster starting up never makes, or an unclean election.
fn note_name(change: &Published, before: Option<BrokerId>) -> &'static str {
    match (change.reason.contains("unclean"), before, change.state.leader) {
        (true, _, _) => "kafka.unclean_election",
        (false, _, None) => "kafka.partition_offline",
        (false, Some(old), Some(new)) if old != new => "kafka.leader_changed",
        (false, _, Some(_)) => "kafka.partition_state",
    }
}

async fn tick_loop(env: Env, host: String, shared: Rc<RefCell<Shared>>, process: Process) {
    loop {
        process.sleep(TICK).await;
        shared.borrow_mut().controller.tick(now_ms(&env));
        commit(&env, &host, &shared);
    }
}

/// One broker's control connection: its requests, answered, and every published change
/// pushed to it in order.
async fn serve_broker(
    env: Env,
    host: String,
    shared: Rc<RefCell<Shared>>,
    process: Process,
    stream: TcpStream,
) {
    let (mut read, mut write) = stream.into_split();
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut pushed = 0;
    loop {
        let backlog: Vec<Published> = shared.borrow().published[pushed..].to_vec();
        for change in backlog {
            pushed += 1;
            if write
                .write_all(&encode(&ToBroker::Published(change)))
                .await
                .is_err()
            {
                return;
            }
        }
        let read_some = tokio::time::timeout(PUSH_INTERVAL, read.read(&mut chunk)).await;
        process.checkpoint().await;
        let n = match read_some {
            Err(_) => continue, // nothing to read: push what changed
            Ok(Ok(n)) if n > 0 => n,
            Ok(_) => return,
        };
        buffer.extend_from_slice(&chunk[..n]);
        while let Ok(Some((message, used))) = decode::<ToController>(&buffer) {
            buffer.drain(..used);
            let answer = answer(&env, &shared, message);
            commit(&env, &host, &shared);
            if write.write_all(&encode(&answer)).await.is_err() {
                return;
            }
        }
        if decode::<ToController>(&buffer).is_err() {
            return; // garbled: drop the connection, as the broker would reconnect
        }
    }
}

fn answer(env: &Env, shared: &Rc<RefCell<Shared>>, message: ToController) -> ToBroker {
    let now = now_ms(env);
    let controller = &mut shared.borrow_mut().controller;
    match message {
        ToController::Heartbeat { broker } => ToBroker::Heartbeat {
            fenced: controller.heartbeat(broker, now),
        },
        ToController::AlterPartition {
            broker,
            partition,
            leader_epoch,
            partition_epoch,
            isr,
        } => ToBroker::AlterPartition {
            result: controller.alter_partition(broker, &partition, leader_epoch, partition_epoch, isr),
            partition,
        },
        ToController::AllocateProducerIds { broker } => match controller.allocate_producer_ids(broker) {
            Some((first, length)) => ToBroker::ProducerIds { first, length },
            None => ToBroker::Heartbeat { fenced: true },
        },
        ToController::CreateTopics { topics } => ToBroker::TopicsCreated {
            results: topics
                .into_iter()
                .map(|(name, partitions, replication)| {
                    let created = controller
                        .create_topic(&name, partitions, replication.max(0) as usize)
                        .map(|()| (partitions, replication));
                    (name, created)
                })
                .collect(),
        },
    }
}
