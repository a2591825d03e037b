//! What both NSQ clients share: their settings, the message body format, the connection to
//! an nsqd and the IDENTIFY they open it with.
//!
//! Message bodies carry the application id (and key): `"<id>"` or `"<id> <key>"`.

use super::link::{self, Link};
use super::producer::Retry;
use super::protocol::Command;
use super::sim_nsqd::NSQD_TCP_PORT;
use crate::db::sink::DbSink;
use sim::history::MsgId;
use sim::Env;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

pub fn encode_body(id: MsgId, key: Option<&str>) -> Vec<u8> {
    match key {
        Some(key) => format!("{} {key}", id.0).into_bytes(),
        None => id.0.to_string().into_bytes(),
    }
}

pub fn decode_body(body: &[u8]) -> Option<MsgId> {
    let text = std::str::from_utf8(body).ok()?;
    text.split(' ').next()?.parse().ok().map(MsgId)
}

#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub topic: String,
    pub channel: String,
    pub heartbeat_interval_ms: i64,
    pub msg_timeout_ms: u64,
    pub read_timeout: Duration,
    pub connect_timeout: Duration,
    pub publish_timeout: Duration,
    pub publish_interval: Duration,
    /// nsqds a consumer connects to directly, besides those lookupd lists.
    pub direct_nsqds: Vec<String>,
    /// Simulated time of the first publish (the workload's `start_ms`).
    pub publish_start: Duration,
    pub retry: Retry,
    pub retries_max: u32,
    pub max_in_flight: i64,
    pub max_attempts: u16,
    pub handlers: u32,
    pub processing: Duration,
    pub handler_failure_rate: f64,
    /// Scheduled handler failures: the attempts of a message whose handler fails.
    pub fail_messages: Rc<BTreeMap<MsgId, BTreeSet<u16>>>,
    /// When this consumer joins (simulated time); zero for producers.
    pub start: Duration,
    /// The producer's DPUB deferral and the fraction of messages it defers.
    pub defer: Duration,
    pub defer_fraction: f64,
    /// The producer's MPUB batch size; 1 publishes with PUB (or DPUB).
    pub mpub_batch: u32,
    /// Skip messages whose NSQ id this consumer has handled already.
    pub dedupe_message_ids: bool,
    pub requeue_delay: Duration,
    pub max_requeue_delay: Duration,
    pub reconnect: Duration,
    /// With lookupds, consumers discover nsqds by polling them; without, they connect to
    /// every nsqd directly.
    pub lookupds: Vec<String>,
    pub lookupd_poll_interval: Duration,
    /// With a database sink, handlers process each message as a transaction on it.
    pub db: Option<DbSink>,
    /// go-nsq's backoff: (BackoffMultiplier, MaxBackoffDuration), or None to disable it.
    pub backoff: Option<(Duration, Duration)>,
}

impl ClientConfig {
    /// Whether the handler fails this attempt of `id`: scheduled, or drawn at
    /// `handler_failure_rate` (drawn only when the rate is set, so runs without it keep their
    /// random stream).
    pub fn handler_fails(&self, env: &Env, id: MsgId, attempt: u16) -> bool {
        let scheduled = self
            .fail_messages
            .get(&id)
            .is_some_and(|attempts| attempts.contains(&attempt));
        scheduled
            || (self.handler_failure_rate > 0.0
                && rand::Rng::random_bool(&mut *env.rng(), self.handler_failure_rate.min(1.0)))
    }
}

pub(crate) async fn connect(env: &Env, me: &str, host: &str, config: &ClientConfig) -> Option<Link> {
    let stream = tokio::time::timeout(config.connect_timeout, sim::connect(env, me, host, NSQD_TCP_PORT))
        .await
        .ok()?
        .ok()?;
    let (read, write) = stream.into_split();
    Some(link::start(read, write, config.read_timeout))
}

pub(crate) fn identify(config: &ClientConfig, feature_negotiation: bool) -> Command {
    let mut body = serde_json::json!({
        "client_id": "jetsam",
        "hostname": "jetsam",
        "user_agent": "jetsam-go-nsq-model",
        "heartbeat_interval": config.heartbeat_interval_ms,
        "feature_negotiation": feature_negotiation,
    });
    if config.msg_timeout_ms > 0 {
        body["msg_timeout"] = config.msg_timeout_ms.into();
    }
    Command::Identify(body.to_string().into_bytes())
}
