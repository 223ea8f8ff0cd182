//! Credentials: the static `TURN_USER`, short-lived REST credentials
//! (`expiry:participant`, password = base64(HMAC-SHA1(secret, username)), the
//! convention of coturn's `use-auth-secret`), stateless nonces, and minting of
//! the `RTCIceServer` list handed to browsers.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The long-term credential key, MD5(username:realm:password) (RFC 8489 §9.2.2).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> Vec<u8> {
    stun::integrity::MessageIntegrity::new_long_term_integrity(
        username.to_string(),
        realm.to_string(),
        password.to_string(),
    )
    .0
}

/// The password of a REST username: base64(HMAC-SHA1(secret, username)).
pub fn rest_password(secret: &[u8], username: &str) -> String {
    // HMAC accepts keys of any length; the error arm is unreachable.
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// What a username resolves to.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Key(Vec<u8>),
    Unknown,
    Expired,
}

/// Nonce check outcome.
#[derive(Debug, PartialEq, Eq)]
pub enum NonceCheck {
    Valid,
    /// Ours but expired (answer 438 with a fresh one).
    Stale,
    /// Not ours, forged, or minted for another client address (also 438:
    /// the client then retries with the fresh nonce in the answer).
    Foreign,
}

/// Checks usernames and nonces.
pub struct Authenticator {
    realm: String,
    static_user: Option<(String, Vec<u8>)>,
    secret: Vec<u8>,
    nonce_key: [u8; 32],
    nonce_ttl: Duration,
}

impl Authenticator {
    pub fn new(
        realm: &str,
        static_user: Option<(String, String)>,
        secret: Vec<u8>,
        nonce_ttl: Duration,
    ) -> Self {
        let mut nonce_key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce_key);
        Self {
            realm: realm.to_string(),
            static_user: static_user.map(|(u, p)| {
                let key = long_term_key(&u, realm, &p);
                (u, key)
            }),
            secret,
            nonce_key,
            nonce_ttl,
        }
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The key for `username` at time `now` (Unix seconds).
    pub fn key_for(&self, username: &str, now: u64) -> Lookup {
        if let Some((user, key)) = &self.static_user
            && user == username
        {
            return Lookup::Key(key.clone());
        }
        // coturn accepts `expiry` alone and `expiry:participant`.
        let expiry = username.split_once(':').map_or(username, |(e, _)| e);
        let Ok(expiry) = expiry.parse::<u64>() else {
            return Lookup::Unknown;
        };
        if expiry <= now {
            return Lookup::Expired;
        }
        let password = rest_password(&self.secret, username);
        Lookup::Key(long_term_key(username, &self.realm, &password))
    }

    fn nonce_mac(&self, expiry: u64, client: SocketAddr) -> [u8; 8] {
        let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(&self.nonce_key) else {
            return [0; 8];
        };
        mac.update(&expiry.to_be_bytes());
        match client.ip() {
            IpAddr::V4(v4) => mac.update(&v4.octets()),
            IpAddr::V6(v6) => mac.update(&v6.octets()),
        }
        mac.update(&client.port().to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 8];
        out.copy_from_slice(&full[..8]);
        out
    }

    /// A fresh nonce for `client`: its expiry and an HMAC binding it to the
    /// client address and port, so no state is kept and a nonce replayed from
    /// another 5-tuple is refused.
    pub fn nonce(&self, client: SocketAddr) -> String {
        let expiry = unix_now_ms() + self.nonce_ttl.as_millis() as u64;
        format!(
            "{expiry:016x}{}",
            hex::encode(self.nonce_mac(expiry, client))
        )
    }

    pub fn check_nonce(&self, nonce: &str, client: SocketAddr) -> NonceCheck {
        if nonce.len() != 32 {
            return NonceCheck::Foreign;
        }
        let (Ok(expiry), Ok(mac)) = (
            u64::from_str_radix(&nonce[..16], 16),
            hex::decode(&nonce[16..]),
        ) else {
            return NonceCheck::Foreign;
        };
        let want = self.nonce_mac(expiry, client);
        if !constant_eq(&mac, &want) {
            return NonceCheck::Foreign;
        }
        if expiry <= unix_now_ms() {
            NonceCheck::Stale
        } else {
            NonceCheck::Valid
        }
    }
}

fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One `RTCIceServer` entry as a browser takes it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// The list handed to `new RTCPeerConnection({ iceServers })`, and when the
/// credentials stop working.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IceServers {
    #[serde(rename = "iceServers")]
    pub ice_servers: Vec<IceServer>,
    /// Unix seconds.
    pub expires: u64,
    /// Seconds the credentials stay valid from now.
    pub ttl: u64,
}

/// Where the browsers' TURN server is.
#[derive(Debug, Clone)]
pub enum Target {
    /// The embedded relay: `host` as browsers reach it when the request does
    /// not say, the public address from `TURN_EXTERNAL_IP` if any, its TURN
    /// port and the HTTPS port (TURN over TLS; `None` behind a reverse
    /// proxy, which terminates TLS and carries no TURN).
    Embedded {
        host: String,
        external_ip: Option<IpAddr>,
        turn_port: u16,
        https_port: Option<u16>,
    },
    /// An external coturn configured with `TURN_URI` (and the same
    /// `static-auth-secret`): its URLs.
    External { urls: Vec<String> },
}

/// Mints per-participant credentials.
#[derive(Clone)]
pub struct Minter {
    secret: Vec<u8>,
    target: Target,
}

impl Minter {
    pub fn new(secret: Vec<u8>, target: Target) -> Self {
        Self { secret, target }
    }

    /// The ICE server list for `participant`, valid for `ttl`, naming the
    /// embedded relay by its default host.
    pub fn mint(&self, participant: &str, ttl: Duration) -> IceServers {
        mint_at(self, None, participant, ttl, unix_now())
    }

    /// Like [`Minter::mint`] for a browser that reached our HTTPS port as
    /// `host:port` (the request's Host; behind NAT or a port forward, the
    /// port it used may not be the one we listen on).
    pub fn mint_for(&self, host: &str, port: u16, participant: &str, ttl: Duration) -> IceServers {
        mint_at(self, Some((host, port)), participant, ttl, unix_now())
    }
}

/// `host` as it goes into a URL: IPv6 literals in brackets.
fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn mint_at(
    minter: &Minter,
    asked: Option<(&str, u16)>,
    participant: &str,
    ttl: Duration,
    now: u64,
) -> IceServers {
    let expires = now + ttl.as_secs().max(1);
    // A ':' in the participant would shift what coturn reads as the expiry
    // field; other characters are kept as they are.
    let participant = participant.replace(':', "_");
    let username = format!("{expires}:{participant}");
    let credential = rest_password(&minter.secret, &username);
    let urls = match &minter.target {
        Target::Embedded {
            host,
            external_ip,
            turn_port,
            https_port,
        } => {
            // The name the browser used reaches us through its NAT; TLS needs
            // it to match our certificate. Plain TURN goes to the public
            // address when one is configured: the name may lead to a proxy
            // that carries no UDP.
            let name = url_host(asked.map_or(host, |(h, _)| h));
            let plain = external_ip.map_or_else(|| name.clone(), |ip| url_host(&ip.to_string()));
            let https_port = https_port.map(|p| asked.map_or(p, |(_, p)| p));
            let mut urls = vec![
                format!("turn:{plain}:{turn_port}?transport=udp"),
                format!("turn:{plain}:{turn_port}?transport=tcp"),
            ];
            if let Some(https_port) = https_port {
                urls.push(format!("turns:{name}:{https_port}?transport=tcp"));
            }
            urls
        }
        Target::External { urls } => urls.clone(),
    };
    IceServers {
        ice_servers: vec![IceServer {
            urls,
            username,
            credential,
        }],
        expires,
        ttl: expires - now,
    }
}

/// The URLs of an external TURN server from `TURN_URI`
/// (`turn://user:pass@host:3478?transport=udp+tcp`).
pub fn external_urls(uri: &crate::config::MultiHostUri) -> Vec<String> {
    let transports: Vec<&str> = uri
        .query
        .as_deref()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("transport=")))
        .map(|t| t.split(['+', ',']).collect())
        .unwrap_or_else(|| vec!["udp", "tcp"]);
    uri.hosts
        .iter()
        .flat_map(|(host, port)| {
            transports
                .iter()
                .map(move |t| format!("{}:{host}:{port}?transport={t}", uri.scheme))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_password_matches_coturn() {
        // Expected value computed independently with Python's hmac module.
        let p = rest_password(b"north", "1433895918506:my_username");
        assert_eq!(p, "Gx/rOncp1ZXBdeBo0S3RrYQnHDA=");
        assert_ne!(p, rest_password(b"south", "1433895918506:my_username"));
    }

    #[test]
    fn rest_usernames_expire() {
        let a = Authenticator::new("r", None, b"s".to_vec(), Duration::from_secs(60));
        let now = 1_000_000;
        assert!(matches!(a.key_for("1000001:p", now), Lookup::Key(_)));
        assert_eq!(a.key_for("1000000:p", now), Lookup::Expired);
        assert_eq!(a.key_for("bob", now), Lookup::Unknown);
        let pw = rest_password(b"s", "1000001:p");
        let Lookup::Key(k) = a.key_for("1000001:p", now) else {
            unreachable!()
        };
        assert_eq!(k, long_term_key("1000001:p", "r", &pw));
    }

    #[test]
    fn static_user_resolves() {
        let a = Authenticator::new(
            "r",
            Some(("bob".into(), "pw".into())),
            b"s".to_vec(),
            Duration::from_secs(60),
        );
        assert_eq!(
            a.key_for("bob", 0),
            Lookup::Key(long_term_key("bob", "r", "pw"))
        );
    }

    #[test]
    fn nonces_bind_address_and_expire() {
        let a = Authenticator::new("r", None, vec![1], Duration::from_millis(50));
        let ip: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        let n = a.nonce(ip);
        assert_eq!(a.check_nonce(&n, ip), NonceCheck::Valid);
        assert_eq!(a.check_nonce(&n, other), NonceCheck::Foreign);
        assert_eq!(a.check_nonce("garbage", ip), NonceCheck::Foreign);
        let mut forged = n.clone();
        forged.replace_range(0..1, "f");
        assert_eq!(a.check_nonce(&forged, ip), NonceCheck::Foreign);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(a.check_nonce(&n, ip), NonceCheck::Stale);
    }

    #[test]
    fn mint_lists_udp_tcp_and_tls() {
        let m = Minter::new(
            b"secret".to_vec(),
            Target::Embedded {
                host: "exam.example.org".into(),
                external_ip: None,
                turn_port: 3478,
                https_port: Some(443),
            },
        );
        let s = mint_at(&m, None, "student:7", Duration::from_secs(3600), 100);
        assert_eq!((s.expires, s.ttl), (3700, 3600));
        let server = &s.ice_servers[0];
        assert_eq!(server.username, "3700:student_7");
        assert_eq!(
            server.credential,
            rest_password(b"secret", "3700:student_7")
        );
        assert_eq!(
            server.urls,
            [
                "turn:exam.example.org:3478?transport=udp",
                "turn:exam.example.org:3478?transport=tcp",
                "turns:exam.example.org:443?transport=tcp",
            ]
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["iceServers"][0]["username"], "3700:student_7");
    }

    #[test]
    fn mint_names_the_asked_host_and_the_public_address() {
        let m = Minter::new(
            b"secret".to_vec(),
            Target::Embedded {
                host: "10.0.0.5".into(),
                external_ip: Some("203.0.113.7".parse().unwrap()),
                turn_port: 3478,
                https_port: Some(8443),
            },
        );
        let s = mint_at(
            &m,
            Some(("exam.example.org", 443)),
            "p",
            Duration::from_secs(60),
            0,
        );
        assert_eq!(
            s.ice_servers[0].urls,
            [
                "turn:203.0.113.7:3478?transport=udp",
                "turn:203.0.113.7:3478?transport=tcp",
                "turns:exam.example.org:443?transport=tcp",
            ]
        );
        let m = Minter::new(
            b"secret".to_vec(),
            Target::Embedded {
                host: "::1".into(),
                external_ip: None,
                turn_port: 3478,
                https_port: Some(443),
            },
        );
        let s = mint_at(&m, None, "p", Duration::from_secs(60), 0);
        assert_eq!(s.ice_servers[0].urls[0], "turn:[::1]:3478?transport=udp");
        let behind_proxy = Minter::new(
            b"secret".to_vec(),
            Target::Embedded {
                host: "exam.example.org".into(),
                external_ip: None,
                turn_port: 3478,
                https_port: None,
            },
        );
        let s = mint_at(&behind_proxy, None, "p", Duration::from_secs(60), 0);
        assert_eq!(s.ice_servers[0].urls.len(), 2, "no turns: behind a proxy");
    }

    #[test]
    fn mint_points_at_external_turn() {
        let uri = crate::config::parse_multi_host(
            "turn://u:p@turn1.example.org:3478,turn2.example.org?transport=udp+tcp",
            &["turn", "turns"],
            3478,
        )
        .unwrap();
        let m = Minter::new(
            b"k".to_vec(),
            Target::External {
                urls: external_urls(&uri),
            },
        );
        let s = m.mint("p", Duration::from_secs(60));
        assert_eq!(
            s.ice_servers[0].urls,
            [
                "turn:turn1.example.org:3478?transport=udp",
                "turn:turn1.example.org:3478?transport=tcp",
                "turn:turn2.example.org:3478?transport=udp",
                "turn:turn2.example.org:3478?transport=tcp",
            ]
        );
    }
}
