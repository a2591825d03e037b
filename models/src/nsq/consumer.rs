//! The go-nsq-like consumer in the simulation (reference §1.4): connections to every nsqd
//! (directly or found through lookupd polling), RDY through the [`Throttle`], handlers that
//! FIN on success and REQ with a linear delay on failure, and the database sink.

use super::client::{connect, decode_body, identify, ClientConfig};
use super::link::{Sender, Taken};
use super::protocol::{Command, FrameType, Message, MessageId};
use super::throttle::Throttle;
use crate::db::sink::{DbConsumer, Handled};
use crate::db::user::{Delivered, Replied};
use rand::Rng;
use sim::history::{EventKind, MsgId};
use sim::{Env, Process};
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};

/// The NSQ message ids a consumer has handled, for `dedupe_message_ids`: the newest
/// `SEEN_IDS_MAX`, oldest forgotten first.
#[derive(Default)]
struct SeenIds {
    ids: std::collections::BTreeSet<MessageId>,
    order: std::collections::VecDeque<MessageId>,
}

const SEEN_IDS_MAX: usize = 65_536;

impl SeenIds {
    fn contains(&self, id: &MessageId) -> bool {
        self.ids.contains(id)
    }

    fn insert(&mut self, id: MessageId) {
        if self.ids.insert(id) {
            self.order.push_back(id);
        }
        if self.order.len() > SEEN_IDS_MAX {
            let oldest = self.order.pop_front().expect("over the bound, so not empty");
            self.ids.remove(&oldest);
        }
        assert!(self.ids.len() == self.order.len() && self.ids.len() <= SEEN_IDS_MAX);
    }
}

/// A message for the handlers, and its hand-off: dropping it tells the connection's read
/// loop that a handler took the message.
type Delivery = (Message, Sender, String, Taken);

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
    // A consumer that joins partway through the run (`consumer_start_ms`) starts then, also
    // when a restart comes earlier: the start time is absolute.
    let now = Duration::from_micros(env.now().0);
    if config.start > now {
        tokio::time::sleep(config.start - now).await;
        env.note(&host, "consumer.joined_late");
    }
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
    let seen = Rc::new(std::cell::RefCell::new(SeenIds::default()));
    let mut handlers = Vec::new();
    // Made once per incarnation: a user's handler instance dies with its process.
    let mut dbs = match &config.db {
        Some(db) => db.consumers(config.handlers.max(1) as usize),
        None => Vec::new(),
    };
    for _ in 0..config.handlers.max(1) {
        let seen = seen.clone();
        let db = dbs.pop();
        let (env, host, config, incoming, process, throttle) = (
            env.clone(),
            host.clone(),
            config.clone(),
            incoming.clone(),
            process.clone(),
            throttle.clone(),
        );
        handlers.push(tokio::task::spawn_local(async move {
            handler_loop(env, host, config, incoming, process, throttle, seen, db).await
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
        if throttle.starts_starved(key) {
            // More connections than max_in_flight: this one starts with no RDY.
            env.note(host, "consumer.rdy_over_max_in_flight");
        }
        while let Some(((kind, data), taken)) = link.next_held().await {
            match kind {
                FrameType::Message => {
                    if let Ok(message) = Message::decode(&data) {
                        throttle.message(key, now());
                        // go-nsq's incomingMessages is unbuffered: the connection's read loop
                        // waits, heartbeats unanswered, until a handler takes the message
                        // (conn.go readLoop, consumer.go onConnMessage).
                        let delivery = (message, link.sender.clone(), nsqd.to_string(), taken);
                        if deliveries.send(delivery).is_err() {
                            break;
                        }
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

/// The handler with a database sink: the strategy decides when the FIN goes out; a failed
/// transaction is REQ'd as a failed handler is.
#[allow(clippy::too_many_arguments)]
async fn handle_with_db(
    env: &Env,
    host: &str,
    config: &ClientConfig,
    db: &mut DbConsumer,
    message: &Message,
    id: MsgId,
    sender: &Sender,
    process: &Process,
) -> Handled {
    let fin = || {
        if sender.send(&Command::Fin(message.id)) {
            env.record(
                host,
                EventKind::Ack {
                    id,
                    consumer: host.into(),
                },
            );
        } else {
            env.note(host, "consumer.fin_lost");
        }
    };
    if db.runs_user() {
        return handle_with_user(env, host, config, db, message, id, sender, process, fin).await;
    }
    let handled = db.handle(env, host, id.0, process, fin).await;
    if handled == Handled::Failed {
        requeue(env, host, config, message, sender);
    }
    handled
}

/// The user's handler (issue 13): FIN on ack, REQ with its delay on requeue, and on error
/// the REQ go-nsq sends for a failed handler.
#[allow(clippy::too_many_arguments)]
async fn handle_with_user(
    env: &Env,
    host: &str,
    config: &ClientConfig,
    db: &mut DbConsumer,
    message: &Message,
    id: MsgId,
    sender: &Sender,
    process: &Process,
    fin: impl FnOnce(),
) -> Handled {
    let delivered = Delivered {
        id: id.0,
        body: message.body.clone(),
        attempts: message.attempts,
    };
    match db.handle_user(env, host, &delivered, process).await {
        Replied::Ack => {
            fin();
            Handled::Acked
        }
        Replied::Requeue(delay) => {
            sender.send(&Command::Req {
                id: message.id,
                timeout_ms: i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
            });
            Handled::Failed
        }
        Replied::Error(_) => {
            requeue(env, host, config, message, sender);
            Handled::Failed
        }
    }
}

/// A failed handler's message goes back with go-nsq's Requeue(-1): a linear delay of
/// requeue_delay × attempts, capped at max_requeue_delay.
fn requeue(env: &Env, host: &str, config: &ClientConfig, message: &Message, sender: &Sender) {
    let delay = (config.requeue_delay * u32::from(message.attempts)).min(config.max_requeue_delay);
    sender.send(&Command::Req {
        id: message.id,
        timeout_ms: delay.as_millis() as i64,
    });
    env.note(host, "consumer.handler_error");
}

#[allow(clippy::too_many_arguments)]
async fn handler_loop(
    env: Env,
    host: String,
    config: ClientConfig,
    incoming: Rc<Mutex<mpsc::UnboundedReceiver<Delivery>>>,
    process: Process,
    throttle: Rc<Throttle>,
    seen: Rc<std::cell::RefCell<SeenIds>>,
    mut db: Option<DbConsumer>,
) {
    loop {
        let next = incoming.lock().await.recv().await;
        let Some((message, sender, nsqd, taken)) = next else {
            return;
        };
        drop(taken); // the connection's read loop goes on

        process.checkpoint().await;
        let Some(id) = decode_body(&message.body) else {
            sender.send(&Command::Fin(message.id));
            env.note(&host, "consumer.bad_body");
            continue;
        };
        if config.dedupe_message_ids && seen.borrow().contains(&message.id) {
            // The application's own dedup: FIN without running the handler.
            sender.send(&Command::Fin(message.id));
            env.note(&host, "consumer.deduplicated");
            throttle.signal(true, &env, &host, &process);
            continue;
        }
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
                consumer: host.as_str().into(),
                partition: Some(nsqd.as_str().into()),
                node: Some(nsqd.as_str().into()),
                offset: None,
            },
        );
        if let Some(db) = db.as_mut() {
            process.sleep(config.processing).await;
            // The outcome does not drive go-nsq's backoff here (as before the sink became a
            // component); issue 16 revisits the handler's flow control.
            let handled = handle_with_db(&env, &host, &config, db, &message, id, &sender, &process).await;
            if config.dedupe_message_ids && handled != Handled::Failed {
                seen.borrow_mut().insert(message.id);
            }
            continue;
        }
        process.sleep(config.processing).await;
        if config.handler_fails(&env, id, message.attempts) {
            requeue(&env, &host, &config, &message, &sender);
            throttle.signal(false, &env, &host, &process);
            continue;
        }
        env.record(
            &host,
            EventKind::Effect {
                id,
                consumer: host.as_str().into(),
            },
        );
        if config.dedupe_message_ids {
            seen.borrow_mut().insert(message.id);
        }
        if sender.send(&Command::Fin(message.id)) {
            env.record(
                &host,
                EventKind::Ack {
                    id,
                    consumer: host.as_str().into(),
                },
            );
        } else {
            env.note(&host, "consumer.fin_lost");
        }
        throttle.signal(true, &env, &host, &process);
    }
}
