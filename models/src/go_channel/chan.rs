//! Go channel semantics, sans I/O (reference §6, from the Go spec):
//! - a buffered channel is a FIFO of `capacity`; a send blocks while it is full;
//! - an unbuffered channel (`capacity` 0) is a rendezvous: the send completes only when a
//!   receiver has taken the value;
//! - a receive from a closed channel proceeds at once: buffered values first, then the zero
//!   value with `ok == false`, forever;
//! - sending on a closed channel, or closing it twice, panics (a sender blocked on a full
//!   channel panics as soon as it is closed: `closechan` wakes it and `chansend` panics).
//!
//! [`ChanCore`] holds the rules; [`GoChan`] waits on them inside one simulated process. The
//! two panics come back as [`Panic`] values: the program decides what Go's runtime does with
//! them (exit the whole process with status 2), not this file.

// A sans-I/O core: its functions stay within clippy.toml's too-many-lines-threshold (issue 9).
#![deny(clippy::too_many_lines)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use tokio::sync::Notify;

/// Bound on buffered values, whatever the configured capacity.
pub const CHANNEL_CAPACITY_MAX: usize = 1 << 20;

/// A channel operation Go's runtime answers with a panic; the text is the runtime's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Panic {
    SendOnClosed,
    CloseOfClosed,
}

impl Panic {
    pub fn message(self) -> &'static str {
        match self {
            Panic::SendOnClosed => "panic: send on closed channel",
            Panic::CloseOfClosed => "panic: close of closed channel",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum TrySend<T> {
    /// Accepted; the ticket is the value's position in send order (for rendezvous).
    Sent {
        ticket: u64,
    },
    Full(T),
    /// Go panics here: "send on closed channel".
    Closed(T),
}

#[derive(Debug, PartialEq, Eq)]
pub enum TryRecv<T> {
    Value(T),
    Empty,
    /// Closed and drained: the receive yields the zero value with `ok == false`.
    Closed,
}

#[derive(Debug)]
pub struct ChanCore<T> {
    buffer: VecDeque<T>,
    capacity: usize,
    closed: bool,
    sent: u64,
    received: u64,
}

impl<T> ChanCore<T> {
    pub fn new(capacity: usize) -> ChanCore<T> {
        assert!(capacity <= CHANNEL_CAPACITY_MAX);
        ChanCore {
            buffer: VecDeque::with_capacity(capacity),
            capacity,
            closed: false,
            sent: 0,
            received: 0,
        }
    }

    /// How many values may wait in the buffer. An unbuffered channel holds the one value a
    /// sender is offering until a receiver takes it.
    fn slots(&self) -> usize {
        self.capacity.max(1)
    }

    pub fn try_send(&mut self, value: T) -> TrySend<T> {
        if self.closed {
            return TrySend::Closed(value);
        }
        if self.buffer.len() >= self.slots() {
            return TrySend::Full(value);
        }
        self.buffer.push_back(value);
        self.sent += 1;
        assert!(self.buffer.len() <= self.slots());
        TrySend::Sent { ticket: self.sent }
    }

    /// Whether the value with `ticket` has been handed over: always for a buffered channel
    /// (the buffer took it), only once received for an unbuffered one.
    pub fn handed_over(&self, ticket: u64) -> bool {
        self.capacity > 0 || self.received >= ticket
    }

    pub fn try_recv(&mut self) -> TryRecv<T> {
        match self.buffer.pop_front() {
            Some(value) => {
                self.received += 1;
                TryRecv::Value(value)
            }
            None if self.closed => TryRecv::Closed,
            None => TryRecv::Empty,
        }
    }

    /// A receive would not block: a value is buffered, or the channel is closed.
    pub fn recv_ready(&self) -> bool {
        !self.buffer.is_empty() || self.closed
    }

    /// Closes the channel; closing twice is Go's "close of closed channel" panic.
    pub fn close(&mut self) -> Result<(), Panic> {
        if self.closed {
            return Err(Panic::CloseOfClosed);
        }
        self.closed = true;
        Ok(())
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }
}

/// A channel inside one simulated process. Every channel of the process shares one `wake`,
/// so a `select` can wait for a change on any of them.
pub struct GoChan<T> {
    core: RefCell<ChanCore<T>>,
    wake: Rc<Notify>,
}

impl<T> GoChan<T> {
    pub fn new(capacity: usize, wake: Rc<Notify>) -> GoChan<T> {
        GoChan {
            core: RefCell::new(ChanCore::new(capacity)),
            wake,
        }
    }

    /// `ch <- value`: blocks while full (and, unbuffered, until received). A closed channel,
    /// or one closed while the send waits, is Go's panic. Returns whether the send had to wait.
    pub async fn send(&self, value: T) -> Result<bool, Panic> {
        let mut value = value;
        let mut waited = false;
        let ticket = loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let attempt = self.core.borrow_mut().try_send(value);
            match attempt {
                TrySend::Sent { ticket } => break ticket,
                TrySend::Full(back) => value = back,
                TrySend::Closed(_) => return Err(Panic::SendOnClosed),
            }
            waited = true;
            notified.await;
        };
        self.wake.notify_waiters();
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.core.borrow().handed_over(ticket) {
                return Ok(waited);
            }
            waited = true;
            notified.await;
        }
    }

    /// `v, ok := <-ch`: `None` is `ok == false` (closed and drained).
    pub async fn recv(&self) -> Option<T> {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(result) = self.try_recv_now() {
                return result;
            }
            notified.await;
        }
    }

    /// A receive that does not block: `None` if it would block, `Some(None)` for the
    /// closed-channel zero value, `Some(Some(v))` for a value.
    pub fn try_recv_now(&self) -> Option<Option<T>> {
        let result = self.core.borrow_mut().try_recv();
        match result {
            TryRecv::Value(value) => {
                self.wake.notify_waiters();
                Some(Some(value))
            }
            TryRecv::Closed => Some(None),
            TryRecv::Empty => None,
        }
    }

    pub fn recv_ready(&self) -> bool {
        self.core.borrow().recv_ready()
    }

    pub fn close(&self) -> Result<(), Panic> {
        self.core.borrow_mut().close()?;
        self.wake.notify_waiters();
        Ok(())
    }

    pub fn is_closed(&self) -> bool {
        self.core.borrow().is_closed()
    }

    pub fn len(&self) -> usize {
        self.core.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.core.borrow().is_empty()
    }

    /// Waits until any channel sharing this one's `wake` changes.
    pub async fn changed(&self) {
        self.wake.notified().await;
    }

    pub fn wake(&self) -> &Rc<Notify> {
        &self.wake
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_and_full() {
        let mut ch = ChanCore::new(2);
        assert_eq!(ch.try_send(1), TrySend::Sent { ticket: 1 });
        assert_eq!(ch.try_send(2), TrySend::Sent { ticket: 2 });
        assert_eq!(ch.try_send(3), TrySend::Full(3));
        assert_eq!(ch.try_recv(), TryRecv::Value(1));
        assert_eq!(ch.try_recv(), TryRecv::Value(2));
        assert_eq!(ch.try_recv(), TryRecv::Empty);
    }

    #[test]
    fn closed_channel_drains_then_yields_zero_values_forever() {
        let mut ch = ChanCore::new(4);
        ch.try_send(7);
        ch.close().unwrap();
        assert!(ch.recv_ready());
        assert_eq!(ch.try_recv(), TryRecv::Value(7));
        for _ in 0..3 {
            assert_eq!(ch.try_recv(), TryRecv::Closed);
        }
        assert_eq!(ch.try_send(8), TrySend::Closed(8));
    }

    #[test]
    fn closing_twice_is_the_runtime_panic() {
        let mut ch = ChanCore::<u8>::new(1);
        assert_eq!(ch.close(), Ok(()));
        assert_eq!(ch.close(), Err(Panic::CloseOfClosed));
        assert_eq!(Panic::CloseOfClosed.message(), "panic: close of closed channel");
    }

    #[test]
    fn a_send_on_a_closed_full_channel_is_the_runtime_panic() {
        let mut ch = ChanCore::new(1);
        assert_eq!(ch.try_send(1), TrySend::Sent { ticket: 1 });
        assert_eq!(ch.try_send(2), TrySend::Full(2), "the sender waits");
        ch.close().unwrap();
        assert_eq!(ch.try_send(2), TrySend::Closed(2), "woken by close, it panics");
        assert_eq!(
            ch.try_recv(),
            TryRecv::Value(1),
            "the buffer is still there to drain"
        );
    }

    #[test]
    fn unbuffered_send_is_handed_over_only_when_received() {
        let mut ch = ChanCore::new(0);
        let TrySend::Sent { ticket } = ch.try_send(5) else {
            panic!()
        };
        assert!(!ch.handed_over(ticket));
        assert_eq!(ch.try_send(6), TrySend::Full(6), "a second sender waits its turn");
        assert_eq!(ch.try_recv(), TryRecv::Value(5));
        assert!(ch.handed_over(ticket));
    }

    proptest::proptest! {
        /// Whatever interleaving of sends and receives, values come out in send order and the
        /// buffer never exceeds its capacity.
        #[test]
        fn fifo_under_any_interleaving(ops in proptest::collection::vec(proptest::bool::ANY, 0..200), capacity in 1usize..8) {
            let mut ch = ChanCore::new(capacity);
            let (mut next, mut expected) = (0u32, 0u32);
            for send in ops {
                if send {
                    if let TrySend::Sent { .. } = ch.try_send(next) { next += 1; }
                } else if let TryRecv::Value(v) = ch.try_recv() {
                    proptest::prop_assert_eq!(v, expected);
                    expected += 1;
                }
                proptest::prop_assert!(ch.len() <= capacity);
            }
        }
    }
}
