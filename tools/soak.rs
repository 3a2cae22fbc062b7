//! The soak: 3 publisher processes and 2 consumer processes (one slow) on a
//! small `EvictSlowest` journal, any of them SIGKILLed every few seconds and
//! restarted. At the end every record a publisher reported as committed must
//! have been read by the fast consumer or fall in a range it was told it
//! lost to an eviction; `verify` must be clean.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backwater::{Config, Error, Journal, WhenFull};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(clap::Args)]
pub struct SoakArgs {
    /// How long to run
    #[arg(long, default_value = "600")]
    seconds: u64,
    /// Journal directory (default: a temporary one)
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Disk budget in MiB
    #[arg(long, default_value = "16")]
    budget_mib: u64,
}

/// Records publishers reported committed: (writer id, seq) → position.
type Reported = Arc<Mutex<HashMap<(u32, u64), u64>>>;

struct Fleet {
    exe: PathBuf,
    dir: PathBuf,
    work: PathBuf,
    reported: Reported,
    next_writer: u32,
    children: Vec<(String, Child)>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Fleet {
    fn spawn(&mut self, role: &str) -> std::io::Result<()> {
        let mut command = Command::new(&self.exe);
        let child = match role {
            "writer" => {
                self.next_writer += 1;
                command
                    .args(["write", &self.dir.to_string_lossy(), "--id", &self.next_writer.to_string()])
                    .args(["--count", "100000000", "--positions", "--rate", "20000", "--report", "1000000000"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()?
            }
            consumer => command
                .args(["consume", &self.dir.to_string_lossy(), "--name", consumer])
                .arg("--log")
                .arg(self.work.join(format!("{consumer}.log")))
                .args(["--delay-us", if consumer == "slow" { "200" } else { "0" }])
                .stdout(Stdio::null())
                .spawn()?,
        };
        let mut child = child;
        if let Some(stdout) = child.stdout.take() {
            let (reported, id) = (Arc::clone(&self.reported), self.next_writer);
            self.readers.push(std::thread::spawn(move || collect_positions(stdout, id, &reported)));
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
}

fn collect_positions(stdout: std::process::ChildStdout, id: u32, reported: &Reported) {
    for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
        let mut fields = line.split(' ');
        if fields.next() != Some("c") {
            continue;
        }
        let seq = fields.next().and_then(|f| f.parse().ok());
        let position = fields.next().and_then(|f| f.parse().ok());
        if let (Some(seq), Some(position)) = (seq, position)
            && let Ok(mut reported) = reported.lock()
        {
            reported.insert((id, seq), position);
        }
    }
}

pub fn run(args: SoakArgs) -> Res<()> {
    let temp = tempfile::tempdir()?;
    let work = temp.path().to_path_buf();
    let dir = args.dir.clone().unwrap_or_else(|| work.join("journal"));
    let config = Config::default()
        .segment_size(1 << 20)
        .max_disk_bytes(args.budget_mib << 20)
        .min_free_disk(0)
        .when_full(WhenFull::EvictSlowest);
    {
        let journal = Journal::open(&dir, config)?;
        journal.consumer("fast")?;
        journal.consumer("slow")?;
    }
    let exe = std::env::current_exe()?;
    let mut fleet = Fleet {
        exe,
        dir: dir.clone(),
        work: work.clone(),
        reported: Reported::default(),
        next_writer: 0,
        children: vec![],
        readers: vec![],
    };
    for role in ["writer", "writer", "writer", "fast", "slow"] {
        fleet.spawn(role)?;
    }
    let started = Instant::now();
    let mut rng = 0x5EED_u64;
    let mut kills: HashMap<String, u64> = HashMap::new();
    while started.elapsed() < Duration::from_secs(args.seconds) {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(1000 + (rng >> 33) % 2000));
        let role = fleet.kill(((rng >> 40) as usize) % fleet.children.len());
        *kills.entry(role.clone()).or_default() += 1;
        fleet.spawn(&role)?;
    }
    while !fleet.children.is_empty() {
        fleet.kill(0);
    }
    for reader in fleet.readers.drain(..) {
        let _ = reader.join();
    }
    let fast_log = work.join("fast.log");
    drain_fast(&dir, &fast_log)?;
    let report = backwater::recovery::verify(&dir, |_, _| {})?;
    let ConsumerLog { seen, lost, duplicates, mut errors } = read_log(&fast_log);
    errors.extend(read_log(&work.join("slow.log")).errors);
    let reported = fleet.reported.lock().map(|r| r.clone()).unwrap_or_default();
    let unaccounted: Vec<_> = reported
        .iter()
        .filter(|(record, position)| {
            !seen.contains(record) && !lost.iter().any(|(from, to)| (*from..*to).contains(*position))
        })
        .collect();
    let lost_records = reported.iter().filter(|(record, _)| !seen.contains(record)).count();
    let stats = Journal::open_read_only(&dir)?.stats();
    println!("soak: {} s, kills {:?}, writer processes {}", args.seconds, kills, fleet.next_writer);
    println!(
        "records: committed and reported {}, read by the fast consumer {} (+{duplicates} redelivered after kills), \
         lost to evictions {lost_records} in {} ranges, unaccounted {}",
        reported.len(),
        seen.len(),
        lost.len(),
        unaccounted.len()
    );
    println!(
        "journal: appended {} evictions {} unblocked {} lost bytes {} verify {}",
        stats.appended,
        stats.evictions,
        stats.unblocked,
        stats.lost_bytes,
        if report.findings.is_empty() { "clean".to_string() } else { format!("{:?}", report.findings) }
    );
    if !unaccounted.is_empty() || !report.findings.is_empty() || !errors.is_empty() {
        let sample: Vec<_> = unaccounted.iter().take(5).collect();
        return Err(format!("soak failed: unaccounted records {sample:?}, consumer errors {errors:?}").into());
    }
    println!("soak: PASS");
    Ok(())
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
    lost: Vec<(u64, u64)>,
    duplicates: u64,
    errors: Vec<String>,
}

fn read_log(log: &Path) -> ConsumerLog {
    let (mut seen, mut lost, mut duplicates, mut errors) = (HashSet::new(), Vec::new(), 0, Vec::new());
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
                    lost.push((from, to));
                }
            }
            _ if line.starts_with("error ") => errors.push(line.to_string()),
            _ => {}
        }
    }
    ConsumerLog { seen, lost, duplicates, errors }
}
