//! The raw limit the peers bench compares against, shared by
//! `benches/peers.rs` and `examples/excl_raw_probe.rs` (which runs the loop
//! alone for `perf record`): frames written straight into a mapped,
//! fallocated file, with backwater's CRC and clock and a payload whose
//! length the compiler cannot see, so the difference to a journal row is
//! the journal's own work.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where the raw frame's fields lie (as in backwater's 24-byte header: a
/// 4-byte length word, the CRC, the timestamp).
const CRC: std::ops::Range<usize> = 4..8;
const TIMESTAMP: std::ops::Range<usize> = 8..16;
const PAYLOAD_AT: usize = 24;

/// A fallocated file of `len` bytes at `path`, mapped writable; with
/// `resident`, every page faulted in before it is returned.
pub fn map(path: &Path, len: usize, resident: bool) -> std::io::Result<memmap2::MmapMut> {
    let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
    rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, len as u64)?;
    // SAFETY: a file of our own, nobody else maps or truncates it.
    let mut map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(&file) }?;
    if resident {
        map.fill(0);
    }
    Ok(map)
}

/// Writes `n` frames of `payload` every `STRIDE` bytes of `map`, each
/// committed by a release store of its length word.
#[inline(never)]
pub fn write_frames<const STRIDE: usize>(map: &mut [u8], n: usize, payload: &[u8]) {
    const { assert!(STRIDE.is_multiple_of(8)) };
    for i in 0..n {
        let frame = &mut map[i * STRIDE..(i + 1) * STRIDE];
        frame[TIMESTAMP].copy_from_slice(&backwater::frame::now_ns().to_le_bytes());
        frame[CRC].copy_from_slice(&backwater::frame::crc(payload).to_le_bytes());
        frame[PAYLOAD_AT..PAYLOAD_AT + payload.len()].copy_from_slice(payload);
        // SAFETY: 4-byte aligned (STRIDE is a multiple of 8, the map is
        // page-aligned), in bounds (the slice above).
        let length = unsafe { &*(frame.as_mut_ptr() as *const AtomicU32) };
        length.store(STRIDE as u32, Ordering::Release);
    }
}

/// Reads back the first `len` bytes of frames `write_frames` wrote, checking
/// each CRC (with crc32fast alone); returns a sum of their first bytes.
#[inline(never)]
pub fn read_frames<const STRIDE: usize>(map: &[u8], len: usize) -> u64 {
    let (mut sum, mut offset) = (0u64, 0);
    while offset < len {
        let frame = &map[offset..offset + STRIDE];
        let stored = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        if crc32fast::hash(&frame[PAYLOAD_AT..]) == stored {
            sum += frame[PAYLOAD_AT] as u64;
        }
        offset += STRIDE;
    }
    sum
}
