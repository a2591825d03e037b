//! The errors brokers answer with, by Kafka's names and numeric codes (Kafka `Errors.java`),
//! and how the Java client classifies a produce's.
//!
//! Two facts decide what a client does with an error, and both are Kafka's, not ours:
//! - whether its exception is a `RetriableException` (the client retries it while
//!   `retries` and `delivery.timeout.ms` allow);
//! - whether the leader can have appended the batch anyway. Our history needs this: a batch
//!   whose every attempt was refused is a `fail`, one with an attempt that may have landed is
//!   an `info` (ARCHITECTURE.md, "Publish outcomes").

use std::fmt;

/// A broker's error: one per partition in a produce or fetch response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KafkaError {
    /// UNKNOWN_SERVER_ERROR (-1).
    UnknownServerError,
    /// OFFSET_OUT_OF_RANGE (1): a fetch outside the log.
    OffsetOutOfRange,
    /// CORRUPT_MESSAGE (2).
    CorruptMessage,
    /// LEADER_NOT_AVAILABLE (5).
    LeaderNotAvailable,
    /// NOT_LEADER_OR_FOLLOWER (6).
    NotLeaderOrFollower,
    /// REQUEST_TIMED_OUT (7): with acks=all, the leader appended the batch but the ISR did
    /// not copy it within the request's timeout.
    RequestTimedOut,
    /// MESSAGE_TOO_LARGE (10).
    MessageTooLarge,
    /// NETWORK_EXCEPTION (13): the client's own verdict when the connection closed with the
    /// request in flight (Kafka `Sender.handleProduceResponse`); no broker sends it.
    NetworkException,
    /// NOT_ENOUGH_REPLICAS (19): the ISR is below `min.insync.replicas`; nothing appended.
    NotEnoughReplicas,
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND (20): appended, then the ISR shrank below the minimum.
    NotEnoughReplicasAfterAppend,
    /// OUT_OF_ORDER_SEQUENCE_NUMBER (45).
    OutOfOrderSequenceNumber,
    /// DUPLICATE_SEQUENCE_NUMBER (46). The leader code read for this model (Kafka 3.x/4.x
    /// `UnifiedLog.analyzeAndValidateProducerState`) answers a cached duplicate with NONE and
    /// the original offsets, never with this code; the client still takes it as a success.
    DuplicateSequenceNumber,
    /// INVALID_PRODUCER_EPOCH (47): the batch's epoch is older than the leader's.
    InvalidProducerEpoch,
    /// KAFKA_STORAGE_ERROR (56).
    KafkaStorageError,
    /// UNSUPPORTED_COMPRESSION_TYPE (76): a batch compressed with a codec we do not build.
    UnsupportedCompressionType,
    /// INVALID_RECORD (87): a batch Kafka would not accept (a control batch, say).
    InvalidRecord,
    /// UNKNOWN_PRODUCER_ID (59): sent by brokers before KIP-360; a modern leader with no
    /// state for a producer accepts any sequence instead (`ProducerAppendInfo.checkSequence`).
    UnknownProducerId,
    /// FENCED_LEADER_EPOCH (74): the controller's state is older than the replica's.
    FencedLeaderEpoch,
    /// PRODUCER_FENCED (90).
    ProducerFenced,
    CoordinatorLoadInProgress,
    CoordinatorNotAvailable,
    NotCoordinator,
    InvalidTxnState,
    InvalidProducerIdMapping,
    InvalidTransactionTimeout,
    ConcurrentTransactions,
    TransactionCoordinatorFenced,
}

/// Every error, for tables and tests.
pub const KAFKA_ERRORS: [KafkaError; 27] = [
    KafkaError::UnknownServerError,
    KafkaError::OffsetOutOfRange,
    KafkaError::CorruptMessage,
    KafkaError::LeaderNotAvailable,
    KafkaError::NotLeaderOrFollower,
    KafkaError::RequestTimedOut,
    KafkaError::MessageTooLarge,
    KafkaError::NetworkException,
    KafkaError::NotEnoughReplicas,
    KafkaError::NotEnoughReplicasAfterAppend,
    KafkaError::OutOfOrderSequenceNumber,
    KafkaError::DuplicateSequenceNumber,
    KafkaError::InvalidProducerEpoch,
    KafkaError::KafkaStorageError,
    KafkaError::UnknownProducerId,
    KafkaError::FencedLeaderEpoch,
    KafkaError::UnsupportedCompressionType,
    KafkaError::InvalidRecord,
    KafkaError::ProducerFenced,
    KafkaError::CoordinatorLoadInProgress,
    KafkaError::CoordinatorNotAvailable,
    KafkaError::NotCoordinator,
    KafkaError::InvalidTxnState,
    KafkaError::InvalidProducerIdMapping,
    KafkaError::InvalidTransactionTimeout,
    KafkaError::ConcurrentTransactions,
    KafkaError::TransactionCoordinatorFenced,
];

impl KafkaError {
    /// Kafka's numeric error code.
    pub fn code(self) -> i16 {
        match self {
            KafkaError::UnknownServerError => -1,
            KafkaError::OffsetOutOfRange => 1,
            KafkaError::CorruptMessage => 2,
            KafkaError::LeaderNotAvailable => 5,
            KafkaError::NotLeaderOrFollower => 6,
            KafkaError::RequestTimedOut => 7,
            KafkaError::MessageTooLarge => 10,
            KafkaError::NetworkException => 13,
            KafkaError::NotEnoughReplicas => 19,
            KafkaError::NotEnoughReplicasAfterAppend => 20,
            KafkaError::OutOfOrderSequenceNumber => 45,
            KafkaError::DuplicateSequenceNumber => 46,
            KafkaError::InvalidProducerEpoch => 47,
            KafkaError::KafkaStorageError => 56,
            KafkaError::UnknownProducerId => 59,
            KafkaError::FencedLeaderEpoch => 74,
            KafkaError::UnsupportedCompressionType => 76,
            KafkaError::InvalidRecord => 87,
            KafkaError::ProducerFenced => 90,
            KafkaError::CoordinatorLoadInProgress => 14,
            KafkaError::CoordinatorNotAvailable => 15,
            KafkaError::NotCoordinator => 16,
            KafkaError::InvalidTxnState => 48,
            KafkaError::InvalidProducerIdMapping => 49,
            KafkaError::InvalidTransactionTimeout => 50,
            KafkaError::ConcurrentTransactions => 51,
            KafkaError::TransactionCoordinatorFenced => 52,
        }
    }

    /// The error with Kafka's numeric code, if it is one of these.
    pub fn from_code(code: i16) -> Option<KafkaError> {
        KAFKA_ERRORS.into_iter().find(|e| e.code() == code)
    }

    /// Kafka's name for the error (`Errors.name()`).
    pub fn name(self) -> &'static str {
        match self {
            KafkaError::UnknownServerError => "UNKNOWN_SERVER_ERROR",
            KafkaError::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
            KafkaError::CorruptMessage => "CORRUPT_MESSAGE",
            KafkaError::LeaderNotAvailable => "LEADER_NOT_AVAILABLE",
            KafkaError::NotLeaderOrFollower => "NOT_LEADER_OR_FOLLOWER",
            KafkaError::RequestTimedOut => "REQUEST_TIMED_OUT",
            KafkaError::MessageTooLarge => "MESSAGE_TOO_LARGE",
            KafkaError::NetworkException => "NETWORK_EXCEPTION",
            KafkaError::NotEnoughReplicas => "NOT_ENOUGH_REPLICAS",
            KafkaError::NotEnoughReplicasAfterAppend => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
            KafkaError::OutOfOrderSequenceNumber => "OUT_OF_ORDER_SEQUENCE_NUMBER",
            KafkaError::DuplicateSequenceNumber => "DUPLICATE_SEQUENCE_NUMBER",
            KafkaError::InvalidProducerEpoch => "INVALID_PRODUCER_EPOCH",
            KafkaError::KafkaStorageError => "KAFKA_STORAGE_ERROR",
            KafkaError::UnknownProducerId => "UNKNOWN_PRODUCER_ID",
            KafkaError::FencedLeaderEpoch => "FENCED_LEADER_EPOCH",
            KafkaError::UnsupportedCompressionType => "UNSUPPORTED_COMPRESSION_TYPE",
            KafkaError::InvalidRecord => "INVALID_RECORD",
            KafkaError::ProducerFenced => "PRODUCER_FENCED",
            KafkaError::CoordinatorLoadInProgress => "COORDINATOR_LOAD_IN_PROGRESS",
            KafkaError::CoordinatorNotAvailable => "COORDINATOR_NOT_AVAILABLE",
            KafkaError::NotCoordinator => "NOT_COORDINATOR",
            KafkaError::InvalidTxnState => "INVALID_TXN_STATE",
            KafkaError::InvalidProducerIdMapping => "INVALID_PRODUCER_ID_MAPPING",
            KafkaError::InvalidTransactionTimeout => "INVALID_TRANSACTION_TIMEOUT",
            KafkaError::ConcurrentTransactions => "CONCURRENT_TRANSACTIONS",
            KafkaError::TransactionCoordinatorFenced => "TRANSACTION_COORDINATOR_FENCED",
        }
    }

    /// Whether Kafka's exception for the error is a `RetriableException`.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            KafkaError::CorruptMessage
                | KafkaError::LeaderNotAvailable
                | KafkaError::NotLeaderOrFollower
                | KafkaError::RequestTimedOut
                | KafkaError::NetworkException
                | KafkaError::NotEnoughReplicas
                | KafkaError::NotEnoughReplicasAfterAppend
                | KafkaError::KafkaStorageError
                // The coordinator's errors a client retries after looking the coordinator
                // up again or waiting (Kafka's CoordinatorLoadInProgressException etc.).
                | KafkaError::CoordinatorLoadInProgress
                | KafkaError::CoordinatorNotAvailable
                | KafkaError::NotCoordinator
                | KafkaError::ConcurrentTransactions
        )
    }

    /// Whether the leader may have appended the batch although it answered this error. A
    /// timed-out or disconnected request, an append the ISR did not finish, and an unknown
    /// server error leave the batch's fate open; every other answer is a refusal before the
    /// append (Kafka `ReplicaManager.appendToLocalLog` checks, then appends, then waits).
    pub fn may_have_appended(self) -> bool {
        matches!(
            self,
            KafkaError::RequestTimedOut
                | KafkaError::NetworkException
                | KafkaError::NotEnoughReplicasAfterAppend
                | KafkaError::UnknownServerError
        )
    }
}

impl fmt::Display for KafkaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

impl std::error::Error for KafkaError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_kafkas_and_round_trip() {
        assert_eq!(KafkaError::OutOfOrderSequenceNumber.code(), 45);
        assert_eq!(KafkaError::DuplicateSequenceNumber.code(), 46);
        assert_eq!(KafkaError::InvalidProducerEpoch.code(), 47);
        assert_eq!(KafkaError::UnknownProducerId.code(), 59);
        assert_eq!(KafkaError::NotLeaderOrFollower.code(), 6);
        for e in KAFKA_ERRORS {
            assert_eq!(KafkaError::from_code(e.code()), Some(e), "{e}");
        }
        assert_eq!(KafkaError::from_code(0), None, "NONE is not an error");
    }

    #[test]
    fn sequence_and_epoch_errors_are_not_retriable_and_refuse_the_append() {
        for e in [
            KafkaError::OutOfOrderSequenceNumber,
            KafkaError::InvalidProducerEpoch,
            KafkaError::UnknownProducerId,
        ] {
            assert!(!e.is_retriable(), "{e}");
            assert!(!e.may_have_appended(), "{e}");
        }
        assert!(KafkaError::NetworkException.is_retriable());
        assert!(KafkaError::NetworkException.may_have_appended());
    }
}
