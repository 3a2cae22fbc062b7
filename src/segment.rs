//! Segment files: naming, the 64-byte segment header, creation (fully
//! allocated, then linked into place) and validated opening.
//!
//! Owns: one segment's file and mapping, and the layout of its header.
//! Frames inside it are laid out by `frame`; who writes where is decided by
//! `publisher`, `consumer` and `recovery`.

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::FlockOperation;

use crate::compressed;
use crate::error::{Error, Result};
use crate::file_header;
use crate::frame::{self, FORMAT_VERSION, Word0};
use crate::mapped::{MappedFile, create_file, put_u64, refuse_symlink};

/// The first 8 bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"BACKWSEG";
/// Bytes at the start of every segment before its first frame.
pub const SEGMENT_HEADER_LEN: u64 = 64;
/// The extension of segment file names (see [`file_name`]).
pub const SUFFIX: &str = ".seg";

// Bytes 0..40 and the CRC at 60 are the fields every segment header
// shares (`file_header`); this kind's own fields:
const CREATED_AT: usize = 40;

/// The fields a segment header shares with a compressed segment's.
const HEADER: file_header::Layout = file_header::Layout {
    what: "segment",
    magic: MAGIC,
    len: SEGMENT_HEADER_LEN as usize,
    newest_version: FORMAT_VERSION,
};

/// The file name of the segment that starts at `base`: 20 decimal digits, so
/// that `ls` sorts segments in log order (Kafka's convention).
pub fn file_name(base: u64) -> String {
    crate::naming::by_base(base, SUFFIX)
}

/// The base position encoded in a segment file name, if it is one.
pub fn parse_file_name(name: &str) -> Option<u64> {
    crate::naming::parse_base(name, SUFFIX)
}

/// The position after a frame of `aligned_len` bytes at `position`: the
/// next frame's, past the next segment's header when the frame ends its
/// segment (a position is never inside a header).
#[inline]
pub fn next_position(position: u64, aligned_len: usize, segment_size: u64) -> u64 {
    let next = position + aligned_len as u64;
    if next & (segment_size - 1) == 0 { next + SEGMENT_HEADER_LEN } else { next }
}

/// The identity every segment of a journal shares.
#[derive(Clone, Copy, Debug)]
pub struct SegmentIdentity {
    /// The journal's random id ([`Journal::id`](crate::Journal::id)), in
    /// every segment header: a segment of another journal is refused.
    pub journal_id: u64,
    /// The journal's segment size in bytes: every segment file is exactly
    /// this long.
    pub segment_size: u64,
}

impl SegmentIdentity {
    /// What the header of this journal's segment at `base` must say, in its
    /// raw file or its compressed one.
    pub(crate) fn expected(self, base: u64) -> file_header::Expected {
        file_header::Expected { base, journal_id: self.journal_id, segment_size: self.segment_size }
    }
}

/// A mapped segment file.
pub struct Segment {
    /// The segment's number: it holds positions `index * segment_size` up to
    /// the next segment's.
    pub index: u64,
    /// The position of its first byte (`index * segment_size`), also its
    /// file name; the first frame is at `base +` [`SEGMENT_HEADER_LEN`].
    pub base: u64,
    file: MappedFile,
    populated: Once,
    /// Read from a compressed segment file (decompressed into memory that
    /// this `Segment` owns): that file's header.
    compressed: Option<compressed::Header>,
}

impl Segment {
    /// Creates segment `index` (fully allocated, header written), or opens it
    /// if another handle created it first.
    pub fn create(dir: &Path, index: u64, identity: SegmentIdentity, mode: u32) -> Result<Segment> {
        let base = index * identity.segment_size;
        let name = file_name(base);
        let created = create_file(dir, &name, identity.segment_size, mode, |file| {
            file.write(0, &header_bytes(base, identity));
            Ok(())
        })?;
        match created {
            Some(file) => {
                // Nobody else can have the new file yet: this cannot be refused.
                file.try_lock(FlockOperation::NonBlockingLockShared)?;
                Ok(Segment { index, base, file, populated: Once::new(), compressed: None })
            }
            None => Segment::open(dir, index, identity, true),
        }
    }

    /// Maps segment `index` and checks its size and header. A segment that
    /// was compressed (no raw file, or one being replaced) is read from its
    /// compressed file instead: see [`Segment::open_compressed`].
    pub fn open(dir: &Path, index: u64, identity: SegmentIdentity, writable: bool) -> Result<Segment> {
        let base = index * identity.segment_size;
        let path = dir.join(file_name(base));
        refuse_symlink(&path)?;
        let file = match MappedFile::open(&path, writable, None) {
            Ok(file) => file,
            Err(missing) if missing.is_not_found() => return Segment::open_compressed(dir, index, identity),
            Err(other) => return Err(other),
        };
        // In use from here on: a recycler that wants this file now waits for
        // the mapping to go.
        if !file.try_lock(FlockOperation::NonBlockingLockShared)?
            && let Some(replaced) = wait_for_shared_lock(&file, &path, dir, index, identity)?
        {
            return Ok(replaced);
        }
        if file.len() as u64 != identity.segment_size {
            return Err(Error::corrupt(
                &path,
                base,
                format!(
                    "segment file is {} bytes, the journal's segment size is {}",
                    file.len(),
                    identity.segment_size
                ),
            ));
        }
        if let Err(error) = check_header(file.bytes(), &path, base, identity) {
            // Recycled between our open and our lock: it is another segment now.
            return Err(if file.still_at(&path) { error } else { recycled(&path) });
        }
        Ok(Segment { index, base, file, populated: Once::new(), compressed: None })
    }

    /// Reads the compressed segment `index` (`{base:020}.zseg`): checks it
    /// and decompresses it into memory of the segment's size that the
    /// returned `Segment` owns, its trailing padding frame rebuilt. Readers
    /// use it like a mapped one; nothing writes to it.
    ///
    /// # Errors
    /// [`Error::Io`] (`NotFound` when there is no such file);
    /// [`Error::Corrupt`] naming the file when it fails a check (its header,
    /// its CRC, zstd's checksum, or the segment header inside).
    pub fn open_compressed(dir: &Path, index: u64, identity: SegmentIdentity) -> Result<Segment> {
        let base = index * identity.segment_size;
        let path = compressed_path_of(dir, index, identity.segment_size);
        refuse_symlink(&path)?;
        let expected = identity.expected(base);
        let len =
            usize::try_from(identity.segment_size).map_err(|_| Error::not_a_journal(&path, "segment too large"))?;
        let mut header = None;
        let file = MappedFile::anonymous_filled(len, &path, |image| {
            header = Some(compressed::decompress_into(&path, expected, image)?);
            Ok(())
        })?;
        let Some(header) = header else { return Err(Error::corrupt(&path, base, "not decompressed")) };
        check_header(file.bytes(), &path, base, identity)?;
        let segment = Segment { index, base, file, populated: Once::new(), compressed: Some(header) };
        segment.populated.call_once(|| {});
        let padding_at = header.raw_len as usize;
        if padding_at < len {
            if !padding_at.is_multiple_of(frame::FRAME_ALIGNMENT) {
                return Err(Error::corrupt(&path, base, format!("raw length {padding_at} is not frame-aligned")));
            }
            segment.write_padding(padding_at, len - padding_at);
        }
        Ok(segment)
    }

    /// The compressed file's header when this segment was read from one.
    pub fn compressed(&self) -> Option<compressed::Header> {
        self.compressed
    }

    /// A segment over an in-memory copy of `image` (whose length must be a
    /// power of two of at least 64 KiB), for fuzzing the frame walk.
    #[doc(hidden)]
    pub fn from_image(image: &[u8], index: u64) -> Result<Segment> {
        let file = MappedFile::anonymous(image)?;
        let base = index * image.len() as u64;
        let segment = Segment { index, base, file, populated: Once::new(), compressed: None };
        segment.populated.call_once(|| {});
        Ok(segment)
    }

    /// The segment file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The mapped file, for raw reads and writes.
    #[inline]
    pub fn file(&self) -> &MappedFile {
        &self.file
    }

    /// Every byte of the segment (see `MappedFile::bytes` for the rules).
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        self.file.bytes()
    }

    /// The atomic header word of the frame at `offset`.
    #[inline]
    pub fn word0(&self, offset: usize) -> &AtomicU64 {
        self.file.atomic_u64(offset)
    }

    /// [`Segment::word0`] without its run-time check, for a reader's loop.
    ///
    /// # Safety
    /// `offset` is a multiple of 8 and `offset + 8 <= self.bytes().len()`.
    #[inline]
    pub unsafe fn word0_unchecked(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: the caller's contract is `atomic_u64_unchecked`'s.
        unsafe { self.file.atomic_u64_unchecked(offset) }
    }

    /// Writes a committed padding frame over `[offset, offset + len)`.
    ///
    /// `len` is a multiple of the frame alignment; the caller owns the range.
    pub fn write_padding(&self, offset: usize, len: usize) {
        self.file.write(offset + frame::POSITION_OFFSET, &(self.base + offset as u64).to_le_bytes());
        self.word0(offset).store(Word0::padding(len).pack(), Ordering::Release);
    }

    /// Whether [`Segment::populate`] has run to the end.
    pub fn is_populated(&self) -> bool {
        self.populated.is_completed()
    }

    /// Faults the whole segment in, writable, so appends never page-fault.
    /// Returns once it is done, also when another thread is doing it.
    pub fn populate(&self) {
        self.populated.call_once(|| {
            // Best effort: on a kernel without MADV_POPULATE_WRITE the
            // publisher simply takes the faults itself.
            if self.file.writable() {
                let _ = self.file.populate_for_write();
            }
        });
    }
}

/// A retired segment file rebuilt as segment `index` (faulted in, zeroed,
/// new header) but still under its spare name; [`RebuiltSpare::install`]
/// puts it in place.
/// Its blocks and pages already exist, so building it costs a memset where
/// a new file costs allocating them.
pub struct RebuiltSpare {
    index: u64,
    base: u64,
    file: MappedFile,
}

impl RebuiltSpare {
    /// Rebuilds `spare`, unless a reader (in any process) still has it
    /// mapped: then `Ok(None)`, and it stays as it is, so that a payload never
    /// changes under a handler.
    pub fn new(spare: &Path, index: u64, identity: SegmentIdentity) -> Result<Option<RebuiltSpare>> {
        let file = MappedFile::open(spare, true, Some(identity.segment_size))?;
        if !file.try_lock(FlockOperation::NonBlockingLockExclusive)? {
            return Ok(None);
        }
        let base = index * identity.segment_size;
        let _ = file.populate_for_write(); // one call instead of a fault per page
        file.zero(0, file.len());
        file.write(0, &header_bytes(base, identity));
        // The new header is on the media before the file takes the new name
        // (`install` then makes the name durable). Stale frames left in the
        // body by a power loss carry other positions: readers reject them.
        file.flush_range(0, crate::mapped::HEADER_PAGE)?;
        Ok(Some(RebuiltSpare { index, base, file }))
    }

    /// Where it is now (its spare name, until [`RebuiltSpare::install`]).
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Renames it to its segment's name; gives it back when that segment
    /// exists already (another handle created it).
    pub fn install(mut self, dir: &Path) -> Result<std::result::Result<Segment, RebuiltSpare>> {
        if !self.file.rename_noclobber(dir, &file_name(self.base))? {
            return Ok(Err(self));
        }
        // A segment like any other now: readers may map it.
        self.file.try_lock(FlockOperation::LockShared)?;
        let (index, base, file) = (self.index, self.base, self.file);
        let segment = Segment { index, base, file, populated: Once::new(), compressed: None };
        segment.populated.call_once(|| {});
        Ok(Ok(segment))
    }
}

/// How long opening a segment waits for a shared lock that another handle
/// holds exclusively while the file keeps its name. Those holds are short
/// (a compressor probing for readers, a recycled file being installed):
/// one longer than this is reported, never taken for a missing segment.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Segment `index`'s raw `file` (at `path`) is locked exclusively by
/// another handle: a compressor probing whether anyone is inside it (the
/// file stays), replacing it by its compressed copy (which then exists), or
/// a recycler that renamed it to rebuild it as another segment. Waits
/// (bounded) for the shared lock while the file keeps its name: `None` once
/// `file` holds it, or the compressed segment once there is one.
///
/// # Errors
/// `NotFound` when the file lost its name and there is no compressed copy
/// (deleted or recycled: the segment is gone); `WouldBlock` when the lock
/// is still held after [`LOCK_PATIENCE`].
fn wait_for_shared_lock(
    file: &MappedFile,
    path: &Path,
    dir: &Path,
    index: u64,
    identity: SegmentIdentity,
) -> Result<Option<Segment>> {
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    let mut idle = crate::idle::Idle::default();
    loop {
        match Segment::open_compressed(dir, index, identity) {
            Ok(segment) => return Ok(Some(segment)),
            Err(error) if !error.is_not_found() => return Err(error),
            Err(_) => {}
        }
        if !file.still_at(path) {
            // Its compressed copy takes its name before the raw file loses it.
            return Segment::open_compressed(dir, index, identity)
                .map(Some)
                .map_err(|error| if error.is_not_found() { recycled(path) } else { error });
        }
        if std::time::Instant::now() >= deadline {
            let held = std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                format!("locked exclusively by another handle for over {LOCK_PATIENCE:?}"),
            );
            return Err(Error::io(path, "lock (shared)", held));
        }
        idle.idle(Some(deadline));
        if file.try_lock(FlockOperation::NonBlockingLockShared)? {
            return Ok(None);
        }
    }
}

/// What opening a segment that was recycled meanwhile reports: the segment
/// the caller asked for is gone, as if deleted.
fn recycled(path: &Path) -> Error {
    let gone = std::io::Error::new(std::io::ErrorKind::NotFound, "recycled as another segment");
    Error::io(path, "open", gone)
}

fn header_bytes(base: u64, identity: SegmentIdentity) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    HEADER.write(&mut header, identity.expected(base));
    put_u64(&mut header, CREATED_AT, frame::now_ns());
    HEADER.seal(&mut header);
    header
}

/// Validates a segment header image against what the journal expects.
pub fn check_header(bytes: &[u8], path: &Path, base: u64, identity: SegmentIdentity) -> Result<()> {
    HEADER.check(bytes, path, identity.expected(base))
}

/// The segment indexes present in `dir`, raw or compressed, sorted (other
/// files are ignored; a segment with both files is listed once).
pub fn list(dir: &Path, segment_size: u64) -> Result<Vec<u64>> {
    let mut indexes: Vec<u64> = list_files(dir, segment_size)?.into_iter().map(|file| file.index).collect();
    indexes.dedup();
    Ok(indexes)
}

/// One segment file found in a journal directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentFile {
    /// The segment's number.
    pub index: u64,
    /// Whether it is the compressed file (`.zseg`) rather than the raw one.
    pub compressed: bool,
    /// Its length in bytes, as the directory says.
    pub len: u64,
}

/// The segments of a sorted listing (see [`list_files`]) that are held
/// compressed only: a `.zseg` and no `.seg` (one with both is still being
/// replaced, or was cut short, and counts as raw).
pub fn compressed_only(files: &[SegmentFile]) -> impl Iterator<Item = &SegmentFile> {
    files
        .iter()
        .enumerate()
        .filter(|&(at, file)| file.compressed && (at == 0 || files[at - 1].index != file.index))
        .map(|(_, file)| file)
}

/// Every segment file in `dir`, raw and compressed, sorted by index (a
/// raw file before the compressed one of the same segment).
///
/// A listing is not a snapshot: a directory of more than a few hundred
/// entries is read in several `getdents` calls, and a segment renamed
/// between two of them (compressed: its `.zseg` linked where the listing
/// had already read, its `.seg` unlinked where it had not yet) is under
/// neither name. Segments are contiguous, so such a segment is a gap in the
/// listing, or just below its oldest one (compression goes oldest first):
/// each is looked up by both names before it is left out.
pub fn list_files(dir: &Path, segment_size: u64) -> Result<Vec<SegmentFile>> {
    Ok(list_disk_files(dir, segment_size)?.segments)
}

/// The files that hold a journal's disk, from one listing of `dir`.
pub(crate) struct DiskFiles {
    /// As [`list_files`] gives them.
    pub segments: Vec<SegmentFile>,
    /// Spare files, any handle's (segment-sized).
    pub spares: u64,
    /// Retired segments: deleted, still mapped by a reader (segment-sized).
    pub retired: u64,
}

/// [`list_files`], and the spare and retired files of the same listing: a
/// segment renamed to a spare or retired meanwhile is counted once.
pub(crate) fn list_disk_files(dir: &Path, segment_size: u64) -> Result<DiskFiles> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, "read directory", e))?;
    let mut files = Vec::new();
    let (mut spares, mut retired) = (0, 0);
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, "read directory", e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        let (base, compressed) = match (parse_file_name(&name), compressed::parse_file_name(&name)) {
            (Some(base), _) => (base, false),
            (None, Some(base)) => (base, true),
            (None, None) => {
                spares += u64::from(name.starts_with(SPARE_PREFIX));
                retired += u64::from(name.starts_with(RETIRED_PREFIX));
                continue;
            }
        };
        if base % segment_size != 0 {
            return Err(Error::not_a_journal(
                entry.path(),
                format!("segment name {base} is not a multiple of the segment size {segment_size}"),
            ));
        }
        // Gone since the listing: its length does not matter any more.
        let len = entry.metadata().map_or(0, |metadata| metadata.len());
        files.push(SegmentFile { index: base / segment_size, compressed, len });
    }
    files.sort_unstable_by_key(|file| (file.index, file.compressed));
    Ok(DiskFiles { segments: fill_gaps(dir, segment_size, files), spares, retired })
}

/// Adds to a sorted listing the segments it missed that exist (see
/// [`list_files`]): those in its gaps, and those just below its oldest.
fn fill_gaps(dir: &Path, segment_size: u64, files: Vec<SegmentFile>) -> Vec<SegmentFile> {
    let Some(oldest) = files.first().map(|file| file.index) else { return files };
    let mut found = Vec::new();
    let mut below = oldest;
    while let Some(index) = below.checked_sub(1) {
        let before = found.len();
        look_up(dir, segment_size, index, &mut found);
        if found.len() == before {
            break;
        }
        below = index;
    }
    for pair in files.windows(2) {
        for index in pair[0].index + 1..pair[1].index {
            look_up(dir, segment_size, index, &mut found);
        }
    }
    if found.is_empty() {
        return files;
    }
    let mut files = files;
    files.append(&mut found);
    files.sort_unstable_by_key(|file| (file.index, file.compressed));
    files
}

/// Adds segment `index`'s files that exist (by `stat`) to `found`.
fn look_up(dir: &Path, segment_size: u64, index: u64, found: &mut Vec<SegmentFile>) {
    for (path, compressed) in
        [(path_of(dir, index, segment_size), false), (compressed_path_of(dir, index, segment_size), true)]
    {
        if let Ok(metadata) = std::fs::symlink_metadata(&path) {
            found.push(SegmentFile { index, compressed, len: metadata.len() });
        }
    }
}

/// The path of segment `index` in the journal directory `dir`.
pub fn path_of(dir: &Path, index: u64, segment_size: u64) -> PathBuf {
    dir.join(file_name(index * segment_size))
}

/// The path of segment `index`'s compressed file in `dir`.
pub fn compressed_path_of(dir: &Path, index: u64, segment_size: u64) -> PathBuf {
    dir.join(compressed::file_name(index * segment_size))
}

/// Unlinks segment `index`'s files, raw and compressed, durably; `Ok(true)`
/// if there was one.
pub(crate) fn remove_files(dir: &Path, index: u64, segment_size: u64) -> Result<bool> {
    let raw = crate::mapped::remove_durably(&path_of(dir, index, segment_size))?;
    let compressed = crate::mapped::remove_durably(&compressed_path_of(dir, index, segment_size))?;
    Ok(raw || compressed)
}

/// How spare segment files are named (`.tmp-`: recovery removes them).
const SPARE_PREFIX: &str = ".tmp-spare-";

/// How deleted segments that a reader still has mapped are named until the
/// last mapping goes (`.tmp-`: recovery removes them).
const RETIRED_PREFIX: &str = ".tmp-retired-";

/// Where the consumed segment `index` waits as a spare, to be rebuilt.
pub(crate) fn spare_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{SPARE_PREFIX}{index}"))
}

/// Where the deleted segment `index` waits for its last reader to unmap it.
pub(crate) fn retired_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{RETIRED_PREFIX}{index}"))
}

/// Every spare file in `dir` (any handle's).
pub(crate) fn spare_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    crate::naming::paths_named(dir, SPARE_PREFIX)
}

/// Every retired segment file in `dir`.
pub(crate) fn retired_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    crate::naming::paths_named(dir, RETIRED_PREFIX)
}

/// Whether anyone has a file mapped, by its `flock` (every `Segment` holds
/// its file's lock shared).
pub(crate) enum Mappings {
    /// Nobody: the file, locked exclusively until dropped.
    None(std::fs::File),
    Some,
    /// The file is gone.
    Gone,
}

pub(crate) fn mappings_of(path: &Path) -> Result<Mappings> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Mappings::Gone),
        Err(e) => return Err(Error::io(path, "open", e)),
    };
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Mappings::None(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(Mappings::Some),
        Err(e) => Err(Error::io(path, "flock", e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_that_missed_a_segment_renamed_meanwhile_finds_it_by_name() {
        const SIZE: u64 = 64 << 10;
        let dir = tempfile::tempdir().unwrap();
        let file = |index: u64, compressed: bool| {
            let path =
                if compressed { compressed_path_of(dir.path(), index, SIZE) } else { path_of(dir.path(), index, SIZE) };
            std::fs::write(path, vec![0u8; if compressed { 100 } else { 10 }]).unwrap();
            SegmentFile { index, compressed, len: if compressed { 100 } else { 10 } }
        };
        // 3 and 4 were compressed, the oldest, 3, is held both ways.
        let all = vec![file(3, false), file(3, true), file(4, true), file(5, false), file(6, false), file(7, false)];
        // A listing that read neither name of 3 (below its oldest) nor of 5
        // or 6 (a gap) finds them; one that missed nothing is unchanged.
        let partial = vec![all[2], all[5]];
        assert_eq!(fill_gaps(dir.path(), SIZE, partial), all);
        assert_eq!(fill_gaps(dir.path(), SIZE, all.clone()), all);
        assert_eq!(list_files(dir.path(), SIZE).unwrap(), all);
        assert_eq!(fill_gaps(dir.path(), SIZE, Vec::new()), Vec::new());
    }

    #[test]
    fn names_sort_like_positions_and_parse_back() {
        assert_eq!(file_name(1 << 20), "00000000000001048576.seg");
        assert_eq!(parse_file_name(&file_name(123 << 16)), Some(123 << 16));
        assert_eq!(parse_file_name("0001.seg"), None);
        assert_eq!(parse_file_name("0000000000000000000x.seg"), None);
    }
}
