//! nsqd's HTTP API, sans I/O (`nsqd/http.go`): publishing (`/pub`, `/mpub` newline-separated
//! or `binary=true`), `/stats` (the JSON nsqadmin reads with `format=json`, or text), topic
//! and channel creation, deletion, emptying, pausing and unpausing (run by `nsqd_admin.rs`),
//! `/ping` and `/info`. A child of `nsqd`, so it reaches the topics as the TCP commands do.
//!
//! Errors are nsqd's: the status and `{"message": CODE}`. Each handler checks its arguments
//! as its Go counterpart does: `/pub`, `/mpub` and `/topic/create` say `INVALID_TOPIC` for a
//! bad name (`getTopicFromQuery`), the `/channel/...` handlers `INVALID_ARG_TOPIC` or
//! `INVALID_ARG_CHANNEL` (`GetTopicChannelArgs`) and then `TOPIC_NOT_FOUND` (a channel is
//! only created on an existing topic); `/topic/delete` and `/topic/pause` do not check the
//! name, so a bad one is `TOPIC_NOT_FOUND`.

use super::super::http::{query_param, HttpRequest, HttpResponse};
use super::super::protocol::{is_valid_channel_name, is_valid_topic_name};
use super::{ms, AdminError, Nsqd, Outbox, VERSION};
use rand::Rng;
use sim::disk::Disk;
use std::time::Duration;

/// nsqd's management routes, all POST only.
const MANAGEMENT_PATHS: [&str; 10] = [
    "/topic/create",
    "/topic/delete",
    "/topic/empty",
    "/topic/pause",
    "/topic/unpause",
    "/channel/create",
    "/channel/delete",
    "/channel/empty",
    "/channel/pause",
    "/channel/unpause",
];

fn error(status: u16, message: &str) -> HttpResponse {
    (status, serde_json::json!({ "message": message }).to_string())
}

fn ok() -> HttpResponse {
    (200, "OK".to_string())
}

/// A management call's failure as nsqd's handlers answer it.
fn admin_error(e: AdminError) -> HttpResponse {
    match e {
        AdminError::TopicNotFound => error(404, "TOPIC_NOT_FOUND"),
        AdminError::ChannelNotFound => error(404, "CHANNEL_NOT_FOUND"),
        AdminError::Io(e) => {
            tracing::warn!(error = %e, "nsqd management call");
            error(500, "INTERNAL_ERROR")
        }
    }
}

/// What a management call that answers nothing on success gives.
fn done(result: Result<(), AdminError>) -> Result<HttpResponse, HttpResponse> {
    result.map(|()| (200, String::new())).map_err(admin_error)
}

/// The `topic` parameter as nsqd's handlers that take a bare name read it: present, and
/// not checked (`/topic/delete`, `/topic/pause`).
fn topic_name_param(query: &str) -> Result<String, HttpResponse> {
    query_param(query, "topic").ok_or_else(|| error(400, "MISSING_ARG_TOPIC"))
}

/// The `topic` parameter, checked as nsqd's `getTopicFromQuery` (and `doEmptyTopic`) do.
fn topic_param(query: &str) -> Result<String, HttpResponse> {
    let topic = topic_name_param(query)?;
    if !is_valid_topic_name(&topic) {
        return Err(error(400, "INVALID_TOPIC"));
    }
    Ok(topic)
}

/// `topic` and `channel`, checked as nsqd's `GetTopicChannelArgs` does.
fn topic_channel_params(query: &str) -> Result<(String, String), HttpResponse> {
    let topic = topic_name_param(query)?;
    if !is_valid_topic_name(&topic) {
        return Err(error(400, "INVALID_ARG_TOPIC"));
    }
    let channel = query_param(query, "channel").ok_or_else(|| error(400, "MISSING_ARG_CHANNEL"))?;
    if !is_valid_channel_name(&channel) {
        return Err(error(400, "INVALID_ARG_CHANNEL"));
    }
    Ok((topic, channel))
}

/// `binary=true` MPUB bodies: a 4-byte count, then each message as a 4-byte size and data.
fn binary_bodies(mut body: &[u8], max_msg_size: usize) -> Result<Vec<Vec<u8>>, HttpResponse> {
    let take_len = |body: &mut &[u8]| -> Option<usize> {
        let (len, rest) = body.split_first_chunk::<4>()?;
        *body = rest;
        Some(i32::from_be_bytes(*len).max(0) as usize)
    };
    let count = take_len(&mut body).ok_or_else(|| error(400, "INVALID_BODY"))?;
    if count == 0 {
        return Err(error(400, "INVALID_BODY"));
    }
    let mut bodies = Vec::new();
    for _ in 0..count {
        let size = take_len(&mut body).ok_or_else(|| error(400, "INVALID_BODY"))?;
        if size == 0 || size > body.len() {
            return Err(error(400, "INVALID_BODY"));
        }
        if size > max_msg_size {
            return Err(error(413, "MSG_TOO_BIG"));
        }
        let (message, rest) = body.split_at(size);
        bodies.push(message.to_vec());
        body = rest;
    }
    Ok(bodies)
}

/// Newline-separated MPUB bodies: empty lines are skipped, as nsqd's `doMPUB` does.
fn line_bodies(body: &[u8], max_msg_size: usize) -> Result<Vec<Vec<u8>>, HttpResponse> {
    let bodies: Vec<Vec<u8>> = body
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    if bodies.iter().any(|b| b.len() > max_msg_size) {
        return Err(error(413, "MSG_TOO_BIG"));
    }
    Ok(bodies)
}

impl<D: Disk + Clone> Nsqd<D> {
    /// One HTTP request, answered as nsqd's HTTP server answers it. What it publishes or
    /// creates reaches clients through `out`, as a TCP command's effects do.
    pub fn http(
        &mut self,
        request: &HttpRequest<'_>,
        now: Duration,
        rng: &mut impl Rng,
        out: &mut Outbox,
    ) -> HttpResponse {
        let answer = match (request.method, request.path) {
            ("GET" | "HEAD", "/ping") => Ok(ok()),
            ("GET", "/info") => Ok(self.http_info()),
            ("GET", "/stats") => Ok(self.http_stats(request.query)),
            ("POST" | "PUT", "/pub") => self.http_pub(request, now, out),
            ("POST" | "PUT", "/mpub") => self.http_mpub(request, now, out),
            ("POST", path) if MANAGEMENT_PATHS.contains(&path) => {
                self.http_manage(path, request.query, now, out)
            }
            (_, "/ping" | "/info" | "/stats" | "/pub" | "/mpub") => Ok(error(405, "METHOD_NOT_ALLOWED")),
            (_, path) if MANAGEMENT_PATHS.contains(&path) => Ok(error(405, "METHOD_NOT_ALLOWED")),
            _ => Ok(error(404, "NOT_FOUND")),
        };
        self.pump(now, rng, out);
        answer.unwrap_or_else(|e| e)
    }

    fn http_info(&self) -> HttpResponse {
        let body = serde_json::json!({
            "version": VERSION,
            "max_msg_size": self.options.max_msg_size,
            "max_body_size": self.options.max_body_size,
            "msg_timeout": self.options.msg_timeout_ms * 1_000_000,
            "start_time": self.epoch_ms / 1000,
        });
        (200, body.to_string())
    }

    fn publish_bodies(
        &mut self,
        topic: &str,
        bodies: Vec<Vec<u8>>,
        defer: Duration,
        now: Duration,
        out: &mut Outbox,
    ) -> HttpResponse {
        match self.publish(topic, bodies, defer, now, out) {
            Ok(()) => ok(),
            Err(_) => error(503, "EXITING"),
        }
    }

    /// `/pub?topic=&defer=`: one message, the body.
    fn http_pub(
        &mut self,
        request: &HttpRequest<'_>,
        now: Duration,
        out: &mut Outbox,
    ) -> Result<HttpResponse, HttpResponse> {
        // nsqd's order: the body's size, then the topic.
        if request.body.len() as i64 > self.options.max_msg_size {
            return Err(error(413, "MSG_TOO_BIG"));
        }
        if request.body.is_empty() {
            return Err(error(400, "MSG_EMPTY"));
        }
        let topic = topic_param(request.query)?;
        let defer = match query_param(request.query, "defer") {
            None => Duration::ZERO,
            Some(text) => match text.parse::<u64>() {
                Ok(defer_ms) if defer_ms <= self.options.max_req_timeout_ms => ms(defer_ms),
                _ => return Err(error(400, "INVALID_DEFER")),
            },
        };
        Ok(self.publish_bodies(&topic, vec![request.body.to_vec()], defer, now, out))
    }

    /// `/mpub?topic=[&binary=true]`.
    fn http_mpub(
        &mut self,
        request: &HttpRequest<'_>,
        now: Duration,
        out: &mut Outbox,
    ) -> Result<HttpResponse, HttpResponse> {
        if request.body.len() as i64 > self.options.max_body_size {
            return Err(error(413, "BODY_TOO_BIG"));
        }
        let topic = topic_param(request.query)?;
        let max_msg_size = self.options.max_msg_size as usize;
        let binary = query_param(request.query, "binary").is_some_and(|v| matches!(v.as_str(), "true" | "1"));
        let bodies = if binary {
            binary_bodies(request.body, max_msg_size)?
        } else {
            line_bodies(request.body, max_msg_size)?
        };
        if bodies.is_empty() {
            return Err(error(400, "MSG_EMPTY"));
        }
        Ok(self.publish_bodies(&topic, bodies, Duration::ZERO, now, out))
    }

    /// `/topic/...` and `/channel/...`, each checking its arguments as nsqd's handler does.
    fn http_manage(
        &mut self,
        path: &str,
        query: &str,
        now: Duration,
        out: &mut Outbox,
    ) -> Result<HttpResponse, HttpResponse> {
        match path {
            "/topic/create" => {
                let topic = topic_param(query)?;
                self.get_topic(&topic, now, out);
                Ok((200, String::new()))
            }
            "/topic/delete" => done(self.delete_topic(&topic_name_param(query)?, out)),
            "/topic/empty" => done(self.empty_topic(&topic_param(query)?, out)),
            "/topic/pause" => self.http_pause_topic(query, true),
            "/topic/unpause" => self.http_pause_topic(query, false),
            _ => {
                let (topic, channel) = self.existing_topic_channel_params(query)?;
                match path {
                    "/channel/create" => {
                        self.get_channel(&topic, &channel, now, out);
                        Ok((200, String::new()))
                    }
                    "/channel/delete" => done(self.delete_channel(&topic, &channel, out)),
                    "/channel/empty" => done(self.empty_channel(&topic, &channel, out)),
                    "/channel/pause" => done(self.pause_channel(&topic, &channel, true)),
                    "/channel/unpause" => done(self.pause_channel(&topic, &channel, false)),
                    _ => Err(error(404, "NOT_FOUND")),
                }
            }
        }
    }

    /// nsqd's `getExistingTopicFromQuery`: valid arguments, and the topic exists.
    fn existing_topic_channel_params(&self, query: &str) -> Result<(String, String), HttpResponse> {
        let (topic, channel) = topic_channel_params(query)?;
        if !self.topic_exists(&topic) {
            return Err(error(404, "TOPIC_NOT_FOUND"));
        }
        Ok((topic, channel))
    }

    fn http_pause_topic(&mut self, query: &str, paused: bool) -> Result<HttpResponse, HttpResponse> {
        let topic = topic_name_param(query)?;
        let state = self
            .topics
            .get_mut(&topic)
            .ok_or_else(|| error(404, "TOPIC_NOT_FOUND"))?;
        state.paused = paused;
        let _ = self.persist_metadata();
        Ok((200, String::new()))
    }

    /// `/stats` (`doStats`, `GetStats`): `format=json` gives the shape nsqadmin reads,
    /// anything else nsqd's text; `topic=` and `channel=` filter (a topic without the
    /// channel asked for is left out), `include_clients=false` leaves clients out. nsqd's
    /// `memory` section (Go's heap statistics) has no counterpart here and is left out.
    fn http_stats(&self, query: &str) -> HttpResponse {
        let only_topic = query_param(query, "topic").filter(|t| !t.is_empty());
        let only_channel = query_param(query, "channel").filter(|c| !c.is_empty());
        let include_clients = !matches!(
            query_param(query, "include_clients").as_deref(),
            Some("false" | "0")
        );
        // Go marshals the nil slices of an unknown topic's stats as null.
        let topics = match &only_topic {
            Some(name) if !self.topics.contains_key(name) => None,
            _ => Some(
                self.topics
                    .values()
                    .filter(|t| only_topic.as_ref().is_none_or(|name| *name == t.name))
                    .filter_map(|t| self.topic_stats(t, only_channel.as_deref(), include_clients))
                    .collect::<Vec<_>>(),
            ),
        };
        let producers =
            (include_clients && topics.is_some()).then(|| self.producer_stats(only_topic.as_deref()));
        if query_param(query, "format").as_deref() == Some("json") {
            let body = serde_json::json!({
                "version": VERSION,
                "health": "OK",
                "start_time": self.epoch_ms / 1000,
                "topics": topics,
                "producers": producers,
            });
            return (200, body.to_string());
        }
        (
            200,
            stats_text(
                topics.as_deref().unwrap_or_default(),
                producers.as_deref().unwrap_or_default(),
            ),
        )
    }

    /// `NewTopicStats` with its channels, or `None` when a `channel=` filter names a channel
    /// the topic lacks.
    fn topic_stats(
        &self,
        topic: &super::Topic<D>,
        only_channel: Option<&str>,
        include_clients: bool,
    ) -> Option<serde_json::Value> {
        if only_channel.is_some_and(|name| !topic.channels.contains_key(name)) {
            return None;
        }
        let channels: Vec<serde_json::Value> = topic
            .channels
            .values()
            .filter(|c| only_channel.is_none_or(|name| name == c.name))
            .map(|c| {
                let clients = include_clients.then(|| {
                    c.clients()
                        .iter()
                        .filter_map(|id| self.client_stats(*id, None))
                        .collect::<Vec<_>>()
                });
                serde_json::json!({
                    "channel_name": c.name,
                    "depth": c.depth(),
                    "backend_depth": c.backend_depth(),
                    "in_flight_count": c.in_flight_count(),
                    "deferred_count": c.deferred_count(),
                    "message_count": c.message_count,
                    "requeue_count": c.requeue_count,
                    "timeout_count": c.timeout_count,
                    "client_count": c.clients().len(),
                    "clients": clients,
                    "paused": c.paused,
                    "e2e_processing_latency": no_latency(),
                })
            })
            .collect();
        Some(serde_json::json!({
            "topic_name": topic.name,
            "channels": channels,
            "depth": topic.depth(),
            "backend_depth": topic.backend_depth(),
            "message_count": topic.message_count,
            "message_bytes": topic.message_bytes,
            "paused": topic.paused,
            "e2e_processing_latency": no_latency(),
        }))
    }

    /// The clients that have published (`Type() == typeProducer`), in connection order.
    fn producer_stats(&self, only_topic: Option<&str>) -> Vec<serde_json::Value> {
        self.clients
            .iter()
            .filter(|(_, c)| !c.stats.pub_counts.is_empty())
            .filter_map(|(id, _)| self.client_stats(*id, only_topic))
            .collect()
    }

    /// `clientV2.Stats` as JSON (`ClientV2Stats`), without the fields Go omits when empty
    /// and with TLS, compression and topology fields as a client without them has.
    fn client_stats(&self, id: super::ClientId, only_topic: Option<&str>) -> Option<serde_json::Value> {
        let c = self.clients.get(&id)?;
        let s = &c.stats;
        // nsqd's loop keeps one entry: the filtered topic's, or the first it meets.
        let pub_counts: Vec<serde_json::Value> = s
            .pub_counts
            .iter()
            .filter(|(topic, _)| only_topic.is_none_or(|t| t == topic.as_str()))
            .take(1)
            .map(|(topic, count)| serde_json::json!({ "topic": topic, "count": count }))
            .collect();
        let state = match c.state {
            super::State::Magic | super::State::Init => 0,
            super::State::Subscribed => 3,
            super::State::Closing => 4,
            super::State::Closed => 1,
        };
        let mut value = serde_json::json!({
            "client_id": s.client_id,
            "hostname": s.hostname,
            "version": "V2",
            "remote_address": s.remote_address,
            "state": state,
            "ready_count": c.ready_count,
            "in_flight_count": c.in_flight,
            "message_count": s.message_count,
            "finish_count": s.finish_count,
            "requeue_count": s.requeue_count,
            "connect_ts": s.connect_ts,
            "sample_rate": s.sample_rate,
            "deflate": false,
            "snappy": false,
            "user_agent": s.user_agent,
            "topology_zone": "",
            "topology_region": "",
            "tls": false,
            "tls_cipher_suite": "",
            "tls_version": "",
            "tls_negotiated_protocol": "",
            "tls_negotiated_protocol_is_mutual": false,
        });
        if !pub_counts.is_empty() {
            value["pub_counts"] = serde_json::Value::Array(pub_counts);
        }
        Some(value)
    }
}

/// A nil latency stream's `Result()` (`--e2e-processing-latency-percentile` unset, the
/// default): nsqd reports an empty result rather than leaving the field out.
fn no_latency() -> serde_json::Value {
    serde_json::json!({ "count": 0, "percentiles": null })
}

/// `printStats` without its memory section (numbers are rendered to text first: a JSON
/// value ignores padding): a line per topic and channel, `*P ` marking a
/// paused one, then each consumer, then the producers.
fn stats_text(topics: &[serde_json::Value], producers: &[serde_json::Value]) -> String {
    let mut text = format!("nsqd v{VERSION}\n\nHealth: OK\n");
    text += if topics.is_empty() {
        "\nTopics: None\n"
    } else {
        "\nTopics:"
    };
    for t in topics {
        text += &format!(
            "\n{}[{:<15}] depth: {:<5} be-depth: {:<5} msgs: {:<8}\n",
            if t["paused"] == true { "*P " } else { "   " },
            t["topic_name"].as_str().unwrap_or(""),
            t["depth"].to_string(),
            t["backend_depth"].to_string(),
            t["message_count"].to_string()
        );
        for c in t["channels"].as_array().into_iter().flatten() {
            text += &format!(
                "{}[{:<25}] depth: {:<5} be-depth: {:<5} inflt: {:<4} def: {:<4} re-q: {:<5} timeout: {:<5} msgs: {:<8}\n",
                if c["paused"] == true { "   *P " } else { "      " },
                c["channel_name"].as_str().unwrap_or(""),
                c["depth"].to_string(),
                c["backend_depth"].to_string(),
                c["in_flight_count"].to_string(),
                c["deferred_count"].to_string(),
                c["requeue_count"].to_string(),
                c["timeout_count"].to_string(),
                c["message_count"].to_string(),
            );
            for client in c["clients"].as_array().into_iter().flatten() {
                text += &format!(
                    "        [V2 {}:{} {}] state: {} inflt: {:<4} rdy: {:<4} fin: {:<8} re-q: {:<8} msgs: {:<8}\n",
                    client["hostname"].as_str().unwrap_or(""),
                    client["remote_address"].as_str().and_then(|a| a.rsplit_once(':')).map_or("", |(_, p)| p),
                    client["user_agent"].as_str().unwrap_or(""),
                    client["state"],
                    client["in_flight_count"].to_string(),
                    client["ready_count"].to_string(),
                    client["finish_count"].to_string(),
                    client["requeue_count"].to_string(),
                    client["message_count"].to_string(),
                );
            }
        }
    }
    text += if producers.is_empty() {
        "\nProducers: None\n"
    } else {
        "\nProducers:\n"
    };
    for p in producers {
        text += &format!(
            "   [V2 {}:{} {}]\n",
            p["hostname"].as_str().unwrap_or(""),
            p["remote_address"]
                .as_str()
                .and_then(|a| a.rsplit_once(':'))
                .map_or("", |(_, port)| port),
            p["user_agent"].as_str().unwrap_or("")
        );
    }
    text
}
