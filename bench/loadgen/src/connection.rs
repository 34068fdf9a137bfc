//! One client connection: write request bytes, read whole replies.

use bytes::BytesMut;
use std::fmt;
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Duration, Instant};

use crate::reply::{parse_reply, Reply, ReplyError};

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read per `read` call at most (the buffer grows only for larger replies).
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// Why a connection cannot go on.
#[derive(Debug)]
pub enum ConnectionError {
    /// Connecting, reading or writing failed.
    Io(io::Error),
    /// Connecting did not finish within [`CONNECT_TIMEOUT`].
    ConnectTimeout,
    /// The server closed the connection.
    Closed,
    /// The server sent bytes that are not a RESP reply.
    Protocol(ReplyError),
    /// No reply before the deadline.
    Deadline,
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "{e}"),
            Self::ConnectTimeout => write!(f, "connect timed out after {CONNECT_TIMEOUT:?}"),
            Self::Closed => write!(f, "server closed the connection"),
            Self::Protocol(e) => write!(f, "bad reply: {e}"),
            Self::Deadline => write!(f, "no reply before the deadline"),
        }
    }
}

impl std::error::Error for ConnectionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ConnectionError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// A TCP connection speaking RESP, with the bytes read but not yet parsed.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    input: BytesMut,
}

impl Connection {
    /// Connects to `host:port` with `TCP_NODELAY`, within [`CONNECT_TIMEOUT`].
    ///
    /// # Errors
    /// [`ConnectionError::Io`] or [`ConnectionError::ConnectTimeout`].
    pub async fn connect(host: &str, port: u16) -> Result<Self, ConnectionError> {
        let stream = timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
            .await
            .map_err(|_| ConnectionError::ConnectTimeout)??;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            input: BytesMut::with_capacity(READ_CHUNK_BYTES),
        })
    }

    /// Writes `bytes` whole.
    ///
    /// # Errors
    /// [`ConnectionError::Io`], or [`ConnectionError::Deadline`] if `deadline` passes first.
    pub async fn send(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), ConnectionError> {
        timeout_at(deadline, self.stream.write_all(bytes))
            .await
            .map_err(|_| ConnectionError::Deadline)??;
        Ok(())
    }

    /// Reads the next whole reply.
    ///
    /// # Errors
    /// Any [`ConnectionError`]; [`ConnectionError::Deadline`] if `deadline` passes first.
    pub async fn read_reply(&mut self, deadline: Instant) -> Result<Reply, ConnectionError> {
        loop {
            if let Some((reply, used)) =
                parse_reply(&self.input).map_err(ConnectionError::Protocol)?
            {
                // `split_to` keeps the rest (a pipelined second reply) at the front.
                let _consumed = self.input.split_to(used);
                return Ok(reply);
            }
            self.input.reserve(READ_CHUNK_BYTES);
            let n = timeout_at(deadline, self.stream.read_buf(&mut self.input))
                .await
                .map_err(|_| ConnectionError::Deadline)??;
            if n == 0 {
                return Err(ConnectionError::Closed);
            }
        }
    }
}
