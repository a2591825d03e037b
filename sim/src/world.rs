//! A run: build a turmoil simulation from a scenario and a seed, inject faults, heal, drain,
//! judge.
//!
//! **Invariant:** every random choice derives from the seed: turmoil's RNG (`rng_seed`, which
//! under `--cfg tokio_unstable` also seeds each host's tokio runtime), a fixed epoch, and one
//! ChaCha generator per run, split into streams: stream 1 draws the swarm schedule, stream 2
//! is the models' (every Go-`select`-like choice). Same seed, same build: same history bytes.

use crate::checker::{check_all, Findings};
use crate::disk::SimDisk;
use crate::fault::{swarm_schedule, FaultAction, ScheduledFault, Topology};
use crate::history::{Event, EventKind, History, MsgId, Phase, SimTime};
use crate::promise::{Kept, Promise};
use crate::scenario::{FaultPlan, Scenario};
use crate::verdict::Verdicts;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::cell::{Cell, RefCell, RefMut};
use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::Duration;

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

    /// What this variant promises (from its configuration), judged against every run.
    fn promise(&self) -> Promise {
        Promise::none()
    }
}

#[derive(Debug, Default)]
struct ProcessState {
    paused: Cell<bool>,
    stop_requested: Cell<bool>,
    /// Wakes the process's waiters when `paused` or `stop_requested` changes. A `Notified`
    /// is registered as soon as it is created, so a change between the check and the wait is
    /// not missed; tokio's `Notify` is not tied to a runtime, so the harness can notify from
    /// outside any host.
    changed: tokio::sync::Notify,
    /// Set by the host's software while it runs; cleared on exit or when it is dropped.
    running: Cell<bool>,
    incarnation: Cell<u64>,
}

struct EnvInner {
    seed: u64,
    history: RefCell<History>,
    /// Events recorded during the current step, sorted by time when the step ends.
    staged: RefCell<Vec<Event>>,
    rng: RefCell<ChaCha8Rng>,
    processes: RefCell<BTreeMap<String, Rc<ProcessState>>>,
    disks: RefCell<BTreeMap<String, SimDisk>>,
    harness_now: Cell<SimTime>,
    /// (from, to) pairs whose packets the network drops now: partitions, lost replies and
    /// hosts without power. Kept by the harness, read by [`connect`].
    unreachable: RefCell<BTreeSet<(String, String)>>,
}

/// The run's shared environment, handed to every host's software. Cheap to clone.
///
/// Single-threaded by construction (`Rc`): turmoil runs every host on the run's thread.
#[derive(Clone)]
pub struct Env(Rc<EnvInner>);

impl Env {
    fn new(seed: u64) -> Env {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(2);
        Env(Rc::new(EnvInner {
            seed,
            history: RefCell::new(History::new()),
            staged: RefCell::new(Vec::new()),
            rng: RefCell::new(rng),
            unreachable: RefCell::new(BTreeSet::new()),
            processes: RefCell::new(BTreeMap::new()),
            disks: RefCell::new(BTreeMap::new()),
            harness_now: Cell::new(SimTime(0)),
        }))
    }

    pub fn seed(&self) -> u64 {
        self.0.seed
    }

    /// Simulated time: the current host's clock inside host software, else the harness's.
    pub fn now(&self) -> SimTime {
        match turmoil::sim_elapsed() {
            Some(elapsed) => SimTime::from_duration(elapsed),
            None => self.0.harness_now.get(),
        }
    }

    /// Records an event observed on `host` at the current simulated time.
    pub fn record(&self, host: &str, kind: EventKind) {
        let time = self.now();
        tracing::debug!(t_us = time.0, host, ?kind, "event");
        self.0.staged.borrow_mut().push(Event {
            time,
            host: host.to_string(),
            kind,
        });
    }

    /// Records a "sometimes" note (counted as `note.<name>`).
    pub fn note(&self, host: &str, name: &str) {
        self.record(
            host,
            EventKind::Note {
                name: name.to_string(),
            },
        );
    }

    /// The models' random stream. Hold the borrow only for the draw.
    pub fn rng(&self) -> RefMut<'_, ChaCha8Rng> {
        self.0.rng.borrow_mut()
    }

    /// A uniform choice among `n` options, as Go's `select` makes among ready cases.
    pub fn choose(&self, n: usize) -> usize {
        assert!(n > 0);
        self.rng().random_range(0..n)
    }

    /// The host's disk; it outlives the host's process.
    pub fn disk(&self, host: &str) -> SimDisk {
        self.0
            .disks
            .borrow_mut()
            .entry(host.to_string())
            .or_default()
            .clone()
    }

    fn state(&self, host: &str) -> Rc<ProcessState> {
        self.0
            .processes
            .borrow_mut()
            .entry(host.to_string())
            .or_default()
            .clone()
    }

    /// The process controls for `host`, used by its software.
    pub fn process(&self, host: &str) -> Process {
        Process {
            host: host.to_string(),
            state: self.state(host),
        }
    }

    fn flush_step(&self) {
        let mut staged = self.0.staged.borrow_mut();
        if staged.is_empty() {
            return;
        }
        // Hosts run one after another within a step, each from the step's start time, so the
        // step's events are merged by time; ties keep recording order (stable sort).
        staged.sort_by_key(|e| e.time);
        let mut history = self.0.history.borrow_mut();
        for event in staged.drain(..) {
            history.push(event);
        }
    }

    fn record_now(&self, kind: EventKind) {
        self.flush_step();
        let time = self.0.harness_now.get();
        self.0.history.borrow_mut().push(Event {
            time,
            host: HARNESS_HOST.to_string(),
            kind,
        });
    }
}

/// What host software sees of its own process: pause and stop requests.
///
/// Pausing is cooperative at the process's suspension points: software sleeps and waits
/// through [`Process::sleep`] and [`Process::checkpoint`], which do not return while the
/// process is paused. The harness also holds the host's network links, so messages queue
/// up as they would for a SIGSTOPped process whose sockets stay open.
#[derive(Clone)]
pub struct Process {
    host: String,
    state: Rc<ProcessState>,
}

impl Process {
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Marks the process as running until the returned guard is dropped (on normal exit, or
    /// when a kill drops the host's tasks).
    pub fn start(&self) -> RunningGuard {
        self.state.running.set(true);
        self.state.incarnation.set(self.state.incarnation.get() + 1);
        RunningGuard(self.state.clone())
    }

    pub fn incarnation(&self) -> u64 {
        self.state.incarnation.get()
    }

    pub fn is_running(&self) -> bool {
        self.state.running.get()
    }

    pub async fn checkpoint(&self) {
        loop {
            let changed = self.state.changed.notified();
            if !self.state.paused.get() {
                return;
            }
            changed.await;
        }
    }

    pub async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
        self.checkpoint().await;
    }

    /// Whether a graceful shutdown (SIGTERM) was requested.
    pub fn stop_requested(&self) -> bool {
        self.state.stop_requested.get()
    }

    /// Resolves when a graceful shutdown is requested.
    pub async fn stopping(&self) {
        loop {
            let changed = self.state.changed.notified();
            if self.state.stop_requested.get() {
                return;
            }
            changed.await;
        }
    }
}

pub struct RunningGuard(Rc<ProcessState>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.running.set(false);
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

    let mut harness = Harness {
        env: env.clone(),
        hosts: topology.hosts.clone(),
        down: BTreeSet::new(),
        paused: BTreeSet::new(),
        stopping: BTreeMap::new(),
        lose_replies_until: Vec::new(),
        partitions: BTreeSet::new(),
        powered_off: BTreeSet::new(),
        link_latency,
        stop_grace_ms: settings.stop_grace_ms,
        faults_applied: 0,
    };
    env.record_now(EventKind::Phase {
        phase: Phase::Fault,
        detail: String::new(),
    });

    let fault_phase_end = settings.fault_phase_ms;
    let drain_end = settings.fault_phase_ms + settings.drain_ms;
    let mut next = 0;
    let mut draining = false;
    let mut steps = 0u64;
    loop {
        let now_ms = sim.elapsed().as_millis() as u64;
        env.0.harness_now.set(SimTime::from_duration(sim.elapsed()));
        harness.tend(&mut sim, now_ms);
        if draining {
            harness.restart_down(&mut sim);
        } else {
            while next < schedule.len() && schedule[next].at_ms <= now_ms {
                harness.apply(&mut sim, &schedule[next].action, now_ms);
                next += 1;
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
        if draining && harness.stopping.is_empty() {
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
        capture_panics();
        IN_RUN.with(|in_run| in_run.set(true));
        FIRST_PANIC.with(|first| first.borrow_mut().take());
        let step = std::panic::catch_unwind(AssertUnwindSafe(|| sim.step()));
        IN_RUN.with(|in_run| in_run.set(false));
        steps += 1;
        env.0.harness_now.set(SimTime::from_duration(sim.elapsed()));
        let failure = match step {
            Ok(Ok(_)) => None,
            Ok(Err(error)) => Some(format!("host software failed: {error}")),
            Err(panic) => Some(panic_message(&panic)),
        };
        if let Some(message) = failure {
            env.record_now(EventKind::Crash { message });
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
        faults_applied: harness.faults_applied,
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

/// Linux's SYN retransmissions (`tcp_syn_retries` = 6): 1 s, doubling each time.
const SYN_RETRIES: u32 = 6;
const SYN_RTO_INITIAL: Duration = Duration::from_secs(1);

/// Opens a TCP connection from host `from` to `to:port` as a real network would: a host that
/// is up but has nothing listening (or a killed process) refuses at once; a host the network
/// cannot reach (a partition, lost replies, no power) drops the SYN, which is retried after
/// 1, 2, 4, ... s until it gets through or the retries run out (`TimedOut`). turmoil alone
/// refuses at once in both cases. Callers put their own connect timeout around it.
pub async fn connect(env: &Env, from: &str, to: &str, port: u16) -> std::io::Result<turmoil::net::TcpStream> {
    let mut rto = SYN_RTO_INITIAL;
    for _ in 0..=SYN_RETRIES {
        let blocked = env
            .0
            .unreachable
            .borrow()
            .contains(&(from.to_string(), to.to_string()));
        if !blocked {
            return turmoil::net::TcpStream::connect((to, port)).await;
        }
        tokio::time::sleep(rto).await;
        rto *= 2;
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("connect to {to}:{port} timed out"),
    ))
}

thread_local! {
    /// Set while this thread runs a simulation: panics are a verdict, not a crash of jetsam.
    static IN_RUN: Cell<bool> = const { Cell::new(false) };
    /// The first panic of the current run, with its location.
    static FIRST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once per process) a panic hook that, on a thread running a simulation, keeps the
/// first panic's message and location for the crash verdict instead of printing it. tokio
/// re-panics with its own message when a task panics, so the first one is the model's.
fn capture_panics() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_RUN.with(Cell::get) {
                return previous(info);
            }
            FIRST_PANIC.with(|first| {
                let mut first = first.borrow_mut();
                if first.is_none() {
                    let location = info
                        .location()
                        .map(|l| format!(" at {}:{}", l.file(), l.line()))
                        .unwrap_or_default();
                    *first = Some(format!("{}{location}", payload_text(info.payload())));
                }
            });
        }));
    });
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(non-string panic payload)".to_string())
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let first = FIRST_PANIC.with(|first| first.borrow_mut().take());
    format!(
        "model panicked: {}",
        first.unwrap_or_else(|| payload_text(panic.as_ref()))
    )
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
                EventKind::PublishOk { id }
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

struct Harness {
    env: Env,
    hosts: Vec<String>,
    /// Hosts whose software the harness took down (kill, power_fail, stop).
    down: BTreeSet<String>,
    paused: BTreeSet<String>,
    /// Hosts asked to stop, with the time by which they are killed if still running.
    stopping: BTreeMap<String, u64>,
    /// Open `lose_replies` faults: (until_ms, from, to).
    lose_replies_until: Vec<(u64, String, String)>,
    /// Partitions the schedule applied and no heal has repaired yet: (from, to, oneway).
    partitions: BTreeSet<(String, String, bool)>,
    /// Hosts that lost power: cut off from every peer until they restart.
    powered_off: BTreeSet<String>,
    link_latency: Duration,
    stop_grace_ms: u64,
    faults_applied: usize,
}

impl Harness {
    /// Tells [`connect`] which links drop packets now.
    fn sync_reachability(&self) {
        let mut blocked = BTreeSet::new();
        for (x, y, oneway) in &self.partitions {
            blocked.insert((x.clone(), y.clone()));
            if !oneway {
                blocked.insert((y.clone(), x.clone()));
            }
        }
        for (_, from, to) in &self.lose_replies_until {
            blocked.insert((from.clone(), to.clone()));
        }
        for host in &self.powered_off {
            for other in self.others(host) {
                blocked.insert((host.clone(), other.clone()));
                blocked.insert((other, host.clone()));
            }
        }
        *self.env.0.unreachable.borrow_mut() = blocked;
    }

    fn others(&self, host: &str) -> Vec<String> {
        self.hosts.iter().filter(|h| *h != host).cloned().collect()
    }

    fn record(&mut self, action: &str, hosts: Vec<String>, detail: String) {
        self.sync_reachability();
        self.faults_applied += 1;
        self.env.record_now(EventKind::Fault {
            action: action.to_string(),
            hosts,
            detail,
        });
    }

    /// Time-driven bookkeeping: expire `lose_replies`, finish or escalate graceful stops.
    fn tend(&mut self, sim: &mut turmoil::Sim<'_>, now_ms: u64) {
        let (expired, open): (Vec<_>, Vec<_>) = self
            .lose_replies_until
            .drain(..)
            .partition(|(until, _, _)| *until <= now_ms);
        self.lose_replies_until = open;
        for (_, from, to) in expired {
            sim.repair_oneway(from.as_str(), to.as_str());
            self.record("lose_replies_end", vec![from, to], String::new());
        }
        self.sync_reachability();
        let stopping: Vec<(String, u64)> = self.stopping.iter().map(|(h, t)| (h.clone(), *t)).collect();
        for (host, deadline) in stopping {
            if !self.env.process(&host).is_running() {
                self.stopping.remove(&host);
                sim.crash(host.as_str()); // the exited software's runtime is torn down
                self.record("stopped", vec![host.clone()], "shut down gracefully".into());
                self.mark_down(&host);
            } else if now_ms >= deadline {
                self.stopping.remove(&host);
                self.kill(sim, &host);
                self.record("kill", vec![host], "stop grace expired".into());
            }
        }
    }

    fn kill(&mut self, sim: &mut turmoil::Sim<'_>, host: &str) {
        self.unpause(sim, host);
        sim.crash(host);
        // Dropping the runtime drops every task and with it the RunningGuard.
        self.env.state(host).running.set(false);
        self.mark_down(host);
    }

    /// The host's software is gone; a stop request dies with it, so the next incarnation
    /// starts as a fresh process would.
    fn mark_down(&mut self, host: &str) {
        self.env.state(host).stop_requested.set(false);
        self.down.insert(host.to_string());
    }

    fn unpause(&mut self, sim: &mut turmoil::Sim<'_>, host: &str) {
        if self.paused.remove(host) {
            let state = self.env.state(host);
            state.paused.set(false);
            state.changed.notify_waiters();
            let others = self.others(host);
            for other in &others {
                sim.release(host, other.as_str());
            }
        }
    }

    fn apply(&mut self, sim: &mut turmoil::Sim<'_>, action: &FaultAction, now_ms: u64) {
        tracing::info!(t_ms = now_ms, action = action.name(), detail = %action.detail(), "fault");
        let hosts = action.hosts();
        match action {
            FaultAction::Partition { a, b, oneway } => {
                for x in a {
                    for y in b {
                        self.partitions.insert((x.clone(), y.clone(), *oneway));
                        if *oneway {
                            sim.partition_oneway(x.as_str(), y.as_str());
                        } else {
                            sim.partition(x.as_str(), y.as_str());
                        }
                    }
                }
            }
            FaultAction::Heal => self.heal_network(sim),
            FaultAction::Kill { host } => {
                if self.down.contains(host) {
                    return; // already down: nothing to kill, nothing recorded
                }
                self.stopping.remove(host);
                self.kill(sim, host);
            }
            FaultAction::PowerFail { host, torn } => {
                if self.down.contains(host) {
                    return;
                }
                self.stopping.remove(host);
                // A machine that loses power sends nothing: no FIN, no RST. Its links are cut
                // before its software goes, so the closes its sockets would send are lost, and
                // peers learn of the crash only from their own timeouts. (A `kill` is a process
                // crash: the kernel closes the sockets and peers see it at once.)
                self.unpause(sim, host); // releasing held links first, so the cut stays
                for other in self.others(host) {
                    sim.partition(host.as_str(), other.as_str());
                }
                self.powered_off.insert(host.clone());
                self.kill(sim, host);
                let report = self.env.disk(host).power_fail(*torn, &mut *self.env.rng());
                let detail = format!(
                    "{}unsynced bytes lost: {}, files reverted: {}, torn bytes kept: {}",
                    if *torn { "torn last write; " } else { "" },
                    report.bytes_lost,
                    report.files_reverted,
                    report.torn_bytes_kept
                );
                self.record(action.name(), hosts, detail);
                return;
            }
            FaultAction::Restart { host } => {
                if !self.down.remove(host) {
                    return; // not down: a restart of a running process is not a fault
                }
                self.power_on(sim, host);
                sim.bounce(host.as_str());
            }
            FaultAction::Pause { host } => {
                if self.down.contains(host) || !self.paused.insert(host.clone()) {
                    return;
                }
                let state = self.env.state(host);
                state.paused.set(true);
                state.changed.notify_waiters();
                for other in self.others(host) {
                    sim.hold(host.as_str(), other.as_str());
                }
            }
            FaultAction::Resume { host } => {
                if !self.paused.contains(host) {
                    return;
                }
                self.unpause(sim, host);
            }
            FaultAction::Stop { host } => {
                if self.down.contains(host) || self.stopping.contains_key(host) {
                    return;
                }
                self.unpause(sim, host);
                let state = self.env.state(host);
                state.stop_requested.set(true);
                state.changed.notify_waiters();
                self.stopping.insert(host.clone(), now_ms + self.stop_grace_ms);
            }
            FaultAction::LoseReplies {
                from,
                to,
                duration_ms,
            } => {
                sim.partition_oneway(from.as_str(), to.as_str());
                self.lose_replies_until
                    .push((now_ms + duration_ms, from.clone(), to.clone()));
            }
            FaultAction::Latency {
                a,
                b,
                latency_ms,
                jitter_ms,
            } => {
                let low = Duration::from_millis(*latency_ms);
                for x in a {
                    for y in b {
                        sim.set_link_latency(x.as_str(), y.as_str(), low);
                        sim.set_link_max_message_latency(
                            x.as_str(),
                            y.as_str(),
                            low + Duration::from_millis(*jitter_ms),
                        );
                    }
                }
            }
        }
        self.record(action.name(), hosts, action.detail());
    }

    /// A powered-off host comes back on the network, minus the scheduled partitions that
    /// still stand.
    fn power_on(&mut self, sim: &mut turmoil::Sim<'_>, host: &str) {
        if !self.powered_off.remove(host) {
            return;
        }
        self.sync_reachability();
        for other in self.others(host) {
            sim.repair(host, other.as_str());
        }
        for (x, y, oneway) in &self.partitions {
            if x == host || y == host {
                if *oneway {
                    sim.partition_oneway(x.as_str(), y.as_str());
                } else {
                    sim.partition(x.as_str(), y.as_str());
                }
            }
        }
    }

    fn heal_network(&mut self, sim: &mut turmoil::Sim<'_>) {
        self.partitions.clear();
        for (i, x) in self.hosts.iter().enumerate() {
            for y in &self.hosts[i + 1..] {
                sim.set_link_latency(x.as_str(), y.as_str(), self.link_latency);
                // A host without power stays unreachable until it restarts.
                if !self.powered_off.contains(x) && !self.powered_off.contains(y) {
                    sim.repair(x.as_str(), y.as_str());
                }
            }
        }
        self.lose_replies_until.clear();
        self.sync_reachability();
    }

    /// End of the fault phase: heal every partition, resume every pause, restart every host
    /// the harness took down. A graceful stop in progress is not cut short: it finishes (or
    /// is killed after its grace period, as in any phase) and [`Harness::restart_down`]
    /// brings the host back during the drain.
    fn heal_everything(&mut self, sim: &mut turmoil::Sim<'_>) {
        self.heal_network(sim);
        for host in self.paused.clone() {
            self.unpause(sim, &host);
        }
        self.restart_down(sim);
    }

    /// During the drain, nothing stays down.
    fn restart_down(&mut self, sim: &mut turmoil::Sim<'_>) {
        for host in std::mem::take(&mut self.down) {
            self.power_on(sim, &host);
            sim.bounce(host.as_str());
            self.record("restart", vec![host], "heal".into());
        }
    }
}
