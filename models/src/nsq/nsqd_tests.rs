//! nsqd driven by the bytes a client sends, read back as frames.

use super::channel::ClientId;
use super::nsqd::{Nsqd, NsqdOptions, Outbox, Output};
use super::protocol::{decode_frame, encode_command, Command, FrameType, Message, MAGIC_V2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sim::disk::{Disk, SimDisk};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

struct Harness {
    nsqd: Nsqd<SimDisk>,
    disk: SimDisk,
    rng: ChaCha8Rng,
    now: Duration,
    closed: Vec<ClientId>,
    inbox: Vec<(ClientId, FrameType, Vec<u8>)>,
    /// Notes and lookupd UNREGISTERs, in order.
    events: Vec<String>,
    /// Clients that read nothing: their output is never reported written. Every other
    /// client's output is written as soon as it is sent.
    not_reading: std::collections::BTreeSet<ClientId>,
    /// Bytes sent to each client that does not read.
    unread: std::collections::BTreeMap<ClientId, usize>,
}

impl Harness {
    fn new(options: NsqdOptions) -> Harness {
        let disk = SimDisk::new();
        Harness::on(options, disk)
    }

    fn on(options: NsqdOptions, disk: SimDisk) -> Harness {
        Harness {
            nsqd: Nsqd::open(options, disk.clone(), 1, 1_735_689_600_000, Duration::ZERO),
            disk,
            rng: ChaCha8Rng::seed_from_u64(1),
            now: Duration::ZERO,
            closed: Vec::new(),
            inbox: Vec::new(),
            events: Vec::new(),
            not_reading: std::collections::BTreeSet::new(),
            unread: std::collections::BTreeMap::new(),
        }
    }

    fn absorb(&mut self, mut out: Outbox) {
        let mut written = Vec::new();
        for output in out.drain() {
            match output {
                Output::Send(client, mut bytes) => {
                    if self.not_reading.contains(&client) {
                        *self.unread.entry(client).or_default() += bytes.len();
                    } else {
                        written.push((client, bytes.len()));
                    }
                    while let Some((kind, data, used)) = decode_frame(&bytes).unwrap() {
                        self.inbox.push((client, kind, data));
                        bytes.drain(..used);
                    }
                    assert!(bytes.is_empty());
                }
                Output::Close(client) => self.closed.push(client),
                Output::Note(name) => self.events.push(name.to_string()),
                Output::Unregister { topic, channel } => {
                    self.events
                        .push(format!("UNREGISTER {topic} {}", channel.unwrap_or_default()));
                }
                _ => {}
            }
        }
        for (client, bytes) in written {
            let mut out = Outbox::default();
            self.nsqd
                .written(client, bytes, self.now, &mut self.rng, &mut out);
            self.absorb(out);
        }
    }

    /// The client that stopped reading reads everything sent to it so far.
    fn read_all(&mut self, client: ClientId) {
        let bytes = self.unread.remove(&client).unwrap_or_default();
        let mut out = Outbox::default();
        self.nsqd
            .written(client, bytes, self.now, &mut self.rng, &mut out);
        self.absorb(out);
    }

    fn connect(&mut self) -> ClientId {
        let id = self.nsqd.connect(self.now);
        self.raw(id, MAGIC_V2);
        id
    }

    fn raw(&mut self, client: ClientId, bytes: &[u8]) {
        let mut out = Outbox::default();
        self.nsqd
            .receive(client, bytes, self.now, &mut self.rng, &mut out);
        self.absorb(out);
    }

    fn send(&mut self, client: ClientId, command: Command) {
        self.raw(client, &encode_command(&command));
    }

    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while self.now < end {
            self.now = (self.now + MS).min(end);
            let mut out = Outbox::default();
            self.nsqd.tick(self.now, &mut self.rng, &mut out);
            self.absorb(out);
        }
    }

    /// One HTTP request to nsqd's API: the status and the body.
    fn http(&mut self, method: &str, target: &str, body: &[u8]) -> (u16, String) {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let request = crate::nsq::http::HttpRequest {
            method,
            path,
            query,
            body,
        };
        let mut out = Outbox::default();
        let answer = self.nsqd.http(&request, self.now, &mut self.rng, &mut out);
        self.absorb(out);
        answer
    }

    fn frames(&mut self, client: ClientId) -> Vec<(FrameType, Vec<u8>)> {
        let (mine, rest) = self.inbox.drain(..).partition(|(c, _, _)| *c == client);
        self.inbox = rest;
        mine.into_iter().map(|(_, k, d)| (k, d)).collect()
    }

    fn messages(&mut self, client: ClientId) -> Vec<Message> {
        self.frames(client)
            .into_iter()
            .filter(|(k, _)| *k == FrameType::Message)
            .map(|(_, d)| Message::decode(&d).unwrap())
            .collect()
    }

    fn publish(&mut self, topic: &str, body: &str) {
        let p = self.connect();
        self.send(
            p,
            Command::Pub {
                topic: topic.into(),
                body: body.as_bytes().to_vec(),
            },
        );
        assert_eq!(self.frames(p), vec![(FrameType::Response, b"OK".to_vec())]);
    }

    fn subscribe(&mut self, topic: &str, channel: &str, rdy: i64) -> ClientId {
        let c = self.connect();
        self.send(
            c,
            Command::Sub {
                topic: topic.into(),
                channel: channel.into(),
            },
        );
        assert_eq!(self.frames(c), vec![(FrameType::Response, b"OK".to_vec())]);
        self.send(c, Command::Rdy(rdy));
        c
    }
}

fn body(m: &Message) -> String {
    String::from_utf8(m.body.clone()).unwrap()
}

#[test]
fn a_bad_magic_gets_e_bad_protocol_and_a_closed_connection() {
    let mut h = Harness::new(NsqdOptions::default());
    let c = h.nsqd.connect(h.now);
    h.raw(c, b"  V1");
    // Exactly the code, as nsqd/tcp.go sends it; the magic it got goes to the log only.
    assert_eq!(h.frames(c), vec![(FrameType::Error, b"E_BAD_PROTOCOL".to_vec())]);
    assert_eq!(h.closed, vec![c]);
}

#[test]
fn identify_validates_what_nsqd_validates_with_its_e_bad_body_texts() {
    let cases = [
        (
            r#"{"heartbeat_interval":999}"#,
            Some("IDENTIFY heartbeat interval (999) is invalid"),
        ),
        (
            r#"{"heartbeat_interval":60001}"#,
            Some("IDENTIFY heartbeat interval (60001) is invalid"),
        ),
        (
            r#"{"output_buffer_timeout":24}"#,
            Some("IDENTIFY output buffer timeout (24) is invalid"),
        ),
        (
            r#"{"output_buffer_timeout":30001}"#,
            Some("IDENTIFY output buffer timeout (30001) is invalid"),
        ),
        (
            r#"{"output_buffer_size":63}"#,
            Some("IDENTIFY output buffer size (63) is invalid"),
        ),
        (
            r#"{"output_buffer_size":65537}"#,
            Some("IDENTIFY output buffer size (65537) is invalid"),
        ),
        (
            r#"{"sample_rate":-1}"#,
            Some("IDENTIFY sample rate (-1) is invalid"),
        ),
        (
            r#"{"sample_rate":100}"#,
            Some("IDENTIFY sample rate (100) is invalid"),
        ),
        (
            r#"{"msg_timeout":999}"#,
            Some("IDENTIFY msg timeout (999) is invalid"),
        ),
        (
            r#"{"msg_timeout":900001}"#,
            Some("IDENTIFY msg timeout (900001) is invalid"),
        ),
        (
            r#"{"heartbeat_interval":1000,"output_buffer_timeout":25,"output_buffer_size":64,"sample_rate":99,"msg_timeout":1000}"#,
            None,
        ),
        (
            r#"{"output_buffer_size":-1,"output_buffer_timeout":-1,"heartbeat_interval":-1}"#,
            None,
        ),
        (
            r#"{"output_buffer_size":65536,"output_buffer_timeout":30000,"msg_timeout":900000}"#,
            None,
        ),
        // tokio-nsq's IDENTIFY: Go's decoder takes null as the zero value.
        (
            r#"{"client_id":null,"sample_rate":null,"msg_timeout":null}"#,
            None,
        ),
    ];
    for (body, refused) in cases {
        let mut h = Harness::new(NsqdOptions::default());
        let c = h.connect();
        h.send(c, Command::Identify(body.as_bytes().to_vec()));
        match refused {
            Some(text) => {
                let error = format!("E_BAD_BODY {text}");
                assert_eq!(
                    h.frames(c),
                    vec![(FrameType::Error, error.into_bytes())],
                    "{body}"
                );
                assert_eq!(h.closed, vec![c], "{body}: fatal");
            }
            None => {
                assert_eq!(h.frames(c), vec![(FrameType::Response, b"OK".to_vec())], "{body}");
                assert!(h.closed.is_empty(), "{body}");
            }
        }
    }
}

#[test]
fn an_identify_body_over_the_limit_is_refused_from_its_size_before_the_body_arrives() {
    let mut h = Harness::new(NsqdOptions::default());
    let c = h.connect();
    let too_big: i32 = 5 * 1024 * 1024 + 1;
    let mut bytes = b"IDENTIFY\n".to_vec();
    bytes.extend_from_slice(&too_big.to_be_bytes()); // the size, and no body yet
    h.raw(c, &bytes);
    assert_eq!(
        h.frames(c),
        vec![(
            FrameType::Error,
            format!("E_BAD_BODY IDENTIFY body too big {too_big} > 5242880").into_bytes()
        )]
    );
    assert_eq!(h.closed, vec![c]);
}

#[test]
fn publish_subscribe_fin_with_rdy_as_a_window() {
    let mut h = Harness::new(NsqdOptions::default());
    for n in 1..=3 {
        h.publish("orders", &format!("m{n}"));
    }
    let c = h.subscribe("orders", "billing", 2);
    let first = h.messages(c);
    assert_eq!(
        first.iter().map(body).collect::<Vec<_>>(),
        vec!["m1", "m2"],
        "RDY 2: two in flight"
    );
    assert!(first.iter().all(|m| m.attempts == 1));
    h.advance(10 * MS);
    assert!(h.messages(c).is_empty(), "the window is full");
    h.send(c, Command::Fin(first[0].id));
    assert_eq!(h.messages(c).iter().map(body).collect::<Vec<_>>(), vec!["m3"]);
}

#[test]
fn a_message_not_finished_within_msg_timeout_is_redelivered_up_to_a_scan_late() {
    let mut h = Harness::new(NsqdOptions::default());
    h.publish("t", "m1");
    let c = h.connect();
    h.send(c, Command::Identify(br#"{"msg_timeout":1000}"#.to_vec()));
    assert_eq!(h.frames(c), vec![(FrameType::Response, b"OK".to_vec())]);
    h.send(
        c,
        Command::Sub {
            topic: "t".into(),
            channel: "ch".into(),
        },
    );
    h.send(c, Command::Rdy(1));
    let first = h.messages(c);
    assert_eq!(first.len(), 1);
    h.advance(999 * MS);
    assert!(h.messages(c).is_empty());
    h.advance(101 * MS);
    let again = h.messages(c);
    assert_eq!(
        again.len(),
        1,
        "redelivered after the timeout and the next queue scan"
    );
    assert_eq!((again[0].id, again[0].attempts), (first[0].id, 2));
    // The late FIN for attempt 1 finishes attempt 2: nsqd checks the owner, not the attempt.
    h.send(c, Command::Fin(first[0].id));
    assert!(h.frames(c).is_empty(), "no error");
}

#[test]
fn fin_errors_are_not_fatal_but_garbled_commands_are() {
    let mut h = Harness::new(NsqdOptions::default());
    h.publish("t", "m1");
    let c = h.subscribe("t", "ch", 1);
    let m = h.messages(c);
    h.send(c, Command::Fin(m[0].id));
    h.send(c, Command::Fin(m[0].id));
    let frames = h.frames(c);
    assert_eq!(frames[0].0, FrameType::Error);
    assert!(
        String::from_utf8_lossy(&frames[0].1).starts_with("E_FIN_FAILED FIN"),
        "{frames:?}"
    );
    assert!(h.closed.is_empty(), "E_FIN_FAILED keeps the connection");
    h.raw(c, b"BOGUS\n");
    let frames = h.frames(c);
    assert_eq!(
        String::from_utf8_lossy(&frames[0].1),
        "E_INVALID invalid command BOGUS"
    );
    assert_eq!(h.closed, vec![c]);
}

#[test]
fn state_rules_sub_twice_rdy_before_sub_identify_after_sub() {
    let mut h = Harness::new(NsqdOptions::default());
    let c = h.connect();
    h.send(c, Command::Rdy(1));
    assert!(String::from_utf8_lossy(&h.frames(c)[0].1).contains("cannot RDY in current state"));
    let c = h.subscribe("t", "a", 1);
    h.send(
        c,
        Command::Sub {
            topic: "t".into(),
            channel: "b".into(),
        },
    );
    assert!(String::from_utf8_lossy(&h.frames(c)[0].1).contains("cannot SUB in current state"));
    let c = h.connect();
    h.send(c, Command::Identify(br#"{"heartbeat_interval":-1}"#.to_vec()));
    h.frames(c);
    h.send(
        c,
        Command::Sub {
            topic: "t".into(),
            channel: "a".into(),
        },
    );
    assert!(String::from_utf8_lossy(&h.frames(c)[0].1).contains("cannot SUB with heartbeats disabled"));
}

#[test]
fn heartbeats_every_half_client_timeout_and_the_read_deadline_closes_a_silent_client() {
    let mut h = Harness::new(NsqdOptions {
        client_timeout_ms: 2000,
        ..NsqdOptions::default()
    });
    let c = h.subscribe("t", "ch", 1);
    h.advance(1000 * MS);
    assert_eq!(h.frames(c), vec![(FrameType::Response, b"_heartbeat_".to_vec())]);
    h.send(c, Command::Nop);
    h.advance(1999 * MS);
    assert!(h.closed.is_empty(), "answered within two heartbeats");
    h.advance(1 * MS);
    assert_eq!(h.closed, vec![c], "two heartbeats without a byte: closed");
}

#[test]
fn a_disconnected_clients_messages_wait_for_their_timeout() {
    let mut h = Harness::new(NsqdOptions {
        msg_timeout_ms: 5000,
        ..NsqdOptions::default()
    });
    h.publish("t", "m1");
    let a = h.subscribe("t", "ch", 1);
    assert_eq!(h.messages(a).len(), 1);
    let mut out = Outbox::default();
    h.nsqd.disconnect(a, &mut out);
    let b = h.subscribe("t", "ch", 1);
    h.advance(4900 * MS);
    assert!(h.messages(b).is_empty(), "not requeued on disconnect");
    h.advance(300 * MS);
    let m = h.messages(b);
    assert_eq!((m.len(), m[0].attempts), (1, 2));
}

#[test]
fn message_frames_wait_for_the_output_buffer_flush_unless_the_window_is_full() {
    let mut h = Harness::new(NsqdOptions::default());
    let c = h.subscribe("t", "ch", 10);
    h.advance(300 * MS); // past the first flush tick
    h.frames(c);
    h.publish("t", "m1");
    assert!(h.messages(c).is_empty(), "buffered");
    h.advance(250 * MS);
    assert_eq!(h.messages(c).len(), 1, "flushed on the output-buffer tick");
}

#[test]
fn a_kill_loses_memory_and_a_graceful_close_keeps_everything() {
    for graceful in [false, true] {
        let options = NsqdOptions {
            mem_queue_size: 2,
            ..NsqdOptions::default()
        };
        let mut h = Harness::new(options.clone());
        let c = h.subscribe("t", "ch", 1);
        h.frames(c);
        for n in 1..=5 {
            h.publish("t", &format!("m{n}"));
        }
        let in_flight = h.messages(c);
        assert_eq!(in_flight.len(), 1);
        // Past the disk queues' 2 s sync: killed before it, a disk queue has no metadata and
        // starts empty (go-diskqueue's New), losing the disk overflow too.
        h.advance(2001 * MS);
        if graceful {
            h.nsqd.close().unwrap();
        }
        let disk = h.disk.clone();
        let mut h = Harness::on(options, disk);
        let c = h.subscribe("t", "ch", 10);
        h.advance(300 * MS);
        let mut got: Vec<String> = h.messages(c).iter().map(body).collect();
        got.sort();
        if graceful {
            assert_eq!(
                got,
                vec!["m1", "m2", "m3", "m4", "m5"],
                "memory and in-flight flushed to disk"
            );
        } else {
            // The channel's memory held two, one was in flight: only the disk overflow survives.
            assert_eq!(got.len(), 2, "{got:?}");
            assert!(
                !got.contains(&body(&in_flight[0])),
                "the in-flight message is lost"
            );
        }
    }
}

#[test]
fn dpub_defers_and_req_with_delay_defers() {
    let mut h = Harness::new(NsqdOptions::default());
    let c = h.subscribe("t", "ch", 1);
    let p = h.connect();
    h.send(
        p,
        Command::Dpub {
            topic: "t".into(),
            defer_ms: 500,
            body: b"later".to_vec(),
        },
    );
    assert!(h.messages(c).is_empty());
    h.advance(600 * MS);
    let m = h.messages(c);
    assert_eq!(m.iter().map(body).collect::<Vec<_>>(), vec!["later"]);
    h.send(
        c,
        Command::Req {
            id: m[0].id,
            timeout_ms: 1000,
        },
    );
    h.advance(900 * MS);
    assert!(h.messages(c).is_empty());
    h.advance(300 * MS);
    assert_eq!(h.messages(c)[0].attempts, 2);
}

#[test]
fn a_topic_created_with_lookupds_waits_for_its_channels_and_blocks_the_creating_publish() {
    use super::nsqd::ChannelsFound;
    let mut h = Harness::new(NsqdOptions::default());
    h.nsqd.set_lookupds_configured(true);
    let p = h.connect();
    let publish = |body: &str| Command::Pub {
        topic: "orders".into(),
        body: body.as_bytes().to_vec(),
    };
    // The first PUB creates the topic: nsqd asks lookupd, and the PUB waits for the answer.
    let mut out = Outbox::default();
    let mut bytes = encode_command(&publish("m1"));
    bytes.extend(encode_command(&publish("m2"))); // sent while blocked: not read yet
    h.nsqd.receive(p, &bytes, h.now, &mut h.rng, &mut out);
    let queried: Vec<_> = out
        .0
        .iter()
        .filter(|o| matches!(o, Output::QueryChannels(t) if t == "orders"))
        .collect();
    assert_eq!(queried.len(), 1);
    h.absorb(out);
    assert!(h.frames(p).is_empty(), "the creating PUB's OK is held");
    // Another client's PUB goes through: the topic exists, its pump has not started.
    h.publish("orders", "m3");
    // lookupd knows billing and an ephemeral channel: billing is pre-created, not the other.
    let mut out = Outbox::default();
    h.nsqd.channels_found(
        "orders",
        ChannelsFound::Channels(vec!["billing".into(), "tail#ephemeral".into()]),
        h.now,
        &mut h.rng,
        &mut out,
    );
    assert!(out.0.contains(&Output::Note("nsqd.channels_precreated")));
    h.absorb(out);
    assert_eq!(
        h.frames(p),
        vec![
            (FrameType::Response, b"OK".to_vec()),
            (FrameType::Response, b"OK".to_vec())
        ],
        "the held OK, then the OK for the PUB read after unblocking"
    );
    let c = h.subscribe("orders", "billing", 10);
    h.advance(300 * MS);
    let got: Vec<String> = h.messages(c).iter().map(body).collect();
    assert_eq!(got.len(), 3, "billing existed before the pump started: {got:?}");
    assert!(h.nsqd.stats().iter().all(|s| s.channel != "tail#ephemeral"));
}

#[test]
fn with_no_lookupd_to_ask_the_topic_starts_without_channels_and_a_late_channel_misses_the_backlog() {
    use super::nsqd::ChannelsFound;
    let mut h = Harness::new(NsqdOptions::default());
    h.nsqd.set_lookupds_configured(true);
    let p = h.connect();
    h.send(
        p,
        Command::Pub {
            topic: "orders".into(),
            body: b"m1".to_vec(),
        },
    );
    let mut out = Outbox::default();
    h.nsqd
        .channels_found("orders", ChannelsFound::NoLookupd, h.now, &mut h.rng, &mut out);
    assert!(out.0.contains(&Output::Note("nsqd.precreate_no_lookupd")));
    h.absorb(out);
    let first = h.subscribe("orders", "audit", 10);
    let late = h.subscribe("orders", "billing", 10);
    h.advance(300 * MS);
    assert_eq!(h.messages(first).len(), 1, "the first channel gets the backlog");
    assert!(
        h.messages(late).is_empty(),
        "a channel created after the pump ran never gets it"
    );
}

#[test]
fn a_channels_disk_queue_syncs_on_its_2_s_timer_and_a_power_failure_after_it_keeps_the_messages() {
    for synced in [false, true] {
        let options = NsqdOptions {
            mem_queue_size: 0, // every message goes through the topic's and the channel's disk queues
            ..NsqdOptions::default()
        };
        let mut h = Harness::new(options.clone());
        let c = h.subscribe("t", "ch", 0);
        h.frames(c);
        for n in 1..=3 {
            h.publish("t", &format!("m{n}"));
        }
        h.advance(if synced { 2001 * MS } else { 1999 * MS });
        assert_eq!(h.nsqd.stats()[0].depth, 3, "on the channel's disk queue");
        let disk = h.disk.clone();
        drop(h);
        disk.power_fail(false, &mut ChaCha8Rng::seed_from_u64(1));
        let mut h = Harness::on(options.clone(), disk);
        let c = h.subscribe("t", "ch", 10);
        h.advance(300 * MS);
        let got: Vec<String> = h.messages(c).iter().map(body).collect();
        if synced {
            assert_eq!(got, vec!["m1", "m2", "m3"], "synced at 2 s: kept");
        } else {
            assert!(got.is_empty(), "not yet synced: the page cache is lost ({got:?})");
        }
    }
}

/// The `message` of an nsqd HTTP error.
fn api_error(answer: (u16, String)) -> (u16, String) {
    let body: serde_json::Value = serde_json::from_str(&answer.1).expect("an error is JSON");
    (answer.0, body["message"].as_str().unwrap().to_string())
}

#[test]
fn management_calls_check_their_arguments_as_nsqds_handlers_do() {
    let mut h = Harness::new(NsqdOptions::default());
    let e = |status: u16, message: &str| (status, message.to_string());
    assert_eq!(
        api_error(h.http("POST", "/topic/empty", b"")),
        e(400, "MISSING_ARG_TOPIC")
    );
    assert_eq!(
        api_error(h.http("POST", "/topic/empty?topic=a%20b", b"")),
        e(400, "INVALID_TOPIC")
    );
    assert_eq!(
        api_error(h.http("POST", "/topic/empty?topic=t", b"")),
        e(404, "TOPIC_NOT_FOUND")
    );
    // `/topic/delete` and `/topic/pause` do not check the name: a bad one is not found.
    assert_eq!(
        api_error(h.http("POST", "/topic/delete?topic=a%20b", b"")),
        e(404, "TOPIC_NOT_FOUND")
    );
    assert_eq!(
        api_error(h.http("POST", "/topic/pause?topic=a%20b", b"")),
        e(404, "TOPIC_NOT_FOUND")
    );
    assert_eq!(
        api_error(h.http("POST", "/pub?topic=a%20b", b"x")),
        e(400, "INVALID_TOPIC")
    );
    // A channel is only created on an existing topic.
    assert_eq!(
        api_error(h.http("POST", "/channel/create?topic=t&channel=c", b"")),
        e(404, "TOPIC_NOT_FOUND")
    );
    assert_eq!(
        api_error(h.http("POST", "/channel/create?topic=t", b"")),
        e(400, "MISSING_ARG_CHANNEL")
    );
    assert_eq!(
        api_error(h.http("POST", "/channel/create?topic=a%20b&channel=c", b"")),
        e(400, "INVALID_ARG_TOPIC")
    );
    assert_eq!(h.http("POST", "/topic/create?topic=t", b""), (200, String::new()));
    assert_eq!(
        api_error(h.http("POST", "/channel/pause?topic=t&channel=c", b"")),
        e(404, "CHANNEL_NOT_FOUND")
    );
    assert_eq!(
        api_error(h.http("POST", "/channel/empty?topic=t&channel=c", b"")),
        e(404, "CHANNEL_NOT_FOUND")
    );
    assert_eq!(
        api_error(h.http("POST", "/channel/delete?topic=t&channel=c", b"")),
        e(404, "CHANNEL_NOT_FOUND")
    );
    assert_eq!(
        api_error(h.http("POST", "/channel/create?topic=t&channel=a%20b", b"")),
        e(400, "INVALID_ARG_CHANNEL")
    );
    assert_eq!(
        h.http("POST", "/channel/create?topic=t&channel=c", b""),
        (200, String::new())
    );
    assert_eq!(
        api_error(h.http("GET", "/channel/delete?topic=t&channel=c", b"")),
        e(405, "METHOD_NOT_ALLOWED")
    );
    assert_eq!(
        api_error(h.http("POST", "/topic/nope?topic=t", b"")),
        e(404, "NOT_FOUND")
    );
    assert!(h.events.is_empty(), "{:?}", h.events);
}

#[test]
fn a_paused_channel_sends_nothing_and_keeps_taking_messages_across_a_restart() {
    let mut h = Harness::new(NsqdOptions::default());
    let c = h.subscribe("t", "c", 10);
    assert_eq!(
        h.http("POST", "/channel/pause?topic=t&channel=c", b""),
        (200, String::new())
    );
    h.publish("t", "one");
    h.advance(1000 * MS);
    assert!(h.messages(c).is_empty(), "a paused channel delivers nothing");
    let stats: serde_json::Value = serde_json::from_str(&h.http("GET", "/stats?format=json", b"").1).unwrap();
    let channel = &stats["topics"][0]["channels"][0];
    assert_eq!(
        (channel["paused"].as_bool(), channel["depth"].as_i64()),
        (Some(true), Some(1))
    );
    // Persisted at once: a kill and a restart keep it paused.
    let disk = h.disk.clone();
    let mut h = Harness::on(NsqdOptions::default(), disk);
    let c = h.subscribe("t", "c", 10);
    h.publish("t", "two");
    h.advance(1000 * MS);
    assert!(h.messages(c).is_empty(), "still paused after the restart");
    assert_eq!(
        h.http("POST", "/channel/unpause?topic=t&channel=c", b""),
        (200, String::new())
    );
    h.advance(300 * MS);
    assert_eq!(h.messages(c).iter().map(body).collect::<Vec<_>>(), vec!["two"]);
}

#[test]
fn emptying_a_channel_drops_memory_disk_in_flight_and_deferred_and_fins_then_fail() {
    let options = NsqdOptions {
        mem_queue_size: 1,
        ..NsqdOptions::default()
    };
    let mut h = Harness::new(options);
    let c = h.subscribe("t", "c", 1);
    for body in ["a", "b", "c"] {
        h.publish("t", body);
    }
    h.advance(300 * MS);
    let [in_flight] = h.messages(c).try_into().unwrap();
    h.events.clear();
    h.http("POST", "/channel/empty?topic=t&channel=c", b"");
    assert_eq!(h.events, vec!["nsqd.channel_emptied"]);
    let stats: serde_json::Value = serde_json::from_str(&h.http("GET", "/stats?format=json", b"").1).unwrap();
    let channel = &stats["topics"][0]["channels"][0];
    for key in ["depth", "backend_depth", "in_flight_count", "deferred_count"] {
        assert_eq!(channel[key], 0, "{key}: {channel}");
    }
    assert_eq!(
        channel["clients"][0]["in_flight_count"], 0,
        "the client's count starts again"
    );
    h.send(c, Command::Fin(in_flight.id));
    let frames = h.frames(c);
    assert_eq!(frames.len(), 1);
    assert_eq!(
        frames[0].0,
        FrameType::Error,
        "the dropped message is no longer in flight"
    );
    assert!(h.closed.is_empty(), "E_FIN_FAILED is not fatal");
    h.publish("t", "d");
    h.advance(300 * MS);
    assert_eq!(h.messages(c).iter().map(body).collect::<Vec<_>>(), vec!["d"]);
    // The disk queue's files went too: a restart finds nothing of a, b or c.
    let disk = h.disk.clone();
    drop(h);
    let mut h = Harness::on(NsqdOptions::default(), disk);
    let c = h.subscribe("t", "c", 10);
    h.advance(300 * MS);
    assert!(h.messages(c).iter().all(|m| body(m) == "d"));
}

#[test]
fn deleting_a_topic_unregisters_closes_its_consumers_and_removes_its_files() {
    let options = NsqdOptions {
        mem_queue_size: 1,
        ..NsqdOptions::default()
    };
    let mut h = Harness::new(options);
    let c = h.subscribe("t", "c", 1);
    for body in ["a", "b", "c"] {
        h.publish("t", body);
    }
    h.advance(2100 * MS); // the 2 s sync: the disk queues have files and metadata
    assert!(h
        .disk
        .list()
        .unwrap()
        .iter()
        .any(|f| f.starts_with("t:c.diskqueue")));
    h.messages(c);
    h.events.clear();
    assert_eq!(h.http("POST", "/topic/delete?topic=t", b""), (200, String::new()));
    assert_eq!(
        h.events,
        vec!["UNREGISTER t ", "UNREGISTER t c", "nsqd.topic_deleted"],
        "the topic first, then each channel, as nsqd's Notify calls go"
    );
    assert_eq!(h.closed, vec![c], "the channel's consumer is disconnected");
    let left: Vec<String> = h
        .disk
        .list()
        .unwrap()
        .into_iter()
        .filter(|f| f.starts_with("t"))
        .collect();
    assert!(left.is_empty(), "data and metadata files removed: {left:?}");
    assert_eq!(
        api_error(h.http("POST", "/topic/delete?topic=t", b"")).1,
        "TOPIC_NOT_FOUND"
    );
    let disk = h.disk.clone();
    let mut h = Harness::on(NsqdOptions::default(), disk);
    assert!(!h.nsqd.topic_exists("t"), "the metadata no longer names it");
    assert_eq!(
        api_error(h.http("POST", "/topic/empty?topic=t", b"")).1,
        "TOPIC_NOT_FOUND"
    );
}

#[test]
fn deleting_a_channel_leaves_the_topic_and_its_other_channels() {
    let mut h = Harness::new(NsqdOptions::default());
    let a = h.subscribe("t", "a", 10);
    let b = h.subscribe("t", "b", 10);
    h.publish("t", "one");
    h.advance(300 * MS);
    assert_eq!(h.messages(a).len(), 1);
    assert_eq!(h.messages(b).len(), 1);
    assert_eq!(
        h.http("POST", "/channel/delete?topic=t&channel=a", b""),
        (200, String::new())
    );
    assert_eq!(h.events, vec!["UNREGISTER t a", "nsqd.channel_deleted"]);
    assert_eq!(h.closed, vec![a]);
    h.publish("t", "two");
    h.advance(300 * MS);
    assert_eq!(h.messages(b).iter().map(body).collect::<Vec<_>>(), vec!["two"]);
    // Emptying the topic drops only what the topic holds.
    h.http("POST", "/topic/pause?topic=t", b"");
    h.publish("t", "three");
    h.events.clear();
    h.http("POST", "/topic/empty?topic=t", b"");
    h.http("POST", "/topic/unpause?topic=t", b"");
    assert_eq!(h.events, vec!["nsqd.topic_emptied"]);
    h.advance(300 * MS);
    assert!(h.messages(b).is_empty());
}

#[test]
fn stats_json_has_nsqds_channel_and_client_fields() {
    let mut h = Harness::new(NsqdOptions::default());
    let c = h.connect();
    let identify =
        br#"{"client_id":"worker-1","hostname":"box","user_agent":"pynsq/0.9.1","heartbeat_interval":1000}"#;
    h.send(c, Command::Identify(identify.to_vec()));
    h.send(
        c,
        Command::Sub {
            topic: "t".into(),
            channel: "c".into(),
        },
    );
    h.send(c, Command::Rdy(5));
    h.frames(c);
    h.publish("t", "one");
    h.publish("t", "two");
    h.advance(300 * MS);
    let [first, second] = h.messages(c).try_into().unwrap();
    h.send(c, Command::Fin(first.id));
    h.send(
        c,
        Command::Req {
            id: second.id,
            timeout_ms: 0,
        },
    );
    let stats: serde_json::Value = serde_json::from_str(&h.http("GET", "/stats?format=json", b"").1).unwrap();
    let topic = &stats["topics"][0];
    assert_eq!(
        (topic["message_count"].as_u64(), topic["message_bytes"].as_u64()),
        (Some(2), Some(6))
    );
    let channel = &topic["channels"][0];
    assert_eq!(channel["message_count"], 2);
    assert_eq!(channel["requeue_count"], 1);
    assert_eq!(channel["client_count"], 1);
    let client = &channel["clients"][0];
    assert_eq!(client["client_id"], "worker-1");
    assert_eq!(client["hostname"], "box");
    assert_eq!(client["user_agent"], "pynsq/0.9.1");
    assert_eq!(client["version"], "V2");
    assert_eq!(client["state"], 3);
    assert_eq!(client["ready_count"], 5);
    // The requeued message went out again at once (RDY 5).
    assert_eq!(client["message_count"], 3);
    assert_eq!(client["in_flight_count"], 1);
    assert_eq!(client["finish_count"], 1);
    assert_eq!(client["requeue_count"], 1);
    assert_eq!(client["connect_ts"], 1_735_689_600);
    // The publishing connections are producers, with their counts.
    let producers = stats["producers"].as_array().unwrap();
    assert_eq!(producers.len(), 2);
    assert_eq!(
        producers[0]["pub_counts"],
        serde_json::json!([{ "topic": "t", "count": 1 }])
    );
    assert!(
        client.get("pub_counts").is_none(),
        "omitted when empty, as Go's omitempty does"
    );
    // Filters: an unknown topic gives nulls, as Go marshals nil slices.
    let none: serde_json::Value =
        serde_json::from_str(&h.http("GET", "/stats?format=json&topic=nope", b"").1).unwrap();
    assert!(none["topics"].is_null() && none["producers"].is_null());
    let no_clients: serde_json::Value =
        serde_json::from_str(&h.http("GET", "/stats?format=json&include_clients=false", b"").1).unwrap();
    assert!(no_clients["topics"][0]["channels"][0]["clients"].is_null());
    assert_eq!(no_clients["topics"][0]["channels"][0]["client_count"], 1);
    let text = h.http("GET", "/stats", b"").1;
    assert!(
        text.contains("[c                        ] depth: 0     be-depth: 0     inflt: 1"),
        "{text}"
    );
}

#[test]
fn a_client_that_stops_reading_stalls_at_the_output_bound_and_closes_at_its_write_deadline() {
    use super::nsqd::OUTPUT_UNWRITTEN_BYTES_MAX;
    let mut h = Harness::new(NsqdOptions::default());
    let c = h.connect();
    h.not_reading.insert(c);
    h.send(c, Command::Identify(br#"{"heartbeat_interval":2000}"#.to_vec()));
    h.send(
        c,
        Command::Sub {
            topic: "t".into(),
            channel: "c".into(),
        },
    );
    h.send(c, Command::Rdy(2500));
    let body = "x".repeat(10 * 1024);
    for _ in 0..300 {
        h.publish("t", &body); // 3 MiB, three times the bound
    }
    let delivered = h.messages(c).len();
    let bound_messages = OUTPUT_UNWRITTEN_BYTES_MAX / (10 * 1024);
    assert!(
        delivered > bound_messages && delivered < bound_messages + 10,
        "deliveries stop one flush past the bound: {delivered}"
    );
    assert!(h.nsqd.is_write_blocked(c));
    // Stalled: no delivery, no heartbeat, no command run, for most of the deadline.
    h.send(c, Command::Nop);
    h.send(c, Command::Rdy(1));
    h.advance(1900 * MS);
    assert!(
        h.frames(c).is_empty(),
        "a stalled client gets nothing, heartbeats included"
    );
    assert!(h.closed.is_empty());
    // It reads: the held RDY 1 runs, deliveries resume one at a time (in flight is far
    // above 1, so none until FINs).
    h.read_all(c);
    assert!(!h.nsqd.is_write_blocked(c));
    h.advance(100 * MS);
    assert!(
        h.messages(c).is_empty(),
        "RDY 1, read after the stall, holds deliveries"
    );
    h.send(c, Command::Rdy(2500));
    h.advance(300 * MS);
    assert!(
        h.messages(c).len() > bound_messages,
        "deliveries resumed up to the bound again"
    );
    assert!(h.nsqd.is_write_blocked(c));
    // This time it never reads: the write fails at the deadline, one heartbeat interval
    // after it blocked (at the RDY, 300 ms ago).
    h.events.clear();
    h.advance(1699 * MS);
    assert!(h.closed.is_empty(), "not before the deadline");
    h.advance(2 * MS);
    assert_eq!(h.closed, vec![c]);
    assert_eq!(h.events, vec!["nsqd.client_write_timeout"]);
}

#[test]
fn a_client_that_sends_commands_and_never_reads_their_answers_stalls_too() {
    let mut h = Harness::new(NsqdOptions::default());
    let c = h.subscribe("t", "c", 0);
    h.not_reading.insert(c);
    // Each FIN of an id not in flight is answered E_FIN_FAILED.
    let fins = b"FIN 0123456789abcdef\n".repeat(100_000); // 2 MiB of commands
    h.raw(c, &fins);
    assert!(h.nsqd.is_write_blocked(c));
    let answered = h.frames(c).len();
    let answer_len = 8 + "E_FIN_FAILED FIN 0123456789abcdef failed ID not in flight".len();
    let bound = super::nsqd::OUTPUT_UNWRITTEN_BYTES_MAX / answer_len;
    assert!(
        answered > bound && answered <= bound + 1,
        "{answered} answers for a bound of {bound}"
    );
    // Unread commands wait; with heartbeats at their default the deadline is 30 s.
    h.advance(29_000 * MS);
    assert!(h.closed.is_empty() && h.frames(c).is_empty());
    h.advance(1_001 * MS);
    assert_eq!(h.closed, vec![c]);
}

#[test]
fn deleting_a_topic_whose_creation_waits_for_lookupd_releases_the_held_answer() {
    let mut h = Harness::new(NsqdOptions::default());
    h.nsqd.set_lookupds_configured(true);
    let p = h.connect();
    h.send(
        p,
        Command::Pub {
            topic: "orders".into(),
            body: b"m1".to_vec(),
        },
    );
    assert!(h.frames(p).is_empty(), "held while lookupd is asked");
    assert_eq!(
        h.http("POST", "/topic/delete?topic=orders", b""),
        (200, String::new())
    );
    assert_eq!(h.frames(p), vec![(FrameType::Response, b"OK".to_vec())]);
    assert!(!h.nsqd.topic_exists("orders"));
}
