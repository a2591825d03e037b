//! An InnoDB-like storage engine, sans I/O (reference §5): tables with primary and unique
//! keys, transactions, row locks through [`LockManager`], and a redo log on a [`Disk`].
//!
//! - Statements are typed (no SQL parser): SELECT (plain, or FOR UPDATE), INSERT, UPDATE with a
//!   WHERE clause returning affected rows (changed rows, as MySQL counts without
//!   `CLIENT_FOUND_ROWS`), COMMIT, ROLLBACK. Outside BEGIN, a statement runs in autocommit.
//! - Locking reads, INSERT and UPDATE take exclusive row locks held to the end of the
//!   transaction. A plain SELECT takes no lock and reads the latest committed row (a
//!   simplification of InnoDB's snapshot read that is enough for the patterns modelled: the
//!   check-then-insert race stays possible, which is the point).
//! - A statement that must wait returns [`Outcome::Blocked`]; the host retries it when the
//!   lock is granted (the engine resumes it).
//! - Error 1213 (deadlock) rolls back the victim's whole transaction; error 1205 (lock wait
//!   timeout) fails only the statement and leaves the transaction open with its locks and
//!   changes, unless `rollback_on_timeout`. Error 1062 is a duplicate key.
//! - COMMIT appends a redo record; `flush_at_commit` (innodb_flush_log_at_trx_commit = 1)
//!   fsyncs it at once, otherwise [`Engine::tick`] fsyncs once a second, so a power failure
//!   loses up to a second of acknowledged commits. Opening the engine replays the redo log; a
//!   torn last record is ignored.

// A sans-I/O core: its functions stay within clippy.toml's too-many-lines-threshold (issue 9).
#![deny(clippy::too_many_lines)]

use super::locks::{Acquired, LockManager, LockOptions, Mode, Row as RowId, TxnId, WaitEnded};
use serde::{Deserialize, Serialize};
use sim::disk::Disk;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub const REDO_LOG: &str = "ib_logfile";

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Int(i64),
    Text(String),
}

pub type Record = BTreeMap<String, Value>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    pub name: String,
    pub primary_key: String,
    #[serde(default)]
    pub unique: Vec<String>,
    /// The primary key is an `AUTO_INCREMENT` integer: an INSERT without it takes the next
    /// id when the statement runs, not when its transaction commits.
    #[serde(default)]
    pub auto_increment: bool,
}

/// How an UPDATE changes a column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Set {
    To(String, Value),
    /// `col = col + n`, for ledgers.
    Add(String, i64),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Statement {
    Begin,
    Select {
        table: String,
        key: Value,
        for_update: bool,
    },
    Insert {
        table: String,
        record: Record,
        #[serde(default)]
        tag: Option<Tag>,
    },
    /// `UPDATE table SET ... WHERE pk = key AND col = value ...`.
    Update {
        table: String,
        key: Value,
        set: Vec<Set>,
        only_if: Vec<(String, Value)>,
        #[serde(default)]
        tag: Option<Tag>,
    },
    /// `SELECT * FROM table WHERE pk > after AND col = value ... ORDER BY pk LIMIT limit`,
    /// a plain read, or with `FOR UPDATE SKIP LOCKED` (`skip_locked`): each row it examines
    /// is locked exclusively for the transaction, and a row another transaction has locked
    /// (an uncommitted insert included) is passed over instead of waited for. With
    /// `for_update` and not `skip_locked`, `FOR UPDATE`: such a row is waited for.
    Scan {
        table: String,
        after: Option<Value>,
        only_if: Vec<(String, Value)>,
        limit: u32,
        skip_locked: bool,
        #[serde(default)]
        for_update: bool,
    },
    Commit,
    Rollback,
}

/// Which message's side effect a write belongs to, and which part of it (`inbox`, `debit`,
/// ...). The database reports tagged writes when they commit, per transaction, so the history
/// shows both whether a message's effect was applied and whether it was applied whole. A tag
/// is bookkeeping for the observer, like a Jepsen client's write log: it changes nothing the
/// statement does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub message: u64,
    pub part: String,
    /// This part completes the message's effect: when it commits, the effect is applied.
    #[serde(default)]
    pub completes: bool,
}

/// The tagged writes one transaction committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedWrites {
    pub txn: TxnId,
    pub writes: Vec<Tag>,
}

/// MySQL error numbers the model raises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DbError {
    /// 1213 ER_LOCK_DEADLOCK: the whole transaction was rolled back.
    Deadlock = 1213,
    /// 1205 ER_LOCK_WAIT_TIMEOUT: the statement was rolled back; the transaction is open
    /// (unless rollback_on_timeout).
    LockWaitTimeout = 1205,
    /// 1062 ER_DUP_ENTRY.
    DuplicateKey = 1062,
    /// No such table (a programming error in a workload).
    NoSuchTable = 1146,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Ok,
    Row(Option<Record>),
    Affected(u64),
    /// An INSERT into an `AUTO_INCREMENT` table: one row, and the id it took
    /// (`LAST_INSERT_ID()`).
    Inserted(i64),
    /// A scan's rows, in primary key order.
    Rows(Vec<Record>),
    Error(DbError),
    /// Waiting for a row lock; resume when granted.
    Blocked,
}

pub type SessionId = u64;

#[derive(Clone, Debug)]
struct Txn {
    id: TxnId,
    explicit: bool,
    /// (table, key, the record before this transaction's first change; None = absent).
    undo: Vec<(String, Value, Option<Record>)>,
    changed: BTreeSet<(String, Value)>,
    /// Tagged writes this transaction made, in statement order.
    writes: Vec<Tag>,
    /// A `SKIP LOCKED` scan gave this transaction rows to work on (an outbox relay's claim).
    claimed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineOptions {
    pub locks: LockOptions,
    /// innodb_flush_log_at_trx_commit = 1: fsync the redo log at every commit.
    pub flush_at_commit: bool,
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions {
            locks: LockOptions::default(),
            flush_at_commit: true,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct RedoRecord {
    changes: Vec<(String, Value, Option<Record>)>,
}

pub struct Engine<D: Disk> {
    options: EngineOptions,
    disk: D,
    schemas: BTreeMap<String, TableSchema>,
    tables: BTreeMap<String, BTreeMap<Value, Record>>,
    locks: LockManager,
    sessions: BTreeMap<SessionId, Option<Txn>>,
    /// A blocked statement per session, to run again when its lock is granted.
    blocked: BTreeMap<SessionId, Statement>,
    /// The latest time a statement or tick brought: a resumed scan that waits again for
    /// another row starts that wait now, not at time zero.
    clock: Duration,
    next_txn: TxnId,
    next_session: SessionId,
    /// Sessions whose blocked statement ended because they were a deadlock victim.
    deadlocked: Vec<SessionId>,
    /// Tagged writes of transactions committed since the last `take_committed_writes`.
    committed_writes: Vec<CommittedWrites>,
    next_sync: Duration,
    /// The next `AUTO_INCREMENT` id per table that has one.
    auto_increment: BTreeMap<String, i64>,
    /// Notes for "sometimes" counters.
    pub notes: Vec<&'static str>,
}

impl<D: Disk> Engine<D> {
    /// Opens the engine on `disk`, replaying the redo log over empty tables.
    pub fn open(options: EngineOptions, disk: D, schemas: Vec<TableSchema>, now: Duration) -> Engine<D> {
        let mut engine = Engine {
            locks: LockManager::new(options.locks.clone()),
            options,
            disk,
            tables: schemas
                .iter()
                .map(|s| (s.name.clone(), BTreeMap::new()))
                .collect(),
            schemas: schemas.into_iter().map(|s| (s.name.clone(), s)).collect(),
            sessions: BTreeMap::new(),
            blocked: BTreeMap::new(),
            clock: Duration::ZERO,
            next_txn: 1,
            next_session: 1,
            deadlocked: Vec::new(),
            committed_writes: Vec::new(),
            next_sync: now + Duration::from_secs(1),
            auto_increment: BTreeMap::new(),
            notes: Vec::new(),
        };
        engine.replay();
        engine.auto_increment = engine
            .schemas
            .values()
            .filter(|s| s.auto_increment)
            .map(|s| (s.name.clone(), engine.largest_int_key(&s.name) + 1))
            .collect();
        engine
    }

    /// The largest integer primary key in `table` (0 when none): where the counter restarts
    /// when the engine opens, as InnoDB did before MySQL 8.0 and MariaDB 10.2.4 persisted it.
    fn largest_int_key(&self, table: &str) -> i64 {
        self.tables[table]
            .keys()
            .filter_map(|k| match k {
                Value::Int(i) => Some(*i),
                Value::Text(_) => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// An INSERT into an `AUTO_INCREMENT` table without its key takes the next id now, at
    /// statement time, whether its transaction later commits or not (InnoDB's
    /// `innodb_autoinc_lock_mode` 1 and 2 both do this for a simple INSERT): so a rolled-back
    /// insert leaves a gap, and a transaction holding a lower id can commit after one holding
    /// a higher id. An explicit id at or past the counter moves the counter past it.
    fn assign_auto_increment(&mut self, statement: Statement) -> Statement {
        let Statement::Insert {
            table,
            mut record,
            tag,
        } = statement
        else {
            return statement;
        };
        if let (Some(schema), Some(next)) = (self.schemas.get(&table), self.auto_increment.get_mut(&table)) {
            match record.get(&schema.primary_key) {
                None => {
                    record.insert(schema.primary_key.clone(), Value::Int(*next));
                    *next += 1;
                }
                Some(Value::Int(given)) if *given >= *next => *next = given + 1,
                Some(_) => {}
            }
        }
        Statement::Insert { table, record, tag }
    }

    fn replay(&mut self) {
        let Ok(log) = self.disk.read(REDO_LOG) else { return };
        let mut at = 0;
        while at + 4 <= log.len() {
            let len = u32::from_be_bytes(log[at..at + 4].try_into().expect("4 bytes")) as usize;
            let Some(bytes) = log.get(at + 4..at + 4 + len) else {
                self.notes.push("db.redo_torn_tail");
                break; // a torn last record: that commit never became durable
            };
            let Ok(record) = serde_json::from_slice::<RedoRecord>(bytes) else {
                self.notes.push("db.redo_torn_tail");
                break;
            };
            for (table, key, after) in record.changes {
                if let Some(rows) = self.tables.get_mut(&table) {
                    match after {
                        Some(row) => rows.insert(key, row),
                        None => rows.remove(&key),
                    };
                }
            }
            at += 4 + len;
        }
    }

    pub fn table(&self, name: &str) -> Option<&BTreeMap<Value, Record>> {
        self.tables.get(name)
    }

    /// The table as committed: rows changed by open transactions show their value before
    /// those transactions (their undo images; exclusive row locks mean no one else changed
    /// them since). What a read from another session would see, with no dirty reads.
    pub fn committed(&self, name: &str) -> BTreeMap<Value, Record> {
        let mut rows = self.tables.get(name).cloned().unwrap_or_default();
        for txn in self.sessions.values().flatten() {
            for (table, key, before) in &txn.undo {
                if table == name {
                    match before {
                        Some(row) => rows.insert(key.clone(), row.clone()),
                        None => rows.remove(key),
                    };
                }
            }
        }
        rows
    }

    pub fn connect(&mut self) -> SessionId {
        let id = self.next_session;
        self.next_session += 1;
        self.sessions.insert(id, None);
        id
    }

    /// The session's connection closed: an open transaction is rolled back (as MySQL does).
    pub fn disconnect(&mut self, session: SessionId) -> Vec<(SessionId, Outcome)> {
        self.blocked.remove(&session);
        let woken = match self.sessions.remove(&session).flatten() {
            Some(txn) => {
                if txn.claimed {
                    // The claimed rows are free again for the next SKIP LOCKED scan.
                    self.notes.push("db.claim_rolled_back_on_disconnect");
                }
                self.abort(txn)
            }
            None => Vec::new(),
        };
        self.resume(woken)
    }

    fn txn_of(&mut self, session: SessionId) -> Txn {
        match self.sessions.get_mut(&session).and_then(Option::take) {
            Some(txn) => txn,
            None => {
                let id = self.next_txn;
                self.next_txn += 1;
                self.locks.begin(id);
                Txn {
                    id,
                    explicit: false,
                    undo: Vec::new(),
                    changed: BTreeSet::new(),
                    writes: Vec::new(),
                    claimed: false,
                }
            }
        }
    }

    /// Runs one statement for `session`. Also returns other sessions' blocked statements that
    /// finished because this one released locks (commit, rollback, deadlock victim).
    pub fn execute(
        &mut self,
        session: SessionId,
        statement: Statement,
        now: Duration,
    ) -> (Outcome, Vec<(SessionId, Outcome)>) {
        assert!(
            !self.blocked.contains_key(&session),
            "a blocked session sends nothing"
        );
        self.clock = self.clock.max(now);
        let mut woken = Vec::new();
        let outcome = self.run(session, statement, now, &mut woken);
        let resumed = self.resume(woken);
        (outcome, resumed)
    }

    fn run(
        &mut self,
        session: SessionId,
        statement: Statement,
        now: Duration,
        woken: &mut Vec<WaitEnded>,
    ) -> Outcome {
        match statement {
            Statement::Begin => {
                // BEGIN inside a transaction commits it first (implicit commit), as MySQL does;
                // the committed transaction leaves the session, so nothing can undo it.
                if let Some(txn) = self.sessions.get_mut(&session).and_then(Option::take) {
                    woken.extend(self.commit(txn));
                }
                let mut txn = self.txn_of(session);
                txn.explicit = true;
                self.sessions.insert(session, Some(txn));
                Outcome::Ok
            }
            Statement::Commit => {
                if let Some(txn) = self.sessions.get_mut(&session).and_then(Option::take) {
                    woken.extend(self.commit(txn));
                }
                Outcome::Ok
            }
            Statement::Rollback => {
                if let Some(txn) = self.sessions.get_mut(&session).and_then(Option::take) {
                    woken.extend(self.abort(txn));
                }
                Outcome::Ok
            }
            Statement::Select {
                ref table,
                ref key,
                for_update: false,
            } => match self.tables.get(table) {
                // A plain SELECT outside a transaction is its own autocommit statement.
                Some(rows) => Outcome::Row(rows.get(key).cloned()),
                None => Outcome::Error(DbError::NoSuchTable),
            },
            Statement::Insert { .. } => {
                let statement = self.assign_auto_increment(statement);
                self.run_on_row(session, statement, now, woken)
            }
            Statement::Select { .. } | Statement::Update { .. } => {
                self.run_on_row(session, statement, now, woken)
            }
            Statement::Scan { ref table, .. } if !self.tables.contains_key(table) => {
                Outcome::Error(DbError::NoSuchTable)
            }
            Statement::Scan {
                ref table,
                ref after,
                ref only_if,
                limit,
                skip_locked,
                for_update,
            } => {
                let scan = ScanOf {
                    table: table.clone(),
                    after: after.clone(),
                    only_if: only_if.clone(),
                    limit,
                };
                if skip_locked {
                    self.scan_skip_locked(session, &scan, woken)
                } else if for_update {
                    self.scan_for_update(session, &scan, statement, now, woken)
                } else {
                    self.scan_committed(&scan)
                }
            }
        }
    }

    /// A plain scan reads the committed rows: a fresh consistent read, as an autocommit
    /// SELECT takes (the session's own uncommitted rows are not shown; no design scans inside
    /// its own writing transaction). When it returns a row past one another transaction
    /// inserted and has not committed, the engine notes it: that row becomes visible later
    /// *below* what the reader has seen, the outbox's ordering trap (reference §5.1).
    fn scan_committed(&mut self, scan: &ScanOf) -> Outcome {
        let committed = self.committed(&scan.table);
        let picked = scan.pick(committed.clone(), |_| true);
        let schema = &self.schemas[&scan.table];
        let highest = picked.last().and_then(|row| row.get(&schema.primary_key));
        let passes_uncommitted = highest.is_some_and(|highest| {
            self.tables[&scan.table].keys().any(|key| {
                key < highest
                    && scan.after.as_ref().is_none_or(|after| key > after)
                    && !committed.contains_key(key)
            })
        });
        if passes_uncommitted {
            self.notes.push("db.scan_passed_uncommitted_insert");
        }
        Outcome::Rows(picked)
    }

    /// `SELECT ... FOR UPDATE SKIP LOCKED`: examines rows in key order, locking each one
    /// it can lock at once and passing over one another transaction holds (InnoDB's
    /// `LOCK_WAIT` becomes a skip). The lock is taken before the WHERE clause is judged, as
    /// InnoDB does on a scan of the clustered index, and kept to the end of the transaction
    /// (REPEATABLE READ). Gap locks are not modelled (`db` docs, known difference 2).
    fn scan_skip_locked(&mut self, session: SessionId, scan: &ScanOf, woken: &mut Vec<WaitEnded>) -> Outcome {
        let mut txn = self.txn_of(session);
        let rows = self.tables[&scan.table].clone();
        let mut skipped = false;
        let picked = scan.pick(rows, |key| {
            let locked = self
                .locks
                .try_acquire(txn.id, &RowId::new(&scan.table, key_text(key)));
            skipped |= !locked;
            locked
        });
        if skipped {
            self.notes.push("db.skip_locked_passed_over");
        }
        txn.claimed |= !picked.is_empty();
        self.finish_statement(session, txn, woken);
        Outcome::Rows(picked)
    }

    /// `SELECT ... FOR UPDATE` without SKIP LOCKED: examines rows in key order and locks each
    /// one exclusively, waiting for a row another transaction holds (an uncommitted insert
    /// included). The statement then blocks, and runs again from its start once the lock is
    /// granted: the rows it locked already stay locked, as InnoDB keeps them. Each locked
    /// row is judged by its latest committed version, as a locking read does (not the
    /// transaction's snapshot), so a row another relay marked sent while this one waited no
    /// longer matches. Gap locks are not modelled (`db` docs, known difference 2).
    fn scan_for_update(
        &mut self,
        session: SessionId,
        scan: &ScanOf,
        statement: Statement,
        now: Duration,
        woken: &mut Vec<WaitEnded>,
    ) -> Outcome {
        let mut txn = self.txn_of(session);
        let keys: Vec<Value> = self.tables[&scan.table]
            .keys()
            .filter(|key| scan.after.as_ref().is_none_or(|after| *key > after))
            .cloned()
            .collect();
        let mut picked = Vec::new();
        for key in keys {
            if picked.len() >= scan.limit as usize {
                break;
            }
            let row = RowId::new(&scan.table, key_text(&key));
            let waits = match self.locks.acquire(txn.id, &row, Mode::Exclusive, now) {
                Acquired::Granted => false,
                Acquired::Waiting => true,
                Acquired::Deadlock { victims, .. } => {
                    if let Err(error) = self.settle_deadlock(session, &txn, &victims, woken) {
                        return error;
                    }
                    self.locks.is_waiting(txn.id)
                }
            };
            if waits {
                self.notes.push("db.for_update_waited");
                self.sessions.insert(session, Some(txn));
                self.blocked.insert(session, statement);
                return Outcome::Blocked;
            }
            // Gone if the insert it waited for was rolled back.
            if let Some(record) = self.tables[&scan.table].get(&key) {
                if scan.only_if.iter().all(|(col, v)| record.get(col) == Some(v)) {
                    picked.push(record.clone());
                }
            }
        }
        txn.claimed |= !picked.is_empty();
        self.finish_statement(session, txn, woken);
        Outcome::Rows(picked)
    }

    /// After the deadlock check chose `victims`: rolls back the others (their blocked
    /// statements end with 1213), and, if `txn` is one, its own transaction: `Err` with the
    /// statement's 1213.
    fn settle_deadlock(
        &mut self,
        session: SessionId,
        txn: &Txn,
        victims: &[TxnId],
        woken: &mut Vec<WaitEnded>,
    ) -> Result<(), Outcome> {
        woken.extend(self.locks.take_grants());
        for victim in victims.iter().filter(|v| **v != txn.id) {
            self.notes.push("db.deadlock");
            self.roll_back_victim(*victim);
        }
        if victims.contains(&txn.id) {
            // 1213: the whole transaction is rolled back (its locks are already gone).
            self.notes.push("db.deadlock");
            self.undo(txn);
            self.sessions.insert(session, None);
            return Err(Outcome::Error(DbError::Deadlock));
        }
        Ok(())
    }

    /// A statement on one row (SELECT ... FOR UPDATE, INSERT, UPDATE): checked first, so one
    /// that fails its checks starts no transaction, then run under the row's exclusive lock.
    fn run_on_row(
        &mut self,
        session: SessionId,
        statement: Statement,
        now: Duration,
        woken: &mut Vec<WaitEnded>,
    ) -> Outcome {
        let row = match self.row_of(&statement) {
            Ok(row) => row,
            Err(error) => {
                self.weigh_unique_check(session, &statement, error);
                return Outcome::Error(error);
            }
        };
        let txn = self.txn_of(session);
        let locked = statement.clone();
        self.with_lock(session, txn, row, statement, now, woken, move |engine, txn| {
            engine.on_locked_row(txn, &locked)
        })
    }

    /// An explicit transaction's INSERT that failed on a unique column weighs the unique
    /// index lock InnoDB took for its check ([`LockManager::unique_checked`]).
    fn weigh_unique_check(&mut self, session: SessionId, statement: &Statement, error: DbError) {
        if let (DbError::DuplicateKey, Statement::Insert { table, .. }) = (error, statement) {
            if let Some(Some(txn)) = self.sessions.get(&session) {
                self.locks.unique_checked(txn.id, table);
            }
        }
    }

    /// The row a statement locks and how, or why it fails before it locks anything.
    ///
    /// An INSERT whose primary key is taken (committed, or another transaction's uncommitted
    /// row) asks for a shared lock, as InnoDB's duplicate check does
    /// (`row_ins_duplicate_error_in_clust`: `LOCK_S`, `LOCK_REC_NOT_GAP`): it waits for an
    /// uncommitted writer, then fails with 1062 holding only that shared lock, so a second
    /// INSERT of the same key fails at once instead of waiting. An INSERT whose only clash is
    /// a unique column fails at once with no row lock: InnoDB's lock then is on the unique
    /// index's record, which the engine does not model (`db` docs, known difference 1). Both
    /// found by `models/tests/db_differential.rs` against MariaDB.
    fn row_of(&self, statement: &Statement) -> Result<(RowId, Mode), DbError> {
        match statement {
            Statement::Select { table, key, .. } | Statement::Update { table, key, .. } => {
                if !self.tables.contains_key(table) {
                    return Err(DbError::NoSuchTable);
                }
                Ok((RowId::new(table, key_text(key)), Mode::Exclusive))
            }
            Statement::Insert { table, record, .. } => {
                let schema = self.schemas.get(table).ok_or(DbError::NoSuchTable)?;
                let key = record.get(&schema.primary_key).ok_or(DbError::DuplicateKey)?;
                let row = RowId::new(&schema.name, key_text(key));
                if self.tables[table].contains_key(key) {
                    Ok((row, Mode::Shared))
                } else if self.is_duplicate(schema, key, record) {
                    Err(DbError::DuplicateKey)
                } else {
                    Ok((row, Mode::Exclusive))
                }
            }
            Statement::Begin | Statement::Commit | Statement::Rollback | Statement::Scan { .. } => {
                unreachable!("transaction control and scans lock no single row")
            }
        }
    }

    /// What a row statement does once its transaction holds the row's exclusive lock.
    fn on_locked_row(&mut self, txn: &mut Txn, statement: &Statement) -> Outcome {
        match statement {
            Statement::Select { table, key, .. } => Outcome::Row(self.tables[table].get(key).cloned()),
            Statement::Insert { table, record, tag } => self.insert_row(txn, table, record, tag),
            Statement::Update {
                table,
                key,
                set,
                only_if,
                tag,
            } => self.update_row(txn, table, key, set, only_if, tag),
            Statement::Begin | Statement::Commit | Statement::Rollback | Statement::Scan { .. } => {
                unreachable!("transaction control and scans lock no single row")
            }
        }
    }

    fn insert_row(&mut self, txn: &mut Txn, table: &str, record: &Record, tag: &Option<Tag>) -> Outcome {
        let schema = &self.schemas[table];
        let key = record
            .get(&schema.primary_key)
            .cloned()
            .expect("row_of checked the primary key");
        if self.is_duplicate(schema, &key, record) {
            if !self.tables[table].contains_key(&key) {
                self.locks.unique_checked(txn.id, table); // the clash is a unique column's
            }
            return Outcome::Error(DbError::DuplicateKey);
        }
        self.change(txn, table, key.clone(), Some(record.clone()));
        txn.writes.extend(tag.clone());
        match key {
            Value::Int(id) if schema_auto_increment(&self.schemas, table) => Outcome::Inserted(id),
            _ => Outcome::Affected(1),
        }
    }

    /// INSERT's 1062: the primary key, or the value of a unique column, is taken.
    fn is_duplicate(&self, schema: &TableSchema, key: &Value, record: &Record) -> bool {
        let rows = &self.tables[&schema.name];
        rows.contains_key(key)
            || schema.unique.iter().any(|col| {
                record
                    .get(col)
                    .is_some_and(|v| rows.values().any(|r| r.get(col) == Some(v)))
            })
    }

    fn update_row(
        &mut self,
        txn: &mut Txn,
        table: &str,
        key: &Value,
        set: &[Set],
        only_if: &[(String, Value)],
        tag: &Option<Tag>,
    ) -> Outcome {
        let Some(current) = self.tables[table].get(key).cloned() else {
            return Outcome::Affected(0);
        };
        if !only_if.iter().all(|(col, v)| current.get(col) == Some(v)) {
            return Outcome::Affected(0);
        }
        let next = updated(&current, set);
        if next == current {
            return Outcome::Affected(0); // MySQL counts changed rows
        }
        self.change(txn, table, key.clone(), Some(next));
        txn.writes.extend(tag.clone());
        Outcome::Affected(1)
    }

    /// Takes the statement's lock on its row (exclusive, or shared for a duplicate INSERT's
    /// check), then runs `body`; or blocks; or fails
    /// with 1213 when this transaction is the deadlock victim.
    #[allow(clippy::too_many_arguments)]
    fn with_lock(
        &mut self,
        session: SessionId,
        mut txn: Txn,
        (row, mode): (RowId, Mode),
        statement: Statement,
        now: Duration,
        woken: &mut Vec<WaitEnded>,
        body: impl FnOnce(&mut Engine<D>, &mut Txn) -> Outcome,
    ) -> Outcome {
        let inserts = matches!(statement, Statement::Insert { .. }) && mode == Mode::Exclusive;
        let acquired = if inserts {
            self.locks.acquire_inserted(txn.id, &row, now)
        } else {
            self.locks.acquire(txn.id, &row, mode, now)
        };
        match acquired {
            Acquired::Granted => {
                let outcome = body(self, &mut txn);
                self.finish_statement(session, txn, woken);
                outcome
            }
            Acquired::Waiting => {
                self.sessions.insert(session, Some(txn));
                self.blocked.insert(session, statement);
                Outcome::Blocked
            }
            Acquired::Deadlock { victims, .. } => {
                if let Err(error) = self.settle_deadlock(session, &txn, &victims, woken) {
                    return error;
                }
                // Other transactions were the victims; this one waits on (or got) the lock.
                if self.locks.is_waiting(txn.id) {
                    self.sessions.insert(session, Some(txn));
                    self.blocked.insert(session, statement);
                    Outcome::Blocked
                } else {
                    let outcome = body(self, &mut txn);
                    self.finish_statement(session, txn, woken);
                    outcome
                }
            }
        }
    }

    /// Another session's transaction was chosen as a deadlock victim: undo it, and end its
    /// blocked statement with 1213.
    fn roll_back_victim(&mut self, victim: TxnId) {
        let victim_session = self
            .sessions
            .iter()
            .find(|(_, t)| t.as_ref().is_some_and(|t| t.id == victim))
            .map(|(s, _)| *s);
        if let Some(victim_session) = victim_session {
            let victim_txn = self
                .sessions
                .insert(victim_session, None)
                .flatten()
                .expect("found above");
            self.undo(&victim_txn);
            self.blocked.remove(&victim_session);
            self.deadlocked.push(victim_session);
        }
    }

    fn finish_statement(&mut self, session: SessionId, txn: Txn, woken: &mut Vec<WaitEnded>) {
        if txn.explicit {
            self.sessions.insert(session, Some(txn));
        } else {
            self.sessions.insert(session, None);
            woken.extend(self.commit(txn));
        }
    }

    fn change(&mut self, txn: &mut Txn, table: &str, key: Value, after: Option<Record>) {
        let rows = self.tables.get_mut(table).expect("checked by the caller");
        if txn.changed.insert((table.to_string(), key.clone())) {
            txn.undo
                .push((table.to_string(), key.clone(), rows.get(&key).cloned()));
        }
        // InnoDB writes an undo record per change, so a row changed twice weighs twice.
        self.locks.modified(txn.id, 1);
        match after {
            Some(row) => rows.insert(key, row),
            None => rows.remove(&key),
        };
    }

    fn undo(&mut self, txn: &Txn) {
        for (table, key, before) in txn.undo.iter().rev() {
            let rows = self.tables.get_mut(table).expect("undo names known tables");
            match before {
                Some(row) => rows.insert(key.clone(), row.clone()),
                None => rows.remove(key),
            };
        }
    }

    fn abort(&mut self, txn: Txn) -> Vec<WaitEnded> {
        self.undo(&txn);
        self.locks.release(txn.id)
    }

    fn commit(&mut self, txn: Txn) -> Vec<WaitEnded> {
        if !txn.changed.is_empty() {
            let changes: Vec<(String, Value, Option<Record>)> = txn
                .changed
                .iter()
                .map(|(table, key)| (table.clone(), key.clone(), self.tables[table].get(key).cloned()))
                .collect();
            let bytes = serde_json::to_vec(&RedoRecord { changes }).expect("redo records serialize");
            let mut framed = (bytes.len() as u32).to_be_bytes().to_vec();
            framed.extend(bytes);
            if self.disk.append(REDO_LOG, &framed).is_ok() && self.options.flush_at_commit {
                let _ = self.disk.fsync(REDO_LOG);
            }
        }
        if !txn.writes.is_empty() {
            self.committed_writes.push(CommittedWrites {
                txn: txn.id,
                writes: txn.writes,
            });
        }
        self.locks.release(txn.id)
    }

    /// Statements blocked on locks that have now been granted run; timed-out ones fail.
    fn resume(&mut self, mut woken: Vec<WaitEnded>) -> Vec<(SessionId, Outcome)> {
        let mut done = Vec::new();
        for session in std::mem::take(&mut self.deadlocked) {
            done.push((session, Outcome::Error(DbError::Deadlock)));
        }
        while let Some(ended) = woken.pop() {
            match ended {
                WaitEnded::Granted(txn_id) => {
                    let Some(session) = self.session_of(txn_id) else {
                        continue;
                    };
                    let Some(statement) = self.blocked.remove(&session) else {
                        continue;
                    };
                    let mut more = Vec::new();
                    // The lock is held now: running the statement again cannot block on it
                    // (a FOR UPDATE scan can, on a later row: that wait starts now).
                    let outcome = self.run(session, statement, self.clock, &mut more);
                    woken.extend(more);
                    if matches!(outcome, Outcome::Blocked) {
                        continue; // a FOR UPDATE scan waiting again, on a later row
                    }
                    done.push((session, outcome));
                }
                WaitEnded::TimedOut { txn, rolled_back } => {
                    let Some(session) = self.session_of(txn) else {
                        continue;
                    };
                    self.blocked.remove(&session);
                    if rolled_back {
                        if let Some(t) = self.sessions.insert(session, None).flatten() {
                            self.undo(&t);
                        }
                    } else if let Some(Some(t)) = self.sessions.get(&session) {
                        if !t.explicit {
                            // An autocommit statement that timed out leaves nothing open.
                            let t = self.sessions.insert(session, None).flatten().expect("present");
                            woken.extend(self.abort(t));
                        }
                    }
                    self.notes.push("db.lock_wait_timeout");
                    done.push((session, Outcome::Error(DbError::LockWaitTimeout)));
                }
            }
        }
        for session in std::mem::take(&mut self.deadlocked) {
            done.push((session, Outcome::Error(DbError::Deadlock)));
        }
        done
    }

    fn session_of(&self, txn: TxnId) -> Option<SessionId> {
        self.sessions
            .iter()
            .find(|(_, t)| t.as_ref().is_some_and(|t| t.id == txn))
            .map(|(s, _)| *s)
    }

    /// Time passes: lock-wait timeouts, and the once-a-second redo fsync when commits are not
    /// flushed at commit.
    pub fn tick(&mut self, now: Duration) -> Vec<(SessionId, Outcome)> {
        if now >= self.next_sync {
            self.next_sync = now + Duration::from_secs(1);
            if !self.options.flush_at_commit && self.disk.len(REDO_LOG).is_ok() {
                let _ = self.disk.fsync(REDO_LOG);
            }
        }
        self.clock = self.clock.max(now);
        let ended = self.locks.expire(now);
        self.resume(ended)
    }

    /// Tagged writes committed since the last call, per transaction (what the database
    /// records in the history: the truth, whether or not the client heard the COMMIT's answer).
    pub fn take_committed_writes(&mut self) -> Vec<CommittedWrites> {
        std::mem::take(&mut self.committed_writes)
    }

    pub fn is_blocked(&self, session: SessionId) -> bool {
        self.blocked.contains_key(&session)
    }

    /// An injected deadlock (for swarm runs): the session's open transaction is rolled back
    /// whole, as if chosen as a deadlock victim, and its statement fails with 1213. Also
    /// returns other sessions' statements that the released locks let finish.
    pub fn inject_deadlock(&mut self, session: SessionId) -> (Outcome, Vec<(SessionId, Outcome)>) {
        let Some(txn) = self.sessions.get_mut(&session).and_then(Option::take) else {
            return (Outcome::Ok, Vec::new());
        };
        self.notes.push("db.deadlock_injected");
        let woken = self.abort(txn);
        (Outcome::Error(DbError::Deadlock), self.resume(woken))
    }

    pub fn in_transaction(&self, session: SessionId) -> bool {
        self.sessions.get(&session).is_some_and(Option::is_some)
    }
}

/// A scan's clauses: `WHERE pk > after AND only_if ... ORDER BY pk LIMIT limit`.
struct ScanOf {
    table: String,
    after: Option<Value>,
    only_if: Vec<(String, Value)>,
    limit: u32,
}

impl ScanOf {
    /// The matching rows of `rows`, in key order, up to the limit; `examine` is asked about
    /// each row past `after` before its WHERE clause is judged, and a row it refuses is left
    /// out (a row another transaction holds, for SKIP LOCKED).
    fn pick(&self, rows: BTreeMap<Value, Record>, mut examine: impl FnMut(&Value) -> bool) -> Vec<Record> {
        let mut picked = Vec::new();
        for (key, row) in rows {
            if picked.len() >= self.limit as usize {
                break;
            }
            if self.after.as_ref().is_some_and(|after| key <= *after) || !examine(&key) {
                continue;
            }
            if self.only_if.iter().all(|(col, v)| row.get(col) == Some(v)) {
                picked.push(row);
            }
        }
        picked
    }
}

/// The row after an UPDATE's `SET` list, applied in order.
fn updated(current: &Record, set: &[Set]) -> Record {
    let mut next = current.clone();
    for s in set {
        match s {
            Set::To(col, v) => {
                next.insert(col.clone(), v.clone());
            }
            Set::Add(col, n) => {
                let old = match next.get(col) {
                    Some(Value::Int(i)) => *i,
                    _ => 0,
                };
                next.insert(col.clone(), Value::Int(old + n));
            }
        }
    }
    next
}

fn schema_auto_increment(schemas: &BTreeMap<String, TableSchema>, table: &str) -> bool {
    schemas.get(table).is_some_and(|s| s.auto_increment)
}

fn key_text(value: &Value) -> String {
    match value {
        Value::Int(i) => i.to_string(),
        Value::Text(t) => t.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use sim::disk::SimDisk;

    const T0: Duration = Duration::ZERO;

    fn schemas() -> Vec<TableSchema> {
        crate::db::sim_db::schemas()
    }

    fn engine(disk: &SimDisk, flush_at_commit: bool) -> Engine<SimDisk> {
        Engine::open(
            EngineOptions {
                flush_at_commit,
                ..EngineOptions::default()
            },
            disk.clone(),
            schemas(),
            T0,
        )
    }

    fn account(id: i64, balance: i64) -> Statement {
        let mut record = Record::new();
        record.insert("id".into(), Value::Int(id));
        record.insert("balance".into(), Value::Int(balance));
        Statement::Insert {
            table: "accounts".into(),
            record,
            tag: None,
        }
    }

    fn add(id: i64, n: i64) -> Statement {
        Statement::Update {
            table: "accounts".into(),
            key: Value::Int(id),
            set: vec![Set::Add("balance".into(), n)],
            only_if: vec![],
            tag: Some(Tag {
                message: id as u64,
                part: "credit".into(),
                completes: true,
            }),
        }
    }

    fn balance(e: &Engine<SimDisk>, id: i64) -> i64 {
        match e
            .table("accounts")
            .unwrap()
            .get(&Value::Int(id))
            .and_then(|r| r.get("balance"))
        {
            Some(Value::Int(b)) => *b,
            _ => panic!("no account {id}"),
        }
    }

    fn inbox(message: i64) -> Statement {
        let mut record = Record::new();
        record.insert("message_id".into(), Value::Int(message));
        Statement::Insert {
            table: "inbox".into(),
            record,
            tag: None,
        }
    }

    fn exec(e: &mut Engine<SimDisk>, s: SessionId, st: Statement) -> (Outcome, Vec<(SessionId, Outcome)>) {
        e.execute(s, st, T0)
    }

    #[test]
    fn autocommit_insert_update_and_affected_rows() {
        let disk = SimDisk::new();
        let mut e = engine(&disk, true);
        let s = e.connect();
        assert_eq!(exec(&mut e, s, account(1, 100)).0, Outcome::Affected(1));
        assert_eq!(
            exec(&mut e, s, account(1, 5)).0,
            Outcome::Error(DbError::DuplicateKey)
        );
        assert_eq!(exec(&mut e, s, add(1, 5)).0, Outcome::Affected(1));
        let conditional = Statement::Update {
            table: "accounts".into(),
            key: Value::Int(1),
            set: vec![Set::To("state".into(), Value::Text("DONE".into()))],
            only_if: vec![("state".into(), Value::Text("NEW".into()))],
            tag: None,
        };
        assert_eq!(
            exec(&mut e, s, conditional).0,
            Outcome::Affected(0),
            "WHERE state='NEW' matched nothing"
        );
        assert_eq!(
            exec(&mut e, s, add(1, 0)).0,
            Outcome::Affected(0),
            "unchanged rows are not counted"
        );
        assert_eq!(balance(&e, 1), 105);
    }

    #[test]
    fn transfers_in_opposite_orders_deadlock_and_the_victims_whole_transaction_is_rolled_back() {
        let disk = SimDisk::new();
        let mut e = engine(&disk, true);
        let setup = e.connect();
        exec(&mut e, setup, account(1, 100));
        exec(&mut e, setup, account(2, 100));
        let (a, b) = (e.connect(), e.connect());
        exec(&mut e, a, Statement::Begin);
        exec(&mut e, b, Statement::Begin);
        assert_eq!(exec(&mut e, a, add(1, -10)).0, Outcome::Affected(1));
        assert_eq!(exec(&mut e, b, add(2, -20)).0, Outcome::Affected(1));
        assert_eq!(exec(&mut e, a, add(2, 10)).0, Outcome::Blocked);
        let (outcome, resumed) = exec(&mut e, b, add(1, 20));
        // Equal weights: the requester (b) is the victim; a's blocked UPDATE then runs.
        assert_eq!(outcome, Outcome::Error(DbError::Deadlock));
        assert_eq!(resumed, vec![(a, Outcome::Affected(1))]);
        assert!(!e.in_transaction(b), "1213 rolled back b's whole transaction");
        assert_eq!(
            balance(&e, 2),
            110,
            "b's earlier debit was undone, a's credit applied"
        );
        exec(&mut e, a, Statement::Commit);
        assert_eq!(
            balance(&e, 1) + balance(&e, 2),
            200,
            "money neither created nor destroyed"
        );
        assert!(e.notes.contains(&"db.deadlock"));
    }

    #[test]
    fn after_1205_the_transaction_is_open_and_committing_it_commits_a_partial_transaction() {
        let disk = SimDisk::new();
        let mut e = engine(&disk, true);
        let setup = e.connect();
        exec(&mut e, setup, account(1, 100));
        let (holder, consumer) = (e.connect(), e.connect());
        exec(&mut e, holder, Statement::Begin);
        exec(&mut e, holder, add(1, 1)); // holds the row lock
        exec(&mut e, consumer, Statement::Begin);
        assert_eq!(exec(&mut e, consumer, inbox(7)).0, Outcome::Affected(1));
        assert_eq!(exec(&mut e, consumer, add(1, 50)).0, Outcome::Blocked);
        let ended = e.tick(Duration::from_secs(50));
        assert_eq!(ended, vec![(consumer, Outcome::Error(DbError::LockWaitTimeout))]);
        assert!(e.in_transaction(consumer), "only the statement was rolled back");
        // The careless handler commits anyway: the inbox row without the business update.
        exec(&mut e, consumer, Statement::Commit);
        exec(&mut e, holder, Statement::Rollback);
        assert!(e.table("inbox").unwrap().contains_key(&Value::Int(7)));
        assert_eq!(
            balance(&e, 1),
            100,
            "the effect is missing: a partial transaction"
        );
    }

    #[test]
    fn an_insert_of_a_key_another_transaction_inserted_waits_then_fails_or_succeeds() {
        for commit_first in [true, false] {
            let disk = SimDisk::new();
            let mut e = engine(&disk, true);
            let (a, b) = (e.connect(), e.connect());
            exec(&mut e, a, Statement::Begin);
            exec(&mut e, a, inbox(9));
            assert_eq!(exec(&mut e, b, inbox(9)).0, Outcome::Blocked);
            let end = if commit_first {
                Statement::Commit
            } else {
                Statement::Rollback
            };
            let (_, resumed) = exec(&mut e, a, end);
            let expected = if commit_first {
                Outcome::Error(DbError::DuplicateKey)
            } else {
                Outcome::Affected(1)
            };
            assert_eq!(resumed, vec![(b, expected)], "commit_first = {commit_first}");
        }
    }

    #[test]
    fn a_duplicate_insert_holds_a_shared_lock_so_a_second_one_fails_at_once() {
        let disk = SimDisk::new();
        let mut e = engine(&disk, true);
        let setup = e.connect();
        exec(&mut e, setup, inbox(9));
        let (a, b) = (e.connect(), e.connect());
        exec(&mut e, a, Statement::Begin);
        exec(&mut e, b, Statement::Begin);
        assert_eq!(exec(&mut e, a, inbox(9)).0, Outcome::Error(DbError::DuplicateKey));
        assert_eq!(
            exec(&mut e, b, inbox(9)).0,
            Outcome::Error(DbError::DuplicateKey),
            "InnoDB's duplicate check takes a shared lock: two of them do not wait"
        );
        let lock = Statement::Select {
            table: "inbox".into(),
            key: Value::Int(9),
            for_update: true,
        };
        assert_eq!(
            exec(&mut e, b, lock).0,
            Outcome::Blocked,
            "but a writer waits for them"
        );
    }

    #[test]
    fn begin_inside_a_transaction_commits_it_for_good() {
        // Found by models/tests/db_differential.rs against MariaDB: the implicit commit's
        // changes stayed in the session's undo log, so the committed view hid them and a
        // later ROLLBACK undid them.
        let disk = SimDisk::new();
        let mut e = engine(&disk, true);
        let s = e.connect();
        exec(&mut e, s, account(1, 100));
        exec(&mut e, s, Statement::Begin);
        exec(&mut e, s, add(1, 5));
        exec(&mut e, s, Statement::Begin); // commits the transaction above
        assert_eq!(
            e.committed("accounts")[&Value::Int(1)]["balance"],
            Value::Int(105)
        );
        exec(&mut e, s, Statement::Rollback);
        assert_eq!(
            balance(&e, 1),
            105,
            "a ROLLBACK after BEGIN undoes nothing committed"
        );
    }

    #[test]
    fn a_closed_connection_rolls_its_transaction_back() {
        let disk = SimDisk::new();
        let mut e = engine(&disk, true);
        let s = e.connect();
        exec(&mut e, s, account(1, 100));
        exec(&mut e, s, Statement::Begin);
        exec(&mut e, s, add(1, 5));
        e.disconnect(s);
        assert_eq!(balance(&e, 1), 100);
    }

    #[test]
    fn the_committed_view_hides_open_transactions() {
        let disk = SimDisk::new();
        let mut e = engine(&disk, true);
        let s = e.connect();
        exec(&mut e, s, account(1, 100));
        exec(&mut e, s, Statement::Begin);
        exec(&mut e, s, add(1, -30));
        assert_eq!(balance(&e, 1), 70, "the session sees its own change");
        assert_eq!(
            e.committed("accounts")[&Value::Int(1)]["balance"],
            Value::Int(100)
        );
        exec(&mut e, s, Statement::Commit);
        assert_eq!(e.committed("accounts")[&Value::Int(1)]["balance"], Value::Int(70));
    }

    #[test]
    fn the_flush_policy_decides_what_a_power_failure_loses() {
        for flush_at_commit in [true, false] {
            let disk = SimDisk::new();
            let mut e = engine(&disk, flush_at_commit);
            let s = e.connect();
            exec(&mut e, s, account(1, 100));
            e.tick(Duration::from_secs(1)); // the once-a-second flush
            exec(&mut e, s, add(1, 5)); // acknowledged, flushed only if flush_at_commit
            drop(e);
            disk.power_fail(false, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
            let e = engine(&disk, flush_at_commit);
            let expected = if flush_at_commit { 105 } else { 100 };
            assert_eq!(balance(&e, 1), expected, "flush_at_commit = {flush_at_commit}");
        }
    }

    #[test]
    fn a_kill_keeps_every_commit_and_a_torn_redo_tail_is_ignored() {
        let disk = SimDisk::new();
        let mut e = engine(&disk, false);
        let s = e.connect();
        exec(&mut e, s, account(1, 100));
        exec(&mut e, s, add(1, 1));
        drop(e); // kill: the page cache keeps the redo log
        disk.append(REDO_LOG, &[0, 0, 1, 0, b'{']).unwrap(); // a torn record
        let e = engine(&disk, false);
        assert_eq!(balance(&e, 1), 101);
        assert!(e.notes.contains(&"db.redo_torn_tail"));
    }

    fn outbox_row(message: i64) -> Statement {
        let mut record = Record::new();
        record.insert("message".into(), Value::Int(message));
        record.insert("sent".into(), Value::Int(0));
        Statement::Insert {
            table: "outbox".into(),
            record,
            tag: None,
        }
    }

    fn scan(after: Option<i64>, skip_locked: bool) -> Statement {
        Statement::Scan {
            table: "outbox".into(),
            after: after.map(Value::Int),
            only_if: vec![("sent".into(), Value::Int(0))],
            limit: 10,
            skip_locked,
            for_update: skip_locked,
        }
    }

    fn ids(outcome: &Outcome) -> Vec<i64> {
        let Outcome::Rows(rows) = outcome else {
            panic!("not rows: {outcome:?}")
        };
        rows.iter()
            .map(|r| match r["id"] {
                Value::Int(id) => id,
                Value::Text(_) => panic!("text id"),
            })
            .collect()
    }

    #[test]
    fn auto_increment_ids_are_taken_at_insert_so_a_lower_id_can_commit_after_a_higher_one() {
        let disk = SimDisk::new();
        let mut e = engine(&disk, true);
        let (a, b, relay) = (e.connect(), e.connect(), e.connect());
        exec(&mut e, a, Statement::Begin);
        exec(&mut e, b, Statement::Begin);
        assert_eq!(exec(&mut e, a, outbox_row(1)).0, Outcome::Inserted(1));
        assert_eq!(
            exec(&mut e, b, outbox_row(2)).0,
            Outcome::Inserted(2),
            "no wait for a's id"
        );
        exec(&mut e, b, Statement::Commit);
        assert_eq!(
            ids(&exec(&mut e, relay, scan(Some(0), false)).0),
            vec![2],
            "a plain read sees only the committed higher id"
        );
        exec(&mut e, a, Statement::Commit);
        assert_eq!(
            ids(&exec(&mut e, relay, scan(Some(2), false)).0),
            Vec::<i64>::new(),
            "a cursor past 2 never sees id 1, committed later"
        );
        assert_eq!(ids(&exec(&mut e, relay, scan(None, false)).0), vec![1, 2]);
    }

    #[test]
    fn a_rolled_back_insert_leaves_a_gap_and_explicit_ids_move_the_counter() {
        let disk = SimDisk::new();
        let mut e = engine(&disk, true);
        let s = e.connect();
        exec(&mut e, s, Statement::Begin);
        assert_eq!(exec(&mut e, s, outbox_row(1)).0, Outcome::Inserted(1));
        exec(&mut e, s, Statement::Rollback);
        assert_eq!(
            exec(&mut e, s, outbox_row(2)).0,
            Outcome::Inserted(2),
            "id 1 is not reused"
        );
        let Statement::Insert { mut record, .. } = outbox_row(3) else {
            unreachable!()
        };
        record.insert("id".into(), Value::Int(10));
        let explicit = Statement::Insert {
            table: "outbox".into(),
            record,
            tag: None,
        };
        assert_eq!(exec(&mut e, s, explicit).0, Outcome::Inserted(10));
        assert_eq!(exec(&mut e, s, outbox_row(4)).0, Outcome::Inserted(11));
        drop(e);
        let mut e = engine(&disk, true);
        let s = e.connect();
        assert_eq!(
            exec(&mut e, s, outbox_row(5)).0,
            Outcome::Inserted(12),
            "reopened, the counter starts past the largest id"
        );
    }

    #[test]
    fn skip_locked_passes_over_rows_other_transactions_hold_and_locks_the_rest() {
        let disk = SimDisk::new();
        let mut e = engine(&disk, true);
        let (w, r1, r2) = (e.connect(), e.connect(), e.connect());
        exec(&mut e, w, outbox_row(1));
        exec(&mut e, w, outbox_row(2));
        exec(&mut e, w, Statement::Begin);
        exec(&mut e, w, outbox_row(3)); // uncommitted: implicitly locked by w
        exec(&mut e, r1, Statement::Begin);
        let mut first = scan(None, true);
        if let Statement::Scan { limit, .. } = &mut first {
            *limit = 1;
        }
        assert_eq!(ids(&exec(&mut e, r1, first).0), vec![1]);
        exec(&mut e, r2, Statement::Begin);
        let (outcome, resumed) = exec(&mut e, r2, scan(None, true));
        assert_eq!(
            ids(&outcome),
            vec![2],
            "1 is r1's and 3 is w's: passed over, not waited for"
        );
        assert!(resumed.is_empty() && !e.is_blocked(r2));
        assert!(e.notes.contains(&"db.skip_locked_passed_over"));
        let update = Statement::Update {
            table: "outbox".into(),
            key: Value::Int(2),
            set: vec![Set::To("sent".into(), Value::Int(1))],
            only_if: vec![],
            tag: None,
        };
        assert_eq!(
            exec(&mut e, r1, update).0,
            Outcome::Blocked,
            "r2 holds row 2 to its commit"
        );
        exec(&mut e, w, Statement::Commit);
        let (_, resumed) = exec(&mut e, r2, Statement::Commit);
        assert_eq!(resumed, vec![(r1, Outcome::Affected(1))]);
        exec(&mut e, r1, Statement::Commit);
        exec(&mut e, r2, Statement::Begin);
        assert_eq!(ids(&exec(&mut e, r2, scan(None, true)).0), vec![1, 3]);
        e.disconnect(r2);
        assert!(
            e.notes.contains(&"db.claim_rolled_back_on_disconnect"),
            "a claim's connection closed: its rows are unclaimed"
        );
        assert_eq!(ids(&exec(&mut e, r1, scan(None, true)).0), vec![1, 3]);
    }

    /// `FOR UPDATE` without SKIP LOCKED waits: for a row another relay claimed, then (run
    /// again from its start) for a writer's uncommitted insert; each locked row is judged by
    /// its latest committed version, so the row the first relay marked is passed.
    #[test]
    fn for_update_waits_for_each_locked_row_and_reads_the_latest_version() {
        let disk = SimDisk::new();
        let mut e = engine(&disk, true);
        let (w, r1, r2) = (e.connect(), e.connect(), e.connect());
        exec(&mut e, w, outbox_row(1));
        exec(&mut e, w, outbox_row(2));
        exec(&mut e, w, Statement::Begin);
        exec(&mut e, w, outbox_row(3)); // uncommitted: implicitly locked by w
        let waiting = |limit| Statement::Scan {
            table: "outbox".into(),
            after: None,
            only_if: vec![("sent".into(), Value::Int(0))],
            limit,
            skip_locked: false,
            for_update: true,
        };
        exec(&mut e, r1, Statement::Begin);
        assert_eq!(ids(&exec(&mut e, r1, waiting(1)).0), vec![1]);
        exec(&mut e, r2, Statement::Begin);
        assert_eq!(exec(&mut e, r2, waiting(10)).0, Outcome::Blocked, "row 1 is r1's");
        assert!(e.notes.contains(&"db.for_update_waited"));
        let mark = Statement::Update {
            table: "outbox".into(),
            key: Value::Int(1),
            set: vec![Set::To("sent".into(), Value::Int(1))],
            only_if: vec![],
            tag: None,
        };
        assert_eq!(exec(&mut e, r1, mark).0, Outcome::Affected(1));
        let (_, resumed) = exec(&mut e, r1, Statement::Commit);
        assert!(resumed.is_empty(), "r2 now waits for w's row 3, no answer yet");
        assert!(e.is_blocked(r2));
        let (_, resumed) = exec(&mut e, w, Statement::Commit);
        assert_eq!(resumed.len(), 1);
        assert_eq!(resumed[0].0, r2);
        assert_eq!(ids(&resumed[0].1), vec![2, 3], "row 1 is sent = 1 now");
    }

    #[test]
    fn a_scan_of_a_missing_table_is_1146() {
        let disk = SimDisk::new();
        let mut e = engine(&disk, true);
        let s = e.connect();
        let missing = Statement::Scan {
            table: "nope".into(),
            after: None,
            only_if: vec![],
            limit: 1,
            skip_locked: true,
            for_update: true,
        };
        assert_eq!(exec(&mut e, s, missing).0, Outcome::Error(DbError::NoSuchTable));
        assert!(!e.in_transaction(s), "a failed statement starts no transaction");
    }
}
