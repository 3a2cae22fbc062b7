//! The power-loss model (issue 12): random workloads run against a real
//! journal while `backwater::sync_trace` reports every durability barrier;
//! the model keeps what reached the media (page granularity, directory
//! entries as of their last fsync), and at crash points (each barrier, each
//! operation boundary) builds crash images in which every page and entry
//! not yet durable is independently old or new. Each image is recovered and
//! checked (`check.rs`). See docs/FORMAT.md, "The power-loss model".
//!
//! `POWERLOSS_IMAGES=N` sets how many crash images to check (default 2,400);
//! `POWERLOSS_SEED=S` runs the one workload `S` (its variant follows from
//! the seed). Failures print seed, crash point and a copy of the image.

mod common;
#[path = "powerloss/check.rs"]
mod check;
#[path = "powerloss/findings.rs"]
mod findings;
#[path = "powerloss/media.rs"]
mod media;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use backwater::sync_trace::{self, SyncEvent};
use backwater::{Config, Consumer, Error, ExclusivePublisher, Flush, Journal, WhenFull};
use check::{Appended, CURSOR, Problem, Promise};
use common::Rng;
use media::{Choice, Image, Media, Snapshot};

const SEGMENT: u64 = 64 << 10;
const DEFAULT_IMAGES: usize = 2400;
const IMAGES_PER_WORKLOAD: usize = 50;
/// Out of 1,000 crash points, how many become an image.
const SAMPLE_PER_MILLE: u64 = 30;
const MAX_STEPS: usize = 3000;
const SEED_BASE: u64 = 0x5EED_0000;

// ---------------------------------------------------------------- the hook

/// The models of the journals under test, by root directory: the hook is
/// process-wide, and recovery of crash images must not feed any model.
static MODELS: Mutex<Vec<(PathBuf, Arc<Mutex<Model>>)>> = Mutex::new(Vec::new());

fn install_hook() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| sync_trace::set_hook(Some(Box::new(on_barrier))));
}

fn on_barrier(event: &SyncEvent<'_>) {
    let path = match event {
        SyncEvent::Range { path, .. } | SyncEvent::File { path } | SyncEvent::Directory { path } => *path,
    };
    let model = {
        let models = lock(&MODELS);
        models.iter().find(|(root, _)| path.starts_with(root)).map(|(_, model)| Arc::clone(model))
    };
    if let Some(model) = model {
        lock(&model).on_barrier(event);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// --------------------------------------------------------------- the model

/// One journal's media model and the crash images built from it.
struct Model {
    root: PathBuf,
    media: Media,
    /// Chooses crash points and the old/new state of each image.
    rng: Rng,
    /// What the flush policy has promised so far (kept by the workload).
    promise: Promise,
    crash_points: usize,
    generated: usize,
    quota: usize,
    pending: Vec<CrashImage>,
    coverage: Coverage,
    /// A scripted crash image to build at one chosen barrier.
    capture: Option<Capture>,
}

/// Where a minimal reproduction loses power: at the barrier (or operation
/// boundary) whose description contains `at`, after skipping `skip` of them.
struct Capture {
    at: String,
    skip: usize,
    script: media::Script,
    taken: Option<(Image, Promise, String)>,
}

/// How much of the interesting state space the workloads reached.
#[derive(Clone, Copy, Debug, Default)]
struct Coverage {
    workloads: usize,
    crash_points: usize,
    images: usize,
    /// Segments written past (the tail's index at the end), summed.
    rotations: u64,
    /// Segments deleted by retention or the ring, summed.
    deletions: u64,
    /// Workloads whose ring dropped unread data.
    ring_drops: usize,
    /// Images holding a spare segment file (recycling under way).
    images_with_spares: usize,
    /// Images where a directory entry differs between media and page cache.
    images_with_entries_in_flight: usize,
    reopens: usize,
}

impl std::ops::AddAssign for Coverage {
    fn add_assign(&mut self, other: Coverage) {
        self.workloads += other.workloads;
        self.crash_points += other.crash_points;
        self.images += other.images;
        self.rotations += other.rotations;
        self.deletions += other.deletions;
        self.ring_drops += other.ring_drops;
        self.images_with_spares += other.images_with_spares;
        self.images_with_entries_in_flight += other.images_with_entries_in_flight;
        self.reopens += other.reopens;
    }
}

/// A crash image waiting to be checked.
struct CrashImage {
    image: Image,
    promise: Promise,
    crash_point: usize,
    what: String,
}

impl Model {
    fn on_barrier(&mut self, event: &SyncEvent<'_>) {
        let what = match *event {
            SyncEvent::Range { path, offset, len } => {
                self.media.synced_range(path, offset, len);
                format!("msync {} +{offset} len {len}", self.relative(path))
            }
            SyncEvent::File { path } => {
                self.media.synced_file(path);
                format!("fsync {}", self.relative(path))
            }
            SyncEvent::Directory { path } => {
                let rel = self.relative(path);
                self.media.synced_dir(&self.root, &rel);
                format!("fsync directory '{rel}'")
            }
        };
        self.crash_point(what);
    }

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root).unwrap_or(path).to_string_lossy().into_owned()
    }

    /// A moment a power loss could hit: maybe build an image of it.
    fn crash_point(&mut self, what: String) {
        self.crash_points += 1;
        self.maybe_capture(&what);
        if self.generated >= self.quota || self.rng.below(1000) >= SAMPLE_PER_MILLE {
            return;
        }
        let mut rng = Rng(self.rng.next());
        let (image, promise, snapshot) = self.image_now(&mut Choice::Random(&mut rng));
        self.generated += 1;
        let spare = |path: &PathBuf| path.to_string_lossy().starts_with(".tmp-spare-");
        self.coverage.images_with_spares += usize::from(image.keys().any(spare));
        self.coverage.images_with_entries_in_flight += usize::from(self.media.entries_in_flight(&snapshot));
        self.pending.push(CrashImage { image, promise, crash_point: self.crash_points, what });
    }

    /// A crash image of this moment, with what was promised.
    fn image_now(&mut self, choice: &mut Choice<'_>) -> (Image, Promise, Snapshot) {
        let snapshot = Snapshot::take(&self.root);
        self.media.note(&snapshot);
        // Read after the snapshot: retention moves the first position before
        // it unlinks, so this never expects a segment the snapshot lacks.
        let promise = Promise { first_position: first_position(&self.root), ..self.promise };
        let image = reboot(self.media.crash_image(&snapshot, choice));
        (image, promise, snapshot)
    }

    fn maybe_capture(&mut self, what: &str) {
        let Some(mut capture) = self.capture.take() else { return };
        if capture.taken.is_none() && what.contains(&capture.at) {
            if capture.skip == 0 {
                let (image, promise, _) = self.image_now(&mut Choice::Script(&capture.script));
                capture.taken = Some((image, promise, what.to_string()));
            } else {
                capture.skip -= 1;
            }
        }
        self.capture = Some(capture);
    }
}

/// The first position in the journal's metadata now (0 before it exists).
fn first_position(root: &Path) -> u64 {
    const FIRST_POSITION_AT: usize = 192;
    let meta = std::fs::read(root.join("journal.meta")).unwrap_or_default();
    meta.get(FIRST_POSITION_AT..FIRST_POSITION_AT + 8)
        .map_or(0, |bytes| u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
}

// ------------------------------------------------------------ the workload

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FlushKind {
    /// `Flush::Always`: every append and commit is promised when it returns.
    Always,
    /// `Flush::Interval` (an hour): only explicit `flush()` calls promise.
    Explicit,
    /// `Flush::Interval` (5 ms): the housekeeper flushes meanwhile too.
    Background,
    /// `Flush::Never`: only explicit `flush()` calls promise.
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Publishing {
    Shared,
    Exclusive,
    /// Switches between the two now and then.
    Mixed,
}

#[derive(Clone, Copy, Debug)]
struct Variant {
    flush: FlushKind,
    /// `DropOldest` at a budget of a few segments, else `Block` with retention.
    ring: bool,
    publishing: Publishing,
}

impl Variant {
    fn of(seed: u64) -> Variant {
        const FLUSH: [FlushKind; 4] = [FlushKind::Always, FlushKind::Explicit, FlushKind::Background, FlushKind::Never];
        const PUBLISHING: [Publishing; 3] = [Publishing::Shared, Publishing::Exclusive, Publishing::Mixed];
        let n = seed as usize;
        Variant { flush: FLUSH[n % 4], ring: n / 4 % 2 == 1, publishing: PUBLISHING[n / 8 % 3] }
    }

    fn config(&self, rng: &mut Rng) -> Config {
        let flush = match self.flush {
            FlushKind::Always => Flush::Always,
            FlushKind::Explicit => Flush::Interval(Duration::from_secs(3600)),
            FlushKind::Background => Flush::Interval(Duration::from_millis(5)),
            FlushKind::Never => Flush::Never,
        };
        let config = Config::default()
            .segment_size(SEGMENT)
            .min_free_disk(0)
            .flush(flush)
            .append_timeout(Duration::from_secs(5));
        if self.ring {
            config.when_full(WhenFull::DropOldest).max_disk_bytes((3 + rng.below(4)) * SEGMENT)
        } else {
            config.when_full(WhenFull::Block)
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Append(usize),
    Batch(Vec<usize>),
    /// Claim, `flush()` while the claim is open, then commit.
    ClaimAcrossFlush(usize),
    /// Poll up to n records, then maybe commit.
    Consume(usize, bool),
    Flush,
    Retention,
    SwitchPublisher,
    Reopen,
}

/// The kinds of `Op`, for weighting.
#[derive(Clone, Copy)]
enum Kind {
    Append,
    Batch,
    ClaimAcrossFlush,
    Consume,
    Flush,
    Retention,
    SwitchPublisher,
    Reopen,
}

/// A failure, with what reproduces it.
#[derive(Clone, Debug)]
struct Failure {
    seed: u64,
    variant: Variant,
    crash_point: usize,
    what: String,
    problem: Problem,
    saved: Option<PathBuf>,
}

/// One random workload against one journal.
struct Workload {
    seed: u64,
    variant: Variant,
    rng: Rng,
    dir: tempfile::TempDir,
    model: Arc<Mutex<Model>>,
    journal: Option<Journal>,
    exclusive: Option<ExclusivePublisher>,
    consumer: Option<Consumer>,
    log: Vec<Appended>,
    next_record: u64,
    /// The cursor's last commit (volatile until flushed).
    committed: Option<u64>,
    checked: usize,
    failures: Vec<Failure>,
}

impl Workload {
    fn start(seed: u64, quota: usize) -> Workload {
        install_hook();
        let dir = tempdir();
        let model = Arc::new(Mutex::new(Model {
            root: dir.path().to_path_buf(),
            media: Media::default(),
            rng: Rng(seed ^ 0xC4A5_11ED),
            promise: Promise::default(),
            crash_points: 0,
            generated: 0,
            quota,
            pending: Vec::new(),
            coverage: Coverage { workloads: 1, ..Coverage::default() },
            capture: None,
        }));
        lock(&MODELS).push((dir.path().to_path_buf(), Arc::clone(&model)));
        let mut workload = Workload {
            seed,
            variant: Variant::of(seed),
            rng: Rng(seed),
            dir,
            model,
            journal: None,
            exclusive: None,
            consumer: None,
            log: Vec::new(),
            next_record: seed << 20,
            committed: None,
            checked: 0,
            failures: Vec::new(),
        };
        workload.open();
        workload
    }

    fn run(mut self) -> (Coverage, Vec<Failure>) {
        for step in 0..MAX_STEPS {
            if self.quota_reached() {
                break;
            }
            let op = self.next_op();
            if std::env::var("POWERLOSS_TRACE").is_ok() {
                eprintln!("op {step}: {op:?} (tail {}, log {})", self.journal().tail_position(), self.log.len());
            }
            if let Err(error) = self.apply(&op) {
                self.fail_live(step, &op, error);
                break;
            }
            self.crash_point(format!("after op {step}: {op:?}"));
            self.check_pending();
        }
        self.note_coverage();
        self.close();
        self.crash_point("after closing".into());
        self.check_pending();
        lock(&MODELS).retain(|(root, _)| root != self.dir.path());
        let mut model = lock(&self.model);
        model.coverage.crash_points = model.crash_points;
        model.coverage.images = self.checked;
        (model.coverage, std::mem::take(&mut self.failures))
    }

    fn note_coverage(&self) {
        let stats = self.journal().stats();
        let mut model = lock(&self.model);
        model.coverage.rotations += stats.tail_position / SEGMENT;
        model.coverage.deletions += stats.first_position / SEGMENT;
        model.coverage.ring_drops += usize::from(stats.lost_bytes > 0);
    }

    fn quota_reached(&self) -> bool {
        let model = lock(&self.model);
        model.generated >= model.quota
    }

    fn journal(&self) -> &Journal {
        self.journal.as_ref().expect("the workload's journal is open")
    }

    fn open(&mut self) {
        let config = self.variant.config(&mut self.rng);
        let journal = Journal::open(self.dir.path(), config).expect("open the workload's journal");
        self.consumer = Some(journal.consumer(CURSOR).expect("open the workload's consumer"));
        if self.variant.publishing == Publishing::Exclusive {
            self.exclusive = Some(journal.exclusive_publisher().expect("take the exclusive publisher"));
        }
        self.journal = Some(journal);
    }

    /// Drops every handle: the last one flushes unless the policy is `Never`.
    fn close(&mut self) {
        self.consumer = None;
        self.exclusive = None;
        self.journal = None;
        if self.variant.flush != FlushKind::Never {
            self.promise_everything();
        }
    }

    fn next_op(&mut self) -> Op {
        let shared = self.exclusive.is_none();
        let mixed = self.variant.publishing == Publishing::Mixed;
        // Per mille; a ring's consumer lags so that the ring wraps, and how
        // eagerly a retention consumer keeps up varies by workload.
        let consume = if self.variant.ring { 30 } else { 40 + self.seed % 4 * 40 };
        let weights = [
            (500, Kind::Append),
            (if shared { 40 } else { 0 }, Kind::Batch),
            (if shared { 30 } else { 0 }, Kind::ClaimAcrossFlush),
            (consume, Kind::Consume),
            (50, Kind::Flush),
            (80, Kind::Retention),
            (if mixed { 50 } else { 0 }, Kind::SwitchPublisher),
            (3, Kind::Reopen),
        ];
        let total: u64 = weights.iter().map(|(w, _)| w).sum();
        let mut pick = self.rng.below(total);
        let kind = weights.iter().find(|(w, _)| pick < *w || { pick -= w; false }).map_or(Kind::Append, |(_, k)| *k);
        match kind {
            Kind::Append => Op::Append(self.record_len()),
            Kind::Batch => Op::Batch((0..1 + self.rng.below(6)).map(|_| self.rng.below(600) as usize).collect()),
            Kind::ClaimAcrossFlush => Op::ClaimAcrossFlush(self.rng.below(3000) as usize),
            Kind::Consume => Op::Consume(1 + self.rng.below(60) as usize, self.rng.below(5) != 0),
            Kind::Flush => Op::Flush,
            Kind::Retention => Op::Retention,
            Kind::SwitchPublisher => Op::SwitchPublisher,
            Kind::Reopen => Op::Reopen,
        }
    }

    /// Mixed sizes, and now and then the one size that fills the tail's
    /// segment exactly.
    fn record_len(&mut self) -> usize {
        let max = (SEGMENT / 8) as usize;
        match self.rng.below(10) {
            0..=3 => self.rng.below(256) as usize,
            4..=6 => 256 + self.rng.below(3840) as usize,
            7..=8 => 4096 + self.rng.below(max as u64 - 4095) as usize,
            _ => {
                let tail = self.exclusive.as_ref().map_or_else(|| self.journal().tail_position(), |p| p.tail_position());
                let rest = (SEGMENT - tail % SEGMENT) as usize;
                if (32..=max + 32).contains(&rest) { rest - 32 } else { self.rng.below(256) as usize }
            }
        }
    }

    fn apply(&mut self, op: &Op) -> backwater::Result<()> {
        match op {
            Op::Append(len) => self.append(*len),
            Op::Batch(lens) => self.append_batch(lens),
            Op::ClaimAcrossFlush(len) => self.claim_across_flush(*len),
            Op::Consume(limit, commit) => self.consume(*limit, *commit),
            Op::Flush => {
                self.journal().flush()?;
                self.promise_everything();
                Ok(())
            }
            Op::Retention => self.journal().apply_retention(),
            Op::SwitchPublisher => {
                self.exclusive = match self.exclusive.take() {
                    Some(_) => None,
                    None => Some(self.journal().exclusive_publisher()?),
                };
                Ok(())
            }
            Op::Reopen => {
                lock(&self.model).coverage.reopens += 1;
                let exclusive = self.exclusive.is_some();
                self.close();
                self.open();
                if exclusive && self.exclusive.is_none() {
                    self.exclusive = Some(self.journal().exclusive_publisher()?);
                }
                Ok(())
            }
        }
    }

    fn new_record(&mut self, len: usize) -> (u64, Vec<u8>) {
        self.next_record += 1;
        (self.next_record, common::payload(self.next_record, len))
    }

    fn append(&mut self, len: usize) -> backwater::Result<()> {
        let (seed, payload) = self.new_record(len);
        let (position, via) = match self.exclusive.as_mut() {
            Some(publisher) => (publisher.append(&payload)?, "exclusive append"),
            None => (self.journal().publisher().append(&payload)?, "append"),
        };
        self.appended(Appended { position, seed, len, via });
        Ok(())
    }

    fn append_batch(&mut self, lens: &[usize]) -> backwater::Result<()> {
        let records: Vec<(u64, Vec<u8>)> = lens.iter().map(|&len| self.new_record(len)).collect();
        let payloads: Vec<&[u8]> = records.iter().map(|(_, payload)| payload.as_slice()).collect();
        let mut position = self.journal().publisher().append_batch(&payloads)?;
        for (seed, payload) in &records {
            self.log.push(Appended { position, seed: *seed, len: payload.len(), via: "batch" });
            position = next_position(position, payload.len());
        }
        self.appended_all();
        Ok(())
    }

    fn claim_across_flush(&mut self, len: usize) -> backwater::Result<()> {
        let (seed, payload) = self.new_record(len);
        let publisher = self.journal().publisher();
        let mut claim = publisher.claim(len)?;
        claim.payload_mut().copy_from_slice(&payload);
        self.journal().flush()?;
        self.promise_everything();
        let position = claim.commit()?;
        self.appended(Appended { position, seed, len, via: "claim committed after a flush" });
        Ok(())
    }

    /// Records one append; under `Flush::Always` it is promised now.
    fn appended(&mut self, record: Appended) {
        self.log.push(record);
        self.appended_all();
    }

    fn appended_all(&mut self) {
        if self.variant.flush == FlushKind::Always {
            let records = self.log.len();
            self.set_promise(|promise| promise.records = records);
        }
    }

    fn consume(&mut self, limit: usize, commit: bool) -> backwater::Result<()> {
        let consumer = self.consumer.as_mut().expect("the workload's consumer");
        match consumer.poll(|_| {}, limit) {
            Ok(_) | Err(Error::Lost { .. }) => {}
            Err(other) => return Err(other),
        }
        if commit {
            consumer.commit()?;
            self.committed = Some(consumer.position());
            if self.variant.flush == FlushKind::Always {
                let committed = self.committed;
                self.set_promise(|promise| promise.cursor = committed);
            }
        }
        Ok(())
    }

    /// A `flush()` (or a flushing close) returned: everything so far is promised.
    fn promise_everything(&mut self) {
        let (records, cursor) = (self.log.len(), self.committed);
        self.set_promise(|promise| {
            promise.records = records;
            promise.cursor = cursor;
        });
    }

    fn set_promise(&self, change: impl FnOnce(&mut Promise)) {
        change(&mut lock(&self.model).promise);
    }

    fn crash_point(&self, what: String) {
        lock(&self.model).crash_point(what);
    }

    /// Recovers and checks every image built since the last call.
    fn check_pending(&mut self) {
        let pending = std::mem::take(&mut lock(&self.model).pending);
        for crash in pending {
            let dir = tempdir();
            media::write_image(&crash.image, dir.path()).expect("write the crash image");
            let problems = check::check_image(dir.path(), &self.log, &crash.promise);
            self.checked += 1;
            for problem in problems {
                let saved = save_first_of_kind(&problem.kind, &crash.image);
                self.failures.push(Failure {
                    seed: self.seed,
                    variant: self.variant,
                    crash_point: crash.crash_point,
                    what: crash.what.clone(),
                    problem,
                    saved,
                });
            }
        }
    }

    /// The live workload itself failed (not a crash image).
    fn fail_live(&mut self, step: usize, op: &Op, error: Error) {
        let problem = Problem { kind: "the live workload fails".into(), detail: format!("{op:?}: {error}") };
        let what = format!("op {step}");
        let crash_point = lock(&self.model).crash_points;
        self.failures.push(Failure { seed: self.seed, variant: self.variant, crash_point, what, problem, saved: None });
    }
}

/// The position after a record of `len` bytes at `position`.
fn next_position(position: u64, len: usize) -> u64 {
    let next = position + backwater::frame::aligned_frame_len(len) as u64;
    if next.is_multiple_of(SEGMENT) { next + backwater::segment::SEGMENT_HEADER_LEN } else { next }
}

/// The machine restarted: no process of before is alive. The process table
/// in `journal.meta` (pid, start time) names this very test process, so it
/// is cleared, as a reboot would make every entry stale.
fn reboot(mut image: Image) -> Image {
    const PROCESS_TABLE: std::ops::Range<usize> = 512..512 + 64 * 16;
    if let Some(Some(meta)) = image.get_mut(Path::new("journal.meta"))
        && meta.len() >= PROCESS_TABLE.end
    {
        meta[PROCESS_TABLE].fill(0);
    }
    image
}

/// Crash images and workloads live in memory-backed storage when there is
/// some: the model, not the device, decides what is durable.
fn tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() };
    dir.expect("create a temporary directory")
}

/// Keeps a pristine copy of the first image of each kind of failure, for
/// `backwater verify` and `Journal::open` by hand.
fn save_first_of_kind(kind: &str, image: &Image) -> Option<PathBuf> {
    static SAVED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut saved = lock(&SAVED);
    if saved.iter().any(|k| k == kind) {
        return None;
    }
    saved.push(kind.to_string());
    let slug: String = kind.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("powerloss").join(slug);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).ok()?;
    media::write_image(image, &dir).ok()?;
    Some(dir)
}

// ------------------------------------------------------------------- tests

fn images_wanted() -> usize {
    std::env::var("POWERLOSS_IMAGES").ok().and_then(|n| n.parse().ok()).unwrap_or(DEFAULT_IMAGES)
}

fn seeds(images: usize) -> Vec<u64> {
    if let Some(seed) = std::env::var("POWERLOSS_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![seed];
    }
    (0..images.div_ceil(IMAGES_PER_WORKLOAD) as u64).map(|n| SEED_BASE + n).collect()
}

#[test]
fn every_crash_image_recovers_with_what_was_promised() {
    let started = Instant::now();
    let images = images_wanted();
    let (mut coverage, mut failures) = (Coverage::default(), Vec::new());
    for seed in seeds(images) {
        let (c, f) = Workload::start(seed, IMAGES_PER_WORKLOAD).run();
        coverage += c;
        failures.extend(f);
    }
    eprintln!(
        "power-loss model: {} crash images from {} crash points in {:.1} s\n{coverage:?}",
        coverage.images,
        coverage.crash_points,
        started.elapsed().as_secs_f64()
    );
    report(&failures);
    let one_seed = std::env::var("POWERLOSS_SEED").is_ok();
    assert!(one_seed || coverage.images >= images, "too few images: {}", coverage.images);
    assert!(failures.is_empty(), "{} crash images failed; see the summary above", failures.len());
}

/// Prints failures grouped by kind: count, and a few with their seeds.
fn report(failures: &[Failure]) {
    let mut kinds: BTreeMap<&str, Vec<&Failure>> = BTreeMap::new();
    for failure in failures {
        kinds.entry(&failure.problem.kind).or_default().push(failure);
    }
    for (kind, all) in kinds {
        let seeds: std::collections::BTreeSet<u64> = all.iter().map(|f| f.seed - SEED_BASE).collect();
        eprintln!("\n=== {kind}: {} image(s), workloads {seeds:?} (+ {SEED_BASE})", all.len());
        for failure in all.iter().take(3) {
            eprintln!(
                "  POWERLOSS_SEED={} ({:?}) crash point {} ({}): {}",
                failure.seed, failure.variant, failure.crash_point, failure.what, failure.problem.detail
            );
            if let Some(saved) = &failure.saved {
                eprintln!("    image kept at {}", saved.display());
            }
        }
    }
}

// ------------------------------------------------ minimal reproductions

/// A journal under the model for a short scripted workload, and scripted
/// crash images of it: deterministic.
struct Scripted {
    dir: tempfile::TempDir,
    model: Arc<Mutex<Model>>,
    log: Vec<Appended>,
}

impl Scripted {
    fn new() -> Scripted {
        install_hook();
        let dir = tempdir();
        let model = Arc::new(Mutex::new(Model {
            root: dir.path().to_path_buf(),
            media: Media::default(),
            rng: Rng(0),
            promise: Promise::default(),
            crash_points: 0,
            generated: 0,
            quota: 0,
            pending: Vec::new(),
            coverage: Coverage::default(),
            capture: None,
        }));
        lock(&MODELS).push((dir.path().to_path_buf(), Arc::clone(&model)));
        Scripted { dir, model, log: Vec::new() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Logs a record appended at `position` with `payload(seed, len)`.
    fn logged(&mut self, position: u64, seed: u64, len: usize) -> u64 {
        self.log.push(Appended { position, seed, len, via: "append" });
        position
    }

    fn next_payload(&self, len: usize) -> (u64, Vec<u8>) {
        let seed = self.log.len() as u64 + 1;
        (seed, common::payload(seed, len))
    }

    /// Appends a record of `len` bytes through `publisher`, logged.
    fn append(&mut self, publisher: &backwater::Publisher, len: usize) -> u64 {
        let (seed, payload) = self.next_payload(len);
        let position = publisher.append(&payload).expect("append");
        self.logged(position, seed, len)
    }

    fn append_exclusive(&mut self, publisher: &mut ExclusivePublisher, len: usize) -> u64 {
        let (seed, payload) = self.next_payload(len);
        let position = publisher.append(&payload).expect("append");
        self.logged(position, seed, len)
    }

    /// Everything appended so far (and `cursor`) is promised.
    fn promise_all(&self, cursor: Option<u64>) {
        let mut model = lock(&self.model);
        model.promise.records = self.log.len();
        model.promise.cursor = cursor;
    }

    /// Power loss now, leaving `script`'s image: what its recovery finds.
    fn power_loss(&self, script: media::Script) -> Vec<Problem> {
        let (image, promise, _) = lock(&self.model).image_now(&mut Choice::Script(&script));
        self.recover(&image, &promise)
    }

    /// Power loss at the `skip + 1`th barrier whose description contains `at`.
    fn power_loss_at(&self, at: &str, skip: usize, script: media::Script) {
        lock(&self.model).capture = Some(Capture { at: at.into(), skip, script, taken: None });
    }

    /// What recovery of the image `power_loss_at` took finds.
    fn captured(&self) -> Vec<Problem> {
        let taken = lock(&self.model).capture.as_mut().and_then(|capture| capture.taken.take());
        let (image, promise, what) = taken.expect("the armed barrier happened");
        eprintln!("power lost at: {what}");
        self.recover(&image, &promise)
    }

    fn recover(&self, image: &Image, promise: &Promise) -> Vec<Problem> {
        let dir = tempdir();
        media::write_image(image, dir.path()).expect("write the crash image");
        check::check_image(dir.path(), &self.log, promise)
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        lock(&MODELS).retain(|(root, _)| root != self.dir.path());
    }
}

fn small(flush: Flush) -> Config {
    Config::default().segment_size(SEGMENT).min_free_disk(0).flush(flush)
}

fn explicit() -> Flush {
    Flush::Interval(Duration::from_secs(3600))
}
