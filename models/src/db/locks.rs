//! InnoDB-like row locks, sans I/O (reference §5.2).
//!
//! - Shared and exclusive row locks, held until the transaction ends.
//! - A request that conflicts with a granted lock, or with an earlier waiting request (InnoDB
//!   queues behind incompatible waiters, so writers are not starved), waits.
//! - Deadlock detection runs when a request has to wait: it searches the wait-for graph from
//!   the requester. On a cycle, the lighter transaction is the victim, weight being rows
//!   modified plus locks held (`TRX_WEIGHT`: `undo_no + trx_locks`); the victim's whole
//!   transaction is rolled back (error 1213). A search longer than [`WAIT_FOR_DEPTH_MAX`]
//!   transactions is treated as a deadlock and the requester is rolled back.
//! - A wait longer than the lock-wait timeout fails only the waiting statement (error 1205):
//!   the transaction stays open and keeps its locks, unless `rollback_on_timeout` is set.
//! - Waiters are granted in arrival order once compatible.

// A sans-I/O core: its functions stay within clippy.toml's too-many-lines-threshold (issue 9).
#![deny(clippy::too_many_lines)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

pub type TxnId = u64;

/// InnoDB treats a wait-for search past 200 transactions as a deadlock.
pub const WAIT_FOR_DEPTH_MAX: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    Shared,
    Exclusive,
}

impl Mode {
    fn compatible(self, other: Mode) -> bool {
        self == Mode::Shared && other == Mode::Shared
    }

    fn covers(self, wanted: Mode) -> bool {
        self == Mode::Exclusive || wanted == Mode::Shared
    }
}

/// A row: table and primary key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    pub table: String,
    pub key: String,
}

impl Row {
    pub fn new(table: &str, key: impl ToString) -> Row {
        Row {
            table: table.to_string(),
            key: key.to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquired {
    Granted,
    /// The request waits; the caller's statement blocks until granted or timed out.
    Waiting,
    /// A deadlock: `victim`'s transaction was rolled back and released its locks (error 1213).
    /// If the victim is not the requester, the requester still waits (or was just granted).
    Deadlock {
        victim: TxnId,
        cycle: Vec<TxnId>,
    },
}

#[derive(Clone, Debug, Default)]
struct RowLocks {
    granted: BTreeMap<TxnId, Mode>,
    waiting: VecDeque<(TxnId, Mode)>,
}

#[derive(Clone, Debug, Default)]
struct Txn {
    held: BTreeSet<Row>,
    waiting: Option<(Row, Mode, Duration)>,
    rows_modified: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockOptions {
    pub deadlock_detect: bool,
    pub lock_wait_timeout: Duration,
    pub rollback_on_timeout: bool,
}

impl Default for LockOptions {
    /// InnoDB's defaults: detection on, 50 s timeout, statement-only rollback on timeout.
    fn default() -> LockOptions {
        LockOptions {
            deadlock_detect: true,
            lock_wait_timeout: Duration::from_secs(50),
            rollback_on_timeout: false,
        }
    }
}

/// What happened to a waiting transaction when its wait ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitEnded {
    Granted(TxnId),
    /// Error 1205; `rolled_back` if `rollback_on_timeout` rolled the whole transaction back.
    TimedOut {
        txn: TxnId,
        rolled_back: bool,
    },
}

#[derive(Clone, Debug, Default)]
pub struct LockManager {
    options: LockOptions,
    rows: BTreeMap<Row, RowLocks>,
    txns: BTreeMap<TxnId, Txn>,
    /// Waits ended by a deadlock victim's rollback, for the caller to pick up.
    pending_grants: Vec<WaitEnded>,
}

impl LockManager {
    pub fn new(options: LockOptions) -> LockManager {
        LockManager {
            options,
            rows: BTreeMap::new(),
            txns: BTreeMap::new(),
            pending_grants: Vec::new(),
        }
    }

    pub fn begin(&mut self, txn: TxnId) {
        self.txns.entry(txn).or_default();
    }

    /// InnoDB's weight: rows modified plus locks held. The lighter one is the victim.
    pub fn weight(&self, txn: TxnId) -> u64 {
        self.txns
            .get(&txn)
            .map_or(0, |t| t.rows_modified + t.held.len() as u64)
    }

    /// Records that `txn` modified rows (its undo log grew), making it heavier.
    pub fn modified(&mut self, txn: TxnId, rows: u64) {
        self.txns.entry(txn).or_default().rows_modified += rows;
    }

    pub fn is_waiting(&self, txn: TxnId) -> bool {
        self.txns.get(&txn).is_some_and(|t| t.waiting.is_some())
    }

    pub fn holds(&self, txn: TxnId, row: &Row) -> Option<Mode> {
        self.rows.get(row).and_then(|r| r.granted.get(&txn).copied())
    }

    /// Requests `mode` on `row` for `txn` at `now`.
    pub fn acquire(&mut self, txn: TxnId, row: &Row, mode: Mode, now: Duration) -> Acquired {
        self.begin(txn);
        assert!(
            !self.is_waiting(txn),
            "a transaction waits for one lock at a time"
        );
        let locks = self.rows.entry(row.clone()).or_default();
        if locks.granted.get(&txn).is_some_and(|held| held.covers(mode)) {
            return Acquired::Granted;
        }
        let conflicts_granted = locks
            .granted
            .iter()
            .any(|(other, held)| *other != txn && !held.compatible(mode));
        let conflicts_waiting = locks
            .waiting
            .iter()
            .any(|(other, wanted)| *other != txn && !wanted.compatible(mode));
        if !conflicts_granted && !conflicts_waiting {
            let entry = locks.granted.entry(txn).or_insert(mode);
            *entry = (*entry).max(mode);
            self.txns.get_mut(&txn).expect("begun").held.insert(row.clone());
            return Acquired::Granted;
        }
        locks.waiting.push_back((txn, mode));
        self.txns.get_mut(&txn).expect("begun").waiting = Some((row.clone(), mode, now));
        if !self.options.deadlock_detect {
            return Acquired::Waiting;
        }
        match self.find_cycle(txn) {
            None => Acquired::Waiting,
            Some(cycle) => {
                let victim = self.choose_victim(txn, &cycle);
                self.rollback(victim);
                Acquired::Deadlock { victim, cycle }
            }
        }
    }

    /// The transactions `txn` waits for: holders of a conflicting lock on its row, and
    /// conflicting requests queued before it.
    pub fn blockers(&self, txn: TxnId) -> Vec<TxnId> {
        let Some((row, mode, _)) = self.txns.get(&txn).and_then(|t| t.waiting.clone()) else {
            return Vec::new();
        };
        let locks = &self.rows[&row];
        let mut blockers: BTreeSet<TxnId> = locks
            .granted
            .iter()
            .filter(|(other, held)| **other != txn && !held.compatible(mode))
            .map(|(other, _)| *other)
            .collect();
        for (other, wanted) in &locks.waiting {
            if *other == txn {
                break;
            }
            if !wanted.compatible(mode) {
                blockers.insert(*other);
            }
        }
        blockers.into_iter().collect()
    }

    /// A cycle through `start` in the wait-for graph, or a search too deep (treated as one).
    fn find_cycle(&self, start: TxnId) -> Option<Vec<TxnId>> {
        let mut visited = BTreeSet::new();
        let mut path = vec![start];
        self.search(start, start, &mut visited, &mut path)
    }

    fn search(
        &self,
        start: TxnId,
        at: TxnId,
        visited: &mut BTreeSet<TxnId>,
        path: &mut Vec<TxnId>,
    ) -> Option<Vec<TxnId>> {
        if path.len() > WAIT_FOR_DEPTH_MAX {
            return Some(path.clone()); // InnoDB gives up and calls it a deadlock
        }
        for next in self.blockers(at) {
            if next == start {
                return Some(path.clone());
            }
            if visited.insert(next) {
                path.push(next);
                if let Some(cycle) = self.search(start, next, visited, path) {
                    return Some(cycle);
                }
                path.pop();
            }
        }
        None
    }

    /// The lighter transaction of the cycle; on a tie, the requester.
    fn choose_victim(&self, requester: TxnId, cycle: &[TxnId]) -> TxnId {
        if cycle.len() > WAIT_FOR_DEPTH_MAX {
            return requester;
        }
        cycle
            .iter()
            .copied()
            .min_by_key(|t| (self.weight(*t), *t != requester, *t))
            .expect("a cycle has members")
    }

    /// Ends `txn` (commit or rollback alike release every lock). Returns the waits that ended.
    pub fn release(&mut self, txn: TxnId) -> Vec<WaitEnded> {
        let Some(state) = self.txns.remove(&txn) else {
            return Vec::new();
        };
        let mut touched: BTreeSet<Row> = state.held;
        if let Some((row, _, _)) = state.waiting {
            if let Some(locks) = self.rows.get_mut(&row) {
                locks.waiting.retain(|(t, _)| *t != txn);
            }
            touched.insert(row);
        }
        for row in &touched {
            if let Some(locks) = self.rows.get_mut(row) {
                locks.granted.remove(&txn);
            }
        }
        self.grant_waiters(&touched)
    }

    /// A deadlock victim: rolled back entirely.
    fn rollback(&mut self, txn: TxnId) {
        // The grants this causes are picked up by the caller's next `grant_pending`.
        let ended = self.release(txn);
        debug_assert!(ended.iter().all(|e| matches!(e, WaitEnded::Granted(_))));
        self.pending_grants.extend(ended);
    }

    fn grant_waiters(&mut self, rows: &BTreeSet<Row>) -> Vec<WaitEnded> {
        let mut granted = Vec::new();
        for row in rows {
            let Some(locks) = self.rows.get_mut(row) else {
                continue;
            };
            while let Some(&(txn, mode)) = locks.waiting.front() {
                let compatible = locks
                    .granted
                    .iter()
                    .all(|(other, held)| *other == txn || held.compatible(mode));
                if !compatible {
                    break;
                }
                locks.waiting.pop_front();
                let entry = locks.granted.entry(txn).or_insert(mode);
                *entry = (*entry).max(mode);
                let state = self.txns.get_mut(&txn).expect("waiters are live transactions");
                state.waiting = None;
                state.held.insert(row.clone());
                granted.push(WaitEnded::Granted(txn));
            }
            if locks.granted.is_empty() && locks.waiting.is_empty() {
                self.rows.remove(row);
            }
        }
        granted
    }

    /// Grants that a deadlock victim's rollback made possible, since the last call.
    pub fn take_grants(&mut self) -> Vec<WaitEnded> {
        std::mem::take(&mut self.pending_grants)
    }

    /// Waits older than the lock-wait timeout end with error 1205. By default only the
    /// statement fails: the transaction stays open with its locks.
    pub fn expire(&mut self, now: Duration) -> Vec<WaitEnded> {
        let expired: Vec<TxnId> = self
            .txns
            .iter()
            .filter(|(_, t)| {
                t.waiting
                    .as_ref()
                    .is_some_and(|(_, _, since)| now.saturating_sub(*since) >= self.options.lock_wait_timeout)
            })
            .map(|(id, _)| *id)
            .collect();
        let mut ended = Vec::new();
        for txn in expired {
            let rolled_back = self.options.rollback_on_timeout;
            if rolled_back {
                ended.extend(self.release(txn));
            } else {
                let (row, _, _) = self
                    .txns
                    .get_mut(&txn)
                    .and_then(|t| t.waiting.take())
                    .expect("expired waits exist");
                if let Some(locks) = self.rows.get_mut(&row) {
                    locks.waiting.retain(|(t, _)| *t != txn);
                }
                ended.extend(self.grant_waiters(&BTreeSet::from([row])));
            }
            ended.push(WaitEnded::TimedOut { txn, rolled_back });
        }
        ended
    }

    /// Every granted lock, for invariant checks: (row, txn, mode).
    pub fn granted(&self) -> Vec<(Row, TxnId, Mode)> {
        self.rows
            .iter()
            .flat_map(|(row, locks)| locks.granted.iter().map(move |(t, m)| (row.clone(), *t, *m)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: Duration = Duration::ZERO;

    fn row(key: &str) -> Row {
        Row::new("accounts", key)
    }

    fn locks() -> LockManager {
        LockManager::new(LockOptions::default())
    }

    #[test]
    fn two_transactions_in_opposite_order_deadlock_and_the_lighter_is_rolled_back() {
        let mut l = locks();
        assert_eq!(l.acquire(1, &row("a"), Mode::Exclusive, T0), Acquired::Granted);
        assert_eq!(l.acquire(2, &row("b"), Mode::Exclusive, T0), Acquired::Granted);
        l.modified(1, 3); // txn 1 changed rows: heavier
        assert_eq!(l.acquire(1, &row("b"), Mode::Exclusive, T0), Acquired::Waiting);
        let result = l.acquire(2, &row("a"), Mode::Exclusive, T0);
        assert_eq!(
            result,
            Acquired::Deadlock {
                victim: 2,
                cycle: vec![2, 1]
            }
        );
        // The victim's locks are gone, so txn 1 gets b.
        assert_eq!(l.take_grants(), vec![WaitEnded::Granted(1)]);
        assert_eq!(l.holds(1, &row("b")), Some(Mode::Exclusive));
        assert_eq!(l.holds(2, &row("b")), None);
    }

    #[test]
    fn a_three_transaction_cycle_is_found() {
        let mut l = locks();
        for (t, k) in [(1, "a"), (2, "b"), (3, "c")] {
            assert_eq!(l.acquire(t, &row(k), Mode::Exclusive, T0), Acquired::Granted);
        }
        assert_eq!(l.acquire(1, &row("b"), Mode::Exclusive, T0), Acquired::Waiting);
        assert_eq!(l.acquire(2, &row("c"), Mode::Exclusive, T0), Acquired::Waiting);
        let Acquired::Deadlock { cycle, .. } = l.acquire(3, &row("a"), Mode::Exclusive, T0) else {
            panic!("a cycle 3 -> 1 -> 2 -> 3");
        };
        assert_eq!(
            cycle.iter().copied().collect::<BTreeSet<_>>(),
            BTreeSet::from([1, 2, 3])
        );
    }

    #[test]
    fn the_victim_is_the_lighter_transaction_even_if_it_did_not_close_the_cycle() {
        let mut l = locks();
        l.acquire(1, &row("a"), Mode::Exclusive, T0);
        l.acquire(2, &row("b"), Mode::Exclusive, T0);
        l.modified(2, 10); // the requester below is the heavy one
        assert_eq!(l.acquire(1, &row("b"), Mode::Exclusive, T0), Acquired::Waiting);
        let Acquired::Deadlock { victim, .. } = l.acquire(2, &row("a"), Mode::Exclusive, T0) else {
            panic!()
        };
        assert_eq!(
            victim, 1,
            "the small transaction is rolled back (reference §5.2, pitfall 6)"
        );
        assert!(
            !l.is_waiting(2) && l.holds(2, &row("a")).is_some(),
            "the requester got its lock"
        );
    }

    #[test]
    fn a_lock_wait_timeout_fails_the_statement_and_leaves_the_transaction_open_with_its_locks() {
        let mut l = locks();
        l.acquire(1, &row("a"), Mode::Exclusive, T0);
        l.acquire(2, &row("b"), Mode::Exclusive, T0);
        assert_eq!(l.acquire(2, &row("a"), Mode::Exclusive, T0), Acquired::Waiting);
        assert!(l.expire(Duration::from_secs(49)).is_empty());
        assert_eq!(
            l.expire(Duration::from_secs(50)),
            vec![WaitEnded::TimedOut {
                txn: 2,
                rolled_back: false
            }]
        );
        assert!(!l.is_waiting(2));
        assert_eq!(
            l.holds(2, &row("b")),
            Some(Mode::Exclusive),
            "earlier locks are kept (error 1205)"
        );
        assert_eq!(l.weight(2), 1);

        let mut l = LockManager::new(LockOptions {
            rollback_on_timeout: true,
            ..LockOptions::default()
        });
        l.acquire(1, &row("a"), Mode::Exclusive, T0);
        l.acquire(2, &row("b"), Mode::Exclusive, T0);
        l.acquire(2, &row("a"), Mode::Exclusive, T0);
        assert_eq!(
            l.expire(Duration::from_secs(50)),
            vec![WaitEnded::TimedOut {
                txn: 2,
                rolled_back: true
            }]
        );
        assert_eq!(
            l.holds(2, &row("b")),
            None,
            "--innodb-rollback-on-timeout rolls the whole transaction back"
        );
    }

    #[test]
    fn a_chain_of_waits_without_a_cycle_is_no_deadlock_and_drains_in_order() {
        let mut l = locks();
        l.acquire(1, &row("a"), Mode::Exclusive, T0);
        assert_eq!(l.acquire(2, &row("a"), Mode::Exclusive, T0), Acquired::Waiting);
        assert_eq!(
            l.acquire(3, &row("a"), Mode::Shared, T0),
            Acquired::Waiting,
            "queued behind a writer"
        );
        assert_eq!(l.release(1), vec![WaitEnded::Granted(2)]);
        assert_eq!(l.release(2), vec![WaitEnded::Granted(3)]);
    }

    #[test]
    fn shared_locks_share_and_an_upgrade_waits_for_the_other_readers() {
        let mut l = locks();
        assert_eq!(l.acquire(1, &row("a"), Mode::Shared, T0), Acquired::Granted);
        assert_eq!(l.acquire(2, &row("a"), Mode::Shared, T0), Acquired::Granted);
        assert_eq!(l.acquire(1, &row("a"), Mode::Exclusive, T0), Acquired::Waiting);
        // Both readers upgrading: the classic S-to-X deadlock.
        assert!(matches!(
            l.acquire(2, &row("a"), Mode::Exclusive, T0),
            Acquired::Deadlock { .. }
        ));
    }

    #[test]
    fn without_detection_only_the_timeout_ends_a_deadlock() {
        let mut l = LockManager::new(LockOptions {
            deadlock_detect: false,
            ..LockOptions::default()
        });
        l.acquire(1, &row("a"), Mode::Exclusive, T0);
        l.acquire(2, &row("b"), Mode::Exclusive, T0);
        assert_eq!(l.acquire(1, &row("b"), Mode::Exclusive, T0), Acquired::Waiting);
        assert_eq!(l.acquire(2, &row("a"), Mode::Exclusive, T0), Acquired::Waiting);
        assert_eq!(l.expire(Duration::from_secs(50)).len(), 2);
    }

    /// Reachability in the wait-for graph by brute force (transitive closure).
    fn has_cycle_through(l: &LockManager, start: TxnId) -> bool {
        let txns: Vec<TxnId> = l.txns.keys().copied().collect();
        let mut reach: BTreeSet<(TxnId, TxnId)> = BTreeSet::new();
        for t in &txns {
            for b in l.blockers(*t) {
                reach.insert((*t, b));
            }
        }
        for k in &txns {
            for i in &txns {
                for j in &txns {
                    if reach.contains(&(*i, *k)) && reach.contains(&(*k, *j)) {
                        reach.insert((*i, *j));
                    }
                }
            }
        }
        reach.contains(&(start, start))
    }

    #[derive(Clone, Debug)]
    enum Op {
        Acquire(TxnId, u8, bool),
        Release(TxnId),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1u64..6, 0u8..4, any::<bool>()).prop_map(|(t, r, x)| Op::Acquire(t, r, x)),
            1 => (1u64..6).prop_map(Op::Release),
        ]
    }

    #[test]
    fn random_workloads_like_the_proptests_do_deadlock_and_wait() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let (mut deadlocks, mut waits) = (0, 0);
        for _ in 0..200 {
            let mut l = locks();
            for _ in 0..40 {
                let t = rng.random_range(1..6);
                if l.is_waiting(t) {
                    continue;
                }
                let mode = if rng.random_bool(0.5) {
                    Mode::Exclusive
                } else {
                    Mode::Shared
                };
                match l.acquire(t, &row(&rng.random_range(0..4).to_string()), mode, T0) {
                    Acquired::Deadlock { .. } => deadlocks += 1,
                    Acquired::Waiting => waits += 1,
                    Acquired::Granted => {}
                }
            }
        }
        assert!(
            deadlocks > 50 && waits > 50,
            "deadlocks {deadlocks}, waits {waits}"
        );
    }

    proptest! {
        /// Every reported deadlock was a real cycle, every wait left waiting had none, and
        /// conflicting locks are never granted together.
        #[test]
        fn deadlocks_are_exactly_the_cycles(ops in proptest::collection::vec(op(), 1..80)) {
            let mut l = locks();
            for op in ops {
                match op {
                    Op::Acquire(t, r, exclusive) => {
                        if l.is_waiting(t) {
                            continue; // a blocked transaction issues no statement
                        }
                        let mode = if exclusive { Mode::Exclusive } else { Mode::Shared };
                        let before = l.clone();
                        let result = l.acquire(t, &row(&r.to_string()), mode, T0);
                        match result {
                            Acquired::Deadlock { victim, cycle } => {
                                let mut check = before.clone();
                                check.options.deadlock_detect = false;
                                prop_assert_eq!(check.acquire(t, &row(&r.to_string()), mode, T0), Acquired::Waiting);
                                prop_assert!(has_cycle_through(&check, t), "reported {:?}, no cycle", cycle);
                                prop_assert!(cycle.contains(&victim));
                                prop_assert!(!l.txns.contains_key(&victim), "the victim was rolled back");
                            }
                            Acquired::Waiting => prop_assert!(!has_cycle_through(&l, t), "a missed deadlock"),
                            Acquired::Granted => {}
                        }
                        l.take_grants();
                    }
                    Op::Release(t) => {
                        l.release(t);
                    }
                }
                let granted = l.granted();
                for (row_a, t_a, m_a) in &granted {
                    for (row_b, t_b, m_b) in &granted {
                        if row_a == row_b && t_a != t_b {
                            prop_assert!(m_a.compatible(*m_b), "{:?} granted to {} and {}", row_a, t_a, t_b);
                        }
                    }
                }
            }
        }
    }
}
