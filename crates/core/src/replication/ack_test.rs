//! Tests for [`AckMode`]: the spellings it parses, its canonical display, what it refuses,
//! and how many in-sync replicas each mode needs before a write may start.

use super::ack::{AckMode, AckModeError, SEMI_SYNC_K_MAX};
use proptest::prelude::*;

#[test]
fn display_is_the_canonical_spelling() {
    assert_eq!(AckMode::Async.to_string(), "async");
    assert_eq!(AckMode::SemiSync(3).to_string(), "semi-sync:3");
    assert_eq!(AckMode::Sync.to_string(), "sync");
    assert_eq!(AckMode::Quorum.to_string(), "quorum");
}

#[test]
fn display_parses_back_to_the_same_mode() {
    let modes = [
        AckMode::Async,
        AckMode::SemiSync(1),
        AckMode::SemiSync(2),
        AckMode::SemiSync(SEMI_SYNC_K_MAX),
        AckMode::Sync,
        AckMode::Quorum,
    ];
    for mode in modes {
        let text = mode.to_string();
        assert_eq!(text.parse::<AckMode>(), Ok(mode), "text {text:?}");
    }
}

#[test]
fn every_documented_spelling_parses_ignoring_case_and_outer_space() {
    let cases = [
        ("async", AckMode::Async),
        ("ASYNC", AckMode::Async),
        ("Async", AckMode::Async),
        ("  async\t", AckMode::Async),
        ("sync", AckMode::Sync),
        ("SYNC", AckMode::Sync),
        ("\nsync\n", AckMode::Sync),
        ("quorum", AckMode::Quorum),
        ("QuOrUm", AckMode::Quorum),
        ("semi-sync:1", AckMode::SemiSync(1)),
        ("semi-sync 2", AckMode::SemiSync(2)),
        ("semi-sync=3", AckMode::SemiSync(3)),
        ("SEMI-SYNC:4", AckMode::SemiSync(4)),
        ("Semi-Sync=5", AckMode::SemiSync(5)),
        (" semi-sync:6 ", AckMode::SemiSync(6)),
        ("semi-sync:007", AckMode::SemiSync(7)),
        ("semi-sync:1000", AckMode::SemiSync(1000)),
        // Accepted as well, though not in the doc comment: no hyphen.
        ("semisync:8", AckMode::SemiSync(8)),
        ("SEMISYNC 9", AckMode::SemiSync(9)),
    ];
    for (text, mode) in cases {
        assert_eq!(text.parse::<AckMode>(), Ok(mode), "text {text:?}");
    }
}

#[test]
fn semi_sync_k_outside_1_to_1000_is_refused() {
    for text in [
        "semi-sync:0",
        "semi-sync:1001",
        "semi-sync:4294967295",
        "semi-sync:4294967296",
        "semi-sync:-1",
    ] {
        assert_eq!(
            text.parse::<AckMode>(),
            Err(AckModeError(text.to_string())),
            "text {text:?}"
        );
    }
}

#[test]
fn semi_sync_k_with_a_sign_is_refused() {
    // `u32::from_str` takes a leading `+`; the grammar is digits only, as for tokens.
    for text in ["semi-sync:+3", "semi-sync +1", "semi-sync=+1000"] {
        assert_eq!(
            text.parse::<AckMode>(),
            Err(AckModeError(text.to_string())),
            "text {text:?}"
        );
    }
}

#[test]
fn junk_is_refused_and_the_error_keeps_the_text_as_given() {
    for text in [
        "",
        " ",
        "asyn",
        "asynchronous",
        "async2",
        "synchronous",
        "all",
        "majority",
        "semi",
        "semi-sync",
        "semi-sync:",
        "semi-sync:x",
        "semi-sync:1.5",
        "semi-sync:2 3",
        "semi-sync:0x2",
        "semi_sync:2",
        "sync:1",
        "quorum:3",
        " Junk ",
        "async\0",
    ] {
        assert_eq!(
            text.parse::<AckMode>(),
            Err(AckModeError(text.to_string())),
            "text {text:?}"
        );
    }
}

#[test]
fn error_message_names_the_text_and_the_accepted_modes() {
    let err = "semi-sync:0".parse::<AckMode>().unwrap_err();
    let message = err.to_string();
    assert!(message.contains("`semi-sync:0`"), "{message}");
    for word in ["async", "semi-sync:K", "1 to 1000", "sync", "quorum"] {
        assert!(message.contains(word), "{word:?} missing from {message:?}");
    }
}

#[test]
fn replicas_needed_for_each_mode_and_cluster_sizes_1_to_5() {
    // Columns: cluster size 1, 2, 3, 4, 5 (the leader counted).
    let table: [(AckMode, [u32; 5]); 7] = [
        (AckMode::Async, [0, 0, 0, 0, 0]),
        (AckMode::SemiSync(1), [1, 1, 1, 1, 1]),
        (AckMode::SemiSync(2), [2, 2, 2, 2, 2]),
        (AckMode::SemiSync(4), [4, 4, 4, 4, 4]),
        (AckMode::Sync, [1, 1, 1, 1, 1]),
        // A majority of n is n / 2 + 1 nodes, of which the leader is one.
        (AckMode::Quorum, [0, 1, 1, 2, 2]),
        (AckMode::SemiSync(SEMI_SYNC_K_MAX), [1000; 5]),
    ];
    for (mode, needed) in table {
        for (size, want) in (1..=5).zip(needed) {
            assert_eq!(
                mode.replicas_needed(size),
                want,
                "mode {mode}, cluster size {size}"
            );
        }
    }
}

#[test]
fn quorum_replicas_needed_with_the_leader_make_a_strict_majority() {
    for size in 1..=9u32 {
        let nodes = AckMode::Quorum.replicas_needed(size) + 1;
        assert!(
            2 * nodes > size,
            "size {size}: {nodes} nodes are no majority"
        );
        assert!(
            2 * (nodes - 1) <= size,
            "size {size}: {nodes} nodes are more than a majority needs"
        );
    }
}

proptest! {
    #[test]
    fn every_valid_semi_sync_k_round_trips(k in 1..=SEMI_SYNC_K_MAX) {
        let mode = AckMode::SemiSync(k);
        prop_assert_eq!(mode.to_string().parse::<AckMode>(), Ok(mode));
        prop_assert_eq!(format!("semi-sync {k}").parse::<AckMode>(), Ok(mode));
        prop_assert_eq!(format!("SEMI-SYNC={k}").parse::<AckMode>(), Ok(mode));
    }

    #[test]
    fn parsing_never_panics_and_what_parses_has_a_canonical_form(
        text in prop_oneof![
            ".{0,16}",
            "[ ]?(semi-?sync|SEMI-SYNC|a?sync|quorum)[:= +-]{0,3}[0-9]{0,5}[ x]?",
        ]
    ) {
        if let Ok(mode) = text.parse::<AckMode>() {
            prop_assert_eq!(mode.to_string().parse::<AckMode>(), Ok(mode));
            if let AckMode::SemiSync(k) = mode {
                prop_assert!((1..=SEMI_SYNC_K_MAX).contains(&k), "k {}", k);
            }
        }
    }
}

#[test]
fn only_async_never_expires() {
    assert_eq!(AckMode::Async.deadline_ms(100, 50), u64::MAX);
    assert_eq!(AckMode::Quorum.deadline_ms(100, 50), 150);
    assert_eq!(AckMode::Sync.deadline_ms(u64::MAX - 1, 50), u64::MAX);
}
