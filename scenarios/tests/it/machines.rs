//! NSQ with each producer beside its nsqd (issue 14, `placement = "beside"`): the producer
//! publishes over loopback, which a partition of its machine does not cut; a kill of the
//! producer leaves its nsqd running; a power failure takes both; the run replays bit for bit.

use super::load;
use sim::history::{Event, EventKind};

const BESIDE: &str = "scenarios/nsq/producers-beside-nsqd.toml";

/// The publishing producer of each message id.
fn producer_of(events: &[Event]) -> std::collections::BTreeMap<u64, String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Publish { id, .. } => Some((id.0, e.host.to_string())),
            _ => None,
        })
        .collect()
}

fn between(e: &Event, from_ms: u64, to_ms: u64) -> bool {
    e.time.0 > from_ms * 1000 && e.time.0 < to_ms * 1000
}

#[test]
fn a_producer_beside_its_nsqd_publishes_through_a_partition_of_their_machine() {
    let loaded = load(BESIDE);
    let outcome = loaded.run(1);
    let events = outcome.history.events();
    let producers = producer_of(events);
    // The partition (300 to 1200 ms) names producer1: its machine m-nsqd1 is cut off.
    let acked_over_loopback = events
        .iter()
        .filter(|e| between(e, 310, 1200))
        .filter(|e| matches!(&e.kind, EventKind::PublishOk { id, .. } if producers[&id.0] == "producer1"))
        .count();
    assert!(
        acked_over_loopback > 50,
        "nsqd1 acknowledged {acked_over_loopback} PUBs during the partition"
    );
    let from_nsqd1 = |from_ms, to_ms| {
        events
            .iter()
            .filter(|e| between(e, from_ms, to_ms))
            .filter(|e| matches!(&e.kind, EventKind::Deliver { node: Some(n), .. } if n == "nsqd1"))
            .count()
    };
    assert_eq!(
        from_nsqd1(320, 1200),
        0,
        "a consumer reached nsqd1 across the partition"
    );
    assert!(
        from_nsqd1(1200, u64::MAX / 1000) > 100,
        "nsqd1's backlog never reached the consumers"
    );
    let partition = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Fault { action, detail, .. } if action == "partition" => Some(detail.clone()),
            _ => None,
        })
        .expect("the partition is recorded");
    assert!(
        partition.contains("producer1 (on machine m-nsqd1)"),
        "{partition}"
    );
    assert!(outcome.verdicts.drained);
}

#[test]
fn killing_a_producer_leaves_its_nsqd_running_and_the_restart_publishes_again() {
    let loaded = load(BESIDE);
    let outcome = loaded.run(1);
    let events = outcome.history.events();
    // producer2 is killed at 900 ms and restarted at 1300 ms; nsqd2 shares its machine.
    assert_eq!(
        events
            .iter()
            .filter(|e| e.host == "producer2" && between(e, 902, 1300))
            .count(),
        0
    );
    let republished = events
        .iter()
        .filter(|e| e.host == "producer2" && between(e, 1300, 2500))
        .filter(|e| matches!(e.kind, EventKind::PublishOk { .. }))
        .count();
    assert!(
        republished > 10,
        "the restarted producer2 published {republished} over loopback"
    );
    let faults_on_nsqd2: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Fault { action, hosts, .. } if action != "partition" && hosts.iter().any(|h| h == "nsqd2")))
        .collect();
    assert!(
        faults_on_nsqd2.is_empty(),
        "nsqd2 went down with its producer: {faults_on_nsqd2:?}"
    );
    // nsqd2 kept what it held in memory: nothing acknowledged is lost.
    assert!(outcome.verdicts.get(sim::verdict::Property::NoLoss).holds);
}

#[test]
fn a_power_failure_takes_the_producer_with_its_nsqd() {
    let path = super::root().join(BESIDE);
    let text = std::fs::read_to_string(path).unwrap();
    let faults = text.find("[[faults]]").unwrap();
    let expect = text.find("[expect]").unwrap();
    let text = format!(
        "{}[[faults]]\nat_ms = 400\naction = \"power_fail\"\nhost = \"nsqd1\"\n\n[[faults]]\nat_ms = 1000\naction = \"restart\"\nhost = \"nsqd1\"\n",
        &text[..faults]
    );
    assert!(expect > faults);
    let loaded = scenarios::Loaded::parse("power.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let outcome = loaded.run(1);
    let events = outcome.history.events();
    for host in ["nsqd1", "producer1"] {
        assert!(
            events.iter().any(|e| e.host == host && between(e, 0, 400)),
            "{host} ran before"
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| e.host == host && between(e, 402, 1000))
                .count(),
            0,
            "{host} ran without power"
        );
        assert!(
            events.iter().any(|e| e.host == host && between(e, 1000, 3000)),
            "{host} did not boot"
        );
    }
    assert!(
        events
            .iter()
            .any(|e| e.host == "producer2" && between(e, 402, 1000)),
        "nsqd2's machine lost power"
    );
    let hosts_of = |wanted: &str| {
        events.iter().find_map(|e| match &e.kind {
            EventKind::Fault { action, hosts, .. } if action == wanted => Some(hosts.clone()),
            _ => None,
        })
    };
    assert_eq!(
        hosts_of("power_fail"),
        Some(vec!["nsqd1".to_string(), "producer1".to_string()])
    );
    assert_eq!(
        hosts_of("restart"),
        Some(vec!["nsqd1".to_string(), "producer1".to_string()])
    );
}

#[test]
fn the_colocated_scenario_replays_bit_for_bit_and_differs_from_apart() {
    let loaded = load(BESIDE);
    let (first, second) = (loaded.run(1), loaded.run(1));
    assert_eq!(first.history.hash(), second.history.hash());
    // The control: the same scenario apart is another run (producer1 is cut off from nsqd1).
    let text = std::fs::read_to_string(super::root().join(BESIDE))
        .unwrap()
        .replace("placement = \"beside\"\n", "");
    let apart = scenarios::Loaded::parse("apart.toml", &text).unwrap().run(1);
    assert_ne!(first.history.hash(), apart.history.hash());
}

#[test]
fn colocate_in_a_scenario_names_known_processes_once() {
    let text = std::fs::read_to_string(super::root().join(BESIDE))
        .unwrap()
        .replace("[run]\n", "[run]\ncolocate = [[\"producer1\", \"nsqd9\"]]\n");
    let Err(error) = scenarios::Loaded::parse("bad.toml", &text) else {
        panic!("nsqd9 is no process");
    };
    let error = error.to_string();
    assert!(
        error.contains("unknown process `nsqd9`; processes are: lookupd1, nsqd1, nsqd2"),
        "{error}"
    );
}
