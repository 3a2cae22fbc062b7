//! The file header descriptor: what the headers of backwater's files have
//! in common (docs/FORMAT.md). Segment and compressed segment headers both
//! start with 8 bytes of magic, the format version, the header's length,
//! the segment's base position, the journal's id and its segment size;
//! every header that has a CRC (those two and the metadata's) ends with the
//! CRC32 of the bytes before it.
//!
//! Owns: where those shared fields are, writing and checking them, and
//! sealing a header with its CRC. Each kind of segment file owns its
//! [`Layout`] (its magic, header length, newest version and what its
//! messages call it) and its other fields: this module knows neither kind,
//! so that `segment` and `compressed` share it rather than each other.

use std::path::Path;

use crate::error::{Error, Result};
use crate::frame::{self, FIRST_FORMAT_VERSION};
use crate::mapped::{put_u32, put_u64};

/// Which segment a file must hold, raw or compressed: what its header
/// (and its name) must say.
#[derive(Clone, Copy, Debug)]
pub struct Expected {
    /// The segment's base position (also in its name).
    pub base: u64,
    /// The journal's id.
    pub journal_id: u64,
    /// The journal's segment size.
    pub segment_size: u64,
}

// Where the shared fields are, in both kinds of segment header.
const VERSION_AT: usize = 8;
const LEN_AT: usize = 12;
const BASE_AT: usize = 16;
const JOURNAL_ID_AT: usize = 24;
const SEGMENT_SIZE_AT: usize = 32;
/// Where a segment header's CRC is: it covers every byte before it.
const CRC_AT: usize = 60;

/// What one kind of segment file puts in the shared fields of its header,
/// and what its messages call it.
pub(crate) struct Layout {
    /// What messages call the file ("segment", "compressed segment").
    pub what: &'static str,
    /// The first 8 bytes of every such file.
    pub magic: &'static [u8; 8],
    /// The header's length in bytes.
    pub len: usize,
    /// The newest format version a reader of such files understands.
    pub newest_version: u32,
}

impl Layout {
    /// Writes the shared fields into a new header image: the magic, the
    /// version this build writes ([`FIRST_FORMAT_VERSION`]), the header's
    /// length, and `expected`'s base, journal id and segment size. The file's
    /// own fields go in next, then [`Layout::seal`].
    pub fn write(&self, image: &mut [u8], expected: Expected) {
        image[..8].copy_from_slice(self.magic);
        put_u32(image, VERSION_AT, FIRST_FORMAT_VERSION);
        put_u32(image, LEN_AT, self.len as u32);
        put_u64(image, BASE_AT, expected.base);
        put_u64(image, JOURNAL_ID_AT, expected.journal_id);
        put_u64(image, SEGMENT_SIZE_AT, expected.segment_size);
    }

    /// Writes the header CRC over everything before it (see [`seal`]).
    pub fn seal(&self, image: &mut [u8]) {
        seal(image, CRC_AT);
    }

    /// Checks a header image: that it is intact (magic, a version this build
    /// reads, CRC), then that it is `expected`'s (journal id, base, segment
    /// size).
    ///
    /// # Errors
    /// [`Error::Corrupt`] at `expected.base`, naming `path` and the check
    /// that failed; [`Error::NewerFormat`] for a version newer than the
    /// layout's `newest_version`.
    pub fn check(&self, bytes: &[u8], path: &Path, expected: Expected) -> Result<()> {
        self.check_intact(bytes, path, expected.base)?;
        self.check_belongs(bytes, path, expected)
    }

    fn check_intact(&self, bytes: &[u8], path: &Path, base: u64) -> Result<()> {
        let what = self.what;
        let corrupt = |reason: String| Error::corrupt(path, base, reason);
        if bytes.len() < self.len || &bytes[..8] != self.magic {
            return Err(corrupt(format!("{what} header has a bad magic (not a backwater {what})")));
        }
        let version = frame::read_u32(bytes, VERSION_AT);
        if version > self.newest_version {
            return Err(Error::NewerFormat { path: path.into(), found: version, supported: self.newest_version });
        }
        if crc32fast::hash(&bytes[..CRC_AT]) != frame::read_u32(bytes, CRC_AT) {
            return Err(corrupt(format!("{what} header fails its CRC")));
        }
        Ok(())
    }

    fn check_belongs(&self, bytes: &[u8], path: &Path, expected: Expected) -> Result<()> {
        let what = self.what;
        let corrupt = |reason: String| Error::corrupt(path, expected.base, reason);
        let found_id = frame::read_u64(bytes, JOURNAL_ID_AT);
        if found_id != expected.journal_id {
            return Err(corrupt(format!(
                "{what} belongs to journal {found_id:#018x}, not {:#018x} (copied from another journal?)",
                expected.journal_id
            )));
        }
        let found_base = frame::read_u64(bytes, BASE_AT);
        if found_base != expected.base {
            return Err(corrupt(format!("{what} header says base {found_base}, its name says {}", expected.base)));
        }
        if frame::read_u64(bytes, SEGMENT_SIZE_AT) != expected.segment_size {
            return Err(corrupt(format!("{what} header has another segment size")));
        }
        Ok(())
    }
}

/// Writes at `crc_at` the CRC32 of the header bytes before it.
pub(crate) fn seal(header: &mut [u8], crc_at: usize) {
    let crc = crc32fast::hash(&header[..crc_at]);
    put_u32(header, crc_at, crc);
}
