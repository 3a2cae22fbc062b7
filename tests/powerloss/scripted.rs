//! The harness of the minimal reproductions: a journal under the model, a
//! short scripted workload, and one deterministic crash image of it, taken
//! now or at a chosen barrier.

use std::path::Path;
use std::time::Duration;

use backwater::{Claim, Config, ExclusivePublisher, Flush, Journal};

use crate::SEGMENT;
use crate::check::{self, Appended, Problem};
use crate::common::{self, Rng};
use crate::media::{self, Choice, Script};
use crate::model::{Capture, CommittedDuringFlush, CrashImage, Loss, Registered, tempdir};

pub struct Scripted {
    model: Registered,
    dir: tempfile::TempDir,
    log: Vec<Appended>,
}

impl Scripted {
    pub fn new() -> Scripted {
        let dir = tempdir();
        let model = Registered::new(dir.path(), Rng(0), 0, Loss::Power);
        Scripted { model, dir, log: Vec::new() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The next record's seed and payload of `len` bytes.
    pub fn next_payload(&self, len: usize) -> (u64, Vec<u8>) {
        let seed = self.log.len() as u64 + 1;
        (seed, common::payload(seed, len))
    }

    /// Logs the record `next_payload` gave, appended at `position`.
    pub fn logged(&mut self, position: u64, seed: u64, len: usize) -> u64 {
        self.log.push(Appended { position, seed, len, via: "append" });
        position
    }

    /// Logs a record committed at `position` that no flush promised (it is
    /// kept in position order, so it may go before records logged earlier;
    /// `promise_all` never promises it).
    pub fn logged_unpromised(&mut self, position: u64, seed: u64, len: usize) -> u64 {
        let at = self.log.partition_point(|a| a.position < position);
        self.log.insert(at, Appended { position, seed, len, via: check::UNPROMISED });
        position
    }

    /// Power loss at the moment `ready` first returns true, run by the
    /// caller while every barrier of every other thread waits (the model is
    /// locked from the call on): a barrier another thread issues meanwhile
    /// reaches the model only after the image is taken, as if the power
    /// went while that msync was under way. `ready` is polled.
    pub fn power_loss_when(
        &self,
        script: Script,
        mut ready: impl FnMut() -> bool,
        start: impl FnOnce(),
    ) -> Vec<Problem> {
        let crash = {
            let mut model = self.model.lock();
            start();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while !ready() {
                assert!(std::time::Instant::now() < deadline, "the awaited moment never came");
                std::thread::yield_now();
            }
            model.image_now(&mut Choice::Script(&script), "when".into()).0
        };
        self.recover(&crash)
    }

    /// Appends a record of `len` bytes through `publisher`, logged.
    pub fn append(&mut self, publisher: &backwater::Publisher, len: usize) -> u64 {
        let (seed, payload) = self.next_payload(len);
        let position = publisher.append(&payload).expect("append");
        self.logged(position, seed, len)
    }

    pub fn append_exclusive(&mut self, publisher: &mut ExclusivePublisher, len: usize) -> u64 {
        let (seed, payload) = self.next_payload(len);
        let position = publisher.append(&payload).expect("append");
        self.logged(position, seed, len)
    }

    /// Everything appended so far (and `cursor`) is promised.
    pub fn promise_all(&self, cursor: Option<u64>) {
        let mut model = self.model.lock();
        model.promise.records = self.log.len();
        model.promise.cursor = cursor;
    }

    /// Power loss now, leaving `script`'s image: what its recovery finds.
    pub fn power_loss(&self, script: Script) -> Vec<Problem> {
        let (crash, _) = self.model.lock().image_now(&mut Choice::Script(&script), "now".into());
        self.recover(&crash)
    }

    /// The crash image a power loss now leaves, as `script` says.
    pub fn image(&self, script: Script) -> media::Image {
        self.model.lock().image_now(&mut Choice::Script(&script), "now".into()).0.image
    }

    /// Puts `image` (of an earlier `Scripted`) here, all of it on the media:
    /// the machine rebooted after a power loss.
    pub fn restore(&self, image: &media::Image) {
        media::write_image(image, self.path()).expect("write the crash image");
        self.model.lock().settle();
    }

    /// Power loss at the `skip + 1`th barrier whose description contains `at`.
    pub fn power_loss_at(&self, at: &str, skip: usize, script: Script) {
        self.model.lock().capture = Some(Capture { at: at.into(), skip, script, taken: None });
    }

    /// See [`Registered::commit_during_flush`].
    pub fn commit_during_flush(&self, at: &str, journal: &Journal, claim: Claim<'_>) -> CommittedDuringFlush {
        self.model.commit_during_flush(at, journal, claim)
    }

    /// What recovery of the image `power_loss_at` took finds.
    pub fn captured(&self) -> Vec<Problem> {
        let taken = self.model.lock().capture.as_mut().and_then(|capture| capture.taken.take());
        let crash = taken.expect("the armed barrier happened");
        eprintln!("power lost at: {}", crash.what);
        self.recover(&crash)
    }

    /// Power loss now, leaving `script`'s image: its directory, for the
    /// test to open and read.
    pub fn power_loss_dir(&self, script: Script) -> tempfile::TempDir {
        let (crash, _) = self.model.lock().image_now(&mut Choice::Script(&script), "now".into());
        image_dir(&crash)
    }

    fn recover(&self, crash: &CrashImage) -> Vec<Problem> {
        let dir = image_dir(crash);
        check::check_image(dir.path(), &self.log, &crash.promise)
    }
}

/// A directory holding the files of `crash`'s image.
fn image_dir(crash: &CrashImage) -> tempfile::TempDir {
    let dir = tempdir();
    media::write_image(&crash.image, dir.path()).expect("write the crash image");
    dir
}

/// A journal of 64 KiB segments with `flush`.
pub fn small(flush: Flush) -> Config {
    Config::default().segment_size(SEGMENT).min_free_disk(0).flush(flush)
}

/// Only explicit `flush()` calls make anything durable.
pub fn explicit() -> Flush {
    Flush::Interval(Duration::from_secs(3600))
}
