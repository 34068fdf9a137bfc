//! Automatic failover under the control plane (`--control-peers`): the voters elect a leader,
//! replace one that dies or is cut off with the most up-to-date replica, fence the old one
//! (it stops acknowledging before the new one starts), and take it back as a replica.

mod common;

use common::{assert_same_contents, is_error, text, wait_until, Frame, Resp, Server};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TESTING: (&str, &str) = ("REPLIKV_I_AM_TESTING", "1");

/// The leader's port as the answering nodes' maps name it, when a majority of them agree.
fn leader_port(ports: &[u16]) -> Option<u16> {
    let mut named = Vec::new();
    for &p in ports {
        let Ok(mut c) = Resp::try_connect("127.0.0.1", p) else {
            continue;
        };
        if let Ok(Frame::Array(items)) =
            c.try_call(&["SENTINEL", "get-master-addr-by-name", "replikv"])
        {
            if let Some(port) = items.get(1).and_then(|f| text(f).parse::<u16>().ok()) {
                named.push(port);
            }
        }
    }
    let best = named
        .iter()
        .copied()
        .max_by_key(|p| named.iter().filter(|q| *q == p).count())?;
    let votes = named.iter().filter(|q| **q == best).count();
    (votes * 2 > ports.len()).then_some(best)
}

fn role_of(port: u16) -> Option<String> {
    let mut c = Resp::try_connect("127.0.0.1", port).ok()?;
    match c.try_call(&["ROLE"]).ok()? {
        Frame::Array(items) => items.first().map(text),
        _ => None,
    }
}

/// Waits until a majority names a leader that says it is one, and it takes a write.
fn wait_leader(ports: &[u16], not: Option<u16>, within: Duration) -> u16 {
    let mut found = None;
    let ok = wait_until(within, || {
        let Some(p) = leader_port(ports) else {
            return false;
        };
        if Some(p) == not || role_of(p).as_deref() != Some("master") {
            return false;
        }
        let Ok(mut c) = Resp::try_connect("127.0.0.1", p) else {
            return false;
        };
        found = Some(p);
        matches!(c.try_call(&["SET", "probe", "1"]), Ok(Frame::Simple(s)) if s == "OK")
    });
    assert!(
        ok,
        "no leader took a write within {within:?} (last named {found:?})"
    );
    found.unwrap_or_default()
}

/// Writes `k<i>` keys until `stop`, following the leader; returns the keys acknowledged.
fn writer(ports: Vec<u16>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut acked = Vec::new();
        let mut conn: Option<Resp> = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        for i in 0..1_000_000u32 {
            if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                break;
            }
            if conn.is_none() {
                conn = leader_port(&ports).and_then(|p| Resp::try_connect("127.0.0.1", p).ok());
                if conn.is_none() {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
            let key = format!("k{i}");
            let Some(c) = conn.as_mut() else { continue };
            match c.try_call(&["SET", key.as_str(), "v"]) {
                Ok(Frame::Simple(s)) if s == "OK" => acked.push(key),
                // Refused or unknown outcome: find the leader again.
                _ => {
                    conn = None;
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        acked
    })
}

/// Three controlled nodes under `quorum` with fault injection and the write timeout given.
fn start_with_faults(paths: &[&std::path::Path], write_timeout_ms: &str) -> Vec<Server> {
    start_with_faults_and(paths, write_timeout_ms, &[])
}

/// [`start_with_faults`] with `extra` flags for every node.
fn start_with_faults_and(
    paths: &[&std::path::Path],
    write_timeout_ms: &str,
    extra: &[&str],
) -> Vec<Server> {
    let mut args = vec![
        "--ack",
        "quorum",
        "--cluster-size",
        "3",
        "--write-ack-timeout-ms",
        write_timeout_ms,
        "--fault-injection",
    ];
    args.extend_from_slice(extra);
    Server::start_controlled_with_env(paths, &args, &[TESTING])
}

fn missing(port: u16, keys: &[String]) -> Vec<String> {
    let mut c = Resp::connect(port);
    keys.iter()
        .filter(|k| c.call(&["GET", k.as_str()]) != Frame::Bulk(bytes::Bytes::from_static(b"v")))
        .cloned()
        .collect()
}

fn node_by_port(nodes: &mut [Server], port: u16) -> &mut Server {
    nodes
        .iter_mut()
        .find(|n| n.port == port)
        .expect("a node on that port")
}

#[test]
fn a_killed_leader_is_replaced_and_no_acknowledged_write_is_lost_under_quorum() {
    killed_leader_is_replaced("quorum");
}

/// Under `sync` the election takes only from the map's in-sync set, which the leader keeps
/// current through the control plane.
#[test]
fn a_killed_leader_is_replaced_and_no_acknowledged_write_is_lost_under_sync() {
    killed_leader_is_replaced("sync");
}

fn killed_leader_is_replaced(mode: &str) {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let paths: Vec<&std::path::Path> = dirs.iter().map(|d| d.path()).collect();
    let mut nodes = Server::start_controlled(&paths, &["--ack", mode, "--cluster-size", "3"]);
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let first = wait_leader(&ports, None, Duration::from_secs(20));

    let stop = Arc::new(AtomicBool::new(false));
    let writes = writer(ports.clone(), Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(800));
    eprintln!("phase: kill the leader on port {first}");
    node_by_port(&mut nodes, first).kill9();
    let killed_at = Instant::now();
    let second = wait_leader(&ports, Some(first), Duration::from_secs(20));
    eprintln!(
        "phase: port {second} leads, {} ms after the kill",
        killed_at.elapsed().as_millis()
    );
    std::thread::sleep(Duration::from_millis(800));
    stop.store(true, Ordering::Relaxed);
    let acked = writes.join().unwrap();
    assert!(
        acked.len() > 20,
        "too few writes went through: {}",
        acked.len()
    );
    assert_eq!(
        missing(second, &acked),
        Vec::<String>::new(),
        "acknowledged writes lost"
    );

    eprintln!("phase: the old leader comes back as a replica");
    node_by_port(&mut nodes, first).restart();
    assert!(
        wait_until(Duration::from_secs(20), || role_of(first).as_deref()
            == Some("slave")),
        "the old leader did not rejoin as a replica"
    );
    let mut c = Resp::connect(second);
    assert_eq!(text(&c.call(&["SET", "after", "rejoin"])), "OK");
    assert!(wait_until(Duration::from_secs(20), || {
        Resp::connect(first).call(&["GET", "after"])
            == Frame::Bulk(bytes::Bytes::from_static(b"rejoin"))
    }));
    assert_same_contents(second, first, "the rejoined old leader");
    let status = node_by_port(&mut nodes, second).http_get("/status").1;
    assert!(status.contains("\"elected\""), "{status}");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let second_id = format!("n{}", ports.iter().position(|p| *p == second).unwrap());
    assert_eq!(status["control"]["map"]["leader"], second_id.as_str());
    // The leader keeps the map's in-sync set current: the rejoined node is in it again.
    let first_id = format!("n{}", ports.iter().position(|p| *p == first).unwrap());
    assert!(
        wait_until(Duration::from_secs(20), || {
            let st: serde_json::Value =
                serde_json::from_str(&node_by_port(&mut nodes, second).http_get("/status").1)
                    .unwrap_or_default();
            st["control"]["map"]["in_sync"]
                .as_array()
                .is_some_and(|s| s.iter().any(|id| *id == first_id.as_str()))
        }),
        "the rejoined node never got back into the map's in-sync set"
    );
}

#[test]
fn a_leader_cut_off_from_the_others_stops_acknowledging_and_is_replaced() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let paths: Vec<&std::path::Path> = dirs.iter().map(|d| d.path()).collect();
    let nodes = start_with_faults(&paths, "2000");
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let first = wait_leader(&ports, None, Duration::from_secs(20));
    let cut = nodes.iter().find(|n| n.port == first).unwrap();
    let others: Vec<&Server> = nodes.iter().filter(|n| n.port != first).collect();

    eprintln!("phase: cut the leader on port {first} off from both others");
    let block = |node: &Server, peers: &[&str]| {
        let spec = format!(r#"{{"block": {peers:?}}}"#);
        let (code, body) = node.http("POST", "/faults", Some(&spec));
        assert_eq!(code, 200, "{body}");
    };
    let id_of = |s: &Server| format!("n{}", ports.iter().position(|p| *p == s.port).unwrap());
    let cut_id = id_of(cut);
    let other_ids: Vec<String> = others.iter().map(|s| id_of(s)).collect();
    block(cut, &[other_ids[0].as_str(), other_ids[1].as_str()]);
    for o in &others {
        block(o, &[cut_id.as_str()]);
    }
    let cut_at = Instant::now();

    // The cut-off leader acknowledges nothing once its lease has run out (400 ms by default),
    // and a write sent to it does not succeed.
    let mut old = Resp::connect(first);
    std::thread::sleep(Duration::from_millis(600));
    let reply = old.call(&["SET", "split", "old"]);
    assert!(
        is_error(&reply, "TRYAGAIN") || is_error(&reply, "READONLY"),
        "the cut-off leader answered {reply:?} {} ms after the cut",
        cut_at.elapsed().as_millis()
    );

    let other_ports: Vec<u16> = others.iter().map(|o| o.port).collect();
    let second = wait_leader(&other_ports, None, Duration::from_secs(20));
    assert_ne!(second, first);
    let mut new = Resp::connect(second);
    assert_eq!(text(&new.call(&["SET", "split", "new"])), "OK");

    eprintln!("phase: heal; the old leader steps down and follows");
    for n in &nodes {
        let (code, body) = n.http("DELETE", "/faults", None);
        assert_eq!(code, 200, "{body}");
    }
    assert!(
        wait_until(Duration::from_secs(20), || role_of(first).as_deref()
            == Some("slave")),
        "the old leader did not step down"
    );
    assert!(wait_until(Duration::from_secs(20), || {
        Resp::connect(first).call(&["GET", "split"])
            == Frame::Bulk(bytes::Bytes::from_static(b"new"))
    }));
}

/// `FAILOVER` (and `replikv failover --to NODE`) under the control plane: the leader pauses
/// writes, waits until the target holds every entry, gives its lease up and has the
/// controller elect the target; no acknowledged write is lost.
#[test]
fn a_switchover_goes_through_the_control_plane_without_losing_a_write() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let paths: Vec<&std::path::Path> = dirs.iter().map(|d| d.path()).collect();
    let nodes = Server::start_controlled(&paths, &["--ack", "quorum", "--cluster-size", "3"]);
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let first = wait_leader(&ports, None, Duration::from_secs(20));

    let stop = Arc::new(AtomicBool::new(false));
    let writes = writer(ports.clone(), Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(500));
    eprintln!("phase: FAILOVER on the leader, port {first}");
    let reply = Resp::connect(first).call(&["FAILOVER", "TIMEOUT", "5000"]);
    assert_eq!(text(&reply), "OK", "{reply:?}");
    let second = wait_leader(&ports, Some(first), Duration::from_secs(10));
    assert_eq!(role_of(first).as_deref(), Some("slave"));

    eprintln!("phase: replikv failover --to back to the first leader's node id");
    let first_id = format!("n{}", ports.iter().position(|p| *p == first).unwrap());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_replikv"))
        .args([
            "failover",
            "--via",
            &format!("127.0.0.1:{second}"),
            "--to",
            &first_id,
        ])
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains(&format!(":{first} leads")), "{said}");
    wait_leader(&ports, Some(second), Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let acked = writes.join().unwrap();
    assert!(
        acked.len() > 20,
        "too few writes went through: {}",
        acked.len()
    );
    assert_eq!(
        missing(first, &acked),
        Vec::<String>::new(),
        "acknowledged writes lost"
    );
    let status = nodes[0].http_get("/status").1;
    assert!(status.contains("switchover"), "{status}");
}

/// Membership changes online: a fourth node joins (`REPLIKV MEMBER ADD`), receives the data,
/// becomes a voter (`REPLIKV MEMBER VOTER`), a founder leaves (`REPLIKV MEMBER REMOVE`), and
/// the cluster still fails over when its leader is killed.
#[test]
fn a_node_joins_becomes_a_voter_a_founder_leaves_and_failover_still_works() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let paths: Vec<&std::path::Path> = dirs.iter().take(3).map(|d| d.path()).collect();
    let mut nodes = Server::start_controlled(&paths, &["--ack", "quorum", "--cluster-size", "3"]);
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let first = wait_leader(&ports, None, Duration::from_secs(20));
    let mut leader = Resp::connect(first);
    for i in 0..100 {
        assert_eq!(text(&leader.call(&["SET", &format!("k{i}"), "v"])), "OK");
    }
    let founders = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("n{i}=127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let joiner = Server::start(
        dirs[3].path(),
        &[
            "--node-id",
            "n3",
            "--control-peers",
            &founders,
            "--ack",
            "quorum",
            "--cluster-size",
            "3",
        ],
    );
    eprintln!("phase: add n3 on port {}", joiner.port);
    let addr = format!("127.0.0.1:{}", joiner.port);
    let reply = Resp::connect(ports[1]).call(&["REPLIKV", "MEMBER", "ADD", "n3", &addr]);
    assert_eq!(text(&reply), "OK", "{reply:?}");
    assert!(
        wait_until(Duration::from_secs(20), || {
            Resp::connect(joiner.port).call(&["GET", "k99"])
                == Frame::Bulk(bytes::Bytes::from_static(b"v"))
        }),
        "the new member did not receive the data:\n{}",
        joiner.log_text()
    );
    let reply = Resp::connect(ports[2]).call(&["REPLIKV", "MEMBER", "VOTER", "n3"]);
    assert_eq!(text(&reply), "OK", "{reply:?}");

    let leaving = *ports.iter().find(|p| **p != first).unwrap();
    let leaving_id = format!("n{}", ports.iter().position(|p| *p == leaving).unwrap());
    // A tree: n3 replicates from the founder that stays, by the map.
    let middle = *ports
        .iter()
        .find(|p| **p != first && **p != leaving)
        .unwrap();
    let middle_id = format!("n{}", ports.iter().position(|p| *p == middle).unwrap());
    let reply = Resp::connect(first).call(&["REPLIKV", "MEMBER", "UPSTREAM", "n3", &middle_id]);
    assert_eq!(text(&reply), "OK", "{reply:?}");
    assert!(
        wait_until(Duration::from_secs(10), || {
            match Resp::connect(joiner.port).call(&["ROLE"]) {
                Frame::Array(items) => items.get(2).map(text) == Some(middle.to_string()),
                _ => false,
            }
        }),
        "n3 does not replicate from {middle_id}"
    );
    assert_eq!(text(&leader.call(&["SET", "tree", "yes"])), "OK");
    assert!(wait_until(Duration::from_secs(10), || {
        Resp::connect(joiner.port).call(&["GET", "tree"])
            == Frame::Bulk(bytes::Bytes::from_static(b"yes"))
    }));
    eprintln!("phase: remove {leaving_id}");
    let reply = Resp::connect(first).call(&["REPLIKV", "MEMBER", "REMOVE", &leaving_id]);
    assert_eq!(text(&reply), "OK", "{reply:?}");
    let first_id = format!("n{}", ports.iter().position(|p| *p == first).unwrap());
    let refused = Resp::connect(first).call(&["REPLIKV", "MEMBER", "REMOVE", &first_id]);
    assert!(
        is_error(&refused, "ERR"),
        "removing the leader: {refused:?}"
    );
    node_by_port(&mut nodes, leaving).kill9();

    eprintln!("phase: kill the leader; the remaining voters fail over");
    node_by_port(&mut nodes, first).kill9();
    let rest: Vec<u16> = ports
        .iter()
        .copied()
        .filter(|p| *p != first && *p != leaving)
        .chain([joiner.port])
        .collect();
    let second = wait_leader(&rest, Some(first), Duration::from_secs(20));
    assert_eq!(
        Resp::connect(second).call(&["GET", "k42"]),
        Frame::Bulk(bytes::Bytes::from_static(b"v"))
    );
}

/// A leader killed and restarted before the controller replaced it finds a map that still
/// names it. It does not lead again in that epoch, and it does not tell clients it leads:
/// Sentinel's question gets no leader from it, and `ROLE` says replica, until an election.
#[test]
fn a_restarted_leader_does_not_name_itself_before_a_new_election() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let paths: Vec<&std::path::Path> = dirs.iter().map(|d| d.path()).collect();
    // A long lease: the restart comes well before the controller may replace the leader.
    let mut nodes = start_with_faults_and(
        &paths,
        "3000",
        &["--lease-ms", "4000", "--election-ticks", "100"],
    );
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let first = wait_leader(&ports, None, Duration::from_secs(30));
    assert_eq!(text(&Resp::connect(first).call(&["SET", "k", "v"])), "OK");
    let killed = Instant::now();
    let node = node_by_port(&mut nodes, first);
    node.kill9();
    node.restart();
    let restarted_in = killed.elapsed();
    let named = Resp::connect(first).call(&["SENTINEL", "get-master-addr-by-name", "replikv"]);
    let role = role_of(first);
    if restarted_in < Duration::from_millis(3_000) {
        let names_itself = matches!(&named, Frame::Array(items)
            if items.get(1).map(text) == Some(first.to_string()));
        assert!(
            !names_itself,
            "the restarted node names itself leader: {named:?}"
        );
        assert_ne!(
            role.as_deref(),
            Some("master"),
            "ROLE of the restarted node"
        );
    } else {
        eprintln!("the restart took {restarted_in:?}: past the lease, nothing to check");
    }
    // The controller then elects a leader again, in a new epoch, and writes go on.
    let leader = wait_leader(&ports, None, Duration::from_secs(30));
    assert_eq!(text(&Resp::connect(leader).call(&["GET", "k"])), "v");
}

/// Removing a member under `quorum` waits until the others hold every write acknowledged
/// with its help: refused while the only other replica is paused, done once it is back, and
/// the remaining replica then holds every acknowledged write.
#[test]
fn a_member_is_removed_only_once_the_others_hold_every_acknowledged_write() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let paths: Vec<&std::path::Path> = dirs.iter().map(|d| d.path()).collect();
    let mut nodes = start_with_faults(&paths, "5000");
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let first = wait_leader(&ports, None, Duration::from_secs(20));
    let id_of = |port: u16| format!("n{}", ports.iter().position(|p| *p == port).unwrap());
    let others: Vec<u16> = ports.iter().copied().filter(|p| *p != first).collect();
    let (leaving, staying) = (others[0], others[1]);
    let mut c = Resp::connect(first);
    assert_eq!(text(&c.call(&["SET", "before", "1"])), "OK");
    eprintln!(
        "phase: pause {}; writes are acknowledged with {}'s copy alone",
        id_of(staying),
        id_of(leaving)
    );
    let signal = |port: u16, sig: &str| {
        let node = nodes.iter().find(|n| n.port == port).unwrap();
        let pid = node.child.as_ref().unwrap().id().to_string();
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    signal(staying, "-STOP");
    let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    for k in &keys {
        assert_eq!(text(&c.call(&["SET", k, "v"])), "OK");
    }
    let leader_now = wait_leader(&[first, leaving], None, Duration::from_secs(10));
    assert_eq!(
        leader_now, first,
        "the leader changed while a replica was paused"
    );
    let refused = c.call(&["REPLIKV", "MEMBER", "REMOVE", &id_of(leaving)]);
    signal(staying, "-CONT");
    assert!(
        is_error(&refused, "ERR"),
        "removed while {} lacked acknowledged writes: {refused:?}",
        id_of(staying)
    );
    let elsewhere = Resp::connect(leaving).call(&["REPLIKV", "MEMBER", "REMOVE", &id_of(leaving)]);
    assert!(
        is_error(&elsewhere, "ERR send REPLIKV MEMBER REMOVE to the leader"),
        "{elsewhere:?}"
    );

    eprintln!("phase: resumed; the removal goes through");
    let reply = c.call(&["REPLIKV", "MEMBER", "REMOVE", &id_of(leaving)]);
    assert_eq!(text(&reply), "OK", "{reply:?}");
    // The one replica left, which any election now depends on, holds every write that was
    // acknowledged with the removed member's copy.
    node_by_port(&mut nodes, leaving).kill9();
    let lost = missing(staying, &keys);
    assert!(
        lost.is_empty(),
        "acknowledged writes the remaining replica lacks: {lost:?}"
    );
    // And writes go on, acknowledged by it.
    assert_eq!(text(&c.call(&["SET", "after", "1"])), "OK");
}

/// A deposed leader that wrote entries no one else has (never acknowledged: `quorum` found no
/// replica for them) comes back: it cuts its log back to the last entry it shares with the new
/// leader, counts what it discarded, and follows without a full resync.
#[test]
fn a_returning_leader_cuts_its_unacknowledged_tail_instead_of_taking_a_snapshot() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let paths: Vec<&std::path::Path> = dirs.iter().map(|d| d.path()).collect();
    // A lease long enough that the writes sent right after the cut start before it runs
    // out, however loaded the machine is.
    let nodes = start_with_faults_and(
        &paths,
        "1500",
        &["--lease-ms", "1500", "--election-ticks", "40"],
    );
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let first = wait_leader(&ports, None, Duration::from_secs(20));
    let mut c = Resp::connect(first);
    for i in 0..50 {
        assert_eq!(text(&c.call(&["SET", &format!("k{i}"), "v"])), "OK");
    }
    let id_of = |port: u16| format!("n{}", ports.iter().position(|p| *p == port).unwrap());
    let old = nodes.iter().find(|n| n.port == first).unwrap();
    let others: Vec<&Server> = nodes.iter().filter(|n| n.port != first).collect();
    let block = |node: &Server, peers: Vec<String>| {
        let spec = serde_json::json!({ "block": peers }).to_string();
        let (code, body) = node.http("POST", "/faults", Some(&spec));
        assert_eq!(code, 200, "{body}");
    };
    eprintln!("phase: cut the leader off, and write to it at once");
    block(old, others.iter().map(|o| id_of(o.port)).collect());
    for o in &others {
        block(o, vec![id_of(first)]);
    }
    let mut pipeline = Vec::new();
    for i in 0..20 {
        pipeline.push(vec![format!("SET"), format!("lost{i}"), "x".to_string()]);
    }
    let replies = c.pipeline(&pipeline).unwrap();
    assert!(
        replies.iter().all(|r| matches!(r, Frame::Error(_))),
        "the cut-off leader acknowledged a write: {replies:?}"
    );
    let other_ports: Vec<u16> = others.iter().map(|o| o.port).collect();
    let second = wait_leader(&other_ports, None, Duration::from_secs(20));
    let mut new = Resp::connect(second);
    assert_eq!(text(&new.call(&["SET", "after", "failover"])), "OK");

    eprintln!("phase: heal; the old leader cuts its tail and follows");
    for n in &nodes {
        let (code, body) = n.http("DELETE", "/faults", None);
        assert_eq!(code, 200, "{body}");
    }
    assert!(
        wait_until(Duration::from_secs(20), || {
            Resp::connect(first).call(&["GET", "after"])
                == Frame::Bulk(bytes::Bytes::from_static(b"failover"))
        }),
        "the old leader did not catch up:\n{}",
        old.log_text()
    );
    assert_eq!(Resp::connect(first).call(&["GET", "lost0"]), Frame::Null);
    let status: serde_json::Value = serde_json::from_str(&old.http_get("/status").1).unwrap();
    let kinds: Vec<&str> = status["replication"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"truncated"),
        "{kinds:?}\n{}",
        old.log_text()
    );
    assert!(!kinds.contains(&"snapshot_installed"), "{kinds:?}");
    let discarded = status["log"]["entries_truncated"].as_u64().unwrap_or(0);
    assert!(
        (1..=20).contains(&discarded),
        "discarded {discarded}: {status}"
    );
    let detail = status["replication"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "truncated")
        .map(|e| e["detail"].to_string())
        .unwrap_or_default();
    eprintln!("truncated: {detail}");
    let metrics = old.http_get("/metrics").1;
    assert!(
        metrics.contains("replikv_log_entries_truncated_total"),
        "{metrics}"
    );
    common::assert_same_contents(second, first, "the old leader after its cut");
}
