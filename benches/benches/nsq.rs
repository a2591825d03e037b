//! NSQ speed: the standard topology (2 nsqlookupd, 3 nsqd, 2 producers, 3 consumers)
//! publishing 10,000 messages under swarm faults. Reported as simulated ms per wall second (criterion "elements" = simulated ms) and, by hand, messages per wall second,
//! beside a bare turmoil request/response stream over the same simulated span.

use criterion::{criterion_group, criterion_main, Criterion};

fn nsq(c: &mut Criterion) {
    benches::standard_topology(c, "nsq", &benches::nsq_standard(10_000));
}

criterion_group!(benches, nsq);
criterion_main!(benches);
