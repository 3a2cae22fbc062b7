//! The two loops of the peers bench's "ExclusivePublisher append, prepared"
//! and "raw, resident pages" rows, one at a time, for `perf record`:
//! `excl_raw_probe raw|raw96|exclusive [N] [ROUNDS]` (`raw96`: the raw loop
//! at backwater's frame stride, 32-byte header + 64, to tell the cost of the
//! 8 more bytes per record from the journal's own work). Not callgrind:
//! rustix's vDSO lookup faults under valgrind.
//!
//! Both write N records of 64 B over pages faulted in before the clock
//! starts (64 MiB segments, `segments_ahead` + `Journal::prepare`, as the
//! bench does; the raw loop is the bench's). The timed loops are the
//! functions `raw_loop` and `exclusive_loop`. Prints the rate by wall-clock
//! time and by the thread's CPU time (which a loaded machine disturbs less).
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

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
            "exclusive" => exclusive(dir.path(), n)?,
            other => return Err(format!("mode '{other}': use raw, raw96 or exclusive").into()),
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

fn raw<const STRIDE: usize>(dir: &std::path::Path, n: u64) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let len = n as usize * STRIDE;
    let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(dir.join("raw"))?;
    rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, len as u64)?;
    // SAFETY: a file of our own, nobody else maps or truncates it.
    let mut map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(&file) }?;
    map.fill(0);
    let payload: &[u8] = std::hint::black_box(&PAYLOAD);
    let (start, cpu) = (Instant::now(), cpu_seconds());
    raw_loop::<STRIDE>(&mut map, n as usize, payload);
    Ok((start.elapsed().as_secs_f64(), cpu_seconds() - cpu))
}

#[inline(never)]
fn raw_loop<const STRIDE: usize>(map: &mut [u8], n: usize, payload: &[u8]) {
    for i in 0..n {
        let frame = &mut map[i * STRIDE..(i + 1) * STRIDE];
        frame[8..16].copy_from_slice(&backwater::frame::now_ns().to_le_bytes());
        frame[4..8].copy_from_slice(&backwater::frame::crc(payload).to_le_bytes());
        frame[24..24 + payload.len()].copy_from_slice(payload);
        // SAFETY: 4-byte aligned (FRAME is a multiple of 8, the map is page-aligned), in bounds.
        let length = unsafe { &*(frame.as_mut_ptr() as *const AtomicU32) };
        length.store(STRIDE as u32, Ordering::Release);
    }
}

/// The calling thread's CPU time in seconds.
fn cpu_seconds() -> f64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}
