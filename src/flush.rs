//! Durability: forcing committed records, cursors and metadata to stable
//! storage under the `Flush` policy.
//!
//! Owns: msync of what was committed since the last flush. `Flush::Always` is
//! handled inline by the publisher (it msyncs each frame it commits);
//! `Flush::Interval` by the housekeeper calling `tick`; `Journal::flush` and
//! dropping the last handle call `flush_all`.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::config::Flush;
use crate::cursor::{self, CursorFile};
use crate::error::{Error, Result};
use crate::frame::{self, Decoded};
use crate::segment;
use crate::state::JournalState;

/// msyncs every segment byte from the last flushed position up to the tail,
/// then the cursors and the metadata.
pub(crate) fn flush_all(inner: &JournalState) -> Result<()> {
    if !inner.writable() {
        return Ok(());
    }
    let size = inner.segment_size();
    let first = inner.meta.first_position().load(Ordering::Acquire);
    let from = inner.flushed_position.load(Ordering::Acquire).max(first);
    let tail = inner.meta.tail_position();
    // Only the segments that exist: the positions come from a shared file
    // and may be anything, so never walk them index by index. Compressed
    // ones are skipped: sealed, every frame committed and checked, and
    // synced before they took their name (their decompressed copy is
    // memory, not the file).
    let files = segment::list_files(&inner.dir, size)?;
    let compressed: BTreeSet<u64> = segment::compressed_only(&files).map(|file| file.index).collect();
    // How far the frames are committed, walked *before* the msyncs: a claim
    // still being written stops it, and the next flush starts there. Walked
    // after, a claim committed between an msync and the walk would count as
    // flushed though its header reached the page after the msync, and no
    // later flush would sync it.
    let committed = committed_until(inner, from, tail, &compressed);
    for index in files.iter().filter(|file| !file.compressed).map(|file| file.index) {
        let (start, end) = (from.max(index * size), tail.min((index + 1) * size));
        if start >= end {
            continue;
        }
        match inner.read_segment(index) {
            Ok(segment) => segment.file().flush_range((start % size) as usize, (end - start) as usize)?,
            // Deleted by retention meanwhile: nothing left to flush.
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(other) => return Err(other),
        }
    }
    inner.flushed_position.fetch_max(committed, Ordering::AcqRel);
    // Recorded after the segments are on the media, before the metadata
    // page that carries it is synced: recovery trusts everything below it.
    inner.meta.flushed_position().fetch_max(committed, Ordering::AcqRel);
    for name in cursor::list(&inner.dir)? {
        if let Ok(cursor) = CursorFile::open(&inner.dir, &name, inner.identity.journal_id, true) {
            cursor.flush()?;
        }
    }
    inner.meta.flush()
}

/// The first position at or after `from` that does not hold a committed
/// frame (a claim being written, or bytes no frame explains), or `tail`.
/// The `compressed` segments are committed throughout: passed over, not
/// decompressed and walked.
fn committed_until(inner: &JournalState, from: u64, tail: u64, compressed: &BTreeSet<u64>) -> u64 {
    let size = inner.segment_size();
    let mut position = from;
    let mut mapped: Option<std::sync::Arc<crate::segment::Segment>> = None;
    while position < tail {
        let index = position / size;
        if compressed.contains(&index) {
            position = (index + 1).saturating_mul(size).saturating_add(segment::SEGMENT_HEADER_LEN);
            continue;
        }
        if mapped.as_ref().is_none_or(|segment| segment.index != index) {
            match inner.read_segment(index) {
                Ok(segment) => mapped = Some(segment),
                Err(_) => return position,
            }
        }
        let Some(segment) = &mapped else { return position };
        let offset = (position % size) as usize;
        let word = segment.word0(offset).load(Ordering::Acquire);
        let aligned_len = match frame::decode(word, &segment.bytes()[offset..], position, false) {
            Ok(Decoded::Data { aligned_len, .. } | Decoded::Padding { aligned_len }) => aligned_len,
            _ => return position,
        };
        position = segment::next_position(position, aligned_len, size);
    }
    tail
}

/// Called by the housekeeper every tick: flushes when the interval is due.
pub(crate) fn tick(inner: &JournalState, last: &mut Instant) -> Result<()> {
    if let Flush::Interval(every) = inner.meta.limits().flush
        && last.elapsed() >= every
    {
        *last = Instant::now();
        flush_all(inner)?;
    }
    Ok(())
}
