//! A client socket driven directly through the reactor, so that each request costs one `read`
//! and one `write`, as in Redis's event loop.
//!
//! Tokio's `TcpStream` keeps a socket marked readable until a read fails with `WouldBlock`, so
//! a request/reply connection pays a third system call per request: the read that finds nothing.
//! Here a short read (fewer bytes than there was room for) proves the kernel buffer was drained,
//! and the readiness is cleared at once; the reactor's next edge event marks it again.

use bytes::BytesMut;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Bytes read per system call at most.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A non-blocking client socket registered with the runtime's reactor.
pub struct Socket {
    fd: AsyncFd<TcpStream>,
    scratch: Box<[u8]>,
}

impl Socket {
    /// Takes over a tokio stream.
    ///
    /// # Errors
    /// The stream cannot be detached from tokio or registered again.
    pub fn new(stream: tokio::net::TcpStream) -> io::Result<Socket> {
        let std = stream.into_std()?;
        std.set_nonblocking(true)?;
        // SAFETY: the `TcpStream` owns a valid descriptor, and it is neither closed nor replaced
        // while the `AsyncFd` holds it (it is dropped with it).
        let fd = unsafe {
            AsyncFd::register_with_interest(std, Interest::READABLE | Interest::WRITABLE)?
        };
        Ok(Socket {
            fd,
            scratch: vec![0u8; READ_CHUNK_BYTES].into_boxed_slice(),
        })
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.fd.get_ref().peer_addr().ok()
    }

    /// Reads what is available (waiting until something is) and appends it to `buf`; 0 means
    /// the peer closed its side.
    ///
    /// # Errors
    /// The read failed.
    pub async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            let scratch = &mut self.scratch;
            match guard.try_io(|s| s.get_ref().read(scratch)) {
                Ok(Ok(n)) => {
                    if n > 0 && n < scratch.len() {
                        // Drained: the next read would only find nothing.
                        guard.clear_ready();
                    }
                    buf.extend_from_slice(&scratch[..n]);
                    return Ok(n);
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                // WouldBlock: `try_io` cleared the readiness; wait for the next event.
                Err(_would_block) => {}
            }
        }
    }

    /// Writes all of `data`, waiting for room as needed.
    ///
    /// # Errors
    /// The write failed (the peer is gone).
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            // Try first: a socket with room takes the reply without a trip to the reactor.
            match self.fd.get_ref().write(data) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut guard = self.fd.writable().await?;
                    guard.clear_ready();
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Closes the sending side (the peer sees end of stream).
    pub fn shutdown_write(&self) {
        // The peer may already be gone; then there is nothing to close.
        let _ = self.fd.get_ref().shutdown(Shutdown::Write);
    }
}

impl Write for &Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.fd.get_ref().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
