//! What a checker concludes: [`Verdict`], its [`Status`] and the [`Example`]s that show it.

use crate::history::{Call, Op, OpId, Outcome, Value};
use serde::{Deserialize, Serialize};

/// The most examples a verdict carries; `violations` still counts every one.
pub const EXAMPLES_MAX: usize = 10;

/// Whether the history has the property a checker looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The property holds (or, for the measuring checkers, the measurement was taken).
    Pass,
    /// The property is violated; `examples` show where.
    Fail,
    /// The checker could not decide (it ran out of its time or memory budget). Never a guess.
    Unknown,
}

/// One checker's conclusion about a history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Which checker: `lost_writes`, `linearizability`, `read_your_writes`, `monotonic_reads`,
    /// `stale_reads` or `availability`.
    pub checker: String,
    /// What it concluded.
    pub status: Status,
    /// How many violations (or, for `stale_reads` and `availability`, findings) it counted.
    pub violations: u64,
    /// One line for a human.
    pub summary: String,
    /// Up to [`EXAMPLES_MAX`] violations, each with the operations that show it.
    pub examples: Vec<Example>,
}

/// One violation, with the operations a report should print as its excerpt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// What is wrong, in one line.
    pub what: String,
    /// The operations involved, in the order the explanation names them.
    pub ops: Vec<OpId>,
}

impl Verdict {
    /// A verdict that fails exactly when there are violations, keeping at most
    /// [`EXAMPLES_MAX`] of `examples`.
    pub(crate) fn from_violations(
        checker: &str,
        violations: u64,
        summary: String,
        mut examples: Vec<Example>,
    ) -> Verdict {
        examples.truncate(EXAMPLES_MAX);
        Verdict {
            checker: checker.to_owned(),
            status: if violations == 0 {
                Status::Pass
            } else {
                Status::Fail
            },
            violations,
            summary,
            examples,
        }
    }
}

/// Collects examples without keeping more than [`EXAMPLES_MAX`].
#[derive(Debug, Default)]
pub(crate) struct Examples {
    kept: Vec<Example>,
}

impl Examples {
    /// Keeps the example if there is room; `what` is only built when it is kept.
    pub(crate) fn push(&mut self, what: impl FnOnce() -> String, ops: Vec<OpId>) {
        if self.kept.len() < EXAMPLES_MAX {
            self.kept.push(Example { what: what(), ops });
        }
    }

    /// The examples kept.
    pub(crate) fn into_vec(self) -> Vec<Example> {
        self.kept
    }
}

/// An operation in a few words: `client 3 read "x"`, `client 1 write "y" (indeterminate)`.
pub(crate) fn describe_op(op: &Op) -> String {
    let value = |v: &Value| match v {
        Some(text) => format!("{text:?}"),
        None => "absent".to_owned(),
    };
    let result = match &op.outcome {
        Outcome::Ok { value: v } => match op.call {
            Call::Read => format!(" -> {}", value(v)),
            Call::Swap { .. } => format!(" replacing {}", value(v)),
            Call::Incr { .. } => format!(" -> {}", value(v)),
            Call::WriteIfAbsent { .. } if v.is_none() => " (declined)".to_owned(),
            _ => String::new(),
        },
        Outcome::Fail { .. } => " (failed)".to_owned(),
        Outcome::Indeterminate { .. } => " (indeterminate)".to_owned(),
    };
    let call = match &op.call {
        Call::Read => "read".to_owned(),
        Call::Write { value } => format!("write {value:?}"),
        Call::WriteIfAbsent { value } => format!("write-if-absent {value:?}"),
        Call::Swap { value } => format!("swap in {value:?}"),
        Call::Incr { by } => format!("incr by {by}"),
        Call::Delete => "delete".to_owned(),
    };
    format!("client {} {call}{result}", op.client)
}
