//! replikv's verification harness, in the manner of Jepsen: run a workload against a cluster
//! while injecting faults, record every operation, and check the history for lost
//! acknowledged writes, linearizability violations, session-guarantee violations and
//! unavailability.
//!
//! - [`history`]: the recorded history: operations with their call, outcome, times, client
//!   and node.
//! - [`checker`]: the checkers over a history: lost writes, linearizability per key,
//!   read-your-writes, monotonic reads, stale reads, availability, and with automatic
//!   failover, failover time and one leader per epoch.
//! - [`run`]: `replikv check`: start a cluster (or use running nodes), run the workload under
//!   the nemesis, read everything back, check, report.
//! - [`workload`]: the concurrent clients and what they record; [`resp`]: their RESP client;
//!   [`endpoints`]: the nodes they talk to and, with automatic failover, how they find the
//!   leader.
//! - [`nemesis`]: fault injection (kill -9, pause, partition) on a [`launcher`] cluster.
//! - [`report`] and [`timeline`]: the terminal table, `report.json`, `timeline.svg`.
//! - [`sim`]: `replikv sim`, a deterministic simulator that drives the real replication state
//!   machines over a simulated network, clock and disk, one seed per run.
//!
//! ```sh
//! replikv check --nodes 3 --mode sync --nemesis kill,pause,partition --duration 30s
//! replikv check --nodes 3 --mode sync --failover auto --duration 60s
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod checker;
pub mod endpoints;
pub mod history;
pub mod launcher;
pub mod nemesis;
pub mod report;
pub mod resp;
pub mod rng;
pub mod run;
pub mod sim;
pub mod timeline;
pub mod workload;

pub use history::{Call, FaultEvent, History, Op, OpId, Outcome, Value};
