//! How segment files are named: by the position of their first byte, 20
//! decimal digits, so that `ls` sorts them in log order (Kafka's
//! convention), then a suffix that says which kind of file it is (a raw
//! segment, a compressed one).
//!
//! Owns the name format; `segment` and `compressed` own their suffixes.

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
