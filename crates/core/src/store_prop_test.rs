//! Property tests for [`Store`]:
//!
//! - replication determinism: random client commands planned on a leader at advancing wall
//!   times, with the log applied on a follower, leave both in identical states, and a snapshot
//!   of that state loads back to the same state;
//! - robustness: `execute` never panics, whatever the arguments;
//! - a reference model of Redis's string and expiry semantics gives the same replies;
//! - SCAN returns every key present throughout an iteration, whatever writes interleave.

use crate::store_test::{args, key, T0};
use crate::{Execution, Reply, Store};
use bytes::Bytes;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Arguments that exercise option parsing, numbers at the edges, absolute times near `T0`,
/// keys that collide, and patterns. No number here lies between 1e6 and 512 MiB, so SETRANGE
/// never builds a huge value.
const WORDS: &[&str] = &[
    "a",
    "b",
    "c",
    "",
    "1",
    "-1",
    "0",
    "7",
    "100",
    "1500",
    "x",
    "abc\0",
    "EX",
    "PX",
    "EXAT",
    "PXAT",
    "nx",
    "XX",
    "GT",
    "lt",
    "KEEPTTL",
    "GET",
    "PERSIST",
    "MATCH",
    "COUNT",
    "TYPE",
    "string",
    "*",
    "a*",
    "[a-b]",
    "SYNC",
    "ASYNC",
    "9223372036854775807",
    "-9223372036854775808",
    "99999999999999999999",
    "1700000001",
    "1700000001000",
];

fn command_name() -> impl Strategy<Value = String> {
    let mut names: Vec<&'static str> = Store::command_specs().iter().map(|s| s.name).collect();
    names.extend(["foo", ""]);
    (prop::sample::select(names), any::<bool>()).prop_map(|(name, upper)| {
        if upper {
            name.to_uppercase()
        } else {
            name.to_owned()
        }
    })
}

fn word() -> impl Strategy<Value = Bytes> {
    prop::sample::select(WORDS).prop_map(|w| Bytes::copy_from_slice(w.as_bytes()))
}

/// A client command from the vocabulary, with the time (ms) that passes before it.
fn timed_command() -> impl Strategy<Value = (Vec<Bytes>, u64)> {
    let command = (command_name(), prop::collection::vec(word(), 0..6)).prop_map(|(name, rest)| {
        let mut args = vec![Bytes::from(name)];
        args.extend(rest);
        args
    });
    (command, prop_oneof![Just(0u64), 0..2_000u64])
}

/// Plans on `leader` at `now_ms` and applies; returns the log commands.
fn run(leader: &mut Store, args: &[Bytes], now_ms: u64) -> (Reply, Vec<crate::Command>) {
    match leader.execute(args, now_ms) {
        Execution::Read(reply) => (reply, Vec::new()),
        Execution::Write { commands, reply } => {
            assert!(!commands.is_empty(), "a write logs something: {args:?}");
            assert!(
                !matches!(reply, Reply::Error(_)),
                "an error logs nothing: {args:?}"
            );
            for c in &commands {
                leader.apply(c);
            }
            (reply, commands)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Applying the leader's log on a follower, at whatever later time, gives the same state.
    #[test]
    fn follower_reaches_the_leaders_state(script in prop::collection::vec(timed_command(), 1..60)) {
        let mut leader = Store::new();
        let mut follower = Store::new();
        let mut now = T0;
        for (args, delay) in &script {
            now += delay;
            let before = leader.clone();
            let (_, commands) = run(&mut leader, args, now);
            leader.check_invariants();
            if commands.is_empty() {
                prop_assert_eq!(&leader, &before, "a read changes nothing: {:?}", args);
            }
            for c in &commands {
                follower.apply(c);
                let decoded = crate::Command::decode(&c.encode()).ok();
                prop_assert_eq!(decoded.as_ref(), Some(c));
            }
            follower.check_invariants();
        }
        prop_assert_eq!(&follower, &leader);
        let mut restored = Store::new();
        for chunk in leader.snapshot_chunks(4) {
            prop_assert!(restored.load_snapshot_chunk(&chunk).is_ok());
        }
        restored.check_invariants();
        prop_assert_eq!(&restored, &leader);
    }

    /// `execute` answers any arguments without panicking, and what it plans applies cleanly.
    #[test]
    fn execute_never_panics(
        name in prop_oneof![command_name().prop_map(Bytes::from), any::<Vec<u8>>().prop_map(Bytes::from)],
        rest in prop::collection::vec(
            prop_oneof![word(), prop::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from)],
            0..8,
        ),
        now in prop_oneof![Just(0u64), Just(T0), Just(u64::MAX), any::<u64>()],
    ) {
        let mut store = Store::new();
        store.load_entry(key("a"), key("1"), None);
        store.load_entry(key("b"), key("text"), Some(T0 + 1_000));
        store.load_entry(key("c"), key("-5"), Some(T0 - 1_000));
        store.load_entry(key(""), key(""), Some(u64::MAX));
        let mut all = vec![name];
        all.extend(rest);
        for len in 0..=all.len() {
            let args = all.get(..len).unwrap_or_default();
            let mut copy = store.clone();
            run(&mut copy, args, now);
            copy.check_invariants();
        }
    }
}

/// A client operation of the reference model.
#[derive(Clone, Debug)]
enum Op {
    Set(u8, u8, Option<u64>),
    SetKeepTtl(u8, u8),
    Get(u8),
    Del(u8),
    Append(u8, u8),
    Incr(u8),
    PExpire(u8, i64),
    Persist(u8),
    Pttl(u8),
    Exists(u8),
    Strlen(u8),
}

const MODEL_KEYS: [&str; 3] = ["k0", "k1", "k2"];
const MODEL_VALUES: [&str; 4] = ["1", "-3", "x", ""];

fn op() -> impl Strategy<Value = Op> {
    let k = 0..3u8;
    let v = 0..4u8;
    prop_oneof![
        (k.clone(), v.clone(), prop::option::of(1..3_000u64))
            .prop_map(|(k, v, px)| Op::Set(k, v, px)),
        (k.clone(), v.clone()).prop_map(|(k, v)| Op::SetKeepTtl(k, v)),
        k.clone().prop_map(Op::Get),
        k.clone().prop_map(Op::Del),
        (k.clone(), v).prop_map(|(k, v)| Op::Append(k, v)),
        k.clone().prop_map(Op::Incr),
        (k.clone(), -100..3_000i64).prop_map(|(k, ms)| Op::PExpire(k, ms)),
        k.clone().prop_map(Op::Persist),
        k.clone().prop_map(Op::Pttl),
        k.clone().prop_map(Op::Exists),
        k.prop_map(Op::Strlen),
    ]
}

fn name(k: u8) -> &'static str {
    MODEL_KEYS.get(usize::from(k)).copied().unwrap_or("k0")
}

fn value(v: u8) -> &'static str {
    MODEL_VALUES.get(usize::from(v)).copied().unwrap_or("")
}

impl Op {
    fn args(&self) -> Vec<Bytes> {
        match self {
            Op::Set(k, v, None) => args(&["SET", name(*k), value(*v)]),
            Op::Set(k, v, Some(px)) => args(&["SET", name(*k), value(*v), "PX", &px.to_string()]),
            Op::SetKeepTtl(k, v) => args(&["SET", name(*k), value(*v), "KEEPTTL"]),
            Op::Get(k) => args(&["GET", name(*k)]),
            Op::Del(k) => args(&["DEL", name(*k)]),
            Op::Append(k, v) => args(&["APPEND", name(*k), value(*v)]),
            Op::Incr(k) => args(&["INCR", name(*k)]),
            Op::PExpire(k, ms) => args(&["PEXPIRE", name(*k), &ms.to_string()]),
            Op::Persist(k) => args(&["PERSIST", name(*k)]),
            Op::Pttl(k) => args(&["PTTL", name(*k)]),
            Op::Exists(k) => args(&["EXISTS", name(*k)]),
            Op::Strlen(k) => args(&["STRLEN", name(*k)]),
        }
    }
}

/// Redis's semantics for these operations, written as plainly as possible: a map of key to
/// (value, absolute expiry), where an entry past its expiry counts as absent.
#[derive(Default)]
struct Model {
    map: BTreeMap<&'static str, (Vec<u8>, Option<u64>)>,
}

impl Model {
    fn live(&mut self, k: &'static str, now: u64) -> Option<&mut (Vec<u8>, Option<u64>)> {
        if self
            .map
            .get(k)
            .is_some_and(|(_, at)| at.is_some_and(|at| at <= now))
        {
            self.map.remove(k);
        }
        self.map.get_mut(k)
    }

    fn run(&mut self, op: &Op, now: u64) -> Reply {
        match *op {
            Op::Set(k, v, px) => {
                self.map
                    .insert(name(k), (value(v).into(), px.map(|px| now + px)));
                Reply::Ok
            }
            Op::SetKeepTtl(k, v) => {
                let ttl = self.live(name(k), now).and_then(|e| e.1);
                self.map.insert(name(k), (value(v).into(), ttl));
                Reply::Ok
            }
            Op::Get(k) => self
                .live(name(k), now)
                .map_or(Reply::Nil, |e| Reply::Bulk(e.0.clone().into())),
            Op::Del(k) => {
                let found = self.live(name(k), now).is_some();
                self.map.remove(name(k));
                Reply::Integer(i64::from(found))
            }
            Op::Append(k, v) => match self.live(name(k), now) {
                Some(e) => {
                    e.0.extend_from_slice(value(v).as_bytes());
                    Reply::Integer(e.0.len() as i64)
                }
                None => {
                    self.map.insert(name(k), (value(v).into(), None));
                    Reply::Integer(value(v).len() as i64)
                }
            },
            Op::Incr(k) => {
                let entry = self.live(name(k), now);
                let current = match &entry {
                    // Redis takes only the canonical decimal form: no `+`, no leading zeros.
                    Some(e) => std::str::from_utf8(&e.0)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok().filter(|n| n.to_string() == s)),
                    None => Some(0),
                };
                let Some(n) = current else {
                    return Reply::error("ERR value is not an integer or out of range");
                };
                let ttl = entry.and_then(|e| e.1);
                self.map.insert(name(k), ((n + 1).to_string().into(), ttl));
                Reply::Integer(n + 1)
            }
            Op::PExpire(k, ms) => {
                let Some(e) = self.live(name(k), now) else {
                    return Reply::Integer(0);
                };
                if ms <= 0 {
                    self.map.remove(name(k));
                } else {
                    e.1 = Some(now + ms.unsigned_abs());
                }
                Reply::Integer(1)
            }
            Op::Persist(k) => match self.live(name(k), now) {
                Some(e) if e.1.is_some() => {
                    e.1 = None;
                    Reply::Integer(1)
                }
                _ => Reply::Integer(0),
            },
            Op::Pttl(k) => match self.live(name(k), now) {
                None => Reply::Integer(-2),
                Some((_, None)) => Reply::Integer(-1),
                Some((_, Some(at))) => Reply::Integer((*at - now) as i64),
            },
            Op::Exists(k) => Reply::Integer(i64::from(self.live(name(k), now).is_some())),
            Op::Strlen(k) => {
                Reply::Integer(self.live(name(k), now).map_or(0, |e| e.0.len() as i64))
            }
        }
    }
}

/// One step of SCAN churn: what happens between two SCAN calls.
#[derive(Clone, Debug)]
enum Churn {
    Insert(u16),
    Delete(u16),
    OverwriteStable(u16),
    ExpireOther(u16),
}

fn churn() -> impl Strategy<Value = Churn> {
    prop_oneof![
        any::<u16>().prop_map(Churn::Insert),
        any::<u16>().prop_map(Churn::Delete),
        any::<u16>().prop_map(Churn::OverwriteStable),
        any::<u16>().prop_map(Churn::ExpireOther),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The store agrees with the reference model on every reply, at advancing times.
    #[test]
    fn store_matches_reference_model(
        steps in prop::collection::vec((op(), prop_oneof![Just(0u64), 0..1_500u64]), 1..80),
    ) {
        let mut store = Store::new();
        let mut model = Model::default();
        let mut now = T0;
        for (op, delay) in &steps {
            now += delay;
            let (reply, _) = run(&mut store, &op.args(), now);
            store.check_invariants();
            prop_assert_eq!(reply, model.run(op, now), "{:?} at +{}", op, now - T0);
        }
        for k in 0..3 {
            prop_assert_eq!(run(&mut store, &Op::Get(k).args(), now).0, model.run(&Op::Get(k), now));
            prop_assert_eq!(run(&mut store, &Op::Pttl(k).args(), now).0, model.run(&Op::Pttl(k), now));
        }
    }

    /// SCAN's guarantee under arbitrary interleaved writes: every key present from the first
    /// call to the last is returned.
    #[test]
    fn scan_returns_keys_present_throughout(
        stable_count in 1..80usize,
        count in 1..20usize,
        churn in prop::collection::vec(prop::collection::vec(churn(), 0..10), 0..40),
    ) {
        let mut store = Store::new();
        let now = T0;
        for i in 0..stable_count {
            run(&mut store, &args(&["SET", &format!("s{i}"), "v"]), now);
        }
        let count_arg = count.to_string();
        let mut seen = BTreeSet::new();
        let mut cursor = 0u64;
        for call in 0..100_000usize {
            let reply = run(&mut store, &args(&["SCAN", &cursor.to_string(), "COUNT", &count_arg]), now).0;
            let Reply::Array(parts) = reply else { panic!("SCAN replies with an array") };
            let [Reply::Bulk(next), Reply::Array(keys)] = parts.as_slice() else { panic!("[cursor, keys]") };
            prop_assert!(keys.len() <= count, "COUNT bounds the reply without collisions");
            seen.extend(keys.iter().map(|k| format!("{k:?}")));
            cursor = std::str::from_utf8(next).ok().and_then(|c| c.parse().ok()).unwrap_or(0);
            if cursor == 0 {
                break;
            }
            for step in churn.get(call).map(Vec::as_slice).unwrap_or_default() {
                let parts = match step {
                    Churn::Insert(n) => vec!["SET".to_owned(), format!("o{n}"), "v".to_owned()],
                    Churn::Delete(n) => vec!["DEL".to_owned(), format!("o{n}")],
                    Churn::OverwriteStable(n) => {
                        vec!["SET".to_owned(), format!("s{}", usize::from(*n) % stable_count), "w".to_owned()]
                    }
                    Churn::ExpireOther(n) => vec!["PEXPIRE".to_owned(), format!("o{n}"), "-1".to_owned()],
                };
                let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
                run(&mut store, &args(&parts), now);
            }
        }
        prop_assert_eq!(cursor, 0, "the iteration ended");
        for i in 0..stable_count {
            let stable = format!("{:?}", Reply::Bulk(key(&format!("s{i}"))));
            prop_assert!(seen.contains(&stable), "s{} returned", i);
        }
    }
}
