//! `backwater compress`: runs the compress step now, as the compressor
//! thread of a running writer would (for a journal nobody has open, or to
//! see it happen).

use crate::cli::ReportArgs;
use crate::output::{human_bytes, open_existing};
use crate::{Failure, Outcome};

pub fn run(args: ReportArgs) -> Outcome {
    let journal = open_existing(&args.dir)?;
    let limits = journal.limits();
    if !limits.compression.is_on() {
        return Err(Failure::new(
            crate::EXIT_USAGE,
            "compression is off for this journal: turn it on with `backwater config DIR --compression zstd`",
        ));
    }
    let compressed = journal.compress_sealed()?;
    let stats = journal.stats();
    let now = stats.compression;
    if args.json {
        say!(
            "{}",
            serde_json::json!({
                "compressed": compressed,
                "segments": now.segments,
                "saved_bytes": now.saved_bytes(),
                "ratio": now.ratio(),
                "fill": stats.fill,
            })
        );
    } else {
        say!(
            "compressed {compressed} segments ({}); now {} compressed, {} saved, ratio {:.1}x, fill {:.1}% (compresses from {:.0}%)",
            limits.compression.name(),
            now.segments,
            human_bytes(now.saved_bytes()),
            now.ratio(),
            stats.fill * 100.0,
            limits.watermarks.compress * 100.0
        );
    }
    Ok(())
}
