//! The consumer's database: an InnoDB-like sink (reference §5; issue 4).
//!
//! Built bottom-up as sans-I/O cores:
//! - [`engine`]: tables, transactions, statements, errors 1213/1205/1062, the redo log.
//! - [`locks`]: row locks, the wait-for graph, deadlock detection with InnoDB's victim choice,
//!   and lock-wait timeouts.
//!
//! - [`wire`] and [`sim_db`]: the database host and its request protocol in the simulation.
//! - [`client`]: a consumer's connection, the processing strategies (ack before/after, inbox,
//!   conditional update, stored position) and the retry policies.
//! - [`sink`]: all of it as one component a consumer design includes: one config section
//!   (`[config.db]`), the host, the effect-parts declaration, the strategy's promise, and one
//!   call per message with the design's acknowledgement as a callback.

pub mod client;
pub mod engine;
pub mod locks;
pub mod sim_db;
pub mod sink;
pub mod wire;
