//! The single-writer appender (Aeron's `ExclusivePublication`): one handle
//! that has the journal's appends to itself, in every process, so it claims
//! by moving its own tail and commits with a release store: no locked
//! instruction per record.
//!
//! Owns: its tail (the segment it writes and the offset in it) and rotation
//! to the next segment. Touches the metadata's tail word (a release store
//! after each record, for readers, retention and stats), limits and
//! counters, and the bytes past the tail. The publisher lock
//! (`publisher_lock`) keeps every fetch-add `Publisher` out meanwhile.
//!
//! A frame is committed before the tail word moves past it, so there is
//! never a hole below the tail for an unblocker to pad, and a frame it died
//! writing lies past the tail: the next publisher settles it
//! (`recovery::settle_tail`). Both facts make the segments it wrote alone
//! safe to recycle once consumed (`window`, `state::Recycling`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::appender::{committed_not_flushed, count_refusal, wait_after_refusal, wait_async, worth_waiting};
use crate::error::{Error, OfferError, Result};
use crate::frame::{self, Body, HEADER_LEN, Keyed, Word0};
use crate::handle::Handle;
use crate::meta::TailCodec;
use crate::publisher_lock::{Mode, PublisherLock};
use crate::segment::{SEGMENT_HEADER_LEN, Segment};
use crate::{Priority, retention, wake, window};

/// The only publisher of a journal while it lives, in every process
/// ([`Journal::exclusive_publisher`](crate::Journal::exclusive_publisher)).
///
/// `Send`, not `Clone`: appends take `&mut self`. Each record is claimed by
/// moving its own tail and committed with a release store (no locked
/// instruction), and segments it wrote alone are recycled once consumed.
/// The same back-pressure contract as [`Publisher`](crate::Publisher):
/// [`ExclusivePublisher::offer`] never blocks, [`ExclusivePublisher::append`]
/// waits. Dropping it lets [`Publisher`](crate::Publisher)s append again.
///
/// ```
/// use backwater::{Config, Journal, OfferError, Priority};
///
/// let dir = tempfile::tempdir()?;
/// let journal = Journal::open(dir.path(), Config::default().segment_size(1 << 20))?;
/// journal.prepare()?;                       // fault the first segments in now
/// let mut publisher = journal.exclusive_publisher()?;
/// let first = publisher.offer(b"one")?;
/// let second = publisher.append(b"two")?;
/// assert_eq!(publisher.tail_position(), journal.tail_position());
/// match publisher.offer_with(Priority::Low, b"debug") {
///     Ok(_) | Err(OfferError::Dropped { .. }) => {}
///     Err(other) => return Err(other.into()),
/// }
/// assert!(second > first);
///
/// // Another thread may own it: it is `Send`.
/// let handle = std::thread::spawn(move || publisher.append(b"three"));
/// handle.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ExclusivePublisher {
    inner: Handle,
    codec: TailCodec,
    /// The tail's segment and the offset of the next frame in it.
    segment: Arc<Segment>,
    offset: usize,
    segment_len: usize,
    owner: u16,
    /// `Stats::appended` when this publisher started, plus its own records.
    appended: u64,
    _lock: PublisherLock,
}

/// What the tail has for a frame of a given length.
enum Room {
    /// It fits at this position: below the publication limit, in the tail's segment.
    Fits(u64),
    /// It would pass the publication limit.
    AtLimit,
    /// It fits below the limit but not in the tail's segment.
    SegmentFull,
}

impl ExclusivePublisher {
    pub(crate) fn new(inner: Handle) -> Result<ExclusivePublisher> {
        let lock = PublisherLock::acquire(&inner, Mode::Exclusive)?;
        let codec = inner.meta.tail;
        let (index, offset) = codec.unpack(inner.meta.raw_tail().load(Ordering::Acquire));
        let segment = window::write_segment(&inner, index)?;
        let owner = inner.owner_tag();
        let segment_len = inner.segment_size() as usize;
        let offset = (offset as usize).min(segment_len);
        let appended = inner.meta.appended().load(Ordering::Acquire);
        // Segments after this one will hold our frames alone: recyclable.
        if let Some(mut recycling) = inner.recycling() {
            recycling.from_index = Some(index + 1);
        }
        Ok(ExclusivePublisher { inner, codec, segment, offset, segment_len, owner, appended, _lock: lock })
    }

    /// Appends `payload` with normal priority below the high watermark; never
    /// blocks. Returns the record's position.
    ///
    /// # Errors
    /// - [`OfferError::BackPressured`] when fill is at the high watermark;
    ///   nothing was written.
    /// - [`OfferError::Failed`] with [`Error::RecordTooLarge`] (longer than
    ///   [`Journal::max_record_len`](crate::Journal::max_record_len)),
    ///   [`Error::PositionsExhausted`], [`Error::CommittedNotFlushed`] (under
    ///   [`Flush::Always`](crate::Flush::Always): the record *was* appended)
    ///   or [`Error::Io`].
    #[inline]
    pub fn offer(&mut self, payload: &[u8]) -> Result<u64, OfferError> {
        self.offer_with(Priority::Normal, payload)
    }

    /// Appends with a priority; [`Priority::Low`] records are dropped (and
    /// counted) from the shed watermark on.
    ///
    /// # Errors
    /// [`OfferError::Dropped`] for a low-priority record at or above the shed
    /// watermark; otherwise those of [`ExclusivePublisher::offer`].
    #[inline]
    pub fn offer_with(&mut self, priority: Priority, payload: &[u8]) -> Result<u64, OfferError> {
        self.try_offer(priority, payload).inspect_err(|e| count_refusal(&self.inner.meta, e))
    }

    /// Appends with normal priority, waiting while back-pressured, up to
    /// [`Config::append_timeout`](crate::Config::append_timeout).
    ///
    /// # Errors
    /// [`Error::StillBackPressured`] when the timeout passed (nothing was
    /// appended); otherwise the [`OfferError::Failed`] errors of
    /// [`ExclusivePublisher::offer`], as an [`Error`].
    #[inline]
    pub fn append(&mut self, payload: &[u8]) -> Result<u64> {
        self.append_with(Priority::Normal, payload)
    }

    /// [`ExclusivePublisher::append`] without blocking the thread: waits
    /// under back-pressure as [`Publisher::append_async`](crate::Publisher::append_async)
    /// does (cancel-safe the same way: a future dropped before it completed
    /// appended nothing).
    ///
    /// # Errors
    /// Those of [`ExclusivePublisher::append`].
    pub async fn append_async(&mut self, payload: &[u8]) -> Result<u64> {
        // The first attempt as `offer` makes it; only a refusal pays for the
        // handle's clone and the waiting future.
        match self.try_offer(Priority::Normal, payload) {
            Ok(position) => Ok(position),
            Err(refused) => {
                worth_waiting(&self.inner.meta, refused)?;
                let inner = self.inner.clone();
                wait_async(&inner, || self.try_offer(Priority::Normal, payload)).await
            }
        }
    }

    /// [`ExclusivePublisher::append`] with a priority (a shed record returns
    /// [`Error::Dropped`] at once).
    ///
    /// # Errors
    /// [`Error::Dropped`], and those of [`ExclusivePublisher::append`].
    #[inline]
    pub fn append_with(&mut self, priority: Priority, payload: &[u8]) -> Result<u64> {
        match self.try_offer(priority, payload) {
            Ok(position) => Ok(position),
            Err(refused) => self.wait_and_append(refused, priority, payload),
        }
    }

    /// `append` after a refusal: only here does it pay for waiting.
    #[cold]
    #[inline(never)]
    fn wait_and_append<B: Body + ?Sized>(&mut self, refused: OfferError, priority: Priority, body: &B) -> Result<u64> {
        let inner = self.inner.clone();
        wait_after_refusal(&inner, refused, || self.try_offer(priority, body))
    }

    /// [`ExclusivePublisher::offer`] for a keyed record: `payload` under
    /// `key` (see [`Publisher::offer_keyed`](crate::Publisher::offer_keyed)).
    ///
    /// # Errors
    /// [`OfferError::Failed`] with [`Error::KeyTooLong`] for a key of more
    /// than [`frame::MAX_KEY_LEN`] bytes; otherwise those of
    /// [`ExclusivePublisher::offer`] (the key counts towards the record's
    /// length, with its 2-byte length).
    #[inline]
    pub fn offer_keyed(&mut self, key: &[u8], payload: &[u8]) -> Result<u64, OfferError> {
        self.offer_keyed_with(Priority::Normal, key, payload)
    }

    /// [`ExclusivePublisher::offer_keyed`] with a priority.
    ///
    /// # Errors
    /// Those of [`ExclusivePublisher::offer_keyed`] and
    /// [`ExclusivePublisher::offer_with`].
    #[inline]
    pub fn offer_keyed_with(&mut self, priority: Priority, key: &[u8], payload: &[u8]) -> Result<u64, OfferError> {
        let body = Keyed::new(key, payload)?;
        self.try_offer(priority, &body).inspect_err(|e| count_refusal(&self.inner.meta, e))
    }

    /// [`ExclusivePublisher::append`] for a keyed record: waits while
    /// back-pressured.
    ///
    /// # Errors
    /// [`Error::KeyTooLong`], and those of [`ExclusivePublisher::append`].
    pub fn append_keyed(&mut self, key: &[u8], payload: &[u8]) -> Result<u64> {
        self.append_keyed_with(Priority::Normal, key, payload)
    }

    /// [`ExclusivePublisher::append_keyed`] with a priority.
    ///
    /// # Errors
    /// Those of [`ExclusivePublisher::append_keyed`] and
    /// [`ExclusivePublisher::append_with`].
    pub fn append_keyed_with(&mut self, priority: Priority, key: &[u8], payload: &[u8]) -> Result<u64> {
        let body = Keyed::new(key, payload)?;
        match self.try_offer(priority, &body) {
            Ok(position) => Ok(position),
            Err(refused) => self.wait_and_append(refused, priority, &body),
        }
    }

    /// The position the next record will get (no shared load: this publisher
    /// owns the tail).
    pub fn tail_position(&self) -> u64 {
        self.codec.position(self.codec.pack(self.segment.index, self.offset as u64))
    }

    /// One record: the common case (it fits the tail's segment below the
    /// publication limit) inline at the caller, everything else
    /// ([`ExclusivePublisher::offer_slow`]) out of line.
    #[inline(always)]
    fn try_offer<B: Body + ?Sized>(&mut self, priority: Priority, body: &B) -> Result<u64, OfferError> {
        let len = body.body_len();
        if len <= self.inner.max_payload {
            let aligned = frame::aligned_frame_len(len);
            if let Room::Fits(position) = self.room(priority, aligned) {
                // SAFETY: `Room::Fits`: the frame fits the tail's segment.
                return unsafe { self.write_frame(priority, body, position, aligned) };
            }
        }
        self.offer_slow(priority, body)
    }

    /// [`ExclusivePublisher::try_offer`] for a record too large, at the
    /// publication limit or past the end of the tail's segment.
    #[cold]
    #[inline(never)]
    fn offer_slow<B: Body + ?Sized>(&mut self, priority: Priority, body: &B) -> Result<u64, OfferError> {
        let len = body.body_len();
        if len > self.inner.max_payload {
            return Err(Error::RecordTooLarge { len, max: self.inner.max_payload }.into());
        }
        let aligned = frame::aligned_frame_len(len);
        let position = self.room_for(priority, aligned)?;
        // SAFETY: `room_for` returns the tail's position only once the frame
        // fits the tail's segment.
        unsafe { self.write_frame(priority, body, position, aligned) }
    }

    /// Writes and commits the frame at the tail, `position`.
    ///
    /// # Safety
    /// `aligned` is `body`'s [`frame::aligned_frame_len`], and
    /// `self.offset + aligned <= self.segment_len` (as
    /// [`ExclusivePublisher::room_for`] makes sure).
    #[inline(always)]
    unsafe fn write_frame<B: Body + ?Sized>(
        &mut self,
        priority: Priority,
        body: &B,
        position: u64,
        aligned: usize,
    ) -> Result<u64, OfferError> {
        let len = body.body_len();
        let word = Word0::data(priority, len, self.owner).with_flags(B::FLAGS);
        let (segment, offset) = (&self.segment, self.offset);
        let fields = frame::header_fields(position, frame::now_ns(), body.body_crc());
        let file = segment.file();
        // SAFETY: the caller made `offset + aligned <= segment_len` (the
        // function's contract), which is the mapping's length
        // (segments are exactly that long), and `aligned` covers header and
        // body (whose parts lie in `0..len`); offsets stay multiples of the
        // frame alignment (32), so word 0 is 8-aligned; `write_segment` maps
        // segments writable; and past the tail only this publisher writes.
        unsafe {
            file.write_unchecked(offset + frame::POSITION_OFFSET, &fields);
            body.write_parts(|at, part| file.write_unchecked(offset + HEADER_LEN + at, part));
            // Release: a reader that sees the word sees the whole frame.
            file.atomic_u64_unchecked(offset).store(word.pack(), Ordering::Release);
        }
        self.offset += aligned;
        let meta = &self.inner.meta;
        meta.raw_tail().store(self.codec.pack(segment.index, self.offset as u64), Ordering::Release);
        // No other publisher exists: the count is ours to store.
        self.appended += 1;
        meta.appended().store(self.appended, Ordering::Relaxed);
        wake::notify(meta);
        if self.inner.meta.flush_always() {
            return self.flush_frame(position, offset, aligned);
        }
        Ok(position)
    }

    /// Under [`Flush::Always`](crate::Flush::Always): msyncs the frame just
    /// committed at `offset`.
    #[cold]
    #[inline(never)]
    fn flush_frame(&self, position: u64, offset: usize, aligned: usize) -> Result<u64, OfferError> {
        self.segment.file().flush_range(offset, aligned).map_err(|e| committed_not_flushed(position, e))?;
        Ok(position)
    }

    /// Whether an `aligned`-byte frame fits at the tail now.
    #[inline(always)]
    fn room(&self, priority: Priority, aligned: usize) -> Room {
        let position = self.segment.base + self.offset as u64;
        if position + aligned as u64 > self.inner.meta.limit(priority).load(Ordering::Relaxed) {
            Room::AtLimit
        } else if self.offset + aligned <= self.segment_len {
            Room::Fits(position)
        } else {
            Room::SegmentFull
        }
    }

    /// The position for an `aligned`-byte frame: within the publication
    /// limit, in a segment with room for it (rotating if needed).
    #[inline]
    fn room_for(&mut self, priority: Priority, aligned: usize) -> Result<u64, OfferError> {
        loop {
            match self.room(priority, aligned) {
                Room::Fits(position) => return Ok(position),
                Room::AtLimit => retention::at_limit(&self.inner, priority, aligned as u64)?,
                Room::SegmentFull => self.rotate()?,
            }
        }
    }

    /// Closes the tail's segment with padding and moves to the next one.
    #[cold]
    fn rotate(&mut self) -> Result<(), OfferError> {
        let size = self.segment_len;
        let index = self.segment.index;
        let meta = &self.inner.meta;
        if self.offset < size {
            self.segment.write_padding(self.offset, size - self.offset);
            self.offset = size;
            meta.raw_tail().store(self.codec.pack(index, size as u64), Ordering::Release);
        }
        let next = match window::write_segment(&self.inner, index + 1) {
            Ok(next) => next,
            // `Ok` when room was made: the caller's loop rotates again.
            Err(error) => return retention::rotation_failed(&self.inner, error),
        };
        meta.raw_tail().store(self.codec.pack(index + 1, SEGMENT_HEADER_LEN), Ordering::Release);
        self.segment = next;
        self.offset = SEGMENT_HEADER_LEN as usize;
        self.inner.publisher_rotated(index + 1);
        Ok(())
    }
}

impl Drop for ExclusivePublisher {
    fn drop(&mut self) {
        // Every frame is committed and the tail word is past it: nothing to
        // settle. (The lock itself is released right after, with `_lock`.)
        if let Some(mut recycling) = self.inner.recycling() {
            recycling.from_index = None;
        }
        self.inner.publishers_gone();
        // Nothing recycles them any more: give their disk back.
        window::remove_spares(&self.inner);
        self.inner.meta.exclusive_pid().store(0, Ordering::Release);
    }
}
