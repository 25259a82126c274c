//! The frozen bucketing function. Every SDK must reproduce it bit for bit:
//!
//! ```text
//! h      = murmur3_x86_32(utf8("{salt}/{unit}"), seed 0)
//! bucket = (h as u64 * 10_000) >> 32        // 0..=9999
//! ```
//!
//! The multiply-shift maps the 32-bit hash onto 10 000 buckets without the
//! bias a modulo would add. The hash is computed over the three pieces
//! (salt, `/`, unit) as one byte stream, without building the string; a
//! compiled configuration keeps the state after `"{salt}/"` ([`Salted`]),
//! so an evaluation hashes only the unit's bytes.

/// Number of buckets: 0.01 % resolution.
pub const BUCKETS: u32 = 10_000;

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline(always)]
fn mix_k(mut k: u32) -> u32 {
    k = k.wrapping_mul(C1);
    k = k.rotate_left(15);
    k.wrapping_mul(C2)
}

#[inline(always)]
fn mix_h(h: u32, k: u32) -> u32 {
    let h = (h ^ mix_k(k)).rotate_left(13);
    h.wrapping_mul(5).wrapping_add(0xe654_6b64)
}

#[inline(always)]
fn fmix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Streaming MurmurHash3 x86_32 over several byte slices.
#[derive(Debug, Clone, Copy)]
struct Murmur3 {
    h: u32,
    tail: u32,
    tail_len: u32,
    total: u32,
}

impl Murmur3 {
    #[inline(always)]
    fn new(seed: u32) -> Self {
        Murmur3 {
            h: seed,
            tail: 0,
            tail_len: 0,
            total: 0,
        }
    }

    #[inline(always)]
    fn write(&mut self, mut bytes: &[u8]) {
        self.total = self.total.wrapping_add(bytes.len() as u32);
        // Complete a pending partial block first.
        if self.tail_len != 0 {
            let fill = (4 - self.tail_len as usize).min(bytes.len());
            for (i, &b) in bytes[..fill].iter().enumerate() {
                self.tail |= u32::from(b) << (8 * (self.tail_len as usize + i));
            }
            self.tail_len += fill as u32;
            bytes = &bytes[fill..];
            if self.tail_len < 4 {
                return;
            }
            self.h = mix_h(self.h, self.tail);
            self.tail = 0;
            self.tail_len = 0;
        }
        let mut chunks = bytes.chunks_exact(4);
        for c in &mut chunks {
            let k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            self.h = mix_h(self.h, k);
        }
        for (i, &b) in chunks.remainder().iter().enumerate() {
            self.tail |= u32::from(b) << (8 * i);
        }
        self.tail_len = chunks.remainder().len() as u32;
    }

    #[inline(always)]
    fn finish(self) -> u32 {
        let mut h = self.h;
        if self.tail_len != 0 {
            h ^= mix_k(self.tail);
        }
        h ^= self.total;
        fmix(h)
    }
}

/// MurmurHash3 x86_32 of `bytes` with `seed`.
pub fn murmur3_x86_32(bytes: &[u8], seed: u32) -> u32 {
    let mut m = Murmur3::new(seed);
    m.write(bytes);
    m.finish()
}

/// The hash of `"{salt}/{unit}"`, seed 0.
#[inline]
pub fn hash_unit(salt: &str, unit: &str) -> u32 {
    let mut m = Murmur3::new(0);
    m.write(salt.as_bytes());
    m.write(b"/");
    m.write(unit.as_bytes());
    m.finish()
}

/// The bucket (0..=9999) of `unit` under `salt`.
#[inline]
pub fn bucket(salt: &str, unit: &str) -> u32 {
    hash_to_bucket(hash_unit(salt, unit))
}

/// The hash state after `"{salt}/"`, computed once when a configuration
/// is compiled: [`Salted::bucket`] continues it over the unit's bytes and
/// gives exactly [`bucket`]`(salt, unit)`.
#[derive(Debug, Clone, Copy)]
pub struct Salted(Murmur3);

impl Salted {
    pub fn new(salt: &str) -> Self {
        let mut m = Murmur3::new(0);
        m.write(salt.as_bytes());
        m.write(b"/");
        Salted(m)
    }

    /// The bucket (0..=9999) of `unit` under this salt.
    #[inline]
    pub fn bucket(&self, unit: &str) -> u32 {
        let mut m = self.0;
        m.write(unit.as_bytes());
        hash_to_bucket(m.finish())
    }
}

/// Maps a 32-bit hash onto 0..=9999 by multiply-shift.
#[inline]
pub fn hash_to_bucket(h: u32) -> u32 {
    ((u64::from(h) * u64::from(BUCKETS)) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_murmur3_vectors_are_reproduced() {
        assert_eq!(murmur3_x86_32(b"", 0), 0);
        assert_eq!(murmur3_x86_32(b"", 1), 0x514E_28B7);
        assert_eq!(murmur3_x86_32(b"", 0xffff_ffff), 0x81F1_6F39);
        assert_eq!(murmur3_x86_32(b"test", 0), 0xba6b_d213);
        assert_eq!(murmur3_x86_32(b"Hello, world!", 0), 0xc036_3e43);
        assert_eq!(
            murmur3_x86_32(b"The quick brown fox jumps over the lazy dog", 0),
            0x2e4f_f723
        );
        assert_eq!(murmur3_x86_32(&[0xff, 0xff, 0xff, 0xff], 0), 0x7629_3B50);
        assert_eq!(murmur3_x86_32(&[0x21, 0x43, 0x65, 0x87], 0), 0xF55B_516B);
        assert_eq!(murmur3_x86_32(&[0x21, 0x43, 0x65], 0), 0x7E4A_8634);
        assert_eq!(murmur3_x86_32(&[0x21, 0x43], 0), 0xA0F7_B07A);
        assert_eq!(murmur3_x86_32(&[0x21], 0), 0x7266_1CF4);
    }

    #[test]
    fn streaming_over_pieces_equals_hashing_the_joined_string() {
        for salt in ["", "a", "ab", "abc", "abcd", "flag-key-long"] {
            for unit in ["", "u", "user-1", "ユーザー", "Zoë🎉"] {
                let joined = format!("{salt}/{unit}");
                assert_eq!(hash_unit(salt, unit), murmur3_x86_32(joined.as_bytes(), 0));
                assert_eq!(
                    Salted::new(salt).bucket(unit),
                    hash_to_bucket(murmur3_x86_32(joined.as_bytes(), 0))
                );
            }
        }
    }

    #[test]
    fn buckets_span_the_whole_range_without_overflow() {
        assert_eq!(hash_to_bucket(0), 0);
        assert_eq!(hash_to_bucket(u32::MAX), 9_999);
        assert_eq!(hash_to_bucket(1 << 31), 5_000);
    }
}
