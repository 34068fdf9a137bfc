//! End to end against real `replikv` processes: three nodes on loopback under the control
//! plane (`--control-peers`, `--ack quorum`), a client writing while the leader is killed
//! with SIGKILL.
//!
//! Properties: no write the client saw acknowledged is lost (every `SET` that returned `Ok`
//! reads back from the new leader); a non-idempotent `INCR` is never applied twice (the
//! counter lies between the acknowledged increments and those plus the indeterminate ones);
//! the client reports no error but `Indeterminate`, and that only for `INCR`. Separately:
//! reads on replicas see the client's own writes (read-your-writes through the token); an
//! `INCR` the leader applies but cannot get acknowledged (its replicas stopped with SIGSTOP)
//! is reported as indeterminate and never sent again.
//!
//! The `replikv` binary is `target/<profile>/replikv` next to this test's executable (or
//! `REPLIKV_BIN`); when it is missing the test builds it with
//! `cargo build -p replikv-server --bin replikv`.

use replikv_client::{Client, ClientConfig, Error, ReadPolicy};
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NODES: usize = 3;
/// Longest the whole cluster may take to answer `PING` on every node.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a missing binary may take to build.
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);
/// Bound on one whole test once the cluster runs.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the `replikv` binary is, building it when it is missing.
fn replikv_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("REPLIKV_BIN") {
        return PathBuf::from(bin);
    }
    // This test runs as target/<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug"));
    let bin = profile_dir.join(format!("replikv{}", std::env::consts::EXE_SUFFIX));
    if bin.exists() {
        return bin;
    }
    eprintln!("phase: {} is missing; building it", bin.display());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "-p", "replikv-server", "--bin", "replikv"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    let mut child = build.spawn().expect("run cargo build");
    let deadline = Instant::now() + BUILD_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("wait for cargo build") {
            assert!(status.success(), "cargo build of replikv failed: {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("building replikv took longer than {BUILD_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        bin.exists(),
        "cargo build did not produce {}",
        bin.display()
    );
    bin
}

/// A free loopback port: bound and released (another process may take it meanwhile; the
/// cluster start is then retried).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

struct Node {
    port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (`STOP`, `CONT`) to the node's process with `kill(1)`.
    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the node runs");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed: {status}");
    }

    /// SIGKILL: the node gets no chance to flush or say goodbye.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Already exited is fine: it is down either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Three nodes; every process is killed when this is dropped, whatever the test did.
struct Cluster {
    nodes: Vec<Node>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

impl Cluster {
    /// Starts the nodes and waits until each answers `PING`; retries on other ports when one
    /// cannot listen.
    async fn start() -> Cluster {
        let bin = replikv_bin();
        for _attempt in 0..3 {
            let mut cluster = Cluster::spawn(&bin);
            match cluster.wait_ready().await {
                Ok(()) => return cluster,
                Err(log) if log.contains("cannot listen") || log.contains("in use") => {
                    eprintln!("phase: a port was taken; starting again on others");
                }
                Err(log) => panic!("the cluster did not start; log:\n{log}"),
            }
        }
        panic!("no free ports for the cluster");
    }

    fn spawn(bin: &Path) -> Cluster {
        let ports: Vec<(u16, u16)> = (0..NODES).map(|_| (free_port(), free_port())).collect();
        let peers = ports
            .iter()
            .enumerate()
            .map(|(i, (port, _))| format!("n{i}=127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let dirs: Vec<tempfile::TempDir> = (0..NODES)
            .map(|_| tempfile::tempdir().expect("a data dir"))
            .collect();
        let nodes = ports
            .iter()
            .zip(&dirs)
            .enumerate()
            .map(|(i, ((port, admin_port), dir))| {
                let log = dir.path().join("server.log");
                let stderr = File::create(&log).expect("create the node's log");
                let child = Command::new(bin)
                    .arg("serve")
                    .args(["--port", &port.to_string()])
                    .args(["--admin-port", &admin_port.to_string()])
                    .arg("--data-dir")
                    .arg(dir.path().join("data"))
                    .args(["--node-id", &format!("n{i}")])
                    .args(["--control-peers", &peers])
                    .args(["--ack", "quorum", "--cluster-size", "3"])
                    .stdout(Stdio::null())
                    .stderr(stderr)
                    .spawn()
                    .expect("start replikv");
                Node {
                    port: *port,
                    child: Some(child),
                    log,
                }
            })
            .collect();
        Cluster { nodes, _dirs: dirs }
    }

    /// Waits until every node answers `PING`; a node's log when it exits or times out.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        for node in &mut self.nodes {
            loop {
                if ping(node.port).await {
                    break;
                }
                let exited = node
                    .child
                    .as_mut()
                    .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))));
                if exited || Instant::now() > deadline {
                    return Err(node.log_text());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(Node::addr).collect()
    }

    fn node_at(&mut self, addr: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.addr() == addr)
            .unwrap_or_else(|| panic!("no node at {addr}"))
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- node {} ---\n{}", n.port, n.log_text()))
            .collect()
    }
}

async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await.ok()?;
        (&reply == b"+PONG\r\n").then_some(())
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Some(()))
    )
}

fn client_config(cluster: &Cluster) -> ClientConfig {
    ClientConfig {
        op_timeout: Duration::from_secs(3),
        // The first election and a failover (lease 0.4 s + margin + election) fit well within.
        failover_timeout: Duration::from_secs(20),
        ..ClientConfig::new(cluster.seeds())
    }
}

/// What the writer saw.
#[derive(Debug, Default)]
struct Outcomes {
    /// `SET`s that returned `Ok`: key and value.
    acked: Vec<(String, String)>,
    /// Values `INCR` returned.
    incr_acked: Vec<i64>,
    /// `INCR`s that failed with `Indeterminate`.
    incr_indeterminate: usize,
    /// Any other failure (the test fails on any).
    unexpected: Vec<String>,
}

/// Progress the writer publishes before each operation: `SET`s acknowledged so far, the
/// leader it uses, and whether the operation it is about to send is an `INCR`.
type Progress = (usize, Option<String>, bool);

/// Writes `k<i>` = `v<i>` (and every fourth operation an `INCR` of `counter`) until `stop`,
/// at most `ops_max` operations or `time_max`.
async fn write_loop(
    mut client: Client,
    stop: Arc<AtomicBool>,
    progress: tokio::sync::watch::Sender<Progress>,
    ops_max: usize,
    time_max: Duration,
) -> (Client, Outcomes) {
    let mut out = Outcomes::default();
    let started = Instant::now();
    for i in 0..ops_max {
        if stop.load(Ordering::SeqCst) || started.elapsed() > time_max {
            break;
        }
        let incr = i % 4 == 3;
        progress.send_replace((out.acked.len(), client.leader().map(str::to_string), incr));
        if incr {
            match client.incr("counter").await {
                Ok(n) => out.incr_acked.push(n),
                Err(Error::Indeterminate { cause }) => {
                    eprintln!("INCR indeterminate: {cause}");
                    out.incr_indeterminate += 1;
                }
                Err(e) => out.unexpected.push(format!("INCR: {e}")),
            }
        } else {
            let (key, value) = (format!("k{i}"), format!("v{i}"));
            match client.set(&key, &value).await {
                Ok(()) => out.acked.push((key, value)),
                Err(e) => out.unexpected.push(format!("SET {key}: {e}")),
            }
        }
    }
    (client, out)
}

/// Waits until the writer's progress satisfies `done`, within `within`.
async fn wait_progress(
    rx: &mut tokio::sync::watch::Receiver<Progress>,
    within: Duration,
    done: impl Fn(&Progress) -> bool,
) -> Progress {
    let waited = tokio::time::timeout(within, rx.wait_for(|p| done(p)))
        .await
        .map(|r| r.map(|p| p.clone()));
    match waited {
        Ok(Ok(p)) => p,
        _ => panic!(
            "the writer did not get there within {within:?}; at {:?}",
            *rx.borrow()
        ),
    }
}

/// Acknowledged writes survive a SIGKILL of the leader (quorum acknowledgement), and a
/// non-idempotent `INCR` in flight is reported as indeterminate, never applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_and_no_incr_is_applied_twice_across_a_leader_kill() {
    let mut cluster = Cluster::start().await;
    let result = tokio::time::timeout(TEST_TIMEOUT, leader_kill(&mut cluster)).await;
    if result.is_err() {
        panic!(
            "the test did not finish within {TEST_TIMEOUT:?}; logs:\n{}",
            cluster.logs()
        );
    }
}

async fn leader_kill(cluster: &mut Cluster) {
    eprintln!("phase: connect; the control plane elects a first leader");
    let client = Client::connect(client_config(cluster))
        .await
        .expect("a leader within the failover timeout");
    let first = client.leader().expect("a leader").to_string();
    eprintln!("phase: {first} leads; the writer starts");

    let stop = Arc::new(AtomicBool::new(false));
    let (progress, mut rx) = tokio::sync::watch::channel((0, Some(first.clone()), false));
    let writer = tokio::spawn(write_loop(
        client,
        Arc::clone(&stop),
        progress,
        20_000,
        Duration::from_secs(90),
    ));

    // Killed as an INCR goes out, so that it is likely in flight (indeterminate) when the
    // leader dies; the properties checked hold wherever the kill lands.
    let (before_kill, ..) =
        wait_progress(&mut rx, Duration::from_secs(30), |p| p.0 >= 50 && p.2).await;
    eprintln!("phase: {before_kill} writes acknowledged; SIGKILL the leader {first}");
    cluster.node_at(&first).kill();
    let killed_at = Instant::now();

    let (_, second, _) = wait_progress(&mut rx, Duration::from_secs(60), |p| {
        p.1.as_deref().is_some_and(|l| l != first)
    })
    .await;
    eprintln!(
        "phase: the client writes to {second:?}, {} ms after the kill",
        killed_at.elapsed().as_millis()
    );
    wait_progress(&mut rx, Duration::from_secs(60), |p| {
        p.0 >= before_kill + 100
    })
    .await;
    eprintln!("phase: 100 more writes acknowledged; the writer stops");
    stop.store(true, Ordering::SeqCst);
    let (mut client, out) = writer.await.expect("the writer task");
    let stats = client.stats();
    eprintln!(
        "phase: {} SETs and {} INCRs acknowledged, {} INCRs indeterminate; {stats:?}",
        out.acked.len(),
        out.incr_acked.len(),
        out.incr_indeterminate
    );
    assert_eq!(
        out.unexpected,
        Vec::<String>::new(),
        "the client reported errors other than Indeterminate for INCR"
    );
    assert!(stats.retries > 0, "the kill was crossed without a retry");

    eprintln!("phase: every acknowledged SET reads back from the new leader");
    client.refresh().await.expect("a leader");
    let leader = client.leader().expect("a leader").to_string();
    assert_ne!(leader, first, "the killed node still leads");
    let keys: Vec<&str> = out.acked.iter().map(|(k, _)| k.as_str()).collect();
    let mut lost = Vec::new();
    for (chunk, pairs) in keys.chunks(100).zip(out.acked.chunks(100)) {
        let values = client.mget(chunk).await.expect("MGET on the new leader");
        for ((key, want), got) in pairs.iter().zip(values) {
            if got.as_deref() != Some(want.as_bytes()) {
                lost.push(format!("{key}: {got:?}"));
            }
        }
    }
    assert_eq!(lost, Vec::<String>::new(), "acknowledged writes lost");

    eprintln!("phase: the counter counts every acknowledged INCR and no INCR twice");
    let counter: i64 = client
        .get("counter")
        .await
        .expect("GET counter")
        .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
        .unwrap_or(0);
    let acked = out.incr_acked.len() as i64;
    let indeterminate = out.incr_indeterminate as i64;
    let highest_acked = out.incr_acked.iter().copied().max().unwrap_or(0);
    assert!(
        counter >= highest_acked,
        "an acknowledged INCR was lost: counter {counter}, acknowledged up to {highest_acked}"
    );
    assert!(
        counter >= acked,
        "counter {counter} < {acked} acknowledged INCRs"
    );
    assert!(
        counter <= acked + indeterminate,
        "an INCR was applied twice: counter {counter} > {acked} acknowledged + {indeterminate} indeterminate"
    );
}

/// Under `AnyReplica`, reads go to replicas and each sees the client's write just before it
/// (the replica waits for the write's token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_reads_see_the_clients_own_writes() {
    let cluster = Cluster::start().await;
    let checked = tokio::time::timeout(TEST_TIMEOUT, async {
        let mut client = Client::connect(ClientConfig {
            read_policy: ReadPolicy::AnyReplica,
            ..client_config(&cluster)
        })
        .await
        .expect("a leader");
        eprintln!("phase: wait until the leader lists both replicas");
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.replicas().len() < NODES - 1 {
            assert!(
                Instant::now() < deadline,
                "the leader did not list its replicas: {:?}",
                client.replicas()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            client.refresh().await.expect("a leader");
        }
        eprintln!("phase: write then read, 200 times");
        for i in 0..200 {
            let (key, value) = (format!("r{i}"), format!("w{i}"));
            client.set(&key, &value).await.expect("SET");
            let got = client.get(&key).await.expect("GET");
            assert_eq!(
                got.as_deref(),
                Some(value.as_bytes()),
                "read {i} missed its write"
            );
        }
        let stats = client.stats();
        eprintln!("phase: done; {stats:?}");
        assert!(client.token().is_some(), "no token was kept");
        assert!(
            stats.replica_reads >= 150,
            "most reads should be served by replicas: {stats:?}"
        );
    })
    .await;
    if checked.is_err() {
        panic!(
            "the test did not finish within {TEST_TIMEOUT:?}; logs:\n{}",
            cluster.logs()
        );
    }
}

/// An `INCR` sent while the leader cannot reach its replicas (both are stopped with
/// SIGSTOP) is applied on the leader but never acknowledged: the client reports it as
/// indeterminate and does not send it again, not even once the leader is killed and a new one
/// elected; the operations after it go to the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incr_the_leader_cannot_acknowledge_is_indeterminate_and_not_sent_again() {
    let mut cluster = Cluster::start().await;
    let checked = tokio::time::timeout(TEST_TIMEOUT, incr_without_replicas(&mut cluster)).await;
    if checked.is_err() {
        panic!(
            "the test did not finish within {TEST_TIMEOUT:?}; logs:\n{}",
            cluster.logs()
        );
    }
}

async fn incr_without_replicas(cluster: &mut Cluster) {
    let mut client = Client::connect(client_config(cluster))
        .await
        .expect("a leader");
    eprintln!("phase: three acknowledged INCRs");
    // On a loaded machine the young cluster may still change leaders, and an INCR in flight
    // then is (rightly) indeterminate: start over from a known counter when that happens.
    let mut attempt = 0;
    let first = loop {
        attempt += 1;
        client.set("counter", "0").await.expect("SET");
        let mut settled = true;
        for want in 1..=3 {
            match client.incr("counter").await {
                Ok(got) => assert_eq!(got, want),
                Err(Error::Indeterminate { .. }) if attempt < 5 => {
                    eprintln!("an INCR was indeterminate (a leader change); again");
                    settled = false;
                    break;
                }
                Err(e) => panic!("INCR: {e:?}"),
            }
        }
        if settled {
            break client.leader().expect("a leader").to_string();
        }
    };
    let indeterminate_before = client.stats().indeterminate;
    eprintln!("phase: {first} leads");

    eprintln!("phase: SIGSTOP both replicas; the next INCR cannot be acknowledged");
    let replicas: Vec<usize> = (0..NODES)
        .filter(|&i| cluster.nodes[i].addr() != first)
        .collect();
    for &i in &replicas {
        cluster.nodes[i].signal("STOP");
    }
    let incr = client.incr("counter").await;
    eprintln!("phase: the INCR returned {incr:?}");
    assert!(
        matches!(incr, Err(Error::Indeterminate { .. })),
        "an INCR without replicas must be indeterminate: {incr:?}"
    );
    assert_eq!(client.stats().indeterminate, indeterminate_before + 1);

    eprintln!("phase: SIGKILL the leader {first}, SIGCONT the replicas; they elect a new one");
    cluster.node_at(&first).kill();
    for &i in &replicas {
        cluster.nodes[i].signal("CONT");
    }
    client
        .set("after", "failover")
        .await
        .expect("SET after the failover");
    let second = client.leader().expect("a leader").to_string();
    assert_ne!(second, first);
    eprintln!("phase: {second} leads; one more INCR");
    let last = client
        .incr("counter")
        .await
        .expect("INCR on the new leader");
    assert!(
        last == 4 || last == 5,
        "3 acknowledged INCRs, one indeterminate, then this one: got {last}"
    );
    let counter = client.get("counter").await.expect("GET");
    assert_eq!(counter.as_deref(), Some(last.to_string().as_bytes()));
}
