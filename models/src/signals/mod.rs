//! `signals`: Linux signals as a message queue (issue 15). A sender process `sigqueue`s one
//! signal per message, the message id in `si_value`, to a receiver process whose handler takes
//! time. The kernel's per-process signal state is the queue:
//! - standard signals (SIGUSR1, SIGUSR2) coalesce: one pending bit per signal, so a send while
//!   one is pending is lost, although `sigqueue` returned 0 (the `ok` publish is then lost);
//! - real-time signals (SIGRTMIN..) queue each instance with its value, delivered once each,
//!   FIFO per signal and lowest signal first, up to RLIMIT_SIGPENDING, past which `sigqueue`
//!   fails with EAGAIN (a `fail` publish: the sender knows);
//! - a signal is blocked while its handler runs, unless `SA_NODEFER` (`sa_nodefer`); another
//!   signal (or its own with `SA_NODEFER`) interrupts a running handler, whose handler then
//!   runs nested, up to what the stack holds; SIGTERM (the harness's `stop`) runs the
//!   receiver's shutdown code, which discards what is still pending when it exits; SIGKILL
//!   (`kill`) and SIGSTOP (`pause`) cannot be caught;
//! - with `send = "kill"` the signal carries no value: a real-time one still queues each
//!   instance, and past RLIMIT_SIGPENDING `kill` returns 0 and the instance merges.
//!
//! References: signal(7), sigqueue(3), sigaction(2), getrlimit(2) (RLIMIT_SIGPENDING), and the
//! kernel's `kernel/signal.c`. Files: `signo.rs` (signal numbers), `pending.rs` (the kernel's
//! state, sans I/O; tests in `pending_tests.rs`), `design.rs` (config, the sender,
//! promise) and `receiver.rs` (the receiver: handlers, their nesting, the shutdown).

pub mod design;
pub mod pending;
pub mod receiver;
pub mod signo;

pub use design::{build, Config, Kind, RECEIVER, SENDER};
