//! The library facade as a user meets it: scenarios built in code, handlers written against
//! the transaction API, the one-line errors, and determinism of a seed's run.

use jetsam::{Check, Delivered, Handler, HandlerResult, Reply, Scenario, Tx, Update, Write};
use std::cell::Cell;

/// The conditional-update pattern: the message's order moves `NEW` to `DONE` in the same
/// transaction as the charge; 0 rows affected means charged before.
struct Conditional;

impl Handler for Conditional {
    const EFFECT_PARTS: &'static [&'static str] = &["order", "charge"];

    async fn handle(&self, message: &Delivered, tx: &mut Tx) -> HandlerResult {
        let order = Update::new("orders", message.id)
            .set("state", "DONE")
            .only_if("state", "NEW")
            .marked(Write::part("order"));
        if tx.update(order).await? == 0 {
            tx.rollback().await?;
            return Ok(Reply::Ack);
        }
        let customer = Update::new("accounts", (message.id % 4) as i64).add("balance", -10);
        tx.update(customer.marked(Write::effect("charge"))).await?;
        tx.commit().await?;
        Ok(Reply::Ack)
    }
}

/// A kill between COMMIT and FIN on the one consumer, so nsqd redelivers.
fn kill_before_fin() -> jetsam::ScenarioBuilder {
    Scenario::builder("facade: a kill between COMMIT and FIN")
        .set("config.processing_ms", 0)
        .set("config.reconnect_ms", 100)
        .set("config.requeue_delay_ms", 100)
        .set("config.db.ack_delay_ms", 200)
        .set("config.nsqd.msg_timeout_ms", 1000)
        .set("workload.messages", 3)
        .set("workload.publish_interval_ms", 1)
        .set("run.fault_phase_ms", 1000)
        .set("run.drain_ms", 20000)
        .fault(100, "kill", "consumer1")
        .fault(150, "restart", "consumer1")
        .expect("exactly-once", "holds")
        .sometimes("fault.kill")
        .sometimes("deliver.redelivery")
}

#[test]
fn a_scenario_built_in_code_runs_a_conditional_update_handler_that_holds() {
    let scenario = kill_before_fin().build().unwrap_or_else(|e| panic!("{e}"));
    let runs = Check::new(&scenario, || Conditional)
        .unwrap()
        .seeds(1..3)
        .run()
        .unwrap();
    for run in &runs {
        assert!(run.passed(), "seed {}: {:?}", run.seed(), run.unmet());
        assert!(run.count("note.user_handler.ack") > 0);
    }
}

#[test]
fn the_same_seed_gives_the_same_history() {
    let scenario = kill_before_fin().build().unwrap();
    let check = Check::new(&scenario, || Conditional).unwrap();
    let (a, b) = (check.run_seed(4), check.run_seed(4));
    assert!(!a.history_json_lines().is_empty());
    assert_eq!(a.history_json_lines(), b.history_json_lines());
}

/// Fails each message's first attempt: go-nsq requeues it, and the second attempt charges.
/// Its memory (the attempts seen) is its process's: a new instance after the kill.
#[derive(Default)]
struct FailsFirst {
    failed: Cell<u32>,
}

impl Handler for FailsFirst {
    async fn handle(&self, message: &Delivered, tx: &mut Tx) -> HandlerResult {
        if message.attempts == 1 {
            self.failed.set(self.failed.get() + 1);
            return Err(format!("refusing attempt 1 of m{}", message.id).into());
        }
        let customer = Update::new("accounts", 0).add("balance", -10);
        tx.update(customer.marked(Write::effect("charge"))).await?;
        tx.commit().await?;
        Ok(Reply::Ack)
    }
}

#[test]
fn a_handler_error_requeues_the_message_and_the_history_says_so() {
    let scenario = Scenario::builder("facade: handler errors")
        .set("config.requeue_delay_ms", 50)
        .set("workload.messages", 3)
        .set("run.fault_phase_ms", 300)
        .set("run.drain_ms", 10000)
        .expect("exactly-once", "holds")
        .build()
        .unwrap();
    let run = Check::new(&scenario, FailsFirst::default).unwrap().run_seed(1);
    assert!(run.passed(), "{:?}\n{}", run.unmet(), run.summary());
    assert_eq!(run.count("note.user_handler.error"), 3);
    assert_eq!(run.count("note.consumer.handler_error"), 3);
    assert!(run.history_json_lines().contains("refusing attempt 1 of m2"));
}

/// Acks without committing: the transaction is rolled back after it, the charge never
/// happens, and the message is gone from the broker.
struct ForgetsCommit;

impl Handler for ForgetsCommit {
    async fn handle(&self, message: &Delivered, tx: &mut Tx) -> HandlerResult {
        let customer = Update::new("accounts", (message.id % 4) as i64).add("balance", -10);
        tx.update(customer.marked(Write::effect("charge"))).await?;
        Ok(Reply::Ack)
    }
}

#[test]
fn a_transaction_left_open_is_rolled_back_and_the_lost_charge_is_found() {
    let scenario = Scenario::builder("facade: no commit")
        .set("workload.messages", 2)
        .set("run.fault_phase_ms", 200)
        .expect("at-least-once", "holds")
        .build()
        .unwrap();
    let run = Check::new(&scenario, || ForgetsCommit).unwrap().run_seed(1);
    assert_eq!(run.holds("at-least-once"), Some(false), "{}", run.summary());
    assert!(!run.passed());
    assert_eq!(run.count("note.user_handler.left_open_rolled_back"), 2);
}

#[test]
fn a_scenario_naming_a_user_handler_without_one_is_a_one_line_error() {
    let text = "design = \"nsq\"\n[config]\nsink = \"db\"\n[config.db]\nstrategy = \"user\"\n";
    let error = scenarios::Loaded::parse("mine.toml", text).expect_err("no handler plugged in");
    let line = error.to_string();
    assert!(!line.contains('\n'), "{line}");
    assert!(
        line.starts_with("mine.toml:5: config.db.strategy: \"user\" runs your own handler"),
        "{line}"
    );
    assert!(line.contains("jetsam"), "{line}");
}

#[test]
fn a_handler_plugged_into_a_scenario_that_does_not_run_it_is_an_error() {
    let inbox = Scenario::parse(
        "inbox.toml",
        "design = \"nsq\"\n[config]\nsink = \"db\"\n[config.db]\nstrategy = \"inbox\"\n",
    )
    .unwrap();
    let error = Check::new(&inbox, || Conditional)
        .err()
        .expect("not a user strategy");
    assert!(error.to_string().contains("does not run it"), "{error}");

    let mqtt = Scenario::parse("mqtt.toml", "design = \"mqtt\"\n").unwrap();
    let error = Check::new(&mqtt, || Conditional)
        .err()
        .expect("an mqtt scenario without strategy = \"user\" runs no handler");
    assert!(error.to_string().contains("does not run it"), "{error}");

    let signals = Scenario::parse("signals.toml", "design = \"signals\"\n").unwrap();
    let error = Check::new(&signals, || Conditional)
        .err()
        .expect("signals runs no handler");
    assert!(error.to_string().contains("nsq, kafka and mqtt do"), "{error}");

    let mqtt_user = "design = \"mqtt\"\n[config]\nsink = \"db\"\n[config.db]\nstrategy = \"user\"\n";
    let error = scenarios::Loaded::parse("m.toml", mqtt_user).expect_err("no handler plugged in");
    assert!(error.to_string().contains("runs your own handler"), "{error}");
}

#[test]
fn a_bad_key_in_a_built_scenario_is_an_error_not_a_panic() {
    let error = Scenario::builder("bad")
        .set("workload.messages", 3)
        .set("workload.messages.count", 3)
        .build()
        .expect_err("messages is a value");
    assert!(error.to_string().contains("not a table"), "{error}");
    // The design's own keys are checked when the handler is plugged in.
    let unknown = Scenario::builder("bad")
        .set("config.no_such_key", 1)
        .build()
        .unwrap();
    let error = Check::new(&unknown, || Conditional).err().expect("unknown key");
    assert!(error.to_string().contains("no_such_key"), "{error}");
}

#[test]
fn a_table_of_your_own_must_be_new() {
    let text = "design = \"nsq\"\n[config]\nsink = \"db\"\n[config.db]\nstrategy = \"user\"\n\
                tables = [{ name = \"inbox\", primary_key = \"message_id\" }]\n";
    let scenario = Scenario::parse("t.toml", text).unwrap();
    let error = Check::new(&scenario, || Conditional)
        .err()
        .expect("inbox is built in");
    assert_eq!(
        error.to_string(),
        "t.toml:6: config.db.tables: table `inbox` exists already (built in or named twice)"
    );
}
