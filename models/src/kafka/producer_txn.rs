//! The producer's transactions on turmoil (child of `producer.rs`): the application's loop
//! of `beginTransaction`, `transaction_size` sends, then `commitTransaction` or, for a
//! fraction drawn from the run's RNG, `abortTransaction`; and the sender's transactional
//! requests from the [`TxnManager`] over a connection to the coordinator, one at a time
//! (Java's `Sender` sends no produce data while one is out, so the loop waits for it).
//! `sendOffsetsToTransaction`'s requests go the same way: AddOffsetsToTxn to the transaction
//! coordinator, the group's FindCoordinator (key type 0) to a bootstrap broker, and the
//! TxnOffsetCommit over a connection of its own to the group's coordinator.
//!
//! A transactional record's publish is settled when its transaction ends, as Jepsen judges
//! transactional sends: committed, `ok` at the offset its produce was answered with;
//! aborted, `fail`; fenced or crashed, left `info`. The history gets the notes the
//! transaction checkers read (`sim::checker::transactions`): `txn_publish` per send,
//! `txn_committed` or `txn_aborted` at the end.
//!
//! A fatal error other than fencing (INVALID_TXN_STATE, say) makes the application close the
//! producer and build a new one with the same `transactional.id` (reference §2.5's simplest
//! policy); a fenced one stops, another instance having taken over. Under v1, every
//! transaction that ends after an EndTxn of this instance went unanswered is also noted
//! (`producer.txn_after_unanswered_end_txn`): a copy of that EndTxn may still reach the
//! coordinator and end a later transaction of the same producer id and epoch (KIP-890),
//! the window the promise documents. So is every transaction that ends after a batch of this
//! instance failed with its Produce unanswered (`producer.txn_after_unanswered_produce`): the
//! leader may still receive that Produce after the abort's markers, and under v1 it is in
//! sequence and of the current epoch there (the client's KIP-360 bump reaches the leader only
//! with the next batch), so it opens a transaction at the leader that the next transaction's
//! marker ends, commit included (KIP-890's delayed produce).

use super::*;
use crate::kafka::client::error_name;
use crate::kafka::txn_manager::{ClientProtocol, TxnEnd, TxnManager, TxnRequest, TxnState};
use crate::kafka::txn_offsets;
use kafka_protocol::messages::{
    add_partitions_to_txn_request, AddPartitionsToTxnRequest, ApiKey, EndTxnRequest, FindCoordinatorRequest,
    TransactionalId,
};
use rand::Rng;
use sim::checker::transactions::{TXN_ABORTED, TXN_COMMITTED, TXN_PUBLISH, TXN_WRITTEN};

/// The note of a v1 transaction that ended after an EndTxn of the same producer instance
/// went unanswered: the promise's documented window.
pub const TXN_AFTER_UNANSWERED_END_TXN: &str = "producer.txn_after_unanswered_end_txn";

/// The note of a v1 transaction that ended after a batch of the same producer instance failed
/// with its Produce unanswered (delivery timeout in flight): the promise's documented window.
pub const TXN_AFTER_UNANSWERED_PRODUCE: &str = "producer.txn_after_unanswered_produce";

/// `transactional.id` and the application's transactions.
#[derive(Clone, Debug)]
pub struct TxnSettings {
    /// The producer's `transactional.id`: its host name, so a restart is the same
    /// application instance and fences the one before.
    pub transactional_id: String,
    pub protocol: ClientProtocol,
    /// Records per transaction.
    pub transaction_size: u32,
    /// The fraction of transactions the application aborts.
    pub abort_fraction: f64,
    /// `transaction.timeout.ms` (60000).
    pub transaction_timeout_ms: u64,
}

/// The application's side of the transactions of one producer incarnation.
pub(super) struct TxnApp {
    pub(super) settings: TxnSettings,
    pub(super) manager: TxnManager,
    coordinator: Option<Connection>,
    coordinator_host: Option<String>,
    /// The consumer group's coordinator, for `sendOffsetsToTransaction`'s TxnOffsetCommit.
    group_coordinator: Option<Connection>,
    group_coordinator_host: Option<String>,
    /// Transactions begun, for their names.
    begun: u64,
    /// Records sent in the open transaction.
    sent: u32,
    /// The open transaction's records, with their outcome once the accumulator has it.
    members: BTreeMap<RecordId, (MsgId, i32, Option<Outcome>)>,
    retry_at_ms: u64,
    /// An EndTxn of this instance went unanswered: under v1 a copy of it may still reach
    /// the coordinator and end a later transaction (KIP-890's window).
    end_unanswered: bool,
    /// A batch of this instance failed while its Produce was unanswered: under v1 that
    /// Produce may still land after the abort (KIP-890's delayed produce).
    produce_unanswered: bool,
}

impl TxnApp {
    pub(super) fn new(settings: TxnSettings) -> TxnApp {
        let mut manager = TxnManager::new(settings.protocol);
        manager.initialize();
        TxnApp {
            settings,
            manager,
            coordinator: None,
            coordinator_host: None,
            group_coordinator: None,
            group_coordinator_host: None,
            begun: 0,
            sent: 0,
            members: BTreeMap::new(),
            retry_at_ms: 0,
            end_unanswered: false,
            produce_unanswered: false,
        }
    }

    /// The next instance after a fatal error: the same settings, transaction names going on.
    pub(super) fn after(old: TxnApp) -> TxnApp {
        let mut next = TxnApp::new(old.settings);
        next.begun = old.begun;
        next
    }

    /// Fenced by another instance with the same transactional id.
    pub(super) fn fenced(&self) -> bool {
        self.manager.state() == &TxnState::Fatal(KafkaError::ProducerFenced)
    }

    /// Whether the application may `send()` now.
    pub(super) fn may_send(&self) -> bool {
        self.manager.state() == &TxnState::InTransaction && self.sent < self.settings.transaction_size
    }

    /// Nothing open and nothing owed.
    pub(super) fn idle(&self) -> bool {
        self.members.is_empty() && matches!(self.manager.state(), TxnState::Ready | TxnState::Fatal(_))
    }
}

impl Producer {
    fn txn_name(&self, number: u64) -> String {
        format!("{}#{number}", self.name)
    }

    /// The application's step and the sender's transactional request, if one is due.
    /// False when the producer is fenced and must stop.
    pub(super) async fn txn_turn(&mut self) -> bool {
        if self.txn.is_none() {
            return true;
        }
        // Outcomes the accumulator decided count before the transaction may end.
        self.record_outcomes();
        self.txn_application();
        // An abort fails the batches never sent: their outcomes belong to this transaction.
        self.record_outcomes();
        let now_ms = self.now_ms();
        let Some(app) = self.txn.as_mut() else {
            return true;
        };
        if now_ms >= app.retry_at_ms {
            let incomplete = self.accumulator.pending_records() > 0;
            if let Some(request) = app.manager.next_request(incomplete) {
                self.txn_send(request).await;
            }
        }
        self.txn_settle();
        !self.txn.as_ref().is_some_and(|a| a.manager.is_fatal())
    }

    /// When the loop must come back for a transactional request that is due.
    pub(super) fn txn_wakeup_ms(&self, now_ms: u64) -> Option<u64> {
        let app = self.txn.as_ref()?;
        let incomplete = self.accumulator.pending_records() > 0;
        app.manager
            .has_request(incomplete)
            .then(|| app.retry_at_ms.max(now_ms + 1))
    }

    /// `beginTransaction` when there is work, and the end once its records are sent.
    fn txn_application(&mut self) {
        let unpublished = self.feed.unpublished();
        let bump = self.accumulator.take_epoch_bump_request();
        let Some(app) = self.txn.as_mut() else {
            return;
        };
        if bump {
            app.manager.batch_failed(None);
        }
        match app.manager.state() {
            TxnState::Ready if unpublished > 0 && app.members.is_empty() => {
                app.manager.begin().expect("ready");
                app.begun += 1;
                app.sent = 0;
            }
            TxnState::InTransaction
                if app.sent >= app.settings.transaction_size || (unpublished == 0 && app.sent > 0) =>
            {
                let abort = self.env.rng().random_bool(app.settings.abort_fraction);
                // A transformer's batch: its input offsets join the transaction before the
                // commit (sendOffsetsToTransaction), unless it commits them apart.
                let offsets = self.feed.transform().and_then(|feed| feed.take_offsets());
                if let Some(offsets) = offsets {
                    app.manager.send_offsets(offsets).expect("in a transaction, once");
                }
                match abort {
                    true => self.txn_abort(),
                    false => app.manager.begin_commit().expect("in a transaction"),
                }
            }
            // commitTransaction threw: the application aborts (Java's documented handling).
            TxnState::AbortableError => self.txn_abort(),
            _ => {}
        }
    }

    fn txn_abort(&mut self) {
        let app = self.txn.as_mut().expect("transactional");
        app.manager.begin_abort().expect("an open transaction");
        self.accumulator.abort_undrained();
        self.note("txn_abort_requested");
    }

    /// Records a transactional send: its history note, and its partition joining.
    pub(super) fn txn_sent(&mut self, record_id: RecordId, id: MsgId, partition: i32) {
        let app = self.txn.as_mut().expect("transactional");
        app.sent += 1;
        app.members.insert(record_id, (id, partition, None));
        app.manager
            .add_partition(u32::try_from(partition).expect("partitions count from 0"));
        let name = self.txn_name(self.txn.as_ref().expect("transactional").begun);
        self.env
            .note_with(&self.host, TXN_PUBLISH, format!("txn={name} id={id}"));
    }

    /// A transactional record's outcome waits for its transaction's end; a failed batch
    /// leaves the transaction only an abort.
    pub(super) fn txn_outcome(&mut self, record_id: RecordId, outcome: Outcome) -> bool {
        let Some(app) = self.txn.as_mut() else {
            return false;
        };
        let Some(member) = app.members.get_mut(&record_id) else {
            return false;
        };
        member.2 = Some(outcome);
        match outcome {
            Outcome::Acked { .. }
            | Outcome::Failed {
                reason: FailReason::TransactionAborted,
            } => {}
            Outcome::Failed { reason } | Outcome::Unknown { reason } => {
                // Unknown: its Produce was out when it failed, and may still be appended.
                app.produce_unanswered |= matches!(outcome, Outcome::Unknown { .. });
                let error = match reason {
                    FailReason::Broker(e) => Some(e),
                    _ => None,
                };
                app.manager.batch_failed(error);
            }
        }
        true
    }

    /// After an answer: the accumulator's partitions and producer id follow the manager's,
    /// and an ended transaction settles its records.
    fn txn_settle(&mut self) {
        let app = self.txn.as_mut().expect("transactional");
        let partitions = app.manager.partitions().clone();
        self.accumulator.set_transaction_partitions(&partitions);
        if let Some((producer_id, epoch)) = app.manager.producer() {
            if self.accumulator.producer_id_and_epoch() != Some((producer_id, epoch)) {
                self.accumulator.set_producer_id(producer_id, epoch);
            }
        }
        if let Some(end) = app.manager.take_ended() {
            self.txn_ended(end);
        }
        if self.txn.as_ref().expect("transactional").manager.is_fatal() {
            self.txn_fenced();
        }
    }

    fn txn_ended(&mut self, end: TxnEnd) {
        let app = self.txn.as_mut().expect("transactional");
        let members = std::mem::take(&mut app.members);
        let name = format!("{}#{}", self.name, app.begun);
        for (id, partition, outcome) in members.into_values() {
            if let Some(Outcome::Acked { offset: Some(offset) }) = outcome {
                // Where the record sits, committed or aborted: the checkers tell copies of
                // one message apart by it.
                let at = partition_name(&self.settings.topic, partition);
                let detail = format!("txn={name} id={id} partition={at} offset={offset}");
                self.env.note_with(&self.host, TXN_WRITTEN, detail);
            }
            if self.feed.endless() {
                continue; // a transformer's copy: the publish is the upstream producer's
            }
            let kind = match (end, outcome) {
                (TxnEnd::Committed, Some(Outcome::Acked { offset })) => EventKind::PublishOk {
                    id,
                    partition: Some(partition_name(&self.settings.topic, partition).into()),
                    offset,
                },
                (TxnEnd::Committed, _) => EventKind::PublishInfo {
                    id,
                    reason: "committed without its produce answer".into(),
                },
                (TxnEnd::Aborted, _) => EventKind::PublishFail {
                    id,
                    error: "TransactionAborted".into(),
                },
            };
            self.env.record(&self.host, kind);
        }
        let note = match end {
            TxnEnd::Committed => TXN_COMMITTED,
            TxnEnd::Aborted => TXN_ABORTED,
        };
        let v1 = app.settings.protocol == ClientProtocol::V1;
        let windows = [
            (app.end_unanswered, TXN_AFTER_UNANSWERED_END_TXN),
            (app.produce_unanswered, TXN_AFTER_UNANSWERED_PRODUCE),
        ];
        self.env.note_with(&self.host, note, format!("txn={name}"));
        if let Some(feed) = self.feed.transform() {
            feed.settle(match end {
                TxnEnd::Committed => BatchOutcome::Committed,
                TxnEnd::Aborted => BatchOutcome::Aborted,
            });
        }
        for (open, window) in windows {
            if v1 && open {
                // The timeline's marker of KIP-890's window: this transaction ended while a
                // copy of an earlier EndTxn or Produce, with the same producer id and
                // epoch, may be late.
                self.env.note_with(&self.host, window, format!("txn={name}"));
            }
        }
    }

    /// Fenced or failed for good: the application closes the producer. Its open
    /// transaction's records stay `info` (the coordinator decides them).
    fn txn_fenced(&mut self) {
        let app = self.txn.as_mut().expect("transactional");
        let state = format!("{:?}", app.manager.state());
        let fenced = app.fenced();
        let members = std::mem::take(&mut app.members);
        if let Some(feed) = self.feed.transform() {
            // The batch's transaction is the coordinator's to abort now.
            feed.settle(if fenced {
                BatchOutcome::Fenced
            } else {
                BatchOutcome::Aborted
            });
        }
        for (_, (id, _, _)) in members.into_iter().filter(|_| !self.feed.endless()) {
            self.env.record(
                &self.host,
                EventKind::PublishInfo {
                    id,
                    reason: state.clone(),
                },
            );
        }
        self.env.note_with(&self.host, "producer.txn_fatal", state);
    }

    /// Sends one transactional request and hands its answer to the manager.
    async fn txn_send(&mut self, request: TxnRequest) {
        let retry_at_ms = |p: &Producer| p.now_ms() + p.settings.producer.retry_backoff_ms;
        match &request {
            TxnRequest::FindCoordinator | TxnRequest::FindGroupCoordinator { .. } => {
                return self.txn_send_find(&request).await;
            }
            TxnRequest::TxnOffsetCommit { .. } => return self.txn_send_offsets(&request).await,
            _ => {}
        }
        let wire = self.txn_wire_request(&request);
        let answer = match self.txn_coordinator_connection().await {
            Some(connection) => connection.request(&wire).await.ok(),
            None => None,
        };
        let retry_at_ms = retry_at_ms(self);
        let app = self.txn.as_mut().expect("transactional");
        let Some(answer) = answer else {
            app.end_unanswered |= matches!(request, TxnRequest::EndTxn { .. });
            app.coordinator = None;
            app.manager.on_no_answer();
            app.retry_at_ms = retry_at_ms;
            self.note("txn_request_unanswered");
            return;
        };
        self.txn_answer(&request, answer);
    }

    /// FindCoordinator for the transaction (key type 1) or the group (key type 0), sent
    /// apart from the coordinator's connection.
    async fn txn_send_find(&mut self, request: &TxnRequest) {
        let group = match request {
            TxnRequest::FindGroupCoordinator { group } => Some(group.clone()),
            _ => None,
        };
        let app = self.txn.as_ref().expect("transactional");
        let key = group
            .clone()
            .unwrap_or_else(|| app.settings.transactional_id.clone());
        let found = self
            .txn_find_coordinator(if group.is_some() { 0 } else { 1 }, key)
            .await;
        let retry_at_ms = self.now_ms() + self.settings.producer.retry_backoff_ms;
        let app = self.txn.as_mut().expect("transactional");
        let found = found.map(|host| {
            let (connection, known) = match group {
                Some(_) => (&mut app.group_coordinator, &mut app.group_coordinator_host),
                None => (&mut app.coordinator, &mut app.coordinator_host),
            };
            if known.as_deref() != Some(host.as_str()) {
                *connection = None;
            }
            *known = Some(host);
        });
        if found.is_err() {
            app.retry_at_ms = retry_at_ms;
        }
        match group {
            Some(_) => app.manager.on_find_group_coordinator(found),
            None => app.manager.on_find_coordinator(found),
        }
    }

    /// TxnOffsetCommit to the group's coordinator; unanswered, the manager looks the group's
    /// coordinator up again (Java's handler, as after NOT_COORDINATOR).
    async fn txn_send_offsets(&mut self, request: &TxnRequest) {
        let TxnRequest::TxnOffsetCommit { producer, offsets } = request else {
            return;
        };
        let timeouts = self.timeouts();
        let app = self.txn.as_mut().expect("transactional");
        let wire = Request::TxnOffsetCommit(txn_offsets::commit_request(
            &app.settings.transactional_id,
            *producer,
            offsets,
        ));
        if !app.group_coordinator.as_ref().is_some_and(Connection::is_open) {
            app.group_coordinator = match app.group_coordinator_host.clone() {
                Some(host) => {
                    Connection::open(&self.env, &self.host, &host, timeouts.connect, timeouts.request)
                        .await
                        .ok()
                }
                None => None,
            };
        }
        let answer = match app.group_coordinator.as_mut() {
            Some(connection) => connection.request(&wire).await.ok(),
            None => None,
        };
        let code = match answer {
            Some(Response::TxnOffsetCommit(answer)) => Some(txn_offsets::commit_code(&answer)),
            _ => None,
        };
        let retry_at_ms = self.now_ms() + self.settings.producer.retry_backoff_ms;
        let app = self.txn.as_mut().expect("transactional");
        if code.is_none() {
            app.group_coordinator = None;
            app.retry_at_ms = retry_at_ms;
            self.note("txn_request_unanswered");
        } else if code != Some(0) {
            app.retry_at_ms = retry_at_ms;
            let name = error_name(code.unwrap_or(0));
            self.env
                .note_with(&self.host, "producer.txn_request_refused", name);
        }
        let app = self.txn.as_mut().expect("transactional");
        app.manager.on_txn_offset_commit(code);
    }

    fn txn_answer(&mut self, request: &TxnRequest, answer: Response) {
        let backoff_ms = self.settings.producer.retry_backoff_ms;
        let now_ms = self.now_ms();
        let app = self.txn.as_mut().expect("transactional");
        let error = match (request, answer) {
            (TxnRequest::InitProducerId { .. }, Response::InitProducerId(a)) => {
                let result = code_result(a.error_code, (a.producer_id.0, a.producer_epoch));
                app.manager.on_init(result);
                a.error_code
            }
            (TxnRequest::AddPartitions { .. }, Response::AddPartitionsToTxn(a)) => {
                let code = a
                    .results_by_topic_v3_and_below
                    .iter()
                    .flat_map(|t| t.results_by_partition.iter())
                    .map(|p| p.partition_error_code)
                    .find(|c| *c != 0)
                    .unwrap_or(a.error_code);
                app.manager.on_add_partitions(code_result(code, ()));
                code
            }
            (TxnRequest::EndTxn { .. }, Response::EndTxn(a)) => {
                let result = code_result(a.error_code, (a.producer_id.0, a.producer_epoch));
                app.manager.on_end_txn(result);
                a.error_code
            }
            (TxnRequest::AddOffsets { .. }, Response::AddOffsetsToTxn(a)) => {
                app.manager.on_add_offsets(code_result(a.error_code, ()));
                a.error_code
            }
            _ => {
                app.coordinator = None;
                app.manager.on_no_answer();
                0
            }
        };
        if error != 0 {
            app.retry_at_ms = now_ms + backoff_ms;
            self.env
                .note_with(&self.host, "producer.txn_request_refused", error_name(error));
        }
    }

    fn txn_wire_request(&self, request: &TxnRequest) -> Request {
        let app = self.txn.as_ref().expect("transactional");
        let id = TransactionalId(StrBytes::from_string(app.settings.transactional_id.clone()));
        match request {
            // Sent apart by `txn_send`, never built here.
            TxnRequest::FindCoordinator
            | TxnRequest::FindGroupCoordinator { .. }
            | TxnRequest::TxnOffsetCommit { .. } => unreachable!("sent apart by txn_send"),
            TxnRequest::AddOffsets { producer, group } => Request::AddOffsetsToTxn(
                txn_offsets::add_offsets_request(&app.settings.transactional_id, *producer, group),
            ),
            TxnRequest::InitProducerId { expected } => {
                let (producer_id, epoch) = expected.unwrap_or((-1, -1));
                Request::InitProducerId(
                    InitProducerIdRequest::default()
                        .with_transactional_id(Some(id))
                        .with_transaction_timeout_ms(
                            i32::try_from(app.settings.transaction_timeout_ms).unwrap_or(i32::MAX),
                        )
                        .with_producer_id(ProducerId(producer_id))
                        .with_producer_epoch(epoch),
                )
            }
            TxnRequest::AddPartitions { producer, partitions } => {
                let topic = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_string(self.settings.topic.clone())))
                    .with_partitions(partitions.iter().map(|p| *p as i32).collect());
                Request::AddPartitionsToTxn(
                    AddPartitionsToTxnRequest::default()
                        .with_v3_and_below_transactional_id(id)
                        .with_v3_and_below_producer_id(ProducerId(producer.0))
                        .with_v3_and_below_producer_epoch(producer.1)
                        .with_v3_and_below_topics(vec![topic]),
                )
            }
            TxnRequest::EndTxn { producer, commit } => Request::EndTxn(
                EndTxnRequest::default()
                    .with_transactional_id(id)
                    .with_producer_id(ProducerId(producer.0))
                    .with_producer_epoch(producer.1)
                    .with_committed(*commit),
            ),
        }
    }

    /// The connection to the coordinator, opened if there is none.
    async fn txn_coordinator_connection(&mut self) -> Option<&mut Connection> {
        let timeouts = self.timeouts();
        let app = self.txn.as_mut().expect("transactional");
        let open = app.coordinator.as_ref().is_some_and(Connection::is_open);
        if !open {
            let host = app.coordinator_host.clone()?;
            let connection =
                Connection::open(&self.env, &self.host, &host, timeouts.connect, timeouts.request).await;
            app.coordinator = connection.ok();
        }
        app.coordinator.as_mut()
    }

    /// FindCoordinator of `key_type` (1: the transaction's, 0: a group's) for `key` from the
    /// next bootstrap broker: the coordinator's host.
    async fn txn_find_coordinator(&mut self, key_type: i8, key: String) -> Result<String, KafkaError> {
        let broker = self.next_bootstrap();
        let timeouts = self.timeouts();
        let mut connection =
            Connection::open(&self.env, &self.host, &broker, timeouts.connect, timeouts.request)
                .await
                .map_err(|_| KafkaError::CoordinatorNotAvailable)?;
        let key = StrBytes::from_string(key);
        let request = FindCoordinatorRequest::default().with_key_type(key_type);
        let request = match connection.version(ApiKey::FindCoordinator).unwrap_or(0) >= 4 {
            true => request.with_coordinator_keys(vec![key]),
            false => request.with_key(key),
        };
        let Ok(Response::FindCoordinator(answer)) =
            connection.request(&Request::FindCoordinator(request)).await
        else {
            return Err(KafkaError::CoordinatorNotAvailable);
        };
        let (code, host) = match answer.coordinators.first() {
            Some(c) => (c.error_code, c.host.to_string()),
            None => (answer.error_code, answer.host.to_string()),
        };
        code_result(code, host)
    }
}

fn code_result<T>(code: i16, value: T) -> Result<T, KafkaError> {
    match code {
        0 => Ok(value),
        code => Err(KafkaError::from_code(code).unwrap_or(KafkaError::UnknownServerError)),
    }
}
