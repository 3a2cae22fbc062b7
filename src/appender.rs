//! What both publishers share: the refusal counters, the wait of `append`
//! while back-pressured (spin, then sleep on the wake word, up to the
//! append timeout) and of `append_async` (the background waiter), and the
//! error for a record committed but not flushed.
//!
//! Owns no state. Touches the metadata's refusal counters. `Publisher` and
//! `ExclusivePublisher` import this, never each other (Aeron's appenders
//! share `FrameDescriptor` the same way).

use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Instant;

use crate::error::{Error, OfferError, Result};
use crate::handle::Handle;
use crate::meta::Meta;
use crate::state::JournalState;
use crate::waiter::Registration;
use crate::wake::Sleeper;

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
#[inline(never)]
pub(crate) fn wait_after_refusal<T>(
    inner: &JournalState,
    refused: OfferError,
    attempt: impl FnMut() -> Result<T, OfferError>,
) -> Result<T> {
    worth_waiting(&inner.meta, refused)?;
    wait_while_back_pressured(inner, attempt)
}

/// Whether an append whose first attempt was `refused` waits: `Ok` when it
/// was back-pressured (or its claim's segment was dropped: it claims again),
/// else the refusal (counted) to return.
#[cold]
pub(crate) fn worth_waiting(meta: &Meta, refused: OfferError) -> Result<()> {
    match refused {
        OfferError::BackPressured { .. } => Ok(()),
        refused if claim_was_dropped(&refused) => Ok(()),
        other => {
            count_refusal(meta, &other);
            Err(other.into())
        }
    }
}

/// Retries `attempt` while it is back-pressured (spin, then sleep until a
/// level change releases back-pressure), up to the append timeout: what
/// every blocking `append` does.
pub(crate) fn wait_while_back_pressured<T>(
    inner: &JournalState,
    mut attempt: impl FnMut() -> Result<T, OfferError>,
) -> Result<T> {
    let mut started = None;
    let mut sleeper = Sleeper::new(&inner.meta, inner.process_slot);
    loop {
        if let Some(done) = judge(inner, claim_until_kept(&mut attempt), &mut started) {
            return done;
        }
        sleeper.idle(append_deadline(inner, started));
    }
}

/// What every `append_async` does: `attempt`, and while it is
/// back-pressured, wait for the background waiter's wake-up (a level change
/// in any process) without blocking the thread, up to the append timeout.
///
/// Cancel-safe: each poll of the future makes whole attempts, and one that
/// appends completes the future in that same poll, so a future dropped
/// before it completed appended nothing.
pub(crate) async fn wait_async<T>(handle: &Handle, mut attempt: impl FnMut() -> Result<T, OfferError>) -> Result<T> {
    let mut started = None;
    let mut registration: Option<Registration> = None;
    std::future::poll_fn(|cx| {
        if let Some(done) = judge(handle, claim_until_kept(&mut attempt), &mut started) {
            return Poll::Ready(done);
        }
        let registration = registration.get_or_insert_with(|| handle.async_waiter().registration());
        registration.arm(cx.waker(), append_deadline(handle, started));
        // The re-check after arming: progress made before it is seen here,
        // progress after it wakes the waker.
        match judge(handle, claim_until_kept(&mut attempt), &mut started) {
            Some(done) => Poll::Ready(done),
            None => Poll::Pending,
        }
    })
    .await
}

/// Whether `refused` says the segment the attempt's claim fell in was
/// dropped before it could write there (several threads on a ring of a few
/// segments): nothing was written, and the tail has moved on.
fn claim_was_dropped(refused: &OfferError) -> bool {
    matches!(refused, OfferError::Failed(Error::Lost { .. }))
}

/// `attempt`, made again at once while its claim's segment was dropped
/// under it (a few times at most: each needs the ring to wrap over the
/// claim again; past that, the loss is returned).
fn claim_until_kept<T>(attempt: &mut impl FnMut() -> Result<T, OfferError>) -> Result<T, OfferError> {
    const TIMES: usize = 16;
    let mut outcome = attempt();
    for _ in 1..TIMES {
        if !outcome.as_ref().err().is_some_and(claim_was_dropped) {
            break;
        }
        outcome = attempt();
    }
    outcome
}

/// The outcome of one attempt: `None` while it is back-pressured and the
/// append timeout (counted from the first refusal, `started`) has not passed.
fn judge<T>(inner: &JournalState, outcome: Result<T, OfferError>, started: &mut Option<Instant>) -> Option<Result<T>> {
    match outcome {
        Ok(done) => Some(Ok(done)),
        Err(OfferError::BackPressured { fill, .. }) => {
            let start = *started.get_or_insert_with(|| {
                inner.meta.back_pressured().fetch_add(1, Ordering::Relaxed);
                Instant::now()
            });
            let expired = append_deadline(inner, Some(start)).is_some_and(|d| Instant::now() >= d);
            expired.then(|| Err(Error::StillBackPressured { waited: start.elapsed(), fill }))
        }
        Err(other) => {
            count_refusal(&inner.meta, &other);
            Some(Err(other.into()))
        }
    }
}

/// When a wait that `started` gives up (`None`: never, or not started).
fn append_deadline(inner: &JournalState, started: Option<Instant>) -> Option<Instant> {
    Some(started? + inner.append_timeout?)
}
