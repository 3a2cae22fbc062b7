//! Typed errors. Every message names the file and position involved and, where
//! there is one, says what to do.

use std::path::PathBuf;
use std::time::Duration;

use crate::Priority;

/// Everything that can go wrong in backwater.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call failed on `path`.
    Io { path: PathBuf, op: &'static str, source: std::io::Error },
    /// The directory or file is not a backwater journal (or is damaged beyond reading).
    NotAJournal { path: PathBuf, reason: String },
    /// Written by a newer backwater than this one.
    NewerFormat { path: PathBuf, found: u32, supported: u32 },
    /// The journal exists with another segment size than the one asked for.
    SegmentSizeMismatch { path: PathBuf, existing: u64, requested: u64 },
    /// A configuration value is out of range.
    InvalidConfig(String),
    /// A frame or header failed its checks.
    Corrupt { path: PathBuf, position: u64, reason: String },
    /// A record larger than `segment_size / 8`.
    RecordTooLarge { len: usize, max: usize },
    /// `seek` to a position that is not the start of a frame.
    NotAFrameBoundary { position: u64, reason: String },
    /// The consumer's data was deleted before it read it (`WhenFull::DropOldest`,
    /// or an anonymous consumer outrun by retention). It continues at `to`.
    Lost { from: u64, to: u64 },
    /// The named cursor was detached by `WhenFull::EvictSlowest`.
    Evicted { cursor: String, from: u64, to: u64 },
    /// The journal was above its high watermark when the offer was made.
    BackPressured { fill: f64, capacity: u64 },
    /// A low-priority record was shed above the shed watermark.
    Dropped { priority: Priority, fill: f64 },
    /// `append` gave up after `Config::append_timeout`.
    StillBackPressured { waited: Duration, fill: f64 },
    /// A claim was held past `unblock_timeout` and turned into padding by another
    /// handle; the record was not appended.
    ClaimUnblocked { position: u64 },
    /// The operation needs the journal to itself, and another process has it open.
    InUse { path: PathBuf },
    /// A write through a handle opened with `Journal::open_read_only`.
    ReadOnly { path: PathBuf },
    /// A `Publisher` appended while an `ExclusivePublisher` (in process `pid`)
    /// has the journal's appends to itself.
    ExclusivelyPublished { path: PathBuf, pid: u32 },
    /// `exclusive_publisher` while `Publisher`s (in this process or another)
    /// append to the journal.
    PublishersActive { path: PathBuf },
    /// A cursor name with characters other than `[A-Za-z0-9._-]`, or empty.
    BadCursorName(String),
    /// The named cursor does not exist.
    NoSuchCursor(String),
    /// Another consumer of this cursor (in this process or another) holds
    /// its writer lock: a durable cursor has one writer at a time.
    CursorInUse(String),
    /// The journal has handed out every position its tail word can hold
    /// (2^56 bytes); it takes no more records.
    PositionsExhausted { path: PathBuf, position: u64 },
    /// The journal lock has been held by another process for too long (one
    /// stopped while holding it): room could not be made now.
    JournalBusy { path: PathBuf },
    /// The record at `position` was committed (readers see it) but the msync
    /// that `Flush::Always` asks for failed: do not append it again; it may
    /// not survive a power loss.
    CommittedNotFlushed { position: u64, source: Box<Error> },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), op, source }
    }

    pub(crate) fn not_a_journal(path: impl Into<PathBuf>, reason: impl Into<String>) -> Error {
        Error::NotAJournal { path: path.into(), reason: reason.into() }
    }

    /// Whether this is a file that does not exist (a segment deleted by
    /// retention while someone was about to read it, say).
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, position: u64, reason: impl Into<String>) -> Error {
        Error::Corrupt { path: path.into(), position, reason: reason.into() }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io { path, op, source } => write!(f, "{op} {}: {source}", path.display()),
            Error::NotAJournal { path, reason } => {
                write!(f, "{} is not a backwater journal: {reason}", path.display())
            }
            Error::NewerFormat { path, found, supported } => write!(
                f,
                "{} has format version {found}; this backwater reads up to {supported}: upgrade backwater",
                path.display()
            ),
            Error::SegmentSizeMismatch { path, existing, requested } => write!(
                f,
                "{} was created with segment size {existing}, not {requested}: open it with its own size",
                path.display()
            ),
            Error::InvalidConfig(why) => write!(f, "invalid configuration: {why}"),
            Error::Corrupt { path, position, reason } => write!(
                f,
                "corrupt frame at position {position} in {}: {reason} (run `backwater verify` on the journal)",
                path.display()
            ),
            Error::RecordTooLarge { len, max } => {
                write!(f, "record of {len} bytes exceeds the maximum of {max} (segment_size / 8)")
            }
            Error::NotAFrameBoundary { position, reason } => {
                write!(f, "position {position} is not the start of a frame: {reason}")
            }
            Error::Lost { from, to } => {
                write!(f, "records in positions {from}..{to} were deleted before this consumer read them")
            }
            Error::Evicted { cursor, from, to } => write!(
                f,
                "cursor '{cursor}' was evicted as the slowest consumer; positions {from}..{to} are gone \
                 (re-attach with `Consumer::reattach` or `backwater cursor reset`)"
            ),
            Error::BackPressured { fill, capacity } => {
                write!(f, "back-pressured: journal {:.1}% full of {capacity} bytes", fill * 100.0)
            }
            Error::Dropped { priority, fill } => {
                write!(f, "{priority:?}-priority record shed at {:.1}% fill", fill * 100.0)
            }
            Error::StillBackPressured { waited, fill } => write!(
                f,
                "still back-pressured after {waited:?} ({:.1}% full): consumers are not keeping up",
                fill * 100.0
            ),
            Error::ClaimUnblocked { position } => {
                write!(f, "the claim at position {position} was held past unblock_timeout and turned into padding")
            }
            Error::InUse { path } => {
                write!(f, "{} is open in another process (see `backwater info`); stop it first", path.display())
            }
            Error::ReadOnly { path } => write!(f, "{} was opened read-only", path.display()),
            Error::ExclusivelyPublished { path, pid } => write!(
                f,
                "{} has an exclusive publisher (pid {pid}); other publishers can append once it is dropped",
                path.display()
            ),
            Error::PublishersActive { path } => write!(
                f,
                "{} has publishers appending; an exclusive publisher needs every `Publisher` of every \
                 process dropped first",
                path.display()
            ),
            Error::BadCursorName(name) => {
                write!(f, "cursor name '{name}' must be 1-64 characters of [A-Za-z0-9._-]")
            }
            Error::NoSuchCursor(name) => write!(f, "no cursor named '{name}'"),
            Error::CursorInUse(name) => write!(
                f,
                "cursor '{name}' is in use: another consumer of it (in this process or another) holds its \
                 writer lock, and a cursor has one writer at a time; stop that consumer first"
            ),
            Error::PositionsExhausted { path, position } => {
                write!(f, "{} has used every position up to {position}: create a new journal", path.display())
            }
            Error::JournalBusy { path } => write!(
                f,
                "{}'s journal lock is held by a process that does not let go (stopped?); \
                 see `backwater info` for its processes",
                path.display()
            ),
            Error::CommittedNotFlushed { position, source } => write!(
                f,
                "the record at position {position} was committed but not flushed ({source}); \
                 do not append it again"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::CommittedNotFlushed { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// Why `offer` did not take a record. The two back-pressure outcomes carry what
/// the caller needs to decide: retry later, slow the source, or drop.
#[derive(Debug)]
#[non_exhaustive]
pub enum OfferError {
    /// Fill is at or above the high watermark (and has not yet fallen below
    /// `resume`). Nothing was written; try again later or use `append`.
    BackPressured { fill: f64, capacity: u64 },
    /// A `Priority::Low` record offered at or above the shed watermark was
    /// dropped and counted.
    Dropped { priority: Priority, fill: f64 },
    /// Anything else (record too large, I/O, read-only handle).
    Failed(Error),
}

impl std::fmt::Display for OfferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OfferError::BackPressured { fill, capacity } => {
                Error::BackPressured { fill: *fill, capacity: *capacity }.fmt(f)
            }
            OfferError::Dropped { priority, fill } => Error::Dropped { priority: *priority, fill: *fill }.fmt(f),
            OfferError::Failed(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for OfferError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OfferError::Failed(error) => Some(error),
            _ => None,
        }
    }
}

impl From<Error> for OfferError {
    fn from(error: Error) -> OfferError {
        OfferError::Failed(error)
    }
}

impl From<OfferError> for Error {
    fn from(error: OfferError) -> Error {
        match error {
            OfferError::BackPressured { fill, capacity } => Error::BackPressured { fill, capacity },
            OfferError::Dropped { priority, fill } => Error::Dropped { priority, fill },
            OfferError::Failed(error) => error,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
