//! The media of the power-loss model: what survives a power loss, at page
//! granularity, as ALICE, CrashMonkey and LazyFS model it.
//!
//! `Media` keeps the *durable* image: for every file (known by inode and
//! birth time, since names change) the pages that reached the media at a
//! barrier, with their content then; and for every directory the entries
//! (name → file) as of its last fsync; and an open descriptor of every file
//! a crash image may still hold. A `Snapshot` is the *volatile* state at a
//! crash point: the entries, and the page cache content of every file, read
//! through its descriptor (so a file renamed or unlinked meanwhile is read
//! all the same, as what the kernel has of it, never as an older copy).
//! `Media::crash_image` combines the two: every page that differs is
//! independently old or new, every entry that differs is independently the
//! durable or the volatile one (so a file unlinked since the last directory
//! fsync may come back, and a new name may vanish).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::common::Rng;

/// The unit the media writes atomically.
pub const PAGE: usize = 4096;

/// The directories of a journal the model tracks, relative to its root.
pub const TRACKED_DIRS: [&str; 2] = ["", "cursors"];

/// A file (or directory) across renames: inode number and birth time, so a
/// reused inode number is a different file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    ino: u64,
    born: SystemTime,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> FileId {
        FileId { ino: meta.ino(), born: meta.created().unwrap_or(SystemTime::UNIX_EPOCH) }
    }
}

/// One directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: FileId,
    pub is_dir: bool,
}

/// Entries of one directory, by name.
pub type Listing = BTreeMap<String, Entry>;

/// The volatile state at one crash point: what a SIGKILL would leave.
pub struct Snapshot {
    /// Tracked directory (relative) → its entries.
    pub dirs: BTreeMap<String, Listing>,
    /// The page cache of every file a crash image may hold.
    pub contents: HashMap<FileId, Vec<u8>>,
}

/// A crash image: files and directories (content `None`) by relative path.
pub type Image = BTreeMap<PathBuf, Option<Vec<u8>>>;

/// How a crash image settles what differs between media and page cache.
pub enum Choice<'a> {
    /// Each page and entry independently, by coin.
    Random(&'a mut Rng),
    /// As a script says (minimal reproductions).
    Script(&'a Script),
}

impl Choice<'_> {
    /// Whether the page cache's side wins for entry `name` (`page: None`)
    /// or for page `page` of the file named `name`.
    fn newer(&mut self, name: &Path, page: Option<usize>) -> bool {
        match self {
            Choice::Random(rng) => rng.below(2) == 0,
            Choice::Script(script) => {
                script.newest != script.except.iter().any(|(n, p)| Path::new(n) == name && *p == page)
            }
        }
    }
}

/// A deterministic crash image: everything on one side (`newest`: the page
/// cache's, else the media's), except the listed entries (`None`) and pages.
#[derive(Clone, Debug)]
pub struct Script {
    pub newest: bool,
    pub except: Vec<(String, Option<usize>)>,
}

impl Script {
    /// Only what reached the media: the harshest power loss.
    pub fn durable() -> Script {
        Script { newest: false, except: Vec::new() }
    }

    /// Everything in the page cache reached the media...
    pub fn newest() -> Script {
        Script { newest: true, except: Vec::new() }
    }

    /// ...except page `page` of `name` (relative to the journal).
    pub fn but_page(mut self, name: &str, page: usize) -> Script {
        self.except.push((name.to_string(), Some(page)));
        self
    }

    /// ...except the directory entry `name`.
    pub fn but_entry(mut self, name: &str) -> Script {
        self.except.push((name.to_string(), None));
        self
    }
}

/// What reached the media.
#[derive(Default)]
pub struct Media {
    /// Per file: page index → content at its last barrier.
    pages: HashMap<FileId, BTreeMap<usize, Vec<u8>>>,
    /// Per tracked directory: entries as of its last fsync.
    entries: BTreeMap<String, Listing>,
    /// An open descriptor of every file met in a listing or at a barrier,
    /// for as long as a crash image may hold it: through it the file's page
    /// cache reads the same whatever its name is now, and once it is
    /// unlinked (a durable entry can bring it back).
    files: HashMap<FileId, File>,
}

impl Media {
    /// `msync` of `len` bytes at `offset` of `file` (the mapped file itself,
    /// whatever its name is now) completed: its pages are on the media with
    /// their present content.
    pub fn synced_range(&mut self, file: &File, offset: usize, len: usize) {
        let Ok(meta) = file.metadata() else { return };
        let file_len = meta.len() as usize;
        let end = (offset + len).min(file_len);
        let id = FileId::of(&meta);
        let pages = self.pages.entry(id).or_default();
        for page in offset / PAGE..end.div_ceil(PAGE) {
            let start = page * PAGE;
            let mut content = vec![0u8; PAGE.min(file_len - start)];
            if file.read_exact_at(&mut content, start as u64).is_ok() {
                pages.insert(page, content);
            }
        }
        // A descriptor of our own (a `dup` would share the journal's open
        // file, and with it its `flock`, past the journal's close).
        if !self.files.contains_key(&id)
            && let Ok(own) = File::open(Path::new("/proc/self/fd").join(file.as_raw_fd().to_string()))
        {
            self.files.insert(id, own);
        }
    }

    /// `fsync` of the whole file at `path` completed.
    pub fn synced_file(&mut self, path: &Path) {
        let Ok(file) = File::open(path) else { return };
        let len = file.metadata().map_or(0, |m| m.len() as usize);
        self.synced_range(&file, 0, len);
    }

    /// `fsync` of the directory `rel` (relative to `root`) completed: its
    /// entries as they are now are durable.
    pub fn synced_dir(&mut self, root: &Path, rel: &str) {
        let listing = self.list(&root.join(rel));
        self.entries.insert(rel.to_string(), listing);
    }

    /// The volatile state of the journal at `root` now: the entries of the
    /// tracked directories, then the page cache of every file, each read
    /// through its descriptor.
    pub fn snapshot(&mut self, root: &Path) -> Snapshot {
        let dirs: BTreeMap<String, Listing> =
            TRACKED_DIRS.iter().map(|rel| (rel.to_string(), self.list(&root.join(rel)))).collect();
        self.forget_unreachable(&dirs);
        let contents = self.files.iter().filter_map(|(id, file)| Some((*id, read_whole(file)?))).collect();
        Snapshot { dirs, contents }
    }

    /// The entries of `dir` now (empty if it does not exist), each name as
    /// opening it finds it; keeps the descriptor of every file.
    fn list(&mut self, dir: &Path) -> Listing {
        let mut listing = Listing::new();
        let Ok(entries) = std::fs::read_dir(dir) else { return listing };
        for name in entries.flatten().filter_map(|entry| entry.file_name().into_string().ok()) {
            // A name gone since the directory was read (renamed, unlinked)
            // is no entry now; its file is wherever it went.
            let Ok(file) = File::open(dir.join(&name)) else { continue };
            let Ok(meta) = file.metadata() else { continue };
            let id = FileId::of(&meta);
            listing.insert(name, Entry { id, is_dir: meta.is_dir() });
            if !meta.is_dir() {
                self.files.entry(id).or_insert(file);
            }
        }
        listing
    }

    /// Forgets the files no crash image can hold: no durable entry and no
    /// entry of `volatile` names them, and they have no name left at all.
    /// (A file merely missing from a listing, renamed while it was read,
    /// still has a name: its durable pages are kept.)
    fn forget_unreachable(&mut self, volatile: &BTreeMap<String, Listing>) {
        let named = self.entries.values().chain(volatile.values()).flat_map(|l| l.values().map(|e| e.id));
        let named: BTreeSet<FileId> = named.collect();
        self.files.retain(|id, file| named.contains(id) || file.metadata().is_ok_and(|meta| meta.nlink() > 0));
        let files = &self.files;
        self.pages.retain(|id, _| files.contains_key(id));
    }

    /// Whether some directory entry of `snapshot` is not yet on the media.
    pub fn entries_in_flight(&self, snapshot: &Snapshot) -> bool {
        TRACKED_DIRS.iter().any(|rel| self.entries.get(*rel) != snapshot.dirs.get(*rel))
    }

    /// A state a power loss at `snapshot` could leave, as `choice` decides.
    pub fn crash_image(&self, snapshot: &Snapshot, choice: &mut Choice<'_>) -> Image {
        let mut image = Image::new();
        let mut contents: HashMap<FileId, Vec<u8>> = HashMap::new();
        for rel in TRACKED_DIRS {
            if !rel.is_empty() && !image.contains_key(Path::new(rel)) {
                continue; // the subdirectory's own entry did not survive
            }
            let durable = self.entries.get(rel).cloned().unwrap_or_default();
            let volatile = snapshot.dirs.get(rel).cloned().unwrap_or_default();
            let names: BTreeSet<&String> = durable.keys().chain(volatile.keys()).collect();
            for name in names {
                let path = Path::new(rel).join(name);
                let chosen = choose(durable.get(name), volatile.get(name), &path, choice);
                let Some(entry) = chosen else { continue };
                if entry.is_dir {
                    image.insert(path, None);
                } else {
                    let content = contents
                        .entry(entry.id)
                        .or_insert_with(|| self.crash_content(entry.id, &path, snapshot, choice));
                    image.insert(path, Some(content.clone()));
                }
            }
        }
        image
    }

    /// One file's content after the power loss: each page whose durable and
    /// newest contents differ is independently one or the other; pages
    /// never synced are zeros on the media (the file is fallocated). A file
    /// whose page cache could not be read has its durable pages only.
    fn crash_content(&self, id: FileId, name: &Path, snapshot: &Snapshot, choice: &mut Choice<'_>) -> Vec<u8> {
        let newest = snapshot.contents.get(&id);
        let empty = BTreeMap::new();
        let durable = self.pages.get(&id).unwrap_or(&empty);
        let durable_len = durable.iter().map(|(page, bytes)| page * PAGE + bytes.len()).max().unwrap_or(0);
        let len = newest.map_or(durable_len, Vec::len);
        let mut out = vec![0u8; len];
        for (page, chunk) in out.chunks_mut(PAGE).enumerate() {
            let old = durable.get(&page).map(|bytes| &bytes[..chunk.len().min(bytes.len())]);
            let new = newest.map(|bytes| &bytes[page * PAGE..page * PAGE + chunk.len()]);
            let pick = match (old, new) {
                (Some(old), Some(new)) if old != new && choice.newer(name, Some(page)) => Some(new),
                (Some(old), _) => Some(old),
                (None, Some(new)) if choice.newer(name, Some(page)) => Some(new),
                (None, _) => None,
            };
            if let Some(bytes) = pick {
                chunk[..bytes.len()].copy_from_slice(bytes);
            }
        }
        out
    }
}

/// Equal entries stay; differing ones are independently durable or volatile.
fn choose(durable: Option<&Entry>, volatile: Option<&Entry>, name: &Path, choice: &mut Choice<'_>) -> Option<Entry> {
    if durable == volatile || !choice.newer(name, None) { durable.copied() } else { volatile.copied() }
}

/// What the page cache holds of `file` now.
fn read_whole(file: &File) -> Option<Vec<u8>> {
    let mut content = vec![0u8; file.metadata().ok()?.len() as usize];
    file.read_exact_at(&mut content, 0).ok()?;
    Some(content)
}

/// Writes `image` under `dir` (which exists and is empty).
pub fn write_image(image: &Image, dir: &Path) -> std::io::Result<()> {
    for (path, content) in image {
        let target = dir.join(path);
        match content {
            None => std::fs::create_dir_all(&target)?,
            Some(bytes) => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&target, bytes)?;
            }
        }
    }
    Ok(())
}
