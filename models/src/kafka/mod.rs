//! Kafka: a replicated log with ISR, high watermark and leader epochs, idempotent producers,
//! on Kafka's own wire protocol (reference §2; issue 10). Built bottom-up, as NSQ was.
//!
//! Sans-I/O cores that take time, randomness and I/O as inputs:
//! - [`batch`]: record batches as the log, the replicas and the clients see them;
//! - [`error`]: the errors a produce is answered with, by Kafka's names and codes;
//! - [`producer_state`]: what a partition leader remembers per producer id, and the
//!   duplicate, epoch and sequence checks it makes before appending an idempotent batch;
//! - [`txn_state`], [`txn_coordinator`]: a transactional id's state as records of the
//!   replicated `__transaction_state` topic, and the transaction coordinator over it
//!   (fencing, partitions, EndTxn, markers, timeouts; protocol v1 or v2, KIP-890);
//! - [`txn_index`]: a replica's open and aborted transactions and its last stable offset;
//! - [`read_committed`]: what a consumer delivers from fetched batches by `isolation.level`;
//! - [`group_member`]: a consumer group member as the Java consumer's coordinator is one:
//!   FindCoordinator, JoinGroup, SyncGroup, heartbeats, the poll timeout, generations, eager
//!   revocation, offset commits and fetches;
//! - [`assignor`]: the consumer group leader's range and round-robin assignors, and the
//!   consumer protocol's subscription and assignment bytes;
//! - [`partitioner`]: the Java producer's choice of partition (murmur2 of the key,
//!   round-robin without one);
//! - [`accumulator`]: the Java producer's batching, sending, retries, timeouts and idempotent
//!   sequence numbers, with time passed in, and what a transaction asks of it;
//! - [`txn_manager`]: the transactional producer's state machine (Java's
//!   `TransactionManager`): coordinator lookup, InitProducerId and fencing, partitions added
//!   before their first batch, EndTxn after the flush, abortable and fatal errors;
//! - [`txn_offsets`]: its `sendOffsetsToTransaction` part: AddOffsetsToTxn, the group's
//!   coordinator, TxnOffsetCommit, and how Java's handler takes each answer;
//! - [`frame`]: a batch's on-disk frame in a segment (length, CRC-32C, every field);
//! - [`checkpoint`]: Kafka's checkpoint files, replaced atomically;
//! - [`epoch_cache`]: the leader epoch cache (KIP-101) and its OffsetsForLeaderEpoch answer;
//! - [`log`]: one partition replica's log on a `Disk`: segments, recovery after a crash,
//!   the flush policy, truncation, the persisted epoch cache and high-watermark checkpoint;
//! - [`partition`]: one replica's replication state machine: leader and follower, the ISR,
//!   the high watermark, acks, and truncation by leader epoch (KIP-101) or by high watermark;
//! - [`broker`]: one broker's replicas, its metadata, and the requests it answers, typed;
//! - [`controller`]: broker liveness by heartbeat, replica assignment, leader election from
//!   the ISR (or unclean), and ISR changes proposed by leaders;
//! - [`wire`]: Kafka's wire protocol: incremental framing, request and response headers, the
//!   table of APIs and versions we implement, the broker's and the client's codecs;
//! - [`wire_records`]: a [`batch::Batch`] as RecordBatch v2 bytes, and back;
//! - `wire_schema`: each request's field layout, checked before kafka-protocol allocates;
//! - [`handler`]: Kafka's requests answered by a broker: where the wire meets the core,
//!   shared by the simulated broker and the real server;
//! - [`group`]: one consumer group's membership (classic protocol: join, sync, heartbeat,
//!   leave, generations, session timeouts, rebalances);
//! - [`offset_record`]: a committed offset as a `__consumer_offsets` record;
//! - [`group_coordinator`]: a broker's groups and committed offsets, the offsets partition
//!   of each group, loading and unloading with that partition's leadership;
//! - [`handler_group`]: the group APIs' wire messages mapped onto the coordinator;
//! - [`broker_txn`]: the transaction coordinator on a broker, over its own
//!   `__transaction_state` replicas, appending or sending the markers;
//! - [`handler_txn`]: InitProducerId with a transactional id, AddPartitionsToTxn, EndTxn and
//!   the transactional FindCoordinator on the wire.
//!
//! The simulated clients, host software on turmoil:
//! - [`connection`]: a client's connection to one broker (ApiVersions, correlation ids,
//!   answers in order, a request timeout that closes it);
//! - [`client`]: what both clients share: the record value format and Metadata lookups;
//! - [`producer`]: the Java producer as a process, driving the [`accumulator`], and (its child
//!   `producer_txn.rs`) with a `transactional.id`, the application's transactions and the
//!   [`txn_manager`]'s requests to the coordinator;
//! - [`consumer`]: the consumer as a process: assigned partitions with positions in memory,
//!   or (its child `consumer_group.rs`) a consumer group member driving [`group_member`],
//!   with a heartbeat task and a commit strategy.
//!
//! The hosts on turmoil: [`control`] (the control plane's messages), [`sim_controller`],
//! [`sim_broker`], `sim_fetcher` (a broker's replica fetcher) and `sim_markers` (a
//! coordinator's WriteTxnMarkers to other brokers).
//!
//! The real server: [`real`] (one node, broker and controller in one process, or several
//! brokers in one process replicating over TCP with one controller; tokio sockets, real log
//! directories, the real clock) and [`serve`] (its flags, named as Kafka's configs, and
//! [`serve::SERVERS`]: `jetsam serve kafka broker|cluster`).
//!
//! The design: [`design`] (config, hosts and roles, the drain probe, the promise).
//!
//! Still to come: a simulated consume-transform-produce application driving [`txn_offsets`]
//! (the state machine is there; no host sends TxnOffsetCommit yet), and real brokers in separate processes (the controller's RPCs over the wire).

pub mod accumulator;
pub mod assignor;
pub mod batch;
pub mod broker;
pub mod broker_txn;
pub mod checkpoint;
pub mod client;
#[cfg(test)]
mod clients_tests;
pub mod connection;
pub mod consumer;
pub mod control;
pub mod controller;
pub mod design;
pub mod epoch_cache;
pub mod error;
pub mod frame;
pub mod group;
pub mod group_coordinator;
#[cfg(test)]
mod group_coordinator_tests;
pub mod group_member;
#[cfg(test)]
mod group_member_tests;
#[cfg(test)]
mod group_tests;
pub mod handler;
pub mod handler_group;
pub mod handler_markers;
pub mod handler_txn;
pub mod handler_txn_offsets;
pub mod log;
#[cfg(test)]
mod log_tests;
#[cfg(test)]
mod mem_log;
pub mod offset_record;
pub mod partition;
pub mod partitioner;
pub mod producer;
pub mod producer_state;
pub mod read_committed;
pub mod real;
pub mod serve;
pub mod sim_broker;
pub mod sim_controller;
mod sim_fetcher;
mod sim_markers;
pub mod transform_feed;
pub mod transformer;
pub mod txn_coordinator;
pub mod txn_index;
pub mod txn_manager;
pub mod txn_offsets;
pub mod txn_state;
pub mod wire;
#[cfg(test)]
mod wire_group_tests;
pub mod wire_records;
mod wire_schema;
#[cfg(test)]
mod wire_tests;
