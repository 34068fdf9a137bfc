//! The run drawn as an SVG timeline: one lane per node, time running left to right.
//!
//! Each lane shows, on top, how many operations completed in each slice of time, stacked by
//! outcome (ok, failed, indeterminate), and below, every operation as a short bar from its
//! invocation to its reply, one row per client (clients share rows when there are many).
//! Faults are shaded over the lane of the node they hit and labelled; windows in which no
//! operation succeeded are marked along the top; operations named by a violation carry a black
//! marker. Hovering over a bar, a fault or a marker shows its details.

use crate::history::{History, Op, Outcome};
use crate::report::{call_name, fault_spans, Report};
use std::collections::HashSet;
use std::fmt::Write as _;

const WIDTH: f64 = 1400.0;
const LEFT: f64 = 120.0;
const RIGHT: f64 = 30.0;
const HEADER: f64 = 92.0;
const LANE_GAP: f64 = 14.0;
const HIST_HEIGHT: f64 = 56.0;
/// Most client rows in a lane; more clients share rows.
const ROWS_MAX: usize = 24;
/// Height of the client rows together, at most.
const ROWS_HEIGHT: f64 = 96.0;
/// Tallest client row.
const ROW_HEIGHT_MAX: f64 = 10.0;
const AXIS: f64 = 40.0;
/// Time slices of the histogram.
const BUCKETS: usize = 280;
/// Most operation bars drawn per lane; past it, quick acknowledged operations are thinned
/// evenly (failed, indeterminate and slow ones are always drawn).
const BARS_PER_LANE_MAX: usize = 6000;
/// Operations at least this slow (µs) are always drawn, however many there are.
const SLOW_US: u64 = 100_000;

const OK: &str = "#43a047";
const FAILED: &str = "#e53935";
const INDETERMINATE: &str = "#fb8c00";

/// Client rows per lane and the height of each.
#[derive(Clone, Copy)]
struct Rows {
    count: usize,
    height: f64,
}

impl Rows {
    fn for_clients(clients: usize) -> Rows {
        let count = clients.clamp(1, ROWS_MAX);
        Rows {
            count,
            height: (ROWS_HEIGHT / count as f64).min(ROW_HEIGHT_MAX),
        }
    }

    fn lane_height(self) -> f64 {
        HIST_HEIGHT + 8.0 + self.count as f64 * self.height + 6.0
    }
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn colour(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Ok { .. } => OK,
        Outcome::Fail { .. } => FAILED,
        Outcome::Indeterminate { .. } => INDETERMINATE,
    }
}

fn fault_colour(kind: &str) -> &'static str {
    match kind {
        "kill" => "#c62828",
        "pause" => "#1565c0",
        "partition" => "#6a1b9a",
        "delay" => "#ef6c00",
        "loss" => "#2e7d32",
        "skew" => "#00838f",
        _ => "#616161",
    }
}

/// A tick step of about a tenth of the run, in seconds: 1, 2, 5, 10, ...
fn tick_step(total_s: f64) -> f64 {
    let raw = (total_s / 10.0).max(0.001);
    let magnitude = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if raw <= m * magnitude {
            return m * magnitude;
        }
    }
    10.0 * magnitude
}

fn op_title(id: usize, op: &Op, name: &str) -> String {
    let outcome = match &op.outcome {
        Outcome::Ok { value } => format!("ok {}", value.as_deref().unwrap_or("nil")),
        Outcome::Fail { error } => format!("failed: {error}"),
        Outcome::Indeterminate { error } => format!("indeterminate: {error}"),
    };
    format!(
        "op {id}, client {} on {name}: {} {} at {:.3}–{:.3} s: {outcome}{}",
        op.client,
        call_name(&op.call),
        op.key,
        op.start_us as f64 / 1e6,
        op.end_us as f64 / 1e6,
        op.token
            .as_deref()
            .map(|t| format!(", token {t}"))
            .unwrap_or_default()
    )
}

/// The timeline of `h` as an SVG document.
#[must_use]
pub fn svg(report: &Report, h: &History) -> String {
    let nodes: Vec<(String, String)> = report
        .run
        .nodes
        .iter()
        .map(|n| (n.addr.clone(), format!("{} ({})", n.name, n.role)))
        .collect();
    let last_us = h
        .ops
        .iter()
        .map(|op| op.end_us)
        .chain(h.faults.iter().map(|f| f.at_us))
        .max()
        .unwrap_or(0);
    let total_us = last_us.max((report.run.duration_s * 1e6) as u64).max(1);
    let plot = WIDTH - LEFT - RIGHT;
    let x = |us: u64| LEFT + us as f64 / total_us as f64 * plot;
    let clients: HashSet<u32> = h.ops.iter().map(|op| op.client).collect();
    let rows = Rows::for_clients(clients.len());
    let lane_height = || rows.lane_height();
    let lanes = nodes.len().max(1);
    let height = HEADER + lanes as f64 * (lane_height() + LANE_GAP) + AXIS;
    let lane_top = |i: usize| HEADER + i as f64 * (lane_height() + LANE_GAP);
    let mut s = String::with_capacity(1 << 20);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="system-ui, sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);

    // Header: what ran and what the checkers said.
    let r = &report.run;
    let nemesis = if r.nemesis.is_empty() {
        "none".to_string()
    } else {
        r.nemesis.join(",")
    };
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="16" font-weight="bold">replikv check: mode {} · fsync {} · nemesis {} · {:.0} s · {} clients · {} keys · reads {}</text>"#,
        esc(&r.mode),
        esc(&r.fsync),
        esc(&nemesis),
        r.duration_s,
        r.clients,
        r.keys,
        esc(&r.reads)
    );
    let verdicts: Vec<String> = report
        .verdicts
        .iter()
        .map(|v| {
            let status = match v.status {
                crate::checker::Status::Pass => "pass",
                crate::checker::Status::Fail => "FAIL",
                crate::checker::Status::Unknown => "unknown",
            };
            format!("{} {status}", v.checker)
        })
        .collect();
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="42">{} ops: {} ok, {} failed, {} indeterminate · {}</text>"#,
        report.ops.total,
        report.ops.ok,
        report.ops.failed,
        report.ops.indeterminate,
        esc(&verdicts.join(" · "))
    );
    // Legend.
    let mut legend = vec![
        (OK, "ok", 0.9),
        (FAILED, "failed", 0.9),
        (INDETERMINATE, "indeterminate", 0.9),
    ];
    // The faults this run chose from (the three classic ones when it names none).
    for (name, kind, label) in [
        ("kill", "kill", "kill -9"),
        ("pause", "pause", "pause"),
        ("partition", "partition", "partition"),
        ("delay", "delay", "delay"),
        ("loss", "loss", "loss"),
        ("clock", "skew", "clock skew"),
    ] {
        let shown = if report.run.nemesis.is_empty() {
            matches!(name, "kill" | "pause" | "partition")
        } else {
            report.run.nemesis.iter().any(|n| n == name)
        };
        if shown {
            legend.push((fault_colour(kind), label, 0.25));
        }
    }
    legend.push(("#b71c1c", "no op succeeded", 0.5));
    let mut lx = LEFT;
    for (fill, label, opacity) in legend {
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="54" width="14" height="10" fill="{fill}" fill-opacity="{opacity}"/><text x="{}" y="63">{label}</text>"#,
            lx + 18.0
        );
        lx += 26.0 + label.len() as f64 * 7.0;
    }
    let _ = writeln!(
        s,
        r#"<path d="M{lx} 54 l5 9 l5 -9 z" fill="black"/><text x="{}" y="63">in a violation</text>"#,
        lx + 14.0
    );

    // Unavailability windows along the top of the plot.
    for w in &report.availability.windows {
        let (x0, x1) = (x(w.start_us), x(w.end_us));
        let _ = writeln!(
            s,
            r##"<rect x="{x0:.1}" y="{}" width="{:.1}" height="6" fill="#b71c1c" fill-opacity="0.5"><title>no operation succeeded from {:.3} s to {:.3} s</title></rect>"##,
            HEADER - 12.0,
            (x1 - x0).max(1.0),
            w.start_us as f64 / 1e6,
            w.end_us as f64 / 1e6
        );
    }

    let marked: HashSet<usize> = report
        .verdicts
        .iter()
        .filter(|v| v.status == crate::checker::Status::Fail)
        .flat_map(|v| v.examples.iter().flat_map(|e| e.ops.iter().copied()))
        .collect();
    let spans = fault_spans(h, total_us);
    let bucket_us = (total_us / BUCKETS as u64).max(1);

    // Histogram scale: the fullest slice of any lane.
    let mut buckets: Vec<Vec<[u32; 3]>> = vec![vec![[0; 3]; BUCKETS + 1]; lanes];
    let lane_of = |addr: &str| nodes.iter().position(|(a, _)| a == addr);
    for op in &h.ops {
        let Some(lane) = lane_of(&op.node) else {
            continue;
        };
        let b = usize::try_from(op.end_us / bucket_us)
            .unwrap_or(BUCKETS)
            .min(BUCKETS);
        let k = match op.outcome {
            Outcome::Ok { .. } => 0,
            Outcome::Fail { .. } => 1,
            Outcome::Indeterminate { .. } => 2,
        };
        buckets[lane][b][k] += 1;
    }
    let fullest = buckets
        .iter()
        .flatten()
        .map(|c| c.iter().sum::<u32>())
        .max()
        .unwrap_or(1)
        .max(1);

    for (i, (addr, label)) in nodes.iter().enumerate() {
        let top = lane_top(i);
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{top:.1}" width="{plot:.1}" height="{:.1}" fill="#f5f5f5"/>"##,
            lane_height()
        );
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{:.1}" text-anchor="end" font-weight="bold">{}</text><text x="{}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
            LEFT - 8.0,
            top + 18.0,
            esc(label.split(' ').next().unwrap_or(label)),
            LEFT - 8.0,
            top + 34.0,
            esc(addr),
        );
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{:.1}" text-anchor="end" fill="#555">{}</text><text x="{}" y="{:.1}" text-anchor="end" fill="#999" font-size="10">{fullest} ops/slice max</text>"##,
            LEFT - 8.0,
            top + 50.0,
            esc(label.split(' ').nth(1).unwrap_or("")),
            LEFT - 8.0,
            top + 66.0,
        );
        // Faults on this node, under everything else.
        for span in spans.iter().filter(|sp| &sp.node == addr) {
            let (x0, x1) = (x(span.start_us), x(span.end_us));
            let fill = fault_colour(&span.kind);
            let what = match span.kind.as_str() {
                "kill" => "killed (kill -9) until restarted",
                "pause" => "paused (SIGSTOP) until resumed",
                "partition" => "cut off until healed",
                "delay" => "replication links delayed both ways",
                "loss" => "replication links dropping at random",
                "skew" => "wall clock skewed",
                _ => "fault",
            };
            let what = match crate::report::fault_param(report, span) {
                Some(value) => format!("{what} ({value})"),
                None => what.to_string(),
            };
            let _ = writeln!(
                s,
                r#"<rect x="{x0:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{fill}" fill-opacity="0.18" stroke="{fill}" stroke-opacity="0.6"><title>{} {what}: {:.3}–{:.3} s</title></rect><text x="{:.1}" y="{:.1}" fill="{fill}" font-size="11" font-weight="bold">{}</text>"#,
                (x1 - x0).max(1.0),
                lane_height(),
                esc(label.split(' ').next().unwrap_or(label)),
                span.start_us as f64 / 1e6,
                span.end_us as f64 / 1e6,
                x0 + 3.0,
                top + 12.0,
                esc(&span.kind)
            );
        }
        // Histogram.
        let base = top + HIST_HEIGHT;
        let bw = plot / BUCKETS as f64;
        for (b, c) in buckets[i].iter().enumerate().take(BUCKETS) {
            let mut y = base;
            for (k, fill) in [OK, FAILED, INDETERMINATE].iter().enumerate() {
                if c[k] == 0 {
                    continue;
                }
                let h_px = f64::from(c[k]) / f64::from(fullest) * (HIST_HEIGHT - 4.0);
                y -= h_px;
                let _ = writeln!(
                    s,
                    r#"<rect x="{:.1}" y="{y:.1}" width="{:.2}" height="{h_px:.2}" fill="{fill}"/>"#,
                    LEFT + b as f64 * bw,
                    bw.max(0.5)
                );
            }
        }
        // Operation bars, one row per client.
        let lane_ops: Vec<(usize, &Op)> = h
            .ops
            .iter()
            .enumerate()
            .filter(|(_, op)| &op.node == addr)
            .collect();
        let ok_count = lane_ops.iter().filter(|(_, op)| op.is_ok()).count();
        let keep_every = ok_count.div_ceil(BARS_PER_LANE_MAX).max(1);
        let rows_top = base + 8.0;
        let mut ok_seen = 0usize;
        for (id, op) in &lane_ops {
            let slow = op.end_us.saturating_sub(op.start_us) >= SLOW_US;
            if op.is_ok() && !slow {
                ok_seen += 1;
                if !ok_seen.is_multiple_of(keep_every) && !marked.contains(id) {
                    continue;
                }
            }
            let row = op.client as usize % rows.count;
            let y = rows_top + row as f64 * rows.height;
            let (x0, x1) = (x(op.start_us), x(op.end_us));
            let _ = writeln!(
                s,
                r#"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}</title></rect>"#,
                (x1 - x0).max(1.0),
                (rows.height - 1.0).max(1.0),
                colour(&op.outcome),
                esc(&op_title(*id, op, label))
            );
        }
        for (id, op) in lane_ops.iter().filter(|(id, _)| marked.contains(id)) {
            let row = op.client as usize % rows.count;
            let y = rows_top + row as f64 * rows.height;
            let _ = writeln!(
                s,
                r#"<path d="M{:.1} {:.1} l-4 -7 l8 0 z" fill="black"><title>{}</title></path>"#,
                x(op.start_us),
                y,
                esc(&op_title(*id, op, label))
            );
        }
    }

    // Time axis.
    let axis_y = HEADER + lanes as f64 * (lane_height() + LANE_GAP) + 4.0;
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{axis_y:.1}" x2="{:.1}" y2="{axis_y:.1}" stroke="#333"/>"##,
        LEFT + plot
    );
    let total_s = total_us as f64 / 1e6;
    let step = tick_step(total_s);
    let mut t = 0.0;
    for _ in 0..200 {
        if t > total_s + 1e-9 {
            break;
        }
        let tx = LEFT + t / total_s * plot;
        let _ = writeln!(
            s,
            r##"<line x1="{tx:.1}" y1="{HEADER}" x2="{tx:.1}" y2="{:.1}" stroke="#000" stroke-opacity="0.08"/><line x1="{tx:.1}" y1="{axis_y:.1}" x2="{tx:.1}" y2="{:.1}" stroke="#333"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle">{} s</text>"##,
            axis_y,
            axis_y + 5.0,
            axis_y + 18.0,
            if step < 1.0 {
                format!("{t:.1}")
            } else {
                format!("{t:.0}")
            }
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#555">time since the run started · bars: one operation, invocation to reply, one row per client · columns: operations completed per {:.0} ms</text>"##,
        LEFT + plot / 2.0,
        axis_y + 34.0,
        bucket_us as f64 / 1000.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(tick_step(30.0), 5.0);
        assert_eq!(tick_step(8.0), 1.0);
        assert_eq!(tick_step(120.0), 20.0);
    }
}
