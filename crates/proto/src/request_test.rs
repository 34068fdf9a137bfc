//! Unit tests of `request`.

use super::*;

#[test]
fn read_header_fast_and_slow_paths_agree() {
    let headers: &[&[u8]] = &[
        b"$3\r\n",
        b"$0\r\n",
        b"$00\r\n",
        b"$-1\r\n",
        b"$123456789012345678\r\n",
        b"$1234567890123456789\r\n",
        b"$99999999999999999999\r\n",
        b"$+1\r\n",
        b"$ 1\r\n",
        b"$\r\n",
        b"$3\rX",
        b"$3\r",
        b"$3",
        b"x3\r\n",
        b"\r\n",
    ];
    for &header in headers {
        let fast = read_header(header, 0, b'$', TOO_BIG_BULK_COUNT);
        let slow = read_header(header, 0, b'#', TOO_BIG_BULK_COUNT);
        assert_eq!(fast, slow, "header {:?}", String::from_utf8_lossy(header));
    }
}

#[test]
fn span_list_spills_in_order() {
    let mut spans = SpanList::new();
    for i in 0..40 {
        spans.push(i, i * 2);
    }
    let collected: Vec<(usize, usize)> = spans.iter().collect();
    let expected: Vec<(usize, usize)> = (0..40).map(|i| (i, i * 2)).collect();
    assert_eq!(spans.iter().len(), 40);
    assert_eq!(collected, expected);
}
