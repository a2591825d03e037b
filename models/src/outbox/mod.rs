//! The `outbox` design: the transactional outbox, the producer side of the database story
//! (reference §5.1; designs table row 25; issue 15).
//!
//! Writers (the service) put each message's business row (`orders`) and its outbox row
//! (`outbox`, an `AUTO_INCREMENT` id) in one transaction on the database host; a committed
//! transaction is an acknowledged publish. Relays poll the outbox, publish each row to the
//! broker ([`Broker`]: an nsqd, a Kafka cluster or an MQTT broker), wait for its
//! acknowledgement, and then mark it sent; the broker's consumers record the deliveries the
//! checkers judge.
//!
//! - [`writer`]: the service's transaction per message.
//! - [`relay`]: the polling relay and its three ways to claim rows ([`Claim`]).
//! - [`publisher`]: the relay's publish to each broker, with [`kafka_publish`] and
//!   [`mqtt_publish`].
//! - [`broker`]: the `broker` key and the Kafka and MQTT sides as components.
//!
//! The database, nsqd and its consumers are the `db` and `nsq` components as the `nsq` design
//! wires them; Kafka's and MQTT's are the `kafka` and `mqtt` designs without producers.

pub mod broker;
pub mod kafka_publish;
pub mod mqtt_publish;
pub mod publisher;
pub mod relay;
pub mod writer;

use crate::db::engine::{EngineOptions, Record, Value};
use crate::db::locks::LockOptions;
use crate::db::sim_db::{self, DbHost, EngineSlot, WAIT_TIMEOUT_DEFAULT};
use crate::nsq::consumer::run_consumer;
use crate::nsq::guid::node_id_for;
use crate::nsq::sim_nsqd::{self, Registry};
use crate::source::Source;
use broker::{Broker, Component};
use publisher::Target;
use relay::{run_relay, RelayConfig};
use schemars::JsonSchema;
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
use writer::{run_writer, WriterConfig};

/// The bound on relays and on consumers.
pub const RELAYS_MAX: u32 = 8;
pub const CONSUMERS_MAX: u32 = 8;
/// The bound on writers (the workload's producers).
pub const WRITERS_MAX: u32 = 32;
/// The database host's name.
pub const DB_HOST: &str = "db";
/// The nsqd every relay publishes to and every consumer reads.
pub const NSQD_HOST: &str = "nsqd1";

/// How a relay finds the rows it has to publish, and marks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Claim {
    /// `SELECT ... WHERE id > last_seen ORDER BY id`, then store the highest id published
    /// as the relay's cursor (`outbox_cursor`). Ids are taken at INSERT and become visible
    /// at COMMIT, so a lower id that commits after a higher one was read is never
    /// published: the outbox's ordering trap.
    Cursor,
    /// `SELECT ... WHERE sent = 0 ORDER BY id` with no lock, then `UPDATE ... SET sent = 1`:
    /// no row is skipped, but two relays read and publish the same rows.
    SentFlag,
    /// In one transaction, `SELECT ... WHERE sent = 0 ORDER BY id LIMIT n FOR UPDATE SKIP
    /// LOCKED`, publish, `UPDATE ... SET sent = 1`, COMMIT: each relay takes rows no other
    /// relay holds, and an uncommitted row is left for a later poll.
    SkipLocked,
    /// In one transaction, `SELECT ... WHERE sent = 0 ORDER BY id LIMIT n FOR UPDATE`
    /// without SKIP LOCKED, publish, `UPDATE ... SET sent = 1`, COMMIT: a relay waits on the
    /// rows another holds (and on an uncommitted insert) until that transaction ends, then
    /// reads their latest version, so relays take turns instead of sharing. A wait past the
    /// lock-wait timeout fails with 1205: the relay rolls back and polls again.
    ForUpdate,
}

/// The `outbox` design's `[config]`. Writers are the workload's producers (`writer1..`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// What relays publish to and consumers read: "nsq" (one nsqd), "kafka" (three brokers,
    /// acks=all) or "mqtt" (one broker, QoS 1).
    pub broker: Broker,
    /// How relays find and mark the rows to publish.
    pub claim: Claim,
    /// Relay hosts (relay1..), each polling the whole outbox.
    #[schemars(range(min = 1, max = 8))]
    pub relays: u32,
    /// Consumer hosts (consumer1..) on the topic's channel; with Kafka, one partition each
    /// (`assign()`); with MQTT, subscribers (subscriber1..) with sessions of their own.
    #[schemars(range(min = 1, max = 8))]
    pub consumers: u32,
    /// Time between a relay's polls of the outbox.
    #[schemars(range(min = 1, max = 60_000))]
    pub poll_interval_ms: u64,
    /// Rows one poll reads at most (`LIMIT`).
    #[schemars(range(min = 1, max = 1_000))]
    pub batch: u32,
    /// The longest think time a writer takes between two statements of its transaction,
    /// each drawn uniformly up to it from the run's seed: part of it is the time its outbox
    /// id is taken but not yet committed.
    #[schemars(range(max = 60_000))]
    pub statement_gap_ms: u64,
    /// How long a relay takes between publishing a batch and marking it (its
    /// bookkeeping; the window a relay crash duplicates in).
    #[schemars(range(max = 60_000))]
    pub mark_delay_ms: u64,
    /// How long a writer or relay waits for the database's answer before it drops the
    /// connection.
    #[schemars(range(min = 1))]
    pub db_timeout_ms: u64,
    /// The database's `wait_timeout`: a connection silent this long is closed and its open
    /// transaction rolled back. Until then a client that vanished without closing its
    /// connection keeps its claim's row locks, and SKIP LOCKED passes over those rows.
    #[schemars(range(min = 1))]
    pub db_wait_timeout_ms: u64,
    /// How long a relay waits for the broker's acknowledgement of a publish (nsqd's `OK`,
    /// Kafka's produce answer, MQTT's PUBACK).
    #[schemars(range(min = 1))]
    pub publish_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            broker: Broker::Nsq,
            claim: Claim::SkipLocked,
            relays: 1,
            consumers: 1,
            poll_interval_ms: 50,
            batch: 10,
            statement_gap_ms: 5,
            mark_delay_ms: 0,
            db_timeout_ms: 1_000,
            db_wait_timeout_ms: WAIT_TIMEOUT_DEFAULT.as_millis() as u64,
            publish_timeout_ms: 1_000,
        }
    }
}

pub struct Outbox {
    config: Config,
    workload: Workload,
    source: Rc<Source>,
    registry: Registry,
    /// The database's live engine, read by `pending` only.
    engine: EngineSlot,
    /// Kafka's or MQTT's side; `None` with NSQ.
    component: Option<Component>,
}

pub fn build(scenario: &Scenario) -> Result<Box<dyn Design>, ScenarioError> {
    let config: Config = scenario.design_config()?;
    assert!(config.relays <= RELAYS_MAX && config.consumers <= CONSUMERS_MAX);
    if scenario.workload.producers > WRITERS_MAX {
        return Err(ScenarioError {
            path: scenario.path.clone(),
            line: None,
            message: format!("workload.producers: at most {WRITERS_MAX} writers for outbox"),
        });
    }
    Ok(Box::new(Outbox {
        source: Rc::new(Source::new(&scenario.workload)),
        workload: scenario.workload.clone(),
        registry: Rc::new(RefCell::new(BTreeMap::new())),
        engine: Rc::new(RefCell::new(std::rc::Weak::new())),
        component: Component::new(config.broker, config.consumers),
        config,
    }))
}

fn names(prefix: &str, n: u32) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i}")).collect()
}

impl Outbox {
    fn writers(&self) -> Vec<String> {
        names("writer", self.workload.producers)
    }
    fn relays(&self) -> Vec<String> {
        names("relay", self.config.relays)
    }
    fn consumers(&self) -> Vec<String> {
        names("consumer", self.config.consumers)
    }

    /// The database, the component's hosts, writers and relays; the component's roles and
    /// the outbox's own.
    fn component_topology(&self, component: Topology) -> Topology {
        let hosts = std::iter::once(DB_HOST.to_string())
            .chain(component.hosts.iter().cloned())
            .chain(self.writers())
            .chain(self.relays())
            .collect();
        let mut topology = Topology::new(hosts)
            .with_role("db", vec![DB_HOST.to_string()])
            .with_role("writer", self.writers())
            .with_role("producer", self.writers())
            .with_role("relay", self.relays());
        for (role, hosts) in &component.roles {
            topology = topology.with_role(role, hosts);
        }
        for (role, meaning) in &component.dynamic_roles {
            topology = topology.with_dynamic_role(role, meaning);
        }
        topology
    }

    /// With NSQ: NSQ's own window (an nsqd crash loses what it held in memory) and a lost
    /// database are outside.
    fn nsq_promise(&self) -> Promise {
        let text = match self.config.claim {
            Claim::Cursor => {
                "at-least-once publishing of committed outbox rows, duplicates allowed; a cursor \
                 on the auto-increment id breaks it when ids commit out of order (reference §5.1)"
            }
            Claim::ForUpdate => {
                "at-least-once publishing of committed outbox rows, duplicates allowed (a relay \
                 crash between publish and mark); relays claiming FOR UPDATE wait for each \
                 other's claims (reference §5.1)"
            }
            Claim::SentFlag | Claim::SkipLocked => {
                "at-least-once publishing of committed outbox rows, duplicates allowed (a relay \
                 crash between publish and mark, or relays without SKIP LOCKED) (reference §5.1)"
            }
        };
        Promise {
            text: text.into(),
            properties: vec![Property::AtLeastOnce],
            excuses: vec![
                Excuse::fault("kill", "nsqd"),
                Excuse::fault("power_fail", "nsqd"),
                // The database is the outbox: losing its committed rows loses the messages.
                Excuse::fault("power_fail", "db"),
                Excuse::note("consumer.gave_up"),
            ],
        }
    }

    /// NSQ's clients as the `nsq` design sets them up by default, with one nsqd.
    fn nsq_config(&self) -> crate::nsq::design::Config {
        crate::nsq::design::Config {
            consumers: self.config.consumers,
            processing_ms: 0,
            publish_timeout_ms: self.config.publish_timeout_ms,
            ..crate::nsq::design::Config::default()
        }
    }

    fn install_servers<'a>(&'a self, sim: &mut turmoil::Sim<'a>, env: &Env) {
        let setup = DbHost {
            engine: EngineOptions {
                locks: LockOptions::default(),
                flush_at_commit: true,
            },
            wait_timeout: Duration::from_millis(self.config.db_wait_timeout_ms),
            accounts: 0,
            balance: 0,
            orders: 0,
            position_rows: 0,
            injected_deadlock_rate: 0.0,
            tables: Vec::new(),
            engine_slot: Some(self.engine.clone()),
        };
        let db_env = env.clone();
        env.process(DB_HOST).install(sim, move || {
            sim_db::run(db_env.clone(), DB_HOST.to_string(), setup.clone())
        });
        if let Some(component) = &self.component {
            // Its brokers and its consumers.
            component.design().install(sim, env);
            return;
        }
        let (nsqd_env, options, registry) = (env.clone(), self.nsq_config().nsqd, self.registry.clone());
        env.process(NSQD_HOST).install(sim, move || {
            sim_nsqd::run(
                nsqd_env.clone(),
                NSQD_HOST.to_string(),
                node_id_for(NSQD_HOST),
                options.clone(),
                Vec::new(),
                registry.clone(),
            )
        });
    }

    fn install_clients(&self, sim: &mut turmoil::Sim<'_>, env: &Env) {
        let client = crate::nsq::design::client_config(&self.nsq_config(), &self.workload, Vec::new(), None);
        let writer = WriterConfig {
            db_host: DB_HOST.into(),
            statement_gap: Duration::from_millis(self.config.statement_gap_ms),
            timeout: Duration::from_millis(self.config.db_timeout_ms),
            interval: Duration::from_millis(self.workload.publish_interval_ms),
            start: Duration::from_millis(self.workload.start_ms),
        };
        for host in self.writers() {
            let (env, writer, source, name) =
                (env.clone(), writer.clone(), self.source.clone(), host.clone());
            env.process(&host).install(sim, move || {
                run_writer(env.clone(), name.clone(), writer.clone(), source.clone())
            });
        }
        let publish_timeout = Duration::from_millis(self.config.publish_timeout_ms);
        let target = match &self.component {
            Some(component) => component.target(publish_timeout),
            None => Target::Nsq {
                nsqd: NSQD_HOST.into(),
                client: Box::new(client.clone()),
            },
        };
        let relay = RelayConfig {
            claim: self.config.claim,
            db_host: DB_HOST.into(),
            target,
            poll_interval: Duration::from_millis(self.config.poll_interval_ms),
            batch: self.config.batch,
            mark_delay: Duration::from_millis(self.config.mark_delay_ms),
            db_timeout: Duration::from_millis(self.config.db_timeout_ms),
        };
        for host in self.relays() {
            let (env, relay, name) = (env.clone(), relay.clone(), host.clone());
            env.process(&host)
                .install(sim, move || run_relay(env.clone(), name.clone(), relay.clone()));
        }
        if self.component.is_some() {
            return; // the component installed its consumers
        }
        for host in self.consumers() {
            let (env, client, name) = (env.clone(), client.clone(), host.clone());
            env.process(&host).install(sim, move || {
                run_consumer(
                    env.clone(),
                    name.clone(),
                    vec![NSQD_HOST.to_string()],
                    client.clone(),
                )
            });
        }
    }

    /// Outbox rows not yet published for good: with the cursor, rows above the lowest
    /// cursor; otherwise rows still `sent = 0`. Read from the database's committed tables.
    fn unsent(&self) -> Option<usize> {
        let engine = self.engine.borrow().upgrade()?;
        let engine = engine.borrow();
        let outbox = engine.committed("outbox");
        let unsent = match self.config.claim {
            Claim::Cursor => {
                let cursors = engine.committed("outbox_cursor");
                let lowest = self
                    .relays()
                    .iter()
                    .map(|relay| {
                        match cursors
                            .get(&Value::Text(relay.clone()))
                            .and_then(|r| r.get("last_seen"))
                        {
                            Some(Value::Int(seen)) => *seen,
                            _ => 0,
                        }
                    })
                    .min()
                    .unwrap_or(0);
                outbox.keys().filter(|id| **id > Value::Int(lowest)).count()
            }
            Claim::SentFlag | Claim::SkipLocked | Claim::ForUpdate => {
                outbox.values().filter(|row| is_unsent(row)).count()
            }
        };
        Some(unsent)
    }
}

fn is_unsent(row: &Record) -> bool {
    row.get("sent") == Some(&Value::Int(0))
}

impl Design for Outbox {
    /// Hosts and roles: `writer` (also `producer`), `relay`, `db`, and the broker's: with NSQ
    /// `nsqd` (also `broker`) and `consumer`; with Kafka or MQTT, that design's hosts and
    /// roles (MQTT's subscribers also play `consumer`).
    fn topology(&self) -> Topology {
        if let Some(component) = &self.component {
            return self.component_topology(component.topology());
        }
        let hosts = [DB_HOST.to_string(), NSQD_HOST.to_string()]
            .into_iter()
            .chain(self.writers())
            .chain(self.relays())
            .chain(self.consumers())
            .collect();
        Topology::new(hosts)
            .with_role("db", vec![DB_HOST.to_string()])
            .with_role("nsqd", vec![NSQD_HOST.to_string()])
            .with_role("broker", vec![NSQD_HOST.to_string()])
            .with_role("writer", self.writers())
            .with_role("producer", self.writers())
            .with_role("relay", self.relays())
            .with_role("consumer", self.consumers())
    }

    fn resolve_role(&self, role: &str, env: &Env) -> Option<String> {
        self.component.as_ref()?.design().resolve_role(role, env)
    }

    /// Hosts in a fixed order: the database, nsqd, writers, relays, consumers.
    fn install<'a>(&'a self, sim: &mut turmoil::Sim<'a>, env: &Env) {
        self.install_servers(sim, env);
        self.install_clients(sim, env);
    }

    /// The pattern promises at-least-once publishing of every committed row (reference
    /// §5.1), whatever the claim and the broker: duplicates are allowed (a relay crash
    /// between the broker's acknowledgement and the mark, or two relays reading the same
    /// unsent rows), so no at-most-once is promised. The cursor on the auto-increment id is
    /// the known trap that breaks the promise: no window excuses its skip. Loss is excused
    /// only where the broker itself loses (its own promise's windows: an nsqd crash loses
    /// what it held in memory; Kafka's correlated power failure; an MQTT broker's crash),
    /// and where the database loses committed rows.
    fn promise(&self) -> Promise {
        let Some(component) = &self.component else {
            return self.nsq_promise();
        };
        let claim = match self.config.claim {
            Claim::Cursor => "a cursor on the auto-increment id breaks it when ids commit out of order",
            Claim::ForUpdate => {
                "a relay crash between the acknowledgement and the mark duplicates; relays \
                 claiming FOR UPDATE wait for each other's claims"
            }
            Claim::SentFlag | Claim::SkipLocked => {
                "a relay crash between the acknowledgement and the mark, or relays without SKIP \
                 LOCKED, duplicate"
            }
        };
        let broker = component.promise();
        // The database is the outbox: losing its committed rows loses the messages.
        let mut excuses = vec![Excuse::fault("power_fail", "db")];
        excuses.extend(broker.excuses);
        Promise {
            text: format!(
                "at-least-once publishing of committed outbox rows to {}, duplicates allowed; \
                 {claim}; lost only where the broker loses: {} (reference §5.1)",
                component.acknowledgement(),
                broker.text
            ),
            properties: vec![Property::AtLeastOnce],
            excuses,
        }
    }

    fn pending(&self, env: &Env) -> Option<String> {
        let unpublished = self.source.unpublished();
        if unpublished > 0 {
            return Some(format!("{unpublished} message(s) not yet written"));
        }
        if let Some(w) = self.writers().into_iter().find(|w| env.process(w).is_running()) {
            return Some(format!("{w} is still writing"));
        }
        match self.unsent() {
            Some(n) if n > 0 => return Some(format!("{n} outbox row(s) not yet published")),
            None => return Some("the database is down".into()),
            Some(_) => {}
        }
        if let Some(component) = &self.component {
            return component.design().pending(env);
        }
        let mut waiting = Vec::new();
        for (host, core) in self.registry.borrow().iter() {
            let Some(core) = core.upgrade() else { continue };
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
