//! The `ExclusivePublisher`: what it appends, who it keeps out, back-pressure,
//! and the tail it leaves when its process is killed mid-append.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use backwater::{Config, Error, Journal, OfferError, Priority, WhenFull};

const STRESS: &str = env!("CARGO_BIN_EXE_backwater-stress");
const SEGMENT: u64 = 64 << 10;

fn open(dir: &Path) -> Journal {
    Journal::open(dir, Config::default().segment_size(SEGMENT).min_free_disk(0)).unwrap()
}

#[test]
fn records_come_back_in_order_across_rollovers_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let mut publisher = journal.exclusive_publisher().unwrap();
    let mut expected = Vec::new();
    let mut rng = common::Rng(3);
    // ~40 segments of 64 KiB: every rotation path, records of every size up to the maximum.
    while expected.len() < 12_000 {
        let len = match rng.below(100) {
            0 => journal.max_record_len(),
            1..=9 => rng.below(2000) as usize,
            _ => rng.below(200) as usize,
        };
        let payload = common::payload(expected.len() as u64, len);
        let position = publisher.offer(&payload).unwrap();
        // The next record's position: a frame that ends its segment is
        // followed by the next segment's first frame, after its header.
        let end = position + frame_len(len);
        let next = if end.is_multiple_of(SEGMENT) { end + 64 } else { end };
        assert_eq!(publisher.tail_position(), next);
        expected.push((position, payload));
    }
    assert_eq!(journal.tail_position(), publisher.tail_position());
    assert!(journal.segment_indexes().unwrap().len() > 20);
    let read = common::drain(&mut journal.anonymous_consumer()).unwrap();
    assert_eq!(read, expected);
    assert_eq!(journal.stats().appended, expected.len() as u64);
    // It can be handed to another thread (appends take `&mut self`).
    let publisher = std::thread::spawn(move || publisher).join().unwrap();
    drop(publisher);
    // A later shared publisher continues right after.
    let next = journal.publisher().offer(b"after").unwrap();
    assert_eq!(next, journal.tail_position() - frame_len(5));
    assert!(next > expected.last().unwrap().0);
}

fn frame_len(payload: usize) -> u64 {
    backwater::frame::aligned_frame_len(payload) as u64
}

#[test]
fn an_exclusive_publisher_and_shared_publishers_keep_each_other_out() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    // A publisher that has not appended yet holds nothing.
    let idle = journal.publisher();
    let mut exclusive = journal.exclusive_publisher().unwrap();
    exclusive.offer(b"mine").unwrap();
    assert_eq!(journal.stats().exclusive_publisher, Some(std::process::id()));
    let refused = idle.offer(b"theirs").unwrap_err();
    assert!(
        matches!(refused, OfferError::Failed(Error::ExclusivelyPublished { pid, .. }) if pid == std::process::id())
    );
    // Another handle on the same journal is kept out the same way.
    let other = open(dir.path());
    assert!(matches!(other.publisher().append(b"theirs"), Err(Error::ExclusivelyPublished { .. })));
    assert!(matches!(other.exclusive_publisher(), Err(Error::PublishersActive { .. })));
    drop(exclusive);
    assert_eq!(journal.stats().exclusive_publisher, None);

    idle.offer(b"now mine").unwrap();
    assert!(matches!(journal.exclusive_publisher(), Err(Error::PublishersActive { .. })));
    assert!(matches!(other.exclusive_publisher(), Err(Error::PublishersActive { .. })));
    let clone = idle.clone();
    drop(idle);
    assert!(journal.exclusive_publisher().is_err(), "a clone still holds the shared lock");
    drop(clone);
    let mut again = journal.exclusive_publisher().unwrap();
    again.offer(b"mine again").unwrap();
    let payloads: Vec<Vec<u8>> =
        common::drain(&mut journal.anonymous_consumer()).unwrap().into_iter().map(|(_, p)| p).collect();
    assert_eq!(payloads, [&b"mine"[..], b"now mine", b"mine again"]);
}

#[test]
fn a_read_only_handle_has_no_exclusive_publisher() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let journal = Journal::open_read_only(dir.path()).unwrap();
    assert!(matches!(journal.exclusive_publisher(), Err(Error::ReadOnly { .. })));
}

#[test]
fn back_pressure_shedding_and_the_budget_hold_as_for_shared_publishers() {
    let dir = tempfile::tempdir().unwrap();
    const BUDGET: u64 = 16 * SEGMENT;
    let config = Config::default()
        .segment_size(SEGMENT)
        .max_disk_bytes(BUDGET)
        .min_free_disk(0)
        .when_full(WhenFull::Block)
        .append_timeout(std::time::Duration::from_millis(50));
    let journal = Journal::open(dir.path(), config).unwrap();
    let mut publisher = journal.exclusive_publisher().unwrap();
    let mut shed = 0u64;
    let refusal = loop {
        match publisher.offer_with(Priority::Low, &[1; 500]) {
            Ok(_) => {}
            Err(OfferError::Dropped { .. }) => {
                shed += 1;
                match publisher.offer(&[2; 500]) {
                    Ok(_) => {}
                    Err(refusal) => break refusal,
                }
            }
            Err(other) => panic!("{other}"),
        }
    };
    assert!(shed > 0, "low priority is shed before normal is refused");
    assert!(matches!(refusal, OfferError::BackPressured { .. }), "{refusal}");
    assert!(matches!(publisher.append(&[3; 500]), Err(Error::StillBackPressured { .. })));
    let stats = journal.stats();
    assert!(stats.budgeted_bytes() <= BUDGET, "disk {} over budget {BUDGET}", stats.budgeted_bytes());
    assert_eq!(stats.dropped_low, shed);
    // A consumer that catches up releases the pressure.
    let mut consumer = journal.consumer("reader").unwrap();
    common::drain(&mut consumer).unwrap();
    consumer.commit().unwrap();
    journal.apply_retention().unwrap();
    publisher.offer(&[4; 500]).unwrap();
}

/// A committed frame past the tail word and a torn one after it, as an
/// exclusive publisher killed between its two stores leaves them, written by
/// hand per docs/FORMAT.md (journal.meta: the raw tail word at 128, the
/// exclusive publisher's pid at 144).
#[test]
fn the_next_publisher_settles_what_a_dead_exclusive_publisher_left_past_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    // Kept open throughout: a live writer, so no later open recovers on its own.
    let holder = open(dir.path());
    holder.exclusive_publisher().unwrap().offer(b"first").unwrap();
    let tail = holder.tail_position();
    let position = holder.publisher().offer(b"committed, tail not moved").unwrap();
    assert_eq!(position, tail);
    let segment = common::segment_path(dir.path(), SEGMENT, tail);
    let torn_at = tail % SEGMENT + 64;
    common::write_at(&segment, torn_at + 8, &[0xAB; 200]); // header and payload, no word 0
    let meta = dir.path().join("journal.meta");
    let raw_tail = u64::from_le_bytes(common::read_at(&meta, 128, 8).try_into().unwrap());
    common::write_at(&meta, 128, &(raw_tail - 64).to_le_bytes());
    common::write_at(&meta, 144, &u64::from(std::process::id()).to_le_bytes());
    // And a spare segment file it was keeping for reuse.
    let spare = dir.path().join(".tmp-spare-9");
    std::fs::write(&spare, vec![0u8; SEGMENT as usize]).unwrap();

    let journal = open(dir.path());
    assert!(journal.recovery_report().is_none(), "recovery must not have run");
    assert_eq!(journal.tail_position(), tail);
    let after = journal.publisher().offer(b"after").unwrap();
    assert_eq!(after, tail + 64, "the committed frame past the tail word is kept");
    assert!(!spare.exists(), "the dead publisher's spare is removed");
    let payloads: Vec<Vec<u8>> =
        common::drain(&mut journal.anonymous_consumer()).unwrap().into_iter().map(|(_, p)| p).collect();
    assert_eq!(payloads, [&b"first"[..], b"committed, tail not moved", b"after"]);
    // "after" took the torn frame's first 64 bytes; the rest must be zeroes.
    assert_eq!(common::read_at(&segment, torn_at + 64, 144), [0; 144], "the torn frame's bytes are zeroed");
    drop((journal, holder));
    let report = backwater::recovery::verify(dir.path(), |_, _| {}).unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
}

/// SIGKILLs `victim` once the journal's tail has passed `target`.
fn kill_at(victim: &mut Child, journal: &Journal, target: u64) {
    while journal.tail_position() < target {
        assert!(victim.try_wait().unwrap().is_none(), "the victim exited early");
        std::thread::yield_now();
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
}

/// An exclusive writer whose record size depends on `id`, so that each one
/// lands on a torn frame of another length than its own.
fn exclusive_writer(dir: &Path, id: u32) -> Child {
    let size = 20 + (id * 53) % 400;
    Command::new(STRESS)
        .args(["write", dir.to_str().unwrap(), "--id", &id.to_string(), "--count", "100000000"])
        .args(["--report", "100", "--size", &size.to_string(), "--exclusive"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn exclusive_writers_killed_mid_append_lose_nothing_committed() {
    let dir = tempfile::tempdir().unwrap();
    // A read-write handle stays open throughout (as a live follower would),
    // so no open recovers: settling is the publisher lock's job alone.
    let watcher = open(dir.path());
    let mut consumer = watcher.anonymous_consumer();
    let mut seqs: HashMap<u32, u64> = HashMap::new();
    let mut rng = common::Rng(5);
    for round in 1..=40u32 {
        let mut victim = exclusive_writer(dir.path(), round);
        // Killed at a random point of its run (not while it waits on a full
        // pipe: its reports are few and read after the kill).
        let target = watcher.tail_position() + (4 + rng.below(16)) * SEGMENT + rng.below(SEGMENT);
        kill_at(&mut victim, &watcher, target);
        let reports = BufReader::new(victim.stdout.take().unwrap()).lines().map_while(Result::ok);
        let last =
            reports.filter_map(|line| line.strip_prefix("committed ").and_then(|s| s.parse::<u64>().ok())).last();
        let last = last.expect("the victim reported progress");
        // A shared publisher appends right after the dead one (settling its
        // tail first), and the reader reads past both.
        watcher.publisher().append(format!("killed {round}").as_bytes()).unwrap();
        let mut marker_seen = false;
        for (_, payload) in common::drain(&mut consumer).unwrap() {
            if payload.starts_with(b"killed ") {
                assert_eq!(payload, format!("killed {round}").as_bytes());
                marker_seen = true;
                continue;
            }
            let id = u32::from_le_bytes(payload[..4].try_into().unwrap());
            let seq = u64::from_le_bytes(payload[4..12].try_into().unwrap());
            let next = seqs.entry(id).or_default();
            assert_eq!((id, seq), (round, *next), "records in order, none twice, none after the kill");
            *next += 1;
        }
        assert!(marker_seen);
        assert!(seqs.get(&round).is_some_and(|&n| n > last), "writer {round}: a committed record was lost");
    }
    drop((consumer, watcher));
    let report = backwater::recovery::verify(dir.path(), |_, _| {}).unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
}

/// Reads a segment file's base position from its header (bytes 16..24).
fn header_base(file: &std::fs::File) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut base = [0u8; 8];
    file.read_exact_at(&mut base, 16).unwrap();
    u64::from_le_bytes(base)
}

#[test]
fn consumed_segments_become_the_next_ones_while_an_exclusive_publisher_appends() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let mut consumer = journal.consumer("reader").unwrap();
    let mut publisher = journal.exclusive_publisher().unwrap();
    let mut next_seq = 0u64;
    // Past the first two segments (the one it started in is not recycled).
    while journal.tail_position() < 3 * SEGMENT {
        publisher.offer(&next_seq.to_le_bytes()).unwrap();
        next_seq += 1;
    }
    let watched = std::fs::File::open(common::segment_path(dir.path(), SEGMENT, SEGMENT)).unwrap();
    assert_eq!(header_base(&watched), SEGMENT);
    let mut expected = 0u64;
    let mut read_all = |consumer: &mut backwater::Consumer| {
        for (_, payload) in common::drain(consumer).unwrap() {
            assert_eq!(u64::from_le_bytes(payload[..8].try_into().unwrap()), expected);
            expected += 1;
        }
        consumer.commit().unwrap();
    };
    let mut files = std::collections::HashSet::new();
    while journal.tail_position() < 40 * SEGMENT {
        publisher.offer(&next_seq.to_le_bytes()).unwrap();
        next_seq += 1;
        if next_seq.is_multiple_of(500) {
            read_all(&mut consumer);
            journal.apply_retention().unwrap();
            for index in journal.segment_indexes().unwrap() {
                let path = common::segment_path(dir.path(), SEGMENT, index * SEGMENT);
                // Inode numbers are reused after an unlink: with the birth
                // time, a file is told apart from a new one with its number.
                files.extend(std::fs::metadata(path).map(|m| (m.ino(), m.created().ok())));
            }
        }
    }
    read_all(&mut consumer);
    assert_eq!(expected, next_seq, "every record read once, in order");
    // About 38 segments went through a handful of files. (Which file is
    // reused when is not fixed: a spare that any process maps at that
    // moment, e.g. a child between fork and exec, waits for a later turn.)
    assert!(files.len() <= 12, "{} files for ~38 segments: consumed files were not recycled", files.len());
    if watched.metadata().unwrap().nlink() == 1 {
        assert!(header_base(&watched) > 3 * SEGMENT, "segment 1's file holds a later segment");
    }
    assert!(journal.segment_indexes().unwrap().len() <= 4, "consumed segments are gone from the journal");
    drop((publisher, consumer, journal));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "spares are removed when the handle closes: {leftovers:?}");
    let report = backwater::recovery::verify(dir.path(), |_, _| {}).unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
}

#[test]
fn a_reader_whose_segment_was_deleted_is_told_what_it_lost_and_its_file_is_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    const BUDGET: u64 = 16 * SEGMENT;
    let config =
        Config::default().segment_size(SEGMENT).max_disk_bytes(BUDGET).min_free_disk(0).when_full(WhenFull::DropOldest);
    let journal = Journal::open(dir.path(), config).unwrap();
    let mut publisher = journal.exclusive_publisher().unwrap();
    let mut seq = 0u64;
    let mut offer = |publisher: &mut backwater::ExclusivePublisher| {
        publisher.offer(&seq.to_le_bytes()).unwrap();
        seq += 1;
    };
    while journal.tail_position() < 2 * SEGMENT + 1000 {
        offer(&mut publisher);
    }
    // A reader (another handle, its own mappings; read-only, so only the
    // publisher's handle deletes segments) stops inside segment 2.
    let other = Journal::open_read_only(dir.path()).unwrap();
    let mut reader = other.anonymous_consumer();
    reader.seek(backwater::Seek::Position(2 * SEGMENT + 64)).unwrap();
    assert_eq!(reader.poll(|_| {}, 5).unwrap(), 5);
    let segment_2 = std::fs::File::open(common::segment_path(dir.path(), SEGMENT, 2 * SEGMENT)).unwrap();
    // The ring wraps several times: segment 2's file is reused for later ones.
    while journal.tail_position() < 60 * SEGMENT {
        offer(&mut publisher);
    }
    use std::os::unix::fs::MetadataExt;
    assert_eq!(segment_2.metadata().unwrap().nlink(), 1, "segment 2's file was renamed, not linked twice");
    assert_eq!(header_base(&segment_2), 2 * SEGMENT, "a file a reader has mapped is never recycled");
    let stats = journal.stats();
    assert!(stats.budgeted_bytes() <= BUDGET, "disk {} over budget {BUDGET} (spares included)", stats.budgeted_bytes());
    match reader.poll(|_| {}, 5) {
        Err(Error::Lost { from, to }) => {
            assert!(from < 3 * SEGMENT && to == journal.first_position(), "lost {from}..{to}");
        }
        other => panic!("expected Lost, got {other:?}"),
    }
    // And it reads on from the oldest record, in order.
    let mut previous = None;
    let read = reader
        .poll(
            |record| {
                let value = u64::from_le_bytes(record.payload()[..8].try_into().unwrap());
                assert!(previous.is_none_or(|p| value == p + 1));
                previous = Some(value);
            },
            1000,
        )
        .unwrap();
    assert_eq!(read, 1000);
}

#[test]
fn spare_files_a_crash_left_are_removed_by_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let spare = dir.path().join(".tmp-spare-7");
    std::fs::write(&spare, vec![0u8; SEGMENT as usize]).unwrap();
    let journal = open(dir.path());
    assert!(journal.recovery_report().is_some());
    assert!(!spare.exists(), "a stale spare is removed when the journal opens alone");
}

/// Exclusive writers killed at random in a small `DropOldest` ring, so each
/// recycles segments, dies holding spares and a torn tail, and the next
/// settles them; the reader falls behind on purpose and is told what it
/// lost, never handed a damaged or repeated record.
#[test]
fn killed_exclusive_writers_in_a_recycling_ring_never_hand_a_reader_a_bad_record() {
    const BUDGET: u64 = 24 * SEGMENT;
    let dir = tempfile::tempdir().unwrap();
    let config =
        Config::default().segment_size(SEGMENT).max_disk_bytes(BUDGET).min_free_disk(0).when_full(WhenFull::DropOldest);
    let watcher = Journal::open(dir.path(), config).unwrap();
    let mut consumer = watcher.anonymous_consumer();
    let mut last_seen: HashMap<u32, u64> = HashMap::new();
    let (mut lost_reports, mut records, mut spares_seen) = (0, 0u64, 0);
    let mut rng = common::Rng(17);
    for round in 1..=15u32 {
        let mut victim = exclusive_writer(dir.path(), round);
        // Two to five times round the ring, then a kill at a random point.
        let target = watcher.tail_position() + (48 + rng.below(72)) * SEGMENT + rng.below(SEGMENT);
        kill_at(&mut victim, &watcher, target);
        spares_seen += std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-spare-"))
            .count();
        watcher.publisher().append(b"checkpoint").unwrap();
        loop {
            let polled = consumer.poll(
                |record| {
                    let payload = record.payload();
                    if payload == b"checkpoint" {
                        return;
                    }
                    let id = u32::from_le_bytes(payload[..4].try_into().unwrap());
                    let seq = u64::from_le_bytes(payload[4..12].try_into().unwrap());
                    if let Some(&previous) = last_seen.get(&id) {
                        assert!(seq > previous, "writer {id}: {seq} after {previous}");
                    }
                    last_seen.insert(id, seq);
                    records += 1;
                },
                4096,
            );
            match polled {
                Ok(0) => break,
                Ok(_) => {}
                Err(Error::Lost { .. }) => lost_reports += 1,
                Err(other) => panic!("round {round}: {other}"),
            }
        }
        let stats = watcher.stats();
        // Segments and spares within the budget; the one reader may keep the
        // deleted segment it is inside (a retired file) beyond it.
        let segments = watcher.segment_indexes().unwrap().len() as u64 * SEGMENT;
        assert!(segments <= BUDGET, "round {round}: segments {segments} over {BUDGET}");
        assert!(stats.budgeted_bytes() <= BUDGET, "round {round}: over {BUDGET}: {stats:?}");
    }
    assert!(
        lost_reports > 0 && records > 0,
        "the ring wrapped under the reader ({lost_reports} losses, {records} records)"
    );
    assert!(spares_seen > 0, "the killed writers were recycling segments");
    eprintln!("{lost_reports} losses, {records} records, {spares_seen} spares left by killed writers");
    drop((consumer, watcher));
    let report = backwater::recovery::verify(dir.path(), |_, _| {}).unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
}
