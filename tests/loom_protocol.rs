//! Model checking of the frame protocol with loom: every interleaving of a
//! writer (claim → write → commit) against an unblocker (pad a claimed frame,
//! or cover an empty slot) ends with the record either committed once, with
//! its payload visible to any reader that sees the commit, or padded and the
//! writer told so. Never both, never torn.
//!
//! These are the same functions the journal runs (`backwater::frame`), over
//! loom's atomics instead of std's.

use backwater::frame::{self, HeaderWord, TYPE_DATA, TYPE_PADDING, Word0};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;

/// A slot's word 0 under loom.
struct Slot(AtomicU64);

impl HeaderWord for Slot {
    fn load(&self, order: std::sync::atomic::Ordering) -> u64 {
        self.0.load(to_loom(order))
    }

    fn store(&self, value: u64, order: std::sync::atomic::Ordering) {
        self.0.store(value, to_loom(order))
    }

    fn compare_exchange(
        &self,
        current: u64,
        new: u64,
        success: std::sync::atomic::Ordering,
        failure: std::sync::atomic::Ordering,
    ) -> Result<u64, u64> {
        self.0.compare_exchange(current, new, to_loom(success), to_loom(failure))
    }
}

fn to_loom(order: std::sync::atomic::Ordering) -> Ordering {
    match order {
        std::sync::atomic::Ordering::Relaxed => Ordering::Relaxed,
        std::sync::atomic::Ordering::Release => Ordering::Release,
        std::sync::atomic::Ordering::Acquire => Ordering::Acquire,
        std::sync::atomic::Ordering::AcqRel => Ordering::AcqRel,
        _ => Ordering::SeqCst,
    }
}

const CLAIMED: Word0 = Word0 { length: -40, frame_type: TYPE_DATA, flags: 0, owner: 1 };

/// What the writer's attempt came to.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Writer {
    Committed,
    ClaimLost,
    CommitLost,
}

fn writer(slot: &Slot, payload: &AtomicU64) -> Writer {
    if !frame::publish_claim(slot, CLAIMED) {
        return Writer::ClaimLost;
    }
    payload.store(42, Ordering::Relaxed);
    if frame::commit(slot, CLAIMED) { Writer::Committed } else { Writer::CommitLost }
}

/// The unblocker, as a reader that found the slot uncommitted after its timeout.
fn unblocker(slot: &Slot) -> bool {
    let observed = slot.load(std::sync::atomic::Ordering::Acquire);
    match Word0::unpack(observed).length {
        length if length < 0 => frame::pad_claimed(slot, observed),
        0 => frame::cover(slot),
        _ => false,
    }
}

#[test]
fn a_late_committer_and_an_unblocker_never_both_win() {
    loom::model(|| {
        let slot = Arc::new(Slot(AtomicU64::new(0)));
        let payload = Arc::new(AtomicU64::new(0));
        let (writer_slot, writer_payload) = (Arc::clone(&slot), Arc::clone(&payload));
        let writing = thread::spawn(move || writer(&writer_slot, &writer_payload));
        let unblocker_slot = Arc::clone(&slot);
        let unblocking = thread::spawn(move || unblocker(&unblocker_slot));
        // A reader racing both: if it sees a commit, it sees the whole record.
        let seen = Word0::unpack(slot.load(std::sync::atomic::Ordering::Acquire));
        if seen.length > 0 && seen.frame_type == TYPE_DATA {
            assert_eq!(payload.load(Ordering::Relaxed), 42, "a committed frame was read torn");
        }
        let wrote = writing.join().unwrap();
        let unblocked = unblocking.join().unwrap();
        let last = Word0::unpack(slot.load(std::sync::atomic::Ordering::Acquire));
        match wrote {
            Writer::Committed => {
                assert!(!unblocked, "both the writer and the unblocker won");
                assert_eq!((last.length, last.frame_type), (40, TYPE_DATA));
            }
            Writer::CommitLost => {
                assert!(unblocked);
                assert_eq!(last.frame_type, TYPE_PADDING, "a lost commit must leave padding");
            }
            Writer::ClaimLost => {
                assert!(unblocked);
                assert_eq!(last.frame_type, frame::TYPE_COVERED, "a lost claim must leave the slot covered");
            }
        }
    });
}

#[test]
fn an_abandoned_claim_becomes_padding_exactly_once() {
    loom::model(|| {
        let slot = Arc::new(Slot(AtomicU64::new(0)));
        assert!(frame::publish_claim(&*slot, CLAIMED));
        let abandoning = Arc::clone(&slot);
        let abandon = thread::spawn(move || frame::pad_claimed(&*abandoning, CLAIMED.pack()));
        let unblocker_slot = Arc::clone(&slot);
        let unblock = thread::spawn(move || unblocker(&unblocker_slot));
        let (abandoned, unblocked) = (abandon.join().unwrap(), unblock.join().unwrap());
        assert!(abandoned ^ unblocked, "exactly one of the two pads the claim");
        let last = Word0::unpack(slot.load(std::sync::atomic::Ordering::Acquire));
        assert_eq!((last.length, last.frame_type), (64, TYPE_PADDING));
    });
}

#[test]
fn covering_a_dead_claimers_gap_never_swallows_a_live_claim() {
    // Slot 0 belongs to a claimer that died before publishing; slot 1 to a
    // live claimer that is about to publish. The unblocker covers forward from
    // slot 0 until a slot refuses.
    loom::model(|| {
        let slots = Arc::new([Slot(AtomicU64::new(0)), Slot(AtomicU64::new(0))]);
        let payload = Arc::new(AtomicU64::new(0));
        let (live_slots, live_payload) = (Arc::clone(&slots), Arc::clone(&payload));
        let live = thread::spawn(move || writer(&live_slots[1], &live_payload));
        let covering = Arc::clone(&slots);
        let unblock = thread::spawn(move || covering.iter().take_while(|slot| frame::cover(*slot)).count());
        let wrote = live.join().unwrap();
        let covered = unblock.join().unwrap();
        assert!(covered >= 1, "the dead claimer's slot is always taken over");
        match wrote {
            Writer::Committed => assert_eq!(covered, 1, "the padding must end before the live claim"),
            Writer::ClaimLost => assert_eq!(covered, 2, "a lost claim means its slot was covered"),
            Writer::CommitLost => panic!("nobody pads a published claim in this model"),
        }
    });
}

/// A reservation of three one-slot frames (header-only records of 32
/// bytes), as a `ReservingPublisher` fills it: slots, and what was
/// written in each frame's body.
struct Run {
    slots: [Slot; 3],
    bodies: [AtomicU64; 3],
}

const SLOT: usize = frame::FRAME_ALIGNMENT;
const RECORD: Word0 = Word0 { length: -(SLOT as i32), frame_type: TYPE_DATA, flags: 0, owner: 1 };

impl Run {
    /// The reservation published over all three slots (what `reserve` leaves).
    fn reserved() -> Run {
        let run = Run {
            slots: [Slot(AtomicU64::new(0)), Slot(AtomicU64::new(0)), Slot(AtomicU64::new(0))],
            bodies: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
        };
        assert!(frame::publish_claim(&run.slots[0], Word0::reservation(3 * SLOT, 1)));
        run
    }

    /// The owner: takes and commits a record in slot 0, then in the next
    /// slot, then releases what is left, as `ReservingPublisher` does (a
    /// commit that fails was padded by a reader: the rest still holds). It
    /// makes only its first `steps` word changes (a thread that stopped or
    /// died there), and stops when a reader lapsed the rest first. Returns
    /// the slots whose commit succeeded.
    fn own(&self, steps: usize) -> Vec<usize> {
        let mut committed = Vec::new();
        let mut left = steps;
        let mut may = || left.checked_sub(1).map(|fewer| left = fewer).is_some();
        for at in 0..2 {
            let rest = (3 - at) * SLOT;
            if !may() {
                return committed;
            }
            let marked = Some((&self.slots[at + 1], Word0::reservation(rest - SLOT, 1)));
            if !frame::take_reserved(&self.slots[at], Word0::reservation(rest, 1), RECORD, marked) {
                return committed; // lapsed: nothing of this record was appended
            }
            self.bodies[at].store(100 + at as u64, Ordering::Relaxed);
            if !may() {
                return committed;
            }
            if frame::commit(&self.slots[at], RECORD) {
                committed.push(at);
            }
        }
        if may() {
            frame::pad_claimed(&self.slots[2], Word0::reservation(SLOT, 1).pack());
        }
        committed
    }

    /// A reader past every timeout (the worst case: timeouts are any
    /// length): walks from slot 0, lapsing reservations, padding claims
    /// and covering untouched slots, and checks every record it reads.
    /// Returns the slots it read as records, and whether it reached the end.
    fn read(&self) -> (Vec<usize>, bool) {
        let mut read = Vec::new();
        let mut at = 0;
        for _ in 0..8 {
            if at == 3 {
                return (read, true);
            }
            let observed = self.slots[at].load(std::sync::atomic::Ordering::Acquire);
            let word = Word0::unpack(observed);
            match word.length {
                length if length > 0 && word.frame_type == TYPE_DATA => {
                    assert_eq!(
                        self.bodies[at].load(Ordering::Relaxed),
                        100 + at as u64,
                        "a committed record read torn"
                    );
                    read.push(at);
                    at += 1;
                }
                length if length > 0 => {
                    assert_eq!(word.frame_type, TYPE_PADDING);
                    at += length as usize / SLOT;
                }
                length if length < 0 => {
                    frame::pad_claimed(&self.slots[at], observed);
                }
                _ => {
                    let covered = self.slots[at..].iter().take_while(|slot| frame::cover(*slot)).count();
                    if covered > 0 {
                        self.slots[at]
                            .store(Word0::padding(covered * SLOT).pack(), std::sync::atomic::Ordering::Release);
                    }
                }
            }
        }
        (read, at == 3)
    }
}

#[test]
fn an_owner_filling_its_reservation_and_a_reader_lapsing_it_never_both_win() {
    // Every interleaving of the owner (each prefix of its steps: a thread
    // that stopped or died there) against a reader that lapses, pads and
    // covers whatever it waits at; then a second such reader walks the run.
    // A record the owner was told is committed is read, whole, by the
    // second reader, and nothing else is; and a first reader that walked to
    // the end read the same (it skipped no record).
    for steps in 0..=5 {
        loom::model(move || {
            let run = Arc::new(Run::reserved());
            let owner_run = Arc::clone(&run);
            let owner = thread::spawn(move || owner_run.own(steps));
            let reader_run = Arc::clone(&run);
            let reader = thread::spawn(move || reader_run.read());
            let committed = owner.join().unwrap();
            let (read_first, first_reached_the_end) = reader.join().unwrap();
            let (read_after, reached_the_end) = run.read();
            assert!(reached_the_end, "the run was left blocked");
            assert_eq!(read_after, committed, "every committed record is read, and only those");
            if first_reached_the_end {
                assert_eq!(read_first, committed, "a reader skipped a record");
            } else {
                assert!(read_first.iter().all(|at| committed.contains(at)), "read a record never committed");
            }
        });
    }
}
