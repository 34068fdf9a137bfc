//! `SCAN` and `KEYS`: full iteration, the guarantee for keys present throughout an iteration
//! under concurrent writes, `MATCH`/`COUNT`/`TYPE`, errors, and identical output on replicas.

use crate::store_test::{args, bulk, err, key, log_phase, Db, T0};
use crate::{Execution, Reply, Store};
use bytes::Bytes;
use std::collections::BTreeSet;

/// One `SCAN` call: (next cursor, keys).
fn scan(store: &Store, cursor: u64, options: &[&str], now_ms: u64) -> (u64, Vec<Bytes>) {
    let mut parts = vec!["SCAN".to_owned(), cursor.to_string()];
    parts.extend(options.iter().map(|o| (*o).to_owned()));
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let Execution::Read(Reply::Array(reply)) = store.execute(&args(&parts), now_ms) else {
        panic!("SCAN replies with an array");
    };
    let [Reply::Bulk(cursor), Reply::Array(keys)] = reply.as_slice() else {
        panic!("SCAN replies with [cursor, keys]: {reply:?}");
    };
    let cursor = std::str::from_utf8(cursor)
        .ok()
        .and_then(|c| c.parse().ok());
    let Some(cursor) = cursor else {
        panic!("SCAN's cursor is a decimal");
    };
    let keys = keys
        .iter()
        .map(|k| match k {
            Reply::Bulk(k) => k.clone(),
            other => panic!("a key is a bulk string: {other:?}"),
        })
        .collect();
    (cursor, keys)
}

/// Runs a whole iteration with no writes in between; returns the keys and the call count.
fn scan_all(store: &Store, options: &[&str], now_ms: u64) -> (Vec<Bytes>, usize) {
    let mut cursor = 0;
    let mut keys = Vec::new();
    for calls in 1..=100_000 {
        let (next, batch) = scan(store, cursor, options, now_ms);
        keys.extend(batch);
        if next == 0 {
            return (keys, calls);
        }
        cursor = next;
    }
    panic!("SCAN terminates");
}

fn db_with_keys(n: usize) -> Db {
    let mut db = Db::new();
    for i in 0..n {
        db.run(&["SET", &format!("key:{i}"), "v"]);
    }
    db
}

#[test]
fn scan_of_empty_store_is_done_at_once() {
    let db = Db::new();
    assert_eq!(
        db.plan(&["SCAN", "0"]),
        Execution::Read(Reply::Array(vec![bulk("0"), Reply::Array(vec![])]))
    );
}

/// Without concurrent writes, a full iteration returns every key exactly once, for any COUNT,
/// and COUNT bounds every reply.
#[test]
fn full_iteration_returns_every_key_once() {
    let db = db_with_keys(500);
    let expected: BTreeSet<Bytes> = (0..500).map(|i| key(&format!("key:{i}"))).collect();
    for count in [1usize, 2, 7, 10, 100, 1000] {
        let count_arg = count.to_string();
        let (keys, calls) = scan_all(&db.store, &["COUNT", &count_arg], T0);
        assert_eq!(keys.len(), 500, "COUNT {count}: no duplicates");
        assert_eq!(
            keys.iter().cloned().collect::<BTreeSet<_>>(),
            expected,
            "COUNT {count}"
        );
        assert!(calls <= 500 / count + 1, "COUNT {count}: {calls} calls");
    }
    let (keys, calls) = scan_all(&db.store, &[], T0);
    assert_eq!((keys.len(), calls), (500, 50), "default COUNT is 10");
    let (first_cursor, first) = scan(&db.store, 0, &["COUNT", "5"], T0);
    assert_ne!(first_cursor, 0);
    assert_eq!(first.len(), 5);
}

/// The SCAN guarantee: a key present from the first call to the last is returned at least
/// once, while other keys are inserted and deleted and present keys are overwritten.
#[test]
fn keys_present_throughout_are_returned_despite_churn() {
    let mut db = db_with_keys(300);
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut seen = BTreeSet::new();
    let mut cursor = 0;
    let mut calls = 0;
    loop {
        let (next_cursor, keys) = scan(&db.store, cursor, &["COUNT", "7"], db.now_ms);
        seen.extend(keys);
        calls += 1;
        if next_cursor == 0 {
            break;
        }
        cursor = next_cursor;
        log_phase("churn between calls: new keys, deleted churn keys, overwritten stable keys");
        for _ in 0..20 {
            let n = next() % 1000;
            match next() % 3 {
                0 => db.run(&["SET", &format!("churn:{n}"), "x"]),
                1 => db.run(&["DEL", &format!("churn:{n}")]),
                _ => db.run(&["APPEND", &format!("key:{}", n % 300), "y"]),
            };
        }
    }
    assert!(calls > 30, "the churn happened across many calls ({calls})");
    for i in 0..300 {
        assert!(
            seen.contains(&key(&format!("key:{i}"))),
            "key:{i} was returned"
        );
    }
}

#[test]
fn match_filters_and_count_counts_visited_slots() {
    let mut db = db_with_keys(100);
    for i in 0..20 {
        db.run(&["SET", &format!("user:{i}"), "v"]);
    }
    let (keys, _) = scan_all(&db.store, &["MATCH", "user:*", "COUNT", "10"], T0);
    let keys: BTreeSet<Bytes> = keys.into_iter().collect();
    let expected: BTreeSet<Bytes> = (0..20).map(|i| key(&format!("user:{i}"))).collect();
    assert_eq!(keys, expected);
    // As in Redis, COUNT is work per call: a MATCH can leave a reply short or empty.
    let (cursor, batch) = scan(&db.store, 0, &["MATCH", "user:*", "COUNT", "3"], T0);
    assert_ne!(cursor, 0);
    assert!(batch.len() <= 3);
    let (keys, _) = scan_all(&db.store, &["MATCH", "user:1?", "COUNT", "1000"], T0);
    assert_eq!(keys.len(), 10);
    let (keys, _) = scan_all(&db.store, &["MATCH", "*", "COUNT", "1000"], T0);
    assert_eq!(keys.len(), 120);
}

#[test]
fn type_filter() {
    let db = db_with_keys(30);
    assert_eq!(scan_all(&db.store, &["TYPE", "string"], T0).0.len(), 30);
    assert_eq!(scan_all(&db.store, &["type", "STRING"], T0).0.len(), 30);
    // Redis 7 accepts unknown type names and returns nothing for them.
    assert_eq!(scan_all(&db.store, &["TYPE", "hash"], T0).0.len(), 0);
    assert_eq!(scan_all(&db.store, &["TYPE", "nonsense"], T0).0.len(), 0);
}

#[test]
fn expired_keys_are_skipped() {
    let mut db = db_with_keys(10);
    db.run(&["SET", "short", "v", "PX", "10"]);
    assert_eq!(scan_all(&db.store, &[], db.now_ms).0.len(), 11);
    db.advance(10);
    let (keys, _) = scan_all(&db.store, &[], db.now_ms);
    assert_eq!(keys.len(), 10);
    assert!(!keys.contains(&key("short")));
    let Reply::Array(all) = db.run(&["KEYS", "*"]) else {
        panic!("KEYS replies with an array");
    };
    assert_eq!(all.len(), 10);
}

#[test]
fn scan_errors() {
    let db = db_with_keys(3);
    let invalid = Execution::Read(err("ERR invalid cursor"));
    for cursor in ["abc", "-1", "", "1.5", "18446744073709551616", " 1"] {
        assert_eq!(db.plan(&["SCAN", cursor]), invalid, "cursor {cursor:?}");
    }
    let syntax = Execution::Read(err("ERR syntax error"));
    assert_eq!(db.plan(&["SCAN", "0", "COUNT", "0"]), syntax);
    assert_eq!(db.plan(&["SCAN", "0", "COUNT", "-1"]), syntax);
    assert_eq!(db.plan(&["SCAN", "0", "COUNT"]), syntax);
    assert_eq!(db.plan(&["SCAN", "0", "MATCH"]), syntax);
    assert_eq!(db.plan(&["SCAN", "0", "FOO", "bar"]), syntax);
    assert_eq!(db.plan(&["SCAN", "0", "COUNT", "5", "junk"]), syntax);
    assert_eq!(
        db.plan(&["SCAN", "0", "COUNT", "x"]),
        Execution::Read(err("ERR value is not an integer or out of range"))
    );
    assert_eq!(
        db.plan(&["SCAN"]),
        Execution::Read(err("ERR wrong number of arguments for 'scan' command"))
    );
    // Any cursor is valid: the largest just finds nothing after it.
    assert_eq!(scan(&db.store, u64::MAX, &[], T0), (0, vec![]));
    assert_eq!(
        db.plan(&["SCAN", "+0", "COUNT", "9223372036854775807"]),
        db.plan(&["SCAN", "0", "COUNT", "100"])
    );
}

/// Replicas that applied the same writes in any order hold the same state, so SCAN gives the
/// same replies there, and a cursor from one replica continues on another.
#[test]
fn scan_is_identical_on_replicas() {
    let mut a = Store::new();
    let mut b = Store::new();
    let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
    for k in &keys {
        a.load_entry(key(k), key("v"), None);
    }
    for k in keys.iter().rev() {
        b.load_entry(key(k), key("v"), None);
    }
    assert_eq!(a, b);
    let mut cursor = 0;
    let mut from_a = true;
    let mut collected = Vec::new();
    loop {
        let (next_a, keys_a) = scan(&a, cursor, &["COUNT", "9"], T0);
        let (next_b, keys_b) = scan(&b, cursor, &["COUNT", "9"], T0);
        assert_eq!((next_a, &keys_a), (next_b, &keys_b), "cursor {cursor}");
        collected.extend(if from_a { keys_a } else { keys_b });
        from_a = !from_a;
        if next_a == 0 {
            break;
        }
        cursor = next_a;
    }
    assert_eq!(collected.len(), 200);
    let keys_reply = |s: &Store| s.execute(&args(&["KEYS", "k1*"]), T0);
    assert_eq!(keys_reply(&a), keys_reply(&b));
}
