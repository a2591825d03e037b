//! One client connection to nsqd, as go-nsq's `Conn` runs it: a reader that answers
//! heartbeats with NOP and gives up after `read_timeout` without a byte (go-nsq's
//! ReadTimeout, 60 s by default), and a writer fed through a queue, so a handler's FIN goes
//! out on the connection the message came from, or nowhere if that connection has died.
//!
//! The reader hands each frame over and waits until it is taken, as go-nsq's readLoop calls
//! the consumer's OnMessage, which sends on the unbuffered `incomingMessages` channel
//! (consumer.go onConnMessage): while every handler is busy, the connection reads nothing,
//! answers no heartbeat, and nsqd may close it after two missed heartbeats.
//!
//! Generic over the stream, so the same code runs over turmoil (simulation) and tokio sockets.

use super::protocol::{decode_frame, encode_command, Command, FrameType, HEARTBEAT, MAGIC_V2};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A frame other than a heartbeat.
pub type Frame = (FrameType, Vec<u8>);

/// Sends commands on a connection; cheap to clone. Sending on a dead connection is dropped,
/// as a write on a closed go-nsq connection fails.
#[derive(Clone)]
pub struct Sender {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    alive: Rc<Cell<bool>>,
}

impl Sender {
    pub fn send(&self, command: &Command) -> bool {
        self.alive.get() && self.tx.send(encode_command(command)).is_ok()
    }

    pub fn is_alive(&self) -> bool {
        self.alive.get()
    }
}

/// Held while a frame is being handed on; dropping it lets the connection's reader go on.
pub type Taken = tokio::sync::oneshot::Sender<()>;

/// A frame and its hand-off.
type Handoff = (Frame, Taken);

pub struct Link {
    pub sender: Sender,
    frames: mpsc::UnboundedReceiver<Handoff>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.sender.alive.set(false);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts the reader and writer tasks on an open stream and sends the magic.
pub fn start<R, W>(mut read: R, mut write: W, read_timeout: Duration) -> Link
where
    R: AsyncRead + Unpin + 'static,
    W: AsyncWrite + Unpin + 'static,
{
    let alive = Rc::new(Cell::new(true));
    let (tx, mut outgoing) = mpsc::unbounded_channel::<Vec<u8>>();
    let (frames_tx, frames) = mpsc::unbounded_channel::<Handoff>();
    let writer_alive = alive.clone();
    let writer = tokio::task::spawn_local(async move {
        if write.write_all(MAGIC_V2).await.is_err() {
            writer_alive.set(false);
            return;
        }
        while let Some(bytes) = outgoing.recv().await {
            if write.write_all(&bytes).await.is_err() {
                writer_alive.set(false);
                return;
            }
        }
    });
    let reader_alive = alive.clone();
    let nop = tx.clone();
    let reader = tokio::task::spawn_local(async move {
        let mut buffer = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        'read: loop {
            let n = match tokio::time::timeout(read_timeout, read.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => n,
                _ => break, // EOF, error, or silence past the read timeout
            };
            buffer.extend_from_slice(&chunk[..n]);
            // Frames are taken from `start` on, and what they used dropped once per read,
            // not once per frame.
            let mut start = 0;
            loop {
                match decode_frame(&buffer[start..]) {
                    Ok(Some((kind, data, used))) => {
                        start += used;
                        if kind == FrameType::Response && data == HEARTBEAT {
                            let _ = nop.send(encode_command(&Command::Nop));
                        } else {
                            let (handoff, taken) = tokio::sync::oneshot::channel();
                            if frames_tx.send(((kind, data), handoff)).is_err() {
                                break 'read;
                            }
                            // Unbuffered: at most one frame waits, and the reader with it.
                            let _ = taken.await;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => break 'read, // a garbled stream: drop the connection
                }
            }
            buffer.drain(..start);
        }
        reader_alive.set(false);
    });
    Link {
        sender: Sender { tx, alive },
        frames,
        tasks: vec![writer, reader],
    }
}

impl Link {
    /// The next frame, or `None` once the connection is gone.
    pub async fn next(&mut self) -> Option<Frame> {
        self.frames.recv().await.map(|(frame, _taken)| frame)
    }

    /// The next frame with its hand-off: the reader reads nothing, heartbeats included, until
    /// the returned [`Taken`] is dropped.
    pub async fn next_held(&mut self) -> Option<(Frame, Taken)> {
        self.frames.recv().await
    }

    /// Sends a command and waits for its response or error frame (for the handshake and
    /// PUB), at most `timeout`. `None` means no answer: the connection died or time ran out.
    pub async fn request(&mut self, command: &Command, timeout: Duration) -> Option<Frame> {
        if !self.sender.send(command) {
            return None;
        }
        tokio::time::timeout(timeout, self.frames.recv())
            .await
            .ok()
            .flatten()
            .map(|(frame, _taken)| frame)
    }
}
