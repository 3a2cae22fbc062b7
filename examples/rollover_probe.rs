//! Probe: offers 64 B records into 1 MiB segments (a rollover every ~11k
//! records) in a 64 MiB DropOldest ring; prints records/s. For profiling the
//! cost of segment creation, preparation and deletion.
use backwater::{Config, Journal, WhenFull};
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let config = Config::default()
        .segment_size(1 << 20)
        .max_disk_bytes(64 << 20)
        .min_free_disk(0)
        .when_full(WhenFull::DropOldest);
    let journal = Journal::open(dir.path(), config)?;
    let publisher = journal.publisher();
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2_000_000);
    let start = std::time::Instant::now();
    for _ in 0..n {
        publisher.offer(&[7u8; 64])?;
    }
    let elapsed = start.elapsed();
    println!(
        "{:.2} M records/s, {:.0} ns each",
        n as f64 / elapsed.as_secs_f64() / 1e6,
        elapsed.as_nanos() as f64 / n as f64
    );
    Ok(())
}
