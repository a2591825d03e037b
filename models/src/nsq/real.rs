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
    //! Hostile clients against the real server's driver (tokio sockets, the real clock): a
    //! client that does not read stalls at the output bound and is closed at its write
    //! deadline, and the server's memory (RSS) stays bounded however little it reads.
    use super::*;
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

    /// This process's resident set, in bytes: the server runs in the test's process, and
    /// nextest runs each test in a process of its own (under `cargo test` the other tests'
    /// threads share it, and the bound below still holds for them all). `VmRSS` is
    /// `/proc/self/statm`'s resident pages, in kB.
    fn rss_bytes() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").expect("Linux's /proc");
        let kb = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().strip_suffix("kB"))
            .and_then(|value| value.trim().parse::<usize>().ok())
            .expect("a VmRSS line");
        kb * 1024
    }

    /// How much the server's memory may grow while a hostile client does its worst: far
    /// below what unbounded output or input would take (the issue measured 200 MB in 25 s
    /// for the never-reading consumer, 1 GB for the FIN flood).
    const RSS_GROWTH_MAX: usize = 64 * 1024 * 1024;

    /// Whether any of the first `count` clients is stalled in a write.
    fn any_write_blocked(driver: &RealDriver, count: u64) -> bool {
        (1..=count).any(|id| driver.core.borrow().is_write_blocked(id))
    }

    #[test]
    fn a_consumer_that_never_reads_stalls_at_the_bound_and_nsqds_memory_stays_bounded() {
        run_local(async {
            let options = NsqdOptions {
                msg_timeout_ms: 3000,
                ..NsqdOptions::default()
            };
            let (driver, address) = start_nsqd("never-reads", options).await;
            let message_size = 10 * 1024;
            for _ in 0..6 {
                publish(address, "t", 400, message_size).await; // within max_body_size
            }
            let before = rss_bytes();
            let mut consumer = TcpStream::connect(address).await.unwrap();
            consumer.write_all(b"  V2SUB t c\nRDY 2500\n").await.unwrap();
            // Three msg_timeouts: what the consumer never read is requeued each time.
            tokio::time::sleep(Duration::from_secs(10)).await;
            let grown = rss_bytes().saturating_sub(before);
            assert!(grown < RSS_GROWTH_MAX, "RSS grew {grown} bytes");
            let high = driver.output_queued_bytes_high();
            eprintln!("never-reading consumer: RSS grew {grown} bytes, queued at most {high} bytes");
            assert!(high <= driver.output_bound(), "queued {high} bytes");
            // Sometimes: the consumer stalled at the bound, and is still connected: its
            // write deadline (the default heartbeat, 30 s) has not passed.
            assert!(any_write_blocked(&driver, 7), "the consumer never stalled");
            let stats = driver.core.borrow().stats();
            assert_eq!(stats.iter().map(|s| s.clients).sum::<usize>(), 1);
            assert!(
                stats.iter().map(|s| s.timed_out).sum::<u64>() > 0,
                "no msg_timeout ran"
            );
            drop(consumer);
        });
    }

    #[test]
    fn a_client_flooding_fins_without_reading_stalls_then_is_closed_at_its_write_deadline() {
        run_local(async {
            let (driver, address) = start_nsqd("fins-unread", NsqdOptions::default()).await;
            publish(address, "t", 1, 10).await;
            let before = rss_bytes();
            let mut client = TcpStream::connect(address).await.unwrap();
            // A one-second heartbeat makes the write deadline one second.
            let identify = br#"{"heartbeat_interval":1000}"#;
            let mut hello = b"  V2IDENTIFY\n".to_vec();
            hello.extend((identify.len() as u32).to_be_bytes());
            hello.extend(identify);
            hello.extend(b"SUB t c\n");
            client.write_all(&hello).await.unwrap();
            // 200 MiB of FINs of an unknown id, each answered E_FIN_FAILED, none read.
            let fins = b"FIN 0123456789abcdef\n".repeat(50_000);
            let mut written = 0usize;
            let mut closed = false;
            while written < 200 * 1024 * 1024 {
                match tokio::time::timeout(Duration::from_secs(10), client.write_all(&fins)).await {
                    Ok(Ok(())) => written += fins.len(),
                    Ok(Err(_)) => {
                        closed = true;
                        break;
                    }
                    Err(_) => break, // stalled for 10 s and never closed: asserted below
                }
            }
            let grown = rss_bytes().saturating_sub(before);
            assert!(grown < RSS_GROWTH_MAX, "RSS grew {grown} bytes");
            assert!(
                closed,
                "nsqd never closed the flooding client ({written} bytes written)"
            );
            assert!(written < 200 * 1024 * 1024, "nsqd read all {written} bytes");
            let high = driver.output_queued_bytes_high();
            eprintln!("FIN flood: RSS grew {grown} bytes, {written} bytes written, queued at most {high}");
            assert!(high <= driver.output_bound(), "queued {high} bytes");
            // Sometimes: its answers reached the bound (the stall, then the deadline).
            assert!(
                high > super::super::nsqd::OUTPUT_UNWRITTEN_BYTES_MAX / 2,
                "queued only {high} bytes"
            );
        });
    }
}
