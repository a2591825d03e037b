//! The service that writes the outbox: for each message, its business row and its outbox row
//! in one transaction (reference §5.1). The message is published, for the checkers, when
//! that transaction commits: invoke when the service takes it, ok on COMMIT's answer, fail
//! when the transaction certainly did not commit, info when COMMIT went unanswered.

use crate::db::client::DbConn;
use crate::db::engine::{Outcome, Record, Statement, Value};
use crate::source::Source;
use sim::history::{EventKind, MsgId};
use sim::{Env, Process};
use std::rc::Rc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct WriterConfig {
    pub db_host: String,
    /// The longest think time between two statements of the transaction (each drawn
    /// uniformly up to it).
    pub statement_gap: Duration,
    /// How long a statement's answer may take before the connection is dropped.
    pub timeout: Duration,
    /// Pause between two messages of one writer.
    pub interval: Duration,
    /// Simulated time of the first message.
    pub start: Duration,
}

/// How one message's transaction ended.
enum Written {
    Committed,
    /// Certainly not committed: an error, or no answer before COMMIT was sent.
    Failed(String),
    /// COMMIT sent and unanswered: committed or not, nobody knows.
    Unknown(String),
}

/// A writer process: takes messages from the source and writes each one's transaction.
pub async fn run_writer(env: Env, host: String, config: WriterConfig, source: Rc<Source>) -> turmoil::Result {
    let process = env.process(&host);
    let _running = process.start();
    let name = format!("{host}@{}", process.incarnation());
    let mut conn: Option<DbConn> = None;
    let mut seq = 0;
    let now = Duration::from_micros(env.now().0);
    process.sleep(config.start.saturating_sub(now)).await;
    loop {
        process.checkpoint().await;
        if process.stop_requested() {
            return Ok(());
        }
        let Some((id, key)) = source.take() else {
            return Ok(());
        };
        seq += 1;
        env.record(
            &host,
            EventKind::Publish {
                id,
                producer: name.as_str().into(),
                seq,
                key: key.clone(),
            },
        );
        let written = write_message((&env, &host, &process), &mut conn, &config, id, key).await;
        let kind = match written {
            Written::Committed => EventKind::publish_ok(id),
            Written::Failed(error) => EventKind::PublishFail { id, error },
            Written::Unknown(reason) => EventKind::PublishInfo { id, reason },
        };
        env.record(&host, kind);
        if !config.interval.is_zero() {
            process.sleep(config.interval).await;
        }
    }
}

/// `BEGIN; INSERT INTO orders ...; INSERT INTO outbox (message, msg_key, sent) ...; COMMIT`,
/// with the think time between statements. A failed statement drops the connection, which
/// rolls the transaction back on the server.
async fn write_message(
    (env, host, process): (&Env, &str, &Process),
    conn: &mut Option<DbConn>,
    config: &WriterConfig,
    id: MsgId,
    key: Option<String>,
) -> Written {
    if conn.is_none() {
        *conn = DbConn::connect(env, host, &config.db_host, config.timeout).await;
    }
    let Some(db) = conn.as_mut() else {
        return Written::Failed(format!("cannot connect to {}", config.db_host));
    };
    let order = Record::from([
        ("id".to_string(), Value::Int(id.0 as i64)),
        ("state".to_string(), Value::Text("PLACED".into())),
    ]);
    let mut outbox = Record::from([
        ("message".to_string(), Value::Int(id.0 as i64)),
        ("sent".to_string(), Value::Int(0)),
    ]);
    if let Some(key) = key {
        outbox.insert("msg_key".into(), Value::Text(key));
    }
    let statements = [
        Statement::Begin,
        Statement::Insert {
            table: "orders".into(),
            record: order,
            tag: None,
        },
        Statement::Insert {
            table: "outbox".into(),
            record: outbox,
            tag: None,
        },
    ];
    for statement in statements {
        match db.call(statement, config.timeout).await {
            Ok(Outcome::Inserted(outbox_id)) => {
                // The id is taken now and becomes visible only at COMMIT.
                env.note_with(
                    host,
                    "writer.outbox_id_taken",
                    format!("message {} took outbox id {outbox_id}", id.0),
                );
            }
            Ok(Outcome::Ok | Outcome::Affected(_)) => {}
            Ok(other) => {
                *conn = None;
                return Written::Failed(format!("{other:?}"));
            }
            Err(_) => {
                *conn = None;
                return Written::Failed(format!("no answer from {}", config.db_host));
            }
        }
        // Services take varying time between statements (other work, GC, the network):
        // drawn from the run's seed, so transactions that began in one order can commit in
        // another.
        let gap_us = config.statement_gap.as_micros() as u64;
        let think = rand::Rng::random_range(&mut *env.rng(), 0..=gap_us);
        process.sleep(Duration::from_micros(think)).await;
    }
    match db.call(Statement::Commit, config.timeout).await {
        Ok(Outcome::Ok) => Written::Committed,
        Ok(other) => {
            *conn = None;
            Written::Failed(format!("COMMIT: {other:?}"))
        }
        Err(_) => {
            *conn = None;
            Written::Unknown(format!("COMMIT unanswered by {}", config.db_host))
        }
    }
}
