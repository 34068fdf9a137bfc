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
        let mut s = Server {
            child: None,
            port: 0,
            admin_port: 0,
            dir: dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            log: dir.join("server.log"),
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
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
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
