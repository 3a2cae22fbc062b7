//! Hot-path probe: offers into one 1 GiB segment that the housekeeper has
//! already faulted in, so no page fault is on the path. Prints records/s.
use backwater::{Config, Journal};
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let journal = Journal::open(dir.path(), Config::default().segment_size(1 << 30).min_free_disk(0))?;
    std::thread::sleep(std::time::Duration::from_secs(3)); // let the housekeeper populate
    let publisher = journal.publisher();
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5_000_000);
    let payload = [7u8; 64];
    let start = std::time::Instant::now();
    for _ in 0..n {
        publisher.offer(&payload)?;
    }
    let elapsed = start.elapsed();
    println!(
        "offer 64 B into resident pages: {:.1} M records/s ({:.1} ns each)",
        n as f64 / elapsed.as_secs_f64() / 1e6,
        elapsed.as_nanos() as f64 / n as f64
    );
    Ok(())
}
