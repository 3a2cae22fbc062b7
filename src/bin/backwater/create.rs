//! `backwater create` and `backwater config`.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use backwater::{Config, Error, Flush, Journal, Limits};

use crate::cli::{ConfigArgs, CreateArgs, LimitArgs};
use crate::output::{human_bytes, open_existing, open_existing_with, open_read_only, require_new_or_empty};
use crate::{Failure, Outcome};

pub fn create(args: CreateArgs) -> Outcome {
    require_new_or_empty(&args.dir, "a new journal")?;
    let before = Before::note(&args.dir);
    let config = apply(Config::default().segment_size(args.segment_size), &args.limits);
    let journal = Journal::open(&args.dir, config).map_err(|error| before.undo(error))?;
    say!("created journal {}", args.dir.display());
    print_limits(&journal);
    Ok(())
}

/// The directory as `create` found it (absent, or holding at most what a
/// failed create leaves), so that a failed create removes what it made and
/// nothing else.
struct Before {
    dir: PathBuf,
    existed: bool,
    /// The directories (`dir` and missing parents) the open will make.
    missing: Vec<PathBuf>,
    names: HashSet<OsString>,
}

impl Before {
    fn note(dir: &Path) -> Before {
        let names = std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.file_name()).collect();
        let missing = dir
            .ancestors()
            .take_while(|d| !d.as_os_str().is_empty() && std::fs::symlink_metadata(d).is_err())
            .map(Path::to_path_buf)
            .collect();
        Before { dir: dir.to_path_buf(), existed: dir.exists(), missing, names }
    }

    /// After a failed open (a full disk, say): removes what this create made,
    /// so that nothing half-made stays behind, and says so.
    fn undo(&self, error: Error) -> Failure {
        // These mean a journal someone else made is there now: not ours to remove.
        let theirs = matches!(
            error,
            Error::NotAJournal { .. }
                | Error::NewerFormat { .. }
                | Error::SegmentSizeMismatch { .. }
                | Error::InUse { .. }
        );
        let mut failure = Failure::from(error);
        if theirs || !self.dir.exists() {
            return failure;
        }
        let note = match self.remove_new() {
            Ok(true) => format!("; removed what it had created in {}: a rerun starts afresh", self.dir.display()),
            Ok(false) => format!("; left {} as it is: another process is using it", self.dir.display()),
            Err(e) => format!(
                "; could not remove what it had created in {} ({e}); `backwater create` accepts it once only \
                 journal.lock is left",
                self.dir.display()
            ),
        };
        failure.message.push_str(&note);
        failure
    }

    /// Removes the entries this create made (and the directory, if it made
    /// that); `false` when another process has the journal open.
    fn remove_new(&self) -> std::io::Result<bool> {
        let lock_path = self.dir.join("journal.lock");
        // Held while removing: nobody else is in the middle of opening it.
        let _lock = match std::fs::File::open(&lock_path) {
            Ok(lock) => match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => Some(lock),
                Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false),
                Err(e) => return Err(e.into()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if self.dir.join("journal.meta").exists() && !self.untouched()? {
            return Ok(false);
        }
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            // Unlinking a lock file in a directory that stays would let two
            // openers lock different files: journal.lock goes only with its directory.
            if self.names.contains(&name) || (self.existed && name == "journal.lock") {
                continue;
            }
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(entry.path())?;
            } else {
                std::fs::remove_file(entry.path())?;
            }
        }
        for made in &self.missing {
            std::fs::remove_dir(made)?;
        }
        Ok(true)
    }

    /// Whether the journal in the directory holds nothing yet: no record, no
    /// cursor, no live process (a half-made one of ours, not another's in use).
    fn untouched(&self) -> std::io::Result<bool> {
        let journal = Journal::open_read_only(&self.dir).map_err(std::io::Error::other)?;
        let cursors = journal.cursor_names().map_err(std::io::Error::other)?;
        let others = journal.processes().iter().any(|&(pid, alive)| alive && pid != std::process::id());
        Ok(journal.stats().appended == 0 && cursors.is_empty() && !others)
    }
}

pub fn config(args: ConfigArgs) -> Outcome {
    // Showing writes nothing, so it works on a read-only journal too.
    // A compression setting goes in at open, ahead of the check that this
    // build can open a journal that compresses: a build without the
    // `compression` feature can still turn it off.
    let journal = match args.limits.compression {
        _ if args.limits == LimitArgs::default() => open_read_only(&args.dir)?,
        Some(compression) => open_existing_with(&args.dir, Config::default().compression(compression))?,
        None => open_existing(&args.dir)?,
    };
    let limits = merge(journal.limits(), &args.limits);
    if limits != journal.limits() {
        journal.set_limits(limits)?;
    }
    if args.json {
        say!("{}", limits_json(&journal));
    } else {
        print_limits(&journal);
    }
    Ok(())
}

fn apply(mut config: Config, args: &LimitArgs) -> Config {
    let limits = merge(Limits::default(), args);
    if let Some(bytes) = args.max_disk {
        config = config.max_disk_bytes(bytes);
    }
    if let Some(bytes) = args.min_free {
        config = config.min_free_disk(bytes);
    }
    if args.shed.is_some() || args.high.is_some() || args.resume.is_some() {
        let marks = limits.watermarks;
        config = config.watermarks(marks.shed, marks.high, marks.resume);
    }
    if let Some(policy) = args.when_full {
        config = config.when_full(policy);
    }
    if let Some(compression) = args.compression {
        config = config.compression(compression);
    }
    if let Some(fraction) = args.compress_at {
        config = config.compress_at(fraction);
    }
    if let Some(flush) = args.flush {
        config = config.flush(flush);
    }
    if let Some(bytes) = args.retain_bytes {
        config = config.retain_bytes(bytes);
    }
    if let Some(age) = args.retain_for {
        config = config.retain_for(age);
    }
    config
}

fn merge(mut limits: Limits, args: &LimitArgs) -> Limits {
    limits.max_disk_bytes = args.max_disk.unwrap_or(limits.max_disk_bytes);
    limits.min_free_disk = args.min_free.unwrap_or(limits.min_free_disk);
    limits.watermarks.shed = args.shed.unwrap_or(limits.watermarks.shed);
    limits.watermarks.high = args.high.unwrap_or(limits.watermarks.high);
    limits.watermarks.resume = args.resume.unwrap_or(limits.watermarks.resume);
    // Unset, the compress watermark follows a shed watermark set below it
    // (as `Config::compress_at` does).
    limits.watermarks.compress = args.compress_at.unwrap_or(limits.watermarks.compress.min(limits.watermarks.shed));
    limits.compression = args.compression.unwrap_or(limits.compression);
    limits.when_full = args.when_full.unwrap_or(limits.when_full);
    limits.flush = args.flush.unwrap_or(limits.flush);
    limits.retain_bytes = args.retain_bytes.unwrap_or(limits.retain_bytes);
    limits.retain_for = args.retain_for.unwrap_or(limits.retain_for);
    limits
}

pub fn flush_name(flush: Flush) -> String {
    match flush {
        Flush::Never => "never".into(),
        Flush::Always => "always".into(),
        Flush::Interval(every) => format!("interval:{}", humantime::format_duration(every)),
    }
}

fn budget(bytes: u64) -> String {
    if bytes == u64::MAX { "unlimited".into() } else { human_bytes(bytes) }
}

fn print_limits(journal: &Journal) {
    let limits = journal.limits();
    let marks = limits.watermarks;
    say!("  segment size   {}", human_bytes(journal.segment_size()));
    say!("  max disk       {}", budget(limits.max_disk_bytes));
    say!("  min free disk  {}", human_bytes(limits.min_free_disk));
    say!(
        "  watermarks     compress {:.2}  shed {:.2}  high {:.2}  resume {:.2}",
        marks.compress,
        marks.shed,
        marks.high,
        marks.resume
    );
    say!("  compression    {}", limits.compression.name());
    say!("  when full      {}", limits.when_full.name());
    say!("  flush          {}", flush_name(limits.flush));
    say!("  replay window  {} / {}", human_bytes(limits.retain_bytes), humantime::format_duration(limits.retain_for));
}

pub fn limits_json(journal: &Journal) -> serde_json::Value {
    let limits = journal.limits();
    serde_json::json!({
        "segment_size": journal.segment_size(),
        "max_disk_bytes": (limits.max_disk_bytes != u64::MAX).then_some(limits.max_disk_bytes),
        "min_free_disk": limits.min_free_disk,
        "compress": limits.watermarks.compress,
        "compression": limits.compression.name(),
        "shed": limits.watermarks.shed,
        "high": limits.watermarks.high,
        "resume": limits.watermarks.resume,
        "when_full": limits.when_full.name(),
        "flush": flush_name(limits.flush),
        "retain_bytes": limits.retain_bytes,
        "retain_for_secs": limits.retain_for.as_secs_f64(),
    })
}
