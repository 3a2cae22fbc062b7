//! The bodies of the fuzz targets. `tests/fuzz_regressions.rs` includes this
//! file too and replays the seed corpus and every input that ever crashed a
//! target, so each finding stays a regression test. Only the public API is
//! used; every target must return without panicking, hanging or reading out
//! of bounds, whatever the bytes.
#![allow(dead_code)]

use std::path::Path;

use backwater::frame::{self, Body, Decoded};
use backwater::segment::{self, Segment, SegmentIdentity};
use backwater::{Config, Journal};

/// A scratch directory on tmpfs when there is one (fast), else in /tmp.
pub fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("scratch directory")
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    data.get(at..at + 8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
}

/// Decodes arbitrary bytes as back-to-back frames from an arbitrary position.
pub fn frame_decode(data: &[u8]) {
    let (word, position) = (u64_at(data, 0), u64_at(data, 8));
    let room = data.get(16..).unwrap_or_default();
    let _ = frame::decode(word, room, position, true);
    let mut offset = 0;
    while offset + 8 <= room.len() {
        let word = u64_at(room, offset);
        match frame::decode(word, &room[offset..], position.wrapping_add(offset as u64), true) {
            Ok(Decoded::Data { aligned_len, payload_len, key_len, .. }) => {
                let end = frame::payload_offset(key_len) + payload_len;
                assert!(end <= room.len() - offset && end <= aligned_len);
                if let Some(len) = key_len {
                    assert!(frame::key_range(len).end <= frame::payload_offset(key_len));
                }
                offset += aligned_len;
            }
            Ok(Decoded::Padding { aligned_len }) => offset += aligned_len,
            _ => break,
        }
    }
}

/// A keyed frame built from the input (key and payload split at its first
/// byte's value), its key-length bytes then overwritten by the next two
/// input bytes with the CRC fixed up: decoding either reads back exactly
/// what was written, or fails with a typed fault; never panics, never reads
/// past the frame.
pub fn keyed_frame(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else { return };
    let (head, tail) = rest.split_at((split as usize).min(rest.len()));
    let (damage, body) = tail.split_at(tail.len().min(2));
    let Ok(keyed) = frame::Keyed::new(head, body) else { return };
    let len = keyed.body_len();
    let mut room = vec![0u8; frame::aligned_frame_len(len) + 64];
    let word = frame::Word0::data(backwater::Priority::Normal, len, 0).with_flags(frame::FLAG_KEYED);
    room[..8].copy_from_slice(&word.pack().to_le_bytes());
    keyed.write_parts(|at, part| room[frame::HEADER_LEN + at..][..part.len()].copy_from_slice(part));
    room[frame::CRC_OFFSET..frame::CRC_OFFSET + 4].copy_from_slice(&keyed.body_crc().to_le_bytes());
    let decoded = frame::decode(word.pack(), &room, 0, true);
    let Ok(Decoded::Data { key_len: Some(key_len), payload_len, .. }) = decoded else {
        panic!("a keyed frame as written must decode: {decoded:?}");
    };
    let start = frame::payload_offset(Some(key_len));
    assert_eq!((&room[frame::key_range(key_len)], &room[start..start + payload_len]), (head, body));
    if damage.len() == 2 {
        room[frame::HEADER_LEN..frame::HEADER_LEN + 2].copy_from_slice(damage);
        let crc = frame::crc(&room[frame::HEADER_LEN..frame::HEADER_LEN + len]);
        room[frame::CRC_OFFSET..frame::CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        match frame::decode(word.pack(), &room, 0, true) {
            Ok(Decoded::Data { key_len: Some(key_len), payload_len, .. }) => {
                assert_eq!(frame::payload_offset(Some(key_len)) + payload_len, frame::HEADER_LEN + len);
            }
            Err(frame::FrameFault::BadKeyLength { body, .. }) => assert_eq!(body, len),
            other => panic!("a damaged key length must decode or be BadKeyLength: {other:?}"),
        }
    }
}

/// The recovery/verify frame walk and the header check over an arbitrary
/// 64 KiB segment image.
pub fn segment_scan(data: &[u8]) {
    let mut image = vec![0u8; 64 << 10];
    let len = data.len().min(image.len());
    image[..len].copy_from_slice(&data[..len]);
    let identity = SegmentIdentity { journal_id: u64_at(data, 24), segment_size: image.len() as u64 };
    let _ = segment::check_header(&image, Path::new("<fuzz>"), 0, identity);
    let Ok(segment) = Segment::from_image(&image, 0) else { return };
    let scan = backwater::recovery::scan(&segment);
    assert!(scan.end <= image.len() && scan.dirty_end <= image.len() && scan.end <= scan.dirty_end.max(scan.end));
    for (offset, len) in &scan.holes {
        assert!(offset + len <= image.len());
    }
}

/// A valid journal to copy, so per-input work stays small.
fn template() -> &'static Path {
    static TEMPLATE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let dir = scratch();
            let journal = Journal::open(dir.path(), Config::default().segment_size(64 << 10).min_free_disk(0))
                .expect("template journal");
            let publisher = journal.publisher();
            for i in 0..100u32 {
                publisher.append(&i.to_le_bytes()).expect("append");
            }
            journal.consumer("x").expect("cursor");
            dir
        })
        .path()
}

fn copy_template(to: &Path) {
    for entry in std::fs::read_dir(template()).expect("template").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Exercises a journal read-only the way the CLI does.
fn read_everything(journal: &Journal) {
    let _ = journal.stats();
    let _ = journal.cursors();
    let _ = journal.segment_infos();
    let _ = journal.walk_frames(0, |_| true);
    let mut consumer = journal.anonymous_consumer();
    for _ in 0..64 {
        match consumer.poll(|r| assert!(r.payload().len() <= journal.max_record_len()), 1024) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// Metadata and cursor parsing. Input: `[meta length: u16 LE][meta][cursor]`;
/// the meta bytes replace `journal.meta` of one copy of a valid journal, the
/// cursor bytes `cursors/x.cursor` of another.
pub fn meta_and_cursor(data: &[u8]) {
    let split = data.get(..2).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let body = data.get(2..).unwrap_or_default();
    let (meta, cursor) = body.split_at(split.min(body.len()));
    let dir = scratch();
    copy_template(dir.path());
    std::fs::write(dir.path().join("journal.meta"), meta).expect("write meta");
    if let Ok(journal) = Journal::open_read_only(dir.path()) {
        read_everything(&journal);
    }
    let dir = scratch();
    copy_template(dir.path());
    std::fs::write(dir.path().join("cursors/x.cursor"), cursor).expect("write cursor");
    if let Ok(journal) = Journal::open_read_only(dir.path()) {
        let _ = journal.cursors();
        if let Ok(mut consumer) = journal.consumer("x") {
            let _ = consumer.poll(|_| {}, 1024);
        }
    }
}

const NAMES: [&str; 6] = [
    "journal.meta",
    "00000000000000000000.seg",
    "00000000000000065536.seg",
    "00000000000000131072.seg",
    "cursors/x.cursor",
    "journal.lock",
];

/// A directory of arbitrary files opened as a journal: read-only, then
/// read-write (which runs recovery over whatever is there).
///
/// Input: entries of `[name selector: u8][length: u32 LE][bytes]`; an entry
/// naming the template means "start from the valid template journal".
pub fn open_dir(data: &[u8]) {
    let dir = scratch();
    let mut rest = data;
    if rest.first() == Some(&0xFF) {
        copy_template(dir.path());
        rest = &rest[1..];
    }
    std::fs::create_dir_all(dir.path().join("cursors")).expect("mkdir");
    while rest.len() >= 5 {
        let name = NAMES[rest[0] as usize % NAMES.len()];
        let len = (u32::from_le_bytes(rest[1..5].try_into().unwrap_or_default()) as usize).min(rest.len() - 5);
        std::fs::write(dir.path().join(name), &rest[5..5 + len]).expect("write entry");
        rest = &rest[5 + len..];
    }
    if let Ok(journal) = Journal::open_read_only(dir.path()) {
        read_everything(&journal);
    }
    let _ = backwater::recovery::verify(dir.path(), |_, _| {});
    if let Ok(journal) = Journal::open(dir.path(), Config::default()) {
        read_everything(&journal);
    }
}
