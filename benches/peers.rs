//! backwater against its peers and the raw limit, in one run.
//!
//! The same work for every contender: N records of 64 B appended one by one,
//! then read back. Contenders run interleaved in rounds on fresh directories
//! (with `sync` in between, so nobody pays for another's writeback), and the
//! table reports medians and ratios. `tools/bench-table` prints it for the
//! README. Environment: `PEERS_RECORDS` (default 2,000,000), `PEERS_ROUNDS` (5).
//!
//! - backwater: `offer` into 64 MiB segments through a `Publisher` (fetch-add
//!   claims, any number of threads and processes) and an `ExclusivePublisher`
//!   (the only publisher: plain stores), each on a fresh journal and
//!   "prepared" (`Config::segments_ahead` + `Journal::prepare`: every segment
//!   of the run created and faulted in before the clock starts, like the raw
//!   resident contender), and the exclusive one in its steady state: a
//!   `DropOldest` ring that has wrapped, so it writes recycled segments.
//!   Read with a consumer (CRC checked).
//! - khata-rs 0.1: Chronicle-Queue-style mmap queue (no CRC on read).
//! - yaque 0.6: file queue, driven by `futures::executor::block_on`.
//! - commitlog 0.2: Kafka-style segmented log.
//! - raw: 24-byte headers (length, CRC32, timestamp) + payload written into a
//!   fallocated, mapped file with plain stores and one release store each,
//!   once over fresh space and once over resident pages (the hot-path limit).
//!   It uses backwater's CRC and clock functions and copies a payload whose
//!   length the compiler cannot see, so the gap to backwater is the journal's
//!   own work (claim, limits, layout, counters), not a different CRC or an
//!   inlined fixed-size copy.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const PAYLOAD: [u8; 64] = [0x5A; 64];

struct Timing {
    append: Duration,
    read: Duration,
}

/// Which backwater publisher, and whether its segments are ready before the clock starts.
#[derive(Clone, Copy)]
struct Setup {
    exclusive: bool,
    prepared: bool,
}

fn backwater(dir: &Path, n: u64, setup: Setup) -> Timing {
    use backwater::{Config, Journal};
    const SEGMENT: u64 = 64 << 20;
    let mut config = Config::default().segment_size(SEGMENT).min_free_disk(0);
    if setup.prepared {
        // Enough segments for the whole run, faulted in before timing (as the
        // raw resident-pages contender is).
        config = config.segments_ahead((n * 96 / SEGMENT) as u32 + 1);
    }
    let journal = Journal::open(dir, config).unwrap();
    if setup.prepared {
        journal.prepare().unwrap();
    }
    let start = Instant::now();
    if setup.exclusive {
        let mut publisher = journal.exclusive_publisher().unwrap();
        for _ in 0..n {
            publisher.offer(&PAYLOAD).unwrap();
        }
    } else {
        let publisher = journal.publisher();
        for _ in 0..n {
            publisher.offer(&PAYLOAD).unwrap();
        }
    }
    let append = start.elapsed();
    Timing { append, read: read_back(&mut journal.anonymous_consumer(), n) }
}

/// Times reading `n` records through `consumer` (CRC checked).
fn read_back(consumer: &mut backwater::Consumer, n: u64) -> Duration {
    let (mut read, mut sum) = (0u64, 0u64);
    let start = Instant::now();
    while read < n {
        read += consumer.poll(|r| sum += r.payload()[0] as u64, 4096).unwrap() as u64;
    }
    std::hint::black_box(sum);
    start.elapsed()
}

/// backwater in its steady state: an `ExclusivePublisher` appending into a
/// `DropOldest` ring that has already wrapped, so every segment it writes is
/// a recycled one (zeroed pages, already allocated and resident). The clock
/// covers `n` records appended after the ring has wrapped once and a half.
fn backwater_ring(dir: &Path, n: u64) -> Timing {
    use backwater::{Config, Journal, Seek, WhenFull};
    const SEGMENT: u64 = 64 << 20;
    // Twice the timed bytes and two segments: after `DropOldest` trims the
    // ring to its resume mark (70 %), the timed records are all still there.
    let budget = (n * 96 * 2).next_multiple_of(SEGMENT) + 2 * SEGMENT;
    let config = Config::default()
        .segment_size(SEGMENT)
        .min_free_disk(0)
        .max_disk_bytes(budget)
        .when_full(WhenFull::DropOldest)
        .segments_ahead(2); // the housekeeper's memset gets a segment of slack
    let journal = Journal::open(dir, config).unwrap();
    let mut publisher = journal.exclusive_publisher().unwrap();
    while journal.tail_position() < budget * 3 / 2 {
        publisher.offer(&PAYLOAD).unwrap();
    }
    let mut first = publisher.tail_position();
    if first.is_multiple_of(SEGMENT) {
        first += 64; // the next segment's first frame, past its header
    }
    let start = Instant::now();
    for _ in 0..n {
        publisher.offer(&PAYLOAD).unwrap();
    }
    let append = start.elapsed();
    let mut consumer = journal.anonymous_consumer();
    consumer.seek(Seek::Position(first)).unwrap();
    Timing { append, read: read_back(&mut consumer, n) }
}

fn khata(dir: &Path, n: u64) -> Timing {
    // One block must hold the whole run (khata does not roll within a cycle).
    let queue = khata_rs::Queue::new(dir).block_size(1 << 30).build().unwrap();
    let mut writer = queue.writer().unwrap();
    let start = Instant::now();
    for _ in 0..n {
        writer.write(&PAYLOAD).unwrap();
    }
    let append = start.elapsed();
    drop(writer);
    let mut reader = queue.reader().unwrap();
    reader.rewind().unwrap();
    let (mut read, mut sum) = (0u64, 0u64);
    let start = Instant::now();
    while let Some(data) = reader.read().unwrap() {
        sum += data[0] as u64;
        read += 1;
    }
    assert_eq!(read, n);
    std::hint::black_box(sum);
    Timing { append, read: start.elapsed() }
}

fn yaque(dir: &Path, n: u64) -> Timing {
    let (mut sender, mut receiver) = yaque::channel(dir).unwrap();
    let start = Instant::now();
    for _ in 0..n {
        futures_executor::block_on(sender.send(PAYLOAD)).unwrap();
    }
    let append = start.elapsed();
    let mut sum = 0u64;
    let start = Instant::now();
    for _ in 0..n {
        let guard = futures_executor::block_on(receiver.recv()).unwrap();
        sum += guard[0] as u64;
        guard.commit().unwrap();
    }
    std::hint::black_box(sum);
    Timing { append, read: start.elapsed() }
}

fn commitlog(dir: &Path, n: u64) -> Timing {
    use commitlog::message::MessageSet;
    let mut log = commitlog::CommitLog::new(commitlog::LogOptions::new(dir)).unwrap();
    let start = Instant::now();
    for _ in 0..n {
        log.append_msg(PAYLOAD).unwrap();
    }
    log.flush().unwrap();
    let append = start.elapsed();
    let (mut offset, mut read, mut sum) = (0, 0u64, 0u64);
    let start = Instant::now();
    while read < n {
        let messages = log.read(offset, commitlog::ReadLimit::max_bytes(1 << 20)).unwrap();
        for message in messages.iter() {
            sum += message.payload()[0] as u64;
            offset = message.offset() + 1;
            read += 1;
        }
    }
    std::hint::black_box(sum);
    Timing { append, read: start.elapsed() }
}

/// The raw limit: frames written straight into a mapped, fallocated file.
fn raw(dir: &Path, n: u64, resident: bool) -> Timing {
    const FRAME: usize = 24 + 64;
    let len = n as usize * FRAME;
    let file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(dir.join("raw")).unwrap();
    rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, len as u64).unwrap();
    let mut map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(&file) }.unwrap();
    if resident {
        map.fill(0); // fault every page in, writable, before timing
    }
    // As for every contender, the payload's length is not known to the
    // compiler (no journal knows it), and the CRC and the clock are the ones
    // backwater uses: the difference is the journal's own work.
    let payload: &[u8] = std::hint::black_box(&PAYLOAD);
    let start = Instant::now();
    for i in 0..n as usize {
        let frame = &mut map[i * FRAME..(i + 1) * FRAME];
        frame[8..16].copy_from_slice(&backwater::frame::now_ns().to_le_bytes());
        frame[4..8].copy_from_slice(&backwater::frame::crc(payload).to_le_bytes());
        frame[24..24 + payload.len()].copy_from_slice(payload);
        // SAFETY: 4-byte aligned (FRAME is a multiple of 8, the map is page-aligned), in bounds.
        let length = unsafe { &*(frame.as_mut_ptr() as *const AtomicU32) };
        length.store(FRAME as u32, Ordering::Release);
    }
    let append = start.elapsed();
    let (mut sum, mut offset) = (0u64, 0);
    let start = Instant::now();
    while offset < len {
        let frame = &map[offset..offset + FRAME];
        if crc32fast::hash(&frame[24..]) == u32::from_le_bytes(frame[4..8].try_into().unwrap()) {
            sum += frame[24] as u64;
        }
        offset += FRAME;
    }
    std::hint::black_box(sum);
    Timing { append, read: start.elapsed() }
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` and `--list` probes: nothing to run
    }
    let n: u64 = std::env::var("PEERS_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000_000);
    let rounds: usize = std::env::var("PEERS_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    type Contender = (&'static str, fn(&Path, u64) -> Timing);
    let contenders: [Contender; 10] = [
        ("backwater Publisher", |dir, n| backwater(dir, n, Setup { exclusive: false, prepared: false })),
        ("backwater ExclusivePublisher", |dir, n| backwater(dir, n, Setup { exclusive: true, prepared: false })),
        ("backwater Publisher, prepared", |dir, n| backwater(dir, n, Setup { exclusive: false, prepared: true })),
        ("backwater ExclusivePublisher, prepared", |dir, n| {
            backwater(dir, n, Setup { exclusive: true, prepared: true })
        }),
        ("backwater ExclusivePublisher, recycling ring", backwater_ring),
        ("khata-rs 0.1", khata),
        ("yaque 0.6", yaque),
        ("commitlog 0.2", commitlog),
        ("raw, fresh space", |dir, n| raw(dir, n, false)),
        ("raw, resident pages (hot-path limit)", |dir, n| raw(dir, n, true)),
    ];
    let mut results: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); contenders.len()];
    for round in 0..rounds {
        for (i, (name, run)) in contenders.iter().enumerate() {
            let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
            let timing = run(dir.path(), n);
            drop(dir);
            rustix::fs::sync();
            results[i].0.push(n as f64 / timing.append.as_secs_f64());
            results[i].1.push(n as f64 / timing.read.as_secs_f64());
            eprintln!(
                "round {round} {name}: append {:.2} M/s, read {:.2} M/s",
                results[i].0[round] / 1e6,
                results[i].1[round] / 1e6
            );
        }
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!("| contender | append (M rec/s) | read (M rec/s) |");
    println!("|---|---:|---:|");
    for ((name, _), (append, read)) in contenders.iter().zip(&results) {
        println!("| {name} | {:.2} | {:.2} |", median(append.clone()) / 1e6, median(read.clone()) / 1e6);
    }
    // Ratios are taken within each round (same machine state), then the median.
    let ratio = |ours: &[f64], theirs: &[f64]| median(ours.iter().zip(theirs).map(|(a, b)| a / b).collect());
    let index = |wanted: &str| contenders.iter().position(|(name, _)| *name == wanted).unwrap_or(0);
    let (khata, raw_resident) = (index("khata-rs 0.1"), index("raw, resident pages (hot-path limit)"));
    let peers = [khata, index("yaque 0.6"), index("commitlog 0.2")];
    let fastest_peer: Vec<f64> =
        (0..rounds).map(|round| peers.iter().map(|&p| results[p].0[round]).fold(0.0, f64::max)).collect();
    println!();
    println!(
        "| backwater | append ÷ fastest peer (target ≥ 2.5×) | append ÷ raw resident (≥ 0.8×) | read ÷ khata-rs (≥ 0.3×) |"
    );
    println!("|---|---:|---:|---:|");
    for (i, (name, _)) in contenders.iter().enumerate().filter(|(_, (name, _))| name.starts_with("backwater")) {
        println!(
            "| {} | {:.2}× | {:.2}× | {:.2}× |",
            name.trim_start_matches("backwater "),
            ratio(&results[i].0, &fastest_peer),
            ratio(&results[i].0, &results[raw_resident].0),
            ratio(&results[i].1, &results[khata].1),
        );
    }
    println!("\n{n} records of 64 B appended one by one then read back, {rounds} interleaved rounds, medians.");
}
