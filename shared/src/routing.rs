//! Key -> shard routing.
//!
//! `shard_for(key, n) = xxh3_64(key) mod n`, with XXH3's 64-bit variant and seed 0 over the raw
//! key bytes. This is part of the on-disk contract: a data directory written with one function
//! cannot be read with another, so the test vectors below must never change.

/// The shard that owns `key` when the node has `shards` shards (`shards` must be at least 1).
#[must_use]
pub fn shard_for(key: &[u8], shards: u32) -> u32 {
    let shards = u64::from(shards.max(1));
    // The remainder is below `shards`, which came from a u32.
    u32::try_from(xxhash_rust::xxh3::xxh3_64(key) % shards).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned vectors: changing the hash breaks every existing data directory.
    #[test]
    fn vectors_are_stable() {
        assert_eq!(xxhash_rust::xxh3::xxh3_64(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(xxhash_rust::xxh3::xxh3_64(b"a"), 0xe6c6_32b6_1e96_4e1f);
        let cases: &[(&[u8], u32, u32)] = &[
            (b"a", 2, 1),
            (b"b", 2, 1),
            (b"user:1", 2, 1),
            (b"user:1", 3, 0),
            (b"user:2", 16, 2),
            (b"hello", 8, 5),
            (&[0, 255, 1], 4, 0),
        ];
        for &(key, shards, want) in cases {
            assert_eq!(shard_for(key, shards), want, "key {key:?} shards {shards}");
        }
    }

    #[test]
    fn spreads_keys_evenly() {
        let mut counts = [0u32; 4];
        for i in 0..40_000 {
            counts[shard_for(format!("key{i}").as_bytes(), 4) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "uneven spread: {counts:?}");
        }
    }

    #[test]
    fn one_shard_takes_everything() {
        assert_eq!(shard_for(b"anything", 1), 0);
        assert_eq!(shard_for(b"anything", 0), 0);
    }
}
