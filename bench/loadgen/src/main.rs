//! `replikv-loadgen`: a closed-loop RESP load tool for replikv's benchmarks.
//!
//! Each of `--clients` connections sends `SET key:<random> <value>`, optionally followed by
//! `WAIT N 0`, waits for the replies and sends the next, until `--requests` are done or
//! `--seconds-max` has passed; then one JSON line reports throughput and latency percentiles.
//! It exists for what redis-benchmark cannot do: count a write as done only once `WAIT` says
//! it reached N replicas, and send per-connection setup commands (`REPLIKV ACK sync`).
//!
//! # Modules
//! - `args`: the flags and their bounds.
//! - `request`: RESP command encoding, the SET (+WAIT) request, the key picker.
//! - `reply`: a minimal RESP2/RESP3 reply reader.
//! - `connection`: one TCP connection: send bytes, read whole replies, with deadlines.
//! - `load`: connecting, setup, the client loops, the counts.
//! - `report`: the figures and their JSON line.
//!
//! # Example
//! ```text
//! replikv-loadgen --port 6379 --clients 50 --requests 100000 --wait 1
//! {"requests":100000,"errors":0,"seconds":2.1,"ops_per_sec":47619.0,"p50_ms":0.9,...}
//! ```

mod args;
mod connection;
mod load;
mod reply;
mod report;
mod request;

use clap::Parser;
use std::process::ExitCode;

use crate::args::Args;
use crate::load::LoadError;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(msg) = args.validate() {
        eprintln!("replikv-loadgen: {msg}");
        return ExitCode::from(2);
    }
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("replikv-loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(load::run(&args)) {
        Ok(report) => {
            if report.timed_out {
                eprintln!(
                    "replikv-loadgen: --seconds-max {} reached after {} of {} requests",
                    args.seconds_max, report.requests, args.requests
                );
            }
            println!("{}", report.to_json_line());
            ExitCode::SUCCESS
        }
        Err(LoadError::Lost { partial, source }) => {
            eprintln!(
                "replikv-loadgen: {}:{}: connection lost during the load: {source}",
                args.host, args.port
            );
            println!("{}", partial.to_json_line());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("replikv-loadgen: {}:{}: {e}", args.host, args.port);
            ExitCode::FAILURE
        }
    }
}
