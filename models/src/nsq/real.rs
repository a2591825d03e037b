//! The real servers: nsqd and nsqlookupd on tokio sockets, a real data directory and the
//! real clock, running the same cores and driver code as the simulation. This is the only
//! place in `models` that reads the wall clock.

use super::guid::node_id_for;
use super::lookupd::{Lookupd, LookupdOptions};
use super::lookupd_driver::{serve_http, serve_peer};
use super::nsqd::{Nsqd, NsqdOptions};
use super::nsqd_driver::{Announce, Context, Driver};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sim::disk::RealDisk;
use std::cell::{RefCell, RefMut};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Real time, from process start. Real servers are not simulations: the determinism bans
/// (clippy.toml) do not apply here, and this is the one place that says so.
pub struct RealContext {
    #[allow(clippy::disallowed_types)]
    start: std::time::Instant,
    rng: RefCell<ChaCha8Rng>,
}

impl RealContext {
    #[allow(clippy::disallowed_types, clippy::disallowed_methods)]
    pub fn new() -> RealContext {
        RealContext {
            start: std::time::Instant::now(),
            rng: RefCell::new(ChaCha8Rng::seed_from_u64(u64::from(std::process::id()))),
        }
    }

    #[allow(clippy::disallowed_types, clippy::disallowed_methods)]
    pub fn unix_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

impl Default for RealContext {
    fn default() -> RealContext {
        RealContext::new()
    }
}

impl Context for RealContext {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
    fn rng(&self) -> RefMut<'_, ChaCha8Rng> {
        self.rng.borrow_mut()
    }
    fn note(&self, name: &str) {
        tracing::debug!(note = name, "nsqd");
    }
    async fn checkpoint(&self) {}
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await
    }
}

#[derive(Clone, Debug)]
pub struct NsqdServer {
    pub tcp_address: SocketAddr,
    pub http_address: SocketAddr,
    pub lookupd_tcp_addresses: Vec<String>,
    pub data_path: PathBuf,
    pub broadcast_address: String,
    pub options: NsqdOptions,
}

/// Runs nsqd until `shutdown` resolves, then shuts down gracefully (queues flushed to disk).
/// A killed process keeps what nsqd keeps: what its disk queues hold.
pub async fn run_nsqd(server: NsqdServer, shutdown: impl std::future::Future<Output = ()>) -> io::Result<()> {
    let disk = RealDisk::open(&server.data_path)?;
    let ctx = RealContext::new();
    let core = Nsqd::open(
        server.options.clone(),
        disk,
        node_id_for(&server.broadcast_address),
        RealContext::unix_ms(),
        ctx.now(),
    );
    let driver = Driver::new(ctx, core);
    driver.note_disk();
    let tcp = TcpListener::bind(server.tcp_address).await?;
    let http = TcpListener::bind(server.http_address).await?;
    let announce = Announce {
        broadcast_address: server.broadcast_address.clone(),
        tcp_port: tcp.local_addr()?.port(),
        http_port: http.local_addr()?.port(),
    };
    let mut tasks = driver.start_lookup_peers(
        server.lookupd_tcp_addresses.clone(),
        announce,
        |address: String| async move { TcpStream::connect(address).await },
    );
    tasks.push(tokio::task::spawn_local(driver.clone().tick_loop()));
    let http_driver = driver.clone();
    tasks.push(tokio::task::spawn_local(async move {
        while let Ok((stream, _)) = http.accept().await {
            tokio::task::spawn_local(http_driver.clone().serve_http(stream));
        }
    }));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = tcp.accept() => {
                let (stream, _) = accepted?;
                let (read, write) = stream.into_split();
                driver.serve(read, write);
            }
        }
    }
    for task in tasks {
        task.abort();
    }
    driver.shutdown()
}

#[derive(Clone, Debug)]
pub struct LookupdServer {
    pub tcp_address: SocketAddr,
    pub http_address: SocketAddr,
    pub options: LookupdOptions,
}

pub async fn run_lookupd(
    server: LookupdServer,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    let tcp = TcpListener::bind(server.tcp_address).await?;
    let http = TcpListener::bind(server.http_address).await?;
    let mut options = server.options.clone();
    // What nsqds are told to reach this lookupd's HTTP API at.
    let ip = server.http_address.ip();
    options.broadcast_address = if ip.is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        ip.to_string()
    };
    options.http_port = http.local_addr()?.port();
    let core = Rc::new(RefCell::new(Lookupd::new(options)));
    let ctx = Rc::new(RealContext::new());
    let http_task = {
        let (core, ctx) = (core.clone(), ctx.clone());
        tokio::task::spawn_local(async move {
            while let Ok((stream, _)) = http.accept().await {
                let ctx = ctx.clone();
                tokio::task::spawn_local(serve_http(core.clone(), stream, move || ctx.now()));
            }
        })
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = tcp.accept() => {
                let (stream, remote) = accepted?;
                let (core, ctx) = (core.clone(), ctx.clone());
                tokio::task::spawn_local(async move {
                    serve_peer(core, stream, remote.to_string(), move || ctx.now(), || async {}).await;
                });
            }
        }
    }
    http_task.abort();
    Ok(())
}
