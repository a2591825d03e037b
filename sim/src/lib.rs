//! jetsam's simulation core. See ARCHITECTURE.md for the shape and its invariants.
//!
//! - [`scenario`]: scenario files and their errors;
//! - [`fault`]: fault actions, explicit and swarm schedules;
//! - [`world`]: a run (the turmoil simulation, the two phases) and the [`Design`] trait;
//!   `env.rs` is the [`Env`] and [`Process`] host software gets, `harness.rs` applies faults,
//!   `net.rs` is [`connect`], `panic.rs` turns a model's panic into a crash verdict;
//! - [`disk`]: the disk interface and the simulated disk with kill/power-fail semantics;
//! - [`history`]: the recorded events, JSON lines, hashing; [`explain`]: each anomaly's chain
//!   of recorded events in words;
//! - [`checker`]: pure checkers over a history; [`verdict`]: properties and expectations;
//!   [`vacuity`]: whether a run's faults touched its workload at all.

pub mod checker;
pub mod config;
pub mod disk;
mod env;
pub mod explain;
pub mod fault;
mod harness;
pub mod history;
pub mod machine;
pub mod name;
mod net;
mod panic;
pub mod promise;
pub mod scenario;
pub mod vacuity;
pub mod verdict;
pub mod world;

pub use history::{Event, EventKind, History, MsgId, SimTime};
pub use scenario::{Scenario, ScenarioError};
pub use world::{connect, run, schedule_for, Design, Env, Process, RunOutcome};
