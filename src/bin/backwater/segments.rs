//! `backwater segments`: one row per segment file.

use crate::cli::ReportArgs;
use crate::output::{human_bytes, human_time, open_read_only};
use crate::{Outcome, output};

pub fn run(args: ReportArgs) -> Outcome {
    let journal = open_read_only(&args.dir)?;
    let infos = journal.segment_infos()?;
    if args.json {
        let rows: Vec<serde_json::Value> = infos
            .iter()
            .map(|info| {
                serde_json::json!({
                    "file": info.path.file_name().map(|n| n.to_string_lossy().into_owned()),
                    "base": info.base,
                    "bytes_used": info.bytes_used,
                    "records": info.records,
                    "first_timestamp_ns": info.first_timestamp,
                    "last_timestamp_ns": info.last_timestamp,
                    "state": info.state.name(),
                    "storage": if info.compressed { "compressed" } else { "raw" },
                    "disk_bytes": info.disk_bytes,
                    "ratio": info.ratio(),
                    "problems": info.problems,
                })
            })
            .collect();
        say!("{}", serde_json::Value::from(rows));
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    output::quiet_pipe((|| {
        use std::io::Write;
        writeln!(
            out,
            "{:<27} {:>14} {:>10} {:>9}  {:<24} {:<24} {:<8} {:<10} {:>6} state",
            "file", "base", "used", "records", "first", "last", "storage", "on disk", "ratio"
        )?;
        for info in &infos {
            let time = |ts: Option<u64>| ts.map(human_time).unwrap_or_else(|| "-".into());
            let problems =
                if info.problems > 0 { format!("  ({} problems: run verify)", info.problems) } else { String::new() };
            writeln!(
                out,
                "{:<27} {:>14} {:>10} {:>9}  {:<24} {:<24} {:<8} {:<10} {:>6} {}{problems}",
                info.path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
                info.base,
                human_bytes(info.bytes_used),
                info.records,
                time(info.first_timestamp),
                time(info.last_timestamp),
                if info.compressed { "zstd" } else { "raw" },
                human_bytes(info.disk_bytes),
                if info.compressed { format!("{:.1}x", info.ratio()) } else { "-".into() },
                info.state.name(),
            )?;
        }
        Ok(())
    })())
}
