//! Several processes on one journal: concurrent writers, a live follower in
//! another process, and writers killed with SIGKILL mid-append.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const STRESS: &str = env!("CARGO_BIN_EXE_backwater-stress");
const BACKWATER: &str = env!("CARGO_BIN_EXE_backwater");

fn dir_arg(dir: &Path) -> &str {
    dir.to_str().expect("utf-8 path")
}

fn create(dir: &Path, segment_size: &str) {
    let status = Command::new(BACKWATER)
        .args(["create", dir_arg(dir), "--segment-size", segment_size, "--min-free", "0"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

fn writer(dir: &Path, id: u32, count: u64, extra: &[&str]) -> Child {
    Command::new(STRESS)
        .args(["write", dir_arg(dir), "--id", &id.to_string(), "--count", &count.to_string()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn writer")
}

fn append_end(dir: &Path) {
    let mut child = Command::new(BACKWATER)
        .args(["append", dir_arg(dir)])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"END\n").unwrap();
    assert!(child.wait().unwrap().success());
}

fn verify_clean(dir: &Path) {
    let out = Command::new(BACKWATER).args(["verify", dir_arg(dir)]).output().unwrap();
    assert!(out.status.success(), "verify: {}", String::from_utf8_lossy(&out.stdout));
}

/// What the follower process has printed so far, shared with the test.
#[derive(Default)]
struct Seen {
    records: Vec<(u32, u64)>,
    done: bool,
}

struct Follower {
    child: Child,
    seen: Arc<(Mutex<Seen>, Condvar)>,
    reader: JoinHandle<()>,
}

impl Follower {
    fn start(dir: &Path, unblock_timeout_ms: u64) -> Follower {
        let mut child = Command::new(STRESS)
            .args(["follow", dir_arg(dir), "--unblock-timeout-ms", &unblock_timeout_ms.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn follower");
        let stdout = child.stdout.take().unwrap();
        let seen: Arc<(Mutex<Seen>, Condvar)> = Arc::default();
        let shared = Arc::clone(&seen);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.expect("follower output");
                let mut fields = line.split(' ').map(|f| f.parse::<u64>().expect("number"));
                let record = (fields.next().unwrap() as u32, fields.next().unwrap());
                let (lock, changed) = &*shared;
                lock.lock().unwrap().records.push(record);
                changed.notify_all();
            }
            let (lock, changed) = &*shared;
            lock.lock().unwrap().done = true;
            changed.notify_all();
        });
        Follower { child, seen, reader }
    }

    /// Waits (up to 20 s) until the follower has printed a record matching `wanted`.
    fn wait_for(&self, wanted: impl Fn(&(u32, u64)) -> bool) {
        let (lock, changed) = &*self.seen;
        let guard = lock.lock().unwrap();
        let (guard, timeout) = changed
            .wait_timeout_while(guard, Duration::from_secs(20), |seen| {
                !seen.done && !seen.records.iter().rev().take(4096).any(&wanted)
            })
            .unwrap();
        assert!(!timeout.timed_out() && !guard.done, "the follower stalled");
    }

    /// Waits for the follower to exit; returns its records and its stderr report.
    fn finish(mut self) -> (Vec<(u32, u64)>, String) {
        let mut report = String::new();
        std::io::Read::read_to_string(self.child.stderr.as_mut().unwrap(), &mut report).unwrap();
        assert!(self.child.wait().unwrap().success(), "follower failed: {report}");
        self.reader.join().unwrap();
        let records = std::mem::take(&mut self.seen.0.lock().unwrap().records);
        (records, report)
    }
}

/// Every writer's records appear at most once, in order, as a prefix 0..n.
fn per_writer_prefixes(records: &[(u32, u64)]) -> HashMap<u32, u64> {
    let mut next: HashMap<u32, u64> = HashMap::new();
    let mut unique = HashSet::new();
    for &(id, seq) in records {
        assert!(unique.insert((id, seq)), "record ({id}, {seq}) delivered twice");
        let expected = next.entry(id).or_insert(0);
        assert_eq!(seq, *expected, "writer {id}: a record is missing or out of order");
        *expected += 1;
    }
    next
}

fn report_field(report: &str, name: &str) -> u64 {
    let at = report.find(name).unwrap_or_else(|| panic!("no {name} in {report}"));
    report[at + name.len()..].split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn four_processes_append_at_once_and_a_live_follower_sees_everything_in_order() {
    let dir = tempfile::tempdir().unwrap();
    create(dir.path(), "1MiB");
    let follower = Follower::start(dir.path(), 1000);
    let writers: Vec<Child> = (1..=4).map(|id| writer(dir.path(), id, 100_000, &["--report", "1000000"])).collect();
    for mut writer in writers {
        assert!(writer.wait().unwrap().success());
    }
    append_end(dir.path());
    let (records, report) = follower.finish();
    assert_eq!(records.len(), 400_000);
    let counts = per_writer_prefixes(&records);
    assert_eq!(counts, (1..=4).map(|id| (id, 100_000)).collect());
    assert_eq!(report_field(&report, "records"), 400_000);
    verify_clean(dir.path());
}

/// Reads `committed SEQ` lines from a writer; returns the last SEQ.
fn read_progress(lines: &mut impl Iterator<Item = std::io::Result<String>>, reports: usize) -> Option<u64> {
    let mut last = None;
    for _ in 0..reports {
        let line = lines.next()?.ok()?;
        last = line.strip_prefix("committed ").and_then(|seq| seq.parse().ok());
    }
    last
}

#[test]
fn writers_killed_mid_append_lose_nothing_committed_and_never_wedge_the_follower() {
    const ROUNDS: u32 = 20;
    const UNBLOCK_MS: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    create(dir.path(), "64KiB");
    let follower = Follower::start(dir.path(), UNBLOCK_MS);
    let mut steady = writer(dir.path(), 0, 10_000_000, &["--rate", "20000", "--report", "100"]);
    let steady_progress = Arc::new(Mutex::new(0u64));
    let progress = Arc::clone(&steady_progress);
    let steady_stdout = steady.stdout.take().unwrap();
    let steady_reader = std::thread::spawn(move || {
        for line in BufReader::new(steady_stdout).lines().map_while(Result::ok) {
            if let Some(seq) = line.strip_prefix("committed ").and_then(|s| s.parse().ok()) {
                *progress.lock().unwrap() = seq;
            }
        }
    });
    // Once the follower has read a record of the steady writer, both hold the
    // journal open, and as long as either lives no opener runs recovery. Else
    // the dead claimer below could die before either had opened it, and the
    // first of them to open would run recovery, finding no writer alive, and
    // cut the dead claim as the torn tail it is: nothing left to unblock.
    follower.wait_for(|&(id, _)| id == 0);
    // A claimer that dies holding a half-written claim, on purpose: its hole
    // must be padded by the follower once the steady writer commits past it.
    let mut dead_claimer = writer(dir.path(), 99, 50, &["--report", "10", "--die-in-claim"]);
    let output = BufReader::new(dead_claimer.stdout.take().unwrap()).lines().map_while(Result::ok).last();
    let dead_claim: u64 = output
        .and_then(|line| line.strip_prefix("claimed ")?.parse().ok())
        .expect("the dead claimer must die holding a claim");
    assert!(!dead_claimer.wait().unwrap().success());
    let steady_now = *steady_progress.lock().unwrap();
    follower.wait_for(|&(id, seq)| id == 0 && seq > steady_now + 100);

    let mut rng = common::Rng(7);
    let mut committed_by_killed: HashMap<u32, u64> = HashMap::new();
    for round in 1..=ROUNDS {
        let mut victim = writer(dir.path(), round, 10_000_000, &["--report", "100"]);
        let mut lines = BufReader::new(victim.stdout.take().unwrap()).lines();
        let reports = 1 + rng.below(8) as usize;
        let last = read_progress(&mut lines, reports).expect("the victim made progress");
        victim.kill().unwrap();
        victim.wait().unwrap();
        committed_by_killed.insert(round, last);
        // Once the follower has read a record the steady writer committed after
        // the kill, it is past anything the victim left behind.
        let steady_at_kill = *steady_progress.lock().unwrap();
        follower.wait_for(|&(id, seq)| id == 0 && seq > steady_at_kill + 100);
        verify_clean(dir.path());
    }
    steady.kill().unwrap();
    steady.wait().unwrap();
    steady_reader.join().unwrap();
    let steady_committed = *steady_progress.lock().unwrap();
    append_end(dir.path());
    let (records, report) = follower.finish();
    let counts = per_writer_prefixes(&records);
    assert_eq!(counts.get(&99), Some(&50), "the dead claimer's committed records are all there");
    assert!(report_field(&report, "unblocked") >= 1, "the dead claim was padded: {report}");
    // By the follower's unblocker, in place: padding the claim's length where
    // the claim was (recovery would have cut it, and the next record taken
    // its position).
    let word = common::read_at(&common::segment_path(dir.path(), 64 << 10, dead_claim), dead_claim % (64 << 10), 8);
    let word = backwater::frame::Word0::unpack(u64::from_le_bytes(word.try_into().unwrap()));
    assert_eq!(
        (word.frame_type, word.length),
        (backwater::frame::TYPE_PADDING, backwater::frame::aligned_frame_len(64) as i32),
        "the dead claim at {dead_claim} was unblocked in place"
    );
    for (id, last) in committed_by_killed {
        assert!(counts.get(&id).is_some_and(|&n| n > last), "writer {id}: a committed record was lost");
    }
    assert!(counts[&0] > steady_committed, "the steady writer lost a committed record");
    eprintln!("{report}");
    let stall = report_field(&report, "longest_stall_ms");
    assert!(stall < UNBLOCK_MS + 1000, "the follower stalled {stall} ms: {report}");
    verify_clean(dir.path());
    let journal = backwater::Journal::open_read_only(dir.path()).unwrap();
    // A writer killed between its commit and its counter increment leaves the
    // counter one short: at most one per killed process.
    let appended = journal.stats().appended;
    let read = records.len() as u64 + 1; // + END
    assert!(appended <= read && read - appended <= ROUNDS as u64 + 1, "counter {appended}, records {read}");
}

#[test]
fn the_only_writer_killed_mid_append_is_recovered_on_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    create(dir.path(), "64KiB");
    let mut rng = common::Rng(11);
    let mut committed: HashMap<u32, u64> = HashMap::new();
    for round in 1..=10u32 {
        // Odd rounds die holding a claim; even rounds are killed at a random point.
        let extra: &[&str] = if round % 2 == 1 { &["--report", "7", "--die-in-claim"] } else { &["--report", "100"] };
        let count = if round % 2 == 1 { 700 } else { 10_000_000 };
        let mut victim = writer(dir.path(), round, count, extra);
        let mut lines = BufReader::new(victim.stdout.take().unwrap()).lines();
        let last = if round % 2 == 1 {
            let lines: Vec<String> = lines.map_while(Result::ok).collect();
            assert!(lines.last().is_some_and(|l| l.starts_with("claimed ")));
            count - 1
        } else {
            let last = read_progress(&mut lines, 1 + rng.below(20) as usize).expect("progress");
            victim.kill().unwrap();
            last
        };
        victim.wait().unwrap();
        committed.insert(round, last);
        // Reopening alone runs recovery: the hole or torn tail is gone.
        let journal = backwater::Journal::open(dir.path(), backwater::Config::default()).unwrap();
        let report = journal.recovery_report().expect("recovery ran: no other writer was alive");
        if round % 2 == 1 {
            assert!(
                report.cut.is_some() || !report.padded.is_empty(),
                "round {round}: the dead claim was not cleaned up"
            );
        }
        drop(journal);
        verify_clean(dir.path());
    }
    let journal = backwater::Journal::open_read_only(dir.path()).unwrap();
    let records: Vec<(u32, u64)> = common::drain(&mut journal.anonymous_consumer())
        .unwrap()
        .into_iter()
        .map(|(_, p)| {
            (u32::from_le_bytes(p[..4].try_into().unwrap()), u64::from_le_bytes(p[4..12].try_into().unwrap()))
        })
        .collect();
    let counts = per_writer_prefixes(&records);
    for (id, last) in committed {
        assert!(counts.get(&id).is_some_and(|&n| n > last), "writer {id}: a committed record was lost");
    }
}
