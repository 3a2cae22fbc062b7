//! `backwater`: inspect, verify, feed and replay a journal. A thin shell over
//! the library's public API: one file per subcommand, no journal logic here.

#[macro_use]
mod output;

mod append;
mod cli;
mod compress;
mod create;
mod cursor;
mod demo;
mod dump;
mod exporter;
mod info;
mod metrics;
mod nats;
mod replay;
mod segments;
mod tail;
mod units;
mod verify;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

/// Exit codes: 0 fine, 1 a finding (corruption, lost data) or a failure,
/// 2 usage or not a journal, 75 still back-pressured after `--timeout`.
pub const EXIT_FINDING: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_BACK_PRESSURED: u8 = 75;

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure { code, message: message.into() }
    }
}

impl From<backwater::Error> for Failure {
    fn from(error: backwater::Error) -> Failure {
        use backwater::Error as E;
        let code = match &error {
            E::NotAJournal { .. }
            | E::NewerFormat { .. }
            | E::SegmentSizeMismatch { .. }
            | E::InvalidConfig(_)
            | E::BadCursorName(_)
            | E::NoSuchCursor(_)
            | E::NotAFrameBoundary { .. } => EXIT_USAGE,
            E::StillBackPressured { .. } => EXIT_BACK_PRESSURED,
            _ => EXIT_FINDING,
        };
        Failure::new(code, error.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Failure {
        Failure::new(EXIT_FINDING, error.to_string())
    }
}

pub type Outcome = Result<(), Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Create(args) => create::create(args),
        Command::Config(args) => create::config(args),
        Command::Info(args) => info::run(args),
        Command::Metrics(args) => metrics::run(args),
        Command::Exporter(args) => exporter::run(args),
        Command::Segments(args) => segments::run(args),
        Command::Dump(args) => dump::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Compress(args) => compress::run(args),
        Command::Append(args) => append::run(args),
        Command::Tail(args) => tail::run(args),
        Command::Cursor(args) => cursor::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Demo(args) => demo::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) if failure.message.is_empty() => ExitCode::from(failure.code),
        Err(failure) => {
            eprintln!("backwater: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
