//! The random workloads: one journal each, in one of 24 variants (flush
//! policy × ring or retention × publisher kind, from the seed), driven by a
//! seeded random sequence of operations while its model builds crash images;
//! after each operation the images built meanwhile are recovered and checked.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use backwater::{Config, Consumer, Error, ExclusivePublisher, Flush, Journal, ReservingPublisher, WhenFull};

use crate::SEGMENT;
use crate::check::{self, Appended, CURSOR, Problem, Promise};
use crate::common::{self, Rng};
use crate::media::{self, Image};
use crate::model::{Coverage, Loss, Registered, lock, tempdir};

/// Operations at most per workload (it stops once it has its images).
const MAX_STEPS: usize = 3000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushKind {
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
pub enum Publishing {
    Shared,
    Exclusive,
    /// Switches between the two now and then.
    Mixed,
}

#[derive(Clone, Copy, Debug)]
pub struct Variant {
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
    /// The first operation.
    Open,
    Append(usize),
    Batch(Vec<usize>),
    /// Claim, `flush()` while the claim is open, then commit.
    ClaimAcrossFlush(usize),
    /// Claim, then commit from another thread in the middle of a `flush()`.
    CommitDuringFlush(usize),
    /// Poll up to n records, then maybe commit.
    Consume(usize, bool),
    Flush,
    Retention,
    SwitchPublisher,
    /// Shared appends through a `ReservingPublisher` from now on, or no longer.
    SwitchReserving,
    Reopen,
}

/// The kinds of `Op`, for weighting.
#[derive(Clone, Copy)]
enum Kind {
    Append,
    Batch,
    ClaimAcrossFlush,
    CommitDuringFlush,
    Consume,
    Flush,
    Retention,
    SwitchPublisher,
    SwitchReserving,
    Reopen,
}

/// A failure, with what reproduces it.
#[derive(Clone, Debug)]
pub struct Failure {
    pub seed: u64,
    pub variant: Variant,
    pub crash_point: usize,
    pub what: String,
    pub problem: Problem,
    /// A copy of the image, for the first failure of its kind.
    pub saved: Option<PathBuf>,
}

/// One random workload against one journal.
pub struct Workload {
    seed: u64,
    variant: Variant,
    loss: Loss,
    rng: Rng,
    model: Registered,
    dir: tempfile::TempDir,
    journal: Option<Journal>,
    exclusive: Option<ExclusivePublisher>,
    /// While set, shared appends go through it; any other shared append
    /// (batch, claim) drops it first, so that the log's order is the
    /// positions' order.
    reserving: Option<ReservingPublisher>,
    consumer: Option<Consumer>,
    log: Vec<Appended>,
    next_record: u64,
    /// The cursor's last commit (volatile until flushed).
    committed: Option<u64>,
    checked: usize,
    failures: Vec<Failure>,
}

impl Workload {
    /// Workload `seed`, which builds `quota` crash images of `loss`.
    pub fn start(seed: u64, quota: usize, loss: Loss) -> Workload {
        let dir = tempdir();
        let model = Registered::new(dir.path(), Rng(seed ^ 0xC4A5_11ED), quota, loss);
        Workload {
            seed,
            variant: Variant::of(seed),
            loss,
            rng: Rng(seed),
            dir,
            model,
            journal: None,
            exclusive: None,
            reserving: None,
            consumer: None,
            log: Vec::new(),
            next_record: seed << 20,
            committed: None,
            checked: 0,
            failures: Vec::new(),
        }
    }

    /// Runs until the model has its images; returns what it covered and
    /// every failure.
    pub fn run(mut self) -> (Coverage, Vec<Failure>) {
        for step in 0..MAX_STEPS {
            if self.model.lock().quota_reached() {
                break;
            }
            let op = if step == 0 { Op::Open } else { self.next_op() };
            if std::env::var("POWERLOSS_TRACE").is_ok() {
                let tail = self.journal.as_ref().map(Journal::tail_position);
                eprintln!("op {step}: {op:?} (tail {tail:?}, {} records)", self.log.len());
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
        let mut model = self.model.lock();
        model.coverage.crash_points = model.crash_points;
        model.coverage.images = self.checked;
        (model.coverage, std::mem::take(&mut self.failures))
    }

    fn note_coverage(&self) {
        let Some(stats) = self.journal.as_ref().map(Journal::stats) else { return };
        let mut model = self.model.lock();
        model.coverage.rotations += stats.tail_position / SEGMENT;
        model.coverage.deletions += stats.first_position / SEGMENT;
        model.coverage.ring_drops += usize::from(stats.lost_bytes > 0);
    }

    fn journal(&self) -> &Journal {
        self.journal.as_ref().expect("the workload's journal is open")
    }

    fn open(&mut self) -> backwater::Result<()> {
        let config = self.variant.config(&mut self.rng);
        let journal = Journal::open(self.dir.path(), config)?;
        self.consumer = Some(journal.consumer(CURSOR)?);
        if self.variant.publishing == Publishing::Exclusive {
            self.exclusive = Some(journal.exclusive_publisher()?);
        }
        self.journal = Some(journal);
        Ok(())
    }

    /// Drops every handle: the last one flushes unless the policy is `Never`.
    fn close(&mut self) {
        self.reserving = None;
        self.consumer = None;
        self.exclusive = None;
        self.journal = None;
        if self.variant.flush != FlushKind::Never || self.loss == Loss::Kill {
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
            (if shared { 20 } else { 0 }, Kind::CommitDuringFlush),
            (consume, Kind::Consume),
            (50, Kind::Flush),
            (80, Kind::Retention),
            (if mixed { 50 } else { 0 }, Kind::SwitchPublisher),
            (if shared { 30 } else { 0 }, Kind::SwitchReserving),
            (3, Kind::Reopen),
        ];
        let total: u64 = weights.iter().map(|(w, _)| w).sum();
        let mut pick = self.rng.below(total);
        let kind = weights
            .iter()
            .find(|(w, _)| {
                pick < *w || {
                    pick -= w;
                    false
                }
            })
            .map_or(Kind::Append, |(_, k)| *k);
        match kind {
            Kind::Append => Op::Append(self.record_len()),
            Kind::Batch => Op::Batch((0..1 + self.rng.below(6)).map(|_| self.rng.below(600) as usize).collect()),
            Kind::ClaimAcrossFlush => Op::ClaimAcrossFlush(self.rng.below(3000) as usize),
            Kind::CommitDuringFlush => Op::CommitDuringFlush(self.rng.below(3000) as usize),
            Kind::Consume => Op::Consume(1 + self.rng.below(60) as usize, self.rng.below(5) != 0),
            Kind::Flush => Op::Flush,
            Kind::Retention => Op::Retention,
            Kind::SwitchPublisher => Op::SwitchPublisher,
            Kind::SwitchReserving => Op::SwitchReserving,
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
                let tail =
                    self.exclusive.as_ref().map_or_else(|| self.journal().tail_position(), |p| p.tail_position());
                let rest = (SEGMENT - tail % SEGMENT) as usize;
                if (32..=max + 32).contains(&rest) { rest - 32 } else { self.rng.below(256) as usize }
            }
        }
    }

    fn apply(&mut self, op: &Op) -> backwater::Result<()> {
        match op {
            Op::Open => self.open(),
            Op::Append(len) => self.append(*len),
            Op::Batch(lens) => {
                self.reserving = None;
                self.append_batch(lens)
            }
            Op::ClaimAcrossFlush(len) => {
                self.reserving = None;
                self.claim_across_flush(*len)
            }
            Op::CommitDuringFlush(len) => {
                self.reserving = None;
                self.commit_during_flush(*len)
            }
            Op::Consume(limit, commit) => self.consume(*limit, *commit),
            Op::Flush => {
                self.journal().flush()?;
                self.promise_everything();
                Ok(())
            }
            Op::Retention => self.journal().apply_retention(),
            Op::SwitchPublisher => {
                self.reserving = None;
                self.exclusive = match self.exclusive.take() {
                    Some(_) => None,
                    None => Some(self.journal().exclusive_publisher()?),
                };
                Ok(())
            }
            Op::SwitchReserving => {
                self.reserving = match self.reserving.take() {
                    Some(_) => None,
                    None => Some(self.journal().publisher().reserving()),
                };
                Ok(())
            }
            Op::Reopen => {
                self.model.lock().coverage.reopens += 1;
                let exclusive = self.exclusive.is_some();
                self.close();
                self.open()?;
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
            None => match self.reserving.as_mut() {
                Some(reserving) => {
                    let position = reserving.append(&payload)?;
                    self.model.lock().coverage.reserving_appends += 1;
                    (position, "reserving append")
                }
                None => (self.journal().publisher().append(&payload)?, "append"),
            },
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
        let Some(claim) = self.filled_claim(&publisher, &payload)? else { return Ok(()) };
        self.journal().flush()?;
        self.promise_everything();
        let position = claim.commit()?;
        self.appended(Appended { position, seed, len, via: "claim committed after a flush" });
        Ok(())
    }

    /// A claim of `payload`'s length, filled with it; `None` when a tiny
    /// ring refuses it.
    fn filled_claim<'p>(
        &self,
        publisher: &'p backwater::Publisher,
        payload: &[u8],
    ) -> backwater::Result<Option<backwater::Claim<'p>>> {
        let mut claim = match publisher.claim(payload.len()) {
            Ok(claim) => claim,
            // Deleted segments a reader or an idle claim still maps count
            // against the budget until unmapped: a tiny ring can refuse a
            // non-blocking claim meanwhile (nothing was appended).
            Err(backwater::OfferError::BackPressured { .. }) if self.variant.ring => return Ok(None),
            Err(other) => return Err(other.into()),
        };
        claim.payload_mut().copy_from_slice(payload);
        Ok(Some(claim))
    }

    /// Commits a claim from another thread right after the first msync of
    /// a segment in the middle of a `flush()` (in this thread, or the
    /// housekeeper's), a moment the housekeeper's timing reaches only now
    /// and then. The flush promises what was appended before it started.
    fn commit_during_flush(&mut self, len: usize) -> backwater::Result<()> {
        let (seed, payload) = self.new_record(len);
        let publisher = self.journal().publisher();
        let Some(claim) = self.filled_claim(&publisher, &payload)? else { return Ok(()) };
        // Segment files, and only they, are named by 20 digits.
        let seen = self.model.commit_during_flush("msync 0", self.journal(), claim);
        let (flushed, position) = (seen.flushed, seen.position);
        flushed?;
        self.promise_everything();
        let position = position?;
        self.appended(Appended { position, seed, len, via: "claim committed during a flush" });
        Ok(())
    }

    /// Records one append (promised now if `promised_on_return`).
    fn appended(&mut self, record: Appended) {
        self.log.push(record);
        self.appended_all();
    }

    fn appended_all(&mut self) {
        if self.promised_on_return() {
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
            if self.promised_on_return() {
                let committed = self.committed;
                self.set_promise(|promise| promise.cursor = committed);
            }
        }
        Ok(())
    }

    /// Whether an append or commit is promised as soon as it returns: under
    /// `Flush::Always`, and always when the crash is a SIGKILL.
    fn promised_on_return(&self) -> bool {
        self.variant.flush == FlushKind::Always || self.loss == Loss::Kill
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
        change(&mut self.model.lock().promise);
    }

    fn crash_point(&self, what: String) {
        self.model.lock().crash_point(what);
    }

    /// Recovers and checks every image built since the last call.
    fn check_pending(&mut self) {
        let pending = std::mem::take(&mut self.model.lock().pending);
        for crash in pending {
            let dir = tempdir();
            media::write_image(&crash.image, dir.path()).expect("write the crash image");
            let problems = check::check_image(dir.path(), &self.log, &crash.promise);
            self.checked += 1;
            for mut problem in problems {
                if self.loss == Loss::Kill {
                    problem.kind = format!("SIGKILL: {}", problem.kind);
                }
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
        let crash_point = self.model.lock().crash_points;
        self.failures.push(Failure { seed: self.seed, variant: self.variant, crash_point, what, problem, saved: None });
    }
}

/// The position after a record of `len` bytes at `position`.
fn next_position(position: u64, len: usize) -> u64 {
    let next = position + backwater::frame::aligned_frame_len(len) as u64;
    if next.is_multiple_of(SEGMENT) { next + backwater::segment::SEGMENT_HEADER_LEN } else { next }
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
