//! Typed errors. Every message names the file and position involved and, where
//! there is one, says what to do.

use std::path::PathBuf;
use std::time::Duration;

use crate::Priority;

/// Everything that can go wrong in backwater.
///
/// Every message (its `Display`) names the file and position involved and,
/// where there is one, says what to do. Offers report their two
/// back-pressure outcomes as an [`OfferError`] instead; it converts into
/// this type with `?` (its [`OfferError::BackPressured`] and
/// [`OfferError::Dropped`] become [`Error::BackPressured`] and
/// [`Error::Dropped`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call failed on `path`.
    Io {
        /// The file or directory the call was made on.
        path: PathBuf,
        /// What was being done, for the message (`"open"`, `"flock"`,
        /// `"statvfs"`, …).
        op: &'static str,
        /// The operating system's error. A file that does not exist
        /// ([`std::io::ErrorKind::NotFound`]) often means retention deleted
        /// it meanwhile.
        source: std::io::Error,
    },
    /// The directory or file is not a backwater journal (or is damaged beyond reading).
    NotAJournal {
        /// The directory or file that was refused.
        path: PathBuf,
        /// Why: a missing metadata file, a wrong magic number, a foreign
        /// file in a directory without metadata, ….
        reason: String,
    },
    /// Written by a newer backwater than this one.
    NewerFormat {
        /// The file (metadata, segment or cursor) with the newer header.
        path: PathBuf,
        /// The format version the file carries.
        found: u32,
        /// The newest format version this build reads ([`FORMAT_VERSION`](crate::FORMAT_VERSION)).
        supported: u32,
    },
    /// The journal exists with another segment size than the one asked for
    /// with [`Config::segment_size`](crate::Config::segment_size).
    SegmentSizeMismatch {
        /// The journal's directory.
        path: PathBuf,
        /// The segment size the journal was created with, in bytes.
        existing: u64,
        /// The segment size the [`Config`](crate::Config) asked for, in bytes.
        requested: u64,
    },
    /// A configuration value is out of range; the message says which and why
    /// (from [`Config::validate`](crate::Config::validate) or
    /// [`Limits::validate`](crate::Limits::validate)).
    InvalidConfig(String),
    /// A frame or header failed its checks.
    Corrupt {
        /// The file that holds the damaged bytes.
        path: PathBuf,
        /// The journal position of the damaged frame; for a damaged segment
        /// header, the segment's base position; for a cursor that points at
        /// no record, the position it holds.
        position: u64,
        /// Which check failed (length, type, position, CRC, header field).
        reason: String,
    },
    /// A record larger than `segment_size / 8` ([`Journal::max_record_len`](crate::Journal::max_record_len)).
    RecordTooLarge {
        /// The payload length offered, in bytes.
        len: usize,
        /// The largest payload this journal takes, in bytes.
        max: usize,
    },
    /// A key longer than [`frame::MAX_KEY_LEN`](crate::frame::MAX_KEY_LEN)
    /// bytes offered with a keyed append
    /// ([`Publisher::offer_keyed`](crate::Publisher::offer_keyed)); nothing
    /// was written.
    KeyTooLong {
        /// The key's length, in bytes.
        len: usize,
        /// The longest key a record can carry, in bytes.
        max: usize,
    },
    /// [`Consumer::seek`](crate::Consumer::seek) (or
    /// [`Consumer::commit_at`](crate::Consumer::commit_at),
    /// [`Journal::walk_frames`](crate::Journal::walk_frames)) to a position
    /// that is not the start of a frame.
    NotAFrameBoundary {
        /// The position asked for.
        position: u64,
        /// Why it is not a frame boundary (outside the journal, misaligned,
        /// no frame there).
        reason: String,
    },
    /// The consumer's data was deleted before it read it
    /// ([`WhenFull::DropOldest`](crate::WhenFull::DropOldest), or an anonymous
    /// consumer outrun by retention). It continues at `to`.
    Lost {
        /// The first position that was not read (for a consumer, its
        /// position when the loss was found).
        from: u64,
        /// The oldest retained position, where the consumer now is.
        to: u64,
    },
    /// The named cursor was detached by
    /// [`WhenFull::EvictSlowest`](crate::WhenFull::EvictSlowest). Every
    /// [`Consumer::poll`](crate::Consumer::poll) reports it until
    /// [`Consumer::reattach`](crate::Consumer::reattach).
    Evicted {
        /// The evicted cursor's name.
        cursor: String,
        /// Where this consumer's loss starts: the cursor's position when it
        /// was evicted, or the consumer's own if it had read further.
        from: u64,
        /// The oldest retained position when this was reported: `from..to`
        /// is gone (empty when nothing the consumer had not read is).
        to: u64,
    },
    /// The journal was above its high watermark when the offer was made
    /// (an [`OfferError::BackPressured`] passed on with `?`).
    BackPressured {
        /// Fill at the time, as a fraction of `capacity` (0.0 to 1.0, a
        /// little above in a race).
        fill: f64,
        /// The capacity fill is measured against, in bytes ([`Stats::capacity`](crate::Stats::capacity)).
        capacity: u64,
    },
    /// A low-priority record was shed above the shed watermark (an
    /// [`OfferError::Dropped`] passed on, or what
    /// [`Publisher::append_with`](crate::Publisher::append_with) returns at
    /// once for a shed record).
    Dropped {
        /// The priority the record was offered with (always [`Priority::Low`] today).
        priority: Priority,
        /// Fill at the time, as a fraction of capacity.
        fill: f64,
    },
    /// [`Publisher::append`](crate::Publisher::append) gave up after
    /// [`Config::append_timeout`](crate::Config::append_timeout): nothing was appended.
    StillBackPressured {
        /// How long it waited, from the first refusal.
        waited: Duration,
        /// Fill at the last refusal, as a fraction of capacity.
        fill: f64,
    },
    /// A [`Claim`](crate::Claim) was held past
    /// [`Config::unblock_timeout`](crate::Config::unblock_timeout) and turned
    /// into padding by another handle; the record was not appended.
    ClaimUnblocked {
        /// The position the claim had; it now holds padding.
        position: u64,
    },
    /// The operation needs the journal to itself (`verify --repair`,
    /// [`Journal::repair`](crate::Journal::repair)), and another process has
    /// it open for writing.
    InUse {
        /// The journal's directory.
        path: PathBuf,
    },
    /// A write through a handle opened with
    /// [`Journal::open_read_only`](crate::Journal::open_read_only).
    ReadOnly {
        /// The journal's directory.
        path: PathBuf,
    },
    /// A [`Publisher`](crate::Publisher) appended while an
    /// [`ExclusivePublisher`](crate::ExclusivePublisher) (in process `pid`)
    /// has the journal's appends to itself.
    ExclusivelyPublished {
        /// The journal's directory.
        path: PathBuf,
        /// The process that holds the exclusive publisher (0 if none is on
        /// record: the lock was held only for a moment).
        pid: u32,
    },
    /// [`Journal::exclusive_publisher`](crate::Journal::exclusive_publisher)
    /// while [`Publisher`](crate::Publisher)s (in this process or another)
    /// append to the journal, or another exclusive publisher exists.
    PublishersActive {
        /// The journal's directory.
        path: PathBuf,
    },
    /// A cursor name that is empty, longer than 64 bytes, starts with `.`,
    /// or has characters other than `[A-Za-z0-9._-]`; carries the name.
    BadCursorName(String),
    /// The named cursor does not exist; carries the name.
    NoSuchCursor(String),
    /// Another consumer of this cursor (in this process or another) holds
    /// its writer lock: a durable cursor has one writer at a time. Carries
    /// the name.
    CursorInUse(String),
    /// The journal has handed out every position its tail word can hold
    /// (2^56 bytes); it takes no more records.
    PositionsExhausted {
        /// The journal's directory.
        path: PathBuf,
        /// The base position of the segment that could not be created.
        position: u64,
    },
    /// The journal lock has been held by another process for too long (one
    /// stopped while holding it): room could not be made now.
    JournalBusy {
        /// The journal's directory.
        path: PathBuf,
    },
    /// The record at `position` was committed (readers see it) but the msync
    /// that [`Flush::Always`](crate::Flush::Always) asks for failed: do not
    /// append it again; it may not survive a power loss.
    CommittedNotFlushed {
        /// The committed record's position.
        position: u64,
        /// Why the msync failed (an [`Error::Io`]).
        source: Box<Error>,
    },
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
            Error::KeyTooLong { len, max } => write!(f, "key of {len} bytes exceeds the maximum of {max}"),
            Error::NotAFrameBoundary { position, reason } => {
                write!(f, "position {position} is not the start of a frame: {reason}")
            }
            Error::Lost { from, to } => {
                write!(f, "records in positions {from}..{to} were deleted before this consumer read them")
            }
            Error::Evicted { cursor, from, to } if from == to => write!(
                f,
                "cursor '{cursor}' was evicted as the slowest consumer: it no longer holds retention, though \
                 nothing it had not read is gone yet (re-attach with `Consumer::reattach` or `backwater cursor \
                 reset`)"
            ),
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

/// Why an offer ([`Publisher::offer`](crate::Publisher::offer) and the
/// other non-blocking appends) did not take a record. The two back-pressure
/// outcomes carry what the caller needs to decide: retry later, slow the
/// source, or drop. Converts into [`Error`] with `?`.
#[derive(Debug)]
#[non_exhaustive]
pub enum OfferError {
    /// Fill is at or above the high watermark (and has not yet fallen below
    /// `resume`), or no segment could be created within the budget. Nothing
    /// was written; try again later or use
    /// [`Publisher::append`](crate::Publisher::append), which waits.
    BackPressured {
        /// Fill at the time, as a fraction of `capacity` (0.0 to 1.0).
        fill: f64,
        /// The capacity fill is measured against, in bytes ([`Stats::capacity`](crate::Stats::capacity)).
        capacity: u64,
    },
    /// A [`Priority::Low`] record offered at or above the shed watermark was
    /// dropped and counted ([`Stats::dropped_low`](crate::Stats::dropped_low)).
    Dropped {
        /// The priority the record was offered with.
        priority: Priority,
        /// Fill at the time, as a fraction of capacity.
        fill: f64,
    },
    /// Anything else ([`Error::RecordTooLarge`], I/O, [`Error::ReadOnly`],
    /// [`Error::ExclusivelyPublished`], …).
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

/// `std::result::Result` with backwater's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::frame::KeyTooLong> for Error {
    fn from(too_long: crate::frame::KeyTooLong) -> Error {
        Error::KeyTooLong { len: too_long.0, max: crate::frame::MAX_KEY_LEN }
    }
}

impl From<crate::frame::KeyTooLong> for OfferError {
    fn from(too_long: crate::frame::KeyTooLong) -> OfferError {
        OfferError::Failed(too_long.into())
    }
}
