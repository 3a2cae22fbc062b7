//! Replays every fuzz seed and every input that ever crashed a fuzz target
//! (`fuzz/seeds/<target>/`, `fuzz/regressions/<target>/`) through the same
//! target bodies the fuzzers run (`fuzz/targets.rs`).

#[path = "../fuzz/targets.rs"]
mod targets;

fn replay(target: &str, run: fn(&[u8])) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs = 0;
    for kind in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(kind).join(target)) else { continue };
        for entry in entries.flatten() {
            let data = std::fs::read(entry.path()).expect("read fuzz input");
            run(&data);
            inputs += 1;
        }
    }
    assert!(inputs > 0, "no seed inputs for {target}");
}

#[test]
fn frame_decode() {
    replay("frame_decode", targets::frame_decode);
}

#[test]
fn keyed_frame() {
    replay("keyed_frame", targets::keyed_frame);
}

#[test]
fn segment_scan() {
    replay("segment_scan", targets::segment_scan);
}

#[test]
fn meta_and_cursor() {
    replay("meta_and_cursor", targets::meta_and_cursor);
}

#[test]
fn open_dir() {
    replay("open_dir", targets::open_dir);
}
