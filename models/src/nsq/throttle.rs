//! A consumer's flow control: go-nsq's RDY accounting over its live connections
//! ([`super::rdy`]), its backoff after handler errors ([`super::backoff`]), and the
//! connections RDY is sent on.

use super::client::ClientConfig;
use super::link::Sender;
use super::protocol::Command;
use super::rdy::{ConnKey, Phase, Rdy, Sends, REDISTRIBUTE_INTERVAL};
use sim::{Env, Process};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

/// A consumer's RDY: go-nsq's accounting over the live connections ([`super::rdy`]), its
/// backoff after handler errors, and the connections to send RDY on.
pub struct Throttle {
    rdy: RefCell<Rdy>,
    backoff: RefCell<Option<super::backoff::Backoff>>,
    senders: RefCell<std::collections::BTreeMap<ConnKey, Sender>>,
    next: Cell<ConnKey>,
    /// Wakes the RDY loop when a retry after ErrOverMaxInFlight is scheduled.
    wake: tokio::sync::Notify,
}

impl Throttle {
    pub(super) fn new(config: &ClientConfig) -> Rc<Throttle> {
        Rc::new(Throttle {
            rdy: RefCell::new(Rdy::new(config.max_in_flight)),
            backoff: RefCell::new(
                config
                    .backoff
                    .map(|(multiplier, max)| super::backoff::Backoff::new(multiplier, max)),
            ),
            senders: RefCell::new(std::collections::BTreeMap::new()),
            next: Cell::new(0),
            wake: tokio::sync::Notify::new(),
        })
    }

    fn phase(&self) -> Phase {
        match self.backoff.borrow().as_ref() {
            Some(b) if b.in_timeout() => Phase::BackoffTimeout,
            Some(b) if b.backing_off() => Phase::Backoff,
            _ => Phase::Normal,
        }
    }

    /// Sends the RDY counts the accounting decided.
    fn apply(&self, sends: Sends, retry_before: Option<Duration>) {
        let senders = self.senders.borrow();
        for (key, count) in sends {
            if let Some(sender) = senders.get(&key) {
                sender.send(&Command::Rdy(count));
            }
        }
        if self.rdy.borrow().next_retry() != retry_before {
            self.wake.notify_one();
        }
    }

    fn update(&self, f: impl FnOnce(&mut Rdy, Phase) -> Sends) {
        let phase = self.phase();
        let before = self.rdy.borrow().next_retry();
        let sends = f(&mut self.rdy.borrow_mut(), phase);
        self.apply(sends, before);
    }

    /// A connection is subscribed: it gets its share, and the others re-check theirs.
    pub(super) fn connected(&self, sender: Sender, max_rdy: i64, now: Duration) -> ConnKey {
        let key = self.next.get();
        self.next.set(key + 1);
        self.senders.borrow_mut().insert(key, sender);
        self.update(|rdy, phase| rdy.connected(key, max_rdy, now, phase));
        key
    }

    /// Whether connection `key` starts with no RDY: more connections than max_in_flight.
    pub(super) fn starts_starved(&self, key: ConnKey) -> bool {
        self.phase() == Phase::Normal && self.rdy.borrow().rdy_of(key) == Some(0)
    }

    pub(super) fn closed(&self, key: ConnKey) {
        self.senders.borrow_mut().remove(&key);
        self.rdy.borrow_mut().closed(key);
    }

    pub(super) fn message(&self, key: ConnKey, now: Duration) {
        self.update(|rdy, phase| rdy.message(key, now, phase));
    }

    /// go-nsq's rdyLoop: redistribution every 5 s, and retries after ErrOverMaxInFlight.
    pub(super) async fn rdy_loop(self: Rc<Self>, env: Env, host: String, process: Process) {
        let now = || Duration::from_micros(env.now().0);
        let mut next_redistribute = now() + REDISTRIBUTE_INTERVAL;
        loop {
            let wake_at = self
                .rdy
                .borrow()
                .next_retry()
                .map_or(next_redistribute, |r| r.min(next_redistribute));
            tokio::select! {
                _ = process.sleep(wake_at.saturating_sub(now())) => {}
                _ = self.wake.notified() => {}
            }
            let at = now();
            self.update(|rdy, _| rdy.retries(at));
            if at >= next_redistribute {
                let mut moved = false;
                self.update(|rdy, phase| {
                    let sends = rdy.redistribute(at, phase, &mut *env.rng());
                    moved = !sends.is_empty();
                    sends
                });
                if moved {
                    env.note(&host, "consumer.rdy_redistributed");
                }
                next_redistribute = at + REDISTRIBUTE_INTERVAL;
            }
        }
    }

    /// A message finished (`success`) or was requeued after a handler error.
    pub(super) fn signal(self: &Rc<Self>, success: bool, env: &Env, host: &str, process: &Process) {
        let now = Duration::from_micros(env.now().0);
        let action = match self.backoff.borrow_mut().as_mut() {
            Some(backoff) => backoff.signal(success, now),
            None => return,
        };
        match action {
            super::backoff::Action::Nothing => {}
            super::backoff::Action::Restore => {
                env.note(host, "consumer.backoff_ended");
                self.update(|rdy, _| rdy.restore(now));
            }
            super::backoff::Action::Pause { until } => {
                env.note(host, "consumer.backoff");
                self.update(|rdy, _| rdy.zero_all(now));
                let (throttle, env, process) = (self.clone(), env.clone(), process.clone());
                tokio::task::spawn_local(async move {
                    process
                        .sleep(until.saturating_sub(Duration::from_micros(env.now().0)))
                        .await;
                    if !throttle.backoff.borrow_mut().as_mut().is_some_and(|b| b.resume()) {
                        return;
                    }
                    // Test the waters: RDY 1 on one connection chosen at random. If it stays
                    // silent, redistribution moves it after LowRdyIdleTimeout.
                    let at = Duration::from_micros(env.now().0);
                    throttle.update(|rdy, _| rdy.test_waters(at, &mut *env.rng()));
                });
            }
        }
    }
}
