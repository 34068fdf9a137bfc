//! Fuzzes the WAL record decoder with arbitrary bytes.
//!
//! Invariants: nothing panics; a decoded record consumed between the header size and all of
//! the remaining bytes, re-encodes to exactly the bytes it was decoded from, and without its
//! last byte is incomplete (`Ok(None)`); a result never depends on bytes past the record. After
//! an error the walk resumes one byte later, the way recovery searches for a valid record after
//! a bad one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use replikv_storage::{decode_record, encode_record, RECORD_HEADER_BYTES};

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    while at < data.len() {
        let rest = &data[at..];
        match decode_record(rest) {
            Ok(Some((record, used))) => {
                assert!(used >= RECORD_HEADER_BYTES, "record of {used} bytes");
                assert!(used <= rest.len(), "used {used} of {} bytes", rest.len());
                let mut encoded = Vec::new();
                encode_record(&record, &mut encoded);
                assert_eq!(&encoded[..], &rest[..used], "re-encoding differs");
                assert_eq!(decode_record(&rest[..used - 1]), Ok(None));
                assert_eq!(decode_record(&rest[..used]), Ok(Some((record, used))));
                at += used;
            }
            Ok(None) => break,
            Err(_) => at += 1,
        }
    }
});
