//! A peer link's framed I/O and its handshake.
//!
//! The connecting node is the client, the accepting node the server (see
//! `docs/design/peer-protocol.md`). Until the handshake has finished, frames are decoded with
//! the control-frame limit, and anything but the next handshake frame is refused. With fault
//! injection on (tests only, see [`crate::faults`]), frames from the peer pass through its
//! [`LinkFaults`] once the handshake has named it.

use crate::faults::LinkFaults;
use bytes::BytesMut;
use replikv_proto::{
    auth_mac, decode_frame, encode_frame, verify_mac, AuthRole, PeerError, PeerMessage, Transcript,
    PEER_BODY_BYTES_MAX_DEFAULT, PEER_CONTROL_BODY_BYTES_MAX, PEER_NONCE_BYTES,
    PEER_PROTOCOL_VERSION,
};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Bound on each handshake step.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read from the socket at a time.
const READ_CHUNK_BYTES: usize = 256 * 1024;

/// Why a link failed. Any of these closes the link, never the node.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The socket failed or closed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection.
    #[error("the peer closed the link")]
    Closed,
    /// A frame did not decode.
    #[error("bad frame: {0}")]
    Frame(#[from] PeerError),
    /// The peer sent something the protocol does not allow here.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The peer refused us.
    #[error("refused by the peer: {0}")]
    Refused(String),
    /// A step took too long.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// Fault injection (tests only) cut the link.
    #[error("fault injection: {0}")]
    Injected(String),
}

/// The reading half of a link.
pub struct LinkReader {
    frames: FrameReader,
    /// Set once the handshake has named the peer, when fault injection is on.
    faults: Option<LinkFaults>,
    /// How the socket ended while frames were still held back by an injected delay: returned
    /// once they have been handled, as a delayed network delivers them before the close.
    ended: Option<LinkError>,
}

/// Frames off the socket.
struct FrameReader {
    half: OwnedReadHalf,
    buf: BytesMut,
    body_bytes_max: usize,
}

/// The writing half of a link.
pub struct LinkWriter {
    half: OwnedWriteHalf,
    out: BytesMut,
}

/// Splits a connected stream into link halves, decoding only control-sized frames until
/// [`LinkReader::authenticated`] is called. `buffered` holds bytes already read from it.
pub fn split(stream: TcpStream, buffered: BytesMut) -> (LinkReader, LinkWriter) {
    // Lower latency only; nothing depends on it.
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    (
        LinkReader {
            frames: FrameReader {
                half: r,
                buf: buffered,
                body_bytes_max: PEER_CONTROL_BODY_BYTES_MAX,
            },
            faults: None,
            ended: None,
        },
        LinkWriter {
            half: w,
            out: BytesMut::with_capacity(64 * 1024),
        },
    )
}

impl LinkReader {
    /// Lifts the frame size limit to the bulk default, once the peer has authenticated.
    pub fn authenticated(&mut self) {
        self.frames.body_bytes_max = PEER_BODY_BYTES_MAX_DEFAULT;
    }

    /// Passes every later frame through `faults` (a link with a named peer, fault injection
    /// on): it may be held back by a delay, or the link dropped.
    pub fn inject_faults(&mut self, faults: Option<LinkFaults>) {
        self.faults = faults;
    }

    /// Reads the next message. Cancel safe: a frame read is never lost when the future is
    /// dropped (links use it in `select!`).
    ///
    /// # Errors
    /// The socket failed or closed, the frame is bad, or fault injection cut the link.
    pub async fn recv(&mut self) -> Result<PeerMessage, LinkError> {
        let Some(faults) = self.faults.as_mut() else {
            return self.frames.recv().await;
        };
        loop {
            if let Some(msg) = faults.pop_due(tokio::time::Instant::now())? {
                return Ok(msg);
            }
            let received = match faults.next_release() {
                None => match self.ended.take() {
                    Some(e) => return Err(e),
                    None => self.frames.recv().await,
                },
                // Held frames at the bound, or the socket already ended: read nothing more
                // until the oldest is released.
                Some(at) if faults.is_full() || self.ended.is_some() => {
                    tokio::time::sleep_until(at).await;
                    continue;
                }
                Some(at) => tokio::select! {
                    received = self.frames.recv() => received,
                    () = tokio::time::sleep_until(at) => continue,
                },
            };
            match received {
                Ok(msg) => faults.on_arrival(msg, tokio::time::Instant::now())?,
                Err(e) if faults.next_release().is_some() => self.ended = Some(e),
                Err(e) => return Err(e),
            }
        }
    }

    /// [`LinkReader::recv`] within `limit`.
    ///
    /// # Errors
    /// As `recv`, or [`LinkError::Timeout`].
    pub async fn recv_within(
        &mut self,
        limit: Duration,
        what: &'static str,
    ) -> Result<PeerMessage, LinkError> {
        tokio::time::timeout(limit, self.recv())
            .await
            .map_err(|_| LinkError::Timeout(what))?
    }
}

impl FrameReader {
    /// Reads the next frame off the socket (cancel safe).
    async fn recv(&mut self) -> Result<PeerMessage, LinkError> {
        loop {
            if let Some(msg) = decode_frame(&mut self.buf, self.body_bytes_max)? {
                return Ok(msg);
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK_BYTES / 4 {
                self.buf.reserve(READ_CHUNK_BYTES);
            }
            let n = self.half.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Err(LinkError::Closed);
            }
        }
    }
}

impl LinkWriter {
    /// Queues a message; [`LinkWriter::flush`] sends what is queued.
    ///
    /// # Errors
    /// The message cannot be framed (too large).
    pub fn queue(&mut self, msg: &PeerMessage) -> Result<(), LinkError> {
        encode_frame(msg, &mut self.out)?;
        Ok(())
    }

    /// Bytes queued and not yet sent.
    pub fn queued_bytes(&self) -> usize {
        self.out.len()
    }

    /// Sends everything queued.
    ///
    /// # Errors
    /// The socket failed.
    pub async fn flush(&mut self) -> Result<(), LinkError> {
        if !self.out.is_empty() {
            self.half.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Queues and sends one message.
    ///
    /// # Errors
    /// As `queue` and `flush`.
    pub async fn send(&mut self, msg: &PeerMessage) -> Result<(), LinkError> {
        self.queue(msg)?;
        self.flush().await
    }

    /// Sends `Refuse` (best effort: the link is closing anyway).
    pub async fn refuse(&mut self, reason: &str) {
        let reason: String = reason.chars().take(512).collect();
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            self.send(&PeerMessage::Refuse { reason }),
        )
        .await;
    }
}

/// Fresh random bytes for a nonce or an id.
///
/// # Errors
/// The OS has no randomness to give (never expected on Linux).
pub fn random_bytes<const N: usize>() -> Result<[u8; N], LinkError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b)
        .map_err(|e| LinkError::Io(std::io::Error::other(format!("no randomness: {e}"))))?;
    Ok(b)
}

/// Who is on the other side of a finished handshake.
#[derive(Clone, Debug)]
pub struct PeerIdentity {
    /// Its node id.
    pub node_id: String,
}

/// The client side of the handshake: Hello, Challenge, Auth both ways.
///
/// # Errors
/// The peer refused, failed to prove the secret, timed out or broke the protocol.
pub async fn handshake_client(
    reader: &mut LinkReader,
    writer: &mut LinkWriter,
    cluster: &str,
    node_id: &str,
    secret: &[u8],
) -> Result<PeerIdentity, LinkError> {
    let client_nonce: [u8; PEER_NONCE_BYTES] = random_bytes()?;
    writer
        .send(&PeerMessage::Hello {
            protocol_version: PEER_PROTOCOL_VERSION,
            cluster_name: cluster.to_string(),
            node_id: node_id.to_string(),
            nonce: client_nonce,
        })
        .await?;
    let (server_nonce, server_id) = match reader
        .recv_within(HANDSHAKE_TIMEOUT, "waiting for Challenge")
        .await?
    {
        PeerMessage::Challenge { nonce, node_id } => (nonce, node_id),
        PeerMessage::Refuse { reason } => return Err(LinkError::Refused(reason)),
        other => {
            return Err(LinkError::Protocol(format!(
                "expected Challenge, got {}",
                other.kind()
            )))
        }
    };
    let transcript = |prover| Transcript {
        prover,
        protocol_version: PEER_PROTOCOL_VERSION,
        cluster_name: cluster,
        client_node_id: node_id,
        client_nonce: &client_nonce,
        server_node_id: &server_id,
        server_nonce: &server_nonce,
    };
    writer
        .send(&PeerMessage::Auth {
            mac: auth_mac(secret, &transcript(AuthRole::Client)),
        })
        .await?;
    expect_auth(
        reader,
        writer,
        secret,
        &transcript(AuthRole::Server),
        "the upstream",
    )
    .await?;
    reader.authenticated();
    Ok(PeerIdentity { node_id: server_id })
}

/// The server side of the handshake; refuses (with a reason sent to the peer) a wrong cluster,
/// version or secret.
///
/// # Errors
/// As [`handshake_client`].
pub async fn handshake_server(
    reader: &mut LinkReader,
    writer: &mut LinkWriter,
    cluster: &str,
    node_id: &str,
    secret: &[u8],
) -> Result<PeerIdentity, LinkError> {
    let (version, client_cluster, client_id, client_nonce) = match reader
        .recv_within(HANDSHAKE_TIMEOUT, "waiting for Hello")
        .await?
    {
        PeerMessage::Hello {
            protocol_version,
            cluster_name,
            node_id,
            nonce,
        } => (protocol_version, cluster_name, node_id, nonce),
        other => {
            let why = format!("expected Hello, got {}", other.kind());
            writer.refuse(&why).await;
            return Err(LinkError::Protocol(why));
        }
    };
    if version != PEER_PROTOCOL_VERSION {
        let why = format!("protocol version {version} is not supported");
        writer.refuse(&why).await;
        return Err(LinkError::Protocol(why));
    }
    if client_cluster != cluster {
        let why = format!("cluster `{client_cluster}` is not this cluster (`{cluster}`)");
        writer.refuse(&why).await;
        return Err(LinkError::Protocol(why));
    }
    let server_nonce: [u8; PEER_NONCE_BYTES] = random_bytes()?;
    writer
        .send(&PeerMessage::Challenge {
            nonce: server_nonce,
            node_id: node_id.to_string(),
        })
        .await?;
    let transcript = |prover| Transcript {
        prover,
        protocol_version: version,
        cluster_name: cluster,
        client_node_id: &client_id,
        client_nonce: &client_nonce,
        server_node_id: node_id,
        server_nonce: &server_nonce,
    };
    expect_auth(
        reader,
        writer,
        secret,
        &transcript(AuthRole::Client),
        "the peer",
    )
    .await?;
    writer
        .send(&PeerMessage::Auth {
            mac: auth_mac(secret, &transcript(AuthRole::Server)),
        })
        .await?;
    reader.authenticated();
    Ok(PeerIdentity { node_id: client_id })
}

/// Reads the other side's `Auth` and checks its MAC over `transcript` (whose prover is the
/// other side); refuses and fails on a wrong MAC or any other message.
async fn expect_auth(
    reader: &mut LinkReader,
    writer: &mut LinkWriter,
    secret: &[u8],
    transcript: &Transcript<'_>,
    other_side: &str,
) -> Result<(), LinkError> {
    match reader
        .recv_within(HANDSHAKE_TIMEOUT, "waiting for Auth")
        .await?
    {
        PeerMessage::Auth { mac } if verify_mac(secret, transcript, &mac) => Ok(()),
        PeerMessage::Auth { .. } => {
            writer
                .refuse("authentication failed: wrong cluster secret")
                .await;
            Err(LinkError::Protocol(format!(
                "{other_side} could not prove the cluster secret"
            )))
        }
        PeerMessage::Refuse { reason } => Err(LinkError::Refused(reason)),
        other => {
            let why = format!("expected Auth, got {}", other.kind());
            writer.refuse(&why).await;
            Err(LinkError::Protocol(why))
        }
    }
}
