//! The Wing–Gong–Lowe search for a linearization of one key's operations, with a memo of the
//! configurations already explored.
//!
//! Operations are *required* (they took effect: they must be placed before their reply) or
//! *optional* (indeterminate: they may be placed anywhere after their invocation, or never).
//! Required operations sit in a doubly linked list of call and return events in time order;
//! the candidates at any point are the calls before the first return in the list, then the
//! optional calls invoked no later than that return. Placing an operation applies it to the
//! model and takes it out of its list; backtracking puts it back ("dancing links").
//!
//! The memo holds configurations, each a set of placed required operations, a set of placed
//! optional ones and a model state. A configuration is pruned when one with the same required
//! set and state, and a *subset* of its optional set, was seen: anything the larger one can
//! still do, the smaller one could do by also placing the extra optional operations, which
//! never constrain anyone (their replies are at infinity). Required candidates are tried
//! before optional ones, so the smaller configurations tend to come first. The required set is
//! stored as "the first `k` in invocation order, plus these few others", which stays small
//! however long the history: the ops placed beyond the first unplaced one are those
//! concurrent with it. Past its size bound the memo forgets the configurations furthest
//! behind; the memo only saves work, so forgetting never changes an answer.
//!
//! Optional operations are not tried where they cannot help, each rule keeping at least one
//! linearization whenever there is one: an operation that would leave the state unchanged; a
//! later one of several with the same step, while an earlier one is unplaced (they are
//! interchangeable); and a write of a text value nothing else writes or returns, unless the
//! key is absent (see `only_when_absent`). The unit tests and a sweep against an exhaustive
//! search (`long_sweep_against_exhaustive_search`, ignored by default) check that the answers
//! do not change.

use super::register::{State, Step};
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// How many search steps run between two looks at the clock.
const STEPS_PER_CLOCK_CHECK: u32 = 1024;

/// Sentinel for "no node" in the lists.
const NIL: usize = usize::MAX;

/// One operation as the search sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyOp {
    /// What it does to the model and must return.
    pub(crate) step: Step,
    /// When it was invoked, µs.
    pub(crate) start_us: u64,
    /// The time by which it must have taken effect, µs; `None` for an optional operation.
    pub(crate) end_us: Option<u64>,
}

/// How a search ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SearchEnd {
    /// Every required operation was placed.
    Linearizable,
    /// No order exists. The deepest configuration reached: the operations placed, in order
    /// (indices into the search's operations), and the required one whose reply came next
    /// without it being placeable.
    Violation {
        /// The required operation that could not be placed.
        stuck: usize,
        /// The operations placed before it, in order.
        placed: Vec<usize>,
    },
    /// The deadline passed.
    OutOfTime,
}

/// The set of placed required operations, by index in invocation order: all below `k`, and
/// `extras` (sorted, all above `k`).
#[derive(Debug)]
struct Placed {
    bits: Vec<bool>,
    k: usize,
    extras: Vec<u32>,
}

impl Placed {
    fn new(n: usize) -> Placed {
        Placed {
            bits: vec![false; n],
            k: 0,
            extras: Vec::new(),
        }
    }

    fn place(&mut self, i: usize) {
        assert!(!self.bits[i], "op {i} is placed twice");
        self.bits[i] = true;
        if i != self.k {
            let at = self.extras.partition_point(|&x| (x as usize) < i);
            self.extras.insert(at, index_u32(i));
            return;
        }
        while self.k < self.bits.len() && self.bits[self.k] {
            self.k += 1;
        }
        let absorbed = self.extras.partition_point(|&x| (x as usize) < self.k);
        self.extras.drain(..absorbed);
    }

    fn unplace(&mut self, i: usize) {
        assert!(self.bits[i], "op {i} is not placed");
        self.bits[i] = false;
        if i < self.k {
            let mut extras: Vec<u32> = (i + 1..self.k).map(index_u32).collect();
            extras.append(&mut self.extras);
            self.extras = extras;
            self.k = i;
        } else {
            let at = self.extras.partition_point(|&x| (x as usize) < i);
            assert!(
                self.extras.get(at) == Some(&index_u32(i)),
                "op {i} is an extra"
            );
            self.extras.remove(at);
        }
    }
}

/// An index that fits in `u32`: the search refuses more operations than that.
fn index_u32(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// Whether sorted `a` is a subset of sorted `b` plus `extra`.
fn is_subset_with(a: &[u32], b: &[u32], extra: Option<u32>) -> bool {
    let mut rest = b.iter();
    a.iter()
        .all(|x| Some(*x) == extra || rest.by_ref().any(|y| y == x))
}

/// Where the walk over candidates stands.
#[derive(Clone, Copy, Debug)]
enum Cursor {
    /// At a node of the required list.
    Required(usize),
    /// At a node of the optional list; candidates there must be invoked by `until_us`.
    Optional { node: usize, until_us: u64 },
}

/// A placed operation, to undo on backtracking.
#[derive(Clone, Copy, Debug)]
struct Frame {
    /// Where the op sits (its call node), and so where the walk resumes after undoing it.
    at: Cursor,
    /// The model state before it.
    before: State,
    /// The set of placed optional ops before it.
    set_before: u32,
}

/// Sets of placed optional ops, each stored once and named by a number; the memo refers to
/// them by number, so a long run of configurations with the same set costs one copy.
#[derive(Debug, Default)]
struct OptionalSets {
    sets: Vec<Box<[u32]>>,
    ids: HashMap<Box<[u32]>, u32>,
}

impl OptionalSets {
    fn intern(&mut self, set: Vec<u32>) -> u32 {
        if let Some(&id) = self.ids.get(set.as_slice()) {
            return id;
        }
        let id = index_u32(self.sets.len());
        let set = set.into_boxed_slice();
        self.sets.push(set.clone());
        self.ids.insert(set, id);
        id
    }

    fn get(&self, id: u32) -> &[u32] {
        &self.sets[id as usize]
    }
}

/// The memo: per (first unplaced required op, other placed required ops, state), the sets of
/// placed optional ops seen with them.
type Memo = HashMap<(u32, Box<[u32]>, State), Vec<u32>>;

/// Roughly what a memo entry costs besides its lists, in bytes.
const MEMO_ENTRY_BYTES: usize = 80;

/// Searches for a linearization of `ops` from the absent state, giving up at `deadline`
/// (never when `None`). When the memo passes `memo_bytes_max`, it forgets the configurations
/// furthest behind the current one (the memo only saves work; forgetting never changes the
/// answer).
pub(crate) fn search(ops: &[KeyOp], deadline: Option<Instant>, memo_bytes_max: usize) -> SearchEnd {
    // Required ops in invocation order (their index in `Placed`), optional ones likewise.
    let mut required: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i].end_us.is_some())
        .collect();
    required.sort_by_key(|&i| (ops[i].start_us, i));
    let mut optional: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i].end_us.is_none())
        .collect();
    optional.sort_by_key(|&i| (ops[i].start_us, i));
    let r = required.len();
    if r == 0 {
        return SearchEnd::Linearizable;
    }

    // The required list: call and return events by time, calls first at a tie; head at 2r.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * r);
    for (ri, &i) in required.iter().enumerate() {
        let start_us = ops[i].start_us;
        let end_us = ops[i].end_us.unwrap_or(u64::MAX).max(start_us);
        events.push((start_us, false, ri));
        events.push((end_us, true, ri));
    }
    events.sort_unstable();
    let mut return_node = vec![NIL; r];
    for (node, &(_, is_return, ri)) in events.iter().enumerate() {
        if is_return {
            return_node[ri] = node;
        }
    }
    let head = 2 * r;
    let (mut next, mut prev) = linked(2 * r);
    // The optional list: calls only, by invocation; head at the end.
    let head_opt = optional.len();
    let (mut next_opt, mut prev_opt) = linked(optional.len());
    let same_before = same_before(ops, &optional);
    let only_when_absent = only_when_absent(ops, &optional);
    let mut placed_opt = vec![false; optional.len()];

    let mut memo: Memo = HashMap::new();
    let mut memo_bytes = 0_usize;
    let mut sets = OptionalSets::default();
    let mut set = sets.intern(Vec::new());
    let mut placed = Placed::new(r);
    let mut frames: Vec<Frame> = Vec::with_capacity(r);
    let mut state = State::Absent;
    let mut required_left = r;
    let mut deepest: Option<(usize, Vec<usize>)> = None;
    let mut cursor = Cursor::Required(next[head]);
    let mut steps_to_clock = 0_u32;

    loop {
        if required_left == 0 {
            return SearchEnd::Linearizable;
        }
        if steps_to_clock == 0 {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return SearchEnd::OutOfTime;
            }
            steps_to_clock = STEPS_PER_CLOCK_CHECK;
        }
        steps_to_clock -= 1;

        // The next candidate, or `None` to backtrack.
        let candidate = match cursor {
            Cursor::Required(node) => {
                assert!(
                    node != NIL,
                    "an unplaced required op's return ends the list walk"
                );
                let (time_us, is_return, ri) = events[node];
                if is_return {
                    if deepest.as_ref().is_none_or(|(_, p)| frames.len() > p.len()) {
                        let path = frames.iter().map(|f| match f.at {
                            Cursor::Required(node) => required[events[node].2],
                            Cursor::Optional { node, .. } => optional[node],
                        });
                        deepest = Some((required[ri], path.collect()));
                    }
                    cursor = Cursor::Optional {
                        node: next_opt[head_opt],
                        until_us: time_us,
                    };
                    continue;
                }
                Some(required[ri])
            }
            Cursor::Optional { node, until_us } => {
                if node == NIL || ops[optional[node]].start_us > until_us {
                    None
                } else {
                    Some(optional[node])
                }
            }
        };
        let advance = |c: Cursor, next: &[usize], next_opt: &[usize]| match c {
            Cursor::Required(node) => Cursor::Required(next[node]),
            Cursor::Optional { node, until_us } => Cursor::Optional {
                node: next_opt[node],
                until_us,
            },
        };

        let Some(i) = candidate else {
            let Some(frame) = frames.pop() else {
                let (stuck, placed) = deepest.unwrap_or((required[0], Vec::new()));
                return SearchEnd::Violation { stuck, placed };
            };
            state = frame.before;
            set = frame.set_before;
            match frame.at {
                Cursor::Required(node) => {
                    let ri = events[node].2;
                    placed.unplace(ri);
                    required_left += 1;
                    unlift(&mut next, &mut prev, &[return_node[ri], node]);
                }
                Cursor::Optional { node, .. } => {
                    placed_opt[node] = false;
                    unlift(&mut next_opt, &mut prev_opt, &[node]);
                }
            }
            cursor = advance(frame.at, &next, &next_opt);
            continue;
        };

        // Whether placing it here is possible and worth it.
        let Some(after) = ops[i].step.apply(state) else {
            cursor = advance(cursor, &next, &next_opt);
            continue;
        };
        let added = match cursor {
            Cursor::Required(node) => {
                placed.place(events[node].2);
                None
            }
            Cursor::Optional { node, .. } => {
                let useless = after == state
                    || (only_when_absent[node] && state != State::Absent)
                    || same_before[node].is_some_and(|b| !placed_opt[b]);
                if useless {
                    cursor = advance(cursor, &next, &next_opt);
                    continue;
                }
                Some(index_u32(node))
            }
        };
        let key = (
            index_u32(placed.k),
            placed.extras.clone().into_boxed_slice(),
            after,
        );
        let current = sets.get(set);
        let seen = memo.get(&key).is_some_and(|ids| {
            ids.iter()
                .any(|&id| is_subset_with(sets.get(id), current, added))
        });
        if seen {
            if let Cursor::Required(node) = cursor {
                placed.unplace(events[node].2);
            }
            cursor = advance(cursor, &next, &next_opt);
            continue;
        }

        // Place it.
        let set_before = set;
        if let Some(o) = added {
            let mut grown = current.to_vec();
            let at = grown.partition_point(|&x| x < o);
            grown.insert(at, o);
            set = sets.intern(grown);
        }
        if memo_bytes > memo_bytes_max {
            memo_bytes = memo_forget(&mut memo, placed.k, memo_bytes_max);
        }
        let extras_bytes = 4 * key.1.len();
        let ids = memo.entry(key).or_insert_with(|| {
            memo_bytes += MEMO_ENTRY_BYTES + extras_bytes;
            Vec::new()
        });
        ids.retain(|&id| !is_subset_with(sets.get(set), sets.get(id), None));
        ids.push(set);
        memo_bytes += 4;
        frames.push(Frame {
            at: cursor,
            before: state,
            set_before,
        });
        state = after;
        match cursor {
            Cursor::Required(node) => {
                required_left -= 1;
                lift(&mut next, &mut prev, &[node, return_node[events[node].2]]);
            }
            Cursor::Optional { node, .. } => {
                placed_opt[node] = true;
                lift(&mut next_opt, &mut prev_opt, &[node]);
            }
        }
        cursor = Cursor::Required(next[head]);
    }
}

/// Forgets the memo's configurations furthest behind `k` (the current first unplaced required
/// op) until it takes about half of `bytes_max`; returns its new size.
fn memo_forget(memo: &mut Memo, k: usize, bytes_max: usize) -> usize {
    let size = |key: &(u32, Box<[u32]>, State), ids: &Vec<u32>| {
        MEMO_ENTRY_BYTES + 4 * key.1.len() + 4 * ids.len()
    };
    let mut behind = k / 2;
    loop {
        let floor = index_u32(k - behind);
        memo.retain(|key, _| key.0 >= floor);
        let bytes: usize = memo.iter().map(|(key, ids)| size(key, ids)).sum();
        if bytes <= bytes_max / 2 || behind == 0 {
            if bytes > bytes_max / 2 {
                memo.clear();
                return 0;
            }
            return bytes;
        }
        behind /= 2;
    }
}

/// For each optional op, the previous optional op with the same step, if any. Such ops are
/// interchangeable, so only the earliest unplaced one of each kind is a candidate: any order
/// placing a later one could place the earlier one there instead.
fn same_before(ops: &[KeyOp], optional: &[usize]) -> Vec<Option<usize>> {
    let mut before = vec![None; optional.len()];
    let mut last_of_kind: HashMap<Step, usize> = HashMap::new();
    for (o, &i) in optional.iter().enumerate() {
        before[o] = last_of_kind.insert(ops[i].step, o);
    }
    before
}

/// For each optional op, whether placing it can only matter when the key is absent: it
/// stores a text value that nothing else stores and no operation returns. Placed over a
/// present value, such a write could be dropped from any linearization: nothing reads its
/// value, `Incr` cannot apply to text, and a declined `WriteIfAbsent` still declines on the
/// value it would have overwritten. Placing an optional op that changes nothing is never
/// needed either; the search skips both.
fn only_when_absent(ops: &[KeyOp], optional: &[usize]) -> Vec<bool> {
    let mut writers: HashMap<State, u32> = HashMap::new();
    let mut returned: HashSet<State> = HashSet::new();
    for op in ops {
        if let Some(v) = written(op.step) {
            *writers.entry(v).or_default() += 1;
        }
        match op.step {
            Step::Read(v) | Step::Swap { old: Some(v), .. } | Step::Incr { new: Some(v), .. } => {
                returned.insert(v);
            }
            _ => {}
        }
    }
    optional
        .iter()
        .map(|&i| {
            written(ops[i].step).is_some_and(|v| {
                matches!(v, State::Text(_)) && writers.get(&v) == Some(&1) && !returned.contains(&v)
            })
        })
        .collect()
}

/// The value a step stores, if it stores one.
fn written(step: Step) -> Option<State> {
    match step {
        Step::Write(v) | Step::Swap { value: v, .. } | Step::WriteIfAbsent { value: v, .. } => {
            Some(v)
        }
        _ => None,
    }
}

/// A list `head -> 0 -> 1 -> ... -> n-1`, with the head at index `n`.
fn linked(n: usize) -> (Vec<usize>, Vec<usize>) {
    let mut next: Vec<usize> = (1..=n).collect();
    if let Some(last) = next.last_mut() {
        *last = NIL;
    }
    next.push(if n == 0 { NIL } else { 0 });
    let mut prev: Vec<usize> = (0..n).map(|i| if i == 0 { n } else { i - 1 }).collect();
    prev.push(NIL);
    (next, prev)
}

/// Takes nodes out of a list, in the order given.
fn lift(next: &mut [usize], prev: &mut [usize], nodes: &[usize]) {
    for &node in nodes {
        next[prev[node]] = next[node];
        if next[node] != NIL {
            prev[next[node]] = prev[node];
        }
    }
}

/// Puts back nodes [`lift`] took out; give them in the reverse order.
fn unlift(next: &mut [usize], prev: &mut [usize], nodes: &[usize]) {
    for &node in nodes {
        next[prev[node]] = node;
        if next[node] != NIL {
            prev[next[node]] = node;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placed_keeps_a_prefix_and_sorted_extras() {
        let mut p = Placed::new(6);
        p.place(2);
        p.place(4);
        assert_eq!((p.k, p.extras.as_slice()), (0, &[2, 4][..]));
        p.place(0);
        p.place(1);
        assert_eq!((p.k, p.extras.as_slice()), (3, &[4][..]));
        p.unplace(1);
        assert_eq!((p.k, p.extras.as_slice()), (1, &[2, 4][..]));
        p.unplace(4);
        p.unplace(2);
        p.unplace(0);
        assert_eq!((p.k, p.extras.len()), (0, 0));
    }

    #[test]
    fn subsets_of_sorted_slices() {
        assert!(is_subset_with(&[], &[1], None));
        assert!(is_subset_with(&[1, 3], &[1, 2, 3], None));
        assert!(!is_subset_with(&[1, 4], &[1, 2, 3], None));
        assert!(is_subset_with(&[1, 4], &[1, 2, 3], Some(4)));
        assert!(is_subset_with(&[0, 4], &[4], Some(0)));
        assert!(!is_subset_with(&[2], &[], None));
    }
}
