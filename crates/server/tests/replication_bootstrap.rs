//! Replica bootstrap and catch-up end in the leader's exact contents: a replica added during a
//! 100,000-write load (also with segments, snapshots and log compaction running), a cascading
//! chain (leader → r1 → r2), and a replica restarted after a stop, which resumes from its own
//! log (partial resync) unless the leader has compacted its log past it (full resync).

mod common;

use common::{assert_same_contents, info, info_field, info_record, repl_offset, text};
use common::{wait_caught_up, wait_until, Frame, Resp, Server};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Requests per pipelined batch.
const BATCH: usize = 200;
/// Bound on one load.
const LOAD_TIME_MAX: Duration = Duration::from_secs(120);
/// Bound on a replica catching up once the load has stopped.
const CATCH_UP_MAX: Duration = Duration::from_secs(60);

/// Where writers pause until the test lets them on.
struct Gate {
    /// Writes acknowledged (by all writers together) at which they pause.
    at: usize,
    open: Arc<AtomicBool>,
}

/// `writers` pipelined writers on `port`, `per_writer` writes each over `key_space` keys:
/// mostly SETs (overwriting, so the last value matters), every 20th a DEL. `progress` counts
/// acknowledged writes. Each thread panics on an error reply.
fn load(
    port: u16,
    writers: usize,
    per_writer: usize,
    key_space: usize,
    progress: &Arc<AtomicUsize>,
    gate: Option<Gate>,
) -> Vec<std::thread::JoinHandle<()>> {
    let deadline = Instant::now() + LOAD_TIME_MAX;
    let gate = gate.map(Arc::new);
    (0..writers)
        .map(|w| {
            let progress = Arc::clone(progress);
            let gate = gate.clone();
            std::thread::spawn(move || {
                let mut c = Resp::connect(port);
                let mut done = 0;
                while done < per_writer {
                    assert!(Instant::now() < deadline, "load ran out of time");
                    if let Some(g) = &gate {
                        while progress.load(Ordering::Relaxed) >= g.at
                            && !g.open.load(Ordering::Relaxed)
                        {
                            assert!(Instant::now() < deadline, "the gate never opened");
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                    let n = BATCH.min(per_writer - done);
                    let cmds: Vec<Vec<String>> = (done..done + n)
                        .map(|j| {
                            let g = w * per_writer + j;
                            if g % 20 == 19 {
                                vec!["DEL".into(), format!("k{}", (g * 31) % key_space)]
                            } else {
                                vec![
                                    "SET".into(),
                                    format!("k{}", (g * 7919) % key_space),
                                    format!("{w}:{j}"),
                                ]
                            }
                        })
                        .collect();
                    let replies = c.pipeline(&cmds).expect("pipelined writes");
                    for (cmd, r) in cmds.iter().zip(&replies) {
                        assert!(
                            matches!(r, Frame::Integer(_)) || text(r) == "OK",
                            "{cmd:?} gave {r:?}"
                        );
                    }
                    done += n;
                    progress.fetch_add(n, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

fn join(threads: Vec<std::thread::JoinHandle<()>>) {
    for t in threads {
        t.join().expect("a writer failed");
    }
}

fn info_u64(port: u16, section: &str, name: &str) -> u64 {
    let text = info(port, section);
    info_field(&text, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// A replica started once 20,000 of 100,000 pipelined writes are in ends with the leader's
/// contents after the load.
fn replica_added_during_load_ends_identical(flags: &[&str], label: &str) {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut all = vec!["--fsync", "interval"];
    all.extend_from_slice(flags);
    let leader = Server::start(dirs[0].path(), &all);
    let writers = 4;
    let per_writer = 25_000;
    let progress = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();

    eprintln!(
        "[{label}] phase: {} pipelined writes on the leader",
        writers * per_writer
    );
    let open = Arc::new(AtomicBool::new(false));
    let gate = Gate {
        at: 60_000,
        open: Arc::clone(&open),
    };
    let threads = load(
        leader.port,
        writers,
        per_writer,
        30_000,
        &progress,
        Some(gate),
    );
    assert!(
        wait_until(LOAD_TIME_MAX, || progress.load(Ordering::Relaxed) >= 20_000),
        "the load did not reach 20,000 writes"
    );

    eprintln!("[{label}] phase: a replica joins mid-load; the writers go on, and past 60,000 writes wait until it has installed the leader's snapshot, so that the rest streams to it live");
    let replica = Server::start_replica(dirs[1].path(), leader.port, &all);
    let joined_at = progress.load(Ordering::Relaxed);
    let synced = wait_until(CATCH_UP_MAX, || {
        let text = info(replica.port, "replication");
        info_field(&text, "master_link_status").as_deref() == Some("up")
            && info_field(&text, "master_sync_in_progress").as_deref() == Some("0")
            && repl_offset(replica.port) > 0
    });
    let synced_at = progress.load(Ordering::Relaxed);
    open.store(true, Ordering::Relaxed);
    assert!(synced, "the replica did not sync:\n{}", replica.log_text());
    join(threads);
    let loaded = started.elapsed();
    eprintln!(
        "[{label}] replica joined after {joined_at} writes and was synced after {synced_at}; the load took {loaded:?}",
    );

    eprintln!("[{label}] phase: after the load the replica reaches the leader's offset and holds the same contents");
    let offset = wait_caught_up(leader.port, replica.port, CATCH_UP_MAX);
    // Every SET makes an entry; a DEL of a missing key makes none.
    assert!(offset >= 95_000, "the leader applied only {offset} entries");
    let keys = assert_same_contents(leader.port, replica.port, label);
    let status = info(replica.port, "replication");
    assert_eq!(
        info_field(&status, "master_link_status").as_deref(),
        Some("up"),
        "{status}"
    );
    eprintln!(
        "FIGURE bootstrap[{label}]: {keys} keys identical at offset {offset}; leader snapshots {}, replica snapshots {}; total {:?}",
        info_u64(leader.port, "persistence", "snapshots_total"),
        info_u64(replica.port, "persistence", "snapshots_total"),
        started.elapsed()
    );
    assert!(
        leader.log_count("sending a snapshot (full resync)") >= 1,
        "the empty replica was not bootstrapped from a snapshot:\n{}",
        leader.log_text()
    );
}

#[test]
fn replica_added_during_100k_write_load_ends_identical_to_the_leader() {
    replica_added_during_load_ends_identical(&[], "default");
}

#[test]
fn replica_added_during_100k_write_load_with_compaction_ends_identical_to_the_leader() {
    let flags = [
        "--segment-bytes-max",
        "65536",
        "--wal-retention-bytes",
        "65536",
        "--snapshot-every-entries",
        "5000",
    ];
    replica_added_during_load_ends_identical(&flags, "compaction");
}

#[test]
fn cascading_chain_ends_identical_and_the_leader_lists_the_cascaded_replica() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let flags = |id: &'static str| vec!["--fsync", "interval", "--node-id", id];
    let leader = Server::start(dirs[0].path(), &flags("chain-leader"));
    let r1 = Server::start_replica(dirs[1].path(), leader.port, &flags("chain-r1"));
    let r2 = Server::start_replica(dirs[2].path(), r1.port, &flags("chain-r2"));

    eprintln!("phase: the leader sees r1 directly and r2 through r1");
    let cascaded = |text: &str| info_field(text, "cascaded0").map(|v| info_record(&v));
    let listed = wait_until(Duration::from_secs(30), || {
        let text = info(leader.port, "replication");
        info_field(&text, "connected_slaves").as_deref() == Some("1")
            && cascaded(&text)
                .is_some_and(|r| r.get("node_id").map(String::as_str) == Some("chain-r2"))
    });
    assert!(listed, "{}", info(leader.port, "replication"));

    eprintln!("phase: 30,000 pipelined writes on the leader; the cascaded entry carries lag figures meanwhile");
    let progress = Arc::new(AtomicUsize::new(0));
    let threads = load(leader.port, 3, 10_000, 5_000, &progress, None);
    let (mut lag_entries_max, mut lag_ms_max, mut samples) = (0u64, 0u64, 0);
    let sample_until = Instant::now() + LOAD_TIME_MAX;
    while progress.load(Ordering::Relaxed) < 30_000 && Instant::now() < sample_until {
        let text = info(leader.port, "replication");
        let r =
            cascaded(&text).unwrap_or_else(|| panic!("r2 is not listed during the load:\n{text}"));
        let figure = |f: &str| {
            r.get(f)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no numeric {f} in cascaded0:\n{text}"))
        };
        lag_entries_max = lag_entries_max.max(figure("lag_entries"));
        lag_ms_max = lag_ms_max.max(figure("lag_ms"));
        samples += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    join(threads);
    eprintln!("FIGURE cascade: during the load ({samples} samples) r2's lag as the leader lists it reached {lag_entries_max} entries, {lag_ms_max} ms");

    eprintln!("phase: r1 and r2 reach the leader's offset and hold the same contents");
    let offset = wait_caught_up(leader.port, r1.port, CATCH_UP_MAX);
    wait_caught_up(leader.port, r2.port, CATCH_UP_MAX);
    let keys = assert_same_contents(leader.port, r1.port, "leader vs r1");
    assert_same_contents(leader.port, r2.port, "leader vs r2");

    eprintln!("phase: the leader's INFO lists r2 as cascaded via r1, with its offset and lag");
    let mut last = String::new();
    let reported = wait_until(Duration::from_secs(10), || {
        last = info(leader.port, "replication");
        cascaded(&last)
            .is_some_and(|r| r.get("offset").and_then(|o| o.parse::<u64>().ok()) == Some(offset))
    });
    assert!(reported, "r2's offset never reached {offset} in:\n{last}");
    let r = cascaded(&last).unwrap();
    assert_eq!(info_field(&last, "cascaded_replicas").as_deref(), Some("1"));
    assert_eq!(r.get("via").map(String::as_str), Some("chain-r1"), "{last}");
    assert!(
        r.get("addr")
            .is_some_and(|a| a.ends_with(&format!(":{}", r2.port))),
        "{last}"
    );
    for field in ["lag_entries", "lag_ms"] {
        assert!(
            r.get(field).is_some_and(|v| v.parse::<u64>().is_ok()),
            "no numeric {field} in cascaded0:\n{last}"
        );
    }
    assert_eq!(
        r.get("lag_entries").map(String::as_str),
        Some("0"),
        "{last}"
    );
    let direct = info_record(&info_field(&last, "slave0").unwrap());
    assert_eq!(direct.get("node_id").map(String::as_str), Some("chain-r1"));
    eprintln!("FIGURE cascade: {keys} keys identical on leader, r1 and r2 at offset {offset}");
}

/// Writes `n` keys `prefix{i}` = `i` on `port`, pipelined.
fn write_keys(port: u16, prefix: &str, n: usize) {
    let mut c = Resp::connect(port);
    for start in (0..n).step_by(BATCH) {
        let cmds: Vec<Vec<String>> = (start..(start + BATCH).min(n))
            .map(|i| vec!["SET".into(), format!("{prefix}{i}"), format!("{i}")])
            .collect();
        for r in c.pipeline(&cmds).unwrap() {
            assert_eq!(text(&r), "OK");
        }
    }
}

#[test]
fn restarted_replica_resumes_by_partial_resync_and_ends_identical() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let flags = ["--fsync", "interval"];
    let leader = Server::start(dirs[0].path(), &flags);
    let mut replica = Server::start_replica(dirs[1].path(), leader.port, &flags);
    write_keys(leader.port, "a", 2_000);
    wait_caught_up(leader.port, replica.port, CATCH_UP_MAX);

    eprintln!("phase: the replica stops (SIGTERM); the leader takes more writes");
    assert!(replica.terminate(), "the replica did not stop cleanly");
    write_keys(leader.port, "b", 3_000);
    write_keys(leader.port, "a", 500);
    let partial_before = leader.log_count("streaming the log (partial resync)");
    let full_before = leader.log_count("sending a snapshot (full resync)");

    eprintln!("phase: restarted, the replica resumes from its own log");
    replica.restart();
    assert!(
        leader.wait_log(
            "streaming the log (partial resync)",
            partial_before + 1,
            Duration::from_secs(20)
        ),
        "no partial resync logged:\n{}",
        leader.log_text()
    );
    wait_caught_up(leader.port, replica.port, CATCH_UP_MAX);
    let keys = assert_same_contents(leader.port, replica.port, "after partial resync");
    assert_eq!(keys, 5_000);
    assert_eq!(
        leader.log_count("sending a snapshot (full resync)"),
        full_before,
        "the restarted replica got a full resync:\n{}",
        leader.log_text()
    );
}

#[test]
fn replica_restarted_after_the_leader_compacted_its_log_gets_a_full_resync_and_ends_identical() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let flags = [
        "--fsync",
        "interval",
        "--segment-bytes-max",
        "65536",
        "--wal-retention-bytes",
        "0",
        "--snapshot-every-entries",
        "0",
    ];
    let mut leader = Server::start(dirs[0].path(), &flags);
    let mut replica = Server::start_replica(dirs[1].path(), leader.port, &flags);
    write_keys(leader.port, "a", 2_000);
    wait_caught_up(leader.port, replica.port, CATCH_UP_MAX);

    eprintln!("phase: the replica stops; the leader writes several segments' worth, SAVEs (dropping the log it covers) and restarts (its in-memory tail of the log is gone)");
    let replica_at = repl_offset(replica.port);
    assert!(replica.terminate(), "the replica did not stop cleanly");
    write_keys(leader.port, "b", 6_000);
    assert_eq!(text(&leader.resp().call(&["SAVE"])), "OK");
    assert!(leader.terminate(), "the leader did not stop cleanly");
    leader.restart();
    let full_before = leader.log_count("sending a snapshot (full resync)");

    eprintln!("phase: restarted, the replica (at {replica_at}) is behind the retained log and gets a snapshot");
    replica.restart();
    assert!(
        leader.wait_log(
            "sending a snapshot (full resync)",
            full_before + 1,
            Duration::from_secs(20)
        ),
        "no full resync logged:\n{}",
        leader.log_text()
    );
    assert!(
        leader.log_text().contains("behind the retained log"),
        "the full resync does not give the compacted log as its reason:\n{}",
        leader.log_text()
    );
    wait_caught_up(leader.port, replica.port, CATCH_UP_MAX);
    let keys = assert_same_contents(leader.port, replica.port, "after full resync");
    assert_eq!(keys, 8_000);

    eprintln!("phase: the replica keeps following after the snapshot");
    write_keys(leader.port, "c", 300);
    wait_caught_up(leader.port, replica.port, CATCH_UP_MAX);
    assert_same_contents(leader.port, replica.port, "after more writes");
}

/// The sequence the simulator found (finding B): a leader restarts and takes a new epoch on
/// its own while its replica is away; the replica, promoted later, knows only the epoch before
/// and takes the same number. Both logs then hold entries of one epoch number at the same
/// positions with different commands. The promoted replica starts a new history, so the old
/// leader, pointed at it, gets a full resync instead of keeping its own entries.
#[test]
fn an_old_leader_pointed_at_a_promoted_replica_gets_a_full_resync_even_when_their_epochs_collide() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let flags = ["--fsync", "interval"];
    let mut leader = Server::start(dirs[0].path(), &flags);
    let mut replica = Server::start_replica(dirs[1].path(), leader.port, &flags);
    write_keys(leader.port, "a", 500);
    wait_caught_up(leader.port, replica.port, CATCH_UP_MAX);

    eprintln!("phase: the replica stops; the leader restarts (epoch 2) and writes alone");
    assert!(replica.terminate());
    assert!(leader.terminate());
    leader.restart();
    write_keys(leader.port, "lost", 100);
    assert!(leader.terminate());

    eprintln!("phase: the replica is promoted (epoch 2 again) and takes writes");
    replica.restart();
    assert_eq!(
        text(&replica.resp().call(&["REPLICAOF", "NO", "ONE"])),
        "OK"
    );
    write_keys(replica.port, "p", 300);

    eprintln!("phase: the old leader comes back as a replica of the promoted one");
    let full_before = replica.log_count("sending a snapshot (full resync)");
    let old = Server::start_replica(dirs[0].path(), replica.port, &flags);
    assert!(
        replica.wait_log(
            "sending a snapshot (full resync)",
            full_before + 1,
            Duration::from_secs(20)
        ),
        "the old leader was not given a full resync:\n{}",
        replica.log_text()
    );
    assert!(
        replica
            .log_text()
            .contains("the follower's log belongs to another history"),
        "{}",
        replica.log_text()
    );
    wait_caught_up(replica.port, old.port, CATCH_UP_MAX);
    let keys = assert_same_contents(replica.port, old.port, "after the old leader rejoined");
    assert_eq!(
        keys, 800,
        "the old leader's lone writes are gone, the new leader's are there"
    );
}
