//! The journal core through its public API: round trips, concurrency,
//! durable cursors, recovery and damaged input.

mod common;

use backwater::{Config, Error, Journal, Seek};
use common::{Rng, drain, payload, read_at, segment_path, write_at};
use std::collections::HashMap;

const MIB: u64 = 1 << 20;

fn small(segment_size: u64) -> Config {
    Config::default().segment_size(segment_size).min_free_disk(0)
}

#[test]
fn round_trip_across_many_rollovers() -> backwater::Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), small(MIB))?;
    let publisher = journal.publisher();
    let mut rng = Rng(1);
    let mut expected = Vec::new();
    let mut seed = 0u64;
    while expected.len() < 200_000 {
        let mut next = |rng: &mut Rng| {
            seed += 1;
            payload(seed, rng.below(1000) as usize)
        };
        match rng.below(10) {
            0 => {
                let records = [next(&mut rng), next(&mut rng), next(&mut rng)];
                let mut position = publisher.append_batch(&records)?;
                for record in records {
                    let len = backwater::frame::aligned_frame_len(record.len()) as u64;
                    expected.push((position, record));
                    position += len;
                }
            }
            1 => {
                let record = next(&mut rng);
                let mut claim = publisher.claim(record.len())?;
                claim.payload_mut().copy_from_slice(&record);
                expected.push((claim.commit()?, record));
            }
            _ => {
                let record = next(&mut rng);
                expected.push((publisher.append(&record)?, record));
            }
        }
    }
    assert!(journal.segment_indexes()?.len() > 60, "the test must cross many segments");
    let read = drain(&mut journal.consumer("check")?)?;
    assert_eq!(read.len(), expected.len());
    for (got, want) in read.iter().zip(&expected) {
        assert_eq!(got, want);
    }
    Ok(())
}

#[test]
fn four_threads_append_every_record_exactly_once_in_thread_order() -> backwater::Result<()> {
    const PER_THREAD: u32 = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), small(MIB))?;
    let publisher = journal.publisher();
    let threads: Vec<_> = (0..4u8)
        .map(|thread| {
            let publisher = publisher.clone();
            std::thread::spawn(move || -> backwater::Result<()> {
                for seq in 0..PER_THREAD {
                    let mut record = vec![thread];
                    record.extend_from_slice(&seq.to_le_bytes());
                    record.resize(5 + (seq % 97) as usize, 0xAB);
                    publisher.append(&record)?;
                }
                Ok(())
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("publisher thread")?;
    }
    let read = drain(&mut journal.anonymous_consumer())?;
    assert_eq!(read.len(), 4 * PER_THREAD as usize);
    let mut next_seq: HashMap<u8, u32> = HashMap::new();
    for (_, record) in &read {
        let seq = u32::from_le_bytes(record[1..5].try_into().unwrap());
        let expected = next_seq.entry(record[0]).or_insert(0);
        assert_eq!(seq, *expected, "thread {} out of order", record[0]);
        *expected += 1;
    }
    assert!(next_seq.values().all(|&n| n == PER_THREAD));
    assert_eq!(journal.stats().appended, 4 * PER_THREAD as u64);
    Ok(())
}

/// The shared publishers count into per-thread shards of `journal.meta`
/// (docs/FORMAT.md, offset 2048): the count stays exact with more threads
/// than shards (the rest add to the base word), through handles that close
/// while their threads live, and every shard is free again once they are gone.
#[test]
fn appended_count_is_exact_across_threads_handles_and_more_threads_than_shards() -> backwater::Result<()> {
    const THREADS: u64 = 40;
    const PER_THREAD: u64 = 500;
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), small(MIB))?;
    let publisher = journal.publisher();
    let appended = std::sync::Barrier::new(THREADS as usize);
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            let (publisher, appended) = (publisher.clone(), &appended);
            scope.spawn(move || {
                for seq in 0..PER_THREAD {
                    publisher.append(&seq.to_le_bytes()).unwrap();
                }
                appended.wait(); // all counted before any exits: more counters than shards
            });
        }
    });
    assert_eq!(journal.stats().appended, THREADS * PER_THREAD);
    let reader = Journal::open_read_only(dir.path())?;
    assert_eq!(reader.stats().appended, THREADS * PER_THREAD, "another handle sees the same count");

    // A second handle whose appending thread outlives it.
    let other = Journal::open(dir.path(), small(MIB))?;
    let (opened, closed) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
    let thread = std::thread::spawn(move || {
        other.publisher().append(b"through a handle that closes first").unwrap();
        opened.0.send(other).unwrap();
        closed.1.recv().unwrap();
        journal.publisher().append(b"and again through the first one").unwrap();
        journal
    });
    drop(opened.1.recv().unwrap());
    closed.0.send(()).unwrap();
    let journal = thread.join().unwrap();
    assert_eq!(journal.stats().appended, THREADS * PER_THREAD + 2);
    drop((journal, publisher, reader));

    let meta = std::fs::read(dir.path().join("journal.meta")).unwrap();
    let holders: Vec<u64> =
        (0..32).map(|shard| u64::from_le_bytes(meta[2048 + 64 * shard..][..8].try_into().unwrap())).collect();
    assert!(holders.iter().all(|&holder| holder == 0), "shards still held: {holders:?}");
    assert_eq!(Journal::open(dir.path(), small(MIB))?.stats().appended, THREADS * PER_THREAD + 2);
    Ok(())
}

#[test]
fn durable_cursor_resumes_after_reopen_and_new_cursor_starts_at_earliest_retained() -> backwater::Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let segment = 64 << 10;
    let positions: Vec<u64> = {
        let journal = Journal::open(dir.path(), small(segment))?;
        let publisher = journal.publisher();
        let positions = (0..2000u32).map(|i| publisher.append(&i.to_le_bytes())).collect::<Result<_, _>>()?;
        let mut consumer = journal.consumer("resumer")?;
        assert_eq!(consumer.poll(|_| {}, 700)?, 700);
        consumer.commit()?;
        // Read further without committing: that progress must not survive.
        assert_eq!(consumer.poll(|_| {}, 100)?, 100);
        positions
    };
    let journal = Journal::open(dir.path(), Config::default())?;
    let mut resumed = journal.consumer("resumer")?;
    assert_eq!(resumed.position(), positions[700]);
    let rest = drain(&mut resumed)?;
    assert_eq!(rest.len(), 1300);
    assert_eq!(rest[0].1, 700u32.to_le_bytes());
    resumed.commit()?;

    // Every segment before the one holding record 700 is gone once the only
    // cursor has passed it; a new cursor starts at the earliest retained.
    journal.apply_retention()?;
    let first = journal.first_position();
    assert!(first > positions[0], "retention must have deleted consumed segments");
    assert_eq!(first % segment, 64, "the first position is a segment's first frame");
    let newcomer = drain(&mut journal.consumer("newcomer")?)?;
    assert_eq!(newcomer.first().map(|r| r.0), Some(first));
    assert_eq!(newcomer.last().map(|r| r.0), positions.last().copied());
    Ok(())
}

#[test]
fn seek_by_position_time_start_and_end() -> backwater::Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), small(64 << 10))?;
    let publisher = journal.publisher();
    let positions: Vec<u64> = (0..3000u32).map(|i| publisher.append(&i.to_le_bytes())).collect::<Result<_, _>>()?;
    let mut consumer = journal.anonymous_consumer();
    consumer.seek(Seek::Position(positions[1234]))?;
    assert_eq!(drain(&mut consumer)?[0].1, 1234u32.to_le_bytes());
    let inside = positions[10] + 8;
    assert!(
        matches!(consumer.seek(Seek::Position(inside)), Err(Error::NotAFrameBoundary { position, .. }) if position == inside)
    );
    assert!(matches!(consumer.seek(Seek::Position(positions[11] + 32)), Err(Error::NotAFrameBoundary { .. })));
    consumer.seek(Seek::End)?;
    assert!(drain(&mut consumer)?.is_empty());
    let after = publisher.append(b"after")?;
    assert_eq!(drain(&mut consumer)?, vec![(after, b"after".to_vec())]);
    consumer.seek(Seek::Start)?;
    assert_eq!(drain(&mut consumer)?.len(), 3001);
    // Every record was stamped at or before now, and at or after the epoch.
    consumer.seek(Seek::Time(0))?;
    assert_eq!(consumer.position(), positions[0]);
    consumer.seek(Seek::Time(u64::MAX))?;
    assert_eq!(consumer.position(), journal.tail_position());
    Ok(())
}

/// Appends `count` records of 40 bytes each and returns their positions.
fn fill(dir: &std::path::Path, count: u32) -> Vec<u64> {
    let journal = Journal::open(dir, small(MIB)).unwrap();
    let publisher = journal.publisher();
    (0..count).map(|i| publisher.append(&[i as u8; 40]).unwrap()).collect()
}

fn reopen_and_read(dir: &std::path::Path) -> (Journal, Vec<(u64, Vec<u8>)>) {
    let journal = Journal::open(dir, Config::default()).unwrap();
    let records = drain(&mut journal.anonymous_consumer()).unwrap();
    (journal, records)
}

/// Appending after recovery starts cleanly at the recovered tail.
fn append_reads_back(journal: &Journal, before: usize) {
    let position = journal.publisher().append(b"after recovery").unwrap();
    assert_eq!(position, journal.tail_position() - 64);
    let records = drain(&mut journal.anonymous_consumer()).unwrap();
    assert_eq!(records.len(), before + 1);
    assert_eq!(records.last().unwrap(), &(position, b"after recovery".to_vec()));
    let report = backwater::recovery::verify(journal.dir(), |_, _| {}).unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
}

/// Makes the committed frame at `position` look like what a claimer that died
/// before committing leaves: a negative length.
fn uncommit(dir: &std::path::Path, position: u64) {
    let path = segment_path(dir, MIB, position);
    let word = read_at(&path, position % MIB, 4);
    let length = i32::from_le_bytes(word.try_into().unwrap());
    write_at(&path, position % MIB, &(-length).to_le_bytes());
}

#[test]
fn recovery_cuts_garbage_after_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let positions = fill(dir.path(), 10);
    let tail = positions[9] + 96;
    write_at(&segment_path(dir.path(), MIB, tail), tail % MIB, &[0x5A; 300]);
    let (journal, records) = reopen_and_read(dir.path());
    assert_eq!(records.len(), 10);
    assert_eq!(journal.tail_position(), tail);
    append_reads_back(&journal, 10);
}

#[test]
fn recovery_cuts_a_frame_with_a_bad_crc_at_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let positions = fill(dir.path(), 10);
    write_at(&segment_path(dir.path(), MIB, positions[9]), positions[9] % MIB + 40, &[0xFF]);
    let (journal, records) = reopen_and_read(dir.path());
    assert_eq!(records.len(), 9);
    assert_eq!(journal.tail_position(), positions[9]);
    append_reads_back(&journal, 9);
}

#[test]
fn recovery_pads_a_claimed_but_uncommitted_hole_before_committed_frames() {
    let dir = tempfile::tempdir().unwrap();
    let positions = fill(dir.path(), 10);
    uncommit(dir.path(), positions[4]);
    // And one that died before writing anything at all.
    write_at(&segment_path(dir.path(), MIB, positions[6]), positions[6] % MIB, &[0; 96]);
    let (journal, records) = reopen_and_read(dir.path());
    let read: Vec<u64> = records.iter().map(|r| r.0).collect();
    let expected: Vec<u64> =
        positions.iter().enumerate().filter(|(i, _)| *i != 4 && *i != 6).map(|(_, p)| *p).collect();
    assert_eq!(read, expected);
    append_reads_back(&journal, 8);
}

#[test]
fn recovery_cuts_a_claimed_region_at_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let positions = fill(dir.path(), 10);
    uncommit(dir.path(), positions[9]);
    let (journal, records) = reopen_and_read(dir.path());
    assert_eq!(records.len(), 9);
    append_reads_back(&journal, 9);
}

#[test]
fn a_flipped_byte_mid_segment_is_an_error_naming_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let positions = fill(dir.path(), 100);
    write_at(&segment_path(dir.path(), MIB, positions[50]), positions[50] % MIB + 45, &[0x00]);
    let journal = Journal::open(dir.path(), Config::default()).unwrap();
    let mut consumer = journal.anonymous_consumer();
    let mut read = 0;
    let error = loop {
        match consumer.poll(|_| read += 1, 1000) {
            Ok(0) => panic!("the corrupt frame was not reported"),
            Ok(_) => continue,
            Err(error) => break error,
        }
    };
    assert_eq!(read, 50);
    assert!(matches!(error, Error::Corrupt { position, .. } if position == positions[50]), "{error}");
    assert!(error.to_string().contains(&positions[50].to_string()));
    // Polling again reports the same error rather than skipping silently.
    assert!(matches!(consumer.poll(|_| {}, 10), Err(Error::Corrupt { .. })));
    let report = backwater::recovery::verify(dir.path(), |_, _| {}).unwrap();
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].position, positions[50]);
}

#[test]
fn foreign_and_damaged_directories_give_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
    assert!(matches!(Journal::open(dir.path(), Config::default()), Err(Error::NotAJournal { .. })));
    assert!(matches!(Journal::open_read_only(dir.path()), Err(Error::NotAJournal { .. })));

    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 3);
    let meta = dir.path().join("journal.meta");
    let original = std::fs::read(&meta).unwrap();

    assert!(matches!(
        Journal::open(dir.path(), Config::default().segment_size(2 * MIB)),
        Err(Error::SegmentSizeMismatch { existing, requested, .. }) if existing == MIB && requested == 2 * MIB
    ));

    std::fs::write(&meta, &original[..100]).unwrap();
    assert!(matches!(Journal::open(dir.path(), Config::default()), Err(Error::NotAJournal { .. })));
    std::fs::write(&meta, vec![0u8; 4096]).unwrap();
    assert!(matches!(Journal::open(dir.path(), Config::default()), Err(Error::NotAJournal { .. })));

    let mut newer = original.clone();
    newer[8..12].copy_from_slice(&(backwater::FORMAT_VERSION + 1).to_le_bytes());
    let crc = crc32fast::hash(&newer[..60]);
    newer[60..64].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&meta, &newer).unwrap();
    let error = Journal::open(dir.path(), Config::default()).err().expect("newer format must be refused");
    assert!(matches!(error, Error::NewerFormat { found, .. } if found == backwater::FORMAT_VERSION + 1));
    assert!(error.to_string().contains("upgrade"));

    std::fs::write(&meta, &original).unwrap();
    let segment = segment_path(dir.path(), MIB, 64);
    let bytes = std::fs::read(&segment).unwrap();
    std::fs::write(&segment, &bytes[..1000]).unwrap();
    assert!(matches!(Journal::open(dir.path(), Config::default()), Err(Error::Corrupt { .. })));
    std::fs::write(&segment, vec![0u8; MIB as usize]).unwrap();
    assert!(matches!(Journal::open(dir.path(), Config::default()), Err(Error::Corrupt { .. })));
    std::fs::write(&segment, &bytes).unwrap();
    let (_journal, records) = reopen_and_read(dir.path());
    assert_eq!(records.len(), 3);
}

#[test]
fn records_larger_than_an_eighth_of_a_segment_are_refused_and_empty_ones_work() -> backwater::Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), small(MIB))?;
    let publisher = journal.publisher();
    let max = journal.max_record_len();
    assert_eq!(max as u64, MIB / 8);
    assert!(matches!(publisher.append(&vec![1; max + 1]), Err(Error::RecordTooLarge { len, .. }) if len == max + 1));
    let big = publisher.append(&vec![2; max])?;
    let empty = publisher.append(b"")?;
    let read = drain(&mut journal.anonymous_consumer())?;
    assert_eq!(read, vec![(big, vec![2; max]), (empty, Vec::new())]);
    Ok(())
}

#[test]
fn an_abandoned_claim_becomes_padding() -> backwater::Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), small(MIB))?;
    let publisher = journal.publisher();
    let before = publisher.append(b"before")?;
    drop(publisher.claim(50)?);
    let after = publisher.append(b"after")?;
    let read = drain(&mut journal.anonymous_consumer())?;
    assert_eq!(read, vec![(before, b"before".to_vec()), (after, b"after".to_vec())]);
    Ok(())
}

#[test]
fn read_only_handles_read_but_never_write() -> backwater::Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let positions = fill(dir.path(), 5);
    let reader = Journal::open_read_only(dir.path())?;
    assert!(matches!(reader.publisher().append(b"x"), Err(Error::ReadOnly { .. })));
    let records = drain(&mut reader.anonymous_consumer())?;
    assert_eq!(records.iter().map(|r| r.0).collect::<Vec<_>>(), positions);
    Ok(())
}

#[test]
fn publisher_is_clone_send_sync() {
    fn assert_traits<T: Clone + Send + Sync + 'static>() {}
    assert_traits::<backwater::Publisher>();
    assert_traits::<Journal>();
}

#[test]
fn the_process_table_shows_open_writers_and_forgets_them_on_close() -> backwater::Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), small(MIB))?;
    let publisher = journal.publisher();
    assert_eq!(journal.processes(), vec![(std::process::id(), true)]);
    drop(journal);
    publisher.append(b"the publisher keeps the journal open")?;
    drop(publisher);
    assert!(Journal::open_read_only(dir.path())?.processes().is_empty());
    Ok(())
}

#[test]
fn every_flush_policy_appends_and_reads_back() -> backwater::Result<()> {
    use backwater::Flush;
    for policy in [Flush::Never, Flush::Interval(std::time::Duration::from_millis(5)), Flush::Always] {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path(), small(MIB).flush(policy))?;
        assert_eq!(journal.limits().flush, policy);
        let publisher = journal.publisher();
        let positions: Vec<u64> = (0..2000u32).map(|i| publisher.append(&i.to_le_bytes())).collect::<Result<_, _>>()?;
        let mut claim = publisher.claim(3)?;
        claim.payload_mut().copy_from_slice(b"end");
        claim.commit()?;
        journal.flush()?;
        let mut consumer = journal.consumer("reader")?;
        let read = drain(&mut consumer)?;
        consumer.commit()?;
        assert_eq!(read.len(), 2001, "{policy:?}");
        assert_eq!(read[..2000].iter().map(|r| r.0).collect::<Vec<_>>(), positions);
    }
    Ok(())
}

#[test]
fn limits_of_a_running_journal_can_be_changed_and_every_handle_sees_them() -> backwater::Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), small(MIB))?;
    journal.consumer("stalled")?;
    let publisher = journal.publisher();
    for _ in 0..3000 {
        publisher.offer(&[0u8; 1000])?;
    }
    let other = Journal::open(dir.path(), Config::default())?;
    let mut limits = other.limits();
    limits.max_disk_bytes = 2 * MIB;
    other.set_limits(limits)?;
    assert_eq!(journal.limits().max_disk_bytes, 2 * MIB);
    journal.apply_retention()?;
    assert!(matches!(publisher.offer(&[0u8; 1000]), Err(backwater::OfferError::BackPressured { .. })));
    Ok(())
}

/// A `Publisher` kept in a thread-local whose destructor appends: the
/// destructor runs after the library's own thread-local cache is gone (it
/// was registered later), and must still append rather than abort.
#[test]
fn a_publisher_appends_from_a_thread_local_destructor() -> backwater::Result<()> {
    struct AppendOnDrop(Option<backwater::Publisher>);
    impl Drop for AppendOnDrop {
        fn drop(&mut self) {
            if let Some(publisher) = &self.0 {
                publisher.offer(b"from a destructor").expect("append from a thread-local destructor");
            }
        }
    }
    thread_local! {
        static LATE: std::cell::RefCell<AppendOnDrop> = const { std::cell::RefCell::new(AppendOnDrop(None)) };
    }
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), small(MIB))?;
    let publisher = journal.publisher();
    std::thread::spawn(move || {
        // Touched before the first append, so destroyed after the library's cache.
        LATE.with(|late| late.borrow_mut().0 = Some(publisher.clone()));
        publisher.offer(b"first").unwrap();
    })
    .join()
    .expect("the thread ends without a panic");
    let payloads: Vec<Vec<u8>> = drain(&mut journal.anonymous_consumer())?.into_iter().map(|(_, p)| p).collect();
    assert_eq!(payloads, [b"first".to_vec(), b"from a destructor".to_vec()]);
    Ok(())
}
