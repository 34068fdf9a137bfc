//! One leader per epoch: writes acknowledged in one epoch all come from one node.

use super::testkit::*;
use super::{one_leader_per_epoch, Status};
use crate::history::Call;

const A: &str = "127.0.0.1:7300";
const B: &str = "127.0.0.1:7301";

/// A write acknowledged by `node` at position `epoch:lsn`.
fn acked(b: &mut Builder, node: &str, value: &str, epoch: u64, lsn: u64, at_ms: u64) -> usize {
    let id = b.write(1, "k", value, at_ms, at_ms + 5);
    b.on(id, node);
    b.token(id, epoch, lsn);
    id
}

#[test]
fn a_failover_to_a_new_epoch_passes() {
    let mut b = Builder::new();
    acked(&mut b, A, "a1", 1, 10, 0);
    acked(&mut b, A, "a2", 1, 11, 10);
    acked(&mut b, B, "b1", 2, 12, 1000);
    phase("the old leader leads again later, in a third epoch");
    acked(&mut b, A, "a3", 3, 20, 2000);
    let v = one_leader_per_epoch(&b.h);
    assert_eq!(v.status, Status::Pass, "{v:?}");
    assert!(
        v.summary.starts_with("4 acknowledged writes in 3 epochs"),
        "{}",
        v.summary
    );
}

#[test]
fn planted_second_leader_in_one_epoch_is_found_with_each_nodes_first_write() {
    phase("A is cut off but keeps acknowledging in epoch 1 after B started writing in it");
    let mut b = Builder::new();
    let a1 = acked(&mut b, A, "a1", 1, 10, 0);
    let b1 = acked(&mut b, B, "b1", 1, 11, 1000);
    acked(&mut b, A, "a2", 1, 11, 1100);
    acked(&mut b, B, "b2", 2, 12, 2000);
    let v = one_leader_per_epoch(&b.h);
    assert_eq!(v.status, Status::Fail, "{v:?}");
    assert_eq!(v.violations, 1);
    assert_eq!(v.examples[0].ops, vec![a1, b1]);
    assert!(v.examples[0]
        .what
        .starts_with("epoch 1: writes acknowledged by 2 nodes"));
}

#[test]
fn writes_that_may_append_nothing_and_unacknowledged_ones_are_not_judged() {
    let mut b = Builder::new();
    acked(&mut b, A, "a1", 2, 10, 0);
    phase("on B: a delete, a declined SET NX, a read and a failed write, all naming epoch 2");
    let del = b.op(2, "k", Call::Delete, ok(None), 10, 20);
    let nx = b.op(
        2,
        "k",
        Call::WriteIfAbsent { value: "x".into() },
        ok(None),
        30,
        40,
    );
    let read = b.read(2, "k", Some("a1"), 50, 60);
    let refused = b.op(2, "k", write("y"), fail(), 70, 80);
    for id in [del, nx, read, refused] {
        b.on(id, B);
        b.token(id, 2, 10);
    }
    phase("and one acknowledged write without a token");
    let bare = b.write(3, "k", "z", 90, 100);
    b.on(bare, B);
    let v = one_leader_per_epoch(&b.h);
    assert_eq!(v.status, Status::Pass, "{v:?}");
    assert!(
        v.summary.contains("1 writes without a token"),
        "{}",
        v.summary
    );

    phase("a SET NX that wrote appends an entry: it is judged");
    let wrote = b.op(
        2,
        "k",
        Call::WriteIfAbsent { value: "w".into() },
        ok(Some("1")),
        110,
        120,
    );
    b.on(wrote, B);
    b.token(wrote, 2, 11);
    assert_eq!(one_leader_per_epoch(&b.h).violations, 1);
}
