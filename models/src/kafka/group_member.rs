//! One consumer group member, sans I/O: the Java consumer's `AbstractCoordinator`,
//! `ConsumerCoordinator` and `Heartbeat` with time passed in (reference §2.6).
//!
//! Two callers share it, as the Java consumer's two threads do. The poll loop asks
//! [`GroupMember::join_step`] for FindCoordinator, JoinGroup and SyncGroup until the member
//! is stable, calls [`GroupMember::polled`] on every poll, and commits offsets. The heartbeat
//! task asks [`GroupMember::heartbeat_step`]: a heartbeat every `heartbeat.interval.ms`, or a
//! LeaveGroup once poll has not been called for `max.poll.interval.ms`. So a slow handler does
//! not stop heartbeats, while a paused process (SIGSTOP) stops both, and the coordinator
//! removes it after `session.timeout.ms`.
//!
//! Rebalancing is eager: before it joins again the member revokes everything it owns
//! ([`GroupMember::begin_join`]), after the caller had its chance to commit (what Java's
//! `onPartitionsRevoked` and the auto-commit in `onJoinPrepare` do). A member whose generation
//! was reset (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, or its own poll timeout) has lost its
//! partitions instead, and a commit it attempts fails as CommitFailedException.
//!
//! Requests are built for the version the connection negotiated: FindCoordinator v4 and
//! OffsetFetch v8 moved their fields into arrays, and kafka-protocol refuses to encode a field
//! at a version without it.
#![deny(clippy::too_many_lines)]

use super::assignor::{
    decode_assignment, decode_subscription, encode_assignment, encode_subscription, Assignor,
};
use kafka_protocol::messages::{
    find_coordinator_response, join_group_request::JoinGroupRequestProtocol,
    leave_group_request::MemberIdentity, offset_commit_request, offset_fetch_request,
    sync_group_request::SyncGroupRequestAssignment, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;

/// Kafka's error codes a group member acts on (`Errors.java`).
pub mod codes {
    pub const NONE: i16 = 0;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    pub const FENCED_INSTANCE_ID: i16 = 82;
}
use codes::*;

/// The longest a member id from a coordinator may be (Kafka's are a client id and a UUID).
pub const MEMBER_ID_BYTES_MAX: usize = 1024;

/// One member's group settings (Kafka's names; [`MemberConfig::new`] has Kafka's defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberConfig {
    /// `group.id`.
    pub group_id: String,
    /// The one topic the member subscribes to.
    pub topic: String,
    /// `session.timeout.ms` (45000 since Kafka 3.0).
    pub session_timeout_ms: u64,
    /// `heartbeat.interval.ms` (3000).
    pub heartbeat_interval_ms: u64,
    /// `max.poll.interval.ms` (300000); also the JoinGroup's rebalance timeout.
    pub max_poll_interval_ms: u64,
    /// `retry.backoff.ms` (100).
    pub retry_backoff_ms: u64,
    /// `partition.assignment.strategy`, in order of preference.
    pub assignors: Vec<Assignor>,
}

impl MemberConfig {
    pub fn new(group_id: &str, topic: &str) -> MemberConfig {
        MemberConfig {
            group_id: group_id.to_string(),
            topic: topic.to_string(),
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 3_000,
            max_poll_interval_ms: 300_000,
            retry_backoff_ms: 100,
            assignors: vec![Assignor::Range, Assignor::RoundRobin],
        }
    }

    /// Java's own checks (`Heartbeat`'s constructor: "Heartbeat must be set lower than the
    /// session timeout"), and ours: the timeouts fit the wire's i32.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_interval_ms >= self.session_timeout_ms {
            return Err("heartbeat.interval.ms must be lower than session.timeout.ms".into());
        }
        if self.heartbeat_interval_ms == 0 || self.assignors.is_empty() || self.group_id.is_empty() {
            return Err("a group needs a group.id, an assignor and a heartbeat interval".into());
        }
        let limit = i32::MAX as u64;
        if self.session_timeout_ms > limit || self.max_poll_interval_ms > limit {
            return Err(format!("timeouts are at most {limit} ms"));
        }
        Ok(())
    }
}

/// The versions the member's requests go out at: what the connections negotiated
/// ([`super::connection::Connection::version`]). Some fields moved between versions, and
/// kafka-protocol refuses to encode a field at a version without it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Versions {
    pub find_coordinator: i16,
    pub join_group: i16,
    pub sync_group: i16,
    pub leave_group: i16,
    pub offset_fetch: i16,
}

impl Default for Versions {
    /// The Java client's versions against a Kafka 3.x broker.
    fn default() -> Versions {
        Versions {
            find_coordinator: 4,
            join_group: 9,
            sync_group: 5,
            leave_group: 5,
            offset_fetch: 8,
        }
    }
}

/// Java's `MemberState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    Unjoined,
    /// JoinGroup sent or to send (PREPARING_REBALANCE).
    Joining,
    /// SyncGroup sent or to send (COMPLETING_REBALANCE).
    Syncing,
    Stable,
}

/// The group coordinator, as FindCoordinator named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coordinator {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

/// Java's `Generation`: the id, this member's id and the chosen protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    pub id: i32,
    pub member_id: String,
    pub protocol: Option<String>,
}

impl Generation {
    /// `Generation.NO_GENERATION`.
    pub fn none() -> Generation {
        Generation {
            id: -1,
            member_id: String::new(),
            protocol: None,
        }
    }
}

/// What the poll loop does next to become a stable member.
#[derive(Clone, Debug, PartialEq)]
pub enum JoinStep {
    /// Ask any broker (the least loaded one) for the group's coordinator.
    FindCoordinator(FindCoordinatorRequest),
    JoinGroup(JoinGroupRequest),
    SyncGroup(SyncGroupRequest),
    /// Nothing before this time (after a retriable error: `retry.backoff.ms`).
    BackoffUntil(u64),
    /// Stable, with this assignment.
    Stable,
}

/// What the heartbeat task does next.
#[derive(Clone, Debug, PartialEq)]
pub enum HeartbeatStep {
    /// Nothing until this time.
    WaitUntil(u64),
    /// The coordinator is unknown: find it (the heartbeat thread does too).
    FindCoordinator(FindCoordinatorRequest),
    Send(HeartbeatRequest),
    /// Poll was not called for `max.poll.interval.ms`: leave the group (Java sends it and does
    /// not wait for the answer). The generation is already reset.
    Leave(LeaveGroupRequest),
}

/// What a member gave up before joining again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    pub partitions: Vec<i32>,
    /// Lost, not revoked: the generation was reset first, so the partitions may already be
    /// another member's (Java's `onPartitionsLost`).
    pub lost: bool,
    pub generation: i32,
}

/// Why an offset commit failed, as the Java consumer reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitError {
    /// CommitFailedException: the member is not (or no longer) in the generation it commits
    /// for; the partitions may have moved. Not retried.
    Failed(String),
    /// RebalanceInProgressException: poll to complete the rebalance, then commit again.
    RebalanceInProgress,
    /// A retriable error (the coordinator moved or is loading, a timeout): commitSync
    /// retries until `default.api.timeout.ms`.
    Retriable(String),
}

/// A group member's state: the coordinator, the generation, the assignment, and the
/// heartbeat's timers (Java's `Heartbeat`: heartbeat, session and poll timers), all in
/// milliseconds of the caller's clock.
#[derive(Clone, Debug)]
pub struct GroupMember {
    config: MemberConfig,
    versions: Versions,
    state: MemberState,
    coordinator: Option<Coordinator>,
    generation: Generation,
    assigned: Vec<i32>,
    rejoin_needed: bool,
    /// Java's `needsJoinPrepare`: the revocation still has to run before this join.
    needs_join_prepare: bool,
    /// The SyncGroup to send after a JoinGroup answer.
    pending_sync: Option<SyncGroupRequest>,
    retry_at_ms: u64,
    last_poll_ms: u64,
    heartbeat_due_ms: u64,
    session_deadline_ms: u64,
    heartbeat_in_flight: bool,
    notes: Vec<(String, String)>,
}

impl GroupMember {
    pub fn new(config: MemberConfig, now_ms: u64) -> Result<GroupMember, String> {
        config.validate()?;
        Ok(GroupMember {
            config,
            versions: Versions::default(),
            state: MemberState::Unjoined,
            coordinator: None,
            generation: Generation::none(),
            assigned: Vec::new(),
            rejoin_needed: true,
            needs_join_prepare: true,
            pending_sync: None,
            retry_at_ms: 0,
            last_poll_ms: now_ms,
            heartbeat_due_ms: now_ms,
            session_deadline_ms: u64::MAX,
            heartbeat_in_flight: false,
            notes: Vec::new(),
        })
    }

    /// The versions negotiated with the brokers (the coordinator's, once it is known).
    pub fn set_versions(&mut self, versions: Versions) {
        self.versions = versions;
    }

    pub fn versions(&self) -> &Versions {
        &self.versions
    }

    /// Whether the revocation ([`Self::begin_join`]) is still to run before this join: the
    /// moment to commit what the strategy commits on revocation.
    pub fn join_prepare_pending(&self) -> bool {
        self.needs_join_prepare && self.needs_join()
    }

    pub fn config(&self) -> &MemberConfig {
        &self.config
    }

    pub fn state(&self) -> MemberState {
        self.state
    }

    pub fn coordinator(&self) -> Option<&Coordinator> {
        self.coordinator.as_ref()
    }

    pub fn generation(&self) -> &Generation {
        &self.generation
    }

    /// The partitions this member owns (empty while it joins).
    pub fn assigned(&self) -> &[i32] {
        &self.assigned
    }

    /// What the member noted since the last call, `(name, detail)`, for the history.
    pub fn take_notes(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.notes)
    }

    fn note(&mut self, name: &str, detail: String) {
        self.notes.push((name.to_string(), detail));
    }

    /// Whether the poll loop must (re)join before it fetches.
    pub fn needs_join(&self) -> bool {
        self.rejoin_needed || self.state != MemberState::Stable
    }

    /// Java's `pollTimer.reset`: the application called poll.
    pub fn polled(&mut self, now_ms: u64) {
        self.last_poll_ms = now_ms;
    }

    /// Java's `onJoinPrepare`, once per rejoin: gives up every owned partition. Call it after
    /// committing what the strategy commits on revocation, and before [`Self::join_step`].
    pub fn begin_join(&mut self) -> Option<Revocation> {
        if !self.needs_join_prepare {
            return None;
        }
        self.needs_join_prepare = false;
        let lost = self.generation.id < 0 || self.generation.member_id.is_empty();
        let revocation = Revocation {
            partitions: std::mem::take(&mut self.assigned),
            lost,
            generation: self.generation.id,
        };
        if !revocation.partitions.is_empty() {
            let name = if lost {
                "group.partitions_lost"
            } else {
                "group.partitions_revoked"
            };
            self.note(
                name,
                format!("generation {} {:?}", revocation.generation, revocation.partitions),
            );
        }
        Some(revocation)
    }

    fn reset_generation(&mut self, why: &str) {
        if self.generation != Generation::none() {
            self.note(
                "group.generation_reset",
                format!("generation {}: {why}", self.generation.id),
            );
        }
        self.generation = Generation::none();
        self.state = MemberState::Unjoined;
        self.request_rejoin();
    }

    fn request_rejoin(&mut self) {
        if !self.rejoin_needed {
            self.needs_join_prepare = true;
        }
        self.rejoin_needed = true;
    }

    /// Java's `markCoordinatorUnknown`: a disconnect, a timeout, NOT_COORDINATOR.
    pub fn coordinator_failed(&mut self, now_ms: u64, why: &str) {
        if let Some(c) = self.coordinator.take() {
            self.note("group.coordinator_lost", format!("broker {}: {why}", c.node_id));
        }
        self.heartbeat_in_flight = false;
        if matches!(self.state, MemberState::Joining | MemberState::Syncing) {
            // The join must start again with whatever coordinator is found next.
            self.pending_sync = None;
            self.state = MemberState::Unjoined;
        }
        self.retry_at_ms = now_ms + self.config.retry_backoff_ms;
    }

    fn find_coordinator(&self) -> FindCoordinatorRequest {
        let version = self.versions.find_coordinator;
        let key = StrBytes::from_string(self.config.group_id.clone());
        let request = FindCoordinatorRequest::default().with_key_type(0);
        if version >= 4 {
            request.with_coordinator_keys(vec![key])
        } else {
            request.with_key(key)
        }
    }

    /// The poll loop's next request towards a stable membership, at the versions given.
    pub fn join_step(&mut self, now_ms: u64) -> JoinStep {
        if now_ms < self.retry_at_ms {
            return JoinStep::BackoffUntil(self.retry_at_ms);
        }
        if self.coordinator.is_none() {
            return JoinStep::FindCoordinator(self.find_coordinator());
        }
        if let Some(sync) = self.pending_sync.take() {
            return JoinStep::SyncGroup(sync);
        }
        if !self.needs_join() {
            return JoinStep::Stable;
        }
        assert!(
            !self.needs_join_prepare,
            "begin_join runs before a member joins again"
        );
        self.state = MemberState::Joining;
        JoinStep::JoinGroup(self.join_request())
    }

    fn join_request(&self) -> JoinGroupRequest {
        let version = self.versions.join_group;
        let topics = vec![self.config.topic.clone()];
        let protocols = self
            .config
            .assignors
            .iter()
            .map(|a| {
                JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str(a.name()))
                    .with_metadata(encode_subscription(&topics, self.generation.id))
            })
            .collect();
        let mut request = JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.config.group_id.clone())))
            .with_session_timeout_ms(self.config.session_timeout_ms as i32)
            .with_member_id(StrBytes::from_string(self.generation.member_id.clone()))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(protocols);
        if version >= 1 {
            request = request.with_rebalance_timeout_ms(self.config.max_poll_interval_ms as i32);
        }
        request
    }

    /// A FindCoordinator answer (from the poll loop or the heartbeat task).
    pub fn on_find_coordinator(&mut self, answer: &FindCoordinatorResponse, now_ms: u64) {
        let found = if self.versions.find_coordinator >= 4 {
            answer.coordinators.first().cloned()
        } else {
            Some(
                find_coordinator_response::Coordinator::default()
                    .with_error_code(answer.error_code)
                    .with_node_id(answer.node_id)
                    .with_host(answer.host.clone())
                    .with_port(answer.port),
            )
        };
        match found {
            Some(c) if c.error_code == NONE && c.node_id.0 >= 0 => {
                self.note(
                    "group.coordinator_found",
                    format!("broker {} ({})", c.node_id.0, c.host),
                );
                self.coordinator = Some(Coordinator {
                    node_id: c.node_id.0,
                    host: c.host.to_string(),
                    port: c.port,
                });
                // Java's `heartbeat.resetSessionTimeout()` on a found coordinator.
                self.session_deadline_ms = now_ms + self.config.session_timeout_ms;
            }
            other => {
                let code = other.map_or(-1, |c| c.error_code);
                self.note("group.coordinator_not_found", format!("error {code}"));
                self.retry_at_ms = now_ms + self.config.retry_backoff_ms;
            }
        }
    }

    /// A request to the coordinator got no answer (a disconnect or the request timeout).
    pub fn join_failed(&mut self, now_ms: u64, why: &str) {
        self.coordinator_failed(now_ms, why);
    }

    /// A JoinGroup answer. The leader computes the assignment here from `partitions`, the
    /// topic's partition count as the leader's metadata says.
    pub fn on_join_group(&mut self, answer: &JoinGroupResponse, partitions: i32, now_ms: u64) {
        if answer.member_id.len() > MEMBER_ID_BYTES_MAX {
            self.note("group.join_failed", "a member id over the bound".into());
            self.retry_at_ms = now_ms + self.config.retry_backoff_ms;
            return;
        }
        match answer.error_code {
            NONE => self.joined(answer, partitions, now_ms),
            MEMBER_ID_REQUIRED => {
                // KIP-394: the coordinator names our member id; join again with it at once.
                self.generation.member_id = answer.member_id.to_string();
                self.note("group.member_id_required", self.generation.member_id.clone());
            }
            UNKNOWN_MEMBER_ID | ILLEGAL_GENERATION => {
                self.reset_generation(&error_name(answer.error_code));
                self.retry_at_ms = now_ms + self.config.retry_backoff_ms;
            }
            NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE => {
                self.coordinator_failed(now_ms, &error_name(answer.error_code));
            }
            code => {
                // COORDINATOR_LOAD_IN_PROGRESS and REBALANCE_IN_PROGRESS are retried; the
                // fatal ones (INCONSISTENT_GROUP_PROTOCOL, GROUP_MAX_SIZE_REACHED, ...) are
                // raised to the application, which polls again.
                self.note("group.join_failed", error_name(code));
                self.retry_at_ms = now_ms + self.config.retry_backoff_ms;
            }
        }
    }

    fn joined(&mut self, answer: &JoinGroupResponse, partitions: i32, now_ms: u64) {
        self.generation = Generation {
            id: answer.generation_id,
            member_id: answer.member_id.to_string(),
            protocol: answer.protocol_name.as_ref().map(|p| p.to_string()),
        };
        self.state = MemberState::Syncing;
        self.session_deadline_ms = now_ms + self.config.session_timeout_ms;
        self.heartbeat_due_ms = now_ms + self.config.heartbeat_interval_ms;
        let leader = answer.leader == answer.member_id;
        self.note(
            "group.joined",
            format!(
                "generation {} as {}{}",
                answer.generation_id,
                answer.member_id.as_str(),
                if leader { " (leader)" } else { "" }
            ),
        );
        let assignments = if leader {
            match self.leader_assignments(answer, partitions) {
                Ok(assignments) => assignments,
                Err(error) => {
                    self.note("group.assignment_failed", error);
                    self.request_rejoin();
                    self.state = MemberState::Unjoined;
                    self.retry_at_ms = now_ms + self.config.retry_backoff_ms;
                    return;
                }
            }
        } else {
            Vec::new()
        };
        let mut sync = SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.config.group_id.clone())))
            .with_generation_id(self.generation.id)
            .with_member_id(answer.member_id.clone())
            .with_assignments(assignments);
        if self.versions.sync_group >= 5 {
            sync = sync
                .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
                .with_protocol_name(answer.protocol_name.clone());
        }
        self.pending_sync = Some(sync);
    }

    /// The leader's `onLeaderElected`: every member's subscription, the chosen assignor.
    fn leader_assignments(
        &self,
        answer: &JoinGroupResponse,
        partitions: i32,
    ) -> Result<Vec<SyncGroupRequestAssignment>, String> {
        let protocol = answer
            .protocol_name
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let assignor =
            Assignor::from_name(&protocol).ok_or_else(|| format!("unknown assignor {protocol:?}"))?;
        let mut subscriptions = BTreeMap::new();
        for member in &answer.members {
            subscriptions.insert(
                member.member_id.to_string(),
                decode_subscription(&member.metadata)?,
            );
        }
        let mut counts = BTreeMap::new();
        counts.insert(self.config.topic.clone(), partitions);
        let assignment = assignor.assign(&counts, &subscriptions)?;
        Ok(assignment
            .iter()
            .map(|(member, mine)| {
                SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member.clone()))
                    .with_assignment(encode_assignment(mine))
            })
            .collect())
    }

    /// A SyncGroup answer: the assignment, if the member is now stable.
    pub fn on_sync_group(&mut self, answer: &SyncGroupResponse, now_ms: u64) -> Option<Vec<i32>> {
        match answer.error_code {
            NONE => match decode_assignment(&answer.assignment, &self.config.topic) {
                Ok(partitions) => {
                    self.state = MemberState::Stable;
                    self.rejoin_needed = false;
                    self.needs_join_prepare = true;
                    self.assigned = partitions.clone();
                    // Java's `resetSessionTimeout` and a heartbeat one interval later.
                    self.session_deadline_ms = now_ms + self.config.session_timeout_ms;
                    self.heartbeat_due_ms = now_ms + self.config.heartbeat_interval_ms;
                    self.note(
                        "group.assigned",
                        format!("generation {} {:?}", self.generation.id, partitions),
                    );
                    Some(partitions)
                }
                Err(error) => {
                    self.note("group.sync_failed", error);
                    self.back_to_join(now_ms);
                    None
                }
            },
            UNKNOWN_MEMBER_ID | ILLEGAL_GENERATION => {
                self.reset_generation(&error_name(answer.error_code));
                None
            }
            NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE => {
                self.coordinator_failed(now_ms, &error_name(answer.error_code));
                None
            }
            code => {
                // REBALANCE_IN_PROGRESS: another member joined meanwhile; join again.
                self.note("group.sync_failed", error_name(code));
                self.back_to_join(now_ms);
                None
            }
        }
    }

    fn back_to_join(&mut self, now_ms: u64) {
        self.state = MemberState::Unjoined;
        self.rejoin_needed = true;
        self.retry_at_ms = now_ms + self.config.retry_backoff_ms;
    }

    /// The heartbeat task's next step (Java's `HeartbeatThread.run` loop body).
    pub fn heartbeat_step(&mut self, now_ms: u64) -> HeartbeatStep {
        // Java enables its heartbeat thread once JoinGroup succeeds (COMPLETING_REBALANCE),
        // so a member waiting for its SyncGroup answer keeps its session.
        if !matches!(self.state, MemberState::Syncing | MemberState::Stable) {
            return HeartbeatStep::WaitUntil(now_ms + self.config.retry_backoff_ms);
        }
        if self.coordinator.is_none() {
            if now_ms < self.retry_at_ms {
                return HeartbeatStep::WaitUntil(self.retry_at_ms);
            }
            return HeartbeatStep::FindCoordinator(self.find_coordinator());
        }
        if now_ms >= self.session_deadline_ms {
            // No answer for a whole session: the coordinator may have moved.
            self.coordinator_failed(now_ms, "session timed out without a heartbeat answer");
            return HeartbeatStep::WaitUntil(self.retry_at_ms);
        }
        if now_ms.saturating_sub(self.last_poll_ms) > self.config.max_poll_interval_ms {
            return self.leave_for_poll_timeout(now_ms);
        }
        if self.heartbeat_in_flight || now_ms < self.heartbeat_due_ms {
            let poll_deadline = self.last_poll_ms + self.config.max_poll_interval_ms + 1;
            let next = self.heartbeat_due_ms.min(poll_deadline).max(now_ms + 1);
            return HeartbeatStep::WaitUntil(next);
        }
        self.heartbeat_in_flight = true;
        self.heartbeat_due_ms = now_ms + self.config.heartbeat_interval_ms;
        HeartbeatStep::Send(
            HeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(self.config.group_id.clone())))
                .with_generation_id(self.generation.id)
                .with_member_id(StrBytes::from_string(self.generation.member_id.clone())),
        )
    }

    /// Java's `maybeLeaveGroup("consumer poll timeout has expired")`.
    fn leave_for_poll_timeout(&mut self, now_ms: u64) -> HeartbeatStep {
        let waited = now_ms.saturating_sub(self.last_poll_ms);
        self.note(
            "group.left_poll_timeout",
            format!("generation {}: no poll for {waited} ms", self.generation.id),
        );
        let member_id = StrBytes::from_string(self.generation.member_id.clone());
        let mut leave = LeaveGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.config.group_id.clone())));
        // v3 (KIP-345) moved the member into a batch; v5 added the reason.
        let version = self.versions.leave_group;
        if version >= 3 {
            let reason =
                (version >= 5).then(|| StrBytes::from_static_str("consumer poll timeout has expired."));
            let member = MemberIdentity::default()
                .with_member_id(member_id)
                .with_reason(reason);
            leave = leave.with_members(vec![member]);
        } else {
            leave = leave.with_member_id(member_id);
        }
        self.reset_generation("left the group: poll timeout");
        HeartbeatStep::Leave(leave)
    }

    /// A heartbeat's answer (Java's `HeartbeatResponseHandler`).
    pub fn on_heartbeat(&mut self, answer: &HeartbeatResponse, now_ms: u64) {
        self.heartbeat_in_flight = false;
        match answer.error_code {
            NONE => self.session_deadline_ms = now_ms + self.config.session_timeout_ms,
            REBALANCE_IN_PROGRESS => {
                self.session_deadline_ms = now_ms + self.config.session_timeout_ms;
                if self.state == MemberState::Stable && !self.rejoin_needed {
                    self.note(
                        "group.rebalance_requested",
                        format!("generation {}", self.generation.id),
                    );
                    self.request_rejoin();
                }
            }
            ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID | FENCED_INSTANCE_ID => {
                self.reset_generation(&format!("heartbeat: {}", error_name(answer.error_code)));
            }
            NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE => {
                self.coordinator_failed(now_ms, &error_name(answer.error_code));
            }
            code => {
                self.note("group.heartbeat_failed", error_name(code));
                self.heartbeat_due_ms = now_ms + self.config.retry_backoff_ms;
            }
        }
    }

    /// A heartbeat got no answer: Java marks the coordinator unknown.
    pub fn heartbeat_failed(&mut self, now_ms: u64, why: &str) {
        self.coordinator_failed(now_ms, why);
    }

    /// An OffsetCommit of `offsets` (partition to the next offset to read) for the current
    /// generation, or CommitFailedException at once if the member is not in a stable one
    /// (Java's `generationIfStable` being null).
    pub fn commit_request(&self, offsets: &BTreeMap<i32, i64>) -> Result<OffsetCommitRequest, CommitError> {
        if self.generation.id < 0 || self.generation.member_id.is_empty() {
            return Err(CommitError::Failed("not part of an active group".into()));
        }
        if self.state != MemberState::Stable {
            return Err(CommitError::RebalanceInProgress);
        }
        if self.coordinator.is_none() {
            return Err(CommitError::Retriable("coordinator unknown".into()));
        }
        let partitions = offsets
            .iter()
            .map(|(p, offset)| {
                offset_commit_request::OffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(*offset)
            })
            .collect();
        let topic = offset_commit_request::OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(self.config.topic.clone())))
            .with_partitions(partitions);
        Ok(OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.config.group_id.clone())))
            .with_generation_id_or_member_epoch(self.generation.id)
            .with_member_id(StrBytes::from_string(self.generation.member_id.clone()))
            .with_topics(vec![topic]))
    }

    /// An OffsetCommit's answer (Java's `OffsetCommitResponseHandler`): the first error of
    /// any partition decides.
    pub fn on_commit(&mut self, answer: &OffsetCommitResponse, now_ms: u64) -> Result<(), CommitError> {
        let code = answer
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| p.error_code)
            .find(|code| *code != NONE)
            .unwrap_or(NONE);
        match code {
            NONE => Ok(()),
            UNKNOWN_MEMBER_ID | ILLEGAL_GENERATION | FENCED_INSTANCE_ID => {
                let name = error_name(code);
                self.reset_generation(&format!("commit: {name}"));
                Err(CommitError::Failed(name))
            }
            REBALANCE_IN_PROGRESS => {
                self.request_rejoin();
                Err(CommitError::RebalanceInProgress)
            }
            NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE => {
                self.coordinator_failed(now_ms, &error_name(code));
                Err(CommitError::Retriable(error_name(code)))
            }
            code => Err(CommitError::Retriable(error_name(code))),
        }
    }

    /// An OffsetFetch for `partitions`' committed offsets, at `version` (v8 moved the group
    /// into an array).
    pub fn offset_fetch_request(&self, partitions: &[i32]) -> OffsetFetchRequest {
        let version = self.versions.offset_fetch;
        let group = GroupId(StrBytes::from_string(self.config.group_id.clone()));
        let name = TopicName(StrBytes::from_string(self.config.topic.clone()));
        let request = OffsetFetchRequest::default().with_require_stable(version >= 7);
        if version >= 8 {
            let topics = offset_fetch_request::OffsetFetchRequestTopics::default()
                .with_name(name)
                .with_partition_indexes(partitions.to_vec());
            request.with_groups(vec![offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(group)
                .with_topics(Some(vec![topics]))])
        } else {
            let topic = offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(name)
                .with_partition_indexes(partitions.to_vec());
            request.with_group_id(group).with_topics(Some(vec![topic]))
        }
    }

    /// An OffsetFetch answer: each partition's committed offset, `None` where the group has
    /// none (-1: `auto.offset.reset` decides), or the error that stops the fetch.
    pub fn on_offset_fetch(
        &mut self,
        answer: &OffsetFetchResponse,
        now_ms: u64,
    ) -> Result<BTreeMap<i32, Option<i64>>, CommitError> {
        let mut found = BTreeMap::new();
        let mut code = answer.error_code;
        if self.versions.offset_fetch >= 8 {
            let Some(group) = answer.groups.first() else {
                return Err(CommitError::Retriable(
                    "an OffsetFetch answer without the group".into(),
                ));
            };
            code = group.error_code;
            for p in group
                .topics
                .iter()
                .filter(|t| t.name.0.as_str() == self.config.topic)
                .flat_map(|t| &t.partitions)
            {
                code = if code == NONE { p.error_code } else { code };
                found.insert(
                    p.partition_index,
                    (p.committed_offset >= 0).then_some(p.committed_offset),
                );
            }
        } else {
            for p in answer
                .topics
                .iter()
                .filter(|t| t.name.0.as_str() == self.config.topic)
                .flat_map(|t| &t.partitions)
            {
                code = if code == NONE { p.error_code } else { code };
                found.insert(
                    p.partition_index,
                    (p.committed_offset >= 0).then_some(p.committed_offset),
                );
            }
        }
        match code {
            NONE => Ok(found),
            NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE => {
                self.coordinator_failed(now_ms, &error_name(code));
                Err(CommitError::Retriable(error_name(code)))
            }
            code => Err(CommitError::Retriable(error_name(code))),
        }
    }
}

/// Kafka's name for a group error code, for notes.
pub fn error_name(code: i16) -> String {
    let name = match code {
        REQUEST_TIMED_OUT => "REQUEST_TIMED_OUT",
        COORDINATOR_LOAD_IN_PROGRESS => "COORDINATOR_LOAD_IN_PROGRESS",
        COORDINATOR_NOT_AVAILABLE => "COORDINATOR_NOT_AVAILABLE",
        NOT_COORDINATOR => "NOT_COORDINATOR",
        ILLEGAL_GENERATION => "ILLEGAL_GENERATION",
        INCONSISTENT_GROUP_PROTOCOL => "INCONSISTENT_GROUP_PROTOCOL",
        UNKNOWN_MEMBER_ID => "UNKNOWN_MEMBER_ID",
        INVALID_SESSION_TIMEOUT => "INVALID_SESSION_TIMEOUT",
        REBALANCE_IN_PROGRESS => "REBALANCE_IN_PROGRESS",
        MEMBER_ID_REQUIRED => "MEMBER_ID_REQUIRED",
        GROUP_MAX_SIZE_REACHED => "GROUP_MAX_SIZE_REACHED",
        FENCED_INSTANCE_ID => "FENCED_INSTANCE_ID",
        other => return super::client::error_name(other),
    };
    name.to_string()
}
