//! The async API: `Consumer::poll_async`, `Publisher::append_async` and
//! `ExclusivePublisher::append_async` on one thread (tokio's current-thread
//! runtime, `futures`' executor): a waiting task never blocks the thread, the
//! background waiter wakes it, and a dropped future has no effect.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use backwater::{Config, Journal, OfferError, Seek, WhenFull};

const SEGMENT: u64 = 64 << 10;

/// Long enough that only a lost wake-up reaches it.
const PATIENCE: Duration = Duration::from_secs(20);

fn journal(dir: &std::path::Path) -> Journal {
    Journal::open(dir, Config::default().segment_size(SEGMENT).min_free_disk(0)).unwrap()
}

/// A journal with a small budget under `Block`, filled until back-pressured,
/// with a durable consumer `stalled` at the start holding everything back.
fn back_pressured(dir: &std::path::Path) -> Journal {
    let config =
        Config::default().segment_size(SEGMENT).max_disk_bytes(8 * SEGMENT).min_free_disk(0).when_full(WhenFull::Block);
    let journal = Journal::open(dir, config).unwrap();
    journal.consumer("stalled").unwrap();
    let publisher = journal.publisher();
    loop {
        match publisher.offer(&[1u8; 1000]) {
            Ok(_) => {}
            Err(OfferError::BackPressured { .. }) => return journal,
            Err(other) => panic!("unexpected refusal {other}"),
        }
    }
}

/// Reads everything `stalled` holds back, commits, and runs retention: the
/// journal falls below its resume watermark.
fn free_room(journal: &Journal) {
    let mut consumer = journal.consumer("stalled").unwrap();
    consumer.seek(Seek::End).unwrap();
    consumer.commit().unwrap();
    journal.apply_retention().unwrap();
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap()
}

/// Polls `future` once with a waker that does nothing.
fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn poll_async_completes_when_another_task_on_the_same_thread_appends() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(dir.path());
    let publisher = journal.publisher();
    let mut consumer = journal.consumer("reader").unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&current_thread(), async {
        let reader = tokio::task::spawn_local(async move {
            let mut seen = Vec::new();
            let read = consumer.poll_async(|record| seen.push(record.payload().to_vec()), 16).await.unwrap();
            (read, seen)
        });
        // The reader runs first, finds nothing and waits: were it blocking
        // the thread, this task would never run again.
        tokio::task::yield_now().await;
        assert!(!reader.is_finished());
        let appender = tokio::task::spawn_local(async move { publisher.append_async(b"woken").await.unwrap() });
        appender.await.unwrap();
        let (read, seen) = tokio::time::timeout(PATIENCE, reader).await.expect("the reader was never woken").unwrap();
        assert_eq!(read, 1);
        assert_eq!(seen, [b"woken".to_vec()]);
    });
}

#[test]
fn append_async_under_back_pressure_lets_other_tasks_run_and_completes_once_room_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let journal = back_pressured(dir.path());
    let appended_before = journal.stats().appended;
    let publisher = journal.publisher();
    let local = tokio::task::LocalSet::new();
    local.block_on(&current_thread(), async {
        let appender = tokio::task::spawn_local(async move { publisher.append_async(b"after the wait").await });
        let mut others = 0;
        for _ in 0..100 {
            tokio::task::yield_now().await; // other tasks keep running
            others += 1;
        }
        assert_eq!(others, 100);
        assert!(!appender.is_finished(), "appended while back-pressured");
        assert_eq!(journal.stats().appended, appended_before);

        free_room(&journal);
        let position = tokio::time::timeout(PATIENCE, appender).await.expect("never woken").unwrap().unwrap();
        assert_eq!(journal.stats().appended, appended_before + 1);
        let mut consumer = journal.anonymous_consumer();
        consumer.seek(Seek::Position(position)).unwrap();
        let mut seen = Vec::new();
        consumer.poll(|record| seen.push(record.payload().to_vec()), 16).unwrap();
        assert_eq!(seen, [b"after the wait".to_vec()]);
    });
}

#[test]
fn exclusive_append_async_waits_on_the_futures_executor() {
    let dir = tempfile::tempdir().unwrap();
    let journal = back_pressured(dir.path());
    let appended_before = journal.stats().appended;
    let mut publisher = journal.exclusive_publisher().unwrap();
    let mut appending = pin!(publisher.append_async(b"exclusive"));
    assert!(poll_once(appending.as_mut()).is_pending(), "appended while back-pressured");
    assert_eq!(journal.stats().appended, appended_before);
    free_room(&journal);
    let position = futures_executor::block_on(appending).unwrap();
    assert_eq!(journal.stats().appended, appended_before + 1);
    assert!(position > 0);
}

#[test]
fn a_dropped_poll_async_delivers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(dir.path());
    let mut consumer = journal.consumer("reader").unwrap();
    let start = consumer.position();
    let mut seen = Vec::new();
    {
        let waiting = pin!(consumer.poll_async(|record| seen.push(record.position()), 16));
        assert!(poll_once(waiting).is_pending());
    } // dropped while waiting
    assert!(seen.is_empty());
    let position = journal.publisher().append(b"later").unwrap();
    assert_eq!(consumer.position(), start);
    let read = futures_executor::block_on(consumer.poll_async(|record| seen.push(record.position()), 16)).unwrap();
    assert_eq!((read, seen), (1, vec![position]));
}

#[test]
fn a_dropped_append_async_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let journal = back_pressured(dir.path());
    let tail = journal.tail_position();
    let appended = journal.stats().appended;
    let publisher = journal.publisher();
    {
        let waiting = pin!(publisher.append_async(b"dropped"));
        assert!(poll_once(waiting).is_pending());
    }
    free_room(&journal);
    assert_eq!(journal.stats().appended, appended);
    assert_eq!(journal.tail_position(), tail);
    // And the journal takes records again.
    futures_executor::block_on(publisher.append_async(b"kept")).unwrap();
    let mut consumer = journal.anonymous_consumer();
    consumer.seek(Seek::Position(tail)).unwrap();
    let mut seen = Vec::new();
    consumer.poll(|record| seen.push(record.payload().to_vec()), 16).unwrap();
    assert_eq!(seen, [b"kept".to_vec()]);
}

#[test]
fn many_waiting_readers_are_all_woken_by_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(dir.path());
    let local = tokio::task::LocalSet::new();
    local.block_on(&current_thread(), async {
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let mut consumer = journal.anonymous_consumer();
                tokio::task::spawn_local(async move { consumer.poll_async(|_| {}, 16).await.unwrap() })
            })
            .collect();
        tokio::task::yield_now().await;
        journal.publisher().append(b"for all").unwrap();
        for reader in readers {
            assert_eq!(tokio::time::timeout(PATIENCE, reader).await.expect("never woken").unwrap(), 1);
        }
    });
}

/// The child side of the cross-process tests: waits (with `poll_wait`, or
/// `poll_async` on `futures`' executor) for one record of the journal in
/// `BACKWATER_FOLLOW_DIR`, and prints how long after its send time it got it.
fn follow_one_as_child(dir: &str, mode: &str) {
    let journal = Journal::open(dir, Config::default()).unwrap();
    let mut consumer = journal.anonymous_consumer();
    let mut latency = 0;
    let mut take = |record: backwater::Record<'_>| {
        let sent = u64::from_le_bytes(record.payload()[..8].try_into().unwrap());
        latency = monotonic_ns() - sent;
    };
    let read = match mode {
        "poll_wait" => consumer.poll_wait(&mut take, 1, PATIENCE).unwrap(),
        _ => futures_executor::block_on(consumer.poll_async(&mut take, 1)).unwrap(),
    };
    println!("read {read} latency_ns {latency}");
}

fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// `journal.meta`'s sleepers count (offset 324, docs/FORMAT.md).
fn sleepers(dir: &std::path::Path) -> u32 {
    let meta = std::fs::read(dir.join("journal.meta")).unwrap();
    u32::from_le_bytes(meta[324..328].try_into().unwrap())
}

/// A follower in another process, asleep in the kernel, is woken by a
/// commit in this one: well before its sleep's safety cap (100 ms) would
/// have let it look again.
fn woken_across_processes(mode: &str, test_name: &str) {
    if let Ok(dir) = std::env::var("BACKWATER_FOLLOW_DIR") {
        return follow_one_as_child(&dir, mode);
    }
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(dir.path());
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test_name, "--nocapture", "--test-threads", "1"])
        .env("BACKWATER_FOLLOW_DIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the child counts as a sleeper it has found nothing and sleeps.
    let asleep_by = std::time::Instant::now() + PATIENCE;
    while sleepers(dir.path()) == 0 {
        assert!(std::time::Instant::now() < asleep_by, "the follower never went to sleep");
        std::thread::yield_now();
    }
    journal.publisher().append(&monotonic_ns().to_le_bytes()).unwrap();
    assert_woken_at_once(child);
}

#[test]
fn a_poll_wait_follower_in_another_process_is_woken_by_a_commit() {
    woken_across_processes("poll_wait", "a_poll_wait_follower_in_another_process_is_woken_by_a_commit");
}

#[test]
fn a_poll_async_follower_in_another_process_is_woken_by_a_commit() {
    woken_across_processes("poll_async", "a_poll_async_follower_in_another_process_is_woken_by_a_commit");
}

/// Starts `test_name` as a child follower on `dir` and SIGKILLs it
/// once it counts as a sleeper: it dies asleep, its count left in the
/// metadata.
fn kill_a_follower_asleep(dir: &std::path::Path, test_name: &str) {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test_name, "--nocapture", "--test-threads", "1"])
        .env("BACKWATER_FOLLOW_DIR", dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let asleep_by = std::time::Instant::now() + PATIENCE;
    while sleepers(dir) == 0 {
        assert!(std::time::Instant::now() < asleep_by, "the follower never went to sleep");
        std::thread::yield_now();
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A process killed asleep must not stay counted: every commit would make a
/// wake syscall for ever after. A live handle's housekeeper takes it back.
#[test]
fn a_follower_killed_asleep_is_forgotten_by_a_live_handle() {
    const NAME: &str = "a_follower_killed_asleep_is_forgotten_by_a_live_handle";
    if let Ok(dir) = std::env::var("BACKWATER_FOLLOW_DIR") {
        return follow_one_as_child(&dir, "poll_async");
    }
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(dir.path());
    kill_a_follower_asleep(dir.path(), NAME);
    let forgotten_by = std::time::Instant::now() + PATIENCE;
    while sleepers(dir.path()) != 0 {
        assert!(std::time::Instant::now() < forgotten_by, "the dead follower is still counted as a sleeper");
        std::thread::yield_now();
    }
    // And the count still works for the living.
    let mut consumer = journal.anonymous_consumer();
    journal.publisher().append(b"after").unwrap();
    assert_eq!(consumer.poll_wait(|_| {}, 1, PATIENCE).unwrap(), 1);
}

/// With no writer left alive, the next open's recovery clears the count.
#[test]
fn a_follower_killed_asleep_is_forgotten_when_the_journal_is_reopened() {
    const NAME: &str = "a_follower_killed_asleep_is_forgotten_when_the_journal_is_reopened";
    if let Ok(dir) = std::env::var("BACKWATER_FOLLOW_DIR") {
        return follow_one_as_child(&dir, "poll_wait");
    }
    let dir = tempfile::tempdir().unwrap();
    drop(journal(dir.path()));
    kill_a_follower_asleep(dir.path(), NAME);
    assert_eq!(sleepers(dir.path()), 1, "the follower died asleep");
    let _journal = journal(dir.path());
    assert_eq!(sleepers(dir.path()), 0);
}

/// Slot `slot`'s sleepers count in `journal.meta`'s process table (offset
/// 512 + 16 × slot + 4, docs/FORMAT.md).
fn slot_sleepers(dir: &std::path::Path, slot: usize) -> u32 {
    let meta = std::fs::read(dir.join("journal.meta")).unwrap();
    let at = 512 + 16 * slot + 4;
    u32::from_le_bytes(meta[at..at + 4].try_into().unwrap())
}

/// The slot, other than `except`, that counts a sleeper, once one does.
fn slot_asleep(dir: &std::path::Path, except: Option<usize>) -> usize {
    let asleep_by = std::time::Instant::now() + PATIENCE;
    loop {
        if let Some(slot) = (0..64).find(|&slot| Some(slot) != except && slot_sleepers(dir, slot) != 0) {
            return slot;
        }
        assert!(std::time::Instant::now() < asleep_by, "the follower never went to sleep");
        std::thread::yield_now();
    }
}

/// A live follower whose process this one cannot see (another PID
/// namespace records the pid it sees itself as; `/proc` mounted hidepid;
/// no descriptor left to read it) must stay counted, or publishers skip
/// the wake call and it sleeps out its safety cap on every record. Its slot
/// here records a pid that exists nowhere. A second follower killed asleep
/// in a later slot shows that the housekeeper has been over the table (a
/// pass takes the slots in order).
#[test]
fn a_live_follower_this_process_cannot_see_is_not_forgotten() {
    const NAME: &str = "a_live_follower_this_process_cannot_see_is_not_forgotten";
    if let Ok(dir) = std::env::var("BACKWATER_FOLLOW_DIR") {
        return follow_one_as_child(&dir, "poll_wait");
    }
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(dir.path());
    let spawn = |stdout| {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture", "--test-threads", "1"])
            .env("BACKWATER_FOLLOW_DIR", dir.path())
            .stdout(stdout)
            .spawn()
            .unwrap()
    };
    let live = spawn(std::process::Stdio::piped());
    let live_slot = slot_asleep(dir.path(), None);
    let mut dead = spawn(std::process::Stdio::null());
    let dead_slot = slot_asleep(dir.path(), Some(live_slot));
    assert!(live_slot < dead_slot, "slots {live_slot} and {dead_slot}");
    {
        use std::os::unix::fs::FileExt;
        let meta = std::fs::OpenOptions::new().write(true).open(dir.path().join("journal.meta")).unwrap();
        meta.write_at(&0x7FFF_FFF0u32.to_le_bytes(), (512 + 16 * live_slot) as u64).unwrap();
    }
    // Killed after the lie: the pass that takes it back has seen the lie.
    dead.kill().unwrap();
    dead.wait().unwrap();
    let reaped_by = std::time::Instant::now() + PATIENCE;
    while slot_sleepers(dir.path(), dead_slot) != 0 {
        assert!(std::time::Instant::now() < reaped_by, "the dead follower is still counted as a sleeper");
        std::thread::yield_now();
    }
    // The live follower still counts (it leaves the count only for an
    // instant between two sleeps, at most every 100 ms), and never wrapped.
    let counted_by = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let (shared, own) = (sleepers(dir.path()), slot_sleepers(dir.path(), live_slot));
        assert!(shared <= 1 && own <= 1, "counts wrapped: shared {shared:#x}, slot {own:#x}");
        if (shared, own) == (1, 1) {
            break;
        }
        assert!(std::time::Instant::now() < counted_by, "the live follower was forgotten: shared {shared}, slot {own}");
        std::thread::yield_now();
    }
    // And a commit wakes it at once.
    journal.publisher().append(&monotonic_ns().to_le_bytes()).unwrap();
    assert_woken_at_once(live);
}

/// The child follower (`follow_one_as_child`) read the one record, and
/// within 50 ms of its send time: the commit woke it (its sleep's safety cap
/// is 100 ms).
fn assert_woken_at_once(child: std::process::Child) {
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    // The harness prints the test's name first, on the same line.
    let at = stdout.find("read ").unwrap_or_else(|| panic!("no report in {stdout}"));
    let fields: Vec<&str> = stdout[at..].split_whitespace().take(4).collect();
    assert_eq!(fields[1], "1", "{stdout}");
    let latency: u64 = fields[3].parse().unwrap();
    assert!(latency < 50_000_000, "woken after {latency} ns: the commit did not wake it");
}
