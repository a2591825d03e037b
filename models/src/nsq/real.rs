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
                let (stream, remote) = accepted?;
                let (read, write) = stream.into_split();
                driver.serve(read, write, &remote.to_string());
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
    options.tcp_port = tcp.local_addr()?.port();
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

#[cfg(test)]
mod tests {
    //! Hostile clients against the real server's driver (tokio sockets, the real clock): its
    //! per-connection output stays bounded however little a client reads.
    use super::*;
    use crate::nsq::nsqd_driver::OUTPUT_QUEUED_BYTES_MAX;
    use tokio::io::AsyncWriteExt;

    type RealDriver = Rc<Driver<RealContext, RealDisk>>;

    /// An nsqd on a fresh data directory and a loopback port, serving until the test ends.
    async fn start_nsqd(name: &str, options: NsqdOptions) -> (RealDriver, SocketAddr) {
        let path = std::env::temp_dir().join(format!("jetsam-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        let ctx = RealContext::new();
        let core = Nsqd::open(
            options,
            RealDisk::open(&path).unwrap(),
            1,
            RealContext::unix_ms(),
            ctx.now(),
        );
        let driver = Driver::new(ctx, core);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::task::spawn_local(driver.clone().tick_loop());
        let serving = driver.clone();
        tokio::task::spawn_local(async move {
            while let Ok((stream, remote)) = listener.accept().await {
                let (read, write) = stream.into_split();
                serving.serve(read, write, &remote.to_string());
            }
        });
        (driver, address)
    }

    fn run_local(test: impl std::future::Future<Output = ()>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&runtime, test);
    }

    /// Publishes `count` messages of `size` bytes with MPUB, reading the answer.
    async fn publish(address: SocketAddr, topic: &str, count: usize, size: usize) {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let mut body = (count as u32).to_be_bytes().to_vec();
        for _ in 0..count {
            body.extend((size as u32).to_be_bytes());
            body.extend(vec![b'x'; size]);
        }
        let mut command = format!("  V2MPUB {topic}\n").into_bytes();
        command.extend((body.len() as u32).to_be_bytes());
        command.extend(body);
        stream.write_all(&command).await.unwrap();
        let mut answer = [0u8; 10];
        tokio::io::AsyncReadExt::read_exact(&mut stream, &mut answer)
            .await
            .unwrap();
        assert_eq!(&answer[8..], b"OK");
    }

    fn bound(frame_bytes_max: usize) -> usize {
        OUTPUT_QUEUED_BYTES_MAX + frame_bytes_max
    }

    #[test]
    fn a_consumer_that_never_reads_cannot_grow_nsqds_output() {
        run_local(async {
            let options = NsqdOptions {
                msg_timeout_ms: 200,
                ..NsqdOptions::default()
            };
            let (driver, address) = start_nsqd("never-reads", options).await;
            let message_size = 10 * 1024;
            for _ in 0..6 {
                publish(address, "t", 400, message_size).await; // within max_body_size
            }
            let mut consumer = TcpStream::connect(address).await.unwrap();
            consumer.write_all(b"  V2SUB t c\nRDY 2500\n").await.unwrap();
            // msg_timeout requeues what the consumer never read, and nsqd sends it again.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let high = driver.output_queued_bytes_high();
            // One flush is at most a full output buffer and the message that overflowed it.
            let flush_bytes_max = crate::nsq::nsqd::OUTPUT_BUFFER_SIZE + message_size + 64;
            assert!(high <= bound(flush_bytes_max), "queued {high} bytes");
            // Sometimes: the bound was reached, and the connection closed for it.
            assert!(high > OUTPUT_QUEUED_BYTES_MAX, "queued only {high} bytes");
            let clients: usize = driver.core.borrow().stats().iter().map(|s| s.clients).sum();
            assert_eq!(clients, 0, "the stalled consumer was disconnected");
            drop(consumer);
        });
    }

    #[test]
    fn a_client_writing_fins_without_reading_is_not_read_past_the_bound() {
        run_local(async {
            let (driver, address) = start_nsqd("fins-unread", NsqdOptions::default()).await;
            publish(address, "t", 1, 10).await;
            let mut client = TcpStream::connect(address).await.unwrap();
            client.write_all(b"  V2SUB t c\n").await.unwrap();
            let fins = b"FIN 0123456789abcdef\n".repeat(4096);
            // Each FIN of an unknown id answers E_FIN_FAILED; the client reads none of them.
            // nsqd stops reading it, so its writes stall once the socket buffers are full.
            let mut written = 0usize;
            let writing = async {
                loop {
                    client.write_all(&fins).await.unwrap();
                    written += fins.len();
                }
            };
            let stalled = tokio::time::timeout(Duration::from_secs(3), writing)
                .await
                .is_err();
            assert!(stalled);
            let high = driver.output_queued_bytes_high();
            assert!(high <= bound(256), "queued {high} bytes");
            assert!(high > OUTPUT_QUEUED_BYTES_MAX / 2, "queued only {high} bytes");
            assert!(written < 512 * 1024 * 1024, "wrote {written} bytes");
        });
    }
}
