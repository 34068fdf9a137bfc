//! The server driven by a real Redis client library (the `redis` crate), as users will.

mod common;

use common::Server;
use redis::{Commands, RedisResult, Value};
use std::time::Duration;

#[test]
fn strings_counters_and_expiry_behave_as_in_redis() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = server.client();

    // Phase: plain strings, binary-safe.
    let _: () = c.set("greeting", "hello").unwrap();
    assert_eq!(c.get::<_, String>("greeting").unwrap(), "hello");
    let _: () = c
        .set(b"bin\x00key".as_slice(), b"\x00\xff\r\n".as_slice())
        .unwrap();
    assert_eq!(
        c.get::<_, Vec<u8>>(b"bin\x00key".as_slice()).unwrap(),
        b"\x00\xff\r\n"
    );
    assert_eq!(c.append::<_, _, i64>("greeting", " world").unwrap(), 11);
    assert_eq!(c.strlen::<_, i64>("greeting").unwrap(), 11);

    // Phase: counters and their errors.
    assert_eq!(c.incr::<_, _, i64>("n", 5).unwrap(), 5);
    assert_eq!(c.decr::<_, _, i64>("n", 7).unwrap(), -2);
    let err: RedisResult<i64> = c.incr("greeting", 1);
    assert!(err.unwrap_err().to_string().contains("not an integer"));

    // Phase: multi-key commands.
    let _: () = c.mset(&[("a", "1"), ("b", "2")]).unwrap();
    let got: Vec<Option<String>> = c.mget(&["a", "nope", "b"]).unwrap();
    assert_eq!(got, vec![Some("1".into()), None, Some("2".into())]);
    assert_eq!(c.exists::<_, i64>(&["a", "b", "nope"]).unwrap(), 2);
    assert_eq!(c.del::<_, i64>(&["a", "nope"]).unwrap(), 1);

    // Phase: SET options and TTLs.
    let nx: Option<String> = redis::cmd("SET")
        .arg("b")
        .arg("x")
        .arg("NX")
        .query(&mut c)
        .unwrap();
    assert_eq!(nx, None);
    let old: Option<String> = redis::cmd("SET")
        .arg("b")
        .arg("3")
        .arg("GET")
        .query(&mut c)
        .unwrap();
    assert_eq!(old.as_deref(), Some("2"));
    let _: () = redis::cmd("SET")
        .arg("t")
        .arg("v")
        .arg("PX")
        .arg(300)
        .query(&mut c)
        .unwrap();
    let pttl: i64 = c.pttl("t").unwrap();
    assert!(pttl > 0 && pttl <= 300, "pttl {pttl}");
    assert_eq!(c.ttl::<_, i64>("b").unwrap(), -1);
    assert_eq!(c.ttl::<_, i64>("nope").unwrap(), -2);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(c.get::<_, Option<String>>("t").unwrap(), None);
    assert!(c.expire::<_, i64>("b", 100).unwrap() == 1);
    assert!(c.persist::<_, i64>("b").unwrap() == 1);

    // Phase: SCAN sees every key, DBSIZE counts them.
    let mut keys: Vec<String> = c
        .scan::<String>()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    keys.sort();
    let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(keys.len() as i64, size);
    assert!(keys.contains(&"greeting".to_string()));

    // Phase: FLUSHALL.
    let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 0);
}

#[test]
fn pipelines_and_many_concurrent_clients() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--fsync", "interval"]);

    // Phase: one pipeline of 1,000 commands comes back complete and in order.
    let mut c = server.client();
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.cmd("SET").arg(format!("k{i}")).arg(i).ignore();
        pipe.cmd("INCR").arg("counter");
    }
    let counts: Vec<i64> = pipe.query(&mut c).unwrap();
    assert_eq!(counts, (1..=1000).collect::<Vec<i64>>());

    // Phase: 16 clients increment one counter concurrently; no increment is lost.
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let url = server.url();
            std::thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                for _ in 0..200 {
                    let _: i64 = c.incr("shared", 1).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(c.get::<_, i64>("shared").unwrap(), 16 * 200);
}

#[test]
fn connection_commands_resp3_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--requirepass", "s3cret"]);

    // Phase: without AUTH every data command is refused with NOAUTH (after the unknown-command
    // and arity checks, as Redis orders them).
    let (out, _) = server.raw(
        b"GET a\r\nGET\r\nFOO\r\nAUTH wrong\r\nAUTH s3cret\r\nGET a\r\nQUIT\r\n",
        Duration::from_secs(5),
    );
    let text = String::from_utf8_lossy(&out);
    assert_eq!(
        text,
        "-NOAUTH Authentication required.\r\n-ERR wrong number of arguments for 'get' command\r\n-ERR unknown command 'FOO', with args beginning with: \r\n-WRONGPASS invalid username-password pair or user is disabled.\r\n+OK\r\n$-1\r\n+OK\r\n"
    );

    // Phase: the client library authenticates through the URL.
    let url = format!("redis://:s3cret@127.0.0.1:{}/", server.port);
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
    let echo: String = redis::cmd("ECHO").arg("hi").query(&mut c).unwrap();
    assert_eq!(echo, "hi");
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("tester")
        .query(&mut c)
        .unwrap();
    let name: String = redis::cmd("CLIENT").arg("GETNAME").query(&mut c).unwrap();
    assert_eq!(name, "tester");
    let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut c).unwrap();
    assert!(id > 0);
    let bad: RedisResult<()> = redis::cmd("SELECT").arg(1).query(&mut c);
    assert!(bad
        .unwrap_err()
        .to_string()
        .contains("DB index is out of range"));

    // Phase: INFO has Redis's sections and fields.
    let info: String = redis::cmd("INFO").query(&mut c).unwrap();
    for field in [
        "# Server",
        "redis_version:",
        "# Clients",
        "connected_clients:",
        "# Memory",
        "# Persistence",
        "aof_fsync:always",
        "# Stats",
        "total_commands_processed:",
        "# Replication",
        "role:master",
        "# Keyspace",
    ] {
        assert!(info.contains(field), "INFO lacks {field}:\n{info}");
    }
    let only: String = redis::cmd("INFO").arg("replication").query(&mut c).unwrap();
    assert!(
        only.starts_with("# Replication") && !only.contains("# Server"),
        "{only}"
    );

    // Phase: CONFIG RESETSTAT zeroes the command counters; CONFIG GET answers Redis's names.
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut c).unwrap();
    let stats: String = redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
    // RESETSTAT itself counts once it has run, as in Redis.
    assert!(stats.contains("total_commands_processed:1\r\n"), "{stats}");
    let fsync: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendfsync")
        .query(&mut c)
        .unwrap();
    assert_eq!(fsync, vec!["appendfsync".to_string(), "always".to_string()]);

    // Phase: HELLO 3 switches this connection to RESP3: a map reply and `_` nulls.
    let (out, _) = server.raw(
        b"HELLO 3 AUTH default s3cret\r\nGET missing\r\nQUIT\r\n",
        Duration::from_secs(5),
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("%7\r\n"), "{text}");
    assert!(text.contains("$6\r\nserver\r\n$7\r\nreplikv\r\n"), "{text}");
    assert!(text.ends_with("_\r\n+OK\r\n"), "{text}");

    // Phase: COMMAND lists data and connection commands (redis-cli uses it).
    let count: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut c).unwrap();
    assert!(count > 30, "{count}");
    let v: Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("get")
        .query(&mut c)
        .unwrap();
    assert!(matches!(v, Value::Array(ref a) if a.len() == 1), "{v:?}");
}

#[test]
fn admin_http_reports_health_status_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = server.client();
    for i in 0..10 {
        let _: () = c.set(format!("k{i}"), i).unwrap();
    }

    let (code, body) = server.http_get("/health");
    assert_eq!((code, body.trim()), (200, "ok"));

    let (code, body) = server.http_get("/status");
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["keyspace"]["keys"], 10);
    assert_eq!(status["log"]["applied_lsn"], 10);
    assert_eq!(status["log"]["durable_lsn"], 10);
    assert_eq!(status["role"], "leader");

    let (code, body) = server.http_get("/metrics");
    assert_eq!(code, 200);
    assert!(
        body.contains("# TYPE replikv_wal_fsyncs_total counter"),
        "{body}"
    );
    assert!(body.contains("\nreplikv_keys 10\n"), "{body}");
    assert!(body.contains("\nreplikv_wal_records_total 10\n"), "{body}");
}

#[test]
fn save_bgsave_and_lastsave() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let mut c = server.client();
    for i in 0..100 {
        let _: () = c.set(format!("k{i}"), i).unwrap();
    }
    let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
    let last: i64 = redis::cmd("LASTSAVE").query(&mut c).unwrap();
    assert!(last > 1_600_000_000);
    let started: String = redis::cmd("BGSAVE").query(&mut c).unwrap();
    assert_eq!(started, "Background saving started");
    for i in 100..150 {
        let _: () = c.set(format!("k{i}"), i).unwrap();
    }
    drop(c);

    // Phase: after a clean stop and restart, everything is there (snapshot + log).
    assert!(
        server.terminate(),
        "clean shutdown failed:\n{}",
        server.log_text()
    );
    server.restart();
    let mut c = server.client();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 150);
    assert_eq!(c.get::<_, i64>("k149").unwrap(), 149);
}

#[test]
fn a_client_that_sends_its_whole_pipeline_before_reading_is_served() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--fsync", "interval"]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();

    // Phase: 60,000 GETs of a 1 KB key holding 1 KB, about 60 MB each way, are all written
    // before a single reply is read, more than the socket buffers hold in either direction,
    // as redis-py's pipeline.execute() does.
    const N: usize = 60_000;
    let key = "k".repeat(1000);
    let value = "v".repeat(1000);
    let mut c = server.client();
    let _: () = c.set(&key, &value).unwrap();
    let request = format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len());
    let reply = format!("${}\r\n{value}\r\n", value.len());
    let pipeline = request.repeat(N).into_bytes();
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&pipeline).is_ok());
    // The client reads nothing until its whole pipeline is written, as a single-threaded
    // client does: the server must keep reading while its replies pile up.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !sender.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "deadlock: the server stopped reading"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Phase: every reply arrives.
    let expected = reply.len() * N;
    let mut got = Vec::with_capacity(expected);
    let mut buf = vec![0u8; 64 * 1024];
    while got.len() < expected {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "server closed after {} bytes of replies", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    assert!(sender.join().unwrap());
    assert!(got == reply.repeat(N).into_bytes(), "replies differ");
}

#[test]
fn automatic_snapshots_leave_save_and_bgsave_working() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--snapshot-every-entries", "10"]);
    let mut c = server.client();

    // Phase: writes trigger several automatic snapshots.
    for i in 0..55 {
        let _: () = c.set(format!("k{i}"), i).unwrap();
    }
    // Phase: a SAVE pipelined right behind the write that crosses the threshold, then more.
    let (out, _) = server.raw(
        b"SET x 1\r\nPING\r\nSAVE\r\nQUIT\r\n",
        Duration::from_secs(10),
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        "+OK\r\n+PONG\r\n+OK\r\n+OK\r\n"
    );
    let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
    let mut started = false;
    for _ in 0..100 {
        match redis::cmd("BGSAVE").query::<String>(&mut c) {
            Ok(s) => {
                assert_eq!(s, "Background saving started");
                started = true;
                break;
            }
            Err(e) => {
                assert!(e.to_string().contains("already in progress"), "{e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    assert!(started, "BGSAVE never started again");
    let info: String = redis::cmd("INFO").arg("persistence").query(&mut c).unwrap();
    assert!(info.contains("rdb_last_bgsave_status:ok"), "{info}");

    // Phase: restart from those snapshots and the log after them.
    drop(c);
    assert!(server.terminate());
    server.restart();
    let mut c = server.client();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 56);
}

#[test]
fn pipelined_replies_keep_the_protocol_they_were_sent_under() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (out, _) = server.raw(
        b"GET nosuchkey\r\nHELLO 3\r\nGET nosuchkey\r\nQUIT\r\n",
        Duration::from_secs(5),
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("$-1\r\n%7\r\n"), "{text}");
    assert!(text.ends_with("_\r\n+OK\r\n"), "{text}");
}
