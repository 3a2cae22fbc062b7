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
