//! The client core's flows as paho.mqtt.golang has them, driven with the broker's packets
//! and read back, packet by packet, from its outputs.

use super::client::{Client, ClientOptions, ClientOut, Inbound, PublishError, ResendOrder, Token};
use super::packet::*;
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// One output, with what was written decoded so a failing test reads as packets.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    Sent(Packet),
    Out(ClientOut),
}

fn seen(outs: Vec<ClientOut>) -> Vec<Seen> {
    outs.into_iter()
        .map(|out| match out {
            ClientOut::Send(bytes) => {
                let (packet, used) = decode(&bytes, Some(Version::V311), PACKET_SIZE_MAX)
                    .expect("the client writes well-formed packets")
                    .expect("a whole packet");
                assert_eq!(used, bytes.len(), "one packet per Send");
                Seen::Sent(packet)
            }
            other => Seen::Out(other),
        })
        .collect()
}

struct Harness {
    client: Client,
    now_ms: u64,
    rng: ChaCha8Rng,
}

impl Harness {
    fn new(options: ClientOptions) -> Harness {
        Harness::seeded(options, 7)
    }

    fn seeded(options: ClientOptions, seed: u64) -> Harness {
        Harness {
            client: Client::new(options),
            now_ms: 1_000,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    fn open(&mut self) -> Vec<Seen> {
        let mut outs = Vec::new();
        self.client.on_open(self.now_ms, &mut outs);
        seen(outs)
    }

    fn bytes(&mut self, bytes: &[u8]) -> Vec<Seen> {
        let mut outs = Vec::new();
        self.client.on_bytes(self.now_ms, bytes, &mut self.rng, &mut outs);
        seen(outs)
    }

    fn recv(&mut self, packet: Packet) -> Vec<Seen> {
        self.bytes(&packet.encode(Version::V311))
    }

    fn connack(&mut self, session_present: bool, reason: u8) -> Vec<Seen> {
        self.recv(Packet::Connack {
            session_present,
            reason,
            properties: Properties::default(),
        })
    }

    /// A socket opened and accepted: what the CONNACK made the client do.
    fn connect(&mut self, session_present: bool) -> Vec<Seen> {
        self.open();
        self.connack(session_present, 0)
    }

    /// The socket lost, and the next one accepted.
    fn reconnect(&mut self, session_present: bool) -> Vec<Seen> {
        self.client.on_closed();
        self.connect(session_present)
    }

    fn publish(&mut self, qos: QoS, payload: &[u8]) -> (Token, Vec<Seen>) {
        let mut outs = Vec::new();
        let token = self
            .client
            .publish(self.now_ms, "t", payload.to_vec(), qos, &mut outs);
        (token, seen(outs))
    }

    fn acknowledge(&mut self, inbound: &Inbound) -> Vec<Seen> {
        let mut outs = Vec::new();
        self.client.acknowledge(self.now_ms, inbound, &mut outs);
        seen(outs)
    }

    fn tick(&mut self, now_ms: u64) -> Vec<Seen> {
        self.now_ms = now_ms;
        let mut outs = Vec::new();
        self.client.on_tick(now_ms, &mut outs);
        seen(outs)
    }
}

fn options(configure: impl FnOnce(&mut ClientOptions)) -> ClientOptions {
    let mut options = ClientOptions::new("c1");
    configure(&mut options);
    options
}

fn publish(qos: QoS, packet_id: Option<u16>, dup: bool, payload: &[u8]) -> Publish {
    Publish {
        dup,
        qos,
        retain: false,
        topic: "t".into(),
        packet_id,
        properties: Properties::default(),
        payload: payload.to_vec(),
    }
}

fn sent_publish(qos: QoS, packet_id: u16, dup: bool, payload: &[u8]) -> Seen {
    Seen::Sent(Packet::Publish(publish(qos, Some(packet_id), dup, payload)))
}

fn puback(id: u16) -> Packet {
    Packet::Puback(Ack::new(id, 0))
}

fn pubrec(id: u16) -> Packet {
    Packet::Pubrec(Ack::new(id, 0))
}

fn pubrel(id: u16) -> Packet {
    Packet::Pubrel(Ack::new(id, 0))
}

fn pubcomp(id: u16) -> Packet {
    Packet::Pubcomp(Ack::new(id, 0))
}

fn completed(token: Token, result: Result<(), PublishError>) -> Seen {
    Seen::Out(ClientOut::Completed { token, result })
}

fn connected(session_present: bool) -> Seen {
    Seen::Out(ClientOut::Connected { session_present })
}

fn note(kind: &'static str, detail: &str) -> Seen {
    Seen::Out(ClientOut::Note {
        kind,
        detail: detail.into(),
    })
}

fn noted(outs: &[Seen], kind: &str) -> bool {
    outs.iter()
        .any(|o| matches!(o, Seen::Out(ClientOut::Note { kind: k, .. }) if *k == kind))
}

fn message(inbound: &[Seen]) -> Inbound {
    match inbound {
        [Seen::Out(ClientOut::Message(inbound))] => inbound.clone(),
        other => panic!("not one message: {other:?}"),
    }
}

/// The packet ids of the PUBLISHes written, in the order written.
fn publish_ids(outs: &[Seen]) -> Vec<u16> {
    outs.iter()
        .filter_map(|o| match o {
            Seen::Sent(Packet::Publish(p)) => p.packet_id,
            _ => None,
        })
        .collect()
}

#[test]
fn connect_carries_client_id_clean_session_and_keepalive_and_connack_0_connects() {
    let mut h = Harness::new(options(|o| {
        o.clean_session = false;
        o.keep_alive_s = 17;
    }));
    let connect = Connect {
        version: Version::V311,
        clean_start: false,
        keep_alive_s: 17,
        properties: Properties::default(),
        client_id: "c1".into(),
        will: None,
        username: None,
        password: None,
    };
    assert_eq!(h.open(), vec![Seen::Sent(Packet::Connect(Box::new(connect)))]);
    assert!(!h.client.is_connected());
    // A fresh client's first CONNACK: connected, nothing to resume, no note.
    assert_eq!(h.connack(false, 0), vec![connected(false)]);
    assert!(h.client.is_connected());
    let mut clean = Harness::new(ClientOptions::new("other"));
    let Some(Seen::Sent(Packet::Connect(connect))) = clean.open().pop() else {
        panic!("no CONNECT")
    };
    assert_eq!(
        (
            connect.client_id.as_str(),
            connect.clean_start,
            connect.keep_alive_s
        ),
        ("other", true, 30)
    );
}

#[test]
fn connack_refused_reports_the_code_and_closes() {
    let mut h = Harness::new(ClientOptions::new("c1"));
    h.open();
    assert_eq!(
        h.connack(false, 5),
        vec![
            Seen::Out(ClientOut::Refused { code: 5 }),
            Seen::Out(ClientOut::Close)
        ]
    );
    assert!(!h.client.is_connected());
    // A refused attempt is not a connection: publishing still fails "not connected", and the
    // next accepted CONNACK is the first connection (no session_not_present note).
    let (token, outs) = h.publish(QoS::AtLeastOnce, b"a");
    assert_eq!(outs, vec![completed(token, Err(PublishError::NotConnected))]);
    assert_eq!(h.connect(false), vec![connected(false)]);
}

#[test]
fn qos0_while_connected_is_written_and_completes_at_once() {
    let mut h = Harness::new(ClientOptions::new("c1"));
    h.connect(false);
    let (token, outs) = h.publish(QoS::AtMostOnce, b"zero");
    assert_eq!(
        outs,
        vec![
            Seen::Sent(Packet::Publish(publish(QoS::AtMostOnce, None, false, b"zero"))),
            completed(token, Ok(())),
        ]
    );
    assert_eq!(h.client.stored(), 0);
}

#[test]
fn qos0_while_reconnecting_is_dropped_and_still_completes_ok() {
    // paho issue #630: `Publish` while reconnecting completes a QoS 0 token without error.
    let mut h = Harness::new(ClientOptions::new("c1"));
    h.connect(false);
    h.client.on_closed();
    let (token, outs) = h.publish(QoS::AtMostOnce, b"zero");
    assert_eq!(
        outs,
        vec![
            note("client.qos0_dropped_while_reconnecting", ""),
            completed(token, Ok(()))
        ]
    );
    // Nothing was kept for the next connection either.
    assert_eq!(h.connect(true), vec![connected(true)]);
}

#[test]
fn publish_before_any_connection_fails_not_connected_at_every_qos() {
    let mut h = Harness::new(ClientOptions::new("c1"));
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let (token, outs) = h.publish(qos, b"early");
        assert_eq!(outs, vec![completed(token, Err(PublishError::NotConnected))]);
    }
    // Nor while the first CONNECT awaits its CONNACK; nothing was stored.
    h.open();
    let (token, outs) = h.publish(QoS::AtLeastOnce, b"early");
    assert_eq!(outs, vec![completed(token, Err(PublishError::NotConnected))]);
    assert_eq!(h.client.stored(), 0);
    assert_eq!(h.connack(false, 0), vec![connected(false)]);
}

#[test]
fn qos1_is_stored_before_sending_and_puback_completes_it() {
    let mut h = Harness::new(ClientOptions::new("c1"));
    h.connect(false);
    let (token, outs) = h.publish(QoS::AtLeastOnce, b"one");
    assert_eq!(outs, vec![sent_publish(QoS::AtLeastOnce, 1, false, b"one")]);
    assert_eq!(h.client.stored(), 1);
    assert_eq!(h.recv(puback(1)), vec![completed(token, Ok(()))]);
    assert_eq!(h.client.stored(), 0);
    // A second PUBACK for it, or one for an id never used, is ignored.
    assert_eq!(h.recv(puback(1)), vec![]);
    let (_, outs) = h.publish(QoS::AtLeastOnce, b"two");
    assert_eq!(outs, vec![sent_publish(QoS::AtLeastOnce, 2, false, b"two")]);
    assert_eq!(h.recv(puback(9)), vec![]);
    assert_eq!(h.client.stored(), 1);
}

#[test]
fn qos1_published_while_reconnecting_is_stored_and_sent_at_the_resume() {
    let mut h = Harness::new(ClientOptions::new("c1"));
    h.connect(false);
    h.client.on_closed();
    let (token, outs) = h.publish(QoS::AtLeastOnce, b"later");
    assert_eq!(outs, vec![]);
    assert_eq!(h.client.stored(), 1);
    assert_eq!(
        h.connect(true),
        vec![
            connected(true),
            note("client.resume", "1 PUBLISH, 0 PUBREL"),
            completed(token, Ok(())),
            sent_publish(QoS::AtLeastOnce, 1, true, b"later"),
        ]
    );
}

#[test]
fn qos2_paho_mode_pubrec_gets_pubrel_and_only_pubcomp_completes() {
    let mut h = Harness::new(ClientOptions::new("c1"));
    h.connect(false);
    let (token, outs) = h.publish(QoS::ExactlyOnce, b"two");
    assert_eq!(outs, vec![sent_publish(QoS::ExactlyOnce, 1, false, b"two")]);
    assert_eq!(h.recv(pubrec(1)), vec![Seen::Sent(pubrel(1))]);
    assert_eq!(h.client.stored(), 1);
    assert_eq!(h.recv(pubcomp(1)), vec![completed(token, Ok(()))]);
    assert_eq!(h.client.stored(), 0);
}

#[test]
fn qos2_paho_mode_reconnect_resends_the_publish_even_after_pubrec() {
    // paho issue #788: the PUBLISH stays stored until PUBCOMP and is what a reconnect re-sends.
    let mut h = Harness::new(options(|o| o.clean_session = false));
    h.connect(false);
    let (token, _) = h.publish(QoS::ExactlyOnce, b"two");
    assert_eq!(h.recv(pubrec(1)), vec![Seen::Sent(pubrel(1))]);
    assert_eq!(
        h.reconnect(true),
        vec![
            connected(true),
            note("client.resume", "1 PUBLISH, 0 PUBREL"),
            completed(token, Ok(())),
            sent_publish(QoS::ExactlyOnce, 1, true, b"two"),
        ]
    );
    assert_eq!(h.recv(pubrec(1)), vec![Seen::Sent(pubrel(1))]);
    // The token completed at the resend; PUBCOMP only empties the store.
    assert_eq!(h.recv(pubcomp(1)), vec![]);
    assert_eq!(h.client.stored(), 0);
}

#[test]
fn qos2_spec_mode_reconnect_resends_pubrel_after_pubrec_and_publish_before() {
    let mut h = Harness::new(options(|o| {
        o.clean_session = false;
        o.spec_qos2 = true;
    }));
    h.connect(false);
    let (first, _) = h.publish(QoS::ExactlyOnce, b"a");
    let (second, _) = h.publish(QoS::ExactlyOnce, b"b");
    assert_eq!(h.recv(pubrec(1)), vec![Seen::Sent(pubrel(1))]);
    let outs = h.reconnect(true);
    assert_eq!(
        outs[..3],
        [
            connected(true),
            note("client.resume", "1 PUBLISH, 1 PUBREL"),
            note("client.pubrel_resent", "")
        ]
    );
    let mut resent: Vec<_> = outs[3..].chunks(2).map(|pair| pair.to_vec()).collect();
    resent.sort_by_key(|pair| format!("{pair:?}"));
    let mut expected = vec![
        vec![completed(first, Ok(())), Seen::Sent(pubrel(1))],
        vec![
            completed(second, Ok(())),
            sent_publish(QoS::ExactlyOnce, 2, true, b"b"),
        ],
    ];
    expected.sort_by_key(|pair| format!("{pair:?}"));
    assert_eq!(resent, expected);
    assert_eq!(h.recv(pubcomp(1)), vec![]);
    assert_eq!(h.client.stored(), 1);
}

/// Publishes `n` QoS 1 messages (ids and tokens 1..=n on a fresh client) and loses the
/// connection before any PUBACK.
fn stored_then_lost(h: &mut Harness, n: u16) {
    h.connect(false);
    for i in 1..=n {
        let (token, outs) = h.publish(QoS::AtLeastOnce, &[i as u8]);
        assert_eq!(
            (token, outs),
            (
                u64::from(i),
                vec![sent_publish(QoS::AtLeastOnce, i, false, &[i as u8])]
            )
        );
    }
    h.client.on_closed();
}

#[test]
fn every_reconnect_resends_with_dup_and_the_same_ids_even_with_clean_session() {
    // paho PR #290: `reconnect` resumes whatever CleanSession says; `claimID` completes the
    // application's token at the resend.
    let mut h = Harness::new(ClientOptions::new("c1"));
    assert!(h.client.options().clean_session);
    stored_then_lost(&mut h, 3);
    let outs = h.reconnect(false);
    assert_eq!(
        outs[..3],
        [
            connected(false),
            note("client.session_not_present", ""),
            note("client.resume", "3 PUBLISH, 0 PUBREL"),
        ]
    );
    let order = publish_ids(&outs);
    for (pair, id) in outs[3..].chunks(2).zip(&order) {
        let expected = [
            completed(u64::from(*id), Ok(())),
            sent_publish(QoS::AtLeastOnce, *id, true, &[*id as u8]),
        ];
        assert_eq!(pair, expected);
    }
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!((outs.len(), sorted), (9, vec![1, 2, 3]));
    // A second loss re-sends them again, tokens already complete.
    let outs = h.reconnect(true);
    assert_eq!(outs.len(), 5, "{outs:?}");
    assert_eq!(publish_ids(&outs).len(), 3);
    for id in 1..=3 {
        assert_eq!(h.recv(puback(id)), vec![], "the token completed at the resend");
    }
    assert_eq!(h.client.stored(), 0);
}

/// The ids a fresh client re-sends of 8 stored messages, with the RNG seeded `seed`.
fn resend_order(seed: u64) -> Vec<u16> {
    let mut h = Harness::seeded(ClientOptions::new("c1"), seed);
    stored_then_lost(&mut h, 8);
    publish_ids(&h.connect(true))
}

#[test]
fn store_order_resend_is_a_permutation_drawn_from_the_rng() {
    let orders: Vec<Vec<u16>> = (0..6).map(resend_order).collect();
    let publish_order: Vec<u16> = (1..=8).collect();
    for (seed, order) in orders.iter().enumerate() {
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, publish_order, "seed {seed}: every stored message once");
        assert_eq!(
            *order,
            resend_order(seed as u64),
            "seed {seed}: the same seed, the same order"
        );
    }
    assert!(
        orders.iter().any(|o| *o != publish_order),
        "a Go map's order is not the publish order: {orders:?}"
    );
    assert!(
        orders.iter().any(|o| *o != orders[0]),
        "the seed decides: {orders:?}"
    );
}

#[test]
fn ordered_resend_sends_one_at_a_time_in_publish_order() {
    let mut h = Harness::new(options(|o| o.resend_order = ResendOrder::Ordered));
    h.connect(false);
    for i in 1..=4u8 {
        h.publish(QoS::AtLeastOnce, &[i]);
    }
    h.recv(puback(2));
    h.client.on_closed();
    let resume = note("client.resume", "3 PUBLISH, 0 PUBREL");
    assert_eq!(
        h.connect(true),
        vec![
            connected(true),
            resume,
            completed(1, Ok(())),
            sent_publish(QoS::AtLeastOnce, 1, true, &[1])
        ]
    );
    assert_eq!(
        h.recv(puback(1)),
        vec![
            completed(3, Ok(())),
            sent_publish(QoS::AtLeastOnce, 3, true, &[3])
        ]
    );
    assert_eq!(
        h.recv(puback(3)),
        vec![
            completed(4, Ok(())),
            sent_publish(QoS::AtLeastOnce, 4, true, &[4])
        ]
    );
    assert_eq!(h.recv(puback(4)), vec![]);
    assert_eq!(h.client.stored(), 0);
}

#[test]
fn ordered_resend_waits_for_the_ack_of_the_message_it_resent() {
    // paho's resume releases its semaphore when the resent message's own token completes: an
    // unknown PUBACK, or one for a new publish, does not let the next stored message go.
    let mut h = Harness::new(options(|o| o.resend_order = ResendOrder::Ordered));
    stored_then_lost(&mut h, 3);
    let outs = h.connect(true);
    assert_eq!(publish_ids(&outs), vec![1]);
    assert_eq!(h.recv(puback(77)), vec![]);
    let (token, outs) = h.publish(QoS::AtLeastOnce, b"new");
    assert_eq!(outs, vec![sent_publish(QoS::AtLeastOnce, 4, false, b"new")]);
    assert_eq!(h.recv(puback(4)), vec![completed(token, Ok(()))]);
    assert_eq!(
        h.recv(puback(1)),
        vec![
            completed(2, Ok(())),
            sent_publish(QoS::AtLeastOnce, 2, true, &[2])
        ]
    );
}

#[test]
fn inbound_qos1_is_handed_on_and_acknowledged_only_when_the_handler_is_done() {
    let mut h = Harness::new(ClientOptions::new("c1"));
    h.connect(false);
    let incoming = publish(QoS::AtLeastOnce, Some(5), false, b"in");
    let outs = h.recv(Packet::Publish(incoming.clone()));
    assert_eq!(
        outs,
        vec![Seen::Out(ClientOut::Message(Inbound {
            publish: incoming,
            connection: 1,
        }))]
    );
    let inbound = message(&outs);
    assert_eq!(h.acknowledge(&inbound), vec![Seen::Sent(puback(5))]);
}

#[test]
fn acknowledging_a_message_of_an_earlier_connection_writes_nothing() {
    let mut h = Harness::new(options(|o| o.clean_session = false));
    h.connect(false);
    let inbound = message(&h.recv(Packet::Publish(publish(QoS::AtLeastOnce, Some(5), false, b"in"))));
    h.client.on_closed();
    assert_eq!(h.acknowledge(&inbound), vec![], "no connection");
    h.connect(true);
    assert_eq!(h.acknowledge(&inbound), vec![], "another connection");
    // The broker re-sends it on the new connection; that one is acknowledged.
    let again = message(&h.recv(Packet::Publish(publish(QoS::AtLeastOnce, Some(5), true, b"in"))));
    assert_eq!(again.connection, 2);
    assert_eq!(h.acknowledge(&again), vec![Seen::Sent(puback(5))]);
}

#[test]
fn inbound_qos2_paho_mode_hands_a_resent_publish_on_again() {
    // paho issues #768/#791: no inbound packet ids are kept, so the handler runs twice.
    let mut h = Harness::new(ClientOptions::new("c1"));
    h.connect(false);
    let first = message(&h.recv(Packet::Publish(publish(QoS::ExactlyOnce, Some(9), false, b"x"))));
    assert_eq!(h.acknowledge(&first), vec![Seen::Sent(pubrec(9))]);
    let resent = publish(QoS::ExactlyOnce, Some(9), true, b"x");
    let second = message(&h.recv(Packet::Publish(resent.clone())));
    assert_eq!(second.publish, resent);
    assert_eq!(h.acknowledge(&second), vec![Seen::Sent(pubrec(9))]);
    assert_eq!(h.recv(pubrel(9)), vec![Seen::Sent(pubcomp(9))]);
}

#[test]
fn inbound_qos2_spec_mode_answers_a_resent_publish_with_pubrec_only() {
    let mut h = Harness::new(options(|o| o.spec_qos2 = true));
    h.connect(false);
    let first = message(&h.recv(Packet::Publish(publish(QoS::ExactlyOnce, Some(9), false, b"x"))));
    assert_eq!(h.acknowledge(&first), vec![Seen::Sent(pubrec(9))]);
    let resent = Packet::Publish(publish(QoS::ExactlyOnce, Some(9), true, b"x"));
    assert_eq!(h.recv(resent), vec![Seen::Sent(pubrec(9))]);
    assert_eq!(h.recv(pubrel(9)), vec![Seen::Sent(pubcomp(9))]);
    // Released: the id may carry a new message.
    let next = Packet::Publish(publish(QoS::ExactlyOnce, Some(9), false, b"y"));
    assert_eq!(message(&h.recv(next)).publish.payload, b"y");
}

#[test]
fn keepalive_pings_after_keep_alive_s_without_sending_or_without_receiving() {
    let mut h = Harness::new(options(|o| o.keep_alive_s = 10));
    h.connect(false); // CONNECT sent and CONNACK received at 1000
    assert_eq!(h.tick(10_999), vec![]);
    assert_eq!(h.tick(11_000), vec![Seen::Sent(Packet::Pingreq)]);
    assert_eq!(h.tick(12_000), vec![], "one ping outstanding at a time");
    assert_eq!(h.recv(Packet::Pingresp), vec![]);
    // Received at 12000 but last sent at 11000: quiet one way is enough.
    assert_eq!(h.tick(20_999), vec![]);
    assert_eq!(h.tick(21_000), vec![Seen::Sent(Packet::Pingreq)]);
    // Sending alone does not put the ping off either (last received: the PINGRESP below).
    h.recv(Packet::Pingresp);
    h.now_ms = 29_000;
    h.publish(QoS::AtMostOnce, b"busy");
    assert_eq!(h.tick(30_999), vec![]);
    assert_eq!(h.tick(31_000), vec![Seen::Sent(Packet::Pingreq)]);
    // Not connected: no pings.
    h.client.on_closed();
    assert_eq!(h.tick(90_000), vec![]);
}

#[test]
fn an_unanswered_ping_times_out_and_closes_and_pingresp_clears_it() {
    let mut h = Harness::new(options(|o| {
        o.keep_alive_s = 10;
        o.ping_timeout_ms = 3_000;
    }));
    h.connect(false);
    assert_eq!(h.tick(11_000), vec![Seen::Sent(Packet::Pingreq)]);
    assert_eq!(h.tick(13_999), vec![]);
    let lost = note("client.ping_timeout", "pingresp not received, disconnecting");
    assert_eq!(h.tick(14_000), vec![lost, Seen::Out(ClientOut::Close)]);
    assert!(!h.client.is_connected());
    // A new connection, a ping answered in time: no close at the timeout, the next ping later.
    h.connect(true); // at 14000
    assert_eq!(h.tick(24_000), vec![Seen::Sent(Packet::Pingreq)]);
    h.now_ms = 26_000;
    assert_eq!(h.recv(Packet::Pingresp), vec![]);
    assert_eq!(h.tick(27_000), vec![]);
    assert_eq!(h.tick(34_000), vec![Seen::Sent(Packet::Pingreq)]);
}

#[test]
fn keepalive_checks_every_5_s_above_10_s_else_a_quarter_of_the_keepalive() {
    let interval = |keep_alive_s| Client::new(options(|o| o.keep_alive_s = keep_alive_s)).check_interval_ms();
    assert_eq!(interval(30), 5_000);
    assert_eq!(interval(11), 5_000);
    assert_eq!(interval(10), 2_500);
    assert_eq!(interval(4), 1_000);
    assert_eq!(interval(1), 250);
}

#[test]
fn packet_ids_follow_the_last_wrap_past_65535_to_1_and_skip_ids_in_use() {
    let mut h = Harness::new(ClientOptions::new("c1"));
    h.connect(false);
    let id_of_next = |h: &mut Harness| publish_ids(&h.publish(QoS::AtLeastOnce, b"").1)[0];
    assert_eq!(id_of_next(&mut h), 1);
    assert_eq!(id_of_next(&mut h), 2);
    h.recv(puback(1));
    assert_eq!(id_of_next(&mut h), 3, "after the last, not the lowest free");
    h.recv(puback(3));
    // 1 and 3 free, 2 in use, from 4 up to 65535 each acknowledged at once.
    for expected in 4..=65_535u16 {
        let id = id_of_next(&mut h);
        assert_eq!(id, expected);
        h.recv(puback(id));
    }
    assert_eq!(id_of_next(&mut h), 1, "wraps to 1, never 0");
    assert_eq!(id_of_next(&mut h), 3, "skips 2, still in use");
    // SUBSCRIBE draws from the same ids.
    let mut outs = Vec::new();
    h.client.subscribe(
        h.now_ms,
        vec![Subscription::new("s/#", QoS::AtLeastOnce)],
        &mut outs,
    );
    let Some(Seen::Sent(Packet::Subscribe { packet_id, .. })) = seen(outs).pop() else {
        panic!("no SUBSCRIBE")
    };
    assert_eq!(packet_id, 4);
    let suback = Packet::Suback {
        packet_id: 4,
        properties: Properties::default(),
        reasons: vec![1],
    };
    assert_eq!(
        h.recv(suback),
        vec![Seen::Out(ClientOut::Subscribed { granted: vec![1] })]
    );
}

#[test]
fn session_not_present_is_noted_on_reconnects_and_restarts_not_on_a_fresh_first_connect() {
    let not_present = note("client.session_not_present", "");
    let mut fresh = Harness::new(options(|o| o.clean_session = false));
    assert_eq!(fresh.connect(false), vec![connected(false)]);
    assert_eq!(fresh.reconnect(true), vec![connected(true)]);
    assert_eq!(fresh.reconnect(false), vec![connected(false), not_present]);
    let mut restarted = Harness::new(options(|o| {
        o.clean_session = false;
        o.restarted = true;
    }));
    assert_eq!(
        restarted.connect(false),
        vec![connected(false), note("client.session_not_present", "")]
    );
    let mut restarted = Harness::new(options(|o| o.restarted = true));
    assert_eq!(restarted.connect(true), vec![connected(true)]);
}

#[test]
fn a_garbled_stream_is_noted_and_closed_without_a_panic() {
    let garbage: [&[u8]; 4] = [
        &[0x00, 0x00],                         // reserved packet type 0
        &[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], // remaining length longer than 4 bytes
        &[0x41, 0x02, 0x00, 0x01],             // PUBACK with reserved flags
        &[0x20, 0x03, 0x00, 0x00, 0x00],       // CONNACK one byte too long
    ];
    for bytes in garbage {
        let mut h = Harness::new(ClientOptions::new("c1"));
        h.connect(false);
        let outs = h.bytes(bytes);
        let [Seen::Out(ClientOut::Note { kind, .. }), Seen::Out(ClientOut::Close)] = &outs[..] else {
            panic!("{bytes:?}: {outs:?}")
        };
        assert_eq!(*kind, "client.malformed_packet");
        assert!(!h.client.is_connected());
    }
    // What came before the garbage in the same read is handled; nothing after it is.
    let mut h = Harness::new(ClientOptions::new("c1"));
    h.connect(false);
    let outs = h.bytes(&[0x62, 0x02, 0x00, 0x01, 0x00, 0x00, 0x62, 0x02, 0x00, 0x02]);
    assert_eq!(outs.len(), 3, "{outs:?}");
    assert_eq!(outs[0], Seen::Sent(pubcomp(1)));
    assert!(noted(&outs, "client.malformed_packet"));
    assert_eq!(outs[2], Seen::Out(ClientOut::Close));
}

/// Chunks of bytes from the broker: random, or a well-framed two-byte-body packet of any
/// type (acknowledgements with random ids, and the rest malformed or unexpected).
fn chunk() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..48),
        (0u8..16, any::<u16>()).prop_map(|(kind, id)| {
            let flags = if matches!(kind, 6 | 8 | 10) { 0b0010 } else { 0 };
            vec![kind << 4 | flags, 2, (id >> 8) as u8, id as u8]
        }),
    ]
}

proptest! {
    /// Whatever the broker sends after CONNACK, the client answers with outputs (or closes)
    /// and never panics, stored messages or not, in either QoS 2 mode and resend order.
    #[test]
    fn random_bytes_after_connack_never_panic(
        chunks in proptest::collection::vec(chunk(), 0..12),
        spec_qos2: bool,
        ordered: bool,
        seed: u64,
    ) {
        let mut h = Harness::seeded(options(|o| {
            o.spec_qos2 = spec_qos2;
            o.resend_order = if ordered { ResendOrder::Ordered } else { ResendOrder::StoreOrder };
        }), seed);
        h.connect(false);
        h.publish(QoS::AtLeastOnce, b"1");
        h.publish(QoS::ExactlyOnce, b"2");
        for chunk in chunks {
            let outs = h.bytes(&chunk);
            if outs.contains(&Seen::Out(ClientOut::Close)) {
                prop_assert!(!h.client.is_connected());
                h.connect(true);
            }
            let now = h.now_ms + 1_000;
            h.tick(now);
        }
    }
}
