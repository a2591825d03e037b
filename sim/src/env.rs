//! What host software gets from the run: [`Env`] (simulated time, the run's random stream,
//! disks, the recorder, process controls) and [`Process`] (pause and stop requests). The
//! harness (`harness.rs`) drives the same state from outside any host.

use crate::disk::SimDisk;
use crate::history::{Event, EventKind, History, Name, SimTime};
use crate::machine::{supervise, Machine, Placement, Software};
use crate::world::HARNESS_HOST;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::{Cell, RefCell, RefMut};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

#[derive(Debug, Default)]
pub(crate) struct ProcessState {
    pub(crate) paused: Cell<bool>,
    pub(crate) stop_requested: Cell<bool>,
    /// Wakes the process's waiters when `paused` or `stop_requested` changes. A `Notified`
    /// is registered as soon as it is created, so a change between the check and the wait is
    /// not missed; tokio's `Notify` is not tied to a runtime, so the harness can notify from
    /// outside any host.
    pub(crate) changed: tokio::sync::Notify,
    /// Set by the host's software while it runs; cleared on exit or when it is dropped.
    pub(crate) running: Cell<bool>,
    pub(crate) incarnation: Cell<u64>,
    /// Set when the software exits on its own through [`Env::exit`]; the harness then takes
    /// the host down (and clears it), as it does after a kill.
    pub(crate) exited: Cell<bool>,
    /// The host's software (installed with [`Process::install`]) waiting for `resume`: one root
    /// future per host, so one slot.
    pub(crate) resume_waker: RefCell<Option<std::task::Waker>>,
}

impl ProcessState {
    /// Clears the pause and wakes the stopped software, which then runs what came due.
    pub(crate) fn resume(&self) {
        self.paused.set(false);
        self.changed.notify_waiters();
        if let Some(waker) = self.resume_waker.take() {
            waker.wake();
        }
    }
}

pub(crate) struct EnvInner {
    pub(crate) seed: u64,
    pub(crate) history: RefCell<History>,
    /// Events recorded during the current step, sorted by time when the step ends.
    pub(crate) staged: RefCell<Vec<Event>>,
    /// The harness's time when the staged events' step began: a record in a later step
    /// flushes them first, so staging holds one step's events, not a whole quiet drain's.
    pub(crate) staged_step: Cell<SimTime>,
    pub(crate) rng: RefCell<ChaCha8Rng>,
    pub(crate) processes: RefCell<BTreeMap<String, Rc<ProcessState>>>,
    pub(crate) disks: RefCell<BTreeMap<String, SimDisk>>,
    pub(crate) harness_now: Cell<SimTime>,
    /// (from, to) pairs whose packets the network drops now: partitions, lost replies and
    /// hosts without power. Kept by the harness, read by [`connect`]. Named by machine.
    pub(crate) unreachable: RefCell<BTreeSet<(String, String)>>,
    /// Which machine each process runs on; set before the design installs its processes.
    pub(crate) placement: RefCell<Placement>,
    /// The machines shared by several processes, by machine name.
    pub(crate) machines: RefCell<BTreeMap<String, Rc<Machine>>>,
}

/// The run's shared environment, handed to every host's software. Cheap to clone.
///
/// Single-threaded by construction (`Rc`): turmoil runs every host on the run's thread.
#[derive(Clone)]
pub struct Env(pub(crate) Rc<EnvInner>);

impl Env {
    pub(crate) fn new(seed: u64) -> Env {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(2);
        Env(Rc::new(EnvInner {
            seed,
            history: RefCell::new(History::new()),
            staged: RefCell::new(Vec::new()),
            staged_step: Cell::new(SimTime(0)),
            rng: RefCell::new(rng),
            unreachable: RefCell::new(BTreeSet::new()),
            processes: RefCell::new(BTreeMap::new()),
            disks: RefCell::new(BTreeMap::new()),
            harness_now: Cell::new(SimTime(0)),
            placement: RefCell::new(Placement::default()),
            machines: RefCell::new(BTreeMap::new()),
        }))
    }

    /// Puts each group of processes on a machine of its own (checked groups; see
    /// `machine::check_colocate`). Must come before the design installs anything.
    pub(crate) fn set_placement(&self, groups: &[Vec<String>]) {
        assert!(self.0.machines.borrow().is_empty(), "placement set after install");
        *self.0.placement.borrow_mut() = Placement::new(groups);
    }

    /// The machine `process` runs on: its own name unless it is colocated.
    pub(crate) fn machine_of(&self, process: &str) -> String {
        self.0.placement.borrow().machine_of(process).to_string()
    }

    /// The shared machine `process` runs on, if it shares one.
    pub(crate) fn shared_machine(&self, process: &str) -> Option<Rc<Machine>> {
        let machine = self.machine_of(process);
        self.0.machines.borrow().get(&machine).cloned()
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
        // The harness's clock moves only between steps. Every event of an earlier step is no
        // later than this step's start, so flushing them now orders the history exactly as
        // flushing at the step's end would (and as one stable sort of several steps would).
        let step = self.0.harness_now.get();
        if self.0.staged_step.replace(step) != step {
            self.flush_step();
        }
        self.0.staged.borrow_mut().push(Event {
            time,
            host: Name::from(host),
            kind,
        });
    }

    /// Records a "sometimes" note (counted as `note.<name>`).
    pub fn note(&self, host: &str, name: &str) {
        self.record(
            host,
            EventKind::Note {
                name: Name::from(name),
                detail: None,
            },
        );
    }

    /// A note with what the model saw, shown by the timeline (counted by name only).
    pub fn note_with(&self, host: &str, name: &str, detail: String) {
        self.record(
            host,
            EventKind::Note {
                name: Name::from(name),
                detail: Some(detail),
            },
        );
    }

    /// The program on `host` exits on its own, as Go's runtime does after an unrecovered panic
    /// (status 2) or `os.Exit(status)` does: a non-zero status is recorded as a crash carrying
    /// the status and `message` (the panic's text), status 0 as an `exit` note. The software
    /// must then return from its root future, which drops every task it spawned; the harness
    /// takes the host down, so a `restart` fault or the drain starts it again, as a supervisor
    /// (systemd's `Restart=`) would.
    pub fn exit(&self, host: &str, status: i32, message: &str) {
        if status == 0 {
            self.note_with(host, "exit", format!("status 0: {message}"));
        } else {
            self.record(
                host,
                EventKind::Crash {
                    message: message.to_string(),
                    exit_status: Some(status),
                },
            );
        }
        self.state(host).exited.set(true);
    }

    /// Hosts whose software exited through [`Env::exit`] and is no longer running; clears
    /// their mark.
    pub(crate) fn take_exited(&self) -> Vec<String> {
        let processes = self.0.processes.borrow();
        let mut exited = Vec::new();
        for (host, state) in processes.iter() {
            if state.exited.get() && !state.running.get() {
                state.exited.set(false);
                exited.push(host.clone());
            }
        }
        exited
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

    pub(crate) fn state(&self, host: &str) -> Rc<ProcessState> {
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
            env: self.clone(),
        }
    }

    pub(crate) fn flush_step(&self) {
        let mut staged = self.0.staged.borrow_mut();
        if staged.is_empty() {
            return;
        }
        // Hosts run one after another within a step, each from the step's start time, so the
        // step's events are merged by time; ties keep recording order (stable sort). Most
        // steps are in order already (one host recorded, or all at one instant), and the
        // stable sort allocates a buffer, so it runs only when needed. Draining keeps the
        // staging buffer's capacity for the next step.
        if !staged.is_sorted_by_key(|e| e.time) {
            staged.sort_by_key(|e| e.time);
        }
        self.0.history.borrow_mut().extend_ordered(staged.drain(..));
    }

    pub(crate) fn record_now(&self, kind: EventKind) {
        self.flush_step();
        let time = self.0.harness_now.get();
        self.0.history.borrow_mut().push(Event {
            time,
            host: Name::from(HARNESS_HOST),
            kind,
        });
    }
}

/// `software` in a `LocalSet` of its own, polled only while the process is not paused.
pub(crate) async fn stoppable<Fut>(state: Rc<ProcessState>, software: Fut) -> turmoil::Result
where
    Fut: Future<Output = turmoil::Result> + 'static,
{
    let tasks = tokio::task::LocalSet::new();
    let mut run = std::pin::pin!(tasks.run_until(software));
    std::future::poll_fn(|cx| {
        if state.paused.get() {
            // Woken by `ProcessState::resume`; wakes meanwhile (timers, sockets) wait.
            state.resume_waker.replace(Some(cx.waker().clone()));
            return std::task::Poll::Pending;
        }
        run.as_mut().poll(cx)
    })
    .await
}

/// What host software sees of its own process: pause and stop requests.
///
/// Software installed with [`Process::install`] runs nothing at all while paused. For code that
/// runs outside it, [`Process::sleep`] and [`Process::checkpoint`] do not return while the
/// process is paused. The harness also holds the host's network links, so messages queue
/// up as they would for a SIGSTOPped process whose sockets stay open.
#[derive(Clone)]
pub struct Process {
    host: String,
    state: Rc<ProcessState>,
    env: Env,
}

impl Process {
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Installs the host's software on the simulation so that a pause stops all of it, as
    /// SIGSTOP does: its tasks, timers included, run nothing until `resume`, and timers that
    /// came due meanwhile fire then, in their order. Designs install every host through this
    /// (`env.process(host).install(sim, software)`) rather than `turmoil::Sim::host`.
    ///
    /// The software runs in a `LocalSet` of its own inside the host's, so every task it
    /// spawns (`tokio::task::spawn_local`) lives in that set and is polled only through the
    /// root future, which does not poll while the process is paused. A timer that fires
    /// during the pause only queues its task. Dropping the root (kill) drops every task.
    ///
    /// A process alone on its machine (the default) is its own turmoil host. One that shares
    /// a machine (`colocate`) is registered with the machine's supervisor (`machine.rs`),
    /// and the first process installed on a machine creates its turmoil host.
    pub fn install<F, Fut>(&self, sim: &mut turmoil::Sim<'_>, software: F)
    where
        F: Fn() -> Fut + 'static,
        Fut: Future<Output = turmoil::Result> + 'static,
    {
        let state = self.state.clone();
        if !self.env.0.placement.borrow().is_shared(&self.host) {
            sim.host(self.host.as_str(), move || stoppable(state.clone(), software()));
            return;
        }
        let machine_name = self.env.machine_of(&self.host);
        let existing = self.env.0.machines.borrow().get(&machine_name).cloned();
        let machine = existing.unwrap_or_else(|| {
            let machine = Rc::new(Machine::default());
            self.env
                .0
                .machines
                .borrow_mut()
                .insert(machine_name.clone(), machine.clone());
            let root = machine.clone();
            sim.host(machine_name.as_str(), move || supervise(root.clone()));
            machine
        });
        let software: Software = Rc::new(move || Box::pin(software()));
        machine.add(&self.host, state, software);
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
