//! Who may append: the publisher lock.
//!
//! Owns `publisher.lock`, a file that is only ever `flock`ed. Every journal
//! handle whose `Publisher`s append holds it shared; an `ExclusivePublisher`
//! holds it exclusively, so its plain-store claims never race a fetch-add
//! claimer in any process. The kernel releases a dead process's lock, so a
//! crashed exclusive publisher never blocks the journal: the next holder
//! settles the tail it left (`recovery::settle_tail`). Touches the metadata's
//! exclusive-publisher word, and tells the state when a handle's appending
//! `Publisher`s are all gone (no early drop for their rotation).

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;

use crate::error::{Error, Result};
use crate::idle::Idle;
use crate::mapped::open_lock_file;
use crate::state::JournalState;
use crate::{recovery, window};

pub(crate) const PUBLISHER_LOCK_FILE: &str = "publisher.lock";

/// The publisher lock, held shared for all `Publisher`s of one handle: taken
/// at their first append, released when the last of them is dropped. While
/// it is held no `ExclusivePublisher` can exist, in any process.
pub(crate) struct PublisherGroup {
    held: AtomicBool,
    lock: Mutex<Option<PublisherLock>>,
    /// The handle's state, told when the group's publishers are gone.
    inner: Arc<JournalState>,
}

impl Drop for PublisherGroup {
    fn drop(&mut self) {
        // Only a group that appended: an unused one may be dropped while
        // the handle's exclusive publisher appends.
        if self.held.load(Ordering::Acquire) {
            self.inner.publishers_gone();
        }
    }
}

impl PublisherGroup {
    pub fn new(inner: Arc<JournalState>) -> PublisherGroup {
        PublisherGroup { held: AtomicBool::new(false), lock: Mutex::new(None), inner }
    }

    /// `Ok` once the lock is held (one load after the first time).
    #[inline]
    pub fn ensure_held(&self) -> Result<()> {
        if self.held.load(Ordering::Acquire) { Ok(()) } else { self.acquire() }
    }

    #[cold]
    fn acquire(&self) -> Result<()> {
        let mut lock = self.lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if lock.is_none() {
            *lock = Some(PublisherLock::acquire(&self.inner, Mode::Shared)?);
        }
        self.held.store(true, Ordering::Release);
        Ok(())
    }
}

/// How long a refused lock is retried before it counts as a conflict. A
/// lock can be held for a moment by nobody who publishes: a child process
/// forked by any thread of the holder's process shares its open files (and
/// so its `flock`s) until it execs.
const TRANSIENT_HOLD: Duration = Duration::from_secs(1);

/// A held publisher lock; dropping it releases the lock.
pub(crate) struct PublisherLock {
    _file: File,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Any number of fetch-add `Publisher`s, in any number of processes.
    Shared,
    /// One `ExclusivePublisher` and nothing else.
    Exclusive,
}

impl PublisherLock {
    /// Takes the lock, or says who holds it the other way: at once when a
    /// live exclusive publisher is on record, else after retrying for up to
    /// `TRANSIENT_HOLD`.
    pub(crate) fn acquire(inner: &JournalState, mode: Mode) -> Result<PublisherLock> {
        inner.require_writable()?;
        let file = open_lock_file(&inner.dir, PUBLISHER_LOCK_FILE, inner.file_mode)?;
        let operation = match mode {
            Mode::Shared => FlockOperation::NonBlockingLockShared,
            Mode::Exclusive => FlockOperation::NonBlockingLockExclusive,
        };
        let deadline = Instant::now() + TRANSIENT_HOLD;
        let mut idle = Idle::default();
        loop {
            match rustix::fs::flock(&file, operation) {
                Ok(()) => break,
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    let exclusive_on_record = inner.meta.exclusive_pid().load(Ordering::Acquire) != 0;
                    if mode == Mode::Shared && exclusive_on_record || Instant::now() >= deadline {
                        return Err(conflict(inner, mode));
                    }
                    idle.idle(Some(deadline));
                }
                Err(e) => return Err(Error::io(inner.dir.join(PUBLISHER_LOCK_FILE), "flock", e.into())),
            }
        }
        settle_after_dead_exclusive(inner)?;
        if mode == Mode::Exclusive {
            inner.meta.exclusive_pid().store(u64::from(std::process::id()), Ordering::Release);
        }
        Ok(PublisherLock { _file: file })
    }
}

/// We hold the publisher lock, so an exclusive publisher still on record is
/// dead: it may have committed a frame without moving the tail word past it,
/// or died inside a frame.
fn settle_after_dead_exclusive(inner: &JournalState) -> Result<()> {
    if inner.meta.exclusive_pid().load(Ordering::Acquire) == 0 {
        return Ok(());
    }
    let _guard = inner.lock()?;
    if inner.meta.exclusive_pid().load(Ordering::Acquire) != 0 {
        recovery::settle_tail(inner)?;
        // Only the exclusive publisher's handle keeps spares: they were its.
        window::remove_spare_files(&inner.dir)?;
        inner.meta.exclusive_pid().store(0, Ordering::Release);
    }
    Ok(())
}

fn conflict(inner: &JournalState, mode: Mode) -> Error {
    let path = inner.dir.clone();
    match mode {
        Mode::Shared => {
            Error::ExclusivelyPublished { path, pid: inner.meta.exclusive_pid().load(Ordering::Acquire) as u32 }
        }
        Mode::Exclusive => Error::PublishersActive { path },
    }
}
