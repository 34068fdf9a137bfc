//! `INFO` and `CONFIG GET` text, in Redis's formats, from the published counters.

use crate::config::{Config, FsyncMode};
use crate::shared::Shared;
use crate::stats::Stats;
use bytes::Bytes;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

/// The Redis version whose commands and replies replikv follows; reported as `redis_version`
/// and by `HELLO`, since client libraries decide what to send by it.
pub const REDIS_COMPAT_VERSION: &str = "7.0.0";

const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "keyspace",
];

/// Renders `INFO [section ...]`: no argument, `default`, `all` and `everything` give every
/// section; unknown sections are skipped, as Redis does.
pub fn render(shared: &Shared, args: &[Bytes]) -> String {
    let wanted: Vec<String> = args
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let all = wanted.is_empty()
        || wanted
            .iter()
            .any(|w| matches!(w.as_str(), "default" | "all" | "everything"));
    let mut out = String::new();
    for section in SECTIONS {
        if !all && !wanted.iter().any(|w| w == section) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        section_text(shared, section, &mut out);
    }
    out
}

fn section_text(shared: &Shared, section: &str, out: &mut String) {
    let s = &shared.stats;
    let c = &shared.config;
    let get = Stats::get;
    // Writing to a String cannot fail.
    let _ = match section {
        "server" => write!(
            out,
            "# Server\r\nredis_version:{}\r\nreplikv_version:{}\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:64\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\nexecutable:replikv\r\n",
            REDIS_COMPAT_VERSION,
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            std::process::id(),
            shared.run_id,
            c.port,
            shared.started.elapsed().as_secs(),
            shared.started.elapsed().as_secs() / 86400,
        ),
        "clients" => write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:0\r\n",
            get(&s.connected_clients),
            c.maxclients
        ),
        "memory" => {
            let used = get(&s.dataset_bytes);
            write!(
                out,
                "# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\nused_memory_dataset:{used}\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\n",
                human(used)
            )
        }
        "persistence" => {
            let fsync = match c.fsync {
                FsyncMode::Always => "always",
                FsyncMode::Interval => "everysec",
            };
            write!(
                out,
                "# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:{}\r\nrdb_bgsave_in_progress:{}\r\nrdb_last_save_time:{}\r\nrdb_last_bgsave_status:{}\r\naof_enabled:1\r\naof_rewrite_in_progress:0\r\naof_last_write_status:{}\r\naof_fsync:{fsync}\r\nwal_fsync_interval_ms:{}\r\nwal_applied_lsn:{}\r\nwal_written_lsn:{}\r\nwal_durable_lsn:{}\r\nwal_fsyncs:{}\r\nwal_records:{}\r\nsnapshot_lsn:{}\r\nsnapshots_total:{}\r\nrecovered_records:{}\r\ntorn_tails_truncated:{}\r\n",
                get(&s.changes_since_last_save),
                u8::from(s.bgsave_in_progress.load(Relaxed)),
                get(&s.last_save_unix),
                if s.last_save_ok.load(Relaxed) { "ok" } else { "err" },
                if s.fatal().is_none() { "ok" } else { "err" },
                c.fsync_interval_ms,
                get(&s.applied_lsn),
                get(&s.written_lsn),
                get(&s.durable_lsn),
                get(&s.wal_fsyncs),
                get(&s.wal_records),
                get(&s.last_snapshot_lsn),
                get(&s.snapshots_total),
                get(&s.recovered_records),
                get(&s.torn_tails_truncated),
            )
        }
        "stats" => write!(
            out,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\nrejected_connections:{}\r\nexpired_keys:{}\r\ntotal_error_replies:{}\r\nprotocol_errors:{}\r\n",
            get(&s.total_connections_received),
            get(&s.total_commands_processed),
            get(&s.total_net_input_bytes),
            get(&s.total_net_output_bytes),
            get(&s.rejected_connections),
            get(&s.expired_keys),
            get(&s.total_error_replies),
            get(&s.protocol_errors),
        ),
        "replication" => replication_text(shared, out),
        "cpu" => write!(out, "# CPU\r\n"),
        "keyspace" => {
            let keys = get(&s.keys);
            if keys > 0 {
                write!(
                    out,
                    "# Keyspace\r\ndb0:keys={keys},expires={},avg_ttl=0\r\n",
                    get(&s.expires)
                )
            } else {
                write!(out, "# Keyspace\r\n")
            }
        }
        _ => Ok(()),
    };
}

fn human(bytes: u64) -> String {
    const UNITS: &[&str] = &["B", "K", "M", "G", "T"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.2}{}", UNITS[i])
}

/// Parameters `CONFIG GET` answers, with Redis's names where Redis has the same setting.
pub fn config_params(c: &Config) -> Vec<(String, String)> {
    let fsync = match c.fsync {
        FsyncMode::Always => "always",
        FsyncMode::Interval => "everysec",
    };
    vec![
        ("bind".into(), c.bind.to_string()),
        ("port".into(), c.port.to_string()),
        ("dir".into(), c.data_dir.display().to_string()),
        ("databases".into(), "1".into()),
        ("save".into(), String::new()),
        ("appendonly".into(), "yes".into()),
        ("appendfsync".into(), fsync.into()),
        ("maxclients".into(), c.maxclients.to_string()),
        (
            "proto-max-bulk-len".into(),
            c.proto_max_bulk_len.to_string(),
        ),
        (
            "client-query-buffer-limit".into(),
            c.client_query_buffer_limit.to_string(),
        ),
        (
            "requirepass".into(),
            c.requirepass.clone().unwrap_or_default(),
        ),
        ("maxmemory".into(), "0".into()),
    ]
}

/// `INFO replication` in Redis's layout (offsets are LSNs), with replikv's figures after it:
/// each replica's durable LSN, lag in entries and milliseconds, and whether it is in sync.
fn replication_text(shared: &Shared, out: &mut String) -> std::fmt::Result {
    let st = shared.repl.status();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    out.push_str("# Replication\r\n");
    let direct: Vec<_> = st
        .replicas
        .iter()
        .filter(|r| r.via.is_none() && r.connected)
        .collect();
    match &st.upstream {
        None => writeln_crlf(out, "role:master")?,
        Some(up) => {
            writeln_crlf(out, "role:slave")?;
            write!(
                out,
                "master_host:{}\r\nmaster_port:{}\r\n",
                up.host, up.port
            )?;
            let status = if st.link_up { "up" } else { "down" };
            write!(
                out,
                "master_link_status:{status}\r\nmaster_last_io_seconds_ago:{}\r\nmaster_sync_in_progress:{}\r\nslave_read_repl_offset:{}\r\nslave_repl_offset:{}\r\nslave_priority:100\r\nslave_read_only:1\r\nreplica_announced:1\r\n",
                if st.last_upstream_io_ms == 0 { -1 } else { (now.saturating_sub(st.last_upstream_io_ms) / 1000) as i64 },
                u8::from(st.syncing),
                st.applied.lsn.0,
                st.durable.0,
            )?;
            if let Some(id) = &st.upstream_id {
                write!(out, "master_node_id:{id}\r\n")?;
            }
            match st.staleness_ms {
                Some(ms) => write!(out, "staleness_ms:{ms}\r\n")?,
                None => write!(out, "staleness_ms:-1\r\n")?,
            }
        }
    }
    write!(out, "connected_slaves:{}\r\n", direct.len())?;
    for (i, r) in direct.iter().enumerate() {
        let (ip, port) = r.addr.rsplit_once(':').unwrap_or((r.addr.as_str(), "0"));
        write!(
            out,
            "slave{i}:ip={},port={port},state=online,offset={},lag={},node_id={},applied={},lag_entries={},lag_ms={},in_sync={}\r\n",
            ip.trim_start_matches('[').trim_end_matches(']'),
            r.durable.0,
            r.lag_ms / 1000,
            r.id,
            r.applied.0,
            r.lag_entries,
            r.lag_ms,
            u8::from(r.in_sync),
        )?;
    }
    let further: Vec<_> = st.replicas.iter().filter(|r| r.via.is_some()).collect();
    write!(out, "cascaded_replicas:{}\r\n", further.len())?;
    for (i, r) in further.iter().enumerate() {
        write!(
            out,
            "cascaded{i}:node_id={},addr={},via={},offset={},lag_entries={},lag_ms={}\r\n",
            r.id,
            r.addr,
            r.via.as_deref().unwrap_or(""),
            r.durable.0,
            r.lag_entries,
            r.lag_ms,
        )?;
    }
    write!(
        out,
        "master_failover_state:{}\r\nmaster_replid:{:040x}\r\nmaster_replid2:0000000000000000000000000000000000000000\r\nmaster_repl_offset:{}\r\nsecond_repl_offset:-1\r\nrepl_backlog_active:1\r\nrepl_backlog_size:{}\r\nrepl_backlog_first_byte_offset:0\r\nrepl_backlog_histlen:0\r\nepoch:{}\r\nnode_id:{}\r\nack_mode:{}\r\ndurable_lsn:{}\r\ncommit_lsn:{}\r\nin_sync_replicas:{}\r\nparked_writes:{}\r\nwrites_failed_no_replicas:{}\r\n",
        if st.failover_state.is_empty() {
            "no-failover"
        } else {
            st.failover_state
        },
        st.history,
        st.applied.lsn.0,
        shared.config.wal_retention_bytes,
        st.epoch,
        shared.repl.node_id,
        shared.config.ack,
        st.durable.0,
        st.commit.0,
        st.replicas.iter().filter(|r| r.in_sync).count(),
        st.parked_writes,
        st.writes_failed_no_replicas,
    )
}

fn writeln_crlf(out: &mut String, line: &str) -> std::fmt::Result {
    write!(out, "{line}\r\n")
}
