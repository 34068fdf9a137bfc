//! `replikv check`: one run against a real cluster, from launch to verdict.
//!
//! 1. Start a local cluster ([`crate::launcher`]) or find the leader among `--targets`.
//! 2. Run the [workload] for `--duration` while the [nemesis]
//!    injects faults; Ctrl-C ends this phase early.
//! 3. Undo every fault, wait (bounded) for the replicas to apply the leader's position, and read
//!    every key on every node ([`History::final_reads`]).
//! 4. Stop the cluster, run the checkers, and write `history.json`, `report.json` and
//!    `timeline.svg` to `<results>/<UTC time>-<mode>/`; print the report.
//!
//! Exit status: 0 when every property the mode promises held, 1 when one was violated or a
//! node crashed, 2 for bad arguments, 3 when the run itself could not be made (the cluster did
//! not start, the results could not be written).
//!
//! Partitions are made with network namespaces when the checker runs as root on Linux
//! (`--net auto`, the default, or `--net namespaces`), else with the nodes' fault-injection
//! hook (`--net hook`); the report says which.
//!
//! With `--failover none` (the default) `node0` leads throughout and the others replicate from
//! it; a lost leader is not replaced, so its faults show as unavailability. With `--failover
//! auto` the nodes run their control plane (`--control-peers`) and elect a leader, and another
//! when it dies, is paused or is cut off; the clients follow it by asking the nodes
//! ([`crate::endpoints`]), the nemesis aims most kills, pauses and partitions at it, and the
//! report measures the failover time of each ([`checker::failovers`]).
//!
//! | mode | promised across kill -9, pause, partition, delay, loss and clock skew, `--failover none` | the same, `--failover auto` |
//! |---|---|---|
//! | `sync` | no lost acknowledged writes; leader reads linearizable | no lost acknowledged writes; reads of the leader of the moment linearizable; one leader per epoch |
//! | `semi-sync:K`, `quorum` with `--fsync always` | no lost acknowledged writes | no lost acknowledged writes; one leader per epoch |
//! | anything else | nothing: the report measures what happened | one leader per epoch |
//!
//! Under `--failover auto` a leader read is a read sent to the node the clients took for the
//! leader when they sent it. Clients notice a new leader only when an operation on the old one
//! fails, so a read sent to a deposed leader before that counts as a leader read: a stale
//! answer from it is reported, as a client following Sentinel would have received it.

use crate::checker::{self, Options, Status, Verdict};
use crate::endpoints::{self, leader_at, Endpoints, LeaderChange};
use crate::history::{History, Outcome};
use crate::launcher::{self, Failover, LaunchPlan, LocalCluster, Network, NodeSpec, NODES_MAX};
use crate::nemesis::{self, FaultKind, NemesisConfig, NemesisLog};
use crate::report::{self, NodeInfo, Report, RunInfo};
use crate::workload::{self, ReadTarget, WorkloadConfig, CLIENTS_MAX, KEYS_MAX};
use replikv_core::AckMode;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::time::Instant;

/// Exit status: a promised property was violated, or a node crashed.
pub const EXIT_VIOLATION: u8 = 1;
/// Exit status: bad arguments.
pub const EXIT_USAGE: u8 = 2;
/// Exit status: the run could not be made.
pub const EXIT_RUN: u8 = 3;
/// Longest run.
pub const DURATION_MAX: Duration = Duration::from_secs(24 * 3600);
/// Bound on bringing every node back after the run (restart, resume, answer PING).
pub const UNDO_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on the replicas applying the leader's position after the run.
pub const CATCHUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on reading every key from one node after the run.
pub const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Windows without a success shorter than this are not reported as unavailability.
pub const MIN_UNAVAILABILITY: Duration = Duration::from_secs(1);
/// With automatic failover, bound on the nodes electing their first leader after the start.
pub const FIRST_LEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// The cluster name the nodes use unless `--cluster-name` is among the serve flags (the
/// server's default).
pub const CLUSTER_NAME_DEFAULT: &str = "replikv";
/// With automatic failover, most tries of the warm-up write (each after looking for the
/// leader again).
const WARM_UP_TRIES_MAX: u32 = 20;
/// Most tries at a fresh results folder name within one second.
const RESULTS_NAME_TRIES_MAX: u32 = 100;

/// `replikv check` settings.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "Examples:\n  \
    # node0 leads throughout, under kill -9, pause and partition\n  \
    replikv check --nodes 3 --mode sync --nemesis kill,pause,partition --duration 30s\n  \
    # automatic failover: the nodes elect a new leader; the report gives failover times\n  \
    replikv check --nodes 3 --mode sync --failover auto --duration 60s")]
pub struct CheckArgs {
    /// Nodes to start (1 to 9): node0 leads and the others replicate from it, or, with
    /// `--failover auto`, the nodes elect the leader.
    #[arg(long, default_value_t = 3,
        value_parser = clap::value_parser!(u8).range(1..=i64::from(NODES_MAX)))]
    pub nodes: u8,
    /// Acknowledgement mode under test: `sync`, `semi-sync:K`, `quorum` or `async`.
    #[arg(long, default_value = "sync")]
    pub mode: String,
    /// Log durability of every node: `always` or `interval`. With --targets, say what the
    /// nodes run with: it decides what the mode promises.
    #[arg(long, default_value = "always", value_parser = ["always", "interval"])]
    pub fsync: String,
    /// Faults to inject, comma-separated: `kill` (kill -9, then restart), `pause`
    /// (SIGSTOP/SIGCONT), `partition` (cut a node off), `delay` (50-500 ms more latency on a
    /// node's replication links), `loss` (5-30% loss on them), `clock` (skew a node's clock
    /// by 0.1-5 s either way), or `none`.
    #[arg(long, default_value = "kill,pause,partition")]
    pub nemesis: String,
    /// Who decides which node leads: `none` (node0 leads throughout; a lost leader is not
    /// replaced) or `auto` (the nodes' control plane elects a leader and replaces a lost one;
    /// clients follow it, the nemesis aims most kills, pauses and partitions at it, and the
    /// report gives each failover's time and checks that no epoch had two leaders). With
    /// --targets, `auto` says the nodes run their control plane; their cluster name is taken
    /// from `-- --cluster-name NAME` [default name: replikv].
    #[arg(long, value_enum, default_value = "none")]
    pub failover: Failover,
    /// How partitions are made: `namespaces` (one network namespace per node on a bridge;
    /// needs root on Linux; cuts clients off too), `hook` (the nodes' fault-injection hook
    /// cuts replication links only) or `auto` (namespaces when they can be made).
    #[arg(long, value_enum, default_value = "auto")]
    pub net: NetChoice,
    /// How long the workload runs: `30s`, `2m`, `500ms` or seconds.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Concurrent client connections (1 to 1000).
    #[arg(long, default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(CLIENTS_MAX)))]
    pub clients: u32,
    /// Keys the workload uses (1 to 1000); every fourth is a counter, the others registers.
    #[arg(long, default_value_t = 8,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(KEYS_MAX)))]
    pub keys: u32,
    /// Where reads go: `leader`, `replicas` or `any`. Writes always go to the leader.
    #[arg(long, value_enum, default_value = "leader")]
    pub reads: ReadTarget,
    /// Most operations per second, all clients together [default: no limit].
    #[arg(long)]
    pub rate_max: Option<f64>,
    /// Bound on one operation; past it the operation is recorded as indeterminate.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub op_timeout: Duration,
    /// Time the linearizability checker may take before it answers "unknown".
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub check_budget: Duration,
    /// Folder receiving one folder per run (history.json, report.json, timeline.svg, node
    /// logs).
    #[arg(long, default_value = "check-results")]
    pub results: PathBuf,
    /// Seed of the workload's and the nemesis' choices [default: from the clock].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Node i listens on client port BASE+i and admin port BASE+100+i, on 127.0.0.1.
    #[arg(long, default_value_t = 7300)]
    pub base_port: u16,
    /// Run against these running nodes (`host:port` of their client ports, comma-separated)
    /// instead of starting a cluster; no faults are injected (`--nemesis none`).
    #[arg(long, value_delimiter = ',')]
    pub targets: Vec<String>,
    /// Keep the nodes' data directories after the run (they are removed otherwise).
    #[arg(long)]
    pub keep_data: bool,
    /// Further `replikv serve` flags for every started node, after `--`.
    #[arg(last = true, value_name = "SERVE_FLAGS")]
    pub extra: Vec<String>,
}

/// `--net`: how partitions are made.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetChoice {
    /// Namespaces when running as root on Linux and `ip netns add` works, else the hook.
    Auto,
    /// Network namespaces; the run fails when they cannot be made.
    Namespaces,
    /// The nodes' fault-injection hook, every node on 127.0.0.1.
    Hook,
}

/// Parses `30s`, `2m`, `500ms`, `1h` or a bare number of seconds.
///
/// # Errors
/// Anything else, or zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 30s, 2m or 500ms"))?;
    let seconds = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}`: use ms, s, m or h"
            ))
        }
    };
    if seconds.is_nan() || seconds <= 0.0 || seconds > DURATION_MAX.as_secs_f64() {
        return Err(format!("`{text}` must be above 0 and at most 24 h"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// The cluster could not be started.
    #[error(transparent)]
    Launch(#[from] crate::launcher::LaunchError),
    /// The targets could not be used.
    #[error("{0}")]
    Targets(String),
    /// With automatic failover, no leader was found.
    #[error("no leader: {0}")]
    Leader(String),
    /// The results could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A checker panicked (a bug in the checker).
    #[error("a checker failed: {0}")]
    Checker(String),
    /// The runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// `--net namespaces` cannot be had.
    #[error("--net namespaces: {0}")]
    Net(String),
}

impl RunError {
    /// The exit status for this error.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Usage(_) => EXIT_USAGE,
            _ => EXIT_RUN,
        }
    }
}

/// The properties (checker names) `mode` promises across the faults this harness injects.
/// Under automatic failover, every mode also promises one leader per epoch: epochs come from
/// the control plane, which never elects two leaders in one.
#[must_use]
pub fn promised(mode: AckMode, fsync: &str, failover: Failover) -> Vec<&'static str> {
    let mut promised = match mode {
        AckMode::Sync => vec!["lost_writes", "linearizability"],
        AckMode::SemiSync(_) | AckMode::Quorum if fsync == "always" => vec!["lost_writes"],
        _ => Vec::new(),
    };
    if failover == Failover::Auto {
        promised.push("one_leader_per_epoch");
    }
    promised
}

/// The value of `flag` among `replikv serve` flags (`--flag value` or `--flag=value`), the
/// last one given.
fn serve_flag<'a>(flags: &'a [String], flag: &str) -> Option<&'a str> {
    let mut found = None;
    for (i, arg) in flags.iter().enumerate() {
        if arg == flag {
            found = flags.get(i + 1).map(String::as_str);
        } else if let Some(value) = arg.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            found = Some(value);
        }
    }
    found
}

/// Arguments checked and resolved.
struct Settings {
    args: CheckArgs,
    mode: AckMode,
    kinds: Vec<FaultKind>,
    seed: u64,
    /// The nodes' cluster name (what `SENTINEL` is asked about).
    cluster_name: String,
}

fn settings(args: CheckArgs) -> Result<Settings, RunError> {
    let usage = |m: String| Err(RunError::Usage(m));
    let mode: AckMode = match args.mode.parse() {
        Ok(m) => m,
        Err(e) => return usage(format!("--mode: {e}")),
    };
    let kinds = nemesis::parse_kinds(&args.nemesis)
        .map_err(|e| RunError::Usage(format!("--nemesis: {e}")))?;
    if !args.targets.is_empty() && !kinds.is_empty() {
        return usage(
            "--targets runs against nodes this command did not start, so it injects no faults: \
             add --nemesis none"
                .to_string(),
        );
    }
    if args.targets.is_empty() {
        if let AckMode::SemiSync(k) = mode {
            if k >= u32::from(args.nodes) {
                return usage(format!(
                    "--mode {mode} needs {k} replicas but --nodes {} has {}",
                    args.nodes,
                    args.nodes - 1
                ));
            }
        }
        for kind in [FaultKind::Partition, FaultKind::Delay, FaultKind::Loss] {
            if args.nodes < 2 && kinds.contains(&kind) {
                return usage(format!("--nemesis {} needs at least 2 nodes", kind.name()));
            }
        }
    }
    if args.failover == Failover::Auto {
        for flag in ["--replicaof", "--control-peers"] {
            if serve_flag(&args.extra, flag).is_some() {
                return usage(format!(
                    "--failover auto gives every node its --control-peers and no --replicaof: \
                     leave {flag} out of the serve flags"
                ));
            }
        }
        if serve_flag(&args.extra, "--replica-writes") == Some("forward") {
            return usage(
                "--failover auto measures which node acknowledged each write, which a replica \
                 forwarding writes would hide: leave --replica-writes forward out"
                    .to_string(),
            );
        }
    }
    if let Some(rate) = args.rate_max {
        if !(rate > 0.0 && rate.is_finite()) {
            return usage(format!(
                "--rate-max {rate} must be a positive number of ops/s"
            ));
        }
    }
    let seed = args.seed.unwrap_or_else(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        now.as_secs() ^ u64::from(now.subsec_nanos()).rotate_left(32)
    });
    let cluster_name = serve_flag(&args.extra, "--cluster-name")
        .unwrap_or(CLUSTER_NAME_DEFAULT)
        .to_string();
    Ok(Settings {
        args,
        mode,
        kinds,
        seed,
        cluster_name,
    })
}

/// Runs `replikv check` with `args`, starting nodes from `exe`; returns the exit status.
#[must_use]
pub fn main(args: CheckArgs, exe: PathBuf) -> u8 {
    let settings = match settings(args) {
        Ok(s) => s,
        Err(e) => {
            complain(&e.to_string());
            return e.exit_code();
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            complain(&RunError::Runtime(e).to_string());
            return EXIT_RUN;
        }
    };
    match runtime.block_on(run(settings, exe)) {
        Ok(code) => code,
        Err(e) => {
            complain(&e.to_string());
            e.exit_code()
        }
    }
}

/// The error that ends `replikv check`, on stderr.
fn complain(message: &str) {
    use std::io::Write as _;
    // Nothing better to do when stderr is gone; the exit status still tells.
    let _ = writeln!(std::io::stderr().lock(), "replikv check: {message}");
}

/// A progress line on stderr (the report goes to stdout).
pub(crate) fn say(message: &str) {
    use std::io::Write as _;
    // Nothing better to do when stderr is gone (piped into `head`); the run goes on.
    let _ = writeln!(std::io::stderr().lock(), "[check] {message}");
}

/// UTC calendar date and time of `t`: (`20250102T030405Z`, `2025-01-02T03:04:05Z`).
fn utc(t: SystemTime) -> (String, String) {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}Z"),
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"),
    )
}

/// A fresh folder `<results>/<stamp>-<mode>[-n]`.
fn results_dir(results: &Path, stamp: &str, mode: AckMode) -> Result<PathBuf, RunError> {
    let mode = mode.to_string().replace(':', "");
    std::fs::create_dir_all(results).map_err(|source| RunError::Write {
        path: results.to_path_buf(),
        source,
    })?;
    let mut last = None;
    for n in 1..=RESULTS_NAME_TRIES_MAX {
        let name = if n == 1 {
            format!("{stamp}-{mode}")
        } else {
            format!("{stamp}-{mode}-{n}")
        };
        let path = results.join(name);
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(source) => return Err(RunError::Write { path, source }),
        }
    }
    Err(RunError::Write {
        path: results.to_path_buf(),
        source: last.unwrap_or_else(|| std::io::Error::other("no free folder name")),
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    std::fs::write(path, bytes).map_err(|source| RunError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Finds the leader among `targets` with `REPLIKV POSITION`.
async fn find_leader(targets: &[String]) -> Result<(Endpoints, Vec<NodeInfo>), RunError> {
    let mut leader = None;
    let mut replicas = Vec::new();
    let mut nodes = Vec::new();
    for t in targets {
        let Some((_, is_leader)) = workload::position(t, Duration::from_secs(2)).await else {
            return Err(RunError::Targets(format!(
                "{t} did not answer REPLIKV POSITION: is it a replikv node?"
            )));
        };
        nodes.push(NodeInfo {
            name: t.clone(),
            addr: t.clone(),
            role: if is_leader { "leader" } else { "replica" }.to_string(),
        });
        if is_leader {
            if let Some(other) = &leader {
                return Err(RunError::Targets(format!("{other} and {t} both lead")));
            }
            leader = Some(t.clone());
        } else {
            replicas.push(t.clone());
        }
    }
    let Some(leader) = leader else {
        return Err(RunError::Targets(format!(
            "none of {} leads",
            targets.join(", ")
        )));
    };
    nodes.sort_by_key(|n| n.role != "leader");
    Ok((Endpoints::fixed(leader, replicas), nodes))
}

/// With automatic failover: waits (bounded by [`FIRST_LEADER_TIMEOUT`]) until a majority of
/// `nodes` name one of them as the leader of `cluster_name`.
async fn first_leader(nodes: &[String], cluster_name: &str) -> Result<String, RunError> {
    let deadline = Instant::now() + FIRST_LEADER_TIMEOUT;
    let found = endpoints::discover(nodes, cluster_name, deadline, u32::MAX).await;
    match found {
        Some(leader) if nodes.contains(&leader) => Ok(leader),
        Some(other) => Err(RunError::Leader(format!(
            "the nodes name {other} as the leader of {cluster_name:?}, which is none of {}",
            nodes.join(", ")
        ))),
        None => Err(RunError::Leader(format!(
            "no majority of {} named a leader of cluster {cluster_name:?} (SENTINEL \
             get-master-addr-by-name) within {} s: do they run with --control-peers?",
            nodes.join(", "),
            FIRST_LEADER_TIMEOUT.as_secs()
        ))),
    }
}

/// The nodes for the report; `leader` leads at the start.
fn node_infos(specs: &[NodeSpec], leader: &str) -> Vec<NodeInfo> {
    specs
        .iter()
        .map(|s| NodeInfo {
            name: s.name.clone(),
            addr: s.addr(),
            role: if s.addr() == leader {
                "leader"
            } else {
                "replica"
            }
            .to_string(),
        })
        .collect()
}

async fn run(settings: Settings, exe: PathBuf) -> Result<u8, RunError> {
    let Settings {
        args,
        mode,
        kinds,
        seed,
        cluster_name,
    } = settings;
    let failover = args.failover;
    let started = SystemTime::now();
    let (stamp, started_at) = utc(started);
    let dir = results_dir(&args.results, &stamp, mode)?;
    let launched = args.targets.is_empty();
    let started_ns = started
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    // Only the low bits vary between runs; the truncation is the point.
    let mut tag = crate::rng::Rng::stream(seed, started_ns as u64);

    // Ctrl-C from here on ends the run early through the normal path, which stops the nodes
    // and removes the network namespaces (also while the cluster is starting).
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let run_over = Arc::clone(&stop_tx);
    // Installed here, before anything is started, so that no Ctrl-C is missed; `None` when it
    // cannot be (Ctrl-C then ends the checker and the drop guards are skipped).
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    let interrupt = tokio::spawn(async move {
        // Bounded: a person pressing Ctrl-C over and over.
        for _ in 0..1000 {
            let Some(signals) = sigint.as_mut() else {
                return;
            };
            if signals.recv().await.is_none() {
                return;
            }
            if *stop_tx.borrow() {
                say("already ending: the nodes are stopped and the checkers are bounded");
            } else {
                say("interrupted: ending the run early, undoing faults and checking what ran");
            }
            // Nobody left to tell means the run has ended already.
            let _ = stop_tx.send(true);
        }
    });

    // 1. The cluster.
    let mut cluster = None;
    let mut net = "none (--targets)".to_string();
    let (endpoints, nodes) = if launched {
        let (network, why) = network(args.net, &mut tag)?;
        let namespaces = network != Network::Loopback;
        net = match &network {
            Network::Loopback => format!("hook: partitions by the nodes' fault hook ({why})"),
            Network::Namespaces { subnet, .. } => format!(
                "namespaces: one per node on a bridge, 10.77.{subnet}.0/24; partitions cut \
                 clients off too ({why})"
            ),
        };
        let plan = LaunchPlan {
            exe,
            nodes: args.nodes,
            base_port: args.base_port,
            ack: mode.to_string(),
            fsync: args.fsync.clone(),
            fault_injection: kinds.iter().any(|k| k.uses_hook(namespaces)),
            network: network.clone(),
            dir: dir.clone(),
            extra: args.extra.clone(),
            failover,
        };
        let failover_note = match failover {
            Failover::None => String::new(),
            Failover::Auto => ", automatic failover".to_string(),
        };
        say(&format!(
            "starting {} nodes on {}:{}.. (mode {mode}, fsync {}{failover_note}); logs in {}",
            args.nodes,
            network.host(0),
            args.base_port,
            args.fsync,
            dir.display()
        ));
        say(&format!("network: {net}"));
        let c = LocalCluster::start(plan).await?;
        let addrs: Vec<String> = c.specs().iter().map(NodeSpec::addr).collect();
        let endpoints = match failover {
            Failover::None => Endpoints::fixed(addrs[0].clone(), addrs[1..].to_vec()),
            Failover::Auto => {
                say("waiting for the nodes to elect a leader");
                let leader = first_leader(&addrs, &cluster_name).await?;
                Endpoints::following(addrs, leader, cluster_name.clone())
            }
        };
        let infos = node_infos(c.specs(), &endpoints.leader());
        cluster = Some(c);
        (endpoints, infos)
    } else {
        match failover {
            Failover::None => find_leader(&args.targets).await?,
            Failover::Auto => {
                let leader = first_leader(&args.targets, &cluster_name).await?;
                let infos = args
                    .targets
                    .iter()
                    .map(|t| NodeInfo {
                        name: t.clone(),
                        addr: t.clone(),
                        role: if *t == leader { "leader" } else { "replica" }.to_string(),
                    })
                    .collect();
                let e = Endpoints::following(args.targets.clone(), leader, cluster_name.clone());
                (e, infos)
            }
        }
    };
    let leader_command = cluster.as_ref().and_then(|c| {
        let leader = endpoints.leader();
        let i = c.specs().iter().position(|s| s.addr() == leader)?;
        Some(c.command_line(i))
    });

    // 2. Workload and nemesis.
    // Unique to this run, so that values left by another run are never read as this run's.
    let key_prefix = format!("t{:08x}:", tag.next_u64() & 0xffff_ffff);
    let wcfg = Arc::new(WorkloadConfig {
        clients: args.clients,
        keys: args.keys,
        reads: args.reads,
        rate_max: args.rate_max,
        op_timeout: args.op_timeout,
        ack: mode.to_string(),
        seed,
        key_prefix: key_prefix.clone(),
    });
    let duration = args.duration;
    let edge = Duration::from_secs(1).min(duration / 5);
    let ncfg = NemesisConfig {
        kinds: kinds.clone(),
        seed,
        start_at: edge,
        end_at: duration.saturating_sub(edge),
        gap: (Duration::from_millis(500), Duration::from_millis(2500)),
        length: (Duration::from_millis(1000), Duration::from_millis(4000)),
        concurrent_max: 2,
        cluster_name: (failover == Failover::Auto).then(|| cluster_name.clone()),
    };
    say(&format!(
        "running {} clients over {} keys for {:.0} s, nemesis {}, seed {seed}",
        args.clients,
        args.keys,
        duration.as_secs_f64(),
        if kinds.is_empty() {
            "none".to_string()
        } else {
            args.nemesis.clone()
        }
    ));
    let mut problems = Vec::new();
    let mut crashes = Vec::new();
    warm_up(&endpoints, &key_prefix, &mut problems).await;
    let clock = Instant::now();
    let until = clock + duration;
    let endpoints = Arc::new(endpoints);
    let workload = workload::run(
        Arc::clone(&wcfg),
        Arc::clone(&endpoints),
        clock,
        until,
        stop_rx.clone(),
    );
    let (ops, nemesis_log) = match cluster.as_mut() {
        Some(c) => {
            let nemesis = nemesis::run(&ncfg, c, clock, stop_rx.clone());
            tokio::join!(workload, nemesis)
        }
        None => (workload.await, NemesisLog::default()),
    };
    // From here on Ctrl-C only says that the end is near. An error means the Ctrl-C task has
    // ended, and then nobody needs telling.
    let _ = run_over.send(true);
    problems.extend(nemesis_log.problems.iter().cloned());

    // 3. Undo, catch up, read back.
    crashes.extend(nemesis_log.crashes.iter().cloned());
    if let Some(c) = cluster.as_mut() {
        crashes.extend(c.reap_exited());
        problems.extend(c.undo_all(UNDO_TIMEOUT).await);
        if kinds.iter().any(|k| k.uses_hook(c.uses_namespaces())) {
            if let Err(e) = nemesis::heal_all(c).await {
                problems.push(format!("final heal: {e}"));
            }
        }
    }
    if endpoints.follows() {
        say("run over; looking for the leader");
        endpoints.refresh(Instant::now() + CATCHUP_TIMEOUT).await;
        say(&format!(
            "{} leads; waiting for the replicas to catch up",
            endpoints.leader()
        ));
    } else {
        say("run over; waiting for the replicas to catch up");
    }
    for behind in workload::wait_caught_up(&endpoints, CATCHUP_TIMEOUT).await {
        problems.push(format!(
            "not caught up after {} s: {behind}",
            CATCHUP_TIMEOUT.as_secs()
        ));
    }
    let keys = workload::key_names(&key_prefix, args.keys);
    let mut final_reads = Vec::new();
    for node in endpoints.all() {
        match workload::read_all(&node, &keys, FINAL_READ_TIMEOUT).await {
            Some(values) => final_reads.push((node, values)),
            None => problems.push(format!("final read of {node} failed")),
        }
    }
    if let Some(c) = cluster.as_mut() {
        for p in c.stop().await {
            problems.push(format!("stopping: {p}"));
        }
        for p in c.remove_netns() {
            problems.push(format!("removing the network namespaces: {p}"));
        }
        if !args.keep_data {
            let data = dir.join("data");
            if let Err(e) = std::fs::remove_dir_all(&data) {
                problems.push(format!("cannot remove {}: {e}", data.display()));
            }
        }
    }

    // 4. Check and report.
    let history = History {
        ops,
        faults: nemesis_log.events,
        final_reads,
    };
    say(&format!("checking {} operations", history.ops.len()));
    let checking = std::time::Instant::now();
    let history = Arc::new(history);
    let leader_changes = endpoints.leader_changes(clock);
    let checked = {
        let h = Arc::clone(&history);
        let (budget, reads) = (args.check_budget, args.reads);
        let leaders = leader_changes.clone();
        tokio::task::spawn_blocking(move || {
            let mut verdicts = check(&h, budget, reads, &leaders);
            let failovers = (failover == Failover::Auto).then(|| {
                verdicts.push(checker::one_leader_per_epoch(&h));
                checker::failovers(&h)
            });
            let (_, availability) = checker::availability(&h, MIN_UNAVAILABILITY);
            let (_, staleness) = checker::stale_reads(&h);
            (verdicts, availability, staleness, failovers)
        })
        .await
    };
    let (verdicts, availability, staleness, failovers) =
        checked.map_err(|e| RunError::Checker(e.to_string()))?;
    say(&format!(
        "checked in {:.1} s",
        checking.elapsed().as_secs_f64()
    ));
    let promised: Vec<String> = promised(mode, &args.fsync, failover)
        .into_iter()
        .map(str::to_string)
        .collect();
    let broken: Vec<String> = verdicts
        .iter()
        .filter(|v| v.status == Status::Fail && promised.contains(&v.checker))
        .map(|v| v.checker.clone())
        .collect();
    let exit_status = if broken.is_empty() && crashes.is_empty() {
        0
    } else {
        EXIT_VIOLATION
    };
    let (counts, ops_by_call, ops_by_node) = report::count(&history);
    let report = Report {
        run: RunInfo {
            started_at,
            mode: mode.to_string(),
            fsync: args.fsync.clone(),
            nodes,
            launched,
            nemesis: kinds.iter().map(|k| k.name().to_string()).collect(),
            net,
            duration_s: duration.as_secs_f64(),
            clients: args.clients,
            keys: args.keys,
            key_prefix,
            reads: format!("{:?}", args.reads).to_lowercase(),
            rate_max: args.rate_max,
            op_timeout_ms: u64::try_from(args.op_timeout.as_millis()).unwrap_or(u64::MAX),
            seed,
            failover: failover.name().to_string(),
            leader_command,
            results_dir: dir.display().to_string(),
        },
        ops: counts,
        ops_by_call,
        ops_by_node,
        latency: report::latency(&history),
        faults: report::fault_counts(&history),
        fault_params: nemesis_log.params.clone(),
        verdicts,
        availability,
        staleness,
        failover: failovers,
        leader_changes: if failover == Failover::Auto {
            leader_changes
        } else {
            Vec::new()
        },
        promised,
        broken,
        problems,
        crashes,
        exit_status,
    };
    // The history is large (about 200 bytes an operation): one line, no indentation.
    write(
        &dir.join("history.json"),
        &serde_json::to_vec(&*history).unwrap_or_default(),
    )?;
    write(&dir.join("report.json"), &to_json(&report))?;
    write(
        &dir.join("timeline.svg"),
        crate::timeline::svg(&report, &history).as_bytes(),
    )?;
    interrupt.abort();
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        // With stdout closed the table is lost, but report.json has it all.
        let _ = out
            .write_all(report::render(&report, &history).as_bytes())
            .and_then(|()| out.flush());
    }
    say(&format!(
        "wrote {0}/report.json, {0}/history.json and {0}/timeline.svg",
        dir.display()
    ));
    Ok(exit_status)
}

/// How the nodes are networked for `choice`, and why.
///
/// # Errors
/// `--net namespaces` when they cannot be made.
fn network(choice: NetChoice, rng: &mut crate::rng::Rng) -> Result<(Network, String), RunError> {
    let pid = std::process::id();
    let prefix = format!("{}{pid}", launcher::NETNS_PREFIX);
    if choice == NetChoice::Hook {
        return Ok((Network::Loopback, "--net hook".to_string()));
    }
    if let Err(why) = launcher::netns_available(&prefix) {
        return match choice {
            NetChoice::Namespaces => Err(RunError::Net(why)),
            _ => Ok((Network::Loopback, format!("--net auto: {why}"))),
        };
    }
    let subnet = launcher::free_subnet(pid).map_err(|e| RunError::Net(e.to_string()))?;
    let secret = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
    let why = match choice {
        NetChoice::Namespaces => "--net namespaces",
        _ => "--net auto: root with a working `ip netns`",
    };
    Ok((
        Network::Namespaces {
            subnet,
            prefix,
            secret,
        },
        why.to_string(),
    ))
}

/// Every checker's verdict on `h`. Linearizability is judged on the leader's reads only (with
/// every write): a replica may serve older data in every mode, which the stale-read and session
/// checkers measure instead. A leader read is one sent to the node the clients took for the
/// leader when it was sent, by `leaders` (every leader the clients followed, from when they
/// found it). When reads went elsewhere too, the other checkers see the whole history and
/// linearizability a copy in which the replica reads are marked failed (a failed operation
/// constrains nothing), so that operation ids stay those of the whole history.
#[must_use]
pub fn check(
    h: &History,
    budget: Duration,
    reads: ReadTarget,
    leaders: &[LeaderChange],
) -> Vec<Verdict> {
    let mut options = Options {
        linearizability_budget: budget,
        min_unavailability: MIN_UNAVAILABILITY,
        leader_reads_only: true,
    };
    if reads == ReadTarget::Leader {
        return checker::check_all(h, &options);
    }
    // The whole history's linearizability is not wanted: no time for it.
    options.linearizability_budget = Duration::ZERO;
    options.leader_reads_only = false;
    let mut verdicts = checker::check_all(h, &options);
    let mut leader_only = h.clone();
    let mut left_out = 0u64;
    for op in &mut leader_only.ops {
        let to_leader = leader_at(leaders, op.start_us) == Some(op.node.as_str());
        if !op.call.is_write() && !to_leader && op.may_have_happened() {
            op.outcome = Outcome::Fail {
                error: "left out: a replica read".to_string(),
            };
            left_out += 1;
        }
    }
    let mut lin = checker::linearizability(&leader_only, budget);
    lin.summary = format!(
        "{} (leader reads only: {left_out} replica reads left out)",
        lin.summary
    );
    match verdicts.iter_mut().find(|v| v.checker == lin.checker) {
        Some(slot) => *slot = lin,
        None => verdicts.push(lin),
    }
    verdicts
}

/// Makes the cluster ready for measurement before the clock starts: one write on the leader
/// (outside the workload's keys), then a bounded wait until the replicas have applied it, so
/// that the first operations do not pay for log files being created or links being set up.
/// With automatic failover, a refused write is tried again (at most [`WARM_UP_TRIES_MAX`]
/// times) on the leader found anew, as a newly elected leader may not take writes at once.
async fn warm_up(endpoints: &Endpoints, key_prefix: &str, problems: &mut Vec<String>) {
    let bound = Duration::from_secs(10);
    let deadline = Instant::now() + bound;
    let key = format!("{key_prefix}warmup");
    let tries = if endpoints.follows() {
        WARM_UP_TRIES_MAX
    } else {
        1
    };
    for attempt in 1..=tries {
        let leader = endpoints.leader();
        let wrote = async {
            let mut conn = crate::resp::RespConn::connect(&leader, bound).await.ok()?;
            conn.call(&[b"SET", key.as_bytes(), b"1"]).await.ok()
        };
        match tokio::time::timeout_at(deadline, wrote).await {
            Ok(Some(crate::resp::Reply::Simple(_))) => break,
            other if attempt == tries || Instant::now() >= deadline => {
                problems.push(format!("warm-up write on the leader {leader}: {other:?}"));
                break;
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                endpoints.refresh(deadline).await;
            }
        }
    }
    for behind in workload::wait_caught_up(endpoints, bound).await {
        problems.push(format!("warm-up: {behind}"));
    }
}

/// `value` as pretty JSON.
fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Plain data (no maps with non-string keys) always serialises; an error would leave an
    // empty file, which whoever reads it notices.
    serde_json::to_vec_pretty(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_refuse_zero_and_junk() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("8").unwrap(), Duration::from_secs(8));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        for bad in ["0", "-1s", "x", "3 fortnights", "25h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_sync_promises_linearizability_and_async_promises_nothing() {
        let none = Failover::None;
        assert_eq!(
            promised(AckMode::Sync, "interval", none),
            ["lost_writes", "linearizability"]
        );
        assert_eq!(promised(AckMode::Quorum, "always", none), ["lost_writes"]);
        assert_eq!(
            promised(AckMode::SemiSync(1), "always", none),
            ["lost_writes"]
        );
        assert!(promised(AckMode::SemiSync(1), "interval", none).is_empty());
        assert!(promised(AckMode::Async, "always", none).is_empty());
    }

    #[test]
    fn under_automatic_failover_every_mode_promises_one_leader_per_epoch() {
        let auto = Failover::Auto;
        assert_eq!(
            promised(AckMode::Sync, "always", auto),
            ["lost_writes", "linearizability", "one_leader_per_epoch"]
        );
        assert_eq!(
            promised(AckMode::Quorum, "always", auto),
            ["lost_writes", "one_leader_per_epoch"]
        );
        assert_eq!(
            promised(AckMode::Async, "interval", auto),
            ["one_leader_per_epoch"]
        );
    }

    #[test]
    fn serve_flags_are_found_in_both_spellings_the_last_one_winning() {
        let flags: Vec<String> = ["--cluster-name", "a", "--fsync=always", "--cluster-name=b"]
            .iter()
            .map(|s| (*s).to_string())
            .collect();
        assert_eq!(serve_flag(&flags, "--cluster-name"), Some("b"));
        assert_eq!(serve_flag(&flags, "--fsync"), Some("always"));
        assert_eq!(serve_flag(&flags, "--cluster"), None);
        assert_eq!(serve_flag(&flags[..1], "--cluster-name"), None);
    }

    #[test]
    fn automatic_failover_refuses_serve_flags_that_would_undo_or_hide_it() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: CheckArgs,
        }
        let parse = |argv: &[&str]| {
            let argv = std::iter::once("check").chain(argv.iter().copied());
            settings(Cli::try_parse_from(argv).unwrap().args)
        };
        let auto = ["--failover", "auto", "--"];
        let with = |extra: &[&'static str]| [&auto[..], extra].concat();
        let s = parse(&with(&["--cluster-name", "blue"])).unwrap();
        assert_eq!(s.cluster_name, "blue");
        assert_eq!(s.args.failover, Failover::Auto);
        assert_eq!(parse(&[]).unwrap().cluster_name, CLUSTER_NAME_DEFAULT);
        assert_eq!(parse(&[]).unwrap().args.failover, Failover::None);
        for bad in [
            &["--replicaof", "127.0.0.1:7300"][..],
            &["--control-peers=node0=127.0.0.1:7300"],
            &["--replica-writes", "forward"],
        ] {
            let e = parse(&with(bad)).err().unwrap();
            assert_eq!(e.exit_code(), EXIT_USAGE, "{e}");
        }
        assert!(
            parse(&["--", "--replica-writes", "forward"]).is_ok(),
            "a fixed leader keeps taking any serve flag"
        );
    }

    #[test]
    fn utc_formats_calendar_time() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(utc(t).0, "20231114T221320Z");
        assert_eq!(utc(t).1, "2023-11-14T22:13:20Z");
        assert_eq!(utc(UNIX_EPOCH).1, "1970-01-01T00:00:00Z");
    }
}
