//! One partition replica on one broker, sans I/O: Kafka's replication state machine
//! (reference §2.1–2.2). Time comes in as `now_ms`, the log through [`ReplicaLog`], and what
//! the replica must tell others comes out as [`Output`]s for the driver to send.
//!
//! As a **leader** it appends produced batches in its leader epoch, answers follower fetches
//! from its log end offset (LEO), tracks each follower's LEO and when it last caught up,
//! advances the high watermark (HW) to the smallest LEO of the in-sync replicas (and of
//! followers caught up enough to join), completes `acks=all` produces once the HW passes them,
//! and proposes ISR changes to the controller (AlterPartition, KIP-497): a follower that has
//! not caught up within `replica.lag.time.max.ms` leaves, a follower that reaches the HW and
//! the epoch's start offset joins. Consumers read below the HW only.
//!
//! As a **follower** it first truncates its log where it may have diverged from the leader's,
//! then fetches from its LEO and takes the leader's HW (capped by its own LEO). How it
//! truncates is the switch `log_truncation`:
//! - `LeaderEpoch` (KIP-101, Kafka 0.11+): ask the leader where the follower's latest epoch
//!   ends (OffsetsForLeaderEpoch) and truncate there;
//! - `HighWatermark` (before 0.11): truncate to the follower's own HW, which lags the
//!   leader's by a fetch round trip. That loses acknowledged writes (reference §2.2 scenario
//!   1) and lets replicas diverge after two hard failures (scenario 2).

// A sans-I/O core: every function reads at once (ARCHITECTURE.md, "Short functions").
#![deny(clippy::too_many_lines)]

use super::batch::Batch;
use super::error::KafkaError;
use super::log::{LogError, PartitionLog};
use super::producer_state::{
    Check, ProducerState, PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS, PRODUCER_ID_EXPIRATION_MS_DEFAULT,
};
use super::txn_index::{AbortedTxn, TxnIndex};
use sim::disk::Disk;
use std::collections::{BTreeMap, BTreeSet};

pub type BrokerId = i32;

/// What a replica needs of its log: [`PartitionLog`] on a disk, or a test's in memory.
pub trait ReplicaLog {
    fn log_end_offset(&self) -> i64;
    /// Appends at the LEO in `epoch`; returns the batch's base offset.
    fn append_as_leader(&mut self, batch: Batch, epoch: i32, now_ms: u64) -> Result<i64, LogError>;
    /// Appends a batch the leader gave, keeping its offsets and epoch.
    fn append_as_follower(&mut self, batch: Batch, now_ms: u64) -> Result<(), LogError>;
    /// Whole batches from `from_offset` below `until_offset` (at least one if any is there).
    fn read(&self, from_offset: i64, until_offset: i64, max_bytes: usize) -> Result<Vec<Batch>, LogError>;
    fn truncate_to(&mut self, offset: i64) -> std::io::Result<()>;
    /// A new leader's epoch starts at its LEO (Kafka's `Partition.makeLeader`).
    fn assign_epoch_start(&mut self, epoch: i32, start_offset: i64) -> std::io::Result<()>;
    /// The latest leader epoch the log holds a batch of.
    fn latest_epoch(&self) -> Option<i32>;
    /// OffsetsForLeaderEpoch's answer: the largest epoch <= `epoch` and where it ends.
    fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)>;
    /// The HW last written to the replication-offset checkpoint (0 if none).
    fn checkpointed_high_watermark(&self) -> i64;
    fn checkpoint_high_watermark(&mut self, high_watermark: i64) -> std::io::Result<()>;
    /// Time passes: the flush policy (`flush.ms`) may fsync.
    fn tick(&mut self, now_ms: u64) -> std::io::Result<()>;
}

impl<D: Disk> ReplicaLog for PartitionLog<D> {
    fn log_end_offset(&self) -> i64 {
        PartitionLog::log_end_offset(self)
    }
    fn append_as_leader(&mut self, batch: Batch, epoch: i32, now_ms: u64) -> Result<i64, LogError> {
        PartitionLog::append_as_leader(self, batch, epoch, now_ms)
    }
    fn append_as_follower(&mut self, batch: Batch, now_ms: u64) -> Result<(), LogError> {
        PartitionLog::append_as_follower(self, batch, now_ms)
    }
    fn read(&self, from_offset: i64, until_offset: i64, max_bytes: usize) -> Result<Vec<Batch>, LogError> {
        PartitionLog::read(self, from_offset, until_offset, max_bytes)
    }
    fn truncate_to(&mut self, offset: i64) -> std::io::Result<()> {
        PartitionLog::truncate_to(self, offset).map(|_| ())
    }
    fn assign_epoch_start(&mut self, epoch: i32, start_offset: i64) -> std::io::Result<()> {
        PartitionLog::assign_epoch_start(self, epoch, start_offset)
    }
    fn latest_epoch(&self) -> Option<i32> {
        PartitionLog::latest_epoch(self)
    }
    fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        PartitionLog::end_offset_for_epoch(self, epoch)
    }
    fn checkpointed_high_watermark(&self) -> i64 {
        PartitionLog::checkpointed_high_watermark(self).unwrap_or(0)
    }
    fn checkpoint_high_watermark(&mut self, high_watermark: i64) -> std::io::Result<()> {
        PartitionLog::checkpoint_high_watermark(self, high_watermark)
    }
    fn tick(&mut self, now_ms: u64) -> std::io::Result<()> {
        PartitionLog::tick(self, now_ms)
    }
}

/// How a follower finds where its log may have diverged from the leader's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogTruncation {
    /// KIP-101: truncate to where the leader says the follower's latest epoch ends.
    LeaderEpoch,
    /// Before KIP-101: truncate to the follower's own high watermark.
    HighWatermark,
}

#[derive(Clone, Debug)]
pub struct PartitionConfig {
    /// `replica.lag.time.max.ms` (30 s since Kafka 2.5).
    pub replica_lag_time_max_ms: u64,
    /// `min.insync.replicas` (with acks=all only).
    pub min_insync_replicas: usize,
    pub log_truncation: LogTruncation,
    /// `replica.high.watermark.checkpoint.interval.ms`.
    pub high_watermark_checkpoint_interval_ms: u64,
    /// The most bytes one fetch answer carries (`replica.fetch.max.bytes`, 1 MiB).
    pub fetch_max_bytes: usize,
    /// `producer.id.expiration.ms`: an idle producer id's state is forgotten after this.
    pub producer_id_expiration_ms: u64,
}

impl Default for PartitionConfig {
    fn default() -> PartitionConfig {
        PartitionConfig {
            replica_lag_time_max_ms: 30_000,
            min_insync_replicas: 1,
            log_truncation: LogTruncation::LeaderEpoch,
            high_watermark_checkpoint_interval_ms: 5_000,
            fetch_max_bytes: 1024 * 1024,
            producer_id_expiration_ms: PRODUCER_ID_EXPIRATION_MS_DEFAULT,
        }
    }
}

/// The partition's state as the controller decided it (LeaderAndIsr).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaderAndIsr {
    pub leader: Option<BrokerId>,
    pub leader_epoch: i32,
    pub isr: Vec<BrokerId>,
    pub replicas: Vec<BrokerId>,
    /// Bumped by every change the controller makes (leader or ISR).
    pub partition_epoch: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// acks=0: no answer at all.
    None,
    /// acks=1: answered once the leader has appended.
    Leader,
    /// acks=all: answered once every in-sync replica has it (the HW passed it).
    All,
}

impl From<LogError> for KafkaError {
    fn from(error: LogError) -> KafkaError {
        match error {
            LogError::RecordTooLarge { .. }
            | LogError::BatchLargerThanSegment { .. }
            | LogError::InvalidRecordCount { .. } => KafkaError::MessageTooLarge,
            LogError::OffsetOutOfRange { .. } => KafkaError::OffsetOutOfRange,
            // The replica cannot go on with a disk that fails; Kafka marks the log directory
            // offline and answers KAFKA_STORAGE_ERROR.
            _ => KafkaError::KafkaStorageError,
        }
    }
}

/// The caller's handle on a produce that waits for acks=all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProduceId(pub u64);

/// What the replica asks the driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Answer a produce that waited (acks=all): the base offset, or an error.
    ProduceDone {
        id: ProduceId,
        result: Result<i64, KafkaError>,
    },
    /// Propose a new ISR to the controller (AlterPartition), as of this leader epoch.
    AlterIsr {
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<BrokerId>,
    },
    /// Ask the leader where `epoch` ends (OffsetsForLeaderEpoch), before fetching.
    AskEpochEnd { leader: BrokerId, epoch: i32 },
    /// Something worth counting in the history ("sometimes" checks), e.g. a retried
    /// idempotent batch answered from the producer state.
    Note(&'static str),
}

/// What a follower should fetch next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchPosition {
    pub leader: BrokerId,
    pub leader_epoch: i32,
    pub offset: i64,
}

/// A leader's answer to a follower's fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaFetch {
    pub batches: Vec<Batch>,
    pub high_watermark: i64,
    pub log_end_offset: i64,
}

/// A read_committed consumer's fetch answer: batches below the last stable offset and the
/// aborted transactions they overlap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedFetch {
    pub batches: Vec<Batch>,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub aborted: Vec<AbortedTxn>,
}

/// What the leader's append came to.
enum Appended {
    New(i64),
    Duplicate { base_offset: i64, last_offset: i64 },
}

/// Every batch of the log, in offset order (to rebuild the producer state).
fn whole_log<L: ReplicaLog>(log: &L) -> Vec<Batch> {
    log.read(0, log.log_end_offset(), usize::MAX).unwrap_or_default()
}

/// What the leader knows of one follower.
#[derive(Clone, Debug)]
struct Follower {
    /// Its LEO, from its last fetch offset; -1 until it fetches.
    log_end_offset: i64,
    /// The leader's LEO and the time at the follower's previous fetch.
    previous_fetch_leader_leo: i64,
    previous_fetch_ms: u64,
    /// The last time it had fetched everything the leader had (Kafka's lastCaughtUpTimeMs).
    last_caught_up_ms: u64,
}

#[derive(Clone, Debug)]
struct Pending {
    id: ProduceId,
    /// The HW that commits the batch: its next offset.
    required_offset: i64,
    base_offset: i64,
    deadline_ms: u64,
}

#[derive(Clone, Debug)]
enum Role {
    /// Not assigned, or its broker was told no leader exists (offline partition).
    None,
    Leader {
        followers: BTreeMap<BrokerId, Follower>,
        pending: Vec<Pending>,
        /// An AlterPartition in flight: the ISR proposed.
        proposed_isr: Option<Vec<BrokerId>>,
        /// The LEO when this epoch began: a follower must reach it to join the ISR.
        epoch_start_offset: i64,
        /// Followers taken out of the ISR that have not fetched since (KIP-841).
        ineligible: BTreeSet<BrokerId>,
    },
    Follower {
        leader: BrokerId,
        /// Waiting for the leader's OffsetsForLeaderEpoch answer before fetching.
        truncating: bool,
    },
}

/// One replica of one partition.
pub struct Partition<L: ReplicaLog> {
    broker: BrokerId,
    config: PartitionConfig,
    log: L,
    state: LeaderAndIsr,
    role: Role,
    high_watermark: i64,
    last_checkpoint_ms: u64,
    /// Idempotent producers' last batches, rebuilt from the log on open and truncation, as
    /// Kafka's ProducerStateManager is (every replica keeps it, to be ready to lead).
    producers: ProducerState,
    /// Transactions open and aborted on this replica, and its last stable offset, rebuilt
    /// from the log alongside the producer state.
    txns: TxnIndex,
    /// The latest time any call passed in: what a truncation stamps rebuilt state with.
    clock_ms: u64,
    /// When idle producers were last forgotten.
    last_expiration_ms: u64,
    outputs: Vec<Output>,
}

impl<L: ReplicaLog> Partition<L> {
    /// A replica on `broker` over `log`, as it starts: its HW is what its checkpoint kept, so
    /// after a restart it can be behind what the leader had acknowledged.
    pub fn open(broker: BrokerId, log: L, config: PartitionConfig, now_ms: u64) -> Partition<L> {
        let high_watermark = log.checkpointed_high_watermark().min(log.log_end_offset());
        let mut producers = ProducerState::new(config.producer_id_expiration_ms);
        let batches = whole_log(&log);
        producers.rebuild(batches.iter().map(|b| (b, now_ms)), now_ms);
        let mut txns = TxnIndex::new();
        txns.rebuild(batches.iter(), high_watermark);
        Partition {
            broker,
            config,
            log,
            state: LeaderAndIsr {
                leader: None,
                leader_epoch: -1,
                isr: Vec::new(),
                replicas: Vec::new(),
                partition_epoch: -1,
            },
            role: Role::None,
            high_watermark,
            last_checkpoint_ms: now_ms,
            producers,
            txns,
            clock_ms: now_ms,
            last_expiration_ms: now_ms,
            outputs: Vec::new(),
        }
    }

    pub fn log(&self) -> &L {
        &self.log
    }

    pub fn log_mut(&mut self) -> &mut L {
        &mut self.log
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log.log_end_offset()
    }

    pub fn state(&self) -> &LeaderAndIsr {
        &self.state
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader { .. })
    }

    /// What the replica has to say; the driver sends it.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    /// The controller's decision arrives (LeaderAndIsr). A stale one (an older leader
    /// epoch, or the same epoch with an older partition epoch) is ignored, as Kafka does.
    pub fn apply(&mut self, state: LeaderAndIsr, now_ms: u64) -> Result<(), KafkaError> {
        self.clock_ms = self.clock_ms.max(now_ms);
        let newer_epoch = state.leader_epoch > self.state.leader_epoch;
        let same_epoch_newer = state.leader_epoch == self.state.leader_epoch
            && state.partition_epoch > self.state.partition_epoch;
        if !newer_epoch && !same_epoch_newer {
            return Err(KafkaError::FencedLeaderEpoch);
        }
        let leader_changed = newer_epoch || state.leader != self.state.leader;
        let removed: Vec<BrokerId> = self
            .state
            .isr
            .iter()
            .copied()
            .filter(|b| !state.isr.contains(b))
            .collect();
        self.state = state;
        if let Role::Leader { ineligible, .. } = &mut self.role {
            // KIP-841: a follower the controller took out of the ISR (it was fenced) is not
            // waited for as "about to join" until it fetches again.
            ineligible.extend(removed);
        }
        if !leader_changed {
            // Only the ISR changed (the controller committed an AlterPartition, or removed a
            // fenced broker): a leader keeps its followers' progress.
            self.isr_committed(now_ms);
            return Ok(());
        }
        self.fail_pending(KafkaError::NotLeaderOrFollower);
        match self.state.leader {
            Some(leader) if leader == self.broker => self.become_leader(now_ms),
            Some(leader) => self.become_follower(leader)?,
            None => self.role = Role::None,
        }
        Ok(())
    }

    fn become_leader(&mut self, now_ms: u64) {
        // Kafka starts every follower as just caught up (lastCaughtUpTimeMs = now) with an
        // unknown LEO, so none leaves the ISR before replica.lag.time.max.ms has passed.
        let followers = self
            .state
            .replicas
            .iter()
            .filter(|r| **r != self.broker)
            .map(|r| {
                let follower = Follower {
                    log_end_offset: -1,
                    previous_fetch_leader_leo: -1,
                    previous_fetch_ms: now_ms,
                    last_caught_up_ms: now_ms,
                };
                (*r, follower)
            })
            .collect();
        let epoch_start_offset = self.log.log_end_offset();
        // Kafka's makeLeader stamps the new epoch's start in the epoch cache at once, so a
        // follower asking where an older epoch ends gets this offset even before any append.
        let _ = self
            .log
            .assign_epoch_start(self.state.leader_epoch, epoch_start_offset);
        self.role = Role::Leader {
            followers,
            pending: Vec::new(),
            proposed_isr: None,
            epoch_start_offset,
            ineligible: BTreeSet::new(),
        };
        self.maybe_advance_high_watermark(now_ms);
    }

    fn become_follower(&mut self, leader: BrokerId) -> Result<(), KafkaError> {
        match self.config.log_truncation {
            LogTruncation::HighWatermark => {
                // Before KIP-101: whatever is past our own HW may not be on the leader, so it
                // goes, even if the leader has it (and acknowledged it).
                self.truncate(self.high_watermark, "kafka.truncated_to_high_watermark")?;
                self.role = Role::Follower {
                    leader,
                    truncating: false,
                };
            }
            LogTruncation::LeaderEpoch => match self.log.latest_epoch() {
                Some(epoch) => {
                    self.outputs.push(Output::AskEpochEnd { leader, epoch });
                    self.role = Role::Follower {
                        leader,
                        truncating: true,
                    };
                }
                None => {
                    self.role = Role::Follower {
                        leader,
                        truncating: false,
                    };
                }
            },
        }
        Ok(())
    }

    /// Cuts the log back to `offset`; `why` is noted when that removes anything, so a
    /// timeline shows which rule cut what.
    fn truncate(&mut self, offset: i64, why: &'static str) -> Result<(), KafkaError> {
        if offset < self.log.log_end_offset() {
            self.outputs.push(Output::Note(why));
            self.log
                .truncate_to(offset)
                .map_err(|_| KafkaError::KafkaStorageError)?;
            // The producer state may describe batches that are gone: rebuild it from what is
            // left (Kafka's truncateAndReload). Batch times are lost, so they count from now.
            let now_ms = self.clock_ms;
            let kept = whole_log(&self.log);
            self.producers.rebuild(kept.iter().map(|b| (b, now_ms)), now_ms);
            let high_watermark = self.high_watermark.min(self.log.log_end_offset());
            self.txns.rebuild(kept.iter(), high_watermark);
        }
        self.high_watermark = self.high_watermark.min(self.log.log_end_offset());
        Ok(())
    }

    /// The leader's OffsetsForLeaderEpoch answer: where `epoch` (the largest epoch it has at
    /// or below ours) ends on the leader, or `None` if it has no such epoch. The follower
    /// truncates to the smaller of that and where the same epoch ends in its own log
    /// (KIP-279), so a log that diverged in an older epoch is cut at the divergence.
    pub fn epoch_end_answer(&mut self, answer: Option<(i32, i64)>) -> Result<(), KafkaError> {
        let Role::Follower { truncating, .. } = &self.role else {
            return Ok(()); // no longer a follower: the answer is stale
        };
        if !*truncating {
            return Ok(());
        }
        let target = match answer {
            Some((epoch, leader_end)) => {
                let own_end = self
                    .log
                    .end_offset_for_epoch(epoch)
                    .filter(|(own_epoch, _)| *own_epoch == epoch)
                    .map_or(leader_end, |(_, end)| end);
                leader_end.min(own_end)
            }
            // The leader knows no epoch this old: Kafka falls back to the high watermark.
            None => self.high_watermark,
        };
        self.truncate(target, "kafka.truncated_to_epoch_end")?;
        if let Role::Follower { truncating, .. } = &mut self.role {
            *truncating = false;
        }
        Ok(())
    }

    /// Where a follower fetches next, once it has truncated.
    pub fn next_fetch(&self) -> Option<FetchPosition> {
        match self.role {
            Role::Follower {
                leader,
                truncating: false,
            } => Some(FetchPosition {
                leader,
                leader_epoch: self.state.leader_epoch,
                offset: self.log.log_end_offset(),
            }),
            _ => None,
        }
    }

    /// A follower takes the leader's answer: appends what continues its log and takes the
    /// leader's HW, capped by its own LEO.
    pub fn fetched(&mut self, answer: ReplicaFetch, now_ms: u64) -> Result<(), KafkaError> {
        self.clock_ms = self.clock_ms.max(now_ms);
        if !matches!(
            self.role,
            Role::Follower {
                truncating: false,
                ..
            }
        ) {
            return Ok(()); // stale: the role changed while the fetch was out
        }
        for batch in answer.batches {
            if batch.base_offset != self.log.log_end_offset() {
                continue; // an answer to an older fetch: already appended, or not contiguous
            }
            self.producers.record(&batch, now_ms);
            self.txns.record(&batch, self.high_watermark);
            self.log.append_as_follower(batch, now_ms)?;
        }
        let capped = answer.high_watermark.min(self.log.log_end_offset());
        self.high_watermark = self.high_watermark.max(capped);
        Ok(())
    }

    /// The leader's fetch offset is past its LEO: after an unclean election the new leader
    /// can have less than the follower. The follower truncates to the leader's LEO.
    pub fn fetched_out_of_range(&mut self, leader_log_end_offset: i64) -> Result<(), KafkaError> {
        if matches!(self.role, Role::Follower { .. }) && leader_log_end_offset < self.log.log_end_offset() {
            self.truncate(leader_log_end_offset, "kafka.truncated_to_leader_end")?;
        }
        Ok(())
    }

    /// A produce to this replica. With acks=0 or acks=1 the answer is immediate
    /// (`Ok(Some(base_offset))`); with acks=all it waits (`Ok(None)`) and comes back as
    /// [`Output::ProduceDone`] once the HW passes it, the ISR shrinks below
    /// min.insync.replicas, leadership moves, or `timeout_ms` passes.
    pub fn produce(
        &mut self,
        id: ProduceId,
        batch: Batch,
        acks: Acks,
        timeout_ms: u64,
        now_ms: u64,
    ) -> Result<Option<i64>, KafkaError> {
        self.clock_ms = self.clock_ms.max(now_ms);
        if !self.is_leader() {
            return Err(KafkaError::NotLeaderOrFollower);
        }
        // Kafka checks the ISR size before appending, and only for acks=all.
        if acks == Acks::All && self.state.isr.len() < self.config.min_insync_replicas {
            return Err(KafkaError::NotEnoughReplicas);
        }
        let (base_offset, required_offset) = match self.append_checked(batch, now_ms)? {
            Appended::New(base_offset) => (base_offset, self.log.log_end_offset()),
            // A retry of a batch already in the log: answered with its original offsets,
            // and with acks=all only once the HW has passed it, like the first attempt.
            Appended::Duplicate {
                base_offset,
                last_offset,
            } => (base_offset, last_offset + 1),
        };
        // An ISR of the leader alone commits at once: answer now rather than through output.
        self.maybe_advance_high_watermark(now_ms);
        if acks != Acks::All || required_offset <= self.high_watermark {
            return Ok(Some(base_offset));
        }
        if let Role::Leader { pending, .. } = &mut self.role {
            pending.push(Pending {
                id,
                required_offset,
                base_offset,
                deadline_ms: now_ms + timeout_ms,
            });
        }
        Ok(None)
    }

    /// The leader's append: an idempotent batch is checked against the producer state first
    /// (Kafka's analyzeAndValidateProducerState), so a retry is not appended twice and a
    /// sequence gap or an old epoch is refused.
    fn append_checked(&mut self, batch: Batch, now_ms: u64) -> Result<Appended, KafkaError> {
        let epoch = self.state.leader_epoch;
        if !batch.is_idempotent() {
            return Ok(Appended::New(self.log.append_as_leader(batch, epoch, now_ms)?));
        }
        self.txns.check(&batch)?;
        if batch.control {
            return self.append_marker(batch, now_ms);
        }
        if batch.transactional && batch.base_sequence == super::batch::NO_SEQUENCE {
            return self.append_coordinator_write(batch, now_ms);
        }
        let checked = self.producers.check(&batch);
        if checked == Err(KafkaError::InvalidProducerEpoch) {
            // The timeline's mark of a fenced write: a late request of an older epoch
            // (KIP-890's delayed produce under transaction version 2, or a zombie).
            self.outputs.push(Output::Note("kafka.produce_old_epoch_refused"));
        }
        if let Check::Duplicate {
            base_offset,
            last_offset,
        } = checked?
        {
            self.outputs.push(Output::Note("kafka.duplicate_batch_answered"));
            return Ok(Appended::Duplicate {
                base_offset,
                last_offset,
            });
        }
        let mut appended = batch.clone();
        appended.base_offset = self.log.append_as_leader(batch, epoch, now_ms)?;
        appended.leader_epoch = epoch;
        self.producers.record(&appended, now_ms);
        self.txns.record(&appended, self.high_watermark);
        Ok(Appended::New(appended.base_offset))
    }

    /// A group coordinator's transactional write (TxnOffsetCommit's offsets): Kafka appends
    /// it with origin COORDINATOR, checking the producer's epoch but not a sequence, and it
    /// opens the producer's transaction on this partition until the marker.
    fn append_coordinator_write(&mut self, batch: Batch, now_ms: u64) -> Result<Appended, KafkaError> {
        let current = self.producers.entry(batch.producer_id).map(|e| e.epoch);
        if current.is_some_and(|epoch| batch.producer_epoch < epoch) {
            return Err(KafkaError::InvalidProducerEpoch);
        }
        let epoch = self.state.leader_epoch;
        let mut appended = batch.clone();
        appended.base_offset = self.log.append_as_leader(batch, epoch, now_ms)?;
        appended.leader_epoch = epoch;
        self.producers.record(&appended, now_ms);
        self.txns.record(&appended, self.high_watermark);
        Ok(Appended::New(appended.base_offset))
    }

    /// A transaction marker from the coordinator (WriteTxnMarkers): refused from an older
    /// producer epoch, otherwise appended; it moves the producer's epoch when the coordinator
    /// bumped it, which fences the producer's later batches of the old epoch.
    fn append_marker(&mut self, marker: Batch, now_ms: u64) -> Result<Appended, KafkaError> {
        self.producers.check_marker(&marker)?;
        let note = match marker.control_type() {
            Some(super::batch::ControlType::Commit) => "kafka.txn_commit_marker_written",
            _ => "kafka.txn_abort_marker_written",
        };
        let mut appended = marker.clone();
        appended.base_offset = self
            .log
            .append_as_leader(marker, self.state.leader_epoch, now_ms)?;
        appended.leader_epoch = self.state.leader_epoch;
        self.producers.record(&appended, now_ms);
        self.txns.record(&appended, self.high_watermark);
        self.outputs.push(Output::Note(note));
        Ok(Appended::New(appended.base_offset))
    }

    /// A follower's fetch from `offset` reaches the leader.
    pub fn follower_fetch(
        &mut self,
        follower: BrokerId,
        offset: i64,
        now_ms: u64,
    ) -> Result<ReplicaFetch, KafkaError> {
        let leader_leo = self.log.log_end_offset();
        let Role::Leader {
            followers,
            ineligible,
            ..
        } = &mut self.role
        else {
            return Err(KafkaError::NotLeaderOrFollower);
        };
        ineligible.remove(&follower);
        let Some(progress) = followers.get_mut(&follower) else {
            return Err(KafkaError::NotLeaderOrFollower); // not a replica of this partition
        };
        if offset > leader_leo {
            return Err(KafkaError::OffsetOutOfRange);
        }
        // Kafka's FollowerReplica.updateFetchState: caught up now if the fetch asks for the
        // leader's LEO; caught up at the previous fetch if it reached the LEO of then.
        if offset >= leader_leo {
            progress.last_caught_up_ms = now_ms;
        } else if offset >= progress.previous_fetch_leader_leo {
            progress.last_caught_up_ms = progress.previous_fetch_ms;
        }
        progress.previous_fetch_leader_leo = leader_leo;
        progress.previous_fetch_ms = now_ms;
        progress.log_end_offset = offset;
        self.maybe_expand_isr(follower);
        self.maybe_advance_high_watermark(now_ms);
        Ok(ReplicaFetch {
            batches: self.log.read(offset, leader_leo, self.config.fetch_max_bytes)?,
            high_watermark: self.high_watermark,
            log_end_offset: leader_leo,
        })
    }

    /// A consumer's fetch: only what the HW has committed.
    pub fn consumer_fetch(&self, offset: i64, max_bytes: usize) -> Result<(Vec<Batch>, i64), KafkaError> {
        if !self.is_leader() {
            return Err(KafkaError::NotLeaderOrFollower);
        }
        if offset < 0 || offset > self.log.log_end_offset() {
            return Err(KafkaError::OffsetOutOfRange);
        }
        let batches = self.log.read(offset, self.high_watermark, max_bytes)?;
        Ok((batches, self.high_watermark))
    }

    /// The last stable offset: what read_committed consumers may read below.
    pub fn last_stable_offset(&self) -> i64 {
        self.txns.last_stable_offset(self.high_watermark)
    }

    /// A read_committed consumer's fetch (isolation_level=1): only below the LSO, with the
    /// aborted transactions the answer overlaps (Kafka's `FetchIsolation.TXN_COMMITTED`).
    pub fn committed_fetch(&self, offset: i64, max_bytes: usize) -> Result<CommittedFetch, KafkaError> {
        if !self.is_leader() {
            return Err(KafkaError::NotLeaderOrFollower);
        }
        if offset < 0 || offset > self.log.log_end_offset() {
            return Err(KafkaError::OffsetOutOfRange);
        }
        let last_stable_offset = self.last_stable_offset();
        let batches = self.log.read(offset, last_stable_offset, max_bytes)?;
        let until = batches.last().map_or(offset, Batch::next_offset);
        Ok(CommittedFetch {
            aborted: self.txns.aborted_in(offset, until),
            batches,
            high_watermark: self.high_watermark,
            last_stable_offset,
        })
    }

    /// The leader's answer to OffsetsForLeaderEpoch from a follower.
    pub fn epoch_end(&self, epoch: i32) -> Result<Option<(i32, i64)>, KafkaError> {
        if !self.is_leader() {
            return Err(KafkaError::NotLeaderOrFollower);
        }
        Ok(self.log.end_offset_for_epoch(epoch))
    }

    /// Time passes: lagging followers leave the ISR, waiting produces time out, the HW is
    /// checkpointed.
    pub fn tick(&mut self, now_ms: u64) {
        self.clock_ms = self.clock_ms.max(now_ms);
        self.txns.prune(self.high_watermark);
        self.maybe_shrink_isr(now_ms);
        self.expire_pending(now_ms);
        // Kafka forgets idle producer ids every producer.id.expiration.check.interval.ms.
        if now_ms >= self.last_expiration_ms + PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS {
            self.last_expiration_ms = now_ms;
            self.producers.remove_expired(now_ms);
        }
        // A storage error here is what Kafka logs and retries at the next interval; the
        // replica carries on with what it has in memory.
        let _ = self.log.tick(now_ms);
        let interval = self.config.high_watermark_checkpoint_interval_ms;
        if now_ms >= self.last_checkpoint_ms + interval {
            self.last_checkpoint_ms = now_ms;
            let _ = self.log.checkpoint_high_watermark(self.high_watermark);
        }
    }

    /// The controller refused an AlterPartition (a stale epoch, or the broker is fenced): the
    /// leader forgets the proposal and will propose again from what it then knows.
    pub fn alter_isr_refused(&mut self) {
        if let Role::Leader { proposed_isr, .. } = &mut self.role {
            *proposed_isr = None;
        }
    }

    /// The ISR the HW is computed over: the committed ISR plus followers proposed to join
    /// (KIP-497's "maximal ISR"), so a follower being added already holds the HW back.
    fn maximal_isr(&self) -> Vec<BrokerId> {
        let mut isr = self.state.isr.clone();
        if let Role::Leader {
            proposed_isr: Some(proposed),
            ..
        } = &self.role
        {
            for broker in proposed {
                if !isr.contains(broker) {
                    isr.push(*broker);
                }
            }
        }
        isr
    }

    fn maybe_advance_high_watermark(&mut self, now_ms: u64) {
        let Role::Leader {
            followers,
            ineligible,
            ..
        } = &self.role
        else {
            return;
        };
        let leader_leo = self.log.log_end_offset();
        let maximal = self.maximal_isr();
        let lag_max_ms = self.config.replica_lag_time_max_ms;
        // Kafka also waits for a follower that is caught up and about to join the ISR.
        let candidate = followers
            .iter()
            .filter(|(id, f)| {
                let about_to_join = f.log_end_offset >= 0
                    && now_ms.saturating_sub(f.last_caught_up_ms) <= lag_max_ms
                    && !ineligible.contains(id);
                maximal.contains(id) || about_to_join
            })
            .map(|(_, f)| f.log_end_offset)
            .fold(leader_leo, i64::min);
        if candidate > self.high_watermark {
            self.high_watermark = candidate;
        }
        self.complete_pending();
    }

    /// Waiting acks=all produces the HW has passed are answered; Kafka answers
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR is now below min.insync.replicas.
    fn complete_pending(&mut self) {
        let hw = self.high_watermark;
        let isr_too_small = self.state.isr.len() < self.config.min_insync_replicas;
        let Role::Leader { pending, .. } = &mut self.role else {
            return;
        };
        let (done, waiting): (Vec<Pending>, Vec<Pending>) =
            pending.drain(..).partition(|p| p.required_offset <= hw);
        *pending = waiting;
        for p in done {
            let result = match isr_too_small {
                true => Err(KafkaError::NotEnoughReplicasAfterAppend),
                false => Ok(p.base_offset),
            };
            self.outputs.push(Output::ProduceDone { id: p.id, result });
        }
    }

    fn expire_pending(&mut self, now_ms: u64) {
        let Role::Leader { pending, .. } = &mut self.role else {
            return;
        };
        let (expired, waiting): (Vec<Pending>, Vec<Pending>) =
            pending.drain(..).partition(|p| p.deadline_ms <= now_ms);
        *pending = waiting;
        for p in expired {
            self.outputs.push(Output::ProduceDone {
                id: p.id,
                result: Err(KafkaError::RequestTimedOut),
            });
        }
    }

    fn fail_pending(&mut self, error: KafkaError) {
        if let Role::Leader { pending, .. } = &mut self.role {
            for p in pending.drain(..) {
                self.outputs.push(Output::ProduceDone {
                    id: p.id,
                    result: Err(error),
                });
            }
        }
    }

    /// A follower in sync again joins: its LEO has reached the HW and this epoch's start
    /// (Kafka's `isFollowerInSync`). One proposal at a time.
    fn maybe_expand_isr(&mut self, follower: BrokerId) {
        let hw = self.high_watermark;
        let Role::Leader {
            followers,
            proposed_isr,
            epoch_start_offset,
            ..
        } = &mut self.role
        else {
            return;
        };
        if proposed_isr.is_some() || self.state.isr.contains(&follower) {
            return;
        }
        let leo = followers[&follower].log_end_offset;
        if leo >= hw && leo >= *epoch_start_offset {
            let mut isr = self.state.isr.clone();
            isr.push(follower);
            *proposed_isr = Some(isr.clone());
            self.outputs.push(Output::AlterIsr {
                leader_epoch: self.state.leader_epoch,
                partition_epoch: self.state.partition_epoch,
                isr,
            });
        }
    }

    /// Followers that have not caught up within replica.lag.time.max.ms leave the ISR. The
    /// leader keeps computing the HW over the old ISR until the controller commits it.
    fn maybe_shrink_isr(&mut self, now_ms: u64) {
        let leader_leo = self.log.log_end_offset();
        let lag_max_ms = self.config.replica_lag_time_max_ms;
        let Role::Leader {
            followers,
            proposed_isr,
            ..
        } = &mut self.role
        else {
            return;
        };
        if proposed_isr.is_some() {
            return; // Kafka proposes nothing while an ISR change is in flight
        }
        let out_of_sync = |id: &BrokerId| {
            let f = &followers[id];
            f.log_end_offset < leader_leo && now_ms.saturating_sub(f.last_caught_up_ms) > lag_max_ms
        };
        let isr: Vec<BrokerId> = self
            .state
            .isr
            .iter()
            .copied()
            .filter(|id| *id == self.broker || !out_of_sync(id))
            .collect();
        if isr.len() < self.state.isr.len() {
            *proposed_isr = Some(isr.clone());
            self.outputs.push(Output::AlterIsr {
                leader_epoch: self.state.leader_epoch,
                partition_epoch: self.state.partition_epoch,
                isr,
            });
        }
    }

    /// The controller committed an ISR (this leader's proposal or its own change): the
    /// proposal is settled and the HW may move over the new ISR.
    fn isr_committed(&mut self, now_ms: u64) {
        if let Role::Leader { proposed_isr, .. } = &mut self.role {
            *proposed_isr = None;
        }
        self.maybe_advance_high_watermark(now_ms);
    }
}

#[cfg(test)]
#[path = "partition_tests.rs"]
mod tests;
