//! InnoDB-like row locks, sans I/O (reference §5.2).
//!
//! - Shared and exclusive row locks, held until the transaction ends.
//! - A request that conflicts with a granted lock, or with an earlier waiting request (InnoDB
//!   queues behind incompatible waiters, so writers are not starved), waits.
//! - Deadlock detection runs when a request has to wait: it follows the wait-for graph from
//!   the requester, one edge per waiting transaction as InnoDB keeps it
//!   ([`LockManager::blockers`]). On a cycle, the lighter transaction is the victim; the victim's whole
//!   transaction is rolled back (error 1213). The weight is InnoDB's `TRX_WEIGHT`,
//!   `undo_no + UT_LIST_GET_LEN(trx_locks)`, counted as InnoDB counts it (see [`Weight`]). A search longer than [`WAIT_FOR_DEPTH_MAX`]
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
    /// A deadlock: the victims' transactions were rolled back and released their locks (error
    /// 1213), in the order chosen; `cycle` is the first. If the requester is not among them,
    /// it still waits (or was just granted). More than one when the requester, still
    /// waiting after a victim's rollback, closes another cycle: InnoDB checks it again.
    Deadlock {
        victims: Vec<TxnId>,
        cycle: Vec<TxnId>,
    },
}

#[derive(Clone, Debug, Default)]
struct RowLocks {
    granted: BTreeMap<TxnId, Mode>,
    waiting: VecDeque<(TxnId, Mode)>,
    /// Where each granted lock stands in the record's lock list: the position of the
    /// struct holding it (see [`LockManager::blockers`]).
    positions: BTreeMap<TxnId, u64>,
}

#[derive(Clone, Debug, Default)]
struct Txn {
    held: BTreeSet<Row>,
    waiting: Option<(Row, Mode, Duration)>,
    /// The position of the struct of the current (or last) waiting request.
    waiting_position: u64,
    weight: Weight,
}

/// What InnoDB's `TRX_WEIGHT` counts for one transaction: its undo records and its lock
/// structs. Found against MariaDB (`models/tests/db_differential.rs`), where counting rows
/// chose the other victim.
/// - One undo record per row change: a row updated twice counts twice.
/// - One table lock struct per table (every locking statement here takes IX first).
/// - One record lock struct per page and mode, not per row: a granted lock joins a struct of
///   its mode on its page (`lock_rec_add_to_queue` finds the similar one), so several rows
///   locked alike count once, and a shared lock later upgraded counts twice. Each table
///   here is small enough to fit one page, so (table, mode) names the struct.
/// - A waiting request always gets a struct of its own (`lock_rec_enqueue_waiting`), kept
///   when granted, removed when its wait times out.
/// - A row this transaction inserted is locked implicitly (no struct) until another
///   transaction asks for it, when InnoDB converts the lock to an explicit one on the
///   inserter's behalf (`lock_rec_convert_impl_to_expl`).
#[derive(Clone, Debug, Default)]
struct Weight {
    undo_records: u64,
    tables: BTreeSet<String>,
    /// Each struct with the position it was created at.
    record_structs: BTreeMap<(String, Mode), u64>,
    /// Structs made by waits, beyond the one per (table, mode) in `record_structs`.
    waiting_structs: u64,
    implicit: BTreeSet<Row>,
}

impl Weight {
    fn total(&self) -> u64 {
        self.undo_records + self.tables.len() as u64 + self.record_structs.len() as u64 + self.waiting_structs
    }
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
    /// The next lock struct's position: structs are listed in the order they are created.
    next_position: u64,
}

impl LockManager {
    pub fn new(options: LockOptions) -> LockManager {
        LockManager {
            options,
            rows: BTreeMap::new(),
            txns: BTreeMap::new(),
            pending_grants: Vec::new(),
            next_position: 0,
        }
    }

    pub fn begin(&mut self, txn: TxnId) {
        self.txns.entry(txn).or_default();
    }

    /// InnoDB's weight ([`Weight`]). The lighter one is the victim.
    pub fn weight(&self, txn: TxnId) -> u64 {
        self.txns.get(&txn).map_or(0, |t| t.weight.total())
    }

    /// Records that `txn` wrote `changes` undo records (one per row change), making it heavier.
    pub fn modified(&mut self, txn: TxnId, changes: u64) {
        self.txns.entry(txn).or_default().weight.undo_records += changes;
    }

    /// Like [`LockManager::acquire`] for a row `txn` inserts: the lock is implicit, with no
    /// lock struct, until another transaction asks for the row ([`Weight`]).
    pub fn acquire_inserted(&mut self, txn: TxnId, row: &Row, now: Duration) -> Acquired {
        let acquired = self.acquire(txn, row, Mode::Exclusive, now);
        if acquired == Acquired::Granted {
            let weight = &mut self.txns.get_mut(&txn).expect("begun").weight;
            if weight.implicit.insert(row.clone()) {
                // Granted at once and new to this transaction: the struct `acquire` counted
                // is not there in InnoDB, unless another explicit X lock on the page made it.
                let explicit_x = self.explicit_rows(txn, &row.table, Mode::Exclusive);
                let weight = &mut self.txns.get_mut(&txn).expect("begun").weight;
                if explicit_x == 0 {
                    weight
                        .record_structs
                        .remove(&(row.table.clone(), Mode::Exclusive));
                }
                self.rows.get_mut(row).expect("granted").positions.remove(&txn);
            }
        }
        acquired
    }

    /// `txn`'s INSERT found its unique column's value taken: InnoDB's duplicate check took
    /// a shared lock on the unique index's record, a struct on that index's page, which
    /// weighs even though the engine does not lock the index (`db` docs, known difference 1).
    pub fn unique_checked(&mut self, txn: TxnId, table: &str) {
        let weight = &mut self.txns.entry(txn).or_default().weight;
        weight.tables.insert(table.to_string());
        let position = self.next_position;
        self.next_position += 1;
        weight
            .record_structs
            .entry((format!("{table} unique index"), Mode::Shared))
            .or_insert(position);
    }

    /// Rows of `table` that `txn` holds in `mode` explicitly (not as an implicit insert lock).
    fn explicit_rows(&self, txn: TxnId, table: &str, mode: Mode) -> usize {
        let state = &self.txns[&txn];
        state
            .held
            .iter()
            .filter(|r| r.table == table && !state.weight.implicit.contains(*r))
            .filter(|r| self.rows[*r].granted.get(&txn) == Some(&mode))
            .count()
    }

    /// Another transaction asks for `row`: implicit insert locks on it become explicit
    /// structs of their inserters, as InnoDB converts them before it queues the request.
    fn convert_implicit(&mut self, requester: TxnId, row: &Row) {
        let holders: Vec<TxnId> = self
            .rows
            .get(row)
            .map_or(Vec::new(), |l| l.granted.keys().copied().collect());
        for holder in holders.into_iter().filter(|h| *h != requester) {
            if self.txns[&holder].weight.implicit.contains(row) {
                self.txns
                    .get_mut(&holder)
                    .expect("live")
                    .weight
                    .implicit
                    .remove(row);
                let position = self.struct_position(holder, &row.table, Mode::Exclusive);
                let locks = self.rows.get_mut(row).expect("held");
                locks.positions.insert(holder, position);
            }
        }
    }

    /// The position of `txn`'s struct for `mode` on `table`'s page, made now if it has none.
    fn struct_position(&mut self, txn: TxnId, table: &str, mode: Mode) -> u64 {
        let next = &mut self.next_position;
        let weight = &mut self.txns.get_mut(&txn).expect("begun").weight;
        *weight
            .record_structs
            .entry((table.to_string(), mode))
            .or_insert_with(|| {
                *next += 1;
                *next - 1
            })
    }

    pub fn is_waiting(&self, txn: TxnId) -> bool {
        self.txns.get(&txn).is_some_and(|t| t.waiting.is_some())
    }

    pub fn holds(&self, txn: TxnId, row: &Row) -> Option<Mode> {
        self.rows.get(row).and_then(|r| r.granted.get(&txn).copied())
    }

    /// An exclusive lock on `row` for `txn` if it can be had without waiting (`SKIP LOCKED`):
    /// false, and nothing queued, when another transaction holds the row or waits for it.
    pub fn try_acquire(&mut self, txn: TxnId, row: &Row) -> bool {
        let busy = self.rows.get(row).is_some_and(|locks| {
            locks.granted.keys().any(|other| *other != txn)
                || locks.waiting.iter().any(|(other, _)| *other != txn)
        });
        if busy {
            return false;
        }
        let acquired = self.acquire(txn, row, Mode::Exclusive, Duration::ZERO);
        assert_eq!(
            acquired,
            Acquired::Granted,
            "a lock no one else holds or waits for is granted"
        );
        true
    }

    /// Requests `mode` on `row` for `txn` at `now`.
    pub fn acquire(&mut self, txn: TxnId, row: &Row, mode: Mode, now: Duration) -> Acquired {
        self.begin(txn);
        assert!(
            !self.is_waiting(txn),
            "a transaction waits for one lock at a time"
        );
        if self
            .rows
            .get(row)
            .is_some_and(|l| l.granted.get(&txn).is_some_and(|held| held.covers(mode)))
        {
            return Acquired::Granted;
        }
        self.convert_implicit(txn, row);
        self.txns
            .get_mut(&txn)
            .expect("begun")
            .weight
            .tables
            .insert(row.table.clone());
        let locks = self.rows.entry(row.clone()).or_default();
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
            let position = self.struct_position(txn, &row.table, mode);
            let locks = self.rows.get_mut(row).expect("entered above");
            locks.positions.entry(txn).or_insert(position);
            return Acquired::Granted;
        }
        locks.waiting.push_back((txn, mode));
        let state = self.txns.get_mut(&txn).expect("begun");
        state.waiting = Some((row.clone(), mode, now));
        state.waiting_position = self.next_position;
        self.next_position += 1;
        state.weight.waiting_structs += 1;
        if !self.options.deadlock_detect {
            return Acquired::Waiting;
        }
        let Some(cycle) = self.find_cycle(txn) else {
            return Acquired::Waiting;
        };
        let mut victims = vec![self.choose_victim(txn, &cycle)];
        self.rollback(victims[0]);
        // Found against MariaDB: the requester, still waiting behind another transaction
        // after the first victim's rollback, was checked again and a second victim chosen.
        // Each round rolls one transaction back, so this ends.
        while victims.last() != Some(&txn) {
            let Some(next) = self.find_cycle(txn) else { break };
            let victim = self.choose_victim(txn, &next);
            self.rollback(victim);
            victims.push(victim);
        }
        Acquired::Deadlock { victims, cycle }
    }

    /// The transaction `txn` waits for, as InnoDB keeps it (`trx->lock.wait_trx` in
    /// MariaDB 10.6+): one, the owner of the first conflicting lock in its record's lock
    /// list, which lists structs in the order they were created. So the wait-for graph has
    /// one edge per waiting transaction, and a cycle through a later conflicting lock is
    /// not seen. Found against MariaDB: with every conflicting lock as an edge, a third
    /// waiting transaction joined the cycle and was chosen as the lighter victim.
    pub fn blockers(&self, txn: TxnId) -> Vec<TxnId> {
        let Some((row, mode, _)) = self.txns.get(&txn).and_then(|t| t.waiting.clone()) else {
            return Vec::new();
        };
        let locks = &self.rows[&row];
        let granted = locks
            .granted
            .iter()
            .filter(|(other, held)| **other != txn && !held.compatible(mode))
            .map(|(other, _)| (locks.positions.get(other).copied().unwrap_or(0), *other));
        let ahead = locks
            .waiting
            .iter()
            .take_while(|(other, _)| *other != txn)
            .filter(|(_, wanted)| !wanted.compatible(mode))
            .map(|(other, _)| (self.txns[other].waiting_position, *other));
        granted
            .chain(ahead)
            .min()
            .map(|(_, other)| other)
            .into_iter()
            .collect()
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
                locks.positions.remove(&txn);
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
                // The granted struct keeps its place in the list, and is now the page's
                // similar struct for this mode, unless one was there already, when the two
                // stay apart ([`Weight`]).
                let position = state.waiting_position;
                locks.positions.entry(txn).or_insert(position);
                let structs = &mut state.weight.record_structs;
                if let std::collections::btree_map::Entry::Vacant(entry) =
                    structs.entry((row.table.clone(), mode))
                {
                    entry.insert(position);
                    state.weight.waiting_structs -= 1;
                }
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
                let state = self.txns.get_mut(&txn).expect("expired waits exist");
                // The timed-out request's struct goes with it (`lock_cancel_waiting_and_release`).
                state.weight.waiting_structs -= 1;
                let (row, _, _) = state.waiting.take().expect("expired waits exist");
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
                victims: vec![2],
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
        let Acquired::Deadlock { victims, .. } = l.acquire(2, &row("a"), Mode::Exclusive, T0) else {
            panic!()
        };
        assert_eq!(
            victims,
            vec![1],
            "the small transaction is rolled back (reference §5.2, pitfall 6)"
        );
        assert!(
            !l.is_waiting(2) && l.holds(2, &row("a")).is_some(),
            "the requester got its lock"
        );
    }

    #[test]
    fn weight_counts_lock_structs_by_table_and_mode_as_innodb_does() {
        let mut l = locks();
        l.acquire(1, &row("a"), Mode::Exclusive, T0);
        assert_eq!(l.weight(1), 2, "IX on the table, one X record struct");
        l.acquire(1, &row("b"), Mode::Exclusive, T0);
        assert_eq!(l.weight(1), 2, "a second row on the page joins the X struct");
        l.acquire(1, &row("c"), Mode::Shared, T0);
        l.acquire(1, &row("c"), Mode::Exclusive, T0);
        assert_eq!(l.weight(1), 3, "an S struct, and the upgrade joins the X one");
        l.acquire(1, &Row::new("other", "a"), Mode::Exclusive, T0);
        assert_eq!(l.weight(1), 5, "another table: its IX and its X struct");
        l.modified(1, 2);
        assert_eq!(l.weight(1), 7, "one undo record per change");
    }

    #[test]
    fn a_waiting_transaction_waits_for_the_first_conflicting_lock_only() {
        let mut l = locks();
        l.acquire(3, &row("a"), Mode::Exclusive, T0);
        assert_eq!(l.acquire(1, &row("a"), Mode::Exclusive, T0), Acquired::Waiting);
        l.acquire(2, &row("b"), Mode::Exclusive, T0);
        assert_eq!(l.acquire(2, &row("a"), Mode::Exclusive, T0), Acquired::Waiting);
        assert_eq!(
            l.blockers(2),
            vec![3],
            "3's granted lock is first in a's list, not 1's wait"
        );
        let Acquired::Deadlock { victims, cycle } = l.acquire(3, &row("b"), Mode::Exclusive, T0) else {
            panic!("3 -> 2 -> 3");
        };
        assert_eq!(
            cycle.len(),
            2,
            "1 is not in the cycle, so it cannot be the victim"
        );
        assert_eq!(victims, vec![3], "equal weights: the requester, as MariaDB chose");
    }

    #[test]
    fn a_waiting_request_has_its_own_struct_kept_when_granted() {
        let mut l = locks();
        l.acquire(1, &row("a"), Mode::Exclusive, T0);
        l.acquire(2, &row("b"), Mode::Exclusive, T0);
        assert_eq!(l.acquire(2, &row("a"), Mode::Exclusive, T0), Acquired::Waiting);
        assert_eq!(l.weight(2), 3, "IX, the X struct for b, the waiting struct for a");
        l.release(1);
        assert_eq!(l.weight(2), 3, "granted, the waiting struct stays apart");
    }

    #[test]
    fn an_inserted_row_weighs_no_struct_until_another_transaction_asks_for_it() {
        let mut l = locks();
        assert_eq!(l.acquire_inserted(1, &row("new"), T0), Acquired::Granted);
        l.modified(1, 1);
        assert_eq!(l.weight(1), 2, "its undo record and IX: the row lock is implicit");
        assert_eq!(l.acquire(2, &row("new"), Mode::Shared, T0), Acquired::Waiting);
        assert_eq!(
            l.weight(1),
            3,
            "converted to an explicit X struct on the inserter's behalf"
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
        assert_eq!(
            l.weight(2),
            2,
            "its table's IX struct and its X struct; the waiting one went"
        );

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
                            Acquired::Deadlock { victims, cycle } => {
                                let victim = victims[0];
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
