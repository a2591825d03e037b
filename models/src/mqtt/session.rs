//! One client's session on the broker, sans I/O (reference §3.2): its subscriptions, the
//! QoS 1/2 messages on their way to it (in flight, then queued), and the QoS 2 messages it
//! sent that wait for PUBREL. The session outlives its connection unless it is clean.
//!
//! Flow control follows mosquitto 2.0's `db__message_insert` and `db__ready_for_queue`
//! (src/database.c): at most `max_inflight` QoS 1/2 messages in flight; past that, queued
//! while the session's QoS 1/2 messages number fewer than `max_queued` *plus* the in-flight
//! window when connected (mosquitto subtracts `inflight_maximum` from its count only for a
//! connected client), or fewer than `max_queued` when offline; past that, dropped. QoS 0
//! messages are never queued for an offline session (`queue_qos0_messages` false).

// A sans-I/O core: every function reads at once (ARCHITECTURE.md, "Short functions").
#![deny(clippy::too_many_lines)]

use super::packet::{Ack, Packet, Properties, Publish, QoS, Subscription, Version};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// An application message as the broker holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5 message properties forwarded to MQTT 5 subscribers (payload format, expiry,
    /// content type, response topic, correlation data, user properties).
    pub properties: Properties,
}

/// Where an outbound QoS 1/2 message stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    /// PUBLISH sent (or to be re-sent), waiting for PUBACK or PUBREC.
    Published,
    /// PUBREL sent, waiting for PUBCOMP; the PUBLISH is never sent again [MQTT-4.3.3-1].
    Released,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    pub packet_id: u16,
    pub qos: QoS,
    pub retain: bool,
    pub stage: Stage,
    pub message: Message,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    pub qos: QoS,
    pub retain: bool,
    pub message: Message,
}

/// The broker's two limits on one session's outbound messages; 0 means no limit.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_inflight: usize,
    pub max_queued: usize,
}

/// What offering a message to a session did.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Send this PUBLISH now.
    Send(Packet),
    Queued,
    /// Dropped because the queue is full (mosquitto: "Outgoing messages are being dropped").
    Dropped,
    /// A QoS 0 message for an offline session: not kept.
    NotKept,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub client_id: String,
    pub version: Version,
    /// Seconds the session outlives its connection: `Some(0)` ends with it (CleanSession=1,
    /// or MQTT 5 Session Expiry 0), `None` never ends.
    pub expiry_s: Option<u32>,
    pub subscriptions: BTreeMap<String, Subscription>,
    /// The client's Receive Maximum (MQTT 5), else the broker's `max_inflight_messages`.
    pub send_window: usize,
    pub inflight: VecDeque<InFlight>,
    pub queued: VecDeque<Queued>,
    pub last_packet_id: u16,
    /// Incoming QoS 2 messages PUBREC'd and waiting for PUBREL, by packet id: they go on to
    /// subscribers at PUBREL (method A, reference §3.6).
    pub incoming: BTreeMap<u16, Message>,
    /// Incoming QoS 2 messages accepted past the in-flight window: mosquitto stores them
    /// without a PUBREC and sends it when one of `incoming` is released.
    pub incoming_held: VecDeque<(u16, Message)>,
    /// When its connection went away (`None` while connected).
    pub disconnected_at_ms: Option<u64>,
}

impl Session {
    pub fn new(client_id: &str, version: Version, expiry_s: Option<u32>, send_window: usize) -> Session {
        Session {
            client_id: client_id.to_string(),
            version,
            expiry_s,
            subscriptions: BTreeMap::new(),
            send_window,
            inflight: VecDeque::new(),
            queued: VecDeque::new(),
            last_packet_id: 0,
            incoming: BTreeMap::new(),
            incoming_held: VecDeque::new(),
            disconnected_at_ms: None,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.disconnected_at_ms.is_none()
    }

    /// QoS 1/2 messages on their way to the client: mosquitto's `msg_count12`.
    pub fn stored_count(&self) -> usize {
        self.inflight.len() + self.queued.len()
    }

    /// The next free packet id after the last one (mosquitto's `mosquitto__mid_generate`
    /// counts up and wraps, skipping 0; we also skip ids still in flight).
    fn next_packet_id(&mut self) -> u16 {
        assert!(
            self.inflight.len() < usize::from(u16::MAX),
            "every packet id in flight"
        );
        loop {
            self.last_packet_id = self.last_packet_id.wrapping_add(1).max(1);
            let id = self.last_packet_id;
            if self.inflight.iter().all(|m| m.packet_id != id) {
                return id;
            }
        }
    }

    fn window_open(&self) -> bool {
        self.send_window == 0 || self.inflight.len() < self.send_window
    }

    fn queue_open(&self, limits: Limits) -> bool {
        let window = if self.is_connected() { self.send_window } else { 0 };
        limits.max_queued == 0 || self.stored_count() < limits.max_queued + window
    }

    /// Offers a message matched by one subscription, at the delivered QoS.
    pub fn offer(&mut self, message: &Message, qos: QoS, retain: bool, limits: Limits) -> Offer {
        if qos == QoS::AtMostOnce {
            if !self.is_connected() {
                return Offer::NotKept;
            }
            return Offer::Send(Packet::Publish(publish(message, qos, retain, None, false)));
        }
        if self.is_connected() && self.window_open() {
            return Offer::Send(self.start_flight(message.clone(), qos, retain));
        }
        if !self.queue_open(limits) {
            return Offer::Dropped;
        }
        self.queued.push_back(Queued {
            qos,
            retain,
            message: message.clone(),
        });
        Offer::Queued
    }

    fn start_flight(&mut self, message: Message, qos: QoS, retain: bool) -> Packet {
        let packet_id = self.next_packet_id();
        let packet = Packet::Publish(publish(&message, qos, retain, Some(packet_id), false));
        self.inflight.push_back(InFlight {
            packet_id,
            qos,
            retain,
            stage: Stage::Published,
            message,
        });
        packet
    }

    /// Moves queued messages into the window; returns the PUBLISHes to send.
    pub fn fill(&mut self) -> Vec<Packet> {
        let mut sends = Vec::new();
        while self.is_connected() && self.window_open() {
            let Some(next) = self.queued.pop_front() else {
                break;
            };
            sends.push(self.start_flight(next.message, next.qos, next.retain));
        }
        sends
    }

    /// What a resumed session re-sends, in the original order [MQTT-4.4.0-1, MQTT-4.6.0-1]:
    /// PUBLISH with DUP=1 and the same id, or PUBREL; then what the window has room for.
    pub fn resume(&mut self) -> Vec<Packet> {
        let mut sends: Vec<Packet> = self
            .inflight
            .iter()
            .map(|m| match m.stage {
                Stage::Published => {
                    Packet::Publish(publish(&m.message, m.qos, m.retain, Some(m.packet_id), true))
                }
                Stage::Released => Packet::Pubrel(Ack::new(m.packet_id, 0)),
            })
            .collect();
        sends.extend(self.fill());
        sends
    }

    fn position(&self, packet_id: u16, qos: QoS, stage: Stage) -> Option<usize> {
        self.inflight
            .iter()
            .position(|m| m.packet_id == packet_id && m.qos == qos && m.stage == stage)
    }

    /// PUBACK, or a PUBREC with a reason code >= 0x80 (MQTT 5 [MQTT-4.4.0-2]: acknowledged,
    /// never re-sent), or PUBCOMP: the message is done. Returns whether it was in flight.
    pub fn complete(&mut self, packet_id: u16, qos: QoS, stage: Stage) -> bool {
        match self.position(packet_id, qos, stage) {
            Some(i) => {
                self.inflight.remove(i);
                true
            }
            None => false,
        }
    }

    /// PUBREC: the message moves on to PUBREL. Returns whether it was in flight.
    pub fn received(&mut self, packet_id: u16) -> bool {
        match self.position(packet_id, QoS::ExactlyOnce, Stage::Published) {
            Some(i) => {
                self.inflight[i].stage = Stage::Released;
                true
            }
            None => false,
        }
    }

    /// Forgets everything but the identity: a clean start.
    pub fn has_state(&self) -> bool {
        !self.subscriptions.is_empty()
            || !self.inflight.is_empty()
            || !self.queued.is_empty()
            || !self.incoming.is_empty()
            || !self.incoming_held.is_empty()
    }
}

/// A PUBLISH to a subscriber: the message's own properties only for MQTT 5 (the encoder
/// leaves them out for 3.1.1), and DUP only for a re-send [MQTT-3.3.1-3].
pub fn publish(message: &Message, qos: QoS, retain: bool, packet_id: Option<u16>, dup: bool) -> Publish {
    Publish {
        dup,
        qos,
        retain,
        topic: message.topic.clone(),
        packet_id,
        properties: message.properties.clone(),
        payload: message.payload.clone(),
    }
}
