//! Machines and the processes on them (issue 14). A scenario's `colocate` (or a design's
//! `Design::placement`) puts several processes on one machine: one turmoil host whose root
//! future is a small supervisor running each process's software side by side. A process
//! alone on its machine (the default) keeps the path it always had: its own turmoil host,
//! named like it, crashed and bounced by turmoil, so histories without colocation do not
//! change.
//!
//! What acts on what: `kill`, `stop`, `restart` and `pause` act on a process (the supervisor
//! drops or rebuilds just that process's future, inside the machine's tick, so the kernel's
//! FIN/RST for its sockets go out as for a killed process); `power_fail` and partitions act on
//! the machine (the harness maps a process to its machine); processes on one machine talk
//! over loopback, which no partition cuts.

use crate::env::{stoppable, ProcessState};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// The most processes one machine runs: a named limit so a typo cannot build something
/// absurd.
pub const PROCESSES_PER_MACHINE_MAX: usize = 64;

/// A process's software, callable again for each incarnation.
pub(crate) type Software = Rc<dyn Fn() -> Pin<Box<dyn Future<Output = turmoil::Result>>>>;

/// Which machine each process runs on. Only processes that share a machine are listed; any
/// other process is alone on a machine named like it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Placement {
    machine_of: BTreeMap<String, String>,
    members: BTreeMap<String, Vec<String>>,
}

/// The machine a colocated group runs on: `m-` and its first process's name.
pub fn machine_name(group: &[String]) -> String {
    format!("m-{}", group[0])
}

impl Placement {
    /// Groups of two or more processes, each on a machine of its own. Groups must have been
    /// checked with [`check_colocate`]; a group of one is a process alone, as by default.
    pub(crate) fn new(groups: &[Vec<String>]) -> Placement {
        let mut placement = Placement::default();
        for group in groups.iter().filter(|g| g.len() > 1) {
            let machine = machine_name(group);
            for process in group {
                let previous = placement.machine_of.insert(process.clone(), machine.clone());
                assert!(previous.is_none(), "{process} placed twice");
            }
            placement.members.insert(machine, group.clone());
        }
        placement
    }

    /// The machine `process` runs on (its own name when it is alone).
    pub(crate) fn machine_of<'a>(&'a self, process: &'a str) -> &'a str {
        self.machine_of.get(process).map_or(process, String::as_str)
    }

    /// Whether `process` shares its machine with others.
    pub(crate) fn is_shared(&self, process: &str) -> bool {
        self.machine_of.contains_key(process)
    }

    /// The processes on `machine`, in the order the placement lists them.
    pub(crate) fn members(&self, machine: &str) -> Vec<String> {
        match self.members.get(machine) {
            Some(members) => members.clone(),
            None => vec![machine.to_string()],
        }
    }

    /// How a fault's detail names where `process` runs (empty when it is alone).
    pub(crate) fn where_detail(&self, process: &str) -> String {
        match self.machine_of.get(process) {
            Some(machine) => format!("{process} (on machine {machine})"),
            None => String::new(),
        }
    }
}

/// Checks colocated groups against the design's processes: every name known, none twice,
/// no group empty or larger than [`PROCESSES_PER_MACHINE_MAX`], no machine named like a
/// process.
pub fn check_colocate(groups: &[Vec<String>], hosts: &[String]) -> Result<(), String> {
    let known = || hosts.join(", ");
    let mut seen = BTreeMap::new();
    for (index, group) in groups.iter().enumerate() {
        if group.is_empty() {
            return Err(format!("colocate[{index}] is empty; processes are: {}", known()));
        }
        if group.len() > PROCESSES_PER_MACHINE_MAX {
            return Err(format!(
                "colocate[{index}] puts {} processes on one machine, more than {PROCESSES_PER_MACHINE_MAX}",
                group.len()
            ));
        }
        for name in group {
            if !hosts.contains(name) {
                return Err(format!(
                    "colocate[{index}]: unknown process `{name}`; processes are: {}",
                    known()
                ));
            }
            if let Some(first) = seen.insert(name.clone(), index) {
                return Err(format!(
                    "colocate[{index}]: `{name}` is already placed by colocate[{first}]; a process runs on one machine"
                ));
            }
        }
        let machine = machine_name(group);
        if group.len() > 1 && hosts.contains(&machine) {
            return Err(format!(
                "colocate[{index}]: its machine would be named `{machine}`, which is a process's name"
            ));
        }
    }
    Ok(())
}

/// One process on a shared machine, as the harness and the supervisor both see it.
struct Slot {
    process: String,
    state: Rc<ProcessState>,
    software: Software,
    /// Whether the process should be running (false after a kill, a stop, an exit).
    up: Cell<bool>,
    /// Bumped on every start: the supervisor builds a new incarnation when it differs from
    /// the one it runs.
    generation: Cell<u64>,
}

/// A machine shared by several processes: what the harness asks of its supervisor.
#[derive(Default)]
pub(crate) struct Machine {
    slots: RefCell<Vec<Slot>>,
    waker: RefCell<Option<Waker>>,
}

impl Machine {
    pub(crate) fn add(&self, process: &str, state: Rc<ProcessState>, software: Software) {
        let mut slots = self.slots.borrow_mut();
        assert!(slots.len() < PROCESSES_PER_MACHINE_MAX);
        assert!(
            slots.iter().all(|s| s.process != process),
            "{process} installed twice"
        );
        slots.push(Slot {
            process: process.to_string(),
            state,
            software,
            up: Cell::new(true),
            generation: Cell::new(1),
        });
    }

    /// Takes `process` down: the supervisor drops its future (tasks, timers, sockets) when it
    /// next runs, inside the machine's tick, where turmoil sends its sockets' closes.
    pub(crate) fn take_down(&self, process: &str) {
        self.with_slot(process, |slot| slot.up.set(false));
        self.wake();
    }

    /// Starts a new incarnation of `process`.
    pub(crate) fn start(&self, process: &str) {
        self.with_slot(process, |slot| {
            slot.up.set(true);
            slot.generation.set(slot.generation.get() + 1);
        });
        self.wake();
    }

    /// Marks every process down without waking anyone: the machine is losing power and
    /// turmoil drops the supervisor and every future it holds.
    pub(crate) fn power_off(&self) {
        self.waker.take();
        for slot in self.slots.borrow().iter() {
            slot.up.set(false);
        }
    }

    fn with_slot(&self, process: &str, f: impl FnOnce(&Slot)) {
        let slots = self.slots.borrow();
        let slot = slots
            .iter()
            .find(|s| s.process == process)
            .unwrap_or_else(|| panic!("{process} is not on this machine"));
        f(slot);
    }

    fn wake(&self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// The incarnation the supervisor runs for one slot.
#[derive(Default)]
struct Running {
    generation: u64,
    future: Option<Pin<Box<dyn Future<Output = turmoil::Result>>>>,
    /// The waker this process's software and tasks get: it marks the process woken and
    /// wakes the supervisor, which then polls only the processes that were woken (a spurious
    /// poll of a big `select!` loop is not free).
    waker: Arc<SlotWaker>,
}

#[derive(Default)]
struct SlotWaker {
    woken: AtomicBool,
    supervisor: Mutex<Option<Waker>>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Relaxed);
        if let Some(waker) = self
            .supervisor
            .lock()
            .expect("never poisoned: one thread")
            .as_ref()
        {
            waker.wake_by_ref();
        }
    }
}

/// The machine's root future: runs each wanted process's software side by side, in the
/// order they were installed, and drops or rebuilds one process when the harness asks. It
/// ends only with a process's error, as a host's software would.
pub(crate) async fn supervise(machine: Rc<Machine>) -> turmoil::Result {
    let mut running: Vec<Running> = Vec::new();
    std::future::poll_fn(|cx| supervise_once(&machine, &mut running, cx)).await
}

fn supervise_once(
    machine: &Machine,
    running: &mut Vec<Running>,
    cx: &mut Context<'_>,
) -> Poll<turmoil::Result> {
    machine.waker.replace(Some(cx.waker().clone()));
    let count = machine.slots.borrow().len();
    running.resize_with(count, Running::default);
    for (index, run) in running.iter_mut().enumerate() {
        {
            let mut supervisor = run.waker.supervisor.lock().expect("never poisoned: one thread");
            if !supervisor.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *supervisor = Some(cx.waker().clone());
            }
        }
        // Read the slot, then let go of the borrow before building or polling software.
        let (up, generation) = {
            let slot = &machine.slots.borrow()[index];
            (slot.up.get(), slot.generation.get())
        };
        if !up {
            run.future = None; // a kill: its LocalSet, tasks and sockets go here
        } else if run.generation != generation {
            let (state, software) = {
                let slot = &machine.slots.borrow()[index];
                (slot.state.clone(), slot.software.clone())
            };
            run.future = None;
            run.generation = generation;
            run.future = Some(Box::pin(stoppable(state, software())));
            run.waker.woken.store(true, Ordering::Relaxed);
        }
        let Some(future) = run.future.as_mut() else {
            continue;
        };
        if !run.waker.woken.swap(false, Ordering::Relaxed) {
            continue;
        }
        let waker = Waker::from(run.waker.clone());
        match future.as_mut().poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(Ok(())) => run.future = None, // exited; the harness notices
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => {}
        }
    }
    Poll::Pending
}
