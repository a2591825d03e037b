//! NSQ: nsqd, nsqlookupd, producer and consumer, faithful to NSQ (reference §1).
//!
//! Built bottom-up as sans-I/O cores that take time and randomness as inputs:
//! - [`diskqueue`]: go-diskqueue's on-disk FIFO over the `Disk` interface.
//! - [`protocol`]: the V2 wire protocol (commands, frames, messages, errors).

pub mod diskqueue;
pub mod protocol;
