//! Property tests of recovery against damaged segment files.
//!
//! Random records are written and synced (rolling over several segments), with segments
//! preallocated or not, then a segment file is damaged: the last one cut at a random length
//! and/or one byte of its records XOR-ed with a non-zero value, or one byte of an earlier
//! segment's records changed. A cut is a write whose end never reached the disk: a
//! preallocated file reads zeros from the cut to where its records ended (its logical end), a
//! file that is not preallocated ends at the cut. The oracle, from the known record boundaries:
//! the first damaged record `k` of a file is the first one not wholly intact (cut short or
//! containing the changed byte).
//!
//! - No damaged record (cut exactly at a boundary), or only zeros left from `k`'s offset on
//!   (what reached the disk of it reads as the zero fill): the records before the cut are
//!   recovered, no torn tail.
//! - In the last segment, no intact record after `k`: a torn tail at `k`'s offset. Exactly the
//!   records before `k` are recovered, the file keeps its length and holds zeros from that
//!   offset on, and the log takes the next record and reopens with it.
//! - In the last segment with an intact record after `k`, or in any earlier segment:
//!   `WalError::Corrupt` naming that file and `k`'s offset.

mod common;

use common::{logical_end, opts, opts_unallocated, rec, record_spans, segment_files};
use proptest::prelude::*;
use replikv_core::Lsn;
use replikv_storage::{LogRecord, Wal, WalError, WalOptions, SEGMENT_HEADER_BYTES};
use std::path::Path;

/// What happened to the damaged file's records.
#[derive(Debug)]
enum Expect {
    /// The first `kept` records of the file are intact and only zeros (or nothing) follow.
    Intact { kept: usize },
    /// Torn tail at this record index and offset.
    Torn { index: usize, offset: usize },
    /// Corruption at this offset.
    Corrupt { offset: usize },
}

/// Applies the oracle to one file's record spans: `original` is the file as written,
/// `damaged` the file after the damage (possibly shorter). A record is intact when all its
/// bytes are still there unchanged; a cut that zeroes bytes that were already zero (a payload
/// of zeros) damages nothing.
fn judge(spans: &[(usize, usize)], original: &[u8], damaged: &[u8], last: bool) -> Expect {
    let intact = |&(start, end): &(usize, usize)| {
        end <= damaged.len() && damaged[start..end] == original[start..end]
    };
    let Some(k) = spans.iter().position(|s| !intact(s)) else {
        return Expect::Intact { kept: spans.len() };
    };
    let offset = spans[k].0;
    // Nothing, or only zeros, from the first damaged record on: what reached the disk of it
    // reads as the zero fill.
    if damaged
        .get(offset..)
        .is_none_or(|rest| rest.iter().all(|&b| b == 0))
    {
        return Expect::Intact { kept: k };
    }
    let intact_after = spans[k + 1..].iter().any(intact);
    if last && !intact_after {
        Expect::Torn { index: k, offset }
    } else {
        Expect::Corrupt { offset }
    }
}

/// Options for a log in `dir`, preallocated or not.
fn options(dir: &Path, segment_bytes_max: u64, preallocate: bool) -> WalOptions {
    if preallocate {
        opts(dir, segment_bytes_max, 0)
    } else {
        opts_unallocated(dir, segment_bytes_max, 0)
    }
}

/// Bytes from `offset` to the last non-zero byte of `bytes`: what a torn tail there drops.
fn non_zero_extent(bytes: &[u8], offset: usize) -> usize {
    bytes[offset..]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |p| p + 1)
}

/// Writes `records` to a log opened with `o`.
fn write_log(o: &WalOptions, records: &[LogRecord]) {
    let (mut wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    for batch in records.chunks(3) {
        wal.append(batch).unwrap();
    }
    wal.sync().unwrap();
}

/// Records with LSNs 1.. and non-decreasing epochs, payloads of the given sizes.
fn records_strategy() -> impl Strategy<Value = Vec<LogRecord>> {
    prop::collection::vec((0usize..120, any::<u8>(), 0u64..2), 1..40).prop_map(|specs| {
        let mut epoch = 1;
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (size, fill, bump))| {
                epoch += bump;
                rec(epoch, i as u64 + 1, &vec![fill; size])
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    /// Torn-tail recovery (crash during an unsynced write of the last segment) versus
    /// corruption of durable records in it.
    #[test]
    fn damage_to_the_last_segment_is_a_torn_tail_only_when_nothing_valid_follows(
        records in records_strategy(),
        segment_bytes_max in 200u64..1500,
        preallocate in any::<bool>(),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
        change in prop::option::of((any::<prop::sample::Index>(), 1u8..=255)),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let o = options(dir.path(), segment_bytes_max, preallocate);
        write_log(&o, &records);
        let files = segment_files(dir.path());
        let file = files.last().unwrap().clone();
        let mut bytes = std::fs::read(&file).unwrap();
        let original = bytes.clone();
        let spans = record_spans(&bytes);
        let end = logical_end(&bytes);
        // Records in earlier segments are never touched.
        let earlier = records.len() - spans.len();

        let len = if do_cut { SEGMENT_HEADER_BYTES + cut.index(end - SEGMENT_HEADER_BYTES + 1) } else { end };
        if preallocate {
            bytes[len..end].fill(0);
        } else {
            bytes.truncate(len);
        }
        if let Some((at, xor)) = change.filter(|_| len > SEGMENT_HEADER_BYTES) {
            bytes[SEGMENT_HEADER_BYTES + at.index(len - SEGMENT_HEADER_BYTES)] ^= xor;
        }
        std::fs::write(&file, &bytes).unwrap();
        let expect = judge(&spans, &original, &bytes, true);

        match (expect, Wal::open(o.clone(), Lsn::ZERO)) {
            (Expect::Intact { kept }, Ok((_, recovery))) => {
                prop_assert_eq!(&recovery.records[..], &records[..earlier + kept]);
                prop_assert!(recovery.torn_tail.is_none());
                prop_assert_eq!(std::fs::read(&file).unwrap(), bytes, "a clean end is left as found");
            }
            (Expect::Torn { index, offset }, Ok((mut wal, recovery))) => {
                prop_assert_eq!(&recovery.records[..], &records[..earlier + index]);
                let torn = recovery.torn_tail.unwrap();
                prop_assert_eq!(&torn.file, &file);
                prop_assert_eq!(torn.offset, offset as u64);
                prop_assert_eq!(torn.bytes_dropped, non_zero_extent(&bytes, offset) as u64);
                let repaired = std::fs::read(&file).unwrap();
                prop_assert_eq!(repaired.len(), bytes.len(), "the file keeps its length");
                prop_assert_eq!(&repaired[..offset], &bytes[..offset]);
                prop_assert!(repaired[offset..].iter().all(|&b| b == 0), "zeros from the torn record on");

                // The log goes on from the valid prefix.
                let next = records[earlier + index].clone();
                wal.append(std::slice::from_ref(&next)).unwrap();
                wal.sync().unwrap();
                drop(wal);
                let (_, again) = Wal::open(o, Lsn::ZERO).unwrap();
                prop_assert_eq!(&again.records[..], &records[..=earlier + index]);
                prop_assert!(again.torn_tail.is_none());
            }
            (Expect::Corrupt { offset }, Err(WalError::Corrupt { file: bad_file, offset: bad_offset, .. })) => {
                prop_assert_eq!(bad_file, file);
                prop_assert_eq!(bad_offset, offset as u64);
            }
            (expect, got) => {
                let got = got.map(|(_, r)| (r.records.len(), r.torn_tail));
                prop_assert!(false, "expected {:?}, got (records, torn tail) {:?}", expect, got);
            }
        }
    }

    /// Durable records of a segment before the last: any damage is corruption at that record.
    #[test]
    fn damage_to_an_earlier_segment_is_always_corruption(
        records in records_strategy(),
        segment_bytes_max in 100u64..600,
        preallocate in any::<bool>(),
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let o = options(dir.path(), segment_bytes_max, preallocate);
        write_log(&o, &records);
        let files = segment_files(dir.path());
        prop_assume!(files.len() >= 2);
        let file = files[which.index(files.len() - 1)].clone();
        let mut bytes = std::fs::read(&file).unwrap();
        let original = bytes.clone();
        let spans = record_spans(&bytes);
        let end = logical_end(&bytes);
        // A byte of the records, not of the zero fill after them.
        bytes[SEGMENT_HEADER_BYTES + at.index(end - SEGMENT_HEADER_BYTES)] ^= xor;
        std::fs::write(&file, &bytes).unwrap();
        let Expect::Corrupt { offset } = judge(&spans, &original, &bytes, false) else {
            unreachable!("a changed byte inside a record damages it");
        };

        let err = Wal::open(o, Lsn::ZERO).unwrap_err();
        prop_assert!(
            matches!(&err, WalError::Corrupt { file: f, offset: o, .. } if *f == file && *o == offset as u64),
            "expected corruption in {} at {}, got {}", file.display(), offset, err
        );
        // A refused log is left as found.
        prop_assert_eq!(std::fs::read(&file).unwrap(), bytes);
    }

    /// Non-zero bytes in the zero fill of the last segment, after its last record: a torn write
    /// into preallocated space (nothing valid follows), zeroed like any torn tail.
    #[test]
    fn garbage_in_the_zero_fill_of_the_last_segment_is_a_torn_tail(
        records in records_strategy(),
        at in any::<prop::sample::Index>(),
        garbage in prop::collection::vec(1u8..=255, 1..64),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let o = options(dir.path(), 4096, true);
        write_log(&o, &records);
        let file = segment_files(dir.path()).pop().unwrap();
        let mut bytes = std::fs::read(&file).unwrap();
        let end = logical_end(&bytes);
        let earlier = records.len() - record_spans(&bytes).len();
        prop_assume!(bytes.len() > end + garbage.len());
        let start = end + at.index(bytes.len() - end - garbage.len());
        bytes[start..start + garbage.len()].copy_from_slice(&garbage);
        std::fs::write(&file, &bytes).unwrap();

        let (_, recovery) = Wal::open(o, Lsn::ZERO).unwrap();
        prop_assert_eq!(&recovery.records[..], &records[earlier..]);
        let torn = recovery.torn_tail.unwrap();
        prop_assert_eq!(torn.offset, end as u64);
        prop_assert_eq!(torn.bytes_dropped, (start + garbage.len() - end) as u64);
        let repaired = std::fs::read(&file).unwrap();
        prop_assert_eq!(repaired.len(), bytes.len());
        prop_assert!(repaired[end..].iter().all(|&b| b == 0));
    }
}

#[test]
fn oracle_sanity() {
    let spans = [(32, 60), (60, 90), (90, 120)];
    let file = vec![1u8; 120];
    let cut = |len: usize| file[..len].to_vec();
    let changed = |mut bytes: Vec<u8>, at: usize| {
        bytes[at] ^= 0x40;
        bytes
    };
    assert!(matches!(
        judge(&spans, &file, &file, true),
        Expect::Intact { kept: 3 }
    ));
    assert!(matches!(
        judge(&spans, &file, &cut(90), true),
        Expect::Intact { kept: 2 }
    ));
    assert!(matches!(
        judge(&spans, &file, &cut(100), true),
        Expect::Torn {
            index: 2,
            offset: 90
        }
    ));
    assert!(matches!(
        judge(&spans, &file, &changed(cut(100), 70), true),
        Expect::Torn {
            index: 1,
            offset: 60
        }
    ));
    assert!(matches!(
        judge(&spans, &file, &changed(file.clone(), 70), true),
        Expect::Corrupt { offset: 60 }
    ));
    assert!(matches!(
        judge(&spans, &file, &changed(file.clone(), 70), false),
        Expect::Corrupt { offset: 60 }
    ));

    eprintln!("phase: zeros from a record on are a clean end; zeros over zeros are no damage");
    let mut zeroed = file.clone();
    zeroed[90..].fill(0);
    assert!(matches!(
        judge(&spans, &file, &zeroed, true),
        Expect::Intact { kept: 2 }
    ));
    let mut zero_payload = file.clone();
    zero_payload[100..].fill(0);
    assert!(matches!(
        judge(&spans, &zero_payload, &zero_payload, true),
        Expect::Intact { kept: 3 }
    ));
}
