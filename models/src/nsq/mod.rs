//! NSQ: nsqd, nsqlookupd, producer and consumer, faithful to NSQ (reference §1).
//!
//! Sans-I/O cores that take time and randomness as inputs:
//! - [`protocol`]: the V2 wire protocol (commands, frames, messages, errors);
//! - [`diskqueue`]: go-diskqueue's on-disk FIFO over the `Disk` interface;
//! - [`backend`], [`channel`], [`topic`]: nsqd's queues: memory overflowing to disk (or
//!   dropped, for `#ephemeral`), in-flight and deferred sets, fan-out to channels;
//! - [`nsqd`]: connections, commands, delivery, heartbeats, output buffering, queue scan,
//!   metadata, and its HTTP API (publishing, `/stats`, creating, deleting, emptying and
//!   pausing topics and channels); [`guid`]: message ids;
//! - [`lookupd`]: nsqlookupd's V1 protocol, registrations and HTTP API.
//!
//! Drivers and clients:
//! - [`nsqd_driver`] and [`lookupd_driver`]: serving the cores over any stream;
//!   [`sim_nsqd`] and [`sim_lookupd`] bind them to turmoil, [`real`] to tokio sockets, a real
//!   data directory and the real clock;
//! - [`link`], [`http`]: a client connection to nsqd, and the little HTTP lookupd needs;
//! - [`client`]: what both clients share (settings, message bodies, connect, IDENTIFY);
//!   [`producer`]: publishing with retries; [`consumer`]: the go-nsq-like consumer, with its
//!   flow control in [`throttle`] ([`rdy`] accounting and [`backoff`]) and the database sink;
//! - [`design`]: the `nsq` design (its config, hosts, promise); [`serve`]: its real servers
//!   for `jetsam serve nsq nsqd|lookupd`.
//!
//! Not modelled yet: TLS, compression, AUTH, sampling, `/stats`' Go memory section and
//! end-to-end latency percentiles (issue 16 lists the remaining differences).

pub mod backend;
pub mod backoff;
pub mod channel;
pub mod client;
pub mod consumer;
pub mod design;
pub mod diskqueue;
pub mod guid;
pub mod http;
pub mod link;
pub mod lookupd;
pub mod lookupd_driver;
pub mod nsqd;
pub mod nsqd_driver;
#[cfg(test)]
mod nsqd_tests;
pub mod producer;
pub mod protocol;
pub mod rdy;
pub mod real;
pub mod serve;
pub mod sim_lookupd;
pub mod sim_nsqd;
pub mod throttle;
pub mod topic;
