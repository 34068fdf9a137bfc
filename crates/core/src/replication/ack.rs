//! Acknowledgement modes: when a write's reply may be released.

use std::fmt;
use std::str::FromStr;

/// Largest `K` accepted in `semi-sync:K`.
pub const SEMI_SYNC_K_MAX: u32 = 1000;

/// What a write waits for before its reply is released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AckMode {
    /// The leader has the write durable.
    Async,
    /// The leader and at least `K` replicas have the write durable.
    SemiSync(u32),
    /// The leader and every in-sync replica have the write durable (at least one replica must
    /// be in sync).
    Sync,
    /// A majority of the cluster, the leader counted, has the write durable.
    Quorum,
}

/// A mode that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown acknowledgement mode `{0}`: expected async, semi-sync:K (K from 1 to 1000), sync or quorum")]
pub struct AckModeError(pub String);

impl FromStr for AckMode {
    type Err = AckModeError;

    /// Parses `async`, `sync`, `quorum`, `semi-sync:K`, `semi-sync K` or `semi-sync=K`,
    /// ignoring ASCII case.
    fn from_str(s: &str) -> Result<AckMode, AckModeError> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "async" => return Ok(AckMode::Async),
            "sync" => return Ok(AckMode::Sync),
            "quorum" => return Ok(AckMode::Quorum),
            _ => {}
        }
        let k = t
            .strip_prefix("semi-sync")
            .or_else(|| t.strip_prefix("semisync"))
            .map(|rest| rest.trim_start_matches([':', '=', ' ']))
            // Digits only: `u32::from_str` would also take a leading `+`.
            .filter(|k| k.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|k| k.parse::<u32>().ok())
            .filter(|k| (1..=SEMI_SYNC_K_MAX).contains(k));
        k.map(AckMode::SemiSync)
            .ok_or_else(|| AckModeError(s.to_string()))
    }
}

impl fmt::Display for AckMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AckMode::Async => f.write_str("async"),
            AckMode::SemiSync(k) => write!(f, "semi-sync:{k}"),
            AckMode::Sync => f.write_str("sync"),
            AckMode::Quorum => f.write_str("quorum"),
        }
    }
}

impl AckMode {
    /// When replies held in this mode give up: never under `async` (only the leader's own log
    /// is waited for, and its failure stops the node), else `timeout_ms` after `now_ms`.
    #[must_use]
    pub fn deadline_ms(self, now_ms: u64, timeout_ms: u64) -> u64 {
        if self == AckMode::Async {
            u64::MAX
        } else {
            now_ms.saturating_add(timeout_ms)
        }
    }

    /// Replicas that must be in sync before a write in this mode may start; fewer, and the
    /// write waits (and then fails) rather than silently settle for less.
    /// `cluster_size` counts the leader.
    #[must_use]
    pub fn replicas_needed(self, cluster_size: u32) -> u32 {
        match self {
            AckMode::Async => 0,
            AckMode::SemiSync(k) => k,
            AckMode::Sync => 1,
            AckMode::Quorum => cluster_size / 2,
        }
    }
}
