//! What the relay publishes to: one message at a time, and `true` only once the broker has
//! acknowledged it (nsqd's `OK` to a PUB, Kafka's produce answer with acks=all, MQTT's
//! PUBACK to a QoS 1 PUBLISH). The relay marks a row sent only after that, so a crash
//! between the acknowledgement and the mark publishes the row again: at-least-once.
//!
//! The relay does not lean on a client library's own resend: a publish that fails or goes
//! unanswered leaves its row unmarked, and the next poll publishes it again (what a relay
//! calling `send().get()` or `token.Wait()` and giving up on an error does).

use super::kafka_publish::KafkaPublisher;
use super::mqtt_publish::MqttPublisher;
use crate::mqtt::sim_client::Subscribed;
use crate::nsq::client::{connect, encode_body, identify, ClientConfig};
use crate::nsq::link::Link;
use crate::nsq::protocol::{Command, FrameType};
use sim::history::MsgId;
use sim::Env;
use std::time::Duration;

/// Where a relay publishes, as the design wires it.
#[derive(Clone, Debug)]
pub enum Target {
    /// One nsqd; `client` carries the topic and the PUB timeout.
    Nsq { nsqd: String, client: Box<ClientConfig> },
    /// A Kafka cluster: `bootstrap.servers` and the topic.
    Kafka {
        brokers: Vec<String>,
        topic: String,
        timeout: Duration,
    },
    /// One MQTT broker. MQTT keeps nothing for a topic nobody subscribes to, so the relay
    /// waits for every subscriber's first SUBACK before its first publish.
    Mqtt {
        broker: String,
        topic: String,
        timeout: Duration,
        subscribed: (Subscribed, u32),
    },
}

/// A relay's live connection to its broker, by target.
pub enum Publisher {
    Nsq {
        nsqd: String,
        client: ClientConfig,
        link: Option<Link>,
    },
    Kafka(KafkaPublisher),
    Mqtt(MqttPublisher),
}

impl Publisher {
    pub fn new(target: &Target) -> Publisher {
        match target.clone() {
            Target::Nsq { nsqd, client } => Publisher::Nsq {
                nsqd,
                client: *client,
                link: None,
            },
            Target::Kafka {
                brokers,
                topic,
                timeout,
            } => Publisher::Kafka(KafkaPublisher::new(brokers, topic, timeout)),
            Target::Mqtt {
                broker,
                topic,
                timeout,
                subscribed,
            } => Publisher::Mqtt(MqttPublisher::new(broker, topic, timeout, subscribed)),
        }
    }

    /// Publishes message `id` (with its key) and waits for the broker's acknowledgement;
    /// false on an error or no answer in time.
    pub async fn publish(&mut self, env: &Env, me: &str, id: MsgId, key: Option<&str>) -> bool {
        match self {
            Publisher::Nsq { nsqd, client, link } => {
                publish_nsq(env, me, nsqd, client, link, encode_body(id, key)).await
            }
            Publisher::Kafka(kafka) => kafka.publish(env, me, id, key).await,
            Publisher::Mqtt(mqtt) => mqtt.publish(env, me, id).await,
        }
    }
}

/// One PUB, reconnecting (and IDENTIFYing) first if needed; false on an error or no
/// answer (then the row stays unmarked, and a PUB that nsqd applied is published again).
async fn publish_nsq(
    env: &Env,
    me: &str,
    nsqd: &str,
    client: &ClientConfig,
    link: &mut Option<Link>,
    body: Vec<u8>,
) -> bool {
    if link.as_ref().is_none_or(|l| !l.sender.is_alive()) {
        let Some(mut fresh) = connect(env, me, nsqd, client).await else {
            return false;
        };
        match fresh
            .request(&identify(client, false), client.publish_timeout)
            .await
        {
            Some((FrameType::Response, _)) => *link = Some(fresh),
            _ => return false,
        }
    }
    let open = link.as_mut().expect("connected above");
    let command = Command::Pub {
        topic: client.topic.clone(),
        body,
    };
    match open.request(&command, client.publish_timeout).await {
        Some((FrameType::Response, data)) if data == b"OK" => true,
        _ => {
            *link = None; // answers match requests in order: start afresh
            false
        }
    }
}
