//! The bytes sent: RESP command arrays, the `SET key:<n> <value>` load request with its optional
//! `WAIT`, and the key picker.

/// Digits of the zero-padded key number, as redis-benchmark's `key:000000012345`.
pub const KEY_DIGITS: usize = 12;
/// Largest keyspace whose numbers fit in [`KEY_DIGITS`] digits.
pub const KEYSPACE_MAX: u64 = 1_000_000_000_000;

/// Appends `args` to `out` as one RESP array of bulk strings.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// One load request, encoded once and rewritten in place for each key: `SET key:<n> <value>`,
/// followed by `WAIT <replicas> 0` when asked for.
#[derive(Debug, Clone)]
pub struct LoadRequest {
    /// The encoded bytes of every command in the request.
    bytes: Vec<u8>,
    /// Where the [`KEY_DIGITS`] digits of the key start in `bytes`.
    digits_at: usize,
    /// Replies the request produces: 1, or 2 with a `WAIT`.
    replies: usize,
}

impl LoadRequest {
    /// A request writing `value_bytes` bytes of `x`, and waiting for `wait` replicas if given.
    #[must_use]
    pub fn new(value_bytes: usize, wait: Option<u32>) -> Self {
        let key = format!("key:{}", "0".repeat(KEY_DIGITS));
        let value = vec![b'x'; value_bytes];
        let mut bytes = Vec::new();
        encode_command(&mut bytes, &[b"SET", key.as_bytes(), &value]);
        // "*3\r\n$3\r\nSET\r\n$16\r\nkey:" precedes the digits.
        let prefix = format!("*3\r\n$3\r\nSET\r\n${}\r\nkey:", key.len());
        let digits_at = prefix.len();
        let mut replies = 1;
        if let Some(n) = wait {
            encode_command(&mut bytes, &[b"WAIT", n.to_string().as_bytes(), b"0"]);
            replies = 2;
        }
        Self {
            bytes,
            digits_at,
            replies,
        }
    }

    /// Points the request at key number `n` (below [`KEYSPACE_MAX`]) and returns its bytes.
    pub fn with_key(&mut self, n: u64) -> &[u8] {
        debug_assert!(
            n < KEYSPACE_MAX,
            "key number {n} has more than {KEY_DIGITS} digits"
        );
        let mut rest = n;
        for slot in self.bytes[self.digits_at..self.digits_at + KEY_DIGITS]
            .iter_mut()
            .rev()
        {
            // `rest % 10` is below 10, so the cast cannot truncate.
            #[allow(clippy::cast_possible_truncation)]
            let digit = (rest % 10) as u8;
            *slot = b'0' + digit;
            rest /= 10;
        }
        &self.bytes
    }

    /// How many replies one request produces.
    #[must_use]
    pub fn replies(&self) -> usize {
        self.replies
    }
}

/// SplitMix64: a small, fast, seeded generator for key numbers. Not for anything secret.
#[derive(Debug, Clone)]
pub struct KeyPicker {
    state: u64,
    keyspace: u64,
}

impl KeyPicker {
    /// Picks keys in `0..keyspace` (`keyspace` ≥ 1) from the stream seeded by `seed`.
    #[must_use]
    pub fn new(seed: u64, keyspace: u64) -> Self {
        assert!(keyspace >= 1, "keyspace must be at least 1, got {keyspace}");
        Self {
            state: seed,
            keyspace,
        }
    }

    /// The next key number. Modulo bias is below 1e-7 for keyspaces up to [`KEYSPACE_MAX`],
    /// which no benchmark can see.
    pub fn next_key(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % self.keyspace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_request_carries_the_key_and_the_wait() {
        let mut r = LoadRequest::new(3, None);
        assert_eq!(r.replies(), 1);
        assert_eq!(
            r.with_key(12_345),
            b"*3\r\n$3\r\nSET\r\n$16\r\nkey:000000012345\r\n$3\r\nxxx\r\n"
        );
        let mut w = LoadRequest::new(1, Some(2));
        assert_eq!(w.replies(), 2);
        assert_eq!(
            w.with_key(KEYSPACE_MAX - 1),
            b"*3\r\n$3\r\nSET\r\n$16\r\nkey:999999999999\r\n$1\r\nx\r\n\
              *3\r\n$4\r\nWAIT\r\n$1\r\n2\r\n$1\r\n0\r\n"
        );
    }

    #[test]
    fn keys_stay_in_the_keyspace_and_spread() {
        let mut picker = KeyPicker::new(7, 10);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[usize::try_from(picker.next_key()).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "uneven spread {seen:?}");
        assert_eq!(KeyPicker::new(1, 1).next_key(), 0);
    }
}
