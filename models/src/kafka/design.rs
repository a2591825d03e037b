//! The `kafka` design: a controller, brokers replicating one topic's partitions, producers
//! and consumers (reference §2.1–2.4, §2.6, §2.7; designs table rows 5–10). Consumers use
//! `assign()` by default, or with `group_id` one consumer group and a commit strategy, whose
//! promise is the strategy's (reference §2.6).
//!
//! Hosts: `controller`, `broker1..`, `producer1..`, `consumer1..`, and `db` with the
//! database sink. Roles: `controller`, `broker`, `producer`, `consumer`, `db`, and the
//! dynamic role `leader`: the broker leading partition 0 when the fault fires, as the
//! controller last published it.

use super::accumulator::ProducerConfig;
use super::assignor::Assignor;
use super::consumer::{
    run_consumer, CommitStrategy, ConsumerProgress, ConsumerSettings, GroupSettings, OffsetReset,
};
use super::controller::{ControllerConfig, TopicPartition};
use super::group_member::MemberConfig;
use super::handler::Cluster;
use super::log::LogConfig;
use super::partition::{BrokerId, LogTruncation, PartitionConfig};
use super::producer::{run_producer, ProducerSettings, TxnSettings};
use super::read_committed::IsolationLevel;
use super::sim_broker::Watermarks;
use super::sim_broker::{self, BrokerSettings, BROKER_PORT};
use super::sim_controller::{self, Leaders, TopicSpec};
use super::txn_coordinator::TxnProtocol;
use super::txn_manager::ClientProtocol;
use crate::db::sink::{DbSection, DbSink, DeliveryWindows, Sink};
use crate::db::user::HandlerFactory;
use crate::source::Source;
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

pub const CONTROLLER_HOST: &str = "controller";
/// The bound on producer hosts, so a typo cannot build a runaway cluster.
pub const PRODUCERS_MAX: u32 = 32;

/// The producer's `acks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AcksSetting {
    /// acks=0: the producer does not wait for any answer.
    #[serde(rename = "0")]
    None,
    /// acks=1: the leader's append is enough.
    #[serde(rename = "1")]
    Leader,
    /// acks=all: every in-sync replica has it (the default since Kafka 3.0).
    #[serde(rename = "all")]
    All,
}

/// How a follower truncates when it follows a new leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TruncationSetting {
    /// KIP-101 (Kafka 0.11+): to where the leader says the follower's latest epoch ends.
    LeaderEpoch,
    /// Before 0.11: to the follower's own high watermark (two known windows, reference §2.2).
    HighWatermark,
}

/// The assignor a consumer group's leader prefers (`partition.assignment.strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssignorSetting {
    /// RangeAssignor (the Java consumer's first default): consecutive partitions per member.
    Range,
    /// RoundRobinAssignor: partitions dealt to the members in turn.
    Roundrobin,
}

/// `transaction_protocol`: whether producers are transactional, and which protocol the
/// brokers and clients speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TxnProtocolSetting {
    /// No `transactional.id`: idempotent (or plain) producers.
    Off,
    /// Transactions before KIP-890: one epoch across a producer's transactions, so a
    /// delayed Produce or EndTxn can land in the next transaction (reference §2.5).
    V1,
    /// Kafka 4's transaction version 2 (KIP-890 part 2): the epoch is bumped at every
    /// EndTxn, so the previous transaction's late requests are fenced.
    V2,
}

/// The consumers' `isolation.level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IsolationSetting {
    /// Kafka's default: every record, aborted transactions' too, up to the high watermark.
    ReadUncommitted,
    /// Committed records only, up to the last stable offset (an open transaction holds it).
    ReadCommitted,
}

/// Where a transformer's input offsets go (`transformer_offsets`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransformerOffsets {
    /// `sendOffsetsToTransaction`: committed by the transaction's marker with the output
    /// (Kafka's exactly-once loop).
    InTransaction,
    /// A plain commitSync after commitTransaction returned: a crash between the two writes
    /// the batch again.
    AfterCommit,
}

/// The `kafka` design's `[config]`: the cluster, the topic, and the broker settings that
/// decide what is lost. The doc comments are what `jetsam list` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Broker hosts (broker1..).
    #[schemars(range(min = 1, max = 9))]
    pub brokers: u32,
    /// The topic the controller creates at start.
    pub topic: String,
    /// The topic's partitions.
    #[schemars(range(min = 1, max = 64))]
    pub partitions: i32,
    /// Replicas per partition (at most `brokers`).
    #[schemars(range(min = 1, max = 9))]
    pub replication_factor: u32,
    /// The producers' acks.
    pub acks: AcksSetting,
    /// `min.insync.replicas` (with acks=all).
    #[schemars(range(min = 1, max = 9))]
    pub min_insync_replicas: u32,
    /// `unclean.leader.election.enable`: a replica out of the ISR may lead with what it has.
    pub unclean_leader_election: bool,
    /// How followers truncate when they follow a new leader.
    pub log_truncation: TruncationSetting,
    /// `flush.messages`: fsync after this many messages (0: never, Kafka's default; it
    /// relies on replication).
    pub flush_messages: u64,
    /// `flush.ms`: fsync this long after the last one (0: never).
    pub flush_ms: u64,
    /// `replica.lag.time.max.ms`: a follower not caught up for this long leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// `broker.session.timeout.ms`: a broker silent this long is fenced by the controller.
    pub session_timeout_ms: u64,
    /// The producers' `enable.idempotence` (true by default since Kafka 3.0; needs acks=all:
    /// set it false with acks 0 or 1).
    pub enable_idempotence: bool,
    /// The producers' `retries`.
    pub retries: u32,
    /// The producers' `max.in.flight.requests.per.connection` (at most 5 with idempotence).
    #[schemars(range(min = 1, max = 100))]
    pub max_in_flight: u32,
    /// The producers' `linger.ms`.
    pub linger_ms: u64,
    /// The producers' `batch.size`, in bytes.
    #[schemars(range(min = 1))]
    pub batch_size: u32,
    /// The producers' `request.timeout.ms`: an unanswered request closes the connection.
    pub request_timeout_ms: u64,
    /// The producers' `delivery.timeout.ms`: a record not acknowledged by then fails.
    pub delivery_timeout_ms: u64,
    /// The application's own retry: a record whose send fails (its delivery timeout passed,
    /// or its retries ran out) is sent again through a new producer instance, which gets a
    /// new producer id, so the leader cannot recognise a copy it already has (reference §2.4).
    pub resend_with_new_producer: bool,
    /// Consumer hosts. Without `group_id`, consumer i is `assign()`ed partitions i-1, i-1+n,
    /// ... and keeps its positions in memory (at most one consumer per partition).
    #[schemars(range(min = 1, max = 32))]
    pub consumers: u32,
    /// The consumers' `group.id`: set, they `subscribe()` as one consumer group (partitions
    /// from the group coordinator, positions from committed offsets, `commit` deciding when
    /// offsets are committed); empty, they use `assign()` as above.
    pub group_id: String,
    /// With `group_id`: when offsets are committed (`auto`: `enable.auto.commit` with records
    /// handed to a worker; `before_process`; `after_process`; `db`: in the database's
    /// transaction, with `sink = "db"` and the db's `position` strategy).
    pub commit: CommitStrategy,
    /// `auto.commit.interval.ms`, with `commit = "auto"`.
    #[schemars(range(min = 1))]
    pub auto_commit_interval_ms: u64,
    /// `auto.offset.reset`, with `group_id`: where a partition without a committed offset
    /// starts (Kafka's default `latest` skips what the log already holds).
    pub auto_offset_reset: OffsetReset,
    /// The group members' `session.timeout.ms` (45 s since Kafka 3.0): a member without a
    /// heartbeat for this long is removed and its partitions reassigned.
    #[schemars(range(min = 2))]
    pub consumer_session_timeout_ms: u64,
    /// `heartbeat.interval.ms` (below the session timeout), sent by a task apart from poll.
    #[schemars(range(min = 1))]
    pub heartbeat_interval_ms: u64,
    /// `max.poll.interval.ms`: a member that does not poll for this long leaves the group.
    #[schemars(range(min = 1))]
    pub max_poll_interval_ms: u64,
    /// The assignor the group's leader prefers; both are offered.
    pub assignor: AssignorSetting,
    /// Handler time per record.
    pub processing_ms: u64,
    /// Where handlers apply their effect: in memory, or the database (`[config.db]`).
    pub sink: Sink,
    /// The consumer's database, with `sink = "db"`.
    pub db: DbSection,
    /// `offsets.topic.num.partitions`: the partitions of `__consumer_offsets`, created when
    /// a client first looks for a group coordinator. Kafka's 50 made a simulated 21 s run of
    /// three brokers take 11 s against 1.5 s with 3 (debug build), every partition being
    /// replicated and ticked, so the default here is 5.
    #[schemars(range(min = 1, max = 64))]
    pub offsets_topic_partitions: i32,
    /// Transactional producers (`transactional.id` = the producer's host) and the protocol:
    /// "off", "v1" (before KIP-890) or "v2" (Kafka 4's epoch bump per transaction).
    pub transaction_protocol: TxnProtocolSetting,
    /// Records per transaction, with transactions.
    #[schemars(range(min = 1, max = 10000))]
    pub transaction_size: u32,
    /// The fraction of transactions the application aborts, drawn from the run's seed.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub abort_fraction: f64,
    /// The producers' `transaction.timeout.ms`: the coordinator aborts a transaction open
    /// longer (at most the broker's `transaction.max.timeout.ms`, 900000).
    #[schemars(range(min = 1, max = 900000))]
    pub transaction_timeout_ms: u64,
    /// The consumers' `isolation.level`: "read_uncommitted" (Kafka's default) or
    /// "read_committed".
    pub isolation_level: IsolationSetting,
    /// `transaction.state.log.num.partitions`: the partitions of `__transaction_state`,
    /// created (with `min(3, brokers)` replicas and `min.insync.replicas` `min(2, replicas)`,
    /// Kafka's `transaction.state.log.*` defaults) when a transactional client first looks for
    /// its coordinator; small, as the offsets topic's.
    #[schemars(range(min = 1, max = 64))]
    pub transaction_state_partitions: i32,
    /// Transformer hosts (transformer1..), consume-transform-produce: a consumer group
    /// (`transformer_group_id`) reading `topic` read_committed from the earliest offset, each
    /// poll's records written to `output_topic` in one transaction of a producer with
    /// `transactional.id` `<host>-txn`; the consumers then read `output_topic`. Needs
    /// `transaction_protocol`.
    #[schemars(range(min = 0, max = 8))]
    pub transformers: u32,
    /// The topic the transformers write (created with `topic`'s partitions and replicas).
    pub output_topic: String,
    /// The transformers' `group.id`.
    pub transformer_group_id: String,
    /// Where the transformers' input offsets go: "in_transaction" (sendOffsetsToTransaction)
    /// or "after_commit" (a plain commit after the transaction).
    pub transformer_offsets: TransformerOffsets,
}

impl Default for Config {
    /// Kafka's defaults, on a three-broker cluster.
    fn default() -> Config {
        Config {
            brokers: 3,
            topic: "orders".into(),
            partitions: 1,
            replication_factor: 3,
            acks: AcksSetting::All,
            min_insync_replicas: 1,
            unclean_leader_election: false,
            log_truncation: TruncationSetting::LeaderEpoch,
            flush_messages: 0,
            flush_ms: 0,
            replica_lag_time_max_ms: 30_000,
            session_timeout_ms: 9_000,
            enable_idempotence: true,
            retries: i32::MAX as u32,
            max_in_flight: 5,
            linger_ms: 5,
            batch_size: 16_384,
            request_timeout_ms: 30_000,
            delivery_timeout_ms: 120_000,
            resend_with_new_producer: false,
            consumers: 1,
            group_id: String::new(),
            commit: CommitStrategy::Auto,
            auto_commit_interval_ms: 5_000,
            auto_offset_reset: OffsetReset::Latest,
            consumer_session_timeout_ms: 45_000,
            heartbeat_interval_ms: 3_000,
            max_poll_interval_ms: 300_000,
            assignor: AssignorSetting::Range,
            processing_ms: 1,
            sink: Sink::Memory,
            db: DbSection::default(),
            offsets_topic_partitions: 5,
            transaction_protocol: TxnProtocolSetting::Off,
            transaction_size: 10,
            abort_fraction: 0.0,
            transaction_timeout_ms: 60_000,
            isolation_level: IsolationSetting::ReadUncommitted,
            transaction_state_partitions: 3,
            transformers: 0,
            output_topic: "orders-out".into(),
            transformer_group_id: "transformers".into(),
            transformer_offsets: TransformerOffsets::InTransaction,
        }
    }
}

pub struct Kafka {
    config: Config,
    workload: Workload,
    source: Rc<Source>,
    leaders: Leaders,
    /// Each leader's high watermark per partition, and each consumer's positions: the drain
    /// probe only.
    watermarks: Watermarks,
    progress: Vec<ConsumerProgress>,
    /// The transformers' group's progress through the input topic (the drain probe).
    transform_progress: ConsumerProgress,
    db: Option<DbSink>,
}

pub fn build(scenario: &Scenario) -> Result<Box<dyn Design>, ScenarioError> {
    build_with(scenario, None)
}

/// [`build`], with the user's handler for `strategy = "user"` (issue 13): an ack lets the
/// record's offset pass (committed by `commit`), requeue and errors seek back to it.
pub fn build_with(
    scenario: &Scenario,
    handler: Option<HandlerFactory>,
) -> Result<Box<dyn Design>, ScenarioError> {
    let config: Config = scenario.design_config()?;
    if config.replication_factor > config.brokers {
        return Err(scenario.config_error(
            "replication_factor",
            format!("at most brokers ({})", config.brokers),
        ));
    }
    if !(1..=64).contains(&config.offsets_topic_partitions) {
        return Err(scenario.config_error("offsets_topic_partitions", "from 1 to 64".to_string()));
    }
    if !(1..=64).contains(&config.transaction_state_partitions) {
        return Err(scenario.config_error("transaction_state_partitions", "from 1 to 64".to_string()));
    }
    if config.min_insync_replicas > config.replication_factor {
        return Err(scenario.config_error(
            "min_insync_replicas",
            format!("at most replication_factor ({})", config.replication_factor),
        ));
    }
    if config.group_id.is_empty() && config.consumers as i32 > config.partitions {
        return Err(scenario.config_error(
            "consumers",
            format!(
                "at most partitions ({}): each consumer reads its own",
                config.partitions
            ),
        ));
    }
    if scenario.workload.producers > PRODUCERS_MAX {
        return Err(ScenarioError {
            path: scenario.path.clone(),
            line: None,
            message: format!("workload.producers: at most {} for kafka", PRODUCERS_MAX),
        });
    }
    if !config.group_id.is_empty() {
        if let Err(error) = config.member_config().validate() {
            return Err(scenario.config_error("heartbeat_interval_ms", error));
        }
    }
    config.db.check(scenario, config.sink, handler.as_ref(), true)?;
    if config.commit == CommitStrategy::Db && handler.is_some() {
        return Err(scenario.config_error(
            "commit",
            "\"db\" stores offsets in the sink's own transaction, which a user's handler does not write: use after_process".to_string(),
        ));
    }
    if config.commit == CommitStrategy::Db
        && (config.sink != Sink::Db || config.db.strategy != crate::db::client::Strategy::Position)
    {
        return Err(scenario.config_error(
            "commit",
            "\"db\" keeps offsets in the database: it needs sink = \"db\" and [config.db] strategy = \"position\"".to_string(),
        ));
    }
    if !(0.0..=1.0).contains(&config.abort_fraction) {
        return Err(scenario.config_error("abort_fraction", "from 0 to 1".to_string()));
    }
    if config.transactions() && !config.enable_idempotence {
        return Err(scenario.config_error(
            "transaction_protocol",
            "transactions need enable_idempotence = true (Kafka: \"Cannot set a transactional.id without also enabling idempotence\")".to_string(),
        ));
    }
    if config.transformers > 8 {
        return Err(scenario.config_error("transformers", "at most 8".to_string()));
    }
    if config.transformers > 0 {
        if !config.transactions() {
            return Err(scenario.config_error(
                "transformers",
                "transformers write in transactions: set transaction_protocol".to_string(),
            ));
        }
        if config.output_topic.is_empty() || config.output_topic == config.topic {
            return Err(scenario.config_error("output_topic", "a topic of its own, not `topic`".to_string()));
        }
        if config.transformer_group_id.is_empty() || config.transformer_group_id == config.group_id {
            return Err(scenario.config_error(
                "transformer_group_id",
                "a group of its own, not the consumers' `group_id`".to_string(),
            ));
        }
    }
    let mut probe = Kafka::new(config.clone(), scenario.workload.clone());
    if let Err(e) = probe.producer_settings().validate() {
        return Err(scenario.config_error("acks", e.to_string()));
    }
    probe.db = probe.db.map(|db| db.with_user(handler));
    Ok(Box::new(probe))
}

impl Config {
    /// The group members' settings, with `group_id`.
    fn member_config(&self) -> MemberConfig {
        self.member_config_of(&self.group_id, &self.topic)
    }

    /// A member of `group_id` reading `topic`: the consumers', or the transformers'.
    fn member_config_of(&self, group_id: &str, topic: &str) -> MemberConfig {
        let mut member = MemberConfig::new(group_id, topic);
        member.session_timeout_ms = self.consumer_session_timeout_ms;
        member.heartbeat_interval_ms = self.heartbeat_interval_ms;
        member.max_poll_interval_ms = self.max_poll_interval_ms;
        member.assignors = match self.assignor {
            AssignorSetting::Range => vec![Assignor::Range, Assignor::RoundRobin],
            AssignorSetting::Roundrobin => vec![Assignor::RoundRobin, Assignor::Range],
        };
        member
    }

    fn in_group(&self) -> bool {
        !self.group_id.is_empty()
    }

    /// The topic the consumers read: the transformers' output when there are transformers.
    fn consumed_topic(&self) -> &str {
        match self.transformers {
            0 => &self.topic,
            _ => &self.output_topic,
        }
    }

    fn transactions(&self) -> bool {
        self.transaction_protocol != TxnProtocolSetting::Off
    }

    fn txn_protocol(&self) -> Option<TxnProtocol> {
        match self.transaction_protocol {
            TxnProtocolSetting::Off => None,
            TxnProtocolSetting::V1 => Some(TxnProtocol::V1),
            TxnProtocolSetting::V2 => Some(TxnProtocol::V2),
        }
    }
}

impl Kafka {
    /// The cluster and its consumers as another design's component: that design brings the
    /// producer (the outbox's relay), so this one has no producers and no workload of its own.
    pub fn component(config: Config) -> Kafka {
        let workload = Workload {
            messages: 0,
            producers: 0,
            ..Workload::default()
        };
        Kafka::new(config, workload)
    }

    fn new(config: Config, workload: Workload) -> Kafka {
        let db = (config.sink == Sink::Db).then(|| {
            let sink = DbSink::new(config.db.clone(), workload.messages);
            if config.in_group() && config.commit == CommitStrategy::Db {
                sink.with_position_rows(config.partitions as u32)
            } else {
                sink
            }
        });
        // A group shares one progress: partitions change hands between its members.
        let shared = ConsumerProgress::default();
        Kafka {
            source: Rc::new(Source::new(&workload)),
            progress: (0..config.consumers)
                .map(|_| {
                    if config.in_group() {
                        shared.clone()
                    } else {
                        ConsumerProgress::default()
                    }
                })
                .collect(),
            config,
            workload,
            leaders: Rc::new(RefCell::new(BTreeMap::new())),
            watermarks: Rc::new(RefCell::new(BTreeMap::new())),
            transform_progress: ConsumerProgress::default(),
            db,
        }
    }

    fn brokers(&self) -> Vec<String> {
        (1..=self.config.brokers).map(|i| format!("broker{i}")).collect()
    }

    fn producers(&self) -> Vec<String> {
        (1..=self.workload.producers)
            .map(|i| format!("producer{i}"))
            .collect()
    }

    fn transformers(&self) -> Vec<String> {
        (1..=self.config.transformers)
            .map(|i| format!("transformer{i}"))
            .collect()
    }

    fn consumers(&self) -> Vec<String> {
        (1..=self.config.consumers)
            .map(|i| format!("consumer{i}"))
            .collect()
    }

    fn partition_config(&self) -> PartitionConfig {
        PartitionConfig {
            replica_lag_time_max_ms: self.config.replica_lag_time_max_ms,
            min_insync_replicas: self.config.min_insync_replicas as usize,
            log_truncation: match self.config.log_truncation {
                TruncationSetting::LeaderEpoch => LogTruncation::LeaderEpoch,
                TruncationSetting::HighWatermark => LogTruncation::HighWatermark,
            },
            ..PartitionConfig::default()
        }
    }

    fn log_config(&self) -> LogConfig {
        LogConfig {
            flush_interval_messages: (self.config.flush_messages > 0).then_some(self.config.flush_messages),
            flush_interval_ms: (self.config.flush_ms > 0).then_some(self.config.flush_ms),
            ..LogConfig::default()
        }
    }

    fn cluster(&self) -> Cluster {
        Cluster {
            cluster_id: "jetsam".into(),
            controller: 0,
            brokers: (1..=self.config.brokers as i32)
                .map(|i| (i, format!("broker{i}"), i32::from(BROKER_PORT)))
                .collect(),
        }
    }

    fn install_cluster(&self, sim: &mut turmoil::Sim<'_>, env: &Env) {
        let ids: Vec<BrokerId> = (1..=self.config.brokers as i32).collect();
        let controller = ControllerConfig {
            session_timeout_ms: self.config.session_timeout_ms,
            unclean_leader_election: self.config.unclean_leader_election,
        };
        let mut topics = vec![TopicSpec {
            name: self.config.topic.clone(),
            partitions: self.config.partitions,
            replication_factor: self.config.replication_factor as usize,
        }];
        if self.config.transformers > 0 {
            topics.push(TopicSpec {
                name: self.config.output_topic.clone(),
                ..topics[0].clone()
            });
        }
        let (env_c, leaders) = (env.clone(), self.leaders.clone());
        env.process(CONTROLLER_HOST).install(sim, move || {
            sim_controller::run(
                env_c.clone(),
                CONTROLLER_HOST.to_string(),
                controller.clone(),
                ids.clone(),
                topics.clone(),
                leaders.clone(),
            )
        });
        let settings = BrokerSettings {
            cluster: self.cluster(),
            controller: CONTROLLER_HOST.to_string(),
            partition: self.partition_config(),
            log: self.log_config(),
            group: super::group::GroupConfig {
                offsets_topic_partitions: self.config.offsets_topic_partitions,
                ..super::group::GroupConfig::default()
            },
            transactions: super::sim_broker::TxnSettings {
                state_partitions: self.config.transaction_state_partitions,
                protocol: self.config.txn_protocol().unwrap_or(TxnProtocol::V1),
            },
            watermarks: Some(self.watermarks.clone()),
        };
        for (index, host) in self.brokers().into_iter().enumerate() {
            let (env, name, settings) = (env.clone(), host.clone(), settings.clone());
            let id = index as i32 + 1;
            env.process(&host).install(sim, move || {
                sim_broker::run(env.clone(), name.clone(), id, settings.clone())
            });
        }
    }
}

impl Design for Kafka {
    fn topology(&self) -> Topology {
        let db: Vec<String> = self.db.iter().map(|db| db.host().to_string()).collect();
        let hosts = std::iter::once(CONTROLLER_HOST.to_string())
            .chain(self.brokers())
            .chain(self.producers())
            .chain(self.consumers())
            .chain(self.transformers())
            .chain(db.iter().cloned())
            .collect();
        Topology::new(hosts)
            .with_role("controller", [CONTROLLER_HOST])
            .with_role("broker", self.brokers())
            .with_role("producer", self.producers())
            .with_role("consumer", self.consumers())
            .with_role("transformer", self.transformers())
            .with_role("db", db)
            .with_dynamic_role(
                "leader",
                "the broker leading partition 0, as the controller last published it",
            )
    }

    fn resolve_role(&self, role: &str, _env: &Env) -> Option<String> {
        if role != "leader" {
            return None;
        }
        let first = TopicPartition {
            topic: self.config.topic.clone(),
            partition: 0,
        };
        let leader = (*self.leaders.borrow().get(&first)?)?;
        Some(format!("broker{leader}"))
    }

    fn install<'a>(&'a self, sim: &mut turmoil::Sim<'a>, env: &Env) {
        self.install_cluster(sim, env);
        if let Some(db) = &self.db {
            db.install(sim, env);
        }
        self.install_clients(sim, env);
    }

    fn pending(&self, env: &Env) -> Option<String> {
        self.clients_pending(env)
    }

    /// The variant's promise, from the reference's table rows 5–10: acks=all with
    /// min.insync.replicas >= 2 and no unclean election keeps every acknowledged write
    /// through any single broker failure; anything weaker documents its windows.
    fn promise(&self) -> Promise {
        self.kafka_promise()
    }
}

impl Kafka {
    fn producer_settings(&self) -> ProducerSettings {
        let c = &self.config;
        let mut settings = ProducerSettings::new(&c.topic, self.brokers());
        settings.producer = ProducerConfig {
            batch_size_bytes: c.batch_size as usize,
            linger_ms: c.linger_ms,
            max_in_flight: c.max_in_flight as usize,
            retries: c.retries,
            delivery_timeout_ms: c.delivery_timeout_ms,
            request_timeout_ms: c.request_timeout_ms,
            enable_idempotence: c.enable_idempotence,
            acks: match c.acks {
                AcksSetting::None => 0,
                AcksSetting::Leader => 1,
                AcksSetting::All => -1,
            },
            ..ProducerConfig::default()
        };
        settings.publish_interval_ms = self.workload.publish_interval_ms;
        settings.start_ms = self.workload.start_ms;
        settings.resend_with_new_producer = c.resend_with_new_producer;
        settings.producer.transactional = c.transactions();
        settings.transactions = c.txn_protocol().map(|protocol| TxnSettings {
            transactional_id: String::new(), // the host's, set at install
            protocol: match protocol {
                TxnProtocol::V1 => ClientProtocol::V1,
                TxnProtocol::V2 => ClientProtocol::V2,
            },
            transaction_size: c.transaction_size,
            abort_fraction: c.abort_fraction,
            transaction_timeout_ms: c.transaction_timeout_ms,
        });
        settings
    }

    /// Consumer i (from 0) reads partitions i, i + n, ...
    fn assigned(&self, index: usize) -> Vec<i32> {
        let n = self.config.consumers as i32;
        (0..self.config.partitions)
            .filter(|p| p % n == index as i32)
            .collect()
    }

    fn install_clients(&self, sim: &mut turmoil::Sim<'_>, env: &Env) {
        let producer = self.producer_settings();
        for host in self.producers() {
            let mut settings = producer.clone();
            if let Some(txn) = settings.transactions.as_mut() {
                txn.transactional_id = host.clone();
            }
            let (env, name, source) = (env.clone(), host.clone(), self.source.clone());
            env.process(&host).install(sim, move || {
                run_producer(env.clone(), name.clone(), settings.clone(), source.clone())
            });
        }
        for (index, host) in self.consumers().into_iter().enumerate() {
            let mut settings =
                ConsumerSettings::new(self.config.consumed_topic(), self.brokers(), self.assigned(index));
            settings.processing_ms = self.config.processing_ms;
            settings.isolation = match self.config.isolation_level {
                IsolationSetting::ReadUncommitted => IsolationLevel::ReadUncommitted,
                IsolationSetting::ReadCommitted => IsolationLevel::ReadCommitted,
            };
            settings.progress = Some(self.progress[index].clone());
            settings.group = self.config.in_group().then(|| GroupSettings {
                member: self.config.member_config(),
                commit: self.config.commit,
                auto_commit_interval_ms: self.config.auto_commit_interval_ms,
                auto_offset_reset: self.config.auto_offset_reset,
                sink: self.db.clone(),
                transform: None,
            });
            let (env, name, sink) = (env.clone(), host.clone(), self.db.clone());
            env.process(&host).install(sim, move || {
                run_consumer(env.clone(), name.clone(), settings.clone(), sink.clone())
            });
        }
        self.install_transformers(sim, env);
    }

    /// Each transformer: its producer writes the output topic with its own transactional
    /// id and no aborts of its own; its poll loop reads the input read_committed from the
    /// earliest offset (a new group has no committed offsets, and `latest` would skip what
    /// the producers wrote before it joined).
    fn install_transformers(&self, sim: &mut turmoil::Sim<'_>, env: &Env) {
        let c = &self.config;
        let in_transaction = c.transformer_offsets == TransformerOffsets::InTransaction;
        for host in self.transformers() {
            let mut producer = self.producer_settings();
            producer.topic = c.output_topic.clone();
            // The transform's time per record, inside the open transaction (Java's loop sends
            // each record as it is transformed).
            producer.publish_interval_ms = c.processing_ms;
            producer.start_ms = 0;
            if let Some(txn) = producer.transactions.as_mut() {
                txn.transactional_id = super::transformer::transactional_id(&host);
                txn.abort_fraction = 0.0;
                txn.transaction_size = super::transform_feed::FEED_RECORDS_MAX as u32;
            }
            let mut consumer = ConsumerSettings::new(&c.topic, self.brokers(), Vec::new());
            consumer.processing_ms = c.processing_ms;
            consumer.isolation = IsolationLevel::ReadCommitted;
            consumer.progress = Some(self.transform_progress.clone());
            consumer.group = Some(GroupSettings {
                member: c.member_config_of(&c.transformer_group_id, &c.topic),
                commit: CommitStrategy::Transaction,
                auto_commit_interval_ms: c.auto_commit_interval_ms,
                auto_offset_reset: OffsetReset::Earliest,
                sink: None,
                transform: None, // each incarnation makes its own
            });
            let (env, name) = (env.clone(), host.clone());
            env.process(&host).install(sim, move || {
                super::transformer::run_transformer(
                    env.clone(),
                    name.clone(),
                    producer.clone(),
                    consumer.clone(),
                    in_transaction,
                )
            });
        }
    }

    /// Pending while a producer publishes or a consumer has not read up to its partitions'
    /// high watermarks at their current leaders.
    fn clients_pending(&self, env: &Env) -> Option<String> {
        let unpublished = self.source.unpublished();
        if unpublished > 0 {
            return Some(format!("{unpublished} message(s) not yet published"));
        }
        if let Some(p) = self.producers().into_iter().find(|p| env.process(p).is_running()) {
            return Some(format!("{p} is still publishing"));
        }
        if let Some((consumer, records)) = self.progress.iter().find_map(ConsumerProgress::in_workers) {
            return Some(format!("{consumer}'s worker has {records} record(s) to process"));
        }
        let mut behind = Vec::new();
        for (index, progress) in self.progress.iter().enumerate() {
            // A group's members share one progress over every partition: judge it once.
            let partitions = match (self.config.in_group(), index) {
                (false, _) => self.assigned(index),
                (true, 0) => (0..self.config.partitions).collect(),
                (true, _) => continue,
            };
            let who = format!("consumer{}", index + 1);
            behind.extend(self.behind(&who, self.config.consumed_topic(), &partitions, progress));
        }
        if self.config.transformers > 0 {
            let all: Vec<i32> = (0..self.config.partitions).collect();
            let progress = &self.transform_progress;
            behind.extend(self.behind("the transformers", &self.config.topic, &all, progress));
        }
        (!behind.is_empty()).then(|| behind.join("; "))
    }
}

impl Kafka {
    /// Where `progress` stands short of `topic`'s high watermarks at their current leaders.
    fn behind(&self, who: &str, topic: &str, partitions: &[i32], progress: &ConsumerProgress) -> Vec<String> {
        let (leaders, watermarks) = (self.leaders.borrow(), self.watermarks.borrow());
        let positions = progress.positions();
        let mut behind = Vec::new();
        for partition in partitions {
            let tp = TopicPartition {
                topic: topic.to_string(),
                partition: *partition,
            };
            let Some(Some(leader)) = leaders.get(&tp) else {
                behind.push(format!("{topic}-{partition} has no leader"));
                continue;
            };
            let hw = watermarks.get(&(*leader, tp.clone())).copied().unwrap_or(0);
            let at = positions.get(partition).copied().unwrap_or(0);
            if at < hw {
                behind.push(format!("{who} read {topic}-{partition} to {at} of {hw}"));
            }
        }
        behind
    }
}

/// Broker failures Kafka's promise is conditional on, by variant.
impl Kafka {
    /// Every variant promises its acknowledged writes and one message per offset; a
    /// partition keeps each producer's order when retries cannot overtake each other
    /// (idempotence, or one request in flight: reference §2.4), within one producer
    /// instance: an application's resend through a new one comes after later writes.
    fn promised_properties(&self) -> Vec<Property> {
        let mut properties = vec![Property::AtLeastOnce, Property::ConsistentOffsets];
        let one_session = !self.config.resend_with_new_producer;
        if one_session && (self.config.enable_idempotence || self.config.max_in_flight == 1) {
            properties.push(Property::Ordered(sim::checker::OrderScope::ProducerPartition));
        }
        properties
    }

    fn kafka_promise(&self) -> Promise {
        let c = &self.config;
        let mut excuses = vec![
            // A correlated power failure of the replicas loses what none had fsynced
            // (reference §2.1: Kafka does not fsync per write, it relies on replication).
            Excuse::fault("power_fail", "broker"),
        ];
        if c.acks != AcksSetting::All || c.min_insync_replicas < 2 {
            // acks=1 (or an ISR shrunk to the leader): the leader's failure before its
            // followers copy the write loses it (reference §2.1).
            excuses.push(Excuse::fault("kill", "broker"));
            excuses.push(Excuse::fault("pause", "broker"));
            excuses.push(Excuse::fault("partition", ""));
        }
        if c.unclean_leader_election {
            excuses.push(Excuse::note("kafka.unclean_election"));
        }
        if c.log_truncation == TruncationSetting::HighWatermark {
            // Before KIP-101 a restarted follower truncates to its own high watermark, so a
            // broker crash can lose what every replica had (reference §2.2); power failures
            // are excused already.
            let kill = Excuse::fault("kill", "broker");
            if !excuses.contains(&kill) {
                excuses.push(kill);
            }
        }
        let promise = Promise {
            text: format!(
                "at-least-once for acknowledged writes with acks={}, min.insync.replicas={}{} (reference §2.1, table rows 5-8)",
                match c.acks {
                    AcksSetting::None => "0",
                    AcksSetting::Leader => "1",
                    AcksSetting::All => "all",
                },
                c.min_insync_replicas,
                if c.unclean_leader_election { ", unclean election" } else { "" }
            ),
            properties: self.promised_properties(),
            excuses,
        };
        let promise = self.transform_promise(self.txn_promise(promise));
        if c.in_group() {
            return self.group_promise(promise);
        }
        match &self.db {
            None => promise,
            Some(db) => db.promise(DeliveryWindows {
                losses: promise.excuses,
                redeliveries: vec!["kill", "power_fail", "pause", "partition", "lose_replies"],
                broker: "Kafka",
                ack: "the position's advance",
            }),
        }
    }

    /// With transactions (reference §2.5): a committed transaction is read whole and an
    /// aborted one not at all (`atomic`) by read_committed consumers; read_uncommitted ones
    /// read aborted records, as documented ("all messages are visible to consumers even if
    /// they were part of an aborted transaction"), so an abort excuses them. Under v1 a
    /// delayed Produce or EndTxn can land in the producer's next transaction (KIP-890's
    /// problem statement): delays and lost replies are its documented windows. Under v2
    /// the epoch bump per transaction fences them, and nothing is excused.
    fn txn_promise(&self, mut promise: Promise) -> Promise {
        let c = &self.config;
        if !c.transactions() {
            return promise;
        }
        promise.properties.push(Property::Atomic);
        let read = match c.isolation_level {
            IsolationSetting::ReadUncommitted => {
                promise
                    .excuses
                    .push(Excuse::note(sim::checker::transactions::TXN_ABORTED));
                "read_uncommitted consumers read aborted transactions (documented)"
            }
            IsolationSetting::ReadCommitted => {
                "read_committed consumers read only whole committed transactions"
            }
        };
        let window = match c.transaction_protocol {
            TxnProtocolSetting::V1 => {
                for action in ["latency", "lose_replies"] {
                    promise.excuses.push(Excuse::fault(action, ""));
                }
                // A transaction that ends after an EndTxn of its producer went unanswered:
                // the copy may still land (the fault that delayed it came earlier).
                // So does one that ends after a batch failed with its Produce unanswered.
                for note in [
                    super::producer::TXN_AFTER_UNANSWERED_END_TXN,
                    super::producer::TXN_AFTER_UNANSWERED_PRODUCE,
                ] {
                    promise.excuses.push(Excuse::note(note));
                }
                "; v1: a delayed Produce or EndTxn may land in the next transaction (KIP-890)"
            }
            _ => "; v2: a late request of an ended transaction is fenced (KIP-890)",
        };
        promise.text = format!("{}; transactions: {read}{window}", promise.text);
        promise
    }

    /// With transformers (consume-transform-produce, reference §2.5): the input offsets
    /// committed by the output's transaction make each input record's output read once by
    /// read_committed consumers (Kafka's exactly-once, KIP-98/KIP-447), a transformer's crash
    /// or fencing aborting the open transaction and its successor starting from the offsets
    /// committed with the last one. Committed apart, after the transaction, they lag the
    /// output: a crash between the two writes the batch again, at least once.
    fn transform_promise(&self, mut promise: Promise) -> Promise {
        let c = &self.config;
        if c.transformers == 0 {
            return promise;
        }
        let exactly = c.transformer_offsets == TransformerOffsets::InTransaction
            && c.isolation_level == IsolationSetting::ReadCommitted;
        let said = match (c.transformer_offsets, exactly) {
            (TransformerOffsets::InTransaction, true) => {
                promise.properties.push(Property::ExactlyOnce);
                "exactly once: input offsets sent to the output's transaction"
            }
            (TransformerOffsets::InTransaction, false) => {
                "input offsets in the output's transaction, but read_uncommitted readers see aborted output"
            }
            (TransformerOffsets::AfterCommit, _) => {
                // A transformer that dies, or loses its partitions, after its transaction
                // committed and before its offsets did writes the batch again, after what
                // followed it: the output keeps no producer's order.
                promise
                    .properties
                    .retain(|p| !matches!(p, Property::Ordered(sim::checker::OrderScope::ProducerPartition)));
                "at least once: input offsets committed after the output's transaction, so a crash between them writes a batch again"
            }
        };
        promise.text = format!("{}; transformers: {said}", promise.text);
        promise
    }

    /// A consumer group's promise is its commit strategy's (reference §2.6), over the
    /// broker's windows: auto-commit with a worker loses what a consumer that died had
    /// committed and not processed; committing before processing is at most once; after
    /// processing, at least once; offsets in the database's transaction, exactly once.
    fn group_promise(&self, broker: Promise) -> Promise {
        let mut losses = broker.excuses.clone();
        if self.config.commit == CommitStrategy::Auto {
            // The documented window: the committed offset got ahead of what the worker
            // processed, and the consumer died.
            for action in ["kill", "power_fail", "stop"] {
                losses.push(Excuse::fault(action, "consumer"));
            }
            // And a record whose processing failed: the worker cannot seek back, so the
            // next auto-commit passes it.
            losses.push(Excuse::note(super::consumer::WORKER_DROPPED_FAILED_RECORD));
        }
        // Committing before processing is at most once whatever the handler does: a guard
        // (inbox, conditional update) stops a second effect, never brings back a record the
        // group has already committed past (reference §2.6). The database's own strategy
        // only speaks to what happens after the commit.
        let before = self.config.commit == CommitStrategy::BeforeProcess;
        if let (Some(db), false) = (&self.db, before) {
            let mut promise = db.promise(DeliveryWindows {
                losses,
                redeliveries: vec!["kill", "power_fail", "pause", "partition", "lose_replies"],
                broker: "Kafka",
                ack: if self.config.commit == CommitStrategy::Db {
                    "the offset stored in the same transaction"
                } else {
                    "the offset commit"
                },
            });
            if self.config.commit == CommitStrategy::Auto {
                promise.text = format!(
                    "{}, but auto-commit every {} ms runs apart from the worker's COMMITs: \
                     except what a consumer that died had committed and not processed, or its \
                     worker failed (reference §2.6)",
                    promise.text, self.config.auto_commit_interval_ms
                );
            }
            return promise;
        }
        match self.config.commit {
            CommitStrategy::Auto => Promise {
                text: format!(
                    "auto-commit every {} ms with records processed by a worker: at-least-once except \
                     what a consumer that died had committed and not processed (reference §2.6)",
                    self.config.auto_commit_interval_ms
                ),
                properties: broker.properties,
                excuses: losses,
            },
            CommitStrategy::BeforeProcess => Promise {
                text: "at-most-once effects: offsets committed before processing (reference §2.6)".into(),
                properties: vec![Property::AtMostOnce, Property::ConsistentOffsets],
                excuses: Vec::new(),
            },
            CommitStrategy::AfterProcess | CommitStrategy::Db | CommitStrategy::Transaction => Promise {
                text: format!(
                    "at-least-once effects: offsets committed after processing; {}",
                    broker.text
                ),
                properties: broker.properties,
                excuses: losses,
            },
        }
    }
}
