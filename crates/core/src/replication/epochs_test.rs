//! Tests for [`EpochTable`] and [`shared_prefix`]: boundaries noted in order, lookups,
//! truncation, and a property test against a comparison of the two logs entry by entry.

use super::epochs::{shared_prefix, EpochTable};
use crate::position::{Epoch, LogPosition, Lsn};
use proptest::prelude::*;

fn at(epoch: u64, lsn: u64) -> LogPosition {
    LogPosition {
        epoch: Epoch(epoch),
        lsn: Lsn(lsn),
    }
}

/// The table of a log whose entry `i` (LSN `i + 1`) has epoch `epochs[i]`.
pub(super) fn table(epochs: &[u64]) -> EpochTable {
    let mut t = EpochTable::default();
    for (i, e) in epochs.iter().enumerate() {
        t.note(at(*e, i as u64 + 1)).unwrap();
    }
    t
}

#[test]
fn a_table_records_where_each_epoch_starts_and_answers_lookups() {
    let t = table(&[1, 1, 1, 3, 3, 4]);
    assert_eq!(
        t.starts(),
        [(Epoch(1), Lsn(1)), (Epoch(3), Lsn(4)), (Epoch(4), Lsn(6))]
    );
    assert_eq!(t.epoch_at(Lsn(0)), None);
    assert_eq!(t.epoch_at(Lsn(3)), Some(Epoch(1)));
    assert_eq!(t.epoch_at(Lsn(5)), Some(Epoch(3)));
    assert_eq!(t.epoch_at(Lsn(600)), Some(Epoch(4)));
}

#[test]
fn an_epoch_that_goes_back_is_refused_and_changes_nothing() {
    let mut t = table(&[2, 2, 5]);
    let before = t.clone();
    assert!(t.note(at(4, 4)).is_err());
    assert!(
        t.note(at(6, 3)).is_err(),
        "a new epoch at or before the last start"
    );
    assert_eq!(t, before);
    assert_eq!(t.note(at(5, 4)), Ok(false));
    assert_eq!(t.note(at(7, 5)), Ok(true));
    assert!(EpochTable::from_starts(&[(Epoch(2), Lsn(5)), (Epoch(3), Lsn(5))]).is_err());
    assert!(EpochTable::from_starts(&[(Epoch(2), Lsn(5)), (Epoch(1), Lsn(9))]).is_err());
}

#[test]
fn truncation_forgets_later_epochs() {
    let mut t = table(&[1, 1, 3, 3, 4]);
    t.truncate_after(Lsn(3));
    assert_eq!(t.starts(), [(Epoch(1), Lsn(1)), (Epoch(3), Lsn(3))]);
    t.truncate_after(Lsn(0));
    assert!(t.starts().is_empty());
}

#[test]
fn an_old_leader_shares_the_log_up_to_where_the_new_epoch_began() {
    // The old leader wrote epoch 3 up to LSN 9; the new leader holds epoch 3 up to 6 and then
    // its own epoch 4.
    let old = table(&[1, 1, 3, 3, 3, 3, 3, 3, 3]);
    let new = table(&[1, 1, 3, 3, 3, 3, 4, 4, 4, 4, 4]);
    assert_eq!(shared_prefix(&old, Lsn(9), &new, Lsn(11)), at(3, 6));
    assert_eq!(shared_prefix(&new, Lsn(11), &old, Lsn(9)), at(3, 6));
    // A follower that is only behind shares all it has.
    let behind = table(&[1, 1, 3]);
    assert_eq!(shared_prefix(&behind, Lsn(3), &new, Lsn(11)), at(3, 3));
    // Logs that part at the first entry share nothing.
    assert_eq!(
        shared_prefix(&table(&[2]), Lsn(1), &table(&[1]), Lsn(1)),
        at(0, 0)
    );
    assert_eq!(
        shared_prefix(&EpochTable::default(), Lsn(0), &new, Lsn(11)),
        at(0, 0)
    );
}

/// A nondecreasing epoch sequence from steps: each step keeps the epoch or raises it.
fn epochs(base: u64, steps: &[u8]) -> Vec<u64> {
    let mut e = base;
    steps
        .iter()
        .map(|s| {
            e += u64::from(*s % 3 == 0);
            e
        })
        .collect()
}

proptest! {
    #[test]
    fn shared_prefix_matches_an_entry_by_entry_comparison(
        common in proptest::collection::vec(any::<u8>(), 0..20),
        a_tail in proptest::collection::vec(any::<u8>(), 0..20),
        b_tail in proptest::collection::vec(any::<u8>(), 0..20),
        a_bump in 0u64..3,
        b_bump in 0u64..3,
    ) {
        let prefix = epochs(1, &common);
        let last = prefix.last().copied().unwrap_or(1);
        let mut a = prefix.clone();
        a.extend(epochs(last + a_bump, &a_tail));
        let mut b = prefix;
        b.extend(epochs(last + b_bump, &b_tail));
        let expected = a.iter().zip(&b).take_while(|(x, y)| x == y).count() as u64;
        let got = shared_prefix(&table(&a), Lsn(a.len() as u64), &table(&b), Lsn(b.len() as u64));
        prop_assert_eq!(got.lsn, Lsn(expected), "a {:?} b {:?}", a, b);
        let epoch = if expected == 0 { 0 } else { a[expected as usize - 1] };
        prop_assert_eq!(got.epoch, Epoch(epoch));
    }
}
