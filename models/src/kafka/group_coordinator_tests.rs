//! Tests of `group_coordinator` and `handler_group`: a group through the wire end to end,
//! commits replicated through `__consumer_offsets`, and a coordinator failover.

use super::broker::{Broker, BrokerOutput, RequestId};
use super::controller::TopicPartition;
use super::group::GroupConfig;
use super::group_coordinator::{java_string_hash, partition_for, OFFSETS_TOPIC};
use super::handler::{handle, Cluster, Handled};
use super::handler_group::group_response;
use super::mem_log::MemLog;
use super::partition::{LeaderAndIsr, PartitionConfig};
use super::wire::{
    decode_request, decode_response, encode_request, encode_response, Inbound, Request, Response,
};
use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const GROUP: &str = "billing";
const OFFSETS_PARTITIONS: i32 = 3;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn cluster() -> Cluster {
    Cluster {
        cluster_id: "jetsam".into(),
        controller: 1,
        brokers: vec![(1, "broker1".into(), 9092), (2, "broker2".into(), 9092)],
    }
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition {
        topic: topic.into(),
        partition,
    }
}

fn state(leader: i32, epoch: i32, replicas: &[i32]) -> LeaderAndIsr {
    LeaderAndIsr {
        leader: Some(leader),
        leader_epoch: epoch,
        isr: replicas.to_vec(),
        replicas: replicas.to_vec(),
        partition_epoch: epoch,
    }
}

fn broker(id: i32) -> Broker<MemLog> {
    let mut broker = Broker::new(id, PartitionConfig::default());
    broker.set_group_config(GroupConfig {
        offsets_topic_partitions: OFFSETS_PARTITIONS,
        ..GroupConfig::default()
    });
    broker
}

/// Every partition of `orders` and the offsets topic on `replicas`, led by `leader`.
fn publish(brokers: &mut [&mut Broker<MemLog>], leader: i32, epoch: i32, replicas: &[i32], now_ms: u64) {
    for b in brokers.iter_mut() {
        for p in 0..3 {
            b.apply(
                tp("orders", p),
                state(leader, epoch, replicas),
                now_ms,
                &mut |_| MemLog::default(),
            );
        }
        for p in 0..OFFSETS_PARTITIONS {
            b.apply(
                tp(OFFSETS_TOPIC, p),
                state(leader, epoch, replicas),
                now_ms,
                &mut |_| MemLog::default(),
            );
        }
    }
}

/// A request through the wire at `version`, and its answer back, unless it waits.
fn call(
    broker: &mut Broker<MemLog>,
    version: i16,
    request: Request,
    id: u64,
    now_ms: u64,
) -> Result<Response, RequestId> {
    let (in_flight, frame) = encode_request(7, "test", version, &request);
    let Inbound::Request { header, request } = decode_request(frame.slice(4..)).unwrap() else {
        panic!("supported")
    };
    let answer = match handle(broker, &cluster(), request, RequestId(id), now_ms) {
        Handled::Respond(response) | Handled::RespondAndCreateTopics { answer: response, .. } => response,
        Handled::WaitingGroup(id) => return Err(id),
        other => panic!("{other:?}"),
    };
    let bytes = encode_response(&header, &answer);
    Ok(decode_response(bytes.slice(4..), &in_flight).unwrap())
}

/// The group answers the broker gave out, by request.
fn group_answers(broker: &mut Broker<MemLog>) -> Vec<(RequestId, Response)> {
    broker
        .take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            BrokerOutput::GroupAnswered { request, answer } => Some((request, group_response(answer))),
            _ => None,
        })
        .collect()
}

fn join(member_id: &str) -> Request {
    Request::JoinGroup(
        JoinGroupRequest::default()
            .with_group_id(GroupId(text(GROUP)))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(text(member_id))
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(text("range"))
                .with_metadata(Bytes::from_static(b"orders"))]),
    )
}

fn joined(response: &Response) -> &JoinGroupResponse {
    let Response::JoinGroup(join) = response else {
        panic!("{response:?}")
    };
    join
}

fn commit(member_id: &str, generation: i32, topic: &str, offset: i64) -> Request {
    let partition = OffsetCommitRequestPartition::default()
        .with_partition_index(1)
        .with_committed_offset(offset)
        .with_committed_metadata(Some(text("m")));
    Request::OffsetCommit(
        OffsetCommitRequest::default()
            .with_group_id(GroupId(text(GROUP)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(text(member_id))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(text(topic)))
                .with_partitions(vec![partition])]),
    )
}

fn commit_error(response: &Response) -> i16 {
    let Response::OffsetCommit(commit) = response else {
        panic!("{response:?}")
    };
    commit.topics[0].partitions[0].error_code
}

/// OffsetFetch v8 (kafka-python's): partition 1 of orders, as (group error, offset).
fn fetched(broker: &mut Broker<MemLog>, now_ms: u64) -> (i16, i64) {
    let group = OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(text(GROUP)))
        .with_topics(Some(vec![OffsetFetchRequestTopics::default()
            .with_name(TopicName(text("orders")))
            .with_partition_indexes(vec![1])]));
    let request = Request::OffsetFetch(OffsetFetchRequest::default().with_groups(vec![group]));
    let Ok(Response::OffsetFetch(answer)) = call(broker, 8, request, 99, now_ms) else {
        panic!()
    };
    let group = &answer.groups[0];
    let offset = group
        .topics
        .first()
        .map_or(-1, |t| t.partitions[0].committed_offset);
    (group.error_code, offset)
}

#[test]
fn the_coordinator_is_the_leader_of_the_groups_partition_by_javas_string_hash() {
    assert_eq!(java_string_hash("hello"), 99_162_322);
    assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
    assert_eq!(partition_for("hello", 50), 22);
    assert_eq!(
        partition_for("polygenelubricants", 50),
        0,
        "Kafka's Utils.abs(MIN_VALUE) is 0"
    );
    assert!((0..50).contains(&partition_for("a-negative-hash-é", 50)));
    let mut one = broker(1);
    let find = |key: &str| {
        Request::FindCoordinator(FindCoordinatorRequest::default().with_coordinator_keys(vec![text(key)]))
    };
    let handled = handle(&mut one, &cluster(), find(GROUP), RequestId(1), 0);
    let Handled::RespondAndCreateTopics {
        answer: Response::FindCoordinator(answer),
        topics,
    } = handled
    else {
        panic!("{handled:?}")
    };
    assert_eq!(answer.coordinators[0].error_code, 15, "COORDINATOR_NOT_AVAILABLE");
    assert_eq!(
        topics,
        vec![(OFFSETS_TOPIC.to_string(), OFFSETS_PARTITIONS, 2)],
        "rf min(3, brokers)"
    );
    publish(&mut [&mut one], 2, 0, &[2, 1], 0);
    let Ok(Response::FindCoordinator(answer)) = call(&mut one, 6, find(GROUP), 2, 0) else {
        panic!()
    };
    assert_eq!(answer.coordinators[0].node_id, BrokerId(2));
    assert_eq!(answer.coordinators[0].error_code, 0);
    let old = Request::FindCoordinator(FindCoordinatorRequest::default().with_key(text(GROUP)));
    let Ok(Response::FindCoordinator(answer)) = call(&mut one, 2, old, 3, 0) else {
        panic!()
    };
    assert_eq!((answer.node_id, answer.port), (BrokerId(2), 9092));
}

/// Two members through the wire: MEMBER_ID_REQUIRED, the initial delay, the leader's
/// assignment, heartbeats, a commit and its fetch; a stale generation's commit fails.
#[test]
fn a_group_joins_syncs_commits_and_fetches_through_the_wire() {
    let mut one = broker(1);
    publish(&mut [&mut one], 1, 0, &[1], 0);
    let Ok(answer) = call(&mut one, 7, join(""), 1, 0) else {
        panic!()
    };
    assert_eq!(
        joined(&answer).error_code,
        14,
        "COORDINATOR_LOAD_IN_PROGRESS until loaded"
    );
    one.tick(10);
    one.tick(20);
    let Ok(answer) = call(&mut one, 7, join(""), 2, 20) else {
        panic!()
    };
    let a = joined(&answer).member_id.to_string();
    assert_eq!(joined(&answer).error_code, 79, "MEMBER_ID_REQUIRED");
    let Ok(answer) = call(&mut one, 5, join(""), 3, 30) else {
        panic!()
    };
    let b = joined(&answer).member_id.to_string();
    assert_ne!(a, b);
    assert_eq!(call(&mut one, 7, join(&a), 4, 40), Err(RequestId(4)));
    assert_eq!(call(&mut one, 5, join(&b), 5, 50), Err(RequestId(5)));
    one.tick(3_040);
    assert!(
        group_answers(&mut one).is_empty(),
        "extended: b joined during the delay"
    );
    one.tick(6_040);
    let answers = group_answers(&mut one);
    assert_eq!(answers.len(), 2);
    for (_, answer) in &answers {
        assert_eq!(
            (joined(answer).generation_id, joined(answer).leader.as_str()),
            (1, a.as_str())
        );
    }
    let sync = |member: &str, assignments: Vec<SyncGroupRequestAssignment>| {
        Request::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(GroupId(text(GROUP)))
                .with_generation_id(1)
                .with_member_id(text(member))
                .with_assignments(assignments),
        )
    };
    assert_eq!(call(&mut one, 3, sync(&b, vec![]), 6, 6_100), Err(RequestId(6)));
    let plan = [(a.as_str(), "p0"), (b.as_str(), "p1")].map(|(m, p)| {
        SyncGroupRequestAssignment::default()
            .with_member_id(text(m))
            .with_assignment(Bytes::from(p.as_bytes().to_vec()))
    });
    // The leader's own sync decides everyone's: it is answered at once.
    let Ok(Response::SyncGroup(s)) = call(&mut one, 5, sync(&a, plan.to_vec()), 7, 6_200) else {
        panic!()
    };
    assert_eq!(&s.assignment[..], b"p0");
    let answers = group_answers(&mut one);
    let for_b = answers.iter().find(|(r, _)| *r == RequestId(6)).unwrap();
    let Response::SyncGroup(s) = &for_b.1 else {
        panic!()
    };
    assert_eq!(&s.assignment[..], b"p1");
    let beat = Request::Heartbeat(
        HeartbeatRequest::default()
            .with_group_id(GroupId(text(GROUP)))
            .with_generation_id(1)
            .with_member_id(text(&a)),
    );
    let Ok(Response::Heartbeat(h)) = call(&mut one, 4, beat, 8, 6_300) else {
        panic!()
    };
    assert_eq!(h.error_code, 0);
    assert_eq!(fetched(&mut one, 6_300), (0, -1), "nothing committed yet");
    // A single replica: acks=all is satisfied at once.
    let Ok(answer) = call(&mut one, 8, commit(&a, 1, "orders", 42), 9, 6_400) else {
        panic!()
    };
    assert_eq!(commit_error(&answer), 0);
    assert_eq!(fetched(&mut one, 6_400), (0, 42));
    let Ok(answer) = call(&mut one, 9, commit(&a, 0, "orders", 50), 10, 6_500) else {
        panic!()
    };
    assert_eq!(
        commit_error(&answer),
        22,
        "ILLEGAL_GENERATION: CommitFailedException"
    );
    let Ok(answer) = call(&mut one, 8, commit("ghost", 1, "orders", 50), 11, 6_500) else {
        panic!()
    };
    assert_eq!(commit_error(&answer), 25, "UNKNOWN_MEMBER_ID");
    let Ok(answer) = call(&mut one, 8, commit(&a, 1, "nope", 50), 12, 6_500) else {
        panic!()
    };
    assert_eq!(commit_error(&answer), 3, "UNKNOWN_TOPIC_OR_PARTITION");
    assert_eq!(fetched(&mut one, 6_600), (0, 42));
}

/// A commit waits for the follower (acks=all); the follower takes over, loads the offsets
/// from its copy of the log, and the old leader answers NOT_COORDINATOR.
#[test]
fn a_commit_is_replicated_before_it_is_answered_and_survives_a_failover() {
    let (mut one, mut two) = (broker(1), broker(2));
    publish(&mut [&mut one, &mut two], 1, 0, &[1, 2], 0);
    one.tick(10);
    one.tick(20);
    // A simple commit (no generation, no member) for a group with no members.
    assert_eq!(
        call(&mut one, 8, commit("", -1, "orders", 7), 1, 30),
        Err(RequestId(1))
    );
    let offsets = tp(OFFSETS_TOPIC, partition_for(GROUP, OFFSETS_PARTITIONS));
    for now in [40, 50] {
        let at = two
            .follower_fetches()
            .into_iter()
            .find(|(p, _)| *p == offsets)
            .unwrap()
            .1;
        let answer = one.fetch(Some(2), &offsets, at.offset, 1 << 20, now);
        two.replica_fetched(&offsets, answer, now);
    }
    let answers = group_answers(&mut one);
    assert_eq!(answers.len(), 1, "answered once the follower has it");
    assert_eq!(commit_error(&answers[0].1), 0);
    assert_eq!(fetched(&mut one, 60), (0, 7));
    publish(&mut [&mut one, &mut two], 2, 1, &[2, 1], 70);
    assert_eq!(
        fetched(&mut one, 70).0,
        16,
        "NOT_COORDINATOR once it no longer leads"
    );
    assert_eq!(
        fetched(&mut two, 70).0,
        14,
        "COORDINATOR_LOAD_IN_PROGRESS until its tick"
    );
    two.tick(80);
    assert_eq!(
        fetched(&mut two, 80),
        (0, 7),
        "loaded from its own copy of the log"
    );
}

#[test]
fn a_commit_not_replicated_in_time_is_request_timed_out() {
    let (mut one, _two) = (broker(1), broker(2));
    publish(&mut [&mut one], 1, 0, &[1, 2], 0);
    one.tick(10);
    one.tick(20);
    assert_eq!(
        call(&mut one, 8, commit("", -1, "orders", 7), 1, 30),
        Err(RequestId(1))
    );
    one.tick(30 + GroupConfig::default().offsets_commit_timeout_ms);
    let answers = group_answers(&mut one);
    assert_eq!(answers.len(), 1);
    assert_eq!(commit_error(&answers[0].1), 7, "REQUEST_TIMED_OUT");
    assert_eq!(fetched(&mut one, 6_000), (0, -1), "not visible: never committed");
}

/// Every group answer the handler builds encodes at every version we advertise, whatever
/// the body (an answer that cannot be encoded would be a panic in the server): errors from
/// a broker that coordinates nothing, and empty requests of every API.
#[test]
fn group_answers_encode_at_every_advertised_version() {
    use super::wire::supported_versions;
    let mut one = broker(1);
    let requests = [
        join(""),
        join("m"),
        Request::SyncGroup(SyncGroupRequest::default().with_group_id(GroupId(text(GROUP)))),
        Request::Heartbeat(HeartbeatRequest::default().with_group_id(GroupId(text(GROUP)))),
        Request::LeaveGroup(LeaveGroupRequest::default().with_group_id(GroupId(text(GROUP)))),
        commit("m", 1, "orders", 1),
        Request::OffsetFetch(OffsetFetchRequest::default()),
        Request::OffsetFetch(OffsetFetchRequest::default().with_group_id(GroupId(text(GROUP)))),
        Request::JoinGroup(JoinGroupRequest::default()),
        Request::SyncGroup(SyncGroupRequest::default()),
        Request::Heartbeat(HeartbeatRequest::default()),
        Request::LeaveGroup(LeaveGroupRequest::default()),
        Request::OffsetCommit(OffsetCommitRequest::default()),
    ];
    for request in requests {
        let api_key = request.api_key();
        for version in supported_versions(api_key).unwrap() {
            // Only bodies the version can carry: a v8+ OffsetFetch has no group id.
            let fits = !(api_key == ApiKey::OffsetFetch
                && version >= 8
                && matches!(&request, Request::OffsetFetch(f) if !f.group_id.is_empty()));
            if fits {
                let answer = call(&mut one, version, request.clone(), 1, 0);
                assert!(answer.is_ok(), "{api_key:?} v{version}: {answer:?}");
            }
        }
    }
}

fn leave(version: i16, member: &str) -> Request {
    let request = LeaveGroupRequest::default().with_group_id(GroupId(text(GROUP)));
    Request::LeaveGroup(if version >= 3 {
        request.with_members(vec![
            leave_group_request::MemberIdentity::default().with_member_id(text(member))
        ])
    } else {
        request.with_member_id(text(member))
    })
}

/// LeaveGroup in both shapes, an empty group id, and metadata over
/// `offset.metadata.max.bytes`, each with Kafka's code; a member that leaves is unknown after.
#[test]
fn leaving_and_bad_ids_and_oversized_metadata_get_kafkas_codes() {
    let mut one = broker(1);
    publish(&mut [&mut one], 1, 0, &[1], 0);
    one.tick(10);
    let Ok(answer) = call(&mut one, 7, join(""), 1, 10) else {
        panic!()
    };
    let member = joined(&answer).member_id.to_string();
    assert_eq!(call(&mut one, 7, join(&member), 2, 20), Err(RequestId(2)));
    one.tick(3_020);
    assert_eq!(group_answers(&mut one).len(), 1);
    let Ok(Response::LeaveGroup(left)) = call(&mut one, 5, leave(5, "ghost"), 3, 3_100) else {
        panic!()
    };
    assert_eq!(
        (left.error_code, left.members[0].error_code),
        (0, 25),
        "UNKNOWN_MEMBER_ID per member"
    );
    let Ok(Response::LeaveGroup(left)) = call(&mut one, 1, leave(1, &member), 4, 3_100) else {
        panic!()
    };
    assert_eq!(left.error_code, 0);
    let Ok(Response::LeaveGroup(left)) = call(&mut one, 1, leave(1, &member), 5, 3_200) else {
        panic!()
    };
    assert_eq!(left.error_code, 25, "gone");
    let nameless = Request::Heartbeat(HeartbeatRequest::default().with_member_id(text(&member)));
    let Ok(Response::Heartbeat(beat)) = call(&mut one, 4, nameless, 6, 3_200) else {
        panic!()
    };
    assert_eq!(beat.error_code, 24, "INVALID_GROUP_ID");
    let Request::OffsetCommit(mut big) = commit("", -1, "orders", 5) else {
        panic!()
    };
    big.topics[0].partitions[0].committed_metadata = Some(text(&"x".repeat(4_097)));
    let Ok(answer) = call(&mut one, 8, Request::OffsetCommit(big), 7, 3_300) else {
        panic!()
    };
    assert_eq!(commit_error(&answer), 12, "OFFSET_METADATA_TOO_LARGE");
    assert_eq!(fetched(&mut one, 3_300), (0, -1));
}

/// A member that stops heartbeating is removed after its `session.timeout.ms` (10 s here),
/// and the coordinator says so in the history.
#[test]
fn a_silent_member_expires_and_its_heartbeat_is_then_unknown() {
    let mut one = broker(1);
    publish(&mut [&mut one], 1, 0, &[1], 0);
    one.tick(10);
    let Ok(answer) = call(&mut one, 7, join(""), 1, 10) else {
        panic!()
    };
    let member = joined(&answer).member_id.to_string();
    assert_eq!(call(&mut one, 7, join(&member), 2, 20), Err(RequestId(2)));
    one.tick(3_020);
    assert_eq!(group_answers(&mut one).len(), 1);
    one.tick(13_019);
    assert!(!one
        .take_outputs()
        .contains(&BrokerOutput::Note("kafka.group_member_session_expired")));
    one.tick(13_020);
    assert!(one
        .take_outputs()
        .contains(&BrokerOutput::Note("kafka.group_member_session_expired")));
    let beat = Request::Heartbeat(
        HeartbeatRequest::default()
            .with_group_id(GroupId(text(GROUP)))
            .with_generation_id(1)
            .with_member_id(text(&member)),
    );
    let Ok(Response::Heartbeat(h)) = call(&mut one, 4, beat, 3, 13_100) else {
        panic!()
    };
    assert_eq!(h.error_code, 25, "UNKNOWN_MEMBER_ID");
}
