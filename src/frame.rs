//! The frame descriptor: layout constants, the header word, and a pure decoder.
//!
//! Owns: how one record is laid out inside a segment (see `docs/FORMAT.md`).
//! Touches: nothing but the bytes it is given. The appender (`publisher`) and the
//! readers (`consumer`, `recovery`) both go through these helpers, so the layout
//! lives in exactly one place.
//!
//! ```text
//! 0      4    5     6       8          16          24     28       32
//! +------+----+-----+-------+----------+-----------+------+--------+---------
//! |length|type|flags| owner | position | timestamp |  crc | zero   | payload…
//! +------+----+-----+-------+----------+-----------+------+--------+---------
//!  \____ word 0 (u64, atomic) ____/
//!
//! a keyed record (flags bit 1, FLAG_KEYED), from byte 32:
//! +---------------+-----------+---------
//! | key len (u16) | key bytes | payload…      (the CRC covers all three)
//! +---------------+-----------+---------
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use crate::Priority;

/// The newest on-disk format version this build reads (every file header
/// carries a version: metadata, segments, cursors, compressed segments).
///
/// Version 2 is a journal that may hold compressed segments: its metadata
/// says 2 from the moment compression is turned on, so that a build that
/// does not know compressed segments refuses it rather than taking them for
/// missing ones. Version 3 is a cursor file whose consumer has read
/// conflated windows (it holds a conflated-through mark). Everything else is
/// still written as version 1.
pub const FORMAT_VERSION: u32 = 3;

/// The version of the metadata of a journal that may hold compressed
/// segments (raised to it when compression is turned on).
pub(crate) const COMPRESSED_FORMAT_VERSION: u32 = 2;

/// The version of a cursor file holding a conflated-through mark (raised to
/// it when the mark is first set): a build older than the mark would move
/// the cursor back without forgetting it, so it must refuse the file.
pub(crate) const CONFLATED_CURSOR_VERSION: u32 = 3;

/// The version written where nothing of version 2 is needed: segment and
/// cursor headers, and the metadata of a journal that never compressed.
pub(crate) const FIRST_FORMAT_VERSION: u32 = 1;

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 32;
/// Every frame starts on a multiple of this; equal to [`HEADER_LEN`], so any
/// aligned gap can hold a padding frame.
pub const FRAME_ALIGNMENT: usize = 32;

/// Offset in the header of the frame's position (`u64`, little-endian): the
/// journal position the frame was written at, checked by every reader so a
/// stale or misplaced frame is never taken for a record.
pub const POSITION_OFFSET: usize = 8;
/// Offset in the header of the append time (`u64` ns since the Unix epoch,
/// little-endian, from [`now_ns`]).
pub const TIMESTAMP_OFFSET: usize = 16;
/// Offset in the header of the payload's CRC-32 (`u32`, little-endian; see
/// [`crc`]); the 4 bytes after it are zero.
pub const CRC_OFFSET: usize = 24;

/// Frame type: a record handed to consumers.
pub const TYPE_DATA: u8 = 1;
/// Frame type: filler that consumers skip (segment tails, abandoned claims).
pub const TYPE_PADDING: u8 = 2;
/// Frame type of a slot an unblocker has taken over (see [`cover`]). Only
/// ever found inside a padding frame's body, never where a reader looks.
pub const TYPE_COVERED: u8 = 3;

/// [`Word0::flags`] bit: the record was offered with [`Priority::Low`].
pub const FLAG_PRIORITY_LOW: u8 = 0b0000_0001;
/// [`Word0::flags`] bit: the record is keyed. Its body (the bytes after the
/// header, all covered by the CRC) is the key's length ([`KEY_LEN_BYTES`]
/// bytes, little-endian), the key, then the payload.
pub const FLAG_KEYED: u8 = 0b0000_0010;
/// [`Word0::flags`] bit on a claimed word only: the claim is a
/// *reservation*, room a [`ReservingPublisher`](crate::ReservingPublisher)
/// took for the records it appends next (see [`take_reserved`]). Never set
/// on a committed frame.
pub const FLAG_RESERVED: u8 = 0b0000_0100;
/// Bytes of the key length ahead of a keyed record's key (a `u16`).
pub const KEY_LEN_BYTES: usize = 2;
/// The longest key a keyed record can carry, in bytes.
pub const MAX_KEY_LEN: usize = u16::MAX as usize;

/// Rounds `len` up to the frame alignment.
#[inline]
pub const fn align(len: usize) -> usize {
    (len + FRAME_ALIGNMENT - 1) & !(FRAME_ALIGNMENT - 1)
}

/// The aligned number of bytes a payload of `payload_len` bytes occupies.
#[inline]
pub const fn aligned_frame_len(payload_len: usize) -> usize {
    align(HEADER_LEN + payload_len)
}

/// The first 8 bytes of a header, read and written as one atomic `u64` so that
/// committing a frame (or turning an abandoned claim into padding) is one
/// store or one compare-and-swap.
///
/// `length` > 0: committed frame of that many bytes (header + payload, unaligned).
/// `length` < 0: claimed, being written; `-length` bytes are reserved.
/// `length` = 0: nothing written yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Word0 {
    /// Header plus payload in bytes, unaligned: positive when committed,
    /// negated while claimed, 0 when nothing was written.
    pub length: i32,
    /// [`TYPE_DATA`], [`TYPE_PADDING`] or [`TYPE_COVERED`] (0 in an untouched
    /// slot).
    pub frame_type: u8,
    /// Bit 0 ([`FLAG_PRIORITY_LOW`]): the record was offered with
    /// [`Priority::Low`] (see [`priority_flags`]); bit 1 ([`FLAG_KEYED`]):
    /// the record carries a key ([`is_keyed`]); bit 2 ([`FLAG_RESERVED`],
    /// claimed words only): a reservation; the other bits are zero.
    pub flags: u8,
    /// Slot of the claiming handle in the metadata's process table (+1; 0 = unknown).
    pub owner: u16,
}

impl Word0 {
    /// The word as stored: `length` in bits 0..32, `frame_type` in 32..40,
    /// `flags` in 40..48, `owner` in 48..64 (little-endian on disk).
    #[inline]
    pub const fn pack(self) -> u64 {
        (self.length as u32 as u64)
            | ((self.frame_type as u64) << 32)
            | ((self.flags as u64) << 40)
            | ((self.owner as u64) << 48)
    }

    /// The fields of a stored word (the inverse of [`Word0::pack`]).
    #[inline]
    pub const fn unpack(word: u64) -> Word0 {
        Word0 {
            length: word as u32 as i32,
            frame_type: (word >> 32) as u8,
            flags: (word >> 40) as u8,
            owner: (word >> 48) as u16,
        }
    }

    /// The word a padding frame of `length` bytes carries.
    #[inline]
    pub const fn padding(length: usize) -> Word0 {
        Word0 { length: length as i32, frame_type: TYPE_PADDING, flags: 0, owner: 0 }
    }

    /// The word of a committed data frame of `payload_len` bytes.
    #[inline]
    pub const fn data(priority: Priority, payload_len: usize, owner: u16) -> Word0 {
        Word0 {
            length: (HEADER_LEN + payload_len) as i32,
            frame_type: TYPE_DATA,
            flags: priority_flags(priority),
            owner,
        }
    }

    /// The same word with the `flags` bits added (a [`Body::FLAGS`]).
    #[inline]
    pub const fn with_flags(self, flags: u8) -> Word0 {
        Word0 { flags: self.flags | flags, ..self }
    }

    /// The word of the same frame while it is claimed, not yet committed
    /// (the length negated).
    #[inline]
    pub const fn claimed(self) -> Word0 {
        Word0 { length: -self.length, ..self }
    }

    /// The claimed word of a reservation of `aligned_len` bytes held by
    /// `owner` ([`FLAG_RESERVED`]).
    #[inline]
    pub const fn reservation(aligned_len: usize, owner: u16) -> Word0 {
        Word0 { length: -(aligned_len as i32), frame_type: TYPE_DATA, flags: FLAG_RESERVED, owner }
    }

    /// Whether this is a reservation's word (claimed, [`FLAG_RESERVED`]).
    #[inline]
    pub const fn is_reservation(self) -> bool {
        self.length < 0 && self.flags & FLAG_RESERVED != 0
    }
}

/// A frame's header after word 0, to be written at [`POSITION_OFFSET`]:
/// position, timestamp and CRC (the last 4 bytes stay zero).
#[inline]
pub fn header_fields(position: u64, timestamp: u64, crc: u32) -> [u8; HEADER_LEN - POSITION_OFFSET] {
    let mut fields = [0u8; HEADER_LEN - POSITION_OFFSET];
    let at = |offset: usize| offset - POSITION_OFFSET;
    fields[at(POSITION_OFFSET)..at(TIMESTAMP_OFFSET)].copy_from_slice(&position.to_le_bytes());
    fields[at(TIMESTAMP_OFFSET)..at(CRC_OFFSET)].copy_from_slice(&timestamp.to_le_bytes());
    fields[at(CRC_OFFSET)..at(CRC_OFFSET) + 4].copy_from_slice(&crc.to_le_bytes());
    fields
}

/// The atomic operations the frame protocol needs on a header word: std's
/// [`AtomicU64`] in the journal, loom's in the model-checking test.
pub trait HeaderWord {
    /// Loads the word ([`AtomicU64::load`]).
    fn load(&self, order: Ordering) -> u64;
    /// Stores the word ([`AtomicU64::store`]).
    fn store(&self, value: u64, order: Ordering);
    /// Replaces `current` with `new` if the word holds `current`; the value
    /// found either way ([`AtomicU64::compare_exchange`]).
    fn compare_exchange(&self, current: u64, new: u64, success: Ordering, failure: Ordering) -> Result<u64, u64>;
}

impl HeaderWord for AtomicU64 {
    #[inline]
    fn load(&self, order: Ordering) -> u64 {
        AtomicU64::load(self, order)
    }

    #[inline]
    fn store(&self, value: u64, order: Ordering) {
        AtomicU64::store(self, value, order)
    }

    #[inline]
    fn compare_exchange(&self, current: u64, new: u64, success: Ordering, failure: Ordering) -> Result<u64, u64> {
        AtomicU64::compare_exchange(self, current, new, success, failure)
    }
}

// The protocol on word 0. Every transition is a compare-and-swap from the one
// state it expects, so a writer and an unblocker can never both win:
//
//   0 --publish_claim--> claimed --commit--> committed
//   0 --cover----------> covered (unblocker; the claimer retries elsewhere)
//   claimed --unblock_claimed / abandon--> padding (the writer's commit fails)
//
// A reservation is a claim with FLAG_RESERVED, split one record at a time:
//
//   reserved(n) --take_reserved (owner)--> claimed(L)   [after putting reserved(n - L) at +L]
//   reserved(n) --pad_claimed (owner's release, or a reader after reserve_linger)--> padding(n)

/// Publishes a claim over an untouched slot (release, after the header fields).
/// `false` if an unblocker covered the slot first: claim again.
#[inline]
pub fn publish_claim(word: &impl HeaderWord, claimed: Word0) -> bool {
    word.compare_exchange(0, claimed.pack(), Ordering::Release, Ordering::Relaxed).is_ok()
}

/// Commits a claimed frame (release, after the payload). `false` if an
/// unblocker turned it into padding first: the record was not appended.
#[inline]
pub fn commit(word: &impl HeaderWord, claimed: Word0) -> bool {
    let committed = Word0 { length: -claimed.length, ..claimed };
    word.compare_exchange(claimed.pack(), committed.pack(), Ordering::Release, Ordering::Relaxed).is_ok()
}

/// Turns the claimed frame whose word is `observed` into padding of the same
/// length: an abandoned claim, or one held past
/// [`Config::unblock_timeout`](crate::Config::unblock_timeout). `false` if
/// it was committed (or padded) first.
#[inline]
pub fn pad_claimed(word: &impl HeaderWord, observed: u64) -> bool {
    let claimed = Word0::unpack(observed);
    if claimed.length >= 0 {
        return false;
    }
    let padding = Word0::padding(align(claimed.length.unsigned_abs() as usize));
    word.compare_exchange(observed, padding.pack(), Ordering::AcqRel, Ordering::Relaxed).is_ok()
}

/// Takes the first frame of the reservation `reserved` (its header fields
/// written first): the word becomes `claimed`, which is then committed as
/// any claim. When the frame leaves room in the reservation, that room is
/// first marked as the reservation's rest: `rest` is its word (its
/// position field written first) and the reservation left. A plain store:
/// the word lies inside the owner's reservation, where nobody else writes,
/// and it comes before the frame is taken, so a reader that finds the frame
/// taken or committed finds the rest marked after it, never an untouched
/// slot it could cover. `false` if a reader lapsed the reservation into
/// padding first: nothing was appended, reserve again.
#[inline]
pub fn take_reserved<W: HeaderWord>(word: &W, reserved: Word0, claimed: Word0, rest: Option<(&W, Word0)>) -> bool {
    if let Some((rest_word, rest)) = rest {
        rest_word.store(rest.pack(), Ordering::Release);
    }
    word.compare_exchange(reserved.pack(), claimed.pack(), Ordering::Release, Ordering::Relaxed).is_ok()
}

/// Takes over an untouched slot, so a claimer that fetched it but has not yet
/// published its claim fails and claims again. `false` if a claim is there.
#[inline]
pub fn cover(word: &impl HeaderWord) -> bool {
    let covered = Word0 { length: 0, frame_type: TYPE_COVERED, flags: 0, owner: 0 };
    word.compare_exchange(0, covered.pack(), Ordering::AcqRel, Ordering::Relaxed).is_ok()
}

/// Whether the slot was taken over by [`cover`].
#[inline]
pub fn is_covered(word: &impl HeaderWord) -> bool {
    Word0::unpack(word.load(Ordering::Acquire)).frame_type == TYPE_COVERED
}

/// The [`Word0::flags`] bits a record of `priority` carries.
#[inline]
pub const fn priority_flags(priority: Priority) -> u8 {
    match priority {
        Priority::Normal => 0,
        Priority::Low => FLAG_PRIORITY_LOW,
    }
}

/// The priority a frame's [`Word0::flags`] record (the inverse of
/// [`priority_flags`]).
#[inline]
pub const fn flags_priority(flags: u8) -> Priority {
    if flags & FLAG_PRIORITY_LOW != 0 { Priority::Low } else { Priority::Normal }
}

/// Whether a frame's [`Word0::flags`] mark a keyed record ([`FLAG_KEYED`]).
#[inline]
pub const fn is_keyed(flags: u8) -> bool {
    flags & FLAG_KEYED != 0
}

/// CRC32 (IEEE, as computed by `crc32fast`) of a payload.
#[inline]
pub fn crc(payload: &[u8]) -> u32 {
    crc_of(&[payload])
}

/// CRC32 of `parts` one after the other (as [`crc`] of their concatenation).
#[inline]
pub fn crc_of(parts: &[&[u8]]) -> u32 {
    // `crc32fast::hash` asks the CPU for its features at every call; a
    // hasher made once and cloned skips that (a fifth of a 64 B record's
    // CRC).
    static PROTOTYPE: std::sync::LazyLock<crc32fast::Hasher> = std::sync::LazyLock::new(crc32fast::Hasher::new);
    let mut hasher = PROTOTYPE.clone();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize()
}

/// The bytes of a data frame after its header, as an appender writes them:
/// a plain payload (`[u8]`), or a [`Keyed`] record. Both publishers are
/// generic over it, so an unkeyed append compiles to what it was before
/// keys existed ([`Body::FLAGS`] is a constant 0 there).
pub trait Body {
    /// The [`Word0::flags`] bits this body adds ([`FLAG_KEYED`] or none).
    const FLAGS: u8;
    /// Bytes after the header (the frame's length is [`HEADER_LEN`] more).
    fn body_len(&self) -> usize;
    /// The CRC stored in the header: of every body byte.
    fn body_crc(&self) -> u32;
    /// Calls `write(offset_in_body, bytes)` for each part of the body, in
    /// order, covering `0..body_len()`.
    fn write_parts(&self, write: impl FnMut(usize, &[u8]));
}

impl Body for [u8] {
    const FLAGS: u8 = 0;

    #[inline]
    fn body_len(&self) -> usize {
        self.len()
    }

    #[inline]
    fn body_crc(&self) -> u32 {
        crc(self)
    }

    #[inline]
    fn write_parts(&self, mut write: impl FnMut(usize, &[u8])) {
        write(0, self)
    }
}

/// A keyed record's body: key length, key, payload (see [`FLAG_KEYED`]).
#[derive(Clone, Copy, Debug)]
pub struct Keyed<'a> {
    key_len: [u8; KEY_LEN_BYTES],
    key: &'a [u8],
    payload: &'a [u8],
}

/// A key longer than [`MAX_KEY_LEN`]: its length in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyTooLong(pub usize);

impl<'a> Keyed<'a> {
    /// The body of `payload` under `key`.
    ///
    /// # Errors
    /// [`KeyTooLong`] when the key has more than [`MAX_KEY_LEN`] bytes.
    #[inline]
    pub fn new(key: &'a [u8], payload: &'a [u8]) -> Result<Keyed<'a>, KeyTooLong> {
        let len = u16::try_from(key.len()).map_err(|_| KeyTooLong(key.len()))?;
        Ok(Keyed { key_len: len.to_le_bytes(), key, payload })
    }
}

impl Body for Keyed<'_> {
    const FLAGS: u8 = FLAG_KEYED;

    #[inline]
    fn body_len(&self) -> usize {
        KEY_LEN_BYTES + self.key.len() + self.payload.len()
    }

    #[inline]
    fn body_crc(&self) -> u32 {
        crc_of(&[&self.key_len, self.key, self.payload])
    }

    #[inline]
    fn write_parts(&self, mut write: impl FnMut(usize, &[u8])) {
        write(0, &self.key_len);
        write(KEY_LEN_BYTES, self.key);
        write(KEY_LEN_BYTES + self.key.len(), self.payload);
    }
}

/// Where a data frame's payload starts, from the frame's first byte: right
/// after the header, or after a keyed record's key length and key.
#[inline]
pub const fn payload_offset(key_len: Option<u16>) -> usize {
    match key_len {
        None => HEADER_LEN,
        Some(len) => HEADER_LEN + KEY_LEN_BYTES + len as usize,
    }
}

/// Where a keyed data frame's key lies, from the frame's first byte.
#[inline]
pub const fn key_range(key_len: u16) -> std::ops::Range<usize> {
    HEADER_LEN + KEY_LEN_BYTES..HEADER_LEN + KEY_LEN_BYTES + key_len as usize
}

/// What a reader finds at a frame boundary ([`decode`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A committed data frame: payload at `[start, start + payload_len)`
    /// with `start` = [`payload_offset`]`(key_len)`; a keyed record's key at
    /// [`key_range`]`(key_len)`.
    Data {
        /// The payload's length in bytes (without a keyed record's key and
        /// key length).
        payload_len: usize,
        /// The key's length for a keyed record ([`FLAG_KEYED`]), checked
        /// to fit the frame; `None` for an unkeyed one.
        key_len: Option<u16>,
        /// Bytes the frame occupies, header included, rounded up to
        /// [`FRAME_ALIGNMENT`]: the next frame starts this far on.
        aligned_len: usize,
        /// The frame's [`Word0::flags`] (see [`flags_priority`]).
        flags: u8,
        /// When it was appended, in ns since the Unix epoch.
        timestamp: u64,
    },
    /// A committed padding frame to skip.
    Padding {
        /// Bytes to skip, header included (a multiple of [`FRAME_ALIGNMENT`]).
        aligned_len: usize,
    },
    /// Nothing committed here yet: `claimed` is the reserved length, if any.
    Pending {
        /// The aligned length a publisher has claimed and is writing, or
        /// `None` for an untouched slot (the tail, or a claim not yet
        /// published).
        claimed: Option<usize>,
    },
}

/// Why a frame is not valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameFault {
    /// The header's length (carried) is shorter than a header or runs past
    /// the segment's end.
    BadLength(i64),
    /// The header's frame type (carried) is none of the known ones.
    BadType(u8),
    /// The header names another position than the one it was read at.
    PositionMismatch {
        /// The position the header holds.
        found: u64,
    },
    /// A keyed record's key length (carried) runs past the frame's body of
    /// `body` bytes (or the body cannot even hold the key length).
    BadKeyLength {
        /// The key length the frame holds (0 when the body is too short to
        /// hold one).
        key_len: usize,
        /// The body's length in bytes (everything after the header).
        body: usize,
    },
    /// The payload does not match its CRC.
    CrcMismatch {
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the payload as read.
        computed: u32,
    },
}

impl std::fmt::Display for FrameFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameFault::BadLength(len) => write!(f, "frame length {len} does not fit the segment"),
            FrameFault::BadType(t) => write!(f, "unknown frame type {t}"),
            FrameFault::PositionMismatch { found } => {
                write!(f, "header names position {found}, not this one (stale or misplaced frame)")
            }
            FrameFault::BadKeyLength { key_len, body } => {
                write!(f, "key length {key_len} does not fit the record's {body} bytes")
            }
            FrameFault::CrcMismatch { stored, computed } => {
                write!(f, "payload CRC {computed:#010x} does not match stored {stored:#010x}")
            }
        }
    }
}

/// Reads a little-endian `u64` at `at`; the caller guarantees the bounds.
#[inline]
pub fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

/// Reads a little-endian `u32` at `at`; the caller guarantees the bounds.
#[inline]
pub fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(raw)
}

/// Decodes the frame whose header starts at `room[0]`, given the `word0` read
/// (with acquire ordering) from it and the stream position it should carry.
///
/// `room` is every byte from the frame to the end of its segment, so a length
/// that would cross the segment end is caught here. Never panics, whatever the
/// bytes.
#[inline]
pub fn decode(word0: u64, room: &[u8], position: u64, check_crc: bool) -> Result<Decoded, FrameFault> {
    let word = Word0::unpack(word0);
    if word.length == 0 {
        return Ok(Decoded::Pending { claimed: None });
    }
    if word.length < 0 {
        // A claim is published after its header fields: one that cannot fit
        // the segment, or names another position, is stale bytes, not a
        // claim to wait for (or to turn into padding of that length).
        let claimed = align(word.length.unsigned_abs() as usize);
        if claimed < HEADER_LEN || claimed > room.len() {
            return Err(FrameFault::BadLength(i64::from(word.length)));
        }
        let found = read_u64(room, POSITION_OFFSET);
        if found != position {
            return Err(FrameFault::PositionMismatch { found });
        }
        return Ok(Decoded::Pending { claimed: Some(claimed) });
    }
    let length = word.length as usize;
    let aligned_len = align(length);
    if length < HEADER_LEN || aligned_len > room.len() {
        return Err(FrameFault::BadLength(length as i64));
    }
    let found = read_u64(room, POSITION_OFFSET);
    if found != position {
        return Err(FrameFault::PositionMismatch { found });
    }
    match word.frame_type {
        TYPE_PADDING => Ok(Decoded::Padding { aligned_len }),
        TYPE_DATA => {
            if check_crc {
                let stored = read_u32(room, CRC_OFFSET);
                let computed = crc(&room[HEADER_LEN..length]);
                if stored != computed {
                    return Err(FrameFault::CrcMismatch { stored, computed });
                }
            }
            let key_len = if is_keyed(word.flags) { Some(decode_key_len(&room[HEADER_LEN..length])?) } else { None };
            let payload_len = length - payload_offset(key_len);
            let timestamp = read_u64(room, TIMESTAMP_OFFSET);
            Ok(Decoded::Data { payload_len, key_len, aligned_len, flags: word.flags, timestamp })
        }
        other => Err(FrameFault::BadType(other)),
    }
}

/// How far a frame that [`decode`] did not find valid still vouches for
/// itself: the aligned length of a claim, or of a committed frame whose
/// payload or key fails (its header names this position and a length that
/// fits); [`FRAME_ALIGNMENT`] when nothing of it can be trusted. A search
/// for the next valid frame starts there, so that a frame image inside the
/// payload is never taken for a record.
pub fn vouched_len(word0: u64, decoded: &Result<Decoded, FrameFault>) -> usize {
    match decoded {
        Ok(Decoded::Pending { claimed: Some(claimed) }) => *claimed,
        Err(FrameFault::CrcMismatch { .. } | FrameFault::BadKeyLength { .. }) => {
            align(Word0::unpack(word0).length.unsigned_abs() as usize)
        }
        _ => FRAME_ALIGNMENT,
    }
}

/// A data frame whose CRC matched, as [`decode_record`] finds it.
#[derive(Clone, Copy, Debug)]
pub struct Checked<'a> {
    /// A keyed record's key ([`FLAG_KEYED`]); `None` for an unkeyed one.
    pub key: Option<&'a [u8]>,
    /// The payload (without a keyed record's key and key length).
    pub payload: &'a [u8],
    /// Bytes the frame occupies, header included, rounded up to
    /// [`FRAME_ALIGNMENT`].
    pub aligned_len: usize,
    /// The frame's [`Word0::flags`].
    pub flags: u8,
    /// When it was appended, in ns since the Unix epoch.
    pub timestamp: u64,
}

/// The common case of [`decode`] with `check_crc`, for a reader's loop: a
/// committed data frame (keyed or not) that fits `room`, names `position`,
/// whose key fits its body and whose body matches its CRC. `None` for
/// anything else (padding, a claim, a fault): the caller then calls
/// [`decode`], which tells those apart and names the fault. Whatever this
/// returns, [`decode`] returns the same [`Decoded::Data`] for it.
///
/// Inlined into the loop and free of panics: every bound is a comparison
/// whose failure is `None`.
#[inline(always)]
pub fn decode_record(word0: u64, room: &[u8], position: u64) -> Option<Checked<'_>> {
    let word = Word0::unpack(word0);
    if word.frame_type != TYPE_DATA || word.length < HEADER_LEN as i32 {
        return None;
    }
    let length = word.length as usize;
    let aligned_len = align(length);
    let frame = room.get(..aligned_len)?;
    let (header, _) = frame.split_first_chunk::<HEADER_LEN>()?;
    let body = frame.get(HEADER_LEN..length)?;
    let field = |at: usize| -> [u8; 8] {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&header[at..at + 8]); // constant offsets into the array: checked at compile time
        raw
    };
    if u64::from_le_bytes(field(POSITION_OFFSET)) != position {
        return None;
    }
    let (key, payload) = if is_keyed(word.flags) {
        let (key_len, rest) = body.split_first_chunk::<KEY_LEN_BYTES>()?;
        let (key, payload) = rest.split_at_checked(u16::from_le_bytes(*key_len) as usize)?;
        (Some(key), payload)
    } else {
        (None, body)
    };
    let stored = u64::from_le_bytes(field(CRC_OFFSET)) as u32;
    if crc(body) != stored {
        return None;
    }
    let timestamp = u64::from_le_bytes(field(TIMESTAMP_OFFSET));
    Some(Checked { key, payload, aligned_len, flags: word.flags, timestamp })
}

/// The key length at the start of a keyed record's `body`, checked to fit it.
#[inline]
fn decode_key_len(body: &[u8]) -> Result<u16, FrameFault> {
    let Some(raw) = body.first_chunk::<KEY_LEN_BYTES>() else {
        return Err(FrameFault::BadKeyLength { key_len: 0, body: body.len() });
    };
    let key_len = u16::from_le_bytes(*raw);
    if KEY_LEN_BYTES + key_len as usize > body.len() {
        return Err(FrameFault::BadKeyLength { key_len: key_len as usize, body: body.len() });
    }
    Ok(key_len)
}

/// Nanoseconds since the Unix epoch from the coarse real-time clock.
///
/// `CLOCK_REALTIME_COARSE` costs a few nanoseconds (no `rdtsc`), with the
/// resolution of the kernel tick (1–4 ms). Good enough for
/// [`Seek::Time`](crate::Seek::Time) and
/// `replay --pace recorded`; see docs/FORMAT.md.
#[inline]
pub fn now_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(ts.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word0_round_trips_negative_lengths_and_fields() {
        let word = Word0 { length: -96, frame_type: TYPE_DATA, flags: 1, owner: 7 };
        assert_eq!(Word0::unpack(word.pack()), word);
    }

    #[test]
    fn decode_rejects_lengths_past_the_room() {
        let mut room = vec![0u8; 64];
        let word = Word0 { length: 100, frame_type: TYPE_DATA, flags: 0, owner: 0 }.pack();
        room[..8].copy_from_slice(&word.to_le_bytes());
        assert_eq!(decode(word, &room, 0, true), Err(FrameFault::BadLength(100)));
    }

    #[test]
    fn decode_checks_crc_and_position() {
        let payload = b"hello";
        let mut room = vec![0u8; 64];
        let word = Word0 { length: (HEADER_LEN + 5) as i32, frame_type: TYPE_DATA, flags: 0, owner: 0 }.pack();
        room[..8].copy_from_slice(&word.to_le_bytes());
        room[POSITION_OFFSET..POSITION_OFFSET + 8].copy_from_slice(&4096u64.to_le_bytes());
        room[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc(payload).to_le_bytes());
        room[HEADER_LEN..HEADER_LEN + 5].copy_from_slice(payload);
        assert!(matches!(decode(word, &room, 4096, true), Ok(Decoded::Data { payload_len: 5, .. })));
        assert!(matches!(decode(word, &room, 4128, true), Err(FrameFault::PositionMismatch { found: 4096 })));
        room[HEADER_LEN] ^= 1;
        assert!(matches!(decode(word, &room, 4096, true), Err(FrameFault::CrcMismatch { .. })));
    }

    /// A keyed frame of `body` at position 0, its CRC correct.
    fn keyed_room(body: &[u8]) -> (u64, Vec<u8>) {
        let mut room = vec![0u8; 128];
        let word = Word0::data(Priority::Normal, body.len(), 0).with_flags(FLAG_KEYED).pack();
        room[..8].copy_from_slice(&word.to_le_bytes());
        room[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc(body).to_le_bytes());
        room[HEADER_LEN..HEADER_LEN + body.len()].copy_from_slice(body);
        (word, room)
    }

    #[test]
    fn decode_finds_key_and_payload_of_a_keyed_frame() {
        let keyed = Keyed::new(b"EURUSD", b"1.0842").unwrap();
        let mut body = vec![0u8; keyed.body_len()];
        keyed.write_parts(|at, part| body[at..at + part.len()].copy_from_slice(part));
        assert_eq!(keyed.body_crc(), crc(&body));
        let (word, room) = keyed_room(&body);
        let Ok(Decoded::Data { payload_len, key_len: Some(key_len), .. }) = decode(word, &room, 0, true) else {
            panic!("not a keyed data frame");
        };
        assert_eq!(&room[key_range(key_len)], b"EURUSD");
        let start = payload_offset(Some(key_len));
        assert_eq!(&room[start..start + payload_len], b"1.0842");
    }

    #[test]
    fn decode_rejects_key_lengths_past_the_body() {
        let (word, room) = keyed_room(&[5, 0, b'a', b'b']);
        assert_eq!(decode(word, &room, 0, true), Err(FrameFault::BadKeyLength { key_len: 5, body: 4 }));
        assert_eq!(decode(word, &room, 0, false), Err(FrameFault::BadKeyLength { key_len: 5, body: 4 }));
        let (word, room) = keyed_room(&[1]);
        assert_eq!(decode(word, &room, 0, true), Err(FrameFault::BadKeyLength { key_len: 0, body: 1 }));
        let (word, room) = keyed_room(&[0, 0]);
        assert!(matches!(decode(word, &room, 0, true), Ok(Decoded::Data { payload_len: 0, key_len: Some(0), .. })));
    }

    /// `decode_record` agrees with `decode`: it finds exactly the data
    /// frames that `decode` accepts (CRC checked), with the same fields,
    /// and `None` for every other frame or fault.
    #[test]
    fn decode_record_is_decode_on_its_frames() {
        let payload = b"hello, plain";
        let keyed = |key_len: u16| {
            let mut body = key_len.to_le_bytes().to_vec();
            body.extend_from_slice(payload);
            body
        };
        let frame = |word: Word0, position: u64, body: &[u8], crc: u32, room_len: usize| {
            let mut room = vec![0u8; 128];
            room[..8].copy_from_slice(&word.pack().to_le_bytes());
            room[POSITION_OFFSET..POSITION_OFFSET + 8].copy_from_slice(&position.to_le_bytes());
            room[TIMESTAMP_OFFSET..TIMESTAMP_OFFSET + 8].copy_from_slice(&77u64.to_le_bytes());
            room[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
            room[HEADER_LEN..HEADER_LEN + body.len()].copy_from_slice(body);
            room.truncate(room_len);
            (word.pack(), room)
        };
        let good = Word0::data(Priority::Low, payload.len(), 3);
        let crc = crc(payload);
        let (key5, key20) = (keyed(5), keyed(20));
        let with_key = |body: &[u8]| Word0::data(Priority::Normal, body.len(), 3).with_flags(FLAG_KEYED);
        let fits = aligned_frame_len(payload.len());
        let cases = [
            frame(good, 4096, payload, crc, 128),                           // a record
            frame(good, 4096, payload, crc, fits),                          // exactly fits
            frame(good, 4096, payload, crc, fits - 32),                     // runs past the room
            frame(good, 4128, payload, crc, 128),                           // another position
            frame(good, 4096, payload, crc ^ 1, 128),                       // bad CRC
            frame(with_key(&key5), 4096, &key5, super::crc(&key5), 128),    // keyed
            frame(with_key(&key20), 4096, &key20, super::crc(&key20), 128), // key past the body
            frame(with_key(&key5[..1]), 4096, &key5[..1], super::crc(&key5[..1]), 128), // no key length
            frame(good.with_flags(FLAG_KEYED), 4096, payload, crc, 128),    // keyed, key too long
            frame(good.claimed(), 4096, payload, crc, 128),                 // a claim
            frame(Word0::padding(64), 4096, payload, crc, 128),             // padding
            frame(Word0 { length: 0, ..good }, 4096, payload, crc, 128),    // nothing yet
            frame(Word0 { length: 31, ..good }, 4096, payload, crc, 128),   // shorter than a header
            frame(Word0 { frame_type: 9, ..good }, 4096, payload, crc, 128), // unknown type
        ];
        let mut found = 0;
        for (word, room) in &cases {
            let full = decode(*word, room, 4096, true);
            match decode_record(*word, room, 4096) {
                Some(record) => {
                    found += 1;
                    let key_len = record.key.map(|key| key.len() as u16);
                    assert_eq!(
                        full,
                        Ok(Decoded::Data {
                            payload_len: record.payload.len(),
                            key_len,
                            aligned_len: record.aligned_len,
                            flags: record.flags,
                            timestamp: record.timestamp,
                        })
                    );
                    let start = payload_offset(key_len);
                    assert_eq!(record.payload, &room[start..start + record.payload.len()]);
                    if let Some(key_len) = key_len {
                        assert_eq!(record.key, Some(&room[key_range(key_len)]));
                    }
                    assert_eq!(record.timestamp, 77);
                }
                None => assert!(!matches!(full, Ok(Decoded::Data { .. })), "{full:?}"),
            }
        }
        assert_eq!(found, 3);
    }

    #[test]
    fn keys_longer_than_a_u16_are_refused() {
        let key = vec![0u8; MAX_KEY_LEN + 1];
        assert_eq!(Keyed::new(&key, b"").err(), Some(KeyTooLong(MAX_KEY_LEN + 1)));
        assert!(Keyed::new(&key[..MAX_KEY_LEN], b"").is_ok());
    }
}
