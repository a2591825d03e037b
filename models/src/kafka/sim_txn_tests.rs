//! Transactions across simulated brokers: the coordinator of a transaction is not the leader
//! of its partition, so the commit marker travels as WriteTxnMarkers between brokers; a
//! leader cut off from the coordinator takes the marker once the network heals. Nobody
//! creates `__transaction_state` but the brokers, at the first transactional FindCoordinator.

use super::*;
use crate::kafka::txn_state::partition_for;
use kafka_protocol::messages::{
    add_partitions_to_txn_request, list_offsets_request, AddPartitionsToTxnRequest, EndTxnRequest,
    FindCoordinatorRequest, InitProducerIdRequest, ListOffsetsRequest, ProducerId, TransactionalId,
};

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn now_ms(env: &Env) -> u64 {
    env.now().0 / 1000
}

/// The leader of orders-0 as its host, asking every broker in turn.
async fn orders_leader(env: &Env) -> Option<String> {
    for broker in ["broker1", "broker2", "broker3"] {
        let request = Request::Metadata(MetadataRequest::default().with_topics(None));
        if let Some(Response::Metadata(m)) = call(env, broker, 12, &request).await {
            let topic = m
                .topics
                .iter()
                .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "orders"))?;
            let leader = topic.partitions.first()?.leader_id.0;
            if leader > 0 {
                return Some(format!("broker{leader}"));
            }
        }
    }
    None
}

/// The transaction coordinator of `id`, once the state topic has a leader for it.
async fn txn_coordinator(env: &Env, id: &str) -> Option<String> {
    let request = Request::FindCoordinator(
        FindCoordinatorRequest::default()
            .with_key(name(id))
            .with_key_type(1),
    );
    match call(env, "broker3", 3, &request).await {
        Some(Response::FindCoordinator(found)) if found.error_code == 0 => {
            Some(format!("broker{}", found.node_id.0))
        }
        _ => None,
    }
}

/// Asks `request` of `to` until its error code (read by `code`) is 0, at most 40 times.
async fn until_ok(
    env: &Env,
    to: &str,
    version: i16,
    request: Request,
    code: fn(&Response) -> i16,
) -> Option<Response> {
    for _ in 0..40 {
        if let Some(answer) = call(env, to, version, &request).await {
            if code(&answer) == 0 {
                return Some(answer);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(name(id))
}

/// The transactional produce of one record to orders-0.
fn txn_produce(id: &str, (pid, epoch): (i64, i16)) -> Request {
    let batch = Batch {
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: 0,
        transactional: true,
        ..Batch::plain(vec![Record {
            key: None,
            value: Some(b"in a transaction".to_vec()),
        }])
    };
    let partition = produce_request::PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(encode_batch(&batch, 0)));
    let topic = produce_request::TopicProduceData::default()
        .with_name(TopicName(name("orders")))
        .with_partition_data(vec![partition]);
    Request::Produce(
        ProduceRequest::default()
            .with_transactional_id(Some(txn_id(id)))
            .with_acks(-1)
            .with_timeout_ms(5_000)
            .with_topic_data(vec![topic]),
    )
}

/// orders-0's last stable offset at its leader (ListOffsets latest, read_committed).
async fn last_stable_offset(env: &Env, leader: &str) -> Option<i64> {
    let asked = list_offsets_request::ListOffsetsPartition::default()
        .with_partition_index(0)
        .with_timestamp(-1);
    let request = Request::ListOffsets(
        ListOffsetsRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_isolation_level(1)
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(TopicName(name("orders")))
                .with_partitions(vec![asked])]),
    );
    let Some(Response::ListOffsets(answer)) = call(env, leader, 7, &request).await else {
        return None;
    };
    let p = answer.topics.first()?.partitions.first()?;
    (p.error_code == 0).then_some(p.offset)
}

/// Picks a transactional id whose coordinator does not lead
/// orders-0 (note `txn.coordinator`), runs InitProducerId, AddPartitionsToTxn and a produce,
/// commits at `commit_at_ms` (note `txn.committed`), then notes each new LSO of orders-0
/// (`txn.lso`, "<ms> <offset>") until it passes the marker.
pub(super) async fn transactional(env: Env, commit_at_ms: u64) -> turmoil::Result {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let Some((id, coordinator, leader)) = pick_transaction(&env).await else {
        env.note("client", "txn.no_coordinator");
        return Ok(());
    };
    env.note_with(
        "client",
        "txn.coordinator",
        format!("{id} {coordinator} {leader}"),
    );
    let Some(producer) = open_transaction(&env, &id, &coordinator, &leader).await else {
        env.note("client", "txn.not_opened");
        return Ok(());
    };
    tokio::time::sleep(Duration::from_millis(commit_at_ms.saturating_sub(now_ms(&env)))).await;
    let end = Request::EndTxn(
        EndTxnRequest::default()
            .with_transactional_id(txn_id(&id))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_committed(true),
    );
    let code = |r: &Response| match r {
        Response::EndTxn(e) => e.error_code,
        _ => -1,
    };
    if let Some(lso) = last_stable_offset(&env, &leader).await {
        env.note_with("client", "txn.lso", format!("{} {lso}", now_ms(&env)));
    }
    if until_ok(&env, &coordinator, 3, end, code).await.is_some() {
        env.note_with("client", "txn.committed", now_ms(&env).to_string());
    }
    let mut last = Some(0);
    for _ in 0..120 {
        let lso = last_stable_offset(&env, &leader).await;
        if lso.is_some() && lso != last {
            env.note_with(
                "client",
                "txn.lso",
                format!("{} {}", now_ms(&env), lso.unwrap_or(-1)),
            );
            last = lso;
        }
        if lso.is_some_and(|o| o >= 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// A transactional id coordinated by a broker other than orders-0's leader:
/// (id, coordinator, leader). The first FindCoordinator has the broker ask the controller
/// for `__transaction_state`; until it has leaders the answer is COORDINATOR_NOT_AVAILABLE.
async fn pick_transaction(env: &Env) -> Option<(String, String, String)> {
    let leader = orders_leader(env).await?;
    for _attempt in 0..20 {
        for n in 0..10 {
            let id = format!("txn-{n}");
            match txn_coordinator(env, &id).await {
                Some(coordinator) if coordinator != leader => return Some((id, coordinator, leader)),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// InitProducerId, AddPartitionsToTxn(orders-0) and one transactional produce.
async fn open_transaction(env: &Env, id: &str, coordinator: &str, leader: &str) -> Option<(i64, i16)> {
    let init = Request::InitProducerId(
        InitProducerIdRequest::default()
            .with_transactional_id(Some(txn_id(id)))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    );
    let code = |r: &Response| match r {
        Response::InitProducerId(i) => i.error_code,
        _ => -1,
    };
    let Response::InitProducerId(init) = until_ok(env, coordinator, 4, init, code).await? else {
        return None;
    };
    let producer = (init.producer_id.0, init.producer_epoch);
    let add = Request::AddPartitionsToTxn(
        AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(txn_id(id))
            .with_v3_and_below_producer_id(ProducerId(producer.0))
            .with_v3_and_below_producer_epoch(producer.1)
            .with_v3_and_below_topics(vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(name("orders")))
                    .with_partitions(vec![0]),
            ]),
    );
    let code = |r: &Response| match r {
        Response::AddPartitionsToTxn(a) => {
            a.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
        }
        _ => -1,
    };
    until_ok(env, coordinator, 3, add, code).await?;
    let code = |r: &Response| match r {
        Response::Produce(p) => p.responses[0].partition_responses[0].error_code,
        _ => -1,
    };
    until_ok(env, leader, 9, txn_produce(id, producer), code).await?;
    Some(producer)
}

fn run_transaction(commit_at_ms: u64, schedule: Vec<ScheduledFault>) -> sim::History {
    let scenario = Scenario::parse(
        "t.toml",
        "design = \"cluster3\"\n[run]\nfault_phase_ms = 30000\ndrain_ms = 1000\n",
    )
    .unwrap();
    let design = Cluster3 {
        leaders: Rc::new(RefCell::new(BTreeMap::new())),
        offsets_partitions: 3,
        client: ClientKind::Transactional { commit_at_ms },
    };
    sim::run(&scenario, &design, schedule, 1).history
}

/// The LSO notes as (ms, offset).
fn lsos(history: &sim::History) -> Vec<(u64, i64)> {
    notes(history, "txn.lso")
        .iter()
        .map(|n| {
            let (ms, offset) = n.split_once(' ').expect("two numbers");
            (ms.parse().expect("ms"), offset.parse().expect("offset"))
        })
        .collect()
}

/// The hosts that noted `wanted`, in order.
fn noted_by(history: &sim::History, wanted: &str) -> Vec<String> {
    history
        .events()
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Note { name, .. } if name == wanted))
        .map(|e| e.host.to_string())
        .collect()
}

fn marker_hosts(history: &sim::History) -> Vec<String> {
    noted_by(history, "kafka.txn_commit_marker_written")
}

#[test]
fn a_commit_marker_goes_to_the_leader_of_a_partition_another_broker_coordinates() {
    // Which state partition the ids fall in (Java's String.hashCode, 3 partitions).
    assert_eq!(partition_for("txn-0", 3), partition_for("txn-3", 3));
    let history = run_transaction(3_000, Vec::new());
    let chosen = notes(&history, "txn.coordinator");
    assert_eq!(chosen.len(), 1, "{chosen:?}");
    let parts: Vec<&str> = chosen[0].split(' ').collect();
    let (coordinator, leader) = (parts[1], parts[2]);
    assert_ne!(coordinator, leader);
    assert_eq!(notes(&history, "txn.committed").len(), 1);
    let lsos = lsos(&history);
    assert_eq!(
        lsos.first().map(|l| l.1),
        Some(0),
        "held at the open transaction: {lsos:?}"
    );
    assert_eq!(
        lsos.last().map(|l| l.1),
        Some(2),
        "the record and its marker: {lsos:?}"
    );
    assert_eq!(marker_hosts(&history), [leader], "the leader appended the marker");
    assert!(noted_by(&history, "kafka.txn_markers_send_failed").is_empty());
}

#[test]
fn a_marker_for_a_partitioned_leader_lands_after_the_heal() {
    // orders-0 is led by broker1 (the controller's first choice), the coordinator is another
    // broker; broker1 is cut off from the other brokers (not from the controller or the
    // client) from 2.5 s to 14 s. It leaves the ISR of the coordinator's state partition
    // after `replica.lag.time.max.ms` (5 s here), so the commit at 8.5 s is written and
    // answered while the marker cannot reach broker1.
    let cut = ScheduledFault::new(
        2_500,
        FaultAction::Partition {
            a: vec!["broker1".into()],
            b: vec!["broker2".into(), "broker3".into()],
            oneway: false,
        },
    );
    let heal = ScheduledFault::new(14_000, FaultAction::Heal);
    let history = run_transaction(8_500, vec![cut, heal]);
    let chosen = notes(&history, "txn.coordinator");
    assert!(
        chosen.len() == 1 && chosen[0].ends_with(" broker1") && !chosen[0].contains("broker1 "),
        "{chosen:?}"
    );
    let coordinator = chosen[0].split(' ').nth(1).expect("three words").to_string();
    // The coordinator wrote PrepareCommit during the cut (the client's first EndTxn may
    // time out meanwhile; its retry is answered once the markers are in).
    let prepared: Vec<u64> = history
        .events()
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Note { name, .. } if name == "kafka.txn_prepare_commit"))
        .map(|e| e.time.0 / 1000)
        .collect();
    assert!(
        prepared.len() == 1 && (8_500..14_000).contains(&prepared[0]),
        "prepared during the cut: {prepared:?}"
    );
    assert_eq!(notes(&history, "txn.committed").len(), 1);
    let lsos = lsos(&history);
    assert_eq!(
        lsos.first().map(|l| l.1),
        Some(0),
        "held at the open transaction: {lsos:?}"
    );
    // A send that timed out during the cut may still arrive after the heal, and its retry
    // too: Kafka appends such a second marker as well (LSO 3 then).
    assert!(lsos.last().is_some_and(|l| l.1 >= 2), "{lsos:?}");
    let written: Vec<u64> = history
        .events()
        .iter()
        .filter(
            |e| matches!(&e.kind, EventKind::Note { name, .. } if name == "kafka.txn_commit_marker_written"),
        )
        .map(|e| e.time.0 / 1000)
        .collect();
    assert!(
        written.first().is_some_and(|ms| (14_000..15_000).contains(ms)),
        "the marker lands soon after the heal: {written:?}"
    );
    assert!(
        noted_by(&history, "kafka.txn_markers_send_failed")
            .iter()
            .all(|host| *host == coordinator)
            && !noted_by(&history, "kafka.txn_markers_send_failed").is_empty(),
        "the fault path ran: a send failed"
    );
    let markers = marker_hosts(&history);
    assert!(
        !markers.is_empty() && markers.iter().all(|h| h == "broker1"),
        "{markers:?}"
    );
}
