//! Each appending thread's cache of the segments it writes to, and how the
//! housekeeper takes stale mappings back from threads that have gone idle.
//!
//! Owns: the per-thread caches and their registry. The hot path finds its
//! segment here without a lock or a reference-count change: it marks its own
//! cache busy with plain stores. The reclaimer (a housekeeper, after
//! retention deleted segments; a handle being closed) marks every cache as
//! being revoked, runs `membarrier` (a memory barrier on every thread of the
//! process, so the hot path needs none of its own), and then edits only the
//! caches that are not busy; a thread that sees the revocation takes the
//! slow path instead. So a deleted segment's mapping outlives retention by at
//! most one housekeeper tick, whatever the threads that used it are doing.
//! Touches the journal state only to map a segment on a miss (`window`).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering, compiler_fence};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::error::Result;
use crate::segment::Segment;
use crate::state::JournalState;
use crate::window;

/// A segment a thread keeps mapped for appending through one handle.
struct CachedSegment {
    handle_id: u64,
    index: u64,
    segment: Arc<Segment>,
    /// Lets a reclaimer drop mappings of journals that have since been closed.
    handle: Weak<JournalState>,
}

/// One thread's cache, reachable by reclaimers through the registry.
struct ThreadCache {
    /// Set by the owning thread while it uses `entries`.
    busy: AtomicBool,
    /// Set by a reclaimer while it may edit `entries`.
    revoking: AtomicBool,
    entries: UnsafeCell<Vec<CachedSegment>>,
}

// SAFETY: `entries` is touched by the owning thread only while `busy` is set
// and `revoking` was seen clear, and by a reclaimer only after it set
// `revoking`, ran a process-wide memory barrier and saw `busy` clear (the
// asymmetric Dekker handshake below), so never by both at once.
unsafe impl Sync for ThreadCache {}

/// Entries kept per thread, over all handles.
pub(crate) const CACHE_ENTRIES: usize = 4;

static REGISTRY: Mutex<Vec<Weak<ThreadCache>>> = Mutex::new(Vec::new());

thread_local! {
    static CACHE: Arc<ThreadCache> = register();
}

fn register() -> Arc<ThreadCache> {
    let cache = Arc::new(ThreadCache {
        busy: AtomicBool::new(false),
        revoking: AtomicBool::new(false),
        entries: UnsafeCell::new(Vec::with_capacity(CACHE_ENTRIES)),
    });
    if let Ok(mut registry) = REGISTRY.lock() {
        registry.retain(|weak| weak.strong_count() > 0);
        registry.push(Arc::downgrade(&cache));
    }
    cache
}

/// Clears `busy` when the hot path leaves (also if `f` panics).
struct Busy<'a>(&'a AtomicBool);

impl Drop for Busy<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        compiler_fence(Ordering::SeqCst);
        self.0.store(false, Ordering::Release);
    }
}

/// What [`with_segment`] runs on the segment: any closure, or a type whose
/// [`OnSegment::on`] is `#[inline(always)]` (a closure can't be marked so;
/// the shared publisher's frame write, which must be inline in its loop).
pub(crate) trait OnSegment<R> {
    fn on(self, segment: &Arc<Segment>) -> R;
}

impl<R, F: FnOnce(&Arc<Segment>) -> R> OnSegment<R> for F {
    #[inline(always)]
    fn on(self, segment: &Arc<Segment>) -> R {
        self(segment)
    }
}

/// Runs `f` on segment `index` of `inner`, mapped from this thread's cache
/// (or mapped now and cached): [`with_segment_on`] for a closure.
#[inline(always)]
pub(crate) fn with_segment<R>(inner: &Arc<JournalState>, index: u64, f: impl FnOnce(&Arc<Segment>) -> R) -> Result<R> {
    with_segment_on(inner, index, f)
}

/// Runs `f` on segment `index` of `inner`, mapped from this thread's cache
/// (or mapped now and cached). A cache hit is inline at the caller; the
/// rest is out of line.
#[inline(always)]
pub(crate) fn with_segment_on<R>(inner: &Arc<JournalState>, index: u64, f: impl OnSegment<R>) -> Result<R> {
    // Only a pointer out of `try_with`: with the whole append inside its
    // closure, `try_with` grows too large to be inlined, and the `Result`
    // goes through memory.
    match CACHE.try_with(Arc::as_ptr) {
        Ok(cache) => {
            // SAFETY: the pointer is to this thread's `ThreadCache`, which
            // its `CACHE` slot keeps alive (a strong `Arc`) until the slot
            // is destroyed, and that happens only on this thread as it
            // exits, never while this call (on this thread) runs; so the
            // reference does not outlive the cache.
            let cache = unsafe { &*cache };
            with_cached_segment(cache, inner, index, f)
        }
        // This thread's cache is already destroyed: an append from a
        // thread-local destructor that runs after it. Map without it.
        Err(_) => uncached(inner, index, f),
    }
}

#[inline(always)]
fn with_cached_segment<R>(
    cache: &ThreadCache,
    inner: &Arc<JournalState>,
    index: u64,
    f: impl OnSegment<R>,
) -> Result<R> {
    if cache.busy.load(Ordering::Relaxed) {
        // Re-entered from `f`: the outer call holds the cache.
        return uncached(inner, index, f);
    }
    cache.busy.store(true, Ordering::Relaxed);
    let _busy = Busy(&cache.busy);
    // Pairs with the reclaimer's membarrier: either it sees `busy`, or
    // this load sees `revoking`.
    compiler_fence(Ordering::SeqCst);
    if cache.revoking.load(Ordering::Acquire) {
        return uncached(inner, index, f);
    }
    // SAFETY: busy is set and no reclaimer is revoking (see `ThreadCache`).
    let entries = unsafe { &mut *cache.entries.get() };
    let id = inner.handle_id;
    let segment = match entries.iter().position(|e| e.handle_id == id && e.index == index) {
        Some(hit) => &entries[hit].segment,
        None => cache_miss(entries, inner, index)?,
    };
    Ok(f.on(segment))
}

/// `f` on segment `index` mapped without the cache.
#[cold]
#[inline(never)]
fn uncached<R>(inner: &Arc<JournalState>, index: u64, f: impl OnSegment<R>) -> Result<R> {
    Ok(f.on(&window::write_segment(inner, index)?))
}

/// Maps segment `index` into `entries` (the busy cache's), evicting stale
/// and old entries.
#[cold]
#[inline(never)]
fn cache_miss<'a>(
    entries: &'a mut Vec<CachedSegment>,
    inner: &Arc<JournalState>,
    index: u64,
) -> Result<&'a Arc<Segment>> {
    let id = inner.handle_id;
    let segment = window::write_segment(inner, index)?;
    entries.retain(|e| e.handle.strong_count() > 0 && (e.handle_id != id || e.index + 1 >= index));
    if entries.len() >= CACHE_ENTRIES {
        entries.remove(0);
    }
    entries.push(CachedSegment { handle_id: id, index, segment, handle: Arc::downgrade(inner) });
    Ok(&entries[entries.len() - 1].segment)
}

/// Drops, from every thread's cache, the entries of handle `handle_id` for
/// which `stale(index)` holds, and those of closed handles. Threads inside
/// the hot path at that moment keep theirs until the next call.
pub(crate) fn reclaim(handle_id: u64, stale: impl Fn(u64) -> bool) {
    if !process_barrier_available() {
        return;
    }
    // One reclaimer at a time: `revoking` is one flag per cache, and a
    // second reclaimer clearing it early would let the owner in while the
    // first still edits.
    let _one_at_a_time = RECLAIMER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let caches: Vec<Arc<ThreadCache>> = match REGISTRY.lock() {
        Ok(registry) => registry.iter().filter_map(Weak::upgrade).collect(),
        Err(_) => return,
    };
    for cache in &caches {
        cache.revoking.store(true, Ordering::Relaxed);
    }
    let barrier = process_barrier();
    for cache in &caches {
        if barrier && !cache.busy.load(Ordering::Acquire) {
            // SAFETY: revoking was set before the barrier and busy is clear
            // after it: the owner is outside the hot path and will see
            // `revoking` if it enters before we clear it (see `ThreadCache`).
            let entries = unsafe { &mut *cache.entries.get() };
            entries.retain(|e| e.handle.strong_count() > 0 && !(e.handle_id == handle_id && stale(e.index)));
        } else {
            // Busy now: its entries of closed handles go at a later tick.
            CLOSED_PENDING.store(true, Ordering::Release);
        }
        cache.revoking.store(false, Ordering::Release);
    }
}

/// Set when a reclaim skipped a busy cache, which may still hold mappings
/// of closed handles.
static CLOSED_PENDING: AtomicBool = AtomicBool::new(false);

static RECLAIMER: Mutex<()> = Mutex::new(());

/// Retries, from a housekeeper's tick, dropping the entries of closed
/// handles that a busy cache kept at their close.
pub(crate) fn reclaim_closed() {
    if CLOSED_PENDING.swap(false, Ordering::AcqRel) {
        reclaim(0, |_| false);
    }
}

/// Whether a process-wide memory barrier can be had (registers for the
/// expedited one once).
fn process_barrier_available() -> bool {
    BARRIER
        .get_or_init(|| {
            use rustix::thread::{MembarrierCommand, membarrier, membarrier_query};
            let supported = membarrier_query();
            if supported.contains_command(MembarrierCommand::PrivateExpedited)
                && membarrier(MembarrierCommand::RegisterPrivateExpedited).is_ok()
            {
                Some(MembarrierCommand::PrivateExpedited)
            } else if supported.contains_command(MembarrierCommand::Global) {
                Some(MembarrierCommand::Global)
            } else {
                None
            }
        })
        .is_some()
}

static BARRIER: OnceLock<Option<rustix::thread::MembarrierCommand>> = OnceLock::new();

/// Runs the barrier; `false` if it failed (then nothing may be edited).
fn process_barrier() -> bool {
    match BARRIER.get().copied().flatten() {
        Some(command) => rustix::thread::membarrier(command).is_ok(),
        None => false,
    }
}
