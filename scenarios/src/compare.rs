//! `jetsam compare`: several scenarios (design variants) over the same seed range, in
//! parallel, as a guarantee matrix: for each variant and property, "held in N/N" or
//! "violated in k/N" with the smallest seed that broke it and the anomaly kinds seen, and
//! the variant's promise: held, outside (a documented window) or broken.
//!
//! A compare is a list of [`RunRecord`]s, one per (variant, seed); the matrix is a pure
//! function of them. `--shard I/N` runs every N-th record and writes them as a [`Shard`];
//! `jetsam merge` checks that the shards belong together and builds the same matrix.

use crate::Loaded;
use serde::{Deserialize, Serialize};
use sim::promise::Kept;
use sim::verdict::Property;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The shard file format's version; `merge` refuses others.
pub const SHARD_FORMAT: u32 = 2;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub seeds: u64,
    pub violated: u64,
    pub smallest_seed: Option<u64>,
    pub anomaly_kinds: BTreeSet<String>,
}

/// The promise column: how many seeds held, fell outside, or broke the variant's promise.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromiseCell {
    pub held: u64,
    pub outside: u64,
    pub broken: u64,
    pub smallest_broken_seed: Option<u64>,
    /// Properties broken with no documented cause.
    pub broken_properties: BTreeSet<String>,
    /// The documented windows seen (the excuse kinds: `kill nsqd`, `consumer.gave_up`, ...).
    pub windows: BTreeSet<String>,
}

/// One variant: a scenario file, its design and what the variant promises.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    pub scenario: String,
    pub path: String,
    pub design: String,
    pub promise: String,
    /// The promised properties.
    pub promised: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub variant: Variant,
    pub cells: BTreeMap<String, Cell>,
    pub kept: PromiseCell,
    /// Seeds whose run crashed (a model panic) or did not drain.
    pub crashed: Vec<u64>,
    pub undrained: Vec<u64>,
    /// Seeds whose faults touched no message in flight ([`sim::vacuity`]): their verdicts
    /// say nothing about faults.
    pub vacuous: Vec<u64>,
    /// Per fault kind (`kill`, `partition`, ...): the runs it was injected in, and what
    /// those runs broke ([`FaultCell`]).
    pub by_fault: BTreeMap<String, FaultCell>,
}

/// The runs of one variant that injected one kind of fault, and the anomalies they showed.
/// A run with several fault kinds counts under each: this says which kinds go with which
/// anomalies, not which fault caused each one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCell {
    pub runs: u64,
    /// Of those runs, how many broke the promise or fell outside it.
    pub broken: u64,
    pub outside: u64,
    /// Per anomaly kind, the number of those runs that showed it.
    pub anomalies: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matrix {
    /// [`crate::JSON_FORMAT`].
    pub format: u32,
    pub seeds: (u64, u64),
    pub properties: Vec<String>,
    pub rows: Vec<Row>,
}

/// What one run contributes to the matrix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Index into the compare's variants.
    pub variant: usize,
    pub seed: u64,
    /// Per property: (violated, anomaly kinds).
    pub properties: BTreeMap<String, (bool, BTreeSet<String>)>,
    pub crashed: bool,
    pub undrained: bool,
    pub kept: Kept,
    /// Whether the run's faults touched no message in flight.
    pub vacuous: bool,
    /// The kinds of fault the run injected (recoveries such as `heal` left out).
    pub fault_kinds: BTreeSet<String>,
}

/// One shard's output: enough to check that shards belong together, and its records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub format: u32,
    pub jetsam: String,
    /// `(index, count)`, index from 1.
    pub shard: (usize, usize),
    pub seeds: (u64, u64),
    pub variants: Vec<Variant>,
    pub records: Vec<RunRecord>,
}

/// `I/N` with 1 <= I <= N.
pub fn parse_shard(text: &str) -> Result<(usize, usize), String> {
    let (i, n) = text
        .split_once('/')
        .ok_or_else(|| format!("--shard {text}: expected I/N, e.g. 2/4"))?;
    let (i, n) = (i.trim().parse::<usize>(), n.trim().parse::<usize>());
    match (i, n) {
        (Ok(i), Ok(n)) if n >= 1 && (1..=n).contains(&i) => Ok((i, n)),
        _ => Err(format!("--shard {text}: expected I/N with 1 <= I <= N")),
    }
}

pub fn variants(scenarios: &[Loaded]) -> Vec<Variant> {
    scenarios
        .iter()
        .map(|loaded| {
            let promise = loaded
                .design_for(&loaded.scenario)
                .expect("checked when loaded")
                .promise();
            Variant {
                scenario: loaded.scenario.name.clone(),
                path: loaded.scenario.path.clone(),
                design: loaded.scenario.design.clone(),
                promise: promise.text,
                promised: promise.properties.iter().map(|p| p.name()).collect(),
            }
        })
        .collect()
}

/// The (variant, seed) pairs of a compare, in a fixed order; shard `(i, n)` takes every
/// n-th pair starting at the (i-1)-th, so shards of any count cover every pair once.
fn work(variants: usize, seeds: &Range<u64>, shard: (usize, usize)) -> Vec<(usize, u64)> {
    (0..variants)
        .flat_map(|v| seeds.clone().map(move |s| (v, s)))
        .enumerate()
        .filter(|(at, _)| at % shard.1 == shard.0 - 1)
        .map(|(_, pair)| pair)
        .collect()
}

/// Runs shard `shard` of the compare with `jobs` worker threads (outside any simulation:
/// each run owns its simulation). The records do not depend on `jobs`.
pub fn run_records(
    scenarios: &[Loaded],
    seeds: Range<u64>,
    shard: (usize, usize),
    jobs: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Vec<RunRecord> {
    let work = work(scenarios.len(), &seeds, shard);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<RunRecord>> = Mutex::new(Vec::with_capacity(work.len()));
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let at = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(variant, seed)) = work.get(at) else {
                    return;
                };
                let outcome = scenarios[variant].run(seed);
                let properties = outcome
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
                let record = RunRecord {
                    variant,
                    seed,
                    properties,
                    crashed: outcome.verdicts.crash.is_some(),
                    undrained: !outcome.verdicts.drained,
                    kept: outcome.kept,
                    vacuous: sim::vacuity::vacuity(&outcome.history).is_some(),
                    fault_kinds: fault_kinds(&outcome.schedule),
                };
                results.lock().expect("no worker panics holding it").push(record);
                progress(done.fetch_add(1, Ordering::SeqCst) + 1, work.len());
            });
        }
    });
    let mut records = results.into_inner().expect("workers joined");
    records.sort_by_key(|r| (r.variant, r.seed));
    records
}

/// The kinds of fault a schedule injects; recoveries (`heal`, `resume`, `restart`) are the
/// end of a fault, not one.
fn fault_kinds(schedule: &[sim::fault::ScheduledFault]) -> BTreeSet<String> {
    schedule
        .iter()
        .map(|f| f.action.name())
        .filter(|name| !matches!(*name, "heal" | "resume" | "restart"))
        .map(str::to_string)
        .collect()
}

/// Runs the whole compare and builds its matrix.
pub fn compare(
    scenarios: &[Loaded],
    seeds: Range<u64>,
    jobs: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Matrix {
    let records = run_records(scenarios, seeds.clone(), (1, 1), jobs, progress);
    Matrix::build(variants(scenarios), (seeds.start, seeds.end), records)
}

impl Matrix {
    /// The matrix of `records`, whatever order they come in.
    pub fn build(variants: Vec<Variant>, seeds: (u64, u64), mut records: Vec<RunRecord>) -> Matrix {
        records.sort_by_key(|r| (r.variant, r.seed));
        let mut rows: Vec<Row> = variants
            .into_iter()
            .map(|variant| Row {
                variant,
                cells: BTreeMap::new(),
                kept: PromiseCell::default(),
                crashed: Vec::new(),
                undrained: Vec::new(),
                vacuous: Vec::new(),
                by_fault: BTreeMap::new(),
            })
            .collect();
        for record in records {
            let row = &mut rows[record.variant];
            let seed = record.seed;
            if record.crashed {
                row.crashed.push(seed);
            }
            if record.undrained {
                row.undrained.push(seed);
            }
            if record.vacuous {
                row.vacuous.push(seed);
            }
            row.add_fault_kinds(&record);
            for (property, (violated, kinds)) in record.properties {
                let cell = row.cells.entry(property).or_default();
                cell.seeds += 1;
                if violated {
                    cell.violated += 1;
                    cell.smallest_seed = Some(cell.smallest_seed.map_or(seed, |s| s.min(seed)));
                    cell.anomaly_kinds.extend(kinds);
                }
            }
            let kept = &mut row.kept;
            match record.kept {
                Kept::Held => kept.held += 1,
                Kept::Outside { windows, .. } => {
                    kept.outside += 1;
                    kept.windows.extend(windows);
                }
                Kept::Broken { properties, crash } => {
                    kept.broken += 1;
                    kept.smallest_broken_seed = Some(kept.smallest_broken_seed.map_or(seed, |s| s.min(seed)));
                    kept.broken_properties.extend(properties);
                    if crash {
                        kept.broken_properties.insert("crash".into());
                    }
                }
            }
        }
        Matrix {
            format: crate::JSON_FORMAT,
            seeds,
            properties: Property::ALL.iter().map(|p| p.name()).collect(),
            rows,
        }
    }

    /// Combines shard outputs into the matrix of the whole compare. Every shard must come
    /// from the same variants, seeds, shard count and format, and each index exactly once.
    pub fn merge(shards: &[(String, Shard)]) -> Result<Matrix, String> {
        let Some((first_name, first)) = shards.first() else {
            return Err("merge: no shard files given".into());
        };
        let count = first.shard.1;
        let mut seen = vec![false; count];
        let mut records = Vec::new();
        for (name, shard) in shards {
            if shard.format != SHARD_FORMAT {
                return Err(format!(
                    "{name}: shard format {} (this jetsam reads {SHARD_FORMAT})",
                    shard.format
                ));
            }
            if shard.shard.1 != count {
                return Err(format!(
                    "{name}: shard {}/{} does not belong with {first_name}'s {}/{count}",
                    shard.shard.0, shard.shard.1, first.shard.0
                ));
            }
            if shard.seeds != first.seeds || shard.variants != first.variants {
                return Err(format!(
                    "{name}: a different compare from {first_name} (seeds or scenarios differ)"
                ));
            }
            let index = shard.shard.0;
            if index == 0 || index > count {
                return Err(format!("{name}: shard index {index} outside 1..={count}"));
            }
            if std::mem::replace(&mut seen[index - 1], true) {
                return Err(format!("{name}: shard {index}/{count} given twice"));
            }
            let expected = work(first.variants.len(), &(first.seeds.0..first.seeds.1), shard.shard);
            let got: Vec<(usize, u64)> = shard.records.iter().map(|r| (r.variant, r.seed)).collect();
            if got != expected {
                return Err(format!(
                    "{name}: shard {index}/{count} holds {} of its {} runs (truncated or edited)",
                    got.len(),
                    expected.len()
                ));
            }
            records.extend(shard.records.iter().cloned());
        }
        if let Some(missing) = seen.iter().position(|s| !s) {
            return Err(format!("merge: shard {}/{count} is missing", missing + 1));
        }
        Ok(Matrix::build(first.variants.clone(), first.seeds, records))
    }
}

impl Row {
    /// Counts `record` under each fault kind it injected.
    fn add_fault_kinds(&mut self, record: &RunRecord) {
        let mut kinds: BTreeSet<&String> = BTreeSet::new();
        for (violated, anomaly_kinds) in record.properties.values() {
            if *violated {
                kinds.extend(anomaly_kinds);
            }
        }
        for fault in &record.fault_kinds {
            let cell = self.by_fault.entry(fault.clone()).or_default();
            cell.runs += 1;
            match record.kept {
                Kept::Held => {}
                Kept::Outside { .. } => cell.outside += 1,
                Kept::Broken { .. } => cell.broken += 1,
            }
            for kind in &kinds {
                *cell.anomalies.entry((*kind).clone()).or_default() += 1;
            }
        }
    }
}

impl FaultCell {
    /// `12 runs; promise outside 3, BROKEN 1; lost in 4, duplicate-effect in 2`.
    pub fn text(&self) -> String {
        let mut promise = Vec::new();
        if self.outside > 0 {
            promise.push(format!("outside {}", self.outside));
        }
        if self.broken > 0 {
            promise.push(format!("**BROKEN {}**", self.broken));
        }
        let promise = match promise.is_empty() {
            true => "promise held".to_string(),
            false => format!("promise {}", promise.join(", ")),
        };
        let anomalies: Vec<String> = self
            .anomalies
            .iter()
            .map(|(kind, runs)| format!("{kind} in {runs}"))
            .collect();
        let anomalies = match anomalies.is_empty() {
            true => "no anomaly".to_string(),
            false => anomalies.join(", "),
        };
        format!("{} runs; {promise}; {anomalies}", self.runs)
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

impl PromiseCell {
    pub fn seeds(&self) -> u64 {
        self.held + self.outside + self.broken
    }

    pub fn text(&self) -> String {
        let n = self.seeds();
        let mut parts = vec![format!("held {}/{n}", self.held)];
        if self.outside > 0 {
            parts.push(format!(
                "outside {}/{n} ({})",
                self.outside,
                self.windows.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if let Some(seed) = self.smallest_broken_seed {
            parts.push(format!(
                "**BROKEN {}/{n}** (seed {seed}: {})",
                self.broken,
                self.broken_properties
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        parts.join("; ")
    }
}

impl Matrix {
    /// Why this matrix should fail a CI job, one line per variant: a BROKEN promise or a
    /// crashed run always; with `any_violation`, any property violated in any run.
    pub fn failures(&self, any_violation: bool) -> Vec<String> {
        let mut failures = Vec::new();
        for row in &self.rows {
            let path = &row.variant.path;
            if row.kept.broken > 0 {
                failures.push(format!(
                    "{path}: promise BROKEN in {}/{} runs (smallest seed {}: {})",
                    row.kept.broken,
                    row.kept.held + row.kept.outside + row.kept.broken,
                    row.kept
                        .smallest_broken_seed
                        .map_or("?".into(), |s| s.to_string()),
                    row.kept
                        .broken_properties
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if let Some(seed) = row.crashed.first() {
                failures.push(format!(
                    "{path}: {} run(s) crashed (seed {seed})",
                    row.crashed.len()
                ));
            }
            let violated: Vec<String> = row
                .cells
                .iter()
                .filter(|(_, cell)| cell.violated > 0)
                .map(|(property, cell)| {
                    format!("{property} (seed {})", cell.smallest_seed.unwrap_or_default())
                })
                .collect();
            if any_violation && !violated.is_empty() {
                failures.push(format!("{path}: violated {}", violated.join(", ")));
            }
        }
        failures
    }

    /// The matrix as a Markdown table: a row per variant, a column per property.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "# Guarantee matrix, seeds {}..{}\n\n\
             Columns are explained in [reports/README.md](README.md).\n\n\
             | variant | design | promise | kept | {} |\n|---|---|---|---|{}\n",
            self.seeds.0,
            self.seeds.1,
            self.properties.join(" | "),
            "---|".repeat(self.properties.len())
        );
        for row in &self.rows {
            let cells: Vec<String> = self
                .properties
                .iter()
                .map(|p| {
                    let text = row.cells.get(p).map_or("-".to_string(), Cell::text);
                    if row.variant.promised.contains(p) {
                        format!("{text} (promised)")
                    } else {
                        text
                    }
                })
                .collect();
            out.push_str(&format!(
                "| {} (`{}`) | {} | {} | {} | {} |\n",
                row.variant.scenario,
                row.variant.path,
                row.variant.design,
                row.variant.promise,
                row.kept.text(),
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
                    r.variant.path, r.crashed, r.undrained
                )
            })
            .collect();
        if !notes.is_empty() {
            out.push('\n');
            out.push_str(&notes.join("\n"));
            out.push('\n');
        }
        out.push_str(&self.vacuity_markdown());
        out.push_str(&self.by_fault_markdown());
        out
    }

    /// A line per variant with vacuous seeds: their "held" says nothing about faults.
    fn vacuity_markdown(&self) -> String {
        let lines: Vec<String> = self
            .rows
            .iter()
            .filter(|r| !r.vacuous.is_empty())
            .map(|r| {
                format!(
                    "- WARNING `{}`: on seeds {:?} no fault touched a message in flight; \
                     those runs test nothing about faults",
                    r.variant.path, r.vacuous
                )
            })
            .collect();
        match lines.is_empty() {
            true => String::new(),
            false => format!("\n{}\n", lines.join("\n")),
        }
    }

    /// Which fault kinds went with which anomalies, per variant (only variants with faults).
    fn by_fault_markdown(&self) -> String {
        let mut out = String::new();
        for row in self.rows.iter().filter(|r| !r.by_fault.is_empty()) {
            if out.is_empty() {
                out.push_str(
                    "\n## By fault kind\n\n\
                     The runs that injected each kind of fault, and what they showed. A run \
                     with several kinds counts under each.\n\n\
                     | variant | fault | runs, promise, anomalies (runs) |\n|---|---|---|\n",
                );
            }
            for (fault, cell) in &row.by_fault {
                out.push_str(&format!(
                    "| `{}` | {fault} | {} |\n",
                    row.variant.path,
                    cell.text()
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_of_any_count_cover_every_run_once() {
        let seeds = 3..10;
        let all = work(4, &seeds, (1, 1));
        assert_eq!(all.len(), 28);
        for n in 1..=6 {
            let mut union: Vec<(usize, u64)> = (1..=n).flat_map(|i| work(4, &seeds, (i, n))).collect();
            union.sort();
            assert_eq!(union, all, "{n} shards");
        }
    }

    #[test]
    fn shard_specs_are_checked() {
        assert_eq!(parse_shard("2/4"), Ok((2, 4)));
        for bad in ["0/4", "5/4", "1/0", "2", "a/b", "-1/3"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }
}
