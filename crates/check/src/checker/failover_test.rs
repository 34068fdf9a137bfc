//! Failover time: from a fault on the leader to the first write another node acknowledged,
//! on synthetic histories with the nemesis' fault events.

use super::testkit::*;
use super::{failovers, LeaderFault};
use crate::history::Call;

const A: &str = "127.0.0.1:7300";
const B: &str = "127.0.0.1:7301";
const C: &str = "127.0.0.1:7302";

/// A write acknowledged by `node`.
fn acked(b: &mut Builder, node: &str, value: &str, start_ms: u64, end_ms: u64) -> usize {
    let id = b.write(1, "k", value, start_ms, end_ms);
    b.on(id, node);
    id
}

#[test]
fn failover_time_runs_from_the_leader_fault_to_the_first_write_another_node_acknowledged() {
    phase("A leads and acknowledges writes; it is killed at 1 s");
    let mut b = Builder::new();
    acked(&mut b, A, "a1", 900, 950);
    b.fault(1000, "kill", A, true);
    phase("writes to A fail, a read on B succeeds, a write on B ends indeterminate");
    let refused = b.op(1, "k", write("a2"), fail(), 1010, 1011);
    b.on(refused, A);
    let read = b.read(2, "k", Some("a1"), 1100, 1110);
    b.on(read, B);
    let unknown = b.op(3, "k", write("b0"), indeterminate(), 1200, 1500);
    b.on(unknown, B);
    phase("B acknowledges its first write at 1.71 s; A is restarted at 3 s");
    let first = acked(&mut b, B, "b1", 1700, 1710);
    acked(&mut b, B, "b2", 1720, 1730);
    b.fault(3000, "restart", A, false);

    let f = failovers(&b.h);
    assert_eq!(
        f.leader_faults,
        vec![LeaderFault {
            kind: "kill".into(),
            node: A.into(),
            start_us: 1_000_000,
            end_us: 3_000_000,
            failover_ms: Some(710.0),
            new_leader: Some(B.into()),
            first_write: Some(first),
        }]
    );
    assert_eq!((f.failovers, f.healed_before_failover), (1, 0));
    assert_eq!((f.median_ms, f.p99_ms, f.max_ms), (710.0, 710.0, 710.0));
}

#[test]
fn a_leader_fault_healed_before_another_node_acknowledged_is_no_failover() {
    phase("A is paused at 1 s and resumed at 1.4 s; it acknowledges again at 1.45 s");
    let mut b = Builder::new();
    acked(&mut b, A, "a1", 900, 950);
    b.fault(1000, "pause", A, true);
    b.fault(1400, "resume", A, false);
    acked(&mut b, A, "a2", 1000, 1450);
    phase("B acknowledges a write only after A came back");
    acked(&mut b, B, "b1", 1500, 1510);
    let f = failovers(&b.h);
    assert_eq!((f.failovers, f.healed_before_failover), (0, 1));
    assert_eq!(f.leader_faults[0].failover_ms, None);
    assert_eq!(f.leader_faults[0].new_leader, None);
    assert_eq!((f.median_ms, f.p99_ms, f.max_ms), (0.0, 0.0, 0.0));
}

#[test]
fn only_kill_pause_and_partition_of_the_leader_count() {
    let mut b = Builder::new();
    phase("a replica is killed, the leader is delayed: neither takes the leader away");
    b.fault(100, "kill", C, false);
    b.fault(150, "delay", A, true);
    acked(&mut b, B, "b0", 200, 210);
    b.fault(300, "restart", C, false);
    b.fault(350, "undelay", A, false);
    phase("the leader is cut off: that one counts");
    b.fault(1000, "partition", A, true);
    phase("A acknowledges writes until its lease runs out; they do not end the fault");
    acked(&mut b, A, "a1", 990, 1010);
    acked(&mut b, A, "a2", 1200, 1300);
    acked(&mut b, B, "b1", 1500, 1600);
    b.fault(2000, "heal", A, false);
    let f = failovers(&b.h);
    let kinds: Vec<&str> = f.leader_faults.iter().map(|l| l.kind.as_str()).collect();
    assert_eq!(kinds, ["partition"]);
    assert_eq!(f.leader_faults[0].failover_ms, Some(600.0));
}

#[test]
fn writes_acknowledged_before_the_fault_started_do_not_end_it() {
    phase("B acknowledged a write that was in flight across the fault's start");
    let mut b = Builder::new();
    acked(&mut b, B, "b0", 500, 1000);
    b.fault(1000, "kill", A, true);
    let late = acked(&mut b, C, "c1", 1200, 1800);
    b.fault(2500, "restart", A, false);
    let f = failovers(&b.h);
    assert_eq!(f.leader_faults[0].failover_ms, Some(800.0));
    assert_eq!(f.leader_faults[0].first_write, Some(late));
}

#[test]
fn a_fault_never_undone_lasts_to_the_end_of_the_history() {
    let mut b = Builder::new();
    b.fault(1000, "kill", A, true);
    acked(&mut b, B, "b1", 1100, 2000);
    b.fault(3000, "pause", B, true);
    b.op(1, "k", Call::Read, fail(), 3100, 3200);
    let f = failovers(&b.h);
    let times: Vec<Option<f64>> = f.leader_faults.iter().map(|l| l.failover_ms).collect();
    assert_eq!(times, [Some(1000.0), None]);
    assert_eq!(f.leader_faults[1].end_us, 3_200_000);
}

#[test]
fn percentiles_are_over_the_failovers_only() {
    let mut b = Builder::new();
    for (i, ms) in [900u64, 500, 700].into_iter().enumerate() {
        let start = 10_000 * (i as u64 + 1);
        b.fault(start, "kill", A, true);
        acked(&mut b, B, &format!("b{i}"), start + 1, start + ms);
        b.fault(start + 5000, "restart", A, false);
    }
    b.fault(50_000, "pause", A, true);
    b.fault(50_100, "resume", A, false);
    let f = failovers(&b.h);
    assert_eq!((f.failovers, f.healed_before_failover), (3, 1));
    assert_eq!((f.median_ms, f.p99_ms, f.max_ms), (700.0, 900.0, 900.0));
}
