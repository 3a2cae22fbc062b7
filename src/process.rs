//! The process table in the metadata: which processes have the journal open
//! for writing, identified by pid and start time (so a reused pid is not
//! mistaken for the old process).
//!
//! Owns: registering, unregistering and the liveness shown by `info`, and
//! freeing dead processes' slots (taking back the sleepers they left
//! counted: `wake`). Otherwise it is informational only (a table of 64 slots, pids as this namespace sees them):
//! recovery decides on the writers' lock (`writers`), which the kernel keeps.

use std::sync::atomic::Ordering;

use crate::meta::{Meta, PROCESS_SLOTS};
use crate::wake;

/// The pid a slot holds while a housekeeper frees it ([`forget_dead_sleepers`]).
const REAPING: u32 = u32::MAX;

/// This process's start time in clock ticks since boot (`/proc/self/stat` field 22).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process recorded as `(pid, start)` is still running.
pub fn is_alive(pid: u32, start: u64) -> bool {
    if pid == 0 {
        return false;
    }
    match start_time(pid) {
        Some(now) => now == start,
        None => false,
    }
}

/// Takes a free (or dead) slot for this process; `None` if the table is full,
/// which only costs the liveness information, never correctness of appends.
pub fn register(meta: &Meta) -> Option<usize> {
    let pid = std::process::id();
    let start = start_time(pid).unwrap_or(0);
    for slot in 0..PROCESS_SLOTS {
        let (slot_pid, slot_start) = meta.process_slot(slot);
        let current = slot_pid.load(Ordering::Acquire);
        let free = current == 0 || (current != REAPING && !is_alive(current, slot_start.load(Ordering::Acquire)));
        if free && slot_pid.compare_exchange(current, pid, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            slot_start.store(start, Ordering::Release);
            wake::forget_sleepers_of(meta, slot);
            return Some(slot);
        }
    }
    None
}

pub fn unregister(meta: &Meta, slot: Option<usize>) {
    if let Some(slot) = slot {
        wake::forget_sleepers_of(meta, slot);
        meta.process_slot(slot).0.store(0, Ordering::Release);
    }
}

/// Frees the slots of processes that died while some of their threads
/// slept on the wake word, and takes those sleepers back out of the shared
/// count (see `wake`). Cheap when nobody sleeps: one load per slot.
pub fn forget_dead_sleepers(meta: &Meta) {
    for slot in 0..PROCESS_SLOTS {
        if meta.process_sleepers(slot).load(Ordering::Acquire) == 0 {
            continue;
        }
        let (slot_pid, slot_start) = meta.process_slot(slot);
        let pid = slot_pid.load(Ordering::Acquire);
        let dead = pid != 0 && pid != REAPING && !is_alive(pid, slot_start.load(Ordering::Acquire));
        // Only the owner of a slot may forget its sleepers (a process taking
        // it, or this): hold it as `REAPING` meanwhile, so that nobody takes
        // it and starts sleeping before the count is back to 0.
        if dead && slot_pid.compare_exchange(pid, REAPING, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            wake::forget_sleepers_of(meta, slot);
            slot_pid.store(0, Ordering::Release);
        }
    }
}

/// For recovery, which runs when no writable handle is open anywhere, so
/// that no thread sleeps counted: clears every sleepers count, and frees
/// any slot a housekeeper that died mid-step left held as `REAPING`.
pub fn forget_all_sleepers(meta: &Meta) {
    for slot in 0..PROCESS_SLOTS {
        let _ = meta.process_slot(slot).0.compare_exchange(REAPING, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
    wake::forget_all_sleepers(meta, PROCESS_SLOTS);
}

/// `(pid, alive)` for every occupied slot.
pub fn list(meta: &Meta) -> Vec<(u32, bool)> {
    (0..PROCESS_SLOTS)
        .filter_map(|slot| {
            let (pid, start) = meta.process_slot(slot);
            let pid = pid.load(Ordering::Acquire);
            (pid != 0 && pid != REAPING).then(|| (pid, is_alive(pid, start.load(Ordering::Acquire))))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_start_time_is_readable_and_stable() {
        let pid = std::process::id();
        let first = super::start_time(pid).expect("/proc/self/stat");
        assert_eq!(super::start_time(pid), Some(first));
        assert!(super::is_alive(pid, first));
        assert!(!super::is_alive(pid, first + 1));
    }
}
