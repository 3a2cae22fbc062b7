//! Read-only views for tools: one summary per segment, and a frame walk that
//! shows every header (including damaged ones) instead of stopping at the
//! first bad frame as a consumer must.
//!
//! Owns nothing; reads segments through the same decoder as consumers. On a
//! live journal, retention may delete a segment while a scan runs: a deleted
//! segment is skipped (the walk goes on at the new first position), never
//! reported as an error.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::Result;
use crate::frame::{self, Decoded, FRAME_ALIGNMENT, HEADER_LEN, Word0};
use crate::recovery::{self, next_valid_frame};
use crate::segment::{SEGMENT_HEADER_LEN, Segment};
use crate::{Journal, Priority};

/// Where a segment stands relative to the tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentState {
    /// Wholly before the tail: no more writes.
    Sealed,
    /// Holds the tail.
    Active,
    /// Created ahead of need; nothing written yet.
    Prepared,
}

impl SegmentState {
    /// The lowercase name tools print (`"sealed"`, `"active"`, `"prepared"`).
    pub fn name(self) -> &'static str {
        match self {
            SegmentState::Sealed => "sealed",
            SegmentState::Active => "active",
            SegmentState::Prepared => "prepared",
        }
    }
}

/// One segment, as `backwater segments` shows it
/// ([`Journal::segment_infos`]).
#[derive(Clone, Debug)]
pub struct SegmentInfo {
    /// The segment's number ([`Segment::index`]).
    pub index: u64,
    /// The position of its first byte ([`Segment::base`]).
    pub base: u64,
    /// The segment file.
    pub path: PathBuf,
    /// Bytes from the segment start to the end of its last valid frame
    /// (header included).
    pub bytes_used: u64,
    /// Data frames that pass every check (padding not counted).
    pub records: u64,
    /// The timestamp (ns since the epoch) of its first valid record, if any.
    pub first_timestamp: Option<u64>,
    /// The timestamp (ns since the epoch) of its last valid record, if any.
    pub last_timestamp: Option<u64>,
    /// Where it stands relative to the tail.
    pub state: SegmentState,
    /// Holes or damaged frames found (see `backwater verify`; the rest of a
    /// live thread's reservation is not one).
    pub problems: usize,
    /// Bytes its file holds on disk: the segment size for a raw segment,
    /// the compressed file's length for a compressed one.
    pub disk_bytes: u64,
    /// Whether it is held compressed (read from its `.zseg` file).
    pub compressed: bool,
}

impl SegmentInfo {
    /// How many times smaller its file is than the bytes it holds up to its
    /// last frame (`bytes_used / disk_bytes`): 1.0 or below for a raw one.
    pub fn ratio(&self) -> f64 {
        self.bytes_used as f64 / self.disk_bytes.max(1) as f64
    }
}

/// What a frame walk found at one position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A committed record.
    Data,
    /// Filler that consumers skip (a segment's tail, an abandoned claim).
    Padding,
    /// Claimed, not yet committed.
    Pending,
    /// Fails its structural checks; `payload` is empty.
    Damaged,
}

/// One frame as `backwater dump` shows it ([`Journal::walk_frames`]).
#[derive(Clone, Debug)]
pub struct FrameView<'a> {
    /// The frame's position.
    pub position: u64,
    /// What the walk found there.
    pub kind: FrameKind,
    /// The priority in the header's flags (meaningful for data frames).
    pub priority: Priority,
    /// When a data frame was appended, in ns since the epoch; 0 for other
    /// kinds.
    pub timestamp: u64,
    /// Bytes the frame occupies, aligned: for a damaged frame, the run up to
    /// the next valid frame (or the segment's end), which the walk skips.
    pub aligned_len: usize,
    /// A data frame's payload (whether or not its CRC matches; without a
    /// keyed record's key); empty for other kinds.
    pub payload: &'a [u8],
    /// A keyed data frame's key; `None` for other frames.
    pub key: Option<&'a [u8]>,
    /// `false` for a data frame whose body (key and payload) fails its CRC.
    pub crc_ok: bool,
    /// Why the frame is damaged, if it is.
    pub fault: Option<String>,
}

impl Journal {
    /// One summary per segment file, oldest first (reads every frame). A
    /// segment deleted by retention while this runs is left out.
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) when the directory or a segment cannot
    /// be read; [`Error::Corrupt`](crate::Error::Corrupt) for a segment whose
    /// header fails its checks.
    pub fn segment_infos(&self) -> Result<Vec<SegmentInfo>> {
        let inner = &self.inner;
        let tail_index = self.tail_position() / inner.segment_size();
        let mut infos = Vec::new();
        for index in self.segment_indexes()? {
            let segment = match inner.read_segment(index) {
                Ok(segment) => segment,
                Err(deleted) if deleted.is_not_found() => continue,
                Err(other) => return Err(other),
            };
            let scan = recovery::scan(&segment);
            let state = match index {
                i if i < tail_index => SegmentState::Sealed,
                i if i == tail_index => SegmentState::Active,
                _ => SegmentState::Prepared,
            };
            infos.push(SegmentInfo {
                index,
                base: segment.base,
                path: segment.path().to_path_buf(),
                bytes_used: scan.end as u64,
                records: scan.records,
                first_timestamp: scan.first_timestamp,
                last_timestamp: scan.last_timestamp,
                state,
                // A reservation's rest is room a live thread holds, not a hole.
                problems: scan.holes.iter().filter(|&&(offset, _)| !recovery::is_reservation(&segment, offset)).count()
                    + scan.faults.len(),
                disk_bytes: segment.compressed().map_or(inner.segment_size(), |header| header.file_len()),
                compressed: segment.compressed().is_some(),
            });
        }
        Ok(infos)
    }

    /// The timestamp of the first record at or after `position` (a frame
    /// boundary, e.g. a cursor's), if there is one: how old the oldest record
    /// a consumer at `position` has yet to read is. `None` when it is caught
    /// up, or when the frames there cannot be read.
    pub fn first_record_timestamp(&self, position: u64) -> Option<u64> {
        let mut found = None;
        self.walk_frames(position, |frame| {
            if frame.kind == FrameKind::Data {
                found = Some(frame.timestamp);
            }
            found.is_none()
        })
        .ok()?;
        found
    }

    /// Walks frames from `from` (a frame boundary) to the tail, calling
    /// `visit` for each until it returns `false`. Damaged frames are shown
    /// and skipped to the next valid frame; padding is shown too. Positions
    /// before the oldest retained one start at it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let journal = backwater::Journal::open(dir.path(), backwater::Config::default().segment_size(1 << 20))?;
    /// use backwater::inspect::FrameKind;
    /// journal.publisher().append(b"hello")?;
    /// let mut kinds = Vec::new();
    /// journal.walk_frames(journal.first_position(), |frame| {
    ///     kinds.push((frame.kind, frame.payload.to_vec()));
    ///     true                                   // keep walking
    /// })?;
    /// assert_eq!(kinds, [(FrameKind::Data, b"hello".to_vec())]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotAFrameBoundary`](crate::Error::NotAFrameBoundary) when
    /// `from` is not aligned to a frame; [`Error::Io`](crate::Error::Io) or
    /// [`Error::Corrupt`](crate::Error::Corrupt) when a segment cannot be
    /// mapped.
    pub fn walk_frames(&self, from: u64, mut visit: impl FnMut(&FrameView<'_>) -> bool) -> Result<()> {
        let size = self.inner.segment_size();
        let tail = self.tail_position();
        let mut position = from.max(self.first_position());
        if !position.is_multiple_of(FRAME_ALIGNMENT as u64) || position % size < SEGMENT_HEADER_LEN {
            return Err(crate::Error::NotAFrameBoundary { position, reason: "not aligned to a frame".into() });
        }
        let mut segment: Option<Arc<Segment>> = None;
        while position < tail {
            let index = position / size;
            let segment = match segment.take() {
                Some(mapped) if mapped.index == index => segment.insert(mapped),
                _ => match self.inner.read_segment(index) {
                    Ok(mapped) => segment.insert(mapped),
                    Err(deleted) if deleted.is_not_found() && self.first_position() > position => {
                        position = self.first_position(); // deleted by retention meanwhile: go on
                        continue;
                    }
                    Err(other) => return Err(other),
                },
            };
            let offset = (position % size) as usize;
            let (view, next_offset) = view_at(segment, offset);
            if !visit(&view) {
                return Ok(());
            }
            position = crate::segment::next_position(position, next_offset - offset, size);
        }
        Ok(())
    }
}

/// The frame at `offset` and the offset where the walk continues.
fn view_at(segment: &Segment, offset: usize) -> (FrameView<'_>, usize) {
    let bytes = segment.bytes();
    let position = segment.base + offset as u64;
    let word = segment.word0(offset).load(Ordering::Acquire);
    let header = Word0::unpack(word);
    let mut view = FrameView {
        position,
        kind: FrameKind::Damaged,
        priority: frame::flags_priority(header.flags),
        timestamp: 0,
        aligned_len: 0,
        payload: &[],
        key: None,
        crc_ok: true,
        fault: None,
    };
    let decoded = match frame::decode(word, &bytes[offset..], position, false) {
        Ok(decoded) => decoded,
        Err(fault) => {
            let next = next_valid_frame(segment, offset + FRAME_ALIGNMENT).unwrap_or(bytes.len());
            view.aligned_len = next - offset;
            view.fault = Some(fault.to_string());
            return (view, next);
        }
    };
    match decoded {
        Decoded::Data { payload_len, key_len, aligned_len, timestamp, .. } => {
            let frame = &bytes[offset..];
            let start = frame::payload_offset(key_len);
            view.kind = FrameKind::Data;
            view.timestamp = timestamp;
            view.aligned_len = aligned_len;
            view.payload = &frame[start..start + payload_len];
            view.key = key_len.map(|len| &frame[frame::key_range(len)]);
            let body = &frame[HEADER_LEN..start + payload_len];
            view.crc_ok = frame::crc(body) == frame::read_u32(frame, frame::CRC_OFFSET);
            (view, offset + aligned_len)
        }
        Decoded::Padding { aligned_len } => {
            view.kind = FrameKind::Padding;
            view.aligned_len = aligned_len;
            (view, offset + aligned_len)
        }
        Decoded::Pending { claimed } => {
            let aligned_len = claimed.unwrap_or(FRAME_ALIGNMENT);
            view.kind = FrameKind::Pending;
            view.aligned_len = aligned_len;
            (view, offset + aligned_len)
        }
    }
}
