//! Who may connect: `--allow` and `--deny` address ranges, and the shared secret of
//! `--secret-file`.
//!
//! Ranges are checked once, at accept, before a connection takes a slot: a denied client gets
//! `* error: access denied` and is closed. The secret is checked by the connection itself when
//! the client sends `/auth SECRET`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address range, `10.0.0.0/8` or `2001:db8::/32`; a bare address is a range of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in this range. IPv4 ranges also match IPv4-mapped IPv6 addresses
    /// (`::ffff:10.1.2.3`), which is how a dual-stack listener sees IPv4 clients.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the first `bits` bits of `a` and `b` are equal.
fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = (usize::from(bits / 8), bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[whole] & mask == b[whole] & mask
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = || format!("bad address range {s:?}: use ADDRESS or ADDRESS/BITS");
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, bits)) => (addr, Some(bits)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let net = net.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(bits) => bits
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(bad)?,
        };
        Ok(Cidr { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// The `--allow` and `--deny` lists.
#[derive(Clone, Debug, Default)]
pub struct Access {
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
}

impl Access {
    /// Denied if any `--deny` range matches; otherwise allowed if there is no `--allow` or one
    /// of them matches.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.deny.iter().any(|c| c.contains(ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip))
    }
}

/// Compares a client's secret with ours in time that depends only on their lengths, so that
/// timing does not tell an attacker how much of a guess was right.
pub fn secret_matches(given: &[u8], secret: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    // Lengths are compared first (a length is no secret); equal lengths in constant time.
    given.ct_eq(secret).into()
}

/// The host of `host[:port]` or `[v6]:port`.
pub fn authority_host(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    authority.split(':').next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse_and_match() {
        let lan: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(lan.contains(ip("10.200.1.2")));
        assert!(!lan.contains(ip("11.0.0.1")));
        assert!(lan.contains(ip("::ffff:10.9.9.9")), "mapped IPv4 matches");
        assert!(!lan.contains(ip("::1")));

        let odd: Cidr = "192.168.4.0/22".parse().unwrap();
        assert!(odd.contains(ip("192.168.7.255")));
        assert!(!odd.contains(ip("192.168.8.0")));

        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.0.0.1")));

        let one: Cidr = "::1".parse().unwrap();
        assert_eq!(one.to_string(), "::1/128");
        assert!(one.contains(ip("::1")));

        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        let mapped: Cidr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(mapped.to_string(), "127.0.0.1/32");

        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "host",
            "10.0.0.0/-1",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn deny_wins_over_allow() {
        let access = Access {
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            deny: vec!["10.0.0.66".parse().unwrap()],
        };
        assert!(access.permits(ip("10.1.1.1")));
        assert!(!access.permits(ip("10.0.0.66")));
        assert!(!access.permits(ip("192.168.1.1")));
        assert!(Access::default().permits(ip("192.168.1.1")));
    }

    #[test]
    fn secrets_compare() {
        assert!(secret_matches(b"hunter2", b"hunter2"));
        assert!(!secret_matches(b"hunter3", b"hunter2"));
        assert!(!secret_matches(b"hunter", b"hunter2"));
        assert!(!secret_matches(b"hunter22", b"hunter2"));
        assert!(!secret_matches(b"", b"hunter2"));
    }
}
