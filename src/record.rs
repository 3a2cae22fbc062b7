//! A record as consumers see it: `Record`, borrowed from a mapped segment,
//! and where one lies in its segment (`Located`), so that a conflating
//! consumer can keep a record's place now and hand it out later.
//!
//! Owns nothing; touches nothing but the segment bytes it is given. Above
//! the frame descriptor, below the consumer and conflation.

use crate::Priority;
use crate::frame;

/// One record, borrowed from the mapped segment (zero-copy): what
/// [`Consumer::poll`](crate::Consumer::poll) hands its handler. Copy out what must outlive the
/// handler call.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let journal = backwater::Journal::open(dir.path(), backwater::Config::default().segment_size(1 << 20))?;
/// use backwater::Priority;
/// let publisher = journal.publisher();
/// let position = publisher.append(b"hello")?;
/// let mut consumer = journal.consumer("records")?;
/// consumer.poll(|record| {
///     assert_eq!(record.position(), position);
///     assert_eq!(record.payload(), b"hello");
///     assert_eq!(record.priority(), Priority::Normal);
///     assert!(record.next_position() > record.position());
///     assert!(record.timestamp() > 0);              // ns since the epoch
/// }, 1)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    position: u64,
    next_position: u64,
    timestamp: u64,
    priority: Priority,
    key: Option<&'a [u8]>,
    payload: &'a [u8],
}

impl<'a> Record<'a> {
    /// The record's position: unique, only growing.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The position right after this record: where a consumer that has
    /// processed it resumes ([`Consumer::commit_at`](crate::Consumer::commit_at)).
    pub fn next_position(&self) -> u64 {
        self.next_position
    }

    /// When it was appended, in nanoseconds since the Unix epoch (coarse
    /// clock: a few milliseconds of resolution).
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    /// The priority it was offered with.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// The payload, CRC-checked (without the key of a keyed record).
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The key of a keyed record ([`Publisher::offer_keyed`](crate::Publisher::offer_keyed)),
    /// CRC-checked; `None` for a record appended without one.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }
}

/// Where a decoded data frame lies in its segment, and what its header
/// says: enough to make its [`Record`] from the segment's bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Located {
    /// The frame's offset in its segment.
    pub offset: usize,
    pub position: u64,
    pub next_position: u64,
    pub timestamp: u64,
    pub flags: u8,
    pub key_len: Option<u16>,
    pub payload_len: usize,
}

impl Located {
    /// The record, from the bytes of the segment it was decoded in.
    #[inline]
    pub fn record<'a>(&self, segment: &'a [u8]) -> Record<'a> {
        let start = self.offset + frame::payload_offset(self.key_len);
        Record {
            position: self.position,
            next_position: self.next_position,
            timestamp: self.timestamp,
            priority: frame::flags_priority(self.flags),
            key: self.key(segment),
            payload: &segment[start..start + self.payload_len],
        }
    }

    /// The record of a frame whose key and payload the caller has already
    /// sliced from the segment (`frame::decode_record`).
    #[inline]
    pub fn with<'a>(&self, key: Option<&'a [u8]>, payload: &'a [u8]) -> Record<'a> {
        debug_assert!(key.map(|key| key.len() as u16) == self.key_len && payload.len() == self.payload_len);
        Record {
            position: self.position,
            next_position: self.next_position,
            timestamp: self.timestamp,
            priority: frame::flags_priority(self.flags),
            key,
            payload,
        }
    }

    /// The key of a keyed record, from the bytes of its segment.
    #[inline]
    pub fn key<'a>(&self, segment: &'a [u8]) -> Option<&'a [u8]> {
        let range = frame::key_range(self.key_len?);
        Some(&segment[self.offset + range.start..self.offset + range.end])
    }
}
