//! A replica log in memory, for the replication tests: an epoch per batch, and a HW
//! checkpoint that survives a "restart" (a clone of the log opened again).

use super::batch::Batch;
use super::log::LogError;
use super::partition::ReplicaLog;

/// A log in memory with an epoch per batch, and a HW checkpoint that survives "restarts".
#[derive(Clone, Default)]
pub struct MemLog {
    pub batches: Vec<Batch>,
    pub checkpoint: i64,
}

impl ReplicaLog for MemLog {
    fn log_end_offset(&self) -> i64 {
        self.batches.last().map_or(0, Batch::next_offset)
    }
    fn append_as_leader(&mut self, mut batch: Batch, epoch: i32, _now_ms: u64) -> Result<i64, LogError> {
        batch.base_offset = self.log_end_offset();
        batch.leader_epoch = epoch;
        self.batches.push(batch);
        Ok(self.batches.last().unwrap().base_offset)
    }
    fn append_as_follower(&mut self, batch: Batch, _now_ms: u64) -> Result<(), LogError> {
        assert_eq!(batch.base_offset, self.log_end_offset());
        self.batches.push(batch);
        Ok(())
    }
    fn read(&self, from_offset: i64, until_offset: i64, _max_bytes: usize) -> Result<Vec<Batch>, LogError> {
        Ok(self
            .batches
            .iter()
            .filter(|b| b.base_offset >= from_offset && b.next_offset() <= until_offset)
            .cloned()
            .collect())
    }
    /// Epochs come from the batches here: a leader's empty epoch is not remembered (the
    /// on-disk log's cache does remember it).
    fn assign_epoch_start(&mut self, _epoch: i32, _start_offset: i64) -> std::io::Result<()> {
        Ok(())
    }
    fn tick(&mut self, _now_ms: u64) -> std::io::Result<()> {
        Ok(())
    }
    fn truncate_to(&mut self, offset: i64) -> std::io::Result<()> {
        self.batches.retain(|b| b.next_offset() <= offset);
        Ok(())
    }
    fn latest_epoch(&self) -> Option<i32> {
        self.batches.last().map(|b| b.leader_epoch)
    }
    fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let found = self
            .batches
            .iter()
            .filter(|b| b.leader_epoch <= epoch)
            .map(|b| b.leader_epoch)
            .max()?;
        let end = self
            .batches
            .iter()
            .find(|b| b.leader_epoch > found)
            .map_or(self.log_end_offset(), |b| b.base_offset);
        Some((found, end))
    }
    fn checkpointed_high_watermark(&self) -> i64 {
        self.checkpoint
    }
    fn checkpoint_high_watermark(&mut self, high_watermark: i64) -> std::io::Result<()> {
        self.checkpoint = high_watermark;
        Ok(())
    }
}
