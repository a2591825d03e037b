//! What the simulated producer and consumer share: the record value format, and what they
//! learn from Metadata (the brokers and each partition's leader).
//!
//! A record's value is the message's application id in decimal (ARCHITECTURE.md,
//! "Identity"); its key, when the workload has one, is the record's key.

use super::connection::{ConnError, Connection};
use super::error::KafkaError;
use super::wire::{Request, Response};
use kafka_protocol::messages::{metadata_request::MetadataRequestTopic, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use sim::Env;
use std::collections::BTreeMap;
use std::time::Duration;

/// The most partitions a topic may have here (a bound on what a Metadata answer may claim).
pub const TOPIC_PARTITIONS_MAX: usize = 4096;

/// The name the history gives a partition: `<topic>-<partition>`, as Kafka names it.
pub fn partition_name(topic: &str, partition: i32) -> String {
    format!("{topic}-{partition}")
}

/// One topic as a Metadata answer describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Broker id to host.
    pub brokers: BTreeMap<i32, String>,
    /// Partition to its leader's broker id; `None` while it has none (LEADER_NOT_AVAILABLE).
    pub leaders: BTreeMap<i32, Option<i32>>,
}

impl TopicMetadata {
    pub fn partitions(&self) -> usize {
        self.leaders.len()
    }

    /// The host of the partition's leader, if it has one the answer named.
    pub fn leader_host(&self, partition: i32) -> Option<&str> {
        let leader = (*self.leaders.get(&partition)?)?;
        self.brokers.get(&leader).map(String::as_str)
    }
}

/// Timeouts for a short request on a connection of its own.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
}

/// Asks `broker` for `topic`'s metadata on a connection opened for it. The Java client asks
/// its least-loaded node; any broker answers the same from the metadata it has.
pub async fn fetch_metadata(
    env: &Env,
    me: &str,
    broker: &str,
    topic: &str,
    timeouts: Timeouts,
) -> Result<TopicMetadata, String> {
    let mut connection = Connection::open(env, me, broker, timeouts.connect, timeouts.request)
        .await
        .map_err(|e| e.to_string())?;
    let wanted =
        MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))));
    let request = MetadataRequest::default()
        .with_topics(Some(vec![wanted]))
        .with_allow_auto_topic_creation(false);
    match connection.request(&Request::Metadata(request)).await {
        Ok(Response::Metadata(answer)) => parse_metadata(&answer, topic),
        Ok(other) => Err(format!("{:?} for Metadata", other.api_key())),
        Err(error) => Err(error.to_string()),
    }
}

fn parse_metadata(
    answer: &kafka_protocol::messages::MetadataResponse,
    topic: &str,
) -> Result<TopicMetadata, String> {
    let brokers = answer
        .brokers
        .iter()
        .map(|b| (b.node_id.0, b.host.to_string()))
        .collect();
    let Some(found) = answer
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
    else {
        return Err(format!("no metadata for topic {topic}"));
    };
    if found.error_code != 0 || found.partitions.is_empty() {
        return Err(format!("topic {topic}: {}", error_name(found.error_code)));
    }
    if found.partitions.len() > TOPIC_PARTITIONS_MAX {
        return Err(format!("topic {topic}: {} partitions", found.partitions.len()));
    }
    let leaders = found
        .partitions
        .iter()
        .map(|p| {
            let leader = (p.error_code == 0 && p.leader_id.0 >= 0).then_some(p.leader_id.0);
            (p.partition_index, leader)
        })
        .collect();
    let metadata = TopicMetadata { brokers, leaders };
    // The Java client numbers partitions 0..n; an answer with holes is not one it can use.
    let dense = metadata
        .leaders
        .keys()
        .copied()
        .eq(0..metadata.partitions() as i32);
    if !dense {
        return Err(format!("topic {topic}: partitions are not 0..n"));
    }
    Ok(metadata)
}

/// Kafka's name for an error code, for notes and reasons.
pub fn error_name(code: i16) -> String {
    match KafkaError::from_code(code) {
        Some(error) => error.name().to_string(),
        None => format!("error {code}"),
    }
}

/// Whether an error means the client's metadata is stale (Kafka's
/// `InvalidMetadataException`s: the client asks for new metadata).
pub fn is_stale_metadata(code: i16) -> bool {
    const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    code == UNKNOWN_TOPIC_OR_PARTITION
        || [
            KafkaError::NotLeaderOrFollower,
            KafkaError::LeaderNotAvailable,
            KafkaError::FencedLeaderEpoch,
        ]
        .iter()
        .any(|e| e.code() == code)
}

/// A connection error as a note name.
pub fn conn_error_note(error: &ConnError) -> &'static str {
    match error {
        ConnError::Connect(_) => "connect_failed",
        ConnError::Timeout => "request_timed_out",
        ConnError::Closed => "connection_closed",
        ConnError::Garbled(_) => "garbled_answer",
        ConnError::Unsupported(_) => "unsupported_api",
        ConnError::TooManyInFlight => "too_many_in_flight",
    }
}
