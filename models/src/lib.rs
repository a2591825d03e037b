//! The designs jetsam tests, and the registry the CLI and tests look them up in.
//!
//! **Boundary:** a design's logic takes time, randomness and I/O from `sim::Env` and turmoil;
//! nothing here reads the wall clock or an unseeded RNG.

pub mod db;
pub mod go_channel;
pub mod kafka;
pub mod mqtt;
pub mod nsq;
pub mod outbox;
pub mod server;
pub mod signals;
pub mod source;

use sim::config::ConfigSchema;
use sim::scenario::{Scenario, ScenarioError};
use sim::Design;

/// A design jetsam knows how to build.
pub struct DesignInfo {
    pub name: &'static str,
    pub summary: &'static str,
    /// What the design promises, in the terms of the reference's designs table.
    pub promise: &'static str,
    pub hosts: &'static [&'static str],
    /// The `[config]` type: its keys, defaults, docs and bounds (`jetsam list`).
    pub config: ConfigSchema,
    pub build: fn(&Scenario) -> Result<Box<dyn Design>, ScenarioError>,
    /// The roles that run as real servers (`jetsam serve DESIGN ROLE`).
    pub servers: &'static [server::ServerInfo],
}

pub fn designs() -> Vec<DesignInfo> {
    vec![
        DesignInfo {
            name: "go-channel",
            summary: "producers and consumers in one process joined by a bounded Go channel",
            promise: "FIFO hand-off, exactly once, while the process lives (reference table row 23)",
            hosts: &[go_channel::HOST],
            config: ConfigSchema::of::<go_channel::Config>(),
            build: go_channel::build,
            servers: &[],
        },
        DesignInfo {
            name: "nsq",
            summary:
                "nsqd hosts, producers publishing to their own nsqd, go-nsq-like consumers on every nsqd",
            promise: "at-least-once assuming nsqd does not fail; no ordering (reference table rows 1-4)",
            hosts: &[
                "lookupd1.. (lookupds > 0)",
                "nsqd1..",
                "producer1..",
                "consumer1..",
                "db (sink = db)",
            ],
            config: ConfigSchema::of::<nsq::design::Config>(),
            build: nsq::design::build,
            servers: nsq::serve::SERVERS,
        },
        DesignInfo {
            name: "kafka",
            summary: "a controller and brokers replicating a topic's partitions (ISR, high watermark, \
                      leader epochs), Java-like producers with idempotence, consumers reading assigned partitions",
            promise: "acknowledged writes survive any single broker failure with acks=all and \
                      min.insync.replicas >= 2 (reference table rows 5-10)",
            hosts: &["controller", "broker1..", "producer1..", "consumer1..", "db (sink = db)"],
            config: ConfigSchema::of::<kafka::design::Config>(),
            build: kafka::design::build,
            servers: kafka::serve::SERVERS,
        },
        DesignInfo {
            name: "mqtt",
            summary: "one mosquitto-like broker, paho.mqtt.golang-like publishers and subscribers on one topic",
            promise: "QoS 0 at most once; QoS 1 at least once while both ends keep their sessions; \
                      QoS 2 exactly once per hop with clients that follow the spec (reference §3.4)",
            hosts: &["broker", "publisher1..", "subscriber1..", "db (sink = db)"],
            config: ConfigSchema::of::<mqtt::design::Config>(),
            build: mqtt::design::build,
            servers: mqtt::serve::SERVERS,
        },
        DesignInfo {
            name: "signals",
            summary: "a sender process sigqueue()ing one signal per message (its id in si_value) to a \
                      receiver whose handler takes time: Linux's per-process pending signals as the queue",
            promise: "standard signals: no count, they coalesce (one pending bit per signal); real-time \
                      signals: each accepted sigqueue delivered once, FIFO per signal, EAGAIN past \
                      RLIMIT_SIGPENDING (signal(7), sigqueue(3))",
            hosts: &[signals::SENDER, signals::RECEIVER],
            config: ConfigSchema::of::<signals::Config>(),
            build: signals::build,
            servers: &[],
        },
        DesignInfo {
            name: "outbox",
            summary: "writers putting a business row and an outbox row in one transaction on the \
                      database; relays polling the outbox, publishing to nsqd, Kafka (acks=all) or \
                      MQTT (QoS 1), and marking rows sent once the broker acknowledged them",
            promise: "at-least-once publishing of committed rows, duplicates allowed; a cursor on \
                      the auto-increment id breaks it (reference §5.1, table row 25)",
            hosts: &[
                "db",
                "nsqd1 (broker = nsq)",
                "controller, broker1..3 (kafka)",
                "broker (mqtt)",
                "writer1..",
                "relay1..",
                "consumer1.. (nsq, kafka)",
                "subscriber1.. (mqtt)",
            ],
            config: ConfigSchema::of::<outbox::Config>(),
            build: outbox::build,
            servers: &[],
        },
    ]
}

/// [`build`], with the user's handler plugged in (issue 13): the nsq, kafka and mqtt
/// designs run it for `[config.db] strategy = "user"`; any other design, or a scenario that
/// does not name the handler, is a one-line error.
pub fn build_with(
    scenario: &Scenario,
    handler: Option<db::user::HandlerFactory>,
) -> Result<Box<dyn Design>, ScenarioError> {
    let Some(handler) = handler else {
        return build(scenario);
    };
    match scenario.design.as_str() {
        "nsq" => nsq::design::build_with(scenario, Some(handler)),
        "kafka" => kafka::design::build_with(scenario, Some(handler)),
        "mqtt" => mqtt::design::build_with(scenario, Some(handler)),
        other => Err(scenario.design_error(format!(
            "a handler ({}) is plugged in, but design `{other}` does not run user handlers (nsq, kafka and mqtt do)",
            handler.name(),
        ))),
    }
}

/// Builds the scenario's design; an unknown name is an error on the `design` line.
pub fn build(scenario: &Scenario) -> Result<Box<dyn Design>, ScenarioError> {
    let designs = designs();
    match designs.iter().find(|d| d.name == scenario.design) {
        Some(info) => (info.build)(scenario),
        None => Err(scenario.design_error(format!(
            "unknown design `{}`; designs are: {}",
            scenario.design,
            designs.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
        ))),
    }
}
