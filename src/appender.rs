//! What both publishers share: the refusal counters and the blocking wait
//! of `append` (spin, yield, park while back-pressured, up to the append
//! timeout), and the error for a record committed but not flushed.
//!
//! Owns no state. Touches the metadata's refusal counters. `Publisher` and
//! `ExclusivePublisher` import this, never each other (Aeron's appenders
//! share `FrameDescriptor` the same way).

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::error::{Error, OfferError, Result};
use crate::idle::Idle;
use crate::meta::Meta;
use crate::state::JournalState;

/// The error for a record committed under `Flush::Always` whose msync failed:
/// the caller must know it is in the journal, so that it does not append it again.
pub(crate) fn committed_not_flushed(position: u64, source: Error) -> Error {
    Error::CommittedNotFlushed { position, source: Box::new(source) }
}

/// Counts an offer refused by back-pressure or shed by priority.
pub(crate) fn count_refusal(meta: &Meta, error: &OfferError) {
    match error {
        OfferError::BackPressured { .. } => meta.back_pressured().fetch_add(1, Ordering::Relaxed),
        OfferError::Dropped { .. } => meta.dropped_low().fetch_add(1, Ordering::Relaxed),
        OfferError::Failed(_) => 0,
    };
}

/// What a blocking `append` does once its first attempt was `refused`:
/// waits and retries while back-pressured, or reports the refusal. Kept out
/// of line, so that an `append` that is not refused costs what `offer` does.
#[cold]
pub(crate) fn wait_after_refusal(
    inner: &JournalState,
    refused: OfferError,
    attempt: impl FnMut() -> Result<u64, OfferError>,
) -> Result<u64> {
    match refused {
        OfferError::BackPressured { .. } => wait_while_back_pressured(inner, attempt),
        other => {
            count_refusal(&inner.meta, &other);
            Err(other.into())
        }
    }
}

/// Retries `attempt` while it is back-pressured (spin, yield, park), up to
/// the append timeout: what every blocking `append` does.
pub(crate) fn wait_while_back_pressured<T>(
    inner: &JournalState,
    mut attempt: impl FnMut() -> Result<T, OfferError>,
) -> Result<T> {
    let mut started = None;
    let mut idle = Idle::default();
    loop {
        match attempt() {
            Ok(done) => return Ok(done),
            Err(OfferError::BackPressured { fill, .. }) => {
                let start = *started.get_or_insert_with(|| {
                    inner.meta.back_pressured().fetch_add(1, Ordering::Relaxed);
                    Instant::now()
                });
                let deadline = inner.append_timeout.map(|timeout| start + timeout);
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(Error::StillBackPressured { waited: start.elapsed(), fill });
                }
                idle.idle(deadline);
            }
            Err(other) => {
                count_refusal(&inner.meta, &other);
                return Err(other.into());
            }
        }
    }
}
