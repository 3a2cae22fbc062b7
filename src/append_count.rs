//! The shared `Publisher`s' count of records appended, without a locked
//! instruction per record: each appending thread counts into a shard of its
//! own in `journal.meta` (a cache line it alone writes, with a plain store),
//! and the count is the base word plus every shard. So the count stays in
//! the shared mapping, where every process reads it and a killed process
//! leaves what it counted, as the atomic add it replaces did.
//!
//! Owns: which thread holds which shard (a thread-local list, one entry per
//! handle it appended through), taking shards and giving them back, and the
//! sum. A shard is held per (thread, handle): taken with a compare-and-swap
//! from 0 to the handle's token at the thread's first append through that
//! handle, given back when the thread exits or the handle closes, and freed
//! wholesale when a writer opens the journal alone (the shards of a killed
//! process). A giver-back's release store orders its counts before the next
//! holder's acquiring take, so each shard has one writer at a time; with no
//! shard free, the thread adds to the base word atomically (as before).
//! Touches the metadata's base counter and shard lines.

use std::cell::{Cell, RefCell};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};

use crate::meta::{COUNT_SHARDS, Meta};
use crate::state::JournalState;

/// A shard this thread holds for one handle.
struct Held {
    handle_id: u64,
    shard: usize,
    token: u64,
    state: Weak<JournalState>,
}

/// Gives every shard back when the thread exits.
struct HeldShards(RefCell<Vec<Held>>);

impl Drop for HeldShards {
    fn drop(&mut self) {
        // Whatever this thread still appends from now on goes to the base.
        LAST.with(|last| last.set(NO_SHARD));
        for held in self.0.get_mut().drain(..) {
            if let Some(state) = held.state.upgrade() {
                release(&state.meta, held.shard, held.token);
            }
        }
    }
}

/// `(handle id, shard)` of this thread's last count: the hot path's whole
/// lookup (no destructor, so reading it costs no registration check).
const NO_SHARD: (u64, usize) = (0, 0);

thread_local! {
    static LAST: Cell<(u64, usize)> = const { Cell::new(NO_SHARD) };
    static HELD: HeldShards = const { HeldShards(RefCell::new(Vec::new())) };
}

/// Counts `records` committed through `inner` by this thread.
#[inline]
pub(crate) fn count_appended(inner: &Arc<JournalState>, records: u64) {
    let (handle_id, shard) = LAST.with(Cell::get);
    if handle_id == inner.handle_id {
        let count = inner.meta.shard_records(shard);
        // This thread holds the shard: nobody else writes it meanwhile.
        count.store(count.load(Ordering::Relaxed) + records, Ordering::Relaxed);
    } else {
        count_first(inner, records);
    }
}

/// The count of this thread's first record through `inner` (or its first
/// since it last used another handle): finds or takes its shard.
#[cold]
#[inline(never)]
fn count_first(inner: &Arc<JournalState>, records: u64) {
    match held_shard(inner) {
        Some(shard) => {
            LAST.with(|last| last.set((inner.handle_id, shard)));
            count_appended(inner, records);
        }
        None => {
            inner.meta.appended().fetch_add(records, Ordering::Relaxed);
        }
    }
}

/// The shard this thread holds for `inner`, taking one if it has none;
/// `None` when every shard is taken (or the thread is exiting).
fn held_shard(inner: &Arc<JournalState>) -> Option<usize> {
    HELD.try_with(|held| {
        let mut held = held.0.borrow_mut();
        if let Some(found) = held.iter().find(|h| h.handle_id == inner.handle_id) {
            return Some(found.shard);
        }
        // Entries of closed handles: their shards were given back at close.
        held.retain(|h| h.state.strong_count() > 0);
        let token = token(inner.handle_id);
        let shard = take(&inner.meta, token)?;
        held.push(Held { handle_id: inner.handle_id, shard, token, state: Arc::downgrade(inner) });
        Some(shard)
    })
    .ok()
    .flatten()
}

/// What a handle's shards hold as their owner: random per process, distinct
/// per handle, never 0.
fn token(handle_id: u64) -> u64 {
    static PROCESS: OnceLock<u64> = OnceLock::new();
    let process = *PROCESS.get_or_init(|| RandomState::new().hash_one(std::process::id()));
    process.wrapping_add(handle_id).max(1)
}

/// Takes a free shard for `token`.
fn take(meta: &Meta, token: u64) -> Option<usize> {
    (0..COUNT_SHARDS).find(|&shard| {
        let owner = meta.shard_holder(shard);
        // Acquire: the previous holder's counts happen before ours.
        owner.load(Ordering::Relaxed) == 0
            && owner.compare_exchange(0, token, Ordering::Acquire, Ordering::Relaxed).is_ok()
    })
}

/// Gives `shard` back if `token` still holds it (release: its counts
/// happen before the next holder's).
fn release(meta: &Meta, shard: usize, token: u64) {
    let _ = meta.shard_holder(shard).compare_exchange(token, 0, Ordering::Release, Ordering::Relaxed);
}

/// Gives back every shard the threads of handle `handle_id` hold (when it
/// closes: none of them can append through it any more).
pub(crate) fn release_handle(meta: &Meta, handle_id: u64) {
    let token = token(handle_id);
    (0..COUNT_SHARDS).for_each(|shard| release(meta, shard, token));
}

/// Frees every shard (a writer that opens the journal alone: the holders of
/// any still taken died). Their counts stay in the sum.
pub(crate) fn free_all(meta: &Meta) {
    (0..COUNT_SHARDS).for_each(|shard| meta.shard_holder(shard).store(0, Ordering::Release));
}

/// Records appended, by every publisher in every process: the base word
/// plus every shard.
pub(crate) fn total(meta: &Meta) -> u64 {
    let shards: u64 = (0..COUNT_SHARDS).map(|shard| meta.shard_records(shard).load(Ordering::Relaxed)).sum();
    meta.appended().load(Ordering::Relaxed).wrapping_add(shards)
}
