//! The turmoil driver for nsqd: binds the sans-I/O [`Nsqd`] to simulated sockets, the host's
//! simulated disk, the simulated clock and the run's RNG. Nothing else lives here.

use super::channel::ClientId;
use super::guid::node_id_for;
use super::nsqd::{Nsqd, NsqdOptions, Outbox, Output};
use sim::disk::SimDisk;
use sim::world::EPOCH_UNIX_SECONDS;
use sim::Env;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use turmoil::net::TcpListener;

pub const NSQD_TCP_PORT: u16 = 4150;
const TICK_MAX: Duration = Duration::from_millis(100);

/// Where the design can see each nsqd's live core (for its drain probe only).
pub type Registry = Rc<RefCell<BTreeMap<String, Weak<RefCell<Nsqd<SimDisk>>>>>>;

enum Outgoing {
    Bytes(Vec<u8>),
    Close,
}

struct Connection {
    tx: mpsc::UnboundedSender<Outgoing>,
    reader: tokio::task::AbortHandle,
}

/// What an nsqd tells a lookupd.
enum LookupEvent {
    Register(String, Option<String>),
    Ping,
}

struct Driver {
    env: Env,
    host: String,
    core: Rc<RefCell<Nsqd<SimDisk>>>,
    connections: RefCell<BTreeMap<ClientId, Connection>>,
    lookup_peers: RefCell<Vec<mpsc::UnboundedSender<LookupEvent>>>,
}

impl Driver {
    fn now(&self) -> Duration {
        Duration::from_micros(self.env.now().0)
    }

    fn dispatch(&self, mut out: Outbox) {
        let mut closing = Vec::new();
        for output in out.drain() {
            match output {
                Output::Send(id, bytes) => {
                    if let Some(c) = self.connections.borrow().get(&id) {
                        let _ = c.tx.send(Outgoing::Bytes(bytes));
                    }
                }
                Output::Close(id) => closing.push(id),
                Output::Register { topic, channel } => {
                    for peer in self.lookup_peers.borrow().iter() {
                        let _ = peer.send(LookupEvent::Register(topic.clone(), channel.clone()));
                    }
                }
                Output::Note(name) => self.env.note(&self.host, name),
            }
        }
        for id in closing {
            self.close(id);
        }
    }

    fn note_disk(&self) {
        let notes = self.core.borrow_mut().take_disk_notes();
        for name in notes {
            self.env.note(&self.host, name);
        }
    }

    fn close(&self, id: ClientId) {
        if let Some(c) = self.connections.borrow_mut().remove(&id) {
            let _ = c.tx.send(Outgoing::Close);
            c.reader.abort();
        }
        let mut out = Outbox::default();
        self.core.borrow_mut().disconnect(id, &mut out);
        self.dispatch(out);
    }
}

/// nsqd pings every lookupd this often (`nsqd/lookup.go`).
const LOOKUPD_PING_INTERVAL: Duration = Duration::from_secs(15);

fn register_line(topic: &str, channel: Option<&str>) -> Vec<u8> {
    match channel {
        Some(channel) => format!("REGISTER {topic} {channel}\n").into_bytes(),
        None => format!("REGISTER {topic}\n").into_bytes(),
    }
}

/// One long-lived connection to a lookupd: IDENTIFY, REGISTER everything, then REGISTER what
/// is created and PING every 15 s. When it fails, nsqd tries again on its next ping tick.
async fn lookup_peer(
    driver: Rc<Driver>,
    lookupd: String,
    mut events: mpsc::UnboundedReceiver<LookupEvent>,
    process: sim::Process,
) {
    loop {
        let connected = tokio::time::timeout(
            Duration::from_secs(1),
            turmoil::net::TcpStream::connect((lookupd.as_str(), super::lookupd::LOOKUPD_TCP_PORT)),
        )
        .await;
        if let Ok(Ok(stream)) = connected {
            let (mut read, mut write) = stream.into_split();
            // Responses are read and dropped; a dead connection shows as the reader ending.
            let mut reader = tokio::task::spawn_local(async move {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = read.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                }
            });
            let identify = serde_json::json!({
                "broadcast_address": driver.host,
                "hostname": driver.host,
                "tcp_port": NSQD_TCP_PORT,
                "http_port": 4151,
                "version": super::nsqd::VERSION,
            })
            .to_string();
            let mut hello = super::lookupd::MAGIC_V1.to_vec();
            hello.extend_from_slice(b"IDENTIFY\n");
            hello.extend_from_slice(&(identify.len() as u32).to_be_bytes());
            hello.extend_from_slice(identify.as_bytes());
            for (topic, channel) in driver.core.borrow().registrations() {
                hello.extend(register_line(&topic, channel.as_deref()));
            }
            let mut alive = write.write_all(&hello).await.is_ok();
            while alive {
                tokio::select! {
                    biased;
                    _ = &mut reader => alive = false,
                    event = events.recv() => {
                        let Some(event) = event else { return };
                        let bytes = match event {
                            LookupEvent::Register(topic, channel) => register_line(&topic, channel.as_deref()),
                            LookupEvent::Ping => b"PING\n".to_vec(),
                        };
                        alive = write.write_all(&bytes).await.is_ok();
                    }
                }
            }
            reader.abort();
            driver.env.note(&driver.host, "nsqd.lookupd_connection_lost");
        }
        process.sleep(LOOKUPD_PING_INTERVAL).await;
        while events.try_recv().is_ok() {} // everything is re-registered on reconnect
    }
}

/// The nsqd process on `host`.
pub async fn run(
    env: Env,
    host: String,
    options: NsqdOptions,
    lookupds: Vec<String>,
    registry: Registry,
) -> turmoil::Result {
    let process = env.process(&host);
    let _running = process.start();
    let now = Duration::from_micros(env.now().0);
    let core = Rc::new(RefCell::new(Nsqd::open(
        options,
        env.disk(&host),
        node_id_for(&host),
        EPOCH_UNIX_SECONDS * 1000,
        now,
    )));
    registry.borrow_mut().insert(host.clone(), Rc::downgrade(&core));
    let driver = Rc::new(Driver {
        env: env.clone(),
        host: host.clone(),
        core,
        connections: RefCell::new(BTreeMap::new()),
        lookup_peers: RefCell::new(Vec::new()),
    });
    let mut peer_tasks = Vec::new();
    for lookupd in lookupds {
        let (tx, rx) = mpsc::unbounded_channel();
        driver.lookup_peers.borrow_mut().push(tx.clone());
        peer_tasks.push(tokio::task::spawn_local(lookup_peer(
            driver.clone(),
            lookupd,
            rx,
            process.clone(),
        )));
        let process = process.clone();
        peer_tasks.push(tokio::task::spawn_local(async move {
            loop {
                process.sleep(LOOKUPD_PING_INTERVAL).await;
                if tx.send(LookupEvent::Ping).is_err() {
                    return;
                }
            }
        }));
    }
    driver.note_disk(); // what reopening the disk queues found
    let listener = TcpListener::bind(("0.0.0.0", NSQD_TCP_PORT)).await?;

    let ticker = {
        let (driver, process) = (driver.clone(), process.clone());
        tokio::task::spawn_local(async move {
            loop {
                let wake = driver.core.borrow().next_wakeup();
                let sleep = wake
                    .saturating_sub(driver.now())
                    .clamp(Duration::from_millis(1), TICK_MAX);
                process.sleep(sleep).await;
                let mut out = Outbox::default();
                driver
                    .core
                    .borrow_mut()
                    .tick(driver.now(), &mut *driver.env.rng(), &mut out);
                driver.dispatch(out);
                driver.note_disk();
            }
        })
    };

    loop {
        tokio::select! {
            biased;
            _ = process.stopping() => break,
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let id = driver.core.borrow_mut().connect(driver.now());
                let (mut read, mut write) = stream.into_split();
                let (tx, mut rx) = mpsc::unbounded_channel();
                tokio::task::spawn_local(async move {
                    while let Some(Outgoing::Bytes(bytes)) = rx.recv().await {
                        if write.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                });
                let (reader_driver, reader_process) = (driver.clone(), process.clone());
                let reader = tokio::task::spawn_local(async move {
                    let mut chunk = vec![0u8; 64 * 1024];
                    loop {
                        let n = match read.read(&mut chunk).await {
                            Ok(n) if n > 0 => n,
                            _ => break,
                        };
                        reader_process.checkpoint().await;
                        let mut out = Outbox::default();
                        let now = reader_driver.now();
                        reader_driver.core.borrow_mut().receive(id, &chunk[..n], now, &mut *reader_driver.env.rng(), &mut out);
                        reader_driver.dispatch(out);
                    }
                    reader_driver.close(id);
                });
                driver.connections.borrow_mut().insert(id, Connection { tx, reader: reader.abort_handle() });
            }
        }
    }
    // SIGTERM: nsqd's Exit flushes every queue to disk and persists its metadata.
    ticker.abort();
    for task in peer_tasks {
        task.abort();
    }
    let ids: Vec<ClientId> = driver.connections.borrow().keys().copied().collect();
    for id in ids {
        driver.close(id);
    }
    if let Err(e) = driver.core.borrow_mut().close() {
        tracing::warn!(host, error = %e, "nsqd close");
    }
    env.note(&host, "nsqd.graceful_exit");
    Ok(())
}
