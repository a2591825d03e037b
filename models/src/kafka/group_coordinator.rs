//! A broker's group coordinator, sans I/O: the groups whose `__consumer_offsets` partition
//! this broker leads, and their committed offsets (Kafka's `GroupCoordinator` and
//! `GroupMetadataManager`, classic protocol; reference §2.6; issue 12).
//!
//! - The coordinator of group g is the leader of partition `abs(javaStringHashCode(g)) %
//!   offsets.topic.num.partitions` ([`partition_for`], Kafka's `Utils.abs`).
//! - A broker that becomes a partition's leader loads the committed offsets from the log (to
//!   its end, as Kafka's `doLoadGroupsAndOffsets` does) on its next tick; until then its
//!   groups are answered COORDINATOR_LOAD_IN_PROGRESS. A broker that stops leading unloads
//!   them: waiting requests get NOT_COORDINATOR and the members find the new coordinator.
//! - An OffsetCommit appends one batch to the group's partition with acks=all and is
//!   answered once it is committed, with Kafka's mapping of the log's errors (NOT_ENOUGH_
//!   REPLICAS is COORDINATOR_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER is NOT_COORDINATOR,
//!   REQUEST_TIMED_OUT stays). OffsetFetch answers from the cache of committed offsets.
//!
//! Simplified on purpose: group membership is not written to the log (Kafka writes a group
//! metadata record at each SyncGroup). After a failover the new coordinator has the offsets
//! but no members, so every member gets UNKNOWN_MEMBER_ID and joins again as a new member;
//! Kafka would keep the generation and let them heartbeat on. Offsets never expire
//! (`offsets.retention.minutes`), and the offsets topic is never compacted.

// A sans-I/O core: every function reads at once (ARCHITECTURE.md, "Short functions").
#![deny(clippy::too_many_lines)]

use super::batch::{Batch, Record};
use super::broker::RequestId;
use super::controller::TopicPartition;
use super::error::KafkaError;
use super::group::{Group, GroupAnswer, GroupConfig, GroupError, JoinAnswer, JoinRequest, SyncAnswer};
use super::offset_record::{self, CommittedOffset, OffsetKey, OffsetsRecord};
use super::partition::{Partition, ReplicaLog};
use std::collections::BTreeMap;

/// Kafka's internal topic of committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The most groups one coordinator holds here.
pub const GROUPS_MAX: usize = 10_000;
/// The most partitions one group commits offsets for here.
pub const GROUP_OFFSETS_MAX: usize = 100_000;
/// The longest group id here (Kafka bounds it only by the request size).
pub const GROUP_ID_BYTES_MAX: usize = 1_024;

/// Java's `String.hashCode`: `s[0]*31^(n-1) + ... + s[n-1]` over UTF-16 code units, in
/// wrapping 32-bit arithmetic.
pub fn java_string_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The `__consumer_offsets` partition of a group (Kafka's `partitionFor`; `Utils.abs` maps
/// `Integer.MIN_VALUE` to 0).
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    assert!(partitions > 0, "offsets.topic.num.partitions is positive");
    let hash = java_string_hash(group);
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions
}

/// One partition's answer to an OffsetCommit.
pub type PartitionCommit = (String, i32, Result<(), GroupError>);

/// Each member's answer to a LeaveGroup.
pub type MemberResults = Vec<(String, Result<(), GroupError>)>;

/// An OffsetCommit, as the coordinator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitRequest {
    pub group: String,
    /// Empty, with generation -1, for a simple commit.
    pub member_id: String,
    pub generation_id: i32,
    pub offsets: Vec<OffsetToCommit>,
    /// Partitions the handler already refused (unknown topics), answered with the rest.
    pub refused: Vec<PartitionCommit>,
}

/// An answer to a request that waited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoordinatorAnswer {
    Join(JoinAnswer),
    Sync(SyncAnswer),
    Commit(Vec<PartitionCommit>),
    /// A TxnOffsetCommit's answer ([`GroupCoordinator::txn_commit`]).
    TxnCommit(Vec<PartitionCommit>),
}

/// What an OffsetCommit comes to now.
#[derive(Debug)]
pub enum CommitStep {
    /// Answered at once (every partition refused).
    Done(Vec<PartitionCommit>),
    /// Append this batch to this partition with acks=all; its answer goes to
    /// [`GroupCoordinator::commit_appended`].
    Append { partition: TopicPartition, batch: Batch },
}

/// One offset a commit asks to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetToCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: CommittedOffset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Load {
    /// Leader since the last tick: loads at the next.
    Loading,
    Loaded,
}

struct PendingCommit {
    group: String,
    stored: Vec<OffsetToCommit>,
    refused: Vec<PartitionCommit>,
    /// A TxnOffsetCommit's producer id: its offsets wait for the transaction's marker.
    producer_id: Option<i64>,
}

/// Per group, per producer id, the offsets of transactions not yet ended (Kafka's
/// `GroupMetadata.pendingTransactionalOffsetCommits`).
type PendingTxnOffsets = BTreeMap<String, BTreeMap<i64, BTreeMap<(String, i32), CommittedOffset>>>;

pub struct GroupCoordinator {
    config: GroupConfig,
    groups: BTreeMap<String, Group>,
    offsets: BTreeMap<String, BTreeMap<(String, i32), CommittedOffset>>,
    partitions: BTreeMap<i32, Load>,
    pending_commits: BTreeMap<RequestId, PendingCommit>,
    txn_offsets: PendingTxnOffsets,
    /// Member ids handed out, for the next one's suffix.
    members_named: u64,
    answers: Vec<(RequestId, CoordinatorAnswer)>,
    notes: Vec<&'static str>,
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        assert!(
            config.offsets_topic_partitions > 0,
            "offsets.topic.num.partitions is positive"
        );
        GroupCoordinator {
            config,
            groups: BTreeMap::new(),
            offsets: BTreeMap::new(),
            partitions: BTreeMap::new(),
            pending_commits: BTreeMap::new(),
            txn_offsets: BTreeMap::new(),
            members_named: 0,
            answers: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    pub fn group(&self, group: &str) -> Option<&Group> {
        self.groups.get(group)
    }

    /// The offsets partition of `group`.
    pub fn partition_of(&self, group: &str) -> TopicPartition {
        TopicPartition {
            topic: OFFSETS_TOPIC.to_string(),
            partition: partition_for(group, self.config.offsets_topic_partitions),
        }
    }

    /// Kafka's `validateGroupStatus`: is this broker the loaded coordinator of `group`?
    fn status(&self, group: &str) -> Result<(), GroupError> {
        if group.is_empty() || group.len() > GROUP_ID_BYTES_MAX {
            return Err(GroupError::InvalidGroupId);
        }
        match self.partitions.get(&self.partition_of(group).partition) {
            Some(Load::Loaded) => Ok(()),
            Some(Load::Loading) => Err(GroupError::CoordinatorLoadInProgress),
            None => Err(GroupError::NotCoordinator),
        }
    }

    /// The answer to `request` if it is already decided (a join that completed the
    /// rebalance it waited for answers itself too).
    pub fn take_answer(&mut self, request: RequestId) -> Option<CoordinatorAnswer> {
        self.collect_group_answers();
        let at = self.answers.iter().position(|(r, _)| *r == request)?;
        Some(self.answers.remove(at).1)
    }

    /// Answers and notes the drivers take.
    pub fn take_answers(&mut self) -> Vec<(RequestId, CoordinatorAnswer)> {
        self.collect_group_answers();
        std::mem::take(&mut self.answers)
    }

    pub fn take_notes(&mut self) -> Vec<&'static str> {
        std::mem::take(&mut self.notes)
    }

    fn collect_group_answers(&mut self) {
        for group in self.groups.values_mut() {
            for (request, answer) in group.take_answers() {
                let answer = match answer {
                    GroupAnswer::Join(join) => CoordinatorAnswer::Join(join),
                    GroupAnswer::Sync(sync) => CoordinatorAnswer::Sync(sync),
                };
                self.answers.push((request, answer));
            }
        }
    }

    /// A new member's id: Kafka's is the client id and a random UUID; ours is the client id,
    /// the time and a count, unique across this broker's restarts as its clock moves on.
    fn new_member_id(&mut self, client_id: &str, now_ms: u64) -> String {
        self.members_named += 1;
        format!("{client_id}-{now_ms:x}-{:x}", self.members_named)
    }

    /// JoinGroup: `None` when it waits (the answer comes out of [`Self::take_answers`]).
    pub fn join(
        &mut self,
        request: RequestId,
        group: &str,
        join: JoinRequest,
        now_ms: u64,
    ) -> Option<JoinAnswer> {
        if let Err(error) = self.status(group) {
            return Some(JoinAnswer::error(&join.member_id, error));
        }
        if !self.groups.contains_key(group) {
            // Kafka: a member id for a group that does not exist is unknown.
            if !join.member_id.is_empty() {
                return Some(JoinAnswer::error(&join.member_id, GroupError::UnknownMemberId));
            }
            if self.groups.len() >= GROUPS_MAX {
                return Some(JoinAnswer::error("", GroupError::CoordinatorNotAvailable));
            }
            self.groups
                .insert(group.to_string(), Group::new(self.config.clone()));
        }
        let member_id = self.new_member_id(&join.client_id, now_ms);
        let state = self.groups.get_mut(group).expect("present");
        let answer = state.join(request, join, member_id, now_ms);
        self.forget_if_unused(group);
        answer
    }

    /// SyncGroup: `None` when it waits for the leader's assignment.
    pub fn sync(
        &mut self,
        request: RequestId,
        group: &str,
        member_id: &str,
        generation_id: i32,
        assignments: Vec<(String, Vec<u8>)>,
        now_ms: u64,
    ) -> Option<SyncAnswer> {
        if let Err(error) = self.status(group) {
            return Some(Err(error));
        }
        match self.groups.get_mut(group) {
            None => Some(Err(GroupError::UnknownMemberId)),
            Some(state) => state.sync(request, member_id, generation_id, assignments, now_ms),
        }
    }

    pub fn heartbeat(
        &mut self,
        group: &str,
        member_id: &str,
        generation_id: i32,
        now_ms: u64,
    ) -> Result<(), GroupError> {
        self.status(group)?;
        match self.groups.get_mut(group) {
            None => Err(GroupError::UnknownMemberId),
            Some(state) => state.heartbeat(member_id, generation_id, now_ms),
        }
    }

    /// LeaveGroup: the group's error, or each member's.
    pub fn leave(
        &mut self,
        group: &str,
        members: &[String],
        now_ms: u64,
    ) -> Result<MemberResults, GroupError> {
        self.status(group)?;
        let Some(state) = self.groups.get_mut(group) else {
            return Ok(members
                .iter()
                .map(|m| (m.clone(), Err(GroupError::UnknownMemberId)))
                .collect());
        };
        let answers = members
            .iter()
            .map(|m| (m.clone(), state.leave(m, now_ms)))
            .collect();
        self.forget_if_unused(group);
        Ok(answers)
    }

    /// An Empty group with no offsets and no pending ids is forgotten (Kafka removes it
    /// when its last offsets expire; it has no state worth keeping).
    fn forget_if_unused(&mut self, group: &str) {
        let unused = self
            .groups
            .get(group)
            .is_some_and(|g| g.state() == super::group::GroupState::Empty && g.is_empty());
        if unused && !self.offsets.contains_key(group) {
            self.groups.remove(group);
        }
    }

    /// OffsetCommit: checks the member and generation, then appends the offsets as records.
    pub fn commit(&mut self, request: RequestId, commit: CommitRequest, now_ms: u64) -> CommitStep {
        let CommitRequest {
            group,
            member_id,
            generation_id,
            offsets,
            mut refused,
        } = commit;
        let group = group.as_str();
        let refuse_all = |offsets: &[OffsetToCommit], mut refused: Vec<PartitionCommit>, error| {
            refused.extend(offsets.iter().map(|o| (o.topic.clone(), o.partition, Err(error))));
            CommitStep::Done(refused)
        };
        if offsets.is_empty() {
            return CommitStep::Done(refused);
        }
        if let Err(error) = self.status(group) {
            return refuse_all(&offsets, refused, error);
        }
        if let Err(error) = self.validate_commit(group, &member_id, generation_id, now_ms) {
            return refuse_all(&offsets, refused, error);
        }
        let (stored, too_large): (Vec<_>, Vec<_>) = offsets
            .into_iter()
            .partition(|o| o.offset.metadata.len() <= self.config.offset_metadata_max_bytes);
        refused.extend(
            too_large
                .into_iter()
                .map(|o| (o.topic, o.partition, Err(GroupError::OffsetMetadataTooLarge))),
        );
        if stored.is_empty() {
            self.forget_if_unused(group);
            return CommitStep::Done(refused);
        }
        let records = stored.iter().map(|o| commit_record(group, o)).collect();
        let pending = PendingCommit {
            group: group.to_string(),
            stored,
            refused,
            producer_id: None,
        };
        self.pending_commits.insert(request, pending);
        CommitStep::Append {
            partition: self.partition_of(group),
            batch: Batch::plain(records),
        }
    }

    fn validate_commit(
        &mut self,
        group: &str,
        member_id: &str,
        generation_id: i32,
        now_ms: u64,
    ) -> Result<(), GroupError> {
        if !self.groups.contains_key(group) {
            if generation_id >= 0 {
                // Kafka: "the group is not relying on Kafka for group management", or a
                // commit from an older generation: either way, refused.
                return Err(GroupError::IllegalGeneration);
            }
            if self.groups.len() >= GROUPS_MAX {
                return Err(GroupError::CoordinatorNotAvailable);
            }
            self.groups
                .insert(group.to_string(), Group::new(self.config.clone()));
        }
        let state = self.groups.get_mut(group).expect("present");
        state.validate_commit(member_id, generation_id, now_ms)
    }

    pub fn is_pending_commit(&self, request: RequestId) -> bool {
        self.pending_commits.contains_key(&request)
    }

    /// The commit's batch was appended and committed, or refused: its answer, and on
    /// success the offsets are visible to OffsetFetch.
    pub fn commit_appended(
        &mut self,
        request: RequestId,
        result: Result<i64, KafkaError>,
    ) -> Vec<PartitionCommit> {
        let Some(pending) = self.pending_commits.remove(&request) else {
            return Vec::new();
        };
        let outcome = result.map(|_| ()).map_err(commit_error);
        let loaded = self.status(&pending.group).is_ok();
        if let Some(producer_id) = pending.producer_id {
            return self.txn_commit_appended(pending, producer_id, outcome, loaded);
        }
        let mut answers = pending.refused;
        for stored in pending.stored {
            if outcome.is_ok() && loaded {
                let cache = self.offsets.entry(pending.group.clone()).or_default();
                if cache.len() < GROUP_OFFSETS_MAX
                    || cache.contains_key(&(stored.topic.clone(), stored.partition))
                {
                    cache.insert((stored.topic.clone(), stored.partition), stored.offset);
                }
            }
            answers.push((stored.topic, stored.partition, outcome));
        }
        answers
    }

    /// OffsetFetch for one group: the committed offsets of `partitions` (-1 for none), or
    /// all of the group's when `None`.
    pub fn fetch_offsets(
        &self,
        group: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<(String, i32, Option<CommittedOffset>)>, GroupError> {
        self.status(group)?;
        let cache = self.offsets.get(group);
        Ok(match partitions {
            None => cache
                .into_iter()
                .flatten()
                .map(|((t, p), o)| (t.clone(), *p, Some(o.clone())))
                .collect(),
            Some(wanted) => wanted
                .into_iter()
                .map(|(t, p)| {
                    let found = cache.and_then(|c| c.get(&(t.clone(), p))).cloned();
                    (t, p, found)
                })
                .collect(),
        })
    }

    /// Time passes: offsets partitions this broker now leads load (those it led since the
    /// last tick) or unload, and every group's sessions and deadlines run.
    pub fn tick<L: ReplicaLog>(&mut self, replicas: &BTreeMap<TopicPartition, Partition<L>>, now_ms: u64) {
        let loading: Vec<i32> = self
            .partitions
            .iter()
            .filter(|(_, l)| **l == Load::Loading)
            .map(|(p, _)| *p)
            .collect();
        for partition in loading {
            match replicas
                .get(&offsets_partition(partition))
                .filter(|r| r.is_leader())
            {
                Some(replica) => self.load(partition, replica),
                None => self.unload(partition),
            }
        }
        self.follow_leadership(replicas);
        let names: Vec<String> = self.groups.keys().cloned().collect();
        for name in names {
            let group = self.groups.get_mut(&name).expect("listed");
            if !group.tick(now_ms).is_empty() {
                self.notes.push("kafka.group_member_session_expired");
            }
            self.forget_if_unused(&name);
        }
        self.collect_group_answers();
    }

    /// The broker applied new partition states: offsets partitions it now leads start
    /// loading (at the next tick), those it no longer leads unload at once.
    pub fn follow_leadership<L: ReplicaLog>(&mut self, replicas: &BTreeMap<TopicPartition, Partition<L>>) {
        let leading: Vec<(i32, &Partition<L>)> = replicas
            .iter()
            .filter(|(tp, r)| tp.topic == OFFSETS_TOPIC && r.is_leader())
            .map(|(tp, r)| (tp.partition, r))
            .collect();
        let lost: Vec<i32> = self
            .partitions
            .keys()
            .copied()
            .filter(|p| !leading.iter().any(|(l, _)| l == p))
            .collect();
        for partition in lost {
            self.unload(partition);
        }
        for (partition, _) in leading {
            self.partitions.entry(partition).or_insert(Load::Loading);
        }
    }

    /// Reads the partition's log to its end into the cache.
    fn load<L: ReplicaLog>(&mut self, partition: i32, replica: &Partition<L>) {
        let log = replica.log();
        let batches = log.read(0, log.log_end_offset(), usize::MAX).unwrap_or_default();
        for record in batches.iter().flat_map(|b| b.records.iter()) {
            let Some(key) = record.key.as_deref() else {
                continue;
            };
            match offset_record::decode(key, record.value.as_deref()) {
                Ok(OffsetsRecord::Commit(key, value)) => {
                    let cache = self.offsets.entry(key.group).or_default();
                    if cache.len() < GROUP_OFFSETS_MAX {
                        cache.insert((key.topic, key.partition), value);
                    }
                }
                Ok(OffsetsRecord::Tombstone(key)) => {
                    if let Some(cache) = self.offsets.get_mut(&key.group) {
                        cache.remove(&(key.topic, key.partition));
                    }
                }
                Ok(OffsetsRecord::GroupMetadata) => {}
                Err(_) => self.notes.push("kafka.offsets_record_unreadable"),
            }
        }
        self.partitions.insert(partition, Load::Loaded);
        self.notes.push("kafka.offsets_partition_loaded");
    }

    /// Leadership moved away: the partition's groups and offsets are dropped.
    fn unload(&mut self, partition: i32) {
        self.partitions.remove(&partition);
        let n = self.config.offsets_topic_partitions;
        let names: Vec<String> = self
            .groups
            .keys()
            .chain(self.offsets.keys())
            .filter(|g| partition_for(g, n) == partition)
            .cloned()
            .collect();
        for name in names {
            if let Some(group) = self.groups.get_mut(&name) {
                group.unload();
            }
            self.collect_group_answers();
            self.groups.remove(&name);
            self.offsets.remove(&name);
            self.txn_offsets.remove(&name);
        }
        self.notes.push("kafka.offsets_partition_unloaded");
    }
}

#[path = "group_txn.rs"]
mod txn;

fn offsets_partition(partition: i32) -> TopicPartition {
    TopicPartition {
        topic: OFFSETS_TOPIC.to_string(),
        partition,
    }
}

fn commit_record(group: &str, offset: &OffsetToCommit) -> Record {
    let key = OffsetKey {
        group: group.to_string(),
        topic: offset.topic.clone(),
        partition: offset.partition,
    };
    Record {
        key: Some(offset_record::encode_key(&key)),
        value: Some(offset_record::encode_value(&offset.offset)),
    }
}

/// Kafka's `GroupMetadataManager.storeOffsets` mapping of an append's error to a commit's.
fn commit_error(error: KafkaError) -> GroupError {
    match error {
        KafkaError::NotEnoughReplicas | KafkaError::NotEnoughReplicasAfterAppend => {
            GroupError::CoordinatorNotAvailable
        }
        KafkaError::NotLeaderOrFollower | KafkaError::KafkaStorageError => GroupError::NotCoordinator,
        KafkaError::MessageTooLarge => GroupError::InvalidCommitOffsetSize,
        KafkaError::RequestTimedOut => GroupError::RequestTimedOut,
        other => GroupError::Other(other.code()),
    }
}
