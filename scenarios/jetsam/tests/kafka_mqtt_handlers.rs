//! User handlers on the Kafka and MQTT consumers (issue 13): a kill between the handler's
//! COMMIT and the acknowledgement (Kafka's offset commit, MQTT's PUBACK) makes the broker
//! deliver again; a careless handler charges twice, and an inbox handler holds.

use jetsam::{row, Check, Delivered, Handler, HandlerResult, Reply, Scenario, Tx, TxError, Update, Write};

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
        match tx.insert("inbox", row([("message_id", message.id)]), Write::part("inbox")).await {
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
        .set("run.fault_phase_ms", 4000)
        .set("run.drain_ms", 30000)
        .fault(2500, "kill", "consumer1")
        .fault(2600, "restart", "consumer1")
        .expect("exactly-once", "holds")
        .sometimes("fault.kill")
        .sometimes("deliver.redelivery")
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

fn careless_charges_twice(scenario: &Scenario) {
    let run = Check::new(scenario, || Careless).unwrap().run_seed(1);
    assert_eq!(run.holds("exactly-once"), Some(false), "{}", run.summary());
    assert!(!run.passed());
    assert!(run.count("deliver.redelivery") > 0, "{}", run.summary());
}

fn inbox_holds(scenario: &Scenario) {
    let runs = Check::new(scenario, || Inbox).unwrap().seeds(1..4).run().unwrap();
    for run in &runs {
        assert!(run.passed(), "seed {}: {:?}\n{}", run.seed(), run.unmet(), run.summary());
        assert!(run.count("note.user_handler.ack") > 0);
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
