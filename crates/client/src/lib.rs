//! A Rust client for replikv that follows the topology: it finds the leader by asking the
//! nodes (Redis Sentinel's `SENTINEL get-master-addr-by-name`) and believing a majority,
//! sends writes there, sends reads to the leader or to its replicas by policy, carries
//! consistency tokens so replica reads see the client's own writes, and retries across a
//! failover only what may safely run twice.
//!
//! # Modules
//! - `client`: [`Client`], the retry loop, leader discovery and read routing.
//! - `config`: [`ClientConfig`], [`ReadPolicy`] and the bounds the client keeps.
//! - `error`: [`Error`] (what an operation fails with) and [`Failure`] (why one attempt did).
//! - `idempotency`: [`Idempotency`] and the table of which commands may run twice.
//! - `reply_class`: [`ReplyClass`], error replies sorted into answers, failover symptoms
//!   given before a command ran, and failover symptoms that may follow its execution.
//! - `leader_vote`: the majority vote over the nodes' answers.
//! - `discovery`: asking the nodes (`SENTINEL get-master-addr-by-name`, `SENTINEL
//!   replicas`) and reading their answers.
//! - `connection`: one RESP2 connection, on `replikv_proto`'s codec.
//!
//! # Retries in one paragraph
//! Connection failures, timeouts, `READONLY`, `TRYAGAIN` and `NOREPLICAS` are failover
//! symptoms: the client asks the nodes who leads again and, within
//! [`ClientConfig::failover_timeout`], tries again, but a [non-idempotent](Idempotency)
//! operation only when the earlier attempt certainly did not execute (nothing was sent, or a
//! reply of [`ReplyClass::NotExecuted`]). One that may have executed fails with
//! [`Error::Indeterminate`] and is never sent twice.
//!
//! # Example
//! ```no_run
//! use replikv_client::{Client, ClientConfig, Error, ReadPolicy};
//!
//! # async fn example() -> Result<(), Error> {
//! let mut client = Client::connect(ClientConfig {
//!     read_policy: ReadPolicy::AnyReplica,
//!     ..ClientConfig::new(["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"])
//! })
//! .await?;
//! client.set("greeting", "hello").await?;
//! // Read on a replica, which first waits until it has applied the write above.
//! assert_eq!(client.get("greeting").await?.as_deref(), Some(&b"hello"[..]));
//! match client.incr("visits").await {
//!     Ok(n) => println!("visit {n}"),
//!     // The increment may or may not have been applied; it was not sent twice.
//!     Err(Error::Indeterminate { cause }) => println!("unknown outcome: {cause}"),
//!     Err(e) => return Err(e),
//! }
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod client;
mod config;
mod connection;
mod discovery;
mod error;
mod idempotency;
mod leader_vote;
mod reply_class;

pub use client::{Client, ClientStats};
pub use config::{
    ClientConfig, ReadPolicy, BACKOFF_MAX, BACKOFF_MIN, CLUSTER_NAME_DEFAULT,
    DISCOVERY_FALLBACK_AFTER, FAILOVER_TIMEOUT_DEFAULT, NODES_MAX, NODE_ANSWER_TIMEOUT_MAX,
    OP_TIMEOUT_DEFAULT, REPLICAS_MAX, REPLICAS_REFRESH_INTERVAL, REPLICA_DOWN_PAUSE,
    REPLY_BYTES_MAX_DEFAULT,
};
pub use error::{Error, Failure};
pub use idempotency::Idempotency;
pub use replikv_core::LogPosition;
pub use replikv_proto::Frame;
pub use reply_class::ReplyClass;
