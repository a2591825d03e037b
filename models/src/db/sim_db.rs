//! The database as a host in the simulation: the sans-I/O [`Engine`] behind simulated TCP,
//! on the host's simulated disk (so kill and power_fail lose what InnoDB would). Effects are
//! recorded in the history here, when their transaction commits: the truth, whether or not
//! the client ever hears the COMMIT's answer.

use super::engine::{
    CommittedWrites, Engine, EngineOptions, Outcome, Record, SessionId, Statement, TableSchema, Value,
};
use super::wire::{decode, encode, Request, Response, DB_PORT};
use rand::Rng;
use sim::disk::SimDisk;
use sim::history::{EventKind, MsgId};
use sim::Env;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use turmoil::net::TcpListener;

pub const TICK: Duration = Duration::from_millis(10);

pub fn schemas() -> Vec<TableSchema> {
    vec![
        TableSchema {
            name: "accounts".into(),
            primary_key: "id".into(),
            unique: vec![],
            auto_increment: false,
        },
        TableSchema {
            name: "inbox".into(),
            primary_key: "message_id".into(),
            unique: vec![],
            auto_increment: false,
        },
        TableSchema {
            name: "orders".into(),
            primary_key: "id".into(),
            unique: vec![],
            auto_increment: false,
        },
        TableSchema {
            name: "positions".into(),
            primary_key: "id".into(),
            unique: vec![],
            auto_increment: false,
        },
        TableSchema {
            name: "audit".into(),
            primary_key: "id".into(),
            unique: vec![],
            auto_increment: false,
        },
        // The transactional outbox (`models::outbox`): its rows, and each relay's cursor.
        TableSchema {
            name: "outbox".into(),
            primary_key: "id".into(),
            unique: vec![],
            auto_increment: true,
        },
        TableSchema {
            name: "outbox_cursor".into(),
            primary_key: "relay".into(),
            unique: vec![],
            auto_increment: false,
        },
    ]
}

/// Whether the statement takes a row lock: where InnoDB can find a deadlock.
fn takes_row_lock(statement: &Statement) -> bool {
    match statement {
        Statement::Insert { .. } | Statement::Update { .. } => true,
        Statement::Select { for_update, .. } => *for_update,
        Statement::Scan {
            skip_locked,
            for_update,
            ..
        } => *skip_locked || *for_update,
        Statement::Begin | Statement::Commit | Statement::Rollback => false,
    }
}

/// A session's connection writer and the id of the request it is waiting on.
struct SessionLink {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    waiting_on: u64,
}

struct Host {
    env: Env,
    name: String,
    /// The last total of all balances recorded in the history.
    observed_total: std::cell::Cell<Option<i64>>,
    /// The chance that a row-locking statement in a transaction fails with an injected 1213.
    injected_deadlock_rate: f64,
    engine: Rc<RefCell<Engine<SimDisk>>>,
    /// Per session: its connection's writer and the id of the request it is waiting on.
    sessions: RefCell<BTreeMap<SessionId, SessionLink>>,
}

impl Host {
    fn now(&self) -> Duration {
        Duration::from_micros(self.env.now().0)
    }

    fn answer(&self, session: SessionId, outcome: Outcome) {
        if let Some(link) = self.sessions.borrow().get(&session) {
            let _ = link.tx.send(encode(&Response {
                id: link.waiting_on,
                outcome,
            }));
        }
    }

    fn settle(&self, resumed: Vec<(SessionId, Outcome)>) {
        for (session, outcome) in resumed {
            self.answer(session, outcome);
        }
        let (committed, notes) = {
            let mut engine = self.engine.borrow_mut();
            (engine.take_committed_writes(), std::mem::take(&mut engine.notes))
        };
        for CommittedWrites { txn, writes } in committed {
            // One `write` per message the transaction touched, then the effect if it completed.
            let mut messages: Vec<u64> = writes.iter().map(|tag| tag.message).collect();
            messages.sort_unstable();
            messages.dedup();
            for message in messages {
                let mine = writes.iter().filter(|tag| tag.message == message);
                self.env.record(
                    &self.name,
                    EventKind::Write {
                        id: MsgId(message),
                        txn,
                        parts: mine.clone().map(|tag| tag.part.clone()).collect(),
                    },
                );
                if mine.clone().any(|tag| tag.completes) {
                    self.env.record(
                        &self.name,
                        EventKind::Effect {
                            id: MsgId(message),
                            consumer: self.name.as_str().into(),
                        },
                    );
                }
            }
        }
        for note in notes {
            self.env.note(&self.name, note);
        }
        self.observe_total();
    }

    /// Records the total of all balances whenever it differs from the last one recorded (and
    /// once at startup): transfers move money, they never create or destroy it.
    fn observe_total(&self) {
        let total: i64 = self
            .engine
            .borrow()
            .committed("accounts")
            .values()
            .filter_map(|row| match row.get("balance") {
                Some(Value::Int(balance)) => Some(*balance),
                _ => None,
            })
            .sum();
        if self.observed_total.get() != Some(total) {
            self.observed_total.set(Some(total));
            self.env.record(
                &self.name,
                EventKind::Observe {
                    name: "accounts.total_balance".into(),
                    value: total,
                },
            );
        }
    }
}

/// MySQL's `wait_timeout` default: a connection silent this long is closed, rolling back
/// its open transaction. Until then a client that vanished without a FIN (a partition, a
/// machine without power) keeps its transaction, and its row locks, open.
pub const WAIT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(8 * 3600);

/// How the database host is set up.
#[derive(Clone, Debug)]
pub struct DbHost {
    pub engine: EngineOptions,
    pub wait_timeout: Duration,
    pub accounts: u32,
    pub balance: i64,
    pub orders: u64,
    /// Rows of `positions` (0..n) for the position strategy, each starting at 0: one, or one
    /// per partition for a Kafka consumer that keeps its offsets here.
    pub position_rows: u32,
    /// The chance that a row-locking statement in a transaction fails with an injected 1213.
    pub injected_deadlock_rate: f64,
    /// Tables a user's handler declared (`[config.db] tables`), beside [`schemas`].
    pub tables: Vec<TableSchema>,
    /// Where the running engine is left for a design's `Design::pending` to read its
    /// committed rows (never to judge a run); empty while the host is down.
    pub engine_slot: Option<EngineSlot>,
}

/// The live engine of a database host, for `Design::pending`.
pub type EngineSlot = Rc<RefCell<Weak<RefCell<Engine<SimDisk>>>>>;

/// The database process on `host`. On first start it creates `accounts` accounts of
/// `balance`, one `NEW` order per message (1..=`orders`) for the conditional strategy, and
/// the stored position (0) for the position strategy.
pub async fn run(env: Env, host: String, setup: DbHost) -> turmoil::Result {
    let DbHost {
        engine: options,
        wait_timeout,
        accounts,
        balance,
        orders,
        position_rows,
        injected_deadlock_rate,
        tables,
        engine_slot,
    } = setup;
    let process = env.process(&host);
    let _running = process.start();
    let now = Duration::from_micros(env.now().0);
    let all_tables = schemas().into_iter().chain(tables).collect();
    let mut engine = Engine::open(options, env.disk(&host), all_tables, now);
    if engine.table("accounts").is_some_and(|t| t.is_empty()) {
        let setup = engine.connect();
        for id in 0..i64::from(accounts) {
            let mut record = Record::new();
            record.insert("id".into(), Value::Int(id));
            record.insert("balance".into(), Value::Int(balance));
            engine.execute(
                setup,
                Statement::Insert {
                    table: "accounts".into(),
                    record,
                    tag: None,
                },
                now,
            );
        }
        for id in 1..=orders as i64 {
            let mut record = Record::new();
            record.insert("id".into(), Value::Int(id));
            record.insert("state".into(), Value::Text("NEW".into()));
            engine.execute(
                setup,
                Statement::Insert {
                    table: "orders".into(),
                    record,
                    tag: None,
                },
                now,
            );
        }
        // The consumer group's stored positions: the highest message id processed, or a
        // partition's next offset.
        for row in 0..i64::from(position_rows.max(1)) {
            let mut record = Record::new();
            record.insert("id".into(), Value::Int(row));
            record.insert("position".into(), Value::Int(0));
            engine.execute(
                setup,
                Statement::Insert {
                    table: "positions".into(),
                    record,
                    tag: None,
                },
                now,
            );
        }
        engine.disconnect(setup);
    }
    let state = Rc::new(Host {
        env: env.clone(),
        name: host.clone(),
        observed_total: std::cell::Cell::new(None),
        injected_deadlock_rate,
        engine: Rc::new(RefCell::new(engine)),
        sessions: RefCell::new(BTreeMap::new()),
    });
    if let Some(slot) = &engine_slot {
        *slot.borrow_mut() = Rc::downgrade(&state.engine);
    }
    state.settle(Vec::new());
    let ticker = {
        let (state, process) = (state.clone(), process.clone());
        tokio::task::spawn_local(async move {
            loop {
                process.sleep(TICK).await;
                let now = state.now();
                let resumed = state.engine.borrow_mut().tick(now);
                state.settle(resumed);
            }
        })
    };
    let listener = TcpListener::bind(("0.0.0.0", DB_PORT)).await?;
    loop {
        tokio::select! {
            biased;
            _ = process.stopping() => break,
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let (mut read, mut write) = stream.into_split();
                let session = state.engine.borrow_mut().connect();
                let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
                state.sessions.borrow_mut().insert(session, SessionLink { tx, waiting_on: 0 });
                tokio::task::spawn_local(async move {
                    while let Some(bytes) = rx.recv().await {
                        if write.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                });
                let (state, process) = (state.clone(), process.clone());
                tokio::task::spawn_local(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = vec![0u8; 16 * 1024];
                    'conn: loop {
                        let n = match tokio::time::timeout(wait_timeout, read.read(&mut chunk)).await {
                            Ok(Ok(n)) if n > 0 => n,
                            Ok(_) => break,
                            Err(_) => {
                                state.env.note(&state.name, "db.wait_timeout_closed_connection");
                                break;
                            }
                        };
                        process.checkpoint().await;
                        buffer.extend_from_slice(&chunk[..n]);
                        loop {
                            match decode::<Request>(&buffer) {
                                Ok(Some((request, used))) => {
                                    buffer.drain(..used);
                                    if let Some(link) = state.sessions.borrow_mut().get_mut(&session) {
                                        link.waiting_on = request.id;
                                    }
                                    let now = state.now();
                                    let inject = state.injected_deadlock_rate > 0.0
                                        && takes_row_lock(&request.statement)
                                        && state.engine.borrow().in_transaction(session)
                                        && state.env.rng().random_bool(state.injected_deadlock_rate);
                                    let (outcome, resumed) = if inject {
                                        state.engine.borrow_mut().inject_deadlock(session)
                                    } else {
                                        state.engine.borrow_mut().execute(session, request.statement, now)
                                    };
                                    if outcome != Outcome::Blocked {
                                        state.answer(session, outcome);
                                    }
                                    state.settle(resumed);
                                }
                                Ok(None) => break,
                                Err(_) => break 'conn, // a garbled client: drop it
                            }
                        }
                    }
                    // The connection is gone: MySQL rolls back its open transaction.
                    state.sessions.borrow_mut().remove(&session);
                    let resumed = state.engine.borrow_mut().disconnect(session);
                    state.settle(resumed);
                });
            }
        }
    }
    ticker.abort();
    Ok(())
}
