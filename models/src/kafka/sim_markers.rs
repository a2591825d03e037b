//! A broker's transaction marker sender in the simulation (Kafka's
//! `TransactionMarkerChannelManager`): the coordinator's markers for partitions other brokers
//! lead go to each leader as WriteTxnMarkers over Kafka's wire protocol, and the per-partition
//! answers come back to the coordinator ([`super::broker::Broker::markers_answered`]).
//!
//! One task per leader, each with its own connection, so a leader that cannot be reached
//! holds back only its own markers. A failed connection, a lost or late answer, or an answer
//! that does not name a partition counts as those partitions failing; the coordinator sends
//! them again after [`super::broker_txn::MARKER_RETRY_MS`].

use super::connection::Connection;
use super::handler_markers::{markers_failed, markers_request, markers_results};
use super::sim_broker::Node;
use super::txn_coordinator::Markers;
use super::wire::Response;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Kafka's marker channel uses `request.timeout.ms` (30 s); a shorter bound, as the replica
/// fetcher's, keeps a marker for a partitioned leader from waiting out half a fault phase
/// before it is sent again (perhaps to a new leader).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The dispatcher of a broker process: each leader's markers to that leader's sender task,
/// started on first use.
pub(super) async fn run(node: Rc<Node>, mut queue: mpsc::UnboundedReceiver<(i32, Markers)>) {
    let mut senders: BTreeMap<i32, mpsc::UnboundedSender<Markers>> = BTreeMap::new();
    while let Some((leader, markers)) = queue.recv().await {
        let sender = senders.entry(leader).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::task::spawn_local(send_to(node.clone(), leader, rx));
            tx
        });
        // The coordinator has at most one send in flight per transaction and partition, so
        // the queues are bounded by its open transactions. The sender tasks end only with
        // the process, and this task with them.
        let _ = sender.send(markers);
    }
}

fn answered(
    node: &Node,
    markers: &Markers,
    answers: Vec<(
        super::controller::TopicPartition,
        Result<(), super::error::KafkaError>,
    )>,
) {
    let now = node.now_ms();
    node.broker.borrow_mut().markers_answered(markers, answers, now);
    node.pump();
}

/// The sender to one leader: a request at a time, each answered (or failed) before the next.
async fn send_to(node: Rc<Node>, leader: i32, mut queue: mpsc::UnboundedReceiver<Markers>) {
    let host = format!("broker{leader}");
    let mut connection: Option<Connection> = None;
    while let Some(markers) = queue.recv().await {
        node.process.checkpoint().await;
        if !connection.as_ref().is_some_and(Connection::is_open) {
            connection = Connection::open(&node.env, &node.host, &host, REQUEST_TIMEOUT, REQUEST_TIMEOUT)
                .await
                .ok();
        }
        let answer = match connection.as_mut() {
            Some(open) => open.request(&markers_request(&markers)).await.ok(),
            None => None,
        };
        let results = match answer {
            Some(Response::WriteTxnMarkers(response)) => markers_results(&markers, &response),
            _ => {
                node.env.note(&node.host, "kafka.txn_markers_send_failed");
                connection = None;
                markers_failed(&markers)
            }
        };
        answered(&node, &markers, results);
    }
}
