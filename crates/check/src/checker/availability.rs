//! Availability: how many operations succeeded, and when none did.

use super::verdict::{Examples, Status, Verdict};
use crate::history::{History, OpId};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How available the cluster was during a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Availability {
    /// Acknowledged operations over all operations (1 when there were none).
    pub ok_fraction: f64,
    /// Every unavailability window longer than the minimum asked for, in time order.
    pub windows: Vec<Window>,
}

/// A span of the run in which operations were attempted and none succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// When it began, µs since the run started: the last success before it, or the first
    /// attempt after that success if the cluster was idle in between.
    pub start_us: u64,
    /// When it ended: the next success, or the end of the last attempt when none came.
    pub end_us: u64,
}

impl Window {
    /// How long it lasted, in µs.
    #[must_use]
    pub fn length_us(&self) -> u64 {
        self.end_us.saturating_sub(self.start_us)
    }
}

/// Measures availability: the fraction of operations acknowledged, and the unavailability
/// windows longer than `min_window`.
///
/// Successes are the replies of acknowledged operations. Between two consecutive successes
/// (and before the first and after the last), if some operation was in flight, the window runs
/// from the earlier success (or, when nothing was in flight then, from the first invocation
/// after it) to the later success (or, after the last success, to the last reply or
/// give-up). A failover therefore shows as one window from the last write the old leader
/// acknowledged to the first the new one did, however often clients retried in between.
///
/// The status is always `Pass`; `violations` counts the windows, and each has an example with
/// the successes around it.
#[must_use]
pub fn availability(h: &History, min_window: Duration) -> (Verdict, Availability) {
    let ops = &h.ops;
    let ok = ops.iter().filter(|op| op.is_ok()).count();
    let ok_fraction = if ops.is_empty() {
        1.0
    } else {
        ok as f64 / ops.len() as f64
    };
    let mut successes: Vec<(u64, OpId)> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| op.is_ok())
        .map(|(id, op)| (op.end_us, id))
        .collect();
    successes.sort_unstable();
    // Invocations in order, and the latest reply among each prefix of them.
    let mut starts: Vec<(u64, u64)> = ops.iter().map(|op| (op.start_us, op.end_us)).collect();
    starts.sort_unstable();
    let mut latest_end = Vec::with_capacity(starts.len());
    let mut latest = 0;
    for &(_, end_us) in &starts {
        latest = latest.max(end_us);
        latest_end.push(latest);
    }
    let min_us = u64::try_from(min_window.as_micros()).unwrap_or(u64::MAX);
    let mut windows = Vec::new();
    let mut examples = Examples::default();
    let mut previous: Option<(u64, OpId)> = None;
    for next in successes
        .iter()
        .copied()
        .map(Some)
        .chain(std::iter::once(None))
    {
        let after_us = previous.map(|(t, _)| t);
        // In flight at the earlier success: invoked at or before it, replied after it.
        let in_flight = after_us.is_some_and(|t| {
            let invoked = starts.partition_point(|&(s, _)| s <= t);
            invoked > 0 && latest_end[invoked - 1] > t
        });
        let start_us = match after_us {
            Some(t) if in_flight => Some(t),
            _ => {
                let first = after_us.map_or(0, |t| starts.partition_point(|&(s, _)| s <= t));
                starts.get(first).map(|&(s, _)| s)
            }
        };
        let end_us = match next {
            Some((t, _)) => Some(t),
            None => latest_end
                .last()
                .copied()
                .filter(|&e| after_us.is_none_or(|t| e > t)),
        };
        if let (Some(start_us), Some(end_us)) = (start_us, end_us) {
            let window = Window { start_us, end_us };
            if start_us < end_us && window.length_us() > min_us {
                windows.push(window);
                let around: Vec<OpId> = previous
                    .iter()
                    .chain(next.iter())
                    .map(|&(_, id)| id)
                    .collect();
                examples.push(
                    || {
                        format!(
                            "unavailable for {} ms, from {} ms to {} ms{}",
                            window.length_us() as f64 / 1000.0,
                            start_us as f64 / 1000.0,
                            end_us as f64 / 1000.0,
                            match (previous, next) {
                                (Some(_), Some(_)) => ": between these two successes",
                                (Some(_), None) => ": after this success, until the run ended",
                                (None, Some(_)) => ": from the start until this success",
                                (None, None) => ": nothing succeeded",
                            }
                        )
                    },
                    around,
                );
            }
        }
        previous = next;
    }
    let longest_ms = windows.iter().map(Window::length_us).max().unwrap_or(0) as f64 / 1000.0;
    let summary = format!(
        "{:.2}% of {} operations succeeded; {} unavailability windows longer than {min_window:?}, \
         the longest {longest_ms} ms",
        ok_fraction * 100.0,
        ops.len(),
        windows.len(),
    );
    let mut verdict = Verdict::from_violations(
        "availability",
        windows.len() as u64,
        summary,
        examples.into_vec(),
    );
    verdict.status = Status::Pass;
    (
        verdict,
        Availability {
            ok_fraction,
            windows,
        },
    )
}
