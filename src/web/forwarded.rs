//! The client's address and scheme behind a reverse proxy.
//!
//! `X-Forwarded-For` and `X-Forwarded-Proto` are believed only when the
//! direct peer is one of `TRUSTED_PROXIES`; from anyone else they are
//! ignored, so a client cannot claim to be loopback or another user.

use http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// The scheme the client used to reach invigil (`https` unless a trusted
/// proxy says otherwise), for building absolute URLs and redirects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheme(pub &'static str);

/// Which peers may speak for clients.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client address and scheme for a request from `peer` that arrived
    /// over `scheme`.
    ///
    /// `X-Forwarded-For` is read from the right: each trusted hop appended
    /// the address it saw, so the first untrusted address is the client and
    /// anything left of it may be forged.
    pub fn client(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
        scheme: &'static str,
    ) -> (SocketAddr, Scheme) {
        if !self.trusts(peer.ip()) {
            return (peer, Scheme(scheme));
        }
        let hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .map(|hop| {
                hop.parse::<IpAddr>()
                    .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
            })
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        let client = hops
            .iter()
            .rev()
            .find(|ip| !self.trusts(**ip))
            .or(hops.first())
            .map_or(peer, |ip| SocketAddr::new(canonical(*ip), 0));
        let proto = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(',')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        let scheme = match proto.as_deref() {
            Some("https") => "https",
            Some("http") => "http",
            _ => scheme,
        };
        (client, Scheme(scheme))
    }
}

/// `::ffff:127.0.0.1` from a dual-stack socket is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str, proto: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        if let Some(p) = proto {
            h.insert("x-forwarded-proto", p.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_peers() {
        let trusted = TrustedProxies(vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ]);
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let stranger: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let h = headers("198.51.100.1, 203.0.113.9, 10.1.1.1", Some("http"));

        let (client, scheme) = trusted.client(proxy, &h, "https");
        assert_eq!(client.ip().to_string(), "203.0.113.9");
        assert_eq!(scheme, Scheme("http"));

        let (client, scheme) = trusted.client(stranger, &h, "https");
        assert_eq!(client, stranger);
        assert_eq!(scheme, Scheme("https"));

        // All hops trusted: the leftmost is the origin.
        let (client, _) = trusted.client(proxy, &headers("10.2.2.2", None), "http");
        assert_eq!(client.ip().to_string(), "10.2.2.2");
        // Garbage is ignored rather than half-believed.
        let (client, _) = trusted.client(proxy, &headers("nonsense, 1.2.3.4", None), "http");
        assert_eq!(client, proxy);
        // Nothing trusted: headers never matter.
        let none = TrustedProxies::default();
        assert_eq!(none.client(proxy, &h, "https").0, proxy);
    }
}
