//! Memory per event (issue 14): the NSQ standard topology publishing a million messages, its
//! peak resident set and its allocations, printed. Ignored by default: at a million messages it
//! takes minutes and wants a release build (`cargo test --release -p benches --test memory --
//! --ignored --nocapture`); `JETSAM_MEM_MESSAGES=100000` runs a smaller proxy in debug.
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

fn messages() -> u64 {
    match std::env::var("JETSAM_MEM_MESSAGES") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("JETSAM_MEM_MESSAGES={text}: a count of messages")),
        Err(_) => MESSAGES_DEFAULT,
    }
}

#[test]
#[ignore = "minutes long; run with --release --ignored"]
fn nsq_standard_run_stays_under_its_peak_rss() {
    let messages = messages();
    let loaded = scenarios::Loaded::parse("memory.toml", &benches::nsq_standard(messages))
        .expect("the bench scenario parses");
    let rss_before = proc_status_bytes("VmRSS");
    let region = Region::new(GLOBAL);
    let outcome = loaded.run(1);
    let allocs = region.change();
    let peak = proc_status_bytes("VmHWM");
    let events = outcome.stats.events as u64;
    let published = outcome.verdicts.counters.get("publish").copied().unwrap_or(0);
    eprintln!(
        "nsq standard, {messages} messages: {events} events, {published} published, \
         size_of Event {} bytes",
        std::mem::size_of::<sim::history::Event>()
    );
    eprintln!(
        "peak RSS {} MB (RSS before the run {} MB), {} bytes/event over the run",
        peak / 1_000_000,
        rss_before / 1_000_000,
        peak.saturating_sub(rss_before) / events.max(1)
    );
    eprintln!(
        "allocations {} ({:.1}/event), reallocations {}, bytes allocated {} MB",
        allocs.allocations,
        allocs.allocations as f64 / events.max(1) as f64,
        allocs.reallocations,
        allocs.bytes_allocated / 1_000_000
    );
    assert!(outcome.verdicts.drained, "the run drains");
    assert!(
        published >= messages,
        "every message published at least once: {published} of {messages}"
    );
    assert!(
        peak < PEAK_RSS_MAX_BYTES,
        "peak RSS {} MB over the {} MB budget",
        peak / 1_000_000,
        PEAK_RSS_MAX_BYTES / 1_000_000
    );
}
