//! The database as a host in the simulation: the sans-I/O [`Engine`] behind simulated TCP,
//! on the host's simulated disk (so kill and power_fail lose what InnoDB would). Effects are
//! recorded in the history here, when their transaction commits: the truth, whether or not
//! the client ever hears the COMMIT's answer.

use super::engine::{Engine, EngineOptions, Outcome, Record, SessionId, Statement, TableSchema, Value};
use super::wire::{decode, encode, Request, Response, DB_PORT};
use sim::disk::SimDisk;
use sim::history::{EventKind, MsgId};
use sim::Env;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
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
        },
        TableSchema {
            name: "inbox".into(),
            primary_key: "message_id".into(),
            unique: vec![],
        },
        TableSchema {
            name: "orders".into(),
            primary_key: "id".into(),
            unique: vec![],
        },
    ]
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
    engine: RefCell<Engine<SimDisk>>,
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
        let (effects, notes) = {
            let mut engine = self.engine.borrow_mut();
            (engine.take_committed_effects(), std::mem::take(&mut engine.notes))
        };
        for message in effects {
            self.env.record(
                &self.name,
                EventKind::Effect {
                    id: MsgId(message),
                    consumer: self.name.clone(),
                },
            );
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

/// The database process on `host`. On first start it creates `accounts` accounts of
/// `balance`, and one `NEW` order per message (1..=`orders`) for the conditional strategy.
pub async fn run(
    env: Env,
    host: String,
    options: EngineOptions,
    wait_timeout: Duration,
    accounts: u32,
    balance: i64,
    orders: u64,
) -> turmoil::Result {
    let process = env.process(&host);
    let _running = process.start();
    let now = Duration::from_micros(env.now().0);
    let mut engine = Engine::open(options, env.disk(&host), schemas(), now);
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
        engine: RefCell::new(engine),
        sessions: RefCell::new(BTreeMap::new()),
    });
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
                                    let (outcome, resumed) = state.engine.borrow_mut().execute(session, request.statement, now);
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
