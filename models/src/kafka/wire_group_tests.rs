//! Sample requests and responses of the classic group APIs for `wire_tests`' round trips and
//! layout checks, each using only the fields its version has.

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use bytes::Bytes;

use super::wire::{Request, Response};

fn name(text: &'static str) -> StrBytes {
    StrBytes::from_static_str(text)
}

fn group() -> GroupId {
    GroupId(name("group-a"))
}

fn topic() -> TopicName {
    TopicName(name("orders"))
}

pub(super) fn sample_request(api_key: ApiKey, version: i16) -> Request {
    match api_key {
        ApiKey::JoinGroup => Request::JoinGroup(join_group(version)),
        ApiKey::SyncGroup => Request::SyncGroup(sync_group(version)),
        ApiKey::Heartbeat => Request::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(group())
                .with_generation_id(3)
                .with_member_id(name("m-1"))
                .with_group_instance_id((version >= 3).then(|| name("static-1"))),
        ),
        ApiKey::LeaveGroup => Request::LeaveGroup(leave_group(version)),
        ApiKey::OffsetCommit => Request::OffsetCommit(offset_commit(version)),
        ApiKey::OffsetFetch => Request::OffsetFetch(offset_fetch(version)),
        other => panic!("no sample for {other:?}"),
    }
}

fn join_group(version: i16) -> JoinGroupRequest {
    let protocol = JoinGroupRequestProtocol::default()
        .with_name(name("range"))
        .with_metadata(Bytes::from_static(b"\x00\x01subscription"));
    JoinGroupRequest::default()
        .with_group_id(group())
        .with_session_timeout_ms(45_000)
        .with_rebalance_timeout_ms(300_000)
        .with_member_id(name("m-1"))
        .with_group_instance_id((version >= 5).then(|| name("static-1")))
        .with_protocol_type(name("consumer"))
        .with_protocols(vec![protocol])
        .with_reason((version >= 8).then(|| name("rejoin")))
}

fn sync_group(version: i16) -> SyncGroupRequest {
    let assignment = SyncGroupRequestAssignment::default()
        .with_member_id(name("m-1"))
        .with_assignment(Bytes::from_static(b"\x00\x01assignment"));
    SyncGroupRequest::default()
        .with_group_id(group())
        .with_generation_id(3)
        .with_member_id(name("m-1"))
        .with_group_instance_id((version >= 3).then(|| name("static-1")))
        .with_protocol_type((version >= 5).then(|| name("consumer")))
        .with_protocol_name((version >= 5).then(|| name("range")))
        .with_assignments(vec![assignment])
}

fn leave_group(version: i16) -> LeaveGroupRequest {
    let request = LeaveGroupRequest::default().with_group_id(group());
    if version < 3 {
        return request.with_member_id(name("m-1"));
    }
    let member = MemberIdentity::default()
        .with_member_id(name("m-1"))
        .with_group_instance_id(Some(name("static-1")))
        .with_reason((version >= 5).then(|| name("closing")));
    request.with_members(vec![member])
}

fn offset_commit(version: i16) -> OffsetCommitRequest {
    let partition = OffsetCommitRequestPartition::default()
        .with_partition_index(1)
        .with_committed_offset(42)
        .with_committed_leader_epoch(if version >= 6 { 2 } else { -1 })
        .with_committed_metadata(Some(name("meta")));
    let topic = OffsetCommitRequestTopic::default()
        .with_name(topic())
        .with_partitions(vec![partition]);
    OffsetCommitRequest::default()
        .with_group_id(group())
        .with_generation_id_or_member_epoch(3)
        .with_member_id(name("m-1"))
        .with_group_instance_id((version >= 7).then(|| name("static-1")))
        .with_retention_time_ms(if version <= 4 { 60_000 } else { -1 })
        .with_topics(vec![topic])
}

fn offset_fetch(version: i16) -> OffsetFetchRequest {
    if version >= 8 {
        let topics = OffsetFetchRequestTopics::default()
            .with_name(topic())
            .with_partition_indexes(vec![0, 1]);
        let group = OffsetFetchRequestGroup::default()
            .with_group_id(group())
            .with_member_id((version >= 9).then(|| name("m-1")))
            .with_member_epoch(if version >= 9 { 3 } else { -1 })
            .with_topics(Some(vec![topics]));
        return OffsetFetchRequest::default()
            .with_groups(vec![group])
            .with_require_stable(true);
    }
    let topics = OffsetFetchRequestTopic::default()
        .with_name(topic())
        .with_partition_indexes(vec![0, 1]);
    OffsetFetchRequest::default()
        .with_group_id(group())
        .with_topics(Some(vec![topics]))
        .with_require_stable(version >= 7)
}

pub(super) fn sample_response(api_key: ApiKey, version: i16) -> Response {
    match api_key {
        ApiKey::JoinGroup => Response::JoinGroup(
            JoinGroupResponse::default()
                .with_generation_id(3)
                .with_protocol_name(Some(name("range")))
                .with_leader(name("m-1"))
                .with_member_id(name("m-1"))
                .with_members(vec![JoinGroupResponseMember::default()
                    .with_member_id(name("m-1"))
                    .with_metadata(Bytes::from_static(b"subscription"))]),
        ),
        ApiKey::SyncGroup => Response::SyncGroup(
            SyncGroupResponse::default().with_assignment(Bytes::from_static(b"assignment")),
        ),
        ApiKey::Heartbeat => Response::Heartbeat(HeartbeatResponse::default().with_error_code(27)),
        ApiKey::LeaveGroup => Response::LeaveGroup(if version >= 3 {
            LeaveGroupResponse::default().with_members(vec![MemberResponse::default()
                .with_member_id(name("m-1"))
                .with_error_code(25)])
        } else {
            LeaveGroupResponse::default().with_error_code(25)
        }),
        ApiKey::OffsetCommit => Response::OffsetCommit(OffsetCommitResponse::default().with_topics(vec![
            OffsetCommitResponseTopic::default()
                .with_name(topic())
                .with_partitions(vec![OffsetCommitResponsePartition::default()
                    .with_partition_index(1)
                    .with_error_code(22)]),
        ])),
        ApiKey::OffsetFetch => Response::OffsetFetch(offset_fetch_response(version)),
        other => panic!("no sample for {other:?}"),
    }
}

fn offset_fetch_response(version: i16) -> OffsetFetchResponse {
    if version >= 8 {
        let partition = OffsetFetchResponsePartitions::default()
            .with_partition_index(1)
            .with_committed_offset(42)
            .with_committed_leader_epoch(2)
            .with_metadata(Some(name("meta")));
        let topics = OffsetFetchResponseTopics::default()
            .with_name(topic())
            .with_partitions(vec![partition]);
        return OffsetFetchResponse::default().with_groups(vec![OffsetFetchResponseGroup::default()
            .with_group_id(group())
            .with_topics(vec![topics])]);
    }
    let partition = OffsetFetchResponsePartition::default()
        .with_partition_index(1)
        .with_committed_offset(42)
        .with_committed_leader_epoch(2)
        .with_metadata(Some(name("meta")));
    OffsetFetchResponse::default().with_topics(vec![OffsetFetchResponseTopic::default()
        .with_name(topic())
        .with_partitions(vec![partition])])
}
