//! Cross-process wake-ups: threads that wait for a record (followers) or
//! for room (publishers under back-pressure), in any process, sleep in the
//! kernel on one futex word of `journal.meta`, and whoever makes progress
//! they may be waiting for wakes them, making the syscall only when
//! somebody sleeps.
//!
//! Owns: the protocol on the wake word and the sleepers count (their offsets
//! are `meta`'s), the process's registration for the asymmetric barrier, and
//! [`Sleeper`], the wait strategy (spin, then sleep) of `poll_wait` and of a
//! blocking `append`. Touches nothing else.
//!
//! # The lost wake-up, and why there is none
//!
//! A sleeper does: (S1) add one to the sleepers count; (S2) an asymmetric
//! heavy barrier (`membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`); (S3) load
//! the wake word, `seq`; (S4) check its condition again (poll, or try the
//! append); (S5) `futex_wait(word, seq)`, which the kernel refuses at once
//! if the word is no longer `seq`. A waker does: (W1) make progress (commit a
//! frame, raise a publication limit); (W2) load the sleepers count, relaxed
//! (the only cost on the publishers' hot path); if it is not 0, (W3) add one
//! to the wake word and (W4) `futex_wake` every sleeper.
//!
//! The race: W1 is a store (the exclusive publisher's is a plain release
//! store) and W2 a load of another word, and S1 a store and S4 a load, so
//! without a full barrier on *both* sides each could miss the other's write
//! (the store-buffer litmus test): the waker sees no sleeper, the sleeper
//! sees no progress, and it sleeps through the record. A full fence between
//! W1 and W2 would close it at a cost on every record; instead S2 makes every
//! thread of every process registered for the barrier (each process with a
//! writable handle: every waker) execute a full barrier at some point B
//! during the call, and B is ordered with W1 and W2 by program order:
//! - B before W1: B follows S1, which is globally visible before S2 starts,
//!   so W2 (after W1, after B) sees the sleeper and wakes it;
//! - B after W1: W1 is visible when S2 returns, so S4 sees the progress and
//!   the sleeper does not sleep.
//!
//! And between S3 and S5: if W3 bumps the word after S3, S5 finds the word
//! changed and returns at once; if W3 came before S3, S3 (acquire) sees it
//! and therefore S4 sees W1. A wake-up is never lost, it is at worst
//! spurious (a sleeper re-checks and sleeps again).
//!
//! Where the barrier is not available (an old kernel, a seccomp filter), a
//! sleeper uses a full fence instead and never sleeps longer than
//! `UNSURE_CAP` at a time: a missed wake-up then costs at most that, as the
//! 1 ms park did before. A read-only handle cannot count itself as a sleeper
//! and parks for up to 1 ms at a time, as before.
//!
//! # A sleeper that dies asleep
//!
//! A process killed while asleep would leave the count too high for ever,
//! and every commit would then make a needless wake call. So each sleeper
//! also counts itself in its handle's slot of the process table (`+1`
//! after the shared count, `-1` before it). A slot is owned by whoever
//! holds its lock file exclusively (`process`), which the kernel lets go
//! when the owner dies, whatever its PID namespace and whatever `/proc`
//! shows; whoever takes a slot whose lock is free takes its sleepers back
//! out of the shared count: a handle registering in it, the housekeeper of
//! any writable handle (once a tick), and recovery, which runs when no
//! writer is alive and so clears every count. A live owner's lock cannot be
//! taken, so its sleepers are never forgotten while they sleep (that would
//! be a lost wake-up: publishers skip the call while the count reads 0).
//! The order of the two steps means a death between them leaves the
//! shared count one too high (a needless wake call until the journal is
//! opened alone again), never too low. A handle without a slot (the table
//! of 64 was full) counts itself in the shared count only. Decrements stop
//! at 0 rather than wrap, whatever else went wrong.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering, fence};
use std::time::{Duration, Instant};

use rustix::thread::futex;
use rustix::thread::{MembarrierCommand, membarrier};

use crate::idle::{Idle, Spin};
use crate::meta::Meta;

/// The longest one sleep lasts when no wake-up can be missed (a safety net:
/// the sleeper re-checks and sleeps again).
const SURE_CAP: Duration = Duration::from_millis(100);
/// The longest one sleep lasts when the barrier is unavailable.
const UNSURE_CAP: Duration = Duration::from_millis(1);

/// Whether this process has the asymmetric barrier (registered at first use).
static BARRIER: OnceLock<bool> = OnceLock::new();

/// Registers this process for the barrier sleepers issue (S2), so that
/// its publishers need no fence (W1 → W2). Called when a writable handle
/// opens; idempotent and cheap after the first call.
pub(crate) fn register_process() -> bool {
    *BARRIER.get_or_init(|| membarrier(MembarrierCommand::RegisterGlobalExpedited).is_ok())
}

/// W2–W4, after progress: wakes every sleeper if there is any. Inlined into
/// the commit paths: one relaxed load when nobody sleeps.
#[inline]
pub(crate) fn notify(meta: &Meta) {
    if meta.sleepers().load(Ordering::Relaxed) != 0 {
        wake_all(meta);
    }
}

/// W3–W4: bumps the wake word and wakes every sleeper, in every process.
#[cold]
#[inline(never)]
pub(crate) fn wake_all(meta: &Meta) {
    if !meta.writable() {
        return;
    }
    meta.wake_word().fetch_add(1, Ordering::Release);
    let _ = futex::wake(meta.wake_word(), futex::Flags::empty(), i32::MAX as u32);
}

/// S1–S3: counts the caller as a sleeper (of the process in `slot`),
/// orders that with every waker, and returns the wake word to sleep on. The
/// caller checks its condition next, then sleeps with [`sleep`] (or not),
/// and always calls [`retract`] with the same slot.
pub(crate) fn announce(meta: &Meta, slot: Option<usize>) -> u32 {
    meta.sleepers().fetch_add(1, Ordering::SeqCst);
    if let Some(slot) = slot {
        meta.process_sleepers(slot).fetch_add(1, Ordering::Relaxed);
    }
    if !(barrier_available() && membarrier(MembarrierCommand::GlobalExpedited).is_ok()) {
        fence(Ordering::SeqCst);
    }
    meta.wake_word().load(Ordering::Acquire)
}

/// Undoes [`announce`]. Neither count goes below 0, even if something else
/// went wrong (a count forgotten while its sleeper lived): wrapping would
/// leave the shared count at `u32::MAX`, a wake call per commit for ever.
pub(crate) fn retract(meta: &Meta, slot: Option<usize>) {
    if let Some(slot) = slot {
        let _ = meta.process_sleepers(slot).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
    let _ = meta.sleepers().fetch_update(Ordering::Release, Ordering::Relaxed, |n| n.checked_sub(1));
}

/// Takes the sleepers counted in `slot` back out of the shared count: the
/// caller holds the slot's lock, having just taken the slot from a dead
/// owner (or giving up its own, with none left asleep). Stops at 0 like
/// [`retract`].
pub(crate) fn forget_sleepers_of(meta: &Meta, slot: usize) {
    let left = meta.process_sleepers(slot).swap(0, Ordering::AcqRel);
    if left != 0 {
        let _ = meta.sleepers().fetch_update(Ordering::Release, Ordering::Relaxed, |n| Some(n.saturating_sub(left)));
    }
}

/// Clears every count: only for recovery, which runs when no writable
/// handle (the only kind that sleeps counted) is open anywhere.
pub(crate) fn forget_all_sleepers(meta: &Meta, slots: usize) {
    for slot in 0..slots {
        meta.process_sleepers(slot).store(0, Ordering::Relaxed);
    }
    meta.sleepers().store(0, Ordering::Release);
}

/// S5: sleeps while the wake word is `seq`, up to `deadline` and at most
/// the safety cap; returns early on any wake-up (spurious ones included).
/// `false` when the sleep ran out its time.
pub(crate) fn sleep(word: &AtomicU32, seq: u32, deadline: Option<Instant>) -> bool {
    let cap = if barrier_available() { SURE_CAP } else { UNSURE_CAP };
    let timeout = deadline.map_or(cap, |d| d.saturating_duration_since(Instant::now()).min(cap));
    if timeout.is_zero() {
        return false;
    }
    let timeout = futex::Timespec { tv_sec: timeout.as_secs() as i64, tv_nsec: timeout.subsec_nanos() as i64 };
    // EAGAIN (the word moved), EINTR and ETIMEDOUT all mean: check again.
    futex::wait(word, futex::Flags::empty(), seq, Some(&timeout)) != Err(rustix::io::Errno::TIMEDOUT)
}

fn barrier_available() -> bool {
    register_process()
}

/// The wait strategy of one waiter: spin briefly, then sleep on the wake
/// word. Call [`Sleeper::idle`] after each attempt that found nothing; the
/// first call after the spin only announces the sleeper, so that the
/// caller's next attempt is the re-check (S4) before the call that sleeps.
pub(crate) struct Sleeper<'a> {
    meta: &'a Meta,
    /// The waiting handle's slot in the process table.
    slot: Option<usize>,
    spin: Spin,
    /// Announced, with the wake word seen then.
    announced: Option<u32>,
    /// For read-only handles, which cannot announce themselves.
    park: Idle,
}

impl<'a> Sleeper<'a> {
    pub fn new(meta: &'a Meta, slot: Option<usize>) -> Sleeper<'a> {
        Sleeper { meta, slot, spin: Spin::default(), announced: None, park: Idle::default() }
    }

    /// Sleeps from the first [`Sleeper::idle`] on (after announcing): for
    /// a waiter that has been waiting a while already.
    pub fn skip_spin(&mut self) {
        self.spin.finish();
    }

    /// Waits a little after a failed attempt, never past `deadline`.
    pub fn idle(&mut self, deadline: Option<Instant>) {
        if let Some(seq) = self.announced.take() {
            sleep(self.meta.wake_word(), seq, deadline);
            retract(self.meta, self.slot);
        } else if !self.spin.spin() {
            if self.meta.writable() {
                self.announced = Some(announce(self.meta, self.slot));
            } else {
                self.park.idle(deadline);
            }
        }
    }
}

impl Drop for Sleeper<'_> {
    fn drop(&mut self) {
        if self.announced.take().is_some() {
            retract(self.meta, self.slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::test_meta as meta;

    #[test]
    fn a_commit_with_nobody_asleep_leaves_the_word_alone() {
        let dir = tempfile::tempdir().unwrap();
        let meta = meta(dir.path());
        notify(&meta);
        assert_eq!(meta.wake_word().load(Ordering::Relaxed), 0);
        assert_eq!(meta.sleepers().load(Ordering::Relaxed), 0);
    }

    #[test]
    fn progress_after_the_announcement_is_never_slept_through() {
        let dir = tempfile::tempdir().unwrap();
        let meta = meta(dir.path());
        let seq = announce(&meta, None);
        assert_eq!(meta.sleepers().load(Ordering::Relaxed), 1);
        notify(&meta); // between the re-check and the sleep
        assert_eq!(meta.wake_word().load(Ordering::Relaxed), seq.wrapping_add(1));
        // The word moved: the sleep returns at once rather than at its deadline.
        let started = Instant::now();
        assert!(sleep(meta.wake_word(), seq, Some(Instant::now() + Duration::from_secs(30))));
        assert!(started.elapsed() < Duration::from_secs(10));
        retract(&meta, None);
        assert_eq!(meta.sleepers().load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_retraction_after_its_sleeper_was_forgotten_does_not_wrap() {
        let dir = tempfile::tempdir().unwrap();
        let meta = meta(dir.path());
        announce(&meta, Some(3));
        // Something took the live sleeper back (as a reaper wrongly judging
        // its owner dead did): both counts read 0 while it sleeps.
        forget_sleepers_of(&meta, 3);
        assert_eq!((meta.sleepers().load(Ordering::Relaxed), meta.process_sleepers(3).load(Ordering::Relaxed)), (0, 0));
        retract(&meta, Some(3));
        assert_eq!((meta.sleepers().load(Ordering::Relaxed), meta.process_sleepers(3).load(Ordering::Relaxed)), (0, 0));
        // Nor does forgetting more than the shared count holds.
        meta.process_sleepers(5).store(2, Ordering::Relaxed);
        meta.sleepers().store(1, Ordering::Relaxed);
        forget_sleepers_of(&meta, 5);
        assert_eq!((meta.sleepers().load(Ordering::Relaxed), meta.process_sleepers(5).load(Ordering::Relaxed)), (0, 0));
        // And the count still works afterwards.
        announce(&meta, Some(3));
        assert_eq!((meta.sleepers().load(Ordering::Relaxed), meta.process_sleepers(3).load(Ordering::Relaxed)), (1, 1));
        retract(&meta, Some(3));
        assert_eq!((meta.sleepers().load(Ordering::Relaxed), meta.process_sleepers(3).load(Ordering::Relaxed)), (0, 0));
    }

    #[test]
    fn a_sleeper_in_another_thread_is_woken() {
        let dir = tempfile::tempdir().unwrap();
        let meta = std::sync::Arc::new(meta(dir.path()));
        let progress = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (sleeper, seen) = (std::sync::Arc::clone(&meta), std::sync::Arc::clone(&progress));
        let asleep = std::thread::spawn(move || {
            let mut timed_out = 0;
            loop {
                let seq = announce(&sleeper, None);
                if seen.load(Ordering::Relaxed) {
                    retract(&sleeper, None);
                    return timed_out;
                }
                timed_out += u32::from(!sleep(sleeper.wake_word(), seq, None));
                retract(&sleeper, None);
            }
        });
        while meta.sleepers().load(Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
        progress.store(true, Ordering::Relaxed);
        notify(&meta);
        // Woken (or the re-check saw the progress): no sleep ran out its
        // 100 ms, which is what a lost wake-up would take.
        assert_eq!(asleep.join().unwrap(), 0);
        assert_eq!(meta.sleepers().load(Ordering::Relaxed), 0);
    }
}
