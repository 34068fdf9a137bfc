//! Property tests of recovery against damaged segment files.
//!
//! Random records are written and synced (rolling over several segments), then a segment file
//! is damaged: the last one cut at a random length and/or one byte of its records XOR-ed with a
//! non-zero value, or one byte of an earlier segment's records changed. The oracle, from the
//! known record boundaries: the first damaged record `k` of a file is the first one not wholly
//! intact (cut short or containing the changed byte).
//!
//! - No damaged record (cut exactly at a boundary): the records before the cut are recovered,
//!   no torn tail.
//! - In the last segment, no intact record after `k`: a torn tail at `k`'s offset. Exactly the
//!   records before `k` are recovered, the file is cut there, and the log takes the next
//!   record and reopens with it.
//! - In the last segment with an intact record after `k`, or in any earlier segment:
//!   `WalError::Corrupt` naming that file and `k`'s offset.

mod common;

use common::{opts, rec, record_spans, segment_files};
use proptest::prelude::*;
use replikv_core::Lsn;
use replikv_storage::{LogRecord, Wal, WalError, SEGMENT_HEADER_BYTES};
use std::path::Path;

/// What happened to the damaged file's records.
#[derive(Debug)]
enum Expect {
    /// Every record before this offset is intact and the file ends at a boundary.
    Intact,
    /// Torn tail at this record index and offset.
    Torn { index: usize, offset: usize },
    /// Corruption at this offset.
    Corrupt { offset: usize },
}

/// Applies the oracle to one file's record spans after a cut to `len` and a changed byte.
fn judge(spans: &[(usize, usize)], len: usize, changed: Option<usize>, last: bool) -> Expect {
    let intact = |&(start, end): &(usize, usize)| {
        end <= len && !changed.is_some_and(|c| (start..end).contains(&c))
    };
    let live: Vec<&(usize, usize)> = spans.iter().filter(|(start, _)| *start < len).collect();
    let Some(k) = live.iter().position(|s| !intact(s)) else {
        return Expect::Intact;
    };
    let offset = live[k].0;
    let intact_after = live[k + 1..].iter().any(|s| intact(s));
    if last && !intact_after {
        Expect::Torn { index: k, offset }
    } else {
        Expect::Corrupt { offset }
    }
}

/// Writes `records` to a log in `dir` with segments of at most `segment_bytes_max`.
fn write_log(dir: &Path, segment_bytes_max: u64, records: &[LogRecord]) {
    let (mut wal, _) = Wal::open(opts(dir, segment_bytes_max, 0), Lsn::ZERO).unwrap();
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
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
        change in prop::option::of((any::<prop::sample::Index>(), 1u8..=255)),
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), segment_bytes_max, &records);
        let files = segment_files(dir.path());
        let file = files.last().unwrap().clone();
        let mut bytes = std::fs::read(&file).unwrap();
        let spans = record_spans(&bytes);
        // Records in earlier segments are never touched.
        let earlier = records.len() - spans.len();

        let len = if do_cut { SEGMENT_HEADER_BYTES + cut.index(bytes.len() - SEGMENT_HEADER_BYTES + 1) } else { bytes.len() };
        bytes.truncate(len);
        let changed = match change {
            Some((at, xor)) if len > SEGMENT_HEADER_BYTES => {
                let at = SEGMENT_HEADER_BYTES + at.index(len - SEGMENT_HEADER_BYTES);
                bytes[at] ^= xor;
                Some(at)
            }
            _ => None,
        };
        std::fs::write(&file, &bytes).unwrap();
        let expect = judge(&spans, len, changed, true);

        let o = opts(dir.path(), segment_bytes_max, 0);
        match (expect, Wal::open(o.clone(), Lsn::ZERO)) {
            (Expect::Intact, Ok((_, recovery))) => {
                let kept = spans.iter().filter(|(_, end)| *end <= len).count();
                prop_assert_eq!(&recovery.records[..], &records[..earlier + kept]);
                prop_assert!(recovery.torn_tail.is_none());
            }
            (Expect::Torn { index, offset }, Ok((mut wal, recovery))) => {
                prop_assert_eq!(&recovery.records[..], &records[..earlier + index]);
                let torn = recovery.torn_tail.unwrap();
                prop_assert_eq!(&torn.file, &file);
                prop_assert_eq!(torn.offset, offset as u64);
                prop_assert_eq!(torn.bytes_dropped, (len - offset) as u64);
                prop_assert_eq!(std::fs::metadata(&file).unwrap().len(), offset as u64);

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
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), segment_bytes_max, &records);
        let files = segment_files(dir.path());
        prop_assume!(files.len() >= 2);
        let file = files[which.index(files.len() - 1)].clone();
        let mut bytes = std::fs::read(&file).unwrap();
        let spans = record_spans(&bytes);
        let changed = SEGMENT_HEADER_BYTES + at.index(bytes.len() - SEGMENT_HEADER_BYTES);
        bytes[changed] ^= xor;
        std::fs::write(&file, &bytes).unwrap();
        let Expect::Corrupt { offset } = judge(&spans, bytes.len(), Some(changed), false) else {
            unreachable!("a changed byte inside a record damages it");
        };

        let err = Wal::open(opts(dir.path(), segment_bytes_max, 0), Lsn::ZERO).unwrap_err();
        prop_assert!(
            matches!(&err, WalError::Corrupt { file: f, offset: o, .. } if *f == file && *o == offset as u64),
            "expected corruption in {} at {}, got {}", file.display(), offset, err
        );
        // Nothing was cut.
        prop_assert_eq!(std::fs::metadata(&file).unwrap().len(), bytes.len() as u64);
    }
}

#[test]
fn oracle_sanity() {
    let spans = [(32, 60), (60, 90), (90, 120)];
    assert!(matches!(judge(&spans, 120, None, true), Expect::Intact));
    assert!(matches!(judge(&spans, 90, None, true), Expect::Intact));
    assert!(matches!(
        judge(&spans, 100, None, true),
        Expect::Torn {
            index: 2,
            offset: 90
        }
    ));
    assert!(matches!(
        judge(&spans, 100, Some(70), true),
        Expect::Torn {
            index: 1,
            offset: 60
        }
    ));
    assert!(matches!(
        judge(&spans, 120, Some(70), true),
        Expect::Corrupt { offset: 60 }
    ));
}
