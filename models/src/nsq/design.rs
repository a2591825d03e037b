//! The `nsq` design: nsqd hosts, producers publishing to their own nsqd, consumers connected
//! to every nsqd (reference §1; designs table rows 1 to 4).

use super::clients::{run_consumer, run_producer, ClientConfig, Retry, Source};
use super::lookupd::LookupdOptions;
use super::nsqd::NsqdOptions;
use super::sim_nsqd::{self, Registry};
use crate::db::client::{DbConfig, DbRetry, Strategy};
use serde::{Deserialize, Serialize};
use sim::fault::Topology;
use sim::promise::{Excuse, Promise};
use sim::scenario::{Scenario, ScenarioError, Workload};
use sim::verdict::Property;
use sim::{Design, Env};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

pub const NSQDS_MAX: u32 = 16;
pub const DB_HOST: &str = "db";
pub const CLIENTS_MAX: u32 = 32;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// nsqlookupd hosts (lookupd1..). With 0, consumers connect to every nsqd directly.
    pub lookupds: u32,
    pub nsqds: u32,
    pub consumers: u32,
    pub topic: String,
    pub channel: String,
    /// Several channels on the topic (each gets a copy of every message); consumer i
    /// subscribes to channel ((i-1) mod n). Empty: every consumer on `channel`.
    pub channels: Vec<String>,
    /// nsqds consumers connect to directly (go-nsq ConnectToNSQDs) as well as through lookupd.
    pub consumer_nsqds: Vec<String>,
    /// nsqd's own options (`[config.nsqd]`), nsqd's defaults.
    pub nsqd: NsqdOptions,
    pub max_in_flight: i64,
    pub max_attempts: u16,
    /// The consumer's IDENTIFY msg_timeout; 0 takes nsqd's.
    pub msg_timeout_ms: u64,
    pub heartbeat_interval_ms: i64,
    pub read_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub publish_timeout_ms: u64,
    pub retry: Retry,
    pub retries_max: u32,
    pub handlers: u32,
    pub processing_ms: u64,
    pub handler_failure_rate: f64,
    pub requeue_delay_ms: u64,
    pub max_requeue_delay_ms: u64,
    pub reconnect_ms: u64,
    /// go-nsq's lookupd_poll_interval (with an initial jitter of up to 30 %).
    pub lookupd_poll_interval_ms: u64,
    /// nsqlookupd's own options (`[config.lookupd]`).
    pub lookupd: LookupdOptions,
    /// Where handlers apply their effect: in memory, or a database host (`db`).
    pub sink: Sink,
    /// With the database sink: the consumer's processing strategy and retry policy.
    pub strategy: Strategy,
    pub db_retry: DbRetry,
    pub db_retries_max: u32,
    pub db_backoff_ms: u64,
    pub db_timeout_ms: u64,
    pub accounts: u32,
    /// With the inbox strategy: insert the inbox row after the transfer, not before it.
    pub inbox_last: bool,
    /// Every `batch_every`-th message is a batch writing `batch_rows` audit rows first (0: none).
    pub batch_every: u32,
    pub batch_rows: u32,
    pub statement_gap_ms: u64,
    pub ack_delay_ms: u64,
    /// innodb_flush_log_at_trx_commit = 1 (else the redo log is fsynced once a second).
    pub db_flush_at_commit: bool,
    pub lock_wait_timeout_ms: u64,
    pub rollback_on_timeout: bool,
    /// The chance that a row-locking statement inside a transaction fails with an injected
    /// 1213 (for swarm runs; real deadlocks happen regardless).
    pub injected_deadlock_rate: f64,
    /// MySQL wait_timeout: a silent connection is closed and its transaction rolled back.
    pub db_wait_timeout_ms: u64,
    /// go-nsq's backoff after handler errors (on by default, as in go-nsq).
    pub backoff: bool,
    pub backoff_multiplier_ms: u64,
    pub max_backoff_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sink {
    Memory,
    Db,
}

impl Default for Config {
    /// go-nsq's defaults where it has them.
    fn default() -> Config {
        Config {
            lookupds: 0,
            lookupd_poll_interval_ms: 60_000,
            lookupd: LookupdOptions::default(),
            sink: Sink::Memory,
            strategy: Strategy::AckAfter,
            db_retry: DbRetry::None,
            db_retries_max: 3,
            db_backoff_ms: 100,
            db_timeout_ms: 5_000,
            accounts: 4,
            inbox_last: false,
            batch_every: 0,
            batch_rows: 20,
            statement_gap_ms: 2,
            ack_delay_ms: 0,
            db_flush_at_commit: true,
            lock_wait_timeout_ms: 50_000,
            rollback_on_timeout: false,
            injected_deadlock_rate: 0.0,
            db_wait_timeout_ms: crate::db::sim_db::WAIT_TIMEOUT_DEFAULT.as_millis() as u64,
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
            max_in_flight: 1,
            max_attempts: 5,
            msg_timeout_ms: 0,
            heartbeat_interval_ms: 30_000,
            read_timeout_ms: 60_000,
            connect_timeout_ms: 1_000,
            publish_timeout_ms: 60_000,
            retry: Retry::None,
            retries_max: 3,
            handlers: 1,
            processing_ms: 5,
            handler_failure_rate: 0.0,
            requeue_delay_ms: 90_000,
            max_requeue_delay_ms: 15 * 60_000,
            reconnect_ms: 60_000,
        }
    }
}

pub fn config_keys() -> Vec<crate::ConfigKey> {
    let d = Config::default();
    let n = NsqdOptions::default();
    use crate::ConfigKey as K;
    vec![
        K::new(
            "nsqds",
            d.nsqds,
            "nsqd hosts (nsqd1..); producer i publishes to nsqd ((i-1) mod n)+1",
        ),
        K::new(
            "consumers",
            d.consumers,
            "consumer hosts, each connected to every nsqd",
        ),
        K::new("topic", "\"orders\"", "topic name (#ephemeral suffix allowed)"),
        K::new(
            "channel",
            "\"billing\"",
            "channel name (#ephemeral suffix allowed)",
        ),
        K::new(
            "consumer_nsqds",
            "[]",
            "nsqds consumers connect to directly, besides lookupd's (go-nsq ConnectToNSQDs)",
        ),
        K::new(
            "channels",
            "[]",
            "several channels, e.g. [\"billing\", \"audit\"]: consumer i takes channel ((i-1) mod n), each channel is judged on its own",
        ),
        K::new(
            "max_in_flight",
            d.max_in_flight,
            "go-nsq max_in_flight, spread over connections as RDY",
        ),
        K::new(
            "max_attempts",
            d.max_attempts,
            "go-nsq: past this, FIN without running the handler",
        ),
        K::new(
            "msg_timeout_ms",
            d.msg_timeout_ms,
            "consumer IDENTIFY msg_timeout; 0 = nsqd's",
        ),
        K::new(
            "heartbeat_interval_ms",
            d.heartbeat_interval_ms,
            "consumer IDENTIFY heartbeat interval",
        ),
        K::new("read_timeout_ms", d.read_timeout_ms, "go-nsq ReadTimeout"),
        K::new(
            "publish_timeout_ms",
            d.publish_timeout_ms,
            "how long a producer waits for a PUB's answer",
        ),
        K::new(
            "retry",
            "\"none\"",
            "producer retry after no answer: none, same, another",
        ),
        K::new("retries_max", d.retries_max, "producer retries per message"),
        K::new("handlers", d.handlers, "concurrent handlers per consumer"),
        K::new("processing_ms", d.processing_ms, "handler time per message"),
        K::new(
            "handler_failure_rate",
            d.handler_failure_rate,
            "chance a handler fails (REQ with linear delay)",
        ),
        K::new(
            "requeue_delay_ms",
            d.requeue_delay_ms,
            "go-nsq DefaultRequeueDelay (× attempts)",
        ),
        K::new(
            "max_requeue_delay_ms",
            d.max_requeue_delay_ms,
            "go-nsq MaxRequeueDelay",
        ),
        K::new(
            "reconnect_ms",
            d.reconnect_ms,
            "reconnect interval to a lost nsqd (go-nsq: LookupdPollInterval)",
        ),
        K::new(
            "sink",
            "\"memory\"",
            "where handlers apply effects: memory, or db (a database host)",
        ),
        K::new(
            "strategy",
            "\"ack_after\"",
            "with db: ack_before, ack_after, inbox, conditional, position",
        ),
        K::new(
            "db_retry",
            "\"none\"",
            "with db: none, whole_transaction (on 1213/1205/no answer); careless: commit_after_timeout, continue_after_deadlock",
        ),
        K::new(
            "db_retries_max",
            d.db_retries_max,
            "with db: retries of the whole transaction",
        ),
        K::new(
            "db_backoff_ms",
            d.db_backoff_ms,
            "with db: backoff × try between retries",
        ),
        K::new(
            "accounts",
            d.accounts,
            "with db: accounts transfers move money between",
        ),
        K::new(
            "inbox_last",
            d.inbox_last,
            "with db and inbox: insert the inbox row after the transfer",
        ),
        K::new(
            "batch_every",
            d.batch_every,
            "with db: every n-th message is a heavier batch transaction (0: none)",
        ),
        K::new(
            "batch_rows",
            d.batch_rows,
            "with db: audit rows a batch writes before its transfer",
        ),
        K::new(
            "statement_gap_ms",
            d.statement_gap_ms,
            "with db: think time between statements",
        ),
        K::new("ack_delay_ms", d.ack_delay_ms, "work between processing and FIN"),
        K::new(
            "db_flush_at_commit",
            d.db_flush_at_commit,
            "innodb_flush_log_at_trx_commit = 1",
        ),
        K::new(
            "lock_wait_timeout_ms",
            d.lock_wait_timeout_ms,
            "innodb_lock_wait_timeout",
        ),
        K::new(
            "injected_deadlock_rate",
            d.injected_deadlock_rate,
            "with db: chance a row-locking statement in a transaction fails with an injected 1213",
        ),
        K::new(
            "db_wait_timeout_ms",
            d.db_wait_timeout_ms,
            "MySQL wait_timeout: a silent connection is closed, its transaction rolled back",
        ),
        K::new("backoff", d.backoff, "go-nsq backoff: RDY 0 for multiplier x 2^n after handler errors"),
        K::new("backoff_multiplier_ms", d.backoff_multiplier_ms, "go-nsq BackoffMultiplier"),
        K::new("max_backoff_ms", d.max_backoff_ms, "go-nsq MaxBackoffDuration"),
        K::new("nsqd.mem_queue_size", n.mem_queue_size, "nsqd --mem-queue-size"),
        K::new("nsqd.msg_timeout_ms", n.msg_timeout_ms, "nsqd --msg-timeout"),
        K::new("nsqd.sync_every", n.sync_every, "nsqd --sync-every"),
        K::new("nsqd.sync_timeout_ms", n.sync_timeout_ms, "nsqd --sync-timeout"),
        K::new(
            "nsqd.client_timeout_ms",
            n.client_timeout_ms,
            "nsqd --client-timeout (heartbeats at half)",
        ),
        K::new(
            "nsqd.queue_scan_interval_ms",
            n.queue_scan_interval_ms,
            "nsqd --queue-scan-interval",
        ),
        K::new(
            "nsqd.output_buffer_timeout_ms",
            n.output_buffer_timeout_ms,
            "nsqd default output buffer timeout",
        ),
        K::new(
            "nsqd.max_req_timeout_ms",
            n.max_req_timeout_ms,
            "nsqd --max-req-timeout",
        ),
    ]
}

pub struct Nsq {
    config: Config,
    workload: Workload,
    source: Rc<Source>,
    registry: Registry,
}

pub fn build(scenario: &Scenario) -> Result<Box<dyn Design>, ScenarioError> {
    let config: Config = scenario.design_config()?;
    if config.lookupds > NSQDS_MAX {
        return Err(scenario.config_error("lookupds", format!("at most {NSQDS_MAX}")));
    }
    if config.nsqds == 0 || config.nsqds > NSQDS_MAX {
        return Err(scenario.config_error("nsqds", format!("must be 1..={NSQDS_MAX}")));
    }
    if config.consumers == 0 || config.consumers > CLIENTS_MAX {
        return Err(scenario.config_error("consumers", format!("must be 1..={CLIENTS_MAX}")));
    }
    if scenario.workload.producers > CLIENTS_MAX {
        return Err(ScenarioError {
            path: scenario.path.clone(),
            line: None,
            message: format!("workload.producers: at most {CLIENTS_MAX} for nsq"),
        });
    }
    if !super::protocol::is_valid_topic_name(&config.topic) {
        return Err(scenario.config_error(
            "topic",
            format!("{:?} is not a valid NSQ topic name", config.topic),
        ));
    }
    if !super::protocol::is_valid_channel_name(&config.channel) {
        return Err(scenario.config_error(
            "channel",
            format!("{:?} is not a valid NSQ channel name", config.channel),
        ));
    }
    for name in &config.channels {
        if !super::protocol::is_valid_channel_name(name) {
            return Err(
                scenario.config_error("channels", format!("{name:?} is not a valid NSQ channel name"))
            );
        }
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
    if config.channels.len() > 1 && config.sink == Sink::Db {
        return Err(scenario.config_error(
            "channels",
            "several channels need sink = \"memory\" (the database judges one effect per message)".into(),
        ));
    }
    if !(0.0..=1.0).contains(&config.handler_failure_rate) {
        return Err(scenario.config_error("handler_failure_rate", "must be within 0..=1".into()));
    }
    if config.max_in_flight < 1 || config.max_in_flight > config.nsqd.max_rdy_count {
        return Err(scenario.config_error(
            "max_in_flight",
            format!("must be 1..={}", config.nsqd.max_rdy_count),
        ));
    }
    Ok(Box::new(Nsq {
        source: Rc::new(Source::new(&scenario.workload)),
        workload: scenario.workload.clone(),
        registry: Rc::new(RefCell::new(BTreeMap::new())),
        config,
    }))
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
        let c = &self.config;
        ClientConfig {
            topic: c.topic.clone(),
            channel: c.channel.clone(),
            heartbeat_interval_ms: c.heartbeat_interval_ms,
            msg_timeout_ms: c.msg_timeout_ms,
            read_timeout: Duration::from_millis(c.read_timeout_ms),
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
            publish_timeout: Duration::from_millis(c.publish_timeout_ms),
            publish_interval: Duration::from_millis(self.workload.publish_interval_ms),
            publish_start: Duration::from_millis(self.workload.start_ms),
            direct_nsqds: c.consumer_nsqds.clone(),
            retry: c.retry,
            retries_max: c.retries_max,
            max_in_flight: c.max_in_flight,
            max_attempts: c.max_attempts,
            handlers: c.handlers,
            processing: Duration::from_millis(c.processing_ms),
            handler_failure_rate: c.handler_failure_rate,
            requeue_delay: Duration::from_millis(c.requeue_delay_ms),
            max_requeue_delay: Duration::from_millis(c.max_requeue_delay_ms),
            reconnect: Duration::from_millis(c.reconnect_ms),
            lookupds: self.lookupds(),
            lookupd_poll_interval: Duration::from_millis(c.lookupd_poll_interval_ms),
            db: (c.sink == Sink::Db).then(|| DbConfig {
                host: DB_HOST.to_string(),
                strategy: c.strategy,
                retry: c.db_retry,
                retries_max: c.db_retries_max,
                backoff: Duration::from_millis(c.db_backoff_ms),
                accounts: c.accounts,
                inbox_last: c.inbox_last,
                batch_every: c.batch_every,
                batch_rows: c.batch_rows,
                statement_gap: Duration::from_millis(c.statement_gap_ms),
                timeout: Duration::from_millis(c.db_timeout_ms),
            }),
            ack_delay: Duration::from_millis(c.ack_delay_ms),
            backoff: c.backoff.then(|| {
                (
                    Duration::from_millis(c.backoff_multiplier_ms),
                    Duration::from_millis(c.max_backoff_ms),
                )
            }),
        }
    }
}

impl Design for Nsq {
    fn topology(&self) -> Topology {
        Topology::new(
            self.lookupds()
                .into_iter()
                .chain(self.nsqds())
                .chain(self.producers())
                .chain(self.consumers())
                .chain((self.config.sink == Sink::Db).then(|| DB_HOST.to_string()))
                .collect(),
        )
    }

    fn install<'a>(&'a self, sim: &mut turmoil::Sim<'a>, env: &Env) {
        let nsqds = self.nsqds();
        let lookupds = self.lookupds();
        for host in &lookupds {
            let (env, name, options) = (env.clone(), host.clone(), self.config.lookupd.clone());
            sim.host(host.as_str(), move || {
                super::sim_lookupd::run(env.clone(), name.clone(), options.clone())
            });
        }
        for host in &nsqds {
            let (env, host_name, options, registry, lookupds) = (
                env.clone(),
                host.clone(),
                self.config.nsqd.clone(),
                self.registry.clone(),
                lookupds.clone(),
            );
            sim.host(host.as_str(), move || {
                sim_nsqd::run(
                    env.clone(),
                    host_name.clone(),
                    options.clone(),
                    lookupds.clone(),
                    registry.clone(),
                )
            });
        }
        if self.config.sink == Sink::Db {
            let env = env.clone();
            let options = crate::db::engine::EngineOptions {
                locks: crate::db::locks::LockOptions {
                    deadlock_detect: true,
                    lock_wait_timeout: Duration::from_millis(self.config.lock_wait_timeout_ms),
                    rollback_on_timeout: self.config.rollback_on_timeout,
                },
                flush_at_commit: self.config.db_flush_at_commit,
            };
            let setup = crate::db::sim_db::DbHost {
                engine: options,
                wait_timeout: Duration::from_millis(self.config.db_wait_timeout_ms),
                accounts: self.config.accounts,
                balance: 1_000,
                orders: self.workload.messages,
                injected_deadlock_rate: self.config.injected_deadlock_rate,
            };
            sim.host(DB_HOST, move || {
                crate::db::sim_db::run(env.clone(), DB_HOST.to_string(), setup.clone())
            });
        }
        let client = self.client_config();
        if let Some(db) = &client.db {
            // What a whole effect writes, for the partial-transaction checker.
            env.record(
                DB_HOST,
                sim::history::EventKind::EffectParts {
                    parts: crate::db::client::effect_parts(db),
                },
            );
        }
        for (index, host) in self.producers().into_iter().enumerate() {
            let (env, nsqds, client, source, name) = (
                env.clone(),
                nsqds.clone(),
                client.clone(),
                self.source.clone(),
                host.clone(),
            );
            let home = index % nsqds.len();
            sim.host(host.as_str(), move || {
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
        let channels = self.channel_names();
        if channels.len() > 1 {
            // Which consumer reads which channel: each channel is judged on its own.
            env.record(
                sim::world::HARNESS_HOST,
                sim::history::EventKind::Groups {
                    members: self
                        .consumers()
                        .into_iter()
                        .enumerate()
                        .map(|(i, host)| (host, channels[i % channels.len()].clone()))
                        .collect(),
                },
            );
        }
        for (index, host) in self.consumers().into_iter().enumerate() {
            let mut client = client.clone();
            client.channel = channels[index % channels.len()].clone();
            let (env, nsqds, name) = (env.clone(), nsqds.clone(), host.clone());
            sim.host(host.as_str(), move || {
                run_consumer(env.clone(), name.clone(), nsqds.clone(), client.clone())
            });
        }
    }

    /// The variant's promise, from the reference's designs table: NSQ's at-least-once
    /// "assuming nsqd does not fail" (rows 1-4) and, with the database sink, the strategy's
    /// (rows 11, 12 and 24 as they apply on NSQ).
    fn promise(&self) -> Promise {
        let c = &self.config;
        // nsqd failures lose what it held in memory (and unsynced disk); go-nsq drops a
        // message after max_attempts; ephemeral channels drop overflow. All documented.
        let nsq_windows = vec![
            Excuse::fault("kill", "nsqd"),
            Excuse::fault("power_fail", "nsqd"),
            Excuse::note("consumer.gave_up"),
            Excuse::note("nsqd.ephemeral_overflow_dropped"),
            Excuse::note("nsqd.ephemeral_channel_deleted"),
            // A channel created after its topic pumped a message never gets that message:
            // pre-creation from lookupd closes the window, unless no lookupd could be asked.
            Excuse::note("nsqd.precreate_no_lookupd"),
            Excuse::note("nsqd.precreate_failed"),
        ];
        if c.sink == Sink::Memory {
            return Promise {
                text: "at-least-once assuming nsqd does not fail; no ordering (reference table rows 1-4)"
                    .into(),
                properties: vec![Property::AtLeastOnce],
                excuses: nsq_windows,
            };
        }
        let careless = [
            Excuse::note("consumer.committed_partial_after_1205"),
            Excuse::note("consumer.continued_after_1213"),
        ];
        match c.strategy {
            Strategy::AckBefore => Promise {
                text: "at-most-once effects: FIN before the transaction (reference table row 11, on NSQ)"
                    .into(),
                properties: vec![Property::AtMostOnce],
                // A FIN that never reaches nsqd, or a replay after an nsqd crash, redelivers.
                excuses: ["partition", "lose_replies", "pause", "kill", "power_fail"]
                    .into_iter()
                    .map(|action| Excuse::fault(action, ""))
                    .collect(),
            },
            Strategy::AckAfter => Promise {
                text: "at-least-once effects: FIN after COMMIT (reference table rows 1 and 12)".into(),
                properties: vec![Property::AtLeastOnce],
                excuses: nsq_windows.into_iter().chain(careless).collect(),
            },
            Strategy::Inbox | Strategy::Conditional | Strategy::Position => Promise {
                text: format!(
                    "effectively-once effects: FIN after COMMIT, guarded by {} (reference table row 24)",
                    match c.strategy {
                        Strategy::Inbox => "an inbox unique key",
                        Strategy::Conditional => "a conditional state update",
                        _ => "a stored position",
                    }
                ),
                properties: vec![Property::ExactlyOnce],
                excuses: nsq_windows.into_iter().chain(careless).collect(),
            },
        }
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
