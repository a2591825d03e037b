//! MQTT control packets, 3.1, 3.1.1 and 5.0, sans I/O (reference §3): a [`Packet`] enum,
//! [`Packet::encode`] and the incremental [`decode`].
//!
//! [`decode`] returns `Ok(None)` until a whole packet has arrived, `Ok(Some((packet, used)))`
//! once it has, and a [`MalformedPacket`] (never a panic) for input a broker must close the
//! connection on. It checks the declared size against a limit *before* waiting for the body,
//! and never allocates from a declared length, so a client can make the caller buffer at
//! most `max_packet_size` bytes.
//!
//! Exactness that matters (MQTT 3.1.1 §2–3, MQTT 5 §2–3, and what mosquitto 2.0 closes on):
//! - the remaining length is a varint of at most 4 bytes;
//! - reserved fixed-header flags: PUBREL, SUBSCRIBE and UNSUBSCRIBE carry 0b0010, every other
//!   type but PUBLISH 0b0000; PUBLISH with QoS bits 11 is malformed;
//! - strings are UTF-8 without U+0000 (mosquitto's `mosquitto_validate_utf8` accepts exactly
//!   what Rust's `str::from_utf8` does, minus U+0000);
//! - a packet identifier of 0 where one is required is malformed;
//! - MQTT 5 properties: each identifier's type, where it may appear, and which may repeat.
//!
//! Checks that need connection state (CONNECT first, only once) belong to the broker.

// A sans-I/O core: every function reads at once (ARCHITECTURE.md, "Short functions").
#![deny(clippy::too_many_lines)]

use serde::{Deserialize, Serialize};
use std::fmt;

/// The largest remaining length the 4-byte varint can say (MQTT §2.2.3).
pub const REMAINING_LENGTH_MAX: usize = 268_435_455;
/// The largest whole packet: a remaining length of [`REMAINING_LENGTH_MAX`] and its 5-byte
/// fixed header.
pub const PACKET_SIZE_MAX: usize = REMAINING_LENGTH_MAX + 5;

/// The protocol level a connection speaks (CONNECT's protocol level byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Version {
    /// MQTT 3.1, protocol name `MQIsdp`.
    V31 = 3,
    /// MQTT 3.1.1, protocol name `MQTT`.
    V311 = 4,
    /// MQTT 5.0, protocol name `MQTT`.
    V5 = 5,
}

impl Version {
    pub fn is_v5(self) -> bool {
        self == Version::V5
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    pub fn from_bits(bits: u8) -> Option<QoS> {
        match bits {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// Why a packet cannot be read: the connection must be closed. `connack` is the CONNACK
/// return code a broker sends first, if any (mosquitto answers a wrong protocol level with
/// 0x01 and closes; everything else closes without a reply, reference §3.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalformedPacket {
    pub reason: String,
    pub connack: Option<u8>,
}

impl MalformedPacket {
    fn new(reason: impl Into<String>) -> MalformedPacket {
        MalformedPacket {
            reason: reason.into(),
            connack: None,
        }
    }
}

impl fmt::Display for MalformedPacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed packet: {}", self.reason)
    }
}

impl std::error::Error for MalformedPacket {}

type Result<T> = std::result::Result<T, MalformedPacket>;

fn malformed<T>(reason: impl Into<String>) -> Result<T> {
    Err(MalformedPacket::new(reason))
}

/// One MQTT 5 property value, by its wire type (MQTT 5 §2.2.2.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PropertyValue {
    Byte(u8),
    TwoByte(u16),
    FourByte(u32),
    VarInt(u32),
    Utf8(String),
    Binary(Vec<u8>),
    Pair(String, String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Property {
    pub id: u8,
    pub value: PropertyValue,
}

/// An MQTT 5 property list, in wire order (empty for MQTT 3).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Properties(pub Vec<Property>);

pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
pub const CONTENT_TYPE: u8 = 0x03;
pub const RESPONSE_TOPIC: u8 = 0x08;
pub const CORRELATION_DATA: u8 = 0x09;
pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
pub const SERVER_KEEP_ALIVE: u8 = 0x13;
pub const AUTHENTICATION_METHOD: u8 = 0x15;
pub const AUTHENTICATION_DATA: u8 = 0x16;
pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
pub const WILL_DELAY_INTERVAL: u8 = 0x18;
pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
pub const RESPONSE_INFORMATION: u8 = 0x1A;
pub const SERVER_REFERENCE: u8 = 0x1C;
pub const REASON_STRING: u8 = 0x1F;
pub const RECEIVE_MAXIMUM: u8 = 0x21;
pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
pub const TOPIC_ALIAS: u8 = 0x23;
pub const MAXIMUM_QOS: u8 = 0x24;
pub const RETAIN_AVAILABLE: u8 = 0x25;
pub const USER_PROPERTY: u8 = 0x26;
pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

/// Where properties appear: a packet type (1..=15), or [`WILL`] for a CONNECT's will.
const WILL: u8 = 0;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    Byte,
    TwoByte,
    FourByte,
    VarInt,
    Utf8,
    Binary,
    Pair,
}

const fn mask(places: &[u8]) -> u16 {
    let mut bits = 0u16;
    let mut i = 0;
    while i < places.len() {
        bits |= 1 << places[i];
        i += 1;
    }
    bits
}

/// A property's wire type and the places it may appear (MQTT 5 §2.2.2.2, table 2-4).
fn property_kind(id: u8) -> Option<(Wire, u16)> {
    const ACKS: &[u8] = &[2, 4, 5, 6, 7, 9, 11, 14, 15];
    let kind = match id {
        PAYLOAD_FORMAT_INDICATOR => (Wire::Byte, mask(&[3, WILL])),
        MESSAGE_EXPIRY_INTERVAL => (Wire::FourByte, mask(&[3, WILL])),
        CONTENT_TYPE | RESPONSE_TOPIC => (Wire::Utf8, mask(&[3, WILL])),
        CORRELATION_DATA => (Wire::Binary, mask(&[3, WILL])),
        SUBSCRIPTION_IDENTIFIER => (Wire::VarInt, mask(&[3, 8])),
        SESSION_EXPIRY_INTERVAL => (Wire::FourByte, mask(&[1, 2, 14])),
        ASSIGNED_CLIENT_IDENTIFIER | RESPONSE_INFORMATION => (Wire::Utf8, mask(&[2])),
        SERVER_KEEP_ALIVE => (Wire::TwoByte, mask(&[2])),
        AUTHENTICATION_METHOD => (Wire::Utf8, mask(&[1, 2, 15])),
        AUTHENTICATION_DATA => (Wire::Binary, mask(&[1, 2, 15])),
        REQUEST_PROBLEM_INFORMATION | REQUEST_RESPONSE_INFORMATION => (Wire::Byte, mask(&[1])),
        WILL_DELAY_INTERVAL => (Wire::FourByte, mask(&[WILL])),
        SERVER_REFERENCE => (Wire::Utf8, mask(&[2, 14])),
        REASON_STRING => (Wire::Utf8, mask(ACKS)),
        RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM => (Wire::TwoByte, mask(&[1, 2])),
        TOPIC_ALIAS => (Wire::TwoByte, mask(&[3])),
        MAXIMUM_QOS | RETAIN_AVAILABLE => (Wire::Byte, mask(&[2])),
        USER_PROPERTY => (Wire::Pair, u16::MAX),
        MAXIMUM_PACKET_SIZE => (Wire::FourByte, mask(&[1, 2])),
        WILDCARD_SUBSCRIPTION_AVAILABLE
        | SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | SHARED_SUBSCRIPTION_AVAILABLE => (Wire::Byte, mask(&[2])),
        _ => return None,
    };
    Some(kind)
}

impl Properties {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, id: u8) -> Option<&PropertyValue> {
        self.0.iter().find(|p| p.id == id).map(|p| &p.value)
    }

    pub fn u32(&self, id: u8) -> Option<u32> {
        match self.get(id)? {
            PropertyValue::FourByte(v) | PropertyValue::VarInt(v) => Some(*v),
            _ => None,
        }
    }

    pub fn u16(&self, id: u8) -> Option<u16> {
        match self.get(id)? {
            PropertyValue::TwoByte(v) => Some(*v),
            _ => None,
        }
    }

    pub fn push(&mut self, id: u8, value: PropertyValue) {
        self.0.push(Property { id, value });
    }

    /// The same list without the properties `drop` names.
    pub fn without(&self, drop: &[u8]) -> Properties {
        Properties(self.0.iter().filter(|p| !drop.contains(&p.id)).cloned().collect())
    }

    fn read(reader: &mut Reader<'_>, place: u8) -> Result<Properties> {
        let length = reader.varint()? as usize;
        let mut inner = Reader::new(reader.take(length)?);
        let mut properties = Properties::default();
        while !inner.is_empty() {
            let id = inner.varint()?;
            let id = u8::try_from(id).map_err(|_| MalformedPacket::new(format!("property id {id}")))?;
            let Some((wire, places)) = property_kind(id) else {
                return malformed(format!("unknown property 0x{id:02x}"));
            };
            if places & (1 << place) == 0 {
                return malformed(format!("property 0x{id:02x} not allowed in packet type {place}"));
            }
            let repeatable = id == USER_PROPERTY || (id == SUBSCRIPTION_IDENTIFIER && place == 3);
            if !repeatable && properties.get(id).is_some() {
                return malformed(format!("property 0x{id:02x} given twice"));
            }
            let value = inner.property_value(wire)?;
            check_property_value(id, &value)?;
            properties.push(id, value);
        }
        Ok(properties)
    }

    fn write(&self, out: &mut Vec<u8>) {
        let mut body = Vec::new();
        for property in &self.0 {
            write_varint(&mut body, u32::from(property.id));
            match &property.value {
                PropertyValue::Byte(v) => body.push(*v),
                PropertyValue::TwoByte(v) => body.extend_from_slice(&v.to_be_bytes()),
                PropertyValue::FourByte(v) => body.extend_from_slice(&v.to_be_bytes()),
                PropertyValue::VarInt(v) => write_varint(&mut body, *v),
                PropertyValue::Utf8(s) => write_string(&mut body, s),
                PropertyValue::Binary(b) => write_binary(&mut body, b),
                PropertyValue::Pair(k, v) => {
                    write_string(&mut body, k);
                    write_string(&mut body, v);
                }
            }
        }
        write_varint(out, body.len() as u32);
        out.extend_from_slice(&body);
    }
}

/// Values the spec calls a protocol error (MQTT 5 §3.1.2.11, §3.3.2.3).
fn check_property_value(id: u8, value: &PropertyValue) -> Result<()> {
    let bad = match (id, value) {
        (
            PAYLOAD_FORMAT_INDICATOR | REQUEST_PROBLEM_INFORMATION | REQUEST_RESPONSE_INFORMATION,
            PropertyValue::Byte(v),
        ) => *v > 1,
        (MAXIMUM_QOS | RETAIN_AVAILABLE, PropertyValue::Byte(v)) => *v > 1,
        (RECEIVE_MAXIMUM | TOPIC_ALIAS, PropertyValue::TwoByte(v)) => *v == 0,
        (MAXIMUM_PACKET_SIZE, PropertyValue::FourByte(v)) => *v == 0,
        (SUBSCRIPTION_IDENTIFIER, PropertyValue::VarInt(v)) => *v == 0,
        _ => false,
    };
    if bad {
        return malformed(format!("property 0x{id:02x} has a forbidden value"));
    }
    Ok(())
}

/// An application message as PUBLISH carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    pub topic: String,
    /// Present exactly when `qos > 0`.
    pub packet_id: Option<u16>,
    pub properties: Properties,
    pub payload: Vec<u8>,
}

/// A CONNECT's will message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
    pub properties: Properties,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    pub version: Version,
    pub clean_start: bool,
    pub keep_alive_s: u16,
    pub properties: Properties,
    pub client_id: String,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP: a packet identifier, and in MQTT 5 a reason code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub packet_id: u16,
    pub reason: u8,
    pub properties: Properties,
}

impl Ack {
    pub fn new(packet_id: u16, reason: u8) -> Ack {
        Ack {
            packet_id,
            reason,
            properties: Properties::default(),
        }
    }
}

/// One SUBSCRIBE entry: a filter and its options byte's fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub filter: String,
    pub qos: QoS,
    /// MQTT 5: do not send the subscriber's own publications back to it.
    pub no_local: bool,
    /// MQTT 5: keep the RETAIN flag of a forwarded message.
    pub retain_as_published: bool,
    /// MQTT 5: 0 send retained messages, 1 only for a new subscription, 2 never.
    pub retain_handling: u8,
}

impl Subscription {
    pub fn new(filter: &str, qos: QoS) -> Subscription {
        Subscription {
            filter: filter.to_string(),
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    Connack {
        session_present: bool,
        /// 3.1.1's return code or 5's reason code.
        reason: u8,
        properties: Properties,
    },
    Publish(Publish),
    Puback(Ack),
    Pubrec(Ack),
    Pubrel(Ack),
    Pubcomp(Ack),
    Subscribe {
        packet_id: u16,
        properties: Properties,
        subscriptions: Vec<Subscription>,
    },
    Suback {
        packet_id: u16,
        properties: Properties,
        reasons: Vec<u8>,
    },
    Unsubscribe {
        packet_id: u16,
        properties: Properties,
        filters: Vec<String>,
    },
    Unsuback {
        packet_id: u16,
        properties: Properties,
        /// MQTT 5 only; empty for 3.1.1.
        reasons: Vec<u8>,
    },
    Pingreq,
    Pingresp,
    Disconnect {
        reason: u8,
        properties: Properties,
    },
    /// MQTT 5 AUTH.
    Auth {
        reason: u8,
        properties: Properties,
    },
}

/// A cursor over one packet's body; every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, position: 0 }
    }

    fn is_empty(&self) -> bool {
        self.position == self.bytes.len()
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return malformed(format!("{n} bytes wanted, {} left", self.remaining()));
        }
        let taken = &self.bytes[self.position..self.position + n];
        self.position += n;
        Ok(taken)
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.position..];
        self.position = self.bytes.len();
        rest
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn packet_id(&mut self) -> Result<u16> {
        match self.u16()? {
            0 => malformed("packet identifier 0"),
            id => Ok(id),
        }
    }

    fn varint(&mut self) -> Result<u32> {
        let mut value = 0u32;
        for i in 0..4 {
            let byte = self.u8()?;
            value |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        malformed("variable byte integer longer than 4 bytes")
    }

    fn binary(&mut self) -> Result<&'a [u8]> {
        let length = self.u16()? as usize;
        self.take(length)
    }

    fn string(&mut self) -> Result<String> {
        let bytes = self.binary()?;
        let text = std::str::from_utf8(bytes).map_err(|_| MalformedPacket::new("string is not UTF-8"))?;
        if text.contains('\0') {
            return malformed("string contains U+0000");
        }
        Ok(text.to_string())
    }

    fn property_value(&mut self, wire: Wire) -> Result<PropertyValue> {
        Ok(match wire {
            Wire::Byte => PropertyValue::Byte(self.u8()?),
            Wire::TwoByte => PropertyValue::TwoByte(self.u16()?),
            Wire::FourByte => PropertyValue::FourByte(self.u32()?),
            Wire::VarInt => PropertyValue::VarInt(self.varint()?),
            Wire::Utf8 => PropertyValue::Utf8(self.string()?),
            Wire::Binary => PropertyValue::Binary(self.binary()?.to_vec()),
            Wire::Pair => PropertyValue::Pair(self.string()?, self.string()?),
        })
    }

    fn end(&self, what: &str) -> Result<()> {
        if !self.is_empty() {
            return malformed(format!("{} bytes after the {what}", self.remaining()));
        }
        Ok(())
    }
}

/// The fixed header, once enough of it has arrived: (first byte, remaining length, header
/// length). The remaining length is checked against `max_packet_size` here, before anyone
/// waits for (and buffers) the body.
fn fixed_header(buf: &[u8], max_packet_size: usize) -> Result<Option<(u8, usize, usize)>> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let header = 2 + i;
            if header + remaining > max_packet_size {
                return malformed(format!(
                    "packet of {} bytes exceeds the maximum of {max_packet_size}",
                    header + remaining
                ));
            }
            return Ok(Some((first, remaining, header)));
        }
    }
    malformed("remaining length longer than 4 bytes")
}

/// Reads one packet from the front of `buf`. `version` is the connection's protocol level
/// once CONNECT has been read (`None` before: only a CONNECT can be read then, as it
/// carries its own level). Returns the packet and the bytes it used.
pub fn decode(
    buf: &[u8],
    version: Option<Version>,
    max_packet_size: usize,
) -> Result<Option<(Packet, usize)>> {
    let Some((first, remaining, header)) = fixed_header(buf, max_packet_size)? else {
        return Ok(None);
    };
    if buf.len() < header + remaining {
        return Ok(None);
    }
    let body = &buf[header..header + remaining];
    let (kind, flags) = (first >> 4, first & 0x0f);
    let expected_flags = match kind {
        3 => flags,
        6 | 8 | 10 => 0b0010,
        _ => 0,
    };
    if flags != expected_flags {
        return malformed(format!("packet type {kind} with flags {flags:#06b}"));
    }
    let packet = match (kind, version) {
        (1, _) => Packet::Connect(Box::new(read_connect(body)?)),
        (_, None) => return malformed(format!("packet type {kind} before CONNECT's version is known")),
        (_, Some(version)) => read_body(kind, flags, body, version)?,
    };
    Ok(Some((packet, header + remaining)))
}

fn read_body(kind: u8, flags: u8, body: &[u8], version: Version) -> Result<Packet> {
    let mut reader = Reader::new(body);
    let v5 = version.is_v5();
    let packet = match kind {
        2 => read_connack(&mut reader, v5)?,
        3 => Packet::Publish(read_publish(&mut reader, flags, v5)?),
        4 => Packet::Puback(read_ack(&mut reader, kind, v5)?),
        5 => Packet::Pubrec(read_ack(&mut reader, kind, v5)?),
        6 => Packet::Pubrel(read_ack(&mut reader, kind, v5)?),
        7 => Packet::Pubcomp(read_ack(&mut reader, kind, v5)?),
        8 => read_subscribe(&mut reader, v5)?,
        9 | 11 => read_subscribe_ack(&mut reader, kind, v5)?,
        10 => read_unsubscribe(&mut reader, v5)?,
        12 => Packet::Pingreq,
        13 => Packet::Pingresp,
        14 | 15 => read_disconnect_or_auth(&mut reader, kind, v5)?,
        _ => return malformed(format!("reserved packet type {kind}")),
    };
    reader.end("packet")?;
    Ok(packet)
}

fn read_connect(body: &[u8]) -> Result<Connect> {
    let mut reader = Reader::new(body);
    let version = read_protocol(&mut reader)?;
    let v5 = version.is_v5();
    let flags = reader.u8()?;
    if flags & 0x01 != 0 {
        return malformed("reserved connect flag set");
    }
    let will_flag = flags & 0x04 != 0;
    let will_retain = flags & 0x20 != 0;
    let (has_password, has_username) = (flags & 0x40 != 0, flags & 0x80 != 0);
    if !will_flag && (flags & 0x18 != 0 || will_retain) {
        return malformed("will QoS or retain without a will");
    }
    let will_qos = QoS::from_bits((flags >> 3) & 0x03).ok_or_else(|| MalformedPacket::new("will QoS 3"))?;
    if has_password && !has_username && !v5 {
        return malformed("password without a username");
    }
    let keep_alive_s = reader.u16()?;
    let properties = if v5 {
        Properties::read(&mut reader, 1)?
    } else {
        Properties::default()
    };
    let client_id = reader.string()?;
    let will = if will_flag {
        let properties = if v5 {
            Properties::read(&mut reader, WILL)?
        } else {
            Properties::default()
        };
        let topic = reader.string()?;
        let payload = reader.binary()?.to_vec();
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if has_username {
        Some(reader.string()?)
    } else {
        None
    };
    let password = if has_password {
        Some(reader.binary()?.to_vec())
    } else {
        None
    };
    reader.end("CONNECT")?;
    let clean_start = flags & 0x02 != 0;
    Ok(Connect {
        version,
        clean_start,
        keep_alive_s,
        properties,
        client_id,
        will,
        username,
        password,
    })
}

/// The protocol name and level. mosquitto closes on an unknown name without a word, and
/// answers a known name with a level it does not speak with CONNACK 0x01.
fn read_protocol(reader: &mut Reader<'_>) -> Result<Version> {
    let name = reader.binary()?;
    let level = reader.u8()?;
    match (name, level) {
        (b"MQTT", 4) => Ok(Version::V311),
        (b"MQTT", 5) => Ok(Version::V5),
        (b"MQIsdp", 3) => Ok(Version::V31),
        (b"MQTT" | b"MQIsdp", _) => Err(MalformedPacket {
            reason: format!("unsupported protocol level {level}"),
            connack: Some(0x01),
        }),
        _ => malformed("unknown protocol name"),
    }
}

fn read_connack(reader: &mut Reader<'_>, v5: bool) -> Result<Packet> {
    let flags = reader.u8()?;
    if flags & 0xfe != 0 {
        return malformed("reserved CONNACK flags set");
    }
    let reason = reader.u8()?;
    let properties = if v5 {
        Properties::read(reader, 2)?
    } else {
        Properties::default()
    };
    Ok(Packet::Connack {
        session_present: flags & 1 == 1,
        reason,
        properties,
    })
}

fn read_publish(reader: &mut Reader<'_>, flags: u8, v5: bool) -> Result<Publish> {
    let qos =
        QoS::from_bits((flags >> 1) & 0x03).ok_or_else(|| MalformedPacket::new("PUBLISH with QoS 3"))?;
    let topic = reader.string()?;
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(reader.packet_id()?)
    };
    let properties = if v5 {
        Properties::read(reader, 3)?
    } else {
        Properties::default()
    };
    Ok(Publish {
        dup: flags & 0x08 != 0,
        qos,
        retain: flags & 0x01 != 0,
        topic,
        packet_id,
        properties,
        payload: reader.rest().to_vec(),
    })
}

fn read_ack(reader: &mut Reader<'_>, kind: u8, v5: bool) -> Result<Ack> {
    let packet_id = reader.packet_id()?;
    // MQTT 5 §3.4.2.1: the reason code, and then the properties, may be left out.
    let reason = if v5 && !reader.is_empty() { reader.u8()? } else { 0 };
    let properties = if v5 && !reader.is_empty() {
        Properties::read(reader, kind)?
    } else {
        Properties::default()
    };
    Ok(Ack {
        packet_id,
        reason,
        properties,
    })
}

fn read_subscribe(reader: &mut Reader<'_>, v5: bool) -> Result<Packet> {
    let packet_id = reader.packet_id()?;
    let properties = if v5 {
        Properties::read(reader, 8)?
    } else {
        Properties::default()
    };
    let mut subscriptions = Vec::new();
    while !reader.is_empty() {
        let filter = reader.string()?;
        let options = reader.u8()?;
        let reserved = if v5 { 0xc0 } else { 0xfc };
        if options & reserved != 0 {
            return malformed("reserved subscription option bits set");
        }
        let qos = QoS::from_bits(options & 0x03).ok_or_else(|| MalformedPacket::new("requested QoS 3"))?;
        let retain_handling = (options >> 4) & 0x03;
        if retain_handling == 3 {
            return malformed("retain handling 3");
        }
        subscriptions.push(Subscription {
            filter,
            qos,
            no_local: options & 0x04 != 0,
            retain_as_published: options & 0x08 != 0,
            retain_handling,
        });
    }
    if subscriptions.is_empty() {
        return malformed("SUBSCRIBE without a topic filter");
    }
    Ok(Packet::Subscribe {
        packet_id,
        properties,
        subscriptions,
    })
}

fn read_subscribe_ack(reader: &mut Reader<'_>, kind: u8, v5: bool) -> Result<Packet> {
    let packet_id = reader.packet_id()?;
    let properties = if v5 {
        Properties::read(reader, kind)?
    } else {
        Properties::default()
    };
    let reasons = reader.rest().to_vec();
    Ok(if kind == 9 {
        Packet::Suback {
            packet_id,
            properties,
            reasons,
        }
    } else {
        Packet::Unsuback {
            packet_id,
            properties,
            reasons,
        }
    })
}

fn read_unsubscribe(reader: &mut Reader<'_>, v5: bool) -> Result<Packet> {
    let packet_id = reader.packet_id()?;
    let properties = if v5 {
        Properties::read(reader, 10)?
    } else {
        Properties::default()
    };
    let mut filters = Vec::new();
    while !reader.is_empty() {
        filters.push(reader.string()?);
    }
    if filters.is_empty() {
        return malformed("UNSUBSCRIBE without a topic filter");
    }
    Ok(Packet::Unsubscribe {
        packet_id,
        properties,
        filters,
    })
}

fn read_disconnect_or_auth(reader: &mut Reader<'_>, kind: u8, v5: bool) -> Result<Packet> {
    if !v5 && kind == 15 {
        return malformed("AUTH before MQTT 5");
    }
    let reason = if v5 && !reader.is_empty() { reader.u8()? } else { 0 };
    let properties = if v5 && !reader.is_empty() {
        Properties::read(reader, kind)?
    } else {
        Properties::default()
    };
    Ok(if kind == 14 {
        Packet::Disconnect { reason, properties }
    } else {
        Packet::Auth { reason, properties }
    })
}

fn write_varint(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let mut byte = (value & 0x7f) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if value == 0 {
            return;
        }
    }
}

fn write_binary(out: &mut Vec<u8>, bytes: &[u8]) {
    assert!(
        bytes.len() <= usize::from(u16::MAX),
        "a string or binary field over 65535 bytes"
    );
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn write_string(out: &mut Vec<u8>, text: &str) {
    write_binary(out, text.as_bytes());
}

fn write_options(properties: &Properties, v5: bool, out: &mut Vec<u8>) {
    if v5 {
        properties.write(out);
    }
}

impl Packet {
    /// The packet's bytes as a connection speaking `version` sends them.
    pub fn encode(&self, version: Version) -> Vec<u8> {
        let mut body = Vec::new();
        let first = self.write_body(version, &mut body);
        assert!(
            body.len() <= REMAINING_LENGTH_MAX,
            "packet body over the protocol's maximum"
        );
        let mut out = Vec::with_capacity(body.len() + 5);
        out.push(first);
        write_varint(&mut out, body.len() as u32);
        out.extend_from_slice(&body);
        out
    }

    /// Writes the variable header and payload; returns the fixed header's first byte.
    fn write_body(&self, version: Version, out: &mut Vec<u8>) -> u8 {
        let v5 = version.is_v5();
        match self {
            Packet::Connect(connect) => {
                write_connect(connect, out);
                0x10
            }
            Packet::Connack {
                session_present,
                reason,
                properties,
            } => {
                out.extend_from_slice(&[u8::from(*session_present), *reason]);
                write_options(properties, v5, out);
                0x20
            }
            Packet::Publish(publish) => write_publish(publish, v5, out),
            Packet::Puback(ack) => write_ack(0x40, ack, v5, out),
            Packet::Pubrec(ack) => write_ack(0x50, ack, v5, out),
            Packet::Pubrel(ack) => write_ack(0x62, ack, v5, out),
            Packet::Pubcomp(ack) => write_ack(0x70, ack, v5, out),
            Packet::Subscribe {
                packet_id,
                properties,
                subscriptions,
            } => write_subscribe(*packet_id, properties, subscriptions, v5, out),
            Packet::Suback {
                packet_id,
                properties,
                reasons,
            } => {
                write_suback(*packet_id, properties, reasons, v5, out);
                0x90
            }
            Packet::Unsuback {
                packet_id,
                properties,
                reasons,
            } => {
                // 3.1.1's UNSUBACK has no reason codes.
                write_suback(*packet_id, properties, if v5 { reasons } else { &[] }, v5, out);
                0xb0
            }
            Packet::Unsubscribe {
                packet_id,
                properties,
                filters,
            } => {
                out.extend_from_slice(&packet_id.to_be_bytes());
                write_options(properties, v5, out);
                filters.iter().for_each(|f| write_string(out, f));
                0xa2
            }
            Packet::Pingreq => 0xc0,
            Packet::Pingresp => 0xd0,
            Packet::Disconnect { reason, properties } => write_reason(0xe0, *reason, properties, v5, out),
            Packet::Auth { reason, properties } => write_reason(0xf0, *reason, properties, v5, out),
        }
    }
}

fn write_subscribe(
    packet_id: u16,
    properties: &Properties,
    subscriptions: &[Subscription],
    v5: bool,
    out: &mut Vec<u8>,
) -> u8 {
    out.extend_from_slice(&packet_id.to_be_bytes());
    write_options(properties, v5, out);
    for s in subscriptions {
        write_string(out, &s.filter);
        let options = s.qos as u8
            | u8::from(s.no_local) << 2
            | u8::from(s.retain_as_published) << 3
            | s.retain_handling << 4;
        out.push(options);
    }
    0x82
}

fn write_suback(packet_id: u16, properties: &Properties, reasons: &[u8], v5: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(&packet_id.to_be_bytes());
    write_options(properties, v5, out);
    out.extend_from_slice(reasons);
}

fn write_connect(connect: &Connect, out: &mut Vec<u8>) {
    let v5 = connect.version.is_v5();
    write_string(
        out,
        if connect.version == Version::V31 {
            "MQIsdp"
        } else {
            "MQTT"
        },
    );
    out.push(connect.version as u8);
    let mut flags = u8::from(connect.clean_start) << 1;
    if let Some(will) = &connect.will {
        flags |= 0x04 | (will.qos as u8) << 3 | u8::from(will.retain) << 5;
    }
    flags |= u8::from(connect.password.is_some()) << 6 | u8::from(connect.username.is_some()) << 7;
    out.push(flags);
    out.extend_from_slice(&connect.keep_alive_s.to_be_bytes());
    write_options(&connect.properties, v5, out);
    write_string(out, &connect.client_id);
    if let Some(will) = &connect.will {
        write_options(&will.properties, v5, out);
        write_string(out, &will.topic);
        write_binary(out, &will.payload);
    }
    if let Some(username) = &connect.username {
        write_string(out, username);
    }
    if let Some(password) = &connect.password {
        write_binary(out, password);
    }
}

fn write_publish(publish: &Publish, v5: bool, out: &mut Vec<u8>) -> u8 {
    assert_eq!(
        publish.packet_id.is_some(),
        publish.qos != QoS::AtMostOnce,
        "packet id iff QoS > 0"
    );
    write_string(out, &publish.topic);
    if let Some(id) = publish.packet_id {
        out.extend_from_slice(&id.to_be_bytes());
    }
    write_options(&publish.properties, v5, out);
    out.extend_from_slice(&publish.payload);
    0x30 | u8::from(publish.dup) << 3 | (publish.qos as u8) << 1 | u8::from(publish.retain)
}

fn write_ack(first: u8, ack: &Ack, v5: bool, out: &mut Vec<u8>) -> u8 {
    out.extend_from_slice(&ack.packet_id.to_be_bytes());
    if v5 && (ack.reason != 0 || !ack.properties.is_empty()) {
        out.push(ack.reason);
        if !ack.properties.is_empty() {
            ack.properties.write(out);
        }
    }
    first
}

fn write_reason(first: u8, reason: u8, properties: &Properties, v5: bool, out: &mut Vec<u8>) -> u8 {
    if v5 && (reason != 0 || !properties.is_empty()) {
        out.push(reason);
        if !properties.is_empty() {
            properties.write(out);
        }
    }
    first
}
