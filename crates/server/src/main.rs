//! The `replikv` command line.

use clap::{Parser, Subcommand};
use replikv_check::run::CheckArgs;
use replikv_check::sim::cli::SimArgs;
use replikv_server::cluster::{self, ClusterArgs};
use replikv_server::config::{Config, ServeArgs};
use replikv_server::failover_cmd::{self, FailoverArgs};
use std::process::ExitCode;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

/// replikv: a replicated key-value database that speaks the Redis protocol.
#[derive(Parser, Debug)]
#[command(
    name = "replikv",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// With no command, `replikv` runs a node with these settings (as `replikv serve`).
    #[command(flatten)]
    serve: ServeArgs,
}

// Parsed once at start-up and consumed at once, so the size of `ServeArgs` costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a node (the default when no command is given). Every setting can also be given in
    /// the TOML file named by --config or as a REPLIKV_* environment variable; flags win over
    /// variables, which win over the file.
    Serve(ServeArgs),
    /// Run a local cluster: a leader and replicas as child processes on 127.0.0.1, each with
    /// its own ports and data directory. Prints how to connect; Ctrl-C stops every node.
    Cluster(ClusterArgs),
    /// Verify a cluster: start one (or use running nodes with --targets), run a concurrent
    /// workload while injecting faults (kill -9, pause, partition), record every operation,
    /// and check the history for lost acknowledged writes, linearizability, stale and
    /// non-monotonic reads and unavailability. Writes report.json, history.json and
    /// timeline.svg; exits 1 when a property the mode promises is violated.
    Check(CheckArgs),
    /// Simulate: run the real replication state machines of a cluster over a simulated
    /// network, clock and disk, one seed per run, with crashes, partitions, closed links,
    /// delay spikes and operator failover; check the commit rule, log matching, convergence,
    /// lost writes and linearizability. The same seed replays the same run; exits 1 when a
    /// run broke a property.
    Sim(SimArgs),
    /// Hand leadership over to a replica (--to: its node id or address; default: the most
    /// up-to-date in-sync one) with no acknowledged write lost: the leader pauses writes, waits
    /// until the target holds every entry, and hands over (through the control plane when the
    /// nodes run one). Prints the new leader.
    Failover(FailoverArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Cmd::Serve(args)) => serve(&args),
        Some(Cmd::Cluster(args)) => run_cluster(args),
        Some(Cmd::Check(args)) => run_check(args),
        Some(Cmd::Sim(args)) => ExitCode::from(replikv_check::sim::cli::main(args)),
        Some(Cmd::Failover(args)) => run_failover(&args),
        None => serve(&cli.serve),
    }
}

fn run_cluster(args: ClusterArgs) -> ExitCode {
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(cluster::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("replikv cluster: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run_failover(args: &FailoverArgs) -> ExitCode {
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(failover_cmd::run(args)) {
        Ok(leader) => {
            println!("{leader} leads");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("replikv failover: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_check(args: CheckArgs) -> ExitCode {
    // The nodes are started from this very executable.
    match std::env::current_exe() {
        Ok(exe) => ExitCode::from(replikv_check::run::main(args, exe)),
        Err(e) => {
            eprintln!("replikv check: cannot find the replikv executable to start nodes: {e}");
            ExitCode::from(replikv_check::run::EXIT_RUN)
        }
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("replikv: cannot start the runtime: {e}");
            None
        }
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    let config = match Config::resolve(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("replikv: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(async move {
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested");
            // If everyone has already stopped, there is nobody left to tell.
            let _ = stop_tx.send(true);
        });
        replikv_server::serve(config, stop_rx).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("replikv: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            // Without signal handlers the node runs until killed.
            std::future::pending::<()>().await;
        }
    }
}
