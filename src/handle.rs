//! What every user-facing handle holds: the shared journal state plus a share
//! of the handle's lifetime.
//!
//! Owns: close-time work. The last share of a `Journal::open` to go stops
//! and joins the async waiter and the housekeeper on the dropping thread, takes this handle's
//! segments back from every thread's cache, gives spares back, releases the
//! writers' lock (flushing if it was the last writer) and the process-table
//! slot, so the journal is closed before that thread moves on or exits. Also
//! the registry of this handle's shared publisher lock, and its async waiter. Touches the state,
//! the window (spares), flush, and the thread caches.

use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::config::Flush;
use crate::publisher_lock::PublisherGroup;
use crate::state::JournalState;
use crate::waiter::AsyncWaiter;
use crate::{append_count, flush, process, thread_cache, window};

/// A handle's share of one `Journal::open`: cheap to clone, derefs to the
/// shared state.
#[derive(Clone)]
pub(crate) struct Handle {
    state: Arc<JournalState>,
    lifetime: Arc<Lifetime>,
}

/// Lives as long as any handle of one `Journal::open`; its drop closes it.
struct Lifetime {
    state: Arc<JournalState>,
    /// The publisher lock of this handle's live `Publisher`s, if any.
    publisher_group: Mutex<Weak<PublisherGroup>>,
    /// The background waiter of this handle's async futures (its thread
    /// starts with the first future that waits).
    waiter: OnceLock<Arc<AsyncWaiter>>,
}

impl Handle {
    pub fn new(state: JournalState) -> Handle {
        let state = Arc::new(state);
        let lifetime =
            Lifetime { state: Arc::clone(&state), publisher_group: Mutex::new(Weak::new()), waiter: OnceLock::new() };
        Handle { state, lifetime: Arc::new(lifetime) }
    }

    /// The shared state itself, for what must outlive a borrow (the
    /// housekeeper thread, thread caches' weak references).
    pub fn state(&self) -> &Arc<JournalState> {
        &self.state
    }

    /// The group of this handle's live `Publisher`s, or a new one.
    pub fn publisher_group(&self) -> Arc<PublisherGroup> {
        let mut slot = self.lifetime.publisher_group.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.upgrade().unwrap_or_else(|| {
            let group = Arc::new(PublisherGroup::new(Arc::clone(&self.state)));
            *slot = Arc::downgrade(&group);
            group
        })
    }
}

impl Handle {
    /// This handle's background waiter for async futures.
    pub fn async_waiter(&self) -> &Arc<AsyncWaiter> {
        self.lifetime.waiter.get_or_init(|| Arc::new(AsyncWaiter::new(Arc::clone(&self.state))))
    }
}

impl std::ops::Deref for Handle {
    type Target = JournalState;

    fn deref(&self) -> &JournalState {
        &self.state
    }
}

impl Drop for Lifetime {
    fn drop(&mut self) {
        if let Some(waiter) = self.waiter.get() {
            waiter.stop();
        }
        self.state.stop_housekeeper();
        // No thread keeps this handle's segments mapped past its close.
        thread_cache::reclaim(self.state.handle_id, |_| true);
        close(&self.state);
    }
}

/// Gives back what a writable handle held on disk and in the metadata.
fn close(state: &JournalState) {
    if !state.writable() {
        return; // a read-only handle holds nothing and writes nothing
    }
    window::remove_spares(state);
    let _ = window::reclaim_retired(state);
    if let Some(writer_lock) = state.writer_lock() {
        // Under the journal lock: no opener probes while this handle lets
        // go of its hold and flushes. The last writer to close flushes
        // whatever the policy, so that the next recovery needs to look only
        // past that point.
        let _guard = state.lock();
        let last_writer = writer_lock.release(&state.dir);
        if state.meta.limits().flush != Flush::Never || last_writer.is_some() {
            let _ = flush::flush_all(state);
        }
        // Explicitly: a child another thread forks meanwhile shares the
        // descriptor, and would keep the lock (and the next opener out).
        if let Some(probe) = last_writer {
            let _ = rustix::fs::flock(&probe, rustix::fs::FlockOperation::Unlock);
        }
    }
    // No publisher of this handle is left: its threads' count shards are free.
    append_count::release_handle(&state.meta, state.handle_id);
    process::unregister(&state.meta, state.slot_owner());
}
