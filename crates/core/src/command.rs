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
    /// Changes nothing. A newly elected leader writes one in its own epoch before it releases
    /// any reply, so that it commits entries of older epochs only behind one of its own
    /// (Raft's rule; see `docs/design/failover.md`).
    Noop,
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
            Command::FlushAll | Command::Noop => FIELD,
        }
    }

    /// Decodes a payload written by [`Command::encode`].
    ///
    /// # Errors
    /// [`CommandDecodeError`] when the bytes are not a valid command.
    pub fn decode(bytes: &[u8]) -> Result<Command, CommandDecodeError> {
        Ok(postcard::from_bytes(bytes)?)
    }

    /// [`Command::decode`] without copying: the command's byte strings are slices of
    /// `payload`. For applying log records and replicated entries, where the store copies what
    /// it keeps anyway; the copies `decode` makes would be made and freed for nothing.
    ///
    /// # Errors
    /// As [`Command::decode`].
    pub fn decode_shared(payload: &Bytes) -> Result<Command, CommandDecodeError> {
        let borrowed: CommandRef<'_> = postcard::from_bytes(payload)?;
        let share = |b: &[u8]| payload.slice_ref(b);
        Ok(match borrowed {
            CommandRef::Set { key, value, expiry } => Command::Set {
                key: share(key),
                value: share(value),
                expiry,
            },
            CommandRef::MSet { pairs } => Command::MSet {
                pairs: pairs
                    .into_iter()
                    .map(|(k, v)| (share(k), share(v)))
                    .collect(),
            },
            CommandRef::Del { keys } => Command::Del {
                keys: keys.into_iter().map(share).collect(),
            },
            CommandRef::Append { key, suffix } => Command::Append {
                key: share(key),
                suffix: share(suffix),
            },
            CommandRef::ExpireAt { key, at_ms } => Command::ExpireAt {
                key: share(key),
                at_ms,
            },
            CommandRef::Persist { key } => Command::Persist { key: share(key) },
            CommandRef::FlushAll => Command::FlushAll,
            CommandRef::Noop => Command::Noop,
        })
    }
}

/// [`Command`] with borrowed byte strings: the same variants, in the same order, with the same
/// fields, so it reads the same encoding.
#[derive(Deserialize)]
enum CommandRef<'a> {
    Set {
        #[serde(borrow, with = "serde_bytes_ref")]
        key: &'a [u8],
        #[serde(borrow, with = "serde_bytes_ref")]
        value: &'a [u8],
        expiry: Expiry,
    },
    MSet {
        #[serde(borrow, deserialize_with = "serde_bytes_ref::pairs")]
        pairs: Vec<(&'a [u8], &'a [u8])>,
    },
    Del {
        #[serde(borrow, deserialize_with = "serde_bytes_ref::list")]
        keys: Vec<&'a [u8]>,
    },
    Append {
        #[serde(borrow, with = "serde_bytes_ref")]
        key: &'a [u8],
        #[serde(borrow, with = "serde_bytes_ref")]
        suffix: &'a [u8],
    },
    ExpireAt {
        #[serde(borrow, with = "serde_bytes_ref")]
        key: &'a [u8],
        at_ms: u64,
    },
    Persist {
        #[serde(borrow, with = "serde_bytes_ref")]
        key: &'a [u8],
    },
    FlushAll,
    Noop,
}

/// Reads byte strings as `Bytes` writes them (serde bytes), borrowed from the input.
mod serde_bytes_ref {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use serde::Deserialize;
    use std::fmt;

    struct Borrowed;

    impl<'de> Visitor<'de> for Borrowed {
        type Value = &'de [u8];

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a borrowed byte string")
        }

        fn visit_borrowed_bytes<E: Error>(self, v: &'de [u8]) -> Result<&'de [u8], E> {
            Ok(v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<&'de [u8], D::Error> {
        d.deserialize_bytes(Borrowed)
    }

    /// One byte string, as a sequence element.
    struct Item<'de>(&'de [u8]);

    impl<'de> Deserialize<'de> for Item<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            deserialize(d).map(Item)
        }
    }

    struct List;

    impl<'de> Visitor<'de> for List {
        type Value = Vec<&'de [u8]>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a sequence of byte strings")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            // The declared length is not trusted for an allocation: items come one by one.
            let mut out = Vec::new();
            while let Some(Item(b)) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }

    pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<&'de [u8]>, D::Error> {
        d.deserialize_seq(List)
    }

    /// Key/value pairs borrowed from the input.
    pub type PairRefs<'a> = Vec<(&'a [u8], &'a [u8])>;

    struct Pairs;

    impl<'de> Visitor<'de> for Pairs {
        type Value = PairRefs<'de>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a sequence of byte string pairs")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some((Item(k), Item(v))) = seq.next_element()? {
                out.push((k, v));
            }
            Ok(out)
        }
    }

    pub fn pairs<'de, D: Deserializer<'de>>(d: D) -> Result<PairRefs<'de>, D::Error> {
        d.deserialize_seq(Pairs)
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
            Command::Noop,
        ];
        for c in cmds {
            let encoded = Bytes::from(c.encode());
            assert_eq!(Command::decode_shared(&encoded).ok(), Some(c.clone()));
            assert_eq!(Command::decode(&encoded).ok(), Some(c));
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Command::decode(&[0xff, 0xff, 0xff]).is_err());
        assert!(Command::decode(&[]).is_err());
        assert!(Command::decode_shared(&Bytes::from_static(&[0xff, 0xff, 0xff])).is_err());
        assert!(Command::decode_shared(&Bytes::new()).is_err());
    }
}

#[cfg(test)]
mod decode_shared_props {
    use super::*;
    use proptest::prelude::*;

    fn bytes() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from)
    }

    fn command() -> impl Strategy<Value = Command> {
        let expiry = prop_oneof![
            Just(Expiry::Keep),
            Just(Expiry::Clear),
            any::<u64>().prop_map(Expiry::AtMs)
        ];
        prop_oneof![
            (bytes(), bytes(), expiry).prop_map(|(key, value, expiry)| Command::Set {
                key,
                value,
                expiry
            }),
            proptest::collection::vec((bytes(), bytes()), 0..5)
                .prop_map(|pairs| Command::MSet { pairs }),
            proptest::collection::vec(bytes(), 0..5).prop_map(|keys| Command::Del { keys }),
            (bytes(), bytes()).prop_map(|(key, suffix)| Command::Append { key, suffix }),
            (bytes(), any::<u64>()).prop_map(|(key, at_ms)| Command::ExpireAt { key, at_ms }),
            bytes().prop_map(|key| Command::Persist { key }),
            Just(Command::FlushAll),
            Just(Command::Noop),
        ]
    }

    proptest! {
        /// Both decoders agree on every encoding, and on every damaged one either both fail
        /// or both give the same command.
        #[test]
        fn decode_shared_agrees_with_decode(c in command(), cut in any::<prop::sample::Index>(), flip in any::<u8>()) {
            let encoded = c.encode();
            prop_assert_eq!(Command::decode_shared(&Bytes::from(encoded.clone())).ok(), Some(c));
            let mut damaged = encoded.clone();
            let i = cut.index(damaged.len().max(1));
            if let Some(b) = damaged.get_mut(i) {
                *b ^= flip;
            }
            damaged.truncate(i + 1);
            let shared = Command::decode_shared(&Bytes::from(damaged.clone())).ok();
            prop_assert_eq!(shared, Command::decode(&damaged).ok());
        }
    }
}
