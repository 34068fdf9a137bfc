//! Starting and stopping a real `replikv` process on loopback for integration tests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running node.
pub struct Server {
    pub child: Option<Child>,
    pub port: u16,
    pub admin_port: u16,
    pub dir: PathBuf,
    pub extra: Vec<String>,
    pub log: PathBuf,
    /// Address the node's ports are reached on (127.0.0.1 unless started with `start_on`).
    pub host: String,
    /// Environment the node is started (and restarted) with.
    pub env: Vec<(String, String)>,
}

/// A free loopback port (the OS picks it; a race with another process is possible but rare).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

impl Server {
    /// Starts a node with its own data dir and ports, and waits until it answers PING. Free
    /// ports are picked by binding and releasing them, which races with other tests: when the
    /// node cannot listen, it is tried again on other ports.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        Server::start_on("127.0.0.1", dir, extra)
    }

    /// [`Server::start`] on another local address: the node listens on `host` (`--bind`) and
    /// readiness is checked there.
    pub fn start_on(host: &str, dir: &Path, extra: &[&str]) -> Server {
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if host != "127.0.0.1" {
            extra.extend(["--bind".to_string(), host.to_string()]);
        }
        let mut s = Server {
            child: None,
            port: 0,
            admin_port: 0,
            dir: dir.to_path_buf(),
            extra,
            log: dir.join("server.log"),
            host: host.to_string(),
            env: Vec::new(),
        };
        for _attempt in 0..5 {
            s.port = free_port();
            s.admin_port = free_port();
            s.spawn();
            match s.try_wait_ready() {
                Ok(()) => return s,
                Err(log) if log.contains("cannot listen") => continue,
                Err(log) => panic!("replikv did not start; log:\n{log}"),
            }
        }
        panic!("replikv found no free ports; log:\n{}", s.log_text());
    }

    /// Nodes `n0`, `n1`, … on loopback with the control plane among them (automatic
    /// failover), one per directory, each with `extra`; waits until every one answers PING.
    pub fn start_controlled(dirs: &[&Path], extra: &[&str]) -> Vec<Server> {
        Server::start_controlled_with_env(dirs, extra, &[])
    }

    /// [`Server::start_controlled`] with `env` set for every node. Like [`Server::start`], a
    /// cluster whose node could not listen on its picked port is started again on others
    /// (every node's address is in every other's `--control-peers`).
    pub fn start_controlled_with_env(
        dirs: &[&Path],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Vec<Server> {
        for _attempt in 0..5 {
            let mut nodes = Server::spawn_controlled(dirs, extra, env);
            let mut busy = false;
            for n in &mut nodes {
                match n.try_wait_ready() {
                    Ok(()) => {}
                    Err(log) if log.contains("cannot listen") => busy = true,
                    Err(log) => panic!("replikv did not become ready; log:\n{log}"),
                }
                if busy {
                    break;
                }
            }
            if !busy {
                return nodes;
            }
            drop(nodes);
            for dir in dirs {
                std::fs::remove_dir_all(dir.join("data")).ok();
                std::fs::remove_file(dir.join("server.log")).ok();
            }
        }
        panic!("replikv found no free ports for a cluster");
    }

    /// Starts the nodes of [`Server::start_controlled_with_env`] on freshly picked ports.
    fn spawn_controlled(dirs: &[&Path], extra: &[&str], env: &[(&str, &str)]) -> Vec<Server> {
        let ports: Vec<(u16, u16)> = dirs.iter().map(|_| (free_port(), free_port())).collect();
        let peers = ports
            .iter()
            .enumerate()
            .map(|(i, (port, _))| format!("n{i}=127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        dirs.iter()
            .zip(&ports)
            .enumerate()
            .map(|(i, (dir, (port, admin_port)))| {
                let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
                extra.extend([
                    "--node-id".to_string(),
                    format!("n{i}"),
                    "--control-peers".to_string(),
                    peers.clone(),
                ]);
                let mut s = Server {
                    child: None,
                    port: *port,
                    admin_port: *admin_port,
                    dir: dir.to_path_buf(),
                    extra,
                    log: dir.join("server.log"),
                    host: "127.0.0.1".to_string(),
                    env: env
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                };
                s.spawn();
                s
            })
            .collect()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open server log");
        let child = Command::new(env!("CARGO_BIN_EXE_replikv"))
            .arg("serve")
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--admin-port")
            .arg(self.admin_port.to_string())
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start replikv");
        self.child = Some(child);
    }

    /// Waits (at most 30 s) until the node answers PING.
    pub fn wait_ready(&mut self) {
        if let Err(log) = self.try_wait_ready() {
            panic!("replikv did not become ready; log:\n{log}");
        }
    }

    /// Waits (at most 30 s) until the node answers PING; the log when it exits or times out.
    fn try_wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = TcpStream::connect((self.host.as_str(), self.port)) {
                s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                if s.write_all(b"PING\r\n").is_ok() {
                    // PONG, or NOAUTH when a password is required: either way it serves.
                    let mut buf = [0u8; 7];
                    if s.read_exact(&mut buf).is_ok()
                        && (&buf == b"+PONG\r\n" || &buf == b"-NOAUTH")
                    {
                        return Ok(());
                    }
                }
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_status)) = c.try_wait() {
                    self.child = None;
                    return Err(self.log_text());
                }
            }
            if Instant::now() >= deadline {
                return Err(self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .expect("client")
            .get_connection()
            .expect("connect")
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill -9");
            c.wait().expect("wait");
        }
    }

    /// SIGTERM and wait (at most 30 s) for a clean exit; returns the exit status success.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = c.try_wait().expect("wait") {
                return status.success();
            }
            if Instant::now() > deadline {
                c.kill().ok();
                c.wait().ok();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the node again on the same data dir and ports.
    pub fn restart(&mut self) {
        self.spawn();
        self.wait_ready();
    }

    /// Starts the node again and waits for it to exit (for recovery failures); returns its
    /// success and the log.
    pub fn start_expecting_exit(&mut self) -> (bool, String) {
        self.spawn();
        let mut c = self.child.take().expect("child");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = c.try_wait().expect("wait") {
                return (status.success(), self.log_text());
            }
            if Instant::now() > deadline {
                c.kill().ok();
                c.wait().ok();
                panic!("replikv kept running; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GETs an admin path; returns (status code, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.admin_port)).expect("admin connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("read");
        let code = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }

    /// Sends raw bytes on a new connection and reads until the server closes it or `timeout`.
    pub fn raw(&self, bytes: &[u8], timeout: Duration) -> (Vec<u8>, bool) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(timeout)).ok();
        s.write_all(bytes).ok();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => break false,
            }
        };
        (out, closed)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Replication helpers: a plain RESP client, status figures, contents, waits, peer frames.
// ---------------------------------------------------------------------------------------------

pub use replikv_proto::Frame;

/// Bound on one reply from a node in these helpers (a reply that waits for replicas or for a
/// consistency token is bounded by the node's own timeouts, far below this).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A plain RESP2 client on a blocking socket: raw request bytes out, parsed replies in, with a
/// read timeout, so that a test sees every reply (errors included) exactly as sent.
pub struct Resp {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// Appends one request, a RESP array of bulk strings, to `out`.
pub fn encode_request<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

impl Resp {
    /// Connects to a node's client port on loopback; panics when it cannot.
    pub fn connect(port: u16) -> Resp {
        Resp::try_connect("127.0.0.1", port)
            .unwrap_or_else(|e| panic!("cannot connect to port {port}: {e}"))
    }

    /// Connects to `host:port`.
    pub fn try_connect(host: &str, port: u16) -> std::io::Result<Resp> {
        let stream = TcpStream::connect((host, port))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
        Ok(Resp {
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends requests without reading replies.
    pub fn send<A: AsRef<[u8]>>(&mut self, cmds: &[Vec<A>]) -> std::io::Result<()> {
        let mut out = Vec::new();
        for c in cmds {
            encode_request(&mut out, c);
        }
        self.stream.write_all(&out)
    }

    /// Reads the next reply.
    pub fn read_reply(&mut self) -> std::io::Result<Frame> {
        loop {
            match replikv_proto::parse_frame(&self.buf) {
                Ok(Some((frame, used))) => {
                    self.buf.drain(..used);
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("bad reply: {e:?}"),
                    ))
                }
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends requests in one write and reads one reply for each.
    pub fn pipeline<A: AsRef<[u8]>>(&mut self, cmds: &[Vec<A>]) -> std::io::Result<Vec<Frame>> {
        self.send(cmds)?;
        (0..cmds.len()).map(|_| self.read_reply()).collect()
    }

    /// One request and its reply.
    pub fn try_call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> std::io::Result<Frame> {
        let mut out = Vec::new();
        encode_request(&mut out, args);
        self.stream.write_all(&out)?;
        self.read_reply()
    }

    /// One request and its reply; panics when the connection fails.
    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Frame {
        self.try_call(args).unwrap_or_else(|e| {
            let words: Vec<String> = args
                .iter()
                .map(|a| String::from_utf8_lossy(a.as_ref()).to_string())
                .collect();
            panic!("{words:?} failed: {e}")
        })
    }
}

/// A reply as text: status, error, bulk and verbatim strings as they are, integers in decimal,
/// a null as `(nil)`, anything else in debug form.
pub fn text(f: &Frame) -> String {
    match f {
        Frame::Simple(s) | Frame::Error(s) => s.clone(),
        Frame::Bulk(b) | Frame::Verbatim(_, b) => String::from_utf8_lossy(b).to_string(),
        Frame::Integer(i) => i.to_string(),
        Frame::Null => "(nil)".to_string(),
        other => format!("{other:?}"),
    }
}

/// Whether a reply is an error whose text starts with `prefix`.
pub fn is_error(f: &Frame, prefix: &str) -> bool {
    matches!(f, Frame::Error(e) if e.starts_with(prefix))
}

/// `INFO <section>` of the node on `port`.
pub fn info(port: u16, section: &str) -> String {
    text(&Resp::connect(port).call(&["INFO", section]))
}

/// The value of `name` in INFO text (`name:value` lines).
pub fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// The fields of an INFO line's `a=1,b=2` value.
pub fn info_record(value: &str) -> std::collections::HashMap<String, String> {
    value
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `master_repl_offset`: the LSN the node on `port` has applied.
pub fn repl_offset(port: u16) -> u64 {
    let text = info(port, "replication");
    info_field(&text, "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no master_repl_offset in:\n{text}"))
}

/// Polls `f` every 20 ms until it holds or `timeout` passes; whether it held.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The LSN of the node's applied position, from `REPLIKV POSITION` (current at the reply,
/// unlike INFO's figures, which are refreshed on the node's replication tick).
pub fn applied_lsn(port: u16) -> u64 {
    let reply = Resp::connect(port).call(&["REPLIKV", "POSITION"]);
    let Frame::Array(items) = &reply else {
        panic!("REPLIKV POSITION gave {reply:?}");
    };
    let token = text(&items[0]);
    token
        .split_once(':')
        .and_then(|(_, lsn)| lsn.parse().ok())
        .unwrap_or_else(|| panic!("bad position token {token}"))
}

/// Waits (within `timeout`) until the node on `replica` reports as its `master_repl_offset` the
/// leader's: the LSN the leader has applied (asked with `REPLIKV POSITION`, so that a status
/// refreshed before the last writes cannot pass for it), which the leader's INFO also shows.
/// Panics with both INFO texts when it does not happen; returns the offset.
pub fn wait_caught_up(leader: u16, replica: u16, timeout: Duration) -> u64 {
    let mut last = (0, 0, 0);
    let ok = wait_until(timeout, || {
        last = (
            applied_lsn(leader),
            repl_offset(leader),
            repl_offset(replica),
        );
        last.0 == last.1 && last.1 == last.2
    });
    assert!(
        ok,
        "replica (port {replica}) at {} did not reach the leader's {} (INFO: {}) within {timeout:?}\nleader:\n{}\nreplica:\n{}",
        last.2,
        last.0,
        last.1,
        info(leader, "replication"),
        info(replica, "replication")
    );
    last.0
}

/// Every key and its value on the node on `port` (KEYS * then MGET in chunks); for string
/// keys, the only type replikv stores.
pub fn contents(port: u16) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    let mut c = Resp::connect(port);
    let keys: Vec<Vec<u8>> = match c.call(&["KEYS", "*"]) {
        Frame::Array(a) => a
            .into_iter()
            .map(|k| match k {
                Frame::Bulk(b) => b.to_vec(),
                other => panic!("KEYS gave {other:?}"),
            })
            .collect(),
        other => panic!("KEYS gave {other:?}"),
    };
    let mut out = std::collections::BTreeMap::new();
    for chunk in keys.chunks(1000) {
        let mut args: Vec<&[u8]> = vec![b"MGET"];
        args.extend(chunk.iter().map(Vec::as_slice));
        let Frame::Array(values) = c.call(&args) else {
            panic!("MGET gave no array");
        };
        for (k, v) in chunk.iter().zip(values) {
            if let Frame::Bulk(v) = v {
                out.insert(k.clone(), v.to_vec());
            }
        }
    }
    out
}

/// Panics, naming a few differences, unless the nodes on `a` and `b` hold the same contents;
/// returns the number of keys.
pub fn assert_same_contents(a: u16, b: u16, what: &str) -> usize {
    let (ca, cb) = (contents(a), contents(b));
    if ca != cb {
        let only_a: Vec<_> = ca
            .iter()
            .filter(|(k, v)| cb.get(*k) != Some(v))
            .take(5)
            .map(|(k, v)| {
                format!(
                    "{}={} (other: {:?})",
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(v),
                    cb.get(k).map(|v| String::from_utf8_lossy(v).to_string())
                )
            })
            .collect();
        let only_b: Vec<_> = cb
            .keys()
            .filter(|k| !ca.contains_key(*k))
            .take(5)
            .map(|k| String::from_utf8_lossy(k).to_string())
            .collect();
        panic!(
            "{what}: contents differ: {} keys on port {a}, {} on port {b}; differing on {a}: {only_a:?}; only on {b}: {only_b:?}",
            ca.len(),
            cb.len()
        );
    }
    ca.len()
}

impl Server {
    /// Starts a replica of the node on `upstream_port` (loopback), with `extra` flags.
    pub fn start_replica(dir: &Path, upstream_port: u16, extra: &[&str]) -> Server {
        let upstream = format!("127.0.0.1:{upstream_port}");
        let mut args = vec!["--replicaof", upstream.as_str()];
        args.extend_from_slice(extra);
        Server::start(dir, &args)
    }

    /// A plain RESP client on this node.
    pub fn resp(&self) -> Resp {
        Resp::connect(self.port)
    }

    /// Number of times `needle` occurs in the node's log.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log_text().matches(needle).count()
    }

    /// Waits (within `timeout`) until the node's log holds `needle` at least `times` times.
    pub fn wait_log(&self, needle: &str, times: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.log_count(needle) >= times)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One end of a peer link driven by the test: frames in and out over a blocking socket.
pub struct PeerConn {
    pub stream: TcpStream,
    buf: bytes::BytesMut,
}

/// Why reading a peer frame ended without one.
#[derive(Debug, PartialEq, Eq)]
pub enum PeerRecvError {
    /// The other side closed (or reset) the connection.
    Closed,
    /// Nothing came within the timeout.
    Timeout,
    /// Bytes came that are not a valid frame.
    Bad(String),
}

impl PeerConn {
    pub fn new(stream: TcpStream) -> PeerConn {
        stream.set_nodelay(true).ok();
        PeerConn {
            stream,
            buf: bytes::BytesMut::new(),
        }
    }

    /// Connects to a node's client port (peer links share it).
    pub fn connect(port: u16) -> PeerConn {
        PeerConn::new(TcpStream::connect(("127.0.0.1", port)).expect("connect for a peer link"))
    }

    pub fn send(&mut self, msg: &replikv_proto::PeerMessage) {
        let mut out = bytes::BytesMut::new();
        replikv_proto::encode_frame(msg, &mut out).expect("encode a peer frame");
        self.stream.write_all(&out).expect("send a peer frame");
    }

    /// The next message, within `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Result<replikv_proto::PeerMessage, PeerRecvError> {
        let deadline = Instant::now() + timeout;
        loop {
            match replikv_proto::decode_frame(
                &mut self.buf,
                replikv_proto::PEER_BODY_BYTES_MAX_DEFAULT,
            ) {
                Ok(Some(m)) => return Ok(m),
                Ok(None) => {}
                Err(e) => return Err(PeerRecvError::Bad(e.to_string())),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PeerRecvError::Timeout);
            }
            self.stream.set_read_timeout(Some(left)).ok();
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(PeerRecvError::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(PeerRecvError::Timeout)
                }
                Err(_) => return Err(PeerRecvError::Closed),
            }
        }
    }

    /// Reads and drops what comes until the other side closes (true) or `timeout` (false);
    /// returns the messages that decoded on the way.
    pub fn drain_until_closed(
        &mut self,
        timeout: Duration,
    ) -> (bool, Vec<replikv_proto::PeerMessage>) {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Ok(m) => seen.push(m),
                Err(PeerRecvError::Closed) => return (true, seen),
                Err(PeerRecvError::Timeout) => return (false, seen),
                // Not a frame: drop the bytes and keep reading until the close.
                Err(PeerRecvError::Bad(_)) => self.buf.clear(),
            }
        }
    }
}

/// The handshake transcript both sides MAC.
pub fn peer_transcript<'a>(
    prover: replikv_proto::AuthRole,
    cluster: &'a str,
    client_id: &'a str,
    client_nonce: &'a [u8; 32],
    server_id: &'a str,
    server_nonce: &'a [u8; 32],
) -> replikv_proto::Transcript<'a> {
    replikv_proto::Transcript {
        prover,
        protocol_version: replikv_proto::PEER_PROTOCOL_VERSION,
        cluster_name: cluster,
        client_node_id: client_id,
        client_nonce,
        server_node_id: server_id,
        server_nonce,
    }
}

/// A TCP proxy on loopback that delays what flows from the target back to the connecting
/// side (for a replica that connects through it: what its upstream sends it) by a random
/// time in `[delay_min, delay_max]` per forwarded chunk, keeping the byte order; the other
/// direction passes at once. Stops (closing every connection) when dropped.
pub struct DelayProxy {
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

/// How often the proxy's threads look at the stop flag.
const PROXY_POLL: Duration = Duration::from_millis(50);

impl DelayProxy {
    pub fn start(target_port: u16, delay_min: Duration, delay_max: Duration) -> DelayProxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        assert!(delay_min <= delay_max);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let stop_accept = Arc::clone(&stop);
        let accept = std::thread::spawn(move || {
            let mut links = Vec::new();
            let mut seed = u64::from(port) | 1;
            while !stop_accept.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).ok();
                        let Ok(target) = TcpStream::connect(("127.0.0.1", target_port)) else {
                            continue;
                        };
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        links.extend(proxy_link(
                            client,
                            target,
                            delay_min,
                            delay_max,
                            seed,
                            &stop_accept,
                        ));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
                links.retain(|h: &std::thread::JoinHandle<()>| !h.is_finished());
            }
            for h in links {
                h.join().ok();
            }
        });
        DelayProxy {
            port,
            stop,
            accept: Some(accept),
        }
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.accept.take() {
            h.join().ok();
        }
    }
}

/// Threads carrying one proxied connection: client→target at once; target→client through a
/// queue that releases each chunk at its arrival time plus a random delay (never before the
/// chunk ahead of it).
fn proxy_link(
    client: TcpStream,
    target: TcpStream,
    delay_min: Duration,
    delay_max: Duration,
    mut seed: u64,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    use std::sync::atomic::Ordering;
    use std::sync::mpsc;
    let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let shut = |a: &TcpStream, b: &TcpStream| {
        a.shutdown(std::net::Shutdown::Both).ok();
        b.shutdown(std::net::Shutdown::Both).ok();
    };
    for s in [&client, &target] {
        s.set_nodelay(true).ok();
        s.set_read_timeout(Some(PROXY_POLL)).ok();
        s.set_write_timeout(Some(Duration::from_secs(5))).ok();
    }
    let mut handles = Vec::new();
    // Client to target: plain copy.
    {
        let (mut from, mut to) = (
            client.try_clone().expect("clone"),
            target.try_clone().expect("clone"),
        );
        let (stop, closed) = (std::sync::Arc::clone(stop), std::sync::Arc::clone(&closed));
        handles.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while !stop.load(Ordering::Relaxed) && !closed.load(Ordering::Relaxed) {
                match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(e) if is_timeout(&e) => {}
                    Err(_) => break,
                }
            }
            closed.store(true, Ordering::Relaxed);
            shut(&from, &to);
        }));
    }
    // Target to client: read and stamp, then release in order after the delay.
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    {
        let (mut from, to) = (
            target.try_clone().expect("clone"),
            client.try_clone().expect("clone"),
        );
        let (stop, closed) = (std::sync::Arc::clone(stop), std::sync::Arc::clone(&closed));
        let span = (delay_max - delay_min).as_micros() as u64;
        handles.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut release = Instant::now();
            while !stop.load(Ordering::Relaxed) && !closed.load(Ordering::Relaxed) {
                match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        let jitter = if span == 0 { 0 } else { seed % (span + 1) };
                        let at = Instant::now() + delay_min + Duration::from_micros(jitter);
                        release = release.max(at);
                        if tx.send((release, buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                    Err(e) if is_timeout(&e) => {}
                    Err(_) => break,
                }
            }
            closed.store(true, Ordering::Relaxed);
            shut(&from, &to);
        }));
    }
    {
        let mut to = client;
        let (stop, closed) = (std::sync::Arc::clone(stop), std::sync::Arc::clone(&closed));
        handles.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match rx.recv_timeout(PROXY_POLL) {
                    Ok((at, bytes)) => {
                        let wait = at.saturating_duration_since(Instant::now());
                        std::thread::sleep(wait);
                        if to.write_all(&bytes).is_err() {
                            break;
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if closed.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            closed.store(true, Ordering::Relaxed);
            shut(&to, &target);
        }));
    }
    handles
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

// ---------------------------------------------------------------------------------------------
// Fault injection helpers: nodes started with extra environment variables, admin HTTP requests
// with a method and a body.
// ---------------------------------------------------------------------------------------------

impl Server {
    /// [`Server::start`] with `env` added to the node's environment. Only this first start gets
    /// it: [`Server::restart`] and [`Server::start_expecting_exit`] spawn without it.
    pub fn start_with_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut s = Server {
            child: None,
            port: 0,
            admin_port: 0,
            dir: dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            log: dir.join("server.log"),
            host: "127.0.0.1".to_string(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        for _attempt in 0..5 {
            s.port = free_port();
            s.admin_port = free_port();
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&s.log)
                .expect("open server log");
            let child = Command::new(env!("CARGO_BIN_EXE_replikv"))
                .arg("serve")
                .arg("--data-dir")
                .arg(s.dir.join("data"))
                .arg("--port")
                .arg(s.port.to_string())
                .arg("--admin-port")
                .arg(s.admin_port.to_string())
                .args(&s.extra)
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start replikv");
            s.child = Some(child);
            match s.try_wait_ready() {
                Ok(()) => return s,
                Err(log) if log.contains("cannot listen") => continue,
                Err(log) => panic!("replikv did not start; log:\n{log}"),
            }
        }
        panic!("replikv found no free ports; log:\n{}", s.log_text());
    }

    /// Sends `method path` to the admin port, with `body` as JSON when given; returns
    /// (status code, body).
    pub fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.admin_port)).expect("admin connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        if let Some(body) = body {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        } else {
            request.push_str("Content-Length: 0\r\n\r\n");
        }
        s.write_all(request.as_bytes()).expect("send");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("read");
        let code = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }
}
