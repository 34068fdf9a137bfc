//! Command-line flags and their bounds.

use clap::Parser;

use crate::request::KEYSPACE_MAX;

/// Most connections one run may open.
pub const CLIENTS_MAX: usize = 10_000;
/// Longest run allowed, in seconds (one day).
pub const SECONDS_MAX_MAX: u64 = 86_400;
/// Largest value written, in bytes.
pub const VALUE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Most runtime worker threads.
pub const THREADS_MAX: usize = 64;

/// Closed-loop RESP load: every client sends `SET key:<random> <value>` (plus `WAIT N 0` with
/// --wait), waits for the reply, and sends the next, until --requests are done or --seconds-max
/// has passed. Prints one JSON line:
/// {"requests","errors","seconds","ops_per_sec","p50_ms","p99_ms","max_ms","timed_out"}.
/// `requests` counts requests whose replies all arrived; `errors` those among them with an
/// error reply (or a WAIT reply below N); `ops_per_sec` and the latencies cover the others.
/// Exits 1 if a connection fails, a setup command is refused or a reply is not RESP.
#[derive(Parser, Debug, Clone)]
#[command(name = "replikv-loadgen", version, about, long_about = None)]
pub struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Server port.
    #[arg(long)]
    pub port: u16,
    /// Concurrent connections, each with one request in flight (1..=10000).
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// Requests to send in total, over all clients.
    #[arg(long)]
    pub requests: u64,
    /// Hard bound on the load phase, in seconds: requests still unanswered then are dropped
    /// and the report says `"timed_out":true` (1..=86400).
    #[arg(long, default_value_t = 120)]
    pub seconds_max: u64,
    /// Keys are `key:<n>` with n uniform in 0..keyspace, zero-padded to 12 digits.
    #[arg(long, default_value_t = 100_000)]
    pub keyspace: u64,
    /// Bytes of each value (0..=16777216).
    #[arg(long, default_value_t = 3)]
    pub value_bytes: usize,
    /// After every SET send `WAIT N 0`; the request is done when WAIT answers, and an answer
    /// below N counts as an error ("not replicated").
    #[arg(long, value_name = "N")]
    pub wait: Option<u32>,
    /// A command line sent once on every connection before the load, split on whitespace (no
    /// quoting), e.g. "REPLIKV ACK sync". Repeatable; any error reply aborts the run.
    #[arg(long, value_name = "CMD")]
    pub setup: Vec<String>,
    /// Password sent with AUTH on every connection before the setup commands.
    #[arg(long, env = "LOADGEN_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Runtime worker threads; 1 (the default) runs every client on one thread, as
    /// redis-benchmark does, leaving the other cores to the servers.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

impl Args {
    /// Checks the bounds clap cannot express.
    ///
    /// # Errors
    /// A message naming the first flag out of bounds.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=CLIENTS_MAX).contains(&self.clients) {
            return Err(format!(
                "--clients must be 1..={CLIENTS_MAX}, got {}",
                self.clients
            ));
        }
        if self.requests == 0 {
            return Err("--requests must be at least 1".into());
        }
        if !(1..=SECONDS_MAX_MAX).contains(&self.seconds_max) {
            return Err(format!(
                "--seconds-max must be 1..={SECONDS_MAX_MAX}, got {}",
                self.seconds_max
            ));
        }
        if !(1..=KEYSPACE_MAX).contains(&self.keyspace) {
            return Err(format!(
                "--keyspace must be 1..={KEYSPACE_MAX}, got {}",
                self.keyspace
            ));
        }
        if self.value_bytes > VALUE_BYTES_MAX {
            return Err(format!(
                "--value-bytes must be at most {VALUE_BYTES_MAX}, got {}",
                self.value_bytes
            ));
        }
        if !(1..=THREADS_MAX).contains(&self.threads) {
            return Err(format!(
                "--threads must be 1..={THREADS_MAX}, got {}",
                self.threads
            ));
        }
        if let Some(bad) = self
            .setup
            .iter()
            .find(|s| s.split_whitespace().next().is_none())
        {
            return Err(format!("--setup needs a command, got {bad:?}"));
        }
        Ok(())
    }
}
