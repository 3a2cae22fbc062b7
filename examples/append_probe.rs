//! Append probe for profiling: 64 B records, one publisher, records/s.
//!
//! `append_probe MODE [N] [CALL] [--no-read]`, CALL `offer` (default),
//! `append` (the blocking call, as a user writes it) or `claim` (claim, copy,
//! commit: the shared publisher's zero-copy path; `append` on the exclusive
//! one):
//!
//! `append_probe resident [N]`: one 1 GiB segment faulted in before the clock
//! starts (`Journal::prepare`), so no page fault is on the path (the hot path
//! alone; N up to ~11 M), through a `Publisher`.
//! `append_probe exclusive [N]`: `resident`, through an `ExclusivePublisher`.
//! Both then read the records back (CRC checked) and report that too, unless
//! `--no-read`.
//! `append_probe rollover [N]`: 1 MiB segments in a 64 MiB `DropOldest`
//! ring, a rollover every ~11k records (creating, preparing and deleting
//! segments included).
//! `append_probe ring [N]`: an `ExclusivePublisher` in a 512 MiB `DropOldest`
//! ring of 64 MiB segments that has already wrapped, so every segment it
//! writes is recycled (the steady state).
//!
//! `PROBE_THREADS=T` (shared publisher modes): T threads append N / T each;
//! `PROBE_RESERVING=1`: each through a `ReservingPublisher` of its own.
//! `PROBE_KEYED=1` (`exclusive`): keyed records (10,000 keys) appended
//! untimed, then the read-back timed (a keyed record's read path);
//! `PROBE_CONFLATED=1`: read with `poll_conflated` in windows of 100,000.
//!
//! The timed loops are the function `timed_calls`, so that
//! `valgrind --tool=callgrind --toggle-collect='*timed_calls'` counts the
//! instructions of the appends alone (`*timed_reads`: of the read-back).
use std::time::Duration;

use backwater::{Config, ExclusivePublisher, Journal, OfferError, Publisher, ReservingPublisher, WhenFull};

const PAYLOAD: [u8; 64] = [7u8; 64];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or_else(|| "resident".into());
    let n: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5_000_000);
    let call = if args.iter().any(|a| a == "append") {
        Call::Append
    } else if args.iter().any(|a| a == "claim") {
        Call::Claim
    } else {
        Call::Offer
    };
    let read = !args.iter().any(|a| a == "--no-read");
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
    let label = format!("{mode} {}", ["offer", "append", "claim"][call as usize]);
    match mode.as_str() {
        "ring" => {
            let mut publisher = journal.exclusive_publisher()?;
            while journal.tail_position() < 768 << 20 {
                publisher.offer(&PAYLOAD)?; // wrap the ring once and a half first
            }
            return Ok(measured(&label, n, || timed(&mut publisher, n, call))?);
        }
        "exclusive" if std::env::var_os("PROBE_KEYED").is_some() => {
            let mut publisher = journal.exclusive_publisher()?;
            for i in 0..n {
                publisher.append_keyed(format!("key-{}", i % 10_000).as_bytes(), &PAYLOAD)?;
            }
        }
        "exclusive" => measured(&label, n, || timed(&mut journal.exclusive_publisher()?, n, call))?,
        _ => measured(&label, n, || timed_threads(&journal, n, call))?,
    }
    if mode == "rollover" || !read {
        return Ok(()); // (the ring has dropped most of them)
    }
    // And read them back (CRC checked), for profiling the consumer.
    let mut consumer = journal.anonymous_consumer();
    let start = std::time::Instant::now();
    let cpu_start = thread_cpu();
    std::hint::black_box(timed_reads(&mut consumer, n)?);
    let cpu = thread_cpu().saturating_sub(cpu_start);
    report("read back", n, start.elapsed(), cpu);
    Ok(())
}

/// The CPU time this thread has run (what a loaded machine disturbs less
/// than the wall-clock time).
fn thread_cpu() -> Duration {
    Duration::try_from(rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime)).unwrap_or_default()
}

/// The read loop of `benches/peers.rs` (`read_back`), a function of its own
/// for `callgrind --toggle-collect='*timed_reads'`.
#[inline(never)]
fn timed_reads(consumer: &mut backwater::Consumer, n: u64) -> backwater::Result<u64> {
    let (mut read, mut sum) = (0u64, 0u64);
    if std::env::var_os("PROBE_CONFLATED").is_some() {
        while read < n {
            read += consumer.poll_conflated_counts(|r| sum += r.payload()[0] as u64, 100_000)?.read as u64;
        }
        return Ok(sum);
    }
    while read < n {
        read += consumer.poll(|r| sum += r.payload()[0] as u64, 4096)? as u64;
    }
    Ok(sum)
}

/// The calls on either publisher.
trait Appends {
    fn append(&mut self, payload: &[u8]) -> backwater::Result<u64>;
    fn offer(&mut self, payload: &[u8]) -> Result<u64, OfferError>;
    /// Claim, copy, commit (the zero-copy path; `append` where there is none).
    #[inline]
    fn claim_commit(&mut self, payload: &[u8]) -> backwater::Result<u64> {
        self.append(payload)
    }
}

impl Appends for ExclusivePublisher {
    #[inline]
    fn append(&mut self, payload: &[u8]) -> backwater::Result<u64> {
        ExclusivePublisher::append(self, payload)
    }
    #[inline]
    fn offer(&mut self, payload: &[u8]) -> Result<u64, OfferError> {
        ExclusivePublisher::offer(self, payload)
    }
}

impl Appends for &Publisher {
    #[inline]
    fn append(&mut self, payload: &[u8]) -> backwater::Result<u64> {
        Publisher::append(self, payload)
    }
    #[inline]
    fn offer(&mut self, payload: &[u8]) -> Result<u64, OfferError> {
        Publisher::offer(self, payload)
    }
    #[inline]
    fn claim_commit(&mut self, payload: &[u8]) -> backwater::Result<u64> {
        let mut claim = Publisher::claim(self, payload.len())?;
        claim.payload_mut().copy_from_slice(payload);
        claim.commit()
    }
}

impl Appends for ReservingPublisher {
    #[inline]
    fn append(&mut self, payload: &[u8]) -> backwater::Result<u64> {
        ReservingPublisher::append(self, payload)
    }
    #[inline]
    fn offer(&mut self, payload: &[u8]) -> Result<u64, OfferError> {
        ReservingPublisher::offer(self, payload)
    }
}

/// A loop of its own for each `CALL` (no branch between them); returns the
/// CPU time the thread spent in it (what a loaded machine disturbs less
/// than the wall-clock time).
fn timed<P: Appends>(publisher: &mut P, n: u64, call: Call) -> backwater::Result<Duration> {
    let start = thread_cpu();
    match call {
        Call::Offer => timed_calls::<P, OFFER>(publisher, n),
        Call::Append => timed_calls::<P, APPEND>(publisher, n),
        Call::Claim => timed_calls::<P, CLAIM>(publisher, n),
    }?;
    Ok(thread_cpu().saturating_sub(start))
}

#[inline(never)]
fn timed_calls<P: Appends, const CALL: u8>(publisher: &mut P, n: u64) -> backwater::Result<()> {
    for _ in 0..n {
        match CALL {
            APPEND => publisher.append(&PAYLOAD)?,
            CLAIM => publisher.claim_commit(&PAYLOAD)?,
            _ => publisher.offer(&PAYLOAD)?,
        };
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Call {
    Offer,
    Append,
    Claim,
}

const OFFER: u8 = 0;
const APPEND: u8 = 1;
const CLAIM: u8 = 2;

/// Runs `publish` (which returns the publishing threads' CPU time) and
/// reports its rates.
fn measured(label: &str, n: u64, publish: impl FnOnce() -> backwater::Result<Duration>) -> backwater::Result<()> {
    let start = std::time::Instant::now();
    let cpu = publish()?;
    report(label, n, start.elapsed(), cpu);
    Ok(())
}

/// `PROBE_THREADS` threads (1 by default) appending `n` records between
/// them through the shared publisher; returns the CPU time they spent.
fn timed_threads(journal: &Journal, n: u64, call: Call) -> backwater::Result<Duration> {
    let threads: u64 = std::env::var("PROBE_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(1);
    let reserving = std::env::var_os("PROBE_RESERVING").is_some();
    std::thread::scope(|scope| {
        let each: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || match reserving {
                    true => timed(&mut journal.publisher().reserving(), n / threads, call),
                    false => timed(&mut &journal.publisher(), n / threads, call),
                })
            })
            .collect();
        each.into_iter().map(|thread| thread.join().expect("publisher thread")).sum()
    })
}

/// Prints the wall-clock rate, then the rate per second of the publishing
/// (or reading) threads' CPU time.
fn report(what: &str, n: u64, elapsed: Duration, cpu: Duration) {
    let (rate, each) = per_record(n, elapsed);
    println!("{what}: {rate:.2} M records/s ({each:.0} ns each)");
    let (rate, each) = per_record(n, cpu);
    println!("{what}: {rate:.2} M records/s of thread CPU ({each:.1} CPU ns each)");
}

/// Millions of records per second, and nanoseconds per record, for `n`
/// records in `time`.
fn per_record(n: u64, time: Duration) -> (f64, f64) {
    (n as f64 / time.as_secs_f64() / 1e6, time.as_nanos() as f64 / n as f64)
}
