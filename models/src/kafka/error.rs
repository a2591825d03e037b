//! The errors a partition leader answers a produce with, by Kafka's names and numeric codes
//! (Kafka `Errors.java`), and how the Java client classifies them.
//!
//! Two facts decide what a client does with an error, and both are Kafka's, not ours:
//! - whether its exception is a `RetriableException` (the client retries it while
//!   `retries` and `delivery.timeout.ms` allow);
//! - whether the leader can have appended the batch anyway. Our history needs this: a batch
//!   whose every attempt was refused is a `fail`, one with an attempt that may have landed is
//!   an `info` (ARCHITECTURE.md, "Publish outcomes").

use std::fmt;

/// A produce error, one per partition in a produce response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProduceError {
    /// UNKNOWN_SERVER_ERROR (-1).
    UnknownServerError,
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
    /// UNKNOWN_PRODUCER_ID (59): sent by brokers before KIP-360; a modern leader with no
    /// state for a producer accepts any sequence instead (`ProducerAppendInfo.checkSequence`).
    UnknownProducerId,
    /// PRODUCER_FENCED (90).
    ProducerFenced,
}

/// Every error, for tables and tests.
pub const PRODUCE_ERRORS: [ProduceError; 15] = [
    ProduceError::UnknownServerError,
    ProduceError::CorruptMessage,
    ProduceError::LeaderNotAvailable,
    ProduceError::NotLeaderOrFollower,
    ProduceError::RequestTimedOut,
    ProduceError::MessageTooLarge,
    ProduceError::NetworkException,
    ProduceError::NotEnoughReplicas,
    ProduceError::NotEnoughReplicasAfterAppend,
    ProduceError::OutOfOrderSequenceNumber,
    ProduceError::DuplicateSequenceNumber,
    ProduceError::InvalidProducerEpoch,
    ProduceError::KafkaStorageError,
    ProduceError::UnknownProducerId,
    ProduceError::ProducerFenced,
];

impl ProduceError {
    /// Kafka's numeric error code.
    pub fn code(self) -> i16 {
        match self {
            ProduceError::UnknownServerError => -1,
            ProduceError::CorruptMessage => 2,
            ProduceError::LeaderNotAvailable => 5,
            ProduceError::NotLeaderOrFollower => 6,
            ProduceError::RequestTimedOut => 7,
            ProduceError::MessageTooLarge => 10,
            ProduceError::NetworkException => 13,
            ProduceError::NotEnoughReplicas => 19,
            ProduceError::NotEnoughReplicasAfterAppend => 20,
            ProduceError::OutOfOrderSequenceNumber => 45,
            ProduceError::DuplicateSequenceNumber => 46,
            ProduceError::InvalidProducerEpoch => 47,
            ProduceError::KafkaStorageError => 56,
            ProduceError::UnknownProducerId => 59,
            ProduceError::ProducerFenced => 90,
        }
    }

    /// The error with Kafka's numeric code, if it is one a produce can answer.
    pub fn from_code(code: i16) -> Option<ProduceError> {
        PRODUCE_ERRORS.into_iter().find(|e| e.code() == code)
    }

    /// Kafka's name for the error (`Errors.name()`).
    pub fn name(self) -> &'static str {
        match self {
            ProduceError::UnknownServerError => "UNKNOWN_SERVER_ERROR",
            ProduceError::CorruptMessage => "CORRUPT_MESSAGE",
            ProduceError::LeaderNotAvailable => "LEADER_NOT_AVAILABLE",
            ProduceError::NotLeaderOrFollower => "NOT_LEADER_OR_FOLLOWER",
            ProduceError::RequestTimedOut => "REQUEST_TIMED_OUT",
            ProduceError::MessageTooLarge => "MESSAGE_TOO_LARGE",
            ProduceError::NetworkException => "NETWORK_EXCEPTION",
            ProduceError::NotEnoughReplicas => "NOT_ENOUGH_REPLICAS",
            ProduceError::NotEnoughReplicasAfterAppend => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
            ProduceError::OutOfOrderSequenceNumber => "OUT_OF_ORDER_SEQUENCE_NUMBER",
            ProduceError::DuplicateSequenceNumber => "DUPLICATE_SEQUENCE_NUMBER",
            ProduceError::InvalidProducerEpoch => "INVALID_PRODUCER_EPOCH",
            ProduceError::KafkaStorageError => "KAFKA_STORAGE_ERROR",
            ProduceError::UnknownProducerId => "UNKNOWN_PRODUCER_ID",
            ProduceError::ProducerFenced => "PRODUCER_FENCED",
        }
    }

    /// Whether Kafka's exception for the error is a `RetriableException`.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            ProduceError::CorruptMessage
                | ProduceError::LeaderNotAvailable
                | ProduceError::NotLeaderOrFollower
                | ProduceError::RequestTimedOut
                | ProduceError::NetworkException
                | ProduceError::NotEnoughReplicas
                | ProduceError::NotEnoughReplicasAfterAppend
                | ProduceError::KafkaStorageError
        )
    }

    /// Whether the leader may have appended the batch although it answered this error. A
    /// timed-out or disconnected request, an append the ISR did not finish, and an unknown
    /// server error leave the batch's fate open; every other answer is a refusal before the
    /// append (Kafka `ReplicaManager.appendToLocalLog` checks, then appends, then waits).
    pub fn may_have_appended(self) -> bool {
        matches!(
            self,
            ProduceError::RequestTimedOut
                | ProduceError::NetworkException
                | ProduceError::NotEnoughReplicasAfterAppend
                | ProduceError::UnknownServerError
        )
    }
}

impl fmt::Display for ProduceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

impl std::error::Error for ProduceError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_kafkas_and_round_trip() {
        assert_eq!(ProduceError::OutOfOrderSequenceNumber.code(), 45);
        assert_eq!(ProduceError::DuplicateSequenceNumber.code(), 46);
        assert_eq!(ProduceError::InvalidProducerEpoch.code(), 47);
        assert_eq!(ProduceError::UnknownProducerId.code(), 59);
        assert_eq!(ProduceError::NotLeaderOrFollower.code(), 6);
        for e in PRODUCE_ERRORS {
            assert_eq!(ProduceError::from_code(e.code()), Some(e), "{e}");
        }
        assert_eq!(ProduceError::from_code(0), None, "NONE is not an error");
    }

    #[test]
    fn sequence_and_epoch_errors_are_not_retriable_and_refuse_the_append() {
        for e in [
            ProduceError::OutOfOrderSequenceNumber,
            ProduceError::InvalidProducerEpoch,
            ProduceError::UnknownProducerId,
        ] {
            assert!(!e.is_retriable(), "{e}");
            assert!(!e.may_have_appended(), "{e}");
        }
        assert!(ProduceError::NetworkException.is_retriable());
        assert!(ProduceError::NetworkException.may_have_appended());
    }
}
