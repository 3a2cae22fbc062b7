//! `backwater demo`: the seed scenario on an embedded default.
//!
//! A connector publishes faster than a database can write; backwater sits in
//! between. A second, fast consumer (an indexer) keeps up. The budget is
//! sized so the watermarks come into play within seconds: low-priority
//! records are shed, then the connector is pushed back (it waits; nothing
//! crashes, nothing is lost silently). Then the connector stops, the database
//! catches up, and the summary checks that every accepted record reached
//! both consumers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use backwater::{Config, Error, Journal, Level, Priority, WhenFull};

use crate::cli::DemoArgs;
use crate::output::{human_bytes, require_new_or_empty};
use crate::{EXIT_FINDING, Failure, Outcome};

/// Records the connector tries to publish per second.
const PUBLISH_RATE: u64 = 100_000;
/// Records per second the database takes while it is slow.
const SLOW_DB_RATE: u64 = 40_000;
const RECORD_LEN: usize = 200;
const SEGMENT_SIZE: u64 = 1 << 20;

/// What the worker threads share with the reporting loop.
#[derive(Default)]
struct Shared {
    publishing: AtomicBool,
    db_slow: AtomicBool,
    stop: AtomicBool,
    normal_appended: AtomicU64,
    low_appended: AtomicU64,
    db_read: AtomicU64,
    indexer_read: AtomicU64,
}

pub fn run(args: DemoArgs) -> Outcome {
    if let Some(dir) = &args.dir {
        require_new_or_empty(dir, "the demo")?;
    }
    let temp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().join("journal"));
    let seconds = args.seconds.max(3);
    let publish_for = Duration::from_secs_f64(seconds as f64 * 0.6);
    let budget = budget_for(publish_for);
    let mut config =
        Config::default().segment_size(SEGMENT_SIZE).max_disk_bytes(budget).min_free_disk(0).when_full(WhenFull::Block);
    if let Some(compression) = args.compression {
        config = config.compression(compression);
    }
    let journal = Journal::open(&dir, config)?;
    let compressing = journal.limits().compression.is_on();
    let levels = journal.watch_level();
    say!("backwater demo: a connector publishing {PUBLISH_RATE} records/s ({RECORD_LEN} B, 1 in 4 low priority)");
    say!("into a journal with a {} budget, a database taking {SLOW_DB_RATE}/s, and an indexer.", human_bytes(budget));
    say!("watermarks: shed low priority at 80% full, push back at 95%, resume below 70%.");
    if compressing {
        say!(
            "compression: {} from 50% full: sealed segments are compressed in the background.",
            journal.limits().compression.name()
        );
    }
    say!("watch it from another terminal: backwater exporter --listen 127.0.0.1:9464 {}", dir.display());
    say!(
        "  then: curl -s http://127.0.0.1:9464/metrics | grep -E 'level|fill|lag_seconds' (or point Prometheus at it)\n"
    );

    let shared = Arc::new(Shared::default());
    shared.publishing.store(true, Ordering::Release);
    shared.db_slow.store(true, Ordering::Release);
    let connector = spawn_connector(&journal, &shared);
    let consumers =
        [spawn_consumer(&journal, &shared, "database", true), spawn_consumer(&journal, &shared, "indexer", false)];
    let started = Instant::now();
    let mut report = Reporter::new(&journal, &shared);
    report.header();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(250));
        for level in levels.try_iter() {
            say!("      -> {}", transition(level));
        }
        report.compression_started();
        if shared.publishing.load(Ordering::Acquire) && started.elapsed() >= publish_for {
            shared.publishing.store(false, Ordering::Release);
            shared.db_slow.store(false, Ordering::Release);
            say!("      -> connector done; the database recovers and drains the backlog");
        }
        report.maybe_line(started.elapsed());
        if connector.is_finished() && drained(&journal, &shared) {
            break;
        }
    }
    shared.publishing.store(false, Ordering::Release);
    shared.db_slow.store(false, Ordering::Release);
    // The connector first: an append it was making when told to stop counts
    // once it returns, and the consumers must read that record too.
    let connected = join(connector);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !drained(&journal, &shared) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    shared.stop.store(true, Ordering::Release);
    for consumer in consumers {
        join(consumer)?;
    }
    connected?;
    report.line(started.elapsed());
    summary(&journal, &shared, args.dir.is_some())
}

fn join(worker: JoinHandle<Result<(), Failure>>) -> Outcome {
    worker.join().map_err(|_| Failure::new(EXIT_FINDING, "a demo thread panicked"))?
}

/// A budget the connector fills in about a third of its run at the net rate.
fn budget_for(publish_for: Duration) -> u64 {
    let net_bytes_per_sec = ((PUBLISH_RATE - SLOW_DB_RATE) * (RECORD_LEN as u64 + 32)) as f64;
    let bytes = net_bytes_per_sec * publish_for.as_secs_f64() * 0.35 / 0.95;
    (bytes as u64).div_ceil(SEGMENT_SIZE).max(4) * SEGMENT_SIZE
}

fn drained(journal: &Journal, shared: &Shared) -> bool {
    let appended = journal.stats().appended;
    shared.db_read.load(Ordering::Acquire) == appended && shared.indexer_read.load(Ordering::Acquire) == appended
}

fn spawn_connector(journal: &Journal, shared: &Arc<Shared>) -> JoinHandle<Result<(), Failure>> {
    let publisher = journal.publisher();
    let shared = Arc::clone(shared);
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut sent = 0u64;
        let mut record = [b'.'; RECORD_LEN];
        while shared.publishing.load(Ordering::Acquire) {
            let due = (started.elapsed().as_secs_f64() * PUBLISH_RATE as f64) as u64;
            // A source that was pushed back does not burst to make up for it.
            sent = sent.max(due.saturating_sub(PUBLISH_RATE / 100));
            if sent >= due {
                std::thread::sleep(Duration::from_micros(500));
                continue;
            }
            record[..20].copy_from_slice(format!("{sent:020}").as_bytes());
            if sent % 4 == 3 {
                match publisher.offer_with(Priority::Low, &record) {
                    Ok(_) => shared.low_appended.fetch_add(1, Ordering::Relaxed),
                    Err(backwater::OfferError::Dropped { .. } | backwater::OfferError::BackPressured { .. }) => 0,
                    Err(other) => return Err(Error::from(other).into()),
                };
            } else {
                publisher.append(&record)?;
                shared.normal_appended.fetch_add(1, Ordering::Relaxed);
            }
            sent += 1;
        }
        Ok(())
    })
}

fn spawn_consumer(journal: &Journal, shared: &Arc<Shared>, name: &str, slow: bool) -> JoinHandle<Result<(), Failure>> {
    let journal = journal.clone();
    let shared = Arc::clone(shared);
    let name = name.to_string();
    std::thread::spawn(move || {
        let mut consumer = journal.consumer(&name)?;
        let counter = if slow { &shared.db_read } else { &shared.indexer_read };
        let started = Instant::now();
        let mut read_total = 0u64;
        while !shared.stop.load(Ordering::Acquire) {
            let throttled = slow && shared.db_slow.load(Ordering::Acquire);
            if throttled && read_total as f64 >= started.elapsed().as_secs_f64() * SLOW_DB_RATE as f64 {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let limit = if throttled { 400 } else { 4096 };
            let read = consumer.poll_wait(|_| {}, limit, Duration::from_millis(50))?;
            if read > 0 {
                consumer.commit()?;
                read_total += read as u64;
                counter.fetch_add(read as u64, Ordering::Release);
            }
        }
        Ok(())
    })
}

/// One line per second with rates, lags, fill and level.
struct Reporter<'a> {
    journal: &'a Journal,
    shared: &'a Shared,
    next: Duration,
    last: (u64, u64, u64),
    /// Whether the journal compresses (a ratio column), and whether the
    /// first compressed segment was announced.
    compression: bool,
    compression_seen: bool,
}

impl<'a> Reporter<'a> {
    fn new(journal: &'a Journal, shared: &'a Shared) -> Reporter<'a> {
        let compression = journal.limits().compression.is_on();
        Reporter {
            journal,
            shared,
            next: Duration::from_secs(1),
            last: (0, 0, 0),
            compression,
            compression_seen: false,
        }
    }

    /// Says so once, when the housekeeper compressed its first segment.
    fn compression_started(&mut self) {
        if self.compression_seen || !self.compression {
            return;
        }
        let stats = self.journal.stats();
        if stats.compression.compressed_total > 0 {
            self.compression_seen = true;
            say!(
                "      -> compressing: fill reached the compress watermark (50%), sealed segments are compressed ({:.1}x so far)",
                stats.compression.ratio()
            );
        }
    }

    fn header(&self) {
        say!(
            "{:>4}  {:>10}  {:>9}  {:>10}  {:>10}  {:>11}  {:>5}  {:<15} {:>8}  {:>11}{}",
            "t",
            "publish/s",
            "db/s",
            "db lag",
            "indexer/s",
            "indexer lag",
            "fill",
            "level",
            "shed",
            "pushed back",
            if self.compression { "  compressed (ratio)" } else { "" }
        );
    }

    fn maybe_line(&mut self, elapsed: Duration) {
        if elapsed >= self.next {
            self.line(elapsed);
            self.next += Duration::from_secs(1);
        }
    }

    fn line(&mut self, elapsed: Duration) {
        let stats = self.journal.stats();
        let db = self.shared.db_read.load(Ordering::Acquire);
        let indexer = self.shared.indexer_read.load(Ordering::Acquire);
        let (appended0, db0, indexer0) = self.last;
        let lags = self.journal.cursors().unwrap_or_default();
        let lag = |name: &str| lags.iter().find(|c| c.name == name).map_or(0, |c| c.lag_bytes);
        say!(
            "{:>3}s  {:>10}  {:>9}  {:>10}  {:>10}  {:>11}  {:>4.0}%  {:<15} {:>8}  {:>11}{}",
            elapsed.as_secs(),
            stats.appended - appended0,
            db - db0,
            human_bytes(lag("database")),
            indexer - indexer0,
            human_bytes(lag("indexer")),
            stats.fill * 100.0,
            level_name(stats.level),
            stats.dropped_low,
            stats.back_pressured,
            if self.compression {
                format!("  {:>10} ({:.1}x)", stats.compression.segments, stats.compression.ratio())
            } else {
                String::new()
            },
        );
        self.last = (stats.appended, db, indexer);
    }
}

fn level_name(level: Level) -> &'static str {
    level.name()
}

fn transition(level: Level) -> &'static str {
    match level {
        Level::Normal => "normal: fill fell below the resume watermark (70%), everything is accepted again",
        Level::Shedding => "shedding: fill reached the shed watermark (80%), low-priority records are dropped",
        Level::BackPressured => "back-pressured: fill reached the high watermark (95%), the connector waits",
    }
}

fn summary(journal: &Journal, shared: &Shared, keep: bool) -> Outcome {
    let stats = journal.stats();
    let normal = shared.normal_appended.load(Ordering::Acquire);
    let low = shared.low_appended.load(Ordering::Acquire);
    let db = shared.db_read.load(Ordering::Acquire);
    let indexer = shared.indexer_read.load(Ordering::Acquire);
    say!("\nsummary");
    say!("  accepted      {} records ({normal} normal, {low} low priority)", stats.appended);
    say!("  shed          {} low-priority records, counted, above the shed watermark", stats.dropped_low);
    say!("  pushed back   {} times: the connector waited instead of crashing or dropping", stats.back_pressured);
    say!("  database read {db}, indexer read {indexer}");
    say!("  disk          never above the budget ({} now)", human_bytes(stats.disk_bytes));
    if journal.limits().compression.is_on() {
        let compression = stats.compression;
        say!(
            "  compression   {} segments compressed, {} of segments in {} ({:.1}x)",
            compression.compressed_total,
            human_bytes(compression.raw_bytes_total),
            human_bytes(compression.file_bytes_total),
            compression.raw_bytes_total as f64 / compression.file_bytes_total.max(1) as f64
        );
    }
    if keep {
        say!("  journal kept in {}", journal.dir().display());
    }
    if db == stats.appended && indexer == stats.appended && stats.appended == normal + low {
        say!("  nothing lost: every accepted record reached both consumers");
        Ok(())
    } else {
        Err(Failure::new(EXIT_FINDING, "counts differ: records were lost"))
    }
}
