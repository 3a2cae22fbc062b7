//! `Config`: how a journal is created and how a handle behaves.
//!
//! Owns: defaults and validation. Settings marked *persisted* are written to the
//! journal's metadata when it is created (or when a handle sets them explicitly
//! on open), so every handle and process agrees on them; a setting left unset
//! keeps the journal's stored value. The rest belong to one handle.

use std::time::Duration;

use crate::error::{Error, Result};

/// Smallest accepted segment size (64 KiB).
pub const MIN_SEGMENT_SIZE: u64 = 64 << 10;
/// Largest accepted segment size (1 GiB).
pub const MAX_SEGMENT_SIZE: u64 = 1 << 30;
/// Default segment size (64 MiB).
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;

/// What happens when fill reaches the high watermark (persisted; set with
/// [`Config::when_full`] or [`Journal::set_limits`](crate::Journal::set_limits)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// Push back: [`Publisher::offer`](crate::Publisher::offer) fails with
    /// [`OfferError::BackPressured`](crate::OfferError::BackPressured),
    /// [`Publisher::append`](crate::Publisher::append) waits.
    #[default]
    Block,
    /// Ring mode: delete the oldest segments; lagging consumers get
    /// [`Error::Lost`](crate::Error::Lost).
    DropOldest,
    /// Detach the durable cursor(s) pinning the oldest segment; they get
    /// [`Error::Evicted`](crate::Error::Evicted).
    EvictSlowest,
}

impl WhenFull {
    /// Every policy, in the order of their codes.
    pub const ALL: [WhenFull; 3] = [WhenFull::Block, WhenFull::DropOldest, WhenFull::EvictSlowest];

    /// The policy's name, as the CLI takes it and `--json` prints it.
    pub const fn name(self) -> &'static str {
        match self {
            WhenFull::Block => "block",
            WhenFull::DropOldest => "drop-oldest",
            WhenFull::EvictSlowest => "evict-slowest",
        }
    }

    /// The policy's code in `journal.meta` (docs/FORMAT.md).
    pub const fn code(self) -> u32 {
        match self {
            WhenFull::Block => 0,
            WhenFull::DropOldest => 1,
            WhenFull::EvictSlowest => 2,
        }
    }

    /// The policy stored as `code`, if it is one.
    pub fn from_code(code: u32) -> Option<WhenFull> {
        WhenFull::ALL.into_iter().find(|policy| policy.code() == code)
    }
}

impl std::str::FromStr for WhenFull {
    type Err = String;

    /// Parses a policy's [`name`](WhenFull::name).
    fn from_str(name: &str) -> Result<WhenFull, String> {
        WhenFull::ALL.into_iter().find(|policy| policy.name() == name).ok_or_else(|| {
            let names: Vec<&str> = WhenFull::ALL.iter().map(|policy| policy.name()).collect();
            format!("unknown policy '{name}': use one of {}", names.join(", "))
        })
    }
}

/// When committed records are forced to stable storage (persisted; set with
/// [`Config::flush`]). [`Journal::flush`](crate::Journal::flush) forces
/// everything at any time, whatever the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Flush {
    /// Never msync; the kernel writes back in its own time (about 30 s on Linux).
    /// Survives a process crash, not a power loss.
    #[default]
    Never,
    /// A background thread msyncs what was committed, every interval.
    /// A power loss loses at most about one interval.
    Interval(Duration),
    /// Every commit is msynced before `offer`/`append` returns. Slow. A failed
    /// msync is [`Error::CommittedNotFlushed`](crate::Error::CommittedNotFlushed).
    Always,
}

/// The priority a record is offered with. Low-priority records are shed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum Priority {
    /// Taken up to the high watermark ([`Watermarks::high`]).
    #[default]
    Normal,
    /// Taken only below the shed watermark ([`Watermarks::shed`]); from there
    /// on dropped and counted ([`OfferError::Dropped`](crate::OfferError::Dropped),
    /// [`Stats::dropped_low`](crate::Stats::dropped_low)).
    Low,
}

/// How sealed segments are compressed once fill reaches
/// [`Watermarks::compress`] (persisted; set with [`Config::compression`] or
/// [`Journal::set_limits`](crate::Journal::set_limits)).
///
/// Compression happens in the housekeeper, never on a publisher's path: a
/// sealed segment that no reader has mapped is replaced by a compressed
/// copy (its own file type, see `docs/FORMAT.md`), oldest first, until fill
/// is below the compress watermark. Readers decompress it transparently;
/// positions, CRCs and [`Record`](crate::Record)s are unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    /// Segments stay as they were written (default).
    #[default]
    None,
    /// zstd at `level` ([`Compression::MIN_ZSTD_LEVEL`] to
    /// [`Compression::MAX_ZSTD_LEVEL`]; 3 is zstd's default). Needs the
    /// crate's `compression` feature (on by default): without it, a journal
    /// configured to compress is refused with [`Error::InvalidConfig`].
    Zstd {
        /// The zstd compression level.
        level: i32,
    },
}

impl Compression {
    /// The lowest zstd level accepted (fastest, least compression).
    pub const MIN_ZSTD_LEVEL: i32 = 1;
    /// The highest zstd level accepted (slowest, most compression).
    pub const MAX_ZSTD_LEVEL: i32 = 22;
    /// The zstd level `zstd` alone stands for on the command line.
    pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

    /// Whether sealed segments are compressed.
    pub fn is_on(self) -> bool {
        self != Compression::None
    }

    /// The name tools print and take: `none`, or `zstd:LEVEL`.
    pub fn name(self) -> String {
        match self {
            Compression::None => "none".into(),
            Compression::Zstd { level } => format!("zstd:{level}"),
        }
    }

    /// Checks the level, and that this build can compress.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a level out of range, or for
    /// [`Compression::Zstd`] in a build without the `compression` feature.
    pub fn validate(self) -> Result<()> {
        let Compression::Zstd { level } = self else { return Ok(()) };
        if !cfg!(feature = "compression") {
            return Err(Error::InvalidConfig(
                "compression zstd needs backwater built with its `compression` feature (on by default)".into(),
            ));
        }
        if !(Self::MIN_ZSTD_LEVEL..=Self::MAX_ZSTD_LEVEL).contains(&level) {
            return Err(Error::InvalidConfig(format!(
                "zstd level {level} must be from {} to {}",
                Self::MIN_ZSTD_LEVEL,
                Self::MAX_ZSTD_LEVEL
            )));
        }
        Ok(())
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    /// Parses `none`, `zstd` (level 3) or `zstd:LEVEL`.
    fn from_str(text: &str) -> Result<Compression, String> {
        let level = match text.split_once(':') {
            None if text == "none" => return Ok(Compression::None),
            None if text == "zstd" => Compression::DEFAULT_ZSTD_LEVEL,
            Some(("zstd", level)) => level.parse().map_err(|_| format!("zstd level '{level}' is not a number"))?,
            _ => return Err(format!("unknown compression '{text}': use none, zstd or zstd:LEVEL")),
        };
        Ok(Compression::Zstd { level })
    }
}

/// The four watermarks, as fractions of capacity (0.0 to 1.0; see
/// [`Stats::fill`](crate::Stats::fill)). Set with [`Config::watermarks`]
/// and [`Config::compress_at`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Watermarks {
    /// From this fill on, with [`Compression`] on, the housekeeper
    /// compresses sealed segments until fill is below it again (at most
    /// `shed`). Never set, it follows the shed watermark both ways: 0.50,
    /// or `shed` while that is lower. Once set to another value than the
    /// one in effect ([`Config::compress_at`], `set_limits`), it stays as
    /// set, except that a shed watermark set below it takes it along.
    pub compress: f64,
    /// From this fill on, [`Priority::Low`] records are shed and the level is
    /// [`Level::Shedding`](crate::Level::Shedding) (default 0.80).
    pub shed: f64,
    /// From this fill on, [`Priority::Normal`] records are refused too: the
    /// level is [`Level::BackPressured`](crate::Level::BackPressured) and the
    /// [`WhenFull`] policy applies (default 0.95).
    pub high: f64,
    /// Once shedding or back-pressured, the level stays there until fill
    /// falls below this (hysteresis; default 0.70).
    pub resume: f64,
}

impl Default for Watermarks {
    fn default() -> Self {
        Watermarks { compress: 0.50, shed: 0.80, high: 0.95, resume: 0.70 }
    }
}

/// Watermarks are persisted in millionths of the capacity.
pub(crate) const PPM: f64 = 1_000_000.0;

impl Watermarks {
    /// Checks `0 < resume < shed <= high <= 1` and `0 < compress <= shed`,
    /// as they are persisted (rounded to millionths: a watermark that
    /// rounds to 0, or two that round to the same value where one must be
    /// below the other, are refused, not stored as something else).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when they are out of that order.
    pub fn validate(&self) -> Result<()> {
        let Watermarks { compress, shed, high, resume } = *self;
        let persisted = |fraction: f64| (fraction * PPM).round();
        let (compress_ppm, shed_ppm, high_ppm, resume_ppm) =
            (persisted(compress), persisted(shed), persisted(high), persisted(resume));
        let ordered = 0.0 < resume_ppm && resume_ppm < shed_ppm && shed_ppm <= high_ppm && high <= 1.0;
        if !ordered {
            return Err(Error::InvalidConfig(format!(
                "watermarks must satisfy 0 < resume < shed <= high <= 1 (got resume {resume}, shed {shed}, high {high})"
            )));
        }
        if !(0.0 < compress_ppm && compress_ppm <= shed_ppm) {
            return Err(Error::InvalidConfig(format!(
                "the compress watermark must satisfy 0 < compress <= shed, in millionths (got compress {compress}, shed {shed})"
            )));
        }
        Ok(())
    }
}

/// The settings that live in the metadata file, shared by every handle in
/// every process: read them with [`Journal::limits`](crate::Journal::limits),
/// change them on a running journal with
/// [`Journal::set_limits`](crate::Journal::set_limits). The `Config` setters
/// marked *persisted* set them at open.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// The journal's disk budget in bytes (every segment file counts,
    /// prepared and spare ones included); at least two segments. Default
    /// `u64::MAX`: bounded only by the filesystem.
    pub max_disk_bytes: u64,
    /// Free space in bytes the filesystem must keep: capacity is the smaller
    /// of the budget and what the files hold plus the free space above this
    /// (default 256 MiB).
    pub min_free_disk: u64,
    /// The compress, shed, high and resume watermarks.
    pub watermarks: Watermarks,
    /// What happens at the high watermark.
    pub when_full: WhenFull,
    /// When committed records are forced to stable storage.
    pub flush: Flush,
    /// Consumed bytes kept for replay, in bytes (default 0). Retention keeps
    /// them only while fill is below the shed watermark.
    pub retain_bytes: u64,
    /// Consumed segments younger than this are kept for replay (default
    /// zero), while fill is below the shed watermark.
    pub retain_for: Duration,
    /// How sealed segments are compressed from [`Watermarks::compress`] on
    /// (default [`Compression::None`]).
    pub compression: Compression,
}

impl Limits {
    /// Checks the limits for a journal of `segment_size`: the one check that
    /// opening, [`Journal::set_limits`](crate::Journal::set_limits) and
    /// `backwater config` all make.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the watermarks are out of order, the
    /// compression is not one this build can do, the budget holds
    /// fewer than two segments (a journal needs the tail's segment and the
    /// next one to rotate), or a flush interval is zero.
    pub fn validate(&self, segment_size: u64) -> Result<()> {
        self.watermarks.validate()?;
        self.compression.validate()?;
        let budget = self.max_disk_bytes;
        if budget < 2 * segment_size {
            return Err(Error::InvalidConfig(format!(
                "max_disk_bytes {budget} must hold at least two segments of {segment_size} bytes"
            )));
        }
        if let Flush::Interval(every) = self.flush
            && every.is_zero()
        {
            return Err(Error::InvalidConfig("flush interval must be above zero".into()));
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_disk_bytes: u64::MAX,
            min_free_disk: 256 << 20,
            watermarks: Watermarks::default(),
            when_full: WhenFull::Block,
            flush: Flush::Never,
            retain_bytes: 0,
            retain_for: Duration::ZERO,
            compression: Compression::None,
        }
    }
}

/// How to open (or create) a journal with [`Journal::open`](crate::Journal::open).
/// Every setter returns `self`; a setting left unset keeps its default (for a
/// new journal) or the journal's stored value (for an existing one).
///
/// Settings marked *persisted* are the journal's [`Limits`]: written to its
/// metadata at creation, or whenever a handle sets them explicitly on open,
/// so every handle and process agrees on them. The others belong to the
/// handle being opened.
///
/// A journal with a 16 MiB budget in 1 MiB segments that sheds low-priority
/// records from half full, pushes back from 80 %, resumes below 40 %, and
/// flushes every 50 ms:
///
/// ```
/// use std::time::Duration;
/// use backwater::{Config, Flush, Journal, Level, WhenFull};
///
/// let config = Config::default()
///     .segment_size(1 << 20)
///     .max_disk_bytes(16 << 20)
///     .min_free_disk(0)
///     .watermarks(0.50, 0.80, 0.40)
///     .when_full(WhenFull::Block)
///     .flush(Flush::Interval(Duration::from_millis(50)))
///     .append_timeout(Duration::from_secs(5));
/// config.validate()?;
///
/// let dir = tempfile::tempdir()?;
/// let journal = Journal::open(dir.path(), config)?;
/// let limits = journal.limits();
/// assert_eq!(limits.max_disk_bytes, 16 << 20);
/// assert_eq!(limits.watermarks.high, 0.80);
/// assert_eq!(limits.when_full, WhenFull::Block);
/// assert_eq!(journal.stats().level, Level::Normal);
///
/// // Out-of-order watermarks are refused before anything is created.
/// let bad = Config::default().watermarks(0.9, 0.8, 0.7);
/// assert!(matches!(bad.validate(), Err(backwater::Error::InvalidConfig(_))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub(crate) segment_size: Option<u64>,
    pub(crate) max_disk_bytes: Option<u64>,
    pub(crate) min_free_disk: Option<u64>,
    pub(crate) watermarks: Option<(f64, f64, f64)>,
    pub(crate) compress_at: Option<f64>,
    pub(crate) compression: Option<Compression>,
    pub(crate) when_full: Option<WhenFull>,
    pub(crate) flush: Option<Flush>,
    pub(crate) retain_bytes: Option<u64>,
    pub(crate) retain_for: Option<Duration>,
    pub(crate) append_timeout: Option<Duration>,
    pub(crate) unblock_timeout: Option<Duration>,
    pub(crate) reserve_linger: Option<Duration>,
    pub(crate) file_mode: Option<u32>,
    pub(crate) segments_ahead: Option<u32>,
}

impl Config {
    /// Segment file size in bytes: a power of two from [`MIN_SEGMENT_SIZE`]
    /// (64 KiB) to [`MAX_SEGMENT_SIZE`] (1 GiB); default
    /// [`DEFAULT_SEGMENT_SIZE`] (64 MiB). Persisted at creation; reopening
    /// with another size is [`Error::SegmentSizeMismatch`]. The largest record
    /// is an eighth of it.
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = Some(bytes);
        self
    }

    /// The disk budget in bytes, at least two segments (persisted; default:
    /// unlimited). See [`Limits::max_disk_bytes`].
    pub fn max_disk_bytes(mut self, bytes: u64) -> Self {
        self.max_disk_bytes = Some(bytes);
        self
    }

    /// Free space in bytes the filesystem must keep (persisted; default
    /// 256 MiB). See [`Limits::min_free_disk`].
    pub fn min_free_disk(mut self, bytes: u64) -> Self {
        self.min_free_disk = Some(bytes);
        self
    }

    /// The shed, high and resume watermarks as fractions of capacity
    /// (persisted; default 0.80 / 0.95 / 0.70). See [`Watermarks`].
    pub fn watermarks(mut self, shed: f64, high: f64, resume: f64) -> Self {
        self.watermarks = Some((shed, high, resume));
        self
    }

    /// The compress watermark, as a fraction of capacity (persisted;
    /// default 0.50; `0 < fraction <= shed`). See [`Watermarks::compress`].
    pub fn compress_at(mut self, fraction: f64) -> Self {
        self.compress_at = Some(fraction);
        self
    }

    /// How sealed segments are compressed from the compress watermark on
    /// (persisted; default [`Compression::None`]).
    ///
    /// Segments of 1 to 16 MiB suit it: zstd gets enough context from 1 MiB
    /// on, a segment is compressed in milliseconds, and a reader's
    /// decompressed copy (a handle keeps two, each consumer holds one) stays
    /// small. Level 3 compresses log lines about as well as level 1, at
    /// 100+ MB/s on one core; 6 to 9 gain about a tenth for a third of the
    /// speed (`benches/compression.rs`).
    ///
    /// ```
    /// use backwater::{Compression, Config, Journal};
    /// # let dir = tempfile::tempdir()?;
    /// let journal = Journal::open(dir.path(), Config::default()
    ///     .segment_size(1 << 20)
    ///     .compression(Compression::Zstd { level: 3 })
    ///     .compress_at(0.40))?;
    /// assert_eq!(journal.limits().compression, Compression::Zstd { level: 3 });
    /// assert_eq!(journal.limits().watermarks.compress, 0.40);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = Some(compression);
        self
    }

    /// The policy at the high watermark (persisted; default [`WhenFull::Block`]).
    pub fn when_full(mut self, policy: WhenFull) -> Self {
        self.when_full = Some(policy);
        self
    }

    /// The flush policy (persisted; default [`Flush::Never`]).
    pub fn flush(mut self, policy: Flush) -> Self {
        self.flush = Some(policy);
        self
    }

    /// Consumed bytes kept for replay (persisted; default 0).
    pub fn retain_bytes(mut self, bytes: u64) -> Self {
        self.retain_bytes = Some(bytes);
        self
    }

    /// How long consumed segments are kept for replay (persisted; default 0).
    pub fn retain_for(mut self, age: Duration) -> Self {
        self.retain_for = Some(age);
        self
    }

    /// How long [`Publisher::append`](crate::Publisher::append) (and the other
    /// blocking appends) wait under back-pressure before giving up with
    /// [`Error::StillBackPressured`] (this handle; default: forever).
    pub fn append_timeout(mut self, timeout: Duration) -> Self {
        self.append_timeout = Some(timeout);
        self
    }

    /// How long a claim may stay uncommitted before a consumer of this handle
    /// turns it into padding (this handle; default 1 s; read-only handles
    /// never do): a publisher that died mid-record blocks this handle's
    /// consumers for no longer than this. A [`Claim`](crate::Claim) held past
    /// some reading handle's timeout fails with [`Error::ClaimUnblocked`].
    pub fn unblock_timeout(mut self, timeout: Duration) -> Self {
        self.unblock_timeout = Some(timeout);
        self
    }

    /// How long a [`ReservingPublisher`](crate::ReservingPublisher)'s
    /// reservation lives (this handle; default 100 µs): its owner takes no
    /// record from one older than this (by the 1–4 ms clock records are
    /// stamped with), and a consumer of this handle that has waited this
    /// long at a reservation's unwritten rest turns the rest into padding
    /// (read-only handles never do; for them the owner's housekeeper pads
    /// a rest unmoved for a tick and for this long). A reservation holds no
    /// record, so nothing is lost; this bounds how long records appended
    /// after it by other threads wait unread behind a thread that stopped
    /// appending.
    pub fn reserve_linger(mut self, linger: Duration) -> Self {
        self.reserve_linger = Some(linger);
        self
    }

    /// How many segments past the tail's this handle's housekeeper keeps
    /// created and faulted in (default 1): each absorbs `segment_size` bytes
    /// of burst at memory speed, and holds that much of the budget (a full
    /// `DropOldest` or `EvictSlowest` ring that a publisher of this handle
    /// appends to drops its oldest segment one step early to keep the
    /// next one; further ones wait for room).
    /// [`Journal::prepare`](crate::Journal::prepare) does the same work at
    /// once, on the caller's thread.
    pub fn segments_ahead(mut self, segments: u32) -> Self {
        self.segments_ahead = Some(segments);
        self
    }

    /// Permission bits of files this handle creates (default `0o640`; the
    /// directory gets the same bits plus execute where read is granted).
    pub fn file_mode(mut self, mode: u32) -> Self {
        self.file_mode = Some(mode & 0o777);
        self
    }

    pub(crate) fn segment_size_or_default(&self) -> u64 {
        self.segment_size.unwrap_or(DEFAULT_SEGMENT_SIZE)
    }

    pub(crate) fn segments_ahead_or_default(&self) -> u64 {
        u64::from(self.segments_ahead.unwrap_or(1))
    }

    pub(crate) fn unblock_timeout_or_default(&self) -> Duration {
        self.unblock_timeout.unwrap_or(Duration::from_secs(1))
    }

    pub(crate) fn reserve_linger_or_default(&self) -> Duration {
        self.reserve_linger.unwrap_or(Duration::from_micros(100))
    }

    pub(crate) fn file_mode_or_default(&self) -> u32 {
        self.file_mode.unwrap_or(0o640)
    }

    /// The stored limits with every explicitly set value applied.
    pub(crate) fn apply_to(&self, stored: Limits) -> Limits {
        Limits {
            max_disk_bytes: self.max_disk_bytes.unwrap_or(stored.max_disk_bytes),
            min_free_disk: self.min_free_disk.unwrap_or(stored.min_free_disk),
            watermarks: self.watermarks_over(stored.watermarks),
            when_full: self.when_full.unwrap_or(stored.when_full),
            flush: self.flush.unwrap_or(stored.flush),
            retain_bytes: self.retain_bytes.unwrap_or(stored.retain_bytes),
            retain_for: self.retain_for.unwrap_or(stored.retain_for),
            compression: self.compression.unwrap_or(stored.compression),
        }
    }

    /// The stored watermarks with the ones set applied. A compress
    /// watermark left unset follows a shed watermark set below it (it may
    /// not be above it); the metadata tells a compress watermark that was
    /// never set, which follows shed back up too (`Meta::set_limits`).
    fn watermarks_over(&self, stored: Watermarks) -> Watermarks {
        let (shed, high, resume) = self.watermarks.unwrap_or((stored.shed, stored.high, stored.resume));
        let compress = self.compress_at.unwrap_or(stored.compress.min(shed));
        Watermarks { compress, shed, high, resume }
    }

    pub(crate) fn sets_limits(&self) -> bool {
        self.max_disk_bytes.is_some()
            || self.min_free_disk.is_some()
            || self.watermarks.is_some()
            || self.compress_at.is_some()
            || self.compression.is_some()
            || self.when_full.is_some()
            || self.flush.is_some()
            || self.retain_bytes.is_some()
            || self.retain_for.is_some()
    }

    /// Checks every value that is set, as [`Journal::open`](crate::Journal::open)
    /// does before touching the disk.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the segment size is not a power of two
    /// in range, or the limits fail [`Limits::validate`] (checked against the
    /// segment size asked for, or the smallest one when none is: opening an
    /// existing journal checks them again against its own).
    pub fn validate(&self) -> Result<()> {
        let size = self.segment_size_or_default();
        if !size.is_power_of_two() || !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&size) {
            return Err(Error::InvalidConfig(format!(
                "segment_size {size} must be a power of two from {MIN_SEGMENT_SIZE} (64 KiB) to {MAX_SEGMENT_SIZE} (1 GiB)"
            )));
        }
        // An existing journal keeps its own segment size: `Journal::open`
        // checks the limits again against it.
        self.apply_to(Limits::default()).validate(self.segment_size.unwrap_or(MIN_SEGMENT_SIZE))
    }
}
