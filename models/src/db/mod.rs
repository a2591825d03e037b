//! The consumer's database: an InnoDB-like sink (reference §5; issue 4).
//!
//! Built bottom-up as sans-I/O cores:
//! - [`engine`]: tables, transactions, statements, errors 1213/1205/1062, the redo log.
//! - [`locks`]: row locks, the wait-for graph, deadlock detection with InnoDB's victim choice,
//!   and lock-wait timeouts.
//!
//! Still to come: the database host and its request protocol in the simulation, the
//! consumer strategies (ack before/after, inbox, conditional update, stored position) and
//! retry policies wired into the NSQ consumer, the effect checkers, and scenarios.

pub mod client;
pub mod engine;
pub mod locks;
pub mod sim_db;
pub mod wire;
