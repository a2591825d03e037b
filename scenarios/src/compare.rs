//! `jetsam compare`: several scenarios (design variants) over the same seed range, in
//! parallel, as a guarantee matrix: for each variant and property, "held in N/N" or
//! "violated in k/N" with the smallest seed that broke it and the anomaly kinds seen.

use crate::Loaded;
use serde::Serialize;
use sim::verdict::Property;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Cell {
    pub seeds: u64,
    pub violated: u64,
    pub smallest_seed: Option<u64>,
    pub anomaly_kinds: BTreeSet<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    pub scenario: String,
    pub path: String,
    pub design: String,
    /// What the design promises (the reference's designs-by-guarantees terms).
    pub promise: String,
    pub cells: BTreeMap<String, Cell>,
    /// Seeds whose run crashed (a model panic) or did not drain.
    pub crashed: Vec<u64>,
    pub undrained: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Matrix {
    pub seeds: (u64, u64),
    pub properties: Vec<String>,
    pub rows: Vec<Row>,
}

/// One run's per-property result: (violated, anomaly kinds).
type RunResult = (u64, BTreeMap<String, (bool, BTreeSet<String>)>, bool, bool);

/// Runs every scenario on every seed of `seeds` with `jobs` worker threads (outside any
/// simulation: each run owns its simulation). The matrix does not depend on `jobs`.
pub fn compare(
    scenarios: &[Loaded],
    seeds: Range<u64>,
    jobs: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Matrix {
    let work: Vec<(usize, u64)> = (0..scenarios.len())
        .flat_map(|i| seeds.clone().map(move |s| (i, s)))
        .collect();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, RunResult)>> = Mutex::new(Vec::with_capacity(work.len()));
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let at = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(index, seed)) = work.get(at) else {
                    return;
                };
                let outcome = scenarios[index].run(seed);
                let per_property = outcome
                    .verdicts
                    .properties
                    .iter()
                    .map(|v| {
                        let kinds = v
                            .safety
                            .iter()
                            .chain(&v.liveness)
                            .map(|a| a.kind.name().to_string())
                            .collect();
                        (v.property.name(), (!v.holds, kinds))
                    })
                    .collect();
                let result = (
                    seed,
                    per_property,
                    outcome.verdicts.crash.is_some(),
                    !outcome.verdicts.drained,
                );
                results
                    .lock()
                    .expect("no worker panics holding it")
                    .push((index, result));
                progress(done.fetch_add(1, Ordering::SeqCst) + 1, work.len());
            });
        }
    });
    let mut results = results.into_inner().expect("workers joined");
    results.sort_by_key(|(index, (seed, ..))| (*index, *seed));
    let designs = models::designs();
    let mut rows: Vec<Row> = scenarios
        .iter()
        .map(|loaded| Row {
            scenario: loaded.scenario.name.clone(),
            path: loaded.scenario.path.clone(),
            design: loaded.scenario.design.clone(),
            promise: designs
                .iter()
                .find(|d| d.name == loaded.scenario.design)
                .map_or(String::new(), |d| d.promise.to_string()),
            cells: BTreeMap::new(),
            crashed: Vec::new(),
            undrained: Vec::new(),
        })
        .collect();
    for (index, (seed, per_property, crashed, undrained)) in results {
        let row = &mut rows[index];
        if crashed {
            row.crashed.push(seed);
        }
        if undrained {
            row.undrained.push(seed);
        }
        for (property, (violated, kinds)) in per_property {
            let cell = row.cells.entry(property).or_default();
            cell.seeds += 1;
            if violated {
                cell.violated += 1;
                cell.smallest_seed = Some(cell.smallest_seed.map_or(seed, |s| s.min(seed)));
                cell.anomaly_kinds.extend(kinds);
            }
        }
    }
    Matrix {
        seeds: (seeds.start, seeds.end),
        properties: Property::ALL.iter().map(|p| p.name()).collect(),
        rows,
    }
}

impl Cell {
    pub fn text(&self) -> String {
        match self.smallest_seed {
            None => format!("held {}/{}", self.seeds, self.seeds),
            Some(seed) => format!(
                "**violated {}/{}** (seed {seed}: {})",
                self.violated,
                self.seeds,
                self.anomaly_kinds.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

impl Matrix {
    /// The matrix as a Markdown table: a row per variant, a column per property.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "# Guarantee matrix, seeds {}..{}\n\n| variant | design | promise | {} |\n|---|---|---|{}\n",
            self.seeds.0,
            self.seeds.1,
            self.properties.join(" | "),
            "---|".repeat(self.properties.len())
        );
        for row in &self.rows {
            let cells: Vec<String> = self
                .properties
                .iter()
                .map(|p| row.cells.get(p).map_or("-".to_string(), Cell::text))
                .collect();
            out.push_str(&format!(
                "| {} (`{}`) | {} | {} | {} |\n",
                row.scenario,
                row.path,
                row.design,
                row.promise,
                cells.join(" | ")
            ));
        }
        let notes: Vec<String> = self
            .rows
            .iter()
            .filter(|r| !r.crashed.is_empty() || !r.undrained.is_empty())
            .map(|r| {
                format!(
                    "- `{}`: crashed on seeds {:?}, did not drain on seeds {:?}",
                    r.path, r.crashed, r.undrained
                )
            })
            .collect();
        if !notes.is_empty() {
            out.push('\n');
            out.push_str(&notes.join("\n"));
            out.push('\n');
        }
        out
    }
}
