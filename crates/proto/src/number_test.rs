//! Unit tests of `number`.

use super::*;

#[test]
fn parse_i64_follows_string2ll() {
    let accepted: &[(&[u8], i64)] = &[
        (b"0", 0),
        (b"1", 1),
        (b"-1", -1),
        (b"1234567890", 1_234_567_890),
        (b"9223372036854775807", i64::MAX),
        (b"-9223372036854775808", i64::MIN),
    ];
    for &(text, value) in accepted {
        assert_eq!(
            parse_i64(text),
            Some(value),
            "{:?}",
            String::from_utf8_lossy(text)
        );
    }
    let rejected: &[&[u8]] = &[
        b"",
        b"-",
        b"+1",
        b" 1",
        b"1 ",
        b"01",
        b"-0",
        b"00",
        b"1a",
        b"0x10",
        b"9223372036854775808",
        b"-9223372036854775809",
        b"18446744073709551616",
        b"000000000000000000001",
        b"1.0",
    ];
    for &text in rejected {
        assert_eq!(parse_i64(text), None, "{:?}", String::from_utf8_lossy(text));
    }
}

fn formatted(value: f64) -> String {
    let mut out = [0; DOUBLE_TEXT_BYTES_MAX];
    String::from_utf8_lossy(format_double(value, &mut out)).into_owned()
}

#[test]
fn format_double_matches_redis_d2string() {
    let cases: &[(f64, &str)] = &[
        (f64::NAN, "nan"),
        (f64::INFINITY, "inf"),
        (f64::NEG_INFINITY, "-inf"),
        (0.0, "0"),
        (-0.0, "-0"),
        (3.0, "3"),
        (-42.0, "-42"),
        (1e15, "1000000000000000"),
        (1.5, "1.5"),
        (-1.5, "-1.5"),
        (0.1, "0.1"),
        (0.000_123, "0.000123"),
        (1.5e-7, "1.5e-7"),
        (1.234_5e-10, "1.2345e-10"),
        (1e300, "1e+300"),
        (1e19, "1e+19"),
        (-1e19, "-1e+19"),
        // 2^62 is still within Redis's ±LLONG_MAX/2 (as a double), so printed exactly.
        (4.611_686_018_427_388e18, "4611686018427387904"),
        (9.223_372_036_854_776e18, "9223372036854776000"),
        (std::f64::consts::PI, "3.141592653589793"),
        (123_456.789, "123456.789"),
        (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
        (5e-324, "5e-324"),
        (f64::MAX, "1.7976931348623157e+308"),
    ];
    for &(value, text) in cases {
        assert_eq!(formatted(value), text, "{value:e}");
    }
}

#[test]
fn format_double_reads_back_exactly() {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..20_000 {
        // xorshift64: deterministic bit patterns across the whole f64 range.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let value = f64::from_bits(state);
        if value.is_nan() {
            continue;
        }
        let text = formatted(value);
        let back: f64 = text.parse().unwrap_or(f64::NAN);
        assert_eq!(
            back.to_bits(),
            value.to_bits(),
            "{value:e} formatted as {text}"
        );
    }
}
