//! The async side of wake-ups: one background thread per journal handle
//! (started by the first future that has to wait, stopped when the handle
//! closes) sleeps on the wake word for every pending future of the handle
//! and turns wake-ups into [`Waker`] calls, so that `poll_async` and
//! `append_async` never block their executor's thread.
//!
//! Owns: the table of pending futures (waker, the wake word each saw, an
//! optional deadline) and the thread. Touches the metadata's wake word and
//! sleepers count through `wake` only.
//!
//! The protocol is `wake`'s, with the thread as the sleeper: a future that
//! found nothing [`Registration::arm`]s itself (the thread is announced as a
//! sleeper first, if it is not already, and the entry keeps the wake word
//! seen after that), then tries once more before it returns `Pending`. The
//! thread wakes every entry whose word has moved since (or whose deadline
//! passed), and sleeps on the current word while entries remain: a word
//! bumped after an entry was armed either shows in the comparison or makes
//! the thread's `futex_wait` return at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::state::JournalState;
use crate::wake;

/// How often a read-only handle's pending futures look again.
const READ_ONLY_STEP: Duration = Duration::from_millis(1);

/// The background waiter of one journal handle.
pub(crate) struct AsyncWaiter {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    next_id: AtomicU64,
}

/// What the thread and the futures share.
struct Shared {
    state: Arc<JournalState>,
    table: Mutex<Table>,
    stopping: AtomicBool,
}

#[derive(Default)]
struct Table {
    entries: HashMap<u64, Entry>,
    /// The thread is counted in the metadata's sleepers.
    announced: bool,
    /// When the thread's current sleep ends at the latest.
    sleeping_until: Option<Instant>,
}

struct Entry {
    seq: u32,
    waker: Waker,
    deadline: Option<Instant>,
}

/// One future's place in the table; dropping it (with the future) removes it.
pub(crate) struct Registration {
    waiter: Arc<AsyncWaiter>,
    id: u64,
}

impl AsyncWaiter {
    pub fn new(state: Arc<JournalState>) -> AsyncWaiter {
        let shared = Shared { state, table: Mutex::new(Table::default()), stopping: AtomicBool::new(false) };
        AsyncWaiter { shared: Arc::new(shared), thread: Mutex::new(None), next_id: AtomicU64::new(1) }
    }

    /// A place for one future (nothing is armed yet).
    pub fn registration(self: &Arc<Self>) -> Registration {
        Registration { waiter: Arc::clone(self), id: self.next_id.fetch_add(1, Ordering::Relaxed) }
    }

    /// Stops the thread and waits for it (the handle is closing; no future
    /// can be pending, since each holds a share of the handle).
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::Release);
        let meta = &self.shared.state.meta;
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread {
            // Out of its futex wait (a spurious wake-up for other sleepers).
            wake::wake_all(meta);
            thread.thread().unpark();
            let _ = thread.join();
        }
        if std::mem::take(&mut lock(&self.shared.table).announced) {
            wake::retract(meta, self.shared.state.process_slot);
        }
    }

    fn arm(&self, id: u64, waker: &Waker, deadline: Option<Instant>) {
        let meta = &self.shared.state.meta;
        // A read-only handle cannot count itself as a sleeper: it looks
        // again every millisecond instead.
        let deadline = match meta.writable() {
            true => deadline,
            false => Some(deadline.unwrap_or_else(far_future).min(Instant::now() + READ_ONLY_STEP)),
        };
        let mut table = lock(&self.shared.table);
        if !table.announced && meta.writable() {
            wake::announce(meta, self.shared.state.process_slot);
            table.announced = true;
        }
        let sleeps_past = |d: Instant| table.sleeping_until.is_none_or(|until| d < until);
        if !table.entries.is_empty() && deadline.is_some_and(sleeps_past) {
            // The thread sleeps past this deadline: move the word, so that
            // its sleep ends (it recomputes how long to sleep).
            wake::wake_all(meta);
        }
        let seq = meta.wake_word().load(Ordering::Acquire);
        let entry = Entry { seq, waker: waker.clone(), deadline };
        table.entries.insert(id, entry);
        drop(table);
        self.ensure_thread();
    }

    fn ensure_thread(&self) {
        let mut thread = lock(&self.thread);
        match thread.as_ref() {
            Some(running) => running.thread().unpark(),
            None if !self.shared.stopping.load(Ordering::Acquire) => {
                let shared = Arc::clone(&self.shared);
                let spawned = std::thread::Builder::new().name("backwater-waiter".into()).spawn(move || run(&shared));
                // Without the thread nothing would wake the future: fail loudly.
                *thread = Some(spawned.expect("spawn the backwater-waiter thread"));
            }
            None => {}
        }
    }

    fn remove(&self, id: u64) {
        lock(&self.shared.table).entries.remove(&id);
    }
}

impl Registration {
    /// Arms this future: `waker` is called once the wake word moves (a
    /// commit, or back-pressure released, in any process) or at `deadline`.
    /// The caller tries once more after this before returning `Pending`.
    pub fn arm(&mut self, waker: &Waker, deadline: Option<Instant>) {
        self.waiter.arm(self.id, waker, deadline);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.waiter.remove(self.id);
    }
}

/// The thread: wake what is due, sleep on the word while anything is armed,
/// park while nothing is.
fn run(shared: &Shared) {
    let meta = &shared.state.meta;
    while !shared.stopping.load(Ordering::Acquire) {
        let (due, next) = collect_due(shared);
        due.into_iter().for_each(Waker::wake);
        match next {
            Some(Sleep { seq, deadline }) => {
                wake::sleep(meta.wake_word(), seq, deadline);
            }
            None => std::thread::park(),
        }
    }
}

/// What the thread sleeps on: the wake word it saw, and the earliest deadline.
struct Sleep {
    seq: u32,
    deadline: Option<Instant>,
}

/// Takes the entries that are due out of the table; returns their wakers
/// and what to sleep on next (`None`: nothing is armed, and the thread no
/// longer counts as a sleeper).
fn collect_due(shared: &Shared) -> (Vec<Waker>, Option<Sleep>) {
    let meta = &shared.state.meta;
    let mut table = lock(&shared.table);
    let seq = meta.wake_word().load(Ordering::Acquire);
    let now = Instant::now();
    let mut due = Vec::new();
    table.entries.retain(|_, entry| {
        let fire = entry.seq != seq || entry.deadline.is_some_and(|d| d <= now);
        if fire {
            due.push(entry.waker.clone());
        }
        !fire
    });
    if table.entries.is_empty() {
        if std::mem::take(&mut table.announced) {
            wake::retract(meta, shared.state.process_slot);
        }
        table.sleeping_until = None;
        return (due, None);
    }
    let deadline = table.entries.values().filter_map(|entry| entry.deadline).min();
    table.sleeping_until = deadline;
    (due, Some(Sleep { seq, deadline }))
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
