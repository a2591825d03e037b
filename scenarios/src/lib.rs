//! Loading and running scenario files, reporting verdicts, replay timelines and seed
//! exploration: everything the `jetsam` binary does, as a library the tests call too.

/// The version of every JSON document the CLI prints or writes (`run --json`, `explore
/// --json`, `shrink --json`, `compare --json`), in its `format` field: bumped when a field
/// changes meaning or goes away, so a consumer can refuse what it does not understand.
pub const JSON_FORMAT: u32 = 1;

pub mod compare;
pub mod explore;
pub mod html;
pub mod listing;
pub mod published;
pub mod report;
pub mod shrink;
pub mod timeline;

use models::db::user::HandlerFactory;
use sim::scenario::{Expect, Scenario, ScenarioError};
use sim::verdict::{Expectation, Property};
use sim::world::{run, schedule_for, RunOutcome};
use std::path::{Path, PathBuf};

/// Folders a directory walk skips: the `scenarios` crate's own code and build output.
const NOT_SCENARIO_DIRS: [&str; 3] = ["src", "tests", "target"];

/// Every scenario file under `path` (a file, or a directory searched recursively), sorted.
/// `Cargo.toml`, hidden folders, `src/`, `tests/` and `target/` are skipped.
pub fn scenario_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                if !NOT_SCENARIO_DIRS.contains(&name.as_str()) {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "toml") && name != "Cargo.toml" {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Parses `property=holds|violated`, as given to `--expect`.
pub fn parse_expect_override(text: &str) -> Result<(Property, Expectation), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("--expect {text}: use PROPERTY=holds or PROPERTY=violated"))?;
    let property = Property::parse(name.trim()).ok_or_else(|| {
        format!(
            "--expect {text}: unknown property `{name}`; properties are: {}",
            Property::names().join(", ")
        )
    })?;
    let expectation = Expectation::parse(value.trim())
        .ok_or_else(|| format!("--expect {text}: `{value}` must be holds or violated"))?;
    Ok((property, expectation))
}

/// A scenario ready to run: parsed, its design known and its faults checked against it.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub scenario: Scenario,
    /// The user's handler, for a scenario whose `[config.db] strategy = "user"` (issue 13;
    /// the `jetsam` library plugs it in). Every run makes its own instances.
    pub handler: Option<HandlerFactory>,
}

impl Loaded {
    pub fn load(path: &str) -> Result<Loaded, ScenarioError> {
        Loaded::from_scenario(Scenario::load(path)?)
    }

    pub fn parse(path: &str, text: &str) -> Result<Loaded, ScenarioError> {
        Loaded::from_scenario(Scenario::parse(path, text)?)
    }

    fn from_scenario(scenario: Scenario) -> Result<Loaded, ScenarioError> {
        Loaded::with_handler(scenario, None)
    }

    /// A scenario with the user's handler plugged in (or none), checked as [`Loaded::load`]
    /// checks: a scenario that names a handler and has none is an error, and so is the
    /// reverse.
    pub fn with_handler(
        scenario: Scenario,
        handler: Option<HandlerFactory>,
    ) -> Result<Loaded, ScenarioError> {
        // Build once to check the design name, its config and the schedule's hosts.
        let design = models::build_with(&scenario, handler.clone())?;
        scenario.schedule(&design.topology())?;
        Ok(Loaded { scenario, handler })
    }

    /// Builds the design for `scenario` (this one, or a variant of it such as a shrink's
    /// candidate), with this scenario's handler.
    pub fn design_for(&self, scenario: &Scenario) -> Result<Box<dyn sim::Design>, ScenarioError> {
        models::build_with(scenario, self.handler.clone())
    }

    /// Adds or replaces expectations (from `--expect`).
    pub fn override_expectations(&mut self, overrides: &[(Property, Expectation)]) {
        let expect: &mut Expect = &mut self.scenario.expect;
        for (property, expectation) in overrides {
            expect.properties.retain(|(p, _)| p != property);
            expect.properties.push((*property, *expectation));
        }
    }

    /// Runs one seed. The design is built fresh for every run: no state carries over.
    pub fn run(&self, seed: u64) -> RunOutcome {
        let design = self.design_for(&self.scenario).expect("checked when loaded");
        let schedule = schedule_for(&self.scenario, &design.topology(), seed).expect("checked when loaded");
        run(&self.scenario, design.as_ref(), schedule, seed)
    }

    /// The lines of every expectation this outcome does not meet.
    pub fn unmet(&self, outcome: &RunOutcome) -> Vec<String> {
        outcome.verdicts.unmet(&self.scenario.expect)
    }
}
