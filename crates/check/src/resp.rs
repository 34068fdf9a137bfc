//! A minimal RESP2 client connection for the workload: commands are written as arrays of bulk
//! strings, several at once when pipelined, and replies are read one at a time.
//!
//! It is deliberately small and strict: every line and value has a size bound, arrays nest at
//! most [`DEPTH_MAX`] deep, and a malformed reply is an error (the caller drops the connection).

use std::io;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Longest reply line (type byte to CRLF) accepted.
pub const LINE_BYTES_MAX: u64 = 64 * 1024;
/// Longest bulk string accepted (values of the workload are tiny; `INFO` is a few KiB).
pub const BULK_BYTES_MAX: usize = 1024 * 1024;
/// Most elements in one array reply.
pub const ARRAY_LEN_MAX: usize = 4096;
/// Deepest nesting of arrays in one reply.
pub const DEPTH_MAX: usize = 4;

/// One RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+text`.
    Simple(String),
    /// `-text`.
    Error(String),
    /// `:n`.
    Integer(i64),
    /// `$n` bulk string; `None` for the null bulk string `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*n` array; `None` for the null array `*-1`.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text, when it is a simple or bulk string.
    #[must_use]
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// Why a reply could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RespError {
    /// The socket failed or the peer closed it.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The bytes are not a RESP2 reply within this client's bounds.
    #[error("bad reply: {0}")]
    Protocol(String),
}

/// A connection to one node.
#[derive(Debug)]
pub struct RespConn {
    stream: BufReader<TcpStream>,
    out: Vec<u8>,
}

impl RespConn {
    /// Connects to `addr` (`host:port`) within `bound`.
    ///
    /// # Errors
    /// The connection is refused, fails or takes longer than `bound`.
    pub async fn connect(addr: &str, bound: Duration) -> io::Result<RespConn> {
        let stream = tokio::time::timeout(bound, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(RespConn {
            stream: BufReader::new(stream),
            out: Vec::with_capacity(256),
        })
    }

    /// Writes `commands` in one write (a pipeline); their replies are read with
    /// [`RespConn::read_reply`], in order.
    ///
    /// # Errors
    /// The socket fails.
    pub async fn send(&mut self, commands: &[&[&[u8]]]) -> io::Result<()> {
        self.out.clear();
        for command in commands {
            encode(command, &mut self.out);
        }
        self.stream.get_mut().write_all(&self.out).await
    }

    /// Reads the next reply.
    ///
    /// # Errors
    /// The socket fails or closes, or the reply is malformed or over the bounds.
    pub async fn read_reply(&mut self) -> Result<Reply, RespError> {
        self.read_at_depth(0).await
    }

    /// Sends one command and reads its reply.
    ///
    /// # Errors
    /// As [`RespConn::send`] and [`RespConn::read_reply`].
    pub async fn call(&mut self, command: &[&[u8]]) -> Result<Reply, RespError> {
        self.send(&[command]).await?;
        self.read_reply().await
    }

    /// Whether this connection must not be used for a new command: the node closed it (or it
    /// failed) while it was idle, or bytes arrived that no command asked for. Checked without
    /// waiting.
    pub async fn is_closed(&mut self) -> bool {
        if !self.stream.buffer().is_empty() {
            return true;
        }
        let mut byte = [0u8; 1];
        // `timeout` polls the peek once before looking at its zero deadline: a pending end of
        // stream, error or stray byte shows at once; an idle live connection times out.
        let peeked = tokio::time::timeout(Duration::ZERO, self.stream.get_mut().peek(&mut byte));
        peeked.await.is_ok()
    }

    async fn read_at_depth(&mut self, depth: usize) -> Result<Reply, RespError> {
        let line = self.read_line().await?;
        let (kind, rest) = line
            .split_first()
            .ok_or_else(|| RespError::Protocol("empty line".into()))?;
        let text = String::from_utf8_lossy(rest).into_owned();
        match kind {
            b'+' => Ok(Reply::Simple(text)),
            b'-' => Ok(Reply::Error(text)),
            b':' => parse_int(&text).map(Reply::Integer),
            b'$' => {
                let len = parse_int(&text)?;
                if len < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= BULK_BYTES_MAX)
                    .ok_or_else(|| RespError::Protocol(format!("bulk length {len}")))?;
                let mut body = vec![0u8; len + 2];
                self.stream.read_exact(&mut body).await?;
                if !body.ends_with(b"\r\n") {
                    return Err(RespError::Protocol("bulk string not ended by CRLF".into()));
                }
                body.truncate(len);
                Ok(Reply::Bulk(Some(body)))
            }
            b'*' => {
                let len = parse_int(&text)?;
                if len < 0 {
                    return Ok(Reply::Array(None));
                }
                if depth + 1 >= DEPTH_MAX {
                    return Err(RespError::Protocol("arrays nested too deep".into()));
                }
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= ARRAY_LEN_MAX)
                    .ok_or_else(|| RespError::Protocol(format!("array length {len}")))?;
                let mut items = Vec::with_capacity(len);
                for _ in 0..len {
                    items.push(Box::pin(self.read_at_depth(depth + 1)).await?);
                }
                Ok(Reply::Array(Some(items)))
            }
            other => Err(RespError::Protocol(format!(
                "unknown reply type byte {other:#04x}"
            ))),
        }
    }

    /// One line without its CRLF.
    async fn read_line(&mut self) -> Result<Vec<u8>, RespError> {
        let mut line = Vec::with_capacity(64);
        let n = (&mut self.stream)
            .take(LINE_BYTES_MAX)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Err(RespError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by the node",
            )));
        }
        if !line.ends_with(b"\r\n") {
            return Err(RespError::Protocol(
                "line too long or not ended by CRLF".into(),
            ));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }
}

fn parse_int(text: &str) -> Result<i64, RespError> {
    text.parse()
        .map_err(|_| RespError::Protocol(format!("`{text}` is not an integer")))
}

/// Appends `command` as a RESP array of bulk strings.
pub fn encode(command: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", command.len()).as_bytes());
    for arg in command {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    #[test]
    fn encode_writes_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&[b"SET", b"k", b"v1"], &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n");
    }

    /// Serves `bytes` once to the first connection and returns its address.
    async fn serve_once(bytes: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(bytes).await.unwrap();
        });
        addr
    }

    #[tokio::test]
    async fn every_reply_type_is_read_and_a_close_is_an_io_error() {
        let addr = serve_once(
            b"+OK\r\n-ERR no\r\n:42\r\n$2\r\nhi\r\n$-1\r\n*2\r\n:1\r\n$1\r\nx\r\n*-1\r\n",
        )
        .await;
        let mut c = RespConn::connect(&addr, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(c.read_reply().await.unwrap(), Reply::Simple("OK".into()));
        assert_eq!(c.read_reply().await.unwrap(), Reply::Error("ERR no".into()));
        assert_eq!(c.read_reply().await.unwrap(), Reply::Integer(42));
        assert_eq!(
            c.read_reply().await.unwrap(),
            Reply::Bulk(Some(b"hi".to_vec()))
        );
        assert_eq!(c.read_reply().await.unwrap(), Reply::Bulk(None));
        assert_eq!(
            c.read_reply().await.unwrap(),
            Reply::Array(Some(vec![
                Reply::Integer(1),
                Reply::Bulk(Some(b"x".to_vec()))
            ]))
        );
        assert_eq!(c.read_reply().await.unwrap(), Reply::Array(None));
        assert!(matches!(c.read_reply().await, Err(RespError::Io(_))));
    }

    #[tokio::test]
    async fn oversize_and_malformed_replies_are_protocol_errors() {
        for bytes in [
            &b"$99999999\r\n"[..],
            &b"?x\r\n"[..],
            &b":nope\r\n"[..],
            &b"$2\r\nhiXX"[..],
        ] {
            let addr = serve_once(bytes).await;
            let mut c = RespConn::connect(&addr, Duration::from_secs(5))
                .await
                .unwrap();
            let got = c.read_reply().await;
            assert!(
                matches!(got, Err(RespError::Protocol(_))),
                "{bytes:?}: {got:?}"
            );
        }
    }
}
