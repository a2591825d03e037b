//! jetsam's MQTT broker against a real mosquitto, byte for byte: every case sends the same
//! raw packets over TCP to a fresh broker of each kind and compares what comes back, step by
//! step, "closed, no answer" included.
//!
//! A case is one line: its name, the packets one connection sends (each a step), and what
//! mosquitto 2.0.11 (Debian's) answers to each step, as text (`CONNACK sp=0 rc=0x00 |
//! closed`): reference §3.6, with the places where mosquitto was seen to do otherwise than
//! §3.6 says commented at their cases. Scenarios over several named connections (sessions,
//! takeover, wills) list their steps with the answer each gets. Every broker must give the
//! table's answer, so the table is checked against mosquitto too, and jetsam is still
//! checked when mosquitto is missing (outside CI). Where jetsam knowingly answers otherwise
//! (as the spec allows or requires), the case pins jetsam's answer and says why.
//!
//! What legitimately differs is normalised away: the packet ids a broker picks for what it
//! sends (shown as `#1`, `#2` in order of first appearance, so a resend must reuse its id),
//! MQTT 5 CONNACK properties, and, within one step on one connection, whether the answer to
//! the client's own packet (SUBACK, PUBACK, ...) comes before or after what the broker
//! forwards to it.

mod mqtt_support;

use mqtt_support::{Broker, Target};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A step's answers are complete when no connection received anything for this long.
const QUIET_MS: u64 = 300;
/// The longest a step may keep receiving (a broker that never stops talking).
const STEP_MS_MAX: u64 = 3_000;
const POLL_MS: u64 = 5;
/// Runs (a case against one broker) go on this many threads at once, each on its own broker.
const WORKERS: usize = 6;

// ---------------------------------------------------------------------------------------
// The tables

/// One-connection cases: `case!(name, [packets...], "answer to 1st | answer to 2nd | ...")`.
#[rustfmt::skip] // one case per line, however long
fn cases() -> Vec<Case> {
    vec![
        // Connecting (§3.6: forbidden input closes with no reply).
        case!("connect: accepted", [connect("c")], "CONNACK sp=0 rc=0x00"),
        case!("connect: first packet not CONNECT closes", [pingreq()], "closed"),
        case!("connect: second CONNECT closes", [connect("c"), connect("c")], "CONNACK sp=0 rc=0x00 | closed"),
        case!("connect: reserved flag bit closes", [connect("c").reserved_flag()], "closed"),
        case!("connect: password without username closes", [connect("c").password("p")], "closed"),
        case!("connect: username and password accepted", [connect("c").user("u").password("p")], "CONNACK sp=0 rc=0x00"),
        case!("connect: will QoS 3 closes", [connect("c").will("w", "gone", 3)], "closed"),
        case!("connect: wrong protocol name closes, no CONNACK", [connect("c").protocol("MQTX")], "closed"),
        case!("connect: wrong protocol level gets 0x01", [connect("c").level(6)], "CONNACK sp=0 rc=0x01, closed"),
        case!("connect: MQTT 3.1 (MQIsdp, level 3) accepted", [connect("c").protocol("MQIsdp").level(3)], "CONNACK sp=0 rc=0x00"),
        case!("connect: empty client id, clean session 0, gets 0x02", [connect("").persistent()], "CONNACK sp=0 rc=0x02, closed"),
        case!("connect: empty client id, clean session 1, accepted", [connect("")], "CONNACK sp=0 rc=0x00"),
        case!("connect: MQTT 5 gets a v5 CONNACK", [connect("c").level(5)], "CONNACK(v5) sp=0 rc=0x00"),
        case!("connect: remaining length over 4 bytes closes", [raw("10 ff ff ff ff 01")], "closed"),
        // Malformed or forbidden packets after CONNECT.
        case!("publish: QoS 3 closes", [connect("c"), publish("a", "x").header_flags(0b0110)], "CONNACK sp=0 rc=0x00 | closed"),
        case!("publish: + in topic closes", [connect("c"), publish("a/+", "x")], "CONNACK sp=0 rc=0x00 | closed"),
        case!("publish: # in topic closes", [connect("c"), publish("a/#", "x")], "CONNACK sp=0 rc=0x00 | closed"),
        case!("publish: U+0000 in topic closes", [connect("c"), publish("a\0b", "x")], "CONNACK sp=0 rc=0x00 | closed"),
        case!("publish: empty topic closes", [connect("c"), publish("", "x")], "CONNACK sp=0 rc=0x00 | closed"),
        case!("publish: remaining length over 4 bytes closes", [connect("c"), raw("30 ff ff ff ff 01")], "CONNACK sp=0 rc=0x00 | closed"),
        case!("subscribe: no filter closes", [connect("c"), subscribe(1, &[])], "CONNACK sp=0 rc=0x00 | closed"),
        case!("subscribe: requested QoS 3 closes", [connect("c"), subscribe(1, &[("a", 3)])], "CONNACK sp=0 rc=0x00 | closed"),
        case!("subscribe: reserved header flags closes", [connect("c"), subscribe(1, &[("a", 0)]).header_flags(0)], "CONNACK sp=0 rc=0x00 | closed"),
        case!("subscribe: invalid filter a/#/b closes", [connect("c"), subscribe(1, &[("a/#/b", 0)])], "CONNACK sp=0 rc=0x00 | closed"),
        case!("publish: QoS 1 with packet id 0 closes", [connect("c"), publish_qos(1, 0, "a", "x")], "CONNACK sp=0 rc=0x00 | closed"),
        case!("pubrel: reserved header flags close", [connect("c"), publish_qos(2, 9, "a", "x"), pubrel(9).header_flags(0)], "CONNACK sp=0 rc=0x00 | PUBREC 9 | closed"),
        case!("unsubscribe: no filter closes", [connect("c"), unsubscribe(1, &[])], "CONNACK sp=0 rc=0x00 | closed"),
        case!("disconnect: reserved header flags close", [connect("c"), disconnect().header_flags(1)], "CONNACK sp=0 rc=0x00 | closed"),
        // [MQTT-2.2.2-2]: invalid fixed header flags MUST close; mosquitto 2.0.11 does not look
        // at PINGREQ's.
        case!("pingreq: reserved header flags get PINGRESP from mosquitto", [connect("c"), pingreq().header_flags(0b0010)], "CONNACK sp=0 rc=0x00 | PINGRESP")
            .jetsam_answers(2, "closed", "jetsam checks every fixed header's flags, as [MQTT-2.2.2-2] says; mosquitto 2.0.11 skips PINGREQ's"),
        // MQTT 5 lets the server send DISCONNECT with a reason code before closing; mosquitto
        // does (0x81, malformed packet), jetsam closes without it.
        case!("connect: MQTT 5 malformed packet gets DISCONNECT 0x81 from mosquitto", [connect("c").level(5), raw("82 03 00 01 00")], "CONNACK(v5) sp=0 rc=0x00 | DISCONNECT 81, closed")
            .jetsam_answers(2, "closed", "MQTT 5 makes the DISCONNECT before the close optional (4.13); jetsam leaves it out"),
        case!("subscribe: granted QoS is the requested QoS", [connect("c"), subscribe(1, &[("a", 0), ("b/+", 1), ("#", 2)])], "CONNACK sp=0 rc=0x00 | SUBACK 1 [0, 1, 2]"),
        // mosquitto 2.0.11's allow_duplicate_messages defaults to false: an MQTT 3.1.1 client
        // gets one copy, at the QoS of the first subscription its topic tree walk meets (the
        // most specific; `#` last), even when a matching one has a higher QoS, against
        // [MQTT-3.3.5-1] ("respecting the maximum QoS of all the matching subscriptions").
        // With allow_duplicate_messages true (and for MQTT 5 clients) it sends one copy per
        // subscription, as jetsam does; §3.6's "one copy per matching subscription" is that.
        case!("subscribe: overlapping filters, one copy at the first match's QoS (mosquitto)", [connect("c"), subscribe(1, &[("a/#", 1), ("a/+", 0)]), publish_qos(1, 3, "a/b", "x")], "CONNACK sp=0 rc=0x00 | SUBACK 1 [1, 0] | PUBACK 3, PUBLISH a/b \"x\" q0")
            .jetsam_answers(3, "PUBACK 3, PUBLISH a/b \"x\" q1 #1, PUBLISH a/b \"x\" q0", "jetsam sends a copy per matching subscription, which [MQTT-3.3.5-1] allows; mosquitto 2.0.11 (allow_duplicate_messages false) sends one, at q0 here, which it does not"),
        case!("publish: QoS 0 with DUP=1 is delivered, without DUP", [connect("c"), subscribe(1, &[("a", 0)]), publish("a", "x").dup()], "CONNACK sp=0 rc=0x00 | SUBACK 1 [0] | PUBLISH a \"x\" q0"),
        // Flows to a subscription of the publisher's own.
        case!("qos0: delivered to self", [connect("c"), subscribe(1, &[("a/b", 2)]), publish("a/b", "x")], "CONNACK sp=0 rc=0x00 | SUBACK 1 [2] | PUBLISH a/b \"x\" q0"),
        case!("qos1: PUBACK and delivery", [connect("c"), subscribe(1, &[("a/b", 1)]), publish_qos(1, 7, "a/b", "x")], "CONNACK sp=0 rc=0x00 | SUBACK 1 [1] | PUBACK 7, PUBLISH a/b \"x\" q1 #1"),
        case!("qos1: granted QoS 0 caps delivery", [connect("c"), subscribe(1, &[("a/b", 0)]), publish_qos(1, 7, "a/b", "x")], "CONNACK sp=0 rc=0x00 | SUBACK 1 [0] | PUBACK 7, PUBLISH a/b \"x\" q0"),
        case!("qos1: same id after PUBACK is a new publication", [connect("c"), subscribe(1, &[("a/b", 1)]), publish_qos(1, 7, "a/b", "x"), publish_qos(1, 7, "a/b", "x").dup()], "CONNACK sp=0 rc=0x00 | SUBACK 1 [1] | PUBACK 7, PUBLISH a/b \"x\" q1 #1 | PUBACK 7, PUBLISH a/b \"x\" q1 #2"),
        case!("qos2: PUBREC, PUBREL, PUBCOMP, delivered after PUBREL", [connect("c"), subscribe(1, &[("a/b", 2)]), publish_qos(2, 9, "a/b", "x"), pubrel(9)], "CONNACK sp=0 rc=0x00 | SUBACK 1 [2] | PUBREC 9 | PUBCOMP 9, PUBLISH a/b \"x\" q2 #1"),
        case!("qos2: duplicate PUBLISH before PUBREL gets PUBREC again, one delivery", [connect("c"), subscribe(1, &[("a/b", 2)]), publish_qos(2, 9, "a/b", "x"), publish_qos(2, 9, "a/b", "x").dup(), pubrel(9)], "CONNACK sp=0 rc=0x00 | SUBACK 1 [2] | PUBREC 9 | PUBREC 9 | PUBCOMP 9, PUBLISH a/b \"x\" q2 #1"),
        case!("qos2: PUBREL for an unknown id still gets PUBCOMP", [connect("c"), pubrel(4)], "CONNACK sp=0 rc=0x00 | PUBCOMP 4"),
        // Retained messages.
        case!("retain: delivered with RETAIN=1 on subscribe", [connect("c"), publish("r/t", "kept").retain(), subscribe(1, &[("r/#", 1)])], "CONNACK sp=0 rc=0x00 | - | SUBACK 1 [1], PUBLISH r/t \"kept\" q0 retain"),
        case!("retain: live delivery has RETAIN=0", [connect("c"), subscribe(1, &[("r/t", 1)]), publish_qos(1, 2, "r/t", "kept").retain()], "CONNACK sp=0 rc=0x00 | SUBACK 1 [1] | PUBACK 2, PUBLISH r/t \"kept\" q1 #1"),
        case!("retain: empty payload clears", [connect("c"), publish("r/t", "kept").retain(), publish("r/t", "").retain(), subscribe(1, &[("r/t", 1)])], "CONNACK sp=0 rc=0x00 | - | - | SUBACK 1 [1]"),
        case!("retain: empty payload forwarded to current subscribers", [connect("c"), subscribe(1, &[("r/t", 0)]), publish("r/t", "").retain()], "CONNACK sp=0 rc=0x00 | SUBACK 1 [0] | PUBLISH r/t \"\" q0"),
        // Housekeeping.
        case!("ping: PINGRESP", [connect("c"), pingreq()], "CONNACK sp=0 rc=0x00 | PINGRESP"),
        case!("unsubscribe: UNSUBACK, then nothing delivered", [connect("c"), subscribe(1, &[("a/b", 0)]), unsubscribe(2, &["a/b"]), publish("a/b", "x")], "CONNACK sp=0 rc=0x00 | SUBACK 1 [0] | UNSUBACK 2 | -"),
        case!("disconnect: the broker closes", [connect("c"), disconnect()], "CONNACK sp=0 rc=0x00 | closed"),
    ]
}

/// Scenarios over named connections: each step with the answers it gets, tagged with the
/// connection they arrive on.
fn scenarios() -> Vec<Case> {
    vec![
        scenario(
            "session: resume has session present, resends the unacknowledged QoS 1 with DUP, then the queued one",
            vec![
                (send("sub", connect("s").persistent()), "sub: CONNACK sp=0 rc=0x00"),
                (send("sub", subscribe(1, &[("a/b", 1)])), "sub: SUBACK 1 [1]"),
                (send("pub", connect("p")), "pub: CONNACK sp=0 rc=0x00"),
                (send("pub", publish_qos(1, 1, "a/b", "first")), "pub: PUBACK 1, sub: PUBLISH a/b \"first\" q1 #1"),
                (close("sub"), "-"),
                (send("pub", publish_qos(1, 2, "a/b", "while away")), "pub: PUBACK 2"),
                (send("pub", publish("a/b", "qos0 while away")), "-"),
                (send("sub", connect("s").persistent()), "sub: CONNACK sp=1 rc=0x00, PUBLISH a/b \"first\" q1 dup #1, PUBLISH a/b \"while away\" q1 #2"),
                (ack("sub"), "-"),
                (close("sub"), "-"),
                (send("sub", connect("s").persistent()), "sub: CONNACK sp=1 rc=0x00"),
            ],
        ),
        scenario(
            "session: clean session discards what a persistent one kept",
            vec![
                (send("sub", connect("s").persistent()), "sub: CONNACK sp=0 rc=0x00"),
                (send("sub", subscribe(1, &[("a/b", 1)])), "sub: SUBACK 1 [1]"),
                (close("sub"), "-"),
                (send("pub", connect("p")), "pub: CONNACK sp=0 rc=0x00"),
                (send("pub", publish_qos(1, 1, "a/b", "kept")), "pub: PUBACK 1"),
                (send("sub", connect("s")), "sub: CONNACK sp=0 rc=0x00"),
                (send("pub", publish_qos(1, 2, "a/b", "unsubscribed")), "pub: PUBACK 2"),
            ],
        ),
        scenario(
            "session: QoS 2 to a subscriber, PUBREL resent after reconnect",
            vec![
                (send("sub", connect("s").persistent()), "sub: CONNACK sp=0 rc=0x00"),
                (send("sub", subscribe(1, &[("a/b", 2)])), "sub: SUBACK 1 [2]"),
                (send("pub", connect("p")), "pub: CONNACK sp=0 rc=0x00"),
                (send("pub", publish_qos(2, 1, "a/b", "x")), "pub: PUBREC 1"),
                (send("pub", pubrel(1)), "pub: PUBCOMP 1, sub: PUBLISH a/b \"x\" q2 #1"),
                (ack("sub"), "sub: PUBREL #1"),
                (close("sub"), "-"),
                (send("sub", connect("s").persistent()), "sub: CONNACK sp=1 rc=0x00, PUBREL #1"),
                (ack("sub"), "-"),
            ],
        ),
        scenario(
            "takeover: the same client id closes the old connection",
            vec![
                (send("old", connect("t")), "old: CONNACK sp=0 rc=0x00"),
                (send("new", connect("t")), "new: CONNACK sp=0 rc=0x00, old: closed"),
                (send("new", pingreq()), "new: PINGRESP"),
            ],
        ),
        scenario(
            "will: published when the connection closes without DISCONNECT",
            vec![
                (send("sub", connect("s")), "sub: CONNACK sp=0 rc=0x00"),
                (send("sub", subscribe(1, &[("w/#", 1)])), "sub: SUBACK 1 [1]"),
                (send("dying", connect("d").will("w/d", "gone", 1)), "dying: CONNACK sp=0 rc=0x00"),
                (close("dying"), "sub: PUBLISH w/d \"gone\" q1 #1"),
            ],
        ),
        scenario(
            "will: retained will is kept for later subscribers",
            vec![
                (send("dying", connect("d").will("w/d", "gone", 0).will_retain()), "dying: CONNACK sp=0 rc=0x00"),
                (close("dying"), "-"),
                (send("sub", connect("s")), "sub: CONNACK sp=0 rc=0x00"),
                (send("sub", subscribe(1, &[("w/#", 0)])), "sub: SUBACK 1 [0], PUBLISH w/d \"gone\" q0 retain"),
            ],
        ),
        scenario(
            "will: not published after DISCONNECT",
            vec![
                (send("sub", connect("s")), "sub: CONNACK sp=0 rc=0x00"),
                (send("sub", subscribe(1, &[("w/#", 1)])), "sub: SUBACK 1 [1]"),
                (send("leaving", connect("d").will("w/d", "gone", 1)), "leaving: CONNACK sp=0 rc=0x00"),
                (send("leaving", disconnect()), "leaving: closed"),
                (send("sub", pingreq()), "sub: PINGRESP"),
            ],
        ),
        scenario(
            "will: published when the broker closes for a protocol violation",
            vec![
                (send("sub", connect("s")), "sub: CONNACK sp=0 rc=0x00"),
                (send("sub", subscribe(1, &[("w/#", 0)])), "sub: SUBACK 1 [0]"),
                (send("bad", connect("b").will("w/b", "gone", 0)), "bad: CONNACK sp=0 rc=0x00"),
                (send("bad", publish("a/+", "x")), "bad: closed, sub: PUBLISH w/b \"gone\" q0"),
            ],
        ),
        // [MQTT-3.1.2-8]: the will "MUST be published when the Network Connection is
        // subsequently closed unless the Will Message has been deleted by the Server on receipt
        // of a DISCONNECT Packet", and 3.1.2.5 lists a close for a protocol error among those
        // closes. mosquitto 2.0.11 publishes it for other violations (the case above) but not
        // for a second CONNECT: its handle_connect_error path clears the will and makes the
        // session clean before closing (src/handle_connect.c: will__clear, clean_start = true).
        // jetsam's broker publishes it, as the spec says: a known divergence, pinned so that
        // any other change shows.
        scenario(
            "will: a second CONNECT discards it (mosquitto's handle_connect_error)",
            vec![
                (send("sub", connect("s")), "sub: CONNACK sp=0 rc=0x00"),
                (send("sub", subscribe(1, &[("w/#", 0)])), "sub: SUBACK 1 [0]"),
                (send("bad", connect("b").will("w/b", "gone", 0)), "bad: CONNACK sp=0 rc=0x00"),
                (send("bad", connect("b")), "bad: closed"),
            ],
        )
        .jetsam_answers(
            4,
            "bad: closed, sub: PUBLISH w/b \"gone\" q0",
            "jetsam publishes the will on every close but DISCONNECT, as [MQTT-3.1.2-8] says; \
             mosquitto 2.0.11 drops it when the close is for a second CONNECT",
        ),
        // mosquitto 2.0 checks keepalives only every 6 s (src/keepalive.c: `last_keepalive_check
        // + 5 < db.now_s`), so with keepalive 1 s the close comes 1.5 s to about 8 s after the
        // last packet (seen: 5.2 s; with keepalive 4 s, 10.8 s), not "about a second" after
        // 1.5 x keepalive as §3.6 has it.
        scenario(
            "keepalive: silence past 1.5 x keepalive closes and publishes the will",
            vec![
                (send("sub", connect("s")), "sub: CONNACK sp=0 rc=0x00"),
                (send("sub", subscribe(1, &[("w/#", 0)])), "sub: SUBACK 1 [0]"),
                (send("quiet", connect("q").keepalive(1).will("w/q", "timed out", 0)), "quiet: CONNACK sp=0 rc=0x00"),
                (wait_up_to(9_000), "quiet: closed, sub: PUBLISH w/q \"timed out\" q0"),
            ],
        ),
        scenario(
            "fan-out: overlapping subscriptions of two clients, one copy per client",
            vec![
                (send("a", connect("a")), "a: CONNACK sp=0 rc=0x00"),
                (send("a", subscribe(1, &[("f/+", 0)])), "a: SUBACK 1 [0]"),
                (send("b", connect("b")), "b: CONNACK sp=0 rc=0x00"),
                (send("b", subscribe(1, &[("f/#", 1)])), "b: SUBACK 1 [1]"),
                (send("a", publish_qos(1, 5, "f/x", "both")), "a: PUBACK 5, PUBLISH f/x \"both\" q0, b: PUBLISH f/x \"both\" q1 #1"),
            ],
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// The test

#[test]
fn jetsam_answers_raw_packets_as_mosquitto_does() {
    let targets = mqtt_support::available("the reference of the differential test");
    if targets.is_empty() {
        eprintln!("SKIPPED: no broker to run against");
        return;
    }
    let all: Vec<Case> = cases().into_iter().chain(scenarios()).collect();
    let transcripts = run_all(&all, &targets);
    let mut failures = Vec::new();
    for (case, by_target) in all.iter().zip(&transcripts) {
        let mut lines = Vec::new();
        let mut failed = false;
        for (target, got) in by_target {
            let differs = *got != case.expect_for(*target);
            failed |= differs;
            lines.push(format!(
                "  {:9} {}",
                target.name(),
                if differs { "DIFFERS" } else { "as the table says" }
            ));
        }
        if failed {
            lines.push(describe_steps(case, by_target));
            failures.push(format!("{}\n{}", case.name, lines.join("\n")));
        }
    }
    for case in &all {
        if let Some((step, answer, why)) = case.jetsam_differs {
            eprintln!(
                "known divergence, {}: step {step}, jetsam: {answer}\n  ({why})",
                case.name
            );
        }
    }
    eprintln!(
        "{} cases against {}: {} differ",
        all.len(),
        targets.iter().map(|t| t.name()).collect::<Vec<_>>().join(" and "),
        failures.len()
    );
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

/// Each step of a failing case: what it sent, what the table says, what each broker did.
fn describe_steps(case: &Case, by_target: &BTreeMap<Target, Vec<String>>) -> String {
    let mut text = String::new();
    for (index, step) in case.steps.iter().enumerate() {
        let expect = case.expect.get(index).map_or("?", String::as_str);
        text.push_str(&format!(
            "    {}. {}\n       table:     {expect}\n",
            index + 1,
            step.describe()
        ));
        for (target, got) in by_target {
            let answer = got.get(index).map_or("?", String::as_str);
            let mark = if case.expect_for(*target).get(index).map(String::as_str) == Some(answer) {
                ""
            } else {
                "   <--"
            };
            text.push_str(&format!(
                "       {:10} {answer}{mark}\n",
                format!("{}:", target.name())
            ));
        }
    }
    text
}

/// Every case against every target, each run on a fresh broker, `WORKERS` runs at a time,
/// the longest first (a run waits about `QUIET_MS` per step, more for a `WaitUpTo`).
fn run_all(cases: &[Case], targets: &[Target]) -> Vec<BTreeMap<Target, Vec<String>>> {
    let mut runs: Vec<(usize, Target)> = (0..cases.len())
        .flat_map(|index| targets.iter().map(move |target| (index, *target)))
        .collect();
    runs.sort_by_key(|(index, _)| std::cmp::Reverse(cases[*index].duration_ms()));
    let next = AtomicUsize::new(0);
    let results = Mutex::new(vec![BTreeMap::new(); cases.len()]);
    // Outside any simulation: the runs wait on real sockets, so they wait side by side.
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                while let Some((index, target)) = runs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let broker = target.start();
                    let transcript = run_case(&cases[*index], broker.address());
                    check_broker_alive(&broker, &cases[*index]);
                    results.lock().unwrap()[*index].insert(*target, transcript);
                }
            });
        }
    });
    results.into_inner().unwrap()
}

/// A broker that died during a case would look like "closed" everywhere: say so instead.
fn check_broker_alive(broker: &Broker, case: &Case) {
    assert!(
        TcpStream::connect_timeout(&broker.address(), Duration::from_secs(1)).is_ok(),
        "the broker stopped listening during {:?}\n{}",
        case.name,
        broker.log()
    );
}

// ---------------------------------------------------------------------------------------
// Cases and steps

struct Case {
    name: &'static str,
    steps: Vec<Step>,
    /// What each step gets, in the transcript's words.
    expect: Vec<String>,
    /// Where jetsam's broker knowingly answers otherwise than mosquitto: the step (from 1),
    /// jetsam's answer, and why that is acceptable.
    jetsam_differs: Option<(usize, &'static str, &'static str)>,
}

impl Case {
    /// What `target` must answer to each step.
    fn expect_for(&self, target: Target) -> Vec<String> {
        let mut expect = self.expect.clone();
        if let (Target::Jetsam, Some((step, answer, _))) = (target, self.jetsam_differs) {
            expect[step - 1] = answer.to_string();
        }
        expect
    }

    /// About how long a run takes when the broker answers at once.
    fn duration_ms(&self) -> u64 {
        let waits: u64 = self
            .steps
            .iter()
            .map(|step| match step {
                Step::WaitUpTo(ms) => *ms,
                _ => 0,
            })
            .sum();
        waits + QUIET_MS * self.steps.len() as u64
    }

    /// Records a known divergence of jetsam's broker from mosquitto at `step` (from 1).
    fn jetsam_answers(mut self, step: usize, answer: &'static str, why: &'static str) -> Case {
        assert!(
            step >= 1 && step <= self.steps.len(),
            "{}: no step {step}",
            self.name
        );
        self.jetsam_differs = Some((step, answer, why));
        self
    }
}

macro_rules! case {
    ($name:expr, [$($packet:expr),* $(,)?], $expect:expr) => {
        Case {
            name: $name,
            steps: vec![$(send(ONLY, $packet)),*],
            expect: $expect.split(" | ").map(String::from).collect(),
            jetsam_differs: None,
        }
    };
}
use case;

/// The connection of a one-connection case, whose answers are not tagged with its name.
const ONLY: &str = "c";

fn scenario(name: &'static str, steps: Vec<(Step, &'static str)>) -> Case {
    let (steps, expect) = steps
        .into_iter()
        .map(|(step, expect)| (step, expect.to_string()))
        .unzip();
    Case {
        name,
        steps,
        expect,
        jetsam_differs: None,
    }
}

enum Step {
    /// Sends a packet, opening the connection first when it is not open (never opened, or
    /// closed by the test). A connection the broker closed stays closed.
    Send(&'static str, Packet),
    /// Closes the socket without DISCONNECT, as a crashed client's kernel would.
    Close(&'static str),
    /// Acknowledges what the broker sent on the connection since the last `Ack`: PUBACK for
    /// a QoS 1 PUBLISH, PUBREC for a QoS 2 one, PUBCOMP for a PUBREL, with the broker's ids.
    Ack(&'static str),
    /// Sends nothing until something arrives or this many milliseconds pass.
    WaitUpTo(u64),
}

fn send(connection: &'static str, packet: impl Into<Packet>) -> Step {
    Step::Send(connection, packet.into())
}

fn close(connection: &'static str) -> Step {
    Step::Close(connection)
}

fn ack(connection: &'static str) -> Step {
    Step::Ack(connection)
}

fn wait_up_to(ms: u64) -> Step {
    Step::WaitUpTo(ms)
}

impl Step {
    fn describe(&self) -> String {
        match self {
            Step::Send(connection, packet) => format!("{connection} sends {}", hex(&packet.0)),
            Step::Close(connection) => format!("{connection} closes its socket"),
            Step::Ack(connection) => format!("{connection} acknowledges"),
            Step::WaitUpTo(ms) => format!("wait up to {ms} ms"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Packets, from readable parts (MQTT 3.1.1 §2-3)

/// One packet's bytes: fixed header, remaining length, the rest.
struct Packet(Vec<u8>);

impl Packet {
    fn new(kind: u8, flags: u8, body: &[u8]) -> Packet {
        let mut bytes = vec![kind << 4 | flags];
        let mut length = body.len();
        loop {
            let mut byte = (length % 128) as u8;
            length /= 128;
            if length > 0 {
                byte |= 0x80;
            }
            bytes.push(byte);
            if length == 0 {
                break;
            }
        }
        bytes.extend_from_slice(body);
        Packet(bytes)
    }

    /// Replaces the fixed header's four flag bits, for packets whose flags are wrong.
    fn header_flags(mut self, flags: u8) -> Packet {
        self.0[0] = self.0[0] & 0xf0 | flags;
        self
    }

    fn retain(mut self) -> Packet {
        self.0[0] |= 0b0001;
        self
    }

    fn dup(mut self) -> Packet {
        self.0[0] |= 0b1000;
        self
    }
}

fn string(text: &str) -> Vec<u8> {
    let mut bytes = u16::try_from(text.len()).unwrap().to_be_bytes().to_vec();
    bytes.extend_from_slice(text.as_bytes());
    bytes
}

/// Bytes written as hex pairs, spaces ignored: `raw("10 ff ff ff ff 01")`.
fn raw(hex_text: &str) -> Packet {
    let digits: Vec<u8> = hex_text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    Packet(
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect(),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A CONNECT, MQTT 3.1.1 with CleanSession=1 and a 60 s keepalive unless told otherwise.
struct Connect {
    protocol: &'static str,
    level: u8,
    client_id: &'static str,
    clean: bool,
    keepalive_s: u16,
    will: Option<(&'static str, &'static str, u8)>,
    will_retain: bool,
    username: Option<&'static str>,
    password: Option<&'static str>,
    reserved_flag: bool,
}

fn connect(client_id: &'static str) -> Connect {
    Connect {
        protocol: "MQTT",
        level: 4,
        client_id,
        clean: true,
        keepalive_s: 60,
        will: None,
        will_retain: false,
        username: None,
        password: None,
        reserved_flag: false,
    }
}

impl Connect {
    /// CleanSession=0.
    fn persistent(mut self) -> Connect {
        self.clean = false;
        self
    }

    fn protocol(mut self, name: &'static str) -> Connect {
        self.protocol = name;
        self
    }

    fn level(mut self, level: u8) -> Connect {
        self.level = level;
        self
    }

    fn keepalive(mut self, seconds: u16) -> Connect {
        self.keepalive_s = seconds;
        self
    }

    fn will(mut self, topic: &'static str, payload: &'static str, qos: u8) -> Connect {
        self.will = Some((topic, payload, qos));
        self
    }

    fn will_retain(mut self) -> Connect {
        self.will_retain = true;
        self
    }

    fn user(mut self, name: &'static str) -> Connect {
        self.username = Some(name);
        self
    }

    /// Sets the password flag, with or without a username.
    fn password(mut self, password: &'static str) -> Connect {
        self.password = Some(password);
        self
    }

    /// Bit 0 of the connect flags, which must be 0 [MQTT-3.1.2-3].
    fn reserved_flag(mut self) -> Connect {
        self.reserved_flag = true;
        self
    }
}

impl From<Connect> for Packet {
    fn from(connect: Connect) -> Packet {
        let v5 = connect.level == 5;
        let mut flags = u8::from(connect.reserved_flag);
        flags |= u8::from(connect.clean) << 1;
        if let Some((_, _, qos)) = connect.will {
            flags |= 0b100 | qos << 3;
        }
        flags |= u8::from(connect.will_retain) << 5;
        flags |= u8::from(connect.password.is_some()) << 6;
        flags |= u8::from(connect.username.is_some()) << 7;
        let mut body = string(connect.protocol);
        body.push(connect.level);
        body.push(flags);
        body.extend_from_slice(&connect.keepalive_s.to_be_bytes());
        if v5 {
            body.push(0); // no properties
        }
        body.extend(string(connect.client_id));
        if let Some((topic, payload, _)) = connect.will {
            if v5 {
                body.push(0); // no will properties
            }
            body.extend(string(topic));
            body.extend(string(payload));
        }
        for field in [connect.username, connect.password].into_iter().flatten() {
            body.extend(string(field));
        }
        Packet::new(1, 0, &body)
    }
}

/// A QoS 0 PUBLISH.
fn publish(topic: &str, payload: &str) -> Packet {
    let mut body = string(topic);
    body.extend_from_slice(payload.as_bytes());
    Packet::new(3, 0, &body)
}

fn publish_qos(qos: u8, id: u16, topic: &str, payload: &str) -> Packet {
    let mut body = string(topic);
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(payload.as_bytes());
    Packet::new(3, qos << 1, &body)
}

fn pubrel(id: u16) -> Packet {
    Packet::new(6, 0b0010, &id.to_be_bytes())
}

fn subscribe(id: u16, filters: &[(&str, u8)]) -> Packet {
    let mut body = id.to_be_bytes().to_vec();
    for (filter, qos) in filters {
        body.extend(string(filter));
        body.push(*qos);
    }
    Packet::new(8, 0b0010, &body)
}

fn unsubscribe(id: u16, filters: &[&str]) -> Packet {
    let mut body = id.to_be_bytes().to_vec();
    for filter in filters {
        body.extend(string(filter));
    }
    Packet::new(10, 0b0010, &body)
}

fn pingreq() -> Packet {
    Packet::new(12, 0, &[])
}

fn disconnect() -> Packet {
    Packet::new(14, 0, &[])
}

// ---------------------------------------------------------------------------------------
// Running a case

/// One connection of a case: its socket while open, what arrived and is not yet a whole
/// packet, and what the broker sent that `Ack` has not answered.
struct Connection {
    name: &'static str,
    stream: Option<TcpStream>,
    closed_by_broker: bool,
    received: Vec<u8>,
    to_acknowledge: Vec<Packet>,
    /// Whether CONNACK came first, as [MQTT-3.2.0-1] requires.
    answered: bool,
}

/// Runs a case's steps against a broker; what each step got, as text.
fn run_case(case: &Case, address: SocketAddr) -> Vec<String> {
    let mut connections: Vec<Connection> = Vec::new();
    // The broker's packet ids, renamed #1, #2, ... in order of first appearance.
    let mut ids = BTreeMap::new();
    let mut transcript = Vec::new();
    for step in &case.steps {
        let mut events: Vec<(&'static str, String)> = Vec::new();
        match step {
            Step::Send(name, packet) => {
                let connection = connection(&mut connections, name);
                if connection.closed_by_broker {
                    events.push((name, "not sent: closed".into()));
                } else {
                    if connection.stream.is_none() {
                        connection.open(address);
                    }
                    connection.write(&packet.0);
                }
            }
            Step::Close(name) => connection(&mut connections, name).stream = None,
            Step::Ack(name) => {
                let connection = connection(&mut connections, name);
                let replies: Vec<Packet> = std::mem::take(&mut connection.to_acknowledge);
                for reply in replies {
                    connection.write(&reply.0);
                }
            }
            Step::WaitUpTo(ms) => receive_first(&mut connections, *ms),
        }
        receive_until_quiet(&mut connections, QUIET_MS, STEP_MS_MAX);
        // Connections in name order: arrivals on different sockets have no order to compare.
        connections.sort_by_key(|connection| connection.name);
        for connection in &mut connections {
            for text in connection.take_events(&mut ids) {
                events.push((connection.name, text));
            }
        }
        transcript.push(render_step(
            &events,
            connections.len() == 1 && connections[0].name == ONLY,
        ));
    }
    transcript
}

fn render_step(events: &[(&'static str, String)], untagged: bool) -> String {
    if events.is_empty() {
        return "-".into();
    }
    let mut parts = Vec::new();
    let mut last = None;
    for (name, text) in events {
        if untagged || last == Some(*name) {
            parts.push(text.clone());
        } else {
            parts.push(format!("{name}: {text}"));
        }
        last = Some(*name);
    }
    parts.join(", ")
}

fn connection<'a>(connections: &'a mut Vec<Connection>, name: &'static str) -> &'a mut Connection {
    if let Some(index) = connections.iter().position(|c| c.name == name) {
        return &mut connections[index];
    }
    connections.push(Connection {
        name,
        stream: None,
        closed_by_broker: false,
        received: Vec::new(),
        to_acknowledge: Vec::new(),
        answered: false,
    });
    connections.last_mut().unwrap()
}

/// Reads every open connection until something arrives on one, or `spent_ms_max` passes.
fn receive_first(connections: &mut [Connection], spent_ms_max: u64) {
    let mut spent_ms = 0;
    while spent_ms < spent_ms_max {
        let mut progress = false;
        for connection in connections.iter_mut() {
            progress |= connection.read_available();
        }
        if progress {
            return;
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
        spent_ms += POLL_MS;
    }
}

/// Reads every open connection until none has received anything for `quiet_ms_min`, or
/// `spent_ms_max` has passed.
fn receive_until_quiet(connections: &mut [Connection], quiet_ms_min: u64, spent_ms_max: u64) {
    let mut quiet_ms = 0;
    let mut spent_ms = 0;
    while quiet_ms < quiet_ms_min && spent_ms < spent_ms_max {
        let mut progress = false;
        for connection in connections.iter_mut() {
            progress |= connection.read_available();
        }
        if progress {
            quiet_ms = 0;
        } else {
            std::thread::sleep(Duration::from_millis(POLL_MS));
            quiet_ms += POLL_MS;
        }
        spent_ms += POLL_MS;
    }
}

impl Connection {
    fn open(&mut self, address: SocketAddr) {
        let stream =
            TcpStream::connect_timeout(&address, Duration::from_secs(2)).expect("the broker accepts");
        stream.set_nodelay(true).unwrap();
        stream.set_nonblocking(true).unwrap();
        self.stream = Some(stream);
        self.received.clear();
        self.to_acknowledge.clear();
        self.answered = false;
    }

    /// Writes a packet whole (a broker closing meanwhile shows up on the next read).
    fn write(&mut self, bytes: &[u8]) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        let mut written = 0;
        let mut waited_ms = 0;
        while written < bytes.len() && waited_ms < STEP_MS_MAX {
            match stream.write(&bytes[written..]) {
                Ok(n) => written += n,
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(POLL_MS));
                    waited_ms += POLL_MS;
                }
                Err(_) => return,
            }
        }
    }

    /// Reads what is there; whether anything happened (bytes, or the broker closing).
    fn read_available(&mut self) -> bool {
        let Some(stream) = self.stream.as_mut() else {
            return false;
        };
        let mut buffer = [0u8; 4096];
        match stream.read(&mut buffer) {
            Ok(0) => {
                self.closed_by_broker = true;
                true
            }
            Ok(n) => {
                self.received.extend_from_slice(&buffer[..n]);
                true
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => false,
            // A reset is the broker closing too.
            Err(_) => {
                self.closed_by_broker = true;
                true
            }
        }
    }

    /// The whole packets received since last time, normalised and as text, then "closed"
    /// if the broker closed the connection.
    fn take_events(&mut self, ids: &mut BTreeMap<u16, usize>) -> Vec<String> {
        let mut packets = Vec::new();
        while let Some(length) = whole_packet_length(&self.received) {
            packets.push(self.received.drain(..length).collect::<Vec<u8>>());
        }
        let mut texts = Vec::new();
        if let Some(first) = packets.first() {
            if !self.answered && first[0] >> 4 != 2 {
                texts.push("(before CONNACK)".to_string());
            }
            self.answered = true;
        }
        // The answer to the client's own packet first, then what the broker forwards, each
        // in arrival order: brokers interleave the two differently, and MQTT leaves it open.
        packets.sort_by_key(|packet| forwarded(packet));
        for packet in &packets {
            if let Some(reply) = acknowledgement(packet) {
                self.to_acknowledge.push(reply);
            }
            texts.push(describe(packet, ids));
        }
        if self.closed_by_broker && self.stream.is_some() {
            if !self.received.is_empty() {
                texts.push(format!("partial packet {}", hex(&self.received)));
                self.received.clear();
            }
            texts.push("closed".into());
            self.stream = None;
        }
        texts
    }
}

/// Whether the broker sent this packet on its own (a PUBLISH or PUBREL it originates).
fn forwarded(packet: &[u8]) -> bool {
    matches!(packet[0] >> 4, 3 | 6)
}

/// The length of the whole packet at the start of `bytes`, if it is all there.
fn whole_packet_length(bytes: &[u8]) -> Option<usize> {
    let mut remaining = 0usize;
    for (index, byte) in bytes.iter().enumerate().skip(1).take(4) {
        remaining |= usize::from(byte & 0x7f) << (7 * (index - 1));
        if byte & 0x80 == 0 {
            let length = index + 1 + remaining;
            return (bytes.len() >= length).then_some(length);
        }
    }
    None
}

/// What `Ack` answers to a packet the broker sent.
fn acknowledgement(packet: &[u8]) -> Option<Packet> {
    let body = body(packet);
    match packet[0] >> 4 {
        3 => {
            let qos = (packet[0] >> 1) & 3;
            let topic_length = usize::from(u16::from_be_bytes([body[0], body[1]]));
            let id = body.get(2 + topic_length..4 + topic_length)?;
            match qos {
                1 => Some(Packet::new(4, 0, id)),
                2 => Some(Packet::new(5, 0, id)),
                _ => None,
            }
        }
        6 => Some(Packet::new(7, 0, &body[..2])),
        _ => None,
    }
}

/// A PUBLISH from the broker as text (`PUBLISH a/b "x" q1 dup retain`) and its packet id,
/// or None when its body is too short for its topic and packet id.
fn describe_publish(flags: u8, body: &[u8]) -> Option<(String, Option<u16>)> {
    let qos = (flags >> 1) & 3;
    let topic_length = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let topic = String::from_utf8_lossy(body.get(2..2 + topic_length)?);
    let mut at = 2 + topic_length;
    let id = if qos > 0 {
        let id = body.get(at..at + 2)?;
        at += 2;
        Some(u16::from_be_bytes([id[0], id[1]]))
    } else {
        None
    };
    let payload = String::from_utf8_lossy(&body[at..]);
    let mut text = format!("PUBLISH {topic} {payload:?} q{qos}");
    if flags & 0b1000 != 0 {
        text.push_str(" dup");
    }
    if flags & 1 != 0 {
        text.push_str(" retain");
    }
    Some((text, id))
}

fn body(packet: &[u8]) -> &[u8] {
    let header = 1 + packet[1..].iter().take_while(|b| *b & 0x80 != 0).count() + 1;
    &packet[header..]
}

/// A packet from the broker as text. Ids the broker picks (in its PUBLISH and PUBREL) are
/// renamed `#n`; ids it echoes from the client stay as they are.
fn describe(packet: &[u8], ids: &mut BTreeMap<u16, usize>) -> String {
    let flags = packet[0] & 0x0f;
    let body = body(packet);
    let id_at = |at: usize| body.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let mut broker_id = |id: u16| {
        let next = ids.len() + 1;
        format!("#{}", ids.entry(id).or_insert(next))
    };
    let (text, flags_expected) = match (packet[0] >> 4, body.len()) {
        (2, 2) => (format!("CONNACK sp={} rc=0x{:02x}", body[0], body[1]), 0),
        // MQTT 5: properties follow; brokers announce different ones.
        (2, 3..) => (format!("CONNACK(v5) sp={} rc=0x{:02x}", body[0], body[1]), 0),
        (3, _) => match describe_publish(flags, body) {
            Some((text, Some(id))) => (format!("{text} {}", broker_id(id)), flags),
            Some((text, None)) => (text, flags),
            None => return format!("malformed PUBLISH {}", hex(packet)),
        },
        (4, 2) => (format!("PUBACK {}", id_at(0).unwrap()), 0),
        (5, 2) => (format!("PUBREC {}", id_at(0).unwrap()), 0),
        (6, 2) => (format!("PUBREL {}", broker_id(id_at(0).unwrap())), 0b0010),
        (7, 2) => (format!("PUBCOMP {}", id_at(0).unwrap()), 0),
        (9, 3..) => {
            let codes: Vec<String> = body[2..].iter().map(u8::to_string).collect();
            (format!("SUBACK {} [{}]", id_at(0).unwrap(), codes.join(", ")), 0)
        }
        (11, 2) => (format!("UNSUBACK {}", id_at(0).unwrap()), 0),
        (13, 0) => ("PINGRESP".to_string(), 0),
        (14, _) => (format!("DISCONNECT {}", hex(body)), 0),
        _ => return format!("unexpected packet {}", hex(packet)),
    };
    if flags == flags_expected {
        text
    } else {
        format!("{text} (header flags {flags:04b})")
    }
}
