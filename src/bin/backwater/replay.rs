//! `backwater replay`: drives a slow consumer from a durable cursor,
//! at-least-once. Records go to stdout or a child's stdin, paced; the cursor
//! is committed only past records the consumer has provably taken: with
//! `--ack`, those the child acknowledged; without, those it read out of the
//! pipe (a pipe's unread bytes are asked of the kernel), and at the end only
//! once the child has exited successfully. A reader that stops before the end
//! fails the replay (exit 1) with the cursor past what it took.
//!
//! With `--to nats://…` records go to NATS JetStream instead (`nats.rs`),
//! whose PubAcks come back as acks: the same window, commits and timeouts.

use std::collections::VecDeque;
use std::io::{BufRead, IsTerminal, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use backwater::{Consumer, Error, Journal, Record, Seek};

use crate::cli::{Pace, ReplayArgs, ReplayFormat};
use crate::output::{human_bytes, key_json, open_existing, payload_json, priority_name};
use crate::{EXIT_FINDING, EXIT_USAGE, Failure, Outcome};

/// What the ack reader thread (or the NATS forwarder) reports.
pub enum Ack {
    Records(u64),
    Garbage(String),
    /// The NATS stream cannot take this record: forwarding has stopped.
    Rejected(crate::nats::Rejected),
}

pub fn run(args: ReplayArgs) -> Outcome {
    if args.ack && args.format == ReplayFormat::Lines {
        return Err(Failure::new(
            EXIT_USAGE,
            "--ack needs a framing that carries every payload: use --format json or --format len \
             (with lines, a payload holding a newline reaches the child as two records)",
        ));
    }
    let journal = open_existing(&args.dir)?;
    let consumer = open_cursor(&journal, &args)?;
    let journal_id = crate::info::journal_id(&journal);
    let mut child = args.exec.as_deref().map(|command| spawn(command, args.ack)).transpose()?;
    let (out, acks) = if args.to.is_some() {
        let (sender, acks) = std::sync::mpsc::channel();
        (Destination::Nats(crate::nats::start(&args, &journal_id, sender)?), Some(acks))
    } else {
        let acks = match child.as_mut().and_then(|c| c.stdout.take()) {
            Some(stdout) if args.ack => Some(read_acks(stdout)),
            _ => None,
        };
        let sink = match child.as_mut().and_then(|c| c.stdin.take()) {
            Some(stdin) => Sink::Child(stdin),
            None => Sink::Stdout(std::io::stdout()),
        };
        (Destination::Bytes(std::io::BufWriter::with_capacity(1 << 16, Counted { sink, sent: 0 })), acks)
    };
    let mut replay = Replay {
        journal: &journal,
        journal_id,
        committed_at: consumer.position(),
        consumer,
        out: Some(out),
        acks,
        pending: VecDeque::new(),
        last_ack: Instant::now(),
        pacer: Pacer::new(&args),
        rest_of_window: None,
        progress: Progress::new(),
        handed: 0,
        read: 0,
        committed: 0,
        advice: None,
        acks_broken: false,
        args: &args,
    };
    let result = replay.run();
    replay.finish(child, result)
}

/// Where records go: our stdout or the child's stdin.
enum Sink {
    Stdout(std::io::Stdout),
    Child(ChildStdin),
}

impl Sink {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Sink::Stdout(out) => out.as_fd(),
            Sink::Child(stdin) => stdin.as_fd(),
        }
    }
}

/// The sink with the bytes the kernel has accepted from us.
struct Counted {
    sink: Sink,
    sent: u64,
}

impl Write for Counted {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = match &mut self.sink {
            // Past std's line buffer, straight to the descriptor: bytes held
            // in that buffer would count as sent, and then as taken.
            Sink::Stdout(out) => rustix::io::write(out.as_fd(), bytes).map_err(std::io::Error::from),
            Sink::Child(stdin) => stdin.write(bytes),
        }?;
        self.sent += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.sink {
            Sink::Stdout(out) => out.flush(),
            Sink::Child(stdin) => stdin.flush(),
        }
    }
}

type Out = std::io::BufWriter<Counted>;

/// Where the replay hands records: a byte stream (stdout or a child's
/// stdin), or NATS JetStream.
enum Destination {
    Bytes(Out),
    Nats(crate::nats::Publisher),
}

impl Destination {
    /// Hands one record over (a byte stream frames it as `format`).
    fn send(&mut self, record: &Record<'_>, format: ReplayFormat, journal: &str) -> std::io::Result<()> {
        match self {
            Destination::Bytes(out) => frame(out, format, record, journal),
            Destination::Nats(publisher) => {
                publisher.send(record);
                Ok(())
            }
        }
    }

    /// Where in the byte stream what was handed over ends (NATS acks count
    /// records, not bytes: 0).
    fn end(&self) -> u64 {
        match self {
            Destination::Bytes(out) => out.get_ref().sent + out.buffer().len() as u64,
            Destination::Nats(_) => 0,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Destination::Bytes(out) => out.flush(),
            Destination::Nats(publisher) => publisher.flush(),
        }
    }

    fn bytes(&self) -> Option<&Counted> {
        match self {
            Destination::Bytes(out) => Some(out.get_ref()),
            Destination::Nats(_) => None,
        }
    }
}

/// Bytes written into a pipe that its reader has not taken yet (0 for
/// anything that is not a pipe: a file or a terminal takes what it is given).
fn unread_in_pipe(fd: BorrowedFd<'_>) -> std::io::Result<u64> {
    let stat = rustix::fs::fstat(fd)?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::Fifo {
        return Ok(0);
    }
    Ok(rustix::io::ioctl_fionread(fd)?)
}

/// Whether the reading end of a pipe has been closed.
fn reader_gone(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [rustix::event::PollFd::from_borrowed_fd(fd, rustix::event::PollFlags::OUT)];
    let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
    rustix::event::poll(&mut fds, Some(&zero)).is_ok() && fds[0].revents().contains(rustix::event::PollFlags::ERR)
}

struct Replay<'a> {
    journal: &'a Journal,
    /// For `--format json`: with the position, a record's lasting name.
    journal_id: String,
    consumer: Consumer,
    out: Option<Destination>,
    acks: Option<Receiver<Ack>>,
    /// Records handed over and not yet known to be taken, oldest first: the
    /// offset in the output stream where each ends, and its next position.
    pending: VecDeque<(u64, u64)>,
    /// When the child last acknowledged (or was first owed an ack).
    last_ack: Instant,
    pacer: Pacer,
    /// With `--conflate`: a window the pacer paused in.
    rest_of_window: Option<RestOfWindow>,
    progress: Progress,
    handed: u64,
    /// Records read: with `--conflate`, `handed` plus those skipped.
    read: u64,
    committed: u64,
    committed_at: u64,
    /// What to do next, when a rerun would not help.
    advice: Option<String>,
    /// The child broke the ack protocol: its later lines are not trusted.
    acks_broken: bool,
    args: &'a ReplayArgs,
}

impl Replay<'_> {
    /// Hands records over until the tail (or forever with `--follow`).
    fn run(&mut self) -> Outcome {
        let mut since_commit = 0;
        loop {
            self.take_acks(Duration::ZERO)?;
            let room = if self.acks.is_some() {
                self.args.window.saturating_sub(self.pending.len())
            } else {
                self.args.batch.saturating_sub(since_commit)
            };
            if room == 0 && self.acks.is_some() {
                self.take_acks(Duration::from_millis(100))?;
                continue;
            }
            let wait = if self.args.follow { Duration::from_millis(50) } else { Duration::ZERO };
            let reading_a_window = self.args.conflate && self.rest_of_window.is_none();
            let limit = if reading_a_window { self.args.conflate_window } else { room.clamp(1, 256) };
            // With --ack, never more unacknowledged than --window (a
            // conflated window's latest records included).
            let cap = if self.acks.is_some() { room } else { usize::MAX };
            let (read, paused) = self.hand_over(limit, cap, wait)?;
            since_commit += read;
            if self.acks.is_none() && (since_commit >= self.args.batch || read == 0 && !self.pending.is_empty()) {
                self.commit_taken()?;
                since_commit = 0;
            }
            self.progress.show(self.handed, self.pacer.bytes, self.consumer.lag());
            if let Some(due_in) = paused {
                self.pause(due_in)?;
                continue;
            }
            if read == 0 && !self.args.follow && self.rest_of_window.is_none() {
                return Ok(());
            }
            if read == 0 {
                self.check_ack_timeout()?;
            }
        }
    }

    /// Polls up to `limit` records (waiting up to `wait` for the first) and
    /// writes those that are due, up to `room` of them, then flushes.
    /// Returns how many records it moved past and, when one was held back
    /// (not yet due, or no room), how long until it is due: the consumer is moved back to that record, so that the wait
    /// happens between hand-overs, where acks are applied and the cursor
    /// committed. A conflated window is read once: when the pacer holds one
    /// of its records back, the positions of those still to hand over are
    /// kept ([`RestOfWindow`]) and the next hand-overs read on to them.
    fn hand_over(&mut self, limit: usize, room: usize, wait: Duration) -> Result<(usize, Option<Duration>), Failure> {
        let Some(out) = self.out.as_mut() else { return Ok((0, None)) };
        let pending_before = self.pending.len();
        let mut sender = Sender {
            pacer: &mut self.pacer,
            out,
            pending: &mut self.pending,
            format: self.args.format,
            journal: &self.journal_id,
            room,
            written: Ok(()),
        };
        let mut paused: Option<(u64, Duration)> = None;
        // Records read after the one held back (read again next time).
        let mut held_back = 0;
        let rest = &mut self.rest_of_window;
        let polled = if let Some(window) = rest.as_mut() {
            let handler = |record: Record<'_>| {
                let at = record.position();
                if paused.is_some() || at >= window.end || window.positions.front() != Some(&at) {
                    return; // held back before, past the window, or superseded in it
                }
                match sender.offer(&record) {
                    Some(due_in) => paused = Some((at, due_in)),
                    None => drop(window.positions.pop_front()),
                }
            };
            // Counted among those read when the window was read.
            self.consumer.poll(handler, limit).map(|moved| (moved, 0))
        } else if self.args.conflate {
            let mut left = VecDeque::new();
            let handler = |record: Record<'_>| {
                if paused.is_none() {
                    paused = sender.offer(&record).map(|due_in| (record.position(), due_in));
                }
                if paused.is_some() {
                    left.push_back(record.position());
                }
            };
            let read = conflated(&mut self.consumer, handler, limit, wait);
            if paused.is_some() {
                *rest = Some(RestOfWindow { positions: left, end: self.consumer.position() });
            }
            read.map(|read| (read, read))
        } else {
            let handler = |record: Record<'_>| {
                if paused.is_none() {
                    paused = sender.offer(&record).map(|due_in| (record.position(), due_in));
                }
                if paused.is_some() {
                    held_back += 1;
                }
            };
            let polled = if wait.is_zero() {
                self.consumer.poll(handler, limit)
            } else {
                self.consumer.poll_wait(handler, limit, wait)
            };
            polled.map(|polled| (polled - held_back, polled - held_back))
        };
        let flushed = sender.written.and_then(|()| out.flush());
        // Counted even when the write failed: they are pending, and may have been taken.
        let handed = self.pending.len() - pending_before;
        self.handed += handed as u64;
        let (moved, read) = polled.map_err(|e| self.poll_failed(e))?;
        self.read += read as u64;
        flushed.map_err(|e| self.hand_over_failed(&e))?;
        if handed > 0 && self.pending.len() == handed {
            self.last_ack = Instant::now(); // the oldest owed ack starts now
        }
        self.move_to_next(paused.map(|(position, _)| position))?;
        Ok((moved, paused.map(|(_, due_in)| due_in)))
    }

    /// After a hand-over: back to the record the pacer held back, if any;
    /// past the rest of a conflated window once it is all handed over.
    fn move_to_next(&mut self, paused_at: Option<u64>) -> Outcome {
        let to = match (&self.rest_of_window, paused_at) {
            (_, Some(position)) => position,
            (Some(window), None) if window.positions.is_empty() => window.end,
            _ => return Ok(()),
        };
        if paused_at.is_none() {
            self.rest_of_window = None;
        }
        let Err(error) = self.consumer.seek(Seek::Position(to)) else { return Ok(()) };
        let first = self.journal.first_position();
        // Deleted since it was read (`drop-oldest`): as a poll would say.
        let error = if to < first { Error::Lost { from: to, to: first } } else { error };
        Err(self.poll_failed(error))
    }

    /// Waits until the record the pacer held back is due, applying the acks
    /// that arrive meanwhile (so the cursor follows them, whatever the rate).
    fn pause(&mut self, due_in: Duration) -> Outcome {
        if self.acks.is_some() {
            self.take_acks(due_in)
        } else {
            std::thread::sleep(due_in);
            Ok(())
        }
    }

    /// Records could not be handed over. To NATS, the forwarder stopped, and
    /// the acks it sent before it did (the refusal that stopped it, naming
    /// the record) say why.
    fn hand_over_failed(&mut self, error: &std::io::Error) -> Failure {
        if matches!(self.out, Some(Destination::Nats(_))) {
            while let Some(Ok(ack)) = self.acks.as_ref().map(|acks| acks.try_recv()) {
                if let Err(failure) = self.apply_ack(ack) {
                    return failure;
                }
            }
        }
        child_gone(error)
    }

    /// Data deleted under the cursor: a rerun fails the same way, so say how to go on.
    fn poll_failed(&mut self, error: Error) -> Failure {
        if matches!(error, Error::Lost { .. } | Error::Evicted { .. }) {
            self.advice = Some(format!(
                "those records cannot be replayed; to go on from the oldest retained record, run \
                 `backwater cursor {} reset {} start`",
                self.args.dir.display(),
                self.args.cursor
            ));
        }
        error.into()
    }

    /// Without `--ack`: commits past the records the reader has taken out of
    /// the pipe (everything written, for a file).
    fn commit_taken(&mut self) -> Outcome {
        self.commit_through(self.taken())
    }

    /// How many bytes of the output the reader has taken (`None`: unknown).
    fn taken(&self) -> Option<u64> {
        let counted = self.out.as_ref()?.bytes()?;
        let unread = unread_in_pipe(counted.sink.fd()).ok()?;
        Some(counted.sent.saturating_sub(unread))
    }

    /// Commits past the pending records that end within the first `taken` bytes.
    fn commit_through(&mut self, taken: Option<u64>) -> Outcome {
        let Some(taken) = taken else { return Ok(()) };
        let count = self.pending.iter().take_while(|&&(end, _)| end <= taken).count();
        self.commit_first(count)
    }

    /// Counts the oldest `count` pending records as taken and commits past
    /// them. With `--conflate` too, inside a window: the cursor file's mark
    /// of how far the windows were read makes a rerun from there conflate
    /// on to the mark as one window ([`Consumer::poll_conflated`]), so it
    /// never hands over a record this run skipped for a later one.
    fn commit_first(&mut self, count: usize) -> Outcome {
        let Some((_, through)) = self.pending.drain(..count).next_back() else { return Ok(()) };
        self.committed += count as u64;
        self.consumer.commit_at(through)?;
        self.committed_at = through;
        Ok(())
    }

    /// Applies acknowledgements, waiting up to `wait` for the first one.
    fn take_acks(&mut self, wait: Duration) -> Outcome {
        let Some(acks) = &self.acks else { return Ok(()) };
        let first = match acks.recv_timeout(wait) {
            Ok(ack) => Some(ack),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return Err(self.acks_ended()),
        };
        let arrived: Vec<Ack> = first.into_iter().chain(acks.try_iter()).collect();
        for ack in arrived {
            self.apply_ack(ack)?;
        }
        self.check_ack_timeout()
    }

    /// Commits past the records one ack line acknowledges.
    fn apply_ack(&mut self, ack: Ack) -> Outcome {
        let count = match ack {
            Ack::Records(count) if count <= self.pending.len() as u64 => count,
            Ack::Records(count) => {
                self.acks_broken = true;
                return Err(Failure::new(
                    EXIT_FINDING,
                    format!(
                        "the child acknowledged {count} records, but only {} were unacknowledged",
                        self.pending.len()
                    ),
                ));
            }
            Ack::Garbage(line) => {
                self.acks_broken = true;
                return Err(Failure::new(
                    EXIT_FINDING,
                    format!("the child wrote '{line}' on stdout; with --ack each line must be a record count"),
                ));
            }
            Ack::Rejected(rejected) => {
                self.acks_broken = true;
                self.advice = Some(self.rejected_advice(&rejected));
                return Err(Failure::new(EXIT_FINDING, rejected.to_string()));
            }
        };
        self.commit_first(count as usize)?;
        self.last_ack = Instant::now();
        Ok(())
    }

    /// With `--ack`, once the child's input is closed (at the tail, or after
    /// a failure such as a broken pipe): applies the acks it still writes
    /// until its stdout closes, so that an ack sent as it exits still counts.
    /// Stops early when nothing is owed, after a broken ack line, or when it
    /// acknowledges nothing for `--ack-timeout`.
    fn last_acks(&mut self) -> Outcome {
        while !self.pending.is_empty() && !self.acks_broken {
            let Some(next) = self.acks.as_ref().map(|acks| acks.recv_timeout(Duration::from_millis(100))) else {
                return Ok(());
            };
            match next {
                Ok(ack) => self.apply_ack(ack)?,
                Err(RecvTimeoutError::Timeout) => self.check_ack_timeout()?,
                Err(RecvTimeoutError::Disconnected) => return Err(self.acks_ended()),
            }
        }
        Ok(())
    }

    /// What to do about a record the stream refused (it is the oldest
    /// unacknowledged one: the cursor stays before it).
    fn rejected_advice(&self, rejected: &crate::nats::Rejected) -> String {
        let skip = match self.pending.front() {
            Some(&(_, next)) => format!(
                "`backwater cursor {} set {} {next}` skips it (it is then lost to the stream)",
                self.args.dir.display(),
                self.args.cursor
            ),
            None => "moving the cursor past it skips it".into(),
        };
        match rejected {
            crate::nats::Rejected::TooLarge { .. } => {
                format!("a rerun fails the same way: raise the server's max_payload, or {skip}")
            }
            crate::nats::Rejected::Refused { .. } => {
                format!("a rerun resumes there once the stream takes the record; {skip}")
            }
            crate::nats::Rejected::BadKey { .. } => {
                format!("a rerun fails the same way: replay without --subject-from-key, or {skip}")
            }
            crate::nats::Rejected::Foreign { .. } => {
                "the record is in the stream; a rerun goes on after it (stop the other publisher first)".into()
            }
        }
    }

    /// The acks channel closed: the child closed its stdout, or the forwarder stopped.
    fn acks_ended(&self) -> Failure {
        match self.out {
            Some(Destination::Nats(_)) => Failure::new(EXIT_FINDING, "the NATS forwarder stopped"),
            _ => stdout_closed(),
        }
    }

    /// Fails when the child owes acks and has acknowledged nothing for `--ack-timeout`.
    fn check_ack_timeout(&self) -> Outcome {
        if self.acks.is_none() || self.pending.is_empty() || self.last_ack.elapsed() < self.args.ack_timeout {
            return Ok(());
        }
        if self.args.to.is_some() {
            return Err(Failure::new(
                EXIT_FINDING,
                format!(
                    "no PubAck from NATS for {} while {} records were unacknowledged (NATS unreachable, or the \
                     stream without a leader); raise --ack-timeout to wait out longer outages",
                    humantime::format_duration(self.args.ack_timeout),
                    self.pending.len()
                ),
            ));
        }
        Err(Failure::new(
            EXIT_FINDING,
            format!(
                "the child acknowledged nothing for {} while {} records were unacknowledged: with --ack a sink \
                 must acknowledge what it has whenever its input pauses, not only when its own batch is full \
                 (or raise --window, now {}, above its batch size)",
                humantime::format_duration(self.args.ack_timeout),
                self.pending.len(),
                self.args.window
            ),
        ))
    }

    /// At the tail: flushes and, without `--ack`, waits until the reader has
    /// taken everything or gone (a child that exits counts as gone).
    fn settle(&mut self, child: Option<&mut Child>) -> Outcome {
        let Some(out) = self.out.as_mut() else { return Ok(()) };
        if let Err(error) = out.flush() {
            return Err(self.hand_over_failed(&error));
        }
        if self.acks.is_some() {
            return Ok(());
        }
        let Some(counted) = out.bytes() else { return Ok(()) };
        let fd = counted.sink.fd();
        let mut child = child;
        while unread_in_pipe(fd).is_ok_and(|unread| unread > 0) && !reader_gone(fd) {
            if child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_)))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Closes the child's stdin, collects the last acks (or, without `--ack`,
    /// commits what was taken once the consumer has ended well), and reports.
    fn finish(mut self, mut child: Option<Child>, result: Outcome) -> Outcome {
        let mut result = result.and_then(|()| self.settle(child.as_mut()));
        let taken = self.taken();
        let nats = match &self.out {
            Some(Destination::Nats(publisher)) => Some(publisher.stats.clone()),
            _ => None,
        };
        drop(self.out.take()); // the child sees the end of its input
        let last_acks = self.last_acks();
        result = result.and(last_acks);
        let exit = match child.as_mut().map(Child::wait) {
            Some(Ok(status)) if !status.success() => Some(format!("the child exited with {status}")),
            Some(Err(e)) => Some(format!("waiting for the child failed: {e}")),
            _ => None,
        };
        if exit.is_none() && self.acks.is_none() {
            // The reader ended well, or went away (a pipe reader has no exit
            // status): what it took out of the pipe is consumed.
            let committed = self.commit_through(taken);
            result = result.and(committed);
            if result.is_ok() && !self.pending.is_empty() {
                result = Err(Failure::new(
                    EXIT_FINDING,
                    format!(
                        "the consumer stopped reading before the end: it left the last {} records handed over \
                         in the pipe",
                        self.pending.len()
                    ),
                ));
            }
        }
        self.progress.done();
        if let Some(stats) = nats {
            eprintln!("{}", crate::nats::summary(&stats));
        }
        match (result, exit) {
            (Ok(()), None) => {
                eprintln!(
                    "replayed {} records; cursor '{}' committed at {}",
                    self.committed, self.args.cursor, self.committed_at
                );
                if self.args.conflate {
                    eprintln!(
                        "conflated: read {} records, handed over {}, skipped {} superseded by a later record of \
                         their key (window {})",
                        self.read,
                        self.handed,
                        self.read - self.handed,
                        self.args.conflate_window
                    );
                }
                Ok(())
            }
            (result, exit) => Err(self.failed(exit.or_else(|| result.err().map(|f| f.message)))),
        }
    }

    fn failed(&self, why: Option<String>) -> Failure {
        let what = if self.acks.is_some() {
            format!("{} acknowledged of {} handed over", self.committed, self.handed)
        } else {
            format!("{} of {} handed over known to be taken", self.committed, self.handed)
        };
        let next = self.advice.clone().unwrap_or_else(|| "a rerun resumes there".into());
        Failure::new(
            EXIT_FINDING,
            format!(
                "{}; cursor '{}' committed at position {} ({what}); {next}",
                why.unwrap_or_default(),
                self.args.cursor,
                self.committed_at
            ),
        )
    }
}

fn stdout_closed() -> Failure {
    child_gone(&std::io::Error::other("the child closed its stdout"))
}

fn child_gone(error: &std::io::Error) -> Failure {
    Failure::new(EXIT_FINDING, format!("the consumer stopped taking records ({error})"))
}

/// The replay's cursor: an existing one, or a new one with `--create`.
fn open_cursor(journal: &Journal, args: &ReplayArgs) -> Result<Consumer, Failure> {
    if args.create {
        return Ok(journal.consumer(&args.cursor)?);
    }
    match journal.existing_consumer(&args.cursor) {
        Err(Error::NoSuchCursor(name)) => {
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

/// What a hand-over writes through: each record paced, then framed and sent.
struct Sender<'r> {
    pacer: &'r mut Pacer,
    out: &'r mut Destination,
    pending: &'r mut VecDeque<(u64, u64)>,
    format: ReplayFormat,
    journal: &'r str,
    /// How many more records may be sent (with `--ack`: the room left in
    /// `--window`).
    room: usize,
    /// The first failure to write: nothing is sent after it.
    written: std::io::Result<()>,
}

impl Sender<'_> {
    /// Sends `record` if it is due and there is room; if not, how long
    /// until it is due (zero: when there is room again).
    fn offer(&mut self, record: &Record<'_>) -> Option<Duration> {
        if self.room == 0 {
            return Some(Duration::ZERO);
        }
        let due_in = self.pacer.due_in(record);
        if !due_in.is_zero() {
            return Some(due_in);
        }
        self.pacer.sent(record);
        self.room -= 1;
        if self.written.is_ok() {
            self.written = self.out.send(record, self.format, self.journal);
            self.pending.push_back((self.out.end(), record.next_position()));
        }
        None
    }
}

/// A conflated window that the pacer (or `--window`) paused in: the
/// positions of its records still to hand over (the latest of their keys,
/// and unkeyed ones), in order, and where the window ends.
struct RestOfWindow {
    positions: VecDeque<u64>,
    end: u64,
}

/// One conflating read of up to `limit` records; returns how many it read
/// (handed out or skipped). With a `wait`, waits for the first record first
/// (a conflating read has no waiting form: it polls again every `wait`).
fn conflated(
    consumer: &mut Consumer,
    handler: impl FnMut(Record<'_>),
    limit: usize,
    wait: Duration,
) -> backwater::Result<usize> {
    let counts = consumer.poll_conflated_counts(handler, limit)?;
    if counts.read == 0 && !wait.is_zero() {
        std::thread::sleep(wait);
    }
    Ok(counts.read)
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
fn frame(out: &mut impl Write, format: ReplayFormat, record: &Record<'_>, journal: &str) -> std::io::Result<()> {
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
                "journal_id": journal,
                "position": record.position(),
                "timestamp_ns": record.timestamp(),
                "priority": priority_name(record.priority()),
            });
            let (field, value) = payload_json(record.payload());
            object[field] = value;
            if let Some(key) = record.key() {
                let (field, value) = key_json(key);
                object[field] = value;
            }
            writeln!(out, "{object}")
        }
    }
}

/// The share of a rate that may go out back to back: 10 ms worth, at least
/// one record (or one record's bytes).
const BURST: Duration = Duration::from_millis(10);

/// A token bucket: `rate` per second, at most `burst` banked, so an idle
/// period never turns into a flood.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    fn new(rate: f64, smallest_burst: f64) -> Bucket {
        let burst = (rate * BURST.as_secs_f64()).max(smallest_burst);
        Bucket { rate, burst, tokens: burst, refilled: Instant::now() }
    }

    /// The tokens banked at `at` (never more than the burst).
    fn banked(&self, at: Instant) -> f64 {
        let earned = at.saturating_duration_since(self.refilled).as_secs_f64() * self.rate;
        (self.tokens + earned).min(self.burst)
    }

    /// The first instant from `from` on when `cost` may go: when its tokens
    /// are banked, or a full bucket for a cost above the burst (so one
    /// record always goes after an idle spell; its debt delays the next).
    fn due_at(&self, cost: f64, from: Instant) -> Instant {
        later(from, (cost.min(self.burst) - self.banked(from)) / self.rate)
    }

    /// Takes `cost` tokens as of `at`.
    fn take(&mut self, cost: f64, at: Instant) {
        self.tokens = self.banked(at) - cost;
        self.refilled = at;
    }
}

/// A wait of `secs` (nothing for a negative or NaN number), never a panic.
fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX)
}

/// Spaces records by a record rate, a byte rate, or their recorded timestamps.
struct Pacer {
    bytes: u64,
    records: Option<Bucket>,
    byte_rate: Option<Bucket>,
    recorded: Option<f64>,
    /// The first record's timestamp, and when it was handed over.
    first: Option<(u64, Instant)>,
    /// The record asked about and not yet sent, and when it was first asked
    /// about: it is due no earlier, and its cost is charged as of when it was
    /// due (an oversleep is then credited to the next record, and an idle
    /// spell still banks no more than the burst).
    asked: Option<(u64, Instant)>,
}

impl Pacer {
    fn new(args: &ReplayArgs) -> Pacer {
        Pacer {
            bytes: 0,
            records: args.rate.map(|rate| Bucket::new(rate, 1.0)),
            byte_rate: args.bytes_rate.map(|rate| Bucket::new(rate, 1.0)),
            recorded: (args.pace == Pace::Recorded).then_some(args.speed),
            first: None,
            asked: None,
        }
    }

    /// Whether any limit is set (unpaced, no clock is read per record).
    fn paces(&self) -> bool {
        self.records.is_some() || self.byte_rate.is_some() || self.recorded.is_some()
    }

    /// How long until `record` is due (zero: now).
    fn due_in(&mut self, record: &Record<'_>) -> Duration {
        if !self.paces() {
            return Duration::ZERO;
        }
        self.due_at(record).saturating_duration_since(Instant::now())
    }

    /// When `record` is due: once every limit allows it.
    fn due_at(&mut self, record: &Record<'_>) -> Instant {
        let asked = match self.asked {
            Some((position, asked)) if position == record.position() => asked,
            _ => self.asked.insert((record.position(), Instant::now())).1,
        };
        let mut due_at = asked;
        if let Some(bucket) = &self.records {
            due_at = due_at.max(bucket.due_at(1.0, asked));
        }
        if let Some(bucket) = &self.byte_rate {
            due_at = due_at.max(bucket.due_at(record.payload().len() as f64, asked));
        }
        if let (Some(speed), Some((first_timestamp, first_sent))) = (self.recorded, self.first) {
            let due = record.timestamp().saturating_sub(first_timestamp) as f64 / 1e9 / speed;
            due_at = due_at.max(later(first_sent, due));
        }
        due_at
    }

    /// Counts `record` (now due) as handed over, charging the buckets as of
    /// when it was due.
    fn sent(&mut self, record: &Record<'_>) {
        self.bytes += record.payload().len() as u64;
        if !self.paces() {
            return;
        }
        let due_at = self.due_at(record);
        if let Some(bucket) = &mut self.records {
            bucket.take(1.0, due_at);
        }
        if let Some(bucket) = &mut self.byte_rate {
            bucket.take(record.payload().len() as f64, due_at);
        }
        self.asked = None;
        self.first.get_or_insert_with(|| (record.timestamp(), Instant::now()));
    }
}

/// `secs` after `instant` (a wait too long to represent: a century).
fn later(instant: Instant, secs: f64) -> Instant {
    instant.checked_add(seconds(secs)).unwrap_or(instant + Duration::from_secs(100 * 365 * 86_400))
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
