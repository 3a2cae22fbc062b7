//! The `backwater` binary, run as a user would, for the tests of the
//! command line.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// How long [`backwater_with_input`] lets a command run.
pub const PATIENCE: Duration = Duration::from_secs(300);

/// The `backwater` binary. `option_env!`: it exists only with the default
/// feature `cli`, and the tests that do not run it still compile without it.
pub fn bin() -> &'static str {
    let Some(bin) = option_env!("CARGO_BIN_EXE_backwater") else {
        panic!("these tests need the backwater binary (the default feature cli)");
    };
    bin
}

/// Runs backwater to the end, with nothing on stdin.
pub fn backwater(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run backwater")
}

/// Runs backwater with `input` on stdin, for at most [`PATIENCE`].
pub fn backwater_with_input(args: &[&str], input: &[u8]) -> Output {
    run_bounded(args, input, PATIENCE)
}

/// Runs backwater with `input` on stdin; fails the test if it is still
/// running after `limit` (it is killed first, so a hang cannot wedge the suite).
pub fn run_bounded(args: &[&str], input: &[u8], limit: Duration) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn backwater");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    super::wait_bounded(child, limit, rustix::process::Signal::KILL, &format!("backwater {args:?}"))
}

/// A directory's path as an argument.
pub fn path(dir: &Path) -> &str {
    dir.to_str().expect("utf-8 temp path")
}

pub fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
