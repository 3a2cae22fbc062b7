//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use backwater::{Consumer, Record};

/// Every record the consumer can read right now: `(position, payload)`.
pub fn drain(consumer: &mut Consumer) -> backwater::Result<Vec<(u64, Vec<u8>)>> {
    let mut out = Vec::new();
    loop {
        let read = consumer.poll(|r: Record<'_>| out.push((r.position(), r.payload().to_vec())), 4096)?;
        if read == 0 {
            return Ok(out);
        }
    }
}

/// For the model tests: what a consumer read but did not commit is
/// delivered again after it reopens, first. Moves `uncommitted` back to the
/// front of `unread`, in order.
pub fn redeliver<T>(uncommitted: &mut Vec<T>, unread: &mut std::collections::VecDeque<T>) {
    for record in uncommitted.drain(..).rev() {
        unread.push_front(record);
    }
}

/// The path of the segment file holding `position`.
pub fn segment_path(dir: &Path, segment_size: u64, position: u64) -> PathBuf {
    dir.join(backwater::segment::file_name(position - position % segment_size))
}

/// Overwrites bytes of a file in place.
pub fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).expect("open for patching");
    file.write_all_at(bytes, offset).expect("patch");
}

pub fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).expect("open for reading");
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, offset).expect("read");
    buf
}

/// The `backwater` binary, run as a user would.
pub mod cli;

/// Realistic log lines (`tools/logs.rs`), and its SplitMix64 generator.
#[path = "../../tools/logs.rs"]
pub mod logs;

/// A deterministic pseudo-random generator (SplitMix64), so tests need no seed crate.
pub use logs::LogRng as Rng;

/// A payload of `len` bytes that encodes `seed`, checkable with `check_payload`.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed);
    (0..len).map(|_| rng.next() as u8).collect()
}

/// A small tmpfs mounted on a temporary directory, unmounted on drop. Needs
/// root; `mount` returns `None` (and says why) where it cannot be had.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size_mib: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("SKIPPED: mounting a {size_mib} MiB tmpfs needs root (CI runs as root)");
            return None;
        }
        Some(Tmpfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes zeros into `path` until the filesystem is full.
    pub fn fill(&self, path: &Path) {
        use std::io::Write;
        let mut file = std::fs::File::create(path).expect("create filler");
        let block = vec![0u8; 64 << 10];
        while file.write_all(&block).is_ok() {}
        let _ = file.flush();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// `target/<profile>/examples/<name>`, built by `cargo test` with the tests.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(|deps| deps.parent()).expect("target dir").join("examples").join(name)
}

/// Runs `tools/<tool>` with `env` (and the binaries it needs: BACKWATER,
/// PG_SINK, NATS_EDGE); `None` when it skipped (exit 77, its message printed).
/// Fails the test if it runs longer than `limit` (it is terminated first).
pub fn run_tool(
    tool: &str,
    env: &[(&str, &str)],
    limit: std::time::Duration,
) -> Option<(std::process::Output, String)> {
    let script = format!("{}/tools/{tool}", env!("CARGO_MANIFEST_DIR"));
    let mut command = std::process::Command::new("bash");
    command.arg(script).env("BACKWATER", cli::bin()).envs(env.iter().copied());
    for (var, name) in [("PG_SINK", "pg_sink"), ("NATS_EDGE", "nats_edge")] {
        if example(name).exists() {
            command.env(var, example(name));
        }
    }
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the tool");
    let out = wait_bounded(child, limit, rustix::process::Signal::TERM, &format!("tools/{tool}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.code() == Some(77) {
        eprintln!("{}", stdout.trim());
        return None;
    }
    Some((out, stdout))
}

/// Waits for `child` to end and returns what it wrote; fails the test if it
/// is still running after `limit` (after sending it `signal`), naming it as
/// `what`, so that a hang cannot wedge the suite.
pub fn wait_bounded(
    child: std::process::Child,
    limit: std::time::Duration,
    signal: rustix::process::Signal,
    what: &str,
) -> std::process::Output {
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(limit) {
        Ok(out) => out.unwrap_or_else(|e| panic!("wait for {what}: {e}")),
        Err(_) => {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, signal);
            }
            // What it wrote before the signal, if it ends on it: where it hung.
            let written = finished.recv_timeout(std::time::Duration::from_secs(10)).ok().and_then(|out| out.ok());
            let stdout = written.map(|out| String::from_utf8_lossy(&out.stdout).into_owned()).unwrap_or_default();
            panic!("{what} still running after {limit:?}: it hangs; its output until then:\n{stdout}");
        }
    }
}

/// Waits up to `limit` for `condition` (a state another process reaches),
/// checking every few milliseconds; fails the test, naming `what`, if it
/// never holds.
pub fn wait_for(what: &str, limit: std::time::Duration, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "gave up waiting for {what} after {limit:?}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
