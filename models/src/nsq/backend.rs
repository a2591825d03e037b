//! A topic's or channel's overflow queue: go-diskqueue, or for `#ephemeral` names nsqd's
//! dummy backend, whose `Put` silently drops the message (reference §1.2, "Ephemeral").

// A sans-I/O core: its functions stay within clippy.toml's too-many-lines-threshold (issue 9).
#![deny(clippy::too_many_lines)]

use super::diskqueue::{DiskQueue, DiskQueueConfig, DiskQueueNote};
use super::protocol::Message;
use sim::disk::Disk;
use std::io;
use std::time::Duration;

pub enum Backend<D: Disk> {
    Disk(DiskQueue<D>),
    Dummy,
}

/// Where `put` left a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placed {
    Memory,
    Disk,
    /// An ephemeral queue's overflow: gone.
    Dropped,
}

impl<D: Disk> Backend<D> {
    /// The disk queue named as nsqd names it: `topic` for a topic, `topic:channel` for a channel.
    pub fn open(name: &str, ephemeral: bool, disk: D, config: DiskQueueConfig, now: Duration) -> Backend<D> {
        if ephemeral {
            Backend::Dummy
        } else {
            Backend::Disk(DiskQueue::open(name, disk, config, now))
        }
    }

    pub fn put(&mut self, message: &Message) -> io::Result<Placed> {
        match self {
            Backend::Disk(queue) => queue.put(&message.encode()).map(|()| Placed::Disk),
            Backend::Dummy => Ok(Placed::Dropped),
        }
    }

    pub fn has_data(&self) -> bool {
        match self {
            Backend::Disk(queue) => queue.has_data(),
            Backend::Dummy => false,
        }
    }

    /// Reads ahead; `None` if empty. A record that is not a valid message is skipped, as nsqd
    /// logs "failed to decode message" and moves on.
    pub fn peek(&mut self) -> bool {
        match self {
            Backend::Disk(queue) => queue.peek().is_some(),
            Backend::Dummy => false,
        }
    }

    /// Takes the peeked message: the read position advances now.
    pub fn take(&mut self) -> io::Result<Option<Message>> {
        match self {
            Backend::Disk(queue) => {
                let data = queue.advance()?;
                Ok(Message::decode(&data).ok())
            }
            Backend::Dummy => Ok(None),
        }
    }

    pub fn depth(&self) -> i64 {
        match self {
            Backend::Disk(queue) => queue.depth(),
            Backend::Dummy => 0,
        }
    }

    pub fn tick(&mut self, now: Duration) -> io::Result<()> {
        match self {
            Backend::Disk(queue) => queue.tick(now),
            Backend::Dummy => Ok(()),
        }
    }

    /// Drops everything queued (go-diskqueue's `Empty`); returns how many messages.
    pub fn empty(&mut self) -> io::Result<i64> {
        match self {
            Backend::Disk(queue) => queue.empty(),
            Backend::Dummy => Ok(0),
        }
    }

    pub fn close(&mut self) -> io::Result<()> {
        match self {
            Backend::Disk(queue) => queue.close(),
            Backend::Dummy => Ok(()),
        }
    }

    pub fn take_notes(&mut self) -> Vec<DiskQueueNote> {
        match self {
            Backend::Disk(queue) => queue.take_notes(),
            Backend::Dummy => Vec::new(),
        }
    }
}
