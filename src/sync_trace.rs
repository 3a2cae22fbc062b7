//! A hook that sees every durability barrier backwater issues (msync of a
//! range, fsync of a file or a directory), for the power-loss model in
//! `tests/powerloss.rs`: it records what the media holds at each barrier and
//! builds the crash images a power loss could leave.
//!
//! Owns: the hook. Touches nothing; `mapped` calls `record` after each
//! barrier returns. With no hook installed the cost is one relaxed load.

use std::fs::File;
use std::path::Path;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// One durability barrier that has just completed.
#[derive(Debug, Clone, Copy)]
pub enum SyncEvent<'a> {
    /// `msync(MS_SYNC)` of `len` bytes at `offset` of a mapped file: `file`
    /// is that file, mapped from `path` (its name may have changed since);
    /// `None` for an anonymous mapping, which nothing stores.
    Range { path: &'a Path, file: Option<&'a File>, offset: usize, len: usize },
    /// `fsync` of a whole file (data and metadata).
    File { path: &'a Path },
    /// `fsync` of a directory: its entries (links, renames, unlinks) are durable.
    Directory { path: &'a Path },
}

type Hook = Box<dyn Fn(&SyncEvent<'_>) + Send + Sync>;

static INSTALLED: AtomicBool = AtomicBool::new(false);
static HOOK: RwLock<Option<Hook>> = RwLock::new(None);

/// Installs (or with `None` removes) the process-wide hook.
pub fn set_hook(hook: Option<Hook>) {
    let installed = hook.is_some();
    if let Ok(mut slot) = HOOK.write() {
        *slot = hook;
    }
    INSTALLED.store(installed, Ordering::Release);
}

/// Reports a completed barrier to the hook, if one is installed.
#[inline]
pub(crate) fn record(event: SyncEvent<'_>) {
    if INSTALLED.load(Ordering::Relaxed)
        && let Ok(slot) = HOOK.read()
        && let Some(hook) = slot.as_ref()
    {
        hook(&event);
    }
}
