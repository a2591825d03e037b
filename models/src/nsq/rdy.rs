//! go-nsq's consumer RDY accounting, sans I/O (go-nsq `consumer.go`: `perConnMaxInFlight`,
//! `maybeUpdateRDY`, `updateRDY`, `sendRDY`, `redistributeRDY`; reference §1.4).
//!
//! - A connection's RDY is credit: each message it delivers spends one, and the consumer's
//!   total over all connections never passes `max_in_flight`.
//! - Each connection is given `max(1, max_in_flight / connections)`, capped by what the total
//!   leaves. A connection that would get more than the total allows gets nothing and tries
//!   again 5 s later (`ErrOverMaxInFlight`), so with more connections than `max_in_flight`
//!   some connections start starved.
//! - After each message a connection is topped up when its credit runs low (at most 1 left,
//!   under a quarter of what it was given, or more than its share); a new connection makes
//!   every connection re-check its share.
//! - Every 5 s (`RDYRedistributeInterval`), when there are more connections than
//!   `max_in_flight` or the consumer is backing off with several connections, connections
//!   idle for `LowRdyIdleTimeout` (10 s) or unchanged for `LowRdyTimeout` (30 s) give their
//!   RDY up, and the spare credit goes as RDY 1 to connections chosen at random.
//! - While backing off nothing is topped up; backoff sets RDY 0 everywhere, tests the waters
//!   with RDY 1 on one connection, and restores every connection's share when it ends.

// A sans-I/O core: its functions stay within clippy.toml's too-many-lines-threshold (issue 9).
#![deny(clippy::too_many_lines)]

use rand::Rng;
use std::collections::BTreeMap;
use std::time::Duration;

pub type ConnKey = u64;

/// RDY commands to send: (connection, count).
pub type Sends = Vec<(ConnKey, i64)>;

/// go-nsq's RDYRedistributeInterval, LowRdyIdleTimeout and LowRdyTimeout.
pub const REDISTRIBUTE_INTERVAL: Duration = Duration::from_secs(5);
pub const LOW_RDY_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
pub const LOW_RDY_TIMEOUT: Duration = Duration::from_secs(30);
/// The retry after `ErrOverMaxInFlight` on a connection with no RDY.
pub const OVER_MAX_RETRY: Duration = Duration::from_secs(5);

/// Where the consumer's backoff stands (go-nsq `inBackoff`, `inBackoffTimeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Normal,
    /// The backoff counter is above zero, no timeout running.
    Backoff,
    /// A backoff timeout runs: RDY stays 0.
    BackoffTimeout,
}

#[derive(Clone, Debug)]
struct Conn {
    /// Credit left (go-nsq `rdyCount`): set by RDY, spent by messages.
    rdy: i64,
    /// The count last sent (`lastRdyCount`) and when (`lastRdyTimestamp`).
    last_rdy: i64,
    last_rdy_at: Duration,
    last_message_at: Duration,
    /// nsqd's max_rdy_count, from its IDENTIFY response.
    max_rdy: i64,
    /// A pending retry after ErrOverMaxInFlight: (when, count).
    retry: Option<(Duration, i64)>,
}

#[derive(Clone, Debug)]
pub struct Rdy {
    max_in_flight: i64,
    total: i64,
    conns: BTreeMap<ConnKey, Conn>,
}

impl Rdy {
    pub fn new(max_in_flight: i64) -> Rdy {
        Rdy {
            max_in_flight: max_in_flight.max(1),
            total: 0,
            conns: BTreeMap::new(),
        }
    }

    /// go-nsq `perConnMaxInFlight`: max_in_flight over the connections, at least 1.
    fn per_conn(&self) -> i64 {
        let b = self.max_in_flight as f64;
        let s = b / self.conns.len().max(1) as f64;
        s.max(1.0).min(b) as i64
    }

    pub fn total(&self) -> i64 {
        self.total
    }

    pub fn rdy_of(&self, key: ConnKey) -> Option<i64> {
        self.conns.get(&key).map(|c| c.rdy)
    }

    /// A connection is up (IDENTIFY and SUB answered): every connection re-checks its share,
    /// the new one first getting its own.
    pub fn connected(&mut self, key: ConnKey, max_rdy: i64, now: Duration, phase: Phase) -> Sends {
        self.conns.insert(
            key,
            Conn {
                rdy: 0,
                last_rdy: 0,
                last_rdy_at: now,
                last_message_at: now,
                max_rdy: max_rdy.max(1),
                retry: None,
            },
        );
        let mut out = Sends::new();
        let keys: Vec<ConnKey> = self.conns.keys().copied().collect();
        for k in keys {
            self.maybe_update(k, now, phase, &mut out);
        }
        out
    }

    /// The connection closed: its credit goes back to the total.
    pub fn closed(&mut self, key: ConnKey) {
        if let Some(c) = self.conns.remove(&key) {
            self.total -= c.rdy;
        }
    }

    /// A message arrived on `key`.
    pub fn message(&mut self, key: ConnKey, now: Duration, phase: Phase) -> Sends {
        let mut out = Sends::new();
        if let Some(c) = self.conns.get_mut(&key) {
            c.rdy -= 1;
            c.last_message_at = now;
            self.total -= 1;
            self.maybe_update(key, now, phase, &mut out);
        }
        out
    }

    fn maybe_update(&mut self, key: ConnKey, now: Duration, phase: Phase, out: &mut Sends) {
        if phase != Phase::Normal {
            return;
        }
        let Some(c) = self.conns.get(&key) else { return };
        let (remain, last) = (c.rdy, c.last_rdy);
        let count = self.per_conn();
        if remain <= 1 || remain < last / 4 || (count > 0 && count < remain) {
            self.update(key, count, now, out);
        }
    }

    /// go-nsq `updateRDY`: capped by nsqd's max and by what the total leaves.
    fn update(&mut self, key: ConnKey, count: i64, now: Duration, out: &mut Sends) {
        let Some(c) = self.conns.get_mut(&key) else { return };
        c.retry = None;
        let count = count.min(c.max_rdy);
        let rdy = c.rdy;
        let max_possible = self.max_in_flight - self.total + rdy;
        let count = if max_possible > 0 && max_possible < count {
            max_possible
        } else {
            count
        };
        if max_possible <= 0 && count > 0 {
            if rdy == 0 {
                // Starved: try again later, unless another update reaches it first.
                c.retry = Some((now + OVER_MAX_RETRY, count));
            }
            return;
        }
        if count == 0 && c.last_rdy == 0 {
            return;
        }
        self.total += count - rdy;
        c.rdy = count;
        c.last_rdy = count;
        c.last_rdy_at = now;
        out.push((key, count));
    }

    /// When the next retry after ErrOverMaxInFlight is due.
    pub fn next_retry(&self) -> Option<Duration> {
        self.conns
            .values()
            .filter_map(|c| c.retry.map(|(at, _)| at))
            .min()
    }

    /// Retries that are due.
    pub fn retries(&mut self, now: Duration) -> Sends {
        let due: Vec<(ConnKey, i64)> = self
            .conns
            .iter()
            .filter_map(|(k, c)| c.retry.filter(|(at, _)| *at <= now).map(|(_, n)| (*k, n)))
            .collect();
        let mut out = Sends::new();
        for (key, count) in due {
            self.update(key, count, now, &mut out);
        }
        out
    }

    /// go-nsq `redistributeRDY`, run every [`REDISTRIBUTE_INTERVAL`].
    pub fn redistribute(&mut self, now: Duration, phase: Phase, rng: &mut impl Rng) -> Sends {
        let mut out = Sends::new();
        if phase == Phase::BackoffTimeout || self.conns.is_empty() {
            return out;
        }
        let needed =
            self.conns.len() as i64 > self.max_in_flight || (phase == Phase::Backoff && self.conns.len() > 1);
        if !needed {
            return out;
        }
        let mut possible: Vec<ConnKey> = Vec::new();
        let keys: Vec<ConnKey> = self.conns.keys().copied().collect();
        for key in keys {
            let c = &self.conns[&key];
            if c.rdy > 0
                && (now.saturating_sub(c.last_message_at) > LOW_RDY_IDLE_TIMEOUT
                    || now.saturating_sub(c.last_rdy_at) > LOW_RDY_TIMEOUT)
            {
                self.update(key, 0, now, &mut out);
            }
            possible.push(key);
        }
        let limit = if phase == Phase::Backoff {
            1
        } else {
            self.max_in_flight
        };
        let mut available = limit - self.total;
        while !possible.is_empty() && available > 0 {
            available -= 1;
            let key = possible.remove(rng.random_range(0..possible.len()));
            self.update(key, 1, now, &mut out);
        }
        out
    }

    /// A backoff starts: RDY 0 everywhere.
    pub fn zero_all(&mut self, now: Duration) -> Sends {
        let mut out = Sends::new();
        let keys: Vec<ConnKey> = self.conns.keys().copied().collect();
        for key in keys {
            self.update(key, 0, now, &mut out);
        }
        out
    }

    /// The backoff ended: every connection gets its share back.
    pub fn restore(&mut self, now: Duration) -> Sends {
        let mut out = Sends::new();
        let count = self.per_conn();
        let keys: Vec<ConnKey> = self.conns.keys().copied().collect();
        for key in keys {
            self.update(key, count, now, &mut out);
        }
        out
    }

    /// A backoff timeout ended with the counter still up: RDY 1 on one connection chosen
    /// at random ("testing the waters").
    pub fn test_waters(&mut self, now: Duration, rng: &mut impl Rng) -> Sends {
        let mut out = Sends::new();
        if self.conns.is_empty() {
            return out;
        }
        let keys: Vec<ConnKey> = self.conns.keys().copied().collect();
        let key = keys[rng.random_range(0..keys.len())];
        self.update(key, 1, now, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_share_is_max_in_flight_over_connections_and_new_connections_lower_it() {
        let mut r = Rdy::new(6);
        assert_eq!(r.connected(1, 2500, Duration::ZERO, Phase::Normal), vec![(1, 6)]);
        // A second connection: the first is above its new share (3) and drops to it; the new
        // one gets what the total leaves.
        let sends = r.connected(2, 2500, Duration::ZERO, Phase::Normal);
        assert_eq!(sends, vec![(1, 3), (2, 3)]);
        assert_eq!(r.total(), 6);
    }

    #[test]
    fn more_connections_than_max_in_flight_starve_until_redistribution_moves_the_rdy() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut r = Rdy::new(1);
        assert_eq!(r.connected(1, 2500, Duration::ZERO, Phase::Normal), vec![(1, 1)]);
        // Connection 1 re-checks its share (1, resent as go-nsq does); 2 and 3 get nothing.
        let sends = r.connected(2, 2500, Duration::ZERO, Phase::Normal);
        assert!(
            !sends.iter().any(|(k, _)| *k == 2),
            "over max in flight: {sends:?}"
        );
        let sends = r.connected(3, 2500, Duration::ZERO, Phase::Normal);
        assert!(!sends.iter().any(|(k, n)| *k != 1 && *n > 0), "{sends:?}");
        assert_eq!(r.total(), 1, "never more than max_in_flight");
        assert_eq!(r.next_retry(), Some(OVER_MAX_RETRY));
        assert!(r.retries(OVER_MAX_RETRY).is_empty(), "still full");
        // Connection 1 stays silent: after LowRdyIdleTimeout redistribution takes its RDY
        // and gives RDY 1 to a connection chosen at random.
        assert!(
            r.redistribute(5 * S, Phase::Normal, &mut rng).is_empty(),
            "not idle yet"
        );
        let sends = r.redistribute(11 * S, Phase::Normal, &mut rng);
        assert_eq!(sends[0], (1, 0));
        assert_eq!(sends.len(), 2);
        assert_eq!(sends[1].1, 1);
        assert_eq!(r.total(), 1);
    }

    #[test]
    fn credit_is_topped_up_when_it_runs_low() {
        let mut r = Rdy::new(8);
        r.connected(1, 2500, Duration::ZERO, Phase::Normal);
        let mut sends = Vec::new();
        for i in 0..7 {
            sends.extend(r.message(1, i * S, Phase::Normal));
        }
        assert_eq!(sends, vec![(1, 8)], "topped up once, at 1 left");
        assert_eq!(r.rdy_of(1), Some(8));
        assert!(
            r.message(1, 8 * S, Phase::Backoff).is_empty(),
            "no top-up while backing off"
        );
    }

    #[test]
    fn backoff_zeroes_everything_tests_the_waters_on_one_and_restores_the_shares() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut r = Rdy::new(4);
        r.connected(1, 2500, Duration::ZERO, Phase::Normal);
        r.connected(2, 2500, Duration::ZERO, Phase::Normal);
        assert_eq!(r.zero_all(S), vec![(1, 0), (2, 0)]);
        let waters = r.test_waters(2 * S, &mut rng);
        assert_eq!(waters.len(), 1);
        assert_eq!(waters[0].1, 1);
        assert_eq!(r.total(), 1);
        r.restore(3 * S);
        assert_eq!((r.rdy_of(1), r.rdy_of(2)), (Some(2), Some(2)));
        assert_eq!(r.total(), 4);
    }

    #[test]
    fn a_closed_connection_gives_its_credit_back() {
        let mut r = Rdy::new(2);
        r.connected(1, 2500, Duration::ZERO, Phase::Normal);
        r.connected(2, 2500, Duration::ZERO, Phase::Normal);
        assert_eq!(r.total(), 2);
        r.closed(1);
        assert_eq!(r.total(), 1);
        assert_eq!(r.retries(10 * S), vec![]);
    }

    proptest::proptest! {
        /// Whatever happens, the credit handed out never passes max_in_flight, never goes
        /// negative on a connection that has not been sent a message past it, and the total
        /// is the sum of the connections' credit.
        #[test]
        fn the_total_never_passes_max_in_flight(
            max_in_flight in 1i64..6,
            steps in proptest::collection::vec((0u8..7, 0u64..5), 1..200),
        ) {
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            let mut r = Rdy::new(max_in_flight);
            let mut now = Duration::ZERO;
            let mut phase = Phase::Normal;
            for (step, key) in steps {
                now += Duration::from_millis(700);
                match step {
                    // Keys are never reused: a reconnection is a new key.
                    0 if r.rdy_of(key).is_none() => { r.connected(key, 2500, now, phase); }
                    0 => {}
                    1 => r.closed(key),
                    2 => {
                        // nsqd sends only while the connection has credit.
                        if r.rdy_of(key).is_some_and(|n| n > 0) {
                            r.message(key, now, phase);
                        }
                    }
                    3 => { r.redistribute(now, phase, &mut rng); }
                    4 => { r.retries(now); }
                    5 => { phase = Phase::BackoffTimeout; r.zero_all(now); }
                    _ => {
                        if phase == Phase::BackoffTimeout {
                            phase = Phase::Backoff;
                            r.test_waters(now, &mut rng);
                        } else {
                            phase = Phase::Normal;
                            r.restore(now);
                        }
                    }
                }
                let sum: i64 = r.conns.values().map(|c| c.rdy).sum();
                proptest::prop_assert_eq!(r.total(), sum);
                proptest::prop_assert!(r.total() <= max_in_flight, "total {} > {}", r.total(), max_in_flight);
                proptest::prop_assert!(r.conns.values().all(|c| c.rdy >= 0));
            }
        }
    }
}
