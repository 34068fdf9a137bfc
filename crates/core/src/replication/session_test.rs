//! Tests for consistency tokens and a session's read guarantees: read-your-writes, monotonic
//! reads and bounded staleness.

use super::session::{parse_token, ReadDecision, Session, TokenError};
use crate::position::{Epoch, LogPosition, Lsn};
use proptest::prelude::*;

fn pos(epoch: u64, lsn: u64) -> LogPosition {
    LogPosition {
        epoch: Epoch(epoch),
        lsn: Lsn(lsn),
    }
}

// ---- parse_token ----

#[test]
fn parse_token_reads_epoch_and_lsn() {
    let cases: [(&[u8], LogPosition); 5] = [
        (b"0:0", pos(0, 0)),
        (b"3:17", pos(3, 17)),
        (b"007:010", pos(7, 10)),
        (
            b"18446744073709551615:18446744073709551615",
            pos(u64::MAX, u64::MAX),
        ),
        (b"1:18446744073709551615", pos(1, u64::MAX)),
    ];
    for (token, want) in cases {
        assert_eq!(
            parse_token(token),
            Ok(want),
            "token {:?}",
            String::from_utf8_lossy(token)
        );
    }
}

#[test]
fn parse_token_reads_what_log_position_display_writes() {
    let p = pos(12, 3456);
    assert_eq!(parse_token(p.to_string().as_bytes()), Ok(p));
}

#[test]
fn parse_token_refuses_anything_but_two_decimal_numbers_around_one_colon() {
    let bad: [&[u8]; 28] = [
        b"",
        b":",
        b"3",
        b"317",
        b"3:",
        b":17",
        b"3:17:1",
        b"3::17",
        b"+3:17",
        b"3:+17",
        b"-3:17",
        b"3:-17",
        b" 3:17",
        b"3:17 ",
        b"3 :17",
        b"3: 17",
        b"3:17\n",
        b"3;17",
        b"3.0:17",
        b"0x3:17",
        b"3:1e3",
        b"18446744073709551616:1",
        b"1:18446744073709551616",
        b"99999999999999999999999:1",
        "\u{663}:1".as_bytes(),  // an Arabic-Indic digit three
        "\u{ff13}:1".as_bytes(), // a full-width digit three
        b"3\0:17",
        b"epoch:lsn",
    ];
    for token in bad {
        assert_eq!(
            parse_token(token),
            Err(TokenError),
            "token {:?}",
            String::from_utf8_lossy(token)
        );
    }
}

#[test]
fn parse_token_refuses_bytes_that_are_not_utf8() {
    for token in [&b"\xff:1"[..], b"1:\xc3", b"1:2\x80", b"\xc0\xb1:1"] {
        assert_eq!(parse_token(token), Err(TokenError), "token {token:?}");
    }
}

#[test]
fn token_error_says_what_is_expected() {
    assert_eq!(
        TokenError.to_string(),
        "invalid consistency token: expected EPOCH:LSN, as returned by REPLIKV TOKEN"
    );
}

proptest! {
    #[test]
    fn every_log_position_round_trips_through_its_token(epoch: u64, lsn: u64) {
        let p = pos(epoch, lsn);
        prop_assert_eq!(parse_token(p.to_string().as_bytes()), Ok(p));
    }

    #[test]
    fn parse_token_never_panics(token in prop::collection::vec(any::<u8>(), 0..32)) {
        if let Ok(p) = parse_token(&token) {
            // Whatever parses is decimal digits around one colon.
            prop_assert!(token.iter().all(|b| b.is_ascii_digit() || *b == b':'));
            prop_assert_eq!(token.iter().filter(|b| **b == b':').count(), 1);
            prop_assert_eq!(parse_token(p.to_string().as_bytes()), Ok(p));
        }
    }
}

// ---- Session::required and observe ----

#[test]
fn default_session_requires_nothing_and_has_no_bound() {
    let s = Session::default();
    assert_eq!(s.required(), pos(0, 0));
    assert_eq!(s.max_staleness_ms, None);
    assert_eq!(s.decide(pos(0, 0), None), ReadDecision::Serve);
}

#[test]
fn required_without_monotonic_is_the_clients_token_only() {
    let s = Session {
        after: pos(2, 10),
        monotonic: false,
        seen: pos(2, 50),
        max_staleness_ms: None,
    };
    assert_eq!(s.required(), pos(2, 10));
}

#[test]
fn required_with_monotonic_is_the_newer_of_token_and_seen() {
    let mut s = Session {
        after: pos(2, 10),
        monotonic: true,
        seen: pos(2, 50),
        max_staleness_ms: None,
    };
    assert_eq!(s.required(), pos(2, 50));
    s.after = pos(3, 60);
    assert_eq!(s.required(), pos(3, 60));
}

#[test]
fn observe_keeps_the_newest_position_seen() {
    let mut s = Session::default();
    s.observe(pos(2, 10));
    assert_eq!(s.seen, pos(2, 10));

    eprintln!("phase: an older reply does not move what was seen back");
    s.observe(pos(2, 4));
    assert_eq!(s.seen, pos(2, 10));

    eprintln!("phase: a newer one moves it forward");
    s.observe(pos(3, 11));
    assert_eq!(s.seen, pos(3, 11));

    eprintln!("phase: positions order by epoch first");
    s.observe(pos(2, 99));
    assert_eq!(s.seen, pos(3, 11));
}

#[test]
fn observe_does_not_touch_the_clients_token_or_bound() {
    let mut s = Session {
        after: pos(1, 5),
        monotonic: false,
        seen: pos(0, 0),
        max_staleness_ms: Some(250),
    };
    s.observe(pos(1, 9));
    assert_eq!(s.after, pos(1, 5));
    assert_eq!(s.max_staleness_ms, Some(250));
}

// ---- Session::decide ----

#[test]
fn decide_serves_once_the_required_position_is_applied() {
    let s = Session {
        after: pos(2, 10),
        ..Session::default()
    };
    assert_eq!(s.decide(pos(2, 10), Some(5)), ReadDecision::Serve);
    assert_eq!(s.decide(pos(2, 11), Some(5)), ReadDecision::Serve);
    assert_eq!(s.decide(pos(3, 12), None), ReadDecision::Serve);
}

#[test]
fn decide_waits_for_the_clients_write() {
    let s = Session {
        after: pos(2, 10),
        ..Session::default()
    };
    assert_eq!(
        s.decide(pos(2, 9), Some(0)),
        ReadDecision::Wait { until: pos(2, 10) }
    );
}

#[test]
fn decide_compares_lsns_not_epochs() {
    // A node on a newer epoch but with a lower LSN has not applied the write yet.
    let s = Session {
        after: pos(2, 10),
        ..Session::default()
    };
    assert_eq!(
        s.decide(pos(3, 9), Some(0)),
        ReadDecision::Wait { until: pos(2, 10) }
    );
    // The write's LSN is applied, whatever epoch the node reports for it.
    assert_eq!(s.decide(pos(1, 10), Some(0)), ReadDecision::Serve);
}

#[test]
fn decide_with_monotonic_reads_waits_for_what_the_session_saw() {
    let mut s = Session {
        monotonic: true,
        ..Session::default()
    };
    s.observe(pos(2, 30));
    assert_eq!(
        s.decide(pos(2, 29), Some(0)),
        ReadDecision::Wait { until: pos(2, 30) }
    );
    assert_eq!(s.decide(pos(2, 30), Some(0)), ReadDecision::Serve);

    eprintln!("phase: without monotonic reads the same replica serves");
    s.monotonic = false;
    assert_eq!(s.decide(pos(2, 29), Some(0)), ReadDecision::Serve);
}

#[test]
fn decide_refuses_a_replica_further_behind_than_the_bound() {
    let s = Session {
        max_staleness_ms: Some(100),
        ..Session::default()
    };
    assert_eq!(s.decide(pos(1, 1), Some(100)), ReadDecision::Serve);
    assert_eq!(
        s.decide(pos(1, 1), Some(101)),
        ReadDecision::TooStale {
            staleness_ms: 101,
            bound_ms: 100
        }
    );
}

#[test]
fn decide_with_a_bound_refuses_unknown_staleness() {
    for bound_ms in [0, 100, u64::MAX - 1] {
        let s = Session {
            max_staleness_ms: Some(bound_ms),
            ..Session::default()
        };
        assert_eq!(
            s.decide(pos(1, 1), None),
            ReadDecision::TooStale {
                staleness_ms: u64::MAX,
                bound_ms
            },
            "bound {bound_ms}"
        );
    }
}

#[test]
fn decide_without_a_bound_serves_whatever_the_staleness() {
    let s = Session::default();
    assert_eq!(s.decide(pos(1, 1), None), ReadDecision::Serve);
    assert_eq!(s.decide(pos(1, 1), Some(u64::MAX)), ReadDecision::Serve);
}

#[test]
fn decide_serves_a_leader_with_a_zero_bound() {
    let s = Session {
        max_staleness_ms: Some(0),
        ..Session::default()
    };
    assert_eq!(s.decide(pos(1, 1), Some(0)), ReadDecision::Serve);
}

#[test]
fn decide_refuses_a_stale_replica_before_asking_to_wait() {
    // Waiting cannot help a replica that is too far behind its leader.
    let s = Session {
        after: pos(2, 10),
        max_staleness_ms: Some(50),
        ..Session::default()
    };
    assert_eq!(
        s.decide(pos(2, 5), Some(60)),
        ReadDecision::TooStale {
            staleness_ms: 60,
            bound_ms: 50
        }
    );
    assert_eq!(
        s.decide(pos(2, 5), Some(50)),
        ReadDecision::Wait { until: pos(2, 10) }
    );
}
