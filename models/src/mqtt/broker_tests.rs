//! The broker core's flows, driven with packets and read back from its outputs.

use super::broker::{reason, Broker, BrokerConfig, ConnId, Out};
use super::packet::*;

struct Harness {
    broker: Broker,
    now_ms: u64,
    next_conn: ConnId,
    versions: std::collections::BTreeMap<ConnId, Version>,
}

/// What one step sent, per connection, decoded.
struct Step {
    outs: Vec<Out>,
    versions: std::collections::BTreeMap<ConnId, Version>,
}

impl Step {
    fn to(&self, conn: ConnId) -> Vec<Packet> {
        let version = self.versions[&conn];
        self.outs
            .iter()
            .filter_map(|o| match o {
                Out::Send { conn: c, bytes } if *c == conn => {
                    let (packet, used) = decode(bytes, Some(version), PACKET_SIZE_MAX).unwrap().unwrap();
                    assert_eq!(used, bytes.len());
                    Some(packet)
                }
                _ => None,
            })
            .collect()
    }

    fn publishes_to(&self, conn: ConnId) -> Vec<Publish> {
        self.to(conn)
            .into_iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    fn closed(&self, conn: ConnId) -> bool {
        self.outs.contains(&Out::Close { conn })
    }

    fn noted(&self, kind: &str) -> bool {
        self.outs
            .iter()
            .any(|o| matches!(o, Out::Note { kind: k, .. } if *k == kind))
    }
}

fn publish(topic: &str, qos: QoS, packet_id: Option<u16>, payload: &[u8]) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id,
        properties: Properties::default(),
        payload: payload.to_vec(),
    })
}

fn retained(topic: &str, qos: QoS, payload: &[u8]) -> Packet {
    let Packet::Publish(mut p) = publish(topic, qos, (qos != QoS::AtMostOnce).then_some(99), payload) else {
        unreachable!()
    };
    p.retain = true;
    Packet::Publish(p)
}

fn subscribe(filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        subscriptions: vec![Subscription::new(filter, qos)],
    }
}

fn connect_packet(client_id: &str, clean: bool, version: Version) -> Connect {
    Connect {
        version,
        clean_start: clean,
        keep_alive_s: 0,
        properties: Properties::default(),
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
    }
}

impl Harness {
    fn new(config: BrokerConfig) -> Harness {
        Harness {
            broker: Broker::new(config),
            now_ms: 1_000,
            next_conn: 1,
            versions: Default::default(),
        }
    }

    fn open(&mut self, version: Version) -> ConnId {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.broker.on_open(self.now_ms, conn);
        self.versions.insert(conn, version);
        conn
    }

    fn bytes(&mut self, conn: ConnId, bytes: &[u8]) -> Step {
        let mut outs = Vec::new();
        self.broker.on_bytes(self.now_ms, conn, bytes, &mut outs);
        Step {
            outs,
            versions: self.versions.clone(),
        }
    }

    fn send(&mut self, conn: ConnId, packet: Packet) -> Step {
        let version = self.versions[&conn];
        self.bytes(conn, &packet.encode(version))
    }

    /// Connects and returns the connection and CONNACK's session-present flag.
    fn connect_with(&mut self, connect: Connect) -> (ConnId, bool, Step) {
        let conn = self.open(connect.version);
        let step = self.send(conn, Packet::Connect(Box::new(connect)));
        let Some(Packet::Connack {
            session_present,
            reason: 0,
            ..
        }) = step.to(conn).first().cloned()
        else {
            panic!("no CONNACK 0: {:?}", step.outs)
        };
        (conn, session_present, step)
    }

    fn connect(&mut self, client_id: &str, clean: bool) -> ConnId {
        self.connect_with(connect_packet(client_id, clean, Version::V311))
            .0
    }

    fn close(&mut self, conn: ConnId) -> Step {
        let mut outs = Vec::new();
        self.broker.on_closed(self.now_ms, conn, &mut outs);
        Step {
            outs,
            versions: self.versions.clone(),
        }
    }

    fn tick(&mut self, now_ms: u64) -> Step {
        self.now_ms = now_ms;
        let mut outs = Vec::new();
        self.broker.on_tick(now_ms, &mut outs);
        Step {
            outs,
            versions: self.versions.clone(),
        }
    }
}

fn ids(publishes: &[Publish]) -> Vec<u16> {
    publishes.iter().map(|p| p.packet_id.unwrap()).collect()
}

#[test]
fn qos_0_1_2_both_ways_at_min_of_published_and_granted() {
    let mut h = Harness::new(BrokerConfig::default());
    let sub = h.connect("sub", true);
    h.send(sub, subscribe("t/#", QoS::AtLeastOnce));
    let publisher = h.connect("pub", true);
    // QoS 0 in, QoS 0 out, no acknowledgement.
    let step = h.send(publisher, publish("t/a", QoS::AtMostOnce, None, b"0"));
    assert!(step.to(publisher).is_empty());
    assert_eq!(step.publishes_to(sub)[0].qos, QoS::AtMostOnce);
    // QoS 1 in: PUBACK; out at QoS 1 with a packet id.
    let step = h.send(publisher, publish("t/a", QoS::AtLeastOnce, Some(5), b"1"));
    assert_eq!(step.to(publisher), vec![Packet::Puback(Ack::new(5, 0))]);
    let out = &step.publishes_to(sub)[0];
    assert_eq!((out.qos, out.dup, out.retain), (QoS::AtLeastOnce, false, false));
    h.send(sub, Packet::Puback(Ack::new(out.packet_id.unwrap(), 0)));
    // QoS 2 in: PUBREC, nothing onward until PUBREL (method A), then PUBCOMP; out at min = 1.
    let step = h.send(publisher, publish("t/a", QoS::ExactlyOnce, Some(6), b"2"));
    assert_eq!(step.to(publisher), vec![Packet::Pubrec(Ack::new(6, 0))]);
    assert!(step.publishes_to(sub).is_empty());
    let step = h.send(publisher, Packet::Pubrel(Ack::new(6, 0)));
    assert_eq!(step.to(publisher), vec![Packet::Pubcomp(Ack::new(6, 0))]);
    assert_eq!(step.publishes_to(sub)[0].qos, QoS::AtLeastOnce);
    assert_eq!(step.publishes_to(sub)[0].payload, b"2");
}

#[test]
fn qos_2_outbound_runs_publish_pubrec_pubrel_pubcomp() {
    let mut h = Harness::new(BrokerConfig::default());
    let sub = h.connect("sub", false);
    h.send(sub, subscribe("t", QoS::ExactlyOnce));
    let publisher = h.connect("pub", true);
    h.send(publisher, publish("t", QoS::ExactlyOnce, Some(1), b"x"));
    let step = h.send(publisher, Packet::Pubrel(Ack::new(1, 0)));
    let id = step.publishes_to(sub)[0].packet_id.unwrap();
    assert_eq!(
        h.send(sub, Packet::Pubrec(Ack::new(id, 0))).to(sub),
        vec![Packet::Pubrel(Ack::new(id, 0))]
    );
    // Lose the connection before PUBCOMP: the resumed session re-sends PUBREL, not PUBLISH.
    h.close(sub);
    let (sub, present, step) = h.connect_with(connect_packet("sub", false, Version::V311));
    assert!(present);
    assert_eq!(step.to(sub)[1..], [Packet::Pubrel(Ack::new(id, 0))]);
    h.send(sub, Packet::Pubcomp(Ack::new(id, 0)));
    assert!(h.broker.session("sub").unwrap().inflight.is_empty());
}

#[test]
fn lost_puback_then_resume_redelivers_with_dup_and_the_same_id_in_order() {
    let mut h = Harness::new(BrokerConfig::default());
    let sub = h.connect("sub", false);
    h.send(sub, subscribe("t", QoS::AtLeastOnce));
    let publisher = h.connect("pub", true);
    let mut sent = Vec::new();
    for i in 1..=3u16 {
        sent.extend(
            h.send(publisher, publish("t", QoS::AtLeastOnce, Some(i), &[i as u8]))
                .publishes_to(sub),
        );
    }
    // The subscriber acknowledges only the second; its connection then drops.
    h.send(sub, Packet::Puback(Ack::new(sent[1].packet_id.unwrap(), 0)));
    h.close(sub);
    let (sub, present, step) = h.connect_with(connect_packet("sub", false, Version::V311));
    assert!(present);
    let again = step.publishes_to(sub);
    assert_eq!(
        ids(&again),
        vec![sent[0].packet_id.unwrap(), sent[2].packet_id.unwrap()]
    );
    assert!(again.iter().all(|p| p.dup));
    assert_eq!(again[0].payload, vec![1]);
    assert_eq!(again[1].payload, vec![3]);
}

#[test]
fn inbound_qos2_duplicate_before_pubrel_gets_pubrec_and_is_not_delivered_twice() {
    let mut h = Harness::new(BrokerConfig::default());
    let sub = h.connect("sub", true);
    h.send(sub, subscribe("t", QoS::AtMostOnce));
    let publisher = h.connect("pub", false);
    h.send(publisher, publish("t", QoS::ExactlyOnce, Some(9), b"once"));
    // The publisher lost our PUBREC and reconnects: it re-sends the PUBLISH with DUP=1.
    h.close(publisher);
    let (publisher, present, _) = h.connect_with(connect_packet("pub", false, Version::V311));
    assert!(present);
    let Packet::Publish(mut again) = publish("t", QoS::ExactlyOnce, Some(9), b"once") else {
        unreachable!()
    };
    again.dup = true;
    let step = h.send(publisher, Packet::Publish(again));
    assert_eq!(step.to(publisher), vec![Packet::Pubrec(Ack::new(9, 0))]);
    assert!(step.noted("duplicate-qos2"), "the duplicate path ran");
    let step = h.send(publisher, Packet::Pubrel(Ack::new(9, 0)));
    assert_eq!(step.publishes_to(sub).len(), 1);
    // A PUBREL repeated after PUBCOMP is answered, and delivers nothing.
    let step = h.send(publisher, Packet::Pubrel(Ack::new(9, 0)));
    assert_eq!(step.to(publisher), vec![Packet::Pubcomp(Ack::new(9, 0))]);
    assert!(step.publishes_to(sub).is_empty());
    // After PUBCOMP the same id is a new message [MQTT-4.3.3-2].
    h.send(publisher, publish("t", QoS::ExactlyOnce, Some(9), b"twice"));
    assert_eq!(
        h.send(publisher, Packet::Pubrel(Ack::new(9, 0)))
            .publishes_to(sub)
            .len(),
        1
    );
}

#[test]
fn inflight_window_queues_the_rest_and_acks_release_them() {
    let config = BrokerConfig {
        max_inflight_messages: 2,
        ..BrokerConfig::default()
    };
    let mut h = Harness::new(config);
    let sub = h.connect("sub", false);
    h.send(sub, subscribe("t", QoS::AtLeastOnce));
    let publisher = h.connect("pub", true);
    let mut first = Vec::new();
    for i in 1..=4u16 {
        first.extend(
            h.send(publisher, publish("t", QoS::AtLeastOnce, Some(i), &[i as u8]))
                .publishes_to(sub),
        );
    }
    assert_eq!(first.len(), 2, "window of 2");
    assert_eq!(h.broker.session("sub").unwrap().queued.len(), 2);
    let next = h
        .send(sub, Packet::Puback(Ack::new(first[0].packet_id.unwrap(), 0)))
        .publishes_to(sub);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].payload, vec![3]);
}

#[test]
fn offline_persistent_session_queues_qos1_not_qos0_up_to_max_queued_then_drops() {
    let config = BrokerConfig {
        max_queued_messages: 3,
        ..BrokerConfig::default()
    };
    let mut h = Harness::new(config);
    let sub = h.connect("sub", false);
    h.send(sub, subscribe("t", QoS::AtLeastOnce));
    h.send(
        sub,
        Packet::Disconnect {
            reason: 0,
            properties: Properties::default(),
        },
    );
    let publisher = h.connect("pub", true);
    h.send(publisher, publish("t", QoS::AtMostOnce, None, b"q0"));
    let mut dropped = false;
    for i in 1..=5u16 {
        dropped |= h
            .send(publisher, publish("t", QoS::AtLeastOnce, Some(i), &[i as u8]))
            .noted("queue-full-drop");
    }
    assert!(dropped, "the drop path ran");
    let (sub, present, step) = h.connect_with(connect_packet("sub", false, Version::V311));
    assert!(present);
    let payloads: Vec<Vec<u8>> = step.publishes_to(sub).into_iter().map(|p| p.payload).collect();
    assert_eq!(payloads, vec![vec![1], vec![2], vec![3]]);
}

#[test]
fn clean_session_discards_the_queue_and_subscriptions() {
    let mut h = Harness::new(BrokerConfig::default());
    let sub = h.connect("sub", false);
    h.send(sub, subscribe("t", QoS::AtLeastOnce));
    h.close(sub);
    let publisher = h.connect("pub", true);
    h.send(publisher, publish("t", QoS::AtLeastOnce, Some(1), b"x"));
    let (sub, present, step) = h.connect_with(connect_packet("sub", true, Version::V311));
    assert!(!present);
    assert!(step.publishes_to(sub).is_empty());
    assert!(step.noted("session-discarded"));
    // And the subscription is gone with it.
    assert!(h
        .send(publisher, publish("t", QoS::AtLeastOnce, Some(2), b"y"))
        .publishes_to(sub)
        .is_empty());
    // A clean session ends with its connection: nothing is kept for it.
    h.close(sub);
    assert!(h.broker.session("sub").is_none());
}

#[test]
fn takeover_closes_the_old_connection_and_resumes_the_session() {
    let mut h = Harness::new(BrokerConfig::default());
    let old = h.connect("c", false);
    h.send(old, subscribe("t", QoS::AtLeastOnce));
    let (new, present, step) = h.connect_with(connect_packet("c", false, Version::V311));
    assert!(step.closed(old));
    assert!(step.noted("takeover"));
    assert!(present);
    let publisher = h.connect("pub", true);
    assert_eq!(
        h.send(publisher, publish("t", QoS::AtLeastOnce, Some(1), b"x"))
            .publishes_to(new)
            .len(),
        1
    );
    // The old connection's close, when the driver reports it, changes nothing.
    assert!(h.close(old).outs.is_empty());
}

fn with_will(client_id: &str, clean: bool) -> Connect {
    let mut connect = connect_packet(client_id, clean, Version::V311);
    connect.will = Some(Will {
        topic: "wills".into(),
        payload: b"gone".to_vec(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default(),
    });
    connect
}

#[test]
fn will_is_published_on_abnormal_close_but_not_after_disconnect() {
    let mut h = Harness::new(BrokerConfig::default());
    let watcher = h.connect("watcher", true);
    h.send(watcher, subscribe("wills", QoS::AtLeastOnce));
    let (conn, _, _) = h.connect_with(with_will("w1", true));
    let step = h.close(conn);
    assert!(step.noted("will-published"));
    assert_eq!(step.publishes_to(watcher)[0].payload, b"gone");
    let (conn, _, _) = h.connect_with(with_will("w2", true));
    let step = h.send(
        conn,
        Packet::Disconnect {
            reason: 0,
            properties: Properties::default(),
        },
    );
    assert!(step.closed(conn));
    assert!(step.publishes_to(watcher).is_empty());
    assert!(h.close(conn).publishes_to(watcher).is_empty());
    // A protocol error is abnormal too.
    let (conn, _, _) = h.connect_with(with_will("w3", true));
    let step = h.bytes(conn, &[0x36, 5, 0, 1, b'a', 0, 1]);
    assert!(step.closed(conn));
    assert_eq!(step.publishes_to(watcher).len(), 1);
}

#[test]
fn keepalive_expires_past_one_and_a_half_times_at_mosquittos_six_second_checks() {
    let mut h = Harness::new(BrokerConfig::default());
    let watcher = h.connect("watcher", true);
    h.send(watcher, subscribe("wills", QoS::AtMostOnce));
    assert!(h.tick(6_000).outs.is_empty(), "the first check, in second 6");
    h.now_ms = 10_900;
    let mut connect = with_will("k", true);
    connect.keep_alive_s = 2;
    let (conn, _, _) = h.connect_with(connect);
    // Last packet in second 10; 2*3/2 = 3 s. Checks run in seconds 12 and 18 (each more than
    // 5 s after the last), so it is still open in 12 (2 s), and in 14 though expired (no
    // check), and closed at the check in 18.
    assert!(!h.tick(12_000).closed(conn));
    assert!(!h.tick(14_000).closed(conn));
    assert!(!h.tick(17_999).closed(conn));
    let step = h.tick(18_000);
    assert!(step.closed(conn));
    assert!(step.noted("keepalive-expired"));
    assert_eq!(step.publishes_to(watcher).len(), 1);
    // A PINGREQ keeps a connection alive: sent in second 22, checked in 24 (2 s, not more
    // than 3: kept) and 30 (8 s: closed).
    let mut connect = connect_packet("k2", true, Version::V311);
    connect.keep_alive_s = 2;
    let (conn, _, _) = h.connect_with(connect);
    h.now_ms = 22_500;
    assert_eq!(h.send(conn, Packet::Pingreq).to(conn), vec![Packet::Pingresp]);
    assert!(!h.tick(24_000).closed(conn));
    assert!(h.tick(30_000).closed(conn));
}

#[test]
fn retained_messages_are_stored_sent_on_subscribe_and_cleared_by_an_empty_payload() {
    let mut h = Harness::new(BrokerConfig::default());
    let publisher = h.connect("pub", true);
    h.send(publisher, retained("r/a", QoS::AtMostOnce, b"zero"));
    h.send(publisher, retained("r/b", QoS::AtLeastOnce, b"one"));
    let sub = h.connect("sub", true);
    let step = h.send(sub, subscribe("r/#", QoS::ExactlyOnce));
    assert!(matches!(step.to(sub)[0], Packet::Suback { ref reasons, .. } if *reasons == vec![2]));
    let got = step.publishes_to(sub);
    assert_eq!(got.len(), 2, "a QoS 0 retained message is stored too");
    assert!(got.iter().all(|p| p.retain));
    assert_eq!((got[0].qos, got[1].qos), (QoS::AtMostOnce, QoS::AtLeastOnce));
    // An empty retained payload is forwarded (RETAIN=0), then the topic has none.
    let step = h.send(publisher, retained("r/a", QoS::AtMostOnce, b""));
    let forwarded = step.publishes_to(sub);
    assert_eq!(forwarded.len(), 1);
    assert!(!forwarded[0].retain && forwarded[0].payload.is_empty());
    assert!(!h.broker.retained().contains_key("r/a"));
}

#[test]
fn overlapping_subscriptions_deliver_one_copy_each() {
    let mut h = Harness::new(BrokerConfig::default());
    let sub = h.connect("sub", true);
    h.send(sub, subscribe("a/#", QoS::AtMostOnce));
    h.send(sub, subscribe("a/+", QoS::AtLeastOnce));
    let publisher = h.connect("pub", true);
    let got = h
        .send(publisher, publish("a/b", QoS::AtLeastOnce, Some(1), b"x"))
        .publishes_to(sub);
    assert_eq!(got.len(), 2);
}

#[test]
fn connect_refusals_and_protocol_errors_follow_mosquitto() {
    let mut h = Harness::new(BrokerConfig::default());
    // Empty client id with CleanSession=0: CONNACK 0x02, closed.
    let conn = h.open(Version::V311);
    let step = h.send(
        conn,
        Packet::Connect(Box::new(connect_packet("", false, Version::V311))),
    );
    assert!(matches!(
        step.to(conn)[..],
        [Packet::Connack { reason: 0x02, .. }]
    ));
    assert!(step.closed(conn));
    // With CleanSession=1 it is accepted and given an id.
    let (_, present, _) = h.connect_with(connect_packet("", true, Version::V311));
    assert!(!present);
    // A wrong protocol level: CONNACK 0x01 and close.
    let conn = h.open(Version::V311);
    let step = h.bytes(
        conn,
        &[0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 6, 2, 0, 60, 0, 1, b'c'],
    );
    assert!(matches!(
        step.to(conn)[..],
        [Packet::Connack { reason: 0x01, .. }]
    ));
    assert!(step.closed(conn));
    // First packet not CONNECT, a second CONNECT, a wildcard in a topic name, a bad
    // filter: closed without a reply.
    let conn = h.open(Version::V311);
    let step = h.send(conn, Packet::Pingreq);
    assert!(step.closed(conn) && step.to(conn).is_empty());
    let conn = h.connect("twice", true);
    let step = h.send(
        conn,
        Packet::Connect(Box::new(connect_packet("twice", true, Version::V311))),
    );
    assert!(step.closed(conn) && step.to(conn).is_empty());
    let conn = h.connect("wild", true);
    let step = h.send(conn, publish("a/+", QoS::AtMostOnce, None, b""));
    assert!(step.closed(conn) && step.to(conn).is_empty());
    let conn = h.connect("filter", true);
    let step = h.send(conn, subscribe("a/#/b", QoS::AtMostOnce));
    assert!(step.closed(conn) && step.to(conn).is_empty());
}

fn v5_connect(client_id: &str) -> Connect {
    let mut connect = connect_packet(client_id, false, Version::V5);
    connect
        .properties
        .push(SESSION_EXPIRY_INTERVAL, PropertyValue::FourByte(u32::MAX));
    connect
}

#[test]
fn v5_pubrec_reason_0x80_or_more_ends_the_exchange_without_pubrel_or_resend() {
    let mut h = Harness::new(BrokerConfig::default());
    let (sub, _, _) = h.connect_with(v5_connect("sub"));
    h.send(sub, subscribe("t", QoS::ExactlyOnce));
    let publisher = h.connect("pub", true);
    h.send(publisher, publish("t", QoS::ExactlyOnce, Some(1), b"x"));
    let id = h
        .send(publisher, Packet::Pubrel(Ack::new(1, 0)))
        .publishes_to(sub)[0]
        .packet_id
        .unwrap();
    let step = h.send(sub, Packet::Pubrec(Ack::new(id, reason::QUOTA_EXCEEDED)));
    assert!(step.to(sub).is_empty(), "no PUBREL");
    assert!(step.noted("reason-code"));
    h.close(sub);
    let (sub, present, step) = h.connect_with(v5_connect("sub"));
    assert!(present);
    assert!(step.to(sub)[1..].is_empty(), "not re-sent");
}

#[test]
fn incoming_quota_exhausted_is_refused_with_0x97_for_v5_and_silently_for_3_1_1() {
    let config = BrokerConfig {
        max_inflight_messages: 1,
        max_queued_messages: 1,
        ..BrokerConfig::default()
    };
    let mut h = Harness::new(config);
    let (v5, _, _) = h.connect_with(v5_connect("v5"));
    // 1 awaiting PUBREL fills the window; 1 more is held without PUBREC; the third is refused.
    assert_eq!(
        h.send(v5, publish("t", QoS::ExactlyOnce, Some(1), b"")).to(v5),
        vec![Packet::Pubrec(Ack::new(1, 0))]
    );
    let step = h.send(v5, publish("t", QoS::ExactlyOnce, Some(2), b""));
    assert!(step.to(v5).is_empty() && step.noted("pubrec-withheld"));
    let step = h.send(v5, publish("t", QoS::AtLeastOnce, Some(3), b""));
    assert_eq!(step.to(v5), vec![Packet::Puback(Ack::new(3, 0x97))]);
    assert!(step.noted("quota-exceeded"));
    // Releasing the first sends the held one's PUBREC.
    let step = h.send(v5, Packet::Pubrel(Ack::new(1, 0)));
    assert_eq!(
        step.to(v5),
        vec![Packet::Pubrec(Ack::new(2, 0)), Packet::Pubcomp(Ack::new(1, 0))]
    );
    // A 3.1.1 client gets a plain PUBREC and the message is lost.
    let old = h.connect("old", true);
    let sub = h.connect("sub", true);
    h.send(sub, subscribe("t", QoS::AtMostOnce));
    h.send(old, publish("t", QoS::ExactlyOnce, Some(1), b""));
    h.send(old, publish("t", QoS::ExactlyOnce, Some(2), b""));
    let step = h.send(old, publish("t", QoS::ExactlyOnce, Some(3), b"lost"));
    assert_eq!(step.to(old), vec![Packet::Pubrec(Ack::new(3, 0))]);
    assert!(step.noted("quota-exceeded"));
    assert!(h
        .send(old, Packet::Pubrel(Ack::new(3, 0)))
        .publishes_to(sub)
        .is_empty());
}

#[test]
fn snapshot_restore_keeps_retained_persistent_sessions_and_their_messages() {
    let mut h = Harness::new(BrokerConfig {
        persistence: true,
        ..BrokerConfig::default()
    });
    let sub = h.connect("sub", false);
    h.send(sub, subscribe("t", QoS::ExactlyOnce));
    let clean = h.connect("clean", true);
    h.send(clean, subscribe("t", QoS::AtLeastOnce));
    let publisher = h.connect("pub", false);
    h.send(publisher, retained("keep", QoS::AtLeastOnce, b"r"));
    h.send(
        publisher,
        publish("t", QoS::ExactlyOnce, Some(7), b"awaiting pubrel"),
    );
    h.send(publisher, publish("t", QoS::AtLeastOnce, Some(8), b"in flight"));
    let in_flight = h.broker.session("sub").unwrap().inflight.clone();
    let bytes = h.broker.snapshot();
    let restored = Broker::restore(h.broker.config().clone(), &bytes, 0).unwrap();
    assert!(
        restored.session("clean").is_none(),
        "clean sessions are not saved"
    );
    assert_eq!(restored.session("sub").unwrap().inflight, in_flight);
    assert!(restored.session("pub").unwrap().incoming.contains_key(&7));
    assert_eq!(restored.retained().len(), 1);
    // After the restart the subscriber resumes: the message is re-sent with DUP=1; the
    // publisher's PUBREL still delivers its QoS 2 message once.
    h.broker = restored;
    let (sub, present, step) = h.connect_with(connect_packet("sub", false, Version::V311));
    assert!(present);
    let again = step.publishes_to(sub);
    assert_eq!(again.len(), 1);
    assert!(again[0].dup);
    let (publisher, present, _) = h.connect_with(connect_packet("pub", false, Version::V311));
    assert!(present);
    assert_eq!(
        h.send(publisher, Packet::Pubrel(Ack::new(7, 0)))
            .publishes_to(sub)
            .len(),
        1
    );
    assert_eq!(
        Broker::restore(BrokerConfig::default(), &h.broker.snapshot(), 0)
            .unwrap()
            .snapshot(),
        h.broker.snapshot()
    );
}

#[test]
fn a_restart_without_persistence_loses_sessions_and_retained_messages() {
    let mut h = Harness::new(BrokerConfig::default());
    let sub = h.connect("sub", false);
    h.send(sub, subscribe("t", QoS::AtLeastOnce));
    let publisher = h.connect("pub", true);
    h.send(publisher, retained("keep", QoS::AtLeastOnce, b"r"));
    // The process restarts: the driver builds a new core, with nothing to restore.
    h.broker = Broker::new(BrokerConfig::default());
    let (sub, present, _) = h.connect_with(connect_packet("sub", false, Version::V311));
    assert!(!present);
    let publisher = h.connect("pub2", true);
    assert!(h
        .send(publisher, publish("t", QoS::AtLeastOnce, Some(1), b"x"))
        .publishes_to(sub)
        .is_empty());
    assert!(h.broker.retained().is_empty());
}

#[test]
fn bytes_split_anywhere_decode_the_same() {
    let mut h = Harness::new(BrokerConfig::default());
    let conn = h.open(Version::V311);
    let bytes = Packet::Connect(Box::new(connect_packet("split", true, Version::V311))).encode(Version::V311);
    let mut answers = Vec::new();
    for byte in bytes {
        answers.extend(h.bytes(conn, &[byte]).to(conn));
    }
    assert!(matches!(answers[..], [Packet::Connack { reason: 0, .. }]));
}

#[test]
fn an_oversized_packet_is_refused_from_its_header() {
    let mut h = Harness::new(BrokerConfig {
        max_packet_size: 1024,
        ..BrokerConfig::default()
    });
    let conn = h.connect("big", true);
    let step = h.bytes(conn, &[0x30, 0x80, 0x10]); // declares 2048 bytes
    assert!(step.closed(conn));
    assert!(step.noted("malformed"));
}
