//! Append throughput, one publisher: `offer` at 64 B / 1 KiB / 4 KiB, the
//! same 64 B through an `ExclusivePublisher`, the blocking `append` beside
//! `offer` for both publishers, a batch of 16 × 64 B, and
//! zero-copy claim/commit. Runs long enough to cross many
//! segment rollovers: the journal keeps a 2 GiB ring (`DropOldest`), so
//! preparing and deleting segments is part of what is measured.

use std::time::{Duration, Instant};

use backwater::{Config, Journal, WhenFull};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn journal(dir: &std::path::Path) -> Journal {
    let config = Config::default()
        .segment_size(64 << 20)
        .max_disk_bytes(2 << 30)
        .min_free_disk(0)
        .when_full(WhenFull::DropOldest);
    Journal::open(dir, config).expect("open journal")
}

/// How long `iters` calls of `offer` (or `append`) take.
fn timed<E: std::fmt::Debug>(iters: u64, mut offer: impl FnMut() -> Result<u64, E>) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        offer().expect("offer");
    }
    start.elapsed()
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group.measurement_time(Duration::from_secs(4));
    for size in [64usize, 1024, 4096] {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = journal(dir.path());
        let publisher = journal.publisher();
        let payload = vec![0x42u8; size];
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("offer/{size}B"), |b| {
            b.iter_custom(|iters| timed(iters, || publisher.offer(&payload)))
        });
    }
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = journal(dir.path());
        let mut publisher = journal.exclusive_publisher().expect("exclusive publisher");
        let payload = [0x42u8; 64];
        group.bench_function("exclusive_offer/64B", |b| {
            b.iter_custom(|iters| timed(iters, || publisher.offer(&payload)))
        });
        // The blocking form must cost what `offer` costs when nothing waits.
        group.bench_function("exclusive_append/64B", |b| {
            b.iter_custom(|iters| timed(iters, || publisher.append(&payload)))
        });
    }
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = journal(dir.path());
        let publisher = journal.publisher();
        let payload = [0x42u8; 64];
        group.bench_function("append/64B", |b| b.iter_custom(|iters| timed(iters, || publisher.append(&payload))));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = journal(dir.path());
    let publisher = journal.publisher();
    let batch = vec![[0x42u8; 64]; 16];
    group.throughput(Throughput::Elements(16));
    group.bench_function("offer_batch/16x64B", |b| {
        b.iter(|| publisher.offer_batch(&batch).expect("batch"));
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("claim_commit/64B", |b| {
        b.iter(|| {
            let mut claim = publisher.claim(64).expect("claim");
            claim.payload_mut().fill(0x42);
            claim.commit().expect("commit")
        });
    });
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
