//! The soak, in two scenarios run one after the other (`--scenario` picks
//! one), each for half of `--seconds`:
//!
//! - `evict`: 3 publisher processes (every other one through a
//!   `ReservingPublisher`) and 2 consumer processes (one slow) on a small
//!   `EvictSlowest` journal, any of them SIGKILLed every few seconds and
//!   restarted. At the end every record a publisher reported as
//!   committed must have been read by the fast consumer or fall in a range it
//!   was told it lost to an eviction; `verify` must be clean.
//! - `ring`: an exclusive publisher on a recycling `DropOldest` ring, readers
//!   SIGSTOPped while they hold a record (`ring.rs`).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use backwater::{Config, Error, Journal, WhenFull};

use crate::payload::Rng;

pub type Res<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(clap::Args)]
pub struct SoakArgs {
    /// How long to run, in all: each scenario gets half when both run
    #[arg(long, default_value = "600")]
    seconds: u64,
    /// Which scenario
    #[arg(long, value_enum, default_value = "both")]
    scenario: Scenario,
    /// Where to put the journals, `evict` and `ring` (default: a temporary
    /// directory, kept when the soak fails)
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The evict scenario's disk budget in MiB
    #[arg(long, default_value = "16")]
    budget_mib: u64,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum Scenario {
    Both,
    Evict,
    Ring,
}

/// Runs the scenarios asked for; fails when any of them did.
pub fn run(args: SoakArgs) -> Res<()> {
    let temp = tempfile::tempdir()?;
    let work = temp.path().to_path_buf();
    let dir = args.dir.clone().unwrap_or_else(|| work.join("journals"));
    let (evict_seconds, ring_seconds) = match args.scenario {
        Scenario::Both => (args.seconds / 2, args.seconds - args.seconds / 2),
        Scenario::Evict => (args.seconds, 0),
        Scenario::Ring => (0, args.seconds),
    };
    let mut passed = true;
    if evict_seconds > 0 {
        passed &= run_evict(evict_seconds, args.budget_mib, &dir.join("evict"), &work)?;
    }
    if ring_seconds > 0 {
        passed &= crate::ring::run(ring_seconds, &dir.join("ring"), &work)?;
    }
    if passed {
        println!("soak: PASS");
        return Ok(());
    }
    let kept = temp.keep();
    Err(format!("soak failed (journals and logs kept in {})", kept.display()).into())
}

/// The records the publishers reported committed: writer id → positions by
/// seq (0: not reported).
#[derive(Default)]
pub struct Committed {
    writers: HashMap<u32, Vec<u64>>,
}

impl Committed {
    pub fn add(&mut self, id: u32, positions: Vec<u64>) {
        self.writers.insert(id, positions);
    }

    /// Every reported record: (writer id, seq, position).
    pub fn iter(&self) -> impl Iterator<Item = (u32, usize, u64)> + '_ {
        self.writers.iter().flat_map(|(&id, positions)| {
            positions.iter().enumerate().filter(|(_, p)| **p != 0).map(move |(seq, &p)| (id, seq, p))
        })
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }
}

/// A writer process's `c SEQ POSITION` lines, read on a thread of its own:
/// the positions by seq arrive when its output ends.
pub fn positions_of(child: &mut Child) -> Receiver<Vec<u64>> {
    let (sender, positions) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || sender.send(collect_positions(stdout)));
    }
    positions
}

fn collect_positions(stdout: std::process::ChildStdout) -> Vec<u64> {
    let mut positions = vec![];
    for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
        let mut fields = line.split(' ');
        if fields.next() != Some("c") {
            continue;
        }
        let seq = fields.next().and_then(|f| f.parse::<usize>().ok());
        let position = fields.next().and_then(|f| f.parse().ok());
        if let (Some(seq), Some(position)) = (seq, position) {
            if positions.len() <= seq {
                positions.resize(seq + 1, 0);
            }
            positions[seq] = position;
        }
    }
    positions
}

/// A writer process appending numbered records and reporting every commit.
pub fn writer_command(exe: &Path, dir: &Path, id: u32) -> Command {
    let mut command = Command::new(exe);
    command.arg("write").arg(dir).args(["--id", &id.to_string(), "--count", "1000000000"]);
    command.args(["--positions", "--report", "1000000000"]).stdout(Stdio::piped());
    command
}

/// Position ranges a consumer was told it lost, merged and sorted.
#[derive(Default)]
pub struct LostRanges {
    ranges: Vec<(u64, u64)>,
    reported: usize,
}

impl LostRanges {
    pub fn add(&mut self, from: u64, to: u64) {
        self.reported += 1;
        if from >= to {
            return;
        }
        let at = self.ranges.partition_point(|r| r.1 < from);
        let mut merged = (from, to);
        while at < self.ranges.len() && self.ranges[at].0 <= merged.1 {
            let next = self.ranges.remove(at);
            merged = (merged.0.min(next.0), merged.1.max(next.1));
        }
        self.ranges.insert(at, merged);
    }

    pub fn covers(&self, position: u64) -> bool {
        let at = self.ranges.partition_point(|r| r.1 <= position);
        self.ranges.get(at).is_some_and(|r| r.0 <= position)
    }

    /// How many losses were reported.
    pub fn len(&self) -> usize {
        self.reported
    }
}

struct Fleet {
    exe: PathBuf,
    dir: PathBuf,
    work: PathBuf,
    next_writer: u32,
    children: Vec<(String, Child)>,
    writers: Vec<(u32, Receiver<Vec<u64>>)>,
}

impl Fleet {
    fn spawn(&mut self, role: &str) -> std::io::Result<()> {
        let mut child = match role {
            "writer" => {
                self.next_writer += 1;
                let mut command = writer_command(&self.exe, &self.dir, self.next_writer);
                // Every other writer through a `ReservingPublisher`: its
                // reservations are lapsed by the consumers (one record every
                // 50 µs against a 100 µs linger) and cut by its SIGKILLs.
                if self.next_writer.is_multiple_of(2) {
                    command.arg("--reserving");
                }
                command.args(["--rate", "20000"]).stderr(Stdio::null()).spawn()?
            }
            consumer => Command::new(&self.exe)
                .args(["consume", &self.dir.to_string_lossy(), "--name", consumer])
                .arg("--log")
                .arg(self.work.join(format!("{consumer}.log")))
                .args(["--delay-us", if consumer == "slow" { "200" } else { "0" }])
                .stdout(Stdio::null())
                .spawn()?,
        };
        if role == "writer" {
            self.writers.push((self.next_writer, positions_of(&mut child)));
        }
        self.children.push((role.to_string(), child));
        Ok(())
    }

    fn kill(&mut self, which: usize) -> String {
        let (role, mut child) = self.children.remove(which);
        let _ = child.kill();
        let _ = child.wait();
        role
    }

    /// What every writer reported, once they are all gone.
    fn committed(&mut self) -> Committed {
        let mut committed = Committed::default();
        for (id, positions) in self.writers.drain(..) {
            committed.add(id, positions.recv().unwrap_or_default());
        }
        committed
    }
}

impl Drop for Fleet {
    /// No process outlives a scenario that gave up on an error.
    fn drop(&mut self) {
        while !self.children.is_empty() {
            self.kill(0);
        }
    }
}

/// The evict scenario for `seconds` in `dir` (logs in `work`): `true` when
/// it passed.
fn run_evict(seconds: u64, budget_mib: u64, dir: &Path, work: &Path) -> Res<bool> {
    let config = Config::default()
        .segment_size(1 << 20)
        .max_disk_bytes(budget_mib << 20)
        .min_free_disk(0)
        .when_full(WhenFull::EvictSlowest);
    {
        let journal = Journal::open(dir, config)?;
        journal.consumer("fast")?;
        journal.consumer("slow")?;
    }
    let mut fleet = Fleet {
        exe: std::env::current_exe()?,
        dir: dir.to_path_buf(),
        work: work.to_path_buf(),
        next_writer: 0,
        children: vec![],
        writers: vec![],
    };
    for role in ["writer", "writer", "writer", "fast", "slow"] {
        fleet.spawn(role)?;
    }
    let started = Instant::now();
    let mut rng = Rng::new(0x5EED);
    let mut kills: HashMap<String, u64> = HashMap::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(rng.millis(1000, 3000));
        let role = fleet.kill(rng.below(fleet.children.len() as u64) as usize);
        *kills.entry(role.clone()).or_default() += 1;
        fleet.spawn(&role)?;
    }
    while !fleet.children.is_empty() {
        fleet.kill(0);
    }
    let committed = fleet.committed();
    let fast_log = work.join("fast.log");
    drain_fast(dir, &fast_log)?;
    let report = backwater::recovery::verify(dir, |_, _| {})?;
    let ConsumerLog { seen, lost, duplicates, mut errors } = read_log(&fast_log);
    errors.extend(read_log(&work.join("slow.log")).errors);
    let unread = || committed.iter().filter(|&(id, seq, _)| !seen.contains(&(id, seq as u64)));
    let unaccounted: Vec<_> = unread().filter(|&(_, _, position)| !lost.covers(position)).collect();
    let stats = Journal::open_read_only(dir)?.stats();
    println!("evict: {seconds} s, kills {kills:?}, writer processes {}", fleet.next_writer);
    println!(
        "evict: records committed and reported {}, read by the fast consumer {} (+{duplicates} redelivered after \
         kills), lost to evictions {} in {} ranges, unaccounted {}",
        committed.len(),
        seen.len(),
        unread().count(),
        lost.len(),
        unaccounted.len()
    );
    println!(
        "evict: journal appended {} evictions {} unblocked {} lost bytes {} verify {}",
        stats.appended,
        stats.evictions,
        stats.unblocked,
        stats.lost_bytes,
        if report.findings.is_empty() { "clean".to_string() } else { format!("{:?}", report.findings) }
    );
    let passed = unaccounted.is_empty() && report.findings.is_empty() && errors.is_empty();
    if !passed {
        let sample: Vec<_> = unaccounted.iter().take(5).collect();
        println!("evict: FAIL: unaccounted records (id, seq, position) {sample:?}, consumer errors {errors:?}");
    } else {
        println!("evict: PASS");
    }
    Ok(passed)
}

/// Reads the fast consumer to the tail after the fleet has stopped.
fn drain_fast(dir: &Path, log: &Path) -> Res<()> {
    let journal = Journal::open(dir, Config::default())?;
    let mut consumer = journal.consumer("fast")?;
    let mut out = open_log(log)?;
    loop {
        let mut lines = String::new();
        match consumer.poll(|record| log_record(&mut lines, &record), 4096) {
            Ok(0) => return Ok(()),
            Ok(_) => out.write_all(lines.as_bytes())?,
            Err(Error::Evicted { from, .. }) => {
                consumer.reattach()?;
                writeln!(out, "lost {from} {}", consumer.position())?;
            }
            Err(Error::Lost { from, to }) => writeln!(out, "lost {from} {to}")?,
            Err(other) => return Err(other.into()),
        }
    }
}

fn open_log(log: &Path) -> Res<std::fs::File> {
    Ok(std::fs::OpenOptions::new().create(true).append(true).open(log)?)
}

fn log_record(lines: &mut String, record: &backwater::Record<'_>) {
    let payload = record.payload();
    if payload.len() >= 12 {
        let id = u32::from_le_bytes(payload[..4].try_into().unwrap_or_default());
        let seq = u64::from_le_bytes(payload[4..12].try_into().unwrap_or_default());
        lines.push_str(&format!("r {} {id} {seq}\n", record.position()));
    }
}

/// `consume`: read, log, commit; on eviction log the lost range and re-attach.
pub fn consume(dir: &Path, name: &str, log: &Path, delay: Duration) -> Res<()> {
    let journal = Journal::open(dir, Config::default())?;
    let mut consumer = journal.consumer(name)?;
    let mut out = open_log(log)?;
    loop {
        let mut lines = String::new();
        let mut read = 0u32;
        match consumer.poll_wait(
            |record| {
                log_record(&mut lines, &record);
                read += 1;
            },
            if delay.is_zero() { 4096 } else { 64 },
            Duration::from_millis(50),
        ) {
            Ok(_) => {
                // The log line is written before the cursor moves past it:
                // a kill in between redelivers, never loses.
                out.write_all(lines.as_bytes())?;
                consumer.commit()?;
                std::thread::sleep(delay * read);
            }
            Err(Error::Evicted { from, .. }) => {
                consumer.reattach()?;
                writeln!(out, "lost {from} {}", consumer.position())?;
                consumer.commit()?;
            }
            Err(Error::Lost { from, to }) => writeln!(out, "lost {from} {to}")?,
            Err(other) => {
                // Logged so the soak fails on it, rather than hiding it behind a restart.
                writeln!(out, "error {other}")?;
                return Err(other.into());
            }
        }
    }
}

/// What a consumer log says: records seen, ranges lost, duplicate deliveries.
struct ConsumerLog {
    seen: HashSet<(u32, u64)>,
    lost: LostRanges,
    duplicates: u64,
    errors: Vec<String>,
}

fn read_log(log: &Path) -> ConsumerLog {
    let (mut seen, mut lost, mut duplicates, mut errors) = (HashSet::new(), LostRanges::default(), 0, Vec::new());
    let text = std::fs::read_to_string(log).unwrap_or_default();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        match fields.as_slice() {
            ["r", _, id, seq] => {
                if let (Ok(id), Ok(seq)) = (id.parse(), seq.parse())
                    && !seen.insert((id, seq))
                {
                    duplicates += 1;
                }
            }
            ["lost", from, to] => {
                if let (Ok(from), Ok(to)) = (from.parse(), to.parse()) {
                    lost.add(from, to);
                }
            }
            _ if line.starts_with("error ") => errors.push(line.to_string()),
            _ => {}
        }
    }
    ConsumerLog { seen, lost, duplicates, errors }
}
