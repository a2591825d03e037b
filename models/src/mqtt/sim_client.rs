//! Publisher and subscriber processes in the simulation: the sans-I/O [`Client`] on a turmoil
//! socket, with paho's auto-reconnect around it, the workload's messages going in and the
//! history recording what the application saw (reference §3.5).
//!
//! Publishers record each `Publish` when the application calls it and its outcome when paho
//! completes the token, which for a message re-sent after a reconnect is at the resend, not
//! at its acknowledgement. Subscribers run the handler inline, as paho's router does with
//! `OrderMatters` (the default): the next packet is read when the handler returns.

use super::client::{Client, ClientOptions, ClientOut, Inbound, PublishError, ResendOrder, Token};
use super::packet::{QoS, Subscription, Version};
use super::sim_broker::BROKER_PORT;
use crate::db::sink::{DbConsumer, DbSink};
use crate::db::user::{Delivered, Replied};
use crate::source::{decode_value, encode_value, Source};
use sim::history::{EventKind, MsgId};
use sim::{Env, Process};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use turmoil::net::tcp::OwnedReadHalf;

/// How often a publisher looks whether every subscriber has subscribed yet.
const READY_POLL: Duration = Duration::from_millis(10);
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// What a client process is configured with (the design's `[config]`, per client).
#[derive(Clone, Debug)]
pub struct ClientSettings {
    pub broker: String,
    pub topic: String,
    pub qos: u8,
    pub subscribe_qos: u8,
    pub clean_session: bool,
    pub resend_order: ResendOrder,
    pub spec_qos2: bool,
    pub v5: bool,
    pub keep_alive_s: u16,
    pub ping_timeout_ms: u64,
    pub reconnect_interval_ms: u64,
    pub max_reconnect_interval_ms: u64,
    /// paho's `ConnectTimeout`: the dial and the CONNECT to CONNACK handshake.
    pub connect_timeout_ms: u64,
    pub publish_interval_ms: u64,
    pub start_ms: u64,
    pub processing_ms: u64,
}

impl ClientSettings {
    fn options(&self, client_id: &str) -> ClientOptions {
        let mut options = ClientOptions::new(client_id);
        options.version = if self.v5 { Version::V5 } else { Version::V311 };
        options.clean_session = self.clean_session;
        options.keep_alive_s = self.keep_alive_s;
        options.ping_timeout_ms = self.ping_timeout_ms;
        options.resend_order = self.resend_order;
        options.spec_qos2 = self.spec_qos2;
        options
    }
}

/// Subscribers whose first subscription the broker has acknowledged. MQTT keeps nothing for
/// a topic nobody subscribes to, so a pipeline starts its subscribers first: publishers
/// wait for all of them before their first publish (the workload's `start_ms` still holds).
#[derive(Clone, Debug, Default)]
pub struct Subscribed(Rc<std::cell::Cell<u32>>);

impl Subscribed {
    fn add(&self) {
        self.0.set(self.0.get() + 1);
    }

    pub fn count(&self) -> u32 {
        self.0.get()
    }
}

pub fn qos(level: u8) -> QoS {
    QoS::from_bits(level).expect("the config bounds QoS to 0..=2")
}

/// One client process: the core, its connection, and what it sends through.
struct Node {
    env: Env,
    host: String,
    process: Process,
    settings: ClientSettings,
    client: RefCell<Client>,
    /// The open connection's writer; `None` while reconnecting.
    writer: RefCell<Option<mpsc::UnboundedSender<Vec<u8>>>>,
}

/// What happened to the connection, for the process's loop.
enum Event {
    Bytes(Vec<u8>),
    Closed,
}

impl Node {
    fn now_ms(&self) -> u64 {
        self.env.now().0 / 1000
    }

    fn note(&self, name: &str, detail: String) {
        if detail.is_empty() {
            self.env.note(&self.host, name);
        } else {
            self.env.note_with(&self.host, name, detail);
        }
    }

    /// Writes what the core sends; returns the rest for the caller. A `Close` drops the
    /// connection at once.
    fn dispatch(&self, outs: Vec<ClientOut>) -> Vec<ClientOut> {
        let mut rest = Vec::new();
        for out in outs {
            match out {
                ClientOut::Send(bytes) => {
                    if let Some(writer) = self.writer.borrow().as_ref() {
                        let _ = writer.send(bytes);
                    }
                }
                ClientOut::Close => {
                    self.writer.borrow_mut().take();
                }
                ClientOut::Note { kind, detail } => self.note(kind, detail),
                other => rest.push(other),
            }
        }
        rest
    }

    /// Dials the broker and starts the connection's reader and writer; the CONNECT goes out
    /// first. `None` if the broker cannot be reached.
    async fn open(&self) -> Option<mpsc::UnboundedReceiver<Event>> {
        let dial = sim::connect(&self.env, &self.host, &self.settings.broker, BROKER_PORT);
        let timeout = Duration::from_millis(self.settings.connect_timeout_ms);
        let stream = match tokio::time::timeout(timeout, dial).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                self.note("client.connect_failed", error.to_string());
                return None;
            }
            Err(_) => {
                self.note("client.connect_failed", "timed out".into());
                return None;
            }
        };
        let (read, mut write) = stream.into_split();
        let (writer, mut outgoing) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::task::spawn_local(async move {
            while let Some(bytes) = outgoing.recv().await {
                if write.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        });
        *self.writer.borrow_mut() = Some(writer);
        let (events_tx, events) = mpsc::unbounded_channel();
        tokio::task::spawn_local(read_loop(read, events_tx));
        let mut outs = Vec::new();
        self.client.borrow_mut().on_open(self.now_ms(), &mut outs);
        self.dispatch(outs);
        Some(events)
    }

    fn connection_lost(&self) {
        self.writer.borrow_mut().take();
        self.client.borrow_mut().on_closed();
    }

    fn on_bytes(&self, bytes: &[u8]) -> Vec<ClientOut> {
        let mut outs = Vec::new();
        let now_ms = self.now_ms();
        self.client
            .borrow_mut()
            .on_bytes(now_ms, bytes, &mut *self.env.rng(), &mut outs);
        self.dispatch(outs)
    }

    fn tick(&self) -> Vec<ClientOut> {
        let mut outs = Vec::new();
        self.client.borrow_mut().on_tick(self.now_ms(), &mut outs);
        self.dispatch(outs)
    }

    /// Sleeps until simulated time `at_ms` (at once if it has passed).
    async fn sleep_until(&self, at_ms: u64) {
        tokio::time::sleep(Duration::from_millis(at_ms.saturating_sub(self.now_ms()))).await;
    }

    fn is_connected(&self) -> bool {
        self.writer.borrow().is_some() && self.client.borrow().is_connected()
    }
}

async fn read_loop(mut read: OwnedReadHalf, events: mpsc::UnboundedSender<Event>) {
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    loop {
        match read.read(&mut chunk).await {
            Ok(n) if n > 0 => {
                if events.send(Event::Bytes(chunk[..n].to_vec())).is_err() {
                    return;
                }
            }
            _ => {
                let _ = events.send(Event::Closed);
                return;
            }
        }
    }
}

/// A connection whose CONNACK accepted it, and what the core said on the way (messages
/// and completions that came with the CONNACK, or the resend it started).
type Connected = (mpsc::UnboundedReceiver<Event>, Vec<ClientOut>);

/// Waits for the CONNACK of a connection just opened; `None` if it closed, was refused or
/// timed out.
async fn handshake(node: &Node, mut events: mpsc::UnboundedReceiver<Event>) -> Option<Connected> {
    let deadline = tokio::time::sleep(Duration::from_millis(node.settings.connect_timeout_ms));
    tokio::pin!(deadline);
    let mut said = Vec::new();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Bytes(bytes)) => {
                    let rest = node.on_bytes(&bytes);
                    let refused = rest.iter().any(|o| matches!(o, ClientOut::Refused { .. }));
                    said.extend(rest);
                    if node.is_connected() {
                        return Some((events, said));
                    }
                    if refused || node.writer.borrow().is_none() {
                        return None;
                    }
                }
                Some(Event::Closed) | None => return None,
            },
            () = &mut deadline => {
                node.note("client.connect_failed", "no CONNACK in time".into());
                return None;
            }
        }
    }
}

/// paho's reconnect loop (`client.go:reconnect`): the first attempt at once, then waits
/// doubling from `reconnect_interval_ms` up to `max_reconnect_interval_ms` between failed
/// attempts, until a CONNACK accepts one.
async fn connect(node: Rc<Node>) -> Connected {
    let mut wait_ms = 0;
    loop {
        if wait_ms > 0 {
            node.process.sleep(Duration::from_millis(wait_ms)).await;
        }
        node.process.checkpoint().await;
        if let Some(events) = node.open().await {
            if let Some(connected) = handshake(&node, events).await {
                return connected;
            }
        }
        node.connection_lost();
        let settings = &node.settings;
        wait_ms = (wait_ms * 2)
            .max(settings.reconnect_interval_ms)
            .min(settings.max_reconnect_interval_ms);
    }
}

fn new_node(env: &Env, host: &str, settings: &ClientSettings) -> Rc<Node> {
    let process = env.process(host);
    // Called before the process starts: an incarnation already counted is an earlier run.
    let options = ClientOptions {
        restarted: process.incarnation() > 0,
        ..settings.options(host)
    };
    Rc::new(Node {
        env: env.clone(),
        host: host.to_string(),
        process,
        client: RefCell::new(Client::new(options)),
        settings: settings.clone(),
        writer: RefCell::new(None),
    })
}

/// A publisher: publishes its share of the workload at the workload's pace once it has
/// connected, through reconnects, and exits when every message it stored is acknowledged.
pub async fn run_publisher(
    env: Env,
    host: String,
    settings: ClientSettings,
    source: Rc<Source>,
    subscribed: (Subscribed, u32),
) -> turmoil::Result {
    let node = new_node(&env, &host, &settings);
    let _running = node.process.start();
    let start = Duration::from_millis(settings.start_ms).saturating_sub(Duration::from_micros(env.now().0));
    node.process.sleep(start).await;
    let (subscribed, subscribers) = subscribed;
    while subscribed.count() < subscribers {
        node.process.sleep(READY_POLL).await;
    }
    let mut publisher = Publisher {
        node: node.clone(),
        name: format!("{host}@{}", node.process.incarnation()),
        tokens: BTreeMap::new(),
        seq: 0,
        source,
    };
    // The application waits for its first `Connect()` before it publishes.
    let (first, said) = connect(node.clone()).await;
    publisher.completed(said);
    let mut events = Some(first);
    let mut connecting: Option<Pin<Box<dyn Future<Output = Connected>>>> = None;
    let interval_ms = settings.publish_interval_ms.max(1);
    let check_ms = node.client.borrow().check_interval_ms();
    let (mut next_publish_ms, mut next_check_ms) = (node.now_ms(), node.now_ms() + check_ms);
    loop {
        if node.process.stop_requested() || publisher.finished() {
            return Ok(());
        }
        tokio::select! {
            event = next_event(&mut events), if events.is_some() => match event {
                Some(Event::Bytes(bytes)) => {
                    let rest = node.on_bytes(&bytes);
                    publisher.completed(rest);
                }
                Some(Event::Closed) | None => {
                    // paho reconnects in the background; the application goes on publishing.
                    node.note("client.connection_lost", String::new());
                    node.connection_lost();
                    events = None;
                    connecting = Some(Box::pin(connect(node.clone())));
                }
            },
            (connected, said) = until_connected(&mut connecting), if connecting.is_some() => {
                connecting = None;
                events = Some(connected);
                publisher.completed(said);
            },
            () = node.sleep_until(next_publish_ms), if publisher.source.unpublished() > 0 => {
                node.process.checkpoint().await;
                publisher.publish_one();
                next_publish_ms += interval_ms;
            },
            () = node.sleep_until(next_check_ms) => {
                let rest = node.tick();
                publisher.completed(rest);
                next_check_ms += check_ms;
            },
            () = node.process.stopping() => return Ok(()),
        }
        if node.writer.borrow().is_none() && events.as_ref().is_some_and(|e| !e.is_closed()) {
            // The core gave the connection up (a ping unanswered): stop reading it.
            events.as_mut().expect("checked").close();
        }
    }
}

/// The next event of the connection, if there is one (a disabled `select!` branch still
/// builds its future).
async fn next_event(events: &mut Option<mpsc::UnboundedReceiver<Event>>) -> Option<Event> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// The reconnect in progress, if there is one.
async fn until_connected(connecting: &mut Option<Pin<Box<dyn Future<Output = Connected>>>>) -> Connected {
    match connecting {
        Some(connecting) => connecting.await,
        None => std::future::pending().await,
    }
}

struct Publisher {
    node: Rc<Node>,
    /// The history's producer name: one per incarnation.
    name: String,
    tokens: BTreeMap<Token, MsgId>,
    seq: u64,
    source: Rc<Source>,
}

impl Publisher {
    fn finished(&self) -> bool {
        self.source.unpublished() == 0 && self.tokens.is_empty() && self.node.client.borrow().stored() == 0
    }

    fn publish_one(&mut self) {
        let Some((id, key)) = self.source.take() else {
            return;
        };
        self.seq += 1;
        let node = &self.node;
        node.env.record(
            &node.host,
            EventKind::Publish {
                id,
                producer: self.name.as_str().into(),
                seq: self.seq,
                key,
            },
        );
        let mut outs = Vec::new();
        let (now_ms, settings) = (node.now_ms(), &node.settings);
        let token = node.client.borrow_mut().publish(
            now_ms,
            &settings.topic,
            encode_value(id),
            qos(settings.qos),
            &mut outs,
        );
        self.tokens.insert(token, id);
        let rest = node.dispatch(outs);
        self.completed(rest);
    }

    /// Records the outcome of each token paho completes.
    fn completed(&mut self, outs: Vec<ClientOut>) {
        for out in outs {
            let ClientOut::Completed { token, result } = out else {
                continue;
            };
            let Some(id) = self.tokens.remove(&token) else {
                continue;
            };
            let kind = match result {
                Ok(()) => EventKind::publish_ok(id),
                Err(PublishError::NotConnected) => EventKind::PublishFail {
                    id,
                    error: "not Connected".into(),
                },
                Err(PublishError::Refused(code)) => EventKind::PublishFail {
                    id,
                    error: format!("reason code {code:#04x}"),
                },
            };
            self.node.env.record(&self.node.host, kind);
        }
    }
}

/// A subscriber: subscribes on every connection (paho's `OnConnect` handler, which a
/// CleanSession client needs) and hands each message to the handler, then acknowledges it.
pub async fn run_subscriber(
    env: Env,
    host: String,
    settings: ClientSettings,
    sink: Option<DbSink>,
    subscribed: Subscribed,
) -> turmoil::Result {
    let node = new_node(&env, &host, &settings);
    let _running = node.process.start();
    let mut db = sink.map(|s| s.consumer());
    let (mut events, mut inbox) = connect(node.clone()).await;
    subscribe(&node);
    let check_ms = node.client.borrow().check_interval_ms();
    let mut next_check_ms = node.now_ms() + check_ms;
    let mut counted = false;
    loop {
        for out in std::mem::take(&mut inbox) {
            match out {
                ClientOut::Message(inbound) => handle(&node, &inbound, db.as_mut()).await,
                ClientOut::Subscribed { .. } if !counted && node.process.incarnation() == 1 => {
                    counted = true;
                    subscribed.add();
                }
                _ => {}
            }
        }
        if node.writer.borrow().is_none() && !events.is_closed() {
            events.close();
        }
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Bytes(bytes)) => inbox = node.on_bytes(&bytes),
                Some(Event::Closed) | None => {
                    node.note("client.connection_lost", String::new());
                    node.connection_lost();
                    (events, inbox) = connect(node.clone()).await;
                    subscribe(&node);
                }
            },
            () = node.sleep_until(next_check_ms) => {
                inbox = node.tick();
                next_check_ms = node.now_ms() + check_ms;
            },
            () = node.process.stopping() => return Ok(()),
        }
    }
}

fn subscribe(node: &Node) {
    let subscription = Subscription::new(&node.settings.topic, qos(node.settings.subscribe_qos));
    let mut outs = Vec::new();
    node.client
        .borrow_mut()
        .subscribe(node.now_ms(), vec![subscription], &mut outs);
    node.dispatch(outs);
}

/// The note of a user's handler that answered requeue or failed: the message stays
/// unacknowledged until the session's next connection.
pub const NOT_ACKED: &str = "client.user_handler_not_acked";

/// One message to the application: recorded as delivered, processed (through the database
/// when there is one), then acknowledged on the connection it came from.
async fn handle(node: &Node, inbound: &Inbound, db: Option<&mut DbConsumer>) {
    node.process.checkpoint().await;
    let Some(id) = decode_value(&inbound.publish.payload) else {
        node.note("client.bad_payload", String::new());
        return;
    };
    let host = node.host.as_str();
    node.env.record(
        host,
        EventKind::Deliver {
            id,
            attempt: if inbound.publish.dup { 2 } else { 1 },
            consumer: host.into(),
            partition: None,
            node: Some(node.settings.broker.as_str().into()),
            offset: None,
        },
    );
    node.process
        .sleep(Duration::from_millis(node.settings.processing_ms))
        .await;
    let ack = || {
        let mut outs = Vec::new();
        node.client
            .borrow_mut()
            .acknowledge(node.now_ms(), inbound, &mut outs);
        node.dispatch(outs);
        node.env.record(
            host,
            EventKind::Ack {
                id,
                consumer: host.into(),
            },
        );
    };
    match db {
        Some(db) if db.runs_user() => {
            let delivered = Delivered {
                id: id.0,
                body: inbound.publish.payload.to_vec(),
                attempts: if inbound.publish.dup { 2 } else { 1 },
            };
            match db.handle_user(&node.env, host, &delivered, &node.process).await {
                Replied::Ack => ack(),
                // No negative acknowledgement in MQTT: like a paho client with manual acks
                // whose application does not ack, nothing is sent; the broker resends the
                // message only when the session connects again (MQTT 3.1.1 §4.4).
                Replied::Requeue(_) | Replied::Error(_) => node.note(NOT_ACKED, String::new()),
            }
        }
        Some(db) => {
            db.handle(&node.env, host, id.0, &node.process, ack).await;
        }
        None => {
            node.env.record(
                host,
                EventKind::Effect {
                    id,
                    consumer: host.into(),
                },
            );
            ack();
        }
    }
}
