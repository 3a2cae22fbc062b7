//! The reader: `Consumer` walks frames forward from its position, hands out
//! zero-copy `Record`s, checks every CRC, and commits its position to its
//! durable cursor.
//!
//! Owns: one consumer's position, its mapped segment, seeking, lag, and
//! unblocking a hole left by a dead claimer (turning it into padding after
//! `unblock_timeout`) or an idle reservation (after `reserve_linger`). Touches segments read-only except for that padding,
//! and its own cursor file.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::Flush;
use crate::conflate::{Conflated, Conflation};
use crate::cursor::{self, CursorFile, WriterLock};
use crate::error::{Error, Result};
use crate::frame::{self, Decoded, Word0};
use crate::handle::Handle;
use crate::record::{Located, Record};
use crate::segment::{self, SEGMENT_HEADER_LEN, Segment};
use crate::state::JournalState;
use crate::waiter::Registration;
use crate::wake::Sleeper;

/// Where [`Consumer::seek`] moves to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seek {
    /// The earliest retained record.
    Start,
    /// The current tail: only records appended from now on.
    End,
    /// A frame boundary (a [`Record::position`], a [`Record::next_position`],
    /// or the tail).
    Position(u64),
    /// The first record stamped at or after this many ns since the epoch
    /// ([`Record::timestamp`]); the tail if there is none. Reads the journal
    /// from the start to find it.
    Time(u64),
}

/// Reads the journal forward from its own position.
///
/// A named consumer ([`Journal::consumer`](crate::Journal::consumer)) keeps
/// its position in a durable cursor: [`Consumer::commit`] persists it, a new
/// consumer with the same name resumes there, and retention keeps every
/// segment from it on. An anonymous one
/// ([`Journal::anonymous_consumer`](crate::Journal::anonymous_consumer))
/// holds nothing and commits nothing.
///
/// ```
/// use backwater::{Config, Journal, Seek};
///
/// let dir = tempfile::tempdir()?;
/// let journal = Journal::open(dir.path(), Config::default().segment_size(1 << 20))?;
/// let publisher = journal.publisher();
/// for n in 0..5u8 {
///     publisher.append(&[n])?;
/// }
///
/// let mut consumer = journal.consumer("audit")?;
/// let mut seen = Vec::new();
/// assert_eq!(consumer.poll(|record| seen.push(record.payload()[0]), 3)?, 3);
/// consumer.commit()?;                      // durable: resumes after record 2
/// assert_eq!(consumer.poll(|record| seen.push(record.payload()[0]), 10)?, 2);
/// assert_eq!(seen, [0, 1, 2, 3, 4]);
/// assert_eq!(consumer.lag(), 0);
///
/// drop(consumer);                          // the committed position stays
/// let mut consumer = journal.consumer("audit")?;
/// let mut again = Vec::new();
/// consumer.poll(|record| again.push(record.payload()[0]), 10)?;
/// assert_eq!(again, [3, 4]);
///
/// consumer.seek(Seek::Start)?;             // replay what is retained
/// let mut replayed = 0;
/// consumer.poll(|_| replayed += 1, 10)?;
/// assert_eq!(replayed, 5);
/// consumer.seek(Seek::End)?;               // only what comes next
/// assert_eq!(consumer.poll(|_| unreachable!(), 10)?, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Consumer {
    inner: Handle,
    cursor: Option<CursorFile>,
    /// Held by a writable named consumer: one writer per cursor.
    _writer: Option<WriterLock>,
    position: u64,
    segment: Option<Arc<Segment>>,
    hole: Option<Hole>,
    /// The last `poll_wait` timed out: the next one sleeps without spinning
    /// first (an idle follower costs no CPU; one that reads spins).
    quiet: bool,
    /// Kept between calls of `poll_conflated`, so its table is reused.
    conflation: Conflation,
    /// How far this consumer has placed its cursor's conflation mark (on
    /// the media, with the records below it, unless under `Flush::Never`).
    marked_through: u64,
}

impl Consumer {
    pub(crate) fn named(inner: Handle, name: &str, create: bool) -> Result<Consumer> {
        let cursor = inner.open_cursor(name, create)?;
        let writer = if inner.writable() { Some(cursor::lock_writer(cursor.path(), name)?) } else { None };
        let mut position = cursor.position();
        // Versions before 0.2 could commit a full segment's end, the next
        // segment's base: that means its first frame.
        if position > 0 && position.is_multiple_of(inner.segment_size()) {
            position += SEGMENT_HEADER_LEN;
        }
        let first = inner.meta.first_position().load(Ordering::Acquire);
        if let Err(error) = Self::check_held_position(&inner, position, first) {
            let reason = match error {
                Error::NotAFrameBoundary { reason, .. } => reason,
                other => other.to_string(),
            };
            return Err(Error::corrupt(
                cursor.path(),
                position,
                format!(
                    "cursor '{name}' does not point at a record ({reason}); move it with `backwater cursor DIR reset {name} start`"
                ),
            ));
        }
        Ok(Consumer {
            inner,
            cursor: Some(cursor),
            _writer: writer,
            position,
            segment: None,
            hole: None,
            quiet: false,
            conflation: Conflation::default(),
            marked_through: 0,
        })
    }

    pub(crate) fn anonymous(inner: Handle) -> Consumer {
        let position = inner.meta.first_position().load(Ordering::Acquire);
        Consumer {
            inner,
            cursor: None,
            _writer: None,
            position,
            segment: None,
            hole: None,
            quiet: false,
            conflation: Conflation::default(),
            marked_through: 0,
        }
    }

    /// The cursor's name (`None` for an anonymous consumer).
    pub fn name(&self) -> Option<&str> {
        self.cursor.as_ref().map(|c| c.name.as_str())
    }

    /// The position of the next record this consumer will read.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Bytes between this consumer's position and the tail.
    pub fn lag(&self) -> u64 {
        self.inner.meta.tail_position().saturating_sub(self.position)
    }

    /// Hands up to `limit` new records to `handler`, in order; returns how
    /// many (0 when there is nothing new). Never blocks. Padding is skipped;
    /// a claim not yet committed stops the poll there (after
    /// [`Config::unblock_timeout`](crate::Config::unblock_timeout) a writable
    /// handle turns an abandoned one into padding and reads on).
    ///
    /// # Errors
    /// - [`Error::Corrupt`] names the position of a frame that fails its
    ///   checks (or a position that is not a frame boundary); the consumer
    ///   stays there.
    /// - [`Error::Lost`] when data was deleted before it was read; the next poll
    ///   continues at the oldest retained record.
    /// - [`Error::Evicted`] when [`WhenFull::EvictSlowest`](crate::WhenFull::EvictSlowest)
    ///   detached this consumer's cursor; every poll reports it until
    ///   [`Consumer::reattach`].
    /// - [`Error::Io`] when a segment cannot be mapped.
    pub fn poll<F: FnMut(Record<'_>)>(&mut self, mut handler: F, limit: usize) -> Result<usize> {
        self.scan(|_, _, record| handler(record), limit, 0)
    }

    /// Reads up to `limit` records from the consumer's position (fewer at
    /// the tail) and hands the handler, in position order, every unkeyed
    /// record and, for each key, only the last record of that key among
    /// those read ([`Publisher::offer_keyed`](crate::Publisher::offer_keyed)).
    /// The consumer moves past every record read, handed out or not (commit
    /// as after [`Consumer::poll`]). Returns how many records it handed out;
    /// [`Consumer::poll_conflated_counts`] also says how many it read.
    ///
    /// Safe to resume after a crash or a power loss: before handing a
    /// window out, a named consumer records in its cursor file how far it
    /// has read (and puts it on the media with the records read, under
    /// every [`Flush`] policy but [`Flush::Never`]: one flush of the journal
    /// per window), and one that resumes at the
    /// committed position reads at least that far in its first window. So
    /// the windows it then conflates hold every window read before the
    /// crash, even one cut short at the tail, and it never hands out a
    /// record that an earlier reader skipped for a later record of its key
    /// (which that reader may have handed out), wherever it committed.
    ///
    /// The records handed out borrow the mapped segments (zero-copy, across
    /// segment boundaries too: the segments read are held until the call
    /// returns); a reused table of key to record keeps the work per record
    /// skipped close to a plain poll's, with no allocation per record once
    /// the table has grown to `limit`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let journal = backwater::Journal::open(dir.path(), backwater::Config::default().segment_size(1 << 20))?;
    /// let publisher = journal.publisher();
    /// for (key, price) in [("EURUSD", "1.0841"), ("USDJPY", "151.2"), ("EURUSD", "1.0842")] {
    ///     publisher.append_keyed(key.as_bytes(), price.as_bytes())?;
    /// }
    /// publisher.append(b"unkeyed: always delivered")?;
    /// let mut consumer = journal.consumer("prices")?;
    /// let mut seen = Vec::new();
    /// let delivered = consumer.poll_conflated(|record| seen.push(record.payload().to_vec()), 100)?;
    /// assert_eq!(delivered, 3);
    /// assert_eq!(seen, [b"151.2".to_vec(), b"1.0842".to_vec(), b"unkeyed: always delivered".to_vec()]);
    /// assert_eq!(consumer.lag(), 0);                // moved past all four
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`Consumer::poll`]. The records read before the failing
    /// frame are conflated and handed out first; the consumer stays at that
    /// frame. [`Error::Io`] when the cursor file's msync fails: nothing is
    /// handed out, and the consumer stays where it was. An error that cuts
    /// short a window that had to read on to the mark hands out nothing of
    /// it (a later record of a key, past where it stopped, may have been
    /// handed out before the crash): the consumer stays where the window
    /// began, and an [`Error::Lost`] (or [`Error::Evicted`]) is reported
    /// from there (the consumer moves on as the loss says).
    pub fn poll_conflated<F: FnMut(Record<'_>)>(&mut self, handler: F, limit: usize) -> Result<usize> {
        self.poll_conflated_counts(handler, limit).map(|counts| counts.delivered)
    }

    /// [`Consumer::poll_conflated`], returning how many records it read as
    /// well as how many it handed out (the rest were superseded by a later
    /// record of the same key among those read).
    ///
    /// # Errors
    /// Those of [`Consumer::poll_conflated`].
    pub fn poll_conflated_counts<F: FnMut(Record<'_>)>(&mut self, mut handler: F, limit: usize) -> Result<Conflated> {
        // Taken out while scanning, so the visitor may use it while `scan`
        // borrows the consumer.
        let mut conflation = std::mem::take(&mut self.conflation);
        let started_at = self.position;
        let until = self.conflated_through();
        let mut scanned = self.scan(|segment, at, _| conflation.note(segment, at), limit, until);
        if let Err(error) = &mut scanned
            && self.cut_short_below_the_mark(error, started_at, until)
        {
            conflation.deliver(&mut |_| {});
        }
        if let Err(error) = self.mark_conflated_through() {
            // Nothing handed out: the next call reads the window again.
            conflation.deliver(&mut |_| {});
            self.conflation = conflation;
            self.position = started_at;
            return Err(error);
        }
        let delivered = conflation.deliver(&mut handler);
        self.conflation = conflation;
        Ok(Conflated { read: scanned?, delivered })
    }

    /// Whether `error` stopped a window that had to read on to `until` (the
    /// mark) short of it: then nothing of the window may be handed out,
    /// since records past where it stopped may have superseded what it read
    /// in a window a run before handed out. A loss (or an eviction) is then
    /// reported from where the window began; after any other error the
    /// consumer goes back there, to read the whole window again.
    fn cut_short_below_the_mark(&mut self, error: &mut Error, started_at: u64, until: u64) -> bool {
        match error {
            Error::Lost { from, .. } | Error::Evicted { from, .. } if *from < until => *from = started_at,
            Error::Lost { .. } | Error::Evicted { .. } => return false,
            _ if self.position < until => self.position = started_at,
            _ => return false,
        }
        true
    }

    /// Raises the cursor file's mark to the consumer's position (a named
    /// consumer of a writable handle), and puts it on the media before the
    /// window goes out: a commit inside the window may reach the media
    /// (with the page, or by a later flush), and a reader resuming there
    /// after a power loss must read on past every window handed out. The
    /// records read go to the media first (a flush of the journal: under
    /// [`Flush::Always`] too, since records committed before a switch to it
    /// may not be): a power loss that kept the mark but took back a record
    /// handed out would leave the resumed reader an older record of its key
    /// to hand out. Once per window that moves the mark, under every policy
    /// but [`Flush::Never`], which promises nothing across a power loss;
    /// only once both syncs succeeded does this consumer count the mark as
    /// placed (a failed one is made again by the next window).
    fn mark_conflated_through(&mut self) -> Result<()> {
        let Some(cursor) = &self.cursor else { return Ok(()) };
        if !self.inner.writable() || self.position <= self.marked_through {
            return Ok(());
        }
        let durable = self.inner.meta.limits().flush != Flush::Never;
        if durable {
            crate::flush::flush_all(&self.inner)?;
        }
        cursor.raise_conflated_through(self.position);
        if durable {
            cursor.flush()?;
        }
        self.marked_through = self.position;
        Ok(())
    }

    /// Where a conflated read must read to at least, so that its window
    /// holds every window a run before it read from here (and may have
    /// handed out, in part, before it died): a rerun then skips what that
    /// run skipped, never handing out a record after a later one of its key
    /// that run handed out. A consumer at or past its committed position
    /// (where a resumed one starts, or moved to by a loss) and below the
    /// mark reads on to it; 0 (no bound) for any other.
    fn conflated_through(&self) -> u64 {
        match &self.cursor {
            Some(cursor) if cursor.position() <= self.position => cursor.conflated_through(),
            _ => 0,
        }
    }

    /// Walks `limit` records from the consumer's position, and on to
    /// position `until` at least (stopping earlier at the tail), handing
    /// each one's place, segment and record to `visit`, and moves past them.
    fn scan<F: FnMut(&Arc<Segment>, Located, Record<'_>)>(
        &mut self,
        mut visit: F,
        limit: usize,
        until: u64,
    ) -> Result<usize> {
        self.check_attached()?;
        let size = self.inner.segment_size();
        if !self.position.is_multiple_of(frame::FRAME_ALIGNMENT as u64) || self.position % size < SEGMENT_HEADER_LEN {
            let reason = "the consumer's position is not a frame boundary (damaged metadata or cursor)";
            return Err(Error::corrupt(self.inner.meta.path(), self.position, reason));
        }
        let mut count = 0;
        while count < limit || self.position < until {
            // The segment size is a power of two: shift and mask, not divide.
            let index = self.position >> size.trailing_zeros();
            if self.segment.as_ref().map(|s| s.index) != Some(index) {
                match self.open_segment(index)? {
                    Some(segment) => self.segment = Some(segment),
                    None => break,
                }
            }
            // Taken out while reading (no refcount change per poll); an error
            // leaves it out, and the next poll maps whatever is current.
            let Some(segment) = self.segment.take() else { break };
            // Past `limit`, on to `until` a record at a time, so as to stop
            // right there (only a conflated read below its cursor's mark).
            let want = if count < limit { limit - count } else { 1 };
            let (read, more) = self.read_in_segment(&segment, &mut visit, want)?;
            self.segment = Some(segment);
            count += read;
            if !more {
                break;
            }
        }
        Ok(count)
    }

    /// Reads frames of `segment` from the consumer's position, up to `limit`
    /// records. Returns how many, and `false` when there is nothing more to
    /// read for now (the tail, or a hole not yet old enough to unblock).
    ///
    /// The loop handles the common frame inline (a record whose CRC
    /// matches: `frame::decode_record`); everything else (padding, a claim,
    /// a fault) goes to [`Consumer::read_other`], out of line, which
    /// decodes it in full.
    #[inline(always)]
    fn read_in_segment<F: FnMut(&Arc<Segment>, Located, Record<'_>)>(
        &mut self,
        segment: &Arc<Segment>,
        visit: &mut F,
        limit: usize,
    ) -> Result<(usize, bool)> {
        let bytes = segment.bytes();
        let size = bytes.len();
        let mut position = self.position;
        let mut offset = (position & (size as u64 - 1)) as usize;
        // The loop's invariant, checked once here: `offset` is a multiple of
        // the frame alignment (so of 8) and below `size`, itself a multiple
        // of the alignment, so the frame header at `offset` (8-byte word
        // included) lies inside the segment. (`scan` refuses a position off
        // the alignment; a segment is a power of two of at least 64 KiB.)
        if !offset.is_multiple_of(frame::FRAME_ALIGNMENT) || !size.is_multiple_of(frame::FRAME_ALIGNMENT) {
            let reason = format!("segment of {size} bytes read at offset {offset}: not frame-aligned");
            return Err(Error::corrupt(segment.path(), position, reason));
        }
        let mut count = 0;
        while count < limit {
            // SAFETY: `offset` is a multiple of FRAME_ALIGNMENT (checked before
            // the loop; it grows by aligned lengths only), and below `size`
            // (it starts below, grows by at most the room left, and the loop
            // ends when it reaches `size`); `size` is a multiple of
            // FRAME_ALIGNMENT (checked before the loop), which is a multiple
            // of 8: so `offset` is 8-aligned and `offset + 8 <= size`.
            let word = unsafe { segment.word0_unchecked(offset) }.load(Ordering::Acquire);
            // SAFETY: `offset < size` (as above).
            let room = unsafe { bytes.get_unchecked(offset..) };
            let aligned = match frame::decode_record(word, room, position) {
                Some(record) => {
                    let next = segment::next_position(position, record.aligned_len, size as u64);
                    let at = Located {
                        offset,
                        position,
                        next_position: next,
                        timestamp: record.timestamp,
                        flags: record.flags,
                        // A key is at most u16::MAX bytes (its length is a u16).
                        key_len: record.key.map(|key| key.len() as u16),
                        payload_len: record.payload.len(),
                    };
                    visit(segment, at, at.with(record.key, record.payload));
                    count += 1;
                    position = next;
                    record.aligned_len
                }
                None => match self.read_other(segment, visit, word, offset, position)? {
                    Other::Next { aligned_len, next, record } => {
                        count += usize::from(record);
                        position = next;
                        aligned_len
                    }
                    Other::Stop { more } => return Ok((count, more)),
                },
            };
            offset += aligned;
            if offset == size {
                break; // on into the next segment
            }
        }
        self.position = position;
        Ok((count, true))
    }

    /// The frames `read_in_segment` does not handle inline, decoded in
    /// full: padding, a claim (where the read stops, or which is
    /// unblocked), a fault ([`Error::Corrupt`] naming the segment file and
    /// the position), or a record (should `frame::decode_record` have left
    /// one: handed to `visit` as in the loop).
    #[cold]
    #[inline(never)]
    fn read_other<F: FnMut(&Arc<Segment>, Located, Record<'_>)>(
        &mut self,
        segment: &Arc<Segment>,
        visit: &mut F,
        word: u64,
        offset: usize,
        position: u64,
    ) -> Result<Other> {
        let bytes = segment.bytes();
        let size = bytes.len() as u64;
        match frame::decode(word, &bytes[offset..], position, true) {
            Ok(Decoded::Data { payload_len, key_len, aligned_len, flags, timestamp }) => {
                let next = segment::next_position(position, aligned_len, size);
                let at = Located { offset, position, next_position: next, timestamp, flags, key_len, payload_len };
                visit(segment, at, at.record(bytes));
                Ok(Other::Next { aligned_len, next, record: true })
            }
            Ok(Decoded::Padding { aligned_len }) => Ok(Other::Next {
                aligned_len,
                next: segment::next_position(position, aligned_len, size),
                record: false,
            }),
            Ok(Decoded::Pending { .. }) => {
                self.position = position;
                let unblocked = unblock(&self.inner, segment, position, word, &mut self.hole);
                Ok(Other::Stop { more: unblocked })
            }
            Err(fault) => {
                self.position = position;
                // A segment recycled under this reader holds other
                // positions now: that is data deleted, not corruption.
                self.check_attached()?;
                Err(Error::corrupt(segment.path(), position, fault.to_string()))
            }
        }
    }

    /// [`Consumer::poll`], but waits up to `timeout` for at least one
    /// record: it spins briefly (not after a call that timed out), then
    /// sleeps in the kernel until a publisher (in any process) commits a
    /// record. Returns 0 only when the timeout
    /// passed with nothing new. (A consumer of a read-only handle, which
    /// cannot tell publishers it sleeps, parks for up to 1 ms at a time
    /// instead.)
    ///
    /// # Errors
    /// Those of [`Consumer::poll`].
    pub fn poll_wait<F: FnMut(Record<'_>)>(
        &mut self,
        mut handler: F,
        limit: usize,
        timeout: Duration,
    ) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        let handle = self.inner.clone();
        let mut sleeper = Sleeper::new(&handle.meta, handle.process_slot);
        if self.quiet {
            sleeper.skip_spin();
        }
        loop {
            let count = self.poll(&mut handler, limit)?;
            if count > 0 || Instant::now() >= deadline {
                self.quiet = count == 0;
                return Ok(count);
            }
            // At a hole, poll again once it may be unblocked.
            let wake_at = self.hole_unblock_at().map_or(deadline, |at| at.min(deadline));
            sleeper.idle(Some(wake_at));
        }
    }

    /// [`Consumer::poll`] for `async` tasks: waits for at least one record
    /// without blocking the thread (the handle's background waiter wakes the
    /// task when a publisher in any process commits), then hands out up to
    /// `limit` records as `poll` does and returns how many (0 only when
    /// `limit` is 0). Runtime-agnostic (std [`Future`](std::future::Future)
    /// and [`Waker`](std::task::Waker)).
    ///
    /// Cancel-safe: records are handed out only in the poll that completes
    /// the future, so a future dropped before it completed handed out
    /// nothing and left the position where it was.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let journal = backwater::Journal::open(dir.path(), backwater::Config::default().segment_size(1 << 20))?;
    /// let publisher = journal.publisher();
    /// let mut consumer = journal.consumer("async")?;
    /// let read = futures_executor::block_on(async {
    ///     publisher.append_async(b"hello").await?;
    ///     consumer.poll_async(|record| assert_eq!(record.payload(), b"hello"), 16).await
    /// })?;
    /// assert_eq!(read, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`Consumer::poll`].
    pub async fn poll_async<F: FnMut(Record<'_>)>(&mut self, mut handler: F, limit: usize) -> Result<usize> {
        if limit == 0 {
            return Ok(0);
        }
        let mut registration: Option<Registration> = None;
        std::future::poll_fn(|cx| {
            match self.poll(&mut handler, limit) {
                Ok(0) => {}
                done => return Poll::Ready(done),
            }
            let registration = registration.get_or_insert_with(|| self.inner.async_waiter().registration());
            // At a hole, poll again once it may be unblocked; otherwise at a commit.
            let unblock_at = self.hole_unblock_at();
            registration.arm(cx.waker(), unblock_at);
            // The re-check after arming: a commit before it is read here, a
            // commit after it wakes the waker.
            match self.poll(&mut handler, limit) {
                Ok(0) => Poll::Pending,
                done => Poll::Ready(done),
            }
        })
        .await
    }

    /// Persists the position in the durable cursor (a no-op for anonymous
    /// consumers). Visible to other processes at once; survives a process
    /// crash; flushed to disk under [`Flush::Always`] (otherwise with the
    /// next flush, or by the kernel).
    ///
    /// # Errors
    /// [`Error::ReadOnly`] for a named consumer of a read-only handle;
    /// [`Error::Io`] when the flush under [`Flush::Always`] fails.
    pub fn commit(&mut self) -> Result<()> {
        self.commit_at(self.position)
    }

    /// Persists `position` (a [`Record::next_position`] this consumer has
    /// passed) rather than the current read position: for consumers that
    /// read ahead of what their sink has acknowledged. A position past the
    /// read position commits the read position.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let journal = backwater::Journal::open(dir.path(), backwater::Config::default().segment_size(1 << 20))?;
    /// # let publisher = journal.publisher();
    /// # for _ in 0..3 { publisher.append(b"x")?; }
    /// let mut consumer = journal.consumer("sink")?;
    /// let mut acknowledged = None;
    /// let mut n = 0;
    /// consumer.poll(|record| {
    ///     n += 1;
    ///     if n == 2 {
    ///         acknowledged = Some(record.next_position());
    ///     }
    /// }, 10)?;
    /// consumer.commit_at(acknowledged.unwrap())?;   // the third record is read again
    /// # drop(consumer);
    /// # let mut consumer = journal.consumer("sink")?;
    /// # assert_eq!(consumer.poll(|_| {}, 10)?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotAFrameBoundary`] when `position` is not one this consumer
    /// could resume at: a cursor is never committed at a non-position.
    /// Otherwise those of [`Consumer::commit`].
    pub fn commit_at(&mut self, position: u64) -> Result<()> {
        if self.cursor.is_none() {
            return Ok(());
        }
        self.inner.require_writable()?;
        let position = position.min(self.position);
        if position != self.position {
            self.check_commit_position(position)?;
        }
        let Some(cursor) = &self.cursor else { return Ok(()) };
        cursor.store(position);
        if self.inner.meta.limits().flush == Flush::Always {
            cursor.flush()?;
        }
        Ok(())
    }

    /// Moves the consumer (the cursor is persisted by the next
    /// [`Consumer::commit`]).
    ///
    /// # Errors
    /// [`Error::NotAFrameBoundary`] for a [`Seek::Position`] outside the
    /// journal's range or where no frame starts; for [`Seek::Time`], the
    /// errors of [`Consumer::poll`] met while searching. The position is
    /// unchanged on error.
    pub fn seek(&mut self, to: Seek) -> Result<()> {
        let first = self.inner.meta.first_position().load(Ordering::Acquire);
        self.position = match to {
            Seek::Start => first,
            Seek::End => self.inner.meta.tail_position(),
            Seek::Position(position) => Self::check_boundary(&self.inner, position, first)?,
            Seek::Time(ns) => self.find_time(ns, first)?,
        };
        self.hole = None;
        Ok(())
    }

    /// Re-attaches a cursor evicted by
    /// [`WhenFull::EvictSlowest`](crate::WhenFull::EvictSlowest): the
    /// consumer reads on from the oldest retained record it has not read
    /// (for any consumer, moves it there if it is behind), never back
    /// behind records it handed out (a conflating one would hand out older
    /// values of a key after newer ones); the cursor keeps what was
    /// committed, or moves to the oldest retained record if that is
    /// further (a crash before the next commit reads the rest again).
    ///
    /// # Errors
    /// [`Error::ReadOnly`] on a read-only handle.
    pub fn reattach(&mut self) -> Result<()> {
        self.inner.require_writable()?;
        let first = self.inner.meta.first_position().load(Ordering::Acquire);
        self.position = self.position.max(first);
        if let Some(cursor) = &self.cursor {
            cursor.clear_eviction(cursor.position().max(first));
        }
        Ok(())
    }

    /// Reports eviction or deleted data once, then moves to the oldest record.
    fn check_attached(&mut self) -> Result<()> {
        let first = self.inner.meta.first_position().load(Ordering::Acquire);
        if let Some(cursor) = &self.cursor
            && let Some((evicted_at, retained_from)) = cursor.eviction()
        {
            // The evictor saw the committed cursor; this consumer may have
            // read past it (those records were handed over before they
            // went), and more may have been deleted since.
            let from = evicted_at.max(self.position);
            let to = retained_from.max(first).max(from);
            return Err(Error::Evicted { cursor: cursor.name.clone(), from, to });
        }
        if self.position < first {
            let from = self.position;
            self.position = first;
            self.segment = None;
            return Err(Error::Lost { from, to: first });
        }
        Ok(())
    }

    /// Maps segment `index`, or `None` if it does not exist yet.
    fn open_segment(&mut self, index: u64) -> Result<Option<Arc<Segment>>> {
        match self.inner.read_segment(index) {
            Ok(segment) => Ok(Some(segment)),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                // Deleted under us (a policy dropped it) or not created yet.
                self.check_attached()?;
                Ok(None)
            }
            Err(other) => Err(other),
        }
    }

    /// A position behind the read position that `commit_at` may store: a
    /// frame boundary (checked in the mapped segment when it is still there).
    fn check_commit_position(&self, position: u64) -> Result<()> {
        let size = self.inner.segment_size();
        if position % size < SEGMENT_HEADER_LEN || !position.is_multiple_of(frame::FRAME_ALIGNMENT as u64) {
            let reason = "not a record's position (Record::next_position gives one)".into();
            return Err(Error::NotAFrameBoundary { position, reason });
        }
        let first = self.inner.meta.first_position().load(Ordering::Acquire);
        Self::check_held_position(&self.inner, position, first)
    }

    /// Checks a position the consumer holds (its cursor's, or one it read
    /// past), given the first position the caller read: a frame boundary up
    /// to the tail, or behind the first position (data a policy deleted;
    /// the next poll reports the loss). A policy moves the first position
    /// before it deletes, so a check that fails is looked at again against
    /// the first position as it is now: the segment may have gone meanwhile.
    fn check_held_position(inner: &JournalState, position: u64, first: u64) -> Result<()> {
        let deleted = |first: u64| position < first;
        if deleted(first) {
            return Ok(());
        }
        match Self::check_boundary(inner, position, first) {
            Err(_) if deleted(inner.meta.first_position().load(Ordering::Acquire)) => Ok(()),
            checked => checked.map(drop),
        }
    }

    fn check_boundary(inner: &JournalState, position: u64, first: u64) -> Result<u64> {
        let tail = inner.meta.tail_position();
        let size = inner.segment_size();
        let refuse = |reason: String| Err(Error::NotAFrameBoundary { position, reason });
        if position == tail {
            return Ok(position);
        }
        if position < first || position > tail {
            return refuse(format!("outside the journal's range {first}..={tail}"));
        }
        if position % size < SEGMENT_HEADER_LEN || !position.is_multiple_of(frame::FRAME_ALIGNMENT as u64) {
            return refuse("not aligned to a frame".into());
        }
        let segment = inner.read_segment(position / size)?;
        let offset = (position % size) as usize;
        let word = segment.word0(offset).load(Ordering::Acquire);
        match frame::decode(word, &segment.bytes()[offset..], position, false) {
            Ok(Decoded::Data { .. }) | Ok(Decoded::Padding { .. }) => Ok(position),
            // A claim names its position (`frame::decode` checks it).
            Ok(Decoded::Pending { claimed: Some(_) }) => Ok(position),
            // A slot no claimer wrote yet (a dead one's: a consumer waiting
            // there commits it), if the frames before it lead there.
            Ok(Decoded::Pending { claimed: None }) if Self::frames_lead_to(&segment, offset) => Ok(position),
            Ok(Decoded::Pending { .. }) => refuse("no frame starts there".into()),
            Err(fault) => refuse(fault.to_string()),
        }
    }

    /// Whether walking `segment`'s frames from its first one reaches
    /// `offset` exactly (every frame before it committed or claimed, so of
    /// a known length).
    fn frames_lead_to(segment: &Segment, offset: usize) -> bool {
        let mut at = SEGMENT_HEADER_LEN as usize;
        while at < offset {
            let word = segment.word0(at).load(Ordering::Acquire);
            at += match frame::decode(word, &segment.bytes()[at..], segment.base + at as u64, false) {
                Ok(Decoded::Data { aligned_len, .. } | Decoded::Padding { aligned_len }) => aligned_len,
                Ok(Decoded::Pending { claimed: Some(claimed) }) => claimed,
                _ => return false,
            };
        }
        at == offset
    }

    /// When the hole this consumer stopped at may be turned into padding
    /// (never by a read-only handle's consumer).
    fn hole_unblock_at(&self) -> Option<Instant> {
        self.hole.filter(|_| self.inner.writable()).map(|hole| hole.unblock_at())
    }

    /// The position of the first record stamped at or after `ns`.
    fn find_time(&mut self, ns: u64, first: u64) -> Result<u64> {
        let mut scout = Consumer {
            inner: self.inner.clone(),
            cursor: None,
            _writer: None,
            position: first,
            segment: None,
            hole: None,
            quiet: false,
            conflation: Conflation::default(),
            marked_through: 0,
        };
        let mut found = None;
        loop {
            let before = scout.position;
            let read = scout.poll(
                |record| {
                    if found.is_none() && record.timestamp() >= ns {
                        found = Some(record.position());
                    }
                },
                1024,
            )?;
            if found.is_some() || read == 0 && scout.position == before {
                break;
            }
        }
        Ok(found.unwrap_or(scout.position))
    }
}

/// What `Consumer::read_other` found.
enum Other {
    /// A frame to move past: a record handed to the visitor, or padding.
    Next { aligned_len: usize, next: u64, record: bool },
    /// Stop reading this segment (at a claim): `more` if it was unblocked.
    Stop { more: bool },
}

/// An uncommitted frame below the tail where a consumer stopped: since
/// when, and how long it may stay so before the consumer pads it. A
/// reservation is one hole wherever in it the consumer stops, so that a
/// thread that fills its reservation slowly holds readers (and the records
/// other threads appended after it) no longer than `reserve_linger` in all.
#[derive(Clone, Copy, Debug)]
struct Hole {
    position: u64,
    since: Instant,
    timeout: Duration,
    /// Where the reservation ends, if the frame is one.
    reservation_end: Option<u64>,
}

impl Hole {
    fn unblock_at(&self) -> Instant {
        self.since + self.timeout
    }
}

/// At an uncommitted frame whose word 0 read `word`: `true` if it was
/// turned into padding (read on), `false` to stop and wait (the end of the
/// data, or a hole not yet old enough). A reservation waits
/// `reserve_linger`, any other claim or untouched slot `unblock_timeout`;
/// only the word seen is padded, so a reservation taken meanwhile is a
/// claim that waits its own timeout.
fn unblock(inner: &JournalState, segment: &Segment, position: u64, word: u64, hole: &mut Option<Hole>) -> bool {
    if position >= inner.meta.tail_position() {
        *hole = None;
        return false;
    }
    let observed = Word0::unpack(word);
    let reservation_end =
        observed.is_reservation().then(|| position + frame::align(observed.length.unsigned_abs() as usize) as u64);
    let timeout = if reservation_end.is_some() { inner.reserve_linger } else { inner.unblock_timeout };
    // The same hole: the same reservation, wherever in it, or the same
    // frame still uncommitted (a reservation taken there since is a claim
    // whose own timeout starts now).
    let same = hole.is_some_and(|seen| match reservation_end {
        Some(_) => seen.reservation_end == reservation_end,
        None => seen.position == position && seen.reservation_end.is_none(),
    });
    match hole {
        Some(seen) if same => {
            *seen = Hole { position, timeout, reservation_end, ..*seen };
            if seen.since.elapsed() < timeout || !inner.writable() {
                return false;
            }
        }
        _ => {
            *hole = Some(Hole { position, since: Instant::now(), timeout, reservation_end });
            return false;
        }
    }
    let offset = (position % inner.segment_size()) as usize;
    let padded = if observed.length < 0 {
        frame::pad_claimed(segment.word0(offset), word)
    } else {
        pad_empty(inner, segment, offset)
    };
    // A lapsed reservation held no record: it is not an unblocked claim.
    if padded && !observed.is_reservation() {
        inner.meta.unblocked().fetch_add(1, Ordering::Relaxed);
    }
    *hole = None;
    true
}

/// A claimer died before publishing its claim: take over every untouched slot
/// up to the next claimed or committed frame (so a claimer that was only
/// stalled fails and claims again), then make the run one padding frame.
fn pad_empty(inner: &JournalState, segment: &Segment, offset: usize) -> bool {
    let size = inner.segment_size();
    let tail = inner.meta.tail_position();
    let limit = if tail / size == segment.index { (tail % size) as usize } else { size as usize };
    let mut end = offset;
    // A slot already covered here is an unblocker's that died before padding.
    let takeable = |at: usize| frame::cover(segment.word0(at)) || at == offset && frame::is_covered(segment.word0(at));
    while end < limit && takeable(end) {
        end += frame::FRAME_ALIGNMENT;
    }
    if end == offset {
        return false;
    }
    segment.write_padding(offset, end - offset);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Journal};

    /// A reader that waited at a reservation longer than its
    /// `unblock_timeout` must not pad the claim its owner then takes there
    /// at once: the claim's timeout starts when it is seen. (Review of the
    /// consumer's `Hole`: the hole kept the reservation's start.) The owner's
    /// take, which the public API makes and commits in one call, is staged.
    #[test]
    fn a_claim_taken_where_a_reader_waited_at_a_reservation_gets_its_own_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let size = 64 << 10;
        let hour = Duration::from_secs(3600);
        let config = Config::default().segment_size(size).min_free_disk(0).reserve_linger(hour);
        let journal = Journal::open(dir.path(), config.unblock_timeout(Duration::from_millis(50))).unwrap();
        let mut reserving = journal.publisher().reserving();
        // Reservations of 1, 2 and 4 frames: the fourth record leaves a rest.
        let last = (0..4u8).map(|n| reserving.append(&[n; 20]).unwrap()).last().unwrap();
        let rest = last + frame::aligned_frame_len(20) as u64;
        journal.publisher().append(b"after").unwrap();
        let mut consumer = journal.anonymous_consumer();
        assert_eq!(consumer.poll(|_| {}, 100).unwrap(), 4);
        std::thread::sleep(Duration::from_millis(100)); // the hole's age, past unblock_timeout
        let word_at_rest = |f: &dyn Fn(&std::sync::atomic::AtomicU64) -> u64| {
            let offset = (rest % size) as usize;
            crate::thread_cache::with_segment(journal.inner.state(), rest / size, |segment| f(segment.word0(offset)))
                .unwrap()
        };
        let reserved = word_at_rest(&|word| word.load(Ordering::Acquire));
        assert!(Word0::unpack(reserved).is_reservation());
        let claimed = Word0::data(crate::Priority::Normal, 20, 0).claimed().pack();
        word_at_rest(&|word| word.compare_exchange(reserved, claimed, Ordering::AcqRel, Ordering::Acquire).unwrap());
        consumer.poll(|_| {}, 100).unwrap();
        assert_eq!(word_at_rest(&|word| word.load(Ordering::Acquire)), claimed, "the fresh claim was padded");
        drop(reserving);
    }

    /// A policy moves the first position before it deletes a segment; a
    /// consumer that read the first position just before that, and opens
    /// the segment just after, holds a position in deleted data, not one
    /// that "does not point at a record". (Found by the power-loss model: a
    /// reopened workload's cursor failed so while its housekeeper made room
    /// in a full ring.)
    #[test]
    fn a_held_position_whose_segment_went_while_it_was_checked_is_deleted_data() {
        let dir = tempfile::tempdir().unwrap();
        let size = 64 << 10;
        let journal = Journal::open(dir.path(), Config::default().segment_size(size).min_free_disk(0)).unwrap();
        let held = journal.publisher().append(b"held").unwrap();
        while journal.tail_position() < 2 * size {
            journal.publisher().append(&[0u8; 1000]).unwrap();
        }
        let first_read_before = journal.inner.meta.first_position().load(Ordering::Acquire);
        journal.inner.meta.first_position().store(size + SEGMENT_HEADER_LEN, Ordering::Release);
        std::fs::remove_file(crate::segment::path_of(dir.path(), 0, size)).unwrap();
        journal.inner.window_remove(0);

        Consumer::check_held_position(&journal.inner, held, first_read_before)
            .expect("a position in a segment deleted meanwhile is deleted data");
        let beyond_the_tail = journal.tail_position() + 64;
        assert!(Consumer::check_held_position(&journal.inner, beyond_the_tail, first_read_before).is_err());
    }
}
