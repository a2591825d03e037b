//! Kafka speed: the standard topology (a controller, 3 brokers, 2 producers, 2 consumers)
//! publishing 10,000 records under swarm faults, in simulated ms per wall second (criterion
//! "elements" = simulated ms), beside a bare turmoil request/response stream over the same
//! simulated span.

use criterion::{criterion_group, criterion_main, Criterion};

const SCENARIO: &str = r#"
name = "bench: kafka standard topology, 10,000 records, swarm faults"
design = "kafka"
[config]
partitions = 2
consumers = 2
min_insync_replicas = 2
request_timeout_ms = 2000
delivery_timeout_ms = 60000
[workload]
messages = 10000
producers = 2
publish_interval_ms = 1
keys = 10
[run]
fault_phase_ms = 6000
drain_ms = 60000
[swarm]
actions = ["kill", "power_fail", "pause", "partition", "lose_replies"]
interval_ms = [200, 1000]
duration_ms = [50, 1000]
"#;

fn kafka(c: &mut Criterion) {
    benches::standard_topology(c, "kafka", SCENARIO);
}

criterion_group!(benches, kafka);
criterion_main!(benches);
