//! What the database differential test needs from the real world: a MariaDB server of the
//! test's own (Debian's `mariadb-server`: a fresh data directory made by
//! `mariadb-install-db`, `mariadbd` on its own Unix socket with networking off, InnoDB,
//! stopped and removed when dropped), and its sessions driven statement by statement, each
//! on its own connection, with "blocked" read from the server itself.
//!
//! In CI (`CI=true`, or `JETSAM_REQUIRE_MARIADB` set) a missing MariaDB fails the test;
//! elsewhere the test says SKIPPED and passes.

use mysql_async::prelude::Queryable;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long `mariadbd` may take to accept connections once started.
const STARTUP_MS_MAX: u64 = 30_000;
/// How long a statement may take to either finish or be seen waiting for a row lock.
const SETTLE_MS_MAX: u64 = 5_000;
/// Pause between two looks at the server while statements settle.
const POLL_MS: u64 = 5;
/// Looks in a row that must agree before a step is settled. A waiter granted after a
/// deadlock victim's rollback waits for the victim's own thread to roll back, and a loaded
/// machine (a CI runner, or builds beside the test) can take tens of milliseconds for it:
/// two looks (10 ms) called such a waiter blocked where it was about to run. More looks
/// cost real time, which the 1 s lock-wait timeout of every waiter counts.
const STABLE_LOOKS: u32 = 3;
/// The same after a deadlock in this step, whose rollback and grants take longer.
const STABLE_LOOKS_AFTER_DEADLOCK: u32 = 12;

/// Whether a missing MariaDB fails the test instead of skipping it.
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true") || std::env::var_os("JETSAM_REQUIRE_MARIADB").is_some()
}

/// Debian installs the server in /usr/sbin, which an ordinary user's PATH may lack.
fn binary(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// `mariadbd` and `mariadb-install-db`, if installed.
pub fn installed() -> Option<(PathBuf, PathBuf)> {
    Some((binary("mariadbd")?, binary("mariadb-install-db")?))
}

/// A `mariadbd` of the test's own, killed and its directory removed when dropped. A system
/// service the package may have started is never used.
pub struct MariaDb {
    pub socket: PathBuf,
    child: Child,
    dir: PathBuf,
}

impl MariaDb {
    /// Starts a fresh server whose `innodb_lock_wait_timeout` is `lock_wait_timeout_s`.
    pub fn start(lock_wait_timeout_s: u64) -> MariaDb {
        let (server, install_db) = installed().expect("mariadb-server is installed");
        // One directory per server: the tests of one binary start theirs on parallel threads.
        static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nth = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("jetsam-mariadb-{}-{nth}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let data = dir.join("data");
        // mariadbd refuses to run as root unless told to.
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
        let user = if root {
            vec!["--user=root".to_string()]
        } else {
            Vec::new()
        };
        // Each server gets a temporary directory of its own. mariadbd's default is /tmp,
        // shared with every other server on the machine, and a CI run once saw the bootstrap
        // of one install lose its `#sql-temptable-*` file ("Could not remove temporary
        // table ... error: 2", then "Unknown table 'mysql.tmp_user_sys'").
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        install(&install_db, &data, &tmp, &user);
        let socket = dir.join("mariadbd.sock");
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new(server)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--innodb-lock-wait-timeout={lock_wait_timeout_s}"))
            .args([
                "--skip-networking",
                "--skip-grant-tables",
                "--default-storage-engine=InnoDB",
                "--innodb-buffer-pool-size=16M",
                "--innodb-flush-log-at-trx-commit=2",
                "--skip-log-bin",
            ])
            .args(&user)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mariadbd starts");
        let mut server = MariaDb { socket, child, dir };
        server.wait_until_ready();
        server
    }

    fn wait_until_ready(&mut self) {
        let mut waited_ms = 0;
        while waited_ms < STARTUP_MS_MAX {
            if self.child.try_wait().unwrap().is_some() {
                panic!("mariadbd exited at startup:\n{}", self.log());
            }
            // Logged once the socket listens and InnoDB has started.
            if self.log().contains("ready for connections") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
            waited_ms += 20;
        }
        panic!("mariadbd was not ready in {STARTUP_MS_MAX} ms:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    pub fn options(&self, database: Option<&str>) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .socket(Some(self.socket.display().to_string()))
            .prefer_socket(true)
            .user(Some("root"))
            .db_name(database)
            .into()
    }
}

/// Makes a fresh data directory with `mariadb-install-db`. The tests of one binary start
/// their servers on parallel threads, and installs run one at a time: a bootstrap is a
/// short-lived server of its own, and nothing is gained by running two at once. One failed
/// install is retried from an empty directory before the test fails; the message keeps
/// both attempts' output.
fn install(install_db: &std::path::Path, data: &std::path::Path, tmp: &std::path::Path, user: &[String]) {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut failures = Vec::new();
    for _attempt in 0..2 {
        let _ = std::fs::remove_dir_all(data);
        std::fs::create_dir_all(data).unwrap();
        let installed = Command::new(install_db)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--skip-test-db", "--auth-root-authentication-method=normal"])
            // Passed on to the bootstrap mariadbd.
            .arg(format!("--tmpdir={}", tmp.display()))
            .args(user)
            .stdin(Stdio::null())
            .output()
            .expect("mariadb-install-db runs");
        if installed.status.success() {
            return;
        }
        failures.push(String::from_utf8_lossy(&installed.stderr).into_owned());
    }
    panic!(
        "mariadb-install-db failed twice:\n{}",
        failures.join("\n--- retry ---\n")
    );
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a statement did on the real server, in the engine's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Done {
    Affected(u64),
    /// A locking read's result: the row's `v`, or no row.
    Row(Option<i64>),
    Error(u16),
    /// The connection failed (killed at the end of a schedule).
    Lost(String),
}

type Running = tokio::task::JoinHandle<(mysql_async::Conn, Done)>;

/// One session: its connection, or the statement running on it.
enum Session {
    Idle(mysql_async::Conn),
    Running { thread_id: u32, task: Running },
    Gone,
}

/// The sessions of one schedule, plus a monitor connection that asks InnoDB which of them
/// wait for a row lock.
pub struct Sessions {
    sessions: Vec<Session>,
    monitor: mysql_async::Conn,
}

/// Runs one statement; a locking read returns its row's `v`.
async fn run(conn: &mut mysql_async::Conn, sql: String, reads: bool) -> Done {
    let result = if reads {
        conn.query::<i64, _>(sql)
            .await
            .map(|rows| Done::Row(rows.first().copied()))
    } else {
        conn.query_drop(sql)
            .await
            .map(|()| Done::Affected(conn.affected_rows()))
    };
    match result {
        Ok(done) => done,
        Err(mysql_async::Error::Server(error)) => Done::Error(error.code),
        Err(other) => Done::Lost(other.to_string()),
    }
}

impl Sessions {
    pub async fn open(options: &mysql_async::Opts, count: usize) -> Sessions {
        let mut sessions = Vec::new();
        for _ in 0..count {
            sessions.push(Session::Idle(
                mysql_async::Conn::new(options.clone()).await.unwrap(),
            ));
        }
        let monitor = mysql_async::Conn::new(options.clone()).await.unwrap();
        Sessions { sessions, monitor }
    }

    /// Sends `sql` on `session`, then waits until it and every other running statement
    /// either finished or is seen waiting for a lock: returns the statement's outcome (`None`:
    /// blocked) and the other statements that finished.
    pub async fn send(
        &mut self,
        session: usize,
        sql: String,
        reads: bool,
    ) -> (Option<Done>, std::collections::BTreeMap<usize, Done>) {
        let Session::Idle(mut conn) = std::mem::replace(&mut self.sessions[session], Session::Gone) else {
            panic!("session {session} is busy: a blocked session sends nothing");
        };
        let thread_id = conn.id();
        let task = tokio::spawn(async move {
            let done = run(&mut conn, sql, reads).await;
            (conn, done)
        });
        self.sessions[session] = Session::Running { thread_id, task };
        let mut finished = self.settle().await;
        (finished.remove(&session), finished)
    }

    /// Statements that have finished since the last look, once every running statement has
    /// either finished or is seen waiting for a lock, [`STABLE_LOOKS`] times in a row (a
    /// victim's rollback and the grant it allows take a moment).
    pub async fn settle(&mut self) -> std::collections::BTreeMap<usize, Done> {
        let mut finished = std::collections::BTreeMap::new();
        let mut waited_ms = 0;
        let mut stable = 0;
        loop {
            let waiting = self.lock_waits().await;
            for (index, session) in self.sessions.iter_mut().enumerate() {
                if let Session::Running { task, .. } = session {
                    if task.is_finished() {
                        let Session::Running { task, .. } = std::mem::replace(session, Session::Gone) else {
                            unreachable!()
                        };
                        let (conn, done) = task.await.unwrap();
                        *session = Session::Idle(conn);
                        finished.insert(index, done);
                    }
                }
            }
            let unsettled = self.sessions.iter().any(|session| {
                matches!(session, Session::Running { thread_id, .. } if !waiting.contains(thread_id))
            });
            stable = if unsettled { 0 } else { stable + 1 };
            let deadlock = finished.values().any(|done| *done == Done::Error(1213));
            if stable
                >= if deadlock {
                    STABLE_LOOKS_AFTER_DEADLOCK
                } else {
                    STABLE_LOOKS
                }
            {
                return finished;
            }
            assert!(
                waited_ms < SETTLE_MS_MAX,
                "statements neither finished nor waited for a lock"
            );
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
            waited_ms += POLL_MS;
        }
    }

    /// The connection ids whose transaction waits for a lock, from `SHOW ENGINE INNODB
    /// STATUS`. (`information_schema.INNODB_TRX` will not do: InnoDB refreshes it only after
    /// 100 ms without a read, so a poll keeps it stale for ever; `trx0i_s.cc`,
    /// `CACHE_MIN_IDLE_TIME_US`.)
    async fn lock_waits(&mut self) -> Vec<u32> {
        let status: Vec<(String, String, String)> =
            self.monitor.query("SHOW ENGINE INNODB STATUS").await.unwrap();
        let text = status
            .first()
            .map(|(_, _, text)| text.as_str())
            .unwrap_or_default();
        text.split("---TRANSACTION ")
            .filter(|block| block.lines().any(|line| line.starts_with("LOCK WAIT")))
            .filter_map(|block| {
                let (_, after) = block.split_once(" thread id ")?;
                after.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
            })
            .collect()
    }

    /// Whether `session` has a statement still running (blocked).
    pub fn is_running(&self, session: usize) -> bool {
        matches!(self.sessions[session], Session::Running { .. })
    }

    /// Closes every connection (the server rolls back what is open); a blocked statement's
    /// connection is killed through `admin`, so its wait ends now.
    pub async fn close(self, admin: &mut mysql_async::Conn) {
        for session in self.sessions {
            match session {
                Session::Idle(conn) => drop(conn.disconnect().await),
                Session::Running { thread_id, task } => {
                    let _ = admin.query_drop(format!("KILL {thread_id}")).await;
                    let _ = task.await;
                }
                Session::Gone => {}
            }
        }
        let _ = self.monitor.disconnect().await;
    }
}
