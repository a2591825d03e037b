//! Same scenario, same seed, same build: the same history bytes, in one process and across two.

use super::{bundled, jetsam, load};
use std::collections::BTreeMap;

fn hashes_from_a_process(seed: u64) -> BTreeMap<String, String> {
    let mut command = jetsam();
    command.args(["run", "scenarios", "--json", "--seed", &seed.to_string()]);
    let output = command.output().unwrap();
    assert!(output.status.code().is_some_and(|c| c <= 1), "{output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let report: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                report["path"].as_str().unwrap().to_string(),
                report["history_hash"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn every_bundled_scenario_replays_bit_for_bit_in_two_processes() {
    let first = hashes_from_a_process(7);
    let second = hashes_from_a_process(7);
    assert_eq!(first.len(), bundled().len(), "every scenario reported");
    assert_eq!(first, second);
}

#[test]
fn every_bundled_scenario_replays_bit_for_bit_in_one_process() {
    for path in bundled() {
        let loaded = load(&path);
        let a = loaded.run(3);
        let b = loaded.run(3);
        assert_eq!(a.history, b.history, "{path}");
    }
}

/// Scenarios whose outcome draws on randomness (swarm schedules, Go's select) differ across
/// seeds. A scenario with neither (one producer, one consumer, a fixed schedule) is rightly
/// identical on every seed: the design has no nondeterminism to explore.
#[test]
fn seeds_that_draw_randomness_give_different_histories() {
    for path in [
        "scenarios/go-channel/swarm-correct.toml",
        "scenarios/go-channel/swarm-careless.toml",
        "scenarios/go-channel/careless-shutdown-phantom.toml",
    ] {
        let loaded = load(path);
        let hashes: std::collections::BTreeSet<String> =
            (0..5).map(|seed| loaded.run(seed).history.hash()).collect();
        assert!(hashes.len() >= 4, "{path}: {hashes:?}");
    }
}
