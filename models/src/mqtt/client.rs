//! An MQTT client's session, sans-I/O, as eclipse/paho.mqtt.golang keeps it (reference §3.5):
//! an outbound store of QoS 1/2 messages not yet completely acknowledged, packet ids,
//! keepalive pings, the inbound QoS 2 handshake, and what it re-sends when it reconnects
//! with CleanSession=0. The driver (`sim_client`) owns the socket, the reconnect loop, the
//! clock and the handler; this core only turns packets and calls into packets and events.
//!
//! Time is an input (`now_ms`), and so is the one choice paho leaves to chance: the order in
//! which it re-sends its store after a reconnect, which ranges over a Go map (random order,
//! drawn here from the run's RNG).
//!
//! paho's ways that differ from the spec, kept because they decide what users see
//! (paho.mqtt.golang v1.4.3-v1.5.x, read in its source):
//! - a QoS 2 PUBLISH stays in the store until PUBCOMP and is what a reconnect re-sends
//!   (with DUP=1), never the PUBREL (`store.go:persistInbound`, issue #788);
//! - every auto-reconnect re-sends the store, CleanSession or not (`client.go:reconnect`);
//! - the application's token completes without error when the message is re-sent, not when
//!   it is acknowledged (`messageids.go:claimID`);
//! - a QoS 0 publish while reconnecting is dropped and its token completes without error
//!   (`client.go:Publish`, issue #630);
//! - an inbound QoS 2 PUBLISH runs the handler at once, and again if the broker re-sends it:
//!   paho keeps no inbound packet ids (issues #768, #791).
//!
//! `spec_qos2` gives the QoS 2 the spec requires instead: the PUBREL replaces the PUBLISH
//! in the store and is what a reconnect re-sends [MQTT-4.3.3-1], and inbound packet ids are
//! kept until PUBREL so a re-sent PUBLISH is not handed on twice [MQTT-4.3.3-2].

#![deny(clippy::too_many_lines)]

use super::packet::{self, Ack, Connect, Packet, Publish, QoS, Subscription, Version, Will};
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A publish the application made, named so its completion can be reported.
pub type Token = u64;

/// The largest packet the client accepts from the broker (paho has no limit; this bounds
/// what a garbled stream can make it buffer, far above anything a scenario sends).
pub const CLIENT_PACKET_SIZE_MAX: usize = 16 * 1024 * 1024;
/// Publishes the application may have outstanding at once (paho's store is unbounded; the
/// workload never comes near this, so reaching it is a model error).
pub const STORE_MESSAGES_MAX: usize = 65_535;

/// In which order stored messages go out again after a reconnect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResendOrder {
    /// paho's default: `resume()` walks `MemoryStore.All()`, which ranges over a Go map, so
    /// the order is random, against [MQTT-4.6.0-1] (reference §3.5), all at once.
    StoreOrder,
    /// `OrderedMemoryStore` (sorted by when stored) with `SetMaxResumePubInFlight(1)`: one
    /// re-sent PUBLISH at a time, the next after its PUBACK or PUBCOMP. New publishes are not
    /// held back meanwhile (`resume` runs beside them).
    Ordered,
}

/// What a client is configured with (paho's `ClientOptions`).
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub client_id: String,
    pub version: Version,
    /// `SetCleanSession` (paho's default is true).
    pub clean_session: bool,
    /// `SetKeepAlive`, in seconds (paho: 30).
    pub keep_alive_s: u16,
    /// `SetPingTimeout`: a PINGREQ unanswered this long means the connection is lost
    /// (paho: 10 s).
    pub ping_timeout_ms: u64,
    pub resend_order: ResendOrder,
    /// QoS 2 as the spec has it, both ways (see the module's doc); paho's otherwise.
    pub spec_qos2: bool,
    /// The process was running before (a restart): its first CONNACK may also find the
    /// old session gone.
    pub restarted: bool,
    pub will: Option<Will>,
}

impl ClientOptions {
    pub fn new(client_id: &str) -> ClientOptions {
        ClientOptions {
            client_id: client_id.to_string(),
            version: Version::V311,
            clean_session: true,
            keep_alive_s: 30,
            ping_timeout_ms: 10_000,
            resend_order: ResendOrder::StoreOrder,
            spec_qos2: false,
            restarted: false,
            will: None,
        }
    }
}

/// Why a publish did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishError {
    /// Published before the first connection (paho's `ErrNotConnected`, "not Connected").
    NotConnected,
    /// MQTT 5: PUBACK or PUBREC with a reason code >= 0x80; it must not be re-sent
    /// [MQTT-4.4.0-2] (paho.golang's behaviour: paho.mqtt.golang speaks only 3.1.1).
    Refused(u8),
}

/// A message handed to the application, and what acknowledging it takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound {
    pub publish: Publish,
    /// The connection it arrived on: an acknowledgement after that connection is gone is
    /// written nowhere.
    pub connection: u64,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOut {
    Send(Vec<u8>),
    /// Drop the connection (a protocol error, or a ping unanswered).
    Close,
    Connected {
        session_present: bool,
    },
    /// CONNACK with a non-zero return code; the broker closes the connection.
    Refused {
        code: u8,
    },
    /// A message for the handler. The driver calls [`Client::acknowledge`] once the handler
    /// is done with it (paho acknowledges after the handler returns).
    Message(Inbound),
    Completed {
        token: Token,
        result: Result<(), PublishError>,
    },
    Subscribed {
        granted: Vec<u8>,
    },
    Note {
        kind: &'static str,
        detail: String,
    },
}

/// A stored outbound message: paho's `o.<id>` entry, the PUBLISH until PUBACK or PUBCOMP.
#[derive(Clone, Debug)]
struct Stored {
    /// The application's token, until it completes (at the acknowledgement, or when the
    /// message is re-sent after a reconnect).
    token: Option<Token>,
    publish: Publish,
    /// PUBREC came and, with `spec_qos2`, the PUBREL is what is stored.
    released: bool,
    /// When it was stored, for the ordered resend.
    order: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Disconnected,
    AwaitingConnack,
    Connected,
}

pub struct Client {
    options: ClientOptions,
    state: State,
    /// Counts connections, so an acknowledgement meant for an old one is dropped.
    connection: u64,
    buffer: Vec<u8>,
    store: BTreeMap<u16, Stored>,
    next_order: u64,
    last_packet_id: u16,
    /// Inbound QoS 2 packet ids whose PUBREL has not come yet (with `dedup_qos2` only).
    inbound_qos2: BTreeSet<u16>,
    /// Whether a connection has been made: paho wipes the store of a CleanSession client
    /// on its first `Connect()` only.
    connected_once: bool,
    /// With the ordered resend: stored ids still to re-send, one at a time.
    resume: VecDeque<u16>,
    /// With the ordered resend: the re-sent id whose acknowledgement lets the next go (paho
    /// releases `resume`'s semaphore when that message's token completes, not at any ack).
    resuming: Option<u16>,
    next_token: Token,
    last_sent_ms: u64,
    last_received_ms: u64,
    ping_sent_ms: Option<u64>,
}

impl Client {
    pub fn new(options: ClientOptions) -> Client {
        Client {
            options,
            state: State::Disconnected,
            connection: 0,
            buffer: Vec::new(),
            store: BTreeMap::new(),
            next_order: 0,
            last_packet_id: 0,
            inbound_qos2: BTreeSet::new(),
            connected_once: false,
            resume: VecDeque::new(),
            resuming: None,
            next_token: 0,
            last_sent_ms: 0,
            last_received_ms: 0,
            ping_sent_ms: None,
        }
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Messages stored for re-sending (QoS 1/2 not completely acknowledged).
    pub fn stored(&self) -> usize {
        self.store.len()
    }

    fn send(&mut self, now_ms: u64, packet: &Packet, out: &mut Vec<ClientOut>) {
        self.last_sent_ms = now_ms;
        out.push(ClientOut::Send(packet.encode(self.options.version)));
    }

    /// A socket to the broker is open: the CONNECT to write first.
    pub fn on_open(&mut self, now_ms: u64, out: &mut Vec<ClientOut>) {
        self.state = State::AwaitingConnack;
        self.connection += 1;
        self.last_received_ms = now_ms;
        self.buffer.clear();
        self.ping_sent_ms = None;
        let connect = Connect {
            version: self.options.version,
            clean_start: self.options.clean_session,
            keep_alive_s: self.options.keep_alive_s,
            properties: packet::Properties::default(),
            client_id: self.options.client_id.clone(),
            will: self.options.will.clone(),
            username: None,
            password: None,
        };
        self.send(now_ms, &Packet::Connect(Box::new(connect)), out);
    }

    /// The socket is gone. Stored messages wait for the next connection.
    pub fn on_closed(&mut self) {
        self.state = State::Disconnected;
        self.resume.clear();
        self.resuming = None;
        self.buffer.clear();
    }

    /// The application publishes. QoS 0 is written if connected and forgotten (dropped
    /// while reconnecting, its token complete all the same); QoS 1/2 is stored first, then
    /// written if connected, else it waits for the reconnect's resend.
    pub fn publish(
        &mut self,
        now_ms: u64,
        topic: &str,
        payload: Vec<u8>,
        qos: QoS,
        out: &mut Vec<ClientOut>,
    ) -> Token {
        self.next_token += 1;
        let token = self.next_token;
        let mut publish = Publish {
            dup: false,
            qos,
            retain: false,
            topic: topic.to_string(),
            packet_id: None,
            properties: packet::Properties::default(),
            payload,
        };
        if qos == QoS::AtMostOnce || !self.connected_once {
            let result = match (self.connected_once, self.is_connected()) {
                (false, _) => Err(PublishError::NotConnected),
                (true, true) => {
                    self.send(now_ms, &Packet::Publish(publish), out);
                    Ok(())
                }
                (true, false) => {
                    out.push(ClientOut::Note {
                        kind: "client.qos0_dropped_while_reconnecting",
                        detail: String::new(),
                    });
                    Ok(())
                }
            };
            out.push(ClientOut::Completed { token, result });
            return token;
        }
        assert!(
            self.store.len() < STORE_MESSAGES_MAX,
            "the client's store is full"
        );
        let id = self.next_packet_id();
        publish.packet_id = Some(id);
        self.next_order += 1;
        let stored = Stored {
            token: Some(token),
            publish: publish.clone(),
            released: false,
            order: self.next_order,
        };
        self.store.insert(id, stored);
        if self.is_connected() {
            self.send(now_ms, &Packet::Publish(publish), out);
        }
        token
    }

    /// The next free id after the last one given, wrapping past 65535 to 1 (paho's
    /// `messageIds.getID`).
    fn next_packet_id(&mut self) -> u16 {
        let mut id = self.last_packet_id;
        loop {
            id = id.checked_add(1).unwrap_or(1);
            if !self.store.contains_key(&id) {
                self.last_packet_id = id;
                return id;
            }
        }
    }

    pub fn subscribe(&mut self, now_ms: u64, subscriptions: Vec<Subscription>, out: &mut Vec<ClientOut>) {
        assert!(self.is_connected(), "subscribe on a connected client");
        let packet_id = self.next_packet_id();
        let packet = Packet::Subscribe {
            packet_id,
            properties: packet::Properties::default(),
            subscriptions,
        };
        self.send(now_ms, &packet, out);
    }

    /// A clean DISCONNECT (the will is not sent).
    pub fn disconnect(&mut self, now_ms: u64, out: &mut Vec<ClientOut>) {
        if self.state != State::Disconnected {
            let packet = Packet::Disconnect {
                reason: 0,
                properties: packet::Properties::default(),
            };
            self.send(now_ms, &packet, out);
            out.push(ClientOut::Close);
            self.on_closed();
        }
    }

    /// The handler is done with `inbound`: PUBACK for QoS 1, PUBREC for QoS 2, written on
    /// the connection it came from if that is still up.
    pub fn acknowledge(&mut self, now_ms: u64, inbound: &Inbound, out: &mut Vec<ClientOut>) {
        let (Some(id), true) = (inbound.publish.packet_id, self.is_connected()) else {
            return;
        };
        if inbound.connection != self.connection {
            return;
        }
        let ack = Ack::new(id, 0);
        match inbound.publish.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(now_ms, &Packet::Puback(ack), out),
            QoS::ExactlyOnce => self.send(now_ms, &Packet::Pubrec(ack), out),
        }
    }

    /// Bytes from the broker.
    pub fn on_bytes(&mut self, now_ms: u64, bytes: &[u8], rng: &mut impl Rng, out: &mut Vec<ClientOut>) {
        self.buffer.extend_from_slice(bytes);
        self.last_received_ms = now_ms;
        while self.state != State::Disconnected {
            let version = Some(self.options.version);
            match packet::decode(&self.buffer, version, CLIENT_PACKET_SIZE_MAX) {
                Ok(Some((packet, used))) => {
                    self.buffer.drain(..used);
                    self.on_packet(now_ms, packet, rng, out);
                }
                Ok(None) => return,
                Err(error) => {
                    out.push(ClientOut::Note {
                        kind: "client.malformed_packet",
                        detail: error.to_string(),
                    });
                    out.push(ClientOut::Close);
                    self.on_closed();
                    return;
                }
            }
        }
    }

    fn on_packet(&mut self, now_ms: u64, packet: Packet, rng: &mut impl Rng, out: &mut Vec<ClientOut>) {
        match packet {
            Packet::Connack {
                session_present,
                reason,
                ..
            } => self.on_connack(now_ms, session_present, reason, rng, out),
            Packet::Publish(publish) => self.on_publish(now_ms, publish, out),
            Packet::Puback(ack) => self.on_puback(now_ms, &ack, out),
            Packet::Pubrec(ack) => self.on_pubrec(now_ms, &ack, out),
            Packet::Pubrel(ack) => {
                // paho answers any PUBREL with PUBCOMP without looking it up.
                self.inbound_qos2.remove(&ack.packet_id);
                self.send(now_ms, &Packet::Pubcomp(Ack::new(ack.packet_id, 0)), out);
            }
            Packet::Pubcomp(ack) => self.complete(now_ms, ack.packet_id, Ok(()), out),
            Packet::Suback { reasons, .. } => out.push(ClientOut::Subscribed { granted: reasons }),
            Packet::Pingresp => self.ping_sent_ms = None,
            other => out.push(ClientOut::Note {
                kind: "client.unexpected_packet",
                detail: format!("{other:?}"),
            }),
        }
    }

    fn on_connack(
        &mut self,
        now_ms: u64,
        session_present: bool,
        reason: u8,
        rng: &mut impl Rng,
        out: &mut Vec<ClientOut>,
    ) {
        if reason != 0 {
            out.push(ClientOut::Refused { code: reason });
            out.push(ClientOut::Close);
            self.on_closed();
            return;
        }
        self.state = State::Connected;
        out.push(ClientOut::Connected { session_present });
        if (self.connected_once || self.options.restarted) && !session_present {
            // paho ignores the flag on a reconnect; the timeline shows where the broker
            // started afresh and what the old session held was gone.
            out.push(ClientOut::Note {
                kind: "client.session_not_present",
                detail: String::new(),
            });
        }
        if self.options.clean_session {
            // The broker starts a new session: no inbound QoS 2 exchange survives it.
            self.inbound_qos2.clear();
        }
        if !self.connected_once && self.options.clean_session {
            self.store.clear(); // `Connect()` resets a CleanSession client's store
        }
        self.connected_once = true;
        // `reconnect` resumes whatever CleanSession says (paho PR #290).
        self.resend_stored(now_ms, rng, out);
    }

    /// [MQTT-4.4.0-1] as paho does it: every stored PUBLISH again with DUP=1 (a QoS 2 one
    /// even after its PUBREC), its application token completed as it goes.
    fn resend_stored(&mut self, now_ms: u64, rng: &mut impl Rng, out: &mut Vec<ClientOut>) {
        let mut ids: Vec<u16> = self.store.keys().copied().collect();
        if !ids.is_empty() {
            let released = self.store.values().filter(|s| s.released).count();
            out.push(ClientOut::Note {
                kind: "client.resume",
                detail: format!("{} PUBLISH, {released} PUBREL", ids.len() - released),
            });
        }
        if self.store.values().any(|s| s.released) {
            out.push(ClientOut::Note {
                kind: "client.pubrel_resent",
                detail: String::new(),
            });
        }
        match self.options.resend_order {
            ResendOrder::StoreOrder => {
                ids.shuffle(rng);
                for id in ids {
                    self.resend(now_ms, id, out);
                }
            }
            ResendOrder::Ordered => {
                ids.sort_by_key(|id| self.store[id].order);
                self.resume = ids.into();
                self.resume_next(now_ms, out);
            }
        }
    }

    fn resend(&mut self, now_ms: u64, id: u16, out: &mut Vec<ClientOut>) {
        let stored = self.store.get_mut(&id).expect("a stored id");
        if let Some(token) = stored.token.take() {
            out.push(ClientOut::Completed {
                token,
                result: Ok(()),
            });
        }
        let packet = if stored.released {
            Packet::Pubrel(Ack::new(id, 0))
        } else {
            let mut publish = stored.publish.clone();
            publish.dup = true;
            Packet::Publish(publish)
        };
        self.send(now_ms, &packet, out);
    }

    /// The ordered resend: the next stored message, once the one before is acknowledged.
    fn resume_next(&mut self, now_ms: u64, out: &mut Vec<ClientOut>) {
        self.resuming = None;
        while let Some(id) = self.resume.pop_front() {
            if self.store.contains_key(&id) {
                self.resuming = Some(id);
                self.resend(now_ms, id, out);
                return;
            }
        }
    }

    fn on_publish(&mut self, now_ms: u64, publish: Publish, out: &mut Vec<ClientOut>) {
        if let (QoS::ExactlyOnce, Some(id), true) = (publish.qos, publish.packet_id, self.options.spec_qos2) {
            if !self.inbound_qos2.insert(id) {
                // Seen and not released yet: acknowledge again, deliver nothing
                // [MQTT-4.3.3-2].
                self.send(now_ms, &Packet::Pubrec(Ack::new(id, 0)), out);
                return;
            }
        }
        out.push(ClientOut::Message(Inbound {
            publish,
            connection: self.connection,
        }));
    }

    fn on_puback(&mut self, now_ms: u64, ack: &Ack, out: &mut Vec<ClientOut>) {
        let result = if ack.reason >= 0x80 {
            Err(PublishError::Refused(ack.reason))
        } else {
            Ok(())
        };
        self.complete(now_ms, ack.packet_id, result, out);
    }

    /// PUBREC: PUBREL goes out. paho keeps the PUBLISH stored until PUBCOMP (it stores no
    /// PUBREL), and answers an unexpected PUBREC with PUBREL all the same.
    fn on_pubrec(&mut self, now_ms: u64, ack: &Ack, out: &mut Vec<ClientOut>) {
        if ack.reason >= 0x80 {
            return self.complete(now_ms, ack.packet_id, Err(PublishError::Refused(ack.reason)), out);
        }
        if let (true, Some(stored)) = (self.options.spec_qos2, self.store.get_mut(&ack.packet_id)) {
            stored.released = true;
        }
        self.send(now_ms, &Packet::Pubrel(Ack::new(ack.packet_id, 0)), out);
    }

    /// The end of an outbound exchange: the message leaves the store.
    fn complete(&mut self, now_ms: u64, id: u16, result: Result<(), PublishError>, out: &mut Vec<ClientOut>) {
        if let Some(token) = self.store.remove(&id).and_then(|s| s.token) {
            out.push(ClientOut::Completed { token, result });
        }
        if self.resuming == Some(id) {
            self.resume_next(now_ms, out);
        }
    }

    /// Keepalive as paho's `ping.go:keepalive` checks it: a PINGREQ once nothing has been
    /// sent or nothing received for `keep_alive_s`, and the connection given up when a ping
    /// goes unanswered for `ping_timeout_ms` ("pingresp not received, disconnecting").
    pub fn on_tick(&mut self, now_ms: u64, out: &mut Vec<ClientOut>) {
        if self.state != State::Connected || self.options.keep_alive_s == 0 {
            return;
        }
        if let Some(sent) = self.ping_sent_ms {
            if now_ms.saturating_sub(sent) >= self.options.ping_timeout_ms {
                out.push(ClientOut::Note {
                    kind: "client.ping_timeout",
                    detail: "pingresp not received, disconnecting".into(),
                });
                out.push(ClientOut::Close);
                self.on_closed();
            }
            return;
        }
        let keep_alive_ms = u64::from(self.options.keep_alive_s) * 1000;
        let quiet_ms = now_ms.saturating_sub(self.last_sent_ms.min(self.last_received_ms));
        if quiet_ms >= keep_alive_ms {
            self.ping_sent_ms = Some(now_ms);
            self.send(now_ms, &Packet::Pingreq, out);
        }
    }

    /// How often paho's keepalive loop looks: every 5 s, or a quarter of a keepalive of
    /// 10 s or less.
    pub fn check_interval_ms(&self) -> u64 {
        let keep_alive_ms = u64::from(self.options.keep_alive_s) * 1000;
        if keep_alive_ms > 10_000 {
            5_000
        } else {
            (keep_alive_ms / 4).max(1)
        }
    }
}
