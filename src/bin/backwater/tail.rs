//! `backwater tail`: records from a starting point, optionally following.
//! Opens the journal read-only: it never commits a cursor.

use std::io::Write;
use std::time::Duration;

use backwater::{Consumer, Journal};

use crate::cli::{TailArgs, TailStart};
use crate::output::{Line, open_read_only, print_line, quiet_pipe};
use crate::{Failure, Outcome};

pub fn run(args: TailArgs) -> Outcome {
    let journal = open_read_only(&args.dir)?;
    let mut consumer = start(&journal, &args.from)?;
    let stop_at = journal.tail_position();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut left = args.count.unwrap_or(u64::MAX);
    let mut result = Ok(());
    while left > 0 && result.is_ok() {
        if !args.follow && consumer.position() >= stop_at {
            break;
        }
        let limit = left.min(1024) as usize;
        let handler = |record: backwater::Record<'_>| {
            if result.is_ok() && (args.follow || record.position() < stop_at) {
                let line = Line {
                    position: record.position(),
                    kind: "data",
                    timestamp: record.timestamp(),
                    priority: record.priority(),
                    payload: record.payload(),
                    key: record.key(),
                    crc_ok: true,
                    fault: None,
                };
                result = print_line(&mut out, args.format, &line);
                left -= 1;
            }
        };
        let polled = if args.follow {
            consumer.poll_wait(handler, limit, Duration::from_millis(200))
        } else {
            consumer.poll(handler, limit)
        };
        let read = match polled {
            // A live drop-oldest journal deleted records before we read them:
            // say so and go on from the oldest retained one.
            Err(backwater::Error::Lost { from, to }) => {
                eprintln!(
                    "backwater: skipped positions {from}..{to}, deleted by the journal's policy before tail read them"
                );
                continue;
            }
            other => other?,
        };
        if read == 0 && args.follow {
            result = out.flush();
        }
        if read == 0 && !args.follow {
            break;
        }
    }
    quiet_pipe(result.and_then(|()| out.flush()))
}

/// A consumer at the starting point.
fn start(journal: &Journal, from: &TailStart) -> Result<Consumer, Failure> {
    match from {
        TailStart::Cursor(name) => Ok(journal.consumer(name)?),
        TailStart::At(seek) => {
            let mut consumer = journal.anonymous_consumer();
            consumer.seek(*seek)?;
            Ok(consumer)
        }
    }
}
