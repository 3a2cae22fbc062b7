//! `backwater metrics`: the Prometheus text exposition of one or more
//! journals, as `backwater exporter` serves it.

use std::path::PathBuf;

use backwater::metrics::{Figures, JournalMetrics, write_exposition};

use crate::cli::MetricsArgs;
use crate::output::{open_read_only, quiet_pipe};
use crate::{Failure, Outcome};

pub fn run(args: MetricsArgs) -> Outcome {
    let scrape = Scrape::of(&args.dirs);
    quiet_pipe(std::io::Write::write_all(&mut std::io::stdout().lock(), &scrape.exposition()))?;
    let mut failures = scrape.failures().peekable();
    let Some((_, first)) = failures.peek() else { return Ok(()) };
    let code = first.code;
    let mut count = 0;
    for (_, failure) in failures {
        eprintln!("backwater: {}", failure.message);
        count += 1;
    }
    Err(Failure::new(code, format!("{count} of {} journals could not be read: backwater_up is 0", args.dirs.len())))
}

/// What one pass over the journals found: each one's figures, or why they
/// could not be had.
pub struct Scrape {
    journals: Vec<(String, Result<Figures, Failure>)>,
}

impl Scrape {
    /// Opens each journal read-only (as `info` does) and gathers its figures.
    pub fn of(dirs: &[PathBuf]) -> Scrape {
        let gather = |dir: &PathBuf| -> Result<Figures, Failure> { Ok(open_read_only(dir)?.figures()?) };
        Scrape { journals: dirs.iter().map(|dir| (dir.to_string_lossy().into_owned(), gather(dir))).collect() }
    }

    /// The text exposition: a journal that could not be read is `backwater_up 0`.
    pub fn exposition(&self) -> Vec<u8> {
        let journals: Vec<JournalMetrics<'_>> = self
            .journals
            .iter()
            .map(|(journal, figures)| JournalMetrics { journal, figures: figures.as_ref().ok() })
            .collect();
        let mut text = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = write_exposition(&mut text, &journals);
        text
    }

    /// Every journal that could not be read, with why.
    pub fn failures(&self) -> impl Iterator<Item = (&str, &Failure)> {
        self.journals.iter().filter_map(|(journal, figures)| Some((journal.as_str(), figures.as_ref().err()?)))
    }
}
