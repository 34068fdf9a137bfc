//! Redis Sentinel's discovery commands, answered by every node for its own cluster (named by
//! `--cluster-name`), so Sentinel-aware clients find the leader without change: point them
//! at any nodes as if they were sentinels.
//!
//! - `SENTINEL get-master-addr-by-name NAME`: the leader's address.
//! - `SENTINEL masters` / `SENTINEL master NAME`: the leader's state, in Sentinel's fields.
//! - `SENTINEL replicas NAME` (or `slaves`): the replicas this node knows of (on the leader:
//!   all of them, cascaded ones too; on a replica: the ones below it).
//! - `SENTINEL sentinels NAME`: none (no separate sentinels).
//! - `SENTINEL myid`: this node's id.
//!
//! Under the control plane the leader is the one the node's copy of the cluster map names (nil
//! while it names none). Without it, the leader is the node itself when it leads, else its
//! upstream. A replica whose link to its upstream
//! is down reports it with the `s_down` flag, as a sentinel would, so clients do not take it.

use crate::conn::Conn;
use crate::shared::Shared;
use bytes::Bytes;
use replikv_proto::Frame;

fn bulk(s: impl Into<Bytes>) -> Frame {
    Frame::Bulk(s.into())
}

fn field(name: &'static str, value: impl Into<Bytes>) -> (Frame, Frame) {
    (bulk(name), bulk(value))
}

/// `SENTINEL …` (`args` after the command name).
pub fn run(conn: &Conn, shared: &Shared, args: &[Bytes]) -> Frame {
    let sub = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let name_ok = |i: usize| {
        args.get(i)
            .is_some_and(|n| n.as_ref() == shared.config.cluster_name.as_bytes())
    };
    let want = |n: usize| args.len() == n;
    match sub.as_str() {
        "get-master-addr-by-name" if want(2) => {
            if !name_ok(1) {
                return Frame::Null;
            }
            match leader(conn, shared) {
                Some((ip, port, _)) => Frame::Array(vec![bulk(ip), bulk(port.to_string())]),
                None => Frame::Null,
            }
        }
        "masters" if want(1) => Frame::Array(vec![master_state(conn, shared)]),
        "master" if want(2) => {
            if name_ok(1) {
                master_state(conn, shared)
            } else {
                Frame::Error("ERR No such master with that name".into())
            }
        }
        "replicas" | "slaves" if want(2) => {
            if name_ok(1) {
                replicas(conn, shared)
            } else {
                Frame::Error("ERR No such master with that name".into())
            }
        }
        "sentinels" if want(2) => {
            if name_ok(1) {
                Frame::Array(Vec::new())
            } else {
                Frame::Error("ERR No such master with that name".into())
            }
        }
        "myid" if want(1) => bulk(shared.repl.node_id.clone()),
        "get-master-addr-by-name"
        | "masters"
        | "master"
        | "replicas"
        | "slaves"
        | "sentinels"
        | "myid" => Frame::Error(format!(
            "ERR wrong number of arguments for 'sentinel|{sub}' command"
        )),
        _ => Frame::Error(format!(
            "ERR unknown subcommand '{}'. Try SENTINEL HELP.",
            String::from_utf8_lossy(&args[0])
        )),
    }
}

/// The leader's address, and whether it is reachable as far as this node knows: the map's
/// leader under the control plane; otherwise this node when it leads (by the address the
/// client reached), else its upstream.
fn leader(conn: &Conn, shared: &Shared) -> Option<(String, u16, bool)> {
    let own = || {
        let bind = shared.config.bind;
        let ip = if bind.is_unspecified() {
            conn.local_ip.unwrap_or(bind)
        } else {
            bind
        };
        (ip.to_string(), shared.config.port, true)
    };
    if shared.config.control_plane() {
        let map = shared.repl.map.borrow().clone()?;
        let id = map.leader.as_deref()?;
        if id == shared.repl.node_id {
            // A node restarted from a map that still names it does not lead in that epoch
            // (it may have lost a tail its followers hold): it knows no leader until the
            // controller elects one, rather than send clients to itself.
            let p = shared.repl.positions();
            return (p.leader && p.epoch == map.epoch).then(own);
        }
        let up = crate::control::member_addr(&map, id)?;
        return Some((up.host, up.port, true));
    }
    let status = shared.repl.status();
    match &status.upstream {
        None => Some(own()),
        Some(up) => Some((up.host.clone(), up.port, status.link_up)),
    }
}

fn master_state(conn: &Conn, shared: &Shared) -> Frame {
    let Some((ip, port, reachable)) = leader(conn, shared) else {
        return Frame::Error("ERR the cluster has no leader yet".into());
    };
    let status = shared.repl.status();
    let replicas = status.replicas.iter().filter(|r| r.connected).count();
    let flags = if reachable { "master" } else { "master,s_down" };
    Frame::Map(vec![
        field("name", shared.config.cluster_name.clone()),
        field("ip", ip),
        field("port", port.to_string()),
        field("runid", shared.repl.node_id.clone()),
        field("flags", flags),
        field("link-pending-commands", "0"),
        field("link-refcount", "1"),
        field("last-ping-sent", "0"),
        field("last-ok-ping-reply", "0"),
        field("last-ping-reply", "0"),
        field("down-after-milliseconds", "30000"),
        field("info-refresh", "0"),
        field("role-reported", "master"),
        field("role-reported-time", "0"),
        field("config-epoch", status.epoch.0.to_string()),
        field("num-slaves", replicas.to_string()),
        field("num-other-sentinels", "0"),
        field("quorum", "1"),
        field("failover-timeout", "180000"),
        field("parallel-syncs", "1"),
    ])
}

/// The replicas this node serves: their master is this node.
fn replicas(conn: &Conn, shared: &Shared) -> Frame {
    let status = shared.repl.status();
    let bind = shared.config.bind;
    let master_host = if bind.is_unspecified() {
        conn.local_ip.unwrap_or(bind).to_string()
    } else {
        bind.to_string()
    };
    let master_port = shared.config.port;
    let list = status
        .replicas
        .iter()
        .map(|r| {
            let (ip, port) = r.addr.rsplit_once(':').unwrap_or((r.addr.as_str(), "0"));
            let ip = ip.trim_start_matches('[').trim_end_matches(']').to_string();
            let flags = if r.connected { "slave" } else { "slave,s_down" };
            Frame::Map(vec![
                field("name", r.addr.clone()),
                field("ip", ip),
                field("port", port.to_string()),
                field("runid", r.id.clone()),
                field("flags", flags),
                field("role-reported", "slave"),
                field("master-link-status", if r.connected { "ok" } else { "err" }),
                field("master-host", master_host.clone()),
                field("master-port", master_port.to_string()),
                field("slave-priority", "100"),
                field("slave-repl-offset", r.applied.0.to_string()),
            ])
        })
        .collect();
    Frame::Array(list)
}
