//! The appender: `Publisher` claims space with one fetch-add on the shared
//! tail word, copies the record into the mapped segment and commits it with
//! one compare-and-swap on the frame's header word.
//!
//! Owns: the claim → write → commit protocol, segment rotation (padding the
//! tripped segment's tail and moving the tail word to the next segment), the
//! zero-copy `Claim`, batches and blocking appends. Touches the metadata's
//! tail word, limits and counters, and the segments' bytes it has claimed.
//! The slow paths go to `retention` (limits) and `window` (creating
//! segments); what both publishers share is in `appender`.
//!
//! The hot path per record: one relaxed load of the limit and the tail, one
//! fetch-add, one CRC, one copy, two CAS (publish the claim, commit), and a
//! plain store to this thread's own count (`append_count`). No lock, no
//! syscall, no allocation.

use std::sync::Arc;
use std::sync::atomic::{Ordering, compiler_fence};

use crate::append_count::count_appended;
use crate::appender::{committed_not_flushed, count_refusal, wait_after_refusal, wait_async, worth_waiting};
use crate::error::{Error, OfferError, Result};
use crate::frame::{self, Body, HEADER_LEN, Keyed, Word0};
use crate::handle::Handle;
use crate::mapped::MappedFile;
use crate::meta::TailCodec;
use crate::publisher_lock::PublisherGroup;
use crate::segment::{SEGMENT_HEADER_LEN, Segment};
use crate::thread_cache::{OnSegment, with_segment, with_segment_on};
use crate::{Priority, retention, wake, window};

/// A handle for appending records, from [`Journal::publisher`](crate::Journal::publisher).
/// `Clone + Send + Sync`; cheap to clone.
///
/// Every append returns the record's position. The `offer` family never
/// blocks: under back-pressure it returns [`OfferError::BackPressured`], and
/// a [`Priority::Low`] record above the shed watermark
/// [`OfferError::Dropped`]. The `append` family waits while back-pressured
/// (up to [`Config::append_timeout`](crate::Config::append_timeout)).
/// [`Publisher::claim`] writes a record in place.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let journal = backwater::Journal::open(dir.path(), backwater::Config::default().segment_size(1 << 20))?;
/// use backwater::{OfferError, Priority};
/// let publisher = journal.publisher();
/// let first = publisher.offer(b"never blocks")?;
/// let second = publisher.append(b"waits under back-pressure")?;
/// assert!(second > first);
/// match publisher.offer_with(Priority::Low, b"debug noise") {
///     Ok(_) | Err(OfferError::Dropped { .. }) => {}
///     Err(other) => return Err(other.into()),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Publisher {
    pub(crate) inner: Handle,
    codec: TailCodec,
    segment_size: u64,
    group: Arc<PublisherGroup>,
}

/// A claimed range, not yet written.
#[derive(Clone, Copy)]
pub(crate) struct Claimed {
    pub index: u64,
    pub offset: usize,
    pub position: u64,
}

impl Claimed {
    /// The range `len` bytes further on, in the same segment.
    pub fn advanced(self, len: usize) -> Claimed {
        Claimed { offset: self.offset + len, position: self.position + len as u64, ..self }
    }
}

impl Publisher {
    pub(crate) fn new(inner: Handle) -> Publisher {
        let codec = inner.meta.tail;
        let segment_size = inner.segment_size();
        let group = inner.publisher_group();
        Publisher { inner, codec, segment_size, group }
    }

    /// Appends `payload` with normal priority if the journal is below its high
    /// watermark; never blocks. Returns the record's position.
    ///
    /// # Errors
    /// - [`OfferError::BackPressured`] when fill is at the high watermark (under
    ///   [`WhenFull::Block`](crate::WhenFull::Block), or when a dropping
    ///   policy could not make room); nothing was written.
    /// - [`OfferError::Failed`] with [`Error::RecordTooLarge`] (longer than
    ///   [`Journal::max_record_len`](crate::Journal::max_record_len)),
    ///   [`Error::ExclusivelyPublished`] (an [`ExclusivePublisher`](crate::ExclusivePublisher)
    ///   exists), [`Error::ReadOnly`], [`Error::PositionsExhausted`],
    ///   [`Error::CommittedNotFlushed`] (under [`Flush::Always`](crate::Flush::Always):
    ///   the record *was* appended), [`Error::Lost`] (a dropping policy deleted
    ///   the segment this call's claim fell in before it could write there:
    ///   several threads on a ring of a few segments; nothing was written) or
    ///   [`Error::Io`].
    #[inline]
    pub fn offer(&self, payload: &[u8]) -> Result<u64, OfferError> {
        self.offer_with(Priority::Normal, payload)
    }

    /// Appends with the given priority; [`Priority::Low`] records are dropped
    /// (and counted in [`Stats::dropped_low`](crate::Stats::dropped_low)) from
    /// the shed watermark on.
    ///
    /// # Errors
    /// [`OfferError::Dropped`] for a low-priority record at or above the shed
    /// watermark; otherwise those of [`Publisher::offer`].
    #[inline]
    pub fn offer_with(&self, priority: Priority, payload: &[u8]) -> Result<u64, OfferError> {
        self.try_offer(priority, payload).inspect_err(|e| self.count_refusal(e))
    }

    /// Appends one record whose body is `body` (a payload, or a keyed
    /// record): generic, so the unkeyed path carries no key branch. Inline
    /// at the caller (the `Result` in registers, no call per record); what
    /// it calls past the first claim attempt is out of line.
    #[inline(always)]
    pub(crate) fn try_offer<B: Body + ?Sized>(&self, priority: Priority, body: &B) -> Result<u64, OfferError> {
        let len = body.body_len();
        self.check_len(len)?;
        let aligned = frame::aligned_frame_len(len);
        let word = Word0::data(priority, len, self.owner()).with_flags(B::FLAGS).claimed();
        // Computed before the claim, so that the time between claiming and
        // committing (the window others may wait on) is only the copy.
        let crc = body.body_crc();
        loop {
            let claimed = self.claim_range(priority, aligned)?;
            if with_segment_on(self.inner.state(), claimed.index, WriteFrame { at: claimed, word, crc, body })? {
                self.committed(claimed, aligned, 1)?;
                return Ok(claimed.position);
            }
            // This thread stalled past unblock_timeout and an unblocker took
            // the range over: nothing was appended, so claim again.
        }
    }

    /// Bookkeeping after `records` frames in `len` bytes at `at` committed.
    #[inline(always)]
    pub(crate) fn committed(&self, at: Claimed, len: usize, records: u64) -> Result<()> {
        count_appended(self.inner.state(), records);
        wake::notify(&self.inner.meta);
        if self.inner.meta.flush_always() {
            return self.flush_committed(at, len);
        }
        Ok(())
    }

    /// Under [`Flush::Always`](crate::Flush::Always): msyncs the `len`
    /// bytes just committed at `at`. Any failure, mapping the segment
    /// included (a dropping policy may delete it meanwhile), says the record
    /// was committed, so that no caller appends it again.
    #[cold]
    #[inline(never)]
    fn flush_committed(&self, at: Claimed, len: usize) -> Result<()> {
        with_segment(self.inner.state(), at.index, |segment| segment.file().flush_range(at.offset, len))
            .and_then(|flushed| flushed)
            .map_err(|e| committed_not_flushed(at.position, e))
    }

    /// Appends with normal priority, waiting (spin, yield, park) while the
    /// journal is back-pressured, up to
    /// [`Config::append_timeout`](crate::Config::append_timeout).
    ///
    /// # Errors
    /// [`Error::StillBackPressured`] when the timeout passed (nothing was
    /// appended); otherwise the [`OfferError::Failed`] errors of
    /// [`Publisher::offer`], as an [`Error`], but [`Error::Lost`]: a claim
    /// whose segment a dropping policy deleted under it is made again.
    #[inline]
    pub fn append(&self, payload: &[u8]) -> Result<u64> {
        self.append_with(Priority::Normal, payload)
    }

    /// [`Publisher::append`] without blocking the thread: an `async` task
    /// waits under back-pressure until a level change releases it (in any
    /// process; the handle's background waiter wakes the task), up to
    /// [`Config::append_timeout`](crate::Config::append_timeout).
    /// Runtime-agnostic (std [`Future`](std::future::Future) and
    /// [`Waker`](std::task::Waker)).
    ///
    /// Cancel-safe: the record is appended, whole, in the same poll that
    /// completes the future; a future dropped before it completed appended
    /// nothing.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let journal = backwater::Journal::open(dir.path(), backwater::Config::default().segment_size(1 << 20))?;
    /// let publisher = journal.publisher();
    /// let position = futures_executor::block_on(publisher.append_async(b"from a task"))?;
    /// # assert!(position > 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`Publisher::append`].
    pub async fn append_async(&self, payload: &[u8]) -> Result<u64> {
        // The first attempt as `offer` makes it; only a refusal pays for the
        // waiting future.
        match self.try_offer(Priority::Normal, payload) {
            Ok(position) => Ok(position),
            Err(refused) => {
                worth_waiting(&self.inner.meta, refused)?;
                wait_async(&self.inner, || self.try_offer(Priority::Normal, payload)).await
            }
        }
    }

    /// [`Publisher::append`] with a priority. A shed low-priority record
    /// returns [`Error::Dropped`] at once rather than waiting.
    ///
    /// # Errors
    /// [`Error::Dropped`], and those of [`Publisher::append`].
    #[inline]
    pub fn append_with(&self, priority: Priority, payload: &[u8]) -> Result<u64> {
        match self.try_offer(priority, payload) {
            Ok(position) => Ok(position),
            Err(refused) => wait_after_refusal(&self.inner, refused, || self.try_offer(priority, payload)),
        }
    }

    /// [`Publisher::offer`] for a keyed record: `payload` under `key`, for
    /// consumers that conflate ([`Consumer::poll_conflated`](crate::Consumer::poll_conflated)
    /// delivers only the last record of each key it reads). The key is
    /// stored ahead of the payload in the frame, both under its CRC
    /// ([`Record::key`](crate::Record::key) reads it back).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let journal = backwater::Journal::open(dir.path(), backwater::Config::default().segment_size(1 << 20))?;
    /// let publisher = journal.publisher();
    /// publisher.offer_keyed(b"EURUSD", b"1.0841")?;
    /// publisher.offer_keyed(b"EURUSD", b"1.0842")?;
    /// let mut consumer = journal.anonymous_consumer();
    /// let mut seen = Vec::new();
    /// consumer.poll_conflated(|record| seen.push((record.key().map(<[u8]>::to_vec), record.payload().to_vec())), 10)?;
    /// assert_eq!(seen, [(Some(b"EURUSD".to_vec()), b"1.0842".to_vec())]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`OfferError::Failed`] with [`Error::KeyTooLong`] for a key of more
    /// than [`frame::MAX_KEY_LEN`] bytes, or [`Error::RecordTooLarge`] when
    /// key, payload and the key's 2-byte length together exceed
    /// [`Journal::max_record_len`](crate::Journal::max_record_len);
    /// otherwise those of [`Publisher::offer`].
    #[inline]
    pub fn offer_keyed(&self, key: &[u8], payload: &[u8]) -> Result<u64, OfferError> {
        self.offer_keyed_with(Priority::Normal, key, payload)
    }

    /// [`Publisher::offer_keyed`] with a priority.
    ///
    /// # Errors
    /// Those of [`Publisher::offer_keyed`] and [`Publisher::offer_with`].
    #[inline]
    pub fn offer_keyed_with(&self, priority: Priority, key: &[u8], payload: &[u8]) -> Result<u64, OfferError> {
        let body = Keyed::new(key, payload)?;
        self.try_offer(priority, &body).inspect_err(|e| self.count_refusal(e))
    }

    /// [`Publisher::append`] for a keyed record (see
    /// [`Publisher::offer_keyed`]): waits while back-pressured.
    ///
    /// # Errors
    /// [`Error::KeyTooLong`], and those of [`Publisher::append`].
    pub fn append_keyed(&self, key: &[u8], payload: &[u8]) -> Result<u64> {
        self.append_keyed_with(Priority::Normal, key, payload)
    }

    /// [`Publisher::append_keyed`] with a priority (a shed record returns
    /// [`Error::Dropped`] at once).
    ///
    /// # Errors
    /// Those of [`Publisher::append_keyed`] and [`Publisher::append_with`].
    pub fn append_keyed_with(&self, priority: Priority, key: &[u8], payload: &[u8]) -> Result<u64> {
        let body = Keyed::new(key, payload)?;
        match self.try_offer(priority, &body) {
            Ok(position) => Ok(position),
            Err(refused) => wait_after_refusal(&self.inner, refused, || self.try_offer(priority, &body)),
        }
    }

    /// Appends every record of `records` with as few claims as possible (one
    /// per up to `segment_size / 8` bytes); never blocks. Returns the
    /// position of the first record. All or nothing per claim: on
    /// back-pressure the records of earlier claims stay appended.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let journal = backwater::Journal::open(dir.path(), backwater::Config::default().segment_size(1 << 20))?;
    /// let publisher = journal.publisher();
    /// let first = publisher.offer_batch(&[&b"one"[..], b"two", b"three"])?;
    /// let mut consumer = journal.anonymous_consumer();
    /// let mut seen = Vec::new();
    /// consumer.poll(|record| seen.push(record.payload().to_vec()), 10)?;
    /// assert_eq!(seen, [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
    /// assert_eq!(journal.first_position(), first);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`Publisher::offer`], for the claim that failed (the records
    /// of earlier claims stay appended).
    pub fn offer_batch<R: AsRef<[u8]>>(&self, records: &[R]) -> Result<u64, OfferError> {
        self.batch(records, false).inspect_err(|e| self.count_refusal(e))
    }

    /// [`Publisher::offer_batch`], waiting under back-pressure like
    /// [`Publisher::append`].
    ///
    /// # Errors
    /// Those of [`Publisher::append`].
    pub fn append_batch<R: AsRef<[u8]>>(&self, records: &[R]) -> Result<u64> {
        Ok(self.batch(records, true)?)
    }

    /// Appends `records` claim by claim, waiting under back-pressure when
    /// `wait`. Progress is kept per claim, so a wait never appends a record
    /// twice, even after an unblocker took part of a claim over.
    fn batch<R: AsRef<[u8]>>(&self, records: &[R], wait: bool) -> Result<u64, OfferError> {
        let mut first = None;
        let mut rest = records;
        while !rest.is_empty() {
            let take = self.batch_prefix(rest)?;
            let attempt = || self.try_claim_chunk(&rest[..take]);
            let (position, written) = match attempt() {
                Ok(done) => done,
                // Only a refused claim pays for waiting.
                Err(refused) if wait => wait_after_refusal(&self.inner, refused, attempt)?,
                Err(refused) => return Err(refused),
            };
            if written > 0 {
                first.get_or_insert(position);
            }
            // Records an unblocker took over go again, in order.
            rest = &rest[written..];
        }
        Ok(first.unwrap_or_else(|| self.inner.meta.tail_position()))
    }

    /// How many leading records fit in one claim.
    fn batch_prefix<R: AsRef<[u8]>>(&self, records: &[R]) -> Result<usize> {
        let budget = self.inner.max_payload + HEADER_LEN;
        let mut total = 0;
        for (count, record) in records.iter().enumerate() {
            let len = record.as_ref().len();
            self.check_len(len)?;
            total += frame::aligned_frame_len(len);
            if total > budget {
                return Ok(count.max(1));
            }
        }
        Ok(records.len())
    }

    /// One claim for all of `records`, written in order: the first one's
    /// position, and how many were committed (fewer when an unblocker took
    /// one over; the caller appends the rest again).
    fn try_claim_chunk<R: AsRef<[u8]>>(&self, records: &[R]) -> Result<(u64, usize), OfferError> {
        let total: usize = records.iter().map(|r| frame::aligned_frame_len(r.as_ref().len())).sum();
        let claimed = self.claim_range(Priority::Normal, total)?;
        let owner = self.owner();
        let written =
            with_segment(self.inner.state(), claimed.index, |segment| write_chunk(segment, claimed, records, owner))?;
        self.committed(claimed, total, written as u64)?;
        Ok((claimed.position, written))
    }

    /// Claims room for a `len`-byte record to be written in place; commit it
    /// with [`Claim::commit`]. Dropping the claim uncommitted turns it into
    /// padding. Never blocks.
    ///
    /// Consumers wait at an uncommitted claim (records after it are not
    /// read until it is committed or padded), so fill it promptly: one held
    /// past [`Config::unblock_timeout`](crate::Config::unblock_timeout) is
    /// turned into padding by a consumer.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let journal = backwater::Journal::open(dir.path(), backwater::Config::default().segment_size(1 << 20))?;
    /// let publisher = journal.publisher();
    /// let mut claim = publisher.claim(5)?;
    /// claim.payload_mut().copy_from_slice(b"hello");
    /// let position = claim.commit()?;
    /// # assert!(position > 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`Publisher::offer`] (but [`Error::CommittedNotFlushed`],
    /// which [`Claim::commit`] reports).
    pub fn claim(&self, len: usize) -> Result<Claim<'_>, OfferError> {
        self.claim_with(Priority::Normal, len)
    }

    /// [`Publisher::claim`] with a priority.
    ///
    /// # Errors
    /// [`OfferError::Dropped`] for a low-priority claim at or above the shed
    /// watermark; otherwise those of [`Publisher::claim`].
    pub fn claim_with(&self, priority: Priority, len: usize) -> Result<Claim<'_>, OfferError> {
        let result = self.try_claim(priority, len);
        result.inspect_err(|e| self.count_refusal(e))
    }

    fn try_claim(&self, priority: Priority, len: usize) -> Result<Claim<'_>, OfferError> {
        self.check_len(len)?;
        let mut claimed = self.claim_range(priority, frame::aligned_frame_len(len))?;
        let word = Word0::data(priority, len, self.owner()).claimed();
        loop {
            let segment = with_segment(self.inner.state(), claimed.index, Arc::clone)?;
            if write_claim_header(&segment, claimed, word, 0) {
                return Ok(Claim { publisher: self, segment, claimed, word, len, done: false });
            }
            claimed = self.claim_range(priority, frame::aligned_frame_len(len))?;
        }
    }

    #[inline]
    pub(crate) fn check_len(&self, len: usize) -> Result<()> {
        if len > self.inner.max_payload {
            return Err(Error::RecordTooLarge { len, max: self.inner.max_payload });
        }
        self.group.ensure_held()
    }

    #[inline]
    pub(crate) fn owner(&self) -> u16 {
        self.inner.owner_tag()
    }

    fn count_refusal(&self, error: &OfferError) {
        count_refusal(&self.inner.meta, error);
    }

    /// Claims `aligned` bytes. The common case (below the limit, the tail
    /// not tripped, the claim inside its segment) is inline at the caller;
    /// it runs what the first round of [`Publisher::claim_range_slow`]'s
    /// loop runs, in the same order with the same orderings, and hands
    /// everything else to it (or to [`Publisher::claim_after_trip`] once
    /// its fetch-add ran past the segment's end). A round shared by both,
    /// returning an enum of its outcomes, measured ~10% slower on this path
    /// (the claim went through the stack): hence the repetition.
    #[inline(always)]
    pub(crate) fn claim_range(&self, priority: Priority, aligned: usize) -> Result<Claimed, OfferError> {
        let meta = &self.inner.meta;
        let limit = meta.limit(priority).load(Ordering::Relaxed);
        let seen = meta.raw_tail().load(Ordering::Relaxed);
        let (_, seen_offset) = self.codec.unpack(seen);
        if self.codec.position(seen) + aligned as u64 > limit || seen_offset >= self.segment_size {
            return self.claim_range_slow(priority, aligned);
        }
        let raw = meta.raw_tail().fetch_add(aligned as u64, Ordering::AcqRel);
        let (index, offset) = self.codec.unpack(raw);
        if offset + aligned as u64 <= self.segment_size {
            let position = index * self.segment_size + offset;
            return Ok(Claimed { index, offset: offset as usize, position });
        }
        self.claim_after_trip(priority, aligned, index, offset)
    }

    /// [`Publisher::claim_range`] after its fetch-add ran past the end of
    /// segment `index`: trips, then claims again.
    #[cold]
    #[inline(never)]
    fn claim_after_trip(
        &self,
        priority: Priority,
        aligned: usize,
        index: u64,
        offset: u64,
    ) -> Result<Claimed, OfferError> {
        self.trip(index, offset)?;
        self.claim_range_slow(priority, aligned)
    }

    /// Claims `aligned` bytes: the whole loop (at the limit, a tripped tail,
    /// rotation).
    #[cold]
    #[inline(never)]
    fn claim_range_slow(&self, priority: Priority, aligned: usize) -> Result<Claimed, OfferError> {
        let meta = &self.inner.meta;
        let limit_word = meta.limit(priority);
        loop {
            let limit = limit_word.load(Ordering::Relaxed);
            let seen = meta.raw_tail().load(Ordering::Relaxed);
            if self.codec.position(seen) + aligned as u64 > limit {
                retention::at_limit(&self.inner, priority, aligned as u64)?;
                continue;
            }
            let (seen_index, seen_offset) = self.codec.unpack(seen);
            if seen_offset >= self.segment_size {
                // Tripped already: help rotate rather than add to the
                // overshoot, which must never carry into the segment index
                // (however long creating the next segment keeps failing).
                self.trip(seen_index, seen_offset)?;
                continue;
            }
            let raw = meta.raw_tail().fetch_add(aligned as u64, Ordering::AcqRel);
            let (index, offset) = self.codec.unpack(raw);
            if offset + aligned as u64 <= self.segment_size {
                let position = index * self.segment_size + offset;
                return Ok(Claimed { index, offset: offset as usize, position });
            }
            self.trip(index, offset)?;
        }
    }

    /// This claim ran past the end of segment `index`: the one claim that
    /// crossed the end pads the segment's tail; every tripped claimer helps
    /// rotate the tail word to the next segment, then retries.
    #[cold]
    fn trip(&self, index: u64, offset: u64) -> Result<(), OfferError> {
        if offset < self.segment_size {
            let len = (self.segment_size - offset) as usize;
            with_segment(self.inner.state(), index, |segment| segment.write_padding(offset as usize, len))?;
        }
        if let Err(error) = window::write_segment(&self.inner, index + 1) {
            // `Ok` when room was made: the caller's loop trips again.
            return retention::rotation_failed(&self.inner, error);
        }
        let tail = self.inner.meta.raw_tail();
        let next = self.codec.pack(index + 1, SEGMENT_HEADER_LEN);
        let mut current = tail.load(Ordering::Acquire);
        while self.codec.unpack(current).0 == index {
            match tail.compare_exchange(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.inner.publisher_rotated(index + 1);
                    break;
                }
                Err(actual) => current = actual,
            }
        }
        Ok(())
    }
}

/// Writes position, timestamp and CRC, then publishes the claimed word, so an
/// unblocker that finds it knows the frame's length and position. `false` if
/// an unblocker covered the slot first (the range is padding now).
#[inline(always)]
pub(crate) fn write_claim_header(segment: &Segment, at: Claimed, word: Word0, crc: u32) -> bool {
    let file = segment.file();
    check_frame(file, at.offset, word);
    let fields = frame::header_fields(at.position, frame::now_ns(), crc);
    // SAFETY: `check_frame` made the mapping writable and `at.offset +
    // HEADER_LEN <= file.len()`, and the fields end at HEADER_LEN; the
    // claim owns the range (it came from the tail fetch-add).
    unsafe { file.write_unchecked(at.offset + frame::POSITION_OFFSET, &fields) };
    // SAFETY: `check_frame` made `at.offset` a multiple of 8 with
    // `at.offset + 8 <= file.len()`.
    let published = frame::publish_claim(unsafe { file.atomic_u64_unchecked(at.offset) }, word);
    // Keep the payload stores after the claimed word in program order.
    compiler_fence(Ordering::SeqCst);
    published
}

/// Panics unless the frame of `word`'s length at `offset` lies inside the
/// writable mapping `file` with its header word 8-aligned: one check for
/// the frame's stores, which then go unchecked. (The claim's offset comes
/// from the shared tail word, which another process may have scribbled.)
#[inline(always)]
fn check_frame(file: &MappedFile, offset: usize, word: Word0) {
    let len = word.length.unsigned_abs() as usize;
    if !(file.writable() && offset.is_multiple_of(8) && len >= HEADER_LEN && offset + len <= file.len()) {
        frame_outside(file, offset, len);
    }
}

#[cold]
#[inline(never)]
fn frame_outside(file: &MappedFile, offset: usize, len: usize) -> ! {
    panic!(
        "frame of {len} bytes at {offset} outside the writable mapping of {} bytes ({})",
        file.len(),
        file.path().display()
    )
}

/// [`write_frame`] as an [`OnSegment`], inline where it is run.
struct WriteFrame<'a, B: Body + ?Sized> {
    at: Claimed,
    word: Word0,
    crc: u32,
    body: &'a B,
}

impl<B: Body + ?Sized> OnSegment<bool> for WriteFrame<'_, B> {
    #[inline(always)]
    fn on(self, segment: &Arc<Segment>) -> bool {
        write_frame(segment, self.at, self.word, self.crc, self.body)
    }
}

/// Writes and commits one frame; `false` if an unblocker took the range over
/// (the caller claims again: the record was not appended).
#[inline(always)]
fn write_frame<B: Body + ?Sized>(segment: &Segment, at: Claimed, word: Word0, crc: u32, body: &B) -> bool {
    write_claim_header(segment, at, word, crc) && write_body_and_commit(segment, at, word, body)
}

/// Writes and commits one frame, stamped `timestamp`, at the start of the
/// reservation of `rest` aligned bytes at `at`, marking the room after it as
/// the reservation's rest. What it came to: [`Reserved`].
#[inline(always)]
pub(crate) fn write_reserved_frame<B: Body + ?Sized>(
    segment: &Segment,
    at: Claimed,
    rest: usize,
    word: Word0,
    crc: u32,
    timestamp: u64,
    body: &B,
) -> Reserved {
    let file = segment.file();
    let reserved = Word0::reservation(rest, word.owner);
    check_frame(file, at.offset, reserved);
    let aligned = frame::align(word.length.unsigned_abs() as usize);
    if aligned > rest {
        frame_outside(file, at.offset, aligned);
    }
    let rest_word = (rest > aligned).then(|| {
        let next = at.advanced(aligned);
        // SAFETY: `check_frame` made the mapping writable, `at.offset` a
        // multiple of 8 and `at.offset + rest <= file.len()`; `next.offset`
        // is `at.offset` plus an aligned length below `rest`, so it is a
        // multiple of 8 with a whole header (`rest - aligned >= HEADER_LEN`)
        // inside the reservation, which this publisher owns.
        unsafe { file.write_unchecked(next.offset + frame::POSITION_OFFSET, &next.position.to_le_bytes()) };
        // SAFETY: as above.
        (unsafe { file.atomic_u64_unchecked(next.offset) }, Word0::reservation(rest - aligned, word.owner))
    });
    let fields = frame::header_fields(at.position, timestamp, crc);
    // SAFETY: as above: the fields end at HEADER_LEN, inside the reservation.
    unsafe { file.write_unchecked(at.offset + frame::POSITION_OFFSET, &fields) };
    // SAFETY: as above, `at.offset` is a multiple of 8 inside the mapping.
    if !frame::take_reserved(unsafe { file.atomic_u64_unchecked(at.offset) }, reserved, word, rest_word) {
        return Reserved::Lapsed;
    }
    // Keep the payload stores after the taken word in program order.
    compiler_fence(Ordering::SeqCst);
    if write_body_and_commit(segment, at, word, body) { Reserved::Committed } else { Reserved::Unblocked }
}

/// What [`write_reserved_frame`] came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reserved {
    /// The record is appended.
    Committed,
    /// A reader had lapsed the reservation into padding: nothing appended.
    Lapsed,
    /// The frame was taken, but held past `unblock_timeout` and padded
    /// before its commit: not appended; the rest of the reservation holds.
    Unblocked,
}

/// Copies `body` into the frame claimed at `at` and commits it; `false` if
/// an unblocker padded the claim first.
#[inline(always)]
fn write_body_and_commit<B: Body + ?Sized>(segment: &Segment, at: Claimed, word: Word0, body: &B) -> bool {
    let file = segment.file();
    // SAFETY: the caller ran `check_frame` over this frame (through
    // `write_claim_header` or `write_reserved_frame`): the mapping is
    // writable and `at.offset + HEADER_LEN + body_len <= file.len()`
    // (`word`'s length is `HEADER_LEN` plus the body's length, as every
    // caller builds it with `Word0::data`), and the bodies a publisher
    // writes (`[u8]`, `Keyed`) have their parts in `0..body_len`; the claim
    // owns the range.
    body.write_parts(|offset, part| unsafe { file.write_unchecked(at.offset + HEADER_LEN + offset, part) });
    // SAFETY: as for the claim, `at.offset` is a multiple of 8 with
    // `at.offset + 8 <= file.len()`.
    frame::commit(unsafe { file.atomic_u64_unchecked(at.offset) }, word)
}

/// Writes the frames of `records` from `at` in order; returns how many were
/// committed. If an unblocker took one over, the frames after it are given
/// up as padding too, so the caller can append the rest again in order.
fn write_chunk<R: AsRef<[u8]>>(segment: &Segment, mut at: Claimed, records: &[R], owner: u16) -> usize {
    let mut written = records.len();
    for (index, record) in records.iter().enumerate() {
        let payload = record.as_ref();
        let word = Word0::data(Priority::Normal, payload.len(), owner).claimed();
        if written == records.len() {
            if !write_frame(segment, at, word, frame::crc(payload), payload) {
                written = index;
            }
        } else if write_claim_header(segment, at, word, 0) {
            frame::pad_claimed(segment.word0(at.offset), word.pack());
        }
        at = at.advanced(frame::aligned_frame_len(payload.len()));
    }
    written
}

/// Room claimed for one record by [`Publisher::claim`], written in place
/// (zero-copy). It borrows the [`Publisher`] it came from.
///
/// Fill [`Claim::payload_mut`], then [`Claim::commit`]; if aborted or dropped
/// uncommitted it becomes padding that readers skip. Consumers wait at it
/// until then, so hold it briefly.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let journal = backwater::Journal::open(dir.path(), backwater::Config::default().segment_size(1 << 20))?;
/// let publisher = journal.publisher();
///
/// // Serialize straight into the journal.
/// let mut claim = publisher.claim(8)?;
/// claim.payload_mut().copy_from_slice(&42u64.to_le_bytes());
/// let position = claim.commit()?;
///
/// // Changed our mind: the room becomes padding, nothing is appended.
/// publisher.claim(100)?.abort();
///
/// let mut consumer = journal.anonymous_consumer();
/// let mut seen = Vec::new();
/// consumer.poll(|record| seen.push((record.position(), record.payload().to_vec())), 10)?;
/// assert_eq!(seen, [(position, 42u64.to_le_bytes().to_vec())]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Claim<'a> {
    /// Borrowed, not cloned: a claim changes no reference count of the
    /// journal's (its segment's mapping is the one it holds).
    publisher: &'a Publisher,
    segment: Arc<Segment>,
    claimed: Claimed,
    word: Word0,
    len: usize,
    done: bool,
}

impl Claim<'_> {
    /// The record's position (what [`Claim::commit`] returns).
    pub fn position(&self) -> u64 {
        self.claimed.position
    }

    /// The payload bytes to fill (exactly the claimed length).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        // SAFETY: this claim owns [offset, offset + aligned) of the segment
        // exclusively (it came from the tail fetch-add) until it is committed
        // or aborted, and the returned slice borrows `self` mutably.
        unsafe { self.segment.file().slice_mut(self.claimed.offset + HEADER_LEN, self.len) }
    }

    /// Computes the CRC and commits the record; returns its position.
    ///
    /// # Errors
    /// [`Error::ClaimUnblocked`] when the claim was held past a consumer's
    /// [`Config::unblock_timeout`](crate::Config::unblock_timeout) and turned
    /// into padding: the record was not appended. [`Error::CommittedNotFlushed`]
    /// under [`Flush::Always`](crate::Flush::Always) when the msync failed:
    /// the record *was* appended.
    pub fn commit(mut self) -> Result<u64> {
        self.done = true;
        let start = self.claimed.offset + HEADER_LEN;
        let crc = frame::crc(&self.segment.bytes()[start..start + self.len]);
        self.segment.file().write(self.claimed.offset + frame::CRC_OFFSET, &crc.to_le_bytes());
        if !frame::commit(self.segment.word0(self.claimed.offset), self.word) {
            return Err(Error::ClaimUnblocked { position: self.claimed.position });
        }
        let inner = &self.publisher.inner;
        count_appended(inner.state(), 1);
        wake::notify(&inner.meta);
        if inner.meta.flush_always() {
            let aligned = frame::aligned_frame_len(self.len);
            let flushed = self.segment.file().flush_range(self.claimed.offset, aligned);
            flushed.map_err(|e| committed_not_flushed(self.claimed.position, e))?;
        }
        Ok(self.claimed.position)
    }

    /// Gives the room up: it becomes padding (as dropping the claim does).
    pub fn abort(mut self) {
        self.pad();
    }

    fn pad(&mut self) {
        if !self.done {
            self.done = true;
            frame::pad_claimed(self.segment.word0(self.claimed.offset), self.word.pack());
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.pad();
    }
}
