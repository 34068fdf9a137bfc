//! Single-leader replication as deterministic state machines: acknowledgement modes and the
//! commit rules they imply, the progress of downstream replicas and the in-sync set, replies
//! held until their commit rule is met, the checks a follower makes on what its upstream
//! sends, and the consistency guarantees a client can ask a replica for.
//!
//! - [`ack`]: [`AckMode`] (`async`, `semi-sync:K`, `sync`, `quorum`).
//! - [`replicas`]: [`Replicas`], an upstream's view of the followers that replicate from it:
//!   their durable and applied LSNs, lag in entries and milliseconds, the in-sync set, and the
//!   commit LSN each acknowledgement mode allows.
//! - [`pending`]: [`Pending`], replies held until the commit LSN of their mode covers them, or
//!   until their deadline.
//! - [`epochs`]: [`EpochTable`], where each epoch starts in a log, and [`shared_prefix`], the
//!   last entry two logs share (where a returning old leader truncates its log).
//! - [`follower`]: checks on `Entries` and heartbeats (fencing by epoch, continuity), and the
//!   upstream's choice between streaming the log and sending a snapshot.
//! - [`machine`]: [`Machine`], a node's replication state machine composed of the above: the
//!   store, its log position and epoch, followers, held replies, parked writes and `WAIT`s.
//!   The server's node task and the deterministic simulator both drive it.
//! - [`session`]: consistency tokens and a client session's read requirements
//!   (read-your-writes, monotonic reads, bounded staleness).
//!
//! Time comes in as milliseconds; nothing here reads a clock.

pub mod ack;
pub mod epochs;
pub mod follower;
pub mod machine;
pub mod pending;
pub mod replicas;
pub mod session;

#[cfg(test)]
mod ack_test;
#[cfg(test)]
mod epochs_test;
#[cfg(test)]
mod follower_test;
#[cfg(test)]
mod machine_test;
#[cfg(test)]
mod pending_test;
#[cfg(test)]
mod replicas_prop_test;
#[cfg(test)]
mod replicas_test;
#[cfg(test)]
mod replication_test;
#[cfg(test)]
mod session_test;

pub use ack::{AckMode, AckModeError};
pub use epochs::{last_shared, shared_prefix, EpochOrderError, EpochTable};
pub use follower::{check_entries, check_epoch, plan_cut, plan_fetch, EntriesRefusal, FetchPlan};
pub use machine::{
    Answer, BatchReply, CommitRule, LogSink, Machine, MachineConfig, MachineStats, MapLead, Now,
    NOREPLICAS, READONLY,
};
pub use pending::Pending;
pub use replicas::{IsrChange, ReplicaProgress, Replicas};
pub use session::{parse_token, ReadDecision, Session, TokenError};
