//! A consumer that charges a customer for each message, in two versions, tested with jetsam
//! (`tests/it.rs`, the scenario in `scenarios/charge-through-crashes.toml`).
//!
//! - [`InboxCharge`]: in one transaction, INSERT the message id into `inbox` (a unique key),
//!   then the charge (a row in the scenario's own `charges` table and the customer's
//!   balance); COMMIT, then ack. A redelivered message's insert fails with 1062:
//!   charged before, so it acks without charging again.
//! - [`CarelessCharge`]: the charge, COMMIT, ack. When the ack is lost (the FIN dropped, the
//!   consumer killed before it, the COMMIT's answer lost) the broker delivers the message
//!   again and the customer is charged twice.

use jetsam::{row, Delivered, Handler, HandlerResult, Reply, Tx, TxError, Update, Value, Write};

/// Customers the charges go to (the scenario's `[config.db] accounts`).
pub const CUSTOMERS: u64 = 4;
/// What one message charges.
pub const PRICE: i64 = 10;

/// The charge for `message`: a row in the scenario's own `charges` table (its
/// `AUTO_INCREMENT` id taken at INSERT) is the effect, and its customer's balance goes down
/// with it in the same transaction.
async fn charge(message: &Delivered, tx: &mut Tx) -> Result<(), TxError> {
    let customer = (message.id % CUSTOMERS) as i64;
    let charge = row([
        ("message_id", Value::from(message.id)),
        ("customer", Value::from(customer)),
        ("amount", Value::from(PRICE)),
    ]);
    tx.insert("charges", charge, Write::effect("charge")).await?;
    let balance = Update::new("accounts", customer).add("balance", -PRICE);
    tx.update(balance.marked(Write::part("balance"))).await?;
    Ok(())
}

/// The inbox pattern (an idempotent consumer): the inbox row and the charge commit together.
pub struct InboxCharge;

impl Handler for InboxCharge {
    const EFFECT_PARTS: &'static [&'static str] = &["inbox", "charge", "balance"];

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
        charge(message, tx).await?;
        tx.commit().await?;
        Ok(Reply::Ack)
    }
}

/// Charge, commit, ack: nothing says a redelivered message was charged already.
pub struct CarelessCharge;

impl Handler for CarelessCharge {
    const EFFECT_PARTS: &'static [&'static str] = &["charge", "balance"];

    async fn handle(&self, message: &Delivered, tx: &mut Tx) -> HandlerResult {
        charge(message, tx).await?;
        tx.commit().await?;
        Ok(Reply::Ack)
    }
}
