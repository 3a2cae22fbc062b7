//! Durability: forcing committed records, cursors and metadata to stable
//! storage under the `Flush` policy.
//!
//! Owns: msync of what was committed since the last flush. `Flush::Always` is
//! handled inline by the publisher (it msyncs each frame it commits);
//! `Flush::Interval` by the housekeeper calling `tick`; `Journal::flush` and
//! dropping the last handle call `flush_all`.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::config::Flush;
use crate::cursor::{self, CursorFile};
use crate::error::{Error, Result};
use crate::journal::Inner;
use crate::segment;

/// msyncs every segment byte from the last flushed position up to the tail,
/// then the cursors and the metadata.
pub(crate) fn flush_all(inner: &Inner) -> Result<()> {
    if !inner.writable() {
        return Ok(());
    }
    let size = inner.segment_size();
    let first = inner.meta.first_position().load(Ordering::Acquire);
    let from = inner.flushed_position.load(Ordering::Acquire).max(first);
    let tail = inner.meta.tail_position();
    // Only the segments that exist: the positions come from a shared file
    // and may be anything, so never walk them index by index.
    for index in segment::list(&inner.dir, size)? {
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
    inner.flushed_position.fetch_max(tail, Ordering::AcqRel);
    // Recorded after the segments are on the media, before the metadata
    // page that carries it is synced: recovery trusts everything below it.
    inner.meta.flushed_position().fetch_max(tail, Ordering::AcqRel);
    for name in cursor::list(&inner.dir)? {
        if let Ok(cursor) = CursorFile::open(&inner.dir, &name, inner.identity.journal_id, true) {
            cursor.flush()?;
        }
    }
    inner.meta.flush()
}

/// Called by the housekeeper every tick: flushes when the interval is due.
pub(crate) fn tick(inner: &Inner, last: &mut Instant) -> Result<()> {
    let policy = inner.meta.limits().flush;
    inner.flush_always.store(policy == Flush::Always, Ordering::Relaxed);
    if let Flush::Interval(every) = policy
        && last.elapsed() >= every
    {
        *last = Instant::now();
        flush_all(inner)?;
    }
    Ok(())
}
