//! MQTT: a broker like mosquitto 2.0 (reference §3), built bottom-up as NSQ and Kafka were.
//!
//! Sans-I/O cores that take time as an input:
//! - [`packet`]: MQTT 3.1, 3.1.1 and 5.0 control packets, their encoding and an incremental
//!   decoder that bounds what a client can make the broker buffer;
//! - [`topic`]: topic names, topic filters and matching;
//! - [`session`]: one client's session: subscriptions, outbound QoS 1/2 messages in flight
//!   and queued, incoming QoS 2 messages awaiting PUBREL;
//! - [`broker`]: connections, CONNECT and sessions, routing, retained and will messages,
//!   keepalive, MQTT 5 reason codes, and the snapshot persistence saves.
//!
//! The real server: [`real`] (tokio sockets, the real clock, a snapshot file) and [`serve`]
//! (`jetsam serve mqtt broker`).
//!
//! Still to come: the design (hosts on turmoil, clients, the promise), MQTT 5 will delay,
//! shared subscriptions, message expiry and `queue_qos0_messages`.

pub mod broker;
#[cfg(test)]
mod broker_tests;
pub mod client;
#[cfg(test)]
mod client_tests;
pub mod design;
pub mod outbox;
pub mod packet;
#[cfg(test)]
mod packet_tests;
pub mod real;
pub mod serve;
pub mod session;
pub mod sim_broker;
pub mod sim_client;
pub mod topic;

pub use broker::BrokerConfig;
