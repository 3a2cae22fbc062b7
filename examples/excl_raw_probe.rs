//! The loops of the peers bench's "ExclusivePublisher append, prepared" and
//! "raw, resident pages" rows, one at a time, for `perf record`:
//! `excl_raw_probe raw|raw96|read|exclusive [N] [ROUNDS]` (`raw96`: the raw
//! loop at backwater's frame stride, 32-byte header + 64, to tell the cost of
//! the 8 more bytes per record from the journal's own work; `read`: the raw
//! reader, crc32fast alone, the read row's limit). Not callgrind: rustix's
//! vDSO lookup faults under valgrind.
//!
//! Each writes N records of 64 B over pages faulted in before the clock
//! starts (64 MiB segments, `segments_ahead` + `Journal::prepare`, as the
//! bench does; the raw loops are the bench's, `tools/raw.rs`). The timed
//! loops are the functions `raw::write_frames`, `raw::read_frames` and
//! `exclusive_loop`. Prints the rate by wall-clock time and by the thread's
//! CPU time (which a loaded machine disturbs less).
use std::time::Instant;

#[path = "../tools/raw.rs"]
mod raw;

const PAYLOAD: [u8; 64] = [0x5A; 64];
const SEGMENT: u64 = 64 << 20;
const FRAME: usize = 24 + 64;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or_else(|| "exclusive".into());
    let n: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(2_000_000);
    let rounds: u32 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1);
    for _ in 0..rounds {
        let dir = tempfile::tempdir()?;
        let seconds = match mode.as_str() {
            "raw" => raw::<FRAME>(dir.path(), n)?,
            "raw96" => raw::<96>(dir.path(), n)?,
            "read" => raw_read(dir.path(), n)?,
            "exclusive" => exclusive(dir.path(), n)?,
            other => return Err(format!("mode '{other}': use raw, raw96, read or exclusive").into()),
        };
        let (wall, cpu) = seconds;
        println!("{mode}: {:.2} M records/s, {:.2} M records/s of CPU", n as f64 / wall / 1e6, n as f64 / cpu / 1e6);
    }
    Ok(())
}

fn exclusive(dir: &std::path::Path, n: u64) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    use backwater::{Config, Journal};
    let config = Config::default().segment_size(SEGMENT).min_free_disk(0).segments_ahead((n * 96 / SEGMENT) as u32 + 1);
    let journal = Journal::open(dir, config)?;
    journal.prepare()?;
    let mut publisher = journal.exclusive_publisher()?;
    let (start, cpu) = (Instant::now(), cpu_seconds());
    exclusive_loop(&mut publisher, n)?;
    Ok((start.elapsed().as_secs_f64(), cpu_seconds() - cpu))
}

#[inline(never)]
fn exclusive_loop(publisher: &mut backwater::ExclusivePublisher, n: u64) -> backwater::Result<()> {
    for _ in 0..n {
        publisher.append(&PAYLOAD)?;
    }
    Ok(())
}

/// The raw reader (frames written by `raw`, read back with each CRC checked
/// by crc32fast alone): the limit for the read row.
fn raw_read(dir: &std::path::Path, n: u64) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let len = n as usize * FRAME;
    let mut map = raw::map(&dir.join("raw"), len, true)?;
    raw::write_frames::<FRAME>(&mut map, n as usize, std::hint::black_box(&PAYLOAD));
    let (start, cpu) = (Instant::now(), cpu_seconds());
    std::hint::black_box(raw::read_frames::<FRAME>(&map, len));
    Ok((start.elapsed().as_secs_f64(), cpu_seconds() - cpu))
}

fn raw<const STRIDE: usize>(dir: &std::path::Path, n: u64) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let mut map = raw::map(&dir.join("raw"), n as usize * STRIDE, true)?;
    let payload: &[u8] = std::hint::black_box(&PAYLOAD);
    let (start, cpu) = (Instant::now(), cpu_seconds());
    raw::write_frames::<STRIDE>(&mut map, n as usize, payload);
    Ok((start.elapsed().as_secs_f64(), cpu_seconds() - cpu))
}

/// The calling thread's CPU time in seconds.
fn cpu_seconds() -> f64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}
