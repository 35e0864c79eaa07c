//! The client behind an HTTP reverse proxy (nginx `proxy_pass`, Caddy, HAProxy in HTTP
//! mode): `Forwarded` (RFC 7239) if the request has one, else `X-Forwarded-For`, believed
//! only from a `--trusted-proxy` address.
//!
//! Each proxy appends the address it got the request from, so the list reads from the
//! original client (left) to the last proxy before duet (right), and anything left of an
//! untrusted hop may be made up by that hop. So the list is walked from the right, past
//! every trusted proxy, and the first address that is not one is the client; a request
//! whose list holds nothing but trusted proxies is the leftmost's; one with an entry that
//! is not an address (`for=unknown`, an obfuscated `for=_hidden`, nonsense) stays the
//! proxy's own. A request from any other address is its
//! connection's, whatever its headers say.

use std::net::{IpAddr, SocketAddr};

use super::head::Head;
use crate::server::access::Cidr;

/// The client of a request that came from `peer`.
pub fn client(trusted: &[Cidr], peer: SocketAddr, head: &Head) -> SocketAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|t| t.contains(ip));
    if !is_trusted(peer.ip()) {
        return peer;
    }
    let Some(hops) = hops(head) else {
        return peer;
    };
    let mut found = peer;
    for hop in hops.into_iter().rev() {
        match hop {
            Some(hop) if is_trusted(hop.ip()) => found = hop,
            Some(hop) => return hop,
            None => return peer,
        }
    }
    found
}

/// The hops a request names, client first: `Forwarded`'s `for=` nodes if it has that
/// header, else `X-Forwarded-For`'s entries; None for one that is not an address. None at
/// all when a header cannot be read.
fn hops(head: &Head) -> Option<Vec<Option<SocketAddr>>> {
    let joined = |name| {
        let values: Vec<&[u8]> = head.all(name).collect();
        String::from_utf8(values.join(&b","[..])).ok()
    };
    let forwarded = joined("forwarded")?;
    if !forwarded.trim().is_empty() {
        return rfc7239::parse(&forwarded)
            .map(|element| {
                let node = element.ok()?.forwarded_for?;
                let ip = node.ip()?.to_canonical();
                Some(SocketAddr::new(ip, node.port.unwrap_or(0)))
            })
            .map(Some)
            .collect();
    }
    let list = joined("x-forwarded-for")?;
    let entries = list.split(',').map(str::trim).filter(|e| !e.is_empty());
    Some(entries.map(address).collect())
}

/// One entry: `192.0.2.7`, `192.0.2.7:5555`, `2001:db8::1` or `[2001:db8::1]:5555`. The port,
/// which proxies seldom send, is 0 when absent.
fn address(entry: &str) -> Option<SocketAddr> {
    if let Ok(addr) = entry.parse::<SocketAddr>() {
        return Some(SocketAddr::new(addr.ip().to_canonical(), addr.port()));
    }
    let bare = entry.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = bare.parse().ok()?;
    Some(SocketAddr::new(ip.to_canonical(), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(forwarded: &[&str]) -> Head {
        head_with("X-Forwarded-For", forwarded)
    }

    fn head_with(name: &str, forwarded: &[&str]) -> Head {
        let mut text = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for value in forwarded {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        super::super::head::parse(text.as_bytes()).expect("a head")
    }

    fn trusted() -> Vec<Cidr> {
        vec!["10.0.0.0/8".parse().unwrap()]
    }

    #[test]
    fn the_last_untrusted_hop_is_the_client() {
        let proxy: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let client = |values: &[&str]| super::client(&trusted(), proxy, &head(values));
        assert_eq!(client(&["192.0.2.7"]), "192.0.2.7:0".parse().unwrap());
        // A made-up entry left of the real client is ignored.
        let spoofed = client(&["203.0.113.1, 192.0.2.7, 10.0.0.2"]);
        assert_eq!(spoofed, "192.0.2.7:0".parse().unwrap());
        // Two headers are one list.
        let split = client(&["203.0.113.1", "[2001:db8::1]:5555"]);
        assert_eq!(split, "[2001:db8::1]:5555".parse().unwrap());
        assert_eq!(client(&["10.0.0.9"]), "10.0.0.9:0".parse().unwrap());
        assert_eq!(client(&[]), proxy);
        assert_eq!(client(&["192.0.2.7, nonsense"]), proxy);
    }

    #[test]
    fn the_standard_forwarded_header_is_read_the_same_way() {
        let proxy: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let client =
            |values: &[&str]| super::client(&trusted(), proxy, &head_with("Forwarded", values));
        let one = client(&["for=192.0.2.60;proto=http;by=203.0.113.43"]);
        assert_eq!(one, "192.0.2.60:0".parse().unwrap());
        let v6 = client(&[r#"for=203.0.113.1, for="[2001:db8:cafe::17]:4711""#]);
        assert_eq!(v6, "[2001:db8:cafe::17]:4711".parse().unwrap());
        // Trusted hops are passed, a made-up entry left of the client ignored.
        let spoofed = client(&["for=203.0.113.9, for=192.0.2.7", "for=10.0.0.2"]);
        assert_eq!(spoofed, "192.0.2.7:0".parse().unwrap());
        // Nodes that are not addresses, or nonsense: the proxy's own.
        assert_eq!(client(&["for=unknown"]), proxy);
        assert_eq!(client(&["for=_hidden"]), proxy);
        assert_eq!(client(&["for=\"unterminated"]), proxy);
        // Forwarded wins over X-Forwarded-For.
        let text =
            "GET / HTTP/1.1\r\nX-Forwarded-For: 192.0.2.1\r\nForwarded: for=192.0.2.2\r\n\r\n";
        let both = super::super::head::parse(text.as_bytes()).expect("a head");
        assert_eq!(
            super::client(&trusted(), proxy, &both),
            "192.0.2.2:0".parse().unwrap()
        );
    }

    #[test]
    fn only_a_trusted_proxy_is_believed() {
        let stranger: SocketAddr = "192.0.2.50:1234".parse().unwrap();
        let claimed = head(&["203.0.113.1"]);
        assert_eq!(client(&trusted(), stranger, &claimed), stranger);
    }
}
