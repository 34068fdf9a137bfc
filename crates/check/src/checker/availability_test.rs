//! Availability: the fraction of operations that succeeded and the windows in which none did
//! (failover time).

use super::testkit::*;
use super::{availability, Availability, Status, Window};
use crate::history::{Call, History};
use std::time::Duration;

const MIN: Duration = Duration::from_millis(100);

fn window(start_ms: u64, end_ms: u64) -> Window {
    Window {
        start_us: start_ms * 1000,
        end_us: end_ms * 1000,
    }
}

#[test]
fn no_operations_is_fully_available() {
    let (v, a) = availability(&History::default(), MIN);
    assert_eq!(v.status, Status::Pass);
    assert_eq!(
        a,
        Availability {
            ok_fraction: 1.0,
            windows: Vec::new()
        }
    );
}

#[test]
fn steady_successes_leave_no_window() {
    let mut b = Builder::new();
    for i in 0..50 {
        b.read(1, "k", None, i * 20, i * 20 + 5);
    }
    let (v, a) = availability(&b.h, MIN);
    assert_eq!((v.violations, a.ok_fraction), (0, 1.0));
    assert!(a.windows.is_empty());
}

#[test]
fn planted_unavailability_window_is_measured_from_the_first_failed_attempt_to_success() {
    phase("successes until 100 ms, failed retries from 110 ms to 2 s, success again at 2.3 s");
    let mut b = Builder::new();
    let last_before = b.read(1, "k", None, 90, 100);
    for t in (110..2000).step_by(100) {
        b.op(1, "k", write("x"), fail(), t, t + 5);
        b.op(2, "k", write("y"), indeterminate(), t, t + 50);
    }
    let first_after = b.read(1, "k", None, 2200, 2300);
    b.read(1, "k", None, 2310, 2320);
    let (v, a) = availability(&b.h, MIN);
    assert_eq!(a.windows, vec![window(110, 2300)]);
    assert_eq!(a.windows[0].length_us(), 2_190_000);
    assert_eq!(v.violations, 1);
    assert_eq!(
        v.status,
        Status::Pass,
        "availability is measured, not judged"
    );
    assert_eq!(v.examples[0].ops, vec![last_before, first_after]);
    assert!(
        (a.ok_fraction - 3.0 / 41.0).abs() < 1e-9,
        "{}",
        a.ok_fraction
    );

    phase("a minimum longer than the window hides it");
    let (v, a) = availability(&b.h, Duration::from_secs(3));
    assert_eq!((v.violations, a.windows.len()), (0, 0));
}

#[test]
fn an_idle_gap_is_not_unavailability() {
    let mut b = Builder::new();
    b.read(1, "k", None, 0, 10);
    phase("nothing is attempted for a second, then one failure and a success");
    b.op(1, "k", Call::Read, fail(), 1000, 1010);
    b.read(1, "k", None, 1300, 1310);
    let (_, a) = availability(&b.h, MIN);
    assert_eq!(a.windows, vec![window(1000, 1310)]);
}

#[test]
fn an_attempt_in_flight_at_the_last_success_starts_the_window_there() {
    let mut b = Builder::new();
    b.read(1, "k", None, 0, 100);
    b.op(2, "k", Call::Read, indeterminate(), 50, 1050);
    b.read(1, "k", None, 1100, 1110);
    let (_, a) = availability(&b.h, MIN);
    assert_eq!(a.windows, vec![window(100, 1110)]);
}

#[test]
fn a_slow_success_is_a_window_too() {
    let mut b = Builder::new();
    b.read(1, "k", None, 0, 10);
    b.read(2, "k", None, 5, 800);
    let (_, a) = availability(&b.h, MIN);
    assert_eq!(a.windows, vec![window(10, 800)]);
}

#[test]
fn windows_at_the_start_and_the_end_of_the_run_count() {
    let mut b = Builder::new();
    b.op(1, "k", Call::Read, fail(), 0, 10);
    b.op(1, "k", Call::Read, fail(), 300, 310);
    b.read(1, "k", None, 400, 410);
    b.op(1, "k", Call::Read, indeterminate(), 420, 1420);
    let (v, a) = availability(&b.h, MIN);
    assert_eq!(a.windows, vec![window(0, 410), window(420, 1420)]);
    assert!(
        v.examples[1].what.contains("until the run ended"),
        "{:?}",
        v.examples
    );
}

#[test]
fn nothing_succeeding_is_one_window() {
    let mut b = Builder::new();
    b.op(1, "k", Call::Read, fail(), 50, 60);
    b.op(1, "k", Call::Read, fail(), 500, 510);
    let (_, a) = availability(&b.h, MIN);
    assert_eq!(a.ok_fraction, 0.0);
    assert_eq!(a.windows, vec![window(50, 510)]);
}
