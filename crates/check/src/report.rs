//! A run's report: what ran, how the operations ended, how fast, what every checker concluded,
//! and whether the acknowledgement mode kept its promises. Written as `report.json` and printed
//! as a table for the terminal, with a history excerpt for each violation.

use crate::checker::{Availability, Failovers, Staleness, Status, Verdict};
use crate::endpoints::LeaderChange;
pub use crate::history::{fault_spans, fault_start_of, FaultSpan};
use crate::history::{Call, History, Op, Outcome};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Most operations one violation's excerpt prints.
pub const EXCERPT_OPS_MAX: usize = 12;

/// A node as the report names it.
#[derive(Clone, Debug, Serialize)]
pub struct NodeInfo {
    /// `node<i>`, or the address for targets.
    pub name: String,
    /// Client address, as operations name it.
    pub addr: String,
    /// `leader` or `replica` (at the start of the run, with automatic failover).
    pub role: String,
}

/// The settings of a run.
#[derive(Clone, Debug, Serialize)]
pub struct RunInfo {
    /// When it started, UTC, RFC 3339.
    pub started_at: String,
    /// The acknowledgement mode.
    pub mode: String,
    /// `always` or `interval` (`unknown` for targets).
    pub fsync: String,
    /// The nodes.
    pub nodes: Vec<NodeInfo>,
    /// Whether the checker started the nodes (else it ran against `--targets`).
    pub launched: bool,
    /// The faults chosen from.
    pub nemesis: Vec<String>,
    /// How the nodes were networked and partitions made (network namespaces or the nodes'
    /// fault hook), and why.
    pub net: String,
    /// Length of the workload, s.
    pub duration_s: f64,
    /// Concurrent clients.
    pub clients: u32,
    /// Keys.
    pub keys: u32,
    /// Prefix of the run's keys.
    pub key_prefix: String,
    /// Where reads went.
    pub reads: String,
    /// Rate limit, ops/s.
    pub rate_max: Option<f64>,
    /// Bound on one operation, ms.
    pub op_timeout_ms: u64,
    /// Seed of the workload's and the nemesis' choices.
    pub seed: u64,
    /// Who decided which node leads: `none` (a fixed leader) or `auto` (the nodes' control
    /// plane).
    pub failover: String,
    /// The command line of the leader at the start (launched clusters).
    pub leader_command: Option<String>,
    /// The folder holding this report.
    pub results_dir: String,
}

/// Operations by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// All.
    pub total: u64,
    /// Acknowledged.
    pub ok: u64,
    /// Certainly not applied.
    pub failed: u64,
    /// May or may not have been applied.
    pub indeterminate: u64,
}

impl Counts {
    fn add(&mut self, op: &Op) {
        self.total += 1;
        match op.outcome {
            Outcome::Ok { .. } => self.ok += 1,
            Outcome::Fail { .. } => self.failed += 1,
            Outcome::Indeterminate { .. } => self.indeterminate += 1,
        }
    }
}

/// Latency of the acknowledged operations, ms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// Everything `report.json` holds.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The settings.
    pub run: RunInfo,
    /// Operations by outcome.
    pub ops: Counts,
    /// Operations by outcome for each kind of call.
    pub ops_by_call: BTreeMap<String, Counts>,
    /// Operations by outcome for each node.
    pub ops_by_node: BTreeMap<String, Counts>,
    /// Latency of the acknowledged operations.
    pub latency: Latency,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
    /// The strength of every delay, loss and skew.
    pub fault_params: Vec<crate::nemesis::FaultParam>,
    /// Every checker's verdict.
    pub verdicts: Vec<Verdict>,
    /// Availability in detail.
    pub availability: Availability,
    /// Staleness of reads in detail.
    pub staleness: Staleness,
    /// With automatic failover: the failover time of every fault on the leader.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failovers>,
    /// With automatic failover: every leader the clients followed, from when they found it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub leader_changes: Vec<LeaderChange>,
    /// The checkers whose property the mode promises.
    pub promised: Vec<String>,
    /// The promised checkers that failed.
    pub broken: Vec<String>,
    /// Things that went wrong around the workload (faults not injected or not undone, nodes
    /// that crashed or did not catch up).
    pub problems: Vec<String>,
    /// Nodes that exited without being killed by the nemesis.
    pub crashes: Vec<String>,
    /// The exit status of `replikv check`.
    pub exit_status: u8,
}

/// The name of a call's kind.
#[must_use]
pub fn call_name(call: &Call) -> &'static str {
    match call {
        Call::Read => "read",
        Call::Write { .. } => "write",
        Call::WriteIfAbsent { .. } => "write-if-absent",
        Call::Swap { .. } => "swap",
        Call::Incr { .. } => "incr",
        Call::Delete => "delete",
    }
}

/// Operations by outcome, overall, by call and by node.
#[must_use]
pub fn count(h: &History) -> (Counts, BTreeMap<String, Counts>, BTreeMap<String, Counts>) {
    let mut all = Counts::default();
    let mut by_call: BTreeMap<String, Counts> = BTreeMap::new();
    let mut by_node: BTreeMap<String, Counts> = BTreeMap::new();
    for op in &h.ops {
        all.add(op);
        by_call
            .entry(call_name(&op.call).to_string())
            .or_default()
            .add(op);
        by_node.entry(op.node.clone()).or_default().add(op);
    }
    (all, by_call, by_node)
}

/// Nearest-rank percentile `p` (0 to 100) of sorted values; 0 for none.
#[must_use]
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil().max(1.0);
    // In range: rank is between 1 and len.
    let index = (rank as usize).min(sorted.len()) - 1;
    sorted[index]
}

/// Latency of the acknowledged operations.
#[must_use]
pub fn latency(h: &History) -> Latency {
    let mut ms: Vec<f64> = h
        .ops
        .iter()
        .filter(|op| op.is_ok())
        .map(|op| op.end_us.saturating_sub(op.start_us) as f64 / 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    Latency {
        p50_ms: percentile(&ms, 50.0),
        p99_ms: percentile(&ms, 99.0),
        max_ms: ms.last().copied().unwrap_or(0.0),
    }
}

/// The strength of the fault `span` (`250 ms` for a delay), if it has one.
#[must_use]
pub fn fault_param<'a>(report: &'a Report, span: &FaultSpan) -> Option<&'a str> {
    report
        .fault_params
        .iter()
        .find(|p| p.at_us == span.start_us && p.node == span.node && p.kind == span.kind)
        .map(|p| p.value.as_str())
}

/// Faults injected, by kind (their starts only).
#[must_use]
pub fn fault_counts(h: &History) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for event in &h.faults {
        let is_start = matches!(
            event.kind.as_str(),
            "kill" | "pause" | "partition" | "delay" | "loss" | "skew"
        );
        if is_start {
            *counts.entry(event.kind.clone()).or_insert(0) += 1;
        }
    }
    counts
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Pass => "pass",
        Status::Fail => "FAIL",
        Status::Unknown => "unknown",
    }
}

fn outcome_text(outcome: &Outcome) -> String {
    let value = |v: &Option<String>| v.as_deref().map_or("nil".to_string(), |t| format!("{t:?}"));
    match outcome {
        Outcome::Ok { value: v } => format!("ok {}", value(v)),
        Outcome::Fail { error } => format!("fail: {}", shorten(error, 48)),
        Outcome::Indeterminate { error } => format!("indeterminate: {}", shorten(error, 40)),
    }
}

fn call_text(op: &Op) -> String {
    let detail = match &op.call {
        Call::Read | Call::Delete => String::new(),
        Call::Write { value } | Call::WriteIfAbsent { value } | Call::Swap { value } => {
            format!(" {value:?}")
        }
        Call::Incr { by } => format!(" {by}"),
    };
    format!("{} {}{detail}", call_name(&op.call), op.key)
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// The name of the node at `addr`.
fn node_name<'a>(report: &'a Report, addr: &'a str) -> &'a str {
    report
        .run
        .nodes
        .iter()
        .find(|n| n.addr == addr)
        .map_or(addr, |n| n.name.as_str())
}

/// One line per operation: times, client, node, call, outcome, token.
#[must_use]
pub fn excerpt(report: &Report, h: &History, ids: &[usize]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "      {:>4}  {:>9}  {:>9}  {:>6}  {:<6}  {:<30}  {:<34}  token",
        "op", "start s", "end s", "client", "node", "call", "outcome"
    );
    for &id in ids.iter().take(EXCERPT_OPS_MAX) {
        let Some(op) = h.ops.get(id) else {
            continue;
        };
        let _ = writeln!(
            out,
            "      {:>4}  {:>9.3}  {:>9.3}  {:>6}  {:<6}  {:<30}  {:<34}  {}",
            id,
            op.start_us as f64 / 1e6,
            op.end_us as f64 / 1e6,
            op.client,
            node_name(report, &op.node),
            shorten(&call_text(op), 30),
            outcome_text(&op.outcome),
            op.token.as_deref().unwrap_or("-")
        );
    }
    if ids.len() > EXCERPT_OPS_MAX {
        let _ = writeln!(out, "      ... and {} more", ids.len() - EXCERPT_OPS_MAX);
    }
    out
}

/// One line on the failovers: `failovers: 37 (median 0.71 s, p99 1.30 s, max 1.40 s); 2 leader
/// faults healed before a failover`.
#[must_use]
pub fn failover_line(f: &Failovers) -> String {
    if f.leader_faults.is_empty() {
        return "failovers: 0 (no kill, pause or partition hit the leader)".to_string();
    }
    let mut line = format!("failovers: {}", f.failovers);
    if f.failovers > 0 {
        line.push_str(&format!(
            " (median {:.2} s, p99 {:.2} s, max {:.2} s)",
            f.median_ms / 1000.0,
            f.p99_ms / 1000.0,
            f.max_ms / 1000.0
        ));
    }
    line.push_str(&format!(
        "; {} leader faults healed before a failover",
        f.healed_before_failover
    ));
    line
}

/// The report as a table for the terminal.
#[must_use]
pub fn render(report: &Report, h: &History) -> String {
    let r = &report.run;
    let mut out = String::new();
    let nemesis = if r.nemesis.is_empty() {
        "none".to_string()
    } else {
        r.nemesis.join(",")
    };
    let failover = if r.failover == "auto" {
        ", failover auto"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "replikv check: {} nodes, mode {}, fsync {}{failover}, nemesis {}, {:.0} s, {} clients, {} keys, reads {}, seed {}",
        r.nodes.len(),
        r.mode,
        r.fsync,
        nemesis,
        r.duration_s,
        r.clients,
        r.keys,
        r.reads,
        r.seed
    );
    let _ = writeln!(out, "results: {}", r.results_dir);
    let _ = writeln!(out, "network: {}", r.net);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  {:<18} {:>8} {:>8} {:>8} {:>14}",
        "operations", "total", "ok", "failed", "indeterminate"
    );
    let row = |out: &mut String, name: &str, c: &Counts| {
        let _ = writeln!(
            out,
            "  {:<18} {:>8} {:>8} {:>8} {:>14}",
            name, c.total, c.ok, c.failed, c.indeterminate
        );
    };
    row(&mut out, "all", &report.ops);
    for (name, c) in &report.ops_by_call {
        row(&mut out, &format!("  {name}"), c);
    }
    for (addr, c) in &report.ops_by_node {
        let name = format!("  on {}", node_name(report, addr));
        row(&mut out, &name, c);
    }
    let l = &report.latency;
    let _ = writeln!(
        out,
        "\n  latency of ok ops: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        l.p50_ms, l.p99_ms, l.max_ms
    );
    let faults = if report.faults.is_empty() {
        "none".to_string()
    } else {
        report
            .faults
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(out, "  faults injected: {faults}");
    let end_us = h.ops.iter().map(|op| op.end_us).max().unwrap_or(0);
    let spans = fault_spans(h, end_us);
    for line in spans.chunks(3) {
        let cells: Vec<String> = line
            .iter()
            .map(|f| {
                let what = match fault_param(report, f) {
                    Some(value) => format!("{} {value}", f.kind),
                    None => f.kind.clone(),
                };
                format!(
                    "{:>6.1}–{:<6.1}s {:<14} {:<6}",
                    f.start_us as f64 / 1e6,
                    f.end_us as f64 / 1e6,
                    what,
                    node_name(report, &f.node)
                )
            })
            .collect();
        let _ = writeln!(out, "    {}", cells.join("   ").trim_end());
    }
    if let Some(f) = &report.failover {
        let _ = writeln!(out, "  {}", failover_line(f));
    }
    let _ = writeln!(out);
    // Wide enough for every name and its promise mark, and never narrower than it always was.
    let width = report
        .verdicts
        .iter()
        .map(|v| v.checker.chars().count() + 2)
        .max()
        .unwrap_or(0)
        .max(18);
    let _ = writeln!(
        out,
        "  {:<width$} {:<8} {:>10}  summary",
        "checker", "status", "violations"
    );
    for v in &report.verdicts {
        let promised = if report.promised.contains(&v.checker) {
            "*"
        } else {
            " "
        };
        let _ = writeln!(
            out,
            "  {:<width$} {:<8} {:>10}  {}",
            format!("{}{promised}", v.checker),
            status_name(v.status),
            v.violations,
            v.summary
        );
    }
    let promised = if report.promised.is_empty() {
        format!(
            "mode {} with fsync {} promises none of these across kill -9: report only",
            r.mode, r.fsync
        )
    } else {
        format!("* promised by mode {} with fsync {}", r.mode, r.fsync)
    };
    let _ = writeln!(out, "  {promised}");
    for v in &report.verdicts {
        if v.status != Status::Fail {
            continue;
        }
        let Some(example) = v.examples.first() else {
            continue;
        };
        let _ = writeln!(out, "\n  {} violation: {}", v.checker, example.what);
        out.push_str(&excerpt(report, h, &example.ops));
    }
    if !report.crashes.is_empty() || !report.problems.is_empty() {
        let _ = writeln!(out);
    }
    for crash in &report.crashes {
        let _ = writeln!(out, "  CRASH: {crash}");
    }
    for problem in &report.problems {
        let _ = writeln!(out, "  note: {problem}");
    }
    let _ = writeln!(out);
    let verdict = match report.exit_status {
        0 if report.promised.is_empty() => {
            "REPORT ONLY: the mode promises none of these properties (exit 0)".to_string()
        }
        0 => "PASS: every promised property held (exit 0)".to_string(),
        _ if !report.broken.is_empty() => format!(
            "FAIL: mode {} broke its promise: {} (exit {})",
            r.mode,
            report.broken.join(", "),
            report.exit_status
        ),
        _ => format!("FAIL: a node crashed (exit {})", report.exit_status),
    };
    let _ = writeln!(out, "{verdict}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 50.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn fault_starts_pair_with_their_ends_and_open_ones_run_to_the_end() {
        let e = |at_us, kind: &str, node: &str| crate::history::FaultEvent {
            at_us,
            kind: kind.into(),
            nodes: vec![node.into()],
            leader: false,
        };
        let h = History {
            faults: vec![
                e(10, "kill", "a"),
                e(12, "pause", "b"),
                e(20, "restart", "a"),
                e(30, "partition", "c"),
            ],
            ..History::default()
        };
        let got: Vec<_> = fault_spans(&h, 99)
            .into_iter()
            .map(|s| (s.kind, s.node, s.start_us, s.end_us))
            .collect();
        assert_eq!(
            got,
            [
                ("kill".into(), "a".into(), 10, 20),
                ("pause".into(), "b".into(), 12, 99),
                ("partition".into(), "c".into(), 30, 99)
            ]
        );
    }

    #[test]
    fn the_failover_line_gives_the_count_the_times_and_the_faults_without_one() {
        let fault = |failover_ms: Option<f64>| crate::checker::LeaderFault {
            kind: "kill".into(),
            node: "a".into(),
            start_us: 0,
            end_us: 1,
            failover_ms,
            new_leader: None,
            first_write: None,
        };
        let f = Failovers {
            failovers: 37,
            healed_before_failover: 2,
            median_ms: 710.0,
            p99_ms: 1300.0,
            max_ms: 1412.0,
            leader_faults: vec![fault(Some(710.0)), fault(None)],
        };
        assert_eq!(
            failover_line(&f),
            "failovers: 37 (median 0.71 s, p99 1.30 s, max 1.41 s); 2 leader faults healed \
             before a failover"
        );
        let healed_only = Failovers {
            healed_before_failover: 1,
            leader_faults: vec![fault(None)],
            ..Failovers::default()
        };
        assert_eq!(
            failover_line(&healed_only),
            "failovers: 0; 1 leader faults healed before a failover"
        );
        assert!(failover_line(&Failovers::default()).contains("no kill, pause or partition"));
    }

    #[test]
    fn counts_split_by_outcome() {
        let op = |outcome| Op {
            client: 0,
            node: "n".into(),
            key: "k".into(),
            call: Call::Read,
            start_us: 0,
            end_us: 1000,
            outcome,
            token: None,
        };
        let h = History {
            ops: vec![
                op(Outcome::Ok { value: None }),
                op(Outcome::Fail { error: "x".into() }),
                op(Outcome::Indeterminate { error: "y".into() }),
                op(Outcome::Ok { value: None }),
            ],
            ..History::default()
        };
        let (all, by_call, by_node) = count(&h);
        assert_eq!(
            all,
            Counts {
                total: 4,
                ok: 2,
                failed: 1,
                indeterminate: 1
            }
        );
        assert_eq!(by_call["read"], all);
        assert_eq!(by_node["n"], all);
        assert_eq!(latency(&h).max_ms, 1.0);
    }
}
