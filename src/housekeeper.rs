//! The housekeeper: one background thread per writable handle that keeps the
//! slow work off the publishers' hot path.
//!
//! Owns nothing of its own; every tick it prepares the next segment ahead of
//! need (created, fully allocated, mapped and faulted in; in a full
//! dropping ring that its handle's publisher appends to, after making room
//! one step early), and at least every
//! 100 ms re-reads the filesystem's free space, runs retention, recomputes
//! the publication limits and lapses its `ReservingPublisher`s' idle
//! reservations, and flushes under `Flush::Interval`. (Compressing
//! sealed segments has a thread of its own, `compressor`'s, so that
//! preparing the next segment never waits for it.) Publishers
//! wake it at every rollover. It reports level transitions to the `log`
//! facade (target `backwater`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::capacity::Fill;
use crate::error::{Error, Result};
use crate::state::JournalState;
use crate::{Level, capacity, flush, process, reserving, retention, thread_cache, window};

/// The longest the housekeeper sleeps between ticks.
pub const TICK: Duration = Duration::from_millis(100);

pub(crate) fn start(inner: &Arc<JournalState>) {
    let owned = Arc::clone(inner);
    let spawned = std::thread::Builder::new().name("backwater-housekeeper".into()).spawn(move || run(owned));
    // Without the thread publishers still work: they create segments themselves.
    if let Ok(handle) = spawned {
        inner.set_housekeeper(handle);
    }
}

fn run(inner: Arc<JournalState>) {
    // Background work must never take a core from a publisher or a spinning
    // consumer: on a small machine it is exactly what makes tail latency.
    // (Best effort; on Linux the nice value of a thread is its own.)
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
    let mut last_refresh: Option<Instant> = None;
    let mut last_flush = Instant::now();
    let mut reclaimed_below = inner.meta.first_position().load(Ordering::Acquire);
    let mut logged_level = stored_level(&inner);
    loop {
        if inner.stopping() {
            return;
        }
        // Errors are retried next tick; publishers see their effect (e.g.
        // back-pressure when no segment can be allocated) on their own path.
        let _ = prepare(&inner, inner.segments_ahead);
        if last_refresh.is_none_or(|at| at.elapsed() >= TICK) {
            last_refresh = Some(Instant::now());
            let _ = capacity::refresh(&inner);
            let _ = retention::run(&inner);
            log_level_change(&inner, &mut logged_level);
            reclaim_deleted(&inner, &mut reclaimed_below);
            thread_cache::reclaim_closed();
            process::forget_dead_sleepers(&inner.dir, &inner.meta);
            let _ = window::reclaim_retired(&inner);
            reserving::lapse_idle(&inner);
        }
        let _ = flush::tick(&inner, &mut last_flush);
        std::thread::park_timeout(TICK);
    }
}

fn stored_level(inner: &JournalState) -> Level {
    Level::from_u32(inner.meta.level().load(Ordering::Acquire))
}

/// Tells the `log` facade about a level transition since the last one it
/// was told about: a warning when the level rises, info when it falls. Done
/// here, once a tick, rather than where the level changes, so that a
/// publisher reaching a watermark never waits on a logger; a level held for
/// less than a tick (100 ms) may go unlogged. Each writable handle logs what
/// it sees.
fn log_level_change(inner: &JournalState, logged: &mut Level) {
    let level = stored_level(inner);
    if level == *logged {
        return;
    }
    let fill = Fill::read(&inner.meta).ratio() * 100.0;
    let (dir, from, to) = (inner.dir.display(), logged.name(), level.name());
    if level > *logged {
        log::warn!(target: "backwater", "{dir}: level {from} -> {to} at {fill:.1}% full");
    } else {
        log::info!(target: "backwater", "{dir}: level {from} -> {to} at {fill:.1}% full");
    }
    *logged = level;
}

/// After retention moved the first position, takes the deleted segments'
/// mappings back from threads that cached them (idle ones included).
fn reclaim_deleted(inner: &Arc<JournalState>, reclaimed_below: &mut u64) {
    let first = inner.meta.first_position().load(Ordering::Acquire);
    if first > *reclaimed_below {
        let first_index = first / inner.segment_size();
        thread_cache::reclaim(inner.handle_id, |index| index < first_index);
        *reclaimed_below = first;
    }
}

/// Makes sure the tail's segment and `ahead` more are mapped and faulted in.
/// A full `DropOldest` or `EvictSlowest` ring that a publisher of this
/// handle appends to makes room for the segment after the tail's one step
/// early ([`retention::drop_for_next_segment`]); segments further ahead
/// only use room there is.
pub(crate) fn prepare(inner: &JournalState, ahead: u64) -> Result<()> {
    let tail_index = inner.meta.tail_index();
    for index in tail_index..=tail_index + ahead {
        // The tail may have moved on meanwhile (this thread runs at the
        // lowest priority): a segment it left is sealed, not to be prepared.
        if index < inner.meta.tail_index() {
            continue;
        }
        let next = index == tail_index + 1;
        let segment = match window::write_segment(inner, index) {
            Err(Error::BackPressured { .. }) if next && retention::drop_for_next_segment(inner, tail_index)? => {
                window::write_segment(inner, index)?
            }
            other => other?,
        };
        if next {
            // Room there was (or was made): the rotation's early drop is decided.
            inner.take_rotation(tail_index);
        }
        segment.populate();
    }
    Ok(())
}
