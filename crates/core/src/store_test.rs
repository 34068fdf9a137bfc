//! Per-command transition tests for [`Store`]: the exact plan (log commands) and Redis 7's
//! reply or error text for each case, plus snapshot and expiry-index checks.
//!
//! The harness [`Db`] plans a command at a simulated wall time, applies the planned commands
//! the way the server does, and checks the store's invariants after every command.

use crate::{Command, Execution, Expiry, KeyspaceStats, Reply, Store};
use bytes::Bytes;

/// A fixed Unix time (ms) the tests start at.
pub(crate) const T0: u64 = 1_700_000_000_000;

pub(crate) fn args(parts: &[&str]) -> Vec<Bytes> {
    parts
        .iter()
        .map(|p| Bytes::copy_from_slice(p.as_bytes()))
        .collect()
}

pub(crate) fn bulk(s: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

pub(crate) fn int(n: i64) -> Reply {
    Reply::Integer(n)
}

pub(crate) fn err(text: &str) -> Reply {
    Reply::error(text)
}

pub(crate) fn key(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A store with a simulated clock.
pub(crate) struct Db {
    pub(crate) store: Store,
    pub(crate) now_ms: u64,
}

impl Db {
    pub(crate) fn new() -> Db {
        Db {
            store: Store::new(),
            now_ms: T0,
        }
    }

    /// Plans without applying.
    pub(crate) fn plan(&self, parts: &[&str]) -> Execution {
        self.store.execute(&args(parts), self.now_ms)
    }

    /// Plans, applies the commands, checks invariants and returns the reply.
    pub(crate) fn run(&mut self, parts: &[&str]) -> Reply {
        self.run_args(&args(parts))
    }

    pub(crate) fn run_args(&mut self, args: &[Bytes]) -> Reply {
        let reply = match self.store.execute(args, self.now_ms) {
            Execution::Read(reply) => reply,
            Execution::Write { commands, reply } => {
                assert!(!commands.is_empty(), "a write logs something");
                assert!(
                    !matches!(reply, Reply::Error(_)),
                    "an error logs nothing: {reply:?}"
                );
                for c in &commands {
                    self.store.apply(c);
                }
                reply
            }
        };
        self.store.check_invariants();
        reply
    }

    pub(crate) fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
    }
}

fn write(commands: Vec<Command>, reply: Reply) -> Execution {
    Execution::Write { commands, reply }
}

fn read(reply: Reply) -> Execution {
    Execution::Read(reply)
}

fn set_cmd(k: &str, v: &str, expiry: Expiry) -> Command {
    Command::Set {
        key: key(k),
        value: key(v),
        expiry,
    }
}

fn del_cmd(keys: &[&str]) -> Command {
    Command::Del {
        keys: keys.iter().map(|k| key(k)).collect(),
    }
}

// ---- dispatch, arity, unknown commands ----

#[test]
fn unknown_command_is_reported_as_redis_7() {
    let db = Db::new();
    assert_eq!(
        db.plan(&["foo", "a", "b"]),
        read(err(
            "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
        ))
    );
    assert_eq!(
        db.plan(&["PING"]),
        read(err(
            "ERR unknown command 'PING', with args beginning with: "
        ))
    );
    assert_eq!(
        db.store.execute(&[], T0),
        read(err("ERR unknown command '', with args beginning with: "))
    );
}

#[test]
fn names_are_case_insensitive() {
    let mut db = Db::new();
    assert_eq!(db.run(&["sEt", "k", "v"]), Reply::Ok);
    assert_eq!(db.run(&["GET", "k"]), bulk("v"));
}

/// Every command rejects too few arguments (and fixed-arity ones too many) with Redis's text.
#[test]
fn every_command_checks_arity() {
    let db = Db::new();
    for spec in Store::command_specs() {
        let expected = read(err(&format!(
            "ERR wrong number of arguments for '{}' command",
            spec.name
        )));
        let needed = usize::try_from(spec.arity.unsigned_abs()).unwrap_or(usize::MAX);
        let mut parts = vec![spec.name.to_uppercase()];
        parts.resize(needed - 1, "x".to_owned());
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        if needed > 1 {
            assert_eq!(db.plan(&parts), expected, "{} with too few", spec.name);
        }
        if spec.arity > 0 {
            let mut too_many: Vec<&str> = vec![spec.name];
            too_many.resize(needed + 1, "x");
            assert_eq!(db.plan(&too_many), expected, "{} with too many", spec.name);
        }
    }
}

#[test]
fn command_spec_lookup() {
    let get = Store::command_spec(b"GET").copied();
    assert_eq!(
        get,
        Some(crate::CommandSpec {
            name: "get",
            arity: 2,
            write: false,
            first_key: 1,
            last_key: 1,
            key_step: 1
        })
    );
    assert_eq!(
        Store::command_spec(b"mset").map(|s| (s.arity, s.key_step, s.write)),
        Some((-3, 2, true))
    );
    assert_eq!(Store::command_spec(b"ping"), None);
    assert!(Store::command_specs()
        .iter()
        .all(|s| Store::command_spec(s.name.as_bytes()) == Some(s)));
}

// ---- GET / SET ----

#[test]
fn set_then_get() {
    let mut db = Db::new();
    assert_eq!(
        db.plan(&["SET", "k", "v"]),
        write(vec![set_cmd("k", "v", Expiry::Clear)], Reply::Ok)
    );
    assert_eq!(db.run(&["SET", "k", "v"]), Reply::Ok);
    assert_eq!(db.run(&["GET", "k"]), bulk("v"));
    assert_eq!(db.run(&["GET", "missing"]), Reply::Nil);
}

#[test]
fn keys_and_values_are_binary_safe() {
    let mut db = Db::new();
    let k = Bytes::from_static(b"\0k\xff\r\n");
    let v = Bytes::from_static(b"\xff\0\r\nv");
    let set = vec![Bytes::from_static(b"SET"), k.clone(), v.clone()];
    assert_eq!(db.run_args(&set), Reply::Ok);
    assert_eq!(
        db.run_args(&[Bytes::from_static(b"GET"), k.clone()]),
        Reply::Bulk(v)
    );
    assert_eq!(db.run_args(&[Bytes::from_static(b"STRLEN"), k]), int(5));
    assert_eq!(db.run(&["SET", "", ""]), Reply::Ok);
    assert_eq!(db.run(&["GET", ""]), bulk(""));
    assert_eq!(db.run(&["EXISTS", ""]), int(1));
}

#[test]
fn set_nx_and_xx() {
    let mut db = Db::new();
    assert_eq!(db.plan(&["SET", "k", "v", "XX"]), read(Reply::Nil));
    assert_eq!(db.run(&["SET", "k", "v", "nx"]), Reply::Ok);
    assert_eq!(db.plan(&["SET", "k", "w", "NX"]), read(Reply::Nil));
    assert_eq!(db.run(&["SET", "k", "w", "XX"]), Reply::Ok);
    assert_eq!(db.run(&["GET", "k"]), bulk("w"));
    assert_eq!(db.run(&["SET", "k", "x", "NX", "NX"]), Reply::Nil);
}

#[test]
fn set_get_option_returns_old_value() {
    let mut db = Db::new();
    assert_eq!(db.run(&["SET", "k", "v", "GET"]), Reply::Nil);
    assert_eq!(db.run(&["SET", "k", "w", "GET"]), bulk("v"));
    // NX with GET (Redis 7): not set, but the old value is returned.
    assert_eq!(db.plan(&["SET", "k", "x", "NX", "GET"]), read(bulk("w")));
    assert_eq!(db.plan(&["SET", "new", "x", "XX", "GET"]), read(Reply::Nil));
    assert_eq!(db.run(&["GETSET", "k", "y"]), bulk("w"));
    assert_eq!(db.run(&["GETSET", "k2", "y"]), Reply::Nil);
    assert_eq!(db.run(&["GET", "k2"]), bulk("y"));
}

#[test]
fn set_with_relative_expiry_logs_absolute_time() {
    let db = Db::new();
    assert_eq!(
        db.plan(&["SET", "k", "v", "EX", "10"]),
        write(
            vec![set_cmd("k", "v", Expiry::AtMs(T0 + 10_000))],
            Reply::Ok
        )
    );
    assert_eq!(
        db.plan(&["SET", "k", "v", "px", "1500"]),
        write(vec![set_cmd("k", "v", Expiry::AtMs(T0 + 1_500))], Reply::Ok)
    );
    let at_s = (T0 / 1000 + 100).to_string();
    assert_eq!(
        db.plan(&["SET", "k", "v", "EXAT", &at_s]),
        write(
            vec![set_cmd("k", "v", Expiry::AtMs(T0 + 100_000))],
            Reply::Ok
        )
    );
    let at_ms = (T0 + 7).to_string();
    assert_eq!(
        db.plan(&["SET", "k", "v", "PXAT", &at_ms]),
        write(vec![set_cmd("k", "v", Expiry::AtMs(T0 + 7))], Reply::Ok)
    );
    // A repeated expiry option is allowed; the last one wins.
    assert_eq!(
        db.plan(&["SET", "k", "v", "EX", "1", "EX", "2"]),
        write(vec![set_cmd("k", "v", Expiry::AtMs(T0 + 2_000))], Reply::Ok)
    );
}

#[test]
fn set_expiry_shows_in_ttl_and_lapses() {
    let mut db = Db::new();
    assert_eq!(db.run(&["SET", "k", "v", "PX", "1500"]), Reply::Ok);
    assert_eq!(db.run(&["PTTL", "k"]), int(1500));
    // TTL rounds to the nearest second, as Redis.
    assert_eq!(db.run(&["TTL", "k"]), int(2));
    db.advance(1_499);
    assert_eq!(db.run(&["GET", "k"]), bulk("v"));
    assert_eq!(db.run(&["PTTL", "k"]), int(1));
    assert_eq!(db.run(&["TTL", "k"]), int(0));
    db.advance(1);
    log_phase("at the expiry instant the key is gone for reads, but still held");
    assert_eq!(db.run(&["GET", "k"]), Reply::Nil);
    assert_eq!(db.run(&["TTL", "k"]), int(-2));
    assert_eq!(db.run(&["EXISTS", "k"]), int(0));
    assert_eq!(db.run(&["DBSIZE"]), int(1));
}

#[test]
fn plain_set_clears_ttl_and_keepttl_keeps_it() {
    let mut db = Db::new();
    db.run(&["SET", "k", "v", "EX", "10"]);
    assert_eq!(db.run(&["SET", "k", "w", "KEEPTTL"]), Reply::Ok);
    assert_eq!(db.run(&["TTL", "k"]), int(10));
    assert_eq!(db.run(&["GET", "k"]), bulk("w"));
    assert_eq!(db.run(&["SET", "k", "x"]), Reply::Ok);
    assert_eq!(db.run(&["TTL", "k"]), int(-1));
}

/// KEEPTTL on a logically expired key must not revive its stale TTL: the plan deletes the key
/// first, so a replica applying later gets a key without TTL.
#[test]
fn set_keepttl_on_expired_key_deletes_it_first() {
    let mut db = Db::new();
    db.run(&["SET", "k", "v", "PX", "100"]);
    db.advance(100);
    assert_eq!(
        db.plan(&["SET", "k", "w", "KEEPTTL"]),
        write(
            vec![del_cmd(&["k"]), set_cmd("k", "w", Expiry::Keep)],
            Reply::Ok
        )
    );
    db.run(&["SET", "k", "w", "KEEPTTL"]);
    assert_eq!(db.run(&["TTL", "k"]), int(-1));
    assert_eq!(db.run(&["GET", "k"]), bulk("w"));
}

#[test]
fn set_option_conflicts_are_syntax_errors() {
    let db = Db::new();
    let syntax = read(err("ERR syntax error"));
    for opts in [
        &["NX", "XX"][..],
        &["XX", "NX"],
        &["EX", "1", "PX", "1"],
        &["PX", "1", "EXAT", "1"],
        &["EXAT", "1", "PXAT", "1"],
        &["EX", "1", "KEEPTTL"],
        &["KEEPTTL", "EX", "1"],
        &["KEEPTTL", "PXAT", "1"],
        &["EX"],
        &["PERSIST"],
        &["FOO"],
        &["EX", "10", "junk"],
    ] {
        let mut parts = vec!["SET", "k", "v"];
        parts.extend_from_slice(opts);
        assert_eq!(db.plan(&parts), syntax, "SET k v {opts:?}");
    }
}

#[test]
fn set_invalid_expire_times() {
    let db = Db::new();
    let invalid = read(err("ERR invalid expire time in 'set' command"));
    for opts in [
        ["EX", "0"],
        ["EX", "-1"],
        ["PX", "0"],
        ["EXAT", "0"],
        ["PXAT", "-5"],
        // Seconds times 1000 would overflow.
        ["EX", "9223372036854775807"],
        // Now plus the relative time would overflow.
        ["PX", "9223372036854775807"],
    ] {
        let mut parts = vec!["SET", "k", "v"];
        parts.extend_from_slice(&opts);
        assert_eq!(db.plan(&parts), invalid, "SET k v {opts:?}");
    }
    let not_integer = read(err("ERR value is not an integer or out of range"));
    assert_eq!(db.plan(&["SET", "k", "v", "EX", "ten"]), not_integer);
    assert_eq!(db.plan(&["SET", "k", "v", "EX", "1.5"]), not_integer);
    assert_eq!(
        db.plan(&["SET", "k", "v", "PX", "9223372036854775808"]),
        not_integer
    );
    assert_eq!(
        db.plan(&["SETEX", "k", "0", "v"]),
        read(err("ERR invalid expire time in 'setex' command"))
    );
    assert_eq!(
        db.plan(&["PSETEX", "k", "-1", "v"]),
        read(err("ERR invalid expire time in 'psetex' command"))
    );
}

/// An absolute expiry already in the past leaves the key absent (Redis: set, then expired).
#[test]
fn set_with_past_absolute_expiry_deletes() {
    let mut db = Db::new();
    let past = (T0 - 1).to_string();
    assert_eq!(db.plan(&["SET", "k", "v", "PXAT", &past]), read(Reply::Ok));
    db.run(&["SET", "k", "old"]);
    assert_eq!(
        db.plan(&["SET", "k", "v", "PXAT", &past]),
        write(vec![del_cmd(&["k"])], Reply::Ok)
    );
    assert_eq!(
        db.run(&["SET", "k", "v", "PXAT", &past, "GET"]),
        bulk("old")
    );
    assert_eq!(db.run(&["EXISTS", "k"]), int(0));
    assert_eq!(db.run(&["DBSIZE"]), int(0));
}

#[test]
fn setnx_setex_psetex() {
    let mut db = Db::new();
    assert_eq!(db.run(&["SETNX", "k", "v"]), int(1));
    assert_eq!(db.plan(&["SETNX", "k", "w"]), read(int(0)));
    assert_eq!(db.run(&["SETEX", "e", "10", "v"]), Reply::Ok);
    assert_eq!(db.run(&["TTL", "e"]), int(10));
    assert_eq!(db.run(&["PSETEX", "p", "2500", "v"]), Reply::Ok);
    assert_eq!(db.run(&["PTTL", "p"]), int(2500));
    assert_eq!(
        db.plan(&["SETEX", "e", "x", "v"]),
        read(err("ERR value is not an integer or out of range"))
    );
}

#[test]
fn getdel() {
    let mut db = Db::new();
    db.run(&["SET", "k", "v"]);
    assert_eq!(
        db.plan(&["GETDEL", "k"]),
        write(vec![del_cmd(&["k"])], bulk("v"))
    );
    assert_eq!(db.run(&["GETDEL", "k"]), bulk("v"));
    assert_eq!(db.plan(&["GETDEL", "k"]), read(Reply::Nil));
}

#[test]
fn getex() {
    let mut db = Db::new();
    assert_eq!(db.plan(&["GETEX", "k", "EX", "10"]), read(Reply::Nil));
    db.run(&["SET", "k", "v"]);
    assert_eq!(db.plan(&["GETEX", "k"]), read(bulk("v")));
    assert_eq!(
        db.plan(&["GETEX", "k", "PX", "500"]),
        write(
            vec![Command::ExpireAt {
                key: key("k"),
                at_ms: T0 + 500
            }],
            bulk("v")
        )
    );
    assert_eq!(db.run(&["GETEX", "k", "EX", "10"]), bulk("v"));
    assert_eq!(db.run(&["TTL", "k"]), int(10));
    assert_eq!(
        db.plan(&["GETEX", "k", "PERSIST"]),
        write(vec![Command::Persist { key: key("k") }], bulk("v"))
    );
    assert_eq!(db.run(&["GETEX", "k", "PERSIST"]), bulk("v"));
    assert_eq!(db.plan(&["GETEX", "k", "PERSIST"]), read(bulk("v")));
    let past = (T0 / 1000 - 1).to_string();
    assert_eq!(
        db.plan(&["GETEX", "k", "EXAT", &past]),
        write(vec![del_cmd(&["k"])], bulk("v"))
    );
    let syntax = read(err("ERR syntax error"));
    assert_eq!(db.plan(&["GETEX", "k", "NX"]), syntax);
    assert_eq!(db.plan(&["GETEX", "k", "KEEPTTL"]), syntax);
    assert_eq!(db.plan(&["GETEX", "k", "EX", "1", "PERSIST"]), syntax);
    assert_eq!(db.plan(&["GETEX", "k", "PERSIST", "EX", "1"]), syntax);
    assert_eq!(db.plan(&["GETEX", "k", "EX"]), syntax);
    assert_eq!(
        db.plan(&["GETEX", "k", "EX", "0"]),
        read(err("ERR invalid expire time in 'getex' command"))
    );
    // Redis looks the key up before it validates the time: an absent key gives nil.
    assert_eq!(db.plan(&["GETEX", "nokey", "EX", "0"]), read(Reply::Nil));
}

// ---- DEL / EXISTS ----

#[test]
fn del_counts_distinct_live_keys() {
    let mut db = Db::new();
    db.run(&["MSET", "a", "1", "b", "2"]);
    assert_eq!(
        db.plan(&["DEL", "a", "b", "c", "a"]),
        write(vec![del_cmd(&["a", "b"])], int(2))
    );
    assert_eq!(db.run(&["DEL", "a", "a"]), int(1));
    assert_eq!(db.plan(&["DEL", "a", "c"]), read(int(0)));
    assert_eq!(db.run(&["UNLINK", "b"]), int(1));
    assert_eq!(db.run(&["DBSIZE"]), int(0));
}

#[test]
fn del_of_expired_key_replies_zero_and_cleans_up() {
    let mut db = Db::new();
    db.run(&["SET", "k", "v", "PX", "10"]);
    db.advance(10);
    assert_eq!(db.plan(&["DEL", "k"]), write(vec![del_cmd(&["k"])], int(0)));
    db.run(&["DEL", "k"]);
    assert_eq!(db.store.stats(), KeyspaceStats::default());
}

#[test]
fn exists_and_touch_count_duplicates() {
    let mut db = Db::new();
    db.run(&["SET", "a", "1"]);
    assert_eq!(db.run(&["EXISTS", "a", "a", "b"]), int(2));
    assert_eq!(db.run(&["EXISTS", "b"]), int(0));
    assert_eq!(db.run(&["TOUCH", "a", "b"]), int(1));
}

// ---- INCR family ----

#[test]
fn incr_decr_family() {
    let mut db = Db::new();
    assert_eq!(
        db.plan(&["INCR", "n"]),
        write(vec![set_cmd("n", "1", Expiry::Keep)], int(1))
    );
    assert_eq!(db.run(&["INCR", "n"]), int(1));
    assert_eq!(db.run(&["INCRBY", "n", "10"]), int(11));
    assert_eq!(db.run(&["DECR", "n"]), int(10));
    assert_eq!(db.run(&["DECRBY", "n", "15"]), int(-5));
    assert_eq!(db.run(&["INCRBY", "n", "-5"]), int(-10));
    assert_eq!(db.run(&["GET", "n"]), bulk("-10"));
    assert_eq!(db.run(&["DECR", "fresh"]), int(-1));
}

#[test]
fn incr_keeps_ttl() {
    let mut db = Db::new();
    db.run(&["SET", "n", "5", "EX", "100"]);
    assert_eq!(db.run(&["INCR", "n"]), int(6));
    assert_eq!(db.run(&["TTL", "n"]), int(100));
}

#[test]
fn incr_rejects_non_integers() {
    let mut db = Db::new();
    let not_integer = read(err("ERR value is not an integer or out of range"));
    for value in [
        "abc",
        "1.5",
        " 1",
        "1 ",
        "01",
        "+1",
        "-0",
        "",
        "9223372036854775808",
    ] {
        db.run(&["SET", "n", value]);
        assert_eq!(db.plan(&["INCR", "n"]), not_integer, "value {value:?}");
        assert_eq!(
            db.plan(&["DECRBY", "n", "1"]),
            not_integer,
            "value {value:?}"
        );
    }
    assert_eq!(db.plan(&["INCRBY", "m", "x"]), not_integer);
    assert_eq!(
        db.plan(&["INCRBY", "m", "99999999999999999999"]),
        not_integer
    );
    assert_eq!(db.plan(&["DECRBY", "m", ""]), not_integer);
}

#[test]
fn incr_overflow() {
    let mut db = Db::new();
    let overflow = read(err("ERR increment or decrement would overflow"));
    db.run(&["SET", "n", "9223372036854775807"]);
    assert_eq!(db.plan(&["INCR", "n"]), overflow);
    assert_eq!(db.plan(&["INCRBY", "n", "1"]), overflow);
    assert_eq!(db.run(&["DECR", "n"]), int(i64::MAX - 1));
    db.run(&["SET", "n", "-9223372036854775808"]);
    assert_eq!(db.plan(&["DECR", "n"]), overflow);
    assert_eq!(db.plan(&["INCRBY", "n", "-1"]), overflow);
    assert_eq!(db.plan(&["DECRBY", "n", "1"]), overflow);
    assert_eq!(
        db.plan(&["DECRBY", "n", "-9223372036854775808"]),
        read(err("ERR decrement would overflow"))
    );
    assert_eq!(db.run(&["INCRBY", "n", "9223372036854775807"]), int(-1));
}

/// INCR of a logically expired key starts from 0 with no TTL, on every replica.
#[test]
fn incr_on_expired_key_deletes_it_first() {
    let mut db = Db::new();
    db.run(&["SET", "n", "41", "PX", "5"]);
    db.advance(5);
    assert_eq!(
        db.plan(&["INCR", "n"]),
        write(
            vec![del_cmd(&["n"]), set_cmd("n", "1", Expiry::Keep)],
            int(1)
        )
    );
    assert_eq!(db.run(&["INCR", "n"]), int(1));
    assert_eq!(db.run(&["TTL", "n"]), int(-1));
}

// ---- APPEND / STRLEN / GETRANGE / SETRANGE ----

#[test]
fn append_and_strlen() {
    let mut db = Db::new();
    assert_eq!(db.run(&["STRLEN", "k"]), int(0));
    assert_eq!(
        db.plan(&["APPEND", "k", "ab"]),
        write(
            vec![Command::Append {
                key: key("k"),
                suffix: key("ab")
            }],
            int(2)
        )
    );
    assert_eq!(db.run(&["APPEND", "k", "ab"]), int(2));
    assert_eq!(db.run(&["APPEND", "k", "cd"]), int(4));
    assert_eq!(db.run(&["GET", "k"]), bulk("abcd"));
    assert_eq!(db.run(&["STRLEN", "k"]), int(4));
    assert_eq!(db.plan(&["APPEND", "k", ""]), read(int(4)));
    // APPEND of nothing to an absent key creates an empty string, as Redis.
    assert_eq!(db.run(&["APPEND", "e", ""]), int(0));
    assert_eq!(db.run(&["EXISTS", "e"]), int(1));
}

#[test]
fn append_keeps_ttl_but_not_when_expired() {
    let mut db = Db::new();
    db.run(&["SET", "k", "a", "EX", "10"]);
    db.run(&["APPEND", "k", "b"]);
    assert_eq!(db.run(&["TTL", "k"]), int(10));
    db.advance(10_000);
    assert_eq!(
        db.plan(&["APPEND", "k", "c"]),
        write(
            vec![
                del_cmd(&["k"]),
                Command::Append {
                    key: key("k"),
                    suffix: key("c")
                }
            ],
            int(1)
        )
    );
    db.run(&["APPEND", "k", "c"]);
    assert_eq!(db.run(&["GET", "k"]), bulk("c"));
    assert_eq!(db.run(&["TTL", "k"]), int(-1));
}

#[test]
fn getrange_as_redis_docs() {
    let mut db = Db::new();
    db.run(&["SET", "mykey", "This is a string"]);
    assert_eq!(db.run(&["GETRANGE", "mykey", "0", "3"]), bulk("This"));
    assert_eq!(db.run(&["GETRANGE", "mykey", "-3", "-1"]), bulk("ing"));
    assert_eq!(
        db.run(&["GETRANGE", "mykey", "0", "-1"]),
        bulk("This is a string")
    );
    assert_eq!(db.run(&["GETRANGE", "mykey", "10", "100"]), bulk("string"));
    assert_eq!(db.run(&["GETRANGE", "mykey", "5", "2"]), bulk(""));
    assert_eq!(db.run(&["GETRANGE", "mykey", "-1", "-5"]), bulk(""));
    assert_eq!(db.run(&["GETRANGE", "mykey", "-100", "2"]), bulk("Thi"));
    assert_eq!(
        db.run(&[
            "GETRANGE",
            "mykey",
            "-9223372036854775808",
            "9223372036854775807"
        ]),
        bulk("This is a string")
    );
    assert_eq!(db.run(&["SUBSTR", "mykey", "0", "1"]), bulk("Th"));
    assert_eq!(db.run(&["GETRANGE", "none", "0", "1"]), bulk(""));
    assert_eq!(
        db.run(&["GETRANGE", "mykey", "a", "1"]),
        err("ERR value is not an integer or out of range")
    );
}

#[test]
fn setrange_as_redis_docs() {
    let mut db = Db::new();
    db.run(&["SET", "key1", "Hello World", "EX", "100"]);
    assert_eq!(db.run(&["SETRANGE", "key1", "6", "Redis"]), int(11));
    assert_eq!(db.run(&["GET", "key1"]), bulk("Hello Redis"));
    assert_eq!(db.run(&["TTL", "key1"]), int(100));
    assert_eq!(db.run(&["SETRANGE", "key2", "6", "Redis"]), int(11));
    assert_eq!(db.run(&["GET", "key2"]), bulk("\0\0\0\0\0\0Redis"));
    assert_eq!(db.plan(&["SETRANGE", "key3", "5", ""]), read(int(0)));
    assert_eq!(db.plan(&["SETRANGE", "key1", "50", ""]), read(int(11)));
    assert_eq!(
        db.plan(&["SETRANGE", "k", "-1", "x"]),
        read(err("ERR offset is out of range"))
    );
    assert_eq!(
        db.plan(&["SETRANGE", "k", "536870912", "x"]),
        read(err(
            "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
        ))
    );
    assert_eq!(
        db.plan(&["SETRANGE", "k", "x", "x"]),
        read(err("ERR value is not an integer or out of range"))
    );
}

// ---- MGET / MSET ----

#[test]
fn mset_and_mget() {
    let mut db = Db::new();
    assert_eq!(
        db.plan(&["MSET", "a", "1", "b", "2"]),
        write(
            vec![Command::MSet {
                pairs: vec![(key("a"), key("1")), (key("b"), key("2"))]
            }],
            Reply::Ok
        )
    );
    db.run(&["SET", "a", "0", "EX", "10"]);
    assert_eq!(db.run(&["MSET", "a", "1", "b", "2"]), Reply::Ok);
    assert_eq!(db.run(&["TTL", "a"]), int(-1));
    assert_eq!(
        db.run(&["MGET", "a", "b", "c"]),
        Reply::Array(vec![bulk("1"), bulk("2"), Reply::Nil])
    );
    assert_eq!(
        db.plan(&["MSET", "a", "1", "b"]),
        read(err("ERR wrong number of arguments for 'mset' command"))
    );
    assert_eq!(
        db.plan(&["MSET", "a"]),
        read(err("ERR wrong number of arguments for 'mset' command"))
    );
    assert_eq!(db.run(&["MSET", "d", "1", "d", "2"]), Reply::Ok);
    assert_eq!(db.run(&["GET", "d"]), bulk("2"));
}

#[test]
fn msetnx() {
    let mut db = Db::new();
    assert_eq!(db.run(&["MSETNX", "a", "1", "b", "2"]), int(1));
    assert_eq!(db.plan(&["MSETNX", "c", "3", "a", "9"]), read(int(0)));
    assert_eq!(
        db.run(&["MGET", "a", "c"]),
        Reply::Array(vec![bulk("1"), Reply::Nil])
    );
    assert_eq!(
        db.plan(&["MSETNX", "a", "1", "b"]),
        read(err("ERR wrong number of arguments for 'msetnx' command"))
    );
}

// ---- EXPIRE family / TTL / PERSIST ----

#[test]
fn expire_sets_absolute_time() {
    let mut db = Db::new();
    assert_eq!(db.plan(&["EXPIRE", "k", "10"]), read(int(0)));
    db.run(&["SET", "k", "v"]);
    assert_eq!(
        db.plan(&["EXPIRE", "k", "10"]),
        write(
            vec![Command::ExpireAt {
                key: key("k"),
                at_ms: T0 + 10_000
            }],
            int(1)
        )
    );
    assert_eq!(db.run(&["PEXPIRE", "k", "1500"]), int(1));
    assert_eq!(db.run(&["PTTL", "k"]), int(1500));
    let at = (T0 / 1000 + 20).to_string();
    assert_eq!(db.run(&["EXPIREAT", "k", &at]), int(1));
    assert_eq!(db.run(&["TTL", "k"]), int(20));
    let at = (T0 + 30_000).to_string();
    assert_eq!(db.run(&["PEXPIREAT", "k", &at]), int(1));
    assert_eq!(db.run(&["PTTL", "k"]), int(30_000));
    assert_eq!(
        db.run(&["PEXPIRETIME", "k"]),
        int(i64::try_from(T0 + 30_000).unwrap_or(0))
    );
    assert_eq!(
        db.run(&["EXPIRETIME", "k"]),
        int(i64::try_from(T0 / 1000 + 30).unwrap_or(0))
    );
}

/// Redis deletes the key when EXPIRE's time is not in the future, and replies 1.
#[test]
fn expire_in_the_past_deletes() {
    let mut db = Db::new();
    for amount in ["0", "-1", "-9223372036854775"] {
        db.run(&["SET", "k", "v"]);
        assert_eq!(
            db.plan(&["EXPIRE", "k", amount]),
            write(vec![del_cmd(&["k"])], int(1))
        );
        assert_eq!(db.run(&["EXPIRE", "k", amount]), int(1));
        assert_eq!(db.run(&["EXISTS", "k"]), int(0));
    }
    db.run(&["SET", "k", "v"]);
    let now = T0.to_string();
    assert_eq!(
        db.plan(&["PEXPIREAT", "k", &now]),
        write(vec![del_cmd(&["k"])], int(1))
    );
    assert_eq!(
        db.plan(&["PEXPIREAT", "k", "-1"]),
        write(vec![del_cmd(&["k"])], int(1))
    );
}

#[test]
fn expire_errors() {
    let db = Db::new();
    assert_eq!(
        db.plan(&["EXPIRE", "k", "10", "FOO"]),
        read(err("ERR Unsupported option FOO"))
    );
    // Options are checked before the number, as Redis does.
    assert_eq!(
        db.plan(&["EXPIRE", "k", "ten", "bar"]),
        read(err("ERR Unsupported option bar"))
    );
    assert_eq!(
        db.plan(&["EXPIRE", "k", "ten"]),
        read(err("ERR value is not an integer or out of range"))
    );
    let nx = read(err(
        "ERR NX and XX, GT or LT options at the same time are not compatible",
    ));
    assert_eq!(db.plan(&["EXPIRE", "k", "10", "NX", "XX"]), nx);
    assert_eq!(db.plan(&["EXPIRE", "k", "10", "GT", "NX"]), nx);
    assert_eq!(db.plan(&["PEXPIRE", "k", "10", "NX", "LT"]), nx);
    assert_eq!(
        db.plan(&["EXPIRE", "k", "10", "GT", "LT"]),
        read(err(
            "ERR GT and LT options at the same time are not compatible"
        ))
    );
    assert_eq!(
        db.plan(&["EXPIRE", "k", "9223372036854775807"]),
        read(err("ERR invalid expire time in 'expire' command"))
    );
    assert_eq!(
        db.plan(&["EXPIRE", "k", "-9223372036854775808"]),
        read(err("ERR invalid expire time in 'expire' command"))
    );
    assert_eq!(
        db.plan(&["PEXPIRE", "k", "9223372036854775807"]),
        read(err("ERR invalid expire time in 'pexpire' command"))
    );
    assert_eq!(
        db.plan(&["EXPIREAT", "k", "9223372036854775807"]),
        read(err("ERR invalid expire time in 'expireat' command"))
    );
    // PEXPIREAT adds nothing, so even the largest time is valid (the key is absent here).
    assert_eq!(
        db.plan(&["PEXPIREAT", "k", "9223372036854775807"]),
        read(int(0))
    );
}

#[test]
fn expire_conditions_nx_xx_gt_lt() {
    let mut db = Db::new();
    db.run(&["SET", "k", "v"]);
    log_phase("no TTL: XX and GT fail, NX and LT succeed");
    assert_eq!(db.plan(&["EXPIRE", "k", "100", "XX"]), read(int(0)));
    assert_eq!(db.plan(&["EXPIRE", "k", "100", "GT"]), read(int(0)));
    assert!(matches!(
        db.plan(&["EXPIRE", "k", "100", "LT"]),
        Execution::Write { .. }
    ));
    assert_eq!(db.run(&["EXPIRE", "k", "100", "nx"]), int(1));
    log_phase("TTL of 100s");
    assert_eq!(db.plan(&["EXPIRE", "k", "200", "NX"]), read(int(0)));
    assert_eq!(db.plan(&["EXPIRE", "k", "100", "GT"]), read(int(0)));
    assert_eq!(db.plan(&["EXPIRE", "k", "100", "LT"]), read(int(0)));
    assert_eq!(db.plan(&["EXPIRE", "k", "200", "LT"]), read(int(0)));
    assert_eq!(db.run(&["EXPIRE", "k", "200", "GT", "XX"]), int(1));
    assert_eq!(db.run(&["TTL", "k"]), int(200));
    assert_eq!(db.run(&["EXPIRE", "k", "50", "LT"]), int(1));
    assert_eq!(db.run(&["TTL", "k"]), int(50));
    assert_eq!(db.run(&["EXPIRE", "k", "60", "XX"]), int(1));
    assert_eq!(db.run(&["TTL", "k"]), int(60));
}

#[test]
fn ttl_replies() {
    let mut db = Db::new();
    assert_eq!(db.run(&["TTL", "k"]), int(-2));
    assert_eq!(db.run(&["PTTL", "k"]), int(-2));
    assert_eq!(db.run(&["EXPIRETIME", "k"]), int(-2));
    db.run(&["SET", "k", "v"]);
    assert_eq!(db.run(&["TTL", "k"]), int(-1));
    assert_eq!(db.run(&["PTTL", "k"]), int(-1));
    assert_eq!(db.run(&["PEXPIRETIME", "k"]), int(-1));
    db.run(&["PEXPIRE", "k", "2499"]);
    assert_eq!(db.run(&["TTL", "k"]), int(2));
    db.run(&["PEXPIRE", "k", "2500"]);
    assert_eq!(db.run(&["TTL", "k"]), int(3));
}

#[test]
fn persist() {
    let mut db = Db::new();
    assert_eq!(db.plan(&["PERSIST", "k"]), read(int(0)));
    db.run(&["SET", "k", "v"]);
    assert_eq!(db.plan(&["PERSIST", "k"]), read(int(0)));
    db.run(&["EXPIRE", "k", "10"]);
    assert_eq!(
        db.plan(&["PERSIST", "k"]),
        write(vec![Command::Persist { key: key("k") }], int(1))
    );
    assert_eq!(db.run(&["PERSIST", "k"]), int(1));
    assert_eq!(db.run(&["TTL", "k"]), int(-1));
    assert_eq!(db.store.stats().expires, 0);
}

// ---- RENAME / TYPE / KEYS / DBSIZE / FLUSHALL ----

#[test]
fn rename_moves_value_and_ttl() {
    let mut db = Db::new();
    assert_eq!(db.plan(&["RENAME", "a", "b"]), read(err("ERR no such key")));
    assert_eq!(
        db.plan(&["RENAMENX", "a", "b"]),
        read(err("ERR no such key"))
    );
    db.run(&["SET", "a", "1", "EX", "10"]);
    assert_eq!(db.plan(&["RENAME", "a", "a"]), read(Reply::Ok));
    assert_eq!(db.plan(&["RENAMENX", "a", "a"]), read(int(0)));
    assert_eq!(
        db.plan(&["RENAME", "a", "b"]),
        write(
            vec![
                set_cmd("b", "1", Expiry::AtMs(T0 + 10_000)),
                del_cmd(&["a"])
            ],
            Reply::Ok
        )
    );
    assert_eq!(db.run(&["RENAME", "a", "b"]), Reply::Ok);
    assert_eq!(db.run(&["TTL", "b"]), int(10));
    assert_eq!(db.run(&["EXISTS", "a"]), int(0));
    db.run(&["SET", "c", "3"]);
    assert_eq!(db.plan(&["RENAMENX", "b", "c"]), read(int(0)));
    assert_eq!(db.run(&["RENAME", "c", "b"]), Reply::Ok);
    assert_eq!(db.run(&["TTL", "b"]), int(-1));
    assert_eq!(db.run(&["RENAMENX", "b", "d"]), int(1));
    assert_eq!(db.run(&["GET", "d"]), bulk("3"));
}

#[test]
fn type_keys_dbsize() {
    let mut db = Db::new();
    assert_eq!(db.run(&["TYPE", "k"]), Reply::Status("none"));
    assert_eq!(db.run(&["DBSIZE"]), int(0));
    db.run(&["MSET", "user:1", "a", "user:2", "b", "other", "c"]);
    assert_eq!(db.run(&["TYPE", "user:1"]), Reply::Status("string"));
    assert_eq!(db.run(&["DBSIZE"]), int(3));
    let Reply::Array(mut keys) = db.run(&["KEYS", "user:*"]) else {
        panic!("KEYS replies with an array");
    };
    keys.sort_by_key(|r| format!("{r:?}"));
    assert_eq!(keys, vec![bulk("user:1"), bulk("user:2")]);
    let Reply::Array(all) = db.run(&["KEYS", "*"]) else {
        panic!("KEYS replies with an array");
    };
    assert_eq!(all.len(), 3);
    assert_eq!(db.run(&["KEYS", "nothing*"]), Reply::Array(vec![]));
}

#[test]
fn flushall() {
    let mut db = Db::new();
    assert_eq!(db.plan(&["FLUSHALL"]), read(Reply::Ok));
    db.run(&["MSET", "a", "1", "b", "2"]);
    db.run(&["EXPIRE", "a", "10"]);
    assert_eq!(
        db.plan(&["FLUSHALL"]),
        write(vec![Command::FlushAll], Reply::Ok)
    );
    assert_eq!(
        db.plan(&["flushall", "async"]),
        write(vec![Command::FlushAll], Reply::Ok)
    );
    assert_eq!(
        db.plan(&["FLUSHDB", "SYNC"]),
        write(vec![Command::FlushAll], Reply::Ok)
    );
    assert_eq!(db.plan(&["FLUSHALL", "now"]), read(err("ERR syntax error")));
    assert_eq!(
        db.plan(&["FLUSHALL", "SYNC", "ASYNC"]),
        read(err("ERR syntax error"))
    );
    assert_eq!(db.run(&["FLUSHALL"]), Reply::Ok);
    assert_eq!(db.store.stats(), KeyspaceStats::default());
}

// ---- stats, expiry index, snapshots ----

#[test]
fn stats_count_keys_ttls_and_bytes() {
    let mut db = Db::new();
    db.run(&["SET", "ab", "cde"]);
    db.run(&["SET", "f", "g", "EX", "1"]);
    assert_eq!(
        db.store.stats(),
        KeyspaceStats {
            keys: 2,
            expires: 1,
            bytes: 7
        }
    );
    db.run(&["APPEND", "ab", "xy"]);
    assert_eq!(db.store.stats().bytes, 9);
    db.advance(1_000);
    // A logically expired key is still counted until deleted, as Redis's DBSIZE.
    assert_eq!(db.store.stats().keys, 2);
    db.run(&["DEL", "f"]);
    assert_eq!(
        db.store.stats(),
        KeyspaceStats {
            keys: 1,
            expires: 0,
            bytes: 7
        }
    );
}

#[test]
fn expired_keys_in_expiry_order_and_bounded() {
    let mut db = Db::new();
    db.run(&["SET", "late", "v", "PX", "300"]);
    db.run(&["SET", "early", "v", "PX", "100"]);
    db.run(&["SET", "mid", "v", "PX", "200"]);
    db.run(&["SET", "never", "v"]);
    assert!(db.store.expired_keys(T0 + 99, 10).is_empty());
    assert_eq!(db.store.expired_keys(T0 + 100, 10), vec![key("early")]);
    assert_eq!(
        db.store.expired_keys(T0 + 1_000, 10),
        vec![key("early"), key("mid"), key("late")]
    );
    assert_eq!(
        db.store.expired_keys(T0 + 1_000, 2),
        vec![key("early"), key("mid")]
    );
    assert!(db.store.expired_keys(T0 + 1_000, 0).is_empty());
    log_phase("the server logs Del for them; then nothing is left to expire");
    db.store.apply(&Command::Del {
        keys: db.store.expired_keys(T0 + 1_000, 10),
    });
    db.store.check_invariants();
    assert!(db.store.expired_keys(u64::MAX, 10).is_empty());
    assert_eq!(db.store.stats().keys, 1);
}

#[test]
fn snapshot_chunks_round_trip() {
    let mut db = Db::new();
    for i in 0..10 {
        db.run(&["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    db.run(&["EXPIRE", "k3", "100"]);
    db.run_args(&[
        Bytes::from_static(b"SET"),
        Bytes::from_static(b"\0\xff"),
        Bytes::from_static(b""),
    ]);
    let chunks: Vec<Vec<u8>> = db.store.snapshot_chunks(3).collect();
    assert_eq!(chunks.len(), 4);
    let mut copy = Store::new();
    for chunk in &chunks {
        copy.load_snapshot_chunk(chunk)
            .unwrap_or_else(|e| panic!("chunk loads: {e}"));
        copy.check_invariants();
    }
    assert_eq!(copy, db.store);
    assert_eq!(
        db.store.snapshot_chunks(0).count(),
        11,
        "0 per chunk is taken as 1"
    );
    assert_eq!(Store::new().snapshot_chunks(5).count(), 0);
    log_phase("entries() and load_entry() round trip too");
    let mut copy = Store::new();
    for (k, v, at) in db.store.entries() {
        copy.load_entry(k.clone(), v.clone(), at);
    }
    assert_eq!(copy, db.store);
}

/// STYLE.md section 3: a function that returns `Err` leaves its receiver unchanged.
#[test]
fn bad_snapshot_chunk_leaves_store_unchanged() {
    let mut db = Db::new();
    db.run(&["SET", "keep", "me"]);
    let before = db.store.clone();
    let Some(good) = db.store.snapshot_chunks(10).next() else {
        panic!("one chunk");
    };
    let mut truncated = good.clone();
    truncated.pop();
    let mut trailing = good.clone();
    trailing.push(0);
    let mut wrong_format = good.clone();
    wrong_format[0] = 9;
    for bad in [
        vec![],
        vec![1],
        vec![1, 0xff, 0xff, 0xff],
        truncated,
        trailing,
        wrong_format,
    ] {
        let result = db.store.load_snapshot_chunk(&bad);
        assert!(result.is_err(), "chunk {bad:?} is rejected");
        assert_eq!(db.store, before, "store unchanged after rejecting {bad:?}");
    }
    assert_eq!(
        db.store.load_snapshot_chunk(&[9]),
        Err("snapshot chunk format 9 is not the supported 1".to_owned())
    );
}

// ---- determinism: plan on one store, apply on another at a different time ----

/// Relative expiries are planned as absolute times, so a follower applying the log later
/// reaches the same state and gives the same TTLs at any given wall time.
#[test]
fn follower_applying_later_gets_identical_state() {
    let mut leader = Db::new();
    let mut follower = Store::new();
    let script: &[&[&str]] = &[
        &["SET", "a", "1", "EX", "10"],
        &["SET", "b", "x", "PX", "50"],
        &["PEXPIRE", "a", "20000"],
        &["INCR", "c"],
        &["GETEX", "c", "PX", "70"],
        &["SET", "d", "v", "KEEPTTL"],
    ];
    let mut log = Vec::new();
    for (i, parts) in script.iter().enumerate() {
        leader.now_ms = T0 + 10 * i as u64;
        if let Execution::Write { commands, .. } = leader.plan(parts) {
            for c in &commands {
                leader.store.apply(c);
            }
            log.extend(commands);
        }
    }
    log_phase("the follower applies the whole log much later");
    for c in &log {
        follower.apply(c);
    }
    follower.check_invariants();
    assert_eq!(follower, leader.store);
    for now in [T0 + 60, T0 + 100, T0 + 15_000, T0 + 25_000] {
        for k in ["a", "b", "c", "d"] {
            let pttl = args(&["PTTL", k]);
            assert_eq!(
                follower.execute(&pttl, now),
                leader.store.execute(&pttl, now),
                "PTTL {k} at {now}"
            );
        }
    }
}

/// A write that touches a logically expired key deletes it first, so the follower, which
/// still holds the key, never sees the stale value whenever it applies.
#[test]
fn writes_on_expired_keys_replicate_identically() {
    let mut leader = Db::new();
    for parts in [
        &["SET", "s", "old", "PX", "10"][..],
        &["SET", "n", "7", "PX", "10"],
        &["SET", "t", "x", "PX", "10"],
    ] {
        leader.run(parts);
    }
    let mut follower = leader.store.clone();
    leader.advance(10);
    let mut log = Vec::new();
    for parts in [
        &["APPEND", "s", "new"][..],
        &["INCRBY", "n", "5"],
        &["SET", "t", "y", "KEEPTTL"],
        &["SETRANGE", "u", "0", "z"],
    ] {
        if let Execution::Write { commands, .. } = leader.plan(parts) {
            for c in &commands {
                leader.store.apply(c);
            }
            log.extend(commands);
        }
    }
    for c in &log {
        follower.apply(c);
    }
    assert_eq!(follower, leader.store);
    let now = leader.now_ms;
    let get = |store: &Store, k: &str| store.execute(&args(&["GET", k]), now);
    assert_eq!(get(&follower, "s"), read(bulk("new")));
    assert_eq!(get(&follower, "n"), read(bulk("5")));
    assert_eq!(get(&follower, "t"), read(bulk("y")));
    assert_eq!(follower.execute(&args(&["TTL", "t"]), now), read(int(-1)));
}

#[test]
fn reads_ignore_but_keep_expired_keys() {
    let mut db = Db::new();
    db.run(&["SET", "k", "v", "PX", "1"]);
    db.advance(1);
    let before = db.store.clone();
    for parts in [
        &["GET", "k"][..],
        &["MGET", "k"],
        &["STRLEN", "k"],
        &["TYPE", "k"],
        &["EXISTS", "k"],
    ] {
        let reply = db.run(parts);
        assert!(
            matches!(
                reply,
                Reply::Nil | Reply::Integer(0) | Reply::Status("none") | Reply::Array(_)
            ),
            "{parts:?}: {reply:?}"
        );
    }
    assert_eq!(db.store, before);
    assert_eq!(db.run(&["MGET", "k"]), Reply::Array(vec![Reply::Nil]));
}

/// Prints a phase line: tests read as phases (STYLE.md section 5).
pub(crate) fn log_phase(why: &str) {
    println!("phase: {why}");
}

/// Snapshot chunks are bounded by bytes as well as entries, so large values never make one
/// chunk too big for the snapshot file (review finding: 4096 entries of 100 KB each).
#[test]
fn snapshot_chunks_close_at_the_byte_target() {
    let mut store = Store::new();
    let big = Bytes::from(vec![b'v'; 10 << 20]);
    for k in ["a", "b", "c"] {
        store.load_entry(Bytes::from(k), big.clone(), None);
    }
    let chunks: Vec<Vec<u8>> = store.snapshot_chunks(4096).collect();
    assert_eq!(chunks.len(), 2, "two 10 MiB values reach the 16 MiB target");
    let mut copy = Store::new();
    for c in &chunks {
        assert!(
            c.len() <= 2 * (10 << 20) + 1024,
            "chunk of {} bytes",
            c.len()
        );
        copy.load_snapshot_chunk(c).unwrap();
    }
    assert_eq!(copy, store);
}
