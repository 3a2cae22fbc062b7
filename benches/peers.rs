//! backwater against its peers and the raw limit, in one run.
//!
//! The same work for every contender: N records of 64 B appended one by one,
//! then read back. Contenders run interleaved in rounds on fresh directories
//! (with `sync` in between, so nobody pays for another's writeback; each
//! round starts one contender further on), and the table reports medians
//! and ratios. `tools/bench-table` prints it for the
//! README. Environment: `PEERS_RECORDS` (default 2,000,000), `PEERS_ROUNDS` (5),
//! `PEERS_ONLY` (comma-separated parts of names: run only those contenders).
//!
//! - backwater: `append` (blocking, as a user writes it) and `offer` (never
//!   blocks) into 64 MiB segments, through an `ExclusivePublisher` (the only
//!   publisher: plain stores) and a `Publisher` (fetch-add claims, any number
//!   of threads and processes; also with 2 threads) and a
//!   `ReservingPublisher` per thread (one fetch-add per reservation of
//!   several records; 1 and 2 threads), on a fresh journal,
//!   "prepared" (`Config::segments_ahead` + `Journal::prepare`: every segment
//!   of the run created and faulted in before the clock starts, like the raw
//!   resident contender), and in the steady state of a full `DropOldest` ring
//!   that has wrapped (every segment written is a recycled one). Every row
//!   reads its records back with a consumer (CRC checked).
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
use std::time::{Duration, Instant};

#[path = "../tools/raw.rs"]
mod raw;

const PAYLOAD: [u8; 64] = [0x5A; 64];
const SEGMENT: u64 = 64 << 20;

struct Timing {
    append: Duration,
    read: Duration,
}

/// Which backwater publisher, which call, and where it writes.
#[derive(Clone, Copy)]
struct Setup {
    publisher: Kind,
    /// `append` (blocking, as a user writes it) or `offer` (never blocks).
    append: bool,
    space: Space,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Exclusive,
    Shared {
        threads: u64,
    },
    /// A `ReservingPublisher` per thread.
    Reserving {
        threads: u64,
    },
}

#[derive(Clone, Copy, PartialEq)]
enum Space {
    /// A fresh journal with the default `segments_ahead`.
    Fresh,
    /// Every segment of the run created and faulted in before the clock
    /// starts (`Config::segments_ahead` + `Journal::prepare`), like the raw
    /// resident contender.
    Prepared,
    /// A `DropOldest` ring at its budget that has already wrapped, so every
    /// segment written is a recycled one (the steady state).
    FullRing,
}

/// `n` records of `PAYLOAD` through `publisher` (any kind), by `append`
/// (blocking, as a user writes it) or `offer`.
macro_rules! publish {
    ($publisher:expr, $n:expr, $append:expr) => {
        for _ in 0..$n {
            if $append {
                $publisher.append(&PAYLOAD).map(drop).unwrap()
            } else {
                $publisher.offer(&PAYLOAD).map(drop).unwrap()
            }
        }
    };
}

fn backwater(dir: &Path, n: u64, setup: Setup) -> Timing {
    use backwater::{Config, Journal, Seek, WhenFull};
    let mut config = Config::default().segment_size(SEGMENT).min_free_disk(0);
    // Twice the timed bytes and two segments: after `DropOldest` trims the
    // ring to its resume mark, the timed records are all still there.
    let ring_budget = (n * 96 * 2).next_multiple_of(SEGMENT) + 2 * SEGMENT;
    match setup.space {
        Space::Fresh => {}
        Space::Prepared => config = config.segments_ahead((n * 96 / SEGMENT) as u32 + 1),
        Space::FullRing => config = config.max_disk_bytes(ring_budget).when_full(WhenFull::DropOldest),
    }
    let journal = Journal::open(dir, config).unwrap();
    match setup.space {
        Space::Fresh => {}
        Space::Prepared => journal.prepare().unwrap(),
        Space::FullRing => {
            let mut publisher = journal.exclusive_publisher().unwrap();
            while journal.tail_position() < ring_budget * 3 / 2 {
                publisher.offer(&PAYLOAD).unwrap();
            }
        }
    }
    let first = journal.tail_position();
    let start = Instant::now();
    match setup.publisher {
        Kind::Exclusive => {
            let mut publisher = journal.exclusive_publisher().unwrap();
            publish!(publisher, n, setup.append);
        }
        Kind::Shared { threads } => std::thread::scope(|scope| {
            for _ in 0..threads {
                let publisher = journal.publisher();
                scope.spawn(move || publish!(publisher, n / threads, setup.append));
            }
        }),
        Kind::Reserving { threads } => std::thread::scope(|scope| {
            for _ in 0..threads {
                let mut publisher = journal.publisher().reserving();
                scope.spawn(move || publish!(publisher, n / threads, setup.append));
            }
        }),
    }
    let append = start.elapsed();
    let mut consumer = journal.anonymous_consumer();
    consumer.seek(Seek::Position(first)).unwrap();
    Timing { append, read: read_back(&mut consumer, n / setup.threads() * setup.threads()) }
}

impl Setup {
    fn threads(&self) -> u64 {
        match self.publisher {
            Kind::Exclusive => 1,
            Kind::Shared { threads } | Kind::Reserving { threads } => threads,
        }
    }
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
    let mut map = raw::map(&dir.join("raw"), len, resident).unwrap();
    let payload: &[u8] = std::hint::black_box(&PAYLOAD);
    let start = Instant::now();
    raw::write_frames::<FRAME>(&mut map, n as usize, payload);
    let append = start.elapsed();
    let start = Instant::now();
    std::hint::black_box(raw::read_frames::<FRAME>(&map, len));
    Timing { append, read: start.elapsed() }
}

/// A backwater row of the table.
const fn ours(publisher: Kind, append: bool, space: Space) -> Setup {
    Setup { publisher, append, space }
}

const EXCLUSIVE: Kind = Kind::Exclusive;
const SHARED: Kind = Kind::Shared { threads: 1 };

type Contender = (&'static str, Box<dyn Fn(&Path, u64) -> Timing>);

fn contenders() -> Vec<Contender> {
    let backwater_rows = [
        ("backwater ExclusivePublisher append, fresh", ours(EXCLUSIVE, true, Space::Fresh)),
        ("backwater ExclusivePublisher append, prepared", ours(EXCLUSIVE, true, Space::Prepared)),
        ("backwater ExclusivePublisher offer, prepared", ours(EXCLUSIVE, false, Space::Prepared)),
        ("backwater ExclusivePublisher append, full ring", ours(EXCLUSIVE, true, Space::FullRing)),
        ("backwater Publisher append, fresh", ours(SHARED, true, Space::Fresh)),
        ("backwater Publisher append, prepared", ours(SHARED, true, Space::Prepared)),
        ("backwater Publisher offer, prepared", ours(SHARED, false, Space::Prepared)),
        ("backwater Publisher append, 2 threads, prepared", ours(Kind::Shared { threads: 2 }, true, Space::Prepared)),
        ("backwater ReservingPublisher append, prepared", ours(Kind::Reserving { threads: 1 }, true, Space::Prepared)),
        (RESERVING_TWO, ours(Kind::Reserving { threads: 2 }, true, Space::Prepared)),
    ];
    let mut all: Vec<Contender> = backwater_rows
        .into_iter()
        .map(|(name, setup)| (name, Box::new(move |dir: &Path, n| backwater(dir, n, setup)) as _))
        .collect();
    all.push(("khata-rs 0.1", Box::new(khata)));
    all.push(("yaque 0.6", Box::new(yaque)));
    all.push(("commitlog 0.2", Box::new(commitlog)));
    all.push(("raw, fresh space", Box::new(|dir: &Path, n| raw(dir, n, false))));
    all.push((RAW_RESIDENT, Box::new(|dir: &Path, n| raw(dir, n, true))));
    all
}

const RAW_RESIDENT: &str = "raw, resident pages (hot-path limit)";
const RESERVING_TWO: &str = "backwater ReservingPublisher append, 2 threads, prepared";

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` and `--list` probes: nothing to run
    }
    let n: u64 = std::env::var("PEERS_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000_000);
    let rounds: usize = std::env::var("PEERS_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    // `PEERS_ONLY=ring,raw`: only the contenders whose names contain one of these.
    let only = std::env::var("PEERS_ONLY").ok();
    let contenders: Vec<Contender> = contenders()
        .into_iter()
        .filter(|(name, _)| only.as_deref().is_none_or(|only| only.split(',').any(|part| name.contains(part))))
        .collect();
    let mut results: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); contenders.len()];
    for round in 0..rounds {
        // Each round starts one contender further on, so that no row always
        // runs right after the same one (the machine state a row inherits,
        // e.g. writeback of the last row's pages, moves round by round).
        for i in (0..contenders.len()).map(|k| (k + round) % contenders.len()) {
            let (name, run) = &contenders[i];
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
    println!("| contender | append (M rec/s) | read (M rec/s) |");
    println!("|---|---:|---:|");
    for ((name, _), (append, read)) in contenders.iter().zip(&results) {
        println!("| {name} | {:.2} | {:.2} |", median(append.clone()) / 1e6, median(read.clone()) / 1e6);
    }
    print_ratios(&contenders, &results, rounds);
    print_thread_ratios(&contenders, &results);
    println!(
        "\n{n} records of 64 B appended one by one then read back (CRC checked), {rounds} interleaved rounds, medians."
    );
}

/// The ratio table: taken within each round (same machine state), then the median.
fn print_ratios(contenders: &[Contender], results: &[(Vec<f64>, Vec<f64>)], rounds: usize) {
    let ratio = |ours: &[f64], theirs: &[f64]| median(ours.iter().zip(theirs).map(|(a, b)| a / b).collect());
    let index = |wanted: &str| contenders.iter().position(|(name, _)| *name == wanted);
    let (Some(khata), Some(raw_resident)) = (index("khata-rs 0.1"), index(RAW_RESIDENT)) else {
        return; // a filtered run: no reference to divide by
    };
    let peers: Vec<usize> = ["khata-rs 0.1", "yaque 0.6", "commitlog 0.2"].iter().filter_map(|p| index(p)).collect();
    let fastest_peer: Vec<f64> =
        (0..rounds).map(|round| peers.iter().map(|&p| results[p].0[round]).fold(0.0, f64::max)).collect();
    println!();
    println!("| backwater | append ÷ fastest peer | append ÷ raw resident | read ÷ khata-rs | target |");
    println!("|---|---:|---:|---:|---|");
    for (i, (name, _)) in contenders.iter().enumerate().filter(|(_, (name, _))| name.starts_with("backwater")) {
        println!(
            "| {} | {:.2}× | {:.2}× | {:.2}× | {} |",
            name.trim_start_matches("backwater "),
            ratio(&results[i].0, &fastest_peer),
            ratio(&results[i].0, &results[raw_resident].0),
            ratio(&results[i].1, &results[khata].1),
            target(name),
        );
    }
}

/// Two threads ÷ one, each ratio taken within a round (printed also by a
/// filtered run that has both rows).
fn print_thread_ratios(contenders: &[Contender], results: &[(Vec<f64>, Vec<f64>)]) {
    let ratio = |ours: &[f64], theirs: &[f64]| median(ours.iter().zip(theirs).map(|(a, b)| a / b).collect());
    let index = |wanted: &str| contenders.iter().position(|(name, _)| *name == wanted);
    let shared = index("backwater Publisher append, prepared");
    if let (Some(one), Some(two)) = (shared, index("backwater Publisher append, 2 threads, prepared")) {
        println!(
            "\n2 publisher threads ÷ 1 (aggregate, prepared): {:.2}× (target ≥ 0.8×)",
            ratio(&results[two].0, &results[one].0)
        );
    }
    let reserving = index("backwater ReservingPublisher append, prepared");
    if let (Some(one), Some(two)) = (reserving, index(RESERVING_TWO)) {
        println!(
            "2 threads with a ReservingPublisher each ÷ 1 (aggregate, prepared): {:.2}× (target ≥ 0.8×)",
            ratio(&results[two].0, &results[one].0)
        );
    }
    if let (Some(one), Some(two)) = (shared, index(RESERVING_TWO)) {
        println!(
            "2 threads with a ReservingPublisher each ÷ 1 thread's Publisher (aggregate, prepared): {:.2}×",
            ratio(&results[two].0, &results[one].0)
        );
    }
}

/// The acceptance for a row, as the table prints it.
fn target(name: &str) -> &'static str {
    match name.trim_start_matches("backwater ") {
        "ExclusivePublisher append, fresh" => "≥ 2.5× fastest peer",
        "ExclusivePublisher append, prepared" => "≥ 0.8× raw",
        "ExclusivePublisher append, full ring" => "≥ 0.7× raw",
        "Publisher append, fresh" => "≥ 1.5× fastest peer",
        "Publisher append, prepared" => "≥ 0.5× raw; read ≥ 0.4× khata-rs or ≥ 100 M/s",
        _ => "",
    }
}
