//! `REPLIKV`: replikv's own connection commands, for what Redis lacks.
//!
//! - `REPLIKV ACK [async|semi-sync:K|sync|quorum|default]`: this connection's acknowledgement
//!   mode for its writes (no argument: the mode in force).
//! - `REPLIKV TOKEN`: the position (`EPOCH:LSN`) the last data reply reflected: a consistency
//!   token to pass to a replica.
//! - `REPLIKV AFTER <token>|NONE`: read-your-writes: reads on this connection wait until the
//!   node has applied the token's position.
//! - `REPLIKV MONOTONIC ON|OFF`: monotonic reads: never a reply older than one already seen.
//! - `REPLIKV STALENESS <ms>|OFF`: bounded staleness: refuse reads when the node lags its
//!   leader by more.
//! - `REPLIKV POSITION`: this node's applied position, durable LSN and role.

use crate::conn::Conn;
use crate::shared::Shared;
use bytes::Bytes;
use replikv_core::replication::parse_token;
use replikv_core::{AckMode, LogPosition};
use replikv_proto::Frame;

fn err(text: impl Into<String>) -> Frame {
    Frame::Error(text.into())
}

fn ok() -> Frame {
    Frame::Simple("OK".into())
}

fn on_off(arg: &[u8]) -> Option<bool> {
    if arg.eq_ignore_ascii_case(b"on") {
        Some(true)
    } else if arg.eq_ignore_ascii_case(b"off") {
        Some(false)
    } else {
        None
    }
}

/// Runs `REPLIKV <args>` (the subcommand first).
pub fn run(conn: &mut Conn, shared: &Shared, args: &[Bytes]) -> Frame {
    let Some(sub) = args.first() else {
        return err("ERR wrong number of arguments for 'replikv' command");
    };
    let sub = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let rest = &args[1..];
    let syntax = || {
        err(format!(
            "ERR syntax error in REPLIKV {}: see REPLIKV HELP",
            sub.to_uppercase()
        ))
    };
    match (sub.as_str(), rest) {
        ("ack", []) => Frame::Bulk(conn.ack.unwrap_or(shared.config.ack).to_string().into()),
        ("ack", [mode]) => {
            if mode.eq_ignore_ascii_case(b"default") {
                conn.ack = None;
                return ok();
            }
            match String::from_utf8_lossy(mode).parse::<AckMode>() {
                Ok(m) => {
                    conn.ack = Some(m);
                    ok()
                }
                Err(e) => err(format!("ERR {e}")),
            }
        }
        ("ack", [k, n]) if k.eq_ignore_ascii_case(b"semi-sync") => {
            match format!("semi-sync:{}", String::from_utf8_lossy(n)).parse::<AckMode>() {
                Ok(m) => {
                    conn.ack = Some(m);
                    ok()
                }
                Err(e) => err(format!("ERR {e}")),
            }
        }
        ("token", []) => Frame::Bulk(conn.last_pos.to_string().into()),
        ("after", [token]) => {
            if token.eq_ignore_ascii_case(b"none") {
                conn.session.after = LogPosition::default();
                return ok();
            }
            match parse_token(token) {
                Ok(pos) => {
                    conn.session.after = pos;
                    ok()
                }
                Err(e) => err(format!("ERR {e}")),
            }
        }
        ("monotonic", [flag]) => match on_off(flag) {
            Some(on) => {
                conn.session.monotonic = on;
                ok()
            }
            None => syntax(),
        },
        ("staleness", [bound]) => {
            if bound.eq_ignore_ascii_case(b"off") {
                conn.session.max_staleness_ms = None;
                return ok();
            }
            match std::str::from_utf8(bound)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
            {
                Some(ms) => {
                    conn.session.max_staleness_ms = Some(ms);
                    ok()
                }
                None => err("ERR staleness bound must be a number of milliseconds or OFF"),
            }
        }
        ("position", []) => {
            let p = shared.repl.positions();
            Frame::Array(vec![
                Frame::Bulk(p.applied.to_string().into()),
                Frame::Integer(p.durable.0 as i64),
                Frame::Bulk(if p.leader { "leader" } else { "replica" }.into()),
            ])
        }
        ("help", []) => Frame::Array(
            [
                "REPLIKV ACK [async|semi-sync:K|sync|quorum|default]",
                "    Acknowledgement mode of this connection's writes.",
                "REPLIKV TOKEN",
                "    Position (EPOCH:LSN) the last reply reflected.",
                "REPLIKV AFTER <token>|NONE",
                "    Reads wait until this node has applied the token (read-your-writes).",
                "REPLIKV MONOTONIC ON|OFF",
                "    Reads never go back to an older position than one seen.",
                "REPLIKV STALENESS <ms>|OFF",
                "    Refuse reads when this node lags its leader by more.",
                "REPLIKV POSITION",
                "    This node's applied position, durable LSN and role.",
            ]
            .iter()
            .map(|l| Frame::Simple((*l).into()))
            .collect(),
        ),
        ("ack" | "token" | "after" | "monotonic" | "staleness" | "position" | "help", _) => {
            syntax()
        }
        _ => err(format!("ERR unknown subcommand '{sub}'. Try REPLIKV HELP.")),
    }
}
