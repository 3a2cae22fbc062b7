//! `backwater` on a journal with compressed segments: `create`/`config`
//! take and show the settings, `segments` and `info` show what is
//! compressed, `dump`, `tail`, `replay` and `verify` read through compressed
//! segments (in their own processes), and `verify` names a corrupt
//! compressed file.

mod common;

use std::path::Path;

use backwater::{Config, Journal};
use common::cli::{backwater, path, stdout_of};

/// A journal of 64 KiB segments created by the CLI, `count` log lines
/// appended and the sealed segments compressed (through the library, so
/// that it is done when this returns). Returns the lines.
fn compressed_journal(dir: &Path, count: usize) -> Vec<Vec<u8>> {
    let out = backwater(&[
        "create",
        path(dir),
        "--segment-size",
        "64KiB",
        "--max-disk",
        "64MiB",
        "--min-free",
        "0",
        "--compression",
        "zstd:5",
        "--compress-at",
        "0.001",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let journal = Journal::open(dir, Config::default()).unwrap();
    let _keep_everything = journal.consumer("keeper").unwrap();
    let publisher = journal.publisher();
    let mut generator = common::logs::LogLines::new(11);
    let mut lines = Vec::new();
    for _ in 0..count {
        let mut line = Vec::new();
        generator.line(&mut line);
        publisher.append(&line).unwrap();
        lines.push(line);
    }
    journal.compress_sealed().unwrap();
    lines
}

#[test]
fn create_and_config_take_and_show_the_compression_settings() {
    let dir = tempfile::tempdir().unwrap();
    compressed_journal(dir.path(), 10);
    let out = backwater(&["config", path(dir.path()), "--json"]);
    let limits: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(limits["compression"], "zstd:5");
    assert_eq!(limits["compress"], 0.001);
    let out = backwater(&["config", path(dir.path()), "--compression", "none", "--compress-at", "0.6"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout_of(&out).contains("compression    none"), "{}", stdout_of(&out));
    assert!(stdout_of(&out).contains("compress 0.60"), "{}", stdout_of(&out));
    for bad in [&["--compression", "lz4"][..], &["--compression", "zstd:40"], &["--compress-at", "0.9"]] {
        let mut args = vec!["config", path(dir.path())];
        args.extend_from_slice(bad);
        let out = backwater(&args);
        assert_eq!(out.status.code(), Some(2), "{bad:?} accepted: {}", stdout_of(&out));
    }
}

#[test]
fn segments_info_dump_tail_and_verify_read_through_compressed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let lines = compressed_journal(dir.path(), 3000);
    let dir = path(dir.path());

    let out = backwater(&["segments", dir, "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let compressed: Vec<&serde_json::Value> = rows.iter().filter(|row| row["storage"] == "compressed").collect();
    assert!(compressed.len() >= 3, "{rows:?}");
    assert!(compressed.iter().all(|row| row["ratio"].as_f64().unwrap() > 3.0), "{rows:?}");
    assert!(compressed.iter().all(|row| row["file"].as_str().unwrap().ends_with(".zseg")));
    assert_eq!(rows.iter().map(|row| row["records"].as_u64().unwrap()).sum::<u64>(), 3000);
    let table = stdout_of(&backwater(&["segments", dir]));
    assert!(table.contains("zstd") && table.contains(".zseg") && table.contains("raw"), "{table}");

    let info: serde_json::Value = serde_json::from_slice(&backwater(&["info", dir, "--json"]).stdout).unwrap();
    let compression = &info["compression"];
    assert_eq!(compression["segments"].as_u64().unwrap(), compressed.len() as u64);
    assert!(compression["saved_bytes"].as_u64().unwrap() > 0);
    assert!(compression["ratio"].as_f64().unwrap() > 3.0);
    let text = stdout_of(&backwater(&["info", dir]));
    assert!(text.contains("compression    zstd:5"), "{text}");

    let dumped = backwater(&["dump", dir, "--format", "lines"]);
    assert!(dumped.status.success());
    let expected: Vec<u8> = lines.iter().flat_map(|line| line.iter().copied().chain([b'\n'])).collect();
    assert_eq!(dumped.stdout, expected, "dump read other bytes through compressed segments");
    let tailed = backwater(&["tail", dir, "--from", "start", "--format", "lines"]);
    assert!(tailed.status.success(), "{}", String::from_utf8_lossy(&tailed.stderr));
    assert_eq!(tailed.stdout, expected);

    let verified = backwater(&["verify", dir]);
    assert!(verified.status.success(), "{}", stdout_of(&verified));
    let clean = format!("({} compressed), 3000 records: clean", compressed.len());
    assert!(stdout_of(&verified).contains(&clean), "{}", stdout_of(&verified));

    // Last: it moves the cursor that holds everything, and retention follows.
    let replayed = backwater(&["replay", dir, "--cursor", "keeper"]);
    assert!(replayed.status.success(), "{}", String::from_utf8_lossy(&replayed.stderr));
    assert_eq!(replayed.stdout, expected);
}

#[test]
fn verify_names_a_corrupt_compressed_file_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    compressed_journal(dir.path(), 3000);
    let victim = dir.path().join(backwater::compressed::file_name(64 << 10));
    let len = std::fs::metadata(&victim).unwrap().len();
    let byte = common::read_at(&victim, len - 10, 1)[0];
    common::write_at(&victim, len - 10, &[!byte]);
    let out = backwater(&["verify", path(dir.path())]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout_of(&out));
    let text = stdout_of(&out);
    assert!(text.contains(&format!("BAD {}", victim.display())), "{text}");
    let dumped = backwater(&["dump", path(dir.path())]);
    assert!(!dumped.status.success());
    assert!(String::from_utf8_lossy(&dumped.stderr).contains(&victim.display().to_string()));
}
