//! The relay's Kafka publish: one record per produce request with acks=all, waited for, as
//! a relay calling the Java producer's `send(record).get()` does (reference §5.1 over
//! §2.1). Not idempotent: a relay that restarts is a new producer anyway (a new producer
//! id), so the leader could not recognise a copy of a record it already has; the relay's
//! own retry is the next poll.
//!
//! Like the Java client it asks a bootstrap broker for metadata (again after a disconnect
//! or an `InvalidMetadataException`), sends to the partition's leader, and picks the
//! partition by murmur2 of the key, or round-robin without one.

use crate::kafka::batch::{Batch, Record};
use crate::kafka::client::{
    conn_error_note, error_name, fetch_metadata, is_stale_metadata, Timeouts, TopicMetadata,
};
use crate::kafka::connection::Connection;
use crate::kafka::partitioner::Partitioner;
use crate::kafka::wire::{Request, Response};
use crate::kafka::wire_records::encode_batch;
use crate::source::encode_value;
use kafka_protocol::messages::{produce_request, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use sim::history::MsgId;
use sim::Env;
use std::collections::BTreeMap;
use std::time::Duration;

/// `acks=all`: every in-sync replica has the record before the leader answers.
const ACKS_ALL: i16 = -1;

pub struct KafkaPublisher {
    brokers: Vec<String>,
    topic: String,
    /// The connect and request timeouts (the relay's publish timeout).
    timeout: Duration,
    metadata: Option<TopicMetadata>,
    connections: BTreeMap<i32, Connection>,
    partitioner: Partitioner,
    bootstrap_next: usize,
}

impl KafkaPublisher {
    pub fn new(brokers: Vec<String>, topic: String, timeout: Duration) -> KafkaPublisher {
        assert!(!brokers.is_empty(), "bootstrap.servers names a broker");
        KafkaPublisher {
            brokers,
            topic,
            timeout,
            metadata: None,
            connections: BTreeMap::new(),
            partitioner: Partitioner::default(),
            bootstrap_next: 0,
        }
    }

    /// Sends the record for message `id` and waits for the leader's answer; true only on
    /// an answer without error for its partition.
    pub async fn publish(&mut self, env: &Env, me: &str, id: MsgId, key: Option<&str>) -> bool {
        let Some(metadata) = self.metadata(env, me).await else {
            return false;
        };
        let key = key.map(|k| k.as_bytes().to_vec());
        let partition = self
            .partitioner
            .partition(key.as_deref(), metadata.partitions() as u32) as i32;
        let Some(leader) = metadata.leaders.get(&partition).copied().flatten() else {
            env.note_with(me, "relay.kafka_no_leader", format!("partition {partition}"));
            self.metadata = None;
            return false;
        };
        let Some(leader_host) = metadata.brokers.get(&leader).cloned() else {
            self.metadata = None;
            return false;
        };
        if !self.connections.get(&leader).is_some_and(Connection::is_open) {
            match Connection::open(env, me, &leader_host, self.timeout, self.timeout).await {
                Ok(connection) => {
                    self.connections.insert(leader, connection);
                }
                Err(error) => {
                    env.note_with(me, "relay.kafka_error", conn_error_note(&error).to_string());
                    self.metadata = None;
                    return false;
                }
            }
        }
        let record = Record {
            key,
            value: Some(encode_value(id)),
        };
        let request = self.produce_request(partition, record, env.now().0 / 1000);
        let connection = self.connections.get_mut(&leader).expect("opened above");
        match connection.request(&request).await {
            Ok(Response::Produce(answer)) => self.settle(env, me, partition, &answer),
            Ok(_) | Err(_) => {
                // No answer we can read: the record may or may not be in the log.
                env.note(me, "relay.kafka_unanswered");
                self.connections.remove(&leader);
                self.metadata = None;
                false
            }
        }
    }

    /// Metadata from the next bootstrap broker, if the relay has none that is fresh.
    async fn metadata(&mut self, env: &Env, me: &str) -> Option<TopicMetadata> {
        if self.metadata.is_none() {
            let broker = self.brokers[self.bootstrap_next % self.brokers.len()].clone();
            self.bootstrap_next = self.bootstrap_next.wrapping_add(1);
            let timeouts = Timeouts {
                connect: self.timeout,
                request: self.timeout,
            };
            match fetch_metadata(env, me, &broker, &self.topic, timeouts).await {
                Ok(metadata) if metadata.partitions() > 0 => self.metadata = Some(metadata),
                Ok(_) => {}
                Err(error) => env.note_with(me, "relay.kafka_metadata_failed", error),
            }
        }
        self.metadata.clone()
    }

    fn produce_request(&self, partition: i32, record: Record, now_ms: u64) -> Request {
        let data = produce_request::PartitionProduceData::default()
            .with_index(partition)
            .with_records(Some(encode_batch(&Batch::plain(vec![record]), now_ms as i64)));
        let topic = produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(self.topic.clone())))
            .with_partition_data(vec![data]);
        let timeout_ms = i32::try_from(self.timeout.as_millis()).unwrap_or(i32::MAX);
        Request::Produce(
            ProduceRequest::default()
                .with_acks(ACKS_ALL)
                .with_timeout_ms(timeout_ms)
                .with_topic_data(vec![topic]),
        )
    }

    /// The answer for our partition: an error code names why (NOT_ENOUGH_REPLICAS, a
    /// leader that moved), and a stale-metadata error asks for metadata again.
    fn settle(
        &mut self,
        env: &Env,
        me: &str,
        partition: i32,
        answer: &kafka_protocol::messages::ProduceResponse,
    ) -> bool {
        let code = answer
            .responses
            .iter()
            .filter(|t| t.name.0.as_str() == self.topic)
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == partition)
            .map(|p| p.error_code);
        match code {
            Some(0) => true,
            Some(code) => {
                env.note_with(me, "relay.kafka_error", error_name(code));
                if is_stale_metadata(code) {
                    self.metadata = None;
                }
                false
            }
            None => {
                env.note_with(me, "relay.kafka_error", "no answer for the partition".into());
                false
            }
        }
    }
}
