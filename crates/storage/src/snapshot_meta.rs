//! [`SnapshotMeta`] and the snapshot file format shared by the writer and the reader (layout in
//! `docs/design/wal.md`).

use crate::record::{read_u32, read_u64};
use replikv_core::{Epoch, LogPosition, Lsn};

/// Identity of a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The log position the snapshot is consistent at (it reflects every entry up to it).
    pub pos: LogPosition,
    /// When it was taken (Unix ms).
    pub created_unix_ms: u64,
}

/// Magic at the start of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"RKV\0SNP\0";
/// Format version in the snapshot header; readers refuse any other.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;
/// Bytes of the snapshot header.
pub const SNAPSHOT_HEADER_BYTES: usize = 48;
/// Bytes before each chunk's data: length and CRC.
pub const SNAPSHOT_CHUNK_HEADER_BYTES: usize = 8;
/// The largest chunk (256 MiB). A length above it in a file is corruption.
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = (1 << 30) + (1 << 20);
/// The value in a chunk's length field that marks the footer instead.
pub const SNAPSHOT_END_MARKER: u32 = u32::MAX;
/// Bytes of the footer.
pub const SNAPSHOT_FOOTER_BYTES: usize = 24;
/// Magic closing the footer.
pub const SNAPSHOT_FOOTER_MAGIC: [u8; 4] = *b"SEND";

const _: () = assert!((SNAPSHOT_CHUNK_BYTES_MAX as u64) < SNAPSHOT_END_MARKER as u64);

/// Digits of the LSN in a snapshot file name.
const SNAPSHOT_NAME_DIGITS: usize = 20;

/// File name of the complete snapshot at `lsn`.
pub(crate) fn snapshot_file_name(lsn: Lsn) -> String {
    format!(
        "snapshot-{:0width$}.snap",
        lsn.0,
        width = SNAPSHOT_NAME_DIGITS
    )
}

/// File name of the snapshot at `lsn` while it is being written.
pub(crate) fn snapshot_temp_file_name(lsn: Lsn) -> String {
    format!(
        "snapshot-{:0width$}.tmp",
        lsn.0,
        width = SNAPSHOT_NAME_DIGITS
    )
}

/// What a file in a snapshot directory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SnapshotFileKind {
    /// A complete snapshot at this LSN.
    Complete(Lsn),
    /// An unfinished one.
    Temp,
}

/// Classifies a file name; `None` for files that are not snapshots.
pub(crate) fn parse_snapshot_file_name(name: &str) -> Option<SnapshotFileKind> {
    let rest = name.strip_prefix("snapshot-")?;
    let (digits, kind) = if let Some(d) = rest.strip_suffix(".snap") {
        (d, true)
    } else {
        (rest.strip_suffix(".tmp")?, false)
    };
    if digits.len() != SNAPSHOT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let lsn = Lsn(digits.parse().ok()?);
    Some(if kind {
        SnapshotFileKind::Complete(lsn)
    } else {
        SnapshotFileKind::Temp
    })
}

/// The header for `meta`.
pub(crate) fn encode_snapshot_header(meta: &SnapshotMeta) -> [u8; SNAPSHOT_HEADER_BYTES] {
    let mut h = [0u8; SNAPSHOT_HEADER_BYTES];
    h[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    h[8..12].copy_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&meta.pos.epoch.0.to_le_bytes());
    h[24..32].copy_from_slice(&meta.pos.lsn.0.to_le_bytes());
    h[32..40].copy_from_slice(&meta.created_unix_ms.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..40]);
    h[40..44].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a snapshot header.
pub(crate) fn decode_snapshot_header(
    h: &[u8; SNAPSHOT_HEADER_BYTES],
) -> Result<SnapshotMeta, String> {
    if h[0..8] != SNAPSHOT_MAGIC {
        return Err("bad snapshot magic".to_string());
    }
    let stored = read_u32(h, 40);
    let computed = crc32c::crc32c(&h[0..40]);
    if stored != computed {
        return Err(format!(
            "snapshot header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        ));
    }
    if read_u32(h, 12) != 0 || read_u32(h, 44) != 0 {
        return Err("snapshot header reserved field is not zero".to_string());
    }
    let version = read_u32(h, 8);
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(format!(
            "unsupported snapshot format version {version} (this build reads {SNAPSHOT_FORMAT_VERSION})"
        ));
    }
    Ok(SnapshotMeta {
        pos: LogPosition {
            epoch: Epoch(read_u64(h, 16)),
            lsn: Lsn(read_u64(h, 24)),
        },
        created_unix_ms: read_u64(h, 32),
    })
}

/// CRC of a chunk: over its index (u64 LE) and its bytes, so a chunk moved to another place
/// fails too.
pub(crate) fn chunk_crc(index: u64, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&index.to_le_bytes()), data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_header_round_trip() {
        assert_eq!(
            parse_snapshot_file_name(&snapshot_file_name(Lsn(7))),
            Some(SnapshotFileKind::Complete(Lsn(7)))
        );
        assert_eq!(
            parse_snapshot_file_name(&snapshot_temp_file_name(Lsn(7))),
            Some(SnapshotFileKind::Temp)
        );
        assert_eq!(parse_snapshot_file_name("snapshot-7.snap"), None);
        assert_eq!(parse_snapshot_file_name("00000000000000000001.wal"), None);
        let meta = SnapshotMeta {
            pos: LogPosition {
                epoch: Epoch(2),
                lsn: Lsn(9),
            },
            created_unix_ms: 1_700_000_000_000,
        };
        assert_eq!(
            decode_snapshot_header(&encode_snapshot_header(&meta)),
            Ok(meta)
        );
    }
}
