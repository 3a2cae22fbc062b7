//! Wait strategies: [`Spin`], the short busy phase before a waiter sleeps
//! on the wake word (`wake`), and [`Idle`], spin, then yield, then park
//! with a growing timeout (the journal lock's wait, and waiters that cannot
//! sleep on the wake word), so a waiting thread reacts within microseconds
//! when data is flowing and burns no core when it is not.

use std::time::{Duration, Instant};

use crossbeam_utils::Backoff;

const MAX_PARK: Duration = Duration::from_millis(1);

/// How long a waiter spins (and yields) before it sleeps: long enough to
/// catch the next record of a stream at 100,000 records/s without a
/// syscall on either side, short enough to cost little when idle.
const SPIN_FOR: Duration = Duration::from_micros(50);

/// The busy phase of a wait.
#[derive(Default)]
pub struct Spin {
    backoff: Backoff,
    since: Option<Instant>,
    finished: bool,
}

impl Spin {
    /// Ends the busy phase now.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Spins (or yields) once; `false` when the busy phase is over.
    pub fn spin(&mut self) -> bool {
        let since = *self.since.get_or_insert_with(Instant::now);
        if self.finished || self.backoff.is_completed() && since.elapsed() >= SPIN_FOR {
            self.finished = true;
            return false;
        }
        self.backoff.snooze();
        true
    }
}

/// One waiter's state; call `idle` after each empty attempt.
pub struct Idle {
    backoff: Backoff,
    park: Duration,
}

impl Default for Idle {
    fn default() -> Self {
        Idle { backoff: Backoff::new(), park: Duration::from_micros(20) }
    }
}

impl Idle {
    /// Waits a little, longer each time, never past `deadline`.
    pub fn idle(&mut self, deadline: Option<Instant>) {
        if !self.backoff.is_completed() {
            self.backoff.snooze();
            return;
        }
        let mut park = self.park;
        if let Some(deadline) = deadline {
            park = park.min(deadline.saturating_duration_since(Instant::now()));
        }
        std::thread::park_timeout(park);
        self.park = (self.park * 2).min(MAX_PARK);
    }
}
