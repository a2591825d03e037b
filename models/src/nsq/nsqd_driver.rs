//! What every nsqd driver does, whatever its sockets and clock: serve connections into the
//! sans-I/O [`Nsqd`], carry out its outbox, tick it, and keep its lookupd peers. The turmoil
//! driver (`sim_nsqd`) and the tokio driver (`real`) only supply a [`Context`], a listener
//! and a way to connect.

use super::channel::ClientId;
use super::lookupd::MAGIC_V1;
use super::nsqd::{ChannelsFound, Nsqd, Outbox, Output};
use rand_chacha::ChaCha8Rng;
use sim::disk::Disk;
use std::cell::{RefCell, RefMut};
use std::collections::{BTreeMap, BTreeSet};
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

/// How one connection's output stays bounded. nsqd writes to a client through a 16 KiB
/// bufio.Writer and blocks when the socket is full: its messagePump stops delivering and
/// its IOLoop stops reading the client (so a client that writes without reading meets TCP
/// backpressure) until the write completes or its deadline, the heartbeat interval
/// (`protocolV2.Send`), passes and the connection closes. The core keeps that account
/// (`Nsqd::written`, [`OUTPUT_UNWRITTEN_BYTES_MAX`]): the driver reports every frame its
/// writer completes, puts the client's write deadline on each write, and stops reading a
/// client while the core says its writes are blocked. Past the core's bound a connection
/// can hold at most one flush (a full output buffer and the message that overflowed it) and
/// one command's answer more; [`Driver::output_bound`] is that, and a connection that
/// reaches it anyway is closed.
pub use super::nsqd::OUTPUT_UNWRITTEN_BYTES_MAX;

/// Room for a message frame's header, and for the one command answer (an error naming the
/// command) or heartbeat the core may queue past its bound.
const FRAME_SLACK_BYTES: usize = 64 * 1024;

/// One connection's output, bounded by [`Driver::output_bound`].
#[derive(Default)]
struct OutputQueue {
    frames: std::collections::VecDeque<Vec<u8>>,
    queued_bytes: usize,
    closed: bool,
}

struct Connection {
    output: Rc<RefCell<OutputQueue>>,
    /// Wakes the writer (frames queued, or closing).
    written: Rc<tokio::sync::Notify>,
    /// Wakes the reader (room in the queue).
    drained: Rc<tokio::sync::Notify>,
    reader: tokio::task::AbortHandle,
    writer: tokio::task::AbortHandle,
}

/// What an nsqd tells a lookupd.
pub enum LookupEvent {
    Register(String, Option<String>),
    Unregister(String, Option<String>),
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
    /// The queue statistics last reported, per (topic, channel), so only changes are.
    gauges: RefCell<BTreeMap<(String, String), [i64; 5]>>,
    /// Topics whose channels to ask lookupd for (set up with the lookupd peers).
    channel_queries: RefCell<Option<mpsc::UnboundedSender<String>>>,
    /// Each lookupd peer's HTTP address, once its IDENTIFY response has named it (nsqd's
    /// `lookupPeer.Info`, kept across reconnections).
    lookupd_http: RefCell<Vec<Option<String>>>,
    /// The most bytes ever queued for one connection (what the output bound is tested by).
    output_queued_bytes_high: std::cell::Cell<usize>,
}

impl<C: Context, D: Disk + Clone + 'static> Driver<C, D> {
    pub fn new(ctx: C, core: Nsqd<D>) -> Rc<Driver<C, D>> {
        Rc::new(Driver {
            ctx,
            core: Rc::new(RefCell::new(core)),
            connections: RefCell::new(BTreeMap::new()),
            lookup_peers: RefCell::new(Vec::new()),
            gauges: RefCell::new(BTreeMap::new()),
            channel_queries: RefCell::new(None),
            lookupd_http: RefCell::new(Vec::new()),
            output_queued_bytes_high: std::cell::Cell::new(0),
        })
    }

    /// The most bytes ever queued for one connection's socket; never more than
    /// [`Driver::output_bound`].
    pub fn output_queued_bytes_high(&self) -> usize {
        self.output_queued_bytes_high.get()
    }

    /// The most one connection's output may queue: the core's bound, one flush of a full
    /// output buffer and a message of the largest size, and one answer.
    pub fn output_bound(&self) -> usize {
        let max_msg_size = self.core.borrow().options().max_msg_size.max(0) as usize;
        OUTPUT_UNWRITTEN_BYTES_MAX + super::nsqd::OUTPUT_BUFFER_SIZE + max_msg_size + FRAME_SLACK_BYTES
    }

    /// The writer wrote one frame of `bytes` to `id`'s socket: the core may unblock it.
    fn written(&self, id: ClientId, bytes: usize) {
        let mut out = Outbox::default();
        let now = self.ctx.now();
        self.core
            .borrow_mut()
            .written(id, bytes, now, &mut *self.ctx.rng(), &mut out);
        self.dispatch(out);
    }

    /// Queues `bytes` for `id`; false if its output would pass the bound (the caller closes
    /// it: the core's own account should never let it).
    fn enqueue(&self, id: ClientId, bytes: Vec<u8>) -> bool {
        let connections = self.connections.borrow();
        let Some(c) = connections.get(&id) else {
            return true;
        };
        let mut output = c.output.borrow_mut();
        if output.queued_bytes + bytes.len() > self.output_bound() {
            return false;
        }
        output.queued_bytes += bytes.len();
        output.frames.push_back(bytes);
        let high = self.output_queued_bytes_high.get().max(output.queued_bytes);
        self.output_queued_bytes_high.set(high);
        c.written.notify_one();
        true
    }

    fn dispatch(&self, mut out: Outbox) {
        let mut closing = Vec::new();
        for output in out.drain() {
            match output {
                Output::Send(id, bytes) => {
                    if !self.enqueue(id, bytes) {
                        self.ctx.note("nsqd.client_output_full");
                        closing.push(id);
                    }
                }
                Output::Close(id) => closing.push(id),
                Output::Register { topic, channel } => {
                    for peer in self.lookup_peers.borrow().iter() {
                        let _ = peer.send(LookupEvent::Register(topic.clone(), channel.clone()));
                    }
                }
                Output::Unregister { topic, channel } => {
                    for peer in self.lookup_peers.borrow().iter() {
                        let _ = peer.send(LookupEvent::Unregister(topic.clone(), channel.clone()));
                    }
                }
                Output::Note(name) => self.ctx.note(name),
                Output::QueryChannels(topic) => {
                    let queued = self
                        .channel_queries
                        .borrow()
                        .as_ref()
                        .is_some_and(|tx| tx.send(topic.clone()).is_ok());
                    if !queued {
                        self.answer_channels(&topic, ChannelsFound::NoLookupd);
                    }
                }
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
        let blocked = self.core.borrow().is_write_blocked(id);
        if let Some(c) = self.connections.borrow_mut().remove(&id) {
            c.output.borrow_mut().closed = true;
            c.written.notify_one();
            c.drained.notify_one();
            c.reader.abort();
            if blocked {
                // Its writes are blocked: what is queued will never go out, and the socket
                // closes now, as nsqd's does once its write fails.
                c.writer.abort();
            }
        }
        let mut out = Outbox::default();
        self.core.borrow_mut().disconnect(id, &mut out);
        self.dispatch(out);
    }

    /// Serves one client connection until either side ends it.
    pub fn serve<R, W>(self: &Rc<Self>, mut read: R, mut write: W, remote: &str)
    where
        R: AsyncRead + Unpin + 'static,
        W: AsyncWrite + Unpin + 'static,
    {
        let id = self.core.borrow_mut().connect(self.ctx.now());
        self.core.borrow_mut().set_remote_address(id, remote);
        let output = Rc::new(RefCell::new(OutputQueue::default()));
        let (written, drained) = (
            Rc::new(tokio::sync::Notify::new()),
            Rc::new(tokio::sync::Notify::new()),
        );
        let writer_driver = self.clone();
        let (writer_output, writer_written, writer_drained) =
            (output.clone(), written.clone(), drained.clone());
        let writer = tokio::task::spawn_local(async move {
            loop {
                let next = {
                    let mut queue = writer_output.borrow_mut();
                    match queue.frames.pop_front() {
                        Some(frame) => {
                            queue.queued_bytes -= frame.len();
                            Some(frame)
                        }
                        None if queue.closed => break,
                        None => None,
                    }
                };
                let Some(frame) = next else {
                    writer_written.notified().await;
                    continue;
                };
                // Each write has the client's deadline, as each of nsqd's does; a write that
                // blocks past it fails and closes the connection.
                let deadline = writer_driver.core.borrow().write_timeout(id);
                let wrote = match deadline {
                    Some(deadline) => tokio::time::timeout(deadline, write.write_all(&frame)).await,
                    None => Ok(write.write_all(&frame).await),
                };
                match wrote {
                    Ok(Ok(())) => {
                        writer_driver.written(id, frame.len());
                        writer_drained.notify_one();
                    }
                    Ok(Err(_)) => return,
                    Err(_) => {
                        if writer_driver.connections.borrow().contains_key(&id) {
                            writer_driver.ctx.note("nsqd.client_write_timeout");
                            writer_driver.close(id);
                        }
                        return;
                    }
                }
            }
            let _ = write.shutdown().await;
        });
        let driver = self.clone();
        let (reader_output, reader_drained) = (output.clone(), drained.clone());
        let reader = tokio::task::spawn_local(async move {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                // nsqd's IOLoop blocks in Send while the socket is full, so it reads no more.
                while driver.core.borrow().is_write_blocked(id)
                    || reader_output.borrow().queued_bytes > OUTPUT_UNWRITTEN_BYTES_MAX
                {
                    reader_drained.notified().await;
                }
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
                output,
                written,
                drained,
                reader: reader.abort_handle(),
                writer: writer.abort_handle(),
            },
        );
    }

    /// Serves one HTTP connection's requests with nsqd's HTTP API (`/pub`, `/stats`, ...).
    pub async fn serve_http<S>(self: Rc<Self>, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let _ = super::http::serve(stream, |request: super::http::HttpRequest<'_>| {
            let mut out = Outbox::default();
            let now = self.ctx.now();
            let answer = self
                .core
                .borrow_mut()
                .http(&request, now, &mut *self.ctx.rng(), &mut out);
            self.dispatch(out);
            answer
        })
        .await;
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

    /// Reports each queue statistic that changed since the last report. Runs every tick, so
    /// names are only formatted for values that changed.
    fn report_gauges(&self) {
        const METRICS: [&str; 5] = ["depth", "in_flight", "deferred", "requeued", "timed_out"];
        let mut last = self.gauges.borrow_mut();
        for s in self.core.borrow().stats() {
            let now = [
                s.depth,
                s.in_flight as i64,
                s.deferred as i64,
                s.requeued as i64,
                s.timed_out as i64,
            ];
            let key = (s.topic, s.channel);
            let before = last.get(&key).copied();
            if before == Some(now) {
                continue;
            }
            for (i, value) in now.iter().enumerate() {
                if before.is_none_or(|b| b[i] != *value) {
                    self.ctx
                        .gauge(&format!("{}/{} {}", key.0, key.1, METRICS[i]), *value);
                }
            }
            last.insert(key, now);
        }
    }

    fn answer_channels(&self, topic: &str, found: ChannelsFound) {
        let mut out = Outbox::default();
        let now = self.ctx.now();
        self.core
            .borrow_mut()
            .channels_found(topic, found, now, &mut *self.ctx.rng(), &mut out);
        self.dispatch(out);
    }

    /// nsqd's `GetLookupdTopicChannels`: every lookupd that has identified itself is asked at
    /// once, with nsqd's HTTP client timeouts; the answer is the union of those that replied,
    /// or a failure if none did.
    async fn query_channels<S, F, Fut>(self: Rc<Self>, topic: String, connect: F)
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
        F: Fn(String) -> Fut + Clone + 'static,
        Fut: Future<Output = io::Result<S>> + 'static,
    {
        let addresses: Vec<String> = self.lookupd_http.borrow().iter().flatten().cloned().collect();
        if addresses.is_empty() {
            self.answer_channels(&topic, ChannelsFound::NoLookupd);
            return;
        }
        let mut queries = tokio::task::JoinSet::new();
        for address in addresses {
            let (connect, topic) = (connect.clone(), topic.clone());
            queries.spawn_local(async move {
                let stream = tokio::time::timeout(HTTP_CONNECT_TIMEOUT, connect(address.clone()))
                    .await
                    .ok()?
                    .ok()?;
                let host = address.rsplit_once(':').map_or(address.as_str(), |(h, _)| h);
                let target = format!("/channels?topic={topic}");
                let (status, body) =
                    tokio::time::timeout(HTTP_REQUEST_TIMEOUT, super::http::get(stream, host, &target))
                        .await
                        .ok()?
                        .ok()?;
                if status != 200 {
                    return None;
                }
                let value: serde_json::Value = serde_json::from_str(&body).ok()?;
                Some(
                    value["channels"]
                        .as_array()?
                        .iter()
                        .filter_map(|c| c.as_str().map(str::to_string))
                        .collect::<Vec<String>>(),
                )
            });
        }
        let mut channels: Option<BTreeSet<String>> = None;
        while let Some(joined) = queries.join_next().await {
            if let Ok(Some(found)) = joined {
                channels.get_or_insert_with(BTreeSet::new).extend(found);
            }
        }
        let found = match channels {
            Some(names) => ChannelsFound::Channels(names.into_iter().collect()),
            None => ChannelsFound::Failed,
        };
        self.answer_channels(&topic, found);
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
        self.core
            .borrow_mut()
            .set_lookupds_configured(!lookupds.is_empty());
        if !lookupds.is_empty() {
            let (tx, mut rx) = mpsc::unbounded_channel::<String>();
            *self.channel_queries.borrow_mut() = Some(tx);
            let (driver, connect) = (self.clone(), connect.clone());
            tasks.push(tokio::task::spawn_local(async move {
                while let Some(topic) = rx.recv().await {
                    tokio::task::spawn_local(driver.clone().query_channels(topic, connect.clone()));
                }
            }));
        }
        *self.lookupd_http.borrow_mut() = vec![None; lookupds.len()];
        for (index, lookupd) in lookupds.into_iter().enumerate() {
            let (tx, rx) = mpsc::unbounded_channel();
            self.lookup_peers.borrow_mut().push(tx.clone());
            let (driver, connect, announce) = (self.clone(), connect.clone(), announce.clone());
            tasks.push(tokio::task::spawn_local(async move {
                driver.lookup_peer(index, lookupd, announce, connect, rx).await
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
        index: usize,
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
                // Every command gets one response (a 4-byte size, then the data). The first
                // answers IDENTIFY and names the lookupd's HTTP address. A dead connection
                // shows as the reader ending.
                let (responses_tx, mut responses) = mpsc::unbounded_channel::<Vec<u8>>();
                let driver = self.clone();
                let mut reader = tokio::task::spawn_local(async move {
                    let mut chunk = [0u8; 4096];
                    let mut buffer = Vec::new();
                    let mut identified = false;
                    while let Ok(n) = read.read(&mut chunk).await {
                        if n == 0 {
                            break;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                        while let Some(data) = take_v1_response(&mut buffer) {
                            if !identified {
                                identified = true;
                                if let Some(address) = identify_response_http_address(&data) {
                                    driver.lookupd_http.borrow_mut()[index] = Some(address);
                                }
                            }
                            if responses_tx.send(data).is_err() {
                                return;
                            }
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
                let registrations = self.core.borrow().registrations();
                for (topic, channel) in &registrations {
                    hello.extend(register_line(topic, channel.as_deref()));
                }
                // nsqd's lookupPeer reads each response with a one-second deadline; a command
                // left unanswered closes the connection, and the next one reconnects and
                // registers everything again.
                let mut alive = write.write_all(&hello).await.is_ok()
                    && answered(1 + registrations.len(), &mut responses).await;
                while alive {
                    tokio::select! {
                        biased;
                        _ = &mut reader => alive = false,
                        event = events.recv() => {
                            let Some(event) = event else { return };
                            let bytes = match event {
                                LookupEvent::Register(topic, channel) => register_line(&topic, channel.as_deref()),
                                LookupEvent::Unregister(topic, channel) => {
                                    unregister_line(&topic, channel.as_deref())
                                }
                                LookupEvent::Ping => b"PING\n".to_vec(),
                            };
                            alive = write.write_all(&bytes).await.is_ok() && answered(1, &mut responses).await;
                        }
                    }
                }
                reader.abort();
                self.ctx.note("nsqd.lookupd_connection_lost");
            }
            // nsqd reconnects on the next command it sends this lookupd: the 15 s PING, or
            // sooner a REGISTER for something just created. The model waits for the PING's
            // slot and lets the re-registration on reconnect cover those REGISTERs, so a
            // topic created meanwhile can reach lookupd up to 15 s later than in nsqd.
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

/// nsqd's lookupPeer read and write deadline.
const LOOKUPD_READ_DEADLINE: Duration = Duration::from_secs(1);

/// Whether `count` responses arrive within the lookupd read deadline.
async fn answered(count: usize, responses: &mut mpsc::UnboundedReceiver<Vec<u8>>) -> bool {
    let wait = async {
        for _ in 0..count {
            responses.recv().await?;
        }
        Some(())
    };
    matches!(
        tokio::time::timeout(LOOKUPD_READ_DEADLINE, wait).await,
        Ok(Some(()))
    )
}

/// Takes one whole V1 response (a 4-byte size, then that many bytes) off `buffer`.
fn take_v1_response(buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    let size = u32::from_be_bytes(buffer.get(..4)?.try_into().ok()?) as usize;
    let data = buffer.get(4..4 + size)?.to_vec();
    buffer.drain(..4 + size);
    Some(data)
}

/// nsqd's HTTP client timeouts (`--http-client-connect-timeout`, `--http-client-request-timeout`).
const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The `broadcast_address:http_port` in a lookupd's IDENTIFY response (V1 responses carry
/// no frame type, unlike nsqd's V2).
fn identify_response_http_address(data: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(data).ok()?;
    let host = value["broadcast_address"].as_str()?;
    let port = value["http_port"].as_u64()?;
    Some(format!("{host}:{port}"))
}

fn unregister_line(topic: &str, channel: Option<&str>) -> Vec<u8> {
    match channel {
        Some(channel) => format!("UNREGISTER {topic} {channel}\n").into_bytes(),
        None => format!("UNREGISTER {topic}\n").into_bytes(),
    }
}

fn register_line(topic: &str, channel: Option<&str>) -> Vec<u8> {
    match channel {
        Some(channel) => format!("REGISTER {topic} {channel}\n").into_bytes(),
        None => format!("REGISTER {topic}\n").into_bytes(),
    }
}
