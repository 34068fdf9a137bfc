//! A resumable request parser for one connection.

use bytes::{Bytes, BytesMut};

use crate::request::{parse_inline, scan_multibulk, slice_args, MultibulkScan, ScanOutcome};
use crate::{Limits, ProtocolError};

/// Argument positions a decoder keeps allocated between requests; a request with more
/// arguments than this releases its list once it completes.
const SPANS_KEPT_MAX: usize = 4096;

/// Parses client requests like [`parse_request`](crate::parse_request), but remembers how far
/// it got in an incomplete request, so each call only looks at the bytes that arrived since the
/// last one. A request declaring a million arguments that trickles in over many reads costs
/// time linear in its size, where re-parsing from the start would be quadratic.
///
/// The contract: between calls that return `Ok(None)` the caller may only append to the
/// buffer; every call gets the same buffer. A call that returns a request (or an error) ends
/// the request, and the next call starts afresh.
///
/// # Example
/// ```
/// use bytes::BytesMut;
/// use replikv_proto::{Limits, RequestDecoder};
///
/// let mut decoder = RequestDecoder::new(Limits::default());
/// let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1"[..]);
/// assert_eq!(decoder.decode(&mut buf), Ok(None));
/// buf.extend_from_slice(b"\r\nk\r\n");
/// let args = decoder.decode(&mut buf).unwrap().unwrap();
/// assert_eq!(args, vec![&b"GET"[..], &b"k"[..]]);
/// assert!(buf.is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct RequestDecoder {
    limits: Limits,
    /// Progress in the multibulk request at the front of the buffer.
    scan: MultibulkScan,
    /// `(start, len)` of each argument of that request read so far; at most
    /// `limits.multibulk_count_max` entries, each backed by bytes already in the buffer.
    spans: Vec<(usize, usize)>,
    /// Bytes of an inline request already searched for `\n` in vain.
    inline_searched: usize,
    /// Buffer length at the last call that returned `Ok(None)`; the buffer may only grow.
    buf_len_seen: usize,
}

impl RequestDecoder {
    /// A decoder that enforces `limits`.
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        RequestDecoder {
            limits,
            scan: MultibulkScan::default(),
            spans: Vec::new(),
            inline_searched: 0,
            buf_len_seen: 0,
        }
    }

    /// The limits this decoder enforces.
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Forgets any partly read request (for a caller that discards its buffer).
    pub fn reset(&mut self) {
        self.scan = MultibulkScan::default();
        self.spans.clear();
        if self.spans.capacity() > SPANS_KEPT_MAX {
            self.spans = Vec::new();
        }
        self.inline_searched = 0;
        self.buf_len_seen = 0;
    }

    /// Parses one request from the front of `buf`, resuming where the last call stopped.
    /// Returns what [`parse_request`](crate::parse_request) would return for the same bytes.
    ///
    /// # Errors
    /// The same [`ProtocolError`]s as [`parse_request`](crate::parse_request); `buf` is left
    /// unchanged and the decoder is reset.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        if buf.len() < self.buf_len_seen {
            // The caller broke the contract by removing bytes; the saved progress no longer
            // describes this buffer. Start over rather than slice out of bounds.
            debug_assert!(
                false,
                "buffer shrank from {} to {} bytes between decode calls",
                self.buf_len_seen,
                buf.len()
            );
            self.reset();
        }
        let result = match buf.first() {
            None => Ok(None),
            Some(b'*') => self.decode_multibulk(buf),
            Some(_) => parse_inline(buf, &self.limits, &mut self.inline_searched),
        };
        match &result {
            Ok(None) => self.buf_len_seen = buf.len(),
            Ok(Some(_)) | Err(_) => self.reset(),
        }
        result
    }

    fn decode_multibulk(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let spans = &mut self.spans;
        let outcome = scan_multibulk(buf, &mut self.scan, &self.limits, &mut |start, len| {
            spans.push((start, len));
        })?;
        match outcome {
            ScanOutcome::Incomplete => Ok(None),
            ScanOutcome::Complete { end } => {
                let request = buf.split_to(end).freeze();
                Ok(Some(slice_args(request, self.spans.iter().copied())))
            }
        }
    }
}
