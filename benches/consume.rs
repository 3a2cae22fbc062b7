//! Consume throughput: 64 B records read back with CRC verification, from a
//! journal filled beforehand (resident in the page cache, as a consumer
//! that keeps up sees it). Also keyed 64 B records (10,000 keys) read with
//! `poll` and with `poll_conflated` in windows of 100,000: what a skipped
//! record costs next to a plain poll's record.

use std::time::{Duration, Instant};

use backwater::{Config, Journal, Seek};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const RECORDS: u64 = 2_000_000;

fn consume(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = Journal::open(dir.path(), Config::default().segment_size(64 << 20).min_free_disk(0)).expect("open");
    let publisher = journal.publisher();
    for i in 0..RECORDS {
        publisher.append(&[i as u8; 64]).expect("append");
    }
    let mut consumer = journal.anonymous_consumer();
    let mut group = c.benchmark_group("consume");
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(1));
    group.bench_function("poll/64B", |b| {
        b.iter_custom(|iters| {
            let mut left = iters;
            let mut sum = 0u64;
            let start = Instant::now();
            while left > 0 {
                let read = consumer.poll(|r| sum += r.payload()[0] as u64, left.min(1024) as usize).expect("poll");
                if read == 0 {
                    consumer.seek(Seek::Start).expect("seek");
                }
                left -= read as u64;
            }
            std::hint::black_box(sum);
            start.elapsed()
        })
    });
    group.finish();
}

/// A journal of `RECORDS` keyed 64 B payloads over 10,000 keys.
fn keyed_journal(dir: &std::path::Path) -> Journal {
    let journal = Journal::open(dir, Config::default().segment_size(64 << 20).min_free_disk(0)).expect("open");
    let publisher = journal.publisher();
    for i in 0..RECORDS {
        let key = format!("instrument-{:05}", (i * 7919) % 10_000);
        publisher.append_keyed(key.as_bytes(), &[i as u8; 64]).expect("append");
    }
    journal
}

/// Reads `iters` records with `read(consumer, limit) -> records read`,
/// starting over at the end.
fn read_records(
    consumer: &mut backwater::Consumer,
    iters: u64,
    limit: usize,
    mut read: impl FnMut(&mut backwater::Consumer, usize) -> usize,
) -> Duration {
    let mut left = iters;
    let start = Instant::now();
    while left > 0 {
        let got = read(consumer, left.min(limit as u64) as usize);
        if got == 0 {
            consumer.seek(Seek::Start).expect("seek");
        }
        left -= got as u64;
    }
    start.elapsed()
}

fn consume_keyed(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = keyed_journal(dir.path());
    let mut consumer = journal.anonymous_consumer();
    let mut group = c.benchmark_group("consume");
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(1));
    let mut sum = 0u64;
    group.bench_function("poll/64B keyed", |b| {
        b.iter_custom(|iters| {
            read_records(&mut consumer, iters, 1024, |consumer, limit| {
                consumer.poll(|r| sum += r.payload()[0] as u64, limit).expect("poll")
            })
        })
    });
    group.bench_function("poll_conflated/64B keyed, 10k keys, window 100k", |b| {
        b.iter_custom(|iters| {
            read_records(&mut consumer, iters, 100_000, |consumer, limit| {
                let counts = consumer.poll_conflated_counts(|r| sum += r.payload()[0] as u64, limit).expect("poll");
                counts.read
            })
        })
    });
    std::hint::black_box(sum);
    group.finish();
}

criterion_group!(benches, consume, consume_keyed);
criterion_main!(benches);
