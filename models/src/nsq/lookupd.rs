//! nsqlookupd, sans I/O (reference §1.5; `nsqlookupd/lookup_protocol_v1.go`, `http.go`,
//! `registration_db.go`).
//!
//! - TCP protocol V1: magic `"  V1"`, then text commands IDENTIFY (with a JSON body naming the
//!   nsqd), REGISTER / UNREGISTER `topic [channel]` and PING. Responses, errors included, are
//!   `[int32 len][data]` with no frame type; fatal errors close the connection.
//! - When an nsqd's connection closes, it is removed from every registration at once (the
//!   registrations themselves stay, empty).
//! - HTTP `GET /lookup?topic=` answers `{channels, producers}`, leaving out producers whose
//!   last PING is older than `inactive_producer_timeout` (300 s) and producers tombstoned for
//!   the topic within `tombstone_lifetime` (45 s). A topic never registered is 404
//!   `TOPIC_NOT_FOUND`. Also `/topics`, `/channels?topic=`, `/nodes`, `/ping`, `/info` and
//!   `POST /topic/tombstone?topic=&node=`.
//! - Lookupds never talk to each other: each has its own view.

// A sans-I/O core: its functions stay within clippy.toml's too-many-lines-threshold (issue 9).
#![deny(clippy::too_many_lines)]

use super::protocol::{is_valid_channel_name, is_valid_topic_name, ProtocolError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub const MAGIC_V1: &[u8; 4] = b"  V1";
pub const LOOKUPD_TCP_PORT: u16 = 4160;
pub const LOOKUPD_HTTP_PORT: u16 = 4161;
pub const VERSION: &str = super::nsqd::VERSION;
const LINE_MAX: usize = 4096;
const BODY_MAX: usize = 1024 * 1024;

/// nsqlookupd's options (`[config.lookupd]` in a scenario), named as its flags.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LookupdOptions {
    /// nsqlookupd --inactive-producer-timeout: an nsqd not heard from for this long drops out
    /// of `/lookup`.
    pub inactive_producer_timeout_ms: u64,
    /// nsqlookupd --tombstone-lifetime: how long a tombstoned producer stays out of `/lookup`.
    pub tombstone_lifetime_ms: u64,
    /// The address nsqlookupd gives in its IDENTIFY response, with its ports: where an nsqd
    /// asks it for a new topic's channels. Set by the driver (the simulated host's name, or
    /// the real server's address and the ports it bound), not by scenarios.
    #[serde(skip)]
    pub broadcast_address: String,
    #[serde(skip)]
    pub tcp_port: u16,
    #[serde(skip)]
    pub http_port: u16,
}

impl Default for LookupdOptions {
    fn default() -> LookupdOptions {
        LookupdOptions {
            inactive_producer_timeout_ms: 300_000,
            tombstone_lifetime_ms: 45_000,
            broadcast_address: "nsqlookupd".into(),
            tcp_port: LOOKUPD_TCP_PORT,
            http_port: LOOKUPD_HTTP_PORT,
        }
    }
}

/// What an nsqd says about itself in IDENTIFY; what `/lookup` returns for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    #[serde(default)]
    pub remote_address: String,
    #[serde(default)]
    pub hostname: String,
    pub broadcast_address: String,
    pub tcp_port: u16,
    pub http_port: u16,
    pub version: String,
}

pub type PeerId = u64;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Registration {
    category: &'static str, // "topic" or "channel"
    key: String,
    sub_key: String,
}

#[derive(Debug)]
struct Peer {
    info: Option<PeerInfo>,
    input: Vec<u8>,
    magic: bool,
    last_update: Duration,
    /// topic -> tombstoned at
    tombstones: BTreeMap<String, Duration>,
}

pub struct Lookupd {
    options: LookupdOptions,
    peers: BTreeMap<PeerId, Peer>,
    registrations: BTreeMap<Registration, BTreeSet<PeerId>>,
    next_peer: PeerId,
}

/// What the driver must do for a peer connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerOutput {
    Send(Vec<u8>),
    Close,
}

fn response(data: &[u8]) -> PeerOutput {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(data);
    PeerOutput::Send(out)
}

impl Lookupd {
    pub fn new(options: LookupdOptions) -> Lookupd {
        Lookupd {
            options,
            peers: BTreeMap::new(),
            registrations: BTreeMap::new(),
            next_peer: 1,
        }
    }

    pub fn connect(&mut self, now: Duration) -> PeerId {
        let id = self.next_peer;
        self.next_peer += 1;
        self.peers.insert(
            id,
            Peer {
                info: None,
                input: Vec::new(),
                magic: false,
                last_update: now,
                tombstones: BTreeMap::new(),
            },
        );
        id
    }

    /// The connection closed: the peer leaves every registration at once.
    pub fn disconnect(&mut self, peer: PeerId) {
        self.peers.remove(&peer);
        for producers in self.registrations.values_mut() {
            producers.remove(&peer);
        }
    }

    pub fn receive(&mut self, peer: PeerId, bytes: &[u8], remote: &str, now: Duration) -> Vec<PeerOutput> {
        let mut out = Vec::new();
        let Some(state) = self.peers.get_mut(&peer) else {
            return out;
        };
        state.input.extend_from_slice(bytes);
        if !state.magic {
            if state.input.len() < 4 {
                return out;
            }
            if &state.input[..4] != MAGIC_V1 {
                out.push(response(b"E_BAD_PROTOCOL bad protocol magic"));
                out.push(PeerOutput::Close);
                return out;
            }
            state.input.drain(..4);
            state.magic = true;
        }
        while let Some(result) = self.next_command(peer, remote, now) {
            match result {
                Ok(data) => out.push(response(&data)),
                Err(error) => {
                    out.push(response(&error.frame_data()));
                    if error.fatal {
                        out.push(PeerOutput::Close);
                        break;
                    }
                }
            }
        }
        out
    }

    /// Runs the command at the front of `peer`'s input and consumes it: `None` until a whole
    /// command has arrived, or when the peer is gone.
    fn next_command(
        &mut self,
        peer: PeerId,
        remote: &str,
        now: Duration,
    ) -> Option<Result<Vec<u8>, ProtocolError>> {
        let state = self.peers.get_mut(&peer)?;
        let Some(newline) = state.input.iter().position(|b| *b == b'\n') else {
            if state.input.len() > LINE_MAX {
                return Some(Err(ProtocolError::fatal("E_INVALID", "command line too long")));
            }
            return None;
        };
        let line = String::from_utf8_lossy(&state.input[..newline])
            .trim_end_matches('\r')
            .to_string();
        let params: Vec<&str> = line.split(' ').collect();
        let mut used = newline + 1;
        let result = match params[0] {
            "PING" => {
                if state.info.is_some() {
                    state.last_update = now;
                }
                Ok(b"OK".to_vec())
            }
            "IDENTIFY" => {
                let (result, body_used) = self.identify_command(peer, used, remote, now)?;
                used += body_used;
                result
            }
            "REGISTER" => self.register(peer, &params[1..], true),
            "UNREGISTER" => self.register(peer, &params[1..], false),
            other => Err(ProtocolError::fatal(
                "E_INVALID",
                format!("invalid command {other}"),
            )),
        };
        if let Some(state) = self.peers.get_mut(&peer) {
            state.input.drain(..used.min(state.input.len()));
        }
        Some(result)
    }

    /// IDENTIFY's body, `[int32 len][JSON]` from `at` in the peer's input: `None` until it has
    /// all arrived, else the answer and the bytes the body used (none if its length is refused).
    fn identify_command(
        &mut self,
        peer: PeerId,
        at: usize,
        remote: &str,
        now: Duration,
    ) -> Option<(Result<Vec<u8>, ProtocolError>, usize)> {
        let input = &self.peers[&peer].input;
        let len = input.get(at..at + 4)?;
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        if len > BODY_MAX {
            let error = ProtocolError::fatal("E_BAD_BODY", "IDENTIFY failed to read body");
            return Some((Err(error), 0));
        }
        let body = input.get(at + 4..at + 4 + len)?.to_vec();
        Some((self.identify(peer, &body, remote, now), 4 + len))
    }

    fn identify(
        &mut self,
        peer: PeerId,
        body: &[u8],
        remote: &str,
        now: Duration,
    ) -> Result<Vec<u8>, ProtocolError> {
        let state = self.peers.get_mut(&peer).expect("live peer");
        if state.info.is_some() {
            return Err(ProtocolError::fatal("E_INVALID", "cannot IDENTIFY again"));
        }
        let mut info: PeerInfo = serde_json::from_slice(body)
            .map_err(|_| ProtocolError::fatal("E_BAD_BODY", "IDENTIFY failed to decode JSON body"))?;
        if info.broadcast_address.is_empty()
            || info.tcp_port == 0
            || info.http_port == 0
            || info.version.is_empty()
        {
            return Err(ProtocolError::fatal("E_BAD_BODY", "IDENTIFY missing fields"));
        }
        info.remote_address = remote.to_string();
        state.info = Some(info.clone());
        state.last_update = now;
        Ok(serde_json::json!({
            // The port it listens on, as nsqlookupd's IDENTIFY answers (its real TCP address).
            "tcp_port": self.options.tcp_port,
            "http_port": self.options.http_port,
            "version": VERSION,
            "broadcast_address": self.options.broadcast_address,
            "hostname": self.options.broadcast_address,
        })
        .to_string()
        .into_bytes())
    }

    fn register(&mut self, peer: PeerId, params: &[&str], add: bool) -> Result<Vec<u8>, ProtocolError> {
        let command = if add { "REGISTER" } else { "UNREGISTER" };
        if self.peers.get(&peer).is_none_or(|p| p.info.is_none()) {
            return Err(ProtocolError::fatal("E_INVALID", "client must IDENTIFY"));
        }
        let topic = *params.first().ok_or_else(|| {
            ProtocolError::fatal("E_INVALID", format!("{command} insufficient number of params"))
        })?;
        if !is_valid_topic_name(topic) {
            return Err(ProtocolError::fatal(
                "E_BAD_TOPIC",
                format!("{command} topic name '{topic}' is not valid"),
            ));
        }
        let channel = params.get(1).copied().filter(|c| !c.is_empty());
        if let Some(channel) = channel {
            if !is_valid_channel_name(channel) {
                return Err(ProtocolError::fatal(
                    "E_BAD_CHANNEL",
                    format!("{command} channel name '{channel}' is not valid"),
                ));
            }
        }
        let topic_key = Registration {
            category: "topic",
            key: topic.to_string(),
            sub_key: String::new(),
        };
        if add {
            if let Some(channel) = channel {
                let key = Registration {
                    category: "channel",
                    key: topic.to_string(),
                    sub_key: channel.to_string(),
                };
                self.registrations.entry(key).or_default().insert(peer);
            }
            self.registrations.entry(topic_key).or_default().insert(peer);
            return Ok(b"OK".to_vec());
        }
        match channel {
            Some(channel) => {
                let key = Registration {
                    category: "channel",
                    key: topic.to_string(),
                    sub_key: channel.to_string(),
                };
                let left = self.registrations.get_mut(&key).map(|p| {
                    p.remove(&peer);
                    p.len()
                });
                if left == Some(0) && channel.ends_with("#ephemeral") {
                    self.registrations.remove(&key);
                }
            }
            None => {
                for (key, producers) in self.registrations.iter_mut() {
                    if key.category == "channel" && key.key == topic {
                        producers.remove(&peer);
                    }
                }
                let left = self.registrations.get_mut(&topic_key).map(|p| {
                    p.remove(&peer);
                    p.len()
                });
                if left == Some(0) && topic.ends_with("#ephemeral") {
                    self.registrations.remove(&topic_key);
                }
            }
        }
        Ok(b"OK".to_vec())
    }

    fn active_producers(&self, topic: &str, now: Duration) -> Vec<PeerInfo> {
        let key = Registration {
            category: "topic",
            key: topic.to_string(),
            sub_key: String::new(),
        };
        let inactive = Duration::from_millis(self.options.inactive_producer_timeout_ms);
        let tombstone = Duration::from_millis(self.options.tombstone_lifetime_ms);
        self.registrations
            .get(&key)
            .into_iter()
            .flatten()
            .filter_map(|id| self.peers.get(id))
            .filter(|p| now.saturating_sub(p.last_update) <= inactive)
            .filter(|p| {
                p.tombstones
                    .get(topic)
                    .is_none_or(|at| now.saturating_sub(*at) >= tombstone)
            })
            .filter_map(|p| p.info.clone())
            .collect()
    }

    fn channels(&self, topic: &str) -> Vec<String> {
        self.registrations
            .keys()
            .filter(|r| r.category == "channel" && r.key == topic)
            .map(|r| r.sub_key.clone())
            .collect()
    }

    /// An HTTP request (`method`, path with query) answered as (status, JSON body).
    pub fn http(&mut self, method: &str, target: &str, now: Duration) -> (u16, String) {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let param = |name: &str| query_param(query, name);
        match (method, path) {
            ("GET", "/ping") => (200, "OK".to_string()),
            ("GET", "/info") => (200, serde_json::json!({ "version": VERSION }).to_string()),
            ("GET", "/topics") => {
                let topics: Vec<&String> = self
                    .registrations
                    .keys()
                    .filter(|r| r.category == "topic")
                    .map(|r| &r.key)
                    .collect();
                (200, serde_json::json!({ "topics": topics }).to_string())
            }
            ("GET", "/channels") => match param("topic") {
                None => http_error(400, "MISSING_ARG_TOPIC"),
                Some(topic) => (
                    200,
                    serde_json::json!({ "channels": self.channels(&topic) }).to_string(),
                ),
            },
            ("GET", "/lookup") => match param("topic") {
                None => http_error(400, "MISSING_ARG_TOPIC"),
                Some(topic) => self.lookup(&topic, now),
            },
            ("GET", "/nodes") => (200, serde_json::json!({ "producers": self.nodes() }).to_string()),
            ("POST", "/topic/tombstone") => match (param("topic"), param("node")) {
                (None, _) => http_error(400, "MISSING_ARG_TOPIC"),
                (_, None) => http_error(400, "MISSING_ARG_NODE"),
                (Some(topic), Some(node)) => {
                    self.tombstone(&topic, &node, now);
                    (200, String::new())
                }
            },
            _ => http_error(404, "NOT_FOUND"),
        }
    }

    /// `GET /lookup?topic=`: the topic's channels and its active producers; 404 for a topic
    /// never registered (an unregistered topic's empty registration still answers).
    fn lookup(&self, topic: &str, now: Duration) -> (u16, String) {
        let key = Registration {
            category: "topic",
            key: topic.to_string(),
            sub_key: String::new(),
        };
        if !self.registrations.contains_key(&key) {
            return http_error(404, "TOPIC_NOT_FOUND");
        }
        let body = serde_json::json!({
            "channels": self.channels(topic),
            "producers": self.active_producers(topic, now),
        });
        (200, body.to_string())
    }

    /// `GET /nodes`: every identified peer, with the topics it produces and whether each is
    /// tombstoned on it.
    fn nodes(&self) -> Vec<serde_json::Value> {
        self.peers
            .iter()
            .filter_map(|(id, p)| p.info.as_ref().map(|info| (id, p, info)))
            .map(|(id, p, info)| {
                let topics: Vec<&String> = self
                    .registrations
                    .iter()
                    .filter(|(r, producers)| r.category == "topic" && producers.contains(id))
                    .map(|(r, _)| &r.key)
                    .collect();
                let tombstones: Vec<bool> = topics.iter().map(|t| p.tombstones.contains_key(*t)).collect();
                let mut value = serde_json::to_value(info).expect("peer info serializes");
                value["topics"] = serde_json::json!(topics);
                value["tombstones"] = serde_json::json!(tombstones);
                value
            })
            .collect()
    }

    /// `POST /topic/tombstone?topic=&node=`: the peers at `node` (`broadcast_address:http_port`)
    /// drop out of the topic's `/lookup` for `tombstone_lifetime`.
    fn tombstone(&mut self, topic: &str, node: &str, now: Duration) {
        for peer in self.peers.values_mut() {
            if let Some(info) = &peer.info {
                if format!("{}:{}", info.broadcast_address, info.http_port) == node {
                    peer.tombstones.insert(topic.to_string(), now);
                }
            }
        }
    }
}

/// The value of `name` in a URL query (`a=1&b=2`), percent-decoded as Go's `url.ParseQuery`.
fn query_param(query: &str, name: &str) -> Option<String> {
    super::http::query_param(query, name)
}

fn http_error(status: u16, message: &str) -> (u16, String) {
    (status, serde_json::json!({ "message": message }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(data: &[u8]) -> Vec<u8> {
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(data);
        out
    }

    fn identify(name: &str) -> Vec<u8> {
        let body = format!(
            r#"{{"broadcast_address":"{name}","tcp_port":4150,"http_port":4151,"version":"1.3.0","hostname":"{name}"}}"#
        );
        let mut out = b"IDENTIFY\n".to_vec();
        out.extend(frame(body.as_bytes()));
        out
    }

    fn responses(out: &[PeerOutput]) -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                PeerOutput::Send(bytes) => Some(String::from_utf8_lossy(&bytes[4..]).into_owned()),
                PeerOutput::Close => None,
            })
            .collect()
    }

    fn registered(name: &str, lookupd: &mut Lookupd, now: Duration) -> PeerId {
        let peer = lookupd.connect(now);
        let mut bytes = MAGIC_V1.to_vec();
        bytes.extend(identify(name));
        bytes.extend(b"REGISTER orders billing\n");
        let out = lookupd.receive(peer, &bytes, "10.0.0.1:1234", now);
        assert_eq!(responses(&out)[1], "OK");
        peer
    }

    #[test]
    fn identify_answers_with_the_ports_lookupd_really_listens_on() {
        let mut l = Lookupd::new(LookupdOptions {
            tcp_port: 34160,
            http_port: 34161,
            ..LookupdOptions::default()
        });
        let peer = l.connect(Duration::ZERO);
        let mut bytes = MAGIC_V1.to_vec();
        bytes.extend(identify("nsqd1"));
        let out = l.receive(peer, &bytes, "10.0.0.1:1234", Duration::ZERO);
        let reply: serde_json::Value = serde_json::from_str(&responses(&out)[0]).unwrap();
        assert_eq!(
            (reply["tcp_port"].as_u64(), reply["http_port"].as_u64()),
            (Some(34160), Some(34161))
        );
    }

    #[test]
    fn lookup_lists_channels_and_producers_in_nsqs_json_shape() {
        let mut l = Lookupd::new(LookupdOptions::default());
        registered("nsqd1", &mut l, Duration::ZERO);
        let (status, body) = l.http("GET", "/lookup?topic=orders", Duration::ZERO);
        assert_eq!(status, 200);
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["channels"], serde_json::json!(["billing"]));
        assert_eq!(value["producers"][0]["broadcast_address"], "nsqd1");
        assert_eq!(value["producers"][0]["tcp_port"], 4150);
        assert_eq!(
            l.http("GET", "/lookup?topic=nope", Duration::ZERO),
            (404, r#"{"message":"TOPIC_NOT_FOUND"}"#.into())
        );
        assert_eq!(l.http("GET", "/lookup", Duration::ZERO).0, 400);
    }

    #[test]
    fn a_closed_connection_drops_the_producer_at_once_but_keeps_the_registration() {
        let mut l = Lookupd::new(LookupdOptions::default());
        let peer = registered("nsqd1", &mut l, Duration::ZERO);
        l.disconnect(peer);
        let (status, body) = l.http("GET", "/lookup?topic=orders", Duration::ZERO);
        assert_eq!(status, 200);
        assert!(body.contains(r#""producers":[]"#), "{body}");
    }

    #[test]
    fn inactive_producers_and_tombstones_are_filtered() {
        let mut l = Lookupd::new(LookupdOptions::default());
        registered("nsqd1", &mut l, Duration::ZERO);
        let at = |s| Duration::from_secs(s);
        assert!(l.http("GET", "/lookup?topic=orders", at(300)).1.contains("nsqd1"));
        assert!(
            !l.http("GET", "/lookup?topic=orders", at(301)).1.contains("nsqd1"),
            "no PING for 300 s"
        );
        let mut l = Lookupd::new(LookupdOptions::default());
        registered("nsqd1", &mut l, Duration::ZERO);
        assert_eq!(
            l.http("POST", "/topic/tombstone?topic=orders&node=nsqd1:4151", at(10))
                .0,
            200
        );
        assert!(!l.http("GET", "/lookup?topic=orders", at(54)).1.contains("nsqd1"));
        assert!(
            l.http("GET", "/lookup?topic=orders", at(55)).1.contains("nsqd1"),
            "tombstone lifetime 45 s"
        );
    }

    #[test]
    fn register_before_identify_and_bad_names_are_fatal() {
        let mut l = Lookupd::new(LookupdOptions::default());
        let peer = l.connect(Duration::ZERO);
        let out = l.receive(peer, b"  V1REGISTER orders\n", "x", Duration::ZERO);
        assert_eq!(responses(&out), vec!["E_INVALID client must IDENTIFY"]);
        assert_eq!(out.last(), Some(&PeerOutput::Close));
        let peer = l.connect(Duration::ZERO);
        let mut bytes = MAGIC_V1.to_vec();
        bytes.extend(identify("n"));
        bytes.extend(b"REGISTER bad/topic\n");
        let out = l.receive(peer, &bytes, "x", Duration::ZERO);
        assert_eq!(
            responses(&out)[1],
            "E_BAD_TOPIC REGISTER topic name 'bad/topic' is not valid"
        );
        let peer = l.connect(Duration::ZERO);
        let out = l.receive(peer, b"  V2", "x", Duration::ZERO);
        assert_eq!(out.last(), Some(&PeerOutput::Close));
    }

    #[test]
    fn unregistering_the_last_producer_of_an_ephemeral_channel_removes_it() {
        let mut l = Lookupd::new(LookupdOptions::default());
        let peer = l.connect(Duration::ZERO);
        let mut bytes = MAGIC_V1.to_vec();
        bytes.extend(identify("n"));
        bytes.extend(b"REGISTER t c#ephemeral\nUNREGISTER t c#ephemeral\n");
        l.receive(peer, &bytes, "x", Duration::ZERO);
        assert!(l
            .http("GET", "/channels?topic=t", Duration::ZERO)
            .1
            .contains(r#""channels":[]"#));
    }
}
