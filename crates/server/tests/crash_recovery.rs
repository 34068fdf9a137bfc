//! Durability: with `fsync = always`, every acknowledged write survives SIGKILL, however the
//! kill falls between log appends, snapshots and segment compaction; a torn log tail is
//! truncated with a warning; corruption elsewhere stops the node naming the file and offset.

mod common;

use common::Server;
use redis::Commands;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Writers that record every acknowledged write, and stop on request or at their bound.
fn run_writers(
    server: &Server,
    writers: usize,
    per_writer_max: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<HashMap<String, String>>>,
    seq_base: usize,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..writers)
        .map(|w| {
            let url = server.url();
            let stop = Arc::clone(&stop);
            let acked = Arc::clone(&acked);
            std::thread::spawn(move || {
                let Ok(mut c) = redis::Client::open(url).and_then(|c| c.get_connection()) else {
                    return;
                };
                for i in 0..per_writer_max {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    // Keys are reused so later writes overwrite earlier ones: the latest
                    // acknowledged value is the one that must survive.
                    let key = format!("w{w}:k{}", i % 500);
                    // Sequence numbers grow across rounds too, so "newer" is comparable.
                    let value = format!("w{w}:v{}", seq_base + i);
                    match c.set::<_, _, ()>(&key, &value) {
                        Ok(()) => {
                            acked.lock().unwrap().insert(key, value);
                        }
                        // The server was killed under us: this write is indeterminate.
                        Err(_) => return,
                    }
                }
            })
        })
        .collect()
}

fn kill_mid_load_and_check(extra: &[&str], rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), extra);
    let acked = Arc::new(Mutex::new(HashMap::new()));
    for round in 0..rounds {
        // Phase: load from 8 writers, then SIGKILL while they are mid-flight.
        let stop = Arc::new(AtomicBool::new(false));
        let threads = run_writers(
            &server,
            8,
            20_000,
            Arc::clone(&stop),
            Arc::clone(&acked),
            round * 1_000_000,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let target = (round + 1) * 3000;
        while acked.lock().unwrap().len() < target.min(8 * 500) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }

        // Phase: restart; every acknowledged write is there with its latest value. A write that
        // was in flight at the kill may or may not be there, and may have overwritten the
        // acknowledged value with a newer one of the same writer; the value must then be newer.
        server.restart();
        let mut c = server.client();
        let acked = acked.lock().unwrap();
        assert!(
            acked.len() > 100,
            "too few writes acknowledged to prove anything"
        );
        for (key, value) in acked.iter() {
            let got: Option<String> = c.get(key).unwrap();
            let got = got.unwrap_or_else(|| panic!("acknowledged {key}={value} lost"));
            let seq = |v: &str| v.rsplit('v').next().unwrap().parse::<u64>().unwrap();
            assert!(
                seq(&got) >= seq(value),
                "{key}: acknowledged {value}, found older {got}"
            );
        }
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    kill_mid_load_and_check(&["--fsync", "always"], 2);
}

/// Under `fsync = interval` a write is acknowledged once the OS has it: a killed process (not a
/// crashed machine) loses none of them.
#[test]
fn acknowledged_writes_survive_sigkill_under_interval_fsync() {
    kill_mid_load_and_check(&["--fsync", "interval"], 2);
}

#[test]
fn acknowledged_writes_survive_sigkill_across_snapshots_and_compaction() {
    kill_mid_load_and_check(
        &[
            "--fsync",
            "always",
            "--snapshot-every-entries",
            "2000",
            "--segment-bytes-max",
            "65536",
            "--wal-retention-bytes",
            "0",
        ],
        2,
    );
}

fn wal_segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut segs: Vec<_> = std::fs::read_dir(dir.join("data/wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segs.sort();
    segs
}

/// Offset just past the last record of a segment file: where the zero fill of a preallocated
/// segment begins (the file itself is `segment_bytes_max` long).
fn logical_end(bytes: &[u8]) -> usize {
    let mut at = replikv_storage::SEGMENT_HEADER_BYTES;
    while let Ok(Some((_, used))) = replikv_storage::decode_record(&bytes[at..]) {
        at += used;
    }
    at
}

#[test]
fn torn_tail_is_zeroed_and_corruption_elsewhere_stops_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let mut c = server.client();
    for i in 0..50 {
        let _: () = c.set(format!("k{i}"), "x".repeat(100)).unwrap();
    }
    drop(c);
    assert!(server.terminate());

    // Phase: half a record after the last one (written into the zero fill of the preallocated
    // segment) is a torn write: zeroed, node starts.
    let seg = wal_segments(dir.path()).pop().unwrap();
    let clean = std::fs::read(&seg).unwrap();
    let end = logical_end(&clean);
    assert!(
        clean[end..].iter().all(|&b| b == 0),
        "only zeros follow the last record"
    );
    let tail: Vec<u8> = clean[end - 60..end].to_vec();
    let mut bytes = clean.clone();
    bytes.splice(end..(end + 60).min(bytes.len()), tail);
    std::fs::write(&seg, &bytes).unwrap();
    server.restart();
    let mut c = server.client();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 50);
    assert!(
        server.log_text().contains("torn"),
        "no warning logged:\n{}",
        server.log_text()
    );
    drop(c);
    assert!(server.terminate());
    let repaired = std::fs::read(&seg).unwrap();
    assert_eq!(repaired.len(), clean.len(), "the file keeps its length");
    assert_eq!(logical_end(&repaired), end);
    assert!(
        repaired[end..].iter().all(|&b| b == 0),
        "the torn bytes were zeroed"
    );

    // Phase: a flipped byte in an early record is corruption: the node refuses to start and
    // says where.
    let mut bytes = repaired;
    let at = end / 3;
    bytes[at] ^= 0x55;
    std::fs::write(&seg, &bytes).unwrap();
    let (ok, log) = server.start_expecting_exit();
    assert!(!ok, "node started on a corrupt log:\n{log}");
    let name = seg.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        log.contains(&name) && log.contains("offset"),
        "error does not name file and offset:\n{log}"
    );
}
