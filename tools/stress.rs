//! `backwater-stress`: the process the multi-process and crash tests (and
//! `tools/soak`, `tools/mp-bench`) spawn, kill and count.
//!
//! `write DIR --id N --count C`: appends C records `(id, seq, monotonic ns)`
//! padded to `--size` (up to `--max-size`) and checksummed (`payload.rs`),
//! printing `committed SEQ` every `--report` records (only after those
//! records' `append` returned), and its rate on stderr; `--exclusive`
//! appends through an `ExclusivePublisher`, `--reserving` through a
//! `ReservingPublisher` per thread.
//!
//! `follow DIR`: reads from the start (a read-write handle, so it unblocks
//! holes left by dead claimers) and prints `ID SEQ` per record until it
//! reads the sentinel record `END`; then prints on stderr the record count,
//! the longest stall behind the tail, and publish→receive latency percentiles.
//!
//! `consume`, `read`: the consumer and reader processes of `soak`.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use backwater::{Config, Journal};
use clap::{Parser, Subcommand};

mod payload;
mod ring;
mod soak;

#[derive(Parser)]
#[command(name = "backwater-stress", about = "Writers and followers for multi-process and crash tests")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Append `--count` numbered records
    Write {
        dir: std::path::PathBuf,
        #[arg(long)]
        id: u32,
        #[arg(long)]
        count: u64,
        /// Payload bytes per record (at least 24)
        #[arg(long, default_value = "64")]
        size: usize,
        /// Vary the record length from `--size` up to this (a function of the seq)
        #[arg(long)]
        max_size: Option<usize>,
        /// Print `committed SEQ` every this many records
        #[arg(long, default_value = "100")]
        report: u64,
        /// Segment size when the journal is created by this process
        #[arg(long, default_value = "1048576")]
        segment_size: u64,
        /// Publisher threads in this process (records are split between them)
        #[arg(long, default_value = "1")]
        threads: u32,
        /// At most this many records per second (default: as fast as possible)
        #[arg(long)]
        rate: Option<f64>,
        /// After the records, claim one more, write half of it, and SIGKILL
        /// this process: a dead claimer, on purpose
        #[arg(long)]
        die_in_claim: bool,
        /// Print `c SEQ POSITION` for every committed record (for the soak's accounting)
        #[arg(long)]
        positions: bool,
        /// Append through an `ExclusivePublisher` (one thread)
        #[arg(long, conflicts_with_all = ["threads", "die_in_claim"])]
        exclusive: bool,
        /// Append through a `ReservingPublisher` per thread
        #[arg(long, conflicts_with = "exclusive")]
        reserving: bool,
    },
    /// Consume with a durable cursor, logging `r POSITION ID SEQ` per record and
    /// `lost FROM TO` per eviction, until killed
    Consume {
        dir: std::path::PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        log: std::path::PathBuf,
        /// Sleep this long per record read (a slow consumer)
        #[arg(long, default_value = "0")]
        delay_us: u64,
    },
    /// Read with an anonymous consumer from a position, checking every
    /// payload, holding a record now and then (the ring soak's reader)
    Read(ring::ReadArgs),
    /// The soak: publishers and consumers killed at random for a while, then
    /// every accepted record accounted for
    Soak(soak::SoakArgs),
    /// Read every record until the `END` sentinel
    Follow {
        dir: std::path::PathBuf,
        #[arg(long, default_value = "1000")]
        unblock_timeout_ms: u64,
        /// Print nothing per record (for latency runs)
        #[arg(long)]
        quiet: bool,
    },
}

fn main() -> ExitCode {
    let result: Result<(), Box<dyn std::error::Error>> = match Cli::parse().command {
        Command::Write {
            dir,
            id,
            count,
            size,
            max_size,
            report,
            segment_size,
            threads,
            rate,
            die_in_claim,
            positions,
            exclusive,
            reserving,
        } => {
            let size = size.max(payload::MIN_LEN);
            let max_size = max_size.unwrap_or(size).max(size);
            let threads = threads.max(1) as u64;
            let spec = WriteSpec { id, count, size, max_size, report, threads, rate, positions, reserving };
            if exclusive {
                write_exclusive(&dir, segment_size, spec).map_err(Into::into)
            } else {
                write(&dir, segment_size, spec, die_in_claim).map_err(Into::into)
            }
        }
        Command::Consume { dir, name, log, delay_us } => {
            soak::consume(&dir, &name, &log, Duration::from_micros(delay_us))
        }
        Command::Read(args) => ring::read(args),
        Command::Soak(args) => soak::run(args),
        Command::Follow { dir, unblock_timeout_ms, quiet } => {
            follow(&dir, Duration::from_millis(unblock_timeout_ms), quiet).map_err(Into::into)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("backwater-stress: {error}");
            ExitCode::FAILURE
        }
    }
}

fn monotonic_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn open(dir: &std::path::Path, segment_size: u64, unblock_timeout: Duration) -> backwater::Result<Journal> {
    // Only the first opener's segment size counts; later openers adopt it.
    let config = Config::default().min_free_disk(0).unblock_timeout(unblock_timeout);
    match Journal::open(dir, config.clone().segment_size(segment_size)) {
        Err(backwater::Error::SegmentSizeMismatch { .. }) => Journal::open(dir, config),
        other => other,
    }
}

#[derive(Clone, Copy)]
struct WriteSpec {
    id: u32,
    count: u64,
    size: usize,
    max_size: usize,
    report: u64,
    threads: u64,
    rate: Option<f64>,
    positions: bool,
    reserving: bool,
}

fn write(dir: &std::path::Path, segment_size: u64, spec: WriteSpec, die_in_claim: bool) -> backwater::Result<()> {
    let journal = open(dir, segment_size, Duration::from_secs(1))?;
    let started = Instant::now();
    let workers: Vec<_> = (0..spec.threads)
        .map(|thread| {
            let publisher = journal.publisher();
            std::thread::spawn(move || match spec.reserving {
                true => {
                    let mut reserving = publisher.reserving();
                    write_records(spec, thread, started, |record| reserving.append(record))
                }
                false => write_records(spec, thread, started, |record| publisher.append(record)),
            })
        })
        .collect();
    for worker in workers {
        worker.join().map_err(|_| backwater::Error::InvalidConfig("writer thread panicked".into()))??;
    }
    report_rate(spec, started);
    if die_in_claim {
        let publisher = journal.publisher();
        let mut claim = publisher.claim(spec.size)?;
        claim.payload_mut()[..spec.size / 2].fill(0xEE);
        println!("claimed {}", claim.position());
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL)
            .map_err(|e| backwater::Error::InvalidConfig(format!("kill self: {e}")))?;
    }
    Ok(())
}

fn write_exclusive(dir: &std::path::Path, segment_size: u64, spec: WriteSpec) -> backwater::Result<()> {
    let journal = open(dir, segment_size, Duration::from_secs(1))?;
    let mut publisher = journal.exclusive_publisher()?;
    let started = Instant::now();
    write_records(spec, 0, started, |record| publisher.append(record))?;
    report_rate(spec, started);
    Ok(())
}

/// Appends `thread`'s share of the records through `append`, reporting progress.
fn write_records(
    spec: WriteSpec,
    thread: u64,
    started: Instant,
    mut append: impl FnMut(&[u8]) -> backwater::Result<u64>,
) -> backwater::Result<()> {
    let WriteSpec { id, count, size, max_size, report, threads, rate, positions, .. } = spec;
    let mut record = vec![0u8; max_size];
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let first = count * thread / threads;
    let last = count * (thread + 1) / threads;
    for seq in first..last {
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64((seq - first) as f64 * threads as f64 / rate);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let record = &mut record[..payload::len_of(seq, size, max_size)];
        payload::encode(record, id, seq, monotonic_ns());
        let position = append(record)?;
        if positions {
            let _ = writeln!(out, "c {seq} {position}");
        }
        if threads == 1 && (seq + 1) % report == 0 {
            let _ = writeln!(out, "committed {seq}");
            let _ = out.flush();
        }
    }
    Ok(())
}

fn report_rate(spec: WriteSpec, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "writer {}: {} records in {seconds:.3} s = {:.0} records/s",
        spec.id,
        spec.count,
        spec.count as f64 / seconds
    );
}

fn follow(dir: &std::path::Path, unblock_timeout: Duration, quiet: bool) -> backwater::Result<()> {
    let journal = open(dir, 1 << 20, unblock_timeout)?;
    let mut consumer = journal.anonymous_consumer();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut latencies = Vec::new();
    let (mut records, mut done) = (0u64, false);
    let mut stalled_since: Option<Instant> = None;
    let mut longest_stall = Duration::ZERO;
    while !done {
        let read = consumer.poll_wait(
            |record| {
                let payload = record.payload();
                if payload == b"END" {
                    done = true;
                } else if !done && payload.len() >= 20 {
                    let id = u32::from_le_bytes(payload[..4].try_into().unwrap_or_default());
                    let seq = u64::from_le_bytes(payload[4..12].try_into().unwrap_or_default());
                    let sent = u64::from_le_bytes(payload[12..20].try_into().unwrap_or_default());
                    latencies.push(monotonic_ns().saturating_sub(sent));
                    records += 1;
                    if !quiet {
                        let _ = writeln!(out, "{id} {seq}");
                    }
                }
            },
            4096,
            Duration::from_millis(10),
        )?;
        if read > 0 || consumer.lag() == 0 {
            if let Some(since) = stalled_since.take() {
                longest_stall = longest_stall.max(since.elapsed());
            }
        } else {
            stalled_since.get_or_insert_with(Instant::now);
        }
    }
    let _ = out.flush();
    latencies.sort_unstable();
    let percentile = |p: f64| latencies.get(((latencies.len() as f64 - 1.0) * p) as usize).copied().unwrap_or(0) / 1000;
    eprintln!(
        "follower: records {records} longest_stall_ms {} unblocked {} latency_us p50 {} p99 {} max {}",
        longest_stall.as_millis(),
        journal.stats().unblocked,
        percentile(0.5),
        percentile(0.99),
        latencies.last().copied().unwrap_or(0) / 1000,
    );
    Ok(())
}
