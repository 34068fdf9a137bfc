//! `replikv sim`: run seeds of the simulator, print the failing ones and a summary.
//!
//! Exit status: 0 when no run broke an asserted property, 1 when one did, 2 for bad
//! arguments.

use super::config::{
    Faults, Properties, Property, SimConfig, SimReport, DURATION_MS_MAX, NODES_MAX,
};
use super::run;
use replikv_core::AckMode;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

/// Exit status: a run broke an asserted property.
pub const EXIT_VIOLATION: u8 = 1;
/// Exit status: bad arguments.
pub const EXIT_USAGE: u8 = 2;
/// Most seeds one invocation runs.
pub const SEEDS_MAX: u64 = 1_000_000;

/// `replikv sim` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// How many seeds to run, from --first-seed on.
    #[arg(long, default_value_t = 100,
        value_parser = clap::value_parser!(u64).range(1..=SEEDS_MAX))]
    pub seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    pub first_seed: u64,
    /// Run this one seed only (with -v, print its trace).
    #[arg(long, conflicts_with_all = ["seeds", "first_seed"])]
    pub seed: Option<u64>,
    /// Acknowledgement mode: `async`, `semi-sync:K`, `sync`, `quorum`, or `all` (each of
    /// async, semi-sync:1, sync and quorum in turn).
    #[arg(long, default_value = "all")]
    pub mode: String,
    /// Nodes in the simulated cluster.
    #[arg(long, default_value_t = 3,
        value_parser = clap::value_parser!(u8).range(1..=NODES_MAX as i64))]
    pub nodes: u8,
    /// Virtual milliseconds of workload and faults per run (then everything heals).
    #[arg(long, default_value_t = 20_000,
        value_parser = clap::value_parser!(u64).range(1..=DURATION_MS_MAX))]
    pub duration_ms: u64,
    /// No operator failover while the leader is down.
    #[arg(long)]
    pub no_promote: bool,
    /// Properties to report without failing, comma-separated: commit-rule, log-matching,
    /// convergence, lost-writes, linearizability, progress.
    #[arg(long, default_value = "")]
    pub report_only: String,
    /// Print the trace of every event (use with --seed).
    #[arg(short, long)]
    pub verbose: bool,
}

/// Runs `replikv sim`; returns the exit status.
#[must_use]
pub fn main(args: SimArgs) -> u8 {
    let mut out = std::io::stdout().lock();
    match run_seeds(&args, &mut out) {
        Ok(code) => code,
        // The reader went away (`| head`): nothing more to say.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("replikv sim: cannot write the report: {e}");
            EXIT_USAGE
        }
    }
}

fn run_seeds(args: &SimArgs, out: &mut impl Write) -> std::io::Result<u8> {
    let modes: Vec<AckMode> = if args.mode.trim() == "all" {
        vec![
            AckMode::Async,
            AckMode::SemiSync(1),
            AckMode::Sync,
            AckMode::Quorum,
        ]
    } else {
        match args.mode.parse::<AckMode>() {
            Ok(m) => vec![m],
            Err(e) => {
                eprintln!("replikv sim: {e}");
                return Ok(EXIT_USAGE);
            }
        }
    };
    let mut report_only = Properties::NONE;
    for name in args.report_only.split(',').filter(|s| !s.trim().is_empty()) {
        match Property::parse(name) {
            Some(p) => report_only.insert(p),
            None => {
                eprintln!("replikv sim: unknown property `{name}`");
                return Ok(EXIT_USAGE);
            }
        }
    }
    let (first, count) = match args.seed {
        Some(s) => (s, 1),
        None => (args.first_seed, args.seeds),
    };
    let started = Instant::now();
    let mut failed = false;
    let mut rows = Vec::new();
    for mode in modes {
        let mut config = SimConfig::new(mode);
        config.nodes = usize::from(args.nodes);
        config.duration_ms = args.duration_ms;
        config.report_only = report_only;
        config.trace = args.verbose;
        if args.no_promote {
            config.faults = Faults {
                promote: false,
                ..config.faults
            };
        }
        let mut sum = Summary::new(mode);
        let mode_started = Instant::now();
        for seed in first..first.saturating_add(count) {
            let report = run(seed, &config);
            if args.verbose {
                for line in &report.trace {
                    writeln!(out, "{line}")?;
                }
                print_report(out, &report)?;
            }
            for v in &report.violations {
                writeln!(out, "seed {seed} mode {mode}: {v}")?;
            }
            if args.verbose || count == 1 {
                for v in &report.findings {
                    writeln!(out, "seed {seed} mode {mode}: finding: {v}")?;
                }
            }
            if !report.passed() {
                failed = true;
                writeln!(
                    out,
                    "  replay: replikv sim --seed {seed} --mode {mode} --nodes {} --duration-ms {}{} -v",
                    args.nodes,
                    args.duration_ms,
                    if args.no_promote { " --no-promote" } else { "" },
                )?;
            }
            sum.add(&report);
        }
        sum.wall_ms = mode_started.elapsed().as_millis();
        rows.push(sum);
    }
    print_summary(out, &rows, started.elapsed().as_millis())?;
    Ok(if failed { EXIT_VIOLATION } else { 0 })
}

/// Totals over the runs of one mode.
struct Summary {
    mode: AckMode,
    runs: u64,
    failed_runs: u64,
    ops_ok: u64,
    ops_fail: u64,
    ops_indeterminate: u64,
    faults: BTreeMap<String, u64>,
    promotions: u64,
    violations: u64,
    findings: BTreeMap<Property, u64>,
    lost_permitted: u64,
    stale_follower_downs: u64,
    events: u64,
    wall_ms: u128,
}

impl Summary {
    fn new(mode: AckMode) -> Summary {
        Summary {
            mode,
            runs: 0,
            failed_runs: 0,
            ops_ok: 0,
            ops_fail: 0,
            ops_indeterminate: 0,
            faults: BTreeMap::new(),
            promotions: 0,
            violations: 0,
            findings: BTreeMap::new(),
            lost_permitted: 0,
            stale_follower_downs: 0,
            events: 0,
            wall_ms: 0,
        }
    }

    fn add(&mut self, r: &SimReport) {
        self.runs += 1;
        self.failed_runs += u64::from(!r.passed());
        self.ops_ok += r.ops_ok;
        self.ops_fail += r.ops_fail;
        self.ops_indeterminate += r.ops_indeterminate;
        for (k, v) in &r.faults {
            *self.faults.entry(k.clone()).or_insert(0) += v;
        }
        self.promotions += r.promotions;
        self.violations += r.violations.len() as u64;
        for f in &r.findings {
            *self.findings.entry(f.property).or_insert(0) += 1;
        }
        self.lost_permitted += r.lost_writes_permitted;
        self.stale_follower_downs += r.stale_follower_downs;
        self.events += r.events;
    }
}

fn print_report(out: &mut impl Write, r: &SimReport) -> std::io::Result<()> {
    writeln!(
        out,
        "seed {} mode {}: ops ok {} fail {} indeterminate {}; faults {:?}; promotions {}; \
         events {}; end {} ms; digest {:016x}",
        r.seed,
        r.mode,
        r.ops_ok,
        r.ops_fail,
        r.ops_indeterminate,
        r.faults,
        r.promotions,
        r.events,
        r.end_ms,
        r.trace_digest
    )
}

fn print_summary(out: &mut impl Write, rows: &[Summary], wall_ms: u128) -> std::io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "{:<12} {:>6} {:>7} {:>9} {:>7} {:>7} {:>6} {:>6} {:>6} {:>6} {:>8} {:>6} {:>6} {:>8}",
        "mode",
        "runs",
        "failed",
        "ops ok",
        "fail",
        "indet",
        "crash",
        "part",
        "loss",
        "delay",
        "promote",
        "viol",
        "lost*",
        "wall ms"
    )?;
    for s in rows {
        let f = |k: &str| s.faults.get(k).copied().unwrap_or(0);
        writeln!(
            out,
            "{:<12} {:>6} {:>7} {:>9} {:>7} {:>7} {:>6} {:>6} {:>6} {:>6} {:>8} {:>6} {:>6} {:>8}",
            s.mode.to_string(),
            s.runs,
            s.failed_runs,
            s.ops_ok,
            s.ops_fail,
            s.ops_indeterminate,
            f("crash"),
            f("partition"),
            f("loss"),
            f("delay"),
            s.promotions,
            s.violations,
            s.lost_permitted,
            s.wall_ms
        )?;
        if !s.findings.is_empty() {
            let list: Vec<String> = s.findings.iter().map(|(p, n)| format!("{p} {n}")).collect();
            writeln!(
                out,
                "{:<12} findings (not failures): {}",
                "",
                list.join(", ")
            )?;
        }
        if s.stale_follower_downs > 0 {
            writeln!(
                out,
                "{:<12} stale follower-down reports: {}",
                "", s.stale_follower_downs
            )?;
        }
    }
    writeln!(
        out,
        "lost* = acknowledged writes lost where the mode permits it (async)"
    )?;
    writeln!(out, "total wall time {wall_ms} ms")
}
