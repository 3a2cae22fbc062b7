//! Retention and the `WhenFull` policies: which segments may be deleted,
//! and what a publisher at its limit gets.
//!
//! Owns: deleting consumed segments (past every attached durable cursor and
//! the replay window), the dropping policies (`DropOldest`, `EvictSlowest`:
//! counting what unread data went, detaching cursors), including their one
//! early drop per rotation that lets a full ring prepare its next segment
//! off the publisher's path, and the refusal a claim at its limit gets
//! (shed, back-pressure). Touches the metadata's
//! first position and counters, cursor files (to read positions and mark
//! evictions), and segment files through `window`, always under the
//! journal lock when it deletes anything. Levels and limits are `capacity`'s.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use crate::Priority;
use crate::capacity::{self, Fill, raise_level, recompute_limits};
use crate::config::{Limits, WhenFull};
use crate::cursor::{self, CursorFile};
use crate::error::{Error, OfferError, Result};
use crate::meta::Level;
use crate::segment::{self, SEGMENT_HEADER_LEN};
use crate::state::{JournalLock, JournalState};
use crate::window;

/// The slow path of a claim that would pass its limit: recompute, apply the
/// `WhenFull` policy, and either let the claim retry (`Ok`) or refuse it.
#[cold]
pub(crate) fn at_limit(inner: &JournalState, priority: Priority, aligned: u64) -> Result<(), OfferError> {
    inner.require_writable()?;
    let fits = |inner: &JournalState| {
        inner.meta.tail_position() + aligned <= inner.meta.limit(priority).load(Ordering::Acquire)
    };
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

/// A rotation could not create the next segment. A lack of room (budget, or
/// a full filesystem) under a dropping policy deletes the oldest segment and
/// asks for another try (`Ok`); under `Block` it is back-pressure. Other
/// errors are returned as they are.
pub(crate) fn rotation_failed(inner: &JournalState, error: Error) -> Result<(), OfferError> {
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
fn lock_unless_stuck(inner: &JournalState) -> Result<Option<JournalLock<'_>>> {
    match inner.lock_for_publisher() {
        Ok(guard) => Ok(Some(guard)),
        Err(Error::JournalBusy { .. }) => Ok(None),
        Err(other) => Err(other),
    }
}

/// Applies the dropping policy to the oldest segment if it is not the tail's:
/// `true` if one went.
fn drop_oldest_segment(inner: &JournalState) -> Result<bool, OfferError> {
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

/// Room for the segment after the tail's, made one step early: in a full
/// `DropOldest` or `EvictSlowest` ring the housekeeper drops the oldest
/// segment as a publisher of this handle enters the budget's last segment,
/// rather than the publisher when it reaches its limit in that segment, so
/// that the next segment is built off the publisher's path (the budget
/// includes the segments prepared ahead). Only for a rotation a live
/// publisher of this handle made into `tail_index`, decided once: under the
/// journal lock the caller takes the rotation's mark
/// ([`JournalState::take_rotation`]) and [`early_drop_candidate`] says
/// whether the drop is due; a drop not due then is not made later. (With
/// the lock held by another nothing is decided, and the mark stays for the
/// next prepare.) `true` if a segment went.
pub(crate) fn drop_for_next_segment(inner: &JournalState, tail_index: u64) -> Result<bool> {
    // Without the lock first: every prepare of a full ring comes here.
    if !inner.awaits_rotation(tail_index) {
        return Ok(false);
    }
    let Some(guard) = lock_unless_stuck(inner)? else { return Ok(false) };
    if !inner.take_rotation(tail_index) {
        return Ok(false); // decided by another caller meanwhile
    }
    let limits = inner.meta.limits();
    let Some(oldest) = early_drop_candidate(inner, tail_index, &limits)? else { return Ok(false) };
    drop_segment(inner, oldest, &limits)?;
    drop(guard);
    recompute_limits(inner);
    Ok(true)
}

/// The oldest segment, if dropping it now is the drop that a publisher
/// appending on from segment `tail_index` would make before leaving it,
/// looked at again under the journal lock (the caller holds it):
/// - the policy drops (never `Block`) and the tail is still in `tail_index`;
/// - that segment is the budget's last whole one: the publisher's limit
///   (the high watermark, at most that segment's end) is in it, so the
///   data and the segment prepared after it pass the high watermark; once
///   a segment went, the budget's end is past it, so a second caller finds
///   nothing to do (one drop per rotation);
/// - the oldest is the first position's segment and is not the one just
///   before the tail's (claims made before the tail left it may still be
///   writing into it, and readers are likeliest to be in it: a ring of two
///   segments waits for room as before);
/// - below the shed watermark, the oldest is not in the replay window.
fn early_drop_candidate(inner: &JournalState, tail_index: u64, limits: &Limits) -> Result<Option<u64>> {
    let size = inner.segment_size();
    let fill = Fill::read(&inner.meta);
    let tail_moved = inner.meta.tail_index() != tail_index;
    let in_budgets_last = fill.hard_end(size) == (tail_index + 1) * size;
    if limits.when_full == WhenFull::Block || tail_moved || !in_budgets_last {
        return Ok(None);
    }
    debug_assert!((tail_index + 2) * size > fill.position_at(limits.watermarks.high));
    let first_index = fill.first_base / size;
    let oldest = segment::list(&inner.dir, size)?.first().copied();
    let Some(oldest) = oldest.filter(|&oldest| oldest == first_index && oldest + 1 < tail_index) else {
        return Ok(None);
    };
    let replay_kept = fill.ratio() < limits.watermarks.shed && in_replay_window(inner, oldest, fill.tail, limits);
    Ok((!replay_kept).then_some(oldest))
}

/// One retention pass: deletes every segment that all attached durable
/// cursors have moved past (keeping the replay window), then recomputes the
/// limits. Called by the housekeeper.
pub(crate) fn run(inner: &JournalState) -> Result<()> {
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

fn open_cursors(inner: &JournalState) -> Result<Vec<CursorFile>> {
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

fn delete_consumed(inner: &JournalState, cursors: &[CursorFile], limits: &Limits, under_pressure: bool) -> Result<()> {
    let Some(slowest) = slowest(cursors) else { return Ok(()) };
    let size = inner.segment_size();
    let tail = inner.meta.tail_position();
    // The segment the tail word is in, even when the tail is at its end (the
    // tail position is then the next one's first frame): publishers may
    // still pad it or start from it.
    let tail_index = inner.meta.tail_index();
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

fn in_replay_window(inner: &JournalState, index: u64, tail: u64, limits: &Limits) -> bool {
    let end = (index + 1) * inner.segment_size();
    if tail.saturating_sub(end) < limits.retain_bytes {
        return true;
    }
    if limits.retain_for.is_zero() {
        return false;
    }
    let raw = segment::path_of(&inner.dir, index, inner.segment_size());
    let compressed = segment::compressed_path_of(&inner.dir, index, inner.segment_size());
    let age = std::fs::metadata(raw)
        .or_else(|_| std::fs::metadata(compressed))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| SystemTime::now().duration_since(modified).ok())
        .unwrap_or(Duration::ZERO);
    age < limits.retain_for
}

/// Cursors that moved past a segment are made durable before it is unlinked,
/// so a power loss cannot leave a cursor pointing into a deleted segment.
fn persist_cursors(inner: &JournalState, cursors: &[CursorFile]) -> Result<()> {
    if inner.meta.limits().flush == crate::Flush::Never {
        return Ok(());
    }
    cursors.iter().try_for_each(CursorFile::flush)
}

/// Moves the first position past segment `index`, then unlinks it or keeps
/// it as a spare while there are fewer than `keep` (the caller holds the
/// lock; `index` is the oldest segment).
fn delete_oldest(inner: &JournalState, index: u64, keep: usize) -> Result<()> {
    let size = inner.segment_size();
    let next_first = (index + 1) * size + SEGMENT_HEADER_LEN;
    inner.meta.first_position().fetch_max(next_first, Ordering::AcqRel);
    inner.window_remove(index);
    let compressed = segment::compressed_path_of(&inner.dir, index, size);
    if crate::mapped::remove_durably(&compressed)? {
        capacity::account_compressed(inner)?;
    }
    let path = segment::path_of(&inner.dir, index, size);
    if window::retire_as_spare(inner, index, &path, keep) {
        return Ok(());
    }
    window::remove_or_retire(inner, index, &path)
}

/// Applies `DropOldest` or `EvictSlowest` until fill is below `resume`.
fn make_room(inner: &JournalState) -> Result<(), OfferError> {
    // Stuck: no room now; the caller reports back-pressure.
    let Some(guard) = lock_unless_stuck(inner)? else { return Ok(()) };
    let limits = inner.meta.limits();
    let size = inner.segment_size();
    // Walk the files that exist, oldest first: positions come from a shared
    // file, so the loop is bounded by the directory, not by arithmetic on them.
    for oldest in segment::list(&inner.dir, size)? {
        let fill = Fill::read(&inner.meta);
        // Never the tail word's segment (claims may still be in flight in a
        // tripped one, whose tail position is already the next segment's).
        if fill.ratio() < limits.watermarks.resume || oldest >= inner.meta.tail_index() {
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
fn drop_segment(inner: &JournalState, oldest: u64, limits: &Limits) -> Result<()> {
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
fn evict_holders(inner: &JournalState, cursors: &[CursorFile], end: u64) -> Result<()> {
    let first_after = end + SEGMENT_HEADER_LEN;
    for cursor in cursors.iter().filter(|c| c.eviction().is_none() && c.position() < end) {
        cursor.mark_evicted(cursor.position(), first_after)?;
        inner.meta.evictions().fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}
