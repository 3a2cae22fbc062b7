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
    segment: u32,
    /// Still the latest of its key (unkeyed records always are).
    live: bool,
    /// For the latest record of a key: its slot in `Conflation::latest`.
    slot: u32,
    hash: u64,
    at: Located,
}

/// An empty slot of the key table.
const EMPTY: u32 = u32::MAX;

/// The reused state of conflating reads.
#[derive(Default)]
pub(crate) struct Conflation {
    /// The segments this call read, in order: entries borrow from them.
    segments: Vec<Arc<Segment>>,
    entries: Vec<Entry>,
    /// The key table, open addressing with linear probing: each slot is
    /// [`EMPTY`] or the index in `entries` of the latest record of a key.
    /// Its length is 0 or a power of two, at most half full.
    latest: Vec<u32>,
    /// Slots in use: the distinct keys read in this call.
    keys: usize,
}

impl Conflation {
    /// Notes one record read from `segment`; a keyed one supersedes the
    /// previous record of its key.
    #[inline]
    pub fn note(&mut self, segment: &Arc<Segment>, at: Located) {
        if self.segments.last().map(|s| s.index) != Some(segment.index) {
            self.segments.push(Arc::clone(segment));
        }
        let entry = Entry { segment: (self.segments.len() - 1) as u32, live: true, slot: EMPTY, hash: 0, at };
        let Some(key) = at.key(segment.bytes()) else {
            self.entries.push(entry);
            return;
        };
        if (self.keys + 1) * 2 > self.latest.len() {
            self.grow();
        }
        let hash = key_hash(key);
        let index = self.entries.len() as u32;
        let Conflation { segments, entries, latest, keys } = self;
        let mask = latest.len() - 1;
        let mut slot = home(hash, latest.len());
        loop {
            let found = latest[slot];
            if found == EMPTY {
                *keys += 1;
                break;
            }
            let previous = &mut entries[found as usize];
            if previous.hash == hash && previous.at.key(segments[previous.segment as usize].bytes()) == Some(key) {
                previous.live = false;
                break;
            }
            slot = (slot + 1) & mask;
        }
        latest[slot] = index;
        self.entries.push(Entry { slot: slot as u32, hash, ..entry });
    }

    /// Doubles the key table (at least 64 slots) and puts the latest record
    /// of every key back in.
    #[cold]
    fn grow(&mut self) {
        let len = (self.latest.len() * 2).max(64);
        self.latest.clear();
        self.latest.resize(len, EMPTY);
        for (index, entry) in self.entries.iter_mut().enumerate() {
            if entry.live && entry.at.key_len.is_some() {
                let mut slot = home(entry.hash, len);
                while self.latest[slot] != EMPTY {
                    slot = (slot + 1) & (len - 1);
                }
                self.latest[slot] = index as u32;
                entry.slot = slot as u32;
            }
        }
    }

    /// Hands every live record to `handler` in position order, then forgets
    /// them (keeping the allocations). Returns how many it handed out.
    pub fn deliver<F: FnMut(Record<'_>)>(&mut self, handler: &mut F) -> usize {
        let mut delivered = 0;
        for entry in self.entries.iter().filter(|entry| entry.live) {
            handler(entry.at.record(self.segments[entry.segment as usize].bytes()));
            delivered += 1;
            if entry.slot != EMPTY {
                // Every used slot holds the latest (live) record of its key.
                self.latest[entry.slot as usize] = EMPTY;
            }
        }
        self.keys = 0;
        self.entries.clear();
        self.segments.clear();
        delivered
    }
}

/// The first slot to probe for `hash` in a table of `len` slots (a power of
/// two): the top bits of a Fibonacci multiply.
#[inline]
fn home(hash: u64, len: usize) -> usize {
    (hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - len.trailing_zeros())) as usize
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
    hash
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
