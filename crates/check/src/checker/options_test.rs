//! Running every checker: order, names, the stale-read promise, and the JSON a report gets.

use super::testkit::*;
use super::{check_all, Options, Status, Verdict};

const NAMES: [&str; 6] = [
    "lost_writes",
    "linearizability",
    "read_your_writes",
    "monotonic_reads",
    "stale_reads",
    "availability",
];

fn statuses(verdicts: &[Verdict]) -> Vec<(&str, Status)> {
    verdicts
        .iter()
        .map(|v| (v.checker.as_str(), v.status))
        .collect()
}

#[test]
fn a_correct_history_passes_every_checker() {
    let mut b = Builder::new();
    b.write(1, "k", "a", 0, 10);
    b.read(1, "k", Some("a"), 20, 30);
    b.write(2, "k", "b", 40, 50);
    b.read(1, "k", Some("b"), 60, 70);
    b.incr(2, "c", 1, 1, 0, 10);
    b.read(1, "c", Some("1"), 80, 90);
    b.final_read("n1", &[("k", Some("b")), ("c", Some("1"))]);
    let verdicts = check_all(&b.h, &Options::default());
    let want: Vec<(&str, Status)> = NAMES.iter().map(|n| (*n, Status::Pass)).collect();
    assert_eq!(statuses(&verdicts), want, "{verdicts:#?}");
    assert!(verdicts.iter().all(|v| v.violations == 0), "{verdicts:#?}");
}

#[test]
fn a_stale_read_fails_only_when_reads_were_promised_fresh() {
    let mut b = Builder::new();
    b.write(1, "k", "a", 0, 10);
    b.write(1, "k", "b", 20, 30);
    b.read(2, "k", Some("a"), 40, 50);
    b.final_read("n1", &[("k", Some("b"))]);
    let stale = |o: &Options| check_all(&b.h, o)[4].clone();
    assert_eq!(stale(&Options::default()).status, Status::Pass);
    let promised = Options {
        leader_reads_only: true,
        ..Options::default()
    };
    let v = stale(&promised);
    assert_eq!(
        (v.checker.as_str(), v.status),
        ("stale_reads", Status::Fail)
    );
    assert_eq!(check_all(&b.h, &promised)[1].status, Status::Fail);
}

#[test]
fn verdicts_serialize_with_snake_case_status() {
    let mut b = Builder::new();
    b.write(1, "k", "a", 0, 10);
    b.final_read("n1", &[("k", None)]);
    let v = &check_all(&b.h, &Options::default())[0];
    let json = serde_json::to_value(v).unwrap();
    assert_eq!(json["checker"], "lost_writes");
    assert_eq!(json["status"], "fail");
    assert_eq!(json["violations"], 1);
    assert_eq!(json["examples"][0]["ops"][0], 0);
    let back: Verdict = serde_json::from_value(json).unwrap();
    assert_eq!(&back, v);
}
