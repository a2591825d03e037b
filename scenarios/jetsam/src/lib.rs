//! jetsam as a library (issue 13): test your own consumer's handler against jetsam's
//! simulated brokers, faults and InnoDB-like database, the way turmoil and madsim are used.
//!
//! You write the handler in Rust: given the delivered message and a transaction on the
//! simulated engine (its real row locks, and errors 1213 deadlock, 1205 lock wait timeout,
//! 1062 duplicate key), it answers ack, requeue or an error. You mark the write that is the
//! message's effect; the history records each committed effect, and jetsam's checkers find
//! the seeds where your handler applies one twice or loses one.
//!
//! A scenario file (or [`Scenario::builder`]) says the broker design (nsq, kafka or mqtt), the faults
//! and what you claim (`[expect] exactly-once = "holds"`); its `[config.db]` says `strategy =
//! "user"`, which runs your handler. [`check`] runs it over seeds in parallel and panics on
//! the smallest failing seed with the shrunk case under `target/jetsam/` and the command that
//! replays it; `JETSAM_SEED=N` replays one seed, `JETSAM_SEEDS=A..B` sets the range,
//! `JETSAM_REPLAY=FILE` runs a shrunk case.
//!
//! ```no_run
//! use jetsam::{row, Delivered, Handler, HandlerResult, Reply, Scenario, Tx, TxError, Update, Write};
//!
//! /// Charges the customer once per message: the inbox row's unique key says "done before".
//! struct Charge;
//!
//! impl Handler for Charge {
//!     const EFFECT_PARTS: &'static [&'static str] = &["inbox", "charge"];
//!
//!     async fn handle(&self, message: &Delivered, tx: &mut Tx) -> HandlerResult {
//!         let inbox = row([("message_id", message.id)]);
//!         match tx.insert("inbox", inbox, Write::part("inbox")).await {
//!             Err(TxError::DuplicateKey) => {
//!                 tx.rollback().await?;
//!                 return Ok(Reply::Ack); // charged before: acknowledge again
//!             }
//!             other => other?,
//!         };
//!         let customer = (message.id % 4) as i64;
//!         let charge = Update::new("accounts", customer).add("balance", -10);
//!         tx.update(charge.marked(Write::effect("charge"))).await?;
//!         tx.commit().await?;
//!         Ok(Reply::Ack)
//!     }
//! }
//!
//! #[test]
//! fn charges_once() {
//!     let scenario = Scenario::load("tests/kill-before-fin.toml").unwrap();
//!     jetsam::check(&scenario, || Charge);
//! }
//! ```
//!
//! What the database holds: `accounts` (`id` 0..`accounts`, `balance` 1000), `inbox`
//! (primary key `message_id`), `orders` (`id` 1..=messages, `state` `"NEW"`), `positions`,
//! `audit` (primary key `id`), and the tables the scenario declares for your handler
//! (`[config.db] tables = [{ name = "charges", primary_key = "id", auto_increment = true }]`,
//! with `unique` columns if you want them). Everything else of jetsam (the designs, the harness, the
//! checkers) stays behind this facade.

mod check;
mod outcome;
mod scenario;

pub use check::{check, Check, SEEDS_DEFAULT, SHRINK_RUNS_DEFAULT};
pub use models::db::engine::Value;
pub use models::db::tx::{row, Row, Scan, Tx, TxError, Update, Write};
pub use models::db::user::{Delivered, Handler, HandlerError, HandlerResult, Reply};
pub use outcome::SeedRun;
pub use scenario::{Scenario, ScenarioBuilder};
pub use sim::checker::Anomaly;
pub use sim::scenario::ScenarioError as Error;
