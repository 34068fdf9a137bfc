//! FNV-1a, 64-bit: the trace digest two runs of one seed are compared by.

use std::fmt;

/// An FNV-1a hasher fed through [`fmt::Write`], so events hash without being formatted into a
/// string first.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Fnv {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// A hasher with nothing hashed yet.
    #[must_use]
    pub fn new() -> Fnv {
        Fnv(Fnv::OFFSET)
    }

    /// Hashes `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(Fnv::PRIME);
        }
    }

    /// The hash of everything so far.
    #[must_use]
    pub fn value(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv::new()
    }
}

impl fmt::Write for Fnv {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.update(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_of_fnv1a_64() {
        assert_eq!(Fnv::new().value(), 0xcbf2_9ce4_8422_2325);
        let mut h = Fnv::new();
        h.update(b"a");
        assert_eq!(h.value(), 0xaf63_dc4c_8601_ec8c);
    }
}
