//! Planning client commands: argument parsing, Redis 7's replies and error texts, and the log
//! commands each write becomes.
//!
//! Every handler parses and validates all of its arguments before looking at the keyspace, and
//! returns [`Execution::Read`] for any error, so a rejected command never logs anything.

use super::{spec, Entry, Execution, Store};
use crate::command::{Command, Expiry};
use crate::glob::glob_match;
use crate::reply::Reply;
use bytes::Bytes;
use std::collections::BTreeSet;

const ERR_SYNTAX: &str = "ERR syntax error";
const ERR_NOT_INTEGER: &str = "ERR value is not an integer or out of range";
const ERR_OVERFLOW: &str = "ERR increment or decrement would overflow";
const ERR_DECREMENT_OVERFLOW: &str = "ERR decrement would overflow";
const ERR_INVALID_CURSOR: &str = "ERR invalid cursor";
const ERR_NO_SUCH_KEY: &str = "ERR no such key";
const ERR_OFFSET_RANGE: &str = "ERR offset is out of range";
const ERR_STRING_TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

/// Largest string value, Redis's default `proto-max-bulk-len` (512 MiB).
pub(crate) const VALUE_LEN_MAX: usize = 512 * 1024 * 1024;

/// How many bytes of the command name, and of the arguments together, Redis quotes in its
/// "unknown command" error.
const UNKNOWN_COMMAND_QUOTE_MAX: usize = 128;

/// `SCAN`'s default `COUNT`.
const SCAN_COUNT_DEFAULT: usize = 10;

fn error(text: &str) -> Execution {
    Execution::Read(Reply::error(text))
}

/// A write plan: `Read(reply)` when there is nothing to log.
fn plan(commands: Vec<Command>, reply: Reply) -> Execution {
    if commands.is_empty() {
        Execution::Read(reply)
    } else {
        Execution::Write { commands, reply }
    }
}

fn bulk_or_nil(entry: Option<&Entry>) -> Reply {
    entry.map_or(Reply::Nil, |e| Reply::Bulk(e.value.clone()))
}

fn integer(n: usize) -> Reply {
    Reply::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Formats `ERR unknown command` exactly as Redis 7's `commandCheckExistence`.
fn unknown_command(args: &[Bytes]) -> Reply {
    let name = args
        .first()
        .map_or(&[][..], |a| c_string(a, UNKNOWN_COMMAND_QUOTE_MAX));
    let mut quoted = Vec::new();
    for arg in args.iter().skip(1) {
        if quoted.len() >= UNKNOWN_COMMAND_QUOTE_MAX {
            break;
        }
        let room = UNKNOWN_COMMAND_QUOTE_MAX - quoted.len();
        quoted.push(b'\'');
        quoted.extend_from_slice(c_string(arg, room));
        quoted.extend_from_slice(b"' ");
    }
    let mut text = b"ERR unknown command '".to_vec();
    text.extend_from_slice(name);
    text.extend_from_slice(b"', with args beginning with: ");
    text.extend_from_slice(&quoted);
    Reply::Error(error_text(&text))
}

/// What C's `%.<max>s` prints of `bytes`: up to the first NUL, at most `max` bytes.
fn c_string(bytes: &[u8], max: usize) -> &[u8] {
    let end = bytes
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(bytes.len())
        .min(max);
    bytes.get(..end).unwrap_or(bytes)
}

/// An error text with CR and LF replaced by spaces, as Redis does to keep the protocol valid.
fn error_text(bytes: &[u8]) -> String {
    let cleaned: Vec<u8> = bytes
        .iter()
        .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b })
        .collect();
    String::from_utf8_lossy(&cleaned).into_owned()
}

fn wrong_arity(name: &str) -> Execution {
    error(&format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

fn invalid_expire(name: &str) -> Reply {
    Reply::Error(format!("ERR invalid expire time in '{name}' command"))
}

/// Parses a 64-bit signed integer exactly as Redis's `string2ll`: optional `-`, no `+`, no
/// spaces, no leading zeros, at most 20 bytes.
pub(crate) fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() >= 21 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let (&first, rest) = digits.split_first()?;
    if !(b'1'..=b'9').contains(&first) {
        return None;
    }
    let mut value = u64::from(first - b'0');
    for &digit in rest {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    let value = i128::from(value);
    i64::try_from(if negative { -value } else { value }).ok()
}

/// Parses a `SCAN` cursor: an unsigned 64-bit decimal.
fn parse_cursor(s: &[u8]) -> Option<u64> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

fn now_i64(now_ms: u64) -> i64 {
    i64::try_from(now_ms).unwrap_or(i64::MAX)
}

/// An absolute expiry in Unix ms as stored: positive by construction, so the conversion only
/// guards against misuse.
fn stored_ms(at_ms: i64) -> u64 {
    u64::try_from(at_ms).unwrap_or(0)
}

/// A stored expiry as Redis's signed `long long`.
fn signed_ms(at_ms: u64) -> i64 {
    i64::try_from(at_ms).unwrap_or(i64::MAX)
}

/// The unit and base of an expiry option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExpireUnit {
    /// `EX`: seconds from now.
    Ex,
    /// `PX`: milliseconds from now.
    Px,
    /// `EXAT`: Unix seconds.
    ExAt,
    /// `PXAT`: Unix milliseconds.
    PxAt,
}

impl ExpireUnit {
    fn is_seconds(self) -> bool {
        matches!(self, ExpireUnit::Ex | ExpireUnit::ExAt)
    }

    fn is_relative(self) -> bool {
        matches!(self, ExpireUnit::Ex | ExpireUnit::Px)
    }
}

/// Turns an expiry option into absolute Unix ms as Redis's `getExpireMillisecondsOrReply`:
/// the value must be positive, and the result must neither overflow nor be <= 0.
fn expire_at_ms(unit: ExpireUnit, arg: &[u8], now_ms: u64, name: &str) -> Result<i64, Reply> {
    let value = parse_i64(arg).ok_or_else(|| Reply::error(ERR_NOT_INTEGER))?;
    if value <= 0 {
        return Err(invalid_expire(name));
    }
    let mut at = if unit.is_seconds() {
        value
            .checked_mul(1000)
            .ok_or_else(|| invalid_expire(name))?
    } else {
        value
    };
    if unit.is_relative() {
        at = at
            .checked_add(now_i64(now_ms))
            .ok_or_else(|| invalid_expire(name))?;
    }
    Ok(at)
}

/// Options of `SET` and `GETEX`, parsed as Redis's `parseExtendedStringArgumentsOrReply`:
/// conflicting options are a syntax error, a repeated option is allowed (the last wins).
#[derive(Default)]
struct StringOptions<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keep_ttl: bool,
    persist: bool,
    expire: Option<(ExpireUnit, &'a Bytes)>,
}

/// Which command's options [`StringOptions::parse`] accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OptionsFor {
    Set,
    GetEx,
}

impl<'a> StringOptions<'a> {
    fn parse(args: &'a [Bytes], command: OptionsFor) -> Result<StringOptions<'a>, Reply> {
        let set = command == OptionsFor::Set;
        let mut o = StringOptions::default();
        let mut i = 0;
        while let Some(opt) = args.get(i) {
            let next = args.get(i + 1);
            let expire_unit = o.expire.map(|(unit, _)| unit);
            // An expiry option conflicts with KEEPTTL, PERSIST and any other expiry option.
            let expire_allowed = |unit| {
                !o.keep_ttl && !o.persist && expire_unit.is_none_or(|u| u == unit) && next.is_some()
            };
            if is(opt, "nx") && !o.xx && set {
                o.nx = true;
            } else if is(opt, "xx") && !o.nx && set {
                o.xx = true;
            } else if is(opt, "get") && set {
                o.get = true;
            } else if is(opt, "keepttl") && !o.persist && o.expire.is_none() && set {
                o.keep_ttl = true;
            } else if is(opt, "persist") && !set && o.expire.is_none() && !o.keep_ttl {
                o.persist = true;
            } else if let Some(unit) = [
                ("ex", ExpireUnit::Ex),
                ("px", ExpireUnit::Px),
                ("exat", ExpireUnit::ExAt),
                ("pxat", ExpireUnit::PxAt),
            ]
            .into_iter()
            .find_map(|(word, unit)| (is(opt, word) && expire_allowed(unit)).then_some(unit))
            {
                o.expire = next.map(|value| (unit, value));
                i += 1;
            } else {
                return Err(Reply::error(ERR_SYNTAX));
            }
            i += 1;
        }
        Ok(o)
    }
}

/// What [`Store::set_generic`] does, once its arguments are valid.
struct SetPlan<'a> {
    key: &'a Bytes,
    value: &'a Bytes,
    nx: bool,
    xx: bool,
    /// Reply with the old value instead of `ok`/`aborted`.
    get: bool,
    keep_ttl: bool,
    /// Absolute expiry in Unix ms, already validated.
    at_ms: Option<i64>,
    /// Reply when the value was set.
    ok: Reply,
    /// Reply when NX or XX prevented the set.
    aborted: Reply,
}

/// Which of `EXPIRE`'s NX/XX/GT/LT conditions apply.
#[derive(Default)]
struct ExpireConditions {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

impl ExpireConditions {
    /// Parses the options as Redis's `parseExtendedExpireArgumentsOrReply`.
    fn parse(args: &[Bytes]) -> Result<ExpireConditions, Reply> {
        let mut c = ExpireConditions::default();
        for opt in args {
            if is(opt, "nx") {
                c.nx = true;
            } else if is(opt, "xx") {
                c.xx = true;
            } else if is(opt, "gt") {
                c.gt = true;
            } else if is(opt, "lt") {
                c.lt = true;
            } else {
                let mut text = b"ERR Unsupported option ".to_vec();
                text.extend_from_slice(c_string(opt, usize::MAX));
                return Err(Reply::Error(error_text(&text)));
            }
        }
        if c.nx && (c.xx || c.gt || c.lt) {
            return Err(Reply::error(
                "ERR NX and XX, GT or LT options at the same time are not compatible",
            ));
        }
        if c.gt && c.lt {
            return Err(Reply::error(
                "ERR GT and LT options at the same time are not compatible",
            ));
        }
        Ok(c)
    }

    /// Whether a key whose current expiry is `current` (None = no TTL) may get expiry `at`.
    fn allow(&self, current: Option<i64>, at: i64) -> bool {
        if self.nx && current.is_some() {
            return false;
        }
        if self.xx && current.is_none() {
            return false;
        }
        // No TTL counts as an infinite one: GT always fails, LT always passes.
        if self.gt && current.is_none_or(|c| at <= c) {
            return false;
        }
        if self.lt && current.is_some_and(|c| at >= c) {
            return false;
        }
        true
    }
}

impl Store {
    /// Dispatches a command: existence, then arity, then the handler.
    pub(super) fn execute_command(&self, args: &[Bytes], now_ms: u64) -> Execution {
        let Some(spec) = args.first().and_then(|name| Store::command_spec(name)) else {
            return Execution::Read(unknown_command(args));
        };
        if !spec::arity_allows(spec.arity, args.len()) {
            return wrong_arity(spec.name);
        }
        let now = now_ms;
        match (spec.name, args) {
            ("get", [_, key]) => Execution::Read(bulk_or_nil(self.live(key, now))),
            ("set", [_, key, value, options @ ..]) => self.set(key, value, options, now),
            ("setnx", [_, key, value]) => self.set_generic(
                SetPlan {
                    key,
                    value,
                    nx: true,
                    xx: false,
                    get: false,
                    keep_ttl: false,
                    at_ms: None,
                    ok: Reply::Integer(1),
                    aborted: Reply::Integer(0),
                },
                now,
            ),
            ("setex", [_, key, seconds, value]) => {
                self.set_with_expiry(key, value, ExpireUnit::Ex, seconds, "setex", now)
            }
            ("psetex", [_, key, ms, value]) => {
                self.set_with_expiry(key, value, ExpireUnit::Px, ms, "psetex", now)
            }
            ("getset", [_, key, value]) => self.set_generic(
                SetPlan {
                    key,
                    value,
                    nx: false,
                    xx: false,
                    get: true,
                    keep_ttl: false,
                    at_ms: None,
                    ok: Reply::Ok,
                    aborted: Reply::Nil,
                },
                now,
            ),
            ("getdel", [_, key]) => self.getdel(key, now),
            ("getex", [_, key, options @ ..]) => self.getex(key, options, now),
            ("del" | "unlink", [_, keys @ ..]) => self.del(keys, now),
            ("exists" | "touch", [_, keys @ ..]) => Execution::Read(integer(
                keys.iter().filter(|k| self.live(k, now).is_some()).count(),
            )),
            ("incr", [_, key]) => self.incr_by(key, 1, now),
            ("decr", [_, key]) => self.incr_by(key, -1, now),
            ("incrby", [_, key, delta]) => match parse_i64(delta) {
                Some(delta) => self.incr_by(key, delta, now),
                None => error(ERR_NOT_INTEGER),
            },
            ("decrby", [_, key, delta]) => match parse_i64(delta) {
                Some(i64::MIN) => error(ERR_DECREMENT_OVERFLOW),
                Some(delta) => self.incr_by(key, -delta, now),
                None => error(ERR_NOT_INTEGER),
            },
            ("append", [_, key, suffix]) => self.append(key, suffix, now),
            ("strlen", [_, key]) => {
                Execution::Read(integer(self.live(key, now).map_or(0, |e| e.value.len())))
            }
            ("getrange" | "substr", [_, key, start, end]) => self.getrange(key, start, end, now),
            ("setrange", [_, key, offset, value]) => self.setrange(key, offset, value, now),
            ("mget", [_, keys @ ..]) => Execution::Read(Reply::Array(
                keys.iter()
                    .map(|k| bulk_or_nil(self.live(k, now)))
                    .collect(),
            )),
            ("mset", [_, pairs @ ..]) => self
                .mset(pairs, false, now)
                .unwrap_or_else(|| wrong_arity("mset")),
            ("msetnx", [_, pairs @ ..]) => self
                .mset(pairs, true, now)
                .unwrap_or_else(|| wrong_arity("msetnx")),
            ("expire", [_, key, value, options @ ..]) => {
                self.expire(key, value, options, ExpireUnit::Ex, "expire", now)
            }
            ("pexpire", [_, key, value, options @ ..]) => {
                self.expire(key, value, options, ExpireUnit::Px, "pexpire", now)
            }
            ("expireat", [_, key, value, options @ ..]) => {
                self.expire(key, value, options, ExpireUnit::ExAt, "expireat", now)
            }
            ("pexpireat", [_, key, value, options @ ..]) => {
                self.expire(key, value, options, ExpireUnit::PxAt, "pexpireat", now)
            }
            ("ttl", [_, key]) => self.ttl(key, false, false, now),
            ("pttl", [_, key]) => self.ttl(key, true, false, now),
            ("expiretime", [_, key]) => self.ttl(key, false, true, now),
            ("pexpiretime", [_, key]) => self.ttl(key, true, true, now),
            ("persist", [_, key]) => self.persist(key, now),
            ("type", [_, key]) => {
                Execution::Read(Reply::Status(if self.live(key, now).is_some() {
                    "string"
                } else {
                    "none"
                }))
            }
            ("rename", [_, from, to]) => self.rename(from, to, false, now),
            ("renamenx", [_, from, to]) => self.rename(from, to, true, now),
            ("keys", [_, pattern]) => {
                let (_, keys) = self.scan_slots(0, usize::MAX, now, |k| key_matches(pattern, k));
                Execution::Read(Reply::Array(keys.into_iter().map(Reply::Bulk).collect()))
            }
            ("scan", [_, cursor, options @ ..]) => self.scan(cursor, options, now),
            ("dbsize", [_]) => Execution::Read(integer(self.entries.len())),
            ("flushall" | "flushdb", [_, options @ ..]) => self.flushall(options),
            _ => wrong_arity(spec.name),
        }
    }

    /// `Del` for those of `keys` that are present but logically expired (once each), or
    /// nothing: planned before any command that would otherwise see their stale value or TTL.
    /// [`Store::live`] and [`Store::expired_cleanup`] for one key, with one lookup: the live
    /// entry, and the `Del` a logically expired one needs.
    fn live_with_cleanup(&self, key: &Bytes, now_ms: u64) -> (Option<&Entry>, Vec<Command>) {
        match self.entry(key) {
            Some(e) if e.is_live(now_ms) => (Some(e), Vec::new()),
            Some(_) => (
                None,
                vec![Command::Del {
                    keys: vec![key.clone()],
                }],
            ),
            None => (None, Vec::new()),
        }
    }

    fn expired_cleanup<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k Bytes>,
        now_ms: u64,
    ) -> Vec<Command> {
        let mut seen = BTreeSet::new();
        let expired: Vec<Bytes> = keys
            .into_iter()
            .filter(|k| self.entry(k).is_some_and(|e| !e.is_live(now_ms)))
            .filter(|k| seen.insert(*k))
            .cloned()
            .collect();
        if expired.is_empty() {
            Vec::new()
        } else {
            vec![Command::Del { keys: expired }]
        }
    }

    fn set(&self, key: &Bytes, value: &Bytes, options: &[Bytes], now_ms: u64) -> Execution {
        let o = match StringOptions::parse(options, OptionsFor::Set) {
            Ok(o) => o,
            Err(reply) => return Execution::Read(reply),
        };
        let at_ms = match o.expire {
            Some((unit, arg)) => match expire_at_ms(unit, arg, now_ms, "set") {
                Ok(at) => Some(at),
                Err(reply) => return Execution::Read(reply),
            },
            None => None,
        };
        self.set_generic(
            SetPlan {
                key,
                value,
                nx: o.nx,
                xx: o.xx,
                get: o.get,
                keep_ttl: o.keep_ttl,
                at_ms,
                ok: Reply::Ok,
                aborted: Reply::Nil,
            },
            now_ms,
        )
    }

    fn set_with_expiry(
        &self,
        key: &Bytes,
        value: &Bytes,
        unit: ExpireUnit,
        amount: &Bytes,
        name: &str,
        now_ms: u64,
    ) -> Execution {
        match expire_at_ms(unit, amount, now_ms, name) {
            Ok(at) => self.set_generic(
                SetPlan {
                    key,
                    value,
                    nx: false,
                    xx: false,
                    get: false,
                    keep_ttl: false,
                    at_ms: Some(at),
                    ok: Reply::Ok,
                    aborted: Reply::Nil,
                },
                now_ms,
            ),
            Err(reply) => Execution::Read(reply),
        }
    }

    /// Redis's `setGenericCommand`, after argument validation.
    fn set_generic(&self, p: SetPlan<'_>, now_ms: u64) -> Execution {
        let (live, mut commands) = self.live_with_cleanup(p.key, now_ms);
        let old = bulk_or_nil(live);
        let found = live.is_some();
        if (p.nx && found) || (p.xx && !found) {
            return plan(commands, if p.get { old } else { p.aborted });
        }
        let reply = if p.get { old } else { p.ok };
        match p.at_ms {
            // An expiry already past leaves the key absent, as if it were set then expired.
            Some(at) if at <= now_i64(now_ms) => {
                if found {
                    commands.push(Command::Del {
                        keys: vec![p.key.clone()],
                    });
                }
            }
            Some(at) => commands.push(Command::Set {
                key: p.key.clone(),
                value: p.value.clone(),
                expiry: Expiry::AtMs(stored_ms(at)),
            }),
            None => commands.push(Command::Set {
                key: p.key.clone(),
                value: p.value.clone(),
                expiry: if p.keep_ttl {
                    Expiry::Keep
                } else {
                    Expiry::Clear
                },
            }),
        }
        plan(commands, reply)
    }

    fn getdel(&self, key: &Bytes, now_ms: u64) -> Execution {
        match self.live(key, now_ms) {
            Some(e) => plan(
                vec![Command::Del {
                    keys: vec![key.clone()],
                }],
                Reply::Bulk(e.value.clone()),
            ),
            None => plan(self.expired_cleanup([key], now_ms), Reply::Nil),
        }
    }

    /// Redis's `getexCommand`: options, then the key, then the expiry's validity.
    fn getex(&self, key: &Bytes, options: &[Bytes], now_ms: u64) -> Execution {
        let o = match StringOptions::parse(options, OptionsFor::GetEx) {
            Ok(o) => o,
            Err(reply) => return Execution::Read(reply),
        };
        let Some(entry) = self.live(key, now_ms) else {
            return plan(self.expired_cleanup([key], now_ms), Reply::Nil);
        };
        let reply = Reply::Bulk(entry.value.clone());
        let command = match o.expire {
            Some((unit, arg)) => match expire_at_ms(unit, arg, now_ms, "getex") {
                Ok(at) if at <= now_i64(now_ms) => Some(Command::Del {
                    keys: vec![key.clone()],
                }),
                Ok(at) => Some(Command::ExpireAt {
                    key: key.clone(),
                    at_ms: stored_ms(at),
                }),
                Err(reply) => return Execution::Read(reply),
            },
            None if o.persist && entry.expire_at_ms.is_some() => {
                Some(Command::Persist { key: key.clone() })
            }
            None => None,
        };
        plan(command.into_iter().collect(), reply)
    }

    fn del(&self, keys: &[Bytes], now_ms: u64) -> Execution {
        let mut seen = BTreeSet::new();
        let present: Vec<&Bytes> = keys
            .iter()
            .filter(|k| self.entry(k).is_some() && seen.insert(*k))
            .collect();
        let deleted = present
            .iter()
            .filter(|k| self.live(k, now_ms).is_some())
            .count();
        let commands = if present.is_empty() {
            Vec::new()
        } else {
            vec![Command::Del {
                keys: present.into_iter().cloned().collect(),
            }]
        };
        plan(commands, integer(deleted))
    }

    /// Redis's `incrDecrCommand`: the value must parse as `string2ll`, the sum must not
    /// overflow; the TTL is kept.
    fn incr_by(&self, key: &Bytes, delta: i64, now_ms: u64) -> Execution {
        let old = match self.live(key, now_ms) {
            Some(e) => match parse_i64(&e.value) {
                Some(v) => v,
                None => return error(ERR_NOT_INTEGER),
            },
            None => 0,
        };
        let Some(new) = old.checked_add(delta) else {
            return error(ERR_OVERFLOW);
        };
        let mut commands = self.expired_cleanup([key], now_ms);
        commands.push(Command::Set {
            key: key.clone(),
            value: Bytes::from(new.to_string()),
            expiry: Expiry::Keep,
        });
        plan(commands, Reply::Integer(new))
    }

    fn append(&self, key: &Bytes, suffix: &Bytes, now_ms: u64) -> Execution {
        let live = self.live(key, now_ms);
        let old_len = live.map_or(0, |e| e.value.len());
        let Some(new_len) = old_len
            .checked_add(suffix.len())
            .filter(|&n| n <= VALUE_LEN_MAX)
        else {
            return error(ERR_STRING_TOO_LONG);
        };
        if live.is_some() && suffix.is_empty() {
            return Execution::Read(integer(old_len));
        }
        let mut commands = self.expired_cleanup([key], now_ms);
        commands.push(Command::Append {
            key: key.clone(),
            suffix: suffix.clone(),
        });
        plan(commands, integer(new_len))
    }

    /// Redis's `getrangeCommand`: inclusive range, negative indexes from the end, clamped.
    fn getrange(&self, key: &Bytes, start: &[u8], end: &[u8], now_ms: u64) -> Execution {
        let (Some(start), Some(end)) = (parse_i64(start), parse_i64(end)) else {
            return error(ERR_NOT_INTEGER);
        };
        let empty = Execution::Read(Reply::Bulk(Bytes::new()));
        let Some(entry) = self.live(key, now_ms) else {
            return empty;
        };
        if start < 0 && end < 0 && start > end {
            return empty;
        }
        let len = i128::try_from(entry.value.len()).unwrap_or(i128::MAX);
        let from_end = |i: i64| {
            if i < 0 {
                len + i128::from(i)
            } else {
                i128::from(i)
            }
        };
        let start = from_end(start).max(0);
        let end = from_end(end).max(0).min(len - 1);
        if start > end || len == 0 {
            return empty;
        }
        match (usize::try_from(start), usize::try_from(end)) {
            (Ok(start), Ok(end)) => Execution::Read(Reply::Bulk(entry.value.slice(start..=end))),
            _ => empty,
        }
    }

    /// Redis's `setrangeCommand`, planned as a whole-value `Set` that keeps the TTL.
    fn setrange(&self, key: &Bytes, offset: &[u8], value: &Bytes, now_ms: u64) -> Execution {
        let Some(offset) = parse_i64(offset) else {
            return error(ERR_NOT_INTEGER);
        };
        let Ok(offset) = usize::try_from(offset) else {
            return error(ERR_OFFSET_RANGE);
        };
        let live = self.live(key, now_ms);
        let old_len = live.map_or(0, |e| e.value.len());
        if value.is_empty() {
            return plan(self.expired_cleanup([key], now_ms), integer(old_len));
        }
        let Some(end) = offset
            .checked_add(value.len())
            .filter(|&n| n <= VALUE_LEN_MAX)
        else {
            return error(ERR_STRING_TOO_LONG);
        };
        let mut new = live.map_or_else(Vec::new, |e| e.value.to_vec());
        if new.len() < end {
            new.resize(end, 0);
        }
        let new_len = new.len();
        if let Some(dst) = new.get_mut(offset..end) {
            dst.copy_from_slice(value);
        }
        let mut commands = self.expired_cleanup([key], now_ms);
        commands.push(Command::Set {
            key: key.clone(),
            value: Bytes::from(new),
            expiry: Expiry::Keep,
        });
        plan(commands, integer(new_len))
    }

    /// `MSET` (`only_if_none` false) and `MSETNX`; `None` when the pairs are not whole.
    fn mset(&self, args: &[Bytes], only_if_none: bool, now_ms: u64) -> Option<Execution> {
        if args.is_empty() || !args.len().is_multiple_of(2) {
            return None;
        }
        let keys = args.iter().step_by(2);
        let commands = self.expired_cleanup(keys.clone(), now_ms);
        if only_if_none && keys.clone().any(|k| self.live(k, now_ms).is_some()) {
            return Some(plan(commands, Reply::Integer(0)));
        }
        let pairs = args.chunks_exact(2).filter_map(|pair| match pair {
            [key, value] => Some((key.clone(), value.clone())),
            _ => None,
        });
        let mut commands = commands;
        commands.push(Command::MSet {
            pairs: pairs.collect(),
        });
        Some(plan(
            commands,
            if only_if_none {
                Reply::Integer(1)
            } else {
                Reply::Ok
            },
        ))
    }

    /// Redis 7's `expireGenericCommand`.
    fn expire(
        &self,
        key: &Bytes,
        amount: &[u8],
        options: &[Bytes],
        unit: ExpireUnit,
        name: &str,
        now_ms: u64,
    ) -> Execution {
        let conditions = match ExpireConditions::parse(options) {
            Ok(c) => c,
            Err(reply) => return Execution::Read(reply),
        };
        let Some(amount) = parse_i64(amount) else {
            return error(ERR_NOT_INTEGER);
        };
        // Negative values are allowed (the key is then deleted); only overflow is an error.
        let at = if unit.is_seconds() {
            amount.checked_mul(1000)
        } else {
            Some(amount)
        };
        let base = if unit.is_relative() {
            now_i64(now_ms)
        } else {
            0
        };
        let Some(at) = at.and_then(|at| at.checked_add(base)) else {
            return Execution::Read(invalid_expire(name));
        };
        let Some(entry) = self.live(key, now_ms) else {
            return plan(self.expired_cleanup([key], now_ms), Reply::Integer(0));
        };
        if !conditions.allow(entry.expire_at_ms.map(signed_ms), at) {
            return Execution::Read(Reply::Integer(0));
        }
        let command = if at <= now_i64(now_ms) {
            Command::Del {
                keys: vec![key.clone()],
            }
        } else {
            Command::ExpireAt {
                key: key.clone(),
                at_ms: stored_ms(at),
            }
        };
        plan(vec![command], Reply::Integer(1))
    }

    /// `TTL`, `PTTL`, `EXPIRETIME`, `PEXPIRETIME` as Redis's `ttlGenericCommand`: -2 when
    /// absent, -1 without TTL, seconds rounded to nearest.
    fn ttl(&self, key: &Bytes, in_ms: bool, absolute: bool, now_ms: u64) -> Execution {
        let Some(entry) = self.live(key, now_ms) else {
            return Execution::Read(Reply::Integer(-2));
        };
        let Some(at) = entry.expire_at_ms else {
            return Execution::Read(Reply::Integer(-1));
        };
        let ms = if absolute {
            i128::from(at)
        } else {
            (i128::from(at) - i128::from(now_ms)).max(0)
        };
        let value = if in_ms { ms } else { (ms + 500) / 1000 };
        Execution::Read(Reply::Integer(i64::try_from(value).unwrap_or(i64::MAX)))
    }

    fn persist(&self, key: &Bytes, now_ms: u64) -> Execution {
        match self.live(key, now_ms) {
            Some(e) if e.expire_at_ms.is_some() => plan(
                vec![Command::Persist { key: key.clone() }],
                Reply::Integer(1),
            ),
            Some(_) => Execution::Read(Reply::Integer(0)),
            None => plan(self.expired_cleanup([key], now_ms), Reply::Integer(0)),
        }
    }

    /// Redis's `renameGenericCommand`: the value and TTL move; the target is overwritten
    /// (`RENAME`) or left alone (`RENAMENX`).
    fn rename(&self, from: &Bytes, to: &Bytes, only_if_none: bool, now_ms: u64) -> Execution {
        let Some(entry) = self.live(from, now_ms) else {
            return error(ERR_NO_SUCH_KEY);
        };
        let done = if only_if_none {
            Reply::Integer(1)
        } else {
            Reply::Ok
        };
        if from == to {
            return Execution::Read(if only_if_none {
                Reply::Integer(0)
            } else {
                Reply::Ok
            });
        }
        let mut commands = self.expired_cleanup([to], now_ms);
        if only_if_none && self.live(to, now_ms).is_some() {
            return plan(commands, Reply::Integer(0));
        }
        commands.push(Command::Set {
            key: to.clone(),
            value: entry.value.clone(),
            expiry: entry.expire_at_ms.map_or(Expiry::Clear, Expiry::AtMs),
        });
        commands.push(Command::Del {
            keys: vec![from.clone()],
        });
        plan(commands, done)
    }

    /// Redis's `scanGenericCommand` for the keyspace; see the module docs for the cursor.
    fn scan(&self, cursor: &[u8], options: &[Bytes], now_ms: u64) -> Execution {
        let Some(cursor) = parse_cursor(cursor) else {
            return error(ERR_INVALID_CURSOR);
        };
        let mut count = SCAN_COUNT_DEFAULT;
        let mut pattern: Option<&Bytes> = None;
        let mut type_name: Option<&Bytes> = None;
        let mut rest = options;
        loop {
            match rest {
                [] => break,
                [opt, value, tail @ ..] if is(opt, "count") => {
                    match parse_i64(value) {
                        None => return error(ERR_NOT_INTEGER),
                        Some(n) if n < 1 => return error(ERR_SYNTAX),
                        Some(n) => count = usize::try_from(n).unwrap_or(usize::MAX),
                    }
                    rest = tail;
                }
                [opt, value, tail @ ..] if is(opt, "match") => {
                    pattern = Some(value);
                    rest = tail;
                }
                [opt, value, tail @ ..] if is(opt, "type") => {
                    type_name = Some(value);
                    rest = tail;
                }
                _ => return error(ERR_SYNTAX),
            }
        }
        // Every key is a string; an unknown type name matches nothing, as in Redis 7.
        let type_ok = type_name.is_none_or(|t| is(t, "string"));
        let (next, keys) = self.scan_slots(cursor, count, now_ms, |key| {
            type_ok && pattern.is_none_or(|p| key_matches(p, key))
        });
        Execution::Read(Reply::Array(vec![
            Reply::Bulk(Bytes::from(next.to_string())),
            Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
        ]))
    }

    fn flushall(&self, options: &[Bytes]) -> Execution {
        match options {
            [] => {}
            [mode] if is(mode, "sync") || is(mode, "async") => {}
            _ => return error(ERR_SYNTAX),
        }
        let commands = if self.entries.is_empty() {
            Vec::new()
        } else {
            vec![Command::FlushAll]
        };
        plan(commands, Reply::Ok)
    }
}

/// Whether `key` matches a `KEYS`/`SCAN MATCH` pattern; `*` alone matches every key, even the
/// empty one, as Redis short-cuts it.
fn key_matches(pattern: &[u8], key: &[u8]) -> bool {
    pattern == b"*" || glob_match(pattern, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_i64_is_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"-9223372036854775809"), None);
        assert_eq!(parse_i64(b"99999999999999999999"), None);
        assert_eq!(parse_i64(b"123456789012345678901"), None);
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"1a",
            b"0x1",
            b"1.0",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn unknown_command_text_is_redis_7() {
        let args: Vec<Bytes> = ["foo", "a", "b"].into_iter().map(Bytes::from).collect();
        assert_eq!(
            unknown_command(&args),
            Reply::error("ERR unknown command 'foo', with args beginning with: 'a' 'b' ")
        );
        assert_eq!(
            unknown_command(&[]),
            Reply::error("ERR unknown command '', with args beginning with: ")
        );
        let args = vec![Bytes::from("x\r\ny"), Bytes::from("a\0b")];
        assert_eq!(
            unknown_command(&args),
            Reply::error("ERR unknown command 'x  y', with args beginning with: 'a' ")
        );
    }

    /// Redis quotes at most 128 bytes of the name, and stops adding arguments once the list
    /// reaches 128 bytes, the last one cut to what is left.
    #[test]
    fn unknown_command_text_is_bounded() {
        let args = vec![
            Bytes::from("n".repeat(200)),
            Bytes::from("a".repeat(100)),
            Bytes::from("b".repeat(100)),
            Bytes::from("c"),
        ];
        let Reply::Error(text) = unknown_command(&args) else {
            panic!("an error");
        };
        let expected = format!(
            "ERR unknown command '{}', with args beginning with: '{}' '{}' ",
            "n".repeat(128),
            "a".repeat(100),
            "b".repeat(25)
        );
        assert_eq!(text, expected);
    }
}
