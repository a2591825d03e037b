//! nsqd's topic and channel management, sans I/O, as its HTTP API runs it: deleting,
//! emptying and pausing (`nsqd/nsqd.go` `DeleteExistingTopic`, `nsqd/topic.go`
//! `DeleteExistingChannel`/`exit`/`Empty`, `nsqd/channel.go` `exit`/`Empty`/`doPause`).
//! A child of `nsqd`, so it reaches the topics and clients as the TCP commands do.
//!
//! - A delete tells every lookupd (UNREGISTER) first, closes the connections of the
//!   channel's clients, drops every message (memory, disk queue files and metadata,
//!   in flight, deferred) and forgets the queue; the metadata is persisted without it.
//! - An empty drops the same messages but keeps the queue and its clients, whose in-flight
//!   counts start again from zero: a later FIN of a dropped message fails `E_FIN_FAILED`.
//! - A paused channel sends its clients nothing and still takes its topic's messages.
//!
//! Dropped messages are noted once per operation (`nsqd.topic_emptied`,
//! `nsqd.channel_emptied`, `nsqd.topic_deleted`, `nsqd.channel_deleted`) so the promise can
//! name an operator's drop as the window it is, instead of calling the loss broken.

// A sans-I/O core: its functions stay within clippy.toml's too-many-lines-threshold (issue 9).
#![deny(clippy::too_many_lines)]

use super::{Nsqd, Outbox, Output, State};
use sim::disk::Disk;
use std::io;

/// Why a management call failed, as nsqd's HTTP API tells it apart.
#[derive(Debug)]
pub enum AdminError {
    TopicNotFound,
    ChannelNotFound,
    /// The disk queue failed to remove its files (`INTERNAL_ERROR`).
    Io(io::Error),
}

impl From<io::Error> for AdminError {
    fn from(error: io::Error) -> AdminError {
        AdminError::Io(error)
    }
}

impl<D: Disk + Clone> Nsqd<D> {
    pub fn topic_exists(&self, topic: &str) -> bool {
        self.topics.contains_key(topic)
    }

    fn existing_channel(&mut self, topic: &str, channel: &str) -> Result<&mut super::Channel<D>, AdminError> {
        self.topics
            .get_mut(topic)
            .ok_or(AdminError::TopicNotFound)?
            .channels
            .get_mut(channel)
            .ok_or(AdminError::ChannelNotFound)
    }

    /// `Channel.Empty`: the channel's messages are dropped and its clients' in-flight counts
    /// zeroed (`clientV2.Empty`).
    pub fn empty_channel(&mut self, topic: &str, channel: &str, out: &mut Outbox) -> Result<(), AdminError> {
        let c = self.existing_channel(topic, channel)?;
        let dropped = c.empty();
        let clients: Vec<_> = c.clients().iter().copied().collect();
        for id in clients {
            if let Some(client) = self.clients.get_mut(&id) {
                client.in_flight = 0;
            }
        }
        if dropped.as_ref().is_ok_and(|n| *n > 0) {
            out.0.push(Output::Note("nsqd.channel_emptied"));
        }
        dropped.map(|_| ()).map_err(AdminError::from)
    }

    /// `Topic.Empty`: the topic's own memory and disk queues are dropped; its channels keep
    /// theirs.
    pub fn empty_topic(&mut self, topic: &str, out: &mut Outbox) -> Result<(), AdminError> {
        let t = self.topics.get_mut(topic).ok_or(AdminError::TopicNotFound)?;
        let dropped = t.empty()?;
        if dropped > 0 {
            out.0.push(Output::Note("nsqd.topic_emptied"));
        }
        Ok(())
    }

    /// `Channel.Pause`/`UnPause`, persisted at once as the HTTP handler does, so a crash
    /// does not suddenly unpause it.
    pub fn pause_channel(&mut self, topic: &str, channel: &str, paused: bool) -> Result<(), AdminError> {
        self.existing_channel(topic, channel)?.paused = paused;
        let _ = self.persist_metadata();
        Ok(())
    }

    /// `Channel.exit(deleted)`: UNREGISTER, close its clients' connections, drop its
    /// messages. Returns how many were dropped. The caller removes it from its topic.
    fn delete_channel_queues(&mut self, topic: &str, channel: &str, out: &mut Outbox) -> io::Result<u64> {
        out.0.push(Output::Unregister {
            topic: topic.to_string(),
            channel: Some(channel.to_string()),
        });
        let Some(c) = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.channels.get_mut(channel))
        else {
            return Ok(0);
        };
        let clients: Vec<_> = c.clients().iter().copied().collect();
        let dropped = c.empty();
        for id in clients {
            if let Some(client) = self.clients.get_mut(&id) {
                if client.state != State::Closed {
                    client.state = State::Closed;
                    out.0.push(Output::Close(id));
                }
                client.in_flight = 0;
            }
        }
        dropped
    }

    /// `Topic.DeleteExistingChannel`. An `#ephemeral` topic left with no channel is deleted
    /// too, as its delete callback does.
    pub fn delete_channel(&mut self, topic: &str, channel: &str, out: &mut Outbox) -> Result<(), AdminError> {
        self.existing_channel(topic, channel)?;
        let dropped = self.delete_channel_queues(topic, channel, out);
        let t = self.topics.get_mut(topic).expect("checked above");
        t.channels.remove(channel);
        let delete_topic = t.ephemeral && t.channels.is_empty();
        match dropped {
            Ok(n) if n > 0 => out.0.push(Output::Note("nsqd.channel_deleted")),
            Ok(_) => {}
            // nsqd ignores what `channel.Delete` returns: a file left behind is logged.
            Err(e) => tracing::warn!(topic, channel, error = %e, "channel delete"),
        }
        let _ = self.persist_metadata();
        if delete_topic {
            self.delete_topic(topic, out)?;
        }
        Ok(())
    }

    /// `NSQD.DeleteExistingTopic`: UNREGISTER the topic, delete every channel, drop the
    /// topic's own messages and files, forget it, persist the metadata.
    pub fn delete_topic(&mut self, topic: &str, out: &mut Outbox) -> Result<(), AdminError> {
        if !self.topics.contains_key(topic) {
            return Err(AdminError::TopicNotFound);
        }
        out.0.push(Output::Unregister {
            topic: topic.to_string(),
            channel: None,
        });
        let channels: Vec<String> = self.topics[topic].channels.keys().cloned().collect();
        let mut dropped = 0;
        for channel in channels {
            // nsqd logs a channel's failure and goes on deleting the others.
            match self.delete_channel_queues(topic, &channel, out) {
                Ok(n) => dropped += n,
                Err(e) => tracing::warn!(topic, channel, error = %e, "channel delete"),
            }
        }
        // A command held while lookupd is asked for this topic's channels would wait for an
        // answer that now never comes: release what it answered.
        for c in self.clients.values_mut() {
            if c.blocked_on.as_deref() == Some(topic) {
                c.blocked_on = None;
                out.0.append(&mut c.held);
            }
        }
        let mut t = self.topics.remove(topic).expect("checked above");
        let result = t.empty();
        dropped += result.as_ref().copied().unwrap_or_default();
        if dropped > 0 {
            out.0.push(Output::Note("nsqd.topic_deleted"));
        }
        let _ = self.persist_metadata();
        // nsqd's HTTP handler answers 404 only for a missing topic: a file that could not
        // be removed is logged.
        if let Err(e) = result {
            tracing::warn!(topic, error = %e, "topic delete");
        }
        Ok(())
    }
}
