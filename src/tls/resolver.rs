//! Chooses the certificate for each handshake.
//!
//! The served certificate lives behind an `ArcSwap` so a renewed or reloaded
//! certificate takes effect for the next handshake without a restart; open
//! connections keep the session they already negotiated.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::ACME_TLS_ALPN;

/// Certificate resolver with live swap and ACME tls-alpn-01 answers.
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
    /// Challenge certificates by lower-case server name. Written rarely (once
    /// per ACME validation), read only on `acme-tls/1` handshakes.
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl CertResolver {
    pub fn new(initial: CertifiedKey) -> Self {
        CertResolver {
            current: ArcSwap::from_pointee(initial),
            challenges: RwLock::new(HashMap::new()),
        }
    }

    /// Serves `new` to every handshake from now on.
    pub fn swap(&self, new: CertifiedKey) {
        self.current.store(Arc::new(new));
    }

    /// The certificate new handshakes currently get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// What the certificate new handshakes get is valid for and until when.
    pub fn current_info(&self) -> Option<super::CertInfo> {
        let current = self.current();
        let leaf = current.cert.first()?;
        super::CertInfo::from_der(leaf, "served certificate").ok()
    }

    /// Answers tls-alpn-01 validation for `name` with `cert` until cleared.
    pub fn set_challenge(&self, name: &str, cert: CertifiedKey) {
        let mut map = self.challenges.write().unwrap_or_else(|p| p.into_inner());
        map.insert(normalize(name), Arc::new(cert));
    }

    pub fn clear_challenge(&self, name: &str) {
        let mut map = self.challenges.write().unwrap_or_else(|p| p.into_inner());
        map.remove(&normalize(name));
    }

    fn challenge_for(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let map = self.challenges.read().unwrap_or_else(|p| p.into_inner());
        map.get(&normalize(name)).cloned()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let offers_acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if !offers_acme {
            return Some(self.current.load_full());
        }
        // RFC 8737: the validator offers `acme-tls/1` alone and needs the
        // challenge certificate for the name it validates. Anything else
        // gets no certificate, so the handshake fails rather than ending up
        // as an HTTP connection on the challenge protocol.
        let only_acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.all(|p| p == ACME_TLS_ALPN));
        if !only_acme {
            return None;
        }
        let name = hello.server_name()?;
        self.challenge_for(name)
    }
}

impl fmt::Debug for CertResolver {
    // Only names: the certified keys hold private key handles.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let map = self.challenges.read().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<&String> = map.keys().collect();
        names.sort();
        f.debug_struct("CertResolver")
            .field("challenges", &names)
            .finish_non_exhaustive()
    }
}

fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::info::fingerprint;
    use crate::tls::server_config;
    use crate::tls::testutil::{
        connect, echo, peer_fingerprint, rcgen_self_signed, spawn_echo_server,
    };

    #[tokio::test]
    async fn swap_keeps_open_connections_and_serves_new_certificate() {
        let (old_key, old_der) = rcgen_self_signed(&["localhost"]);
        let (new_key, new_der) = rcgen_self_signed(&["localhost"]);
        let roots = [old_der.clone(), new_der.clone()];
        let resolver = Arc::new(CertResolver::new(old_key));
        let addr = spawn_echo_server(server_config(resolver.clone())).await;

        let mut before = connect(addr, &roots, "localhost", &[])
            .await
            .expect("connect");
        echo(&mut before, b"one").await;
        assert_eq!(peer_fingerprint(&before), fingerprint(&old_der));

        resolver.swap(new_key);

        // The connection opened before the swap carries on unchanged.
        echo(&mut before, b"two").await;
        assert_eq!(peer_fingerprint(&before), fingerprint(&old_der));

        let mut after = connect(addr, &roots, "localhost", &[])
            .await
            .expect("connect");
        echo(&mut after, b"three").await;
        assert_eq!(peer_fingerprint(&after), fingerprint(&new_der));
        echo(&mut before, b"four").await;
        assert_eq!(
            fingerprint(&resolver.current().cert[0]),
            fingerprint(&new_der)
        );
    }

    #[tokio::test]
    async fn acme_alpn_gets_challenge_certificate_only() {
        let (main_key, main_der) = rcgen_self_signed(&["exam.example.org"]);
        let (challenge_key, challenge_der) = rcgen_self_signed(&["exam.example.org"]);
        let roots = [main_der.clone(), challenge_der.clone()];
        let resolver = Arc::new(CertResolver::new(main_key));
        let addr = spawn_echo_server(server_config(resolver.clone())).await;
        let acme: &[&[u8]] = &[ACME_TLS_ALPN];

        // No challenge registered: an acme-tls/1 handshake is refused.
        assert!(
            connect(addr, &roots, "exam.example.org", acme)
                .await
                .is_err()
        );

        resolver.set_challenge("Exam.Example.org", challenge_key);
        let conn = connect(addr, &roots, "exam.example.org", acme)
            .await
            .expect("acme");
        assert_eq!(peer_fingerprint(&conn), fingerprint(&challenge_der));
        assert!(crate::tls::is_acme_challenge(
            conn.get_ref().1.alpn_protocol()
        ));

        // Ordinary clients still get the main certificate and HTTP ALPN.
        let web = connect(addr, &roots, "exam.example.org", &[b"h2", b"http/1.1"])
            .await
            .expect("web");
        assert_eq!(peer_fingerprint(&web), fingerprint(&main_der));
        assert_eq!(web.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

        // Mixing acme-tls/1 with HTTP protocols is not a validation.
        let mixed: &[&[u8]] = &[b"http/1.1", ACME_TLS_ALPN];
        assert!(
            connect(addr, &roots, "exam.example.org", mixed)
                .await
                .is_err()
        );

        resolver.clear_challenge("exam.example.org");
        assert!(
            connect(addr, &roots, "exam.example.org", acme)
                .await
                .is_err()
        );
        assert!(!format!("{resolver:?}").contains("PRIVATE"));
    }
}
