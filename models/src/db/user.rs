//! A user's handler (issue 13): the consumer logic jetsam's user writes in Rust, run inside
//! the simulation in place of a built-in strategy (`strategy = "user"` in `[config.db]`).
//!
//! The handler is given the delivered message and a [`Tx`] on the simulated InnoDB-like
//! engine (BEGIN already sent), and answers [`Reply::Ack`] (the design's acknowledgement:
//! NSQ's FIN, MQTT's PUBACK/PUBREC, a Kafka record's offset passing), [`Reply::Requeue`] or
//! an error (NSQ's REQ, with go-nsq's linear delay for an error; a Kafka seek back to the
//! record; on MQTT, which has no negative acknowledgement, no PUBACK, so the broker resends
//! on the session's next connection). The history records what it did: its statements' effects through
//! the engine's tags at commit, and its answer as a `user_handler.*` note.
//!
//! **Determinism.** A handler runs on its consumer's simulated tasks: it may await its
//! transaction and tokio's timers (simulated time), and must not use threads or the wall
//! clock. A [`HandlerFactory`] makes one instance per consumer process incarnation, so a
//! handler's memory dies with its process, as a real consumer's does; the factory itself is
//! `Send + Sync` so seeds can run on several threads, each with its own simulation.

use super::client::DbConn;
use super::engine::Statement;
use super::tx::Tx;
use sim::Env;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// The message as the handler receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// The workload's message id (the history's), also what the tags of its writes name.
    pub id: u64,
    /// The body as the broker delivered it.
    pub body: Vec<u8>,
    /// The broker's delivery count, 1 on first delivery (NSQ's attempts).
    pub attempts: u16,
}

/// What the handler answers for a message it handled without error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Acknowledge: NSQ's FIN, MQTT's PUBACK/PUBREC, a Kafka record's offset passing.
    Ack,
    /// Give it back to be delivered again after `delay` (NSQ's REQ with that timeout, go-nsq's
    /// `RequeueWithoutBackoff`; Kafka: a seek back after `delay`; MQTT: no PUBACK, `delay`
    /// unused).
    Requeue { delay: Duration },
}

/// A handler's error: the message is requeued as go-nsq requeues a failed handler's.
pub type HandlerError = Box<dyn std::error::Error>;

pub type HandlerResult = Result<Reply, HandlerError>;

/// The user's consumer logic. `EFFECT_PARTS` names the parts a whole effect writes (the
/// [`super::tx::Write`] marks); when given, a committed transaction without all of them is a
/// partial transaction.
#[allow(async_fn_in_trait)] // run on the simulation's local tasks: no Send bound wanted
pub trait Handler: 'static {
    const EFFECT_PARTS: &'static [&'static str] = &[];

    async fn handle(&self, message: &Delivered, tx: &mut Tx) -> HandlerResult;
}

type LocalFuture<'a> = Pin<Box<dyn Future<Output = HandlerResult> + 'a>>;

/// [`Handler`] behind a pointer: its future boxed.
pub(crate) trait ErasedHandler {
    fn handle<'a>(&'a self, message: &'a Delivered, tx: &'a mut Tx) -> LocalFuture<'a>;
}

impl<H: Handler> ErasedHandler for H {
    fn handle<'a>(&'a self, message: &'a Delivered, tx: &'a mut Tx) -> LocalFuture<'a> {
        Box::pin(Handler::handle(self, message, tx))
    }
}

type Make = dyn Fn() -> Rc<dyn ErasedHandler> + Send + Sync;

/// Makes the user's handler: one instance per consumer process incarnation.
#[derive(Clone)]
pub struct HandlerFactory {
    make: Arc<Make>,
    name: &'static str,
    effect_parts: &'static [&'static str],
}

impl HandlerFactory {
    pub fn new<H: Handler>(make: impl Fn() -> H + Send + Sync + 'static) -> HandlerFactory {
        HandlerFactory {
            make: Arc::new(move || Rc::new(make()) as Rc<dyn ErasedHandler>),
            name: std::any::type_name::<H>(),
            effect_parts: H::EFFECT_PARTS,
        }
    }

    /// The handler's type name, for messages.
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn effect_parts(&self) -> Vec<String> {
        self.effect_parts.iter().map(|p| p.to_string()).collect()
    }

    pub(crate) fn instance(&self) -> Rc<dyn ErasedHandler> {
        (self.make)()
    }
}

impl fmt::Debug for HandlerFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HandlerFactory({})", self.name)
    }
}

/// How a user's handler ended, for the design's acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replied {
    Ack,
    Requeue(Duration),
    /// The handler failed (or never ran: the database could not be reached).
    Error(String),
}

/// Where the runner works: the consumer host and the database it talks to.
pub(crate) struct Site<'a> {
    pub env: &'a Env,
    pub host: &'a str,
    pub db_host: &'a str,
    pub timeout: Duration,
}

/// Runs the handler on one message: connect if needed, BEGIN, the handler, a ROLLBACK of
/// what it left open. A connection the handler lost is dropped; the next message opens one.
pub(crate) async fn run_handler(
    handler: &dyn ErasedHandler,
    conn: &mut Option<DbConn>,
    site: &Site<'_>,
    message: &Delivered,
) -> Replied {
    if conn.is_none() {
        *conn = DbConn::connect(site.env, site.host, site.db_host, site.timeout).await;
    }
    let Some(mut open) = conn.take() else {
        return noted(site, Replied::Error("cannot connect to the database".into()));
    };
    if open.call(Statement::Begin, site.timeout).await.is_err() {
        return noted(
            site,
            Replied::Error("BEGIN unanswered: connection dropped".into()),
        );
    }
    let mut tx = Tx::new(open, message.id, site.timeout);
    let result = handler.handle(message, &mut tx).await;
    let (mut back, left_open) = tx.finish();
    if left_open {
        if let Some(c) = back.as_mut() {
            // A driver rolls back a transaction dropped without COMMIT.
            site.env.note(site.host, "user_handler.left_open_rolled_back");
            if c.call(Statement::Rollback, site.timeout).await.is_err() {
                back = None;
            }
        }
    }
    *conn = back;
    let replied = match result {
        Ok(Reply::Ack) => Replied::Ack,
        Ok(Reply::Requeue { delay }) => Replied::Requeue(delay),
        Err(error) => Replied::Error(error.to_string()),
    };
    noted(site, replied)
}

/// Records the handler's answer in the history.
fn noted(site: &Site<'_>, replied: Replied) -> Replied {
    match &replied {
        Replied::Ack => site.env.note(site.host, "user_handler.ack"),
        Replied::Requeue(delay) => site.env.note_with(
            site.host,
            "user_handler.requeue",
            format!("delay {} ms", delay.as_millis()),
        ),
        Replied::Error(error) => site.env.note_with(site.host, "user_handler.error", error.clone()),
    }
    replied
}
