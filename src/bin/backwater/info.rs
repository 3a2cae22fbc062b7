//! `backwater info`: the journal at a glance.

use backwater::Journal;
use backwater::metrics::{CursorFigures, Figures};

use crate::Outcome;
use crate::cli::ReportArgs;
use crate::create::limits_json;
use crate::output::{human_bytes, human_time, open_read_only};

pub fn run(args: ReportArgs) -> Outcome {
    let journal = open_read_only(&args.dir)?;
    let figures = journal.figures()?;
    let report = report(&journal, &figures);
    if args.json {
        say!("{report}");
        return Ok(());
    }
    let stats = figures.stats;
    say!("journal        {}", args.dir.display());
    say!("created        {}", human_time(journal.created_ns()));
    let retired = match stats.retired_bytes {
        0 => String::new(),
        bytes => format!(", {} of it deleted segments a reader still maps", human_bytes(bytes)),
    };
    say!("segments       {} ({} on disk{retired})", figures.segments, human_bytes(stats.disk_bytes));
    say!("positions      {} .. {}", stats.first_position, stats.tail_position);
    say!("capacity       {}", human_bytes(stats.capacity));
    say!("fill           {:.1}%  level {}", stats.fill * 100.0, stats.level.name());
    let compression = stats.compression;
    say!(
        "compression    {}: {} segments compressed ({} in {}), {} saved, ratio {:.1}x; {} compressed since creation",
        journal.limits().compression.name(),
        compression.segments,
        human_bytes(compression.segment_bytes),
        human_bytes(compression.file_bytes),
        human_bytes(compression.saved_bytes()),
        compression.ratio(),
        compression.compressed_total,
    );
    say!(
        "counters       appended {}  shed {}  back-pressured {}  evicted {}  lost {}  unblocked {}",
        stats.appended,
        stats.dropped_low,
        stats.back_pressured,
        stats.evictions,
        human_bytes(stats.lost_bytes),
        stats.unblocked
    );
    if let Some(pid) = stats.exclusive_publisher {
        say!("publisher      exclusive, pid {pid}");
    }
    for process in report["processes"].as_array().into_iter().flatten() {
        say!("process        pid {}  {}", process["pid"], if process["alive"] == true { "alive" } else { "dead" });
    }
    for cursor in report["cursors"].as_array().into_iter().flatten() {
        let lag = cursor["lag_bytes"].as_u64().unwrap_or(0);
        let age = cursor["lag_secs"].as_f64().map(|s| format!("{s:.1} s")).unwrap_or_else(|| "-".into());
        let evicted = if cursor["evicted"].is_null() { "" } else { "  EVICTED" };
        say!(
            "cursor         {:<16} at {:<14} lag {} ({age} behind){evicted}",
            cursor["name"].as_str().unwrap_or("?"),
            cursor["position"],
            human_bytes(lag)
        );
    }
    Ok(())
}

/// Everything `info` shows, as one JSON object (the `--json` schema): the
/// journal's `figures` (what `backwater metrics` shows too) and more.
pub fn report(journal: &Journal, figures: &Figures) -> serde_json::Value {
    let stats = figures.stats;
    let processes: Vec<serde_json::Value> =
        journal.processes().into_iter().map(|(pid, alive)| serde_json::json!({"pid": pid, "alive": alive})).collect();
    serde_json::json!({
        "dir": journal.dir(),
        "journal_id": journal_id(journal),
        "segments": figures.segments,
        "segment_size": journal.segment_size(),
        "first_position": stats.first_position,
        "tail_position": stats.tail_position,
        "appended": stats.appended,
        "disk_bytes": stats.disk_bytes,
        "retired_bytes": stats.retired_bytes,
        "capacity": stats.capacity,
        "fill": stats.fill,
        "level": stats.level.name(),
        "dropped_low": stats.dropped_low,
        "back_pressured": stats.back_pressured,
        "evictions": stats.evictions,
        "lost_bytes": stats.lost_bytes,
        "unblocked": stats.unblocked,
        "compression": {
            "segments": stats.compression.segments,
            "segment_bytes": stats.compression.segment_bytes,
            "file_bytes": stats.compression.file_bytes,
            "saved_bytes": stats.compression.saved_bytes(),
            "ratio": stats.compression.ratio(),
            "compressed_total": stats.compression.compressed_total,
            "raw_bytes_total": stats.compression.raw_bytes_total,
            "file_bytes_total": stats.compression.file_bytes_total,
        },
        "limits": limits_json(journal),
        "exclusive_publisher": stats.exclusive_publisher,
        "processes": processes,
        "cursors": cursors_json(&figures.cursors),
    })
}

/// The journal's id as 16 hex digits (as `replay --format json` gives it).
pub fn journal_id(journal: &Journal) -> String {
    format!("{:016x}", journal.id())
}

/// Every cursor as `info --json` and `cursor list --json` show it.
pub fn cursors_json(cursors: &[CursorFigures]) -> Vec<serde_json::Value> {
    let cursor_json = |figures: &CursorFigures| {
        let cursor = &figures.cursor;
        serde_json::json!({
            "name": cursor.name,
            "position": cursor.position,
            "lag_bytes": cursor.lag_bytes,
            "lag_secs": figures.waiting.map(|waiting| waiting.as_secs_f64()),
            "committed": human_time(cursor.committed_ns),
            "evicted": cursor.evicted.map(|(from, to)| serde_json::json!({"from": from, "to": to})),
        })
    };
    cursors.iter().map(cursor_json).collect()
}
