//! Recovery and verification: walking a segment's frames to find the true
//! tail, holes left by dead claimers, and damaged frames.
//!
//! Owns: the segment scan (shared by recovery at open, [`verify`] and
//! `segments`), cutting a torn tail and padding holes. Recovery runs under the
//! journal lock and only when no other writer process is alive, so nothing
//! it pads or cuts can belong to a live claim. It never pads over a frame
//! that fails its checks in the middle of the data: that is corruption for
//! `verify` to report, not a crash artifact to hide.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::frame::{self, Decoded, FRAME_ALIGNMENT, Word0};
use crate::meta::{META_FILE, Meta};
use crate::process;
use crate::segment::{self, SEGMENT_HEADER_LEN, Segment, SegmentIdentity};
use crate::state::{JournalState, LOCK_FILE};

/// What one walk over a segment found.
#[derive(Debug, Default, Clone)]
pub struct SegmentScan {
    /// Data frames that passed every check.
    pub records: u64,
    /// Bytes from the segment start to the end of the last valid frame.
    pub end: usize,
    /// Offset after the last non-zero byte (past `end` if the tail is torn).
    pub dirty_end: usize,
    /// Uncommitted regions followed by committed frames: `(offset, len)`.
    pub holes: Vec<(usize, usize)>,
    /// Frames failing their checks with valid frames after them: `(offset, len, reason)`.
    pub faults: Vec<(usize, usize, String)>,
    /// What stopped the walk at `end`, if it was not the segment's end or clean zeros.
    pub torn: Option<String>,
    /// The walk stopped at a committed frame that fails its checks (a
    /// record a power loss tore): what lies after `end` held a record.
    /// Not so after a claim, or a slot whose word is still zero (a claimer
    /// or an exclusive publisher killed while it wrote its frame).
    pub torn_record: bool,
    /// The timestamp (ns since the epoch) of the first valid data frame, if any.
    pub first_timestamp: Option<u64>,
    /// The timestamp (ns since the epoch) of the last valid data frame, if any.
    pub last_timestamp: Option<u64>,
}

/// Walks every frame of `segment` from its first slot.
pub fn scan(segment: &Segment) -> SegmentScan {
    let bytes = segment.bytes();
    let size = bytes.len();
    let mut report = SegmentScan::default();
    let mut offset = SEGMENT_HEADER_LEN as usize;
    while offset < size {
        let word = segment.word0(offset).load(Ordering::Acquire);
        let position = segment.base + offset as u64;
        match frame::decode(word, &bytes[offset..], position, true) {
            Ok(Decoded::Data { aligned_len, timestamp, .. }) => {
                report.records += 1;
                report.first_timestamp.get_or_insert(timestamp);
                report.last_timestamp = Some(timestamp);
                offset += aligned_len;
            }
            Ok(Decoded::Padding { aligned_len }) => offset += aligned_len,
            other => {
                let vouched = frame::vouched_len(word, &other);
                let Some(next) = next_valid_frame(segment, offset + vouched) else {
                    if let Err(fault) = other {
                        report.torn = Some(fault.to_string());
                        report.torn_record = true;
                    } else if word != 0 {
                        report.torn = Some("claimed but never committed".into());
                    }
                    break;
                };
                match other {
                    Err(fault) => report.faults.push((offset, next - offset, fault.to_string())),
                    _ => report.holes.push((offset, next - offset)),
                }
                offset = next;
            }
        }
    }
    report.end = offset.min(size);
    report.dirty_end = last_non_zero(&bytes[report.end..]).map_or(report.end, |n| report.end + n + 1);
    if report.dirty_end > report.end && report.torn.is_none() {
        report.torn = Some("bytes after the last committed frame".into());
    }
    report
}

/// Whether the frame at `offset` is the unfilled rest of a reservation:
/// room a `ReservingPublisher` holds for its next records, no record.
pub(crate) fn is_reservation(segment: &Segment, offset: usize) -> bool {
    Word0::unpack(segment.word0(offset).load(Ordering::Acquire)).is_reservation()
}

/// The first offset at or after `from` where a committed, valid frame starts.
pub(crate) fn next_valid_frame(segment: &Segment, from: usize) -> Option<usize> {
    let bytes = segment.bytes();
    (from..bytes.len()).step_by(FRAME_ALIGNMENT).find(|&offset| {
        let word = segment.word0(offset).load(Ordering::Acquire);
        word != 0
            && matches!(
                frame::decode(word, &bytes[offset..], segment.base + offset as u64, true),
                Ok(Decoded::Data { .. } | Decoded::Padding { .. })
            )
    })
}

fn last_non_zero(bytes: &[u8]) -> Option<usize> {
    bytes.iter().rposition(|&b| b != 0)
}

/// Whether nothing was ever written after the segment header.
fn is_empty(segment: &Segment) -> bool {
    last_non_zero(&segment.bytes()[SEGMENT_HEADER_LEN as usize..]).is_none()
}

/// What recovery changed, from [`Journal::recovery_report`](crate::Journal::recovery_report)
/// (at open) or [`Journal::repair`](crate::Journal::repair).
#[derive(Debug, Default, Clone)]
pub struct RecoveryReport {
    /// Holes turned into padding: `(position, len)`.
    pub padded: Vec<(u64, usize)>,
    /// A torn tail zeroed: `(position, len)`.
    pub cut: Option<(u64, usize)>,
    /// Damaged frames replaced by padding: `(position, len, reason)`; at
    /// open, those past the last flush (torn by a power loss, never
    /// promised); [`Journal::repair`](crate::Journal::repair), every one.
    pub discarded: Vec<(u64, usize, String)>,
    /// Segments removed, by base position: past the data, those that could
    /// not be read (a header that never reached the media); below the first
    /// position, those retention had deleted when a power loss undid the
    /// unlink.
    pub removed: Vec<u64>,
    /// Bytes of records recovery took away: the damaged frames past the
    /// last flush it discarded, and a torn tail it cut when that began with
    /// a committed frame (one that begins with a claim, or with a header
    /// page the power loss took, is not counted, though records may lie
    /// further in it). Also counted in
    /// [`Stats::lost_bytes`](crate::Stats::lost_bytes).
    pub lost_bytes: u64,
    /// Cursors that pointed past the recovered tail, moved back to it.
    pub cursors_moved: Vec<String>,
    /// Segments found with both files, raw and compressed (a compression
    /// cut short): the file kept of each; the other was removed.
    pub duplicates: Vec<PathBuf>,
    /// The tail position recovery found (or kept): where the next record goes.
    pub tail_position: u64,
}

impl RecoveryReport {
    /// Whether recovery changed anything.
    pub fn changed(&self) -> bool {
        !self.padded.is_empty()
            || self.cut.is_some()
            || !self.discarded.is_empty()
            || !self.removed.is_empty()
            || !self.cursors_moved.is_empty()
            || !self.duplicates.is_empty()
    }
}

/// Finds the true tail after a crash (or a power loss), pads holes left by
/// dead claimers, pads damaged frames past the last flush, and zeroes a
/// torn tail. The caller holds the lock and no other writer is alive.
///
/// Everything below the position the last completed flush recorded is kept
/// as it is (damage there is corruption, for `verify` to report); past it,
/// every valid frame is kept, and damaged frames between them go.
pub(crate) fn recover(inner: &JournalState) -> Result<RecoveryReport> {
    remove_temporaries(&inner.dir)?;
    process::forget_all_sleepers(&inner.meta);
    let size = inner.segment_size();
    let mut report = RecoveryReport::default();
    keep_one_copy(inner, &mut report)?;
    let mut indexes = segment::list(&inner.dir, size)?;
    remove_deleted(inner, &mut indexes, &mut report)?;
    remove_unreadable_trailing(inner, &mut indexes, &mut report)?;
    let (Some(&first), Some(&last)) = (indexes.first(), indexes.last()) else {
        // No segment at all: an empty journal in a segment no position was
        // ever handed out in (positions only grow; the ring may have deleted
        // the tail's segment before a power loss kept its successor).
        let handed_out = inner.meta.tail_position().max(inner.meta.first_position().load(Ordering::Acquire));
        let tail_index = handed_out / size + u64::from(handed_out % size > SEGMENT_HEADER_LEN);
        inner.meta.raw_tail().store(inner.meta.tail.pack(tail_index, SEGMENT_HEADER_LEN), Ordering::Release);
        inner.meta.first_position().store(tail_index * size + SEGMENT_HEADER_LEN, Ordering::Release);
        report.tail_position = inner.meta.tail_position();
        move_cursors_back(inner, report.tail_position, &mut report)?;
        return Ok(report);
    };
    check_contiguous(&inner.dir, &indexes, size)?;
    inner.meta.first_position().store(first * size + SEGMENT_HEADER_LEN, Ordering::Release);
    let mut tail_index = last;
    while tail_index > first && is_empty(&Segment::open(&inner.dir, tail_index, inner.identity, true)?) {
        tail_index -= 1;
    }
    let flushed = inner.meta.flushed_position().load(Ordering::Acquire);
    // Holes only ever lie in the last two segments; damage from a power
    // loss anywhere past the last flush.
    let from = tail_index.saturating_sub(1).min(flushed / size).max(first);
    let (tail_index, end) = repair_from(inner, from, tail_index, flushed, &mut report)?;
    inner.meta.raw_tail().store(inner.meta.tail.pack(tail_index, end as u64), Ordering::Release);
    report.tail_position = inner.meta.tail_position();
    move_cursors_back(inner, report.tail_position, &mut report)?;
    if report.lost_bytes > 0 {
        // After the padding and the zeroes (msynced as they were written):
        // the count on the media never outgrows what the media lost.
        inner.meta.flush()?;
    }
    Ok(report)
}

/// Removes segments below the first position: retention moves the first
/// position past a segment before it unlinks it, and a power loss can undo
/// an unlink whose directory was not synced yet while the metadata page was
/// written back. Such a segment holds bytes nobody promised (torn, possibly),
/// and the first position never moves backwards.
fn remove_deleted(inner: &JournalState, indexes: &mut Vec<u64>, report: &mut RecoveryReport) -> Result<()> {
    let size = inner.segment_size();
    let first = inner.meta.first_position().load(Ordering::Acquire);
    // Retention only ever sets a segment's first frame, at or below the
    // tail: any other value is a damaged word, rebuilt from the segments
    // below (step 2), never a reason to delete them.
    if first % size != SEGMENT_HEADER_LEN || inner.meta.check_positions().is_err() {
        return Ok(());
    }
    let first_index = first / size;
    let deleted = indexes.iter().take_while(|&&index| index < first_index).count();
    for index in indexes.drain(..deleted) {
        segment::remove_files(&inner.dir, index, size)?;
        report.removed.push(index * size);
    }
    Ok(())
}

/// A segment with both files, raw and compressed, is one whose compression
/// a crash interrupted after the compressed copy took its name (it was
/// complete and synced before): keeps that copy when it passes every check
/// (it is on the media, where the raw file may not all be), else the raw
/// file. Either way exactly one copy is left.
fn keep_one_copy(inner: &JournalState, report: &mut RecoveryReport) -> Result<()> {
    let size = inner.segment_size();
    let files = segment::list_files(&inner.dir, size)?;
    for pair in files.windows(2).filter(|pair| pair[0].index == pair[1].index) {
        let index = pair[0].index;
        let (kept, removed) = match Segment::open_compressed(&inner.dir, index, inner.identity) {
            Ok(_) => (segment::compressed_path_of(&inner.dir, index, size), segment::path_of(&inner.dir, index, size)),
            Err(_) => (segment::path_of(&inner.dir, index, size), segment::compressed_path_of(&inner.dir, index, size)),
        };
        crate::mapped::remove_durably(&removed)?;
        report.duplicates.push(kept);
    }
    Ok(())
}

/// Removes segments past the tail's whose header cannot be read: prepared,
/// but their header never reached the media (headers are synced before a
/// segment is linked, so this only follows a power loss on an older version,
/// or a damaged disk). They hold nothing a flush promised. A damaged segment
/// at or below the tail's is corruption: opening refuses it.
fn remove_unreadable_trailing(inner: &JournalState, indexes: &mut Vec<u64>, report: &mut RecoveryReport) -> Result<()> {
    let tail_index = inner.meta.tail_index();
    while let Some(&last) = indexes.last().filter(|&&last| last > tail_index) {
        match Segment::open(&inner.dir, last, inner.identity, true) {
            Ok(_) => break,
            Err(Error::Corrupt { path, .. }) => {
                crate::mapped::remove_durably(&path)?;
                report.removed.push(last * inner.segment_size());
                indexes.pop();
            }
            Err(other) => return Err(other),
        }
    }
    Ok(())
}

/// Repairs segments `from..=tail_index`: pads holes and the damaged frames
/// past `flushed`, seals full segments, and zeroes what follows the tail's
/// last valid frame. Returns the tail's segment and the offset of its end.
fn repair_from(
    inner: &JournalState,
    from: u64,
    tail_index: u64,
    flushed: u64,
    report: &mut RecoveryReport,
) -> Result<(u64, usize)> {
    for index in from..=tail_index {
        if index < tail_index && !segment::path_of(&inner.dir, index, inner.segment_size()).exists() {
            // Compressed: sealed with every frame committed and checked, and
            // synced before it took its name. `verify` reads it.
            continue;
        }
        let segment = Segment::open(&inner.dir, index, inner.identity, true)?;
        let scan = scan(&segment);
        discard_unpromised(inner, &segment, &scan, flushed, report)?;
        let end = repair_segment(inner, &segment, &scan, index == tail_index, report)?;
        if index == tail_index {
            return Ok((index, end));
        }
    }
    Ok((tail_index, SEGMENT_HEADER_LEN as usize))
}

/// Turns the damaged frames past the flushed position that valid frames
/// follow into padding, counting them as lost. Such a frame was never
/// promised: a record committed after the last flush began, which the
/// power loss tore (its header page on the media, not all of its payload).
/// The frames after it stay, and some were promised: appended before a
/// flush that a claim still open then kept from recording them (it records
/// the committed prefix only), or returned under `Flush::Always`. (Damage
/// below the flushed position is corruption of promised data: left for
/// readers and `verify` to report.) The padding is on the media before the
/// loss is counted: else a second power loss could bring the frame back,
/// with the count, to be discarded and counted again.
fn discard_unpromised(
    inner: &JournalState,
    segment: &Segment,
    scan: &SegmentScan,
    flushed: u64,
    report: &mut RecoveryReport,
) -> Result<()> {
    for (offset, len, reason) in scan.faults.iter().filter(|fault| segment.base + fault.0 as u64 >= flushed) {
        segment.write_padding(*offset, *len);
        segment.file().flush_range(*offset, *len)?;
        report.discarded.push((segment.base + *offset as u64, *len, reason.clone()));
        count_lost(inner, *len, report);
    }
    Ok(())
}

/// Counts `len` bytes of records recovery took away (in the metadata too;
/// `recover` msyncs it once it is done).
fn count_lost(inner: &JournalState, len: usize, report: &mut RecoveryReport) {
    report.lost_bytes += len as u64;
    inner.meta.lost_bytes().fetch_add(len as u64, Ordering::Relaxed);
}

/// Cursors whose commit reached the media while the records they had read
/// did not: one past the recovered tail goes back to the tail (the records
/// appended from there on are new ones it has not seen); one inside a hole
/// or a damaged frame that recovery padded goes to the end of the padding.
fn move_cursors_back(inner: &JournalState, tail: u64, report: &mut RecoveryReport) -> Result<()> {
    let size = inner.segment_size();
    for name in crate::cursor::list(&inner.dir)? {
        let Ok(cursor) = crate::cursor::CursorFile::open(&inner.dir, &name, inner.identity.journal_id, true) else {
            continue;
        };
        let position = cursor.position();
        let discarded = report.discarded.iter().map(|&(at, len, _)| (at, len));
        let mut padding = report.padded.iter().copied().chain(discarded);
        let inside_padding = padding.find(|&(at, len)| position > at && position < at + len as u64);
        let moved = match inside_padding {
            _ if position > tail => tail,
            Some((at, len)) => segment::next_position(at, len, size),
            None => continue,
        };
        cursor.store(moved);
        cursor.flush()?;
        report.cursors_moved.push(name);
    }
    Ok(())
}

/// Removes the `.tmp-*` files a crashed process left: files it was building
/// and spare segments it was keeping for reuse. Nobody else has the journal
/// open, so none of them is in use.
fn remove_temporaries(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, "read directory", e))?;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Pads holes; in the tail segment also zeroes what follows the last valid
/// frame (counted as lost when it starts with a torn record);
/// in a sealed segment pads from there to the end. Returns the end.
fn repair_segment(
    inner: &JournalState,
    segment: &Segment,
    scan: &SegmentScan,
    is_tail: bool,
    report: &mut RecoveryReport,
) -> Result<usize> {
    pad_holes(segment, scan.holes.iter(), report);
    if scan.dirty_end > scan.end {
        let len = scan.dirty_end - scan.end;
        zero_durably(segment, scan.end, len)?;
        report.cut = Some((segment.base + scan.end as u64, len));
        if scan.torn_record {
            count_lost(inner, len, report);
        }
    }
    let size = segment.bytes().len();
    if !is_tail && scan.end < size {
        segment.write_padding(scan.end, size - scan.end);
        report.padded.push((segment.base + scan.end as u64, size - scan.end));
    }
    Ok(scan.end)
}

/// Zeroes what recovery cuts, on the media before anything is appended
/// there: else a second power loss could bring the cut frames back after
/// records appended since (the next flush syncs only up to the tail).
fn zero_durably(segment: &Segment, offset: usize, len: usize) -> Result<()> {
    segment.file().zero(offset, len);
    segment.file().flush_range(offset, len)
}

/// Turns holes left by dead claimers into padding.
fn pad_holes<'a>(segment: &Segment, holes: impl Iterator<Item = &'a (usize, usize)>, report: &mut RecoveryReport) {
    for &(offset, len) in holes {
        segment.write_padding(offset, len);
        report.padded.push((segment.base + offset as u64, len));
    }
}

/// `verify --repair`'s work, with the journal open and no other writer
/// alive: pads every hole and replaces every damaged frame in every segment
/// up to the tail with padding, adding what it changed to `report` (which
/// starts as what opening recovered).
pub(crate) fn repair(inner: &JournalState, mut report: RecoveryReport) -> Result<RecoveryReport> {
    let _guard = inner.lock()?;
    let size = inner.segment_size();
    let tail_index = inner.meta.tail.segment_index(inner.meta.tail_position());
    for index in segment::list(&inner.dir, size)?.into_iter().filter(|&i| i <= tail_index) {
        let segment = Segment::open(&inner.dir, index, inner.identity, true)?;
        let scan = scan(&segment);
        pad_holes(&segment, scan.holes.iter(), &mut report);
        for (offset, len, reason) in scan.faults {
            segment.write_padding(offset, len);
            report.discarded.push((segment.base + offset as u64, len, reason));
        }
    }
    report.tail_position = inner.meta.tail_position();
    Ok(report)
}

/// After an `ExclusivePublisher` died: moves the tail word over what it had
/// committed past it (it stores a frame's header word, then the tail) and
/// zeroes the frame it may have died writing, so fetch-add claimers find
/// untouched slots again. The caller holds the journal lock and the publisher
/// lock, so nothing else appends meanwhile; readers only read below the tail
/// or committed frames, and this keeps every committed frame.
pub(crate) fn settle_tail(inner: &JournalState) -> Result<()> {
    let codec = inner.meta.tail;
    let (index, tail_offset) = codec.unpack(inner.meta.raw_tail().load(Ordering::Acquire));
    let segment = match Segment::open(&inner.dir, index, inner.identity, true) {
        Ok(segment) => segment,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(other) => return Err(other),
    };
    let size = segment.bytes().len();
    let mut offset = tail_offset as usize;
    while offset < size {
        let word = segment.word0(offset).load(Ordering::Acquire);
        match frame::decode(word, &segment.bytes()[offset..], segment.base + offset as u64, true) {
            Ok(Decoded::Data { aligned_len, .. } | Decoded::Padding { aligned_len }) => offset += aligned_len,
            _ => break,
        }
    }
    if offset < size {
        let torn_end = size.min(offset + frame::aligned_frame_len(inner.max_payload));
        segment.file().zero(offset, torn_end - offset);
    }
    inner.meta.raw_tail().store(codec.pack(index, offset as u64), Ordering::Release);
    Ok(())
}

fn check_contiguous(dir: &Path, indexes: &[u64], size: u64) -> Result<()> {
    for pair in indexes.windows(2) {
        if pair[1] != pair[0] + 1 {
            let missing = pair[0] + 1;
            return Err(Error::corrupt(
                segment::path_of(dir, missing, size),
                missing * size,
                format!("segment missing between {} and {}", pair[0] * size, pair[1] * size),
            ));
        }
    }
    Ok(())
}

/// One problem [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file with the problem (empty when the error named none).
    pub path: PathBuf,
    /// The journal position of the damaged frame or hole (a segment's base
    /// for its header; 0 when there is no position).
    pub position: u64,
    /// What is wrong, for a person to read.
    pub reason: String,
}

/// The result of [`verify`].
#[derive(Debug, Default, Clone)]
pub struct VerifyReport {
    /// Segment files opened and walked.
    pub segments: u64,
    /// Of those, compressed segments (each checked whole: its header, its
    /// CRC and zstd's checksum, then every frame's CRC like a raw one's).
    pub compressed: u64,
    /// Data frames that passed every check, in all segments.
    pub records: u64,
    /// Every problem found; empty for a sound journal.
    pub findings: Vec<Finding>,
}

/// Checks the metadata, every segment header and every frame, read-only.
/// `on_segment(done, total)` is called before each segment (for progress).
///
/// An uncommitted region after the last committed frame of the tail segment
/// is reported only when no writer has the journal open (a live writer may
/// be filling it), and so is the unfilled rest of a
/// [`ReservingPublisher`](crate::ReservingPublisher)'s reservation anywhere;
/// everywhere else a hole or a bad frame is a finding.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let journal = backwater::Journal::open(dir.path(), backwater::Config::default().segment_size(1 << 20))?;
/// journal.publisher().append(b"checked")?;
/// let report = backwater::recovery::verify(journal.dir(), |_done, _total| {})?;
/// assert!(report.findings.is_empty());
/// assert_eq!(report.records, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// Only for what stops the check as a whole: [`Error::NotAJournal`],
/// [`Error::NewerFormat`] or [`Error::Io`] for the metadata or the
/// directory. A damaged segment is a [`Finding`], not an error.
pub fn verify(dir: &Path, mut on_segment: impl FnMut(u64, u64)) -> Result<VerifyReport> {
    let meta = Meta::open(&dir.join(META_FILE), false)?;
    let size = meta.segment_size;
    let identity = SegmentIdentity { journal_id: meta.journal_id, segment_size: size };
    let indexes = segment::list(dir, size)?;
    let writer_alive = crate::writers::any_alive(dir, &dir.join(LOCK_FILE))?;
    let tail_index = meta.tail.segment_index(meta.tail_position());
    let mut report = VerifyReport::default();
    if let Err(error) = check_contiguous(dir, &indexes, size) {
        report.findings.push(Finding::from(error));
    }
    for (done, &index) in indexes.iter().enumerate() {
        on_segment(done as u64, indexes.len() as u64);
        let segment = match Segment::open(dir, index, identity, false) {
            Ok(segment) => segment,
            // Deleted by retention since the listing (a live journal): not a finding.
            Err(deleted) if deleted.is_not_found() && index < meta.first_position().load(Ordering::Acquire) / size => {
                continue;
            }
            Err(error) => {
                report.findings.push(Finding::of_segment(error, dir, index, size));
                continue;
            }
        };
        report.segments += 1;
        report.compressed += u64::from(segment.compressed().is_some());
        let scan = scan(&segment);
        report.records += scan.records;
        let mut note = |offset: usize, reason: String| {
            report.findings.push(Finding {
                path: segment.path().into(),
                position: segment.base + offset as u64,
                reason,
            })
        };
        for (offset, _, reason) in &scan.faults {
            note(*offset, reason.clone());
        }
        // With a writer alive, the tail's segment and the one before it are
        // still being written: a claim not yet committed there is in flight.
        // So is, anywhere, the rest of a reservation: room a live thread's
        // `ReservingPublisher` holds for its next records (no record yet).
        let settled = !writer_alive || index + 1 < tail_index;
        let held = |offset: usize| writer_alive && is_reservation(&segment, offset);
        for &(offset, len) in scan.holes.iter().filter(|&&(offset, _)| settled && !held(offset)) {
            note(offset, format!("{len} bytes claimed but never committed, before committed frames"));
        }
        let sealed = index < tail_index;
        if sealed && settled && scan.end < segment.bytes().len() && !held(scan.end) {
            let why = scan.torn.unwrap_or_else(|| "an uncommitted gap runs to the segment end".into());
            note(scan.end, format!("sealed segment ends early: {why}"));
        } else if let Some(why) = scan.torn.filter(|_| !sealed && !writer_alive) {
            note(scan.end, format!("torn tail: {why}"));
        }
    }
    Ok(report)
}

impl From<Error> for Finding {
    fn from(error: Error) -> Finding {
        match error {
            Error::Corrupt { path, position, reason } => Finding { path, position, reason },
            Error::NotAJournal { path, reason } => Finding { path, position: 0, reason },
            Error::Io { ref path, .. } => Finding { path: path.clone(), position: 0, reason: error.to_string() },
            other => Finding { path: PathBuf::new(), position: 0, reason: other.to_string() },
        }
    }
}

impl Finding {
    /// `error`, met opening segment `index`: about that segment's file
    /// (unless the error names one) and its first position at the least.
    fn of_segment(error: Error, dir: &Path, index: u64, size: u64) -> Finding {
        let mut finding = Finding::from(error);
        if finding.path.as_os_str().is_empty() {
            finding.path = segment::path_of(dir, index, size);
        }
        finding.position = finding.position.max(index * size);
        finding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_that_cannot_be_opened_is_a_finding_naming_its_file_at_its_base() {
        let dir = Path::new("/journal");
        let zseg = dir.join(crate::compressed::file_name(2 << 16));
        let unsupported = std::io::Error::new(std::io::ErrorKind::Unsupported, "built without `compression`");
        let finding = Finding::of_segment(Error::io(&zseg, "decompress", unsupported), dir, 2, 1 << 16);
        assert_eq!((finding.path, finding.position), (zseg, 2 << 16));
        let finding = Finding::of_segment(Error::InvalidConfig("why".into()), dir, 3, 1 << 16);
        assert_eq!((finding.path, finding.position), (segment::path_of(dir, 3, 1 << 16), 3 << 16));
    }
}
