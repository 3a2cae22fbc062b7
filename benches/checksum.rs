//! The frame checksum: crc32fast (CRC-32, table or PCLMULQDQ) against
//! hardware CRC-32C (the SSE4.2 `crc32` instruction, through the `crc32c`
//! crate), over the payload sizes records have. Run:
//! `cargo bench --bench checksum`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn checksum(c: &mut Criterion) {
    let mut group = c.benchmark_group("checksum");
    for len in [64usize, 256, 1024, 4096] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("crc32fast", len), &payload, |b, p| {
            b.iter(|| crc32fast::hash(std::hint::black_box(p)))
        });
        group.bench_with_input(BenchmarkId::new("crc32c (SSE4.2)", len), &payload, |b, p| {
            b.iter(|| crc32c::crc32c(std::hint::black_box(p)))
        });
        group.bench_with_input(BenchmarkId::new("backwater::frame::crc", len), &payload, |b, p| {
            b.iter(|| backwater::frame::crc(std::hint::black_box(p)))
        });
    }
    group.finish();
}

criterion_group!(benches, checksum);
criterion_main!(benches);
