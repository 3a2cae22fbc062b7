//! Publish → consume latency: a publisher thread offers 64 B records at a
//! steady pace, each carrying its send time; a spinning consumer thread reads
//! them and records the delay in an HdrHistogram. Prints p50/p99/p99.9/max.
//! Environment: `LATENCY_RECORDS` (default 1,000,000), `LATENCY_GAP_NS`
//! (default 1000: one record per microsecond), `LATENCY_EXCLUSIVE` (set: an
//! `ExclusivePublisher`), `LATENCY_PREPARED` (set: every segment of the run
//! faulted in before it starts), `LATENCY_PIN` (set: the publisher on CPU 0,
//! the consumer on CPU 1, so neither migrates or shares a core with the other;
//! the housekeeper and everything else may still run on either).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use backwater::{Config, ExclusivePublisher, Journal, Publisher};

enum Appender {
    Shared(Publisher),
    Exclusive(ExclusivePublisher),
}

impl Appender {
    fn offer(&mut self, payload: &[u8]) {
        match self {
            Appender::Shared(publisher) => publisher.offer(payload).unwrap(),
            Appender::Exclusive(publisher) => publisher.offer(payload).unwrap(),
        };
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let records: u64 = std::env::var("LATENCY_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let gap = Duration::from_nanos(std::env::var("LATENCY_GAP_NS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000));
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default().segment_size(64 << 20).min_free_disk(0);
    let prepared = std::env::var_os("LATENCY_PREPARED").is_some();
    if prepared {
        config = config.segments_ahead(((records * 96) >> 26) as u32 + 1);
    }
    let journal = Journal::open(dir.path(), config).unwrap();
    if prepared {
        journal.prepare().unwrap();
    }
    let base = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let mut consumer = journal.anonymous_consumer();
    let reader_done = Arc::clone(&done);
    let pin = std::env::var_os("LATENCY_PIN").is_some();
    let reader = std::thread::spawn(move || {
        if pin {
            pin_to(1);
        }
        let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
        let mut seen = 0;
        while seen < records && !reader_done.load(Ordering::Relaxed) {
            seen += consumer
                .poll(
                    |r| {
                        let sent = u64::from_le_bytes(r.payload()[..8].try_into().unwrap());
                        let now = base.elapsed().as_nanos() as u64;
                        histogram.saturating_record(now.saturating_sub(sent).max(1));
                    },
                    256,
                )
                .unwrap() as u64;
        }
        histogram
    });
    let exclusive = std::env::var_os("LATENCY_EXCLUSIVE").is_some();
    let mut appender = if exclusive {
        Appender::Exclusive(journal.exclusive_publisher().unwrap())
    } else {
        Appender::Shared(journal.publisher())
    };
    if pin {
        pin_to(0);
    }
    let mut payload = [0u8; 64];
    let mut next = Instant::now();
    for _ in 0..records {
        while Instant::now() < next {
            std::hint::spin_loop();
        }
        next += gap;
        payload[..8].copy_from_slice(&(base.elapsed().as_nanos() as u64).to_le_bytes());
        appender.offer(&payload);
    }
    let histogram = reader.join().unwrap();
    done.store(true, Ordering::Relaxed);
    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "latency publish -> consume ({records} x 64 B, one every {gap:?}, spinning consumer, \
         exclusive {exclusive}, prepared {prepared}, pinned {pin}): \
         p50 {:.2} us  p99 {:.2} us  p99.9 {:.2} us  max {:.2} us",
        us(0.5),
        us(0.99),
        us(0.999),
        histogram.max() as f64 / 1000.0
    );
}

/// Runs the calling thread on `cpu` only (best effort: a machine with one
/// CPU, or a cgroup without it, keeps the default).
fn pin_to(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    if let Err(error) = rustix::thread::sched_setaffinity(None, &set) {
        eprintln!("not pinned to CPU {cpu}: {error}");
    }
}
