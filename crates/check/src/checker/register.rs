//! The sequential specification the linearizability search checks each key against: one
//! Redis string that may also be used as a counter.
//!
//! The state is "absent" or a value. `Read` returns it; `Write` replaces it; `WriteIfAbsent`
//! writes only when absent and returns `"1"` when it did; `Swap` replaces it and returns the
//! old state; `Incr` reads it as an `i64` (absent is 0; any other text is an error, so an
//! acknowledged `Incr` cannot have applied to it), adds, stores and returns the sum; `Delete`
//! makes it absent. Values that are integers in canonical form (`"-12"`, not `"+12"` or
//! `"012"`) are held as integers, so `Write "5"` then `Incr 1` then `Read` returns `"6"`, as in
//! Redis.

use crate::history::{Call, Op, Outcome, Value};
use std::collections::HashMap;

/// A state of the key, small enough to copy and hash in the search's memo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum State {
    /// The key is absent.
    Absent,
    /// A text value, by its index in the key's [`Interner`].
    Text(u32),
    /// An integer value (canonical text).
    Int(i64),
}

/// Gives each distinct text of one key a number.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    ids: HashMap<String, u32>,
}

impl Interner {
    /// The state a value denotes.
    pub(crate) fn state(&mut self, value: &Value) -> State {
        let Some(text) = value else {
            return State::Absent;
        };
        if let Ok(n) = text.parse::<i64>() {
            if n.to_string() == *text {
                return State::Int(n);
            }
        }
        let next = u32::try_from(self.ids.len()).unwrap_or(u32::MAX);
        State::Text(*self.ids.entry(text.clone()).or_insert(next))
    }
}

/// One operation as the model sees it, its expected output resolved to states; `None` where
/// the output is unknown (the operation is indeterminate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Step {
    /// Returns the state, which must equal this.
    Read(State),
    /// Stores the state.
    Write(State),
    /// Stores the value when absent; `wrote` says whether it must have.
    WriteIfAbsent {
        /// The value.
        value: State,
        /// Whether it wrote, when known.
        wrote: Option<bool>,
    },
    /// Stores the value and returns the old state, which must equal `old` when known.
    Swap {
        /// The value.
        value: State,
        /// The state it replaced, when known.
        old: Option<State>,
    },
    /// Adds to the integer state and returns the sum, which must equal `new` when known.
    Incr {
        /// The amount.
        by: i64,
        /// The sum returned, when known.
        new: Option<State>,
    },
    /// Makes the key absent.
    Delete,
}

impl Step {
    /// The step for `op`, or `None` when the op cannot have changed or observed anything the
    /// search needs: it failed, or it is a read whose result is unknown.
    pub(crate) fn of(op: &Op, interner: &mut Interner) -> Option<Step> {
        let output = match &op.outcome {
            Outcome::Fail { .. } => return None,
            Outcome::Indeterminate { .. } => None,
            Outcome::Ok { value } => Some(value),
        };
        Some(match &op.call {
            Call::Read => Step::Read(interner.state(output?)),
            Call::Write { value } => Step::Write(interner.state(&Some(value.clone()))),
            Call::WriteIfAbsent { value } => Step::WriteIfAbsent {
                value: interner.state(&Some(value.clone())),
                wrote: output.map(Option::is_some),
            },
            Call::Swap { value } => Step::Swap {
                value: interner.state(&Some(value.clone())),
                old: output.map(|o| interner.state(o)),
            },
            Call::Incr { by } => Step::Incr {
                by: *by,
                // An acknowledged INCR without a value was recorded without its reply: unknown.
                new: output.filter(|o| o.is_some()).map(|o| interner.state(o)),
            },
            Call::Delete => Step::Delete,
        })
    }

    /// The state after applying the step to `state`, or `None` when the step cannot apply
    /// there (its output would differ, or `Incr` meets text or overflows).
    pub(crate) fn apply(self, state: State) -> Option<State> {
        match self {
            Step::Read(expected) => (state == expected).then_some(state),
            Step::Write(value) => Some(value),
            Step::WriteIfAbsent { value, wrote } => {
                let writes = state == State::Absent;
                if wrote.is_some_and(|w| w != writes) {
                    return None;
                }
                Some(if writes { value } else { state })
            }
            Step::Swap { value, old } => {
                if old.is_some_and(|o| o != state) {
                    return None;
                }
                Some(value)
            }
            Step::Incr { by, new } => {
                let current = match state {
                    State::Absent => 0,
                    State::Int(n) => n,
                    State::Text(_) => return None,
                };
                let sum = State::Int(current.checked_add(by)?);
                if new.is_some_and(|n| n != sum) {
                    return None;
                }
                Some(sum)
            }
            Step::Delete => Some(State::Absent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Some(s.to_owned())
    }

    #[test]
    fn canonical_integers_are_integers_and_other_text_is_text() {
        let mut i = Interner::default();
        assert_eq!(i.state(&text("-12")), State::Int(-12));
        assert_eq!(i.state(&text("0")), State::Int(0));
        assert_eq!(i.state(&None), State::Absent);
        let plus = i.state(&text("+12"));
        let zero_led = i.state(&text("012"));
        assert!(matches!(plus, State::Text(_)), "{plus:?}");
        assert!(matches!(zero_led, State::Text(_)), "{zero_led:?}");
        assert_ne!(plus, zero_led);
        assert_eq!(
            i.state(&text("+12")),
            plus,
            "the same text gets the same number"
        );
    }

    #[test]
    fn steps_follow_redis_string_semantics() {
        let mut i = Interner::default();
        let a = i.state(&text("a"));
        let b = i.state(&text("b"));
        let cases = [
            (
                Step::Read(State::Absent),
                State::Absent,
                Some(State::Absent),
            ),
            (Step::Read(a), State::Absent, None),
            (Step::Write(a), b, Some(a)),
            (
                Step::WriteIfAbsent {
                    value: a,
                    wrote: Some(true),
                },
                State::Absent,
                Some(a),
            ),
            (
                Step::WriteIfAbsent {
                    value: a,
                    wrote: Some(true),
                },
                b,
                None,
            ),
            (
                Step::WriteIfAbsent {
                    value: a,
                    wrote: Some(false),
                },
                b,
                Some(b),
            ),
            (
                Step::WriteIfAbsent {
                    value: a,
                    wrote: None,
                },
                b,
                Some(b),
            ),
            (
                Step::WriteIfAbsent {
                    value: a,
                    wrote: None,
                },
                State::Absent,
                Some(a),
            ),
            (
                Step::Swap {
                    value: a,
                    old: Some(b),
                },
                b,
                Some(a),
            ),
            (
                Step::Swap {
                    value: a,
                    old: Some(b),
                },
                State::Absent,
                None,
            ),
            (
                Step::Swap {
                    value: a,
                    old: None,
                },
                State::Absent,
                Some(a),
            ),
            (
                Step::Incr {
                    by: 2,
                    new: Some(State::Int(2)),
                },
                State::Absent,
                Some(State::Int(2)),
            ),
            (
                Step::Incr {
                    by: 2,
                    new: Some(State::Int(3)),
                },
                State::Absent,
                None,
            ),
            (
                Step::Incr { by: -1, new: None },
                State::Int(5),
                Some(State::Int(4)),
            ),
            (Step::Incr { by: 1, new: None }, a, None),
            (Step::Incr { by: 1, new: None }, State::Int(i64::MAX), None),
            (Step::Delete, a, Some(State::Absent)),
        ];
        for (step, before, after) in cases {
            assert_eq!(step.apply(before), after, "{step:?} on {before:?}");
        }
    }
}
