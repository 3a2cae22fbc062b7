//! A journal written by an earlier build stays readable and appendable.
//!
//! `tests/fixtures/format-1/` was written by the build of commit 38c5288
//! (`backwater create --segment-size 64KiB --compression zstd --compress-at
//! 0.05`, then `append` of 4,000 plain lines, 700 keyed ones
//! (`key{n % 7}=value {n}`) and 500 low-priority ones, `compress`, and
//! `cursor set reader 64`): metadata of version 2, segments of version 1, two
//! of them compressed, and a cursor. A change of the format must keep these
//! tests passing, on these bytes (see `docs/FORMAT.md`, "Versions").

use std::path::Path;

use backwater::{Config, Journal, Priority};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-1");
const SEGMENT_SIZE: u64 = 64 << 10;
const FIXTURE_RECORDS: usize = 5200;
/// Records each test appends: more than the fixture's tail segment and the
/// segments it prepared ahead hold, so new segments follow.
const APPENDED: usize = 8000;

/// A copy of the fixture to open (opening writes: locks, recovery).
fn fixture_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(Path::new(FIXTURE), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// What the fixture's `n`th record (from 0) says.
fn fixture_record(n: usize) -> (Option<String>, String, Priority) {
    match n {
        0..4000 => (None, format!("plain record {:05} of the version-1 fixture", n + 1), Priority::Normal),
        4000..4700 => {
            let k = n - 4000 + 1;
            (Some(format!("key{}", k % 7)), format!("value {k}"), Priority::Normal)
        }
        _ => (None, format!("low-priority record {:04}", n - 4700 + 1), Priority::Low),
    }
}

/// How [`upgrade_with`] appends its records.
#[derive(Clone, Copy)]
enum Way {
    /// `Publisher::append`, and `append_keyed` for every third.
    Shared,
    /// `Publisher::append_batch` of ten, and `claim` for every 50th.
    BatchesAndClaims,
    /// `ExclusivePublisher::append`.
    Exclusive,
}

/// Opens a copy of the fixture, reads what the earlier build wrote through
/// its cursor, appends [`APPENDED`] records `way`, reads them back, and
/// verifies the whole journal.
fn upgrade_with(way: Way) {
    let dir = fixture_copy();
    let journal = Journal::open(dir.path(), Config::default().segment_size(SEGMENT_SIZE)).unwrap();
    // A cursor left at the start keeps every segment from retention.
    let holder = journal.consumer("holder").unwrap();

    // Every record the earlier build wrote, compressed segments included, with
    // its key and priority, through the cursor it left.
    let mut consumer = journal.consumer("reader").unwrap();
    let mut read = Vec::new();
    while consumer
        .poll(
            |record| {
                read.push((
                    record.key().map(|key| String::from_utf8_lossy(key).into_owned()),
                    String::from_utf8_lossy(record.payload()).into_owned(),
                    record.priority(),
                ))
            },
            4096,
        )
        .unwrap()
        > 0
    {}
    assert_eq!(read.len(), FIXTURE_RECORDS);
    for (n, record) in read.iter().enumerate() {
        assert_eq!(record, &fixture_record(n), "record {n}");
    }

    // Appends fill the earlier build's tail segment (and any it prepared),
    // then segments this build creates.
    let appended: Vec<String> = (0..APPENDED).map(|n| format!("appended by this build {n:05}")).collect();
    let tail_at_open = journal.tail_position();
    let positions = append_all(&journal, way, &appended);
    // They go on from the earlier build's tail, through the segments it
    // prepared, into segments this build creates.
    assert_eq!(positions[0], tail_at_open);
    assert!(positions.windows(2).all(|pair| pair[0] <= pair[1]));
    assert!(positions[APPENDED - 1] / SEGMENT_SIZE > tail_at_open / SEGMENT_SIZE + 1);
    let mut after = Vec::new();
    while consumer.poll(|record| after.push(String::from_utf8_lossy(record.payload()).into_owned()), 4096).unwrap() > 0
    {
    }
    assert_eq!(after, appended);
    drop((holder, consumer, journal));

    let report = backwater::recovery::verify(dir.path(), |_, _| {}).unwrap();
    assert_eq!(report.findings.len(), 0, "{:?}", report.findings);
    assert_eq!(report.records as usize, FIXTURE_RECORDS + APPENDED);
    assert!(report.compressed >= 2, "the fixture's two compressed segments, and any the housekeeper added");
}

/// Appends `payloads` in order `way`; the position of each.
fn append_all(journal: &Journal, way: Way, payloads: &[String]) -> Vec<u64> {
    let mut positions = Vec::new();
    match way {
        Way::Shared => {
            let publisher = journal.publisher();
            for (n, payload) in payloads.iter().enumerate() {
                positions.push(if n % 3 == 0 {
                    publisher.append_keyed(format!("new{}", n % 5).as_bytes(), payload.as_bytes()).unwrap()
                } else {
                    publisher.append(payload.as_bytes()).unwrap()
                });
            }
        }
        Way::BatchesAndClaims => {
            let publisher = journal.publisher();
            for (n, chunk) in payloads.chunks(10).enumerate() {
                if n % 5 == 0 {
                    for payload in chunk {
                        let mut claim = publisher.claim(payload.len()).unwrap();
                        claim.payload_mut().copy_from_slice(payload.as_bytes());
                        positions.push(claim.commit().unwrap());
                    }
                } else {
                    // Only the batch's first position is returned; the
                    // checks need the first and the last record's.
                    let first = publisher.append_batch(chunk).unwrap();
                    positions.extend(std::iter::repeat_n(first, chunk.len()));
                }
            }
        }
        Way::Exclusive => {
            let mut publisher = journal.exclusive_publisher().unwrap();
            positions.extend(payloads.iter().map(|payload| publisher.append(payload.as_bytes()).unwrap()));
        }
    }
    positions
}

#[test]
fn a_version_1_journal_is_read_and_appended_to_by_a_publisher() {
    upgrade_with(Way::Shared);
}

#[test]
fn a_version_1_journal_is_appended_to_in_batches_and_claims() {
    upgrade_with(Way::BatchesAndClaims);
}

#[test]
fn a_version_1_journal_is_appended_to_by_an_exclusive_publisher() {
    upgrade_with(Way::Exclusive);
}

/// The earlier build's raw segments compress and read back when this
/// build's compressor takes them.
#[test]
fn version_1_segments_compress_and_read_back() {
    let dir = fixture_copy();
    let config = Config::default().segment_size(SEGMENT_SIZE).compress_at(0.001);
    let journal = Journal::open(dir.path(), config).unwrap();
    // Past the segments the compressor leaves raw next to the tail.
    let publisher = journal.publisher();
    for n in 0..6000 {
        publisher.append(format!("pushing the fixture's segments away from the tail {n:05}").as_bytes()).unwrap();
    }
    assert!(journal.compress_sealed().unwrap() > 0);
    let compressed_before = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().file_name().to_string_lossy().ends_with(".zseg"))
        .count();
    assert!(compressed_before > 2, "this build compressed some of the fixture's raw segments");
    let mut consumer = journal.consumer("reader").unwrap();
    let mut read = 0;
    while consumer
        .poll(
            |record| {
                if read < FIXTURE_RECORDS {
                    assert_eq!(String::from_utf8_lossy(record.payload()), fixture_record(read).1);
                }
                read += 1;
            },
            4096,
        )
        .unwrap()
        > 0
    {}
    assert_eq!(read, FIXTURE_RECORDS + 6000);
}
