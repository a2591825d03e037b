//! The broker the outbox's relay publishes to (`broker = "nsq" | "kafka" | "mqtt"`), and
//! the Kafka and MQTT ones as components: the `kafka` design's controller, brokers and
//! `assign()` consumers, or the `mqtt` design's broker and subscribers, each with no
//! producer of its own (the relay is the producer). NSQ's nsqd and consumers are wired in
//! `mod.rs`, as before.

use super::publisher::Target;
use crate::kafka::design::Kafka;
use crate::mqtt::design::Mqtt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sim::fault::Topology;
use sim::promise::Promise;
use sim::Design;
use std::time::Duration;

/// The topic (Kafka and MQTT) the relay publishes to.
pub const TOPIC: &str = "orders";

/// What the relay publishes to and the consumers read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Broker {
    /// One nsqd; the relay's PUB waits for nsqd's `OK`.
    Nsq,
    /// Three Kafka brokers (replication factor 3, `min.insync.replicas` 2); the relay's
    /// produce request has acks=all and waits for the leader's answer.
    Kafka,
    /// One MQTT broker (mosquitto-like); the relay publishes at QoS 1 and waits for the
    /// PUBACK, subscribers subscribe at QoS 1.
    Mqtt,
}

/// The Kafka or MQTT side of the run.
pub enum Component {
    Kafka(Box<Kafka>),
    Mqtt(Box<Mqtt>),
}

impl Component {
    /// The component for `broker` with `consumers` consumers; `None` for NSQ.
    pub fn new(broker: Broker, consumers: u32) -> Option<Component> {
        match broker {
            Broker::Nsq => None,
            Broker::Kafka => {
                let config = crate::kafka::design::Config {
                    topic: TOPIC.into(),
                    // One partition per `assign()`ed consumer.
                    partitions: consumers as i32,
                    min_insync_replicas: 2,
                    consumers,
                    processing_ms: 0,
                    ..crate::kafka::design::Config::default()
                };
                Some(Component::Kafka(Box::new(Kafka::component(config))))
            }
            Broker::Mqtt => {
                let config = crate::mqtt::design::Config {
                    subscribers: consumers,
                    topic: TOPIC.into(),
                    qos: 1,
                    subscribe_qos: 1,
                    processing_ms: 0,
                    ..crate::mqtt::design::Config::default()
                };
                Some(Component::Mqtt(Box::new(Mqtt::component(config))))
            }
        }
    }

    pub fn design(&self) -> &dyn Design {
        match self {
            Component::Kafka(kafka) => kafka.as_ref(),
            Component::Mqtt(mqtt) => mqtt.as_ref(),
        }
    }

    /// Where the relays publish.
    pub fn target(&self, timeout: Duration) -> Target {
        let topology = self.design().topology();
        match self {
            Component::Kafka(_) => Target::Kafka {
                brokers: topology.hosts_of("broker").unwrap_or_default().to_vec(),
                topic: TOPIC.into(),
                timeout,
            },
            Component::Mqtt(mqtt) => Target::Mqtt {
                broker: crate::mqtt::design::BROKER_HOST.into(),
                topic: TOPIC.into(),
                timeout,
                subscribed: mqtt.subscribed(),
            },
        }
    }

    /// The component's hosts and roles; MQTT's subscribers also play `consumer`.
    pub fn topology(&self) -> Topology {
        let topology = self.design().topology();
        match self {
            Component::Kafka(_) => topology,
            Component::Mqtt(_) => {
                let subscribers = topology.hosts_of("subscriber").unwrap_or_default().to_vec();
                topology.with_role("consumer", subscribers)
            }
        }
    }

    /// The broker's own promise, whose windows (a loss the broker itself causes) excuse
    /// the outbox's.
    pub fn promise(&self) -> Promise {
        self.design().promise()
    }

    /// What the relay's acknowledgement is, for the promise's text.
    pub fn acknowledgement(&self) -> &'static str {
        match self {
            Component::Kafka(_) => "Kafka with acks=all",
            Component::Mqtt(_) => "MQTT at QoS 1 (PUBACK)",
        }
    }
}
