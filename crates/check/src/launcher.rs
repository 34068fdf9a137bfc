//! The local cluster a check runs against: `replikv serve` child processes on 127.0.0.1, laid
//! out as `replikv cluster` lays them out (node `i` on client port `base + i` and admin port
//! `base + 100 + i`, `node0` leading, the others replicating from it), with the controls the
//! nemesis needs: kill -9 and restart with the same arguments, pause and resume.
//!
//! Every child runs in its own process group (Ctrl-C reaches the checker only, which then stops
//! the nodes itself) and is killed if the [`LocalCluster`] is dropped without being stopped.
//! Each node's output goes to `node<i>.log` in the run's folder; restarts append to it.

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
/// The only address the cluster uses.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
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
    /// Start the nodes with `--fault-injection` and `REPLIKV_I_AM_TESTING=1` (partitions).
    pub fault_injection: bool,
    /// Folder of the run: node logs go here, data directories under `data/`.
    pub dir: PathBuf,
    /// Further `replikv serve` flags for every node.
    pub extra: Vec<String>,
}

/// One node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// `node<i>`, also its node id.
    pub name: String,
    /// Client port.
    pub port: u16,
    /// Admin HTTP port.
    pub admin_port: u16,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Where its output goes.
    pub log: PathBuf,
    /// The leader's client port on a replica.
    pub upstream_port: Option<u16>,
}

impl NodeSpec {
    /// Its client address, as recorded in the history.
    #[must_use]
    pub fn addr(&self) -> String {
        format!("{LOOPBACK}:{}", self.port)
    }

    /// Its admin address.
    #[must_use]
    pub fn admin_addr(&self) -> String {
        format!("{LOOPBACK}:{}", self.admin_port)
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
    let specs: Vec<NodeSpec> = (0..plan.nodes.clamp(1, NODES_MAX))
        .map(|i| {
            // In range: base + 100 + (nodes - 1) <= 65535 was checked above.
            let port = plan.base_port + u16::from(i);
            NodeSpec {
                name: format!("node{i}"),
                port,
                admin_port: port + ADMIN_PORT_OFFSET,
                data_dir: plan.dir.join("data").join(format!("node{i}")),
                log: plan.dir.join(format!("node{i}.log")),
                upstream_port: (i > 0).then_some(plan.base_port),
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
        plan.nodes.to_string().into(),
        "--ack".into(),
        plan.ack.clone().into(),
        "--fsync".into(),
        plan.fsync.clone().into(),
    ];
    if let Some(port) = spec.upstream_port {
        argv.push("--replicaof".into());
        argv.push(format!("{LOOPBACK}:{port}").into());
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
        for spec in &specs {
            for (port, role) in [(spec.port, "client"), (spec.admin_port, "admin")] {
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
        let mut command = Command::new(&self.plan.exe);
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
        let child = command.spawn().map_err(spawn_error)?;
        self.children[i] = Some(child);
        self.paused[i] = false;
        Ok(())
    }

    async fn wait_ready(&mut self, i: usize, deadline: Instant) -> Result<(), LaunchError> {
        let port = self.specs[i].port;
        loop {
            if ping(port).await {
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

    /// Makes every node run again: SIGCONT to the paused ones, a restart of the killed ones,
    /// then waits (bounded) until each answers PING. Returns what could not be undone.
    pub async fn undo_all(&mut self, bound: Duration) -> Vec<String> {
        let mut problems = Vec::new();
        for i in 0..self.specs.len() {
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

/// Whether a node serves clients on `port`: PONG, or NOAUTH when a password is set.
pub async fn ping(port: u16) -> bool {
    let probe = async {
        let mut stream = TcpStream::connect((LOOPBACK, port)).await.ok()?;
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
            dir: PathBuf::from("run"),
            extra: extra.iter().map(|s| (*s).to_string()).collect(),
        }
    }

    #[test]
    fn nodes_are_laid_out_as_replikv_cluster_lays_them_out() {
        let specs = plan_nodes(&plan(&[])).unwrap();
        let ports: Vec<_> = specs.iter().map(|s| (s.port, s.admin_port)).collect();
        assert_eq!(ports, [(7300, 7400), (7301, 7401), (7302, 7402)]);
        assert_eq!(specs[1].upstream_port, Some(7300));
        assert_eq!(specs[0].upstream_port, None);
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
    }
}
