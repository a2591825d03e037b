//! The MQTT broker, sans I/O (reference §3): connections, sessions, routing, retained and
//! will messages, keepalive, and a snapshot of what mosquitto persists.
//!
//! The driver feeds it bytes ([`Broker::on_bytes`]), closes ([`Broker::on_closed`]) and
//! time ([`Broker::on_tick`]), and carries out its [`Out`]s. Decoding happens here, so the
//! simulated and the real server read the wire the same way. Time is `now_ms` from the
//! driver; nothing here reads a clock.
//!
//! Where MQTT leaves room, this follows mosquitto 2.0.11 as observed on the wire (reference
//! §3.6): malformed input closes without a reply; a wrong protocol level gets CONNACK 0x01;
//! granted QoS is the requested QoS; one copy per matching subscription; QoS 0 messages are
//! not queued for offline sessions; an incoming QoS 2 message goes on at PUBREL.

// A sans-I/O core: every function reads at once (ARCHITECTURE.md, "Short functions").
#![deny(clippy::too_many_lines)]

use super::packet::{
    self, Ack, Connect, MalformedPacket, Packet, Properties, PropertyValue, Publish, QoS, Version,
};
use super::session::{Limits, Message, Offer, Session, Stage};
use super::topic;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A connection, named by the driver.
pub type ConnId = u64;

/// The broker's options (`[config.broker]` of the MQTT design), named and defaulted as
/// mosquitto 2.0's `mosquitto.conf`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// mosquitto `max_inflight_messages`: QoS 1/2 messages in flight to one client at once
    /// (an MQTT 5 client's Receive Maximum replaces it); the rest are queued. 0: no limit.
    #[schemars(range(max = 65535))]
    pub max_inflight_messages: u32,
    /// mosquitto `max_queued_messages`: QoS 1/2 messages queued for one client past its
    /// in-flight window (online or offline); messages past it are dropped. 0: no limit.
    #[schemars(range(max = 1_000_000))]
    pub max_queued_messages: u32,
    /// mosquitto `persistence`: save retained messages and persistent sessions (with their
    /// subscriptions and queued, in-flight and incoming QoS 2 messages) and load them at
    /// start. Without it a restart starts empty.
    pub persistence: bool,
    /// mosquitto `autosave_interval`: seconds between saves when `persistence` is on (and at
    /// a clean shutdown). 0: save only at shutdown.
    #[schemars(range(max = 86_400))]
    pub autosave_interval_s: u64,
    /// mosquitto `allow_zero_length_clientid`: accept an empty client id (with
    /// CleanSession=1 in 3.1.1) and assign one.
    pub allow_zero_length_clientid: bool,
    /// mosquitto `max_packet_size`, in bytes: a packet whose fixed header declares more is
    /// refused before its body is buffered. The default is the protocol's own maximum
    /// (256 MiB), which is also mosquitto's, so every packet mosquitto takes is taken; the
    /// decoder never allocates from a declared length, so a connection holds at most the
    /// bytes its client really sent, and never more than this.
    #[schemars(range(min = 16, max = 268_435_460))]
    pub max_packet_size: u32,
}

impl Default for BrokerConfig {
    fn default() -> BrokerConfig {
        BrokerConfig {
            max_inflight_messages: 20,
            max_queued_messages: 1000,
            persistence: false,
            autosave_interval_s: 1800,
            allow_zero_length_clientid: true,
            max_packet_size: packet::PACKET_SIZE_MAX as u32,
        }
    }
}

/// mosquitto's default `max_topic_alias` (per listener): the Topic Alias Maximum it grants
/// MQTT 5 clients.
pub const TOPIC_ALIAS_MAXIMUM: u16 = 10;

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    /// Write these bytes (one encoded packet) to the connection.
    Send { conn: ConnId, bytes: Vec<u8> },
    /// Close the connection (after the sends before it). The broker has already forgotten
    /// it: a later [`Broker::on_closed`] for it does nothing.
    Close { conn: ConnId },
    /// Something a reader of the timeline needs to see.
    Note { kind: &'static str, detail: String },
}

/// An open connection: before CONNECT, `client_id` is `None`.
#[derive(Debug)]
struct Connection {
    buffer: Vec<u8>,
    version: Option<Version>,
    client_id: Option<String>,
    keep_alive_s: u16,
    last_packet_s: u64,
    will: Option<packet::Will>,
    topic_aliases: BTreeMap<u16, String>,
}

/// Why the broker closes a connection: whether the will goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Farewell {
    /// DISCONNECT: the will is discarded [MQTT-3.14.4-3].
    Clean,
    /// Anything else (socket closed, protocol error, keepalive): the will is published.
    Abnormal,
}

/// The persisted state: mosquitto's `mosquitto.db` in spirit (retained messages, and
/// sessions that outlive their connections), as JSON.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    format: u32,
    retained: BTreeMap<String, Message>,
    sessions: Vec<Session>,
    auto_id: u64,
}

const SNAPSHOT_FORMAT: u32 = 1;

/// Why a snapshot could not be restored.
#[derive(Debug)]
pub struct RestoreError(pub String);

impl std::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot restore the broker's snapshot: {}", self.0)
    }
}

impl std::error::Error for RestoreError {}

pub struct Broker {
    config: BrokerConfig,
    connections: BTreeMap<ConnId, Connection>,
    sessions: BTreeMap<String, Session>,
    retained: BTreeMap<String, Message>,
    /// Counter behind assigned client ids (`auto-` + 16 hex digits; mosquitto draws random
    /// ones, a counter keeps runs reproducible).
    auto_id: u64,
    /// The second of the last keepalive check.
    keepalive_checked_s: u64,
}

/// Reason codes (MQTT 5 §2.4) and 3.1.1 CONNACK return codes the broker sends.
pub mod reason {
    pub const SUCCESS: u8 = 0x00;
    pub const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;
    pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
    pub const CONNACK_IDENTIFIER_REJECTED: u8 = 0x02;
    pub const UNSPECIFIED_ERROR: u8 = 0x80;
    pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
    pub const SESSION_TAKEN_OVER: u8 = 0x8E;
    pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
    pub const QUOTA_EXCEEDED: u8 = 0x97;
    pub const DISCONNECT_WITH_WILL: u8 = 0x04;
}

impl Broker {
    pub fn new(config: BrokerConfig) -> Broker {
        Broker {
            config,
            connections: BTreeMap::new(),
            sessions: BTreeMap::new(),
            retained: BTreeMap::new(),
            auto_id: 0,
            keepalive_checked_s: 0,
        }
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    fn limits(&self) -> Limits {
        Limits {
            max_inflight: self.config.max_inflight_messages as usize,
            max_queued: self.config.max_queued_messages as usize,
        }
    }

    /// A new connection, before its CONNECT.
    pub fn on_open(&mut self, now_ms: u64, conn: ConnId) {
        let connection = Connection {
            buffer: Vec::new(),
            version: None,
            client_id: None,
            keep_alive_s: 0,
            last_packet_s: now_ms / 1000,
            will: None,
            topic_aliases: BTreeMap::new(),
        };
        let previous = self.connections.insert(conn, connection);
        assert!(previous.is_none(), "connection {conn} opened twice");
    }

    /// Bytes from a connection: every whole packet in them is handled.
    pub fn on_bytes(&mut self, now_ms: u64, conn: ConnId, bytes: &[u8], out: &mut Vec<Out>) {
        let Some(connection) = self.connections.get_mut(&conn) else {
            return;
        };
        connection.buffer.extend_from_slice(bytes);
        loop {
            let Some(connection) = self.connections.get_mut(&conn) else {
                return;
            };
            let max = self.config.max_packet_size as usize;
            let (packet, used) = match packet::decode(&connection.buffer, connection.version, max) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => return,
                Err(error) => return self.malformed(now_ms, conn, &error, out),
            };
            connection.buffer.drain(..used);
            connection.last_packet_s = now_ms / 1000;
            self.on_packet(now_ms, conn, packet, out);
        }
    }

    /// The socket closed without DISCONNECT: the will is published.
    pub fn on_closed(&mut self, now_ms: u64, conn: ConnId, out: &mut Vec<Out>) {
        if self.connections.contains_key(&conn) {
            self.forget(now_ms, conn, Farewell::Abnormal, out);
        }
    }

    /// Time passes: keepalive expiry and session expiry. The driver calls it at least once a
    /// second.
    ///
    /// Keepalive as mosquitto 2.0 checks it (src/keepalive.c, `keepalive__check`): in whole
    /// seconds, only when more than 5 s have passed since the last check (so every 6 s), a
    /// client is closed once more than keepalive*3/2 seconds have passed since its last
    /// packet. So the close comes between 1.5x keepalive and 6 s later: with keepalive 1, 2
    /// or 4, mosquitto 2.0.11 was seen closing all three at the same check, 6.2-6.7 s in.
    pub fn on_tick(&mut self, now_ms: u64, out: &mut Vec<Out>) {
        let now_s = now_ms / 1000;
        if self.keepalive_checked_s + 5 < now_s {
            self.keepalive_checked_s = now_s;
            self.expire_keepalives(now_ms, out);
        }
        self.expire_sessions(now_ms, out);
    }

    fn expire_keepalives(&mut self, now_ms: u64, out: &mut Vec<Out>) {
        let now_s = now_ms / 1000;
        let expired: Vec<ConnId> = self
            .connections
            .iter()
            .filter(|(_, c)| {
                c.keep_alive_s > 0 && now_s - c.last_packet_s.min(now_s) > u64::from(c.keep_alive_s) * 3 / 2
            })
            .map(|(id, _)| *id)
            .collect();
        for conn in expired {
            let who = self.connections[&conn].client_id.clone().unwrap_or_default();
            note(
                out,
                "keepalive-expired",
                format!("client {who:?} on connection {conn}"),
            );
            self.close(now_ms, conn, Farewell::Abnormal, out);
        }
    }

    fn expire_sessions(&mut self, now_ms: u64, out: &mut Vec<Out>) {
        let ended: Vec<String> = self
            .sessions
            .values()
            .filter(|s| match (s.disconnected_at_ms, s.expiry_s) {
                (Some(at), Some(expiry)) => now_ms >= at + u64::from(expiry) * 1000,
                _ => false,
            })
            .map(|s| s.client_id.clone())
            .collect();
        for client_id in ended {
            self.sessions.remove(&client_id);
            note(out, "session-expired", format!("client {client_id:?}"));
        }
    }

    fn malformed(&mut self, now_ms: u64, conn: ConnId, error: &MalformedPacket, out: &mut Vec<Out>) {
        if let Some(code) = error.connack {
            // Before any CONNECT was accepted: a 3.1.1-style CONNACK, as mosquitto sends.
            let connack = Packet::Connack {
                session_present: false,
                reason: code,
                properties: Properties::default(),
            };
            out.push(Out::Send {
                conn,
                bytes: connack.encode(Version::V311),
            });
        }
        note(out, "malformed", format!("connection {conn}: {}", error.reason));
        self.close(now_ms, conn, Farewell::Abnormal, out);
    }

    fn protocol_error(&mut self, now_ms: u64, conn: ConnId, reason: &str, out: &mut Vec<Out>) {
        note(out, "protocol-error", format!("connection {conn}: {reason}"));
        self.close(now_ms, conn, Farewell::Abnormal, out);
    }

    /// The broker closes the connection.
    fn close(&mut self, now_ms: u64, conn: ConnId, farewell: Farewell, out: &mut Vec<Out>) {
        out.push(Out::Close { conn });
        self.forget(now_ms, conn, farewell, out);
    }

    /// The connection is gone: publish its will if it left abnormally, and end its session
    /// if the session does not outlive it.
    fn forget(&mut self, now_ms: u64, conn: ConnId, farewell: Farewell, out: &mut Vec<Out>) {
        let connection = self.connections.remove(&conn).expect("a known connection");
        let Some(client_id) = connection.client_id else {
            return;
        };
        if let (Farewell::Abnormal, Some(will)) = (farewell, connection.will) {
            self.publish_will(now_ms, &client_id, will, out);
        }
        let session = self
            .sessions
            .get_mut(&client_id)
            .expect("a connected client's session");
        session.disconnected_at_ms = Some(now_ms);
        if session.expiry_s == Some(0) {
            let session = self.sessions.remove(&client_id).expect("the session");
            if !session.inflight.is_empty() || !session.queued.is_empty() || !session.incoming.is_empty() {
                note(
                    out,
                    "session-discarded",
                    format!(
                        "clean session {client_id:?} ended with {} in flight, {} queued, {} incoming QoS 2",
                        session.inflight.len(),
                        session.queued.len(),
                        session.incoming.len()
                    ),
                );
            } else if !session.subscriptions.is_empty() {
                // Nothing pending, but nothing will be kept for the subscriber until it
                // subscribes again: a reader of the timeline needs to see where that starts.
                note(out, "session-ended", format!("clean session {client_id:?}"));
            }
        }
    }

    fn publish_will(&mut self, now_ms: u64, client_id: &str, will: packet::Will, out: &mut Vec<Out>) {
        note(
            out,
            "will-published",
            format!("client {client_id:?} on {:?}", will.topic),
        );
        let message = Message {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            properties: will.properties.without(&[packet::WILL_DELAY_INTERVAL]),
        };
        self.route(now_ms, client_id, message, out);
    }

    fn send(&self, conn: ConnId, packet: &Packet, out: &mut Vec<Out>) {
        let version = self.connections[&conn]
            .version
            .expect("a connected client's version");
        out.push(Out::Send {
            conn,
            bytes: packet.encode(version),
        });
    }

    /// The connection of a session's client, if it is online.
    fn conn_of(&self, client_id: &str) -> Option<ConnId> {
        self.connections
            .iter()
            .find(|(_, c)| c.client_id.as_deref() == Some(client_id))
            .map(|(id, _)| *id)
    }

    fn on_packet(&mut self, now_ms: u64, conn: ConnId, packet: Packet, out: &mut Vec<Out>) {
        let connected = self.connections[&conn].client_id.is_some();
        match (packet, connected) {
            (Packet::Connect(connect), false) => self.on_connect(now_ms, conn, *connect, out),
            (Packet::Connect(_), true) => self.protocol_error(now_ms, conn, "a second CONNECT", out),
            (_, false) => self.protocol_error(now_ms, conn, "first packet is not CONNECT", out),
            (Packet::Publish(publish), true) => self.on_publish(now_ms, conn, publish, out),
            (Packet::Puback(ack), true) => self.on_outbound_ack(conn, ack, QoS::AtLeastOnce, out),
            (Packet::Pubrec(ack), true) => self.on_pubrec(conn, ack, out),
            (Packet::Pubcomp(ack), true) => self.on_outbound_ack(conn, ack, QoS::ExactlyOnce, out),
            (Packet::Pubrel(ack), true) => self.on_pubrel(now_ms, conn, ack, out),
            (
                Packet::Subscribe {
                    packet_id,
                    subscriptions,
                    ..
                },
                true,
            ) => self.on_subscribe(now_ms, conn, packet_id, subscriptions, out),
            (
                Packet::Unsubscribe {
                    packet_id, filters, ..
                },
                true,
            ) => self.on_unsubscribe(conn, packet_id, filters, out),
            (Packet::Pingreq, true) => self.send(conn, &Packet::Pingresp, out),
            (Packet::Disconnect { reason, .. }, true) => {
                let farewell = if reason == reason::DISCONNECT_WITH_WILL {
                    Farewell::Abnormal
                } else {
                    Farewell::Clean
                };
                self.close(now_ms, conn, farewell, out);
            }
            (other, true) => {
                let what = format!("a client may not send {}", packet_name(&other));
                self.protocol_error(now_ms, conn, &what, out)
            }
        }
    }

    fn on_connect(&mut self, now_ms: u64, conn: ConnId, mut connect: Connect, out: &mut Vec<Out>) {
        self.connections.get_mut(&conn).expect("open").version = Some(connect.version);
        if let Some(refusal) = self.refusal(&connect) {
            self.refuse(now_ms, conn, refusal, out);
            return;
        }
        if connect
            .will
            .as_ref()
            .is_some_and(|w| !topic::valid_name(&w.topic))
        {
            return self.protocol_error(now_ms, conn, "will topic is not a valid topic name", out);
        }
        let assigned = connect.client_id.is_empty();
        if assigned {
            self.auto_id += 1;
            connect.client_id = format!("auto-{:016X}", self.auto_id);
        }
        if let Some(old) = self.conn_of(&connect.client_id) {
            self.take_over(now_ms, old, connect.clean_start, out);
        }
        let session_present = self.open_session(now_ms, &connect, out);
        let properties = self.connack_properties(assigned.then_some(connect.client_id.as_str()));
        let connection = self.connections.get_mut(&conn).expect("open");
        connection.client_id = Some(connect.client_id.clone());
        connection.keep_alive_s = connect.keep_alive_s;
        connection.will = connect.will;
        let connack = Packet::Connack {
            session_present,
            reason: reason::SUCCESS,
            properties,
        };
        self.send(conn, &connack, out);
        let session = self.sessions.get_mut(&connect.client_id).expect("opened");
        for packet in session.resume() {
            self.send(conn, &packet, out);
        }
    }

    /// CONNACK's MQTT 5 properties, in mosquitto 2.0.11's order (observed on the wire):
    /// Topic Alias Maximum, Assigned Client Identifier, Receive Maximum.
    fn connack_properties(&self, assigned_client_id: Option<&str>) -> Properties {
        let mut properties = Properties::default();
        properties.push(
            packet::TOPIC_ALIAS_MAXIMUM,
            PropertyValue::TwoByte(TOPIC_ALIAS_MAXIMUM),
        );
        if let Some(id) = assigned_client_id {
            properties.push(
                packet::ASSIGNED_CLIENT_IDENTIFIER,
                PropertyValue::Utf8(id.to_string()),
            );
        }
        match u16::try_from(self.config.max_inflight_messages) {
            Ok(max) if max > 0 => properties.push(packet::RECEIVE_MAXIMUM, PropertyValue::TwoByte(max)),
            _ => {}
        }
        properties
    }

    /// The CONNACK code mosquitto refuses this CONNECT with, if any.
    fn refusal(&self, connect: &Connect) -> Option<u8> {
        if connect.client_id.is_empty() {
            let refused = match connect.version {
                Version::V31 => true,
                Version::V311 => !connect.clean_start || !self.config.allow_zero_length_clientid,
                Version::V5 => !self.config.allow_zero_length_clientid,
            };
            if refused {
                return Some(if connect.version.is_v5() {
                    reason::UNSPECIFIED_ERROR
                } else {
                    reason::CONNACK_IDENTIFIER_REJECTED
                });
            }
        }
        // No authentication plugin: an MQTT 5 authentication method is refused.
        if connect.properties.get(packet::AUTHENTICATION_METHOD).is_some() {
            return Some(reason::BAD_AUTHENTICATION_METHOD);
        }
        None
    }

    fn refuse(&mut self, now_ms: u64, conn: ConnId, code: u8, out: &mut Vec<Out>) {
        let connack = Packet::Connack {
            session_present: false,
            reason: code,
            properties: Properties::default(),
        };
        self.send(conn, &connack, out);
        note(
            out,
            "connack-refused",
            format!("connection {conn}: CONNACK 0x{code:02x}"),
        );
        self.close(now_ms, conn, Farewell::Clean, out);
    }

    /// Another connection with the same client id: mosquitto closes the old one (MQTT 5:
    /// DISCONNECT 0x8E first) and publishes its will only if its session would not have
    /// lived on or the new connection starts clean (src/handle_connect.c,
    /// `connect__on_authorised`); otherwise the will is dropped.
    fn take_over(&mut self, now_ms: u64, old: ConnId, new_clean_start: bool, out: &mut Vec<Out>) {
        let client_id = self.connections[&old].client_id.clone().expect("connected");
        let session = &self.sessions[&client_id];
        let old_version = self.connections[&old].version.expect("connected");
        if old_version.is_v5() {
            let disconnect = Packet::Disconnect {
                reason: reason::SESSION_TAKEN_OVER,
                properties: Properties::default(),
            };
            self.send(old, &disconnect, out);
        }
        let farewell = if session.expiry_s == Some(0) || new_clean_start {
            Farewell::Abnormal
        } else {
            Farewell::Clean
        };
        note(
            out,
            "takeover",
            format!("client {client_id:?}: connection {old} closed for a new one"),
        );
        self.close(now_ms, old, farewell, out);
    }

    /// Finds or starts the client's session; returns CONNACK's session-present flag.
    fn open_session(&mut self, now_ms: u64, connect: &Connect, out: &mut Vec<Out>) -> bool {
        let expiry_s = match connect.version {
            Version::V5 => match connect
                .properties
                .u32(packet::SESSION_EXPIRY_INTERVAL)
                .unwrap_or(0)
            {
                u32::MAX => None,
                seconds => Some(seconds),
            },
            _ if connect.clean_start => Some(0),
            _ => None,
        };
        let window = match connect.properties.u16(packet::RECEIVE_MAXIMUM) {
            Some(maximum) => usize::from(maximum),
            None => self.config.max_inflight_messages as usize,
        };
        let id = &connect.client_id;
        if connect.clean_start {
            if let Some(old) = self.sessions.remove(id) {
                if old.has_state() {
                    note(
                        out,
                        "session-discarded",
                        format!("client {id:?} connected with a clean start"),
                    );
                }
            }
        }
        let present = self.sessions.contains_key(id) && connect.version != Version::V31;
        let session = self
            .sessions
            .entry(id.clone())
            .or_insert_with(|| Session::new(id, connect.version, expiry_s, window));
        session.version = connect.version;
        session.expiry_s = expiry_s;
        session.send_window = window;
        session.disconnected_at_ms = None;
        let _ = now_ms;
        present
    }

    fn on_publish(&mut self, now_ms: u64, conn: ConnId, mut publish: Publish, out: &mut Vec<Out>) {
        if let Err(reason) = self.resolve_alias(conn, &mut publish) {
            return self.disconnect_v5(now_ms, conn, reason::TOPIC_ALIAS_INVALID, reason, out);
        }
        if !topic::valid_name(&publish.topic) {
            return self.protocol_error(now_ms, conn, "PUBLISH to an invalid topic name", out);
        }
        let client_id = self.connections[&conn].client_id.clone().expect("connected");
        let message = Message {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            properties: publish
                .properties
                .without(&[packet::TOPIC_ALIAS, packet::SUBSCRIPTION_IDENTIFIER]),
        };
        match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) => {
                self.route(now_ms, &client_id, message, out);
            }
            (QoS::AtLeastOnce, Some(id)) => self.on_publish_qos1(now_ms, conn, &client_id, id, message, out),
            (QoS::ExactlyOnce, Some(id)) => self.on_publish_qos2(conn, &client_id, id, message, out),
            _ => unreachable!("the decoder gives QoS 1/2 a packet id"),
        }
    }

    /// MQTT 5 topic aliases (mosquitto grants [`TOPIC_ALIAS_MAXIMUM`]).
    fn resolve_alias(&mut self, conn: ConnId, publish: &mut Publish) -> Result<(), &'static str> {
        let Some(alias) = publish.properties.u16(packet::TOPIC_ALIAS) else {
            return Ok(());
        };
        if alias == 0 || alias > TOPIC_ALIAS_MAXIMUM {
            return Err("topic alias out of range");
        }
        let aliases = &mut self.connections.get_mut(&conn).expect("open").topic_aliases;
        if publish.topic.is_empty() {
            publish.topic = aliases.get(&alias).cloned().ok_or("unknown topic alias")?;
        } else {
            aliases.insert(alias, publish.topic.clone());
        }
        Ok(())
    }

    fn disconnect_v5(&mut self, now_ms: u64, conn: ConnId, code: u8, why: &str, out: &mut Vec<Out>) {
        if self.connections[&conn].version == Some(Version::V5) {
            self.send(
                conn,
                &Packet::Disconnect {
                    reason: code,
                    properties: Properties::default(),
                },
                out,
            );
            note(
                out,
                "reason-code",
                format!("connection {conn}: DISCONNECT 0x{code:02x}"),
            );
        }
        self.protocol_error(now_ms, conn, why, out);
    }

    /// Whether the client's incoming quota is spent: mosquitto's `db__ready_for_flight` and
    /// `db__ready_for_queue` on `msgs_in` (src/handle_publish.c, "Client isn't allowed any
    /// more incoming messages, so fail early"): QoS 2 messages awaiting PUBREL fill the
    /// window of `max_inflight_messages`, then `max_queued_messages` more.
    fn incoming_full(&self, session: &Session) -> bool {
        let limits = self.limits();
        let window_full = limits.max_inflight != 0 && session.incoming.len() >= limits.max_inflight;
        let total = session.incoming.len() + session.incoming_held.len();
        let queue_full = limits.max_queued != 0 && total >= limits.max_queued + limits.max_inflight;
        window_full && queue_full
    }

    /// A QoS 1/2 PUBLISH refused for quota: MQTT 5 gets 0x97 Quota exceeded; 3.1.1 gets a
    /// plain PUBACK/PUBREC and the message is silently lost (src/handle_publish.c,
    /// `process_bad_message`).
    fn refuse_publish(&mut self, conn: ConnId, qos: QoS, packet_id: u16, out: &mut Vec<Out>) {
        let v5 = self.connections[&conn].version == Some(Version::V5);
        let code = if v5 {
            reason::QUOTA_EXCEEDED
        } else {
            reason::SUCCESS
        };
        let ack = Ack::new(packet_id, code);
        let packet = if qos == QoS::AtLeastOnce {
            Packet::Puback(ack)
        } else {
            Packet::Pubrec(ack)
        };
        self.send(conn, &packet, out);
        note(
            out,
            "quota-exceeded",
            format!(
            "connection {conn}: incoming QoS {} packet {packet_id} dropped, acknowledged with 0x{code:02x}",
            qos as u8
        ),
        );
    }

    fn on_publish_qos1(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        client_id: &str,
        id: u16,
        message: Message,
        out: &mut Vec<Out>,
    ) {
        if self.incoming_full(&self.sessions[client_id]) {
            return self.refuse_publish(conn, QoS::AtLeastOnce, id, out);
        }
        let matched = self.route(now_ms, client_id, message, out);
        let v5 = self.connections.get(&conn).and_then(|c| c.version) == Some(Version::V5);
        // mosquitto answers an MQTT 5 publisher 0x10 when nobody matched.
        let code = if v5 && matched == 0 {
            reason::NO_MATCHING_SUBSCRIBERS
        } else {
            reason::SUCCESS
        };
        if self.connections.contains_key(&conn) {
            self.send(conn, &Packet::Puback(Ack::new(id, code)), out);
        }
    }

    fn on_publish_qos2(
        &mut self,
        conn: ConnId,
        client_id: &str,
        id: u16,
        message: Message,
        out: &mut Vec<Out>,
    ) {
        let session = &self.sessions[client_id];
        if session.incoming.contains_key(&id) {
            // Before PUBREL a repeat is acknowledged again and not passed on [MQTT-4.3.3-2].
            note(
                out,
                "duplicate-qos2",
                format!("client {client_id:?} re-sent packet {id} before PUBREL"),
            );
            return self.send(conn, &Packet::Pubrec(Ack::new(id, reason::SUCCESS)), out);
        }
        if session.incoming_held.iter().any(|(held, _)| *held == id) {
            return;
        }
        if self.incoming_full(session) {
            return self.refuse_publish(conn, QoS::ExactlyOnce, id, out);
        }
        let max_inflight = self.config.max_inflight_messages as usize;
        let session = self.sessions.get_mut(client_id).expect("connected");
        if max_inflight != 0 && session.incoming.len() >= max_inflight {
            session.incoming_held.push_back((id, message));
            note(
                out,
                "pubrec-withheld",
                format!("client {client_id:?} packet {id}: incoming window full"),
            );
            return;
        }
        session.incoming.insert(id, message);
        self.send(conn, &Packet::Pubrec(Ack::new(id, reason::SUCCESS)), out);
    }

    fn on_pubrel(&mut self, now_ms: u64, conn: ConnId, ack: Ack, out: &mut Vec<Out>) {
        let client_id = self.connections[&conn].client_id.clone().expect("connected");
        let session = self.sessions.get_mut(&client_id).expect("connected");
        let released = session.incoming.remove(&ack.packet_id);
        let promoted = if released.is_some() {
            session.incoming_held.pop_front()
        } else {
            None
        };
        if let Some((id, message)) = promoted {
            session.incoming.insert(id, message);
            self.send(conn, &Packet::Pubrec(Ack::new(id, reason::SUCCESS)), out);
        }
        if let Some(message) = released {
            self.route(now_ms, &client_id, message, out);
        }
        // mosquitto answers PUBCOMP even for an unknown id: it may be a PUBREL repeated after
        // a reconnect (src/handle_pubrel.c).
        if self.connections.contains_key(&conn) {
            self.send(
                conn,
                &Packet::Pubcomp(Ack::new(ack.packet_id, reason::SUCCESS)),
                out,
            );
        }
    }

    /// PUBACK or PUBCOMP from a subscriber: that message is done; the window moves on.
    fn on_outbound_ack(&mut self, conn: ConnId, ack: Ack, qos: QoS, out: &mut Vec<Out>) {
        let client_id = self.connections[&conn].client_id.clone().expect("connected");
        let session = self.sessions.get_mut(&client_id).expect("connected");
        let stage = if qos == QoS::AtLeastOnce {
            Stage::Published
        } else {
            Stage::Released
        };
        if session.complete(ack.packet_id, qos, stage) && ack.reason >= 0x80 {
            note(
                out,
                "reason-code",
                format!(
                    "client {client_id:?} answered packet {} with 0x{:02x}",
                    ack.packet_id, ack.reason
                ),
            );
        }
        let sends = session.fill();
        for packet in sends {
            self.send(conn, &packet, out);
        }
    }

    /// PUBREC from a subscriber: PUBREL, unless MQTT 5 says 0x80 or more, which ends the
    /// exchange [MQTT-4.4.0-2].
    fn on_pubrec(&mut self, conn: ConnId, ack: Ack, out: &mut Vec<Out>) {
        let client_id = self.connections[&conn].client_id.clone().expect("connected");
        let session = self.sessions.get_mut(&client_id).expect("connected");
        if ack.reason >= 0x80 {
            if session.complete(ack.packet_id, QoS::ExactlyOnce, Stage::Published) {
                note(
                    out,
                    "reason-code",
                    format!(
                        "client {client_id:?} answered packet {} with PUBREC 0x{:02x}: not re-sent",
                        ack.packet_id, ack.reason
                    ),
                );
            }
            let sends = session.fill();
            for packet in sends {
                self.send(conn, &packet, out);
            }
            return;
        }
        // mosquitto sends PUBREL even for an unknown id (src/handle_pubrec.c).
        session.received(ack.packet_id);
        self.send(
            conn,
            &Packet::Pubrel(Ack::new(ack.packet_id, reason::SUCCESS)),
            out,
        );
    }

    fn on_subscribe(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        packet_id: u16,
        subscriptions: Vec<packet::Subscription>,
        out: &mut Vec<Out>,
    ) {
        if let Some(bad) = subscriptions.iter().find(|s| !topic::valid_filter(&s.filter)) {
            // mosquitto closes on an invalid filter rather than answer SUBACK 0x80.
            let why = format!("invalid topic filter {:?}", bad.filter);
            return self.protocol_error(now_ms, conn, &why, out);
        }
        let client_id = self.connections[&conn].client_id.clone().expect("connected");
        let session = self.sessions.get_mut(&client_id).expect("connected");
        let mut retained_for = Vec::new();
        for subscription in &subscriptions {
            let existed = session
                .subscriptions
                .insert(subscription.filter.clone(), subscription.clone())
                .is_some();
            if subscription.retain_handling == 0 || (subscription.retain_handling == 1 && !existed) {
                retained_for.push(subscription.clone());
            }
        }
        let reasons = subscriptions.iter().map(|s| s.qos as u8).collect();
        self.send(
            conn,
            &Packet::Suback {
                packet_id,
                properties: Properties::default(),
                reasons,
            },
            out,
        );
        for subscription in retained_for {
            self.send_retained(&client_id, &subscription, out);
        }
    }

    /// Retained messages matching a new subscription, RETAIN=1, at min(QoS, granted).
    fn send_retained(&mut self, client_id: &str, subscription: &packet::Subscription, out: &mut Vec<Out>) {
        let limits = self.limits();
        let matching: Vec<Message> = self
            .retained
            .values()
            .filter(|m| topic::matches(&subscription.filter, &m.topic))
            .cloned()
            .collect();
        for message in matching {
            let qos = message.qos.min(subscription.qos);
            let session = self.sessions.get_mut(client_id).expect("connected");
            let offer = session.offer(&message, qos, true, limits);
            self.deliver(client_id, offer, out);
        }
    }

    fn on_unsubscribe(&mut self, conn: ConnId, packet_id: u16, filters: Vec<String>, out: &mut Vec<Out>) {
        let client_id = self.connections[&conn].client_id.clone().expect("connected");
        let session = self.sessions.get_mut(&client_id).expect("connected");
        let reasons = filters
            .iter()
            .map(|f| match session.subscriptions.remove(f) {
                Some(_) => reason::SUCCESS,
                None => reason::NO_SUBSCRIPTION_EXISTED,
            })
            .collect();
        self.send(
            conn,
            &Packet::Unsuback {
                packet_id,
                properties: Properties::default(),
                reasons,
            },
            out,
        );
    }

    /// A message published by `from` goes to every matching subscription (one copy each, at
    /// min(QoS, granted)) and, if RETAIN, replaces the topic's retained message (an empty
    /// payload clears it, and is still forwarded). Returns the copies offered.
    fn route(&mut self, _now_ms: u64, from: &str, message: Message, out: &mut Vec<Out>) -> usize {
        if message.retain {
            if message.payload.is_empty() {
                self.retained.remove(&message.topic);
            } else {
                self.retained.insert(message.topic.clone(), message.clone());
            }
        }
        let limits = self.limits();
        let mut copies = 0;
        let client_ids: Vec<String> = self.sessions.keys().cloned().collect();
        for client_id in client_ids {
            let matching: Vec<packet::Subscription> = self.sessions[&client_id]
                .subscriptions
                .values()
                .filter(|s| topic::matches(&s.filter, &message.topic) && !(s.no_local && client_id == from))
                .cloned()
                .collect();
            for subscription in matching {
                copies += 1;
                let retain = subscription.retain_as_published && message.retain;
                let session = self.sessions.get_mut(&client_id).expect("listed");
                let offer = session.offer(&message, message.qos.min(subscription.qos), retain, limits);
                self.deliver(&client_id, offer, out);
            }
        }
        copies
    }

    fn deliver(&mut self, client_id: &str, offer: Offer, out: &mut Vec<Out>) {
        match offer {
            Offer::Send(packet) => {
                let conn = self.conn_of(client_id).expect("a connected session");
                self.send(conn, &packet, out);
            }
            Offer::Dropped => note(
                out,
                "queue-full-drop",
                format!("client {client_id:?}: max_queued_messages reached"),
            ),
            Offer::Queued | Offer::NotKept => {}
        }
    }

    /// What mosquitto's persistence saves: retained messages and sessions that outlive their
    /// connections, with their subscriptions and messages, as if every client were offline.
    pub fn snapshot(&self) -> Vec<u8> {
        let sessions = self
            .sessions
            .values()
            .filter(|s| s.expiry_s != Some(0))
            .cloned()
            .map(|mut s| {
                s.disconnected_at_ms.get_or_insert(0);
                s
            })
            .collect();
        let snapshot = Snapshot {
            format: SNAPSHOT_FORMAT,
            retained: self.retained.clone(),
            sessions,
            auto_id: self.auto_id,
        };
        serde_json::to_vec(&snapshot).expect("the snapshot serializes")
    }

    /// A broker that starts from a snapshot: every session offline since `now_ms`.
    pub fn restore(config: BrokerConfig, bytes: &[u8], now_ms: u64) -> Result<Broker, RestoreError> {
        let snapshot: Snapshot = serde_json::from_slice(bytes).map_err(|e| RestoreError(e.to_string()))?;
        if snapshot.format != SNAPSHOT_FORMAT {
            return Err(RestoreError(format!(
                "format {} (this build reads {SNAPSHOT_FORMAT})",
                snapshot.format
            )));
        }
        let mut broker = Broker::new(config);
        broker.retained = snapshot.retained;
        broker.auto_id = snapshot.auto_id;
        for mut session in snapshot.sessions {
            session.disconnected_at_ms = Some(now_ms);
            broker.sessions.insert(session.client_id.clone(), session);
        }
        Ok(broker)
    }

    /// Sessions known (online or not), for tests and reports.
    /// Messages the broker still owes: outbound ones in flight or queued, and incoming QoS 2
    /// ones awaiting PUBREL, over every session (a drain probe for the simulation).
    pub fn messages_owed(&self) -> usize {
        self.sessions
            .values()
            .map(|s| s.inflight.len() + s.queued.len() + s.incoming.len() + s.incoming_held.len())
            .sum()
    }

    pub fn session(&self, client_id: &str) -> Option<&Session> {
        self.sessions.get(client_id)
    }

    pub fn retained(&self) -> &BTreeMap<String, Message> {
        &self.retained
    }
}

fn note(out: &mut Vec<Out>, kind: &'static str, detail: String) {
    out.push(Out::Note { kind, detail });
}

fn packet_name(packet: &Packet) -> &'static str {
    match packet {
        Packet::Connect(_) => "CONNECT",
        Packet::Connack { .. } => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::Puback(_) => "PUBACK",
        Packet::Pubrec(_) => "PUBREC",
        Packet::Pubrel(_) => "PUBREL",
        Packet::Pubcomp(_) => "PUBCOMP",
        Packet::Subscribe { .. } => "SUBSCRIBE",
        Packet::Suback { .. } => "SUBACK",
        Packet::Unsubscribe { .. } => "UNSUBSCRIBE",
        Packet::Unsuback { .. } => "UNSUBACK",
        Packet::Pingreq => "PINGREQ",
        Packet::Pingresp => "PINGRESP",
        Packet::Disconnect { .. } => "DISCONNECT",
        Packet::Auth { .. } => "AUTH",
    }
}
