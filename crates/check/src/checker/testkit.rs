//! Hand-written histories for the checkers' tests. Times are in milliseconds.

use crate::history::{Call, FaultEvent, History, Op, OpId, Outcome};

/// Builds a history one operation at a time; ids are the order of the calls.
#[derive(Debug, Default)]
pub(crate) struct Builder {
    pub(crate) h: History,
}

pub(crate) fn ok(value: Option<&str>) -> Outcome {
    Outcome::Ok {
        value: value.map(str::to_owned),
    }
}

pub(crate) fn indeterminate() -> Outcome {
    Outcome::Indeterminate {
        error: "timeout".to_owned(),
    }
}

pub(crate) fn fail() -> Outcome {
    Outcome::Fail {
        error: "READONLY".to_owned(),
    }
}

pub(crate) fn write(value: &str) -> Call {
    Call::Write {
        value: value.to_owned(),
    }
}

impl Builder {
    pub(crate) fn new() -> Builder {
        Builder::default()
    }

    /// Any operation, from `start_ms` to `end_ms`.
    pub(crate) fn op(
        &mut self,
        client: u32,
        key: &str,
        call: Call,
        outcome: Outcome,
        start_ms: u64,
        end_ms: u64,
    ) -> OpId {
        self.h.ops.push(Op {
            client,
            node: "n1".to_owned(),
            key: key.to_owned(),
            call,
            start_us: start_ms * 1000,
            end_us: end_ms * 1000,
            outcome,
            token: None,
        });
        self.h.ops.len() - 1
    }

    /// An acknowledged write.
    pub(crate) fn write(&mut self, c: u32, key: &str, v: &str, s: u64, e: u64) -> OpId {
        self.op(c, key, write(v), ok(None), s, e)
    }

    /// An acknowledged read.
    pub(crate) fn read(&mut self, c: u32, key: &str, v: Option<&str>, s: u64, e: u64) -> OpId {
        self.op(c, key, Call::Read, ok(v), s, e)
    }

    /// An acknowledged increment that returned `result`.
    pub(crate) fn incr(&mut self, c: u32, key: &str, by: i64, result: i64, s: u64, e: u64) -> OpId {
        let result = result.to_string();
        self.op(c, key, Call::Incr { by }, ok(Some(&result)), s, e)
    }

    /// Gives an operation a consistency token.
    pub(crate) fn token(&mut self, id: OpId, epoch: u64, lsn: u64) {
        self.h.ops[id].token = Some(format!("{epoch}:{lsn}"));
    }

    /// Says which node an operation was sent to (every operation goes to `n1` otherwise).
    pub(crate) fn on(&mut self, id: OpId, node: &str) {
        self.h.ops[id].node = node.to_owned();
    }

    /// Records a fault event at `at_ms`; `leader` says the node led when a fault started.
    pub(crate) fn fault(&mut self, at_ms: u64, kind: &str, node: &str, leader: bool) {
        self.h.faults.push(FaultEvent {
            at_us: at_ms * 1000,
            kind: kind.to_owned(),
            nodes: vec![node.to_owned()],
            leader,
        });
    }

    /// Records `node`'s final state.
    pub(crate) fn final_read(&mut self, node: &str, pairs: &[(&str, Option<&str>)]) {
        let pairs = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
            .collect();
        self.h.final_reads.push((node.to_owned(), pairs));
    }
}

/// SplitMix64, for generated histories.
#[derive(Debug)]
pub(crate) struct Mix(pub(crate) u64);

impl Mix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), close enough for tests.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Prints a phase line: tests read as phases (STYLE.md section 5).
pub(crate) fn phase(why: &str) {
    eprintln!("phase: {why}");
}
