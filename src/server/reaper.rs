//! The idle reaper: one task that disconnects line-mode clients gone quiet.
//!
//! Every client must complete a line within `--idle-timeout` of its last one, so a silent
//! client, or one that trickles a byte at a time, cannot hold a slot forever. One task
//! sweeps all clients a few times per timeout instead of each connection keeping a timer of
//! its own (which would cost every idle client a few hundred bytes). A client found idle is
//! told why and has its reading side shut down; its own task then sees the end of input and
//! closes as usual.

use crate::lock::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use smol::Timer;

use crate::proto;
use crate::server::clock::clock_ms;
use crate::server::rooms::Session;

#[derive(Debug)]
pub struct Reaper {
    timeout: Duration,
    /// With `--secret-file`: how long a client may stay without authenticating.
    auth_timeout: Option<Duration>,
    sessions: Mutex<HashMap<u64, Weak<Session>>>,
}

impl Reaper {
    pub fn new(timeout: Duration, auth_timeout: Option<Duration>) -> Reaper {
        Reaper {
            timeout,
            auth_timeout,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Weak<Session>>> {
        lock(&self.sessions)
    }

    /// Starts watching a client in line mode.
    pub fn watch(&self, session: &Arc<Session>) {
        self.lock().insert(session.id, Arc::downgrade(session));
    }

    /// The client in line mode with this id, if it is still connected.
    pub fn session(&self, id: u64) -> Option<Arc<Session>> {
        self.lock().get(&id).and_then(Weak::upgrade)
    }

    /// Stops watching a client (it left line mode).
    pub fn forget(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// The server is stopping: every client in line mode has its reading side shut down,
    /// so its task sees the end of input, finds the server stopping, and says so. Done
    /// here, once, rather than by every connection racing each read against a shutdown
    /// signal (which cost a listener registered and removed for every line).
    pub fn stop_all(&self) {
        let sessions: Vec<Arc<Session>> = self.lock().values().filter_map(Weak::upgrade).collect();
        for session in sessions {
            session.outbox.stop_reading();
        }
    }

    /// Sweeps forever, a few times per timeout (at least every second).
    pub async fn run(&self) {
        let shortest = self.timeout.min(self.auth_timeout.unwrap_or(Duration::MAX));
        let period = (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        loop {
            Timer::after(period).await;
            self.sweep();
        }
    }

    fn sweep(&self) {
        let now = clock_ms();
        // Until it authenticates, a client's stamp stays at the time it connected.
        let too_late = |s: &Session| match self.auth_timeout {
            Some(limit) if !s.is_authed() => s.last_line.age(now) > limit,
            _ => s.last_line.age(now) > self.timeout,
        };
        let idle: Vec<Arc<Session>> = self
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .filter(|s| too_late(s))
            .collect();
        for session in idle {
            if session.time_out() {
                let error = match self.auth_timeout {
                    Some(limit) if !session.is_authed() => {
                        format!(
                            "authentication timed out (no /auth in {} s)",
                            limit.as_secs()
                        )
                    }
                    _ => format!(
                        "idle timeout (no complete line in {} s)",
                        self.timeout.as_secs()
                    ),
                };
                session.send(proto::error(&error));
                session.outbox.stop_reading();
            }
        }
    }
}
