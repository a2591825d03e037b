//! The idle-tick shortcut of the vendored tokio and turmoil (sim/vendor/tokio/VENDORED.md)
//! changes no history: each design's swarm scenario, and a colocated one, give the same
//! history hash with the shortcut on and off. The counters show the shortcut did skip ticks,
//! so the comparison cannot pass by never taking it.

use super::load;

const SCENARIOS: [&str; 7] = [
    "scenarios/nsq/swarm-standard.toml",
    "scenarios/nsq/producers-beside-nsqd.toml",
    "scenarios/kafka/swarm-standard.toml",
    "scenarios/mqtt/swarm-standard.toml",
    "scenarios/db/swarm-ack-after.toml",
    "scenarios/go-channel/swarm-correct.toml",
    "scenarios/outbox/swarm-skip-locked.toml",
];

/// The run's history hash and the (skipped, run) runtime ticks it took.
fn run(loaded: &scenarios::Loaded, seed: u64, shortcut: bool) -> (String, (u64, u64)) {
    turmoil::idle::set_enabled(shortcut);
    let (skipped_before, ran_before) = turmoil::idle::ticks();
    let hash = loaded.run(seed).history.hash();
    let (skipped, ran) = turmoil::idle::ticks();
    turmoil::idle::set_enabled(true);
    (hash, (skipped - skipped_before, ran - ran_before))
}

#[test]
fn the_idle_tick_shortcut_changes_no_history() {
    for path in SCENARIOS {
        let loaded = load(path);
        for seed in [1, 2] {
            let (with, (skipped, ran)) = run(&loaded, seed, true);
            let (without, (skipped_off, _)) = run(&loaded, seed, false);
            assert_eq!(
                with, without,
                "{path} seed {seed}: the shortcut changed the history"
            );
            assert!(
                skipped > 0 && ran > 0,
                "{path} seed {seed}: {skipped} ticks skipped, {ran} run"
            );
            assert_eq!(skipped_off, 0, "{path} seed {seed}: the shortcut ran while off");
        }
    }
}
