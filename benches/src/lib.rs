//! Inputs shared by the benchmarks: synthetic histories and a bare turmoil baseline.

use sim::history::{Event, EventKind, History, MsgId, Phase, SimTime};
use std::time::Duration;

/// A history of about `events` events from a queue with 4 producers and 3 consumers, with a
/// redelivery every 97th message and an adjacent swap every 89th (so the checkers find work).
pub fn synthetic_history(events: usize) -> History {
    let messages = (events / 4) as u64;
    let mut out = Vec::with_capacity(events + 8);
    let mut t = 0u64;
    let mut push = |host: &str, kind: EventKind| {
        t += 3;
        out.push(Event {
            time: SimTime(t),
            host: host.into(),
            kind,
        });
    };
    let producers = ["p1", "p2", "p3", "p4"];
    let consumers = ["c1", "c2", "c3"];
    let mut id = 1u64;
    while id <= messages {
        // Deliver in pairs, swapping some pairs, so reorders occur.
        let pair = if id < messages && id % 89 == 0 {
            [id + 1, id]
        } else {
            [id, u64::MAX]
        };
        let mut published: Vec<u64> = pair.iter().copied().filter(|m| *m != u64::MAX).collect();
        published.sort_unstable();
        for m in published {
            let producer = producers[(m % 4) as usize];
            push(
                producer,
                EventKind::Publish {
                    id: MsgId(m),
                    producer: producer.into(),
                    seq: m / 4,
                    key: Some(format!("k{}", m % 64)),
                },
            );
            push(producer, EventKind::publish_ok(MsgId(m)));
        }
        for &m in pair.iter().filter(|m| **m != u64::MAX) {
            let consumer = consumers[(m % 3) as usize];
            let deliveries = if m % 97 == 0 { 2 } else { 1 };
            for attempt in 1..=deliveries {
                push(
                    consumer,
                    EventKind::Deliver {
                        id: MsgId(m),
                        attempt,
                        consumer: consumer.into(),
                        partition: Some(format!("q{}", m % 8).into()),
                        node: None,
                        offset: None,
                    },
                );
            }
            push(
                consumer,
                EventKind::Effect {
                    id: MsgId(m),
                    consumer: consumer.into(),
                },
            );
        }
        id += if pair[1] == u64::MAX { 1 } else { 2 };
    }
    push(
        "jetsam",
        EventKind::Phase {
            phase: Phase::Drained,
            detail: String::new(),
        },
    );
    History::from_events(out)
}

/// The NSQ standard topology (2 nsqlookupd, 3 nsqd, 2 producers, each beside its nsqd as NSQ
/// recommends, 3 consumers) publishing `messages` under swarm faults: what `benches/nsq.rs` times at 10,000 messages and
/// `tests/memory.rs` measures at a million. The producers publish about 650 messages a
/// simulated second between them (each waits for its PUB's answer), mostly after the fault
/// phase, so the drain budget grows with the count: 3 ms a message, at least 60 s.
pub fn nsq_standard(messages: u64) -> String {
    let drain_ms = (messages * 3).max(60_000);
    NSQ_STANDARD
        .replace("{messages}", &messages.to_string())
        .replace("{drain_ms}", &drain_ms.to_string())
}

const NSQ_STANDARD: &str = r#"
name = "bench: nsq standard topology, {messages} messages, swarm faults"
design = "nsq"
[config]
placement = "beside"
lookupds = 2
lookupd_poll_interval_ms = 500
nsqds = 3
consumers = 3
max_in_flight = 6
processing_ms = 1
msg_timeout_ms = 2000
publish_timeout_ms = 500
retry = "another"
reconnect_ms = 500
heartbeat_interval_ms = 1000
read_timeout_ms = 3000
[config.nsqd]
client_timeout_ms = 2000
[workload]
messages = {messages}
producers = 2
publish_interval_ms = 1
[run]
fault_phase_ms = 6000
drain_ms = {drain_ms}
[swarm]
actions = ["kill", "pause", "partition", "lose_replies", "latency"]
interval_ms = [200, 1000]
duration_ms = [50, 1000]
"#;

/// A bare turmoil request/response stream: one client, one server, a request every `interval`
/// for `duration` of simulated time, on `tick`. The baseline the harness is measured beside.
pub fn bare_turmoil_stream(duration: Duration, interval: Duration, tick: Duration) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// A design's standard topology under swarm faults, at ticks of 1, 2 and 3 ms, in simulated
/// ms per wall second (criterion "elements" = simulated ms), beside a bare turmoil
/// request/response stream over the same simulated span. `scenario` has a `[run]` section.
pub fn standard_topology(c: &mut criterion::Criterion, group: &str, scenario: &str) {
    use criterion::Throughput;
    let mut group = c.benchmark_group(group);
    group.sample_size(10);
    let mut span = Duration::ZERO;
    // A turmoil step ticks every host (an idle one cheaply, through the vendored tokio's
    // shortcut), so the tick is still a lever: every network hop rounds up to it, and each
    // simulated second costs fewer steps. The designs' own timescales (NSQ's 100 ms queue
    // scan, Kafka's 5 ms linger and 9 s sessions) are far coarser than a millisecond.
    for tick_ms in [1u64, 2, 3] {
        let text = scenario.replace("[run]\n", &format!("[run]\ntick_ms = {tick_ms}\n"));
        let loaded = scenarios::Loaded::parse("bench.toml", &text).expect("the bench scenario parses");
        let outcome = loaded.run(1);
        let simulated_ms = outcome.stats.simulated_ms;
        let published = outcome.verdicts.counters.get("publish").copied().unwrap_or(0);
        eprintln!(
            "{}, tick {tick_ms} ms: simulated {simulated_ms} ms, {} events, {published} published, {} steps, drained {}",
            loaded.scenario.name, outcome.stats.events, outcome.stats.steps, outcome.verdicts.drained
        );
        if tick_ms == 1 {
            span = Duration::from_millis(simulated_ms);
        }
        group.throughput(Throughput::Elements(simulated_ms));
        group.bench_function(format!("standard-10k-swarm-tick-{tick_ms}ms"), |b| {
            b.iter(|| loaded.run(1).stats.simulated_ms)
        });
    }
    group.throughput(Throughput::Elements(span.as_millis() as u64));
    group.bench_function("bare-turmoil-request-response", |b| {
        b.iter(|| bare_turmoil_stream(span, Duration::from_millis(1), Duration::from_millis(1)))
    });
    group.finish();
}
