//! The records `backwater-stress write` appends, and their check:
//!
//! `id u32 | seq u64 | sent monotonic ns u64 | filler | crc32 u32`,
//! little-endian; the filler is derived from the seq (never zeroes, so a torn
//! record looks like garbage, not like free space) and the CRC covers every
//! byte before it. A reader can so tell a changed or torn payload; the soak
//! tells a foreign one (another record's, intact) by comparing the position
//! it was read at with the one its writer reported.

/// The shortest record: the numbers and the CRC.
pub const MIN_LEN: usize = 24;

const CRC_LEN: usize = 4;

/// Fills `record` (whose length is the record's) as writer `id`'s record `seq`.
pub fn encode(record: &mut [u8], id: u32, seq: u64, sent_ns: u64) {
    let len = record.len();
    record[..4].copy_from_slice(&id.to_le_bytes());
    record[4..12].copy_from_slice(&seq.to_le_bytes());
    record[12..20].copy_from_slice(&sent_ns.to_le_bytes());
    for (i, byte) in record[20..len - CRC_LEN].iter_mut().enumerate() {
        *byte = 0xA5 ^ (seq as u8).wrapping_add(i as u8);
    }
    let crc = crc32fast::hash(&record[..len - CRC_LEN]);
    record[len - CRC_LEN..].copy_from_slice(&crc.to_le_bytes());
}

/// The writer id and seq of an intact record, or why it is not one.
pub fn check(payload: &[u8]) -> Result<(u32, u64), String> {
    let len = payload.len();
    if len < MIN_LEN {
        return Err(format!("{len} bytes, shorter than a record"));
    }
    let (body, crc) = payload.split_at(len - CRC_LEN);
    let stored = u32::from_le_bytes(crc.try_into().map_err(|_| "no CRC")?);
    if crc32fast::hash(body) != stored {
        return Err("CRC mismatch".into());
    }
    let id = u32::from_le_bytes(body[..4].try_into().map_err(|_| "no id")?);
    let seq = u64::from_le_bytes(body[4..12].try_into().map_err(|_| "no seq")?);
    Ok((id, seq))
}

/// The length of record `seq` when lengths vary in `min..=max`: a function
/// of the seq, so that rotations fall at every offset.
pub fn len_of(seq: u64, min: usize, max: usize) -> usize {
    let spread = (max.max(min) - min + 1) as u64;
    min + (splitmix64(seq) % spread) as usize
}

/// A small deterministic generator for the soak's chaos (no dependency).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// Seeded from the clock and the process id: each process its own chaos.
    pub fn from_entropy() -> Rng {
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        Rng(ts.tv_nsec as u64 ^ (u64::from(std::process::id()) << 32))
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix64(self.0)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A duration in `min_ms..max_ms`.
    pub fn millis(&mut self, min_ms: u64, max_ms: u64) -> std::time::Duration {
        std::time::Duration::from_millis(min_ms + self.below(max_ms.saturating_sub(min_ms)))
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
