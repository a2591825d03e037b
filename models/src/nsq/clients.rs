//! The NSQ clients in the simulation: a producer that publishes to its nsqd, and a consumer
//! with go-nsq's behaviour (reference §1.4). Both speak the V2 protocol over [`link`].
//!
//! Message bodies carry the application id (and key): `"<id>"` or `"<id> <key>"`.
//!
//! [`link`]: super::link

use super::link::{self, Link, Sender};
use super::protocol::{Command, FrameType, Message};
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

async fn connect(host: &str, config: &ClientConfig) -> Option<Link> {
    let stream = tokio::time::timeout(
        config.connect_timeout,
        turmoil::net::TcpStream::connect((host, NSQD_TCP_PORT)),
    )
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

async fn publish_once(link: &mut Option<Link>, host: &str, body: &[u8], config: &ClientConfig) -> Outcome {
    if link.as_ref().is_none_or(|l| !l.sender.is_alive()) {
        let Some(mut fresh) = connect(host, config).await else {
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
            let outcome = publish_once(&mut links[target], &nsqds[target], &body, &config).await;
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

/// A consumer's RDY: the per-connection share of max_in_flight, go-nsq's backoff after
/// handler errors, and the live connections to apply it to.
pub struct Throttle {
    rdy: i64,
    backoff: RefCell<Option<super::backoff::Backoff>>,
    senders: RefCell<std::collections::BTreeMap<u64, Sender>>,
    next: Cell<u64>,
    /// Bumped on every signal, so a waters-testing task knows whether anything came back.
    generation: Cell<u64>,
}

/// go-nsq's LowRdyIdleTimeout: a connection idle this long gives up its RDY to another.
const LOW_RDY_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

impl Throttle {
    fn new(rdy: i64, config: &ClientConfig) -> Rc<Throttle> {
        Rc::new(Throttle {
            rdy,
            backoff: RefCell::new(
                config
                    .backoff
                    .map(|(multiplier, max)| super::backoff::Backoff::new(multiplier, max)),
            ),
            senders: RefCell::new(std::collections::BTreeMap::new()),
            next: Cell::new(0),
            generation: Cell::new(0),
        })
    }

    /// A new connection's RDY: none while backing off.
    fn initial_rdy(&self) -> i64 {
        if self.backoff.borrow().as_ref().is_some_and(|b| b.backing_off()) {
            0
        } else {
            self.rdy
        }
    }

    fn register(&self, sender: Sender) -> u64 {
        let key = self.next.get();
        self.next.set(key + 1);
        self.senders.borrow_mut().insert(key, sender);
        key
    }

    fn unregister(&self, key: u64) {
        self.senders.borrow_mut().remove(&key);
    }

    fn all(&self, count: i64) {
        for sender in self.senders.borrow().values() {
            sender.send(&Command::Rdy(count));
        }
    }

    /// A message finished (`success`) or was requeued after a handler error.
    fn signal(self: &Rc<Self>, success: bool, env: &Env, host: &str, process: &Process) {
        let now = Duration::from_micros(env.now().0);
        self.generation.set(self.generation.get() + 1);
        let action = match self.backoff.borrow_mut().as_mut() {
            Some(backoff) => backoff.signal(success, now),
            None => return,
        };
        match action {
            super::backoff::Action::Nothing => {}
            super::backoff::Action::Restore => {
                env.note(host, "consumer.backoff_ended");
                self.all(self.rdy);
            }
            super::backoff::Action::Pause { until } => {
                env.note(host, "consumer.backoff");
                self.all(0);
                let (throttle, env, process) = (self.clone(), env.clone(), process.clone());
                tokio::task::spawn_local(async move {
                    process
                        .sleep(until.saturating_sub(Duration::from_micros(env.now().0)))
                        .await;
                    if !throttle.backoff.borrow_mut().as_mut().is_some_and(|b| b.resume()) {
                        return;
                    }
                    let generation = throttle.generation.get();
                    loop {
                        // Test the waters: RDY 1 on one connection chosen at random. If it stays
                        // silent (no message there), go-nsq's RDY redistribution moves the RDY
                        // to another connection after LowRdyIdleTimeout.
                        let senders: Vec<Sender> = throttle.senders.borrow().values().cloned().collect();
                        let choice =
                            (!senders.is_empty()).then(|| senders[env.choose(senders.len())].clone());
                        if let Some(choice) = &choice {
                            choice.send(&Command::Rdy(1));
                        }
                        process.sleep(LOW_RDY_IDLE_TIMEOUT).await;
                        if throttle.generation.get() != generation {
                            return; // a message came back: the backoff moved on
                        }
                        if let Some(choice) = &choice {
                            choice.send(&Command::Rdy(0));
                        }
                    }
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
    // go-nsq divides max_in_flight across connections, at least 1 each.
    let rdy = (config.max_in_flight / nsqds.len() as i64).max(1);
    let throttle = Throttle::new(rdy, &config);
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
            match query_lookupd(lookupd, &config.topic).await {
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
async fn query_lookupd(lookupd: &str, topic: &str) -> Option<Vec<String>> {
    let timeout = Duration::from_secs(1);
    let port = super::lookupd::LOOKUPD_HTTP_PORT;
    let stream = tokio::time::timeout(timeout, turmoil::net::TcpStream::connect((lookupd, port)))
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
    let Some(mut link) = connect(nsqd, config).await else {
        env.note(host, "consumer.connect_failed");
        return;
    };
    let identified = matches!(
        link.request(&identify(config, true), config.read_timeout).await,
        Some((FrameType::Response, _))
    );
    let subscribe = Command::Sub {
        topic: config.topic.clone(),
        channel: config.channel.clone(),
    };
    let subscribed = identified
        && matches!(
            link.request(&subscribe, config.read_timeout).await,
            Some((FrameType::Response, _))
        );
    if subscribed && link.sender.send(&Command::Rdy(throttle.initial_rdy())) {
        let registered = throttle.register(link.sender.clone());
        while let Some((kind, data)) = link.next().await {
            match kind {
                FrameType::Message => {
                    if let Ok(message) = Message::decode(&data) {
                        let _ = deliveries.send((message, link.sender.clone(), nsqd.to_string()));
                    }
                }
                FrameType::Error => env.note(host, "consumer.error_frame"),
                FrameType::Response => {}
            }
        }
        throttle.unregister(registered);
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
