//! The compression figures of issue 15 (README, "Compression"):
//!
//! 1. the compression ratio of log records by segment size;
//! 2. records a journal takes before its first back-pressure, with the same
//!    budget and `WhenFull::Block`, without and with compression: on
//!    generated JSON log lines (`tools/logs.rs`) and on this machine's logs
//!    under /var/log replayed as records, one line per record. The
//!    publisher offers at 100,000 records/s, so the housekeeper alone
//!    compresses (it must keep up); the largest backlog of sealed raw
//!    segments waiting for it is reported;
//! 3. the publisher's append rate with compression off and on (compressing
//!    in the background all along), alternating rounds, medians;
//! 4. a consumer catching up through compressed segments: payload MB/s.
//!
//! How fast the compress step runs (MB/s of segment, records/s; one thread)
//! is in the first table.
//!
//! `cargo bench --bench compression` (about 3 minutes), `-- --short` for a
//! CI-sized run; `-- --logs DIR` replays another directory's logs;
//! `-- --ratios` stops after the first table, `-- --append-rate` runs the
//! third alone, `-- --back-pressure` the second and the fourth.

#[path = "../tools/logs.rs"]
mod logs;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use backwater::{Compression, Config, Journal, OfferError, WhenFull};

const ZSTD: Compression = Compression::Zstd { level: 3 };

struct Scale {
    segment: u64,
    budget: u64,
    rounds: usize,
    append_records: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let short = args.iter().any(|a| a == "--short");
    let logs_dir = args
        .iter()
        .position(|a| a == "--logs")
        .and_then(|at| args.get(at + 1))
        .map_or_else(|| PathBuf::from("/var/log"), PathBuf::from);
    let scale = if short {
        Scale { segment: 256 << 10, budget: 16 << 20, rounds: 3, append_records: 300_000 }
    } else {
        Scale { segment: 1 << 20, budget: 128 << 20, rounds: 9, append_records: 1_000_000 }
    };
    println!(
        "segment {} KiB, budget {} MiB, zstd level 3, compress watermark 0.50, {} cores",
        scale.segment >> 10,
        scale.budget >> 20,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    if args.iter().any(|a| a == "--append-rate") {
        return append_rates(&scale);
    }
    let only_back_pressure = args.iter().any(|a| a == "--back-pressure");
    if !only_back_pressure {
        ratio_by_segment_size(short);
    }
    if args.iter().any(|a| a == "--ratios") {
        return;
    }
    let mut generated = logs::LogLines::new(1);
    let corpus = LogCorpus::read(&logs_dir);
    println!("\n2. records before the first back-pressure (offered at 100,000/s)");
    let json = before_back_pressure(&scale, scale.segment, "JSON log lines", &mut |out| generated.line(out));
    if corpus.lines.is_empty() {
        println!("  {}: no readable text logs, skipped", logs_dir.display());
    } else {
        // Each segment is compressed on its own: one smaller than half the
        // corpus never holds a line twice, so the loop does not flatter it.
        let segment = (corpus.bytes / 2).next_power_of_two().div_euclid(2).clamp(64 << 10, scale.segment);
        println!(
            "  ({}: {} lines from {} files, {} KiB, replayed in a loop into {} KiB segments, {} MiB budget)",
            logs_dir.display(),
            corpus.lines.len(),
            corpus.files,
            corpus.bytes >> 10,
            segment >> 10,
            (scale.budget / scale.segment * segment) >> 20
        );
        let mut replay = corpus.replay();
        before_back_pressure(&scale, segment, "/var/log lines", &mut |out| replay(out));
    }
    if !only_back_pressure {
        append_rates(&scale);
    }
    if let Some(journal) = json {
        catch_up(&journal);
    }
}

/// Table 1: one journal per segment size and level; four segments
/// compressed, timed (one thread).
fn ratio_by_segment_size(short: bool) {
    println!("\n1. JSON log lines (tools/logs.rs): compression ratio and speed by segment size and zstd level");
    let sizes: &[u64] = if short { &[64 << 10, 1 << 20] } else { &[64 << 10, 256 << 10, 1 << 20, 4 << 20] };
    let levels: &[i32] = if short { &[3] } else { &[1, 3, 6, 9] };
    for &segment in sizes {
        let mut row = format!("  {:>5} KiB segments:", segment >> 10);
        let mut average = 0;
        for &level in levels {
            let dir = tempfile::tempdir().expect("tempdir");
            // Fill stays under 0.50 while appending: nothing compressed yet.
            let journal = open(dir.path(), segment, 64 * segment, Compression::Zstd { level }, 0.5);
            let publisher = journal.publisher();
            let mut lines = logs::LogLines::new(segment);
            let mut line = Vec::new();
            let (mut records, mut bytes) = (0u64, 0u64);
            while journal.tail_position() < 6 * segment {
                lines.line(&mut line);
                publisher.append(&line).expect("append");
                records += 1;
                bytes += line.len() as u64;
            }
            average = bytes / records.max(1);
            let mut limits = journal.limits();
            limits.watermarks.compress = 0.001;
            journal.set_limits(limits).expect("limits");
            let started = Instant::now();
            journal.compress_sealed().expect("compress");
            let elapsed = started.elapsed().as_secs_f64();
            let stats = journal.stats().compression;
            let per_record = journal.tail_position() as f64 / records as f64;
            row += &format!(
                "  level {level}: {:.2}x {:>4.0} MB/s {:>4.0}k rec/s",
                stats.raw_bytes_total as f64 / stats.file_bytes_total.max(1) as f64,
                stats.raw_bytes_total as f64 / elapsed / 1e6,
                stats.raw_bytes_total as f64 / per_record / elapsed / 1e3
            );
        }
        println!("{row}  (average record {average} B)");
    }
}

fn open(dir: &Path, segment: u64, budget: u64, compression: Compression, compress_at: f64) -> Journal {
    Journal::open(
        dir,
        Config::default()
            .segment_size(segment)
            .max_disk_bytes(budget)
            .min_free_disk(0)
            .when_full(WhenFull::Block)
            .compression(compression)
            .compress_at(compress_at),
    )
    .expect("open")
}

/// Table 2: offers records at 100,000/s until the first back-pressure,
/// with compression off then on. Returns the compressed journal (for 4).
fn before_back_pressure(
    scale: &Scale,
    segment: u64,
    what: &str,
    next: &mut dyn FnMut(&mut Vec<u8>),
) -> Option<Journal> {
    // The same number of segments in the budget whatever their size.
    let budget = scale.budget / scale.segment * segment;
    let mut taken = [0u64; 2];
    let mut kept = None;
    for (run, compression) in [Compression::None, ZSTD].into_iter().enumerate() {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let journal = open(&dir, segment, budget, compression, 0.5);
        let publisher = journal.publisher();
        let mut line = Vec::new();
        let started = Instant::now();
        let mut backlog = 0u64;
        let mut caught_up = None;
        let (mut records, mut payload) = (0u64, 0u64);
        next(&mut line);
        loop {
            // 100,000 records/s, in steps of 1 ms; no catching up after a stall.
            let due = (started.elapsed().as_secs_f64() * 100_000.0) as u64;
            if records >= due {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            match publisher.offer(&line) {
                Ok(_) => {
                    records += 1;
                    payload += line.len() as u64;
                    next(&mut line);
                }
                Err(OfferError::BackPressured { .. }) => break,
                Err(other) => panic!("{other}"),
            }
            if records % 10_000 == 0 {
                // Compression starts at 50 % with half the budget raw: the
                // backlog that counts is the one once that was worked off.
                let waiting = raw_sealed_backlog(&journal);
                if caught_up.is_none() && journal.stats().compression.compressed_total > 0 && waiting <= 2 {
                    caught_up = Some(started.elapsed());
                }
                if caught_up.is_some() {
                    backlog = backlog.max(waiting);
                }
            }
        }
        taken[run] = records;
        let stats = journal.stats();
        println!(
            "  {what:<16} {:<8} {:>10} records ({:>4} MiB of payload) in {:>5.1} s; disk {:.1} MiB of {} MiB{}",
            compression.name(),
            records,
            payload >> 20,
            started.elapsed().as_secs_f64(),
            stats.disk_bytes as f64 / (1 << 20) as f64,
            budget >> 20,
            if compression.is_on() {
                let waiting = match caught_up {
                    Some(at) => format!(
                        "the compressor caught up at {:.1} s, then at most {backlog} sealed raw segments waited",
                        at.as_secs_f64()
                    ),
                    None => format!(
                        "the compressor never caught up: {} sealed raw segments waiting at the end",
                        raw_sealed_backlog(&journal)
                    ),
                };
                format!(
                    "; {} segments compressed, {:.2}x; {waiting}",
                    stats.compression.compressed_total,
                    stats.compression.raw_bytes_total as f64 / stats.compression.file_bytes_total.max(1) as f64
                )
            } else {
                String::new()
            }
        );
        if compression.is_on() {
            kept = Some(journal);
        } else {
            drop(journal);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    println!("  {what:<16} ratio  {:.2}x as many records before back-pressure", taken[1] as f64 / taken[0] as f64);
    kept
}

/// Segments the compressor could take that are still raw: all but the
/// tail's and the five before it (which it leaves raw).
fn raw_sealed_backlog(journal: &Journal) -> u64 {
    let settled_below = (journal.tail_position() / journal.segment_size()).saturating_sub(5);
    let first = journal.first_position() / journal.segment_size();
    let mut raw = 0;
    for index in first..settled_below {
        let name = backwater::segment::file_name(index * journal.segment_size());
        raw += u64::from(journal.dir().join(name).exists());
    }
    raw
}

/// Table 3: unpaced appends of 300 B records, compression off and on
/// alternating; with it on, the compressor thread works all along.
fn append_rates(scale: &Scale) {
    println!(
        "\n3. publisher append rate, {} records of 300 B per round, medians of {}",
        scale.append_records, scale.rounds
    );
    let mut rates = [Vec::new(), Vec::new()];
    let mut compressed_during = 0;
    // Made beforehand: the rounds time the appends alone.
    let mut lines = logs::LogLines::new(3);
    let records: Vec<Vec<u8>> = (0..scale.append_records.min(200_000))
        .map(|_| {
            let mut record = Vec::new();
            lines.line(&mut record);
            record.resize(300, b' ');
            record
        })
        .collect();
    for _ in 0..scale.rounds {
        for (run, compression) in [Compression::None, ZSTD].into_iter().enumerate() {
            let dir = tempfile::tempdir().expect("tempdir");
            // Room for everything; compression from 5 % full, so that it runs
            // through most of the round.
            let budget = scale.append_records * 512 + 16 * scale.segment;
            let journal = open(dir.path(), scale.segment, budget, compression, 0.05);
            journal.prepare().expect("prepare");
            let publisher = journal.publisher();
            let started = Instant::now();
            for record in records.iter().cycle().take(scale.append_records as usize) {
                publisher.append(record).expect("append");
            }
            let elapsed = started.elapsed().as_secs_f64();
            rates[run].push(scale.append_records as f64 / elapsed);
            if compression.is_on() {
                compressed_during += journal.stats().compression.compressed_total;
            }
        }
    }
    println!(
        "  segments compressed during the 'on' rounds: {compressed_during} (the compressor yields while the \
         housekeeper has not prepared the next segment and fill is below the shed watermark)"
    );
    let spread = |rates: &[f64]| rates.iter().map(|r| format!("{:.0}k", r / 1e3)).collect::<Vec<_>>().join(" ");
    println!("  rounds, off: {}; on: {}", spread(&rates[0]), spread(&rates[1]));
    let off = median(&mut rates[0]);
    let on = median(&mut rates[1]);
    println!("  off {:.0} records/s, on {:.0} records/s: on is {:+.1}%", off, on, (on / off - 1.0) * 100.0);
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Table 4: a consumer reads everything from the start, most of it compressed.
fn catch_up(journal: &Journal) {
    let stats = journal.stats();
    let mut consumer = journal.anonymous_consumer();
    let (mut records, mut payload) = (0u64, 0u64);
    let started = Instant::now();
    loop {
        let read = consumer
            .poll(
                |record| {
                    payload += record.payload().len() as u64;
                    std::hint::black_box(record.payload());
                },
                4096,
            )
            .expect("poll");
        if read == 0 {
            break;
        }
        records += read as u64;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "\n4. consumer catching up: {records} records, {:.0} MiB of payload ({} of {} segments compressed) in {:.2} s: {:.0} MB/s of payload",
        payload as f64 / (1 << 20) as f64,
        stats.compression.segments,
        journal.segment_indexes().map_or(0, |s| s.len()),
        elapsed,
        payload as f64 / elapsed / 1e6
    );
    let _ = std::fs::remove_dir_all(journal.dir());
}

/// The text lines of every readable, uncompressed log file under a directory.
struct LogCorpus {
    lines: Vec<Vec<u8>>,
    files: usize,
    bytes: u64,
}

impl LogCorpus {
    fn read(dir: &Path) -> LogCorpus {
        let mut corpus = LogCorpus { lines: Vec::new(), files: 0, bytes: 0 };
        corpus.walk(dir, 0);
        corpus
    }

    fn walk(&mut self, dir: &Path, depth: usize) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if meta.is_dir() && depth < 4 {
                self.walk(&path, depth + 1);
            } else if meta.is_file() && meta.len() > 0 {
                let Ok(bytes) = std::fs::read(&path) else { continue };
                // Text only: no NUL bytes, valid UTF-8 (skips .gz, .xz, journald, wtmp).
                if bytes.contains(&0) || std::str::from_utf8(&bytes).is_err() {
                    continue;
                }
                self.files += 1;
                self.bytes += bytes.len() as u64;
                self.lines.extend(bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec));
            }
        }
    }

    /// Each call gives the next line, starting over at the end.
    fn replay(&self) -> impl FnMut(&mut Vec<u8>) + '_ {
        let mut at = 0;
        move |out: &mut Vec<u8>| {
            out.clear();
            out.extend_from_slice(&self.lines[at % self.lines.len()]);
            at += 1;
        }
    }
}
