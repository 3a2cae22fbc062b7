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
//! A single appending thread can take `Journal::exclusive_publisher` instead:
//! the same contract with no locked instruction per record, and consumed
//! segments recycled as the next ones.
//!
//! The on-disk format is documented byte by byte in `docs/FORMAT.md`.

mod appender;
mod capacity;
mod config;
mod consumer;
mod cursor;
mod error;
mod exclusive;
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
mod process;
mod publisher;
mod publisher_lock;
pub mod recovery;
mod retention;
pub mod segment;
mod state;
#[doc(hidden)]
pub mod sync_trace;
mod thread_cache;
mod window;
mod writers;

pub use config::{
    Config, DEFAULT_SEGMENT_SIZE, Flush, Limits, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, Priority, Watermarks, WhenFull,
};
pub use consumer::{Consumer, Record, Seek};
pub use error::{Error, OfferError, Result};
pub use exclusive::ExclusivePublisher;
pub use frame::FORMAT_VERSION;
pub use journal::{CursorInfo, Journal};
pub use meta::Level;
pub use publisher::{Claim, Publisher};

/// Counters and levels of a journal, shared by every process that has it open.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// Records committed.
    pub appended: u64,
    /// Low-priority records shed above the shed watermark.
    pub dropped_low: u64,
    /// Offers refused with `BackPressured`, plus appends that had to wait.
    pub back_pressured: u64,
    /// Cursors detached by `WhenFull::EvictSlowest`.
    pub evictions: u64,
    /// Unread bytes deleted by `WhenFull::DropOldest` or `EvictSlowest`.
    pub lost_bytes: u64,
    /// Abandoned claims turned into padding by an unblocker.
    pub unblocked: u64,
    /// Bytes from the oldest segment's start to the tail, over capacity.
    pub fill: f64,
    /// The smaller of the budget and what the filesystem can give.
    pub capacity: u64,
    pub level: Level,
    pub first_position: u64,
    pub tail_position: u64,
    /// Bytes held by segment files.
    pub disk_bytes: u64,
    /// The pid of the process whose `ExclusivePublisher` has the journal's
    /// appends (or that died holding it, until the next publisher settles it).
    pub exclusive_publisher: Option<u32>,
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
