//! One consumer group's membership, sans I/O: Kafka's classic group protocol as its
//! `GroupCoordinator` and `GroupMetadata` run it (reference §2.6; issue 12).
//!
//! States: Empty (no members), PreparingRebalance (members are asked to rejoin),
//! CompletingRebalance (the join is done, the leader's assignment is awaited), Stable, Dead
//! (unloaded). A rebalance completes when every known member has rejoined and no member id
//! handed out with MEMBER_ID_REQUIRED is still pending, or when the rebalance timeout (the
//! largest of the members') passes, and then members that did not rejoin are removed. A new
//! group waits `group.initial.rebalance.delay.ms` first, extended while new members keep
//! arriving, up to the rebalance timeout (Kafka's `InitialDelayedJoin`). Each completed join
//! starts a new generation; the first member to join leads, and the protocol is the one most
//! members prefer among those all support.
//!
//! JoinGroup and SyncGroup may wait: their answers come out of [`Group::take_answers`] keyed
//! by the request that waits. Time is an input; [`Group::tick`] expires sessions (a member
//! not heard from for its own `session.timeout.ms`) and rebalance deadlines.
//!
//! Departures from Kafka, on purpose: no static membership (`group.instance.id` is ignored;
//! every member is dynamic); a JoinGroup that replaces a member's earlier one still waiting
//! answers the earlier one REBALANCE_IN_PROGRESS instead of dropping it unanswered, so a
//! driver never holds a request forever; membership is not persisted (see
//! `group_coordinator`).

// A sans-I/O core: every function reads at once (ARCHITECTURE.md, "Short functions").
#![deny(clippy::too_many_lines)]

use super::broker::RequestId;
use std::collections::BTreeMap;

/// The errors of the group APIs, by Kafka's names and codes (`Errors.java`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupError {
    /// REQUEST_TIMED_OUT (7): an offset commit's record was not replicated in time.
    RequestTimedOut,
    /// OFFSET_METADATA_TOO_LARGE (12).
    OffsetMetadataTooLarge,
    /// COORDINATOR_LOAD_IN_PROGRESS (14).
    CoordinatorLoadInProgress,
    /// COORDINATOR_NOT_AVAILABLE (15).
    CoordinatorNotAvailable,
    /// NOT_COORDINATOR (16).
    NotCoordinator,
    /// ILLEGAL_GENERATION (22): the Java client's commit turns it into `CommitFailedException`.
    IllegalGeneration,
    /// INCONSISTENT_GROUP_PROTOCOL (23).
    InconsistentGroupProtocol,
    /// INVALID_GROUP_ID (24).
    InvalidGroupId,
    /// UNKNOWN_MEMBER_ID (25).
    UnknownMemberId,
    /// INVALID_SESSION_TIMEOUT (26).
    InvalidSessionTimeout,
    /// REBALANCE_IN_PROGRESS (27).
    RebalanceInProgress,
    /// INVALID_COMMIT_OFFSET_SIZE (28).
    InvalidCommitOffsetSize,
    /// MEMBER_ID_REQUIRED (79): a new member must join again with the id it is given.
    MemberIdRequired,
    /// Any other error of the log an offset commit was appended to, by its code.
    Other(i16),
}

impl GroupError {
    pub fn code(self) -> i16 {
        match self {
            GroupError::RequestTimedOut => 7,
            GroupError::OffsetMetadataTooLarge => 12,
            GroupError::CoordinatorLoadInProgress => 14,
            GroupError::CoordinatorNotAvailable => 15,
            GroupError::NotCoordinator => 16,
            GroupError::IllegalGeneration => 22,
            GroupError::InconsistentGroupProtocol => 23,
            GroupError::InvalidGroupId => 24,
            GroupError::UnknownMemberId => 25,
            GroupError::InvalidSessionTimeout => 26,
            GroupError::RebalanceInProgress => 27,
            GroupError::InvalidCommitOffsetSize => 28,
            GroupError::MemberIdRequired => 79,
            GroupError::Other(code) => code,
        }
    }
}

/// The broker's group settings, named as Kafka's configs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`.
    pub session_timeout_min_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub session_timeout_max_ms: i32,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: i32,
    /// `offsets.topic.num.partitions` (Kafka: 50).
    pub offsets_topic_partitions: i32,
    /// `offsets.topic.replication.factor` (Kafka: 3, capped here by the brokers there are).
    pub offsets_topic_replication_factor: i16,
    /// `offsets.commit.timeout.ms`: how long a commit waits for its record's replication.
    pub offsets_commit_timeout_ms: u64,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
}

impl Default for GroupConfig {
    fn default() -> GroupConfig {
        GroupConfig {
            session_timeout_min_ms: 6_000,
            session_timeout_max_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            offsets_topic_partitions: 50,
            offsets_topic_replication_factor: 3,
            offsets_commit_timeout_ms: 5_000,
            offset_metadata_max_bytes: 4_096,
        }
    }
}

/// Kafka's `GroupCoordinator.NewMemberJoinTimeoutMs`: how long a new member's first join may
/// wait before the member is dropped (it may have gone away).
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: u64 = 5 * 60 * 1000;
/// The most members one group holds here (Kafka's `group.max.size` is unbounded by default).
pub const MEMBERS_MAX: usize = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// Kafka's name for the state (DescribeGroups, logs).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A JoinGroup, as the group sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinRequest {
    /// Empty for a member the coordinator has not named yet.
    pub member_id: String,
    pub client_id: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata), in the member's order of preference.
    pub protocols: Vec<(String, Vec<u8>)>,
}

/// The answer to a JoinGroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinAnswer {
    pub error: Option<GroupError>,
    pub generation_id: i32,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// For the leader: every member and its metadata for the chosen protocol.
    pub members: Vec<(String, Vec<u8>)>,
}

impl JoinAnswer {
    pub fn error(member_id: &str, error: GroupError) -> JoinAnswer {
        JoinAnswer {
            error: Some(error),
            generation_id: -1,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// The answer to a SyncGroup: the member's assignment, or an error.
pub type SyncAnswer = Result<Vec<u8>, GroupError>;

/// An answer to a request that waited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupAnswer {
    Join(JoinAnswer),
    Sync(SyncAnswer),
}

#[derive(Clone, Debug)]
struct Member {
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocols: Vec<(String, Vec<u8>)>,
    assignment: Vec<u8>,
    awaiting_join: Option<RequestId>,
    awaiting_sync: Option<RequestId>,
    /// Dropped if not heard from by then (unless it waits in a join or a sync).
    deadline_ms: u64,
    /// Joined in this rebalance for the first time.
    is_new: bool,
}

/// One group's membership and generation.
#[derive(Debug)]
pub struct Group {
    state: GroupState,
    generation_id: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, and when they lapse.
    pending: BTreeMap<String, u64>,
    /// When the current join phase ends, in PreparingRebalance.
    join_deadline_ms: Option<u64>,
    /// A new group's initial delay: the rebalance time left to extend it by, and whether a
    /// member joined during the current delay.
    initial_delay: Option<(u64, bool)>,
    config: GroupConfig,
    answers: Vec<(RequestId, GroupAnswer)>,
}

impl Group {
    pub fn new(config: GroupConfig) -> Group {
        Group {
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            join_deadline_ms: None,
            initial_delay: None,
            config,
            answers: Vec::new(),
        }
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }

    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn member_ids(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }

    pub fn has_member(&self, member_id: &str) -> bool {
        self.members.contains_key(member_id)
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    /// Answers to requests that waited, in the order they were decided.
    pub fn take_answers(&mut self) -> Vec<(RequestId, GroupAnswer)> {
        std::mem::take(&mut self.answers)
    }

    /// JoinGroup (v4+: a member without an id gets one with MEMBER_ID_REQUIRED first).
    /// `None` when it waits for the rebalance to complete. `new_member_id` names a member
    /// the coordinator has not named yet.
    pub fn join(
        &mut self,
        request: RequestId,
        join: JoinRequest,
        new_member_id: String,
        now_ms: u64,
    ) -> Option<JoinAnswer> {
        let refuse = |error| Some(JoinAnswer::error(&join.member_id, error));
        if self.state == GroupState::Dead {
            return refuse(GroupError::CoordinatorNotAvailable);
        }
        let session = join.session_timeout_ms;
        if session < self.config.session_timeout_min_ms || session > self.config.session_timeout_max_ms {
            return refuse(GroupError::InvalidSessionTimeout);
        }
        if !self.supports(&join) {
            return refuse(GroupError::InconsistentGroupProtocol);
        }
        if join.member_id.is_empty() {
            if self.members.len() + self.pending.len() >= MEMBERS_MAX {
                return refuse(GroupError::Other(GROUP_MAX_SIZE_REACHED));
            }
            // KIP-394: the id is handed out and remembered; the member joins again with it.
            let deadline_ms = now_ms + session as u64;
            self.pending.insert(new_member_id.clone(), deadline_ms);
            return Some(JoinAnswer::error(&new_member_id, GroupError::MemberIdRequired));
        }
        if self.pending.remove(&join.member_id).is_some() {
            self.add_member(request, join, now_ms);
            return None;
        }
        if !self.members.contains_key(&join.member_id) {
            return refuse(GroupError::UnknownMemberId);
        }
        self.join_known(request, join, now_ms)
    }

    /// Kafka's `supportsProtocols`: an empty group takes any non-empty protocol list; a group
    /// with members needs the same protocol type and a protocol every member supports.
    fn supports(&self, join: &JoinRequest) -> bool {
        if join.protocol_type.is_empty() || join.protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(join.protocol_type.as_str()) {
            return false;
        }
        // The member's own earlier protocols do not count against its new ones.
        let others = self.members.keys().any(|id| *id != join.member_id);
        let candidates = self.candidates(Some(&join.member_id));
        !others || join.protocols.iter().any(|(name, _)| candidates.contains(name))
    }

    /// The protocols every member (but `except`) supports, in the order of the first's list.
    fn candidates(&self, except: Option<&str>) -> Vec<String> {
        let mut members = self.members.iter().filter(|(id, _)| Some(id.as_str()) != except);
        let Some((_, first)) = members.next() else {
            return Vec::new();
        };
        let mut names: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for (_, member) in members {
            names.retain(|n| member.protocols.iter().any(|(m, _)| m == n));
        }
        names
    }

    fn add_member(&mut self, request: RequestId, join: JoinRequest, now_ms: u64) {
        if self.members.is_empty() {
            self.protocol_type = Some(join.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(join.member_id.clone());
        }
        let member = Member {
            session_timeout_ms: join.session_timeout_ms,
            rebalance_timeout_ms: join.rebalance_timeout_ms,
            protocols: join.protocols,
            assignment: Vec::new(),
            awaiting_join: Some(request),
            awaiting_sync: None,
            deadline_ms: now_ms + NEW_MEMBER_JOIN_TIMEOUT_MS,
            is_new: true,
        };
        self.members.insert(join.member_id, member);
        if let Some((_, added)) = self.initial_delay.as_mut() {
            *added = true;
        }
        self.prepare_rebalance_if_settled(now_ms);
        self.try_complete_join(now_ms);
    }

    /// A known member joins again.
    fn join_known(&mut self, request: RequestId, join: JoinRequest, now_ms: u64) -> Option<JoinAnswer> {
        let member = self.members.get(&join.member_id).expect("checked by the caller");
        let same = member.protocols == join.protocols;
        let is_leader = self.leader.as_deref() == Some(join.member_id.as_str());
        match self.state {
            GroupState::CompletingRebalance | GroupState::Stable
                if same && !(self.state == GroupState::Stable && is_leader) =>
            {
                // Nothing changed: the current generation, as Kafka answers a rejoin that
                // needs no rebalance (a follower, or anyone before the leader's sync).
                Some(self.join_answer(&join.member_id))
            }
            GroupState::Empty | GroupState::Dead => {
                Some(JoinAnswer::error(&join.member_id, GroupError::UnknownMemberId))
            }
            _ => {
                self.update_member(request, join);
                self.prepare_rebalance_if_settled(now_ms);
                self.try_complete_join(now_ms);
                None
            }
        }
    }

    fn update_member(&mut self, request: RequestId, join: JoinRequest) {
        let member = self.members.get_mut(&join.member_id).expect("a member");
        member.protocols = join.protocols;
        member.session_timeout_ms = join.session_timeout_ms;
        member.rebalance_timeout_ms = join.rebalance_timeout_ms;
        if let Some(earlier) = member.awaiting_join.replace(request) {
            let answer = JoinAnswer::error(&join.member_id, GroupError::RebalanceInProgress);
            self.answers.push((earlier, GroupAnswer::Join(answer)));
        }
    }

    /// Kafka's `maybePrepareRebalance`: only from a settled state.
    fn prepare_rebalance_if_settled(&mut self, now_ms: u64) {
        if matches!(
            self.state,
            GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance
        ) {
            self.prepare_rebalance(now_ms);
        }
    }

    fn prepare_rebalance(&mut self, now_ms: u64) {
        if self.state == GroupState::CompletingRebalance {
            // The leader's assignment for the generation being replaced will not come.
            for member in self.members.values_mut() {
                member.assignment.clear();
                if let Some(waiting) = member.awaiting_sync.take() {
                    let answer = GroupAnswer::Sync(Err(GroupError::RebalanceInProgress));
                    self.answers.push((waiting, answer));
                }
            }
        }
        let rebalance_timeout_ms = self.rebalance_timeout_ms();
        if self.state == GroupState::Empty {
            let delay_ms = u64::try_from(self.config.initial_rebalance_delay_ms.max(0)).unwrap_or(0);
            let first_ms = delay_ms.min(rebalance_timeout_ms);
            self.join_deadline_ms = Some(now_ms + first_ms);
            self.initial_delay = Some((rebalance_timeout_ms - first_ms, false));
        } else {
            self.join_deadline_ms = Some(now_ms + rebalance_timeout_ms);
            self.initial_delay = None;
        }
        self.state = GroupState::PreparingRebalance;
    }

    /// The join phase's length: the largest rebalance timeout of the members.
    fn rebalance_timeout_ms(&self) -> u64 {
        self.members
            .values()
            .map(|m| u64::try_from(m.rebalance_timeout_ms.max(0)).unwrap_or(0))
            .max()
            .unwrap_or(0)
    }

    /// Completes the join phase if it can: every member rejoined and none pending, or the
    /// deadline passed. A new group's initial delay completes only at its deadline.
    fn try_complete_join(&mut self, now_ms: u64) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let due = self.join_deadline_ms.is_some_and(|d| now_ms >= d);
        if let Some((remaining_ms, added)) = self.initial_delay {
            if !due {
                return;
            }
            if added && remaining_ms > 0 {
                let delay_ms = u64::try_from(self.config.initial_rebalance_delay_ms.max(0)).unwrap_or(0);
                let next_ms = delay_ms.min(remaining_ms);
                self.join_deadline_ms = Some(now_ms + next_ms);
                self.initial_delay = Some((remaining_ms - next_ms, false));
                return;
            }
        }
        let all_joined = self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some());
        if due || (self.initial_delay.is_none() && all_joined) {
            self.complete_join(now_ms);
        }
    }

    /// Kafka's `onCompleteJoin`: members that did not rejoin are removed, a new generation
    /// starts, and every member is answered (the leader with everyone's metadata).
    fn complete_join(&mut self, now_ms: u64) {
        self.members.retain(|_, m| m.awaiting_join.is_some());
        self.join_deadline_ms = None;
        self.initial_delay = None;
        self.generation_id += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.state = GroupState::Empty;
            return;
        }
        if !self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.protocol = self.vote();
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let answer = self.join_answer(&id);
            let member = self.members.get_mut(&id).expect("listed");
            member.is_new = false;
            member.deadline_ms = now_ms + member.session_timeout_ms as u64;
            let request = member.awaiting_join.take().expect("kept above");
            self.answers.push((request, GroupAnswer::Join(answer)));
        }
    }

    /// Kafka's `selectProtocol`: each member votes for its first choice among the protocols
    /// all support; the most votes win (a tie goes to the earlier candidate).
    fn vote(&self) -> Option<String> {
        let candidates = self.candidates(None);
        let votes = |name: &String| {
            self.members
                .values()
                .filter(|m| {
                    m.protocols
                        .iter()
                        .find(|(n, _)| candidates.contains(n))
                        .map(|(n, _)| n)
                        == Some(name)
                })
                .count()
        };
        let mut best: Option<(usize, &String)> = None;
        for name in &candidates {
            let count = votes(name);
            if best.is_none_or(|(most, _)| count > most) {
                best = Some((count, name));
            }
        }
        best.map(|(_, name)| name.clone())
    }

    /// The current generation's JoinGroup answer for `member_id`.
    fn join_answer(&self, member_id: &str) -> JoinAnswer {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            let protocol = self.protocol.clone().unwrap_or_default();
            self.members
                .iter()
                .map(|(id, m)| {
                    let metadata = m
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == protocol)
                        .map(|(_, d)| d.clone());
                    (id.clone(), metadata.unwrap_or_default())
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinAnswer {
            error: None,
            generation_id: self.generation_id,
            protocol_name: self.protocol.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
        }
    }

    /// SyncGroup: `None` when it waits for the leader's assignment.
    pub fn sync(
        &mut self,
        request: RequestId,
        member_id: &str,
        generation_id: i32,
        assignments: Vec<(String, Vec<u8>)>,
        now_ms: u64,
    ) -> Option<SyncAnswer> {
        if self.state == GroupState::Dead {
            return Some(Err(GroupError::CoordinatorNotAvailable));
        }
        if !self.members.contains_key(member_id) {
            return Some(Err(GroupError::UnknownMemberId));
        }
        if generation_id != self.generation_id {
            return Some(Err(GroupError::IllegalGeneration));
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => Some(Err(GroupError::UnknownMemberId)),
            GroupState::PreparingRebalance => Some(Err(GroupError::RebalanceInProgress)),
            GroupState::Stable => {
                let member = self.members.get_mut(member_id).expect("checked");
                member.deadline_ms = now_ms + member.session_timeout_ms as u64;
                Some(Ok(member.assignment.clone()))
            }
            GroupState::CompletingRebalance => {
                let member = self.members.get_mut(member_id).expect("checked");
                member.deadline_ms = now_ms + member.session_timeout_ms as u64;
                if let Some(earlier) = member.awaiting_sync.replace(request) {
                    let answer = GroupAnswer::Sync(Err(GroupError::RebalanceInProgress));
                    self.answers.push((earlier, answer));
                }
                if self.leader.as_deref() == Some(member_id) {
                    self.assign(assignments);
                }
                None
            }
        }
    }

    /// The leader's assignment: every member gets its part (none for a member it left
    /// out) and the group is Stable. Kafka persists it first; we do not (see the module).
    fn assign(&mut self, assignments: Vec<(String, Vec<u8>)>) {
        let mut given: BTreeMap<String, Vec<u8>> = assignments.into_iter().collect();
        for (id, member) in self.members.iter_mut() {
            member.assignment = given.remove(id).unwrap_or_default();
            if let Some(waiting) = member.awaiting_sync.take() {
                self.answers
                    .push((waiting, GroupAnswer::Sync(Ok(member.assignment.clone()))));
            }
        }
        self.state = GroupState::Stable;
    }

    /// Heartbeat: REBALANCE_IN_PROGRESS tells a member to rejoin.
    pub fn heartbeat(&mut self, member_id: &str, generation_id: i32, now_ms: u64) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let Some(member) = self.members.get_mut(member_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        if generation_id != self.generation_id {
            return Err(GroupError::IllegalGeneration);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.deadline_ms = now_ms + member.session_timeout_ms as u64;
                Ok(())
            }
            GroupState::PreparingRebalance => {
                member.deadline_ms = now_ms + member.session_timeout_ms as u64;
                Err(GroupError::RebalanceInProgress)
            }
        }
    }

    /// LeaveGroup for one member: a pending id is forgotten, a member removed (its waiting
    /// join answered UNKNOWN_MEMBER_ID) and the group rebalances.
    pub fn leave(&mut self, member_id: &str, now_ms: u64) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if self.pending.remove(member_id).is_some() {
            self.try_complete_join(now_ms);
            return Ok(());
        }
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        self.remove_member(member_id, now_ms);
        Ok(())
    }

    /// Kafka's `removeMemberAndUpdateGroup`.
    fn remove_member(&mut self, member_id: &str, now_ms: u64) {
        let member = self.members.remove(member_id).expect("a member");
        if let Some(waiting) = member.awaiting_join {
            let answer = JoinAnswer::error("", GroupError::UnknownMemberId);
            self.answers.push((waiting, GroupAnswer::Join(answer)));
        }
        if let Some(waiting) = member.awaiting_sync {
            self.answers
                .push((waiting, GroupAnswer::Sync(Err(GroupError::UnknownMemberId))));
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms);
                // With no member left the join is complete at once (Kafka's purgatory
                // tries a delayed join when it is created).
                self.try_complete_join(now_ms);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now_ms),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// May `member_id` at `generation_id` commit offsets? Kafka's `handleCommitOffsets`: a
    /// group with no members takes simple commits (generation -1); otherwise the member must
    /// be known and in the current generation (a commit from a stale generation is what the
    /// Java client reports as `CommitFailedException`). A valid commit counts as a heartbeat.
    pub fn validate_commit(
        &mut self,
        member_id: &str,
        generation_id: i32,
        now_ms: u64,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if generation_id < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        let Some(member) = self.members.get_mut(member_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        if generation_id != self.generation_id {
            return Err(GroupError::IllegalGeneration);
        }
        match self.state {
            // Kafka takes commits while preparing a rebalance: the heartbeat answer tells
            // the member to rejoin.
            GroupState::Stable | GroupState::PreparingRebalance => {
                member.deadline_ms = now_ms + member.session_timeout_ms as u64;
                Ok(())
            }
            _ => Err(GroupError::RebalanceInProgress),
        }
    }

    /// Time passes: pending ids lapse, members not heard from within their session timeout
    /// are removed, and a join phase whose deadline passed completes.
    pub fn tick(&mut self, now_ms: u64) -> Vec<String> {
        let lapsed: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, d)| now_ms >= **d)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &lapsed {
            self.pending.remove(id);
        }
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                let waits = (m.awaiting_join.is_some() && !m.is_new) || m.awaiting_sync.is_some();
                !waits && now_ms >= m.deadline_ms
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.remove_member(id, now_ms);
        }
        self.try_complete_join(now_ms);
        expired
    }

    /// The group is unloaded (its offsets partition moved): every waiting request is
    /// answered NOT_COORDINATOR, so its member finds the new coordinator.
    pub fn unload(&mut self) {
        self.state = GroupState::Dead;
        for member in self.members.values_mut() {
            if let Some(waiting) = member.awaiting_join.take() {
                let answer = JoinAnswer::error("", GroupError::NotCoordinator);
                self.answers.push((waiting, GroupAnswer::Join(answer)));
            }
            if let Some(waiting) = member.awaiting_sync.take() {
                self.answers
                    .push((waiting, GroupAnswer::Sync(Err(GroupError::NotCoordinator))));
            }
        }
    }
}

/// GROUP_MAX_SIZE_REACHED (81).
const GROUP_MAX_SIZE_REACHED: i16 = 81;
