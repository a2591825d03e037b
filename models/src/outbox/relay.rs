//! The outbox relay: polls the outbox, publishes each row to the broker ([`Target`]: nsqd,
//! Kafka or MQTT) and waits for its acknowledgement, then marks what it published
//! (reference §5.1), claiming rows in one of three ways ([`Claim`]). A crash between
//! publishing and marking publishes the rows again after the restart: at-least-once.

use super::publisher::{Publisher, Target};
use super::Claim;
use crate::db::client::{DbConn, NoAnswer};
use crate::db::engine::{DbError, Outcome, Record, Set, Statement, Value};
use sim::history::MsgId;
use sim::{Env, Process};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct RelayConfig {
    pub claim: Claim,
    pub db_host: String,
    /// The broker the relay publishes to.
    pub target: Target,
    pub poll_interval: Duration,
    pub batch: u32,
    /// Time between publishing a batch and marking it.
    pub mark_delay: Duration,
    pub db_timeout: Duration,
}

/// What a relay keeps between polls: its connections and, with the cursor, the highest id
/// it has published (read back from `outbox_cursor` after a restart).
struct Relay {
    env: Env,
    host: String,
    process: Process,
    config: RelayConfig,
    db: Option<DbConn>,
    publisher: Publisher,
    cursor: Option<i64>,
}

/// A relay process: polls every `poll_interval` until stopped.
pub async fn run_relay(env: Env, host: String, config: RelayConfig) -> turmoil::Result {
    let process = env.process(&host);
    let _running = process.start();
    let mut relay = Relay {
        env,
        host,
        process: process.clone(),
        publisher: Publisher::new(&config.target),
        config,
        db: None,
        cursor: None,
    };
    loop {
        process.sleep(relay.config.poll_interval).await;
        process.checkpoint().await;
        if process.stop_requested() {
            return Ok(());
        }
        if relay.poll().await.is_err() {
            // The connection is dropped: the database rolls back an open claim, whose rows
            // a later poll reads again.
            relay.db = None;
        }
    }
}

impl Relay {
    async fn call(&mut self, statement: Statement) -> Result<Outcome, NoAnswer> {
        if self.db.is_none() {
            self.db = DbConn::connect(
                &self.env,
                &self.host,
                &self.config.db_host,
                self.config.db_timeout,
            )
            .await;
        }
        let db = self.db.as_mut().ok_or(NoAnswer)?;
        db.call(statement, self.config.db_timeout).await
    }

    async fn poll(&mut self) -> Result<(), NoAnswer> {
        match self.config.claim {
            Claim::Cursor => self.poll_cursor().await,
            Claim::SentFlag => {
                let rows = self.scan(None, Lock::None).await?;
                let published = self.publish_all(&rows).await;
                self.mark_sent(&published).await
            }
            Claim::SkipLocked => self.poll_locking(Lock::SkipLocked).await,
            Claim::ForUpdate => self.poll_locking(Lock::ForUpdate).await,
        }
    }

    /// In one transaction: the locking scan, publish, mark, COMMIT. A FOR UPDATE scan that
    /// waited past the lock-wait timeout fails with 1205, which rolls back the statement
    /// only (InnoDB's default): the relay rolls its transaction back, releasing what it
    /// had locked, and polls again later.
    async fn poll_locking(&mut self, lock: Lock) -> Result<(), NoAnswer> {
        expect_ok(self.call(Statement::Begin).await?)?;
        let rows = match self.scan(None, lock).await {
            Err(Scanned::LockWaitTimeout) => {
                self.env.note(&self.host, "relay.lock_wait_timeout");
                return expect_ok(self.call(Statement::Rollback).await?);
            }
            Err(Scanned::NoAnswer) => return Err(NoAnswer),
            Ok(rows) => rows,
        };
        let published = self.publish_all(&rows).await;
        self.mark_sent(&published).await?;
        expect_ok(self.call(Statement::Commit).await?)
    }

    /// `WHERE id > last_seen`, publish, then store the highest id published as the cursor.
    async fn poll_cursor(&mut self) -> Result<(), NoAnswer> {
        let last_seen = match self.cursor {
            Some(seen) => seen,
            None => self.load_cursor().await?,
        };
        self.cursor = Some(last_seen);
        let rows = self.scan(Some(last_seen), Lock::None).await?;
        let published = self.publish_all(&rows).await;
        let Some(&highest) = published.iter().max() else {
            return Ok(());
        };
        self.cursor = Some(highest);
        self.process.sleep(self.config.mark_delay).await;
        let update = Statement::Update {
            table: "outbox_cursor".into(),
            key: Value::Text(self.host.clone()),
            set: vec![Set::To("last_seen".into(), Value::Int(highest))],
            only_if: vec![],
            tag: None,
        };
        self.call(update).await?;
        self.env.note_with(
            &self.host,
            "relay.marked",
            format!("cursor at outbox id {highest}"),
        );
        Ok(())
    }

    /// The relay's stored cursor, created at 0 on its first start.
    async fn load_cursor(&mut self) -> Result<i64, NoAnswer> {
        let record = Record::from([
            ("relay".to_string(), Value::Text(self.host.clone())),
            ("last_seen".to_string(), Value::Int(0)),
        ]);
        // 1062 when it exists already: that is the restart's case.
        self.call(Statement::Insert {
            table: "outbox_cursor".into(),
            record,
            tag: None,
        })
        .await?;
        let read = Statement::Select {
            table: "outbox_cursor".into(),
            key: Value::Text(self.host.clone()),
            for_update: false,
        };
        match self.call(read).await? {
            Outcome::Row(Some(row)) => match row.get("last_seen") {
                Some(Value::Int(seen)) => Ok(*seen),
                _ => Err(NoAnswer),
            },
            _ => Err(NoAnswer),
        }
    }

    /// The outbox rows to publish, in id order: past `after` (the cursor), or still unsent.
    async fn scan(&mut self, after: Option<i64>, lock: Lock) -> Result<Vec<Record>, Scanned> {
        let only_if = match after {
            Some(_) => vec![],
            None => vec![("sent".to_string(), Value::Int(0))],
        };
        let scan = Statement::Scan {
            table: "outbox".into(),
            after: after.map(Value::Int),
            only_if,
            limit: self.config.batch,
            skip_locked: lock == Lock::SkipLocked,
            for_update: lock != Lock::None,
        };
        match self.call(scan).await? {
            Outcome::Rows(rows) => Ok(rows),
            Outcome::Error(DbError::LockWaitTimeout) => Err(Scanned::LockWaitTimeout),
            _ => Err(Scanned::NoAnswer),
        }
    }

    /// Publishes rows in order until one fails; returns the outbox ids published.
    async fn publish_all(&mut self, rows: &[Record]) -> Vec<i64> {
        let mut published = Vec::new();
        for row in rows {
            let (Some(Value::Int(outbox_id)), Some(Value::Int(message))) =
                (row.get("id"), row.get("message"))
            else {
                continue; // not a row a writer of ours wrote
            };
            let key = match row.get("msg_key") {
                Some(Value::Text(key)) => Some(key.as_str()),
                _ => None,
            };
            let (env, host) = (self.env.clone(), self.host.clone());
            if !self
                .publisher
                .publish(&env, &host, MsgId(*message as u64), key)
                .await
            {
                break;
            }
            published.push(*outbox_id);
        }
        if let (Some(first), Some(last)) = (published.first(), published.last()) {
            self.env.note_with(
                &self.host,
                "relay.published",
                format!("outbox ids {first}..={last} ({} rows)", published.len()),
            );
        }
        published
    }

    /// `UPDATE outbox SET sent = 1 WHERE id = ?` for each published row.
    async fn mark_sent(&mut self, published: &[i64]) -> Result<(), NoAnswer> {
        if published.is_empty() {
            return Ok(());
        }
        self.process.sleep(self.config.mark_delay).await;
        for id in published {
            let update = Statement::Update {
                table: "outbox".into(),
                key: Value::Int(*id),
                set: vec![Set::To("sent".into(), Value::Int(1))],
                only_if: vec![],
                tag: None,
            };
            self.call(update).await?;
        }
        self.env.note_with(
            &self.host,
            "relay.marked",
            format!("{} rows sent = 1", published.len()),
        );
        Ok(())
    }
}

/// How a scan locks the rows it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lock {
    None,
    ForUpdate,
    SkipLocked,
}

/// Why a scan read no rows.
enum Scanned {
    NoAnswer,
    /// 1205: a FOR UPDATE scan waited past `innodb_lock_wait_timeout`.
    LockWaitTimeout,
}

impl From<NoAnswer> for Scanned {
    fn from(_: NoAnswer) -> Scanned {
        Scanned::NoAnswer
    }
}

impl From<Scanned> for NoAnswer {
    fn from(_: Scanned) -> NoAnswer {
        NoAnswer
    }
}

fn expect_ok(outcome: Outcome) -> Result<(), NoAnswer> {
    match outcome {
        Outcome::Ok => Ok(()),
        _ => Err(NoAnswer),
    }
}
