//! What the log benchmarks share: arguments, the batch they write each round, and timing
//! summaries.

use bytes::Bytes;
use replikv_core::{Epoch, LogPosition, Lsn};
use replikv_storage::LogRecord;
use std::path::PathBuf;
use std::time::Duration;

/// Records per round and their payload size: 16 × (24 + 120) = 2304 bytes per batch.
pub const RECORDS_PER_ROUND: u64 = 16;
pub const PAYLOAD_BYTES: usize = 120;
/// Runs of each configuration; the median is reported.
pub const RUNS: usize = 3;

pub struct Args {
    pub rounds: u64,
    pub dir: PathBuf,
}

/// `--rounds N` (default 2000) and `--dir DIR` (default the temporary directory).
pub fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        rounds: 2000,
        dir: std::env::temp_dir(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rounds" => args.rounds = value.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--dir" => args.dir = PathBuf::from(value),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    Ok(args)
}

/// Round `round`'s records, continuing the LSNs of the rounds before it.
pub fn batch(payload: &Bytes, round: u64) -> Vec<LogRecord> {
    (0..RECORDS_PER_ROUND)
        .map(|i| LogRecord {
            pos: LogPosition {
                epoch: Epoch(1),
                lsn: Lsn(round * RECORDS_PER_ROUND + i + 1),
            },
            payload: payload.clone(),
        })
        .collect()
}

/// The duration of every round of one run.
pub struct Timings(pub Vec<Duration>);

impl Timings {
    /// The sum of round durations.
    pub fn total(&self) -> Duration {
        self.0.iter().sum()
    }

    /// How many rounds (at least 1, to divide by).
    pub fn count(&self) -> usize {
        self.0.len().max(1)
    }

    /// The `p` quantile (0..=1) of round durations.
    pub fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        // Rounds are at most a few thousand: the index fits any float and usize.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let at = ((sorted.len() - 1) as f64 * p).round() as usize;
        sorted[at]
    }
}

pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
