//! Tests of `group`: every state transition and error code of one group's membership.

use super::broker::RequestId;
use super::group::*;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn join_request(member_id: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        client_id: "c".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), format!("meta-{member_id}-{p}").into_bytes()))
            .collect(),
    }
}

fn config() -> GroupConfig {
    GroupConfig::default()
}

/// A member joins a fresh group: MEMBER_ID_REQUIRED first, then the join waits.
fn first_join(group: &mut Group, request: u64, name: &str, now_ms: u64) -> String {
    let answer = group
        .join(
            RequestId(request),
            join_request("", &["range"]),
            name.to_string(),
            now_ms,
        )
        .expect("answered at once");
    assert_eq!(answer.error, Some(GroupError::MemberIdRequired));
    assert_eq!(answer.member_id, name);
    let waits = group.join(
        RequestId(request + 1),
        join_request(name, &["range"]),
        "unused".into(),
        now_ms,
    );
    assert_eq!(waits, None, "the join waits for the rebalance");
    name.to_string()
}

fn joined(group: &mut Group) -> Vec<(RequestId, JoinAnswer)> {
    group
        .take_answers()
        .into_iter()
        .map(|(r, a)| match a {
            GroupAnswer::Join(join) => (r, join),
            other => panic!("{other:?}"),
        })
        .collect()
}

/// Two members in generation 1, CompletingRebalance; "a" leads.
fn two_members() -> Group {
    let mut group = Group::new(config());
    first_join(&mut group, 1, "a", 0);
    first_join(&mut group, 3, "b", 100);
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    group.tick(2_999);
    assert!(group.take_answers().is_empty(), "the initial delay runs 3 s");
    group.tick(3_000);
    assert!(
        group.take_answers().is_empty(),
        "a member joined during the delay: extended"
    );
    group.tick(6_000);
    let answers = joined(&mut group);
    assert_eq!(answers.len(), 2);
    assert_eq!(group.state(), GroupState::CompletingRebalance);
    assert_eq!(group.generation_id(), 1);
    let (_, leader) = answers.iter().find(|(r, _)| *r == RequestId(2)).unwrap();
    assert_eq!(leader.leader, "a");
    assert_eq!(leader.members.len(), 2, "the leader gets every member's metadata");
    assert_eq!(leader.protocol_name.as_deref(), Some("range"));
    let (_, follower) = answers.iter().find(|(r, _)| *r == RequestId(4)).unwrap();
    assert!(follower.members.is_empty());
    group
}

fn stable() -> Group {
    let mut group = two_members();
    assert_eq!(
        group.sync(RequestId(10), "b", 1, vec![], 6_100),
        None,
        "the follower waits"
    );
    let assignments = vec![
        ("a".to_string(), b"p0".to_vec()),
        ("b".to_string(), b"p1".to_vec()),
    ];
    assert_eq!(group.sync(RequestId(11), "a", 1, assignments, 6_200), None);
    let mut answers = group.take_answers();
    answers.sort_by_key(|(r, _)| *r);
    assert_eq!(
        answers,
        vec![
            (RequestId(10), GroupAnswer::Sync(Ok(b"p1".to_vec()))),
            (RequestId(11), GroupAnswer::Sync(Ok(b"p0".to_vec()))),
        ]
    );
    assert_eq!(group.state(), GroupState::Stable);
    group
}

#[test]
fn a_new_group_waits_out_the_initial_delay_then_assigns_through_the_leader() {
    let mut group = stable();
    // A follower syncing again in Stable gets its assignment at once.
    assert_eq!(
        group.sync(RequestId(12), "b", 1, vec![], 6_300),
        Some(Ok(b"p1".to_vec()))
    );
}

#[test]
fn heartbeats_tell_members_about_rebalances_and_stale_generations() {
    let mut group = stable();
    assert_eq!(group.heartbeat("a", 1, 7_000), Ok(()));
    assert_eq!(group.heartbeat("a", 0, 7_000), Err(GroupError::IllegalGeneration));
    assert_eq!(group.heartbeat("zz", 1, 7_000), Err(GroupError::UnknownMemberId));
    // The follower rejoins with new metadata: a rebalance.
    assert_eq!(
        group.join(
            RequestId(20),
            join_request("b", &["roundrobin", "range"]),
            "x".into(),
            7_000
        ),
        None
    );
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    assert_eq!(
        group.heartbeat("a", 1, 7_100),
        Err(GroupError::RebalanceInProgress)
    );
    assert_eq!(
        group.sync(RequestId(21), "a", 1, vec![], 7_100),
        Some(Err(GroupError::RebalanceInProgress))
    );
    // A commit is still taken while preparing (Kafka relies on the heartbeat to tell).
    assert_eq!(group.validate_commit("a", 1, 7_100), Ok(()));
    // "a" rejoins: everyone is in, the join completes at once with generation 2.
    assert_eq!(
        group.join(RequestId(22), join_request("a", &["range"]), "x".into(), 7_200),
        None
    );
    let answers = joined(&mut group);
    assert_eq!(answers.len(), 2);
    assert!(answers
        .iter()
        .all(|(_, a)| a.generation_id == 2 && a.error.is_none()));
    assert_eq!(group.state(), GroupState::CompletingRebalance);
    assert_eq!(
        group.heartbeat("a", 2, 7_300),
        Ok(()),
        "heartbeats are fine before the sync"
    );
    assert_eq!(
        group.validate_commit("a", 2, 7_300),
        Err(GroupError::RebalanceInProgress)
    );
    assert_eq!(
        group.validate_commit("a", 1, 7_300),
        Err(GroupError::IllegalGeneration)
    );
}

#[test]
fn a_member_silent_past_its_session_timeout_is_removed_and_the_rest_rebalance() {
    let mut group = stable();
    for now in (7_000..16_000).step_by(1_000) {
        assert_eq!(group.heartbeat("a", 1, now), Ok(()));
        group.tick(now);
    }
    assert_eq!(
        group.state(),
        GroupState::Stable,
        "b's session (10 s from 6.1 s) has not run out"
    );
    assert_eq!(group.heartbeat("a", 1, 16_100), Ok(()));
    assert_eq!(group.tick(16_100), vec!["b".to_string()]);
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    assert_eq!(group.heartbeat("b", 1, 16_200), Err(GroupError::UnknownMemberId));
    // The zombie's commit fails: the Java client's CommitFailedException.
    assert_eq!(
        group.validate_commit("b", 1, 16_200),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        group.join(RequestId(30), join_request("a", &["range"]), "x".into(), 16_300),
        None
    );
    let answers = joined(&mut group);
    assert_eq!(answers[0].1.generation_id, 2);
    assert_eq!(answers[0].1.members.len(), 1);
}

#[test]
fn members_that_do_not_rejoin_within_the_rebalance_timeout_are_dropped() {
    let mut group = stable();
    assert_eq!(
        group.join(
            RequestId(40),
            join_request("b", &["range", "x"]),
            "x".into(),
            7_000
        ),
        None
    );
    // "a" keeps heartbeating (told to rejoin) but does not rejoin.
    let end_ms = 7_000 + REBALANCE_MS as u64;
    for now in (7_000..end_ms).step_by(5_000) {
        assert_eq!(group.heartbeat("a", 1, now), Err(GroupError::RebalanceInProgress));
        group.tick(now);
    }
    group.tick(end_ms - 1);
    assert!(group.take_answers().is_empty());
    group.tick(end_ms);
    let answers = joined(&mut group);
    assert_eq!(answers.len(), 1);
    assert_eq!(
        answers[0].1.leader, "b",
        "the leader left: the first remaining member leads"
    );
    assert_eq!(group.member_ids(), vec!["b".to_string()]);
}

#[test]
fn leaving_rebalances_and_the_last_member_leaves_an_empty_group() {
    let mut group = stable();
    assert_eq!(group.leave("zz", 7_000), Err(GroupError::UnknownMemberId));
    assert_eq!(group.leave("b", 7_000), Ok(()));
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    assert_eq!(
        group.join(RequestId(50), join_request("a", &["range"]), "x".into(), 7_100),
        None
    );
    assert_eq!(joined(&mut group).len(), 1);
    assert_eq!(group.sync(RequestId(51), "a", 2, vec![], 7_200), None);
    assert_eq!(group.take_answers().len(), 1);
    assert_eq!(group.leave("a", 7_300), Ok(()));
    assert_eq!(
        group.state(),
        GroupState::Empty,
        "no member left to rejoin: Empty at once"
    );
    assert_eq!(group.generation_id(), 3);
    // Simple commits (no generation) are taken by a group with no members.
    assert_eq!(group.validate_commit("", -1, 7_400), Ok(()));
}

#[test]
fn a_sync_from_a_stale_generation_or_an_unknown_member_is_refused() {
    let mut group = two_members();
    assert_eq!(
        group.sync(RequestId(60), "a", 0, vec![], 6_100),
        Some(Err(GroupError::IllegalGeneration))
    );
    assert_eq!(
        group.sync(RequestId(61), "q", 1, vec![], 6_100),
        Some(Err(GroupError::UnknownMemberId))
    );
    // The follower waits for the leader; a member leaving sends everyone back to rejoin.
    assert_eq!(group.sync(RequestId(62), "b", 1, vec![], 6_100), None);
    assert_eq!(group.leave("a", 6_200), Ok(()));
    assert_eq!(
        group.take_answers(),
        vec![(
            RequestId(62),
            GroupAnswer::Sync(Err(GroupError::RebalanceInProgress))
        )]
    );
}

#[test]
fn joins_are_checked_for_session_timeout_protocols_and_known_ids() {
    let mut group = Group::new(config());
    let mut short = join_request("", &["range"]);
    short.session_timeout_ms = 5_999;
    let refused = group.join(RequestId(1), short, "n".into(), 0).unwrap();
    assert_eq!(refused.error, Some(GroupError::InvalidSessionTimeout));
    let none = group
        .join(RequestId(2), join_request("", &[]), "n".into(), 0)
        .unwrap();
    assert_eq!(none.error, Some(GroupError::InconsistentGroupProtocol));
    let unknown = group
        .join(RequestId(3), join_request("ghost", &["range"]), "n".into(), 0)
        .unwrap();
    assert_eq!(unknown.error, Some(GroupError::UnknownMemberId));
    let mut group = stable();
    let other = group
        .join(RequestId(4), join_request("", &["sticky"]), "n".into(), 7_000)
        .unwrap();
    assert_eq!(
        other.error,
        Some(GroupError::InconsistentGroupProtocol),
        "no protocol in common"
    );
    // A follower rejoining with the same metadata in Stable gets the current generation.
    let same = group
        .join(RequestId(5), join_request("b", &["range"]), "n".into(), 7_000)
        .unwrap();
    assert_eq!((same.error, same.generation_id), (None, 1));
    assert_eq!(group.state(), GroupState::Stable);
}

#[test]
fn a_member_id_handed_out_lapses_after_the_session_timeout() {
    let mut group = Group::new(config());
    let answer = group
        .join(RequestId(1), join_request("", &["range"]), "p".into(), 0)
        .unwrap();
    assert_eq!(answer.error, Some(GroupError::MemberIdRequired));
    group.tick(SESSION_MS as u64);
    assert!(group.is_empty());
    let late = group
        .join(
            RequestId(2),
            join_request("p", &["range"]),
            "q".into(),
            SESSION_MS as u64,
        )
        .unwrap();
    assert_eq!(late.error, Some(GroupError::UnknownMemberId));
}

#[test]
fn the_protocol_is_chosen_by_vote_among_those_all_support() {
    let mut group = Group::new(config());
    for (i, (name, protocols)) in [
        ("a", vec!["rr", "range"]),
        ("b", vec!["range", "rr"]),
        ("c", vec!["range"]),
    ]
    .into_iter()
    .enumerate()
    {
        let r = i as u64 * 2;
        group.join(RequestId(r), join_request("", &protocols), name.into(), 0);
        group.join(RequestId(r + 1), join_request(name, &protocols), "x".into(), 0);
    }
    group.tick(3_000);
    group.tick(6_000);
    let answers = joined(&mut group);
    assert_eq!(answers.len(), 3, "{answers:?}");
    // c supports only range; of a's and b's first choices, range has two votes.
    assert!(answers
        .iter()
        .all(|(_, a)| a.protocol_name.as_deref() == Some("range")));
}

#[test]
fn unloading_answers_waiting_requests_not_coordinator() {
    let mut group = two_members();
    assert_eq!(group.sync(RequestId(70), "b", 1, vec![], 6_100), None);
    group.unload();
    assert_eq!(group.state(), GroupState::Dead);
    assert_eq!(
        group.take_answers(),
        vec![(RequestId(70), GroupAnswer::Sync(Err(GroupError::NotCoordinator)))]
    );
    assert_eq!(
        group.heartbeat("a", 1, 6_200),
        Err(GroupError::CoordinatorNotAvailable)
    );
    let join = group
        .join(RequestId(71), join_request("a", &["range"]), "x".into(), 6_200)
        .unwrap();
    assert_eq!(join.error, Some(GroupError::CoordinatorNotAvailable));
}
