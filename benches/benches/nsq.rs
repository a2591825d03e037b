//! NSQ speed: the standard topology (2 nsqlookupd, 3 nsqd, 2 producers, 3 consumers)
//! publishing 10,000 messages under swarm faults. Reported as simulated ms per wall second (criterion "elements" = simulated ms) and, by hand, messages per wall second,
//! beside a bare turmoil request/response stream over the same simulated span.

use benches::bare_turmoil_stream;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

const SCENARIO: &str = r#"
name = "bench: nsq standard topology, 10,000 messages, swarm faults"
design = "nsq"
[config]
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
messages = 10000
producers = 2
publish_interval_ms = 1
[run]
fault_phase_ms = 6000
drain_ms = 30000
[swarm]
actions = ["kill", "pause", "partition", "lose_replies", "latency"]
interval_ms = [200, 1000]
duration_ms = [50, 1000]
"#;

fn nsq(c: &mut Criterion) {
    let loaded = scenarios::Loaded::parse("bench.toml", SCENARIO).expect("the bench scenario parses");
    let outcome = loaded.run(1);
    let simulated_ms = outcome.stats.simulated_ms;
    let published = outcome.verdicts.counters.get("publish").copied().unwrap_or(0);
    eprintln!(
        "nsq standard: seed 1 simulated {simulated_ms} ms, {} events, {published} messages published, {} steps",
        outcome.stats.events, outcome.stats.steps
    );
    let mut group = c.benchmark_group("nsq");
    group.sample_size(10);
    group.throughput(Throughput::Elements(simulated_ms));
    group.bench_function("standard-10k-swarm", |b| {
        b.iter(|| loaded.run(1).stats.simulated_ms)
    });
    let span = Duration::from_millis(simulated_ms);
    group.bench_function("bare-turmoil-request-response", |b| {
        b.iter(|| bare_turmoil_stream(span, Duration::from_millis(1), Duration::from_millis(1)))
    });
    group.finish();
}

criterion_group!(benches, nsq);
criterion_main!(benches);
