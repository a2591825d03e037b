//! The designs jetsam tests, and the registry the CLI and tests look them up in.
//!
//! **Boundary:** a design's logic takes time, randomness and I/O from `sim::Env` and turmoil;
//! nothing here reads the wall clock or an unseeded RNG.

pub mod db;
pub mod go_channel;
pub mod nsq;
pub mod source;

use sim::scenario::{Scenario, ScenarioError};
use sim::Design;
use std::fmt::Display;

/// One design-config key, for `jetsam list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigKey {
    pub name: &'static str,
    pub default: String,
    pub doc: &'static str,
}

impl ConfigKey {
    pub fn new(name: &'static str, default: impl Display, doc: &'static str) -> ConfigKey {
        ConfigKey {
            name,
            default: default.to_string(),
            doc,
        }
    }
}

/// A design jetsam knows how to build.
pub struct DesignInfo {
    pub name: &'static str,
    pub summary: &'static str,
    /// What the design promises, in the terms of the reference's designs table.
    pub promise: &'static str,
    pub hosts: &'static [&'static str],
    pub config_keys: fn() -> Vec<ConfigKey>,
    pub build: fn(&Scenario) -> Result<Box<dyn Design>, ScenarioError>,
}

pub fn designs() -> Vec<DesignInfo> {
    vec![
        DesignInfo {
            name: "go-channel",
            summary: "producers and consumers in one process joined by a bounded Go channel",
            promise: "FIFO hand-off, exactly once, while the process lives (reference table row 23)",
            hosts: &[go_channel::HOST],
            config_keys: go_channel::config_keys,
            build: go_channel::build,
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
            config_keys: nsq::design::config_keys,
            build: nsq::design::build,
        },
    ]
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
