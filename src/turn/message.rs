//! STUN/TURN message helpers on top of the `stun` crate, plus ChannelData,
//! which is parsed and framed here without copying (it is the hot path).

use super::TurnError;
use hmac::{Hmac, Mac};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use stun::attributes::*;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{
    CLASS_ERROR_RESPONSE, CLASS_SUCCESS_RESPONSE, MAGIC_COOKIE, Message, MessageClass, MessageType,
    Setter,
};

pub const ATTR_MESSAGE_INTEGRITY_SHA256: AttrType = AttrType(0x001C);
pub const ATTR_REQUESTED_ADDRESS_FAMILY: AttrType = AttrType(0x0017);
pub const ATTR_PASSWORD_ALGORITHM: AttrType = AttrType(0x001D);
pub const ATTR_USERHASH: AttrType = AttrType(0x001E);

/// Comprehension-required attributes (0x0000–0x7FFF) this server understands;
/// any other one in a request is answered with 420.
pub(super) const KNOWN_REQUIRED: &[AttrType] = &[
    ATTR_MAPPED_ADDRESS,
    ATTR_USERNAME,
    ATTR_MESSAGE_INTEGRITY,
    ATTR_ERROR_CODE,
    ATTR_UNKNOWN_ATTRIBUTES,
    ATTR_REALM,
    ATTR_NONCE,
    ATTR_XORMAPPED_ADDRESS,
    ATTR_CHANNEL_NUMBER,
    ATTR_LIFETIME,
    ATTR_XOR_PEER_ADDRESS,
    ATTR_DATA,
    ATTR_XOR_RELAYED_ADDRESS,
    ATTR_REQUESTED_ADDRESS_FAMILY,
    ATTR_EVEN_PORT,
    ATTR_REQUESTED_TRANSPORT,
    ATTR_RESERVATION_TOKEN,
    ATTR_MESSAGE_INTEGRITY_SHA256,
    ATTR_PASSWORD_ALGORITHM,
    ATTR_PRIORITY,
    ATTR_USE_CANDIDATE,
];

/// UDP, the only relay transport (REQUESTED-TRANSPORT value).
pub const PROTO_UDP: u8 = 17;

pub const HEADER: usize = 20;

/// Channel numbers. RFC 8656 narrowed them to 0x4000–0x4FFF, but RFC 5766
/// allowed up to 0x7FFF and coturn's clients still pick from that range.
pub const CHANNELS: std::ops::RangeInclusive<u16> = 0x4000..=0x7FFF;

/// Which integrity attribute a request carried; the answer uses the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    Sha1,
    Sha256,
}

/// What a datagram or the head of a stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stun,
    ChannelData,
}

/// Classifies a frame at the start of `buf` and returns its total length on
/// a stream (ChannelData padded to 4 bytes, RFC 8656 §12.5). `Ok(None)` means
/// more bytes are needed; an error means the stream cannot be TURN.
pub fn frame(buf: &[u8], stream: bool) -> Result<Option<(Kind, usize)>, TurnError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let (kind, total) = match buf[0] >> 6 {
        0 => {
            if len % 4 != 0 {
                return Err(TurnError::Malformed(format!(
                    "length {len} is not a multiple of 4"
                )));
            }
            (Kind::Stun, HEADER + len)
        }
        1 => {
            let padded = if stream { len.div_ceil(4) * 4 } else { len };
            (Kind::ChannelData, 4 + padded)
        }
        _ => {
            return Err(TurnError::Malformed(format!(
                "first byte {:#04x} starts neither STUN nor ChannelData",
                buf[0]
            )));
        }
    };
    Ok((buf.len() >= total).then_some((kind, total)))
}

/// Whether the first bytes of a stream open a STUN message: two zero bits,
/// then the magic cookie at bytes 4..8 (RFC 8489 §5). A TURN client's first
/// message is always STUN (ChannelData needs an allocation first), and no
/// HTTP request starts with a control byte, so this tells TURN from HTTP.
pub fn opens_stun(first: &[u8]) -> bool {
    first.len() >= 8
        && first[0] >> 6 == 0
        && first[4..8] == stun::message::MAGIC_COOKIE.to_be_bytes()
}

/// A ChannelData message: channel number and payload, borrowed from `buf`.
/// A datagram may carry padding after the payload; a shorter one is invalid.
pub fn channel_data(buf: &[u8]) -> Option<(u16, &[u8])> {
    if buf.len() < 4 {
        return None;
    }
    let channel = u16::from_be_bytes([buf[0], buf[1]]);
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if !CHANNELS.contains(&channel) || buf.len() < 4 + len {
        return None;
    }
    Some((channel, &buf[4..4 + len]))
}

/// Writes the 4-byte ChannelData header in front of a payload.
pub fn channel_header(channel: u16, len: usize) -> [u8; 4] {
    let c = channel.to_be_bytes();
    let l = (len as u16).to_be_bytes();
    [c[0], c[1], l[0], l[1]]
}

/// Parses one STUN message that must fill `buf` exactly.
pub fn parse(buf: &[u8]) -> Result<Message, TurnError> {
    if buf.len() < HEADER {
        return Err(TurnError::Malformed(format!(
            "{} bytes is shorter than a header",
            buf.len()
        )));
    }
    if buf[0] >> 6 != 0 {
        return Err(TurnError::Malformed(
            "the two leading bits are not zero".into(),
        ));
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if len % 4 != 0 || HEADER + len != buf.len() {
        return Err(TurnError::Malformed(format!(
            "length field {len} does not match {} bytes",
            buf.len()
        )));
    }
    if u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) != MAGIC_COOKIE {
        return Err(TurnError::Malformed("no magic cookie".into()));
    }
    let mut m = Message::new();
    m.raw.clear();
    m.raw.extend_from_slice(buf);
    m.decode()?;
    Ok(m)
}

/// Comprehension-required attributes of `m` that this server does not know.
pub fn unknown_required(m: &Message) -> Vec<AttrType> {
    m.attributes
        .0
        .iter()
        .map(|a| a.typ)
        .filter(|t| t.0 < 0x8000 && !KNOWN_REQUIRED.contains(t))
        .collect()
}

/// The first value of attribute `t`, borrowed.
pub fn attr(m: &Message, t: AttrType) -> Option<&[u8]> {
    m.attributes
        .0
        .iter()
        .find(|a| a.typ == t)
        .map(|a| a.value.as_slice())
}

/// A UTF-8 text attribute (USERNAME, REALM, NONCE); at most 763 bytes.
pub fn text(m: &Message, t: AttrType) -> Option<&str> {
    attr(m, t)
        .filter(|v| v.len() <= 763)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Decodes an XOR-…-ADDRESS value.
pub fn xor_addr(value: &[u8], tid: &[u8; 12]) -> Option<SocketAddr> {
    if value.len() < 8 {
        return None;
    }
    let port = u16::from_be_bytes([value[2], value[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let ip = match (value[1], value.len()) {
        (0x01, 8) => {
            let mut o = [0u8; 4];
            for i in 0..4 {
                o[i] = value[4 + i] ^ cookie[i];
            }
            IpAddr::V4(Ipv4Addr::from(o))
        }
        (0x02, 20) => {
            let mut o = [0u8; 16];
            for i in 0..16 {
                let k = if i < 4 { cookie[i] } else { tid[i - 4] };
                o[i] = value[4 + i] ^ k;
            }
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Every XOR-PEER-ADDRESS of a request, `None` if one of them is malformed.
pub fn peer_addrs(m: &Message) -> Option<Vec<SocketAddr>> {
    m.attributes
        .0
        .iter()
        .filter(|a| a.typ == ATTR_XOR_PEER_ADDRESS)
        .map(|a| xor_addr(&a.value, &m.transaction_id.0))
        .collect()
}

/// Adds an XOR-…-ADDRESS attribute.
pub fn add_xor_addr(m: &mut Message, t: AttrType, addr: SocketAddr) -> Result<(), TurnError> {
    stun::xoraddr::XorMappedAddress {
        ip: addr.ip(),
        port: addr.port(),
    }
    .add_to_as(m, t)?;
    Ok(())
}

/// A response of `class` to `req`, header written, no attributes yet.
pub fn reply(req: &Message, class: MessageClass) -> Message {
    let mut m = Message::new();
    m.typ = MessageType::new(req.typ.method, class);
    m.transaction_id = req.transaction_id;
    m.write_header();
    m
}

/// A success response to `req`.
pub fn success(req: &Message) -> Message {
    reply(req, CLASS_SUCCESS_RESPONSE)
}

/// An error response with the RFC's reason phrase.
pub fn error(req: &Message, code: u16) -> Message {
    let mut m = reply(req, CLASS_ERROR_RESPONSE);
    let attr = stun::error_code::ErrorCodeAttribute {
        code: stun::error_code::ErrorCode(code),
        reason: reason(code).as_bytes().to_vec(),
    };
    // Adding an ERROR-CODE to a fresh message cannot fail.
    let _ = attr.add_to(&mut m);
    m
}

pub fn reason(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        420 => "Unknown Attribute",
        437 => "Allocation Mismatch",
        438 => "Stale Nonce",
        440 => "Address Family not Supported",
        441 => "Wrong Credentials",
        442 => "Unsupported Transport Protocol",
        443 => "Peer Address Family Mismatch",
        486 => "Allocation Quota Reached",
        500 => "Server Error",
        508 => "Insufficient Capacity",
        _ => "Error",
    }
}

/// Appends MESSAGE-INTEGRITY(-SHA256) with `key` (when given) and FINGERPRINT.
pub fn seal(m: &mut Message, key: Option<(&[u8], Integrity)>) -> Result<(), TurnError> {
    match key {
        Some((key, Integrity::Sha1)) => MessageIntegrity(key.to_vec()).add_to(m)?,
        Some((key, Integrity::Sha256)) => {
            // The HMAC covers the header with the length already counting
            // this attribute (RFC 8489 §14.6).
            let length = m.length;
            m.length += 4 + 32;
            m.write_length();
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key)
                .map_err(|e| TurnError::Invalid(e.to_string()))?;
            mac.update(&m.raw);
            let v = mac.finalize().into_bytes();
            m.length = length;
            m.add(ATTR_MESSAGE_INTEGRITY_SHA256, &v);
        }
        None => {}
    }
    FINGERPRINT.add_to(m)?;
    Ok(())
}

/// Checks the integrity attribute of `m` against `key`. MESSAGE-INTEGRITY-
/// SHA256 wins when both are present (RFC 8489 §14.6). `None` when neither
/// is present, `Some(Err)` when the HMAC does not match.
pub fn verify(m: &Message, key: &[u8]) -> Option<Result<Integrity, ()>> {
    let raw = &m.raw;
    let mut offset = HEADER;
    let mut found: Option<(usize, AttrType, usize)> = None;
    while offset + 4 <= raw.len() {
        let t = AttrType(u16::from_be_bytes([raw[offset], raw[offset + 1]]));
        let len = usize::from(u16::from_be_bytes([raw[offset + 2], raw[offset + 3]]));
        if t == ATTR_MESSAGE_INTEGRITY_SHA256 {
            found = Some((offset, t, len));
            break;
        }
        if t == ATTR_MESSAGE_INTEGRITY && found.is_none() {
            found = Some((offset, t, len));
        }
        offset += 4 + len.div_ceil(4) * 4;
    }
    let (at, t, len) = found?;
    let value = raw.get(at + 4..at + 4 + len)?;
    let mut header = [0u8; HEADER];
    header.copy_from_slice(&raw[..HEADER]);
    let covered = (at - HEADER + 4 + len) as u16;
    header[2..4].copy_from_slice(&covered.to_be_bytes());
    let body = &raw[HEADER..at];
    if t == ATTR_MESSAGE_INTEGRITY {
        if len != 20 {
            return Some(Err(()));
        }
        let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(key) else {
            return Some(Err(()));
        };
        mac.update(&header);
        mac.update(body);
        Some(
            mac.verify_slice(value)
                .map(|()| Integrity::Sha1)
                .map_err(|_| ()),
        )
    } else {
        if !(16..=32).contains(&len) || len % 4 != 0 {
            return Some(Err(()));
        }
        let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
            return Some(Err(()));
        };
        mac.update(&header);
        mac.update(body);
        Some(
            mac.verify_truncated_left(value)
                .map(|()| Integrity::Sha256)
                .map_err(|_| ()),
        )
    }
}

/// The error code of a response, if it is an error response.
pub fn error_code(m: &Message) -> Option<u16> {
    let v = attr(m, ATTR_ERROR_CODE)?;
    (v.len() >= 4).then(|| u16::from(v[2] & 0x7) * 100 + u16::from(v[3]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun::agent::TransactionId;
    use stun::message::BINDING_REQUEST;

    fn request() -> Message {
        let mut m = Message::new();
        m.build(&[Box::new(BINDING_REQUEST), Box::new(TransactionId::new())])
            .unwrap();
        m
    }

    #[test]
    fn frames_split_at_every_byte() {
        let mut m = request();
        m.add(ATTR_SOFTWARE, b"x");
        seal(&mut m, None).unwrap();
        let mut stream = m.raw.clone();
        stream.extend_from_slice(&channel_header(0x4001, 5));
        stream.extend_from_slice(b"hello\0\0\0");
        for cut in 0..stream.len() {
            let got = frame(&stream[..cut], true).unwrap();
            if cut < m.raw.len() {
                assert_eq!(got, None, "cut {cut}");
            }
        }
        assert_eq!(
            frame(&stream, true).unwrap(),
            Some((Kind::Stun, m.raw.len()))
        );
        let rest = &stream[m.raw.len()..];
        assert_eq!(frame(rest, true).unwrap(), Some((Kind::ChannelData, 12)));
        assert_eq!(frame(rest, false).unwrap(), Some((Kind::ChannelData, 9)));
        assert_eq!(channel_data(&rest[..9]), Some((0x4001, &b"hello"[..])));
        assert_eq!(channel_data(&rest[..8]), None);
        // Neither STUN (00) nor ChannelData (01) in the two leading bits.
        assert!(frame(b"\x80\x01\x00\x00", true).is_err());
        assert!(frame(b"\x16\x03\x01\x02\x00", true).is_err(), "TLS record");
    }

    #[test]
    fn rejects_bad_lengths_and_cookies() {
        let m = request();
        assert!(parse(&m.raw).is_ok());
        assert!(parse(&m.raw[..19]).is_err());
        let mut long = m.raw.clone();
        long.extend_from_slice(&[0; 4]);
        assert!(parse(&long).is_err(), "length field must match");
        let mut odd = m.raw.clone();
        odd[3] = 2;
        odd.extend_from_slice(&[0; 2]);
        assert!(parse(&odd).is_err());
        let mut cookie = m.raw.clone();
        cookie[4] ^= 1;
        assert!(parse(&cookie).is_err());
        // An attribute whose length runs past the end.
        let mut over = m.raw.clone();
        over.extend_from_slice(&[0x80, 0x22, 0, 200]);
        over[3] = 4;
        assert!(parse(&over).is_err());
    }

    #[test]
    fn integrity_round_trips_and_detects_tampering() {
        for kind in [Integrity::Sha1, Integrity::Sha256] {
            let mut m = request();
            m.add(ATTR_USERNAME, b"alice");
            seal(&mut m, Some((b"key", kind))).unwrap();
            let parsed = parse(&m.raw).unwrap();
            assert_eq!(verify(&parsed, b"key"), Some(Ok(kind)));
            assert_eq!(verify(&parsed, b"other"), Some(Err(())));
            let mut bad = m.raw.clone();
            bad[HEADER + 4] ^= 1;
            assert_eq!(verify(&parse(&bad).unwrap(), b"key"), Some(Err(())));
        }
        assert_eq!(verify(&request(), b"key"), None);
    }

    #[test]
    fn xor_addresses_round_trip() {
        for addr in ["127.0.0.1:3478", "[::1]:49152"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut m = request();
            add_xor_addr(&mut m, ATTR_XOR_PEER_ADDRESS, addr).unwrap();
            add_xor_addr(&mut m, ATTR_XOR_PEER_ADDRESS, addr).unwrap();
            let m = parse(&m.raw).unwrap();
            assert_eq!(peer_addrs(&m), Some(vec![addr, addr]));
        }
    }

    #[test]
    fn unknown_required_attributes_are_listed() {
        let mut m = request();
        m.add(AttrType(0x7777), b"");
        m.add(AttrType(0x8888), b"");
        m.add(ATTR_LIFETIME, &[0, 0, 0, 1]);
        assert_eq!(
            unknown_required(&parse(&m.raw).unwrap()),
            vec![AttrType(0x7777)]
        );
    }
}
