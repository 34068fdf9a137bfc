//! What a [`Client`](crate::Client) is told at start, and the bounds it keeps.

use std::time::Duration;

/// The cluster name nodes answer Sentinel's discovery commands for unless `--cluster-name`
/// says otherwise.
pub const CLUSTER_NAME_DEFAULT: &str = "replikv";
/// Default [`ClientConfig::op_timeout`].
pub const OP_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3);
/// Default [`ClientConfig::failover_timeout`].
pub const FAILOVER_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Default [`ClientConfig::reply_bytes_max`]: Redis's largest bulk string (512 MiB) plus room
/// for the headers around it.
pub const REPLY_BYTES_MAX_DEFAULT: usize = 512 * 1024 * 1024 + 64 * 1024;

/// Most nodes a client keeps asking who leads: its seeds plus the nodes it learned. Bounds the
/// questions one discovery round sends and the connections it opens at once.
pub const NODES_MAX: usize = 64;
/// Most replicas a client keeps for [`ReadPolicy::AnyReplica`] (each holds one connection).
pub const REPLICAS_MAX: usize = 32;
/// Longest a node is given to answer `SENTINEL get-master-addr-by-name` (connect included),
/// when [`ClientConfig::op_timeout`] is longer: a node that does not answer in time is left
/// out of the vote, so one unreachable node cannot stall discovery.
pub const NODE_ANSWER_TIMEOUT_MAX: Duration = Duration::from_secs(1);
/// How long discovery waits for a majority before it settles for the address most nodes name
/// (when one address is named more often than every other). Longer than a deposed leader's
/// lease plus the election that replaces it (0.5 s plus a few ms with the server's defaults),
/// so a deposed leader that still names itself is not taken while the others catch up.
pub const DISCOVERY_FALLBACK_AFTER: Duration = Duration::from_secs(1);
/// First pause between attempts across a failover; it doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(25);
/// Longest pause between attempts across a failover.
pub const BACKOFF_MAX: Duration = Duration::from_millis(400);
/// How often a client reading under [`ReadPolicy::AnyReplica`] asks the leader for its
/// replicas again (besides after every discovery), so replicas that joined are used.
pub const REPLICAS_REFRESH_INTERVAL: Duration = Duration::from_secs(2);
/// How long a replica that failed (connection refused, timeout, broken reply) is left out of
/// the read rotation before it is tried again.
pub const REPLICA_DOWN_PAUSE: Duration = Duration::from_secs(1);

/// Where reads go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadPolicy {
    /// Every read goes to the leader: linearizable as far as the leader is (it releases a
    /// read's reply only once the state it saw is committed under the write mode).
    #[default]
    Leader,
    /// Reads go round-robin to the replicas learned through `SENTINEL replicas`, falling back
    /// to the leader when there are none or one refuses (a hot standby, too stale, not caught
    /// up with this client's writes in time) or fails. With
    /// [`ClientConfig::read_your_writes`] a replica waits until it has applied this client's
    /// last write before it answers.
    AnyReplica,
}

/// Settings of a [`Client`](crate::Client).
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `host:port` of any nodes of the cluster (their client ports). The client asks them,
    /// and every node it learns of, who leads. At most [`NODES_MAX`] are used.
    pub seeds: Vec<String>,
    /// The name the nodes answer Sentinel's discovery commands for (`--cluster-name`).
    pub cluster_name: String,
    /// Sent with `AUTH` on every connection, when set.
    pub password: Option<String>,
    /// Longest one attempt of an operation may take on one node, connecting included. A
    /// write that waits for replicas (the server's `--write-ack-timeout-ms`) needs at least
    /// that long to learn the server's own verdict.
    pub op_timeout: Duration,
    /// How long an operation keeps retrying across a failover (rediscovering the leader
    /// between attempts) before it fails with [`Error::NoLeader`](crate::Error::NoLeader).
    pub failover_timeout: Duration,
    /// Where reads go.
    pub read_policy: ReadPolicy,
    /// Under [`ReadPolicy::AnyReplica`]: after each write, fetch its consistency token
    /// (`REPLIKV TOKEN`, pipelined with the write), and have a replica wait until it has
    /// applied it before it answers a read (`REPLIKV AFTER`). No effect under
    /// [`ReadPolicy::Leader`], where every read sees every acknowledged write anyway.
    pub read_your_writes: bool,
    /// Largest reply accepted; a larger one closes the connection as a protocol error.
    pub reply_bytes_max: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            seeds: Vec::new(),
            cluster_name: CLUSTER_NAME_DEFAULT.to_string(),
            password: None,
            op_timeout: OP_TIMEOUT_DEFAULT,
            failover_timeout: FAILOVER_TIMEOUT_DEFAULT,
            read_policy: ReadPolicy::Leader,
            read_your_writes: true,
            reply_bytes_max: REPLY_BYTES_MAX_DEFAULT,
        }
    }
}

impl ClientConfig {
    /// The defaults, with `seeds`.
    #[must_use]
    pub fn new<S: Into<String>>(seeds: impl IntoIterator<Item = S>) -> ClientConfig {
        ClientConfig {
            seeds: seeds.into_iter().map(Into::into).collect(),
            ..ClientConfig::default()
        }
    }

    /// How long one node is given to answer a discovery question.
    pub(crate) fn node_answer_timeout(&self) -> Duration {
        self.op_timeout.min(NODE_ANSWER_TIMEOUT_MAX)
    }

    /// How long discovery waits for a majority before it settles for the most-named address:
    /// [`DISCOVERY_FALLBACK_AFTER`], or half the failover timeout when that is shorter.
    pub(crate) fn discovery_fallback_after(&self) -> Duration {
        DISCOVERY_FALLBACK_AFTER.min(self.failover_timeout / 2)
    }
}

const _: () = assert!(BACKOFF_MIN.as_nanos() <= BACKOFF_MAX.as_nanos());
const _: () = assert!(REPLICAS_MAX <= NODES_MAX);
