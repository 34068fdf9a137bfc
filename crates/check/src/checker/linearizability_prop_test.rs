//! Linearizability on generated histories: histories of a real atomic register always pass;
//! the search agrees with an exhaustive one on small histories; a wrong read usually fails.

use super::linearizability::{check_key, KeyResult};
use super::register::{Interner, State, Step};
use super::testkit::*;
use super::{linearizability, Status};
use crate::history::{Call, History, OpId, Outcome};
use proptest::prelude::*;
use std::time::Duration;

const BUDGET: Duration = Duration::from_secs(30);

/// Clients run operations one at a time on keys `r` (a register) and `c` (a counter); each
/// operation takes effect at a random instant inside its interval, applied to one sequential
/// store, and records what that store returned. Some fail (no effect), some are
/// indeterminate (an effect that may come after the reply was given up, or none).
fn simulate(seed: u64, clients: u32, ops_per_client: u32) -> History {
    simulate_with(seed, clients, ops_per_client, 100)
}

fn simulate_with(seed: u64, clients: u32, ops_per_client: u32, info_per_thousand: u64) -> History {
    let mut rng = Mix(seed);
    let mut b = Builder::new();
    // (instant of effect, op, whether it takes effect)
    let mut effects: Vec<(u64, OpId, bool)> = Vec::new();
    let mut next_value = 0;
    for client in 0..clients {
        let mut t = rng.below(20);
        for _ in 0..ops_per_client {
            let start = t;
            let end = start + 1 + rng.below(30);
            let key = if rng.below(4) == 0 { "c" } else { "r" };
            next_value += 1;
            let value = format!("v{next_value}");
            let call = match (key, rng.below(6)) {
                ("c", 0..=2) => Call::Incr {
                    by: 1 + rng.below(3) as i64,
                },
                ("c", _) | (_, 0 | 1) => Call::Read,
                (_, 2) => Call::Write { value },
                (_, 3) => Call::WriteIfAbsent { value },
                (_, 4) => Call::Swap { value },
                _ => Call::Delete,
            };
            let roll = rng.below(1000);
            let (outcome, takes_effect, at) = match roll {
                _ if roll < 100 => (fail(), false, start),
                _ if roll < 100 + info_per_thousand => (
                    indeterminate(),
                    rng.below(2) == 0,
                    start + rng.below(end - start + 40),
                ),
                _ => (ok(None), true, start + rng.below(end - start + 1)),
            };
            let id = b.op(client, key, call, outcome, start, end);
            effects.push((at, id, takes_effect));
            t = end + rng.below(10);
        }
    }
    effects.sort_unstable();
    let mut interner = Interner::default();
    let mut store: std::collections::HashMap<String, Option<String>> = Default::default();
    for (_, id, takes_effect) in effects {
        if !takes_effect {
            continue;
        }
        let op = &mut b.h.ops[id];
        let before = store.get(&op.key).cloned().flatten();
        let (after, output) = match &op.call {
            Call::Read => (before.clone(), before),
            Call::Write { value } => (Some(value.clone()), None),
            Call::WriteIfAbsent { value } => match before {
                None => (Some(value.clone()), Some("1".to_owned())),
                Some(_) => (before, None),
            },
            Call::Swap { value } => (Some(value.clone()), before),
            Call::Incr { by } => {
                let n = before.as_deref().map_or(0, |s| s.parse::<i64>().unwrap()) + by;
                (Some(n.to_string()), Some(n.to_string()))
            }
            Call::Delete => (None, None),
        };
        // The store and the model agree on every step (a check on the simulator itself).
        let step = Step::of(
            &crate::history::Op {
                outcome: ok(output.as_deref()),
                ..op.clone()
            },
            &mut interner,
        )
        .unwrap();
        let model_before = interner.state(&store.get(&op.key).cloned().flatten());
        assert_eq!(step.apply(model_before), Some(interner.state(&after)));
        store.insert(op.key.clone(), after);
        if let Outcome::Ok { value } = &mut op.outcome {
            *value = output;
        }
    }
    b.h
}

/// Exhaustive search: every order of the operations that respects real time.
fn brute_force(h: &History, ids: &[OpId]) -> bool {
    let mut interner = Interner::default();
    let ops: Vec<(Step, u64, Option<u64>)> = ids
        .iter()
        .filter_map(|&id| {
            let op = &h.ops[id];
            let step = Step::of(op, &mut interner)?;
            let end = op.is_ok().then_some(op.end_us.max(op.start_us));
            Some((step, op.start_us, end))
        })
        .collect();
    fn go(ops: &[(Step, u64, Option<u64>)], placed: &mut Vec<bool>, state: State) -> bool {
        if (0..ops.len()).all(|i| placed[i] || ops[i].2.is_none()) {
            return true;
        }
        for i in 0..ops.len() {
            let blocked = (0..ops.len())
                .any(|j| j != i && !placed[j] && ops[j].2.is_some_and(|end| end < ops[i].1));
            if placed[i] || blocked {
                continue;
            }
            if let Some(after) = ops[i].0.apply(state) {
                placed[i] = true;
                let found = go(ops, placed, after);
                placed[i] = false;
                if found {
                    return true;
                }
            }
        }
        false
    }
    go(&ops, &mut vec![false; ops.len()], State::Absent)
}

/// Replaces the value of one acknowledged read of `r` with another value the key held at
/// some point (or absent); `None` when there is no read to spoil.
fn spoil_a_read(h: &mut History, pick: u64) -> Option<OpId> {
    let reads: Vec<OpId> = h
        .ops_on("r")
        .filter(|(_, op)| op.call == Call::Read && op.is_ok())
        .map(|(id, _)| id)
        .collect();
    let id = *reads.get(pick as usize % reads.len().max(1))?;
    let mut values: Vec<Option<String>> = vec![None];
    values.extend(h.ops_on("r").filter_map(|(_, op)| match &op.call {
        Call::Write { value } | Call::Swap { value } | Call::WriteIfAbsent { value } => {
            Some(Some(value.clone()))
        }
        _ => None,
    }));
    let Outcome::Ok { value } = &mut h.ops[id].outcome else {
        return None;
    };
    values.retain(|v| v != value);
    *value = values
        .get((pick / 7) as usize % values.len().max(1))?
        .clone();
    Some(id)
}

/// Moves the value one acknowledged counter op (`Read` or `Incr`) returned by one; `None` when
/// there is none.
fn spoil_a_count(h: &mut History, pick: u64) -> Option<OpId> {
    let counted: Vec<OpId> = h
        .ops_on("c")
        .filter(|(_, op)| matches!(op.outcome, Outcome::Ok { value: Some(_) }))
        .map(|(id, _)| id)
        .collect();
    let id = *counted.get(pick as usize % counted.len().max(1))?;
    if let Outcome::Ok { value: Some(v) } = &mut h.ops[id].outcome {
        let n: i64 = v.parse().ok()?;
        *v = if pick & 1 == 0 { n + 1 } else { n - 1 }.to_string();
    }
    Some(id)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn histories_of_an_atomic_register_are_linearizable(
        seed in any::<u64>(), clients in 1_u32..5, ops in 1_u32..8, info_per_thousand in 0_u64..300,
    ) {
        let h = simulate_with(seed, clients, ops, info_per_thousand);
        let v = linearizability(&h, BUDGET);
        prop_assert_eq!(v.status, Status::Pass, "{:?}\n{:#?}", v, h.ops);
    }

    #[test]
    fn the_search_agrees_with_exhaustive_search_on_small_histories(
        seed in any::<u64>(), clients in 1_u32..5, ops in 1_u32..5, pick in any::<u64>(),
        info_per_thousand in 0_u64..600,
    ) {
        let mut h = simulate_with(seed, clients, ops, info_per_thousand);
        if pick % 3 == 0 {
            spoil_a_read(&mut h, pick / 3);
        }
        if pick % 5 < 2 {
            spoil_a_count(&mut h, pick / 5);
        }
        for key in ["r", "c"] {
            let ids: Vec<OpId> = h.ops_on(key).map(|(id, _)| id).collect();
            let expected = brute_force(&h, &ids);
            let got = check_key(&h, &ids, None);
            prop_assert_eq!(
                got == KeyResult::Linearizable, expected, "{:?}\n{:#?}", got, h.ops
            );
        }
    }
}

#[test]
fn a_wrong_read_usually_makes_the_history_fail() {
    phase("spoil one read in each of 200 generated histories; most must be caught");
    let (mut spoiled, mut caught) = (0, 0);
    for seed in 0..200 {
        let mut h = simulate(seed, 3, 6);
        if spoil_a_read(&mut h, seed.wrapping_mul(0x9E37_79B9)).is_none() {
            continue;
        }
        spoiled += 1;
        if linearizability(&h, BUDGET).status == Status::Fail {
            caught += 1;
        }
    }
    eprintln!("caught {caught} of {spoiled} spoiled histories");
    assert!(spoiled >= 100, "{spoiled}");
    assert!(caught * 2 > spoiled, "caught {caught} of {spoiled}");
}

#[test]
fn a_long_history_with_few_indeterminate_operations_passes_in_budget() {
    phase("10 clients, 6000 operations on two keys, 1% indeterminate");
    let h = simulate_with(42, 10, 600, 10);
    let v = linearizability(&h, BUDGET);
    assert_eq!(v.status, Status::Pass, "{v:?}");
}

/// A longer sweep than the gate runs: `cargo test --release -p replikv-check -- --ignored`.
#[test]
#[ignore = "a long sweep; run it by hand after changing the search"]
fn long_sweep_against_exhaustive_search() {
    let mut mismatches = Vec::new();
    for seed in 0..100_000_u64 {
        let mut m = Mix(seed);
        let clients = 1 + m.below(4) as u32;
        let ops = 1 + m.below(5) as u32;
        let mut h = simulate_with(seed, clients, ops, m.below(600));
        if m.below(2) == 0 {
            spoil_a_read(&mut h, m.next());
        }
        if m.below(2) == 0 {
            spoil_a_count(&mut h, m.next());
        }
        for key in ["r", "c"] {
            let ids: Vec<OpId> = h.ops_on(key).map(|(id, _)| id).collect();
            let got = check_key(&h, &ids, None) == KeyResult::Linearizable;
            if got != brute_force(&h, &ids) {
                mismatches.push((seed, key));
            }
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:?}");
}
