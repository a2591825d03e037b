//! The receiver process: handlers installed at start, then `pause()` between signals. A
//! handler takes `handler_ms`; a signal that becomes deliverable meanwhile (another signal,
//! as `sa_mask` is empty, or its own with `SA_NODEFER`) interrupts it, and its handler runs
//! nested on the same stack; the interrupted one resumes when it returns (sigaction(2),
//! signal(7) "Execution of signal handlers"). SIGTERM's handler is the shutdown code: it
//! exits, from whatever depth it ran at, and an interrupted handler never finishes.

use super::design::{Config, Kernel, Kind, Signals, REALTIME_SIGNALS_MAX, RECEIVER, STANDARD};
use super::pending::{Delivery, SigPending};
use super::signo::{Signo, SIGTERM};
use sim::history::{EventKind, MsgId};
use sim::{Env, Process};
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

/// RLIMIT_STACK's default (8 MiB) over what one nested handler takes on the stack: the
/// kernel's signal frame (`rt_sigframe` with the FPU/xsave state, 1-3 KiB on x86-64) and the
/// handler's own frame, 4 KiB together here. Past it the kernel cannot push another frame and
/// kills the process with SIGSEGV (`force_sigsegv` in `kernel/signal.c`).
pub const NESTED_HANDLERS_MAX: u32 = 8 * 1024 * 1024 / 4096;
/// A process killed by SIGSEGV, as a shell reports it: 128 + 11.
const SIGSEGV_EXIT_STATUS: i32 = 139;

/// Clears the receiver's kernel state when its process goes, however it goes (a kill drops
/// this with the process's tasks): what was pending dies with it.
struct Attached(Rc<Kernel>);

impl Drop for Attached {
    fn drop(&mut self) {
        self.0.receiver.replace(None);
        self.0.in_handler.set(0);
    }
}

/// Whether the process goes on after a handler.
enum Flow {
    Continue,
    Exit,
}

struct Receiver {
    env: Env,
    process: Process,
    kernel: Rc<Kernel>,
    config: Config,
    /// The harness's `stop` has been sent as SIGTERM.
    term_sent: Cell<bool>,
}

/// The receiver process.
pub(super) async fn receiver(env: Env, kernel: Rc<Kernel>, config: Config) -> turmoil::Result {
    let process = env.process(RECEIVER);
    let _running = process.start();
    let mut state = SigPending::new(config.rlimit_sigpending);
    let handled: Vec<Signo> = match config.signals {
        Kind::Standard => STANDARD.to_vec(),
        Kind::Realtime => (1..=REALTIME_SIGNALS_MAX)
            .map(|i| Signals::signal_of(Kind::Realtime, i))
            .collect(),
    };
    // A program that drains at SIGTERM also keeps SIGTERM out of its message handlers
    // (`sa_mask`), so its shutdown never cuts one short.
    let sa_mask = if config.drain_on_sigterm { SIGTERM.bit() } else { 0 };
    for signo in handled {
        state
            .sigaction_with(signo, config.sa_nodefer, sa_mask)
            .expect("catchable signals");
    }
    state.sigaction(SIGTERM).expect("SIGTERM can be caught");
    kernel.receiver.replace(Some(state));
    kernel.pid_file.set(true);
    let _attached = Attached(kernel.clone());
    let receiver = Receiver {
        env,
        process,
        kernel,
        config,
        term_sent: Cell::new(false),
    };
    loop {
        receiver.send_term_if_stopping();
        let Some(delivery) = receiver.next() else {
            receiver.wait().await;
            continue;
        };
        if let Flow::Exit = receiver.deliver(delivery, 0).await {
            return Ok(());
        }
    }
}

impl Receiver {
    /// The harness's stop is `kill(pid, SIGTERM)`, sent once.
    fn send_term_if_stopping(&self) {
        if !self.process.stop_requested() || self.term_sent.get() {
            return;
        }
        self.term_sent.set(true);
        let sent = self
            .kernel
            .receiver
            .borrow_mut()
            .as_mut()
            .map(|s| s.kill(SIGTERM));
        assert!(
            matches!(sent, Some(Ok(_))),
            "kill of a standard signal succeeds: {sent:?}"
        );
    }

    fn next(&self) -> Option<Delivery> {
        self.kernel
            .receiver
            .borrow_mut()
            .as_mut()
            .and_then(SigPending::dequeue)
    }

    /// Until a signal arrives or the harness stops the process.
    async fn wait(&self) {
        tokio::select! {
            biased;
            () = self.kernel.wake.notified() => {}
            () = self.process.stopping(), if !self.term_sent.get() => {}
        }
    }

    /// Runs `delivery`'s handler at `depth` (0: from `pause()`), with what interrupts it.
    fn deliver(&self, delivery: Delivery, depth: u32) -> Pin<Box<dyn Future<Output = Flow> + '_>> {
        Box::pin(async move {
            if delivery.signo == SIGTERM {
                if depth > 0 {
                    self.env.note_with(
                        RECEIVER,
                        "shutdown.handler_interrupted",
                        format!("{depth} handler(s) never return"),
                    );
                }
                if self.config.drain_on_sigterm {
                    drain(&self.env, &self.process, &self.kernel, self.config.handler_ms).await;
                }
                shut_down(&self.env, &self.kernel);
                return Flow::Exit;
            }
            if depth >= NESTED_HANDLERS_MAX {
                let message = format!(
                    "killed by SIGSEGV: no stack left for a signal frame ({depth} nested handlers, RLIMIT_STACK 8 MiB)"
                );
                self.env.exit(RECEIVER, SIGSEGV_EXIT_STATUS, &message);
                return Flow::Exit;
            }
            if depth > 0 {
                let detail = format!("{} interrupts {depth} handler(s)", delivery.signo);
                self.env.note_with(RECEIVER, "handler.nested", detail);
            }
            self.kernel.in_handler.set(self.kernel.in_handler.get() + 1);
            let id = begin(&self.env, &delivery);
            if let Flow::Exit = self.work(depth).await {
                return Flow::Exit;
            }
            if let Some(id) = id {
                let consumer = RECEIVER.into();
                self.env.record(RECEIVER, EventKind::Effect { id, consumer });
            }
            self.kernel.in_handler.set(self.kernel.in_handler.get() - 1);
            if let Some(state) = self.kernel.receiver.borrow_mut().as_mut() {
                state.handler_returned(delivery.signo);
            }
            Flow::Continue
        })
    }

    /// The handler's `handler_ms` of work; time spent in nested handlers does not count, as
    /// the interrupted handler is suspended meanwhile.
    async fn work(&self, depth: u32) -> Flow {
        let mut remaining = Duration::from_millis(self.config.handler_ms);
        loop {
            self.send_term_if_stopping();
            if let Some(inner) = self.next() {
                if let Flow::Exit = self.deliver(inner, depth + 1).await {
                    return Flow::Exit;
                }
                continue;
            }
            if remaining.is_zero() {
                return Flow::Continue;
            }
            let started = self.env.now().0;
            tokio::select! {
                biased;
                () = tokio::time::sleep(remaining) => remaining = Duration::ZERO,
                () = self.kernel.wake.notified() => {}
                () = self.process.stopping(), if !self.term_sent.get() => {}
            }
            let spent = Duration::from_micros(self.env.now().0.saturating_sub(started));
            remaining = remaining.saturating_sub(spent);
        }
    }
}

/// The message a handler run stands for, recorded as delivered: its `si_value`; for a
/// `kill`, which has none, the send the pending instance came from (the observer's
/// knowledge: the program only learns that a signal came). An instance pending without its
/// siginfo from a `sigqueue` stands for no message the handler can name.
fn begin(env: &Env, delivery: &Delivery) -> Option<MsgId> {
    let id = match (delivery.value, delivery.origin) {
        (Some(value), _) => MsgId(u64::from(value)),
        (None, Some(origin)) => MsgId(origin),
        (None, None) => {
            env.note_with(RECEIVER, "handler.no_value", format!("{}", delivery.signo));
            return None;
        }
    };
    env.record(
        RECEIVER,
        EventKind::Deliver {
            id,
            attempt: 1,
            consumer: RECEIVER.into(),
            partition: Some(delivery.signo.to_string().into()),
            node: None,
            offset: None,
        },
    );
    Some(id)
}

/// `sigprocmask(SIG_BLOCK, all)`, then `sigtimedwait(all, {0, 0})` until EAGAIN: every signal
/// still pending is taken, in delivery order, and handled before the exit (all blocked, so
/// nothing nests).
async fn drain(env: &Env, process: &Process, kernel: &Kernel, handler_ms: u64) {
    let mut drained = 0;
    loop {
        let next = kernel
            .receiver
            .borrow_mut()
            .as_mut()
            .and_then(SigPending::take_waited);
        let Some(delivery) = next else { break };
        drained += 1;
        kernel.in_handler.set(kernel.in_handler.get() + 1);
        if let Some(id) = begin(env, &delivery) {
            process.sleep(Duration::from_millis(handler_ms)).await;
            let consumer = RECEIVER.into();
            env.record(RECEIVER, EventKind::Effect { id, consumer });
        }
        kernel.in_handler.set(kernel.in_handler.get() - 1);
    }
    env.note_with(
        RECEIVER,
        "shutdown.drained",
        format!("{drained} pending signal(s) handled before exit"),
    );
}

/// SIGTERM's handler: the program exits, and the signals still pending exit with it.
fn shut_down(env: &Env, kernel: &Kernel) {
    let discarded = kernel
        .receiver
        .borrow_mut()
        .as_mut()
        .map_or(0, SigPending::discard);
    if discarded > 0 {
        env.note_with(
            RECEIVER,
            "shutdown.pending_discarded",
            format!("{discarded} signal(s) still pending"),
        );
    }
    env.note(RECEIVER, "shutdown.on_sigterm");
}
