//! NSQ speed: the standard topology (2 nsqlookupd, 3 nsqd, 2 producers, 3 consumers)
//! publishing 10,000 messages under swarm faults. Reported as simulated ms per wall second (criterion "elements" = simulated ms) and, by hand, messages per wall second,
//! beside a bare turmoil request/response stream over the same simulated span.

use criterion::{criterion_group, criterion_main, Criterion};

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
    benches::standard_topology(c, "nsq", SCENARIO);
}

criterion_group!(benches, nsq);
criterion_main!(benches);
