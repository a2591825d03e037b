//! The consumer's database: an InnoDB-like sink (reference §5; issue 4).
//!
//! Built bottom-up as sans-I/O cores:
//! - [`locks`]: row locks, the wait-for graph, deadlock detection with InnoDB's victim choice,
//!   and lock-wait timeouts.
//!
//! Still to come: tables and transactions, the redo log on the simulated disk, the database
//! host and its request protocol, consumer strategies, and scenarios.

pub mod locks;
