//! One process's signal state in the Linux kernel, sans I/O: what `kill(2)`/`sigqueue(3)` do to
//! it, which signal is delivered next, and what is blocked while a handler runs.
//!
//! From signal(7), sigqueue(3), sigaction(2) and getrlimit(2), checked against the kernel's
//! `kernel/signal.c` (`__send_signal_locked`, `legacy_queue`, `next_signal`, `collect_signal`):
//! - a standard signal (1..=31) has one pending bit: sending it while it is pending does
//!   nothing, and the sender is still told success ("only one instance of the signal is marked
//!   as pending", signal(7));
//! - a real-time signal queues every instance, each with its `si_value`; "multiple real-time
//!   signals of the same type are delivered in the order they were sent", and among pending
//!   signals the lowest-numbered goes first (so every standard signal before any real-time
//!   one, as Linux does);
//! - queued instances count against RLIMIT_SIGPENDING of the receiver's real user; past it
//!   `sigqueue` of a real-time signal fails with EAGAIN ("the limit of signals which may be
//!   queued has been reached", sigqueue(3)), while a standard signal (and any signal sent by
//!   `kill`) is still made pending, only without its `siginfo` (the kernel's "silent loss of
//!   information");
//! - while a handler runs, its signal is blocked (unless `SA_NODEFER`, sigaction(2)), so one
//!   more instance can wait as pending and is delivered when the handler returns; other
//!   signals are not blocked (an empty `sa_mask`), and with `SA_NODEFER` neither is its own:
//!   a signal that becomes deliverable during a handler interrupts it, and its handler runs
//!   nested on the same stack (the caller models the nesting);
//! - `kill(2)` carries no value; the simulation still knows which send an instance stands
//!   for (its `origin`), for the history only: the program never sees it;
//! - SIGKILL and SIGSTOP cannot be caught: `sigaction` on them is EINVAL.
//!
//! Not modelled: the synchronous signals (SIGSEGV, SIGBUS, ...) the kernel delivers before the
//! others, and thread-directed signals (one thread receives here).

// A sans-I/O core: its functions stay within clippy.toml's too-many-lines-threshold.
#![deny(clippy::too_many_lines)]

use super::signo::Signo;
use std::collections::VecDeque;

/// Bound on RLIMIT_SIGPENDING here, so a typo cannot build an unbounded queue.
pub const RLIMIT_SIGPENDING_MAX: u32 = 100_000;

/// The errors of `sigqueue(3)` and `sigaction(2)` this state can give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Errno {
    /// "The limit of signals which may be queued has been reached."
    Eagain,
    /// An invalid signal, or a handler for SIGKILL or SIGSTOP.
    Einval,
}

impl Errno {
    pub fn name(self) -> &'static str {
        match self {
            Errno::Eagain => "EAGAIN",
            Errno::Einval => "EINVAL",
        }
    }
}

/// What a successful send did; the sender sees 0 in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// A new instance is pending, with its value.
    Queued {
        /// Instances of the same signal that were already waiting ahead of it.
        behind: usize,
    },
    /// A standard signal already pending: this instance is gone (`legacy_queue`).
    Coalesced,
    /// Pending, but over the limit, so without its `siginfo`: the handler sees no value.
    InfoLost,
}

/// A signal taken for delivery: its handler runs with the signal blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub signo: Signo,
    /// `si_value.sival_int`; `None` when the instance was pending without its `siginfo`.
    pub value: Option<u32>,
    /// Whether a handler is installed; if not, the default action applies (for SIGUSR1,
    /// SIGTERM and the real-time signals: terminate).
    pub caught: bool,
    /// The send this instance stands for when it came by [`SigPending::kill_from`]: what
    /// the observer knows and the program does not (a `kill` has no value).
    pub origin: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    signo: Signo,
    value: Option<u32>,
    origin: Option<u64>,
}

/// Signal numbers are 1..=64: one slot each.
const SIGNALS: usize = 64;
/// Handlers running at once, at most: above the receiver's own bound on nesting
/// (`receiver::NESTED_HANDLERS_MAX`), so reaching it is a model error.
const FRAMES_MAX: usize = 4096;

#[derive(Debug)]
pub struct SigPending {
    /// One bit per pending signal (`sigmask(sig)`).
    pending: u64,
    /// Queued instances with their `siginfo`, in send order (the kernel's `sigqueue` list).
    queue: VecDeque<Entry>,
    blocked: u64,
    /// Signals with a handler installed by `sigaction`.
    caught: u64,
    /// Of those, the ones installed with `SA_NODEFER`: not blocked during their handler.
    nodefer: u64,
    /// Each caught signal's `sa_mask`: also blocked while its handler runs.
    masks: [u64; SIGNALS],
    /// The handlers running, innermost last, each with the mask its `sigreturn` restores
    /// (the kernel saves it in the signal frame).
    frames: Vec<(Signo, u64)>,
    /// The origin of a pending bit that has no queued instance (pending without siginfo).
    bit_origin: [Option<u64>; SIGNALS],
    rlimit_sigpending: u32,
}

impl SigPending {
    pub fn new(rlimit_sigpending: u32) -> SigPending {
        assert!((1..=RLIMIT_SIGPENDING_MAX).contains(&rlimit_sigpending));
        SigPending {
            pending: 0,
            queue: VecDeque::new(),
            blocked: 0,
            caught: 0,
            nodefer: 0,
            masks: [0; SIGNALS],
            frames: Vec::new(),
            bit_origin: [None; SIGNALS],
            rlimit_sigpending,
        }
    }

    /// `sigaction(signo, handler)`, without `SA_NODEFER`.
    pub fn sigaction(&mut self, signo: Signo) -> Result<(), Errno> {
        self.sigaction_with(signo, false, 0)
    }

    /// `sigaction(signo, handler)` with `sa_flags` `SA_NODEFER` or not, and `sa_mask` (a set
    /// of [`Signo::bit`]s).
    pub fn sigaction_with(&mut self, signo: Signo, nodefer: bool, sa_mask: u64) -> Result<(), Errno> {
        if !signo.can_be_caught() {
            return Err(Errno::Einval);
        }
        self.caught |= signo.bit();
        self.masks[signo.index()] = sa_mask;
        if nodefer {
            self.nodefer |= signo.bit();
        } else {
            self.nodefer &= !signo.bit();
        }
        Ok(())
    }

    /// `sigqueue(pid, signo, value)`: `si_code` SI_QUEUE, so the limit applies to every
    /// signal, and only a real-time one fails on it.
    pub fn sigqueue(&mut self, signo: Signo, value: u32) -> Result<Sent, Errno> {
        self.send(signo, (Some(value), None), false)
    }

    /// `kill(pid, signo)`: `si_code` SI_USER; a standard signal may go past the limit (the
    /// kernel's `override_rlimit`), and a real-time one past it loses only its `siginfo`.
    pub fn kill(&mut self, signo: Signo) -> Result<Sent, Errno> {
        self.send(signo, (None, None), true)
    }

    /// [`SigPending::kill`] for the send `origin` (the history's message): a real-time
    /// signal still queues each instance, a standard one still coalesces.
    pub fn kill_from(&mut self, signo: Signo, origin: u64) -> Result<Sent, Errno> {
        self.send(signo, (None, Some(origin)), true)
    }

    fn send(
        &mut self,
        signo: Signo,
        (value, origin): (Option<u32>, Option<u64>),
        by_kill: bool,
    ) -> Result<Sent, Errno> {
        if !signo.is_valid() {
            return Err(Errno::Einval);
        }
        if !signo.is_realtime() && self.pending & signo.bit() != 0 {
            return Ok(Sent::Coalesced);
        }
        let behind = self.queue.iter().filter(|e| e.signo == signo).count();
        let override_rlimit = by_kill && !signo.is_realtime();
        if override_rlimit || self.queue.len() < self.rlimit_sigpending as usize {
            self.queue.push_back(Entry { signo, value, origin });
            self.pending |= signo.bit();
            assert!(self.queue.len() <= self.rlimit_sigpending as usize + 64);
            return Ok(Sent::Queued { behind });
        }
        if signo.is_realtime() && !by_kill {
            return Err(Errno::Eagain);
        }
        if self.pending & signo.bit() == 0 {
            self.bit_origin[signo.index()] = origin;
        }
        self.pending |= signo.bit();
        Ok(Sent::InfoLost)
    }

    /// The next signal to deliver, if one is pending and not blocked: the lowest-numbered,
    /// its oldest instance. Its handler then runs with it blocked until
    /// [`SigPending::handler_returned`] (the kernel's `dequeue_signal`).
    pub fn dequeue(&mut self) -> Option<Delivery> {
        let ready = self.pending & !self.blocked;
        if ready == 0 {
            return None;
        }
        let signo = Signo(ready.trailing_zeros() as u8 + 1);
        let (value, origin) = match self.queue.iter().position(|e| e.signo == signo) {
            Some(at) => {
                let entry = self.queue.remove(at).expect("found above");
                (entry.value, entry.origin)
            }
            // Pending without its siginfo: the first such send's origin, if it had one.
            None => (None, self.bit_origin[signo.index()].take()),
        };
        if !self.queue.iter().any(|e| e.signo == signo) {
            self.pending &= !signo.bit();
            // A bit-only instance merged into a queued one goes with the last of them.
            self.bit_origin[signo.index()] = None;
        }
        let caught = self.caught & signo.bit() != 0;
        if caught {
            assert!(self.frames.len() < FRAMES_MAX, "the caller bounds the nesting");
            self.frames.push((signo, self.blocked));
            self.blocked |= self.masks[signo.index()];
            if self.nodefer & signo.bit() == 0 {
                self.blocked |= signo.bit();
            }
        }
        Some(Delivery {
            signo,
            value,
            caught,
            origin,
        })
    }

    /// `sigreturn`: the handler's signal is unblocked (unless `SA_NODEFER` left it so), and
    /// what waited for it can come.
    pub fn handler_returned(&mut self, signo: Signo) {
        let frame = self.frames.pop();
        assert!(
            frame.is_some_and(|(running, _)| running == signo),
            "{signo} returned from a handler it was not in: {frame:?}"
        );
        self.blocked = frame.expect("checked").1;
    }

    /// `sigtimedwait(all, {0, 0})`: the next pending signal whether blocked or not, taken
    /// without running a handler; `None` is its EAGAIN.
    pub fn take_waited(&mut self) -> Option<Delivery> {
        let saved = self.blocked;
        self.blocked = 0;
        let caught = self.caught;
        self.caught = 0; // no handler runs, so nothing is blocked or framed
        let taken = self.dequeue();
        (self.blocked, self.caught) = (saved, caught);
        taken
    }

    /// Instances pending: the queued ones, plus pending bits without a queued instance.
    pub fn pending_count(&self) -> usize {
        let queued_bits = self.queue.iter().fold(0u64, |bits, e| bits | e.signo.bit());
        self.queue.len() + (self.pending & !queued_bits).count_ones() as usize
    }

    /// The process exits: whatever was pending goes with it. Returns how many instances.
    pub fn discard(&mut self) -> usize {
        let count = self.pending_count();
        self.queue.clear();
        self.pending = 0;
        count
    }
}

#[cfg(test)]
#[path = "pending_tests.rs"]
mod tests;
