//! The `nsq` design: nsqd hosts, producers publishing to their own nsqd, consumers connected
//! to every nsqd (reference §1; designs table rows 1 to 4).

use super::client::ClientConfig;
use super::consumer::run_consumer;
use super::guid::node_id_for;
use super::lookupd::LookupdOptions;
use super::nsqd::NsqdOptions;
use super::producer::{run_producer, Retry};
use super::sim_nsqd::{self, Registry};
use crate::db::sink::{DbSection, DbSink, DeliveryWindows, Sink};
use crate::db::user::HandlerFactory;
use crate::source::Source;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sim::fault::Topology;
use sim::history::MsgId;
use sim::promise::{Excuse, Promise};
use sim::scenario::{Scenario, ScenarioError, Workload};
use sim::verdict::Property;
use sim::{Design, Env};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// The bound on nsqds and lookupds (`Config`'s schema says the same).
pub const NSQDS_MAX: u32 = 16;
/// The bound on producers and consumers.
pub const CLIENTS_MAX: u32 = 32;

/// The `nsq` design's `[config]`: go-nsq's client options and the topology. The doc comments
/// are what `jetsam list` and the key tables in scenarios/README.md show.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// nsqlookupd hosts (lookupd1..). With 0, consumers connect to every nsqd directly.
    #[schemars(range(max = 16))]
    pub lookupds: u32,
    /// nsqd hosts (nsqd1..); producer i publishes to nsqd ((i-1) mod n)+1.
    #[schemars(range(min = 1, max = 16))]
    pub nsqds: u32,
    /// Consumer hosts, each connected to every nsqd (or to those lookupd names).
    #[schemars(range(min = 1, max = 32))]
    pub consumers: u32,
    /// Topic name (an `#ephemeral` suffix is allowed).
    pub topic: String,
    /// Channel name (an `#ephemeral` suffix is allowed).
    pub channel: String,
    /// Several channels on the topic, e.g. ["billing", "audit"]: each gets a copy of every
    /// message and is judged on its own; consumer i subscribes to channel ((i-1) mod n).
    /// Empty: every consumer on `channel`.
    pub channels: Vec<String>,
    /// nsqds consumers connect to directly (go-nsq ConnectToNSQDs) as well as through lookupd.
    pub consumer_nsqds: Vec<String>,
    /// nsqd's own options (`[config.nsqd]`), nsqd's defaults.
    pub nsqd: NsqdOptions,
    /// nsqd i's --node-id (0..=1023), the 10 bits of its message ids; a missing entry takes
    /// nsqd's default, crc32(md5(hostname)) % 1024. Equal ids make two nsqds' ids collide.
    #[schemars(length(max = 16))]
    pub node_ids: Vec<u16>,
    /// go-nsq MaxInFlight, spread over the connections as RDY (at most nsqd.max_rdy_count).
    #[schemars(range(min = 1))]
    pub max_in_flight: i64,
    /// go-nsq MaxAttempts: past this, FIN without running the handler (0: no limit).
    pub max_attempts: u16,
    /// The consumer's IDENTIFY msg_timeout; 0 takes nsqd's.
    pub msg_timeout_ms: u64,
    /// The consumer's IDENTIFY heartbeat interval.
    pub heartbeat_interval_ms: i64,
    /// go-nsq ReadTimeout.
    pub read_timeout_ms: u64,
    /// go-nsq DialTimeout: how long a client waits for a TCP connect.
    pub connect_timeout_ms: u64,
    /// How long a producer waits for a PUB's answer.
    pub publish_timeout_ms: u64,
    /// What a producer does after a PUB gets no answer.
    pub retry: Retry,
    /// Producer retries per message.
    pub retries_max: u32,
    /// Concurrent handlers per consumer (go-nsq AddConcurrentHandlers).
    #[schemars(range(min = 1, max = 256))]
    pub handlers: u32,
    /// Handler time per message.
    pub processing_ms: u64,
    /// The chance a handler fails (go-nsq then REQs with a linear delay).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub handler_failure_rate: f64,
    /// Handler failures scheduled per message, beside `handler_failure_rate`: the handler
    /// fails the listed attempts of the message with that workload id, e.g.
    /// `fail_messages = [{ id = 7, attempts = [1, 2, 3] }]` (at most 1024 entries).
    pub fail_messages: Vec<FailMessage>,
    /// When each consumer joins, in ms of simulated time: consumer i starts at entry i-1
    /// (consumers past the list's end start at once), e.g. `consumer_start_ms = [0, 5000]`.
    /// Until then it has no connection and no RDY, as a process not yet deployed.
    pub consumer_start_ms: Vec<u64>,
    /// Producers publish this fraction of messages with DPUB, deferred by `defer_ms` (nsqd
    /// keeps the deferral only while the message is in memory: one that spills to the topic's
    /// disk queue loses it, as nsqd's topic.go says).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub defer_fraction: f64,
    /// The DPUB deferral, at most nsqd's max_req_timeout (1 h by default).
    #[schemars(range(max = 3_600_000))]
    pub defer_ms: u64,
    /// Producers publish MPUB batches of this many messages (1: one PUB each). A batch is
    /// never deferred, as nsqd has no deferred MPUB.
    #[schemars(range(min = 1, max = 1024))]
    pub mpub_batch: u32,
    /// Consumers skip a message whose NSQ message id they have already handled (FIN without
    /// running the handler), a common application practice; two nsqds that hand out the same
    /// id then lose one of the messages. Each consumer remembers its last 65,536 ids.
    pub dedupe_message_ids: bool,
    /// go-nsq DefaultRequeueDelay (× attempts).
    pub requeue_delay_ms: u64,
    /// go-nsq MaxRequeueDelay.
    pub max_requeue_delay_ms: u64,
    /// Reconnect interval to a lost nsqd (go-nsq: LookupdPollInterval).
    pub reconnect_ms: u64,
    /// go-nsq LookupdPollInterval (with an initial jitter of up to 30 %).
    pub lookupd_poll_interval_ms: u64,
    /// nsqlookupd's own options (`[config.lookupd]`).
    pub lookupd: LookupdOptions,
    /// Where handlers apply their effect: in memory, or a database host (`db`) set up by
    /// `[config.db]`.
    pub sink: Sink,
    /// The consumer's database, with `sink = "db"` (`[config.db]`).
    pub db: DbSection,
    /// go-nsq's backoff after handler errors (on by default, as in go-nsq): RDY 0 for
    /// multiplier × 2^n.
    pub backoff: bool,
    /// go-nsq BackoffMultiplier.
    pub backoff_multiplier_ms: u64,
    /// go-nsq MaxBackoffDuration.
    pub max_backoff_ms: u64,
    /// Where producers run: `apart`, each on a machine of its own, or `beside`, each on
    /// its own nsqd's machine, publishing to it over loopback (NSQ's recommended
    /// deployment). A scenario's `[run] colocate` replaces this.
    pub placement: Placement,
}

/// Where the `nsq` design's producers run (`placement`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Each producer on a machine of its own.
    #[default]
    Apart,
    /// Producer i on the machine of nsqd ((i-1) mod n)+1, the nsqd it publishes to.
    Beside,
}

/// One entry of `fail_messages`: a message's workload id and the attempts whose handler
/// fails.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailMessage {
    /// The workload's message id (1..=messages).
    #[schemars(range(min = 1))]
    pub id: u64,
    /// The attempts (nsqd's attempt counter, from 1) whose handler fails.
    pub attempts: Vec<u16>,
}

/// The bound on `fail_messages` entries.
pub const FAIL_MESSAGES_MAX: usize = 1024;

impl Default for Config {
    /// go-nsq's defaults where it has them.
    fn default() -> Config {
        Config {
            lookupds: 0,
            lookupd_poll_interval_ms: 60_000,
            lookupd: LookupdOptions::default(),
            sink: Sink::Memory,
            db: DbSection::default(),
            backoff: true,
            backoff_multiplier_ms: 1_000,
            max_backoff_ms: 120_000,
            nsqds: 1,
            consumers: 1,
            topic: "orders".into(),
            channel: "billing".into(),
            channels: Vec::new(),
            consumer_nsqds: Vec::new(),
            nsqd: NsqdOptions::default(),
            node_ids: Vec::new(),
            max_in_flight: 1,
            max_attempts: 5,
            msg_timeout_ms: 0,
            heartbeat_interval_ms: 30_000,
            read_timeout_ms: 60_000,
            connect_timeout_ms: 1_000,
            publish_timeout_ms: 60_000,
            retry: Retry::None,
            placement: Placement::Apart,
            retries_max: 3,
            handlers: 1,
            processing_ms: 5,
            handler_failure_rate: 0.0,
            fail_messages: Vec::new(),
            consumer_start_ms: Vec::new(),
            dedupe_message_ids: false,
            defer_fraction: 0.0,
            defer_ms: 0,
            mpub_batch: 1,
            requeue_delay_ms: 90_000,
            max_requeue_delay_ms: 15 * 60_000,
            reconnect_ms: 60_000,
        }
    }
}

pub struct Nsq {
    config: Config,
    workload: Workload,
    source: Rc<Source>,
    registry: Registry,
    /// The consumer's database, with `sink = "db"`.
    db: Option<DbSink>,
}

pub fn build(scenario: &Scenario) -> Result<Box<dyn Design>, ScenarioError> {
    build_with(scenario, None)
}

/// [`build`], with the user's handler for `strategy = "user"` (issue 13).
pub fn build_with(
    scenario: &Scenario,
    handler: Option<HandlerFactory>,
) -> Result<Box<dyn Design>, ScenarioError> {
    // Bounds are checked from the schema by `design_config`; what remains depends on other
    // keys or on NSQ's name rules.
    let config: Config = scenario.design_config()?;
    assert!(config.nsqds <= NSQDS_MAX && config.consumers <= CLIENTS_MAX);
    if scenario.workload.producers > CLIENTS_MAX {
        return Err(ScenarioError {
            path: scenario.path.clone(),
            line: None,
            message: format!("workload.producers: at most {CLIENTS_MAX} for nsq"),
        });
    }
    validate_names(scenario, &config)?;
    if config.channels.len() > 1 && config.sink == Sink::Db {
        return Err(scenario.config_error(
            "channels",
            "several channels need sink = \"memory\" (the database judges one effect per message)".into(),
        ));
    }
    if config.fail_messages.len() > FAIL_MESSAGES_MAX {
        return Err(scenario.config_error("fail_messages", format!("at most {FAIL_MESSAGES_MAX} entries")));
    }
    if config.consumer_start_ms.len() > config.consumers as usize {
        return Err(scenario.config_error(
            "consumer_start_ms",
            format!("at most one entry per consumer ({})", config.consumers),
        ));
    }
    if config.max_in_flight > config.nsqd.max_rdy_count {
        return Err(scenario.config_error(
            "max_in_flight",
            format!("must be 1..={}", config.nsqd.max_rdy_count),
        ));
    }
    config.db.check(scenario, config.sink, handler.as_ref(), true)?;
    let db = (config.sink == Sink::Db)
        .then(|| DbSink::new(config.db.clone(), scenario.workload.messages).with_user(handler));
    Ok(Box::new(Nsq {
        source: Rc::new(Source::new(&scenario.workload)),
        workload: scenario.workload.clone(),
        registry: Rc::new(RefCell::new(BTreeMap::new())),
        config,
        db,
    }))
}

/// nsqd's --node-id is 10 bits (nsqd/nsqd.go New: "--node-id must be [0,1024)").
const NODE_IDS: u16 = 1024;

/// Topic and channel names as nsqd accepts them, direct nsqds that exist, node ids nsqd
/// accepts.
fn validate_names(scenario: &Scenario, config: &Config) -> Result<(), ScenarioError> {
    if !super::protocol::is_valid_topic_name(&config.topic) {
        return Err(scenario.config_error(
            "topic",
            format!("{:?} is not a valid NSQ topic name", config.topic),
        ));
    }
    for (key, name) in std::iter::once(("channel", &config.channel))
        .chain(config.channels.iter().map(|name| ("channels", name)))
    {
        if !super::protocol::is_valid_channel_name(name) {
            return Err(scenario.config_error(key, format!("{name:?} is not a valid NSQ channel name")));
        }
    }
    if config.node_ids.len() > config.nsqds as usize {
        return Err(scenario.config_error(
            "node_ids",
            format!("{} ids for {} nsqds", config.node_ids.len(), config.nsqds),
        ));
    }
    if let Some(id) = config.node_ids.iter().find(|&&id| id >= NODE_IDS) {
        return Err(scenario.config_error("node_ids", format!("{id} is not within 0..={}", NODE_IDS - 1)));
    }
    for name in &config.consumer_nsqds {
        let known = name
            .strip_prefix("nsqd")
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=config.nsqds).contains(&n));
        if !known {
            return Err(scenario.config_error(
                "consumer_nsqds",
                format!("{name:?} is not one of nsqd1..nsqd{}", config.nsqds),
            ));
        }
    }
    Ok(())
}

impl Nsq {
    fn lookupds(&self) -> Vec<String> {
        (1..=self.config.lookupds)
            .map(|i| format!("lookupd{i}"))
            .collect()
    }
    fn nsqds(&self) -> Vec<String> {
        (1..=self.config.nsqds).map(|i| format!("nsqd{i}")).collect()
    }
    fn producers(&self) -> Vec<String> {
        (1..=self.workload.producers)
            .map(|i| format!("producer{i}"))
            .collect()
    }
    fn consumers(&self) -> Vec<String> {
        (1..=self.config.consumers)
            .map(|i| format!("consumer{i}"))
            .collect()
    }

    /// The channels consumers subscribe to, in order.
    fn channel_names(&self) -> Vec<String> {
        if self.config.channels.is_empty() {
            vec![self.config.channel.clone()]
        } else {
            self.config.channels.clone()
        }
    }

    fn client_config(&self) -> ClientConfig {
        client_config(&self.config, &self.workload, self.lookupds(), self.db.clone())
    }
}

/// The clients' settings from the design's `[config]` and workload (also the outbox
/// design's consumers and relays, which use NSQ as this design wires it).
pub(crate) fn client_config(
    c: &Config,
    workload: &Workload,
    lookupds: Vec<String>,
    db: Option<DbSink>,
) -> ClientConfig {
    ClientConfig {
        topic: c.topic.clone(),
        channel: c.channel.clone(),
        heartbeat_interval_ms: c.heartbeat_interval_ms,
        msg_timeout_ms: c.msg_timeout_ms,
        read_timeout: Duration::from_millis(c.read_timeout_ms),
        connect_timeout: Duration::from_millis(c.connect_timeout_ms),
        publish_timeout: Duration::from_millis(c.publish_timeout_ms),
        publish_interval: Duration::from_millis(workload.publish_interval_ms),
        publish_start: Duration::from_millis(workload.start_ms),
        direct_nsqds: c.consumer_nsqds.clone(),
        retry: c.retry,
        retries_max: c.retries_max,
        max_in_flight: c.max_in_flight,
        max_attempts: c.max_attempts,
        handlers: c.handlers,
        processing: Duration::from_millis(c.processing_ms),
        handler_failure_rate: c.handler_failure_rate,
        fail_messages: Rc::new(
            c.fail_messages
                .iter()
                .map(|f| (MsgId(f.id), f.attempts.iter().copied().collect()))
                .collect(),
        ),
        start: Duration::ZERO,
        dedupe_message_ids: c.dedupe_message_ids,
        defer: Duration::from_millis(c.defer_ms),
        defer_fraction: c.defer_fraction,
        mpub_batch: c.mpub_batch,
        requeue_delay: Duration::from_millis(c.requeue_delay_ms),
        max_requeue_delay: Duration::from_millis(c.max_requeue_delay_ms),
        reconnect: Duration::from_millis(c.reconnect_ms),
        lookupds,
        lookupd_poll_interval: Duration::from_millis(c.lookupd_poll_interval_ms),
        db,
        backoff: c.backoff.then(|| {
            (
                Duration::from_millis(c.backoff_multiplier_ms),
                Duration::from_millis(c.max_backoff_ms),
            )
        }),
    }
}

impl Nsq {
    fn install_servers(&self, sim: &mut turmoil::Sim<'_>, env: &Env) {
        let lookupds = self.lookupds();
        for host in &lookupds {
            let (env, name, options) = (env.clone(), host.clone(), self.config.lookupd.clone());
            env.process(host).install(sim, move || {
                super::sim_lookupd::run(env.clone(), name.clone(), options.clone())
            });
        }
        for (index, host) in self.nsqds().into_iter().enumerate() {
            let node_id = match self.config.node_ids.get(index) {
                Some(&id) => id,
                None => node_id_for(&host),
            };
            let (env, name, options, registry, lookupds) = (
                env.clone(),
                host.clone(),
                self.config.nsqd.clone(),
                self.registry.clone(),
                lookupds.clone(),
            );
            env.process(&host).install(sim, move || {
                sim_nsqd::run(
                    env.clone(),
                    name.clone(),
                    node_id,
                    options.clone(),
                    lookupds.clone(),
                    registry.clone(),
                )
            });
        }
    }

    /// Producer i publishes to nsqd ((i-1) mod n)+1, its own nsqd.
    fn install_producers(&self, sim: &mut turmoil::Sim<'_>, env: &Env) {
        let (nsqds, client) = (self.nsqds(), self.client_config());
        for (index, host) in self.producers().into_iter().enumerate() {
            let (env, nsqds, client, source, name) = (
                env.clone(),
                nsqds.clone(),
                client.clone(),
                self.source.clone(),
                host.clone(),
            );
            let home = index % nsqds.len();
            env.process(&host).install(sim, move || {
                run_producer(
                    env.clone(),
                    name.clone(),
                    nsqds.clone(),
                    home,
                    client.clone(),
                    source.clone(),
                )
            });
        }
    }

    /// Consumer i reads channel ((i-1) mod n); with several channels the history says which
    /// consumer reads which, so each channel is judged on its own.
    fn install_consumers(&self, sim: &mut turmoil::Sim<'_>, env: &Env) {
        let (nsqds, client, channels) = (self.nsqds(), self.client_config(), self.channel_names());
        if channels.len() > 1 {
            let members = self
                .consumers()
                .into_iter()
                .enumerate()
                .map(|(i, host)| (host, channels[i % channels.len()].clone()))
                .collect();
            env.record(
                sim::world::HARNESS_HOST,
                sim::history::EventKind::Groups { members },
            );
        }
        for (index, host) in self.consumers().into_iter().enumerate() {
            let mut client = client.clone();
            client.channel = channels[index % channels.len()].clone();
            let start_ms = self.config.consumer_start_ms.get(index).copied().unwrap_or(0);
            client.start = Duration::from_millis(start_ms);
            let (env, nsqds, name) = (env.clone(), nsqds.clone(), host.clone());
            env.process(&host).install(sim, move || {
                run_consumer(env.clone(), name.clone(), nsqds.clone(), client.clone())
            });
        }
    }
}

impl Design for Nsq {
    /// Hosts and their roles: `lookupd`, `nsqd` (also `broker`, the role every design's
    /// message servers share), `producer`, `consumer`, and `db` with the database sink.
    fn topology(&self) -> Topology {
        let db: Vec<String> = self.db.iter().map(|db| db.host().to_string()).collect();
        let hosts = self
            .lookupds()
            .into_iter()
            .chain(self.nsqds())
            .chain(self.producers())
            .chain(self.consumers())
            .chain(db.iter().cloned())
            .collect();
        Topology::new(hosts)
            .with_role("lookupd", self.lookupds())
            .with_role("nsqd", self.nsqds())
            .with_role("broker", self.nsqds())
            .with_role("producer", self.producers())
            .with_role("consumer", self.consumers())
            .with_role("db", db)
    }

    /// With `placement = "beside"`, each nsqd's machine also runs the producers that
    /// publish to it (producer i's home nsqd, as `install_producers` picks it).
    fn placement(&self) -> Vec<Vec<String>> {
        if self.config.placement == Placement::Apart {
            return Vec::new();
        }
        let nsqds = self.nsqds();
        let mut machines: Vec<Vec<String>> = nsqds.iter().map(|n| vec![n.clone()]).collect();
        for (index, producer) in self.producers().into_iter().enumerate() {
            machines[index % nsqds.len()].push(producer);
        }
        machines.retain(|m| m.len() > 1);
        machines
    }

    /// Hosts in a fixed order (the order turmoil steps them in): lookupds, nsqds, the
    /// database, producers, consumers.
    fn install<'a>(&'a self, sim: &mut turmoil::Sim<'a>, env: &Env) {
        self.install_servers(sim, env);
        if let Some(db) = &self.db {
            db.install(sim, env);
        }
        self.install_producers(sim, env);
        self.install_consumers(sim, env);
    }

    /// The variant's promise, from the reference's designs table: NSQ's at-least-once
    /// "assuming nsqd does not fail" (rows 1-4) and, with the database sink, the strategy's
    /// (rows 11, 12 and 24 as they apply on NSQ).
    fn promise(&self) -> Promise {
        // nsqd failures lose what it held in memory (and unsynced disk); go-nsq drops a
        // message after max_attempts; ephemeral channels drop overflow. All documented.
        let nsq_windows = vec![
            Excuse::fault("kill", "nsqd"),
            Excuse::fault("power_fail", "nsqd"),
            Excuse::note("consumer.gave_up"),
            Excuse::note("nsqd.ephemeral_overflow_dropped"),
            Excuse::note("nsqd.ephemeral_channel_overflow_dropped"),
            Excuse::note("nsqd.ephemeral_channel_deleted"),
            // An operator's `/topic/empty`, `/channel/empty` or delete drops messages on
            // purpose (nsqd's HTTP API).
            Excuse::note("nsqd.topic_emptied"),
            Excuse::note("nsqd.channel_emptied"),
            Excuse::note("nsqd.topic_deleted"),
            Excuse::note("nsqd.channel_deleted"),
            // A channel created after its topic pumped a message never gets that message:
            // pre-creation from lookupd closes the window, unless no lookupd could be asked.
            Excuse::note("nsqd.precreate_no_lookupd"),
            Excuse::note("nsqd.precreate_failed"),
        ];
        let Some(db) = &self.db else {
            return Promise {
                text: "at-least-once assuming nsqd does not fail; no ordering (reference table rows 1-4)"
                    .into(),
                properties: vec![Property::AtLeastOnce],
                excuses: nsq_windows,
            };
        };
        db.promise(DeliveryWindows {
            losses: nsq_windows,
            // A FIN that never reaches nsqd, or a replay after an nsqd crash, redelivers.
            redeliveries: vec!["partition", "lose_replies", "pause", "kill", "power_fail"],
            broker: "NSQ",
            ack: "FIN",
        })
    }

    fn pending(&self, env: &Env) -> Option<String> {
        let unpublished = self.source.unpublished();
        if unpublished > 0 {
            return Some(format!("{unpublished} message(s) not yet published"));
        }
        if let Some(p) = self.producers().into_iter().find(|p| env.process(p).is_running()) {
            return Some(format!("{p} is still publishing"));
        }
        let mut waiting = Vec::new();
        for (host, core) in self.registry.borrow().iter() {
            let Some(core) = core.upgrade() else { continue }; // down: its memory is gone
            waiting.extend(
                core.borrow()
                    .held()
                    .into_iter()
                    .map(|line| format!("{host} {line}")),
            );
        }
        (!waiting.is_empty()).then(|| waiting.join("; "))
    }
}
