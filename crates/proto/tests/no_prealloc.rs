//! Declared counts and lengths allocate nothing beyond the bytes that arrived: measured with a
//! global allocator that records the largest single allocation on each thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::BytesMut;
use replikv_proto::{
    decode_frame, parse_frame, parse_request, Frame, Limits, PeerError, PeerMessageKind,
    RequestDecoder, PEER_BODY_BYTES_MAX_DEFAULT, PEER_MAGIC, PEER_PROTOCOL_VERSION,
};

struct LargestAllocation;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: defers to the system allocator; only records sizes in a const thread-local, which
// neither allocates nor has a destructor.
unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.with(|largest| largest.set(largest.get().max(layout.size())));
        // SAFETY: forwarded unchanged from the caller.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged from the caller.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.with(|largest| largest.set(largest.get().max(new_size)));
        // SAFETY: forwarded unchanged from the caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// The largest single allocation `work` makes on this thread.
fn largest_allocation(work: impl FnOnce()) -> usize {
    LARGEST.with(|largest| largest.set(0));
    work();
    LARGEST.with(Cell::get)
}

#[test]
fn declared_request_sizes_allocate_nothing_up_front() {
    let limits = Limits::default();
    let inputs: [&[u8]; 3] = [
        b"*1073741824\r\n",
        b"*1073741824\r\n$536870912\r\nabc",
        b"*1073741824\r\n$1\r\na\r\n$1\r\nb\r\n$536870912\r\n",
    ];
    for input in inputs {
        let mut buf = BytesMut::from(input);
        let mut decoder = RequestDecoder::new(limits);
        let largest = largest_allocation(|| {
            assert_eq!(parse_request(&mut buf, &limits), Ok(None));
            assert_eq!(decoder.decode(&mut buf), Ok(None));
        });
        assert!(
            largest <= 1024,
            "largest allocation {largest} bytes for {input:?}"
        );
    }
}

#[test]
fn declared_reply_sizes_allocate_little_up_front() {
    let inputs: [&[u8]; 4] = [
        b"*9223372036854775807\r\n:1\r\n",
        b"%9223372036854775807\r\n:1\r\n",
        b"~4611686018427387904\r\n*4611686018427387904\r\n$4611686018427387904\r\n",
        b"$9223372036854775807\r\nabc",
    ];
    let bound = 64 * 2 * std::mem::size_of::<Frame>();
    for input in inputs {
        let largest = largest_allocation(|| assert_eq!(parse_frame(input), Ok(None)));
        assert!(
            largest <= bound,
            "largest allocation {largest} bytes for {input:?}"
        );
    }
}

/// A peer frame header declaring `body_bytes` of `kind`, without the checksum or body.
fn peer_header(kind: PeerMessageKind, body_bytes: u32) -> BytesMut {
    let mut header = BytesMut::new();
    header.extend_from_slice(&PEER_MAGIC);
    header.extend_from_slice(&PEER_PROTOCOL_VERSION.to_le_bytes());
    header.extend_from_slice(&kind.code().to_le_bytes());
    header.extend_from_slice(&body_bytes.to_le_bytes());
    header
}

#[test]
fn declared_peer_body_over_the_limit_is_refused_without_allocating() {
    let mut over = peer_header(PeerMessageKind::Entries, u32::MAX);
    let mut result = Ok(None);
    let largest = largest_allocation(|| {
        result = decode_frame(&mut over, PEER_BODY_BYTES_MAX_DEFAULT);
    });
    assert!(
        matches!(result, Err(PeerError::BodyTooLarge { .. })),
        "{result:?}"
    );
    assert_eq!(largest, 0, "largest allocation {largest} bytes");
}

#[test]
fn declared_peer_body_under_the_limit_allocates_nothing_while_awaited() {
    let body_bytes = u32::try_from(PEER_BODY_BYTES_MAX_DEFAULT).unwrap();
    let mut header = peer_header(PeerMessageKind::SnapshotChunk, body_bytes);
    header.extend_from_slice(&[0; 4 + 100]);
    let capacity = header.capacity();
    let mut result = Err(PeerError::UnknownKind { kind: 0 });
    let largest = largest_allocation(|| {
        result = decode_frame(&mut header, PEER_BODY_BYTES_MAX_DEFAULT);
    });
    assert_eq!(result, Ok(None));
    assert_eq!(largest, 0, "largest allocation {largest} bytes");
    assert_eq!(header.capacity(), capacity, "the decoder reserved room");
}
