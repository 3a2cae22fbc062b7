//! The process table in the metadata: which processes have the journal open
//! for writing, identified by pid and start time (so a reused pid is not
//! mistaken for the old process).
//!
//! Owns: registering, unregistering and the liveness shown by `info`. It is
//! informational only (a table of 64 slots, pids as this namespace sees them):
//! recovery decides on the writers' lock (`writers`), which the kernel keeps.

use std::sync::atomic::Ordering;

use crate::meta::{Meta, PROCESS_SLOTS};

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
        let free = current == 0 || !is_alive(current, slot_start.load(Ordering::Acquire));
        if free && slot_pid.compare_exchange(current, pid, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            slot_start.store(start, Ordering::Release);
            return Some(slot);
        }
    }
    None
}

pub fn unregister(meta: &Meta, slot: Option<usize>) {
    if let Some(slot) = slot {
        meta.process_slot(slot).0.store(0, Ordering::Release);
    }
}

/// `(pid, alive)` for every occupied slot.
pub fn list(meta: &Meta) -> Vec<(u32, bool)> {
    (0..PROCESS_SLOTS)
        .filter_map(|slot| {
            let (pid, start) = meta.process_slot(slot);
            let pid = pid.load(Ordering::Acquire);
            (pid != 0).then(|| (pid, is_alive(pid, start.load(Ordering::Acquire))))
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
