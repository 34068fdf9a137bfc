//! replikv's core: log positions, log commands and the key-value state machine they apply to.
//!
//! Nothing here does I/O, reads a clock or draws randomness: time comes in as an argument, so
//! every replica applying the same log reaches the same state, and tests and the simulator can
//! drive the code exactly.
//!
//! - [`position`]: [`Epoch`], [`Lsn`], [`LogPosition`].
//! - [`command`]: [`Command`], the payload of every log entry, and its encoding.
//! - [`store`]: [`Store`], the state machine: planning client commands into log commands and
//!   applying them.
//! - [`reply`]: [`Reply`], protocol-independent replies.
//! - [`glob`]: Redis's glob-style pattern matching (`KEYS`, `SCAN MATCH`).
//! - [`control`]: the control plane's cluster map and the choice of the replica to promote on
//!   failover.
//! - [`replication`]: acknowledgement modes and commit rules, replica progress and the in-sync
//!   set, held replies, follower checks, consistency tokens and session guarantees.
//!
//! ```
//! use bytes::Bytes;
//! use replikv_core::{Execution, Reply, Store};
//!
//! let mut store = Store::new();
//! let args: Vec<Bytes> = ["SET", "greeting", "hello"].iter().map(|s| Bytes::from(*s)).collect();
//! let Execution::Write { commands, reply } = store.execute(&args, 1_700_000_000_000) else {
//!     panic!("SET is a write");
//! };
//! for c in &commands {
//!     store.apply(c);
//! }
//! assert_eq!(reply, Reply::Ok);
//! let get: Vec<Bytes> = ["GET", "greeting"].iter().map(|s| Bytes::from(*s)).collect();
//! assert_eq!(store.execute(&get, 1_700_000_000_000), Execution::Read(Reply::Bulk("hello".into())));
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod command;
pub mod control;
pub mod glob;
pub mod position;
pub mod replication;
pub mod reply;
pub mod store;

#[cfg(test)]
mod store_prop_test;
#[cfg(test)]
mod store_scan_test;
#[cfg(test)]
mod store_test;

pub use command::{Command, CommandDecodeError, Expiry};
pub use position::{Epoch, LogPosition, Lsn};
pub use replication::AckMode;
pub use reply::Reply;
pub use store::{CommandSpec, Execution, KeyspaceStats, Store, SNAPSHOT_CHUNK_BYTES_TARGET};
