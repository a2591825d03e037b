//! The broker host in the simulation: the sans-I/O [`Broker`] on turmoil sockets, the
//! simulated clock, and with `persistence` a snapshot on the host's simulated disk, written
//! every `autosave_interval_s` and at a clean shutdown, as mosquitto writes `mosquitto.db`.
//! A kill or a power failure loses what changed since the last save.

use super::broker::{Broker, ConnId, Out};
use super::outbox::{self, Command, Writers};
use super::BrokerConfig;
use sim::disk::{Disk, SimDisk};
use sim::{Env, Process};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::{TcpListener, TcpStream};

/// MQTT's registered port.
pub const BROKER_PORT: u16 = 1883;
/// mosquitto's main loop looks at keepalives and autosave about once a second.
const TICK: Duration = Duration::from_secs(1);
/// The snapshot's name on the broker's disk, and the name it is written under first.
pub const SNAPSHOT_FILE: &str = "mosquitto.db";
const SNAPSHOT_NEW_FILE: &str = "mosquitto.db.new";
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// What the broker last said it still owes its sessions (the design's drain probe only;
/// never judged).
pub type Owed = Rc<std::cell::Cell<usize>>;

struct Node {
    env: Env,
    host: String,
    process: Process,
    disk: SimDisk,
    broker: RefCell<Broker>,
    writers: RefCell<Writers>,
    next_conn: RefCell<ConnId>,
    owed: Owed,
}

impl Node {
    fn now_ms(&self) -> u64 {
        self.env.now().0 / 1000
    }

    /// Carries out the core's outputs ([`outbox::dispatch`]); notes go to the history.
    fn dispatch(&self, outs: Vec<Out>) {
        let (env, host) = (&self.env, self.host.as_str());
        outbox::dispatch(
            &mut self.broker.borrow_mut(),
            &mut self.writers.borrow_mut(),
            outs,
            self.now_ms(),
            |kind, detail| {
                // The history names notes in snake case, as the other designs do.
                let name = format!("mqtt.{}", kind.replace('-', "_"));
                env.note_with(host, &name, detail);
            },
        );
        self.owed.set(self.broker.borrow().messages_owed());
    }

    /// Writes the snapshot beside the old one, fsyncs it and renames it over.
    fn save(&self) {
        let bytes = self.broker.borrow().snapshot();
        // Not there after the last rename; a leftover from a crash mid-save is replaced.
        let _ = self.disk.remove(SNAPSHOT_NEW_FILE);
        let written = self
            .disk
            .write_at(SNAPSHOT_NEW_FILE, 0, &bytes)
            .and_then(|()| self.disk.fsync(SNAPSHOT_NEW_FILE))
            .and_then(|()| self.disk.rename(SNAPSHOT_NEW_FILE, SNAPSHOT_FILE));
        match written {
            Ok(()) => self.env.note(&self.host, "mqtt.saved"),
            Err(error) => self
                .env
                .note_with(&self.host, "mqtt.save_failed", error.to_string()),
        }
    }
}

/// The broker at start: restored from the disk with persistence, else empty.
fn open(env: &Env, host: &str, config: &BrokerConfig, disk: &SimDisk, now_ms: u64) -> Broker {
    if !config.persistence {
        return Broker::new(config.clone());
    }
    let Ok(bytes) = disk.read(SNAPSHOT_FILE) else {
        return Broker::new(config.clone());
    };
    match Broker::restore(config.clone(), &bytes, now_ms) {
        Ok(broker) => {
            env.note(host, "mqtt.restored");
            broker
        }
        Err(error) => {
            // mosquitto refuses to start on a corrupt database; a simulated host that did
            // so would never come back, so it starts empty and says so.
            env.note_with(host, "mqtt.restore_failed", error.to_string());
            Broker::new(config.clone())
        }
    }
}

/// The broker process on `host`.
pub async fn run(env: Env, host: String, config: BrokerConfig, owed: Owed) -> turmoil::Result {
    let process = env.process(&host);
    let _running = process.start();
    let disk = env.disk(&host);
    let now_ms = env.now().0 / 1000;
    let broker = open(&env, &host, &config, &disk, now_ms);
    let node = Rc::new(Node {
        env: env.clone(),
        host: host.clone(),
        process: process.clone(),
        disk,
        broker: RefCell::new(broker),
        writers: RefCell::new(BTreeMap::new()),
        next_conn: RefCell::new(1),
        owed,
    });
    node.owed.set(node.broker.borrow().messages_owed());
    let ticker = tokio::task::spawn_local(tick_loop(node.clone()));
    let listener = TcpListener::bind(("0.0.0.0", BROKER_PORT)).await?;
    loop {
        tokio::select! {
            biased;
            _ = process.stopping() => break,
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                tokio::task::spawn_local(serve(node.clone(), stream));
            }
        }
    }
    // SIGTERM: mosquitto closes every client's socket and saves its database.
    ticker.abort();
    let writers = std::mem::take(&mut *node.writers.borrow_mut());
    for writer in writers.values() {
        let _ = writer.try_send(Command::Close);
    }
    // Lets the connections' tasks close their sockets before the process is gone.
    tokio::task::yield_now().await;
    if config.persistence {
        node.save();
    }
    env.note(&host, "mqtt.graceful_exit");
    Ok(())
}

async fn serve(node: Rc<Node>, mut stream: TcpStream) {
    let (writer, mut commands) = outbox::channel();
    let conn = {
        let mut next = node.next_conn.borrow_mut();
        *next += 1;
        *next - 1
    };
    node.writers.borrow_mut().insert(conn, writer);
    node.broker.borrow_mut().on_open(node.now_ms(), conn);
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Bytes(bytes)) => {
                    if stream.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Some(Command::Close) | None => break,
            },
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    node.process.checkpoint().await;
                    let mut outs = Vec::new();
                    node.broker.borrow_mut().on_bytes(node.now_ms(), conn, &buf[..n], &mut outs);
                    node.dispatch(outs);
                }
            },
        }
    }
    node.writers.borrow_mut().remove(&conn);
    let mut outs = Vec::new();
    node.broker.borrow_mut().on_closed(node.now_ms(), conn, &mut outs);
    node.dispatch(outs);
}

/// Every second: keepalive, and an autosave when it is due.
async fn tick_loop(node: Rc<Node>) {
    let config = node.broker.borrow().config().clone();
    let autosave_ms = config.autosave_interval_s.saturating_mul(1000);
    let mut saved_at_ms = node.now_ms();
    loop {
        node.process.sleep(TICK).await;
        let now_ms = node.now_ms();
        let mut outs = Vec::new();
        node.broker.borrow_mut().on_tick(now_ms, &mut outs);
        node.dispatch(outs);
        if config.persistence && autosave_ms > 0 && now_ms - saved_at_ms >= autosave_ms {
            node.save();
            saved_at_ms = now_ms;
        }
    }
}
