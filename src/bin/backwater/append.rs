//! `backwater append`: records from stdin, waiting under back-pressure.

use std::io::{BufRead, Read};
use std::time::Instant;

use backwater::{Config, Error, Priority};

use crate::cli::{AppendArgs, InputFormat};
use crate::output::{human_bytes, open_existing_with};
use crate::{EXIT_BACK_PRESSURED, Failure, Outcome};

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
    let mut input = std::io::BufReader::with_capacity(1 << 16, std::io::stdin().lock());
    let mut record = Vec::new();
    while read_record(&mut input, args.format, &mut record)? {
        match publisher.append_with(priority, &record) {
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
            Err(other) => return Err(other.into()),
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

/// Reads the next record into `record`; `false` at the end of input.
fn read_record(input: &mut impl BufRead, format: InputFormat, record: &mut Vec<u8>) -> Result<bool, Failure> {
    record.clear();
    match format {
        InputFormat::Lines => {
            if input.read_until(b'\n', record)? == 0 {
                return Ok(false);
            }
            if record.last() == Some(&b'\n') {
                record.pop();
            }
            Ok(true)
        }
        InputFormat::Len => {
            let mut len = [0u8; 4];
            match input.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
                Err(e) => return Err(e.into()),
            }
            let len = u32::from_le_bytes(len) as u64;
            input.take(len).read_to_end(record)?;
            if record.len() as u64 != len {
                return Err(Failure::new(1, format!("input ended inside a {len}-byte record")));
            }
            Ok(true)
        }
    }
}
