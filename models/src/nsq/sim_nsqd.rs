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

struct Driver {
    env: Env,
    host: String,
    core: Rc<RefCell<Nsqd<SimDisk>>>,
    connections: RefCell<BTreeMap<ClientId, Connection>>,
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
                Output::Register { .. } => {} // nsqlookupd peers come with lookupd
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

/// The nsqd process on `host`.
pub async fn run(env: Env, host: String, options: NsqdOptions, registry: Registry) -> turmoil::Result {
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
    });
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
