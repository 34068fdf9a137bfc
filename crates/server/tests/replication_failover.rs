//! `FAILOVER`: a leader hands leadership over to a replica with no acknowledged write lost.
//! Writes pause while the target catches up, the target takes over in the next epoch,
//! continuing the history, and the old leader follows it by partial resync. A target that
//! does not catch up in time gives the switchover up and writes resume.

mod common;

use common::{info, is_error, text, wait_until, Frame, Resp, Server};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TESTING: (&str, &str) = ("REPLIKV_I_AM_TESTING", "1");

fn role(node: &Server) -> Vec<Frame> {
    match node.resp().call(&["ROLE"]) {
        Frame::Array(items) => items,
        other => panic!("ROLE gave {other:?}"),
    }
}

/// A replica of `leader` with fault injection, whose replication arrives `delay_ms` late.
fn slow_replica(dir: &std::path::Path, leader: &Server, delay_ms: u64) -> Server {
    let upstream = format!("127.0.0.1:{}", leader.port);
    let slow = Server::start_with_env(
        dir,
        &["--replicaof", upstream.as_str(), "--fault-injection"],
        &[TESTING],
    );
    wait_replicas(leader, 1);
    if delay_ms > 0 {
        delay_replication(&slow, delay_ms);
    }
    slow
}

fn delay_replication(node: &Server, delay_ms: u64) {
    let spec = format!(r#"{{"delay_ms": {{"*": {delay_ms}}}}}"#);
    let (code, body) = node.http("POST", "/faults", Some(&spec));
    assert_eq!(code, 200, "{body}");
}

fn wait_replicas(leader: &Server, n: usize) {
    let ok = wait_until(
        Duration::from_secs(30),
        || matches!(role(leader).get(2), Some(Frame::Array(r)) if r.len() == n),
    );
    assert!(ok, "the leader does not list {n} replicas");
}

#[test]
fn failover_hands_leadership_over_without_losing_an_acknowledged_write() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let flags = ["--fsync", "interval"];
    let leader = Server::start(dirs[0].path(), &flags);
    let target = Server::start_replica(dirs[1].path(), leader.port, &flags);
    let other = Server::start_replica(dirs[2].path(), leader.port, &flags);
    wait_replicas(&leader, 2);

    eprintln!("phase: writes flow while the leader hands over");
    let stop = Arc::new(AtomicBool::new(false));
    let port = leader.port;
    let writer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut c = Resp::connect(port);
            let (mut acked, mut refused) = (Vec::new(), 0u32);
            let deadline = Instant::now() + Duration::from_secs(20);
            for i in 0..100_000u32 {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                let key = format!("k{i}");
                match c.try_call(&["SET", key.as_str(), "v"]) {
                    Ok(Frame::Simple(s)) if s == "OK" => acked.push(key),
                    Ok(_) => refused += 1,
                    Err(_) => break,
                }
            }
            (acked, refused)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let partial_before = target.log_count("streaming the log (partial resync)");
    let tport = target.port.to_string();
    let reply = leader.resp().call(&[
        "FAILOVER",
        "TO",
        "127.0.0.1",
        tport.as_str(),
        "TIMEOUT",
        "5000",
    ]);
    assert_eq!(text(&reply), "OK", "FAILOVER gave {reply:?}");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (acked, refused) = writer.join().unwrap();
    eprintln!("writes acknowledged {}, refused {refused}", acked.len());
    assert!(
        acked.len() > 100,
        "too few writes acknowledged to mean anything"
    );

    eprintln!("phase: the target leads, the old leader follows it by partial resync");
    assert_eq!(text(&role(&target)[0]), "master");
    let old = role(&leader);
    assert_eq!(text(&old[0]), "slave");
    assert_eq!(old[2], Frame::Integer(i64::from(target.port)));
    assert!(
        target.wait_log(
            "streaming the log (partial resync)",
            partial_before + 1,
            Duration::from_secs(20)
        ),
        "the old leader did not resume by partial resync:\n{}",
        target.log_text()
    );
    assert!(is_error(
        &leader.resp().call(&["SET", "after", "x"]),
        "READONLY"
    ));
    let repointed = wait_until(Duration::from_secs(10), || {
        role(&other).get(2) == Some(&Frame::Integer(i64::from(target.port)))
    });
    assert!(
        repointed,
        "the other replica still follows {:?}",
        role(&other)
    );
    let named = other
        .resp()
        .call(&["SENTINEL", "get-master-addr-by-name", "replikv"]);
    assert_eq!(
        named,
        Frame::Array(vec![
            Frame::Bulk("127.0.0.1".into()),
            Frame::Bulk(target.port.to_string().into())
        ])
    );
    assert_eq!(text(&target.resp().call(&["SET", "after", "x"])), "OK");

    eprintln!("phase: every acknowledged write is on the new leader");
    let mut c = target.resp();
    for key in &acked {
        assert_eq!(
            c.call(&["GET", key.as_str()]),
            Frame::Bulk("v".into()),
            "acknowledged {key} is missing on the new leader"
        );
    }
}

#[test]
fn failover_refuses_on_a_replica_and_for_a_node_that_is_not_a_replica() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let leader = Server::start(dirs[0].path(), &[]);
    let replica = Server::start_replica(dirs[1].path(), leader.port, &[]);
    wait_replicas(&leader, 1);
    assert!(is_error(
        &replica.resp().call(&["FAILOVER"]),
        "ERR FAILOVER is not valid when server is a replica."
    ));
    assert!(is_error(
        &leader.resp().call(&["FAILOVER", "TO", "127.0.0.1", "1"]),
        "ERR FAILOVER target HOST and PORT is not a replica."
    ));
    assert!(is_error(
        &leader.resp().call(&["FAILOVER", "FORCE"]),
        "ERR FAILOVER FORCE is not supported"
    ));
    assert!(is_error(
        &leader.resp().call(&["FAILOVER", "TIMEOUT", "0"]),
        "ERR FAILOVER timeout"
    ));
    assert_eq!(text(&leader.resp().call(&["SET", "still", "leads"])), "OK");
}

#[test]
fn a_target_that_does_not_catch_up_in_time_gives_the_switchover_up_and_writes_resume() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let leader = Server::start(dirs[0].path(), &["--fsync", "interval"]);
    let slow = slow_replica(dirs[1].path(), &leader, 3000);
    assert_eq!(text(&leader.resp().call(&["SET", "k", "1"])), "OK");
    let sport = slow.port.to_string();
    let reply = leader.resp().call(&[
        "FAILOVER",
        "TO",
        "127.0.0.1",
        sport.as_str(),
        "TIMEOUT",
        "300",
    ]);
    assert!(
        is_error(
            &reply,
            "ERR FAILOVER target replica did not catch up in time"
        ),
        "{reply:?}"
    );
    assert_eq!(text(&role(&leader)[0]), "master");
    assert_eq!(
        text(&leader.resp().call(&["SET", "k", "2"])),
        "OK",
        "writes resumed"
    );
}

#[test]
fn failover_abort_gives_a_waiting_switchover_up() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let leader = Server::start(dirs[0].path(), &["--fsync", "interval"]);
    let slow = slow_replica(dirs[1].path(), &leader, 0);
    assert!(is_error(
        &leader.resp().call(&["FAILOVER", "ABORT"]),
        "ERR No failover in progress."
    ));
    delay_replication(&slow, 5000);
    assert_eq!(text(&leader.resp().call(&["SET", "k", "1"])), "OK");
    let port = leader.port;
    let sport = slow.port.to_string();
    let waiting = std::thread::spawn(move || {
        Resp::connect(port).call(&[
            "FAILOVER",
            "TO",
            "127.0.0.1",
            sport.as_str(),
            "TIMEOUT",
            "20000",
        ])
    });
    // A write sent meanwhile waits, paused.
    let in_progress = wait_until(Duration::from_secs(5), || {
        info(leader.port, "replication").contains("master_failover_state:waiting-for-sync")
    });
    assert!(in_progress, "{}", info(leader.port, "replication"));
    let mut w = leader.resp();
    w.send(&[vec!["SET", "during", "x"]]).unwrap();
    let parked = wait_until(Duration::from_secs(5), || {
        info(leader.port, "replication").contains("parked_writes:1")
    });
    assert!(parked, "{}", info(leader.port, "replication"));
    assert_eq!(text(&leader.resp().call(&["FAILOVER", "ABORT"])), "OK");
    let reply = waiting.join().unwrap();
    assert!(is_error(&reply, "ERR FAILOVER aborted"), "{reply:?}");
    assert_eq!(text(&w.read_reply().unwrap()), "OK", "the paused write ran");
    assert_eq!(
        text(&leader.resp().call(&["SET", "k", "2"])),
        "OK",
        "writes resumed"
    );
    assert_eq!(text(&role(&leader)[0]), "master");
}

#[test]
fn role_changes_are_events_in_status_and_metrics() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let leader = Server::start(dirs[0].path(), &[]);
    let replica = Server::start_replica(dirs[1].path(), leader.port, &[]);
    wait_replicas(&leader, 1);
    let rport = replica.port.to_string();
    assert_eq!(
        text(
            &leader
                .resp()
                .call(&["FAILOVER", "TO", "127.0.0.1", rport.as_str()])
        ),
        "OK"
    );
    let (code, status) = leader.http_get("/status");
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let kinds: Vec<&str> = status["replication"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["leading", "switchover", "following"], "{status}");
    let (_, metrics) = replica.http_get("/metrics");
    assert!(
        metrics.contains("replikv_replication_events_total{kind=\"takeover\"} 1"),
        "{metrics}"
    );
}

#[test]
fn replicaof_during_a_waiting_failover_gives_it_up_and_the_target_never_leads() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let leader = Server::start(dirs[0].path(), &["--fsync", "interval"]);
    let elsewhere = Server::start(dirs[2].path(), &[]);
    let slow = slow_replica(dirs[1].path(), &leader, 3000);
    assert_eq!(text(&leader.resp().call(&["SET", "k", "1"])), "OK");
    let port = leader.port;
    let sport = slow.port.to_string();
    let waiting = std::thread::spawn(move || {
        Resp::connect(port).call(&[
            "FAILOVER",
            "TO",
            "127.0.0.1",
            sport.as_str(),
            "TIMEOUT",
            "20000",
        ])
    });
    let in_progress = wait_until(Duration::from_secs(5), || {
        info(leader.port, "replication").contains("master_failover_state:waiting-for-sync")
    });
    assert!(in_progress);
    let eport = elsewhere.port.to_string();
    assert_eq!(
        text(
            &leader
                .resp()
                .call(&["REPLICAOF", "127.0.0.1", eport.as_str()])
        ),
        "OK"
    );
    let reply = waiting.join().unwrap();
    assert!(
        is_error(&reply, "ERR FAILOVER aborted by REPLICAOF"),
        "{reply:?}"
    );
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(
        text(&role(&slow)[0]),
        "slave",
        "the target took over anyway"
    );
}

#[test]
fn takeover_is_refused_unless_it_comes_from_the_upstream_with_everything_here() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let leader = Server::start(dirs[0].path(), &[]);
    let replica = Server::start_replica(dirs[1].path(), leader.port, &[]);
    wait_replicas(&leader, 1);
    let mut r = replica.resp();
    assert!(is_error(
        &r.call(&["REPLIKV", "TAKEOVER", "1"]),
        "ERR syntax error"
    ));
    assert!(is_error(
        &r.call(&["REPLIKV", "TAKEOVER", "1", "someone-else", "1:0"]),
        "ERR this node does not replicate from someone-else"
    ));
    let (_, status) = leader.http_get("/status");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let leader_id = status["replication"]["node_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(is_error(
        &r.call(&["REPLIKV", "TAKEOVER", "1", leader_id.as_str(), "1:999"]),
        "ERR this node is at"
    ));
    assert_eq!(text(&role(&replica)[0]), "slave");
    assert!(is_error(
        &leader
            .resp()
            .call(&["REPLIKV", "TAKEOVER", "1", "x", "1:0"]),
        "ERR this node already leads"
    ));
}
