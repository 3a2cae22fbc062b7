//! The recycling soak: an `ExclusivePublisher` process on a small
//! `DropOldest` ring, so consumed segment files are recycled continually,
//! and three reader processes that check every payload they read: an
//! anonymous consumer of a read-only handle, one of a read-write handle, and
//! a durable consumer that commits after every poll (so retention recycles
//! what it consumed, besides the drops).
//!
//! At random a reader holds a record inside its poll handler and says so;
//! the soak SIGSTOPs it for 0.1-3 s while the ring moves on by many segments,
//! then SIGCONTs it (or SIGKILLs it, now and then); the handler reads the
//! payload again, byte by volatile byte, and says whether it changed. Readers
//! are also stopped for 0.1-1 s at arbitrary points, and every process is
//! SIGKILLed and restarted at random; a reader resumes where the last of its
//! line said it was (the durable one at its cursor). At the end each reader
//! line is drained to the tail, and then every record a publisher reported
//! committed must have been read by every line at the position reported, or
//! lie in a range the line was told it lost (`Error::Lost`); no held payload
//! may have changed, no payload may fail its check, the tail may not have
//! stood still for long, and `verify` must be clean.

use std::collections::HashMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use backwater::{Config, Error, Journal, Record, Seek, WhenFull};
use rustix::process::{Pid, Signal};

use crate::payload::{self, Rng};
use crate::soak::{Committed, LostRanges, Res, writer_command};

/// 64 KiB segments, 8 of them: the ring wraps every 512 KiB.
const SEGMENT: u64 = 64 << 10;
const BUDGET_SEGMENTS: u64 = 8;
/// Records of 24 B to 1 KiB at 12,000 a second, about 6.5 MiB/s: the
/// shortest stop (0.1 s) sees more than a whole ring of segments recycled.
const RATE: &str = "12000";
const MAX_RECORD: &str = "1024";
const READERS: [Reader; 3] = [
    Reader { name: "read-only", read_only: true, durable: false, hold_every_ms: 1500 },
    Reader { name: "read-write", read_only: false, durable: false, hold_every_ms: 3000 },
    Reader { name: "cursor", read_only: false, durable: true, hold_every_ms: 2000 },
];
/// The longest the tail may stand still while the soak runs. A read-write
/// reader process stopped while its housekeeper holds the journal lock
/// stalls the publisher for the whole stop (up to 3 s here; see
/// `tests/soak_findings.rs`); longer is a wedge.
const STALL_LIMIT: Duration = Duration::from_secs(10);
/// The longest the tail may stand still while no read-write reader is stopped.
const UNEXPLAINED_STALL_LIMIT: Duration = Duration::from_secs(2);
/// The longest a drain to the tail may take: a reader that never gets
/// there is wedged.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy)]
struct Reader {
    name: &'static str,
    read_only: bool,
    /// Reads with the durable consumer `name` (else an anonymous one).
    durable: bool,
    /// How long it reads, on average, between two holds (0: never holds).
    hold_every_ms: u64,
}

/// `read`: the reader process of the recycling soak.
#[derive(clap::Args)]
pub struct ReadArgs {
    dir: PathBuf,
    /// The position to start at (moved to the oldest record, with a `lost`
    /// line, when it was deleted meanwhile)
    #[arg(long)]
    from: u64,
    /// Read through `Journal::open_read_only` (default: a read-write handle)
    #[arg(long)]
    read_only: bool,
    /// Read with this durable consumer, from its cursor (not `--from`),
    /// committing after every poll
    #[arg(long, conflicts_with = "read_only")]
    cursor: Option<String>,
    /// Hold a record about this often, waiting inside the handler for a
    /// line on stdin (0: never)
    #[arg(long, default_value = "0")]
    hold_every_ms: u64,
    /// Stop at the tail (the drain once the soak's writers are gone)
    #[arg(long)]
    drain: bool,
}

/// Reads from `--from` (or the cursor), printing per record `r POSITION
/// NEXT ID SEQ` (or `bad POSITION NEXT WHY` when the payload fails its
/// check), `lost FROM TO` per `Error::Lost`, and around a hold `holding
/// POSITION` then `held POSITION same|changed`; any other error is printed
/// as `error WHY` and ends the process.
pub fn read(args: ReadArgs) -> Res<()> {
    let journal =
        if args.read_only { Journal::open_read_only(&args.dir)? } else { Journal::open(&args.dir, Config::default())? };
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut consumer = match &args.cursor {
        Some(name) => journal.existing_consumer(name)?,
        None => journal.anonymous_consumer(),
    };
    if args.cursor.is_none() && !start_at(&journal, &mut consumer, args.from, args.drain, &mut out)? {
        return Ok(());
    }
    let mut holds = Holds::new(args.hold_every_ms);
    loop {
        let polled = consumer.poll_wait(|record| take(&record, &mut holds, &mut out), 256, Duration::from_millis(50));
        match polled {
            Ok(0) if args.drain && consumer.lag() == 0 => break,
            Ok(_) => {}
            Err(Error::Lost { from, to }) => writeln!(out, "lost {from} {to}")?,
            Err(other) => {
                writeln!(out, "error {other}")?;
                out.flush()?;
                return Err(other.into());
            }
        }
        // Said before the cursor moves past it: a kill in between
        // redelivers, never loses.
        out.flush()?;
        consumer.commit()?;
    }
    Ok(out.flush()?)
}

/// Moves a new consumer to `from`; to the oldest record, with a `lost`
/// line, when `from` was deleted. `false` when a drain has nothing to read.
fn start_at(
    journal: &Journal,
    consumer: &mut backwater::Consumer,
    from: u64,
    drain: bool,
    out: &mut impl Write,
) -> Res<bool> {
    // The last reader may have read a frame committed just before its
    // publisher died, before the tail word moved past it: `from` is past
    // the tail until the next publisher settles the tail.
    let deadline = Instant::now() + Duration::from_secs(10);
    while from > journal.tail_position() {
        if drain {
            return Ok(false);
        }
        if Instant::now() >= deadline {
            return Err(format!("position {from} stayed past the tail {}", journal.tail_position()).into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    match consumer.seek(Seek::Position(from)) {
        Ok(()) => Ok(true),
        Err(error) if from >= journal.first_position() => Err(error.into()),
        Err(_) => {
            consumer.seek(Seek::Start)?;
            writeln!(out, "lost {from} {}", consumer.position())?;
            Ok(true)
        }
    }
}

/// When the next hold is due.
struct Holds {
    every_ms: u64,
    next: Instant,
    rng: Rng,
}

impl Holds {
    fn new(every_ms: u64) -> Holds {
        let mut holds = Holds { every_ms, next: Instant::now(), rng: Rng::from_entropy() };
        holds.schedule();
        holds
    }

    fn schedule(&mut self) {
        self.next = Instant::now() + self.rng.millis(self.every_ms / 2, self.every_ms * 3 / 2);
    }

    fn due(&mut self) -> bool {
        if self.every_ms == 0 || Instant::now() < self.next {
            return false;
        }
        self.schedule();
        true
    }
}

/// The handler: checks and reports one record, and holds it when a hold is due.
fn take(record: &Record<'_>, holds: &mut Holds, out: &mut impl Write) {
    let (position, next) = (record.position(), record.next_position());
    let _ = match payload::check(record.payload()) {
        Ok((id, seq)) => writeln!(out, "r {position} {next} {id} {seq}"),
        Err(why) => writeln!(out, "bad {position} {next} {why}"),
    };
    if holds.due() {
        let _ = hold(record.payload(), position, out);
    }
}

/// Says `holding`, waits for a line on stdin (the soak stops and continues
/// this process meanwhile), then reads the payload again.
fn hold(payload: &[u8], position: u64, out: &mut impl Write) -> std::io::Result<()> {
    let before = payload.to_vec();
    writeln!(out, "holding {position}")?;
    out.flush()?;
    std::io::stdin().lock().read_line(&mut String::new())?;
    let verdict = if read_again(payload) == before { "same" } else { "changed" };
    writeln!(out, "held {position} {verdict}")
}

/// The bytes behind `payload` as they are now: volatile reads, so that the
/// compiler cannot answer from what it read before (a `&[u8]` is assumed
/// not to change, which is exactly the promise under test).
fn read_again(payload: &[u8]) -> Vec<u8> {
    // SAFETY: every pointer comes from the slice: in bounds and aligned.
    payload.iter().map(|byte| unsafe { std::ptr::read_volatile(byte) }).collect()
}

/// What one reader line (a reader and its restarts) reported.
struct ReaderLine {
    reader: Reader,
    /// Where the next restart starts: after the last record read or lost.
    resume: u64,
    /// Writer id → the position each of its records was read at, by seq (0: unread).
    reads: HashMap<u32, Vec<u64>>,
    lost: LostRanges,
    deliveries: u64,
    /// A record read at two positions.
    moved: Vec<String>,
    bad: Vec<String>,
    errors: Vec<String>,
    held: u64,
    changed: Vec<u64>,
    starts: u64,
    unexpected_exits: Vec<String>,
}

impl ReaderLine {
    fn new(reader: Reader, first: u64) -> ReaderLine {
        ReaderLine {
            reader,
            resume: first,
            reads: HashMap::new(),
            lost: LostRanges::default(),
            deliveries: 0,
            moved: vec![],
            bad: vec![],
            errors: vec![],
            held: 0,
            changed: vec![],
            starts: 0,
            unexpected_exits: vec![],
        }
    }

    /// Takes one line of the reader's output; what the supervisor must hear
    /// of (`holding`, `held`).
    fn take(&mut self, line: &str) -> Option<Event> {
        let fields: Vec<&str> = line.splitn(5, ' ').collect();
        let number = |at: usize| fields.get(at).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        match fields[0] {
            "r" => self.read(number(1), number(2), number(3) as u32, number(4)),
            "bad" => {
                self.resume = number(2);
                self.bad.push(line.to_string());
            }
            "lost" => {
                self.lost.add(number(1), number(2));
                self.resume = number(2);
            }
            "holding" => return Some(Event::Holding(number(1))),
            "held" => {
                self.held += 1;
                if fields.get(2) != Some(&"same") {
                    self.changed.push(number(1));
                }
                return Some(Event::Held);
            }
            _ => self.errors.push(line.to_string()),
        }
        None
    }

    fn read(&mut self, position: u64, next: u64, id: u32, seq: u64) {
        self.resume = next;
        self.deliveries += 1;
        let positions = self.reads.entry(id).or_default();
        let seq = seq as usize;
        if positions.len() <= seq {
            positions.resize(seq + 1, 0);
        }
        if positions[seq] != 0 && positions[seq] != position {
            self.moved.push(format!("writer {id} seq {seq} read at {} and at {position}", positions[seq]));
        }
        positions[seq] = position;
    }

    fn position_read(&self, id: u32, seq: usize) -> u64 {
        self.reads.get(&id).and_then(|positions| positions.get(seq)).copied().unwrap_or(0)
    }
}

/// Reads a reader's output into its line, asking the supervisor to stop
/// the reader at each `holding`; gives the line back when the output ends.
fn parse_output(stdout: ChildStdout, mut line: ReaderLine, events: Sender<Event>) {
    for text in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(event) = line.take(&text) {
            let _ = events.send(event);
        }
    }
    let _ = events.send(Event::Ended(Box::new(line)));
}

/// What a reader's supervisor hears from its output thread.
enum Event {
    /// The reader holds the record at this position, waiting to be stopped.
    Holding(u64),
    /// It read the held payload again after the stop.
    Held,
    /// Its output ended: the line so far.
    Ended(Box<ReaderLine>),
}

/// The longest a continued reader may take to read its held payload again.
const VERDICT_LIMIT: Duration = Duration::from_secs(10);

/// What the stops of the readers saw.
#[derive(Default)]
struct Stops {
    count: u64,
    killed_while_stopped: u64,
    /// Stops at whatever point the reader had reached (not holding).
    anywhere: u64,
    /// Segments the tail moved through during each stop.
    segments_passed: Vec<u64>,
    /// Segment files that became another segment during each stop.
    files_recycled: Vec<u64>,
    /// Stops during which the held record's segment left the ring.
    held_segment_deleted: u64,
    /// When the reader was stopped, every time.
    spans: Vec<Span>,
    failures: Vec<String>,
}

/// A stretch of time.
#[derive(Clone, Copy)]
struct Span {
    from: Instant,
    to: Instant,
}

impl Span {
    fn since(from: Instant) -> Span {
        Span { from, to: Instant::now() }
    }

    fn len(&self) -> Duration {
        self.to.saturating_duration_since(self.from)
    }

    fn overlap(&self, other: &Span) -> Duration {
        self.to.min(other.to).saturating_duration_since(self.from.max(other.from))
    }
}

/// Where the soak runs, shared by its supervisors.
struct Ring {
    exe: PathBuf,
    dir: PathBuf,
    work: PathBuf,
    deadline: Instant,
    observer: Journal,
    /// Segment files the watcher saw recycled so far.
    files_recycled: AtomicU64,
}

impl Ring {
    fn stderr_file(&self, name: &str) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new().create(true).append(true).open(self.work.join(format!("{name}.stderr")))
    }

    fn last_stderr_line(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.work.join(format!("{name}.stderr"))).unwrap_or_default();
        text.lines().last().unwrap_or("").to_string()
    }

    /// A reader process from `from`, its output and input piped.
    fn spawn_reader(&self, reader: Reader, from: u64, drain: bool) -> std::io::Result<Child> {
        let mut command = Command::new(&self.exe);
        command.arg("read").arg(&self.dir).args(["--from", &from.to_string()]);
        command.args(["--hold-every-ms", &reader.hold_every_ms.to_string()]);
        if reader.read_only {
            command.arg("--read-only");
        }
        if reader.durable {
            command.args(["--cursor", reader.name]);
        }
        if drain {
            command.arg("--drain");
        }
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(self.stderr_file(reader.name)?).spawn()
    }
}

/// The exclusive publisher's supervisor: one writer process after another,
/// each SIGKILLed after 1-5 s, until the deadline.
fn run_writers(ring: &Ring) -> Res<(Committed, Vec<Instant>, Vec<String>)> {
    let (mut committed, mut rng, mut failures) = (Committed::default(), Rng::from_entropy(), vec![]);
    let (mut id, mut starts) = (0, vec![]);
    while Instant::now() < ring.deadline {
        id += 1;
        starts.push(Instant::now());
        let mut command = writer_command(&ring.exe, &ring.dir, id);
        command.args(["--exclusive", "--rate", RATE, "--size", "24", "--max-size", MAX_RECORD]);
        command.args(["--segment-size", &SEGMENT.to_string()]);
        let mut child = Reaped(command.stderr(ring.stderr_file("writer")?).spawn()?);
        let positions = crate::soak::positions_of(&mut child.0);
        let lives = ring.deadline.min(Instant::now() + rng.millis(1000, 5000));
        match positions.recv_timeout(lives.saturating_duration_since(Instant::now())) {
            Ok(positions) => {
                let status = child.0.wait()?;
                failures.push(format!("writer {id} ended by itself ({status}): {}", ring.last_stderr_line("writer")));
                committed.add(id, positions);
            }
            Err(_) => {
                kill(&mut child.0);
                committed.add(id, positions.recv()?);
            }
        }
    }
    Ok((committed, starts, failures))
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A child process SIGKILLed when dropped: none outlives a supervisor
/// that gives up on an error.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        kill(&mut self.0);
    }
}

/// A reader's supervisor: one reader process after another, each
/// SIGKILLed after 3-10 s, stopped and continued at each hold, until the
/// deadline.
fn run_reader(ring: &Ring, reader: Reader, first: u64) -> Res<(ReaderLine, Stops)> {
    let (mut line, mut stops, mut rng) = (ReaderLine::new(reader, first), Stops::default(), Rng::from_entropy());
    while Instant::now() < ring.deadline {
        line.starts += 1;
        let mut child = Reaped(ring.spawn_reader(reader, line.resume, false)?);
        let (stdin, events) = watch_reader(&mut child.0, line)?;
        let lives = ring.deadline.min(Instant::now() + rng.millis(3000, 10_000));
        line = supervise_reader(ring, &mut child.0, stdin, &events, lives, &mut stops, &mut rng)?;
    }
    Ok((line, stops))
}

/// Starts reading the reader's output on a thread of its own.
fn watch_reader(child: &mut Child, line: ReaderLine) -> Res<(ChildStdin, Receiver<Event>)> {
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    let (sender, events) = mpsc::channel();
    std::thread::spawn(move || parse_output(stdout, line, sender));
    Ok((stdin, events))
}

/// Runs one reader process until `lives` (pausing it at each hold, and
/// after it, waiting for its verdict on the held payload; and now and then
/// wherever it is) or its own end, and returns its line.
fn supervise_reader(
    ring: &Ring,
    child: &mut Child,
    mut stdin: ChildStdin,
    events: &Receiver<Event>,
    lives: Instant,
    stops: &mut Stops,
    rng: &mut Rng,
) -> Res<ReaderLine> {
    let mut verdict_due: Option<Instant> = None;
    let mut stop_at = Instant::now() + rng.millis(500, 4000);
    loop {
        let until = verdict_due.unwrap_or(lives.min(stop_at));
        match events.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(Event::Holding(position)) => {
                if !pause(ring, child, position, stops, rng)? {
                    break;
                }
                // The reader may be gone meanwhile (its end arrives next).
                let _ = writeln!(stdin, "go");
                verdict_due = Some(Instant::now() + VERDICT_LIMIT);
            }
            Ok(Event::Held) => verdict_due = None,
            Err(RecvTimeoutError::Timeout) if verdict_due.is_some() => {
                stops.failures.push(format!("no verdict on a held payload after {VERDICT_LIMIT:?}"));
                break;
            }
            Err(RecvTimeoutError::Timeout) if Instant::now() < lives => {
                stop_anywhere(child, stops, rng)?;
                stop_at = Instant::now() + rng.millis(500, 4000);
            }
            Ok(Event::Ended(mut line)) => {
                let status = child.wait()?;
                let name = line.reader.name;
                line.unexpected_exits.push(format!("{status}: {}", ring.last_stderr_line(name)));
                return Ok(*line);
            }
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => return Err("a reader's output thread vanished".into()),
        }
    }
    kill(child);
    wait_for_end(events)
}

/// The line back from the output thread once the killed reader's output ended.
fn wait_for_end(events: &Receiver<Event>) -> Res<ReaderLine> {
    loop {
        if let Event::Ended(line) = events.recv()? {
            return Ok(*line);
        }
    }
}

/// SIGSTOPs a reader that holds the record at `position` for 0.1-3 s while
/// the ring moves on; then SIGCONTs it (`true`), or, one time in five,
/// leaves it stopped for the caller to SIGKILL (`false`).
fn pause(ring: &Ring, child: &Child, position: u64, stops: &mut Stops, rng: &mut Rng) -> Res<bool> {
    let (pid, stopped) = (stop(child, stops)?, Instant::now());
    stops.count += 1;
    let (tail, recycled) = (ring.observer.tail_position(), ring.files_recycled.load(Ordering::Relaxed));
    std::thread::sleep(rng.millis(100, 3000));
    stops.segments_passed.push(ring.observer.tail_position().saturating_sub(tail) / SEGMENT);
    stops.files_recycled.push(ring.files_recycled.load(Ordering::Relaxed) - recycled);
    if position < ring.observer.first_position() {
        stops.held_segment_deleted += 1;
    }
    stops.spans.push(Span::since(stopped));
    if rng.below(5) == 0 {
        stops.killed_while_stopped += 1;
        return Ok(false);
    }
    rustix::process::kill_process(pid, Signal::CONT)?;
    Ok(true)
}

/// SIGSTOPs a reader wherever it is for 0.1-1 s, then SIGCONTs it.
fn stop_anywhere(child: &Child, stops: &mut Stops, rng: &mut Rng) -> Res<()> {
    let (pid, stopped) = (stop(child, stops)?, Instant::now());
    stops.anywhere += 1;
    std::thread::sleep(rng.millis(100, 1000));
    stops.spans.push(Span::since(stopped));
    Ok(rustix::process::kill_process(pid, Signal::CONT)?)
}

/// SIGSTOPs a child and waits until it is stopped.
fn stop(child: &Child, stops: &mut Stops) -> Res<Pid> {
    let pid = Pid::from_child(child);
    rustix::process::kill_process(pid, Signal::STOP)?;
    if let Err(why) = wait_until_stopped(child.id(), Duration::from_secs(5)) {
        stops.failures.push(why);
    }
    Ok(pid)
}

/// A file for as long as it exists: its inode and birth time (an inode
/// number alone is soon reused by a new file).
type FileId = (u64, std::time::SystemTime);

/// The segment files in `dir`, by file.
fn segment_files(dir: &Path) -> std::io::Result<HashMap<FileId, String>> {
    use std::os::unix::fs::DirEntryExt;
    let mut files = HashMap::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // A file gone between listing and stat was deleted: not a segment any more.
        if let (true, Ok(metadata)) = (name.ends_with(backwater::segment::SUFFIX), entry.metadata()) {
            let born = metadata.created().unwrap_or(std::time::UNIX_EPOCH);
            files.insert((entry.ino(), born), name);
        }
    }
    Ok(files)
}

/// Waits until `/proc` shows the process stopped (state `T`).
fn wait_until_stopped(pid: u32, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let stat = format!("/proc/{pid}/stat");
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(&stat).map_err(|e| format!("{stat}: {e}"))?;
        let state = text.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
        if state == Some('T') {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Err(format!("reader {pid} not stopped after {limit:?}"))
}

/// Reads a line on to the tail after the fleet has stopped (read-only,
/// holding nothing), within `DRAIN_LIMIT`.
fn drain(ring: &Ring, line: ReaderLine) -> Res<ReaderLine> {
    let reader = Reader { read_only: true, durable: false, hold_every_ms: 0, ..line.reader };
    let mut child = Reaped(ring.spawn_reader(reader, line.resume, true)?);
    let (_stdin, events) = watch_reader(&mut child.0, line)?;
    let ended = events.recv_timeout(DRAIN_LIMIT);
    if let Ok(Event::Ended(mut line)) = ended {
        let status = child.0.wait()?;
        if !status.success() {
            line.errors.push(format!("the drain ended {status}: {}", ring.last_stderr_line(reader.name)));
        }
        return Ok(*line);
    }
    kill(&mut child.0);
    let mut line = wait_for_end(&events)?;
    line.errors.push(format!("the drain did not reach the tail in {DRAIN_LIMIT:?}"));
    Ok(line)
}

/// A line's account of the records the writers reported committed.
#[derive(Default)]
struct Account {
    read: u64,
    lost: u64,
    /// Neither read nor in a reported loss.
    unexplained: Vec<String>,
    /// Read at another position than its writer reported.
    foreign: Vec<String>,
}

fn account(line: &ReaderLine, committed: &Committed) -> Account {
    let mut account = Account::default();
    for (id, seq, position) in committed.iter() {
        match line.position_read(id, seq) {
            read if read == position => account.read += 1,
            0 if line.lost.covers(position) => account.lost += 1,
            0 => account.unexplained.push(format!("writer {id} seq {seq} at {position}")),
            read => account.foreign.push(format!("writer {id} seq {seq}: committed at {position}, read at {read}")),
        }
    }
    account
}

fn ring_config() -> Config {
    Config::default()
        .segment_size(SEGMENT)
        .max_disk_bytes(BUDGET_SEGMENTS * SEGMENT)
        .min_free_disk(0)
        .when_full(WhenFull::DropOldest)
}

/// The recycling soak for `seconds` in `dir` (logs in `work`): `true` when
/// it passed.
pub fn run(seconds: u64, dir: &Path, work: &Path) -> Res<bool> {
    let first = {
        let journal = Journal::open(dir, ring_config())?;
        for reader in READERS.iter().filter(|r| r.durable) {
            journal.consumer(reader.name)?;
        }
        journal.first_position()
    };
    let ring = Ring {
        exe: std::env::current_exe()?,
        dir: dir.to_path_buf(),
        work: work.to_path_buf(),
        deadline: Instant::now() + Duration::from_secs(seconds),
        observer: Journal::open_read_only(dir)?,
        files_recycled: AtomicU64::new(0),
    };
    let (writers, readers, watched) = std::thread::scope(|scope| {
        let ring = &ring;
        let supervise = |reader| scope.spawn(move || run_reader(ring, reader, first).map_err(|e| e.to_string()));
        let readers: Vec<_> = READERS.into_iter().map(supervise).collect();
        let watched = scope.spawn(|| watch(ring));
        let writers = run_writers(ring);
        let joined = |r: std::thread::ScopedJoinHandle<'_, _>| r.join().map_err(|_| "a reader supervisor panicked");
        (writers, readers.into_iter().map(joined).collect::<Vec<_>>(), watched.join())
    });
    let (committed, writer_starts, mut failures) = writers?;
    let writer_processes = writer_starts.len();
    let mut lines = vec![];
    for reader in readers {
        let (line, stops) = reader??;
        lines.push((drain(&ring, line)?, stops));
    }
    let verify = backwater::recovery::verify(dir, |_, _| {})?;
    let stats = ring.observer.stats();
    println!(
        "ring: {seconds} s, {} KiB segments, budget {BUDGET_SEGMENTS} segments, exclusive publisher processes \
         {writer_processes}; journal appended {} lost bytes {} ({:.0} ring wraps)",
        SEGMENT >> 10,
        stats.appended,
        stats.lost_bytes,
        stats.tail_position as f64 / (BUDGET_SEGMENTS * SEGMENT) as f64,
    );
    let Watched { stalls, files_created } = watched.unwrap_or_default();
    let files_recycled = ring.files_recycled.load(Ordering::Relaxed);
    println!("ring: segment files seen new {files_created}, recycled {files_recycled} (sampled every 10 ms)");
    failures.extend(report_stalls(&stalls, &lines, &writer_starts));
    let accounts: Vec<_> = lines.iter().map(|(line, _)| account(line, &committed)).collect();
    for ((line, stops), account) in lines.iter().zip(&accounts) {
        failures.extend(report_line(line, stops, account));
    }
    let per_line = |figure: &dyn Fn(&ReaderLine, &Account) -> usize| {
        let figures: Vec<_> = lines.iter().zip(&accounts).map(|((l, _), a)| figure(l, a).to_string()).collect();
        figures.join(" / ")
    };
    println!(
        "ring: records committed {}; by reader line ({}): read {}, lost {}, changed {}, unexplained {}",
        committed.len(),
        READERS.map(|r| r.name).join(" / "),
        per_line(&|_, a| a.read as usize),
        per_line(&|_, a| a.lost as usize),
        per_line(&|l, _| l.changed.len()),
        per_line(&|_, a| a.unexplained.len()),
    );
    let verdict = if verify.findings.is_empty() { "clean".to_string() } else { format!("{:?}", verify.findings) };
    println!("ring: verify {verdict} ({} segments, {} records)", verify.segments, verify.records);
    if !verify.findings.is_empty() {
        failures.push("verify found problems".into());
    }
    for failure in failures.iter().take(20) {
        println!("ring: FAILURE {failure}");
    }
    println!("ring: {}", if failures.is_empty() { "PASS" } else { "FAIL" });
    Ok(failures.is_empty())
}

/// What the watcher saw of the ring while the soak ran.
#[derive(Default)]
struct Watched {
    /// Each time the tail stood still longer than 100 ms.
    stalls: Vec<Span>,
    /// Segment files that appeared new (recycled ones: `Ring::files_recycled`).
    files_created: u64,
}

/// Samples the tail and the segment files every 10 ms until the deadline;
/// a file seen before under another segment's name was recycled.
fn watch(ring: &Ring) -> Watched {
    let mut watched = Watched::default();
    let (mut tail, mut since) = (ring.observer.tail_position(), Instant::now());
    let mut files_seen = HashMap::new();
    while Instant::now() < ring.deadline {
        std::thread::sleep(Duration::from_millis(10));
        let now = ring.observer.tail_position();
        if now != tail {
            if since.elapsed() > Duration::from_millis(100) {
                watched.stalls.push(Span::since(since));
            }
            (tail, since) = (now, Instant::now());
        }
        for (file, name) in segment_files(&ring.dir).unwrap_or_default() {
            match files_seen.insert(file, name.clone()) {
                None => watched.files_created += 1,
                Some(old) if old != name => drop(ring.files_recycled.fetch_add(1, Ordering::Relaxed)),
                Some(_) => {}
            }
        }
    }
    watched
}

/// Prints how long the tail stood still, and how much of it a stopped
/// read-write reader explains (it may hold the journal lock); returns what
/// makes the soak fail.
fn report_stalls(stalls: &[Span], lines: &[(ReaderLine, Stops)], writer_starts: &[Instant]) -> Vec<String> {
    let read_write_stops: Vec<Span> =
        lines.iter().filter(|(line, _)| !line.reader.read_only).flat_map(|(_, stops)| stops.spans.clone()).collect();
    let stopped_during = |stall: &Span| read_write_stops.iter().map(|stop| stop.overlap(stall)).sum::<Duration>();
    let unexplained = |stall: &&Span| stopped_during(stall) < stall.len() / 2;
    let long: Vec<&Span> = stalls.iter().filter(|stall| stall.len() > Duration::from_secs(1)).collect();
    let longest = stalls.iter().map(Span::len).max().unwrap_or_default();
    let longest_unexplained = stalls.iter().filter(unexplained).map(Span::len).max().unwrap_or_default();
    println!(
        "ring: the tail stood still over 100 ms {} times, over 1 s {} times ({} of them with read-write readers \
         stopped for half of it or more); longest {} ms, longest otherwise {} ms",
        stalls.len(),
        long.len(),
        long.iter().filter(|stall| !unexplained(stall)).count(),
        longest.as_millis(),
        longest_unexplained.as_millis(),
    );
    let mut failures = vec![];
    if longest > STALL_LIMIT {
        failures.push(format!("the tail stood still for {} ms", longest.as_millis()));
    }
    for stall in stalls.iter().filter(unexplained).filter(|stall| stall.len() > UNEXPLAINED_STALL_LIMIT) {
        failures.push(describe_stall(stall, lines, writer_starts));
    }
    failures
}

/// What went on while the tail stood still: writer starts and reader stops.
fn describe_stall(stall: &Span, lines: &[(ReaderLine, Stops)], writer_starts: &[Instant]) -> String {
    let starts = writer_starts.iter().filter(|&&at| at >= stall.from && at <= stall.to).count();
    let mut stopped = vec![];
    for (line, stops) in lines {
        let overlap: Duration = stops.spans.iter().map(|stop| stop.overlap(stall)).sum();
        stopped.push(format!("{} {} ms", line.reader.name, overlap.as_millis()));
    }
    format!(
        "the tail stood still for {} ms with no read-write reader stopped for half of it \
         (writer processes started meanwhile {starts}; readers stopped {})",
        stall.len().as_millis(),
        stopped.join(", ")
    )
}

/// `min/median/max` of some counts.
fn spread(counts: &[u64]) -> String {
    let mut sorted = counts.to_vec();
    sorted.sort_unstable();
    let at = |i: usize| sorted.get(i).copied().unwrap_or(0);
    format!("{}/{}/{} (min/median/max)", at(0), at(sorted.len() / 2), at(sorted.len().saturating_sub(1)))
}

/// Prints a line's figures; returns what makes the soak fail.
fn report_line(line: &ReaderLine, stops: &Stops, account: &Account) -> Vec<String> {
    let name = line.reader.name;
    println!(
        "ring {name}: processes {} (unexpected exits {}), deliveries {}, committed records read {} lost {} \
         (in {} reported losses) unexplained {}; foreign {} bad {} moved {}",
        line.starts,
        line.unexpected_exits.len(),
        line.deliveries,
        account.read,
        account.lost,
        line.lost.len(),
        account.unexplained.len(),
        account.foreign.len(),
        line.bad.len(),
        line.moved.len(),
    );
    println!(
        "ring {name}: stops holding a record {} (SIGKILLed while stopped {}), elsewhere {}; per stop segments appended {} and files recycled {}, \
         held record's segment left the ring in {}; held payloads checked {} changed {}",
        stops.count,
        stops.killed_while_stopped,
        stops.anywhere,
        spread(&stops.segments_passed),
        spread(&stops.files_recycled),
        stops.held_segment_deleted,
        line.held,
        line.changed.len(),
    );
    let mut failures = vec![];
    let mut fail = |what: &str, items: Vec<String>| {
        if let Some(sample) = items.first() {
            failures.push(format!("{name}: {} {what}, e.g. {sample}", items.len()));
        }
    };
    fail("changed payloads", line.changed.iter().map(|p| format!("at {p}")).collect());
    fail("unexplained records", account.unexplained.clone());
    fail("foreign records", account.foreign.clone());
    fail("bad payloads", line.bad.clone());
    fail("records read at two positions", line.moved.clone());
    fail("reader errors", line.errors.clone());
    fail("unexpected reader exits", line.unexpected_exits.clone());
    fail("stop failures", stops.failures.clone());
    failures
}
