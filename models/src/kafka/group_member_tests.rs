//! The group member core against hand-built coordinator answers: the join with
//! MEMBER_ID_REQUIRED, the leader's assignment, heartbeats, the poll timeout, the errors that
//! reset a generation, and commits that fail as CommitFailedException.

use super::assignor::{encode_assignment, encode_subscription, Assignor};
use super::group_member::codes::*;
use super::group_member::*;
use bytes::BytesMut;
use kafka_protocol::messages::{
    find_coordinator_response::Coordinator as WireCoordinator,
    join_group_response::JoinGroupResponseMember,
    offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
    offset_fetch_response, BrokerId, FindCoordinatorResponse, HeartbeatResponse, JoinGroupResponse,
    OffsetCommitResponse, OffsetFetchResponse, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use std::collections::BTreeMap;

const HEARTBEAT_MS: u64 = 3_000;

fn member() -> GroupMember {
    GroupMember::new(MemberConfig::new("billing", "orders"), 0).unwrap()
}

fn found(node: i32) -> FindCoordinatorResponse {
    FindCoordinatorResponse::default().with_coordinators(vec![WireCoordinator::default()
        .with_node_id(BrokerId(node))
        .with_host(StrBytes::from_static_str("broker2"))
        .with_port(9092)])
}

fn joined(me: &str, leader: &str, generation: i32, members: &[&str]) -> JoinGroupResponse {
    let topics = vec!["orders".to_string()];
    JoinGroupResponse::default()
        .with_generation_id(generation)
        .with_protocol_name(Some(StrBytes::from_static_str("range")))
        .with_leader(StrBytes::from_string(leader.into()))
        .with_member_id(StrBytes::from_string(me.into()))
        .with_members(
            members
                .iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from_string(m.to_string()))
                        .with_metadata(encode_subscription(&topics, -1))
                })
                .collect(),
        )
}

fn assignment(partitions: &[i32]) -> SyncGroupResponse {
    let mut mine = BTreeMap::new();
    mine.insert("orders".to_string(), partitions.to_vec());
    SyncGroupResponse::default().with_assignment(encode_assignment(&mine))
}

/// A member taken to a stable generation 1 owning `partitions`, at time 0.
fn stable(partitions: &[i32]) -> GroupMember {
    let mut m = member();
    m.begin_join();
    assert!(matches!(m.join_step(0), JoinStep::FindCoordinator(_)));
    m.on_find_coordinator(&found(2), 0);
    assert!(matches!(m.join_step(0), JoinStep::JoinGroup(_)));
    m.on_join_group(&joined("c1-a", "c0-a", 1, &[]), 3, 0);
    assert!(matches!(m.join_step(0), JoinStep::SyncGroup(_)));
    assert_eq!(
        m.on_sync_group(&assignment(partitions), 0),
        Some(partitions.to_vec())
    );
    m
}

fn heartbeat_answer(code: i16) -> HeartbeatResponse {
    HeartbeatResponse::default().with_error_code(code)
}

fn commit_answer(code: i16) -> OffsetCommitResponse {
    OffsetCommitResponse::default().with_topics(vec![OffsetCommitResponseTopic::default()
        .with_name(TopicName(StrBytes::from_static_str("orders")))
        .with_partitions(vec![
            OffsetCommitResponsePartition::default().with_error_code(code)
        ])])
}

fn offsets(pairs: &[(i32, i64)]) -> BTreeMap<i32, i64> {
    pairs.iter().copied().collect()
}

#[test]
fn the_leader_joins_after_member_id_required_and_assigns_by_range() {
    let mut m = member();
    assert_eq!(m.begin_join().map(|r| r.partitions), Some(vec![]));
    let JoinStep::FindCoordinator(find) = m.join_step(0) else {
        panic!("coordinator first")
    };
    assert_eq!(find.coordinator_keys, vec![StrBytes::from_static_str("billing")]);
    m.on_find_coordinator(&found(2), 0);
    assert_eq!(m.coordinator().map(|c| c.node_id), Some(2));
    let JoinStep::JoinGroup(first) = m.join_step(0) else {
        panic!("join")
    };
    assert_eq!(first.member_id.as_str(), "", "the first join has no member id");
    let names: Vec<&str> = first.protocols.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["range", "roundrobin"], "Java's order of preference");
    assert_eq!(first.session_timeout_ms, 45_000);
    assert_eq!(first.rebalance_timeout_ms, 300_000, "max.poll.interval.ms");
    let required = JoinGroupResponse::default()
        .with_error_code(MEMBER_ID_REQUIRED)
        .with_member_id(StrBytes::from_static_str("consumer1-7f"));
    m.on_join_group(&required, 3, 0);
    let JoinStep::JoinGroup(second) = m.join_step(0) else {
        panic!("joins again at once")
    };
    assert_eq!(second.member_id.as_str(), "consumer1-7f");
    m.on_join_group(
        &joined(
            "consumer1-7f",
            "consumer1-7f",
            4,
            &["consumer1-7f", "consumer2-3c"],
        ),
        3,
        0,
    );
    let JoinStep::SyncGroup(sync) = m.join_step(0) else {
        panic!("sync")
    };
    assert_eq!(sync.generation_id, 4);
    let given: BTreeMap<String, Vec<i32>> = sync
        .assignments
        .iter()
        .map(|a| {
            let parts = super::assignor::decode_assignment(&a.assignment, "orders").unwrap();
            (a.member_id.to_string(), parts)
        })
        .collect();
    assert_eq!(given["consumer1-7f"], vec![0, 1]);
    assert_eq!(given["consumer2-3c"], vec![2]);
    assert_eq!(m.on_sync_group(&assignment(&[0, 1]), 10), Some(vec![0, 1]));
    assert_eq!(m.state(), MemberState::Stable);
    assert_eq!(m.join_step(10), JoinStep::Stable);
    let notes: Vec<String> = m.take_notes().into_iter().map(|(n, _)| n).collect();
    assert!(
        notes.contains(&"group.member_id_required".to_string()),
        "{notes:?}"
    );
    assert!(notes.contains(&"group.assigned".to_string()), "{notes:?}");
}

#[test]
fn a_follower_syncs_without_assignments() {
    let mut m = member();
    m.begin_join();
    m.join_step(0);
    m.on_find_coordinator(&found(1), 0);
    m.join_step(0);
    m.on_join_group(&joined("b", "a", 2, &[]), 3, 0);
    let JoinStep::SyncGroup(sync) = m.join_step(0) else {
        panic!("sync")
    };
    assert!(sync.assignments.is_empty());
}

#[test]
fn heartbeats_go_every_interval_one_at_a_time() {
    let mut m = stable(&[0]);
    assert_eq!(m.heartbeat_step(0), HeartbeatStep::WaitUntil(HEARTBEAT_MS));
    m.polled(HEARTBEAT_MS);
    let HeartbeatStep::Send(beat) = m.heartbeat_step(HEARTBEAT_MS) else {
        panic!("due")
    };
    assert_eq!((beat.generation_id, beat.member_id.as_str()), (1, "c1-a"));
    assert!(
        matches!(m.heartbeat_step(HEARTBEAT_MS + 1), HeartbeatStep::WaitUntil(_)),
        "one in flight"
    );
    m.on_heartbeat(&heartbeat_answer(NONE), HEARTBEAT_MS + 5);
    assert!(matches!(
        m.heartbeat_step(2 * HEARTBEAT_MS),
        HeartbeatStep::Send(_)
    ));
}

#[test]
fn no_poll_for_max_poll_interval_leaves_the_group_and_loses_the_partitions() {
    let mut m = stable(&[0, 2]);
    let mut now = 0;
    // A slow handler: heartbeats keep going, poll is never called.
    while now <= 300_000 {
        if let HeartbeatStep::Send(_) = m.heartbeat_step(now) {
            m.on_heartbeat(&heartbeat_answer(NONE), now + 1);
        }
        now += 1_000;
    }
    let HeartbeatStep::Leave(leave) = m.heartbeat_step(now) else {
        panic!("poll timeout")
    };
    assert_eq!(leave.members[0].member_id.as_str(), "c1-a");
    assert!(m.needs_join());
    assert_eq!(
        m.commit_request(&offsets(&[(0, 5)])),
        Err(CommitError::Failed("not part of an active group".into())),
        "CommitFailedException without a request"
    );
    let revocation = m.begin_join().unwrap();
    assert_eq!((revocation.partitions, revocation.lost), (vec![0, 2], true));
    let notes: Vec<String> = m.take_notes().into_iter().map(|(n, _)| n).collect();
    assert!(
        notes.contains(&"group.left_poll_timeout".to_string()),
        "{notes:?}"
    );
    assert!(notes.contains(&"group.partitions_lost".to_string()), "{notes:?}");
}

#[test]
fn a_rebalance_in_progress_lets_the_member_commit_then_revoke() {
    let mut m = stable(&[1]);
    m.polled(HEARTBEAT_MS);
    assert!(matches!(m.heartbeat_step(HEARTBEAT_MS), HeartbeatStep::Send(_)));
    m.on_heartbeat(&heartbeat_answer(REBALANCE_IN_PROGRESS), HEARTBEAT_MS);
    assert!(m.needs_join());
    let commit = m
        .commit_request(&offsets(&[(1, 9)]))
        .expect("still in generation 1");
    assert_eq!(commit.generation_id_or_member_epoch, 1);
    assert_eq!(commit.topics[0].partitions[0].committed_offset, 9);
    let revocation = m.begin_join().unwrap();
    assert_eq!((revocation.partitions, revocation.lost), (vec![1], false));
    assert!(m.begin_join().is_none(), "once per rejoin");
    let JoinStep::JoinGroup(again) = m.join_step(HEARTBEAT_MS) else {
        panic!("rejoin")
    };
    assert_eq!(again.member_id.as_str(), "c1-a", "keeps its member id");
}

#[test]
fn unknown_member_on_a_heartbeat_resets_the_generation() {
    for code in [UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION] {
        let mut m = stable(&[0]);
        m.polled(HEARTBEAT_MS);
        m.heartbeat_step(HEARTBEAT_MS);
        m.on_heartbeat(&heartbeat_answer(code), HEARTBEAT_MS);
        assert_eq!(m.generation(), &Generation::none());
        assert!(matches!(
            m.commit_request(&offsets(&[(0, 1)])),
            Err(CommitError::Failed(_))
        ));
        assert!(m.begin_join().unwrap().lost);
    }
}

#[test]
fn a_commit_from_a_stale_generation_fails_and_the_member_rejoins() {
    let mut m = stable(&[0]);
    let request = m.commit_request(&offsets(&[(0, 3)])).unwrap();
    assert_eq!(request.member_id.as_str(), "c1-a");
    assert_eq!(
        m.on_commit(&commit_answer(ILLEGAL_GENERATION), 5),
        Err(CommitError::Failed("ILLEGAL_GENERATION".into()))
    );
    assert!(m.needs_join());
    let mut m = stable(&[0]);
    assert_eq!(
        m.on_commit(&commit_answer(REBALANCE_IN_PROGRESS), 5),
        Err(CommitError::RebalanceInProgress)
    );
    assert!(
        !m.begin_join().unwrap().lost,
        "revoked: the generation still stands"
    );
    let mut m = stable(&[0]);
    assert!(matches!(
        m.on_commit(&commit_answer(NOT_COORDINATOR), 5),
        Err(CommitError::Retriable(_))
    ));
    assert!(m.coordinator().is_none());
    assert_eq!(stable(&[0]).on_commit(&commit_answer(NONE), 5), Ok(()));
}

#[test]
fn silence_for_a_session_forgets_the_coordinator() {
    let mut m = stable(&[0]);
    let mut now = 0;
    while now < 45_000 {
        m.polled(now);
        let _ = m.heartbeat_step(now);
        now += 1_000;
    }
    assert!(matches!(m.heartbeat_step(now), HeartbeatStep::WaitUntil(_)));
    assert!(m.coordinator().is_none());
    assert!(matches!(
        m.heartbeat_step(now + 200),
        HeartbeatStep::FindCoordinator(_)
    ));
}

#[test]
fn sync_errors_send_the_member_back_to_join() {
    let mut m = member();
    m.begin_join();
    m.join_step(0);
    m.on_find_coordinator(&found(1), 0);
    m.join_step(0);
    m.on_join_group(&joined("b", "a", 2, &[]), 3, 0);
    m.join_step(0);
    assert_eq!(
        m.on_sync_group(
            &SyncGroupResponse::default().with_error_code(REBALANCE_IN_PROGRESS),
            0
        ),
        None
    );
    assert!(matches!(m.join_step(0), JoinStep::BackoffUntil(100)));
    assert!(matches!(m.join_step(100), JoinStep::JoinGroup(_)));
}

#[test]
fn coordinator_not_available_backs_off_and_asks_again() {
    let mut m = member();
    m.begin_join();
    m.join_step(0);
    let unavailable = FindCoordinatorResponse::default().with_coordinators(vec![
        WireCoordinator::default().with_error_code(COORDINATOR_NOT_AVAILABLE)
    ]);
    m.on_find_coordinator(&unavailable, 0);
    assert_eq!(m.join_step(50), JoinStep::BackoffUntil(100));
    assert!(matches!(m.join_step(100), JoinStep::FindCoordinator(_)));
}

#[test]
fn committed_offsets_are_read_from_either_layout() {
    let mut m = stable(&[0, 1]);
    let partitions = vec![
        offset_fetch_response::OffsetFetchResponsePartitions::default()
            .with_partition_index(0)
            .with_committed_offset(7),
        offset_fetch_response::OffsetFetchResponsePartitions::default()
            .with_partition_index(1)
            .with_committed_offset(-1),
    ];
    let v8 = OffsetFetchResponse::default().with_groups(vec![
        offset_fetch_response::OffsetFetchResponseGroup::default().with_topics(vec![
            offset_fetch_response::OffsetFetchResponseTopics::default()
                .with_name(TopicName(StrBytes::from_static_str("orders")))
                .with_partitions(partitions),
        ]),
    ]);
    let got = m.on_offset_fetch(&v8, 0).unwrap();
    assert_eq!(got, [(0, Some(7)), (1, None)].into_iter().collect());
    m.set_versions(Versions {
        offset_fetch: 7,
        ..Versions::default()
    });
    let v7 = OffsetFetchResponse::default().with_topics(vec![
        offset_fetch_response::OffsetFetchResponseTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("orders")))
            .with_partitions(vec![
                offset_fetch_response::OffsetFetchResponsePartition::default()
                    .with_partition_index(1)
                    .with_committed_offset(4),
            ]),
    ]);
    assert_eq!(
        m.on_offset_fetch(&v7, 0).unwrap(),
        [(1, Some(4))].into_iter().collect()
    );
    let loading = OffsetFetchResponse::default().with_error_code(COORDINATOR_LOAD_IN_PROGRESS);
    assert!(matches!(
        m.on_offset_fetch(&loading, 0),
        Err(CommitError::Retriable(_))
    ));
}

#[test]
fn requests_encode_at_old_and_new_versions() {
    for versions in [
        Versions {
            find_coordinator: 3,
            join_group: 0,
            sync_group: 4,
            leave_group: 2,
            offset_fetch: 7,
        },
        Versions::default(),
    ] {
        let mut m = member();
        m.set_versions(versions);
        m.begin_join();
        let JoinStep::FindCoordinator(find) = m.join_step(0) else {
            panic!()
        };
        find.encode(&mut BytesMut::new(), versions.find_coordinator)
            .expect("FindCoordinator");
        m.on_find_coordinator(
            &found(1)
                .with_node_id(BrokerId(1))
                .with_host(StrBytes::from_static_str("b")),
            0,
        );
        let JoinStep::JoinGroup(join) = m.join_step(0) else {
            panic!()
        };
        join.encode(&mut BytesMut::new(), versions.join_group)
            .expect("JoinGroup");
        m.on_join_group(&joined("a", "a", 1, &["a"]), 1, 0);
        let JoinStep::SyncGroup(sync) = m.join_step(0) else {
            panic!()
        };
        sync.encode(&mut BytesMut::new(), versions.sync_group)
            .expect("SyncGroup");
        m.on_sync_group(&assignment(&[0]), 0);
        m.offset_fetch_request(&[0])
            .encode(&mut BytesMut::new(), versions.offset_fetch)
            .expect("OffsetFetch");
        for version in [2, 9] {
            m.commit_request(&offsets(&[(0, 1)]))
                .unwrap()
                .encode(&mut BytesMut::new(), version)
                .expect("OffsetCommit");
        }
        m.on_heartbeat(&heartbeat_answer(NONE), 300_000);
        let HeartbeatStep::Leave(leave) = m.heartbeat_step(300_001) else {
            panic!("poll timeout")
        };
        leave
            .encode(&mut BytesMut::new(), versions.leave_group)
            .expect("LeaveGroup");
    }
}

#[test]
fn settings_java_refuses_are_refused() {
    let mut config = MemberConfig::new("g", "t");
    config.heartbeat_interval_ms = config.session_timeout_ms;
    assert!(GroupMember::new(config, 0).is_err());
    let mut config = MemberConfig::new("g", "t");
    config.assignors.clear();
    assert!(config.validate().is_err());
    assert_eq!(MemberConfig::new("g", "t").assignors[0], Assignor::Range);
}
