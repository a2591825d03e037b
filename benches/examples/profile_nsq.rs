//! The NSQ bench's standard topology (benches/nsq.rs) run on its own, for a profiler or a
//! quick figure: `profile_nsq [runs] [tick_ms] [seed] [messages]` runs it `runs` times and prints, per
//! run, simulated ms per wall second beside bare turmoil over the same span.
//!
//! Wall time is read here, outside any simulation, only to report speed.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // wall time for the figure only

use std::time::{Duration, Instant};

fn arg(index: usize, default: u64) -> u64 {
    std::env::args()
        .nth(index)
        .map(|text| text.parse().expect("a number"))
        .unwrap_or(default)
}

fn main() {
    let runs = arg(1, 1);
    let tick_ms = arg(2, 1);
    let seed = arg(3, 1);
    let bare = std::env::var_os("PROFILE_NSQ_NO_BARE").is_none();
    let messages = arg(4, 10_000);
    let text = benches::nsq_standard(messages).replace("[run]\n", &format!("[run]\ntick_ms = {tick_ms}\n"));
    let loaded = scenarios::Loaded::parse("bench.toml", &text).expect("the bench scenario parses");
    for _ in 0..runs {
        let start = Instant::now();
        let outcome = loaded.run(seed);
        let wall = start.elapsed();
        let simulated_ms = outcome.stats.simulated_ms;
        let speed = simulated_ms as f64 / wall.as_secs_f64();
        let mut line = format!(
            "simulated {simulated_ms} ms, {} steps, {} events, hash {}, {:.0} sim ms/s ({:.1}x real time)",
            outcome.stats.steps,
            outcome.stats.events,
            &outcome.history.hash()[..16],
            speed,
            speed / 1000.0
        );
        if bare {
            let start = Instant::now();
            let span = Duration::from_millis(simulated_ms);
            benches::bare_turmoil_stream(span, Duration::from_millis(1), Duration::from_millis(1));
            let bare_speed = simulated_ms as f64 / start.elapsed().as_secs_f64();
            line += &format!(
                ", bare turmoil {bare_speed:.0} sim ms/s, ratio {:.3}",
                speed / bare_speed
            );
        }
        println!("{line}");
    }
}
