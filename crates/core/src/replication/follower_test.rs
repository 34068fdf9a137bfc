//! Tests for the follower's checks on what its upstream sends (fencing by epoch, log
//! continuity, record order) and for the upstream's choice between streaming and a snapshot.

use super::epochs_test::table;
use super::follower::{
    check_entries, check_epoch, plan_cut, plan_fetch, EntriesRefusal, FetchPlan,
};
use crate::position::{Epoch, LogPosition, Lsn};

fn pos(epoch: u64, lsn: u64) -> LogPosition {
    LogPosition {
        epoch: Epoch(epoch),
        lsn: Lsn(lsn),
    }
}

/// Records `(epoch, lsn)` for `lsns`, all in `epoch`.
fn run(epoch: u64, lsns: std::ops::RangeInclusive<u64>) -> Vec<LogPosition> {
    lsns.map(|lsn| pos(epoch, lsn)).collect()
}

// ---- check_epoch ----

#[test]
fn check_epoch_accepts_the_known_epoch_and_higher_ones() {
    assert_eq!(check_epoch(Epoch(3), Epoch(3)), Ok(()));
    assert_eq!(check_epoch(Epoch(4), Epoch(3)), Ok(()));
    assert_eq!(check_epoch(Epoch(u64::MAX), Epoch(0)), Ok(()));
    assert_eq!(check_epoch(Epoch(0), Epoch(0)), Ok(()));
}

#[test]
fn check_epoch_refuses_a_lower_epoch_and_names_both() {
    assert_eq!(
        check_epoch(Epoch(2), Epoch(3)),
        Err(EntriesRefusal::StaleEpoch {
            got: Epoch(2),
            known: Epoch(3)
        })
    );
    let message = check_epoch(Epoch(0), Epoch(7)).unwrap_err().to_string();
    assert_eq!(message, "stale epoch 0: this node has seen epoch 7");
}

// ---- check_entries ----

#[test]
fn check_entries_accepts_a_batch_that_continues_the_log() {
    let records = vec![pos(2, 6), pos(2, 7), pos(3, 8), pos(3, 9)];
    assert_eq!(
        check_entries(pos(2, 5), Epoch(3), Epoch(3), pos(2, 5), records),
        Ok(())
    );
}

#[test]
fn check_entries_accepts_the_first_batch_of_an_empty_log() {
    assert_eq!(
        check_entries(pos(0, 0), Epoch(0), Epoch(1), pos(0, 0), run(1, 1..=3)),
        Ok(())
    );
}

#[test]
fn check_entries_accepts_a_sender_from_a_newer_epoch() {
    // A new leader (epoch 5) sends records it inherited from epoch 2.
    assert_eq!(
        check_entries(pos(2, 5), Epoch(2), Epoch(5), pos(2, 5), run(2, 6..=7)),
        Ok(())
    );
}

#[test]
fn check_entries_accepts_an_empty_batch_with_a_current_epoch_wherever_it_claims_to_start() {
    // An empty batch is a heartbeat: only the epoch matters.
    for prev in [pos(2, 5), pos(1, 3), pos(9, 90)] {
        for epoch in [3, 4] {
            assert_eq!(
                check_entries(pos(2, 5), Epoch(3), Epoch(epoch), prev, Vec::new()),
                Ok(()),
                "prev {prev}, epoch {epoch}"
            );
        }
    }
}

#[test]
fn check_entries_refuses_a_stale_epoch_even_for_an_empty_batch() {
    assert_eq!(
        check_entries(pos(2, 5), Epoch(3), Epoch(2), pos(2, 5), Vec::new()),
        Err(EntriesRefusal::StaleEpoch {
            got: Epoch(2),
            known: Epoch(3)
        })
    );
}

#[test]
fn check_entries_checks_the_epoch_before_continuity() {
    // Both a stale epoch and a gap: the epoch is reported.
    assert_eq!(
        check_entries(pos(3, 5), Epoch(3), Epoch(2), pos(2, 9), run(2, 10..=10)),
        Err(EntriesRefusal::StaleEpoch {
            got: Epoch(2),
            known: Epoch(3)
        })
    );
}

#[test]
fn check_entries_refuses_a_batch_that_does_not_start_after_the_last_entry() {
    let last = pos(2, 5);
    let cases = [
        ("starts past the end", pos(2, 6), run(2, 7..=8)),
        ("overlaps the log", pos(2, 4), run(2, 5..=6)),
        ("same LSN, other epoch (diverged)", pos(1, 5), run(2, 6..=6)),
        ("from the start of an empty log", pos(0, 0), run(1, 1..=1)),
    ];
    for (why, prev, records) in cases {
        assert_eq!(
            check_entries(last, Epoch(2), Epoch(2), prev, records),
            Err(EntriesRefusal::Gap { prev, last }),
            "{why}"
        );
    }
}

#[test]
fn check_entries_refuses_lsns_that_are_not_consecutive() {
    let last = pos(2, 5);
    let cases = [
        ("first record skips one", vec![pos(2, 7)], pos(2, 7), last),
        (
            "first record repeats prev",
            vec![pos(2, 5)],
            pos(2, 5),
            last,
        ),
        (
            "a later record skips one",
            vec![pos(2, 6), pos(2, 8)],
            pos(2, 8),
            pos(2, 6),
        ),
        (
            "a later record repeats",
            vec![pos(2, 6), pos(2, 7), pos(2, 7)],
            pos(2, 7),
            pos(2, 7),
        ),
        (
            "a later record goes back",
            vec![pos(2, 6), pos(2, 7), pos(2, 6)],
            pos(2, 6),
            pos(2, 7),
        ),
    ];
    for (why, records, bad, after) in cases {
        assert_eq!(
            check_entries(last, Epoch(2), Epoch(2), last, records),
            Err(EntriesRefusal::Disorder { pos: bad, after }),
            "{why}"
        );
    }
}

#[test]
fn check_entries_refuses_epochs_that_go_back() {
    let last = pos(3, 5);
    // Below the epoch of the entry the batch continues.
    assert_eq!(
        check_entries(last, Epoch(3), Epoch(4), last, vec![pos(2, 6)]),
        Err(EntriesRefusal::Disorder {
            pos: pos(2, 6),
            after: last
        })
    );
    // Below an earlier record of the batch.
    assert_eq!(
        check_entries(
            last,
            Epoch(3),
            Epoch(4),
            last,
            vec![pos(3, 6), pos(4, 7), pos(3, 8)]
        ),
        Err(EntriesRefusal::Disorder {
            pos: pos(3, 8),
            after: pos(4, 7)
        })
    );
}

#[test]
fn check_entries_refuses_a_record_epoch_above_the_senders() {
    let last = pos(3, 5);
    assert_eq!(
        check_entries(last, Epoch(3), Epoch(4), last, vec![pos(4, 6), pos(5, 7)]),
        Err(EntriesRefusal::Disorder {
            pos: pos(5, 7),
            after: pos(4, 6)
        })
    );
}

#[test]
fn check_entries_reports_the_first_offending_record() {
    let last = pos(1, 1);
    let records = vec![pos(1, 2), pos(1, 4), pos(9, 5)];
    let refusal = check_entries(last, Epoch(1), Epoch(1), last, records).unwrap_err();
    assert_eq!(
        refusal,
        EntriesRefusal::Disorder {
            pos: pos(1, 4),
            after: pos(1, 2)
        }
    );
    assert_eq!(refusal.to_string(), "record 1:4 is out of order after 1:2");
}

#[test]
fn gap_message_names_both_positions() {
    let refusal = EntriesRefusal::Gap {
        prev: pos(2, 9),
        last: pos(2, 5),
    };
    assert_eq!(
        refusal.to_string(),
        "entries after 2:9 do not continue the log, which ends at 2:5"
    );
}

// ---- plan_fetch ----

const OURS: u64 = 0xABCD;

#[test]
fn plan_fetch_streams_from_the_next_lsn_when_the_follower_holds_a_prefix() {
    let last = pos(4, 100);
    assert_eq!(
        plan_fetch(pos(3, 40), OURS, OURS, last, Some(Epoch(3))),
        FetchPlan::Stream { first: Lsn(41) }
    );
    // Caught up: stream from past the end, nothing to send yet.
    assert_eq!(
        plan_fetch(last, OURS, OURS, last, Some(Epoch(4))),
        FetchPlan::Stream { first: Lsn(101) }
    );
}

#[test]
fn plan_fetch_sends_a_snapshot_to_an_empty_follower() {
    let reason = "the follower has no log yet";
    assert_eq!(
        plan_fetch(pos(0, 0), OURS, OURS, pos(4, 100), Some(Epoch(0))),
        FetchPlan::Snapshot { reason }
    );
    // Empty wins over every other reason.
    assert_eq!(
        plan_fetch(pos(0, 0), 7, OURS, pos(4, 100), None),
        FetchPlan::Snapshot { reason }
    );
}

#[test]
fn plan_fetch_sends_a_snapshot_to_a_follower_without_history() {
    assert_eq!(
        plan_fetch(pos(3, 40), 0, OURS, pos(4, 100), Some(Epoch(3))),
        FetchPlan::Snapshot {
            reason: "the follower has no log yet"
        }
    );
}

#[test]
fn plan_fetch_sends_a_snapshot_to_a_follower_from_another_history() {
    assert_eq!(
        plan_fetch(pos(3, 40), OURS + 1, OURS, pos(4, 100), Some(Epoch(3))),
        FetchPlan::Snapshot {
            reason: "the follower's log belongs to another history"
        }
    );
}

#[test]
fn plan_fetch_sends_a_snapshot_to_a_follower_ahead_of_this_log() {
    assert_eq!(
        plan_fetch(pos(4, 101), OURS, OURS, pos(4, 100), None),
        FetchPlan::Snapshot {
            reason: "the follower is ahead of this log (it holds entries this node lost)"
        }
    );
}

#[test]
fn plan_fetch_sends_a_snapshot_to_a_follower_behind_the_retained_log() {
    assert_eq!(
        plan_fetch(pos(1, 3), OURS, OURS, pos(4, 100), None),
        FetchPlan::Snapshot {
            reason: "the follower is behind the retained log"
        }
    );
}

#[test]
fn plan_fetch_sends_a_snapshot_to_a_follower_whose_log_diverged() {
    let reason = "the follower's log diverges from this one";
    // The follower kept an entry of a deposed leader (epoch 3) where we hold epoch 4.
    assert_eq!(
        plan_fetch(pos(3, 90), OURS, OURS, pos(4, 100), Some(Epoch(4))),
        FetchPlan::Snapshot { reason }
    );
    // A higher epoch than ours at that LSN diverges too.
    assert_eq!(
        plan_fetch(pos(5, 90), OURS, OURS, pos(4, 100), Some(Epoch(4))),
        FetchPlan::Snapshot { reason }
    );
}

#[test]
fn plan_cut_finds_the_last_shared_entry_of_a_returning_old_leader() {
    // Ours: 1:1 1:2 3:3 3:4; theirs (deposed in epoch 2): 1:1 1:2 2:3 2:4 2:5.
    let ours = table(&[1, 1, 3, 3]);
    let theirs = table(&[1, 1, 2, 2, 2]);
    let from = pos(2, 5);
    assert_eq!(
        plan_cut(from, 7, 7, &theirs, Lsn(0), &ours, Lsn(4)),
        Some(pos(1, 2))
    );
    // Not below its snapshot, not across histories, not for an empty log.
    assert_eq!(plan_cut(from, 7, 7, &theirs, Lsn(3), &ours, Lsn(4)), None);
    assert_eq!(plan_cut(from, 7, 8, &theirs, Lsn(0), &ours, Lsn(4)), None);
    assert_eq!(plan_cut(from, 0, 7, &theirs, Lsn(0), &ours, Lsn(4)), None);
    // A follower whose log is a prefix of ours has nothing to cut.
    let prefix = table(&[1, 1, 3]);
    assert_eq!(
        plan_cut(pos(3, 3), 7, 7, &prefix, Lsn(0), &ours, Lsn(4)),
        None
    );
}
