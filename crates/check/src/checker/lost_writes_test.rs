//! Lost acknowledged writes: planted losses are found, overwritten and unverifiable writes
//! are not called lost.

use super::testkit::*;
use super::{lost_writes, Status};
use crate::history::Call;

#[test]
fn write_seen_by_the_final_state_is_kept() {
    let mut b = Builder::new();
    b.write(1, "k", "a", 0, 10);
    b.read(2, "k", Some("a"), 20, 30);
    b.final_read("n1", &[("k", Some("a"))]);
    let v = lost_writes(&b.h);
    assert_eq!(v.status, Status::Pass, "{v:?}");
    assert_eq!(v.violations, 0);
}

#[test]
fn planted_lost_write_is_found_with_its_op() {
    phase("a write is acknowledged, then both nodes end with the key absent");
    let mut b = Builder::new();
    let w = b.write(1, "k", "a", 0, 10);
    b.read(2, "k", Some("a"), 20, 30);
    b.final_read("n1", &[("k", None)]);
    b.final_read("n2", &[("k", None)]);
    let v = lost_writes(&b.h);
    assert_eq!(v.status, Status::Fail, "{v:?}");
    assert_eq!(v.violations, 1);
    assert_eq!(v.examples[0].ops, vec![w]);
    assert!(
        v.examples[0].what.contains("seen by 1 later reads"),
        "{}",
        v.examples[0].what
    );
}

#[test]
fn lost_only_when_every_node_predates_it() {
    let mut b = Builder::new();
    let a = b.write(1, "k", "a", 0, 10);
    let bw = b.write(1, "k", "b", 20, 30);
    phase("one node still holds the newer write: nothing is lost");
    b.final_read("n1", &[("k", Some("a"))]);
    b.final_read("n2", &[("k", Some("b"))]);
    assert_eq!(lost_writes(&b.h).status, Status::Pass);
    phase("no node does: the newer write is lost, the older one is still there");
    b.h.final_reads[1].1[0].1 = Some("a".to_owned());
    let v = lost_writes(&b.h);
    assert_eq!(v.violations, 1, "{v:?}");
    assert_eq!(v.examples[0].ops, vec![bw, a]);
}

#[test]
fn overwritten_by_a_later_or_concurrent_write_is_not_lost() {
    let mut b = Builder::new();
    b.write(1, "k", "a", 0, 10);
    b.write(2, "k", "b", 5, 15); // concurrent with "a": either order is legal
    b.write(3, "k", "c", 20, 30);
    b.final_read("n1", &[("k", Some("c"))]);
    assert_eq!(lost_writes(&b.h).status, Status::Pass);
    // With "b" last, "a" (concurrent) is fine but "c" (acknowledged after both) is lost.
    b.h.final_reads[0].1[0].1 = Some("b".to_owned());
    let v = lost_writes(&b.h);
    assert_eq!(v.violations, 1, "{v:?}");
    assert_eq!(v.examples[0].ops[0], 2);
}

#[test]
fn a_later_delete_reflects_the_write() {
    let mut b = Builder::new();
    b.write(1, "k", "a", 0, 10);
    b.op(1, "k", Call::Delete, ok(None), 20, 30);
    b.final_read("n1", &[("k", None)]);
    assert_eq!(lost_writes(&b.h).status, Status::Pass);
}

#[test]
fn tokens_order_writes_when_real_time_cannot() {
    let mut b = Builder::new();
    let a = b.write(1, "k", "a", 0, 10);
    let c = b.write(2, "k", "b", 5, 15);
    b.token(a, 1, 8);
    b.token(c, 1, 7);
    // By tokens "b" came first, so a final "b" means "a" was lost.
    b.final_read("n1", &[("k", Some("b"))]);
    let v = lost_writes(&b.h);
    assert_eq!(v.violations, 1, "{v:?}");
    assert_eq!(v.examples[0].ops, vec![a, c]);
}

#[test]
fn indeterminate_and_failed_writes_are_never_lost() {
    let mut b = Builder::new();
    b.op(1, "k", write("a"), indeterminate(), 0, 10);
    b.op(2, "k", write("b"), fail(), 0, 10);
    b.final_read("n1", &[("k", None)]);
    let v = lost_writes(&b.h);
    assert_eq!(v.status, Status::Pass, "{v:?}");
    assert!(v.summary.starts_with("0 of 0"), "{}", v.summary);
}

#[test]
fn an_indeterminate_later_write_in_the_final_state_reflects_the_acknowledged_one() {
    let mut b = Builder::new();
    b.write(1, "k", "a", 0, 10);
    b.op(1, "k", write("b"), indeterminate(), 20, 30);
    b.final_read("n1", &[("k", Some("b"))]);
    assert_eq!(lost_writes(&b.h).status, Status::Pass);
}

#[test]
fn without_a_final_state_later_reads_decide() {
    let mut b = Builder::new();
    let w = b.write(1, "k", "a", 0, 10);
    phase("nothing after it: unverified, not lost");
    let v = lost_writes(&b.h);
    assert_eq!(v.status, Status::Pass);
    assert!(v.summary.contains("1 writes unverifiable"), "{}", v.summary);
    phase("a later read sees the initial state only: lost, judged by reads");
    let r = b.read(2, "k", None, 20, 30);
    let v = lost_writes(&b.h);
    assert_eq!(v.status, Status::Fail, "{v:?}");
    assert_eq!(v.examples[0].ops, vec![w, r]);
    assert!(
        v.summary.contains("1 judged by reads alone"),
        "{}",
        v.summary
    );
    phase("one more read sees it: kept");
    b.read(3, "k", Some("a"), 40, 50);
    assert_eq!(lost_writes(&b.h).status, Status::Pass);
}

#[test]
fn a_read_that_ended_before_the_acknowledgement_is_no_evidence() {
    let mut b = Builder::new();
    b.write(1, "k", "a", 0, 10);
    b.read(2, "k", Some("a"), 2, 8);
    let v = lost_writes(&b.h);
    assert!(v.summary.contains("1 writes unverifiable"), "{}", v.summary);
}

#[test]
fn write_if_absent_counts_only_when_it_wrote() {
    let mut b = Builder::new();
    b.write(1, "k", "a", 0, 10);
    let declined = Call::WriteIfAbsent {
        value: "b".to_owned(),
    };
    b.op(2, "k", declined.clone(), ok(None), 20, 30);
    b.final_read("n1", &[("k", Some("a"))]);
    assert_eq!(lost_writes(&b.h).status, Status::Pass);
    // Had it written, its value should be there.
    b.h.ops[1].outcome = ok(Some("1"));
    assert_eq!(lost_writes(&b.h).violations, 1);
}

#[test]
fn counter_short_of_its_acknowledged_increments_is_found() {
    let mut b = Builder::new();
    b.incr(1, "c", 1, 1, 0, 10);
    b.incr(2, "c", 1, 2, 20, 30);
    let last = b.incr(1, "c", 1, 3, 40, 50);
    b.op(3, "c", Call::Incr { by: 5 }, indeterminate(), 40, 60);
    phase("the best node has all three acknowledged increments");
    b.final_read("n1", &[("c", Some("2"))]);
    b.final_read("n2", &[("c", Some("3"))]);
    assert_eq!(lost_writes(&b.h).status, Status::Pass);
    phase("it lost one, and the indeterminate one cannot make up for it");
    b.h.final_reads[1].1[0].1 = Some("2".to_owned());
    let v = lost_writes(&b.h);
    assert_eq!(v.status, Status::Fail, "{v:?}");
    assert_eq!(v.violations, 1);
    assert!(
        v.summary.contains("1 increment units missing from 1 of 1"),
        "{}",
        v.summary
    );
    assert_eq!(v.examples[0].ops.last(), Some(&last));
}

#[test]
fn counter_with_a_negative_indeterminate_increment_may_be_lower() {
    let mut b = Builder::new();
    b.incr(1, "c", 3, 3, 0, 10);
    b.op(2, "c", Call::Incr { by: -1 }, indeterminate(), 20, 30);
    b.final_read("n1", &[("c", Some("2"))]);
    assert_eq!(lost_writes(&b.h).status, Status::Pass);
    b.h.final_reads[0].1[0].1 = Some("1".to_owned());
    assert_eq!(lost_writes(&b.h).status, Status::Fail);
}
