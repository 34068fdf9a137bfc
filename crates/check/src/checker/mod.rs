//! Checkers over a recorded [`History`](crate::history::History): each a function returning a
//! [`Verdict`] (pass, fail or unknown, a count, a one-line summary and examples naming the
//! operations involved).
//!
//! | checker | finds |
//! | --- | --- |
//! | [`lost_writes`] | acknowledged writes the final state (without one, every later read) no longer reflects; counters short of their acknowledged increments |
//! | [`linearizability`] | keys whose history no sequential order respecting real time explains (Wing–Gong–Lowe search, bounded in time) |
//! | [`read_your_writes`] | reads that miss the reading client's own earlier write |
//! | [`monotonic_reads`] | reads that go back to an older state than the client's earlier reads |
//! | [`stale_reads`] | reads older than a write acknowledged before them, measured in LSN and ms |
//! | [`availability`] | the fraction of operations that succeeded, and every window in which none did |
//! | [`failovers`] | with automatic failover: for each fault on the leader, the time until another node acknowledged a write |
//! | [`one_leader_per_epoch`] | epochs in which more than one node acknowledged writes |
//!
//! [`check_all`] runs them all with [`Options`] but the two failover ones, which only mean
//! something when the leader can change.
//!
//! # What the history means
//!
//! - **Registers.** Every value written to a key (`Write`, `Swap`, `WriteIfAbsent`) is unique
//!   to that key, so a read of a value names the write that stored it. A read of "absent" saw
//!   the initial state or one of the key's deletes.
//! - **Counters** are keys only ever changed by `Incr` (a set of keys apart from the
//!   registers). Their reads return integer text. When every increment that may have happened
//!   is positive and the key was never deleted, a larger value is a newer state.
//! - **Outcomes.** `Ok` operations took effect; `Fail` ones did not and are ignored;
//!   `Indeterminate` ones may have taken effect at any time after their invocation, or never.
//! - **Tokens.** An op's token (`EPOCH:LSN`) is the log position its reply reflected: for a
//!   write, at or after the write's own entry; for a read, the position of the state it read.
//!   Tokens order by epoch, then LSN.
//!
//! # The register model
//!
//! The linearizability checker compares each key with one Redis string, initially absent.
//! `Read` returns it; `Write` replaces it; `WriteIfAbsent` writes only when absent and returns
//! `"1"` when it did (absent otherwise); `Swap` replaces it and returns the old state; `Incr`
//! reads it as an `i64` (absent is 0, other text cannot be incremented), adds, stores and
//! returns the sum; `Delete` makes it absent. Integer text in canonical form is an integer, so
//! `Write "5"`, `Incr 1`, `Read` returns `"6"`, as in Redis.
//!
//! # Version order
//!
//! The session and staleness checkers compare states of a key. A state is *provably older*
//! than another when:
//! - the initial state is older than every write's state;
//! - of two writes that both carry tokens, and different ones, the lower token is older;
//! - otherwise, a write acknowledged before the other was invoked is older (real time; an
//!   indeterminate write is never provably older, since it may take effect late);
//! - of two values of a growing counter, the smaller is older.
//!
//! Anything else is unordered, and a checker only reports what is provably wrong: a read of
//! "absent" on a key with deletes counts as old only if the initial state and every delete
//! invoked before the read returned are all older than the state it is compared with. A read
//! of a value nobody wrote names no state, so the session checkers skip it and the
//! linearizability checker catches it.
//!
//! # The rules
//!
//! Each function's docs give its rule in full; in short:
//! - **Lost write**: an acknowledged `Write`, `Swap` or `WriteIfAbsent` that wrote, whose key's
//!   final state is provably older than it on every node that reported the key; without a
//!   final state, when every read completed after its acknowledgement saw a provably older
//!   state. A counter is short when its best final value is below its acknowledged increments
//!   (plus the negative indeterminate ones).
//! - **Linearizability**: per key, an order of the operations that respects real time and the
//!   register model, indeterminate ones placed anywhere after their invocation or nowhere;
//!   unknown when the time budget runs out.
//! - **Read-your-writes**: a client's read of a key must not be provably older than its own
//!   last acknowledged write of that key.
//! - **Monotonic reads**: a client's read of a key must not be provably older than what an
//!   earlier read of the key by the client saw; with tokens, a client's read tokens never go
//!   down, across keys.
//! - **Stale read**: a read provably older than a write of its key acknowledged before the
//!   read was invoked; staleness in ms from that acknowledgement to the read's invocation, in
//!   LSN between the tokens of the newest such write and of the state read.
//! - **Availability**: the fraction of operations acknowledged; a window runs from the last
//!   success (or the first attempt after it) to the next success while operations were being
//!   attempted.
//! - **Failover time**: for a kill, pause or partition of the node that led when it started,
//!   from its start to the first write another node acknowledged; none if the fault was undone
//!   first.
//! - **One leader per epoch**: every acknowledged write that appended an entry, grouped by its
//!   token's epoch, came from one node.
//!
//! # Examples
//!
//! ```
//! use replikv_check::checker::{lost_writes, Status};
//! use replikv_check::{Call, History, Op, Outcome};
//!
//! let write = Op {
//!     client: 1,
//!     node: "127.0.0.1:6380".to_owned(),
//!     key: "k".to_owned(),
//!     call: Call::Write { value: "a".to_owned() },
//!     start_us: 0,
//!     end_us: 1_000,
//!     outcome: Outcome::Ok { value: None },
//!     token: None,
//! };
//! // Acknowledged, then gone from the only node's final state.
//! let h = History {
//!     ops: vec![write],
//!     faults: Vec::new(),
//!     final_reads: vec![("n1".to_owned(), vec![("k".to_owned(), None)])],
//! };
//! let verdict = lost_writes(&h);
//! assert_eq!(verdict.status, Status::Fail);
//! assert_eq!(verdict.examples[0].ops, vec![0]);
//! ```

mod availability;
mod failover;
mod linearizability;
mod lost_writes;
mod monotonic_reads;
mod one_leader_per_epoch;
mod options;
mod read_your_writes;
mod register;
mod search;
mod stale_reads;
mod verdict;
mod versions;

#[cfg(test)]
mod availability_test;
#[cfg(test)]
mod failover_test;
#[cfg(test)]
mod linearizability_prop_test;
#[cfg(test)]
mod linearizability_test;
#[cfg(test)]
mod lost_writes_test;
#[cfg(test)]
mod one_leader_per_epoch_test;
#[cfg(test)]
mod options_test;
#[cfg(test)]
mod session_test;
#[cfg(test)]
mod stale_reads_test;
#[cfg(test)]
mod testkit;

pub use availability::{availability, Availability, Window};
pub use failover::{failovers, Failovers, LeaderFault, LEADER_FAULT_KINDS};
pub use linearizability::{linearizability, MEMO_BYTES_MAX};
pub use lost_writes::lost_writes;
pub use monotonic_reads::monotonic_reads;
pub use one_leader_per_epoch::one_leader_per_epoch;
pub use options::{check_all, Options};
pub use read_your_writes::read_your_writes;
pub use stale_reads::{stale_reads, Staleness};
pub use verdict::{Example, Status, Verdict, EXAMPLES_MAX};
