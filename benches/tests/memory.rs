//! Memory per event (issue 14): the NSQ standard topology publishing a million messages, its
//! peak resident set and its allocations, printed. Ignored by default: at a million messages it
//! wants a release build (about 20 s there; `cargo test --release -p benches --test memory --
//! --ignored --nocapture`); `JETSAM_MEM_MESSAGES=100000` runs a smaller proxy in debug.
//!
//! Measured at a million messages (5.04M events of 72 bytes): peak 444 MiB in release, 457 in
//! debug, nearly all of it the history (346 MiB) and, while the checkers run, the publish
//! index (80 MiB). The transaction checkers once kept every delivery beside them on a history
//! with no transactions, 255 MiB more (698 MiB). `jetsam run` of the same scenario, which also
//! explains its anomalies and judges vacuity, peaks at 461 MiB (debug; 593 before the
//! explainer's and vacuity's per-message maps were packed).
//!
//! The global allocator counts every allocation of this test binary, so the figures are the
//! run's own only while one test runs at a time (`--test-threads 1`, or one test named).

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The target for the million-message run.
const PEAK_RSS_MAX_BYTES: u64 = 500 * 1024 * 1024;

const MESSAGES_DEFAULT: u64 = 1_000_000;

/// One field of `/proc/self/status` in bytes (`VmHWM` is the peak resident set, `VmRSS` the
/// current one); the kernel writes them in kB.
fn proc_status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux's /proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable line: {line}"));
    kib * 1024
}

/// The resident set, sampled every 10 ms while `work` runs on this thread; the first sample
/// is taken before it starts. (The allocator's own counts overstate it: capacity reserved and
/// never touched is not resident.)
fn with_heap_samples<T>(work: impl FnOnce() -> T) -> (T, Vec<u64>) {
    let live = || proc_status_bytes("VmRSS");
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut samples = vec![live()];
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(10));
                samples.push(live());
            }
            samples
        });
        let out = work();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (out, sampler.join().expect("the sampler thread"))
    })
}

fn messages() -> u64 {
    match std::env::var("JETSAM_MEM_MESSAGES") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("JETSAM_MEM_MESSAGES={text}: a count of messages")),
        Err(_) => MESSAGES_DEFAULT,
    }
}

#[test]
#[ignore = "a million messages; run with --release --ignored"]
fn nsq_standard_run_stays_under_its_peak_rss() {
    let messages = messages();
    let loaded = scenarios::Loaded::parse("memory.toml", &benches::nsq_standard(messages))
        .expect("the bench scenario parses");
    let rss_before = proc_status_bytes("VmRSS");
    let region = Region::new(GLOBAL);
    let (outcome, heap) = with_heap_samples(|| loaded.run(1));
    let allocs = region.change();
    let peak = proc_status_bytes("VmHWM");
    let (check_heap_peak, check_heap_base) = {
        let (_, heap) = with_heap_samples(|| sim::checker::check_all(&outcome.history));
        (
            heap.iter().copied().max().unwrap_or(0),
            heap.first().copied().unwrap_or(0),
        )
    };
    let events = outcome.stats.events as u64;
    let published = outcome.verdicts.counters.get("publish").copied().unwrap_or(0);
    eprintln!(
        "nsq standard, {messages} messages: {events} events, {published} published, \
         size_of Event {} bytes",
        std::mem::size_of::<sim::history::Event>()
    );
    eprintln!(
        "peak RSS {} MiB (RSS before the run {} MiB), {} bytes/event over the run",
        peak >> 20,
        rss_before >> 20,
        peak.saturating_sub(rss_before) / events.max(1)
    );
    eprintln!(
        "allocations {} ({:.1}/event), reallocations {}, bytes allocated {} MiB",
        allocs.allocations,
        allocs.allocations as f64 / events.max(1) as f64,
        allocs.reallocations,
        allocs.bytes_allocated >> 20
    );
    let heap_peak = heap.iter().copied().max().unwrap_or(0);
    let at = heap.iter().position(|h| *h == heap_peak).unwrap_or(0);
    eprintln!(
        "RSS: peak {} MiB at sample {at} of {}, {} MiB at the end; check_all alone adds up to {} MiB",
        heap_peak >> 20,
        heap.len(),
        heap.last().copied().unwrap_or(0) >> 20,
        check_heap_peak.saturating_sub(check_heap_base) >> 20
    );
    let index = sim::checker::PublishIndex::build(&outcome.history);
    for checker in sim::checker::CHECKERS {
        let (_, heap) = with_heap_samples(|| {
            let mut found = 0usize;
            (checker.check)(&outcome.history, &index, &mut |_| found += 1);
            found
        });
        let base = heap.first().copied().unwrap_or(0);
        let top = heap.iter().copied().max().unwrap_or(0);
        eprintln!(
            "checker {}: up to {} MiB",
            checker.kinds[0].key(),
            top.saturating_sub(base) >> 20
        );
    }
    let tenths: Vec<u64> = (1..=10)
        .map(|i| heap[(heap.len() * i / 10).saturating_sub(1)] >> 20)
        .collect();
    eprintln!("RSS MiB at each tenth of the run: {tenths:?}");
    assert!(outcome.verdicts.drained, "the run drains");
    assert!(
        published >= messages,
        "every message published at least once: {published} of {messages}"
    );
    assert!(
        peak < PEAK_RSS_MAX_BYTES,
        "peak RSS {} MiB over the {} MiB budget",
        peak >> 20,
        PEAK_RSS_MAX_BYTES >> 20
    );
}
