//! Transition tests for [`Replicas`]: follower links and acks, lag in entries and in
//! milliseconds, the in-sync set, and the commit LSN of each acknowledgement mode.
//!
//! Every test builds the upstream's view, feeds it inputs at explicit times, and checks the
//! exact state or the exact changes returned. [`check`] verifies the invariants that hold
//! after any input.

use super::ack::AckMode;
use super::replicas::{IsrChange, ReplicaProgress, Replicas};
use crate::position::Lsn;

/// The lag bound of most tests.
const LAG_MAX_MS: u64 = 100;

fn lsn(n: u64) -> Lsn {
    Lsn(n)
}

/// An upstream with an empty log, `lag_max_ms` [`LAG_MAX_MS`], the cluster size counted from
/// the known followers, and `ids` connected at time 0.
fn upstream(ids: &[&str]) -> Replicas {
    let mut r = Replicas::new(Lsn::ZERO, LAG_MAX_MS, 0);
    for (i, id) in ids.iter().enumerate() {
        r.connect(id, &format!("10.0.0.{}:6379", i + 1), 0);
    }
    check(&r);
    r
}

/// A follower reports `durable` both durable and applied.
fn ack(r: &mut Replicas, id: &str, durable: u64, now_ms: u64) {
    r.on_ack(id, lsn(durable), lsn(durable), now_ms);
    check(r);
}

fn progress<'a>(r: &'a Replicas, id: &str) -> &'a ReplicaProgress {
    r.get(id).expect("the test connected this replica")
}

fn lag_ms(r: &Replicas, id: &str, now_ms: u64) -> u64 {
    r.lag_ms(progress(r, id), now_ms)
}

fn joined(id: &str) -> IsrChange {
    IsrChange::Joined { id: id.to_string() }
}

fn left(id: &str, lag_ms: u64) -> IsrChange {
    IsrChange::Left {
        id: id.to_string(),
        lag_ms,
    }
}

fn in_sync(r: &Replicas) -> Vec<&str> {
    r.iter()
        .filter(|p| p.in_sync)
        .map(|p| p.id.as_str())
        .collect()
}

/// Invariants that hold after any input.
fn check(r: &Replicas) {
    let in_sync = r.iter().filter(|p| p.in_sync && r.counts(&p.id)).count() as u32;
    assert_eq!(r.in_sync_count(), in_sync, "in_sync_count");
    let ids: Vec<&str> = r.iter().map(|p| p.id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "iter is in id order");
    for p in r.iter() {
        assert_eq!(r.get(&p.id), Some(p), "get({}) agrees with iter", p.id);
        assert_eq!(
            r.lag_entries(p),
            r.last().0.saturating_sub(p.durable.0),
            "lag_entries of {}",
            p.id
        );
    }
}

// ---- links and acks ----

#[test]
fn connect_registers_a_follower_out_of_sync_at_lsn_zero() {
    let mut r = upstream(&[]);
    r.connect("a", "10.0.0.1:6379", 42);
    assert_eq!(
        progress(&r, "a"),
        &ReplicaProgress {
            id: "a".into(),
            addr: "10.0.0.1:6379".into(),
            durable: Lsn::ZERO,
            applied: Lsn::ZERO,
            connected: true,
            in_sync: false,
            last_contact_ms: 42,
            since_ms: 42,
            awaiting_ack: false,
        }
    );
    assert_eq!(r.in_sync_count(), 0);
    assert_eq!(r.cluster_size(), 2);
    check(&r);
}

#[test]
fn disconnect_keeps_the_follower_and_its_positions() {
    let mut r = upstream(&["a"]);
    ack(&mut r, "a", 0, 10);
    r.on_append(lsn(5), 10);
    ack(&mut r, "a", 5, 20);
    r.disconnect("a", 30);
    check(&r);
    let a = progress(&r, "a");
    assert!(!a.connected);
    assert_eq!(a.durable, lsn(5));
    assert_eq!(a.since_ms, 30);
    assert_eq!(a.last_contact_ms, 20, "a disconnect is no contact");
    assert_eq!(r.durable_count(lsn(5)), 1);
}

#[test]
fn reconnect_keeps_positions_and_takes_the_new_address_and_times() {
    let mut r = upstream(&["a"]);
    r.on_append(lsn(3), 1);
    ack(&mut r, "a", 3, 5);
    r.disconnect("a", 10);
    r.connect("a", "10.9.9.9:7000", 50);
    check(&r);
    let a = progress(&r, "a");
    assert!(a.connected);
    assert_eq!(a.addr, "10.9.9.9:7000");
    assert_eq!((a.durable, a.applied), (lsn(3), lsn(3)));
    assert_eq!((a.last_contact_ms, a.since_ms), (50, 50));
}

#[test]
fn inputs_for_an_unknown_follower_change_nothing() {
    let mut r = upstream(&["a"]);
    r.on_append(lsn(3), 1);
    let before = format!("{r:?}");
    r.on_ack("zz", lsn(3), lsn(3), 5);
    r.disconnect("zz", 5);
    r.reset_replica("zz", lsn(2));
    assert!(!r.remove("zz"));
    assert_eq!(format!("{r:?}"), before);
    assert!(r.get("zz").is_none());
}

#[test]
fn ack_moves_positions_and_records_contact() {
    let mut r = upstream(&["a"]);
    r.on_append(lsn(9), 1);
    r.on_ack("a", lsn(7), lsn(4), 33);
    check(&r);
    let a = progress(&r, "a");
    assert_eq!(
        (a.durable, a.applied, a.last_contact_ms),
        (lsn(7), lsn(4), 33)
    );
    assert_eq!(a.since_ms, 0, "an ack does not restart the link");
}

#[test]
fn stale_acks_never_move_positions_back() {
    let mut r = upstream(&["a"]);
    r.on_append(lsn(10), 1);
    r.on_ack("a", lsn(8), lsn(6), 10);

    eprintln!("phase: an older ack arrives late; only the contact time moves");
    r.on_ack("a", lsn(5), lsn(2), 20);
    let a = progress(&r, "a");
    assert_eq!(
        (a.durable, a.applied, a.last_contact_ms),
        (lsn(8), lsn(6), 20)
    );

    eprintln!("phase: each position moves forward on its own");
    r.on_ack("a", lsn(7), lsn(7), 30);
    let a = progress(&r, "a");
    assert_eq!((a.durable, a.applied), (lsn(8), lsn(7)));
    check(&r);
}

#[test]
fn reset_replica_sets_positions_outright_even_backwards() {
    let mut r = upstream(&["a"]);
    r.on_append(lsn(10), 1);
    ack(&mut r, "a", 9, 5);
    r.reset_replica("a", lsn(4));
    check(&r);
    let a = progress(&r, "a");
    assert_eq!((a.durable, a.applied), (lsn(4), lsn(4)));
    assert_eq!(a.last_contact_ms, 5);

    eprintln!("phase: after the reset a stale ack may move it forward again");
    ack(&mut r, "a", 6, 6);
    assert_eq!(progress(&r, "a").durable, lsn(6));
}

#[test]
fn remove_forgets_a_follower() {
    let mut r = upstream(&["a", "b"]);
    assert_eq!(r.cluster_size(), 3);
    assert!(r.remove("a"));
    assert!(!r.remove("a"));
    assert!(r.get("a").is_none());
    assert_eq!(r.cluster_size(), 2);
    assert_eq!(r.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["b"]);
    check(&r);
}

#[test]
fn iter_lists_followers_by_id() {
    let r = upstream(&["c", "a", "b"]);
    let ids: Vec<&str> = r.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
}

// ---- the log's end ----

#[test]
fn on_append_only_moves_the_end_forward() {
    let mut r = Replicas::new(lsn(5), LAG_MAX_MS, 0);
    assert_eq!(r.last(), lsn(5));
    r.on_append(lsn(8), 1);
    assert_eq!(r.last(), lsn(8));
    r.on_append(lsn(8), 2);
    r.on_append(lsn(3), 3);
    assert_eq!(r.last(), lsn(8));
}

#[test]
fn reset_log_sets_the_end_outright() {
    let mut r = upstream(&["a"]);
    r.on_append(lsn(50), 10);
    r.reset_log(lsn(20));
    assert_eq!(r.last(), lsn(20));
    assert_eq!(r.lag_entries(progress(&r, "a")), 20);
    r.reset_log(lsn(200));
    assert_eq!(r.last(), lsn(200));
}

// ---- lag ----

#[test]
fn lag_entries_counts_what_the_follower_lacks() {
    let mut r = upstream(&["a"]);
    r.on_append(lsn(10), 1);
    assert_eq!(r.lag_entries(progress(&r, "a")), 10);
    ack(&mut r, "a", 7, 2);
    assert_eq!(r.lag_entries(progress(&r, "a")), 3);
    ack(&mut r, "a", 10, 3);
    assert_eq!(r.lag_entries(progress(&r, "a")), 0);
    // A follower that reports more than the log holds lacks nothing.
    ack(&mut r, "a", 12, 4);
    assert_eq!(r.lag_entries(progress(&r, "a")), 0);
}

#[test]
fn lag_ms_is_zero_when_caught_up_however_late() {
    let mut r = upstream(&["a"]);
    assert_eq!(lag_ms(&r, "a", 1_000), 0, "empty log");
    r.on_append(lsn(4), 10);
    ack(&mut r, "a", 4, 11);
    assert_eq!(lag_ms(&r, "a", 1_000_000), 0);
    ack(&mut r, "a", 9, 12);
    assert_eq!(lag_ms(&r, "a", 1_000_000), 0, "ahead");
}

#[test]
fn lag_ms_is_the_age_of_the_oldest_missing_entry() {
    let mut r = upstream(&["a"]);
    r.on_append(lsn(3), 10); // 1..=3 at 10
    r.on_append(lsn(4), 20); // 4 at 20
    r.on_append(lsn(6), 40); // 5..=6 at 40
    let cases = [(0, 40), (1, 40), (2, 40), (3, 30), (4, 10), (5, 10), (6, 0)];
    for (durable, want) in cases {
        r.reset_replica("a", lsn(durable));
        assert_eq!(lag_ms(&r, "a", 50), want, "durable {durable}");
    }
}

#[test]
fn lag_ms_grows_with_time_until_an_ack() {
    let mut r = upstream(&["a"]);
    r.on_append(lsn(1), 100);
    for now in [100, 150, 1_000] {
        assert_eq!(lag_ms(&r, "a", now), now - 100);
    }
    ack(&mut r, "a", 1, 1_000);
    assert_eq!(lag_ms(&r, "a", 2_000), 0);
}

#[test]
fn lag_ms_counts_every_entry_appended_in_one_millisecond() {
    // Entries 1 and 2 both arrive at 10, entry 3 at 50. A follower holding 1 lacks 2, which
    // is 50 ms old at 60, not 10 ms (the age of entry 3).
    let mut r = upstream(&["a"]);
    r.on_append(lsn(1), 10);
    r.on_append(lsn(2), 10);
    r.on_append(lsn(3), 50);
    ack(&mut r, "a", 1, 60);
    assert_eq!(lag_ms(&r, "a", 60), 50);
    ack(&mut r, "a", 2, 60);
    assert_eq!(lag_ms(&r, "a", 60), 10);
}

#[test]
fn lag_ms_of_a_lagging_follower_survives_evaluations() {
    // Evaluating drops timeline points, never one a connected follower still needs.
    let mut r = upstream(&["a", "b"]);
    for (i, now) in (1..=20).zip((10..).step_by(10)) {
        r.on_append(lsn(i), now);
        ack(&mut r, "b", i, now);
        let _changes = r.evaluate(now);
    }
    // a has nothing; b has all. a's oldest missing entry (1) came at 10.
    assert_eq!(lag_ms(&r, "a", 200), 190);
    ack(&mut r, "a", 12, 200); // 13 came at 130
    let _changes = r.evaluate(200);
    assert_eq!(lag_ms(&r, "a", 200), 70);
}

// ---- the in-sync set ----

#[test]
fn a_caught_up_follower_joins_once_and_the_change_is_reported_once() {
    let mut r = upstream(&["a"]);
    r.on_append(lsn(5), 10);
    ack(&mut r, "a", 5, 20);
    assert_eq!(r.evaluate(20), vec![joined("a")]);
    check(&r);
    assert!(progress(&r, "a").in_sync);
    assert_eq!(r.evaluate(30), vec![], "no change, nothing reported");
    assert_eq!(r.evaluate(40), vec![]);
}

#[test]
fn a_follower_behind_but_within_the_bound_joins() {
    let mut r = upstream(&["a"]);
    r.on_append(lsn(5), 10);
    r.on_append(lsn(9), 90);
    ack(&mut r, "a", 5, 100);
    // It lacks 6..=9, the oldest 10 ms old.
    assert_eq!(r.evaluate(100), vec![joined("a")]);
    assert_eq!(r.lag_entries(progress(&r, "a")), 4);
}

#[test]
fn a_follower_leaves_when_its_lag_passes_the_bound() {
    let mut r = upstream(&["a"]);
    r.on_append(lsn(1), 0);
    ack(&mut r, "a", 1, 0);
    assert_eq!(r.evaluate(0), vec![joined("a")]);

    eprintln!("phase: entry 2 arrives at 100; a keeps in touch but does not take it");
    r.on_append(lsn(2), 100);
    ack(&mut r, "a", 1, 150);
    ack(&mut r, "a", 1, 200);
    assert_eq!(r.evaluate(200), vec![], "lag exactly the bound stays in");

    eprintln!("phase: one millisecond later it is past the bound");
    ack(&mut r, "a", 1, 201);
    assert_eq!(r.evaluate(201), vec![left("a", 101)]);
    assert!(!progress(&r, "a").in_sync);
    assert_eq!(r.evaluate(202), vec![], "reported once");

    eprintln!("phase: it catches up and joins again");
    ack(&mut r, "a", 2, 250);
    assert_eq!(r.evaluate(250), vec![joined("a")]);
    check(&r);
}

#[test]
fn a_silent_follower_leaves_even_with_nothing_to_fetch() {
    let mut r = upstream(&["a"]);
    r.on_append(lsn(3), 0);
    ack(&mut r, "a", 3, 0);
    assert_eq!(r.evaluate(0), vec![joined("a")]);
    assert_eq!(
        r.evaluate(LAG_MAX_MS),
        vec![],
        "silent exactly the bound stays in"
    );
    assert_eq!(r.evaluate(LAG_MAX_MS + 1), vec![left("a", 0)]);

    eprintln!("phase: it is heard from again and joins");
    ack(&mut r, "a", 3, 500);
    assert_eq!(r.evaluate(500), vec![joined("a")]);
}

#[test]
fn a_disconnected_follower_leaves_at_the_next_evaluation() {
    let mut r = upstream(&["a"]);
    r.on_append(lsn(3), 0);
    ack(&mut r, "a", 2, 0);
    assert_eq!(r.evaluate(0), vec![joined("a")]);
    r.disconnect("a", 10);
    assert!(progress(&r, "a").in_sync, "only evaluate changes the set");
    assert_eq!(r.evaluate(10), vec![left("a", 10)]);
    check(&r);

    eprintln!("phase: while disconnected it never joins, even caught up and in touch");
    ack(&mut r, "a", 3, 20);
    assert_eq!(r.evaluate(20), vec![]);

    eprintln!("phase: reconnected, it joins");
    r.connect("a", "10.0.0.1:6379", 30);
    assert_eq!(r.evaluate(30), vec![joined("a")]);
}

#[test]
fn a_new_follower_far_behind_joins_only_once_within_the_bound() {
    let mut r = upstream(&[]);
    r.on_append(lsn(10), 0);
    r.connect("b", "10.0.0.2:6379", 500);
    assert_eq!(r.evaluate(500), vec![], "it lacks entries 500 ms old");
    assert!(!progress(&r, "b").in_sync);
    ack(&mut r, "b", 10, 510);
    assert_eq!(r.evaluate(510), vec![joined("b")]);
}

#[test]
fn evaluate_reports_changes_of_several_followers_in_id_order() {
    let mut r = upstream(&["c", "a", "b"]);
    r.on_append(lsn(1), 0);
    for id in ["a", "b", "c"] {
        ack(&mut r, id, 1, 0);
    }
    assert_eq!(r.evaluate(0), vec![joined("a"), joined("b"), joined("c")]);
    r.on_append(lsn(2), 10);
    ack(&mut r, "a", 2, 200);
    ack(&mut r, "c", 1, 200);
    // a caught up; b is silent for 200 ms; c lags 190 ms.
    assert_eq!(r.evaluate(200), vec![left("b", 190), left("c", 190)]);
    assert_eq!(in_sync(&r), ["a"]);
    check(&r);
}

// ---- commit LSN ----

/// Three followers: a (durable 7, in sync), b (durable 5, in sync), c (durable 9, out of
/// sync: disconnected). The log ends at 10.
fn three_followers() -> Replicas {
    let mut r = upstream(&["a", "b", "c"]);
    r.on_append(lsn(10), 1_000);
    ack(&mut r, "a", 7, 1_000);
    ack(&mut r, "b", 5, 1_000);
    ack(&mut r, "c", 9, 1_000);
    r.disconnect("c", 1_000);
    let changes = r.evaluate(1_000);
    assert_eq!(changes, vec![joined("a"), joined("b")]);
    check(&r);
    r
}

#[test]
fn async_commits_the_upstreams_own_durable_lsn() {
    let r = three_followers();
    for own in [0, 3, 10] {
        assert_eq!(r.commit_lsn(AckMode::Async, lsn(own)), lsn(own));
    }
    let lonely = upstream(&[]);
    assert_eq!(lonely.commit_lsn(AckMode::Async, lsn(4)), lsn(4));
}

#[test]
fn semi_sync_commits_the_kth_highest_durable_of_all_known_followers() {
    let r = three_followers();
    // Durable: c 9 (disconnected, out of sync), a 7, b 5.
    let cases = [(1, 9), (2, 7), (3, 5), (4, 0), (1000, 0)];
    for (k, want) in cases {
        assert_eq!(
            r.commit_lsn(AckMode::SemiSync(k), lsn(10)),
            lsn(want),
            "semi-sync:{k}"
        );
    }
}

#[test]
fn semi_sync_is_capped_by_the_upstreams_own_durable_lsn() {
    let r = three_followers();
    assert_eq!(r.commit_lsn(AckMode::SemiSync(1), lsn(8)), lsn(8));
    assert_eq!(r.commit_lsn(AckMode::SemiSync(2), lsn(8)), lsn(7));
    assert_eq!(r.commit_lsn(AckMode::SemiSync(3), lsn(2)), lsn(2));
}

#[test]
fn semi_sync_counts_equal_durable_lsns_separately() {
    let mut r = upstream(&["a", "b", "c"]);
    r.on_append(lsn(10), 0);
    for id in ["a", "b"] {
        ack(&mut r, id, 6, 0);
    }
    assert_eq!(r.commit_lsn(AckMode::SemiSync(2), lsn(10)), lsn(6));
    assert_eq!(r.commit_lsn(AckMode::SemiSync(3), lsn(10)), lsn(0));
}

#[test]
fn sync_commits_the_lowest_durable_of_the_in_sync_followers() {
    let r = three_followers();
    // a 7 and b 5 are in sync; c (9) is not and does not count.
    assert_eq!(r.commit_lsn(AckMode::Sync, lsn(10)), lsn(5));
    assert_eq!(r.commit_lsn(AckMode::Sync, lsn(4)), lsn(4), "capped");
}

#[test]
fn sync_commits_nothing_without_an_in_sync_follower() {
    let lonely = upstream(&[]);
    assert_eq!(lonely.commit_lsn(AckMode::Sync, lsn(10)), Lsn::ZERO);

    eprintln!("phase: followers with data but none in sync commit nothing either");
    let mut r = upstream(&["a", "b"]);
    r.on_append(lsn(10), 0);
    ack(&mut r, "a", 10, 0);
    ack(&mut r, "b", 10, 0);
    assert_eq!(r.commit_lsn(AckMode::Sync, lsn(10)), Lsn::ZERO);
    assert_eq!(r.evaluate(0), vec![joined("a"), joined("b")]);
    assert_eq!(r.commit_lsn(AckMode::Sync, lsn(10)), lsn(10));
    r.disconnect("a", 1);
    r.disconnect("b", 1);
    assert_eq!(r.evaluate(1), vec![left("a", 0), left("b", 0)]);
    assert_eq!(r.commit_lsn(AckMode::Sync, lsn(10)), Lsn::ZERO);
}

#[test]
fn quorum_with_the_cluster_size_counted_from_the_known_followers() {
    // Followers' durable LSNs, highest first; own durable 100.
    let durable = [40, 30, 20, 10];
    // With n followers the cluster is n + 1 and a quorum needs (n + 1) / 2 of them; with
    // none the leader alone is the quorum.
    let want = [100, 40, 40, 30, 30];
    for (n, want) in want.into_iter().enumerate() {
        let ids: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut r = upstream(&id_refs);
        r.on_append(lsn(100), 0);
        for (id, d) in ids.iter().zip(durable) {
            ack(&mut r, id, d, 0);
        }
        assert_eq!(r.cluster_size(), n as u32 + 1);
        assert_eq!(
            r.commit_lsn(AckMode::Quorum, lsn(100)),
            lsn(want),
            "{n} followers"
        );
    }
}

#[test]
fn quorum_with_a_configured_cluster_size() {
    let mut r = Replicas::new(Lsn::ZERO, LAG_MAX_MS, 5);
    r.connect("a", "10.0.0.1:6379", 0);
    r.on_append(lsn(10), 0);
    ack(&mut r, "a", 8, 0);
    assert_eq!(r.cluster_size(), 5);
    // 5 nodes need 2 followers; only one is known.
    assert_eq!(r.commit_lsn(AckMode::Quorum, lsn(10)), Lsn::ZERO);
    r.connect("b", "10.0.0.2:6379", 0);
    ack(&mut r, "b", 6, 0);
    assert_eq!(r.cluster_size(), 5, "configured, not counted");
    assert_eq!(r.commit_lsn(AckMode::Quorum, lsn(10)), lsn(6));
    assert_eq!(r.commit_lsn(AckMode::Quorum, lsn(5)), lsn(5), "capped");

    eprintln!("phase: a configured size of one commits on the upstream alone");
    let solo = Replicas::new(Lsn::ZERO, LAG_MAX_MS, 1);
    assert_eq!(solo.commit_lsn(AckMode::Quorum, lsn(3)), lsn(3));
}

#[test]
fn quorum_counts_followers_out_of_sync() {
    let r = three_followers();
    // Cluster of 4: 2 followers; durable c 9 (disconnected), a 7, b 5.
    assert_eq!(r.commit_lsn(AckMode::Quorum, lsn(10)), lsn(7));
}

#[test]
fn commit_lsn_never_passes_the_upstreams_own_durable_lsn() {
    let r = three_followers();
    let modes = [
        AckMode::Async,
        AckMode::SemiSync(1),
        AckMode::SemiSync(2),
        AckMode::Sync,
        AckMode::Quorum,
    ];
    for own in 0..=12 {
        for mode in modes {
            let c = r.commit_lsn(mode, lsn(own));
            assert!(c <= lsn(own), "{mode} with own {own}: {c:?}");
        }
    }
}

// ---- starting writes, WAIT ----

#[test]
fn can_start_needs_enough_followers_in_sync() {
    let mut r = upstream(&["a", "b", "c", "d"]);
    let modes = [
        AckMode::Async,
        AckMode::SemiSync(1),
        AckMode::SemiSync(2),
        AckMode::SemiSync(3),
        AckMode::Sync,
        AckMode::Quorum,
    ];
    // Rows: followers in sync 0..=4 (cluster of 5, quorum needs 2).
    let table: [[bool; 6]; 5] = [
        [true, false, false, false, false, false],
        [true, true, false, false, true, false],
        [true, true, true, false, true, true],
        [true, true, true, true, true, true],
        [true, true, true, true, true, true],
    ];
    // Entry 1 is 200 ms old when the followers are evaluated: only those that have it join.
    r.on_append(lsn(1), 0);
    for (n, row) in table.iter().enumerate() {
        if n > 0 {
            let id = ["a", "b", "c", "d"][n - 1];
            for earlier in &["a", "b", "c", "d"][..n] {
                ack(&mut r, earlier, 1, 200);
            }
            assert_eq!(r.evaluate(200), vec![joined(id)]);
        }
        assert_eq!(r.in_sync_count(), n as u32);
        for (mode, want) in modes.iter().zip(row) {
            assert_eq!(r.can_start(*mode), *want, "{mode} with {n} in sync");
        }
    }
}

#[test]
fn can_start_quorum_uses_the_configured_cluster_size() {
    let mut r = Replicas::new(Lsn::ZERO, LAG_MAX_MS, 5);
    r.connect("a", "10.0.0.1:6379", 0);
    assert_eq!(r.evaluate(0), vec![joined("a")]);
    // Counted from the known followers the cluster would be 2 and need 1.
    assert!(!r.can_start(AckMode::Quorum));
    r.connect("b", "10.0.0.2:6379", 0);
    assert_eq!(r.evaluate(0), vec![joined("b")]);
    assert!(r.can_start(AckMode::Quorum));
}

#[test]
fn durable_count_counts_followers_at_or_past_an_lsn() {
    let r = three_followers();
    // Durable: a 7, b 5, c 9 (disconnected: its disk still holds the entries).
    let cases = [(0, 3), (5, 3), (6, 2), (7, 2), (8, 1), (9, 1), (10, 0)];
    for (at, want) in cases {
        assert_eq!(r.durable_count(lsn(at)), want, "at {at}");
    }
}

// ---- the log's history is reset ----

#[test]
fn reset_log_measures_lag_from_appends_after_the_reset() {
    let mut r = upstream(&["a"]);
    r.on_append(lsn(5), 10);
    ack(&mut r, "a", 5, 10);
    r.reset_log(lsn(100));
    r.reset_replica("a", lsn(100));
    assert_eq!(lag_ms(&r, "a", 500), 0);
    r.on_append(lsn(101), 600);
    r.on_append(lsn(102), 700);
    assert_eq!(lag_ms(&r, "a", 750), 150);
    assert_eq!(r.lag_entries(progress(&r, "a")), 2);
}

#[test]
fn a_replica_lacking_a_sync_committed_write_does_not_rejoin_the_in_sync_set() {
    let mut r = Replicas::new(Lsn(0), 1000, 0);
    r.connect("a", "a:1", 0);
    r.connect("b", "b:1", 0);
    r.on_append(Lsn(8), 1);
    r.on_ack("a", Lsn(8), Lsn(8), 2);
    r.on_ack("b", Lsn(8), Lsn(8), 2);
    r.evaluate(3);
    assert_eq!(r.in_sync_count(), 2);
    // b goes silent and leaves; a alone commits 9 and 10 under sync.
    r.on_append(Lsn(10), 10);
    r.on_ack("a", Lsn(10), Lsn(10), 1500);
    r.evaluate(1500);
    assert!(!r.get("b").unwrap().in_sync);
    r.note_sync_commit(Lsn(10));
    assert_eq!(r.commit_lsn(AckMode::Sync, Lsn(10)), Lsn(10));
    // b comes back, within the lag bound in time but still at 8: it stays out.
    r.on_ack("b", Lsn(8), Lsn(8), 1600);
    r.on_ack("a", Lsn(10), Lsn(10), 1600);
    r.evaluate(1600);
    assert!(!r.get("b").unwrap().in_sync, "b lacks 9 and 10");
    assert_eq!(r.commit_lsn(AckMode::Sync, Lsn(10)), Lsn(10));
    // Once it has them, it rejoins.
    r.on_ack("b", Lsn(10), Lsn(10), 1700);
    r.evaluate(1700);
    assert!(r.get("b").unwrap().in_sync);
}

/// With the control plane's set pinned, `sync` waits for the union of the map's set and the
/// replicas in sync here: one dropped here still counts until the map drops it, one that
/// joined here counts before the map lists it.
#[test]
fn sync_waits_for_the_maps_set_and_the_local_one_together() {
    let mut r = upstream(&["a", "b"]);
    r.on_append(lsn(1), 0);
    ack(&mut r, "a", 1, 1);
    ack(&mut r, "b", 1, 1);
    assert_eq!(r.evaluate(2), vec![joined("a"), joined("b")]);
    r.pin_in_sync(Some(["a".to_string()].into()));
    r.on_append(lsn(5), 10);
    ack(&mut r, "a", 5, 11);
    // "b" joined here and is not listed yet: sync still waits for it.
    assert_eq!(r.commit_lsn(AckMode::Sync, lsn(5)), lsn(1));
    ack(&mut r, "b", 5, 12);
    assert_eq!(r.commit_lsn(AckMode::Sync, lsn(5)), lsn(5));
    // "b" falls behind and leaves the local set; the map still lists both.
    r.pin_in_sync(Some(["a".to_string(), "b".to_string()].into()));
    r.on_append(lsn(9), 20);
    ack(&mut r, "a", 9, 21);
    assert_eq!(
        r.evaluate(20 + LAG_MAX_MS + 1),
        vec![left("b", LAG_MAX_MS + 1)]
    );
    assert_eq!(
        r.commit_lsn(AckMode::Sync, lsn(9)),
        lsn(5),
        "dropped here, listed there"
    );
    r.pin_in_sync(Some(["a".to_string()].into()));
    assert_eq!(r.commit_lsn(AckMode::Sync, lsn(9)), lsn(9));
    // A listed replica this node never heard of holds nothing.
    r.pin_in_sync(Some(["a".to_string(), "z".to_string()].into()));
    assert_eq!(r.commit_lsn(AckMode::Sync, lsn(9)), Lsn::ZERO);
    assert!(r.can_start(AckMode::Sync));
}

// ---- a new leader's start ----

/// A replica elected leader with its log at `last`, the map's in-sync set `map_set`.
fn elected_at(last: u64, map_set: &[&str], now_ms: u64) -> Replicas {
    let mut r = Replicas::new(lsn(last), LAG_MAX_MS, 0);
    let set = map_set.iter().map(|s| s.to_string()).collect();
    r.pin_in_sync(Some(std::collections::BTreeSet::clone(&set)));
    r.on_elected(&set, lsn(last), now_ms);
    check(&r);
    r
}

#[test]
fn a_new_leader_keeps_the_maps_in_sync_replicas_until_they_reconnect_or_go_silent() {
    // Finding F of the simulator: a new leader whose own set started empty emptied the map's
    // at its first renewal; lost before a replica reconnected, nobody could be elected.
    let mut r = elected_at(10, &["a", "b"], 1_000);
    assert_eq!(in_sync(&r), ["a", "b"]);
    assert!(
        r.evaluate(1_000 + LAG_MAX_MS).is_empty(),
        "kept while not silent"
    );
    // They hold nothing until they acknowledge: `sync` commits nothing yet.
    assert_eq!(r.commit_lsn(AckMode::Sync, lsn(10)), Lsn::ZERO);
    assert!(r.can_start(AckMode::Sync));
    // `a` reconnects and acknowledges everything; `b` never comes back.
    r.start_link("a", "10.0.0.1:6379", 1_020);
    ack(&mut r, "a", 10, 1_030);
    assert!(r.evaluate(1_030).is_empty());
    assert_eq!(
        r.commit_lsn(AckMode::Sync, lsn(10)),
        Lsn::ZERO,
        "b still counts"
    );
    ack(&mut r, "a", 10, 1_100);
    assert_eq!(r.evaluate(1_101), vec![left("b", 0)]);
    assert_eq!(
        r.commit_lsn(AckMode::Sync, lsn(10)),
        lsn(0),
        "the map still lists b"
    );
    r.pin_in_sync(Some(["a".to_string()].into()));
    assert_eq!(r.commit_lsn(AckMode::Sync, lsn(10)), lsn(10));
    assert_eq!(in_sync(&r), ["a"]);
}

#[test]
fn a_new_leader_takes_into_its_in_sync_set_only_replicas_holding_its_whole_log() {
    // Finding I of the simulator: elected with 47 entries (all of which its predecessor may
    // have acknowledged under `sync`), it counted a replica at 39 in sync at once.
    let mut r = elected_at(47, &[], 1_000);
    r.start_link("c", "10.0.0.3:6379", 1_010);
    ack(&mut r, "c", 39, 1_020);
    assert!(r.evaluate(1_021).is_empty(), "joined while lacking 40..47");
    ack(&mut r, "c", 47, 1_030);
    assert_eq!(r.evaluate(1_031), vec![joined("c")]);
}
