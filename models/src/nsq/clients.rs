//! The NSQ clients in the simulation: a producer that publishes to its nsqd, and a consumer
//! with go-nsq's behaviour (reference §1.4). Both speak the V2 protocol over [`link`].
//!
//! Message bodies carry the application id (and key): `"<id>"` or `"<id> <key>"`.
//!
//! [`link`]: super::link

use super::link::{self, Link, Sender};
use super::protocol::{Command, FrameType, Message};
use super::rdy::{ConnKey, Phase, Rdy, Sends, REDISTRIBUTE_INTERVAL};
use super::sim_nsqd::NSQD_TCP_PORT;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sim::history::{EventKind, MsgId};
use sim::{Env, Process};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};

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

pub use crate::source::Source;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retry {
    /// One attempt; an unanswered PUB is `info`.
    None,
    /// Retry the same nsqd (reconnecting): a PUB applied but unanswered is published twice.
    Same,
    /// Retry the next nsqd: the duplicate gets a different nsqd message id.
    Another,
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
    pub requeue_delay: Duration,
    pub max_requeue_delay: Duration,
    pub reconnect: Duration,
    /// With lookupds, consumers discover nsqds by polling them; without, they connect to
    /// every nsqd directly.
    pub lookupds: Vec<String>,
    pub lookupd_poll_interval: Duration,
    /// With a database sink, handlers process each message as a transaction (issue 4).
    pub db: Option<crate::db::client::DbConfig>,
    /// Work after processing and before the FIN (the window where a crash redelivers).
    pub ack_delay: Duration,
    /// go-nsq's backoff: (BackoffMultiplier, MaxBackoffDuration), or None to disable it.
    pub backoff: Option<(Duration, Duration)>,
}

async fn connect(env: &Env, me: &str, host: &str, config: &ClientConfig) -> Option<Link> {
    let stream = tokio::time::timeout(config.connect_timeout, sim::connect(env, me, host, NSQD_TCP_PORT))
        .await
        .ok()?
        .ok()?;
    let (read, write) = stream.into_split();
    Some(link::start(read, write, config.read_timeout))
}

fn identify(config: &ClientConfig, feature_negotiation: bool) -> Command {
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

enum Outcome {
    Ok,
    /// Definitely not applied (not connected, or nsqd answered an error).
    Fail(String),
    /// Sent, and no answer: applied or not, nobody knows.
    Unknown(String),
}

async fn publish_once(
    (env, me): (&Env, &str),
    link: &mut Option<Link>,
    host: &str,
    body: &[u8],
    config: &ClientConfig,
) -> Outcome {
    if link.as_ref().is_none_or(|l| !l.sender.is_alive()) {
        let Some(mut fresh) = connect(env, me, host, config).await else {
            return Outcome::Fail(format!("cannot connect to {host}"));
        };
        match fresh
            .request(&identify(config, false), config.publish_timeout)
            .await
        {
            Some((FrameType::Response, _)) => *link = Some(fresh),
            _ => return Outcome::Fail(format!("IDENTIFY to {host} failed")),
        }
    }
    let active = link.as_mut().expect("connected above");
    let command = Command::Pub {
        topic: config.topic.clone(),
        body: body.to_vec(),
    };
    match active.request(&command, config.publish_timeout).await {
        Some((FrameType::Response, data)) if data == b"OK" => Outcome::Ok,
        Some((FrameType::Error, data)) => {
            *link = None;
            Outcome::Fail(String::from_utf8_lossy(&data).into_owned())
        }
        Some(_) | None => {
            // No answer in time. Responses are matched in order, so a late OK would answer the
            // wrong PUB: the connection is dropped and the next publish reconnects.
            *link = None;
            Outcome::Unknown(format!(
                "no response from {host} within {:?}",
                config.publish_timeout
            ))
        }
    }
}

/// A producer process: takes messages from the source and publishes each to its nsqd.
pub async fn run_producer(
    env: Env,
    host: String,
    nsqds: Vec<String>,
    home: usize,
    config: ClientConfig,
    source: Rc<Source>,
) -> turmoil::Result {
    let process = env.process(&host);
    let _running = process.start();
    let name = format!("{host}@{}", process.incarnation());
    let mut links: Vec<Option<Link>> = nsqds.iter().map(|_| None).collect();
    let mut seq = 0;
    let now = Duration::from_micros(env.now().0);
    process.sleep(config.publish_start.saturating_sub(now)).await;
    loop {
        process.checkpoint().await;
        if process.stop_requested() {
            return Ok(());
        }
        let Some((id, key)) = source.take() else {
            return Ok(());
        };
        seq += 1;
        env.record(
            &host,
            EventKind::Publish {
                id,
                producer: name.clone(),
                seq,
                key: key.clone(),
            },
        );
        let body = encode_body(id, key.as_deref());
        let mut target = home;
        let mut unknown = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome =
                publish_once((&env, &host), &mut links[target], &nsqds[target], &body, &config).await;
            process.checkpoint().await;
            let retry_left = config.retry != Retry::None && attempt <= config.retries_max;
            match outcome {
                Outcome::Ok => {
                    env.record(&host, EventKind::PublishOk { id });
                    break;
                }
                Outcome::Unknown(reason) | Outcome::Fail(reason) if retry_left => {
                    if unknown.is_none() {
                        unknown = Some(reason);
                    }
                    env.note(&host, "producer.retry");
                    if config.retry == Retry::Another {
                        target = (target + 1) % nsqds.len();
                    }
                }
                Outcome::Unknown(reason) => {
                    env.record(&host, EventKind::PublishInfo { id, reason });
                    break;
                }
                Outcome::Fail(error) => {
                    // An earlier attempt may have been applied: then the outcome is unknown.
                    match unknown {
                        Some(reason) => env.record(&host, EventKind::PublishInfo { id, reason }),
                        None => env.record(&host, EventKind::PublishFail { id, error }),
                    }
                    break;
                }
            }
        }
        if !config.publish_interval.is_zero() {
            process.sleep(config.publish_interval).await;
        }
    }
}

type Delivery = (Message, Sender, String);

/// A consumer's RDY: go-nsq's accounting over the live connections ([`super::rdy`]), its
/// backoff after handler errors, and the connections to send RDY on.
pub struct Throttle {
    rdy: RefCell<Rdy>,
    backoff: RefCell<Option<super::backoff::Backoff>>,
    senders: RefCell<std::collections::BTreeMap<ConnKey, Sender>>,
    next: Cell<ConnKey>,
    /// Wakes the RDY loop when a retry after ErrOverMaxInFlight is scheduled.
    wake: tokio::sync::Notify,
}

impl Throttle {
    fn new(config: &ClientConfig) -> Rc<Throttle> {
        Rc::new(Throttle {
            rdy: RefCell::new(Rdy::new(config.max_in_flight)),
            backoff: RefCell::new(
                config
                    .backoff
                    .map(|(multiplier, max)| super::backoff::Backoff::new(multiplier, max)),
            ),
            senders: RefCell::new(std::collections::BTreeMap::new()),
            next: Cell::new(0),
            wake: tokio::sync::Notify::new(),
        })
    }

    fn phase(&self) -> Phase {
        match self.backoff.borrow().as_ref() {
            Some(b) if b.in_timeout() => Phase::BackoffTimeout,
            Some(b) if b.backing_off() => Phase::Backoff,
            _ => Phase::Normal,
        }
    }

    /// Sends the RDY counts the accounting decided.
    fn apply(&self, sends: Sends, retry_before: Option<Duration>) {
        let senders = self.senders.borrow();
        for (key, count) in sends {
            if let Some(sender) = senders.get(&key) {
                sender.send(&Command::Rdy(count));
            }
        }
        if self.rdy.borrow().next_retry() != retry_before {
            self.wake.notify_one();
        }
    }

    fn update(&self, f: impl FnOnce(&mut Rdy, Phase) -> Sends) {
        let phase = self.phase();
        let before = self.rdy.borrow().next_retry();
        let sends = f(&mut self.rdy.borrow_mut(), phase);
        self.apply(sends, before);
    }

    /// A connection is subscribed: it gets its share, and the others re-check theirs.
    fn connected(&self, sender: Sender, max_rdy: i64, now: Duration) -> ConnKey {
        let key = self.next.get();
        self.next.set(key + 1);
        self.senders.borrow_mut().insert(key, sender);
        self.update(|rdy, phase| rdy.connected(key, max_rdy, now, phase));
        key
    }

    fn closed(&self, key: ConnKey) {
        self.senders.borrow_mut().remove(&key);
        self.rdy.borrow_mut().closed(key);
    }

    fn message(&self, key: ConnKey, now: Duration) {
        self.update(|rdy, phase| rdy.message(key, now, phase));
    }

    /// go-nsq's rdyLoop: redistribution every 5 s, and retries after ErrOverMaxInFlight.
    async fn rdy_loop(self: Rc<Self>, env: Env, host: String, process: Process) {
        let now = || Duration::from_micros(env.now().0);
        let mut next_redistribute = now() + REDISTRIBUTE_INTERVAL;
        loop {
            let wake_at = self
                .rdy
                .borrow()
                .next_retry()
                .map_or(next_redistribute, |r| r.min(next_redistribute));
            tokio::select! {
                _ = process.sleep(wake_at.saturating_sub(now())) => {}
                _ = self.wake.notified() => {}
            }
            let at = now();
            self.update(|rdy, _| rdy.retries(at));
            if at >= next_redistribute {
                let mut moved = false;
                self.update(|rdy, phase| {
                    let sends = rdy.redistribute(at, phase, &mut *env.rng());
                    moved = !sends.is_empty();
                    sends
                });
                if moved {
                    env.note(&host, "consumer.rdy_redistributed");
                }
                next_redistribute = at + REDISTRIBUTE_INTERVAL;
            }
        }
    }

    /// A message finished (`success`) or was requeued after a handler error.
    fn signal(self: &Rc<Self>, success: bool, env: &Env, host: &str, process: &Process) {
        let now = Duration::from_micros(env.now().0);
        let action = match self.backoff.borrow_mut().as_mut() {
            Some(backoff) => backoff.signal(success, now),
            None => return,
        };
        match action {
            super::backoff::Action::Nothing => {}
            super::backoff::Action::Restore => {
                env.note(host, "consumer.backoff_ended");
                self.update(|rdy, _| rdy.restore(now));
            }
            super::backoff::Action::Pause { until } => {
                env.note(host, "consumer.backoff");
                self.update(|rdy, _| rdy.zero_all(now));
                let (throttle, env, process) = (self.clone(), env.clone(), process.clone());
                tokio::task::spawn_local(async move {
                    process
                        .sleep(until.saturating_sub(Duration::from_micros(env.now().0)))
                        .await;
                    if !throttle.backoff.borrow_mut().as_mut().is_some_and(|b| b.resume()) {
                        return;
                    }
                    // Test the waters: RDY 1 on one connection chosen at random. If it stays
                    // silent, redistribution moves it after LowRdyIdleTimeout.
                    let at = Duration::from_micros(env.now().0);
                    throttle.update(|rdy, _| rdy.test_waters(at, &mut *env.rng()));
                });
            }
        }
    }
}

/// A consumer process with go-nsq's behaviour: a connection to every nsqd, `max_in_flight`
/// spread over them as RDY, handlers that FIN on success and REQ with a linear delay on
/// error, and messages past `max_attempts` finished without running the handler.
pub async fn run_consumer(
    env: Env,
    host: String,
    nsqds: Vec<String>,
    config: ClientConfig,
) -> turmoil::Result {
    let process = env.process(&host);
    let _running = process.start();
    let (deliveries, incoming) = mpsc::unbounded_channel::<Delivery>();
    let incoming = Rc::new(Mutex::new(incoming));
    let throttle = Throttle::new(&config);
    tokio::task::spawn_local(
        throttle
            .clone()
            .rdy_loop(env.clone(), host.clone(), process.clone()),
    );
    // Without lookupd, go-nsq connects to every configured nsqd (ConnectToNSQDs); with
    // lookupd it may still be given some nsqds directly (`consumer_nsqds`).
    let direct: Vec<String> = if config.lookupds.is_empty() {
        nsqds.clone()
    } else {
        config.direct_nsqds.clone()
    };
    {
        for nsqd in &direct {
            let (env, host, nsqd, config, deliveries, process, throttle) = (
                env.clone(),
                host.clone(),
                nsqd.clone(),
                config.clone(),
                deliveries.clone(),
                process.clone(),
                throttle.clone(),
            );
            tokio::task::spawn_local(async move {
                loop {
                    connect_and_consume(&env, &host, &nsqd, &config, &throttle, &deliveries).await;
                    // Without lookupd, go-nsq reconnects to a configured nsqd every LookupdPollInterval.
                    process.sleep(config.reconnect).await;
                }
            });
        }
    }
    if !config.lookupds.is_empty() {
        let (env, host, config, deliveries, process, throttle) = (
            env.clone(),
            host.clone(),
            config.clone(),
            deliveries.clone(),
            process.clone(),
            throttle.clone(),
        );
        tokio::task::spawn_local(async move {
            lookupd_loop(env, host, config, throttle, deliveries, process, direct).await
        });
    }
    let mut handlers = Vec::new();
    for _ in 0..config.handlers.max(1) {
        let (env, host, config, incoming, process, throttle) = (
            env.clone(),
            host.clone(),
            config.clone(),
            incoming.clone(),
            process.clone(),
            throttle.clone(),
        );
        handlers.push(tokio::task::spawn_local(async move {
            handler_loop(env, host, config, incoming, process, throttle).await
        }));
    }
    process.stopping().await;
    Ok(())
}

/// go-nsq's lookupdLoop: after an initial jitter, poll one lookupd at a time (round robin,
/// trying up to three on error), connect to every nsqd listed that is not connected yet, and
/// never drop one that disappears from lookup: a connection ends only on error, and then a
/// query is made at once.
async fn lookupd_loop(
    env: Env,
    host: String,
    config: ClientConfig,
    throttle: Rc<Throttle>,
    deliveries: mpsc::UnboundedSender<Delivery>,
    process: Process,
    direct: Vec<String>,
) {
    // go-nsq refuses a second connection to an nsqd it is already connected to.
    let connected: Rc<std::cell::RefCell<std::collections::BTreeSet<String>>> =
        Rc::new(std::cell::RefCell::new(direct.into_iter().collect()));
    let requery = Rc::new(tokio::sync::Notify::new());
    let jitter = config
        .lookupd_poll_interval
        .mul_f64(env.rng().random_range(0.0..0.3));
    process.sleep(jitter).await;
    let mut next = 0usize;
    loop {
        for _ in 0..config.lookupds.len().min(3) {
            let lookupd = &config.lookupds[next % config.lookupds.len()];
            next += 1;
            match query_lookupd(&env, &host, lookupd, &config.topic).await {
                Some(producers) => {
                    for nsqd in producers {
                        if !connected.borrow_mut().insert(nsqd.clone()) {
                            continue;
                        }
                        env.note(&host, "consumer.discovered_nsqd");
                        let (env, host, config, deliveries, connected, requery, throttle) = (
                            env.clone(),
                            host.clone(),
                            config.clone(),
                            deliveries.clone(),
                            connected.clone(),
                            requery.clone(),
                            throttle.clone(),
                        );
                        tokio::task::spawn_local(async move {
                            connect_and_consume(&env, &host, &nsqd, &config, &throttle, &deliveries).await;
                            connected.borrow_mut().remove(&nsqd);
                            requery.notify_one();
                        });
                    }
                    break;
                }
                None => env.note(&host, "consumer.lookupd_query_failed"),
            }
        }
        tokio::select! {
            biased;
            _ = requery.notified() => {}
            _ = process.sleep(config.lookupd_poll_interval) => {}
        }
    }
}

/// `GET /lookup?topic=`: the producers' broadcast addresses, or `None` if the lookupd could
/// not be asked. A topic this lookupd does not know is an empty answer.
async fn query_lookupd(env: &Env, me: &str, lookupd: &str, topic: &str) -> Option<Vec<String>> {
    let timeout = Duration::from_secs(1);
    let port = super::lookupd::LOOKUPD_HTTP_PORT;
    let stream = tokio::time::timeout(timeout, sim::connect(env, me, lookupd, port))
        .await
        .ok()?
        .ok()?;
    let target = format!("/lookup?topic={topic}");
    let (status, body) = tokio::time::timeout(timeout, super::http::get(stream, lookupd, &target))
        .await
        .ok()?
        .ok()?;
    if status == 404 {
        return Some(Vec::new());
    }
    let value: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some(
        value["producers"]
            .as_array()?
            .iter()
            .filter_map(|p| p["broadcast_address"].as_str().map(str::to_string))
            .collect(),
    )
}

/// One connection to one nsqd, from connect to its end.
async fn connect_and_consume(
    env: &Env,
    host: &str,
    nsqd: &str,
    config: &ClientConfig,
    throttle: &Rc<Throttle>,
    deliveries: &mpsc::UnboundedSender<Delivery>,
) {
    let Some(mut link) = connect(env, host, nsqd, config).await else {
        env.note(host, "consumer.connect_failed");
        return;
    };
    // IDENTIFY's answer carries nsqd's max_rdy_count (feature negotiation).
    let identified = match link.request(&identify(config, true), config.read_timeout).await {
        Some((FrameType::Response, data)) => Some(
            serde_json::from_slice::<serde_json::Value>(&data)
                .ok()
                .and_then(|v| v["max_rdy_count"].as_i64())
                // An answer that does not say: nsqd's default.
                .unwrap_or(super::nsqd::MAX_RDY_COUNT_DEFAULT),
        ),
        _ => None,
    };
    let subscribe = Command::Sub {
        topic: config.topic.clone(),
        channel: config.channel.clone(),
    };
    let subscribed = match identified {
        Some(max_rdy) => matches!(
            link.request(&subscribe, config.read_timeout).await,
            Some((FrameType::Response, _))
        )
        .then_some(max_rdy),
        None => None,
    };
    if let Some(max_rdy) = subscribed {
        let now = || Duration::from_micros(env.now().0);
        let key = throttle.connected(link.sender.clone(), max_rdy, now());
        if throttle.phase() == Phase::Normal && throttle.rdy.borrow().rdy_of(key) == Some(0) {
            // More connections than max_in_flight: this one starts with no RDY.
            env.note(host, "consumer.rdy_over_max_in_flight");
        }
        while let Some((kind, data)) = link.next().await {
            match kind {
                FrameType::Message => {
                    if let Ok(message) = Message::decode(&data) {
                        throttle.message(key, now());
                        let _ = deliveries.send((message, link.sender.clone(), nsqd.to_string()));
                    }
                }
                FrameType::Error => env.note(host, "consumer.error_frame"),
                FrameType::Response => {}
            }
        }
        throttle.closed(key);
    }
    env.note(host, "consumer.connection_lost");
}

/// The handler with a database sink: the strategy decides when the FIN goes out.
#[allow(clippy::too_many_arguments)]
async fn handle_with_db(
    env: &Env,
    host: &str,
    config: &ClientConfig,
    db: &crate::db::client::DbConfig,
    conn: &mut Option<crate::db::client::DbConn>,
    message: &Message,
    id: MsgId,
    sender: &Sender,
    process: &Process,
) -> bool {
    use crate::db::client::{process_message, Processed, Strategy};
    let fin = |env: &Env| {
        if sender.send(&Command::Fin(message.id)) {
            env.record(
                host,
                EventKind::Ack {
                    id,
                    consumer: host.to_string(),
                },
            );
        } else {
            env.note(host, "consumer.fin_lost");
        }
    };
    if db.strategy == Strategy::AckBefore {
        fin(env);
        if let Processed::Failed(_) = process_message(env, host, conn, id.0, db, process).await {
            env.note(host, "consumer.effect_failed_after_ack");
        }
        return true; // FIN'd: a success to go-nsq
    }
    let processed = process_message(env, host, conn, id.0, db, process).await;
    if processed == Processed::AlreadyDone {
        env.note(
            host,
            match db.strategy {
                crate::db::client::Strategy::Conditional => "consumer.conditional_already_done",
                crate::db::client::Strategy::Position => "consumer.behind_stored_position_skipped",
                _ => "consumer.inbox_duplicate_skipped",
            },
        );
    }
    if processed == Processed::CommittedPartial {
        env.note(
            host,
            if db.retry == crate::db::client::DbRetry::ContinueAfterDeadlock {
                "consumer.continued_after_1213"
            } else {
                "consumer.committed_partial_after_1205"
            },
        );
    }
    match processed {
        Processed::Committed | Processed::AlreadyDone | Processed::CommittedPartial => {
            if !config.ack_delay.is_zero() {
                process.sleep(config.ack_delay).await;
            }
            fin(env);
            true
        }
        Processed::Failed(_) => {
            let delay = (config.requeue_delay * u32::from(message.attempts)).min(config.max_requeue_delay);
            sender.send(&Command::Req {
                id: message.id,
                timeout_ms: delay.as_millis() as i64,
            });
            env.note(host, "consumer.handler_error");
            false
        }
    }
}

async fn handler_loop(
    env: Env,
    host: String,
    config: ClientConfig,
    incoming: Rc<Mutex<mpsc::UnboundedReceiver<Delivery>>>,
    process: Process,
    throttle: Rc<Throttle>,
) {
    let mut db_conn = None;
    loop {
        let next = incoming.lock().await.recv().await;
        let Some((message, sender, nsqd)) = next else {
            return;
        };
        process.checkpoint().await;
        let Some(id) = decode_body(&message.body) else {
            sender.send(&Command::Fin(message.id));
            env.note(&host, "consumer.bad_body");
            continue;
        };
        if config.max_attempts > 0 && message.attempts > config.max_attempts {
            // go-nsq gives up silently: FIN without calling the handler.
            sender.send(&Command::Fin(message.id));
            env.note(&host, "consumer.gave_up");
            throttle.signal(true, &env, &host, &process);
            continue;
        }
        // The delivery is recorded when a handler takes the message, as go-nsq's handler loop
        // does. nsqd may have sent it much earlier: while handlers are busy, messages wait in
        // the consumer's queue with their msg_timeout already running at nsqd.
        env.record(
            &host,
            EventKind::Deliver {
                id,
                attempt: u32::from(message.attempts),
                consumer: host.clone(),
                partition: Some(nsqd.clone()),
                node: Some(nsqd.clone()),
            },
        );
        if let Some(db) = &config.db {
            process.sleep(config.processing).await;
            handle_with_db(
                &env,
                &host,
                &config,
                db,
                &mut db_conn,
                &message,
                id,
                &sender,
                &process,
            )
            .await;
            continue;
        }
        process.sleep(config.processing).await;
        let failed =
            config.handler_failure_rate > 0.0 && env.rng().random_bool(config.handler_failure_rate.min(1.0));
        if failed {
            // go-nsq: Requeue(-1), a linear delay of requeue_delay × attempts, capped.
            let delay = (config.requeue_delay * u32::from(message.attempts)).min(config.max_requeue_delay);
            sender.send(&Command::Req {
                id: message.id,
                timeout_ms: delay.as_millis() as i64,
            });
            env.note(&host, "consumer.handler_error");
            throttle.signal(false, &env, &host, &process);
            continue;
        }
        env.record(
            &host,
            EventKind::Effect {
                id,
                consumer: host.clone(),
            },
        );
        if sender.send(&Command::Fin(message.id)) {
            env.record(
                &host,
                EventKind::Ack {
                    id,
                    consumer: host.clone(),
                },
            );
        } else {
            env.note(&host, "consumer.fin_lost");
        }
        throttle.signal(true, &env, &host, &process);
    }
}
