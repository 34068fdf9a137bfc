//! Times one `fsync = interval` round as the node sees it: write a batch of 16 records of
//! 120-byte payloads and learn that it was handed to the OS. Compares
//!
//! - `group-commit`: [`GroupCommit`] with `IntervalMs(1000)`: `submit`, then block until the
//!   writer thread's progress callback (a channel send) reports `written` covering the batch;
//! - `inline`: [`InlineWal::append`] with a 1000 ms syncer: the write happens on the caller's
//!   thread and `append` returns the written LSN.
//!
//! ```text
//! cargo run --release -p replikv-storage --example inline_bench -- [--rounds N] [--dir DIR]
//! ```
//!
//! Each configuration runs three times, alternating, in a fresh directory with 64 MiB
//! segments; the table gives the median run. `--dir` should be on the disk to measure.

use bytes::Bytes;
mod common;

use common::{batch, micros, parse_args, Args, Timings, PAYLOAD_BYTES, RECORDS_PER_ROUND, RUNS};
use replikv_core::Lsn;
use replikv_storage::{FsyncPolicy, GroupCommit, InlineWal, Wal, WalOptions};
use std::sync::mpsc;
use std::time::Instant;

const SEGMENT_BYTES_MAX: u64 = 64 << 20;
const INTERVAL_MS: u64 = 1000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    GroupCommit,
    Inline,
}

/// The duration of every round of one run, and the fsyncs it made.
struct Run {
    rounds: Timings,
    fsyncs: u64,
}

fn run(args: &Args, mode: Mode) -> Result<Run, String> {
    let dir = tempfile::tempdir_in(&args.dir).map_err(|e| e.to_string())?;
    let opts = WalOptions::new(dir.path(), SEGMENT_BYTES_MAX, 0);
    let (mut wal, _) = Wal::open(opts, Lsn::ZERO).map_err(|e| e.to_string())?;
    let payload = Bytes::from(vec![b'v'; PAYLOAD_BYTES]);
    // Round 0 creates the first segment (waiting for its zero fill); not timed.
    wal.append(&batch(&payload, 0)).map_err(|e| e.to_string())?;
    wal.sync().map_err(|e| e.to_string())?;
    let mut rounds = Vec::with_capacity(usize::try_from(args.rounds).unwrap_or(0));
    let (tx, rx) = mpsc::channel();
    let on_progress = Box::new(move |p| {
        let _ = tx.send(p);
    });
    match mode {
        Mode::GroupCommit => {
            let gc = GroupCommit::start(wal, FsyncPolicy::IntervalMs(INTERVAL_MS), on_progress);
            for round in 1..=args.rounds {
                let records = batch(&payload, round);
                let want = Lsn((round + 1) * RECORDS_PER_ROUND);
                let start = Instant::now();
                gc.submit(records);
                loop {
                    let p = rx.recv().map_err(|e| e.to_string())??;
                    if p.written >= want {
                        break;
                    }
                }
                rounds.push(start.elapsed());
            }
            let fsyncs = gc.fsync_count();
            gc.shutdown().map_err(|e| e.to_string())?;
            Ok(Run {
                rounds: Timings(rounds),
                fsyncs,
            })
        }
        Mode::Inline => {
            let log = InlineWal::start(wal, INTERVAL_MS, on_progress);
            for round in 1..=args.rounds {
                let records = batch(&payload, round);
                let start = Instant::now();
                let written = log.append(records).map_err(|e| e.to_string())?;
                rounds.push(start.elapsed());
                debug_assert_eq!(written, Lsn((round + 1) * RECORDS_PER_ROUND));
            }
            let fsyncs = log.fsync_count();
            log.shutdown().map_err(|e| e.to_string())?;
            Ok(Run {
                rounds: Timings(rounds),
                fsyncs,
            })
        }
    }
}

fn main() -> Result<(), String> {
    let args = parse_args()?;
    println!(
        "{} rounds of {} records x {} B payload, fsync every {} ms, written-ack latency, in {}",
        args.rounds,
        RECORDS_PER_ROUND,
        PAYLOAD_BYTES,
        INTERVAL_MS,
        args.dir.display()
    );
    println!(
        "{:>13} {:>9} {:>10} {:>8} {:>8} {:>8} {:>9} {:>7}",
        "mode", "total ms", "rounds/s", "mean us", "p50 us", "p99 us", "max us", "fsyncs"
    );
    let modes = [
        (Mode::GroupCommit, "group-commit"),
        (Mode::Inline, "inline"),
    ];
    let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..RUNS {
        for (slot, (mode, _)) in modes.iter().enumerate() {
            runs[slot].push(run(&args, *mode)?);
        }
    }
    for (slot, (_, name)) in modes.iter().enumerate() {
        let mut these = std::mem::take(&mut runs[slot]);
        these.sort_by_key(|r| r.rounds.total());
        let median = &these[these.len() / 2];
        let total = median.rounds.total();
        let n = median.rounds.count();
        println!(
            "{:>13} {:>9.1} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>9.1} {:>7}",
            name,
            total.as_secs_f64() * 1e3,
            n as f64 / total.as_secs_f64(),
            micros(total) / n as f64,
            micros(median.rounds.percentile(0.5)),
            micros(median.rounds.percentile(0.99)),
            micros(median.rounds.percentile(1.0)),
            median.fsyncs,
        );
    }
    Ok(())
}
