//! `replikv cluster`: one command starts a leader and its replicas on loopback as child
//! processes, each answering on its own port, the replicas following the leader; and one
//! SIGTERM to the launcher (as Ctrl-C would) stops every one of them within the launcher's stop
//! bound.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Nodes started by every test here.
const NODES: u16 = 3;
/// Node i's admin port is the base port + 100 + i (as `replikv cluster` documents).
const ADMIN_PORT_OFFSET: u16 = 100;
/// Bound on the whole cluster answering PING (debug builds start slowly on a busy machine).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on the launcher's exit after SIGTERM: its 10 s stop bound, 5 s kill bound, margin.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on an acknowledged write on the leader becoming readable on a replica.
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Launch attempts on fresh port ranges when another process took a probed port meanwhile.
const LAUNCH_ATTEMPTS_MAX: usize = 5;

/// A running `replikv cluster` in its own temporary directory.
struct Launcher {
    child: Option<Child>,
    base_port: u16,
    out: PathBuf,
    err: PathBuf,
    _dir: tempfile::TempDir,
}

impl Launcher {
    /// Starts `replikv cluster --nodes 3` on a free port range and waits until every node
    /// answers PING. `seed` keeps concurrently running tests on different ranges; a launch that
    /// loses a port to another process is retried on another range.
    fn start(seed: u16) -> Launcher {
        let mut last_log = String::new();
        for attempt in 0..LAUNCH_ATTEMPTS_MAX {
            let base_port = free_base_port(seed, attempt);
            let mut launcher = Launcher::spawn(base_port);
            match launcher.wait_ready() {
                Ok(()) => return launcher,
                Err(log) if log.contains("not free") || log.contains("cannot listen") => {
                    eprintln!("ports around {base_port} were taken meanwhile; another range");
                    last_log = log;
                }
                Err(log) => panic!("the cluster did not start; output:\n{log}"),
            }
        }
        panic!("no free port range for the cluster; last output:\n{last_log}");
    }

    fn spawn(base_port: u16) -> Launcher {
        let dir = tempfile::tempdir().expect("temporary directory");
        let out = dir.path().join("stdout.txt");
        let err = dir.path().join("stderr.txt");
        let child = Command::new(env!("CARGO_BIN_EXE_replikv"))
            .args(["cluster", "--nodes", &NODES.to_string()])
            .args(["--base-port", &base_port.to_string()])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"))
            .spawn()
            .expect("start replikv cluster");
        Launcher {
            child: Some(child),
            base_port,
            out,
            err,
            _dir: dir,
        }
    }

    fn client_ports(&self) -> Vec<u16> {
        (0..NODES).map(|i| self.base_port + i).collect()
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn log(&self) -> String {
        let err = std::fs::read_to_string(&self.err).unwrap_or_default();
        format!("--- stdout\n{}--- stderr\n{err}", self.stdout())
    }

    /// Waits until every node answers PING and the launcher has printed how to connect; the
    /// launcher's output if it exits first or the wait times out.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let connect = format!("redis-cli -p {}", self.base_port);
        loop {
            let all_answer = self.client_ports().into_iter().all(answers_ping);
            if all_answer && self.stdout().contains(&connect) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("launcher exited ({status})\n{}", self.log()));
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not ready within {READY_TIMEOUT:?}\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM to the launcher and waits for it; its exit status and how long it took.
    fn terminate(&mut self) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("launcher running");
        let pid = i32::try_from(child.id()).expect("pid fits in pid_t");
        let sent = Instant::now();
        // SAFETY: kill(2) on the pid of our own child, which is not reaped yet.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
        loop {
            if let Some(status) = child.try_wait().expect("wait for the launcher") {
                return (status, sent.elapsed());
            }
            if sent.elapsed() > EXIT_TIMEOUT {
                child.kill().ok();
                child.wait().ok();
                panic!(
                    "launcher still running {EXIT_TIMEOUT:?} after SIGTERM; output:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Launcher {
    /// A failed test still stops its nodes: SIGTERM lets the launcher stop them (SIGKILL would
    /// leave them running, as they are not in the launcher's process group).
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: kill(2) on the pid of our own child, which is not reaped yet.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
            let deadline = Instant::now() + EXIT_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// A base port whose client and admin ports are all free now, below the OS's ephemeral range
/// (where other tests' OS-chosen ports live). Different seeds and attempts probe different
/// ranges, so tests running at once do not pick the same one.
fn free_base_port(seed: u16, attempt: usize) -> u16 {
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let attempt = u32::try_from(attempt).expect("few attempts");
    let mut start = (std::process::id() * 7 + u32::from(seed) * 3001 + attempt * 977) % SPAN;
    for _probe in 0..200 {
        let base = u16::try_from(LOW + start).expect("below 32000");
        let ports = (0..NODES).flat_map(|i| [base + i, base + ADMIN_PORT_OFFSET + i]);
        if ports
            .into_iter()
            .all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        {
            return base;
        }
        start = (start + 211) % SPAN;
    }
    panic!("no free range of ports between {LOW} and {}", LOW + SPAN);
}

/// Sends one RESP request on a new connection and reads its reply, bounded: one line, and for
/// a bulk string its body too.
fn request(port: u16, resp: &[u8]) -> Option<String> {
    let addr = ("127.0.0.1", port);
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(resp).ok()?;
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n") && reply.len() < 4096 {
        match stream.read(&mut byte) {
            Ok(1) => reply.push(byte[0]),
            _ => return None,
        }
    }
    let line = String::from_utf8_lossy(&reply).into_owned();
    let bulk_bytes = line
        .strip_prefix('$')
        .and_then(|n| n.trim_end().parse::<usize>().ok());
    if let Some(n) = bulk_bytes.filter(|n| *n < 4096) {
        let mut body = vec![0u8; n + 2];
        stream.read_exact(&mut body).ok()?;
        return Some(line + &String::from_utf8_lossy(&body));
    }
    Some(line)
}

fn command(args: &[&str]) -> Vec<u8> {
    let mut resp = format!("*{}\r\n", args.len());
    for arg in args {
        resp.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    resp.into_bytes()
}

fn answers_ping(port: u16) -> bool {
    request(port, b"*1\r\n$4\r\nPING\r\n").as_deref() == Some("+PONG\r\n")
}

#[test]
fn cluster_starts_three_answering_nodes_and_sigterm_stops_them_all() {
    eprintln!("phase: launch a 3-node cluster and wait until every node answers PING");
    let mut launcher = Launcher::start(1);
    let ports = launcher.client_ports();
    let summary = launcher.stdout();
    for (i, port) in ports.iter().enumerate() {
        assert!(
            summary.contains(&format!("node{i}  127.0.0.1:{port}")),
            "summary does not list node{i}:\n{summary}"
        );
    }
    assert!(summary.contains("Ctrl-C stops the cluster"), "{summary}");

    eprintln!("phase: SIGTERM the launcher, as Ctrl-C would; it must stop and exit 0");
    let (status, took) = launcher.terminate();
    assert!(
        status.success(),
        "launcher exit {status}; output:\n{}",
        launcher.log()
    );
    assert!(took < EXIT_TIMEOUT, "launcher took {took:?} to stop");

    eprintln!("phase: the launcher reaped its nodes, so none still answers on its port");
    for port in &ports {
        assert!(
            TcpStream::connect(("127.0.0.1", *port)).is_err(),
            "port {port} still accepts connections after the launcher exited; output:\n{}",
            launcher.log()
        );
    }
    let log = launcher.log();
    for i in 0..NODES {
        assert!(
            log.contains(&format!("[node{i}] ")),
            "no relayed output of node{i}:\n{log}"
        );
        assert!(
            log.contains(&format!("[cluster] node{i} stopped\n")),
            "{log}"
        );
    }
}

#[test]
fn taken_port_is_named_and_nothing_starts() {
    eprintln!("phase: hold node1's admin port, then launch on that range");
    let base_port = free_base_port(2, 0);
    let taken = base_port + ADMIN_PORT_OFFSET + 1;
    let _holder = TcpListener::bind(("127.0.0.1", taken)).expect("hold the port");
    let mut launcher = Launcher::spawn(base_port);
    let mut child = launcher.child.take().expect("launcher running");
    let deadline = Instant::now() + EXIT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the launcher") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "launcher kept running:\n{}",
            launcher.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };

    eprintln!("phase: it failed naming the port, and no node answers");
    assert_eq!(status.code(), Some(2), "{}", launcher.log());
    let log = launcher.log();
    assert!(
        log.contains(&format!("port {taken} (node1's admin port) is not free")),
        "{log}"
    );
    assert!(
        !answers_ping(base_port),
        "node0 started although a port was taken"
    );
}

#[test]
fn write_on_the_leader_is_readable_on_every_replica() {
    eprintln!("phase: launch a 3-node cluster; node0 leads, node1 and node2 replicate from it");
    let mut launcher = Launcher::start(3);
    let ports = launcher.client_ports();

    eprintln!("phase: SET on the leader, acknowledged");
    let set = request(ports[0], &command(&["SET", "greeting", "hello"]));
    assert_eq!(set.as_deref(), Some("+OK\r\n"), "{}", launcher.log());

    eprintln!("phase: each replica serves the value within {REPLICATION_TIMEOUT:?} (async ack)");
    for port in &ports[1..] {
        let deadline = Instant::now() + REPLICATION_TIMEOUT;
        loop {
            let got = request(*port, &command(&["GET", "greeting"]));
            if got.as_deref() == Some("$5\r\nhello\r\n") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replica on port {port} still answers {got:?}; output:\n{}",
                launcher.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    eprintln!("phase: replicas refuse writes, as Redis replicas do");
    let refused = request(ports[1], &command(&["SET", "greeting", "bye"])).unwrap_or_default();
    assert!(refused.starts_with("-READONLY"), "{refused:?}");

    eprintln!("phase: stop the cluster");
    let (status, _took) = launcher.terminate();
    assert!(
        status.success(),
        "launcher exit {status}; output:\n{}",
        launcher.log()
    );
}
