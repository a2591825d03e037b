//! The codec: round trips for every packet in both protocol generations, and every
//! malformed input the broker must close on.

use super::packet::*;
use proptest::prelude::*;

const MAX: usize = PACKET_SIZE_MAX;

fn round_trip(packet: Packet, version: Version) {
    let bytes = packet.encode(version);
    let decoded = decode(&bytes, Some(version), MAX).expect("decodes");
    assert_eq!(
        decoded,
        Some((packet.clone(), bytes.len())),
        "{packet:?} as {version:?}"
    );
    // Incremental: every proper prefix asks for more.
    for cut in 0..bytes.len() {
        assert_eq!(
            decode(&bytes[..cut], Some(version), MAX),
            Ok(None),
            "prefix {cut} of {packet:?}"
        );
    }
}

fn v5_properties() -> Properties {
    let mut properties = Properties::default();
    properties.push(USER_PROPERTY, PropertyValue::Pair("k".into(), "v".into()));
    properties.push(USER_PROPERTY, PropertyValue::Pair("k".into(), "w".into()));
    properties
}

fn connect(version: Version) -> Connect {
    let mut properties = Properties::default();
    if version.is_v5() {
        properties.push(SESSION_EXPIRY_INTERVAL, PropertyValue::FourByte(60));
        properties.push(RECEIVE_MAXIMUM, PropertyValue::TwoByte(5));
    }
    let mut will_properties = Properties::default();
    if version.is_v5() {
        will_properties.push(WILL_DELAY_INTERVAL, PropertyValue::FourByte(3));
        will_properties.push(CONTENT_TYPE, PropertyValue::Utf8("text/plain".into()));
    }
    Connect {
        version,
        clean_start: false,
        keep_alive_s: 30,
        properties,
        client_id: "client-1".into(),
        will: Some(Will {
            topic: "wills/1".into(),
            payload: b"gone".to_vec(),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: will_properties,
        }),
        username: Some("user".into()),
        password: Some(vec![0, 1, 2]),
    }
}

fn every_packet(version: Version) -> Vec<Packet> {
    let v5 = version.is_v5();
    let properties = if v5 {
        v5_properties()
    } else {
        Properties::default()
    };
    let reason = if v5 { 0x97 } else { 0 };
    let ack = Ack {
        packet_id: 7,
        reason,
        properties: properties.clone(),
    };
    let mut subscription = Subscription::new("a/+/#", QoS::ExactlyOnce);
    if v5 {
        subscription.no_local = true;
        subscription.retain_as_published = true;
        subscription.retain_handling = 2;
    }
    vec![
        Packet::Connect(Box::new(connect(version))),
        Packet::Connack {
            session_present: true,
            reason: 0,
            properties: properties.clone(),
        },
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: "a/b".into(),
            packet_id: Some(65535),
            properties: properties.clone(),
            payload: b"hello".to_vec(),
        }),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "é/ü".into(),
            packet_id: None,
            properties: Properties::default(),
            payload: Vec::new(),
        }),
        Packet::Puback(ack.clone()),
        Packet::Pubrec(ack.clone()),
        Packet::Pubrel(ack.clone()),
        Packet::Pubcomp(Ack::new(1, 0)),
        Packet::Subscribe {
            packet_id: 3,
            properties: properties.clone(),
            subscriptions: vec![subscription, Subscription::new("b", QoS::AtMostOnce)],
        },
        Packet::Suback {
            packet_id: 3,
            properties: properties.clone(),
            reasons: vec![2, 0, 0x80],
        },
        Packet::Unsubscribe {
            packet_id: 4,
            properties: properties.clone(),
            filters: vec!["a/#".into(), "b".into()],
        },
        Packet::Unsuback {
            packet_id: 4,
            properties: properties.clone(),
            reasons: if v5 { vec![0, 0x11] } else { vec![] },
        },
        Packet::Pingreq,
        Packet::Pingresp,
        Packet::Disconnect {
            reason,
            properties: Properties::default(),
        },
    ]
}

#[test]
fn every_packet_round_trips_in_3_1_1_and_5() {
    for version in [Version::V311, Version::V5] {
        for packet in every_packet(version) {
            round_trip(packet, version);
        }
    }
    let mut v31 = connect(Version::V31);
    v31.clean_start = true;
    round_trip(Packet::Connect(Box::new(v31)), Version::V31);
}

#[test]
fn a_connect_is_read_before_the_version_is_known() {
    let bytes = Packet::Connect(Box::new(connect(Version::V5))).encode(Version::V5);
    let (packet, used) = decode(&bytes, None, MAX).unwrap().unwrap();
    assert_eq!(used, bytes.len());
    assert!(
        matches!(packet, Packet::Connect(c) if c.version == Version::V5 && c.properties.u16(RECEIVE_MAXIMUM) == Some(5))
    );
    // Anything else before CONNECT cannot be read.
    assert!(decode(&Packet::Pingreq.encode(Version::V311), None, MAX).is_err());
}

#[test]
fn v5_acks_leave_out_a_success_reason_and_empty_properties() {
    assert_eq!(
        Packet::Puback(Ack::new(1, 0)).encode(Version::V5),
        vec![0x40, 2, 0, 1]
    );
    assert_eq!(
        Packet::Puback(Ack::new(1, 0x97)).encode(Version::V5),
        vec![0x40, 3, 0, 1, 0x97]
    );
    // 3.1.1 has no reason code at all: a refusal looks like success on the wire.
    assert_eq!(
        Packet::Puback(Ack::new(1, 0x97)).encode(Version::V311),
        vec![0x40, 2, 0, 1]
    );
    assert_eq!(
        Packet::Disconnect {
            reason: 0,
            properties: Properties::default()
        }
        .encode(Version::V5),
        vec![0xe0, 0]
    );
}

#[test]
fn remaining_length_varint_boundaries() {
    for (length, header) in [
        (0usize, 2usize),
        (127, 2),
        (128, 3),
        (16_383, 3),
        (16_384, 4),
        (2_097_151, 4),
        (2_097_152, 5),
    ] {
        let publish = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "t".into(),
            packet_id: None,
            properties: Properties::default(),
            payload: vec![7; length.saturating_sub(3)],
        });
        let bytes = publish.encode(Version::V311);
        if length >= 3 {
            assert_eq!(bytes.len(), header + length, "remaining length {length}");
            assert_eq!(
                decode(&bytes, Some(Version::V311), MAX).unwrap().unwrap().1,
                bytes.len()
            );
        }
    }
}

fn malformed(bytes: &[u8], version: Option<Version>) -> MalformedPacket {
    match decode(bytes, version, MAX) {
        Err(error) => error,
        other => panic!("{bytes:02x?} should be malformed, decoded as {other:?}"),
    }
}

#[test]
fn a_remaining_length_of_five_bytes_is_malformed() {
    let error = malformed(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], Some(Version::V311));
    assert!(error.reason.contains("longer than 4 bytes"), "{error}");
    // Four continuation bytes are enough to know, before the fifth arrives.
    assert!(decode(&[0x30, 0xff, 0xff, 0xff], Some(Version::V311), MAX) == Ok(None));
    assert!(decode(&[0x30, 0xff, 0xff, 0xff, 0xff], Some(Version::V311), MAX).is_err());
}

#[test]
fn a_packet_over_the_limit_is_refused_from_its_header_alone() {
    // 10 MiB declared, 5 bytes sent: refused now, not after buffering 10 MiB.
    let header = [0x30, 0x80, 0x80, 0x80, 0x05];
    let error = decode(&header, Some(Version::V311), 1024 * 1024).unwrap_err();
    assert!(error.reason.contains("exceeds the maximum"), "{error}");
    assert_eq!(decode(&header, Some(Version::V311), MAX), Ok(None));
}

#[test]
fn reserved_fixed_header_flags_are_malformed() {
    let v = Some(Version::V311);
    for (first, rest) in [
        (0x60u8, &[2u8, 0, 1][..]), // PUBREL without 0b0010
        (0x80, &[5, 0, 1, 0, 1, b'a'][..]),
        (0xa0, &[5, 0, 1, 0, 1, b'a'][..]),
        (0x41, &[2, 0, 1][..]), // PUBACK with flags
        (0xc1, &[0][..]),       // PINGREQ with flags
        (0xe2, &[0][..]),       // DISCONNECT with flags
        (0x00, &[0][..]),       // reserved type 0
    ] {
        let mut bytes = vec![first];
        bytes.extend_from_slice(rest);
        malformed(&bytes, v);
    }
    // The right flags read.
    assert!(decode(&[0x62, 2, 0, 1], v, MAX).unwrap().is_some());
}

#[test]
fn publish_with_qos_3_is_malformed() {
    malformed(&[0x36, 5, 0, 1, b'a', 0, 1], Some(Version::V311));
}

#[test]
fn packet_id_zero_is_malformed_where_one_is_required() {
    let v = Some(Version::V311);
    malformed(&[0x32, 5, 0, 1, b'a', 0, 0], v); // PUBLISH QoS 1
    malformed(&[0x40, 2, 0, 0], v);
    malformed(&[0x50, 2, 0, 0], v);
    malformed(&[0x62, 2, 0, 0], v);
    malformed(&[0x70, 2, 0, 0], v);
    malformed(&[0x82, 6, 0, 0, 0, 1, b'a', 0], v);
    malformed(&[0xa2, 5, 0, 0, 0, 1, b'a'], v);
    // QoS 0 has none, so its bytes after the topic are payload.
    assert!(decode(&[0x30, 5, 0, 1, b'a', 0, 0], v, MAX).unwrap().is_some());
}

#[test]
fn strings_must_be_utf8_without_nul() {
    let v = Some(Version::V311);
    malformed(&[0x30, 4, 0, 2, b'a', 0], v); // U+0000
    malformed(&[0x30, 4, 0, 2, 0xc3, 0x28], v); // invalid sequence
    malformed(&[0x30, 5, 0, 3, 0xed, 0xa0, 0x80], v); // a UTF-16 surrogate
    malformed(&[0x30, 4, 0, 2, 0xc0, 0x80], v); // overlong U+0000
    malformed(&[0x30, 3, 0, 5, b'a'], v); // string longer than the packet
    assert!(decode(&[0x30, 4, 0, 2, 0xc3, 0xa9], v, MAX).unwrap().is_some()); // é
}

fn connect_bytes(name: &[u8], level: u8, flags: u8, tail: &[u8]) -> Vec<u8> {
    let mut body = vec![0, name.len() as u8];
    body.extend_from_slice(name);
    body.extend_from_slice(&[level, flags, 0, 60]);
    body.extend_from_slice(tail);
    let mut bytes = vec![0x10, body.len() as u8];
    bytes.extend(body);
    bytes
}

#[test]
fn connect_checks_name_level_and_flags() {
    let id = [0, 1, b'c'];
    assert!(decode(&connect_bytes(b"MQTT", 4, 0x02, &id), None, MAX)
        .unwrap()
        .is_some());
    // A wrong protocol level: CONNACK 0x01, then close.
    assert_eq!(
        malformed(&connect_bytes(b"MQTT", 3, 0x02, &id), None).connack,
        Some(0x01)
    );
    assert_eq!(
        malformed(&connect_bytes(b"MQIsdp", 4, 0x02, &id), None).connack,
        Some(0x01)
    );
    // A wrong protocol name: closed without a CONNACK.
    assert_eq!(
        malformed(&connect_bytes(b"MQTX", 4, 0x02, &id), None).connack,
        None
    );
    // Reserved flag, will QoS 3, will bits without a will, password without username.
    for flags in [0x03, 0x1e, 0x08, 0x20, 0x42] {
        let error = malformed(&connect_bytes(b"MQTT", 4, flags, &id), None);
        assert_eq!(error.connack, None, "flags {flags:#04x}");
    }
    // MQTT 5 allows a password without a username.
    let mut tail = vec![0]; // no properties
    tail.extend_from_slice(&id);
    tail.extend_from_slice(&[0, 1, b'p']);
    assert!(decode(&connect_bytes(b"MQTT", 5, 0x42, &tail), None, MAX)
        .unwrap()
        .is_some());
    // Bytes left over after CONNECT's fields.
    let mut long = id.to_vec();
    long.push(9);
    malformed(&connect_bytes(b"MQTT", 4, 0x02, &long), None);
}

#[test]
fn subscribe_checks_its_payload() {
    let v = Some(Version::V311);
    malformed(&[0x82, 2, 0, 1], v); // no filter
    malformed(&[0x82, 6, 0, 1, 0, 1, b'a', 3], v); // requested QoS 3
    malformed(&[0x82, 6, 0, 1, 0, 1, b'a', 0x04], v); // 3.1.1 reserved option bits
    malformed(&[0xa2, 2, 0, 1], v); // UNSUBSCRIBE with no filter
    let v5 = Some(Version::V5);
    malformed(&[0x82, 7, 0, 1, 0, 0, 1, b'a', 0x30], v5); // retain handling 3
    malformed(&[0x82, 7, 0, 1, 0, 0, 1, b'a', 0x40], v5); // reserved bits
    let ok = decode(&[0x82, 7, 0, 1, 0, 0, 1, b'a', 0x2e], v5, MAX)
        .unwrap()
        .unwrap()
        .0;
    let Packet::Subscribe { subscriptions, .. } = ok else {
        panic!("{ok:?}")
    };
    assert_eq!(subscriptions[0].qos, QoS::ExactlyOnce);
    assert!(subscriptions[0].no_local && subscriptions[0].retain_as_published);
    assert_eq!(subscriptions[0].retain_handling, 2);
}

#[test]
fn short_and_long_fixed_size_packets_are_malformed() {
    let v = Some(Version::V311);
    malformed(&[0x40, 3, 0, 1, 0], v); // 3.1.1 PUBACK with a reason code
    malformed(&[0x40, 1, 0], v);
    malformed(&[0xc0, 1, 0], v); // PINGREQ with a body
    malformed(&[0xe0, 1, 0], v); // 3.1.1 DISCONNECT with a reason
    malformed(&[0xf0, 0], v); // AUTH before MQTT 5
}

#[test]
fn v5_properties_are_checked_for_type_place_and_repeats() {
    let v5 = Some(Version::V5);
    // PUBLISH "a" QoS 0 with properties.
    let publish = |props: &[u8]| {
        let mut body = vec![0, 1, b'a', props.len() as u8];
        body.extend_from_slice(props);
        let mut bytes = vec![0x30, body.len() as u8];
        bytes.extend(body);
        bytes
    };
    let ok = decode(&publish(&[0x01, 1, 0x23, 0, 3]), v5, MAX)
        .unwrap()
        .unwrap()
        .0;
    let Packet::Publish(p) = ok else { panic!() };
    assert_eq!(p.properties.u16(TOPIC_ALIAS), Some(3));
    malformed(&publish(&[0x7f, 0]), v5); // unknown property
    malformed(&publish(&[0x11, 0, 0, 0, 1]), v5); // session expiry is not for PUBLISH
    malformed(&publish(&[0x01, 1, 0x01, 0]), v5); // payload format twice
    malformed(&publish(&[0x01, 2]), v5); // payload format 2
    malformed(&publish(&[0x23, 0, 0]), v5); // topic alias 0
    malformed(&publish(&[0x02, 0, 0]), v5); // four-byte value cut short
                                            // User properties may repeat.
    assert!(decode(
        &publish(&[0x26, 0, 1, b'k', 0, 0, 0x26, 0, 1, b'k', 0, 0]),
        v5,
        MAX
    )
    .is_ok());
}

proptest! {
    /// Whatever bytes arrive, decoding answers (a packet, "more please", or malformed) and
    /// never panics or claims more than it was given.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), version in 0usize..4) {
        let version = [None, Some(Version::V31), Some(Version::V311), Some(Version::V5)][version];
        if let Ok(Some((_, used))) = decode(&bytes, version, MAX) {
            prop_assert!(used <= bytes.len());
        }
    }

    /// Any PUBLISH round-trips, and decoding is independent of what follows it.
    #[test]
    fn publish_round_trips(
        topic in "[a-z/]{1,20}",
        payload in proptest::collection::vec(any::<u8>(), 0..200),
        qos in 0u8..3,
        packet_id in 1u16..,
        dup: bool,
        retain: bool,
        v5: bool,
        tail in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let version = if v5 { Version::V5 } else { Version::V311 };
        let qos = QoS::from_bits(qos).unwrap();
        let publish = Packet::Publish(Publish {
            dup, qos, retain, topic,
            packet_id: (qos != QoS::AtMostOnce).then_some(packet_id),
            properties: Properties::default(),
            payload,
        });
        let mut bytes = publish.encode(version);
        let length = bytes.len();
        bytes.extend(tail);
        prop_assert_eq!(decode(&bytes, Some(version), MAX), Ok(Some((publish, length))));
    }
}
