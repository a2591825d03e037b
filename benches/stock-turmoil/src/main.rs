//! The bare turmoil request/response stream of `benches/src/lib.rs` (`bare_turmoil_stream`),
//! built against stock turmoil and tokio: one client, one server, an 8-byte request and its
//! echo every simulated ms, at a 1 ms tick. Prints simulated ms per wall second per run.
//!
//! A copy, not a call: a crate outside the workspace cannot depend on `benches` (its workspace
//! dependencies, and the patched engine they bring, are what this baseline must not use).
//!
//! Wall time is read here, outside any simulation, only to report speed.

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn stream(duration: Duration, interval: Duration, tick: Duration) -> u64 {
    let mut sim = turmoil::Builder::new()
        .rng_seed(1)
        .tick_duration(tick)
        .simulation_duration(duration * 2 + Duration::from_secs(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(1))
        .build();
    sim.host("server", || async {
        let listener = turmoil::net::TcpListener::bind(("0.0.0.0", 7000)).await?;
        loop {
            let (mut stream, _) = listener.accept().await?;
            tokio::task::spawn_local(async move {
                let mut buf = [0u8; 8];
                while stream.read_exact(&mut buf).await.is_ok() {
                    if stream.write_all(&buf).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    sim.client("client", async move {
        let mut stream = turmoil::net::TcpStream::connect(("server", 7000)).await?;
        let mut buf = [0u8; 8];
        let mut i = 0u64;
        while turmoil::elapsed() < duration {
            i += 1;
            stream.write_all(&i.to_be_bytes()).await?;
            stream.read_exact(&mut buf).await?;
            tokio::time::sleep(interval).await;
        }
        Ok(())
    });
    sim.run().expect("baseline runs");
    sim.elapsed().as_millis() as u64
}

fn arg(index: usize, default: u64) -> u64 {
    std::env::args()
        .nth(index)
        .map(|text| text.parse().expect("a number"))
        .unwrap_or(default)
}

fn main() {
    // 16,862 ms is the NSQ bench run's simulated span at a 1 ms tick on seed 1.
    let span = Duration::from_millis(arg(1, 16_862));
    for _ in 0..arg(2, 5) {
        let start = Instant::now();
        let simulated_ms = stream(span, Duration::from_millis(1), Duration::from_millis(1));
        let speed = simulated_ms as f64 / start.elapsed().as_secs_f64();
        println!(
            "stock turmoil 0.7.2: simulated {simulated_ms} ms, {speed:.0} sim ms/s ({:.1}x real time)",
            speed / 1000.0
        );
    }
}
