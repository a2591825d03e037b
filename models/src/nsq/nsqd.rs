//! nsqd, sans I/O: connections, the V2 command state machine, delivery to ready clients,
//! heartbeats, output buffering and the queue-scan loop (reference §1.1, §1.2;
//! `nsqd/protocol_v2.go`, `nsqd/client_v2.go`, `nsqd/nsqd.go`).
//!
//! A client's output counts as unwritten until the driver reports it written: past
//! [`OUTPUT_UNWRITTEN_BYTES_MAX`] the client stalls as nsqd's blocked `Send` does (nothing
//! delivered, no heartbeat, no command run) and is closed when its write deadline, the
//! heartbeat interval, passes with no progress. Unlike nsqd, commands that need no answer
//! (FIN, RDY) also wait while the client is stalled.
//!
//! The driver feeds it connections, bytes and the time, and carries out what it puts in the
//! [`Outbox`] (bytes to send, connections to close). Randomness (Go's `select` among memory
//! and disk, among ready clients; the queue scan's channel sample) comes from the caller.
//!
//! Not modelled yet: channel pre-creation from nsqlookupd (topics start at once, as on an
//! nsqd with no lookupd configured), TLS, snappy/deflate, AUTH (answered `E_AUTH_DISABLED`),
//! sampling. The HTTP API is `nsqd_http.rs`; deleting, emptying and pausing topics and
//! channels `nsqd_admin.rs`.

// A sans-I/O core: its functions stay within clippy.toml's too-many-lines-threshold (issue 9).
#![deny(clippy::too_many_lines)]

use super::backend::{Backend, Placed};
use super::channel::{Channel, ClientId};
use super::diskqueue::DiskQueueConfig;
use super::guid::GuidFactory;
use super::protocol::{
    decode_command, encode_frame, Command, FrameType, Limits, Message, MessageId, ProtocolError, CLOSE_WAIT,
    HEARTBEAT, MAGIC_V2, OK,
};
use super::topic::Topic;
use rand::seq::IndexedRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sim::disk::Disk;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::time::Duration;

/// What nsqd reports as its version (IDENTIFY's feature-negotiation reply).
pub const VERSION: &str = "1.3.0";
/// nsqd's default `output_buffer_size` (16 KiB, the client's bufio.Writer).
pub const OUTPUT_BUFFER_SIZE: usize = 16 * 1024;
/// Unread bytes one connection may buffer before it is a protocol error.
pub const CLIENT_BUFFER_MAX: usize = 8 * 1024 * 1024;
/// Output handed to the driver and not yet written to the socket, past which a client's
/// writes block: what nsqd's bufio.Writer and the kernel's socket buffer hold together.
/// Past it the client stalls (nothing delivered, no heartbeat, no command run: nsqd's
/// messagePump and IOLoop are blocked in `Send`) until the driver reports progress, and the
/// connection closes when the write deadline passes without any.
pub const OUTPUT_UNWRITTEN_BYTES_MAX: usize = 1024 * 1024;

/// nsqd's options that the model uses, with nsqd's defaults (`nsqd/options.go`).
/// nsqd's options (`[config.nsqd]` in a scenario), named as nsqd's flags, with its defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NsqdOptions {
    /// nsqd --mem-queue-size: messages a topic or channel keeps in memory before its disk
    /// queue.
    pub mem_queue_size: usize,
    /// nsqd --msg-timeout: how long a message may be in flight before it is requeued.
    pub msg_timeout_ms: u64,
    /// nsqd --max-msg-timeout: the largest msg_timeout a client may IDENTIFY with.
    pub max_msg_timeout_ms: u64,
    /// nsqd --max-req-timeout: the largest REQ delay.
    pub max_req_timeout_ms: u64,
    /// nsqd --client-timeout. Heartbeats default to half of this; the read deadline is twice
    /// the heartbeat.
    pub client_timeout_ms: u64,
    /// nsqd --max-heartbeat-interval: the largest heartbeat interval a client may IDENTIFY
    /// with.
    pub max_heartbeat_interval_ms: u64,
    /// nsqd --max-rdy-count.
    #[schemars(range(min = 1))]
    pub max_rdy_count: i64,
    /// nsqd --max-msg-size, in bytes.
    pub max_msg_size: i64,
    /// nsqd --max-body-size, in bytes.
    pub max_body_size: i64,
    /// nsqd's default output buffer timeout (IDENTIFY output_buffer_timeout).
    pub output_buffer_timeout_ms: u64,
    /// nsqd --max-output-buffer-timeout.
    pub max_output_buffer_timeout_ms: u64,
    /// nsqd --queue-scan-interval: how often the in-flight and deferred queues are scanned.
    pub queue_scan_interval_ms: u64,
    /// nsqd --queue-scan-selection-count: channels scanned per pass.
    pub queue_scan_selection_count: usize,
    /// nsqd --queue-scan-dirty-percent: the share of dirty channels that triggers another
    /// pass at once.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub queue_scan_dirty_percent: f64,
    /// nsqd --sync-every: disk-queue writes between fsyncs.
    pub sync_every: u64,
    /// nsqd --sync-timeout: the longest time between fsyncs of a disk queue.
    pub sync_timeout_ms: u64,
    /// nsqd --max-bytes-per-file: the size at which a disk queue rolls to a new file.
    #[schemars(range(min = 1))]
    pub max_bytes_per_file: u64,
}

/// nsqd's default `--max-rdy-count`.
pub const MAX_RDY_COUNT_DEFAULT: i64 = 2500;

impl Default for NsqdOptions {
    fn default() -> NsqdOptions {
        NsqdOptions {
            mem_queue_size: 10_000,
            msg_timeout_ms: 60_000,
            max_msg_timeout_ms: 15 * 60_000,
            max_req_timeout_ms: 60 * 60_000,
            client_timeout_ms: 60_000,
            max_heartbeat_interval_ms: 60_000,
            max_rdy_count: MAX_RDY_COUNT_DEFAULT,
            max_msg_size: 1024 * 1024,
            max_body_size: 5 * 1024 * 1024,
            output_buffer_timeout_ms: 250,
            max_output_buffer_timeout_ms: 30_000,
            queue_scan_interval_ms: 100,
            queue_scan_selection_count: 20,
            queue_scan_dirty_percent: 0.25,
            sync_every: 2500,
            sync_timeout_ms: 2000,
            max_bytes_per_file: 100 * 1024 * 1024,
        }
    }
}

impl NsqdOptions {
    fn limits(&self) -> Limits {
        Limits {
            max_msg_size: self.max_msg_size,
            max_body_size: self.max_body_size,
            max_rdy_count: self.max_rdy_count,
            max_req_timeout_ms: self.max_req_timeout_ms as i64,
        }
    }

    fn disk_queue(&self) -> DiskQueueConfig {
        DiskQueueConfig {
            max_bytes_per_file: self.max_bytes_per_file,
            min_msg_size: super::protocol::MESSAGE_HEADER_LENGTH as u32,
            max_msg_size: self.max_msg_size as u32 + super::protocol::MESSAGE_HEADER_LENGTH as u32,
            sync_every: self.sync_every,
            sync_timeout: ms(self.sync_timeout_ms),
        }
    }
}

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for the 4-byte magic.
    Magic,
    Init,
    Subscribed,
    Closing,
    Closed,
}

#[derive(Debug)]
struct Client {
    state: State,
    input: Vec<u8>,
    subscription: Option<(String, String)>,
    heartbeat_interval: Option<Duration>,
    msg_timeout: Duration,
    output_buffer_timeout: Option<Duration>,
    ready_count: i64,
    in_flight: i64,
    last_read: Duration,
    next_heartbeat: Option<Duration>,
    /// Message frames written but not yet flushed.
    buffered: Vec<u8>,
    next_flush: Option<Duration>,
    /// This client's command created a topic whose channels nsqd is asking lookupd for:
    /// like nsqd's `GetTopic`, the command blocks. Its answer waits in `held`, and its later
    /// input is not read, until the query ends.
    blocked_on: Option<String>,
    held: Vec<Output>,
    /// Bytes handed to the driver for this client and not yet reported written.
    unwritten: usize,
    /// Since when the client's writes have been blocked (`unwritten` over
    /// [`OUTPUT_UNWRITTEN_BYTES_MAX`] with no progress): nsqd's write deadline, the
    /// heartbeat interval (`protocolV2.Send`), counts from here.
    write_blocked_since: Option<Duration>,
    /// What `/stats` reports of the client (`clientV2.Stats`).
    stats: ClientStatsState,
}

/// A client's identity and counters as nsqd's `/stats` shows them. `client_id` and
/// `hostname` start as the remote host, as `newClientV2` sets them, until IDENTIFY names them.
#[derive(Debug, Default)]
struct ClientStatsState {
    client_id: String,
    hostname: String,
    user_agent: String,
    remote_address: String,
    connect_ts: u64,
    sample_rate: i64,
    message_count: u64,
    finish_count: u64,
    requeue_count: u64,
    /// Messages published, by topic (a producer is a client that has published).
    pub_counts: BTreeMap<String, u64>,
}

impl Client {
    fn is_ready(&self) -> bool {
        self.state == State::Subscribed
            && self.ready_count > 0
            && self.in_flight < self.ready_count
            && self.write_blocked_since.is_none()
    }

    /// `bytes` more were handed to the driver; past the bound, writes block from `now`.
    fn queued(&mut self, bytes: usize, now: Duration) {
        self.unwritten += bytes;
        if self.unwritten > OUTPUT_UNWRITTEN_BYTES_MAX && self.write_blocked_since.is_none() {
            self.write_blocked_since = Some(now);
        }
    }

    /// When a blocked write fails: nsqd sets a write deadline of one heartbeat interval on
    /// every write, and none when heartbeats are off.
    fn write_deadline(&self) -> Option<Duration> {
        Some(self.write_blocked_since? + self.heartbeat_interval?)
    }

    /// Checks the protocol magic once its 4 bytes have arrived: true once the client is past
    /// it. A bad magic closes the connection.
    fn read_magic(&mut self, client: ClientId, out: &mut Outbox) -> bool {
        if self.state != State::Magic {
            return true;
        }
        if self.input.len() < MAGIC_V2.len() {
            return false;
        }
        if &self.input[..4] != MAGIC_V2 {
            // nsqd answers exactly `E_BAD_PROTOCOL` and logs the magic it got (nsqd/tcp.go
            // Handle).
            let magic = String::from_utf8_lossy(&self.input[..4]).into_owned();
            tracing::warn!(client, magic, "bad protocol magic");
            self.state = State::Closed;
            out.send(client, FrameType::Error, b"E_BAD_PROTOCOL");
            out.0.push(Output::Close(client));
            return false;
        }
        self.input.drain(..4);
        self.state = State::Init;
        true
    }

    /// Takes the next whole command off the input. Garbled input, or too much of it without
    /// a command, closes the connection.
    fn next_command(&mut self, client: ClientId, limits: &Limits, out: &mut Outbox) -> NextCommand {
        if self.state == State::Closed {
            return NextCommand::Closed;
        }
        if self.blocked_on.is_some() || self.write_blocked_since.is_some() {
            return NextCommand::Wait;
        }
        if self.input.len() > CLIENT_BUFFER_MAX {
            self.state = State::Closed;
            out.error(
                client,
                &ProtocolError::fatal("E_INVALID", "client sent too much without a command"),
            );
            return NextCommand::Closed;
        }
        match decode_command(&self.input, limits) {
            Ok(None) => NextCommand::Wait,
            Ok(Some((command, used))) => {
                self.input.drain(..used);
                NextCommand::Ready(command)
            }
            Err(error) => {
                self.state = State::Closed;
                out.error(client, &error);
                NextCommand::Closed
            }
        }
    }
}

/// What a connection's input holds next.
enum NextCommand {
    Ready(Command),
    /// Nothing to run yet: the command is incomplete, or the client is held in `GetTopic`.
    Wait,
    /// The connection is closed, perhaps by this very input.
    Closed,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Send(ClientId, Vec<u8>),
    /// Close the connection (after sending what came before).
    Close(ClientId),
    /// Tell every lookupd REGISTER, for the lookupd peer loop.
    Register {
        topic: String,
        channel: Option<String>,
    },
    /// Tell every lookupd UNREGISTER: a topic or channel was deleted.
    Unregister {
        topic: String,
        channel: Option<String>,
    },
    /// Something worth counting in the history ("sometimes" notes).
    Note(&'static str),
    /// A topic was just created and lookupds are configured: ask them for the topic's
    /// channels (`GET /channels?topic=`) and answer with [`Nsqd::channels_found`].
    QueryChannels(String),
}

/// What asking lookupd for a new topic's channels came to (`nsqd.GetTopic`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelsFound {
    /// No lookupd has answered IDENTIFY yet, so there is none to ask: the topic starts at
    /// once ("no available nsqlookupd to query for channels to pre-create").
    NoLookupd,
    /// Every lookupd failed to answer: the topic starts with no pre-created channel.
    Failed,
    /// The union of the channels the lookupds that answered know.
    Channels(Vec<String>),
}

#[derive(Debug, Default)]
pub struct Outbox(pub Vec<Output>);

impl Outbox {
    fn send(&mut self, client: ClientId, frame_type: FrameType, data: &[u8]) {
        self.0.push(Output::Send(client, encode_frame(frame_type, data)));
    }

    fn error(&mut self, client: ClientId, error: &ProtocolError) {
        self.send(client, FrameType::Error, &error.frame_data());
        if error.fatal {
            self.0.push(Output::Close(client));
        }
    }

    pub fn drain(&mut self) -> std::vec::Drain<'_, Output> {
        self.0.drain(..)
    }
}

/// IDENTIFY's body as nsqd decodes it: Go's JSON decoder leaves a field at its zero value
/// for `null` as well as when it is missing (tokio-nsq sends `"sample_rate": null`).
#[derive(Debug, Deserialize)]
struct IdentifyBody {
    #[serde(default, deserialize_with = "null_is_zero")]
    heartbeat_interval: i64,
    #[serde(default, deserialize_with = "null_is_zero")]
    output_buffer_timeout: i64,
    #[serde(default, deserialize_with = "null_is_zero")]
    output_buffer_size: i64,
    #[serde(default, deserialize_with = "null_is_zero")]
    sample_rate: i64,
    #[serde(default, deserialize_with = "null_is_zero")]
    msg_timeout: i64,
    #[serde(default, deserialize_with = "null_is_zero")]
    feature_negotiation: bool,
    #[serde(default, deserialize_with = "null_is_zero")]
    client_id: String,
    #[serde(default, deserialize_with = "null_is_zero")]
    hostname: String,
    #[serde(default, deserialize_with = "null_is_zero")]
    user_agent: String,
}

fn null_is_zero<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `nsqd.dat`: the topics and channels that exist, so a restarted nsqd reopens their queues.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Metadata {
    topics: Vec<TopicMetadata>,
    version: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct TopicMetadata {
    name: String,
    #[serde(default)]
    paused: bool,
    channels: Vec<ChannelMetadata>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ChannelMetadata {
    name: String,
    #[serde(default)]
    paused: bool,
}

const METADATA_FILE: &str = "nsqd.dat";

pub struct Nsqd<D: Disk + Clone> {
    options: NsqdOptions,
    disk: D,
    topics: BTreeMap<String, Topic<D>>,
    clients: BTreeMap<ClientId, Client>,
    next_client: ClientId,
    guids: GuidFactory,
    epoch_ms: u64,
    next_scan: Duration,
    /// nsqd was given lookupd addresses: new topics pre-create their channels from lookupd.
    precreate: bool,
    /// Set by `get_topic` when it created a topic that waits for pre-creation.
    created_pending: Option<String>,
}

impl<D: Disk + Clone> Nsqd<D> {
    /// Starts nsqd on `disk`, reopening every topic and channel its metadata names.
    pub fn open(options: NsqdOptions, disk: D, node_id: u16, epoch_ms: u64, now: Duration) -> Nsqd<D> {
        let mut nsqd = Nsqd {
            next_scan: now + ms(options.queue_scan_interval_ms),
            options,
            disk,
            topics: BTreeMap::new(),
            clients: BTreeMap::new(),
            next_client: 1,
            guids: GuidFactory::new(node_id),
            epoch_ms,
            precreate: false,
            created_pending: None,
        };
        let metadata: Metadata = nsqd
            .disk
            .read(METADATA_FILE)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let mut ignored = Outbox::default();
        for topic in metadata.topics {
            nsqd.get_topic(&topic.name, now, &mut ignored).paused = topic.paused;
            for channel in topic.channels {
                nsqd.get_channel(&topic.name, &channel.name, now, &mut ignored);
                if let Some(c) = nsqd
                    .topics
                    .get_mut(&topic.name)
                    .and_then(|t| t.channels.get_mut(&channel.name))
                {
                    c.paused = channel.paused;
                }
            }
        }
        nsqd
    }

    pub fn options(&self) -> &NsqdOptions {
        &self.options
    }

    /// nsqd has lookupds (`--lookupd-tcp-address`): topics created from now on pre-create
    /// the channels lookupd knows before their pump starts.
    pub fn set_lookupds_configured(&mut self, configured: bool) {
        self.precreate = configured;
    }

    /// The answer to [`Output::QueryChannels`]: creates the channels found (never
    /// `#ephemeral` ones, which would have no client), starts the topic, and unblocks the
    /// clients whose command created it.
    pub fn channels_found(
        &mut self,
        topic: &str,
        found: ChannelsFound,
        now: Duration,
        rng: &mut impl Rng,
        out: &mut Outbox,
    ) {
        if self.topics.get(topic).is_none_or(|t| t.is_started()) {
            return;
        }
        match &found {
            ChannelsFound::NoLookupd => out.0.push(Output::Note("nsqd.precreate_no_lookupd")),
            ChannelsFound::Failed => out.0.push(Output::Note("nsqd.precreate_failed")),
            ChannelsFound::Channels(names) => {
                let mut created = false;
                for name in names.iter().filter(|n| !super::protocol::is_ephemeral(n)) {
                    if !self.topics[topic].channels.contains_key(name) {
                        created = true;
                    }
                    self.get_channel(topic, name, now, out);
                }
                if created {
                    out.0.push(Output::Note("nsqd.channels_precreated"));
                }
            }
        }
        if let Some(t) = self.topics.get_mut(topic) {
            t.start();
        }
        let blocked: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|(_, c)| c.blocked_on.as_deref() == Some(topic))
            .map(|(id, _)| *id)
            .collect();
        for client in blocked {
            let c = self.clients.get_mut(&client).expect("listed above");
            c.blocked_on = None;
            out.0.append(&mut c.held);
            // Read what the client sent while it was blocked.
            self.receive(client, &[], now, rng, out);
        }
        self.pump(now, rng, out);
    }

    fn get_topic(&mut self, name: &str, now: Duration, out: &mut Outbox) -> &mut Topic<D> {
        if !self.topics.contains_key(name) {
            let ephemeral = super::protocol::is_ephemeral(name);
            let backend = Backend::open(name, ephemeral, self.disk.clone(), self.options.disk_queue(), now);
            let mut topic = Topic::new(name, self.options.mem_queue_size, backend);
            if self.precreate {
                // nsqd's GetTopic: the topic exists, its pump waits for the channels lookupd
                // knows (reference §1: channel pre-creation). Topics reopened from metadata
                // at startup start at once (`open` runs before lookupds are configured).
                out.0.push(Output::QueryChannels(name.to_string()));
                self.created_pending = Some(name.to_string());
            } else {
                topic.start();
            }
            self.topics.insert(name.to_string(), topic);
            out.0.push(Output::Register {
                topic: name.to_string(),
                channel: None,
            });
            if !ephemeral {
                let _ = self.persist_metadata();
            }
        }
        self.topics.get_mut(name).expect("inserted above")
    }

    fn get_channel(&mut self, topic: &str, channel: &str, now: Duration, out: &mut Outbox) {
        let options = self.options.clone();
        let disk = self.disk.clone();
        let created = {
            let topic_state = self.get_topic(topic, now, out);
            if topic_state.channels.contains_key(channel) {
                false
            } else {
                let ephemeral = super::protocol::is_ephemeral(channel);
                let backend = Backend::open(
                    &format!("{topic}:{channel}"),
                    ephemeral,
                    disk,
                    options.disk_queue(),
                    now,
                );
                topic_state.channels.insert(
                    channel.to_string(),
                    Channel::new(topic, channel, options.mem_queue_size, backend),
                );
                true
            }
        };
        if created {
            out.0.push(Output::Register {
                topic: topic.to_string(),
                channel: Some(channel.to_string()),
            });
            if !super::protocol::is_ephemeral(channel) {
                let _ = self.persist_metadata();
            }
        }
    }

    /// Written as nsqd does: to a tmp file, fsynced, renamed over the old one.
    fn persist_metadata(&mut self) -> io::Result<()> {
        let metadata = Metadata {
            topics: self
                .topics
                .values()
                .filter(|t| !t.ephemeral)
                .map(|t| TopicMetadata {
                    name: t.name.clone(),
                    paused: t.paused,
                    channels: t
                        .channels
                        .values()
                        .filter(|c| !c.ephemeral)
                        .map(|c| ChannelMetadata {
                            name: c.name.clone(),
                            paused: c.paused,
                        })
                        .collect(),
                })
                .collect(),
            version: VERSION.to_string(),
        };
        let bytes = serde_json::to_vec(&metadata).expect("metadata serializes");
        let tmp = format!("{METADATA_FILE}.tmp");
        let _ = self.disk.remove(&tmp);
        self.disk.write_at(&tmp, 0, &bytes)?;
        self.disk.fsync(&tmp)?;
        self.disk.rename(&tmp, METADATA_FILE)
    }

    pub fn connect(&mut self, now: Duration) -> ClientId {
        let id = self.next_client;
        self.next_client += 1;
        let heartbeat = ms(self.options.client_timeout_ms / 2);
        let output_buffer_timeout = ms(self.options.output_buffer_timeout_ms);
        self.clients.insert(
            id,
            Client {
                state: State::Magic,
                input: Vec::new(),
                subscription: None,
                heartbeat_interval: Some(heartbeat),
                msg_timeout: ms(self.options.msg_timeout_ms),
                output_buffer_timeout: Some(output_buffer_timeout),
                ready_count: 0,
                in_flight: 0,
                last_read: now,
                next_heartbeat: Some(now + heartbeat),
                buffered: Vec::new(),
                next_flush: Some(now + output_buffer_timeout),
                blocked_on: None,
                held: Vec::new(),
                unwritten: 0,
                write_blocked_since: None,
                stats: ClientStatsState {
                    connect_ts: (self.epoch_ms + now.as_millis() as u64) / 1000,
                    ..ClientStatsState::default()
                },
            },
        );
        id
    }

    /// The connection's remote `host:port`, for `/stats` (the driver knows it; `client_id`
    /// and `hostname` start as its host, as `newClientV2` sets them).
    pub fn set_remote_address(&mut self, client: ClientId, address: &str) {
        if let Some(c) = self.clients.get_mut(&client) {
            let host = address
                .rsplit_once(':')
                .map_or(address, |(host, _)| host)
                .trim_start_matches('[')
                .trim_end_matches(']');
            c.stats.client_id = host.to_string();
            c.stats.hostname = host.to_string();
            c.stats.remote_address = address.to_string();
        }
    }

    /// The driver wrote `bytes` of this client's output to its socket. Progress renews the
    /// write deadline, as each of nsqd's writes sets its own; once the unwritten output is
    /// back under the bound the client runs again: what it sent meanwhile is read, and
    /// deliveries resume.
    pub fn written(
        &mut self,
        client: ClientId,
        bytes: usize,
        now: Duration,
        rng: &mut impl Rng,
        out: &mut Outbox,
    ) {
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        c.unwritten = c.unwritten.saturating_sub(bytes);
        if c.write_blocked_since.is_none() {
            return;
        }
        if c.unwritten > OUTPUT_UNWRITTEN_BYTES_MAX {
            c.write_blocked_since = Some(now);
            return;
        }
        c.write_blocked_since = None;
        self.receive(client, &[], now, rng, out);
    }

    /// Whether the client's writes are blocked: the driver reads nothing more from it.
    pub fn is_write_blocked(&self, client: ClientId) -> bool {
        self.clients
            .get(&client)
            .is_some_and(|c| c.write_blocked_since.is_some())
    }

    /// The write deadline a driver puts on each write to this client's socket: its
    /// heartbeat interval, or none when heartbeats are off (`protocolV2.Send`).
    pub fn write_timeout(&self, client: ClientId) -> Option<Duration> {
        self.clients.get(&client)?.heartbeat_interval
    }

    /// The connection is gone. Its in-flight messages stay in flight until they time out.
    pub fn disconnect(&mut self, client: ClientId, out: &mut Outbox) {
        let Some(state) = self.clients.remove(&client) else {
            return;
        };
        if let Some((topic, channel)) = state.subscription {
            let delete = self
                .topics
                .get_mut(&topic)
                .and_then(|t| t.channels.get_mut(&channel))
                .is_some_and(|c| c.remove_client(client));
            if delete {
                // An ephemeral channel vanishes with its last client, and its messages with it.
                if let Some(t) = self.topics.get_mut(&topic) {
                    t.channels.remove(&channel);
                    out.0.push(Output::Note("nsqd.ephemeral_channel_deleted"));
                    if t.ephemeral && t.channels.is_empty() {
                        self.topics.remove(&topic);
                    }
                }
            }
        }
    }

    /// Bytes arrived on `client`'s connection.
    pub fn receive(
        &mut self,
        client: ClientId,
        bytes: &[u8],
        now: Duration,
        rng: &mut impl Rng,
        out: &mut Outbox,
    ) {
        let Some(state) = self.clients.get_mut(&client) else {
            return;
        };
        if state.state == State::Closed {
            return;
        }
        state.last_read = now;
        state.input.extend_from_slice(bytes);
        if !state.read_magic(client, out) {
            return;
        }
        let limits = self.options.limits();
        loop {
            let Some(state) = self.clients.get_mut(&client) else {
                return;
            };
            match state.next_command(client, &limits, out) {
                NextCommand::Ready(command) => self.run_command(client, command, now, out),
                NextCommand::Wait => break,
                // Input that closes the connection delivers nothing now; the next tick does.
                NextCommand::Closed => return,
            }
        }
        self.pump(now, rng, out);
    }

    /// Runs one command and answers its error. A command that created a topic blocks, as in
    /// nsqd's `GetTopic`, until lookupd has said which channels it has: its answer is held
    /// and the client's later input waits.
    fn run_command(&mut self, client: ClientId, command: Command, now: Duration, out: &mut Outbox) {
        let before = out.0.len();
        let result = self.exec(client, command, now, out);
        if let Err(error) = result {
            if error.fatal {
                if let Some(state) = self.clients.get_mut(&client) {
                    state.state = State::Closed;
                }
            }
            out.error(client, &error);
        }
        // The answers count toward the client's unwritten output, so a client that sends
        // commands and never reads their answers blocks as nsqd's IOLoop does.
        let answered: usize = out.0[before..]
            .iter()
            .map(|o| match o {
                Output::Send(id, bytes) if *id == client => bytes.len(),
                _ => 0,
            })
            .sum();
        if let Some(state) = self.clients.get_mut(&client) {
            state.queued(answered, now);
        }
        if let Some(topic) = self.created_pending.take() {
            // The command blocks in GetTopic: hold its answer, stop reading.
            let (mine, others): (Vec<Output>, Vec<Output>) = out
                .0
                .drain(before..)
                .partition(|o| matches!(o, Output::Send(id, _) | Output::Close(id) if *id == client));
            out.0.extend(others);
            if let Some(state) = self.clients.get_mut(&client) {
                state.blocked_on = Some(topic);
                state.held = mine;
            }
        }
    }

    fn new_message(&mut self, now: Duration, body: Vec<u8>) -> Message {
        let unix_ms = self.epoch_ms + now.as_millis() as u64;
        Message {
            id: MessageId::from_guid(self.guids.next(unix_ms)),
            timestamp_ns: (unix_ms as i64) * 1_000_000 + i64::from(now.subsec_nanos() % 1_000_000),
            attempts: 0,
            body,
        }
    }

    fn publish(
        &mut self,
        topic: &str,
        bodies: Vec<Vec<u8>>,
        defer: Duration,
        now: Duration,
        out: &mut Outbox,
    ) -> Result<(), ProtocolError> {
        let messages: Vec<Message> = bodies.into_iter().map(|b| self.new_message(now, b)).collect();
        let topic_state = self.get_topic(topic, now, out);
        for message in messages {
            match topic_state.put(message, defer) {
                Ok(Placed::Memory) => {}
                Ok(Placed::Disk) => out.0.push(Output::Note("nsqd.topic_overflow_to_disk")),
                Ok(Placed::Dropped) => out.0.push(Output::Note("nsqd.ephemeral_overflow_dropped")),
                Err(e) => return Err(ProtocolError::fatal("E_PUB_FAILED", format!("PUB failed {e}"))),
            }
        }
        Ok(())
    }

    /// `clientV2.PublishedMessage`: what `/stats` counts of a producer.
    fn published(&mut self, client: ClientId, topic: &str, count: u64) {
        if let Some(c) = self.clients.get_mut(&client) {
            *c.stats.pub_counts.entry(topic.to_string()).or_default() += count;
        }
    }

    fn exec(
        &mut self,
        client: ClientId,
        command: Command,
        now: Duration,
        out: &mut Outbox,
    ) -> Result<(), ProtocolError> {
        let state = self.clients.get(&client).expect("exec on a live client").state;
        let active = matches!(state, State::Subscribed | State::Closing);
        match command {
            Command::Nop => {}
            Command::Identify(body) => {
                allowed_in_state(state == State::Init, "IDENTIFY")?;
                self.identify(client, &body, now, out)?;
            }
            Command::Auth(_) => {
                allowed_in_state(state == State::Init, "AUTH")?;
                return Err(ProtocolError::fatal("E_AUTH_DISABLED", "AUTH disabled"));
            }
            Command::Sub { topic, channel } => {
                allowed_in_state(state == State::Init, "SUB")?;
                self.subscribe(client, topic, channel, now, out)?;
            }
            Command::Rdy(count) => {
                if state == State::Closing {
                    return Ok(()); // ignored after CLS
                }
                allowed_in_state(state == State::Subscribed, "RDY")?;
                self.clients.get_mut(&client).expect("live").ready_count = count;
            }
            Command::Fin(id) => {
                allowed_in_state(active, "FIN")?;
                self.finish(client, id)?;
            }
            Command::Req { id, timeout_ms } => {
                allowed_in_state(active, "REQ")?;
                self.requeue(client, id, timeout_ms, now, out)?;
            }
            Command::Touch(id) => {
                allowed_in_state(active, "TOUCH")?;
                self.touch(client, id, now)?;
            }
            Command::Cls => {
                allowed_in_state(state == State::Subscribed, "CLS")?;
                let c = self.clients.get_mut(&client).expect("live");
                c.state = State::Closing;
                c.ready_count = 0;
                out.send(client, FrameType::Response, CLOSE_WAIT);
            }
            Command::Pub { topic, body } => {
                self.publish(&topic, vec![body], Duration::ZERO, now, out)?;
                self.published(client, &topic, 1);
                out.send(client, FrameType::Response, OK);
            }
            Command::Mpub { topic, bodies } => {
                let count = bodies.len() as u64;
                self.publish(&topic, bodies, Duration::ZERO, now, out)?;
                self.published(client, &topic, count);
                out.send(client, FrameType::Response, OK);
            }
            Command::Dpub {
                topic,
                defer_ms,
                body,
            } => {
                self.publish(&topic, vec![body], ms(defer_ms as u64), now, out)?;
                self.published(client, &topic, 1);
                out.send(client, FrameType::Response, OK);
            }
        }
        Ok(())
    }

    /// IDENTIFY: the client's heartbeat interval, output buffer timeout and message timeout,
    /// each checked and set in that order, so an earlier one stays set when a later one is
    /// refused (nsqd's `clientV2.Identify` sets them one after another). With feature
    /// negotiation, the answer is nsqd's settings as JSON.
    fn identify(
        &mut self,
        client: ClientId,
        body: &[u8],
        now: Duration,
        out: &mut Outbox,
    ) -> Result<(), ProtocolError> {
        let identify: IdentifyBody = serde_json::from_slice(body)
            .map_err(|_| ProtocolError::fatal("E_BAD_BODY", "IDENTIFY failed to decode JSON body"))?;
        let options = &self.options;
        let c = self.clients.get_mut(&client).expect("live");
        // Set first, as `clientV2.Identify` does, even when a later field is refused.
        c.stats.client_id = identify.client_id;
        c.stats.hostname = identify.hostname;
        c.stats.user_agent = identify.user_agent;
        c.heartbeat_interval = identify_heartbeat_interval(identify.heartbeat_interval, options)?;
        c.next_heartbeat = c.heartbeat_interval.map(|h| now + h);
        let (timeout, size) = identify_output_buffer(
            identify.output_buffer_timeout,
            identify.output_buffer_size,
            options,
        )?;
        c.output_buffer_timeout = timeout;
        c.next_flush = c.output_buffer_timeout.map(|t| now + t);
        let sample_rate = identify_sample_rate(identify.sample_rate)?;
        c.stats.sample_rate = sample_rate;
        c.msg_timeout = identify_msg_timeout(identify.msg_timeout, options)?;
        if identify.feature_negotiation {
            let reply = serde_json::json!({
                "max_rdy_count": options.max_rdy_count,
                "version": VERSION,
                "max_msg_timeout": options.max_msg_timeout_ms,
                "msg_timeout": c.msg_timeout.as_millis() as u64,
                "tls_v1": false,
                "deflate": false,
                "deflate_level": 6,
                "max_deflate_level": 6,
                "snappy": false,
                // Accepted and echoed as nsqd does; sampling itself is not modelled.
                "sample_rate": sample_rate,
                "auth_required": false,
                "output_buffer_size": size,
                "output_buffer_timeout": c.output_buffer_timeout.map_or(-1, |t| t.as_millis() as i64),
            });
            out.send(client, FrameType::Response, reply.to_string().as_bytes());
        } else {
            out.send(client, FrameType::Response, OK);
        }
        Ok(())
    }

    /// SUB: needs heartbeats; creates the topic and channel if need be, and joins the channel.
    fn subscribe(
        &mut self,
        client: ClientId,
        topic: String,
        channel: String,
        now: Duration,
        out: &mut Outbox,
    ) -> Result<(), ProtocolError> {
        if self.clients[&client].heartbeat_interval.is_none() {
            return Err(ProtocolError::fatal(
                "E_INVALID",
                "cannot SUB with heartbeats disabled",
            ));
        }
        self.get_channel(&topic, &channel, now, out);
        self.topics
            .get_mut(&topic)
            .and_then(|t| t.channels.get_mut(&channel))
            .expect("created above")
            .add_client(client);
        let c = self.clients.get_mut(&client).expect("live");
        c.state = State::Subscribed;
        c.subscription = Some((topic, channel));
        out.send(client, FrameType::Response, OK);
        Ok(())
    }

    fn finish(&mut self, client: ClientId, id: MessageId) -> Result<(), ProtocolError> {
        self.channel_of(client)
            .finish(client, id)
            .map_err(|e| ProtocolError::non_fatal("E_FIN_FAILED", format!("FIN {id} failed {e}")))?;
        let c = self.clients.get_mut(&client).expect("live");
        c.in_flight -= 1;
        c.stats.finish_count += 1;
        Ok(())
    }

    fn requeue(
        &mut self,
        client: ClientId,
        id: MessageId,
        timeout_ms: i64,
        now: Duration,
        out: &mut Outbox,
    ) -> Result<(), ProtocolError> {
        self.channel_of(client)
            .requeue(client, id, now, ms(timeout_ms as u64))
            .map_err(|e| ProtocolError::non_fatal("E_REQ_FAILED", format!("REQ {id} failed {e}")))?;
        let c = self.clients.get_mut(&client).expect("live");
        c.in_flight -= 1;
        c.stats.requeue_count += 1;
        out.0.push(Output::Note("nsqd.requeue"));
        Ok(())
    }

    fn touch(&mut self, client: ClientId, id: MessageId, now: Duration) -> Result<(), ProtocolError> {
        let msg_timeout = self.clients[&client].msg_timeout;
        let max = ms(self.options.max_msg_timeout_ms);
        self.channel_of(client)
            .touch(client, id, now, msg_timeout, max)
            .map_err(|e| ProtocolError::non_fatal("E_TOUCH_FAILED", format!("TOUCH {id} failed {e}")))?;
        Ok(())
    }

    fn channel_of(&mut self, client: ClientId) -> &mut Channel<D> {
        // Borrowed, not cloned: this runs on every FIN, REQ and TOUCH.
        let (topic, channel) = self.clients[&client]
            .subscription
            .as_ref()
            .expect("subscribed or closing");
        self.topics
            .get_mut(topic)
            .and_then(|t| t.channels.get_mut(channel))
            .expect("a subscribed client's channel exists")
    }

    /// Moves messages: every topic's pump, then every channel to its ready clients (a random
    /// ready client per message, as competing client pumps would take it).
    fn pump(&mut self, now: Duration, rng: &mut impl Rng, out: &mut Outbox) {
        for topic in self.topics.values_mut() {
            match topic.pump(now, rng) {
                Ok((_, 0)) => {}
                Ok(_) => out.0.push(Output::Note("nsqd.channel_overflow_to_disk")),
                Err(e) => tracing::warn!(topic = topic.name, error = %e, "topic pump"),
            }
        }
        self.note_channel_drops(out);
        let clients = &mut self.clients;
        // One list of ready clients for the whole pump, refilled before each delivery.
        let mut ready: Vec<ClientId> = Vec::new();
        for topic in self.topics.values_mut() {
            // A paused channel's clients are not ready for messages (`IsReadyForMessages`).
            for channel in topic.channels.values_mut().filter(|c| !c.paused) {
                loop {
                    ready.clear();
                    ready.extend(
                        channel
                            .clients()
                            .iter()
                            .copied()
                            .filter(|id| clients.get(id).is_some_and(Client::is_ready)),
                    );
                    let Some(&chosen) = ready.choose(rng) else { break };
                    let message = match channel.take_next(rng) {
                        Ok(Some(message)) => message,
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "channel read");
                            break;
                        }
                    };
                    let c = clients.get_mut(&chosen).expect("ready clients exist");
                    let message = channel.start_in_flight(message, chosen, now, c.msg_timeout);
                    c.in_flight += 1;
                    c.stats.message_count += 1;
                    message.put_frame(&mut c.buffered);
                    if !c.is_ready()
                        || c.output_buffer_timeout.is_none()
                        || c.buffered.len() >= OUTPUT_BUFFER_SIZE
                    {
                        // Not ready for more: nsqd flushes at once. A full buffer flushes too,
                        // as Go's bufio.Writer does, so the core never holds more than RDY
                        // messages' worth of output in one piece.
                        let bytes = std::mem::take(&mut c.buffered);
                        c.queued(bytes.len(), now);
                        out.0.push(Output::Send(chosen, bytes));
                    }
                }
            }
        }
    }

    /// Time passes: heartbeats, read deadlines, output-buffer flushes, the queue scan, disk
    /// syncs, then delivery.
    pub fn tick(&mut self, now: Duration, rng: &mut impl Rng, out: &mut Outbox) {
        let mut dead = Vec::new();
        let mut write_timeouts = Vec::new();
        for (&id, c) in self.clients.iter_mut() {
            if c.state == State::Closed {
                continue;
            }
            if c.write_blocked_since.is_some() {
                // Blocked in a write: no heartbeat, no flush, no read until it completes
                // or its deadline passes.
                if c.write_deadline().is_some_and(|deadline| now >= deadline) {
                    write_timeouts.push(id);
                }
                continue;
            }
            if let Some(heartbeat) = c.heartbeat_interval {
                // The read deadline: two heartbeats without a byte from the client.
                if now >= c.last_read + heartbeat * 2 {
                    dead.push(id);
                    continue;
                }
                if let Some(at) = c.next_heartbeat {
                    if now >= at {
                        let before = out.0.len();
                        out.send(id, FrameType::Response, HEARTBEAT);
                        if let Some(Output::Send(_, bytes)) = out.0.get(before) {
                            c.queued(bytes.len(), now);
                        }
                        c.next_heartbeat = Some(at + heartbeat);
                    }
                }
            }
            if let (Some(at), Some(every)) = (c.next_flush, c.output_buffer_timeout) {
                if now >= at {
                    if !c.buffered.is_empty() {
                        let bytes = std::mem::take(&mut c.buffered);
                        c.queued(bytes.len(), now);
                        out.0.push(Output::Send(id, bytes));
                    }
                    c.next_flush =
                        Some(at + every * ((now - at).as_nanos() / every.as_nanos()).max(1) as u32);
                }
            }
        }
        for id in dead {
            if let Some(c) = self.clients.get_mut(&id) {
                c.state = State::Closed;
            }
            out.0.push(Output::Note("nsqd.client_read_timeout"));
            out.0.push(Output::Close(id));
        }
        for id in write_timeouts {
            if let Some(c) = self.clients.get_mut(&id) {
                c.state = State::Closed;
            }
            // The blocked write failed (`i/o timeout`): the messagePump exits and the
            // connection closes; its in-flight messages wait out msg_timeout.
            out.0.push(Output::Note("nsqd.client_write_timeout"));
            out.0.push(Output::Close(id));
        }
        if now >= self.next_scan {
            self.next_scan = now + ms(self.options.queue_scan_interval_ms);
            self.queue_scan(now, rng, out);
        }
        for topic in self.topics.values_mut() {
            if let Err(e) = topic.tick(now) {
                tracing::warn!(topic = topic.name, error = %e, "disk queue sync");
            }
        }
        self.pump(now, rng, out);
    }

    /// `queueScanLoop`: a random sample of channels has its in-flight and deferred queues
    /// processed; if more than `queue_scan_dirty_percent` were dirty, sample again at once.
    /// So a timeout fires up to a scan interval late, later with many channels.
    fn queue_scan(&mut self, now: Duration, rng: &mut impl Rng, out: &mut Outbox) {
        let all: Vec<(String, String)> = self
            .topics
            .iter()
            .flat_map(|(t, topic)| topic.channels.keys().map(move |c| (t.clone(), c.clone())))
            .collect();
        if all.is_empty() {
            return;
        }
        // Bounded, as nsqd's loop is in practice: each pass processes everything due.
        for _ in 0..1000 {
            let count = self.options.queue_scan_selection_count.min(all.len());
            let sample: Vec<&(String, String)> = all.choose_multiple(rng, count).collect();
            let mut dirty = 0;
            for (topic, channel) in sample {
                let Some(c) = self
                    .topics
                    .get_mut(topic)
                    .and_then(|t| t.channels.get_mut(channel))
                else {
                    continue;
                };
                let timed_out = c.process_in_flight(now).unwrap_or_default();
                let deferred = c.process_deferred(now).unwrap_or_default();
                if !timed_out.is_empty() || deferred > 0 {
                    dirty += 1;
                }
                for t in timed_out {
                    out.0.push(Output::Note("nsqd.msg_timeout"));
                    if let Some(client) = self.clients.get_mut(&t.client) {
                        client.in_flight -= 1;
                    }
                }
            }
            if (dirty as f64) <= self.options.queue_scan_dirty_percent * count as f64 {
                break;
            }
        }
        self.note_channel_drops(out);
    }

    /// An `#ephemeral` channel's overflow is dropped by its dummy backend (nsqd channel.go
    /// put: `c.backend.Put` on a `newDummyBackendQueue`), one note per message, as the
    /// topic's overflow is noted, so the promise can name the documented window.
    fn note_channel_drops(&mut self, out: &mut Outbox) {
        for topic in self.topics.values_mut() {
            for channel in topic.channels.values_mut() {
                for _ in 0..channel.take_dropped() {
                    out.0
                        .push(Output::Note("nsqd.ephemeral_channel_overflow_dropped"));
                }
            }
        }
    }

    /// Graceful shutdown (SIGTERM): every topic and channel writes memory, in-flight and
    /// deferred messages to disk and syncs; the metadata is persisted.
    pub fn close(&mut self) -> io::Result<()> {
        self.persist_metadata()?;
        for topic in self.topics.values_mut() {
            topic.close()?;
        }
        Ok(())
    }

    /// What the disk queues noticed since the last call (stale metadata on open, `.bad`
    /// files, data loss at the tail), as note names.
    pub fn take_disk_notes(&mut self) -> Vec<&'static str> {
        use super::diskqueue::DiskQueueNote;
        let mut names = Vec::new();
        for topic in self.topics.values_mut() {
            let mut notes = topic.backend().take_notes();
            for channel in topic.channels.values_mut() {
                notes.extend(channel.backend().take_notes());
            }
            names.extend(notes.into_iter().filter_map(|note| match note {
                DiskQueueNote::StaleWritePosition => Some("diskqueue.stale_metadata"),
                DiskQueueNote::BadFileSkipped => Some("diskqueue.bad_file_skipped"),
                DiskQueueNote::DataLossAtTail => Some("diskqueue.data_loss_at_tail"),
                DiskQueueNote::Synced => None,
            }));
        }
        names
    }

    /// When `tick` next has something to do.
    pub fn next_wakeup(&self) -> Duration {
        let mut next = self.next_scan;
        for c in self.clients.values() {
            if let Some(deadline) = c.write_deadline() {
                next = next.min(deadline);
                continue;
            }
            for at in [c.next_heartbeat, c.next_flush.filter(|_| !c.buffered.is_empty())]
                .into_iter()
                .flatten()
            {
                next = next.min(at);
            }
            if let Some(heartbeat) = c.heartbeat_interval {
                next = next.min(c.last_read + heartbeat * 2);
            }
        }
        next
    }

    /// Topic and channel depths, in flight and deferred counts (what nsqadmin shows).
    pub fn stats(&self) -> Vec<ChannelStats> {
        self.topics
            .values()
            .flat_map(|t| {
                t.channels.values().map(move |c| ChannelStats {
                    topic: t.name.clone(),
                    channel: c.name.clone(),
                    topic_depth: t.depth(),
                    depth: c.depth(),
                    in_flight: c.in_flight_count(),
                    deferred: c.deferred_count(),
                    requeued: c.requeue_count,
                    timed_out: c.timeout_count,
                    clients: c.clients().len(),
                })
            })
            .collect()
    }

    /// Everything this nsqd still holds, as one line per queue that is not empty: topics
    /// (including topics with no channel, which keep their backlog for the first channel),
    /// channel depths, in-flight and deferred messages. Empty when it holds nothing.
    pub fn held(&self) -> Vec<String> {
        let mut held = Vec::new();
        for topic in self.topics.values() {
            if topic.depth() > 0 {
                held.push(format!("topic {} depth {}", topic.name, topic.depth()));
            }
            for c in topic.channels.values() {
                let count = c.depth() + c.in_flight_count() as i64 + c.deferred_count() as i64;
                if count > 0 {
                    held.push(format!(
                        "{}/{} depth {} in flight {} deferred {}",
                        topic.name,
                        c.name,
                        c.depth(),
                        c.in_flight_count(),
                        c.deferred_count()
                    ));
                }
            }
        }
        held
    }

    /// Every topic, then its channels: what an nsqd REGISTERs with a lookupd on connecting.
    pub fn registrations(&self) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        for topic in self.topics.values() {
            out.push((topic.name.clone(), None));
            for channel in topic.channels.keys() {
                out.push((topic.name.clone(), Some(channel.clone())));
            }
        }
        out
    }

    pub fn topic_names(&self) -> BTreeSet<String> {
        self.topics.keys().cloned().collect()
    }
}

/// A command sent in a state that does not allow it is fatal.
fn allowed_in_state(allowed: bool, command: &str) -> Result<(), ProtocolError> {
    if allowed {
        return Ok(());
    }
    Err(ProtocolError::fatal(
        "E_INVALID",
        format!("cannot {command} in current state"),
    ))
}

/// IDENTIFY's `heartbeat_interval`: -1 turns heartbeats off, 0 takes the default.
fn identify_heartbeat_interval(value: i64, options: &NsqdOptions) -> Result<Option<Duration>, ProtocolError> {
    match value {
        -1 => Ok(None),
        0 => Ok(Some(ms(options.client_timeout_ms / 2))),
        v if v >= 1000 && v as u64 <= options.max_heartbeat_interval_ms => Ok(Some(ms(v as u64))),
        v => Err(ProtocolError::fatal(
            "E_BAD_BODY",
            format!("IDENTIFY heartbeat interval ({v}) is invalid"),
        )),
    }
}

/// nsqd's --min-output-buffer-timeout and --max-output-buffer-size defaults, and the buffer
/// size a client gets when it asks for none (nsqd/options.go, client_v2.go).
const MIN_OUTPUT_BUFFER_TIMEOUT_MS: i64 = 25;
const MAX_OUTPUT_BUFFER_SIZE: i64 = 64 * 1024;
const DEFAULT_OUTPUT_BUFFER_SIZE: i64 = 16 * 1024;

/// IDENTIFY's `output_buffer_timeout` then `output_buffer_size` (nsqd's
/// `clientV2.SetOutputBuffer`): a timeout of -1 turns buffering off, 0 takes the default; a
/// size of -1 means no buffer (size 1, and no timeout either), 0 the default.
fn identify_output_buffer(
    timeout: i64,
    size: i64,
    options: &NsqdOptions,
) -> Result<(Option<Duration>, i64), ProtocolError> {
    let max_timeout = options.max_output_buffer_timeout_ms as i64;
    let timeout = match timeout {
        -1 => None,
        0 => Some(ms(options.output_buffer_timeout_ms)),
        v if (MIN_OUTPUT_BUFFER_TIMEOUT_MS..=max_timeout).contains(&v) => Some(ms(v as u64)),
        v => {
            return Err(ProtocolError::fatal(
                "E_BAD_BODY",
                format!("IDENTIFY output buffer timeout ({v}) is invalid"),
            ))
        }
    };
    match size {
        -1 => Ok((None, 1)),
        0 => Ok((timeout, DEFAULT_OUTPUT_BUFFER_SIZE)),
        v if (64..=MAX_OUTPUT_BUFFER_SIZE).contains(&v) => Ok((timeout, v)),
        v => Err(ProtocolError::fatal(
            "E_BAD_BODY",
            format!("IDENTIFY output buffer size ({v}) is invalid"),
        )),
    }
}

/// IDENTIFY's `sample_rate`: a percentage of messages to send, 0 (all) to 99
/// (`clientV2.SetSampleRate`).
fn identify_sample_rate(value: i64) -> Result<i64, ProtocolError> {
    if !(0..=99).contains(&value) {
        return Err(ProtocolError::fatal(
            "E_BAD_BODY",
            format!("IDENTIFY sample rate ({value}) is invalid"),
        ));
    }
    Ok(value)
}

/// IDENTIFY's `msg_timeout`: 0 takes the default.
fn identify_msg_timeout(value: i64, options: &NsqdOptions) -> Result<Duration, ProtocolError> {
    match value {
        0 => Ok(ms(options.msg_timeout_ms)),
        v if v >= 1000 && v as u64 <= options.max_msg_timeout_ms => Ok(ms(v as u64)),
        v => Err(ProtocolError::fatal(
            "E_BAD_BODY",
            format!("IDENTIFY msg timeout ({v}) is invalid"),
        )),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChannelStats {
    pub topic: String,
    pub channel: String,
    pub topic_depth: i64,
    pub depth: i64,
    pub in_flight: usize,
    pub deferred: usize,
    pub requeued: u64,
    pub timed_out: u64,
    pub clients: usize,
}

// nsqd's HTTP API: a child module, so it reaches the topics as the TCP commands do.
#[path = "nsqd_http.rs"]
mod http_api;

// Deleting, emptying and pausing topics and channels, as the HTTP API runs them.
#[path = "nsqd_admin.rs"]
mod admin;
pub use admin::AdminError;
