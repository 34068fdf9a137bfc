//! The local cluster a check runs against: `replikv serve` child processes on 127.0.0.1, laid
//! out as `replikv cluster` lays them out (node `i` on client port `base + i` and admin port
//! `base + 100 + i`, `node0` leading, the others replicating from it), with the controls the
//! nemesis needs: kill -9 and restart with the same arguments, pause and resume.
//!
//! With [`Failover::Auto`] no node is told whom to follow: every node gets the same
//! `--control-peers` list (every node by id and client address), and the nodes' control plane
//! elects the leader, elects another when it is lost, and repoints the replicas itself.
//!
//! Every child runs in its own process group (Ctrl-C reaches the checker only, which then stops
//! the nodes itself) and is killed if the [`LocalCluster`] is dropped without being stopped.
//! Each node's output goes to `node<i>.log` in the run's folder; restarts append to it.
//!
//! With [`Network::Namespaces`] (root on Linux), each node runs in its own network namespace
//! instead (`ip netns exec`), at `10.77.S.(i+1)` on a bridge in a further "switch" namespace,
//! with the same ports; a veth from the checker's namespace into the bridge at `10.77.S.254`
//! lets the checker's clients reach the nodes. A partition takes the node's port on the bridge
//! down ([`LocalCluster::cut`]), which cuts it off from peers and clients alike. The nodes
//! share a per-run cluster secret, as they are no longer on loopback. [`Netns`] creates this
//! and removes all of it when dropped.

use std::ffi::OsString;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::{sleep, timeout, Instant};

/// Most nodes a check launches.
pub const NODES_MAX: u8 = 9;
/// Node `i`'s admin port is its client port plus this (as `replikv cluster`).
pub const ADMIN_PORT_OFFSET: u16 = 100;
/// How long all nodes together have to answer PING after the start.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the nodes have to exit after SIGTERM at the end before they are killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a killed node has to be reaped.
pub const KILL_WAIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on one readiness probe.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between readiness probes.
const PING_INTERVAL: Duration = Duration::from_millis(50);
/// The address of every node with [`Network::Loopback`].
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// With [`Network::Namespaces`], run `S` uses the addresses `10.77.S.0/24` and no others.
pub const NETNS_NET: [u8; 2] = [10, 77];
/// The checker's own address in a run's `/24`, last byte.
pub const NETNS_HOST_BYTE: u8 = 254;
/// Bound on one `ip` command.
pub const IP_TIMEOUT: Duration = Duration::from_secs(5);
/// Every name this harness gives a namespace or a link in the checker's namespace starts with
/// this, then the checker's process id.
pub const NETNS_PREFIX: &str = "rkc";
/// Node settings the checker chooses unless the extra flags set them: a replica that lags by
/// more than a second leaves the in-sync set, and a write gives up waiting for replicas after
/// 1.5 s, so that faults of a few seconds produce answers within the client's timeout rather
/// than only timeouts.
pub const NODE_DEFAULTS: [(&str, &str); 2] = [
    ("--replica-lag-max-ms", "1000"),
    ("--write-ack-timeout-ms", "1500"),
];

// Client ports (base + i) and admin ports (base + 100 + i) never overlap.
const _: () = assert!((NODES_MAX as u16) < ADMIN_PORT_OFFSET);

/// Who decides which node leads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Failover {
    /// `node0` leads throughout and the others replicate from it (`--replicaof`); a lost
    /// leader is not replaced.
    #[default]
    None,
    /// The nodes' control plane (`--control-peers`) elects the leader and elects another when
    /// it dies, is paused or is cut off.
    Auto,
}

impl Failover {
    /// Its name in `--failover`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Failover::None => "none",
            Failover::Auto => "auto",
        }
    }
}

/// How to lay out and start the nodes.
#[derive(Clone, Debug)]
pub struct LaunchPlan {
    /// The `replikv` executable (the checker's own).
    pub exe: PathBuf,
    /// Nodes, 1 to [`NODES_MAX`].
    pub nodes: u8,
    /// First client port.
    pub base_port: u16,
    /// `--ack` of every node.
    pub ack: String,
    /// `--fsync` of every node.
    pub fsync: String,
    /// Start the nodes with `--fault-injection` and `REPLIKV_I_AM_TESTING=1` (faults through
    /// the hook).
    pub fault_injection: bool,
    /// Where the nodes listen.
    pub network: Network,
    /// Folder of the run: node logs go here, data directories under `data/`.
    pub dir: PathBuf,
    /// Further `replikv serve` flags for every node.
    pub extra: Vec<String>,
    /// Who decides which node leads.
    pub failover: Failover,
}

/// Where the nodes listen, and so how partitions are made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Network {
    /// Every node on 127.0.0.1 in the checker's network namespace.
    Loopback,
    /// One network namespace per node, on a bridge: node `i` at `10.77.<subnet>.(i+1)`.
    Namespaces {
        /// The third byte of the run's `/24`.
        subnet: u8,
        /// Start of every namespace and link name of the run ([`NETNS_PREFIX`] and the pid).
        prefix: String,
        /// Cluster secret of the nodes (peer links are no longer on loopback).
        secret: String,
    },
}

impl Network {
    /// The address of node `i` (`i` below [`NODES_MAX`]).
    #[must_use]
    pub fn host(&self, i: u8) -> Ipv4Addr {
        match self {
            Network::Loopback => LOOPBACK,
            Network::Namespaces { subnet, .. } => {
                Ipv4Addr::new(NETNS_NET[0], NETNS_NET[1], *subnet, i + 1)
            }
        }
    }

    /// The namespace of node `i`, if any.
    #[must_use]
    pub fn node_netns(&self, i: u8) -> Option<String> {
        match self {
            Network::Loopback => None,
            Network::Namespaces { prefix, .. } => Some(format!("{prefix}-n{i}")),
        }
    }
}

/// One node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// `node<i>`, also its node id.
    pub name: String,
    /// The address it listens on.
    pub host: Ipv4Addr,
    /// Its network namespace ([`Network::Namespaces`]).
    pub netns: Option<String>,
    /// Client port.
    pub port: u16,
    /// Admin HTTP port.
    pub admin_port: u16,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Where its output goes.
    pub log: PathBuf,
    /// The leader's client address on a replica ([`Failover::None`]).
    pub upstream: Option<(Ipv4Addr, u16)>,
    /// The `--control-peers` list ([`Failover::Auto`]): every node as `node<i>=host:port`,
    /// in node order, the same on every node.
    pub control_peers: Option<String>,
}

impl NodeSpec {
    /// Its client address, as recorded in the history.
    #[must_use]
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Its admin address.
    #[must_use]
    pub fn admin_addr(&self) -> String {
        format!("{}:{}", self.host, self.admin_port)
    }
}

/// Why the cluster could not be started or controlled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// The ports do not fit in 1..=65535.
    #[error("--base-port {base_port} does not fit {nodes} nodes: it must be between 1 and {max}")]
    BasePort {
        /// The base port given.
        base_port: u16,
        /// Nodes.
        nodes: u8,
        /// The largest base port that fits.
        max: u32,
    },
    /// A port is taken.
    #[error("port {port} ({node}'s {role} port) is not free on 127.0.0.1: {source}; choose another --base-port")]
    PortInUse {
        /// The port.
        port: u16,
        /// The node.
        node: String,
        /// `client` or `admin`.
        role: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A folder could not be created.
    #[error("cannot create {path}: {source}")]
    Dir {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A node could not be started.
    #[error("cannot start {node}: {source}")]
    Spawn {
        /// The node.
        node: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The network namespaces could not be set up.
    #[error("cannot set up the network namespaces: {0}")]
    Netns(#[from] NetError),
    /// A node did not answer PING in time or exited while starting.
    #[error("{node} did not start ({why}); the end of its log:\n{log_tail}")]
    NotReady {
        /// The node.
        node: String,
        /// What happened.
        why: String,
        /// Its last log lines.
        log_tail: String,
    },
}

/// The running nodes; `children[i]` is `None` while node `i` is down (killed).
#[derive(Debug)]
pub struct LocalCluster {
    plan: LaunchPlan,
    specs: Vec<NodeSpec>,
    argvs: Vec<Vec<OsString>>,
    children: Vec<Option<Child>>,
    paused: Vec<bool>,
    /// Declared after `children`, so that dropping the cluster kills the nodes before it
    /// removes their namespaces.
    netns: Option<Netns>,
}

/// The nodes of the cluster, checked to fit the port range.
///
/// # Errors
/// The ports do not fit.
pub fn plan_nodes(plan: &LaunchPlan) -> Result<Vec<NodeSpec>, LaunchError> {
    let nodes = u32::from(plan.nodes.clamp(1, NODES_MAX));
    let max = u32::from(u16::MAX) - u32::from(ADMIN_PORT_OFFSET) - (nodes - 1);
    let base = u32::from(plan.base_port);
    if base == 0 || base > max {
        return Err(LaunchError::BasePort {
            base_port: plan.base_port,
            nodes: plan.nodes,
            max,
        });
    }
    let count = plan.nodes.clamp(1, NODES_MAX);
    // In range: base + 100 + (nodes - 1) <= 65535 was checked above.
    let port = |i: u8| plan.base_port + u16::from(i);
    let control_peers = (plan.failover == Failover::Auto).then(|| {
        (0..count)
            .map(|i| format!("node{i}={}:{}", plan.network.host(i), port(i)))
            .collect::<Vec<_>>()
            .join(",")
    });
    let specs: Vec<NodeSpec> = (0..count)
        .map(|i| {
            let port = port(i);
            let follows_node0 = i > 0 && plan.failover == Failover::None;
            NodeSpec {
                name: format!("node{i}"),
                host: plan.network.host(i),
                netns: plan.network.node_netns(i),
                port,
                admin_port: port + ADMIN_PORT_OFFSET,
                data_dir: plan.dir.join("data").join(format!("node{i}")),
                log: plan.dir.join(format!("node{i}.log")),
                upstream: follows_node0.then(|| (plan.network.host(0), plan.base_port)),
                control_peers: control_peers.clone(),
            }
        })
        .collect();
    Ok(specs)
}

/// The arguments after `serve` that start node `spec`.
#[must_use]
pub fn node_args(plan: &LaunchPlan, spec: &NodeSpec) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec![
        "--bind".into(),
        spec.host.to_string().into(),
        "--port".into(),
        spec.port.to_string().into(),
        "--admin-port".into(),
        spec.admin_port.to_string().into(),
        "--data-dir".into(),
        spec.data_dir.clone().into(),
        "--node-id".into(),
        spec.name.clone().into(),
        "--cluster-size".into(),
        plan.nodes.to_string().into(),
        "--ack".into(),
        plan.ack.clone().into(),
        "--fsync".into(),
        plan.fsync.clone().into(),
    ];
    if let Some((host, port)) = spec.upstream {
        argv.push("--replicaof".into());
        argv.push(format!("{host}:{port}").into());
    }
    if let Some(peers) = &spec.control_peers {
        argv.push("--control-peers".into());
        argv.push(peers.into());
    }
    if plan.fault_injection {
        argv.push("--fault-injection".into());
    }
    for (flag, value) in NODE_DEFAULTS {
        let given = plan
            .extra
            .iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")));
        if !given {
            argv.push(flag.into());
            argv.push(value.into());
        }
    }
    argv.extend(plan.extra.iter().map(OsString::from));
    argv
}

impl LocalCluster {
    /// Starts every node and waits until each answers PING.
    ///
    /// # Errors
    /// A taken port, a folder that cannot be created, a node that cannot be started or does
    /// not become ready (every started node is then killed).
    pub async fn start(plan: LaunchPlan) -> Result<LocalCluster, LaunchError> {
        let specs = plan_nodes(&plan)?;
        let netns = match &plan.network {
            Network::Loopback => None,
            Network::Namespaces { subnet, prefix, .. } => {
                Some(Netns::create(prefix, *subnet, plan.nodes)?)
            }
        };
        for spec in &specs {
            // Fresh namespaces have every port free.
            let ports = if spec.netns.is_none() {
                vec![(spec.port, "client"), (spec.admin_port, "admin")]
            } else {
                Vec::new()
            };
            for (port, role) in ports {
                // Bound and released at once: a race with another program remains, and then
                // the node fails to listen and the start fails with its log.
                TcpListener::bind((LOOPBACK, port))
                    .map(drop)
                    .map_err(|source| LaunchError::PortInUse {
                        port,
                        node: spec.name.clone(),
                        role,
                        source,
                    })?;
            }
            std::fs::create_dir_all(&spec.data_dir).map_err(|source| LaunchError::Dir {
                path: spec.data_dir.clone(),
                source,
            })?;
        }
        let argvs = specs.iter().map(|s| node_args(&plan, s)).collect();
        let n = specs.len();
        let mut cluster = LocalCluster {
            plan,
            specs,
            argvs,
            children: (0..n).map(|_| None).collect(),
            paused: vec![false; n],
            netns,
        };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        for i in 0..n {
            cluster.wait_ready(i, deadline).await?;
        }
        Ok(cluster)
    }

    /// The nodes.
    #[must_use]
    pub fn specs(&self) -> &[NodeSpec] {
        &self.specs
    }

    /// The command line node `i` runs with (for the report).
    #[must_use]
    pub fn command_line(&self, i: usize) -> String {
        let args: Vec<String> = self.argvs[i]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        format!("replikv serve {}", args.join(" "))
    }

    fn spawn(&mut self, i: usize) -> Result<(), LaunchError> {
        let spec = &self.specs[i];
        let spawn_error = |source| LaunchError::Spawn {
            node: spec.name.clone(),
            source,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .map_err(spawn_error)?;
        let log_err = log.try_clone().map_err(spawn_error)?;
        let mut command = match &spec.netns {
            Some(ns) => {
                let mut c = Command::new(IP);
                c.args(["netns", "exec", ns.as_str()]).arg(&self.plan.exe);
                c
            }
            None => Command::new(&self.plan.exe),
        };
        command
            .arg("serve")
            .args(&self.argvs[i])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .kill_on_drop(true);
        // The nodes take their settings from their command line only: a REPLIKV_* variable of
        // the checker's environment would change them behind the report's back.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REPLIKV_") {
                command.env_remove(key);
            }
        }
        if self.plan.fault_injection {
            command.env("REPLIKV_I_AM_TESTING", "1");
        }
        if let Network::Namespaces { secret, .. } = &self.plan.network {
            // In the environment rather than on the command line the report shows.
            command.env("REPLIKV_CLUSTER_SECRET", secret);
        }
        let child = command.spawn().map_err(spawn_error)?;
        self.children[i] = Some(child);
        self.paused[i] = false;
        Ok(())
    }

    async fn wait_ready(&mut self, i: usize, deadline: Instant) -> Result<(), LaunchError> {
        let addr = (self.specs[i].host, self.specs[i].port);
        loop {
            if ping(addr).await {
                return Ok(());
            }
            let exited = match self.children[i].as_mut() {
                Some(child) => child.try_wait().ok().flatten().map(|s| s.to_string()),
                None => Some("not running".to_string()),
            };
            if let Some(status) = exited {
                self.children[i] = None;
                return Err(self.not_ready(i, format!("exited: {status}")));
            }
            if Instant::now() >= deadline {
                return Err(
                    self.not_ready(i, format!("no PONG within {} s", READY_TIMEOUT.as_secs()))
                );
            }
            sleep(PING_INTERVAL).await;
        }
    }

    fn not_ready(&self, i: usize, why: String) -> LaunchError {
        LaunchError::NotReady {
            node: self.specs[i].name.clone(),
            why,
            log_tail: log_tail(&self.specs[i].log, 20),
        }
    }

    /// Whether the nodes run in network namespaces (partitions by [`LocalCluster::cut`]).
    #[must_use]
    pub fn uses_namespaces(&self) -> bool {
        self.netns.is_some()
    }

    /// Takes node `i`'s port on the bridge down: it reaches nobody and nobody reaches it.
    ///
    /// # Errors
    /// No namespaces, or `ip` failed.
    pub fn cut(&self, i: usize) -> Result<(), NetError> {
        match &self.netns {
            Some(ns) => ns.set_port(i, false),
            None => Err(NetError::NoNamespaces),
        }
    }

    /// Brings node `i`'s port on the bridge up again.
    ///
    /// # Errors
    /// No namespaces, or `ip` failed.
    pub fn rejoin(&self, i: usize) -> Result<(), NetError> {
        match &self.netns {
            Some(ns) => ns.set_port(i, true),
            None => Err(NetError::NoNamespaces),
        }
    }

    /// Removes the network namespaces (after [`LocalCluster::stop`]); what could not be
    /// removed. Nothing to do without namespaces, or when done already.
    pub fn remove_netns(&mut self) -> Vec<String> {
        self.netns.take().map(Netns::remove).unwrap_or_default()
    }

    /// Whether node `i` is running (not killed).
    #[must_use]
    pub fn is_up(&self, i: usize) -> bool {
        self.children[i].is_some()
    }

    /// Reaps the nodes that exited without being killed; one line for each, saying how.
    pub fn reap_exited(&mut self) -> Vec<String> {
        let mut exited = Vec::new();
        for i in 0..self.specs.len() {
            let status = match self.children[i].as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => status.to_string(),
                Some(Err(e)) => format!("exit status unknown: {e}"),
                Some(Ok(None)) | None => continue,
            };
            self.children[i] = None;
            self.paused[i] = false;
            exited.push(format!(
                "{} exited without being killed by the nemesis ({status}); the end of its log:\n{}",
                self.specs[i].name,
                log_tail(&self.specs[i].log, 10)
            ));
        }
        exited
    }

    /// SIGKILL to node `i`, and waits (bounded) until it is reaped.
    ///
    /// # Errors
    /// The node is not running or could not be reaped in time.
    pub async fn kill(&mut self, i: usize) -> std::io::Result<()> {
        let Some(mut child) = self.children[i].take() else {
            return Err(std::io::Error::other("not running"));
        };
        self.paused[i] = false;
        // A failure means it has already exited; it is reaped below either way.
        let _ = child.start_kill();
        match timeout(KILL_WAIT_TIMEOUT, child.wait()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                // Dropping it leaves the reaping to tokio (kill_on_drop).
                Err(std::io::Error::other("not reaped in time"))
            }
        }
    }

    /// Starts node `i` again with the arguments it had; does not wait for it to be ready.
    ///
    /// # Errors
    /// It cannot be started.
    pub fn restart(&mut self, i: usize) -> Result<(), LaunchError> {
        if self.children[i].is_some() {
            return Ok(());
        }
        self.spawn(i)
    }

    /// Waits (bounded by `bound`) until node `i` answers PING.
    ///
    /// # Errors
    /// It exits or does not answer in time.
    pub async fn wait_up(&mut self, i: usize, bound: Duration) -> Result<(), LaunchError> {
        self.wait_ready(i, Instant::now() + bound).await
    }

    /// SIGSTOP to node `i`.
    ///
    /// # Errors
    /// The node is not running or the signal cannot be sent.
    pub fn pause(&mut self, i: usize) -> std::io::Result<()> {
        self.signal(i, libc::SIGSTOP)?;
        self.paused[i] = true;
        Ok(())
    }

    /// SIGCONT to node `i`.
    ///
    /// # Errors
    /// The node is not running or the signal cannot be sent.
    pub fn resume(&mut self, i: usize) -> std::io::Result<()> {
        self.signal(i, libc::SIGCONT)?;
        self.paused[i] = false;
        Ok(())
    }

    fn signal(&self, i: usize, sig: libc::c_int) -> std::io::Result<()> {
        let pid = self.children[i]
            .as_ref()
            .and_then(Child::id)
            .ok_or_else(|| std::io::Error::other("not running"))?;
        let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
        // SAFETY: kill(2) has no memory-safety preconditions. `pid` is a child not yet reaped
        // (tokio's `Child::id` is `None` once it is), so it cannot name another process.
        let rc = unsafe { libc::kill(pid, sig) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Makes every node run again: every bridge port up, SIGCONT to the paused ones, a
    /// restart of the killed ones, then waits (bounded) until each answers PING. Returns what
    /// could not be undone.
    pub async fn undo_all(&mut self, bound: Duration) -> Vec<String> {
        let mut problems = Vec::new();
        for i in 0..self.specs.len() {
            if self.netns.is_some() {
                if let Err(e) = self.rejoin(i) {
                    problems.push(format!(
                        "{}: cannot rejoin the bridge: {e}",
                        self.specs[i].name
                    ));
                }
            }
            if self.paused[i] {
                if let Err(e) = self.resume(i) {
                    problems.push(format!("{}: cannot resume: {e}", self.specs[i].name));
                }
            }
            if !self.is_up(i) {
                if let Err(e) = self.restart(i) {
                    problems.push(e.to_string());
                }
            }
        }
        let deadline = Instant::now() + bound;
        for i in 0..self.specs.len() {
            if self.is_up(i) {
                if let Err(e) = self.wait_ready(i, deadline).await {
                    problems.push(e.to_string());
                }
            }
        }
        problems
    }

    /// Stops every node: SIGCONT, SIGTERM, at most [`STOP_TIMEOUT`] to exit, then SIGKILL.
    /// Returns the nodes that did not exit cleanly, with why.
    pub async fn stop(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for i in 0..self.specs.len() {
            if self.children[i].is_some() {
                // A paused node must run to handle SIGTERM; errors surface as a kill below.
                let _ = self.signal(i, libc::SIGCONT);
                let _ = self.signal(i, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for i in 0..self.specs.len() {
            let name = self.specs[i].name.clone();
            let Some(mut child) = self.children[i].take() else {
                continue;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, child.wait()).await {
                Ok(Ok(status)) if status.success() => {}
                Ok(Ok(status)) => problems.push(format!("{name} exited with {status}")),
                Ok(Err(e)) => problems.push(format!("{name}: exit status unknown: {e}")),
                Err(_) => {
                    // Already exited if this fails; reaped below either way.
                    let _ = child.start_kill();
                    let reaped = timeout(KILL_WAIT_TIMEOUT, child.wait()).await;
                    problems.push(format!(
                        "{name} did not exit within {} s of SIGTERM and was killed{}",
                        STOP_TIMEOUT.as_secs(),
                        if reaped.is_ok() { "" } else { " (not reaped)" }
                    ));
                }
            }
        }
        problems
    }
}

/// Whether a node serves clients on `addr`: PONG, or NOAUTH when a password is set.
pub async fn ping(addr: (Ipv4Addr, u16)) -> bool {
    let probe = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream.write_all(b"*1\r\n$4\r\nPING\r\n").await.ok()?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await.ok()?;
        Some(&reply == b"+PONG\r\n" || &reply == b"-NOAUTH")
    };
    matches!(timeout(PING_TIMEOUT, probe).await, Ok(Some(true)))
}

/// The last `lines` lines of a log file (empty when it cannot be read).
#[must_use]
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The `ip` command (iproute2), found on `PATH`.
const IP: &str = "ip";
/// Most `/24`s tried when looking for one the machine does not use.
const SUBNET_TRIES_MAX: u16 = 250;

/// Why a network namespace command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// `ip` could not be run.
    #[error("cannot run `ip` (iproute2): {0}")]
    Spawn(std::io::Error),
    /// `ip` failed.
    #[error("`ip {command}` failed ({status}): {stderr}")]
    Failed {
        /// Its arguments.
        command: String,
        /// Its exit status.
        status: String,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// `ip` did not finish in time.
    #[error("`ip {0}` did not finish within {secs} s and was killed", secs = IP_TIMEOUT.as_secs())]
    Timeout(String),
    /// Every `10.77.S.0/24` is in use on this machine.
    #[error("every 10.77.S.0/24 is in use on this machine")]
    NoSubnet,
    /// A namespace operation on a cluster without namespaces.
    #[error("the nodes do not run in network namespaces")]
    NoNamespaces,
}

/// Runs `ip args`, bounded by [`IP_TIMEOUT`]; its stdout.
///
/// # Errors
/// `ip` cannot be run, fails or takes too long.
pub fn ip(args: &[&str]) -> Result<String, NetError> {
    let command = args.join(" ");
    let child = std::process::Command::new(IP)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NetError::Spawn)?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    // The thread reaps `ip` whatever happens; the caller waits for it a bounded time.
    std::thread::spawn(move || {
        // The receiver is gone only after a timeout, and then nobody needs the output.
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(IP_TIMEOUT) {
        Ok(Ok(out)) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into()),
        Ok(Ok(out)) => Err(NetError::Failed {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
        Ok(Err(e)) => Err(NetError::Spawn(e)),
        Err(_) => {
            if let Ok(pid) = libc::pid_t::try_from(pid) {
                // SAFETY: kill(2) has no memory-safety preconditions. The thread above has not
                // reaped `ip` (it would have sent its output), so `pid` still names it.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            Err(NetError::Timeout(command))
        }
    }
}

/// Whether this process may make network namespaces: root, on Linux, with an `ip` that can
/// add and delete one. `Err` says why not.
///
/// # Errors
/// Not root, not Linux, or `ip netns add` failed.
pub fn netns_available(prefix: &str) -> Result<(), String> {
    if !cfg!(target_os = "linux") {
        return Err("network namespaces need Linux".to_string());
    }
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("network namespaces need root".to_string());
    }
    let probe = format!("{prefix}-probe");
    ip(&["netns", "add", &probe]).map_err(|e| e.to_string())?;
    ip(&["netns", "del", &probe]).map_err(|e| e.to_string())?;
    Ok(())
}

/// A `/24` under `10.77.0.0/16` that no address or route of this namespace overlaps (a route
/// covering it, such as `10.77.0.0/16` or `10.0.0.0/8`, counts: the run's host link must not
/// take over addresses that lead elsewhere), starting the search at `start` (spread runs by
/// process id).
///
/// # Errors
/// `ip` fails, or every one is in use.
pub fn free_subnet(start: u32) -> Result<u8, NetError> {
    let used = format!(
        "{}\n{}",
        ip(&["-o", "-4", "addr", "show"])?,
        ip(&["-4", "route", "show", "table", "all"])?
    );
    let prefixes = ipv4_prefixes(&used);
    for k in 0..u32::from(SUBNET_TRIES_MAX) {
        // 1..=250: 0 and the top of the range are left to people.
        let subnet = u8::try_from((start + k) % 250 + 1).unwrap_or(1);
        let candidate = (
            u32::from_be_bytes([NETNS_NET[0], NETNS_NET[1], subnet, 0]),
            24,
        );
        if !prefixes.iter().any(|p| overlaps(*p, candidate)) {
            return Ok(subnet);
        }
    }
    Err(NetError::NoSubnet)
}

/// Every IPv4 address (`/32`) or prefix named in `ip` output, the default route left out.
fn ipv4_prefixes(text: &str) -> Vec<(u32, u8)> {
    text.split_whitespace()
        .filter_map(|token| {
            let (addr, len) = match token.split_once('/') {
                Some((a, l)) => (a, l.parse::<u8>().ok()?),
                None => (token, 32),
            };
            let addr: std::net::Ipv4Addr = addr.parse().ok()?;
            (1..=32).contains(&len).then_some((u32::from(addr), len))
        })
        .collect()
}

/// Whether two IPv4 prefixes share an address.
fn overlaps(a: (u32, u8), b: (u32, u8)) -> bool {
    let len = a.1.min(b.1);
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    a.0 & mask == b.0 & mask
}

/// The network namespaces of one run: a switch namespace holding bridge `br0`, one namespace
/// per node with `veth0` plugged into the bridge as `p<i>`, and a veth `<prefix>h` from the
/// checker's namespace into the bridge (as `ph`) holding `10.77.S.254`. Dropping it removes
/// everything; nothing outside these namespaces and that one link is ever touched.
#[derive(Debug)]
pub struct Netns {
    prefix: String,
    nodes: u8,
    /// What exists so far, removed in reverse order.
    created: Vec<Created>,
}

#[derive(Debug)]
enum Created {
    Namespace(String),
    HostLink(String),
}

impl Netns {
    /// Creates the namespaces and links for `nodes` nodes in `10.77.<subnet>.0/24`; on an
    /// error, removes what it made.
    ///
    /// # Errors
    /// The first `ip` command that failed.
    pub fn create(prefix: &str, subnet: u8, nodes: u8) -> Result<Netns, NetError> {
        let mut ns = Netns {
            prefix: prefix.to_string(),
            nodes,
            created: Vec::new(),
        };
        // On an error `ns` is dropped, which removes what was created.
        ns.build(subnet)?;
        Ok(ns)
    }

    fn switch(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    fn build(&mut self, subnet: u8) -> Result<(), NetError> {
        let sw = self.switch();
        let net = format!("{}.{}.{subnet}", NETNS_NET[0], NETNS_NET[1]);
        ip(&["netns", "add", &sw])?;
        self.created.push(Created::Namespace(sw.clone()));
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for i in 0..self.nodes {
            let node = format!("{}-n{i}", self.prefix);
            let port = format!("p{i}");
            ip(&["netns", "add", &node])?;
            self.created.push(Created::Namespace(node.clone()));
            ip(&[
                "link", "add", "veth0", "netns", &node, "type", "veth", "peer", "name", &port,
                "netns", &sw,
            ])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &sw, "link", "set", &port, "up"])?;
            let addr = format!("{net}.{}/24", i + 1);
            ip(&["-n", &node, "addr", "add", &addr, "dev", "veth0"])?;
            ip(&["-n", &node, "link", "set", "veth0", "up"])?;
            ip(&["-n", &node, "link", "set", "lo", "up"])?;
        }
        let host = format!("{}h", self.prefix);
        ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", "ph", "netns", &sw,
        ])?;
        self.created.push(Created::HostLink(host.clone()));
        ip(&["-n", &sw, "link", "set", "ph", "master", "br0"])?;
        ip(&["-n", &sw, "link", "set", "ph", "up"])?;
        let addr = format!("{net}.{NETNS_HOST_BYTE}/24");
        ip(&["addr", "add", &addr, "dev", &host])?;
        ip(&["link", "set", &host, "up"])?;
        Ok(())
    }

    /// Node `i`'s bridge port up or down.
    ///
    /// # Errors
    /// `ip` failed.
    pub fn set_port(&self, i: usize, up: bool) -> Result<(), NetError> {
        let port = format!("p{i}");
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.switch(), "link", "set", &port, state]).map(drop)
    }

    /// Removes everything created; what could not be removed.
    #[must_use]
    pub fn remove(mut self) -> Vec<String> {
        self.remove_created()
    }

    fn remove_created(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        while let Some(c) = self.created.pop() {
            let done = match &c {
                Created::Namespace(name) => ip(&["netns", "del", name]),
                Created::HostLink(name) => ip(&["link", "del", name]),
            };
            if let Err(e) = done {
                problems.push(e.to_string());
            }
        }
        problems
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Nobody to tell in a drop; the normal path calls `remove` and reports.
        let _ = self.remove_created();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(extra: &[&str]) -> LaunchPlan {
        LaunchPlan {
            exe: PathBuf::from("replikv"),
            nodes: 3,
            base_port: 7300,
            ack: "sync".into(),
            fsync: "always".into(),
            fault_injection: true,
            network: Network::Loopback,
            dir: PathBuf::from("run"),
            extra: extra.iter().map(|s| (*s).to_string()).collect(),
            failover: Failover::None,
        }
    }

    #[test]
    fn nodes_are_laid_out_as_replikv_cluster_lays_them_out() {
        let specs = plan_nodes(&plan(&[])).unwrap();
        let ports: Vec<_> = specs.iter().map(|s| (s.port, s.admin_port)).collect();
        assert_eq!(ports, [(7300, 7400), (7301, 7401), (7302, 7402)]);
        assert_eq!(specs[1].upstream, Some((LOOPBACK, 7300)));
        assert_eq!(specs[0].upstream, None);
        assert_eq!(specs[2].addr(), "127.0.0.1:7302");
        let mut p = plan(&[]);
        p.base_port = 65535;
        assert!(matches!(plan_nodes(&p), Err(LaunchError::BasePort { .. })));
    }

    #[test]
    fn node_args_carry_mode_faults_and_defaults_unless_the_extras_set_them() {
        let text = |p: &LaunchPlan, i: usize| {
            let specs = plan_nodes(p).unwrap();
            node_args(p, &specs[i])
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let p = plan(&[]);
        let replica = text(&p, 1);
        assert!(
            replica.contains("--ack sync --fsync always --replicaof 127.0.0.1:7300"),
            "{replica}"
        );
        assert!(replica.contains("--fault-injection"), "{replica}");
        assert!(replica.contains("--replica-lag-max-ms 1000"), "{replica}");
        let p = plan(&["--replica-lag-max-ms", "300"]);
        let replica = text(&p, 1);
        assert!(!replica.contains("--replica-lag-max-ms 1000"), "{replica}");
        assert!(replica.ends_with("--replica-lag-max-ms 300"), "{replica}");
        assert!(!text(&p, 0).contains("--replicaof"));
        assert!(!text(&p, 0).contains("--control-peers"));
    }

    #[test]
    fn with_automatic_failover_every_node_gets_the_same_peers_and_none_follows_another() {
        let mut p = plan(&[]);
        p.failover = Failover::Auto;
        let specs = plan_nodes(&p).unwrap();
        let peers = "node0=127.0.0.1:7300,node1=127.0.0.1:7301,node2=127.0.0.1:7302";
        for (i, spec) in specs.iter().enumerate() {
            assert_eq!(spec.upstream, None, "node{i}");
            let args: Vec<String> = node_args(&p, spec)
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let text = args.join(" ");
            assert!(!text.contains("--replicaof"), "{text}");
            assert!(
                text.contains(&format!("--node-id node{i} ")),
                "the ids in the peer list are the nodes' ids: {text}"
            );
            assert!(text.contains(&format!("--control-peers {peers}")), "{text}");
        }

        eprintln!("phase: in namespaces, the peers are named by their namespace addresses");
        p.network = Network::Namespaces {
            subnet: 9,
            prefix: "rkc1".into(),
            secret: "s".into(),
        };
        let specs = plan_nodes(&p).unwrap();
        assert_eq!(
            specs[2].control_peers.as_deref(),
            Some("node0=10.77.9.1:7300,node1=10.77.9.2:7301,node2=10.77.9.3:7302")
        );
    }

    #[test]
    fn subnets_covered_by_any_address_or_route_count_as_used() {
        let text = "2: eth0    inet 192.168.1.20/24 brd 192.168.1.255 scope global eth0\n\
                    default via 192.168.1.1 dev eth0\n\
                    10.77.0.0/16 via 192.168.1.9 dev eth0\n\
                    local 10.78.3.4 dev lo table local";
        let prefixes = ipv4_prefixes(text);
        let net = |c: u8| (u32::from_be_bytes([10, 77, c, 0]), 24);
        assert!(
            prefixes.iter().any(|p| overlaps(*p, net(5))),
            "the /16 route covers it"
        );
        let other = |a: u8, b: u8| (u32::from_be_bytes([10, a, b, 0]), 24);
        assert!(
            prefixes.iter().any(|p| overlaps(*p, other(78, 3))),
            "an address in it"
        );
        assert!(!prefixes.iter().any(|p| overlaps(*p, other(78, 4))));
        assert!(
            !prefixes.iter().any(|p| p.1 == 0),
            "the default route is not a prefix here"
        );
        assert!(overlaps((u32::from_be_bytes([10, 0, 0, 0]), 8), net(9)));
        assert!(!overlaps(net(9), net(10)));
    }
}
