//! Keys through the `backwater` binary (issue 16): `append --key-delimiter`
//! in another process, keys in `dump` and `tail`, and `replay --conflate`.

mod common;

use std::path::Path;
use std::process::Output;

use backwater::{Config, Journal};
use common::cli::{backwater_with_input, path};

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect()
}

/// A journal holding `updates` as "KEY\tVALUE" lines, appended by the binary.
fn journal_of(dir: &Path, updates: &str) {
    ok(backwater_with_input(&["create", path(dir), "--segment-size", "64KiB", "--min-free", "0"], b""));
    ok(backwater_with_input(&["append", path(dir), "--key-delimiter", "\\t"], updates.as_bytes()));
}

#[test]
fn keys_appended_by_another_process_read_back_here() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::new();
    for n in 0..5000 {
        input.push_str(&format!("key-{}\tvalue {n}\twith a tab\n", n % 37));
    }
    journal_of(dir.path(), &input);
    let journal = Journal::open(dir.path(), Config::default()).unwrap();
    let mut consumer = journal.anonymous_consumer();
    let mut seen = Vec::new();
    while consumer.poll(|r| seen.push((r.key().unwrap().to_vec(), r.payload().to_vec())), 1000).unwrap() > 0 {}
    assert_eq!(seen.len(), 5000);
    for (n, (key, payload)) in seen.iter().enumerate() {
        assert_eq!(key, format!("key-{}", n % 37).as_bytes());
        assert_eq!(payload, format!("value {n}\twith a tab").as_bytes(), "only the first delimiter splits");
    }
}

#[test]
fn dump_and_tail_show_keys() {
    let dir = tempfile::tempdir().unwrap();
    journal_of(dir.path(), "EURUSD\t1.0842\n\t(empty key)\n");
    for command in [
        &["dump", path(dir.path()), "--format", "json"][..],
        &["tail", path(dir.path()), "--from", "start", "--format", "json"],
    ] {
        let records = json_lines(&ok(backwater_with_input(command, b"")));
        assert_eq!(records.len(), 2, "{command:?}");
        assert_eq!((records[0]["key"].as_str(), records[0]["payload"].as_str()), (Some("EURUSD"), Some("1.0842")));
        assert_eq!((records[1]["key"].as_str(), records[1]["payload"].as_str()), (Some(""), Some("(empty key)")));
    }
    let text = String::from_utf8(ok(backwater_with_input(&["dump", path(dir.path())], b"")).stdout).unwrap();
    assert!(text.contains("key=EURUSD  1.0842"), "{text}");
}

#[test]
fn a_line_without_the_delimiter_stops_append_with_what_was_appended() {
    let dir = tempfile::tempdir().unwrap();
    ok(backwater_with_input(&["create", path(dir.path()), "--segment-size", "64KiB", "--min-free", "0"], b""));
    let out = backwater_with_input(&["append", path(dir.path()), "--key-delimiter", ","], b"a,1\nno delimiter\nb,2\n");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no key delimiter ','") && stderr.contains("appended 1 record before it"), "{stderr}");
    let out = backwater_with_input(&["append", path(dir.path()), "--key-delimiter", "ab"], b"");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn replay_conflate_hands_over_the_latest_per_key_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::new();
    for n in 0..1000 {
        input.push_str(&format!("k{}\t{n}\n", n % 10));
    }
    journal_of(dir.path(), &input);
    let args = ["replay", path(dir.path()), "--cursor", "db", "--create", "--format", "json", "--conflate"];
    let out = ok(backwater_with_input(&[&args[..], &["--conflate-window", "300"]].concat(), b""));
    let records = json_lines(&out);
    // Windows of 300, 300, 300, 100 records: ten keys each.
    assert_eq!(records.len(), 40);
    let last: Vec<_> =
        records[30..].iter().map(|r| (r["key"].as_str().unwrap().to_string(), r["payload"].clone())).collect();
    let expected: Vec<_> =
        (990..1000).map(|n| (format!("k{}", n % 10), serde_json::Value::from(n.to_string()))).collect();
    assert_eq!(last, expected);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("read 1000 records, handed over 40, skipped 960"), "{stderr}");
    // The cursor is past everything read: nothing is left.
    let out = ok(backwater_with_input(&args, b""));
    assert!(out.stdout.is_empty());
    let out = backwater_with_input(&["replay", path(dir.path()), "--cursor", "db", "--conflate-window", "5"], b"");
    assert_eq!(out.status.code(), Some(2), "--conflate-window needs --conflate");
}

#[test]
fn paced_replay_conflate_hands_over_what_an_unpaced_one_does() {
    // Pacing decides when, never what: a window the pacer pauses in is read
    // once, and the rest of its latest records follow after the pause.
    let mut input = String::new();
    for n in 0..3000 {
        input.push_str(&format!("k{}\t{n}\n", (n * 7919) % 37));
    }
    // Two journals of the same records (a finished cursor lets the
    // segments it read go, so one journal would not serve both replays).
    let replay = |pace: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        journal_of(dir.path(), &input);
        let args = ["replay", path(dir.path()), "--cursor", "db", "--create", "--format", "json", "--conflate"];
        let out = ok(backwater_with_input(&[&args[..], &["--conflate-window", "300"], pace].concat(), b""));
        let records: Vec<_> =
            json_lines(&out).iter().map(|r| (r["position"].clone(), r["key"].clone(), r["payload"].clone())).collect();
        let counts = String::from_utf8_lossy(&out.stderr).lines().last().map(str::to_string);
        (records, counts)
    };
    let unpaced = replay(&[]);
    // 37 keys a window, 20 records a burst: the pacer pauses in every window.
    let paced = replay(&["--rate", "2000/s"]);
    assert_eq!(paced.0.len(), 370);
    assert!(paced.0 == unpaced.0, "paced, other records were handed over");
    assert_eq!(paced.1, unpaced.1);
    assert!(paced.1.is_some_and(|line| line.contains("read 3000 records, handed over 370")));
}

#[test]
fn replay_conflate_with_ack_hands_over_no_more_than_the_window() {
    // A conflated window's latest records once all went to the child at
    // once, whatever --window said: after a crash all were sent again.
    let dir = tempfile::tempdir().unwrap();
    let input: String = (0..50).map(|n| format!("k{n}\t{n}\n")).collect();
    journal_of(dir.path(), &input);
    let received = dir.path().join("received");
    let sink = format!("cat > {}", received.display()); // never acknowledges
    let args = ["replay", path(dir.path()), "--cursor", "db", "--create", "--format", "json", "--conflate"];
    let out = backwater_with_input(
        &[&args[..], &["--ack", "--window", "3", "--ack-timeout", "1s", "--exec", &sink]].concat(),
        b"",
    );
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("acknowledged nothing for 1s"));
    let lines = std::fs::read_to_string(&received).unwrap().lines().count();
    assert_eq!(lines, 3, "the child was handed {lines} records with --window 3");
}

#[test]
fn a_conflated_replay_rerun_after_a_crash_never_hands_over_a_value_it_had_conflated_away() {
    // The cursor was committed mid-window: a rerun's windows started there,
    // so a record the crashed run had skipped for a later one of its key
    // (delivered) came out alone in a window and went over after it. A
    // sink that drops records it has seen by position then kept the old
    // value (review of --to nats:// with --conflate, finding 1).
    let dir = tempfile::tempdir().unwrap();
    let input: String = (0..30)
        .map(|n| match n {
            11 => "a\told\n".to_string(),
            15 => "a\tnew\n".to_string(),
            _ => format!("u{n}\tv{n}\n"),
        })
        .collect();
    journal_of(dir.path(), &input);
    let first_run = dir.path().join("first");
    let args = ["replay", path(dir.path()), "--cursor", "db", "--create", "--format", "json", "--conflate"];
    let window = ["--conflate-window", "10", "--ack", "--ack-timeout", "1s"];
    // Acknowledges three records, then takes the rest without a word.
    let sink =
        format!("for n in 1 2 3; do read line; echo \"$line\" >> {0}; done; echo 3; cat >> {0}", first_run.display());
    let out = backwater_with_input(&[&args[..], &window, &["--exec", &sink]].concat(), b"");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert_rerun_skips_what_was_conflated_away(&first_run, &[&args[..], &window].concat());
}

#[test]
fn a_conflated_replay_commits_each_acknowledgement_so_a_rerun_resends_none_of_them() {
    // The cursor was committed at window ends only: a crash three acks into
    // a window sent the whole window again. The mark in the cursor file
    // (how far the windows were read) keeps a rerun from mid-window safe.
    let dir = tempfile::tempdir().unwrap();
    let input: String = (0..30).map(|n| format!("u{n}\tv{n}\n")).collect();
    journal_of(dir.path(), &input);
    let args = ["replay", path(dir.path()), "--cursor", "db", "--create", "--format", "json", "--conflate"];
    let window = ["--conflate-window", "10", "--ack", "--ack-timeout", "1s"];
    let sink = "for n in 1 2 3; do read line; echo 1; done";
    let out = backwater_with_input(&[&args[..], &window, &["--exec", sink]].concat(), b"");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let second_run = dir.path().join("second");
    let sink = format!("while read line; do echo \"$line\" >> {}; echo 1; done", second_run.display());
    ok(backwater_with_input(&[&args[..], &window, &["--exec", &sink]].concat(), b""));
    let second = std::fs::read_to_string(&second_run).unwrap();
    let keys: Vec<&str> =
        second.lines().map(|line| line.split("\"key\":\"").nth(1).unwrap().split('"').next().unwrap()).collect();
    let expected: Vec<String> = (3..30).map(|n| format!("u{n}")).collect();
    assert_eq!(keys, expected, "the rerun resumes after the third acknowledged record");
}

#[test]
fn conflate_window_is_refused_with_to_like_conflate() {
    // It was accepted with --to and did nothing (review of --to with --conflate, finding 2).
    let dir = tempfile::tempdir().unwrap();
    journal_of(dir.path(), "k\tv\n");
    let to = ["--to", "nats://127.0.0.1:9", "--subject", "feed"];
    for extra in [&["--conflate"][..], &["--conflate-window", "5"]] {
        let args = [&["replay", path(dir.path()), "--cursor", "c", "--create"][..], &to, extra].concat();
        let out = backwater_with_input(&args, b"");
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"), "{extra:?}");
    }
}

#[test]
fn a_conflated_follow_rerun_after_a_crash_never_hands_over_a_value_conflated_away() {
    // A window read at the tail is cut short (here [u0]), so the crashed
    // run's next window ([u1, a=old, a=new]) started where a rerun's full
    // first window ([u0, u1, a=old]) does not end: the rerun handed over
    // old after the crashed run had handed over new (second review of the
    // whole-window commit, /work/review-conflate-commit/follow_partial.sh).
    let dir = tempfile::tempdir().unwrap();
    journal_of(dir.path(), "u0\tv0\n");
    let first_run = dir.path().join("first");
    let args = ["replay", path(dir.path()), "--cursor", "db", "--create", "--format", "json", "--conflate"];
    let window = ["--conflate-window", "3", "--ack"];
    // Takes three records without acknowledging one, then dies.
    let sink = format!(
        "n=0; while read line; do echo \"$line\" >> {}; n=$((n+1)); [ $n -ge 3 ] && exit 1; done",
        first_run.display()
    );
    let replay = std::process::Command::new(common::cli::bin())
        .args([&args[..], &window, &["--follow", "--exec", &sink]].concat())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = |path: &Path| std::fs::read_to_string(path).map(|text| text.lines().count()).unwrap_or(0);
    common::wait_for("the first record at the sink", std::time::Duration::from_secs(20), || lines(&first_run) == 1);
    ok(backwater_with_input(&["append", path(dir.path()), "--key-delimiter", "\\t"], b"u1\tv1\na\told\na\tnew\n"));
    let out = common::wait_bounded(replay, std::time::Duration::from_secs(30), rustix::process::Signal::KILL, "replay");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert_rerun_skips_what_was_conflated_away(&first_run, &[&args[..], &window].concat());
}

/// After a first run into `first_run` that handed over `a=new` and not
/// `a=old` (which it conflated away) and died, reruns `replay` (`args`)
/// with a sink that acknowledges every record: it must not hand over `old`.
fn assert_rerun_skips_what_was_conflated_away(first_run: &Path, args: &[&str]) {
    let first = std::fs::read_to_string(first_run).unwrap();
    assert!(first.contains("\"new\"") && !first.contains("\"old\""), "{first}");
    let second_run = first_run.with_file_name("second");
    let sink = format!("while read line; do echo \"$line\" >> {}; echo 1; done", second_run.display());
    ok(backwater_with_input(&[args, &["--exec", &sink]].concat(), b""));
    let second = std::fs::read_to_string(&second_run).unwrap();
    assert!(!second.contains("\"old\""), "the rerun handed over the value conflated away before:\n{second}");
    assert!(second.contains("\"new\""), "{second}");
}
