//! The consumer's database: an InnoDB-like sink (reference §5; issue 4).
//!
//! Built bottom-up as sans-I/O cores:
//! - [`engine`]: tables, transactions, statements, errors 1213/1205/1062, `AUTO_INCREMENT`
//!   ids taken at INSERT, scans (plain, `FOR UPDATE` or `FOR UPDATE SKIP LOCKED`), the redo
//!   log.
//! - [`locks`]: row locks, the wait-for graph, deadlock detection with InnoDB's victim choice,
//!   and lock-wait timeouts.
//!
//! - [`wire`] and [`sim_db`]: the database host and its request protocol in the simulation.
//! - [`client`]: a consumer's connection, the processing strategies (ack before/after, inbox,
//!   conditional update, stored position) and the retry policies.
//! - [`tx`] and [`user`]: the user's own handler (issue 13), given a typed transaction on
//!   the engine, run in place of a built-in strategy (`strategy = "user"`).
//! - [`sink`]: all of it as one component a consumer design includes: one config section
//!   (`[config.db]`), the host, the effect-parts declaration, the strategy's promise, and one
//!   call per message with the design's acknowledgement as a callback.

//!
//! # Known differences from InnoDB
//!
//! `models/tests/db_differential.rs` runs generated schedules on the engine and on a real
//! MariaDB (InnoDB, REPEATABLE READ) and compares every statement's outcome. These
//! differences are known, kept out of its generator, and named there:
//!
//! 1. **A unique secondary key's clash with an uncommitted insert.** InnoDB's INSERT waits
//!    for the other transaction (a shared lock on the index record it inserted), then fails
//!    with 1062 or goes ahead; the engine locks only the primary key's row, checks the
//!    unique column against every row, committed or not, and fails at once. No design
//!    declares a unique column besides the primary key (`sim_db::schemas`), so no verdict
//!    depends on it.
//! 2. **Gap locks.** A locking read or an UPDATE of an absent row takes, in REPEATABLE
//!    READ, a gap lock that does not conflict with other gap locks but blocks inserts
//!    anywhere in the gap; the engine locks the absent key itself, exclusively, so a second
//!    locking read of it waits where InnoDB's does not, and an insert of a neighbouring key
//!    does not wait where InnoDB's does.
//! 3. **Deadlock victims on big tables.** The victim is the lighter transaction by InnoDB's
//!    `TRX_WEIGHT` (undo records plus lock structs), counted as InnoDB counts it
//!    ([`locks`]): a struct per page and mode, a struct per waiting request, implicit locks
//!    on inserted rows, the unique index's lock of a failed INSERT. The engine takes each
//!    table to be one page, as the small tables of the designs and the differential test
//!    are: on a table of many pages InnoDB counts more structs than the engine. Rows counted
//!    before this (a row updated twice weighed once, two rows locked alike weighed twice)
//!    chose the other victim than MariaDB on generated schedules.
//! 4. **Plain reads.** A non-locking SELECT reads the latest row, a simplification of
//!    InnoDB's consistent snapshot (see [`engine`]); the differential test issues only
//!    locking reads.
//! 5. **The `AUTO_INCREMENT` counter after a restart** starts past the largest id in the
//!    table, as InnoDB did before MySQL 8.0 and MariaDB 10.2.4 persisted it; a current
//!    server keeps the ids a rolled-back insert took. Within one run of the engine, ids are
//!    taken at INSERT and never reused, as with `innodb_autoinc_lock_mode` 1 (MariaDB's
//!    default) or 2 (MySQL 8.0's) for simple INSERTs.
//! 6. **Scans.** A scan walks the primary key in order; `FOR UPDATE SKIP LOCKED` locks each
//!    row it examines (matching the WHERE clause or not, as REPEATABLE READ keeps them)
//!    without the gap locks of difference 2, so an INSERT never waits for a scan. `FOR
//!    UPDATE` without SKIP LOCKED does the same but waits for a row another transaction
//!    holds, then runs again from its start (the rows it locked stay locked); it has no
//!    next-key lock past its last row either, so a later INSERT is not held back by it.
//!    `models/tests/db_differential.rs` does not generate waiting scans yet.

pub mod client;
pub mod engine;
pub mod locks;
pub mod sim_db;
pub mod sink;
pub mod tx;
pub mod user;
pub mod wire;
