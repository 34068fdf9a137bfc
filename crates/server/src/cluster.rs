//! `replikv cluster`: a leader and its replicas on loopback in one command.
//!
//! The launcher starts `--nodes` child processes of its own executable, each a `replikv serve`
//! with its own ports and data directory: node `i` listens on `--base-port + i` for clients and
//! on `--base-port + 100 + i` for admin HTTP, keeps its data in `<data-dir>/node<i>`, and every
//! node but `node0` replicates from `node0`. It relays each child's output prefixed with
//! `[node<i>] `, waits until every node answers PING, and prints how to connect.
//!
//! Stopping: SIGINT, SIGTERM or SIGHUP make the launcher send SIGTERM to every node, wait up to
//! [`STOP_TIMEOUT`] and SIGKILL the rest; a second signal skips the wait. Each node runs in its
//! own process group, so Ctrl-C in a terminal reaches only the launcher, which then stops the
//! nodes as above. A node that exits on its own stops the whole cluster with an error.
//!
//! ```sh
//! replikv cluster --nodes 3            # node0 leads on 127.0.0.1:7000
//! redis-cli -p 7000 SET greeting hello
//! redis-cli -p 7001 GET greeting
//! ```

use crate::config::{Config, FsyncMode, ServeArgs};
use clap::{Args, Parser};
use std::ffi::OsString;
use std::future::Future;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, timeout, Instant};

/// Most nodes one launcher starts.
pub const NODES_MAX: u8 = 9;
/// Node `i`'s admin port is its client port plus this.
pub const ADMIN_PORT_OFFSET: u16 = 100;
/// How long all nodes together have to answer PING after they are started.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the nodes have to exit after SIGTERM before they are killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a killed node has to be reaped before the launcher gives up on it.
const KILL_WAIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on one readiness probe (connect, PING, read the reply).
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between readiness probes of a node that did not answer yet.
const PING_INTERVAL: Duration = Duration::from_millis(50);
/// How long the launcher waits for the last relayed output after every node has exited.
const RELAY_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest relayed line; a longer one is cut into several.
const RELAY_LINE_BYTES_MAX: u64 = 16 * 1024;
/// The only address the cluster uses.
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

// Client ports (base + i) and admin ports (base + 100 + i) never overlap.
const _: () = assert!((NODES_MAX as u16) < ADMIN_PORT_OFFSET);

/// Node flags the launcher sets itself, so they may not appear among the extra arguments.
const FLAGS_OWNED: [&str; 11] = [
    "--control-peers",
    "--bind",
    "--port",
    "--admin-port",
    "--data-dir",
    "--node-id",
    "--cluster-size",
    "--replicaof",
    "--ack",
    "--fsync",
    "--cluster-secret",
];

/// `replikv cluster` settings.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Nodes to start: node0 leads, the others replicate from it (1 to 9).
    #[arg(long, default_value_t = 3,
        value_parser = clap::value_parser!(u8).range(1..=i64::from(NODES_MAX)))]
    pub nodes: u8,
    /// Node i listens on client port BASE+i and admin port BASE+100+i, all on 127.0.0.1.
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// Directory holding one data directory per node (`node0`, `node1`, ...); created if
    /// missing, and reused by the next run.
    #[arg(long, default_value = "replikv-cluster")]
    pub data_dir: PathBuf,
    /// Default write acknowledgement of every node: `async`, `semi-sync:K`, `sync` or `quorum`.
    #[arg(long, default_value = "async")]
    pub ack: String,
    /// Log durability of every node: `always` or `interval` [default: the node's, always].
    #[arg(long)]
    pub fsync: Option<FsyncMode>,
    /// Secret that authenticates the nodes to each other (at least 16 bytes). It reaches the
    /// nodes through their environment, not their command line. Without it the nodes accept
    /// only loopback peers, which is all a local cluster has [default: none].
    #[arg(long, env = "REPLIKV_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// `none`: node0 leads and the others replicate from it. `auto`: the nodes run the
    /// control plane among themselves (every node a voter), which elects the leader and
    /// replaces it when it fails (automatic failover).
    #[arg(long, value_enum, default_value = "none")]
    pub failover: ClusterFailover,
    /// Further `replikv serve` flags for every node, after `--`.
    #[arg(last = true, value_name = "SERVE_FLAGS")]
    pub extra: Vec<String>,
}

/// Who decides the leader of a local cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ClusterFailover {
    /// node0 leads; a failover is by hand.
    None,
    /// The control plane elects the leader and fails over by itself.
    Auto,
}

/// Why the cluster could not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The number of nodes is out of range.
    #[error("--nodes {nodes} is out of range: 1 to {NODES_MAX}")]
    Nodes {
        /// The number given.
        nodes: u8,
    },
    /// The ports the nodes would use do not all fit in 1..=65535.
    #[error("--base-port {base_port} does not fit {nodes} nodes: it must be between 1 and {max}")]
    BasePort {
        /// The base port given.
        base_port: u16,
        /// The number of nodes.
        nodes: u8,
        /// The largest base port that fits.
        max: u32,
    },
    /// An extra argument sets what the launcher sets itself.
    #[error("`{flag}` cannot be among the extra node flags: {hint}")]
    FlagOwned {
        /// The flag.
        flag: String,
        /// What to use instead.
        hint: &'static str,
    },
    /// A node's settings would be refused by the node.
    #[error("{node}: {message}")]
    Config {
        /// The node.
        node: String,
        /// What is wrong.
        message: String,
    },
    /// A port is taken.
    #[error(
        "port {port} ({node}'s {role} port) is not free on 127.0.0.1: {source}; stop what \
        uses it or choose another --base-port"
    )]
    PortInUse {
        /// The port.
        port: u16,
        /// The node that would use it.
        node: String,
        /// `client` or `admin`.
        role: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The launcher could not find its own executable to start the nodes with.
    #[error("cannot find the replikv executable to start the nodes: {0}")]
    CurrentExe(std::io::Error),
    /// The launcher could not watch for stop signals.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// A node could not be started.
    #[error("cannot start {node}: {source}")]
    Spawn {
        /// The node.
        node: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A node did not answer PING in time; every node was stopped.
    #[error("{node} did not answer PING on 127.0.0.1:{port} within {} s; the cluster was stopped",
        READY_TIMEOUT.as_secs())]
    NotReady {
        /// The node.
        node: String,
        /// Its client port.
        port: u16,
    },
    /// A node exited without being asked to; every other node was stopped.
    #[error("{node} exited on its own ({status}); the cluster was stopped")]
    NodeExited {
        /// The node.
        node: String,
        /// Its exit status, or why it is unknown.
        status: String,
    },
}

impl ClusterError {
    /// The process exit code for this error: 2 for settings the user can correct, 1 otherwise.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            ClusterError::Nodes { .. }
            | ClusterError::BasePort { .. }
            | ClusterError::FlagOwned { .. }
            | ClusterError::Config { .. }
            | ClusterError::PortInUse { .. } => 2,
            _ => 1,
        }
    }
}

/// One node of the planned cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeSpec {
    /// `node<i>`, also its node id.
    name: String,
    /// Client port.
    port: u16,
    /// Admin HTTP port.
    admin_port: u16,
    /// Its data directory.
    data_dir: PathBuf,
    /// The leader's client port on a replica, `None` on the leader.
    upstream_port: Option<u16>,
}

/// A started node; `child` is `None` once it has exited and been reaped.
struct Running {
    spec: NodeSpec,
    child: Option<Child>,
}

/// What ended a wait of the launcher.
enum Event {
    /// A stop signal, by name.
    Signal(&'static str),
    /// Node `index` exited (or waiting on it failed).
    Exit(usize, std::io::Result<ExitStatus>),
}

/// `replikv serve` flags, parsed here exactly as a node will parse them.
#[derive(Parser, Debug)]
#[command(name = "replikv serve")]
struct NodeCommand {
    #[command(flatten)]
    serve: ServeArgs,
}

/// Starts the cluster, waits until every node answers, and runs until a stop signal (then
/// `Ok`) or until a node exits on its own (then an error, after stopping the others).
///
/// # Errors
/// Settings a node would refuse, a taken port, a data directory that cannot be created, a
/// node that cannot be started or does not become ready, or a node that exits on its own.
pub async fn run(args: ClusterArgs) -> Result<(), ClusterError> {
    let specs = plan(&args)?;
    check_extra(&args.extra)?;
    let argvs: Vec<Vec<OsString>> = specs.iter().map(|s| node_args(&args, s)).collect();
    for (spec, argv) in specs.iter().zip(&argvs) {
        check_node_config(&args, spec, argv)?;
    }
    for spec in &specs {
        check_port_free(spec, spec.port, "client")?;
        check_port_free(spec, spec.admin_port, "admin")?;
    }
    for spec in &specs {
        std::fs::create_dir_all(&spec.data_dir).map_err(|source| ClusterError::DataDir {
            path: spec.data_dir.clone(),
            source,
        })?;
    }
    let exe = std::env::current_exe().map_err(ClusterError::CurrentExe)?;
    // Installed before the first child starts, so that no signal finds the nodes unattended.
    let mut signals = StopSignals::install().map_err(ClusterError::Signals)?;

    let mut relays = JoinSet::new();
    let mut nodes: Vec<Running> = Vec::with_capacity(specs.len());
    for (spec, argv) in specs.into_iter().zip(argvs) {
        let shown: Vec<String> = argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        say(&format!("{}: replikv serve {}", spec.name, shown.join(" ")));
        let mut command = Command::new(&exe);
        command
            .arg("serve")
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Ctrl-C reaches the launcher only; it stops the nodes itself (module docs).
            .process_group(0)
            // Only a last resort: every normal path stops the nodes with SIGTERM first.
            .kill_on_drop(true);
        match &args.cluster_secret {
            Some(secret) => command.env("REPLIKV_CLUSTER_SECRET", secret),
            None => command.env_remove("REPLIKV_CLUSTER_SECRET"),
        };
        match command.spawn() {
            Ok(mut child) => {
                let prefix = format!("[{}] ", spec.name);
                if let Some(out) = child.stdout.take() {
                    relays.spawn(relay(out, prefix.clone(), Sink::Stdout));
                }
                if let Some(err) = child.stderr.take() {
                    relays.spawn(relay(err, prefix, Sink::Stderr));
                }
                nodes.push(Running {
                    spec,
                    child: Some(child),
                });
            }
            Err(source) => {
                shut_down(&mut nodes, &mut signals, relays).await;
                return Err(ClusterError::Spawn {
                    node: spec.name,
                    source,
                });
            }
        }
    }

    let result = run_until_stopped(&mut nodes, &mut signals, &args).await;
    // Whatever ended the run, the nodes still running are stopped before the launcher returns.
    shut_down(&mut nodes, &mut signals, relays).await;
    if result.is_ok() {
        say("stopped");
    }
    result
}

/// Stops every node, then relays their last output, then says how each one ended, so that a
/// node's final lines come before the launcher's word on it.
async fn shut_down(nodes: &mut [Running], signals: &mut StopSignals, mut relays: JoinSet<()>) {
    let outcomes = stop_all(nodes, signals).await;
    let drained = timeout(RELAY_DRAIN_TIMEOUT, async {
        while relays.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        say("some node output was still open after every node exited; not waiting for it");
    }
    for outcome in outcomes {
        say(&outcome);
    }
}

/// Waits for readiness, prints the summary, then waits for a signal or a node's exit.
async fn run_until_stopped(
    nodes: &mut [Running],
    signals: &mut StopSignals,
    args: &ClusterArgs,
) -> Result<(), ClusterError> {
    let ports: Vec<(String, u16)> = nodes
        .iter()
        .map(|n| (n.spec.name.clone(), n.spec.port))
        .collect();
    let ready = tokio::select! {
        ready = wait_ready(&ports) => ready,
        name = signals.recv() => return on_signal(name),
        (index, status) = next_exit(nodes) => return on_exit(nodes, index, status),
    };
    if let Err((node, port)) = ready {
        return Err(ClusterError::NotReady { node, port });
    }
    print_summary(nodes, args);
    let event = tokio::select! {
        name = signals.recv() => Event::Signal(name),
        (index, status) = next_exit(nodes) => Event::Exit(index, status),
    };
    match event {
        Event::Signal(name) => on_signal(name),
        Event::Exit(index, status) => on_exit(nodes, index, status),
    }
}

fn on_signal(name: &'static str) -> Result<(), ClusterError> {
    say(&format!("{name} received: stopping the nodes"));
    Ok(())
}

fn on_exit(
    nodes: &[Running],
    index: usize,
    status: std::io::Result<ExitStatus>,
) -> Result<(), ClusterError> {
    let node = nodes[index].spec.name.clone();
    let status = describe(&status);
    say(&format!(
        "{node} exited on its own ({status}): stopping the others"
    ));
    Err(ClusterError::NodeExited { node, status })
}

/// The nodes of the cluster, checked to fit the port range.
fn plan(args: &ClusterArgs) -> Result<Vec<NodeSpec>, ClusterError> {
    if !(1..=NODES_MAX).contains(&args.nodes) {
        return Err(ClusterError::Nodes { nodes: args.nodes });
    }
    let nodes = u32::from(args.nodes);
    let max = u32::from(u16::MAX) - u32::from(ADMIN_PORT_OFFSET) - (nodes - 1);
    let base = u32::from(args.base_port);
    if base == 0 || base > max {
        return Err(ClusterError::BasePort {
            base_port: args.base_port,
            nodes: args.nodes,
            max,
        });
    }
    let leader_port = args.base_port;
    let specs: Vec<NodeSpec> = (0..args.nodes)
        .map(|i| {
            // In range: base + 100 + (nodes - 1) <= 65535 was checked above.
            let port = args.base_port + u16::from(i);
            NodeSpec {
                name: format!("node{i}"),
                port,
                admin_port: port + ADMIN_PORT_OFFSET,
                data_dir: args.data_dir.join(format!("node{i}")),
                upstream_port: (i > 0 && args.failover == ClusterFailover::None)
                    .then_some(leader_port),
            }
        })
        .collect();
    assert!(
        specs.len() == usize::from(args.nodes),
        "planned {} nodes for --nodes {}",
        specs.len(),
        args.nodes
    );
    Ok(specs)
}

/// Refuses extra flags that would contradict what the launcher sets.
fn check_extra(extra: &[String]) -> Result<(), ClusterError> {
    for arg in extra {
        let flag = arg.split_once('=').map_or(arg.as_str(), |(f, _)| f);
        if FLAGS_OWNED.contains(&flag) {
            let hint = match flag {
                "--ack" | "--fsync" | "--cluster-secret" | "--data-dir" => {
                    "give it to `replikv cluster` before the `--`"
                }
                "--port" | "--admin-port" => "the ports follow from --base-port",
                _ => "the cluster sets it for each node",
            };
            return Err(ClusterError::FlagOwned {
                flag: flag.to_string(),
                hint,
            });
        }
    }
    Ok(())
}

/// The arguments after `serve` that start node `spec`.
fn node_args(args: &ClusterArgs, spec: &NodeSpec) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec![
        "--bind".into(),
        LOOPBACK.to_string().into(),
        "--port".into(),
        spec.port.to_string().into(),
        "--admin-port".into(),
        spec.admin_port.to_string().into(),
        "--data-dir".into(),
        spec.data_dir.clone().into(),
        "--node-id".into(),
        spec.name.clone().into(),
        "--cluster-size".into(),
        args.nodes.to_string().into(),
        "--ack".into(),
        args.ack.clone().into(),
    ];
    if let Some(mode) = args
        .fsync
        .and_then(|m| clap::ValueEnum::to_possible_value(&m))
    {
        argv.push("--fsync".into());
        argv.push(mode.get_name().into());
    }
    if let Some(port) = spec.upstream_port {
        argv.push("--replicaof".into());
        argv.push(format!("{LOOPBACK}:{port}").into());
    }
    if args.failover == ClusterFailover::Auto {
        let peers: Vec<String> = (0..args.nodes)
            .map(|i| format!("node{i}={LOOPBACK}:{}", args.base_port + u16::from(i)))
            .collect();
        argv.push("--control-peers".into());
        argv.push(peers.join(",").into());
    }
    argv.extend(args.extra.iter().map(OsString::from));
    argv
}

/// Resolves a node's settings as the node will (same flags, environment and config file), so
/// that a setting it would refuse is reported once, before anything starts.
fn check_node_config(
    args: &ClusterArgs,
    spec: &NodeSpec,
    argv: &[OsString],
) -> Result<(), ClusterError> {
    let invalid = |message: String| ClusterError::Config {
        node: spec.name.clone(),
        message,
    };
    let command = std::iter::once(OsString::from("replikv serve")).chain(argv.iter().cloned());
    let mut parsed = NodeCommand::try_parse_from(command).map_err(|e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default();
        invalid(first.trim_start_matches("error: ").to_string())
    })?;
    // The node gets the secret in its environment, which `check_extra` keeps authoritative.
    parsed.serve.cluster_secret.clone_from(&args.cluster_secret);
    let config = Config::resolve(&parsed.serve).map_err(|e| invalid(e.to_string()))?;
    if let (None, Some(upstream)) = (spec.upstream_port, &config.replicaof) {
        return Err(invalid(format!(
            "the leader would replicate from {upstream} (set by REPLIKV_REPLICAOF or a config \
             file); unset it for `replikv cluster`"
        )));
    }
    Ok(())
}

fn check_port_free(spec: &NodeSpec, port: u16, role: &'static str) -> Result<(), ClusterError> {
    // Bound and released at once: a race with another program remains, and then the node
    // fails to listen and the cluster stops with its message.
    TcpListener::bind((LOOPBACK, port))
        .map(drop)
        .map_err(|source| ClusterError::PortInUse {
            port,
            node: spec.name.clone(),
            role,
            source,
        })
}

/// Waits until every node answers PING, within [`READY_TIMEOUT`] in all; the first node that
/// did not answer otherwise.
async fn wait_ready(ports: &[(String, u16)]) -> Result<(), (String, u16)> {
    let deadline = Instant::now() + READY_TIMEOUT;
    for (name, port) in ports {
        while !ping(*port).await {
            if Instant::now() >= deadline {
                return Err((name.clone(), *port));
            }
            sleep(PING_INTERVAL).await;
        }
    }
    Ok(())
}

/// Whether a node serves clients on `port`: it answers PING with PONG, or with NOAUTH when
/// extra flags set a password.
async fn ping(port: u16) -> bool {
    let probe = async {
        let mut stream = TcpStream::connect((LOOPBACK, port)).await.ok()?;
        stream.write_all(b"*1\r\n$4\r\nPING\r\n").await.ok()?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await.ok()?;
        Some(&reply == b"+PONG\r\n" || &reply == b"-NOAUTH")
    };
    matches!(timeout(PING_TIMEOUT, probe).await, Ok(Some(true)))
}

fn print_summary(nodes: &[Running], args: &ClusterArgs) {
    let mut text = format!(
        "\nreplikv cluster is up: {} node{} on {LOOPBACK}, data in {}\n",
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" },
        args.data_dir.display()
    );
    for node in nodes {
        let role = if args.failover == ClusterFailover::Auto {
            "voter  "
        } else if node.spec.upstream_port.is_some() {
            "replica"
        } else {
            "leader "
        };
        text.push_str(&format!(
            "  {role}  {}  {LOOPBACK}:{}  admin http://{LOOPBACK}:{}/status\n",
            node.spec.name, node.spec.port, node.spec.admin_port
        ));
    }
    let secret = if args.cluster_secret.is_some() {
        "peer links authenticated with the cluster secret"
    } else {
        "no cluster secret: the nodes accept loopback peers only"
    };
    let leader_port = nodes.first().map_or(args.base_port, |n| n.spec.port);
    text.push_str(&format!("  acknowledgement {}; {secret}\n\n", args.ack));
    if args.failover == ClusterFailover::Auto {
        text.push_str(&format!(
            "The control plane elects the leader and replaces it when it fails. Find it:\n  \
             redis-cli -p {leader_port} SENTINEL get-master-addr-by-name replikv\n\
             Ctrl-C stops the cluster.\n\n"
        ));
    } else {
        text.push_str(&format!(
            "Connect:  redis-cli -p {leader_port}\nCtrl-C stops the cluster.\n\n"
        ));
    }
    let mut out = std::io::stdout().lock();
    // With stdout closed the summary is lost, but the cluster itself is unaffected.
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// SIGTERM to every running node, then at most [`STOP_TIMEOUT`] for them to exit (cut short by
/// another signal), then SIGKILL for the rest. Every node is reaped or reported on return; the
/// result says how each one that was running ended.
async fn stop_all(nodes: &mut [Running], signals: &mut StopSignals) -> Vec<String> {
    let mut outcomes = Vec::with_capacity(nodes.len());
    for node in nodes.iter_mut() {
        let Some(pid) = node.child.as_ref().and_then(Child::id) else {
            continue;
        };
        if let Err(e) = sigterm(pid).await {
            say(&format!(
                "cannot send SIGTERM to {} ({e}): killing it",
                node.spec.name
            ));
            if let Some(child) = node.child.as_mut() {
                // A failure means it has already exited; it is reaped below either way.
                let _ = child.start_kill();
            }
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while nodes.iter().any(|n| n.child.is_some()) {
        let event = tokio::select! {
            (index, status) = next_exit(nodes) => Event::Exit(index, status),
            name = signals.recv() => Event::Signal(name),
            () = sleep_until(deadline) => {
                say(&format!("nodes still running after {} s: killing them",
                    STOP_TIMEOUT.as_secs()));
                break;
            }
        };
        match event {
            Event::Exit(index, status) => outcomes.push(stopped(&nodes[index], &status)),
            Event::Signal(name) => {
                say(&format!("{name} received again: killing the nodes"));
                break;
            }
        }
    }
    for node in nodes.iter_mut() {
        if let Some(child) = node.child.as_mut() {
            // A failure means it has already exited; the wait below reaps it either way.
            let _ = child.start_kill();
        }
    }
    let deadline = Instant::now() + KILL_WAIT_TIMEOUT;
    while nodes.iter().any(|n| n.child.is_some()) {
        let event = tokio::select! {
            (index, status) = next_exit(nodes) => Event::Exit(index, status),
            () = sleep_until(deadline) => break,
        };
        if let Event::Exit(index, status) = event {
            outcomes.push(stopped(&nodes[index], &status));
        }
    }
    for node in nodes.iter() {
        if let Some(pid) = node.child.as_ref().and_then(Child::id) {
            outcomes.push(format!(
                "{} (pid {pid}) did not exit even when killed",
                node.spec.name
            ));
        }
    }
    outcomes
}

fn stopped(node: &Running, status: &std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) if s.success() => format!("{} stopped", node.spec.name),
        _ => format!("{} stopped ({})", node.spec.name, describe(status)),
    }
}

fn describe(status: &std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("exit status unknown: {e}"),
    }
}

/// Sends SIGTERM through kill(1): the standard library can only SIGKILL a child, and this
/// crate takes no dependency for the one call. `pid` belongs to a child not yet reaped, so it
/// cannot have been reused.
async fn sigterm(pid: u32) -> std::io::Result<()> {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("kill -TERM {pid}: {status}")))
    }
}

/// The next node to exit; it is marked reaped (`child = None`). Pending while none runs.
async fn next_exit(nodes: &mut [Running]) -> (usize, std::io::Result<ExitStatus>) {
    std::future::poll_fn(|cx| {
        for (index, node) in nodes.iter_mut().enumerate() {
            let Some(child) = node.child.as_mut() else {
                continue;
            };
            // `Child::wait` is cancel safe: a fresh future per poll loses nothing.
            let polled = std::pin::pin!(child.wait()).poll(cx);
            if let Poll::Ready(status) = polled {
                node.child = None;
                return Poll::Ready((index, status));
            }
        }
        Poll::Pending
    })
    .await
}

/// SIGINT, SIGTERM and SIGHUP, any of which stops the cluster.
struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl StopSignals {
    fn install() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// The name of the next signal received.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            Some(()) = self.interrupt.recv() => "SIGINT",
            Some(()) = self.terminate.recv() => "SIGTERM",
            Some(()) = self.hangup.recv() => "SIGHUP",
            // Only when the runtime is shutting down, which ends the launcher anyway.
            else => std::future::pending().await,
        }
    }
}

#[derive(Clone, Copy)]
enum Sink {
    Stdout,
    Stderr,
}

/// Copies a node's output line by line, each line prefixed with the node's name.
async fn relay(from: impl AsyncRead + Unpin, prefix: String, sink: Sink) {
    let mut reader = BufReader::new(from);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        line.extend_from_slice(prefix.as_bytes());
        let read = (&mut reader)
            .take(RELAY_LINE_BYTES_MAX)
            .read_until(b'\n', &mut line)
            .await;
        match read {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                say(&format!("{}output lost: {e}", prefix));
                return;
            }
        }
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        // The launcher's own output may be gone (piped into `head`); the node's pipe is still
        // drained so that the node never blocks on it.
        let _ = match sink {
            Sink::Stdout => std::io::stdout().lock().write_all(&line),
            Sink::Stderr => std::io::stderr().lock().write_all(&line),
        };
    }
}

/// A launcher message on stderr, marked as the launcher's among the nodes' lines.
fn say(message: &str) {
    // Nothing better to do when stderr is gone.
    let _ = writeln!(std::io::stderr().lock(), "[cluster] {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Parser)]
    struct TestCli {
        #[command(flatten)]
        cluster: ClusterArgs,
    }

    fn args(extra: &[&str]) -> ClusterArgs {
        let mut argv = vec!["cluster"];
        argv.extend_from_slice(extra);
        TestCli::try_parse_from(argv)
            .expect("test arguments parse")
            .cluster
    }

    #[test]
    fn plan_gives_each_node_its_ports_and_directory_and_the_leader_as_upstream() {
        let specs = plan(&args(&["--nodes", "3", "--base-port", "7000"])).unwrap();
        let ports: Vec<_> = specs.iter().map(|s| (s.port, s.admin_port)).collect();
        assert_eq!(ports, [(7000, 7100), (7001, 7101), (7002, 7102)]);
        let ups: Vec<_> = specs.iter().map(|s| s.upstream_port).collect();
        assert_eq!(ups, [None, Some(7000), Some(7000)]);
        assert_eq!(
            specs[2].data_dir,
            PathBuf::from("replikv-cluster").join("node2")
        );
        assert_eq!(specs[2].name, "node2");
    }

    #[test]
    fn plan_refuses_ports_past_65535_and_port_zero() {
        let last_fit = 65535 - 100 - 8;
        assert!(plan(&args(&[
            "--nodes",
            "9",
            "--base-port",
            &last_fit.to_string()
        ]))
        .is_ok());
        let err = plan(&args(&[
            "--nodes",
            "9",
            "--base-port",
            &(last_fit + 1).to_string(),
        ]));
        assert!(
            matches!(err, Err(ClusterError::BasePort { max, .. }) if max == last_fit),
            "{err:?}"
        );
        assert!(plan(&args(&["--base-port", "0"])).is_err());
        let mut zero = args(&[]);
        zero.nodes = 0;
        assert!(matches!(plan(&zero), Err(ClusterError::Nodes { nodes: 0 })));
    }

    #[test]
    fn with_automatic_failover_every_node_is_a_voter_and_none_replicates_by_flag() {
        let a = args(&["--nodes", "3", "--base-port", "7000", "--failover", "auto"]);
        let specs = plan(&a).unwrap();
        assert!(specs.iter().all(|s| s.upstream_port.is_none()));
        for spec in &specs {
            let argv: Vec<String> = node_args(&a, spec)
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            let text = argv.join(" ");
            assert!(!text.contains("--replicaof"), "{text}");
            assert!(
                text.contains(
                    "--control-peers node0=127.0.0.1:7000,node1=127.0.0.1:7001,node2=127.0.0.1:7002"
                ),
                "{text}"
            );
            assert!(text.contains(&format!("--node-id {}", spec.name)), "{text}");
            check_node_config(&a, spec, &node_args(&a, spec)).unwrap();
        }
    }

    #[test]
    fn nodes_are_bounded_by_clap() {
        for n in ["0", "10"] {
            let parsed = TestCli::try_parse_from(["cluster", "--nodes", n]);
            assert!(parsed.is_err(), "--nodes {n} was accepted");
        }
    }

    #[test]
    fn node_args_name_the_leader_on_replicas_only_and_end_with_the_extras() {
        let a = args(&[
            "--nodes", "2", "--fsync", "interval", "--", "--log", "debug",
        ]);
        let specs = plan(&a).unwrap();
        let text = |argv: Vec<OsString>| {
            argv.iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let leader = text(node_args(&a, &specs[0]));
        let replica = text(node_args(&a, &specs[1]));
        assert!(!leader.contains("--replicaof"), "{leader}");
        assert!(replica.contains("--replicaof 127.0.0.1:7000"), "{replica}");
        assert!(
            replica.contains("--node-id node1 --cluster-size 2"),
            "{replica}"
        );
        assert!(
            replica.contains("--ack async --fsync interval"),
            "{replica}"
        );
        assert!(replica.ends_with("--log debug"), "{replica}");
    }

    #[test]
    fn extras_may_not_set_what_the_cluster_sets() {
        for flag in ["--port", "--replicaof=127.0.0.1:1", "--cluster-secret"] {
            let err = check_extra(&[flag.to_string(), "x".to_string()]).unwrap_err();
            assert!(
                err.to_string().contains(flag.split('=').next().unwrap()),
                "{err}"
            );
        }
        assert!(check_extra(&["--log".to_string(), "debug".to_string()]).is_ok());
    }

    #[test]
    fn node_settings_a_node_would_refuse_are_reported_before_starting() {
        let a = args(&["--ack", "sometimes"]);
        let specs = plan(&a).unwrap();
        let err = check_node_config(&a, &specs[0], &node_args(&a, &specs[0])).unwrap_err();
        assert!(
            err.to_string().starts_with("node0: bad setting ack"),
            "{err}"
        );
        let a = args(&["--", "--no-such-flag"]);
        let err = check_node_config(&a, &specs[0], &node_args(&a, &specs[0])).unwrap_err();
        assert!(err.to_string().contains("--no-such-flag"), "{err}");
    }
}
