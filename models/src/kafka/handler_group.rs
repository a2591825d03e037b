//! The classic group APIs, answered by a broker's [`GroupCoordinator`]: where their wire
//! messages meet the core (issue 12), for the simulated broker and the real server alike.
//!
//! FindCoordinator (key type 0) names the leader of the group's `__consumer_offsets`
//! partition; while that topic does not exist it answers COORDINATOR_NOT_AVAILABLE and asks
//! the controller to create it, as Kafka's broker does on the first lookup. JoinGroup,
//! SyncGroup and OffsetCommit may wait ([`Handled::WaitingGroup`]); the driver answers them
//! with [`group_response`] when the broker's [`BrokerOutput::GroupAnswered`] comes.
//!
//! The handler sees a request's body, not its header: a new member's id starts with the
//! group's protocol type where Kafka's starts with the client id, and an answer is built so
//! it encodes at every version its body could come from (`wire::SUPPORTED_APIS`).
//!
//! [`BrokerOutput::GroupAnswered`]: super::broker::BrokerOutput::GroupAnswered

// A sans-I/O core: every function reads at once (ARCHITECTURE.md, "Short functions").
#![deny(clippy::too_many_lines)]

use super::broker::{Broker, RequestId};
use super::controller::TopicPartition;
use super::group::{GroupError, JoinAnswer, JoinRequest, SyncAnswer};
use super::group_coordinator::{
    CommitRequest, CommitStep, CoordinatorAnswer, GroupCoordinator, OffsetToCommit, PartitionCommit,
    OFFSETS_TOPIC,
};
use super::handler::{Cluster, Handled};
use super::offset_record::CommittedOffset;
use super::partition::{Acks, ReplicaLog};
use super::wire::{Request, Response};
use bytes::Bytes;
use kafka_protocol::messages::{
    find_coordinator_response, join_group_response, leave_group_response, offset_commit_response,
    offset_fetch_response, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

/// UNKNOWN_TOPIC_OR_PARTITION.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// FindCoordinator's key type for a consumer group.
pub const KEY_TYPE_GROUP: i8 = 0;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn code(result: Result<(), GroupError>) -> i16 {
    result.err().map_or(0, GroupError::code)
}

/// Answers a group API request.
pub fn handle_group<L: ReplicaLog>(
    broker: &mut Broker<L>,
    request: Request,
    id: RequestId,
    now_ms: u64,
) -> Handled {
    let groups = broker.groups_mut();
    match request {
        Request::JoinGroup(join) => match join_group(groups, id, join, now_ms) {
            Some(answer) => Handled::Respond(group_response(CoordinatorAnswer::Join(answer))),
            None => wait(groups, id),
        },
        Request::SyncGroup(sync) => {
            let assignments = sync
                .assignments
                .iter()
                .map(|a| (a.member_id.to_string(), a.assignment.to_vec()))
                .collect();
            let group = sync.group_id.0.as_str();
            match groups.sync(
                id,
                group,
                &sync.member_id,
                sync.generation_id,
                assignments,
                now_ms,
            ) {
                Some(answer) => Handled::Respond(group_response(CoordinatorAnswer::Sync(answer))),
                None => wait(groups, id),
            }
        }
        Request::Heartbeat(beat) => {
            let result = groups.heartbeat(&beat.group_id.0, &beat.member_id, beat.generation_id, now_ms);
            Handled::Respond(Response::Heartbeat(
                HeartbeatResponse::default().with_error_code(code(result)),
            ))
        }
        Request::LeaveGroup(leave) => {
            Handled::Respond(Response::LeaveGroup(leave_group(groups, &leave, now_ms)))
        }
        Request::OffsetCommit(commit) => offset_commit(broker, commit, id, now_ms),
        Request::OffsetFetch(fetch) => Handled::Respond(Response::OffsetFetch(offset_fetch(groups, &fetch))),
        other => panic!("{:?} is not a group API", other.api_key()),
    }
}

/// A request that waits, unless its answer was decided while it was handled.
fn wait(groups: &mut GroupCoordinator, id: RequestId) -> Handled {
    match groups.take_answer(id) {
        Some(answer) => Handled::Respond(group_response(answer)),
        None => Handled::WaitingGroup(id),
    }
}

fn join_group(
    groups: &mut GroupCoordinator,
    id: RequestId,
    join: JoinGroupRequest,
    now_ms: u64,
) -> Option<JoinAnswer> {
    let request = JoinRequest {
        member_id: join.member_id.to_string(),
        client_id: join.protocol_type.to_string(),
        session_timeout_ms: join.session_timeout_ms,
        rebalance_timeout_ms: join.rebalance_timeout_ms,
        protocol_type: join.protocol_type.to_string(),
        protocols: join
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.to_vec()))
            .collect(),
    };
    groups.join(id, &join.group_id.0, request, now_ms)
}

/// The wire answer to a group request, now or after it waited.
pub fn group_response(answer: CoordinatorAnswer) -> Response {
    match answer {
        CoordinatorAnswer::Join(join) => Response::JoinGroup(join_response(join)),
        CoordinatorAnswer::Sync(sync) => Response::SyncGroup(sync_response(sync)),
        CoordinatorAnswer::Commit(partitions) => Response::OffsetCommit(commit_response(partitions)),
        CoordinatorAnswer::TxnCommit(partitions) => {
            super::handler_txn_offsets::txn_commit_response(partitions)
        }
    }
}

/// The protocol type and name stay null: v5+ (SyncGroup) and v7+ (JoinGroup) could carry
/// them, but not the older versions whose bodies look the same, and the clients accept null.
fn join_response(join: JoinAnswer) -> JoinGroupResponse {
    let members = join
        .members
        .into_iter()
        .map(|(id, metadata)| {
            join_group_response::JoinGroupResponseMember::default()
                .with_member_id(text(&id))
                .with_metadata(Bytes::from(metadata))
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(join.error.map_or(0, GroupError::code))
        .with_generation_id(join.generation_id)
        .with_protocol_name(Some(text(&join.protocol_name.unwrap_or_default())))
        .with_leader(text(&join.leader))
        .with_member_id(text(&join.member_id))
        .with_members(members)
}

fn sync_response(sync: SyncAnswer) -> SyncGroupResponse {
    match sync {
        Ok(assignment) => SyncGroupResponse::default().with_assignment(Bytes::from(assignment)),
        Err(error) => SyncGroupResponse::default().with_error_code(error.code()),
    }
}

/// LeaveGroup: v3+ names members (a batch), v0-2 one member at the top level.
fn leave_group(groups: &mut GroupCoordinator, leave: &LeaveGroupRequest, now_ms: u64) -> LeaveGroupResponse {
    let batched = !leave.members.is_empty();
    let members: Vec<String> = if batched {
        leave.members.iter().map(|m| m.member_id.to_string()).collect()
    } else {
        vec![leave.member_id.to_string()]
    };
    let answers = match groups.leave(&leave.group_id.0, &members, now_ms) {
        Ok(answers) => answers,
        Err(error) => return LeaveGroupResponse::default().with_error_code(error.code()),
    };
    if !batched {
        let error = answers.first().map_or(0, |(_, r)| code(*r));
        return LeaveGroupResponse::default().with_error_code(error);
    }
    let members = answers
        .into_iter()
        .map(|(id, result)| {
            leave_group_response::MemberResponse::default()
                .with_member_id(text(&id))
                .with_error_code(code(result))
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}

fn offset_commit<L: ReplicaLog>(
    broker: &mut Broker<L>,
    commit: OffsetCommitRequest,
    id: RequestId,
    now_ms: u64,
) -> Handled {
    let mut offsets = Vec::new();
    let mut unknown: Vec<PartitionCommit> = Vec::new();
    for topic in &commit.topics {
        for p in &topic.partitions {
            let tp = TopicPartition {
                topic: topic.name.0.to_string(),
                partition: p.partition_index,
            };
            // Kafka's KafkaApis: a partition the metadata does not know is refused first.
            if tp.topic == OFFSETS_TOPIC || !broker.metadata().contains_key(&tp) {
                unknown.push((
                    tp.topic,
                    tp.partition,
                    Err(GroupError::Other(UNKNOWN_TOPIC_OR_PARTITION)),
                ));
                continue;
            }
            let offset = CommittedOffset {
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_deref().unwrap_or("").to_string(),
                commit_timestamp_ms: now_ms as i64,
            };
            offsets.push(OffsetToCommit {
                topic: tp.topic,
                partition: tp.partition,
                offset,
            });
        }
    }
    let groups = broker.groups_mut();
    let request = CommitRequest {
        group: commit.group_id.0.to_string(),
        member_id: commit.member_id.to_string(),
        generation_id: commit.generation_id_or_member_epoch,
        offsets,
        refused: unknown,
    };
    let step = groups.commit(id, request, now_ms);
    let (partition, batch) = match step {
        CommitStep::Done(answers) => {
            return Handled::Respond(Response::OffsetCommit(commit_response(answers)))
        }
        CommitStep::Append { partition, batch } => (partition, batch),
    };
    let timeout_ms = groups.config().offsets_commit_timeout_ms;
    match broker.produce(id, Acks::All, timeout_ms, vec![(partition, Ok(batch))], now_ms) {
        None => Handled::WaitingGroup(id),
        Some(answers) => {
            let result = answers
                .into_iter()
                .next()
                .map_or(Err(super::error::KafkaError::UnknownServerError), |(_, r)| r);
            let partitions = broker.groups_mut().commit_appended(id, result);
            Handled::Respond(Response::OffsetCommit(commit_response(partitions)))
        }
    }
}

/// Topics in the order they first appear, partitions in the order answered.
fn commit_response(partitions: Vec<PartitionCommit>) -> OffsetCommitResponse {
    let mut topics: Vec<offset_commit_response::OffsetCommitResponseTopic> = Vec::new();
    for (topic, partition, result) in partitions {
        let answer = offset_commit_response::OffsetCommitResponsePartition::default()
            .with_partition_index(partition)
            .with_error_code(code(result));
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partitions.push(answer),
            None => topics.push(
                offset_commit_response::OffsetCommitResponseTopic::default()
                    .with_name(TopicName(text(&topic)))
                    .with_partitions(vec![answer]),
            ),
        }
    }
    OffsetCommitResponse::default().with_topics(topics)
}

type Fetched = Vec<(String, i32, Option<CommittedOffset>)>;

/// UNSTABLE_OFFSET_COMMIT (88): asked with `require_stable` (KIP-447), a partition whose
/// transactional offsets are still pending gets this and no offset (Kafka's
/// `GroupMetadataManager.getOffsets`); the consumer asks again until the transaction's
/// marker commits or drops them, so a new owner does not start behind a commit in flight.
const UNSTABLE_OFFSET_COMMIT: i16 = 88;

/// Which partitions of `group` are unstable for this fetch.
fn unstable_in<'a>(
    groups: &'a GroupCoordinator,
    group: &'a str,
    require_stable: bool,
) -> impl Fn(&str, i32) -> bool + 'a {
    move |topic, partition| require_stable && groups.txn_offsets_pending(group, topic, partition)
}

/// OffsetFetch: v8+ batches groups; v5-7 ask for one at the top level.
fn offset_fetch(groups: &GroupCoordinator, fetch: &OffsetFetchRequest) -> OffsetFetchResponse {
    let wanted = |topics: Option<Vec<(String, Vec<i32>)>>| {
        topics.map(|ts| {
            ts.into_iter()
                .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
                .collect::<Vec<_>>()
        })
    };
    if fetch.groups.is_empty() && fetch.group_id.is_empty() {
        // No group in either shape (a v8+ body without groups, or a v5-7 one with an empty
        // id): an answer without errors is the only one every version can carry.
        return OffsetFetchResponse::default();
    }
    if fetch.groups.is_empty() {
        let topics = fetch.topics.as_ref().map(|ts| {
            ts.iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                .collect()
        });
        return match groups.fetch_offsets(&fetch.group_id.0, wanted(topics)) {
            Ok(found) => {
                let unstable = unstable_in(groups, &fetch.group_id.0, fetch.require_stable);
                OffsetFetchResponse::default().with_topics(flat_topics(found, &unstable))
            }
            Err(error) => OffsetFetchResponse::default().with_error_code(error.code()),
        };
    }
    let answers = fetch
        .groups
        .iter()
        .map(|g| {
            let topics = g.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                    .collect()
            });
            let answer =
                offset_fetch_response::OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
            match groups.fetch_offsets(&g.group_id.0, wanted(topics)) {
                Ok(found) => {
                    let unstable = unstable_in(groups, &g.group_id.0, fetch.require_stable);
                    answer.with_topics(group_topics(found, &unstable))
                }
                Err(error) => answer.with_error_code(error.code()),
            }
        })
        .collect();
    OffsetFetchResponse::default().with_groups(answers)
}

/// Kafka answers a partition without a committed offset with offset -1, no leader epoch and
/// empty metadata.
fn committed_fields(found: Option<CommittedOffset>) -> (i64, i32, String) {
    match found {
        Some(o) => (o.offset, o.leader_epoch, o.metadata),
        None => (-1, -1, String::new()),
    }
}

fn flat_topics(
    found: Fetched,
    unstable: &dyn Fn(&str, i32) -> bool,
) -> Vec<offset_fetch_response::OffsetFetchResponseTopic> {
    let mut topics: Vec<offset_fetch_response::OffsetFetchResponseTopic> = Vec::new();
    for (topic, partition, committed) in found {
        let held = unstable(&topic, partition);
        let (offset, epoch, metadata) = committed_fields(committed.filter(|_| !held));
        let answer = offset_fetch_response::OffsetFetchResponsePartition::default()
            .with_error_code(if held { UNSTABLE_OFFSET_COMMIT } else { 0 })
            .with_partition_index(partition)
            .with_committed_offset(offset)
            .with_committed_leader_epoch(epoch)
            .with_metadata(Some(text(&metadata)));
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partitions.push(answer),
            None => topics.push(
                offset_fetch_response::OffsetFetchResponseTopic::default()
                    .with_name(TopicName(text(&topic)))
                    .with_partitions(vec![answer]),
            ),
        }
    }
    topics
}

fn group_topics(
    found: Fetched,
    unstable: &dyn Fn(&str, i32) -> bool,
) -> Vec<offset_fetch_response::OffsetFetchResponseTopics> {
    let mut topics: Vec<offset_fetch_response::OffsetFetchResponseTopics> = Vec::new();
    for (topic, partition, committed) in found {
        let held = unstable(&topic, partition);
        let (offset, epoch, metadata) = committed_fields(committed.filter(|_| !held));
        let answer = offset_fetch_response::OffsetFetchResponsePartitions::default()
            .with_error_code(if held { UNSTABLE_OFFSET_COMMIT } else { 0 })
            .with_partition_index(partition)
            .with_committed_offset(offset)
            .with_committed_leader_epoch(epoch)
            .with_metadata(Some(text(&metadata)));
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partitions.push(answer),
            None => topics.push(
                offset_fetch_response::OffsetFetchResponseTopics::default()
                    .with_name(TopicName(text(&topic)))
                    .with_partitions(vec![answer]),
            ),
        }
    }
    topics
}

/// A FindCoordinator answer, and the offsets topic to create (name, partitions,
/// replication factor) if it does not exist.
pub type CoordinatorFound = (FindCoordinatorResponse, Option<(String, i32, i16)>);

/// FindCoordinator for groups: the leader of each group's offsets partition. `None` when
/// the request is not about groups. The second part is the offsets topic for the controller
/// to create, when it does not exist yet.
pub fn find_group_coordinator<L: ReplicaLog>(
    broker: &Broker<L>,
    cluster: &Cluster,
    request: &FindCoordinatorRequest,
) -> Option<CoordinatorFound> {
    if request.key_type != KEY_TYPE_GROUP {
        return None;
    }
    let config = broker.groups().config();
    let exists = broker.metadata().keys().any(|tp| tp.topic == OFFSETS_TOPIC);
    let create = (!exists).then(|| {
        let brokers = i16::try_from(cluster.brokers.len()).unwrap_or(i16::MAX).max(1);
        let factor = config.offsets_topic_replication_factor.min(brokers);
        (OFFSETS_TOPIC.to_string(), config.offsets_topic_partitions, factor)
    });
    let locate = |key: &str| -> Result<(i32, String, i32), GroupError> {
        if key.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let tp = broker.groups().partition_of(key);
        let leader = broker.metadata().get(&tp).and_then(|s| s.leader);
        let node = leader.and_then(|l| cluster.brokers.iter().find(|(id, _, _)| *id == l));
        node.map(|(id, host, port)| (*id, host.clone(), *port))
            .ok_or(GroupError::CoordinatorNotAvailable)
    };
    let answer = FindCoordinatorResponse::default();
    if !request.coordinator_keys.is_empty() {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let entry = find_coordinator_response::Coordinator::default().with_key(key.clone());
                match locate(key) {
                    Ok((id, host, port)) => entry
                        .with_node_id(BrokerId(id))
                        .with_host(text(&host))
                        .with_port(port),
                    Err(error) => entry
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(error.code()),
                }
            })
            .collect();
        return Some((answer.with_coordinators(coordinators), create));
    }
    if request.key.is_empty() {
        // Neither shape of request names a group: an answer without errors encodes at
        // every version (see `handler::answer_find_coordinator`).
        return Some((answer, create));
    }
    let answer = match locate(&request.key) {
        Ok((id, host, port)) => answer
            .with_node_id(BrokerId(id))
            .with_host(text(&host))
            .with_port(port),
        Err(error) => answer
            .with_error_code(error.code())
            .with_node_id(BrokerId(-1))
            .with_port(-1),
    };
    Some((answer, create))
}
