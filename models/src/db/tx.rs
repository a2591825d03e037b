//! The transaction a user's handler gets (issue 13): a small typed API over the engine's
//! [`Statement`]s, sent on the consumer's own connection to the database host, so the
//! handler meets the engine's real locking and its 1213/1205/1062 errors.
//!
//! Like a MySQL driver, it passes statements through and lets the server decide: after a
//! 1213 the transaction is already rolled back and later statements run in autocommit
//! (reference §5.2, pitfall 2); after a 1205 the transaction is still open with its earlier
//! changes (pitfall 1). A handler that wants the careful behaviour writes it.
//!
//! Which writes are the message's effect is the user's to say: [`Write::effect`] marks the
//! write whose commit applies the effect, [`Write::part`] a write that belongs to it. The
//! database records them through the engine's [`Tag`]s at commit, so the duplicate-effect,
//! lost and partial-transaction checkers judge the user's handler from the history alone.

use super::client::{DbConn, NoAnswer};
use super::engine::{DbError, Outcome, Record, Set, Statement, Tag, Value};
use std::fmt;
use std::time::Duration;

/// A statement failed; the MySQL error number where there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxError {
    /// 1213 ER_LOCK_DEADLOCK: the whole transaction was rolled back.
    Deadlock,
    /// 1205 ER_LOCK_WAIT_TIMEOUT: the statement was rolled back; the transaction is still
    /// open with its earlier changes (unless `rollback_on_timeout`).
    LockWaitTimeout,
    /// 1062 ER_DUP_ENTRY.
    DuplicateKey,
    /// 1146 ER_NO_SUCH_TABLE.
    NoSuchTable,
    /// No answer within the statement timeout, or the connection is gone: the database rolls
    /// back what was uncommitted, and a COMMIT's outcome is unknown. The connection is
    /// dropped; every later statement of this transaction fails the same way.
    NoAnswer,
}

impl TxError {
    /// MySQL's error number, `None` for a lost connection.
    pub fn code(&self) -> Option<u32> {
        match self {
            TxError::Deadlock => Some(DbError::Deadlock as u32),
            TxError::LockWaitTimeout => Some(DbError::LockWaitTimeout as u32),
            TxError::DuplicateKey => Some(DbError::DuplicateKey as u32),
            TxError::NoSuchTable => Some(DbError::NoSuchTable as u32),
            TxError::NoAnswer => None,
        }
    }

    fn of(error: DbError) -> TxError {
        match error {
            DbError::Deadlock => TxError::Deadlock,
            DbError::LockWaitTimeout => TxError::LockWaitTimeout,
            DbError::DuplicateKey => TxError::DuplicateKey,
            DbError::NoSuchTable => TxError::NoSuchTable,
        }
    }
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            TxError::Deadlock => "1213 deadlock: the transaction was rolled back",
            TxError::LockWaitTimeout => "1205 lock wait timeout: the statement was rolled back",
            TxError::DuplicateKey => "1062 duplicate key",
            TxError::NoSuchTable => "1146 no such table",
            TxError::NoAnswer => "no answer from the database: the connection is dropped",
        };
        f.write_str(text)
    }
}

impl std::error::Error for TxError {}

/// A row: column name to value.
pub type Row = Record;

/// The effect marking a write carries (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Write {
    mark: Option<(String, bool)>,
}

impl Write {
    /// This write completes the message's effect: when its transaction commits, the effect
    /// is applied (the history's `effect`).
    pub fn effect(part: &str) -> Write {
        Write {
            mark: Some((part.to_string(), true)),
        }
    }

    /// This write is one part of the message's effect, without completing it (the history's
    /// `write` names it; the partial-transaction checker wants every declared part).
    pub fn part(part: &str) -> Write {
        Write {
            mark: Some((part.to_string(), false)),
        }
    }

    /// A write that is no part of the message's effect.
    pub fn plain() -> Write {
        Write::default()
    }

    fn tag(&self, message: u64) -> Option<Tag> {
        self.mark.as_ref().map(|(part, completes)| Tag {
            message,
            part: part.clone(),
            completes: *completes,
        })
    }
}

/// `UPDATE table SET ... WHERE pk = key AND col = value ...`, built step by step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    table: String,
    key: Value,
    set: Vec<Set>,
    only_if: Vec<(String, Value)>,
    write: Write,
}

impl Update {
    pub fn new(table: &str, key: impl Into<Value>) -> Update {
        Update {
            table: table.to_string(),
            key: key.into(),
            set: Vec::new(),
            only_if: Vec::new(),
            write: Write::plain(),
        }
    }

    /// `SET column = value`.
    pub fn set(mut self, column: &str, value: impl Into<Value>) -> Update {
        self.set.push(Set::To(column.to_string(), value.into()));
        self
    }

    /// `SET column = column + amount`.
    pub fn add(mut self, column: &str, amount: i64) -> Update {
        self.set.push(Set::Add(column.to_string(), amount));
        self
    }

    /// `AND column = value` in the WHERE clause: a row that does not match is not changed,
    /// and the rows affected say so.
    pub fn only_if(mut self, column: &str, value: impl Into<Value>) -> Update {
        self.only_if.push((column.to_string(), value.into()));
        self
    }

    /// How this write counts toward the message's effect.
    pub fn marked(mut self, write: Write) -> Update {
        self.write = write;
        self
    }
}

/// `SELECT * FROM table WHERE pk > after AND ... ORDER BY pk LIMIT limit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    table: String,
    after: Option<Value>,
    only_if: Vec<(String, Value)>,
    limit: u32,
    skip_locked: bool,
    for_update: bool,
}

/// Bound on a scan's rows, so a handler cannot ask for a whole table at once.
pub const SCAN_LIMIT_MAX: u32 = 10_000;

impl Scan {
    pub fn new(table: &str, limit: u32) -> Scan {
        Scan {
            table: table.to_string(),
            after: None,
            only_if: Vec::new(),
            limit: limit.min(SCAN_LIMIT_MAX),
            skip_locked: false,
            for_update: false,
        }
    }

    pub fn after(mut self, key: impl Into<Value>) -> Scan {
        self.after = Some(key.into());
        self
    }

    pub fn only_if(mut self, column: &str, value: impl Into<Value>) -> Scan {
        self.only_if.push((column.to_string(), value.into()));
        self
    }

    /// `FOR UPDATE SKIP LOCKED`: rows another transaction holds are passed over.
    pub fn skip_locked(mut self) -> Scan {
        self.skip_locked = true;
        self.for_update = true;
        self
    }

    /// `FOR UPDATE`: each row is locked, and a row another transaction holds is waited for
    /// (1205 after the lock wait timeout, 1213 on a deadlock).
    pub fn for_update(mut self) -> Scan {
        self.for_update = true;
        self
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Int(n)
    }
}

// An integer literal is an i32 unless told otherwise: `Update::new("accounts", 0)`.
impl From<i32> for Value {
    fn from(n: i32) -> Value {
        Value::Int(i64::from(n))
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Value {
        Value::Int(i64::from(n))
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Value {
        Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Text(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}

/// Builds a row from `(column, value)` pairs.
pub fn row<V: Into<Value>>(columns: impl IntoIterator<Item = (&'static str, V)>) -> Row {
    columns
        .into_iter()
        .map(|(column, value)| (column.to_string(), value.into()))
        .collect()
}

/// One transaction of a user's handler, on its consumer's connection. The runner opened it
/// (BEGIN) before the handler; one the handler leaves open is rolled back after it, as a
/// driver's transaction is when it is dropped.
pub struct Tx {
    conn: Option<DbConn>,
    message: u64,
    timeout: Duration,
    /// BEGIN sent, and no COMMIT, ROLLBACK or 1213 since.
    open: bool,
    statements: u32,
}

/// Bound on one handler's statements per message, so a handler looping on errors ends.
pub const STATEMENTS_MAX: u32 = 10_000;

impl Tx {
    pub(crate) fn new(conn: DbConn, message: u64, timeout: Duration) -> Tx {
        Tx {
            conn: Some(conn),
            message,
            timeout,
            open: true,
            statements: 0,
        }
    }

    /// The connection back, if it is still usable, and whether the handler left the
    /// transaction open.
    pub(crate) fn finish(self) -> (Option<DbConn>, bool) {
        (self.conn, self.open)
    }

    async fn call(&mut self, statement: Statement) -> Result<Outcome, TxError> {
        self.statements += 1;
        if self.statements > STATEMENTS_MAX {
            // Past the bound the connection is given up, as a lost one would be.
            self.conn = None;
        }
        let conn = self.conn.as_mut().ok_or(TxError::NoAnswer)?;
        match conn.call(statement, self.timeout).await {
            Ok(Outcome::Error(error)) => {
                if error == DbError::Deadlock {
                    self.open = false;
                }
                Err(TxError::of(error))
            }
            Ok(outcome) => Ok(outcome),
            Err(NoAnswer) => {
                self.conn = None;
                self.open = false;
                Err(TxError::NoAnswer)
            }
        }
    }

    async fn read(&mut self, table: &str, key: Value, for_update: bool) -> Result<Option<Row>, TxError> {
        let statement = Statement::Select {
            table: table.to_string(),
            key,
            for_update,
        };
        match self.call(statement).await? {
            Outcome::Row(row) => Ok(row),
            other => panic!("a SELECT answered {other:?}"),
        }
    }

    /// `SELECT * FROM table WHERE pk = key`: the latest committed row, no lock.
    pub async fn select(&mut self, table: &str, key: impl Into<Value>) -> Result<Option<Row>, TxError> {
        self.read(table, key.into(), false).await
    }

    /// `SELECT ... FOR UPDATE`: an exclusive lock on the row (or on the absent key) to the
    /// end of the transaction.
    pub async fn select_for_update(
        &mut self,
        table: &str,
        key: impl Into<Value>,
    ) -> Result<Option<Row>, TxError> {
        self.read(table, key.into(), true).await
    }

    /// `INSERT INTO table ...`: 1062 if the primary key (or a unique column) is taken. For an
    /// `AUTO_INCREMENT` table, the id it took.
    pub async fn insert(&mut self, table: &str, row: Row, write: Write) -> Result<Option<i64>, TxError> {
        let statement = Statement::Insert {
            table: table.to_string(),
            record: row,
            tag: write.tag(self.message),
        };
        match self.call(statement).await? {
            Outcome::Inserted(id) => Ok(Some(id)),
            _ => Ok(None),
        }
    }

    /// The UPDATE; the rows it changed (MySQL's affected rows: 0 when the WHERE clause
    /// matched nothing or the values were already so).
    pub async fn update(&mut self, update: Update) -> Result<u64, TxError> {
        let statement = Statement::Update {
            tag: update.write.tag(self.message),
            table: update.table,
            key: update.key,
            set: update.set,
            only_if: update.only_if,
        };
        match self.call(statement).await? {
            Outcome::Affected(n) => Ok(n),
            other => panic!("an UPDATE answered {other:?}"),
        }
    }

    /// The scan's rows, in primary key order.
    pub async fn scan(&mut self, scan: Scan) -> Result<Vec<Row>, TxError> {
        let statement = Statement::Scan {
            table: scan.table,
            after: scan.after,
            only_if: scan.only_if,
            limit: scan.limit,
            skip_locked: scan.skip_locked,
            for_update: scan.for_update,
        };
        match self.call(statement).await? {
            Outcome::Rows(rows) => Ok(rows),
            other => panic!("a scan answered {other:?}"),
        }
    }

    /// COMMIT. [`TxError::NoAnswer`] here means the outcome is unknown: it may have committed.
    pub async fn commit(&mut self) -> Result<(), TxError> {
        self.open = false;
        self.call(Statement::Commit).await.map(|_| ())
    }

    /// ROLLBACK.
    pub async fn rollback(&mut self) -> Result<(), TxError> {
        self.open = false;
        self.call(Statement::Rollback).await.map(|_| ())
    }

    /// BEGIN: a new transaction on the same connection, after a COMMIT or ROLLBACK (or a
    /// 1213, which ended the last one), for a handler that retries.
    pub async fn begin(&mut self) -> Result<(), TxError> {
        self.call(Statement::Begin).await?;
        self.open = true;
        Ok(())
    }
}
