//! Fault injection in the peer layer (docs/design/replication.md, "Fault injection (testing
//! only)"): the hook `replikv check` uses where network namespaces are not available. It must
//! refuse to start without the explicit test setting, cut replication both ways when a peer is
//! blocked, delay and drop links as asked, heal on `DELETE /faults`, and not exist at all on a
//! node started without it.

mod common;

use common::{info, info_field, text, wait_caught_up, wait_until, Frame, Resp, Server};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TESTING: (&str, &str) = ("REPLIKV_I_AM_TESTING", "1");
const LEADER_ID: &str = "leader-1";
const REPLICA_ID: &str = "replica-1";
/// Bound on a replica catching up after a fault is healed (reconnect backoff is at most 2 s).
const CATCHUP_MAX: Duration = Duration::from_secs(15);
/// How long a write must stay invisible on a cut-off replica.
const UNSEEN_FOR: Duration = Duration::from_secs(1);

/// Starts `replikv serve` with `extra` flags and environment changes, and waits for it to exit;
/// returns its success and what it wrote to stderr. Panics if it keeps running.
fn run_expecting_exit(
    dir: &std::path::Path,
    extra: &[&str],
    set: &[(&str, &str)],
    remove: &[&str],
) -> (bool, String) {
    let port = common::free_port().to_string();
    let stderr = dir.join("stderr.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_replikv"));
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--port", port.as_str(), "--admin-port", "0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("stderr file"));
    for name in remove {
        cmd.env_remove(name);
    }
    cmd.envs(set.iter().copied());
    let mut child = cmd.spawn().expect("start replikv");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let log = std::fs::read_to_string(&stderr).unwrap_or_default();
            return (status.success(), log);
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!(
                "replikv kept running with {extra:?} {set:?}; stderr:\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A way to ask for fault injection: what it is, the flags, the environment.
type Ask<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);

#[test]
fn fault_injection_refuses_to_start_without_the_testing_setting() {
    let cases: &[Ask] = &[
        ("the flag, no test setting", &["--fault-injection"], &[]),
        (
            "the flag, test setting 0",
            &["--fault-injection"],
            &[("REPLIKV_I_AM_TESTING", "0")],
        ),
        (
            "the environment variable, no test setting",
            &[],
            &[("REPLIKV_FAULT_INJECTION", "1")],
        ),
    ];
    for (what, flags, env) in cases {
        eprintln!("phase: {what}: the node must refuse to start and name both settings");
        let dir = tempfile::tempdir().unwrap();
        let (ok, log) = run_expecting_exit(
            dir.path(),
            flags,
            env,
            &["REPLIKV_I_AM_TESTING", "REPLIKV_FAULT_INJECTION"],
        );
        assert!(!ok, "{what}: the node exited successfully; stderr:\n{log}");
        assert!(log.contains("--fault-injection"), "{what}: {log}");
        assert!(log.contains("REPLIKV_I_AM_TESTING=1"), "{what}: {log}");
    }
}

/// GET `key` on the node on `port`, as text (`(nil)` when missing).
fn get(port: u16, key: &str) -> String {
    text(&Resp::connect(port).call(&["GET", key]))
}

fn set(port: u16, key: &str, value: &str) {
    let reply = Resp::connect(port).call(&["SET", key, value]);
    assert_eq!(
        reply,
        Frame::Simple("OK".into()),
        "SET {key} on port {port}"
    );
}

/// Panics if `key` becomes visible on the node on `port` within [`UNSEEN_FOR`].
fn assert_unseen(port: u16, key: &str, what: &str) {
    let deadline = Instant::now() + UNSEEN_FOR;
    while Instant::now() < deadline {
        assert_eq!(
            get(port, key),
            "(nil)",
            "{what}: `{key}` reached the replica"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn replication_field(port: u16, name: &str) -> String {
    let text = info(port, "replication");
    info_field(&text, name).unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// POSTs a fault setting; panics unless it is taken.
fn post_faults(node: &Server, json: &str) -> serde_json::Value {
    let (code, body) = node.http("POST", "/faults", Some(json));
    assert_eq!(code, 200, "POST /faults {json}: {body}");
    serde_json::from_str(&body).expect("POST /faults answers JSON")
}

fn heal(node: &Server) {
    let (code, body) = node.http("DELETE", "/faults", None);
    assert_eq!(code, 200, "DELETE /faults: {body}");
    let state: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        state,
        serde_json::json!({"block": [], "delay_ms": {}, "loss": {}, "clock_skew_ms": 0})
    );
}

#[test]
fn blocking_a_peer_stops_replication_both_ways_and_healing_restores_it() {
    let (dir_l, dir_r) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = Server::start_with_env(
        dir_l.path(),
        &[
            "--fault-injection",
            "--node-id",
            LEADER_ID,
            "--replica-lag-max-ms",
            "300",
            "--heartbeat-ms",
            "50",
        ],
        &[TESTING],
    );
    let upstream = format!("127.0.0.1:{}", leader.port);
    let replica = Server::start_with_env(
        dir_r.path(),
        &[
            "--replicaof",
            upstream.as_str(),
            "--fault-injection",
            "--node-id",
            REPLICA_ID,
            "--heartbeat-ms",
            "50",
        ],
        &[TESTING],
    );
    let (l, r) = (leader.port, replica.port);
    assert!(
        leader.log_text().contains("FAULT INJECTION IS ON"),
        "no start warning:\n{}",
        leader.log_text()
    );

    eprintln!("phase: control: the replica follows the leader and is in sync");
    set(l, "a", "1");
    wait_caught_up(l, r, CATCHUP_MAX);
    assert_eq!(get(r, "a"), "1");
    assert!(wait_until(CATCHUP_MAX, || replication_field(
        l,
        "in_sync_replicas"
    ) == "1"));
    let (code, body) = leader.http("GET", "/faults", None);
    assert_eq!(
        (code, body.as_str()),
        (
            200,
            r#"{"block":[],"delay_ms":{},"loss":{},"clock_skew_ms":0}"#
        )
    );

    eprintln!("phase: the leader blocks the replica: its link closes and new ones are refused");
    let state = post_faults(&leader, &format!(r#"{{"block": ["{REPLICA_ID}"]}}"#));
    assert_eq!(state["block"], serde_json::json!([REPLICA_ID]));
    let (_, body) = leader.http("GET", "/faults", None);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        state
    );
    set(l, "b", "2");
    assert_unseen(r, "b", "blocked on the leader");
    let gone = wait_until(CATCHUP_MAX, || {
        replication_field(l, "connected_slaves") == "0"
            && replication_field(l, "in_sync_replicas") == "0"
    });
    assert!(
        gone,
        "leader still counts the replica:\n{}",
        info(l, "replication")
    );
    assert!(leader
        .log_text()
        .contains(&format!("peer `{REPLICA_ID}` is blocked")));

    eprintln!("phase: DELETE /faults heals the leader; the replica catches up");
    heal(&leader);
    wait_caught_up(l, r, CATCHUP_MAX);
    assert_eq!(get(r, "b"), "2");
    assert!(wait_until(CATCHUP_MAX, || replication_field(
        l,
        "in_sync_replicas"
    ) == "1"));

    eprintln!("phase: the replica blocks every peer (`*`): it drops its link to the leader");
    post_faults(&replica, r#"{"block": ["*"]}"#);
    set(l, "c", "3");
    assert_unseen(r, "c", "blocked on the replica");
    assert!(wait_until(CATCHUP_MAX, || replication_field(
        r,
        "master_link_status"
    ) == "down"));
    assert!(replica
        .log_text()
        .contains(&format!("peer `{LEADER_ID}` is blocked")));
    heal(&replica);
    wait_caught_up(l, r, CATCHUP_MAX);
    assert_eq!(get(r, "c"), "3");

    eprintln!("phase: a delay on the replica holds the leader's frames back, in order");
    let delay = Duration::from_millis(400);
    post_faults(
        &replica,
        &format!(
            r#"{{"delay_ms": {{"{LEADER_ID}": {}}}}}"#,
            delay.as_millis()
        ),
    );
    let sent = Instant::now();
    set(l, "d", "4");
    set(l, "d", "5");
    assert!(wait_until(CATCHUP_MAX, || get(r, "d") != "(nil)"));
    let seen_after = sent.elapsed();
    assert!(
        seen_after >= delay,
        "the write reached the replica after {seen_after:?}, before the {delay:?} delay"
    );
    wait_caught_up(l, r, CATCHUP_MAX);
    assert_eq!(get(r, "d"), "5");

    eprintln!("phase: loss 1 on the replica drops its link at every frame from the leader");
    post_faults(&replica, &format!(r#"{{"loss": {{"{LEADER_ID}": 1.0}}}}"#));
    assert!(replica.wait_log("dropped (loss 1)", 1, CATCHUP_MAX));
    set(l, "e", "6");
    assert_unseen(r, "e", "loss 1 on the replica");
    heal(&replica);
    wait_caught_up(l, r, CATCHUP_MAX);
    common::assert_same_contents(l, r, "after every fault was healed");

    eprintln!("phase: bad settings are refused with 400 and change nothing");
    post_faults(&leader, r#"{"delay_ms": {"x": 5}}"#);
    let bad = [
        ("not json", "bad fault setting"),
        (r#"{"blok": ["x"]}"#, "unknown field `blok`"),
        (r#"{"loss": {"x": 2}}"#, "probability from 0 to 1"),
        (r#"{"delay_ms": {"x": 3600000}}"#, "at most 60000"),
        (r#"{"block": ["has space"]}"#, "not a node id"),
        (
            r#"{"clock_skew_ms": 3600001}"#,
            "at most 3600000 either way",
        ),
    ];
    for (json, needle) in bad {
        let (code, body) = leader.http("POST", "/faults", Some(json));
        assert_eq!(code, 400, "{json}: {body}");
        assert!(body.contains(needle), "{json}: {body}");
    }
    let (_, body) = leader.http("GET", "/faults", None);
    assert_eq!(
        body,
        r#"{"block":[],"delay_ms":{"x":5},"loss":{},"clock_skew_ms":0}"#
    );
}

#[test]
fn without_the_flag_there_is_no_faults_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    // The test setting alone enables nothing.
    let node = Server::start_with_env(dir.path(), &[], &[TESTING]);
    for (method, body) in [
        ("GET", None),
        ("POST", Some(r#"{"block": ["*"]}"#)),
        ("POST", Some(r#"{"clock_skew_ms": 60000}"#)),
        ("DELETE", None),
    ] {
        let (code, text) = node.http(method, "/faults", body);
        assert_eq!(code, 404, "{method} /faults {body:?}: {text}");
    }
    // The refused skew changed nothing: a key's TTL still counts from the real clock.
    set_px(node.port, "k", 100_000);
    let ttl = pttl(node.port, "k");
    assert!((95_000..=100_000).contains(&ttl), "PTTL {ttl}");
    let (code, status) = node.http_get("/status");
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["fault_injection"], serde_json::json!(false));
    assert!(!node.log_text().contains("FAULT INJECTION"));
}

/// `SET key v PX ms` on the node on `port`.
fn set_px(port: u16, key: &str, ms: u64) {
    let reply = Resp::connect(port).call(&["SET", key, "v", "PX", &ms.to_string()]);
    assert_eq!(reply, Frame::Simple("OK".into()), "SET {key} PX {ms}");
}

/// `PTTL key` on the node on `port`.
fn pttl(port: u16, key: &str) -> i64 {
    match Resp::connect(port).call(&["PTTL", key]) {
        Frame::Integer(n) => n,
        other => panic!("PTTL {key}: {other:?}"),
    }
}

#[test]
fn clock_skew_moves_ttls_and_healing_restores_the_clock() {
    // A key's deadline is fixed in wall time when it is written; a skewed clock moves its
    // remaining TTL by the skew, which is how skew reaches expiry and bounded staleness.
    const TTL_MS: i64 = 600_000;
    const SKEW_MS: i64 = 200_000;
    // Far more than the time the test's own steps take, far less than the skew.
    const SLACK_MS: i64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let node = Server::start_with_env(dir.path(), &["--fault-injection"], &[TESTING]);
    let p = node.port;
    set_px(p, "k", TTL_MS.unsigned_abs());
    let near = |got: i64, want: i64| (want - SLACK_MS..=want).contains(&got);
    assert!(near(pttl(p, "k"), TTL_MS), "PTTL {}", pttl(p, "k"));

    eprintln!("phase: the clock runs ahead: the key has {SKEW_MS} ms less to live");
    let state = post_faults(&node, &format!(r#"{{"clock_skew_ms": {SKEW_MS}}}"#));
    assert_eq!(state["clock_skew_ms"], serde_json::json!(SKEW_MS));
    let ttl = pttl(p, "k");
    assert!(
        near(ttl, TTL_MS - SKEW_MS),
        "PTTL {ttl} with skew +{SKEW_MS}"
    );

    eprintln!("phase: the clock runs behind: the key has {SKEW_MS} ms more to live");
    post_faults(&node, &format!(r#"{{"clock_skew_ms": -{SKEW_MS}}}"#));
    let ttl = pttl(p, "k");
    assert!(
        near(ttl, TTL_MS + SKEW_MS),
        "PTTL {ttl} with skew -{SKEW_MS}"
    );

    eprintln!("phase: a skew past the key's deadline expires it; healing brings it back");
    post_faults(
        &node,
        &format!(r#"{{"clock_skew_ms": {}}}"#, TTL_MS + SKEW_MS),
    );
    assert_eq!(
        pttl(p, "k"),
        -2,
        "the key outlived a clock past its deadline"
    );
    heal(&node);
    let ttl = pttl(p, "k");
    // Active expiry may have deleted it while the clock was ahead; if not, its TTL is whole.
    assert!(ttl == -2 || near(ttl, TTL_MS), "PTTL {ttl} after healing");
    set_px(p, "j", TTL_MS.unsigned_abs());
    let ttl = pttl(p, "j");
    assert!(
        near(ttl, TTL_MS),
        "PTTL {ttl} of a key written after healing"
    );
}
