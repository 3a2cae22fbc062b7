//! The process table in the metadata: one slot per writable handle (64),
//! each owned by whoever holds an exclusive `flock` on the slot's lock file
//! `processes/NN.lock`.
//!
//! Owns: taking a slot at open and giving it back at close, freeing the
//! slots of handles that died while some of their threads slept (taking
//! those sleepers back out of the shared count: `wake`), and the liveness
//! `info` shows. Touches the metadata's process table and `wake`.
//!
//! # Ownership is a lock the kernel keeps
//!
//! Each writable handle opens its own descriptor on a slot's lock file (its
//! own open file description, so two handles of one process are two
//! owners) and holds the lock exclusively for as long as it lives; the
//! kernel releases it when the process dies, in any PID namespace and
//! whatever `/proc` shows or hides. So a slot whose lock can be taken has
//! no live owner, and a slot whose lock cannot be taken has one: whoever
//! takes it (a handle registering, a housekeeper reaping) is the only one
//! who may forget the sleepers it counts, and nobody can start sleeping in
//! it meanwhile. Any other failure (no descriptor left, no permission)
//! means "don't know", and the slot is left alone: at worst a dead
//! sleeper stays counted (a needless wake call per commit), never a live
//! one forgotten (a lost wake-up).
//!
//! The pid and start time a slot records are informational (`backwater
//! info`, when the lock cannot be probed): no decision depends on them.
//! A child forked without exec shares its parent's descriptor, and with it
//! the slot, until the parent's handle closes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use rustix::fs::{FlockOperation, Mode, OFlags};

use crate::meta::{Meta, PROCESS_SLOTS};
use crate::wake;

/// The directory of the slots' lock files.
pub(crate) const PROCESS_DIR: &str = "processes";

/// A handle's hold on its slot: the descriptor that holds the slot's lock.
pub(crate) struct SlotOwner {
    pub slot: usize,
    file: File,
}

/// Slot `slot`'s lock file's name, in `processes/`.
fn lock_name(slot: usize) -> String {
    format!("{slot:02}.lock")
}

fn lock_path(dir: &Path, slot: usize) -> PathBuf {
    dir.join(PROCESS_DIR).join(lock_name(slot))
}

/// A new descriptor on an existing lock file (never through a symlink).
fn open_existing(path: &Path) -> rustix::io::Result<File> {
    rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW, Mode::empty()).map(File::from)
}

/// This process's start time in clock ticks since boot (`/proc/self/stat` field 22).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process recorded as `(pid, start)` is running, as far as this
/// namespace's `/proc` shows: for display only, when a slot's lock cannot be
/// probed.
pub fn is_alive(pid: u32, start: u64) -> bool {
    pid != 0 && start_time(pid) == Some(start)
}

/// Takes the first slot whose lock is free for a writable handle of the
/// journal in `dir` (the caller created `processes/`), taking back any
/// sleepers a dead owner left in it; `None` if no slot could be taken (all
/// 64 held, or no descriptor left), which costs the handle its share of the
/// table: its sleepers then count in the shared count only.
pub fn register(dir: &Path, meta: &Meta, mode: u32) -> Option<SlotOwner> {
    for slot in 0..PROCESS_SLOTS {
        let Ok(file) = crate::mapped::open_lock_file(&dir.join(PROCESS_DIR), &lock_name(slot), mode) else { continue };
        if rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok() {
            wake::forget_sleepers_of(meta, slot);
            let pid = std::process::id();
            let (slot_pid, slot_start) = meta.process_slot(slot);
            slot_start.store(start_time(pid).unwrap_or(0), Ordering::Release);
            slot_pid.store(pid, Ordering::Release);
            return Some(SlotOwner { slot, file });
        }
    }
    None
}

/// Gives a handle's slot back at close, when none of its threads sleeps any
/// more. The lock is let go explicitly: a child forked without exec shares
/// the descriptor and must not keep the slot.
pub fn unregister(meta: &Meta, owner: Option<&SlotOwner>) {
    if let Some(owner) = owner {
        wake::forget_sleepers_of(meta, owner.slot);
        meta.process_slot(owner.slot).0.store(0, Ordering::Release);
        let _ = rustix::fs::flock(&owner.file, FlockOperation::Unlock);
    }
}

/// Frees the slots of handles that died while some of their threads slept
/// on the wake word, taking those sleepers back out of the shared count
/// (see `wake`). Cheap when nobody sleeps: one load per slot.
pub fn forget_dead_sleepers(dir: &Path, meta: &Meta) {
    for slot in 0..PROCESS_SLOTS {
        if meta.process_sleepers(slot).load(Ordering::Acquire) == 0 {
            continue;
        }
        // Taken: no live owner, and nobody takes the slot (and starts
        // sleeping in it) before the count is back to 0. Held: a live
        // owner. Any other error: don't know, so leave it.
        let Ok(file) = open_existing(&lock_path(dir, slot)) else { continue };
        if rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok() {
            wake::forget_sleepers_of(meta, slot);
            meta.process_slot(slot).0.store(0, Ordering::Release);
            // Explicitly: a child another thread forks meanwhile shares
            // the descriptor, and closing ours alone would not let it go.
            let _ = rustix::fs::flock(&file, FlockOperation::Unlock);
        }
    }
}

/// For recovery, which runs when no writable handle is open anywhere, so
/// that no thread sleeps counted: clears every sleepers count.
pub fn forget_all_sleepers(meta: &Meta) {
    wake::forget_all_sleepers(meta, PROCESS_SLOTS);
}

/// Whether slot `slot` has a live owner: its lock is held (`Some(true)`) or
/// free (`Some(false)`); `None` when it cannot be probed.
fn owned(dir: &Path, slot: usize) -> Option<bool> {
    let file = open_existing(&lock_path(dir, slot)).ok()?;
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            let _ = rustix::fs::flock(&file, FlockOperation::Unlock); // as in `forget_dead_sleepers`
            Some(false)
        }
        Err(rustix::io::Errno::WOULDBLOCK) => Some(true),
        Err(_) => None,
    }
}

/// `(pid, alive)` for every slot that records a pid: alive when the slot's
/// lock is held (by a live handle, in any PID namespace: the pid is as
/// that handle's namespace sees it); where the lock cannot be probed, as
/// far as this namespace's `/proc` shows.
pub fn list(dir: &Path, meta: &Meta) -> Vec<(u32, bool)> {
    (0..PROCESS_SLOTS)
        .filter_map(|slot| {
            let (pid, start) = meta.process_slot(slot);
            let pid = pid.load(Ordering::Acquire);
            (pid != 0).then(|| {
                let alive = owned(dir, slot).unwrap_or_else(|| is_alive(pid, start.load(Ordering::Acquire)));
                (pid, alive)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    fn meta(dir: &Path) -> Meta {
        std::fs::create_dir(dir.join(PROCESS_DIR)).unwrap();
        crate::meta::test_meta(dir)
    }

    #[test]
    fn only_a_slot_whose_lock_is_free_has_its_sleepers_taken_back() {
        let dir = tempfile::tempdir().unwrap();
        let meta = meta(dir.path());
        // Two owners in one process: two slots.
        let (live, dead) = (register(dir.path(), &meta, 0o600).unwrap(), register(dir.path(), &meta, 0o600).unwrap());
        assert_eq!((live.slot, dead.slot), (0, 1));
        wake::announce(&meta, Some(live.slot));
        wake::announce(&meta, Some(dead.slot));
        // Whatever pid the live slot records (another namespace's, none at all).
        meta.process_slot(live.slot).0.store(0x7FFF_FFF0, Ordering::Relaxed);
        forget_dead_sleepers(dir.path(), &meta);
        assert_eq!(meta.sleepers().load(Ordering::Relaxed), 2, "both owners hold their locks");
        drop(dead); // its descriptor closes, as at a death
        assert_eq!(list(dir.path(), &meta), vec![(0x7FFF_FFF0, true), (std::process::id(), false)]);
        forget_dead_sleepers(dir.path(), &meta);
        assert_eq!(meta.sleepers().load(Ordering::Relaxed), 1);
        assert_eq!(meta.process_sleepers(live.slot).load(Ordering::Relaxed), 1);
        assert_eq!(meta.process_sleepers(1).load(Ordering::Relaxed), 0);
        // The freed slot is taken again; the live one is not.
        let next = register(dir.path(), &meta, 0o600).unwrap();
        assert_eq!(next.slot, 1);
        wake::retract(&meta, Some(live.slot));
        unregister(&meta, Some(&live));
        assert_eq!(register(dir.path(), &meta, 0o600).unwrap().slot, 0);
        assert_eq!(meta.sleepers().load(Ordering::Relaxed), 0);
    }

    #[test]
    fn own_start_time_is_readable_and_stable() {
        let pid = std::process::id();
        let first = super::start_time(pid).expect("/proc/self/stat");
        assert_eq!(super::start_time(pid), Some(first));
        assert!(super::is_alive(pid, first));
        assert!(!super::is_alive(pid, first + 1));
    }
}
