//! Retention, capacity and watermarks: which segments may be deleted, how full
//! the journal is, and the publication limits the hot path compares against.
//!
//! Owns: the level state machine (normal → shedding → back-pressured, with
//! hysteresis down to `resume`), the per-priority limit positions in the
//! metadata, segment deletion and the `WhenFull` policies. Touches the
//! metadata, cursor files (to read positions and mark evictions) and segment
//! files (to unlink them), always under the journal lock when it changes
//! anything.
//!
//! Fill is `(tail_position - first segment's base) / capacity`; the files on
//! disk are that rounded up to whole segments (plus at most one prepared
//! ahead), and never more than the budget.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use crate::config::{Limits, WhenFull};
use crate::cursor::{self, CursorFile};
use crate::error::{Error, OfferError, Result};
use crate::journal::Inner;
use crate::meta::{Level, Meta};
use crate::segment::{self, RebuiltSpare, SEGMENT_HEADER_LEN, Segment};
use crate::{Priority, Stats};

/// A snapshot of how full the journal is.
#[derive(Clone, Copy, Debug)]
struct Fill {
    first_base: u64,
    tail: u64,
    capacity: u64,
}

impl Fill {
    fn read(meta: &Meta) -> Fill {
        let first = meta.first_position().load(Ordering::Acquire);
        let first_base = first - first % meta.segment_size;
        let tail = meta.tail_position();
        Fill { first_base, tail, capacity: meta.capacity().load(Ordering::Acquire).max(1) }
    }

    fn used(&self) -> u64 {
        self.tail.saturating_sub(self.first_base)
    }

    fn ratio(&self) -> f64 {
        self.used() as f64 / self.capacity as f64
    }

    fn position_at(&self, fraction: f64) -> u64 {
        self.first_base.saturating_add((self.capacity as f64 * fraction) as u64)
    }

    /// The end of the last whole segment that fits in the capacity.
    fn hard_end(&self, segment_size: u64) -> u64 {
        let segments = (self.capacity / segment_size).max(1);
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
/// syscalls), and tells level watchers about a transition.
pub(crate) fn recompute_limits(inner: &Inner) -> Level {
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
    meta.normal_limit().store(normal, Ordering::Release);
    meta.low_limit().store(low, Ordering::Release);
    meta.level().store(level as u32, Ordering::Release);
    notify_level(inner, level);
    level
}

/// Tells this handle's watchers when the level differs from the last one they saw.
fn notify_level(inner: &Inner, level: Level) {
    if let Ok(mut watchers) = inner.level_watchers.lock()
        && inner.last_level.swap(level as u32, Ordering::AcqRel) != level as u32
    {
        watchers.retain(|watcher| watcher.send(level).is_ok());
    }
}

/// Re-reads the filesystem's free space into the capacity, then recomputes
/// the limits. Called at open and by the housekeeper every tick.
pub(crate) fn refresh(inner: &Inner) -> Result<()> {
    if inner.writable() {
        let capacity = capacity(inner)?;
        inner.meta.capacity().store(capacity, Ordering::Release);
        recompute_limits(inner);
    }
    Ok(())
}

/// `min(budget, bytes held + what the filesystem can give above min_free)`.
fn capacity(inner: &Inner) -> Result<u64> {
    let limits = inner.meta.limits();
    let stat = rustix::fs::statvfs(&inner.dir).map_err(|e| Error::io(&inner.dir, "statvfs", e.into()))?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    let held = disk_bytes(inner)?;
    let from_fs = held.saturating_add(free.saturating_sub(limits.min_free_disk));
    Ok(limits.max_disk_bytes.min(from_fs))
}

/// Bytes held by segment files on disk, including spares and deleted
/// segments that a reader still has mapped.
fn disk_bytes(inner: &Inner) -> Result<u64> {
    let segments = segment::list(&inner.dir, inner.segment_size())?.len() as u64;
    Ok((segments + parked_files(&inner.dir)?) * inner.segment_size())
}

/// Segment-sized files that are not segments but hold disk: spares (any
/// handle's) and retired segments (counted in `disk_bytes`).
fn parked_files(dir: &Path) -> Result<u64> {
    Ok((paths_named(dir, SPARE_PREFIX)?.len() + paths_named(dir, RETIRED_PREFIX)?.len()) as u64)
}

fn spare_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    paths_named(dir, SPARE_PREFIX)
}

fn paths_named(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, "read directory", e))?;
    let matching = entries.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(prefix));
    Ok(matching.map(|e| e.path()).collect())
}

/// How deleted segments that a reader still has mapped are named until the
/// last mapping goes (`.tmp-`: recovery removes them).
const RETIRED_PREFIX: &str = ".tmp-retired-";

/// Unlinks the file of a deleted segment, or, while a reader in any process
/// still has it mapped (its shared `flock`), renames it `.tmp-retired-N`: its
/// disk shows in `disk_bytes` until `reclaim_retired` can unlink it.
fn remove_or_retire(inner: &Inner, index: u64, path: &Path) -> Result<()> {
    // Earlier retired files whose last mapping went meanwhile go first.
    reclaim_retired(inner)?;
    match mappings_of(path)? {
        Mappings::Gone => Ok(()),
        Mappings::None(_locked) => crate::mapped::remove_durably(path).map(drop),
        Mappings::Some => {
            let retired = inner.dir.join(format!("{RETIRED_PREFIX}{index}"));
            std::fs::rename(path, &retired).map_err(|e| Error::io(&retired, "rename", e))?;
            crate::mapped::sync_dir(&inner.dir)
        }
    }
}

/// Unlinks the retired segments no reader has mapped any more (every
/// housekeeper tick).
pub(crate) fn reclaim_retired(inner: &Inner) -> Result<()> {
    for retired in paths_named(&inner.dir, RETIRED_PREFIX)? {
        if let Mappings::None(_locked) = mappings_of(&retired)? {
            std::fs::remove_file(&retired).map_err(|e| Error::io(&retired, "delete", e))?;
        }
    }
    Ok(())
}

/// Whether anyone has a file mapped, by its `flock` (every `Segment` holds
/// its file's lock shared).
enum Mappings {
    /// Nobody: the file, locked exclusively until dropped.
    None(std::fs::File),
    Some,
    /// The file is gone.
    Gone,
}

fn mappings_of(path: &Path) -> Result<Mappings> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Mappings::Gone),
        Err(e) => return Err(Error::io(path, "open", e)),
    };
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Mappings::None(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(Mappings::Some),
        Err(e) => Err(Error::io(path, "flock", e.into())),
    }
}

/// Unlinks the spare files a dead exclusive publisher's process left, so
/// they stop holding disk (and capacity) before the next lone open.
pub(crate) fn remove_spare_files(dir: &Path) -> Result<()> {
    for spare in spare_paths(dir)? {
        let _ = std::fs::remove_file(spare);
    }
    Ok(())
}

/// The slow path of a claim that would pass its limit: recompute, apply the
/// `WhenFull` policy, and either let the claim retry (`Ok`) or refuse it.
#[cold]
pub(crate) fn at_limit(inner: &Inner, priority: Priority, aligned: u64) -> Result<(), OfferError> {
    inner.require_writable()?;
    let fits =
        |inner: &Inner| inner.meta.tail_position() + aligned <= inner.meta.limit(priority).load(Ordering::Acquire);
    recompute_limits(inner);
    if fits(inner) {
        return Ok(());
    }
    let fill = Fill::read(&inner.meta);
    if priority == Priority::Low {
        raise_level(inner, Level::Shedding);
        return Err(OfferError::Dropped { priority, fill: fill.ratio() });
    }
    if inner.meta.limits().when_full != WhenFull::Block {
        make_room(inner)?;
        if fits(inner) {
            return Ok(());
        }
    }
    raise_level(inner, Level::BackPressured);
    Err(OfferError::BackPressured { fill: fill.ratio(), capacity: fill.capacity })
}

/// A claim did not fit under a watermark: the journal is at that level now,
/// even if the fill itself is a record short of the mark.
fn raise_level(inner: &Inner, level: Level) {
    let previous = inner.meta.level().fetch_max(level as u32, Ordering::AcqRel);
    if previous < level as u32 {
        recompute_limits(inner);
    }
}

/// A rotation could not create the next segment. A lack of room (budget, or
/// a full filesystem) under a dropping policy deletes the oldest segment and
/// asks for another try (`Ok`); under `Block` it is back-pressure. Other
/// errors are returned as they are.
pub(crate) fn rotation_failed(inner: &Inner, error: Error) -> Result<(), OfferError> {
    let full = match &error {
        Error::BackPressured { .. } | Error::JournalBusy { .. } => true,
        Error::Io { source, .. } => {
            source.kind() == std::io::ErrorKind::StorageFull || source.raw_os_error() == Some(28)
        }
        _ => false,
    };
    if !full {
        return Err(OfferError::Failed(error));
    }
    // Files the positions do not show (spares a reader still has mapped,
    // retired segments) can fill the budget below the high watermark.
    if inner.meta.limits().when_full != WhenFull::Block && drop_oldest_segment(inner)? {
        return Ok(());
    }
    inner.meta.normal_limit().store(inner.meta.tail_position(), Ordering::Release);
    let fill = Fill::read(&inner.meta);
    Err(OfferError::BackPressured { fill: fill.ratio(), capacity: fill.capacity })
}

/// The journal lock for a publisher's path, or `None` while another process
/// holds it stuck (`Error::JournalBusy`); other errors are errors.
fn lock_unless_stuck(inner: &Inner) -> Result<Option<crate::journal::JournalLock<'_>>> {
    match inner.lock_for_publisher() {
        Ok(guard) => Ok(Some(guard)),
        Err(Error::JournalBusy { .. }) => Ok(None),
        Err(other) => Err(other),
    }
}

/// Applies the dropping policy to the oldest segment if it is not the tail's:
/// `true` if one went.
fn drop_oldest_segment(inner: &Inner) -> Result<bool, OfferError> {
    let Some(_guard) = lock_unless_stuck(inner)? else { return Ok(false) };
    let size = inner.segment_size();
    let oldest = segment::list(&inner.dir, size)?.first().copied();
    match oldest {
        // Never the tail's own segment, even when it is full: the segment
        // after it may not exist yet.
        Some(oldest) if oldest < inner.meta.tail_index() => {
            drop_segment(inner, oldest, &inner.meta.limits())?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Refuses to create segment `index` when it would take the files past the
/// capacity, or when retention has already deleted it (a handle that looked
/// at the tail a while ago must not bring an old segment back). The caller
/// holds the lock.
pub(crate) fn check_room_for_segment(inner: &Inner, index: u64, from_spare: bool) -> Result<()> {
    let fill = Fill::read(&inner.meta);
    let first_index = fill.first_base / inner.segment_size();
    if index < first_index {
        let first = inner.meta.first_position().load(Ordering::Acquire);
        return Err(Error::Lost { from: index * inner.segment_size(), to: first });
    }
    // Spare files hold disk too, except the one this segment is made from.
    // (Retired files do not count here: each is a deleted segment that one
    // reader still maps, at most one per reader; counting them would let
    // idle readers shrink a ring to nothing.)
    let spares = spare_paths(&inner.dir)?.len() as u64;
    let spares = spares.saturating_sub(u64::from(from_spare));
    let files = index - first_index + 1 + spares;
    // Two segments at least (the tail's and the next), the budget at most:
    // `Limits::validate` keeps the budget at two segments or more.
    let allowed = fill.capacity.max(2 * inner.segment_size()).min(inner.meta.limits().max_disk_bytes);
    if files.saturating_mul(inner.segment_size()) > allowed {
        return Err(Error::BackPressured { fill: fill.ratio(), capacity: fill.capacity });
    }
    Ok(())
}

/// One retention pass: deletes every segment that all attached durable
/// cursors have moved past (keeping the replay window), then recomputes the
/// limits. Called by the housekeeper.
pub(crate) fn run(inner: &Inner) -> Result<()> {
    {
        let _guard = inner.lock()?;
        let cursors = open_cursors(inner)?;
        let limits = inner.meta.limits();
        let under_pressure = Fill::read(&inner.meta).ratio() >= limits.watermarks.shed;
        delete_consumed(inner, &cursors, &limits, under_pressure)?;
    }
    let level = recompute_limits(inner);
    if level == Level::BackPressured && inner.meta.limits().when_full != WhenFull::Block {
        make_room(inner)?;
    }
    Ok(())
}

fn open_cursors(inner: &Inner) -> Result<Vec<CursorFile>> {
    let mut cursors = Vec::new();
    for name in cursor::list(&inner.dir)? {
        match CursorFile::open(&inner.dir, &name, inner.identity.journal_id, true) {
            Ok(cursor) => cursors.push(cursor),
            // Deleted between listing and opening: it holds nothing.
            Err(Error::NoSuchCursor(_)) => {}
            Err(other) => return Err(other),
        }
    }
    Ok(cursors)
}

/// The lowest position held by an attached (not evicted) cursor, if any.
fn slowest(cursors: &[CursorFile]) -> Option<u64> {
    cursors.iter().filter(|c| c.eviction().is_none()).map(CursorFile::position).min()
}

fn delete_consumed(inner: &Inner, cursors: &[CursorFile], limits: &Limits, under_pressure: bool) -> Result<()> {
    let Some(slowest) = slowest(cursors) else { return Ok(()) };
    let size = inner.segment_size();
    let tail = inner.meta.tail_position();
    let tail_index = tail / size;
    for index in segment::list(&inner.dir, size)? {
        let end = (index + 1) * size;
        if index >= tail_index || slowest < end {
            break;
        }
        if !under_pressure && in_replay_window(inner, index, tail, limits) {
            break;
        }
        persist_cursors(inner, cursors)?;
        // Consumers moved on: keep only what the next segments need soon.
        delete_oldest(inner, index, inner.segments_ahead as usize + 1)?;
    }
    Ok(())
}

fn in_replay_window(inner: &Inner, index: u64, tail: u64, limits: &Limits) -> bool {
    let end = (index + 1) * inner.segment_size();
    if tail.saturating_sub(end) < limits.retain_bytes {
        return true;
    }
    if limits.retain_for.is_zero() {
        return false;
    }
    let path = segment::path_of(&inner.dir, index, inner.segment_size());
    let age = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| SystemTime::now().duration_since(modified).ok())
        .unwrap_or(Duration::ZERO);
    age < limits.retain_for
}

/// Cursors that moved past a segment are made durable before it is unlinked,
/// so a power loss cannot leave a cursor pointing into a deleted segment.
fn persist_cursors(inner: &Inner, cursors: &[CursorFile]) -> Result<()> {
    if inner.meta.limits().flush == crate::Flush::Never {
        return Ok(());
    }
    cursors.iter().try_for_each(CursorFile::flush)
}

/// Moves the first position past segment `index`, then unlinks it or keeps
/// it as a spare while there are fewer than `keep` (the caller holds the
/// lock; `index` is the oldest segment).
fn delete_oldest(inner: &Inner, index: u64, keep: usize) -> Result<()> {
    let size = inner.segment_size();
    let next_first = (index + 1) * size + SEGMENT_HEADER_LEN;
    inner.meta.first_position().fetch_max(next_first, Ordering::AcqRel);
    if let Ok(mut window) = inner.window.lock() {
        window.remove(&index);
    }
    let path = segment::path_of(&inner.dir, index, size);
    if retire_as_spare(inner, index, &path, keep) {
        return Ok(());
    }
    remove_or_retire(inner, index, &path)
}

/// Consumed segment files kept to become the next segments: writing into
/// pages that are already allocated and resident costs a memset, where a new
/// file costs allocating every block and page (the sustained append rate's
/// limit on this machine).
///
/// Only segments written by this handle's live `ExclusivePublisher` alone
/// are recycled. While it lives no fetch-add claimer exists in any process
/// (the publisher lock), so nobody can still be writing into a retired file;
/// and since it commits every frame before moving the tail, no reader can be
/// waiting to unblock a hole in one. A reader still mapping the old segment
/// finds its position below the first position: `Error::Lost`.
#[derive(Default)]
pub(crate) struct Recycling {
    /// Segments from this index on were written by the live exclusive
    /// publisher alone; `None` while there is none.
    pub from_index: Option<u64>,
    /// Retired segment files, renamed `.tmp-spare-INDEX`, oldest first.
    pub spares: VecDeque<PathBuf>,
}

/// How spare segment files are named (`.tmp-`: recovery removes them).
const SPARE_PREFIX: &str = ".tmp-spare-";

/// Renames a consumed segment to a spare instead of unlinking it, when it
/// may be recycled and there are fewer than `keep` spares. (A spare stays on
/// disk the journal already held, so the budget is never exceeded; it counts
/// in `Stats::disk_bytes`.)
fn retire_as_spare(inner: &Inner, index: u64, path: &Path, keep: usize) -> bool {
    let Ok(mut recycling) = inner.recycling.lock() else { return false };
    let eligible = recycling.from_index.is_some_and(|from| index >= from);
    if !eligible || recycling.spares.len() >= keep {
        return false;
    }
    let spare = inner.dir.join(format!("{SPARE_PREFIX}{index}"));
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
pub(crate) fn rebuilt_spare(inner: &Inner, index: u64) -> Option<RebuiltSpare> {
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
    if let Ok(mut recycling) = inner.recycling.lock() {
        recycling.spares.extend(in_use);
    }
    rebuilt
}

/// Puts a spare that was not used back into the pool.
pub(crate) fn return_spare(inner: &Inner, spare: RebuiltSpare) {
    if let Ok(mut recycling) = inner.recycling.lock() {
        recycling.spares.push_front(spare.path().to_path_buf());
    }
}

/// Creates segment `index`, from `rebuilt` when there is one (the caller
/// holds the lock and has checked the room).
pub(crate) fn create_segment(inner: &Inner, index: u64, rebuilt: Option<RebuiltSpare>) -> Result<Segment> {
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

fn take_spare(inner: &Inner) -> Option<PathBuf> {
    inner.recycling.lock().ok()?.spares.pop_front()
}

/// Unlinks this handle's spares (when it closes).
pub(crate) fn remove_spares(inner: &Inner) {
    if let Ok(mut recycling) = inner.recycling.lock() {
        for spare in recycling.spares.drain(..) {
            let _ = std::fs::remove_file(spare);
        }
    }
}

/// Applies `DropOldest` or `EvictSlowest` until fill is below `resume`.
fn make_room(inner: &Inner) -> Result<(), OfferError> {
    // Stuck: no room now; the caller reports back-pressure.
    let Some(guard) = lock_unless_stuck(inner)? else { return Ok(()) };
    let limits = inner.meta.limits();
    let size = inner.segment_size();
    // Walk the files that exist, oldest first: positions come from a shared
    // file, so the loop is bounded by the directory, not by arithmetic on them.
    for oldest in segment::list(&inner.dir, size)? {
        let fill = Fill::read(&inner.meta);
        if fill.ratio() < limits.watermarks.resume || oldest >= fill.tail / size {
            break;
        }
        drop_segment(inner, oldest, &limits)?;
    }
    drop(guard);
    recompute_limits(inner);
    // There is room again: the housekeeper can prepare the next segments
    // before the publisher reaches them, instead of at its next tick.
    inner.wake_housekeeper();
    Ok(())
}

/// Deletes the oldest segment `oldest` under `DropOldest` or `EvictSlowest`,
/// counting what unread data went and evicting its holders (the caller
/// holds the lock).
fn drop_segment(inner: &Inner, oldest: u64, limits: &Limits) -> Result<()> {
    let size = inner.segment_size();
    let cursors = open_cursors(inner)?;
    let end = (oldest + 1) * size;
    let slowest = slowest(&cursors);
    if limits.when_full == WhenFull::EvictSlowest {
        evict_holders(inner, &cursors, end)?;
    }
    let lost_from = slowest.unwrap_or(oldest * size).max(oldest * size);
    inner.meta.lost_bytes().fetch_add(end.saturating_sub(lost_from), Ordering::Relaxed);
    persist_cursors(inner, &cursors)?;
    // The ring grows back to the high watermark: every file is reused.
    delete_oldest(inner, oldest, usize::MAX)
}

/// Detaches every attached cursor positioned before `end` (it pins the
/// oldest segment). The eviction is flushed before the segment goes.
fn evict_holders(inner: &Inner, cursors: &[CursorFile], end: u64) -> Result<()> {
    let first_after = end + SEGMENT_HEADER_LEN;
    for cursor in cursors.iter().filter(|c| c.eviction().is_none() && c.position() < end) {
        cursor.mark_evicted(cursor.position(), first_after)?;
        inner.meta.evictions().fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Counters and levels.
pub(crate) fn stats(inner: &Inner) -> Stats {
    let meta = &inner.meta;
    let fill = Fill::read(meta);
    Stats {
        appended: meta.appended().load(Ordering::Relaxed),
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
        disk_bytes: disk_bytes(inner).unwrap_or(0),
        exclusive_publisher: match meta.exclusive_pid().load(Ordering::Acquire) {
            0 => None,
            pid => Some(pid as u32),
        },
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
