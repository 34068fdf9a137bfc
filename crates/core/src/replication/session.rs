//! Consistency tokens and the read guarantees a client session can ask a replica for.
//!
//! A token is the log position a reply reflects, written `EPOCH:LSN` (the same text as
//! [`LogPosition`]'s `Display`). A client passes the token of its write to a replica to read
//! its own writes; a session with monotonic reads never accepts a reply older than one it has
//! seen; a staleness bound refuses a replica that is too far behind its leader.

use crate::position::{Epoch, LogPosition, Lsn};

/// A token that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid consistency token: expected EPOCH:LSN, as returned by REPLIKV TOKEN")]
pub struct TokenError;

/// Parses a token, `EPOCH:LSN` in decimal.
///
/// # Errors
/// [`TokenError`] for anything else.
pub fn parse_token(token: &[u8]) -> Result<LogPosition, TokenError> {
    let text = std::str::from_utf8(token).map_err(|_| TokenError)?;
    let (epoch, lsn) = text.split_once(':').ok_or(TokenError)?;
    let number = |s: &str| -> Result<u64, TokenError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TokenError);
        }
        s.parse().map_err(|_| TokenError)
    };
    Ok(LogPosition {
        epoch: Epoch(number(epoch)?),
        lsn: Lsn(number(lsn)?),
    })
}

/// What a node should do with a read, given the session's requirements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadDecision {
    /// Serve it now.
    Serve,
    /// Wait until the node has applied `until`, then decide again.
    Wait {
        /// The position the session requires.
        until: LogPosition,
    },
    /// Refuse: the node is further behind its leader than the session allows.
    TooStale {
        /// How far behind it is, in milliseconds (`u64::MAX` when unknown).
        staleness_ms: u64,
        /// The session's bound.
        bound_ms: u64,
    },
}

/// A client session's read requirements and what it has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Session {
    /// Read-your-writes: a position given by the client (its write's token); reads wait until
    /// it is applied.
    pub after: LogPosition,
    /// Monotonic reads: reads wait until everything the session has seen is applied.
    pub monotonic: bool,
    /// The newest position any reply to this session reflected.
    pub seen: LogPosition,
    /// Bounded staleness: refuse reads when the node lags its leader by more than this.
    pub max_staleness_ms: Option<u64>,
}

impl Session {
    /// The position the next read requires.
    #[must_use]
    pub fn required(&self) -> LogPosition {
        if self.monotonic {
            self.after.max(self.seen)
        } else {
            self.after
        }
    }

    /// Records that a reply reflected `pos`.
    pub fn observe(&mut self, pos: LogPosition) {
        self.seen = self.seen.max(pos);
    }

    /// Decides a read on a node that has applied `applied` and lags its leader by
    /// `staleness_ms` (`None` when unknown: a node that has never heard from a leader).
    /// A leader passes `Some(0)`.
    #[must_use]
    pub fn decide(&self, applied: LogPosition, staleness_ms: Option<u64>) -> ReadDecision {
        if let Some(bound_ms) = self.max_staleness_ms {
            let staleness_ms = staleness_ms.unwrap_or(u64::MAX);
            if staleness_ms > bound_ms {
                return ReadDecision::TooStale {
                    staleness_ms,
                    bound_ms,
                };
            }
        }
        let until = self.required();
        // Positions within one history order by LSN; an epoch change only happens at a
        // leader change, which keeps LSNs growing, so the LSN decides.
        if applied.lsn < until.lsn {
            ReadDecision::Wait { until }
        } else {
            ReadDecision::Serve
        }
    }
}
