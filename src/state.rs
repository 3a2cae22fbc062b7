//! The state every handle of one `Journal::open` shares, and the journal lock.
//!
//! Owns: the directory, the metadata mapping, the journal lock (a mutex for
//! this process plus `flock` for others, held only for rare steps: creating,
//! recovering, creating or deleting segments, changing limits), the map of
//! segments mapped for writing (the window), the recycling pool's
//! bookkeeping, this handle's hold on the writers' lock and its slot in the
//! process table, the housekeeper thread's handle, and the mark of the last
//! rotation this handle's live publisher made (it asks for one early drop
//! in a full dropping ring). Touches nothing
//! above it: the mechanisms (window, capacity, retention, recovery, flush,
//! housekeeper) and the handles work on it through these methods.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::config::Config;
use crate::cursor::CursorFile;
use crate::error::{Error, Result};
use crate::meta::{Level, Meta};
use crate::process;
use crate::segment::{Segment, SegmentIdentity};
use crate::writers::WriterLock;

/// The journal lock's file name.
pub(crate) const LOCK_FILE: &str = "journal.lock";

/// How long a publisher's path waits for the journal lock held by another
/// process before it counts as stuck (its holders otherwise keep it for a
/// retention pass: at most a few directory syncs). A thread of this handle
/// holding it is waited for without a limit: see
/// [`JournalState::lock_for_publisher`].
const LOCK_PATIENCE: Duration = Duration::from_millis(200);

/// Decompressed segments a handle keeps for its readers, besides the one
/// each consumer holds: consumers reading the same part of the journal
/// decompress it once.
const DECOMPRESSED_KEPT: usize = 2;

/// `rotated_into` when no rotation awaits an early drop.
const NO_ROTATION: u64 = u64::MAX;

/// Distinguishes handles in the publishers' thread-local segment cache.
static NEXT_HANDLE_ID: AtomicU64 = AtomicU64::new(1);

/// State shared by every handle made from one `Journal::open`.
/// Where one `ReservingPublisher`'s unfilled rest starts, which it updates
/// as it appends, and where and since when the housekeeper has seen it: a
/// rest that has not moved for a whole tick, and for `reserve_linger`, is
/// idle, and the housekeeper lapses it (readers of read-only handles
/// cannot). `rest_at` is on a cache line of its own: its owner stores to it
/// on every record.
pub(crate) struct ReservationHead {
    pub rest_at: CachePadded<AtomicU64>,
    pub seen_at: AtomicU64,
    /// When the housekeeper first saw the rest at `seen_at` (`frame::now_ns`).
    pub seen_since_ns: AtomicU64,
}

/// [`ReservationHead::rest_at`] of a publisher that holds no reservation.
pub(crate) const NO_RESERVATION: u64 = u64::MAX;

impl Default for ReservationHead {
    fn default() -> ReservationHead {
        ReservationHead {
            rest_at: CachePadded::new(AtomicU64::new(NO_RESERVATION)),
            seen_at: AtomicU64::new(NO_RESERVATION),
            seen_since_ns: AtomicU64::new(0),
        }
    }
}

pub(crate) struct JournalState {
    pub dir: PathBuf,
    pub meta: Meta,
    pub identity: SegmentIdentity,
    pub handle_id: u64,
    pub max_payload: usize,
    pub file_mode: u32,
    pub append_timeout: Option<Duration>,
    pub unblock_timeout: Duration,
    /// How long a reservation lives (`Config::reserve_linger`).
    pub reserve_linger: Duration,
    /// Segments past the tail's that the housekeeper keeps ready.
    pub segments_ahead: u64,
    /// The segment a live publisher of this handle (shared or exclusive)
    /// last moved the tail into, until the first prepare after that
    /// rotation took it or the publishers went (`NO_ROTATION`): only a
    /// handle that is appending makes room one step early, and only as it
    /// enters the segment, once per rotation
    /// (`retention::drop_for_next_segment`).
    rotated_into: AtomicU64,
    /// Segments mapped for writing: the tail's and the one prepared ahead.
    window: Mutex<BTreeMap<u64, Arc<Segment>>>,
    /// The compressed segments this handle read last, decompressed (at
    /// most `DECOMPRESSED_KEPT`; each consumer also holds the one it reads).
    decompressed: Mutex<VecDeque<Arc<Segment>>>,
    /// Where this handle's `ReservingPublisher`s hold reservations, for the
    /// housekeeper (dead entries are pruned as they are read).
    reservation_heads: Mutex<Vec<Weak<ReservationHead>>>,
    /// Everything before this position has been msynced by this handle.
    pub flushed_position: AtomicU64,
    /// This handle's slot in the process table (writable handles, while
    /// one of the 64 was free): copied out of `slot_owner` for the sleepers.
    pub process_slot: Option<usize>,
    /// This handle's hold on its slot's lock.
    slot_owner: Option<process::SlotOwner>,
    level_watchers: Mutex<Vec<std::sync::mpsc::Sender<Level>>>,
    /// The level this handle's watchers were last told about.
    last_level: AtomicU32,
    /// Consumed segments kept for reuse while an exclusive publisher lives.
    recycling: Mutex<Recycling>,
    /// Held while this handle creates a segment.
    segment_creation: Mutex<()>,
    lock_file: Option<Mutex<File>>,
    /// Set while a thread of this handle holds the journal lock whole (the
    /// mutex and the `flock`): it is at work, not waiting for another
    /// process.
    lock_held: AtomicBool,
    /// Set when `lock_for_publisher` waited `LOCK_PATIENCE` in vain for
    /// another process.
    lock_stuck: AtomicBool,
    /// This handle's hold on the writers' lock (writable handles only): how
    /// other openers know a writer is alive.
    writer_lock: Option<WriterLock>,
    stopping: AtomicBool,
    housekeeper: Mutex<Option<JoinHandle<()>>>,
    /// The compressor thread (`compressor`), beside the housekeeper so that
    /// compressing never delays preparing the next segment.
    compressor: Mutex<Option<JoinHandle<()>>>,
}

/// The bookkeeping of recycled segment files (the mechanism is in `window`).
///
/// Only segments written by this handle's live `ExclusivePublisher` alone
/// are recycled. While it lives no fetch-add claimer exists in any process
/// (the publisher lock), so nobody can still be writing into a retired file;
/// and since it commits every frame before moving the tail, no reader can be
/// waiting to unblock a hole in one.
#[derive(Default)]
pub(crate) struct Recycling {
    /// Segments from this index on were written by the live exclusive
    /// publisher alone; `None` while there is none.
    pub from_index: Option<u64>,
    /// Retired segment files, renamed `.tmp-spare-INDEX`, oldest first.
    pub spares: VecDeque<PathBuf>,
}

/// Holds the journal lock (a mutex for this process plus `flock` for others).
pub(crate) struct JournalLock<'a> {
    file: MutexGuard<'a, File>,
    held: &'a AtomicBool,
}

impl<'a> JournalLock<'a> {
    /// The lock whole: `file`'s mutex guard with the `flock` taken.
    fn new(file: MutexGuard<'a, File>, held: &'a AtomicBool) -> JournalLock<'a> {
        held.store(true, Ordering::Release);
        JournalLock { file, held }
    }
}

impl Drop for JournalLock<'_> {
    fn drop(&mut self) {
        self.held.store(false, Ordering::Release);
        let _ = rustix::fs::flock(&*self.file, rustix::fs::FlockOperation::Unlock);
    }
}

impl JournalState {
    /// `lock` is the journal lock of a read-write handle; read-only handles
    /// have none, and that is what makes them read-only.
    pub fn new(
        dir: PathBuf,
        meta: Meta,
        config: &Config,
        lock: Option<Mutex<File>>,
        writer_lock: Option<WriterLock>,
    ) -> Result<JournalState> {
        let writable = lock.is_some();
        if let Some(requested) = config.segment_size
            && requested != meta.segment_size
        {
            return Err(Error::SegmentSizeMismatch { path: dir, existing: meta.segment_size, requested });
        }
        let identity = SegmentIdentity { journal_id: meta.journal_id, segment_size: meta.segment_size };
        let slot_owner = if writable { process::register(&dir, &meta, config.file_mode_or_default()) } else { None };
        if writable {
            // Its publishers and limit changes wake sleepers without a fence.
            crate::wake::register_process();
        }
        let level = meta.level().load(Ordering::Acquire);
        Ok(JournalState {
            max_payload: (meta.segment_size / 8) as usize,
            flushed_position: AtomicU64::new(0),
            dir,
            meta,
            identity,
            handle_id: NEXT_HANDLE_ID.fetch_add(1, Ordering::Relaxed),
            file_mode: config.file_mode_or_default(),
            append_timeout: config.append_timeout,
            unblock_timeout: config.unblock_timeout_or_default(),
            reserve_linger: config.reserve_linger_or_default(),
            segments_ahead: config.segments_ahead_or_default(),
            rotated_into: AtomicU64::new(NO_ROTATION),
            window: Mutex::new(BTreeMap::new()),
            decompressed: Mutex::new(VecDeque::new()),
            reservation_heads: Mutex::new(Vec::new()),
            process_slot: slot_owner.as_ref().map(|owner| owner.slot),
            slot_owner,
            level_watchers: Mutex::new(Vec::new()),
            last_level: AtomicU32::new(level),
            recycling: Mutex::new(Recycling::default()),
            segment_creation: Mutex::new(()),
            lock_file: lock,
            lock_held: AtomicBool::new(false),
            lock_stuck: AtomicBool::new(false),
            writer_lock,
            stopping: AtomicBool::new(false),
            housekeeper: Mutex::new(None),
            compressor: Mutex::new(None),
        })
    }

    /// Whether this handle may write (it holds the journal lock file).
    pub fn writable(&self) -> bool {
        self.lock_file.is_some()
    }

    /// What frames appended through this handle carry as their owner: its
    /// slot in the process table + 1 (0 when the table was full).
    #[inline]
    pub fn owner_tag(&self) -> u16 {
        self.process_slot.map_or(0, |slot| slot as u16 + 1)
    }

    pub fn require_writable(&self) -> Result<()> {
        if self.writable() { Ok(()) } else { Err(Error::ReadOnly { path: self.dir.clone() }) }
    }

    /// The journal lock for work on a publisher's path (making room,
    /// creating a segment). Held by another thread of this handle at work
    /// (its housekeeper, which runs at the lowest priority and may be
    /// descheduled for a long while on a loaded machine), it is waited for:
    /// that thread lets go once its step is done, and a process stopped
    /// while holding it would have stopped this thread too. Held by another
    /// process (its `flock`, or this handle's mutex by a thread waiting for
    /// that `flock`), it is waited for at most `LOCK_PATIENCE`, and not at
    /// all once it was found stuck (held that long: a process stopped while
    /// holding it, by SIGSTOP or a debugger), until it is free again. So a
    /// publisher never blocks on another process; the caller turns
    /// `Error::JournalBusy` into back-pressure.
    pub fn lock_for_publisher(&self) -> Result<JournalLock<'_>> {
        let Some(lock) = &self.lock_file else { return Err(Error::ReadOnly { path: self.dir.clone() }) };
        let patience = if self.lock_stuck.load(Ordering::Acquire) { Duration::ZERO } else { LOCK_PATIENCE };
        let mut deadline = Instant::now() + patience;
        let mut idle = crate::idle::Idle::default();
        loop {
            let file = match lock.try_lock() {
                Ok(file) => Some(file),
                Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            };
            match file {
                Some(file) => match rustix::fs::flock(&*file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                    Ok(()) => {
                        self.lock_stuck.store(false, Ordering::Release);
                        return Ok(JournalLock::new(file, &self.lock_held));
                    }
                    Err(rustix::io::Errno::WOULDBLOCK) => {}
                    Err(e) => return Err(Error::io(self.dir.join(LOCK_FILE), "flock", e.into())),
                },
                // A thread of this handle holds it whole: the patience is
                // for other processes, counted from when it lets go.
                None if self.lock_held.load(Ordering::Acquire) => {
                    idle.idle(None);
                    deadline = Instant::now() + patience;
                    continue;
                }
                None => {}
            }
            if Instant::now() >= deadline {
                self.lock_stuck.store(true, Ordering::Release);
                return Err(Error::JournalBusy { path: self.dir.clone() });
            }
            idle.idle(Some(deadline));
        }
    }

    /// Takes the journal lock (this process's mutex, then `flock`).
    pub fn lock(&self) -> Result<JournalLock<'_>> {
        match &self.lock_file {
            Some(lock) => lock_exclusive(lock, &self.lock_held),
            None => Err(Error::ReadOnly { path: self.dir.clone() }),
        }
    }

    pub fn segment_size(&self) -> u64 {
        self.identity.segment_size
    }

    /// Maps segment `index` for reading (the window's mapping when it has
    /// one); a compressed one is decompressed, or found among those this
    /// handle decompressed last.
    pub fn read_segment(&self, index: u64) -> Result<Arc<Segment>> {
        if let Some(segment) = self.window_get(index) {
            return Ok(segment);
        }
        if let Some(segment) = self.decompressed_get(index) {
            return Ok(segment);
        }
        let segment = Arc::new(Segment::open(&self.dir, index, self.identity, self.writable())?);
        if segment.compressed().is_some()
            && let Ok(mut kept) = self.decompressed.lock()
        {
            if kept.len() >= DECOMPRESSED_KEPT {
                kept.pop_front();
            }
            kept.push_back(Arc::clone(&segment));
        }
        Ok(segment)
    }

    fn decompressed_get(&self, index: u64) -> Option<Arc<Segment>> {
        self.decompressed.lock().ok()?.iter().find(|segment| segment.index == index).cloned()
    }

    pub fn window_get(&self, index: u64) -> Option<Arc<Segment>> {
        self.window.lock().ok()?.get(&index).cloned()
    }

    /// Adds a mapping to the window, keeping only the tail's neighbourhood
    /// mapped. A segment the tail has already left behind (mapped by a
    /// caller that looked at the tail a while ago: a housekeeper preparing
    /// ahead, descheduled meanwhile) is handed back but not kept: the window
    /// would hold it mapped for as long as no later segment is inserted, and
    /// a mapped segment is one the compressor must leave raw.
    pub fn window_insert(&self, index: u64, segment: Arc<Segment>) -> Arc<Segment> {
        let Ok(mut window) = self.window.lock() else { return segment };
        let tail_index = self.meta.tail_index();
        if index + 1 < tail_index {
            return window.get(&index).cloned().unwrap_or(segment);
        }
        window.retain(|&i, _| i + 1 >= tail_index.min(index));
        Arc::clone(window.entry(index).or_insert(segment))
    }

    /// Opens the named cursor for this handle, creating it (writable handles
    /// only) when `create` is set.
    pub fn open_cursor(&self, name: &str, create: bool) -> Result<CursorFile> {
        if self.writable() && create {
            if let Ok(existing) = CursorFile::open(&self.dir, name, self.identity.journal_id, true) {
                return Ok(existing);
            }
            // Under the journal lock, as retention decides what to delete: a
            // new cursor then either holds the first position it starts at,
            // or starts after what retention deleted.
            let _guard = self.lock()?;
            let first = self.meta.first_position().load(Ordering::Acquire);
            CursorFile::open_or_create(&self.dir, name, self.identity.journal_id, first, self.file_mode)
        } else {
            CursorFile::open(&self.dir, name, self.identity.journal_id, self.writable())
        }
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// A new [`ReservationHead`], which the housekeeper looks at while it lives.
    pub fn register_reservation_head(&self) -> Arc<ReservationHead> {
        let head = Arc::new(ReservationHead::default());
        if let Ok(mut heads) = self.reservation_heads.lock() {
            heads.retain(|weak| weak.strong_count() > 0);
            heads.push(Arc::downgrade(&head));
        }
        head
    }

    /// The live [`ReservationHead`]s of this handle.
    pub fn reservation_heads(&self) -> Vec<Arc<ReservationHead>> {
        let Ok(mut heads) = self.reservation_heads.lock() else { return Vec::new() };
        heads.retain(|weak| weak.strong_count() > 0);
        heads.iter().filter_map(Weak::upgrade).collect()
    }

    pub fn set_housekeeper(&self, handle: JoinHandle<()>) {
        if let Ok(mut slot) = self.housekeeper.lock() {
            *slot = Some(handle);
        }
    }

    /// Wakes the housekeeper (after a rollover) so it prepares the next segment.
    pub fn wake_housekeeper(&self) {
        if let Ok(slot) = self.housekeeper.lock()
            && let Some(handle) = slot.as_ref()
        {
            handle.thread().unpark();
        }
    }

    /// A publisher of this handle moved the tail into segment `index`: the
    /// housekeeper prepares the next one (a full dropping ring makes room
    /// for it one step early).
    pub fn publisher_rotated(&self, index: u64) {
        self.rotated_into.store(index, Ordering::Release);
        self.wake_housekeeper();
    }

    /// This handle's publishers are gone: their last rotation no longer
    /// asks for an early drop.
    pub fn publishers_gone(&self) {
        self.rotated_into.store(NO_ROTATION, Ordering::Release);
    }

    /// Takes the mark of a live publisher's rotation into segment `index`:
    /// `true` for the first caller after that rotation that can decide its
    /// early drop (room there was, or the journal lock held), which decides
    /// it then and there, drop or not. (A mark left for later would
    /// drop data when the conditions change with nothing appended: a policy
    /// switched from `Block`, a replay window that ages, a smaller budget.
    /// A later rotation's mark stays.)
    pub fn take_rotation(&self, index: u64) -> bool {
        self.rotated_into.compare_exchange(index, NO_ROTATION, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Whether a live publisher's rotation into segment `index` awaits its
    /// decision ([`JournalState::take_rotation`] not yet called for it).
    pub fn awaits_rotation(&self, index: u64) -> bool {
        self.rotated_into.load(Ordering::Acquire) == index
    }

    pub fn set_compressor(&self, handle: JoinHandle<()>) {
        if let Ok(mut slot) = self.compressor.lock() {
            *slot = Some(handle);
        }
    }

    /// Stops the housekeeper and the compressor and waits for them (called
    /// when the last handle goes).
    pub fn stop_housekeeper(&self) {
        self.stopping.store(true, Ordering::Release);
        for slot in [&self.housekeeper, &self.compressor] {
            let handle = slot.lock().ok().and_then(|mut slot| slot.take());
            if let Some(handle) = handle {
                handle.thread().unpark();
                let _ = handle.join();
            }
        }
    }

    /// Forgets segment `index`'s mapping (retention deleted it, or it was
    /// compressed), and its decompressed copy.
    pub fn window_remove(&self, index: u64) {
        if let Ok(mut window) = self.window.lock() {
            window.remove(&index);
        }
        if let Ok(mut kept) = self.decompressed.lock() {
            kept.retain(|segment| segment.index != index);
        }
    }

    /// One segment creation at a time per handle: a publisher reaching a
    /// segment the housekeeper is building waits for it.
    pub fn segment_creation(&self) -> MutexGuard<'_, ()> {
        self.segment_creation.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The recycling pool's bookkeeping (`None` if a holder panicked).
    pub fn recycling(&self) -> Option<MutexGuard<'_, Recycling>> {
        self.recycling.lock().ok()
    }

    /// A channel that receives the new level at every level transition.
    pub fn watch_level(&self) -> std::sync::mpsc::Receiver<Level> {
        let (sender, receiver) = std::sync::mpsc::channel();
        if let Ok(mut watchers) = self.level_watchers.lock() {
            watchers.push(sender);
        }
        receiver
    }

    /// Tells this handle's watchers when the level differs from the last one they saw.
    pub fn tell_watchers(&self, level: Level) {
        if let Ok(mut watchers) = self.level_watchers.lock()
            && self.last_level.swap(level as u32, Ordering::AcqRel) != level as u32
        {
            watchers.retain(|watcher| watcher.send(level).is_ok());
        }
    }

    /// This handle's hold on its slot in the process table, if it has one.
    pub fn slot_owner(&self) -> Option<&process::SlotOwner> {
        self.slot_owner.as_ref()
    }

    /// This handle's hold on the writers' lock (writable handles only).
    pub fn writer_lock(&self) -> Option<&WriterLock> {
        self.writer_lock.as_ref()
    }
}

/// Waits for the mutex, then for the `flock` (with the mutex held, but not
/// `held`: a publisher waiting meanwhile waits for another process).
fn lock_exclusive<'a>(lock: &'a Mutex<File>, held: &'a AtomicBool) -> Result<JournalLock<'a>> {
    let file = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    rustix::fs::flock(&*file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| Error::io(LOCK_FILE, "flock", e.into()))?;
    Ok(JournalLock::new(file, held))
}
