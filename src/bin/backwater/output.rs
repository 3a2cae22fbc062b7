//! What every subcommand shares: opening a journal the right way, human
//! units, and printing one record in each `--format`.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use backwater::{Journal, Priority};

use crate::cli::RecordFormat;
use crate::{EXIT_FINDING, EXIT_USAGE, Failure};

/// Opens an existing journal for writing; never creates one.
pub fn open_existing(dir: &Path) -> Result<Journal, Failure> {
    open_existing_with(dir, backwater::Config::default())
}

/// `open_existing` with handle settings (timeouts).
pub fn open_existing_with(dir: &Path, config: backwater::Config) -> Result<Journal, Failure> {
    require_journal(dir)?;
    Ok(Journal::open(dir, config)?)
}

/// Opens an existing journal read-only (writes nothing, runs no recovery).
pub fn open_read_only(dir: &Path) -> Result<Journal, Failure> {
    require_journal(dir)?;
    Ok(Journal::open_read_only(dir)?)
}

fn require_journal(dir: &Path) -> Result<(), Failure> {
    match std::fs::metadata(dir.join("journal.meta")) {
        Ok(meta) if meta.is_file() => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(Failure::new(
                EXIT_FINDING,
                format!("cannot read {}: permission denied (run as its owner or a member of its group)", dir.display()),
            ));
        }
        _ => {}
    }
    let hint = if dir.exists() { "it has no journal.meta" } else { "it does not exist" };
    Err(Failure::new(
        EXIT_USAGE,
        format!("{} is not a backwater journal: {hint} (create one with `backwater create`)", dir.display()),
    ))
}

/// Refuses `dir` unless it is absent or an empty directory: `what` (a new
/// journal, the demo) must not write into anything else. What a failed create
/// leaves (`journal.lock`, unfinished `.tmp-*` files) counts as empty, as it
/// does for the library.
pub fn require_new_or_empty(dir: &Path, what: &str) -> Result<(), Failure> {
    let refuse = |why: String| Err(Failure::new(EXIT_USAGE, format!("{what} needs a new or empty directory: {why}")));
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut names = entries.map(|entry| entry.map(|e| e.file_name()));
            match names.find(|name| !name.as_ref().is_ok_and(|name| left_by_a_failed_create(name))) {
                None => Ok(()),
                Some(_) if dir.join("journal.meta").exists() => refuse(format!(
                    "{} is already a journal (see `backwater info` and `backwater config`)",
                    dir.display()
                )),
                Some(Ok(name)) => refuse(format!("{} is not empty: it holds '{}'", dir.display(), name.display())),
                Some(Err(e)) => Err(Failure::new(EXIT_FINDING, format!("cannot read {}: {e}", dir.display()))),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            refuse(format!("{} is a file, not a directory", dir.display()))
        }
        Err(e) => Err(Failure::new(EXIT_FINDING, format!("cannot read {}: {e}", dir.display()))),
    }
}

/// The names the library accepts in a directory without `journal.meta`.
pub fn left_by_a_failed_create(name: &std::ffi::OsStr) -> bool {
    name == "journal.lock" || name.as_encoded_bytes().starts_with(b".tmp-")
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// RFC 3339 with milliseconds, UTC.
pub fn human_time(ns: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

pub fn priority_name(priority: Priority) -> &'static str {
    match priority {
        Priority::Normal => "normal",
        Priority::Low => "low",
    }
}

/// One frame to print.
pub struct Line<'a> {
    pub position: u64,
    pub kind: &'static str,
    pub timestamp: u64,
    pub priority: Priority,
    pub payload: &'a [u8],
    /// A keyed record's key (`Record::key`).
    pub key: Option<&'a [u8]>,
    pub crc_ok: bool,
    pub fault: Option<&'a str>,
}

/// A payload as JSON: a string when it is UTF-8, else its hex in `payload_hex`.
pub fn payload_json(payload: &[u8]) -> (&'static str, serde_json::Value) {
    match std::str::from_utf8(payload) {
        Ok(text) => ("payload", serde_json::Value::from(text)),
        Err(_) => ("payload_hex", serde_json::Value::from(hex(payload))),
    }
}

/// A key as JSON: `key` when it is UTF-8, else its hex in `key_hex`.
pub fn key_json(key: &[u8]) -> (&'static str, serde_json::Value) {
    match std::str::from_utf8(key) {
        Ok(text) => ("key", serde_json::Value::from(text)),
        Err(_) => ("key_hex", serde_json::Value::from(hex(key))),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `line` in `format` to `out`.
pub fn print_line(out: &mut impl Write, format: RecordFormat, line: &Line<'_>) -> std::io::Result<()> {
    match format {
        RecordFormat::Raw => out.write_all(line.payload),
        RecordFormat::Lines => {
            out.write_all(line.payload)?;
            out.write_all(b"\n")
        }
        RecordFormat::Json => {
            let mut object = serde_json::json!({
                "position": line.position,
                "type": line.kind,
                "timestamp_ns": line.timestamp,
                "time": human_time(line.timestamp),
                "priority": priority_name(line.priority),
                "length": line.payload.len(),
                "crc_ok": line.crc_ok,
            });
            let (field, value) = payload_json(line.payload);
            object[field] = value;
            if let Some(key) = line.key {
                let (field, value) = key_json(key);
                object[field] = value;
            }
            if let Some(fault) = line.fault {
                object["fault"] = fault.into();
            }
            writeln!(out, "{object}")
        }
        RecordFormat::Text | RecordFormat::Hex => {
            let crc = if line.crc_ok { "ok" } else { "BAD" };
            write!(
                out,
                "{:>14}  {}  {} ({})  {:<6}  len={:<6} crc={crc}",
                line.position,
                line.kind,
                human_time(line.timestamp),
                line.timestamp,
                priority_name(line.priority),
                line.payload.len(),
            )?;
            if let Some(fault) = line.fault {
                write!(out, "  fault: {fault}")?;
            }
            if let Some(key) = line.key {
                write!(out, "  key={}", key.escape_ascii())?;
            }
            if format == RecordFormat::Text {
                writeln!(out, "  {}", line.payload.escape_ascii())
            } else {
                writeln!(out)?;
                hex_dump(out, line.payload)
            }
        }
    }
}

fn hex_dump(out: &mut impl Write, payload: &[u8]) -> std::io::Result<()> {
    for (row, chunk) in payload.chunks(16).enumerate() {
        let bytes: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let text: String =
            chunk.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' }).collect();
        writeln!(out, "    {:08x}  {:<47}  |{text}|", row * 16, bytes.join(" "))?;
    }
    Ok(())
}

/// `println!` for reports: a closed stdout (`backwater info | head`) ends the
/// program quietly with success instead of a panic.
macro_rules! say {
    ($($arg:tt)*) => { $crate::output::say(format_args!($($arg)*)) };
}

pub fn say(line: std::fmt::Arguments<'_>) {
    if let Err(error) = writeln!(std::io::stdout(), "{line}") {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("backwater: writing to stdout: {error}");
        std::process::exit(1);
    }
}

/// Treats a closed stdout (`| head`) as a normal end.
pub fn quiet_pipe(result: std::io::Result<()>) -> Result<(), Failure> {
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
