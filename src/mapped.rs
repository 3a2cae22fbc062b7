//! A file mapped `MAP_SHARED`, with typed atomic accessors, and the one way
//! backwater creates files: build under a temporary name, then link into place.
//!
//! Owns: the raw mapping and every `unsafe` pointer cast on it. Metadata,
//! cursor and segment files are all `MappedFile`s; what their bytes mean lives
//! in their own modules.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};
use crate::sync_trace::{self, SyncEvent};

/// A shared, writable (or read-only) mapping of a whole file.
pub struct MappedFile {
    map: MmapRaw,
    path: PathBuf,
    writable: bool,
    /// The open file (none for an anonymous mapping): kept for the `flock`
    /// that says this mapping is in use (`Segment`).
    file: Option<File>,
}

/// Opens `path`, which must be a regular file, and returns it with its
/// length. Opened non-blocking, so that a FIFO or a device put where a
/// journal file belongs is refused instead of blocking the open (or a read)
/// forever; that changes nothing for a regular file.
///
/// # Errors
/// [`Error::Io`] when it cannot be opened (`NotFound` when it does not
/// exist); [`Error::NotAJournal`] for anything but a regular file.
pub fn open_regular(path: &Path, writable: bool) -> Result<(File, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .read(true)
        .write(writable)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| Error::io(path, "open", e))?;
    let metadata = file.metadata().map_err(|e| Error::io(path, "stat", e))?;
    if !metadata.file_type().is_file() {
        return Err(Error::not_a_journal(path, "not a regular file"));
    }
    Ok((file, metadata.len()))
}

impl MappedFile {
    /// Maps the whole of `path`, which must be exactly `expected_len` bytes
    /// (when given).
    pub fn open(path: &Path, writable: bool, expected_len: Option<u64>) -> Result<MappedFile> {
        let (file, len) = open_regular(path, writable)?;
        if let Some(expected) = expected_len
            && len != expected
        {
            return Err(Error::not_a_journal(
                path,
                format!("file is {len} bytes, expected {expected} (truncated or foreign file)"),
            ));
        }
        if len == 0 {
            return Err(Error::not_a_journal(path, "file is empty"));
        }
        Self::map(file, path, writable, len)
    }

    fn map(file: File, path: &Path, writable: bool, len: u64) -> Result<MappedFile> {
        let len = usize::try_from(len).map_err(|_| Error::not_a_journal(path, "file too large to map"))?;
        let mut options = MmapOptions::new();
        options.len(len);
        let map = if writable { options.map_raw(&file) } else { options.map_raw_read_only(&file) };
        let map = map.map_err(|e| Error::io(path, "mmap", e))?;
        Ok(MappedFile { map, path: path.to_path_buf(), writable, file: Some(file) })
    }

    /// An anonymous mapping holding a copy of `bytes` (for fuzzing the
    /// readers without files).
    pub fn anonymous(bytes: &[u8]) -> Result<MappedFile> {
        Self::anonymous_filled(bytes.len(), Path::new("<memory>"), |map| {
            map.copy_from_slice(bytes);
            Ok(())
        })
    }

    /// An anonymous, writable mapping of `len` zero bytes standing for the
    /// file `path`, whose start `fill` writes (a decompressed segment: the
    /// pages `fill` does not touch cost no memory).
    pub fn anonymous_filled(len: usize, path: &Path, fill: impl FnOnce(&mut [u8]) -> Result<()>) -> Result<MappedFile> {
        let mut map = MmapOptions::new().len(len.max(1)).map_anon().map_err(|e| Error::io(path, "mmap", e))?;
        fill(&mut map[..len])?;
        Ok(MappedFile { map: MmapRaw::from(map), path: path.to_path_buf(), writable: true, file: None })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn writable(&self) -> bool {
        self.writable
    }

    /// The whole mapping as bytes.
    ///
    /// Other threads and processes may be writing parts of it concurrently;
    /// callers read only regions published through an acquire load (a committed
    /// frame) or treat what they read as untrusted (recovery, verify).
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is valid for `len` bytes for as long as `self`
        // lives. Concurrent writers exist (it is a shared file), which is why
        // every reader validates what it reads (length, position, CRC) and
        // only trusts bytes after an acquire load of the frame's length word.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.map.len()) }
    }

    /// An atomic `u64` at `offset` (a multiple of 8, inside the mapping).
    #[inline]
    pub fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        assert!(offset.is_multiple_of(8) && offset + 8 <= self.map.len(), "atomic_u64 at {offset}");
        // SAFETY: just checked.
        unsafe { self.atomic_u64_unchecked(offset) }
    }

    /// `atomic_u64` without its check, for the exclusive publisher's hot path.
    ///
    /// # Safety
    /// `offset` is a multiple of 8 and `offset + 8 <= self.len()`.
    #[inline]
    pub unsafe fn atomic_u64_unchecked(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset.is_multiple_of(8) && offset + 8 <= self.map.len());
        // SAFETY: in bounds and 8-aligned by the caller's contract (the map is
        // page-aligned); AtomicU64 has the layout of u64; the mapping outlives
        // the returned reference, which borrows self.
        unsafe { &*(self.map.as_ptr().add(offset) as *const AtomicU64) }
    }

    /// An atomic `u32` at `offset` (a multiple of 4, inside the mapping).
    #[inline]
    pub fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        assert!(offset.is_multiple_of(4) && offset + 4 <= self.map.len(), "atomic_u32 at {offset}");
        // SAFETY: as for atomic_u64, with 4-byte alignment.
        unsafe { &*(self.map.as_ptr().add(offset) as *const AtomicU32) }
    }

    /// `atomic_u32` without its check, for the metadata's hot words.
    ///
    /// # Safety
    /// `offset` is a multiple of 4 and `offset + 4 <= self.len()`.
    #[inline]
    pub unsafe fn atomic_u32_unchecked(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset.is_multiple_of(4) && offset + 4 <= self.map.len());
        // SAFETY: in bounds and 4-aligned by the caller's contract (the map is
        // page-aligned); AtomicU32 has the layout of u32; the mapping outlives
        // the returned reference, which borrows self.
        unsafe { &*(self.map.as_ptr().add(offset) as *const AtomicU32) }
    }

    /// Copies `data` into the mapping at `offset`.
    ///
    /// The caller must own that byte range (a claimed frame, or a file not yet
    /// visible to anyone else); the function checks bounds and writability.
    #[inline]
    pub fn write(&self, offset: usize, data: &[u8]) {
        assert!(self.writable, "write to a read-only mapping");
        assert!(offset + data.len() <= self.map.len(), "write past the end of the mapping");
        // SAFETY: just checked.
        unsafe { self.write_unchecked(offset, data) }
    }

    /// `write` without its checks, for the exclusive publisher's hot path.
    ///
    /// # Safety
    /// The mapping is writable and `offset + data.len() <= self.len()`.
    #[inline]
    pub unsafe fn write_unchecked(&self, offset: usize, data: &[u8]) {
        debug_assert!(self.writable && offset + data.len() <= self.map.len());
        // SAFETY: in bounds of a writable mapping by the caller's contract;
        // the range is owned by the caller (claimed via the tail counter, or
        // past the tail under the exclusive publisher lock), so no other
        // writer touches it, and readers only read it after the release store
        // of the frame's length word.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.map.as_mut_ptr().add(offset), data.len()) }
    }

    /// Tries to `flock` the file (`NonBlockingLockShared` or
    /// `NonBlockingLockExclusive`, or `LockShared` to turn an exclusive lock
    /// into a shared one); `Ok(false)` when another holder refuses it. The
    /// lock lasts as long as this mapping.
    pub fn try_lock(&self, operation: rustix::fs::FlockOperation) -> Result<bool> {
        let Some(file) = &self.file else { return Ok(true) };
        match rustix::fs::flock(file, operation) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
            Err(e) => Err(Error::io(&self.path, "flock", e.into())),
        }
    }

    /// Whether `path` still names the file this mapping was made from (it
    /// may have been renamed or unlinked since).
    pub fn still_at(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Some(file) = &self.file else { return false };
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(mapped), Ok(named)) => mapped.ino() == named.ino() && mapped.dev() == named.dev(),
            _ => false,
        }
    }

    /// Renames the mapped file to `dir/name` unless that exists (`Ok(false)`,
    /// nothing changed): how a recycled file, rebuilt under a spare name,
    /// takes its place without replacing anything.
    pub fn rename_noclobber(&mut self, dir: &Path, name: &str) -> Result<bool> {
        let final_path = dir.join(name);
        let (cwd, no_replace) = (rustix::fs::CWD, rustix::fs::RenameFlags::NOREPLACE);
        match rustix::fs::renameat_with(cwd, &self.path, cwd, &final_path, no_replace) {
            Ok(()) => {
                sync_dir(dir)?;
                self.path = final_path;
                Ok(true)
            }
            Err(rustix::io::Errno::EXIST) => Ok(false),
            Err(e) => Err(Error::io(&final_path, "rename", e.into())),
        }
    }

    /// Zeroes `len` bytes at `offset` (the caller owns the range).
    pub fn zero(&self, offset: usize, len: usize) {
        assert!(self.writable && offset + len <= self.map.len(), "zero past the end of the mapping");
        // SAFETY: bounds and writability checked; the range is the caller's.
        unsafe { std::ptr::write_bytes(self.map.as_mut_ptr().add(offset), 0, len) }
    }

    /// A mutable view of `len` bytes at `offset` for a zero-copy claim.
    ///
    /// # Safety
    /// The caller must own the range exclusively for the lifetime of the
    /// returned slice (a claimed, uncommitted frame).
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        assert!(self.writable && offset + len <= self.map.len());
        // SAFETY: bounds checked; exclusivity is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(offset), len) }
    }

    /// msync the byte range (rounded to pages by memmap2).
    pub fn flush_range(&self, offset: usize, len: usize) -> Result<()> {
        if len == 0 || !self.writable {
            return Ok(());
        }
        self.map.flush_range(offset, len).map_err(|e| Error::io(&self.path, "msync", e))?;
        sync_trace::record(SyncEvent::Range { path: &self.path, file: self.file.as_ref(), offset, len });
        Ok(())
    }

    /// Faults every page in writable (MADV_POPULATE_WRITE), so that the first
    /// write to each page does not take a page fault on the hot path. Done a
    /// megabyte at a time: each call holds the process's mmap lock, and a
    /// long hold stalls every other thread that maps or faults meanwhile.
    pub fn populate_for_write(&self) -> io::Result<()> {
        const STEP: usize = 1 << 20;
        for offset in (0..self.map.len()).step_by(STEP) {
            let len = STEP.min(self.map.len() - offset);
            self.map.advise_range(memmap2::Advice::PopulateWrite, offset, len)?;
        }
        Ok(())
    }
}

/// Creates `dir/name` holding `len` bytes prepared by `init`, atomically: the
/// file is built under a temporary name, fully allocated (fallocate, so a
/// full disk fails here and never later as SIGBUS), its first page synced,
/// then linked into place without replacing anything, and the directory
/// synced.
///
/// Returns the new file's mapping, or `Ok(None)` when another handle created
/// `name` first.
pub fn create_file(
    dir: &Path,
    name: &str,
    len: u64,
    mode: u32,
    init: impl FnOnce(&MappedFile) -> Result<()>,
) -> Result<Option<MappedFile>> {
    let final_path = dir.join(name);
    let temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, "create temporary file in", e))?;
    let file = temp.as_file();
    file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(|e| Error::io(temp.path(), "chmod", e))?;
    rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len)
        .map_err(|e| Error::io(temp.path(), "fallocate", e.into()))?;
    let clone = file.try_clone().map_err(|e| Error::io(temp.path(), "dup", e))?;
    let mut mapped = MappedFile::map(clone, temp.path(), true, len)?;
    init(&mapped)?;
    // The header (every file keeps it in its first page) reaches the media
    // before the name does, so a name never stands for an unreadable file.
    mapped.flush_range(0, mapped.len().min(HEADER_PAGE))?;
    match temp.persist_noclobber(&final_path) {
        Ok(_) => {
            sync_dir(dir)?;
            mapped.path = final_path;
            Ok(Some(mapped))
        }
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(Error::io(&final_path, "link", e.error)),
    }
}

/// Opens (creating if needed) the lock file `name` in `dir`: a file that is
/// only ever `flock`ed, never read or written.
pub(crate) fn open_lock_file(dir: &Path, name: &str, mode: u32) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    refuse_symlink(&path)?;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .open(&path)
        .map_err(|e| Error::io(&path, "open", e))
}

/// Refuses a symlink where a journal file should be, so that a journal
/// directory cannot be used to read or write files outside it.
pub fn refuse_symlink(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(Error::not_a_journal(
            path,
            "is a symbolic link; backwater does not follow links inside a journal directory",
        )),
        _ => Ok(()),
    }
}

/// The first page of a file: where metadata, cursor and segment files keep
/// their headers.
pub const HEADER_PAGE: usize = 4096;

/// fsyncs the directory `dir`, so the links, renames and unlinks done in it
/// survive a power loss.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let handle = File::open(dir).map_err(|e| Error::io(dir, "open directory", e))?;
    handle.sync_all().map_err(|e| Error::io(dir, "fsync directory", e))?;
    sync_trace::record(SyncEvent::Directory { path: dir });
    Ok(())
}

/// Unlinks `path` and makes that durable, so segments disappear in the order
/// they were deleted even across a power loss (never leaving a gap).
/// `Ok(false)` if it did not exist.
pub fn remove_durably(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(path, "delete", e)),
    }
    sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    Ok(true)
}

/// Writes a little-endian value into a byte buffer (header builders).
pub fn put_u64(buf: &mut [u8], at: usize, value: u64) {
    buf[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

pub fn put_u32(buf: &mut [u8], at: usize, value: u32) {
    buf[at..at + 4].copy_from_slice(&value.to_le_bytes());
}
