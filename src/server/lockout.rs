//! Lock-out after failed `/auth` (`--auth-failures`, `--auth-lockout`).
//!
//! One guess per connection is no limit at all: a client can open thousands of connections a
//! second. So every address (IPv6 by its /64, as in [`crate::server::throttle`]) may fail `/auth`
//! `--auth-failures` times; the next failure locks it out for `--auth-lockout` seconds, and
//! each further lock-out of the same address lasts twice as long as the one before, up to
//! [`MAX_LOCKOUT`]. While locked out, `/auth` from that address is refused without looking at
//! the secret, right or wrong, so guessing gains nothing. A success forgets the address.
//!
//! The table only holds addresses that failed, and forgets them [`FORGET_AFTER`] after their
//! last failure once any lock-out is over. It never holds more than [`MAX_TRACKED`]: when it
//! is full of recent failures, `/auth` from an address not in it is refused too (failing
//! closed: a flood of guessers from many networks must not switch the limit off).

use crate::lock::lock;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::server::clock::clock_ms;
use crate::server::throttle::key;

/// Default for `--auth-failures`: failed `/auth` per address before it is locked out.
pub const AUTH_FAILURES: u32 = 5;
/// Default for `--auth-lockout`: the first lock-out, in seconds; each next one doubles.
pub const AUTH_LOCKOUT_SECS: u64 = 60;
/// The longest lock-out.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(3600);
/// An address is forgotten this long after its last failure (once no longer locked out).
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Most addresses tracked at once.
pub const MAX_TRACKED: usize = 100_000;

/// Why `/auth` may not be tried now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Locked {
    /// This address failed `--auth-failures` times: a lock-out of this long starts now.
    Started(Duration),
    /// This address is locked out: try again after this long.
    For(Duration),
    /// The table of failing addresses is full.
    Full,
}

#[derive(Debug, Default)]
struct Entry {
    /// Failures since the last lock-out ended (or since the first failure).
    failures: u32,
    /// Lock-outs so far: the next lasts `base × 2^lockouts`.
    lockouts: u32,
    locked_until_ms: u64,
    last_failure_ms: u64,
}

#[derive(Debug)]
pub struct Lockout {
    /// Failures allowed before a lock-out; 0 turns the lock-out off.
    max_failures: u32,
    base: Duration,
    table: Mutex<HashMap<IpAddr, Entry>>,
}

impl Lockout {
    pub fn new(max_failures: u32, base: Duration) -> Lockout {
        Lockout {
            max_failures,
            base,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, Entry>> {
        lock(&self.table)
    }

    /// Counts an `/auth` attempt from `ip` before its secret is looked at, or says why it may
    /// not be made. Counting first, under one lock, is what makes the limit hold for
    /// guesses sent in parallel: each attempt counts as a failure until
    /// [`Lockout::succeeded`] forgets it.
    pub fn attempt(&self, ip: IpAddr) -> Result<(), Locked> {
        self.attempt_at(ip, clock_ms())
    }

    fn attempt_at(&self, ip: IpAddr, now: u64) -> Result<(), Locked> {
        if self.max_failures == 0 {
            return Ok(());
        }
        let mut table = self.lock();
        let key = key(ip);
        if !table.contains_key(&key) && table.len() >= MAX_TRACKED {
            forget_old(&mut table, now);
            if table.len() >= MAX_TRACKED {
                return Err(Locked::Full);
            }
        }
        let entry = table.entry(key).or_default();
        if entry.locked_until_ms > now {
            let wait = Duration::from_millis(entry.locked_until_ms - now);
            return Err(Locked::For(wait));
        }
        entry.last_failure_ms = now;
        if entry.failures < self.max_failures {
            entry.failures += 1;
            return Ok(());
        }
        // The attempt after `max_failures` failures: refused, and the lock-out starts.
        let lockout = self
            .base
            .saturating_mul(1 << entry.lockouts.min(20))
            .min(MAX_LOCKOUT);
        entry.lockouts += 1;
        entry.failures = 0;
        entry.locked_until_ms = now + lockout.as_millis() as u64;
        Err(Locked::Started(lockout))
    }

    /// A correct `/auth` from `ip`: its failures are forgotten.
    pub fn succeeded(&self, ip: IpAddr) {
        if self.max_failures > 0 {
            self.lock().remove(&key(ip));
        }
    }

    /// Forgets addresses whose last failure is old and that are not locked out.
    pub fn sweep(&self) {
        forget_old(&mut self.lock(), clock_ms());
    }

    /// Addresses tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().len()
    }
}

fn forget_old(table: &mut HashMap<IpAddr, Entry>, now: u64) {
    let forget_ms = FORGET_AFTER.as_millis() as u64;
    table.retain(|_, e| e.locked_until_ms > now || e.last_failure_ms + forget_ms > now);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn failures_lead_to_growing_lockouts() {
        let l = Lockout::new(3, Duration::from_secs(60));
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(l.attempt_at(a, 1000), Ok(()));
        }
        let started = Err(Locked::Started(Duration::from_secs(60)));
        assert_eq!(l.attempt_at(a, 1000), started);
        assert_eq!(
            l.attempt_at(a, 31_000),
            Err(Locked::For(Duration::from_secs(30)))
        );
        // Over: three more tries, then twice as long.
        for _ in 0..3 {
            assert_eq!(l.attempt_at(a, 61_000), Ok(()));
        }
        let started = Err(Locked::Started(Duration::from_secs(120)));
        assert_eq!(l.attempt_at(a, 61_000), started);
        // Another address is not affected.
        assert_eq!(l.attempt_at(ip("192.0.2.2"), 61_000), Ok(()));
    }

    #[test]
    fn ipv6_counts_per_64_and_success_forgets() {
        let l = Lockout::new(1, Duration::from_secs(10));
        assert_eq!(l.attempt_at(ip("2001:db8::1"), 0), Ok(()));
        assert!(l.attempt_at(ip("2001:db8::2"), 0).is_err());
        assert!(l.attempt_at(ip("2001:db8::ffff"), 1).is_err());
        assert!(l.attempt_at(ip("2001:db8:0:1::1"), 1).is_ok());
        let b = ip("198.51.100.7");
        assert_eq!(l.attempt_at(b, 0), Ok(()));
        l.succeeded(b);
        assert_eq!(l.attempt_at(b, 0), Ok(()));
    }

    #[test]
    fn lockouts_are_capped_and_old_entries_forgotten() {
        let l = Lockout::new(1, Duration::from_secs(1800));
        let a = ip("203.0.113.9");
        let mut now = 0;
        let mut longest = Duration::ZERO;
        for _ in 0..10 {
            l.attempt_at(a, now).ok();
            if let Err(Locked::Started(d)) = l.attempt_at(a, now) {
                longest = d;
                now += d.as_millis() as u64;
            }
        }
        assert_eq!(longest, MAX_LOCKOUT);
        assert_eq!(l.tracked(), 1);
        forget_old(&mut l.lock(), now + FORGET_AFTER.as_millis() as u64 + 1);
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn zero_turns_it_off() {
        let l = Lockout::new(0, Duration::from_secs(60));
        for _ in 0..100 {
            assert_eq!(l.attempt_at(ip("192.0.2.1"), 0), Ok(()));
        }
    }
}
