//! Session guarantees (Terry et al., "Session guarantees for weakly consistent replicated
//! data", 1994): read-your-writes and monotonic reads.

use super::testkit::*;
use super::{monotonic_reads, read_your_writes, Status};
use crate::history::Call;

#[test]
fn reading_your_own_write_passes() {
    let mut b = Builder::new();
    b.write(1, "k", "a", 0, 10);
    b.read(1, "k", Some("a"), 20, 30);
    let v = read_your_writes(&b.h);
    assert_eq!(v.status, Status::Pass, "{v:?}");
    assert!(v.summary.starts_with("0 of 1"), "{}", v.summary);
}

#[test]
fn planted_read_your_writes_violation_is_found() {
    phase("client 1 writes b over a, then reads a from a lagging replica");
    let mut b = Builder::new();
    b.write(2, "k", "a", 0, 10);
    let w = b.write(1, "k", "b", 20, 30);
    let r = b.read(1, "k", Some("a"), 40, 50);
    let v = read_your_writes(&b.h);
    assert_eq!(v.status, Status::Fail, "{v:?}");
    assert_eq!(v.violations, 1);
    assert_eq!(v.examples[0].ops, vec![w, r]);

    phase("reading the initial state after your own write is the same violation");
    b.h.ops[r].outcome = ok(None);
    assert_eq!(read_your_writes(&b.h).violations, 1);

    phase("another client reading a is not this client's business");
    b.h.ops[r].client = 3;
    assert_eq!(read_your_writes(&b.h).status, Status::Pass);
}

#[test]
fn a_newer_or_concurrent_write_by_someone_else_is_fine() {
    let mut b = Builder::new();
    b.write(1, "k", "a", 0, 10);
    b.write(2, "k", "b", 5, 15); // concurrent with a
    b.write(2, "k", "c", 20, 30); // after a
    b.read(1, "k", Some("b"), 40, 50);
    b.read(1, "k", Some("c"), 60, 70);
    assert_eq!(read_your_writes(&b.h).status, Status::Pass);
}

#[test]
fn tokens_decide_when_both_writes_carry_them() {
    let mut b = Builder::new();
    let old = b.write(2, "k", "a", 0, 100);
    let mine = b.write(1, "k", "b", 10, 20);
    b.read(1, "k", Some("a"), 30, 40);
    phase("without tokens the writes are concurrent: no proof");
    assert_eq!(read_your_writes(&b.h).status, Status::Pass);
    phase("tokens put a before b: reading a misses the client's own b");
    b.token(old, 1, 4);
    b.token(mine, 1, 5);
    assert_eq!(read_your_writes(&b.h).status, Status::Fail);
    phase("tokens put a after b: a overwrote it legally");
    b.token(old, 1, 6);
    assert_eq!(read_your_writes(&b.h).status, Status::Pass);
}

#[test]
fn after_your_own_delete_an_older_value_is_a_violation_and_absent_is_not() {
    let mut b = Builder::new();
    b.write(1, "k", "a", 0, 10);
    b.op(1, "k", Call::Delete, ok(None), 20, 30);
    let r = b.read(1, "k", None, 40, 50);
    assert_eq!(read_your_writes(&b.h).status, Status::Pass);
    b.h.ops[r].outcome = ok(Some("a"));
    assert_eq!(read_your_writes(&b.h).status, Status::Fail);
}

#[test]
fn unacknowledged_writes_and_unknown_values_prove_nothing() {
    let mut b = Builder::new();
    b.write(2, "k", "a", 0, 10);
    b.op(1, "k", write("b"), indeterminate(), 20, 30);
    b.read(1, "k", Some("a"), 40, 50);
    b.write(1, "k", "c", 60, 70);
    b.read(1, "k", Some("nobody wrote this"), 80, 90);
    assert_eq!(read_your_writes(&b.h).status, Status::Pass);
}

#[test]
fn counters_read_at_least_your_own_increment() {
    let mut b = Builder::new();
    b.incr(1, "c", 1, 1, 0, 10);
    b.incr(2, "c", 1, 2, 20, 30);
    b.read(2, "c", Some("2"), 40, 50);
    b.read(1, "c", Some("1"), 40, 50);
    assert_eq!(read_your_writes(&b.h).status, Status::Pass);
    let r = b.read(2, "c", Some("1"), 60, 70);
    let v = read_your_writes(&b.h);
    assert_eq!(v.violations, 1, "{v:?}");
    assert_eq!(v.examples[0].ops, vec![1, r]);
}

#[test]
fn monotonic_reads_pass_when_reads_move_forward() {
    let mut b = Builder::new();
    b.write(1, "k", "a", 0, 10);
    b.write(1, "k", "b", 20, 30);
    b.read(2, "k", None, 0, 5);
    b.read(2, "k", Some("a"), 12, 15);
    b.read(2, "k", Some("a"), 16, 18);
    b.read(2, "k", Some("b"), 40, 50);
    let v = monotonic_reads(&b.h);
    assert_eq!(v.status, Status::Pass, "{v:?}");
    assert!(v.summary.starts_with("0 of 3"), "{}", v.summary);
}

#[test]
fn planted_monotonic_read_violation_is_found() {
    phase("client 2 reads b from the leader, then a from a lagging replica");
    let mut b = Builder::new();
    b.write(1, "k", "a", 0, 10);
    b.write(1, "k", "b", 20, 30);
    let first = b.read(2, "k", Some("b"), 40, 50);
    b.read(2, "k", Some("b"), 55, 58);
    let second = b.read(2, "k", Some("a"), 60, 70);
    let v = monotonic_reads(&b.h);
    assert_eq!(v.status, Status::Fail, "{v:?}");
    assert_eq!(v.violations, 1);
    assert_eq!(v.examples[0].ops, vec![first, second]);

    phase("two clients each reading once cannot violate it");
    b.h.ops[second].client = 3;
    assert_eq!(monotonic_reads(&b.h).status, Status::Pass);
}

#[test]
fn going_back_to_absent_is_a_violation_unless_a_delete_may_explain_it() {
    let mut b = Builder::new();
    b.write(1, "k", "a", 0, 10);
    b.read(2, "k", Some("a"), 20, 30);
    b.read(2, "k", None, 40, 50);
    assert_eq!(monotonic_reads(&b.h).status, Status::Fail);
    b.op(1, "k", Call::Delete, indeterminate(), 15, 16);
    assert_eq!(monotonic_reads(&b.h).status, Status::Pass);
}

#[test]
fn tokens_catch_a_read_going_back_on_another_key() {
    let mut b = Builder::new();
    let x = b.read(1, "x", None, 0, 10);
    let y = b.read(1, "y", None, 20, 30);
    b.token(x, 1, 9);
    b.token(y, 1, 9);
    assert_eq!(monotonic_reads(&b.h).status, Status::Pass);
    b.token(y, 1, 8);
    let v = monotonic_reads(&b.h);
    assert_eq!(v.status, Status::Fail, "{v:?}");
    assert_eq!(v.examples[0].ops, vec![x, y]);
    phase("a higher epoch is newer whatever its LSN");
    b.token(y, 2, 3);
    assert_eq!(monotonic_reads(&b.h).status, Status::Pass);
}

#[test]
fn counters_never_shrink_between_reads() {
    let mut b = Builder::new();
    b.incr(1, "c", 2, 2, 0, 10);
    b.read(2, "c", Some("2"), 20, 30);
    b.read(2, "c", Some("0"), 40, 50);
    assert_eq!(monotonic_reads(&b.h).violations, 1);
    phase("with a negative increment, values no longer order states");
    b.incr(1, "c", -2, 0, 32, 35);
    assert_eq!(monotonic_reads(&b.h).status, Status::Pass);
}
