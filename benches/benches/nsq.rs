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
drain_ms = 60000
[swarm]
actions = ["kill", "pause", "partition", "lose_replies", "latency"]
interval_ms = [200, 1000]
duration_ms = [50, 1000]
"#;

fn nsq(c: &mut Criterion) {
    let mut group = c.benchmark_group("nsq");
    group.sample_size(10);
    let mut span = Duration::ZERO;
    // A turmoil step costs wall time whether or not anything happens, so the tick is the main
    // lever: at 2 ms every network hop rounds up to 2 ms (the workload takes longer in
    // simulated time) but each simulated second costs half the steps. NSQ's own timescales
    // (100 ms queue scan, 250 ms output buffer, seconds of heartbeat) are far coarser.
    for tick_ms in [1u64, 2, 3] {
        let text = SCENARIO.replace("[run]\n", &format!("[run]\ntick_ms = {tick_ms}\n"));
        let loaded = scenarios::Loaded::parse("bench.toml", &text).expect("the bench scenario parses");
        let outcome = loaded.run(1);
        let simulated_ms = outcome.stats.simulated_ms;
        let published = outcome.verdicts.counters.get("publish").copied().unwrap_or(0);
        eprintln!(
            "nsq standard, tick {tick_ms} ms: simulated {simulated_ms} ms, {} events, {published} published, {} steps, drained {}",
            outcome.stats.events, outcome.stats.steps, outcome.verdicts.drained
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

criterion_group!(benches, nsq);
criterion_main!(benches);
