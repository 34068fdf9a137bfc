//! `replikv sim`: run seeds of the simulator, print the failing ones and a summary.
//!
//! Exit status: 0 when no run broke an asserted property, 1 when one did, 2 for bad
//! arguments.

use super::config::{
    quantile, ControlBug, Failover, Faults, Properties, Property, SimConfig, SimReport,
    DURATION_MS_MAX, NODES_MAX,
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
    /// Who fails over: `operator` (promote the most up-to-date replica while the leader is
    /// down) or `auto` (every node runs the control plane, which elects the leader).
    #[arg(long, default_value = "operator")]
    pub failover: String,
    /// Plant a control-plane bug (with `--failover auto`), to see the checks catch it:
    /// `grant-without-read-index`, `lease-too-long` or `election-ignores-mode`.
    #[arg(long, default_value = "none")]
    pub plant: String,
    /// Properties to report without failing, comma-separated: commit-rule, log-matching,
    /// convergence, lost-writes, linearizability, progress.
    #[arg(long, default_value = "")]
    pub report_only: String,
    /// Print the trace of every event (use with --seed).
    #[arg(short, long)]
    pub verbose: bool,
    /// Print each run's one-line report (and, under `--failover auto`, its elections and
    /// scenarios): for choosing seeds that hit a scenario.
    #[arg(long)]
    pub per_seed: bool,
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
    let Some(failover) = Failover::parse(&args.failover) else {
        eprintln!(
            "replikv sim: unknown failover `{}` (operator or auto)",
            args.failover
        );
        return Ok(EXIT_USAGE);
    };
    let Some(plant) = ControlBug::parse(&args.plant) else {
        eprintln!("replikv sim: unknown planted bug `{}`", args.plant);
        return Ok(EXIT_USAGE);
    };
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
        config.failover = failover;
        config.control_bug = plant;
        if args.no_promote {
            config.faults = Faults {
                promote: false,
                ..config.faults
            };
        }
        let mut sum = Summary::new(mode);
        sum.auto = failover == Failover::Auto;
        let mode_started = Instant::now();
        for seed in first..first.saturating_add(count) {
            let report = run(seed, &config);
            if args.verbose {
                for line in &report.trace {
                    writeln!(out, "{line}")?;
                }
            }
            if args.verbose || args.per_seed {
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
                    "  replay: replikv sim --seed {seed} --mode {mode} --nodes {} --duration-ms {}{}{}{} -v",
                    args.nodes,
                    args.duration_ms,
                    if args.no_promote { " --no-promote" } else { "" },
                    if failover == Failover::Auto { " --failover auto" } else { "" },
                    if plant == ControlBug::None {
                        String::new()
                    } else {
                        format!(" --plant {}", plant.name())
                    },
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
    auto: bool,
    elections: u64,
    failovers: u64,
    failovers_leader_alive: u64,
    failovers_leader_cut_off: u64,
    failovers_max_in_5s: u64,
    elections_past_lagging: u64,
    stepped_down: u64,
    replica_partitions: u64,
    divergent_resyncs: u64,
    divergent_truncations: u64,
    divergent_entries: u64,
    failover_ms: Vec<u64>,
    elected_ms: Vec<u64>,
    ridden_out: u64,
    healed_write_ms: Vec<u64>,
    run_medians_ms: Vec<u64>,
    control_events: BTreeMap<String, u64>,
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
            auto: false,
            elections: 0,
            failovers: 0,
            failovers_leader_alive: 0,
            failovers_leader_cut_off: 0,
            failovers_max_in_5s: 0,
            elections_past_lagging: 0,
            stepped_down: 0,
            replica_partitions: 0,
            divergent_resyncs: 0,
            divergent_truncations: 0,
            divergent_entries: 0,
            failover_ms: Vec::new(),
            elected_ms: Vec::new(),
            ridden_out: 0,
            healed_write_ms: Vec::new(),
            run_medians_ms: Vec::new(),
            control_events: BTreeMap::new(),
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
        let a = &r.auto;
        self.elections += a.elections;
        self.failovers += a.failovers;
        self.failovers_leader_alive += a.failovers_leader_alive;
        self.failovers_leader_cut_off += a.failovers_leader_cut_off;
        self.failovers_max_in_5s = self.failovers_max_in_5s.max(a.failovers_max_in_5s);
        self.elections_past_lagging += a.elections_past_lagging;
        self.stepped_down += a.stepped_down;
        self.replica_partitions += a.replica_partitions;
        self.divergent_resyncs += a.divergent_resyncs;
        self.divergent_truncations += a.divergent_truncations;
        self.divergent_entries += a.divergent_entries;
        self.failover_ms.extend(&a.failover_ms);
        self.elected_ms.extend(&a.elected_ms);
        self.ridden_out += a.leader_faults_ridden_out;
        self.healed_write_ms.extend(a.healed_write_ms);
        self.run_medians_ms.extend(quantile(&a.failover_ms, 0.5));
        for (k, v) in &a.events {
            *self.control_events.entry(k.clone()).or_insert(0) += v;
        }
    }
}

/// `median / p99 / max (n)` of `values`, in ms.
fn spread(values: &[u64]) -> String {
    match (
        quantile(values, 0.5),
        quantile(values, 0.99),
        values.iter().max(),
    ) {
        (Some(m), Some(p), Some(x)) => {
            format!(
                "median {m} / p99 {p} / max {x} ms ({} of them)",
                values.len()
            )
        }
        _ => "none".to_string(),
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
    )?;
    let a = &r.auto;
    if a.elections > 0 || !a.events.is_empty() {
        writeln!(
            out,
            "  elections {}; failovers {} (leader alive {}, cut off {}, most in 5 s {}); \
             past a lagging replica {}; stepped down {}; replica partitions {}; \
             divergent resyncs {}, truncations {} ({} entries); failover time {}; \
             first write after healing {:?} ms; controller events {:?}",
            a.elections,
            a.failovers,
            a.failovers_leader_alive,
            a.failovers_leader_cut_off,
            a.failovers_max_in_5s,
            a.elections_past_lagging,
            a.stepped_down,
            a.replica_partitions,
            a.divergent_resyncs,
            a.divergent_truncations,
            a.divergent_entries,
            spread(&a.failover_ms),
            a.healed_write_ms,
            a.events
        )?;
    }
    Ok(())
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
        if s.auto {
            writeln!(
                out,
                "{:<12} elections {}; failovers {} (leader alive {}, cut off {}, most in 5 s {}); past a lagging replica {}; stepped down {}; replica partitions {}; divergent resyncs {}, truncations {} ({} entries); pauses {}; slow {}",
                "",
                s.elections,
                s.failovers,
                s.failovers_leader_alive,
                s.failovers_leader_cut_off,
                s.failovers_max_in_5s,
                s.elections_past_lagging,
                s.stepped_down,
                s.replica_partitions,
                s.divergent_resyncs,
                s.divergent_truncations,
                s.divergent_entries,
                f("pause"),
                f("slow")
            )?;
            writeln!(
                out,
                "{:<12} failover (fault on the leader -> first write in a newer epoch): {}; per-run medians: {}; leader faults ridden out: {}",
                "",
                spread(&s.failover_ms),
                spread(&s.run_medians_ms),
                s.ridden_out
            )?;
            writeln!(
                out,
                "{:<12} of which the election (fault on the leader -> Elect of a newer epoch applied): {}",
                "",
                spread(&s.elected_ms)
            )?;
            writeln!(
                out,
                "{:<12} first write after the faults ended: {}",
                "",
                spread(&s.healed_write_ms)
            )?;
            let events: Vec<String> = s
                .control_events
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            writeln!(out, "{:<12} controller events: {}", "", events.join(", "))?;
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
