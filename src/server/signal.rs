//! A once-only signal from one future to another: "the other side is over".
//!
//! Bridges (TLS, WebSockets, transit) run two directions side by side, and one of them
//! must learn when the other has ended. A bounded channel did that, at most of a kilobyte
//! per connection that every idle client kept (its queue and three events); a flag and one
//! event do the same for a few bytes until someone waits.

use std::sync::atomic::{AtomicBool, Ordering};

use event_listener::{listener, Event};

/// Raised once; waited for by any number of futures.
#[derive(Debug, Default)]
pub struct Signal {
    raised: AtomicBool,
    event: Event,
}

impl Signal {
    /// Raises it: every waiter wakes, and every later wait returns at once.
    pub fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.event.notify(usize::MAX);
    }

    /// Returns once it is raised.
    pub async fn raised(&self) {
        loop {
            if self.raised.load(Ordering::Acquire) {
                return;
            }
            listener!(self.event => raised);
            // Raised between the check and the listener: it would never be heard.
            if self.raised.load(Ordering::Acquire) {
                return;
            }
            raised.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn a_waiter_hears_a_signal_raised_before_or_after_it_waits() {
        let early = Signal::default();
        early.raise();
        future::block_on(early.raised());
        let late = Signal::default();
        let heard = future::block_on(future::zip(late.raised(), async { late.raise() }));
        assert_eq!(heard, ((), ()));
        let never = Signal::default();
        assert!(future::block_on(future::poll_once(never.raised())).is_none());
    }
}
