//! `Journal`: the user's handle on a journal directory.
//!
//! Owns: opening (creating the directory and metadata, taking the writers'
//! lock, running recovery when no other writer is alive, starting the
//! housekeeper) and the public operations on a journal: making publishers
//! and consumers, limits, stats, cursors, flush, retention on demand,
//! repair. The state it opens is `state::JournalState`, shared through a
//! `handle::Handle` by every publisher and consumer made from it; closing is
//! the handle's lifetime's work.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::config::{Config, Limits};
use crate::consumer::Consumer;
use crate::cursor::{self, CursorFile};
use crate::error::{Error, Result};
use crate::exclusive::ExclusivePublisher;
use crate::handle::Handle;
use crate::meta::{self, Level, META_FILE, Meta, NewJournal};
use crate::publisher::Publisher;
use crate::recovery::RecoveryReport;
use crate::segment::{self, SEGMENT_HEADER_LEN};
use crate::state::{JournalState, LOCK_FILE};
use crate::writers::WriterLock;
use crate::{capacity, housekeeper, process, recovery, retention, window};

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
    pub(crate) inner: Handle,
    /// What recovery changed when this handle opened the journal.
    recovery: Option<Arc<RecoveryReport>>,
}

/// Which writers `Journal::open_as` lets in beside the new handle.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Writers {
    Any,
    OnlyThisOne,
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
        let inner = Handle::new(JournalState::new(dir, meta, &config, Some(Mutex::new(lock_file)), writer_lock)?);
        let mut recovery = None;
        {
            let _guard = inner.lock()?;
            if alone {
                recovery = Some(Arc::new(recovery::recover(&inner)?));
            }
            inner.meta.check_positions()?;
            window::ensure_first_segment(&inner)?;
            if writers == Writers::Any
                && let Some(lock) = inner.writer_lock()
            {
                lock.share(&inner.dir)?;
            }
        }
        capacity::refresh(&inner)?;
        // The first appends land in the tail's segment: fault it in now, so
        // they do not race the housekeeper for its pages (best effort).
        let _ = housekeeper::prepare(&inner, 0);
        housekeeper::start(inner.state());
        Ok(Journal { inner, recovery })
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
        let inner = JournalState::new(dir, meta, &Config::default(), None, None)?;
        Ok(Journal { inner: Handle::new(inner), recovery: None })
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
        capacity::refresh(&self.inner)
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
        capacity::stats(&self.inner)
    }

    /// A channel that receives the new level at every level transition.
    pub fn watch_level(&self) -> std::sync::mpsc::Receiver<Level> {
        self.inner.watch_level()
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
        capacity::refresh(&self.inner)?;
        retention::run(&self.inner)
    }

    /// What recovery changed when this handle opened the journal (`None` if
    /// it did not run: another writer was alive, or the handle is read-only).
    pub fn recovery_report(&self) -> Option<RecoveryReport> {
        self.recovery.as_deref().cloned()
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

    /// `verify --repair`: opens the journal in `dir` as its only writer
    /// (which recovers the tail), then pads every hole and replaces every
    /// damaged frame in every segment with padding. Returns everything it
    /// changed.
    ///
    /// # Errors
    /// `Error::InUse` while another handle has the journal open for writing;
    /// I/O errors.
    pub fn repair(dir: impl AsRef<Path>) -> Result<RecoveryReport> {
        let journal = Journal::open_alone(dir.as_ref())?;
        let recovered = journal.recovery_report().unwrap_or_default();
        recovery::repair(&journal.inner, recovered)
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
