//! `ReservingPublisher`: threads that each claim room for several records at
//! once. Each handle's records keep their order, every record is read once,
//! and a reservation left unfilled holds readers only until it is released
//! or a consumer's `reserve_linger` has passed.

use std::time::Duration;

use backwater::{Config, Journal, Priority};

const HOUR: Duration = Duration::from_secs(3600);

/// Small segments; reservations that neither expire nor are lapsed by this
/// handle's consumers or housekeeper unless a test says otherwise.
fn config() -> Config {
    Config::default().segment_size(64 << 10).min_free_disk(0).reserve_linger(HOUR)
}

/// Every record in the journal, in position order, as (position, payload).
fn read_all(journal: &Journal) -> Vec<(u64, Vec<u8>)> {
    let mut consumer = journal.anonymous_consumer();
    let mut records = Vec::new();
    while consumer.poll(|record| records.push((record.position(), record.payload().to_vec())), 4096).unwrap() > 0 {}
    records
}

/// The positions `consumer` reads up to `last`, waiting (up to 10 s a call)
/// for each record that is not there yet.
fn read_until(consumer: &mut backwater::Consumer, last: u64) -> Vec<u64> {
    let mut read = Vec::new();
    while read.last() != Some(&last) {
        let got = consumer.poll_wait(|record| read.push(record.position()), 100, Duration::from_secs(10)).unwrap();
        assert!(got > 0, "the reader stayed at the idle reservation; read {read:?}");
    }
    read
}

/// The positions of every record in the journal, in order.
fn read_positions(journal: &Journal) -> Vec<u64> {
    read_all(journal).into_iter().map(|(position, _)| position).collect()
}

#[test]
fn threads_with_a_reservation_each_keep_their_order_and_every_record_is_read_once() {
    // 64 KiB segments and records of 40 to 1000 bytes: reservations end at
    // segment ends, and records of one thread outgrow the rest of its
    // reservation, many times over.
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), config()).unwrap();
    let publisher = journal.publisher();
    const THREADS: u8 = 4;
    const RECORDS: u32 = 3000;
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let mut mine = publisher.reserving();
            scope.spawn(move || {
                for sequence in 0..RECORDS {
                    let len = 40 + (sequence as usize * 37 + thread as usize * 101) % 960;
                    let mut payload = vec![thread; len];
                    payload[1..5].copy_from_slice(&sequence.to_le_bytes());
                    mine.append(&payload).unwrap();
                }
            });
        }
    });
    let records = read_all(&journal);
    assert_eq!(records.len(), THREADS as usize * RECORDS as usize, "every record read once");
    let mut next = [0u32; THREADS as usize];
    for (position, payload) in &records {
        let thread = payload[0];
        let sequence = u32::from_le_bytes(payload[1..5].try_into().unwrap());
        assert_eq!(sequence, next[thread as usize], "thread {thread}'s records out of order at {position}");
        assert!(payload[5..].iter().all(|&b| b == thread), "a record of thread {thread} read torn at {position}");
        next[thread as usize] += 1;
    }
    assert_eq!(journal.stats().unblocked, 0, "no claim was unblocked: released rests are not claims");
}

/// A reserving publisher that leaves an unfilled reservation (its fourth
/// record is the first of a reservation of four frames), a record of
/// another publisher after it, and the positions of both.
fn a_rest_then_another_record(journal: &Journal) -> (backwater::ReservingPublisher, Vec<u64>, u64) {
    let mut reserving = journal.publisher().reserving();
    // Reservations of 1, then 2, then 4 frames: the third record is the
    // first of the third reservation.
    let positions: Vec<u64> = (0..4u8).map(|n| reserving.append(&[n; 20]).unwrap()).collect();
    let after = journal.publisher().append(b"appended after the reservation").unwrap();
    assert!(after > *positions.last().unwrap());
    (reserving, positions, after)
}

#[test]
fn readers_wait_at_an_unfilled_reservation_until_it_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), config()).unwrap();
    let (mut reserving, positions, after) = a_rest_then_another_record(&journal);
    let patient = Journal::open(dir.path(), config()).unwrap();
    let mut consumer = patient.anonymous_consumer();
    let mut read = Vec::new();
    for _ in 0..3 {
        consumer.poll(|record| read.push(record.position()), 100).unwrap();
    }
    assert_eq!(read, positions, "the reader stops at the rest of the reservation");

    reserving.release();
    consumer.poll(|record| read.push(record.position()), 100).unwrap();
    assert_eq!(read.last(), Some(&after), "released, the rest is padding the reader skips");
    assert_eq!(read.len(), positions.len() + 1);

    // Released, the handle appends after everything else.
    let next = reserving.append(b"next").unwrap();
    assert!(next > after);
}

#[test]
fn dropping_the_handle_releases_its_reservation() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), config()).unwrap();
    let (reserving, positions, after) = a_rest_then_another_record(&journal);
    drop(reserving);
    let read = read_positions(&journal);
    assert_eq!(read, [positions, vec![after]].concat());
}

#[test]
fn a_reader_lapses_an_idle_reservation_after_its_linger_and_the_owner_reserves_again() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), config()).unwrap();
    let (mut reserving, positions, after) = a_rest_then_another_record(&journal);
    let hasty = Journal::open(dir.path(), config().reserve_linger(Duration::ZERO).unblock_timeout(HOUR)).unwrap();
    let mut consumer = hasty.anonymous_consumer();
    let mut read = read_until(&mut consumer, after);
    assert_eq!(read, [positions, vec![after]].concat());

    // The owner finds its rest lapsed and appends in a new reservation,
    // after what the reader passed.
    let next = reserving.append(b"after the lapse").unwrap();
    assert!(next > after);
    consumer.poll(|record| read.push(record.position()), 100).unwrap();
    assert_eq!(read.last(), Some(&next));
    assert_eq!(journal.stats().unblocked, 0, "a lapsed reservation is not an unblocked claim");
}

#[test]
fn a_low_priority_record_goes_after_the_handles_reserved_records() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), config()).unwrap();
    let mut reserving = journal.publisher().reserving();
    let reserved: Vec<u64> = (0..4u8).map(|n| reserving.append(&[n; 20]).unwrap()).collect();
    let low = reserving.append_with(Priority::Low, b"low").unwrap();
    assert!(low > *reserved.last().unwrap());
    // The reservation was released for it: a reader passes at once.
    let read = read_positions(&journal);
    assert_eq!(read, [reserved, vec![low]].concat());
}

#[test]
fn verify_and_segments_do_not_report_a_live_threads_reservation_as_a_hole() {
    // A thread that stopped appending keeps its rest while others append on
    // for segments: with no consumer to lapse it, a live `verify` finds an
    // uncommitted frame in a settled segment, which is no finding while the
    // reservation's owner lives (it holds no record).
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), config()).unwrap();
    let (reserving, _, _) = a_rest_then_another_record(&journal);
    let publisher = journal.publisher();
    while journal.tail_position() < 3 * (64 << 10) {
        publisher.append(&[7u8; 900]).unwrap();
    }
    let report = backwater::recovery::verify(dir.path(), |_, _| {}).unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    // Nor does `backwater segments`.
    let problems: usize = journal.segment_infos().unwrap().iter().map(|info| info.problems).sum();
    assert_eq!(problems, 0);
    drop(reserving);
}

#[test]
fn a_slowly_filled_reservation_holds_readers_no_longer_than_the_linger_in_all() {
    // The owner keeps appending into its reservation, each record well
    // within the linger; the reader counts the linger from when it first
    // met the reservation, not from each record, so what another thread
    // appended after the reservation is read within about one linger.
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), config()).unwrap();
    let mut owner = journal.publisher().reserving();
    // Reservations of 1, 2 and 4 frames filled, then the first record of
    // one of 8 frames: 7 frames of rest.
    for n in 0..8u8 {
        owner.append(&[n; 20]).unwrap();
    }
    let after = journal.publisher().append(b"appended after the reservation").unwrap();
    let linger = Duration::from_millis(40);
    let reader =
        Journal::open(dir.path(), config().reserve_linger(linger).unblock_timeout(Duration::from_secs(3600))).unwrap();
    let mut consumer = reader.anonymous_consumer();
    let mut read = Vec::new();
    consumer.poll(|record| read.push(record.position()), 100).unwrap();
    assert_eq!(read.len(), 8, "the reader stops at the rest");
    for _ in 0..6 {
        // Pacing the owner below the linger (not synchronisation: nothing
        // waits for this to have happened).
        std::thread::sleep(linger / 4);
        owner.append(b"slowly").unwrap();
        consumer.poll(|record| read.push(record.position()), 100).unwrap();
        if read.contains(&after) {
            return;
        }
    }
    panic!("read {read:?}: still behind the reservation after 6 records at a quarter of the linger each");
}

#[test]
fn a_reservation_in_a_segment_the_tail_has_left_takes_no_record() {
    // A ring of 4 segments: the reservation's segment is dropped while its
    // thread waits, and that thread's mapping of it outlives the drop. Its
    // next record must land where consumers can read it, not in the dropped
    // segment (where `append` returned Ok and nobody could read it).
    let dir = tempfile::tempdir().unwrap();
    let ring = config().max_disk_bytes(4 * (64 << 10)).when_full(backwater::WhenFull::DropOldest);
    let journal = Journal::open(dir.path(), ring).unwrap();
    let (reserved_tx, reserved_rx) = std::sync::mpsc::channel();
    let (resume_tx, resume_rx) = std::sync::mpsc::channel::<()>();
    let position = std::thread::scope(|scope| {
        let journal = &journal;
        let owner = scope.spawn(move || {
            let mut reserving = journal.publisher().reserving();
            let positions: Vec<u64> = (0..4u8).map(|n| reserving.append(&[n; 20]).unwrap()).collect();
            reserved_tx.send(*positions.last().unwrap()).unwrap();
            resume_rx.recv().unwrap();
            reserving.append(b"must be readable").unwrap()
        });
        let last_reserved = reserved_rx.recv().unwrap();
        let publisher = journal.publisher();
        while journal.first_position() < 64 << 10 {
            publisher.append(&[1u8; 1000]).unwrap();
        }
        resume_tx.send(()).unwrap();
        let position = owner.join().unwrap();
        assert!(position > last_reserved);
        position
    });
    assert!(position >= journal.first_position(), "appended at {position}, below the first position");
    let read = read_all(&journal);
    assert!(read.iter().any(|(at, payload)| *at == position && payload == b"must be readable"));
}

#[test]
fn the_owner_takes_no_record_from_a_reservation_older_than_the_linger() {
    // 30 ms after the reservation, past its 20 ms linger (and the 1-4 ms
    // clock), but before the housekeeper could have lapsed it (it must see
    // the rest unmoved a whole 100 ms tick apart): only the owner's own
    // check keeps the record from landing before one appended meanwhile.
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), config().reserve_linger(Duration::from_millis(20))).unwrap();
    let mut reserving = journal.publisher().reserving();
    let reserved: Vec<u64> = (0..4u8).map(|n| reserving.append(&[n; 20]).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(30)); // the reservation's age, not synchronisation
    let meanwhile = journal.publisher().append(b"meanwhile").unwrap();
    assert!(meanwhile > *reserved.last().unwrap());
    let late = reserving.append(b"late").unwrap();
    assert!(late > meanwhile, "a record of an expired reservation at {late}, before {meanwhile}");
}

#[test]
fn a_read_only_reader_passes_an_idle_reservation_once_its_housekeeper_lapsed_it() {
    // Read-only handles cannot pad; the owner's handle has no consumer to
    // do it. Its housekeeper finds the rest unmoved a tick apart and pads it.
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), config().reserve_linger(Duration::from_micros(100))).unwrap();
    let (_reserving, positions, after) = a_rest_then_another_record(&journal);
    let reader = Journal::open_read_only(dir.path()).unwrap();
    let mut consumer = reader.anonymous_consumer();
    assert_eq!(read_until(&mut consumer, after), [positions, vec![after]].concat());
}
