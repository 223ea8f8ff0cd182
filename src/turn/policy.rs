//! Which peers the relay may talk to. A TURN server on a school's network is
//! an open door into it unless internal ranges are refused; this is checked
//! for every permission, channel and packet, so no bug elsewhere can make the
//! relay send to a denied address.

use crate::config::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a peer is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    Loopback,
    Unspecified,
    Private,
    LinkLocal,
    Metadata,
    Cgnat,
    Multicast,
    Broadcast,
    Documentation,
    Reserved,
    PortZero,
}

/// The relay policy: denied ranges, opened by `TURN_ALLOWED_PEERS`.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    allowed: Vec<IpNet>,
}

impl PeerPolicy {
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// Checks `peer`. `is_own_relay` tells whether it is one of this server's
    /// relayed addresses (always reachable, so two relayed participants reach
    /// each other).
    pub fn check(
        &self,
        peer: SocketAddr,
        is_own_relay: impl Fn(SocketAddr) -> bool,
    ) -> Result<(), Denied> {
        if peer.port() == 0 {
            return Err(Denied::PortZero);
        }
        let ip = peer.ip();
        let plain = unwrap_v4(ip);
        let Some(why) = classify(ip) else {
            return Ok(());
        };
        if is_own_relay(peer) || is_own_relay(SocketAddr::new(plain, peer.port())) {
            return Ok(());
        }
        // Cloud metadata stays closed even when an operator opens a wide range.
        if why == Denied::Metadata {
            return Err(why);
        }
        if self
            .allowed
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&plain))
        {
            return Ok(());
        }
        Err(why)
    }
}

/// The IPv4 address inside an IPv4-mapped or -compatible, NAT64, 6to4 or
/// Teredo address, or `ip` itself.
fn unwrap_v4(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let low = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        // ::ffff:a.b.c.d (mapped)
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        // ::a.b.c.d (deprecated compatible), but not :: and ::1
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(low),
        // 64:ff9b::/96 (NAT64 well-known prefix) and 64:ff9b:1::/48 (local use)
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] | [0x64, 0xff9b, 1, ..] => Some(low),
        // 2002:AABB:CCDD::/48 (6to4)
        [0x2002, a, b, ..] => Some(Ipv4Addr::from((u32::from(a) << 16) | u32::from(b))),
        // 2001:0::/32 (Teredo): the client's address is the last 32 bits, inverted
        [0x2001, 0, ..] => Some(Ipv4Addr::from(!u32::from(low))),
        _ => None,
    }
}

/// The denied range `ip` falls in, looking through embedded IPv4 forms.
pub fn classify(ip: IpAddr) -> Option<Denied> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                // Teredo servers sit in public space; the embedded client
                // address decides, but so does the server address.
                if v6.segments()[0] == 0x2001 && v6.segments()[1] == 0 {
                    let o = v6.octets();
                    let server = Ipv4Addr::new(o[4], o[5], o[6], o[7]);
                    if let Some(d) = classify_v4(server) {
                        return Some(d);
                    }
                }
                return classify_v4(v4);
            }
            classify_v6(v6)
        }
    }
}

fn in4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<Denied> {
    use Denied::*;
    let table: &[([u8; 4], u32, Denied)] = &[
        ([169, 254, 169, 254], 32, Metadata),
        ([255, 255, 255, 255], 32, Broadcast),
        ([0, 0, 0, 0], 8, Unspecified),
        ([10, 0, 0, 0], 8, Private),
        ([100, 64, 0, 0], 10, Cgnat),
        ([127, 0, 0, 0], 8, Loopback),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([172, 16, 0, 0], 12, Private),
        ([192, 0, 0, 0], 24, Reserved),
        ([192, 0, 2, 0], 24, Documentation),
        ([192, 88, 99, 0], 24, Reserved),
        ([192, 168, 0, 0], 16, Private),
        ([198, 18, 0, 0], 15, Reserved),
        ([198, 51, 100, 0], 24, Documentation),
        ([203, 0, 113, 0], 24, Documentation),
        ([224, 0, 0, 0], 4, Multicast),
        ([240, 0, 0, 0], 4, Reserved),
    ];
    table
        .iter()
        .find(|(net, prefix, _)| in4(ip, *net, *prefix))
        .map(|(_, _, why)| *why)
}

fn classify_v6(ip: Ipv6Addr) -> Option<Denied> {
    use Denied::*;
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some(Unspecified);
    }
    if ip.is_loopback() {
        return Some(Loopback);
    }
    match s[0] {
        0xff00..=0xffff => return Some(Multicast),
        0xfe80..=0xfebf => return Some(LinkLocal),
        // fec0::/10, deprecated site-local
        0xfec0..=0xfeff => return Some(Private),
        0xfc00..=0xfdff => return Some(Private),
        _ => {}
    }
    // 2001:db8::/32 and 3fff::/20 (documentation), 100::/64 (discard)
    if (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] == 0x3fff && s[1] < 0x1000) {
        return Some(Documentation);
    }
    if s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0 {
        return Some(Reserved);
    }
    // Anything else below 2000::/3 is unassigned or special-purpose.
    if s[0] < 0x2000 || s[0] >= 0x4000 {
        return Some(Reserved);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(policy: &PeerPolicy, addr: &str) -> Result<(), Denied> {
        let own: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let ip: IpAddr = addr.parse().unwrap();
        policy
            .check(SocketAddr::new(ip, 50000), |a| a == own)
            .and_then(|()| policy.check(SocketAddr::new(ip, 50001), |a| a == own))
    }

    #[test]
    fn address_table() {
        use Denied::*;
        let p = PeerPolicy::default();
        let table: &[(&str, Result<(), Denied>)] = &[
            ("8.8.8.8", Ok(())),
            ("1.1.1.1", Ok(())),
            ("2606:4700::1111", Ok(())),
            ("127.0.0.1", Err(Loopback)),
            ("127.8.9.1", Err(Loopback)),
            ("0.0.0.0", Err(Unspecified)),
            ("10.1.2.3", Err(Private)),
            ("172.16.0.1", Err(Private)),
            ("172.31.255.255", Err(Private)),
            ("172.32.0.1", Ok(())),
            ("192.168.1.1", Err(Private)),
            ("169.254.1.1", Err(LinkLocal)),
            ("169.254.169.254", Err(Metadata)),
            ("100.64.0.1", Err(Cgnat)),
            ("100.127.255.255", Err(Cgnat)),
            ("100.128.0.1", Ok(())),
            ("224.0.0.251", Err(Multicast)),
            ("239.255.255.250", Err(Multicast)),
            ("255.255.255.255", Err(Broadcast)),
            ("192.0.2.1", Err(Documentation)),
            ("198.51.100.7", Err(Documentation)),
            ("203.0.113.9", Err(Documentation)),
            ("240.0.0.1", Err(Reserved)),
            ("::", Err(Unspecified)),
            ("::1", Err(Loopback)),
            ("fe80::1", Err(LinkLocal)),
            ("fd00::1", Err(Private)),
            ("fd00:ec2::254", Err(Private)),
            ("ff02::1", Err(Multicast)),
            ("2001:db8::1", Err(Documentation)),
            // IPv4-mapped, -compatible, NAT64, 6to4 and Teredo forms.
            ("::ffff:127.0.0.1", Err(Loopback)),
            ("::ffff:169.254.169.254", Err(Metadata)),
            ("::ffff:10.0.0.1", Err(Private)),
            ("::ffff:8.8.8.8", Ok(())),
            ("::10.0.0.1", Err(Private)),
            ("64:ff9b::a9fe:a9fe", Err(Metadata)),
            ("64:ff9b::c0a8:0101", Err(Private)),
            ("64:ff9b:1::7f00:1", Err(Loopback)),
            ("64:ff9b::808:808", Ok(())),
            ("2002:7f00:0001::1", Err(Loopback)),
            ("2002:a9fe:a9fe::", Err(Metadata)),
            ("2002:0808:0808::1", Ok(())),
            // Teredo with client 10.0.0.1 (inverted f5ff:fffe) and a public server.
            ("2001:0:0808:0808::f5ff:fffe", Err(Private)),
            ("2001:0:0808:0808::f7f7:f7f7", Ok(())),
            // Teredo whose server part is loopback.
            ("2001:0:7f00:1::f7f7:f7f7", Err(Loopback)),
        ];
        for (addr, want) in table {
            assert_eq!(verdict(&p, addr), *want, "{addr}");
        }
    }

    #[test]
    fn own_relay_addresses_pass_but_only_exactly() {
        let p = PeerPolicy::default();
        let own: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let is_own = |a: SocketAddr| a == own;
        assert_eq!(p.check(own, is_own), Ok(()));
        assert_eq!(
            p.check("[::ffff:127.0.0.1]:50000".parse().unwrap(), is_own),
            Ok(())
        );
        assert_eq!(
            p.check("127.0.0.1:50001".parse().unwrap(), is_own),
            Err(Denied::Loopback)
        );
        assert_eq!(
            p.check("8.8.8.8:0".parse().unwrap(), is_own),
            Err(Denied::PortZero)
        );
    }

    #[test]
    fn allowed_peers_open_a_lan() {
        let p = PeerPolicy::new(vec![
            "10.20.0.0/16".parse().unwrap(),
            "127.0.0.0/8".parse().unwrap(),
        ]);
        let none = |_| false;
        assert_eq!(p.check("10.20.3.4:9".parse().unwrap(), none), Ok(()));
        assert_eq!(
            p.check("[::ffff:10.20.3.4]:9".parse().unwrap(), none),
            Ok(())
        );
        assert_eq!(
            p.check("10.21.3.4:9".parse().unwrap(), none),
            Err(Denied::Private)
        );
        assert_eq!(p.check("127.0.0.1:9".parse().unwrap(), none), Ok(()));
        assert_eq!(
            p.check("169.254.169.254:80".parse().unwrap(), none),
            Err(Denied::Metadata)
        );
        let wide = PeerPolicy::new(vec!["0.0.0.0/0".parse().unwrap()]);
        assert_eq!(wide.check("10.0.0.1:9".parse().unwrap(), none), Ok(()));
        assert_eq!(
            wide.check("169.254.169.254:80".parse().unwrap(), none),
            Err(Denied::Metadata)
        );
    }
}
