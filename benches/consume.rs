//! Consume throughput: 64 B records read back with CRC verification, from a
//! journal filled beforehand (resident in the page cache, as a consumer
//! that keeps up sees it).

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

criterion_group!(benches, consume);
criterion_main!(benches);
