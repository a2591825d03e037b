//! go-nsq's consumer backoff, sans I/O (reference §1.4; go-nsq `consumer.go`
//! `startStopContinueBackoff`, `backoff`, `resume`): a consumer-wide throttle on RDY after
//! handler errors.
//!
//! - A failed message (REQ with backoff) raises the counter, as long as the next delay would
//!   not pass `max` (go-nsq's ExponentialStrategy: `multiplier × 2^counter`). A success lowers
//!   it.
//! - While the counter is above zero the consumer backs off: RDY 0 on every connection for
//!   the delay, then RDY 1 on one connection chosen at random ("testing the waters").
//! - Signals that arrive while a backoff timeout runs are ignored.
//! - When a success brings the counter to zero, every connection gets its full RDY back.

// A sans-I/O core: its functions stay within clippy.toml's too-many-lines-threshold (issue 9).
#![deny(clippy::too_many_lines)]

use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// RDY 0 everywhere; call [`Backoff::resume`] at `until`.
    Pause {
        until: Duration,
    },
    /// Leave backoff: full RDY on every connection.
    Restore,
}

#[derive(Clone, Debug)]
pub struct Backoff {
    multiplier: Duration,
    max: Duration,
    counter: u32,
    /// While set, a backoff timeout runs and signals are ignored.
    paused_until: Option<Duration>,
}

impl Backoff {
    pub fn new(multiplier: Duration, max: Duration) -> Backoff {
        Backoff {
            multiplier,
            max,
            counter: 0,
            paused_until: None,
        }
    }

    fn delay(&self, counter: u32) -> Duration {
        self.multiplier
            .saturating_mul(1u32.checked_shl(counter).unwrap_or(u32::MAX))
    }

    pub fn counter(&self) -> u32 {
        self.counter
    }

    /// Whether the counter is above zero (go-nsq `inBackoff`).
    pub fn backing_off(&self) -> bool {
        self.counter > 0
    }

    /// Whether a backoff timeout runs (go-nsq `inBackoffTimeout`).
    pub fn in_timeout(&self) -> bool {
        self.paused_until.is_some()
    }

    /// A message finished (`success`) or was requeued with backoff.
    pub fn signal(&mut self, success: bool, now: Duration) -> Action {
        if self.paused_until.is_some() {
            return Action::Nothing; // go-nsq: ignored while in a backoff timeout
        }
        let mut updated = false;
        if success {
            if self.counter > 0 {
                self.counter -= 1;
                updated = true;
            }
        } else if self.delay(self.counter + 1) <= self.max {
            self.counter += 1;
            updated = true;
        }
        if self.counter == 0 && updated {
            return Action::Restore;
        }
        if self.counter > 0 {
            let until = now + self.delay(self.counter).min(self.max);
            self.paused_until = Some(until);
            return Action::Pause { until };
        }
        Action::Nothing
    }

    /// The timeout ended: test the waters with RDY 1 on one connection (returns true), unless
    /// the backoff has ended meanwhile.
    pub fn resume(&mut self) -> bool {
        self.paused_until = None;
        self.counter > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn failures_back_off_exponentially_successes_count_down_and_restore() {
        let mut b = Backoff::new(S, 120 * S);
        assert_eq!(b.signal(false, Duration::ZERO), Action::Pause { until: 2 * S });
        assert_eq!(b.signal(false, S), Action::Nothing, "ignored during the timeout");
        assert!(b.resume(), "test the waters");
        assert_eq!(
            b.signal(false, 2 * S),
            Action::Pause { until: 6 * S },
            "counter 2: 4 s"
        );
        assert!(b.resume());
        assert_eq!(
            b.signal(true, 6 * S),
            Action::Pause { until: 8 * S },
            "back to counter 1: 2 s more"
        );
        assert!(b.resume());
        assert_eq!(b.signal(true, 8 * S), Action::Restore);
        assert!(!b.backing_off());
        assert_eq!(b.signal(true, 9 * S), Action::Nothing);
    }

    #[test]
    fn the_counter_stops_where_the_delay_would_pass_the_maximum() {
        let mut b = Backoff::new(S, 120 * S);
        for _ in 0..20 {
            b.signal(false, Duration::ZERO);
            b.resume();
        }
        assert_eq!(b.counter(), 6, "2^6 s = 64 s fits in 120 s; 2^7 s does not");
    }
}
