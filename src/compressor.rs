//! The compress step of the housekeeper: from the compress watermark on,
//! replaces sealed raw segments, oldest first, by compressed copies until
//! fill is below the watermark again.
//!
//! Owns: choosing what to compress and the replacement protocol. A segment
//! is compressed only when it is sealed and settled (older than the tail's
//! segment and the one before it, where claims may still be in flight),
//! every frame in it is committed and passes its checks, and no reader is
//! inside it: nobody, in any process, has it mapped (every mapping holds
//! the file's `flock` shared; this step takes it exclusively, without
//! waiting, to find out). The copy is written under a `.tmp-` name and
//! synced away from every lock; then, under the journal lock, it is renamed
//! into place (never over an existing file), the directory synced, and the
//! raw file unlinked (durably), or retired like a deleted segment if a
//! reader mapped it meanwhile (its bytes never change under it). A crash at
//! any step leaves the raw file, or the compressed one, or both (recovery
//! keeps one: see `recovery`). Touches the segment directory, the metadata's
//! compression counters and, through `capacity`, the saved bytes.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use rustix::fs::FlockOperation;

use crate::capacity::{self, Fill};
use crate::compressed;
use crate::config::Compression;
use crate::error::{Error, Result};
use crate::frame::{self, Decoded};
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

/// One step: when fill is at or above the compress watermark, compresses
/// the oldest segment it can (trying the next when one must be left raw).
/// Returns whether it compressed one: the housekeeper calls it again at
/// once, between its other work, until it returns `false`.
pub(crate) fn run(inner: &JournalState) -> Result<bool> {
    let limits = inner.meta.limits();
    let Compression::Zstd { level } = limits.compression else { return Ok(false) };
    let mark = limits.watermarks.compress;
    if !inner.writable() || Fill::read(&inner.meta).ratio() < mark {
        return Ok(false);
    }
    let lock = crate::mapped::open_lock_file(&inner.dir, COMPRESS_LOCK_FILE, inner.file_mode)?;
    match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false), // another handle is at it
        Err(e) => return Err(Error::io(inner.dir.join(COMPRESS_LOCK_FILE), "flock", e.into())),
    }
    // This process's publisher threads may keep sealed segments mapped
    // (their caches); they only append at the tail: let go of the rest.
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

/// The oldest settled segment that still has its raw file, not tried yet.
fn next_candidate(inner: &JournalState, tried: &BTreeSet<u64>) -> Result<Option<u64>> {
    let settled_below = inner.meta.tail_index().saturating_sub(1);
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
    match segment::mappings_of(&raw_path)? {
        segment::Mappings::None(_unlocked_on_drop) => {}
        segment::Mappings::Some | segment::Mappings::Gone => return Ok(Outcome::Skipped),
    }
    let segment = match Segment::open(&inner.dir, index, inner.identity, false) {
        Ok(segment) if segment.compressed().is_none() => segment,
        Ok(_) => return Ok(Outcome::Skipped),
        Err(gone) if gone.is_not_found() => return Ok(Outcome::Skipped),
        Err(other) => return Err(other),
    };
    let Some(raw_len) = settled_len(&segment) else { return Ok(Outcome::Skipped) };
    let expected = compressed::Expected { base: segment.base, journal_id: inner.identity.journal_id, segment_size: size };
    let (temp, header) =
        compressed::write_temporary(&inner.dir, expected, &segment.bytes()[..raw_len], level, inner.file_mode)?;
    // Our own mapping would count as a reader inside it.
    drop(segment);
    let replaced = replace_raw(inner, index, Some((temp.as_path(), header)));
    if !matches!(replaced, Ok(Outcome::Compressed)) {
        let _ = std::fs::remove_file(&temp);
    }
    replaced
}

/// Under the journal lock: renames `temp` (if given) to the compressed
/// file's name, then unlinks the raw file (or retires it while a reader
/// maps it), each step durable before the next.
fn replace_raw(inner: &JournalState, index: u64, temp: Option<(&std::path::Path, compressed::Header)>) -> Result<Outcome> {
    let size = inner.segment_size();
    let _guard = inner.lock()?;
    let first_index = inner.meta.first_position().load(Ordering::Acquire) / size;
    if index < first_index {
        return Ok(Outcome::Skipped); // deleted by retention meanwhile
    }
    if let Some((temp, header)) = temp {
        let target = segment::compressed_path_of(&inner.dir, index, size);
        let (cwd, no_replace) = (rustix::fs::CWD, rustix::fs::RenameFlags::NOREPLACE);
        match rustix::fs::renameat_with(cwd, temp, cwd, &target, no_replace) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => return Ok(Outcome::Skipped),
            Err(e) => return Err(Error::io(&target, "rename", e.into())),
        }
        crate::mapped::sync_dir(&inner.dir)?;
        let meta = &inner.meta;
        meta.compressed_segments().fetch_add(1, Ordering::Relaxed);
        meta.compressed_raw_bytes().fetch_add(header.raw_len, Ordering::Relaxed);
        meta.compressed_file_bytes().fetch_add(header.file_len(), Ordering::Relaxed);
    }
    inner.window_remove(index);
    let raw = segment::path_of(&inner.dir, index, size);
    window::remove_or_retire(inner, index, &raw)?;
    capacity::account_compressed(inner)?;
    Ok(Outcome::Compressed)
}

/// The length to compress when every frame of the sealed `segment` is
/// committed and passes its checks: up to the end of its last data frame
/// (the trailing padding is rebuilt when it is read). `None` otherwise.
fn settled_len(segment: &Segment) -> Option<usize> {
    let bytes = segment.bytes();
    let size = bytes.len();
    let mut offset = SEGMENT_HEADER_LEN as usize;
    let mut data_end = offset;
    while offset < size {
        let word = segment.word0(offset).load(Ordering::Acquire);
        match frame::decode(word, &bytes[offset..], segment.base + offset as u64, true) {
            Ok(Decoded::Data { aligned_len, .. }) => {
                offset += aligned_len;
                data_end = offset;
            }
            Ok(Decoded::Padding { aligned_len }) => offset += aligned_len,
            _ => return None,
        }
    }
    Some(data_end)
}
