//! `replikv check`: one command starts a 3-node cluster, runs a concurrent workload while
//! killing and pausing nodes, checks the history, and writes its report. Under `sync` every
//! acknowledged write must survive and leader reads must be linearizable, so the command exits
//! 0; the report names both verdicts, and a timeline is drawn.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Node i's admin port is the base port + 100 + i (as `replikv check` documents).
const ADMIN_PORT_OFFSET: u16 = 100;
/// Nodes every run here starts.
const NODES: u16 = 3;
/// Runs tried on fresh port ranges when another process took a probed port meanwhile.
const ATTEMPTS_MAX: usize = 5;

/// A base port whose client and admin ports are all free on loopback right now.
fn free_base_port() -> u16 {
    for _ in 0..100 {
        let probe = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let base = probe.local_addr().expect("local addr").port();
        drop(probe);
        if u32::from(base) + u32::from(ADMIN_PORT_OFFSET + NODES) > 65_535 {
            continue;
        }
        let all_free = (0..NODES)
            .flat_map(|i| [base + i, base + ADMIN_PORT_OFFSET + i])
            .all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no free port range on loopback");
}

/// Runs `replikv check` with `args` on a free port range, writing into `results`; retried on
/// another range when a port was taken between the probe and the start.
fn check(results: &Path, args: &[&str]) -> Output {
    let mut last = None;
    for _ in 0..ATTEMPTS_MAX {
        let base = free_base_port().to_string();
        let out = Command::new(env!("CARGO_BIN_EXE_replikv"))
            .arg("check")
            .args(args)
            .args(["--results", results.to_str().expect("utf-8 temp path")])
            .args(["--base-port", &base])
            .stdin(Stdio::null())
            .output()
            .expect("run replikv check");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("is not free") || stderr.contains("cannot listen") {
            eprintln!("ports around {base} were taken meanwhile; another range");
            last = Some(out);
            continue;
        }
        return out;
    }
    last.expect("at least one attempt")
}

/// The single run folder under `results`.
fn run_dir(results: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(results)
        .expect("results folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "one run folder: {dirs:?}");
    dirs.into_iter().next().expect("one folder")
}

fn text(out: &Output) -> String {
    format!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Checks a finished run's folder: operations recorded, the two verdicts `sync` promises, a
/// timeline and a history.
fn assert_report(dir: &Path, faults: &[&str]) -> serde_json::Value {
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("report.json")).expect("report.json written"),
    )
    .expect("report.json is JSON");
    assert!(report["ops"]["total"].as_u64().unwrap_or(0) > 0, "{report}");
    assert!(report["ops"]["ok"].as_u64().unwrap_or(0) > 0, "{report}");
    let verdicts = report["verdicts"].as_array().expect("verdicts");
    for name in ["lost_writes", "linearizability"] {
        let v = verdicts
            .iter()
            .find(|v| v["checker"] == name)
            .unwrap_or_else(|| panic!("no {name} verdict: {report}"));
        assert_ne!(v["status"], "fail", "{name}: {v}");
    }
    for kind in faults {
        assert!(
            report["faults"][kind].as_u64().unwrap_or(0) > 0,
            "no {kind} fault injected: {}",
            report["faults"]
        );
    }
    let svg = std::fs::read_to_string(dir.join("timeline.svg")).expect("timeline.svg written");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    let history: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("history.json")).expect("history.json written"),
    )
    .expect("history.json is JSON");
    assert_eq!(
        history["ops"].as_array().map(Vec::len),
        report["ops"]["total"]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
    );
    assert_eq!(
        history["final_reads"].as_array().map(Vec::len),
        Some(usize::from(NODES)),
        "every node read back"
    );
    report
}

#[test]
fn sync_keeps_every_acknowledged_write_and_reads_linearizable_under_kill_and_pause() {
    eprintln!("phase: a short sync run under kill -9 and pause must keep its promises");
    let results = tempfile::tempdir().expect("temporary directory");
    let out = check(
        results.path(),
        &[
            "--nodes",
            "3",
            "--mode",
            "sync",
            "--nemesis",
            "kill,pause",
            "--duration",
            "8",
            "--clients",
            "4",
            "--keys",
            "4",
            "--seed",
            "7",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    eprintln!("phase: the report, history and timeline are in the run folder");
    let report = assert_report(&run_dir(results.path()), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("lost_writes*"), "{stdout}");
    assert!(stdout.contains("PASS"), "{stdout}");
    assert_eq!(report["exit_status"], 0);
}

#[test]
fn partitions_are_injected_through_the_fault_hook_and_healed() {
    eprintln!("phase: a short sync run that only partitions nodes, through the fault hook");
    let results = tempfile::tempdir().expect("temporary directory");
    let out = check(
        results.path(),
        &[
            "--nodes",
            "3",
            "--mode",
            "sync",
            "--net",
            "hook",
            "--nemesis",
            "partition",
            "--duration",
            "8",
            "--clients",
            "4",
            "--keys",
            "4",
            "--seed",
            "11",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    eprintln!("phase: partitions were injected, healed, and every node was read back");
    let dir = run_dir(results.path());
    let report = assert_report(&dir, &["partition"]);
    let problems = report["problems"].as_array().expect("problems");
    assert!(
        problems.is_empty(),
        "faults not injected or undone: {problems:?}"
    );
    assert!(
        report["run"]["net"]
            .as_str()
            .unwrap_or("")
            .starts_with("hook"),
        "{}",
        report["run"]
    );
}

#[test]
fn delay_loss_and_clock_skew_are_injected_with_their_strength_and_undone() {
    eprintln!("phase: a short sync run with delays, losses and clock skews only");
    let results = tempfile::tempdir().expect("temporary directory");
    let out = check(
        results.path(),
        &[
            "--nodes",
            "3",
            "--mode",
            "sync",
            "--nemesis",
            "delay,loss,clock",
            "--duration",
            "10",
            "--clients",
            "4",
            "--keys",
            "4",
            "--seed",
            "5",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    eprintln!("phase: every fault started, ended and shows its strength");
    let report = assert_report(&run_dir(results.path()), &[]);
    let problems = report["problems"].as_array().expect("problems");
    assert!(
        problems.is_empty(),
        "faults not injected or undone: {problems:?}"
    );
    let faults = report["faults"].as_object().expect("fault counts");
    let injected: u64 = faults.values().filter_map(serde_json::Value::as_u64).sum();
    assert!(injected >= 2, "too few faults: {faults:?}");
    for kind in faults.keys() {
        assert!(["delay", "loss", "skew"].contains(&kind.as_str()), "{kind}");
    }
    let params = report["fault_params"].as_array().expect("fault_params");
    assert_eq!(params.len() as u64, injected, "{params:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(" ms ") || stdout.contains('%'), "{stdout}");
}

/// Whether this process is root and can make network namespaces; why not otherwise.
fn netns_usable() -> Result<(), String> {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root".to_string());
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`ip netns list` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => Err(format!("cannot run `ip`: {e}")),
    }
}

#[test]
fn partitions_by_network_namespaces_cut_nodes_off_and_leave_nothing_behind() {
    if let Err(why) = netns_usable() {
        eprintln!("skipped: network namespaces need root and a working `ip netns` ({why})");
        return;
    }
    eprintln!("phase: a short sync run whose partitions take a node's bridge port down");
    let results = tempfile::tempdir().expect("temporary directory");
    let child = Command::new(env!("CARGO_BIN_EXE_replikv"))
        .arg("check")
        .args(["--nodes", "3", "--mode", "sync", "--net", "namespaces"])
        .args(["--nemesis", "partition", "--duration", "6s", "--seed", "3"])
        .args(["--clients", "4", "--keys", "4"])
        .args([
            "--results",
            results.path().to_str().expect("utf-8 temp path"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run replikv check");
    let prefix = format!("rkc{}", child.id());
    let out = child.wait_with_output().expect("wait for replikv check");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = assert_report(&run_dir(results.path()), &["partition"]);
    assert!(
        report["run"]["net"]
            .as_str()
            .unwrap_or("")
            .starts_with("namespaces"),
        "{}",
        report["run"]
    );
    let problems = report["problems"].as_array().expect("problems");
    assert!(problems.is_empty(), "{problems:?}");
    let leader = report["run"]["nodes"][0]["addr"].as_str().unwrap_or("");
    assert!(leader.starts_with("10.77."), "{leader}");

    eprintln!("phase: no namespace or link of the run is left");
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let left = String::from_utf8_lossy(&list.stdout);
    assert!(
        !left.lines().any(|l| l.starts_with(&format!("{prefix}-"))),
        "left behind:\n{left}"
    );
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link show");
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains(&format!("{prefix}h")),
        "left behind:\n{links}"
    );
}

#[test]
fn bad_arguments_exit_2_and_name_the_argument() {
    let results = tempfile::tempdir().expect("temporary directory");
    for (args, named) in [
        (&["--mode", "sometimes"][..], "--mode"),
        (&["--nemesis", "flood"][..], "--nemesis"),
        (
            &["--targets", "127.0.0.1:1", "--nemesis", "kill"][..],
            "--nemesis none",
        ),
        (
            &["--mode", "semi-sync:3", "--nodes", "3"][..],
            "semi-sync:3",
        ),
    ] {
        let out = check(results.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(named),
            "{args:?}: {}",
            text(&out)
        );
    }
}
