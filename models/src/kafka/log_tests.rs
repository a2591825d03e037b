//! Tests of [`super::log::PartitionLog`] on the simulated disk: offsets, segments, crashes,
//! recovery, the epoch cache (KIP-101) and the high-watermark checkpoint.

use super::batch::{Batch, Record};
use super::log::{LogConfig, LogError, PartitionLog, RecoveryReport};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sim::disk::{Disk, SimDisk};

const DIR: &str = "orders-0/";

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 200,
        ..LogConfig::default()
    }
}

fn flush_every_message() -> LogConfig {
    LogConfig {
        flush_interval_messages: Some(1),
        ..config()
    }
}

fn batch(values: &[&str]) -> Batch {
    Batch::plain(
        values
            .iter()
            .map(|v| Record {
                key: None,
                value: Some(v.as_bytes().to_vec()),
            })
            .collect(),
    )
}

fn open(disk: &SimDisk, config: LogConfig) -> (PartitionLog<SimDisk>, RecoveryReport) {
    PartitionLog::open(disk.clone(), DIR, config, 0).unwrap()
}

/// Every record value in the log, in offset order, with its offset.
fn values(log: &PartitionLog<SimDisk>) -> Vec<(i64, String)> {
    let batches = log.read(log.log_start_offset(), i64::MAX, usize::MAX).unwrap();
    batches
        .iter()
        .flat_map(|b| {
            b.records.iter().enumerate().map(move |(i, r)| {
                (
                    b.base_offset + i as i64,
                    String::from_utf8(r.value.clone().unwrap()).unwrap(),
                )
            })
        })
        .collect()
}

fn power_fail(disk: &SimDisk, torn: bool, seed: u64) {
    disk.power_fail(torn, &mut ChaCha8Rng::seed_from_u64(seed));
}

/// Appends `count` one-record batches m0, m1, ... in `epoch`.
fn append_n(log: &mut PartitionLog<SimDisk>, count: usize, epoch: i32) {
    for _ in 0..count {
        let next = log.log_end_offset();
        log.append_as_leader(batch(&[&format!("m{next}")]), epoch, 0)
            .unwrap();
    }
}

#[test]
fn append_assigns_offsets_and_epochs_and_read_returns_them() {
    let disk = SimDisk::new();
    let (mut log, report) = open(&disk, config());
    assert_eq!((report.log_end_offset, report.segments), (0, 1));
    assert_eq!(log.append_as_leader(batch(&["a", "b"]), 3, 0).unwrap(), 0);
    assert_eq!(log.append_as_leader(batch(&["c"]), 3, 0).unwrap(), 2);
    assert_eq!(log.log_end_offset(), 3);
    let read = log.read(0, 3, usize::MAX).unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!((read[1].base_offset, read[1].leader_epoch), (2, 3));
    assert_eq!(
        values(&log),
        vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]
    );
    assert_eq!(
        disk.list().unwrap(),
        vec![
            "orders-0/00000000000000000000.log",
            "orders-0/leader-epoch-checkpoint"
        ]
    );
}

#[test]
fn segments_roll_at_segment_bytes_and_offsets_continue_across_them_and_restarts() {
    let disk = SimDisk::new();
    let (mut log, _) = open(&disk, config());
    append_n(&mut log, 20, 0);
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 3, "rolled: {bases:?}");
    for base in &bases {
        assert!(disk.len(&format!("{DIR}{base:020}.log")).unwrap() <= 200);
    }
    let before = values(&log);
    drop(log);
    let (mut log, report) = open(&disk, config());
    assert_eq!(report.bytes_truncated, 0);
    assert_eq!(log.segment_base_offsets(), bases);
    assert_eq!(values(&log), before);
    assert_eq!(log.append_as_leader(batch(&["next"]), 0, 0).unwrap(), 20);
}

#[test]
fn read_returns_whole_batches_within_the_bounds_and_at_least_one() {
    let disk = SimDisk::new();
    let (mut log, _) = open(&disk, config());
    log.append_as_leader(batch(&["a", "b", "c"]), 0, 0).unwrap();
    log.append_as_leader(batch(&["d"]), 0, 0).unwrap();
    log.append_as_leader(batch(&["e", "f"]), 0, 0).unwrap();
    let from_middle = log.read(1, 6, usize::MAX).unwrap();
    assert_eq!(
        from_middle[0].base_offset, 0,
        "the batch holding offset 1 comes whole"
    );
    assert_eq!(from_middle.len(), 3);
    let below_hw = log.read(0, 5, usize::MAX).unwrap();
    assert_eq!(below_hw.len(), 2, "a batch past the bound is not returned");
    let one_byte = log.read(3, 6, 1).unwrap();
    assert_eq!(one_byte.len(), 1, "one batch even over max_bytes");
    assert_eq!(one_byte[0].base_offset, 3);
    assert!(
        log.read(6, 6, 100).unwrap().is_empty(),
        "at the log end: nothing yet"
    );
    assert!(matches!(
        log.read(7, 9, 100),
        Err(LogError::OffsetOutOfRange { offset: 7, .. })
    ));
}

#[test]
fn truncate_to_drops_batches_segments_and_epochs_at_or_above_the_offset() {
    let disk = SimDisk::new();
    let (mut log, _) = open(&disk, config());
    append_n(&mut log, 10, 0);
    append_n(&mut log, 10, 2);
    assert_eq!(log.epoch_entries(), vec![(0, 0), (2, 10)]);
    let segments_before = log.segment_base_offsets().len();
    assert_eq!(log.truncate_to(7).unwrap(), 7);
    assert_eq!(log.log_end_offset(), 7);
    assert!(log.segment_base_offsets().len() < segments_before);
    assert_eq!(log.epoch_entries(), vec![(0, 0)]);
    assert_eq!(values(&log).last().unwrap(), &(6, "m6".to_string()));
    assert_eq!(log.truncate_to(100).unwrap(), 7, "past the end: nothing to do");
    // A batch straddling the offset goes whole.
    log.append_as_leader(batch(&["x", "y", "z"]), 3, 0).unwrap();
    assert_eq!(log.truncate_to(8).unwrap(), 7);
    drop(log);
    let (log, _) = open(&disk, config());
    assert_eq!((log.log_end_offset(), log.epoch_entries()), (7, vec![(0, 0)]));
}

#[test]
fn truncate_fully_and_start_at_moves_the_log_start() {
    let disk = SimDisk::new();
    let (mut log, _) = open(&disk, config());
    append_n(&mut log, 5, 1);
    log.truncate_fully_and_start_at(40).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (40, 40));
    assert!(log.epoch_entries().is_empty());
    assert!(matches!(
        log.read(0, 50, 10),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.append_as_leader(batch(&["a"]), 2, 0).unwrap(), 40);
    drop(log);
    let (log, _) = open(&disk, config());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (40, 41));
}

#[test]
fn a_kill_loses_nothing_written_even_without_any_fsync() {
    let disk = SimDisk::new();
    let (mut log, _) = open(&disk, config());
    append_n(&mut log, 12, 0);
    log.truncate_to(9).unwrap();
    append_n(&mut log, 2, 1);
    let before = values(&log);
    assert!(disk.unsynced_bytes() > 0, "nothing was fsynced");
    // A kill drops the process; the disk is reopened as it is.
    drop(log);
    let (log, report) = open(&disk, config());
    assert_eq!(values(&log), before);
    assert_eq!(
        (report.bytes_truncated, report.epoch_checkpoint_rewritten),
        (0, false)
    );
    assert_eq!(log.epoch_entries(), vec![(0, 0), (1, 9)]);
}

#[test]
fn power_failure_with_no_flush_policy_loses_the_unflushed_suffix() {
    let disk = SimDisk::new();
    let (mut log, _) = open(
        &disk,
        LogConfig {
            segment_bytes: 1 << 20,
            ..config()
        },
    );
    append_n(&mut log, 5, 0);
    log.flush(0).unwrap();
    log.checkpoint_high_watermark(5).unwrap();
    append_n(&mut log, 3, 1);
    log.checkpoint_high_watermark(8).unwrap();
    append_n(&mut log, 2, 1);
    assert_eq!(log.recovery_point(), 5);
    drop(log);
    power_fail(&disk, false, 1);
    let (log, report) = open(&disk, config());
    assert_eq!(log.log_end_offset(), 5, "only the flushed prefix survives");
    assert_eq!(values(&log).len(), 5);
    // The epoch checkpoint was fsynced with epoch 1 in it; recovery drops the entry past
    // the recovered end, as Kafka's loader does (truncateFromEnd).
    assert_eq!(log.epoch_entries(), vec![(0, 0)]);
    assert!(report.epoch_checkpoint_rewritten);
    // The HW checkpoint is fsynced when written: it survives, ahead of the log.
    assert_eq!(log.checkpointed_high_watermark(), Some(8));
}

#[test]
fn power_failure_with_flush_messages_1_loses_nothing() {
    let disk = SimDisk::new();
    let (mut log, _) = open(&disk, flush_every_message());
    append_n(&mut log, 15, 0);
    append_n(&mut log, 5, 4);
    let before = values(&log);
    assert_eq!(disk.unsynced_bytes(), 0);
    drop(log);
    power_fail(&disk, true, 3);
    let (log, report) = open(&disk, flush_every_message());
    assert_eq!(values(&log), before);
    assert_eq!(report.bytes_truncated, 0);
    assert_eq!(log.epoch_entries(), vec![(0, 0), (4, 15)]);
}

#[test]
fn flush_messages_counts_messages_not_batches() {
    let disk = SimDisk::new();
    let config = LogConfig {
        flush_interval_messages: Some(4),
        segment_bytes: 1 << 20,
        ..config()
    };
    let (mut log, _) = open(&disk, config);
    log.append_as_leader(batch(&["a", "b"]), 0, 0).unwrap();
    assert_eq!(log.recovery_point(), 0);
    log.append_as_leader(batch(&["c"]), 0, 0).unwrap();
    assert_eq!(log.recovery_point(), 0);
    log.append_as_leader(batch(&["d"]), 0, 0).unwrap();
    assert_eq!(log.recovery_point(), 4, "four messages unflushed: fsync");
    assert_eq!(disk.unsynced_bytes(), 0);
}

#[test]
fn flush_ms_fsyncs_at_the_first_tick_past_the_interval() {
    let disk = SimDisk::new();
    let config = LogConfig {
        flush_interval_ms: Some(1000),
        segment_bytes: 1 << 20,
        ..config()
    };
    let (mut log, _) = PartitionLog::open(disk.clone(), DIR, config, 0).unwrap();
    append_n(&mut log, 3, 0);
    log.tick(999).unwrap();
    assert_eq!(log.recovery_point(), 0);
    log.tick(1000).unwrap();
    assert_eq!(log.recovery_point(), 3);
    append_n(&mut log, 1, 0);
    log.tick(1500).unwrap();
    assert_eq!(log.recovery_point(), 3, "the interval counts from the last flush");
    log.tick(2000).unwrap();
    assert_eq!(log.recovery_point(), 4);
}

#[test]
fn a_roll_flushes_the_old_segments_at_the_next_tick_only() {
    let disk = SimDisk::new();
    let (mut log, _) = open(&disk, config());
    while log.segment_base_offsets().len() < 2 {
        append_n(&mut log, 1, 0);
    }
    let rolled_at = log.segment_base_offsets()[1];
    append_n(&mut log, 1, 0);
    assert_eq!(log.recovery_point(), 0, "Kafka's roll flush is asynchronous");
    log.tick(1).unwrap();
    assert_eq!(log.recovery_point(), rolled_at);
    drop(log);
    power_fail(&disk, false, 0);
    let (log, _) = open(&disk, config());
    assert_eq!(
        log.log_end_offset(),
        rolled_at,
        "the old segment survived, the active one did not"
    );
}

#[test]
fn a_truncation_not_yet_flushed_is_undone_by_a_power_failure() {
    // Kafka truncates with ftruncate and no fsync; on our disk the cut is in the page cache.
    let disk = SimDisk::new();
    let (mut log, _) = open(&disk, flush_every_message());
    append_n(&mut log, 6, 0);
    log.truncate_to(4).unwrap();
    drop(log);
    power_fail(&disk, false, 0);
    let (mut log, _) = open(&disk, flush_every_message());
    assert_eq!(log.log_end_offset(), 6, "the cut tail came back");
    log.truncate_to(4).unwrap();
    log.flush(0).unwrap();
    drop(log);
    power_fail(&disk, false, 0);
    let (log, _) = open(&disk, flush_every_message());
    assert_eq!(log.log_end_offset(), 4, "a flushed cut is durable");
}

#[test]
fn torn_tails_are_cut_to_whole_batches() {
    let mut saw_torn = false;
    for seed in 0..40 {
        let disk = SimDisk::new();
        let (mut log, _) = open(
            &disk,
            LogConfig {
                segment_bytes: 1 << 20,
                ..config()
            },
        );
        append_n(&mut log, 4, 0);
        log.flush(0).unwrap();
        log.append_as_leader(batch(&["a-long-value-to-tear", "another-one"]), 0, 0)
            .unwrap();
        drop(log);
        power_fail(&disk, true, seed);
        let (log, report) = open(&disk, config());
        let end = log.log_end_offset();
        assert!(end == 4 || end == 6, "whole batches only, got {end}");
        if report.bytes_truncated > 0 {
            saw_torn = true;
            assert_eq!((end, report.truncated_at_offset), (4, Some(4)));
        }
        assert_eq!(
            values(&log)[..4],
            (0..4).map(|i| (i, format!("m{i}"))).collect::<Vec<_>>()[..]
        );
    }
    assert!(saw_torn, "some seed should tear the last batch");
}

#[test]
fn garbage_in_segments_is_cut_and_later_segments_are_deleted() {
    let disk = SimDisk::new();
    let (mut log, _) = open(&disk, config());
    append_n(&mut log, 20, 0);
    let bases = log.segment_base_offsets();
    drop(log);
    // Flip a byte in the middle of the second segment.
    let second = format!("{DIR}{:020}.log", bases[1]);
    let mut bytes = disk.read(&second).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    disk.write_at(&second, 0, &bytes).unwrap();
    disk.write_at(&format!("{DIR}junk.log"), 0, b"not a segment")
        .unwrap();
    let (log, report) = open(&disk, config());
    assert!(log.log_end_offset() > bases[1] && log.log_end_offset() < bases[2]);
    assert_eq!(report.segments_deleted, bases[2..].to_vec());
    assert_eq!(report.truncated_at_offset, Some(log.log_end_offset()));
    assert!(report.bytes_truncated > 0);
    // Random bytes as a whole segment: cut to nothing, no panic.
    let disk = SimDisk::new();
    let mut rng_state = 9u64;
    let noise: Vec<u8> = (0..500)
        .map(|_| {
            rng_state = rng_state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1442695040888963407);
            (rng_state >> 33) as u8
        })
        .collect();
    disk.write_at(&format!("{DIR}{:020}.log", 0), 0, &noise).unwrap();
    disk.write_at(&format!("{DIR}leader-epoch-checkpoint"), 0, &noise)
        .unwrap();
    let (log, report) = open(&disk, config());
    assert_eq!((log.log_end_offset(), report.bytes_truncated), (0, 500));
    assert_eq!(
        report.unreadable_checkpoints,
        vec![format!("{DIR}leader-epoch-checkpoint")]
    );
}

#[test]
fn a_segment_that_does_not_continue_the_log_is_cut() {
    // Power loss can revert an old segment's tail while a newer segment survives.
    let disk = SimDisk::new();
    let (mut log, _) = open(&disk, config());
    append_n(&mut log, 20, 0);
    let bases = log.segment_base_offsets();
    drop(log);
    let first = format!("{DIR}{:020}.log", 0);
    let len = disk.len(&first).unwrap();
    disk.truncate(&first, len / 2).unwrap();
    let (log, report) = open(&disk, config());
    assert!(log.log_end_offset() < bases[1]);
    assert_eq!(report.segments_deleted, bases[1..].to_vec());
}

#[test]
fn limits_are_typed_errors_and_a_follower_gap_is_a_bug() {
    let disk = SimDisk::new();
    let (mut log, _) = open(
        &disk,
        LogConfig {
            max_message_bytes: 100,
            ..config()
        },
    );
    let big = "x".repeat(150);
    assert!(matches!(
        log.append_as_leader(batch(&[&big]), 0, 0),
        Err(LogError::RecordTooLarge { .. })
    ));
    assert!(matches!(
        log.append_as_leader(batch(&[]), 0, 0),
        Err(LogError::InvalidRecordCount { records: 0 })
    ));
    let (mut log, _) = open(
        &disk,
        LogConfig {
            segment_bytes: 50,
            ..config()
        },
    );
    let medium = "x".repeat(60);
    assert!(matches!(
        log.append_as_leader(batch(&[&medium]), 0, 0),
        Err(LogError::BatchLargerThanSegment { .. })
    ));
    assert_eq!(log.log_end_offset(), 0, "a refused batch leaves no trace");
    let gap = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut b = batch(&["a"]);
        b.base_offset = 5;
        b.leader_epoch = 0;
        let _ = log.append_as_follower(b, 0);
    }));
    assert!(gap.is_err(), "a follower batch past the log end panics");
}

#[test]
fn the_epoch_checkpoint_is_kafkas_file_and_follows_the_cache() {
    let disk = SimDisk::new();
    let (mut log, _) = open(&disk, config());
    append_n(&mut log, 2, 0);
    append_n(&mut log, 3, 2);
    let path = format!("{DIR}leader-epoch-checkpoint");
    assert_eq!(disk.read(&path).unwrap(), b"0\n2\n0 0\n2 2\n");
    log.truncate_to(2).unwrap();
    assert_eq!(disk.read(&path).unwrap(), b"0\n1\n0 0\n");
    log.assign_epoch_start(5, 2).unwrap();
    assert_eq!(log.end_offset_for_epoch(5), Some((5, 2)));
    assert_eq!(disk.read(&path).unwrap(), b"0\n2\n0 0\n5 2\n");
}

/// KIP-101 scenario 2 (reference §2.2): A holds m0, m1 (epoch 0) and B only m0; both lose
/// power; B comes back first, leads epoch 1 and writes m1' at offset 1. A comes back with a
/// high watermark of 2.
fn diverged_replicas() -> (PartitionLog<SimDisk>, PartitionLog<SimDisk>) {
    let (disk_a, disk_b) = (SimDisk::new(), SimDisk::new());
    let (mut a, _) = open(&disk_a, flush_every_message());
    let (mut b, _) = open(&disk_b, flush_every_message());
    a.append_as_leader(batch(&["m0"]), 0, 0).unwrap();
    b.append_as_follower(a.read(0, 1, usize::MAX).unwrap().remove(0), 0)
        .unwrap();
    a.append_as_leader(batch(&["m1"]), 0, 0).unwrap();
    a.checkpoint_high_watermark(2).unwrap();
    drop((a, b));
    power_fail(&disk_a, false, 0);
    power_fail(&disk_b, false, 0);
    let (mut b, _) = open(&disk_b, flush_every_message());
    b.append_as_leader(batch(&["m1'"]), 1, 0).unwrap();
    let (a, _) = open(&disk_a, flush_every_message());
    (a, b)
}

#[test]
fn kip_101_scenario_2_truncating_to_the_high_watermark_keeps_the_divergence() {
    let (mut a, b) = diverged_replicas();
    // Pre-KIP-101: A truncates to its checkpointed high watermark, which cuts nothing.
    let hw = a.checkpointed_high_watermark().unwrap();
    assert_eq!(hw, 2);
    a.truncate_to(hw).unwrap();
    assert_eq!(values(&a)[1], (1, "m1".to_string()));
    assert_eq!(values(&b)[1], (1, "m1'".to_string()), "offset 1 differs for good");
}

#[test]
fn kip_101_scenario_2_the_epoch_lookup_finds_the_divergence_point() {
    let (mut a, mut b) = diverged_replicas();
    assert_eq!(a.epoch_entries(), vec![(0, 0)]);
    assert_eq!(b.epoch_entries(), vec![(0, 0), (1, 1)]);
    // A asks the leader B where its latest epoch ends: epoch 0 ends at 1, where epoch 1 starts.
    let (epoch, end_offset) = b.end_offset_for_epoch(a.latest_epoch().unwrap()).unwrap();
    assert_eq!((epoch, end_offset), (0, 1));
    // The follower truncates to the smaller of that and its own end, then fetches.
    a.truncate_to(end_offset.min(a.log_end_offset())).unwrap();
    for fetched in b
        .read(a.log_end_offset(), b.log_end_offset(), usize::MAX)
        .unwrap()
    {
        a.append_as_follower(fetched, 0).unwrap();
    }
    assert_eq!(values(&a), values(&b));
    assert_eq!(a.epoch_entries(), b.epoch_entries());
    b.append_as_leader(batch(&["m2"]), 1, 0).unwrap();
    assert_eq!(
        b.end_offset_for_epoch(1),
        Some((1, 3)),
        "the latest epoch ends at the LEO"
    );
    assert_eq!(b.end_offset_for_epoch(-1), None);
    assert_eq!(
        b.end_offset_for_epoch(2),
        None,
        "an epoch the leader does not know"
    );
}

#[test]
fn the_high_watermark_checkpoint_survives_kill_and_power_failure_as_last_written() {
    let disk = SimDisk::new();
    let (mut log, report) = open(&disk, config());
    assert_eq!(report.high_watermark_checkpoint, None);
    append_n(&mut log, 4, 0);
    log.checkpoint_high_watermark(3).unwrap();
    assert_eq!(
        disk.read(&format!("{DIR}replication-offset-checkpoint")).unwrap(),
        b"0\n1\norders-0 3\n"
    );
    drop(log);
    let (mut log, _) = open(&disk, config());
    assert_eq!(log.checkpointed_high_watermark(), Some(3));
    log.checkpoint_high_watermark(4).unwrap();
    drop(log);
    power_fail(&disk, true, 5);
    let (log, _) = open(&disk, config());
    assert_eq!(log.checkpointed_high_watermark(), Some(4));
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    pub enum Op {
        Append {
            records: usize,
            value_bytes: usize,
            new_epoch: bool,
        },
        Truncate {
            offset_seed: u16,
        },
        Reopen,
        Flush,
        Tick,
        PowerFail {
            torn: bool,
            seed: u64,
        },
    }

    pub fn op(power: bool) -> impl Strategy<Value = Op> {
        let power_weight = if power { 2 } else { 0 };
        prop_oneof![
            8 => (1usize..4, 0usize..40, proptest::bool::weighted(0.2))
                .prop_map(|(records, value_bytes, new_epoch)| Op::Append { records, value_bytes, new_epoch }),
            2 => any::<u16>().prop_map(|offset_seed| Op::Truncate { offset_seed }),
            1 => Just(Op::Reopen),
            1 => Just(Op::Flush),
            1 => Just(Op::Tick),
            power_weight => (any::<bool>(), any::<u64>()).prop_map(|(torn, seed)| Op::PowerFail { torn, seed }),
        ]
    }

    pub fn record_batch(records: usize, value_bytes: usize, tag: usize) -> Batch {
        let value = format!("{tag}:{}", "v".repeat(value_bytes));
        batch(&vec![value.as_str(); records])
    }

    /// The epoch entries a log holding `batches` should have: each epoch's first batch.
    pub fn epochs_of(batches: &[Batch]) -> Vec<(i32, i64)> {
        let mut out: Vec<(i32, i64)> = Vec::new();
        for b in batches {
            if out.last().is_none_or(|&(e, _)| b.leader_epoch > e) {
                out.push((b.leader_epoch, b.base_offset));
            }
        }
        out
    }

    pub fn all(log: &PartitionLog<SimDisk>) -> Vec<Batch> {
        log.read(log.log_start_offset(), i64::MAX, usize::MAX).unwrap()
    }
}

proptest::proptest! {
    /// Appends, truncations, flushes, ticks and kills (reopen on the same disk) keep the
    /// log equal to an in-memory list of batches, its epoch cache equal to the first batch
    /// of each epoch, and every bounded read a prefix of the right slice.
    #[test]
    fn the_log_matches_an_in_memory_model(
        ops in proptest::collection::vec(model::op(false), 1..60),
        read_from_seed in proptest::prelude::any::<u16>(),
        read_max_bytes in 0usize..400,
    ) {
        let disk = SimDisk::new();
        let (mut log, _) = open(&disk, config());
        let mut expected: Vec<Batch> = Vec::new();
        let mut epoch = 0;
        for (i, op) in ops.into_iter().enumerate() {
            match op {
                model::Op::Append { records, value_bytes, new_epoch } => {
                    epoch += i32::from(new_epoch);
                    let base = log.append_as_leader(model::record_batch(records, value_bytes, i), epoch, 0).unwrap();
                    let mut b = model::record_batch(records, value_bytes, i);
                    (b.base_offset, b.leader_epoch) = (base, epoch);
                    expected.push(b);
                }
                model::Op::Truncate { offset_seed } => {
                    let offset = i64::from(offset_seed) % (log.log_end_offset() + 2);
                    log.truncate_to(offset).unwrap();
                    expected.retain(|b| b.next_offset() <= offset);
                }
                model::Op::Reopen => {
                    drop(log);
                    let (reopened, report) = open(&disk, config());
                    proptest::prop_assert_eq!(report.bytes_truncated, 0);
                    log = reopened;
                }
                model::Op::Flush => log.flush(0).unwrap(),
                model::Op::Tick => log.tick(0).unwrap(),
                model::Op::PowerFail { .. } => unreachable!(),
            }
            let next = expected.last().map_or(0, Batch::next_offset);
            proptest::prop_assert_eq!(log.log_end_offset(), next);
            proptest::prop_assert_eq!(&model::all(&log), &expected);
            proptest::prop_assert_eq!(log.epoch_entries(), model::epochs_of(&expected));
            let from = i64::from(read_from_seed) % (next + 1);
            let read = log.read(from, next, read_max_bytes).unwrap();
            let slice: Vec<Batch> = expected.iter().filter(|b| b.next_offset() > from).cloned().collect();
            proptest::prop_assert!(slice.starts_with(&read));
            proptest::prop_assert_eq!(read.is_empty(), slice.is_empty());
        }
    }

    /// With power failures (torn or not) in the mix, recovery never panics, keeps only
    /// batches that were really written at those offsets, never loses what a flush made
    /// durable (when no truncation came after it), and never invents a suffix.
    #[test]
    fn power_failures_keep_the_flushed_prefix_and_invent_nothing(
        ops in proptest::collection::vec(model::op(true), 1..60),
    ) {
        let disk = SimDisk::new();
        let (mut log, _) = open(&disk, config());
        let mut expected: Vec<Batch> = Vec::new();
        let mut written: Vec<Batch> = Vec::new();
        let mut durable: Option<Vec<Batch>> = Some(Vec::new());
        let mut epoch = 0;
        for (i, op) in ops.into_iter().enumerate() {
            match op {
                model::Op::Append { records, value_bytes, new_epoch } => {
                    epoch = epoch.max(log.latest_epoch().unwrap_or(0)) + i32::from(new_epoch);
                    log.append_as_leader(model::record_batch(records, value_bytes, i), epoch, 0).unwrap();
                    written.push(model::all(&log).pop().unwrap());
                }
                model::Op::Truncate { offset_seed } => {
                    log.truncate_to(i64::from(offset_seed) % (log.log_end_offset() + 2)).unwrap();
                    durable = None;
                }
                model::Op::Reopen => {
                    drop(log);
                    log = open(&disk, config()).0;
                }
                model::Op::Flush => {
                    log.flush(0).unwrap();
                    durable = Some(model::all(&log));
                }
                model::Op::Tick => log.tick(0).unwrap(),
                model::Op::PowerFail { torn, seed } => {
                    drop(log);
                    power_fail(&disk, torn, seed);
                    log = open(&disk, config()).0;
                    let recovered = model::all(&log);
                    if let Some(flushed) = &durable {
                        proptest::prop_assert!(recovered.starts_with(flushed), "lost a flushed batch");
                        proptest::prop_assert!(expected.starts_with(&recovered), "invented a suffix");
                    }
                    // What survived is durable now (the disk holds only durable bytes).
                    durable = Some(recovered);
                }
            }
            expected = model::all(&log);
            for b in &expected {
                proptest::prop_assert!(written.contains(b), "batch at {} never written", b.base_offset);
            }
            let _ = log.end_offset_for_epoch(epoch);
        }
    }
}
