//! nsqd's message ids: 64-bit snowflake GUIDs (`nsqd/guid.go`): milliseconds since Twitter's
//! epoch in the top 42 bits, the node id in the next 10, a per-millisecond sequence in the
//! low 12. Time comes from the simulated clock.

// A sans-I/O core: its functions stay within clippy.toml's too-many-lines-threshold (issue 9).
#![deny(clippy::too_many_lines)]

/// Twitter's snowflake epoch, as nsqd uses it (ms since the Unix epoch).
pub const TWEPOCH_MS: u64 = 1_288_834_974_657;
const SEQUENCE_BITS: u32 = 12;
const NODE_BITS: u32 = 10;
const SEQUENCE_MASK: u64 = (1 << SEQUENCE_BITS) - 1;

#[derive(Clone, Debug)]
pub struct GuidFactory {
    node_id: u64,
    last_ms: u64,
    sequence: u64,
}

impl GuidFactory {
    pub fn new(node_id: u16) -> GuidFactory {
        assert!(
            u64::from(node_id) < (1 << NODE_BITS),
            "node id is 10 bits (nsqd: 0..1024)"
        );
        GuidFactory {
            node_id: u64::from(node_id),
            last_ms: 0,
            sequence: 0,
        }
    }

    /// The next id at `unix_ms`. When 4096 ids have been handed out within one millisecond,
    /// nsqd waits for the next; here the id borrows the next millisecond, which keeps ids
    /// unique and increasing without stalling simulated time.
    pub fn next(&mut self, unix_ms: u64) -> u64 {
        let mut ms = unix_ms.max(self.last_ms);
        if ms == self.last_ms {
            self.sequence = (self.sequence + 1) & SEQUENCE_MASK;
            if self.sequence == 0 {
                ms += 1;
            }
        } else {
            self.sequence = 0;
        }
        self.last_ms = ms;
        ((ms - TWEPOCH_MS) << (NODE_BITS + SEQUENCE_BITS)) | (self.node_id << SEQUENCE_BITS) | self.sequence
    }
}

/// nsqd's default `--node-id`: `crc32(md5(hostname)) % 1024` (nsqd/options.go `NewOptions`:
/// the IEEE CRC-32 of the 16 raw bytes of the host name's MD5). Two hosts can collide, and
/// then their message ids can too.
pub fn node_id_for(host: &str) -> u16 {
    use md5::{Digest, Md5};
    let digest = Md5::digest(host.as_bytes());
    (crc32fast::hash(&digest) % (1 << NODE_BITS)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_increasing_even_within_one_millisecond() {
        let mut guids = GuidFactory::new(7);
        let now = TWEPOCH_MS + 1_000_000;
        let ids: Vec<u64> = (0..10_000).map(|_| guids.next(now)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!((ids[0] >> 12) & 1023, 7, "node id bits");
    }

    #[test]
    fn the_default_node_id_is_crc32_of_md5_of_the_host_name_mod_1024() {
        // Computed independently: zlib.crc32(hashlib.md5(host).digest()) % 1024.
        assert_eq!(node_id_for("nsqd-0"), 794);
        assert_eq!(node_id_for("nsqd-1"), 958);
        assert_eq!(node_id_for("localhost"), 16);
    }
}
