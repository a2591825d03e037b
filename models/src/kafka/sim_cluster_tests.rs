//! The cluster in the simulation, driven by a hand-written client on Kafka's wire protocol:
//! the controller elects leaders, followers replicate, acks=all answers once the ISR has the
//! write, and a killed leader is replaced; a group's committed offset outlives its
//! coordinator (the next leader of its `__consumer_offsets` partition loads it).

use super::*;
use crate::kafka::batch::{Batch, Record};
use crate::kafka::controller::ControllerConfig;
use crate::kafka::sim_controller::{self, Leaders, TopicSpec};
use crate::kafka::wire::{decode_response, encode_request, Response};
use crate::kafka::wire_records::encode_batch;
use kafka_protocol::messages::{produce_request, MetadataRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use sim::fault::{FaultAction, ScheduledFault, Topology};
use sim::history::{EventKind, MsgId};
use sim::scenario::Scenario;

struct Cluster3 {
    leaders: Leaders,
    /// `offsets.topic.num.partitions` of the brokers.
    offsets_partitions: i32,
    /// The client that runs.
    client: ClientKind,
}

/// Which client a [`Cluster3`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientKind {
    /// Three acks=all produces.
    Producer,
    /// An offset commit, read back.
    Committer,
    /// A transaction over orders-0 coordinated by another broker, committed at this time
    /// (ms of simulated time), then the partition's LSO watched.
    Transactional { commit_at_ms: u64 },
}

fn cluster() -> Cluster {
    Cluster {
        cluster_id: "t".into(),
        controller: 0,
        brokers: (1..=3).map(|i| (i, format!("broker{i}"), 9092)).collect(),
    }
}

/// One request on a fresh connection; `None` on any failure.
async fn call(env: &Env, to: &str, version: i16, request: &Request) -> Option<Response> {
    let stream = tokio::time::timeout(
        Duration::from_secs(2),
        sim::connect(env, "client", to, BROKER_PORT),
    )
    .await
    .ok()?
    .ok()?;
    let (mut read, mut write) = stream.into_split();
    let (in_flight, bytes) = encode_request(1, "client", version, request);
    write.write_all(&bytes).await.ok()?;
    let mut frames = FrameDecoder::default();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(2), read.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        if let Some(frame) = frames.decode(&chunk[..n]).ok()?.into_iter().next() {
            return decode_response(frame, &in_flight).ok();
        }
    }
}

async fn leader_of_partition_0(env: &Env) -> Option<String> {
    for broker in ["broker1", "broker2", "broker3"] {
        let request = Request::Metadata(MetadataRequest::default().with_topics(None));
        if let Some(Response::Metadata(m)) = call(env, broker, 12, &request).await {
            let leader = m.topics.first()?.partitions.first()?.leader_id.0;
            if leader > 0 {
                return Some(format!("broker{leader}"));
            }
        }
    }
    None
}

fn produce(id: u64) -> Request {
    let batch = Batch::plain(vec![Record {
        key: None,
        value: Some(id.to_string().into_bytes()),
    }]);
    let partition = produce_request::PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(encode_batch(&batch, 0)));
    let topic = produce_request::TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("orders")))
        .with_partition_data(vec![partition]);
    Request::Produce(
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5_000)
            .with_topic_data(vec![topic]),
    )
}

/// Publishes messages 1..=3 with acks=all, one a second, each to the leader of the moment.
async fn client(env: Env) -> turmoil::Result {
    for id in 1..=3u64 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        env.record(
            "client",
            EventKind::Publish {
                id: MsgId(id),
                producer: "client".into(),
                seq: id,
                key: None,
            },
        );
        for _attempt in 0..20 {
            let Some(leader) = leader_of_partition_0(&env).await else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            if let Some(Response::Produce(p)) = call(&env, &leader, 9, &produce(id)).await {
                let answer = &p.responses[0].partition_responses[0];
                if answer.error_code == 0 {
                    env.record(
                        "client",
                        EventKind::PublishOk {
                            id: MsgId(id),
                            partition: Some(format!("orders-0@{leader}").into()),
                            offset: Some(answer.base_offset),
                        },
                    );
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}

impl sim::Design for Cluster3 {
    fn topology(&self) -> Topology {
        let hosts = ["controller", "broker1", "broker2", "broker3", "client"]
            .map(String::from)
            .to_vec();
        Topology::new(hosts).with_dynamic_role("leader", "the leader of orders-0")
    }
    fn install<'a>(&'a self, sim: &mut turmoil::Sim<'a>, env: &Env) {
        let (env_c, leaders) = (env.clone(), self.leaders.clone());
        sim.host("controller", move || {
            let topic = TopicSpec {
                name: "orders".into(),
                partitions: 1,
                replication_factor: 3,
            };
            sim_controller::run(
                env_c.clone(),
                "controller".into(),
                ControllerConfig::default(),
                vec![1, 2, 3],
                vec![topic],
                leaders.clone(),
            )
        });
        for id in 1..=3 {
            let env = env.clone();
            let settings = BrokerSettings {
                cluster: cluster(),
                controller: "controller".into(),
                partition: PartitionConfig {
                    min_insync_replicas: 2,
                    // Short for transactions, so a partitioned follower leaves the ISR
                    // within the run and the other brokers' writes go on without it. Not
                    // shorter: a follower's fetcher asks its leaders in turn, so one
                    // unreachable leader (2 s request timeout) slows its other fetches.
                    replica_lag_time_max_ms: match self.client {
                        ClientKind::Transactional { .. } => 5_000,
                        _ => PartitionConfig::default().replica_lag_time_max_ms,
                    },
                    ..PartitionConfig::default()
                },
                log: LogConfig::default(),
                group: crate::kafka::group::GroupConfig {
                    offsets_topic_partitions: self.offsets_partitions,
                    ..crate::kafka::group::GroupConfig::default()
                },
                transactions: TxnSettings::default(),
                watermarks: None,
            };
            sim.host(format!("broker{id}").as_str(), move || {
                run(env.clone(), format!("broker{id}"), id, settings.clone())
            });
        }
        let env = env.clone();
        match self.client {
            ClientKind::Committer => sim.client("client", committer(env)),
            ClientKind::Producer => sim.client("client", client(env)),
            ClientKind::Transactional { commit_at_ms } => {
                sim.client("client", txn::transactional(env, commit_at_ms))
            }
        }
    }
    fn pending(&self, _env: &Env) -> Option<String> {
        None
    }
    fn resolve_role(&self, role: &str, _env: &Env) -> Option<String> {
        let tp = TopicPartition {
            topic: "orders".into(),
            partition: 0,
        };
        (role == "leader").then(|| {
            self.leaders
                .borrow()
                .get(&tp)
                .copied()
                .flatten()
                .map(|l| format!("broker{l}"))
        })?
    }
}

fn run_cluster(schedule: Vec<ScheduledFault>) -> sim::History {
    let scenario = Scenario::parse(
        "t.toml",
        "design = \"cluster3\"\n[run]\nfault_phase_ms = 20000\ndrain_ms = 1000\n",
    )
    .unwrap();
    let design = Cluster3 {
        leaders: Rc::new(RefCell::new(BTreeMap::new())),
        offsets_partitions: 3,
        client: ClientKind::Producer,
    };
    sim::run(&scenario, &design, schedule, 1).history
}

fn acknowledged(history: &sim::History) -> Vec<(u64, i64, String)> {
    history
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PublishOk {
                id,
                partition: Some(p),
                offset: Some(o),
            } => Some((id.0, *o, p.to_string())),
            _ => None,
        })
        .collect()
}

#[test]
fn acks_all_writes_are_acknowledged_in_order_by_the_elected_leader() {
    let history = run_cluster(Vec::new());
    let acked = acknowledged(&history);
    let offsets: Vec<(u64, i64)> = acked.iter().map(|(id, o, _)| (*id, *o)).collect();
    assert_eq!(offsets, [(1, 0), (2, 1), (3, 2)], "{acked:?}");
    assert!(
        acked.iter().all(|(_, _, p)| p.ends_with("@broker1")),
        "broker1 leads: {acked:?}"
    );
}

#[test]
fn a_killed_leader_is_fenced_and_the_next_in_sync_replica_takes_over() {
    let kill = ScheduledFault::new(
        1_500,
        FaultAction::Kill {
            host: "broker1".into(),
        },
    );
    let history = run_cluster(vec![kill]);
    let acked = acknowledged(&history);
    assert_eq!(acked.len(), 3, "{acked:?}");
    assert_eq!(acked[0].2, "orders-0@broker1");
    assert!(
        acked[1..].iter().all(|(_, _, p)| p == "orders-0@broker2"),
        "{acked:?}"
    );
    let offsets: Vec<i64> = acked.iter().map(|(_, o, _)| *o).collect();
    assert_eq!(offsets, [0, 1, 2], "the new leader continues the log");
    let elected = history.events().iter().any(|e| {
        matches!(&e.kind, EventKind::Note { name, detail: Some(d) } if name == "kafka.leader_changed" && d.contains("leader broker2"))
    });
    assert!(elected, "the controller's election is in the history");
}

/// The coordinator of group "g" as (broker host, error code), asking `via`.
async fn coordinator(env: &Env, via: &str) -> Option<(String, i16)> {
    let request = Request::FindCoordinator(
        kafka_protocol::messages::FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")),
    );
    let Some(Response::FindCoordinator(found)) = call(env, via, 3, &request).await else {
        return None;
    };
    Some((format!("broker{}", found.node_id.0), found.error_code))
}

/// A simple commit (generation -1) of offset `offset` for orders-0, or a fetch of it.
fn offset_request(offset: Option<i64>) -> (i16, Request) {
    use kafka_protocol::messages::{offset_commit_request as oc, offset_fetch_request as of, GroupId};
    let group = GroupId(StrBytes::from_static_str("g"));
    let topic = TopicName(StrBytes::from_static_str("orders"));
    match offset {
        Some(offset) => (
            8,
            Request::OffsetCommit(
                kafka_protocol::messages::OffsetCommitRequest::default()
                    .with_group_id(group)
                    .with_generation_id_or_member_epoch(-1)
                    .with_topics(vec![oc::OffsetCommitRequestTopic::default()
                        .with_name(topic)
                        .with_partitions(vec![
                            oc::OffsetCommitRequestPartition::default().with_committed_offset(offset)
                        ])]),
            ),
        ),
        None => (
            6,
            Request::OffsetFetch(
                kafka_protocol::messages::OffsetFetchRequest::default()
                    .with_group_id(group)
                    .with_topics(Some(vec![of::OffsetFetchRequestTopic::default()
                        .with_name(topic)
                        .with_partition_indexes(vec![0])])),
            ),
        ),
    }
}

/// Commits offset 42 for group "g" through its coordinator, then every second reads it
/// back from whichever broker coordinates "g" then: notes `group.committed` and
/// `group.fetched` with the coordinator and the offset.
async fn committer(env: Env) -> turmoil::Result {
    let mut committed = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some((host, 0)) = coordinator(&env, "broker3").await else {
            continue;
        };
        let (version, request) = offset_request((!committed).then_some(42));
        match call(&env, &host, version, &request).await {
            Some(Response::OffsetCommit(c)) if c.topics[0].partitions[0].error_code == 0 => {
                env.note_with("client", "group.committed", host);
                committed = true;
            }
            Some(Response::OffsetFetch(f)) if f.error_code == 0 => {
                let offset = f.topics[0].partitions[0].committed_offset;
                env.note_with("client", "group.fetched", format!("{host} {offset}"));
            }
            _ => {}
        }
    }
    Ok(())
}

fn notes(history: &sim::History, wanted: &str) -> Vec<String> {
    history
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Note { name, detail } if name == wanted => detail.clone(),
            _ => None,
        })
        .collect()
}

fn run_committer(offsets_partitions: i32, schedule: Vec<ScheduledFault>) -> sim::History {
    let scenario = Scenario::parse(
        "t.toml",
        "design = \"cluster3\"\n[run]\nfault_phase_ms = 20000\ndrain_ms = 1000\n",
    )
    .unwrap();
    let design = Cluster3 {
        leaders: Rc::new(RefCell::new(BTreeMap::new())),
        offsets_partitions,
        client: ClientKind::Committer,
    };
    sim::run(&scenario, &design, schedule, 1).history
}

/// The first FindCoordinator has the controller create `__consumer_offsets`; the commit is
/// answered once replicated; the coordinator is killed, the partition's next leader loads
/// the offset from its copy of the log and answers with it.
#[test]
fn a_committed_offset_survives_the_coordinators_death_in_the_simulation() {
    // Group "g" hashes to offsets partition 103 % 3 = 1, led first by broker2.
    assert_eq!(crate::kafka::group_coordinator::partition_for("g", 3), 1);
    let kill = ScheduledFault::new(
        8_000,
        FaultAction::Kill {
            host: "broker2".into(),
        },
    );
    let history = run_committer(3, vec![kill]);
    let committed = notes(&history, "group.committed");
    assert_eq!(committed, ["broker2"], "{committed:?}");
    let fetched = notes(&history, "group.fetched");
    assert!(fetched.iter().any(|f| f == "broker2 42"), "{fetched:?}");
    assert!(
        fetched
            .iter()
            .any(|f| f.ends_with(" 42") && !f.starts_with("broker2")),
        "the new coordinator has the offset: {fetched:?}"
    );
    assert!(fetched.iter().all(|f| f.ends_with(" 42")), "{fetched:?}");
}

/// The same run with Kafka's 50 offsets partitions, to time against the test above
/// (`cargo test -- --ignored`): what `offsets_topic_partitions` costs a simulation.
#[test]
#[ignore]
fn a_committed_offset_with_kafkas_50_offsets_partitions() {
    let history = run_committer(50, Vec::new());
    assert!(notes(&history, "group.fetched")
        .iter()
        .all(|f| f.ends_with(" 42")));
    assert!(!notes(&history, "group.fetched").is_empty());
}

#[path = "sim_txn_tests.rs"]
mod txn;
