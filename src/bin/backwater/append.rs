//! `backwater append`: records from stdin, waiting under back-pressure.
//!
//! Input is checked while it is read: a record longer than the journal takes
//! is refused as soon as that is known (never buffered whole), and input that
//! ends inside a record (a truncated length prefix, a last line without its
//! newline) is an error, not a silent end or a torn record.

use std::io::BufRead;
use std::time::Instant;

use backwater::{Config, Error, Priority};

use crate::cli::{AppendArgs, InputFormat};
use crate::output::{human_bytes, open_existing_with};
use crate::{EXIT_BACK_PRESSURED, EXIT_FINDING, Failure, Outcome};

pub fn run(args: AppendArgs) -> Outcome {
    let mut config = Config::default();
    if let Some(timeout) = args.timeout {
        config = config.append_timeout(timeout);
    }
    let journal = open_existing_with(&args.dir, config)?;
    let publisher = journal.publisher();
    let priority: Priority = args.priority.into();
    let started = Instant::now();
    let (mut appended, mut dropped, mut bytes) = (0u64, 0u64, 0u64);
    let mut input = Input {
        reader: std::io::BufReader::with_capacity(1 << 16, std::io::stdin().lock()),
        offset: 0,
        max: journal.max_record_len(),
        accept_unterminated: args.accept_unterminated,
    };
    let mut record = Vec::new();
    loop {
        let start = input.offset;
        let stopped = |why: String| {
            let records = if appended == 1 { "record" } else { "records" };
            Failure::new(EXIT_FINDING, format!("{why} (input offset {start}): appended {appended} {records} before it"))
        };
        match input.next(args.format, &mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(why) => return Err(stopped(why)),
        }
        let appending = match args.key_delimiter {
            None => publisher.append_with(priority, &record),
            Some(delimiter) => match split_key(&record, delimiter) {
                Some((key, payload)) => publisher.append_keyed_with(priority, key, payload),
                None => return Err(stopped(format!("a record has no key delimiter {:?}", delimiter as char))),
            },
        };
        match appending {
            Ok(_) => {
                appended += 1;
                bytes += record.len() as u64;
            }
            Err(Error::Dropped { .. }) => dropped += 1,
            Err(Error::StillBackPressured { waited, fill }) => {
                return Err(Failure::new(
                    EXIT_BACK_PRESSURED,
                    format!(
                        "still back-pressured after {:.1} s ({:.0}% full): wrote {appended} records before giving up",
                        waited.as_secs_f64(),
                        fill * 100.0
                    ),
                ));
            }
            Err(other) => return Err(stopped(other.to_string())),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "appended {appended} records ({}) in {seconds:.2} s{}",
        human_bytes(bytes),
        if dropped > 0 { format!(", shed {dropped} low-priority records") } else { String::new() }
    );
    Ok(())
}

/// A record's key (before the first `delimiter`) and payload (after it).
fn split_key(record: &[u8], delimiter: u8) -> Option<(&[u8], &[u8])> {
    let at = record.iter().position(|&b| b == delimiter)?;
    Some((&record[..at], &record[at + 1..]))
}

/// Standard input, read one record at a time up to the journal's maximum.
struct Input<R> {
    reader: R,
    /// Bytes consumed so far.
    offset: u64,
    max: usize,
    accept_unterminated: bool,
}

impl<R: BufRead> Input<R> {
    /// Reads the next record into `record`: `Ok(false)` at a clean end of
    /// input, `Err(why)` for input that cannot be a record.
    fn next(&mut self, format: InputFormat, record: &mut Vec<u8>) -> Result<bool, String> {
        record.clear();
        match format {
            InputFormat::Lines => self.line(record),
            InputFormat::Len => self.length_prefixed(record),
        }
    }

    fn line(&mut self, record: &mut Vec<u8>) -> Result<bool, String> {
        loop {
            let buffer = self.reader.fill_buf().map_err(|e| format!("reading stdin: {e}"))?;
            if buffer.is_empty() {
                return match record.is_empty() {
                    true => Ok(false),
                    false if self.accept_unterminated => Ok(true),
                    false => Err("the last line has no newline (was its producer killed mid-line?); \
                                  --accept-unterminated appends it anyway"
                        .into()),
                };
            }
            let newline = buffer.iter().position(|&b| b == b'\n');
            let take = newline.unwrap_or(buffer.len());
            record.extend_from_slice(&buffer[..take]);
            let consumed = newline.map_or(take, |at| at + 1);
            self.reader.consume(consumed);
            self.offset += consumed as u64;
            if record.len() > self.max {
                return Err(format!("a line is longer than the largest record, {} bytes (segment size / 8)", self.max));
            }
            if newline.is_some() {
                return Ok(true);
            }
        }
    }

    fn length_prefixed(&mut self, record: &mut Vec<u8>) -> Result<bool, String> {
        let mut prefix = [0u8; 4];
        match self.read_up_to(&mut prefix)? {
            0 => return Ok(false),
            4 => {}
            got => return Err(format!("the input ends {got} bytes into a 4-byte length prefix")),
        }
        let len = u32::from_le_bytes(prefix) as usize;
        if len > self.max {
            return Err(format!(
                "a {len}-byte record is longer than the largest, {} bytes (segment size / 8)",
                self.max
            ));
        }
        record.resize(len, 0);
        let got = self.read_up_to(record)?;
        if got < len {
            return Err(format!("the input ends {got} bytes into a {len}-byte record"));
        }
        Ok(true)
    }

    /// Fills `buffer` unless the input ends first; returns how many bytes it read.
    fn read_up_to(&mut self, buffer: &mut [u8]) -> Result<usize, String> {
        let mut filled = 0;
        while filled < buffer.len() {
            match self.reader.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading stdin: {e}")),
            }
        }
        self.offset += filled as u64;
        Ok(filled)
    }
}
