//! The `backwater` binary, run as a user would.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_backwater");

fn backwater(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run backwater")
}

fn backwater_with_input(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn backwater");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().expect("wait");
    writer.join().expect("writer");
    output
}

fn path(dir: &Path) -> &str {
    dir.to_str().expect("utf-8 temp path")
}

fn create(dir: &Path, extra: &[&str]) {
    let mut args = vec!["create", path(dir), "--segment-size", "1MiB", "--min-free", "0"];
    args.extend_from_slice(extra);
    let out = backwater(&args);
    assert!(out.status.success(), "create failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn lines(count: usize) -> Vec<u8> {
    let mut text = Vec::new();
    for i in 0..count {
        writeln!(text, "record {i} {}", "x".repeat(i % 50)).unwrap();
    }
    text
}

#[test]
fn two_hundred_thousand_lines_round_trip_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    create(&journal, &[]);
    let input = lines(200_000);
    let out = backwater_with_input(&["append", path(&journal)], &input);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("appended 200000 records"));
    let out = backwater(&["tail", path(&journal), "--from", "start", "--format", "lines"]);
    assert!(out.status.success());
    assert!(out.stdout == input, "tail output differs from the appended input");
}

#[test]
fn length_prefixed_input_keeps_binary_records_intact() {
    let dir = tempfile::tempdir().unwrap();
    create(dir.path(), &[]);
    let records: Vec<Vec<u8>> = vec![vec![0, 10, 13, 255], Vec::new(), b"plain".to_vec()];
    let mut input = Vec::new();
    for record in &records {
        input.extend_from_slice(&(record.len() as u32).to_le_bytes());
        input.extend_from_slice(record);
    }
    let out = backwater_with_input(&["append", path(dir.path()), "--format", "len"], &input);
    assert!(out.status.success());
    let out = backwater(&["dump", path(dir.path()), "--format", "raw"]);
    assert_eq!(out.stdout, records.concat());
    let out = backwater(&["dump", path(dir.path()), "--format", "json"]);
    let first: serde_json::Value = serde_json::from_slice(out.stdout.split(|&b| b == b'\n').next().unwrap()).unwrap();
    assert_eq!(first["payload_hex"], "000a0dff");
    assert_eq!(first["crc_ok"], true);
}

#[test]
fn verify_exit_codes_and_repair() {
    let dir = tempfile::tempdir().unwrap();
    create(dir.path(), &[]);
    let out = backwater_with_input(&["append", path(dir.path())], &lines(1000));
    assert!(out.status.success());
    let out = backwater(&["verify", path(dir.path())]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1000 records: clean"));

    // Damage record 500's payload.
    let dump = backwater(&["dump", path(dir.path()), "--format", "json"]);
    let frames: Vec<serde_json::Value> = dump
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let position = frames[500]["position"].as_u64().unwrap();
    let segment = common::segment_path(dir.path(), 1 << 20, position);
    common::write_at(&segment, position % (1 << 20) + 33, b"#");

    let out = backwater(&["verify", path(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains(&format!("at position {position}")), "{report}");
    assert!(report.contains("CRC"), "{report}");
    let out = backwater(&["verify", path(dir.path()), "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["clean"], false);
    assert_eq!(json["findings"][0]["position"], position);

    let out = backwater(&["verify", path(dir.path()), "--repair"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("replaced {position}")), "{said}");
    assert!(said.contains("999 records: clean"), "{said}");
}

#[test]
fn append_gives_up_with_exit_75_on_a_full_budget() {
    let dir = tempfile::tempdir().unwrap();
    create(dir.path(), &["--max-disk", "4MiB"]);
    let out = backwater(&["cursor", path(dir.path()), "set", "stalled", "64"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let input: Vec<u8> = (0..10_000).flat_map(|_| [b'z'; 999].into_iter().chain([b'\n'])).collect();
    let out = backwater_with_input(&["append", path(dir.path()), "--timeout", "0.5"], &input);
    assert_eq!(out.status.code(), Some(75), "{}", String::from_utf8_lossy(&out.stderr));
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("still back-pressured") && message.contains("records before giving up"), "{message}");
    let info = backwater(&["info", path(dir.path()), "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let written: u64 = message.split("wrote ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert_eq!(info["appended"], written);
    assert_eq!(info["level"], "back-pressured");
}

#[test]
fn not_a_journal_is_exit_2_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    for command in [&["info"][..], &["verify"], &["dump"], &["segments"], &["tail"]] {
        let mut args = command.to_vec();
        args.push(path(dir.path()));
        let out = backwater(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("backwater create"));
    }
    assert_eq!(backwater(&["create", path(dir.path()), "--segment-size", "3MiB"]).status.code(), Some(2));
    assert_eq!(backwater(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn info_segments_and_cursors_report_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    create(dir.path(), &["--max-disk", "64MiB", "--when-full", "drop-oldest"]);
    backwater_with_input(&["append", path(dir.path())], &lines(30_000));
    assert!(backwater(&["cursor", path(dir.path()), "reset", "reader", "start"]).status.success());
    let info: serde_json::Value =
        serde_json::from_slice(&backwater(&["info", path(dir.path()), "--json"]).stdout).unwrap();
    assert_eq!(info["appended"], 30_000);
    assert_eq!(info["limits"]["when_full"], "drop-oldest");
    assert_eq!(info["exclusive_publisher"], serde_json::Value::Null);
    assert_eq!(info["cursors"][0]["name"], "reader");
    assert_eq!(info["cursors"][0]["position"], 64);
    assert!(info["cursors"][0]["lag_bytes"].as_u64().unwrap() > 1 << 20);
    let segments: serde_json::Value =
        serde_json::from_slice(&backwater(&["segments", path(dir.path()), "--json"]).stdout).unwrap();
    let rows = segments.as_array().unwrap();
    assert_eq!(rows.iter().map(|r| r["records"].as_u64().unwrap()).sum::<u64>(), 30_000);
    assert_eq!(rows[0]["state"], "sealed");
    assert!(rows.iter().any(|r| r["state"] == "active"));
    let out = backwater(&["cursor", path(dir.path()), "delete", "reader"]);
    assert!(out.status.success());
    let listed = backwater(&["cursor", path(dir.path()), "list", "--json"]);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&listed.stdout).unwrap(), serde_json::json!([]));
}

#[test]
fn replay_at_2000_per_second_takes_five_seconds() {
    let dir = tempfile::tempdir().unwrap();
    create(dir.path(), &[]);
    backwater_with_input(&["append", path(dir.path())], &lines(10_000));
    let started = Instant::now();
    let out = backwater(&["replay", path(dir.path()), "--cursor", "paced", "--rate", "2000/s"]);
    let seconds = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, lines(10_000));
    assert!((4.5..=5.5).contains(&seconds), "replay took {seconds:.2} s");
    // The cursor was committed at the end: a rerun hands over nothing.
    let again = backwater(&["replay", path(dir.path()), "--cursor", "paced"]);
    assert!(again.stdout.is_empty());
}

/// A sink that appends each line to `out`, acknowledges every 100, and exits
/// with status 3 after `die_after` lines (0: never).
fn sink(out: &Path, die_after: usize) -> String {
    format!(
        "n=0; while IFS= read -r line; do printf '%s\\n' \"$line\" >> {out}; n=$((n+1)); \
         if [ $((n % 100)) -eq 0 ]; then echo 100; fi; \
         if [ {die_after} -gt 0 ] && [ $n -ge {die_after} ]; then exit 3; fi; done; echo $((n % 100))",
        out = out.display()
    )
}

#[test]
fn replay_with_ack_resumes_after_the_child_dies_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    create(&journal, &[]);
    backwater_with_input(&["append", path(&journal)], &lines(5000));
    let received = dir.path().join("received.txt");

    let replay = |die_after| {
        let sink = sink(&received, die_after);
        backwater(&["replay", path(&journal), "--cursor", "db", "--ack", "--window", "500", "--exec", &sink])
    };
    let out = replay(2550);
    assert_eq!(out.status.code(), Some(1), "a dying child must fail the replay");
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("cursor 'db' committed at position") && message.contains("rerun"), "{message}");

    let out = replay(0);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let got = std::fs::read(&received).unwrap();
    let got: Vec<&[u8]> = got.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let expected = lines(5000);
    let expected: Vec<&[u8]> = expected.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<&[u8]> = got.iter().copied().filter(|line| seen.insert(*line)).collect();
    assert!(unique == expected, "every record, in order of first delivery, once duplicates are removed");
    let duplicates = got.len() - expected.len();
    assert!(duplicates <= 500, "{duplicates} duplicates exceed the window");
    assert_eq!(duplicates, 50, "exactly the unacknowledged tail of the first run is redelivered");
}

#[test]
fn demo_completes_and_reports_equal_counts() {
    let out = backwater(&["demo", "--seconds", "5"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("nothing lost"), "{text}");
    assert!(
        text.contains("shedding") && text.contains("back-pressured"),
        "the watermarks must come into play:\n{text}"
    );
}

#[test]
fn a_closed_stdout_ends_reports_quietly() {
    let dir = tempfile::tempdir().unwrap();
    create(dir.path(), &[]);
    backwater_with_input(&["append", path(dir.path())], &lines(20_000));
    for command in ["info", "segments", "dump", "tail"] {
        let mut args = vec![command, path(dir.path())];
        if command == "tail" {
            args.extend(["--from", "start"]);
        }
        let mut child = Command::new(BIN).args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        drop(child.stdout.take()); // like `| head -0`
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && !stderr.contains("panicked"), "{command}: {:?} {stderr}", out.status);
    }
}

#[test]
fn config_shows_and_changes_limits() {
    let dir = tempfile::tempdir().unwrap();
    create(dir.path(), &["--max-disk", "64MiB"]);
    let out = backwater(&["config", path(dir.path()), "--high", "0.9", "--when-full", "evict-slowest", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let limits: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((limits["high"].as_f64(), limits["when_full"].as_str()), (Some(0.9), Some("evict-slowest")));
    assert_eq!(limits["max_disk_bytes"], 64 << 20);
    let out = backwater(&["config", path(dir.path()), "--resume", "0.95"]);
    assert_eq!(out.status.code(), Some(2), "resume above shed must be refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("resume"));
}
