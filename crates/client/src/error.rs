//! What an operation can fail with ([`Error`]), and why one attempt on one node failed
//! ([`Failure`]).

use std::time::Duration;

/// Why one attempt of an operation on one node failed. Carried by [`Error::Indeterminate`]
/// and [`Error::NoLeader`] to say what happened last.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// No connection could be opened (refused, unreachable, name not resolved, connect timed
    /// out): nothing of the request was sent.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The node.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The connection broke while the request was sent or its reply awaited.
    #[error("connection to {addr} failed: {source}")]
    Io {
        /// The node.
        addr: String,
        /// The I/O error (`UnexpectedEof` when the node closed the connection).
        #[source]
        source: std::io::Error,
    },
    /// No reply within [`ClientConfig::op_timeout`](crate::ClientConfig::op_timeout).
    #[error("no reply from {addr} within {after:?}")]
    Timeout {
        /// The node.
        addr: String,
        /// How long the attempt was given.
        after: Duration,
    },
    /// An error reply that is a failover symptom (`READONLY`, `TRYAGAIN`, `NOREPLICAS`, ...);
    /// see [`ReplyClass`](crate::ReplyClass).
    #[error("{addr} replied -{text}")]
    Reply {
        /// The node.
        addr: String,
        /// The error text, code first.
        text: String,
    },
    /// The node sent bytes that are not a RESP reply, or a reply too large.
    #[error("malformed reply from {addr}: {detail}")]
    Protocol {
        /// The node.
        addr: String,
        /// What was wrong.
        detail: String,
    },
}

/// What an operation of a [`Client`](crate::Client) can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A non-idempotent operation may or may not have taken effect: its request may have
    /// reached a node before the connection broke, the reply timed out, or the node said the
    /// write was applied but not acknowledged (`NOREPLICAS the write at ... was applied`,
    /// `TRYAGAIN the write at ... was applied here`). It was not retried, since a second
    /// attempt could apply it twice. Read the state to learn the outcome.
    #[error("the outcome is unknown (the operation may or may not have taken effect): {cause}")]
    Indeterminate {
        /// What happened to the attempt.
        #[source]
        cause: Failure,
    },
    /// An error reply that is not a failover symptom (`WRONGTYPE`, `ERR syntax error`,
    /// `WRONGPASS`, ...): the operation's own answer, not retried.
    #[error("server error: {0}")]
    Server(String),
    /// No leader took the operation within
    /// [`ClientConfig::failover_timeout`](crate::ClientConfig::failover_timeout): none was
    /// named, or the one named kept failing. For a non-idempotent operation this means it did
    /// not take effect (every attempt was refused before it ran); an idempotent one may have
    /// taken effect on an earlier attempt.
    #[error("no leader took the operation within {waited:?}{}", last.as_ref().map(|f| format!("; last failure: {f}")).unwrap_or_default())]
    NoLeader {
        /// How long the operation kept trying.
        waited: Duration,
        /// The last attempt's failure, if an attempt was made.
        last: Option<Failure>,
    },
    /// A local I/O error outside any attempt.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A reply that is well-formed RESP but not what the command returns (a typed method got
    /// the wrong type), or a malformed reply to an idempotent operation.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A configuration or request this client cannot use (no seeds, an empty command); nothing
    /// was sent.
    #[error("invalid use: {0}")]
    Usage(String),
}
