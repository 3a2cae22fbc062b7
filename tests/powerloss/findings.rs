//! Minimal reproductions of what the random model found: each is one short
//! scripted workload and one deterministic crash image (see `Scripted`),
//! and each asserts what must hold. They fail until the library is fixed.

use std::collections::BTreeMap;

use backwater::{Claim, Consumer, ExclusivePublisher, Flush, Journal, Record};

use crate::SEGMENT;
use crate::check::{CURSOR, Problem};
use crate::media::Script;
use crate::scripted::{Scripted, explicit, small};

/// `00000000000000000000.seg` and its neighbours.
fn segment(index: u64) -> String {
    backwater::segment::file_name(index * SEGMENT)
}

const CURSOR_FILE: &str = "cursors/c.cursor";

fn assert_recovers(problems: &[Problem]) {
    assert!(problems.is_empty(), "recovery of the crash image: {problems:#?}");
}

/// A journal with `flush` whose tail has just reached segment 2: one record
/// of `first` bytes, then records of `then` bytes. (5,000-byte records make
/// 5,056-byte frames: 12 per segment, then 4,800 bytes of padding.)
fn into_segment_two(s: &mut Scripted, flush: Flush, first: usize, then: usize) -> Journal {
    let journal = Journal::open(s.path(), small(flush)).expect("open");
    let publisher = journal.publisher();
    s.append(&publisher, first);
    while journal.tail_position() < 2 * SEGMENT + 64 {
        s.append(&publisher, then);
    }
    journal
}

/// A journal with one record and a claim of a second one, filled, that
/// `commit` commits around a `flush()` (given the harness, to hook the
/// flush's barriers); then one more flush promises both,
/// and a power loss must keep them.
fn assert_claim_flushed_by_the_next_flush(commit: impl FnOnce(&Scripted, &Journal, Claim<'_>) -> u64) {
    let mut s = Scripted::new();
    let journal = Journal::open(s.path(), small(explicit())).expect("open");
    let publisher = journal.publisher();
    s.append(&publisher, 100);
    let (seed, payload) = s.next_payload(100);
    let mut claim = publisher.claim(100).expect("claim");
    claim.payload_mut().copy_from_slice(&payload);
    let position = commit(&s, &journal, claim);
    s.logged(position, seed, 100);
    journal.flush().expect("flush after the commit");
    s.promise_all(None);
    assert_recovers(&s.power_loss(Script::durable()));
}

/// A `flush()` that runs while a claim is open msyncs the claimed frame and
/// moves the handle's flushed position past it; the commit that follows is
/// never msynced by any later `flush()`, which returns as if it were.
#[test]
fn a_record_committed_after_a_flush_passed_its_claim_is_flushed_by_the_next_flush() {
    assert_claim_flushed_by_the_next_flush(|_, journal, claim| {
        journal.flush().expect("flush while the claim is open");
        claim.commit().expect("commit")
    });
}

/// A claim committed while a `flush()` runs, after its msync and before it
/// records how far it got: the flush saw a committed frame that its msync
/// never carried, moved the flushed position past it, and no later flush
/// ever synced it (the random model's "claim committed after a flush",
/// under `Flush::Interval` with the housekeeper flushing).
#[test]
fn a_claim_committed_during_a_flush_is_flushed_by_the_next_flush() {
    assert_claim_flushed_by_the_next_flush(|s, journal, claim| {
        let seen = s.commit_during_flush(&format!("msync {}", segment(0)), journal, claim);
        seen.flushed.expect("the flush the claim is committed in");
        assert!(seen.mid_flush, "the flush msynced segment 0 and the claim was committed there");
        seen.position.expect("commit")
    });
}

/// A conflated read raised its cursor file's mark (how far the windows were
/// read) but msynced it only under `Flush::Always`: after a power loss the
/// file could hold an older mark, or a commit inside a window with that
/// window's mark, and the resumed reader's windows then ended before the
/// last one handed out: it handed out `a=v3`, `b=v4` (or `b=v6`) after
/// `a=v7`, `b=v8` (review of 093e3c7, which commits inside windows).
#[test]
fn a_conflated_reader_resumed_after_a_power_loss_never_hands_out_an_older_value() {
    let s = Scripted::new();
    let journal = Journal::open(s.path(), small(explicit())).expect("open");
    let publisher = journal.publisher();
    for (n, key) in ["a", "b"].repeat(4).iter().enumerate() {
        publisher.append_keyed(key.as_bytes(), format!("v{}", n + 1).as_bytes()).expect("append");
    }
    let mut consumer = journal.consumer(CURSOR).expect("consumer");
    journal.flush().expect("the records and the new cursor on the media");
    // (key, position, next position) of each record a window hands out
    let window = |consumer: &mut Consumer| {
        let mut out = Vec::new();
        let record = |r: Record<'_>| out.push((r.key().expect("keyed").to_vec(), r.position(), r.next_position()));
        consumer.poll_conflated(record, 4).expect("a window");
        out
    };
    let first = window(&mut consumer);
    // Acknowledged: the first record handed out (a commit inside the window).
    consumer.commit_at(first[0].2).expect("commit");
    let second = window(&mut consumer);
    assert_eq!((first.len(), second.len()), (2, 2));
    // key → the position of the latest record of it handed out
    let handed: BTreeMap<Vec<u8>, u64> = first.into_iter().chain(second).map(|(key, at, _)| (key, at)).collect();
    let dir = s.power_loss_dir(Script::durable());
    let recovered = Journal::open(dir.path(), small(explicit())).expect("open the image");
    let mut resumed = recovered.consumer(CURSOR).expect("the cursor");
    let mut older = Vec::new();
    let mut check = |record: Record<'_>| {
        let key = record.key().expect("keyed").to_vec();
        if record.position() < handed[&key] {
            older.push((String::from_utf8_lossy(record.payload()).into_owned(), record.position()));
        }
    };
    while resumed.poll_conflated(&mut check, 4).expect("resumed") > 0 {}
    assert!(older.is_empty(), "handed out after newer values of their keys: {older:?}");
}

/// Frames appended after the last flush: the first one's header page
/// reached the media, its payload page did not, the next page did. The
/// committed frame torn between valid frames stops every consumer with
/// `Corrupt` until someone runs `verify --repair`.
#[test]
fn a_torn_frame_past_the_last_flush_between_valid_frames_does_not_stop_consumers() {
    let mut s = Scripted::new();
    let journal = Journal::open(s.path(), small(explicit())).expect("open");
    let publisher = journal.publisher();
    s.append(&publisher, 100); // 64..224
    journal.flush().expect("flush");
    s.promise_all(None);
    assert_eq!(s.append(&publisher, 5000), 224); // 224..5280: pages 0 and 1
    assert_eq!(s.append(&publisher, 3000), 5280); // 5280..8320: pages 1 and 2
    assert_eq!(s.append(&publisher, 100), 8320); // page 2
    let problems = s.power_loss(Script::newest().but_page(&segment(0), 1));
    assert_recovers(&problems);
}

/// Under `Flush::Always` every append msyncs its own frame, but the padding
/// that closes a segment (written when a claim trips over its end) is never
/// msynced. Two segments later recovery no longer looks at it: the sealed
/// segment "ends early", consumers stall there for `unblock_timeout`, and
/// `verify --repair` cannot fix it.
#[test]
fn under_flush_always_a_sealed_segment_keeps_the_padding_that_closes_it() {
    let mut s = Scripted::new();
    let _journal = into_segment_two(&mut s, Flush::Always, 5000, 5000);
    s.promise_all(None);
    assert_recovers(&s.power_loss(Script::durable()));
}

/// Past the last flush, a page in the middle of a segment two before the
/// tail's did not reach the media: a hole between committed frames.
/// Recovery pads holes in the last two segments only, so consumers stall
/// there (for `unblock_timeout`) and `verify` reports it.
#[test]
fn a_hole_in_a_segment_before_the_last_two_is_padded_by_recovery() {
    let mut s = Scripted::new();
    // After a first frame up to 4,096, frames of exactly one page: page 5
    // of segment 0 holds one whole frame.
    let _journal = into_segment_two(&mut s, explicit(), 4000, 4064);
    assert_recovers(&s.power_loss(Script::newest().but_page(&segment(0), 5)));
}

/// Past the last flush, the last page of a segment two before the tail's
/// did not reach the media: its last frame is torn and its closing padding
/// gone. Recovery leaves it, `verify --repair` cannot fix it (it only pads
/// damage between valid frames), and every consumer stops there with
/// `Corrupt`, also after the repair.
#[test]
fn a_torn_end_of_a_segment_before_the_last_two_is_cut_by_recovery() {
    let mut s = Scripted::new();
    let _journal = into_segment_two(&mut s, explicit(), 5000, 5000);
    // Segment 0's 12th frame is 55,680..60,736 (pages 13 and 14), its
    // padding 60,736..65,536.
    assert_recovers(&s.power_loss(Script::newest().but_page(&segment(0), 14)));
}

/// A flushed journal; then records of `lens` appended, of which the consumer
/// reads the first `read` and commits. Returns the journal (open: closing
/// would flush) and the committed position.
fn committed_past_the_last_flush(s: &mut Scripted, lens: &[usize], read: usize) -> (Journal, u64) {
    let journal = Journal::open(s.path(), small(explicit())).expect("open");
    let publisher = journal.publisher();
    let mut consumer = journal.consumer(CURSOR).expect("consumer");
    journal.flush().expect("flush");
    for &len in lens {
        s.append(&publisher, len);
    }
    consumer.poll(|_| {}, read).expect("poll");
    consumer.commit().expect("commit");
    (journal, consumer.position())
}

/// The consumer committed past records appended since the last flush; the
/// kernel wrote the cursor's page back, not the segment's. After recovery
/// the cursor is past the tail and `journal.consumer("c")` refuses to open.
#[test]
fn a_cursor_written_back_before_the_records_it_passed_still_opens() {
    let mut s = Scripted::new();
    let (_journal, _) = committed_past_the_last_flush(&mut s, &[100, 100, 100], 3);
    assert_recovers(&s.power_loss(Script::durable().but_page(CURSOR_FILE, 0)));
}

/// The same, with the cursor below the tail: the two pages before the last
/// did not reach the media, recovery pads the hole as one padding frame, and
/// the cursor (at the second of the lost frames) points inside it: "no
/// frame starts there", and `journal.consumer("c")` refuses to open.
#[test]
fn a_cursor_inside_a_hole_that_recovery_padded_still_opens() {
    let mut s = Scripted::new();
    // Frames of exactly one page from 4,096 on.
    let (_journal, cursor) = committed_past_the_last_flush(&mut s, &[4000, 4064, 4064, 4064], 2);
    assert_eq!(cursor, 8192);
    let script = Script::newest().but_page(&segment(0), 1).but_page(&segment(0), 2);
    assert_recovers(&s.power_loss(script));
}

/// A record that fills its segment exactly: the tail is then the next
/// segment's first frame, as is the position the consumer that read it
/// commits; after a reopen (or any crash: no power loss needed) the cursor
/// must still open (issue 12, defect 4: the tail sat on the next segment's
/// header, below the cursor, and the consumer refused to open).
#[test]
fn a_cursor_committed_after_a_record_that_fills_its_segment_opens_after_recovery() {
    let mut s = Scripted::new();
    let journal = Journal::open(s.path(), small(Flush::Always)).expect("open");
    let publisher = journal.publisher();
    let mut consumer = journal.consumer(CURSOR).expect("consumer");
    let max_frame = journal.max_record_len() as u64 + 32;
    while SEGMENT - journal.tail_position() > max_frame {
        s.append(&publisher, 5000);
    }
    let rest = SEGMENT - journal.tail_position();
    s.append(&publisher, rest as usize - 32); // ends exactly at 65,536
    consumer.poll(|_| {}, 1000).expect("poll");
    consumer.commit().expect("commit");
    assert_eq!((journal.tail_position(), consumer.position()), (SEGMENT + 64, SEGMENT + 64));
    s.promise_all(Some(consumer.position()));
    assert_recovers(&s.power_loss(Script::newest()));
}

/// The recycling setup: an `ExclusivePublisher` and the consumer `c`, so
/// that retention keeps consumed segments as spares for later ones.
struct Recycling {
    journal: Journal,
    consumer: Consumer,
    publisher: ExclusivePublisher,
}

impl Recycling {
    fn open(s: &Scripted, flush: Flush) -> Recycling {
        let journal = Journal::open(s.path(), small(flush)).expect("open");
        let consumer = journal.consumer(CURSOR).expect("consumer");
        let publisher = journal.exclusive_publisher().expect("exclusive publisher");
        Recycling { journal, consumer, publisher }
    }

    /// Appends until the tail is in segment `index`, prepares the next
    /// segment (so the housekeeper creates none meanwhile) and flushes: only
    /// directory entries are left for a power loss to lose.
    fn write_up_to(&mut self, s: &mut Scripted, index: u64) {
        while self.publisher.tail_position() < index * SEGMENT + 64 {
            s.append_exclusive(&mut self.publisher, 5000);
        }
        self.journal.prepare().expect("prepare the next segment");
        self.journal.flush().expect("flush");
        s.promise_all(None);
    }

    /// The consumer reads everything and commits (retention, in the
    /// housekeeper or by `apply_retention`, may then delete what it passed).
    fn consume(&mut self) {
        self.consumer.poll(|_| {}, 1000).expect("poll");
        self.consumer.commit().expect("commit");
    }
}

/// Retention renames consumed segments to spares (recycling, with an
/// `ExclusivePublisher`) without an fsync of the directory. Two such renames
/// are independent directory operations: a power loss can keep the first
/// segment's old name and lose the second's, a gap in the segments, and
/// `Journal::open` refuses the journal ("segment missing").
#[test]
fn segments_retired_as_spares_never_leave_a_gap() {
    let mut s = Scripted::new();
    let mut recycling = Recycling::open(&s, explicit());
    recycling.write_up_to(&mut s, 5);
    // Retention persists the cursors before each segment it deletes: 0 is
    // unlinked, 1 and 2 become spares, then (the 4th msync) 3 is next.
    s.power_loss_at("msync cursors/c.cursor", 3, Script::newest().but_entry(&segment(1)));
    recycling.consume();
    recycling.journal.apply_retention().expect("retention");
    assert_recovers(&s.captured());
}

/// A consumed segment renamed to a spare (no directory fsync) is rebuilt as
/// a later segment: its new header is msynced under the spare name. After a
/// power loss the old name is back on the media with the new header: the
/// journal opens, but consumers, `walk_frames` and `repair` fail on a
/// segment whose "header says base X, its name says Y" (or the open fails
/// on it). Under `Flush::Never` (with explicit flushes) the durable cursor
/// is still at that segment, so it stays; under the other policies the
/// cursor is past it and the reopened journal's retention deletes it at its
/// first pass, racing the consumers that hit it first.
#[test]
fn a_spare_rebuilt_before_its_rename_was_durable_never_shows_under_its_old_name() {
    let mut s = Scripted::new();
    let mut recycling = Recycling::open(&s, Flush::Never);
    recycling.write_up_to(&mut s, 1);
    recycling.consume();
    recycling.journal.apply_retention().expect("retention"); // segment 0 unlinked
    // Armed before any spare exists: the first one rebuilt (by whichever
    // thread) is where the power goes.
    s.power_loss_at("msync .tmp-spare-", 0, Script::durable());
    recycling.write_up_to(&mut s, 3);
    recycling.consume();
    recycling.journal.apply_retention().expect("retention"); // 1 and 2 become spares
    recycling.write_up_to(&mut s, 6); // a spare is rebuilt as a new segment
    assert_recovers(&s.captured());
}

/// A stale page (a recycled segment's old bytes, in a segment recovery does
/// not walk) can put any word where a frame should start. One that reads as
/// a claim of 832,664,864 bytes makes `Journal::walk_frames` (and so
/// `backwater dump`) jump past the tail and stop there, returning `Ok`:
/// every frame after it goes unshown. The model met this word; the
/// reproduction writes it by hand.
#[test]
fn walk_frames_does_not_jump_past_the_tail_on_a_garbage_claim_word() {
    let mut s = Scripted::new();
    let journal = Journal::open(s.path(), small(Flush::Always)).expect("open");
    let publisher = journal.publisher();
    let positions: Vec<u64> = (0..10).map(|_| s.append(&publisher, 100)).collect();
    let garbage: u64 = 0xc46d_e4ef_ce5e_8aeb; // length -832,664,853: a "claim"
    let segment = s.path().join(segment(0));
    crate::common::write_at(&segment, positions[3], &garbage.to_le_bytes());
    let mut shown = Vec::new();
    let show = |frame: &backwater::inspect::FrameView<'_>| {
        shown.push(frame.position);
        true
    };
    journal.walk_frames(journal.first_position(), show).expect("walk");
    assert!(shown.contains(&positions[9]), "the walk showed {shown:?}, not the last record at {}", positions[9]);
}

// The review of 6667094 (branch `review-flush`).

/// The claimed word of the frame at `position` of segment 0, as the page
/// cache has it.
fn word_at(s: &Scripted, position: u64) -> u64 {
    let bytes = crate::common::read_at(&s.path().join(segment(0)), position, 8);
    u64::from_le_bytes(bytes.try_into().expect("8 bytes"))
}

/// A claim C open (pages 0 and 1 of segment 0) while a later record R is
/// appended and a `flush()` runs: the flush msyncs R and records the
/// flushed position at C (the committed prefix stops at the claim). R was
/// appended before the flush started: promised. C is then filled and
/// committed; no flush follows. A power loss keeps C's header page (word
/// committed, CRC of the whole payload), not its payload page: C fails its
/// CRC past the flushed position, and recovery cut the log there ("at the
/// first damaged frame past the last flush"), R with it; it pads C now.
///
/// The same happens without `Claim`: two threads appending, one preempted
/// between its fetch-add and its copy while the housekeeper flushes.
#[test]
fn a_record_promised_by_a_flush_survives_a_torn_earlier_claim_committed_after_it() {
    assert_recovers(&claim_torn_after_a_flush(0));
}

/// A claim C of 5,000 bytes at 224 (pages 0 and 1 of segment 0) open
/// while R is appended at 5,280 and a `flush()` runs; C committed after
/// it; then a power loss that keeps every page synced and `kept_page`.
fn claim_torn_after_a_flush(kept_page: usize) -> Vec<Problem> {
    let mut s = Scripted::new();
    let journal = Journal::open(s.path(), small(explicit())).expect("open");
    let publisher = journal.publisher();
    assert_eq!(s.append(&publisher, 100), 64); // 64..224, page 0
    let (seed, payload) = s.next_payload(5000);
    let mut claim = publisher.claim(5000).expect("claim"); // 224..5280: pages 0 and 1
    assert_eq!(claim.position(), 224);
    assert_eq!(s.append(&publisher, 100), 5280); // R: 5280..5440, page 1
    journal.flush().expect("flush: R was appended before it started");
    claim.payload_mut().copy_from_slice(&payload);
    let position = claim.commit().expect("commit");
    s.logged_unpromised(position, seed, 5000);
    s.promise_all(None);
    s.power_loss(Script::durable().but_page(&segment(0), kept_page))
}

/// Under `Flush::Always`: R's `append` returned (its frame msynced) while
/// an earlier claim C was still open; C is then committed and the power
/// goes while C's own msync is under way (C's header page reached the
/// media, its payload page not). Recovery cut the log at C, past the
/// flushed position (which `Flush::Always` never moves), and R was gone
/// although its append returned; it pads C now.
#[test]
fn under_flush_always_a_returned_append_survives_a_torn_earlier_claim() {
    let mut s = Scripted::new();
    let journal = Journal::open(s.path(), small(Flush::Always)).expect("open");
    let publisher = journal.publisher();
    assert_eq!(s.append(&publisher, 100), 64);
    let (seed, payload) = s.next_payload(5000);
    let mut claim = publisher.claim(5000).expect("claim");
    assert_eq!(claim.position(), 224);
    assert_eq!(s.append(&publisher, 100), 5280); // returned: msynced
    claim.payload_mut().copy_from_slice(&payload);
    s.logged_unpromised(224, seed, 5000);
    s.promise_all(None);
    let claimed = word_at(&s, 224);
    let problems = std::thread::scope(|scope| {
        let mut committer = None;
        let problems = s.power_loss_when(
            Script::durable().but_page(&segment(0), 0),
            || word_at(&s, 224) != claimed,
            || committer = Some(scope.spawn(move || claim.commit())),
        );
        let committed = committer.expect("started").join().expect("the committer");
        assert_eq!(committed.expect("commit"), 224);
        problems
    });
    assert_recovers(&problems);
}

/// The control of the first of the two above: C's header page is the one
/// the power loss lost (its payload page kept). C is a hole, padded; R is
/// kept (this passed before the fix too).
#[test]
fn a_lost_header_page_of_an_earlier_claim_is_padded() {
    assert_recovers(&claim_torn_after_a_flush(1));
}

/// Two power losses. The first leaves a frame torn between valid frames
/// past the last flush (f1 at 5,120, its second page lost, and f2's header
/// with it; f3 and f4 whole): recovery pads f1..f2 and keeps f3 and f4.
/// (It used to cut the log at f1, zeroing f1..f4 in the page cache only:
/// after g1 was appended there and flushed, a second power loss brought f3
/// and f4 back after g1. What recovery zeroes is now msynced, and it no
/// longer cuts valid frames.) The journal takes g1 at the tail and a
/// `flush()` promises it; a second power loss keeps f0, f3, f4, g1 in
/// that order.
#[test]
fn frames_recovery_discarded_stay_discarded_after_a_second_power_loss() {
    let mut first = Scripted::new();
    let image = {
        let journal = Journal::open(first.path(), small(explicit())).expect("open");
        let publisher = journal.publisher();
        assert_eq!(first.append(&publisher, 5000), 64); // f0: 64..5120
        journal.flush().expect("flush");
        for expected in [5120, 10176, 15232, 20288] {
            assert_eq!(first.append(&publisher, 5000), expected); // f1..f4
        }
        // f1's second page (and f2's header) never reached the media.
        first.image(Script::newest().but_page(&segment(0), 2))
    };
    let mut second = Scripted::new();
    second.restore(&image);
    let journal = Journal::open(second.path(), small(explicit())).expect("open after the first power loss");
    let report = journal.recovery_report().expect("recovered");
    let discarded: Vec<(u64, usize)> = report.discarded.iter().map(|&(at, len, _)| (at, len)).collect();
    assert_eq!(discarded, [(5120, 15232 - 5120)], "f1 and f2 discarded: {report:?}");
    assert_eq!((report.lost_bytes, journal.tail_position()), (15232 - 5120, 25344), "f3 and f4 kept");
    // The recovered log as the second model logs it (all of it on the
    // media since the restore), then g1.
    for (position, seed) in [(64, 1), (15232, 4), (20288, 5)] {
        second.logged(position, seed, 5000);
    }
    let publisher = journal.publisher();
    let (seed, payload) = (100, crate::common::payload(100, 5000));
    let position = publisher.append(&payload).expect("append g1");
    assert_eq!(position, 25344);
    second.logged(position, seed, 5000);
    journal.flush().expect("flush: g1 promised");
    second.promise_all(None);
    assert_recovers(&second.power_loss(Script::durable()));
}

/// What recovery discarded is counted once and stays counted across a
/// second power loss before the next flush, whichever of the metadata page
/// (with the count) and the segment's (with the padding) reached the media:
/// both are msynced at recovery, the padding first. (Counted twice when
/// only the metadata page was written back; found by review: not at all
/// when only the padding was.)
#[test]
fn what_recovery_discarded_is_counted_once_across_a_second_power_loss() {
    let mut first = Scripted::new();
    let image = {
        let journal = Journal::open(first.path(), small(explicit())).expect("open");
        let publisher = journal.publisher();
        first.append(&publisher, 5000);
        journal.flush().expect("flush");
        for _ in 0..4 {
            first.append(&publisher, 5000);
        }
        first.image(Script::newest().but_page(&segment(0), 2))
    };
    for second_loss in [Script::durable().but_page("journal.meta", 0), Script::durable()] {
        let second = Scripted::new();
        second.restore(&image);
        let journal = Journal::open(second.path(), small(explicit())).expect("open after the first power loss");
        assert_eq!(journal.stats().lost_bytes, 15232 - 5120, "f1 and f2 discarded");
        let dir = second.power_loss_dir(second_loss.clone());
        drop(journal);
        let reopened = Journal::open(dir.path(), small(explicit())).expect("open after the second power loss");
        assert_eq!(reopened.stats().lost_bytes, 15232 - 5120, "f1 and f2 counted once ({second_loss:?})");
    }
}

/// A committed frame past the last flush that a power loss tore at the
/// tail (its first page on the media, its second not) is cut by recovery,
/// and counted in `lost_bytes` as README says. (Found by review: it was
/// not counted.) A dead claimer's claim cut at the tail is no record and
/// is not counted.
#[test]
fn a_torn_tail_that_recovery_cuts_is_counted_in_lost_bytes() {
    let mut s = Scripted::new();
    let journal = Journal::open(s.path(), small(explicit())).expect("open");
    let publisher = journal.publisher();
    assert_eq!(s.append(&publisher, 5000), 64); // f0: 64..5120
    journal.flush().expect("flush");
    assert_eq!(s.append(&publisher, 5000), 5120); // f1: 5120..10176, pages 1 and 2
    let dir = s.power_loss_dir(Script::newest().but_page(&segment(0), 2));
    drop(journal);
    let recovered = Journal::open(dir.path(), small(explicit())).expect("open the image");
    let report = recovered.recovery_report().expect("recovered");
    let (at, cut) = report.cut.expect("f1 torn at the tail and cut");
    assert_eq!((at, recovered.tail_position()), (5120, 5120), "f1 gone: {report:?}");
    assert_eq!((recovered.stats().lost_bytes, report.lost_bytes), (cut as u64, cut as u64));
}

/// A conflated reader hands out a window of records no flush promised yet
/// (`Flush::Interval`) only once they are on the media, with the cursor's
/// mark: else a power loss could take the records back but keep the mark,
/// and the resumed reader, reading on to the mark, hand out the key's older
/// value after the newer one. (Found by review.)
#[test]
fn a_conflated_reader_never_hands_out_an_older_value_after_a_power_loss() {
    let s = Scripted::new();
    let (_journal, mut consumer) = v1_flushed_then_v2(&s);
    assert_window_hands_out_v2(&mut consumer);
    drop(consumer);
    assert_resumed_reader_never_hands_out(&s.power_loss_dir(Script::durable()), b"v1");
}

/// The same under `Flush::Always`, for a record committed before the
/// switch to it (`set_limits` syncs only the metadata): the window is
/// handed out once its records are on the media too. (Found by review: the
/// reader synced only its mark, trusting the records were.)
#[test]
fn a_window_read_right_after_a_switch_to_flush_always_is_on_the_media_with_its_mark() {
    let s = Scripted::new();
    let (journal, mut consumer) = v1_flushed_then_v2(&s);
    switch_to_flush_always(&journal);
    assert_window_hands_out_v2(&mut consumer);
    assert_resumed_reader_never_hands_out(&s.power_loss_dir(Script::durable()), b"v1");
}

/// A window whose flush failed is not handed out, and the next window
/// makes the flush again: the mark was raised before the flush, and the
/// next call, finding it raised, skipped the flush and handed the window
/// out unsynced. (Found by review. The flush is made to fail by a
/// descriptor limit, which the whole process shares: run alone.)
#[test]
#[ignore = "lowers the process's descriptor limit: run alone (--ignored)"]
fn a_window_whose_flush_failed_is_flushed_by_the_next_call() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let s = Scripted::new();
    let (_journal, mut consumer) = v1_flushed_then_v2(&s);
    let limit = getrlimit(Resource::Nofile);
    let lowest_free = std::fs::File::open("/dev/null").map(|f| std::os::fd::AsRawFd::as_raw_fd(&f)).unwrap();
    let mut lowered = limit;
    lowered.current = Some(lowest_free as u64);
    setrlimit(Resource::Nofile, lowered).unwrap();
    let failed = consumer.poll_conflated(|_| panic!("handed out though its flush failed"), 16);
    setrlimit(Resource::Nofile, limit).unwrap();
    assert!(failed.is_err(), "the flush failed: {failed:?}");
    assert_window_hands_out_v2(&mut consumer);
    // Writeback took every page but v2's (segment 0, page 0, as last msynced).
    assert_resumed_reader_never_hands_out(&s.power_loss_dir(Script::newest().but_page(&segment(0), 0)), b"v1");
}

/// A journal (`Flush::Interval`) with key "a" at "v1", flushed with a new
/// cursor, then at "v2", not flushed; and the cursor's consumer.
fn v1_flushed_then_v2(s: &Scripted) -> (Journal, backwater::Consumer) {
    let journal = Journal::open(s.path(), small(explicit())).expect("open");
    let publisher = journal.publisher();
    publisher.append_keyed(b"a", b"v1").expect("append");
    let consumer = journal.consumer(CURSOR).expect("consumer");
    journal.flush().expect("v1 and the new cursor on the media");
    publisher.append_keyed(b"a", b"v2").expect("append, not flushed");
    (journal, consumer)
}

/// One conflated window: v2, v1 skipped for it.
fn assert_window_hands_out_v2(consumer: &mut backwater::Consumer) {
    let mut handed = Vec::new();
    consumer.poll_conflated(|r| handed.push(r.payload().to_vec()), 16).expect("window");
    assert_eq!(handed, [b"v2"], "the window handed out v2 (and skipped v1)");
}

/// Opens the crash image `dir` and reads it conflated from the cursor on:
/// `stale` must not be handed out.
fn assert_resumed_reader_never_hands_out(dir: &tempfile::TempDir, stale: &[u8]) {
    let recovered = Journal::open(dir.path(), small(explicit())).expect("open the image");
    let mut resumed = recovered.consumer(CURSOR).expect("the cursor");
    let mut after = Vec::new();
    while resumed.poll_conflated(|r| after.push(r.payload().to_vec()), 16).expect("resumed") > 0 {}
    assert!(!after.contains(&stale.to_vec()), "handed out {stale:?} after the newer value had been: {after:?}");
}

/// `set_limits` with `Flush::Always` (the metadata synced before it returns).
fn switch_to_flush_always(journal: &Journal) {
    let mut limits = journal.limits();
    limits.flush = Flush::Always;
    journal.set_limits(limits).expect("set_limits: Flush::Always");
}

/// `set_limits` switches the journal to `Flush::Always` (the metadata is
/// synced before it returns); the publisher's "msync each commit" flag
/// followed only at the housekeeper's next tick (up to 100 ms later, more
/// under load), so a record whose `append` returned right after the switch
/// was never msynced: lost on power loss. Publishers now read the policy
/// from the metadata as they commit.
#[test]
fn an_append_right_after_set_limits_flush_always_is_durable() {
    let mut s = Scripted::new();
    let journal = Journal::open(s.path(), small(explicit())).expect("open");
    let publisher = journal.publisher();
    s.append(&publisher, 100);
    journal.flush().expect("flush");
    switch_to_flush_always(&journal);
    s.append(&publisher, 100);
    s.promise_all(None);
    assert_recovers(&s.power_loss(Script::durable()));
}

/// The same through another handle (another process's, as far as the
/// journal can tell), whose copy of the policy its own housekeeper
/// refreshed at its next tick, until publishers read the metadata's.
#[test]
fn an_append_through_another_handle_right_after_set_limits_flush_always_is_durable() {
    let mut s = Scripted::new();
    let setter = Journal::open(s.path(), small(explicit())).expect("open");
    let other = Journal::open(s.path(), small(explicit())).expect("open a second handle");
    let publisher = other.publisher();
    s.append(&publisher, 100);
    other.flush().expect("flush");
    switch_to_flush_always(&setter);
    s.append(&publisher, 100);
    s.promise_all(None);
    assert_recovers(&s.power_loss(Script::durable()));
}

// The review of 3093bc6 (branch `review-recovery`).

/// The image of a committed data frame at `position` with body `body`, as
/// the journal writes it (word 0, position, timestamp, CRC, body).
fn frame_image(position: u64, body: &[u8]) -> Vec<u8> {
    use backwater::frame::{self, Word0};
    let word = Word0::data(backwater::Priority::Normal, body.len(), 0);
    let mut image = word.pack().to_le_bytes().to_vec();
    image.extend_from_slice(&frame::header_fields(position, frame::now_ns(), frame::crc(body)));
    image.extend_from_slice(body);
    image
}

/// A payload of `len` bytes (the log's seed `seed`) for a record that will
/// land at `position`, carrying at `at` (a multiple of 32 from the frame
/// start, past the header) the image of a 64-byte record positioned where
/// it lies: a payload that holds a copy of journal frames (a backup, a
/// relay of raw segment bytes) or that an untrusted producer crafted.
/// Readers never look inside a payload; recovery's resynchronisation after
/// damage (`next_valid_frame`, every 32 bytes from the damaged frame's
/// start + 32) does.
fn payload_holding_a_frame(seed: u64, len: usize, position: u64, at: usize) -> Vec<u8> {
    let mut payload = crate::common::payload(seed, len);
    let inner = frame_image(position + at as u64, &[0x5a; 64]);
    let from = at - backwater::frame::HEADER_LEN;
    payload[from..from + inner.len()].copy_from_slice(&inner);
    payload
}

/// Past the last flush, record X (224..5,280, pages 0 and 1) is torn by a
/// power loss (page 1 lost); Z (page 2) is whole, so recovery pads X
/// instead of cutting the log at it. But it looks for the next valid frame
/// every 32 bytes from X's start + 32, *inside X's payload*, whose page 0
/// reached the media: a frame image in that payload, at the position it
/// lies at, passes every check and is kept as a record that was never
/// appended (before 3093bc6 recovery cut the log at X). X's header was
/// intact (its position checked): its length says where the next frame is.
#[test]
fn a_frame_image_inside_a_torn_payload_is_not_taken_for_a_record() {
    let mut s = Scripted::new();
    let journal = Journal::open(s.path(), small(explicit())).expect("open");
    let publisher = journal.publisher();
    assert_eq!(s.append(&publisher, 100), 64); // 64..224, page 0
    journal.flush().expect("flush");
    s.promise_all(None);
    let (seed, _) = s.next_payload(5000);
    let payload = payload_holding_a_frame(seed, 5000, 224, 64); // an image for 288..384
    assert_eq!(publisher.append(&payload).expect("append X"), 224); // 224..5280
    s.logged_unpromised(224, seed, 5000);
    assert_eq!(s.append(&publisher, 3000), 5280); // Y: 5280..8320, pages 1 and 2
    assert_eq!(s.append(&publisher, 100), 8320); // Z: page 2
    assert_recovers(&s.power_loss(Script::newest().but_page(&segment(0), 1)));
}

/// The same under `Flush::Always`, where the returned append Z (after the
/// torn X) is what the change keeps: the forged record comes with it.
#[test]
fn under_flush_always_a_frame_image_inside_a_torn_payload_is_not_kept() {
    let mut s = Scripted::new();
    let journal = Journal::open(s.path(), small(Flush::Always)).expect("open");
    let publisher = journal.publisher();
    assert_eq!(s.append(&publisher, 100), 64);
    let (seed, _) = s.next_payload(5000);
    let payload = payload_holding_a_frame(seed, 5000, 224, 64);
    let mut claim = publisher.claim(5000).expect("claim X"); // 224..5280
    assert_eq!(claim.position(), 224);
    assert_eq!(s.append(&publisher, 100), 5280); // Z: returned, msynced (page 1)
    claim.payload_mut().copy_from_slice(&payload);
    s.logged_unpromised(224, seed, 5000);
    s.promise_all(None);
    // The power goes while X's commit msyncs it: its header page (0)
    // reached the media, its second page (1) only as Z's msync left it.
    let claimed = word_at(&s, 224);
    let problems = std::thread::scope(|scope| {
        let mut committer = None;
        let problems = s.power_loss_when(
            Script::durable().but_page(&segment(0), 0),
            || word_at(&s, 224) != claimed,
            || committer = Some(scope.spawn(move || claim.commit())),
        );
        committer.expect("started").join().expect("the committer").expect("commit");
        problems
    });
    assert_recovers(&problems);
}

/// A SIGKILL (no power loss): a claim X was filled (its payload holding a
/// frame image) but never committed, and a later record R was. Recovery
/// pads X as a hole, but the hole ends at the first valid frame from X's
/// start + 32: the image inside X's payload, kept as a record nobody
/// appended. X's claimed word named its position and length. (Older than
/// 3093bc6: holes were always found this way.)
#[test]
fn a_frame_image_inside_a_dead_claim_is_not_taken_for_a_record() {
    let mut s = Scripted::new();
    let journal = Journal::open(s.path(), small(explicit())).expect("open");
    let publisher = journal.publisher();
    assert_eq!(s.append(&publisher, 100), 64);
    let (seed, _) = s.next_payload(5000);
    let payload = payload_holding_a_frame(seed, 5000, 224, 64);
    let mut claim = publisher.claim(5000).expect("claim X");
    assert_eq!(claim.position(), 224);
    claim.payload_mut().copy_from_slice(&payload);
    s.logged_unpromised(224, seed, 5000); // never committed: never read
    assert_eq!(s.append(&publisher, 100), 5280); // R
    journal.flush().expect("flush");
    s.promise_all(None);
    let problems = s.power_loss(Script::newest()); // the page cache whole: a SIGKILL
    drop(claim);
    assert_recovers(&problems);
}

/// The variant a length-skip cannot fix: X's *header* page (0) is the one
/// the power loss lost (X appended after the flush, so page 0 holds only
/// the flushed record there), its payload page 1 reached the media with a
/// frame image at 4,128. X reads as a hole from 224; the hole ends at the
/// image, which is kept as a record.
///
/// Open: nothing in a frame tells a forged image from a frame the journal
/// wrote at that position (a CRC keyed with the journal id would; a format
/// change). It needs a payload holding a frame image stamped with the very
/// position it lands at, and a power loss that loses the page of its header.
#[test]
#[ignore = "open: a frame image in a payload after a lost header page passes every check (needs a format change)"]
fn a_frame_image_after_a_lost_header_page_is_not_taken_for_a_record() {
    let mut s = Scripted::new();
    let journal = Journal::open(s.path(), small(explicit())).expect("open");
    let publisher = journal.publisher();
    assert_eq!(s.append(&publisher, 100), 64);
    journal.flush().expect("flush");
    s.promise_all(None);
    let (seed, _) = s.next_payload(5000);
    let payload = payload_holding_a_frame(seed, 5000, 224, 4128 - 224);
    assert_eq!(publisher.append(&payload).expect("append X"), 224);
    s.logged_unpromised(224, seed, 5000);
    assert_eq!(s.append(&publisher, 100), 5280); // page 1
    assert_recovers(&s.power_loss(Script::newest().but_page(&segment(0), 0)));
}
