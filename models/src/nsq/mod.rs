//! NSQ: nsqd, nsqlookupd, producer and consumer, faithful to NSQ (reference §1).
//!
//! Sans-I/O cores that take time and randomness as inputs:
//! - [`protocol`]: the V2 wire protocol (commands, frames, messages, errors);
//! - [`diskqueue`]: go-diskqueue's on-disk FIFO over the `Disk` interface;
//! - [`backend`], [`channel`], [`topic`]: nsqd's queues: memory overflowing to disk (or
//!   dropped, for `#ephemeral`), in-flight and deferred sets, fan-out to channels;
//! - [`nsqd`]: connections, commands, delivery, heartbeats, output buffering, queue scan,
//!   metadata; [`guid`]: message ids;
//! - [`lookupd`]: nsqlookupd's V1 protocol, registrations and HTTP API.
//!
//! Drivers and clients:
//! - [`nsqd_driver`] and [`lookupd_driver`]: serving the cores over any stream;
//!   [`sim_nsqd`] and [`sim_lookupd`] bind them to turmoil, [`real`] to tokio sockets, a real
//!   data directory and the real clock (`jetsam nsqd`, `jetsam lookupd`);
//! - [`link`], [`http`]: a client connection to nsqd, and the little HTTP lookupd needs;
//! - [`clients`]: the producer and the go-nsq-like consumer, with [`backoff`]; [`design`]:
//!   the `nsq` design.
//!
//! Not modelled yet: nsqd's channel pre-creation from lookupd when a topic is created (topics
//! start at once, as on an nsqd whose lookupds cannot be reached; with the single channel the
//! design's consumers share, the difference cannot be observed), go-nsq's RDY redistribution
//! beyond moving the backoff's test RDY off a silent connection, TLS, compression, AUTH,
//! pausing, and nsqd's HTTP publish API.

pub mod backend;
pub mod backoff;
pub mod channel;
pub mod clients;
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
pub mod protocol;
pub mod rdy;
pub mod real;
pub mod serve;
pub mod sim_lookupd;
pub mod sim_nsqd;
pub mod topic;
