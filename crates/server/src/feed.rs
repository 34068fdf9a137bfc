//! The replication feed: the newest log records, kept in memory for the links that ship them
//! to followers, and a signal that tells those links when there is more.
//!
//! The node pushes each record as it appends it (before it is durable here: followers persist
//! in parallel with the local fsync). Links read from the feed while their position is in it,
//! and from the log files (a [`LogCursor`](replikv_storage::LogCursor)) when they are further
//! behind.

use replikv_core::{Epoch, LogPosition, Lsn};
use replikv_storage::LogRecord;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::watch;

/// What links watch: the log's end and the figures they pass on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedState {
    /// The last record pushed.
    pub last: LogPosition,
    /// The last LSN written to the OS here: what a reader of the log files may read.
    pub written: Lsn,
    /// The commit LSN (`async` rule), passed to followers.
    pub commit: Lsn,
    /// The epoch this node sends with.
    pub epoch: Epoch,
    /// Bumped when the log is reset from a snapshot: links from before must start over.
    pub generation: u64,
}

struct Tail {
    records: VecDeque<LogRecord>,
    bytes: usize,
}

/// The feed: a bounded tail of the log, and its state.
pub struct Feed {
    tail: Mutex<Tail>,
    bytes_max: usize,
    state: watch::Sender<FeedState>,
}

impl Feed {
    /// An empty feed holding at most `bytes_max` of payloads, at `state`.
    pub fn new(bytes_max: usize, state: FeedState) -> Feed {
        Feed {
            tail: Mutex::new(Tail {
                records: VecDeque::new(),
                bytes: 0,
            }),
            bytes_max,
            state: watch::Sender::new(state),
        }
    }

    /// Adds records at the end, dropping the oldest past the byte bound.
    pub fn push(&self, records: &[LogRecord]) {
        let Ok(mut tail) = self.tail.lock() else {
            return;
        };
        for r in records {
            tail.bytes += r.payload.len() + 32;
            tail.records.push_back(r.clone());
        }
        while tail.bytes > self.bytes_max && tail.records.len() > 1 {
            if let Some(old) = tail.records.pop_front() {
                tail.bytes -= old.payload.len() + 32;
            }
        }
    }

    /// Drops everything (the log was reset).
    pub fn clear(&self) {
        if let Ok(mut tail) = self.tail.lock() {
            tail.records.clear();
            tail.bytes = 0;
        }
    }

    /// Records from `from` on, at most `bytes_max` of payload (at least one if any), when
    /// `from` is in the feed; `None` when it is older than the feed holds.
    pub fn read(&self, from: Lsn, bytes_max: usize) -> Option<Vec<LogRecord>> {
        let tail = self.tail.lock().ok()?;
        let first = tail.records.front().map(|r| r.pos.lsn)?;
        if from < first {
            return None;
        }
        let start = (from.0 - first.0) as usize;
        let mut out = Vec::new();
        let mut bytes = 0;
        for r in tail.records.iter().skip(start) {
            if bytes >= bytes_max {
                break;
            }
            bytes += r.payload.len();
            out.push(r.clone());
        }
        Some(out)
    }

    /// The epoch of the record at `lsn`, if the feed holds it.
    pub fn epoch_at(&self, lsn: Lsn) -> Option<Epoch> {
        let tail = self.tail.lock().ok()?;
        let first = tail.records.front().map(|r| r.pos.lsn)?;
        let i = usize::try_from(lsn.0.checked_sub(first.0)?).ok()?;
        tail.records.get(i).map(|r| r.pos.epoch)
    }

    /// Publishes a new state when it changed.
    pub fn publish(&self, state: FeedState) {
        self.state.send_if_modified(|s| {
            if *s == state {
                false
            } else {
                *s = state;
                true
            }
        });
    }

    /// The current state.
    pub fn state(&self) -> FeedState {
        *self.state.borrow()
    }

    /// A receiver that wakes on every change.
    pub fn subscribe(&self) -> watch::Receiver<FeedState> {
        self.state.subscribe()
    }
}
