//! Who the client is behind reverse proxies: the address that rate limits,
//! lockouts and logs use.
//!
//! `Forwarded` (RFC 7239) and `X-Forwarded-For` are believed only when the
//! TCP peer is one of `[server] trusted_proxies`, and only as far back as
//! the chain stays inside that set: walking the list from the right (the hop
//! nearest to us), the first address that is not a trusted proxy is the
//! client. Anything a client wrote further left is its own claim and
//! ignored. Without trusted proxies (the default) the peer is the client.

use std::net::{IpAddr, Ipv6Addr};

use http::HeaderMap;
use ipnet::IpNet;

/// The client's address, resolved once per request (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The client address of a request that arrived from `peer`.
pub fn client_addr(headers: &HeaderMap, peer: IpAddr, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // `Forwarded` wins when present (it is the standard); otherwise XFF.
    let chain = match forwarded_for(headers) {
        Some(chain) => chain,
        None => match x_forwarded_for(headers) {
            Some(chain) => chain,
            None => return peer,
        },
    };
    let mut client = peer;
    for hop in chain.iter().rev() {
        match hop {
            // An element we cannot read ("unknown", an obfuscated name,
            // garbage): the proxy that wrote it vouches for nothing more.
            None => return client,
            Some(ip) => {
                client = *ip;
                if !is_trusted(ip) {
                    return client;
                }
            }
        }
    }
    client
}

/// The address lockouts and rate limits count under: IPv4 as is, IPv6 by its
/// /64 (one subscriber's whole allocation is one client).
pub fn grouped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The subject key of an address: `203.0.113.7`, or `2001:db8:1:2::/64`.
pub fn subject_key(ip: IpAddr) -> String {
    match grouped(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("{v6}/64"),
    }
}

/// Every `for=` of every `Forwarded` header, in order; `None` for an
/// element we cannot read. `None` overall when there is no such header.
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let values: Vec<&str> = headers
        .get_all(http::header::FORWARDED)
        .iter()
        .map(|v| v.to_str().unwrap_or("\u{0}"))
        .collect();
    if values.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for element in values.iter().flat_map(|v| v.split(',')) {
        let found = element.split(';').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("for")
                .then(|| parse_node(v.trim().trim_matches('"')))
        });
        out.push(found.flatten());
    }
    Some(out)
}

fn x_forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let values: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().unwrap_or("\u{0}"))
        .collect();
    if values.is_empty() {
        return None;
    }
    Some(
        values
            .iter()
            .flat_map(|v| v.split(','))
            .map(|s| parse_node(s.trim()))
            .collect(),
    )
}

/// `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]`, `[2001:db8::1]:4711`,
/// `2001:db8::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (inside, _) = rest.split_once(']')?;
        return inside.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const PROXY: &str = "10.0.0.5";

    fn trusted() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_writes() {
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(
            client_addr(&h, ip("203.0.113.9"), &trusted()),
            ip("203.0.113.9")
        );
        assert_eq!(client_addr(&h, ip(PROXY), &[]), ip(PROXY));
    }

    #[test]
    fn the_first_untrusted_hop_from_the_right_is_the_client() {
        // The client forged "6.6.6.6" on the left; the proxy appended its peer.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7")]);
        assert_eq!(client_addr(&h, ip(PROXY), &trusted()), ip("198.51.100.7"));
        // Two trusted proxies in a row.
        let h = headers(&[("x-forwarded-for", "198.51.100.7, 10.1.1.1")]);
        assert_eq!(client_addr(&h, ip(PROXY), &trusted()), ip("198.51.100.7"));
        // Split over two header lines.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(client_addr(&h, ip(PROXY), &trusted()), ip("198.51.100.7"));
        // No header: the proxy itself.
        assert_eq!(
            client_addr(&HeaderMap::new(), ip(PROXY), &trusted()),
            ip(PROXY)
        );
    }

    #[test]
    fn forwarded_is_read_and_preferred() {
        let h = headers(&[
            (
                "forwarded",
                r#"for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https"#,
            ),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(
            client_addr(&h, ip(PROXY), &trusted()),
            ip("2001:db8:cafe::17")
        );
        let h = headers(&[("forwarded", "for=192.0.2.60:8080;by=10.0.0.1")]);
        assert_eq!(client_addr(&h, ip(PROXY), &trusted()), ip("192.0.2.60"));
    }

    #[test]
    fn an_unreadable_hop_stops_the_walk() {
        let h = headers(&[("forwarded", "for=198.51.100.7, for=unknown")]);
        assert_eq!(client_addr(&h, ip(PROXY), &trusted()), ip(PROXY));
        let h = headers(&[("x-forwarded-for", "198.51.100.7, garbage, 10.2.2.2")]);
        assert_eq!(client_addr(&h, ip(PROXY), &trusted()), ip("10.2.2.2"));
    }

    #[test]
    fn ipv6_counts_by_its_slash_64() {
        assert_eq!(subject_key(ip("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
        assert_eq!(
            subject_key(ip("2001:db8:1:2:aaaa::1")),
            subject_key(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            subject_key(ip("2001:db8:1:3::1")),
            subject_key(ip("2001:db8:1:2::1"))
        );
        assert_eq!(subject_key(ip("::ffff:192.0.2.1")), "192.0.2.1");
        assert_eq!(subject_key(ip("192.0.2.1")), "192.0.2.1");
    }
}
