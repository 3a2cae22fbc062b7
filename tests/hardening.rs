//! Bad input through the public API and the CLI: foreign segments, links out
//! of the journal, cursors that point nowhere, read-only filesystems, and
//! file permissions. Each case is a typed error naming the file and
//! position, nothing panics, and nothing valid is changed.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use backwater::{Config, Error, Journal};
use common::{drain, segment_path};

const MIB: u64 = 1 << 20;

fn journal_with(dir: &Path, records: u32) -> Vec<u64> {
    let journal = Journal::open(dir, Config::default().segment_size(MIB).min_free_disk(0)).unwrap();
    let publisher = journal.publisher();
    (0..records).map(|i| publisher.append(&i.to_le_bytes()).unwrap()).collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every file in the journal directory with its bytes, to prove nothing changed.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg" || x == "meta"))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap_or_default()))
        .collect();
    files.sort();
    files
}

fn verify_cli(dir: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_backwater")).arg("verify").arg(dir).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn files_are_created_owner_read_write_group_read_and_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let journal = Journal::open(&path, Config::default().segment_size(MIB)).unwrap();
    journal.consumer("reader").unwrap();
    assert_eq!(mode(&path), 0o750);
    assert_eq!(mode(&path.join("cursors")), 0o750);
    for file in ["journal.meta", "journal.lock", "cursors/reader.cursor", "00000000000000000000.seg"] {
        assert_eq!(mode(&path.join(file)), 0o640, "{file}");
    }
    let private = dir.path().join("private");
    let journal = Journal::open(&private, Config::default().segment_size(MIB).file_mode(0o600)).unwrap();
    journal.consumer("reader").unwrap();
    assert_eq!(mode(&private), 0o700);
    assert_eq!(mode(&private.join("journal.meta")), 0o600);
    assert_eq!(mode(&private.join("cursors/reader.cursor")), 0o600);
}

#[test]
fn a_segment_from_another_journal_is_refused_by_open_and_reported_by_verify() {
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    journal_with(ours.path(), 10);
    journal_with(theirs.path(), 10);
    let segment = segment_path(ours.path(), MIB, 64);
    std::fs::copy(segment_path(theirs.path(), MIB, 64), &segment).unwrap();
    let before = snapshot(ours.path());
    let error = Journal::open(ours.path(), Config::default()).err().expect("a foreign segment must be refused");
    assert!(matches!(&error, Error::Corrupt { path, position: 0, .. } if path == &segment), "{error}");
    assert!(error.to_string().contains("another journal"), "{error}");
    let (code, report) = verify_cli(ours.path());
    assert_eq!(code, 1);
    assert!(report.contains("another journal"), "{report}");
    assert_eq!(snapshot(ours.path()), before, "nothing may be changed");
}

#[test]
fn a_symlink_where_a_segment_should_be_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 10);
    let segment = segment_path(dir.path(), MIB, 64);
    let outside = elsewhere.path().join("secret.seg");
    std::fs::rename(&segment, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &segment).unwrap();
    let before = std::fs::read(&outside).unwrap();
    let error = Journal::open(dir.path(), Config::default()).err().expect("a symlink must be refused");
    assert!(error.to_string().contains("symbolic link"), "{error}");
    let reader = Journal::open_read_only(dir.path()).unwrap();
    assert!(matches!(drain(&mut reader.anonymous_consumer()), Err(Error::NotAJournal { .. })));
    assert_eq!(std::fs::read(&outside).unwrap(), before, "the linked file must not be touched");
}

#[test]
fn cursors_past_the_tail_or_inside_a_frame_are_typed_errors_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let positions = journal_with(dir.path(), 10);
    let journal = Journal::open(dir.path(), Config::default()).unwrap();
    journal.consumer("lost").unwrap();
    let cursor = dir.path().join("cursors/lost.cursor");
    for bad in [journal.tail_position() + 4096, positions[3] + 8, positions[3] + 32] {
        common::write_at(&cursor, 16, &bad.to_le_bytes());
        match journal.consumer("lost") {
            Err(Error::Corrupt { path, position, reason }) => {
                assert_eq!((path, position), (cursor.clone(), bad));
                assert!(reason.contains("reset lost start"), "{reason}");
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("a cursor at {bad} must be refused"),
        }
    }
    common::write_at(&cursor, 16, &positions[3].to_le_bytes());
    assert_eq!(drain(&mut journal.consumer("lost").unwrap()).unwrap().len(), 7);
}

#[test]
fn a_read_only_filesystem_can_be_read_but_not_opened_for_writing() {
    let Some(mount) = common::Tmpfs::mount(16) else { return };
    let dir = mount.path().join("journal");
    let positions = journal_with(&dir, 100);
    let remount = Command::new("mount").args(["-o", "remount,ro"]).arg(mount.path()).status().unwrap();
    assert!(remount.success());
    let error = Journal::open(&dir, Config::default()).err().expect("a read-only filesystem must be refused");
    assert!(matches!(&error, Error::Io { path, .. } if path.starts_with(&dir)), "{error}");
    let reader = Journal::open_read_only(&dir).unwrap();
    let read: Vec<u64> = drain(&mut reader.anonymous_consumer()).unwrap().into_iter().map(|r| r.0).collect();
    assert_eq!(read, positions);
    assert_eq!(verify_cli(&dir).0, 0);
}

#[test]
fn the_cli_reports_damage_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 100);
    std::fs::write(segment_path(dir.path(), MIB, 64), vec![0xFFu8; MIB as usize]).unwrap();
    for command in ["info", "segments", "dump", "verify", "tail"] {
        let out = Command::new(env!("CARGO_BIN_EXE_backwater")).arg(command).arg(dir.path()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{command} panicked: {stderr}");
        assert!(matches!(out.status.code(), Some(0..=2)), "{command}: {:?} {stderr}", out.status);
    }
    assert_eq!(verify_cli(dir.path()).0, 1);
}

#[test]
fn damaged_positions_in_the_metadata_are_refused_read_only_and_rebuilt_by_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let positions = journal_with(dir.path(), 10);
    let meta = dir.path().join("journal.meta");
    common::write_at(&meta, 192, &58u64.to_le_bytes()); // the first position, not a frame boundary
    let error = Journal::open_read_only(dir.path()).err().expect("damaged positions must be refused");
    assert!(matches!(&error, Error::NotAJournal { path, .. } if path == &meta), "{error}");
    assert!(error.to_string().contains("verify --repair"), "{error}");
    // A writer opening alone rebuilds them from the segments.
    let journal = Journal::open(dir.path(), Config::default()).unwrap();
    let read: Vec<u64> = drain(&mut journal.anonymous_consumer()).unwrap().into_iter().map(|r| r.0).collect();
    assert_eq!(read, positions);
}

#[test]
fn a_failed_open_of_a_damaged_journal_returns_promptly() {
    // Found by fuzzing (open_dir): with a flush policy set, closing the
    // handle of a failed open flushed every segment index up to a damaged
    // tail position, one missing file at a time: effectively forever.
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default().segment_size(64 << 10).min_free_disk(0);
    let journal =
        Journal::open(dir.path(), config.flush(backwater::Flush::Interval(std::time::Duration::from_secs(1)))).unwrap();
    let publisher = journal.publisher();
    while journal.segment_indexes().unwrap().len() < 3 {
        publisher.append(&[0u8; 1000]).unwrap();
    }
    drop((publisher, journal));
    std::fs::remove_file(segment_path(dir.path(), 64 << 10, 64 << 10)).unwrap(); // a gap: open fails
    let huge_tail: u64 = (1 << 30) << (16 + 8) | 64; // segment 2^30, offset 64
    common::write_at(&dir.path().join("journal.meta"), 128, &huge_tail.to_le_bytes());
    let error = Journal::open(dir.path(), Config::default()).err().expect("a missing segment must be refused");
    assert!(matches!(error, Error::Corrupt { .. }), "{error}");
}

/// A read-only handle writes nothing, not even when it closes: the retired
/// segment files a writer's housekeeper reclaims stay for that writer (found
/// by the metrics review: every exporter scrape opened and closed one).
#[test]
fn closing_a_read_only_handle_leaves_every_file_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 10);
    // What a writer leaves while a reader still maps a deleted segment.
    let retired = dir.path().join(".tmp-retired-7");
    std::fs::write(&retired, b"a retired segment").unwrap();
    let before = snapshot(dir.path());
    let reader = Journal::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.stats().appended, 10);
    drop(reader);
    assert_eq!(snapshot(dir.path()), before);
    assert!(retired.exists(), "a read-only handle deleted {}", retired.display());
}

/// A FIFO where a cursor file belongs is refused, not waited on: `info`,
/// `metrics` and every exporter scrape hung on one (found by the review).
#[test]
fn a_fifo_in_place_of_a_cursor_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 3);
    let fifo = dir.path().join("cursors").join("evil.cursor");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let (sender, receiver) = std::sync::mpsc::channel();
    let path = dir.path().to_path_buf();
    std::thread::spawn(move || {
        let journal = Journal::open_read_only(&path).unwrap();
        let _ = sender.send(journal.cursors().map(|c| c.len()));
    });
    // A guard against a hang, not a synchronisation: the answer comes at once.
    let answer = receiver.recv_timeout(std::time::Duration::from_secs(20)).expect("cursors() blocked on a FIFO");
    let error = answer.expect_err("a FIFO is not a cursor");
    assert!(error.to_string().contains("evil.cursor"), "{error}");
}
