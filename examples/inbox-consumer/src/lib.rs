//! A consumer that charges a customer for each message, in two versions, tested with jetsam
//! (`tests/it.rs`, the scenario in `scenarios/charge-through-crashes.toml`).
//!
//! - [`InboxCharge`]: in one transaction, INSERT the message id into `inbox` (a unique key),
//!   then the charge; COMMIT, then ack. A redelivered message's insert fails with 1062:
//!   charged before, so it acks without charging again.
//! - [`CarelessCharge`]: the charge, COMMIT, ack. When the ack is lost (the FIN dropped, the
//!   consumer killed before it, the COMMIT's answer lost) the broker delivers the message
//!   again and the customer is charged twice.

use jetsam::{row, Delivered, Handler, HandlerResult, Reply, Tx, TxError, Update, Write};

/// Customers the charges go to (the scenario's `[config.db] accounts`).
pub const CUSTOMERS: u64 = 4;
/// What one message charges.
pub const PRICE: i64 = 10;

/// The charge message `message` makes: `price` off its customer's balance.
fn charge(message: &Delivered) -> Update {
    let customer = (message.id % CUSTOMERS) as i64;
    Update::new("accounts", customer).add("balance", -PRICE)
}

/// The inbox pattern (an idempotent consumer): the inbox row and the charge commit together.
pub struct InboxCharge;

impl Handler for InboxCharge {
    const EFFECT_PARTS: &'static [&'static str] = &["inbox", "charge"];

    async fn handle(&self, message: &Delivered, tx: &mut Tx) -> HandlerResult {
        let inbox = row([("message_id", message.id)]);
        match tx.insert("inbox", inbox, Write::part("inbox")).await {
            // Charged before (this is a redelivery): nothing to do but ack again.
            Err(TxError::DuplicateKey) => {
                tx.rollback().await?;
                return Ok(Reply::Ack);
            }
            other => other?,
        };
        tx.update(charge(message).marked(Write::effect("charge"))).await?;
        tx.commit().await?;
        Ok(Reply::Ack)
    }
}

/// Charge, commit, ack: nothing says a redelivered message was charged already.
pub struct CarelessCharge;

impl Handler for CarelessCharge {
    const EFFECT_PARTS: &'static [&'static str] = &["charge"];

    async fn handle(&self, message: &Delivered, tx: &mut Tx) -> HandlerResult {
        tx.update(charge(message).marked(Write::effect("charge"))).await?;
        tx.commit().await?;
        Ok(Reply::Ack)
    }
}
