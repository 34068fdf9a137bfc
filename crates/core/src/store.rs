//! The key-value state machine. (Skeleton: the helper implementing this file replaces the
//! bodies; the public signatures are the contract the server is written against.)

use crate::command::Command;
use crate::reply::Reply;
use bytes::Bytes;

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

/// The key-value state: binary-safe keys to binary-safe values, each with an optional expiry.
#[derive(Clone, Debug, Default)]
pub struct Store {}

impl Store {
    /// An empty store.
    #[must_use]
    pub fn new() -> Store {
        Store {}
    }

    /// The spec of a data command by name (any case), or `None` when it is not one.
    #[must_use]
    pub fn command_spec(_name: &[u8]) -> Option<&'static CommandSpec> {
        todo!()
    }

    /// Every data command's spec.
    #[must_use]
    pub fn command_specs() -> &'static [CommandSpec] {
        todo!()
    }

    /// Plans a client command (`args[0]` is the name) at time `now_ms` (Unix ms).
    #[must_use]
    pub fn execute(&self, _args: &[Bytes], _now_ms: u64) -> Execution {
        todo!()
    }

    /// Applies a logged command. Deterministic: no clock.
    pub fn apply(&mut self, _cmd: &Command) {
        todo!()
    }

    /// Up to `max` keys whose expiry is at or before `now_ms`, for the active expiry cycle.
    #[must_use]
    pub fn expired_keys(&self, _now_ms: u64, _max: usize) -> Vec<Bytes> {
        todo!()
    }

    /// Counts for `INFO keyspace`.
    #[must_use]
    pub fn stats(&self) -> KeyspaceStats {
        todo!()
    }

    /// Every entry as (key, value, expiry in Unix ms), for writing a snapshot.
    pub fn entries(&self) -> impl Iterator<Item = (&Bytes, &Bytes, Option<u64>)> {
        std::iter::empty()
    }

    /// Inserts one entry while loading a snapshot.
    pub fn load_entry(&mut self, _key: Bytes, _value: Bytes, _expire_at_ms: Option<u64>) {
        todo!()
    }

    /// Encodes the state as self-contained chunks of at most `entries_per_chunk` entries each,
    /// for a snapshot file (any entry order; each chunk decodes on its own).
    pub fn snapshot_chunks(&self, _entries_per_chunk: usize) -> impl Iterator<Item = Vec<u8>> + '_ {
        std::iter::empty()
    }

    /// Loads one chunk written by [`Store::snapshot_chunks`] into this store.
    ///
    /// # Errors
    /// A message naming what is wrong when the bytes are not a valid chunk; the store is then
    /// unchanged.
    pub fn load_snapshot_chunk(&mut self, _chunk: &[u8]) -> Result<(), String> {
        todo!()
    }
}
