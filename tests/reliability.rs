//! Regression tests for the ways a review proved data could be lost, garbled
//! or wedged (issue 12): each failed before its fix.

mod common;

use std::path::Path;

use backwater::{Config, Error, Journal, OfferError, Seek, WhenFull};

const SEGMENT: u64 = 64 << 10;

fn small_journal(dir: &Path) -> Journal {
    Journal::open(dir, Config::default().segment_size(SEGMENT).min_free_disk(0)).expect("open")
}

/// 682 frames of 96 bytes after the 64-byte header end exactly at the
/// segment's end: the tail is then the next segment's first frame, never its
/// header, and every API that takes "the end" accepts it.
#[test]
fn a_tail_at_a_segment_end_is_the_next_segments_first_frame() {
    let dir = tempfile::tempdir().unwrap();
    let journal = small_journal(dir.path());
    let publisher = journal.publisher();
    for i in 0..682u64 {
        publisher.append(&common::payload(i, 64)).unwrap();
    }
    assert_eq!(journal.tail_position(), SEGMENT + 64, "the tail must skip the next segment's header");
    let mut consumer = journal.consumer("at-end").unwrap();
    consumer.seek(Seek::End).unwrap();
    consumer.commit().unwrap();
    assert_eq!(consumer.poll(|_| {}, 10).unwrap(), 0);
    drop(consumer);
    // The cursor committed there opens again and reads what comes next.
    let mut consumer = journal.consumer("at-end").unwrap();
    let next = publisher.append(b"next").unwrap();
    let read = common::drain(&mut consumer).unwrap();
    assert_eq!(read, vec![(next, b"next".to_vec())]);
}

/// A cursor is never committed at a position no record can have.
#[test]
fn commit_at_refuses_a_position_that_is_not_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let journal = small_journal(dir.path());
    let publisher = journal.publisher();
    let first = publisher.append(b"one").unwrap();
    publisher.append(b"two").unwrap();
    let mut consumer = journal.consumer("c").unwrap();
    let mut nexts = Vec::new();
    consumer.poll(|r| nexts.push(r.next_position()), 10).unwrap();
    assert!(matches!(consumer.commit_at(first + 8), Err(Error::NotAFrameBoundary { .. })));
    assert!(matches!(consumer.commit_at(0), Err(Error::NotAFrameBoundary { .. })), "inside the segment header");
    consumer.commit_at(nexts[0]).unwrap();
    drop(consumer);
    let mut consumer = journal.consumer("c").unwrap();
    assert_eq!(common::drain(&mut consumer).unwrap().len(), 1);
}

/// Creating the next segment fails with something other than a full disk
/// (a directory stands where the file should go): thousands of offers must
/// neither carry the tail's overshoot into its segment index nor write
/// outside their frames; the error is typed, and the journal goes on by
/// itself once the cause is gone.
#[test]
fn a_persistent_segment_creation_failure_never_corrupts_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default().segment_size(SEGMENT).min_free_disk(0).segments_ahead(0);
    let journal = Journal::open(dir.path(), config).unwrap();
    let next = common::segment_path(dir.path(), SEGMENT, SEGMENT);
    std::fs::create_dir(&next).unwrap();
    let publisher = journal.publisher();
    let record = vec![7u8; journal.max_record_len()];
    let mut appended = Vec::new();
    let mut failures = 0;
    for _ in 0..3000 {
        match publisher.offer(&record) {
            Ok(position) => appended.push(position),
            Err(OfferError::Failed(_)) => failures += 1,
            Err(other) => panic!("expected a typed failure, got {other}"),
        }
    }
    assert!(failures > 2500, "creation failures surface as errors ({failures})");
    std::fs::remove_dir(&next).unwrap();
    appended.push(publisher.offer(&record).expect("the journal goes on once the obstacle is gone"));
    drop(publisher);
    drop(journal);
    let journal = small_journal(dir.path());
    let mut consumer = journal.consumer("all").unwrap();
    let read = common::drain(&mut consumer).unwrap();
    assert_eq!(read.iter().map(|(p, _)| *p).collect::<Vec<_>>(), appended);
    assert!(read.iter().all(|(_, payload)| payload == &record));
    let report = backwater::recovery::verify(dir.path(), |_, _| {}).unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
}

/// One rule for limits, wherever they are set: a budget below two segments
/// is refused by `set_limits` as by `open`, and a valid budget for an
/// existing journal is judged by its own segment size.
#[test]
fn limits_are_validated_the_same_way_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let journal = small_journal(dir.path());
    let mut limits = journal.limits();
    limits.max_disk_bytes = SEGMENT;
    limits.when_full = WhenFull::DropOldest;
    assert!(matches!(journal.set_limits(limits), Err(Error::InvalidConfig(_))));
    assert!(journal.limits().max_disk_bytes > SEGMENT, "a refused change changes nothing");
    let refused = Journal::open(dir.path(), Config::default().max_disk_bytes(SEGMENT));
    assert!(matches!(refused, Err(Error::InvalidConfig(_))));
    // Two segments of this journal's size are a valid budget, whatever the
    // default segment size is.
    Journal::open(dir.path(), Config::default().max_disk_bytes(2 * SEGMENT)).expect("two segments fit");
}

/// With a two-segment budget the files on disk never exceed it.
#[test]
fn a_two_segment_ring_stays_within_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default()
        .segment_size(SEGMENT)
        .min_free_disk(0)
        .max_disk_bytes(2 * SEGMENT)
        .when_full(WhenFull::DropOldest);
    let journal = Journal::open(dir.path(), config).unwrap();
    let publisher = journal.publisher();
    for i in 0..5000u64 {
        publisher.append(&common::payload(i, 100)).unwrap();
        assert!(journal.stats().disk_bytes <= 2 * SEGMENT, "over budget after {i} records");
    }
}

/// A cursor file is allocated before it is mapped: on a full filesystem
/// creating one is an error, never SIGBUS.
#[test]
fn creating_a_cursor_on_a_full_filesystem_is_an_error_not_sigbus() {
    let Some(tmpfs) = common::Tmpfs::mount(1) else { return };
    let dir = tmpfs.path().join("journal");
    let journal = small_journal(&dir);
    journal.prepare().unwrap();
    tmpfs.fill(&tmpfs.path().join("filler"));
    match journal.consumer("new") {
        Err(Error::Io { .. }) => {}
        Err(other) => panic!("expected an I/O error (no space), got {other}"),
        Ok(_) => panic!("a cursor was created on a full filesystem"),
    }
    assert!(journal.cursor_names().unwrap().is_empty(), "no half-made cursor is left");
}

/// Writer liveness is a lock the kernel holds, not a table of pids: with a
/// thousand writable handles open, the thousand-and-first still counts as
/// alive after the others close, so a new handle neither runs recovery over
/// its claim nor hands its position out again.
#[test]
fn a_writer_beyond_any_table_size_is_alive_to_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let handles: Vec<Journal> = (0..1000).map(|_| small_journal(dir.path())).collect();
    let late = small_journal(dir.path());
    let late_publisher = late.publisher();
    let mut claim = late_publisher.claim(100).unwrap();
    claim.payload_mut().copy_from_slice(&[b'x'; 100]);
    drop(handles);
    let next = small_journal(dir.path());
    assert!(next.recovery_report().is_none(), "recovery ran while a writer was alive");
    let other = next.publisher().append(b"from the next handle").unwrap();
    assert_ne!(other, claim.position());
    let claimed = claim.commit().expect("the live claim commits");
    let read = common::drain(&mut next.anonymous_consumer()).unwrap();
    assert_eq!(read, vec![(claimed, vec![b'x'; 100]), (other, b"from the next handle".to_vec())]);
}

/// The same with the claiming writer in another PID namespace, where its
/// pid means nothing to this one (`unshare --pid --fork --mount-proc`, as root).
#[test]
fn a_writer_in_another_pid_namespace_is_alive_to_recovery() {
    let dir = tempfile::tempdir().unwrap();
    drop(small_journal(dir.path()));
    let exe = std::env::current_exe().unwrap();
    let spawned = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(&exe)
        .args(["--exact", "claim_in_a_child_process", "--nocapture", "--test-threads", "1"])
        .env(CHILD_DIR, dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = spawned else {
        eprintln!("SKIPPED: unshare is not installed");
        return;
    };
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap());
    let Some(claimed) = read_number(&mut lines, "claimed") else {
        let _ = child.wait();
        eprintln!("SKIPPED: a new PID namespace needs root (CI runs as root)");
        return;
    };
    let next = small_journal(dir.path());
    assert!(next.recovery_report().is_none(), "recovery ran while a writer in another namespace was alive");
    let other = next.publisher().append(b"from this namespace").unwrap();
    assert_ne!(other, claimed);
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"commit\n").unwrap();
    assert_eq!(read_number(&mut lines, "committed"), Some(claimed), "the child's claim commits");
    assert!(child.wait().unwrap().success());
    let read = common::drain(&mut next.anonymous_consumer()).unwrap();
    assert_eq!(read, vec![(claimed, vec![b'c'; 100]), (other, b"from this namespace".to_vec())]);
}

const CHILD_DIR: &str = "BACKWATER_TEST_CHILD_DIR";

/// The child of the namespace test: claims, says where, commits when told.
/// (A no-op when run as an ordinary test.)
#[test]
fn claim_in_a_child_process() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else { return };
    let journal = small_journal(Path::new(&dir));
    let publisher = journal.publisher();
    let mut claim = publisher.claim(100).unwrap();
    claim.payload_mut().copy_from_slice(&[b'c'; 100]);
    println!("claimed {}", claim.position());
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    println!("committed {}", claim.commit().unwrap());
}

/// The number after `word` on the next line that has it (the test harness
/// may print its own words before it on the same line).
fn read_number(lines: &mut impl std::io::BufRead, word: &str) -> Option<u64> {
    let mut line = String::new();
    while lines.read_line(&mut line).ok()? > 0 {
        if let Some(at) = line.find(word) {
            return line[at + word.len()..].trim().parse().ok();
        }
        line.clear();
    }
    None
}
