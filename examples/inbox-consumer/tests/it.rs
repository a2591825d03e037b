//! The example's tests: jetsam finds the careless handler's double charge and names the
//! command that replays it; the inbox handler holds over the seed range, and every seed's
//! faults did make nsqd deliver a charged message again (else holding would prove nothing).

use inbox_consumer::{CarelessCharge, InboxCharge};
use jetsam::{Check, Scenario};

fn scenario() -> Scenario {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/charge-through-crashes.toml"
    );
    Scenario::load(path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn inbox_charges_each_message_once() {
    jetsam::check(&scenario(), || InboxCharge);
}

#[test]
fn inbox_holds_on_every_seed_and_its_faults_redeliver() {
    let runs = Check::new(&scenario(), || InboxCharge)
        .unwrap()
        .seeds(1..9)
        .run()
        .unwrap();
    assert_eq!(runs.len(), 8);
    for run in &runs {
        assert!(run.passed(), "seed {}: {:?}", run.seed(), run.unmet());
        assert_eq!(run.holds("exactly-once"), Some(true));
        assert!(
            run.count("deliver.redelivery") > 0,
            "seed {}: nothing redelivered",
            run.seed()
        );
    }
}

#[test]
fn careless_double_charge_is_found() {
    let runs = Check::new(&scenario(), || CarelessCharge)
        .unwrap()
        .seeds(1..3)
        .run()
        .unwrap();
    for run in &runs {
        assert!(!run.passed(), "seed {}", run.seed());
        assert_eq!(run.holds("exactly-once"), Some(false));
        let twice = run.anomalies_named("duplicate-effect");
        assert!(!twice.is_empty(), "seed {}: {}", run.seed(), run.summary());
    }
}

#[test]
fn careless_failure_names_the_replay_command_and_the_shrunk_case() {
    // Only the first seed: the panic comes from the smallest failing one, which is 1 here.
    let check = Check::new(&scenario(), || CarelessCharge).unwrap().seeds(1..4);
    let failure = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check.assert()))
        .expect_err("the careless handler charges twice");
    let message = failure.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("fails on seed 1"), "{message}");
    assert!(message.contains("duplicate-effect"), "{message}");
    assert!(
        message.contains("replay: JETSAM_SEED=1 cargo test -p inbox-consumer careless_failure_names_the_replay_command_and_the_shrunk_case -- --exact"),
        "{message}"
    );
    let shrunk = message
        .lines()
        .find_map(|line| line.strip_prefix("shrunk case: "))
        .unwrap_or_else(|| panic!("no shrunk case in:\n{message}"));
    let text = std::fs::read_to_string(shrunk).unwrap();
    assert!(text.contains("exactly-once = \"violated\""), "{text}");
    assert!(
        message.contains(&format!("replay the shrunk case: JETSAM_REPLAY={shrunk} ")),
        "{message}"
    );
}
