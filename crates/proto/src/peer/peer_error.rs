//! The error the peer frame codec returns.

use super::peer_frame::PEER_PROTOCOL_VERSION;
use super::peer_message_kind::PeerMessageKind;

/// Bytes that are not a valid peer frame and can never become one by reading more, or a
/// message too large to frame. The link that produced it is closed; the node carries on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The first four bytes are not `RKVP`: the other end does not speak the peer protocol.
    #[error("bad magic {found:02x?}: not a replikv peer frame")]
    BadMagic {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The frame's protocol version is not one this node speaks.
    #[error(
        "unsupported peer protocol version {version} (this node speaks {PEER_PROTOCOL_VERSION})"
    )]
    UnsupportedVersion {
        /// The version in the header.
        version: u16,
    },
    /// The frame's kind code is not one this version knows.
    #[error("unknown peer message kind {kind}")]
    UnknownKind {
        /// The code in the header.
        kind: u16,
    },
    /// The declared body length is over the limit for its kind. Detected from the header
    /// alone, before any of the body is awaited or allocated.
    #[error("{kind} body of {body_bytes} bytes is over the limit of {body_bytes_max} bytes")]
    BodyTooLarge {
        /// The message kind.
        kind: PeerMessageKind,
        /// The declared (or, when encoding, the serialized) body length.
        body_bytes: u64,
        /// The limit it broke.
        body_bytes_max: u64,
    },
    /// The CRC32C of the header's first 12 bytes and the body differs from the header's:
    /// corrupted on the way.
    #[error(
        "{kind} frame checksum mismatch: header says {expected:#010x}, frame has {actual:#010x}"
    )]
    ChecksumMismatch {
        /// The message kind.
        kind: PeerMessageKind,
        /// The checksum in the header.
        expected: u32,
        /// The checksum of the frame received.
        actual: u32,
    },
    /// The body does not decode as its kind's fields (the checksum matched, so the sender
    /// built it wrong).
    #[error("undecodable {kind} body")]
    BodyUndecodable {
        /// The message kind.
        kind: PeerMessageKind,
        /// What postcard found wrong.
        #[source]
        source: postcard::Error,
    },
    /// The body decodes but has bytes left over after its kind's fields.
    #[error("{kind} body has {trailing_bytes} bytes past its last field")]
    BodyTrailingBytes {
        /// The message kind.
        kind: PeerMessageKind,
        /// How many bytes were left.
        trailing_bytes: usize,
    },
}
