//! Explanations of bundled scenarios' anomalies (issue 13): each names the fault kind and
//! the hosts that made it, read from the run's history. One seed each, to stay fast.

use super::load;
use sim::checker::{self, AnomalyKind};
use sim::explain::{Explainer, Explanation};

/// The explanation of the first `kind` anomaly of `path` at its own seed.
fn explained(path: &str, kind: AnomalyKind) -> (Explanation, Vec<String>) {
    let loaded = load(path);
    let outcome = loaded.run(loaded.scenario.run.seed);
    let findings = checker::check_all(&outcome.history);
    let anomaly = findings
        .get(kind)
        .first()
        .unwrap_or_else(|| panic!("{path}: no {} anomaly", kind.key()));
    let explanation = Explainer::new(&outcome.history).explain(anomaly);
    let hosts = explanation.hosts(outcome.history.events());
    (explanation, hosts)
}

fn says(path: &str, explanation: &Explanation, words: &[&str]) {
    for word in words {
        assert!(
            explanation.summary.contains(word),
            "{path}: {word:?} missing from the summary:\n{}",
            explanation.render("")
        );
    }
}

#[test]
fn an_nsq_duplicate_after_a_kill_before_fin_names_the_kill_and_the_msg_timeout() {
    let path = "scenarios/db/ack-after-duplicates-on-kill-before-fin.toml";
    let (e, hosts) = explained(path, checker::duplicate_effect::DUPLICATE_EFFECT);
    says(
        path,
        &e,
        &[
            "did not acknowledge",
            "kill consumer1",
            "nsqd1 noted nsqd.msg_timeout",
        ],
    );
    assert!(
        hosts.contains(&"nsqd1".to_string()) && hosts.contains(&"consumer1".to_string()),
        "{hosts:?}"
    );
}

#[test]
fn an_nsq_retried_pub_duplicate_names_the_lost_replies_and_the_retry() {
    let path = "scenarios/nsq/ambiguous-pub-retried.toml";
    let (e, _) = explained(path, checker::duplicate_delivery::DUPLICATE_DELIVERY);
    says(
        path,
        &e,
        &[
            "a second copy",
            "lose_replies nsqd1 -/-> producer1",
            "producer.retry",
        ],
    );
}

#[test]
fn an_nsq_loss_names_the_kill_of_the_nsqd_that_held_it() {
    let path = "scenarios/nsq/in-flight-lost-on-kill.toml";
    let (e, _) = explained(path, checker::lost::LOST);
    says(path, &e, &["last held by consumer1", "kill nsqd1"]);
}

#[test]
fn a_kafka_power_failure_loss_names_every_broker_it_hit() {
    let path = "scenarios/kafka/power-failure-of-every-replica-loses-unflushed-writes.toml";
    let (e, hosts) = explained(path, checker::lost::LOST);
    says(
        path,
        &e,
        &["never delivered", "power_fail broker1", "unsynced bytes lost"],
    );
    for broker in ["broker1", "broker2", "broker3"] {
        assert!(
            hosts.contains(&broker.to_string()),
            "{broker} not named: {hosts:?}"
        );
    }
}

#[test]
fn a_kafka_truncation_loss_names_the_kill_and_the_truncation() {
    let path = "scenarios/kafka/hw-truncation-then-leader-dies-loses-acknowledged-writes.toml";
    let (e, _) = explained(path, checker::lost::LOST);
    says(path, &e, &["kill broker2", "kafka.truncated_to_high_watermark"]);
}

#[test]
fn an_mqtt_duplicate_names_the_lost_puback() {
    let path = "scenarios/mqtt/qos1-lost-puback-duplicates-after-reconnect.toml";
    let (e, hosts) = explained(path, checker::duplicate_effect::DUPLICATE_EFFECT);
    says(
        path,
        &e,
        &["a second copy", "lose_replies broker -/-> publisher1"],
    );
    assert!(hosts.contains(&"broker".to_string()), "{hosts:?}");
}

#[test]
fn a_kafka_aborted_read_names_who_aborted_the_transaction() {
    let path = "scenarios/kafka/txn-read-uncommitted-reads-an-aborted-transaction.toml";
    let (e, _) = explained(path, checker::aborted_read::ABORTED_READ);
    says(
        path,
        &e,
        &["aborted by producer1", "read by consumer1", "txn_abort_requested"],
    );
}

#[test]
fn a_kafka_reprocessing_after_a_crash_names_the_reread_and_the_kill() {
    let path = "scenarios/kafka/group-commit-after-process-crash-processes-twice.toml";
    let (e, _) = explained(path, checker::duplicate_effect::DUPLICATE_EFFECT);
    says(path, &e, &["read it again at the same offset", "kill consumer1"]);
}

#[test]
fn run_prints_explanations_and_json_carries_one_per_anomaly() {
    let output = super::jetsam()
        .args(["run", "scenarios/nsq/in-flight-lost-on-kill.toml"])
        .output()
        .unwrap();
    let human = String::from_utf8_lossy(&output.stdout);
    assert!(
        human.contains("why: m1 was acknowledged and never processed"),
        "{human}"
    );
    assert!(
        human.contains("FAULT kill nsqd1 from 150 ms to 250 ms"),
        "{human}"
    );
    let output = super::jetsam()
        .args(["run", "scenarios/nsq/in-flight-lost-on-kill.toml", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let no_loss = report["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["property"] == "no-loss")
        .unwrap();
    let explanation = &no_loss["anomalies"][0]["explanation"];
    assert!(
        explanation["summary"].as_str().unwrap().contains("kill nsqd1"),
        "{explanation}"
    );
    let steps = explanation["steps"].as_array().unwrap();
    assert!(
        steps.iter().any(|s| s["host"] == "nsqd1" && s["t_us"] == 150_000),
        "{explanation}"
    );
}
