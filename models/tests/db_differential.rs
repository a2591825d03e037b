//! The database engine (`models::db::engine`) against a real InnoDB (issue 16): proptest
//! generates small schedules (2-3 sessions, a few rows, interleaved locking reads, updates,
//! inserts with a unique key, COMMIT, ROLLBACK and waits past `innodb_lock_wait_timeout`),
//! runs each on the engine and on a MariaDB the test starts itself, and compares every
//! statement's outcome (ok, rows affected, the row read, blocked, 1213 and which session was
//! the victim, 1205, 1062), the blocked statements each step let finish, and the final rows.
//! A disagreement is shrunk by proptest to a minimal schedule. A fixed schedule of the
//! outbox's statements (issue 15) is compared too: `AUTO_INCREMENT` ids taken at INSERT and
//! committed out of order, a rolled-back insert's gap, and `FOR UPDATE SKIP LOCKED`.
//!
//! `JETSAM_DB_DIFFERENTIAL_CASES` sets the number of schedules (32 by default, CI's share)
//! and `JETSAM_DB_DIFFERENTIAL_SEED` the seed (printed first), for a longer sweep:
//! `JETSAM_DB_DIFFERENTIAL_CASES=500 cargo test -p models --test db_differential`.
//!
//! What the generator leaves out, and why, is in `models::db`'s documentation ("Known
//! differences from InnoDB").

mod db_support;

use db_support::{Done, MariaDb, Sessions};
use models::db::engine::{Engine, EngineOptions, Outcome, Record, Set, Statement, TableSchema, Value};
use models::db::locks::LockOptions;
use mysql_async::prelude::Queryable;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use sim::disk::SimDisk;
use std::collections::BTreeMap;
use std::time::Duration;

/// `innodb_lock_wait_timeout`, on both sides. A schedule's steps between two waits take far
/// less than this on the real server, so only a `Wait` step times a statement out.
const LOCK_WAIT_TIMEOUT_S: u64 = 1;
/// How far past the timeout a `Wait` sleeps on the real server.
const WAIT_MARGIN_MS: u64 = 300;
const CASES_DEFAULT: u32 = 32;
const SEED_DEFAULT: u64 = 16;
const STEPS_MAX: usize = 12;
/// The rows every schedule starts with: (id, k, v); `k` is the unique column.
const INITIAL_ROWS: [(i64, i64, i64); 2] = [(1, 10, 0), (2, 20, 0)];

#[derive(Clone, Debug)]
enum Op {
    Begin,
    /// `SELECT v FROM t WHERE id = ? FOR UPDATE`.
    Lock(i64),
    /// `UPDATE t SET v = ? WHERE id = ?` (0 rows affected when unchanged).
    Set(i64, i64),
    /// `UPDATE t SET v = v + 1 WHERE id = ?`.
    Add(i64),
    /// `INSERT INTO t (id, k, v) VALUES (?, ?, 0)`.
    Insert(i64, i64),
    Commit,
    Rollback,
    /// Time passes past the lock-wait timeout: every blocked statement fails with 1205.
    Wait,
}

#[derive(Clone, Debug)]
struct Step {
    session: usize,
    op: Op,
}

#[derive(Clone, Debug)]
struct Schedule {
    sessions: usize,
    steps: Vec<Step>,
}

/// What a statement did, the same words for both sides.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Said {
    Ok,
    Affected(u64),
    Row(Option<i64>),
    Blocked,
    Error(u16),
    /// The session was blocked, so it sent nothing (both sides agreed it was).
    Skipped,
}

/// One step's outcome: what the statement did, and which earlier blocked statements finished.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Line {
    said: Said,
    finished: BTreeMap<usize, Said>,
}

fn op() -> impl Strategy<Value = Op> {
    // Locking reads and updates name rows 1 and 2, which always exist: on an absent row
    // InnoDB takes a gap lock, which the engine does not model (known difference 2).
    let existing = 1..=2i64;
    prop_oneof![
        1 => Just(Op::Begin),
        5 => existing.clone().prop_map(Op::Lock),
        3 => (existing.clone(), 0..=1i64).prop_map(|(id, v)| Op::Set(id, v)),
        3 => existing.prop_map(Op::Add),
        // `k` is either the id's own (a clash is a clash of primary keys too) or row 1's,
        // which is committed and never changes: a clash of the unique column alone with an
        // uncommitted insert waits in InnoDB, which the engine does not model (known
        // difference 1 in `models::db`). An INSERT of row 1 or 2 clashes on the primary key
        // and takes a shared lock that a later locking read may upgrade: two lock structs in
        // InnoDB's deadlock weight.
        3 => (1..=4i64, any::<bool>()).prop_map(|(id, own)| Op::Insert(id, if own { id * 10 } else { 10 })),
        1 => Just(Op::Commit),
        1 => Just(Op::Rollback),
        1 => Just(Op::Wait),
    ]
}

/// Most sessions open with BEGIN, so that locks are held across statements and waits,
/// deadlocks and timeouts happen in a few steps; the rest start in autocommit.
fn schedule() -> impl Strategy<Value = Schedule> {
    (2..=3usize).prop_flat_map(|sessions| {
        let step = (0..sessions, op()).prop_map(|(session, op)| Step { session, op });
        let explicit = prop::collection::vec(prop::bool::weighted(0.8), sessions);
        (explicit, prop::collection::vec(step, 1..=STEPS_MAX)).prop_map(move |(explicit, steps)| {
            let begins = (0..sessions).filter(|s| explicit[*s]).map(|session| Step {
                session,
                op: Op::Begin,
            });
            Schedule {
                sessions,
                steps: begins.chain(steps).collect(),
            }
        })
    })
}

fn sql(op: &Op) -> String {
    match op {
        Op::Begin => "BEGIN".into(),
        Op::Lock(id) => format!("SELECT v FROM t WHERE id = {id} FOR UPDATE"),
        Op::Set(id, v) => format!("UPDATE t SET v = {v} WHERE id = {id}"),
        Op::Add(id) => format!("UPDATE t SET v = v + 1 WHERE id = {id}"),
        Op::Insert(id, k) => format!("INSERT INTO t (id, k, v) VALUES ({id}, {k}, 0)"),
        Op::Commit => "COMMIT".into(),
        Op::Rollback => "ROLLBACK".into(),
        Op::Wait => unreachable!("a wait sends nothing"),
    }
}

fn record(id: i64, k: i64, v: i64) -> Record {
    Record::from([
        ("id".to_string(), Value::Int(id)),
        ("k".to_string(), Value::Int(k)),
        ("v".to_string(), Value::Int(v)),
    ])
}

fn statement(op: &Op) -> Statement {
    let table = "t".to_string();
    match op {
        Op::Begin => Statement::Begin,
        Op::Lock(id) => Statement::Select {
            table,
            key: Value::Int(*id),
            for_update: true,
        },
        Op::Set(id, v) => Statement::Update {
            table,
            key: Value::Int(*id),
            set: vec![Set::To("v".into(), Value::Int(*v))],
            only_if: vec![],
            tag: None,
        },
        Op::Add(id) => Statement::Update {
            table,
            key: Value::Int(*id),
            set: vec![Set::Add("v".into(), 1)],
            only_if: vec![],
            tag: None,
        },
        Op::Insert(id, k) => Statement::Insert {
            table,
            record: record(*id, *k, 0),
            tag: None,
        },
        Op::Commit => Statement::Commit,
        Op::Rollback => Statement::Rollback,
        Op::Wait => unreachable!("a wait sends nothing"),
    }
}

fn from_engine(outcome: Outcome) -> Said {
    match outcome {
        Outcome::Ok => Said::Ok,
        Outcome::Affected(n) => Said::Affected(n),
        Outcome::Row(row) => Said::Row(row.map(|r| int(&r["v"]))),
        Outcome::Blocked => Said::Blocked,
        Outcome::Error(error) => Said::Error(error as u16),
        // Table `t` has no AUTO_INCREMENT and the generator issues no scans.
        Outcome::Inserted(_) | Outcome::Rows(_) => unreachable!("not generated: {outcome:?}"),
    }
}

fn from_server(op: &Op, done: Done) -> Said {
    match (op, done) {
        // BEGIN, COMMIT and ROLLBACK answer OK with 0 rows affected.
        (Op::Begin | Op::Commit | Op::Rollback, Done::Affected(0)) => Said::Ok,
        (_, Done::Affected(n)) => Said::Affected(n),
        (_, Done::Row(v)) => Said::Row(v),
        (_, Done::Error(code)) => Said::Error(code),
        (_, Done::Lost(error)) => panic!("a session's connection failed: {error}"),
    }
}

fn int(value: &Value) -> i64 {
    match value {
        Value::Int(i) => *i,
        Value::Text(t) => panic!("an int column holds {t:?}"),
    }
}

/// The schedule on the engine: one line per step, and the committed rows at the end.
fn on_engine(schedule: &Schedule) -> (Vec<Line>, BTreeMap<i64, (i64, i64)>) {
    let options = EngineOptions {
        locks: LockOptions {
            lock_wait_timeout: Duration::from_secs(LOCK_WAIT_TIMEOUT_S),
            ..LockOptions::default()
        },
        flush_at_commit: true,
    };
    let schema = TableSchema {
        name: "t".into(),
        primary_key: "id".into(),
        unique: vec!["k".into()],
        auto_increment: false,
    };
    let mut now = Duration::ZERO;
    let mut engine = Engine::open(options, SimDisk::new(), vec![schema], now);
    let setup = engine.connect();
    for (id, k, v) in INITIAL_ROWS {
        let statement = Statement::Insert {
            table: "t".into(),
            record: record(id, k, v),
            tag: None,
        };
        assert_eq!(engine.execute(setup, statement, now).0, Outcome::Affected(1));
    }
    let sessions: Vec<_> = (0..schedule.sessions).map(|_| engine.connect()).collect();
    let index = |id| {
        sessions
            .iter()
            .position(|s| *s == id)
            .expect("a schedule's session")
    };
    let mut lines = Vec::new();
    for step in &schedule.steps {
        now += Duration::from_millis(1);
        let (said, finished) = match &step.op {
            Op::Wait => {
                now += Duration::from_secs(LOCK_WAIT_TIMEOUT_S);
                (Said::Ok, engine.tick(now))
            }
            _ if engine.is_blocked(sessions[step.session]) => (Said::Skipped, Vec::new()),
            op => {
                let (outcome, finished) = engine.execute(sessions[step.session], statement(op), now);
                (from_engine(outcome), finished)
            }
        };
        let mut finished: BTreeMap<usize, Said> = finished
            .into_iter()
            .map(|(s, o)| (index(s), from_engine(o)))
            .collect();
        // A statement that waited and was granted within its own step (a deadlock victim's
        // rollback let a queue ahead of it run) has returned by the time the server's
        // session is looked at: that is its answer there, so it is here.
        let said = match (said, finished.remove(&step.session)) {
            (Said::Blocked, Some(done)) => done,
            (said, Some(done)) => {
                finished.insert(step.session, done);
                said
            }
            (said, None) => said,
        };
        lines.push(Line { said, finished });
    }
    let rows = engine
        .committed("t")
        .values()
        .map(|r| (int(&r["id"]), (int(&r["k"]), int(&r["v"]))))
        .collect();
    (lines, rows)
}

/// The schedule on the real server, in a database of its own.
async fn on_server(
    server: &MariaDb,
    case: usize,
    schedule: &Schedule,
) -> (Vec<Line>, BTreeMap<i64, (i64, i64)>) {
    let database = format!("case_{case}");
    let mut admin = mysql_async::Conn::new(server.options(None)).await.unwrap();
    admin
        .query_drop(format!("CREATE DATABASE {database}"))
        .await
        .unwrap();
    admin
        .query_drop(format!(
            "CREATE TABLE {database}.t (id INT PRIMARY KEY, k INT NOT NULL UNIQUE, v INT NOT NULL) \
             ENGINE=InnoDB"
        ))
        .await
        .unwrap();
    for (id, k, v) in INITIAL_ROWS {
        admin
            .query_drop(format!("INSERT INTO {database}.t VALUES ({id}, {k}, {v})"))
            .await
            .unwrap();
    }
    let options = server.options(Some(&database));
    let mut sessions = Sessions::open(&options, schedule.sessions).await;
    let mut lines = Vec::new();
    for step in &schedule.steps {
        let (said, finished) = match &step.op {
            Op::Wait => {
                tokio::time::sleep(Duration::from_millis(LOCK_WAIT_TIMEOUT_S * 1000 + WAIT_MARGIN_MS)).await;
                (Said::Ok, sessions.settle().await)
            }
            _ if sessions.is_running(step.session) => (Said::Skipped, BTreeMap::new()),
            op => {
                let reads = matches!(op, Op::Lock(_));
                let (done, finished) = sessions.send(step.session, sql(op), reads).await;
                (done.map_or(Said::Blocked, |done| from_server(op, done)), finished)
            }
        };
        // A statement that blocked was a row statement, never BEGIN, COMMIT or ROLLBACK.
        let finished = finished
            .into_iter()
            .map(|(s, done)| (s, from_server(&Op::Wait, done)))
            .collect();
        lines.push(Line { said, finished });
    }
    let rows: Vec<(i64, i64, i64)> = admin
        .query(format!("SELECT id, k, v FROM {database}.t ORDER BY id"))
        .await
        .unwrap();
    sessions.close(&mut admin).await;
    let _ = admin.disconnect().await;
    (lines, rows.into_iter().map(|(id, k, v)| (id, (k, v))).collect())
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

#[test]
fn the_engine_agrees_with_innodb_on_generated_schedules() {
    if db_support::installed().is_none() {
        assert!(
            !db_support::required(),
            "CI needs MariaDB: apt-get install mariadb-server, as .ci/run does"
        );
        eprintln!("SKIPPED: mariadb-server is not installed");
        return;
    }
    let seed = env_number("JETSAM_DB_DIFFERENTIAL_SEED", SEED_DEFAULT);
    let cases = env_number("JETSAM_DB_DIFFERENTIAL_CASES", u64::from(CASES_DEFAULT)) as u32;
    eprintln!(
        "seed {seed}, {cases} cases; replay: JETSAM_DB_DIFFERENTIAL_SEED={seed} \
         JETSAM_DB_DIFFERENTIAL_CASES={cases} cargo test -p models --test db_differential"
    );
    let server = MariaDb::start(LOCK_WAIT_TIMEOUT_S);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[seed.to_le_bytes(); 4].concat());
    let mut runner = TestRunner::new_with_rng(config, rng);
    let case = std::cell::Cell::new(0);
    // "Sometimes" counters over the agreeing cases: what the schedules made happen.
    let seen = std::cell::RefCell::new(BTreeMap::<&str, u64>::new());
    let check = |schedule: &Schedule| -> Result<(), TestCaseError> {
        case.set(case.get() + 1);
        let (engine_lines, engine_rows) = on_engine(schedule);
        let (server_lines, server_rows) = runtime.block_on(on_server(&server, case.get(), schedule));
        compare(schedule, &engine_lines, &server_lines)?;
        prop_assert_eq!(engine_rows, server_rows, "final rows (engine, then MariaDB)");
        count(&mut seen.borrow_mut(), &engine_lines);
        Ok(())
    };
    for (name, schedule) in pinned() {
        if let Err(error) = check(&schedule) {
            panic!("pinned schedule {name:?}: {error}");
        }
    }
    let result = runner.run(&schedule(), |schedule| check(&schedule));
    if let Err(error) = result {
        panic!("{error}\nreplay with JETSAM_DB_DIFFERENTIAL_SEED={seed}");
    }
    let seen = seen.into_inner();
    eprintln!("agreed on {cases} schedules; outcomes seen: {seen:?}");
    for kind in [
        "blocked",
        "resumed",
        "1213 requester",
        "1213 other",
        "1205",
        "1062",
    ] {
        assert!(seen.contains_key(kind), "no schedule produced {kind}: {seen:?}");
    }
}

/// Schedules run before the generated ones, so every kind of outcome is compared in every
/// run whatever the seed draws: the deadlock victims InnoDB chooses by weight, a timeout.
fn pinned() -> Vec<(&'static str, Schedule)> {
    let steps = |steps: &[(usize, Op)]| Schedule {
        sessions: 2,
        steps: steps
            .iter()
            .map(|(session, op)| Step {
                session: *session,
                op: op.clone(),
            })
            .collect(),
    };
    use Op::*;
    vec![
        (
            "deadlock: equal weights, the requester is the victim",
            steps(&[
                (0, Begin),
                (1, Begin),
                (0, Lock(1)),
                (1, Lock(2)),
                (0, Lock(2)),
                (1, Lock(1)),
                (0, Commit),
            ]),
        ),
        (
            "deadlock: the lighter waiting transaction is the victim",
            steps(&[
                (0, Begin),
                (1, Begin),
                (0, Add(1)),
                (1, Lock(2)),
                (1, Lock(1)),
                (0, Add(2)),
                (0, Commit),
            ]),
        ),
        (
            "lock wait timeout: the statement fails, the transaction stays open",
            steps(&[
                (0, Begin),
                (1, Begin),
                (1, Add(2)),
                (0, Add(1)),
                (1, Add(1)),
                (0, Wait),
                (1, Commit),
                (0, Rollback),
            ]),
        ),
    ]
}

/// Adds what a transcript shows to the counters: blocked statements, blocked ones that
/// finished later, deadlock victims (the requester, or another session), 1205 and 1062.
fn count(seen: &mut BTreeMap<&'static str, u64>, lines: &[Line]) {
    for line in lines {
        let mut kinds = Vec::new();
        match line.said {
            Said::Blocked => kinds.push("blocked"),
            Said::Error(1213) => kinds.push("1213 requester"),
            Said::Error(1205) => kinds.push("1205"),
            Said::Error(1062) => kinds.push("1062"),
            _ => {}
        }
        for said in line.finished.values() {
            kinds.push(match said {
                Said::Error(1213) => "1213 other",
                Said::Error(1205) => "1205",
                _ => "resumed",
            });
        }
        for kind in kinds {
            *seen.entry(kind).or_default() += 1;
        }
    }
}

/// Up to the first step where the two disagree; the message shows both transcripts.
fn compare(schedule: &Schedule, engine: &[Line], server: &[Line]) -> Result<(), TestCaseError> {
    let first = engine.iter().zip(server).position(|(e, s)| e != s);
    let Some(at) = first else { return Ok(()) };
    let mut text = format!("step {at} differs ({} sessions)\n", schedule.sessions);
    for (i, step) in schedule.steps.iter().enumerate() {
        let what = match &step.op {
            Op::Wait => "-- wait past the lock-wait timeout".to_string(),
            op => format!("s{}: {}", step.session, sql(op)),
        };
        text.push_str(&format!(
            "{i:>2} {what:<50} engine {:?} {:?} | mariadb {:?} {:?}\n",
            engine[i].said, engine[i].finished, server[i].said, server[i].finished
        ));
        if i == at {
            break;
        }
    }
    Err(TestCaseError::fail(text))
}

/// One step of the outbox schedule: what the outbox's writers and relays send.
#[derive(Clone, Copy, Debug)]
enum OutboxOp {
    Begin,
    /// `INSERT INTO o (sent) VALUES (0)`, answered with `LAST_INSERT_ID()`.
    Insert,
    /// `SELECT id FROM o WHERE id > after AND sent = 0 ORDER BY id LIMIT limit`, plain or
    /// `FOR UPDATE SKIP LOCKED`.
    Scan {
        after: i64,
        limit: u32,
        skip_locked: bool,
    },
    Commit,
    Rollback,
}

/// The outbox's statements in an order that commits ids out of order, rolls one back and
/// has two claims skip each other's rows: no step blocks, so each answer is compared as is.
const OUTBOX_STEPS: [(usize, OutboxOp); 17] = {
    use OutboxOp::*;
    const fn plain(after: i64) -> OutboxOp {
        Scan {
            after,
            limit: 10,
            skip_locked: false,
        }
    }
    [
        (0, Begin),
        (1, Begin),
        (0, Insert), // id 1
        (1, Insert), // id 2
        (1, Commit),
        (2, plain(0)), // 2 only: 1 is not committed
        (0, Commit),
        (2, plain(2)), // nothing: a cursor at 2 never sees 1
        (0, Begin),
        (0, Insert), // id 3, rolled back: a gap
        (0, Rollback),
        (1, Insert), // id 4
        (0, Begin),
        (
            0,
            Scan {
                after: 0,
                limit: 1,
                skip_locked: true,
            },
        ), // 1
        (1, Begin),
        (1, Insert), // id 5, uncommitted
        (
            2,
            Scan {
                after: 0,
                limit: 10,
                skip_locked: true,
            },
        ), // 2 and 4: 1 and 5 are held
    ]
};

#[derive(Clone, Debug, PartialEq, Eq)]
enum OutboxSaid {
    Ok,
    Id(i64),
    Ids(Vec<i64>),
    Error(u16),
}

fn outbox_on_engine() -> Vec<OutboxSaid> {
    let schema = TableSchema {
        name: "o".into(),
        primary_key: "id".into(),
        unique: vec![],
        auto_increment: true,
    };
    let mut engine = Engine::open(
        EngineOptions::default(),
        SimDisk::new(),
        vec![schema],
        Duration::ZERO,
    );
    let sessions: Vec<_> = (0..3).map(|_| engine.connect()).collect();
    let mut said = Vec::new();
    for (session, op) in OUTBOX_STEPS {
        let statement = match op {
            OutboxOp::Begin => Statement::Begin,
            OutboxOp::Commit => Statement::Commit,
            OutboxOp::Rollback => Statement::Rollback,
            OutboxOp::Insert => Statement::Insert {
                table: "o".into(),
                record: Record::from([("sent".to_string(), Value::Int(0))]),
                tag: None,
            },
            OutboxOp::Scan {
                after,
                limit,
                skip_locked,
            } => Statement::Scan {
                table: "o".into(),
                after: Some(Value::Int(after)),
                only_if: vec![("sent".into(), Value::Int(0))],
                limit,
                skip_locked,
                for_update: skip_locked,
            },
        };
        let (outcome, resumed) = engine.execute(sessions[session], statement, Duration::ZERO);
        assert!(resumed.is_empty(), "no outbox step blocks");
        said.push(match outcome {
            Outcome::Ok => OutboxSaid::Ok,
            Outcome::Inserted(id) => OutboxSaid::Id(id),
            Outcome::Rows(rows) => OutboxSaid::Ids(rows.iter().map(|r| int(&r["id"])).collect()),
            Outcome::Error(error) => OutboxSaid::Error(error as u16),
            other => panic!("step {op:?}: {other:?}"),
        });
    }
    said
}

async fn outbox_on_server(server: &MariaDb) -> Vec<OutboxSaid> {
    let mut admin = mysql_async::Conn::new(server.options(None)).await.unwrap();
    admin.query_drop("CREATE DATABASE outbox").await.unwrap();
    admin
        .query_drop(
            "CREATE TABLE outbox.o (id INT AUTO_INCREMENT PRIMARY KEY, sent INT NOT NULL) ENGINE=InnoDB",
        )
        .await
        .unwrap();
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(
            mysql_async::Conn::new(server.options(Some("outbox")))
                .await
                .unwrap(),
        );
    }
    let mut said = Vec::new();
    for (session, op) in OUTBOX_STEPS {
        let conn = &mut conns[session];
        let result = match op {
            OutboxOp::Begin => conn.query_drop("BEGIN").await.map(|()| OutboxSaid::Ok),
            OutboxOp::Commit => conn.query_drop("COMMIT").await.map(|()| OutboxSaid::Ok),
            OutboxOp::Rollback => conn.query_drop("ROLLBACK").await.map(|()| OutboxSaid::Ok),
            OutboxOp::Insert => conn
                .query_drop("INSERT INTO o (sent) VALUES (0)")
                .await
                .map(|()| OutboxSaid::Id(conn.last_insert_id().expect("an AUTO_INCREMENT id") as i64)),
            OutboxOp::Scan {
                after,
                limit,
                skip_locked,
            } => {
                let lock = if skip_locked {
                    " FOR UPDATE SKIP LOCKED"
                } else {
                    ""
                };
                let sql = format!(
                    "SELECT id FROM o WHERE id > {after} AND sent = 0 ORDER BY id LIMIT {limit}{lock}"
                );
                conn.query::<i64, _>(sql).await.map(OutboxSaid::Ids)
            }
        };
        said.push(match result {
            Ok(done) => done,
            Err(mysql_async::Error::Server(error)) => OutboxSaid::Error(error.code),
            Err(other) => panic!("step {op:?}: {other}"),
        });
    }
    for conn in conns {
        drop(conn.disconnect().await);
    }
    drop(admin.disconnect().await);
    said
}

/// The outbox's statements (issue 15): AUTO_INCREMENT ids taken at INSERT, so a lower id
/// commits after a higher one and a rolled-back insert leaves a gap, and SKIP LOCKED
/// passing over rows another transaction holds, its uncommitted insert included.
#[test]
fn the_outbox_statements_agree_with_innodb() {
    let engine = outbox_on_engine();
    use OutboxSaid::{Id, Ids, Ok as Fine};
    let expected = vec![
        Fine,
        Fine,
        Id(1),
        Id(2),
        Fine,
        Ids(vec![2]),
        Fine,
        Ids(vec![]),
        Fine,
        Id(3),
        Fine,
        Id(4),
        Fine,
        Ids(vec![1]),
        Fine,
        Id(5),
        Ids(vec![2, 4]),
    ];
    assert_eq!(engine, expected, "the engine");
    if db_support::installed().is_none() {
        assert!(
            !db_support::required(),
            "CI needs MariaDB: apt-get install mariadb-server, as .ci/run does"
        );
        eprintln!("SKIPPED: mariadb-server is not installed");
        return;
    }
    let server = MariaDb::start(LOCK_WAIT_TIMEOUT_S);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let real = runtime.block_on(outbox_on_server(&server));
    for (step, ((op, engine), real)) in OUTBOX_STEPS.iter().zip(&engine).zip(&real).enumerate() {
        assert_eq!(engine, real, "step {step} {op:?}: the engine, then MariaDB");
    }
}
