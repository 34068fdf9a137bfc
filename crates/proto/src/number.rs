//! Number parsing and formatting exactly as Redis does it on the wire.

use std::io::Write as _;

/// Length of the longest text [`format_double`] writes (`-` plus 17 digits, `.`, `e-308`),
/// rounded up.
pub const DOUBLE_TEXT_BYTES_MAX: usize = 32;

/// Parses a signed 64-bit integer with Redis's `string2ll` rules: an optional `-`, then
/// digits with no leading zero (the lone `0` excepted), nothing else: no `+`, no spaces, no
/// `-0`, at most 20 bytes, no overflow.
///
/// Returns `None` when `text` is not such a number.
#[must_use]
pub fn parse_i64(text: &[u8]) -> Option<i64> {
    // Redis's LONG_STR_SIZE is 21: a 21-byte string is rejected before it is looked at.
    if text.is_empty() || text.len() >= 21 {
        return None;
    }
    if text == b"0" {
        return Some(0);
    }
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (&first, rest) = digits.split_first()?;
    if !(b'1'..=b'9').contains(&first) {
        return None;
    }
    let mut value = u64::from(first - b'0');
    for &byte in rest {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(byte - b'0'))?;
    }
    if negative {
        // i64::MIN's magnitude is one more than i64::MAX's.
        if value > i64::MAX.unsigned_abs() + 1 {
            return None;
        }
        Some(0_i64.wrapping_sub_unsigned(value))
    } else {
        i64::try_from(value).ok()
    }
}

/// Formats `value` the way Redis 7 replies with a double (`d2string`): `nan`, `inf`, `-inf`,
/// `0` / `-0`; an integer-valued number within ±2^62 as that integer (`3`, not `3.0`);
/// anything else as the shortest text that reads back as the same double, in plain notation
/// for moderate exponents (`0.1`, `1.5`, `0.000123`) and scientific otherwise (`1e+300`,
/// `1.5e-7`), following the rules of Redis's `fpconv_dtoa`.
///
/// Writes into `out` and returns the written prefix.
pub fn format_double(value: f64, out: &mut [u8; DOUBLE_TEXT_BYTES_MAX]) -> &[u8] {
    if value.is_nan() {
        return copy_text(b"nan", out);
    }
    if value.is_infinite() {
        return copy_text(if value < 0.0 { b"-inf" } else { b"inf" }, out);
    }
    if value == 0.0 {
        return copy_text(
            if value.is_sign_negative() {
                b"-0"
            } else {
                b"0"
            },
            out,
        );
    }
    // Redis's double2ll: within ±LLONG_MAX/2 the cast to i64 is exact, so an integral value
    // prints as an integer.
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    {
        let bound = (i64::MAX / 2) as f64;
        if (-bound..=bound).contains(&value) && (value as i64) as f64 == value {
            let mut buffer = itoa::Buffer::new();
            return copy_text(buffer.format(value as i64).as_bytes(), out);
        }
    }
    // Rust's `{:e}` prints the shortest round-trip digits as `-d.ddde-x`; take the digits and
    // the exponent from it and lay them out as fpconv's emit_digits does.
    let mut scientific = [0_u8; DOUBLE_TEXT_BYTES_MAX];
    let written = {
        let mut cursor: &mut [u8] = &mut scientific;
        let capacity = cursor.len();
        if write!(cursor, "{value:e}").is_err() {
            // Cannot happen: the longest `{:e}` of an f64 is 24 bytes. Fall back to a text
            // that still parses.
            return copy_text(b"nan", out);
        }
        capacity - cursor.len()
    };
    let text = &scientific[..written];
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let e_index = text.iter().position(|&b| b == b'e').unwrap_or(text.len());
    let mut digits = [0_u8; 20];
    let mut digit_count = 0;
    for &byte in &text[..e_index] {
        if byte.is_ascii_digit() && digit_count < digits.len() {
            digits[digit_count] = byte;
            digit_count += 1;
        }
    }
    let exponent = text
        .get(e_index + 1..)
        .and_then(parse_i64)
        .and_then(|e| i32::try_from(e).ok())
        .unwrap_or(0);
    let mut len = 0;
    if negative {
        out[0] = b'-';
        len = 1;
    }
    len += emit_digits(&digits[..digit_count], exponent, &mut out[len..]);
    &out[..len]
}

fn copy_text<'a>(text: &[u8], out: &'a mut [u8; DOUBLE_TEXT_BYTES_MAX]) -> &'a [u8] {
    out[..text.len()].copy_from_slice(text);
    &out[..text.len()]
}

/// Lays out `digits` (the value is `0.d1d2... × 10^(exponent + 1)`, i.e. `d1.d2... ×
/// 10^exponent`) like fpconv's `emit_digits`. Returns the bytes written.
fn emit_digits(digits: &[u8], exponent: i32, out: &mut [u8]) -> usize {
    let ndigits = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    // fpconv's K: the value is digits × 10^K.
    let k = exponent - ndigits + 1;
    let exp_abs = exponent.unsigned_abs();
    let mut len = 0;
    let mut put = |out: &mut [u8], byte: u8| {
        if let Some(slot) = out.get_mut(len) {
            *slot = byte;
        }
        len += 1;
    };
    if k >= 0 && i64::from(exp_abs) < i64::from(ndigits) + 7 {
        // Plain integer: the digits, then K zeros.
        for &d in digits {
            put(out, d);
        }
        for _ in 0..k {
            put(out, b'0');
        }
    } else if k < 0 && (k > -7 || exp_abs < 4) {
        // Plain decimal.
        let offset = ndigits + k;
        if offset <= 0 {
            put(out, b'0');
            put(out, b'.');
            for _ in 0..(-offset) {
                put(out, b'0');
            }
            for &d in digits {
                put(out, d);
            }
        } else {
            let offset = usize::try_from(offset).unwrap_or(0);
            for &d in &digits[..offset] {
                put(out, d);
            }
            put(out, b'.');
            for &d in &digits[offset..] {
                put(out, d);
            }
        }
    } else {
        // Scientific: d[.ddd]e±x.
        if let Some((&first, rest)) = digits.split_first() {
            put(out, first);
            if !rest.is_empty() {
                put(out, b'.');
                for &d in rest {
                    put(out, d);
                }
            }
        }
        put(out, b'e');
        put(out, if exponent < 0 { b'-' } else { b'+' });
        let mut buffer = itoa::Buffer::new();
        for &d in buffer.format(exp_abs).as_bytes() {
            put(out, d);
        }
    }
    len.min(out.len())
}

#[cfg(test)]
#[path = "number_test.rs"]
mod tests;
