//! Splitting an inline command line into arguments, byte for byte as Redis's `sdssplitargs`.

use crate::ProtocolError;

/// Redis's reply when an inline line's quotes do not balance.
pub(crate) const UNBALANCED_QUOTES: &str = "unbalanced quotes in request";

/// One argument of an inline line: either a run of the line's own bytes (zero-copy) or bytes
/// rebuilt because quotes or escapes sat inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    /// `line[start..end]`.
    Span {
        /// First byte of the argument in the line.
        start: usize,
        /// One past the last byte.
        end: usize,
    },
    /// Bytes that are not one run of the line.
    Owned(Vec<u8>),
}

/// Collects one argument, staying a [`Token::Span`] while the bytes appended are consecutive
/// bytes of the line.
struct TokenBuilder {
    start: usize,
    end: usize,
    owned: Option<Vec<u8>>,
}

impl TokenBuilder {
    fn new() -> Self {
        TokenBuilder {
            start: 0,
            end: 0,
            owned: None,
        }
    }

    /// Appends the line's byte at `index`.
    fn push_source(&mut self, line: &[u8], index: usize) {
        if let Some(owned) = &mut self.owned {
            owned.push(line[index]);
        } else if self.start == self.end {
            self.start = index;
            self.end = index + 1;
        } else if self.end == index {
            self.end += 1;
        } else {
            self.push_byte(line, line[index]);
        }
    }

    /// Appends a byte that is not the next byte of the current run.
    fn push_byte(&mut self, line: &[u8], byte: u8) {
        let owned = self
            .owned
            .get_or_insert_with(|| line[self.start..self.end].to_vec());
        owned.push(byte);
    }

    fn finish(self) -> Token {
        match self.owned {
            Some(owned) => Token::Owned(owned),
            None => Token::Span {
                start: self.start,
                end: self.end,
            },
        }
    }
}

/// C's `isspace` in the C locale.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Splits `line` (without its line ending) into arguments with Redis's `sdssplitargs` rules:
/// blanks separate arguments; `"..."` allows `\n \r \t \b \a \xHH` and `\<any>` escapes;
/// `'...'` allows only `\'`; a closing quote must be followed by a blank or the end; a quote
/// may open in the middle of an argument (`a"b c"` is `ab c`). As in C, where the line is
/// NUL-terminated, a NUL byte outside quotes ends the line and one inside quotes is an
/// unterminated quote.
///
/// # Errors
/// `unbalanced quotes in request` for an unterminated quote or a closing quote followed by
/// something other than a blank.
pub(crate) fn split_args(line: &[u8]) -> Result<Vec<Token>, ProtocolError> {
    // Reads like C's `*p`: past the end is the terminating NUL.
    let at = |index: usize| line.get(index).copied().unwrap_or(0);
    let mut tokens = Vec::new();
    let mut p = 0;
    loop {
        while at(p) != 0 && is_space(at(p)) {
            p += 1;
        }
        if at(p) == 0 {
            return Ok(tokens);
        }
        let mut in_double = false;
        let mut in_single = false;
        let mut done = false;
        let mut token = TokenBuilder::new();
        while !done {
            let c = at(p);
            if in_double {
                let hex_escape = (c == b'\\' && at(p + 1) == b'x')
                    .then(|| Some(hex_value(at(p + 2))? * 16 + hex_value(at(p + 3))?))
                    .flatten();
                if let Some(byte) = hex_escape {
                    token.push_byte(line, byte);
                    p += 3;
                } else if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    let byte = match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    };
                    token.push_byte(line, byte);
                } else if c == b'"' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return Err(ProtocolError::new(UNBALANCED_QUOTES));
                    }
                    done = true;
                } else if c == 0 {
                    return Err(ProtocolError::new(UNBALANCED_QUOTES));
                } else {
                    token.push_source(line, p);
                }
            } else if in_single {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    token.push_byte(line, b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return Err(ProtocolError::new(UNBALANCED_QUOTES));
                    }
                    done = true;
                } else if c == 0 {
                    return Err(ProtocolError::new(UNBALANCED_QUOTES));
                } else {
                    token.push_source(line, p);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    _ => token.push_source(line, p),
                }
            }
            if at(p) != 0 {
                p += 1;
            }
        }
        tokens.push(token.finish());
    }
}

#[cfg(test)]
#[path = "split_args_test.rs"]
mod tests;
