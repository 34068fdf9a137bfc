//! Bad peers on the client port: each is refused with a logged reason, only its link is closed,
//! and the node keeps serving clients (docs/design/peer-protocol.md: "Any error closes the link
//! and never the node"; ARCHITECTURE.md: a node never accepts replication from an epoch lower
//! than the highest it has seen).

mod common;

use common::{now_ms, peer_transcript, text, wait_until, Frame, PeerConn, Server};
use replikv_core::{Command, Epoch, Expiry, LogPosition, Lsn};
use replikv_proto::{auth_mac, verify_mac, AuthRole, PeerMessage, PeerRecord};
use replikv_proto::{PEER_MAGIC, PEER_PROTOCOL_VERSION};
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

const SECRET: &str = "the-cluster-secret-0123456789";
const WRONG_SECRET: &str = "not-the-secret-9876543210";
/// Bound on the node closing a link it refused.
const CLOSE_MAX: Duration = Duration::from_secs(10);

/// The node answers PING, takes a write and reads it back.
fn assert_serves(node: &Server, what: &str) {
    let mut c = common::Resp::try_connect(&node.host, node.port)
        .unwrap_or_else(|e| panic!("{what}: cannot connect: {e}"));
    assert_eq!(text(&c.call(&["PING"])), "PONG", "{what}");
    let key = format!("alive:{}", now_ms());
    assert_eq!(text(&c.call(&["SET", key.as_str(), "yes"])), "OK", "{what}");
    assert_eq!(text(&c.call(&["GET", key.as_str()])), "yes", "{what}");
}

/// Sends `Hello` and reads the `Challenge`: (client nonce, server nonce, server id).
fn hello(link: &mut PeerConn, client_id: &str) -> ([u8; 32], [u8; 32], String) {
    let client_nonce = [7u8; 32];
    link.send(&PeerMessage::Hello {
        protocol_version: PEER_PROTOCOL_VERSION,
        cluster_name: "replikv".into(),
        node_id: client_id.into(),
        nonce: client_nonce,
    });
    match link.recv(Duration::from_secs(10)) {
        Ok(PeerMessage::Challenge { nonce, node_id }) => (client_nonce, nonce, node_id),
        other => panic!("expected Challenge, got {other:?}"),
    }
}

#[test]
fn peer_with_the_wrong_cluster_secret_is_refused_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let node = Server::start(dir.path(), &["--cluster-secret", SECRET]);

    eprintln!("phase: control: the right secret passes the handshake (the test's MACs are right)");
    let mut link = PeerConn::connect(node.port);
    let (cn, sn, server_id) = hello(&mut link, "test-peer");
    let t = |role| peer_transcript(role, "replikv", "test-peer", &cn, &server_id, &sn);
    link.send(&PeerMessage::Auth {
        mac: auth_mac(SECRET.as_bytes(), &t(AuthRole::Client)),
    });
    match link.recv(Duration::from_secs(10)) {
        Ok(PeerMessage::Auth { mac }) => assert!(
            verify_mac(SECRET.as_bytes(), &t(AuthRole::Server), &mac),
            "the node's Auth does not prove the secret"
        ),
        other => panic!("expected the node's Auth, got {other:?}"),
    }
    drop(link);

    eprintln!(
        "phase: a peer proving another secret is refused, the link closed, the reason logged"
    );
    let refusals = node.log_count("refused a peer link");
    let mut link = PeerConn::connect(node.port);
    let (cn, sn, server_id) = hello(&mut link, "intruder");
    let t = |role| peer_transcript(role, "replikv", "intruder", &cn, &server_id, &sn);
    link.send(&PeerMessage::Auth {
        mac: auth_mac(WRONG_SECRET.as_bytes(), &t(AuthRole::Client)),
    });
    let (closed, seen) = link.drain_until_closed(CLOSE_MAX);
    assert!(closed, "the node kept the link open; it sent {seen:?}");
    assert!(
        seen.iter().all(|m| !matches!(m, PeerMessage::Auth { .. })),
        "the node answered a wrong MAC with its own Auth: {seen:?}"
    );
    assert!(
        seen.iter().any(
            |m| matches!(m, PeerMessage::Refuse { reason } if reason.contains("authentication failed"))
        ),
        "no Refuse with a reason: {seen:?}"
    );
    assert!(
        node.wait_log("refused a peer link", refusals + 1, CLOSE_MAX),
        "no refusal logged:\n{}",
        node.log_text()
    );
    assert!(
        node.log_text()
            .contains("could not prove the cluster secret"),
        "the refusal does not say why:\n{}",
        node.log_text()
    );
    assert_serves(&node, "after a wrong secret");
}

#[test]
fn garbled_frames_close_the_link_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let node = Server::start(dir.path(), &[]);
    let mut hello_frame = bytes::BytesMut::new();
    replikv_proto::encode_frame(
        &PeerMessage::Hello {
            protocol_version: PEER_PROTOCOL_VERSION,
            cluster_name: "replikv".into(),
            node_id: "garbler".into(),
            nonce: [1; 32],
        },
        &mut hello_frame,
    )
    .unwrap();
    let mut bad_checksum = hello_frame.to_vec();
    let last = bad_checksum.len() - 1;
    bad_checksum[last] ^= 0x5a;
    let mut junk = PEER_MAGIC.to_vec();
    junk.extend((0u8..60).map(|i| i.wrapping_mul(37) ^ 0xa5));
    let mut huge = hello_frame[..16].to_vec();
    huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    let cases: [(&str, Vec<u8>); 3] = [
        ("magic then junk", junk),
        (
            "a Hello with a flipped body byte (bad checksum)",
            bad_checksum,
        ),
        ("a header declaring a 4 GiB control body", huge),
    ];
    for (what, bytes) in cases {
        eprintln!("phase: {what}: the link is closed and the reason logged");
        let refusals = node.log_count("refused a peer link");
        let mut link = PeerConn::connect(node.port);
        std::io::Write::write_all(&mut link.stream, &bytes).unwrap();
        let started = Instant::now();
        let (closed, seen) = link.drain_until_closed(CLOSE_MAX);
        assert!(
            closed,
            "{what}: the link stayed open; the node sent {seen:?}"
        );
        eprintln!("{what}: closed after {:?}", started.elapsed());
        assert!(
            node.wait_log("refused a peer link", refusals + 1, CLOSE_MAX),
            "{what}: no refusal logged:\n{}",
            node.log_text()
        );
        assert_serves(&node, what);
    }
    assert!(
        node.log_text().contains("bad frame"),
        "the refusals do not name a bad frame:\n{}",
        node.log_text()
    );
}

/// A connection that sends part of the peer magic and then closes (or says nothing more) must
/// not be held by the node forever.
#[test]
fn partial_peer_magic_then_close_is_let_go() {
    let dir = tempfile::tempdir().unwrap();
    let node = Server::start(dir.path(), &[]);
    let before = connected_clients(&node);
    for prefix in [&b"R"[..], b"RK", b"RKV"] {
        let mut link = PeerConn::connect(node.port);
        std::io::Write::write_all(&mut link.stream, prefix).unwrap();
        link.stream.shutdown(std::net::Shutdown::Write).unwrap();
        let (closed, _) = link.drain_until_closed(CLOSE_MAX);
        assert!(
            closed,
            "the node still holds a connection that sent {:?} and closed",
            String::from_utf8_lossy(prefix)
        );
    }
    let released = wait_until(Duration::from_secs(5), || {
        connected_clients(&node) <= before
    });
    assert!(released, "connected_clients stays above {before}");
    assert_serves(&node, "after partial magic");
}

fn connected_clients(node: &Server) -> i64 {
    // This INFO connection itself counts as one.
    common::info_field(&common::info(node.port, "clients"), "connected_clients")
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap()
        - 1
}

/// The test as a fake upstream: it accepts the replica's link, proves the secret, installs an
/// empty snapshot at epoch 5, and then sends entries from epoch 3. The replica refuses them
/// (logging why), applies none, keeps serving, and, as a control, takes entries from epoch 5
/// on its next link.
#[test]
fn entries_from_a_lower_epoch_are_refused_and_not_applied() {
    let (listener, _dir, replica) = replica_of_a_fake_upstream(&[]);
    let history = 0x00fe_edfa_ce00_0001;
    let at_5 = LogPosition {
        epoch: Epoch(5),
        lsn: Lsn(0),
    };

    eprintln!("phase: the replica connects; the fake upstream installs an empty snapshot at 5:0");
    let mut link = accept_follower(&listener);
    match link.recv(Duration::from_secs(10)) {
        Ok(PeerMessage::Fetch { .. }) => {}
        other => panic!("expected Fetch, got {other:?}"),
    }
    link.send(&PeerMessage::SnapshotBegin {
        pos: at_5,
        total_bytes: 0,
        history,
    });
    link.send(&PeerMessage::SnapshotEnd { chunks: 0 });
    link.send(&PeerMessage::Heartbeat {
        epoch: Epoch(5),
        commit: Lsn(0),
        leader_time_ms: now_ms(),
    });
    let installed = wait_until(Duration::from_secs(10), || {
        replica
            .log_text()
            .contains("installed a snapshot from the upstream")
    });
    assert!(installed, "no snapshot installed:\n{}", replica.log_text());

    eprintln!("phase: entries from epoch 3 are refused, logged and not applied");
    let refusals = replica.log_count("refused entries from the upstream");
    link.send(&PeerMessage::Entries {
        epoch: Epoch(3),
        prev: at_5,
        commit: Lsn(1),
        records: vec![set_record(3, 1, "stale", "x")],
    });
    let (closed, _) = link.drain_until_closed(CLOSE_MAX);
    assert!(closed, "the replica kept the link after stale entries");
    assert!(
        replica.wait_log("refused entries from the upstream", refusals + 1, CLOSE_MAX),
        "no refusal logged:\n{}",
        replica.log_text()
    );
    assert!(
        replica
            .log_text()
            .contains("stale epoch 3: this node has seen epoch 5"),
        "the refusal does not name the stale epoch:\n{}",
        replica.log_text()
    );
    let mut c = replica.resp();
    assert_eq!(
        c.call(&["GET", "stale"]),
        Frame::Null,
        "a stale entry was applied"
    );
    assert_eq!(text(&c.call(&["PING"])), "PONG");

    eprintln!("phase: control: on its next link the replica continues from 5:0 and takes entries from epoch 5");
    let mut link = accept_follower(&listener);
    match link.recv(Duration::from_secs(10)) {
        Ok(PeerMessage::Fetch {
            from,
            epoch,
            history: h,
            ..
        }) => {
            assert_eq!(
                (from, epoch, h),
                (at_5, Epoch(5), history),
                "Fetch after the refusal"
            );
        }
        other => panic!("expected Fetch, got {other:?}"),
    }
    link.send(&PeerMessage::Entries {
        epoch: Epoch(5),
        prev: at_5,
        commit: Lsn(1),
        records: vec![set_record(5, 1, "fresh", "y")],
    });
    let applied = wait_until(Duration::from_secs(10), || {
        c.call(&["GET", "fresh"]) == Frame::Bulk("y".into())
    });
    assert!(
        applied,
        "entries from the current epoch were not applied:\n{}",
        replica.log_text()
    );
    assert_eq!(c.call(&["GET", "stale"]), Frame::Null);
    drop(link);
}

fn set_record(epoch: u64, lsn: u64, key: &str, value: &str) -> PeerRecord {
    let cmd = Command::Set {
        key: key.to_string().into(),
        value: value.to_string().into(),
        expiry: Expiry::Clear,
    };
    PeerRecord {
        pos: LogPosition {
            epoch: Epoch(epoch),
            lsn: Lsn(lsn),
        },
        payload: cmd.encode().into(),
    }
}

/// A listener standing for the fake upstream, and a replica (with the cluster secret, `fsync
/// interval` and `extra`) that follows it; the data directory lives as long as the tuple.
fn replica_of_a_fake_upstream(extra: &[&str]) -> (TcpListener, tempfile::TempDir, Server) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "--replicaof",
        upstream.as_str(),
        "--cluster-secret",
        SECRET,
        "--fsync",
        "interval",
    ];
    args.extend_from_slice(extra);
    let replica = Server::start(dir.path(), &args);
    (listener, dir, replica)
}

/// Accepts the replica's link (within 15 s) and does the server side of the handshake with the
/// right secret.
fn accept_follower(listener: &TcpListener) -> PeerConn {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("the replica did not connect: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    let mut link = PeerConn::new(stream);
    let (client_id, cn) = match link.recv(Duration::from_secs(10)) {
        Ok(PeerMessage::Hello { node_id, nonce, .. }) => (node_id, nonce),
        other => panic!("expected Hello, got {other:?}"),
    };
    let sn = [9u8; 32];
    link.send(&PeerMessage::Challenge {
        nonce: sn,
        node_id: "fake-upstream".into(),
    });
    let t = |role| peer_transcript(role, "replikv", &client_id, &cn, "fake-upstream", &sn);
    match link.recv(Duration::from_secs(10)) {
        Ok(PeerMessage::Auth { mac }) => assert!(
            verify_mac(SECRET.as_bytes(), &t(AuthRole::Client), &mac),
            "the replica's Auth does not prove the secret"
        ),
        other => panic!("expected Auth, got {other:?}"),
    }
    link.send(&PeerMessage::Auth {
        mac: auth_mac(SECRET.as_bytes(), &t(AuthRole::Server)),
    });
    link
}

/// A local IPv4 address that is not loopback (traffic to it stays on this machine), if the
/// machine has one that can be bound.
fn local_non_loopback_ipv4() -> Option<Ipv4Addr> {
    let mut addrs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `addrs` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut addrs) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = addrs;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        let addr = ifa.ifa_addr;
        // SAFETY: a non-null ifa_addr points to a sockaddr; for AF_INET to a sockaddr_in.
        if !addr.is_null() && i32::from(unsafe { (*addr).sa_family }) == libc::AF_INET {
            let sin = unsafe { &*(addr as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            if !ip.is_loopback() && !ip.is_unspecified() && TcpListener::bind((ip, 0)).is_ok() {
                found = Some(ip);
                break;
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `addrs` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(addrs) };
    found
}

/// Without a cluster secret a node accepts peer links from loopback only. The node listens on
/// one of this machine's own non-loopback addresses and the test connects to it from there (the
/// traffic never leaves the machine); skipped when the machine has no such address.
#[test]
fn peer_from_a_non_loopback_address_is_refused_without_a_cluster_secret() {
    let Some(ip) = local_non_loopback_ipv4() else {
        eprintln!("SKIPPED: this machine has no non-loopback IPv4 address to test from");
        return;
    };
    let host = ip.to_string();
    let dir = tempfile::tempdir().unwrap();
    let node = Server::start_on(&host, dir.path(), &[]);
    let refusals = node.log_count("refused a peer link");
    let stream = std::net::TcpStream::connect((ip, node.port)).unwrap();
    assert!(!stream.local_addr().unwrap().ip().is_loopback());
    let mut link = PeerConn::new(stream);
    link.send(&PeerMessage::Hello {
        protocol_version: PEER_PROTOCOL_VERSION,
        cluster_name: "replikv".into(),
        node_id: "remote".into(),
        nonce: [3; 32],
    });
    let (closed, seen) = link.drain_until_closed(CLOSE_MAX);
    assert!(closed, "the link stayed open; the node sent {seen:?}");
    assert!(
        !seen
            .iter()
            .any(|m| matches!(m, PeerMessage::Challenge { .. })),
        "the node went on with the handshake: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|m| matches!(m, PeerMessage::Refuse { reason } if reason.contains("loopback"))),
        "no Refuse naming the rule: {seen:?}"
    );
    assert!(
        node.wait_log("refused a peer link", refusals + 1, CLOSE_MAX),
        "no refusal logged:\n{}",
        node.log_text()
    );
    assert!(
        node.log_text().contains("non-loopback"),
        "{}",
        node.log_text()
    );
    assert_serves(&node, "after a non-loopback peer");
}

/// Reads from the link until an `Ack` comes (skipping `Downstream` reports), within `within`;
/// `None` when none came.
fn next_ack(link: &mut PeerConn, within: Duration) -> Option<(Lsn, Lsn)> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        match link.recv(left) {
            Ok(PeerMessage::Ack {
                durable, applied, ..
            }) => return Some((durable, applied)),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// A follower acknowledges nothing on a link before its upstream opens the stream (finding A
/// of the simulator): until then its log may be one a snapshot on that link replaces, and an
/// ack of it would let the upstream count writes the follower will never hold. After a
/// snapshot it acknowledges the snapshot's position, not the log it had.
#[test]
fn a_follower_acknowledges_nothing_before_the_stream_opens() {
    let (listener, _dir, _replica) = replica_of_a_fake_upstream(&["--heartbeat-ms", "50"]);
    let at = |epoch, lsn| LogPosition {
        epoch: Epoch(epoch),
        lsn: Lsn(lsn),
    };

    eprintln!("phase: a first link gives the replica three entries of epoch 5");
    let mut link = accept_follower(&listener);
    assert!(matches!(
        link.recv(Duration::from_secs(10)),
        Ok(PeerMessage::Fetch { .. })
    ));
    link.send(&PeerMessage::SnapshotBegin {
        pos: at(5, 0),
        total_bytes: 0,
        history: 0x00fe_edfa_ce00_0002,
    });
    link.send(&PeerMessage::SnapshotEnd { chunks: 0 });
    assert_eq!(
        next_ack(&mut link, Duration::from_millis(600)),
        None,
        "acked before the stream opened"
    );
    link.send(&PeerMessage::Entries {
        epoch: Epoch(5),
        prev: at(5, 0),
        commit: Lsn(0),
        records: (1..=3).map(|i| set_record(5, i, "k", "v")).collect(),
    });
    let durable_3 = wait_until(Duration::from_secs(10), || {
        next_ack(&mut link, Duration::from_millis(200)) == Some((Lsn(3), Lsn(3)))
    });
    assert!(durable_3, "the replica never acknowledged 5:3");
    drop(link);

    eprintln!("phase: on its next link it acknowledges nothing until the stream opens");
    let mut link = accept_follower(&listener);
    match link.recv(Duration::from_secs(10)) {
        Ok(PeerMessage::Fetch { from, .. }) => assert_eq!(from, at(5, 3)),
        other => panic!("expected Fetch, got {other:?}"),
    }
    assert_eq!(
        next_ack(&mut link, Duration::from_millis(600)),
        None,
        "the replica acknowledged its old log on a link that has not opened its stream"
    );
    link.send(&PeerMessage::SnapshotBegin {
        pos: at(6, 1),
        total_bytes: 0,
        history: 0x00fe_edfa_ce00_0003,
    });
    link.send(&PeerMessage::SnapshotEnd { chunks: 0 });
    assert_eq!(
        next_ack(&mut link, Duration::from_millis(600)),
        None,
        "acknowledged after the snapshot, before the stream opened"
    );
    link.send(&PeerMessage::Entries {
        epoch: Epoch(6),
        prev: at(6, 1),
        commit: Lsn(0),
        records: Vec::new(),
    });
    assert_eq!(
        next_ack(&mut link, Duration::from_secs(10)),
        Some((Lsn(1), Lsn(1))),
        "the first ack reports the snapshot's position"
    );
}
