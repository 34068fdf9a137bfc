//! The key-value state machine: binary-safe string keys and values with optional expiry.
//!
//! A client command is *planned* by [`Store::execute`] into log [`Command`]s, which every
//! replica then applies with [`Store::apply`]. Planning reads the wall clock value it is given;
//! applying never does, so the same log always yields the same state.
//!
//! # Commands
//!
//! Strings: `GET SET SETNX SETEX PSETEX GETSET GETDEL GETEX APPEND STRLEN GETRANGE SUBSTR
//! SETRANGE INCR INCRBY DECR DECRBY MGET MSET MSETNX`. Keys: `DEL UNLINK EXISTS TOUCH TYPE
//! RENAME RENAMENX KEYS SCAN DBSIZE FLUSHALL FLUSHDB`. Expiry: `EXPIRE PEXPIRE EXPIREAT
//! PEXPIREAT TTL PTTL EXPIRETIME PEXPIRETIME PERSIST`. [`Store::command_specs`] lists them with
//! Redis 7's arity and key positions. Not provided: `INCRBYFLOAT` (Redis's long-double
//! formatting), `RANDOMKEY` (randomness), `COPY`, `LCS`, `OBJECT`.
//!
//! # Layout
//!
//! Entries live in a hash map from key to entry, for point lookups. Beside it, an ordered index
//! of *slots* `(hash, key)`, where `hash` is the xxh3-64 hash of the key raised to at least 1,
//! fixes the keyspace order. The hash function is a frozen specification, so every replica and
//! every version of replikv orders the keyspace identically. That order gives `SCAN` its
//! guarantees:
//!
//! - The cursor is the hash of the next slot to visit (0 when the iteration is over). A call
//!   resumes at the first slot whose hash is at least the cursor, and a call never stops between
//!   two slots of equal hash. So every slot below the cursor has been visited, and a key present
//!   for the whole iteration is returned at least once, whatever is written between calls.
//! - The same state gives the same `SCAN` and `KEYS` output on every replica, and a cursor
//!   obtained from one replica stays meaningful on another (after a failover, say).
//! - Without hash collisions a call visits exactly `COUNT` slots (logically expired and
//!   non-matching ones included, as Redis counts buckets) and a stable keyspace returns each key
//!   once; keys crafted to collide are visited together in one longer call.
//!
//! `GET` and overwriting `SET` cost one hash-map lookup; only creating or removing a key touches
//! the slot index (one xxh3 hash and one tree update).
//!
//! A second index, a `BTreeSet` of `(expire_at_ms, slot)`, serves the active expiry cycle
//! ([`Store::expired_keys`]) in time order without walking every key.
//!
//! # Expiry
//!
//! A key whose `expire_at_ms <= now_ms` is *logically expired*: reads treat it as absent, and it
//! stays in memory until a write deletes it. Any write command that touches such a key first
//! plans a [`Command::Del`] for it (as Redis's `lookupKeyWrite` does), so that no applied
//! command ever sees a stale value or TTL; the server's active expiry cycle deletes the rest.
//! Such a clean-up is a write even when the reply reports no change (`DEL` of an expired key
//! replies 0 and logs its `Del`). An expiry that is not in the future (`EXPIRE k -1`, `SET ...
//! PXAT <past>`, `GETEX ... EXAT <past>`) plans a `Del` of the key, as Redis does.

mod execute;
mod spec;

use crate::command::{Command, Expiry};
use crate::reply::Reply;
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeSet, HashMap};

/// The outcome of planning a client command against the current state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Execution {
    /// A read, or a write that changes nothing (e.g. `SET k v NX` on an existing key, `DEL`
    /// of absent keys): reply at once, log nothing.
    Read(Reply),
    /// A write: append `commands` to the log in order, apply each, and release `reply` once
    /// the last of them is durable as the acknowledgement mode requires.
    Write {
        /// Commands to log and apply, in order; never empty.
        commands: Vec<Command>,
        /// The client's reply, valid once every command is applied.
        reply: Reply,
    },
}

/// Static facts about a data command, as `COMMAND` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    /// Lower-case name.
    pub name: &'static str,
    /// Redis arity: positive = exact argument count including the name; negative = at least.
    pub arity: i32,
    /// Whether the command may write.
    pub write: bool,
    /// Position of the first key argument (0 when none).
    pub first_key: i32,
    /// Position of the last key argument (-1 = last argument).
    pub last_key: i32,
    /// Step between key arguments.
    pub key_step: i32,
}

/// Counts shown by `INFO keyspace` and `DBSIZE`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyspaceStats {
    /// Number of keys held (including logically expired keys not yet deleted, as Redis counts).
    pub keys: u64,
    /// Number of keys with a TTL.
    pub expires: u64,
    /// Approximate bytes of keys and values held.
    pub bytes: u64,
}

/// Where an entry sits in the keyspace order: by key hash, then by key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    /// `xxh3_64(key)`, raised to at least 1 so that cursor 0 can mean "done".
    hash: u64,
    key: Bytes,
}

/// The slot hash of a key: stable across replicas, platforms and versions.
fn slot_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key).max(1)
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    /// The key's slot hash, kept so removal needs no rehash.
    hash: u64,
    value: Bytes,
    /// Absolute expiry in Unix ms; `None` = no TTL.
    expire_at_ms: Option<u64>,
}

impl Entry {
    fn is_live(&self, now_ms: u64) -> bool {
        self.expire_at_ms.is_none_or(|at| at > now_ms)
    }
}

/// Key and value bytes after which a snapshot chunk is closed.
pub const SNAPSHOT_CHUNK_BYTES_TARGET: usize = 16 << 20;

/// The version byte that opens every snapshot chunk.
const SNAPSHOT_CHUNK_FORMAT: u8 = 1;

/// One snapshot entry as encoded: (key, value, expire_at_ms).
type ChunkEntry = (Bytes, Bytes, Option<u64>);

/// The key-value state: binary-safe keys to binary-safe values, each with an optional expiry.
///
/// Two stores are equal when they hold the same entries with the same expiries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Store {
    /// Every entry, logically expired or not. The map's randomly keyed hasher resists
    /// hash-flooding by clients and never shows: nothing iterates this map.
    entries: HashMap<Bytes, Entry>,
    /// One slot per entry: the keyspace order `SCAN`, `KEYS` and snapshots follow.
    index: BTreeSet<Slot>,
    /// `(expire_at_ms, slot)` for every entry that has a TTL; nothing else.
    expiries: BTreeSet<(u64, Slot)>,
    /// Sum of key and value lengths over `entries`.
    bytes: u64,
}

impl Store {
    /// An empty store.
    #[must_use]
    pub fn new() -> Store {
        Store::default()
    }

    /// The spec of a data command by name (any case), or `None` when it is not one.
    #[must_use]
    pub fn command_spec(name: &[u8]) -> Option<&'static CommandSpec> {
        spec::find(name)
    }

    /// Every data command's spec, sorted by name.
    #[must_use]
    pub fn command_specs() -> &'static [CommandSpec] {
        &spec::SPECS
    }

    /// Plans a client command (`args[0]` is the name) at time `now_ms` (Unix ms).
    ///
    /// Replies and error texts are Redis 7's. Never panics, whatever `args` hold; an empty
    /// `args` is an unknown command.
    #[must_use]
    pub fn execute(&self, args: &[Bytes], now_ms: u64) -> Execution {
        let execution = self.execute_command(args, now_ms);
        if let Execution::Write { commands, .. } = &execution {
            assert!(
                !commands.is_empty(),
                "a planned write has commands: {args:?}"
            );
        }
        execution
    }

    /// Applies a logged command. Deterministic: no clock.
    pub fn apply(&mut self, cmd: &Command) {
        match cmd {
            Command::Set { key, value, expiry } => {
                let expire_at_ms = match expiry {
                    Expiry::Keep => self.entries.get(key).and_then(|e| e.expire_at_ms),
                    Expiry::Clear => None,
                    Expiry::AtMs(at) => Some(*at),
                };
                self.insert(key, value.clone(), expire_at_ms);
            }
            Command::MSet { pairs } => {
                for (key, value) in pairs {
                    self.insert(key, value.clone(), None);
                }
            }
            Command::Del { keys } => {
                for key in keys {
                    self.remove(key);
                }
            }
            Command::Append { key, suffix } => match self.remove(key) {
                Some(entry) => {
                    // Reuses the old buffer when nothing else shares it, so repeated
                    // appends grow the value in amortised linear time.
                    let mut value = BytesMut::from(entry.value);
                    value.extend_from_slice(suffix);
                    self.insert_owned(key, value.freeze(), entry.expire_at_ms);
                }
                None => self.insert(key, suffix.clone(), None),
            },
            Command::ExpireAt { key, at_ms } => self.set_expiry(key, Some(*at_ms)),
            Command::Persist { key } => self.set_expiry(key, None),
            Command::FlushAll => {
                self.entries.clear();
                self.index.clear();
                self.expiries.clear();
                self.bytes = 0;
            }
            Command::Noop => {}
        }
    }

    /// Up to `max` keys whose expiry is at or before `now_ms`, for the active expiry cycle,
    /// soonest expiry first. Costs O(`max` + log n).
    #[must_use]
    pub fn expired_keys(&self, now_ms: u64, max: usize) -> Vec<Bytes> {
        self.expiries
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .take(max)
            .map(|(_, slot)| slot.key.clone())
            .collect()
    }

    /// Counts for `INFO keyspace`.
    #[must_use]
    pub fn stats(&self) -> KeyspaceStats {
        KeyspaceStats {
            keys: u64::try_from(self.entries.len()).unwrap_or(u64::MAX),
            expires: u64::try_from(self.expiries.len()).unwrap_or(u64::MAX),
            bytes: self.bytes,
        }
    }

    /// Every entry as (key, value, expiry in Unix ms), for writing a snapshot, in keyspace
    /// order (the same on every replica).
    pub fn entries(&self) -> impl Iterator<Item = (&Bytes, &Bytes, Option<u64>)> {
        self.index.iter().filter_map(|slot| {
            let entry = self.entries.get(&slot.key)?;
            Some((&slot.key, &entry.value, entry.expire_at_ms))
        })
    }

    /// Inserts one entry while loading a snapshot, replacing any entry under the same key.
    pub fn load_entry(&mut self, key: Bytes, value: Bytes, expire_at_ms: Option<u64>) {
        self.insert(&key, value, expire_at_ms);
    }

    /// Encodes the state as self-contained chunks of at most `entries_per_chunk` entries each
    /// (0 is taken as 1), and closed early once their keys and values reach
    /// [`SNAPSHOT_CHUNK_BYTES_TARGET`], for a snapshot file. A chunk always holds at least one
    /// entry, so one holding a large value is about that value's size. An empty store yields no
    /// chunk.
    ///
    /// A chunk is the format byte 1 followed by the postcard encoding of
    /// `Vec<(key: bytes, value: bytes, expire_at_ms: Option<u64>)>`; entries are in keyspace
    /// order, and each chunk decodes on its own.
    pub fn snapshot_chunks(&self, entries_per_chunk: usize) -> impl Iterator<Item = Vec<u8>> + '_ {
        let per_chunk = entries_per_chunk.max(1);
        let mut entries = self.entries().peekable();
        std::iter::from_fn(move || {
            entries.peek()?;
            let mut batch: Vec<(&Bytes, &Bytes, Option<u64>)> = Vec::new();
            let mut bytes = 0usize;
            while batch.len() < per_chunk && bytes < SNAPSHOT_CHUNK_BYTES_TARGET {
                let Some(entry) = entries.next() else { break };
                bytes += entry.0.len() + entry.1.len();
                batch.push(entry);
            }
            // Serialising byte strings and integers into a Vec cannot fail.
            postcard::to_extend(&batch, vec![SNAPSHOT_CHUNK_FORMAT]).ok()
        })
    }

    /// Loads one chunk written by [`Store::snapshot_chunks`] into this store.
    ///
    /// # Errors
    /// A message naming what is wrong when the bytes are not a valid chunk; the store is then
    /// unchanged.
    pub fn load_snapshot_chunk(&mut self, chunk: &[u8]) -> Result<(), String> {
        let Some((&format, body)) = chunk.split_first() else {
            return Err("empty snapshot chunk".to_owned());
        };
        if format != SNAPSHOT_CHUNK_FORMAT {
            return Err(format!(
                "snapshot chunk format {format} is not the supported {SNAPSHOT_CHUNK_FORMAT}"
            ));
        }
        let (batch, rest): (Vec<ChunkEntry>, &[u8]) = postcard::take_from_bytes(body)
            .map_err(|e| format!("undecodable snapshot chunk: {e}"))?;
        if !rest.is_empty() {
            return Err(format!("snapshot chunk has {} trailing bytes", rest.len()));
        }
        for (key, value, expire_at_ms) in batch {
            self.load_entry(key, value, expire_at_ms);
        }
        Ok(())
    }

    /// Asserts the store's internal consistency: every slot's hash is its key's, the expiry
    /// index lists exactly the entries with a TTL, and the byte count is the sum of key and value
    /// lengths. Costs O(n); for tests and the simulator.
    ///
    /// # Panics
    /// When an invariant does not hold, which is a bug in this module.
    pub fn check_invariants(&self) {
        let mut bytes = 0u64;
        let mut with_ttl = 0usize;
        assert_eq!(
            self.index.len(),
            self.entries.len(),
            "slot index size vs entries"
        );
        for slot in &self.index {
            let entry = self.entries.get(&slot.key);
            assert!(
                entry.is_some(),
                "slot index lists absent key {:?}",
                slot.key
            );
            let Some(entry) = entry else { continue };
            assert_eq!(entry.hash, slot.hash, "entry hash of key {:?}", slot.key);
            assert_eq!(
                slot.hash,
                slot_hash(&slot.key),
                "slot hash of key {:?}",
                slot.key
            );
            assert!(slot.hash >= 1, "slot hash {} is at least 1", slot.hash);
            bytes += (slot.key.len() + entry.value.len()) as u64;
            if let Some(at) = entry.expire_at_ms {
                with_ttl += 1;
                assert!(
                    self.expiries.contains(&(at, slot.clone())),
                    "expiry index lacks key {:?} at {at}",
                    slot.key
                );
            }
        }
        assert_eq!(
            self.expiries.len(),
            with_ttl,
            "expiry index size vs keys with a TTL"
        );
        for (at, slot) in &self.expiries {
            let entry_at = self.entries.get(&slot.key).and_then(|e| e.expire_at_ms);
            assert_eq!(
                entry_at,
                Some(*at),
                "expiry index entry for key {:?}",
                slot.key
            );
        }
        assert_eq!(self.bytes, bytes, "byte count vs entries");
    }

    /// The entry under `key`, logically expired or not.
    fn entry(&self, key: &Bytes) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// The entry under `key` unless it is absent or logically expired at `now_ms`.
    fn live(&self, key: &Bytes, now_ms: u64) -> Option<&Entry> {
        self.entry(key).filter(|e| e.is_live(now_ms))
    }

    fn insert(&mut self, key: &Bytes, value: Bytes, expire_at_ms: Option<u64>) {
        // Commands may hold slices of a larger buffer (a client's read buffer, a log segment):
        // the store keeps its own copy so that a few stored bytes never pin a whole buffer.
        self.insert_owned(key, Bytes::copy_from_slice(&value), expire_at_ms);
    }

    /// [`Store::insert`] for a value the store already owns alone (built by `APPEND`), which
    /// must not be copied again: repeated appends stay amortised linear.
    fn insert_owned(&mut self, key: &Bytes, value: Bytes, expire_at_ms: Option<u64>) {
        let hash = match self.entries.get_mut(key) {
            // Overwrite: the slot index keeps its slot; only the expiry index may change.
            Some(entry) => {
                let hash = entry.hash;
                let old_at = entry.expire_at_ms;
                let old_len = entry.value.len() as u64;
                entry.value = value.clone();
                entry.expire_at_ms = expire_at_ms;
                assert!(
                    self.bytes >= old_len,
                    "byte count {} covers the old value",
                    self.bytes
                );
                self.bytes = self.bytes - old_len + value.len() as u64;
                if old_at != expire_at_ms {
                    let slot = Slot {
                        hash,
                        key: key.clone(),
                    };
                    if let Some(at) = old_at {
                        let indexed = self.expiries.remove(&(at, slot.clone()));
                        assert!(
                            indexed,
                            "key {key:?} with expiry {at} was in the expiry index"
                        );
                    }
                    if let Some(at) = expire_at_ms {
                        self.expiries.insert((at, slot));
                    }
                }
                return;
            }
            None => slot_hash(key),
        };
        let key = Bytes::copy_from_slice(key);
        let slot = Slot {
            hash,
            key: key.clone(),
        };
        if let Some(at) = expire_at_ms {
            self.expiries.insert((at, slot.clone()));
        }
        self.bytes += (key.len() + value.len()) as u64;
        self.index.insert(slot);
        self.entries.insert(
            key,
            Entry {
                hash,
                value,
                expire_at_ms,
            },
        );
    }

    fn remove(&mut self, key: &Bytes) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        let slot = Slot {
            hash: entry.hash,
            key: key.clone(),
        };
        let indexed = self.index.remove(&slot);
        assert!(indexed, "key {key:?} was in the slot index");
        if let Some(at) = entry.expire_at_ms {
            let indexed = self.expiries.remove(&(at, slot));
            assert!(
                indexed,
                "key {key:?} with expiry {at} was in the expiry index"
            );
        }
        let size = (key.len() + entry.value.len()) as u64;
        assert!(
            self.bytes >= size,
            "byte count {} covers entry of {size} bytes",
            self.bytes
        );
        self.bytes -= size;
        Some(entry)
    }

    /// Sets or clears the TTL of the entry under `key`; does nothing when there is none.
    fn set_expiry(&mut self, key: &Bytes, expire_at_ms: Option<u64>) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if entry.expire_at_ms == expire_at_ms {
            return;
        }
        let slot = Slot {
            hash: entry.hash,
            key: key.clone(),
        };
        if let Some(old) = entry.expire_at_ms {
            self.expiries.remove(&(old, slot.clone()));
        }
        if let Some(at) = expire_at_ms {
            self.expiries.insert((at, slot));
        }
        entry.expire_at_ms = expire_at_ms;
    }

    /// Visits slots from the first with hash >= `cursor`, at least `count` of them but never
    /// stopping between two of equal hash, and returns the next cursor (0 when done) with the
    /// keys visited that are live and pass `filter`.
    fn scan_slots(
        &self,
        cursor: u64,
        count: usize,
        now_ms: u64,
        filter: impl Fn(&[u8]) -> bool,
    ) -> (u64, Vec<Bytes>) {
        let start = Slot {
            hash: cursor,
            key: Bytes::new(),
        };
        let mut last_hash = None;
        let mut keys = Vec::new();
        for (visited, slot) in self.index.range(start..).enumerate() {
            if visited >= count && last_hash != Some(slot.hash) {
                assert!(slot.hash >= 1, "a resumable cursor is not 0");
                return (slot.hash, keys);
            }
            last_hash = Some(slot.hash);
            let live = self
                .entries
                .get(&slot.key)
                .is_some_and(|e| e.is_live(now_ms));
            if live && filter(&slot.key) {
                keys.push(slot.key.clone());
            }
        }
        (0, keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the hash, whose values decide SCAN order on every replica: changing the function
    /// would break cursors held by clients across an upgrade.
    #[test]
    fn slot_hash_is_frozen() {
        // XXH3-64 of the empty input, seed 0, from the reference implementation's test vectors.
        assert_eq!(slot_hash(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(slot_hash(b"key"), 0xbbea_0d63_a051_65e3);
        assert_eq!(slot_hash(b"\0\xff"), 0xa99b_043a_346c_8bf3);
    }

    /// Keys whose hashes collide share one cursor value, so a call must never stop between
    /// them: resuming at that hash would return the first ones again, forever with COUNT 1.
    #[test]
    fn scan_never_stops_between_equal_hashes() {
        let mut store = Store::new();
        for (hash, key) in [(5, "a"), (5, "b"), (5, "c"), (9, "d"), (12, "e")] {
            let entry = Entry {
                hash,
                value: Bytes::new(),
                expire_at_ms: None,
            };
            store.entries.insert(Bytes::from(key), entry);
            store.index.insert(Slot {
                hash,
                key: Bytes::from(key),
            });
        }
        let all = |_: &[u8]| true;
        let keys = |names: &[&str]| {
            names
                .iter()
                .map(|n| Bytes::copy_from_slice(n.as_bytes()))
                .collect::<Vec<_>>()
        };
        assert_eq!(store.scan_slots(0, 1, 0, all), (9, keys(&["a", "b", "c"])));
        assert_eq!(store.scan_slots(9, 1, 0, all), (12, keys(&["d"])));
        assert_eq!(store.scan_slots(10, 1, 0, all), (0, keys(&["e"])));
        assert_eq!(
            store.scan_slots(0, 4, 0, all),
            (12, keys(&["a", "b", "c", "d"]))
        );
        assert_eq!(
            store.scan_slots(0, 5, 0, all),
            (0, keys(&["a", "b", "c", "d", "e"]))
        );
    }
}
