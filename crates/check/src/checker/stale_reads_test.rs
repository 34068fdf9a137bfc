//! Stale reads: found, and measured in milliseconds and LSN.

use super::testkit::*;
use super::{stale_reads, Staleness, Status};

#[test]
fn fresh_reads_are_not_stale() {
    let mut b = Builder::new();
    b.write(1, "k", "a", 0, 10);
    b.read(2, "k", Some("a"), 20, 30);
    b.read(2, "k", None, 5, 8); // concurrent with the write: either is fresh
    b.write(1, "k", "b", 40, 50);
    b.read(2, "k", Some("a"), 45, 55); // concurrent with b
    let (v, s) = stale_reads(&b.h);
    assert_eq!(v.status, Status::Pass);
    assert_eq!(v.violations, 0);
    assert_eq!(
        s,
        Staleness {
            stale_reads: 0,
            reads: 3,
            max_lsn: 0,
            max_ms: 0.0,
            p99_ms: 0.0
        }
    );
}

#[test]
fn planted_stale_read_is_found_and_measured() {
    phase("a and b are acknowledged at 10 and 30 ms; a read invoked at 100 ms returns a");
    let mut b = Builder::new();
    let a = b.write(1, "k", "a", 0, 10);
    let bw = b.write(1, "k", "b", 20, 30);
    let c = b.write(1, "k", "c", 40, 60);
    let r = b.read(2, "k", Some("a"), 100, 110);
    b.token(a, 1, 5);
    b.token(bw, 1, 9);
    b.token(c, 1, 12);
    let (v, s) = stale_reads(&b.h);
    assert_eq!(
        v.status,
        Status::Pass,
        "stale reads are measured, not judged"
    );
    assert_eq!(v.violations, 1);
    assert_eq!(v.examples[0].ops, vec![bw, r], "{v:?}");
    assert_eq!(s.stale_reads, 1);
    assert_eq!(s.reads, 1);
    assert_eq!(s.max_ms, 70.0, "from b's acknowledgement to the read");
    assert_eq!(s.max_lsn, 7, "c at LSN 12, a at LSN 5");
    assert_eq!(s.p99_ms, 70.0);

    phase("without tokens on the versions, the read's own token measures the lag");
    b.h.ops[a].token = None;
    b.token(r, 1, 10);
    assert_eq!(stale_reads(&b.h).1.max_lsn, 2);

    phase("with no token at all, staleness in LSN is not measured");
    b.h.ops[r].token = None;
    let (_, s) = stale_reads(&b.h);
    assert_eq!((s.stale_reads, s.max_lsn), (1, 0));
}

#[test]
fn reading_absent_after_an_acknowledged_write_is_stale() {
    let mut b = Builder::new();
    b.write(1, "k", "a", 0, 10);
    b.read(2, "k", None, 30, 40);
    let (_, s) = stale_reads(&b.h);
    assert_eq!(s.stale_reads, 1);
    assert_eq!(s.max_ms, 20.0);
}

#[test]
fn p99_is_over_all_reads() {
    let mut b = Builder::new();
    b.write(1, "k", "a", 0, 10);
    for i in 0..99 {
        b.read(2, "k", Some("a"), 20 + i, 21 + i);
    }
    b.read(3, "k", None, 500, 510);
    let (_, s) = stale_reads(&b.h);
    assert_eq!((s.stale_reads, s.reads), (1, 100));
    assert_eq!(s.max_ms, 490.0);
    assert_eq!(
        s.p99_ms, 0.0,
        "one stale read in a hundred is the 100th percentile"
    );
}

#[test]
fn counters_are_stale_below_an_acknowledged_value() {
    let mut b = Builder::new();
    b.incr(1, "c", 1, 1, 0, 10);
    let second = b.incr(1, "c", 1, 2, 20, 30);
    let r = b.read(2, "c", Some("1"), 50, 60);
    let (v, s) = stale_reads(&b.h);
    assert_eq!(s.stale_reads, 1);
    assert_eq!(s.max_ms, 20.0);
    assert_eq!(v.examples[0].ops, vec![second, r]);
}
