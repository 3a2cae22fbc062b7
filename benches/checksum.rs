//! The frame checksum: crc32fast (CRC-32/ISO-HDLC; PCLMULQDQ from 16 B,
//! VPCLMULQDQ for long inputs) against other crates computing the same
//! CRC-32/ISO-HDLC (crc-fast, zlib-rs, crc's slice-by-16 tables), any of
//! which could replace it without changing the format, and against hardware
//! CRC-32C (the SSE4.2 `crc32` instruction, through the `crc32c` crate: a
//! different polynomial, a format change), over the payload sizes records
//! have. Run: `cargo bench --bench checksum`.
//!
//! The `keyed` group is the CRC of a keyed record's body as `frame::crc_of`
//! computes it: three parts, the 2-byte key length, a 16-byte key and the
//! payload, one after the other.
//!
//! On a shared, loaded machine criterion's rows, measured one after another,
//! drift with the load; `CHECKSUM_INTERLEAVED=rounds cargo bench --bench
//! checksum` instead times short batches of every contender in turn, round
//! after round, and prints per-length medians (ns per call) and the median of
//! the per-round ratios to crc32fast (same moment, same load).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use std::hint::black_box;

const LENGTHS: [usize; 7] = [16, 32, 64, 128, 256, 1024, 4096];

fn bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

fn checksum(c: &mut Criterion) {
    let mut group = c.benchmark_group("checksum");
    // A crc32fast hasher made once and cloned per record (what `frame::crc_of`
    // did before crc-fast), and a crc-fast digest copied likewise.
    let crc32fast_prototype = crc32fast::Hasher::new();
    let crc_fast_prototype = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32IsoHdlc);
    for len in LENGTHS {
        let payload = bytes(len);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("crc32fast::hash", len), &payload, |b, p| {
            b.iter(|| crc32fast::hash(black_box(p)))
        });
        group.bench_with_input(BenchmarkId::new("crc32fast cloned Hasher", len), &payload, |b, p| {
            b.iter(|| {
                let mut hasher = crc32fast_prototype.clone();
                hasher.update(black_box(p));
                hasher.finalize()
            })
        });
        group.bench_with_input(BenchmarkId::new("crc_fast::crc32_iso_hdlc", len), &payload, |b, p| {
            b.iter(|| crc_fast::crc32_iso_hdlc(black_box(p)))
        });
        group.bench_with_input(BenchmarkId::new("crc_fast::checksum(Crc32IsoHdlc)", len), &payload, |b, p| {
            b.iter(|| crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32IsoHdlc, black_box(p)) as u32)
        });
        group.bench_with_input(BenchmarkId::new("crc_fast copied Digest", len), &payload, |b, p| {
            b.iter(|| {
                let mut digest = crc_fast_prototype;
                digest.update(black_box(p));
                digest.finalize() as u32
            })
        });
        group.bench_with_input(BenchmarkId::new("zlib_rs::crc32::crc32", len), &payload, |b, p| {
            b.iter(|| zlib_rs::crc32::crc32(0, black_box(p)))
        });
        group.bench_with_input(BenchmarkId::new("crc (Table<16>)", len), &payload, |b, p| {
            b.iter(|| CRC_SLICE16.checksum(black_box(p)))
        });
        group.bench_with_input(BenchmarkId::new("crc32c (SSE4.2, other polynomial)", len), &payload, |b, p| {
            b.iter(|| crc32c::crc32c(black_box(p)))
        });
        group.bench_with_input(BenchmarkId::new("backwater::frame::crc", len), &payload, |b, p| {
            b.iter(|| backwater::frame::crc(black_box(p)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("keyed");
    let key_len = 16u16.to_le_bytes();
    let key = bytes(16);
    for len in LENGTHS {
        let payload = bytes(len);
        group.throughput(Throughput::Bytes((2 + 16 + len) as u64));
        group.bench_with_input(BenchmarkId::new("crc32fast cloned Hasher, 3 parts", len), &payload, |b, p| {
            b.iter(|| {
                let mut hasher = crc32fast_prototype.clone();
                for part in [&key_len[..], &key, p] {
                    hasher.update(black_box(part));
                }
                hasher.finalize()
            })
        });
        group.bench_with_input(BenchmarkId::new("crc_fast copied Digest, 3 parts", len), &payload, |b, p| {
            b.iter(|| {
                let mut digest = crc_fast_prototype;
                for part in [&key_len[..], &key, p] {
                    digest.update(black_box(part));
                }
                digest.finalize() as u32
            })
        });
        group.bench_with_input(BenchmarkId::new("zlib_rs::crc32::crc32, 3 parts", len), &payload, |b, p| {
            b.iter(|| {
                [&key_len[..], &key, p].into_iter().fold(0, |crc, part| zlib_rs::crc32::crc32(crc, black_box(part)))
            })
        });
        group.bench_with_input(BenchmarkId::new("backwater::frame::crc_of", len), &payload, |b, p| {
            b.iter(|| backwater::frame::crc_of(black_box(&[&key_len[..], &key, p])))
        });
    }
    group.finish();
}

/// One contender of the interleaved run: a name and a CRC of three parts
/// (empty parts are skipped).
type Contender = (&'static str, fn(&[&[u8]]) -> u32);

/// The index in [`interleaved_contenders`] of hardware CRC-32C (the `crc32c`
/// crate): another polynomial, so another value; the checksum a format
/// change could switch the frames to.
const CRC32C: usize = 6;

/// The `crc` crate's slice-by-16 tables for the same CRC-32/ISO-HDLC.
const CRC_SLICE16: crc::Crc<u32, crc::Table<16>> = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISO_HDLC);

/// The contenders of the interleaved run: CRC-32/ISO-HDLC, the frames'
/// checksum, but for the last, [`CRC32C`].
fn interleaved_contenders() -> [Contender; 7] {
    [
        ("crc32fast cloned Hasher", |parts| {
            static PROTOTYPE: std::sync::LazyLock<crc32fast::Hasher> = std::sync::LazyLock::new(crc32fast::Hasher::new);
            let mut hasher = PROTOTYPE.clone();
            for part in parts {
                hasher.update(part);
            }
            hasher.finalize()
        }),
        ("crc_fast::crc32_iso_hdlc (1 part)", |parts| crc_fast::crc32_iso_hdlc(parts[0])),
        ("crc_fast Digest", |parts| {
            let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32IsoHdlc);
            for part in parts {
                digest.update(part);
            }
            digest.finalize() as u32
        }),
        ("zlib_rs::crc32::crc32", |parts| parts.iter().fold(0, |crc, part| zlib_rs::crc32::crc32(crc, part))),
        ("crc (Table<16>)", |parts| {
            let mut digest = CRC_SLICE16.digest();
            for part in parts {
                digest.update(part);
            }
            digest.finalize()
        }),
        ("backwater::frame::crc_of", backwater::frame::crc_of),
        ("crc32c (SSE4.2, other polynomial)", |parts| {
            parts.iter().fold(0, |crc, part| crc32c::crc32c_append(crc, part))
        }),
    ]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `CHECKSUM_INTERLEAVED=rounds`: every contender, length and part layout
/// timed in turn within each round (the order rotating round by round).
fn interleaved(rounds: usize) {
    const CALLS: u32 = 100_000;
    let contenders = interleaved_contenders();
    let key_len = 16u16.to_le_bytes();
    let key = bytes(16);
    let payloads: Vec<Vec<u8>> = LENGTHS.iter().map(|&len| bytes(len)).collect();
    // (keyed, length index, contender index) -> ns per call, one per round.
    let cases: Vec<(bool, usize, usize)> = [false, true]
        .into_iter()
        .flat_map(|keyed| (0..LENGTHS.len()).flat_map(move |l| (0..contenders.len()).map(move |c| (keyed, l, c))))
        .filter(|&(keyed, _, c)| !(keyed && c == 1))
        .collect();
    for &(keyed, l, c) in &cases {
        let parts: Vec<&[u8]> = if keyed { vec![&key_len, &key, &payloads[l]] } else { vec![&payloads[l]] };
        let expected = if c == CRC32C { crc32c::crc32c(&parts.concat()) } else { (contenders[0].1)(&parts) };
        assert_eq!((contenders[c].1)(&parts), expected, "{} differs", contenders[c].0);
    }
    let mut times = vec![Vec::new(); cases.len()];
    for round in 0..rounds {
        for k in 0..cases.len() {
            let i = (k + round) % cases.len();
            let (keyed, l, c) = cases[i];
            let payload = &payloads[l][..];
            let parts: Vec<&[u8]> = if keyed { vec![&key_len, &key, payload] } else { vec![payload] };
            let run = contenders[c].1;
            let start = std::time::Instant::now();
            for _ in 0..CALLS {
                black_box(run(black_box(&parts)));
            }
            times[i].push(start.elapsed().as_nanos() as f64 / f64::from(CALLS));
        }
    }
    println!("| body | contender | {} |", LENGTHS.map(|l| format!("{l} B")).join(" | "));
    println!("|---|---|{}", "---:|".repeat(LENGTHS.len()));
    for keyed in [false, true] {
        for (c, (name, _)) in contenders.iter().enumerate() {
            if keyed && c == 1 {
                continue;
            }
            let cells: Vec<String> = (0..LENGTHS.len())
                .map(|l| {
                    let index = |c| cases.iter().position(|&case| case == (keyed, l, c)).unwrap();
                    let (ours, base) = (&times[index(c)], &times[index(0)]);
                    let ratio = median(ours.iter().zip(base).map(|(a, b)| a / b).collect());
                    format!("{:.1} ns ({ratio:.2}×)", median(ours.clone()))
                })
                .collect();
            let body = if keyed { "2 + 16 B key + payload" } else { "payload" };
            println!("| {body} | {name} | {} |", cells.join(" | "));
        }
    }
    println!(
        "\nns per call, median of {rounds} interleaved rounds of {CALLS} calls; (×) the median per-round ratio to crc32fast cloned Hasher."
    );
}

criterion_group!(benches, checksum);

fn main() {
    if let Some(rounds) = std::env::var("CHECKSUM_INTERLEAVED").ok().and_then(|v| v.parse().ok()) {
        if !std::env::args().any(|a| a == "--list" || a == "--test") {
            interleaved(rounds);
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
