//! NSQ: nsqd, nsqlookupd, producer and consumer, faithful to NSQ (reference §1).
//!
//! Built bottom-up as sans-I/O cores that take time and randomness as inputs:
//! - [`diskqueue`]: go-diskqueue's on-disk FIFO over the `Disk` interface.
//! - [`protocol`]: the V2 wire protocol (commands, frames, messages, errors).
//! - [`backend`], [`channel`], [`topic`]: nsqd's queues: memory overflowing to disk (or
//!   dropped, for `#ephemeral`), in-flight and deferred sets, fan-out to channels.
//!
//! Still to come (issue 3): the nsqd connection state machine and queue-scan loop,
//! nsqlookupd, the go-nsq-like producer and consumer, the turmoil and tokio drivers, and the
//! `nsq` design with its scenarios.

pub mod backend;
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
pub mod real;
pub mod sim_lookupd;
pub mod sim_nsqd;
pub mod topic;
