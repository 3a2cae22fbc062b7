//! The metadata file (`journal.meta`): creation parameters, the shared tail
//! counter, limits, counters and the table of processes that have the journal
//! open. Every handle in every process maps the same 4 KiB, so they agree.
//!
//! Owns: the byte layout of `journal.meta` (documented in docs/FORMAT.md) and
//! the encoding of the raw tail word. Touches nothing else.

use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::config::{Compression, Flush, Limits, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, PPM, Watermarks, WhenFull};
use crate::error::{Error, Result};
use crate::file_header;
use crate::frame::{COMPRESSED_FORMAT_VERSION, FIRST_FORMAT_VERSION, FORMAT_VERSION};
use crate::mapped::{MappedFile, put_u32, put_u64};

pub const META_FILE: &str = "journal.meta";
pub const META_LEN: usize = 4096;
pub const MAGIC: &[u8; 8] = b"BACKWMTA";

// Static header, written once at creation and covered by a CRC.
const VERSION_AT: usize = 8;
const LEN_AT: usize = 12;
const SEGMENT_SIZE_AT: usize = 16;
const JOURNAL_ID_AT: usize = 24;
const CREATED_AT: usize = 32;
const HEADER_CRC_AT: usize = 60;

// Limits (written under the journal lock, read with relaxed loads).
const MAX_DISK_AT: usize = 64;
const MIN_FREE_AT: usize = 72;
const SHED_AT: usize = 80;
const HIGH_AT: usize = 84;
const RESUME_AT: usize = 88;
const WHEN_FULL_AT: usize = 92;
const FLUSH_KIND_AT: usize = 96;
/// `FLUSH_KIND_AT`'s values.
const FLUSH_NEVER: u32 = 0;
const FLUSH_INTERVAL: u32 = 1;
const FLUSH_ALWAYS: u32 = 2;
const FLUSH_INTERVAL_AT: usize = 104;
const RETAIN_BYTES_AT: usize = 112;
const RETAIN_FOR_AT: usize = 120;

// The publishers' cache line: claim counter and record count.
const RAW_TAIL_AT: usize = 128;
const APPENDED_AT: usize = 136;
/// Pid of the process holding an `ExclusivePublisher`, 0 when none. Left
/// set by one that died: the next publisher settles the tail it left.
const EXCLUSIVE_PID_AT: usize = 144;

// Read-mostly line: where the log starts and the precomputed publication limits.
const FIRST_POSITION_AT: usize = 192;
const NORMAL_LIMIT_AT: usize = 200;
const LOW_LIMIT_AT: usize = 208;
const CAPACITY_AT: usize = 216;
const LEVEL_AT: usize = 224;
/// Bytes the compressed segments spare (the segment size minus each one's
/// file), counted as room by fill and the publication limits.
const COMPRESSION_SAVED_AT: usize = 232;

// Counters.
const DROPPED_LOW_AT: usize = 256;
const BACK_PRESSURED_AT: usize = 264;
const EVICTIONS_AT: usize = 272;
const LOST_BYTES_AT: usize = 280;
const UNBLOCKED_AT: usize = 288;
/// Everything below this position reached the media at the last completed
/// `flush_all` (recovery keeps it untouched).
const FLUSHED_POSITION_AT: usize = 296;
/// Segments compressed, and the segment bytes they held (counters).
const COMPRESSED_SEGMENTS_AT: usize = 304;
const COMPRESSED_RAW_BYTES_AT: usize = 312;

// The wake-up line (`wake`): a futex word that committing publishers and
// releases of back-pressure bump when someone sleeps, and the count of
// sleepers. Its own cache line: nobody writes it while nobody sleeps, so
// the publishers' load of the count stays a hit in their cache.
const WAKE_WORD_AT: usize = 320;
const SLEEPERS_AT: usize = 324;

// Compression settings (limits, written under the journal lock) and the
// compressed files' bytes counter.
const COMPRESSION_KIND_AT: usize = 384;
const COMPRESSION_LEVEL_AT: usize = 388;
const COMPRESS_MARK_AT: usize = 392;
const COMPRESSED_FILE_BYTES_AT: usize = 400;

// Process table: `PROCESS_SLOTS` entries of (pid u32, sleepers u32, start time u64).
pub const PROCESS_TABLE_AT: usize = 512;
pub const PROCESS_SLOTS: usize = 64;
const PROCESS_SLOT_LEN: usize = 16;

// The shared publishers' appended-count shards (`append_count`): one cache
// line each, (holder token u64, records u64), up to the end of the file.
const COUNT_SHARDS_AT: usize = 2048;
pub const COUNT_SHARDS: usize = 32;
const COUNT_SHARD_LEN: usize = 64;
const _: () = assert!(COUNT_SHARDS_AT + COUNT_SHARDS * COUNT_SHARD_LEN == META_LEN);

/// Bits of the raw tail word above the segment offset that absorb overshoot
/// from claims racing past a segment's end (256 segments' worth).
const OVERSHOOT_BITS: u32 = 8;

/// The tail word: `segment index << shift | offset in segment`.
///
/// Claims fetch-add into the offset. A claim whose frame would pass the
/// segment's end "trips" the segment; the claimer rotates the word to the
/// next segment with a compare-and-swap, so positions are never burned in a
/// segment that does not exist yet (Aeron's term rotation, in one word).
#[derive(Clone, Copy, Debug)]
pub struct TailCodec {
    segment_shift: u32,
    raw_shift: u32,
    segment_size: u64,
}

impl TailCodec {
    pub fn new(segment_size: u64) -> TailCodec {
        let segment_shift = segment_size.trailing_zeros();
        TailCodec { segment_shift, raw_shift: segment_shift + OVERSHOOT_BITS, segment_size }
    }

    #[inline]
    pub fn pack(&self, index: u64, offset: u64) -> u64 {
        (index << self.raw_shift) | offset
    }

    /// `(segment index, offset)`; the offset may exceed the segment size when tripped.
    #[inline]
    pub fn unpack(&self, raw: u64) -> (u64, u64) {
        (raw >> self.raw_shift, raw & ((1u64 << self.raw_shift) - 1))
    }

    /// The stream position a raw tail stands for: always a position a record
    /// can have. A full (or tripped) segment's tail is the next segment's
    /// first frame, never its header.
    #[inline]
    pub fn position(&self, raw: u64) -> u64 {
        let (index, offset) = self.unpack(raw);
        if offset < self.segment_size {
            (index << self.segment_shift) + offset
        } else {
            ((index + 1) << self.segment_shift) + crate::segment::SEGMENT_HEADER_LEN
        }
    }

    /// The highest segment index the tail word can hold, with all of its
    /// overshoot bits to spare.
    pub fn max_index(&self) -> u64 {
        (1u64 << (64 - self.raw_shift)) - 1
    }

    #[inline]
    pub fn segment_index(&self, position: u64) -> u64 {
        position >> self.segment_shift
    }
}

/// The level a journal is at, by its fill and the watermarks
/// ([`Stats::level`](crate::Stats::level), [`Journal::watch_level`](crate::Journal::watch_level)).
/// Levels are ordered: `Normal < Shedding < BackPressured`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Below the shed watermark (or back below `resume`): every record is taken.
    Normal = 0,
    /// At or above the shed watermark: [`Priority::Low`](crate::Priority::Low)
    /// records are dropped, normal ones taken.
    Shedding = 1,
    /// At or above the high watermark: offers are refused with
    /// [`OfferError::BackPressured`](crate::OfferError::BackPressured) and
    /// appends wait (under [`WhenFull::Block`](crate::WhenFull::Block); the
    /// dropping policies make room instead).
    BackPressured = 2,
}

impl Level {
    /// The level stored as `raw` in the metadata (its discriminant); an
    /// unknown value reads as [`Level::Normal`].
    pub fn from_u32(raw: u32) -> Level {
        match raw {
            1 => Level::Shedding,
            2 => Level::BackPressured,
            _ => Level::Normal,
        }
    }

    /// The name tools print and JSON carries (`"normal"`, `"shedding"`,
    /// `"back-pressured"`).
    pub fn name(self) -> &'static str {
        match self {
            Level::Normal => "normal",
            Level::Shedding => "shedding",
            Level::BackPressured => "back-pressured",
        }
    }
}

/// The mapped `journal.meta`.
pub struct Meta {
    file: MappedFile,
    pub segment_size: u64,
    pub journal_id: u64,
    pub created_ns: u64,
    pub tail: TailCodec,
}

/// What a new journal starts with.
pub struct NewJournal {
    pub segment_size: u64,
    pub journal_id: u64,
    pub created_ns: u64,
    pub header_len: u64,
    pub limits: Limits,
}

impl Meta {
    /// Fills a fresh metadata image (called on a file nobody else sees yet).
    pub fn initialize(file: &MappedFile, new: &NewJournal) -> Result<()> {
        let mut header = [0u8; 64];
        header[..8].copy_from_slice(MAGIC);
        put_u32(&mut header, VERSION_AT, FIRST_FORMAT_VERSION);
        put_u32(&mut header, LEN_AT, META_LEN as u32);
        put_u64(&mut header, SEGMENT_SIZE_AT, new.segment_size);
        put_u64(&mut header, JOURNAL_ID_AT, new.journal_id);
        put_u64(&mut header, CREATED_AT, new.created_ns);
        file_header::seal(&mut header, HEADER_CRC_AT);
        file.write(0, &header);
        let codec = TailCodec::new(new.segment_size);
        file.atomic_u64(RAW_TAIL_AT).store(codec.pack(0, new.header_len), Ordering::Release);
        file.atomic_u64(FIRST_POSITION_AT).store(new.header_len, Ordering::Release);
        file.atomic_u64(NORMAL_LIMIT_AT).store(u64::MAX, Ordering::Release);
        file.atomic_u64(LOW_LIMIT_AT).store(u64::MAX, Ordering::Release);
        store_limits(file, &new.limits);
        file.flush_range(0, META_LEN)
    }

    /// Maps and validates an existing metadata file.
    pub fn open(path: &Path, writable: bool) -> Result<Meta> {
        let file = MappedFile::open(path, writable, Some(META_LEN as u64))?;
        let bytes = file.bytes();
        if &bytes[..8] != MAGIC {
            return Err(Error::not_a_journal(path, "bad magic in metadata file"));
        }
        let version = crate::frame::read_u32(bytes, VERSION_AT);
        if version > FORMAT_VERSION {
            return Err(Error::NewerFormat { path: path.into(), found: version, supported: FORMAT_VERSION });
        }
        let stored_crc = crate::frame::read_u32(bytes, HEADER_CRC_AT);
        if crc32fast::hash(&bytes[..HEADER_CRC_AT]) != stored_crc || version == 0 {
            return Err(Error::not_a_journal(path, "metadata header fails its CRC"));
        }
        let segment_size = crate::frame::read_u64(bytes, SEGMENT_SIZE_AT);
        if !segment_size.is_power_of_two() || !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&segment_size) {
            return Err(Error::not_a_journal(path, format!("segment size {segment_size} out of range")));
        }
        let journal_id = crate::frame::read_u64(bytes, JOURNAL_ID_AT);
        let created_ns = crate::frame::read_u64(bytes, CREATED_AT);
        Ok(Meta { file, segment_size, journal_id, created_ns, tail: TailCodec::new(segment_size) })
    }

    /// The positions every reader starts from must be frame boundaries; they
    /// are not covered by the header CRC because they change while running.
    /// (Recovery rebuilds them from the segments when a writer opens alone.)
    pub fn check_positions(&self) -> Result<()> {
        let boundary = |position: u64| {
            position.is_multiple_of(crate::frame::FRAME_ALIGNMENT as u64)
                && position % self.segment_size >= crate::segment::SEGMENT_HEADER_LEN
        };
        let first = self.first_position().load(Ordering::Acquire);
        let (_, tail_offset) = self.tail.unpack(self.raw_tail().load(Ordering::Acquire));
        let tail_ok = tail_offset.is_multiple_of(crate::frame::FRAME_ALIGNMENT as u64)
            && tail_offset >= crate::segment::SEGMENT_HEADER_LEN;
        if boundary(first) && tail_ok && first <= self.tail_position() {
            return Ok(());
        }
        Err(Error::not_a_journal(
            self.file.path(),
            format!(
                "metadata positions are damaged (first {first}, tail {}); \
                 `backwater verify --repair` rebuilds them from the segments",
                self.tail_position()
            ),
        ))
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Whether this mapping may be written (a read-write handle's).
    pub fn writable(&self) -> bool {
        self.file.writable()
    }

    #[inline]
    pub fn raw_tail(&self) -> &AtomicU64 {
        self.word_u64::<RAW_TAIL_AT>()
    }

    /// The position the next claim would get (never inside a tripped gap).
    pub fn tail_position(&self) -> u64 {
        self.tail.position(self.raw_tail().load(Ordering::Acquire))
    }

    /// The index of the segment the tail is in.
    pub fn tail_index(&self) -> u64 {
        self.tail.unpack(self.raw_tail().load(Ordering::Acquire)).0
    }

    /// The publication limit for records of `priority`.
    #[inline]
    pub fn limit(&self, priority: crate::Priority) -> &AtomicU64 {
        match priority {
            crate::Priority::Normal => self.normal_limit(),
            crate::Priority::Low => self.low_limit(),
        }
    }

    /// The base of the records-appended count (see `append_count`).
    #[inline]
    pub fn appended(&self) -> &AtomicU64 {
        self.word_u64::<APPENDED_AT>()
    }

    #[inline]
    pub fn exclusive_pid(&self) -> &AtomicU64 {
        self.file.atomic_u64(EXCLUSIVE_PID_AT)
    }

    /// The first position still on disk (the oldest segment's first frame).
    #[inline]
    pub fn first_position(&self) -> &AtomicU64 {
        self.file.atomic_u64(FIRST_POSITION_AT)
    }

    /// Claims ending past this position take the slow path (normal priority).
    #[inline]
    pub fn normal_limit(&self) -> &AtomicU64 {
        self.word_u64::<NORMAL_LIMIT_AT>()
    }

    /// Claims ending past this position take the slow path (low priority).
    #[inline]
    pub fn low_limit(&self) -> &AtomicU64 {
        self.word_u64::<LOW_LIMIT_AT>()
    }

    #[inline]
    pub fn capacity(&self) -> &AtomicU64 {
        self.file.atomic_u64(CAPACITY_AT)
    }

    #[inline]
    pub fn level(&self) -> &AtomicU32 {
        self.file.atomic_u32(LEVEL_AT)
    }

    #[inline]
    pub fn dropped_low(&self) -> &AtomicU64 {
        self.file.atomic_u64(DROPPED_LOW_AT)
    }

    #[inline]
    pub fn back_pressured(&self) -> &AtomicU64 {
        self.file.atomic_u64(BACK_PRESSURED_AT)
    }

    #[inline]
    pub fn evictions(&self) -> &AtomicU64 {
        self.file.atomic_u64(EVICTIONS_AT)
    }

    #[inline]
    pub fn lost_bytes(&self) -> &AtomicU64 {
        self.file.atomic_u64(LOST_BYTES_AT)
    }

    /// Everything before it was on the media when the last flush completed.
    #[inline]
    pub fn flushed_position(&self) -> &AtomicU64 {
        self.file.atomic_u64(FLUSHED_POSITION_AT)
    }

    /// The futex word sleepers wait on: bumped (then woken) by whoever
    /// makes progress they may wait for, when the sleepers count is not 0.
    #[inline]
    pub fn wake_word(&self) -> &AtomicU32 {
        self.file.atomic_u32(WAKE_WORD_AT)
    }

    /// How many threads, in every process, sleep on (or are about to sleep
    /// on) the wake word.
    #[inline]
    pub fn sleepers(&self) -> &AtomicU32 {
        self.word_u32::<SLEEPERS_AT>()
    }

    #[inline]
    pub fn unblocked(&self) -> &AtomicU64 {
        self.file.atomic_u64(UNBLOCKED_AT)
    }

    /// The process-table slot `slot`: `(pid, start time)`.
    pub fn process_slot(&self, slot: usize) -> (&AtomicU32, &AtomicU64) {
        let at = PROCESS_TABLE_AT + slot * PROCESS_SLOT_LEN;
        (self.file.atomic_u32(at), self.file.atomic_u64(at + 8))
    }

    /// The `u64` at the layout's constant offset `AT`, without the run-time
    /// bounds check of `MappedFile::atomic_u64` (the publishers' hot path
    /// reads and writes these on every record).
    #[inline]
    fn word_u64<const AT: usize>(&self) -> &AtomicU64 {
        const { assert!(AT.is_multiple_of(8) && AT + 8 <= META_LEN) };
        // SAFETY: `AT` is a multiple of 8 with `AT + 8 <= META_LEN` (asserted
        // at compile time above), and `open` refuses a metadata file of any
        // other length than `META_LEN`.
        unsafe { self.file.atomic_u64_unchecked(AT) }
    }

    /// The `u32` at the layout's constant offset `AT`, as [`Meta::word_u64`].
    #[inline]
    fn word_u32<const AT: usize>(&self) -> &AtomicU32 {
        const { assert!(AT.is_multiple_of(4) && AT + 4 <= META_LEN) };
        // SAFETY: `AT` is a multiple of 4 with `AT + 4 <= META_LEN` (asserted
        // at compile time above), and `open` refuses a metadata file of any
        // other length than `META_LEN`.
        unsafe { self.file.atomic_u32_unchecked(AT) }
    }

    /// How many of [`Meta::sleepers`] the process in slot `slot` counted
    /// (so that they can be taken back when it dies asleep).
    pub fn process_sleepers(&self, slot: usize) -> &AtomicU32 {
        self.file.atomic_u32(PROCESS_TABLE_AT + slot * PROCESS_SLOT_LEN + 4)
    }

    /// The holder token of appended-count shard `shard` (0: free).
    pub fn shard_holder(&self, shard: usize) -> &AtomicU64 {
        self.file.atomic_u64(COUNT_SHARDS_AT + shard * COUNT_SHARD_LEN)
    }

    /// The records counted in shard `shard` (taken modulo the number of
    /// shards, so that the hot path needs no bounds check).
    #[inline]
    pub fn shard_records(&self, shard: usize) -> &AtomicU64 {
        let at = COUNT_SHARDS_AT + (shard % COUNT_SHARDS) * COUNT_SHARD_LEN + 8;
        // SAFETY: `at` is a multiple of 8 and at most `META_LEN - COUNT_SHARD_LEN
        // + 8`, so `at + 8 <= META_LEN` (the layout is asserted at compile
        // time), and `open` refuses a metadata file of any other length.
        unsafe { self.file.atomic_u64_unchecked(at) }
    }

    /// Whether the stored flush policy is [`Flush::Always`]: what every
    /// publisher, in every process, reads as it commits, so that a policy
    /// set through any handle holds for the next append everywhere.
    #[inline]
    pub fn flush_always(&self) -> bool {
        self.word_u32::<FLUSH_KIND_AT>().load(Ordering::Relaxed) == FLUSH_ALWAYS
    }

    pub fn limits(&self) -> Limits {
        let load = |at| self.file.atomic_u64(at).load(Ordering::Relaxed);
        let load32 = |at| self.file.atomic_u32(at).load(Ordering::Relaxed);
        let flush = match load32(FLUSH_KIND_AT) {
            FLUSH_INTERVAL => Flush::Interval(Duration::from_nanos(load(FLUSH_INTERVAL_AT).max(1))),
            FLUSH_ALWAYS => Flush::Always,
            _ => Flush::Never,
        };
        let when_full = WhenFull::from_code(load32(WHEN_FULL_AT)).unwrap_or_default();
        let shed = load32(SHED_AT) as f64 / PPM;
        let stored = Watermarks {
            // 0 in a journal made before compression existed: the default,
            // or the shed watermark when that is lower.
            compress: match load32(COMPRESS_MARK_AT) {
                0 => following(shed),
                ppm => ppm as f64 / PPM,
            },
            shed,
            high: load32(HIGH_AT) as f64 / PPM,
            resume: load32(RESUME_AT) as f64 / PPM,
        };
        Limits {
            max_disk_bytes: load(MAX_DISK_AT),
            min_free_disk: load(MIN_FREE_AT),
            // A damaged limits block falls back to the defaults rather than
            // producing nonsense limits.
            watermarks: if stored.validate().is_ok() { stored } else { Watermarks::default() },
            when_full,
            flush,
            retain_bytes: load(RETAIN_BYTES_AT),
            retain_for: Duration::from_nanos(load(RETAIN_FOR_AT)),
            compression: match load32(COMPRESSION_KIND_AT) {
                1 => Compression::Zstd { level: load32(COMPRESSION_LEVEL_AT) as i32 },
                _ => Compression::None,
            },
        }
    }

    /// Bytes the compressed segments spare (see `capacity`).
    #[inline]
    pub fn compression_saved(&self) -> &AtomicU64 {
        self.file.atomic_u64(COMPRESSION_SAVED_AT)
    }

    /// Segments compressed since the journal was created.
    #[inline]
    pub fn compressed_segments(&self) -> &AtomicU64 {
        self.file.atomic_u64(COMPRESSED_SEGMENTS_AT)
    }

    /// Segment bytes (up to each one's last frame) compressed since creation.
    #[inline]
    pub fn compressed_raw_bytes(&self) -> &AtomicU64 {
        self.file.atomic_u64(COMPRESSED_RAW_BYTES_AT)
    }

    /// Bytes of the compressed files written since creation.
    #[inline]
    pub fn compressed_file_bytes(&self) -> &AtomicU64 {
        self.file.atomic_u64(COMPRESSED_FILE_BYTES_AT)
    }

    /// Stores new limits (the caller holds the journal lock).
    pub fn set_limits(&self, limits: &Limits) {
        store_limits(&self.file, limits);
    }

    /// msync the whole metadata page.
    pub fn flush(&self) -> Result<()> {
        self.file.flush_range(0, META_LEN)
    }
}

/// The compress watermark of a journal where it was never set: the
/// default, or the shed watermark when that is lower (stored as 0).
fn following(shed: f64) -> f64 {
    Watermarks::default().compress.min(shed)
}

fn store_limits(file: &MappedFile, limits: &Limits) {
    let store = |at, value| file.atomic_u64(at).store(value, Ordering::Relaxed);
    let store32 = |at, value| file.atomic_u32(at).store(value, Ordering::Relaxed);
    let load32 = |at| file.atomic_u32(at).load(Ordering::Relaxed);
    // A compress watermark never set stays unset (0: it follows shed both
    // ways) while the one given is what following shed gives, before this
    // change or after it; any other value is set from now on.
    let compress = limits.watermarks.compress;
    let old_shed = load32(SHED_AT) as f64 / PPM;
    let follows = load32(COMPRESS_MARK_AT) == 0
        && (compress == following(old_shed) || compress == following(limits.watermarks.shed));
    let compress_ppm = if follows { 0 } else { (compress * PPM).round() as u32 };
    if let Compression::Zstd { level } = limits.compression {
        // Compressed segments may exist from now on: a build that does not
        // know them must refuse the journal (see `FORMAT_VERSION`).
        raise_version(file, COMPRESSED_FORMAT_VERSION);
        store32(COMPRESSION_LEVEL_AT, level as u32);
    }
    store32(COMPRESSION_KIND_AT, u32::from(limits.compression.is_on()));
    store32(COMPRESS_MARK_AT, compress_ppm);
    store(MAX_DISK_AT, limits.max_disk_bytes);
    store(MIN_FREE_AT, limits.min_free_disk);
    store32(SHED_AT, (limits.watermarks.shed * PPM).round() as u32);
    store32(HIGH_AT, (limits.watermarks.high * PPM).round() as u32);
    store32(RESUME_AT, (limits.watermarks.resume * PPM).round() as u32);
    store32(WHEN_FULL_AT, limits.when_full.code());
    let (kind, interval) = match limits.flush {
        Flush::Never => (FLUSH_NEVER, 0),
        Flush::Interval(every) => (FLUSH_INTERVAL, every.as_nanos().min(u64::MAX as u128) as u64),
        Flush::Always => (FLUSH_ALWAYS, 0),
    };
    store32(FLUSH_KIND_AT, kind);
    store(FLUSH_INTERVAL_AT, interval);
    store(RETAIN_BYTES_AT, limits.retain_bytes);
    store(RETAIN_FOR_AT, limits.retain_for.as_nanos().min(u64::MAX as u128) as u64);
}

/// Writes `version` into the header (and its CRC) if it holds an older one.
fn raise_version(file: &MappedFile, version: u32) {
    let bytes = file.bytes();
    if crate::frame::read_u32(bytes, VERSION_AT) >= version {
        return;
    }
    let mut header = [0u8; HEADER_CRC_AT + 4];
    header.copy_from_slice(&bytes[..HEADER_CRC_AT + 4]);
    put_u32(&mut header, VERSION_AT, version);
    file_header::seal(&mut header, HEADER_CRC_AT);
    file.write(0, &header);
}

/// A fresh writable `journal.meta` in `dir` (1 MiB segments, default
/// limits), for unit tests of the modules that use it.
#[cfg(test)]
pub(crate) fn test_meta(dir: &Path) -> Meta {
    let new =
        NewJournal { segment_size: 1 << 20, journal_id: 1, created_ns: 1, header_len: 64, limits: Limits::default() };
    crate::mapped::create_file(dir, META_FILE, META_LEN as u64, 0o600, |file| Meta::initialize(file, &new))
        .expect("create a test journal.meta");
    Meta::open(&dir.join(META_FILE), true).expect("open the test journal.meta")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_codec_splits_and_clamps_tripped_offsets() {
        let codec = TailCodec::new(1 << 20);
        let raw = codec.pack(3, 4096);
        assert_eq!(codec.unpack(raw), (3, 4096));
        assert_eq!(codec.position(raw), 3 * (1 << 20) + 4096);
        let tripped = codec.pack(3, (1 << 20) + 500);
        assert_eq!(codec.position(tripped), (4 << 20) + 64);
        let full = codec.pack(3, 1 << 20);
        assert_eq!(codec.position(full), (4 << 20) + 64, "a full segment's tail is the next first frame");
    }
}
