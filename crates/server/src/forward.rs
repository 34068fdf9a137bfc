//! Writes a replica forwards to its upstream (`replica-writes = forward`): each client
//! connection that forwards gets its own connection to the upstream's client port, so its
//! writes keep their order. After each write the replica asks the upstream for the write's
//! consistency token, so the client's next reads here wait until the write has arrived.
//!
//! A leader handing over (`FAILOVER`) reaches its target's client port the same way.

use crate::config::Upstream;
use crate::shared::Shared;
use bytes::{Bytes, BytesMut};
use replikv_core::replication::parse_token;
use replikv_core::{AckMode, Epoch, LogPosition};
use replikv_proto::{encode_array_header, encode_bulk, parse_frame, Frame};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on one forwarded write's round trip (it may wait for replicas upstream).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest reply accepted from the upstream.
const REPLY_BYTES_MAX: usize = 600 << 20;

/// A connection to the upstream for one client connection's writes.
#[derive(Debug)]
pub struct Forwarder {
    upstream: Upstream,
    stream: TcpStream,
    buf: BytesMut,
    mode: Option<AckMode>,
}

fn encode_command(args: &[Bytes], out: &mut BytesMut) {
    encode_array_header(out, args.len());
    for a in args {
        encode_bulk(out, a);
    }
}

impl Forwarder {
    async fn connect(upstream: &Upstream, password: Option<&str>) -> Result<Forwarder, String> {
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((upstream.host.as_str(), upstream.port)),
        )
        .await
        .map_err(|_| "connection timed out".to_string())?
        .map_err(|e| e.to_string())?;
        // Lower latency only.
        let _ = stream.set_nodelay(true);
        let mut f = Forwarder {
            upstream: upstream.clone(),
            stream,
            buf: BytesMut::new(),
            mode: None,
        };
        if let Some(pass) = password {
            let reply = f
                .call(&[
                    Bytes::from_static(b"AUTH"),
                    Bytes::copy_from_slice(pass.as_bytes()),
                ])
                .await?;
            if let Frame::Error(e) = reply {
                return Err(format!("AUTH refused: {e}"));
            }
        }
        Ok(f)
    }

    async fn send(&mut self, args: &[Bytes]) -> Result<(), String> {
        let mut out = BytesMut::new();
        encode_command(args, &mut out);
        self.stream.write_all(&out).await.map_err(|e| e.to_string())
    }

    async fn read_reply(&mut self) -> Result<Frame, String> {
        loop {
            if let Some((frame, used)) =
                parse_frame(&self.buf).map_err(|e| format!("bad reply: {e}"))?
            {
                let _ = self.buf.split_to(used);
                return Ok(frame);
            }
            if self.buf.len() > REPLY_BYTES_MAX {
                return Err("reply too large".into());
            }
            let n = tokio::time::timeout(REPLY_TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| "no reply in time".to_string())?
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the upstream closed the connection".into());
            }
        }
    }

    async fn call(&mut self, args: &[Bytes]) -> Result<Frame, String> {
        self.send(args).await?;
        self.read_reply().await
    }
}

/// Forwards one write; returns the upstream's reply and, when it gives one, the write's token.
///
/// # Errors
/// The upstream cannot be reached or answers garbage; the caller drops the connection.
pub async fn forward(
    slot: &mut Option<Forwarder>,
    upstream: &Upstream,
    shared: &Shared,
    mode: AckMode,
    args: &[Bytes],
) -> Result<(Frame, Option<LogPosition>), String> {
    if slot.as_ref().is_some_and(|f| &f.upstream != upstream) {
        *slot = None;
    }
    if slot.is_none() {
        *slot = Some(Forwarder::connect(upstream, shared.config.requirepass.as_deref()).await?);
    }
    let Some(f) = slot.as_mut() else {
        return Err("no connection".into());
    };
    if f.mode != Some(mode) {
        let reply = f
            .call(&[
                Bytes::from_static(b"REPLIKV"),
                Bytes::from_static(b"ACK"),
                Bytes::from(mode.to_string()),
            ])
            .await?;
        if let Frame::Error(e) = reply {
            return Err(format!(
                "the upstream refused the acknowledgement mode: {e}"
            ));
        }
        f.mode = Some(mode);
    }
    // Pipelined: the write, then its token.
    let mut out = BytesMut::new();
    encode_command(args, &mut out);
    encode_command(
        &[Bytes::from_static(b"REPLIKV"), Bytes::from_static(b"TOKEN")],
        &mut out,
    );
    f.stream.write_all(&out).await.map_err(|e| e.to_string())?;
    let reply = f.read_reply().await?;
    let token = match f.read_reply().await? {
        Frame::Bulk(t) => parse_token(&t).ok(),
        _ => None,
    };
    Ok((reply, token))
}

/// Why a takeover did not happen, or may not have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TakeoverError {
    /// The target answered no (or was never asked): it does not lead.
    Refused(String),
    /// The request may have reached the target, but no answer came: it may lead.
    Unknown(String),
}

/// What a leader handing over tells its target.
#[derive(Clone, Debug)]
pub struct Takeover {
    /// The leader's epoch.
    pub epoch: Epoch,
    /// The leader's node id (the target's upstream).
    pub from: String,
    /// The leader's last entry (the target must hold exactly it, durably).
    pub last: LogPosition,
}

/// Tells `target` (a replica holding every entry of this leader) to take leadership over
/// (`REPLIKV TAKEOVER`), authenticating with `password`.
///
/// # Errors
/// The target refused, or whether it took over is unknown.
pub async fn takeover(
    target: &Upstream,
    password: Option<&str>,
    request: &Takeover,
) -> Result<(), TakeoverError> {
    let mut f = Forwarder::connect(target, password)
        .await
        .map_err(TakeoverError::Refused)?;
    let reply = f
        .call(&[
            Bytes::from_static(b"REPLIKV"),
            Bytes::from_static(b"TAKEOVER"),
            Bytes::from(request.epoch.0.to_string()),
            Bytes::from(request.from.clone()),
            Bytes::from(request.last.to_string()),
        ])
        .await
        .map_err(TakeoverError::Unknown)?;
    match reply {
        Frame::Simple(_) => Ok(()),
        Frame::Error(e) => Err(TakeoverError::Refused(e)),
        other => Err(TakeoverError::Unknown(format!(
            "unexpected reply {other:?}"
        ))),
    }
}

/// Sends one command to the node at `addr` (authenticating with `password`) and returns its
/// reply: for the command-line tools.
///
/// # Errors
/// The node cannot be reached or answers garbage.
pub async fn command(
    addr: &Upstream,
    password: Option<&str>,
    args: &[&str],
) -> Result<Frame, String> {
    let mut f = Forwarder::connect(addr, password).await?;
    let args: Vec<Bytes> = args
        .iter()
        .map(|a| Bytes::copy_from_slice(a.as_bytes()))
        .collect();
    f.call(&args).await
}

/// Tells the replica at `node` to replicate from `upstream` (`REPLICAOF`), authenticating with
/// `password`: after a switchover, the old leader repoints its other replicas at the new one.
///
/// # Errors
/// The replica cannot be reached, or refuses.
pub async fn repoint(
    node: &Upstream,
    password: Option<&str>,
    upstream: &Upstream,
) -> Result<(), String> {
    let mut f = Forwarder::connect(node, password).await?;
    let reply = f
        .call(&[
            Bytes::from_static(b"REPLICAOF"),
            Bytes::from(upstream.host.clone()),
            Bytes::from(upstream.port.to_string()),
        ])
        .await?;
    match reply {
        Frame::Simple(_) => Ok(()),
        Frame::Error(e) => Err(e),
        other => Err(format!("unexpected reply {other:?}")),
    }
}
