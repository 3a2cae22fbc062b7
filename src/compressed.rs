//! Compressed segment files: naming, the 64-byte header, and the zstd
//! codec that writes one from a sealed segment's bytes and reads it back.
//!
//! Owns: the layout of `{base:020}.zseg` files (docs/FORMAT.md) and every
//! call into zstd. Knows nothing of journals: `segment` opens a compressed
//! segment through [`decompress_into`], and `compressor` (the housekeeper's
//! step) writes one with [`write_temporary`] and decides when.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::file_header;
use crate::frame::{self, FIRST_FORMAT_VERSION};
use crate::mapped::{put_u32, put_u64};

/// Which segment a compressed file must hold.
pub use crate::file_header::Expected;

/// The first 8 bytes of every compressed segment file.
pub const MAGIC: &[u8; 8] = b"BACKWZSG";
/// Bytes before the zstd frame.
pub const HEADER_LEN: usize = 64;
/// The extension of compressed segment file names (the raw ones end in
/// [`crate::segment::SUFFIX`]).
pub const SUFFIX: &str = ".zseg";
/// How temporary files being written are named (`.tmp-`: recovery removes them).
const TEMP_PREFIX: &str = ".tmp-compress-";

// Bytes 0..40 and the CRC at 60 are the fields every segment header
// shares (`file_header`); this kind's own fields:
const RAW_LEN_AT: usize = 40;
const DATA_LEN_AT: usize = 48;
const DATA_CRC_AT: usize = 56;

/// The fields a compressed segment's header shares with a raw segment's.
const HEADER: file_header::Layout = file_header::Layout {
    what: "compressed segment",
    magic: MAGIC,
    len: HEADER_LEN,
    newest_version: FIRST_FORMAT_VERSION,
};

/// The file name of the compressed segment that starts at `base`.
pub fn file_name(base: u64) -> String {
    crate::naming::by_base(base, SUFFIX)
}

/// The base position encoded in a compressed segment's file name, if it is one.
pub fn parse_file_name(name: &str) -> Option<u64> {
    crate::naming::parse_base(name, SUFFIX)
}

/// What a compressed segment's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Bytes of the segment the file holds, from its first byte (the
    /// segment header) to where its trailing padding frame starts (every
    /// frame before, padding included); the rest of the segment is that
    /// one padding frame.
    pub raw_len: u64,
    /// Bytes of the zstd frame after the header.
    pub data_len: u64,
}

impl Header {
    /// The whole file's length.
    pub fn file_len(&self) -> u64 {
        HEADER_LEN as u64 + self.data_len
    }
}

/// Compresses `raw` (segment `expected`'s bytes up to its trailing padding)
/// at zstd `level` into a new temporary file in `dir`, synced, modified at
/// `modified` (the raw file's: a segment's age, which retention's replay
/// window measures, does not restart when it is compressed). Returns its
/// path (the caller renames it into place or removes it) and its header.
///
/// # Errors
/// [`Error::Io`] when the file cannot be written or synced, or zstd fails;
/// [`Error::InvalidConfig`] in a build without the `compression` feature.
pub fn write_temporary(
    dir: &Path,
    expected: Expected,
    raw: &[u8],
    level: i32,
    mode: u32,
    modified: std::time::SystemTime,
) -> Result<(PathBuf, Header)> {
    use std::os::unix::fs::PermissionsExt;
    let data = codec::compress(raw, level).map_err(|e| Error::io(dir, "zstd compress", e))?;
    let header = Header { raw_len: raw.len() as u64, data_len: data.len() as u64 };
    let temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, "create temporary file in", e))?;
    let path = temp.path().to_path_buf();
    let mut file = temp.as_file();
    file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(|e| Error::io(&path, "chmod", e))?;
    file.write_all(&header_bytes(expected, header, &data)).map_err(|e| Error::io(&path, "write", e))?;
    file.write_all(&data).map_err(|e| Error::io(&path, "write", e))?;
    file.set_modified(modified).map_err(|e| Error::io(&path, "set the modification time of", e))?;
    // On the media before the file can take its name.
    file.sync_all().map_err(|e| Error::io(&path, "fsync", e))?;
    let kept = temp.into_temp_path().keep().map_err(|e| Error::io(&path, "keep", e.error))?;
    Ok((kept, header))
}

/// Removes the temporary files compressors left (`.tmp-compress-*`).
/// Only for the holder of the compress lock: every one is written under
/// it, so those found then belong to a compressor that died (recovery
/// removes them too, but only runs when no writer is alive). Returns how
/// many went.
///
/// # Errors
/// [`Error::Io`] when the directory cannot be read.
pub(crate) fn remove_temporaries(dir: &Path) -> Result<usize> {
    let stale = crate::naming::paths_named(dir, TEMP_PREFIX)?;
    Ok(stale.iter().filter(|path| std::fs::remove_file(path).is_ok()).count())
}

/// Reads the compressed segment at `path`, checks it (header fields and
/// CRC, the zstd frame's CRC32, then zstd's own content checksum while
/// decompressing) and decompresses it into `out` (at least `raw_len`
/// bytes). Returns its header.
///
/// # Errors
/// [`Error::Corrupt`] naming the file for anything that fails a check;
/// [`Error::NewerFormat`] for a newer file version; [`Error::Io`] when it
/// cannot be read (`NotFound` when it does not exist).
pub fn decompress_into(path: &Path, expected: Expected, out: &mut [u8]) -> Result<Header> {
    // Never more than a segment's worth plus zstd's worst case: a huge file
    // there is damage, not something to read into memory.
    use std::io::Read;
    let (mut file, len) = crate::mapped::open_regular(path, false)?;
    let most = HEADER_LEN as u64 + expected.segment_size + expected.segment_size / 64 + (64 << 10);
    if len > most {
        let reason = format!("compressed segment is {len} bytes, more than a segment can compress to");
        return Err(Error::corrupt(path, expected.base, reason));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.read_to_end(&mut bytes).map_err(|e| Error::io(path, "read", e))?;
    let header = check(&bytes, path, expected)?;
    let corrupt = |reason: String| Error::corrupt(path, expected.base, reason);
    let Some(target) = out.get_mut(..header.raw_len as usize) else {
        return Err(corrupt(format!("raw length {} exceeds the segment size", header.raw_len)));
    };
    let data = &bytes[HEADER_LEN..];
    let written = codec::decompress(data, target).map_err(|e| match e.kind() {
        std::io::ErrorKind::Unsupported => Error::io(path, "decompress", e),
        _ => corrupt(format!("zstd: {e}")),
    })?;
    if written as u64 != header.raw_len {
        return Err(corrupt(format!("decompressed to {written} bytes, the header says {}", header.raw_len)));
    }
    Ok(header)
}

/// Reads and checks the header of the compressed segment at `path` (not
/// the data): for tools that count sizes.
///
/// # Errors
/// As [`decompress_into`], for the header's checks.
pub fn read_header(path: &Path, expected: Expected) -> Result<Header> {
    use std::io::Read;
    let mut bytes = [0u8; HEADER_LEN];
    let (mut file, len) = crate::mapped::open_regular(path, false)?;
    file.read_exact(&mut bytes).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Error::corrupt(path, expected.base, "compressed segment is truncated"),
        _ => Error::io(path, "read", e),
    })?;
    let header = check_header(&bytes, path, expected)?;
    if header.file_len() != len {
        let reason = format!("compressed segment is {len} bytes, its header says {}", header.file_len());
        return Err(Error::corrupt(path, expected.base, reason));
    }
    Ok(header)
}

fn header_bytes(expected: Expected, header: Header, data: &[u8]) -> [u8; HEADER_LEN] {
    let mut bytes = [0u8; HEADER_LEN];
    HEADER.write(&mut bytes, expected);
    put_u64(&mut bytes, RAW_LEN_AT, header.raw_len);
    put_u64(&mut bytes, DATA_LEN_AT, header.data_len);
    put_u32(&mut bytes, DATA_CRC_AT, crc32fast::hash(data));
    HEADER.seal(&mut bytes);
    bytes
}

/// Checks a whole file image: header, length and the data's CRC32.
fn check(bytes: &[u8], path: &Path, expected: Expected) -> Result<Header> {
    let header = check_header(bytes, path, expected)?;
    let corrupt = |reason: String| Error::corrupt(path, expected.base, reason);
    if header.file_len() != bytes.len() as u64 {
        return Err(corrupt(format!(
            "compressed segment is {} bytes, its header says {}",
            bytes.len(),
            header.file_len()
        )));
    }
    if crc32fast::hash(&bytes[HEADER_LEN..]) != frame::read_u32(bytes, DATA_CRC_AT) {
        return Err(corrupt("compressed data fails its CRC".into()));
    }
    Ok(header)
}

fn check_header(bytes: &[u8], path: &Path, expected: Expected) -> Result<Header> {
    HEADER.check(bytes, path, expected)?;
    let header = Header { raw_len: frame::read_u64(bytes, RAW_LEN_AT), data_len: frame::read_u64(bytes, DATA_LEN_AT) };
    // At least a segment header (64 bytes, like this one).
    if header.raw_len > expected.segment_size || header.raw_len < HEADER_LEN as u64 {
        let reason = format!("raw length {} out of range", header.raw_len);
        return Err(Error::corrupt(path, expected.base, reason));
    }
    Ok(header)
}

#[cfg(feature = "compression")]
mod codec {
    use std::io;

    /// One zstd frame with its content size and checksum.
    pub fn compress(raw: &[u8], level: i32) -> io::Result<Vec<u8>> {
        let mut compressor = zstd::bulk::Compressor::new(level)?;
        compressor.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
        compressor.compress(raw)
    }

    /// Decompresses one frame into `out`, checking zstd's checksum.
    pub fn decompress(data: &[u8], out: &mut [u8]) -> io::Result<usize> {
        zstd::bulk::Decompressor::new()?.decompress_to_buffer(data, out)
    }
}

#[cfg(not(feature = "compression"))]
mod codec {
    use std::io;

    fn unsupported() -> io::Error {
        io::Error::new(io::ErrorKind::Unsupported, "backwater was built without its `compression` feature")
    }

    pub fn compress(_raw: &[u8], _level: i32) -> io::Result<Vec<u8>> {
        Err(unsupported())
    }

    pub fn decompress(_data: &[u8], _out: &mut [u8]) -> io::Result<usize> {
        Err(unsupported())
    }
}
