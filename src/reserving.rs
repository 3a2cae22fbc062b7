//! The reserving appender: `ReservingPublisher`, a publisher for one thread
//! that claims room for several records with one fetch-add on the tail (a
//! *reservation*) and fills it record by record. Threads that append at
//! once then each write a region of their own, rather than passing the
//! tail's cache line (and the frames' lines) between cores on every record.
//!
//! Owns: one handle's reservation (where its next record goes, how much
//! room is left, since when) and the size of the next one, and the
//! housekeeper's lapse of reservations left idle. Touches the frames of its
//! own reservation, through `publisher`'s frame writers; claims through
//! [`Publisher`] (limits, rotation, counts). The protocol on word 0 is
//! `frame`'s: the reservation is a claimed word with `FLAG_RESERVED`, split
//! one record at a time by `take_reserved` and given up with `pad_claimed`,
//! which a consumer also runs once the rest has waited `reserve_linger`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::Priority;
use crate::appender::{count_refusal, wait_after_refusal};
use crate::error::{OfferError, Result};
use crate::frame::{self, Body, Word0};
use crate::publisher::{Claimed, Publisher, Reserved, write_claim_header, write_reserved_frame};
use crate::segment::Segment;
use crate::state::{JournalState, NO_RESERVATION, ReservationHead};
use crate::thread_cache::{OnSegment, with_segment, with_segment_on};

/// The most a reservation claims, in bytes (42 frames of a 64-byte record).
/// Chunks of 16 to 64 frames took two threads from 0.29× to 0.80–1.02× of
/// one in `benches/two_threads.rs` (`docs/two-threads.md`).
const MAX_RESERVATION: usize = 4096;

/// A [`Publisher`] for one thread, from [`Publisher::reserving`]: it claims
/// room for several records at once and fills it record by record, so that
/// several threads appending at once (each with its own) scale where
/// threads sharing one `Publisher` contend on every record.
///
/// What it changes, against a [`Publisher`]:
/// - **Order.** Records of one `ReservingPublisher` keep the order they were
///   appended in. Records of different ones are ordered by reservation: a
///   record can land *before* one that another thread appended earlier.
///   Where positions must follow the order of appends across threads (one
///   thread appends, tells another, which appends), share a `Publisher`.
/// - **Readers wait at the unwritten rest** of a reservation until it is
///   filled, [released](ReservingPublisher::release) (also by dropping the
///   handle, or by appending with low priority), or until a consumer has
///   waited [`Config::reserve_linger`](crate::Config::reserve_linger)
///   (100 µs by default) there and turned the rest into padding. Records
///   that other threads appended after the reservation wait that long at
///   most behind a thread that stopped appending. Consumers of read-only
///   handles cannot pad: they wait until this handle's housekeeper finds
///   the rest unmoved for a whole tick (100 to 200 ms) and pads it.
/// - **A reservation is used while it is young**: the handle takes no
///   record from one older than the linger (by a clock of 1 to 4 ms
///   resolution, so about that long at least), nor once the tail has moved
///   into another segment, so its records are never far behind other
///   threads' in position, and never in a segment retention may drop.
/// - **Records appended meanwhile through any other handle** of this
///   thread, the [`Publisher`] this one came from included, are not
///   ordered with this handle's: call [`ReservingPublisher::release`]
///   first.
/// - **Padding**: a released or lapsed rest stays in the log as padding.
///   The reservation grows while it is filled (up to 4 KiB) and shrinks to
///   what was used when a consumer lapses it, so a slow thread wastes little.
///
/// Records appended with [`Priority::Low`], and records longer than 2 KiB,
/// go through the shared claim (after the reservation is released), so the
/// shed watermark is checked per record.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let journal = backwater::Journal::open(dir.path(), backwater::Config::default().segment_size(1 << 20))?;
/// let publisher = journal.publisher();
/// std::thread::scope(|scope| {
///     let threads: Vec<_> = (0..2u8)
///         .map(|thread| {
///             let mut mine = publisher.reserving();
///             scope.spawn(move || {
///                 let mut last = 0;
///                 for record in 0..1000u16 {
///                     let position = mine.append(&[thread, record as u8])?;
///                     assert!(position > last, "one handle's records keep their order");
///                     last = position;
///                 }
///                 Ok::<(), backwater::Error>(())
///             })
///         })
///         .collect();
///     threads.into_iter().try_for_each(|thread| thread.join().unwrap())
/// })?;
/// let mut consumer = journal.anonymous_consumer();
/// let mut read = 0;
/// while consumer.poll(|_| read += 1, 4096)? > 0 {}
/// assert_eq!(read, 2000, "every record was appended and the rests released");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ReservingPublisher {
    publisher: Publisher,
    reservation: Option<Reservation>,
    /// Bytes the next reservation claims.
    next_len: usize,
    /// The most a reservation claims here (below the journal's largest record).
    max_len: usize,
    /// `Config::reserve_linger`, in ns.
    linger_ns: u64,
    /// Where the rest starts, for the housekeeper.
    head: Arc<ReservationHead>,
}

/// The room left of a reservation.
#[derive(Clone, Copy)]
struct Reservation {
    /// Where the next record goes: the frame whose word is the
    /// reservation's, for `rest` aligned bytes.
    at: Claimed,
    rest: usize,
    /// Aligned bytes already taken.
    used: usize,
    /// When it was claimed ([`frame::now_ns`]).
    since_ns: u64,
}

impl Publisher {
    /// A [`ReservingPublisher`] appending through this publisher's handle:
    /// one per thread, for threads that append at high rates at once.
    pub fn reserving(&self) -> ReservingPublisher {
        let max_len = MAX_RESERVATION.min(frame::aligned_frame_len(self.inner.max_payload));
        let linger_ns = linger_ns(&self.inner);
        let head = self.inner.register_reservation_head();
        ReservingPublisher { publisher: self.clone(), reservation: None, next_len: 0, max_len, linger_ns, head }
    }
}

impl ReservingPublisher {
    /// [`Publisher::offer`] through the reservation: appends `payload` with
    /// normal priority if the journal is below its high watermark (checked
    /// once per reservation); never blocks.
    ///
    /// # Errors
    /// Those of [`Publisher::offer`].
    #[inline]
    pub fn offer(&mut self, payload: &[u8]) -> Result<u64, OfferError> {
        self.offer_with(Priority::Normal, payload)
    }

    /// [`Publisher::offer_with`]: a [`Priority::Low`] record releases the
    /// reservation and goes through the shared claim, which sheds it from
    /// the shed watermark on.
    ///
    /// # Errors
    /// Those of [`Publisher::offer_with`].
    #[inline]
    pub fn offer_with(&mut self, priority: Priority, payload: &[u8]) -> Result<u64, OfferError> {
        self.try_offer(priority, payload).inspect_err(|e| count_refusal(&self.publisher.inner.meta, e))
    }

    /// [`Publisher::append`] through the reservation: waits while the
    /// journal is back-pressured (the reservation released first, so that
    /// readers do not wait at it meanwhile).
    ///
    /// # Errors
    /// Those of [`Publisher::append`].
    #[inline]
    pub fn append(&mut self, payload: &[u8]) -> Result<u64> {
        self.append_with(Priority::Normal, payload)
    }

    /// [`Publisher::append_with`] through the reservation.
    ///
    /// # Errors
    /// Those of [`Publisher::append_with`].
    #[inline]
    pub fn append_with(&mut self, priority: Priority, payload: &[u8]) -> Result<u64> {
        match self.try_offer(priority, payload) {
            Ok(position) => Ok(position),
            Err(refused) => {
                self.release();
                let inner = self.publisher.inner.clone();
                wait_after_refusal(&inner, refused, || self.try_offer(priority, payload))
            }
        }
    }

    /// Gives up the rest of the reservation: it becomes padding, so readers
    /// move on at once to what other threads appended after it. Dropping
    /// the handle does the same.
    pub fn release(&mut self) {
        if let Some(reservation) = self.take_reservation() {
            let owner = self.publisher.owner();
            let reserved = Word0::reservation(reservation.rest, owner);
            // A segment dropped meanwhile took the rest with it.
            let _ = with_segment(self.publisher.inner.state(), reservation.at.index, |segment| {
                frame::pad_claimed(segment.word0(reservation.at.offset), reserved.pack())
            });
        }
    }

    /// Forgets the reservation (for the housekeeper too).
    fn take_reservation(&mut self) -> Option<Reservation> {
        self.head.rest_at.store(NO_RESERVATION, Ordering::Relaxed);
        self.reservation.take()
    }

    #[inline(always)]
    fn try_offer<B: Body + ?Sized>(&mut self, priority: Priority, body: &B) -> Result<u64, OfferError> {
        let len = body.body_len();
        self.publisher.check_len(len)?;
        let aligned = frame::aligned_frame_len(len);
        if priority == Priority::Low || 2 * aligned > self.max_len {
            return self.offer_alone(priority, body);
        }
        let word = Word0::data(priority, len, self.publisher.owner()).with_flags(B::FLAGS).claimed();
        let crc = body.body_crc();
        let now = frame::now_ns();
        loop {
            let reservation = match self.reservation {
                Some(reservation) if reservation.rest >= aligned && self.is_current(reservation, now) => reservation,
                _ => self.reserve(aligned, now)?,
            };
            let write = WriteReserved { reservation, word, crc, timestamp: now, body };
            let outcome = match with_segment_on(self.publisher.inner.state(), reservation.at.index, write) {
                Ok(outcome) => outcome,
                Err(error) => {
                    // The segment was dropped (or cannot be mapped): the
                    // reservation went with it.
                    self.take_reservation();
                    return Err(error.into());
                }
            };
            match outcome {
                Reserved::Committed => {
                    self.taken(reservation, aligned);
                    self.publisher.committed(reservation.at, aligned, 1)?;
                    return Ok(reservation.at.position);
                }
                // Padded before its commit: the rest holds; append again.
                Reserved::Unblocked => self.taken(reservation, aligned),
                Reserved::Lapsed => self.lapsed(reservation),
            }
        }
    }

    /// A record that does not go through the reservation: released first,
    /// so that it lands after every record this handle appended.
    #[cold]
    fn offer_alone<B: Body + ?Sized>(&mut self, priority: Priority, body: &B) -> Result<u64, OfferError> {
        self.release();
        self.publisher.try_offer(priority, body)
    }

    /// Whether records may still go into `reservation` at `now`: younger
    /// than the linger, and in the tail's segment (one the tail has left
    /// may be dropped by retention, and records there would be far behind
    /// other threads' in position).
    #[inline(always)]
    fn is_current(&self, reservation: Reservation, now: u64) -> bool {
        now.saturating_sub(reservation.since_ns) < self.linger_ns
            && self.publisher.inner.meta.tail_index() == reservation.at.index
    }

    /// `aligned` bytes from the start of `reservation` were taken.
    #[inline(always)]
    fn taken(&mut self, reservation: Reservation, aligned: usize) {
        let rest = reservation.rest - aligned;
        if rest == 0 {
            self.take_reservation();
            // Filled: the next one may be twice as large.
            self.next_len = (2 * self.next_len).min(self.max_len);
            return;
        }
        let at = reservation.at.advanced(aligned);
        self.head.rest_at.store(at.position, Ordering::Relaxed);
        self.reservation = Some(Reservation { at, rest, used: reservation.used + aligned, ..reservation });
    }

    /// A consumer (or the housekeeper) turned the rest of `reservation`
    /// into padding: this thread appends more slowly than readers wait, so
    /// reserve only what was used.
    #[cold]
    fn lapsed(&mut self, reservation: Reservation) {
        self.take_reservation();
        self.next_len = reservation.used;
    }

    /// Releases the reservation and claims a new one at `now`, with room
    /// for `aligned` bytes at least.
    #[cold]
    #[inline(never)]
    fn reserve(&mut self, aligned: usize, now: u64) -> Result<Reservation, OfferError> {
        self.release();
        let len = self.next_len.clamp(aligned, self.max_len.max(aligned));
        let word = Word0::reservation(len, self.publisher.owner());
        loop {
            let at = self.publisher.claim_range(Priority::Normal, len)?;
            let published = with_segment(self.publisher.inner.state(), at.index, |segment| {
                write_claim_header(segment, at, word, 0)
            })?;
            if published {
                let reservation = Reservation { at, rest: len, used: 0, since_ns: now };
                self.reservation = Some(reservation);
                self.head.rest_at.store(at.position, Ordering::Relaxed);
                self.next_len = len;
                return Ok(reservation);
            }
            // An unblocker covered the slot first: claim again.
        }
    }
}

impl Drop for ReservingPublisher {
    fn drop(&mut self) {
        self.release();
    }
}

/// [`write_reserved_frame`] as an [`OnSegment`], inline where it is run.
struct WriteReserved<'a, B: Body + ?Sized> {
    reservation: Reservation,
    word: Word0,
    crc: u32,
    timestamp: u64,
    body: &'a B,
}

impl<B: Body + ?Sized> OnSegment<Reserved> for WriteReserved<'_, B> {
    #[inline(always)]
    fn on(self, segment: &Arc<Segment>) -> Reserved {
        let Reservation { at, rest, .. } = self.reservation;
        write_reserved_frame(segment, at, rest, self.word, self.crc, self.timestamp, self.body)
    }
}

/// Turns into padding the rest of every reservation of this handle that
/// has not moved since the last call (a housekeeper tick) nor for
/// `reserve_linger`: a thread that stopped appending holds no reader, in any
/// process, much longer than that. Its next take fails, and it reserves anew.
pub(crate) fn lapse_idle(inner: &Arc<JournalState>) {
    let size = inner.segment_size();
    let now = frame::now_ns();
    let linger_ns = linger_ns(inner);
    for head in inner.reservation_heads() {
        let at = head.rest_at.load(Ordering::Relaxed);
        if at == NO_RESERVATION {
            continue;
        }
        if head.seen_at.swap(at, Ordering::Relaxed) != at {
            head.seen_since_ns.store(now, Ordering::Relaxed);
            continue;
        }
        if now.saturating_sub(head.seen_since_ns.load(Ordering::Relaxed)) < linger_ns {
            continue;
        }
        // A segment deleted meanwhile took the rest with it.
        let _ = with_segment(inner, at / size, |segment| {
            let word = segment.word0((at % size) as usize);
            let observed = word.load(Ordering::Acquire);
            if Word0::unpack(observed).is_reservation() {
                frame::pad_claimed(word, observed);
            }
        });
    }
}

/// `Config::reserve_linger` of this handle, in ns.
fn linger_ns(inner: &JournalState) -> u64 {
    u64::try_from(inner.reserve_linger.as_nanos()).unwrap_or(u64::MAX)
}
