//! Client connections: read requests, answer connection commands here, send data commands to
//! the node in batches, and write replies back in request order.

use crate::config::{ReplicaReads, ReplicaWrites, Upstream};
use crate::info;
use crate::node::{BatchReply, NodeMsg};
use crate::now_ms;
use crate::shared::Shared;
use crate::socket::{Socket, READ_CHUNK_BYTES};
use crate::stats::Stats;
use bytes::{Bytes, BytesMut};
use replikv_core::replication::{ReadDecision, Session};
use replikv_core::{AckMode, LogPosition, Lsn, Reply, Store};
use replikv_proto::{
    encode_array_header, encode_bulk, encode_error, encode_integer, encode_null, encode_ok,
    encode_simple, Frame, Limits, Protocol, RequestDecoder,
};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tracing::debug;

/// Most requests taken from one connection's buffer before its replies are written; bounds the
/// replies a pipelining client can make the server hold.
const REQUESTS_PER_ROUND_MAX: usize = 1024;
/// Reply bytes waiting for a client past which its further requests are not run until it
/// reads: bounds what a client that never reads can make the server hold.
const OUTPUT_PAUSE_BYTES: usize = 64 << 20;
/// Request bounds before authentication (Redis's values).
const UNAUTHENTICATED_BULK_BYTES_MAX: usize = 16 * 1024;
const UNAUTHENTICATED_MULTIBULK_COUNT_MAX: usize = 10;

/// Per-connection state.
pub struct Conn {
    /// `CLIENT ID`.
    pub id: u64,
    /// `CLIENT SETNAME`.
    pub name: Option<Bytes>,
    /// RESP2 or RESP3 (`HELLO`).
    pub protocol: Protocol,
    /// Passed `AUTH` (or no password is required).
    pub authenticated: bool,
    /// Peer address, for `CLIENT LIST`.
    pub addr: String,
    /// The address of this node the client reached (what `SENTINEL` names this node by).
    pub local_ip: Option<std::net::IpAddr>,
    /// `REPLIKV ACK`: this connection's acknowledgement mode; `None` = the node's default.
    pub ack: Option<AckMode>,
    /// Read guarantees and what this connection has seen.
    pub session: Session,
    /// The position the last data reply reflected (`REPLIKV TOKEN`).
    pub last_pos: LogPosition,
    /// Whether this connection has sent a write (`WAIT` then waits for the node's log).
    pub wrote: bool,
    /// Connection to the upstream for forwarded writes.
    pub forward: Option<crate::forward::Forwarder>,
}

/// A reply, or where it will come from, in request order.
enum Segment {
    Ready(Frame, Protocol),
    Replies(Vec<Reply>, Protocol),
    Batch(oneshot::Receiver<BatchReply>, usize, Protocol),
    Single(oneshot::Receiver<Reply>, Protocol),
}

/// What a connection command decided.
pub enum Local {
    /// Not a connection command: send it to the node.
    Data,
    /// Reply now.
    Reply(Frame),
    /// Reply when the node answers.
    Wait(oneshot::Receiver<Reply>),
    /// Reply, then close the connection (`QUIT`).
    Close(Frame),
}

/// Serves one client until it disconnects, sends something unrecoverable, or the server stops.
pub async fn serve(stream: TcpStream, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    // Disabling Nagle only lowers latency; a failure here changes nothing else.
    let _ = stream.set_nodelay(true);
    let stream = match Socket::new(stream) {
        Ok(s) => s,
        Err(e) => {
            debug!(error = %e, "cannot take over a client socket");
            shared
                .stats
                .connected_clients
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
    };
    let addr = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let local_ip = stream.local_addr().map(|a| a.ip());
    let mut conn = Conn {
        id: shared.next_client_id(),
        name: None,
        protocol: Protocol::Resp2,
        authenticated: shared.config.requirepass.is_none(),
        addr,
        local_ip,
        ack: None,
        session: Session::default(),
        last_pos: LogPosition::default(),
        wrote: false,
        forward: None,
    };
    shared.register(&conn);
    let mut decoder = RequestDecoder::new(request_limits(&shared, conn.authenticated));
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut out = BytesMut::with_capacity(16 * 1024);
    let mut scratch = vec![0u8; READ_CHUNK_BYTES].into_boxed_slice();
    let query_limit = shared.config.client_query_buffer_limit;
    'conn: loop {
        // Run what is buffered while the client keeps up with its replies. A client that
        // writes a whole pipeline before reading any reply is still read from below, so it
        // never deadlocks against its own replies.
        let mut closing = false;
        while out.len() < OUTPUT_PAUSE_BYTES {
            let (segments, end) = read_round(&mut conn, &shared, &mut buf, &mut decoder).await;
            write_replies(&mut conn, segments, &mut out).await;
            if stream.try_write(&mut out).is_err() {
                break 'conn;
            }
            match end {
                RoundEnd::Full => {}
                RoundEnd::NeedMore => break,
                RoundEnd::Close => {
                    closing = true;
                    break;
                }
            }
        }
        if closing {
            // The last replies (an error, QUIT's OK) go out before the close, within a bound.
            let flushed = tokio::time::timeout(LINGER, stream.write_all(&out)).await;
            if matches!(flushed, Ok(Ok(()))) {
                close_gracefully(&stream, &mut scratch).await;
            }
            break;
        }
        tokio::select! {
            read = stream.read_into(&mut buf, &mut scratch), if buf.len() <= query_limit => {
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => Stats::add(&shared.stats.total_net_input_bytes, n as u64),
                }
            }
            written = stream.write_some(&mut out), if !out.is_empty() => {
                if written.is_err() {
                    break;
                }
            }
            _ = shutdown.changed() => break,
        }
        // Checked before parsing, as Redis does: a client may not make us hold more than the
        // limit, complete requests or not.
        if buf.len() > query_limit {
            debug!(
                client = conn.id,
                bytes = buf.len(),
                "closing client over query buffer limit"
            );
            Stats::add(&shared.stats.protocol_errors, 1);
            out.extend_from_slice(b"-ERR Protocol error: client query buffer limit exceeded\r\n");
            // The connection is closed next whether or not the client gets the reason.
            if let Ok(Ok(())) = tokio::time::timeout(LINGER, stream.write_all(&out)).await {
                close_gracefully(&stream, &mut scratch).await;
            }
            break;
        }
    }
    shared.unregister(conn.id);
}

/// Most bytes read and dropped while closing a connection, and for how long.
const LINGER_BYTES_MAX: usize = 8 << 20;
const LINGER: std::time::Duration = std::time::Duration::from_millis(500);

/// Closes our side, then reads and drops what the client is still sending for a short, bounded
/// while, so the kernel does not answer it with a reset that would destroy the error reply we
/// just sent before the client reads it.
async fn close_gracefully(stream: &Socket, scratch: &mut [u8]) {
    stream.shutdown_write();
    let mut sink = BytesMut::new();
    let mut drained = 0;
    // Running out of time just ends the lingering.
    let _ = tokio::time::timeout(LINGER, async {
        while drained < LINGER_BYTES_MAX {
            match stream.read_into(&mut sink, scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
            sink.clear();
        }
    })
    .await;
}

enum RoundEnd {
    /// The buffer holds no complete request.
    NeedMore,
    /// The round stopped at its request bound; more may be waiting.
    Full,
    /// Close after writing the replies.
    Close,
}

async fn read_round(
    conn: &mut Conn,
    shared: &Arc<Shared>,
    buf: &mut BytesMut,
    decoder: &mut RequestDecoder,
) -> (Vec<Segment>, RoundEnd) {
    let mut segments = Vec::new();
    let mut batch: Vec<Vec<Bytes>> = Vec::new();
    let mut count = 0;
    let end = loop {
        if count >= REQUESTS_PER_ROUND_MAX {
            break RoundEnd::Full;
        }
        let args = match decoder.decode(buf) {
            Ok(Some(args)) => args,
            Ok(None) => break RoundEnd::NeedMore,
            Err(e) => {
                Stats::add(&shared.stats.protocol_errors, 1);
                flush_batch(conn, shared, &mut batch, &mut segments).await;
                segments.push(Segment::Ready(
                    Frame::Error(format!("ERR {e}")),
                    conn.protocol,
                ));
                break RoundEnd::Close;
            }
        };
        if args.is_empty() {
            continue;
        }
        count += 1;
        let local = find_local(&args[0]);
        if local.is_some() {
            // Data commands sent before a connection command run first, and are encoded in
            // the protocol in force when they were sent (before a HELLO that changes it).
            flush_batch(conn, shared, &mut batch, &mut segments).await;
        }
        // Commands that report on this connection's replies (`REPLIKV TOKEN`, `WAIT`) see
        // every reply before them.
        if local.is_some_and(|(name, _)| matches!(name, "replikv" | "wait")) {
            settle(conn, &mut segments).await;
        }
        let was_authenticated = conn.authenticated;
        let outcome = local_command(conn, shared, &args, local).await;
        if conn.authenticated && !was_authenticated {
            *decoder = RequestDecoder::new(request_limits(shared, true));
        }
        match outcome {
            Local::Data => {
                let write = Store::command_spec(&args[0]).is_some_and(|s| s.write);
                if write && conn.authenticated {
                    let positions = shared.repl.positions();
                    if !positions.leader && shared.config.replica_writes == ReplicaWrites::Forward {
                        flush_batch(conn, shared, &mut batch, &mut segments).await;
                        let frame = forward_write(conn, shared, &args).await;
                        segments.push(Segment::Ready(frame, conn.protocol));
                        continue;
                    }
                    conn.wrote = true;
                }
                batch.push(args);
            }
            other => {
                flush_batch(conn, shared, &mut batch, &mut segments).await;
                match other {
                    Local::Reply(frame) => {
                        if matches!(frame, Frame::Error(_)) {
                            Stats::add(&shared.stats.total_error_replies, 1);
                        }
                        Stats::add(&shared.stats.total_commands_processed, 1);
                        segments.push(Segment::Ready(frame, conn.protocol));
                    }
                    Local::Wait(rx) => segments.push(Segment::Single(rx, conn.protocol)),
                    Local::Close(frame) => {
                        segments.push(Segment::Ready(frame, conn.protocol));
                        break RoundEnd::Close;
                    }
                    Local::Data => {}
                }
            }
        }
    };
    flush_batch(conn, shared, &mut batch, &mut segments).await;
    (segments, end)
}

async fn flush_batch(
    conn: &mut Conn,
    shared: &Arc<Shared>,
    batch: &mut Vec<Vec<Bytes>>,
    segments: &mut Vec<Segment>,
) {
    if batch.is_empty() {
        return;
    }
    let protocol = conn.protocol;
    let cmds = std::mem::take(batch);
    let n = cmds.len();
    if let Err(frame) = read_gate(conn, shared).await {
        for _ in 0..n {
            segments.push(Segment::Ready(frame.clone(), protocol));
        }
        return;
    }
    let mode = conn.ack.unwrap_or(shared.config.ack);
    match shared.node.batch(cmds, mode).await {
        Some(rx) => segments.push(Segment::Batch(rx, n, protocol)),
        None => {
            for _ in 0..n {
                segments.push(Segment::Ready(node_stopped(), protocol));
            }
        }
    }
}

/// On a replica, holds a batch until the session's guarantees allow it: refuses it on a hot
/// standby or past the staleness bound, and waits (within the read timeout) for the position
/// the session requires.
async fn read_gate(conn: &Conn, shared: &Arc<Shared>) -> Result<(), Frame> {
    let mut positions = shared.repl.positions.subscribe();
    let p = *positions.borrow_and_update();
    if p.leader {
        return Ok(());
    }
    let upstream = shared
        .repl
        .status()
        .upstream
        .map_or_else(|| "unknown".to_string(), |u| u.to_string());
    if shared.config.replica_reads == ReplicaReads::Standby {
        return Err(err(format!(
            "STANDBY this replica is a hot standby and serves no reads; its upstream is {upstream}"
        )));
    }
    let wait_ms = shared.config.read_wait_timeout_ms;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(wait_ms);
    loop {
        let p = *positions.borrow_and_update();
        if p.leader {
            return Ok(());
        }
        let staleness = p.current_as_of_ms.map(|t| now_ms().saturating_sub(t));
        match conn.session.decide(p.applied, staleness) {
            ReadDecision::Serve => return Ok(()),
            ReadDecision::TooStale {
                staleness_ms,
                bound_ms,
            } => {
                let lag = if staleness_ms == u64::MAX {
                    "unknown (never in contact with a leader)".to_string()
                } else {
                    format!("{staleness_ms} ms")
                };
                return Err(err(format!(
                    "STALE this replica lags its leader by {lag}, more than the {bound_ms} ms allowed; read from {upstream}"
                )));
            }
            ReadDecision::Wait { until } => {
                let waited = tokio::time::timeout_at(deadline, positions.changed()).await;
                if !matches!(waited, Ok(Ok(()))) {
                    return Err(err(format!(
                        "TRYAGAIN this replica has applied up to {} and did not reach {until} within {wait_ms} ms; read from {upstream}",
                        p.applied
                    )));
                }
            }
        }
    }
}

/// Sends a write to the upstream and relays its reply; then fetches the write's token so that
/// this connection's next reads here wait for it (read-your-writes).
async fn forward_write(conn: &mut Conn, shared: &Arc<Shared>, args: &[Bytes]) -> Frame {
    let Some(up) = shared.repl.status().upstream else {
        return err("READONLY You can't write against a read only replica.");
    };
    let mode = conn.ack.unwrap_or(shared.config.ack);
    match crate::forward::forward(&mut conn.forward, &up, shared, mode, args).await {
        Ok((frame, token)) => {
            if let Some(pos) = token {
                conn.session.after = conn.session.after.max(pos);
                conn.last_pos = pos;
            }
            frame
        }
        Err(e) => {
            conn.forward = None;
            err(format!(
                "ERR cannot forward the write to the upstream {up}: {e}"
            ))
        }
    }
}

/// What one request may declare. Until a client has authenticated it gets Redis's small
/// bounds, so that a stranger cannot make the server buffer large requests.
fn request_limits(shared: &Shared, authenticated: bool) -> Limits {
    if authenticated {
        Limits {
            bulk_bytes_max: shared.config.proto_max_bulk_len,
            ..Limits::default()
        }
    } else {
        Limits {
            bulk_bytes_max: UNAUTHENTICATED_BULK_BYTES_MAX,
            multibulk_count_max: UNAUTHENTICATED_MULTIBULK_COUNT_MAX,
            ..Limits::default()
        }
    }
}

/// The connection command named `name` (any case) with its arity, if it is one.
fn find_local(name: &[u8]) -> Option<(&'static str, i32)> {
    LOCAL_COMMANDS
        .iter()
        .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
        .copied()
}

/// Whether `argument_count` (name included) satisfies a Redis arity (negative: at least).
fn arity_ok(arity: i32, argument_count: usize) -> bool {
    let n = i64::try_from(argument_count).unwrap_or(i64::MAX);
    let arity = i64::from(arity);
    if arity >= 0 {
        n == arity
    } else {
        n >= -arity
    }
}

fn node_stopped() -> Frame {
    Frame::Error("ERR server is shutting down".into())
}

/// Waits for the node's replies to the batches in `segments`, so the connection's positions
/// reflect them.
async fn settle(conn: &mut Conn, segments: &mut [Segment]) {
    for seg in segments.iter_mut() {
        let Segment::Batch(_, n, p) = seg else {
            continue;
        };
        let (n, p) = (*n, *p);
        let taken = std::mem::replace(seg, Segment::Replies(Vec::new(), p));
        let Segment::Batch(rx, ..) = taken else {
            continue;
        };
        *seg = match rx.await {
            Ok(batch) => {
                conn.last_pos = batch.pos;
                conn.session.observe(batch.pos);
                Segment::Replies(batch.replies, p)
            }
            Err(_) => Segment::Replies(vec![Reply::error("ERR server is shutting down"); n], p),
        };
    }
}

async fn write_replies(conn: &mut Conn, segments: Vec<Segment>, out: &mut BytesMut) {
    for seg in segments {
        match seg {
            Segment::Ready(frame, p) => frame.encode(p, out),
            Segment::Replies(replies, p) => {
                for r in &replies {
                    encode_reply(r, p, out);
                }
            }
            Segment::Batch(rx, n, p) => match rx.await {
                Ok(batch) => {
                    conn.last_pos = batch.pos;
                    conn.session.observe(batch.pos);
                    for r in &batch.replies {
                        encode_reply(r, p, out);
                    }
                }
                Err(_) => {
                    for _ in 0..n {
                        node_stopped().encode(p, out);
                    }
                }
            },
            Segment::Single(rx, p) => match rx.await {
                Ok(r) => encode_reply(&r, p, out),
                Err(_) => node_stopped().encode(p, out),
            },
        }
    }
}

/// Encodes a data command's reply straight into the output buffer.
pub fn encode_reply(reply: &Reply, proto: Protocol, out: &mut BytesMut) {
    match reply {
        Reply::Ok => encode_ok(out),
        Reply::Status(s) => encode_simple(out, s),
        Reply::Integer(n) => encode_integer(out, *n),
        Reply::Bulk(b) => encode_bulk(out, b),
        Reply::Nil => encode_null(proto, out),
        Reply::Array(items) => {
            encode_array_header(out, items.len());
            for item in items {
                encode_reply(item, proto, out);
            }
        }
        Reply::Error(e) => encode_error(out, e),
    }
}

fn lower(name: &[u8]) -> Vec<u8> {
    name.to_ascii_lowercase()
}

fn err(text: impl Into<String>) -> Frame {
    Frame::Error(text.into())
}

fn ok() -> Frame {
    Frame::Simple("OK".into())
}

fn bulk(s: impl Into<Bytes>) -> Frame {
    Frame::Bulk(s.into())
}

/// Connection-level commands and their Redis arity, for `COMMAND` and arity checks.
pub const LOCAL_COMMANDS: &[(&str, i32)] = &[
    ("ping", -1),
    ("echo", 2),
    ("auth", -2),
    ("hello", -1),
    ("client", -2),
    ("select", 2),
    ("quit", -1),
    ("command", -1),
    ("info", -1),
    ("save", 1),
    ("bgsave", -1),
    ("lastsave", 1),
    ("config", -2),
    ("time", 1),
    ("wait", 3),
    ("replicaof", 3),
    ("slaveof", 3),
    ("role", 1),
    ("replikv", -2),
    ("sentinel", -2),
    ("failover", -1),
];

fn wrong_arity(name: &str) -> Frame {
    err(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// Handles a connection command, or says it is a data command.
async fn local_command(
    conn: &mut Conn,
    shared: &Arc<Shared>,
    args: &[Bytes],
    local: Option<(&'static str, i32)>,
) -> Local {
    let name = &args[0];
    let Some((cname, arity)) = local else {
        // As in Redis, an unknown command or a wrong argument count is reported before a
        // missing AUTH; the node answers those.
        if !conn.authenticated {
            let known_with_arity =
                Store::command_spec(name).is_some_and(|spec| arity_ok(spec.arity, args.len()));
            if known_with_arity {
                return Local::Reply(err("NOAUTH Authentication required."));
            }
        }
        return Local::Data;
    };
    if !arity_ok(arity, args.len()) {
        return Local::Reply(wrong_arity(cname));
    }
    if !conn.authenticated && !matches!(cname, "auth" | "hello" | "quit") {
        return Local::Reply(err("NOAUTH Authentication required."));
    }
    match cname {
        "ping" => Local::Reply(match args.len() {
            1 => Frame::Simple("PONG".into()),
            2 => bulk(args[1].clone()),
            _ => wrong_arity("ping"),
        }),
        "echo" => Local::Reply(bulk(args[1].clone())),
        "quit" => Local::Close(ok()),
        "auth" => Local::Reply(auth(conn, shared, &args[1..])),
        "hello" => Local::Reply(hello(conn, shared, &args[1..])),
        "select" => Local::Reply(
            match std::str::from_utf8(&args[1])
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
            {
                Some(0) => ok(),
                Some(_) => err("ERR DB index is out of range"),
                None => err("ERR value is not an integer or out of range"),
            },
        ),
        "client" => Local::Reply(client(conn, shared, &args[1..])),
        "command" => Local::Reply(command(&args[1..])),
        "info" => Local::Reply(Frame::Verbatim(
            "txt",
            info::render(shared, &args[1..]).into(),
        )),
        "config" => Local::Reply(config(shared, &args[1..])),
        "time" => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            Local::Reply(Frame::Array(vec![
                bulk(now.as_secs().to_string()),
                bulk(now.subsec_micros().to_string()),
            ]))
        }
        "wait" => wait(conn, shared, args).await,
        "replicaof" | "slaveof" => replicaof(shared, args).await,
        "role" => Local::Reply(role(shared)),
        "sentinel" => Local::Reply(crate::sentinel::run(conn, shared, &args[1..])),
        "replikv" if args.len() >= 2 && args[1].eq_ignore_ascii_case(b"takeover") => {
            takeover(shared, &args[2..]).await
        }
        "replikv" if args.len() >= 2 && args[1].eq_ignore_ascii_case(b"member") => {
            Local::Reply(member(shared, &args[2..]).await)
        }
        "replikv" => Local::Reply(crate::replikv_cmd::run(conn, shared, &args[1..])),
        "failover" => failover(shared, &args[1..]).await,
        "lastsave" => Local::Reply(Frame::Integer(
            Stats::get(&shared.stats.last_save_unix) as i64
        )),
        "save" | "bgsave" => {
            if cname == "bgsave" && args.len() > 2 {
                return Local::Reply(err("ERR syntax error"));
            }
            if cname == "bgsave" && args.len() == 2 && !args[1].eq_ignore_ascii_case(b"schedule") {
                return Local::Reply(err("ERR syntax error"));
            }
            let (done, rx) = oneshot::channel();
            let msg = NodeMsg::Save {
                background: cname == "bgsave",
                done,
            };
            if shared.node.send(msg).await {
                Local::Wait(rx)
            } else {
                Local::Reply(node_stopped())
            }
        }
        _ => Local::Data,
    }
}

fn check_password(shared: &Shared, user: Option<&[u8]>, pass: &[u8]) -> Result<(), Frame> {
    let Some(required) = &shared.config.requirepass else {
        if user.is_none() {
            return Err(err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"));
        }
        return if user == Some(b"default".as_slice()) {
            Ok(())
        } else {
            Err(err(
                "WRONGPASS invalid username-password pair or user is disabled.",
            ))
        };
    };
    let user_ok = user.is_none_or(|u| u == b"default");
    if user_ok && constant_time_eq(required.as_bytes(), pass) {
        Ok(())
    } else {
        Err(err(
            "WRONGPASS invalid username-password pair or user is disabled.",
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn auth(conn: &mut Conn, shared: &Shared, args: &[Bytes]) -> Frame {
    let result = match args {
        [pass] => check_password(shared, None, pass),
        [user, pass] => check_password(shared, Some(user), pass),
        _ => return err("ERR syntax error"),
    };
    match result {
        Ok(()) => {
            conn.authenticated = true;
            ok()
        }
        Err(e) => e,
    }
}

fn hello(conn: &mut Conn, shared: &Shared, args: &[Bytes]) -> Frame {
    let mut protocol = conn.protocol;
    let mut rest = args;
    if let Some(v) = rest.first() {
        protocol = match v.as_ref() {
            b"2" => Protocol::Resp2,
            b"3" => Protocol::Resp3,
            _ => {
                return if std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .is_some()
                {
                    err("NOPROTO unsupported protocol version")
                } else {
                    err("ERR Protocol version is not an integer or out of range")
                }
            }
        };
        rest = &rest[1..];
    }
    let mut auth_pair = None;
    let mut setname = None;
    while let Some(opt) = rest.first() {
        if opt.eq_ignore_ascii_case(b"auth") && rest.len() >= 3 {
            auth_pair = Some((rest[1].clone(), rest[2].clone()));
            rest = &rest[3..];
        } else if opt.eq_ignore_ascii_case(b"setname") && rest.len() >= 2 {
            setname = Some(rest[1].clone());
            rest = &rest[2..];
        } else {
            return err(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(opt)
            ));
        }
    }
    if let Some((user, pass)) = auth_pair {
        if let Err(e) = check_password(shared, Some(&user), &pass) {
            return e;
        }
        conn.authenticated = true;
    }
    if !conn.authenticated {
        return err("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    if setname.as_ref().is_some_and(|n| !valid_client_name(n)) {
        return err(INVALID_CLIENT_NAME);
    }
    if let Some(name) = setname {
        conn.name = Some(name);
        shared.rename(conn);
    }
    conn.protocol = protocol;
    let proto_num = if protocol == Protocol::Resp3 { 3 } else { 2 };
    Frame::Map(vec![
        (bulk("server"), bulk("replikv")),
        (bulk("version"), bulk(crate::info::REDIS_COMPAT_VERSION)),
        (bulk("proto"), Frame::Integer(proto_num)),
        (bulk("id"), Frame::Integer(conn.id as i64)),
        (bulk("mode"), bulk("standalone")),
        (bulk("role"), bulk("master")),
        (bulk("modules"), Frame::Array(vec![])),
    ])
}

const INVALID_CLIENT_NAME: &str =
    "ERR Client names cannot contain spaces, newlines or special characters.";

fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|&b| b > b' ' && b <= b'~')
}

fn client(conn: &mut Conn, shared: &Shared, args: &[Bytes]) -> Frame {
    let sub = lower(&args[0]);
    match (sub.as_slice(), args.len()) {
        (b"id", 1) => Frame::Integer(conn.id as i64),
        (b"getname", 1) => conn.name.clone().map_or(Frame::Null, Frame::Bulk),
        (b"setname", 2) => {
            if !valid_client_name(&args[1]) {
                return err(INVALID_CLIENT_NAME);
            }
            conn.name = if args[1].is_empty() {
                None
            } else {
                Some(args[1].clone())
            };
            shared.rename(conn);
            ok()
        }
        (b"setinfo", 3) => ok(),
        (b"list", _) => bulk(shared.client_list()),
        (b"info", 1) => bulk(shared.client_line(conn.id)),
        (b"help", _) => Frame::Array(
            [
                "CLIENT ID",
                "CLIENT GETNAME",
                "CLIENT SETNAME <name>",
                "CLIENT SETINFO <attr> <value>",
                "CLIENT LIST",
                "CLIENT INFO",
            ]
            .iter()
            .map(|s| Frame::Simple((*s).into()))
            .collect(),
        ),
        (b"id" | b"getname" | b"setname" | b"setinfo" | b"info", _) => err(format!(
            "ERR wrong number of arguments for 'client|{}' command",
            String::from_utf8_lossy(&sub)
        )),
        _ => err(format!(
            "ERR unknown subcommand '{}'. Try CLIENT HELP.",
            String::from_utf8_lossy(&args[0])
        )),
    }
}

fn command_entry(name: &str, arity: i32, write: bool, keys: (i32, i32, i32)) -> Frame {
    let flag = if write { "write" } else { "readonly" };
    Frame::Array(vec![
        bulk(name.to_string()),
        Frame::Integer(i64::from(arity)),
        Frame::Set(vec![Frame::Simple(flag.into())]),
        Frame::Integer(i64::from(keys.0)),
        Frame::Integer(i64::from(keys.1)),
        Frame::Integer(i64::from(keys.2)),
        Frame::Set(vec![]),
        Frame::Array(vec![]),
        Frame::Array(vec![]),
        Frame::Array(vec![]),
    ])
}

fn all_commands() -> Vec<(String, Frame)> {
    let mut out: Vec<(String, Frame)> = Store::command_specs()
        .iter()
        .map(|s| {
            let entry = command_entry(
                s.name,
                s.arity,
                s.write,
                (s.first_key, s.last_key, s.key_step),
            );
            (s.name.to_string(), entry)
        })
        .collect();
    for (name, arity) in LOCAL_COMMANDS {
        out.push((
            (*name).to_string(),
            command_entry(name, *arity, false, (0, 0, 0)),
        ));
    }
    out
}

fn command(args: &[Bytes]) -> Frame {
    let Some(sub) = args.first() else {
        return Frame::Array(all_commands().into_iter().map(|(_, f)| f).collect());
    };
    match lower(sub).as_slice() {
        b"count" => Frame::Integer(all_commands().len() as i64),
        b"info" => {
            let all = all_commands();
            Frame::Array(
                args[1..]
                    .iter()
                    .map(|n| {
                        let n = String::from_utf8_lossy(n).to_ascii_lowercase();
                        all.iter()
                            .find(|(name, _)| *name == n)
                            .map_or(Frame::Null, |(_, f)| f.clone())
                    })
                    .collect(),
            )
        }
        // No per-command documentation yet: an empty map tells redis-cli to use its own hints.
        b"docs" => Frame::Map(vec![]),
        b"list" => Frame::Array(all_commands().into_iter().map(|(n, _)| bulk(n)).collect()),
        _ => err(format!(
            "ERR unknown subcommand '{}'. Try COMMAND HELP.",
            String::from_utf8_lossy(sub)
        )),
    }
}

fn config(shared: &Shared, args: &[Bytes]) -> Frame {
    let sub = lower(&args[0]);
    match sub.as_slice() {
        b"get" if args.len() >= 2 => {
            let params = info::config_params(&shared.config);
            let mut pairs = Vec::new();
            for pattern in &args[1..] {
                for (k, v) in &params {
                    if replikv_core::glob::glob_match(&pattern.to_ascii_lowercase(), k.as_bytes())
                        && !pairs.iter().any(|(pk, _): &(Frame, Frame)| *pk == bulk(k.clone()))
                    {
                        pairs.push((bulk(k.clone()), bulk(v.clone())));
                    }
                }
            }
            Frame::Map(pairs)
        }
        b"get" => err("ERR wrong number of arguments for 'config|get' command"),
        b"set" => err("ERR CONFIG SET is not supported: restart the node with the new setting (flag, REPLIKV_* variable or config file)"),
        b"resetstat" => {
            shared.stats.reset_counters();
            ok()
        }
        _ => err(format!(
            "ERR unknown subcommand '{}'. Try CONFIG HELP.",
            String::from_utf8_lossy(&args[0])
        )),
    }
}

async fn wait(conn: &Conn, shared: &Arc<Shared>, args: &[Bytes]) -> Local {
    if !shared.repl.positions().leader {
        return Local::Reply(err("ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated."));
    }
    let number = |b: &Bytes| {
        std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
    };
    let (Some(n), Some(timeout)) = (number(&args[1]), number(&args[2])) else {
        return Local::Reply(err("ERR value is not an integer or out of range"));
    };
    if timeout < 0 {
        return Local::Reply(err("ERR timeout is negative"));
    }
    let (done, rx) = oneshot::channel();
    // A connection that wrote waits for the log as the node has it when WAIT arrives, which
    // covers every write this connection sent before it.
    let msg = NodeMsg::Wait {
        numreplicas: u32::try_from(n.max(0)).unwrap_or(u32::MAX),
        lsn: if conn.wrote { None } else { Some(Lsn::ZERO) },
        timeout_ms: timeout as u64,
        done,
    };
    if shared.node.send(msg).await {
        Local::Wait(rx)
    } else {
        Local::Reply(node_stopped())
    }
}

async fn replicaof(shared: &Arc<Shared>, args: &[Bytes]) -> Local {
    let host = String::from_utf8_lossy(&args[1]).to_string();
    let port = String::from_utf8_lossy(&args[2]).to_string();
    let upstream = if host.eq_ignore_ascii_case("no") && port.eq_ignore_ascii_case("one") {
        None
    } else {
        match format!("{host} {port}").parse::<Upstream>() {
            Ok(u) => Some(u),
            Err(_) => return Local::Reply(err("ERR Invalid master port")),
        }
    };
    let (done, rx) = oneshot::channel();
    if shared
        .node
        .send(NodeMsg::SetUpstream { upstream, done })
        .await
    {
        Local::Wait(rx)
    } else {
        Local::Reply(node_stopped())
    }
}

/// How long `FAILOVER` waits for its target to catch up unless `TIMEOUT` says otherwise.
const FAILOVER_TIMEOUT_MS: u64 = 10_000;

/// `FAILOVER [TO host port] [TIMEOUT ms]` or `FAILOVER ABORT` (Redis's command; `FORCE` is
/// not supported): hand leadership over to a replica with no acknowledged write lost. Replies
/// once the target leads (Redis replies at once and works in the background).
async fn failover(shared: &Arc<Shared>, args: &[Bytes]) -> Local {
    let mut target = None;
    let mut timeout_ms = FAILOVER_TIMEOUT_MS;
    let mut i = 0;
    while i < args.len() {
        let word = String::from_utf8_lossy(&args[i]).to_ascii_lowercase();
        match word.as_str() {
            "to" if args.len() >= i + 3 => {
                let host = String::from_utf8_lossy(&args[i + 1]);
                let port = String::from_utf8_lossy(&args[i + 2]);
                match format!("{host} {port}").parse::<Upstream>() {
                    Ok(u) => target = Some(u),
                    Err(_) => return Local::Reply(err("ERR Invalid FAILOVER target")),
                }
                i += 3;
            }
            "timeout" if args.len() > i + 1 => {
                match std::str::from_utf8(&args[i + 1])
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    Some(ms) if ms > 0 => timeout_ms = ms,
                    _ => return Local::Reply(err("ERR FAILOVER timeout must be greater than 0")),
                }
                i += 2;
            }
            "abort" if args.len() == 1 => {
                let (done, rx) = oneshot::channel();
                return if shared.node.send(NodeMsg::FailoverAbort { done }).await {
                    Local::Wait(rx)
                } else {
                    Local::Reply(node_stopped())
                };
            }
            "force" => return Local::Reply(err("ERR FAILOVER FORCE is not supported")),
            _ => return Local::Reply(err("ERR syntax error")),
        }
    }
    let (done, rx) = oneshot::channel();
    let msg = NodeMsg::Failover {
        target,
        timeout_ms,
        done,
    };
    if shared.node.send(msg).await {
        Local::Wait(rx)
    } else {
        Local::Reply(node_stopped())
    }
}

/// How long `REPLIKV MEMBER` waits for the map to show the change.
const MEMBER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// `REPLIKV MEMBER ADD <id> <host:port> | VOTER <id> | REMOVE <id>`: a membership change
/// through the control plane; answers once this node's map shows it.
async fn member(shared: &Arc<Shared>, args: &[Bytes]) -> Frame {
    use replikv_core::control::{ClusterMap, ControlMsg, MemberOp};
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    let op =
        match args {
            [sub, id, addr] if sub.eq_ignore_ascii_case(b"add") => {
                let addr = text(addr);
                if addr.parse::<crate::config::Upstream>().is_err() {
                    return err(format!("ERR `{addr}` is not HOST:PORT"));
                }
                MemberOp::Add { id: text(id), addr }
            }
            [sub, id] if sub.eq_ignore_ascii_case(b"voter") => MemberOp::Voter { id: text(id) },
            [sub, id] if sub.eq_ignore_ascii_case(b"remove") => {
                match safe_removal(shared, &text(id)).await {
                    Ok(Some(epoch)) => MemberOp::Remove { id: text(id), epoch },
                    Ok(None) => return Frame::Simple("OK".into()),
                    Err(e) => return e,
                }
            }
        [sub, id, up] if sub.eq_ignore_ascii_case(b"upstream") => MemberOp::Upstream {
            id: text(id),
            upstream: (!up.eq_ignore_ascii_case(b"leader")).then(|| text(up)),
        },
            _ => return err(
                "ERR syntax error: REPLIKV MEMBER ADD <id> <host:port> | VOTER <id> | REMOVE <id> | UPSTREAM <id> <upstream-id>|LEADER",
            ),
        };
    let Some(inbox) = shared.repl.control_in.get() else {
        return err("ERR this node runs no control plane (control_peers)");
    };
    let done = {
        let op = op.clone();
        move |m: &Option<Arc<ClusterMap>>| {
            let Some(m) = m else { return false };
            match &op {
                MemberOp::Add { id, .. } => m.members.contains_key(id),
                MemberOp::Voter { id } => m.members.get(id).is_some_and(|x| x.voter),
                MemberOp::Remove { id, .. } => !m.members.contains_key(id),
                MemberOp::Upstream { id, upstream } => {
                    m.members.get(id).is_some_and(|x| x.upstream == *upstream)
                }
            }
        }
    };
    let mut map = shared.repl.map.subscribe();
    if done(&map.borrow()) {
        return Frame::Simple("OK".into());
    }
    if inbox
        .send((shared.repl.node_id.clone(), ControlMsg::Member(op)))
        .await
        .is_err()
    {
        return err("ERR the control plane stopped");
    }
    let applied =
        tokio::time::timeout(MEMBER_WAIT, async { map.wait_for(done).await.is_ok() }).await;
    match applied {
        Ok(true) => Frame::Simple("OK".into()),
        _ => err(format!(
            "ERR the change was not in the map within {} s: the controller may be unreachable, \
             or refused it (the leader cannot be removed; a member must exist); see /status",
            MEMBER_WAIT.as_secs()
        )),
    }
}

/// Before `REPLIKV MEMBER REMOVE id` goes to the controller: on the leader, stop counting the
/// member for acknowledgements and wait until the other replicas hold every write
/// acknowledged so far (so no election after the removal can miss one). `Ok(Some(epoch))`:
/// it may leave, as the leader of `epoch` says; `Ok(None)`: it is no member (nothing to do).
async fn safe_removal(
    shared: &Arc<Shared>,
    id: &str,
) -> Result<Option<replikv_core::Epoch>, Frame> {
    use crate::node::RemovalStep;
    let map = shared.repl.map.borrow().clone();
    let Some(map) = map else {
        return Err(err("ERR this node has no cluster map yet"));
    };
    if !map.members.contains_key(id) {
        return Ok(None);
    }
    let me = shared.repl.node_id.as_str();
    match map.leader.as_deref() {
        Some(l) if l == id => {
            return Err(err(
                "ERR the leader cannot be removed; hand leadership over first (FAILOVER)",
            ))
        }
        Some(l) if l == me => {}
        Some(l) => {
            let addr = map.members.get(l).map_or("?", |m| m.addr.as_str());
            return Err(err(format!(
                "ERR send REPLIKV MEMBER REMOVE to the leader {l} ({addr}): it first makes sure the other replicas hold every acknowledged write"
            )));
        }
        None => return Err(err("ERR the cluster has no leader now; try again")),
    }
    let step = |step: RemovalStep| async move {
        let (done, rx) = oneshot::channel();
        let msg = NodeMsg::Removal {
            id: id.to_string(),
            step,
            done,
        };
        if !shared.node.send(msg).await {
            return Err(node_stopped());
        }
        match rx.await {
            Ok(Ok(ready)) => Ok(ready),
            Ok(Err(e)) => Err(err(format!("ERR {e}"))),
            Err(_) => Err(node_stopped()),
        }
    };
    let deadline = tokio::time::Instant::now() + MEMBER_WAIT;
    let mut ready = step(RemovalStep::Begin).await?;
    while ready.is_none() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        ready = step(RemovalStep::Check).await?;
    }
    match ready {
        Some(epoch) => Ok(Some(epoch)),
        None => {
            step(RemovalStep::Cancel).await?;
            Err(err(format!(
                "ERR {id} not removed: within {} s the other replicas did not come to hold every write acknowledged with its help (are they down or lagging?)",
                MEMBER_WAIT.as_secs()
            )))
        }
    }
}

/// `REPLIKV TAKEOVER epoch node last`: the leader this replica follows hands leadership over.
async fn takeover(shared: &Arc<Shared>, args: &[Bytes]) -> Local {
    let parsed = match args {
        [epoch, from, last] => std::str::from_utf8(epoch)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .zip(replikv_core::replication::parse_token(last).ok())
            .map(|(e, l)| (e, String::from_utf8_lossy(from).into_owned(), l)),
        _ => None,
    };
    let Some((epoch, from, last)) = parsed else {
        return Local::Reply(err(
            "ERR syntax error: REPLIKV TAKEOVER <epoch> <node-id> <epoch:lsn>",
        ));
    };
    let (done, rx) = oneshot::channel();
    let msg = NodeMsg::Takeover {
        epoch: replikv_core::Epoch(epoch),
        from,
        last,
        done,
    };
    if shared.node.send(msg).await {
        Local::Wait(rx)
    } else {
        Local::Reply(node_stopped())
    }
}

/// `ROLE`, in Redis's shape: the leader lists its replicas with their durable LSN as the
/// offset; a replica names its upstream and its link state.
fn role(shared: &Shared) -> Frame {
    let status = shared.repl.status();
    // Under the control plane a node that follows nobody need not lead: restarted from a map
    // that names it in an epoch it led, it waits for a new election. It is no master.
    if status.upstream.is_none() && shared.config.control_plane() && !shared.repl.positions().leader
    {
        return Frame::Array(vec![
            bulk("slave"),
            bulk(String::new()),
            Frame::Integer(0),
            bulk("connect"),
            Frame::Integer(status.applied.lsn.0 as i64),
        ]);
    }
    match &status.upstream {
        None => Frame::Array(vec![
            bulk("master"),
            Frame::Integer(status.applied.lsn.0 as i64),
            Frame::Array(
                status
                    .replicas
                    .iter()
                    .filter(|r| r.via.is_none() && r.connected)
                    .map(|r| {
                        let (ip, port) = r.addr.rsplit_once(':').unwrap_or((r.addr.as_str(), "0"));
                        Frame::Array(vec![
                            bulk(ip.trim_start_matches('[').trim_end_matches(']').to_string()),
                            bulk(port.to_string()),
                            bulk(r.durable.0.to_string()),
                        ])
                    })
                    .collect(),
            ),
        ]),
        Some(up) => {
            let state = if status.syncing {
                "sync"
            } else if status.link_up {
                "connected"
            } else {
                "connect"
            };
            Frame::Array(vec![
                bulk("slave"),
                bulk(up.host.clone()),
                Frame::Integer(i64::from(up.port)),
                bulk(state),
                Frame::Integer(status.applied.lsn.0 as i64),
            ])
        }
    }
}
