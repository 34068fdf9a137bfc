//! The peer protocol: framed, checksummed messages on node-to-node links, and the MAC of the
//! mutual handshake. Pure codecs: no I/O, no clocks, no randomness (nonces come from the
//! caller). Byte layouts and the handshake sequence are in `docs/design/peer-protocol.md`.
//!
//! - `peer_frame`: [`encode_frame`], [`decode_frame`] and the frame constants.
//! - `peer_message`: [`PeerMessage`], [`PeerRecord`], [`DownstreamReplica`];
//!   `peer_message_kind`: [`PeerMessageKind`], the header's kind codes.
//! - `peer_error`: [`PeerError`].
//! - `transcript`: [`Transcript`], [`auth_mac`], [`verify_mac`].

mod peer_error;
mod peer_frame;
mod peer_message;
mod peer_message_kind;
mod transcript;

#[cfg(test)]
mod peer_frame_test;

pub use peer_error::PeerError;
pub use peer_frame::{
    decode_frame, encode_frame, PEER_BODY_BYTES_MAX_DEFAULT, PEER_CONTROL_BODY_BYTES_MAX,
    PEER_FRAME_HEADER_BYTES, PEER_MAGIC, PEER_PROTOCOL_VERSION,
};
pub use peer_message::{
    DownstreamReplica, PeerMessage, PeerRecord, PEER_MAC_BYTES, PEER_NONCE_BYTES,
};
pub use peer_message_kind::PeerMessageKind;
pub use transcript::{auth_mac, verify_mac, AuthRole, Transcript};
