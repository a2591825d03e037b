//! Kafka: a replicated log with ISR, high watermark and leader epochs, idempotent producers,
//! on Kafka's own wire protocol (reference §2; issue 10). Built bottom-up, as NSQ was.
//!
//! Sans-I/O cores that take time, randomness and I/O as inputs:
//! - [`batch`]: record batches as the log, the replicas and the clients see them;
//! - [`wire`]: Kafka's wire protocol: incremental framing, request and response headers, the
//!   table of APIs and versions we implement, the broker's and the client's codecs;
//! - [`wire_records`]: a [`batch::Batch`] as RecordBatch v2 bytes, and back;
//! - `wire_schema`: each request's field layout, checked before kafka-protocol allocates.
//!
//! Still to come in this design: the log on the simulated disk, the producer state that
//! makes produce idempotent, the partition's replication state machine (leader and follower,
//! ISR, high watermark, leader-epoch truncation), the controller, the drivers, clients,
//! checkers and scenarios.

pub mod batch;
pub mod wire;
pub mod wire_records;
mod wire_schema;

#[cfg(test)]
mod wire_tests;
