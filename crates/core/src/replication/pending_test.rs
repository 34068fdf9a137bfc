//! Tests for [`Pending`]: replies are released per mode in LSN order once their mode's commit
//! LSN covers them, expire by deadline without overtaking within a mode, and drain; `len` and
//! `is_empty` follow every change. A property test checks all of it against a plain model.

use super::ack::AckMode;
use super::pending::Pending;
use crate::position::Lsn;
use proptest::prelude::*;

const NEVER: u64 = u64::MAX;

/// An item that says where it was held, so tests can check what came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reply {
    mode: AckMode,
    lsn: u64,
    tag: u32,
}

fn hold(p: &mut Pending<Reply>, mode: AckMode, lsn: u64, deadline_ms: u64, tag: u32) {
    p.hold(mode, Lsn(lsn), deadline_ms, Reply { mode, lsn, tag });
}

/// The items of `mode` among `out`, in the order they came.
fn of(out: &[Reply], mode: AckMode) -> Vec<(u64, u32)> {
    out.iter()
        .filter(|r| r.mode == mode)
        .map(|r| (r.lsn, r.tag))
        .collect()
}

fn assert_len(p: &Pending<Reply>, len: usize) {
    assert_eq!(p.len(), len, "len");
    assert_eq!(p.is_empty(), len == 0, "is_empty with len {len}");
}

#[test]
fn a_new_pending_is_empty() {
    let p: Pending<Reply> = Pending::default();
    assert_len(&p, 0);
    assert_eq!(p.first_lsn(AckMode::Async), None);
}

#[test]
fn release_frees_only_covered_items_in_lsn_order() {
    let mut p = Pending::default();
    for (tag, lsn) in [(0, 1), (1, 2), (2, 2), (3, 5), (4, 9)] {
        hold(&mut p, AckMode::Sync, lsn, NEVER, tag);
    }
    assert_len(&p, 5);

    eprintln!("phase: commit LSN 0 covers nothing");
    assert!(p.release(|_| Lsn::ZERO).is_empty());
    assert_len(&p, 5);

    eprintln!("phase: commit LSN 4 covers 1, 2 and 2, in the order held");
    let out = p.release(|_| Lsn(4));
    assert_eq!(of(&out, AckMode::Sync), vec![(1, 0), (2, 1), (2, 2)]);
    assert_len(&p, 2);
    assert_eq!(p.first_lsn(AckMode::Sync), Some(Lsn(5)));

    eprintln!("phase: the same commit LSN again releases nothing more");
    assert!(p.release(|_| Lsn(4)).is_empty());

    eprintln!("phase: commit LSN exactly 5 covers 5");
    assert_eq!(of(&p.release(|_| Lsn(5)), AckMode::Sync), vec![(5, 3)]);

    eprintln!("phase: a commit LSN far past the last frees the rest");
    assert_eq!(of(&p.release(|_| Lsn(1000)), AckMode::Sync), vec![(9, 4)]);
    assert_len(&p, 0);
    assert_eq!(p.first_lsn(AckMode::Sync), None);
}

#[test]
fn release_uses_each_modes_own_commit_lsn() {
    let mut p = Pending::default();
    let modes = [
        AckMode::Async,
        AckMode::SemiSync(1),
        AckMode::SemiSync(2),
        AckMode::Sync,
        AckMode::Quorum,
    ];
    for (i, mode) in modes.into_iter().enumerate() {
        for lsn in 1..=4 {
            hold(&mut p, mode, lsn, NEVER, i as u32);
        }
    }
    assert_len(&p, 20);

    let commit = |mode: AckMode| match mode {
        AckMode::Async => Lsn(4),
        AckMode::SemiSync(1) => Lsn(3),
        AckMode::SemiSync(_) => Lsn(1),
        AckMode::Sync => Lsn::ZERO,
        AckMode::Quorum => Lsn(2),
    };
    let out = p.release(commit);
    let lsns = |mode| {
        of(&out, mode)
            .into_iter()
            .map(|(l, _)| l)
            .collect::<Vec<_>>()
    };
    assert_eq!(lsns(AckMode::Async), vec![1, 2, 3, 4]);
    assert_eq!(lsns(AckMode::SemiSync(1)), vec![1, 2, 3]);
    assert_eq!(lsns(AckMode::SemiSync(2)), vec![1]);
    assert_eq!(lsns(AckMode::Sync), Vec::<u64>::new());
    assert_eq!(lsns(AckMode::Quorum), vec![1, 2]);
    assert_eq!(out.len(), 10);
    assert_len(&p, 10);

    assert_eq!(p.first_lsn(AckMode::Async), None);
    assert_eq!(p.first_lsn(AckMode::SemiSync(1)), Some(Lsn(4)));
    assert_eq!(p.first_lsn(AckMode::SemiSync(2)), Some(Lsn(2)));
    assert_eq!(p.first_lsn(AckMode::Sync), Some(Lsn(1)));
    assert_eq!(p.first_lsn(AckMode::Quorum), Some(Lsn(3)));
    assert_eq!(p.first_lsn(AckMode::SemiSync(3)), None);
}

#[test]
fn expire_removes_items_whose_deadline_has_come() {
    let mut p = Pending::default();
    hold(&mut p, AckMode::Quorum, 1, 100, 0);
    hold(&mut p, AckMode::Quorum, 2, 200, 1);
    hold(&mut p, AckMode::Quorum, 3, NEVER, 2);

    eprintln!("phase: before any deadline nothing expires");
    assert!(p.expire(99).is_empty());
    assert_len(&p, 3);

    eprintln!("phase: a deadline equal to now has come");
    let out = p.expire(100);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, Lsn(1));
    assert_eq!(out[0].1.tag, 0);
    assert_len(&p, 2);

    eprintln!("phase: an item with no deadline outlives any realistic time");
    let out: Vec<(Lsn, u32)> = p
        .expire(NEVER - 1)
        .into_iter()
        .map(|(l, r)| (l, r.tag))
        .collect();
    assert_eq!(out, vec![(Lsn(2), 1)]);
    assert_len(&p, 1);
    assert_eq!(p.first_lsn(AckMode::Quorum), Some(Lsn(3)));
}

#[test]
fn expire_keeps_order_within_a_mode() {
    // The head of a queue has a later deadline than the items behind it: they wait for it,
    // so one connection's replies never come back out of order.
    let mut p = Pending::default();
    hold(&mut p, AckMode::Sync, 1, 500, 0);
    hold(&mut p, AckMode::Sync, 2, 100, 1);
    hold(&mut p, AckMode::Sync, 3, 100, 2);
    hold(&mut p, AckMode::Async, 7, 100, 3);

    eprintln!("phase: at 100 only the other mode's item expires");
    let out = p.expire(100);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, out[0].1.mode), (Lsn(7), AckMode::Async));
    assert_len(&p, 3);

    eprintln!("phase: at 500 the head expires and the ones behind it follow, in order");
    let lsns: Vec<Lsn> = p.expire(500).into_iter().map(|(l, _)| l).collect();
    assert_eq!(lsns, vec![Lsn(1), Lsn(2), Lsn(3)]);
    assert_len(&p, 0);
}

#[test]
fn a_released_item_no_longer_expires_and_an_expired_one_is_not_released() {
    let mut p = Pending::default();
    hold(&mut p, AckMode::Async, 1, 50, 0);
    hold(&mut p, AckMode::Async, 2, 60, 1);
    assert_eq!(of(&p.release(|_| Lsn(1)), AckMode::Async), vec![(1, 0)]);
    let expired = p.expire(1000);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].1.tag, 1);
    assert!(p.release(|_| Lsn(1000)).is_empty());
    assert_len(&p, 0);
}

#[test]
fn drain_returns_everything_with_its_lsn_and_leaves_it_empty() {
    let mut p = Pending::default();
    hold(&mut p, AckMode::Sync, 1, NEVER, 0);
    hold(&mut p, AckMode::Sync, 3, 10, 1);
    hold(&mut p, AckMode::SemiSync(2), 2, NEVER, 2);
    hold(&mut p, AckMode::Async, 4, 20, 3);

    let drained = p.drain();
    assert_len(&p, 0);
    let mut got: Vec<(u64, u32)> = drained
        .iter()
        .map(|(lsn, r)| {
            assert_eq!(lsn.0, r.lsn, "drain pairs each item with its own LSN");
            (lsn.0, r.tag)
        })
        .collect();
    got.sort_unstable();
    assert_eq!(got, vec![(1, 0), (2, 2), (3, 1), (4, 3)]);
    // Per mode, the order is the hold order.
    let sync: Vec<u32> = drained
        .iter()
        .filter(|(_, r)| r.mode == AckMode::Sync)
        .map(|(_, r)| r.tag)
        .collect();
    assert_eq!(sync, vec![0, 1]);

    eprintln!("phase: nothing is left to release, expire or drain");
    assert!(p.release(|_| Lsn(u64::MAX)).is_empty());
    assert!(p.expire(NEVER).is_empty());
    assert!(p.drain().is_empty());
    assert_eq!(p.first_lsn(AckMode::Sync), None);

    eprintln!("phase: a drained pending takes holds again, from any LSN");
    hold(&mut p, AckMode::Sync, 1, NEVER, 9);
    assert_len(&p, 1);
}

#[test]
fn holds_of_equal_lsns_are_allowed_and_kept_in_order() {
    let mut p = Pending::default();
    for tag in 0..3 {
        hold(&mut p, AckMode::Quorum, 5, NEVER, tag);
    }
    let out = p.release(|_| Lsn(5));
    assert_eq!(of(&out, AckMode::Quorum), vec![(5, 0), (5, 1), (5, 2)]);
}

#[test]
fn modes_are_ordered_independently() {
    // A lower LSN in another mode is fine: each mode has its own queue.
    let mut p = Pending::default();
    hold(&mut p, AckMode::Sync, 10, NEVER, 0);
    hold(&mut p, AckMode::Async, 3, NEVER, 1);
    hold(&mut p, AckMode::SemiSync(1), 2, NEVER, 2);
    hold(&mut p, AckMode::SemiSync(2), 1, NEVER, 3);
    assert_len(&p, 4);
}

#[test]
#[should_panic(expected = "holds come in LSN order")]
fn holding_out_of_lsn_order_within_a_mode_panics() {
    let mut p = Pending::default();
    hold(&mut p, AckMode::Sync, 5, NEVER, 0);
    hold(&mut p, AckMode::Sync, 4, NEVER, 1);
}

#[test]
#[should_panic(expected = "holds come in LSN order")]
fn holding_below_a_released_item_still_panics_while_the_queue_is_not_empty() {
    let mut p = Pending::default();
    hold(&mut p, AckMode::SemiSync(3), 5, NEVER, 0);
    hold(&mut p, AckMode::SemiSync(3), 8, NEVER, 1);
    let _released = p.release(|_| Lsn(5));
    hold(&mut p, AckMode::SemiSync(3), 6, NEVER, 2);
}

// ---- property: Pending against a model ----

const MODES: [AckMode; 4] = [
    AckMode::Async,
    AckMode::SemiSync(2),
    AckMode::Sync,
    AckMode::Quorum,
];

#[derive(Clone, Debug)]
enum Op {
    /// Hold in `MODES[mode]`, `step` past the mode's last LSN, `ttl_ms` from now (None: never).
    Hold {
        mode: usize,
        step: u64,
        ttl_ms: Option<u64>,
    },
    /// Release with these commit LSNs, one per mode.
    Release {
        commits: [u64; 4],
    },
    /// Let time pass, then expire.
    Expire {
        after_ms: u64,
    },
    Drain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..4usize, 0..3u64, prop::option::of(0..50u64))
            .prop_map(|(mode, step, ttl_ms)| Op::Hold { mode, step, ttl_ms }),
        3 => prop::array::uniform4(0..40u64).prop_map(|commits| Op::Release { commits }),
        2 => (0..30u64).prop_map(|after_ms| Op::Expire { after_ms }),
        1 => Just(Op::Drain),
    ]
}

/// Splits `out` by mode, keeping the order within each.
fn by_mode<T: Copy>(out: &[(usize, T)]) -> [Vec<T>; 4] {
    let mut split: [Vec<T>; 4] = Default::default();
    for (mode, x) in out {
        split[*mode].push(*x);
    }
    split
}

proptest! {
    #[test]
    fn pending_matches_a_queue_per_mode(ops in prop::collection::vec(op(), 0..80)) {
        // Items are `(mode index, tag)`; tags grow with every hold.
        let mut p: Pending<(usize, u32)> = Pending::default();
        // Per mode: (lsn, deadline, tag), in hold order.
        let mut model: [Vec<(u64, u64, u32)>; 4] = Default::default();
        let mut last = [0u64; 4];
        let mut now_ms = 0u64;
        for (tag, op) in (0u32..).zip(ops) {
            match op {
                Op::Hold { mode, step, ttl_ms } => {
                    let lsn = last[mode] + step;
                    last[mode] = lsn;
                    let deadline = ttl_ms.map_or(NEVER, |t| now_ms + t);
                    p.hold(MODES[mode], Lsn(lsn), deadline, (mode, tag));
                    model[mode].push((lsn, deadline, tag));
                }
                Op::Release { commits } => {
                    let out = p.release(|m| {
                        let i = MODES.iter().position(|x| *x == m).expect("a mode in MODES");
                        Lsn(commits[i])
                    });
                    for (i, queue) in model.iter_mut().enumerate() {
                        let n = queue.iter().take_while(|(l, _, _)| *l <= commits[i]).count();
                        let want: Vec<u32> = queue.drain(..n).map(|(_, _, t)| t).collect();
                        prop_assert_eq!(&by_mode(&out)[i], &want, "release, mode {}", MODES[i]);
                    }
                }
                Op::Expire { after_ms } => {
                    now_ms += after_ms;
                    let out: Vec<(usize, (Lsn, u32))> =
                        p.expire(now_ms).into_iter().map(|(l, (m, t))| (m, (l, t))).collect();
                    for (i, queue) in model.iter_mut().enumerate() {
                        let n = queue.iter().take_while(|(_, d, _)| *d <= now_ms).count();
                        let want: Vec<(Lsn, u32)> =
                            queue.drain(..n).map(|(l, _, t)| (Lsn(l), t)).collect();
                        prop_assert_eq!(&by_mode(&out)[i], &want, "expire, mode {}", MODES[i]);
                    }
                }
                Op::Drain => {
                    let out: Vec<(usize, (Lsn, u32))> =
                        p.drain().into_iter().map(|(l, (m, t))| (m, (l, t))).collect();
                    for (i, queue) in model.iter_mut().enumerate() {
                        let want: Vec<(Lsn, u32)> =
                            queue.drain(..).map(|(l, _, t)| (Lsn(l), t)).collect();
                        prop_assert_eq!(&by_mode(&out)[i], &want, "drain, mode {}", MODES[i]);
                    }
                }
            }
            let held: usize = model.iter().map(Vec::len).sum();
            prop_assert_eq!(p.len(), held);
            prop_assert_eq!(p.is_empty(), held == 0);
            for (i, queue) in model.iter().enumerate() {
                prop_assert_eq!(p.first_lsn(MODES[i]), queue.first().map(|(l, _, _)| Lsn(*l)));
            }
        }
    }
}
