//! The `signals` design: its config, the sender and receiver processes on turmoil, and the
//! promise. The kernel state ([`SigPending`]) is shared by the two processes' software, as
//! both run on one machine: a signal is a system call, not a network message, so partitions
//! do not touch it.

use super::pending::{Errno, Sent, SigPending, RLIMIT_SIGPENDING_MAX};
use super::signo::{Signo, SIGRTMIN, SIGUSR1, SIGUSR2};
use crate::source::Source;
use serde::{Deserialize, Serialize};
use sim::checker::OrderScope;
use sim::fault::Topology;
use sim::history::{EventKind, MsgId};
use sim::promise::{Excuse, Promise};
use sim::scenario::{Scenario, ScenarioError, Workload};
use sim::verdict::Property;
use sim::{Design, Env};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::Notify;

pub const SENDER: &str = "sender";
pub const RECEIVER: &str = "receiver";

/// Standard signals a sender may use, one per producer.
pub(super) const STANDARD: [Signo; 2] = [SIGUSR1, SIGUSR2];
/// Real-time signals a sender may use, one per producer: SIGRTMIN..=SIGRTMAX.
pub const REALTIME_SIGNALS_MAX: u32 = 31;
/// `si_value.sival_int` is a C `int`: message ids past it cannot ride in it.
const SIVAL_INT_MAX: u64 = i32::MAX as u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// SIGUSR1 (and SIGUSR2 for a second producer): one pending bit each, so they coalesce.
    Standard,
    /// SIGRTMIN, SIGRTMIN+1, ... (one per producer): each instance queued with its value.
    Realtime,
}

/// How the sender sends each signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SendCall {
    /// `sigqueue(pid, sig, {.sival_int = id})`: the message id rides in `si_value`; a
    /// real-time signal past RLIMIT_SIGPENDING fails with EAGAIN.
    Sigqueue,
    /// `kill(pid, sig)`: no value, and no EAGAIN: a real-time signal still queues each
    /// instance, and past the limit is made pending without its siginfo, merging with what
    /// is pending; a standard one coalesces as with `sigqueue`.
    Kill,
}

/// The `signals` design's `[config]`. The doc comments are what `jetsam list` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Which signals the sender sends: producer i sends the i-th of them (standard: at most
    /// 2 producers; realtime: at most 31).
    pub signals: Kind,
    /// Time the receiver's handler takes per signal, with that signal blocked meanwhile.
    #[schemars(range(max = 60_000))]
    pub handler_ms: u64,
    /// RLIMIT_SIGPENDING: signals that may wait queued for the receiver's user. Linux sets
    /// the default at boot from the machine's memory (tens of thousands); 64 here, so a
    /// burst reaches it.
    #[schemars(range(min = 1, max = 100_000))]
    pub rlimit_sigpending: u32,
    /// SIGTERM's handler first takes the signals still pending (all blocked, `sigtimedwait`
    /// with a zero timeout) and handles each, then exits, and the message handlers keep
    /// SIGTERM in their `sa_mask` so it never interrupts one; off, pending signals die with
    /// the process, and a SIGTERM during a handler cuts it short.
    pub drain_on_sigterm: bool,
    /// The system call the sender uses: "sigqueue" (the message id as the value) or "kill"
    /// (no value: the handler only learns that a signal came).
    pub send: SendCall,
    /// The handlers are installed with `SA_NODEFER`: a signal is not blocked during its own
    /// handler, so one arriving meanwhile interrupts it and its handler runs nested, on the
    /// same stack (past RLIMIT_STACK the process dies of SIGSEGV).
    pub sa_nodefer: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            signals: Kind::Standard,
            handler_ms: 5,
            rlimit_sigpending: 64,
            drain_on_sigterm: false,
            send: SendCall::Sigqueue,
            sa_nodefer: false,
        }
    }
}

/// The receiver's kernel state while it lives (`None`: no such process, so ESRCH), and
/// how many of its handlers are running, nested ones included (for the drain).
pub(super) struct Kernel {
    pub(super) receiver: RefCell<Option<SigPending>>,
    /// The receiver has started once: its pid file exists, so the sender knows whom to signal.
    pub(super) pid_file: Cell<bool>,
    pub(super) in_handler: Cell<u32>,
    /// Wakes the receiver when a signal arrives (a permit, so none is missed).
    pub(super) wake: Notify,
}

pub struct Signals {
    config: Config,
    workload: Workload,
    source: Rc<Source>,
    kernel: Rc<Kernel>,
}

pub fn build(scenario: &Scenario) -> Result<Box<dyn Design>, ScenarioError> {
    let config: Config = scenario.design_config()?;
    assert!((1..=RLIMIT_SIGPENDING_MAX).contains(&config.rlimit_sigpending));
    let producers = scenario.workload.producers;
    let most = match config.signals {
        Kind::Standard => STANDARD.len() as u32,
        Kind::Realtime => REALTIME_SIGNALS_MAX,
    };
    let error = |message: String| ScenarioError {
        path: scenario.path.clone(),
        line: None,
        message,
    };
    if producers > most {
        return Err(error(format!(
            "workload.producers: at most {most} with signals = {:?} (one signal each)",
            config.signals
        )));
    }
    if scenario.workload.messages > SIVAL_INT_MAX {
        return Err(error(format!(
            "workload.messages: at most {SIVAL_INT_MAX}, since a message id rides in si_value.sival_int"
        )));
    }
    Ok(Box::new(Signals {
        source: Rc::new(Source::new(&scenario.workload)),
        kernel: Rc::new(Kernel {
            receiver: RefCell::new(None),
            pid_file: Cell::new(false),
            in_handler: Cell::new(0),
            wake: Notify::new(),
        }),
        config,
        workload: scenario.workload.clone(),
    }))
}

impl Signals {
    /// The signal producer `index` (1-based) sends.
    pub(super) fn signal_of(kind: Kind, index: u32) -> Signo {
        match kind {
            Kind::Standard => STANDARD[index as usize - 1],
            Kind::Realtime => Signo(SIGRTMIN.0 + (index - 1) as u8),
        }
    }
}

impl Design for Signals {
    /// Two processes on one machine; faults on the receiver are SIGKILL (`kill`), SIGSTOP
    /// (`pause`) and SIGTERM (`stop`).
    fn topology(&self) -> Topology {
        Topology::new(vec![SENDER.to_string(), RECEIVER.to_string()])
            .with_role("sender", [SENDER])
            .with_role("receiver", [RECEIVER])
    }

    fn install<'a>(&'a self, sim: &mut turmoil::Sim<'a>, env: &Env) {
        let pace = (
            Duration::from_millis(self.workload.publish_interval_ms),
            Duration::from_millis(self.workload.start_ms),
        );
        let (sender_env, kernel, source) = (env.clone(), self.kernel.clone(), self.source.clone());
        let (kind, producers, call) = (self.config.signals, self.workload.producers, self.config.send);
        env.process(SENDER).install(sim, move || {
            sender(
                sender_env.clone(),
                kernel.clone(),
                source.clone(),
                (kind, producers, call),
                pace,
            )
        });
        let (receiver_env, kernel, config) = (env.clone(), self.kernel.clone(), self.config.clone());
        env.process(RECEIVER).install(sim, move || {
            super::receiver::receiver(receiver_env.clone(), kernel.clone(), config.clone())
        });
    }

    /// signal(7): standard signals promise no count ("only one instance of the signal is
    /// marked as pending"), only that a handler never runs for a signal nobody sent, or twice
    /// for one; real-time signals are delivered once per accepted `sigqueue`, in send order
    /// per signal, while the receiver lives.
    fn promise(&self) -> Promise {
        let mut excuses = vec![
            Excuse::fault("kill", RECEIVER),
            Excuse::fault("power_fail", RECEIVER),
            Excuse::note("shutdown.pending_discarded"),
            // SIGTERM interrupted a handler: the shutdown exits before it returns.
            Excuse::note("shutdown.handler_interrupted"),
        ];
        match (self.config.signals, self.config.send) {
            (Kind::Standard, _) => Promise {
                text: "standard signals: no count (one pending bit per signal coalesces); never \
                       twice, never unsent (signal(7))"
                    .into(),
                properties: vec![Property::AtMostOnce, Property::NoPhantom],
                excuses,
            },
            (Kind::Realtime, SendCall::Sigqueue) => Promise {
                text: "real-time signals: each accepted sigqueue delivered once, FIFO per signal, \
                       while the receiver lives (signal(7), sigqueue(3))"
                    .into(),
                properties: vec![Property::ExactlyOnce, Property::Ordered(OrderScope::Producer)],
                excuses,
            },
            (Kind::Realtime, SendCall::Kill) => {
                // kill(2) never fails with EAGAIN: past the limit the instance is pending
                // without its siginfo and merges with what is pending (kernel/signal.c).
                excuses.push(Excuse::note("signal.info_lost"));
                Promise {
                    text: "real-time signals by kill: each instance queued within \
                           RLIMIT_SIGPENDING delivered once, FIFO per signal; past it kill still \
                           returns 0 and the instance merges (signal(7), kill(2))"
                        .into(),
                    properties: vec![Property::ExactlyOnce, Property::Ordered(OrderScope::Producer)],
                    excuses,
                }
            }
        }
    }

    fn pending(&self, env: &Env) -> Option<String> {
        let unpublished = self.source.unpublished();
        if unpublished > 0 {
            return Some(format!("{unpublished} message(s) not yet sent"));
        }
        let queued = self
            .kernel
            .receiver
            .borrow()
            .as_ref()
            .map_or(0, SigPending::pending_count);
        match (
            queued,
            self.kernel.in_handler.get() > 0,
            env.process(RECEIVER).is_running(),
        ) {
            (0, false, _) => None,
            (_, _, false) => None, // nobody left to deliver them to: they died with the receiver
            (n, _, true) => Some(format!(
                "{n} signal(s) pending for the receiver, or its handler running"
            )),
        }
    }
}

/// The sender process: one thread per producer, each `sigqueue`-ing its own signal.
async fn sender(
    env: Env,
    kernel: Rc<Kernel>,
    source: Rc<Source>,
    (kind, producers, call): (Kind, u32, SendCall),
    (interval, start_at): (Duration, Duration),
) -> turmoil::Result {
    let process = env.process(SENDER);
    let _running = process.start();
    let mut tasks = Vec::new();
    for index in 1..=producers {
        let name = format!("producer-{index}@{}", process.incarnation());
        let signo = Signals::signal_of(kind, index);
        let (env, kernel, source, process) = (env.clone(), kernel.clone(), source.clone(), process.clone());
        tasks.push(tokio::task::spawn_local(async move {
            process
                .sleep(start_at.saturating_sub(Duration::from_micros(env.now().0)))
                .await;
            while !kernel.pid_file.get() {
                process.sleep(Duration::from_millis(1)).await; // waiting for the pid file
            }
            let mut seq = 0;
            while !process.stop_requested() {
                let Some((id, key)) = source.take() else { return };
                seq += 1;
                let producer = name.as_str().into();
                env.record(
                    SENDER,
                    EventKind::Publish {
                        id,
                        producer,
                        seq,
                        key,
                    },
                );
                send_one(&env, &kernel, (signo, call), id);
                process.sleep(interval.max(Duration::from_millis(1))).await;
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    Ok(())
}

/// `sigqueue(receiver, signo, {.sival_int = id})` or `kill(receiver, signo)`, and what the
/// sender learns from it.
fn send_one(env: &Env, kernel: &Kernel, (signo, call): (Signo, SendCall), id: MsgId) {
    let outcome = match (kernel.receiver.borrow_mut().as_mut(), call) {
        (None, _) => Err("ESRCH"),
        (Some(state), SendCall::Sigqueue) => state.sigqueue(signo, id.0 as u32).map_err(Errno::name),
        (Some(state), SendCall::Kill) => state.kill_from(signo, id.0).map_err(Errno::name),
    };
    let call_name = match call {
        SendCall::Sigqueue => "sigqueue",
        SendCall::Kill => "kill",
    };
    match outcome {
        Ok(Sent::Queued { behind }) => {
            if behind > 0 {
                env.note_with(SENDER, "signal.queued_behind", format!("{behind} {signo} ahead"));
            }
            kernel.wake.notify_one();
        }
        Ok(Sent::Coalesced) => {
            env.note_with(
                SENDER,
                "signal.coalesced",
                format!("m{} on {signo} already pending", id.0),
            );
        }
        Ok(Sent::InfoLost) => {
            env.note_with(
                SENDER,
                "signal.info_lost",
                format!("m{} on {signo} past RLIMIT_SIGPENDING", id.0),
            );
            kernel.wake.notify_one();
        }
        Err(errno) => {
            env.note(SENDER, &format!("{call_name}.{}", errno.to_lowercase()));
            let error = format!("{call_name} {signo}: {errno}");
            env.record(SENDER, EventKind::PublishFail { id, error });
            return;
        }
    }
    // The call returned 0: as far as the sender knows, the signal is on its way.
    env.record(SENDER, EventKind::publish_ok(id));
}
