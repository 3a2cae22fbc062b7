//! Contention: 1 vs 2 publisher threads vs 2 publisher processes appending
//! 64 B records into one journal (a 2 GiB `DropOldest` ring of 64 MiB
//! segments), plus sustained appends across many rollovers (1 MiB segments),
//! so segment preparation is part of what is measured.

use std::time::{Duration, Instant};

use backwater::{Config, Journal, WhenFull};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn ring(dir: &std::path::Path, segment_size: u64) -> Journal {
    let config = Config::default()
        .segment_size(segment_size)
        .max_disk_bytes(2 << 30)
        .min_free_disk(0)
        .when_full(WhenFull::DropOldest);
    Journal::open(dir, config).expect("open journal")
}

fn threads(journal: &Journal, threads: u64, iters: u64) -> Duration {
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let publisher = journal.publisher();
            std::thread::spawn(move || {
                for _ in 0..iters / threads {
                    publisher.offer(&[0x42u8; 64]).expect("offer");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("publisher thread");
    }
    start.elapsed()
}

fn processes(dir: &std::path::Path, iters: u64) -> Duration {
    let start = Instant::now();
    let children: Vec<_> = (1..=2)
        .map(|id: u32| {
            std::process::Command::new(env!("CARGO_BIN_EXE_backwater-stress"))
                .args(["write", &dir.to_string_lossy(), "--id", &id.to_string(), "--count", &(iters / 2).to_string()])
                .args(["--report", &u64::MAX.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn writer")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().expect("wait").success());
    }
    start.elapsed()
}

fn contention(c: &mut Criterion) {
    let mut group = c.benchmark_group("contention");
    group.measurement_time(Duration::from_secs(5)).sample_size(10).throughput(Throughput::Elements(1));
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = ring(dir.path(), 64 << 20);
    group.bench_function("1 thread", |b| b.iter_custom(|iters| threads(&journal, 1, iters)));
    group.bench_function("2 threads", |b| b.iter_custom(|iters| threads(&journal, 2, iters)));
    drop(journal);
    group.bench_function("2 processes", |b| b.iter_custom(|iters| processes(dir.path(), iters)));
    let small = tempfile::tempdir().expect("tempdir");
    let journal = ring(small.path(), 1 << 20);
    group.bench_function("rollover every 1 MiB", |b| b.iter_custom(|iters| threads(&journal, 1, iters)));
    group.finish();
}

criterion_group!(benches, contention);
criterion_main!(benches);
