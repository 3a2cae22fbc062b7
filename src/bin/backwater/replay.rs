//! `backwater replay`: drives a slow consumer from a durable cursor,
//! at-least-once. Records go to stdout or a child's stdin, paced; the cursor
//! is committed only after records are handed over, or, with `--ack`, only
//! up to what the child has acknowledged.

use std::collections::VecDeque;
use std::io::{BufRead, IsTerminal, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use backwater::{Consumer, Journal, Record};

use crate::cli::{Pace, ReplayArgs, ReplayFormat};
use crate::output::{human_bytes, open_existing, payload_json, priority_name};
use crate::{EXIT_FINDING, EXIT_USAGE, Failure, Outcome};

/// What the ack reader thread reports.
enum Ack {
    Records(u64),
    Garbage(String),
}

pub fn run(args: ReplayArgs) -> Outcome {
    let journal = open_existing(&args.dir)?;
    let consumer = open_cursor(&journal, &args)?;
    let mut child = args.exec.as_deref().map(|command| spawn(command, args.ack)).transpose()?;
    let acks = match child.as_mut().and_then(|c| c.stdout.take()) {
        Some(stdout) if args.ack => Some(read_acks(stdout)),
        _ => None,
    };
    let sink: Box<dyn Write> = match child.as_mut().and_then(|c| c.stdin.take()) {
        Some(stdin) => Box::new(stdin) as Box<dyn Write>,
        None => Box::new(std::io::stdout().lock()),
    };
    let mut replay = Replay {
        journal: &journal,
        consumer,
        sink: Some(std::io::BufWriter::with_capacity(1 << 16, sink)),
        acks,
        unacked: VecDeque::new(),
        pacer: Pacer::new(&args),
        progress: Progress::new(),
        handed: 0,
        acknowledged: 0,
        args: &args,
    };
    let result = replay.run();
    replay.finish(child, result)
}

struct Replay<'a> {
    journal: &'a Journal,
    consumer: Consumer,
    sink: Option<std::io::BufWriter<Box<dyn Write + 'a>>>,
    acks: Option<Receiver<Ack>>,
    /// `next_position` of each record handed over and not yet acknowledged.
    unacked: VecDeque<u64>,
    pacer: Pacer,
    progress: Progress,
    handed: u64,
    acknowledged: u64,
    args: &'a ReplayArgs,
}

impl Replay<'_> {
    /// Hands records over until the tail (or forever with `--follow`).
    fn run(&mut self) -> Outcome {
        let mut since_commit = 0;
        loop {
            self.take_acks(Duration::ZERO)?;
            let room =
                if self.acks.is_some() { self.args.window.saturating_sub(self.unacked.len()) } else { self.args.batch };
            if room == 0 {
                self.take_acks(Duration::from_millis(100))?;
                continue;
            }
            let wait = if self.args.follow { Duration::from_millis(50) } else { Duration::ZERO };
            let read = self.hand_over(room.min(256), wait)?;
            since_commit += read;
            if self.acks.is_none() && (since_commit >= self.args.batch || read == 0) && since_commit > 0 {
                self.consumer.commit()?;
                since_commit = 0;
            }
            self.progress.show(self.handed, self.pacer.bytes, self.consumer.lag());
            if read > 0 || self.args.follow {
                continue;
            }
            if self.unacked.is_empty() || self.acks.is_none() {
                return Ok(());
            } else {
                self.take_acks(Duration::from_millis(100))?;
            }
        }
    }

    /// Polls up to `limit` records (waiting up to `wait` for the first), paces
    /// and writes each, then flushes.
    fn hand_over(&mut self, limit: usize, wait: Duration) -> Result<usize, Failure> {
        let Some(sink) = self.sink.as_mut() else { return Ok(0) };
        let (format, pacer, unacked, track) =
            (self.args.format, &mut self.pacer, &mut self.unacked, self.acks.is_some());
        let mut written = Ok(());
        let handler = |record: Record<'_>| {
            if written.is_ok() {
                pacer.wait(&record);
                written = frame(sink, format, &record);
                if track {
                    unacked.push_back(record.next_position());
                }
            }
        };
        let read = if wait.is_zero() {
            self.consumer.poll(handler, limit)?
        } else {
            self.consumer.poll_wait(handler, limit, wait)?
        };
        written.and_then(|()| sink.flush()).map_err(|e| self.child_gone(e))?;
        self.handed += read as u64;
        Ok(read)
    }

    /// Applies acknowledgements, waiting up to `wait` for the first one.
    fn take_acks(&mut self, wait: Duration) -> Outcome {
        let Some(acks) = &self.acks else { return Ok(()) };
        let mut next = match acks.recv_timeout(wait) {
            Ok(ack) => Some(ack),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(self.child_gone(std::io::Error::other("the child closed its stdout")));
            }
        };
        while let Some(ack) = next {
            let count = match ack {
                Ack::Records(count) => count,
                Ack::Garbage(line) => {
                    return Err(Failure::new(
                        EXIT_FINDING,
                        format!("the child wrote '{line}' on stdout; with --ack each line must be a record count"),
                    ));
                }
            };
            if count > self.unacked.len() as u64 {
                return Err(Failure::new(
                    EXIT_FINDING,
                    format!(
                        "the child acknowledged {count} records, but only {} were unacknowledged",
                        self.unacked.len()
                    ),
                ));
            }
            let through = self.unacked.drain(..count as usize).next_back();
            if let Some(position) = through {
                self.consumer.commit_at(position)?;
                self.acknowledged += count;
            }
            next = acks.try_recv().ok();
        }
        Ok(())
    }

    fn child_gone(&self, error: std::io::Error) -> Failure {
        Failure::new(EXIT_FINDING, format!("the consumer stopped taking records ({error})"))
    }

    /// Closes the child's stdin, collects the last acks, and reports.
    fn finish(mut self, child: Option<Child>, result: Outcome) -> Outcome {
        drop(self.sink.take());
        let mut result = result;
        if result.is_ok() && self.acks.is_some() {
            while !self.unacked.is_empty() && result.is_ok() {
                result = self.take_acks(Duration::from_secs(3600));
            }
        }
        let status = child.map(|mut child| child.wait());
        self.progress.done();
        let committed =
            self.journal.cursors().ok().and_then(|cursors| cursors.into_iter().find(|c| c.name == self.args.cursor));
        let position = committed.map(|c| c.position).unwrap_or_default();
        let exit = match status {
            Some(Ok(status)) if !status.success() => Some(format!("the child exited with {status}")),
            Some(Err(e)) => Some(format!("waiting for the child failed: {e}")),
            _ => None,
        };
        match (result, exit) {
            (Ok(()), None) => {
                eprintln!("replayed {} records; cursor '{}' committed at {position}", self.handed, self.args.cursor);
                Ok(())
            }
            (result, exit) => {
                let why = exit.or_else(|| result.err().map(|f| f.message)).unwrap_or_default();
                Err(Failure::new(
                    EXIT_FINDING,
                    format!(
                        "{why}; cursor '{}' committed at position {position} after {} acknowledged of {} handed over; \
                         rerun to resume from there",
                        self.args.cursor,
                        if self.acks.is_some() { self.acknowledged } else { self.handed },
                        self.handed,
                    ),
                ))
            }
        }
    }
}

/// The replay's cursor: an existing one, or a new one with `--create`.
fn open_cursor(journal: &Journal, args: &ReplayArgs) -> Result<Consumer, Failure> {
    if args.create {
        return Ok(journal.consumer(&args.cursor)?);
    }
    match journal.existing_consumer(&args.cursor) {
        Err(backwater::Error::NoSuchCursor(name)) => {
            let existing = journal.cursor_names()?;
            let existing = if existing.is_empty() { "none".to_string() } else { existing.join(", ") };
            Err(Failure::new(
                EXIT_USAGE,
                format!(
                    "{} has no cursor named '{name}' (cursors: {existing}); to start a new one at the oldest \
                     record, add --create",
                    args.dir.display()
                ),
            ))
        }
        other => Ok(other?),
    }
}

fn spawn(command: &str, ack: bool) -> Result<Child, Failure> {
    Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(if ack { Stdio::piped() } else { Stdio::inherit() })
        .spawn()
        .map_err(|e| Failure::new(EXIT_USAGE, format!("cannot run '{command}': {e}")))
}

/// Reads the child's ack lines on a thread of its own.
fn read_acks(stdout: std::process::ChildStdout) -> Receiver<Ack> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let ack = line.parse().map(Ack::Records).unwrap_or_else(|_| Ack::Garbage(line.to_string()));
            if sender.send(ack).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Writes one record framed as `format`.
fn frame(out: &mut impl Write, format: ReplayFormat, record: &Record<'_>) -> std::io::Result<()> {
    match format {
        ReplayFormat::Lines => {
            out.write_all(record.payload())?;
            out.write_all(b"\n")
        }
        ReplayFormat::Len => {
            out.write_all(&(record.payload().len() as u32).to_le_bytes())?;
            out.write_all(record.payload())
        }
        ReplayFormat::Json => {
            let mut object = serde_json::json!({
                "position": record.position(),
                "timestamp_ns": record.timestamp(),
                "priority": priority_name(record.priority()),
            });
            let (key, value) = payload_json(record.payload());
            object[key] = value;
            writeln!(out, "{object}")
        }
    }
}

/// Spaces records by a record rate, a byte rate, or their recorded timestamps.
struct Pacer {
    start: Instant,
    records: u64,
    bytes: u64,
    rate: Option<f64>,
    bytes_rate: Option<f64>,
    recorded: Option<f64>,
    first_timestamp: Option<u64>,
}

impl Pacer {
    fn new(args: &ReplayArgs) -> Pacer {
        Pacer {
            start: Instant::now(),
            records: 0,
            bytes: 0,
            rate: args.rate,
            bytes_rate: args.bytes_rate,
            recorded: (args.pace == Pace::Recorded).then_some(args.speed),
            first_timestamp: None,
        }
    }

    /// Sleeps until `record` is due.
    fn wait(&mut self, record: &Record<'_>) {
        let mut due = 0.0f64;
        if let Some(rate) = self.rate {
            due = due.max(self.records as f64 / rate);
        }
        if let Some(rate) = self.bytes_rate {
            due = due.max(self.bytes as f64 / rate);
        }
        if let Some(speed) = self.recorded {
            let first = *self.first_timestamp.get_or_insert(record.timestamp());
            due = due.max(record.timestamp().saturating_sub(first) as f64 / 1e9 / speed);
        }
        let due = self.start + Duration::from_secs_f64(due);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        self.records += 1;
        self.bytes += record.payload().len() as u64;
    }
}

/// Records/s, lag and ETA on stderr, when stderr is a terminal.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
}

impl Progress {
    fn new() -> Progress {
        let bar = std::io::stderr().is_terminal().then(indicatif::ProgressBar::new_spinner);
        Progress { bar, started: Instant::now() }
    }

    fn show(&self, handed: u64, bytes: u64, lag: u64) {
        let Some(bar) = &self.bar else { return };
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = handed as f64 / seconds;
        let bytes_rate = bytes as f64 / seconds;
        let eta = if bytes_rate > 0.0 { format!("{:.0} s", lag as f64 / bytes_rate) } else { "-".into() };
        bar.set_message(format!("{handed} records  {rate:.0}/s  lag {}  ETA {eta}", human_bytes(lag)));
        bar.tick();
    }

    fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
