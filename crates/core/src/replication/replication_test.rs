//! The module's parts working together as a leader uses them: [`Replicas`] decides each
//! mode's commit LSN, [`Pending`] releases the replies it covers, and replies that no commit
//! covers in time expire.

use super::{AckMode, IsrChange, Pending, Replicas};
use crate::position::Lsn;

const LAG_MAX_MS: u64 = 100;

fn joined(id: &str) -> IsrChange {
    IsrChange::Joined { id: id.to_string() }
}

fn left(id: &str, lag_ms: u64) -> IsrChange {
    IsrChange::Left {
        id: id.to_string(),
        lag_ms,
    }
}

/// A leader's replication state: its followers, its own durable LSN and held replies, which
/// name the mode and LSN they wait for.
struct Leader {
    replicas: Replicas,
    own_durable: Lsn,
    pending: Pending<(AckMode, u64)>,
}

impl Leader {
    fn new() -> Leader {
        Leader {
            replicas: Replicas::new(Lsn::ZERO, LAG_MAX_MS, 0),
            own_durable: Lsn::ZERO,
            pending: Pending::default(),
        }
    }

    /// Appends one entry at `now_ms` and holds its reply in `mode`, if the mode may start.
    fn write(&mut self, mode: AckMode, now_ms: u64) -> Option<u64> {
        if !self.replicas.can_start(mode) {
            return None;
        }
        let lsn = self.replicas.last().next();
        self.replicas.on_append(lsn, now_ms);
        self.pending.hold(mode, lsn, now_ms + 1_000, (mode, lsn.0));
        Some(lsn.0)
    }

    /// The replies every mode's commit LSN now covers, sorted.
    fn release(&mut self) -> Vec<(AckMode, u64)> {
        let (replicas, own) = (&self.replicas, self.own_durable);
        let mut out = self.pending.release(|mode| replicas.commit_lsn(mode, own));
        out.sort_unstable();
        out
    }
}

#[test]
fn replies_are_released_as_each_modes_commit_rule_is_met() {
    let mut leader = Leader::new();

    eprintln!("phase: two followers connect; nothing is in sync, so only async may start");
    leader.replicas.connect("a", "10.0.0.1:6379", 0);
    leader.replicas.connect("b", "10.0.0.2:6379", 0);
    for mode in [AckMode::SemiSync(1), AckMode::Sync, AckMode::Quorum] {
        assert!(!leader.replicas.can_start(mode), "{mode}");
    }
    assert_eq!(leader.replicas.evaluate(0), vec![joined("a"), joined("b")]);

    eprintln!("phase: one write per mode, LSNs 1 to 5");
    let modes = [
        AckMode::Async,
        AckMode::SemiSync(1),
        AckMode::SemiSync(2),
        AckMode::Sync,
        AckMode::Quorum,
    ];
    for (mode, want) in modes.into_iter().zip(1..) {
        assert_eq!(leader.write(mode, 10), Some(want), "{mode}");
    }
    assert_eq!(leader.pending.len(), 5);
    assert!(leader.release().is_empty(), "nothing is durable yet");

    eprintln!("phase: the leader's own fsync covers everything; only async is released");
    leader.own_durable = Lsn(5);
    assert_eq!(leader.release(), vec![(AckMode::Async, 1)]);

    eprintln!("phase: a has all five; semi-sync:1 and quorum (cluster of 3) are met");
    leader.replicas.on_ack("a", Lsn(5), Lsn(5), 20);
    assert_eq!(
        leader.release(),
        vec![(AckMode::SemiSync(1), 2), (AckMode::Quorum, 5)]
    );

    eprintln!("phase: b has up to 3; semi-sync:2 is met for 3, sync still waits for 4");
    leader.replicas.on_ack("b", Lsn(3), Lsn(3), 20);
    assert_eq!(leader.release(), vec![(AckMode::SemiSync(2), 3)]);
    assert_eq!(leader.pending.first_lsn(AckMode::Sync), Some(Lsn(4)));

    eprintln!("phase: b's link drops and it leaves the in-sync set; sync is met on a alone");
    leader.replicas.disconnect("b", 30);
    assert_eq!(leader.replicas.evaluate(30), vec![left("b", 20)]);
    assert_eq!(leader.release(), vec![(AckMode::Sync, 4)]);
    assert!(leader.pending.is_empty());

    eprintln!("phase: b's durable LSN still counts for semi-sync:2 while it is away");
    assert_eq!(
        leader.write(AckMode::SemiSync(2), 40),
        None,
        "b is not in sync"
    );
    assert_eq!(
        leader.replicas.commit_lsn(AckMode::SemiSync(2), Lsn(5)),
        Lsn(3)
    );
}

#[test]
fn a_reply_no_commit_covers_expires_at_its_deadline() {
    let mut leader = Leader::new();
    leader.replicas.connect("a", "10.0.0.1:6379", 0);
    assert_eq!(leader.replicas.evaluate(0), vec![joined("a")]);
    assert_eq!(leader.write(AckMode::Sync, 0), Some(1));
    assert_eq!(leader.write(AckMode::Sync, 10), Some(2));
    leader.own_durable = Lsn(2);

    eprintln!("phase: a goes silent; the sync replies wait");
    assert_eq!(leader.replicas.evaluate(101), vec![left("a", 101)]);
    assert!(leader.release().is_empty());
    assert!(!leader.replicas.can_start(AckMode::Sync));

    eprintln!("phase: the first deadline passes; the second reply waits its turn");
    let expired = leader.pending.expire(1_000);
    assert_eq!(expired, vec![(Lsn(1), (AckMode::Sync, 1))]);
    assert_eq!(leader.pending.len(), 1);

    eprintln!("phase: a comes back with everything; the second is released");
    leader.replicas.on_ack("a", Lsn(2), Lsn(2), 1_005);
    assert_eq!(leader.replicas.evaluate(1_005), vec![joined("a")]);
    assert_eq!(leader.release(), vec![(AckMode::Sync, 2)]);
    assert!(leader.pending.is_empty());
}
