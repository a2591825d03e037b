//! Seeds per minute, the figure users feel in a seed sweep (issue 14): each design's bundled
//! swarm scenario, one seed after another on one core, and `explore` with two jobs against
//! one on the same seeds.
//!
//! Criterion's "elements" are seeds, so its thrpt line reads as seeds per second; the bench
//! also prints seeds per minute. Nothing here asserts a time: machines are shared and noisy.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::Path;

/// One swarm scenario per design: what a user's sweep over that design runs.
const SWARMS: [&str; 6] = [
    "scenarios/nsq/swarm-standard.toml",
    "scenarios/kafka/swarm-standard.toml",
    "scenarios/mqtt/swarm-standard.toml",
    "scenarios/db/swarm-ack-after.toml",
    "scenarios/go-channel/swarm-correct.toml",
    "scenarios/outbox/swarm-skip-locked.toml",
];

/// Seeds per measured iteration: a swarm run's time depends on what its seed draws.
const SEEDS_PER_ITERATION: u64 = 4;

fn load(path: &str) -> scenarios::Loaded {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let full = root.join(path);
    scenarios::Loaded::load(full.to_str().expect("a UTF-8 path")).expect("a bundled scenario loads")
}

fn one_core(c: &mut Criterion) {
    let mut group = c.benchmark_group("seeds-one-core");
    group.sample_size(10);
    group.throughput(Throughput::Elements(SEEDS_PER_ITERATION));
    for path in SWARMS {
        let loaded = load(path);
        let name = Path::new(path)
            .parent()
            .and_then(Path::file_name)
            .expect("a design folder");
        group.bench_function(name.to_string_lossy().into_owned(), |b| {
            b.iter(|| {
                (1..=SEEDS_PER_ITERATION)
                    .map(|seed| loaded.run(seed).stats.events as u64)
                    .sum::<u64>()
            })
        });
    }
    group.finish();
}

fn explore_jobs(c: &mut Criterion) {
    let loaded = load(SWARMS[0]);
    let seeds: Vec<u64> = (1..=2 * SEEDS_PER_ITERATION).collect();
    let mut group = c.benchmark_group("explore-nsq-swarm");
    group.sample_size(10);
    group.throughput(Throughput::Elements(seeds.len() as u64));
    for jobs in [1usize, 2] {
        group.bench_function(format!("jobs-{jobs}"), |b| {
            b.iter(|| scenarios::explore::explore(&loaded, &seeds, jobs, &|_| {}).seeds_run)
        });
    }
    group.finish();
}

criterion_group!(benches, one_core, explore_jobs);
criterion_main!(benches);
