//! Unit tests of `split_args`.

use super::*;

fn split(line: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let tokens = split_args(line).map_err(|e| e.0)?;
    Ok(tokens
        .into_iter()
        .map(|token| match token {
            Token::Span { start, end } => line[start..end].to_vec(),
            Token::Owned(bytes) => bytes,
        })
        .collect())
}

fn ok(line: &[u8], expected: &[&[u8]]) {
    let expected: Vec<Vec<u8>> = expected.iter().map(|arg| arg.to_vec()).collect();
    assert_eq!(
        split(line),
        Ok(expected),
        "line {:?}",
        String::from_utf8_lossy(line)
    );
}

fn unbalanced(line: &[u8]) {
    assert_eq!(
        split(line),
        Err(UNBALANCED_QUOTES.to_string()),
        "line {:?}",
        String::from_utf8_lossy(line)
    );
}

#[test]
fn blanks_separate_arguments() {
    ok(b"", &[]);
    ok(b"   ", &[]);
    ok(b"PING", &[b"PING"]);
    ok(b"  SET  k\tv  ", &[b"SET", b"k", b"v"]);
    ok(b"a\x0bb", &[b"a\x0bb"]);
    ok(b"\x0b\x0ca", &[b"a"]);
    ok(b"a\rb", &[b"a", b"b"]);
}

#[test]
fn double_quotes_take_escapes() {
    ok(br#"SET k "hello world""#, &[b"SET", b"k", b"hello world"]);
    ok(br#""a\nb\rc\td\be\af""#, &[b"a\nb\rc\td\x08e\x07f"]);
    ok(br#""\\ \" \q""#, &[b"\\ \" q"]);
    ok(br#""\x41\x7a\xFF""#, &[b"Az\xff"]);
    ok(br#""\x4""#, &[b"x4"]);
    ok(br#""\xZZ""#, &[b"xZZ"]);
    ok(br#""""#, &[b""]);
    ok(br#""" x"#, &[b"", b"x"]);
}

#[test]
fn single_quotes_take_only_the_quote_escape() {
    ok(br"'it\'s'", &[b"it's"]);
    ok(br"'a\nb'", &[b"a\\nb"]);
    ok(br"'a\\b'", &[b"a\\\\b"]);
    ok(b"''", &[b""]);
}

#[test]
fn quotes_may_open_inside_an_argument() {
    unbalanced(br#"ab"c d"e"#);
    ok(br#"ab"c d" e"#, &[b"abc d", b"e"]);
    ok(br"x'y z'", &[b"xy z"]);
}

#[test]
fn unbalanced_quotes_are_rejected() {
    unbalanced(br#""abc"#);
    unbalanced(br"'abc");
    unbalanced(br#""abc"x"#);
    unbalanced(br"'abc'x");
    unbalanced(br#""abc\"#);
    unbalanced(b"\"a\0b\"");
}

#[test]
fn nul_ends_the_line_outside_quotes() {
    ok(b"GET a\0b c", &[b"GET", b"a"]);
    ok(b"\"a\"\0b", &[b"a"]);
}

#[test]
fn plain_arguments_stay_zero_copy() {
    let tokens = split_args(b"SET key \"va\\x6cue\" 'p'").unwrap_or_default();
    assert_eq!(
        tokens,
        vec![
            Token::Span { start: 0, end: 3 },
            Token::Span { start: 4, end: 7 },
            Token::Owned(b"value".to_vec()),
            Token::Span { start: 20, end: 21 },
        ]
    );
}
