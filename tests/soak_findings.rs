//! What the soak (`tools/soak`, the ring scenario) found, minimised into
//! reproductions against the public API; each failed (rather than hung)
//! before its fix.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backwater::{Config, Journal, OfferError, WhenFull};

const SEGMENT: u64 = 64 << 10;
const CHILD_DIR: &str = "BACKWATER_FINDING_DIR";

fn ring(dir: &Path) -> Journal {
    let config = Config::default()
        .segment_size(SEGMENT)
        .max_disk_bytes(8 * SEGMENT)
        .min_free_disk(0)
        .when_full(WhenFull::DropOldest);
    Journal::open(dir, config).unwrap()
}

/// A process with a read-write handle that is stopped (SIGSTOP, Ctrl-Z, a
/// debugger, the cgroup freezer) while its housekeeper is inside a retention
/// pass keeps the journal lock, a `flock` the kernel releases only when the
/// process dies. Every rotation and every `DropOldest` drop takes that lock,
/// so every publisher of the journal, in every process, waits for as long
/// as the process stays stopped: `offer`, documented never to block, blocks.
///
/// The child here is a consumer with a durable cursor that stops itself at
/// the first durability barrier its housekeeper issues (the directory fsync
/// of a retention pass, under the journal lock), to make the timing
/// deterministic; the soak hit the same window by stopping reader
/// processes at random (the tail stood still for the whole of a 3 s stop).
#[test]
fn offer_never_blocks_on_a_stopped_process() {
    let dir = tempfile::tempdir().unwrap();
    let journal = ring(dir.path());
    journal.consumer("c").unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "consume_and_stop_inside_retention", "--nocapture", "--include-ignored"])
        .env(CHILD_DIR, dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let offered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut publisher = journal.exclusive_publisher().unwrap();
    let appender = {
        let (offered, stop) = (Arc::clone(&offered), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut longest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let started = std::time::Instant::now();
                match publisher.offer(&[0x5A; 1000]) {
                    Ok(_) | Err(OfferError::BackPressured { .. }) => offered.fetch_add(1, Ordering::Relaxed),
                    Err(other) => panic!("offer: {other}"),
                };
                longest = longest.max(started.elapsed());
            }
            longest
        })
    };
    let stopped = wait_until_stopped(child.id(), Duration::from_secs(30));
    let before = offered.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(2));
    let during = offered.load(Ordering::Relaxed) - before;
    child.kill().unwrap();
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let longest = appender.join().unwrap();
    assert!(stopped, "the child never stopped inside a retention pass");
    // Blocked, an offer would wait out the whole stop (the soak saw 3 s);
    // a loaded machine only slows each one down (hundreds per second at
    // a load of 10 on two cores, against millions when it is quiet).
    assert!(during > 0, "no offer returned in the 2 s the consumer process was stopped");
    assert!(longest < Duration::from_secs(1), "an offer took {longest:?} while the consumer process was stopped");
}

/// The child of the test above.
#[test]
#[ignore = "the child of offer_never_blocks_on_a_stopped_process"]
fn consume_and_stop_inside_retention() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else { return };
    let journal = Journal::open(&dir, Config::default()).unwrap();
    backwater::sync_trace::set_hook(Some(Box::new(|_| {
        if std::thread::current().name() == Some("backwater-housekeeper") {
            let me = rustix::process::getpid();
            rustix::process::kill_process(me, rustix::process::Signal::STOP).unwrap();
        }
    })));
    let mut consumer = journal.consumer("c").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let _ = consumer.poll_wait(|_| {}, 4096, Duration::from_millis(10));
        consumer.commit().unwrap();
    }
}

fn wait_until_stopped(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T')) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}
