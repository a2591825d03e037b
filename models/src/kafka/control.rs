//! The control plane between brokers and the controller in the simulation: heartbeats,
//! ISR changes, producer id blocks, topic creation, and the controller's published partition
//! states, as `[u32 len][JSON]` frames on one connection per broker.
//!
//! Real Kafka carries these as BrokerHeartbeat, AlterPartition, AllocateProducerIds,
//! CreateTopics and the metadata log (KRaft) on its own wire protocol. What a broker and the
//! controller decide is the same either way; the framing here is ours, so clients' traffic,
//! which is on Kafka's wire protocol, stays the part a real client could check.

use super::controller::{ControllerError, Published, TopicPartition};
use super::handler::TopicCreated;
use super::partition::{BrokerId, LeaderAndIsr};
use serde::{Deserialize, Serialize};

/// The controller's port.
pub const CONTROLLER_PORT: u16 = 9093;
/// KRaft's `broker.heartbeat.interval.ms`.
pub const HEARTBEAT_INTERVAL_MS: u64 = 2_000;

/// What a broker tells the controller.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToController {
    Heartbeat {
        broker: BrokerId,
    },
    AlterPartition {
        broker: BrokerId,
        partition: TopicPartition,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<BrokerId>,
    },
    AllocateProducerIds {
        broker: BrokerId,
    },
    CreateTopics {
        /// (name, partitions, replication factor)
        topics: Vec<(String, i32, i16)>,
    },
}

/// What the controller tells a broker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToBroker {
    /// A partition's new state (every change, and all of them when a broker connects).
    Published(Published),
    Heartbeat {
        fenced: bool,
    },
    AlterPartition {
        partition: TopicPartition,
        result: Result<LeaderAndIsr, ControllerError>,
    },
    ProducerIds {
        first: i64,
        length: i64,
    },
    TopicsCreated {
        results: Vec<TopicCreated>,
    },
}
