//! The PostgreSQL tools, run by the tests: `tools/pg-e2e` (the seed scenario
//! end to end: 1,000,000 records, a 64 MiB budget, the sink and replay
//! SIGKILLed mid-run; and with a poison record, which must make it FAIL, not
//! hang) and `tools/pg-sink-check` (what `examples/pg_sink.rs` promises).
//! Each skips, saying why, where no PostgreSQL server can be started.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

/// `target/<profile>/examples/pg_sink`, built by `cargo test` with the tests.
fn pg_sink() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(|deps| deps.parent()).expect("target dir").join("examples").join("pg_sink")
}

/// Runs `tools/<tool>` with `env`; `None` when it skipped (exit 77). Fails
/// the test if it runs longer than `limit` (it is terminated first).
fn run_tool(tool: &str, env: &[(&str, &str)], limit: Duration) -> Option<(Output, String)> {
    let script = format!("{}/tools/{tool}", env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new("bash");
    command.arg(script).env("BACKWATER", env!("CARGO_BIN_EXE_backwater")).envs(env.iter().copied());
    if pg_sink().exists() {
        command.env("PG_SINK", pg_sink());
    }
    let child = command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let out = match finished.recv_timeout(limit) {
        Ok(out) => out.expect("wait for the tool"),
        Err(_) => {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            panic!("tools/{tool} still running after {limit:?}: it hangs");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.code() == Some(77) {
        eprintln!("{}", stdout.trim());
        return None;
    }
    Some((out, stdout))
}

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

#[test]
fn a_poison_record_makes_the_scenario_fail_instead_of_rerunning_forever() {
    let env = [("POISON", "1"), ("RECORDS", "20000")];
    let Some((out, stdout)) = run_tool("pg-e2e", &env, Duration::from_secs(300)) else { return };
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("without progress") && stdout.trim_end().ends_with("FAIL"), "{stdout}");
}

#[test]
fn the_postgresql_sink_keeps_payloads_keys_big_batches_and_dead_letters() {
    let Some((out, stdout)) = run_tool("pg-sink-check", &[], Duration::from_secs(300)) else { return };
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.trim_end().ends_with("PASS") && !stdout.contains("FAIL"), "{stdout}");
}
