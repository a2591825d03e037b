//! The test helper: a scenario with the user's handler over a seed range, in parallel, and on
//! failure a panic naming the smallest failing seed, its shrunk reproduction and the exact
//! command that replays it.
//!
//! Threads exist only outside simulations: each seed's run is single-threaded and owns its
//! simulation and its handler instances (scenarios' `explore`, which also makes the answer
//! the smallest failing seed whatever the thread count).

use crate::outcome::SeedRun;
use crate::scenario::Scenario;
use models::db::user::{Handler, HandlerFactory};
use scenarios::explore::{explore, parse_seeds};
use scenarios::shrink::shrink_within;
use scenarios::Loaded;
use sim::scenario::ScenarioError;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The seeds a check runs unless told otherwise.
pub const SEEDS_DEFAULT: Range<u64> = 1..9;
/// The runs a failure's shrink may take by default: enough for a few faults and messages,
/// few enough for a test.
pub const SHRINK_RUNS_DEFAULT: usize = 60;
/// Bound on one check's seeds, so a typo in `JETSAM_SEEDS` cannot run for days.
pub const SEEDS_MAX: u64 = 1_000_000;

/// A scenario, the user's handler, and how to run them.
pub struct Check {
    loaded: Loaded,
    seeds: Range<u64>,
    jobs: usize,
    shrink_runs: usize,
}

impl Check {
    /// The scenario with the handler `make` builds (called once per consumer process
    /// incarnation in every run). Errors: the scenario does not run a user's handler
    /// (`[config.db] strategy = "user"`), or its faults name hosts it does not have.
    pub fn new<H: Handler>(
        scenario: &Scenario,
        make: impl Fn() -> H + Send + Sync + 'static,
    ) -> Result<Check, ScenarioError> {
        let factory = HandlerFactory::new(make);
        Ok(Check {
            loaded: Loaded::with_handler(scenario.inner.clone(), Some(factory))?,
            seeds: SEEDS_DEFAULT,
            jobs: std::thread::available_parallelism().map_or(1, usize::from),
            shrink_runs: SHRINK_RUNS_DEFAULT,
        })
    }

    /// The seed range (end exclusive); `JETSAM_SEED` and `JETSAM_SEEDS` override it.
    pub fn seeds(mut self, seeds: Range<u64>) -> Check {
        self.seeds = seeds;
        self
    }

    /// Threads running seeds (default: the machine's cores).
    pub fn jobs(mut self, jobs: usize) -> Check {
        self.jobs = jobs.max(1);
        self
    }

    /// The runs a failure's shrink may take (0: no shrink).
    pub fn shrink_runs(mut self, runs: usize) -> Check {
        self.shrink_runs = runs;
        self
    }

    /// The seeds to run: `JETSAM_SEED=N` (one seed), else `JETSAM_SEEDS=A..B`, else the
    /// configured range; with `JETSAM_REPLAY=FILE` and no seed given, the file's `run.seed`.
    pub fn seed_range(&self) -> Result<Range<u64>, String> {
        let range = if let Some(seed) = var("JETSAM_SEED") {
            parse_seeds(&seed).map_err(|e| e.replace("--seeds ", "JETSAM_SEED="))?
        } else if let Some(seeds) = var("JETSAM_SEEDS") {
            parse_seeds(&seeds).map_err(|e| e.replace("--seeds ", "JETSAM_SEEDS="))?
        } else if var("JETSAM_REPLAY").is_some() {
            let seed = self.scenario()?.scenario.run.seed;
            seed..seed + 1
        } else {
            self.seeds.clone()
        };
        if range.is_empty() || range.end - range.start > SEEDS_MAX {
            return Err(format!(
                "seeds {}..{}: give 1 to {SEEDS_MAX} seeds",
                range.start, range.end
            ));
        }
        Ok(range)
    }

    /// The scenario that runs: this one, or the file `JETSAM_REPLAY` names (a shrunk case)
    /// with the same handler.
    fn scenario(&self) -> Result<Loaded, String> {
        match var("JETSAM_REPLAY") {
            Some(path) => {
                let mut shrunk = sim::Scenario::load(&path).map_err(|e| format!("JETSAM_REPLAY: {e}"))?;
                // A shrunk case expects what it broke ("violated"), as a regression file;
                // replayed here it is held to this check's claims, so it fails as the
                // original did until the handler is fixed. Its "sometimes" stay its own:
                // the shrink removed the faults it did not need.
                let claims = &self.loaded.scenario.expect;
                shrunk.expect.properties = claims.properties.clone();
                shrunk.expect.crash = claims.crash;
                shrunk.expect.drains = claims.drains;
                Loaded::with_handler(shrunk, self.loaded.handler.clone())
                    .map_err(|e| format!("JETSAM_REPLAY: {e}"))
            }
            None => Ok(self.loaded.clone()),
        }
    }

    /// Runs one seed.
    pub fn run_seed(&self, seed: u64) -> SeedRun {
        seed_run(&self.loaded, seed)
    }

    /// Runs every seed of the range, in parallel; never panics on a failing seed. Histories
    /// are kept only for the failing runs.
    pub fn run(&self) -> Result<Vec<SeedRun>, String> {
        let loaded = self.scenario()?;
        let seeds: Vec<u64> = self.seed_range()?.collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let runs: Mutex<Vec<SeedRun>> = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..self.jobs.min(seeds.len()) {
                scope.spawn(|| {
                    while let Some(&seed) = seeds.get(next.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
                    {
                        let mut run = seed_run(&loaded, seed);
                        if run.passed() {
                            run.outcome.history = sim::History::new();
                        }
                        runs.lock().expect("no worker panics holding it").push(run);
                    }
                });
            }
        });
        let mut runs = runs.into_inner().expect("workers joined");
        runs.sort_by_key(SeedRun::seed);
        Ok(runs)
    }

    /// The smallest failing seed of the range, run again for its details (same seed, same
    /// run); seeds above a failure are not started.
    pub fn first_failure(&self) -> Result<Option<SeedRun>, String> {
        let loaded = self.scenario()?;
        let seeds: Vec<u64> = self.seed_range()?.collect();
        let found = explore(&loaded, &seeds, self.jobs, &|_| {});
        Ok(found.first_failure.map(|f| seed_run(&loaded, f.seed)))
    }

    /// Runs the range and panics on the smallest failing seed, with its unmet expectations,
    /// the files it wrote under `target/jetsam/` (the history, the shrunk case) and the
    /// commands that replay it. Also panics on a bad `JETSAM_SEED(S)` or `JETSAM_REPLAY`.
    pub fn assert(&self) {
        let failure = self.first_failure().unwrap_or_else(|e| panic!("jetsam: {e}"));
        if let Some(failed) = failure {
            panic!("{}", self.report_failure(&failed));
        }
    }

    /// The failure's message; writes its files on the way.
    fn report_failure(&self, failed: &SeedRun) -> String {
        let loaded = self.scenario().expect("it ran");
        let seed = failed.seed();
        let dir = output_dir();
        let stem = format!(
            "{}-seed-{seed}",
            file_stem(&loaded.scenario.path, &loaded.scenario.name)
        );
        let mut lines = vec![format!(
            "jetsam: `{}` with handler {} fails on seed {seed}:",
            loaded.scenario.name,
            self.loaded.handler.as_ref().map_or("?", HandlerFactory::name)
        )];
        lines.extend(failed.unmet().iter().map(|line| format!("  {line}")));
        lines.extend(failed.anomalies().iter().take(5).map(|a| format!("  found: {a}")));
        let history = dir.join(format!("{stem}.history.jsonl"));
        lines.push(write(&history, &failed.history_json_lines(), "history"));
        let test = test_command();
        if let Some(replaying) = var("JETSAM_REPLAY") {
            // Already a shrunk case: replay it, do not shrink it again.
            lines.push(format!("replay: JETSAM_REPLAY={replaying} {test}"));
            return lines.join("\n");
        }
        lines.push(format!("replay: JETSAM_SEED={seed} {test}"));
        if self.shrink_runs > 0 {
            match shrink_within(&loaded, seed, self.shrink_runs) {
                Ok(shrunk) => {
                    let file = dir.join(format!("{stem}.shrunk.toml"));
                    lines.push(format!(
                        "shrunk in {} runs: {} faults -> {}, {} messages -> {}",
                        shrunk.runs,
                        shrunk.faults_before,
                        shrunk.faults_after,
                        shrunk.messages_before,
                        shrunk.messages_after
                    ));
                    lines.push(write(&file, &shrunk.scenario, "shrunk case"));
                    lines.push(format!(
                        "replay the shrunk case: JETSAM_REPLAY={} {test}",
                        file.display()
                    ));
                }
                Err(e) => lines.push(format!("not shrunk: {e}")),
            }
        }
        lines.join("\n")
    }
}

/// `Check::new(scenario, make)?.assert()` over the default seeds, for a `#[test]`: panics
/// on a scenario that cannot run the handler, or on the smallest failing seed.
pub fn check<H: Handler>(scenario: &Scenario, make: impl Fn() -> H + Send + Sync + 'static) {
    Check::new(scenario, make)
        .unwrap_or_else(|e| panic!("jetsam: {e}"))
        .assert();
}

fn seed_run(loaded: &Loaded, seed: u64) -> SeedRun {
    let outcome = loaded.run(seed);
    let unmet = loaded.unmet(&outcome);
    SeedRun { outcome, unmet }
}

/// An environment variable that is set and not empty.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `target/jetsam/` of the build that runs this test: the test binary lives in
/// `target/<profile>/deps/`.
fn output_dir() -> PathBuf {
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        let deps = exe.parent()?;
        (deps.file_name()? == "deps").then(|| deps.parent()?.parent().map(Path::to_path_buf))?
    });
    from_exe.unwrap_or_else(|| PathBuf::from("target")).join("jetsam")
}

fn write(path: &Path, text: &str, what: &str) -> String {
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(path, text));
    match written {
        Ok(()) => format!("{what}: {}", path.display()),
        Err(e) => format!("{what}: not written to {}: {e}", path.display()),
    }
}

/// A file name from the scenario's path (or its name, for one built in code).
fn file_stem(path: &str, name: &str) -> String {
    let base = Path::new(path)
        .file_stem()
        .filter(|_| path.ends_with(".toml"))
        .map_or(name.to_string(), |s| s.to_string_lossy().into_owned());
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    clean.chars().take(80).collect()
}

/// The command that runs this test again: cargo sets `CARGO_PKG_NAME` for the tests it
/// runs, and the test harness names each test's thread after the test.
fn test_command() -> String {
    let package = var("CARGO_PKG_NAME").map_or(String::new(), |p| format!(" -p {p}"));
    let current = std::thread::current();
    match current.name() {
        Some(name) if name != "main" => format!("cargo test{package} {name} -- --exact"),
        _ => format!("cargo test{package} TEST_NAME -- --exact"),
    }
}
