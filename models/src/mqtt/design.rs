//! The `mqtt` design: one broker like mosquitto 2.0, publishers and subscribers like
//! eclipse/paho.mqtt.golang, one topic (reference §3; designs table rows 13-16).
//!
//! Hosts: `broker`, `publisher1..` (one per workload producer), `subscriber1..`, and `db`
//! with the database sink. Roles: `broker`, `publisher`, `subscriber`, `db`. Every
//! subscriber has its own session and is owed every message, so each is judged on its own.

use super::client::ResendOrder;
use super::sim_broker::{self, Owed};
use super::sim_client::{run_publisher, run_subscriber, ClientSettings, Subscribed};
use super::BrokerConfig;
use crate::db::sink::{DbSection, DbSink, DeliveryWindows, Sink};
use crate::db::user::HandlerFactory;
use crate::source::Source;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sim::checker::OrderScope;
use sim::fault::Topology;
use sim::history::EventKind;
use sim::promise::{Excuse, Promise};
use sim::scenario::{Scenario, ScenarioError, Workload};
use sim::verdict::Property;
use sim::{Design, Env};
use std::rc::Rc;

pub const BROKER_HOST: &str = "broker";
/// The bound on publisher hosts, so a typo cannot build a runaway topology.
pub const PUBLISHERS_MAX: u32 = 32;

/// paho's resend order after a reconnect with CleanSession=0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResendSetting {
    /// The store's order: paho's memory store is a Go map, so the order is random
    /// (reference §3.5; against [MQTT-4.6.0-1]).
    Store,
    /// In the order first sent, one at a time (`SetMaxResumePubInFlight(1)`).
    Ordered,
}

/// The protocol version clients connect with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ProtocolSetting {
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5: PUBACK and PUBREC carry reason codes; one >= 0x80 ends the exchange.
    #[serde(rename = "5")]
    V5,
}

/// The `mqtt` design's `[config]`. The doc comments are what `jetsam list` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Subscriber hosts (subscriber1..), each with its own client id and session.
    #[schemars(range(min = 1, max = 16))]
    pub subscribers: u32,
    /// The topic publishers publish to and subscribers subscribe to.
    pub topic: String,
    /// The QoS publishers publish with.
    #[schemars(range(max = 2))]
    pub qos: u8,
    /// The QoS subscribers ask for (mosquitto grants what is asked); a message reaches a
    /// subscriber at the lower of the two [MQTT-3.8.4-6].
    #[schemars(range(max = 2))]
    pub subscribe_qos: u8,
    /// Publishers connect with CleanSession=1 (paho's default).
    pub publisher_clean_session: bool,
    /// Subscribers connect with CleanSession=1 (paho's default).
    pub subscriber_clean_session: bool,
    /// The order paho re-sends its stored messages in after a reconnect: `store` (its
    /// memory store, a Go map: random) or `ordered` (`OrderedMemoryStore` with
    /// `SetMaxResumePubInFlight(1)`).
    pub resend_order: ResendSetting,
    /// Clients do QoS 2 as the spec requires: a publisher re-sends the PUBREL, not the
    /// PUBLISH, once PUBREC came [MQTT-4.3.3-1], and a subscriber does not hand a re-sent
    /// PUBLISH to its handler again before PUBREL [MQTT-4.3.3-2]. paho.mqtt.golang does
    /// neither (issues #788, #768, #791), so with it QoS 2 is at least once.
    pub spec_qos2: bool,
    /// The protocol version the clients speak.
    pub protocol: ProtocolSetting,
    /// The clients' keepalive (paho `SetKeepAlive`, 30 s).
    #[schemars(range(min = 1, max = 65535))]
    pub keep_alive_s: u16,
    /// paho `SetPingTimeout`: an unanswered PINGREQ ends the connection after this long.
    #[schemars(range(min = 1))]
    pub ping_timeout_ms: u64,
    /// The wait after a failed reconnect attempt (paho: 1 s), doubling after each failure.
    #[schemars(range(min = 1))]
    pub reconnect_interval_ms: u64,
    /// paho `SetMaxReconnectInterval`: the auto-reconnect wait doubles up to this.
    #[schemars(range(min = 1))]
    pub max_reconnect_interval_ms: u64,
    /// paho `SetConnectTimeout` (30 s): how long a connection attempt waits for its CONNACK.
    #[schemars(range(min = 1))]
    pub connect_timeout_ms: u64,
    /// Handler time per message.
    pub processing_ms: u64,
    /// Where handlers apply their effect: in memory, or the database (`[config.db]`).
    pub sink: Sink,
    /// The subscribers' database, with `sink = "db"`.
    pub db: DbSection,
    /// The broker's mosquitto.conf.
    pub broker: BrokerConfig,
}

impl Default for Config {
    /// paho's and mosquitto's defaults, with QoS 1 both ways.
    fn default() -> Config {
        Config {
            subscribers: 1,
            topic: "orders".into(),
            qos: 1,
            subscribe_qos: 1,
            publisher_clean_session: true,
            subscriber_clean_session: true,
            resend_order: ResendSetting::Store,
            spec_qos2: false,
            protocol: ProtocolSetting::V311,
            keep_alive_s: 30,
            ping_timeout_ms: 10_000,
            reconnect_interval_ms: 1_000,
            max_reconnect_interval_ms: 600_000,
            connect_timeout_ms: 30_000,
            processing_ms: 1,
            sink: Sink::Memory,
            db: DbSection::default(),
            broker: BrokerConfig::default(),
        }
    }
}

pub struct Mqtt {
    config: Config,
    workload: Workload,
    source: Rc<Source>,
    subscribed: Subscribed,
    /// What the broker still owes its sessions: the drain probe only.
    owed: Owed,
    db: Option<DbSink>,
}

pub fn build(scenario: &Scenario) -> Result<Box<dyn Design>, ScenarioError> {
    build_with(scenario, None)
}

/// [`build`], with the user's handler for `strategy = "user"` (issue 13): an ack is the
/// subscriber's PUBACK/PUBREC; requeue and errors send nothing (MQTT has no negative
/// acknowledgement), so the broker resends on the session's next connection.
pub fn build_with(
    scenario: &Scenario,
    handler: Option<HandlerFactory>,
) -> Result<Box<dyn Design>, ScenarioError> {
    let config: Config = scenario.design_config()?;
    if scenario.workload.producers > PUBLISHERS_MAX {
        return Err(ScenarioError {
            path: scenario.path.clone(),
            line: None,
            message: format!("workload.producers: at most {PUBLISHERS_MAX} for mqtt"),
        });
    }
    if !super::topic::valid_name(&config.topic) {
        return Err(scenario.config_error("topic", "a topic name: no wildcards, not empty".into()));
    }
    config.db.check(scenario, config.sink, handler.as_ref(), true)?;
    let db = (config.sink == Sink::Db)
        .then(|| DbSink::new(config.db.clone(), scenario.workload.messages).with_user(handler));
    Ok(Box::new(Mqtt {
        source: Rc::new(Source::new(&scenario.workload)),
        subscribed: Subscribed::default(),
        owed: Owed::default(),
        config,
        workload: scenario.workload.clone(),
        db,
    }))
}

impl Mqtt {
    /// The broker and its subscribers as another design's component: that design brings the
    /// publisher (the outbox's relay), which waits for [`Mqtt::subscribed`] as publishers do.
    pub fn component(config: Config) -> Mqtt {
        let workload = Workload {
            messages: 0,
            producers: 0,
            ..Workload::default()
        };
        Mqtt {
            source: Rc::new(Source::new(&workload)),
            subscribed: Subscribed::default(),
            owed: Owed::default(),
            config,
            workload,
            db: None,
        }
    }

    /// The subscribers whose first SUBACK has come, and how many there are.
    pub fn subscribed(&self) -> (Subscribed, u32) {
        (self.subscribed.clone(), self.config.subscribers)
    }

    fn publishers(&self) -> Vec<String> {
        (1..=self.workload.producers)
            .map(|i| format!("publisher{i}"))
            .collect()
    }

    fn subscribers(&self) -> Vec<String> {
        (1..=self.config.subscribers)
            .map(|i| format!("subscriber{i}"))
            .collect()
    }

    fn client_settings(&self, clean_session: bool) -> ClientSettings {
        let c = &self.config;
        ClientSettings {
            broker: BROKER_HOST.to_string(),
            topic: c.topic.clone(),
            qos: c.qos,
            subscribe_qos: c.subscribe_qos,
            clean_session,
            resend_order: match c.resend_order {
                ResendSetting::Store => ResendOrder::StoreOrder,
                ResendSetting::Ordered => ResendOrder::Ordered,
            },
            spec_qos2: c.spec_qos2,
            v5: c.protocol == ProtocolSetting::V5,
            keep_alive_s: c.keep_alive_s,
            ping_timeout_ms: c.ping_timeout_ms,
            reconnect_interval_ms: c.reconnect_interval_ms,
            max_reconnect_interval_ms: c.max_reconnect_interval_ms,
            connect_timeout_ms: c.connect_timeout_ms,
            publish_interval_ms: self.workload.publish_interval_ms,
            start_ms: self.workload.start_ms,
            processing_ms: c.processing_ms,
        }
    }

    fn install_clients(&self, sim: &mut turmoil::Sim<'_>, env: &Env) {
        let publisher = self.client_settings(self.config.publisher_clean_session);
        for host in self.publishers() {
            let (env, name, settings) = (env.clone(), host.clone(), publisher.clone());
            let source = self.source.clone();
            let subscribed = (self.subscribed.clone(), self.config.subscribers);
            env.process(&host).install(sim, move || {
                run_publisher(
                    env.clone(),
                    name.clone(),
                    settings.clone(),
                    source.clone(),
                    subscribed.clone(),
                )
            });
        }
        let subscribers = self.subscribers();
        if subscribers.len() > 1 {
            // Each subscriber's session is owed every message: judged one by one.
            let members = subscribers.iter().map(|s| (s.clone(), s.clone())).collect();
            env.record(sim::world::HARNESS_HOST, EventKind::Groups { members });
        }
        let subscriber = self.client_settings(self.config.subscriber_clean_session);
        for host in subscribers {
            let (env, name, settings, sink) =
                (env.clone(), host.clone(), subscriber.clone(), self.db.clone());
            let subscribed = self.subscribed.clone();
            env.process(&host).install(sim, move || {
                run_subscriber(
                    env.clone(),
                    name.clone(),
                    settings.clone(),
                    sink.clone(),
                    subscribed.clone(),
                )
            });
        }
    }
}

impl Design for Mqtt {
    fn topology(&self) -> Topology {
        let db: Vec<String> = self.db.iter().map(|db| db.host().to_string()).collect();
        let hosts = std::iter::once(BROKER_HOST.to_string())
            .chain(self.publishers())
            .chain(self.subscribers())
            .chain(db.iter().cloned())
            .collect();
        Topology::new(hosts)
            .with_role("broker", [BROKER_HOST])
            .with_role("publisher", self.publishers())
            .with_role("subscriber", self.subscribers())
            .with_role("db", db)
    }

    fn install<'a>(&'a self, sim: &mut turmoil::Sim<'a>, env: &Env) {
        if let Some(db) = &self.db {
            db.install(sim, env);
        }
        let (env_b, config, owed) = (env.clone(), self.config.broker.clone(), self.owed.clone());
        env.process(BROKER_HOST).install(sim, move || {
            sim_broker::run(
                env_b.clone(),
                BROKER_HOST.to_string(),
                config.clone(),
                owed.clone(),
            )
        });
        self.install_clients(sim, env);
    }

    /// Pending while a publisher publishes or has messages not completely acknowledged, or
    /// the broker owes a session messages (a subscriber away, or one still handling them).
    /// The drain restarts every host, so a persistent session's subscriber comes back.
    fn pending(&self, env: &Env) -> Option<String> {
        let unpublished = self.source.unpublished();
        if unpublished > 0 {
            return Some(format!("{unpublished} message(s) not yet published"));
        }
        if let Some(p) = self
            .publishers()
            .into_iter()
            .find(|p| env.process(p).is_running())
        {
            return Some(format!("{p} still has messages in flight"));
        }
        let owed = self.owed.get();
        (owed > 0).then(|| format!("the broker owes its sessions {owed} message(s)"))
    }

    fn promise(&self) -> Promise {
        let promise = self.mqtt_promise();
        match &self.db {
            None => promise,
            Some(db) => db.promise(DeliveryWindows {
                losses: promise.excuses,
                redeliveries: vec!["kill", "power_fail", "pause", "partition", "lose_replies", "stop"],
                broker: "MQTT",
                ack: "PUBACK/PUBREC",
            }),
        }
    }
}

impl Mqtt {
    /// The per-hop guarantee both hops share (reference §3.1-3.4): QoS 0 publishes are at
    /// most once; QoS 1 at least once and QoS 2 exactly once while both ends keep their
    /// session state; a hop at QoS 0 (a subscription granted 0) loses what that hop loses,
    /// and a QoS 1 publish to a QoS 0 subscriber may arrive twice [MQTT-3.8.4-6].
    fn mqtt_promise(&self) -> Promise {
        let c = &self.config;
        let effective = c.qos.min(c.subscribe_qos);
        let (text, mut properties) = match (c.qos, effective) {
            (0, _) => ("at-most-once: QoS 0 is sent once and never again", vec![Property::AtMostOnce]),
            (_, 0) => ("nothing: the subscription's QoS 0 hop loses, the QoS 1/2 publish hop re-sends", vec![]),
            (_, 1) => ("at-least-once while both ends keep their sessions (QoS 1)", vec![Property::AtLeastOnce]),
            _ if c.spec_qos2 => (
                "exactly-once per hop while both ends keep their sessions (QoS 2)",
                vec![Property::ExactlyOnce],
            ),
            _ => (
                "at-least-once: QoS 2, but paho re-sends a PUBLISH after its PUBREC and runs the handler again for a re-sent PUBLISH",
                vec![Property::AtLeastOnce],
            ),
        };
        // Only QoS 2 (no duplicates) or QoS 0 (no resend) keeps a publisher's order, and only
        // with the resend in order [MQTT-4.6.0-1]: a duplicate arrives after what followed it.
        let no_duplicates = c.qos == 0 || (effective == 2 && c.spec_qos2);
        if no_duplicates && (c.qos == 0 || c.resend_order == ResendSetting::Ordered) {
            properties.push(Property::Ordered(OrderScope::Producer));
        }
        Promise {
            text: format!("{text} (reference §3.4, designs table rows 13-16)"),
            properties,
            excuses: self.session_losses(),
        }
    }

    /// Where MQTT itself loses session state, and with it messages (reference §3.2, §3.4).
    fn session_losses(&self) -> Vec<Excuse> {
        let mut excuses = vec![
            // A broker crash loses what it held in memory; with persistence, what changed
            // since its last autosave.
            Excuse::fault("kill", BROKER_HOST),
            Excuse::fault("power_fail", BROKER_HOST),
            // Past max_queued_messages mosquitto drops; a clean session ends with its
            // connection, and with it whatever was in flight or would have been queued.
            // The client learns it when it reconnects (session present = 0), after what
            // was published meanwhile: that is where the window is judged.
            Excuse::note("mqtt.queue_full_drop"),
            // Past the incoming quota mosquitto drops a QoS 1/2 PUBLISH: with 0x97 to an
            // MQTT 5 client, with a plain acknowledgement to a 3.1.1 one.
            Excuse::note("mqtt.quota_exceeded"),
            Excuse::note("mqtt.session_discarded"),
            Excuse::note("client.session_not_present"),
        ];
        if !self.config.broker.persistence {
            excuses.push(Excuse::fault("stop", BROKER_HOST));
        }
        if self.config.subscribe_qos == 0 || self.config.qos == 0 {
            // A QoS 0 hop: whatever is on the wire when a connection breaks is gone.
            for action in ["kill", "partition", "pause", "stop", "lose_replies"] {
                excuses.push(Excuse::fault(action, ""));
            }
        }
        excuses
    }
}
