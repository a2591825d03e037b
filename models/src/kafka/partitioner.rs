//! The Java producer's choice of partition for a record (Kafka `BuiltInPartitioner`,
//! `RoundRobinPartitioner`, `Utils.murmur2`, `Utils.toPositive`).
//!
//! - A record with a key goes to `toPositive(murmur2(key)) % partitions`, so one key always
//!   lands on one partition while the partition count stays the same (adding partitions
//!   moves keys, and with them per-key order).
//! - A record without a key: [`Partitioner::RoundRobin`], Kafka's `RoundRobinPartitioner`, one
//!   partition after another. Kafka's default since 3.3 (KIP-794) is instead the "uniform
//!   sticky" partitioner: it keeps sending keyless records to one partition until
//!   `batch.size` bytes went there, then moves to another chosen at random (weighted by the
//!   brokers' queue sizes when `partitioner.adaptive.partitioning.enable`). Not modelled yet;
//!   it changes how records batch, not what the broker guarantees.
//!
//! `RoundRobinPartitioner` counts per topic and prefers partitions whose leader is
//! available; this one counts per producer and over all partitions (one topic per producer).

/// Kafka `Utils.murmur2`: 32-bit MurmurHash2 with Kafka's seed, over the serialized key.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ length as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        // Kafka's switch falls through from the third trailing byte to the first.
        for (i, byte) in tail.iter().enumerate().rev() {
            h ^= (*byte as u32) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka `Utils.toPositive`: clears the sign bit (not `abs`, which overflows on `i32::MIN`).
pub fn to_positive(number: i32) -> i32 {
    number & 0x7fff_ffff
}

/// Kafka `BuiltInPartitioner.partitionForKey`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    to_positive(murmur2(key)) as u32 % partitions
}

/// How a producer picks partitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Partitioner {
    /// Keyed records by murmur2; keyless ones one partition after another.
    RoundRobin { counter: i32 },
}

impl Default for Partitioner {
    fn default() -> Partitioner {
        Partitioner::RoundRobin { counter: 0 }
    }
}

impl Partitioner {
    /// The partition for a record with this key, among `partitions`.
    pub fn partition(&mut self, key: Option<&[u8]>, partitions: u32) -> u32 {
        assert!(partitions > 0, "a topic has at least one partition");
        match (key, self) {
            (Some(key), _) => partition_for_key(key, partitions),
            (None, Partitioner::RoundRobin { counter }) => {
                // Kafka's counter is an int that wraps; toPositive keeps the index in range.
                let next = *counter;
                *counter = counter.wrapping_add(1);
                to_positive(next) as u32 % partitions
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own vectors (`UtilsTest.testMurmur2`).
    #[test]
    fn murmur2_matches_kafkas_test_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (data, expected) in cases {
            assert_eq!(murmur2(data), expected, "{}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn to_positive_clears_the_sign_bit() {
        assert_eq!(to_positive(-1), i32::MAX);
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(7), 7);
    }

    #[test]
    fn keyed_records_use_the_hash_and_keyless_ones_go_round() {
        let mut p = Partitioner::default();
        // toPositive(-790332482) = 1357151166, mod 6 = 0.
        assert_eq!(p.partition(Some(b"foobar"), 6), 1_357_151_166 % 6);
        let keyless: Vec<u32> = (0..7).map(|_| p.partition(None, 3)).collect();
        assert_eq!(keyless, vec![0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn the_round_robin_counter_wraps_without_leaving_the_range() {
        let mut p = Partitioner::RoundRobin { counter: i32::MAX };
        assert_eq!(p.partition(None, 5), (i32::MAX % 5) as u32);
        assert_eq!(p.partition(None, 5), 0, "i32::MIN, toPositive 0");
    }

    proptest::proptest! {
        /// A key always maps to the same partition, in range, whatever came before it.
        #[test]
        fn a_key_always_lands_on_one_partition(
            key in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            partitions in 1u32..64,
            keyless_before in 0usize..10,
        ) {
            let mut p = Partitioner::default();
            let first = p.partition(Some(&key), partitions);
            for _ in 0..keyless_before {
                let q = p.partition(None, partitions);
                proptest::prop_assert!(q < partitions);
            }
            proptest::prop_assert!(first < partitions);
            proptest::prop_assert_eq!(p.partition(Some(&key), partitions), first);
        }
    }
}
