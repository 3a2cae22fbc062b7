//! What two threads appending through one shared `Publisher` can reach on
//! this machine, and where the cost goes (the performance issue's row "two
//! publisher threads ≥ 0.8× the aggregate of one"; docs/two-threads.md).
//!
//! Two parts, run interleaved in rounds, each ratio taken within a round and
//! then the median:
//!
//! - a model of the shared publisher's hot path over an anonymous, resident
//!   buffer: per record the claim (a relaxed load of the tail and the limit,
//!   one fetch-add on the shared tail word), backwater's CRC and clock, the
//!   header fields, the claim CAS, the 64 B copy and the commit CAS, and a
//!   plain store to a per-thread count line. Variants take one piece away at
//!   a time: the load before the fetch-add, the sharing of data lines
//!   between neighbouring frames of different threads (frames padded to two
//!   whole cache lines), the shared tail itself (a private tail and buffer
//!   per thread: the machine's parallel ceiling), and chunked claiming (one
//!   fetch-add for 16 frames' space, filled in order).
//! - the real journal: `Publisher::offer` of 64 B records from 1 and 2
//!   threads, and `Publisher::offer_batch` of 16 records per call (one claim
//!   per 16 frames: what chunked claiming would give), on prepared segments.
//!
//! Environment: `TWO_RECORDS` (default 2,000,000), `TWO_ROUNDS` (7),
//! `TWO_ONLY` (`model` or `journal`), `TWO_PIN` (0: threads not pinned to
//! CPUs 0 and 1), `TWO_PROFILE` (1 or 2: one run of
//! the journal's `offer` from that many threads, for `perf record`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use backwater::frame;

const PAYLOAD: [u8; 64] = [0x5A; 64];
const SEGMENT: u64 = 64 << 20;

#[repr(align(128))]
struct Line(AtomicU64);

/// One variant of the modelled hot path.
#[derive(Clone, Copy)]
struct Model {
    /// Load the tail (relaxed) before the fetch-add, as `claim_range` does.
    preload: bool,
    /// Ask for the tail's line for writing (x86 `prefetchw`) before that load.
    prefetch: bool,
    /// Bytes per frame: 96 (a 64 B record) or 128 (whole cache lines).
    stride: usize,
    /// Frames per fetch-add.
    chunk: usize,
    /// One tail and buffer per thread: nothing shared.
    private: bool,
    /// The shared tail, but each thread writes its frames (at the positions
    /// the tail gave it) into a buffer of its own: the tail's line alone.
    split: bool,
}

/// The buffer frames are written into, resident before the clock starts.
struct Buffer {
    words: Vec<AtomicU64>,
}

impl Buffer {
    fn new(bytes: usize) -> Buffer {
        let words: Vec<AtomicU64> = (0..bytes / 8).map(|_| AtomicU64::new(0)).collect();
        Buffer { words }
    }

    fn word(&self, offset: usize) -> &AtomicU64 {
        &self.words[offset / 8]
    }

    /// Plain stores into a range this thread claimed.
    fn write(&self, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= self.words.len() * 8);
        // SAFETY: in bounds (checked); the range belongs to this claim alone,
        // and nobody reads it during the run.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), (self.words.as_ptr() as *mut u8).add(offset), bytes.len())
        }
    }
}

const CLAIMED: u64 = 0xFFFF_FFA0;
const COMMITTED: u64 = 0x0000_0060;

/// One frame: CRC, clock and header fields, claim CAS, copy, commit CAS.
#[inline(always)]
fn write_frame(buffer: &Buffer, offset: usize, position: u64) {
    let crc = frame::crc(&PAYLOAD);
    let fields = frame::header_fields(position, frame::now_ns(), crc);
    buffer.write(offset + frame::POSITION_OFFSET, &fields);
    let word = buffer.word(offset);
    let claimed = word.compare_exchange(0, CLAIMED, Ordering::Release, Ordering::Relaxed).is_ok();
    buffer.write(offset + frame::HEADER_LEN, std::hint::black_box(&PAYLOAD[..]));
    let committed = word.compare_exchange(CLAIMED, COMMITTED, Ordering::Release, Ordering::Relaxed).is_ok();
    assert!(claimed && committed);
}

/// `prefetchw` of `word`'s line (a no-op elsewhere than on x86-64).
#[inline(always)]
fn prefetch_write(word: &AtomicU64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing architecturally and cannot fault.
    unsafe {
        std::arch::asm!("prefetchw [{0}]", in(reg) word.as_ptr(), options(nostack, readonly, preserves_flags))
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = word;
}

fn model(model: Model, threads: usize, n: u64) -> f64 {
    let per_thread = n as usize / threads;
    let bytes = per_thread * threads * model.stride + model.chunk * model.stride;
    let buffers: Vec<Buffer> = if model.private {
        (0..threads).map(|_| Buffer::new(bytes / threads + model.chunk * model.stride)).collect()
    } else if model.split {
        (0..threads).map(|_| Buffer::new(bytes)).collect()
    } else {
        vec![Buffer::new(bytes)]
    };
    let tails: Vec<Line> = (0..threads).map(|_| Line(AtomicU64::new(0))).collect();
    let limit = Line(AtomicU64::new(u64::MAX / 2));
    let counts: Vec<Line> = (0..threads).map(|_| Line(AtomicU64::new(0))).collect();
    let start = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let (buffer, tail) = match (model.private, model.split) {
                (true, _) => (&buffers[thread], &tails[thread].0),
                (false, true) => (&buffers[thread], &tails[0].0),
                (false, false) => (&buffers[0], &tails[0].0),
            };
            let (limit, count) = (&limit.0, &counts[thread].0);
            scope.spawn(move || {
                pin(thread);
                let stride = model.stride as u64;
                let mut left = per_thread;
                while left > 0 {
                    let frames = model.chunk.min(left);
                    let claim = stride * frames as u64;
                    let limit = limit.load(Ordering::Relaxed);
                    if model.prefetch {
                        prefetch_write(tail);
                    }
                    if model.preload && tail.load(Ordering::Relaxed) + claim > limit {
                        unreachable!();
                    }
                    let mut position = tail.fetch_add(claim, Ordering::AcqRel);
                    for _ in 0..frames {
                        write_frame(buffer, position as usize, position);
                        position += stride;
                    }
                    count.store(count.load(Ordering::Relaxed) + frames as u64, Ordering::Relaxed);
                    left -= frames;
                }
            });
        }
    });
    (per_thread * threads) as f64 / start.elapsed().as_secs_f64()
}

/// The real journal: `offer` (or `offer_batch` of `batch`) from `threads`
/// threads, on prepared 64 MiB segments.
fn journal(threads: usize, batch: usize, n: u64) -> f64 {
    use backwater::{Config, Journal};
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let config = Config::default().segment_size(SEGMENT).min_free_disk(0).segments_ahead((n * 96 / SEGMENT) as u32 + 1);
    let journal = Journal::open(dir.path(), config).unwrap();
    journal.prepare().unwrap();
    let per_thread = n as usize / threads;
    let records = vec![&PAYLOAD[..]; batch];
    let start = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let publisher = journal.publisher();
            let records = &records;
            scope.spawn(move || {
                pin(thread);
                let mut left = per_thread;
                while left > 0 {
                    if batch == 1 {
                        publisher.offer(&PAYLOAD).unwrap();
                        left -= 1;
                    } else {
                        let take = batch.min(left);
                        publisher.offer_batch(&records[..take]).unwrap();
                        left -= take;
                    }
                }
            });
        }
    });
    let rate = (per_thread * threads) as f64 / start.elapsed().as_secs_f64();
    drop(journal);
    drop(dir);
    rustix::fs::sync();
    rate
}

/// Pins the calling thread to CPU `index` (modulo the CPUs there are), so
/// that two threads run on two CPUs rather than wherever the scheduler of a
/// busy machine put them (unless `TWO_PIN=0`).
fn pin(index: usize) {
    if std::env::var("TWO_PIN").is_ok_and(|v| v == "0") {
        return;
    }
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let mut set = rustix::thread::CpuSet::new();
    set.set(index % cpus);
    let _ = rustix::thread::sched_setaffinity(None, &set);
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

type Row = (&'static str, Box<dyn Fn(u64) -> f64>);

fn rows(only: Option<&str>) -> Vec<Row> {
    let base = Model { preload: true, prefetch: false, stride: 96, chunk: 1, private: false, split: false };
    let mut rows: Vec<Row> = Vec::new();
    if only != Some("journal") {
        let variants = [
            ("model: as today", base),
            ("model: no load before the fetch-add", Model { preload: false, ..base }),
            ("model: prefetchw before the load", Model { prefetch: true, ..base }),
            ("model: frames on whole lines (128 B)", Model { stride: 128, ..base }),
            ("model: chunks of 4 frames per fetch-add", Model { chunk: 4, ..base }),
            ("model: chunks of 16 frames per fetch-add", Model { chunk: 16, ..base }),
            ("model: chunks of 64 frames per fetch-add", Model { chunk: 64, ..base }),
            ("model: shared tail, a buffer per thread", Model { split: true, ..base }),
            ("model: private tail and buffer per thread", Model { private: true, ..base }),
        ];
        for (name, variant) in variants {
            rows.push((name, Box::new(move |n| model(variant, 1, n))));
            rows.push((name, Box::new(move |n| model(variant, 2, n))));
        }
    }
    if only != Some("model") {
        rows.push(("journal: Publisher offer", Box::new(|n| journal(1, 1, n))));
        rows.push(("journal: Publisher offer", Box::new(|n| journal(2, 1, n))));
        rows.push(("journal: Publisher offer_batch of 16", Box::new(|n| journal(1, 16, n))));
        rows.push(("journal: Publisher offer_batch of 16", Box::new(|n| journal(2, 16, n))));
    }
    rows
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let n: u64 = std::env::var("TWO_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000_000);
    let rounds: usize = std::env::var("TWO_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(7);
    let only = std::env::var("TWO_ONLY").ok();
    let rows = rows(only.as_deref());
    // `TWO_PROFILE=1` or `=2`: only the journal's `offer` from that many
    // threads, once (for `perf record`).
    if let Some(threads) = std::env::var("TWO_PROFILE").ok().and_then(|v| v.parse::<usize>().ok()) {
        let rate = journal(threads, 1, n);
        println!("offer, {threads} thread(s): {:.2} M rec/s (loadavg {})", rate / 1e6, loadavg());
        return;
    }
    println!("loadavg at start: {}", loadavg());
    let mut results = vec![Vec::new(); rows.len()];
    for round in 0..rounds {
        // Pairs (1 thread, 2 threads) stay adjacent; the pair order rotates.
        let pairs = rows.len() / 2;
        for pair in (0..pairs).map(|k| (k + round) % pairs) {
            for i in [2 * pair, 2 * pair + 1] {
                results[i].push(rows[i].1(n));
            }
        }
        eprintln!("round {round} done, loadavg {}", loadavg());
    }
    println!("| variant | 1 thread (M rec/s) | 2 threads (M rec/s) | 2 ÷ 1 |");
    println!("|---|---:|---:|---:|");
    for pair in 0..rows.len() / 2 {
        let (one, two) = (&results[2 * pair], &results[2 * pair + 1]);
        let ratio = median(one.iter().zip(two).map(|(a, b)| b / a).collect());
        println!(
            "| {} | {:.1} | {:.1} | {:.2}× |",
            rows[2 * pair].0,
            median(one.clone()) / 1e6,
            median(two.clone()) / 1e6,
            ratio
        );
    }
    println!(
        "\n{n} records of 64 B per run, {rounds} rounds, medians (ratios within a round). loadavg at end: {}",
        loadavg()
    );
}
