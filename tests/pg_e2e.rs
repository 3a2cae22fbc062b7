//! The PostgreSQL tools, run by the tests: `tools/pg-e2e` (the seed scenario
//! end to end: 1,000,000 records, a 64 MiB budget, the sink and replay
//! SIGKILLed mid-run; and with a poison record, which must make it FAIL, not
//! hang), `tools/pg-sink-check` (what `examples/pg_sink.rs` promises) and
//! `tools/pg-conflate` (a keyed backlog drained with and without
//! `replay --conflate`); `tools/pg-e2e` again with `COMPRESSION=zstd`.
//! Each skips, saying why, where no PostgreSQL server can be started.

mod common;

use std::time::Duration;

use common::run_tool;

#[test]
fn a_fast_source_through_backwater_into_postgresql_loses_nothing() {
    let Some((out, stdout)) = run_tool("pg-e2e", &[], Duration::from_secs(900)) else { return };
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("\nPASS"), "{stdout}");
    for level in ["normal", "shedding", "back-pressured"] {
        assert!(stdout.contains(level), "the time series must show the {level} level:\n{stdout}");
    }
    assert!(stdout.contains("SIGKILL pg_sink") && stdout.contains("SIGKILL backwater replay"), "{stdout}");
    println!("{stdout}");
}

/// The same with the journal compressing sealed segments (CI-sized: 200,000
/// records): the replay reads through compressed segments, nothing is lost.
#[test]
fn a_fast_source_through_a_compressing_journal_into_postgresql_loses_nothing() {
    let env = [("COMPRESSION", "zstd"), ("RECORDS", "200000")];
    let Some((out, stdout)) = run_tool("pg-e2e", &env, Duration::from_secs(600)) else { return };
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("\nPASS") && stdout.contains("sealed segments were compressed"), "{stdout}");
    println!("{stdout}");
}

#[test]
fn a_poison_record_makes_the_scenario_fail_instead_of_rerunning_forever() {
    let env = [("POISON", "1"), ("RECORDS", "20000")];
    let Some((out, stdout)) = run_tool("pg-e2e", &env, Duration::from_secs(300)) else { return };
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("without progress") && stdout.trim_end().ends_with("FAIL"), "{stdout}");
}

/// `tools/pg-conflate` in its short mode (100,000 updates over 1,000 keys;
/// the tool's default is 1,000,000 over 10,000): `replay --conflate` hands
/// the database at most 10% of the records, and both tables end at the
/// latest value per key. The speed-up is printed, not checked: a timing on a
/// shared machine is a figure for the README, not a test (by hand, the tool
/// checks it: at least 5x).
#[test]
fn conflation_hands_postgresql_a_tenth_of_a_keyed_backlog_and_the_same_latest_values() {
    let env = [("UPDATES", "100000"), ("KEYS", "1000"), ("MIN_SPEEDUP", "0")];
    let Some((out, stdout)) = run_tool("pg-conflate", &env, Duration::from_secs(300)) else { return };
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.trim_end().ends_with("PASS") && !stdout.contains("FAIL"), "{stdout}");
    println!("{stdout}");
}

#[test]
fn the_postgresql_sink_keeps_payloads_keys_big_batches_and_dead_letters() {
    let Some((out, stdout)) = run_tool("pg-sink-check", &[], Duration::from_secs(300)) else { return };
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.trim_end().ends_with("PASS") && !stdout.contains("FAIL"), "{stdout}");
}
