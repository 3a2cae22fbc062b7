//! What must hold on a crash image after recovery: it opens, `verify` is
//! clean (after `repair` where recovery left something), every record the
//! flush policy promised is there with its payload, every record read is
//! one that was appended, consumers never stop on `Corrupt` or stall below
//! the tail, durable cursors open and never go back past a promised commit,
//! and the journal takes appends again.

use std::collections::BTreeSet;
use std::path::Path;

use backwater::{Config, Consumer, Error, Journal, OfferError, Seek, recovery};

/// One record the workload appended.
#[derive(Clone, Copy, Debug)]
pub struct Appended {
    pub position: u64,
    pub seed: u64,
    pub len: usize,
    /// How it was appended (`append`, `batch`, `exclusive`, ...).
    pub via: &'static str,
}

/// What the flush policy had promised at a crash point.
#[derive(Clone, Copy, Debug, Default)]
pub struct Promise {
    /// The first `records` records of the log were promised durable.
    pub records: usize,
    /// The first position at the crash point: records below it were
    /// deleted by retention or the ring, and are not expected.
    pub first_position: u64,
    /// The committed position of the cursor `CURSOR` that was promised durable.
    pub cursor: Option<u64>,
}

/// The `via` of a record logged in position order that no flush promised
/// (a scripted reproduction's claim committed after the flush).
pub const UNPROMISED: &str = "unpromised";

/// The workload's durable consumer.
pub const CURSOR: &str = "c";

/// The record appended to each recovered journal to show it takes appends.
pub const AFTER_RECOVERY: &[u8] = b"appended after recovery";

/// Something that must not happen, by kind (for grouping) and detail.
#[derive(Clone, Debug)]
pub struct Problem {
    pub kind: String,
    pub detail: String,
}

fn problem(kind: impl Into<String>, detail: impl Into<String>) -> Problem {
    Problem { kind: kind.into(), detail: detail.into() }
}

/// Runs recovery on the crash image in `dir` and checks it against `promise`.
pub fn check_image(dir: &Path, log: &[Appended], promise: &Promise) -> Vec<Problem> {
    let mut problems = Vec::new();
    let lost_on_media = lost_bytes(dir);
    let Some(pass) = inspect(dir, log, promise, &mut problems) else { return problems };
    check_promised(&pass, log, promise, lost_on_media, &mut problems);
    verify_then_repair(dir, &mut problems);
    if !pass.complete {
        read_after_repair(dir, log, &mut problems);
    }
    problems
}

/// What the recovered journal holds, and whether a consumer read it all.
struct Pass {
    /// Promised records a seek to their position reads back intact.
    intact: BTreeSet<u64>,
    /// A consumer read from the start up to the tail without an error.
    complete: bool,
    /// The journal's first position after the checks (retention may have
    /// run meanwhile).
    first_position: u64,
    /// The recovered tail.
    tail_position: u64,
    /// The unread bytes policies deleted (what recovery discarded not included).
    lost_bytes: u64,
    /// The lowest position of an attached durable cursor.
    slowest_cursor: Option<u64>,
}

/// The first open: recovery, a full read, the cursors, an append.
fn inspect(dir: &Path, log: &[Appended], promise: &Promise, problems: &mut Vec<Problem>) -> Option<Pass> {
    let journal = match Journal::open(dir, Config::default()) {
        Ok(journal) => journal,
        Err(error) => {
            problems.push(problem("open refused", error.to_string()));
            return None;
        }
    };
    let tail_position = journal.tail_position();
    let (complete, mut consumer) = read_from_start(&journal, log, "", problems);
    let intact = intact_records(&journal, log, promise);
    let slowest_cursor = check_cursors(&journal, log, promise, problems);
    append_after_recovery(&journal, complete.then_some(&mut consumer), problems);
    // What recovery itself discarded is no ring's drop: it excuses nothing.
    let recovered = journal.recovery_report().map_or(0, |report| report.lost_bytes);
    let lost_bytes = journal.stats().lost_bytes.saturating_sub(recovered);
    let first_position = journal.first_position();
    Some(Pass { intact, complete, first_position, tail_position, lost_bytes, slowest_cursor })
}

/// Reads every record from the first position with an anonymous consumer;
/// `true` if it got to the tail without an error.
fn read_from_start(journal: &Journal, log: &[Appended], stage: &str, problems: &mut Vec<Problem>) -> (bool, Consumer) {
    let mut consumer = journal.anonymous_consumer();
    let complete = drain(&mut consumer, log, &format!("{stage}consumer"), problems);
    let tail = journal.tail_position();
    if complete && consumer.position() < tail {
        let detail = format!("stopped at {} below the tail {tail} (a hole it waits to unblock)", consumer.position());
        problems.push(problem(format!("{stage}consumer stalls below the tail"), detail));
        return (false, consumer);
    }
    (complete, consumer)
}

/// Polls until nothing is left; checks each record against the log.
/// `Lost` (a policy deleted data meanwhile) is read past. Returns whether
/// it ended without an error.
fn drain(consumer: &mut Consumer, log: &[Appended], who: &str, problems: &mut Vec<Problem>) -> bool {
    let mut last = None;
    loop {
        let mut wrong = Vec::new();
        let polled = consumer.poll(
            |record| {
                let position = record.position();
                if last.is_some_and(|last| position <= last) {
                    wrong.push(format!("{position} after {last:?}: out of order"));
                } else if let Err(why) = check_record(log, position, record.payload()) {
                    wrong.push(why);
                }
                last = Some(position);
            },
            4096,
        );
        if let Some(why) = wrong.into_iter().next() {
            problems.push(problem(format!("{who} reads a record that was never appended"), why));
        }
        match polled {
            Ok(0) => return true,
            Ok(_) | Err(Error::Lost { .. }) => {}
            Err(error) => {
                problems.push(problem(format!("{who} fails"), error.to_string()));
                return false;
            }
        }
    }
}

/// A record read back must be one appended there, byte for byte.
fn check_record(log: &[Appended], position: u64, payload: &[u8]) -> Result<(), String> {
    if payload == AFTER_RECOVERY {
        return Ok(());
    }
    let Ok(at) = log.binary_search_by_key(&position, |a| a.position) else {
        return Err(format!("{} bytes at {position}, where no record starts", payload.len()));
    };
    let appended = log[at];
    if payload != crate::common::payload(appended.seed, appended.len) {
        return Err(format!("record at {position}: {} bytes differ from the {} appended", payload.len(), appended.len));
    }
    Ok(())
}

/// Every durable cursor opens and reads on; the workload's cursor never goes
/// back past its promised commit. Returns the slowest attached position.
fn check_cursors(journal: &Journal, log: &[Appended], promise: &Promise, problems: &mut Vec<Problem>) -> Option<u64> {
    let infos = journal.cursors().unwrap_or_default();
    if promise.cursor.is_some() && !infos.iter().any(|info| info.name == CURSOR) {
        problems.push(problem("a promised cursor is gone", format!("cursor '{CURSOR}' missing")));
    }
    let tail = journal.tail_position();
    if let Some(promised) = promise.cursor.filter(|&p| p > tail) {
        let detail = format!("a commit of {promised} was promised, the recovered tail is {tail}");
        problems.push(problem("a promised cursor commit is past the recovered tail", detail));
    }
    for info in &infos {
        if info.name == CURSOR
            && let Some(promised) = promise.cursor.filter(|&p| p > info.position)
        {
            let detail = format!("cursor at {}, a commit of {promised} was promised", info.position);
            problems.push(problem("a promised cursor commit is lost", detail));
        }
        let mut consumer = match journal.consumer(&info.name) {
            Ok(consumer) => consumer,
            Err(error) => {
                let kind = format!("a durable consumer cannot be opened ({})", where_cursor(info.position, journal));
                let detail = format!("cursor '{}' at {} (tail {tail}): {error}", info.name, info.position);
                problems.push(problem(kind, detail));
                continue;
            }
        };
        drain(&mut consumer, log, "a durable consumer", problems);
    }
    infos.iter().filter(|info| info.evicted.is_none()).map(|info| info.position).min()
}

/// Where a cursor that cannot be opened points.
fn where_cursor(position: u64, journal: &Journal) -> &'static str {
    let tail = journal.tail_position();
    let header = backwater::segment::SEGMENT_HEADER_LEN;
    if tail.is_multiple_of(journal.segment_size()) && position == tail + header {
        "just past a tail on a segment's end"
    } else if position > tail {
        "past the recovered tail"
    } else {
        "below the tail, not at a readable frame"
    }
}

/// The recovered journal takes an append, and `consumer` (at the old tail)
/// reads it back.
fn append_after_recovery(journal: &Journal, consumer: Option<&mut Consumer>, problems: &mut Vec<Problem>) {
    let position = match journal.publisher().offer(AFTER_RECOVERY) {
        Ok(position) => position,
        Err(OfferError::BackPressured { .. }) => return,
        Err(error) => return problems.push(problem("append after recovery fails", error.to_string())),
    };
    let Some(consumer) = consumer else { return };
    let mut read = Vec::new();
    let polled = consumer.poll(|record| read.push((record.position(), record.payload().to_vec())), 1);
    if !matches!(polled, Ok(1)) || read != [(position, AFTER_RECOVERY.to_vec())] {
        let detail = format!("appended at {position}; poll gave {polled:?} with {:?}", read.first().map(|r| r.0));
        problems.push(problem("a record appended after recovery is not read back", detail));
    }
}

/// `verify` must be clean; where it is not, `repair` must make it clean.
fn verify_then_repair(dir: &Path, problems: &mut Vec<Problem>) {
    let found = match findings(dir) {
        Ok(None) => return,
        Ok(Some(found)) => found,
        Err(error) => return problems.push(problem("verify fails", error)),
    };
    problems.push(problem("verify finds damage after recovery", found));
    if let Err(error) = Journal::repair(dir) {
        return problems.push(problem("repair fails", error.to_string()));
    }
    match findings(dir) {
        Ok(None) => {}
        Ok(Some(findings)) => problems.push(problem("verify finds damage after repair", findings)),
        Err(error) => problems.push(problem("verify fails after repair", error)),
    }
}

/// `verify`'s findings, summarised (`None` when clean).
fn findings(dir: &Path) -> Result<Option<String>, String> {
    let report = recovery::verify(dir, |_, _| {}).map_err(|e| e.to_string())?;
    let Some(first) = report.findings.first() else { return Ok(None) };
    let name = first.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(Some(format!("{} finding(s), first: {name} at {}: {}", report.findings.len(), first.position, first.reason)))
}

/// Where the first read stopped: whether a consumer reads on after `repair`.
fn read_after_repair(dir: &Path, log: &[Appended], problems: &mut Vec<Problem>) {
    match Journal::open(dir, Config::default()) {
        Ok(journal) => drop(read_from_start(&journal, log, "after repair: ", problems)),
        Err(error) => problems.push(problem("open refused after repair", error.to_string())),
    }
}

/// The promised records (at or past the crash point's first position) that
/// the journal holds intact, whether or not a consumer from the start gets
/// to them: seeking to each one's position, a poll returns it, byte for byte.
fn intact_records(journal: &Journal, log: &[Appended], promise: &Promise) -> BTreeSet<u64> {
    let mut consumer = journal.anonymous_consumer();
    let promised =
        log[..promise.records].iter().filter(|a| a.position >= promise.first_position && a.via != UNPROMISED);
    let readable = |appended: &&Appended| {
        let mut read = None;
        let sought = consumer.seek(Seek::Position(appended.position));
        let polled = sought.and_then(|()| consumer.poll(|r| read = Some((r.position(), r.payload().to_vec())), 1));
        matches!(polled, Ok(1))
            && read.is_some_and(|(at, payload)| at == appended.position && check_record(log, at, &payload).is_ok())
    };
    promised.filter(readable).map(|appended| appended.position).collect()
}

/// Every promised record at or past the crash point's first position was read.
///
/// The journal may have deleted more since it was reopened: the ring
/// (its lost-bytes counter grew) or retention (every durable cursor is past
/// the new first position). Those are excused; nothing else is.
fn check_promised(pass: &Pass, log: &[Appended], promise: &Promise, lost_on_media: u64, problems: &mut Vec<Problem>) {
    let ring_dropped = pass.lost_bytes > lost_on_media;
    let retention_deleted = pass.slowest_cursor.is_some_and(|slowest| slowest >= pass.first_position);
    let floor = if ring_dropped || retention_deleted {
        promise.first_position.max(pass.first_position)
    } else {
        promise.first_position
    };
    let promised: Vec<&Appended> = log[..promise.records].iter().filter(|a| a.via != UNPROMISED).collect();
    let missing: Vec<&Appended> =
        promised.iter().copied().filter(|a| a.position >= floor && !pass.intact.contains(&a.position)).collect();
    if let Some(first_missing) = missing.first() {
        let detail = format!(
            "{} of {} promised records missing, first at {} ({}); last promised at {}; \
             floor {floor}, recovered first {} and tail {}",
            missing.len(),
            promised.iter().filter(|a| a.position >= floor).count(),
            first_missing.position,
            first_missing.via,
            promised.last().map_or(0, |a| a.position),
            pass.first_position,
            pass.tail_position,
        );
        problems.push(problem(format!("promised records are missing ({})", first_missing.via), detail));
    }
}

/// The unread bytes policies had deleted, as the image's metadata says.
fn lost_bytes(dir: &Path) -> u64 {
    const LOST_BYTES_AT: usize = 280;
    std::fs::read(dir.join("journal.meta"))
        .ok()
        .and_then(|meta| {
            meta.get(LOST_BYTES_AT..LOST_BYTES_AT + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
        })
        .unwrap_or(0)
}
