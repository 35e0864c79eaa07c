//! Per-address rate limit on joins and pipes (`--rate`): a token bucket per client address.
//!
//! Each address may `/join` or `/pipe` `rate` times in a burst and then `rate` times per
//! minute. IPv6 clients are counted per /64, the block one subscriber usually gets, so that
//! stepping through addresses does not evade the limit. Buckets that are full again are
//! forgotten, so the table only holds addresses active within the last minute, and it never
//! holds more than [`MAX_TRACKED`]: past that, new addresses are not limited (the caps on
//! connections, rooms and waiting pipes still hold) until old ones refill.

use crate::lock::lock;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::server::clock::clock_ms;

/// Default for `--rate`: joins and pipes per address per minute.
pub const RATE_PER_MINUTE: u32 = 60;
/// Most addresses tracked at once.
pub const MAX_TRACKED: usize = 100_000;

#[derive(Debug)]
struct Bucket {
    /// Tokens, in thousandths, so refilling a fraction per millisecond loses nothing.
    milli: u64,
    at_ms: u64,
}

#[derive(Debug)]
pub struct Throttle {
    /// Tokens per minute and bucket size; 0 turns the limit off.
    rate: u32,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl Throttle {
    pub fn new(rate: u32) -> Throttle {
        Throttle {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, Bucket>> {
        lock(&self.buckets)
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Takes one token for `ip`, or says how long until one is available.
    pub fn take(&self, ip: IpAddr) -> Result<(), Duration> {
        self.take_at(ip, clock_ms())
    }

    fn take_at(&self, ip: IpAddr, now: u64) -> Result<(), Duration> {
        if self.rate == 0 {
            return Ok(());
        }
        let full = u64::from(self.rate) * 1000;
        let mut buckets = self.lock();
        if buckets.len() >= MAX_TRACKED {
            self.forget_full(&mut buckets, now);
        }
        let key = key(ip);
        if !buckets.contains_key(&key) && buckets.len() >= MAX_TRACKED {
            return Ok(());
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            milli: full,
            at_ms: now,
        });
        bucket.milli = self.refilled(bucket, now);
        bucket.at_ms = now;
        if bucket.milli >= 1000 {
            bucket.milli -= 1000;
            Ok(())
        } else {
            // rate tokens per 60,000 ms is rate thousandths per 60 ms.
            let missing = 1000 - bucket.milli;
            let ms = (missing * 60).div_ceil(u64::from(self.rate));
            Err(Duration::from_millis(ms))
        }
    }

    fn refilled(&self, bucket: &Bucket, now: u64) -> u64 {
        let full = u64::from(self.rate) * 1000;
        let gained = now.saturating_sub(bucket.at_ms) * u64::from(self.rate) / 60;
        (bucket.milli + gained).min(full)
    }

    /// Drops the buckets that have refilled: they would behave exactly like new ones.
    pub fn sweep(&self) {
        let mut buckets = self.lock();
        self.forget_full(&mut buckets, clock_ms());
    }

    fn forget_full(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: u64) {
        let full = u64::from(self.rate) * 1000;
        buckets.retain(|_, b| self.refilled(b, now) < full);
    }

    /// Addresses tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().len()
    }
}

/// IPv4 addresses count alone, IPv6 addresses by their /64.
pub(crate) fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_then_the_rate() {
        let t = Throttle::new(6); // one every 10 s
        let a = ip("10.0.0.1");
        for _ in 0..6 {
            assert!(t.take_at(a, 1000).is_ok());
        }
        assert_eq!(t.take_at(a, 1000), Err(Duration::from_secs(10)));
        assert_eq!(t.take_at(a, 6000), Err(Duration::from_secs(5)));
        assert!(t.take_at(a, 11_000).is_ok());
        assert!(t.take_at(a, 11_000).is_err());
        // Another address has its own bucket.
        assert!(t.take_at(ip("10.0.0.2"), 11_000).is_ok());
    }

    #[test]
    fn ipv6_counts_per_64() {
        let t = Throttle::new(1);
        assert!(t.take_at(ip("2001:db8:0:1::1"), 0).is_ok());
        assert!(t.take_at(ip("2001:db8:0:1::2"), 0).is_err());
        assert!(t.take_at(ip("2001:db8:0:2::1"), 0).is_ok());
    }

    #[test]
    fn full_buckets_are_forgotten() {
        let t = Throttle::new(60);
        t.take_at(ip("10.0.0.1"), 0).unwrap();
        assert_eq!(t.tracked(), 1);
        let mut buckets = t.lock();
        t.forget_full(&mut buckets, 500);
        assert_eq!(buckets.len(), 1, "not refilled yet");
        t.forget_full(&mut buckets, 1000);
        assert_eq!(buckets.len(), 0);
    }

    #[test]
    fn zero_is_off() {
        let t = Throttle::new(0);
        for _ in 0..1000 {
            assert!(t.take_at(ip("10.0.0.1"), 0).is_ok());
        }
        assert_eq!(t.tracked(), 0);
    }
}
