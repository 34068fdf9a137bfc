//! The admin HTTP API: `/health`, `/status` (JSON) and `/metrics` (Prometheus text format).
//! It reads only the published counters. With `--fault-injection` (tests only) it also serves
//! `/faults`: `GET` shows the injected faults, `POST` replaces them with a JSON
//! [`FaultSpec`], `DELETE` heals everything; without the flag the path does not exist (404).

use crate::config::FsyncMode;
use crate::faults::FaultSpec;
use crate::repl_state::{ReplStatus, ReplicaView};
use crate::shared::Shared;
use crate::stats::Stats;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// The admin routes; `/faults` only when fault injection is on.
pub fn router(shared: Arc<Shared>) -> Router {
    let router = Router::new()
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/metrics", get(metrics));
    let router = if shared.repl.faults.enabled() {
        router.route(
            "/faults",
            get(faults_get).post(faults_post).delete(faults_delete),
        )
    } else {
        router
    };
    router.with_state(shared)
}

async fn faults_get(State(shared): State<Arc<Shared>>) -> Json<FaultSpec> {
    Json(shared.repl.faults.spec())
}

/// Replaces the faults in force; a body that is not a valid [`FaultSpec`] (bad JSON, an
/// unknown key, a value out of bounds, no JSON content type) is refused with 400 and a message,
/// and changes nothing.
async fn faults_post(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<FaultSpec>, JsonRejection>,
) -> axum::response::Response {
    let spec = match body {
        Ok(Json(spec)) => spec,
        Err(rejection) => {
            let why = format!("bad fault setting: {}\n", rejection.body_text());
            return (StatusCode::BAD_REQUEST, why).into_response();
        }
    };
    if let Err(e) = shared.repl.faults.set(spec.clone()) {
        return (StatusCode::BAD_REQUEST, format!("bad fault setting: {e}\n")).into_response();
    }
    tracing::warn!(faults = %serde_json::to_string(&spec).unwrap_or_default(), "fault injection: faults set");
    Json(spec).into_response()
}

async fn faults_delete(State(shared): State<Arc<Shared>>) -> Json<FaultSpec> {
    shared.repl.faults.heal();
    tracing::warn!("fault injection: every fault healed");
    Json(shared.repl.faults.spec())
}

async fn health(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    match shared.stats.fatal() {
        None => (StatusCode::OK, "ok\n".to_string()),
        Some(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("failed: {e}\n")),
    }
}

async fn status(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let s = &shared.stats;
    let repl = shared.repl.status();
    let get = Stats::get;
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "run_id": shared.run_id,
        "role": if repl.upstream.is_none() { "leader" } else { "replica" },
        "uptime_seconds": shared.started.elapsed().as_secs(),
        "healthy": s.fatal().is_none(),
        "fatal": s.fatal(),
        "ports": { "client": shared.config.port, "admin": shared.config.admin_port },
        "fault_injection": shared.config.fault_injection,
        "log": {
            "epoch": get(&s.epoch),
            "applied_lsn": get(&s.applied_lsn),
            "written_lsn": get(&s.written_lsn),
            "durable_lsn": get(&s.durable_lsn),
            "fsync": match shared.config.fsync { FsyncMode::Always => "always", FsyncMode::Interval => "interval" },
            "fsyncs": get(&s.wal_fsyncs),
            "records": get(&s.wal_records),
            "recovered_records": get(&s.recovered_records),
            "torn_tails_truncated": get(&s.torn_tails_truncated),
            "entries_truncated": get(&s.entries_truncated),
        },
        "snapshot": {
            "last_lsn": get(&s.last_snapshot_lsn),
            "last_unix": get(&s.last_save_unix),
            "in_progress": s.bgsave_in_progress.load(Relaxed),
            "last_ok": s.last_save_ok.load(Relaxed),
            "entries_since": get(&s.changes_since_last_save),
        },
        "keyspace": { "keys": get(&s.keys), "expires": get(&s.expires), "bytes": get(&s.dataset_bytes) },
        "clients": { "connected": get(&s.connected_clients), "max": shared.config.maxclients },
        "replication": replication_json(&shared, &repl),
        "control": control_json(&shared),
    }))
}

/// The control plane's state as this node sees it: `null` without one.
fn control_json(shared: &Shared) -> serde_json::Value {
    if !shared.config.control_plane() {
        return serde_json::Value::Null;
    }
    let map = shared.repl.map.borrow().clone();
    let p = shared.repl.positions();
    serde_json::json!({
        "voters": shared.config.control_peers.iter().map(|(id, addr)| serde_json::json!({
            "id": id, "addr": addr.to_string(),
        })).collect::<Vec<_>>(),
        "lease_ms": shared.config.lease_ms,
        "lease_margin_ms": shared.config.lease_margin_ms,
        "map": map.map(|m| serde_json::json!({
            "version": m.version,
            "leader": m.leader,
            "epoch": m.epoch.0,
            "in_sync": m.in_sync,
            "unclean_failover": m.unclean_failover,
            "members": m.members.iter().map(|(id, mem)| serde_json::json!({
                "id": id, "addr": mem.addr, "voter": mem.voter, "upstream": mem.upstream,
            })).collect::<Vec<_>>(),
        })),
        "leads": p.leader,
    })
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let s = &shared.stats;
    let get = Stats::get;
    let rows: &[(&str, &str, &str, u64)] = &[
        (
            "replikv_up",
            "gauge",
            "1 while the node accepts writes.",
            u64::from(s.fatal().is_none()),
        ),
        (
            "replikv_uptime_seconds",
            "gauge",
            "Seconds since start.",
            shared.started.elapsed().as_secs(),
        ),
        (
            "replikv_connected_clients",
            "gauge",
            "Open client connections.",
            get(&s.connected_clients),
        ),
        (
            "replikv_connections_total",
            "counter",
            "Client connections accepted.",
            get(&s.total_connections_received),
        ),
        (
            "replikv_rejected_connections_total",
            "counter",
            "Connections refused at maxclients.",
            get(&s.rejected_connections),
        ),
        (
            "replikv_commands_total",
            "counter",
            "Client commands processed.",
            get(&s.total_commands_processed),
        ),
        (
            "replikv_error_replies_total",
            "counter",
            "Error replies sent.",
            get(&s.total_error_replies),
        ),
        (
            "replikv_protocol_errors_total",
            "counter",
            "Connections closed for protocol errors.",
            get(&s.protocol_errors),
        ),
        (
            "replikv_net_input_bytes_total",
            "counter",
            "Bytes read from clients.",
            get(&s.total_net_input_bytes),
        ),
        (
            "replikv_net_output_bytes_total",
            "counter",
            "Bytes written to clients.",
            get(&s.total_net_output_bytes),
        ),
        ("replikv_keys", "gauge", "Keys held.", get(&s.keys)),
        (
            "replikv_keys_with_ttl",
            "gauge",
            "Keys with a TTL.",
            get(&s.expires),
        ),
        (
            "replikv_dataset_bytes",
            "gauge",
            "Approximate bytes of keys and values.",
            get(&s.dataset_bytes),
        ),
        (
            "replikv_expired_keys_total",
            "counter",
            "Keys removed by expiry.",
            get(&s.expired_keys),
        ),
        ("replikv_epoch", "gauge", "Current epoch.", get(&s.epoch)),
        (
            "replikv_applied_lsn",
            "gauge",
            "Last LSN applied.",
            get(&s.applied_lsn),
        ),
        (
            "replikv_written_lsn",
            "gauge",
            "Last LSN written to the OS.",
            get(&s.written_lsn),
        ),
        (
            "replikv_durable_lsn",
            "gauge",
            "Last LSN fsynced.",
            get(&s.durable_lsn),
        ),
        (
            "replikv_wal_fsyncs_total",
            "counter",
            "fsyncs of the write-ahead log.",
            get(&s.wal_fsyncs),
        ),
        (
            "replikv_wal_records_total",
            "counter",
            "Records written to the write-ahead log.",
            get(&s.wal_records),
        ),
        (
            "replikv_snapshots_total",
            "counter",
            "Snapshots written.",
            get(&s.snapshots_total),
        ),
        (
            "replikv_snapshot_lsn",
            "gauge",
            "LSN of the newest snapshot.",
            get(&s.last_snapshot_lsn),
        ),
        (
            "replikv_entries_since_snapshot",
            "gauge",
            "Log entries since the newest snapshot.",
            get(&s.changes_since_last_save),
        ),
        (
            "replikv_recovered_records",
            "gauge",
            "Log records replayed at start.",
            get(&s.recovered_records),
        ),
        (
            "replikv_torn_tails_truncated",
            "gauge",
            "Torn log tails truncated at start.",
            get(&s.torn_tails_truncated),
        ),
        (
            "replikv_log_entries_truncated_total",
            "counter",
            "Log entries discarded by cutting this node's log back to the last entry it shared with a new leader.",
            get(&s.entries_truncated),
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in rows {
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    }
    replication_metrics(&shared, &mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

fn replication_json(shared: &Shared, st: &ReplStatus) -> serde_json::Value {
    serde_json::json!({
        "node_id": shared.repl.node_id,
        "upstream": st.upstream.as_ref().map(ToString::to_string),
        "upstream_node_id": st.upstream_id,
        "link_up": st.link_up,
        "syncing": st.syncing,
        "history": format!("{:016x}", st.history),
        "epoch": st.epoch.0,
        "applied": st.applied.to_string(),
        "durable_lsn": st.durable.0,
        "commit_lsn": st.commit.0,
        "ack_mode": shared.config.ack.to_string(),
        "staleness_ms": st.staleness_ms,
        "parked_writes": st.parked_writes,
        "writes_failed_no_replicas": st.writes_failed_no_replicas,
        "events": shared.repl.events.lock().map(|e| e.recent.iter().map(|ev| serde_json::json!({
            "at_ms": ev.at_ms,
            "kind": ev.kind,
            "epoch": ev.epoch.0,
            "detail": ev.detail,
        })).collect::<Vec<_>>()).unwrap_or_default(),
        "replicas": st.replicas.iter().map(|r| serde_json::json!({
            "node_id": r.id,
            "addr": r.addr,
            "via": r.via,
            "connected": r.connected,
            "in_sync": r.in_sync,
            "durable_lsn": r.durable.0,
            "applied_lsn": r.applied.0,
            "lag_entries": r.lag_entries,
            "lag_ms": r.lag_ms,
        })).collect::<Vec<_>>(),
    })
}

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Reads one figure of a replica.
type ReplicaFigure = fn(&ReplicaView) -> u64;

fn replication_metrics(shared: &Shared, out: &mut String) {
    let st = shared.repl.status();
    let scalar: &[(&str, &str, &str, u64)] = &[
        (
            "replikv_is_leader",
            "gauge",
            "1 when this node takes writes.",
            u64::from(st.upstream.is_none()),
        ),
        (
            "replikv_upstream_link_up",
            "gauge",
            "1 when the link to the upstream is up (replicas).",
            u64::from(st.link_up),
        ),
        (
            "replikv_commit_lsn",
            "gauge",
            "Commit LSN under the default acknowledgement mode.",
            st.commit.0,
        ),
        (
            "replikv_in_sync_replicas",
            "gauge",
            "Replicas in the in-sync set.",
            st.replicas.iter().filter(|r| r.in_sync).count() as u64,
        ),
        (
            "replikv_parked_writes",
            "gauge",
            "Writes waiting for enough in-sync replicas.",
            st.parked_writes,
        ),
        (
            "replikv_writes_failed_no_replicas_total",
            "counter",
            "Writes failed for want of replicas.",
            st.writes_failed_no_replicas,
        ),
        (
            "replikv_staleness_ms",
            "gauge",
            "How far this node lags its leader (0 on a leader; absent when unknown).",
            st.staleness_ms.unwrap_or(0),
        ),
    ];
    for (name, kind, help, value) in scalar {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    }
    let _ = write!(
        out,
        "# HELP replikv_replication_events_total Role changes, full resyncs and switchovers, by kind.\n# TYPE replikv_replication_events_total counter\n"
    );
    if let Ok(events) = shared.repl.events.lock() {
        for (kind, n) in &events.counts {
            let _ = writeln!(
                out,
                "replikv_replication_events_total{{kind=\"{kind}\"}} {n}"
            );
        }
    }
    let per: &[(&str, &str, ReplicaFigure)] = &[
        (
            "replikv_replica_lag_entries",
            "Entries a replica lacks.",
            |r| r.lag_entries,
        ),
        (
            "replikv_replica_lag_ms",
            "Age of the oldest entry a replica lacks, ms.",
            |r| r.lag_ms,
        ),
        (
            "replikv_replica_durable_lsn",
            "Durable LSN a replica reported.",
            |r| r.durable.0,
        ),
        (
            "replikv_replica_in_sync",
            "1 when a replica is in the in-sync set.",
            |r| u64::from(r.in_sync),
        ),
    ];
    for (name, help, value) in per {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n");
        for r in &st.replicas {
            let _ = writeln!(
                out,
                "{name}{{replica=\"{}\",addr=\"{}\",via=\"{}\"}} {}",
                label(&r.id),
                label(&r.addr),
                label(r.via.as_deref().unwrap_or("")),
                value(r)
            );
        }
    }
}
