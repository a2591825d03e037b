//! The real MQTT broker: the sans-I/O [`Broker`] on tokio sockets, the real clock and, with
//! `persistence`, a snapshot file in a directory. One task per connection (reading bytes
//! into the shared core, writing what the core sends it), one task ticking every second
//! for keepalive and autosave. This is the one place in `mqtt` that reads the wall clock.

use super::broker::{Broker, BrokerConfig, ConnId, Out};
use super::outbox::{self, Command, Writers};
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The file a persistent broker saves to, in its data directory (mosquitto's is
/// `mosquitto.db`; ours holds the core's JSON snapshot, not mosquitto's format).
pub const SNAPSHOT_FILE: &str = "jetsam-mqtt.db";
/// Bytes read from a socket at once.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Serves MQTT on `listener` until `shutdown` resolves. With `config.persistence`, state is
/// loaded from and saved to [`SNAPSHOT_FILE`] in the current directory; see [`run_in`].
pub async fn run_on(
    listener: TcpListener,
    config: BrokerConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    run_in(listener, config, PathBuf::from("."), shutdown).await
}

/// [`run_on`] with the data directory (mosquitto's `persistence_location`) given.
pub async fn run_in(
    listener: TcpListener,
    config: BrokerConfig,
    data_dir: PathBuf,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let clock = Clock::new();
    let broker = open(&config, &data_dir, clock.now_ms())?;
    let shared = Arc::new(Mutex::new(Shared {
        broker,
        writers: BTreeMap::new(),
        next_conn: 1,
        clock,
        data_dir,
        saved_at_ms: 0,
    }));
    let mut tasks = JoinSet::new();
    tasks.spawn(tick_loop(shared.clone()));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let _ = stream.set_nodelay(true);
                tasks.spawn(serve_connection(shared.clone(), stream));
                while tasks.try_join_next().is_some() {}
            }
        }
    }
    tasks.shutdown().await;
    let shared = lock(&shared);
    if shared.broker.config().persistence {
        save(&shared.broker, &shared.data_dir)?;
    }
    Ok(())
}

/// Real time since the server started. Real servers are not simulations: the determinism
/// bans (clippy.toml) do not apply here, and this is the one place in `mqtt` that says so.
struct Clock {
    #[allow(clippy::disallowed_types)]
    start: std::time::Instant,
}

impl Clock {
    #[allow(clippy::disallowed_types, clippy::disallowed_methods)]
    fn new() -> Clock {
        Clock {
            start: std::time::Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

struct Shared {
    broker: Broker,
    writers: Writers,
    next_conn: ConnId,
    clock: Clock,
    data_dir: PathBuf,
    saved_at_ms: u64,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn dispatch(&mut self, outs: Vec<Out>) {
        let now_ms = self.clock.now_ms();
        outbox::dispatch(
            &mut self.broker,
            &mut self.writers,
            outs,
            now_ms,
            |kind, detail| {
                tracing::info!(note = kind, "{detail}");
            },
        );
    }
}

async fn serve_connection(shared: Arc<Mutex<Shared>>, mut stream: TcpStream) {
    let (writer, mut commands) = outbox::channel();
    let conn = {
        let mut shared = lock(&shared);
        let conn = shared.next_conn;
        shared.next_conn += 1;
        shared.writers.insert(conn, writer);
        let now_ms = shared.clock.now_ms();
        shared.broker.on_open(now_ms, conn);
        conn
    };
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
                    let mut shared = lock(&shared);
                    let mut outs = Vec::new();
                    let now_ms = shared.clock.now_ms();
                    shared.broker.on_bytes(now_ms, conn, &buf[..n], &mut outs);
                    shared.dispatch(outs);
                }
            },
        }
    }
    let mut shared = lock(&shared);
    shared.writers.remove(&conn);
    let mut outs = Vec::new();
    let now_ms = shared.clock.now_ms();
    shared.broker.on_closed(now_ms, conn, &mut outs);
    shared.dispatch(outs);
}

/// Every second: keepalive and session expiry, and an autosave when it is due.
async fn tick_loop(shared: Arc<Mutex<Shared>>) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    loop {
        interval.tick().await;
        let mut shared = lock(&shared);
        let now_ms = shared.clock.now_ms();
        let mut outs = Vec::new();
        shared.broker.on_tick(now_ms, &mut outs);
        shared.dispatch(outs);
        let config = shared.broker.config();
        let interval_ms = config.autosave_interval_s.saturating_mul(1000);
        if config.persistence && interval_ms > 0 && now_ms - shared.saved_at_ms >= interval_ms {
            if let Err(error) = save(&shared.broker, &shared.data_dir) {
                tracing::warn!(%error, "autosave failed");
            }
            shared.saved_at_ms = now_ms;
        }
    }
}

/// The broker at start: restored from the data directory with persistence, else empty.
fn open(config: &BrokerConfig, data_dir: &Path, now_ms: u64) -> io::Result<Broker> {
    let path = data_dir.join(SNAPSHOT_FILE);
    if !config.persistence || !path.exists() {
        return Ok(Broker::new(config.clone()));
    }
    let bytes = std::fs::read(&path)?;
    Broker::restore(config.clone(), &bytes, now_ms).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Writes the snapshot beside the old one, fsyncs it and renames it over (as mosquitto
/// writes `mosquitto.db.new` and renames it).
fn save(broker: &Broker, data_dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join(SNAPSHOT_FILE);
    let new = data_dir.join(format!("{SNAPSHOT_FILE}.new"));
    let mut file = std::fs::File::create(&new)?;
    io::Write::write_all(&mut file, &broker.snapshot())?;
    file.sync_all()?;
    std::fs::rename(&new, &path)
}
