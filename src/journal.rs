//! `Journal`: opening a journal directory and the state every handle shares.
//!
//! Owns: the directory, the metadata mapping, the journal lock (held only for
//! rare steps: creating, recovering, creating or deleting segments, changing
//! limits), the window of mapped segments, this process's slot in the process
//! table, and the background housekeeper thread. Publishers and consumers hold
//! an `Arc` of the shared state and never take the lock per record.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{Config, Limits};
use crate::consumer::Consumer;
use crate::cursor::{self, CursorFile};
use crate::error::{Error, Result};
use crate::exclusive::ExclusivePublisher;
use crate::meta::{self, Level, META_FILE, Meta, NewJournal};
use crate::publisher::Publisher;
use crate::segment::{self, SEGMENT_HEADER_LEN, Segment, SegmentIdentity};
use crate::writers::WriterLock;
use crate::{housekeeper, process, recovery, retention};

pub(crate) const LOCK_FILE: &str = "journal.lock";

/// How long a publisher's path waits for the journal lock before it counts
/// as stuck (its holders otherwise keep it for a retention pass: at most a
/// few directory syncs).
const LOCK_PATIENCE: Duration = Duration::from_millis(200);

/// Distinguishes handles in the publishers' thread-local segment cache.
static NEXT_HANDLE_ID: AtomicU64 = AtomicU64::new(1);

/// An open journal. Cheap to share: publishers and consumers made from it keep
/// the journal open for as long as they live.
///
/// ```
/// use backwater::{Config, Journal};
/// let dir = tempfile::tempdir()?;
/// let journal = Journal::open(dir.path(), Config::default().segment_size(1 << 20))?;
/// let publisher = journal.publisher();
/// let position = publisher.append(b"hello")?;
/// let mut consumer = journal.consumer("reader")?;
/// let mut seen = Vec::new();
/// consumer.poll(|record| seen.push((record.position(), record.payload().to_vec())), 10)?;
/// assert_eq!(seen, vec![(position, b"hello".to_vec())]);
/// consumer.commit()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Journal {
    pub(crate) inner: Shared,
}

/// What every user-facing handle holds: the shared state plus a share of the
/// housekeeper's lifetime. The last share to go stops and joins the
/// housekeeper on the dropping thread, so the journal is closed (process slot
/// released, final flush done) before that thread moves on or exits.
#[derive(Clone)]
pub(crate) struct Shared {
    inner: Arc<Inner>,
    _lifetime: Arc<Lifetime>,
}

struct Lifetime {
    inner: Arc<Inner>,
}

impl Drop for Lifetime {
    fn drop(&mut self) {
        self.inner.stop_housekeeper();
        // No thread keeps this handle's segments mapped past its close.
        crate::thread_cache::reclaim(self.inner.handle_id, |_| true);
    }
}

impl std::ops::Deref for Shared {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl Shared {
    pub(crate) fn arc(&self) -> &Arc<Inner> {
        &self.inner
    }

    fn new(inner: Inner) -> Shared {
        let inner = Arc::new(inner);
        Shared { _lifetime: Arc::new(Lifetime { inner: Arc::clone(&inner) }), inner }
    }
}

/// State shared by every handle made from one `Journal::open`.
pub(crate) struct Inner {
    pub dir: PathBuf,
    pub meta: Meta,
    pub identity: SegmentIdentity,
    pub handle_id: u64,
    pub max_payload: usize,
    pub file_mode: u32,
    pub append_timeout: Option<Duration>,
    pub unblock_timeout: Duration,
    /// Segments past the tail's that the housekeeper keeps ready.
    pub segments_ahead: u64,
    /// Segments mapped for writing: the tail's and the one prepared ahead.
    pub window: Mutex<BTreeMap<u64, Arc<Segment>>>,
    /// Set when the flush policy is `Always`, read on the hot path.
    pub flush_always: AtomicBool,
    /// Everything before this position has been msynced by this handle.
    pub flushed_position: AtomicU64,
    pub process_slot: Option<usize>,
    pub level_watchers: Mutex<Vec<std::sync::mpsc::Sender<Level>>>,
    /// What recovery changed when this handle opened the journal.
    pub recovery: Mutex<Option<recovery::RecoveryReport>>,
    /// The level this handle's watchers were last told about.
    pub last_level: AtomicU32,
    /// Consumed segments kept for reuse while an exclusive publisher lives.
    pub recycling: Mutex<retention::Recycling>,
    /// Held while this handle creates a segment.
    segment_creation: Mutex<()>,
    /// The publisher lock of this handle's live `Publisher`s, if any.
    pub publisher_group: Mutex<std::sync::Weak<crate::publisher::PublisherGroup>>,
    lock_file: Option<Mutex<File>>,
    /// Set when `lock_for_publisher` waited `LOCK_PATIENCE` in vain.
    lock_stuck: AtomicBool,
    /// This handle's hold on the writers' lock (writable handles only): how
    /// other openers know a writer is alive.
    writer_lock: Option<WriterLock>,
    stopping: AtomicBool,
    housekeeper: Mutex<Option<JoinHandle<()>>>,
}

/// Which writers `Journal::open_as` lets in beside the new handle.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Writers {
    Any,
    OnlyThisOne,
}

/// Holds the journal lock (a mutex for this process plus `flock` for others).
pub(crate) struct JournalLock<'a> {
    file: MutexGuard<'a, File>,
}

impl Drop for JournalLock<'_> {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(&*self.file, rustix::fs::FlockOperation::Unlock);
    }
}

impl Journal {
    /// Opens the journal in `dir`, creating it (and the directory) if absent.
    ///
    /// When no other handle (in any process) has it open for writing, this
    /// one runs recovery first: see [`Journal::recovery_report`].
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<Journal> {
        Self::open_as(dir.as_ref(), config, Writers::Any)
    }

    /// Opens the journal as its only writer, holding every other writer out
    /// until dropped (`verify --repair`); `Error::InUse` if another has it open.
    pub(crate) fn open_alone(dir: &Path) -> Result<Journal> {
        Self::open_as(dir, Config::default(), Writers::OnlyThisOne)
    }

    fn open_as(dir: &Path, config: Config, writers: Writers) -> Result<Journal> {
        config.validate()?;
        let dir = dir.to_path_buf();
        let mode = config.file_mode_or_default();
        create_dir(&dir, mode)?;
        let lock_file = crate::mapped::open_lock_file(&dir, LOCK_FILE, mode)?;
        // Held through the whole open, so that no other opener probes the
        // writers' lock meanwhile; the guard taken below releases it.
        rustix::fs::flock(&lock_file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Error::io(dir.join(LOCK_FILE), "flock", e.into()))?;
        let meta = open_or_create_meta(&dir, &config)?;
        // Also after a creation that died between the metadata and this.
        create_dir(&cursor::cursor_dir(&dir), mode)?;
        if config.sets_limits() {
            let limits = config.apply_to(meta.limits());
            limits.validate(meta.segment_size)?;
            meta.set_limits(&limits);
            meta.flush()?;
        }
        let (writer_lock, alone) = WriterLock::acquire(&dir, mode)?;
        if writers == Writers::OnlyThisOne && !alone {
            return Err(Error::InUse { path: dir });
        }
        let writer_lock = Some(writer_lock);
        let inner = Shared::new(Inner::new(dir, meta, &config, Some(Mutex::new(lock_file)), writer_lock)?);
        {
            let _guard = inner.lock()?;
            if alone {
                let report = recovery::recover(&inner)?;
                if let Ok(mut slot) = inner.recovery.lock() {
                    *slot = Some(report);
                }
            }
            inner.meta.check_positions()?;
            inner.ensure_first_segment()?;
            if writers == Writers::Any
                && let Some(lock) = &inner.writer_lock
            {
                lock.share(&inner.dir)?;
            }
        }
        retention::refresh(&inner)?;
        // The first appends land in the tail's segment: fault it in now, so
        // they do not race the housekeeper for its pages (best effort).
        let _ = housekeeper::prepare(&inner, 0);
        housekeeper::start(&inner.inner);
        Ok(Journal { inner })
    }

    /// Opens an existing journal for reading only: no file is written, no
    /// recovery runs, and consumers cannot commit durable cursors.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Journal> {
        let dir = dir.as_ref().to_path_buf();
        let meta_path = dir.join(META_FILE);
        if !meta_path.exists() {
            return Err(Error::not_a_journal(&dir, format!("no {META_FILE} in the directory")));
        }
        crate::mapped::refuse_symlink(&meta_path)?;
        let meta = Meta::open(&meta_path, false)?;
        meta.check_positions()?;
        let inner = Inner::new(dir, meta, &Config::default(), None, None)?;
        Ok(Journal { inner: Shared::new(inner) })
    }

    /// A new publisher handle (cheap; clone it freely). Publishers in any
    /// number of threads and processes append at once; while an
    /// `ExclusivePublisher` exists their appends fail with
    /// `Error::ExclusivelyPublished`.
    pub fn publisher(&self) -> Publisher {
        Publisher::new(self.inner.clone())
    }

    /// The one publisher of this journal, in every process, until it is
    /// dropped: appends without a locked instruction (Aeron's
    /// `ExclusivePublication`). Fails with `Error::PublishersActive` while any
    /// `Publisher` that has appended is still alive (after waiting up to a
    /// second for them to go); `Publisher`s get `Error::ExclusivelyPublished`
    /// meanwhile.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let journal = backwater::Journal::open(dir.path(), backwater::Config::default().segment_size(1 << 20))?;
    /// let mut publisher = journal.exclusive_publisher()?;
    /// let first = publisher.offer(b"fast path")?;
    /// assert!(journal.publisher().offer(b"refused").is_err());
    /// drop(publisher);
    /// assert!(journal.publisher().offer(b"accepted").unwrap() > first);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn exclusive_publisher(&self) -> Result<ExclusivePublisher> {
        ExclusivePublisher::new(self.inner.clone())
    }

    /// The durable consumer `name`, resuming at its committed position; a new
    /// name starts at the earliest retained record. A writable consumer holds
    /// its cursor's writer lock while it lives: a second one of the same name,
    /// in any process, gets `Error::CursorInUse`.
    pub fn consumer(&self, name: &str) -> Result<Consumer> {
        Consumer::named(self.inner.clone(), name, true)
    }

    /// The durable consumer `name` if its cursor exists: like `consumer`,
    /// but fails with `Error::NoSuchCursor` instead of creating it (so a
    /// mistyped name cannot start a new cursor at the oldest record).
    pub fn existing_consumer(&self, name: &str) -> Result<Consumer> {
        Consumer::named(self.inner.clone(), name, false)
    }

    /// A consumer without a durable cursor, starting at the earliest retained
    /// record. It does not hold retention: if its data is deleted it gets
    /// `Error::Lost`.
    pub fn anonymous_consumer(&self) -> Consumer {
        Consumer::anonymous(self.inner.clone())
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The journal's id, chosen at random when it was created: a journal
    /// made anew at the same path has another one, so `(id, position)`
    /// names a record for good where the position alone restarts.
    pub fn id(&self) -> u64 {
        self.inner.identity.journal_id
    }

    pub fn segment_size(&self) -> u64 {
        self.inner.identity.segment_size
    }

    /// The largest record this journal takes (`segment_size / 8`).
    pub fn max_record_len(&self) -> usize {
        self.inner.max_payload
    }

    /// The position the next record will get.
    pub fn tail_position(&self) -> u64 {
        self.inner.meta.tail_position()
    }

    /// The position of the oldest retained record slot.
    pub fn first_position(&self) -> u64 {
        self.inner.meta.first_position().load(Ordering::Acquire)
    }

    pub fn is_read_only(&self) -> bool {
        !self.inner.writable()
    }

    /// The persisted limits in force.
    pub fn limits(&self) -> Limits {
        self.inner.meta.limits()
    }

    /// Changes the persisted limits of a running journal (every handle in
    /// every process sees them within one housekeeping tick).
    pub fn set_limits(&self, limits: Limits) -> Result<()> {
        self.inner.require_writable()?;
        limits.validate(self.segment_size())?;
        {
            let _guard = self.inner.lock()?;
            self.inner.meta.set_limits(&limits);
            self.inner.meta.flush()?;
        }
        retention::refresh(&self.inner)
    }

    /// Creates and faults in the tail's segment and `Config::segments_ahead`
    /// more, now, on this thread (the housekeeper does it in the background):
    /// for a publisher whose first burst must run at memory speed.
    pub fn prepare(&self) -> Result<()> {
        self.inner.require_writable()?;
        housekeeper::prepare(&self.inner, self.inner.segments_ahead)
    }

    /// Counters and levels for monitoring (shared by every process).
    pub fn stats(&self) -> crate::Stats {
        retention::stats(&self.inner)
    }

    /// A channel that receives the new level at every level transition.
    pub fn watch_level(&self) -> std::sync::mpsc::Receiver<Level> {
        let (sender, receiver) = std::sync::mpsc::channel();
        if let Ok(mut watchers) = self.inner.level_watchers.lock() {
            watchers.push(sender);
        }
        receiver
    }

    /// Forces everything committed so far (records, cursors, metadata) to
    /// stable storage.
    pub fn flush(&self) -> Result<()> {
        crate::flush::flush_all(&self.inner)
    }

    /// Runs one retention pass now: deletes the segments every durable cursor
    /// has moved past and recomputes the limits (the housekeeper does this
    /// every 100 ms on its own).
    pub fn apply_retention(&self) -> Result<()> {
        self.inner.require_writable()?;
        retention::refresh(&self.inner)?;
        retention::run(&self.inner)
    }

    /// What recovery changed when this handle opened the journal (`None` if
    /// it did not run: another writer was alive, or the handle is read-only).
    pub fn recovery_report(&self) -> Option<recovery::RecoveryReport> {
        self.inner.recovery.lock().ok().and_then(|report| report.clone())
    }

    /// Names of the durable cursors.
    pub fn cursor_names(&self) -> Result<Vec<String>> {
        cursor::list(&self.inner.dir)
    }

    /// Every durable cursor with its committed position and lag.
    pub fn cursors(&self) -> Result<Vec<CursorInfo>> {
        let tail = self.tail_position();
        let mut infos = Vec::new();
        for name in cursor::list(&self.inner.dir)? {
            let cursor = match CursorFile::open(&self.inner.dir, &name, self.inner.identity.journal_id, false) {
                Ok(cursor) => cursor,
                Err(Error::NoSuchCursor(_)) => continue,
                Err(other) => return Err(other),
            };
            let position = cursor.position();
            infos.push(CursorInfo {
                name,
                position,
                lag_bytes: tail.saturating_sub(position),
                committed_ns: cursor.updated_ns(),
                evicted: cursor.eviction(),
            });
        }
        Ok(infos)
    }

    /// When the journal was created, in ns since the epoch.
    pub fn created_ns(&self) -> u64 {
        self.inner.meta.created_ns
    }

    /// Deletes a durable cursor: it no longer holds retention. Refused with
    /// `Error::CursorInUse` while a consumer of it (any process) is open.
    pub fn delete_cursor(&self, name: &str) -> Result<()> {
        self.delete_cursor_with(name, false)
    }

    /// `delete_cursor`, even while a consumer of it is open: that consumer
    /// goes on, but its commits reach a deleted file and are lost, so the
    /// next consumer of the name starts anew at the oldest record.
    pub fn force_delete_cursor(&self, name: &str) -> Result<()> {
        self.delete_cursor_with(name, true)
    }

    fn delete_cursor_with(&self, name: &str, force: bool) -> Result<()> {
        self.inner.require_writable()?;
        let _guard = self.inner.lock()?;
        cursor::delete(&self.inner.dir, name, force)
    }

    /// The processes that have this journal open for writing: `(pid, alive)`.
    pub fn processes(&self) -> Vec<(u32, bool)> {
        process::list(&self.inner.meta)
    }

    /// The segment indexes on disk, oldest first.
    pub fn segment_indexes(&self) -> Result<Vec<u64>> {
        segment::list(&self.inner.dir, self.inner.identity.segment_size)
    }
}

/// A durable cursor as `Journal::cursors` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CursorInfo {
    pub name: String,
    pub position: u64,
    /// Bytes between the cursor and the tail.
    pub lag_bytes: u64,
    /// When it was last committed (ns since the epoch).
    pub committed_ns: u64,
    /// `Some((from, to))` if `EvictSlowest` detached it.
    pub evicted: Option<(u64, u64)>,
}

impl Inner {
    /// `lock` is the journal lock of a read-write handle; read-only handles
    /// have none, and that is what makes them read-only.
    fn new(
        dir: PathBuf,
        meta: Meta,
        config: &Config,
        lock: Option<Mutex<File>>,
        writer_lock: Option<WriterLock>,
    ) -> Result<Inner> {
        let writable = lock.is_some();
        if let Some(requested) = config.segment_size
            && requested != meta.segment_size
        {
            return Err(Error::SegmentSizeMismatch { path: dir, existing: meta.segment_size, requested });
        }
        let identity = SegmentIdentity { journal_id: meta.journal_id, segment_size: meta.segment_size };
        let process_slot = if writable { process::register(&meta) } else { None };
        let level = meta.level().load(Ordering::Acquire);
        Ok(Inner {
            max_payload: (meta.segment_size / 8) as usize,
            flush_always: AtomicBool::new(meta.limits().flush == crate::Flush::Always),
            flushed_position: AtomicU64::new(0),
            dir,
            meta,
            identity,
            handle_id: NEXT_HANDLE_ID.fetch_add(1, Ordering::Relaxed),
            file_mode: config.file_mode_or_default(),
            append_timeout: config.append_timeout,
            unblock_timeout: config.unblock_timeout_or_default(),
            segments_ahead: config.segments_ahead_or_default(),
            window: Mutex::new(BTreeMap::new()),
            process_slot,
            level_watchers: Mutex::new(Vec::new()),
            recovery: Mutex::new(None),
            last_level: AtomicU32::new(level),
            recycling: Mutex::new(retention::Recycling::default()),
            segment_creation: Mutex::new(()),
            publisher_group: Mutex::new(std::sync::Weak::new()),
            lock_file: lock,
            lock_stuck: AtomicBool::new(false),
            writer_lock,
            stopping: AtomicBool::new(false),
            housekeeper: Mutex::new(None),
        })
    }

    /// Whether this handle may write (it holds the journal lock file).
    pub fn writable(&self) -> bool {
        self.lock_file.is_some()
    }

    /// What frames appended through this handle carry as their owner: its
    /// slot in the process table + 1 (0 when the table was full).
    pub fn owner_tag(&self) -> u16 {
        self.process_slot.map_or(0, |slot| slot as u16 + 1)
    }

    pub fn require_writable(&self) -> Result<()> {
        if self.writable() { Ok(()) } else { Err(Error::ReadOnly { path: self.dir.clone() }) }
    }

    /// The journal lock for work on a publisher's path (making room,
    /// creating a segment): waits at most `LOCK_PATIENCE` for it, and not at
    /// all once it was found stuck (held that long: a process stopped while
    /// holding it, by SIGSTOP or a debugger), until it is free again. So a
    /// publisher never blocks on another process; the caller turns
    /// `Error::JournalBusy` into back-pressure.
    pub fn lock_for_publisher(&self) -> Result<JournalLock<'_>> {
        let Some(lock) = &self.lock_file else { return Err(Error::ReadOnly { path: self.dir.clone() }) };
        let patience = if self.lock_stuck.load(Ordering::Acquire) { Duration::ZERO } else { LOCK_PATIENCE };
        let deadline = Instant::now() + patience;
        let mut idle = crate::idle::Idle::default();
        loop {
            let file = match lock.try_lock() {
                Ok(file) => Some(file),
                Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            };
            if let Some(file) = file {
                match rustix::fs::flock(&*file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                    Ok(()) => {
                        self.lock_stuck.store(false, Ordering::Release);
                        return Ok(JournalLock { file });
                    }
                    Err(rustix::io::Errno::WOULDBLOCK) => {}
                    Err(e) => return Err(Error::io(self.dir.join(LOCK_FILE), "flock", e.into())),
                }
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
            Some(lock) => lock_exclusive(lock),
            None => Err(Error::ReadOnly { path: self.dir.clone() }),
        }
    }

    pub fn segment_size(&self) -> u64 {
        self.identity.segment_size
    }

    /// Maps segment `index` for reading (the window's mapping when it has one).
    pub fn read_segment(&self, index: u64) -> Result<Arc<Segment>> {
        if let Some(segment) = self.window_get(index) {
            return Ok(segment);
        }
        Ok(Arc::new(Segment::open(&self.dir, index, self.identity, self.writable())?))
    }

    fn window_get(&self, index: u64) -> Option<Arc<Segment>> {
        self.window.lock().ok()?.get(&index).cloned()
    }

    /// The mapping of segment `index` for writing, creating the file if it does
    /// not exist yet (the housekeeper normally has, ahead of need).
    pub fn write_segment(&self, index: u64) -> Result<Arc<Segment>> {
        if let Some(segment) = self.window_get(index) {
            return Ok(segment);
        }
        if index > self.meta.tail.max_index() {
            return Err(Error::PositionsExhausted { path: self.dir.clone(), position: index * self.segment_size() });
        }
        match Segment::open(&self.dir, index, self.identity, true) {
            Ok(segment) => Ok(self.window_insert(index, Arc::new(segment))),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                self.create_segment(index)
            }
            Err(other) => Err(other),
        }
    }

    /// Creates segment `index`, from a spare when this handle has one. One
    /// thread of the handle at a time: a publisher reaching a segment the
    /// housekeeper is building waits for it rather than building another.
    fn create_segment(&self, index: u64) -> Result<Arc<Segment>> {
        let _one_at_a_time = self.segment_creation.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(segment) = self.window_get(index) {
            return Ok(segment);
        }
        let rebuilt = retention::rebuilt_spare(self, index);
        let _guard = match self.lock_for_publisher() {
            Ok(guard) => guard,
            Err(busy) => {
                rebuilt.into_iter().for_each(|spare| retention::return_spare(self, spare));
                return Err(busy);
            }
        };
        if let Err(no_room) = retention::check_room_for_segment(self, index, rebuilt.is_some()) {
            rebuilt.into_iter().for_each(|spare| retention::return_spare(self, spare));
            return Err(no_room);
        }
        let segment = retention::create_segment(self, index, rebuilt)?;
        Ok(self.window_insert(index, Arc::new(segment)))
    }

    /// Adds a mapping to the window, keeping only the tail's neighbourhood mapped.
    pub fn window_insert(&self, index: u64, segment: Arc<Segment>) -> Arc<Segment> {
        let Ok(mut window) = self.window.lock() else { return segment };
        let tail_index = self.meta.tail_index();
        window.retain(|&i, _| i + 1 >= tail_index.min(index));
        Arc::clone(window.entry(index).or_insert(segment))
    }

    /// Creates segment 0 of a new journal, or the tail's segment if it is
    /// missing (the caller holds the lock).
    fn ensure_first_segment(&self) -> Result<()> {
        let tail_index = self.meta.tail_index();
        if !segment::path_of(&self.dir, tail_index, self.segment_size()).exists() {
            let created = Segment::create(&self.dir, tail_index, self.identity, self.file_mode)?;
            self.window_insert(tail_index, Arc::new(created));
        }
        Ok(())
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

    /// Stops the housekeeper and waits for it (called when the last handle goes).
    fn stop_housekeeper(&self) {
        self.stopping.store(true, Ordering::Release);
        let handle = self.housekeeper.lock().ok().and_then(|mut slot| slot.take());
        if let Some(handle) = handle {
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        retention::remove_spares(self);
        let _ = retention::reclaim_retired(self);
        if let Some(writer_lock) = &self.writer_lock {
            // Under the journal lock: no opener probes while this handle lets
            // go of its hold and flushes. The last writer to close flushes
            // whatever the policy, so that the next recovery needs to look
            // only past that point.
            let _guard = self.lock();
            let last_writer = writer_lock.release(&self.dir);
            if self.meta.limits().flush != crate::Flush::Never || last_writer.is_some() {
                let _ = crate::flush::flush_all(self);
            }
        }
        process::unregister(&self.meta, self.process_slot);
    }
}

fn lock_exclusive(lock: &Mutex<File>) -> Result<JournalLock<'_>> {
    let file = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    rustix::fs::flock(&*file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| Error::io(LOCK_FILE, "flock", e.into()))?;
    Ok(JournalLock { file })
}

fn create_dir(dir: &Path, file_mode: u32) -> Result<()> {
    if dir.exists() {
        return Ok(());
    }
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(dir_mode(file_mode))
        .create(dir)
        .map_err(|e| Error::io(dir, "create directory", e))
}

/// Directories get the files' bits plus execute wherever read is granted
/// (`0o640` → `0o750`).
fn dir_mode(file_mode: u32) -> u32 {
    file_mode | ((file_mode & 0o444) >> 2)
}

fn open_or_create_meta(dir: &Path, config: &Config) -> Result<Meta> {
    let path = dir.join(META_FILE);
    crate::mapped::refuse_symlink(&path)?;
    if !path.exists() {
        refuse_foreign_directory(dir)?;
        config.apply_to(Limits::default()).validate(config.segment_size_or_default())?;
        let new = NewJournal {
            segment_size: config.segment_size_or_default(),
            journal_id: random_id(),
            created_ns: crate::frame::now_ns(),
            header_len: SEGMENT_HEADER_LEN,
            limits: config.apply_to(Limits::default()),
        };
        let mode = config.file_mode_or_default();
        crate::mapped::create_file(dir, META_FILE, meta::META_LEN as u64, mode, |file| Meta::initialize(file, &new))?;
    }
    Meta::open(&path, true)
}

/// A directory without metadata but with other files is not ours to fill.
fn refuse_foreign_directory(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, "read directory", e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name != LOCK_FILE && !name.starts_with(".tmp-") {
            return Err(Error::not_a_journal(
                dir,
                format!("it holds '{name}' but no {META_FILE}; use an empty or new directory"),
            ));
        }
    }
    Ok(())
}

/// A journal id: unique enough to tell journals apart (time, pid, address entropy).
fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(crate::frame::now_ns());
    hasher.write_u32(std::process::id());
    hasher.finish() | 1
}
