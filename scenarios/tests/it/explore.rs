//! `explore` finds the go-channel windows with swarm faults on its own, and the failing seed
//! replays.

use super::{jetsam, load};
use scenarios::explore::explore;
use scenarios::parse_expect_override;
use sim::checker::lost::LOST;

fn explore_with(
    path: &str,
    claim: &str,
    seeds: std::ops::Range<u64>,
) -> (scenarios::Loaded, Option<scenarios::explore::Failure>) {
    let mut loaded = load(path);
    loaded.override_expectations(&[parse_expect_override(claim).unwrap()]);
    let result = explore(&loaded, &seeds.collect::<Vec<u64>>(), 2, &|_| {});
    (loaded, result.first_failure)
}

#[test]
fn swarm_kills_break_no_loss_within_a_few_hundred_seeds() {
    let (loaded, failure) = explore_with("scenarios/go-channel/swarm-correct.toml", "no-loss=holds", 0..300);
    let failure = failure.expect("explore finds a loss");
    assert!(
        failure.unmet.iter().any(|l| l.starts_with("no-loss")),
        "{failure:?}"
    );
    // The failing seed replays: same schedule, same loss.
    let replay = loaded.run(failure.seed);
    assert!(!replay.findings.get(LOST).is_empty());
    assert!(replay
        .schedule
        .iter()
        .any(|f| matches!(f.action.name(), "kill" | "power_fail")));
}

#[test]
fn swarm_careless_shutdown_breaks_no_phantom_and_no_loss() {
    for claim in ["no-phantom=holds", "no-loss=holds"] {
        let (_, failure) = explore_with("scenarios/go-channel/swarm-careless.toml", claim, 0..300);
        assert!(failure.is_some(), "{claim}");
    }
}

#[test]
fn a_go_channel_never_duplicates_or_reorders_whatever_the_swarm_draws() {
    let loaded = load("scenarios/go-channel/swarm-correct.toml");
    let result = explore(&loaded, &(0..100).collect::<Vec<u64>>(), 2, &|_| {});
    assert_eq!(result.first_failure, None);
    assert_eq!(result.seeds_run, 100);
}

#[test]
fn explore_reports_the_smallest_failing_seed_whatever_the_jobs() {
    let (_, one) = explore_with(
        "scenarios/go-channel/swarm-careless.toml",
        "no-phantom=holds",
        0..60,
    );
    let mut loaded = load("scenarios/go-channel/swarm-careless.toml");
    loaded.override_expectations(&[parse_expect_override("no-phantom=holds").unwrap()]);
    let three = explore(&loaded, &(0..60).collect::<Vec<u64>>(), 3, &|_| {}).first_failure;
    assert_eq!(one.map(|f| f.seed), three.map(|f| f.seed));
}

#[test]
fn the_cli_prints_a_replay_command_that_reproduces_the_failure() {
    let output = jetsam()
        .args([
            "explore",
            "scenarios/go-channel/swarm-correct.toml",
            "--seeds",
            "0..300",
            "--jobs",
            "2",
            "--expect",
            "no-loss=holds",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let replay = stdout
        .lines()
        .find_map(|l| l.strip_prefix("replay: jetsam "))
        .expect("a replay line");
    let args: Vec<&str> = replay.split_whitespace().collect();
    let replayed = jetsam().args(&args).output().unwrap();
    assert_eq!(replayed.status.code(), Some(1), "the replay fails the same way");
    let text = String::from_utf8(replayed.stdout).unwrap();
    assert!(
        text.contains("FAULT    kill") || text.contains("FAULT    power_fail"),
        "{text}"
    );
    assert!(text.contains("UNMET no-loss"), "{text}");
}

#[test]
fn no_loss_while_the_process_lives_whatever_pauses_and_stops_the_swarm_draws() {
    let loaded = load("scenarios/go-channel/swarm-process-lives.toml");
    let result = explore(&loaded, &(0..100).collect::<Vec<u64>>(), 2, &|_| {});
    assert_eq!(result.first_failure, None);
    // And the draws did pause and stop the process.
    let faults: std::collections::BTreeSet<&str> = (0..10)
        .flat_map(|seed| loaded.run(seed).schedule)
        .map(|f| f.action.name())
        .collect();
    assert!(faults.contains("pause") && faults.contains("stop"), "{faults:?}");
}

#[test]
fn swarm_faults_find_duplicate_and_lost_effects_at_the_database_on_their_own() {
    for claim in ["at-most-once=holds", "no-loss=holds"] {
        let (loaded, failure) = explore_with("scenarios/db/swarm-ack-after.toml", claim, 0..300);
        let failure = failure.unwrap_or_else(|| panic!("explore breaks {claim}"));
        let property = claim.split('=').next().unwrap();
        assert!(
            failure.unmet.iter().any(|l| l.starts_with(property)),
            "{failure:?}"
        );
        let replay = loaded.run(failure.seed);
        assert!(!loaded.unmet(&replay).is_empty(), "the seed replays");
    }
}

#[test]
fn explore_shards_split_the_seed_range_without_overlap() {
    use scenarios::explore::shard_seeds;
    for n in 1..=5 {
        let mut all: Vec<u64> = (1..=n).flat_map(|i| shard_seeds(10..23, (i, n))).collect();
        all.sort();
        assert_eq!(all, (10..23).collect::<Vec<_>>(), "{n} shards");
    }
    assert_eq!(shard_seeds(0..10, (2, 3)), vec![1, 4, 7]);
}
