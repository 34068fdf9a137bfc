//! Replies held until their acknowledgement mode's commit LSN covers them.

use super::ack::AckMode;
use crate::position::Lsn;
use std::collections::{BTreeMap, VecDeque};

/// A held item: released once the commit LSN of its mode reaches `lsn`, or expired at
/// `deadline_ms`.
#[derive(Debug)]
struct Waiting<T> {
    lsn: Lsn,
    deadline_ms: u64,
    item: T,
}

/// Items (replies) held per acknowledgement mode, each queue in LSN order.
///
/// Within one mode items are released in the order they were held, so one connection's
/// replies, which always use one mode at a time and are held in order, come back in order.
#[derive(Debug)]
pub struct Pending<T> {
    queues: BTreeMap<AckMode, VecDeque<Waiting<T>>>,
    len: usize,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Pending {
            queues: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<T> Pending<T> {
    /// Holds `item` until `mode` commits `lsn`, or until `deadline_ms` (`u64::MAX`: never).
    ///
    /// # Panics
    /// If `lsn` is lower than the last one held for `mode`: holds must come in log order.
    pub fn hold(&mut self, mode: AckMode, lsn: Lsn, deadline_ms: u64, item: T) {
        let queue = self.queues.entry(mode).or_default();
        assert!(
            queue.back().is_none_or(|w| w.lsn <= lsn),
            "holds come in LSN order"
        );
        queue.push_back(Waiting {
            lsn,
            deadline_ms,
            item,
        });
        self.len += 1;
    }

    /// Items held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes and returns every item whose mode's commit LSN (from `commit`) covers it.
    pub fn release(&mut self, mut commit: impl FnMut(AckMode) -> Lsn) -> Vec<T> {
        let mut out = Vec::new();
        for (mode, queue) in &mut self.queues {
            if queue.is_empty() {
                continue;
            }
            let c = commit(*mode);
            while queue.front().is_some_and(|w| w.lsn <= c) {
                if let Some(w) = queue.pop_front() {
                    out.push(w.item);
                }
            }
        }
        self.len -= out.len();
        out
    }

    /// Removes and returns the items whose deadline has passed at `now_ms`, with their LSN.
    /// Items behind one that has not expired in the same queue wait their turn, so a
    /// connection's replies keep their order.
    pub fn expire(&mut self, now_ms: u64) -> Vec<(Lsn, T)> {
        let mut out = Vec::new();
        for queue in self.queues.values_mut() {
            while queue.front().is_some_and(|w| w.deadline_ms <= now_ms) {
                if let Some(w) = queue.pop_front() {
                    out.push((w.lsn, w.item));
                }
            }
        }
        self.len -= out.len();
        out
    }

    /// Removes and returns everything held (the node is stopping or stepping down).
    pub fn drain(&mut self) -> Vec<(Lsn, T)> {
        let mut out = Vec::with_capacity(self.len);
        for queue in self.queues.values_mut() {
            out.extend(queue.drain(..).map(|w| (w.lsn, w.item)));
        }
        self.len = 0;
        out
    }

    /// The lowest LSN held in `mode`, if any.
    #[must_use]
    pub fn first_lsn(&self, mode: AckMode) -> Option<Lsn> {
        self.queues
            .get(&mode)
            .and_then(|q| q.front())
            .map(|w| w.lsn)
    }
}
