//! An nsqd topic, sans I/O (reference §1.2; `nsqd/topic.go`).
//!
//! - A bounded memory queue overflowing to the backend (`topic.put`).
//! - The topic's pump reads nothing until the topic is started and has a channel: messages
//!   published to a topic with no channel wait there, and the first channel gets the whole
//!   backlog; channels created later never see it.
//! - For each message the pump copies it to every channel that exists at that moment (same
//!   id, body and timestamp), as a deferred put when the message was published with DPUB.
//! - The choice between memory and disk is Go's uniform `select`.
//! - `empty` (`/topic/empty`, and a delete) drops the topic's own memory and disk queues.
//! - Deferred messages must stay in memory: the disk format has no deferred field, so a
//!   DPUB message that overflows to disk loses its delay (delivered at once).

// A sans-I/O core: its functions stay within clippy.toml's too-many-lines-threshold (issue 9).
#![deny(clippy::too_many_lines)]

use super::backend::{Backend, Placed};
use super::channel::Channel;
use super::protocol::Message;
use rand::Rng;
use sim::disk::Disk;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::time::Duration;

pub struct Topic<D: Disk> {
    pub name: String,
    pub ephemeral: bool,
    memory: VecDeque<(Message, Duration)>,
    memory_capacity: usize,
    backend: Backend<D>,
    pub channels: BTreeMap<String, Channel<D>>,
    started: bool,
    /// `/topic/pause`: the pump stops copying to channels; publishes still queue.
    pub paused: bool,
    /// Messages put since this nsqd started (`/stats`' `message_count`).
    pub message_count: u64,
    /// Their body bytes (`/stats`' `message_bytes`).
    pub message_bytes: u64,
}

impl<D: Disk> Topic<D> {
    pub fn new(name: &str, memory_capacity: usize, backend: Backend<D>) -> Topic<D> {
        Topic {
            name: name.to_string(),
            ephemeral: super::protocol::is_ephemeral(name),
            memory: VecDeque::new(),
            memory_capacity,
            backend,
            channels: BTreeMap::new(),
            started: false,
            paused: false,
            message_count: 0,
            message_bytes: 0,
        }
    }

    /// `topic.put`: memory if there is room, else the backend. A deferred message (DPUB)
    /// carries its delay only while in memory.
    pub fn put(&mut self, message: Message, defer: Duration) -> io::Result<Placed> {
        // With mem-queue-size 0, nsqd still hands deferred messages (and ephemeral topics'
        // messages) to the pump through the memory channel.
        let capacity = if self.memory_capacity == 0 && (!defer.is_zero() || self.ephemeral) {
            1
        } else {
            self.memory_capacity
        };
        self.message_count += 1;
        self.message_bytes += message.body.len() as u64;
        if self.memory.len() < capacity {
            self.memory.push_back((message, defer));
            return Ok(Placed::Memory);
        }
        self.backend.put(&message)
    }

    /// `topic.Start()`: the pump may run (after channel pre-creation, or on its failure).
    pub fn start(&mut self) {
        self.started = true;
    }

    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Moves every waiting message into every channel (the pump runs eagerly, as its goroutine
    /// would, whenever it has a message and a channel to copy it to). Returns how many moved,
    /// and how many channel copies overflowed to a channel's disk queue.
    pub fn pump(&mut self, now: Duration, rng: &mut impl Rng) -> io::Result<(usize, usize)> {
        if !self.started || self.paused || self.channels.is_empty() {
            return Ok((0, 0));
        }
        let mut moved = 0;
        let mut to_disk = 0;
        loop {
            let memory = !self.memory.is_empty();
            let disk = self.backend.peek();
            let from_memory = match (memory, disk) {
                (false, false) => break,
                (true, false) => true,
                (false, true) => false,
                (true, true) => rng.random_bool(0.5),
            };
            let (message, defer) = if from_memory {
                self.memory.pop_front().expect("memory was not empty")
            } else {
                match self.backend.take()? {
                    Some(message) => (message, Duration::ZERO),
                    None => continue, // undecodable record skipped
                }
            };
            for channel in self.channels.values_mut() {
                if defer.is_zero() {
                    if channel.put_message(message.clone())? == Placed::Disk {
                        to_disk += 1;
                    }
                } else {
                    channel.put_deferred(message.clone(), now, defer);
                    channel.message_count += 1;
                }
            }
            moved += 1;
        }
        Ok((moved, to_disk))
    }

    /// `Topic.Empty`: the memory queue and the disk queue are dropped (the channels keep
    /// what they hold). Returns how many messages were dropped.
    pub fn empty(&mut self) -> io::Result<u64> {
        let in_memory = self.memory.len() as u64;
        self.memory.clear();
        Ok(in_memory + self.backend.empty()? as u64)
    }

    pub fn depth(&self) -> i64 {
        self.memory.len() as i64 + self.backend.depth()
    }

    /// The disk queue's share of `depth` (`/stats`' `backend_depth`).
    pub fn backend_depth(&self) -> i64 {
        self.backend.depth()
    }

    pub fn tick(&mut self, now: Duration) -> io::Result<()> {
        self.backend.tick(now)?;
        for channel in self.channels.values_mut() {
            channel.tick(now)?;
        }
        Ok(())
    }

    pub fn backend(&mut self) -> &mut Backend<D> {
        &mut self.backend
    }

    /// Graceful close: the topic's memory goes to its disk queue (deferred delays are lost),
    /// then every channel closes.
    pub fn close(&mut self) -> io::Result<()> {
        let memory: Vec<(Message, Duration)> = self.memory.drain(..).collect();
        for (message, _) in memory {
            self.backend.put(&message)?;
        }
        self.backend.close()?;
        for channel in self.channels.values_mut() {
            channel.close()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nsq::diskqueue::DiskQueueConfig;
    use crate::nsq::protocol::MessageId;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use sim::disk::SimDisk;

    fn message(n: u64) -> Message {
        Message {
            id: MessageId::from_guid(n),
            timestamp_ns: 0,
            attempts: 0,
            body: format!("m{n}").into_bytes(),
        }
    }

    fn topic(memory: usize, disk: &SimDisk) -> Topic<SimDisk> {
        Topic::new(
            "t",
            memory,
            Backend::open(
                "t",
                false,
                disk.clone(),
                DiskQueueConfig::default(),
                Duration::ZERO,
            ),
        )
    }

    fn add_channel(t: &mut Topic<SimDisk>, name: &str, disk: &SimDisk) {
        let backend = Backend::open(
            &format!("t:{name}"),
            false,
            disk.clone(),
            DiskQueueConfig::default(),
            Duration::ZERO,
        );
        t.channels
            .insert(name.to_string(), Channel::new("t", name, 100, backend));
    }

    #[test]
    fn a_topic_without_channels_holds_its_backlog_for_the_first_channel_only() {
        let disk = SimDisk::new();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut t = topic(2, &disk);
        t.start();
        for n in 1..=5 {
            t.put(message(n), Duration::ZERO).unwrap();
        }
        assert_eq!(
            t.pump(Duration::ZERO, &mut rng).unwrap(),
            (0, 0),
            "no channel: nothing moves"
        );
        add_channel(&mut t, "first", &disk);
        assert_eq!(t.pump(Duration::ZERO, &mut rng).unwrap(), (5, 0));
        add_channel(&mut t, "late", &disk);
        t.put(message(6), Duration::ZERO).unwrap();
        t.pump(Duration::ZERO, &mut rng).unwrap();
        assert_eq!(t.channels["first"].depth(), 6);
        assert_eq!(
            t.channels["late"].depth(),
            1,
            "a later channel never sees the backlog"
        );
    }

    #[test]
    fn every_channel_gets_a_copy_with_the_same_id() {
        let disk = SimDisk::new();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut t = topic(10, &disk);
        add_channel(&mut t, "a", &disk);
        add_channel(&mut t, "b", &disk);
        t.start();
        t.put(message(9), Duration::ZERO).unwrap();
        t.pump(Duration::ZERO, &mut rng).unwrap();
        let a = t
            .channels
            .get_mut("a")
            .unwrap()
            .take_next(&mut rng)
            .unwrap()
            .unwrap();
        let b = t
            .channels
            .get_mut("b")
            .unwrap()
            .take_next(&mut rng)
            .unwrap()
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn an_unstarted_topic_does_not_pump() {
        let disk = SimDisk::new();
        let mut t = topic(10, &disk);
        add_channel(&mut t, "a", &disk);
        t.put(message(1), Duration::ZERO).unwrap();
        assert_eq!(
            t.pump(Duration::ZERO, &mut ChaCha8Rng::seed_from_u64(0)).unwrap(),
            (0, 0)
        );
    }

    #[test]
    fn a_dpub_message_keeps_its_delay_only_in_memory() {
        let disk = SimDisk::new();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut t = topic(1, &disk);
        add_channel(&mut t, "a", &disk);
        t.put(message(1), Duration::from_secs(10)).unwrap(); // memory, deferred
        t.put(message(2), Duration::from_secs(10)).unwrap(); // overflow: disk, delay lost
        t.start();
        t.pump(Duration::ZERO, &mut rng).unwrap();
        let c = t.channels.get_mut("a").unwrap();
        assert_eq!(c.deferred_count(), 1);
        assert_eq!(c.depth(), 1, "the one from disk is ready now");
    }

    #[test]
    fn ephemeral_topics_drop_overflow() {
        let mut t = Topic::new(
            "e#ephemeral",
            1,
            Backend::open(
                "e#ephemeral",
                true,
                SimDisk::new(),
                DiskQueueConfig::default(),
                Duration::ZERO,
            ),
        );
        assert_eq!(t.put(message(1), Duration::ZERO).unwrap(), Placed::Memory);
        assert_eq!(t.put(message(2), Duration::ZERO).unwrap(), Placed::Dropped);
    }
}
