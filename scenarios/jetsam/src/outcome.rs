//! What one seed's run came to, as the user reads it: the scenario's expectations it did not
//! meet, each property's verdict, the checkers' findings, the history.

use sim::checker::Anomaly;
use sim::verdict::Property;
use sim::world::RunOutcome;

/// One seed's run of the scenario with the user's handler.
pub struct SeedRun {
    pub(crate) outcome: RunOutcome,
    pub(crate) unmet: Vec<String>,
}

impl SeedRun {
    pub fn seed(&self) -> u64 {
        self.outcome.seed
    }

    /// Every expectation of the scenario was met.
    pub fn passed(&self) -> bool {
        self.unmet.is_empty()
    }

    /// One line per expectation not met (`exactly-once: expected holds, ...`).
    pub fn unmet(&self) -> &[String] {
        &self.unmet
    }

    /// Whether `property` held in this run (`"exactly-once"`, `"no-loss"`, ...); `None` for
    /// a name that is no property.
    pub fn holds(&self, property: &str) -> Option<bool> {
        let property = Property::parse(property)?;
        Some(self.outcome.verdicts.get(property).holds)
    }

    /// Every anomaly the checkers found (`duplicate-effect m2: effect applied 2 times ...`).
    pub fn anomalies(&self) -> Vec<&Anomaly> {
        self.outcome.findings.iter().collect()
    }

    /// The anomalies of one kind, by name (`"duplicate-effect"`).
    pub fn anomalies_named(&self, kind: &str) -> Vec<&Anomaly> {
        self.outcome
            .findings
            .iter()
            .filter(|a| a.kind.name() == kind)
            .collect()
    }

    /// How often the run recorded a counter (`fault.kill`, `deliver.redelivery`,
    /// `note.user_handler.ack`, ...).
    pub fn count(&self, counter: &str) -> u64 {
        self.outcome.verdicts.counters.get(counter).copied().unwrap_or(0)
    }

    /// The run crashed (a model's panic): the message and where.
    pub fn crash(&self) -> Option<&str> {
        self.outcome.verdicts.crash.as_deref()
    }

    /// The run's history as JSON lines, one event a line: the same bytes for the same seed.
    pub fn history_json_lines(&self) -> String {
        let mut out = Vec::new();
        self.outcome
            .history
            .write_jsonl(&mut out)
            .expect("writing to memory does not fail");
        String::from_utf8(out).expect("the history is JSON, so UTF-8")
    }

    /// The verdicts in words, as `jetsam run` prints them.
    pub fn summary(&self) -> String {
        let mut lines = Vec::new();
        for verdict in &self.outcome.verdicts.properties {
            let mut line = format!(
                "{}: {}",
                verdict.property.name(),
                if verdict.holds { "holds" } else { "violated" }
            );
            if let Some(first) = verdict.safety.first().or(verdict.liveness.first()) {
                line.push_str(&format!(" ({first})"));
            }
            lines.push(line);
        }
        if let Some(crash) = self.crash() {
            lines.push(format!("crash: {crash}"));
        }
        lines.join("\n")
    }
}
