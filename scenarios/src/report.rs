//! What a run prints: a human summary, or JSON (`--json`).

use crate::Loaded;
use serde::Serialize;
use sim::explain::{Explained, Explainer};
use sim::world::{RunOutcome, RunStats};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Anomalies listed per property in reports; the count is always complete.
pub const ANOMALIES_LISTED_MAX: usize = 20;
/// Anomalies whose explanation the human output prints in full; the rest are counted
/// (`--json` carries every listed anomaly's explanation).
pub const EXPLAINED_IN_FULL_MAX: usize = 3;

#[derive(Serialize)]
pub struct PropertyReport {
    pub property: String,
    /// "holds" or "violated".
    pub verdict: &'static str,
    /// What the scenario expected ("holds" / "violated"), if it asserts this property.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<&'static str>,
    pub safety_anomalies: usize,
    pub liveness_anomalies: usize,
    /// The first [`ANOMALIES_LISTED_MAX`] anomalies, each with its explanation.
    pub anomalies: Vec<Explained>,
}

#[derive(Serialize)]
pub struct RunReport {
    /// [`crate::JSON_FORMAT`].
    pub format: u32,
    pub scenario: String,
    pub path: String,
    pub design: String,
    pub seed: u64,
    pub history_hash: String,
    /// Whether every expectation of the scenario was met.
    pub passed: bool,
    pub unmet: Vec<String>,
    pub drained: bool,
    pub crash: Option<String>,
    pub properties: Vec<PropertyReport>,
    pub counters: BTreeMap<String, u64>,
    pub stats: RunStats,
    pub schedule: Vec<sim::fault::ScheduledFault>,
    pub promise: sim::promise::Promise,
    pub kept: sim::promise::Kept,
    /// Set when the run had faults and none of them overlapped a message in flight: its
    /// verdicts say nothing about faults ([`sim::vacuity`]).
    pub vacuous: Option<String>,
}

impl RunReport {
    pub fn new(loaded: &Loaded, outcome: &RunOutcome) -> RunReport {
        let unmet = loaded.unmet(outcome);
        let explainer = Explainer::new(&outcome.history);
        RunReport {
            format: crate::JSON_FORMAT,
            scenario: loaded.scenario.name.clone(),
            path: loaded.scenario.path.clone(),
            design: loaded.scenario.design.clone(),
            seed: outcome.seed,
            history_hash: outcome.history.hash(),
            passed: unmet.is_empty(),
            unmet,
            drained: outcome.verdicts.drained,
            crash: outcome.verdicts.crash.clone(),
            properties: outcome
                .verdicts
                .properties
                .iter()
                .map(|v| PropertyReport {
                    property: v.property.name(),
                    verdict: if v.holds { "holds" } else { "violated" },
                    expected: loaded
                        .scenario
                        .expect
                        .properties
                        .iter()
                        .find(|(p, _)| *p == v.property)
                        .map(|(_, e)| match e {
                            sim::verdict::Expectation::Holds => "holds",
                            sim::verdict::Expectation::Violated => "violated",
                        }),
                    safety_anomalies: v.safety_count,
                    liveness_anomalies: v.liveness_count,
                    anomalies: v
                        .safety
                        .iter()
                        .chain(&v.liveness)
                        .take(ANOMALIES_LISTED_MAX)
                        .map(|anomaly| Explained {
                            anomaly: anomaly.clone(),
                            explanation: explainer.explain(anomaly),
                        })
                        .collect(),
                })
                .collect(),
            counters: outcome.verdicts.counters.clone(),
            stats: outcome.stats.clone(),
            schedule: outcome.schedule.clone(),
            promise: outcome.promise.clone(),
            kept: outcome.kept.clone(),
            vacuous: sim::vacuity::vacuity(&outcome.history),
        }
    }

    /// The command that replays this run bit for bit.
    pub fn replay_command(&self, extra: &str) -> String {
        format!("jetsam replay {} --seed {}{extra}", self.path, self.seed)
    }

    pub fn human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "seed {}  {}  ({})", self.seed, self.scenario, self.path);
        let _ = writeln!(
            out,
            "design {}  history {} events  hash {}  simulated {} ms{}",
            self.design,
            self.stats.events,
            &self.history_hash[..16],
            self.stats.simulated_ms,
            if self.drained { "" } else { "  (did not drain)" }
        );
        if let Some(crash) = &self.crash {
            let _ = writeln!(out, "CRASH  {crash}");
        }
        let _ = writeln!(out, "  {:<24} {:<9} expected", "property", "verdict");
        let mut listed = std::collections::BTreeSet::new();
        let (mut explained, mut unexplained) = (0usize, 0usize);
        for p in &self.properties {
            let expected = match p.expected {
                None => "-",
                Some(e) if e == p.verdict => "yes",
                Some(_) => "NO (UNMET)",
            };
            let _ = write!(out, "  {:<24} {:<9} {:<4}", p.property, p.verdict, expected);
            if p.verdict != "holds" {
                let _ = write!(
                    out,
                    "  ({} safety, {} liveness anomalies)",
                    p.safety_anomalies, p.liveness_anomalies
                );
            }
            let _ = writeln!(out);
            // Each anomaly kind is listed once, under the first property it breaks.
            let fresh: Vec<_> = p
                .anomalies
                .iter()
                .filter(|a| listed.insert(a.anomaly.kind))
                .collect();
            for kind in fresh {
                let kind = kind.anomaly.kind;
                for listed in p.anomalies.iter().filter(|a| a.anomaly.kind == kind).take(3) {
                    let _ = writeln!(out, "         {}", listed.anomaly);
                    if explained < EXPLAINED_IN_FULL_MAX {
                        explained += 1;
                        out.push_str(&listed.explanation.render("           "));
                    } else {
                        unexplained += 1;
                    }
                }
            }
        }
        if unexplained > 0 {
            let _ = writeln!(
                out,
                "  ({unexplained} more anomalies listed without their explanation: --json carries them all)"
            );
        }
        let _ = writeln!(out, "  promise: {}", self.promise.text);
        let _ = writeln!(out, "  promise {}", kept_line(&self.kept));
        let notable: Vec<String> = self
            .counters
            .iter()
            .filter(|(k, _)| {
                k.starts_with("fault.")
                    || k.starts_with("note.")
                    || k.as_str() == "publish.info"
                    || k.as_str() == "deliver.redelivery"
            })
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !notable.is_empty() {
            let _ = writeln!(out, "  sometimes: {}", notable.join(" "));
        }
        if let Some(vacuous) = &self.vacuous {
            let _ = writeln!(out, "WARNING {vacuous}: the verdicts say nothing about faults");
        }
        if self.passed {
            let _ = writeln!(out, "PASS  every expectation met");
        } else {
            for line in &self.unmet {
                let _ = writeln!(out, "UNMET {line}");
            }
        }
        out
    }
}

/// One line on whether a run kept its promise.
pub fn kept_line(kept: &sim::promise::Kept) -> String {
    use sim::promise::Kept;
    match kept {
        Kept::Held => "held".into(),
        Kept::Outside {
            properties, causes, ..
        } => format!(
            "outside: {} violated in a documented window ({})",
            properties.join(", "),
            causes.join("; ")
        ),
        Kept::Broken { crash: true, .. } => "BROKEN: the model crashed".into(),
        Kept::Broken { properties, .. } => format!(
            "BROKEN: {} violated with no documented cause (a model bug or a finding)",
            properties.join(", ")
        ),
    }
}
