//! Redis Sentinel's discovery commands on every node: a leader and a replica both name the
//! leader; after a manual switchover (`REPLICAOF NO ONE` on the replica, `REPLICAOF` on the old
//! leader) both name the new one. redis-py's `Sentinel` client, installed from PyPI into the
//! target directory by this test, finds the leader through them and writes to it, before and
//! after the switchover, and keeps writing through an automatic failover under the control
//! plane.

mod common;

use common::{is_error, text, wait_until, Frame, Server};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The redis-py release the test installs.
const REDIS_PY: &str = "redis==8.1.0";

fn sentinel(node: &Server, args: &[&str]) -> Frame {
    let mut full = vec!["SENTINEL"];
    full.extend_from_slice(args);
    node.resp().call(&full)
}

fn leader_port(node: &Server) -> Option<u16> {
    match sentinel(node, &["get-master-addr-by-name", "replikv"]) {
        Frame::Array(items) if items.len() == 2 => text(&items[1]).parse().ok(),
        _ => None,
    }
}

/// Installs redis-py (once per target directory) and returns the directory to put on
/// `PYTHONPATH`.
fn redis_py() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python-redis-py");
    if !dir.join("redis").is_dir() {
        let out = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--target"])
            .arg(&dir)
            .arg(REDIS_PY)
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "pip install {REDIS_PY} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

fn run_redis_py(deps: &PathBuf, expected: u16, key: &str, value: &str, ports: &[u16]) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/sentinel_discovery.py"
    );
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .args(["replikv", &expected.to_string(), key, value])
        .args(ports.iter().map(u16::to_string))
        .env("PYTHONPATH", deps);
    let out = cmd.output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("redis-py: {stdout}");
    assert!(
        out.status.success(),
        "redis-py's Sentinel did not find the leader on {expected}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_node_names_the_leader_as_sentinel_does_and_follows_a_switchover() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let flags = ["--fsync", "interval"];
    let leader = Server::start(dirs[0].path(), &flags);
    let replica = Server::start_replica(dirs[1].path(), leader.port, &flags);
    let listed = wait_until(
        Duration::from_secs(20),
        || matches!(sentinel(&leader, &["replicas", "replikv"]), Frame::Array(r) if r.len() == 1),
    );
    assert!(listed, "the leader lists no replica");

    eprintln!("phase: both nodes name the leader");
    assert_eq!(leader_port(&leader), Some(leader.port));
    assert_eq!(leader_port(&replica), Some(leader.port));
    assert_eq!(
        sentinel(&leader, &["get-master-addr-by-name", "other"]),
        Frame::Null
    );
    let masters = sentinel(&leader, &["masters"]);
    let Frame::Array(masters) = masters else {
        panic!("SENTINEL masters gave {masters:?}");
    };
    let Frame::Array(state) = &masters[0] else {
        panic!("a master's state is a flat array in RESP2: {masters:?}");
    };
    let fields: Vec<String> = state.iter().map(text).collect();
    let get = |k: &str| {
        fields
            .chunks(2)
            .find(|kv| kv[0] == k)
            .map(|kv| kv[1].clone())
    };
    assert_eq!(get("name").as_deref(), Some("replikv"));
    assert_eq!(get("flags").as_deref(), Some("master"));
    assert_eq!(get("port"), Some(leader.port.to_string()));
    assert_eq!(get("num-slaves").as_deref(), Some("1"));
    let Frame::Array(replicas) = sentinel(&leader, &["replicas", "replikv"]) else {
        panic!("SENTINEL replicas is an array");
    };
    let Frame::Array(r) = &replicas[0] else {
        panic!("a replica's state is a flat array");
    };
    let r: Vec<String> = r.iter().map(text).collect();
    assert!(
        r.windows(2)
            .any(|kv| kv[0] == "port" && kv[1] == replica.port.to_string()),
        "{r:?}"
    );
    assert!(is_error(
        &sentinel(&leader, &["master", "other"]),
        "ERR No such master"
    ));
    assert!(is_error(
        &sentinel(&leader, &["bogus"]),
        "ERR unknown subcommand"
    ));
    assert!(is_error(
        &sentinel(&leader, &["get-master-addr-by-name"]),
        "ERR wrong number of arguments"
    ));

    let deps = redis_py();
    let ports = [leader.port, replica.port];
    run_redis_py(&deps, leader.port, "before", "1", &ports);

    eprintln!("phase: switchover: the replica leads, the old leader follows it");
    assert_eq!(
        text(&replica.resp().call(&["REPLICAOF", "NO", "ONE"])),
        "OK"
    );
    let port = replica.port.to_string();
    assert_eq!(
        text(
            &leader
                .resp()
                .call(&["REPLICAOF", "127.0.0.1", port.as_str()])
        ),
        "OK"
    );
    assert!(wait_until(Duration::from_secs(20), || {
        leader_port(&leader) == Some(replica.port) && leader_port(&replica) == Some(replica.port)
    }));
    run_redis_py(&deps, replica.port, "after", "2", &ports);
    assert_eq!(text(&replica.resp().call(&["GET", "before"])), "1");
}

/// redis-py's `Sentinel` client keeps writing while the control plane replaces a killed
/// leader: it finds the new leader through the nodes, and every write it was told succeeded
/// is on the new leader.
#[test]
fn redis_py_sentinel_writes_through_an_automatic_failover() {
    let deps = redis_py();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let paths: Vec<&std::path::Path> = dirs.iter().map(|d| d.path()).collect();
    let mut nodes = Server::start_controlled(&paths, &["--ack", "quorum", "--cluster-size", "3"]);
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let mut first = None;
    assert!(wait_until(Duration::from_secs(20), || {
        first = leader_port(&nodes[0]);
        first.is_some()
    }));
    let first = first.unwrap_or_default();
    let stop = dirs[0].path().join("stop");
    let out_path = dirs[0].path().join("redis-py.out");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/sentinel_through_failover.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .args(["replikv", stop.to_str().unwrap(), "40"])
        .args(ports.iter().map(u16::to_string))
        .env("PYTHONPATH", &deps)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .spawn()
        .expect("python3 runs");
    let said = || std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(20), || said().contains("acked")),
        "redis-py wrote nothing:\n{}",
        said()
    );
    eprintln!("phase: kill the leader on port {first}");
    nodes.iter_mut().find(|n| n.port == first).unwrap().kill9();
    let moved = wait_until(Duration::from_secs(20), || {
        let text = said();
        let after_move = text
            .lines()
            .skip_while(|l| !l.starts_with("master ") || l.ends_with(&format!(":{first}")))
            .filter(|l| l.starts_with("acked"))
            .count();
        after_move >= 20
    });
    std::fs::write(&stop, b"").unwrap();
    let status = child.wait().expect("redis-py exits");
    let text = said();
    assert!(
        moved,
        "redis-py did not write through the new leader:\n{text}"
    );
    assert!(status.success(), "{text}");
    let second: u16 = text
        .lines()
        .filter_map(|l| l.strip_prefix("master "))
        .filter_map(|a| a.rsplit(':').next()?.parse().ok())
        .next_back()
        .unwrap();
    assert_ne!(second, first);
    let acked: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("acked "))
        .collect();
    let mut new_leader = nodes.iter().find(|n| n.port == second).unwrap().resp();
    for key in &acked {
        assert_eq!(
            new_leader.call(&["GET", key]),
            Frame::Bulk(bytes::Bytes::from_static(b"v")),
            "{key} was acknowledged and is not on the new leader"
        );
    }
    eprintln!(
        "redis-py: {} writes acknowledged across the failover",
        acked.len()
    );
}
