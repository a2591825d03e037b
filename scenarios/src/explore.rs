//! `jetsam explore`: run a scenario over a seed range in parallel and stop at the first seed
//! that breaks an expectation.
//!
//! Seeds are handed out in increasing order; once a worker finds a failing seed, no worker
//! starts a larger one, and the smallest failing seed is reported. The answer is therefore
//! the same for any `--jobs`. Each run is single-threaded and owns its simulation; the worker
//! threads exist only outside simulations.

use crate::Loaded;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    pub seed: u64,
    pub unmet: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Exploration {
    /// Seeds that ran to completion (all of the range when nothing failed).
    pub seeds_run: usize,
    pub first_failure: Option<Failure>,
}

/// Runs `loaded` on every seed of `seeds` (in increasing order) with `jobs` worker threads.
pub fn explore(loaded: &Loaded, seeds: &[u64], jobs: usize, progress: &(dyn Fn(u64) + Sync)) -> Exploration {
    let next = AtomicUsize::new(0);
    let stop_at = AtomicU64::new(u64::MAX); // no seed >= this is started
    let seeds_run = AtomicUsize::new(0);
    let failures: Mutex<Vec<Failure>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let Some(&seed) = seeds.get(next.fetch_add(1, Ordering::SeqCst)) else {
                    return;
                };
                if seed >= stop_at.load(Ordering::SeqCst) {
                    return;
                }
                let outcome = loaded.run(seed);
                let unmet = loaded.unmet(&outcome);
                seeds_run.fetch_add(1, Ordering::SeqCst);
                progress(seed);
                if !unmet.is_empty() {
                    stop_at.fetch_min(seed, Ordering::SeqCst);
                    failures
                        .lock()
                        .expect("no worker panics holding it")
                        .push(Failure { seed, unmet });
                }
            });
        }
    });
    let first_failure = failures
        .into_inner()
        .expect("workers joined")
        .into_iter()
        .min_by_key(|f| f.seed);
    Exploration {
        seeds_run: seeds_run.into_inner(),
        first_failure,
    }
}

/// The seeds of `range` that shard `(i, n)` runs: every n-th, starting at the (i-1)-th.
pub fn shard_seeds(range: std::ops::Range<u64>, (i, n): (usize, usize)) -> Vec<u64> {
    range
        .enumerate()
        .filter(|(at, _)| at % n == i - 1)
        .map(|(_, seed)| seed)
        .collect()
}

/// Parses `A..B` (B exclusive) or a single seed `A`.
pub fn parse_seeds(text: &str) -> Result<Range<u64>, String> {
    let range = match text.split_once("..") {
        Some((a, b)) => {
            let a: u64 = a
                .trim()
                .parse()
                .map_err(|_| format!("--seeds {text}: `{a}` is not a seed"))?;
            let b: u64 = b
                .trim()
                .parse()
                .map_err(|_| format!("--seeds {text}: `{b}` is not a seed"))?;
            a..b
        }
        None => {
            let a: u64 = text
                .trim()
                .parse()
                .map_err(|_| format!("--seeds {text}: use A..B"))?;
            a..a + 1
        }
    };
    if range.is_empty() {
        return Err(format!("--seeds {text}: the range is empty"));
    }
    Ok(range)
}
