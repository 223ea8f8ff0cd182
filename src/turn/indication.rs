//! Send and Data indications read and written in place. They carry every
//! packet of a client that binds no channel, so unlike other messages they
//! skip the `stun` crate's decoder and encoder, which copy each attribute
//! value into a fresh vector: no heap allocation per packet.

use super::message::KNOWN_REQUIRED;
use std::net::{IpAddr, SocketAddr};
use stun::attributes::{ATTR_DATA, ATTR_FINGERPRINT, ATTR_XOR_PEER_ADDRESS, AttrType};
use stun::fingerprint::fingerprint_value;
use stun::message::MAGIC_COOKIE;

const SEND_INDICATION: u16 = 0x0016;
const DATA_INDICATION: u16 = 0x0017;
const HEADER: usize = 20;

/// Room in front of a payload for the longest Data indication head (IPv6).
pub const HEADROOM: usize = HEADER + 4 + 20 + 4;

/// The peer address and the data of a Send indication, borrowed from `raw`;
/// `None` when `raw` is not a well-formed one (wrong type or lengths, a bad
/// FINGERPRINT, an unknown comprehension-required attribute).
pub fn read_send(raw: &[u8]) -> Option<(SocketAddr, &[u8])> {
    if raw.len() < HEADER
        || u16::from_be_bytes([raw[0], raw[1]]) != SEND_INDICATION
        || raw[4..8] != MAGIC_COOKIE.to_be_bytes()
        || usize::from(u16::from_be_bytes([raw[2], raw[3]])) != raw.len() - HEADER
    {
        return None;
    }
    let tid: &[u8; 12] = raw[8..HEADER].try_into().ok()?;
    let (mut peer, mut data) = (None, None);
    let mut at = HEADER;
    while at < raw.len() {
        let head = raw.get(at..at + 4)?;
        let typ = AttrType(u16::from_be_bytes([head[0], head[1]]));
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let value = raw.get(at + 4..at + 4 + len)?;
        if typ == ATTR_FINGERPRINT {
            // Last, and over everything before it.
            let want = fingerprint_value(&raw[..at]).to_be_bytes();
            if len != 4 || at + 8 != raw.len() || value != want {
                return None;
            }
        } else if typ == ATTR_XOR_PEER_ADDRESS && peer.is_none() {
            peer = Some(super::message::xor_addr(value, tid)?);
        } else if typ == ATTR_DATA && data.is_none() {
            data = Some(value);
        } else if typ.0 < 0x8000 && !KNOWN_REQUIRED.contains(&typ) {
            return None;
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    Some((peer?, data?))
}

/// Length of the Data indication head for `peer`: header, XOR-PEER-ADDRESS
/// and the DATA attribute's type and length.
pub fn data_head_len(peer: SocketAddr) -> usize {
    HEADER + 4 + if peer.is_ipv4() { 8 } else { 20 } + 4
}

/// Writes the head of a Data indication from `peer` carrying `len` bytes
/// into `head` (exactly [`data_head_len`] long); the payload and its padding
/// to 4 bytes follow it. `None` if the message would exceed STUN's length.
pub fn write_data_head(head: &mut [u8], tid: [u8; 12], peer: SocketAddr, len: usize) -> Option<()> {
    let addr_len: usize = if peer.is_ipv4() { 8 } else { 20 };
    let body = u16::try_from(4 + addr_len + 4 + len.div_ceil(4) * 4).ok()?;
    let cookie = MAGIC_COOKIE.to_be_bytes();
    head[0..2].copy_from_slice(&DATA_INDICATION.to_be_bytes());
    head[2..4].copy_from_slice(&body.to_be_bytes());
    head[4..8].copy_from_slice(&cookie);
    head[8..20].copy_from_slice(&tid);
    head[20..22].copy_from_slice(&ATTR_XOR_PEER_ADDRESS.0.to_be_bytes());
    head[22..24].copy_from_slice(&(addr_len as u16).to_be_bytes());
    let v = &mut head[24..24 + addr_len];
    v[0] = 0;
    let port = peer.port() ^ (MAGIC_COOKIE >> 16) as u16;
    v[2..4].copy_from_slice(&port.to_be_bytes());
    match peer.ip() {
        IpAddr::V4(ip) => {
            v[1] = 0x01;
            for (i, o) in ip.octets().iter().enumerate() {
                v[4 + i] = o ^ cookie[i];
            }
        }
        IpAddr::V6(ip) => {
            v[1] = 0x02;
            for (i, o) in ip.octets().iter().enumerate() {
                v[4 + i] = o ^ if i < 4 { cookie[i] } else { tid[i - 4] };
            }
        }
    }
    let d = 24 + addr_len;
    head[d..d + 2].copy_from_slice(&ATTR_DATA.0.to_be_bytes());
    head[d + 2..d + 4].copy_from_slice(&u16::try_from(len).ok()?.to_be_bytes());
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::turn::message::{self as msg, add_xor_addr, seal};
    use stun::agent::TransactionId;
    use stun::message::{CLASS_INDICATION, METHOD_DATA, METHOD_SEND, Message, MessageType};

    fn send(peer: SocketAddr, data: &[u8], fingerprint: bool) -> Vec<u8> {
        let mut m = Message::new();
        m.typ = MessageType::new(METHOD_SEND, CLASS_INDICATION);
        m.transaction_id = TransactionId::new();
        m.write_header();
        add_xor_addr(&mut m, ATTR_XOR_PEER_ADDRESS, peer).unwrap();
        m.add(ATTR_DATA, data);
        if fingerprint {
            seal(&mut m, None).unwrap();
        } else {
            m.write_length();
        }
        m.raw
    }

    #[test]
    fn send_indications_read_as_the_stun_crate_writes_them() {
        for peer in ["203.0.113.9:4000", "[2001:db8::7]:5000"] {
            let peer: SocketAddr = peer.parse().unwrap();
            for fp in [false, true] {
                let raw = send(peer, b"hello", fp);
                assert_eq!(read_send(&raw), Some((peer, &b"hello"[..])), "{peer} {fp}");
            }
        }
    }

    #[test]
    fn malformed_send_indications_are_refused() {
        let peer: SocketAddr = "203.0.113.9:4000".parse().unwrap();
        let good = send(peer, b"hello", true);
        // Every truncation, and every single flipped byte but in the data,
        // the transaction id's unused part or padding, is refused.
        for n in 0..good.len() {
            assert_eq!(read_send(&good[..n]), None, "cut at {n}");
        }
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(read_send(&bad), None, "fingerprint");
        let mut unknown = Message::new();
        unknown.typ = MessageType::new(METHOD_SEND, CLASS_INDICATION);
        unknown.write_header();
        add_xor_addr(&mut unknown, ATTR_XOR_PEER_ADDRESS, peer).unwrap();
        unknown.add(ATTR_DATA, b"x");
        unknown.add(AttrType(0x7777), b"");
        unknown.write_length();
        assert_eq!(read_send(&unknown.raw), None);
        let no_data = &send(peer, b"", false);
        assert_eq!(read_send(no_data), Some((peer, &b""[..])));
    }

    #[test]
    fn data_indications_parse_with_the_stun_crate() {
        for peer in ["198.51.100.3:3478", "[2001:db8::1]:9"] {
            let peer: SocketAddr = peer.parse().unwrap();
            for payload in [&b""[..], b"abc", b"abcd", &[7u8; 1001]] {
                let head = data_head_len(peer);
                let mut buf = vec![0u8; head + payload.len() + 3];
                let tid = TransactionId::new().0;
                write_data_head(&mut buf[..head], tid, peer, payload.len()).unwrap();
                buf[head..head + payload.len()].copy_from_slice(payload);
                buf.truncate(head + payload.len().div_ceil(4) * 4);
                let m = msg::parse(&buf).unwrap();
                assert_eq!(m.typ, MessageType::new(METHOD_DATA, CLASS_INDICATION));
                let got = msg::attr(&m, ATTR_XOR_PEER_ADDRESS).and_then(|v| msg::xor_addr(v, &tid));
                assert_eq!(got, Some(peer));
                assert_eq!(msg::attr(&m, ATTR_DATA), Some(payload));
            }
        }
        let peer: SocketAddr = "198.51.100.3:3478".parse().unwrap();
        let mut head = [0u8; HEADROOM];
        assert_eq!(
            write_data_head(&mut head[..36], [0; 12], peer, 65_530),
            None
        );
    }
}
