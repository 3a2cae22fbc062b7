//! Capacity and watermarks: how full the journal is, the level state
//! machine (normal → shedding → back-pressured, with hysteresis down to
//! `resume`) and the per-priority limit positions the hot path compares
//! against.
//!
//! Owns: the capacity, level and limit words of the metadata, which any
//! handle may recompute at any time (they are derived from the tail, the
//! first position and the filesystem, so racing writers agree). Touches the
//! segment directory only to count files. Fill counts real bytes on disk:
//! `(tail_position - first segment's base - saved) / capacity`, where
//! `saved` is what compressed segments spare (each one's segment size
//! minus its file); the files on disk are that rounded up to whole
//! segments (plus the prepared ones), never more than the budget. Saved
//! bytes are room: the publication limits move out by as much.

use std::path::Path;
use std::sync::atomic::Ordering;

use crate::config::Limits;
use crate::error::{Error, Result};
use crate::meta::{Level, Meta};
use crate::state::JournalState;
use crate::{CompressionStats, Stats};
use crate::{append_count, segment, wake};

/// A snapshot of how full the journal is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fill {
    pub first_base: u64,
    pub tail: u64,
    pub capacity: u64,
    /// Bytes of positions that compressed segments hold without their disk.
    pub saved: u64,
}

impl Fill {
    pub fn read(meta: &Meta) -> Fill {
        let first = meta.first_position().load(Ordering::Acquire);
        let first_base = first - first % meta.segment_size;
        let tail = meta.tail_position();
        let saved = meta.compression_saved().load(Ordering::Acquire);
        Fill { first_base, tail, capacity: meta.capacity().load(Ordering::Acquire).max(1), saved }
    }

    /// Bytes on disk from the first segment to the tail.
    pub fn used(&self) -> u64 {
        self.tail.saturating_sub(self.first_base).saturating_sub(self.saved)
    }

    pub fn ratio(&self) -> f64 {
        self.used() as f64 / self.capacity as f64
    }

    /// The tail position at which fill would be `fraction`.
    pub fn position_at(&self, fraction: f64) -> u64 {
        self.first_base.saturating_add(self.saved).saturating_add((self.capacity as f64 * fraction) as u64)
    }

    /// The end of the last whole segment that fits in the capacity.
    pub fn hard_end(&self, segment_size: u64) -> u64 {
        let segments = (self.capacity.saturating_add(self.saved) / segment_size).max(1);
        self.first_base.saturating_add(segments * segment_size)
    }
}

/// The level for `fill` given the previous level (hysteresis).
fn next_level(previous: Level, fill: f64, limits: &Limits) -> Level {
    let marks = limits.watermarks;
    let holding = |level: Level| previous >= level && fill >= marks.resume;
    if fill >= marks.high || holding(Level::BackPressured) {
        Level::BackPressured
    } else if fill >= marks.shed || holding(Level::Shedding) {
        Level::Shedding
    } else {
        Level::Normal
    }
}

/// Recomputes the level and the publication limits from the metadata (no
/// syscalls unless a raised limit wakes sleeping publishers), and tells
/// level watchers about a transition.
pub(crate) fn recompute_limits(inner: &JournalState) -> Level {
    let meta = &inner.meta;
    let limits = meta.limits();
    let fill = Fill::read(meta);
    let previous = Level::from_u32(meta.level().load(Ordering::Acquire));
    let level = next_level(previous, fill.ratio(), &limits);
    let hard_end = fill.hard_end(inner.segment_size());
    let normal = match level {
        Level::BackPressured => fill.tail.min(fill.position_at(limits.watermarks.high)),
        _ => fill.position_at(limits.watermarks.high).min(hard_end),
    };
    let low = match level {
        Level::Normal => fill.position_at(limits.watermarks.shed).min(normal),
        _ => fill.tail.min(fill.position_at(limits.watermarks.shed)),
    };
    let released = normal > meta.normal_limit().load(Ordering::Relaxed);
    meta.normal_limit().store(normal, Ordering::Release);
    meta.low_limit().store(low, Ordering::Release);
    meta.level().store(level as u32, Ordering::Release);
    if released {
        // Publishers waiting under back-pressure may fit now.
        wake::notify(meta);
    }
    inner.tell_watchers(level);
    level
}

/// Re-reads the filesystem's free space into the capacity, then recomputes
/// the limits. Called at open and by the housekeeper every tick.
pub(crate) fn refresh(inner: &JournalState) -> Result<()> {
    if inner.writable() {
        let capacity = capacity(inner)?;
        inner.meta.capacity().store(capacity, Ordering::Release);
        // Under the journal lock, like every other recount (after a
        // compression or a deletion): a count from a listing taken before
        // another handle's compression never overwrites the count it made.
        let _guard = inner.lock()?;
        account_compressed(inner)?;
    }
    Ok(())
}

/// `min(budget, bytes held + what the filesystem can give above min_free)`.
fn capacity(inner: &JournalState) -> Result<u64> {
    let limits = inner.meta.limits();
    let stat = rustix::fs::statvfs(&inner.dir).map_err(|e| Error::io(&inner.dir, "statvfs", e.into()))?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    let held = disk_bytes(inner)?;
    let from_fs = held.saturating_add(free.saturating_sub(limits.min_free_disk));
    Ok(limits.max_disk_bytes.min(from_fs))
}

/// Bytes held by segment files on disk (raw ones count their full size,
/// compressed ones their length), including spares and deleted segments
/// that a reader still has mapped.
pub(crate) fn disk_bytes(inner: &JournalState) -> Result<u64> {
    Ok(disk_use(inner)?.total)
}

/// What the journal's files hold on disk, from one listing.
#[derive(Clone, Copy, Default)]
struct DiskUse {
    total: u64,
    /// Of `total`, deleted segments that a reader still has mapped.
    retired: u64,
}

fn disk_use(inner: &JournalState) -> Result<DiskUse> {
    let size = inner.segment_size();
    let files = segment::list_disk_files(&inner.dir, size)?;
    let segments: u64 = files.segments.iter().map(|file| if file.compressed { file.len } else { size }).sum();
    let retired = files.retired * size;
    Ok(DiskUse { total: segments + files.spares * size + retired, retired })
}

/// What the compressed segments in the directory amount to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CompressedFiles {
    /// Segments whose only file is the compressed one.
    pub segments: u64,
    /// Their files' bytes.
    pub file_bytes: u64,
    /// The disk they spare: the segment size minus the file, summed.
    pub saved: u64,
}

/// Counts the compressed segments (a segment that still has its raw file
/// too, mid-replacement, spares nothing yet).
pub(crate) fn compressed_files(dir: &Path, segment_size: u64) -> Result<CompressedFiles> {
    let files = segment::list_files(dir, segment_size)?;
    let mut found = CompressedFiles::default();
    for file in segment::compressed_only(&files) {
        found.segments += 1;
        found.file_bytes += file.len;
        found.saved += segment_size.saturating_sub(file.len);
    }
    Ok(found)
}

/// Re-counts what compressed segments spare into the metadata, then
/// recomputes the limits: after a segment was compressed or deleted, and
/// every housekeeper tick. The caller holds the journal lock, under which
/// every change to what is saved (the raw file's unlink, a deletion) and
/// every recount happen, so the stored count is never older than one
/// already stored.
pub(crate) fn account_compressed(inner: &JournalState) -> Result<()> {
    let found = compressed_files(&inner.dir, inner.segment_size())?;
    inner.meta.compression_saved().store(found.saved, Ordering::Release);
    recompute_limits(inner);
    Ok(())
}

/// A claim did not fit under a watermark: the journal is at that level now,
/// even if the fill itself is a record short of the mark.
pub(crate) fn raise_level(inner: &JournalState, level: Level) {
    let previous = inner.meta.level().fetch_max(level as u32, Ordering::AcqRel);
    if previous < level as u32 {
        recompute_limits(inner);
    }
}

/// Counters and levels.
pub(crate) fn stats(inner: &JournalState) -> Stats {
    let meta = &inner.meta;
    let fill = Fill::read(meta);
    let disk = disk_use(inner).unwrap_or_default();
    Stats {
        appended: append_count::total(meta),
        dropped_low: meta.dropped_low().load(Ordering::Relaxed),
        back_pressured: meta.back_pressured().load(Ordering::Relaxed),
        evictions: meta.evictions().load(Ordering::Relaxed),
        lost_bytes: meta.lost_bytes().load(Ordering::Relaxed),
        unblocked: meta.unblocked().load(Ordering::Relaxed),
        fill: fill.ratio(),
        capacity: fill.capacity,
        // The stored level moves when a handle recomputes it; applying the
        // current fill shows the level even when no writer is running.
        level: next_level(Level::from_u32(meta.level().load(Ordering::Acquire)), fill.ratio(), &meta.limits()),
        first_position: meta.first_position().load(Ordering::Acquire),
        tail_position: fill.tail,
        disk_bytes: disk.total,
        retired_bytes: disk.retired,
        compression: compression_stats(inner),
        exclusive_publisher: match meta.exclusive_pid().load(Ordering::Acquire) {
            0 => None,
            pid => Some(pid as u32),
        },
    }
}

fn compression_stats(inner: &JournalState) -> CompressionStats {
    let size = inner.segment_size();
    let found = compressed_files(&inner.dir, size).unwrap_or_default();
    let meta = &inner.meta;
    CompressionStats {
        segments: found.segments,
        segment_bytes: found.segments * size,
        file_bytes: found.file_bytes,
        compressed_total: meta.compressed_segments().load(Ordering::Relaxed),
        raw_bytes_total: meta.compressed_raw_bytes().load(Ordering::Relaxed),
        file_bytes_total: meta.compressed_file_bytes().load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_rise_at_their_marks_and_fall_only_below_resume() {
        let limits = Limits::default();
        assert_eq!(next_level(Level::Normal, 0.79, &limits), Level::Normal);
        assert_eq!(next_level(Level::Normal, 0.80, &limits), Level::Shedding);
        assert_eq!(next_level(Level::Shedding, 0.95, &limits), Level::BackPressured);
        assert_eq!(next_level(Level::BackPressured, 0.75, &limits), Level::BackPressured);
        assert_eq!(next_level(Level::BackPressured, 0.69, &limits), Level::Normal);
        assert_eq!(next_level(Level::Shedding, 0.71, &limits), Level::Shedding);
    }
}
