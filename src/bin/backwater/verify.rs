//! `backwater verify`: every frame's structure and CRC, segment headers and
//! the metadata; `--repair` fixes what recovery can and says what it changed.

use std::io::IsTerminal;

use backwater::recovery::{self, VerifyReport};

use crate::cli::VerifyArgs;
use crate::output::{human_bytes, open_read_only};
use crate::{EXIT_FINDING, Failure, Outcome};

pub fn run(args: VerifyArgs) -> Outcome {
    open_read_only(&args.dir)?;
    if args.repair {
        let report = backwater::Journal::repair(&args.dir)?;
        for (position, len) in &report.padded {
            say!("padded   {position}: {} of uncommitted claim turned into padding", human_bytes(*len as u64));
        }
        for (position, len, reason) in &report.discarded {
            say!("replaced {position}: damaged frame ({reason}), {} turned into padding", human_bytes(*len as u64));
        }
        if let Some((position, len)) = report.cut {
            say!(
                "cut      {position}: torn tail of {} zeroed; the tail is now {}",
                human_bytes(len as u64),
                report.tail_position
            );
        }
        for kept in &report.duplicates {
            say!("kept     {}: a compression cut short left two copies; the other was removed", kept.display());
        }
        if !report.changed() {
            say!("nothing to repair");
        }
    }
    let report = verify_with_progress(&args.dir)?;
    if args.json {
        let findings: Vec<serde_json::Value> = report
            .findings
            .iter()
            .map(|f| serde_json::json!({"path": f.path, "position": f.position, "reason": f.reason}))
            .collect();
        say!(
            "{}",
            serde_json::json!({"segments": report.segments, "compressed_segments": report.compressed, "records": report.records, "clean": report.findings.is_empty(), "findings": findings})
        );
    } else {
        for finding in &report.findings {
            say!("BAD {} at position {}: {}", finding.path.display(), finding.position, finding.reason);
        }
        let verdict = if report.findings.is_empty() {
            "clean".to_string()
        } else {
            format!("{} problems", report.findings.len())
        };
        say!(
            "verified {} segments ({} compressed), {} records: {verdict}",
            report.segments,
            report.compressed,
            report.records
        );
    }
    if report.findings.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(EXIT_FINDING, if args.repair { "problems remain after --repair" } else { "" }))
    }
}

fn verify_with_progress(dir: &std::path::Path) -> Result<VerifyReport, Failure> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("verifying {bar:40} {pos}/{len} segments {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let report = recovery::verify(dir, |done, total| {
        if let Some(bar) = &bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(report)
}
