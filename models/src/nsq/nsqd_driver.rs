//! What every nsqd driver does, whatever its sockets and clock: serve connections into the
//! sans-I/O [`Nsqd`], carry out its outbox, tick it, and keep its lookupd peers. The turmoil
//! driver (`sim_nsqd`) and the tokio driver (`real`) only supply a [`Context`], a listener
//! and a way to connect.

use super::channel::ClientId;
use super::lookupd::MAGIC_V1;
use super::nsqd::{Nsqd, Outbox, Output};
use rand_chacha::ChaCha8Rng;
use sim::disk::Disk;
use std::cell::{RefCell, RefMut};
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Time, randomness and observation for a driver.
pub trait Context: 'static {
    fn now(&self) -> Duration;
    fn rng(&self) -> RefMut<'_, ChaCha8Rng>;
    fn note(&self, name: &str);
    /// A queue statistic changed (depth, in flight, ...): what nsqadmin would show. The
    /// simulation records it in the history for reports; real servers ignore it.
    fn gauge(&self, _name: &str, _value: i64) {}
    /// Waits while the process is paused (a no-op for real servers).
    fn checkpoint(&self) -> impl Future<Output = ()>;
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()>;
}

/// nsqd pings every lookupd this often (`nsqd/lookup.go`).
pub const LOOKUPD_PING_INTERVAL: Duration = Duration::from_secs(15);
const TICK_MAX: Duration = Duration::from_millis(100);

enum Outgoing {
    Bytes(Vec<u8>),
    Close,
}

struct Connection {
    tx: mpsc::UnboundedSender<Outgoing>,
    reader: tokio::task::AbortHandle,
}

/// What an nsqd tells a lookupd.
pub enum LookupEvent {
    Register(String, Option<String>),
    Ping,
}

/// The nsqd's own address as it announces it to lookupds.
#[derive(Clone, Debug)]
pub struct Announce {
    pub broadcast_address: String,
    pub tcp_port: u16,
    pub http_port: u16,
}

pub struct Driver<C: Context, D: Disk + Clone> {
    pub ctx: C,
    pub core: Rc<RefCell<Nsqd<D>>>,
    connections: RefCell<BTreeMap<ClientId, Connection>>,
    lookup_peers: RefCell<Vec<mpsc::UnboundedSender<LookupEvent>>>,
    /// The gauges last reported, so only changes are.
    gauges: RefCell<BTreeMap<String, i64>>,
}

impl<C: Context, D: Disk + Clone + 'static> Driver<C, D> {
    pub fn new(ctx: C, core: Nsqd<D>) -> Rc<Driver<C, D>> {
        Rc::new(Driver {
            ctx,
            core: Rc::new(RefCell::new(core)),
            connections: RefCell::new(BTreeMap::new()),
            lookup_peers: RefCell::new(Vec::new()),
            gauges: RefCell::new(BTreeMap::new()),
        })
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
                Output::Note(name) => self.ctx.note(name),
            }
        }
        for id in closing {
            self.close(id);
        }
    }

    /// Reports what the disk queues noticed (stale metadata, `.bad` files, tail data loss).
    pub fn note_disk(&self) {
        let notes = self.core.borrow_mut().take_disk_notes();
        for name in notes {
            self.ctx.note(name);
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

    /// Serves one client connection until either side ends it.
    pub fn serve<R, W>(self: &Rc<Self>, mut read: R, mut write: W)
    where
        R: AsyncRead + Unpin + 'static,
        W: AsyncWrite + Unpin + 'static,
    {
        let id = self.core.borrow_mut().connect(self.ctx.now());
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::task::spawn_local(async move {
            while let Some(Outgoing::Bytes(bytes)) = rx.recv().await {
                if write.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            let _ = write.shutdown().await;
        });
        let driver = self.clone();
        let reader = tokio::task::spawn_local(async move {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = match read.read(&mut chunk).await {
                    Ok(n) if n > 0 => n,
                    _ => break,
                };
                driver.ctx.checkpoint().await;
                let mut out = Outbox::default();
                let now = driver.ctx.now();
                driver
                    .core
                    .borrow_mut()
                    .receive(id, &chunk[..n], now, &mut *driver.ctx.rng(), &mut out);
                driver.dispatch(out);
            }
            driver.close(id);
        });
        self.connections.borrow_mut().insert(
            id,
            Connection {
                tx,
                reader: reader.abort_handle(),
            },
        );
    }

    /// Ticks nsqd whenever it has something due (at least every 100 ms).
    pub async fn tick_loop(self: Rc<Self>) {
        loop {
            let wake = self.core.borrow().next_wakeup();
            let sleep = wake
                .saturating_sub(self.ctx.now())
                .clamp(Duration::from_millis(1), TICK_MAX);
            self.ctx.sleep(sleep).await;
            let mut out = Outbox::default();
            let now = self.ctx.now();
            self.core.borrow_mut().tick(now, &mut *self.ctx.rng(), &mut out);
            self.dispatch(out);
            self.note_disk();
            self.report_gauges();
        }
    }

    /// Reports each queue statistic that changed since the last report.
    fn report_gauges(&self) {
        let mut now: Vec<(String, i64)> = Vec::new();
        for s in self.core.borrow().stats() {
            let queue = format!("{}/{}", s.topic, s.channel);
            now.push((format!("{queue} depth"), s.depth));
            now.push((format!("{queue} in_flight"), s.in_flight as i64));
            now.push((format!("{queue} deferred"), s.deferred as i64));
            now.push((format!("{queue} requeued"), s.requeued as i64));
            now.push((format!("{queue} timed_out"), s.timed_out as i64));
        }
        let mut last = self.gauges.borrow_mut();
        for (name, value) in now {
            if last.get(&name) != Some(&value) {
                self.ctx.gauge(&name, value);
                last.insert(name, value);
            }
        }
    }

    /// Starts one lookupd peer per address; returns the tasks.
    pub fn start_lookup_peers<S, F, Fut>(
        self: &Rc<Self>,
        lookupds: Vec<String>,
        announce: Announce,
        connect: F,
    ) -> Vec<tokio::task::JoinHandle<()>>
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
        F: Fn(String) -> Fut + Clone + 'static,
        Fut: Future<Output = io::Result<S>> + 'static,
    {
        let mut tasks = Vec::new();
        for lookupd in lookupds {
            let (tx, rx) = mpsc::unbounded_channel();
            self.lookup_peers.borrow_mut().push(tx.clone());
            let (driver, connect, announce) = (self.clone(), connect.clone(), announce.clone());
            tasks.push(tokio::task::spawn_local(async move {
                driver.lookup_peer(lookupd, announce, connect, rx).await
            }));
            let driver = self.clone();
            tasks.push(tokio::task::spawn_local(async move {
                loop {
                    driver.ctx.sleep(LOOKUPD_PING_INTERVAL).await;
                    if tx.send(LookupEvent::Ping).is_err() {
                        return;
                    }
                }
            }));
        }
        tasks
    }

    /// One long-lived connection to a lookupd: IDENTIFY, REGISTER everything, then REGISTER
    /// what is created and PING every 15 s. When it fails, nsqd tries again on its next tick.
    async fn lookup_peer<S, F, Fut>(
        self: Rc<Self>,
        lookupd: String,
        announce: Announce,
        connect: F,
        mut events: mpsc::UnboundedReceiver<LookupEvent>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
        F: Fn(String) -> Fut,
        Fut: Future<Output = io::Result<S>>,
    {
        loop {
            if let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(1), connect(lookupd.clone())).await
            {
                let (mut read, mut write) = tokio::io::split(stream);
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
                    "broadcast_address": announce.broadcast_address,
                    "hostname": announce.broadcast_address,
                    "tcp_port": announce.tcp_port,
                    "http_port": announce.http_port,
                    "version": super::nsqd::VERSION,
                })
                .to_string();
                let mut hello = MAGIC_V1.to_vec();
                hello.extend_from_slice(b"IDENTIFY\n");
                hello.extend_from_slice(&(identify.len() as u32).to_be_bytes());
                hello.extend_from_slice(identify.as_bytes());
                for (topic, channel) in self.core.borrow().registrations() {
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
                self.ctx.note("nsqd.lookupd_connection_lost");
            }
            self.ctx.sleep(LOOKUPD_PING_INTERVAL).await;
            while events.try_recv().is_ok() {} // everything is re-registered on reconnect
        }
    }

    /// Graceful shutdown: close every connection, flush every queue to disk, persist metadata.
    pub fn shutdown(&self) -> io::Result<()> {
        let ids: Vec<ClientId> = self.connections.borrow().keys().copied().collect();
        for id in ids {
            self.close(id);
        }
        self.core.borrow_mut().close()
    }
}

fn register_line(topic: &str, channel: Option<&str>) -> Vec<u8> {
    match channel {
        Some(channel) => format!("REGISTER {topic} {channel}\n").into_bytes(),
        None => format!("REGISTER {topic}\n").into_bytes(),
    }
}
