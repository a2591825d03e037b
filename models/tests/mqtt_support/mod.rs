//! What the MQTT tests against real software share: the brokers they run against (a real
//! mosquitto, started by the test on a free loopback port with its own configuration, and
//! jetsam's broker on tokio), and whether a missing client may skip the test.
//!
//! `JETSAM_MQTT_BROKERS` picks the brokers (`mosquitto`, `jetsam`, or both, comma separated;
//! both by default), so a test can be validated against mosquitto alone. In CI (`CI=true`,
//! or `JETSAM_REQUIRE_MQTT_CLIENTS` set) a missing mosquitto or paho-mqtt fails the test;
//! elsewhere the test says SKIPPED and passes.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long a broker may take to accept connections once started.
const STARTUP_MS_MAX: u64 = 5_000;
/// How many free ports to try when another process takes the one mosquitto was given.
const START_ATTEMPTS_MAX: usize = 5;

/// Whether a missing client or broker fails the test instead of skipping it.
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var_os("JETSAM_REQUIRE_MQTT_CLIENTS").is_some()
}

/// Debian installs the broker in /usr/sbin, which an ordinary user's PATH may lack.
pub fn mosquitto_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("mosquitto"))
        .find(|candidate| candidate.is_file())
}

/// Whether a command-line tool (`mosquitto_pub`, `python3`) runs at all.
pub fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The brokers a test runs against: `JETSAM_MQTT_BROKERS`'s, or both.
pub fn chosen() -> Vec<Target> {
    let chosen = std::env::var("JETSAM_MQTT_BROKERS").unwrap_or_else(|_| "mosquitto,jetsam".into());
    let mut targets = Vec::new();
    for name in chosen.split(',').map(str::trim).filter(|name| !name.is_empty()) {
        match name {
            "mosquitto" => targets.push(Target::Mosquitto),
            "jetsam" => targets.push(Target::Jetsam),
            other => panic!("JETSAM_MQTT_BROKERS: unknown broker {other:?} (mosquitto, jetsam)"),
        }
    }
    targets
}

/// The chosen brokers that can run here; mosquitto is dropped, with a printed reason, when
/// it is not installed (a failure instead when `required()`).
pub fn available(why_mosquitto: &str) -> Vec<Target> {
    let mut targets = chosen();
    if targets.contains(&Target::Mosquitto) && mosquitto_binary().is_none() {
        assert!(
            !required(),
            "CI needs mosquitto ({why_mosquitto}): apt-get install mosquitto mosquitto-clients, \
             as .ci/run does"
        );
        eprintln!("SKIPPED against mosquitto: it is not installed ({why_mosquitto})");
        targets.retain(|target| *target != Target::Mosquitto);
    }
    targets
}

/// A broker to run a test against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// Debian's mosquitto (2.0.11 in bookworm), the reference.
    Mosquitto,
    /// jetsam's MQTT broker, `models::mqtt::real::run_on`.
    Jetsam,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Mosquitto => "mosquitto",
            Target::Jetsam => "jetsam",
        }
    }

    /// A fresh broker of this kind, with nothing retained and no sessions.
    pub fn start(self) -> Broker {
        match self {
            Target::Mosquitto => Broker::Mosquitto(Mosquitto::start()),
            Target::Jetsam => Broker::Jetsam(Jetsam::start()),
        }
    }
}

/// A running broker, stopped when dropped.
pub enum Broker {
    Mosquitto(Mosquitto),
    Jetsam(Jetsam),
}

impl Broker {
    pub fn address(&self) -> SocketAddr {
        match self {
            Broker::Mosquitto(broker) => broker.address,
            Broker::Jetsam(broker) => broker.address,
        }
    }

    /// What the broker logged, when it logs anywhere a test can read (mosquitto's stderr).
    pub fn log(&self) -> String {
        match self {
            Broker::Mosquitto(broker) => std::fs::read_to_string(broker.dir.join("log")).unwrap_or_default(),
            Broker::Jetsam(_) => String::new(),
        }
    }
}

/// A mosquitto process of the test's own: a free loopback port, its own configuration file
/// (anonymous clients, no persistence), killed and its directory removed when dropped. A
/// system service Debian may have started on 1883 is never used.
pub struct Mosquitto {
    pub address: SocketAddr,
    child: Child,
    dir: PathBuf,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let binary = mosquitto_binary().expect("mosquitto is installed");
        let mut logs = String::new();
        for _ in 0..START_ATTEMPTS_MAX {
            let serial = STARTED.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("jetsam-mosquitto-{}-{serial}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let port = free_port();
            let config = dir.join("mosquitto.conf");
            std::fs::write(
                &config,
                format!(
                    "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                     log_dest stderr\nlog_type all\n"
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.join("log")).unwrap();
            let child = Command::new(&binary)
                .arg("-c")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("mosquitto starts");
            let mut broker = Mosquitto {
                address: SocketAddr::from(([127, 0, 0, 1], port)),
                child,
                dir,
            };
            if broker.wait_until_listening() {
                return broker;
            }
            logs.push_str(&std::fs::read_to_string(broker.dir.join("log")).unwrap_or_default());
        }
        panic!("mosquitto did not start in {START_ATTEMPTS_MAX} attempts:\n{logs}");
    }

    /// Whether it is listening before `STARTUP_MS_MAX`: mosquitto logs "running" once every
    /// listener is bound, and exits when its port is taken. (Connecting to the port would not
    /// do: another broker may have been given the same free port and bound it first.)
    fn wait_until_listening(&mut self) -> bool {
        let mut waited_ms = 0;
        while waited_ms < STARTUP_MS_MAX {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            if log.contains(" running") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
            waited_ms += 10;
        }
        false
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nothing listens on now (the kernel's pick for port 0).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// jetsam's broker on its own thread and runtime, stopped when dropped.
pub struct Jetsam {
    pub address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Jetsam {
    /// With mosquitto's defaults (`BrokerConfig::default()`), as the mosquitto above runs.
    pub fn start() -> Jetsam {
        Jetsam::start_with(models::mqtt::BrokerConfig::default())
    }

    pub fn start_with(config: models::mqtt::BrokerConfig) -> Jetsam {
        // Bound here, on a free port, so the port is known before the broker runs.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // A test outside any simulation: the broker runs on its own thread, as a real
        // server beside its clients (clippy.toml bans threads for simulations).
        #[allow(clippy::disallowed_methods)]
        let thread = std::thread::spawn(move || {
            let served = models::server::block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                models::mqtt::real::run_on(listener, config, async move {
                    let _ = stopped.await;
                })
                .await
            });
            if let Err(error) = served {
                panic!("jetsam's MQTT broker failed: {error:?}");
            }
        });
        Jetsam {
            address,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Jetsam {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
