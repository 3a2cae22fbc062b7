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
use crate::{append_count, capacity, housekeeper, process, recovery, retention, window};

/// An open journal. Cheap to share (`Clone + Send + Sync`): publishers and
/// consumers made from it keep the journal open for as long as they live.
///
/// Open one with [`Journal::open`] (read-write, creating it if absent) or
/// [`Journal::open_read_only`]; append through a [`Publisher`] (any number,
/// any threads and processes) or one [`ExclusivePublisher`]; read through
/// [`Consumer`]s; watch it with [`Journal::stats`] and [`Journal::watch_level`].
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
    /// one runs recovery first: see [`Journal::recovery_report`]. Persisted
    /// settings that `config` sets explicitly are written to the journal's
    /// [`Limits`] (see [`Config`]); this handle also starts a housekeeper
    /// thread that prepares segments, runs retention and flushes.
    ///
    /// # Errors
    /// - [`Error::InvalidConfig`] when `config` fails [`Config::validate`], or its
    ///   limits do not fit the existing journal's segment size.
    /// - [`Error::SegmentSizeMismatch`] when the journal exists with another
    ///   segment size than [`Config::segment_size`] asked for.
    /// - [`Error::NotAJournal`] when the directory holds other files but no
    ///   journal, or the metadata is not a journal's.
    /// - [`Error::NewerFormat`] when it was written by a newer backwater.
    /// - [`Error::Corrupt`] when a segment header (or the metadata's positions)
    ///   fails its checks.
    /// - [`Error::InUse`] while a [`Journal::repair`] has the journal to itself.
    /// - [`Error::Io`] when creating, locking or mapping a file failed.
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<Journal> {
        Self::open_as(dir.as_ref(), config, Writers::Any)
    }

    /// Opens the journal as its only writer, holding every other writer out
    /// until dropped (`verify --repair`); [`Error::InUse`] if another has it open.
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
        create_dir(&dir.join(crate::process::PROCESS_DIR), mode)?;
        if config.sets_limits() {
            let limits = config.apply_to(meta.limits());
            limits.validate(meta.segment_size)?;
            meta.set_limits(&limits);
            meta.flush()?;
        }
        // A journal that compresses needs a build that can (feature `compression`).
        meta.limits().compression.validate()?;
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
                // Count shards still taken were held by writers that died.
                append_count::free_all(&inner.meta);
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
        crate::compressor::start(inner.state());
        Ok(Journal { inner, recovery })
    }

    /// Opens an existing journal for reading only: no file is written, no
    /// recovery runs, no housekeeper starts, and consumers cannot commit
    /// durable cursors. Every write through it fails with [`Error::ReadOnly`].
    ///
    /// # Errors
    /// [`Error::NotAJournal`] when `dir` has no journal metadata (nothing is
    /// created); [`Error::NewerFormat`], [`Error::Corrupt`] or [`Error::Io`]
    /// when the metadata cannot be read.
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
    /// [`ExclusivePublisher`] exists their appends fail with
    /// [`Error::ExclusivelyPublished`]. Making one never fails: the checks
    /// come with the first append (a read-only handle's publisher gets
    /// [`Error::ReadOnly`]).
    pub fn publisher(&self) -> Publisher {
        Publisher::new(self.inner.clone())
    }

    /// The one publisher of this journal, in every process, until it is
    /// dropped: appends without a locked instruction (Aeron's
    /// `ExclusivePublication`). [`Publisher`]s get
    /// [`Error::ExclusivelyPublished`] meanwhile.
    ///
    /// # Errors
    /// - [`Error::PublishersActive`] while any [`Publisher`] that has appended
    ///   (in any process) is still alive, or another [`ExclusivePublisher`]
    ///   exists, after waiting up to a second for them to go.
    /// - [`Error::ReadOnly`] on a handle from [`Journal::open_read_only`].
    /// - [`Error::Io`], [`Error::JournalBusy`], [`Error::PositionsExhausted`],
    ///   [`Error::BackPressured`] when taking the publisher lock, or mapping
    ///   (or creating) the tail's segment, failed.
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
    /// in any process, gets [`Error::CursorInUse`]. On a read-only handle the
    /// cursor must exist already, as with [`Journal::existing_consumer`].
    ///
    /// # Errors
    /// - [`Error::BadCursorName`] when `name` is empty, longer than 64 bytes,
    ///   starts with `.` or has characters other than `[A-Za-z0-9._-]`.
    /// - [`Error::CursorInUse`] while another consumer of `name` is open.
    /// - [`Error::NoSuchCursor`] only on a read-only handle, for a name that
    ///   has no cursor.
    /// - [`Error::Corrupt`] when the cursor does not point at a record.
    /// - [`Error::NotAJournal`], [`Error::NewerFormat`], [`Error::Io`] when the
    ///   cursor file cannot be created or read.
    pub fn consumer(&self, name: &str) -> Result<Consumer> {
        Consumer::named(self.inner.clone(), name, true)
    }

    /// The durable consumer `name` if its cursor exists: like
    /// [`Journal::consumer`], but fails with [`Error::NoSuchCursor`] instead of
    /// creating it (so a mistyped name cannot start a new cursor at the
    /// oldest record).
    ///
    /// # Errors
    /// [`Error::NoSuchCursor`] when there is no cursor `name`; otherwise those
    /// of [`Journal::consumer`].
    pub fn existing_consumer(&self, name: &str) -> Result<Consumer> {
        Consumer::named(self.inner.clone(), name, false)
    }

    /// A consumer without a durable cursor, starting at the earliest retained
    /// record. It does not hold retention: if its data is deleted it gets
    /// [`Error::Lost`]. Its [`Consumer::commit`] does nothing.
    pub fn anonymous_consumer(&self) -> Consumer {
        Consumer::anonymous(self.inner.clone())
    }

    /// The journal's directory, as given to [`Journal::open`].
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The journal's id, chosen at random when it was created: a journal
    /// made anew at the same path has another one, so `(id, position)`
    /// names a record for good where the position alone restarts.
    pub fn id(&self) -> u64 {
        self.inner.identity.journal_id
    }

    /// The size of every segment file in bytes, fixed when the journal was
    /// created ([`Config::segment_size`]).
    pub fn segment_size(&self) -> u64 {
        self.inner.identity.segment_size
    }

    /// The largest record this journal takes, in bytes (`segment_size / 8`);
    /// a larger one is [`Error::RecordTooLarge`].
    pub fn max_record_len(&self) -> usize {
        self.inner.max_payload
    }

    /// The position the next record will get (shared by every process).
    pub fn tail_position(&self) -> u64 {
        self.inner.meta.tail_position()
    }

    /// The position of the oldest retained record slot: where
    /// [`Seek::Start`](crate::Seek::Start) and a new consumer begin.
    pub fn first_position(&self) -> u64 {
        self.inner.meta.first_position().load(Ordering::Acquire)
    }

    /// Whether this handle was opened with [`Journal::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        !self.inner.writable()
    }

    /// The persisted limits in force.
    pub fn limits(&self) -> Limits {
        self.inner.meta.limits()
    }

    /// Changes the persisted limits of a running journal. Every publisher,
    /// through any handle in any process, follows a new flush policy from
    /// its next commit ([`Flush::Always`](crate::Flush::Always): an append
    /// that starts after this returns is on the media when it returns); a
    /// new interval is taken up at each handle's next housekeeping tick.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let journal = backwater::Journal::open(dir.path(), backwater::Config::default().segment_size(1 << 20))?;
    /// use backwater::WhenFull;
    /// let mut limits = journal.limits();
    /// limits.max_disk_bytes = 32 << 20;
    /// limits.when_full = WhenFull::DropOldest;
    /// journal.set_limits(limits)?;
    /// assert_eq!(journal.limits().when_full, WhenFull::DropOldest);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `limits` fail [`Limits::validate`] for
    /// this journal's segment size (nothing changes); [`Error::ReadOnly`] on a
    /// read-only handle; [`Error::Io`] when the metadata cannot be flushed or
    /// the filesystem's free space cannot be read.
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

    /// Creates and faults in the tail's segment and
    /// [`Config::segments_ahead`] more, now, on this thread (the housekeeper
    /// does it in the background): for a publisher whose first burst must run
    /// at memory speed.
    ///
    /// Prepared segments count against the budget. Under
    /// [`WhenFull::DropOldest`](crate::WhenFull::DropOldest) and
    /// [`WhenFull::EvictSlowest`](crate::WhenFull::EvictSlowest), once a
    /// publisher of this handle has moved the tail into the budget's last
    /// segment, the oldest segment goes to make room for the segment after
    /// the tail's, as the housekeeper does: the drop that publisher would
    /// make at the high watermark, one step early, once per rotation. A
    /// handle with no publisher appending never drops anything here.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] on a read-only handle; [`Error::BackPressured`]
    /// when the budget has no room for a segment (beyond the early drop,
    /// segments ahead only use room there is); [`Error::JournalBusy`],
    /// [`Error::PositionsExhausted`] or [`Error::Io`] when one cannot be
    /// created.
    pub fn prepare(&self) -> Result<()> {
        self.inner.require_writable()?;
        housekeeper::prepare(&self.inner, self.inner.segments_ahead)
    }

    /// Counters and levels for monitoring (shared by every process); see
    /// [`Stats`](crate::Stats) for an example.
    pub fn stats(&self) -> crate::Stats {
        capacity::stats(&self.inner)
    }

    /// A channel that receives the new [`Level`] at every level transition
    /// this handle sees: those its own publishers cause at once, and those
    /// caused elsewhere (other handles, consumers freeing space) when its
    /// housekeeper next recomputes the level (every 100 ms). A read-only
    /// handle has no housekeeper, so its channel stays silent. The channel
    /// is unbounded: drain it, or drop the receiver to stop watching.
    ///
    /// ```
    /// use backwater::{Config, Journal, Level, OfferError};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let journal = Journal::open(dir.path(), Config::default()
    ///     .segment_size(64 << 10)
    ///     .max_disk_bytes(256 << 10)
    ///     .min_free_disk(0))?;
    /// let levels = journal.watch_level();
    /// let publisher = journal.publisher();
    /// // Nobody consumes: fill the journal until it pushes back.
    /// loop {
    ///     match publisher.offer(&[7u8; 1000]) {
    ///         Ok(_) => {}
    ///         Err(OfferError::BackPressured { .. }) => break,
    ///         Err(other) => return Err(other.into()),
    ///     }
    /// }
    /// let seen: Vec<Level> = levels.try_iter().collect();
    /// assert_eq!(seen.last(), Some(&Level::BackPressured));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn watch_level(&self) -> std::sync::mpsc::Receiver<Level> {
        self.inner.watch_level()
    }

    /// Forces everything committed so far (records, cursors, metadata) to
    /// stable storage, whatever the [`Flush`](crate::Flush) policy. Does
    /// nothing on a read-only handle.
    ///
    /// # Errors
    /// [`Error::Io`] when an msync or fsync fails (what it covered may not
    /// survive a power loss).
    pub fn flush(&self) -> Result<()> {
        crate::flush::flush_all(&self.inner)
    }

    /// Runs one retention pass now: deletes the segments every attached
    /// durable cursor has moved past (beyond the replay window of
    /// [`Limits::retain_bytes`] and [`Limits::retain_for`]; none while the
    /// journal has no attached durable cursor) and recomputes the limits (the
    /// housekeeper does this every 100 ms on its own). Under a dropping
    /// [`WhenFull`] policy at the high watermark it also makes room.
    ///
    /// [`WhenFull`]: crate::WhenFull
    ///
    /// # Errors
    /// [`Error::ReadOnly`] on a read-only handle; [`Error::Io`] (and the
    /// cursor errors of [`Journal::cursors`]) when files cannot be read,
    /// flushed or deleted.
    pub fn apply_retention(&self) -> Result<()> {
        self.inner.require_writable()?;
        capacity::refresh(&self.inner)?;
        retention::run(&self.inner)
    }

    /// Runs the housekeeper's compress step now, on this thread: while fill
    /// is at or above [`Watermarks::compress`](crate::Watermarks::compress)
    /// and [`Limits::compression`] is on, compresses sealed segments that no
    /// reader is inside, oldest first. Waits for a step another handle (or
    /// this one's housekeeper) is taking. Returns how many it compressed (0
    /// when compression is off, fill is below the watermark, or nothing can
    /// be compressed now, other handles' work included).
    ///
    /// ```
    /// use backwater::{Compression, Config, Journal};
    /// # let dir = tempfile::tempdir()?;
    /// let journal = Journal::open(dir.path(), Config::default()
    ///     .segment_size(64 << 10)
    ///     .max_disk_bytes(8 << 20)
    ///     .min_free_disk(0)
    ///     .compression(Compression::Zstd { level: 3 })
    ///     .compress_at(0.05))?;
    /// let publisher = journal.publisher();
    /// for n in 0..20_000u32 {
    ///     publisher.append(format!("{{\"n\":{n},\"level\":\"info\"}}").as_bytes())?;
    /// }
    /// journal.compress_sealed()?;                     // the housekeeper would, too
    /// let stats = journal.stats().compression;
    /// assert!(stats.segments > 0 && stats.ratio() > 4.0);
    /// let mut consumer = journal.consumer("reader")?;  // reads through them
    /// let mut read = 0;
    /// while consumer.poll(|_| read += 1, 4096)? > 0 {}
    /// assert_eq!(read, 20_000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ReadOnly`] on a read-only handle; [`Error::Io`] when a file
    /// cannot be read, written, synced or renamed.
    pub fn compress_sealed(&self) -> Result<u64> {
        self.inner.require_writable()?;
        capacity::refresh(&self.inner)?;
        let mut compressed = 0;
        while crate::compressor::run(&self.inner, crate::compressor::Turn::Wait)? {
            compressed += 1;
        }
        Ok(compressed)
    }

    /// What recovery changed when this handle opened the journal (`None` if
    /// it did not run: another writer was alive, or the handle is read-only).
    pub fn recovery_report(&self) -> Option<RecoveryReport> {
        self.recovery.as_deref().cloned()
    }

    /// Names of the durable cursors.
    ///
    /// # Errors
    /// [`Error::Io`] when the cursor directory cannot be read.
    pub fn cursor_names(&self) -> Result<Vec<String>> {
        cursor::list(&self.inner.dir)
    }

    /// Every durable cursor with its committed position and lag.
    ///
    /// # Errors
    /// [`Error::Io`] when the cursor directory or a cursor file cannot be
    /// read; [`Error::NotAJournal`] or [`Error::NewerFormat`] for a cursor
    /// file that is not this journal's or is newer. (A cursor deleted while
    /// listing is skipped.)
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

    /// Deletes a durable cursor: it no longer holds retention.
    ///
    /// # Errors
    /// [`Error::CursorInUse`] while a consumer of it (any process) is open;
    /// [`Error::NoSuchCursor`] when there is none; [`Error::BadCursorName`];
    /// [`Error::ReadOnly`] on a read-only handle; [`Error::Io`].
    pub fn delete_cursor(&self, name: &str) -> Result<()> {
        self.delete_cursor_with(name, false)
    }

    /// [`Journal::delete_cursor`], even while a consumer of it is open: that
    /// consumer goes on, but its commits reach a deleted file and are lost, so
    /// the next consumer of the name starts anew at the oldest record.
    ///
    /// # Errors
    /// Those of [`Journal::delete_cursor`] but [`Error::CursorInUse`].
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
    /// [`Error::InUse`] while another handle has the journal open for
    /// writing; the errors of [`Journal::open`]; [`Error::Io`] while
    /// rewriting frames.
    pub fn repair(dir: impl AsRef<Path>) -> Result<RecoveryReport> {
        let journal = Journal::open_alone(dir.as_ref())?;
        let recovered = journal.recovery_report().unwrap_or_default();
        recovery::repair(&journal.inner, recovered)
    }

    /// The processes that have this journal open for writing, from the
    /// metadata's process table (one slot per writable handle, 64 at most):
    /// `(pid, alive)`. Alive means the slot's lock (`processes/NN.lock`) is
    /// held, by a live handle in any PID namespace (the pid is as that
    /// handle's namespace sees it); a dead one is a handle whose process
    /// exited without closing it. Where the lock cannot be probed (no
    /// permission), alive is what this namespace's `/proc` shows.
    pub fn processes(&self) -> Vec<(u32, bool)> {
        process::list(&self.inner.dir, &self.inner.meta)
    }

    /// The segment indexes on disk, oldest first (segment `i` holds positions
    /// `i * segment_size ..`).
    ///
    /// # Errors
    /// [`Error::Io`] when the directory cannot be read; [`Error::NotAJournal`]
    /// for a segment file name that is not a multiple of the segment size.
    pub fn segment_indexes(&self) -> Result<Vec<u64>> {
        segment::list(&self.inner.dir, self.inner.identity.segment_size)
    }
}

/// A durable cursor as [`Journal::cursors`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CursorInfo {
    /// The cursor's name, as given to [`Journal::consumer`].
    pub name: String,
    /// The committed position: the next record its consumer will read.
    pub position: u64,
    /// Bytes between the cursor and the tail.
    pub lag_bytes: u64,
    /// When it was last committed (ns since the epoch).
    pub committed_ns: u64,
    /// `Some((from, to))` if [`WhenFull::EvictSlowest`](crate::WhenFull::EvictSlowest)
    /// detached it: positions `from..to` were deleted unread. `None` once
    /// [`Consumer::reattach`] re-attaches it.
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
