//! nsqd's HTTP API, sans I/O (`nsqd/http.go`): publishing (`/pub`, `/mpub` newline-separated
//! or `binary=true`), `/stats` (the JSON nsqadmin reads with `format=json`, or text), topic
//! and channel creation, topic pause and unpause, `/ping` and `/info`. A child of `nsqd`, so
//! it reaches the topics as the TCP commands do.
//!
//! Not modelled: deleting or emptying topics and channels, and pausing channels (they answer
//! 501 `NOT_IMPLEMENTED`, never a false success).

use super::super::http::{query_param, HttpRequest, HttpResponse};
use super::super::protocol::{is_valid_channel_name, is_valid_topic_name};
use super::{ms, Nsqd, Outbox, VERSION};
use rand::Rng;
use sim::disk::Disk;
use std::time::Duration;

fn error(status: u16, message: &str) -> HttpResponse {
    (status, serde_json::json!({ "message": message }).to_string())
}

fn ok() -> HttpResponse {
    (200, "OK".to_string())
}

/// The `topic` parameter, checked as nsqd's `getTopicFromQuery` does.
fn topic_param(query: &str) -> Result<String, HttpResponse> {
    let topic = query_param(query, "topic").ok_or_else(|| error(400, "MISSING_ARG_TOPIC"))?;
    if !is_valid_topic_name(&topic) {
        return Err(error(400, "INVALID_ARG_TOPIC"));
    }
    Ok(topic)
}

fn topic_channel_params(query: &str) -> Result<(String, String), HttpResponse> {
    let topic = topic_param(query)?;
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
            ("POST", "/topic/create") => topic_param(request.query).map(|topic| {
                self.get_topic(&topic, now, out);
                (200, String::new())
            }),
            ("POST", "/channel/create") => topic_channel_params(request.query).map(|(topic, channel)| {
                self.get_channel(&topic, &channel, now, out);
                (200, String::new())
            }),
            ("POST", "/topic/pause") => self.http_pause_topic(request.query, true),
            ("POST", "/topic/unpause") => self.http_pause_topic(request.query, false),
            (
                "POST",
                "/topic/delete" | "/topic/empty" | "/channel/delete" | "/channel/empty" | "/channel/pause"
                | "/channel/unpause",
            ) => Ok(error(501, "NOT_IMPLEMENTED")),
            (_, "/ping" | "/info" | "/stats" | "/pub" | "/mpub") => Ok(error(405, "METHOD_NOT_ALLOWED")),
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
        let topic = topic_param(request.query)?;
        if request.body.is_empty() {
            return Err(error(400, "MSG_EMPTY"));
        }
        if request.body.len() as i64 > self.options.max_msg_size {
            return Err(error(413, "MSG_TOO_BIG"));
        }
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
        let topic = topic_param(request.query)?;
        if request.body.len() as i64 > self.options.max_body_size {
            return Err(error(413, "BODY_TOO_BIG"));
        }
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

    fn http_pause_topic(&mut self, query: &str, paused: bool) -> Result<HttpResponse, HttpResponse> {
        let topic = topic_param(query)?;
        let state = self
            .topics
            .get_mut(&topic)
            .ok_or_else(|| error(404, "TOPIC_NOT_FOUND"))?;
        state.paused = paused;
        let _ = self.persist_metadata();
        Ok((200, String::new()))
    }

    /// `/stats`: `format=json` gives the shape nsqadmin reads; `topic=` and `channel=` filter.
    fn http_stats(&self, query: &str) -> HttpResponse {
        let only_topic = query_param(query, "topic");
        let only_channel = query_param(query, "channel");
        let topics: Vec<serde_json::Value> = self
            .topics
            .values()
            .filter(|t| only_topic.as_ref().is_none_or(|name| *name == t.name))
            .map(|t| self.topic_stats(t, only_channel.as_deref()))
            .collect();
        if query_param(query, "format").as_deref() == Some("json") {
            let body = serde_json::json!({
                "version": VERSION,
                "health": "OK",
                "start_time": self.epoch_ms / 1000,
                "topics": topics,
                "producers": [],
            });
            return (200, body.to_string());
        }
        let mut text = format!("nsqd v{VERSION}\nHealth: OK\n");
        for t in &topics {
            text += &format!(
                "\n[{:<15}] depth: {:<5} msgs: {:<8}\n",
                t["topic_name"].as_str().unwrap_or(""),
                t["depth"],
                t["message_count"]
            );
            for c in t["channels"].as_array().into_iter().flatten() {
                text += &format!(
                    "    [{:<25}] depth: {:<5} inflt: {:<4} def: {:<4} re-q: {:<5} timeout: {:<5} clients: {}\n",
                    c["channel_name"].as_str().unwrap_or(""),
                    c["depth"],
                    c["in_flight_count"],
                    c["deferred_count"],
                    c["requeue_count"],
                    c["timeout_count"],
                    c["client_count"],
                );
            }
        }
        (200, text)
    }

    fn topic_stats(&self, topic: &super::Topic<D>, only_channel: Option<&str>) -> serde_json::Value {
        let channels: Vec<serde_json::Value> = topic
            .channels
            .values()
            .filter(|c| only_channel.is_none_or(|name| name == c.name))
            .map(|c| {
                let clients: Vec<serde_json::Value> = c
                    .clients()
                    .iter()
                    .map(|id| serde_json::json!({ "client_id": id.to_string() }))
                    .collect();
                serde_json::json!({
                    "channel_name": c.name,
                    "depth": c.depth(),
                    "in_flight_count": c.in_flight_count(),
                    "deferred_count": c.deferred_count(),
                    "requeue_count": c.requeue_count,
                    "timeout_count": c.timeout_count,
                    "client_count": clients.len(),
                    "clients": clients,
                    "paused": false,
                })
            })
            .collect();
        serde_json::json!({
            "topic_name": topic.name,
            "channels": channels,
            "depth": topic.depth(),
            "message_count": topic.message_count,
            "paused": topic.paused,
        })
    }
}
