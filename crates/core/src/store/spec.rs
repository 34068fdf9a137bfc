//! The static table of data commands: Redis 7's arity, write flag and key positions.

use super::CommandSpec;

const fn spec(
    name: &'static str,
    arity: i32,
    write: bool,
    first_key: i32,
    last_key: i32,
    key_step: i32,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        write,
        first_key,
        last_key,
        key_step,
    }
}

const READ: bool = false;
const WRITE: bool = true;

/// Every data command, sorted by name (binary search relies on it; a test checks it).
const SPECS_TABLE: [CommandSpec; 41] = [
    spec("append", 3, WRITE, 1, 1, 1),
    spec("dbsize", 1, READ, 0, 0, 0),
    spec("decr", 2, WRITE, 1, 1, 1),
    spec("decrby", 3, WRITE, 1, 1, 1),
    spec("del", -2, WRITE, 1, -1, 1),
    spec("exists", -2, READ, 1, -1, 1),
    spec("expire", -3, WRITE, 1, 1, 1),
    spec("expireat", -3, WRITE, 1, 1, 1),
    spec("expiretime", 2, READ, 1, 1, 1),
    spec("flushall", -1, WRITE, 0, 0, 0),
    spec("flushdb", -1, WRITE, 0, 0, 0),
    spec("get", 2, READ, 1, 1, 1),
    spec("getdel", 2, WRITE, 1, 1, 1),
    spec("getex", -2, WRITE, 1, 1, 1),
    spec("getrange", 4, READ, 1, 1, 1),
    spec("getset", 3, WRITE, 1, 1, 1),
    spec("incr", 2, WRITE, 1, 1, 1),
    spec("incrby", 3, WRITE, 1, 1, 1),
    spec("keys", 2, READ, 0, 0, 0),
    spec("mget", -2, READ, 1, -1, 1),
    spec("mset", -3, WRITE, 1, -1, 2),
    spec("msetnx", -3, WRITE, 1, -1, 2),
    spec("persist", 2, WRITE, 1, 1, 1),
    spec("pexpire", -3, WRITE, 1, 1, 1),
    spec("pexpireat", -3, WRITE, 1, 1, 1),
    spec("pexpiretime", 2, READ, 1, 1, 1),
    spec("psetex", 4, WRITE, 1, 1, 1),
    spec("pttl", 2, READ, 1, 1, 1),
    spec("rename", 3, WRITE, 1, 2, 1),
    spec("renamenx", 3, WRITE, 1, 2, 1),
    spec("scan", -2, READ, 0, 0, 0),
    spec("set", -3, WRITE, 1, 1, 1),
    spec("setex", 4, WRITE, 1, 1, 1),
    spec("setnx", 3, WRITE, 1, 1, 1),
    spec("setrange", 4, WRITE, 1, 1, 1),
    spec("strlen", 2, READ, 1, 1, 1),
    spec("substr", 4, READ, 1, 1, 1),
    spec("touch", -2, READ, 1, -1, 1),
    spec("ttl", 2, READ, 1, 1, 1),
    spec("type", 2, READ, 1, 1, 1),
    spec("unlink", -2, WRITE, 1, -1, 1),
];

/// Longest command name in the table; longer names are not data commands.
const NAME_LEN_MAX: usize = 11;

/// Every data command's spec, sorted by name.
pub(super) static SPECS: [CommandSpec; 41] = SPECS_TABLE;

/// Each name of `SPECS` packed into an integer (see [`pack`]), in the same order: the lookup on
/// every command compares integers rather than strings.
static PACKED_NAMES: [u128; 41] = {
    let mut keys = [0u128; 41];
    let mut i = 0;
    while i < SPECS_TABLE.len() {
        keys[i] = pack(SPECS_TABLE[i].name.as_bytes());
        i += 1;
    }
    keys
};

/// A name of at most 16 bytes as a big-endian integer, zero-padded on the right: for names
/// without NUL bytes integer order is the names' byte order, so `PACKED_NAMES` stays sorted.
const fn pack(name: &[u8]) -> u128 {
    let mut key = 0u128;
    let mut i = 0;
    while i < 16 {
        key <<= 8;
        if i < name.len() {
            key |= name[i].to_ascii_lowercase() as u128;
        }
        i += 1;
    }
    key
}

/// The spec named `name`, compared ASCII case-insensitively.
pub(super) fn find(name: &[u8]) -> Option<&'static CommandSpec> {
    // Longer names are none of ours; a NUL byte would alias the padding.
    if name.len() > NAME_LEN_MAX || name.contains(&0) {
        return None;
    }
    PACKED_NAMES
        .binary_search(&pack(name))
        .ok()
        .and_then(|i| SPECS.get(i))
}

/// Whether `argument_count` (name included) satisfies a Redis arity.
pub(super) fn arity_allows(arity: i32, argument_count: usize) -> bool {
    let count = i64::try_from(argument_count).unwrap_or(i64::MAX);
    let arity = i64::from(arity);
    if arity >= 0 {
        count == arity
    } else {
        count >= -arity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_and_lower_case() {
        for pair in SPECS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} before {}",
                pair[0].name,
                pair[1].name
            );
        }
        for s in &SPECS {
            assert_eq!(s.name, s.name.to_ascii_lowercase());
            assert!(s.name.len() <= NAME_LEN_MAX, "{} fits NAME_LEN_MAX", s.name);
            assert_ne!(s.arity, 0, "{} has an arity", s.name);
            if s.first_key == 0 {
                assert_eq!((s.last_key, s.key_step), (0, 0), "{} has no keys", s.name);
            } else {
                assert!(s.key_step >= 1, "{} key step", s.name);
            }
        }
    }

    #[test]
    fn find_is_case_insensitive() {
        assert_eq!(find(b"GeT").map(|s| s.name), Some("get"));
        assert_eq!(find(b"PEXPIRETIME").map(|s| s.name), Some("pexpiretime"));
        assert_eq!(find(b"ping"), None);
        assert_eq!(find(b""), None);
        assert_eq!(find(b"getgetgetgetget"), None);
        assert_eq!(find(b"g\xffet"), None);
    }

    #[test]
    fn arity() {
        assert!(arity_allows(2, 2));
        assert!(!arity_allows(2, 3));
        assert!(!arity_allows(2, 1));
        assert!(arity_allows(-3, 3));
        assert!(arity_allows(-3, 10));
        assert!(!arity_allows(-3, 2));
        assert!(arity_allows(-1, 1));
    }
}
