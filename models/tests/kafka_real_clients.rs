//! Real Kafka clients against the real Kafka server (issue 10): kafka-python and
//! confluent-kafka (librdkafka) create topics, produce with acks=all and idempotence, and
//! read every record back, through `tests/kafka_clients/produce_consume.py`; then the server
//! restarts on the same log directory and new producers of both clients append to what is
//! there.
//!
//! Needs `python3` with `kafka-python` and `confluent-kafka` (`.ci/run` installs them). In CI
//! (`CI=true`, or `JETSAM_REQUIRE_KAFKA_CLIENTS` set) their absence fails the test;
//! elsewhere it says SKIPPED and passes.

use models::kafka::real::{run_on, KafkaServer};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The longest the clients' script may run (it bounds each of its own waits at 30 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var_os("JETSAM_REQUIRE_KAFKA_CLIENTS").is_some()
}

/// Whether python3 can import both clients.
fn clients_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import kafka, confluent_kafka"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A running server: a thread with its own runtime, stopped when dropped.
struct Server {
    address: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(log_dirs: &Path) -> Server {
        // Bound here, on a free port, so the port is known before the server runs.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let server = KafkaServer {
            listen_address: address,
            advertised_address: None,
            log_dirs: log_dirs.to_path_buf(),
            min_insync_replicas: 1,
            num_partitions: 1,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // A test outside any simulation: the server runs on its own thread, as a real
        // server beside its clients (clippy.toml bans threads for simulations).
        #[allow(clippy::disallowed_methods)]
        let thread = std::thread::spawn(move || {
            let served = models::server::block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                run_on(server, listener, async move {
                    let _ = stopped.await;
                })
                .await
            });
            if let Err(error) = served {
                panic!("the Kafka server failed: {error:?}");
            }
        });
        Server {
            address,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs the script to its end or kills it at `SCRIPT_TIMEOUT`; its output and whether it
/// succeeded.
fn run_script(script: &Path, bootstrap: &str, phase: &str) -> (bool, String) {
    let mut child = Command::new("python3")
        .arg(script)
        .arg(bootstrap)
        .arg(phase)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut waited = Duration::ZERO;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if waited >= SCRIPT_TIMEOUT {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
        waited += Duration::from_millis(100);
    };
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    match status {
        Some(status) => (status.success(), text),
        None => (false, format!("{text}\nkilled after {SCRIPT_TIMEOUT:?}")),
    }
}

#[test]
fn kafka_python_and_confluent_kafka_create_produce_and_read_back() {
    if !clients_installed() {
        assert!(
            !required(),
            "CI needs python3 with kafka-python and confluent-kafka \
             (pip install kafka-python==3.0.12 confluent-kafka==2.16.1, as .ci/run does)"
        );
        eprintln!("SKIPPED: python3 lacks kafka-python or confluent-kafka (CI installs them)");
        return;
    }
    let log_dirs = std::env::temp_dir().join(format!("jetsam-kafka-real-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&log_dirs);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kafka_clients/produce_consume.py");
    for phase in ["first", "after-restart"] {
        let server = Server::start(&log_dirs);
        let (ok, output) = run_script(&script, &server.address.to_string(), phase);
        drop(server);
        eprintln!("{phase}:\n{output}");
        if !ok {
            let _ = std::fs::remove_dir_all(&log_dirs);
        }
        assert!(ok, "the real clients failed ({phase}):\n{output}");
        assert!(output.contains("\nOK"), "{output}");
    }
    let _ = std::fs::remove_dir_all(&log_dirs);
}
