//! Where a keyed record lands. daprd's producer uses Sarama's `NewHashPartitioner`:
//! `abs(int32(fnv1a32(key)) % n)` (sarama `partitioner.go hashPartitioner.Partition`), not Java's
//! murmur2. librdkafka's `fnv1a_random` partitioner (`rdkafka_msg.c
//! rd_kafka_msg_partitioner_fnv1a_random`, `rdfnv1a.c rd_fnv1a`) computes the same for keyed
//! records and picks a random partition for unkeyed ones, as Sarama does; the producer uses it,
//! and [`sarama_partition`] states the rule so tests can check a broker's placement against it.

/// The librdkafka `partitioner` setting that places keys where Sarama does.
pub const LIBRDKAFKA_PARTITIONER: &str = "fnv1a_random";

/// 32-bit FNV-1a of `key`.
pub fn fnv1a32(key: &[u8]) -> u32 {
    key.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// Sarama's partition of `key` among `partitions` (> 0).
pub fn sarama_partition(key: &[u8], partitions: i32) -> i32 {
    // Go's `%` truncates towards zero like Rust's; the absolute value comes after it.
    (fnv1a32(key).cast_signed() % partitions.max(1)).abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        // From the FNV reference test suite (draft-eastlake-fnv, FNV-1a 32-bit).
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn partitions_follow_saramas_signed_modulo() {
        // Negative as an int32: "a" = 0xe40c292c = -468965076, so % 7 = -6 -> 6 and % 10 = -6
        // -> 6; "c" = -435409838: % 3 = -2 -> 2. Positive: "key" = 0x6815c86c = 1746258028.
        assert_eq!(sarama_partition(b"a", 3), 0);
        assert_eq!(sarama_partition(b"a", 7), 6);
        assert_eq!(sarama_partition(b"a", 10), 6);
        assert_eq!(sarama_partition(b"c", 3), 2);
        assert_eq!(sarama_partition(b"foobar", 7), 4);
        assert_eq!(sarama_partition(b"key", 3), 1);
        assert_eq!(sarama_partition(b"key", 10), 8);
        for n in 1..20 {
            for key in [
                &b"x"[..],
                b"task-42",
                b"0198c7e4-1f2a-7c3b-9d4e-5f6a7b8c9d0e",
            ] {
                let p = sarama_partition(key, n);
                assert!((0..n).contains(&p), "{p} out of 0..{n}");
            }
        }
    }
}
