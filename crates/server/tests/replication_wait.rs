//! What a client sees of replicas through Redis's own commands: `WAIT` counts the replicas that
//! have a connection's writes (and gives up at its timeout with the count so far), a replica
//! refuses writes with `-READONLY` or forwards them to its leader (`--replica-writes forward`),
//! a hot standby (`--replica-reads standby`) refuses reads, and a write whose acknowledgement
//! mode cannot be met in time fails with `-NOREPLICAS`.

mod common;

use common::{info, info_field, is_error, text, wait_until, DelayProxy, Frame, Server};
use std::time::{Duration, Instant};

/// Waits until the leader lists `n` connected replicas.
fn wait_replicas(leader: &Server, n: usize) {
    let ok = wait_until(Duration::from_secs(30), || {
        info_field(&info(leader.port, "replication"), "connected_slaves").as_deref()
            == Some(&n.to_string())
    });
    assert!(
        ok,
        "the leader does not list {n} replicas:\n{}",
        info(leader.port, "replication")
    );
}

#[test]
fn wait_counts_replicas_holding_the_write_and_times_out_with_the_count_so_far() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let flags = ["--fsync", "interval"];
    let leader = Server::start(dirs[0].path(), &flags);
    let _r1 = Server::start_replica(dirs[1].path(), leader.port, &flags);
    let mut r2 = Server::start_replica(dirs[2].path(), leader.port, &flags);
    wait_replicas(&leader, 2);
    let mut c = leader.resp();

    eprintln!("phase: with both replicas up, WAIT 2 after a SET answers 2");
    assert_eq!(text(&c.call(&["SET", "w1", "a"])), "OK");
    let started = Instant::now();
    assert_eq!(c.call(&["WAIT", "2", "1000"]), Frame::Integer(2));
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "WAIT 2 took {:?} with both replicas up",
        started.elapsed()
    );

    eprintln!("phase: one replica SIGKILLed; WAIT 2 300 after a SET answers 1 after ~300 ms");
    r2.kill9();
    assert_eq!(text(&c.call(&["SET", "w2", "b"])), "OK");
    let started = Instant::now();
    let got = c.call(&["WAIT", "2", "300"]);
    let took = started.elapsed();
    assert_eq!(got, Frame::Integer(1), "WAIT 2 300 with one replica down");
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(2000),
        "WAIT 2 300 returned after {took:?}"
    );
    eprintln!("WAIT 2 300 with one replica down returned 1 after {took:?}");

    eprintln!("phase: WAIT 1 is satisfied at once by the live replica");
    assert_eq!(c.call(&["WAIT", "1", "1000"]), Frame::Integer(1));
}

#[test]
fn replica_refuses_writes_with_readonly() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let flags = ["--fsync", "interval"];
    let leader = Server::start(dirs[0].path(), &flags);
    let replica = Server::start_replica(dirs[1].path(), leader.port, &flags);
    wait_replicas(&leader, 1);

    eprintln!("phase: a write on a default replica is refused with READONLY and not applied");
    let mut r = replica.resp();
    assert_eq!(text(&leader.resp().call(&["SET", "there", "1"])), "OK");
    assert!(wait_until(Duration::from_secs(10), || {
        r.call(&["GET", "there"]) != Frame::Null
    }));
    for cmd in [
        vec!["SET", "ro", "x"],
        vec!["INCR", "ro"],
        vec!["DEL", "there"],
        vec!["MSET", "ro", "1", "ro2", "2"],
    ] {
        let reply = r.call(&cmd);
        assert!(
            is_error(
                &reply,
                "READONLY You can't write against a read only replica."
            ),
            "{cmd:?} on a replica gave {reply:?}"
        );
    }
    assert_eq!(leader.resp().call(&["GET", "ro"]), Frame::Null);
    assert_eq!(r.call(&["GET", "ro"]), Frame::Null, "reads still work");
    assert_eq!(text(&r.call(&["GET", "there"])), "1", "nothing was deleted");
}

/// Redis refuses every write command on a replica, whether or not it would change anything
/// (`DEL` of a missing key, `SET NX` of an existing one): clients route on `-READONLY`.
#[test]
fn replica_refuses_a_write_command_even_when_it_would_change_nothing() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let flags = ["--fsync", "interval"];
    let leader = Server::start(dirs[0].path(), &flags);
    let replica = Server::start_replica(dirs[1].path(), leader.port, &flags);
    wait_replicas(&leader, 1);
    assert_eq!(text(&leader.resp().call(&["SET", "there", "1"])), "OK");
    let mut r = replica.resp();
    assert!(wait_until(Duration::from_secs(10), || {
        r.call(&["GET", "there"]) != Frame::Null
    }));
    for cmd in [vec!["DEL", "missing"], vec!["SET", "there", "2", "NX"]] {
        let reply = r.call(&cmd);
        assert!(
            is_error(&reply, "READONLY"),
            "{cmd:?} on a replica gave {reply:?}, not -READONLY"
        );
    }
}

/// `--replica-writes forward`: the replica sends the write to its leader, relays the reply, and
/// the same connection's next read on the replica waits for the write (read-your-writes). The
/// replica follows through a proxy that delays replication by 30-40 ms, so a read that does not
/// wait for the write misses it.
#[test]
fn forwarded_write_lands_on_the_leader_and_is_read_back_on_the_replica() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let leader = Server::start(dirs[0].path(), &["--fsync", "interval"]);
    let proxy = DelayProxy::start(
        leader.port,
        Duration::from_millis(30),
        Duration::from_millis(40),
    );
    let forwarding = Server::start_replica(
        dirs[1].path(),
        proxy.port,
        &["--fsync", "interval", "--replica-writes", "forward"],
    );
    wait_replicas(&leader, 1);

    eprintln!("phase: SET on the replica, then GET on the same replica connection, 50 times");
    let mut f = forwarding.resp();
    let mut l = leader.resp();
    for i in 0..50 {
        let key = format!("fwd{i}");
        let value = format!("v{i}");
        assert_eq!(
            text(&f.call(&["SET", key.as_str(), value.as_str()])),
            "OK",
            "forwarded SET"
        );
        assert_eq!(
            text(&f.call(&["GET", key.as_str()])),
            value,
            "GET on the replica right after the forwarded SET {i}"
        );
        assert_eq!(
            text(&l.call(&["GET", key.as_str()])),
            value,
            "the forwarded write is on the leader"
        );
    }
    assert_eq!(
        f.call(&["INCR", "fwdn"]),
        Frame::Integer(1),
        "the leader's reply is relayed"
    );
}

#[test]
fn hot_standby_refuses_reads_with_standby() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let leader = Server::start(dirs[0].path(), &["--fsync", "interval"]);
    let standby = Server::start_replica(
        dirs[1].path(),
        leader.port,
        &["--fsync", "interval", "--replica-reads", "standby"],
    );
    wait_replicas(&leader, 1);
    assert_eq!(text(&leader.resp().call(&["SET", "s", "1"])), "OK");
    let mut c = standby.resp();
    for cmd in [vec!["GET", "s"], vec!["MGET", "s", "t"], vec!["DBSIZE"]] {
        let reply = c.call(&cmd);
        assert!(
            is_error(&reply, "STANDBY"),
            "{cmd:?} on a hot standby gave {reply:?}"
        );
    }
    assert_eq!(
        text(&c.call(&["PING"])),
        "PONG",
        "the standby still answers"
    );
    assert!(
        info_field(&info(standby.port, "replication"), "role").as_deref() == Some("slave"),
        "INFO still works on the standby"
    );
}

/// A write whose acknowledgement mode needs more in-sync replicas than there are waits up to
/// `--write-ack-timeout-ms` and fails with `NOREPLICAS Not enough good replicas to write.`
/// without being applied; a write that starts but is not replicated in time fails with
/// `NOREPLICAS the write at ...` (it is applied on the leader); a connection may lower its own
/// mode with `REPLIKV ACK`.
#[test]
fn writes_fail_with_noreplicas_when_their_mode_cannot_be_met_in_time() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let timeout_ms = 400;
    let leader_flags = [
        "--fsync",
        "interval",
        "--ack",
        "semi-sync:2",
        "--write-ack-timeout-ms",
        "400",
    ];
    let leader = Server::start(dirs[0].path(), &leader_flags);
    let _fast = Server::start_replica(dirs[1].path(), leader.port, &["--fsync", "interval"]);
    wait_replicas(&leader, 1);
    let mut c = leader.resp();

    eprintln!(
        "phase: semi-sync:2 with one replica: the write cannot start, and fails after the timeout"
    );
    let started = Instant::now();
    let reply = c.call(&["SET", "n1", "x"]);
    let took = started.elapsed();
    assert!(
        is_error(&reply, "NOREPLICAS Not enough good replicas to write."),
        "SET under semi-sync:2 with one replica gave {reply:?}"
    );
    assert!(
        took >= Duration::from_millis(timeout_ms - 10) && took < Duration::from_secs(5),
        "NOREPLICAS after {took:?}, not after the {timeout_ms} ms timeout"
    );
    assert_eq!(
        c.call(&["GET", "n1"]),
        Frame::Null,
        "a refused write was applied"
    );

    eprintln!("phase: the connection lowers its mode to semi-sync:1 and writes");
    assert_eq!(text(&c.call(&["REPLIKV", "ACK", "semi-sync:1"])), "OK");
    assert_eq!(text(&c.call(&["SET", "n2", "y"])), "OK");
    assert_eq!(text(&c.call(&["REPLIKV", "ACK"])), "semi-sync:1");

    eprintln!("phase: a second replica 1-1.2 s behind is in sync but acknowledges too late: the write is applied, and fails with NOREPLICAS naming it");
    let proxy = DelayProxy::start(
        leader.port,
        Duration::from_millis(1000),
        Duration::from_millis(1200),
    );
    let _slow = Server::start_replica(dirs[2].path(), proxy.port, &["--fsync", "interval"]);
    let in_sync = wait_until(Duration::from_secs(30), || {
        let text = info(leader.port, "replication");
        info_field(&text, "in_sync_replicas").as_deref() == Some("2")
    });
    assert!(in_sync, "{}", info(leader.port, "replication"));
    assert_eq!(text(&c.call(&["REPLIKV", "ACK", "default"])), "OK");
    let started = Instant::now();
    let reply = c.call(&["SET", "n3", "z"]);
    let took = started.elapsed();
    assert!(
        is_error(&reply, "NOREPLICAS the write at "),
        "SET under semi-sync:2 with a slow replica gave {reply:?}"
    );
    assert!(
        took >= Duration::from_millis(timeout_ms - 10) && took < Duration::from_secs(5),
        "NOREPLICAS after {took:?}"
    );
    // Read under `async`: under the connection's mode the read would wait for the same
    // replicas as the write.
    assert_eq!(text(&c.call(&["REPLIKV", "ACK", "async"])), "OK");
    assert_eq!(
        text(&c.call(&["GET", "n3"])),
        "z",
        "the write the error names is applied on the leader"
    );
    let failed = info_field(
        &info(leader.port, "replication"),
        "writes_failed_no_replicas",
    );
    assert_eq!(failed.as_deref(), Some("2"));
}

/// On the leader a read waits until its mode has committed what it saw (finding C of the
/// simulator): with the replica's copy of a `sync` write held back past the write timeout, an
/// `async` read sees the write at once, a `sync` read does not return it but fails
/// `NOREPLICAS`, and once the replica has the write a `sync` read returns it.
#[test]
fn a_sync_read_on_the_leader_never_returns_a_write_no_replica_holds() {
    const TESTING: (&str, &str) = ("REPLIKV_I_AM_TESTING", "1");
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let leader = Server::start(
        dirs[0].path(),
        &["--fsync", "interval", "--write-ack-timeout-ms", "1000"],
    );
    let upstream = format!("127.0.0.1:{}", leader.port);
    let replica = Server::start_with_env(
        dirs[1].path(),
        &[
            "--replicaof",
            upstream.as_str(),
            "--fsync",
            "interval",
            "--fault-injection",
        ],
        &[TESTING],
    );
    wait_replicas(&leader, 1);
    let in_sync = || {
        info_field(&info(leader.port, "replication"), "slave0")
            .is_some_and(|v| v.contains("in_sync=1"))
    };
    assert!(
        wait_until(Duration::from_secs(10), in_sync),
        "no replica in sync"
    );
    let mut sync_reader = leader.resp();
    assert_eq!(text(&sync_reader.call(&["REPLIKV", "ACK", "sync"])), "OK");
    assert_eq!(text(&sync_reader.call(&["SET", "k", "old"])), "OK");

    eprintln!("phase: the replica receives everything 2.5 s late; a sync write of k");
    let (code, body) = replica.http("POST", "/faults", Some(r#"{"delay_ms": {"*": 2500}}"#));
    assert_eq!(code, 200, "{body}");
    let mut writer = leader.resp();
    assert_eq!(text(&writer.call(&["REPLIKV", "ACK", "sync"])), "OK");
    writer.send(&[vec!["SET", "k", "new"]]).unwrap();
    let mut async_reader = leader.resp();
    let seen = wait_until(Duration::from_secs(1), || {
        text(&async_reader.call(&["GET", "k"])) == "new"
    });
    assert!(seen, "an async read on the leader sees the applied write");
    let read = sync_reader.call(&["GET", "k"]);
    assert!(
        is_error(&read, "NOREPLICAS the state this read saw"),
        "a sync read returned {read:?} while no replica held the write"
    );
    let write = writer.read_reply().unwrap();
    assert!(
        is_error(&write, "NOREPLICAS the write at"),
        "the write was acknowledged without the replica: {write:?}"
    );

    eprintln!("phase: once the replica has the write, a sync read returns it");
    let committed = wait_until(Duration::from_secs(20), || {
        text(&sync_reader.call(&["GET", "k"])) == "new"
    });
    assert!(committed, "{}", info(leader.port, "replication"));
    let (code, _) = replica.http("DELETE", "/faults", None);
    assert_eq!(code, 200);
}
