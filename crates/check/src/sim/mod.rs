//! A deterministic simulator for single-leader replication.
//!
//! It drives several real [`Machine`](replikv_core::replication::Machine)s, the state machine
//! the server's node task drives, over a simulated network, clock and disk. One seed decides
//! everything random (message delays, fsync times, faults, client choices), there is no wall
//! clock, no thread and no hash-map iteration, so a seed reproduces its run bit for bit; the
//! report's `trace_digest` hashes every event processed, to compare two runs.
//!
//! - [`config`]: [`SimConfig`] (nodes, mode, durations, faults, planted bugs, which
//!   properties only report) and [`SimReport`].
//! - `world`: the cluster and its event loop; `links`: the peer protocol (fetch, snapshot,
//!   entries, heartbeats, acks, silence timeouts); `workload`: the clients; `nemesis`: crashes,
//!   partitions, closed links, delay spikes, pauses, slow nodes and the operator's failover;
//!   `control`: automatic failover, every node's control plane (`Group` and `Controller`) as
//!   the server runs it; `invariants`: the checks; `failover`: the checks and measurements
//!   automatic failover adds; `disk`: the simulated log with its fsync and crash rules;
//!   `digest`: FNV-1a.
//! - [`cli`]: `replikv sim`.
//!
//! What it checks, and how a failing seed is replayed, is in `docs/design/simulator.md`.
//!
//! ```
//! use replikv_check::sim::{run, SimConfig};
//! use replikv_core::AckMode;
//!
//! let mut config = SimConfig::new(AckMode::Sync);
//! config.duration_ms = 2_000;
//! let report = run(7, &config);
//! assert_eq!(report.trace_digest, run(7, &config).trace_digest);
//! ```

pub mod cli;
pub mod config;
mod control;
mod digest;
mod disk;
mod event;
mod failover;
mod invariants;
mod links;
mod nemesis;
mod workload;
mod world;

#[cfg(test)]
mod sim_test;

pub use config::{
    AutoStats, ControlBug, ControlTimings, Failover, Faults, Properties, Property, SimConfig,
    SimReport, Violation,
};

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs one simulation of `config` from `seed`. A panic inside (a broken assertion in the
/// replication code or the simulator) becomes a [`Property::Progress`] violation.
#[must_use]
pub fn run(seed: u64, config: &SimConfig) -> SimReport {
    let failed = |what: String| SimReport {
        seed,
        mode: config.mode.to_string(),
        violations: vec![Violation {
            at_ms: 0,
            property: Property::Progress,
            what,
        }],
        ..SimReport::default()
    };
    if let Err(e) = config.validate() {
        return failed(e);
    }
    let config = *config;
    match catch_unwind(AssertUnwindSafe(move || {
        world::World::new(seed, config).run()
    })) {
        Ok(report) => report,
        Err(panic) => failed(format!("panicked: {}", panic_message(panic.as_ref()))),
    }
}

/// The message a panic carried.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_else(|| "a panic".to_string())
}
