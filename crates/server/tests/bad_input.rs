//! Bad input gets Redis's error replies and never takes the server down or makes it allocate
//! what a client merely declares.

mod common;

use common::Server;
use std::time::Duration;

const T: Duration = Duration::from_secs(5);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn malformed_and_oversized_requests_are_refused_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--proto-max-bulk-len",
            "1048576",
            "--client-query-buffer-limit",
            "2097152",
        ],
    );

    // Phase: broken RESP gets a protocol error and the connection is closed.
    let (out, closed) = server.raw(b"*2\r\n$3\r\nGET\r\n:1\r\n", T);
    assert_eq!(text(&out), "-ERR Protocol error: expected '$', got ':'\r\n");
    assert!(closed);
    let (out, closed) = server.raw(b"*abc\r\n", T);
    assert_eq!(
        text(&out),
        "-ERR Protocol error: invalid multibulk length\r\n"
    );
    assert!(closed);

    // Phase: a declared bulk over the limit is refused before any of it is read.
    let (out, closed) = server.raw(b"*2\r\n$3\r\nGET\r\n$999999999999\r\n", T);
    assert_eq!(text(&out), "-ERR Protocol error: invalid bulk length\r\n");
    assert!(closed);

    // Phase: a client that keeps sending one never-ending request is cut off at the buffer
    // limit (here 2 MiB), not buffered forever.
    let mut big = b"*2\r\n$3\r\nGET\r\n$1000000\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'a', 1_000_000));
    big.extend_from_slice(b"\r\n*1\r\n$4\r\nPING\r\n"); // a valid big request first
    let (out, _) = server.raw(&big, T);
    assert_eq!(text(&out), "$-1\r\n+PONG\r\n");
    let mut endless = b"GET ".to_vec();
    endless.extend(std::iter::repeat_n(b'a', 3_000_000));
    let (out, closed) = server.raw(&endless, T);
    assert!(
        text(&out).starts_with("-ERR Protocol error: too big inline request"),
        "{}",
        text(&out)
    );
    assert!(closed);

    // Phase: many large arguments in one request pass the buffer limit: cut off too.
    let mut huge = b"*4\r\n$3\r\nDEL\r\n".to_vec();
    for _ in 0..3 {
        huge.extend_from_slice(b"$1000000\r\n");
        huge.extend(std::iter::repeat_n(b'b', 1_000_000));
        huge.extend_from_slice(b"\r\n");
    }
    let (out, closed) = server.raw(&huge, T);
    assert_eq!(
        text(&out),
        "-ERR Protocol error: client query buffer limit exceeded\r\n"
    );
    assert!(closed);

    // Phase: unknown commands and wrong arity get Redis's errors; the connection stays open.
    let (out, _) = server.raw(b"FOO bar baz\r\nGET\r\nSET k\r\nPING\r\nQUIT\r\n", T);
    assert_eq!(
        text(&out),
        "-ERR unknown command 'FOO', with args beginning with: 'bar' 'baz' \r\n\
         -ERR wrong number of arguments for 'get' command\r\n\
         -ERR wrong number of arguments for 'set' command\r\n+PONG\r\n+OK\r\n"
    );

    // Phase: inline commands with quotes work, as in redis-cli's raw mode and telnet.
    let (out, _) = server.raw(
        b"SET \"a b\" 'c d'\r\nGET \"a b\"\r\nSET x \"unbalanced\r\n",
        T,
    );
    assert_eq!(
        text(&out),
        "+OK\r\n$3\r\nc d\r\n-ERR Protocol error: unbalanced quotes in request\r\n"
    );

    // Phase: after all that, the server still serves.
    let mut c = server.client();
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn bad_config_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "port = \"not a number\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_replikv"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("bad config file") && err.contains("port"),
        "{err}"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_replikv"))
        .args(["serve", "--fsync", "sometimes"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("sometimes"));
}

#[test]
fn unauthenticated_clients_cannot_send_large_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--requirepass", "pw"]);

    // Phase: before AUTH a bulk over 16 KiB is refused as soon as it is declared.
    let (out, closed) = server.raw(b"*2\r\n$3\r\nGET\r\n$100000\r\n", T);
    assert_eq!(text(&out), "-ERR Protocol error: invalid bulk length\r\n");
    assert!(closed);

    // Phase: after AUTH the configured limits apply.
    let mut req = b"AUTH pw\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n".to_vec();
    req.extend(std::iter::repeat_n(b'v', 100_000));
    req.extend_from_slice(b"\r\nSTRLEN k\r\nQUIT\r\n");
    let (out, _) = server.raw(&req, T);
    assert_eq!(text(&out), "+OK\r\n+OK\r\n:100000\r\n+OK\r\n");

    // Phase: a name with a newline is refused by HELLO as by CLIENT SETNAME.
    let (out, _) = server.raw(b"HELLO 2 AUTH default pw SETNAME \"a\\nb\"\r\nQUIT\r\n", T);
    assert!(
        text(&out).starts_with("-ERR Client names cannot contain spaces"),
        "{}",
        text(&out)
    );
}
