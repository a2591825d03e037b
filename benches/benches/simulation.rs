//! Simulation speed: simulated milliseconds per wall second ("elements" are simulated ms),
//! for bundled scenarios and, in the same run, a bare turmoil request/response stream.

use benches::bare_turmoil_stream;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::PathBuf;
use std::time::Duration;

fn load(name: &str) -> scenarios::Loaded {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(name);
    scenarios::Loaded::load(path.to_str().unwrap()).unwrap()
}

fn simulation(c: &mut Criterion) {
    let mut group = c.benchmark_group("simulation");
    group.sample_size(10);
    for name in [
        "scenarios/go-channel/fifo-no-faults.toml",
        "scenarios/go-channel/swarm-correct.toml",
    ] {
        let loaded = load(name);
        let simulated_ms = loaded.run(1).stats.simulated_ms;
        group.throughput(Throughput::Elements(simulated_ms));
        group.bench_function(name.trim_start_matches("scenarios/"), |b| {
            b.iter(|| loaded.run(1).stats.simulated_ms)
        });
    }
    // The same simulated span as swarm-correct, a request every 2 ms, 1 ms ticks.
    let span = Duration::from_millis(
        load("scenarios/go-channel/swarm-correct.toml")
            .run(1)
            .stats
            .simulated_ms,
    );
    let simulated_ms = bare_turmoil_stream(span, Duration::from_millis(2), Duration::from_millis(1));
    group.throughput(Throughput::Elements(simulated_ms));
    group.bench_function("bare-turmoil-request-response", |b| {
        b.iter(|| bare_turmoil_stream(span, Duration::from_millis(2), Duration::from_millis(1)))
    });
    group.finish();
}

criterion_group!(benches, simulation);
criterion_main!(benches);
