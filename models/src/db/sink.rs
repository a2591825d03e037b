//! The consumer's database as a component any consumer design includes (reference §5).
//!
//! A design takes one config section (`[config.db]`, [`DbSection`]), declares the database's
//! host through [`DbSink::host`], installs it with [`DbSink::install`], asks
//! [`DbSink::promise`] for the strategy's part of its promise, and gives each consumer
//! process a [`DbConsumer`], whose [`DbConsumer::handle`] is the one call per message. The
//! design's own acknowledgement (NSQ's FIN, a Kafka offset commit, MQTT's PUBACK) is the
//! callback: the strategy decides whether it goes before or after the transaction.

use super::client::{
    effect_parts, process_message, DbConfig, DbConn, DbRetry, PositionMark, Processed, Strategy,
};
use super::engine::EngineOptions;
use super::engine::{Outcome, Statement, TableSchema, Value};
use super::locks::LockOptions;
use super::sim_db::{self, DbHost, WAIT_TIMEOUT_DEFAULT};
use super::user::{run_handler, Delivered, ErasedHandler, HandlerFactory, Replied, Site};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sim::history::EventKind;
use sim::promise::{Excuse, Promise};
use sim::scenario::{Scenario, ScenarioError};
use sim::verdict::Property;
use sim::{Env, Process};
use std::rc::Rc;
use std::time::Duration;

/// Where a consumer design's handlers apply their effect (its `sink` key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sink {
    /// The handler's effect is recorded in the consumer's memory.
    Memory,
    /// The handler runs a transaction on the database host (`[config.db]`).
    Db,
}

/// The database host's name in every design that includes the sink.
pub const DB_HOST: &str = "db";

/// The consumer's database, its processing strategy and its retry policy (`[config.db]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DbSection {
    /// When the acknowledgement goes out, and what guards the effect.
    pub strategy: Strategy,
    /// What the consumer does when a transaction fails.
    pub retry: DbRetry,
    /// Retries of the whole transaction.
    pub retries_max: u32,
    /// Backoff × try between retries.
    pub backoff_ms: u64,
    /// How long the consumer waits for a statement's answer before it drops the connection.
    pub timeout_ms: u64,
    /// Accounts the transfers move money between.
    #[schemars(range(min = 2, max = 1_000_000))]
    pub accounts: u32,
    /// With the inbox strategy: insert the inbox row after the transfer, not before it.
    pub inbox_last: bool,
    /// Every n-th message is a heavier batch transaction (0: none).
    pub batch_every: u32,
    /// Audit rows a batch writes before its transfer.
    #[schemars(range(max = 10_000))]
    pub batch_rows: u32,
    /// Think time between the statements of a transaction (so transactions overlap).
    pub statement_gap_ms: u64,
    /// Work between the transaction and the acknowledgement.
    pub ack_delay_ms: u64,
    /// innodb_flush_log_at_trx_commit = 1 (else the redo log is fsynced once a second).
    pub flush_at_commit: bool,
    /// innodb_lock_wait_timeout.
    pub lock_wait_timeout_ms: u64,
    /// innodb_rollback_on_timeout: a 1205 rolls back the whole transaction, not the statement.
    pub rollback_on_timeout: bool,
    /// The chance that a row-locking statement inside a transaction fails with an injected
    /// 1213 (for swarm runs; real deadlocks happen regardless).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub injected_deadlock_rate: f64,
    /// MySQL wait_timeout: a silent connection is closed and its transaction rolled back.
    pub wait_timeout_ms: u64,
    /// Tables of your own for a user's handler, beside the built-in ones (`accounts`,
    /// `inbox`, `orders`, `positions`, `audit`, `outbox`, `outbox_cursor`), e.g. `tables = [{ name = "charges",
    /// primary_key = "id", auto_increment = true }, { name = "receipts", primary_key =
    /// "message_id", unique = ["charge_id"] }]` (at most 64).
    pub tables: Vec<TableSection>,
}

/// One table of `[config.db] tables`: its primary key, unique columns (an INSERT that
/// repeats one fails with 1062) and whether the key is an `AUTO_INCREMENT` integer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TableSection {
    pub name: String,
    pub primary_key: String,
    #[serde(default)]
    pub unique: Vec<String>,
    #[serde(default)]
    pub auto_increment: bool,
}

/// Bound on `[config.db] tables`.
pub const TABLES_MAX: usize = 64;

impl Default for DbSection {
    /// InnoDB's and MySQL's defaults where they have them.
    fn default() -> DbSection {
        DbSection {
            strategy: Strategy::AckAfter,
            retry: DbRetry::None,
            retries_max: 3,
            backoff_ms: 100,
            timeout_ms: 5_000,
            accounts: 4,
            inbox_last: false,
            batch_every: 0,
            batch_rows: 20,
            statement_gap_ms: 2,
            ack_delay_ms: 0,
            flush_at_commit: true,
            lock_wait_timeout_ms: 50_000,
            rollback_on_timeout: false,
            injected_deadlock_rate: 0.0,
            wait_timeout_ms: WAIT_TIMEOUT_DEFAULT.as_millis() as u64,
            tables: Vec::new(),
        }
    }
}

/// What the broker design says about its own delivery, for the combined promise.
pub struct DeliveryWindows {
    /// The documented windows in which the broker loses a message it acknowledged (NSQ: an
    /// nsqd failure, go-nsq giving up).
    pub losses: Vec<Excuse>,
    /// The fault actions that make the broker deliver a message again after its
    /// acknowledgement was sent (a lost FIN, a replay after a crash).
    pub redeliveries: Vec<&'static str>,
    /// The broker's name and its acknowledgement's, for the promise's words (`NSQ`, `FIN`).
    pub broker: &'static str,
    pub ack: &'static str,
}

/// The database component of one design instance.
#[derive(Clone, Debug)]
pub struct DbSink {
    section: DbSection,
    /// One `NEW` order row per message, for the conditional strategy.
    orders: u64,
    /// Rows of stored positions, for the position strategy.
    position_rows: u32,
    /// The user's handler, with `strategy = "user"`.
    user: Option<HandlerFactory>,
}

impl DbSink {
    pub fn new(section: DbSection, orders: u64) -> DbSink {
        DbSink {
            section,
            orders,
            position_rows: 1,
            user: None,
        }
    }

    /// The user's handler, for `strategy = "user"` (checked by [`DbSection::check`]).
    pub fn with_user(mut self, user: Option<HandlerFactory>) -> DbSink {
        self.user = user;
        self
    }

    /// One stored position per partition (rows 0..n), for a Kafka consumer that keeps its
    /// offsets in the database.
    pub fn with_position_rows(mut self, rows: u32) -> DbSink {
        self.position_rows = rows.max(1);
        self
    }

    pub fn host(&self) -> &'static str {
        DB_HOST
    }

    pub fn section(&self) -> &DbSection {
        &self.section
    }

    /// Registers the database host and records what a whole effect writes, for the
    /// partial-transaction checker.
    pub fn install(&self, sim: &mut turmoil::Sim<'_>, env: &Env) {
        let s = &self.section;
        let setup = DbHost {
            engine: EngineOptions {
                locks: LockOptions {
                    deadlock_detect: true,
                    lock_wait_timeout: Duration::from_millis(s.lock_wait_timeout_ms),
                    rollback_on_timeout: s.rollback_on_timeout,
                },
                flush_at_commit: s.flush_at_commit,
            },
            wait_timeout: Duration::from_millis(s.wait_timeout_ms),
            accounts: s.accounts,
            balance: 1_000,
            orders: self.orders,
            position_rows: self.position_rows,
            injected_deadlock_rate: s.injected_deadlock_rate,
            tables: s
                .tables
                .iter()
                .map(|t| TableSchema {
                    name: t.name.clone(),
                    primary_key: t.primary_key.clone(),
                    unique: t.unique.clone(),
                    auto_increment: t.auto_increment,
                })
                .collect(),
            engine_slot: None,
        };
        let env_for_host = env.clone();
        // Installed as a process, so a pause stops its timers too (SIGSTOP).
        env.process(DB_HOST).install(sim, move || {
            sim_db::run(env_for_host.clone(), DB_HOST.to_string(), setup.clone())
        });
        let parts = match &self.user {
            Some(user) => user.effect_parts(),
            None => effect_parts(&self.client_config()),
        };
        // A user's handler that declares no parts has no partial transactions to judge.
        if !parts.is_empty() {
            env.record(DB_HOST, EventKind::EffectParts { parts });
        }
    }

    /// A consumer process's handle on the database: its own connection, opened on first use.
    pub fn consumer(&self) -> DbConsumer {
        self.consumers(1).pop().expect("one asked for")
    }

    /// One handle per concurrent handler of a consumer process, each with its own
    /// connection; with a user's handler, one instance of it shared by them all, made now:
    /// call this once per process incarnation, so the handler's memory dies with it.
    pub fn consumers(&self, n: usize) -> Vec<DbConsumer> {
        let user = self.user.as_ref().map(HandlerFactory::instance);
        (0..n.max(1))
            .map(|_| DbConsumer {
                config: self.client_config(),
                ack_delay: Duration::from_millis(self.section.ack_delay_ms),
                conn: None,
                user: user.clone(),
            })
            .collect()
    }

    fn client_config(&self) -> DbConfig {
        let s = &self.section;
        DbConfig {
            host: DB_HOST.to_string(),
            strategy: s.strategy,
            retry: s.retry,
            retries_max: s.retries_max,
            backoff: Duration::from_millis(s.backoff_ms),
            accounts: s.accounts,
            inbox_last: s.inbox_last,
            batch_every: s.batch_every,
            batch_rows: s.batch_rows,
            statement_gap: Duration::from_millis(s.statement_gap_ms),
            timeout: Duration::from_millis(s.timeout_ms),
        }
    }

    /// The strategy's promise over the broker's delivery (reference table rows 11, 12, 24).
    pub fn promise(&self, delivery: DeliveryWindows) -> Promise {
        // The careless handlers commit what a failed transaction did so far: documented
        // pitfalls (reference §5.2), outside every strategy's promise.
        let careless = [
            Excuse::note("consumer.committed_partial_after_1205"),
            Excuse::note("consumer.continued_after_1213"),
        ];
        let (broker, ack) = (delivery.broker, delivery.ack);
        match self.section.strategy {
            Strategy::AckBefore => Promise {
                text: format!(
                    "at-most-once effects: {ack} before the transaction (reference table row 11, on {broker})"
                ),
                properties: vec![Property::AtMostOnce],
                excuses: delivery
                    .redeliveries
                    .into_iter()
                    .map(|a| Excuse::fault(a, ""))
                    .collect(),
            },
            Strategy::AckAfter => Promise {
                text: format!("at-least-once effects: {ack} after COMMIT (reference table rows 1 and 12)"),
                properties: vec![Property::AtLeastOnce],
                excuses: delivery.losses.into_iter().chain(careless).collect(),
            },
            // The user's claim, held against every run: what the handler is for (an inbox,
            // a conditional update) is effects exactly once over the broker's redeliveries.
            Strategy::User => Promise {
                text: format!(
                    "effectively-once effects, as the user's handler claims: {ack} when it answers ack \
                     (reference table row 24)"
                ),
                properties: vec![Property::ExactlyOnce],
                excuses: delivery.losses,
            },
            guarded => Promise {
                text: format!(
                    "effectively-once effects: {ack} after COMMIT, guarded by {} (reference table row 24)",
                    match guarded {
                        Strategy::Inbox => "an inbox unique key",
                        Strategy::Conditional => "a conditional state update",
                        _ => "a stored position",
                    }
                ),
                properties: vec![Property::ExactlyOnce],
                excuses: delivery.losses.into_iter().chain(careless).collect(),
            },
        }
    }
}

impl DbSection {
    /// What spans keys: `strategy = "user"` runs the user's handler, so one must be plugged
    /// in, on a design that runs it (`runs_user`), and a handler plugged in needs a scenario
    /// that names it; `tables` are new, distinct and within [`TABLES_MAX`].
    pub fn check(
        &self,
        scenario: &Scenario,
        sink: Sink,
        handler: Option<&HandlerFactory>,
        runs_user: bool,
    ) -> Result<(), ScenarioError> {
        self.check_tables(scenario)?;
        let names_user = sink == Sink::Db && self.strategy == Strategy::User;
        match (names_user, handler) {
            (true, None) if runs_user => Err(scenario.config_error(
                "db.strategy",
                "\"user\" runs your own handler: plug one in through the jetsam library (jetsam::Check::new(scenario, factory))".into(),
            )),
            (true, _) if !runs_user => Err(scenario.config_error(
                "db.strategy",
                format!("\"user\" (your own handler) runs on the nsq, kafka and mqtt designs, not on {}", scenario.design),
            )),
            (false, Some(handler)) => Err(scenario.config_error(
                "db.strategy",
                format!(
                    "a handler ({}) is plugged in, but the scenario does not run it: set sink = \"db\" and [config.db] strategy = \"user\"",
                    handler.name()
                ),
            )),
            _ => Ok(()),
        }
    }
}

impl DbSection {
    fn check_tables(&self, scenario: &Scenario) -> Result<(), ScenarioError> {
        if self.tables.len() > TABLES_MAX {
            return Err(scenario.config_error("db.tables", format!("at most {TABLES_MAX} tables")));
        }
        let mut names: Vec<String> = sim_db::schemas().into_iter().map(|t| t.name).collect();
        for table in &self.tables {
            if table.name.is_empty() || table.primary_key.is_empty() {
                return Err(
                    scenario.config_error("db.tables", "every table needs a name and a primary_key".into())
                );
            }
            if names.contains(&table.name) {
                return Err(scenario.config_error(
                    "db.tables",
                    format!("table `{}` exists already (built in or named twice)", table.name),
                ));
            }
            names.push(table.name.clone());
        }
        Ok(())
    }
}

/// How handling a message ended, for the design's flow control and redelivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// The acknowledgement went out (after the effect, or before it with ack-before).
    Acked,
    /// The transaction failed and nothing was acknowledged: the design redelivers (NSQ's
    /// REQ, a Kafka consumer that does not commit, an MQTT client that sends no PUBACK).
    Failed,
}

/// One consumer process's database connection and strategy.
pub struct DbConsumer {
    config: DbConfig,
    ack_delay: Duration,
    conn: Option<DbConn>,
    /// The user's handler, shared by its process's concurrent handlers.
    user: Option<Rc<dyn ErasedHandler>>,
}

impl DbConsumer {
    /// Whether a user's handler decides (use [`Self::handle_user`]).
    pub fn runs_user(&self) -> bool {
        self.user.is_some()
    }

    /// Runs the user's handler on `message`; on ack, waits `ack_delay_ms` (work between the
    /// transaction and the acknowledgement) before the design acknowledges.
    pub async fn handle_user(
        &mut self,
        env: &Env,
        host: &str,
        message: &Delivered,
        process: &Process,
    ) -> Replied {
        let handler = self.user.clone().expect("runs_user checked by the caller");
        let site = Site {
            env,
            host,
            db_host: &self.config.host,
            timeout: self.config.timeout,
        };
        let replied = run_handler(handler.as_ref(), &mut self.conn, &site, message).await;
        if replied == Replied::Ack && !self.ack_delay.is_zero() {
            process.sleep(self.ack_delay).await;
        }
        replied
    }

    /// Processes message `id` with the strategy; `ack` is the design's acknowledgement,
    /// called once, before the transaction (ack-before) or after it committed.
    pub async fn handle(
        &mut self,
        env: &Env,
        host: &str,
        id: u64,
        process: &Process,
        ack: impl FnOnce(),
    ) -> Handled {
        self.handle_at(env, host, id, PositionMark::of_message(id), process, ack)
            .await
    }

    /// [`Self::handle`], with the position strategy's mark given (a Kafka partition's row and
    /// the record's next offset).
    pub async fn handle_at(
        &mut self,
        env: &Env,
        host: &str,
        id: u64,
        mark: PositionMark,
        process: &Process,
        ack: impl FnOnce(),
    ) -> Handled {
        let config = &self.config;
        if config.strategy == Strategy::AckBefore {
            ack();
            if let Processed::Failed(_) =
                process_message(env, host, &mut self.conn, id, mark, config, process).await
            {
                env.note(host, "consumer.effect_failed_after_ack");
            }
            return Handled::Acked;
        }
        let processed = process_message(env, host, &mut self.conn, id, mark, config, process).await;
        if processed == Processed::AlreadyDone {
            env.note(
                host,
                match config.strategy {
                    Strategy::Conditional => "consumer.conditional_already_done",
                    Strategy::Position => "consumer.behind_stored_position_skipped",
                    _ => "consumer.inbox_duplicate_skipped",
                },
            );
        }
        if processed == Processed::CommittedPartial {
            env.note(
                host,
                match config.retry {
                    DbRetry::ContinueAfterDeadlock => "consumer.continued_after_1213",
                    _ => "consumer.committed_partial_after_1205",
                },
            );
        }
        match processed {
            Processed::Failed(_) => Handled::Failed,
            Processed::Committed | Processed::AlreadyDone | Processed::CommittedPartial => {
                if !self.ack_delay.is_zero() {
                    process.sleep(self.ack_delay).await;
                }
                ack();
                Handled::Acked
            }
        }
    }

    /// The position stored in row `row` (a plain read, outside any transaction), or `None`
    /// if the database did not answer: where a Kafka consumer seeks when it is given a
    /// partition whose offsets it keeps here.
    pub async fn stored_position(&mut self, env: &Env, host: &str, row: i64) -> Option<i64> {
        let config = &self.config;
        if self.conn.is_none() {
            self.conn = DbConn::connect(env, host, &config.host, config.timeout).await;
        }
        let conn = self.conn.as_mut()?;
        let read = Statement::Select {
            table: "positions".into(),
            key: Value::Int(row),
            for_update: false,
        };
        match conn.call(read, config.timeout).await {
            Ok(Outcome::Row(Some(record))) => match record.get("position") {
                Some(Value::Int(position)) => Some(*position),
                _ => Some(0),
            },
            Ok(Outcome::Row(None)) => Some(0),
            Ok(_) => None,
            Err(_) => {
                self.conn = None;
                None
            }
        }
    }
}
