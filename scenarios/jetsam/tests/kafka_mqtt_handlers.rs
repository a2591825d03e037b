//! User handlers on the Kafka and MQTT consumers (issue 13): a kill between the handler's
//! COMMIT and the acknowledgement (Kafka's offset commit, MQTT's PUBACK) makes the broker
//! deliver again; a careless handler charges twice, and an inbox handler holds.

use jetsam::{row, Check, Delivered, Handler, HandlerResult, Reply, Scenario, Tx, TxError, Update, Write};
use std::cell::RefCell;
use std::collections::BTreeSet;

/// Charges once per delivery: no guard against a redelivery.
struct Careless;

impl Handler for Careless {
    async fn handle(&self, message: &Delivered, tx: &mut Tx) -> HandlerResult {
        let customer = Update::new("accounts", (message.id % 4) as i64).add("balance", -10);
        tx.update(customer.marked(Write::effect("charge"))).await?;
        tx.commit().await?;
        Ok(Reply::Ack)
    }
}

/// Charges once per message: the inbox row's unique key says "done before".
struct Inbox;

impl Handler for Inbox {
    const EFFECT_PARTS: &'static [&'static str] = &["inbox", "charge"];

    async fn handle(&self, message: &Delivered, tx: &mut Tx) -> HandlerResult {
        match tx
            .insert("inbox", row([("message_id", message.id)]), Write::part("inbox"))
            .await
        {
            Err(TxError::DuplicateKey) => {
                tx.rollback().await?;
                return Ok(Reply::Ack);
            }
            other => other?,
        };
        let customer = Update::new("accounts", (message.id % 4) as i64).add("balance", -10);
        tx.update(customer.marked(Write::effect("charge"))).await?;
        tx.commit().await?;
        Ok(Reply::Ack)
    }
}

/// A Kafka group member committing after processing, killed while a record's transaction
/// has committed and its offset commit has not gone out (`ack_delay_ms`).
fn kafka_kill_before_commit() -> Scenario {
    Scenario::builder("kafka: a kill between COMMIT and the offset commit")
        .set("design", "kafka")
        .set("config.partitions", 1)
        .set("config.consumers", 1)
        .set("config.group_id", "billing")
        .set("config.commit", "after_process")
        .set("config.auto_offset_reset", "earliest")
        .set("config.consumer_session_timeout_ms", 6000)
        .set("config.heartbeat_interval_ms", 1000)
        .set("config.processing_ms", 0)
        .set("config.db.ack_delay_ms", 300)
        .set("workload.messages", 20)
        .set("workload.publish_interval_ms", 100)
        .set("run.fault_phase_ms", 6000)
        .set("run.drain_ms", 30000)
        // The group forms after ~3 s (group.initial.rebalance.delay.ms); the poll's records
        // are then handled one per ~0.3 s, and committed after the last.
        .fault(5000, "kill", "consumer1")
        .fault(5100, "restart", "consumer1")
        // Kafka counts no deliveries (no attempt number): the tests count the records read.
        .expect("exactly-once", "holds")
        .sometimes("fault.kill")
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// An MQTT subscriber with a persistent session, killed between COMMIT and PUBACK: the
/// broker resends the unacknowledged message when the session connects again.
fn mqtt_kill_before_puback() -> Scenario {
    Scenario::builder("mqtt: a kill between COMMIT and PUBACK")
        .set("design", "mqtt")
        .set("config.subscriber_clean_session", false)
        .set("config.processing_ms", 0)
        .set("config.reconnect_interval_ms", 100)
        .set("config.db.ack_delay_ms", 300)
        .set("workload.messages", 20)
        .set("workload.publish_interval_ms", 100)
        .set("run.fault_phase_ms", 3000)
        .set("run.drain_ms", 20000)
        .fault(1000, "kill", "subscriber1")
        .fault(1100, "restart", "subscriber1")
        .expect("exactly-once", "holds")
        .sometimes("fault.kill")
        .sometimes("deliver.redelivery")
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

const MESSAGES: u64 = 20;

fn careless_charges_twice(scenario: &Scenario) {
    let run = Check::new(scenario, || Careless).unwrap().run_seed(1);
    assert_eq!(run.holds("exactly-once"), Some(false), "{}", run.summary());
    assert!(
        !run.anomalies_named("duplicate-effect").is_empty(),
        "{}",
        run.summary()
    );
    assert!(run.count("deliver") > MESSAGES, "{}", run.summary());
}

/// Holds on a few seeds, each of which read some message twice and acked it twice (the
/// second time after the inbox said "done before").
fn inbox_holds(scenario: &Scenario) {
    let runs = Check::new(scenario, || Inbox).unwrap().seeds(1..4).run().unwrap();
    for run in &runs {
        assert!(
            run.passed(),
            "seed {}: {:?}\n{}",
            run.seed(),
            run.unmet(),
            run.summary()
        );
        assert!(
            run.count("deliver") > MESSAGES,
            "seed {}: no redelivery",
            run.seed()
        );
        assert!(
            run.count("note.user_handler.ack") > MESSAGES,
            "seed {}",
            run.seed()
        );
    }
}

#[test]
fn kafka_a_careless_handler_charges_a_redelivered_record_twice() {
    careless_charges_twice(&kafka_kill_before_commit());
}

#[test]
fn kafka_an_inbox_handler_charges_once_through_the_same_kill() {
    inbox_holds(&kafka_kill_before_commit());
}

#[test]
fn mqtt_a_careless_handler_charges_a_resent_message_twice() {
    careless_charges_twice(&mqtt_kill_before_puback());
}

#[test]
fn mqtt_an_inbox_handler_charges_once_through_the_same_kill() {
    inbox_holds(&mqtt_kill_before_puback());
}

/// Fails a message's first delivery (`attempts` 1, MQTT's DUP unset) the first time its
/// process sees it (its memory dies with the process; Kafka counts no attempts), then
/// charges once.
#[derive(Default)]
struct FailsFirst {
    seen: RefCell<BTreeSet<u64>>,
}

impl Handler for FailsFirst {
    async fn handle(&self, message: &Delivered, tx: &mut Tx) -> HandlerResult {
        if message.attempts == 1 && self.seen.borrow_mut().insert(message.id) {
            return Err(format!("refusing the first sight of m{}", message.id).into());
        }
        let customer = Update::new("accounts", 0).add("balance", -10);
        tx.update(customer.marked(Write::effect("charge"))).await?;
        tx.commit().await?;
        Ok(Reply::Ack)
    }
}

#[test]
fn kafka_a_handler_error_seeks_back_and_the_next_poll_reads_the_record_again() {
    let scenario = Scenario::builder("kafka: handler errors")
        .set("design", "kafka")
        .set("config.partitions", 1)
        .set("config.consumers", 1)
        .set("workload.messages", 5)
        .set("run.fault_phase_ms", 500)
        .set("run.drain_ms", 10000)
        .expect("exactly-once", "holds")
        .build()
        .unwrap();
    let run = Check::new(&scenario, FailsFirst::default).unwrap().run_seed(1);
    assert!(run.passed(), "{:?}\n{}", run.unmet(), run.summary());
    assert_eq!(run.count("note.user_handler.error"), 5);
    assert_eq!(run.count("note.consumer.user_error_seek_back"), 5);
    assert_eq!(run.count("deliver"), 10, "{}", run.summary());
}

#[test]
fn mqtt_a_handler_error_sends_no_puback_and_the_next_connection_gets_it_again() {
    let scenario = Scenario::builder("mqtt: handler errors, then a reconnect")
        .set("design", "mqtt")
        .set("config.subscriber_clean_session", false)
        .set("config.reconnect_interval_ms", 100)
        .set("workload.messages", 3)
        .set("run.fault_phase_ms", 2000)
        .set("run.drain_ms", 10000)
        .fault(1000, "kill", "subscriber1")
        .fault(1100, "restart", "subscriber1")
        .expect("exactly-once", "holds")
        .sometimes("deliver.redelivery")
        .build()
        .unwrap();
    let run = Check::new(&scenario, FailsFirst::default).unwrap().run_seed(1);
    assert!(run.passed(), "{:?}\n{}", run.unmet(), run.summary());
    assert_eq!(run.count("note.client.user_handler_not_acked"), 3);
    assert_eq!(run.count("deliver.redelivery"), 3, "{}", run.summary());
}

#[test]
fn kafka_offsets_in_the_sinks_own_transaction_do_not_go_with_a_user_handler() {
    let scenario = Scenario::builder("kafka: commit = db")
        .set("design", "kafka")
        .set("config.group_id", "billing")
        .set("config.commit", "db")
        .build()
        .unwrap();
    let error = Check::new(&scenario, || Inbox)
        .err()
        .expect("commit = db with a handler");
    let line = error.to_string();
    assert!(!line.contains('\n'), "{line}");
    assert!(
        line.contains("config.commit") || line.contains("commit:"),
        "{line}"
    );
    assert!(line.contains("use after_process"), "{line}");
}
