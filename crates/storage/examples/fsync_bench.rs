//! Times `fsync = always` rounds through [`Wal`]: each round appends one batch of about 2.3 KiB
//! (16 records of 120-byte payloads), flushes and fdatasyncs it, the way the group-commit
//! writer does under load. Compares preallocated segments with segments grown by appending.
//!
//! ```text
//! cargo run --release -p replikv-storage --example fsync_bench -- [--rounds N] [--dir DIR]
//! ```
//!
//! `--dir` must be on the disk to measure (the default is the system temp directory; a tmpfs
//! there makes every fsync free). Each configuration runs three times, alternating, in a fresh
//! directory; the table gives the median run. Two segment sizes: 64 MiB (the server's default,
//! no roll during the run) and 1 MiB (a roll every ~450 rounds, where preallocation moves the
//! zero fill to a helper thread).

use bytes::Bytes;
mod common;

use common::{batch, micros, parse_args, Args, Timings, PAYLOAD_BYTES, RECORDS_PER_ROUND, RUNS};
use replikv_core::Lsn;
use replikv_storage::{Wal, WalOptions};
use std::time::Instant;

/// What one run measured: the duration of every round.
struct Run {
    rounds: Timings,
    segments_created: u64,
    segments_from_spare: u64,
}

fn run(args: &Args, segment_bytes_max: u64, preallocate: bool) -> Result<Run, String> {
    let dir = tempfile::tempdir_in(&args.dir).map_err(|e| e.to_string())?;
    let opts = WalOptions {
        preallocate,
        ..WalOptions::new(dir.path(), segment_bytes_max, 0)
    };
    let (mut wal, _) = Wal::open(opts, Lsn::ZERO).map_err(|e| e.to_string())?;
    let payload = Bytes::from(vec![b'v'; PAYLOAD_BYTES]);
    // Round 0 creates the first segment (and with preallocation waits for its zero fill);
    // not timed, like a server that has been running a while.
    wal.append(&batch(&payload, 0)).map_err(|e| e.to_string())?;
    wal.sync().map_err(|e| e.to_string())?;
    let mut rounds = Vec::with_capacity(usize::try_from(args.rounds).unwrap_or(0));
    for round in 1..=args.rounds {
        let records = batch(&payload, round);
        let start = Instant::now();
        wal.append(&records).map_err(|e| e.to_string())?;
        wal.flush().map_err(|e| e.to_string())?;
        wal.sync().map_err(|e| e.to_string())?;
        rounds.push(start.elapsed());
    }
    let stats = wal.stats();
    Ok(Run {
        rounds: Timings(rounds),
        segments_created: stats.segments_created,
        segments_from_spare: stats.segments_from_spare,
    })
}

fn main() -> Result<(), String> {
    let args = parse_args()?;
    println!(
        "{} rounds of {} records x {} B payload ({} B per batch), append+flush+sync, in {}",
        args.rounds,
        RECORDS_PER_ROUND,
        PAYLOAD_BYTES,
        RECORDS_PER_ROUND * (24 + PAYLOAD_BYTES as u64),
        args.dir.display()
    );
    println!(
        "{:>9} {:>12} {:>9} {:>10} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "segment",
        "preallocate",
        "total ms",
        "rounds/s",
        "mean us",
        "p50 us",
        "p99 us",
        "max us",
        "segments"
    );
    for segment_bytes_max in [64 << 20, 1 << 20] {
        let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..RUNS {
            for (slot, preallocate) in [(0, false), (1, true)] {
                runs[slot].push(run(&args, segment_bytes_max, preallocate)?);
            }
        }
        for (slot, preallocate) in [(0, false), (1, true)] {
            let mut these = std::mem::take(&mut runs[slot]);
            these.sort_by_key(|r| r.rounds.total());
            let median = &these[these.len() / 2];
            let total = median.rounds.total();
            let n = median.rounds.count();
            println!(
                "{:>6} KiB {:>12} {:>9.1} {:>10.0} {:>8.1} {:>8.1} {:>8.1} {:>9.1} {:>4} ({} spare)",
                segment_bytes_max >> 10,
                preallocate,
                total.as_secs_f64() * 1e3,
                n as f64 / total.as_secs_f64(),
                micros(total) / n as f64,
                micros(median.rounds.percentile(0.5)),
                micros(median.rounds.percentile(0.99)),
                micros(median.rounds.percentile(1.0)),
                median.segments_created,
                median.segments_from_spare,
            );
        }
    }
    Ok(())
}
