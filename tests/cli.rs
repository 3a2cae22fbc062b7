//! The `backwater` binary, run as a user would.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::cli::{backwater, backwater_with_input, bin, path, run_bounded, stderr_of};
use common::wait_for;

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
fn replay_at_2000_per_second_takes_at_least_five_seconds() {
    let dir = tempfile::tempdir().unwrap();
    create(dir.path(), &[]);
    backwater_with_input(&["append", path(dir.path())], &lines(10_000));
    let started = Instant::now();
    let out = backwater(&["replay", path(dir.path()), "--cursor", "paced", "--create", "--rate", "2000/s"]);
    let seconds = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, lines(10_000));
    // The pace is a floor: never faster than the rate. The ceiling only
    // catches a pacer that oversleeps grossly (a loaded machine adds seconds).
    assert!((4.5..=10.0).contains(&seconds), "replay took {seconds:.2} s");
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
        backwater(&[
            "replay",
            path(&journal),
            "--cursor",
            "db",
            "--create",
            "--ack",
            "--window",
            "500",
            "--format",
            "json",
            "--exec",
            &sink,
        ])
    };
    let out = replay(2550);
    assert_eq!(out.status.code(), Some(1), "a dying child must fail the replay");
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("cursor 'db' committed at position") && message.contains("rerun"), "{message}");

    let out = replay(0);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let got = json_payloads(&std::fs::read(&received).unwrap());
    let expected: Vec<String> =
        String::from_utf8(lines(5000)).unwrap().lines().map(|line| serde_json::Value::from(line).to_string()).collect();
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<&String> = got.iter().filter(|line| seen.insert(*line)).collect();
    assert!(
        unique.iter().copied().eq(expected.iter()),
        "every record, in order of first delivery, once duplicates are removed"
    );
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
        let mut child = Command::new(bin()).args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
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

// ---------------------------------------------------------------------------
// Issue 20: the CLI and replay keep their word.

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn line_count(path: &Path) -> usize {
    std::fs::read(path).map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count()).unwrap_or(0)
}

/// The committed position of cursor `name`, if it exists.
fn cursor_position(dir: &Path, name: &str) -> Option<u64> {
    let listed = backwater(&["cursor", path(dir), "list", "--json"]);
    let cursors: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("cursor list --json");
    cursors.as_array()?.iter().find(|c| c["name"] == name).and_then(|c| c["position"].as_u64())
}

fn info_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&backwater(&["info", path(dir), "--json"]).stdout).expect("info --json")
}

/// A journal in a fresh temporary directory holding `lines(count)`.
fn journal_with_lines(count: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    create(dir.path(), &[]);
    let out = backwater_with_input(&["append", path(dir.path())], &lines(count));
    assert!(out.status.success(), "{}", stderr_of(&out));
    dir
}

/// The payloads of `replay --format json` lines, in order.
fn json_payloads(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice::<serde_json::Value>(l).expect("a JSON record")["payload"].to_string())
        .collect()
}

/// A sink counting records, acknowledging every `every` and the remainder at
/// the end of its input, copying each line to `out`.
fn batching_sink(out: &Path, every: usize) -> String {
    format!(
        "n=0; while IFS= read -r line; do printf '%s\\n' \"$line\" >> {out}; n=$((n+1)); \
         if [ $((n % {every})) -eq 0 ]; then echo {every}; fi; done; echo $((n % {every}))",
        out = out.display()
    )
}

#[test]
fn replay_ack_closes_the_childs_input_at_the_tail_and_takes_the_last_acks() {
    let dir = journal_with_lines(1005);
    let received = dir.path().join("received");
    let sink = batching_sink(&received, 10);
    let args = ["replay", path(dir.path()), "--cursor", "db", "--create", "--ack", "--format", "json", "--exec", &sink];
    let out = run_bounded(&args, b"", Duration::from_secs(30));
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(line_count(&received), 1005);
    assert_eq!(cursor_position(dir.path(), "db"), Some(info_json(dir.path())["tail_position"].as_u64().unwrap()));
}

#[test]
fn paced_replay_commits_each_ack_as_it_arrives_not_a_hand_over_later() {
    // At 20 records/s a hand-over of 256 records once took 12.8 s, and acks
    // were applied only between hand-overs: the cursor trailed the sink's
    // acks by up to 256 records, all re-sent after a crash.
    let dir = journal_with_lines(300);
    let ends: Vec<u64> = {
        let journal = backwater::Journal::open_read_only(dir.path()).unwrap();
        let mut reader = journal.anonymous_consumer();
        let mut ends = Vec::new();
        reader.poll(|record| ends.push(record.next_position()), 300).unwrap();
        ends
    };
    let received = dir.path().join("received");
    let sink = batching_sink(&received, 1);
    let args = ["replay", path(dir.path()), "--cursor", "db", "--create", "--rate", "20/s", "--ack"];
    let replay = Command::new(bin())
        .args(args)
        .args(["--format", "json", "--exec", &sink])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _replay = KillOnDrop(replay);
    wait_for("the sink to acknowledge 10 records", Duration::from_secs(20), || line_count(&received) >= 10);
    wait_for("the cursor to follow the acks", Duration::from_secs(5), || {
        cursor_position(dir.path(), "db").is_some_and(|committed| committed >= ends[9])
    });
    // ... and never run ahead of them (the sink writes a record, then acks it).
    let committed = cursor_position(dir.path(), "db").unwrap();
    let written = line_count(&received);
    assert!(written < 300, "the replay is still paced, {written} records in");
    assert!(committed <= ends[written - 1], "committed {committed} past the {written} records the sink has");
}

#[test]
fn replay_ack_with_a_window_below_the_sinks_batch_fails_clearly_instead_of_hanging() {
    let dir = journal_with_lines(100);
    let received = dir.path().join("received");
    let sink = batching_sink(&received, 10);
    for follow in [false, true] {
        let mut args = vec!["replay", path(dir.path()), "--cursor", "db", "--create", "--ack", "--format", "json"];
        args.extend(["--window", "5", "--ack-timeout", "1s", "--exec", &sink]);
        if follow {
            args.push("--follow");
        }
        let out = run_bounded(&args, b"", Duration::from_secs(20));
        assert_eq!(out.status.code(), Some(1), "follow {follow}: {}", stderr_of(&out));
        let message = stderr_of(&out);
        assert!(message.contains("acknowledged nothing for 1s") && message.contains("--window"), "{message}");
    }
}

#[test]
fn replay_ack_refuses_a_framing_that_cannot_carry_every_payload() {
    let dir = tempfile::tempdir().unwrap();
    create(dir.path(), &[]);
    let mut input = Vec::new();
    for record in [&b"two\nlines"[..], b"one line"] {
        input.extend_from_slice(&(record.len() as u32).to_le_bytes());
        input.extend_from_slice(record);
    }
    assert!(backwater_with_input(&["append", path(dir.path()), "--format", "len"], &input).status.success());
    let sink = "while IFS= read -r line; do echo 1; done";
    let out = run_bounded(
        &["replay", path(dir.path()), "--cursor", "db", "--create", "--ack", "--exec", sink],
        b"",
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("--format json"), "{}", stderr_of(&out));
    assert_eq!(cursor_position(dir.path(), "db"), None, "nothing was created or committed");
}

#[test]
fn replay_without_ack_commits_only_what_the_child_took() {
    let dir = journal_with_lines(5000);
    let all = lines(5000);
    let all: Vec<&[u8]> = all.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    // A child that reads 3 records and fails.
    let out = run_bounded(
        &[
            "replay",
            path(dir.path()),
            "--cursor",
            "db",
            "--create",
            "--exec",
            "n=0; while read -r l; do n=$((n+1)); [ $n -ge 3 ] && exit 3; done",
        ],
        b"",
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(!stderr_of(&out).contains("acknowledged"), "nothing was acknowledged: {}", stderr_of(&out));
    let rerun = run_bounded(&["replay", path(dir.path()), "--cursor", "db"], b"", Duration::from_secs(20));
    assert!(rerun.status.success(), "{}", stderr_of(&rerun));
    let again: Vec<&[u8]> = rerun.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    assert!(again.len() >= 4997 && again[..] == all[all.len() - again.len()..], "rerun got {} records", again.len());

    // A reader on stdout that takes 2 records and goes away (`| head -2`).
    let mut replay = Command::new(bin())
        .args(["replay", path(dir.path()), "--cursor", "piped", "--create"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let reader = Command::new("sh")
        .args(["-c", "read -r a; read -r b"])
        .stdin(Stdio::from(replay.stdout.take().unwrap()))
        .status()
        .unwrap();
    assert!(reader.success());
    let out = replay.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "the reader stopped before the end: {}", stderr_of(&out));
    assert!(!stderr_of(&out).contains("acknowledged"), "{}", stderr_of(&out));
    let rerun = run_bounded(&["replay", path(dir.path()), "--cursor", "piped"], b"", Duration::from_secs(20));
    let again = rerun.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
    // sh's read takes a pipe byte by byte: exactly the two lines it read are taken.
    assert_eq!(again, 4998, "a rerun must deliver exactly what the reader never took");
}

#[test]
fn a_durable_cursor_has_one_writer_and_a_cursor_in_use_is_not_deleted() {
    let dir = journal_with_lines(2000);
    let first = dir.path().join("first");
    let sink = format!("cat > {}", first.display());
    let _following = KillOnDrop(
        Command::new(bin())
            .args(["replay", path(dir.path()), "--cursor", "db", "--create", "--follow", "--exec", &sink])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the first replay to deliver", Duration::from_secs(20), || line_count(&first) >= 2000);
    let second = run_bounded(&["replay", path(dir.path()), "--cursor", "db"], b"", Duration::from_secs(20));
    assert_eq!(second.status.code(), Some(1), "{}", stderr_of(&second));
    assert!(second.stdout.is_empty(), "the second replay must deliver nothing");
    assert!(stderr_of(&second).contains("in use"), "{}", stderr_of(&second));
    let moved = run_bounded(&["cursor", path(dir.path()), "set", "db", "64"], b"", Duration::from_secs(20));
    assert_eq!(moved.status.code(), Some(1), "{}", stderr_of(&moved));
    let delete = run_bounded(&["cursor", path(dir.path()), "delete", "db"], b"", Duration::from_secs(20));
    assert_eq!(delete.status.code(), Some(1), "{}", stderr_of(&delete));
    assert!(stderr_of(&delete).contains("--force"), "{}", stderr_of(&delete));
    assert!(cursor_position(dir.path(), "db").is_some());
    let forced = run_bounded(&["cursor", path(dir.path()), "delete", "db", "--force"], b"", Duration::from_secs(20));
    assert!(forced.status.success(), "{}", stderr_of(&forced));
}

#[test]
fn rate_is_a_maximum_even_after_an_idle_period() {
    let dir = tempfile::tempdir().unwrap();
    create(dir.path(), &[]);
    let mut replay = Command::new(bin())
        .args(["replay", path(dir.path()), "--cursor", "db", "--create", "--follow", "--rate", "200/s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Idle for a second: an average since the start would bank 200 records of credit.
    std::thread::sleep(Duration::from_secs(1));
    assert!(backwater_with_input(&["append", path(dir.path())], &lines(300)).status.success());
    let (sender, arrivals) = std::sync::mpsc::channel();
    let stdout = replay.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            if line.is_err() || sender.send(Instant::now()).is_err() {
                break;
            }
        }
    });
    let times: Vec<Instant> = (0..201).map(|_| arrivals.recv_timeout(Duration::from_secs(20)).unwrap()).collect();
    replay.kill().unwrap();
    replay.wait().unwrap();
    let spread = times[200] - times[0];
    assert!(spread >= Duration::from_millis(900), "200 records at 200/s went out in {spread:?}");
}

#[test]
fn after_drop_oldest_replay_says_how_to_go_on() {
    let dir = tempfile::tempdir().unwrap();
    create(dir.path(), &["--max-disk", "4MiB", "--when-full", "drop-oldest"]);
    assert!(backwater(&["cursor", path(dir.path()), "reset", "db", "start"]).status.success());
    let out = backwater_with_input(&["append", path(dir.path())], &lines(200_000));
    assert!(out.status.success(), "{}", stderr_of(&out));
    for _ in 0..2 {
        let out = run_bounded(&["replay", path(dir.path()), "--cursor", "db"], b"", Duration::from_secs(20));
        assert_eq!(out.status.code(), Some(1));
        let message = stderr_of(&out);
        assert!(!message.contains("rerun"), "a rerun fails the same way: {message}");
        assert!(message.contains(&format!("backwater cursor {} reset db start", path(dir.path()))), "{message}");
    }
    assert!(backwater(&["cursor", path(dir.path()), "reset", "db", "start"]).status.success());
    let out = run_bounded(&["replay", path(dir.path()), "--cursor", "db"], b"", Duration::from_secs(20));
    assert!(out.status.success(), "{}", stderr_of(&out));
}

#[test]
fn demo_refuses_a_directory_that_is_not_empty() {
    let dir = journal_with_lines(10);
    let before = info_json(dir.path());
    let out = run_bounded(&["demo", path(dir.path()), "--seconds", "3"], b"", Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("empty"), "{}", stderr_of(&out));
    let after = info_json(dir.path());
    assert_eq!(
        (&after["limits"], &after["appended"], &after["cursors"]),
        (&before["limits"], &before["appended"], &before["cursors"])
    );
}

#[test]
fn a_cursor_is_created_only_on_success_and_replay_needs_create_for_a_new_one() {
    let dir = journal_with_lines(10);
    let out = backwater(&["cursor", path(dir.path()), "set", "typo", "12345"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert_eq!(cursor_position(dir.path(), "typo"), None, "a failed set creates nothing");
    let out = run_bounded(&["replay", path(dir.path()), "--cursor", "typo"], b"", Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(out.stdout.is_empty());
    assert!(stderr_of(&out).contains("--create"), "{}", stderr_of(&out));
    assert_eq!(cursor_position(dir.path(), "typo"), None);
    let out = run_bounded(&["replay", path(dir.path()), "--cursor", "new", "--create"], b"", Duration::from_secs(20));
    assert!(out.status.success() && out.stdout == lines(10), "{}", stderr_of(&out));
}

#[test]
fn odd_numbers_are_usage_errors_at_parse_time() {
    let dir = journal_with_lines(10);
    let d = path(dir.path());
    let cases: Vec<Vec<&str>> = vec![
        vec!["replay", d, "--cursor", "x", "--create", "--pace", "recorded", "--speed", "1e-20"],
        vec!["replay", d, "--cursor", "x", "--create", "--pace", "recorded", "--speed", "NaN"],
        vec!["replay", d, "--cursor", "x", "--create", "--ack", "--format", "json", "--window", "0", "--exec", "cat"],
        vec!["replay", d, "--cursor", "x", "--create", "--batch", "0"],
        vec!["replay", d, "--cursor", "x", "--create", "--rate", "0/s"],
        vec!["append", d, "--timeout", "inf"],
        vec!["append", d, "--timeout", "1e300"],
        vec!["append", d, "--timeout", "-3"],
        vec!["append", d, "--timeout", "NaN"],
        vec!["create", d, "--high", "NaN"],
        vec!["config", d, "--shed", "1.5"],
    ];
    for args in cases {
        let out = run_bounded(&args, b"x\n", Duration::from_secs(10));
        let message = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {message}");
        assert!(message.contains("error: invalid value"), "{args:?}: {message}");
    }
    assert_eq!(info_json(dir.path())["appended"], 10, "nothing ran");
    assert_eq!(cursor_position(dir.path(), "x"), None);
}

#[test]
fn append_rejects_an_oversized_record_while_reading_it() {
    // 1 MiB segments: the largest record is 128 KiB.
    for format in ["lines", "len"] {
        let dir = tempfile::tempdir().unwrap();
        create(dir.path(), &[]);
        let mut child = Command::new(bin())
            .args(["append", path(dir.path()), "--format", format])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut prefix = Vec::new();
        for record in [&b"ok"[..], b"fine"] {
            if format == "len" {
                prefix.extend_from_slice(&(record.len() as u32).to_le_bytes());
                prefix.extend_from_slice(record);
            } else {
                prefix.extend_from_slice(record);
                prefix.push(b'\n');
            }
        }
        let bad_offset = prefix.len();
        if format == "len" {
            prefix.extend_from_slice(&(1u32 << 30).to_le_bytes());
        }
        let writer = std::thread::spawn(move || {
            let mut sent = 0usize;
            let block = vec![b'x'; 64 << 10];
            if stdin.write_all(&prefix).is_err() {
                return sent;
            }
            while sent < 256 << 20 && stdin.write_all(&block).is_ok() {
                sent += block.len();
            }
            sent
        });
        let out = child.wait_with_output().unwrap();
        let sent = writer.join().unwrap();
        assert_eq!(out.status.code(), Some(1), "{format}: {}", stderr_of(&out));
        assert!(sent < 16 << 20, "{format}: {sent} bytes were read before the record was rejected");
        let message = stderr_of(&out);
        assert!(
            message.contains("appended 2 records") && message.contains(&format!("offset {bad_offset}")),
            "{message}"
        );
        assert_eq!(info_json(dir.path())["appended"], 2);
    }
}

#[test]
fn append_treats_truncated_input_as_an_error() {
    let dir = tempfile::tempdir().unwrap();
    create(dir.path(), &[]);
    let mut input = 3u32.to_le_bytes().to_vec();
    input.extend_from_slice(b"abc");
    input.extend_from_slice(&[7, 0]);
    let out = backwater_with_input(&["append", path(dir.path()), "--format", "len"], &input);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("appended 1 record") && stderr_of(&out).contains("offset 7"),
        "{}",
        stderr_of(&out)
    );

    let out = backwater_with_input(&["append", path(dir.path())], b"a\nb\ntorn");
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("--accept-unterminated"), "{}", stderr_of(&out));
    assert_eq!(info_json(dir.path())["appended"], 3, "the torn line is not appended");
    let out = backwater_with_input(&["append", path(dir.path()), "--accept-unterminated"], b"c\nlast");
    assert!(out.status.success(), "{}", stderr_of(&out));
    let tail = backwater(&["tail", path(dir.path()), "--from", "start", "--format", "lines"]);
    assert_eq!(tail.stdout, b"abc\na\nb\nc\nlast\n");
}

#[test]
fn read_only_commands_on_a_live_drop_oldest_journal_never_fail() {
    let dir = tempfile::tempdir().unwrap();
    let d = path(dir.path());
    let out = backwater(&["create", d, "--segment-size", "64KiB", "--max-disk", "512KiB", "--min-free", "0"]);
    assert!(out.status.success());
    assert!(backwater(&["config", d, "--when-full", "drop-oldest"]).status.success());
    let mut source =
        Command::new("yes").arg("a record of some length, appended forever").stdout(Stdio::piped()).spawn().unwrap();
    let mut writer = Command::new(bin())
        .args(["append", d])
        .stdin(Stdio::from(source.stdout.take().unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the ring to wrap", Duration::from_secs(20), || {
        info_json(dir.path())["first_position"].as_u64() > Some(1 << 20)
    });
    let mut failures = Vec::new();
    // verify most often: its false findings were the rarer race.
    let commands = [
        (vec!["dump", d, "--format", "raw"], 25),
        (vec!["segments", d], 25),
        (vec!["tail", d, "--from", "start", "--format", "raw"], 25),
        (vec!["info", d], 25),
        (vec!["verify", d, "--json"], 400),
    ];
    for (args, rounds) in commands {
        for round in 0..rounds {
            let out = Command::new(bin()).args(&args).output().unwrap();
            if !out.status.success() {
                let said = if args[0] == "verify" { String::from_utf8_lossy(&out.stdout) } else { Default::default() };
                failures.push(format!("round {round} {}: {:?} {} {said}", args[0], out.status.code(), stderr_of(&out)));
            }
        }
    }
    writer.kill().unwrap();
    source.kill().unwrap();
    writer.wait().unwrap();
    source.wait().unwrap();
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn dump_count_zero_prints_nothing_and_json_reports_agree() {
    let dir = journal_with_lines(10);
    let out = backwater(&["dump", path(dir.path()), "--count", "0"]);
    assert!(out.status.success() && out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    let out = backwater(&["tail", path(dir.path()), "--from", "start", "-n", "0"]);
    assert!(out.status.success() && out.stdout.is_empty());
    assert!(backwater(&["cursor", path(dir.path()), "reset", "reader", "start"]).status.success());
    let listed: serde_json::Value =
        serde_json::from_slice(&backwater(&["cursor", path(dir.path()), "list", "--json"]).stdout).unwrap();
    let info = info_json(dir.path());
    for key in ["name", "position", "lag_bytes", "committed", "evicted"] {
        assert_eq!(listed[0][key], info["cursors"][0][key], "{key}");
    }
}

#[test]
fn create_refuses_what_is_not_an_empty_directory_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let out = backwater(&["create", path(dir.path())]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("notes.txt")]);
    let out = backwater(&["create", path(&dir.path().join("notes.txt"))]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
}

#[test]
fn every_flag_takes_the_same_durations_rates_and_times() {
    let dir = journal_with_lines(10);
    let d = path(dir.path());
    let out = backwater_with_input(&["append", d, "--timeout", "5s"], b"x\n");
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = backwater_with_input(&["append", d, "--timeout", "1.5"], b"y\n");
    assert!(out.status.success(), "{}", stderr_of(&out));
    for time in ["2000-01-01T02:00:00+02:00", "2000-01-01T00:00:00Z", "946684800000000000"] {
        let out = backwater(&["dump", d, "--time", time, "--format", "lines"]);
        assert!(out.status.success(), "{time}: {}", stderr_of(&out));
        assert_eq!(out.stdout.iter().filter(|&&b| b == b'\n').count(), 12, "{time}");
    }
    let out = backwater(&["config", d, "--retain-for", "90m", "--flush", "interval:1.5s", "--json"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let limits: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(limits["retain_for_secs"], 5400.0);
    let started = Instant::now();
    let out = run_bounded(&["replay", d, "--cursor", "r", "--create", "--rate", "7.5/s"], b"", Duration::from_secs(20));
    assert!(out.status.success(), "{}", stderr_of(&out));
    let seconds = started.elapsed().as_secs_f64();
    assert!((1.3..2.5).contains(&seconds), "12 records at 7.5/s took {seconds:.2} s");
}

/// Runs backwater as an unprivileged user when the tests run as root (as CI
/// does), so file permissions apply.
fn unprivileged(args: &[&str]) -> Output {
    if rustix::process::geteuid().is_root() {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", bin()])
            .args(args)
            .output()
            .expect("setpriv")
    } else {
        backwater(args)
    }
}

#[test]
fn permissions_are_reported_as_such_and_config_shows_a_read_only_journal() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    create(&journal, &["--max-disk", "64MiB"]);
    use std::os::unix::fs::PermissionsExt;
    let chmod = |mode: u32| std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(mode)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    chmod(0o700);
    let out = unprivileged(&["info", path(&journal)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("ermission denied") && !stderr_of(&out).contains("not a backwater journal"),
        "{}",
        stderr_of(&out)
    );
    // Readable, not writable.
    let status = Command::new("chmod").args(["-R", "a+rX,a-w"]).arg(&journal).status().unwrap();
    assert!(status.success());
    let out = unprivileged(&["config", path(&journal)]);
    chmod(0o750);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("64.0 MiB"));
}

#[test]
fn negative_exponents_parse_and_rates_near_zero_and_a_zero_ack_timeout_are_refused() {
    let dir = journal_with_lines(10);
    let d = path(dir.path());
    let refused: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--ack", "--format", "json", "--exec", "cat", "--ack-timeout", "0"], "--ack-timeout"),
        (vec!["--ack", "--format", "json", "--exec", "cat", "--ack-timeout", "0s"], "--ack-timeout"),
        (vec!["--rate", "1e-300"], "--rate"),
        (vec!["--bytes-rate", "1e-9/s"], "--bytes-rate"),
        (vec!["--rate", "0.5/h"], "--rate"),
    ];
    for (flags, flag) in refused {
        let mut args = vec!["replay", d, "--cursor", "x", "--create"];
        args.extend(flags);
        let out = run_bounded(&args, b"", Duration::from_secs(10));
        let message = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {message}");
        assert!(message.contains("error: invalid value") && message.contains(flag), "{args:?}: {message}");
        assert!(!message.contains("unknown unit"), "{args:?}: a number in scientific notation is a number: {message}");
        if flag != "--ack-timeout" {
            assert!(message.contains("1/h"), "{args:?}: the message names the minimum: {message}");
        }
    }
    assert_eq!(cursor_position(dir.path(), "x"), None, "nothing ran");

    // A negative exponent is an ordinary number: 1e-3MiB/s is 1048.576 bytes a second.
    let out = run_bounded(
        &["replay", d, "--cursor", "y", "--create", "--bytes-rate", "1e-3MiB/s", "--rate", "2.5e+3/s"],
        b"",
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(out.stdout, lines(10));
    let out = backwater_with_input(&["append", d, "--timeout", "5e-1s"], b"z\n");
    assert!(out.status.success(), "{}", stderr_of(&out));
    let help = String::from_utf8_lossy(&backwater(&["replay", "--help"]).stdout).into_owned();
    assert!(help.contains("at least 1/h"), "--help documents the smallest rate: {help}");
}

#[test]
fn create_accepts_what_a_failed_create_leaves_behind() {
    // What the library itself accepts in a directory without journal.meta: its
    // lock file and unfinished temporary files.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("journal.lock"), b"").unwrap();
    std::fs::write(dir.path().join(".tmp-a1b2c3"), b"half a metadata file").unwrap();
    create(dir.path(), &[]);
    assert_eq!(info_json(dir.path())["appended"], 0);
    // Anything else is still refused, and so is an existing journal.
    let out = backwater(&["create", path(dir.path())]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("already a journal"), "{}", stderr_of(&out));
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("journal.lock"), b"").unwrap();
    std::fs::write(other.path().join("notes.txt"), b"mine").unwrap();
    let out = backwater(&["create", path(other.path())]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("not empty"), "{}", stderr_of(&out));
}

#[test]
fn create_on_a_full_disk_removes_what_it_made_and_succeeds_once_there_is_room() {
    let Some(tmpfs) = common::Tmpfs::mount(2) else { return };
    let filler = tmpfs.path().join("filler");
    tmpfs.fill(&filler);
    let journal = tmpfs.path().join("j2");
    let args = ["create", path(&journal), "--segment-size", "64KiB", "--min-free", "0"];
    let out = backwater(&args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("No space left on device"), "{}", stderr_of(&out));
    assert!(!journal.exists(), "a failed create leaves nothing behind: {:?}", std::fs::read_dir(&journal).ok());
    std::fs::remove_file(&filler).unwrap();
    let out = backwater(&args);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(backwater_with_input(&["append", path(&journal)], b"after all\n").status.success());
    assert_eq!(info_json(&journal)["appended"], 1);

    // Into a directory that already existed: the directory stays, and create
    // accepts what is left in it.
    let existing = tmpfs.path().join("j3");
    std::fs::create_dir(&existing).unwrap();
    tmpfs.fill(&filler);
    let args = ["create", path(&existing), "--segment-size", "64KiB", "--min-free", "0"];
    let out = backwater(&args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    std::fs::remove_file(&filler).unwrap();
    let out = backwater(&args);
    assert!(out.status.success(), "{}", stderr_of(&out));
}

/// The positions of every record, oldest first.
fn positions(dir: &Path) -> Vec<u64> {
    let out = backwater(&["dump", path(dir), "--format", "json"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    out.stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice::<serde_json::Value>(l).unwrap()["position"].as_u64().unwrap())
        .collect()
}

#[test]
fn replay_without_ack_fails_when_the_reader_stops_early_and_counts_only_what_it_committed() {
    // 100 short records go into the pipe in one write, before the child reads.
    let dir = journal_with_lines(100);
    let records = positions(dir.path());
    let all = lines(100);
    let all: Vec<&[u8]> = all.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let check = |out: &Output, cursor: &str| {
        let message = stderr_of(out);
        assert_eq!(out.status.code(), Some(1), "the reader stopped before the end: {message}");
        let position = cursor_position(dir.path(), cursor).unwrap();
        assert_eq!(position, records[1], "the one record taken is committed: {message}");
        assert!(
            message.contains(&format!("cursor '{cursor}' committed at position {position} (1 of 100 handed over"))
                && message.contains("rerun"),
            "{message}"
        );
        assert!(!message.contains("replayed 100"), "{message}");
        let rerun = run_bounded(&["replay", path(dir.path()), "--cursor", cursor], b"", Duration::from_secs(20));
        assert!(rerun.status.success(), "{}", stderr_of(&rerun));
        let again: Vec<&[u8]> = rerun.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(again[..], all[1..], "a rerun resumes after the record taken");
        assert!(stderr_of(&rerun).contains("replayed 99 records"), "{}", stderr_of(&rerun));
    };

    // A child that takes one line (sh's read takes a pipe byte by byte) and exits 0.
    let args = ["replay", path(dir.path()), "--cursor", "child", "--create", "--exec", "read -r line"];
    check(&run_bounded(&args, b"", Duration::from_secs(20)), "child");

    // A reader on stdout that takes one line once all 100 are in the pipe, then goes away.
    let mut replay = KillOnDrop(
        Command::new(bin())
            .args(["replay", path(dir.path()), "--cursor", "stdout", "--create"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdout = replay.0.stdout.take().unwrap();
    let total = lines(100).len() as u64;
    wait_for("every record in the pipe", Duration::from_secs(20), || {
        rustix::io::ioctl_fionread(&stdout).is_ok_and(|unread| unread == total)
    });
    let mut first = vec![0; all[0].len() + 1];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let mut stderr = Vec::new();
    std::io::Read::read_to_end(&mut replay.0.stderr.take().unwrap(), &mut stderr).unwrap();
    let status = replay.0.wait().unwrap();
    check(&Output { status, stdout: Vec::new(), stderr }, "stdout");
}

#[test]
fn replay_ack_commits_an_ack_that_arrives_with_the_end_of_the_childs_output() {
    // More records than a pipe holds, so replay is still writing when the child goes.
    let dir = journal_with_lines(20_000);
    let records = positions(dir.path());
    let sinks = [
        "head -n 3 >/dev/null; echo 3; exit 0",
        // The ack comes after replay's writes already fail.
        "head -n 3 >/dev/null; exec 0<&-; echo 3; exit 0",
    ];
    // Both cursors first: a cursor that has read everything must not let the
    // first segment go before the other one exists.
    for cursor in ["c0", "c1"] {
        assert!(backwater(&["cursor", path(dir.path()), "reset", cursor, "start"]).status.success());
    }
    for (i, sink) in sinks.into_iter().enumerate() {
        let cursor = format!("c{i}");
        let args = ["replay", path(dir.path()), "--cursor", &cursor, "--ack", "--format", "json", "--exec", sink];
        let out = run_bounded(&args, b"", Duration::from_secs(30));
        let message = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{sink}: the child stopped before the end: {message}");
        assert_eq!(cursor_position(dir.path(), &cursor), Some(records[3]), "{sink}: the 3 acked records: {message}");
        assert!(
            message.contains(&format!("committed at position {} (3 acknowledged of", records[3])),
            "{sink}: {message}"
        );
        let rerun = run_bounded(&["replay", path(dir.path()), "--cursor", &cursor], b"", Duration::from_secs(30));
        assert!(rerun.status.success(), "{}", stderr_of(&rerun));
        assert_eq!(rerun.stdout.iter().filter(|&&b| b == b'\n').count(), 19_997, "{sink}");
    }
}

/// The reset that the refusal of a cursor that does not point at a record
/// advises moves it (it replaces the cursor file): it opened the cursor
/// first, and failed the same way. (Found by review.)
#[test]
fn the_advised_reset_moves_a_cursor_that_does_not_point_at_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let config = backwater::Config::default().segment_size(64 << 10).min_free_disk(0);
    {
        let journal = backwater::Journal::open(dir.path(), config.clone()).unwrap();
        for n in 0..10u8 {
            journal.publisher().append(&[n]).unwrap();
        }
        drop(journal.consumer("lost").unwrap());
    }
    common::write_at(&dir.path().join("cursors/lost.cursor"), 16, &72u64.to_le_bytes());
    let refused = backwater::Journal::open(dir.path(), config.clone()).unwrap().consumer("lost").err().unwrap();
    assert!(refused.to_string().contains("backwater cursor DIR reset lost start"), "{refused}");
    let out = backwater(&["cursor", path(dir.path()), "reset", "lost", "start"]);
    assert!(out.status.success(), "the advised reset failed: {}", stderr_of(&out));
    let journal = backwater::Journal::open(dir.path(), config).unwrap();
    let mut moved = journal.consumer("lost").expect("the cursor opens after the reset");
    assert_eq!(moved.position(), journal.first_position());
    assert_eq!(common::drain(&mut moved).unwrap().len(), 10);
}

/// The same for a damaged cursor file (bad magic, truncated: refused as
/// not a journal's file): the reset replaces it. (Found by review.)
#[test]
fn the_reset_replaces_a_damaged_cursor_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = backwater::Config::default().segment_size(64 << 10).min_free_disk(0);
    drop(backwater::Journal::open(dir.path(), config.clone()).unwrap().consumer("damaged").unwrap());
    let file = dir.path().join("cursors/damaged.cursor");
    let damages: [(&str, &dyn Fn()); 2] = [
        ("bad magic", &|| common::write_at(&file, 0, b"XXXXXXXX")),
        ("truncated", &|| std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(10).unwrap()),
    ];
    for (damage, apply) in damages {
        apply();
        let out = backwater(&["cursor", path(dir.path()), "reset", "damaged", "start"]);
        assert!(out.status.success(), "{damage}: the reset failed: {}", stderr_of(&out));
        let journal = backwater::Journal::open(dir.path(), config.clone()).unwrap();
        assert!(journal.consumer("damaged").is_ok(), "{damage}: opens after the reset");
    }
}
