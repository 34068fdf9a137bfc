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
        Ok(Socket { fd })
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.fd.get_ref().peer_addr().ok()
    }

    /// The local address the client reached.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.fd.get_ref().local_addr().ok()
    }

    /// Reads what is available (waiting until something is) through `scratch` and appends it
    /// to `buf`; 0 means the peer closed its side.
    ///
    /// # Errors
    /// The read failed.
    pub async fn read_into(&self, buf: &mut BytesMut, scratch: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
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

    /// Writes as much of `out` as the socket takes now, without waiting, and removes it from
    /// `out`.
    ///
    /// # Errors
    /// The write failed (the peer is gone).
    pub fn try_write(&self, out: &mut BytesMut) -> io::Result<()> {
        while !out.is_empty() {
            match self.fd.get_ref().write(out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    let _ = out.split_to(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        out.clear();
        Ok(())
    }

    /// Waits until the socket takes some of `out`, writes it and removes it from `out`.
    ///
    /// # Errors
    /// The write failed (the peer is gone).
    pub async fn write_some(&self, out: &mut BytesMut) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|s| s.get_ref().write(out)) {
                Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(Ok(n)) => {
                    let _ = out.split_to(n);
                    return Ok(());
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    }

    /// Writes all of `data`, waiting for room as needed.
    ///
    /// # Errors
    /// The write failed (the peer is gone).
    pub async fn write_all(&self, data: &[u8]) -> io::Result<()> {
        let mut rest = BytesMut::from(data);
        self.try_write(&mut rest)?;
        while !rest.is_empty() {
            self.write_some(&mut rest).await?;
        }
        Ok(())
    }

    /// Closes the sending side (the peer sees end of stream).
    pub fn shutdown_write(&self) {
        // The peer may already be gone; then there is nothing to close.
        let _ = self.fd.get_ref().shutdown(Shutdown::Write);
    }
}
