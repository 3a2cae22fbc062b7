//! The model of one journal under test: the hook that feeds it every
//! barrier, its media, what the flush policy has promised, and the crash
//! images it builds at crash points (sampled at random for the workloads,
//! scripted at one chosen barrier for the reproductions).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, mpsc};
use std::time::Duration;

use backwater::sync_trace::{self, SyncEvent};
use backwater::{Claim, Journal};

use crate::check::Promise;
use crate::common::Rng;
use crate::media::{Choice, Image, Media, Script, Snapshot};

/// Out of 1,000 crash points, how many become an image.
const SAMPLE_PER_MILLE: u64 = 30;

/// The models of the journals under test, by root directory: the hook is
/// process-wide, and recovery of crash images must not feed any model.
static MODELS: Mutex<Vec<(PathBuf, Arc<Mutex<Model>>)>> = Mutex::new(Vec::new());

fn on_barrier(event: &SyncEvent<'_>) {
    let path = match event {
        SyncEvent::Range { path, .. } | SyncEvent::File { path } | SyncEvent::Directory { path } => *path,
    };
    let model = {
        let models = lock(&MODELS);
        models.iter().find(|(root, _)| path.starts_with(root)).map(|(_, model)| Arc::clone(model))
    };
    let Some(model) = model else { return };
    let what = lock(&model).on_barrier(event);
    // Taken under the lock, run outside it: the action may use the journal.
    let after = lock(&model).after.take_if(|(at, _)| what.contains(at.as_str()));
    if let Some((_, action)) = after {
        action();
    }
}

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a crash keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// A power loss: what reached the media, each page and entry not yet
    /// durable independently old or new.
    Power,
    /// A SIGKILL of every process: the page cache, whole (the control: the
    /// journal is built to survive it, so a failure here is the checker's).
    Kill,
}

/// A model fed by the hook with the barriers of the journal at `root`, for
/// as long as this lives.
pub struct Registered {
    root: PathBuf,
    model: Arc<Mutex<Model>>,
}

impl Registered {
    /// `quota` random crash images of `loss`, chosen with `rng` (none: only
    /// scripted ones).
    pub fn new(root: &Path, rng: Rng, quota: usize, loss: Loss) -> Registered {
        static HOOK: OnceLock<()> = OnceLock::new();
        HOOK.get_or_init(|| sync_trace::set_hook(Some(Box::new(on_barrier))));
        let model = Arc::new(Mutex::new(Model {
            root: root.to_path_buf(),
            media: Media::default(),
            rng,
            promise: Promise::default(),
            crash_points: 0,
            generated: 0,
            quota,
            loss,
            pending: Vec::new(),
            coverage: Coverage { workloads: 1, ..Coverage::default() },
            capture: None,
            after: None,
        }));
        lock(&MODELS).push((root.to_path_buf(), Arc::clone(&model)));
        Registered { root: root.to_path_buf(), model }
    }

    pub fn lock(&self) -> MutexGuard<'_, Model> {
        lock(&self.model)
    }

    /// Commits `claim` from another thread right after the first barrier
    /// whose description contains `at`: in the middle of `journal.flush()`,
    /// or of a housekeeper's flush if it gets there first. With no such
    /// barrier the claim is committed once the flush returned. Returns what
    /// the flush and the commit returned, and whether the commit came
    /// mid-flush.
    pub fn commit_during_flush(&self, at: &str, journal: &Journal, claim: Claim<'_>) -> CommittedDuringFlush {
        let (synced, sync_seen) = mpsc::channel::<()>();
        let (committed, commit_seen) = mpsc::channel::<()>();
        let after: AfterBarrier = Box::new(move || {
            if synced.send(()).is_ok() {
                let _ = commit_seen.recv_timeout(Duration::from_secs(30));
            }
        });
        self.lock().after = Some((at.into(), after));
        std::thread::scope(|scope| {
            let committer = scope.spawn(move || {
                // Err: the flush ended and dropped the hook unrun.
                let mid_flush = sync_seen.recv().is_ok();
                let position = claim.commit();
                let _ = committed.send(());
                (position, mid_flush)
            });
            let flushed = journal.flush();
            self.lock().after = None;
            let (position, mid_flush) = committer.join().expect("the committer thread");
            CommittedDuringFlush { flushed, position, mid_flush }
        })
    }
}

/// What [`Registered::commit_during_flush`] saw.
pub struct CommittedDuringFlush {
    pub flushed: backwater::Result<()>,
    pub position: backwater::Result<u64>,
    pub mid_flush: bool,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&MODELS).retain(|(root, _)| *root != self.root);
    }
}

/// One journal's media model and the crash images built from it.
pub struct Model {
    root: PathBuf,
    media: Media,
    /// Chooses crash points and the old/new state of each image.
    rng: Rng,
    /// What the flush policy has promised so far (kept by the workload).
    pub promise: Promise,
    pub crash_points: usize,
    generated: usize,
    quota: usize,
    loss: Loss,
    /// Images built since the workload last checked.
    pub pending: Vec<CrashImage>,
    pub coverage: Coverage,
    /// A scripted crash image to build at one chosen barrier.
    pub capture: Option<Capture>,
    /// An action to run in the barrier's own thread, right after the first
    /// barrier whose description contains the text: a reproduction's way to
    /// make something happen in the middle of a flush.
    pub after: Option<(String, AfterBarrier)>,
}

pub type AfterBarrier = Box<dyn FnOnce() + Send>;

/// A crash image waiting to be checked.
pub struct CrashImage {
    pub image: Image,
    pub promise: Promise,
    pub crash_point: usize,
    pub what: String,
}

/// Where a reproduction loses power: at the barrier (or operation boundary)
/// whose description contains `at`, after skipping `skip` of them.
pub struct Capture {
    pub at: String,
    pub skip: usize,
    pub script: Script,
    pub taken: Option<CrashImage>,
}

/// How much of the interesting state space the workloads reached.
#[derive(Clone, Copy, Debug, Default)]
pub struct Coverage {
    pub workloads: usize,
    pub crash_points: usize,
    pub images: usize,
    /// Segments written past (the tail's index at the end), summed.
    pub rotations: u64,
    /// Segments deleted by retention or the ring, summed.
    pub deletions: u64,
    /// Workloads whose ring dropped unread data.
    pub ring_drops: usize,
    /// Images holding a spare segment file (recycling under way).
    pub images_with_spares: usize,
    /// Images where a directory entry differs between media and page cache.
    pub images_with_entries_in_flight: usize,
    pub reopens: usize,
    /// Records appended through a `ReservingPublisher`.
    pub reserving_appends: usize,
}

impl std::ops::AddAssign for Coverage {
    fn add_assign(&mut self, other: Coverage) {
        self.workloads += other.workloads;
        self.crash_points += other.crash_points;
        self.images += other.images;
        self.rotations += other.rotations;
        self.deletions += other.deletions;
        self.ring_drops += other.ring_drops;
        self.images_with_spares += other.images_with_spares;
        self.images_with_entries_in_flight += other.images_with_entries_in_flight;
        self.reopens += other.reopens;
        self.reserving_appends += other.reserving_appends;
    }
}

impl Model {
    /// Records the barrier on the media; returns its description.
    fn on_barrier(&mut self, event: &SyncEvent<'_>) -> String {
        let what = match *event {
            SyncEvent::Range { path, file, offset, len } => {
                if let Some(file) = file {
                    self.media.synced_range(file, offset, len);
                }
                format!("msync {} +{offset} len {len}", self.relative(path))
            }
            SyncEvent::File { path } => {
                self.media.synced_file(path);
                format!("fsync {}", self.relative(path))
            }
            SyncEvent::Directory { path } => {
                let rel = self.relative(path);
                self.media.synced_dir(&self.root, &rel);
                format!("fsync directory '{rel}'")
            }
        };
        self.crash_point(what.clone());
        what
    }

    /// Everything now under the root is on the media: a crash image
    /// restored onto a disk, for a second power loss.
    pub fn settle(&mut self) {
        for rel in crate::media::TRACKED_DIRS {
            let dir = self.root.join(rel);
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_file()) {
                        self.media.synced_file(&entry.path());
                    }
                }
            }
            self.media.synced_dir(&self.root, rel);
        }
    }

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root).unwrap_or(path).to_string_lossy().into_owned()
    }

    pub fn quota_reached(&self) -> bool {
        self.generated >= self.quota
    }

    /// A moment a power loss could hit: maybe build an image of it.
    pub fn crash_point(&mut self, what: String) {
        self.crash_points += 1;
        self.maybe_capture(&what);
        if self.quota_reached() || self.rng.below(1000) >= SAMPLE_PER_MILLE {
            return;
        }
        let mut rng = Rng(self.rng.next());
        let kill = Script::newest();
        let mut choice = match self.loss {
            Loss::Power => Choice::Random(&mut rng),
            Loss::Kill => Choice::Script(&kill),
        };
        let (mut crash, snapshot) = self.image_now(&mut choice, what);
        self.generated += 1;
        let spare = |path: &PathBuf| path.to_string_lossy().starts_with(".tmp-spare-");
        self.coverage.images_with_spares += usize::from(crash.image.keys().any(spare));
        self.coverage.images_with_entries_in_flight += usize::from(self.media.entries_in_flight(&snapshot));
        crash.crash_point = self.crash_points;
        self.pending.push(crash);
    }

    /// A crash image of this moment, with what was promised.
    pub fn image_now(&mut self, choice: &mut Choice<'_>, what: String) -> (CrashImage, Snapshot) {
        let snapshot = self.media.snapshot(&self.root);
        // Read after the snapshot: retention moves the first position before
        // it unlinks, so this never expects a segment the snapshot lacks.
        let promise = Promise { first_position: first_position(&self.root), ..self.promise };
        let image = reboot(self.media.crash_image(&snapshot, choice));
        (CrashImage { image, promise, crash_point: self.crash_points, what }, snapshot)
    }

    fn maybe_capture(&mut self, what: &str) {
        let Some(mut capture) = self.capture.take() else { return };
        if capture.taken.is_none() && what.contains(&capture.at) {
            if capture.skip == 0 {
                capture.taken = Some(self.image_now(&mut Choice::Script(&capture.script), what.into()).0);
            } else {
                capture.skip -= 1;
            }
        }
        self.capture = Some(capture);
    }
}

/// The first position in the journal's metadata now (0 before it exists).
fn first_position(root: &Path) -> u64 {
    const FIRST_POSITION_AT: usize = 192;
    let meta = std::fs::read(root.join("journal.meta")).unwrap_or_default();
    meta.get(FIRST_POSITION_AT..FIRST_POSITION_AT + 8)
        .map_or(0, |bytes| u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
}

/// The machine restarted: no process of before is alive. The process table
/// in `journal.meta` (pid, start time) names this very test process, so it
/// is cleared, as a reboot would make every entry stale.
fn reboot(mut image: Image) -> Image {
    const PROCESS_TABLE: std::ops::Range<usize> = 512..512 + 64 * 16;
    if let Some(Some(meta)) = image.get_mut(Path::new("journal.meta"))
        && meta.len() >= PROCESS_TABLE.end
    {
        meta[PROCESS_TABLE].fill(0);
    }
    image
}

/// Journals and crash images live in memory-backed storage when there is
/// some: the model, not the device, decides what is durable.
pub fn tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() };
    dir.expect("create a temporary directory")
}
