//! The `replikv-loadgen` binary against a small in-process RESP server on loopback, so its
//! counting, WAIT handling, setup and exit codes are checked without Redis or replikv.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the fake server answers.
#[derive(Clone, Copy)]
struct Behaviour {
    /// What `WAIT n 0` answers.
    wait_answer: i64,
    /// Whether SET gets an answer at all (false: the client must hit its time bound).
    answer_set: bool,
}

/// A fake server on 127.0.0.1 running on its own thread; counts the SETs it answered.
struct FakeServer {
    port: u16,
    sets: Arc<AtomicU64>,
}

impl FakeServer {
    fn start(behaviour: Behaviour) -> Self {
        let sets = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&sets);
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap().port()).unwrap();
                loop {
                    let (sock, _) = listener.accept().await.unwrap();
                    tokio::spawn(serve(sock, behaviour, Arc::clone(&counter)));
                }
            });
        });
        let port = rx.recv().unwrap();
        Self { port, sets }
    }
}

/// Answers RESP arrays of bulk strings until the client leaves.
async fn serve(mut sock: TcpStream, behaviour: Behaviour, sets: Arc<AtomicU64>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some((args, used)) = parse_command(&buf) {
            buf.drain(..used);
            let reply = match args[0].to_ascii_uppercase().as_slice() {
                b"SET" if behaviour.answer_set => {
                    sets.fetch_add(1, Ordering::Relaxed);
                    "+OK\r\n".to_string()
                }
                b"SET" => continue,
                b"WAIT" => format!(":{}\r\n", behaviour.wait_answer),
                b"AUTH" if args[1] == b"secret" => "+OK\r\n".to_string(),
                b"AUTH" => "-WRONGPASS invalid username-password pair\r\n".to_string(),
                b"PING" => "+PONG\r\n".to_string(),
                _ => "-ERR unknown command\r\n".to_string(),
            };
            if sock.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// One `*N` array of `$len` bulk strings from the front of `buf`, if whole.
fn parse_command(buf: &[u8]) -> Option<(Vec<Vec<u8>>, usize)> {
    fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        Some((&buf[at..at + end], at + end + 2))
    }
    let (head, mut at) = line(buf, 0)?;
    let n: usize = std::str::from_utf8(head.strip_prefix(b"*")?)
        .ok()?
        .parse()
        .ok()?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        let (len, next) = line(buf, at)?;
        let len: usize = std::str::from_utf8(len.strip_prefix(b"$")?)
            .ok()?
            .parse()
            .ok()?;
        let arg = buf.get(next..next + len)?;
        buf.get(next + len..next + len + 2)?;
        args.push(arg.to_vec());
        at = next + len + 2;
    }
    Some((args, at))
}

fn loadgen(port: u16, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_replikv-loadgen"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(extra)
        .output()
        .unwrap()
}

fn report(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: stdout {stdout:?}"))
}

#[test]
fn every_request_is_counted_once_and_a_short_wait_is_an_error() {
    let server = FakeServer::start(Behaviour {
        wait_answer: 1,
        answer_set: true,
    });

    // Phase: plain SETs; the request budget is shared by all clients, not per client.
    let out = loadgen(server.port, &["--clients", "7", "--requests", "500"]);
    assert!(out.status.success(), "{out:?}");
    let r = report(&out);
    assert_eq!(
        (r["requests"].as_u64(), r["errors"].as_u64()),
        (Some(500), Some(0))
    );
    assert_eq!(server.sets.load(Ordering::Relaxed), 500);
    assert_eq!(r["timed_out"], false);
    assert!(r["ops_per_sec"].as_f64().unwrap() > 0.0);
    assert!(r["p99_ms"].as_f64().unwrap() >= r["p50_ms"].as_f64().unwrap());

    // Phase: WAIT 1 is met by a reply of 1; WAIT 2 is not, and each such request is an error.
    let out = loadgen(
        server.port,
        &["--requests", "100", "--wait", "1", "--password", "secret"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(report(&out)["errors"], 0);
    let out = loadgen(server.port, &["--requests", "100", "--wait", "2"]);
    assert!(out.status.success(), "{out:?}");
    let r = report(&out);
    assert_eq!(
        (r["requests"].as_u64(), r["errors"].as_u64()),
        (Some(100), Some(100))
    );
    assert_eq!(r["ops_per_sec"], 0.0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not replicated"));
}

#[test]
fn a_refused_setup_or_a_refused_connection_exits_nonzero() {
    let server = FakeServer::start(Behaviour {
        wait_answer: 0,
        answer_set: true,
    });

    // Phase: an error reply to a setup command aborts before any load.
    let out = loadgen(
        server.port,
        &["--requests", "10", "--setup", "REPLIKV ACK sync"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("REPLIKV ACK sync"));
    assert_eq!(server.sets.load(Ordering::Relaxed), 0);
    let out = loadgen(server.port, &["--requests", "10", "--password", "wrong"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("wrong"),
        "password leaked"
    );

    // Phase: nothing listens on a port just released.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let out = loadgen(port, &["--requests", "10"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn the_time_bound_ends_a_run_whose_server_never_answers() {
    let server = FakeServer::start(Behaviour {
        wait_answer: 0,
        answer_set: false,
    });
    let started = std::time::Instant::now();
    let out = loadgen(
        server.port,
        &["--clients", "3", "--requests", "10", "--seconds-max", "1"],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        started.elapsed().as_secs() < 10,
        "took {:?}",
        started.elapsed()
    );
    let r = report(&out);
    assert_eq!(r["timed_out"], true);
    assert_eq!(r["requests"], 0);
}
