//! Writer liveness: which handles have the journal open for writing.
//!
//! Owns `writers.lock`, a file that is only ever `flock`ed. Every writable
//! handle holds it shared for as long as it lives; the kernel releases a
//! lock when its process dies, in any PID namespace and whatever `/proc`
//! shows, so liveness never depends on a table of pids. A handle that opens
//! the journal takes the lock exclusively first (under the journal lock): if
//! it gets it, no other writer is alive and recovery may run; then it holds
//! it shared like everyone else. Touches nothing else.

use std::fs::File;
use std::path::Path;

use rustix::fs::FlockOperation;

use crate::error::{Error, Result};

pub(crate) const WRITERS_LOCK_FILE: &str = "writers.lock";

/// A writable handle's hold on `writers.lock`.
pub(crate) struct WriterLock {
    file: File,
}

impl WriterLock {
    /// Takes the lock for a handle being opened; the caller holds the journal
    /// lock, so no other opener is probing at the same time. Returns the lock
    /// and whether this handle is the only writer: then it holds the lock
    /// exclusively until [`WriterLock::share`].
    pub(crate) fn acquire(dir: &Path, mode: u32) -> Result<(WriterLock, bool)> {
        let file = crate::mapped::open_lock_file(dir, WRITERS_LOCK_FILE, mode)?;
        if try_flock(&file, dir, FlockOperation::NonBlockingLockExclusive)? {
            return Ok((WriterLock { file }, true));
        }
        // Someone holds it: shared by other writers, or exclusively by a
        // `verify --repair` that needs the journal to itself.
        if try_flock(&file, dir, FlockOperation::NonBlockingLockShared)? {
            Ok((WriterLock { file }, false))
        } else {
            Err(Error::InUse { path: dir.to_path_buf() })
        }
    }

    /// From exclusive (after recovery) to shared, like every other writer.
    pub(crate) fn share(&self, dir: &Path) -> Result<()> {
        rustix::fs::flock(&self.file, FlockOperation::LockShared)
            .map_err(|e| Error::io(dir.join(WRITERS_LOCK_FILE), "flock", e.into()))
    }
}

impl WriterLock {
    /// Lets the lock go when the handle closes (explicitly: a child forked
    /// without exec shares the descriptor and must not keep it), then asks
    /// whether any writer is left. The caller holds the journal lock, so no
    /// opener probes meanwhile. `Some` (holding the lock exclusively until
    /// dropped) when this was the last writer.
    pub(crate) fn release(&self, dir: &Path) -> Option<File> {
        let _ = rustix::fs::flock(&self.file, FlockOperation::Unlock);
        let probe = crate::mapped::open_lock_file(dir, WRITERS_LOCK_FILE, 0o600).ok()?;
        try_flock(&probe, dir, FlockOperation::NonBlockingLockExclusive).ok()?.then_some(probe)
    }
}

/// Whether any handle has the journal open for writing, asked from outside
/// (`verify`, read-only): takes the journal lock so that no opener is probing
/// meanwhile, then tries the writers' lock exclusively and lets it go.
pub(crate) fn any_alive(dir: &Path, journal_lock: &Path) -> Result<bool> {
    let Some(journal_lock) = open_existing(journal_lock)? else { return Ok(false) };
    let Some(writers) = open_existing(&dir.join(WRITERS_LOCK_FILE))? else { return Ok(false) };
    rustix::fs::flock(&journal_lock, FlockOperation::LockExclusive)
        .map_err(|e| Error::io(dir, "flock the journal lock of", e.into()))?;
    let alone = try_flock(&writers, dir, FlockOperation::NonBlockingLockExclusive)?;
    // Both locks go with the files.
    Ok(!alone)
}

fn open_existing(path: &Path) -> Result<Option<File>> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, "open", e)),
    }
}

/// `Ok(false)` when another holder refuses the lock.
fn try_flock(file: &File, dir: &Path, operation: FlockOperation) -> Result<bool> {
    match rustix::fs::flock(file, operation) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(Error::io(dir.join(WRITERS_LOCK_FILE), "flock", e.into())),
    }
}
