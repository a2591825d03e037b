//! The simulated producer and consumer against a small broker written here: one turmoil
//! host running one `Broker<MemLog>` behind `handler::handle`, leading every partition of
//! the topic alone. Each test runs a whole simulation (`sim::run`) and reads the history.

use super::broker::{Broker, BrokerOutput, PartitionAnswer, RequestId};
use super::client::partition_name;
use super::connection::KAFKA_PORT;
use super::consumer::{run_consumer, ConsumerProgress, ConsumerSettings};
use super::controller::TopicPartition;
use super::handler::{handle, produce_response, Cluster, Handled};
use super::mem_log::MemLog;
use super::partition::{LeaderAndIsr, PartitionConfig};
use super::partitioner::partition_for_key;
use super::producer::{run_producer, ProducerSettings};
use super::wire::{
    decode_request, encode_response, unsupported_api_versions_response, FrameDecoder, Inbound, Response,
};
use crate::source::Source;
use bytes::Bytes;
use sim::checker::log_duplicate::LOG_DUPLICATE;
use sim::fault::Topology;
use sim::history::{EventKind, MsgId};
use sim::{Design, Env, RunOutcome, Scenario};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::TcpListener;

const TOPIC: &str = "orders";
const BROKER: &str = "broker1";
const PRODUCER: &str = "producer1";
const CONSUMER: &str = "consumer1";

/// The broker host's memory, and the high watermarks it shows the design (for the drain).
struct BrokerState {
    broker: Broker<MemLog>,
    cluster: Cluster,
    answered: BTreeMap<RequestId, Vec<PartitionAnswer>>,
    next_request: u64,
}

type Watermarks = Rc<RefCell<BTreeMap<i32, i64>>>;

fn broker_state(partitions: i32) -> BrokerState {
    let mut broker = Broker::new(1, PartitionConfig::default());
    for partition in 0..partitions {
        let state = LeaderAndIsr {
            leader: Some(1),
            leader_epoch: 0,
            isr: vec![1],
            replicas: vec![1],
            partition_epoch: 0,
        };
        let tp = TopicPartition {
            topic: TOPIC.into(),
            partition,
        };
        broker.apply(tp, state, 0, &mut |_| MemLog::default());
    }
    broker.add_producer_id_block(1_000, 1_000_000);
    let cluster = Cluster {
        cluster_id: "jetsam".into(),
        controller: 1,
        brokers: vec![(1, BROKER.into(), i32::from(KAFKA_PORT))],
    };
    BrokerState {
        broker,
        cluster,
        answered: BTreeMap::new(),
        next_request: 0,
    }
}

async fn run_broker(env: Env, partitions: i32, watermarks: Watermarks) -> turmoil::Result {
    let process = env.process(BROKER);
    let _running = process.start();
    let state = Rc::new(RefCell::new(broker_state(partitions)));
    let listener = TcpListener::bind(("0.0.0.0", KAFKA_PORT)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let (env, state, watermarks) = (env.clone(), state.clone(), watermarks.clone());
        tokio::task::spawn_local(async move {
            let (mut read, mut write) = stream.into_split();
            let mut decoder = FrameDecoder::default();
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = match read.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let Ok(frames) = decoder.decode(&chunk[..n]) else {
                    return;
                };
                for frame in frames {
                    let Some(answer) = answer(&env, &state, &watermarks, frame).await else {
                        continue;
                    };
                    if write.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}

/// One request's answer, in order: a produce that waits is waited for here, as Kafka mutes
/// the connection until it is answered.
async fn answer(
    env: &Env,
    state: &RefCell<BrokerState>,
    watermarks: &Watermarks,
    frame: Bytes,
) -> Option<Bytes> {
    let (header, request) = match decode_request(frame) {
        Ok(Inbound::Request { header, request }) => (header, request),
        Ok(Inbound::UnsupportedApiVersions { header }) => {
            let response = Response::ApiVersions(unsupported_api_versions_response());
            return Some(encode_response(&header, &response));
        }
        Err(error) => panic!("the clients sent a request the broker refuses: {error}"),
    };
    let now_ms = || env.now().0 / 1_000;
    let handled = {
        let mut s = state.borrow_mut();
        s.next_request += 1;
        let id = RequestId(s.next_request);
        let BrokerState { broker, cluster, .. } = &mut *s;
        handle(broker, cluster, request, id, now_ms())
    };
    let response = match handled {
        Handled::Respond(response) => Some(response),
        Handled::Silent => None,
        Handled::Waiting(id) => Some(wait_for(state, id, now_ms).await),
        other => panic!("the test broker does not do {other:?}"),
    };
    let s = state.borrow();
    for tp in s.broker.metadata().keys() {
        let hw = s.broker.replica(tp).map_or(0, |r| r.high_watermark());
        watermarks.borrow_mut().insert(tp.partition, hw);
    }
    response.map(|r| encode_response(&header, &r))
}

async fn wait_for(state: &RefCell<BrokerState>, id: RequestId, now_ms: impl Fn() -> u64) -> Response {
    loop {
        {
            let mut s = state.borrow_mut();
            s.broker.tick(now_ms());
            for output in s.broker.take_outputs() {
                if let BrokerOutput::Produced { request, answers } = output {
                    s.answered.insert(request, answers);
                }
            }
            if let Some(answers) = s.answered.remove(&id) {
                return produce_response(answers);
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// One broker, one producer, one consumer assigned every partition.
struct Clients {
    partitions: i32,
    producer: ProducerSettings,
    consumer: ConsumerSettings,
    source: Rc<Source>,
    progress: ConsumerProgress,
    watermarks: Watermarks,
}

impl Clients {
    fn new(scenario: &Scenario, partitions: i32) -> Clients {
        let mut producer = ProducerSettings::new(TOPIC, vec![BROKER.into()]);
        producer.connect_timeout_ms = 500;
        producer.publish_interval_ms = scenario.workload.publish_interval_ms;
        producer.producer.request_timeout_ms = 200;
        producer.producer.delivery_timeout_ms = 10_000;
        let mut consumer = ConsumerSettings::new(TOPIC, vec![BROKER.into()], (0..partitions).collect());
        consumer.fetch_max_wait_ms = 20;
        consumer.connect_timeout_ms = 500;
        let progress = ConsumerProgress::default();
        consumer.progress = Some(progress.clone());
        Clients {
            partitions,
            producer,
            consumer,
            source: Rc::new(Source::new(&scenario.workload)),
            progress,
            watermarks: Rc::default(),
        }
    }
}

impl Design for Clients {
    fn topology(&self) -> Topology {
        Topology::new(vec![BROKER.into(), PRODUCER.into(), CONSUMER.into()])
    }

    fn install<'a>(&'a self, sim: &mut turmoil::Sim<'a>, env: &Env) {
        let (e, partitions, watermarks) = (env.clone(), self.partitions, self.watermarks.clone());
        sim.host(BROKER, move || {
            run_broker(e.clone(), partitions, watermarks.clone())
        });
        let (e, settings, source) = (env.clone(), self.producer.clone(), self.source.clone());
        sim.host(PRODUCER, move || {
            run_producer(e.clone(), PRODUCER.into(), settings.clone(), source.clone())
        });
        let (e, settings) = (env.clone(), self.consumer.clone());
        sim.host(CONSUMER, move || {
            run_consumer(e.clone(), CONSUMER.into(), settings.clone(), None)
        });
    }

    fn pending(&self, env: &Env) -> Option<String> {
        if self.source.unpublished() > 0 || env.process(PRODUCER).is_running() {
            return Some("still publishing".into());
        }
        let positions = self.progress.positions();
        let behind: Vec<String> = self
            .watermarks
            .borrow()
            .iter()
            .filter(|(p, hw)| positions.get(p).is_none_or(|at| at < hw))
            .map(|(p, hw)| format!("partition {p} read to {:?} of {hw}", positions.get(p)))
            .collect();
        (!behind.is_empty()).then(|| behind.join("; "))
    }
}

fn scenario(messages: u64, keys: u32, extra: &str) -> Scenario {
    let text = format!(
        r#"
name = "kafka clients"
design = "kafka-clients-test"

[workload]
messages = {messages}
keys = {keys}
publish_interval_ms = 2

[run]
fault_phase_ms = 1000
drain_ms = 20000

{extra}
"#
    );
    Scenario::parse("kafka-clients-test.toml", &text).unwrap()
}

fn run(scenario: &Scenario, design: &Clients) -> RunOutcome {
    let schedule = sim::schedule_for(scenario, &design.topology(), 1).unwrap();
    let outcome = sim::run(scenario, design, schedule, 1);
    let crashed: Vec<&EventKind> = outcome
        .history
        .events()
        .iter()
        .map(|e| &e.kind)
        .filter(|k| matches!(k, EventKind::Crash { .. }))
        .collect();
    assert!(crashed.is_empty(), "{crashed:?}");
    assert!(outcome.history.drained(), "{:?}", outcome.history.drain_timeout());
    outcome
}

/// Each acknowledged publish's partition and offset.
fn acked(outcome: &RunOutcome) -> BTreeMap<MsgId, (Option<String>, Option<i64>)> {
    let mut acked = BTreeMap::new();
    for event in outcome.history.events() {
        if let EventKind::PublishOk {
            id,
            partition,
            offset,
        } = &event.kind
        {
            assert!(
                acked
                    .insert(*id, (partition.as_ref().map(|p| p.to_string()), *offset))
                    .is_none(),
                "{id:?} acked twice"
            );
        }
    }
    acked
}

/// Every delivery's message, partition and offset, in order.
fn delivered(outcome: &RunOutcome) -> Vec<(MsgId, String, i64)> {
    outcome
        .history
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Deliver {
                id,
                partition: Some(p),
                offset: Some(o),
                ..
            } => Some((*id, p.to_string(), *o)),
            _ => None,
        })
        .collect()
}

/// The anomalies a topic of several partitions should not show: Kafka orders a partition,
/// not a topic, so reorders across partitions (global and producer scope) are expected.
fn unexpected_findings(outcome: &RunOutcome) -> Vec<String> {
    outcome
        .findings
        .iter()
        .filter(|a| !(a.kind.name() == "reorder" && matches!(a.kind.scope(), Some("global" | "producer"))))
        .map(|a| format!("{} {:?}: {}", a.kind.key(), a.id, a.detail))
        .collect()
}

fn count(outcome: &RunOutcome, note: &str) -> usize {
    let note = note.to_string();
    outcome
        .history
        .events()
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Note { name, .. } if *name == note))
        .count()
}

#[test]
fn every_message_is_acknowledged_with_its_offset_and_delivered_once_there() {
    let scenario = scenario(40, 0, "");
    let design = Clients::new(&scenario, 2);
    let outcome = run(&scenario, &design);
    let acked = acked(&outcome);
    assert_eq!(acked.len(), 40);
    let deliveries = delivered(&outcome);
    assert_eq!(deliveries.len(), 40, "{deliveries:?}");
    for (id, partition, offset) in &deliveries {
        assert_eq!(acked[id], (Some(partition.clone()), Some(*offset)), "{id:?}");
    }
    let used: std::collections::BTreeSet<&String> = deliveries.iter().map(|(_, p, _)| p).collect();
    assert_eq!(used.len(), 2, "round-robin uses both partitions");
    assert_eq!(unexpected_findings(&outcome), Vec::<String>::new());
}

#[test]
fn keyed_messages_land_on_the_murmur2_partition() {
    let scenario = scenario(30, 5, "");
    let design = Clients::new(&scenario, 3);
    let outcome = run(&scenario, &design);
    let acked = acked(&outcome);
    let mut keyed = 0;
    for event in outcome.history.events() {
        if let EventKind::Publish {
            id, key: Some(key), ..
        } = &event.kind
        {
            let expected = partition_for_key(key.as_bytes(), 3) as i32;
            assert_eq!(
                acked[id].0,
                Some(partition_name(TOPIC, expected)),
                "{id:?} key {key}"
            );
            keyed += 1;
        }
    }
    assert_eq!(keyed, 30);
    assert_eq!(delivered(&outcome).len(), 30);
    assert_eq!(unexpected_findings(&outcome), Vec::<String>::new());
}

#[test]
fn acks_0_1_and_all_deliver_everything_and_only_acks_0_has_no_offsets() {
    for acks in [0, 1, -1] {
        let scenario = scenario(20, 0, "");
        let mut design = Clients::new(&scenario, 1);
        design.producer.producer.acks = acks;
        design.producer.producer.enable_idempotence = acks == -1;
        let outcome = run(&scenario, &design);
        let acked = acked(&outcome);
        assert_eq!(acked.len(), 20, "acks={acks}");
        assert_eq!(
            acked.values().all(|(_, offset)| offset.is_none()),
            acks == 0,
            "acks={acks}: {acked:?}"
        );
        assert_eq!(delivered(&outcome).len(), 20, "acks={acks}");
        assert!(outcome.findings.is_empty(), "acks={acks}: {:?}", outcome.findings);
    }
}

const LOSE_REPLIES: &str = r#"
[[faults]]
at_ms = 20
action = "lose_replies"
from = "broker1"
to = "producer1"
duration_ms = 150
"#;

#[test]
fn a_lost_reply_retried_with_idempotence_leaves_one_copy_in_the_log() {
    let scenario = scenario(60, 0, LOSE_REPLIES);
    let design = Clients::new(&scenario, 1);
    let outcome = run(&scenario, &design);
    assert!(
        count(&outcome, "producer.request_timed_out") > 0,
        "the fault path ran"
    );
    assert_eq!(acked(&outcome).len(), 60);
    let deliveries = delivered(&outcome);
    assert_eq!(deliveries.len(), 60, "{deliveries:?}");
    assert!(outcome.findings.is_empty(), "{:?}", outcome.findings);
}

#[test]
fn a_lost_reply_retried_without_idempotence_duplicates_in_the_log() {
    let scenario = scenario(60, 0, LOSE_REPLIES);
    let mut design = Clients::new(&scenario, 1);
    design.producer.producer.enable_idempotence = false;
    let outcome = run(&scenario, &design);
    assert!(
        count(&outcome, "producer.request_timed_out") > 0,
        "the fault path ran"
    );
    let duplicates = outcome.findings.get(LOG_DUPLICATE);
    assert!(!duplicates.is_empty(), "{:?}", delivered(&outcome));
    assert!(delivered(&outcome).len() > 60);
}

#[test]
fn a_restarted_consumer_reads_the_log_again_from_offset_0() {
    let faults = r#"
[[faults]]
at_ms = 400
action = "kill"
host = "consumer1"

[[faults]]
at_ms = 500
action = "restart"
host = "consumer1"
"#;
    let scenario = scenario(20, 0, faults);
    let design = Clients::new(&scenario, 1);
    let outcome = run(&scenario, &design);
    let deliveries = delivered(&outcome);
    assert_eq!(deliveries.len(), 40, "every message twice: {deliveries:?}");
    let mut seen: BTreeMap<(MsgId, String, i64), usize> = BTreeMap::new();
    for d in deliveries {
        *seen.entry(d).or_default() += 1;
    }
    assert!(seen.values().all(|n| *n == 2), "the same offsets again: {seen:?}");
    assert!(outcome.findings.get(LOG_DUPLICATE).is_empty());
}

#[test]
fn the_same_seed_gives_the_same_history() {
    let scenario = scenario(30, 3, LOSE_REPLIES);
    let first = run(&scenario, &Clients::new(&scenario, 2)).history.hash();
    let second = run(&scenario, &Clients::new(&scenario, 2)).history.hash();
    assert_eq!(first, second);
}
