//! The controller, sans I/O: which brokers are alive, where each partition's replicas are,
//! who leads it and which replicas are in sync (reference §2.1).
//!
//! One controller host, as a KRaft cluster with a single controller node has it (a quorum is
//! left out: it changes when the controller itself is unavailable, not what it decides).
//! Brokers heartbeat; one silent for `broker.session.timeout.ms` (9 s) is **fenced**, as
//! KRaft's controller fences it: it leaves every ISR it is in, unless it is the last member,
//! and every partition it led gets a new leader from the rest of the ISR. When no ISR member
//! is left alive, the partition has no leader until one comes back, unless
//! `unclean.leader.election.enable` lets any live replica lead with what it has (reference
//! §2.1: "its log becomes the source of truth"). Leaders propose ISR changes
//! (AlterPartition, KIP-497), accepted only from the current leader epoch and partition
//! epoch. Every change bumps the partition epoch; every new leader bumps the leader epoch.
//! Each change comes out as [`Published`] for the driver to send to the brokers.

// A sans-I/O core: every function reads at once (ARCHITECTURE.md, "Short functions").
#![deny(clippy::too_many_lines)]

use super::partition::{BrokerId, LeaderAndIsr};
use std::collections::BTreeMap;

/// The most partitions one topic may have here (a typo cannot create a million).
pub const PARTITIONS_MAX: i32 = 1024;

#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub session_timeout_ms: u64,
    /// `unclean.leader.election.enable` (false since Kafka 0.11).
    pub unclean_leader_election: bool,
}

impl Default for ControllerConfig {
    fn default() -> ControllerConfig {
        ControllerConfig {
            session_timeout_ms: 9_000,
            unclean_leader_election: false,
        }
    }
}

/// A topic partition's name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

/// A partition's new state, for its replicas (and every broker's metadata cache).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Published {
    pub partition: TopicPartition,
    pub state: LeaderAndIsr,
    /// Why it changed, for the history: `created`, `fenced broker 2`, `unclean election`...
    pub reason: String,
}

/// Kafka's errors the controller answers with.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ControllerError {
    TopicAlreadyExists,
    InvalidPartitions,
    InvalidReplicationFactor,
    UnknownTopicOrPartition,
    /// An AlterPartition from an old leader epoch, or not from the leader.
    FencedLeaderEpoch,
    /// An AlterPartition from the right epoch but an older partition epoch.
    InvalidUpdateVersion,
    /// An AlterPartition that would add a fenced broker to the ISR.
    IneligibleReplica,
}

impl ControllerError {
    /// Kafka's wire error code.
    pub fn code(&self) -> i16 {
        match self {
            ControllerError::UnknownTopicOrPartition => 3,
            ControllerError::InvalidPartitions => 37,
            ControllerError::InvalidReplicationFactor => 38,
            ControllerError::TopicAlreadyExists => 36,
            ControllerError::FencedLeaderEpoch => 74,
            ControllerError::InvalidUpdateVersion => 108,
            ControllerError::IneligibleReplica => 107,
        }
    }
}

#[derive(Clone, Debug)]
struct BrokerState {
    last_heartbeat_ms: u64,
    fenced: bool,
}

/// The controller's durable state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub partitions: Vec<(TopicPartition, LeaderAndIsr)>,
    pub next_producer_id: i64,
}

/// Producer ids the controller hands a broker at a time (Kafka's AllocateProducerIds).
pub const PRODUCER_ID_BLOCK: i64 = 1000;

pub struct Controller {
    config: ControllerConfig,
    /// The first producer id not yet handed out; ids are never reused.
    next_producer_id: i64,
    brokers: BTreeMap<BrokerId, BrokerState>,
    partitions: BTreeMap<TopicPartition, LeaderAndIsr>,
    published: Vec<Published>,
}

impl Controller {
    /// A controller for a fixed set of brokers, all fenced until they first heartbeat.
    pub fn new(config: ControllerConfig, brokers: &[BrokerId]) -> Controller {
        assert!(!brokers.is_empty(), "a cluster has brokers");
        let state = BrokerState {
            last_heartbeat_ms: 0,
            fenced: true,
        };
        Controller {
            config,
            brokers: brokers.iter().map(|b| (*b, state.clone())).collect(),
            partitions: BTreeMap::new(),
            published: Vec::new(),
            next_producer_id: 0,
        }
    }

    /// AllocateProducerIds: the next block of producer ids, for a live broker.
    pub fn allocate_producer_ids(&mut self, broker: BrokerId) -> Option<(i64, i64)> {
        if self.is_fenced(broker) {
            return None;
        }
        let first = self.next_producer_id;
        self.next_producer_id += PRODUCER_ID_BLOCK;
        Some((first, PRODUCER_ID_BLOCK))
    }

    /// What the controller must not forget across a restart (KRaft keeps it in its fsynced
    /// metadata log): every partition's state and the next producer id.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            partitions: self
                .partitions
                .iter()
                .map(|(tp, s)| (tp.clone(), s.clone()))
                .collect(),
            next_producer_id: self.next_producer_id,
        }
    }

    /// A restarted controller: the partitions as they were, every broker fenced until it
    /// heartbeats again.
    pub fn restore(config: ControllerConfig, brokers: &[BrokerId], snapshot: Snapshot) -> Controller {
        let mut controller = Controller::new(config, brokers);
        controller.partitions = snapshot.partitions.into_iter().collect();
        controller.next_producer_id = snapshot.next_producer_id;
        controller
    }

    pub fn partitions(&self) -> &BTreeMap<TopicPartition, LeaderAndIsr> {
        &self.partitions
    }

    pub fn is_fenced(&self, broker: BrokerId) -> bool {
        self.brokers.get(&broker).is_none_or(|b| b.fenced)
    }

    /// The changes since the last call, in the order they were made.
    pub fn take_published(&mut self) -> Vec<Published> {
        std::mem::take(&mut self.published)
    }

    /// A broker's heartbeat; a fenced broker that heartbeats is unfenced, and partitions
    /// waiting for a leader may get one. Answers whether the broker is fenced (unknown
    /// brokers are).
    pub fn heartbeat(&mut self, broker: BrokerId, now_ms: u64) -> bool {
        let Some(state) = self.brokers.get_mut(&broker) else {
            return true;
        };
        state.last_heartbeat_ms = now_ms;
        if state.fenced {
            state.fenced = false;
            self.elect_leaderless(&format!("broker {broker} unfenced"));
        }
        false
    }

    /// Fences every broker whose session has expired.
    pub fn tick(&mut self, now_ms: u64) {
        let timeout_ms = self.config.session_timeout_ms;
        let expired: Vec<BrokerId> = self
            .brokers
            .iter()
            .filter(|(_, b)| !b.fenced && now_ms.saturating_sub(b.last_heartbeat_ms) > timeout_ms)
            .map(|(id, _)| *id)
            .collect();
        for broker in expired {
            self.fence(broker);
        }
    }

    /// CreateTopics: replicas assigned round-robin over the brokers in id order, as Kafka's
    /// assignment without racks starts each partition one broker further on; the first
    /// replica leads if it is alive.
    pub fn create_topic(
        &mut self,
        topic: &str,
        partitions: i32,
        replication_factor: usize,
    ) -> Result<(), ControllerError> {
        if self.partitions.keys().any(|tp| tp.topic == topic) {
            return Err(ControllerError::TopicAlreadyExists);
        }
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return Err(ControllerError::InvalidPartitions);
        }
        let brokers: Vec<BrokerId> = self.brokers.keys().copied().collect();
        if replication_factor == 0 || replication_factor > brokers.len() {
            return Err(ControllerError::InvalidReplicationFactor);
        }
        for partition in 0..partitions {
            let replicas: Vec<BrokerId> = (0..replication_factor)
                .map(|i| brokers[(partition as usize + i) % brokers.len()])
                .collect();
            let isr: Vec<BrokerId> = replicas.iter().copied().filter(|r| !self.is_fenced(*r)).collect();
            let state = LeaderAndIsr {
                leader: isr.first().copied(),
                leader_epoch: 0,
                isr: if isr.is_empty() { replicas.clone() } else { isr },
                replicas,
                partition_epoch: 0,
            };
            let tp = TopicPartition {
                topic: topic.to_string(),
                partition,
            };
            self.publish(tp, state, "created");
        }
        Ok(())
    }

    /// AlterPartition from a leader: the new ISR, if it comes from the current leader at the
    /// current epochs and adds no fenced broker.
    pub fn alter_partition(
        &mut self,
        from: BrokerId,
        partition: &TopicPartition,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<BrokerId>,
    ) -> Result<LeaderAndIsr, ControllerError> {
        let current = self
            .partitions
            .get(partition)
            .ok_or(ControllerError::UnknownTopicOrPartition)?
            .clone();
        if current.leader != Some(from) || leader_epoch != current.leader_epoch {
            return Err(ControllerError::FencedLeaderEpoch);
        }
        if partition_epoch != current.partition_epoch {
            return Err(ControllerError::InvalidUpdateVersion);
        }
        let added_fenced = isr
            .iter()
            .any(|r| !current.isr.contains(r) && (self.is_fenced(*r) || !current.replicas.contains(r)));
        if added_fenced || !isr.contains(&from) {
            return Err(ControllerError::IneligibleReplica);
        }
        let state = LeaderAndIsr {
            isr,
            partition_epoch: current.partition_epoch + 1,
            ..current
        };
        self.publish(
            partition.clone(),
            state.clone(),
            &format!("ISR change from leader {from}"),
        );
        Ok(state)
    }

    /// KRaft fences a silent broker: it leaves every ISR (unless it is the last member), and
    /// every partition it led elects a new leader from the remaining ISR.
    fn fence(&mut self, broker: BrokerId) {
        self.brokers.get_mut(&broker).expect("a known broker").fenced = true;
        let reason = format!("broker {broker} fenced");
        let touched: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, s)| s.isr.contains(&broker) || s.leader == Some(broker))
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in touched {
            let mut state = self.partitions[&tp].clone();
            if state.isr.len() > 1 {
                state.isr.retain(|r| *r != broker);
            }
            let mut why = reason.clone();
            if state.leader == Some(broker) {
                state.leader = None;
                why = self.elect(&mut state, &reason);
                state.leader_epoch += 1;
            }
            state.partition_epoch += 1;
            self.publish(tp, state, &why);
        }
    }

    /// Partitions without a leader get one if an ISR member (or, unclean, any replica) is
    /// alive now.
    fn elect_leaderless(&mut self, reason: &str) {
        let leaderless: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, s)| s.leader.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in leaderless {
            let mut state = self.partitions[&tp].clone();
            let why = self.elect(&mut state, reason);
            if state.leader.is_some() {
                state.leader_epoch += 1;
                state.partition_epoch += 1;
                self.publish(tp, state, &why);
            }
        }
    }

    /// Picks a leader: the first replica in assignment order that is in the ISR and alive;
    /// with unclean election, else the first live replica, which becomes the whole ISR.
    /// Returns the reason with `; unclean election` when it was one.
    fn elect(&self, state: &mut LeaderAndIsr, reason: &str) -> String {
        let alive = |r: &BrokerId| !self.is_fenced(*r);
        if let Some(leader) = state
            .replicas
            .iter()
            .copied()
            .find(|r| state.isr.contains(r) && alive(r))
        {
            state.leader = Some(leader);
            state.isr.retain(|r| alive(r) || *r == leader);
            return reason.to_string();
        }
        if self.config.unclean_leader_election {
            if let Some(leader) = state.replicas.iter().copied().find(|r| alive(r)) {
                state.leader = Some(leader);
                state.isr = vec![leader];
                return format!("{reason}; unclean election");
            }
        }
        reason.to_string()
    }

    fn publish(&mut self, partition: TopicPartition, state: LeaderAndIsr, reason: &str) {
        assert!(
            state.leader.is_none_or(|l| state.isr.contains(&l)),
            "a leader is in its ISR: {state:?}"
        );
        self.partitions.insert(partition.clone(), state.clone());
        self.published.push(Published {
            partition,
            state,
            reason: reason.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> TopicPartition {
        TopicPartition {
            topic: "orders".into(),
            partition: 0,
        }
    }

    fn cluster(unclean: bool) -> Controller {
        let config = ControllerConfig {
            unclean_leader_election: unclean,
            ..ControllerConfig::default()
        };
        let mut c = Controller::new(config, &[1, 2, 3]);
        for b in [1, 2, 3] {
            c.heartbeat(b, 0);
        }
        c.create_topic("orders", 3, 3).unwrap();
        c.take_published();
        c
    }

    #[test]
    fn replicas_are_assigned_round_robin_and_the_first_leads() {
        let c = cluster(false);
        let leaders: Vec<Option<BrokerId>> = c.partitions().values().map(|s| s.leader).collect();
        assert_eq!(leaders, [Some(1), Some(2), Some(3)]);
        assert_eq!(c.partitions()[&tp()].replicas, [1, 2, 3]);
        let mut c = c;
        assert_eq!(
            c.create_topic("orders", 1, 1),
            Err(ControllerError::TopicAlreadyExists)
        );
        assert_eq!(
            c.create_topic("x", 1, 4),
            Err(ControllerError::InvalidReplicationFactor)
        );
        assert_eq!(c.create_topic("x", 0, 1), Err(ControllerError::InvalidPartitions));
    }

    #[test]
    fn a_silent_leader_is_fenced_and_the_next_isr_member_leads_in_a_new_epoch() {
        let mut c = cluster(false);
        for now in [3_000, 6_000, 9_000] {
            c.heartbeat(2, now);
            c.heartbeat(3, now);
        }
        c.tick(9_000);
        assert!(
            c.take_published().is_empty(),
            "not silent for longer than the session"
        );
        c.tick(9_001);
        let state = &c.partitions()[&tp()];
        assert_eq!(state.leader, Some(2));
        assert_eq!(state.isr, [2, 3]);
        assert_eq!((state.leader_epoch, state.partition_epoch), (1, 1));
        assert!(c.take_published().iter().all(|p| p.reason == "broker 1 fenced"));
    }

    #[test]
    fn without_unclean_election_the_last_isr_member_keeps_the_partition_until_it_returns() {
        let mut c = cluster(false);
        // The ISR has shrunk to broker 1 alone (its followers fell behind).
        c.alter_partition(1, &tp(), 0, 0, vec![1]).unwrap();
        c.heartbeat(2, 9_500);
        c.heartbeat(3, 9_500);
        c.tick(9_001 + 500);
        let state = c.partitions()[&tp()].clone();
        assert_eq!(state.leader, None, "no ISR member alive: offline");
        assert_eq!(state.isr, [1], "the last member stays in the ISR");
        c.heartbeat(1, 20_000);
        assert_eq!(
            c.partitions()[&tp()].leader,
            Some(1),
            "it leads again when it returns"
        );
    }

    #[test]
    fn unclean_election_makes_an_out_of_sync_replica_the_leader_and_the_whole_isr() {
        let mut c = cluster(true);
        c.alter_partition(1, &tp(), 0, 0, vec![1]).unwrap();
        c.take_published();
        c.heartbeat(2, 9_500);
        c.heartbeat(3, 9_500);
        c.tick(9_501);
        let state = &c.partitions()[&tp()];
        assert_eq!(state.leader, Some(2));
        assert_eq!(state.isr, [2]);
        let reasons: Vec<String> = c.take_published().into_iter().map(|p| p.reason).collect();
        assert!(
            reasons.iter().any(|r| r.contains("unclean election")),
            "{reasons:?}"
        );
    }

    #[test]
    fn producer_id_blocks_never_overlap_and_go_only_to_live_brokers() {
        let mut c = cluster(false);
        assert_eq!(c.allocate_producer_ids(1), Some((0, PRODUCER_ID_BLOCK)));
        assert_eq!(
            c.allocate_producer_ids(2),
            Some((PRODUCER_ID_BLOCK, PRODUCER_ID_BLOCK))
        );
        assert_eq!(c.allocate_producer_ids(9), None);
    }

    #[test]
    fn alter_partition_is_refused_from_a_stale_epoch_or_for_a_fenced_broker() {
        let mut c = cluster(false);
        assert_eq!(
            c.alter_partition(2, &tp(), 0, 0, vec![2]),
            Err(ControllerError::FencedLeaderEpoch),
            "only the leader proposes"
        );
        let accepted = c.alter_partition(1, &tp(), 0, 0, vec![1, 2]).unwrap();
        assert_eq!(accepted.partition_epoch, 1);
        assert_eq!(
            c.alter_partition(1, &tp(), 0, 0, vec![1]),
            Err(ControllerError::InvalidUpdateVersion)
        );
        c.heartbeat(1, 9_500);
        c.heartbeat(2, 9_500);
        c.tick(9_501); // broker 3 fenced
        let epochs = c.partitions()[&tp()].partition_epoch;
        assert_eq!(
            c.alter_partition(1, &tp(), 0, epochs, vec![1, 2, 3]),
            Err(ControllerError::IneligibleReplica)
        );
    }
}
