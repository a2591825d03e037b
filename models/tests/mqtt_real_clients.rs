//! Real MQTT clients against jetsam's broker, and against a real mosquitto to show that the
//! tests themselves are right: paho-mqtt from PyPI (QoS 0/1/2, a persistent session resumed
//! with its queued messages, retained messages, the will of a killed client) through
//! `tests/mqtt_clients/paho_flows.py`, and Debian's `mosquitto_pub`/`mosquitto_sub`.
//!
//! Each test runs against every broker `mqtt_support::available` gives (`JETSAM_MQTT_BROKERS`
//! picks them: `mosquitto`, `jetsam` or both, the default), each on a fresh broker.
//!
//! Needs `python3` with `paho-mqtt` and Debian's `mosquitto` and `mosquitto-clients`
//! (`.ci/run` installs them). In CI (`CI=true`, or `JETSAM_REQUIRE_MQTT_CLIENTS` set) their
//! absence fails the test; elsewhere it says SKIPPED and passes.

mod mqtt_support;

use mqtt_support::{Broker, Target};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The longest a client process may run (the script bounds each of its own waits at 10 s).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long mosquitto_sub may wait for its SUBACK or its message.
const LINE_TIMEOUT: Duration = Duration::from_secs(10);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mqtt_clients/paho_flows.py")
}

/// The brokers to run paho-mqtt against, or none (with a printed reason) when paho-mqtt
/// is missing outside CI.
fn paho_targets() -> Vec<Target> {
    if !mqtt_support::runs("python3", &["-c", "import paho.mqtt.client"]) {
        assert!(
            !mqtt_support::required(),
            "CI needs python3 with paho-mqtt (pip install paho-mqtt==2.2.0, as .ci/run does)"
        );
        eprintln!("SKIPPED: python3 lacks paho-mqtt (CI installs it)");
        return Vec::new();
    }
    mqtt_support::available("the reference the paho tests are validated against")
}

/// The brokers to run mosquitto_pub/mosquitto_sub against, or none when they are missing
/// outside CI.
fn cli_targets() -> Vec<Target> {
    // `--help` exits with 1; whether the program ran at all is the question.
    let installed = ["mosquitto_pub", "mosquitto_sub"]
        .iter()
        .all(|program| Command::new(program).arg("--help").output().is_ok());
    if !installed {
        assert!(
            !mqtt_support::required(),
            "CI needs mosquitto_pub and mosquitto_sub (apt-get install mosquitto-clients, \
             as .ci/run does)"
        );
        eprintln!("SKIPPED: mosquitto_pub/mosquitto_sub are not installed (CI installs them)");
        return Vec::new();
    }
    mqtt_support::available("the reference the mosquitto_pub/sub tests are validated against")
}

/// Runs `check` against a fresh broker of each target; fails naming every target whose
/// run failed, with its output.
fn against_each(targets: &[Target], check: impl Fn(&Broker) -> Result<String, String>) {
    let mut failures = Vec::new();
    for target in targets {
        let broker = target.start();
        match check(&broker) {
            Ok(output) => eprintln!("{}: passed\n{output}", target.name()),
            Err(output) => failures.push(format!("{}: FAILED\n{output}\n{}", target.name(), broker.log())),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Runs a command to its end or kills it at `CLIENT_TIMEOUT`; its output, and whether it
/// exited with success.
fn run(command: &mut Command) -> (bool, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the client starts");
    let status = wait_bounded(&mut child, CLIENT_TIMEOUT);
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    match status {
        Some(status) => (status.success(), text),
        None => (false, format!("{text}\nkilled after {CLIENT_TIMEOUT:?}")),
    }
}

/// Waits for a child at most `timeout`, killing it then; its status if it exited itself.
fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let mut waited = Duration::ZERO;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if waited >= timeout {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
        waited += Duration::from_millis(50);
    }
}

fn paho(phase: &str) -> impl Fn(&Broker) -> Result<String, String> + '_ {
    move |broker| {
        let address = broker.address();
        let (ok, output) = run(Command::new("python3")
            .arg(script())
            .arg(address.ip().to_string())
            .arg(address.port().to_string())
            .arg(phase));
        if ok && output.contains("\nOK") {
            Ok(output)
        } else {
            Err(output)
        }
    }
}

#[test]
fn paho_publishes_and_receives_at_qos_0_1_and_2() {
    against_each(&paho_targets(), paho("qos"));
}

#[test]
fn paho_resumes_a_persistent_session_with_what_was_queued() {
    against_each(&paho_targets(), paho("session"));
}

#[test]
fn paho_gets_retained_messages_and_clears_them() {
    against_each(&paho_targets(), paho("retained"));
}

#[test]
fn paho_gets_the_will_of_a_killed_client() {
    against_each(&paho_targets(), paho("will"));
}

/// A running mosquitto_sub, its output lines on a channel (read by a thread of its own, so
/// every wait for a line is bounded).
struct Subscriber {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Subscriber {
    /// `mosquitto_sub -d` with `args`, once its SUBACK has arrived.
    fn start(broker: &Broker, args: &[&str]) -> Result<Subscriber, String> {
        let address = broker.address();
        // Line-buffered through coreutils' stdbuf: mosquitto_sub has no flag for it, and a
        // pipe's block buffering would hold back the SUBACK line the test waits for.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args([
                "-h",
                &address.ip().to_string(),
                "-p",
                &address.port().to_string(),
                "-d",
            ])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub starts");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        // A test outside any simulation: a blocking reader beside the test's own waits.
        #[allow(clippy::disallowed_methods)]
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut subscriber = Subscriber {
            child,
            lines,
            seen: Vec::new(),
        };
        subscriber.wait_for(|line| line.contains("received SUBACK"))?;
        Ok(subscriber)
    }

    /// The first line (from now) that `wanted` accepts, within `LINE_TIMEOUT`.
    fn wait_for(&mut self, wanted: impl Fn(&str) -> bool) -> Result<String, String> {
        loop {
            match self.lines.recv_timeout(LINE_TIMEOUT) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return Ok(line);
                    }
                }
                Err(_) => {
                    return Err(format!(
                        "mosquitto_sub: no such line within {LINE_TIMEOUT:?}; it said:\n{}",
                        self.seen.join("\n")
                    ))
                }
            }
        }
    }

    /// Waits for it to exit by itself (`-C` reached); its output.
    fn finish(mut self) -> Result<String, String> {
        let status = wait_bounded(&mut self.child, LINE_TIMEOUT);
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(line);
        }
        let output = self.seen.join("\n");
        match status {
            Some(status) if status.success() => Ok(output),
            _ => Err(format!(
                "mosquitto_sub did not exit by itself ({status:?}):\n{output}"
            )),
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mosquitto_pub` with `args`; its debug output, if it succeeded.
fn mosquitto_pub(broker: &Broker, args: &[&str]) -> Result<String, String> {
    let address = broker.address();
    let (ok, output) = run(Command::new("mosquitto_pub")
        .args([
            "-h",
            &address.ip().to_string(),
            "-p",
            &address.port().to_string(),
            "-d",
        ])
        .args(args));
    if ok {
        Ok(output)
    } else {
        Err(format!("mosquitto_pub {args:?} failed:\n{output}"))
    }
}

/// What `-F` makes mosquitto_sub print for each message: topic, QoS, RETAIN and payload.
const MESSAGE_FORMAT: &str = "MESSAGE %t q%q r%r %p";

#[test]
fn mosquitto_sub_gets_what_mosquitto_pub_sent_at_qos_2() {
    against_each(&cli_targets(), |broker| {
        let topic = "jetsam/cli/qos2";
        let subscriber =
            Subscriber::start(broker, &["-t", topic, "-q", "2", "-C", "1", "-F", MESSAGE_FORMAT])?;
        let published = mosquitto_pub(broker, &["-t", topic, "-q", "2", "-m", "exactly once"])?;
        // The publisher's side of the QoS 2 handshake, as its debug output tells it.
        for step in ["received PUBREC", "received PUBCOMP"] {
            if !published.contains(step) {
                return Err(format!("mosquitto_pub never {step}:\n{published}"));
            }
        }
        let output = subscriber.finish()?;
        let messages: Vec<&str> = output.lines().filter(|l| l.starts_with("MESSAGE ")).collect();
        if messages != [format!("MESSAGE {topic} q2 r0 exactly once")] {
            return Err(format!("mosquitto_sub got {messages:?}:\n{output}"));
        }
        Ok(format!("{published}\n{output}"))
    });
}

#[test]
fn mosquitto_pub_retained_message_reaches_a_later_mosquitto_sub() {
    against_each(&cli_targets(), |broker| {
        let topic = "jetsam/cli/retained";
        let published = mosquitto_pub(broker, &["-t", topic, "-q", "1", "-r", "-m", "kept"])?;
        let later = Subscriber::start(broker, &["-t", topic, "-q", "1", "-C", "1", "-F", MESSAGE_FORMAT])?;
        let output = later.finish()?;
        let messages: Vec<&str> = output.lines().filter(|l| l.starts_with("MESSAGE ")).collect();
        if messages != [format!("MESSAGE {topic} q1 r1 kept")] {
            return Err(format!("mosquitto_sub got {messages:?}:\n{output}"));
        }
        // An empty retained message (-n) clears it: a new subscriber gets nothing (-W 1
        // ends it after a second, an exit status of its own).
        mosquitto_pub(broker, &["-t", topic, "-q", "1", "-r", "-n"])?;
        let mut after = Subscriber::start(broker, &["-t", topic, "-W", "1", "-F", MESSAGE_FORMAT])?;
        let status = wait_bounded(&mut after.child, LINE_TIMEOUT);
        while let Ok(line) = after.lines.recv_timeout(Duration::from_millis(200)) {
            after.seen.push(line);
        }
        if status.is_none() || after.seen.iter().any(|l| l.starts_with("MESSAGE ")) {
            return Err(format!(
                "after clearing, mosquitto_sub said:\n{}",
                after.seen.join("\n")
            ));
        }
        Ok(format!("{published}\n{output}"))
    });
}

/// mosquitto_sub with a persistent session (-c, a client id) subscribes and leaves (-E);
/// what mosquitto_pub sends at QoS 2 meanwhile is queued and reaches it when it is back.
#[test]
fn mosquitto_sub_persistent_session_gets_what_was_sent_while_away() {
    against_each(&cli_targets(), |broker| {
        let topic = "jetsam/cli/away";
        let session = ["-c", "-i", "jetsam-cli-away", "-q", "2", "-t", topic];
        Subscriber::start(broker, &[&session[..], &["-E"]].concat())?.finish()?;
        let published = mosquitto_pub(broker, &["-t", topic, "-q", "2", "-m", "queued"])?;
        let back = Subscriber::start(
            broker,
            &[&session[..], &["-C", "1", "-F", MESSAGE_FORMAT]].concat(),
        )?;
        let output = back.finish()?;
        let messages: Vec<&str> = output.lines().filter(|l| l.starts_with("MESSAGE ")).collect();
        if messages != [format!("MESSAGE {topic} q2 r0 queued")] {
            return Err(format!("mosquitto_sub got {messages:?}:\n{output}"));
        }
        Ok(format!("{published}\n{output}"))
    });
}
