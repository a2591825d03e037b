//! A consumer's connection to the database and the processing strategies (reference §5.1,
//! §5.2): what a handler does with a message, from ack-before to the inbox pattern.

use super::engine::{DbError, Outcome, Record, Set, Statement, Tag, Value};
use super::wire::{decode, encode, Request, Response, DB_PORT};
use serde::{Deserialize, Serialize};
use sim::{Env, Process};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// One database connection (one session). A statement whose answer does not come within the
/// timeout drops the connection: the database rolls back anything uncommitted, and the
/// caller cannot know whether a COMMIT it sent was applied.
pub struct DbConn {
    write: turmoil::net::tcp::OwnedWriteHalf,
    responses: mpsc::UnboundedReceiver<Response>,
    reader: tokio::task::JoinHandle<()>,
    next_id: u64,
}

impl Drop for DbConn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// No answer: the connection failed or the timeout passed. Ambiguous for a COMMIT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoAnswer;

impl DbConn {
    pub async fn connect(env: &Env, me: &str, host: &str, timeout: Duration) -> Option<DbConn> {
        let stream = tokio::time::timeout(timeout, sim::connect(env, me, host, DB_PORT))
            .await
            .ok()?
            .ok()?;
        let (mut read, write) = stream.into_split();
        let (tx, responses) = mpsc::unbounded_channel();
        let reader = tokio::task::spawn_local(async move {
            let mut buffer = Vec::new();
            let mut chunk = vec![0u8; 16 * 1024];
            loop {
                let n = match read.read(&mut chunk).await {
                    Ok(n) if n > 0 => n,
                    _ => return,
                };
                buffer.extend_from_slice(&chunk[..n]);
                while let Ok(Some((response, used))) = decode::<Response>(&buffer) {
                    buffer.drain(..used);
                    if tx.send(response).is_err() {
                        return;
                    }
                }
            }
        });
        Some(DbConn {
            write,
            responses,
            reader,
            next_id: 1,
        })
    }

    pub async fn call(&mut self, statement: Statement, timeout: Duration) -> Result<Outcome, NoAnswer> {
        let id = self.next_id;
        self.next_id += 1;
        self.write
            .write_all(&encode(&Request { id, statement }))
            .await
            .map_err(|_| NoAnswer)?;
        let wait = async {
            while let Some(response) = self.responses.recv().await {
                if response.id == id {
                    return Ok(response.outcome);
                }
            }
            Err(NoAnswer)
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(Err(NoAnswer))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// FIN, then process: a crash in between loses the effect (at-most-once).
    AckBefore,
    /// Process and commit, then FIN: a crash in between redelivers (at-least-once).
    AckAfter,
    /// AckAfter, plus an inbox row under the message id's unique key in the same
    /// transaction; a duplicate key means already done (effectively-once).
    Inbox,
    /// AckAfter, plus the message's order moving `NEW` to `DONE` in the same transaction
    /// (`UPDATE orders SET state='DONE' WHERE id=? AND state='NEW'`); 0 rows affected means
    /// already done.
    Conditional,
    /// The Kafka pattern (reference §5.1, table row 10/12): store the consumer's position
    /// (here the highest message id processed; ids are the upstream's order) in the same
    /// transaction as the result, read with `SELECT ... FOR UPDATE`; a message at or below
    /// the position is taken as already processed. Exactly-once where delivery follows the
    /// position's order (a Kafka partition); NSQ promises no order, so a message delivered
    /// after a later one is skipped for good.
    Position,
    /// Your own handler, written in Rust and plugged in through the `jetsam` library
    /// (`jetsam::check`): it runs the transaction and answers ack, requeue or error. A
    /// scenario naming it runs only with a handler given (nsq, kafka and mqtt).
    User,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DbRetry {
    /// A failed transaction fails the message (the broker redelivers it).
    None,
    /// Retry the whole transaction on 1213, 1205 or no answer, with a growing backoff.
    WholeTransaction,
    /// The careless handling of 1205 (reference §5.2, pitfall 1): treat it as a failed
    /// statement to "retry later", and COMMIT what the transaction did so far. The later
    /// retry never comes; with the inbox, the message now looks processed for good.
    CommitAfterTimeout,
    /// The careless handling of 1213 (reference §5.2, pitfall 2): carry on with the
    /// remaining statements as if still in the transaction. The rollback already happened,
    /// so they run in autocommit and commit on their own: a partial effect.
    ContinueAfterDeadlock,
}

#[derive(Clone, Debug)]
pub struct DbConfig {
    pub host: String,
    pub strategy: Strategy,
    pub retry: DbRetry,
    pub retries_max: u32,
    pub backoff: Duration,
    pub accounts: u32,
    /// The inbox row is inserted after the transfer rather than before it.
    pub inbox_last: bool,
    /// Every `batch_every`-th message is a batch (0: none) writing `batch_rows` audit rows.
    pub batch_every: u32,
    pub batch_rows: u32,
    /// Think time between the statements of a transaction (so transactions overlap).
    pub statement_gap: Duration,
    pub timeout: Duration,
}

/// What processing a message against the database came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Processed {
    Committed,
    /// Committed without all of its statements (after a 1205, carelessly).
    CommittedPartial,
    /// The inbox already had the message: done before, nothing to apply.
    AlreadyDone,
    Failed(String),
}

/// The transfer message `id` makes: one unit between two accounts, in an order that depends
/// on the message, so concurrent transfers lock rows in opposite orders and deadlock.
pub fn transfer_accounts(id: u64, accounts: u32) -> (i64, i64) {
    let n = u64::from(accounts.max(2));
    let from = id % n;
    let mut to = (id * 7 + 3) % n;
    if to == from {
        to = (to + 1) % n;
    }
    (from as i64, to as i64)
}

fn tag(message: u64, part: &str, completes: bool) -> Option<Tag> {
    Some(Tag {
        message,
        part: part.into(),
        completes,
    })
}

fn add(account: i64, amount: i64, tag: Option<Tag>) -> Statement {
    Statement::Update {
        table: "accounts".into(),
        key: Value::Int(account),
        set: vec![Set::Add("balance".into(), amount)],
        only_if: vec![],
        tag,
    }
}

fn insert(table: &str, column: &str, key: i64, tag: Option<Tag>) -> Statement {
    let mut record = Record::new();
    record.insert(column.into(), Value::Int(key));
    Statement::Insert {
        table: table.into(),
        record,
        tag,
    }
}

/// Whether message `id` is a batch: its transaction first writes `batch_rows` audit rows,
/// which makes it heavier than a plain transfer in InnoDB's victim choice (reference §5.2:
/// the lighter transaction is rolled back, so the plain transfers lose every deadlock against
/// a batch).
pub fn is_batch(id: u64, config: &DbConfig) -> bool {
    config.batch_every > 0 && id % u64::from(config.batch_every) == 0
}

/// The parts a whole effect writes under `config`, in the names the database records.
pub fn effect_parts(config: &DbConfig) -> Vec<String> {
    let guard = match config.strategy {
        Strategy::Inbox => Some("inbox"),
        Strategy::Conditional => Some("order"),
        Strategy::Position => Some("position"),
        Strategy::AckBefore | Strategy::AckAfter => None,
        // The user's handler declares its own parts (`Handler::EFFECT_PARTS`).
        Strategy::User => return Vec::new(),
    };
    guard
        .into_iter()
        .chain(["debit", "credit"])
        .map(String::from)
        .collect()
}

/// Where the position strategy keeps its mark, and the mark this message sets: the row of
/// `positions` and the value stored there once the message is processed. A message whose
/// mark is at or below the stored one was processed before. By default one row (0) holding
/// the highest message id processed; a Kafka consumer keeps one row per partition holding the
/// next offset to read, which is where it seeks when it is given the partition (reference
/// §2.6: "store its offset in the same place as its output").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PositionMark {
    pub row: i64,
    pub value: i64,
}

impl PositionMark {
    /// The default mark: message `id` in the single row 0.
    pub fn of_message(id: u64) -> PositionMark {
        PositionMark {
            row: 0,
            value: id as i64,
        }
    }
}

/// The role of a statement in the message's transaction.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Begin,
    /// The inbox insert or the conditional update: says whether the message was done before.
    Guard,
    /// The locking read of the stored position: at or past the message means done before.
    PositionRead,
    Work,
    Commit,
}

/// The message's transaction: BEGIN, the guard (inbox first, or last with `inbox_last`), a
/// batch's audit rows, the debit, the credit, COMMIT. Each part of the effect is tagged.
fn transaction(id: u64, mark: PositionMark, config: &DbConfig) -> Vec<(Role, Statement)> {
    let (from, to) = transfer_accounts(id, config.accounts);
    let mut statements = vec![(Role::Begin, Statement::Begin)];
    let inbox = (
        Role::Guard,
        insert("inbox", "message_id", id as i64, tag(id, "inbox", false)),
    );
    if config.strategy == Strategy::Inbox && !config.inbox_last {
        statements.push(inbox.clone());
    }
    if config.strategy == Strategy::Conditional {
        statements.push((
            Role::Guard,
            Statement::Update {
                table: "orders".into(),
                key: Value::Int(id as i64),
                set: vec![Set::To("state".into(), Value::Text("DONE".into()))],
                only_if: vec![("state".into(), Value::Text("NEW".into()))],
                tag: tag(id, "order", false),
            },
        ));
    }
    if config.strategy == Strategy::Position {
        let position = Value::Int(mark.row);
        statements.push((
            Role::PositionRead,
            Statement::Select {
                table: "positions".into(),
                key: position.clone(),
                for_update: true,
            },
        ));
        statements.push((
            Role::Work,
            Statement::Update {
                table: "positions".into(),
                key: position,
                set: vec![Set::To("position".into(), Value::Int(mark.value))],
                only_if: vec![],
                tag: tag(id, "position", false),
            },
        ));
    }
    if is_batch(id, config) {
        for row in 0..i64::from(config.batch_rows) {
            statements.push((Role::Work, insert("audit", "id", id as i64 * 1_000 + row, None)));
        }
    }
    // The credit completes the effect: a transaction committed without it applied no effect.
    statements.push((Role::Work, add(from, -1, tag(id, "debit", false))));
    statements.push((Role::Work, add(to, 1, tag(id, "credit", true))));
    if config.strategy == Strategy::Inbox && config.inbox_last {
        statements.push(inbox);
    }
    statements.push((Role::Commit, Statement::Commit));
    statements
}

/// One attempt at the message's transaction.
async fn attempt(
    conn: &mut DbConn,
    id: u64,
    mark: PositionMark,
    config: &DbConfig,
    process: &Process,
) -> Result<Processed, (String, bool)> {
    let mut continued = false;
    for (i, (role, statement)) in transaction(id, mark, config).into_iter().enumerate() {
        if i > 1 {
            process.sleep(config.statement_gap).await;
        }
        match conn.call(statement, config.timeout).await {
            Ok(Outcome::Error(DbError::DuplicateKey)) if role == Role::Guard => {
                let _ = conn.call(Statement::Rollback, config.timeout).await;
                return Ok(Processed::AlreadyDone);
            }
            Ok(Outcome::Affected(0)) if role == Role::Guard => {
                // The order is not NEW any more: processed before (MySQL counts changed rows).
                let _ = conn.call(Statement::Rollback, config.timeout).await;
                return Ok(Processed::AlreadyDone);
            }
            Ok(Outcome::Row(Some(row))) if role == Role::PositionRead => {
                let position = match row.get("position") {
                    Some(Value::Int(p)) => *p,
                    _ => 0,
                };
                if position >= mark.value {
                    let _ = conn.call(Statement::Rollback, config.timeout).await;
                    return Ok(Processed::AlreadyDone);
                }
            }
            Ok(Outcome::Error(DbError::Deadlock)) if config.retry == DbRetry::ContinueAfterDeadlock => {
                // 1213 already rolled the whole transaction back; the careless handler goes
                // on, and what follows runs in autocommit, each statement committing alone.
                continued = true;
            }
            Ok(Outcome::Error(DbError::LockWaitTimeout)) if config.retry == DbRetry::CommitAfterTimeout => {
                // The transaction is still open after 1205, with its earlier changes.
                return match conn.call(Statement::Commit, config.timeout).await {
                    Ok(_) => Ok(Processed::CommittedPartial),
                    Err(NoAnswer) => Err(("COMMIT unanswered: outcome unknown".into(), false)),
                };
            }
            Ok(Outcome::Error(DbError::LockWaitTimeout)) => {
                // 1205 left the transaction open: roll it back before anything else.
                let _ = conn.call(Statement::Rollback, config.timeout).await;
                return Err(("1205 lock wait timeout".into(), true));
            }
            Ok(Outcome::Error(error)) => return Err((format!("{} {error:?}", error as u32), true)),
            Ok(_) => {}
            Err(NoAnswer) if role == Role::Commit => {
                return Err(("COMMIT unanswered: outcome unknown".into(), false))
            }
            Err(NoAnswer) => return Err(("no answer: rolled back with the connection".into(), false)),
        }
    }
    if continued {
        return Ok(Processed::CommittedPartial);
    }
    Ok(Processed::Committed)
}

/// Processes message `id` against the database with the configured retry policy.
pub async fn process_message(
    env: &Env,
    host: &str,
    conn: &mut Option<DbConn>,
    id: u64,
    mark: PositionMark,
    config: &DbConfig,
    process: &Process,
) -> Processed {
    let mut tries = 0;
    loop {
        tries += 1;
        if conn.is_none() {
            *conn = DbConn::connect(env, host, &config.host, config.timeout).await;
        }
        let result = match conn.as_mut() {
            Some(c) => attempt(c, id, mark, config, process).await,
            None => Err(("cannot connect to the database".into(), false)),
        };
        match result {
            Ok(done) => return done,
            Err((reason, connection_ok)) => {
                if !connection_ok {
                    *conn = None;
                }
                if reason.starts_with("1213") {
                    env.note(host, "consumer.deadlock_victim");
                }
                if config.retry == DbRetry::None || tries > config.retries_max {
                    return Processed::Failed(reason);
                }
                env.note(host, "consumer.db_retry");
                process.sleep(config.backoff * tries).await;
            }
        }
    }
}
