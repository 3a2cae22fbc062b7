//! Durable cursors: one small mapped file per consumer name under `cursors/`.
//!
//! Owns: the cursor file layout and its lifecycle (create, list, delete, mark
//! evicted). A cursor's position is an atomic in a shared mapping, so a commit
//! is visible to every process at once and survives a process crash; `flush`
//! makes it survive power loss. Retention reads every cursor to decide what
//! may be deleted.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::frame::{CONFLATED_CURSOR_VERSION, FIRST_FORMAT_VERSION, FORMAT_VERSION};
use crate::mapped::{MappedFile, create_file, put_u32, put_u64};

pub const CURSOR_DIR: &str = "cursors";
pub const SUFFIX: &str = ".cursor";
pub const MAGIC: &[u8; 8] = b"BACKWCUR";
const CURSOR_LEN: u64 = 64;

const VERSION_AT: usize = 8;
const FLAGS_AT: usize = 12;
const POSITION_AT: usize = 16;
const JOURNAL_ID_AT: usize = 24;
const UPDATED_AT: usize = 32;
const EVICTED_FROM_AT: usize = 40;
const EVICTED_TO_AT: usize = 48;
const CONFLATED_THROUGH_AT: usize = 56;

const FLAG_EVICTED: u32 = 1;

/// Checks a cursor name: 1 to 64 characters of `[A-Za-z0-9._-]`, not starting with '.'.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok { Ok(()) } else { Err(Error::BadCursorName(name.to_string())) }
}

pub fn cursor_dir(journal_dir: &Path) -> PathBuf {
    journal_dir.join(CURSOR_DIR)
}

fn cursor_path(journal_dir: &Path, name: &str) -> PathBuf {
    cursor_dir(journal_dir).join(format!("{name}{SUFFIX}"))
}

/// A mapped cursor file.
pub struct CursorFile {
    pub name: String,
    file: MappedFile,
}

impl CursorFile {
    /// Opens the cursor `name`, creating it at `initial` when absent.
    pub fn open_or_create(
        journal_dir: &Path,
        name: &str,
        journal_id: u64,
        initial: u64,
        mode: u32,
    ) -> Result<CursorFile> {
        validate_name(name)?;
        let dir = cursor_dir(journal_dir);
        let path = cursor_path(journal_dir, name);
        if !path.exists() {
            let created = create_file(&dir, &format!("{name}{SUFFIX}"), CURSOR_LEN, mode, |file| {
                let mut image = [0u8; CURSOR_LEN as usize];
                image[..8].copy_from_slice(MAGIC);
                put_u32(&mut image, VERSION_AT, FIRST_FORMAT_VERSION);
                put_u64(&mut image, POSITION_AT, initial);
                put_u64(&mut image, JOURNAL_ID_AT, journal_id);
                put_u64(&mut image, UPDATED_AT, crate::frame::now_ns());
                file.write(0, &image);
                Ok(())
            })?;
            if let Some(file) = created {
                return Ok(CursorFile { name: name.to_string(), file });
            }
        }
        CursorFile::open(journal_dir, name, journal_id, true)
    }

    /// Opens an existing cursor.
    pub fn open(journal_dir: &Path, name: &str, journal_id: u64, writable: bool) -> Result<CursorFile> {
        validate_name(name)?;
        let path = cursor_path(journal_dir, name);
        if !path.exists() {
            return Err(Error::NoSuchCursor(name.to_string()));
        }
        crate::mapped::refuse_symlink(&path)?;
        let file = MappedFile::open(&path, writable, Some(CURSOR_LEN))?;
        let bytes = file.bytes();
        if &bytes[..8] != MAGIC {
            return Err(Error::not_a_journal(&path, "bad magic in cursor file"));
        }
        let version = crate::frame::read_u32(bytes, VERSION_AT);
        if version > FORMAT_VERSION {
            return Err(Error::NewerFormat { path, found: version, supported: FORMAT_VERSION });
        }
        let found = crate::frame::read_u64(bytes, JOURNAL_ID_AT);
        if found != journal_id {
            return Err(Error::not_a_journal(&path, format!("cursor belongs to journal {found:#018x}")));
        }
        Ok(CursorFile { name: name.to_string(), file })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    fn position_word(&self) -> &AtomicU64 {
        self.file.atomic_u64(POSITION_AT)
    }

    /// The committed position: the next record this consumer will read.
    pub fn position(&self) -> u64 {
        self.position_word().load(Ordering::Acquire)
    }

    /// Commits `position` (visible to every process at once). Moving it
    /// back (a reset, recovery) forgets [`CursorFile::conflated_through`].
    pub fn store(&self, position: u64) {
        if position < self.position() {
            self.conflated_through_word().store(0, Ordering::Relaxed);
        }
        self.position_word().store(position, Ordering::Release);
        self.file.atomic_u64(UPDATED_AT).store(crate::frame::now_ns(), Ordering::Relaxed);
    }

    fn conflated_through_word(&self) -> &AtomicU64 {
        self.file.atomic_u64(CONFLATED_THROUGH_AT)
    }

    /// How far this cursor's consumer has read in conflated windows (0:
    /// never, or forgotten by a move back): a consumer at or past the
    /// committed position and below it conflates up to there as one window
    /// (see `Consumer::poll_conflated`).
    pub fn conflated_through(&self) -> u64 {
        self.conflated_through_word().load(Ordering::Relaxed)
    }

    /// Raises [`CursorFile::conflated_through`] to `position`, before the
    /// window that ends there is handed out (visible to every process, and
    /// surviving this one, at once; durable once flushed). Returns whether
    /// it rose (an idle poll writes nothing).
    pub fn raise_conflated_through(&self, position: u64) -> bool {
        if self.conflated_through() >= position {
            return false;
        }
        let version = self.file.atomic_u32(VERSION_AT);
        if version.load(Ordering::Relaxed) < CONFLATED_CURSOR_VERSION {
            version.store(CONFLATED_CURSOR_VERSION, Ordering::Relaxed);
        }
        self.conflated_through_word().fetch_max(position, Ordering::Relaxed);
        true
    }

    /// Nanoseconds since the epoch of the last commit.
    pub fn updated_ns(&self) -> u64 {
        self.file.atomic_u64(UPDATED_AT).load(Ordering::Relaxed)
    }

    /// msync the cursor, so the commit survives a power loss.
    pub fn flush(&self) -> Result<()> {
        self.file.flush_range(0, CURSOR_LEN as usize)
    }

    /// `Some((from, to))` when the cursor was evicted and has not re-attached.
    pub fn eviction(&self) -> Option<(u64, u64)> {
        let flags = self.file.atomic_u32(FLAGS_AT).load(Ordering::Acquire);
        (flags & FLAG_EVICTED != 0).then(|| {
            (
                self.file.atomic_u64(EVICTED_FROM_AT).load(Ordering::Relaxed),
                self.file.atomic_u64(EVICTED_TO_AT).load(Ordering::Relaxed),
            )
        })
    }

    /// Detaches the cursor: it no longer holds retention, and its consumer's
    /// next poll reports `Error::Evicted { from, to }`. Flushed before return,
    /// so the segments it pinned may be deleted safely.
    pub fn mark_evicted(&self, from: u64, to: u64) -> Result<()> {
        self.file.atomic_u64(EVICTED_FROM_AT).store(from, Ordering::Relaxed);
        self.file.atomic_u64(EVICTED_TO_AT).store(to, Ordering::Relaxed);
        self.file.atomic_u32(FLAGS_AT).fetch_or(FLAG_EVICTED, Ordering::Release);
        self.flush()
    }

    /// Re-attaches an evicted cursor at `position`.
    pub fn clear_eviction(&self, position: u64) {
        self.store(position);
        self.file.atomic_u32(FLAGS_AT).fetch_and(!FLAG_EVICTED, Ordering::Release);
    }
}

/// Names of the cursors in a journal, sorted.
pub fn list(journal_dir: &Path) -> Result<Vec<String>> {
    let dir = cursor_dir(journal_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&dir, "read directory", e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&dir, "read directory", e))?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) else { continue };
        if validate_name(name).is_ok() {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// The writer lock of one cursor: an exclusive `flock` on its file, which
/// the kernel releases when the holder drops it or dies. A durable cursor
/// has one writer at a time, in every process.
pub struct WriterLock {
    _file: std::fs::File,
}

/// Takes the writer lock of the cursor at `path`, or fails with
/// `Error::CursorInUse` while another consumer (any process) holds it.
pub fn lock_writer(path: &Path, name: &str) -> Result<WriterLock> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, "open", e))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => return Err(Error::CursorInUse(name.to_string())),
        Err(e) => return Err(Error::io(path, "flock", e.into())),
    }
    // Deleted (and perhaps made anew) between the open and the lock: the
    // lock would guard a file nobody else will ever look at.
    let same_file = |locked: &rustix::fs::Stat| {
        std::fs::metadata(path).is_ok_and(|now| now.ino() == locked.st_ino && now.dev() == locked.st_dev)
    };
    use std::os::unix::fs::MetadataExt;
    let locked = rustix::fs::fstat(&file).map_err(|e| Error::io(path, "stat", e.into()))?;
    if !same_file(&locked) {
        return Err(Error::NoSuchCursor(name.to_string()));
    }
    Ok(WriterLock { _file: file })
}

/// Deletes the cursor `name`; it no longer holds retention. Refused with
/// `Error::CursorInUse` while a consumer holds its writer lock, unless `force`.
pub fn delete(journal_dir: &Path, name: &str, force: bool) -> Result<()> {
    validate_name(name)?;
    let path = cursor_path(journal_dir, name);
    // Held while unlinking, so no consumer can take the cursor meanwhile.
    let _lock = match lock_writer(&path, name) {
        Err(Error::CursorInUse(_)) if force => None,
        Err(error) if error.is_not_found() => return Err(Error::NoSuchCursor(name.to_string())),
        other => Some(other?),
    };
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NoSuchCursor(name.to_string())),
        Err(e) => Err(Error::io(&path, "delete", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_restricted_to_a_safe_alphabet() {
        assert!(validate_name("indexer-1.v2_x").is_ok());
        for bad in ["", "../x", ".hidden", "a/b", "sp ace", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
