//! Linearizability on hand-written histories (Herlihy and Wing's definition: each operation
//! takes effect at one instant between its invocation and its reply).

use super::linearizability::{check_key, KeyResult};
use super::testkit::*;
use super::{linearizability, Status};
use crate::history::{Call, History};
use std::time::Duration;

const BUDGET: Duration = Duration::from_secs(10);

fn status(h: &History) -> Status {
    linearizability(h, BUDGET).status
}

#[test]
fn empty_history_passes() {
    let v = linearizability(&History::default(), BUDGET);
    assert_eq!(v.status, Status::Pass, "{v:?}");
    assert!(v.summary.starts_with("0 keys"), "{}", v.summary);
}

#[test]
fn sequential_history_passes() {
    let mut b = Builder::new();
    b.read(1, "k", None, 0, 1);
    b.write(1, "k", "a", 2, 3);
    b.read(2, "k", Some("a"), 4, 5);
    b.op(1, "k", Call::Delete, ok(None), 6, 7);
    b.read(2, "k", None, 8, 9);
    assert_eq!(status(&b.h), Status::Pass);
}

#[test]
fn planted_read_of_an_old_value_after_a_newer_write_completed_fails() {
    phase("a then b are written one after the other; a later read returns a");
    let mut b = Builder::new();
    b.write(1, "k", "a", 0, 10);
    b.write(1, "k", "b", 20, 30);
    let r = b.read(2, "k", Some("a"), 40, 50);
    let v = linearizability(&b.h, BUDGET);
    assert_eq!(v.status, Status::Fail, "{v:?}");
    assert_eq!(v.violations, 1);
    assert_eq!(v.examples[0].ops, vec![0, 1, r]);
    assert!(
        v.examples[0].what.starts_with("k: not linearizable"),
        "{}",
        v.examples[0].what
    );

    phase("the same read, concurrent with the write of b, is fine");
    b.h.ops[r].start_us = 25_000;
    assert_eq!(status(&b.h), Status::Pass);
}

#[test]
fn reads_must_agree_on_the_order_of_concurrent_writes() {
    // Two concurrent writes; one client sees a then b, the other b then a: no single order.
    let mut b = Builder::new();
    b.write(1, "k", "a", 0, 100);
    b.write(2, "k", "b", 0, 100);
    b.read(3, "k", Some("a"), 10, 20);
    b.read(3, "k", Some("b"), 30, 40);
    assert_eq!(status(&b.h), Status::Pass, "a then b is one order");
    b.read(4, "k", Some("b"), 10, 20);
    b.read(4, "k", Some("a"), 50, 60);
    assert_eq!(status(&b.h), Status::Fail, "client 4 needs b then a");
}

#[test]
fn a_tie_in_time_counts_as_overlap() {
    let mut b = Builder::new();
    b.write(1, "k", "a", 0, 10);
    b.read(2, "k", None, 10, 20);
    assert_eq!(status(&b.h), Status::Pass);
}

#[test]
fn indeterminate_write_may_take_effect_or_not() {
    phase("a timed-out write, then reads that do not see it: it never happened");
    let mut b = Builder::new();
    b.op(1, "k", write("a"), indeterminate(), 0, 10);
    b.read(2, "k", None, 20, 30);
    assert_eq!(status(&b.h), Status::Pass);

    phase("a later read sees it: it happened, even after the client gave up");
    b.read(2, "k", Some("a"), 40, 50);
    assert_eq!(status(&b.h), Status::Pass);

    phase("once seen, it cannot be unseen");
    b.read(2, "k", None, 60, 70);
    assert_eq!(status(&b.h), Status::Fail);
}

#[test]
fn indeterminate_write_cannot_take_effect_before_it_was_invoked() {
    let mut b = Builder::new();
    b.read(1, "k", Some("a"), 0, 10);
    b.op(2, "k", write("a"), indeterminate(), 20, 30);
    assert_eq!(status(&b.h), Status::Fail);
}

#[test]
fn failed_writes_never_happened_and_indeterminate_reads_say_nothing() {
    let mut b = Builder::new();
    b.op(1, "k", write("a"), fail(), 0, 10);
    b.op(2, "k", Call::Read, indeterminate(), 0, 10);
    b.read(2, "k", None, 20, 30);
    assert_eq!(status(&b.h), Status::Pass);
    b.read(3, "k", Some("a"), 20, 30);
    assert_eq!(status(&b.h), Status::Fail);
}

#[test]
fn swap_and_write_if_absent_return_what_they_replaced() {
    let mut b = Builder::new();
    let wia = |v: &str| Call::WriteIfAbsent {
        value: v.to_owned(),
    };
    let swap = |v: &str| Call::Swap {
        value: v.to_owned(),
    };
    b.op(1, "k", wia("a"), ok(Some("1")), 0, 10);
    b.op(2, "k", wia("b"), ok(None), 20, 30);
    b.op(1, "k", swap("c"), ok(Some("a")), 40, 50);
    b.read(2, "k", Some("c"), 60, 70);
    assert_eq!(status(&b.h), Status::Pass);
    phase("a second write-if-absent that claims it wrote cannot have");
    b.op(3, "k", wia("d"), ok(Some("1")), 80, 90);
    assert_eq!(status(&b.h), Status::Fail);
}

#[test]
fn counters_follow_their_increments() {
    let mut b = Builder::new();
    b.incr(1, "c", 2, 2, 0, 10);
    b.incr(2, "c", 3, 5, 5, 15);
    b.read(3, "c", Some("5"), 20, 30);
    assert_eq!(status(&b.h), Status::Pass);
    phase("two increments cannot both have seen the same value");
    b.incr(1, "c", 1, 6, 40, 50);
    b.incr(2, "c", 1, 6, 40, 50);
    assert_eq!(status(&b.h), Status::Fail);
}

#[test]
fn counters_take_indeterminate_increments_into_account() {
    let mut b = Builder::new();
    b.incr(1, "c", 1, 1, 0, 10);
    b.op(2, "c", Call::Incr { by: 10 }, indeterminate(), 0, 10);
    b.read(3, "c", Some("11"), 20, 30);
    b.incr(1, "c", 1, 12, 40, 50);
    assert_eq!(status(&b.h), Status::Pass);
}

#[test]
fn keys_are_checked_apart_and_each_failing_key_counts() {
    let mut b = Builder::new();
    for key in ["x", "y", "z"] {
        b.write(1, key, "a", 0, 10);
        b.read(2, key, Some("a"), 20, 30);
    }
    b.read(3, "y", None, 40, 50);
    b.read(3, "z", None, 40, 50);
    let v = linearizability(&b.h, BUDGET);
    assert_eq!(v.status, Status::Fail);
    assert_eq!(v.violations, 2, "{v:?}");
    assert!(
        v.summary.starts_with("3 keys: 1 linearizable, 2 not"),
        "{}",
        v.summary
    );
}

#[test]
fn out_of_budget_is_unknown_not_a_guess() {
    let mut b = Builder::new();
    b.write(1, "k", "a", 0, 10);
    b.read(2, "k", Some("a"), 20, 30);
    let v = linearizability(&b.h, Duration::ZERO);
    assert_eq!(v.status, Status::Unknown, "{v:?}");
    assert_eq!(v.violations, 0);
    assert!(
        v.examples[0].what.contains("ran out of time"),
        "{:?}",
        v.examples
    );
}

#[test]
fn the_search_names_the_op_it_could_not_place_and_keys_without_determinate_ops_need_no_time() {
    let mut b = Builder::new();
    b.write(1, "k", "a", 0, 10);
    b.read(2, "k", None, 20, 30);
    let ids: Vec<usize> = (0..b.h.ops.len()).collect();
    assert!(matches!(
        check_key(&b.h, &ids, None),
        KeyResult::Violation { stuck: 1, .. }
    ));
    // Only determinate work needs time: a key of indeterminate ops is linearizable at once.
    b.op(1, "j", write("x"), indeterminate(), 0, 10);
    let v = linearizability(&b.h, Duration::ZERO);
    assert_eq!(v.status, Status::Unknown, "{v:?}");
    assert!(
        v.summary.contains("1 linearizable, 0 not, 1 unknown"),
        "{}",
        v.summary
    );
}

#[test]
fn many_concurrent_indeterminate_writes_with_an_impossible_read_finish_in_budget() {
    // Twelve writes that never returned, then a read of a value nobody wrote: the search must
    // try every subset and order of them, which the memo cuts to subsets.
    let mut b = Builder::new();
    for i in 0..12 {
        b.op(i, "k", write(&format!("v{i}")), indeterminate(), 0, 10);
    }
    b.read(99, "k", Some("nobody"), 20, 30);
    let v = linearizability(&b.h, BUDGET);
    assert_eq!(v.status, Status::Fail, "{v:?}");
}
