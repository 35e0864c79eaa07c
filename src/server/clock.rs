//! The server's own millisecond clock and time stamps that any thread can read and set.
//!
//! Its own module because the reaper, the rate limits and every session stamp time the same
//! way, and none of them should have to import another to do it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Milliseconds on the server's own clock (since its first use), for cheap atomic stamps.
pub fn clock_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// A time stamp that can be read and set from any thread.
#[derive(Debug)]
pub struct Stamp(AtomicU64);

impl Stamp {
    pub fn now() -> Stamp {
        Stamp(AtomicU64::new(clock_ms()))
    }

    pub fn touch(&self) {
        self.0.store(clock_ms(), Ordering::Relaxed);
    }

    /// How long ago the stamp was set, at clock time `now`.
    pub fn age(&self, now: u64) -> Duration {
        Duration::from_millis(now.saturating_sub(self.0.load(Ordering::Relaxed)))
    }
}
