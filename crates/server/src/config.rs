//! Node configuration: defaults, then a TOML file, then `REPLIKV_*` environment variables, then
//! command-line flags, each overriding the one before.

use clap::{Args, ValueEnum};
use replikv_core::replication::{AckMode, AckModeError};
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// When the write-ahead log is forced to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    /// A write is acknowledged only after its log record is fsynced (group commit).
    Always,
    /// Writes are acknowledged once handed to the OS; the log is fsynced every
    /// `fsync-interval-ms`.
    Interval,
}

/// `replikv serve` settings as given on the command line or in the environment. Every field is
/// optional so that a value from the config file shows through when neither is set.
#[derive(Args, Debug, Default, Clone)]
pub struct ServeArgs {
    /// TOML config file; its keys are the long flag names with `_` for `-`.
    #[arg(long, env = "REPLIKV_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the write-ahead log and snapshots [default: ./replikv-data].
    #[arg(long, env = "REPLIKV_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address the client (RESP) and admin (HTTP) ports listen on [default: 127.0.0.1].
    #[arg(long, env = "REPLIKV_BIND")]
    pub bind: Option<IpAddr>,
    /// Client port, speaking the Redis protocol (RESP2/RESP3) [default: 6379].
    #[arg(long, env = "REPLIKV_PORT")]
    pub port: Option<u16>,
    /// Admin HTTP port: /health, /status, /metrics [default: 9379]. 0 disables it.
    #[arg(long, env = "REPLIKV_ADMIN_PORT")]
    pub admin_port: Option<u16>,
    /// Log durability: `always` (acknowledge after fsync) or `interval` [default: always].
    #[arg(long, env = "REPLIKV_FSYNC")]
    pub fsync: Option<FsyncMode>,
    /// With `--fsync interval`, milliseconds between fsyncs [default: 1000].
    #[arg(long, env = "REPLIKV_FSYNC_INTERVAL_MS")]
    pub fsync_interval_ms: Option<u64>,
    /// Password clients must give with AUTH or HELLO (Redis `requirepass`) [default: none].
    #[arg(long, env = "REPLIKV_REQUIREPASS")]
    pub requirepass: Option<String>,
    /// Most concurrent client connections (Redis `maxclients`) [default: 10000].
    #[arg(long, env = "REPLIKV_MAXCLIENTS")]
    pub maxclients: Option<usize>,
    /// Largest bulk string a client may send (Redis `proto-max-bulk-len`) [default: 536870912].
    #[arg(long, env = "REPLIKV_PROTO_MAX_BULK_LEN")]
    pub proto_max_bulk_len: Option<usize>,
    /// Most bytes buffered for one client's unfinished requests (Redis
    /// `client-query-buffer-limit`) [default: 1073741824].
    #[arg(long, env = "REPLIKV_CLIENT_QUERY_BUFFER_LIMIT")]
    pub client_query_buffer_limit: Option<usize>,
    /// Size at which a log segment is closed and a new one started [default: 67108864].
    #[arg(long, env = "REPLIKV_SEGMENT_BYTES_MAX")]
    pub segment_bytes_max: Option<u64>,
    /// Bytes of log kept after a snapshot covers them, for replicas that fall behind
    /// [default: 67108864].
    #[arg(long, env = "REPLIKV_WAL_RETENTION_BYTES")]
    pub wal_retention_bytes: Option<u64>,
    /// Take a snapshot (and drop the log it covers) after this many log entries; 0 = never
    /// automatically [default: 1000000].
    #[arg(long, env = "REPLIKV_SNAPSHOT_EVERY_ENTRIES")]
    pub snapshot_every_entries: Option<u64>,
    /// Log filter, as `RUST_LOG` (`info`, `replikv_server=debug`, ...) [default: info].
    #[arg(long, env = "REPLIKV_LOG")]
    pub log: Option<String>,
    /// Replicate from this upstream, given by its client address `HOST:PORT` (Redis
    /// `replicaof`; `REPLICAOF host port` changes it at run time). The upstream may be the
    /// leader or another replica (cascading) [default: none, this node leads].
    #[arg(long, env = "REPLIKV_REPLICAOF")]
    pub replicaof: Option<String>,
    /// Shared secret that authenticates node-to-node links; without it a node accepts only
    /// loopback peers [default: none].
    #[arg(long, env = "REPLIKV_CLUSTER_SECRET")]
    pub cluster_secret: Option<String>,
    /// Name of the cluster; peers with another name are refused [default: replikv].
    #[arg(long, env = "REPLIKV_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// This node's id on peer links [default: a random id kept in the data directory].
    #[arg(long, env = "REPLIKV_NODE_ID")]
    pub node_id: Option<String>,
    /// Default write acknowledgement: `async` (leader durable), `semi-sync:K` (K replicas
    /// durable), `sync` (every in-sync replica durable) or `quorum` (a majority of the
    /// cluster durable). Clients may choose per connection with `REPLIKV ACK` [default: async].
    #[arg(long, env = "REPLIKV_ACK")]
    pub ack: Option<String>,
    /// Nodes in the cluster, the leader included, for `quorum`; 0 counts the leader and the
    /// replicas it knows of [default: 0].
    #[arg(long, env = "REPLIKV_CLUSTER_SIZE")]
    pub cluster_size: Option<u32>,
    /// A replica whose oldest missing entry is older than this leaves the in-sync set, and
    /// rejoins it once within it again [default: 5000].
    #[arg(long, env = "REPLIKV_REPLICA_LAG_MAX_MS")]
    pub replica_lag_max_ms: Option<u64>,
    /// How long a write waits for the replicas its acknowledgement mode needs before it fails
    /// with an error [default: 10000].
    #[arg(long, env = "REPLIKV_WRITE_ACK_TIMEOUT_MS")]
    pub write_ack_timeout_ms: Option<u64>,
    /// On a replica: `serve` reads (read pool) or refuse them (`standby`, hot standby)
    /// [default: serve].
    #[arg(long, env = "REPLIKV_REPLICA_READS")]
    pub replica_reads: Option<ReplicaReads>,
    /// On a replica: `refuse` writes with -READONLY, or `forward` them to the upstream
    /// [default: refuse].
    #[arg(long, env = "REPLIKV_REPLICA_WRITES")]
    pub replica_writes: Option<ReplicaWrites>,
    /// How long a read on a replica waits to reach a client's consistency token before it
    /// fails [default: 1000].
    #[arg(long, env = "REPLIKV_READ_WAIT_TIMEOUT_MS")]
    pub read_wait_timeout_ms: Option<u64>,
    /// Interval of heartbeats and acknowledgements on replication links [default: 100].
    #[arg(long, env = "REPLIKV_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Turns the control plane on (automatic failover): the founding voters as
    /// `ID=HOST:PORT,...` (node id and client address), the same list on every one of them,
    /// this node included (its id is `--node-id`). The voters elect the leader among
    /// themselves and repoint the replicas; `--replicaof` is not allowed with it
    /// [default: none, no automatic failover].
    #[arg(long, env = "REPLIKV_CONTROL_PEERS")]
    pub control_peers: Option<String>,
    /// How long the leader's lease lasts; a leader that cannot renew it through the control
    /// plane stops answering within this time [default: 400].
    #[arg(long, env = "REPLIKV_LEASE_MS")]
    pub lease_ms: Option<u64>,
    /// Waited past the lease before a lost leader is replaced: clock-rate differences and
    /// scheduling delay [default: 100].
    #[arg(long, env = "REPLIKV_LEASE_MARGIN_MS")]
    pub lease_margin_ms: Option<u64>,
    /// The control plane's clock tick: Raft heartbeats go every 2 ticks [default: 50].
    #[arg(long, env = "REPLIKV_CONTROL_TICK_MS")]
    pub control_tick_ms: Option<u64>,
    /// Ticks without a controller before a voter stands for election; the actual timeout is
    /// drawn between this and twice this. Must cover lease and margin [default: 10].
    #[arg(long, env = "REPLIKV_ELECTION_TICKS")]
    pub election_ticks: Option<u64>,
    /// Whether a replica outside the in-sync set may be promoted when none that holds every
    /// acknowledged write can be (Kafka's unclean leader election): availability over
    /// acknowledged writes [default: false].
    #[arg(
        long,
        env = "REPLIKV_UNCLEAN_FAILOVER",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub unclean_failover: Option<bool>,
    /// For tests only: serve `/faults` on the admin port, which cuts, delays or drops this
    /// node's replication links to chosen peers. The node refuses to start with it unless
    /// `REPLIKV_I_AM_TESTING=1` is set too [default: off].
    #[arg(
        long,
        env = "REPLIKV_FAULT_INJECTION",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub fault_injection: Option<bool>,
}

/// The environment variable that must be `1` for a node to start with `fault_injection`.
pub const TESTING_ENV: &str = "REPLIKV_I_AM_TESTING";

/// Whether a replica serves reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaReads {
    /// Serve reads (read pool).
    Serve,
    /// Refuse reads (hot standby).
    Standby,
}

/// What a replica does with a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaWrites {
    /// Answer `-READONLY`, as Redis does.
    Refuse,
    /// Send it to the upstream and relay the reply.
    Forward,
}

/// The same settings as read from a TOML file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    bind: Option<IpAddr>,
    port: Option<u16>,
    admin_port: Option<u16>,
    fsync: Option<FsyncMode>,
    fsync_interval_ms: Option<u64>,
    requirepass: Option<String>,
    maxclients: Option<usize>,
    proto_max_bulk_len: Option<usize>,
    client_query_buffer_limit: Option<usize>,
    segment_bytes_max: Option<u64>,
    wal_retention_bytes: Option<u64>,
    snapshot_every_entries: Option<u64>,
    log: Option<String>,
    replicaof: Option<String>,
    cluster_secret: Option<String>,
    cluster_name: Option<String>,
    node_id: Option<String>,
    ack: Option<String>,
    cluster_size: Option<u32>,
    replica_lag_max_ms: Option<u64>,
    write_ack_timeout_ms: Option<u64>,
    replica_reads: Option<ReplicaReads>,
    replica_writes: Option<ReplicaWrites>,
    read_wait_timeout_ms: Option<u64>,
    heartbeat_ms: Option<u64>,
    control_peers: Option<String>,
    lease_ms: Option<u64>,
    lease_margin_ms: Option<u64>,
    control_tick_ms: Option<u64>,
    election_ticks: Option<u64>,
    unclean_failover: Option<bool>,
    fault_injection: Option<bool>,
}

/// Resolved configuration of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Directory for the log and snapshots.
    pub data_dir: PathBuf,
    /// Listen address.
    pub bind: IpAddr,
    /// Client port.
    pub port: u16,
    /// Admin HTTP port (0 = disabled).
    pub admin_port: u16,
    /// Log durability.
    pub fsync: FsyncMode,
    /// Interval between fsyncs in `interval` mode.
    pub fsync_interval_ms: u64,
    /// Client password, if any.
    pub requirepass: Option<String>,
    /// Connection limit.
    pub maxclients: usize,
    /// Largest bulk string accepted.
    pub proto_max_bulk_len: usize,
    /// Per-connection bound on buffered request bytes.
    pub client_query_buffer_limit: usize,
    /// Segment roll size.
    pub segment_bytes_max: u64,
    /// Log bytes kept past a snapshot.
    pub wal_retention_bytes: u64,
    /// Automatic snapshot cadence in log entries (0 = off).
    pub snapshot_every_entries: u64,
    /// Log filter.
    pub log: String,
    /// Upstream to replicate from, `None` on a leader.
    pub replicaof: Option<Upstream>,
    /// Secret for peer links.
    pub cluster_secret: Option<String>,
    /// Cluster name checked on peer links.
    pub cluster_name: String,
    /// Node id given on the command line (otherwise kept in the data directory).
    pub node_id: Option<String>,
    /// Default acknowledgement mode.
    pub ack: AckMode,
    /// Cluster size for `quorum` (0 = leader plus known replicas).
    pub cluster_size: u32,
    /// In-sync lag bound.
    pub replica_lag_max_ms: u64,
    /// Wait bound for a write's acknowledgement.
    pub write_ack_timeout_ms: u64,
    /// Replica read policy.
    pub replica_reads: ReplicaReads,
    /// Replica write policy.
    pub replica_writes: ReplicaWrites,
    /// Wait bound for a read's consistency requirement.
    pub read_wait_timeout_ms: u64,
    /// Heartbeat interval on replication links.
    pub heartbeat_ms: u64,
    /// Fault injection in the peer layer (tests only; needs [`TESTING_ENV`] set to `1`).
    pub fault_injection: bool,
    /// The control plane's founding voters, by node id and client address, in the configured
    /// order; empty: no control plane.
    pub control_peers: Vec<(String, Upstream)>,
    /// The leader's lease.
    pub lease_ms: u64,
    /// Waited past the lease before a lost leader is replaced.
    pub lease_margin_ms: u64,
    /// The control plane's tick.
    pub control_tick_ms: u64,
    /// The Raft election timeout, in ticks (randomized up to twice this).
    pub election_ticks: u64,
    /// Whether unclean failover is allowed.
    pub unclean_failover: bool,
}

impl Config {
    /// Whether the control plane (automatic failover) is on.
    #[must_use]
    pub fn control_plane(&self) -> bool {
        !self.control_peers.is_empty()
    }
}

/// Parses `ID=HOST:PORT,...`.
fn parse_control_peers(text: &str) -> Result<Vec<(String, Upstream)>, String> {
    let mut peers: Vec<(String, Upstream)> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("`{item}` is not ID=HOST:PORT"))?;
        let id = id.trim();
        if id.is_empty() || id.len() > 256 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("`{id}` is not a node id"));
        }
        let addr: Upstream = addr.parse()?;
        if peers.iter().any(|(other, _)| other == id) {
            return Err(format!("node id `{id}` is listed twice"));
        }
        if peers.iter().any(|(_, a)| *a == addr) {
            return Err(format!("address {addr} is listed twice"));
        }
        peers.push((id.to_string(), addr));
    }
    Ok(peers)
}

/// An upstream's client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Host name or address.
    pub host: String,
    /// Client port.
    pub port: u16,
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for Upstream {
    type Err = String;

    /// Parses `HOST:PORT`, `[V6]:PORT` or `HOST PORT`.
    fn from_str(s: &str) -> Result<Upstream, String> {
        let s = s.trim();
        let (host, port) = if let Some((h, p)) = s.split_once(char::is_whitespace) {
            (h.trim(), p.trim())
        } else if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest
                .split_once("]:")
                .ok_or_else(|| format!("`{s}` is not [ADDRESS]:PORT"))?;
            (h, p)
        } else {
            s.rsplit_once(':')
                .ok_or_else(|| format!("`{s}` is not HOST:PORT"))?
        };
        if host.is_empty() {
            return Err(format!("`{s}` has no host"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{port}` is not a port number"))?;
        if port == 0 {
            return Err("port 0 is not a port".to_string());
        }
        Ok(Upstream {
            host: host.to_string(),
            port,
        })
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this config.
    #[error("bad config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// A value is out of range.
    #[error("bad setting {key}: {message}")]
    Invalid {
        /// The setting.
        key: &'static str,
        /// Why.
        message: String,
    },
}

impl Config {
    /// Resolves flags and environment (already merged by clap) over the config file over the
    /// defaults, and checks the result.
    ///
    /// # Errors
    /// An unreadable or invalid file, an out-of-range value, or `fault_injection` without
    /// [`TESTING_ENV`]`=1` in the environment.
    pub fn resolve(args: &ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let config = Config {
            data_dir: pick(
                args.data_dir.clone(),
                file.data_dir,
                PathBuf::from("replikv-data"),
            ),
            bind: pick(args.bind, file.bind, IpAddr::from([127, 0, 0, 1])),
            port: pick(args.port, file.port, 6379),
            admin_port: pick(args.admin_port, file.admin_port, 9379),
            fsync: pick(args.fsync, file.fsync, FsyncMode::Always),
            fsync_interval_ms: pick(args.fsync_interval_ms, file.fsync_interval_ms, 1000),
            requirepass: args.requirepass.clone().or(file.requirepass),
            maxclients: pick(args.maxclients, file.maxclients, 10_000),
            proto_max_bulk_len: pick(
                args.proto_max_bulk_len,
                file.proto_max_bulk_len,
                512 * 1024 * 1024,
            ),
            client_query_buffer_limit: pick(
                args.client_query_buffer_limit,
                file.client_query_buffer_limit,
                1024 * 1024 * 1024,
            ),
            segment_bytes_max: pick(args.segment_bytes_max, file.segment_bytes_max, 64 << 20),
            wal_retention_bytes: pick(args.wal_retention_bytes, file.wal_retention_bytes, 64 << 20),
            snapshot_every_entries: pick(
                args.snapshot_every_entries,
                file.snapshot_every_entries,
                1_000_000,
            ),
            log: pick(args.log.clone(), file.log, "info".to_string()),
            replicaof: match args.replicaof.clone().or(file.replicaof) {
                None => None,
                Some(s) if s.trim().eq_ignore_ascii_case("no one") => None,
                Some(s) => Some(s.parse().map_err(|message| ConfigError::Invalid {
                    key: "replicaof",
                    message,
                })?),
            },
            cluster_secret: args.cluster_secret.clone().or(file.cluster_secret),
            cluster_name: pick(
                args.cluster_name.clone(),
                file.cluster_name,
                "replikv".to_string(),
            ),
            node_id: args.node_id.clone().or(file.node_id),
            ack: match args.ack.clone().or(file.ack) {
                None => AckMode::Async,
                Some(s) => s.parse().map_err(|e: AckModeError| ConfigError::Invalid {
                    key: "ack",
                    message: e.to_string(),
                })?,
            },
            cluster_size: pick(args.cluster_size, file.cluster_size, 0),
            replica_lag_max_ms: pick(args.replica_lag_max_ms, file.replica_lag_max_ms, 5000),
            write_ack_timeout_ms: pick(
                args.write_ack_timeout_ms,
                file.write_ack_timeout_ms,
                10_000,
            ),
            replica_reads: pick(args.replica_reads, file.replica_reads, ReplicaReads::Serve),
            replica_writes: pick(
                args.replica_writes,
                file.replica_writes,
                ReplicaWrites::Refuse,
            ),
            read_wait_timeout_ms: pick(args.read_wait_timeout_ms, file.read_wait_timeout_ms, 1000),
            heartbeat_ms: pick(args.heartbeat_ms, file.heartbeat_ms, 100),
            fault_injection: pick(args.fault_injection, file.fault_injection, false),
            control_peers: match args.control_peers.clone().or(file.control_peers) {
                None => Vec::new(),
                Some(text) => {
                    parse_control_peers(&text).map_err(|message| ConfigError::Invalid {
                        key: "control_peers",
                        message,
                    })?
                }
            },
            lease_ms: pick(args.lease_ms, file.lease_ms, 400),
            lease_margin_ms: pick(args.lease_margin_ms, file.lease_margin_ms, 100),
            control_tick_ms: pick(args.control_tick_ms, file.control_tick_ms, 50),
            election_ticks: pick(args.election_ticks, file.election_ticks, 10),
            unclean_failover: pick(args.unclean_failover, file.unclean_failover, false),
        };
        config.validate()?;
        check_fault_injection(
            config.fault_injection,
            std::env::var(TESTING_ENV).ok().as_deref(),
        )?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_string(),
            })
        };
        if self.port == 0 {
            return invalid("port", "must be between 1 and 65535");
        }
        if self.admin_port != 0 && self.admin_port == self.port {
            return invalid("admin_port", "must differ from port");
        }
        if self.fsync_interval_ms == 0 || self.fsync_interval_ms > 60_000 {
            return invalid("fsync_interval_ms", "must be between 1 and 60000");
        }
        if self.maxclients == 0 {
            return invalid("maxclients", "must be at least 1");
        }
        if self.proto_max_bulk_len < 1024 || self.proto_max_bulk_len > 512 * 1024 * 1024 {
            return invalid("proto_max_bulk_len", "must be between 1024 and 536870912");
        }
        if self.client_query_buffer_limit < 1024 * 1024 {
            return invalid("client_query_buffer_limit", "must be at least 1048576");
        }
        if self.segment_bytes_max < 4096 {
            return invalid("segment_bytes_max", "must be at least 4096");
        }
        if matches!(&self.requirepass, Some(p) if p.is_empty()) {
            return invalid("requirepass", "must not be empty (leave it unset instead)");
        }
        if matches!(&self.cluster_secret, Some(p) if p.len() < 16) {
            return invalid("cluster_secret", "must be at least 16 bytes long");
        }
        if self.cluster_name.is_empty() || self.cluster_name.len() > 256 {
            return invalid("cluster_name", "must be 1 to 256 bytes long");
        }
        if matches!(&self.node_id, Some(id) if id.is_empty() || id.len() > 256
            || !id.bytes().all(|b| b.is_ascii_graphic()))
        {
            return invalid(
                "node_id",
                "must be 1 to 256 printable characters without spaces",
            );
        }
        if self.replica_lag_max_ms == 0 {
            return invalid("replica_lag_max_ms", "must be at least 1");
        }
        if self.heartbeat_ms == 0 || self.heartbeat_ms > 60_000 {
            return invalid("heartbeat_ms", "must be between 1 and 60000");
        }
        if self.control_plane() {
            if self.replicaof.is_some() {
                return invalid(
                    "control_peers",
                    "cannot be combined with replicaof: the control plane chooses the leader",
                );
            }
            // A node not in the list joins the founders' group once a member adds it.
            if self.node_id.is_none() {
                return invalid(
                    "control_peers",
                    "needs this node's id, node_id (--node-id): the founders are known by theirs",
                );
            }
            if self.control_peers.len() > 64 {
                return invalid("control_peers", "at most 64 voters");
            }
        }
        if self.lease_ms < 20 || self.lease_ms > 60_000 {
            return invalid("lease_ms", "must be between 20 and 60000");
        }
        if self.lease_margin_ms == 0 || self.lease_margin_ms >= self.lease_ms {
            return invalid("lease_margin_ms", "must be at least 1 and below lease_ms");
        }
        if self.control_tick_ms == 0 || self.control_tick_ms > 10_000 {
            return invalid("control_tick_ms", "must be between 1 and 10000");
        }
        if self.election_ticks < 3
            || self.election_ticks > 1_000
            || self.election_ticks * self.control_tick_ms < self.lease_ms + self.lease_margin_ms
        {
            return invalid(
                "election_ticks",
                "must be 3 to 1000 ticks, and election_ticks * control_tick_ms must cover \
                 lease_ms + lease_margin_ms (a leader's lease runs out before a new controller \
                 can be elected)",
            );
        }
        if let Some(up) = &self.replicaof {
            let own = (up.host == self.bind.to_string() || up.host == "localhost")
                && up.port == self.port;
            if own {
                return invalid("replicaof", "names this node itself");
            }
        }
        Ok(())
    }
}

/// Refuses `fault_injection` unless the test setting (`testing`, the value of
/// [`TESTING_ENV`]) is exactly `1`: a production node must never be started with a switch
/// that lets an HTTP request cut its replication.
///
/// # Errors
/// Fault injection is on and the test setting is missing or not `1`.
pub fn check_fault_injection(enabled: bool, testing: Option<&str>) -> Result<(), ConfigError> {
    if enabled && testing != Some("1") {
        return Err(ConfigError::Invalid {
            key: "fault_injection",
            message: format!(
                "--fault-injection (REPLIKV_FAULT_INJECTION, config key fault_injection) is for \
                 tests only and needs {TESTING_ENV}=1 in the environment as well; refusing to start"
            ),
        });
    }
    Ok(())
}

fn pick<T>(flag_or_env: Option<T>, file: Option<T>, default: T) -> T {
    flag_or_env.or(file).unwrap_or(default)
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn defaults_apply_when_nothing_is_given() {
        let c = Config::resolve(&ServeArgs::default()).unwrap();
        assert_eq!(c.port, 6379);
        assert_eq!(c.admin_port, 9379);
        assert_eq!(c.fsync, FsyncMode::Always);
        assert_eq!(c.data_dir, PathBuf::from("replikv-data"));
    }

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "port = 7000\nadmin_port = 7001\nfsync = \"interval\"").unwrap();
        let args = ServeArgs {
            config: Some(f.path().to_path_buf()),
            port: Some(7100),
            ..ServeArgs::default()
        };
        let c = Config::resolve(&args).unwrap();
        assert_eq!(c.port, 7100);
        assert_eq!(c.admin_port, 7001);
        assert_eq!(c.fsync, FsyncMode::Interval);
    }

    #[test]
    fn unknown_key_in_file_is_a_clear_error() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "prot = 7000").unwrap();
        let args = ServeArgs {
            config: Some(f.path().to_path_buf()),
            ..ServeArgs::default()
        };
        let err = Config::resolve(&args).unwrap_err().to_string();
        assert!(err.contains("unknown field `prot`"), "{err}");
    }

    #[test]
    fn fault_injection_needs_the_test_setting() {
        assert!(check_fault_injection(false, None).is_ok());
        assert!(check_fault_injection(true, Some("1")).is_ok());
        for testing in [None, Some("0"), Some(""), Some("yes")] {
            let err = check_fault_injection(true, testing)
                .unwrap_err()
                .to_string();
            assert!(err.contains("--fault-injection"), "{err}");
            assert!(err.contains("REPLIKV_I_AM_TESTING=1"), "{err}");
        }
    }

    #[test]
    fn fault_injection_is_off_by_default_and_read_from_the_file() {
        assert!(
            !Config::resolve(&ServeArgs::default())
                .unwrap()
                .fault_injection
        );
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "fault_injection = false").unwrap();
        let args = ServeArgs {
            config: Some(f.path().to_path_buf()),
            ..ServeArgs::default()
        };
        assert!(!Config::resolve(&args).unwrap().fault_injection);
    }

    #[test]
    fn fault_injection_flag_takes_an_optional_boolish_value() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let parse = |args: &[&str]| {
            let argv = std::iter::once("replikv").chain(args.iter().copied());
            Cli::try_parse_from(argv).map(|c| c.serve.fault_injection)
        };
        assert_eq!(parse(&[]).unwrap(), None);
        assert_eq!(parse(&["--fault-injection"]).unwrap(), Some(true));
        assert_eq!(
            parse(&["--fault-injection", "--port", "7000"]).unwrap(),
            Some(true)
        );
        assert_eq!(parse(&["--fault-injection=0"]).unwrap(), Some(false));
        assert_eq!(parse(&["--fault-injection=yes"]).unwrap(), Some(true));
        assert!(parse(&["--fault-injection=maybe"]).is_err());
    }

    #[test]
    fn control_peers_are_parsed_and_checked() {
        let args = |peers: &str, id: Option<&str>| ServeArgs {
            control_peers: Some(peers.into()),
            node_id: id.map(String::from),
            ..ServeArgs::default()
        };
        let c = Config::resolve(&args("a=127.0.0.1:7000, b=127.0.0.1:7001", Some("b"))).unwrap();
        assert!(c.control_plane());
        assert_eq!(c.control_peers[1].0, "b");
        assert_eq!(c.control_peers[1].1.port, 7001);
        for (peers, id, why) in [
            ("a=127.0.0.1:7000", None, "needs this node's id"),
            ("a=127.0.0.1:7000,a=127.0.0.1:7001", Some("a"), "twice"),
            ("a=127.0.0.1:7000,b=127.0.0.1:7000", Some("a"), "twice"),
            ("a127.0.0.1:7000", Some("a"), "ID=HOST:PORT"),
        ] {
            let err = Config::resolve(&args(peers, id)).unwrap_err().to_string();
            assert!(err.contains(why), "{peers}: {err}");
        }
        let with_replicaof = ServeArgs {
            replicaof: Some("127.0.0.1:7001".into()),
            ..args("a=127.0.0.1:7000", Some("a"))
        };
        let err = Config::resolve(&with_replicaof).unwrap_err().to_string();
        assert!(err.contains("replicaof"), "{err}");
        let short_election = ServeArgs {
            election_ticks: Some(4),
            ..args("a=127.0.0.1:7000", Some("a"))
        };
        let err = Config::resolve(&short_election).unwrap_err().to_string();
        assert!(err.contains("lease_ms + lease_margin_ms"), "{err}");
    }

    #[test]
    fn out_of_range_value_is_refused() {
        let args = ServeArgs {
            port: Some(0),
            ..ServeArgs::default()
        };
        let err = Config::resolve(&args).unwrap_err().to_string();
        assert!(err.contains("port"), "{err}");
    }
}
