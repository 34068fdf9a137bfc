//! Tests for [`Machine`]: replies wait for their mode's commit, writes wait for enough in-sync
//! replicas and fail with `NOREPLICAS` when none come, replicas refuse writes and take only
//! entries that continue their log, `WAIT` counts durable followers, and a replaced commit
//! rule is the one used.

use super::ack::AckMode;
use super::machine::{Answer, BatchReply, LogSink, Machine, MachineConfig, NOREPLICAS, READONLY};
use super::replicas::Replicas;
use crate::command::{Command, Expiry};
use crate::position::{Epoch, LogPosition, Lsn};
use crate::reply::Reply;
use crate::store::Store;
use bytes::Bytes;

const E1: Epoch = Epoch(1);
const ZERO: LogPosition = LogPosition {
    epoch: Epoch(0),
    lsn: Lsn(0),
};
const TIMEOUT: u64 = 1_000;

/// A log that keeps what it is given.
#[derive(Default)]
struct Log(Vec<(LogPosition, Command)>);

impl LogSink for Log {
    fn append(&mut self, pos: LogPosition, cmd: &Command) {
        self.0.push((pos, cmd.clone()));
    }
}

fn pos(epoch: u64, lsn: u64) -> LogPosition {
    LogPosition {
        epoch: Epoch(epoch),
        lsn: Lsn(lsn),
    }
}

fn args(words: &[&str]) -> Vec<Bytes> {
    words.iter().map(|w| Bytes::from(w.to_string())).collect()
}

fn config() -> MachineConfig {
    MachineConfig {
        write_ack_timeout_ms: TIMEOUT,
        replica_lag_max_ms: 500,
        ..MachineConfig::default()
    }
}

fn leader() -> Machine<u32> {
    leader_with(config())
}

fn leader_with(config: MachineConfig) -> Machine<u32> {
    Machine::new(Store::new(), ZERO, E1, true, config)
}

fn replica() -> Machine<u32> {
    Machine::new(Store::new(), ZERO, E1, false, config())
}

/// Runs one command as batch `id`.
fn run(
    m: &mut Machine<u32>,
    log: &mut Log,
    words: &[&str],
    mode: AckMode,
    now: impl Into<super::machine::Now>,
    id: u32,
) {
    m.batch(vec![args(words)], mode, now, id, log);
}

fn answers(m: &mut Machine<u32>) -> Vec<(u32, Answer)> {
    m.answers().collect()
}

fn batch(
    id: u32,
    replies: Vec<Reply>,
    pos: LogPosition,
    wrote: Option<LogPosition>,
) -> (u32, Answer) {
    (
        id,
        Answer::Batch(BatchReply {
            replies,
            pos,
            wrote,
        }),
    )
}

/// A leader with one follower `r1` that has everything and is in the in-sync set.
fn leader_with_in_sync_follower(now: u64) -> Machine<u32> {
    let mut m = leader();
    m.follower_up("r1", "127.0.0.1:7001", 1, now);
    m.follower_ack("r1", 1, Lsn::ZERO, Lsn::ZERO, now);
    let mut log = Log::default();
    m.tick(now, &mut log);
    assert!(m.replicas().get("r1").is_some_and(|r| r.in_sync));
    m
}

#[test]
fn an_async_write_is_answered_once_the_leader_log_is_durable() {
    let mut m = leader();
    let mut log = Log::default();
    run(&mut m, &mut log, &["SET", "k", "v"], AckMode::Async, 10, 1);
    assert_eq!(log.0.len(), 1, "the write went to the log");
    assert_eq!(log.0[0].0, pos(1, 1));
    assert!(answers(&mut m).is_empty(), "held until durable");
    assert_eq!(m.held_len(), 1);
    m.log_durable(Lsn(1), 0);
    assert_eq!(
        answers(&mut m),
        vec![batch(1, vec![Reply::Ok], pos(1, 1), Some(pos(1, 1)))]
    );
    m.check_invariants();
}

#[test]
fn a_read_of_durable_state_is_answered_at_once() {
    let mut m = leader();
    let mut log = Log::default();
    run(&mut m, &mut log, &["GET", "k"], AckMode::Sync, 10, 7);
    assert_eq!(
        answers(&mut m),
        vec![batch(7, vec![Reply::Nil], ZERO, None)]
    );
    assert!(log.0.is_empty());
}

#[test]
fn a_sync_write_without_in_sync_replicas_waits_then_fails_having_changed_nothing() {
    let mut m = leader();
    let mut log = Log::default();
    run(&mut m, &mut log, &["SET", "k", "v"], AckMode::Sync, 10, 1);
    assert_eq!(m.parked_len(), 1);
    assert!(log.0.is_empty(), "a parked write is not run");
    m.tick(10 + TIMEOUT - 1, &mut log);
    assert!(answers(&mut m).is_empty(), "still waiting");
    m.tick(10 + TIMEOUT, &mut log);
    assert_eq!(
        answers(&mut m),
        vec![batch(1, vec![Reply::error(NOREPLICAS)], ZERO, None)]
    );
    assert!(log.0.is_empty());
    assert_eq!(m.applied(), Lsn::ZERO);
    assert_eq!(m.stats().writes_failed_no_replicas, 1);
}

#[test]
fn a_parked_write_starts_when_a_replica_joins() {
    let mut m = leader();
    let mut log = Log::default();
    run(&mut m, &mut log, &["SET", "k", "v"], AckMode::Sync, 10, 1);
    m.follower_up("r1", "a", 1, 20);
    m.follower_ack("r1", 1, Lsn::ZERO, Lsn::ZERO, 20);
    m.tick(30, &mut log);
    assert_eq!(m.parked_len(), 0);
    assert_eq!(log.0.len(), 1, "started");
    m.log_durable(Lsn(1), 0);
    assert!(answers(&mut m).is_empty(), "waits for the replica");
    m.follower_ack("r1", 1, Lsn(1), Lsn(1), 31);
    assert_eq!(answers(&mut m).len(), 1);
}

#[test]
fn a_sync_write_is_answered_only_once_the_in_sync_replica_has_it_durably() {
    let mut m = leader_with_in_sync_follower(0);
    let mut log = Log::default();
    run(&mut m, &mut log, &["SET", "k", "v"], AckMode::Sync, 10, 1);
    m.log_durable(Lsn(1), 0);
    m.follower_ack("r1", 1, Lsn::ZERO, Lsn(1), 11);
    assert!(answers(&mut m).is_empty(), "applied is not durable");
    m.follower_ack("r1", 1, Lsn(1), Lsn(1), 12);
    assert_eq!(
        answers(&mut m),
        vec![batch(1, vec![Reply::Ok], pos(1, 1), Some(pos(1, 1)))]
    );
}

#[test]
fn a_held_write_past_its_deadline_fails_saying_it_was_applied() {
    let mut m = leader_with_in_sync_follower(0);
    let mut log = Log::default();
    run(&mut m, &mut log, &["SET", "k", "v"], AckMode::Sync, 10, 1);
    m.log_durable(Lsn(1), 0);
    m.tick(10 + TIMEOUT, &mut log);
    let got = answers(&mut m);
    assert_eq!(got.len(), 1);
    let Answer::Batch(reply) = &got[0].1 else {
        panic!("a batch answer");
    };
    let Reply::Error(text) = &reply.replies[0] else {
        panic!("an error");
    };
    assert!(
        text.starts_with("NOREPLICAS the write at 1:1 was applied"),
        "{text}"
    );
    assert_eq!(reply.wrote, Some(pos(1, 1)));
    assert_eq!(m.applied(), Lsn(1), "the write stays applied");
}

#[test]
fn a_replica_refuses_writes_and_serves_reads() {
    let mut m = replica();
    let mut log = Log::default();
    m.batch(
        vec![args(&["SET", "k", "v"]), args(&["GET", "k"])],
        AckMode::Async,
        10,
        1,
        &mut log,
    );
    assert_eq!(
        answers(&mut m),
        vec![batch(
            1,
            vec![Reply::error(READONLY), Reply::Nil],
            ZERO,
            None
        )]
    );
    assert!(log.0.is_empty());
    assert_eq!(m.stats().error_replies, 1);
    assert_eq!(m.stats().commands, 2);
    assert!(!m.write(&Command::Del { keys: vec![] }, &mut log));
}

#[test]
fn a_replica_takes_entries_that_continue_its_log_and_refuses_stale_epochs() {
    let mut m = replica();
    let set = Command::Set {
        key: Bytes::from_static(b"k"),
        value: Bytes::from_static(b"v"),
        expiry: Expiry::Clear,
    };
    assert!(m.check_entries(Epoch(2), pos(0, 0), [pos(2, 1)]).is_ok());
    m.apply_entries(Epoch(2), [(pos(2, 1), &set)], Some(500));
    assert_eq!(m.last(), pos(2, 1));
    assert_eq!(m.epoch(), Epoch(2));
    assert_eq!(m.current_as_of_ms(), Some(500));
    let stale = m.check_entries(Epoch(1), pos(2, 1), [pos(1, 2)]);
    assert!(stale.is_err_and(|e| e.contains("stale epoch")));
    let gap = m.check_entries(Epoch(2), pos(2, 2), [pos(2, 3)]);
    assert!(gap.is_err_and(|e| e.contains("do not continue")));
    let mut log = Log::default();
    run(&mut m, &mut log, &["GET", "k"], AckMode::Async, 10, 1);
    assert!(
        answers(&mut m).is_empty(),
        "the read waits until what it saw is durable"
    );
    m.log_durable(Lsn(1), 0);
    assert_eq!(
        answers(&mut m),
        vec![batch(1, vec![Reply::Bulk("v".into())], pos(2, 1), None)]
    );
}

#[test]
fn a_leader_takes_no_entries() {
    let m = leader();
    assert!(m
        .check_entries(E1, ZERO, [pos(1, 1)])
        .is_err_and(|e| e.contains("leads")));
}

#[test]
fn wait_counts_followers_holding_the_lsn_durably() {
    let mut m = leader_with_in_sync_follower(0);
    let mut log = Log::default();
    run(&mut m, &mut log, &["SET", "k", "v"], AckMode::Async, 10, 1);
    m.log_durable(Lsn(1), 0);
    answers(&mut m);
    m.wait(1, None, 100, 10, 2);
    assert!(answers(&mut m).is_empty());
    m.follower_ack("r1", 1, Lsn(1), Lsn(1), 20);
    assert_eq!(answers(&mut m), vec![(2, Answer::Wait(1))]);
    m.wait(2, Some(Lsn(1)), 100, 30, 3);
    m.tick(129, &mut log);
    assert!(answers(&mut m).is_empty());
    m.tick(130, &mut log);
    assert_eq!(answers(&mut m), vec![(3, Answer::Wait(1))]);
}

#[test]
fn becoming_a_replica_fails_the_writes_still_waiting() {
    let mut m = leader_with_in_sync_follower(0);
    let mut log = Log::default();
    run(&mut m, &mut log, &["SET", "k", "v"], AckMode::Sync, 10, 1);
    run(&mut m, &mut log, &["SET", "k", "w"], AckMode::Sync, 10, 2);
    m.become_replica();
    let got = answers(&mut m);
    assert_eq!(got.len(), 2);
    for (_, a) in got {
        let Answer::Batch(r) = a else {
            panic!("a batch answer")
        };
        assert!(matches!(&r.replies[0], Reply::Error(e) if e.contains("became a replica")));
    }
    assert!(!m.is_leader());
    m.become_leader(Epoch(5));
    assert!(m.is_leader());
    assert_eq!(m.epoch(), Epoch(5));
}

#[test]
fn a_snapshot_replaces_the_state_and_releases_held_reads() {
    let mut m = replica();
    let mut store = Store::new();
    store.apply(&Command::Set {
        key: Bytes::from_static(b"k"),
        value: Bytes::from_static(b"s"),
        expiry: Expiry::Clear,
    });
    m.install_snapshot(store, pos(3, 40));
    assert_eq!(m.last(), pos(3, 40));
    assert_eq!(m.durable(), Lsn(40));
    assert_eq!(m.epoch(), Epoch(3));
    let mut log = Log::default();
    run(&mut m, &mut log, &["GET", "k"], AckMode::Async, 10, 1);
    assert_eq!(
        answers(&mut m),
        vec![batch(1, vec![Reply::Bulk("s".into())], pos(3, 40), None)]
    );
}

#[test]
fn a_command_too_large_for_the_log_is_refused_before_it_is_applied() {
    let mut m = leader_with(MachineConfig {
        payload_bytes_max: 64,
        ..config()
    });
    let mut log = Log::default();
    let big = "x".repeat(100);
    run(&mut m, &mut log, &["SET", "k", &big], AckMode::Async, 10, 1);
    let got = answers(&mut m);
    assert!(
        matches!(&got[0].1, Answer::Batch(r) if matches!(&r.replies[0], Reply::Error(e) if e.contains("too large")))
    );
    assert!(log.0.is_empty());
    assert_eq!(m.applied(), Lsn::ZERO);
}

/// Acknowledges `sync` on the leader's own durability: the bug the simulator must catch.
fn sync_without_replicas(r: &Replicas, mode: AckMode, own: Lsn) -> Lsn {
    if mode == AckMode::Sync {
        own
    } else {
        r.commit_lsn(mode, own)
    }
}

#[test]
fn the_configured_commit_rule_is_the_one_used() {
    let mut m = leader_with(MachineConfig {
        commit_rule: sync_without_replicas,
        ..config()
    });
    m.follower_up("r1", "a", 1, 0);
    m.follower_ack("r1", 1, Lsn::ZERO, Lsn::ZERO, 0);
    let mut log = Log::default();
    m.tick(0, &mut log);
    run(&mut m, &mut log, &["SET", "k", "v"], AckMode::Sync, 10, 1);
    m.log_durable(Lsn(1), 0);
    assert_eq!(
        answers(&mut m).len(),
        1,
        "the broken rule answers without the replica"
    );
    assert_eq!(m.commit_lsn(AckMode::Sync), Lsn(1));
}

#[test]
fn reports_from_an_older_link_are_ignored() {
    let mut m = leader_with_in_sync_follower(0);
    let mut log = Log::default();
    m.follower_up("r1", "a", 2, 5);
    m.follower_ack("r1", 2, Lsn::ZERO, Lsn::ZERO, 5);
    run(&mut m, &mut log, &["SET", "k", "v"], AckMode::Sync, 10, 1);
    m.log_durable(Lsn(1), 0);
    m.follower_ack("r1", 1, Lsn(1), Lsn(1), 11);
    assert!(
        answers(&mut m).is_empty(),
        "an ack on the old link counts for nothing"
    );
    assert!(
        !m.follower_down("r1", 1, 12),
        "the old link's end changes nothing"
    );
    assert!(m.replicas().get("r1").is_some_and(|r| r.connected));
    m.follower_ack("r1", 2, Lsn(1), Lsn(1), 13);
    assert_eq!(answers(&mut m).len(), 1);
    assert!(m.follower_down("r1", 2, 14));
    assert!(m.replicas().get("r1").is_some_and(|r| !r.connected));
}

#[test]
fn a_new_link_counts_its_follower_as_holding_nothing_until_it_acknowledges() {
    let mut m = leader_with_in_sync_follower(0);
    let mut log = Log::default();
    run(
        &mut m,
        &mut log,
        &["SET", "k", "1"],
        AckMode::SemiSync(1),
        10,
        1,
    );
    m.log_durable(Lsn(1), 0);
    m.follower_ack("r1", 1, Lsn(1), Lsn(1), 11);
    assert_eq!(answers(&mut m).len(), 1);
    // The follower reconnects (say to receive a snapshot replacing its log): what it reported
    // before no longer counts, nor does where its new link starts.
    m.follower_up("r1", "a", 2, 12);
    assert_eq!(m.replicas().get("r1").map(|r| r.durable), Some(Lsn::ZERO));
    run(
        &mut m,
        &mut log,
        &["SET", "k", "2"],
        AckMode::SemiSync(1),
        13,
        2,
    );
    m.log_durable(Lsn(2), 0);
    m.follower_ack("r1", 2, Lsn(1), Lsn(2), 14);
    assert!(answers(&mut m).is_empty(), "applied is not durable");
    m.follower_ack("r1", 2, Lsn(2), Lsn(2), 15);
    assert_eq!(answers(&mut m).len(), 1);
}

#[test]
fn a_leader_read_waits_until_its_mode_has_committed_what_it_saw() {
    let mut m = leader_with_in_sync_follower(0);
    let mut log = Log::default();
    run(&mut m, &mut log, &["SET", "k", "v"], AckMode::Sync, 10, 1);
    m.log_durable(Lsn(1), 0);
    run(&mut m, &mut log, &["GET", "k"], AckMode::Sync, 11, 2);
    assert!(
        answers(&mut m).is_empty(),
        "the read saw a write no replica holds yet"
    );
    run(&mut m, &mut log, &["GET", "k"], AckMode::Async, 11, 3);
    assert_eq!(
        answers(&mut m),
        vec![batch(3, vec![Reply::Bulk("v".into())], pos(1, 1), None)],
        "under async a read waits for the leader's log only"
    );
    m.follower_ack("r1", 1, Lsn(1), Lsn(1), 12);
    assert_eq!(
        answers(&mut m),
        vec![
            batch(1, vec![Reply::Ok], pos(1, 1), Some(pos(1, 1))),
            batch(2, vec![Reply::Bulk("v".into())], pos(1, 1), None)
        ]
    );
}

#[test]
fn a_held_read_past_its_deadline_fails_naming_what_it_saw() {
    let mut m = leader_with_in_sync_follower(0);
    let mut log = Log::default();
    run(&mut m, &mut log, &["SET", "k", "v"], AckMode::Async, 10, 1);
    m.log_durable(Lsn(1), 0);
    answers(&mut m);
    run(&mut m, &mut log, &["GET", "k"], AckMode::Sync, 20, 2);
    m.tick(20 + TIMEOUT, &mut log);
    let got = answers(&mut m);
    let [(2, Answer::Batch(reply))] = got.as_slice() else {
        panic!("one answer to the read: {got:?}");
    };
    assert!(
        matches!(&reply.replies[0], Reply::Error(e) if e.starts_with("NOREPLICAS the state this read saw, up to 1:1,")),
        "{reply:?}"
    );
    assert_eq!(
        m.stats().writes_failed_no_replicas,
        0,
        "a read is not a write"
    );
}

#[test]
fn what_a_mode_committed_stays_committed_when_a_follower_reconnects() {
    let mut m = leader_with_in_sync_follower(0);
    let mut log = Log::default();
    run(&mut m, &mut log, &["SET", "k", "v"], AckMode::Sync, 10, 1);
    m.log_durable(Lsn(1), 0);
    m.follower_ack("r1", 1, Lsn(1), Lsn(1), 11);
    assert_eq!(answers(&mut m).len(), 1);
    m.follower_up("r1", "a", 2, 12);
    run(&mut m, &mut log, &["GET", "k"], AckMode::Sync, 13, 2);
    assert_eq!(
        answers(&mut m),
        vec![batch(2, vec![Reply::Bulk("v".into())], pos(1, 1), None)],
        "the write was committed; reading it needs no new ack"
    );
    assert_eq!(m.commit_lsn(AckMode::Sync), Lsn(1));
}

#[test]
fn waits_are_measured_on_the_monotonic_clock_not_the_wall_clock() {
    use super::machine::Now;
    let at = |wall_ms, mono_ms| Now { wall_ms, mono_ms };
    let mut m = leader_with_in_sync_follower(0);
    let mut log = Log::default();
    m.batch(
        vec![args(&["SET", "k", "v"])],
        AckMode::Sync,
        at(10, 10),
        1,
        &mut log,
    );
    m.log_durable(Lsn(1), 0);
    // The wall clock jumps an hour ahead: nothing times out, the replica stays in sync.
    m.tick(at(3_600_010, 20), &mut log);
    assert!(
        answers(&mut m).is_empty(),
        "a wall-clock step timed a write out"
    );
    assert!(m.replicas().get("r1").is_some_and(|r| r.in_sync));
    m.tick(at(3_600_010, 10 + TIMEOUT), &mut log);
    assert_eq!(answers(&mut m).len(), 1, "the monotonic deadline passed");
}

// Found in review: each of these failed before its fix.

#[test]
fn a_read_waits_behind_a_parked_write_it_follows() {
    let mut m = leader();
    let mut log = Log::default();
    run(
        &mut m,
        &mut log,
        &["SET", "a", "1"],
        AckMode::SemiSync(1),
        10,
        1,
    );
    run(&mut m, &mut log, &["GET", "a"], AckMode::SemiSync(1), 10, 2);
    assert_eq!(m.parked_len(), 2, "the read waits behind the parked write");
    m.follower_up("r1", "x", 1, 20);
    m.follower_ack("r1", 1, Lsn::ZERO, Lsn::ZERO, 20);
    m.tick(30, &mut log);
    m.log_durable(m.last().lsn, 0);
    m.follower_ack("r1", 1, m.last().lsn, m.last().lsn, 40);
    let got = answers(&mut m);
    assert_eq!(
        got,
        vec![
            batch(1, vec![Reply::Ok], pos(1, 1), Some(pos(1, 1))),
            batch(2, vec![Reply::Bulk("1".into())], pos(1, 1), None),
        ]
    );
}

#[test]
fn a_parked_read_runs_once_the_write_before_it_fails() {
    let mut m = leader();
    let mut log = Log::default();
    run(&mut m, &mut log, &["SET", "a", "1"], AckMode::Sync, 10, 1);
    run(&mut m, &mut log, &["GET", "a"], AckMode::Async, 10, 2);
    m.tick(10 + TIMEOUT, &mut log);
    assert_eq!(
        answers(&mut m),
        vec![
            batch(1, vec![Reply::error(NOREPLICAS)], ZERO, None),
            batch(2, vec![Reply::Nil], ZERO, None),
        ]
    );
}

fn sets(n: u64) -> Vec<Command> {
    (0..n)
        .map(|i| Command::Set {
            key: Bytes::from(format!("k{i}")),
            value: Bytes::from_static(b"v"),
            expiry: Expiry::Clear,
        })
        .collect()
}

#[test]
fn a_snapshot_fails_the_reads_held_on_the_replaced_log() {
    let mut m = replica();
    let mut log = Log::default();
    let cmds = sets(10);
    m.apply_entries(E1, (1..=10).map(|l| pos(1, l)).zip(cmds.iter()), None);
    m.log_durable(Lsn(5), 0);
    run(&mut m, &mut log, &["GET", "k1"], AckMode::Async, 10, 7);
    assert_eq!(m.held_len(), 1);
    m.install_snapshot(Store::new(), pos(2, 3));
    assert_eq!(m.held_len(), 0);
    let got = answers(&mut m);
    assert!(
        matches!(&got[..], [(7, Answer::Batch(r))] if matches!(&r.replies[0], Reply::Error(e) if e.starts_with("TRYAGAIN"))),
        "{got:?}"
    );
}

#[test]
fn what_followers_reported_of_a_replaced_log_no_longer_counts() {
    let mut m = replica();
    let mut log = Log::default();
    let cmds = sets(10);
    m.apply_entries(E1, (1..=10).map(|l| pos(1, l)).zip(cmds.iter()), None);
    m.log_durable(Lsn(10), 0);
    m.follower_up("f", "x", 1, 0);
    m.follower_ack("f", 1, Lsn(10), Lsn(10), 0);
    m.install_snapshot(Store::new(), pos(2, 3));
    m.become_leader(Epoch(3));
    m.follower_ack("f", 1, Lsn(10), Lsn(10), 1);
    m.tick(1, &mut log);
    run(
        &mut m,
        &mut log,
        &["SET", "new", "1"],
        AckMode::SemiSync(1),
        2,
        9,
    );
    m.log_durable(m.last().lsn, 0);
    let got = answers(&mut m);
    assert!(
        got.iter().all(|(id, _)| *id != 9),
        "acknowledged on a follower's report of the replaced log: {got:?}"
    );
}

#[test]
fn a_reconnecting_in_sync_follower_keeps_its_place_until_it_acknowledges() {
    let mut m = leader_with_in_sync_follower(0);
    let mut log = Log::default();
    run(&mut m, &mut log, &["SET", "a", "1"], AckMode::Sync, 1, 1);
    m.note_shipped(1);
    m.log_durable(m.last().lsn, 0);
    m.follower_ack("r1", 1, m.last().lsn, m.last().lsn, 2);
    m.tick(3, &mut log);
    answers(&mut m);
    // An hour idle, then a reconnect; a tick comes before the first ack on the new link.
    let t = 3_600_000;
    m.follower_ack("r1", 1, m.last().lsn, m.last().lsn, t);
    m.follower_down("r1", 1, t);
    m.follower_up("r1", "x", 2, t);
    assert!(
        m.tick(t + 10, &mut log).is_empty(),
        "the follower left the in-sync set"
    );
    // Until it acknowledges, it holds nothing: a sync write waits for it.
    run(
        &mut m,
        &mut log,
        &["SET", "b", "2"],
        AckMode::Sync,
        t + 11,
        2,
    );
    m.log_durable(m.last().lsn, 0);
    assert!(answers(&mut m).is_empty());
    m.follower_ack("r1", 2, m.last().lsn, m.last().lsn, t + 12);
    assert_eq!(answers(&mut m).len(), 1);
}

#[test]
fn paused_writes_park_with_the_reads_behind_them_and_start_when_resumed() {
    let mut m = leader();
    let mut log = Log::default();
    m.pause_writes();
    run(&mut m, &mut log, &["SET", "a", "1"], AckMode::Async, 10, 1);
    run(&mut m, &mut log, &["GET", "a"], AckMode::Async, 10, 2);
    assert_eq!(m.parked_len(), 2);
    assert!(log.0.is_empty());
    assert!(
        !m.write(&Command::Del { keys: vec![] }, &mut log),
        "expiry waits too"
    );
    m.tick(20, &mut log);
    assert_eq!(m.parked_len(), 2, "a tick does not start paused writes");
    m.resume_writes(30, &mut log);
    m.log_durable(Lsn(1), 0);
    assert_eq!(
        answers(&mut m),
        vec![
            batch(1, vec![Reply::Ok], pos(1, 1), Some(pos(1, 1))),
            batch(2, vec![Reply::Bulk("1".into())], pos(1, 1), None),
        ]
    );
}

#[test]
fn a_switchover_targets_a_named_or_the_most_up_to_date_in_sync_replica_and_waits_for_it() {
    let mut m = leader_with_in_sync_follower(0);
    m.follower_up("r2", "[::ffff:127.0.0.1]:7002", 1, 0);
    m.follower_ack("r2", 1, Lsn::ZERO, Lsn::ZERO, 0);
    let mut log = Log::default();
    m.tick(1, &mut log);
    let named: std::net::SocketAddr = "127.0.0.1:7002".parse().unwrap();
    assert_eq!(
        m.switchover_target(Some(named)).map(|r| r.id.as_str()),
        Some("r2"),
        "an IPv4-mapped address matches its IPv4 form"
    );
    assert!(m
        .switchover_target(Some("127.0.0.1:9".parse().unwrap()))
        .is_none());
    run(&mut m, &mut log, &["SET", "k", "v"], AckMode::Sync, 2, 1);
    m.log_durable(Lsn(1), 0);
    m.follower_ack("r1", 1, Lsn(1), Lsn(1), 3);
    assert_eq!(m.switchover_target(None).map(|r| r.id.as_str()), Some("r1"));
    assert!(!m.switchover_ready("r1"), "writes are not paused");
    m.pause_writes();
    assert!(
        !m.switchover_ready("r1"),
        "the sync write is still held for r2"
    );
    m.follower_ack("r2", 1, Lsn(1), Lsn(1), 4);
    answers(&mut m);
    assert!(m.switchover_ready("r1"));
    assert!(m.switchover_ready("r2"));
    assert!(!m.switchover_ready("nobody"));
}

#[test]
fn a_replica_takes_over_only_holding_exactly_the_upstream_last_position_durably() {
    let mut m = replica();
    let cmds = sets(3);
    m.apply_entries(E1, (1..=3).map(|l| pos(1, l)).zip(cmds.iter()), None);
    m.log_durable(Lsn(2), 0);
    assert!(m
        .takeover_check(pos(1, 3))
        .is_err_and(|e| e.contains("durable 2")));
    m.log_durable(Lsn(3), 0);
    assert_eq!(m.takeover_check(pos(1, 3)), Ok(()));
    assert!(m.takeover_check(pos(1, 4)).is_err(), "behind the upstream");
    assert!(m.takeover_check(pos(2, 3)).is_err(), "another entry at 3");
    assert!(leader().takeover_check(ZERO).is_err());
}

/// The replies a machine released, as (batch id, first reply).
fn first_replies(m: &mut Machine<u32>) -> Vec<(u32, Reply)> {
    m.answers()
        .filter_map(|(id, a)| match a {
            Answer::Batch(b) => Some((id, b.replies[0].clone())),
            Answer::Wait(_) => None,
        })
        .collect()
}

#[test]
fn a_leader_that_needs_a_lease_writes_and_answers_only_while_it_holds_one() {
    let mut m = leader();
    let mut log = Log::default();
    m.require_lease();
    // No lease yet: the write parks, nothing is logged.
    run(&mut m, &mut log, &["SET", "k", "1"], AckMode::Async, 10, 1);
    assert!(log.0.is_empty());
    assert!(answers(&mut m).is_empty());
    // Granted up to 500: the write runs, and its reply goes once durable.
    m.grant_lease(500, 20, &mut log);
    assert_eq!(log.0.len(), 1);
    m.log_durable(Lsn(1), 0);
    assert_eq!(first_replies(&mut m), vec![(1, Reply::Ok)]);
    // Past the lease, a durable write is not acknowledged: another node may lead already.
    m.tick(499, &mut log);
    run(&mut m, &mut log, &["SET", "k", "2"], AckMode::Async, 499, 2);
    assert_eq!(log.0.len(), 2, "started while the lease held");
    m.tick(500, &mut log);
    m.log_durable(Lsn(2), 0);
    assert!(answers(&mut m).is_empty(), "released without a lease");
    // An `async` reply held for the lease, though durable, is no broken invariant.
    m.check_invariants();
    // Reads wait too: a deposed leader's state may be stale.
    run(&mut m, &mut log, &["GET", "k"], AckMode::Async, 501, 3);
    assert!(answers(&mut m).is_empty());
    // A renewal releases both, in order.
    m.grant_lease(1_000, 600, &mut log);
    assert_eq!(
        first_replies(&mut m),
        vec![(2, Reply::Ok), (3, Reply::Bulk(Bytes::from_static(b"2")))]
    );
    // Without a renewal, held replies fail at their deadline rather than wait forever.
    run(&mut m, &mut log, &["SET", "k", "3"], AckMode::Async, 990, 4);
    m.tick(1_000, &mut log);
    m.log_durable(Lsn(3), 0);
    m.tick(990 + TIMEOUT, &mut log);
    let failed = first_replies(&mut m);
    assert_eq!(failed.len(), 1);
    assert!(matches!(&failed[0], (4, Reply::Error(_))), "{failed:?}");
    // Active expiry writes nothing without a lease either.
    assert!(!m.write(&Command::FlushAll, &mut log));
}

#[test]
fn an_elected_leader_writes_a_noop_of_its_epoch_at_its_first_lease_before_anything_else() {
    let mut m = replica();
    let mut log = Log::default();
    m.require_lease();
    m.apply_entries(
        E1,
        [(
            pos(1, 1),
            &Command::Set {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"v"),
                expiry: Expiry::Keep,
            },
        )],
        None,
    );
    m.log_durable(Lsn(1), 0);
    m.elected(Epoch(3), 0, &mut log);
    // Nothing is written before the controller confirms the leadership with a lease.
    assert!(log.0.is_empty());
    run(&mut m, &mut log, &["GET", "k"], AckMode::Async, 10, 1);
    m.grant_lease(400, 10, &mut log);
    assert_eq!(log.0, vec![(pos(3, 2), Command::Noop)]);
    assert_eq!(m.last(), pos(3, 2));
    // What an election would compare: the durable end, with its own entry's epoch.
    assert_eq!(m.durable_position(), pos(1, 1));
    // The read reflects the no-op, and waits for it to be durable.
    assert!(answers(&mut m).is_empty());
    m.log_durable(Lsn(2), 0);
    assert_eq!(m.durable_position(), pos(3, 2));
    assert_eq!(
        first_replies(&mut m),
        vec![(1, Reply::Bulk(Bytes::from_static(b"v")))]
    );
}

#[test]
fn a_leader_elected_on_a_stale_map_writes_nothing_and_its_waiting_batches_time_out() {
    let mut m = replica();
    let mut log = Log::default();
    m.require_lease();
    m.elected(Epoch(4), 0, &mut log);
    run(&mut m, &mut log, &["GET", "k"], AckMode::Async, 10, 1);
    run(&mut m, &mut log, &["SET", "k", "v"], AckMode::Async, 10, 2);
    m.tick(10 + TIMEOUT - 1, &mut log);
    assert!(answers(&mut m).is_empty());
    m.tick(10 + TIMEOUT, &mut log);
    let failed = first_replies(&mut m);
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed
        .iter()
        .all(|(_, r)| matches!(r, Reply::Error(e) if e.starts_with("TRYAGAIN"))));
    assert!(log.0.is_empty(), "wrote {:?}", log.0);
}

#[test]
fn a_leader_resuming_from_a_pause_releases_nothing_on_the_clock_from_before_it() {
    // Finding H of the simulator: the first thing a paused leader handles on resuming is
    // often its fsync report. Its lease ran out during the pause, so the reply stays held.
    let mut m = leader();
    let mut log = Log::default();
    m.require_lease();
    m.grant_lease(500, 20, &mut log);
    run(&mut m, &mut log, &["SET", "k", "1"], AckMode::Async, 30, 1);
    m.log_durable(Lsn(1), 1_400);
    assert!(
        answers(&mut m).is_empty(),
        "released 900 ms after the lease ended"
    );
    // The map's in-sync set, learned after the pause, releases nothing either.
    m.pin_in_sync(&std::collections::BTreeSet::new(), "n0", 1_401);
    assert!(answers(&mut m).is_empty());
    m.grant_lease(2_000, 1_500, &mut log);
    assert_eq!(first_replies(&mut m), vec![(1, Reply::Ok)]);
}

#[test]
fn a_member_leaves_only_once_the_others_hold_what_was_acknowledged_with_it() {
    // Three nodes under quorum (one replica needed): a write acknowledged with r1's copy
    // alone must reach r2 before r1 may leave, and nothing acknowledged meanwhile counts r1.
    let mut m = leader_with(MachineConfig {
        default_ack: AckMode::Quorum,
        cluster_size: 3,
        ..config()
    });
    let mut log = Log::default();
    for (r, link) in [("r1", 1), ("r2", 2)] {
        m.follower_up(r, "x", link, 0);
        m.follower_ack(r, link, Lsn::ZERO, Lsn::ZERO, 0);
    }
    m.tick(0, &mut log);
    run(&mut m, &mut log, &["SET", "k", "1"], AckMode::Quorum, 10, 1);
    m.log_durable(Lsn(1), 10);
    m.follower_ack("r1", 1, Lsn(1), Lsn(1), 11);
    assert_eq!(first_replies(&mut m), vec![(1, Reply::Ok)]);
    assert!(replica().begin_removal("r1").is_err(), "only the leader");
    m.begin_removal("r1").unwrap();
    assert!(!m.removal_ready("r1"), "r2 lacks the acknowledged write");
    // A new write is not acknowledged on r1's copy any more.
    run(&mut m, &mut log, &["SET", "k", "2"], AckMode::Quorum, 20, 2);
    m.log_durable(Lsn(2), 20);
    m.follower_ack("r1", 1, Lsn(2), Lsn(2), 21);
    assert!(first_replies(&mut m).is_empty());
    m.follower_ack("r2", 2, Lsn(2), Lsn(2), 22);
    assert_eq!(first_replies(&mut m), vec![(2, Reply::Ok)]);
    assert!(m.removal_ready("r1"));
    // Once the map no longer lists r1, the removal is over; r1 still counts for nothing.
    m.pin_members(["r2".to_string()].into());
    assert!(!m.removal_ready("r1"));
    run(&mut m, &mut log, &["SET", "k", "3"], AckMode::Quorum, 30, 3);
    m.log_durable(Lsn(3), 30);
    m.follower_ack("r1", 1, Lsn(3), Lsn(3), 31);
    assert!(first_replies(&mut m).is_empty());
    // A removal given up counts the member again.
    m.begin_removal("r2").unwrap();
    m.cancel_removal("r2");
    m.follower_ack("r2", 2, Lsn(3), Lsn(3), 32);
    assert_eq!(first_replies(&mut m), vec![(3, Reply::Ok)]);
}

#[test]
fn a_cut_keeps_the_entries_only_as_durable_as_they_were() {
    // A returning old leader cut back to 1:2 while its fsync of 1:2 was still under way: it
    // must not report 1:2 durable before that fsync does.
    let mut m = replica();
    let set = |v: &str| Command::Set {
        key: Bytes::from_static(b"k"),
        value: Bytes::from(v.to_string()),
        expiry: Expiry::Keep,
    };
    let cmds = [set("1"), set("2"), set("3")];
    m.apply_entries(
        E1,
        (1..=3).map(|i| (pos(1, i), &cmds[i as usize - 1])),
        None,
    );
    m.log_durable(Lsn(1), 0);
    let mut kept = Store::new();
    kept.apply(&cmds[0]);
    kept.apply(&cmds[1]);
    m.truncate_to(kept, pos(1, 2));
    assert_eq!(m.last(), pos(1, 2));
    assert_eq!(m.durable(), Lsn(1));
    m.log_durable(Lsn(2), 0);
    assert_eq!(m.durable(), Lsn(2));
}
