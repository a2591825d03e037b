//! What both broker drivers (the simulated host and the real server) do with the core's
//! outputs: each connection has a bounded queue of encoded packets, drained by the task that
//! owns its socket. A client that reads so slowly that its queue fills is disconnected, as
//! if its socket had failed, so one stalled client cannot grow the broker's memory.

use super::broker::{Broker, ConnId, Out};
use std::collections::BTreeMap;
use tokio::sync::mpsc;

/// Encoded packets waiting to be written to one client, at most.
pub const OUTBOX_PACKETS_MAX: usize = 100_000;

/// What a connection's task is told to do.
pub enum Command {
    Bytes(Vec<u8>),
    Close,
}

/// Each open connection's queue.
pub type Writers = BTreeMap<ConnId, mpsc::Sender<Command>>;

/// A queue for a new connection: the sender for [`Writers`], the receiver for its task.
pub fn channel() -> (mpsc::Sender<Command>, mpsc::Receiver<Command>) {
    mpsc::channel(OUTBOX_PACKETS_MAX)
}

/// Carries out the core's outputs: packets to their queues, closes, and notes to `note`.
/// A connection whose queue is full is closed, and what the core says about that is
/// carried out too.
pub fn dispatch(
    broker: &mut Broker,
    writers: &mut Writers,
    mut outs: Vec<Out>,
    now_ms: u64,
    mut note: impl FnMut(&'static str, String),
) {
    while !outs.is_empty() {
        let mut overflowed = Vec::new();
        for out in outs.drain(..) {
            match out {
                Out::Send { conn, bytes } => {
                    let full = writers
                        .get(&conn)
                        .is_some_and(|w| w.try_send(Command::Bytes(bytes)).is_err());
                    if full {
                        overflowed.push(conn);
                    }
                }
                Out::Close { conn } => {
                    if let Some(writer) = writers.remove(&conn) {
                        let _ = writer.try_send(Command::Close);
                    }
                }
                Out::Note { kind, detail } => note(kind, detail),
            }
        }
        for conn in overflowed {
            note("outbox-full", format!("connection {conn}: closed"));
            writers.remove(&conn);
            broker.on_closed(now_ms, conn, &mut outs);
        }
    }
}
