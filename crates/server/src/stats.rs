//! Counters and gauges published by the node for `INFO`, `/status` and `/metrics`.
//!
//! Connection tasks bump client counters; the node task publishes its positions and keyspace
//! figures after every batch. Readers never reach into the node's state.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Figures shared between the node, its connections and the admin API.
#[derive(Debug, Default)]
pub struct Stats {
    /// Open client connections.
    pub connected_clients: AtomicU64,
    /// Connections accepted since start.
    pub total_connections_received: AtomicU64,
    /// Connections refused because `maxclients` was reached.
    pub rejected_connections: AtomicU64,
    /// Client commands processed.
    pub total_commands_processed: AtomicU64,
    /// Client commands that got an error reply.
    pub total_error_replies: AtomicU64,
    /// Bytes read from clients.
    pub total_net_input_bytes: AtomicU64,
    /// Bytes written to clients.
    pub total_net_output_bytes: AtomicU64,
    /// Protocol errors that closed a connection.
    pub protocol_errors: AtomicU64,
    /// Keys held.
    pub keys: AtomicU64,
    /// Keys with a TTL.
    pub expires: AtomicU64,
    /// Approximate bytes of keys and values.
    pub dataset_bytes: AtomicU64,
    /// Keys removed by expiry.
    pub expired_keys: AtomicU64,
    /// Current epoch.
    pub epoch: AtomicU64,
    /// Last LSN appended and applied.
    pub applied_lsn: AtomicU64,
    /// Last LSN written to the OS.
    pub written_lsn: AtomicU64,
    /// Last LSN fsynced.
    pub durable_lsn: AtomicU64,
    /// fsyncs of the log.
    pub wal_fsyncs: AtomicU64,
    /// Records written to the log.
    pub wal_records: AtomicU64,
    /// Log entries since the last snapshot.
    pub changes_since_last_save: AtomicU64,
    /// Unix seconds of the last successful snapshot.
    pub last_save_unix: AtomicU64,
    /// LSN of the last successful snapshot.
    pub last_snapshot_lsn: AtomicU64,
    /// A background snapshot is running.
    pub bgsave_in_progress: AtomicBool,
    /// Whether the last snapshot succeeded.
    pub last_save_ok: AtomicBool,
    /// Snapshots taken.
    pub snapshots_total: AtomicU64,
    /// Unix milliseconds at start.
    pub start_unix_ms: AtomicU64,
    /// Torn log tails truncated at start.
    pub torn_tails_truncated: AtomicU64,
    /// Log entries discarded by cutting this replica's log back to the last entry it shared
    /// with a new leader (a deposed leader's tail).
    pub entries_truncated: AtomicU64,
    /// Records replayed from the log at start.
    pub recovered_records: AtomicU64,
    /// Why the node stopped accepting writes, if it did.
    pub fatal: Mutex<Option<String>>,
}

impl Stats {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets a gauge.
    pub fn set(gauge: &AtomicU64, v: u64) {
        gauge.store(v, Ordering::Relaxed);
    }

    /// Zeroes the counters `CONFIG RESETSTAT` resets in Redis (gauges and log positions stay).
    pub fn reset_counters(&self) {
        for counter in [
            &self.total_connections_received,
            &self.rejected_connections,
            &self.total_commands_processed,
            &self.total_error_replies,
            &self.total_net_input_bytes,
            &self.total_net_output_bytes,
            &self.protocol_errors,
            &self.expired_keys,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    /// The fatal error, if the node stopped on one.
    pub fn fatal(&self) -> Option<String> {
        self.fatal.lock().ok().and_then(|g| g.clone())
    }
}
