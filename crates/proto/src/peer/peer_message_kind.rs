//! The message kind codes carried in a peer frame header.

use std::fmt;

/// What a peer frame's body holds: the `kind` field of the frame header.
///
/// Codes are grouped by phase: 1–15 handshake and refusal, 16–31 log replication, 32–47
/// snapshot transfer. Once released, a code is never reused for a different body; a new body
/// layout gets a new code (or a new protocol version). Nothing has been released yet, so the
/// bodies of version 1 may still change in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u16)]
pub enum PeerMessageKind {
    /// [`PeerMessage::Hello`](crate::PeerMessage::Hello).
    Hello = 1,
    /// [`PeerMessage::Challenge`](crate::PeerMessage::Challenge).
    Challenge = 2,
    /// [`PeerMessage::Auth`](crate::PeerMessage::Auth).
    Auth = 3,
    /// [`PeerMessage::Refuse`](crate::PeerMessage::Refuse).
    Refuse = 4,
    /// [`PeerMessage::Fetch`](crate::PeerMessage::Fetch).
    Fetch = 16,
    /// [`PeerMessage::Entries`](crate::PeerMessage::Entries).
    Entries = 17,
    /// [`PeerMessage::Ack`](crate::PeerMessage::Ack).
    Ack = 18,
    /// [`PeerMessage::Heartbeat`](crate::PeerMessage::Heartbeat).
    Heartbeat = 19,
    /// [`PeerMessage::Downstream`](crate::PeerMessage::Downstream).
    Downstream = 20,
    /// [`PeerMessage::Lineage`](crate::PeerMessage::Lineage).
    Lineage = 21,
    /// [`PeerMessage::Truncate`](crate::PeerMessage::Truncate).
    Truncate = 22,
    /// [`PeerMessage::SnapshotBegin`](crate::PeerMessage::SnapshotBegin).
    SnapshotBegin = 32,
    /// [`PeerMessage::SnapshotChunk`](crate::PeerMessage::SnapshotChunk).
    SnapshotChunk = 33,
    /// [`PeerMessage::SnapshotEnd`](crate::PeerMessage::SnapshotEnd).
    SnapshotEnd = 34,
    /// [`PeerMessage::Control`](crate::PeerMessage::Control).
    Control = 48,
}

impl PeerMessageKind {
    /// Every kind, in code order.
    pub const ALL: [PeerMessageKind; 15] = [
        PeerMessageKind::Hello,
        PeerMessageKind::Challenge,
        PeerMessageKind::Auth,
        PeerMessageKind::Refuse,
        PeerMessageKind::Fetch,
        PeerMessageKind::Entries,
        PeerMessageKind::Ack,
        PeerMessageKind::Heartbeat,
        PeerMessageKind::Downstream,
        PeerMessageKind::Lineage,
        PeerMessageKind::Truncate,
        PeerMessageKind::SnapshotBegin,
        PeerMessageKind::SnapshotChunk,
        PeerMessageKind::SnapshotEnd,
        PeerMessageKind::Control,
    ];

    /// The code written in the frame header.
    #[must_use]
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The kind with this header code, or `None` for a code this version does not know.
    #[must_use]
    pub fn from_code(code: u16) -> Option<PeerMessageKind> {
        PeerMessageKind::ALL
            .into_iter()
            .find(|kind| kind.code() == code)
    }

    /// Whether bodies of this kind carry log or snapshot data and so may be as large as the
    /// link's configured maximum. Every other kind is a control message, bounded by
    /// [`PEER_CONTROL_BODY_BYTES_MAX`](crate::PEER_CONTROL_BODY_BYTES_MAX).
    #[must_use]
    pub fn is_bulk(self) -> bool {
        matches!(
            self,
            PeerMessageKind::Entries | PeerMessageKind::SnapshotChunk | PeerMessageKind::Control
        )
    }

    /// The name used in logs and error messages (`Entries`, `SnapshotChunk`...).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            PeerMessageKind::Hello => "Hello",
            PeerMessageKind::Challenge => "Challenge",
            PeerMessageKind::Auth => "Auth",
            PeerMessageKind::Refuse => "Refuse",
            PeerMessageKind::Fetch => "Fetch",
            PeerMessageKind::Entries => "Entries",
            PeerMessageKind::Ack => "Ack",
            PeerMessageKind::Heartbeat => "Heartbeat",
            PeerMessageKind::Downstream => "Downstream",
            PeerMessageKind::SnapshotBegin => "SnapshotBegin",
            PeerMessageKind::SnapshotChunk => "SnapshotChunk",
            PeerMessageKind::SnapshotEnd => "SnapshotEnd",
            PeerMessageKind::Control => "Control",
            PeerMessageKind::Lineage => "Lineage",
            PeerMessageKind::Truncate => "Truncate",
        }
    }
}

impl fmt::Display for PeerMessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
