//! Session guarantees on lagging replicas: read-your-writes (`REPLIKV AFTER <token>`),
//! monotonic reads (`REPLIKV MONOTONIC ON`, and the largest token seen carried across two
//! replicas) and bounded staleness (`REPLIKV STALENESS <ms>`), over 10,000 operations.
//!
//! The lag is real: each replica follows its leader through a proxy on loopback that delays
//! every chunk the leader sends it, by 20-40 ms for replica A and 2-8 ms for replica B; reads
//! without a token do see stale data on A.

mod common;

use common::{info, info_field, is_error, text, wait_caught_up, wait_until, DelayProxy, Frame};
use common::{Resp, Server};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Read-your-writes clients; each writes on the leader and reads its write on a replica.
const RYW_CLIENTS: usize = 24;
const RYW_OPS_PER_CLIENT: usize = 250;
/// Monotonic-read clients; each reads a counter alternately on both replicas.
const MONO_CLIENTS: usize = 8;
const MONO_READS_PER_CLIENT: usize = 500;
/// The operations the two kinds of clients make together.
const OPS_TOTAL: usize = RYW_CLIENTS * RYW_OPS_PER_CLIENT + MONO_CLIENTS * MONO_READS_PER_CLIENT;
const _: () = assert!(OPS_TOTAL == 10_000);
/// Bound on the whole load.
const LOAD_TIME_MAX: Duration = Duration::from_secs(90);
/// Bound on the counter's increments.
const INCREMENTS_MAX: usize = 200_000;
/// Generous wait for a token on a replica: a TRYAGAIN is then a failure to catch up, not lag.
const READ_WAIT_TIMEOUT_MS: &str = "10000";

/// A consistency token `EPOCH:LSN`, ordered as the node orders positions.
fn token(t: &str) -> (u64, u64) {
    let (e, l) = t.split_once(':').unwrap_or_else(|| panic!("bad token {t}"));
    (e.parse().unwrap(), l.parse().unwrap())
}

fn token_text(t: (u64, u64)) -> String {
    format!("{}:{}", t.0, t.1)
}

struct Nodes {
    leader: Server,
    /// Replica A, behind the slow proxy.
    a: Server,
    /// Replica B, behind the fast proxy.
    b: Server,
    _proxies: (DelayProxy, DelayProxy),
    _dirs: Vec<tempfile::TempDir>,
}

fn start_nodes() -> Nodes {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let flags = [
        "--fsync",
        "interval",
        "--read-wait-timeout-ms",
        READ_WAIT_TIMEOUT_MS,
    ];
    let leader = Server::start(dirs[0].path(), &flags);
    let pa = DelayProxy::start(
        leader.port,
        Duration::from_millis(20),
        Duration::from_millis(40),
    );
    let pb = DelayProxy::start(
        leader.port,
        Duration::from_millis(2),
        Duration::from_millis(8),
    );
    let a = Server::start_replica(dirs[1].path(), pa.port, &flags);
    let b = Server::start_replica(dirs[2].path(), pb.port, &flags);
    let up = wait_until(Duration::from_secs(30), || {
        info_field(&info(leader.port, "replication"), "connected_slaves").as_deref() == Some("2")
    });
    assert!(up, "replicas did not connect");
    wait_caught_up(leader.port, a.port, Duration::from_secs(30));
    wait_caught_up(leader.port, b.port, Duration::from_secs(30));
    Nodes {
        leader,
        a,
        b,
        _proxies: (pa, pb),
        _dirs: dirs,
    }
}

#[derive(Default)]
struct Tally {
    ops: AtomicUsize,
    tryagain: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        let mut f = self.failures.lock().unwrap();
        if f.len() < 20 {
            f.push(what);
        }
    }
}

/// Writes a key on the leader, takes the write's token, and reads the key on a replica after
/// the token: the read must see the write (or, rarely, time out with TRYAGAIN).
fn ryw_client(client: usize, leader: u16, replica: u16, tally: &Tally, deadline: Instant) {
    let mut l = Resp::connect(leader);
    let mut r = Resp::connect(replica);
    for i in 0..RYW_OPS_PER_CLIENT {
        if Instant::now() > deadline {
            tally.fail(format!("ryw client {client} ran out of time at op {i}"));
            return;
        }
        let key = format!("ryw:{client}:{i}");
        let value = i.to_string();
        let set = l.call(&["SET", key.as_str(), value.as_str()]);
        if text(&set) != "OK" {
            tally.fail(format!("SET {key} gave {set:?}"));
            return;
        }
        // Asked on its own, not pipelined with the SET: see
        // `token_pipelined_after_a_write_covers_that_write`.
        let t = text(&l.call(&["REPLIKV", "TOKEN"]));
        let got = r
            .pipeline(&[
                vec!["REPLIKV", "AFTER", t.as_str()],
                vec!["GET", key.as_str()],
            ])
            .expect("read on the replica");
        tally.ops.fetch_add(1, Ordering::Relaxed);
        if text(&got[0]) != "OK" {
            tally.fail(format!("REPLIKV AFTER {t} gave {:?}", got[0]));
        } else if is_error(&got[1], "TRYAGAIN") {
            tally.tryagain.fetch_add(1, Ordering::Relaxed);
        } else if got[1] != Frame::Bulk(value.clone().into()) {
            tally.fail(format!(
                "read-your-writes broken: {key} written at {t}, replica on port {replica} gave {:?}",
                got[1]
            ));
        }
    }
}

/// Reads the counter alternately on both replicas, each connection with monotonic reads on, and
/// each read after the largest token seen so far on either: the value never goes back.
fn mono_client(client: usize, a: u16, b: u16, tally: &Tally, deadline: Instant) {
    let mut conns = [Resp::connect(a), Resp::connect(b)];
    for c in &mut conns {
        assert_eq!(text(&c.call(&["REPLIKV", "MONOTONIC", "ON"])), "OK");
    }
    let mut seen_token = (0, 0);
    let mut seen_value: i64 = -1;
    for j in 0..MONO_READS_PER_CLIENT {
        if Instant::now() > deadline {
            tally.fail(format!(
                "monotonic client {client} ran out of time at read {j}"
            ));
            return;
        }
        let which = (j + client) % 2;
        let c = &mut conns[which];
        let after = token_text(seen_token);
        let got = c
            .pipeline(&[
                vec!["REPLIKV", "AFTER", after.as_str()],
                vec!["GET", "mono:counter"],
            ])
            .expect("read on a replica");
        tally.ops.fetch_add(1, Ordering::Relaxed);
        if is_error(&got[1], "TRYAGAIN") {
            tally.tryagain.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let value: i64 = match &got[1] {
            Frame::Null => 0,
            Frame::Bulk(v) => String::from_utf8_lossy(v).parse().unwrap(),
            other => {
                tally.fail(format!("GET mono:counter gave {other:?}"));
                continue;
            }
        };
        let t = token(&text(&c.call(&["REPLIKV", "TOKEN"])));
        if value < seen_value {
            tally.fail(format!(
                "monotonic reads broken: client {client} read {value} on replica {} after {seen_value} (token {after})",
                ["A", "B"][which]
            ));
        }
        if t < seen_token {
            tally.fail(format!(
                "the token went back: {} after {after}",
                token_text(t)
            ));
        }
        seen_value = seen_value.max(value);
        seen_token = seen_token.max(t);
    }
}

#[test]
fn read_your_writes_and_monotonic_reads_hold_over_10000_operations_on_lagging_replicas() {
    let n = start_nodes();
    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + LOAD_TIME_MAX;

    eprintln!("phase: {RYW_CLIENTS} read-your-writes clients and {MONO_CLIENTS} monotonic readers, while the leader increments a counter");
    let stop = Arc::new(AtomicBool::new(false));
    let counter = {
        let (stop, port) = (Arc::clone(&stop), n.leader.port);
        std::thread::spawn(move || {
            let mut c = Resp::connect(port);
            let mut count = 0;
            while !stop.load(Ordering::Relaxed)
                && count < INCREMENTS_MAX
                && Instant::now() < deadline
            {
                let r = c.call(&["INCR", "mono:counter"]);
                assert!(matches!(r, Frame::Integer(_)), "INCR gave {r:?}");
                count += 1;
                // Pace the counter: a few hundred increments a second keep both replicas busy.
                std::thread::sleep(Duration::from_millis(2));
            }
            count
        })
    };
    let mut clients = Vec::new();
    for client in 0..RYW_CLIENTS {
        let (tally, leader) = (Arc::clone(&tally), n.leader.port);
        // Two clients of three read on the slow replica.
        let replica = if client % 3 == 2 { n.b.port } else { n.a.port };
        clients.push(std::thread::spawn(move || {
            ryw_client(client, leader, replica, &tally, deadline);
        }));
    }
    for client in 0..MONO_CLIENTS {
        let (tally, a, b) = (Arc::clone(&tally), n.a.port, n.b.port);
        clients.push(std::thread::spawn(move || {
            mono_client(client, a, b, &tally, deadline);
        }));
    }
    // A control reader without tokens, alternating between the replicas: its counter does go
    // back, which shows the monotonic check above can fail.
    let control = {
        let (a, b) = (n.a.port, n.b.port);
        std::thread::spawn(move || {
            let mut conns = [Resp::connect(a), Resp::connect(b)];
            let (mut last, mut backwards) = (-1i64, 0);
            for j in 0..MONO_READS_PER_CLIENT {
                if Instant::now() > deadline {
                    break;
                }
                let value = match conns[j % 2].call(&["GET", "mono:counter"]) {
                    Frame::Bulk(v) => String::from_utf8_lossy(&v).parse().unwrap(),
                    _ => 0,
                };
                if value < last {
                    backwards += 1;
                }
                last = value;
            }
            backwards
        })
    };
    let started = Instant::now();
    for c in clients {
        c.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let increments = counter.join().unwrap();
    let backwards = control.join().unwrap();
    eprintln!("FIGURE reads: a control reader alternating between the replicas without tokens saw the counter go back {backwards} times in {MONO_READS_PER_CLIENT} reads");
    assert!(backwards > 0, "the control reader never saw the counter go back: the replicas' lags do not differ enough to test monotonic reads");
    let ops = tally.ops.load(Ordering::Relaxed);
    let tryagain = tally.tryagain.load(Ordering::Relaxed);
    eprintln!(
        "FIGURE reads: {ops} operations in {:?} ({increments} counter increments), {tryagain} TRYAGAIN with --read-wait-timeout-ms {READ_WAIT_TIMEOUT_MS}",
        started.elapsed()
    );
    let failures = tally.failures.lock().unwrap();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(ops, OPS_TOTAL);
    assert_eq!(tryagain, 0, "reads timed out waiting for their token");

    eprintln!("phase: without a token the slow replica does serve stale data");
    let mut l = n.leader.resp();
    let mut a = n.a.resp();
    let mut stale = 0;
    let probes = 200;
    for i in 0..probes {
        let key = format!("stale:{i}");
        assert_eq!(text(&l.call(&["SET", key.as_str(), "1"])), "OK");
        if a.call(&["GET", key.as_str()]) == Frame::Null {
            stale += 1;
        }
    }
    eprintln!("FIGURE reads: {stale} of {probes} reads on replica A right after the write missed it (no token)");
    assert!(
        stale > 0,
        "the lag is not visible: no stale read on replica A"
    );
}

#[test]
fn bounded_staleness_refuses_reads_on_a_lagging_replica_past_the_bound_only() {
    let n = start_nodes();
    let mut l = n.leader.resp();
    assert_eq!(text(&l.call(&["SET", "s", "1"])), "OK");
    wait_caught_up(n.leader.port, n.a.port, Duration::from_secs(10));
    let probes = 100;
    // Bounded in time: the probes are spread over about a second so heartbeats come and go.
    let pause = Duration::from_millis(10);

    eprintln!("phase: a 1 ms bound on replica A (20-40 ms behind) refuses reads with -STALE");
    let mut a = n.a.resp();
    assert_eq!(text(&a.call(&["REPLIKV", "STALENESS", "1"])), "OK");
    let mut refused = 0;
    for _ in 0..probes {
        let r = a.call(&["GET", "s"]);
        if is_error(&r, "STALE") {
            refused += 1;
        } else {
            assert_eq!(text(&r), "1", "GET gave {r:?}");
        }
        std::thread::sleep(pause);
    }
    eprintln!("FIGURE reads: STALENESS 1 on replica A refused {refused} of {probes} reads");
    assert!(refused > 0, "no read refused under a 1 ms bound");

    eprintln!("phase: a 60 s bound refuses none, on either replica");
    for port in [n.a.port, n.b.port] {
        let mut c = Resp::connect(port);
        assert_eq!(text(&c.call(&["REPLIKV", "STALENESS", "60000"])), "OK");
        for _ in 0..probes {
            let r = c.call(&["GET", "s"]);
            assert_eq!(text(&r), "1", "GET under a 60 s bound gave {r:?}");
            std::thread::sleep(pause / 2);
        }
    }
    eprintln!("phase: STALENESS OFF serves again");
    assert_eq!(text(&a.call(&["REPLIKV", "STALENESS", "OFF"])), "OK");
    assert_eq!(text(&a.call(&["GET", "s"])), "1");
}

/// `REPLIKV TOKEN` pipelined right after a write (in the same packet, as the replica's write
/// forwarding sends it) must give a position at or past that write: it is the token a client
/// passes to a replica to read the write back.
#[test]
fn token_pipelined_after_a_write_covers_that_write() {
    let dir = tempfile::tempdir().unwrap();
    let leader = Server::start(dir.path(), &["--fsync", "interval"]);
    let mut c = leader.resp();
    for i in 0..20 {
        let key = format!("tok{i}");
        let got = c
            .pipeline(&[vec!["SET", key.as_str(), "v"], vec!["REPLIKV", "TOKEN"]])
            .unwrap();
        assert_eq!(text(&got[0]), "OK");
        let Frame::Array(position) = c.call(&["REPLIKV", "POSITION"]) else {
            panic!("POSITION gave no array");
        };
        let applied = text(&position[0]);
        assert_eq!(
            text(&got[1]),
            applied,
            "TOKEN pipelined after SET {key} does not cover it (the node has applied {applied})"
        );
    }
}
