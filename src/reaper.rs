//! The idle reaper: one task that disconnects line-mode clients gone quiet.
//!
//! Every client must complete a line within `--idle-timeout` of its last one, so a silent
//! client, or one that trickles a byte at a time, cannot hold a slot forever. One task
//! sweeps all clients a few times per timeout instead of each connection keeping a timer of
//! its own (which would cost every idle client a few hundred bytes). A client found idle is
//! told why and has its reading side shut down; its own task then sees the end of input and
//! closes as usual.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use smol::Timer;

use crate::proto;
use crate::rooms::Session;

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

    fn age(&self, now: u64) -> Duration {
        Duration::from_millis(now.saturating_sub(self.0.load(Ordering::Relaxed)))
    }
}

#[derive(Debug)]
pub struct Reaper {
    timeout: Duration,
    sessions: Mutex<HashMap<u64, Weak<Session>>>,
}

impl Reaper {
    pub fn new(timeout: Duration) -> Reaper {
        Reaper {
            timeout,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Weak<Session>>> {
        // The map is consistent after every critical section; carry on after a panic.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts watching a client in line mode.
    pub fn watch(&self, session: &Arc<Session>) {
        self.lock().insert(session.id, Arc::downgrade(session));
    }

    /// Stops watching a client (it left line mode).
    pub fn forget(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Sweeps forever, a few times per timeout (at least every second).
    pub async fn run(&self) {
        let period = (self.timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        loop {
            Timer::after(period).await;
            self.sweep();
        }
    }

    fn sweep(&self) {
        let now = clock_ms();
        let idle: Vec<Arc<Session>> = self
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .filter(|s| s.last_line.age(now) > self.timeout)
            .collect();
        for session in idle {
            if session.time_out() {
                let secs = self.timeout.as_secs();
                let error = format!("idle timeout (no complete line in {secs} s)");
                session.send(proto::error(&error));
                session.outbox.stop_reading();
            }
        }
    }
}
