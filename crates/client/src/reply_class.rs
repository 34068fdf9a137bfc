//! Sorting error replies into the command's own answers and failover symptoms, and the
//! symptoms into "certainly not executed" and "may have been executed": [`ReplyClass`].
//!
//! The texts come from the server: `replikv_core::replication::machine` (`READONLY`,
//! `NOREPLICAS`, `NO_LEASE` and the texts of held replies that expire or are failed),
//! `server::conn` (a replica's read gate, write forwarding) and `server::node` (switchover,
//! shutdown).

use replikv_core::replication::machine::{NOREPLICAS, NO_LEASE};

/// What an error reply says about the command that got it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyClass {
    /// Not a failover symptom: the command's own answer (`WRONGTYPE`, `ERR syntax error`,
    /// `NOAUTH`, ...). Not retried.
    Answer,
    /// A failover symptom given before the command ran on that node, so it certainly did not
    /// execute: any operation may be retried elsewhere.
    ///
    /// - `READONLY ...`: a replica refuses a write before running it
    ///   ([`READONLY`](replikv_core::replication::machine::READONLY)); a leader handing over in a switchover fails only the writes it
    ///   parked, never ran (`READONLY the leader moved to ... during a switchover`: the
    ///   hand-over waits until no reply is held); a forwarding replica without an upstream.
    /// - exactly [`NO_LEASE`] (`TRYAGAIN this node holds no leader lease ...; the write was
    ///   not applied`): a leader without a lease fails a parked write at its deadline.
    /// - exactly [`NOREPLICAS`] (`NOREPLICAS Not enough good replicas to write.`): a write
    ///   that never started because too few replicas were in sync for its mode.
    /// - `STANDBY ...`, `STALE ...`, `TRYAGAIN this replica has applied up to ...`: a
    ///   replica's read gate refuses a read before running it (hot standby, past the
    ///   staleness bound, not caught up with the session's token in time).
    /// - `LOADING ...`, `MASTERDOWN ...`: Redis's refusals before running a command.
    NotExecuted,
    /// A failover symptom that may follow the command's execution: only idempotent operations
    /// are retried; others fail with [`Error::Indeterminate`](crate::Error::Indeterminate).
    ///
    /// - any other `TRYAGAIN ...`: `the write at E:L was applied here, but this leader's lease
    ///   ran out before it was acknowledged`, a read whose state could not be confirmed, a
    ///   replica whose state was replaced by a snapshot.
    /// - any other `NOREPLICAS ...`: `the write at E:L was applied and made durable on the
    ///   leader, but not on enough replicas within T ms`.
    /// - `ERR this node became a replica; the write was not acknowledged and may be lost`.
    /// - `ERR server is shutting down...`: the node stopped with the reply held.
    /// - `ERR cannot forward the write to the upstream ...`: a forwarding replica lost its
    ///   upstream with the write sent.
    MaybeExecuted,
}

/// Error codes (the first word) given before the command ran.
const NOT_EXECUTED_CODES: &[&str] = &["READONLY", "STANDBY", "STALE", "LOADING", "MASTERDOWN"];

/// A replica's read gate gives up waiting for the session's token before running the read; the
/// other `TRYAGAIN` texts may follow an execution.
const READ_WAIT_TIMED_OUT_PREFIX: &str = "TRYAGAIN this replica has applied up to ";

/// Error codes of failover symptoms that may follow the command's execution (unless the text is
/// one of the exact not-executed ones).
const MAYBE_EXECUTED_CODES: &[&str] = &["TRYAGAIN", "NOREPLICAS"];

/// `ERR` texts of failover symptoms that may follow the command's execution.
const MAYBE_EXECUTED_PREFIXES: &[&str] = &[
    "ERR this node became a replica",
    "ERR server is shutting down",
    "ERR cannot forward the write to the upstream",
];

impl ReplyClass {
    /// The class of the error reply `text` (without the leading `-`, code first).
    #[must_use]
    pub fn of(text: &str) -> ReplyClass {
        let code = text.split_once(' ').map_or(text, |(code, _)| code);
        if text == NO_LEASE
            || text == NOREPLICAS
            || text.starts_with(READ_WAIT_TIMED_OUT_PREFIX)
            || NOT_EXECUTED_CODES.contains(&code)
        {
            return ReplyClass::NotExecuted;
        }
        if MAYBE_EXECUTED_CODES.contains(&code)
            || MAYBE_EXECUTED_PREFIXES.iter().any(|p| text.starts_with(p))
        {
            return ReplyClass::MaybeExecuted;
        }
        ReplyClass::Answer
    }

    /// Whether the reply is a failover symptom (the client looks for the leader again).
    #[must_use]
    pub fn is_failover_symptom(self) -> bool {
        self != ReplyClass::Answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use replikv_core::replication::machine::READONLY;
    use ReplyClass::{Answer, MaybeExecuted, NotExecuted};

    /// Every error text the server gives during a failover, and a few answers, by class.
    #[test]
    fn classification_of_error_replies() {
        let cases: &[(&str, ReplyClass)] = &[
            (READONLY, NotExecuted),
            (
                "READONLY the leader moved to 127.0.0.1:7001 during a switchover; retry there",
                NotExecuted,
            ),
            (NO_LEASE, NotExecuted),
            (NOREPLICAS, NotExecuted),
            (
                "STANDBY this replica is a hot standby and serves no reads; its upstream is x:1",
                NotExecuted,
            ),
            (
                "STALE this replica lags its leader by 900 ms, more than the 500 ms allowed; read from x:1",
                NotExecuted,
            ),
            (
                "TRYAGAIN this replica has applied up to 2:10 and did not reach 2:12 within 100 ms; read from x:1",
                NotExecuted,
            ),
            ("LOADING Redis is loading the dataset in memory", NotExecuted),
            (
                "TRYAGAIN the write at 3:17 was applied here, but this leader's lease ran out before it was acknowledged; it may or may not survive a failover",
                MaybeExecuted,
            ),
            (
                "TRYAGAIN this leader's lease ran out before the state this read saw, up to 3:17, could be confirmed",
                MaybeExecuted,
            ),
            (
                "TRYAGAIN this replica's state was replaced by a snapshot from its upstream; retry",
                MaybeExecuted,
            ),
            (
                "NOREPLICAS the write at 3:17 was applied and made durable on the leader, but not on enough replicas within 10000 ms; it may not survive a failover",
                MaybeExecuted,
            ),
            (
                "NOREPLICAS the state this read saw, up to 3:17, was not on enough replicas within 10000 ms for its mode; it may not survive a failover",
                MaybeExecuted,
            ),
            (
                "ERR this node became a replica; the write was not acknowledged and may be lost",
                MaybeExecuted,
            ),
            (
                "ERR server is shutting down; the write is durable here but was not acknowledged by the replicas its mode needs",
                MaybeExecuted,
            ),
            ("ERR server is shutting down", MaybeExecuted),
            (
                "ERR cannot forward the write to the upstream 127.0.0.1:7000: connection refused",
                MaybeExecuted,
            ),
            ("ERR value is not an integer or out of range", Answer),
            (
                "WRONGTYPE Operation against a key holding the wrong kind of value",
                Answer,
            ),
            ("NOAUTH Authentication required.", Answer),
            ("ERR unknown command 'foo', with args beginning with: ", Answer),
            // The code decides, not the text after it.
            ("READONLY", NotExecuted),
            ("TRYAGAIN", MaybeExecuted),
            ("NOREPLICAS Not enough good replicas", MaybeExecuted),
            ("READONLYISH x", Answer),
        ];
        for (text, want) in cases {
            assert_eq!(ReplyClass::of(text), *want, "{text}");
        }
    }

    #[test]
    fn only_answers_are_not_failover_symptoms() {
        assert!(!Answer.is_failover_symptom());
        assert!(NotExecuted.is_failover_symptom());
        assert!(MaybeExecuted.is_failover_symptom());
    }
}
