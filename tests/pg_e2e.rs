//! The seed scenario end to end on a real PostgreSQL: runs `tools/pg-e2e`
//! (1,000,000 records, a 64 MiB budget, the sink and replay SIGKILLed
//! mid-run). Skips, saying why, where no PostgreSQL server can be started.

use std::path::PathBuf;
use std::process::Command;

/// `target/<profile>/examples/pg_sink`, built by `cargo test` with the tests.
fn pg_sink() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(|deps| deps.parent()).expect("target dir").join("examples").join("pg_sink")
}

#[test]
fn a_fast_source_through_backwater_into_postgresql_loses_nothing() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/pg-e2e");
    let mut command = Command::new("bash");
    command.arg(script).env("BACKWATER", env!("CARGO_BIN_EXE_backwater"));
    if pg_sink().exists() {
        command.env("PG_SINK", pg_sink());
    }
    let out = command.output().expect("run tools/pg-e2e");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(77) {
        eprintln!("{}", stdout.trim());
        return;
    }
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("\nPASS"), "{stdout}");
    for level in ["normal", "shedding", "back-pressured"] {
        assert!(stdout.contains(level), "the time series must show the {level} level:\n{stdout}");
    }
    assert!(stdout.contains("SIGKILL pg_sink") && stdout.contains("SIGKILL backwater replay"), "{stdout}");
    println!("{stdout}");
}
