//! An nsqd channel, sans I/O (reference §1.2; `nsqd/channel.go`).
//!
//! - Messages wait in a bounded memory queue (mem-queue-size) that overflows to the backend.
//! - Delivering a message puts it in flight for one client until its deadline; the in-flight
//!   and deferred sets are ordered by time (nsqd's priority queues).
//! - FIN, REQ and TOUCH check only that the id is in flight and that the client owns it, not
//!   which delivery attempt it was: a late FIN from the same client finishes the redelivery.
//! - A timeout or `REQ 0` puts the message back at the tail (memory if there is room, else
//!   disk): ordering is lost. `REQ >0` defers it.
//! - A client that goes away does not get its in-flight messages requeued; they wait for
//!   their timeout (`RemoveClient`; maintainers in nsqio/nsq#137).
//! - A graceful close writes memory, in-flight and deferred messages to disk; deferred ones
//!   lose their timers (the disk format has no deferred field; nsqio/nsq#674, #1079).
//! - `empty` (`/channel/empty`, and a delete) drops memory, disk, in-flight and deferred
//!   messages; `paused` stops deliveries, not the topic's copies into the channel.

// A sans-I/O core: its functions stay within clippy.toml's too-many-lines-threshold (issue 9).
#![deny(clippy::too_many_lines)]

use super::backend::{Backend, Placed};
use super::protocol::{Message, MessageId};
use rand::Rng;
use sim::disk::Disk;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::time::Duration;

/// A connection's identity within one nsqd.
pub type ClientId = u64;

#[derive(Clone, Debug)]
struct InFlight {
    message: Message,
    client: ClientId,
    delivered_at: Duration,
    deadline: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimedOut {
    pub client: ClientId,
    pub id: MessageId,
    pub placed: Placed,
}

pub struct Channel<D: Disk> {
    pub topic: String,
    pub name: String,
    pub ephemeral: bool,
    memory: VecDeque<Message>,
    memory_capacity: usize,
    backend: Backend<D>,
    in_flight: BTreeMap<MessageId, InFlight>,
    in_flight_by_deadline: BTreeSet<(Duration, MessageId)>,
    deferred: BTreeMap<MessageId, (Message, Duration)>,
    deferred_by_due: BTreeSet<(Duration, MessageId)>,
    clients: BTreeSet<ClientId>,
    pub requeue_count: u64,
    pub timeout_count: u64,
    /// Messages put since this nsqd started (`/stats`' `message_count`).
    pub message_count: u64,
    /// `/channel/pause`: nsqd sends its clients nothing (`IsReadyForMessages` is false) while
    /// the channel keeps taking messages from its topic.
    pub paused: bool,
    /// Messages an `#ephemeral` channel's dummy backend dropped and nsqd has not noted yet
    /// (`take_dropped`): from the topic's pump, a REQ, a msg_timeout or a deferral coming due,
    /// every path into `put`.
    dropped: u64,
}

impl<D: Disk> Channel<D> {
    pub fn new(topic: &str, name: &str, memory_capacity: usize, backend: Backend<D>) -> Channel<D> {
        Channel {
            topic: topic.to_string(),
            name: name.to_string(),
            ephemeral: super::protocol::is_ephemeral(name),
            memory: VecDeque::new(),
            memory_capacity,
            backend,
            in_flight: BTreeMap::new(),
            in_flight_by_deadline: BTreeSet::new(),
            deferred: BTreeMap::new(),
            deferred_by_due: BTreeSet::new(),
            clients: BTreeSet::new(),
            requeue_count: 0,
            timeout_count: 0,
            message_count: 0,
            paused: false,
            dropped: 0,
        }
    }

    fn assert_invariants(&self) {
        debug_assert_eq!(self.in_flight.len(), self.in_flight_by_deadline.len());
        debug_assert_eq!(self.deferred.len(), self.deferred_by_due.len());
        debug_assert!(self.memory.len() <= self.memory_capacity);
        debug_assert!(
            self.in_flight.keys().all(|id| !self.deferred.contains_key(id)),
            "a message is never both in flight and deferred"
        );
    }

    /// `c.put`: memory if there is room (a non-blocking send), else the backend.
    pub fn put(&mut self, message: Message) -> io::Result<Placed> {
        if self.memory.len() < self.memory_capacity {
            self.memory.push_back(message);
            return Ok(Placed::Memory);
        }
        let placed = self.backend.put(&message)?;
        if placed == Placed::Dropped {
            self.dropped += 1;
        }
        Ok(placed)
    }

    /// `PutMessage`, from the topic's pump: `put`, counted in `message_count`.
    pub fn put_message(&mut self, message: Message) -> io::Result<Placed> {
        let placed = self.put(message)?;
        self.message_count += 1;
        Ok(placed)
    }

    /// `Channel.Empty`: the in-flight and deferred sets start afresh (`initPQ`), memory and
    /// the backend are dropped. Returns how many messages were dropped; nsqd zeroes its
    /// clients' in-flight counts.
    pub fn empty(&mut self) -> io::Result<u64> {
        let held = (self.memory.len() + self.in_flight.len() + self.deferred.len()) as u64;
        self.in_flight.clear();
        self.in_flight_by_deadline.clear();
        self.deferred.clear();
        self.deferred_by_due.clear();
        self.memory.clear();
        let on_disk = self.backend.empty()?;
        self.assert_invariants();
        Ok(held + on_disk as u64)
    }

    /// The drops since the last call, for nsqd to record.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    /// `PutMessageDeferred`: held until `now + delay`, then `put`.
    pub fn put_deferred(&mut self, message: Message, now: Duration, delay: Duration) {
        let due = now + delay;
        self.deferred_by_due.insert((due, message.id));
        let previous = self.deferred.insert(message.id, (message, due));
        assert!(previous.is_none(), "ID already deferred");
        self.assert_invariants();
    }

    /// Whether a message is waiting to be delivered.
    pub fn has_ready_message(&mut self) -> bool {
        !self.memory.is_empty() || self.backend.peek()
    }

    /// The next message for a client: from memory or disk, chosen like Go's `select` (uniformly
    /// at random when both are ready). The disk read position advances now.
    pub fn take_next(&mut self, rng: &mut impl Rng) -> io::Result<Option<Message>> {
        let memory = !self.memory.is_empty();
        let disk = self.backend.peek();
        let from_memory = match (memory, disk) {
            (false, false) => return Ok(None),
            (true, false) => true,
            (false, true) => false,
            (true, true) => rng.random_bool(0.5),
        };
        if from_memory {
            Ok(self.memory.pop_front())
        } else {
            self.backend.take()
        }
    }

    /// The delivery step: `Attempts++`, then in flight until `now + timeout`.
    pub fn start_in_flight(
        &mut self,
        mut message: Message,
        client: ClientId,
        now: Duration,
        timeout: Duration,
    ) -> Message {
        message.attempts = message.attempts.saturating_add(1);
        let deadline = now + timeout;
        self.in_flight_by_deadline.insert((deadline, message.id));
        let previous = self.in_flight.insert(
            message.id,
            InFlight {
                message: message.clone(),
                client,
                delivered_at: now,
                deadline,
            },
        );
        assert!(previous.is_none(), "ID already in flight");
        self.assert_invariants();
        message
    }

    fn pop_in_flight(&mut self, client: ClientId, id: MessageId) -> Result<InFlight, String> {
        let entry = self.in_flight.get(&id).ok_or("ID not in flight")?;
        if entry.client != client {
            return Err("client does not own message".into());
        }
        let entry = self.in_flight.remove(&id).expect("checked above");
        self.in_flight_by_deadline.remove(&(entry.deadline, id));
        Ok(entry)
    }

    pub fn finish(&mut self, client: ClientId, id: MessageId) -> Result<(), String> {
        self.pop_in_flight(client, id).map(|_| ())
    }

    /// `REQ`: 0 puts the message back at the tail now; more defers it.
    pub fn requeue(
        &mut self,
        client: ClientId,
        id: MessageId,
        now: Duration,
        delay: Duration,
    ) -> Result<Placed, String> {
        let entry = self.pop_in_flight(client, id)?;
        self.requeue_count += 1;
        if delay.is_zero() {
            return self.put(entry.message).map_err(|e| e.to_string());
        }
        self.put_deferred(entry.message, now, delay);
        Ok(Placed::Memory)
    }

    /// `TOUCH`: the deadline becomes `now + msg_timeout`, capped at delivery + `max_msg_timeout`.
    pub fn touch(
        &mut self,
        client: ClientId,
        id: MessageId,
        now: Duration,
        msg_timeout: Duration,
        max_msg_timeout: Duration,
    ) -> Result<(), String> {
        let entry = self.in_flight.get_mut(&id).ok_or("ID not in flight")?;
        if entry.client != client {
            return Err("client does not own message".into());
        }
        let deadline = (now + msg_timeout).min(entry.delivered_at + max_msg_timeout);
        self.in_flight_by_deadline.remove(&(entry.deadline, id));
        entry.deadline = deadline;
        self.in_flight_by_deadline.insert((deadline, id));
        Ok(())
    }

    /// `processInFlightQueue`: every message past its deadline goes back through `put`.
    pub fn process_in_flight(&mut self, now: Duration) -> io::Result<Vec<TimedOut>> {
        let mut timed_out = Vec::new();
        while let Some(&(deadline, id)) = self.in_flight_by_deadline.first() {
            if deadline > now {
                break;
            }
            self.in_flight_by_deadline.pop_first();
            let entry = self.in_flight.remove(&id).expect("indexed entries exist");
            self.timeout_count += 1;
            let placed = self.put(entry.message)?;
            timed_out.push(TimedOut {
                client: entry.client,
                id,
                placed,
            });
        }
        self.assert_invariants();
        Ok(timed_out)
    }

    /// `processDeferredQueue`: every deferred message that is due goes through `put`.
    pub fn process_deferred(&mut self, now: Duration) -> io::Result<usize> {
        let mut due = 0;
        while let Some(&(at, id)) = self.deferred_by_due.first() {
            if at > now {
                break;
            }
            self.deferred_by_due.pop_first();
            let (message, _) = self.deferred.remove(&id).expect("indexed entries exist");
            self.put(message)?;
            due += 1;
        }
        Ok(due)
    }

    /// The earliest in-flight deadline or deferred due time.
    pub fn next_deadline(&self) -> Option<Duration> {
        let in_flight = self.in_flight_by_deadline.first().map(|(t, _)| *t);
        let deferred = self.deferred_by_due.first().map(|(t, _)| *t);
        in_flight.into_iter().chain(deferred).min()
    }

    pub fn add_client(&mut self, client: ClientId) {
        self.clients.insert(client);
    }

    /// Removes a client. Its in-flight messages stay in flight until they time out. Returns
    /// whether an ephemeral channel is now empty of clients (and so is deleted by nsqd).
    pub fn remove_client(&mut self, client: ClientId) -> bool {
        self.clients.remove(&client);
        self.ephemeral && self.clients.is_empty()
    }

    pub fn clients(&self) -> &BTreeSet<ClientId> {
        &self.clients
    }

    pub fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }

    pub fn deferred_count(&self) -> usize {
        self.deferred.len()
    }

    pub fn depth(&self) -> i64 {
        self.memory.len() as i64 + self.backend.depth()
    }

    /// The disk queue's share of `depth` (`/stats`' `backend_depth`).
    pub fn backend_depth(&self) -> i64 {
        self.backend.depth()
    }

    pub fn tick(&mut self, now: Duration) -> io::Result<()> {
        self.backend.tick(now)
    }

    pub fn backend(&mut self) -> &mut Backend<D> {
        &mut self.backend
    }

    /// Graceful close (`Channel.flush`, then the backend's close): memory, in-flight and
    /// deferred messages are written to disk, in that order. In-flight keep their attempts;
    /// deferred lose their timers.
    pub fn close(&mut self) -> io::Result<()> {
        let memory: Vec<Message> = self.memory.drain(..).collect();
        for message in memory {
            self.backend.put(&message)?;
        }
        let in_flight = std::mem::take(&mut self.in_flight);
        self.in_flight_by_deadline.clear();
        for (_, entry) in in_flight {
            self.backend.put(&entry.message)?;
        }
        let deferred = std::mem::take(&mut self.deferred);
        self.deferred_by_due.clear();
        for (_, (message, _)) in deferred {
            self.backend.put(&message)?;
        }
        self.backend.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nsq::diskqueue::DiskQueueConfig;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use sim::disk::SimDisk;

    const MS: Duration = Duration::from_millis(1);

    fn message(n: u64) -> Message {
        Message {
            id: MessageId::from_guid(n),
            timestamp_ns: 0,
            attempts: 0,
            body: format!("m{n}").into_bytes(),
        }
    }

    fn channel(memory: usize, disk: &SimDisk) -> Channel<SimDisk> {
        let backend = Backend::open(
            "t:c",
            false,
            disk.clone(),
            DiskQueueConfig::default(),
            Duration::ZERO,
        );
        Channel::new("t", "c", memory, backend)
    }

    fn take_all(c: &mut Channel<SimDisk>, rng: &mut ChaCha8Rng) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(m) = c.take_next(rng).unwrap() {
            out.push(String::from_utf8(m.body).unwrap()[1..].parse().unwrap());
        }
        out
    }

    #[test]
    fn memory_overflows_to_disk_and_the_random_select_reorders_without_any_fault() {
        let disk = SimDisk::new();
        let mut c = channel(2, &disk);
        let mut orders = BTreeSet::new();
        for seed in 0..20 {
            for n in 1..=6 {
                c.put(message(n)).unwrap();
            }
            orders.insert(take_all(&mut c, &mut ChaCha8Rng::seed_from_u64(seed)));
        }
        assert!(orders.len() > 1, "memory vs disk selection reorders: {orders:?}");
        for order in &orders {
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, vec![1, 2, 3, 4, 5, 6], "nothing lost or duplicated");
        }
    }

    #[test]
    fn fin_checks_the_owner_not_the_attempt() {
        let disk = SimDisk::new();
        let mut c = channel(10, &disk);
        let m = c.start_in_flight(message(1), 7, Duration::ZERO, 100 * MS);
        assert_eq!(m.attempts, 1);
        assert_eq!(c.finish(8, m.id), Err("client does not own message".into()));
        // Timed out and redelivered to the same client: its late FIN for attempt 1 finishes attempt 2.
        let timed_out = c.process_in_flight(100 * MS).unwrap();
        assert_eq!(timed_out.len(), 1);
        let again = c.take_next(&mut ChaCha8Rng::seed_from_u64(0)).unwrap().unwrap();
        let again = c.start_in_flight(again, 7, 100 * MS, 100 * MS);
        assert_eq!(again.attempts, 2);
        assert_eq!(c.finish(7, m.id), Ok(()));
        assert_eq!(c.finish(7, m.id), Err("ID not in flight".into()));
        assert_eq!(c.in_flight_count(), 0);
    }

    #[test]
    fn timeouts_and_req_zero_requeue_at_the_tail() {
        let disk = SimDisk::new();
        let mut c = channel(10, &disk);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for n in 1..=3 {
            c.put(message(n)).unwrap();
        }
        let first = c.take_next(&mut rng).unwrap().unwrap();
        let first = c.start_in_flight(first, 1, Duration::ZERO, 60_000 * MS);
        c.requeue(1, first.id, Duration::ZERO, Duration::ZERO).unwrap();
        assert_eq!(take_all(&mut c, &mut rng), vec![2, 3, 1]);
        let again = c.start_in_flight(message(4), 1, Duration::ZERO, 60_000 * MS);
        c.requeue(1, again.id, Duration::ZERO, Duration::ZERO).unwrap();
        assert_eq!(c.requeue_count, 2, "/stats counts every REQ");
    }

    #[test]
    fn req_with_delay_defers_and_touch_is_capped() {
        let disk = SimDisk::new();
        let mut c = channel(10, &disk);
        let m = c.start_in_flight(message(1), 1, Duration::ZERO, 100 * MS);
        assert_eq!(
            (c.in_flight_count(), c.deferred_count()),
            (1, 0),
            "/stats' counts"
        );
        c.touch(1, m.id, 90 * MS, 100 * MS, 150 * MS).unwrap();
        assert_eq!(
            c.next_deadline(),
            Some(150 * MS),
            "capped at delivery + max_msg_timeout"
        );
        assert!(c.process_in_flight(149 * MS).unwrap().is_empty());
        c.requeue(1, m.id, 149 * MS, 50 * MS).unwrap();
        assert_eq!((c.in_flight_count(), c.deferred_count()), (0, 1));
        assert_eq!(c.process_deferred(198 * MS).unwrap(), 0);
        assert_eq!(c.process_deferred(199 * MS).unwrap(), 1);
        assert!(c.has_ready_message());
    }

    #[test]
    fn a_client_leaving_does_not_requeue_its_in_flight_messages() {
        let disk = SimDisk::new();
        let mut c = channel(10, &disk);
        c.add_client(1);
        c.start_in_flight(message(1), 1, Duration::ZERO, 60_000 * MS);
        assert!(!c.remove_client(1));
        assert!(!c.has_ready_message(), "still in flight, not requeued");
        assert!(c.process_in_flight(59_999 * MS).unwrap().is_empty());
        assert_eq!(c.process_in_flight(60_000 * MS).unwrap().len(), 1);
        assert!(c.has_ready_message());
    }

    #[test]
    fn ephemeral_channels_drop_overflow_and_die_with_their_last_client() {
        let backend = Backend::open(
            "t:e#ephemeral",
            true,
            SimDisk::new(),
            DiskQueueConfig::default(),
            Duration::ZERO,
        );
        let mut c = Channel::new("t", "e#ephemeral", 2, backend);
        assert_eq!(c.put(message(1)).unwrap(), Placed::Memory);
        assert_eq!(c.put(message(2)).unwrap(), Placed::Memory);
        assert_eq!(c.put(message(3)).unwrap(), Placed::Dropped);
        assert_eq!((c.take_dropped(), c.take_dropped()), (1, 0), "counted once");
        assert_eq!(c.depth(), 2);
        c.add_client(1);
        assert!(c.remove_client(1));
    }

    #[test]
    fn graceful_close_writes_memory_in_flight_and_deferred_to_disk() {
        let disk = SimDisk::new();
        let mut c = channel(10, &disk);
        c.put(message(1)).unwrap();
        let m = c.start_in_flight(message(2), 1, Duration::ZERO, 60_000 * MS);
        c.put_deferred(message(3), Duration::ZERO, 3_600_000 * MS);
        c.close().unwrap();
        let mut reopened = channel(10, &disk);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut got = Vec::new();
        while let Some(m) = reopened.take_next(&mut rng).unwrap() {
            got.push((m.body.clone(), m.attempts));
        }
        assert_eq!(
            got,
            vec![(b"m1".to_vec(), 0), (m.body.clone(), 1), (b"m3".to_vec(), 0)],
            "in-flight keeps its attempts; the deferred one lost its timer and is ready now"
        );
    }

    #[test]
    fn a_kill_loses_memory_in_flight_and_deferred() {
        let disk = SimDisk::new();
        let mut c = channel(1, &disk);
        c.put(message(1)).unwrap(); // memory
        c.put(message(2)).unwrap(); // disk
        c.start_in_flight(message(3), 1, Duration::ZERO, 60_000 * MS);
        c.put_deferred(message(4), Duration::ZERO, 1_000 * MS);
        // The 2 s sync first: a disk queue killed before its first sync has no metadata and
        // starts empty, as go-diskqueue's New does.
        c.tick(Duration::from_secs(2)).unwrap();
        drop(c); // kill: no close
        let mut reopened = channel(1, &disk);
        assert_eq!(
            take_all(&mut reopened, &mut ChaCha8Rng::seed_from_u64(0)),
            vec![2],
            "only what was on disk"
        );
    }
}
