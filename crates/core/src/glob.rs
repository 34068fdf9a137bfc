//! Glob-style pattern matching with the semantics of Redis's `stringmatchlen` (`KEYS`, `SCAN
//! MATCH`).
//!
//! Supported: `*` (any run of bytes), `?` (one byte), `[abc]`, `[^abc]`, `[a-z]` (bounds in
//! either order), and `\x` (a literal `x`, also inside brackets). An unclosed `[` matches the
//! set collected so far. Bytes are compared exactly (no case folding); range bounds compare as
//! C's signed `char`, as Redis does on x86 and ARM64 Linux builds.
//!
//! ```
//! use replikv_core::glob::glob_match;
//!
//! assert!(glob_match(b"user:[0-9]*", b"user:42:name"));
//! assert!(!glob_match(b"h?llo", b"hllo"));
//! ```

/// Recursion depth at which matching gives up and reports no match, as Redis does, so that a
/// pattern of thousands of `*` cannot exhaust the stack.
const NESTING_MAX: usize = 1000;

/// Whether `string` matches the glob `pattern`.
///
/// Runs in polynomial time for every pattern: once the rest of a pattern after a `*` failed at
/// every later position, no earlier `*` retries a longer match (Redis's `skipLongerMatches`).
#[must_use]
pub fn glob_match(pattern: &[u8], string: &[u8]) -> bool {
    let mut skip_longer = false;
    glob_match_nested(pattern, string, &mut skip_longer, 0)
}

/// The byte at `index`, or 0 past the end (C reads the string's terminating NUL there).
fn byte_at(bytes: &[u8], index: usize) -> u8 {
    bytes.get(index).copied().unwrap_or(0)
}

/// A byte as C's signed `char`.
fn signed(byte: u8) -> i8 {
    i8::from_ne_bytes([byte])
}

fn glob_match_nested(
    pattern: &[u8],
    string: &[u8],
    skip_longer: &mut bool,
    nesting: usize,
) -> bool {
    if nesting > NESTING_MAX {
        return false;
    }
    // `p` and `s` are the unconsumed starts of the pattern and the string; `p <= pattern.len()`
    // and `s <= string.len()` hold throughout.
    let mut p = 0;
    let mut s = 0;
    while p < pattern.len() && s < string.len() {
        let c = string[s];
        match pattern[p] {
            b'*' => {
                while byte_at(pattern, p + 1) == b'*' && p + 1 < pattern.len() {
                    p += 1;
                }
                if p + 1 == pattern.len() {
                    return true;
                }
                while s < string.len() {
                    if glob_match_nested(&pattern[p + 1..], &string[s..], skip_longer, nesting + 1)
                    {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s += 1;
                }
                // The rest of the pattern matches at no later position, so no earlier `*` can
                // help by matching more.
                *skip_longer = true;
                return false;
            }
            b'?' => {}
            b'[' => {
                p += 1;
                let negate = byte_at(pattern, p) == b'^';
                if negate {
                    p += 1;
                }
                let mut matched = false;
                loop {
                    let rest = pattern.len() - p;
                    if byte_at(pattern, p) == b'\\' && rest >= 2 {
                        p += 1;
                        if pattern[p] == c {
                            matched = true;
                        }
                    } else if byte_at(pattern, p) == b']' {
                        break;
                    } else if rest == 0 {
                        // Unclosed class: step back so the common advance below lands on the
                        // end of the pattern.
                        p -= 1;
                        break;
                    } else if rest >= 3 && pattern[p + 1] == b'-' {
                        let (mut low, mut high) = (signed(pattern[p]), signed(pattern[p + 2]));
                        if low > high {
                            std::mem::swap(&mut low, &mut high);
                        }
                        p += 2;
                        if (low..=high).contains(&signed(c)) {
                            matched = true;
                        }
                    } else if pattern[p] == c {
                        matched = true;
                    }
                    p += 1;
                }
                if matched == negate {
                    return false;
                }
            }
            b'\\' => {
                if pattern.len() - p >= 2 {
                    p += 1;
                }
                if pattern[p] != c {
                    return false;
                }
            }
            literal => {
                if literal != c {
                    return false;
                }
            }
        }
        s += 1;
        p += 1;
        if s == string.len() {
            while byte_at(pattern, p) == b'*' && p < pattern.len() {
                p += 1;
            }
            break;
        }
    }
    p == pattern.len() && s == string.len()
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    /// Cases checked against Redis 7's `stringmatchlen` semantics (`KEYS` on a real server).
    #[test]
    fn redis_glob_cases() {
        let cases: &[(&[u8], &[u8], bool)] = &[
            // stringmatchlen itself rejects the empty string for "*"; KEYS and SCAN short-cut
            // a lone "*" before calling it.
            (b"*", b"", false),
            (b"**", b"", false),
            (b"*", b"anything", true),
            (b"", b"", true),
            (b"", b"a", false),
            (b"a", b"", false),
            (b"h?llo", b"hello", true),
            (b"h?llo", b"hllo", false),
            (b"h*llo", b"hllo", true),
            (b"h*llo", b"heeeello", true),
            (b"h[ae]llo", b"hello", true),
            (b"h[ae]llo", b"hillo", false),
            (b"h[^e]llo", b"hallo", true),
            (b"h[^e]llo", b"hello", false),
            (b"h[a-b]llo", b"hbllo", true),
            (b"h[b-a]llo", b"hbllo", true),
            (b"h[a-b]llo", b"hcllo", false),
            (b"h\\*llo", b"h*llo", true),
            (b"h\\*llo", b"hello", false),
            (b"[\\]]", b"]", true),
            (b"[abc", b"b", true),
            (b"[abc", b"d", false),
            (b"a\\", b"a\\", true),
            (b"a*", b"a", true),
            (b"a**", b"a", true),
            (b"*a*b*", b"xxaxxbxx", true),
            (b"*a*b", b"xxaxxbxx", false),
            (b"[", b"[", false),
            (b"[]", b"x", false),
            (b"user:*:name", b"user:42:name", true),
            (b"\xff", b"\xff", true),
            (b"[\x80-\xff]", b"\x90", true),
        ];
        for (pattern, string, expected) in cases {
            assert_eq!(
                glob_match(pattern, string),
                *expected,
                "pattern {:?} string {:?}",
                String::from_utf8_lossy(pattern),
                String::from_utf8_lossy(string)
            );
        }
    }

    /// Signed `char` ranges: on Redis, bytes >= 0x80 sort below ASCII inside `[a-b]`.
    #[test]
    fn ranges_compare_as_signed_char() {
        assert!(glob_match(b"[\x80-a]", b"0"));
        assert!(!glob_match(b"[a-\x80]", b"z"));
    }

    /// The `skipLongerMatches` pruning keeps adversarial patterns fast.
    #[test]
    fn many_stars_do_not_explode() {
        let pattern = b"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b".to_vec();
        let string = vec![b'a'; 10_000];
        assert!(!glob_match(&pattern, &string));
        let deep = vec![b'*'; 5_000];
        assert!(glob_match(&deep, b"x"));
        let mut deep_mixed = b"*a".repeat(2_000);
        deep_mixed.push(b'z');
        assert!(!glob_match(&deep_mixed, &b"a".repeat(3_000)));
    }
}
