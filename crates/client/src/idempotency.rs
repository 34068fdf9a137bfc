//! Which operations may run twice: [`Idempotency`] and the table behind
//! [`Idempotency::of`].

/// Whether running an operation twice leaves the same state as running it once, which decides
/// whether the client may retry it when it cannot know that the first attempt did not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotency {
    /// Safe to run again: reads, `SET` without `NX`/`XX`/`GET`, `MSET`, `DEL`, ... Retried
    /// across a failover whatever happened to the earlier attempt. The reply is the last
    /// attempt's: a retried `DEL` counts only the keys the last attempt deleted, and relative
    /// expiry times (`SET ... EX`, `EXPIRE`) count from the last attempt.
    Idempotent,
    /// Not safe to run again: `INCR`, `APPEND`, `SETNX`, `GETDEL`, ... Retried only when the
    /// earlier attempt certainly did not run; otherwise the operation fails with
    /// [`Error::Indeterminate`](crate::Error::Indeterminate).
    NonIdempotent,
}

/// Data commands (lower case) whose effect does not depend on the state they run on, so a
/// second run changes nothing: always-idempotent writes. Every read is idempotent too
/// (commands the server's table marks as not writing). Writes not listed here, and commands
/// this client does not know, are treated as non-idempotent.
const IDEMPOTENT_WRITES: &[&str] = &[
    "del",
    "expireat",
    "flushall",
    "flushdb",
    "getex",
    "mset",
    "persist",
    "pexpireat",
    "psetex",
    "setex",
    "setrange",
    "unlink",
];

/// Writes that are idempotent only without a conditional or reply-changing option: `SET`
/// with `NX`, `XX` or `GET` depends on (or reports) the state it found; `EXPIRE` with `NX`,
/// `XX`, `GT` or `LT` depends on the expiry it found.
const IDEMPOTENT_UNLESS_OPTION: &[(&str, &[&str])] = &[
    ("set", &["nx", "xx", "get"]),
    ("expire", &["nx", "xx", "gt", "lt"]),
    ("pexpire", &["nx", "xx", "gt", "lt"]),
];

/// Connection commands the server answers itself that read only: safe to repeat.
const IDEMPOTENT_CONNECTION_COMMANDS: &[&str] = &["echo", "info", "ping", "role", "time"];

impl Idempotency {
    /// The idempotency of the command `args` (its name first, any case), by the table above:
    /// reads, the always-idempotent writes and the read-only connection commands are
    /// [`Idempotency::Idempotent`]; `SET` and `EXPIRE`/`PEXPIRE` are unless an option makes
    /// them conditional; every other command (`INCR`, `INCRBY`, `DECR`, `APPEND`, `SETNX`,
    /// `GETSET`, `GETDEL`, `MSETNX`, `RENAME`, unknown ones) is
    /// [`Idempotency::NonIdempotent`].
    #[must_use]
    pub fn of<A: AsRef<[u8]>>(args: &[A]) -> Idempotency {
        let Some(name) = args.first() else {
            return Idempotency::NonIdempotent;
        };
        let name = String::from_utf8_lossy(name.as_ref()).to_ascii_lowercase();
        if IDEMPOTENT_WRITES.contains(&name.as_str())
            || IDEMPOTENT_CONNECTION_COMMANDS.contains(&name.as_str())
        {
            return Idempotency::Idempotent;
        }
        if let Some((_, options)) = IDEMPOTENT_UNLESS_OPTION.iter().find(|(n, _)| *n == name) {
            // Options follow the key and the value (`SET k v NX`) or the time (`EXPIRE k 10 GT`).
            let conditional = args.iter().skip(3).any(|arg| {
                options
                    .iter()
                    .any(|o| arg.as_ref().eq_ignore_ascii_case(o.as_bytes()))
            });
            return if conditional {
                Idempotency::NonIdempotent
            } else {
                Idempotency::Idempotent
            };
        }
        if is_read(name.as_bytes()) {
            Idempotency::Idempotent
        } else {
            Idempotency::NonIdempotent
        }
    }
}

/// Whether `name` is a data command the server's table marks as not writing: it may go to a
/// replica, and a second run changes nothing.
pub(crate) fn is_read(name: &[u8]) -> bool {
    replikv_core::Store::command_spec(name).is_some_and(|spec| !spec.write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Idempotency::{Idempotent, NonIdempotent};

    /// The table: which commands a failover may make the client send twice.
    #[test]
    fn idempotency_table() {
        let cases: &[(&[&str], Idempotency)] = &[
            (&["GET", "k"], Idempotent),
            (&["get", "k"], Idempotent),
            (&["MGET", "a", "b"], Idempotent),
            (&["EXISTS", "a"], Idempotent),
            (&["STRLEN", "a"], Idempotent),
            (&["SCAN", "0"], Idempotent),
            (&["SET", "k", "v"], Idempotent),
            (&["SET", "k", "v", "EX", "10"], Idempotent),
            (&["SET", "k", "v", "NX"], NonIdempotent),
            (&["set", "k", "v", "xx"], NonIdempotent),
            (&["SET", "k", "v", "GET"], NonIdempotent),
            // Option words are options only after the value: a key or value "nx" is not one.
            (&["SET", "nx", "v"], Idempotent),
            (&["SET", "k", "nx"], Idempotent),
            (&["MSET", "a", "1", "b", "2"], Idempotent),
            (&["DEL", "a", "b"], Idempotent),
            (&["UNLINK", "a"], Idempotent),
            (&["EXPIRE", "k", "10"], Idempotent),
            (&["EXPIRE", "k", "10", "GT"], NonIdempotent),
            (&["SETRANGE", "k", "0", "x"], Idempotent),
            (&["INCR", "k"], NonIdempotent),
            (&["INCRBY", "k", "2"], NonIdempotent),
            (&["DECR", "k"], NonIdempotent),
            (&["APPEND", "k", "x"], NonIdempotent),
            (&["SETNX", "k", "v"], NonIdempotent),
            (&["GETSET", "k", "v"], NonIdempotent),
            (&["GETDEL", "k"], NonIdempotent),
            (&["MSETNX", "a", "1"], NonIdempotent),
            (&["RENAME", "a", "b"], NonIdempotent),
            (&["PING"], Idempotent),
            (&["NOSUCHCOMMAND", "x"], NonIdempotent),
            (&[], NonIdempotent),
        ];
        for (args, want) in cases {
            assert_eq!(Idempotency::of(args), *want, "{args:?}");
        }
    }

    #[test]
    fn reads_are_the_commands_the_server_marks_as_not_writing() {
        assert!(is_read(b"GET"));
        assert!(is_read(b"mget"));
        assert!(!is_read(b"SET"));
        assert!(!is_read(b"INCR"));
        assert!(!is_read(b"PING"), "connection commands go to the leader");
        assert!(!is_read(b"nosuchcommand"));
    }
}
