//! replikv's wire protocols: the RESP codec between clients and a node, and the peer frame
//! codec between nodes.
//!
//! Requests come in as RESP multibulk arrays (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) or inline
//! command lines (`GET k\r\n`), parsed with Redis 7's rules, limits and error texts. Replies
//! go out as RESP2 or RESP3, either from a [`Frame`] tree or through the `encode_*` helpers,
//! which the server's hot path uses to write straight into its output buffer.
//!
//! # Modules
//! - `request`: [`parse_request`], one request from the front of a buffer, zero-copy.
//! - `request_decoder`: [`RequestDecoder`], the same but resumable across reads.
//! - `split_args`: inline-line splitting with Redis's quoting rules (`sdssplitargs`).
//! - `limits`: [`Limits`] on declared sizes; `protocol_error`: [`ProtocolError`].
//! - `frame`: [`Frame`] and [`Frame::encode`]; `encode`: the `encode_*` helpers;
//!   `protocol`: [`Protocol`].
//! - `frame_parser`: [`parse_frame`], a RESP2/RESP3 reply decoder for clients and tests.
//! - `number`: [`parse_i64`] (Redis's `string2ll`) and [`format_double`] (Redis's `d2string`).
//! - `peer`: the node-to-node protocol: [`encode_frame`] and [`decode_frame`] for
//!   [`PeerMessage`]s in checksummed frames, and [`auth_mac`] / [`verify_mac`] for the mutual
//!   handshake over a [`Transcript`]. Layouts in `docs/design/peer-protocol.md`.
//!
//! # Example
//! ```
//! use bytes::BytesMut;
//! use replikv_proto::{encode_bulk, parse_frame, parse_request, Frame, Limits};
//!
//! let mut input = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n"[..]);
//! let limits = Limits::default();
//! assert_eq!(parse_request(&mut input, &limits).unwrap().unwrap(), vec!["GET", "k"]);
//! assert_eq!(parse_request(&mut input, &limits).unwrap().unwrap(), vec!["PING"]);
//! assert_eq!(parse_request(&mut input, &limits).unwrap(), None);
//!
//! let mut output = BytesMut::new();
//! encode_bulk(&mut output, b"value");
//! assert_eq!(&output[..], b"$5\r\nvalue\r\n");
//! let (reply, consumed) = parse_frame(&output).unwrap().unwrap();
//! assert_eq!(reply, Frame::Bulk("value".into()));
//! assert_eq!(consumed, output.len());
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod encode;
mod frame;
mod frame_parser;
mod limits;
mod number;
mod peer;
mod protocol;
mod protocol_error;
mod request;
mod request_decoder;
mod split_args;

pub use encode::{
    encode_array_header, encode_boolean, encode_bulk, encode_bulk_header, encode_double,
    encode_error, encode_integer, encode_map_header, encode_null, encode_ok, encode_push_header,
    encode_set_header, encode_simple, encode_verbatim,
};
pub use frame::Frame;
pub use frame_parser::{parse_frame, FRAME_DEPTH_MAX};
pub use limits::{Limits, HEADER_BYTES_MAX};
pub use number::{format_double, parse_i64, DOUBLE_TEXT_BYTES_MAX};
pub use peer::{
    auth_mac, decode_frame, encode_frame, verify_mac, AuthRole, DownstreamReplica, PeerError,
    PeerMessage, PeerMessageKind, PeerRecord, Transcript, PEER_BODY_BYTES_MAX_DEFAULT,
    PEER_CONTROL_BODY_BYTES_MAX, PEER_FRAME_HEADER_BYTES, PEER_MAC_BYTES, PEER_MAGIC,
    PEER_NONCE_BYTES, PEER_PROTOCOL_VERSION,
};
pub use protocol::Protocol;
pub use protocol_error::ProtocolError;
pub use request::parse_request;
pub use request_decoder::RequestDecoder;
