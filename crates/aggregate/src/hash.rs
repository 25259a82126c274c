//! Unit keys: a keyed 64-bit hash of (project, environment, unit).
//!
//! The aggregator keeps units by this hash, not by their string (a unit id
//! may be up to 1 KiB; the hash is 8 bytes). Two different units with the
//! same hash would be merged into one. The hash is SipHash-1-3 under a
//! 128-bit key drawn at random when an aggregator is first created and kept
//! in its checkpoints, so a client cannot choose units that collide. For
//! `n` units of one experiment the chance that any two collide is at most
//! `n^2 / 2^65`: about 3e-6 for 10 million units.

/// SipHash-1-3 of `data` under the key `(k0, k1)` (the variant Rust's
/// standard `HashMap` uses).
pub fn siphash13(k0: u64, k1: u64, data: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        let m = u64::from_le_bytes(b);
        v[3] ^= m;
        round(&mut v);
        v[0] ^= m;
    }
    let mut last = (data.len() as u64) << 56;
    for (i, &x) in chunks.remainder().iter().enumerate() {
        last |= u64::from(x) << (8 * i);
    }
    v[3] ^= last;
    round(&mut v);
    v[0] ^= last;
    v[2] ^= 0xff;
    round(&mut v);
    round(&mut v);
    round(&mut v);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[inline]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

/// Hashes units under one key, reusing a buffer (no allocation per event).
#[derive(Debug, Clone)]
pub struct UnitHasher {
    key: (u64, u64),
    buf: Vec<u8>,
}

impl UnitHasher {
    pub fn new(key: (u64, u64)) -> Self {
        UnitHasher {
            key,
            buf: Vec::with_capacity(256),
        }
    }

    pub fn key(&self) -> (u64, u64) {
        self.key
    }

    /// The unit's key within its project and environment. The parts are
    /// length-prefixed, so no two different triples hash the same bytes.
    pub fn unit(&mut self, project: &str, environment: &str, unit: &str) -> u64 {
        self.buf.clear();
        for part in [project, environment, unit] {
            self.buf
                .extend_from_slice(&(part.len() as u32).to_le_bytes());
            self.buf.extend_from_slice(part.as_bytes());
        }
        siphash13(self.key.0, self.key.1, &self.buf)
    }
}

/// A `BuildHasher` for maps keyed by an already uniform 64-bit hash: the
/// key is its own hash.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyIsHash;

#[derive(Debug, Default)]
pub struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; keep a fallback that mixes anything else.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl std::hash::BuildHasher for KeyIsHash {
    type Hasher = PassThrough;
    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

pub type UnitMap<V> = std::collections::HashMap<u64, V, KeyIsHash>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hasher;

    #[test]
    fn siphash13_with_a_zero_key_equals_the_standard_library_hasher() {
        // std's DefaultHasher is SipHash-1-3 with a zero key; `write` feeds
        // the bytes as they are.
        for data in [
            &b""[..],
            b"a",
            b"abcdefg",
            b"abcdefgh",
            b"user-12345/checkout",
        ] {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            h.write(data);
            assert_eq!(siphash13(0, 0, data), h.finish(), "{data:?}");
        }
    }

    #[test]
    fn the_same_unit_in_two_environments_has_two_keys() {
        let mut h = UnitHasher::new((1, 2));
        let a = h.unit("p", "production", "u1");
        let b = h.unit("p", "staging", "u1");
        let c = h.unit("p", "production", "u1");
        assert_ne!(a, b);
        assert_eq!(a, c);
        // Length prefixes: moving bytes between parts changes the key.
        assert_ne!(h.unit("ab", "c", "d"), h.unit("a", "bc", "d"));
    }
}
