//! Log commands: the deterministic payload of every log entry.
//!
//! A client request is *planned* on the leader ([`crate::Store::execute`]) into zero or more
//! `Command`s. Applying a command ([`crate::Store::apply`]) depends only on the state before it
//! and the command itself, never on a clock: relative expiry (`EX 10`) is turned into an absolute
//! time when planning, and a key that is logically expired when a command touches it is deleted
//! by an explicit [`Command::Del`] planned before the command. Every replica that applies the
//! same log therefore reaches the same state.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// What a [`Command::Set`] does to the key's time to live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expiry {
    /// Keep the TTL the key already has (`KEEPTTL`, `INCR`); none if the key was absent.
    Keep,
    /// Remove any TTL (plain `SET`).
    Clear,
    /// Expire at this Unix time in milliseconds.
    AtMs(u64),
}

/// One entry's payload in the write-ahead log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Store `value` under `key`.
    Set {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
        /// What happens to the key's TTL.
        expiry: Expiry,
    },
    /// Store every pair, clearing their TTLs (`MSET`).
    MSet {
        /// Key/value pairs, applied in order.
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// Remove these keys; absent keys are ignored.
    Del {
        /// Keys to remove.
        keys: Vec<Bytes>,
    },
    /// Append `suffix` to the key's value, creating it if absent; the TTL is kept.
    Append {
        /// The key.
        key: Bytes,
        /// Bytes appended.
        suffix: Bytes,
    },
    /// Set the key's expiry to an absolute Unix time in milliseconds; ignored if absent.
    ExpireAt {
        /// The key.
        key: Bytes,
        /// Absolute expiry time.
        at_ms: u64,
    },
    /// Remove the key's TTL; ignored if absent.
    Persist {
        /// The key.
        key: Bytes,
    },
    /// Remove every key.
    FlushAll,
}

/// A log payload that does not decode to a [`Command`].
#[derive(Debug, thiserror::Error)]
#[error("undecodable log command: {0}")]
pub struct CommandDecodeError(#[from] postcard::Error);

impl Command {
    /// Encodes the command for the log.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        // Serialising an in-memory enum of byte strings into a Vec cannot fail.
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Appends the command's encoding (the same bytes as [`Command::encode`]) to `out`.
    pub fn encode_into(&self, out: &mut bytes::BytesMut) {
        use bytes::BufMut;
        // Serialising an in-memory enum of byte strings into memory cannot fail.
        let _ = postcard::to_io(self, out.writer());
    }

    /// An upper bound of the encoded size, without encoding: the byte strings plus ten bytes
    /// (a length prefix or a number) for each other field.
    #[must_use]
    pub fn encoded_len_bound(&self) -> usize {
        const FIELD: usize = 10;
        match self {
            Command::Set { key, value, .. } => key.len() + value.len() + 4 * FIELD,
            Command::MSet { pairs } => {
                FIELD
                    + pairs
                        .iter()
                        .map(|(k, v)| k.len() + v.len() + 2 * FIELD)
                        .sum::<usize>()
            }
            Command::Del { keys } => FIELD + keys.iter().map(|k| k.len() + FIELD).sum::<usize>(),
            Command::Append { key, suffix } => key.len() + suffix.len() + 3 * FIELD,
            Command::ExpireAt { key, .. } | Command::Persist { key } => key.len() + 3 * FIELD,
            Command::FlushAll => FIELD,
        }
    }

    /// Decodes a payload written by [`Command::encode`].
    ///
    /// # Errors
    /// [`CommandDecodeError`] when the bytes are not a valid command.
    pub fn decode(bytes: &[u8]) -> Result<Command, CommandDecodeError> {
        Ok(postcard::from_bytes(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let cmds = vec![
            Command::Set {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"\0v"),
                expiry: Expiry::AtMs(42),
            },
            Command::MSet {
                pairs: vec![(Bytes::from_static(b"a"), Bytes::from_static(b"b"))],
            },
            Command::Del {
                keys: vec![Bytes::from_static(b"a")],
            },
            Command::Append {
                key: Bytes::from_static(b"a"),
                suffix: Bytes::from_static(b"x"),
            },
            Command::ExpireAt {
                key: Bytes::from_static(b"a"),
                at_ms: 7,
            },
            Command::Persist {
                key: Bytes::from_static(b"a"),
            },
            Command::FlushAll,
        ];
        for c in cmds {
            assert_eq!(Command::decode(&c.encode()).ok(), Some(c));
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Command::decode(&[0xff, 0xff, 0xff]).is_err());
        assert!(Command::decode(&[]).is_err());
    }
}
