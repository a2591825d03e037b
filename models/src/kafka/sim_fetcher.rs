//! A broker's replica fetcher in the simulation: for every partition it follows, it asks
//! the leader where its log may have diverged (OffsetsForLeaderEpoch) and then fetches from
//! its log end, on Kafka's wire protocol with its broker id as `replica_id`.
//!
//! Kafka's fetcher long-polls: the leader holds a fetch up to `replica.fetch.wait.max.ms`
//! until data arrives. Our leader answers at once, so an idle follower fetches again after
//! [`IDLE_BACKOFF`]: replication lags a write by at most that plus the link latency.

use super::connection::Connection;
use super::controller::TopicPartition;
use super::error::KafkaError;
use super::partition::{FetchPosition, ReplicaFetch};
use super::sim_broker::Node;
use super::wire::{Request, Response};
use super::wire_records::decode_fetched_batches;
use kafka_protocol::messages::{
    fetch_request, list_offsets_request, offset_for_leader_epoch_request, BrokerId, FetchRequest,
    ListOffsetsRequest, OffsetForLeaderEpochRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// How long an idle follower waits before fetching again.
const IDLE_BACKOFF: Duration = Duration::from_millis(5);
/// `replica.socket.timeout.ms` is 30 s; a shorter bound keeps a follower of a dead leader
/// from sitting out half a fault phase (it learns of the new leader from the controller).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// `replica.fetch.max.bytes`.
const FETCH_BYTES_MAX: i32 = 1024 * 1024;

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// The fetcher task of a broker process.
pub(super) async fn run(node: Rc<Node>) {
    let mut peers: BTreeMap<String, Connection> = BTreeMap::new();
    loop {
        node.process.checkpoint().await;
        let question = node.epoch_questions.borrow_mut().pop_front();
        if let Some((partition, leader, epoch)) = question {
            let answer = ask_epoch_end(&node, &mut peers, &partition, leader, epoch).await;
            match answer {
                Some(answer) => node.broker.borrow_mut().epoch_end_answered(&partition, answer),
                None => {
                    // Unanswered: ask again after a pause, unless the leader has changed since.
                    node.epoch_questions
                        .borrow_mut()
                        .push_back((partition, leader, epoch));
                    node.process.sleep(IDLE_BACKOFF * 20).await;
                }
            }
            node.pump();
            continue;
        }
        let wanted = node.broker.borrow().follower_fetches();
        let mut by_leader: BTreeMap<i32, Vec<(TopicPartition, FetchPosition)>> = BTreeMap::new();
        for (partition, at) in wanted {
            by_leader.entry(at.leader).or_default().push((partition, at));
        }
        let mut copied = false;
        for (leader, partitions) in by_leader {
            copied |= fetch_from(&node, &mut peers, leader, partitions).await;
        }
        if !copied {
            node.process.sleep(IDLE_BACKOFF).await;
        }
    }
}

fn leader_host(leader: i32) -> String {
    format!("broker{leader}")
}

/// The open connection to `host`, opened (with ApiVersions, as a broker's own fetcher does)
/// if there is none or the last one closed.
async fn peer<'a>(
    node: &Node,
    peers: &'a mut BTreeMap<String, Connection>,
    host: &str,
) -> Option<&'a mut Connection> {
    if !peers.get(host).is_some_and(Connection::is_open) {
        let opened = Connection::open(&node.env, &node.host, host, REQUEST_TIMEOUT, REQUEST_TIMEOUT)
            .await
            .ok()?;
        peers.insert(host.to_string(), opened);
    }
    peers.get_mut(host)
}

async fn ask_epoch_end(
    node: &Node,
    peers: &mut BTreeMap<String, Connection>,
    partition: &TopicPartition,
    leader: i32,
    epoch: i32,
) -> Option<Option<(i32, i64)>> {
    let me = node.broker.borrow().id();
    let asked = offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
        .with_partition(partition.partition)
        .with_current_leader_epoch(-1)
        .with_leader_epoch(epoch);
    let request = Request::OffsetForLeaderEpoch(
        OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(me))
            .with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(topic(&partition.topic))
                    .with_partitions(vec![asked]),
            ]),
    );
    let host = leader_host(leader);
    let answer = peer(node, peers, &host).await?.request(&request).await;
    let Ok(Response::OffsetForLeaderEpoch(response)) = answer else {
        peers.remove(&host);
        return None;
    };
    let result = response.topics.first()?.partitions.first()?;
    if result.error_code != 0 {
        return None;
    }
    Some((result.leader_epoch >= 0).then_some((result.leader_epoch, result.end_offset)))
}

/// One fetch round from `leader`; true if any batch was copied.
async fn fetch_from(
    node: &Node,
    peers: &mut BTreeMap<String, Connection>,
    leader: i32,
    partitions: Vec<(TopicPartition, FetchPosition)>,
) -> bool {
    let me = node.broker.borrow().id();
    let mut topics: Vec<fetch_request::FetchTopic> = Vec::new();
    for (tp, at) in &partitions {
        let asked = fetch_request::FetchPartition::default()
            .with_partition(tp.partition)
            .with_current_leader_epoch(at.leader_epoch)
            .with_fetch_offset(at.offset)
            .with_partition_max_bytes(FETCH_BYTES_MAX);
        match topics.iter_mut().find(|t| t.topic.0.as_str() == tp.topic) {
            Some(t) => t.partitions.push(asked),
            None => topics.push(
                fetch_request::FetchTopic::default()
                    .with_topic(topic(&tp.topic))
                    .with_partitions(vec![asked]),
            ),
        }
    }
    let request = Request::Fetch(
        FetchRequest::default()
            .with_replica_id(BrokerId(me))
            .with_max_wait_ms(500)
            .with_topics(topics),
    );
    let host = leader_host(leader);
    let Some(peer) = peer(node, peers, &host).await else {
        return false;
    };
    let Ok(Response::Fetch(response)) = peer.request(&request).await else {
        peers.remove(&host);
        return false;
    };
    let mut copied = false;
    for topic_answer in response.responses {
        for data in topic_answer.partitions {
            let tp = TopicPartition {
                topic: topic_answer.topic.0.to_string(),
                partition: data.partition_index,
            };
            copied |= take_fetched(node, peers, &host, tp, data).await;
        }
    }
    node.pump();
    copied
}

async fn take_fetched(
    node: &Node,
    peers: &mut BTreeMap<String, Connection>,
    host: &str,
    tp: TopicPartition,
    data: kafka_protocol::messages::fetch_response::PartitionData,
) -> bool {
    let now = node.now_ms();
    if data.error_code == KafkaError::OffsetOutOfRange.code() {
        if let Some(end) = leader_end(node, peers, host, &tp).await {
            node.broker.borrow_mut().replica_out_of_range(&tp, end);
        }
        return false;
    }
    if data.error_code != 0 {
        return false;
    }
    let batches = data
        .records
        .as_ref()
        .map(decode_fetched_batches)
        .transpose()
        .ok()
        .flatten()
        .unwrap_or_default();
    let copied = !batches.is_empty();
    let answer = ReplicaFetch {
        batches,
        high_watermark: data.high_watermark,
        log_end_offset: -1,
    };
    node.broker.borrow_mut().replica_fetched(&tp, Ok(answer), now);
    copied
}

/// ListOffsets(latest) as a replica: the leader's log end.
async fn leader_end(
    node: &Node,
    peers: &mut BTreeMap<String, Connection>,
    host: &str,
    tp: &TopicPartition,
) -> Option<i64> {
    let me = node.broker.borrow().id();
    let asked = list_offsets_request::ListOffsetsPartition::default()
        .with_partition_index(tp.partition)
        .with_timestamp(-1);
    let request = Request::ListOffsets(
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(me))
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic(&tp.topic))
                .with_partitions(vec![asked])]),
    );
    let answer = peer(node, peers, host).await?.request(&request).await;
    let Ok(Response::ListOffsets(response)) = answer else {
        return None;
    };
    let p = response.topics.first()?.partitions.first()?;
    (p.error_code == 0).then_some(p.offset)
}
