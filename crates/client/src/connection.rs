//! One RESP2 connection to one node: [`Connection`]. Requests go out as multibulk arrays;
//! replies come back through `replikv_proto::parse_frame`.
//!
//! Time bounds are the caller's (`tokio::time::timeout_at` around each step), so that it knows
//! which step ran out: before a request was sent, or after.

use bytes::{Buf, BytesMut};
use replikv_proto::{encode_array_header, encode_bulk, parse_frame, Frame};
use std::io;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes reserved for the reply buffer when a connection opens.
const READ_BUFFER_BYTES_INITIAL: usize = 4 * 1024;

/// Why opening a connection failed.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// Connecting, or the `AUTH` exchange, failed at the transport (nothing of any operation
    /// was sent).
    Io(io::Error),
    /// The node refused `AUTH` (the error text): a configuration problem, not a failover.
    Refused(String),
}

/// Why reading a reply failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The connection broke or closed.
    Io(io::Error),
    /// The bytes are not RESP, or the reply is larger than allowed.
    Protocol(String),
}

/// An open connection.
#[derive(Debug)]
pub(crate) struct Connection {
    stream: TcpStream,
    /// Bytes read and not yet decoded; never more than `reply_bytes_max` plus one read.
    buf: BytesMut,
    /// Replies the node still owes: requests sent whose replies were not read. Not zero after
    /// a caller gave up mid-request (a timeout or a dropped future); such a connection is
    /// never used again, as its next reply would answer an older request.
    owed: usize,
    /// The node's address as this connection reached it.
    peer: SocketAddr,
    /// Largest reply accepted.
    reply_bytes_max: usize,
}

/// Appends `args` as a RESP multibulk request.
pub(crate) fn encode_request<A: AsRef<[u8]>>(out: &mut BytesMut, args: &[A]) {
    encode_array_header(out, args.len());
    for arg in args {
        encode_bulk(out, arg.as_ref());
    }
}

impl Connection {
    /// Connects to `addr` and, when `password` is set, authenticates.
    ///
    /// # Errors
    /// [`OpenError::Io`] when the node cannot be reached or the connection breaks during
    /// `AUTH`; [`OpenError::Refused`] when the node refuses the password.
    pub async fn open(
        addr: &str,
        password: Option<&str>,
        reply_bytes_max: usize,
    ) -> Result<Connection, OpenError> {
        let stream = TcpStream::connect(addr).await.map_err(OpenError::Io)?;
        // Nagle's algorithm only delays small requests; failing to turn it off changes nothing
        // else.
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().map_err(OpenError::Io)?;
        let mut conn = Connection {
            stream,
            buf: BytesMut::with_capacity(READ_BUFFER_BYTES_INITIAL),
            owed: 0,
            peer,
            reply_bytes_max,
        };
        if let Some(password) = password {
            let mut request = BytesMut::new();
            encode_request(&mut request, &[b"AUTH".as_slice(), password.as_bytes()]);
            conn.send(&request, 1).await.map_err(OpenError::Io)?;
            match conn.read_reply().await {
                Ok(Frame::Error(text)) => return Err(OpenError::Refused(text)),
                Ok(_) => {}
                Err(ReadError::Io(e)) => return Err(OpenError::Io(e)),
                Err(ReadError::Protocol(detail)) => {
                    return Err(OpenError::Io(io::Error::new(
                        io::ErrorKind::InvalidData,
                        detail,
                    )))
                }
            }
        }
        Ok(conn)
    }

    /// The node's address as this connection reached it.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the connection can take a request: it owes no reply, and the node has neither
    /// closed it nor sent anything unasked. Checked before a request goes out on a connection
    /// that sat idle, so that a node that died (or restarted) meanwhile is found before the
    /// request is sent, when it certainly did not execute, rather than after.
    pub fn is_reusable(&mut self) -> bool {
        if self.owed != 0 || !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        match self.stream.try_read(&mut probe) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            // Closed (0), bytes nobody asked for, or a reset.
            Ok(_) | Err(_) => false,
        }
    }

    /// Writes `request`, which holds `count` encoded requests, in full.
    ///
    /// # Errors
    /// The I/O error; the node may have received any prefix of `request`.
    pub async fn send(&mut self, request: &[u8], count: usize) -> io::Result<()> {
        // Counted first: a caller that gives up during the write leaves them owed.
        self.owed += count;
        self.stream.write_all(request).await
    }

    /// Reads the next reply.
    ///
    /// # Errors
    /// [`ReadError::Io`] when the connection breaks or closes (`UnexpectedEof`) before a whole
    /// reply arrived; [`ReadError::Protocol`] when the bytes are not RESP or the reply exceeds
    /// the size bound.
    pub async fn read_reply(&mut self) -> Result<Frame, ReadError> {
        loop {
            match parse_frame(&self.buf) {
                Ok(Some((_, consumed))) if consumed > self.reply_bytes_max => {
                    return Err(self.too_large());
                }
                Ok(Some((frame, consumed))) => {
                    self.buf.advance(consumed);
                    self.owed = self.owed.saturating_sub(1);
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(e) => return Err(ReadError::Protocol(e.to_string())),
            }
            if self.buf.len() > self.reply_bytes_max {
                return Err(self.too_large());
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(ReadError::Io)?;
            if n == 0 {
                return Err(ReadError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the node closed the connection",
                )));
            }
        }
    }

    fn too_large(&self) -> ReadError {
        ReadError::Protocol(format!("reply larger than {} bytes", self.reply_bytes_max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn requests_are_multibulk_arrays() {
        let mut out = BytesMut::new();
        encode_request(&mut out, &["SET", "k", ""]);
        assert_eq!(&out[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    }

    /// A node that closes an idle connection is noticed before the next request is sent.
    #[tokio::test]
    async fn a_connection_the_node_closed_is_not_reused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let n = socket.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"*1\r\n$4\r\nPING\r\n");
            socket.write_all(b"+PONG\r\n").await.unwrap();
            // Then closes.
        });
        let mut conn = Connection::open(&addr, None, 1024).await.unwrap();
        assert!(conn.is_reusable());
        let mut request = BytesMut::new();
        encode_request(&mut request, &["PING"]);
        conn.send(&request, 1).await.unwrap();
        assert!(!conn.is_reusable(), "a reply is owed");
        assert_eq!(
            conn.read_reply().await.unwrap(),
            Frame::Simple("PONG".into())
        );
        server.await.unwrap();
        // The close reaches this socket asynchronously; wait for it without a fixed sleep.
        let mut reusable = true;
        for _ in 0..1000 {
            reusable = conn.is_reusable();
            if !reusable {
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert!(!reusable);
    }

    #[tokio::test]
    async fn an_oversized_reply_is_a_protocol_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            socket.write_all(b"$100\r\n").await.unwrap();
            socket.write_all(&[b'x'; 100]).await.unwrap();
            socket.write_all(b"\r\n").await.unwrap();
            socket
        });
        let mut conn = Connection::open(&addr, None, 16).await.unwrap();
        let _socket = server.await.unwrap();
        assert!(matches!(
            conn.read_reply().await,
            Err(ReadError::Protocol(_))
        ));
    }

    #[tokio::test]
    async fn a_refused_password_is_reported_as_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let _ = socket.read(&mut buf).await.unwrap();
            socket
                .write_all(b"-WRONGPASS invalid username-password pair\r\n")
                .await
                .unwrap();
            socket
        });
        let opened = Connection::open(&addr, Some("nope"), 1024).await;
        let _socket = server.await.unwrap();
        assert!(
            matches!(&opened, Err(OpenError::Refused(text)) if text.starts_with("WRONGPASS")),
            "{opened:?}"
        );
    }
}
