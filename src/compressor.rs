//! The compressor: a background thread per writable handle (beside the
//! housekeeper, at the same low priority) that, from the compress watermark
//! on, replaces sealed raw segments, oldest first, by compressed copies
//! until fill is below the watermark again.
//!
//! Owns: the thread, choosing what to compress and the replacement
//! protocol. A segment is compressed only when it is sealed and settled
//! (older than the tail's segment and the one before it, where claims may
//! still be in flight, and than the few an appending thread keeps mapped),
//! every frame in it is committed and passes its checks, and no reader is
//! inside it: nobody, in any process, has it mapped (every mapping holds
//! the file's `flock` shared; this step takes it exclusively, without
//! waiting, to find out). The copy is written under a `.tmp-` name and
//! synced away from every lock, renamed into place (never over an existing
//! file) and the directory synced; then, under the journal lock, the raw
//! file is unlinked, or retired like a deleted segment if a reader mapped
//! it meanwhile (its bytes never change under it). A crash at
//! any step leaves the raw file, or the compressed one, or both (recovery
//! keeps one: see `recovery`). Touches the segment directory, the metadata's
//! compression counters and, through `capacity`, the saved bytes.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rustix::fs::FlockOperation;

use crate::capacity::{self, Fill};
use crate::compressed;
use crate::config::Compression;
use crate::error::{Error, Result};
use crate::frame::{self, Decoded};
use crate::meta::Level;
use crate::segment::{self, SEGMENT_HEADER_LEN, Segment};
use crate::state::JournalState;
use crate::{thread_cache, window};

/// The file whose exclusive `flock` says which handle (in any process) is
/// compressing: one at a time, so two never spend the same work.
pub(crate) const COMPRESS_LOCK_FILE: &str = "compress.lock";

/// What one attempt at a segment came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Replaced by its compressed copy.
    Compressed,
    /// Left raw for now: a reader is inside, it is not settled, or it went.
    Skipped,
}

/// Starts this handle's compressor thread (writable handles only): from
/// the compress watermark on it compresses one segment after another, and
/// otherwise looks again every housekeeper tick.
pub(crate) fn start(inner: &Arc<JournalState>) {
    if !inner.writable() {
        return;
    }
    let owned = Arc::clone(inner);
    let spawned = std::thread::Builder::new().name("backwater-compressor".into()).spawn(move || {
        // Background work: never a core taken from a publisher (best effort).
        let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
        let mut compressing = false;
        while !owned.stopping() {
            if housekeeper_behind(&owned) {
                std::thread::park_timeout(DEFER);
                continue;
            }
            let compressed = run(&owned, Turn::Skip).unwrap_or(false);
            log_compression(&owned, compressed, &mut compressing);
            if !compressed {
                std::thread::park_timeout(crate::housekeeper::TICK);
            }
        }
    });
    if let Ok(handle) = spawned {
        inner.set_compressor(handle);
    }
}

/// How long the compressor waits for the housekeeper before it looks again.
const DEFER: std::time::Duration = std::time::Duration::from_millis(1);

/// Whether the housekeeper has yet to prepare the segments ahead of the
/// tail while fill leaves time (the level is normal): compressing then
/// would take the CPU it needs on a small machine, and put creating the
/// next segment on a publisher's path. From the shed watermark on,
/// compressing comes first (it is what makes room).
fn housekeeper_behind(inner: &JournalState) -> bool {
    let limits = inner.meta.limits();
    let idle = !limits.compression.is_on() || Fill::read(&inner.meta).ratio() < limits.watermarks.compress;
    // (Idle, the step returns at once and the thread sleeps a tick.)
    if idle || Level::from_u32(inner.meta.level().load(Ordering::Acquire)) != Level::Normal {
        return false;
    }
    let ahead = inner.meta.tail_index() + inner.segments_ahead;
    !inner.window_get(ahead).is_some_and(|segment| segment.is_populated())
}

/// Tells the `log` facade when this handle starts compressing segments
/// (info, with the fill), and when it stops.
fn log_compression(inner: &JournalState, compressed: bool, compressing: &mut bool) {
    if compressed == *compressing {
        return;
    }
    let fill = Fill::read(&inner.meta).ratio() * 100.0;
    let dir = inner.dir.display();
    if compressed {
        log::info!(target: "backwater", "{dir}: compressing sealed segments at {fill:.1}% full");
    } else {
        log::info!(target: "backwater", "{dir}: compression idle at {fill:.1}% full");
    }
    *compressing = compressed;
}

/// Whether a step waits for another handle's step to end, or leaves the
/// work to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Turn {
    /// The housekeeper: never waits.
    Skip,
    /// `Journal::compress_sealed`: the caller wants it done.
    Wait,
}

/// One step: when fill is at or above the compress watermark, compresses
/// the oldest segment it can (trying the next when one must be left raw).
/// Returns whether it compressed one: the housekeeper calls it again at
/// once, between its other work, until it returns `false`.
pub(crate) fn run(inner: &JournalState, turn: Turn) -> Result<bool> {
    let limits = inner.meta.limits();
    let Compression::Zstd { level } = limits.compression else { return Ok(false) };
    let mark = limits.watermarks.compress;
    if !inner.writable() || Fill::read(&inner.meta).ratio() < mark {
        return Ok(false);
    }
    let lock = crate::mapped::open_lock_file(&inner.dir, COMPRESS_LOCK_FILE, inner.file_mode)?;
    let operation = match turn {
        Turn::Skip => FlockOperation::NonBlockingLockExclusive,
        Turn::Wait => FlockOperation::LockExclusive,
    };
    match rustix::fs::flock(&lock, operation) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false), // another handle is at it
        Err(e) => return Err(Error::io(inner.dir.join(COMPRESS_LOCK_FILE), "flock", e.into())),
    }
    // Any compressor's temporary file still there now is one whose
    // compressor died (another writer may live on for long: recovery does
    // not run): it holds disk for nothing.
    compressed::remove_temporaries(&inner.dir)?;
    // This process's publisher threads may keep sealed segments mapped
    // (their caches); they only append at the tail: let go of the rest.
    // Fill may have fallen while waiting for the turn.
    if Fill::read(&inner.meta).ratio() < mark {
        return Ok(false);
    }
    let tail_index = inner.meta.tail_index();
    thread_cache::reclaim(inner.handle_id, |index| index + 1 < tail_index);
    let mut tried = BTreeSet::new();
    while !inner.stopping() {
        let Some(index) = next_candidate(inner, &tried)? else { break };
        tried.insert(index);
        if compress_segment(inner, index, level)? == Outcome::Compressed {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Segments next to the tail that are left raw: the tail's and the one
/// before it (claims may still be in flight there), and those an appending
/// thread may still keep mapped in its cache (asking it to let go costs the
/// publisher a process-wide barrier and a slow path, so it is only done for
/// older ones, which only an idle thread keeps).
const LEFT_RAW: u64 = 1 + thread_cache::CACHE_ENTRIES as u64;

/// The oldest settled segment that still has its raw file, not tried yet.
fn next_candidate(inner: &JournalState, tried: &BTreeSet<u64>) -> Result<Option<u64>> {
    let settled_below = inner.meta.tail_index().saturating_sub(LEFT_RAW);
    let first_index = inner.meta.first_position().load(Ordering::Acquire) / inner.segment_size();
    let files = segment::list_files(&inner.dir, inner.segment_size())?;
    let candidate = files
        .iter()
        .filter(|file| !file.compressed && file.index >= first_index && file.index < settled_below)
        .map(|file| file.index)
        .find(|index| !tried.contains(index));
    Ok(candidate)
}

/// Compresses segment `index` at zstd `level` and replaces its raw file.
pub(crate) fn compress_segment(inner: &JournalState, index: u64, level: i32) -> Result<Outcome> {
    let size = inner.segment_size();
    let raw_path = segment::path_of(&inner.dir, index, size);
    let compressed_path = segment::compressed_path_of(&inner.dir, index, size);
    if compressed_path.exists() {
        // A compressor died between the rename and the unlink: finish its
        // work if its copy is sound, else start again.
        match Segment::open_compressed(&inner.dir, index, inner.identity) {
            Ok(_) => return replace_raw(inner, index, None),
            Err(_) => drop(crate::mapped::remove_durably(&compressed_path)?),
        }
    }
    // No reader inside it, now: a reader that maps it from here on is
    // handled at the end (the raw file is retired, not unlinked).
    if !no_reader_inside(inner, index, &raw_path)? {
        return Ok(Outcome::Skipped);
    }
    let segment = match Segment::open(&inner.dir, index, inner.identity, false) {
        Ok(segment) if segment.compressed().is_none() => segment,
        Ok(_) => return Ok(Outcome::Skipped),
        Err(gone) if gone.is_not_found() => return Ok(Outcome::Skipped),
        Err(other) => return Err(other),
    };
    let Some(raw_len) = settled_len(&segment) else { return Ok(Outcome::Skipped) };
    let expected =
        compressed::Expected { base: segment.base, journal_id: inner.identity.journal_id, segment_size: size };
    // Sealed: its last write is behind it, and its age goes with its bytes.
    let modified = std::fs::metadata(&raw_path).and_then(|metadata| metadata.modified());
    let modified = modified.map_err(|e| Error::io(&raw_path, "stat", e))?;
    let raw = &segment.bytes()[..raw_len];
    let (temp, header) = compressed::write_temporary(&inner.dir, expected, raw, level, inner.file_mode, modified)?;
    // Our own mapping would count as a reader inside it.
    drop(segment);
    let replaced = replace_raw(inner, index, Some((temp.as_path(), header)));
    if !matches!(replaced, Ok(Outcome::Compressed)) {
        let _ = std::fs::remove_file(&temp);
    }
    replaced
}

/// Whether nobody, in any process, has segment `index` mapped. This
/// process's publisher threads may keep a sealed segment mapped in their
/// caches though they only append at the tail: they are asked to let go
/// first, then it is probed again.
fn no_reader_inside(inner: &JournalState, index: u64, raw_path: &Path) -> Result<bool> {
    match segment::mappings_of(raw_path)? {
        segment::Mappings::None(_unlocked_on_drop) => return Ok(true),
        segment::Mappings::Gone => return Ok(false),
        segment::Mappings::Some => {}
    }
    thread_cache::reclaim(inner.handle_id, |cached| cached == index);
    Ok(matches!(segment::mappings_of(raw_path)?, segment::Mappings::None(_)))
}

/// Renames `temp` (if given) to the compressed file's name and syncs the
/// directory; then, under the journal lock (held for no sync), unlinks the
/// raw file, or retires it while a reader maps it. A copy made of a segment
/// retention deleted meanwhile goes too.
fn replace_raw(inner: &JournalState, index: u64, temp: Option<(&Path, compressed::Header)>) -> Result<Outcome> {
    let size = inner.segment_size();
    let target = segment::compressed_path_of(&inner.dir, index, size);
    if let Some((temp, header)) = temp {
        let (cwd, no_replace) = (rustix::fs::CWD, rustix::fs::RenameFlags::NOREPLACE);
        match rustix::fs::renameat_with(cwd, temp, cwd, &target, no_replace) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => return Ok(Outcome::Skipped),
            Err(e) => return Err(Error::io(&target, "rename", e.into())),
        }
        // The copy is durable under its name before the raw file can go.
        crate::mapped::sync_dir(&inner.dir)?;
        let meta = &inner.meta;
        meta.compressed_segments().fetch_add(1, Ordering::Relaxed);
        meta.compressed_raw_bytes().fetch_add(header.raw_len, Ordering::Relaxed);
        meta.compressed_file_bytes().fetch_add(header.file_len(), Ordering::Relaxed);
    }
    let outcome = {
        let _guard = inner.lock()?;
        let first_index = inner.meta.first_position().load(Ordering::Acquire) / size;
        if index < first_index {
            // (Unless retention removed it already.)
            match std::fs::remove_file(&target) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&target, "delete", e)),
                _ => Outcome::Skipped,
            }
        } else {
            inner.window_remove(index);
            window::unlink_or_retire(inner, index, &segment::path_of(&inner.dir, index, size))?;
            capacity::account_compressed(inner)?;
            Outcome::Compressed
        }
    };
    // The unlink is not synced: if a power loss undoes it, both files are
    // there, and recovery keeps the compressed one (synced, complete).
    Ok(outcome)
}

/// The length to compress when every frame of the sealed `segment` is
/// committed and passes its checks: every frame but the segment's trailing
/// padding, which is rebuilt when it is read (exactly as it was: one padding
/// frame from where it started to the segment's end). Padding frames before
/// it (aborted claims, holes a dead claimer left) are kept, so every frame
/// boundary of the raw segment is one in the compressed segment, and a
/// cursor saved at any of them stays valid. `None` otherwise.
fn settled_len(segment: &Segment) -> Option<usize> {
    let bytes = segment.bytes();
    let size = bytes.len();
    let mut offset = SEGMENT_HEADER_LEN as usize;
    let mut kept_end = offset;
    while offset < size {
        let word = segment.word0(offset).load(Ordering::Acquire);
        match frame::decode(word, &bytes[offset..], segment.base + offset as u64, true) {
            Ok(Decoded::Data { aligned_len, .. }) => {
                offset += aligned_len;
                kept_end = offset;
            }
            Ok(Decoded::Padding { aligned_len }) => {
                // Dropped only if it turns out to be the last frame.
                kept_end = offset;
                offset += aligned_len;
            }
            _ => return None,
        }
    }
    // `kept_end` is the end of the last data frame, or the start of the
    // trailing padding: either way the end of every frame before that.
    Some(kept_end)
}
