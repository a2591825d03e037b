//! The replication state machine against an in-memory log: the reference's scenarios
//! (§2.1–2.2) played out between replicas by hand, one fetch at a time.

use super::*;
use crate::kafka::batch::Record;
use crate::kafka::mem_log::MemLog;

fn message(value: &str) -> Batch {
    Batch::plain(vec![Record {
        key: None,
        value: Some(value.as_bytes().to_vec()),
    }])
}

fn values(log: &MemLog) -> Vec<String> {
    log.batches
        .iter()
        .map(|b| String::from_utf8(b.records[0].value.clone().unwrap()).unwrap())
        .collect()
}

fn config(log_truncation: LogTruncation, min_insync_replicas: usize) -> PartitionConfig {
    PartitionConfig {
        log_truncation,
        min_insync_replicas,
        ..PartitionConfig::default()
    }
}

fn state(
    leader: Option<BrokerId>,
    leader_epoch: i32,
    isr: &[BrokerId],
    partition_epoch: i32,
) -> LeaderAndIsr {
    LeaderAndIsr {
        leader,
        leader_epoch,
        isr: isr.to_vec(),
        replicas: vec![1, 2],
        partition_epoch,
    }
}

/// One fetch round: the follower asks, the leader answers, the follower takes it.
fn fetch(leader: &mut Partition<MemLog>, follower: &mut Partition<MemLog>, id: BrokerId, now_ms: u64) {
    let at = follower.next_fetch().expect("the follower fetches");
    let answer = leader.follower_fetch(id, at.offset, now_ms).unwrap();
    follower.fetched(answer, now_ms).unwrap();
}

fn pair(truncation: LogTruncation) -> (Partition<MemLog>, Partition<MemLog>) {
    let mut a = Partition::open(1, MemLog::default(), config(truncation, 1), 0);
    let mut b = Partition::open(2, MemLog::default(), config(truncation, 1), 0);
    a.apply(state(Some(1), 1, &[1, 2], 1), 0).unwrap();
    b.apply(state(Some(1), 1, &[1, 2], 1), 0).unwrap();
    (a, b)
}

#[test]
fn acks_all_waits_until_every_in_sync_replica_has_fetched_it() {
    let (mut a, mut b) = pair(LogTruncation::LeaderEpoch);
    assert_eq!(
        a.produce(ProduceId(1), message("m1"), Acks::All, 30_000, 10),
        Ok(None)
    );
    assert!(
        a.take_outputs().is_empty(),
        "not committed before the follower has it"
    );
    assert_eq!(
        a.consumer_fetch(0, 1 << 20).unwrap().0,
        vec![],
        "consumers read below the HW"
    );
    fetch(&mut a, &mut b, 2, 20); // the follower copies m1 (its fetch offset was 0)
    assert_eq!(a.high_watermark(), 0);
    fetch(&mut a, &mut b, 2, 30); // its next fetch offset (1) tells the leader it has m1
    assert_eq!(a.high_watermark(), 1);
    assert_eq!(
        a.take_outputs(),
        vec![Output::ProduceDone {
            id: ProduceId(1),
            result: Ok(0)
        }]
    );
    assert_eq!(a.consumer_fetch(0, 1 << 20).unwrap().0.len(), 1);
    fetch(&mut a, &mut b, 2, 40);
    assert_eq!(
        b.high_watermark(),
        1,
        "the follower learns the HW one fetch later"
    );
}

#[test]
fn acks_one_answers_at_once_and_min_insync_refuses_acks_all_only() {
    let mut a = Partition::open(1, MemLog::default(), config(LogTruncation::LeaderEpoch, 2), 0);
    a.apply(state(Some(1), 1, &[1], 1), 0).unwrap();
    assert_eq!(
        a.produce(ProduceId(1), message("m1"), Acks::Leader, 30_000, 1),
        Ok(Some(0))
    );
    assert_eq!(
        a.produce(ProduceId(2), message("m2"), Acks::All, 30_000, 2),
        Err(KafkaError::NotEnoughReplicas)
    );
    assert_eq!(a.log_end_offset(), 1, "refused before the append");
}

#[test]
fn a_follower_that_stops_fetching_leaves_the_isr_after_the_lag_time_and_rejoins() {
    let (mut a, mut b) = pair(LogTruncation::LeaderEpoch);
    a.produce(ProduceId(1), message("m1"), Acks::Leader, 30_000, 0)
        .unwrap();
    a.tick(29_000);
    assert!(a.take_outputs().is_empty(), "within replica.lag.time.max.ms");
    a.tick(30_001);
    let proposal = a.take_outputs();
    assert_eq!(
        proposal,
        vec![Output::AlterIsr {
            leader_epoch: 1,
            partition_epoch: 1,
            isr: vec![1]
        }]
    );
    a.apply(state(Some(1), 1, &[1], 2), 30_002).unwrap(); // the controller commits it
    assert_eq!(
        a.high_watermark(),
        1,
        "the HW moves on without the lagging follower"
    );
    fetch(&mut a, &mut b, 2, 31_000);
    fetch(&mut a, &mut b, 2, 31_001);
    assert_eq!(
        a.take_outputs(),
        vec![Output::AlterIsr {
            leader_epoch: 1,
            partition_epoch: 2,
            isr: vec![1, 2]
        }]
    );
}

#[test]
fn acks_all_fails_after_append_when_the_isr_shrinks_below_min_insync() {
    let mut a = Partition::open(1, MemLog::default(), config(LogTruncation::LeaderEpoch, 2), 0);
    a.apply(state(Some(1), 1, &[1, 2], 1), 0).unwrap();
    assert_eq!(
        a.produce(ProduceId(7), message("m1"), Acks::All, 60_000, 0),
        Ok(None)
    );
    a.tick(30_001);
    a.take_outputs();
    a.apply(state(Some(1), 1, &[1], 2), 30_002).unwrap();
    assert_eq!(
        a.take_outputs(),
        vec![Output::ProduceDone {
            id: ProduceId(7),
            result: Err(KafkaError::NotEnoughReplicasAfterAppend)
        }]
    );
}

/// Reference §2.2 scenario 1: A and B hold m1 and m2, m2 acknowledged; B's HW still says 1.
/// B restarts; then A dies and B leads.
/// Returns B, and what B said when it became a follower again.
fn restart_follower_then_fail_over(truncation: LogTruncation) -> (Partition<MemLog>, Vec<Output>) {
    let (mut a, mut b) = pair(truncation);
    a.produce(ProduceId(1), message("m1"), Acks::All, 30_000, 0)
        .unwrap();
    fetch(&mut a, &mut b, 2, 1);
    fetch(&mut a, &mut b, 2, 2);
    fetch(&mut a, &mut b, 2, 3); // B's HW = 1
    a.produce(ProduceId(2), message("m2"), Acks::All, 30_000, 4)
        .unwrap();
    fetch(&mut a, &mut b, 2, 5); // B copies m2
                                 // B's next fetch tells A it has m2, so A commits and acknowledges it; B restarts before
                                 // the answer (carrying HW 2) reaches it.
    let offset = b.next_fetch().unwrap().offset;
    a.follower_fetch(2, offset, 6).unwrap();
    assert!(a.take_outputs().contains(&Output::ProduceDone {
        id: ProduceId(2),
        result: Ok(1)
    }));
    assert_eq!((a.high_watermark(), b.high_watermark()), (2, 1));
    b.tick(5_000); // B checkpoints HW 1
                   // B restarts: its HW comes back from the checkpoint, and it becomes a follower again.
    let log = b.log().clone();
    let mut b = Partition::open(2, log, config(truncation, 1), 10);
    b.apply(state(Some(1), 1, &[1, 2], 1), 10).unwrap();
    let mut said = b.take_outputs();
    if let Some(Output::AskEpochEnd { epoch, .. }) = said.first() {
        let answer = a.epoch_end(*epoch).unwrap();
        b.epoch_end_answer(answer).unwrap();
        said.extend(b.take_outputs());
    }
    // A dies before B fetches; the controller makes B the leader of epoch 2.
    b.apply(state(Some(2), 2, &[2], 2), 20).unwrap();
    (b, said)
}

#[test]
fn high_watermark_truncation_loses_an_acknowledged_write_on_fail_over() {
    let (b, said) = restart_follower_then_fail_over(LogTruncation::HighWatermark);
    assert_eq!(values(b.log()), ["m1"], "m2 was acknowledged and is gone");
    assert!(
        said.contains(&Output::Note("kafka.truncated_to_high_watermark")),
        "the cut is noted for the timeline"
    );
}

#[test]
fn leader_epoch_truncation_keeps_it() {
    let (b, said) = restart_follower_then_fail_over(LogTruncation::LeaderEpoch);
    assert_eq!(values(b.log()), ["m1", "m2"]);
    let notes: Vec<Output> = said
        .into_iter()
        .filter(|o| matches!(o, Output::Note(_)))
        .collect();
    assert!(
        notes.is_empty(),
        "nothing was cut, so nothing is noted: {notes:?}"
    );
}

/// Reference §2.2 scenario 2: A holds m1, m2 (HW 2); B holds m1. Both lose power; B comes
/// back first and leads, writes m3 at offset 1; then A comes back and follows B.
fn double_failure(truncation: LogTruncation) -> (Vec<String>, Vec<String>) {
    let (mut a, mut b) = pair(truncation);
    a.produce(ProduceId(1), message("m1"), Acks::Leader, 30_000, 0)
        .unwrap();
    fetch(&mut a, &mut b, 2, 1);
    fetch(&mut a, &mut b, 2, 2);
    // B stops fetching and leaves the ISR; A alone takes m2, and its HW reaches 2.
    a.tick(40_000);
    a.take_outputs();
    a.apply(state(Some(1), 1, &[1], 2), 40_000).unwrap();
    a.produce(ProduceId(2), message("m2"), Acks::Leader, 30_000, 40_001)
        .unwrap();
    assert_eq!(a.high_watermark(), 2);
    a.tick(45_001); // A checkpoints HW 2
                    // Both lose power. B comes back first and leads epoch 2; it writes m3 at offset 1.
    let (log_a, log_b) = (a.log().clone(), b.log().clone());
    let mut a = Partition::open(1, log_a, config(truncation, 1), 50_000);
    let mut b = Partition::open(2, log_b, config(truncation, 1), 50_000);
    b.apply(state(Some(2), 2, &[2], 3), 50_000).unwrap();
    b.produce(ProduceId(3), message("m3"), Acks::Leader, 30_000, 50_001)
        .unwrap();
    // A comes back and follows B.
    a.apply(state(Some(2), 2, &[2], 3), 50_002).unwrap();
    if let Some(Output::AskEpochEnd { epoch, .. }) = a.take_outputs().first() {
        let answer = b.epoch_end(*epoch).unwrap();
        a.epoch_end_answer(answer).unwrap();
    }
    for now in 50_003..50_006 {
        fetch(&mut b, &mut a, 1, now);
    }
    (values(a.log()), values(b.log()))
}

#[test]
fn high_watermark_truncation_lets_two_replicas_hold_different_values_at_one_offset() {
    // A's checkpointed HW is 2 (it alone had both messages with acks=1), so it keeps m2 at
    // offset 1 while B wrote m3 there: offset 1 holds two values for good.
    let (a, b) = double_failure(LogTruncation::HighWatermark);
    assert_eq!(a, ["m1", "m2"]);
    assert_eq!(b, ["m1", "m3"]);
}

#[test]
fn leader_epoch_truncation_cuts_the_diverged_suffix() {
    let (a, b) = double_failure(LogTruncation::LeaderEpoch);
    assert_eq!(a, ["m1", "m3"]);
    assert_eq!(b, ["m1", "m3"]);
}

#[test]
fn a_stale_leader_and_isr_is_refused_and_a_deposed_leader_fails_its_waiting_produces() {
    let (mut a, _b) = pair(LogTruncation::LeaderEpoch);
    assert_eq!(
        a.apply(state(Some(2), 0, &[2], 9), 1),
        Err(KafkaError::FencedLeaderEpoch)
    );
    a.produce(ProduceId(5), message("m1"), Acks::All, 30_000, 1)
        .unwrap();
    a.apply(state(Some(2), 2, &[2], 2), 2).unwrap();
    assert!(a.take_outputs().contains(&Output::ProduceDone {
        id: ProduceId(5),
        result: Err(KafkaError::NotLeaderOrFollower)
    }));
    assert_eq!(
        a.produce(ProduceId(6), message("m2"), Acks::Leader, 30_000, 3),
        Err(KafkaError::NotLeaderOrFollower)
    );
}

#[test]
fn a_waiting_produce_times_out() {
    let (mut a, _b) = pair(LogTruncation::LeaderEpoch);
    a.produce(ProduceId(9), message("m1"), Acks::All, 1_000, 0)
        .unwrap();
    a.tick(999);
    assert!(a.take_outputs().is_empty());
    a.tick(1_000);
    assert_eq!(
        a.take_outputs(),
        vec![Output::ProduceDone {
            id: ProduceId(9),
            result: Err(KafkaError::RequestTimedOut)
        }]
    );
}

/// The replicas on the simulated disk (reference §2.1 and §2.3): Kafka does not fsync per
/// write and relies on replication, so a write every replica acknowledged survives any one
/// crash, a kill of all of them, but not a correlated power failure of all of them.
mod on_disk {
    use super::*;
    use crate::kafka::log::{LogConfig, PartitionLog};
    use rand::SeedableRng;
    use sim::disk::SimDisk;

    type DiskReplica = Partition<PartitionLog<SimDisk>>;

    fn replica(broker: BrokerId, disk: &SimDisk, log: LogConfig, now_ms: u64) -> DiskReplica {
        let (log, _) = PartitionLog::open(disk.clone(), "orders-0/", log, now_ms).unwrap();
        Partition::open(broker, log, config(LogTruncation::LeaderEpoch, 2), now_ms)
    }

    /// Leader 1 and follower 2 commit m1 with acks=all; then both machines fail as `crash`
    /// says, restart, and the old leader leads again. What does it hold?
    fn after_both_fail(log: LogConfig, power_fail: bool) -> i64 {
        let disks = [SimDisk::new(), SimDisk::new()];
        let mut a = replica(1, &disks[0], log.clone(), 0);
        let mut b = replica(2, &disks[1], log.clone(), 0);
        a.apply(state(Some(1), 1, &[1, 2], 1), 0).unwrap();
        b.apply(state(Some(1), 1, &[1, 2], 1), 0).unwrap();
        a.produce(ProduceId(1), message("m1"), Acks::All, 30_000, 1)
            .unwrap();
        for now in 2..5 {
            let at = b.next_fetch().unwrap();
            let answer = a.follower_fetch(2, at.offset, now).unwrap();
            b.fetched(answer, now).unwrap();
        }
        let acknowledged = a.take_outputs();
        assert!(acknowledged.contains(&Output::ProduceDone {
            id: ProduceId(1),
            result: Ok(0)
        }));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        if power_fail {
            for disk in &disks {
                disk.power_fail(false, &mut rng);
            }
        }
        let mut a = replica(1, &disks[0], log, 10);
        a.apply(state(Some(1), 2, &[1, 2], 2), 10).unwrap();
        a.log_end_offset()
    }

    #[test]
    fn an_acknowledged_write_survives_a_kill_of_every_replica() {
        assert_eq!(after_both_fail(LogConfig::default(), false), 1);
    }

    #[test]
    fn a_correlated_power_failure_loses_an_acknowledged_unflushed_write() {
        assert_eq!(
            after_both_fail(LogConfig::default(), true),
            0,
            "never fsynced: gone"
        );
    }

    #[test]
    fn with_flush_messages_1_the_power_failure_loses_nothing() {
        let every_message = LogConfig {
            flush_interval_messages: Some(1),
            ..LogConfig::default()
        };
        assert_eq!(after_both_fail(every_message, true), 1);
    }
}

fn idempotent(value: &str, producer_id: i64, base_sequence: i32) -> Batch {
    Batch {
        producer_id,
        producer_epoch: 0,
        base_sequence,
        ..message(value)
    }
}

#[test]
fn an_idempotent_retry_is_answered_with_its_first_offset_and_not_appended_again() {
    let (mut a, _b) = pair(LogTruncation::LeaderEpoch);
    assert_eq!(
        a.produce(ProduceId(1), idempotent("m1", 7, 0), Acks::Leader, 30_000, 0),
        Ok(Some(0))
    );
    assert_eq!(
        a.produce(ProduceId(2), idempotent("m1", 7, 0), Acks::Leader, 30_000, 1),
        Ok(Some(0))
    );
    assert_eq!(values(a.log()), ["m1"]);
    assert_eq!(
        a.produce(ProduceId(3), idempotent("m3", 7, 2), Acks::Leader, 30_000, 2),
        Err(KafkaError::OutOfOrderSequenceNumber),
        "sequence 1 is missing"
    );
    // Without idempotence the same retry is a second copy.
    a.produce(ProduceId(4), message("m1"), Acks::Leader, 30_000, 3)
        .unwrap();
    a.produce(ProduceId(5), message("m1"), Acks::Leader, 30_000, 4)
        .unwrap();
    assert_eq!(values(a.log()), ["m1", "m1", "m1"]);
}

/// The reply to an acks=all produce is lost and the leader dies; the producer retries to the
/// new leader, which copied the batch and its producer state from the old one.
#[test]
fn a_follower_that_becomes_leader_knows_the_producers_batches() {
    let (mut a, mut b) = pair(LogTruncation::LeaderEpoch);
    a.produce(ProduceId(1), idempotent("m1", 7, 0), Acks::All, 30_000, 0)
        .unwrap();
    fetch(&mut a, &mut b, 2, 1);
    fetch(&mut a, &mut b, 2, 2);
    b.apply(state(Some(2), 2, &[2], 2), 3).unwrap();
    assert_eq!(
        b.produce(ProduceId(9), idempotent("m1", 7, 0), Acks::All, 30_000, 4),
        Ok(Some(0))
    );
    assert_eq!(values(b.log()), ["m1"], "the retry was not appended again");
}

/// KIP-841: a caught-up follower the controller fences (it leaves the ISR) is not waited
/// for as "about to join": acks=all completes as soon as the smaller ISR has the write,
/// not after replica.lag.time.max.ms.
#[test]
fn a_fenced_follower_is_not_waited_for() {
    let (mut a, mut b) = pair(LogTruncation::LeaderEpoch);
    fetch(&mut a, &mut b, 2, 0); // caught up, nothing to copy yet
    a.produce(ProduceId(1), message("m1"), Acks::All, 60_000, 1)
        .unwrap();
    assert!(a.take_outputs().is_empty(), "waiting for the follower");
    a.apply(state(Some(1), 1, &[1], 2), 2).unwrap(); // the controller fenced broker 2
    assert_eq!(
        a.take_outputs(),
        vec![Output::ProduceDone {
            id: ProduceId(1),
            result: Ok(0)
        }]
    );
}

fn transactional(value: &str, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Batch {
    Batch {
        producer_epoch,
        transactional: true,
        ..idempotent(value, producer_id, base_sequence)
    }
}

fn marker(producer_id: i64, producer_epoch: i16, control: crate::kafka::batch::ControlType) -> Batch {
    Batch::marker(producer_id, producer_epoch, control, 0)
}

#[test]
fn read_committed_reads_below_the_lso_with_the_aborted_transactions_listed() {
    use crate::kafka::batch::ControlType;
    let (mut a, mut b) = pair(LogTruncation::LeaderEpoch);
    a.produce(ProduceId(1), transactional("c", 7, 0, 0), Acks::Leader, 30_000, 0)
        .unwrap();
    a.produce(ProduceId(2), transactional("x", 8, 0, 0), Acks::Leader, 30_000, 0)
        .unwrap();
    fetch(&mut a, &mut b, 2, 1);
    fetch(&mut a, &mut b, 2, 2);
    assert_eq!(a.high_watermark(), 2);
    let open = a.committed_fetch(0, 1 << 20).unwrap();
    assert_eq!(
        (open.last_stable_offset, open.batches.len()),
        (0, 0),
        "7's transaction is open"
    );
    assert_eq!(
        a.consumer_fetch(0, 1 << 20).unwrap().0.len(),
        2,
        "read_uncommitted sees both"
    );
    a.produce(
        ProduceId(3),
        marker(7, 0, ControlType::Commit),
        Acks::All,
        30_000,
        3,
    )
    .unwrap();
    a.produce(
        ProduceId(4),
        marker(8, 0, ControlType::Abort),
        Acks::All,
        30_000,
        3,
    )
    .unwrap();
    assert_eq!(
        a.last_stable_offset(),
        0,
        "both completed, but no marker is below the HW yet"
    );
    fetch(&mut a, &mut b, 2, 4);
    fetch(&mut a, &mut b, 2, 5);
    assert_eq!(a.last_stable_offset(), 4);
    let done = a.committed_fetch(0, 1 << 20).unwrap();
    assert_eq!(done.batches.len(), 4);
    assert_eq!(done.aborted.len(), 1);
    assert_eq!(
        (done.aborted[0].producer_id, done.aborted[0].first_offset),
        (8, 1)
    );
    assert_eq!(
        b.last_stable_offset(),
        b.high_watermark(),
        "the follower keeps the index too"
    );
    assert!(a
        .take_outputs()
        .contains(&Output::Note("kafka.txn_abort_marker_written")));
}

#[test]
fn a_marker_with_a_bumped_epoch_fences_the_producers_late_batches() {
    use crate::kafka::batch::ControlType;
    let (mut a, _b) = pair(LogTruncation::LeaderEpoch);
    a.produce(
        ProduceId(1),
        transactional("m0", 7, 0, 0),
        Acks::Leader,
        30_000,
        0,
    )
    .unwrap();
    // Transaction version 2: the coordinator writes the markers with the next epoch.
    a.produce(
        ProduceId(2),
        marker(7, 1, ControlType::Abort),
        Acks::Leader,
        30_000,
        1,
    )
    .unwrap();
    assert_eq!(
        a.produce(
            ProduceId(3),
            transactional("m1", 7, 0, 1),
            Acks::Leader,
            30_000,
            2
        ),
        Err(KafkaError::InvalidProducerEpoch),
        "a late batch of the aborted transaction"
    );
    assert_eq!(
        a.produce(
            ProduceId(4),
            marker(7, 0, ControlType::Commit),
            Acks::Leader,
            30_000,
            3
        ),
        Err(KafkaError::InvalidProducerEpoch),
        "a marker of an older epoch"
    );
    // Under version 1 the epoch stays, and the late batch, next in sequence, joins whatever
    // transaction the producer has open now.
    a.produce(
        ProduceId(5),
        transactional("n0", 9, 0, 0),
        Acks::Leader,
        30_000,
        4,
    )
    .unwrap();
    a.produce(
        ProduceId(6),
        marker(9, 0, ControlType::Abort),
        Acks::Leader,
        30_000,
        5,
    )
    .unwrap();
    assert!(a
        .produce(
            ProduceId(7),
            transactional("n1", 9, 0, 1),
            Acks::Leader,
            30_000,
            6
        )
        .is_ok());
}
