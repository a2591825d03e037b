//! NSQ's TCP protocol V2, sans I/O (reference §1.1; `nsqd/protocol_v2.go`).
//!
//! - A client first sends the magic `"  V2"`.
//! - Commands are lines (`\n`, optional `\r`) of space-separated parameters; IDENTIFY, AUTH,
//!   PUB, MPUB and DPUB are followed by a 4-byte big-endian length and a body.
//! - The server answers with frames `[int32 size][int32 type][data]`, `size = len(data) + 4`;
//!   types 0 response, 1 error, 2 message.
//! - A message frame's data is `[int64 ns timestamp][uint16 attempts][16-byte id][body]`; the
//!   same bytes are what nsqd writes to its disk queues (no "deferred" field on disk).
//! - Errors are fatal (the error frame, then the connection is closed) or not (`E_FIN_FAILED`,
//!   `E_REQ_FAILED`, `E_TOUCH_FAILED`). Their text is `CODE description`.
//!
//! [`decode_command`] is incremental: it returns `Ok(None)` until a whole command has arrived,
//! and a [`ProtocolError`] (never a panic) for garbled input. Checks that need connection
//! state (IDENTIFY only before SUB, SUB needs heartbeats, ...) belong to the connection.

// A sans-I/O core: its functions stay within clippy.toml's too-many-lines-threshold (issue 9).
#![deny(clippy::too_many_lines)]

use std::fmt;

pub const MAGIC_V2: &[u8; 4] = b"  V2";
pub const MSG_ID_LENGTH: usize = 16;
/// Timestamp (8) + attempts (2) + id (16).
pub const MESSAGE_HEADER_LENGTH: usize = 8 + 2 + MSG_ID_LENGTH;
/// Longest command line accepted before the body (nsqd reads lines with a bounded buffer).
pub const COMMAND_LINE_MAX: usize = 4096;
pub const HEARTBEAT: &[u8] = b"_heartbeat_";
pub const OK: &[u8] = b"OK";
pub const CLOSE_WAIT: &[u8] = b"CLOSE_WAIT";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameType {
    Response = 0,
    Error = 1,
    Message = 2,
}

impl FrameType {
    pub fn from_i32(value: i32) -> Option<FrameType> {
        match value {
            0 => Some(FrameType::Response),
            1 => Some(FrameType::Error),
            2 => Some(FrameType::Message),
            _ => None,
        }
    }
}

/// A message id: 16 ASCII hex digits of a 64-bit GUID (`nsqd/guid.go`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub [u8; MSG_ID_LENGTH]);

impl MessageId {
    /// The GUID in 16 lowercase hex digits (`format!("{guid:016x}")`, written in place: nsqd
    /// makes one per message).
    pub fn from_guid(guid: u64) -> MessageId {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut id = [0u8; MSG_ID_LENGTH];
        for (i, digit) in id.iter_mut().enumerate() {
            let shift = 4 * (MSG_ID_LENGTH - 1 - i);
            *digit = HEX[((guid >> shift) & 0xf) as usize];
        }
        MessageId(id)
    }

    pub fn parse(bytes: &[u8]) -> Result<MessageId, ProtocolError> {
        let id: [u8; MSG_ID_LENGTH] = bytes
            .try_into()
            .map_err(|_| ProtocolError::fatal("E_INVALID", "Invalid Message ID"))?;
        Ok(MessageId(id))
    }
}

impl MessageId {
    /// The id as text, as `Display` shows it; borrowed unless the bytes are not UTF-8.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: &'static str,
    pub description: String,
    /// Fatal errors close the connection after the error frame.
    pub fatal: bool,
}

impl ProtocolError {
    pub fn fatal(code: &'static str, description: impl Into<String>) -> ProtocolError {
        ProtocolError {
            code,
            description: description.into(),
            fatal: true,
        }
    }

    pub fn non_fatal(code: &'static str, description: impl Into<String>) -> ProtocolError {
        ProtocolError {
            code,
            description: description.into(),
            fatal: false,
        }
    }

    /// The error frame's data.
    pub fn frame_data(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.description)
    }
}

impl std::error::Error for ProtocolError {}

/// The server limits the decoder enforces (`nsqd/options.go` defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_msg_size: i64,
    pub max_body_size: i64,
    pub max_rdy_count: i64,
    pub max_req_timeout_ms: i64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_msg_size: 1024 * 1024,
            max_body_size: 5 * 1024 * 1024,
            max_rdy_count: 2500,
            max_req_timeout_ms: 60 * 60 * 1000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// The JSON body, decoded by the connection.
    Identify(Vec<u8>),
    Auth(Vec<u8>),
    Sub {
        topic: String,
        channel: String,
    },
    Rdy(i64),
    Fin(MessageId),
    /// Already clamped to `0..=max_req_timeout_ms`, as nsqd does.
    Req {
        id: MessageId,
        timeout_ms: i64,
    },
    Touch(MessageId),
    Pub {
        topic: String,
        body: Vec<u8>,
    },
    Mpub {
        topic: String,
        bodies: Vec<Vec<u8>>,
    },
    Dpub {
        topic: String,
        defer_ms: i64,
        body: Vec<u8>,
    },
    Nop,
    Cls,
}

/// Topic names: `^[.a-zA-Z0-9_-]+(#ephemeral)?$`, 1 to 64 characters (`internal/protocol/names.go`).
pub fn is_valid_topic_name(name: &str) -> bool {
    is_valid_name(name)
}

pub fn is_valid_channel_name(name: &str) -> bool {
    is_valid_name(name)
}

fn is_valid_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 64 {
        return false;
    }
    let base = name.strip_suffix("#ephemeral").unwrap_or(name);
    !base.is_empty()
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub fn is_ephemeral(name: &str) -> bool {
    name.ends_with("#ephemeral")
}

/// nsqd's `ByteToBase10`: ASCII digits only (so a sign is a parse error).
fn base10(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > 18 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
}

fn read_i32(buf: &[u8], at: usize) -> Option<i32> {
    let bytes: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
    Some(i32::from_be_bytes(bytes))
}

/// What a line's body needs: `None` if incomplete.
fn body(buf: &[u8], at: usize) -> Option<Result<(&[u8], usize), i32>> {
    let len = read_i32(buf, at)?;
    if len <= 0 {
        return Some(Err(len));
    }
    let start = at + 4;
    let end = start + len as usize;
    Some(Ok((buf.get(start..end)?, end)))
}

fn topic_param(
    name: &str,
    params: &[&[u8]],
    index: usize,
    min_params: usize,
) -> Result<String, ProtocolError> {
    if params.len() < min_params {
        return Err(ProtocolError::fatal(
            "E_INVALID",
            format!("{name} insufficient number of parameters"),
        ));
    }
    let topic = String::from_utf8_lossy(params[index]).into_owned();
    if !is_valid_topic_name(&topic) {
        return Err(ProtocolError::fatal(
            "E_BAD_TOPIC",
            format!("{name} topic name {topic:?} is not valid"),
        ));
    }
    Ok(topic)
}

/// Decodes one command from the front of `buf`: `Ok(Some((command, bytes used)))`, `Ok(None)`
/// if more bytes are needed, or the error nsqd would answer with.
pub fn decode_command(buf: &[u8], limits: &Limits) -> Result<Option<(Command, usize)>, ProtocolError> {
    let Some(newline) = buf.iter().position(|b| *b == b'\n') else {
        if buf.len() > COMMAND_LINE_MAX {
            return Err(ProtocolError::fatal("E_INVALID", "command line too long"));
        }
        return Ok(None);
    };
    let mut line = &buf[..newline];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    let params: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
    let after_line = newline + 1;
    let line_only = |command: Command| -> Decoded { Ok(Some((command, after_line))) };
    match params[0] {
        b"NOP" => line_only(Command::Nop),
        b"CLS" => line_only(Command::Cls),
        b"RDY" => line_only(rdy_command(&params, limits)?),
        b"FIN" => line_only(Command::Fin(id_param("FIN", &params, 1)?)),
        b"TOUCH" => line_only(Command::Touch(id_param("TOUCH", &params, 1)?)),
        b"REQ" => line_only(req_command(&params, limits)?),
        b"SUB" => line_only(sub_command(&params)?),
        b"IDENTIFY" => body_command("IDENTIFY", buf, after_line, limits),
        b"AUTH" => body_command("AUTH", buf, after_line, limits),
        b"PUB" => pub_command(&params, buf, after_line, limits),
        b"DPUB" => dpub_command(&params, buf, after_line, limits),
        b"MPUB" => mpub_command(&params, buf, after_line, limits),
        other => Err(ProtocolError::fatal(
            "E_INVALID",
            format!("invalid command {}", String::from_utf8_lossy(other)),
        )),
    }
}

/// What [`decode_command`] answers: a command and the bytes it used, `None` for more bytes,
/// or nsqd's error.
type Decoded = Result<Option<(Command, usize)>, ProtocolError>;

fn id_param(name: &str, params: &[&[u8]], index: usize) -> Result<MessageId, ProtocolError> {
    let raw = params
        .get(index)
        .ok_or_else(|| ProtocolError::fatal("E_INVALID", format!("{name} insufficient number of params")))?;
    MessageId::parse(raw)
}

/// `RDY [count]`; without a count, nsqd takes 1.
fn rdy_command(params: &[&[u8]], limits: &Limits) -> Result<Command, ProtocolError> {
    let count = match params.get(1) {
        None => 1,
        Some(raw) => base10(raw).ok_or_else(|| {
            ProtocolError::fatal(
                "E_INVALID",
                format!("RDY could not parse count {}", String::from_utf8_lossy(raw)),
            )
        })?,
    };
    if count > limits.max_rdy_count {
        return Err(ProtocolError::fatal(
            "E_INVALID",
            format!("RDY count {count} out of range 0-{}", limits.max_rdy_count),
        ));
    }
    Ok(Command::Rdy(count))
}

/// `REQ id timeout_ms`.
fn req_command(params: &[&[u8]], limits: &Limits) -> Result<Command, ProtocolError> {
    if params.len() < 3 {
        return Err(ProtocolError::fatal(
            "E_INVALID",
            "REQ insufficient number of params",
        ));
    }
    let id = id_param("REQ", params, 1)?;
    let timeout = base10(params[2]).ok_or_else(|| {
        ProtocolError::fatal(
            "E_INVALID",
            format!(
                "REQ could not parse timeout {}",
                String::from_utf8_lossy(params[2])
            ),
        )
    })?;
    // nsqd clamps an out-of-range REQ timeout (and logs), it does not reject it.
    let timeout_ms = timeout.clamp(0, limits.max_req_timeout_ms);
    Ok(Command::Req { id, timeout_ms })
}

/// `SUB topic channel`.
fn sub_command(params: &[&[u8]]) -> Result<Command, ProtocolError> {
    if params.len() < 3 {
        return Err(ProtocolError::fatal(
            "E_INVALID",
            "SUB insufficient number of parameters",
        ));
    }
    let topic = String::from_utf8_lossy(params[1]).into_owned();
    if !is_valid_topic_name(&topic) {
        return Err(ProtocolError::fatal(
            "E_BAD_TOPIC",
            format!("SUB topic name {topic:?} is not valid"),
        ));
    }
    let channel = String::from_utf8_lossy(params[2]).into_owned();
    if !is_valid_channel_name(&channel) {
        return Err(ProtocolError::fatal(
            "E_BAD_CHANNEL",
            format!("SUB channel name {channel:?} is not valid"),
        ));
    }
    Ok(Command::Sub { topic, channel })
}

/// `IDENTIFY` or `AUTH`, each a line and then a body of at most `max_body_size`. The size is
/// judged as soon as its 4 bytes have arrived, before the body (nsqd's protocol_v2.go reads
/// the length, checks it, and only then reads the body).
fn body_command(name: &str, buf: &[u8], after_line: usize, limits: &Limits) -> Decoded {
    let Some(len) = read_i32(buf, after_line) else {
        return Ok(None);
    };
    if i64::from(len) > limits.max_body_size {
        return Err(ProtocolError::fatal(
            "E_BAD_BODY",
            format!("{name} body too big {len} > {}", limits.max_body_size),
        ));
    }
    if len <= 0 {
        return Err(ProtocolError::fatal(
            "E_BAD_BODY",
            format!("{name} invalid body size {len}"),
        ));
    }
    let Some(Ok((data, end))) = body(buf, after_line) else {
        return Ok(None);
    };
    let command = if name == "IDENTIFY" {
        Command::Identify(data.to_vec())
    } else {
        Command::Auth(data.to_vec())
    };
    Ok(Some((command, end)))
}

/// `PUB topic`, then one message body. The size is judged as soon as it has arrived, before
/// the body (nsqd reads and checks the length first).
fn pub_command(params: &[&[u8]], buf: &[u8], after_line: usize, limits: &Limits) -> Decoded {
    let topic = topic_param("PUB", params, 1, 2)?;
    let Some(len) = read_i32(buf, after_line) else {
        return Ok(None);
    };
    check_message_size("PUB", len, limits)?;
    let Some(Ok((data, end))) = body(buf, after_line) else {
        return Ok(None);
    };
    let command = Command::Pub {
        topic,
        body: data.to_vec(),
    };
    Ok(Some((command, end)))
}

/// `DPUB topic defer_ms`, then one message body.
fn dpub_command(params: &[&[u8]], buf: &[u8], after_line: usize, limits: &Limits) -> Decoded {
    let topic = topic_param("DPUB", params, 1, 3)?;
    let defer_ms = base10(params[2]).ok_or_else(|| {
        ProtocolError::fatal(
            "E_INVALID",
            format!(
                "DPUB could not parse timeout {}",
                String::from_utf8_lossy(params[2])
            ),
        )
    })?;
    if defer_ms > limits.max_req_timeout_ms {
        return Err(ProtocolError::fatal(
            "E_INVALID",
            format!(
                "DPUB timeout {defer_ms} out of range 0-{}",
                limits.max_req_timeout_ms
            ),
        ));
    }
    let Some(len) = read_i32(buf, after_line) else {
        return Ok(None);
    };
    check_message_size("DPUB", len, limits)?;
    let Some(Ok((data, end))) = body(buf, after_line) else {
        return Ok(None);
    };
    let command = Command::Dpub {
        topic,
        defer_ms,
        body: data.to_vec(),
    };
    Ok(Some((command, end)))
}

/// `MPUB topic`, then a body of at most `max_body_size` holding the messages.
fn mpub_command(params: &[&[u8]], buf: &[u8], after_line: usize, limits: &Limits) -> Decoded {
    let topic = topic_param("MPUB", params, 1, 2)?;
    let Some(len) = read_i32(buf, after_line) else {
        return Ok(None);
    };
    if len <= 0 {
        return Err(ProtocolError::fatal(
            "E_BAD_BODY",
            format!("MPUB invalid body size {len}"),
        ));
    }
    if i64::from(len) > limits.max_body_size {
        return Err(ProtocolError::fatal(
            "E_BAD_BODY",
            format!("MPUB body too big {len} > {}", limits.max_body_size),
        ));
    }
    let Some(Ok((data, end))) = body(buf, after_line) else {
        return Ok(None);
    };
    let command = Command::Mpub {
        topic,
        bodies: decode_mpub(data, limits)?,
    };
    Ok(Some((command, end)))
}

fn check_message_size(name: &str, len: i32, limits: &Limits) -> Result<(), ProtocolError> {
    if len <= 0 {
        return Err(ProtocolError::fatal(
            "E_BAD_MESSAGE",
            format!("{name} invalid message body size {len}"),
        ));
    }
    if i64::from(len) > limits.max_msg_size {
        return Err(ProtocolError::fatal(
            "E_BAD_MESSAGE",
            format!("{name} message too big {len} > {}", limits.max_msg_size),
        ));
    }
    Ok(())
}

/// The MPUB body: `[int32 count]([int32 size][body])*`, every part validated before any
/// message is queued (nsqd's `readMPUB`).
fn decode_mpub(data: &[u8], limits: &Limits) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let count = read_i32(data, 0)
        .ok_or_else(|| ProtocolError::fatal("E_BAD_BODY", "MPUB failed to read message count"))?;
    let max_messages = (limits.max_body_size - 4) / 5;
    if count <= 0 || i64::from(count) > max_messages {
        return Err(ProtocolError::fatal(
            "E_BAD_BODY",
            format!("MPUB invalid message count {count}"),
        ));
    }
    let mut at = 4;
    let mut bodies = Vec::with_capacity(count as usize);
    for i in 0..count {
        let size = read_i32(data, at).ok_or_else(|| {
            ProtocolError::fatal(
                "E_BAD_MESSAGE",
                format!("MPUB failed to read message({i}) body size"),
            )
        })?;
        if size <= 0 {
            return Err(ProtocolError::fatal(
                "E_BAD_MESSAGE",
                format!("MPUB invalid message({i}) body size {size}"),
            ));
        }
        if i64::from(size) > limits.max_msg_size {
            return Err(ProtocolError::fatal(
                "E_BAD_MESSAGE",
                format!("MPUB message too big {size} > {}", limits.max_msg_size),
            ));
        }
        let body = data
            .get(at + 4..at + 4 + size as usize)
            .ok_or_else(|| ProtocolError::fatal("E_BAD_MESSAGE", "MPUB failed to read message body"))?;
        bodies.push(body.to_vec());
        at += 4 + size as usize;
    }
    Ok(bodies)
}

/// Encodes a command as a client sends it: one allocation, sized up front, and no
/// formatting machinery (this runs once per PUB, FIN and RDY a client sends).
pub fn encode_command(command: &Command) -> Vec<u8> {
    let mut out = Vec::with_capacity(command_size_hint(command));
    let mut line = |parts: &[&[u8]]| {
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(part);
        }
        out.push(b'\n');
    };
    match command {
        Command::Identify(json) => {
            line(&[b"IDENTIFY"]);
            put_body(&mut out, json);
        }
        Command::Auth(secret) => {
            line(&[b"AUTH"]);
            put_body(&mut out, secret);
        }
        Command::Sub { topic, channel } => line(&[b"SUB", topic.as_bytes(), channel.as_bytes()]),
        Command::Rdy(count) => line(&[b"RDY", decimal(*count).as_bytes()]),
        Command::Fin(id) => line(&[b"FIN", id.text().as_bytes()]),
        Command::Req { id, timeout_ms } => {
            line(&[b"REQ", id.text().as_bytes(), decimal(*timeout_ms).as_bytes()])
        }
        Command::Touch(id) => line(&[b"TOUCH", id.text().as_bytes()]),
        Command::Pub { topic, body } => {
            line(&[b"PUB", topic.as_bytes()]);
            put_body(&mut out, body);
        }
        Command::Dpub {
            topic,
            defer_ms,
            body,
        } => {
            line(&[b"DPUB", topic.as_bytes(), decimal(*defer_ms).as_bytes()]);
            put_body(&mut out, body);
        }
        Command::Mpub { topic, bodies } => {
            line(&[b"MPUB", topic.as_bytes()]);
            let size: usize = 4 + bodies.iter().map(|body| 4 + body.len()).sum::<usize>();
            out.extend_from_slice(&(size as u32).to_be_bytes());
            out.extend_from_slice(&(bodies.len() as u32).to_be_bytes());
            for body in bodies {
                out.extend_from_slice(&(body.len() as u32).to_be_bytes());
                out.extend_from_slice(body);
            }
        }
        Command::Nop => line(&[b"NOP"]),
        Command::Cls => line(&[b"CLS"]),
    }
    out
}

/// What [`encode_command`] writes, give or take a number's digits.
fn command_size_hint(command: &Command) -> usize {
    let body = match command {
        Command::Identify(body) | Command::Auth(body) => body.len(),
        Command::Pub { topic, body } | Command::Dpub { topic, body, .. } => topic.len() + body.len(),
        Command::Mpub { topic, bodies } => {
            topic.len() + 4 + bodies.iter().map(|body| 4 + body.len()).sum::<usize>()
        }
        Command::Sub { topic, channel } => topic.len() + channel.len(),
        _ => MSG_ID_LENGTH,
    };
    body + 32
}

/// A command's body: `[int32 size][body]`.
fn put_body(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}

/// A number in decimal, as `format!("{n}")` writes it, without the allocation.
fn decimal(n: i64) -> DecimalText {
    let mut text = DecimalText {
        digits: [0; 20],
        start: 20,
    };
    let mut rest = n.unsigned_abs();
    loop {
        text.start -= 1;
        text.digits[text.start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        text.start -= 1;
        text.digits[text.start] = b'-';
    }
    text
}

/// The digits [`decimal`] wrote, on the stack.
struct DecimalText {
    /// `i64::MIN` has 19 digits and a sign.
    digits: [u8; 20],
    start: usize,
}

impl DecimalText {
    fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start..]
    }
}

/// `[int32 size][int32 type][data]` with `size = len(data) + 4`.
pub fn encode_frame(frame_type: FrameType, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len());
    out.extend_from_slice(&((data.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(&(frame_type as i32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// Largest frame a client accepts before treating the stream as garbled.
pub const FRAME_SIZE_MAX: usize = 16 * 1024 * 1024;

/// Decodes one server frame: `Ok(None)` until complete; an error for a garbled stream.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(FrameType, Vec<u8>, usize)>, String> {
    let Some(size) = read_i32(buf, 0) else {
        return Ok(None);
    };
    if size < 4 || size as usize > FRAME_SIZE_MAX {
        return Err(format!("invalid frame size {size}"));
    }
    let Some(kind) = read_i32(buf, 4) else {
        return Ok(None);
    };
    let frame_type = FrameType::from_i32(kind).ok_or_else(|| format!("invalid frame type {kind}"))?;
    let end = 4 + size as usize;
    let Some(data) = buf.get(8..end) else {
        return Ok(None);
    };
    Ok(Some((frame_type, data.to_vec(), end)))
}

/// A message as nsqd holds, sends and stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: MessageId,
    pub timestamp_ns: i64,
    pub attempts: u16,
    pub body: Vec<u8>,
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MESSAGE_HEADER_LENGTH + self.body.len());
        self.put(&mut out);
        out
    }

    /// Appends the message's bytes ([`Message::encode`]) to `out`.
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp_ns.to_be_bytes());
        out.extend_from_slice(&self.attempts.to_be_bytes());
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&self.body);
    }

    /// Appends the message as a message frame (`encode_frame(FrameType::Message,
    /// &message.encode())`) to `out`, without building either in between: nsqd does this once
    /// per delivery.
    pub fn put_frame(&self, out: &mut Vec<u8>) {
        let size = MESSAGE_HEADER_LENGTH + self.body.len() + 4;
        out.reserve(4 + size);
        out.extend_from_slice(&(size as u32).to_be_bytes());
        out.extend_from_slice(&(FrameType::Message as i32).to_be_bytes());
        self.put(out);
    }

    pub fn decode(data: &[u8]) -> Result<Message, String> {
        if data.len() < MESSAGE_HEADER_LENGTH {
            return Err(format!(
                "not enough data to decode valid message ({} bytes)",
                data.len()
            ));
        }
        let timestamp_ns = i64::from_be_bytes(data[0..8].try_into().expect("8 bytes"));
        let attempts = u16::from_be_bytes(data[8..10].try_into().expect("2 bytes"));
        let id = MessageId(data[10..26].try_into().expect("16 bytes"));
        Ok(Message {
            id,
            timestamp_ns,
            attempts,
            body: data[26..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Result<Option<(Command, usize)>, ProtocolError> {
        decode_command(bytes, &Limits::default())
    }

    fn id() -> MessageId {
        MessageId::from_guid(0x0123_4567_89ab_cdef)
    }

    /// The bytes `encode_command` wrote when it formatted with `format!`: the encoder that
    /// skips the formatting machinery must write exactly these.
    fn formatted(command: &Command) -> Vec<u8> {
        let with_body = |line: String, body: &[u8]| {
            let mut out = line.into_bytes();
            out.extend_from_slice(&(body.len() as u32).to_be_bytes());
            out.extend_from_slice(body);
            out
        };
        match command {
            Command::Identify(json) => with_body("IDENTIFY\n".into(), json),
            Command::Auth(secret) => with_body("AUTH\n".into(), secret),
            Command::Sub { topic, channel } => format!("SUB {topic} {channel}\n").into_bytes(),
            Command::Rdy(count) => format!("RDY {count}\n").into_bytes(),
            Command::Fin(id) => format!("FIN {id}\n").into_bytes(),
            Command::Req { id, timeout_ms } => format!("REQ {id} {timeout_ms}\n").into_bytes(),
            Command::Touch(id) => format!("TOUCH {id}\n").into_bytes(),
            Command::Pub { topic, body } => with_body(format!("PUB {topic}\n"), body),
            Command::Dpub {
                topic,
                defer_ms,
                body,
            } => with_body(format!("DPUB {topic} {defer_ms}\n"), body),
            Command::Mpub { topic, bodies } => {
                let mut payload = (bodies.len() as u32).to_be_bytes().to_vec();
                for body in bodies {
                    payload.extend_from_slice(&(body.len() as u32).to_be_bytes());
                    payload.extend_from_slice(body);
                }
                with_body(format!("MPUB {topic}\n"), &payload)
            }
            Command::Nop => b"NOP\n".to_vec(),
            Command::Cls => b"CLS\n".to_vec(),
        }
    }

    #[test]
    fn a_guid_is_its_sixteen_hex_digits() {
        for guid in [0, 1, 0xf, 0x0123_4567_89ab_cdef, u64::MAX, 1 << 63] {
            assert_eq!(MessageId::from_guid(guid).0, *format!("{guid:016x}").as_bytes());
        }
    }

    #[test]
    fn a_message_frame_is_the_frame_of_the_encoded_message() {
        let message = Message {
            id: id(),
            timestamp_ns: -5,
            attempts: 3,
            body: b"body".to_vec(),
        };
        let mut out = b"before".to_vec();
        message.put_frame(&mut out);
        let mut expected = b"before".to_vec();
        expected.extend(encode_frame(FrameType::Message, &message.encode()));
        assert_eq!(out, expected);
    }

    #[test]
    fn encode_command_writes_what_formatting_wrote() {
        let garbled = MessageId([0xff; MSG_ID_LENGTH]);
        let mut commands = vec![
            Command::Identify(b"{\"a\":1}".to_vec()),
            Command::Auth(Vec::new()),
            Command::Sub {
                topic: "t#ephemeral".into(),
                channel: "c".into(),
            },
            Command::Fin(id()),
            Command::Fin(garbled),
            Command::Touch(garbled),
            Command::Pub {
                topic: "t".into(),
                body: vec![0, 1, 2],
            },
            Command::Mpub {
                topic: "t".into(),
                bodies: vec![b"a".to_vec(), Vec::new(), vec![7; 300]],
            },
            Command::Nop,
            Command::Cls,
        ];
        for n in [0, 1, -1, 9, 10, 99, 2500, i64::MAX, i64::MIN] {
            commands.push(Command::Rdy(n));
            commands.push(Command::Req {
                id: id(),
                timeout_ms: n,
            });
            commands.push(Command::Dpub {
                topic: "t".into(),
                defer_ms: n,
                body: b"x".to_vec(),
            });
        }
        for command in &commands {
            assert_eq!(encode_command(command), formatted(command), "{command:?}");
        }
    }

    #[test]
    fn every_command_round_trips_through_the_wire_format() {
        let commands = [
            Command::Identify(br#"{"heartbeat_interval":30000}"#.to_vec()),
            Command::Auth(b"secret".to_vec()),
            Command::Sub {
                topic: "orders".into(),
                channel: "billing#ephemeral".into(),
            },
            Command::Rdy(2500),
            Command::Fin(id()),
            Command::Req {
                id: id(),
                timeout_ms: 90_000,
            },
            Command::Touch(id()),
            Command::Pub {
                topic: "orders".into(),
                body: b"m1".to_vec(),
            },
            Command::Mpub {
                topic: "orders".into(),
                bodies: vec![b"a".to_vec(), b"bc".to_vec()],
            },
            Command::Dpub {
                topic: "orders".into(),
                defer_ms: 5000,
                body: b"later".to_vec(),
            },
            Command::Nop,
            Command::Cls,
        ];
        for command in commands {
            let bytes = encode_command(&command);
            assert_eq!(
                decode(&bytes).unwrap(),
                Some((command.clone(), bytes.len())),
                "{command:?}"
            );
            // Every strict prefix is incomplete, never an error.
            for cut in 0..bytes.len() {
                assert_eq!(decode(&bytes[..cut]), Ok(None), "{command:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn carriage_returns_are_trimmed_and_rdy_defaults_to_one() {
        assert_eq!(decode(b"RDY\r\n").unwrap(), Some((Command::Rdy(1), 5)));
        assert_eq!(decode(b"NOP\nNOP\n").unwrap(), Some((Command::Nop, 4)));
    }

    #[test]
    fn garbled_input_gets_nsqds_errors() {
        let cases: [(&[u8], &str, &str); 12] = [
            (b"HELLO\n", "E_INVALID", "invalid command HELLO"),
            (b"RDY -1\n", "E_INVALID", "RDY could not parse count -1"),
            (b"RDY 2501\n", "E_INVALID", "RDY count 2501 out of range 0-2500"),
            (b"FIN 123\n", "E_INVALID", "Invalid Message ID"),
            (b"FIN\n", "E_INVALID", "FIN insufficient number of params"),
            (
                b"SUB bad/topic ch\n",
                "E_BAD_TOPIC",
                "SUB topic name \"bad/topic\" is not valid",
            ),
            (
                b"SUB t bad!channel\n",
                "E_BAD_CHANNEL",
                "SUB channel name \"bad!channel\" is not valid",
            ),
            (b"PUB\n", "E_INVALID", "PUB insufficient number of parameters"),
            (
                b"PUB t\n\x00\x00\x00\x00",
                "E_BAD_MESSAGE",
                "PUB invalid message body size 0",
            ),
            (
                b"PUB t\n\x00\x20\x00\x00",
                "E_BAD_MESSAGE",
                "PUB message too big 2097152 > 1048576",
            ),
            (
                b"DPUB t 3600001\n",
                "E_INVALID",
                "DPUB timeout 3600001 out of range 0-3600000",
            ),
            (
                b"MPUB t\n\x00\x00\x00\x04\x00\x00\x00\x00",
                "E_BAD_BODY",
                "MPUB invalid message count 0",
            ),
        ];
        for (bytes, code, description) in cases {
            let err = decode(bytes).unwrap_err();
            assert_eq!((err.code, err.description.as_str()), (code, description));
            assert!(err.fatal);
        }
        assert_eq!(
            ProtocolError::non_fatal("E_FIN_FAILED", "FIN x failed").frame_data(),
            b"E_FIN_FAILED FIN x failed"
        );
    }

    #[test]
    fn req_timeouts_are_clamped_not_rejected() {
        let bytes = format!("REQ {} 99999999\n", id());
        let (command, _) = decode(bytes.as_bytes()).unwrap().unwrap();
        assert_eq!(
            command,
            Command::Req {
                id: id(),
                timeout_ms: 3_600_000
            }
        );
    }

    #[test]
    fn names_follow_nsqs_rules() {
        for good in ["a", "orders.v2", "A_b-c", "t#ephemeral", &"x".repeat(64)] {
            assert!(is_valid_topic_name(good), "{good}");
        }
        for bad in [
            "",
            "#ephemeral",
            "a b",
            "a/b",
            "é",
            &"x".repeat(65),
            "a#ephemeral#ephemeral",
        ] {
            assert!(!is_valid_topic_name(bad), "{bad}");
        }
        assert!(is_ephemeral("c#ephemeral"));
    }

    #[test]
    fn frames_and_messages_have_nsqs_byte_layout() {
        let frame = encode_frame(FrameType::Response, OK);
        assert_eq!(frame, [0, 0, 0, 6, 0, 0, 0, 0, b'O', b'K']);
        assert_eq!(
            decode_frame(&frame).unwrap(),
            Some((FrameType::Response, OK.to_vec(), 10))
        );
        assert_eq!(decode_frame(&frame[..9]).unwrap(), None);
        assert!(decode_frame(&[0, 0, 0, 6, 0, 0, 0, 9, 0, 0]).is_err());

        let message = Message {
            id: id(),
            timestamp_ns: 1_700_000_000_000_000_000,
            attempts: 3,
            body: b"m42".to_vec(),
        };
        let bytes = message.encode();
        assert_eq!(bytes.len(), MESSAGE_HEADER_LENGTH + 3);
        assert_eq!(&bytes[8..10], &[0, 3]);
        assert_eq!(&bytes[10..26], b"0123456789abcdef");
        assert_eq!(Message::decode(&bytes).unwrap(), message);
        assert!(Message::decode(&bytes[..25]).is_err());
    }

    proptest::proptest! {
        /// Whatever bytes a client sends, decoding answers (a command, "more please", or
        /// nsqd's error) and never panics or reads past what it was given.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            if let Ok(Some((_, used))) = decode(&bytes) {
                proptest::prop_assert!(used <= bytes.len());
            }
            let _ = decode_frame(&bytes);
            let _ = Message::decode(&bytes);
        }

        #[test]
        fn garbage_after_a_command_word_never_panics(
            word in proptest::sample::select(vec!["PUB t", "MPUB t", "DPUB t 10", "IDENTIFY", "REQ", "FIN", "SUB a b", "RDY"]),
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let mut bytes = format!("{word}\n").into_bytes();
            bytes.extend(tail);
            let _ = decode(&bytes);
        }
    }
}
