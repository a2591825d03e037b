//! A run: build a turmoil simulation from a scenario and a seed, inject faults, heal, drain,
//! judge.
//!
//! **Invariant:** every random choice derives from the seed: turmoil's RNG (`rng_seed`, which
//! under `--cfg tokio_unstable` also seeds each host's tokio runtime), a fixed epoch, and one
//! ChaCha generator per run, split into streams: stream 1 draws the swarm schedule, stream 2
//! is the models' (every Go-`select`-like choice), stream 3 picks the host of a fault on a
//! static role. Same seed, same build: same history bytes.

use crate::checker::{check_all, Findings};
use crate::fault::{swarm_schedule, ScheduledFault, Topology};
use crate::harness::Harness;
use crate::history::{EventKind, History, MsgId, Phase, SimTime};
use crate::panic::step_catching_panics;
use crate::promise::{Kept, Promise};
use crate::scenario::{FaultPlan, Scenario};
use crate::verdict::Verdicts;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::BTreeSet;
use std::time::Duration;

// The run's rooms, re-exported here so `sim::world::Env` and friends keep working.
pub use crate::env::{Env, Process, RunningGuard};
pub use crate::net::connect;

/// The host name the harness records its own events under.
pub const HARNESS_HOST: &str = "jetsam";

/// Fixed simulated wall-clock epoch: 2025-01-01T00:00:00Z. Models that read the system
/// time see this plus simulated elapsed time, never the real clock.
pub const EPOCH_UNIX_SECONDS: u64 = 1_735_689_600;

/// A design under test: its hosts, how to install them in a simulation, and when it is done.
pub trait Design {
    fn topology(&self) -> Topology;

    /// Registers every host of the design. Host software must do all its I/O through
    /// turmoil (network) and `env` (disk, time, randomness, history).
    fn install<'a>(&'a self, sim: &mut turmoil::Sim<'a>, env: &Env);

    /// What the design still has to do before it is quiescent (`None` when everything it will
    /// ever deliver has been delivered and processed). Used only to end the drain and to say
    /// what was pending if it never ends; never to judge (checkers read only the history).
    fn pending(&self, env: &Env) -> Option<String>;

    /// The host that plays the dynamic role `role` now ("the leader of partition 0"), asked
    /// when a fault on the role fires; `None` when no host plays it at this moment (the fault
    /// then applies nothing, and the history says so). Only roles the topology declares in
    /// `dynamic_roles` are asked. A host that is not one of the topology's is a broken model:
    /// the run ends with a crash verdict.
    fn resolve_role(&self, role: &str, env: &Env) -> Option<String> {
        let _ = (role, env);
        None
    }

    /// The processes this design runs together on one machine, one list per machine (its
    /// recommended deployment); none by default. A scenario's `colocate` replaces it.
    fn placement(&self) -> Vec<Vec<String>> {
        Vec::new()
    }

    /// What this variant promises (from its configuration), judged against every run.
    fn promise(&self) -> Promise {
        Promise::none()
    }
}

/// Figures about a run (simulated, never wall-clock).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunStats {
    pub simulated_ms: u64,
    pub steps: u64,
    pub events: usize,
    pub faults_applied: usize,
}

pub struct RunOutcome {
    pub seed: u64,
    pub schedule: Vec<ScheduledFault>,
    pub history: History,
    pub findings: Findings,
    pub verdicts: Verdicts,
    /// What the design variant promises, and whether this run kept it.
    pub promise: Promise,
    pub kept: Kept,
    pub stats: RunStats,
}

/// The schedule a scenario runs with on `seed`: its explicit faults, or the swarm draw.
pub fn schedule_for(
    scenario: &Scenario,
    topology: &Topology,
    seed: u64,
) -> Result<Vec<ScheduledFault>, crate::scenario::ScenarioError> {
    match &scenario.faults {
        FaultPlan::None => Ok(Vec::new()),
        FaultPlan::Schedule(_) => scenario.schedule(topology),
        FaultPlan::Swarm(profile) => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(1);
            Ok(swarm_schedule(
                profile,
                topology,
                scenario.run.fault_phase_ms,
                &mut rng,
            ))
        }
    }
}

/// Runs `design` under `scenario`'s settings with `schedule` on `seed`, and judges it.
pub fn run(scenario: &Scenario, design: &dyn Design, schedule: Vec<ScheduledFault>, seed: u64) -> RunOutcome {
    let settings = &scenario.run;
    let tick = Duration::from_millis(settings.tick_ms);
    let link_latency = Duration::from_millis(settings.link_latency_ms);
    let topology = design.topology();
    let env = Env::new(seed);
    let placement = if settings.colocate.is_empty() {
        design.placement()
    } else {
        settings.colocate.clone()
    };
    if let Err(message) = crate::machine::check_colocate(&placement, &topology.hosts) {
        panic!(
            "colocate: {message} (a scenario's is checked by Scenario::schedule; this is the design's own)"
        );
    }
    env.set_placement(&placement);

    #[allow(clippy::disallowed_types)] // a fixed epoch, not a clock read
    let epoch = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH_UNIX_SECONDS);
    let total = Duration::from_millis(settings.fault_phase_ms + settings.drain_ms) + tick * 4;
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(epoch)
        .tick_duration(tick)
        .simulation_duration(total)
        .min_message_latency(link_latency)
        .max_message_latency(link_latency)
        .build();
    design.install(&mut sim, &env);

    let mut harness = Harness::new(env.clone(), topology, link_latency, settings.stop_grace_ms);
    env.record_now(EventKind::Phase {
        phase: Phase::Fault,
        detail: String::new(),
    });

    let fault_phase_end = settings.fault_phase_ms;
    let drain_end = settings.fault_phase_ms + settings.drain_ms;
    let mut next = 0;
    let mut draining = false;
    let mut steps = 0u64;
    let mut crash = None;
    loop {
        let now_ms = sim.elapsed().as_millis() as u64;
        env.0.harness_now.set(SimTime::from_duration(sim.elapsed()));
        harness.tend(&mut sim, now_ms);
        if draining {
            harness.restart_down(&mut sim);
        } else {
            while next < schedule.len() && schedule[next].at_ms <= now_ms {
                if let Err(message) = harness.fire(&mut sim, &schedule[next], design, now_ms) {
                    crash = Some(message);
                    break;
                }
                next += 1;
            }
            if let Some(message) = crash.take() {
                env.record_now(EventKind::Crash {
                    message,
                    exit_status: None,
                });
                break;
            }
            if now_ms >= fault_phase_end {
                harness.heal_everything(&mut sim);
                env.record_now(EventKind::Phase {
                    phase: Phase::Heal,
                    detail: String::new(),
                });
                draining = true;
            }
        }
        if draining && !harness.stopping_any() {
            match design.pending(&env) {
                None => {
                    env.record_now(EventKind::Phase {
                        phase: Phase::Drained,
                        detail: String::new(),
                    });
                    break;
                }
                Some(pending) if now_ms >= drain_end => {
                    env.record_now(EventKind::Phase {
                        phase: Phase::DrainTimeout,
                        detail: pending,
                    });
                    break;
                }
                Some(_) => {}
            }
        }
        let failure = step_catching_panics(&mut sim);
        steps += 1;
        env.0.harness_now.set(SimTime::from_duration(sim.elapsed()));
        if let Some(message) = failure {
            env.record_now(EventKind::Crash {
                message,
                exit_status: None,
            });
            break;
        }
    }
    env.flush_step();
    close_open_publishes(&env);

    let history = env.0.history.replace(History::new());
    let findings = check_all(&history);
    let verdicts = Verdicts::judge(&history, &findings);
    let stats = RunStats {
        simulated_ms: sim.elapsed().as_millis() as u64,
        steps,
        events: history.len(),
        faults_applied: harness.faults_applied(),
    };
    let promise = design.promise();
    let kept = promise.judge(&verdicts, &history);
    RunOutcome {
        seed,
        schedule,
        history,
        findings,
        verdicts,
        promise,
        kept,
        stats,
    }
}

/// A publish invoked and never completed is indeterminate (Jepsen's `info`): the producer
/// never learned whether it was applied.
fn close_open_publishes(env: &Env) {
    let open: Vec<MsgId> = {
        let history = env.0.history.borrow();
        let mut open: BTreeSet<MsgId> = BTreeSet::new();
        for event in history.events() {
            match &event.kind {
                EventKind::Publish { id, .. } => {
                    open.insert(*id);
                }
                EventKind::PublishOk { id, .. }
                | EventKind::PublishFail { id, .. }
                | EventKind::PublishInfo { id, .. } => {
                    open.remove(id);
                }
                _ => {}
            }
        }
        open.into_iter().collect()
    };
    for id in open {
        env.record_now(EventKind::PublishInfo {
            id,
            reason: "no reply before the run ended".into(),
        });
    }
}
