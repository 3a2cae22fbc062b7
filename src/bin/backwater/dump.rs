//! `backwater dump`: frames with their header fields, in any format.

use std::io::Write;

use backwater::Seek;
use backwater::inspect::FrameKind;

use crate::cli::DumpArgs;
use crate::output::{Line, open_read_only, print_line, quiet_pipe};
use crate::{EXIT_FINDING, Failure, Outcome};

pub fn run(args: DumpArgs) -> Outcome {
    let journal = open_read_only(&args.dir)?;
    let from = match (args.from, args.time) {
        (Some(position), _) => {
            let mut probe = journal.anonymous_consumer();
            probe.seek(Seek::Position(position))?;
            position
        }
        (None, Some(ns)) => {
            let mut probe = journal.anonymous_consumer();
            probe.seek(Seek::Time(ns))?;
            probe.position()
        }
        (None, None) => journal.first_position(),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut left = args.count.unwrap_or(u64::MAX);
    let mut damaged = 0;
    let mut result = Ok(());
    journal.walk_frames(from, |frame| {
        if left == 0 {
            return false;
        }
        let shown = frame.kind == FrameKind::Data || frame.kind == FrameKind::Damaged || args.all;
        if !shown {
            return true;
        }
        if frame.kind == FrameKind::Damaged || !frame.crc_ok {
            damaged += 1;
        }
        let line = Line {
            position: frame.position,
            kind: kind_name(frame.kind),
            timestamp: frame.timestamp,
            priority: frame.priority,
            payload: frame.payload,
            key: frame.key,
            crc_ok: frame.crc_ok,
            fault: frame.fault.as_deref(),
        };
        result = print_line(&mut out, args.format, &line);
        left -= 1;
        result.is_ok()
    })?;
    quiet_pipe(result.and_then(|()| out.flush()))?;
    if damaged > 0 {
        return Err(Failure::new(EXIT_FINDING, format!("{damaged} damaged frames shown (run `backwater verify`)")));
    }
    Ok(())
}

fn kind_name(kind: FrameKind) -> &'static str {
    match kind {
        FrameKind::Data => "data",
        FrameKind::Padding => "padding",
        FrameKind::Pending => "pending",
        FrameKind::Damaged => "DAMAGED",
    }
}
