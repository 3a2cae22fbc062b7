//! Conflation: of the records one `Consumer::poll_conflated` reads, every
//! unkeyed one and, per key, only the last (the read side of issue 16's
//! "reduce publisher data volume").
//!
//! Owns, between calls, a table of key → latest record and the list of
//! records read, both kept allocated (cleared, not freed) so that a steady
//! consumer allocates nothing per record. Touches nothing: the records
//! stay in the mapped segments, which it holds while one call lasts, so a
//! record handed out borrows its segment (zero-copy) even when the call
//! read on into later segments. Above `record` and `segment`, below
//! `consumer`.

use std::sync::Arc;

use hashbrown::HashTable;

use crate::record::{Located, Record};
use crate::segment::Segment;

/// What one [`Consumer::poll_conflated_counts`](crate::Consumer::poll_conflated_counts)
/// did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conflated {
    /// Records read: the consumer moved past them all.
    pub read: usize,
    /// Records handed to the handler: every unkeyed one, and the last one of
    /// each key.
    pub delivered: usize,
}

impl Conflated {
    /// Records read but not handed out: superseded by a later record of the
    /// same key.
    pub fn skipped(&self) -> usize {
        self.read - self.delivered
    }
}

/// A record read in this call.
struct Entry {
    /// Its segment's slot in `Conflation::segments`.
    slot: u32,
    /// Still the latest of its key (unkeyed records always are).
    live: bool,
    hash: u64,
    at: Located,
}

/// The reused state of conflating reads.
#[derive(Default)]
pub(crate) struct Conflation {
    /// The segments this call read, in order: entries borrow from them.
    segments: Vec<Arc<Segment>>,
    entries: Vec<Entry>,
    /// Key → the index in `entries` of its latest record.
    latest: HashTable<u32>,
}

impl Conflation {
    /// Notes one record read from `segment`; a keyed one supersedes the
    /// previous record of its key.
    #[inline]
    pub fn note(&mut self, segment: &Arc<Segment>, at: Located) {
        if self.segments.last().map(|s| s.index) != Some(segment.index) {
            self.segments.push(Arc::clone(segment));
        }
        let slot = (self.segments.len() - 1) as u32;
        let index = self.entries.len() as u32;
        let Some(key) = at.key(segment.bytes()) else {
            self.entries.push(Entry { slot, live: true, hash: 0, at });
            return;
        };
        let hash = key_hash(key);
        let Conflation { segments, entries, latest } = self;
        let same_key = |&i: &u32| {
            let entry = &entries[i as usize];
            entry.hash == hash && entry.at.key(segments[entry.slot as usize].bytes()) == Some(key)
        };
        match latest.find_mut(hash, same_key) {
            Some(previous) => {
                let superseded = std::mem::replace(previous, index);
                entries[superseded as usize].live = false;
            }
            None => {
                latest.insert_unique(hash, index, |&i| entries[i as usize].hash);
            }
        }
        entries.push(Entry { slot, live: true, hash, at });
    }

    /// Hands every live record to `handler` in position order, then forgets
    /// them (keeping the allocations). Returns how many it handed out.
    pub fn deliver<F: FnMut(Record<'_>)>(&mut self, handler: &mut F) -> usize {
        let mut delivered = 0;
        for entry in self.entries.iter().filter(|entry| entry.live) {
            handler(entry.at.record(self.segments[entry.slot as usize].bytes()));
            delivered += 1;
        }
        self.entries.clear();
        self.latest.clear();
        self.segments.clear();
        delivered
    }
}

/// A fast hash of a key (multiply-rotate over 8-byte words, as FxHash
/// does): keys come from the journal's own publishers, so the table needs
/// speed, not resistance to chosen collisions (which would only slow it).
#[inline]
fn key_hash(key: &[u8]) -> u64 {
    const SEED: u64 = 0x9E37_79B9_7F4A_7C15;
    let mix = |hash: u64, word: u64| (hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    let mut hash = key.len() as u64;
    let mut words = key.chunks_exact(8);
    for word in &mut words {
        hash = mix(hash, u64::from_le_bytes(*word.first_chunk::<8>().unwrap_or(&[0; 8])));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        hash = mix(hash, u64::from_le_bytes(last));
    }
    // hashbrown takes its control byte from the top bits: fold the low ones in.
    hash ^ (hash >> 29) ^ (hash << 31)
}

#[cfg(test)]
mod tests {
    use super::key_hash;

    #[test]
    fn key_hash_tells_close_keys_apart() {
        let mut seen = std::collections::HashSet::new();
        for n in 0..10_000u32 {
            assert!(seen.insert(key_hash(format!("key-{n}").as_bytes())));
        }
        assert_ne!(key_hash(b""), key_hash(b"\0"));
    }
}
