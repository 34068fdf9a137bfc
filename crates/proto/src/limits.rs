//! Bounds on what one client request may declare.

/// Longest `*<count>` or `$<len>` header line the request parser waits for before it gives up
/// (Redis `PROTO_INLINE_MAX_SIZE`, 64 KiB). Past it, a header without `\r` is an error.
pub const HEADER_BYTES_MAX: usize = 64 * 1024;

/// Bounds on what one client request may declare, checked before anything is allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string (Redis `proto-max-bulk-len`, default 512 MiB). A larger declared
    /// length is rejected with `invalid bulk length` before any byte of it is awaited.
    pub bulk_bytes_max: usize,
    /// Most elements in one multibulk request (Redis: 1024*1024*1024 for authenticated
    /// clients). A larger declared count is rejected with `invalid multibulk length`.
    pub multibulk_count_max: usize,
    /// Longest inline command line (Redis: 64 KiB). A buffer holding more than this many
    /// bytes without a `\n` is rejected with `too big inline request`.
    pub inline_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            bulk_bytes_max: 512 * 1024 * 1024,
            multibulk_count_max: 1024 * 1024 * 1024,
            inline_bytes_max: 64 * 1024,
        }
    }
}
