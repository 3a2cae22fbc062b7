//! Append probe for profiling: 64 B offers, one publisher, records/s.
//!
//! `append_probe resident [N]`: one 1 GiB segment faulted in before the clock
//! starts (`Journal::prepare`), so no page fault is on the path (the hot path
//! alone; N up to ~11 M).
//! `append_probe exclusive [N]`: `resident`, through an `ExclusivePublisher`.
//! Both then read the records back (CRC checked) and report that too.
//! `append_probe rollover [N]`: 1 MiB segments in a 64 MiB `DropOldest`
//! ring, a rollover every ~11k records (creating, preparing and deleting
//! segments included).
//! `append_probe ring [N]`: an `ExclusivePublisher` in a 512 MiB `DropOldest`
//! ring of 64 MiB segments that has already wrapped, so every segment it
//! writes is recycled (the steady state).
use backwater::{Config, Journal, WhenFull};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "resident".into());
    let n: u64 = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(5_000_000);
    let dir = tempfile::tempdir()?;
    let config = Config::default().min_free_disk(0);
    let journal = match mode.as_str() {
        "resident" | "exclusive" => {
            let journal = Journal::open(dir.path(), config.segment_size(1 << 30).segments_ahead(0))?;
            journal.prepare()?; // the segment faulted in before the clock starts
            journal
        }
        "rollover" => Journal::open(
            dir.path(),
            config.segment_size(1 << 20).max_disk_bytes(64 << 20).when_full(WhenFull::DropOldest),
        )?,
        "ring" => Journal::open(
            dir.path(),
            config.segment_size(64 << 20).max_disk_bytes(512 << 20).when_full(WhenFull::DropOldest).segments_ahead(2),
        )?,
        other => return Err(format!("mode '{other}': use resident, exclusive, rollover or ring").into()),
    };
    if mode == "ring" {
        let mut publisher = journal.exclusive_publisher()?;
        while journal.tail_position() < 768 << 20 {
            publisher.offer(&[7u8; 64])?; // wrap the ring once and a half first
        }
        let start = std::time::Instant::now();
        for _ in 0..n {
            publisher.offer(&[7u8; 64])?;
        }
        report(&mode, n, start.elapsed());
        return Ok(());
    }
    let start = std::time::Instant::now();
    if mode == "exclusive" {
        let mut publisher = journal.exclusive_publisher()?;
        for _ in 0..n {
            publisher.offer(&[7u8; 64])?;
        }
    } else {
        let publisher = journal.publisher();
        for _ in 0..n {
            publisher.offer(&[7u8; 64])?;
        }
    }
    report(&mode, n, start.elapsed());
    if mode == "rollover" {
        return Ok(()); // the ring has dropped most of them
    }
    // And read them back (CRC checked), for profiling the consumer.
    let mut consumer = journal.anonymous_consumer();
    let (mut read, mut sum) = (0u64, 0u64);
    let start = std::time::Instant::now();
    while read < n {
        read += consumer.poll(|r| sum += r.payload()[0] as u64, 4096)? as u64;
    }
    std::hint::black_box(sum);
    report("read back", n, start.elapsed());
    Ok(())
}

fn report(what: &str, n: u64, elapsed: std::time::Duration) {
    let (rate, each) = (n as f64 / elapsed.as_secs_f64() / 1e6, elapsed.as_nanos() as f64 / n as f64);
    println!("{what}: {rate:.2} M records/s ({each:.0} ns each)");
}
