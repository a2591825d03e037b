//! Kafka: a replicated log with ISR, high watermark and leader epochs, idempotent producers,
//! on Kafka's own wire protocol (reference §2; issue 10). Built bottom-up, as NSQ was.
//!
//! Sans-I/O cores that take time, randomness and I/O as inputs:
//! - [`batch`]: record batches as the log, the replicas and the clients see them;
//! - [`error`]: the errors a produce is answered with, by Kafka's names and codes;
//! - [`producer_state`]: what a partition leader remembers per producer id, and the
//!   duplicate, epoch and sequence checks it makes before appending an idempotent batch;
//! - [`partitioner`]: the Java producer's choice of partition (murmur2 of the key,
//!   round-robin without one);
//! - [`accumulator`]: the Java producer's batching, sending, retries, timeouts and idempotent
//!   sequence numbers, with time passed in.
//!
//! Still to come in this design: the log on the simulated disk, the partition's replication
//! state machine (leader and follower, ISR, high watermark, leader-epoch truncation), the
//! controller, the wire protocol, the drivers, clients, checkers and scenarios.

pub mod accumulator;
pub mod batch;
pub mod error;
pub mod partitioner;
pub mod producer_state;
