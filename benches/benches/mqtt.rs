//! MQTT speed: the standard topology (one broker, 2 publishers, 2 subscribers, QoS 1 both
//! ways, persistent sessions) publishing 10,000 messages under swarm faults, in simulated ms
//! per wall second (criterion "elements" = simulated ms), beside a bare turmoil
//! request/response stream over the same simulated span.

use criterion::{criterion_group, criterion_main, Criterion};

// The config is scenarios/mqtt/swarm-standard.toml's; its swarm leaves out partitions and
// lost replies for the reason its description gives. The run and swarm timings are the
// other standard benches'. Publishers keep that scenario's 10 ms interval, not the 1 ms of
// the Kafka and NSQ benches: at 1 ms two publishers outrun subscribers that take 2 ms a
// message, mosquitto's max_queued_messages (1000) drops two thirds of what each is owed,
// and the bench would time a broker discarding messages.
const SCENARIO: &str = r#"
name = "bench: mqtt standard topology, 10,000 messages, swarm faults"
design = "mqtt"
[config]
subscribers = 2
qos = 1
subscribe_qos = 1
publisher_clean_session = false
subscriber_clean_session = false
keep_alive_s = 2
ping_timeout_ms = 1000
processing_ms = 2
[config.broker]
persistence = true
autosave_interval_s = 1
[workload]
messages = 10000
producers = 2
publish_interval_ms = 10
[run]
fault_phase_ms = 6000
drain_ms = 60000
[swarm]
actions = ["kill", "power_fail", "pause", "stop", "latency"]
interval_ms = [200, 1000]
duration_ms = [50, 1000]
"#;

fn mqtt(c: &mut Criterion) {
    benches::standard_topology(c, "mqtt", SCENARIO);
}

criterion_group!(benches, mqtt);
criterion_main!(benches);
