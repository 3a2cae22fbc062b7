//! The segment window: creating, mapping and recycling segment files.
//!
//! Owns: how a segment comes to exist (a new fully allocated file, or a
//! spare rebuilt in place, only with room under the budget), the spares of
//! this handle's exclusive publisher (consumed segments kept to become the
//! next ones: writing into pages already allocated and resident costs a
//! memset, where a new file costs allocating every block), and retired
//! files (deleted segments a reader still maps). Retention decides what to
//! delete; this module does the deleting. Touches the state's window and
//! recycling bookkeeping, the journal lock, and the segment directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::capacity::Fill;
use crate::error::{Error, Result};
use crate::segment::{self, RebuiltSpare, Segment};
use crate::state::JournalState;

/// The mapping of segment `index` for writing, creating the file if it does
/// not exist yet (the housekeeper normally has, ahead of need).
pub(crate) fn write_segment(inner: &JournalState, index: u64) -> Result<Arc<Segment>> {
    if let Some(segment) = inner.window_get(index) {
        return Ok(segment);
    }
    if index > inner.meta.tail.max_index() {
        return Err(Error::PositionsExhausted { path: inner.dir.clone(), position: index * inner.segment_size() });
    }
    match Segment::open(&inner.dir, index, inner.identity, true) {
        Ok(segment) => {
            // Another thread or process may have linked it a moment ago and
            // not synced the directory yet: records written here and flushed
            // must not depend on that sync, which a power loss can undo.
            crate::mapped::sync_dir(&inner.dir)?;
            Ok(inner.window_insert(index, Arc::new(segment)))
        }
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => create_segment(inner, index),
        Err(other) => Err(other),
    }
}

/// Creates segment `index`, from a spare when this handle has one. One
/// thread of the handle at a time: a publisher reaching a segment the
/// housekeeper is building waits for it rather than building another.
fn create_segment(inner: &JournalState, index: u64) -> Result<Arc<Segment>> {
    let _one_at_a_time = inner.segment_creation();
    if let Some(segment) = inner.window_get(index) {
        return Ok(segment);
    }
    let rebuilt = rebuilt_spare(inner, index);
    let _guard = match inner.lock_for_publisher() {
        Ok(guard) => guard,
        Err(busy) => {
            rebuilt.into_iter().for_each(|spare| return_spare(inner, spare));
            return Err(busy);
        }
    };
    if let Err(no_room) = check_room_for_segment(inner, index, rebuilt.is_some()) {
        rebuilt.into_iter().for_each(|spare| return_spare(inner, spare));
        return Err(no_room);
    }
    let segment = create_from(inner, index, rebuilt)?;
    Ok(inner.window_insert(index, Arc::new(segment)))
}

/// Creates segment 0 of a new journal, or the tail's segment if it is
/// missing (the caller holds the lock).
pub(crate) fn ensure_first_segment(inner: &JournalState) -> Result<()> {
    let tail_index = inner.meta.tail_index();
    if !segment::path_of(&inner.dir, tail_index, inner.segment_size()).exists() {
        let created = Segment::create(&inner.dir, tail_index, inner.identity, inner.file_mode)?;
        inner.window_insert(tail_index, Arc::new(created));
    }
    Ok(())
}

/// Refuses to create segment `index` when it would take the files past the
/// capacity, or when retention has already deleted it (a handle that looked
/// at the tail a while ago must not bring an old segment back). The caller
/// holds the lock.
fn check_room_for_segment(inner: &JournalState, index: u64, from_spare: bool) -> Result<()> {
    let fill = Fill::read(&inner.meta);
    let first_index = fill.first_base / inner.segment_size();
    if index < first_index {
        let first = inner.meta.first_position().load(Ordering::Acquire);
        return Err(Error::Lost { from: index * inner.segment_size(), to: first });
    }
    // A segment compressed since the caller looked for it (a housekeeper
    // descheduled mid-prepare): creating it again would put an empty raw
    // file beside its compressed copy, and readers prefer the raw file. (Not
    // "any index below the tail's": a claimer of the shared publisher may
    // still need the segment its claim tripped after the tail moved on.)
    let compressed = segment::compressed_path_of(&inner.dir, index, inner.segment_size());
    if compressed.exists() {
        let gone = std::io::Error::new(std::io::ErrorKind::NotFound, "compressed already: not created again");
        return Err(Error::io(compressed, "create", gone));
    }
    // Spare files hold disk too, except the one this segment is made from.
    // (Retired files do not count here: each is a deleted segment that one
    // reader still maps, at most one per reader; counting them would let
    // idle readers shrink a ring to nothing.)
    let spares = segment::spare_paths(&inner.dir)?.len() as u64;
    let spares = spares.saturating_sub(u64::from(from_spare));
    let files = index - first_index + 1 + spares;
    // Two segments at least (the tail's and the next), the budget at most:
    // `Limits::validate` keeps the budget at two segments or more.
    // Compressed segments hold only their files' bytes.
    let allowed = fill.capacity.max(2 * inner.segment_size()).min(inner.meta.limits().max_disk_bytes);
    if files.saturating_mul(inner.segment_size()).saturating_sub(fill.saved) > allowed {
        return Err(Error::BackPressured { fill: fill.ratio(), capacity: fill.capacity });
    }
    Ok(())
}

/// Unlinks the file of a deleted segment, or, while a reader in any process
/// still has it mapped (its shared `flock`), renames it `.tmp-retired-N`: its
/// disk shows in `disk_bytes` until `reclaim_retired` can unlink it.
pub(crate) fn remove_or_retire(inner: &JournalState, index: u64, path: &Path) -> Result<()> {
    if unlink_or_retire(inner, index, path)? {
        crate::mapped::sync_dir(&inner.dir)?;
    }
    Ok(())
}

/// [`remove_or_retire`] without the directory sync that makes it durable
/// (the caller syncs, e.g. once it has let go of the journal lock): `true`
/// if it changed the directory.
pub(crate) fn unlink_or_retire(inner: &JournalState, index: u64, path: &Path) -> Result<bool> {
    // Earlier retired files whose last mapping went meanwhile go first.
    reclaim_retired(inner)?;
    match segment::mappings_of(path)? {
        segment::Mappings::Gone => Ok(false),
        segment::Mappings::None(_locked) => match std::fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(path, "delete", e)),
        },
        segment::Mappings::Some => {
            let retired = segment::retired_path(&inner.dir, index);
            std::fs::rename(path, &retired).map_err(|e| Error::io(&retired, "rename", e))?;
            Ok(true)
        }
    }
}

/// Unlinks the retired segments no reader has mapped any more (every
/// housekeeper tick, and before each deletion: another thread may unlink
/// the same file first).
pub(crate) fn reclaim_retired(inner: &JournalState) -> Result<()> {
    for retired in segment::retired_paths(&inner.dir)? {
        if let segment::Mappings::None(_locked) = segment::mappings_of(&retired)? {
            match std::fs::remove_file(&retired) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&retired, "delete", e)),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Unlinks the spare files a dead exclusive publisher's process left, so
/// they stop holding disk (and capacity) before the next lone open.
pub(crate) fn remove_spare_files(dir: &Path) -> Result<()> {
    for spare in segment::spare_paths(dir)? {
        let _ = std::fs::remove_file(spare);
    }
    Ok(())
}

/// Renames a consumed segment to a spare instead of unlinking it, when it
/// may be recycled and there are fewer than `keep` spares. (A spare stays on
/// disk the journal already held, so the budget is never exceeded; it counts
/// in `Stats::disk_bytes`.)
pub(crate) fn retire_as_spare(inner: &JournalState, index: u64, path: &Path, keep: usize) -> bool {
    let Some(mut recycling) = inner.recycling() else { return false };
    let eligible = recycling.from_index.is_some_and(|from| index >= from);
    if !eligible || recycling.spares.len() >= keep {
        return false;
    }
    let spare = segment::spare_path(&inner.dir, index);
    if std::fs::rename(path, &spare).is_err() {
        return false;
    }
    // Durable before the file can be rebuilt as another segment: else a
    // power loss could bring it back under its old name with a new header,
    // or keep one retirement and lose an older one (a gap).
    if crate::mapped::sync_dir(&inner.dir).is_err() {
        let _ = std::fs::remove_file(&spare);
        return true;
    }
    recycling.spares.push_back(spare);
    true
}

/// A spare rebuilt as segment `index`, if there is one. Called before
/// taking the journal lock: the memset is the slow part.
fn rebuilt_spare(inner: &JournalState, index: u64) -> Option<RebuiltSpare> {
    let mut in_use = Vec::new();
    let mut rebuilt = None;
    while let Some(spare) = take_spare(inner) {
        match RebuiltSpare::new(&spare, index, inner.identity) {
            Ok(Some(spare)) => {
                rebuilt = Some(spare);
                break;
            }
            // A reader is still inside it: keep it for a later rotation.
            Ok(None) => in_use.push(spare),
            // A spare that cannot be reused is dropped; try the next.
            Err(_) => drop(std::fs::remove_file(&spare)),
        }
    }
    if let Some(mut recycling) = inner.recycling() {
        recycling.spares.extend(in_use);
    }
    rebuilt
}

/// Puts a spare that was not used back into the pool.
fn return_spare(inner: &JournalState, spare: RebuiltSpare) {
    if let Some(mut recycling) = inner.recycling() {
        recycling.spares.push_front(spare.path().to_path_buf());
    }
}

/// Creates segment `index`, from `rebuilt` when there is one (the caller
/// holds the lock and has checked the room).
fn create_from(inner: &JournalState, index: u64, rebuilt: Option<RebuiltSpare>) -> Result<Segment> {
    let Some(rebuilt) = rebuilt else {
        return Segment::create(&inner.dir, index, inner.identity, inner.file_mode);
    };
    match rebuilt.install(&inner.dir)? {
        Ok(segment) => Ok(segment),
        Err(rebuilt) => {
            // Another handle created it first: keep the spare for later.
            return_spare(inner, rebuilt);
            Segment::open(&inner.dir, index, inner.identity, true)
        }
    }
}

fn take_spare(inner: &JournalState) -> Option<PathBuf> {
    inner.recycling()?.spares.pop_front()
}

/// Unlinks this handle's spares (when it closes).
pub(crate) fn remove_spares(inner: &JournalState) {
    if let Some(mut recycling) = inner.recycling() {
        for spare in recycling.spares.drain(..) {
            let _ = std::fs::remove_file(spare);
        }
    }
}
