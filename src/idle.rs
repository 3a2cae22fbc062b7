//! The wait strategy shared by blocking appends and followers: spin, then
//! yield, then park with a growing timeout, so a waiting thread reacts within
//! microseconds when data is flowing and burns no core when it is not.

use std::time::{Duration, Instant};

use crossbeam_utils::Backoff;

const MAX_PARK: Duration = Duration::from_millis(1);

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
