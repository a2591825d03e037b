//! Checker throughput in history events per second, at 1, 2 and 4 million events (the growth
//! across sizes shows the cost is no worse than n log n).

use benches::synthetic_history;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn checkers(c: &mut Criterion) {
    let mut group = c.benchmark_group("checkers");
    group.sample_size(10);
    for events in [1_000_000usize, 2_000_000, 4_000_000] {
        let history = synthetic_history(events);
        group.throughput(Throughput::Elements(history.len() as u64));
        group.bench_with_input(BenchmarkId::new("check_all", history.len()), &history, |b, h| {
            b.iter(|| {
                let findings = sim::checker::check_all(h);
                use sim::checker::{duplicate_delivery, reorder, OrderScope};
                assert!(
                    !findings.get(duplicate_delivery::DUPLICATE_DELIVERY).is_empty()
                        && !findings.get(reorder::kind(OrderScope::Global)).is_empty()
                );
                findings
            })
        });
    }
    group.finish();
}

criterion_group!(benches, checkers);
criterion_main!(benches);
