//! jetsam's simulation core. See ARCHITECTURE.md for the shape and its invariants.
//!
//! - [`scenario`]: scenario files and their errors;
//! - [`fault`]: fault actions, explicit and swarm schedules;
//! - [`world`]: a run (the turmoil simulation, the [`Env`] models use, the two phases);
//! - [`disk`]: the disk interface and the simulated disk with kill/power-fail semantics;
//! - [`history`]: the recorded events, JSON lines, hashing;
//! - [`checker`]: pure checkers over a history; [`verdict`]: properties and expectations.

pub mod checker;
pub mod config;
pub mod disk;
pub mod fault;
pub mod history;
pub mod promise;
pub mod scenario;
pub mod verdict;
pub mod world;

pub use history::{Event, EventKind, History, MsgId, SimTime};
pub use scenario::{Scenario, ScenarioError};
pub use world::{connect, run, schedule_for, Design, Env, Process, RunOutcome};
