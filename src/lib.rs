//! backwater: a disk-buffered publisher journal.
//!
//! Publishers append records at memory speed into an append-only log of
//! fixed-size, memory-mapped segment files; any number of independent
//! consumers, in this process or others, read it at their own pace from their
//! own durable cursors. When consumers fall behind the disk absorbs it; when
//! the disk budget nears its end, watermarks turn that into back-pressure the
//! publisher can act on.
//!
//! ```
//! use backwater::{Config, Journal, OfferError, Priority, WhenFull};
//!
//! let dir = tempfile::tempdir()?;
//! let journal = Journal::open(dir.path(), Config::default()
//!     .segment_size(1 << 20)
//!     .max_disk_bytes(64 << 20)
//!     .when_full(WhenFull::Block))?;          // creates the journal if absent
//! let publisher = journal.publisher();      // Clone + Send + Sync
//! let first: u64 = publisher.offer(b"record")?;   // never blocks
//! publisher.append(b"record")?;                   // waits under back-pressure
//! match publisher.offer_with(Priority::Low, b"debug") {
//!     Ok(_) | Err(OfferError::Dropped { .. }) => {}  // shed above the shed watermark
//!     Err(other) => return Err(other.into()),
//! }
//! let mut consumer = journal.consumer("indexer")?;   // durable; resumes where it left off
//! let mut positions = Vec::new();
//! let read = consumer.poll(|record| positions.push(record.position()), 256)?;
//! assert_eq!(read, 3);
//! assert_eq!(positions[0], first);
//! consumer.commit()?;                                 // persists the cursor
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Journal`] opens a directory ([`Config`] says how; its [`Limits`] are the
//! settings every process shares). [`Publisher`] appends, and its
//! [`OfferError`] says why an offer was refused; [`Consumer`] reads
//! [`Record`]s and commits its position. [`Journal::stats`] ([`Stats`]) and
//! [`Journal::watch_level`] show how full the journal is and at which
//! [`Level`]. Everything else that fails is an [`Error`]. The [`inspect`],
//! [`recovery`], [`frame`] and [`segment`] modules are for tools that look
//! inside a journal.
//!
//! Waiting costs no CPU: [`Consumer::poll_wait`] and a blocking
//! [`Publisher::append`] sleep in the kernel on a futex in the shared
//! metadata, woken by the commit (or the level change) they wait for, in any
//! process. For `async` code, [`Consumer::poll_async`],
//! [`Publisher::append_async`] and [`ExclusivePublisher::append_async`] wait
//! without blocking the executor's thread, on any runtime.
//!
//! A single appending thread can take [`Journal::exclusive_publisher`] instead:
//! the same contract with no locked instruction per record, and consumed
//! segments recycled as the next ones.
//!
//! The on-disk format is documented byte by byte in `docs/FORMAT.md`.

#![warn(missing_docs)]

mod append_count;
mod appender;
mod capacity;
pub mod compressed;
mod compressor;
mod config;
mod conflate;
mod consumer;
mod cursor;
mod error;
mod exclusive;
mod file_header;
mod flush;
pub mod frame;
mod handle;
mod housekeeper;
mod idle;
pub mod inspect;
mod journal;
mod mapped;
mod meta;
pub mod metrics;
mod naming;
mod process;
mod publisher;
mod publisher_lock;
mod record;
pub mod recovery;
mod reserving;
mod retention;
pub mod segment;
mod state;
#[doc(hidden)]
pub mod sync_trace;
mod thread_cache;
mod waiter;
mod wake;
mod window;
mod writers;

pub use config::{
    Compression, Config, DEFAULT_SEGMENT_SIZE, Flush, Limits, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, Priority, Watermarks,
    WhenFull,
};
pub use conflate::Conflated;
pub use consumer::{Consumer, Seek};
pub use error::{Error, OfferError, Result};
pub use exclusive::ExclusivePublisher;
pub use frame::FORMAT_VERSION;
pub use journal::{CursorInfo, Journal};
pub use meta::Level;
pub use publisher::{Claim, Publisher};
pub use record::Record;
pub use reserving::ReservingPublisher;

/// Counters and levels of a journal, shared by every process that has it
/// open: a snapshot from [`Journal::stats`].
///
/// The counters count from the journal's creation, in every process; `fill`
/// and `level` are what the watermarks compare against.
///
/// ```
/// use backwater::{Config, Journal, Level};
///
/// let dir = tempfile::tempdir()?;
/// let journal = Journal::open(dir.path(), Config::default()
///     .segment_size(1 << 20)
///     .max_disk_bytes(8 << 20)
///     .min_free_disk(0))?;
/// journal.publisher().append(&[0u8; 1000])?;
///
/// let stats = journal.stats();
/// assert_eq!(stats.appended, 1);
/// assert!(stats.fill > 0.0 && stats.fill < 0.80);  // below the shed watermark
/// assert_eq!(stats.level, Level::Normal);
/// assert!(stats.capacity <= 8 << 20);
/// println!("{:.1}% of {} bytes, {}", stats.fill * 100.0, stats.capacity, stats.level.name());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// Records committed.
    pub appended: u64,
    /// Low-priority records shed above the shed watermark
    /// ([`OfferError::Dropped`], and [`Error::Dropped`] from the blocking appends).
    pub dropped_low: u64,
    /// Offers refused with [`OfferError::BackPressured`], plus blocking
    /// appends that had to wait (each counted once, however long it waited).
    pub back_pressured: u64,
    /// Cursors detached by [`WhenFull::EvictSlowest`].
    pub evictions: u64,
    /// Unread bytes deleted by [`WhenFull::DropOldest`] or
    /// [`WhenFull::EvictSlowest`], plus bytes recovery cut after a power loss
    /// ([`RecoveryReport::lost_bytes`](recovery::RecoveryReport::lost_bytes)).
    pub lost_bytes: u64,
    /// Claims that a consumer turned into padding after
    /// [`Config::unblock_timeout`]: held too long, or left by a publisher
    /// that died mid-record. (A [`Claim`] its owner aborts or drops is not
    /// counted, nor the rest of a [`ReservingPublisher`]'s reservation that
    /// a consumer lapsed: it held no record.)
    pub unblocked: u64,
    /// Bytes from the oldest segment's start to the tail, over `capacity`: the
    /// fraction of capacity in use (0.0 to 1.0) that the [`Watermarks`] are
    /// compared with.
    pub fill: f64,
    /// The smaller of the budget ([`Limits::max_disk_bytes`]) and what the
    /// filesystem can give (the bytes the journal holds plus the free space
    /// above [`Limits::min_free_disk`]), in bytes, as last measured by a
    /// writable handle (every 100 ms).
    pub capacity: u64,
    /// The level `fill` puts the journal at, with the hysteresis of
    /// [`Watermarks::resume`].
    pub level: Level,
    /// The position of the oldest retained record slot
    /// ([`Journal::first_position`]).
    pub first_position: u64,
    /// The position the next record will get ([`Journal::tail_position`]).
    pub tail_position: u64,
    /// Bytes held by segment files, including prepared segments, spares kept
    /// for recycling and deleted segments a reader still has mapped (0 if the
    /// directory could not be listed).
    pub disk_bytes: u64,
    /// Of `disk_bytes`, deleted segments that a reader still has mapped
    /// (renamed `.tmp-retired-N` until it lets go): they keep their disk,
    /// but not against the budget, so that idle readers cannot wedge a
    /// ring. At most one segment per reader; the rest of `disk_bytes` stays
    /// within [`Limits::max_disk_bytes`].
    pub retired_bytes: u64,
    /// Compressed segments now, and what was compressed since creation.
    pub compression: CompressionStats,
    /// The pid of the process whose [`ExclusivePublisher`] has the journal's
    /// appends (or that died holding it, until the next publisher settles it).
    pub exclusive_publisher: Option<u32>,
}

impl Stats {
    /// The disk that counts against [`Limits::max_disk_bytes`]: segments
    /// (prepared ones included) and spares, not the retired segments of
    /// [`Stats::retired_bytes`].
    pub fn budgeted_bytes(&self) -> u64 {
        self.disk_bytes.saturating_sub(self.retired_bytes)
    }
}

/// What compression does for a journal ([`Stats::compression`]): the
/// compressed segments it holds now, and counters since its creation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompressionStats {
    /// Segments held compressed now.
    pub segments: u64,
    /// The bytes those segments stand for (`segments × segment_size`): what
    /// they would hold on disk raw.
    pub segment_bytes: u64,
    /// The bytes their compressed files hold.
    pub file_bytes: u64,
    /// Segments compressed since the journal was created (deleted ones
    /// included).
    pub compressed_total: u64,
    /// Segment bytes (each up to its last record) compressed since creation.
    pub raw_bytes_total: u64,
    /// Bytes of compressed files written since creation.
    pub file_bytes_total: u64,
}

impl CompressionStats {
    /// Disk the compressed segments spare now, in bytes.
    pub fn saved_bytes(&self) -> u64 {
        self.segment_bytes.saturating_sub(self.file_bytes)
    }

    /// How many times smaller the compressed segments are than raw ones
    /// (`segment_bytes / file_bytes`; 1.0 when there are none).
    pub fn ratio(&self) -> f64 {
        if self.file_bytes == 0 { 1.0 } else { self.segment_bytes as f64 / self.file_bytes as f64 }
    }
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
