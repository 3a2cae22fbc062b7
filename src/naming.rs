//! How segment files are named: by the position of their first byte, 20
//! decimal digits, so that `ls` sorts them in log order (Kafka's
//! convention), then a suffix that says which kind of file it is (a raw
//! segment, a compressed one).
//!
//! Owns the name format; `segment` and `compressed` own their suffixes
//! (and the prefixes of their temporary files, found with [`paths_named`]).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The name of the file of kind `suffix` for the segment that starts at `base`.
pub(crate) fn by_base(base: u64, suffix: &str) -> String {
    format!("{base:020}{suffix}")
}

/// The base position in a file name of kind `suffix`, if it is one.
pub(crate) fn parse_base(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Every file in `dir` whose name starts with `prefix`.
pub(crate) fn paths_named(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, "read directory", e))?;
    let matching = entries.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(prefix));
    Ok(matching.map(|e| e.path()).collect())
}
