//! TLS for invigil: the server configuration, a certificate resolver that can
//! be swapped while connections stay open, a self-signed certificate for
//! running on an evaluator's laptop, and loading of operator-supplied
//! certificates (`SSL_CERT`, `SSL_KEY`, `SSL_CA`).
//!
//! Everything uses the ring crypto provider explicitly, so the process never
//! depends on a process-wide default provider being installed.

pub mod acme;
pub mod files;
pub mod info;
pub mod local_ca;
pub mod metrics;
pub mod reload;
pub mod resolver;
pub mod self_signed;

#[cfg(test)]
mod testutil;

use std::path::PathBuf;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::{CryptoProvider, ring};

pub use info::CertInfo;
pub use metrics::TlsMetrics;
pub use resolver::CertResolver;
/// The certificate chain plus signing key served in handshakes.
pub use rustls::sign::CertifiedKey;

/// ALPN protocol of the ACME tls-alpn-01 challenge (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// ALPN protocol of TURN over TLS (RFC 7443); the HTTPS port hands such
/// connections to the TURN relay.
pub const TURN_ALPN: &[u8] = b"stun.turn";

/// ALPN protocols offered to clients, in order of preference.
const ALPN_PROTOCOLS: [&[u8]; 4] = [b"h2", b"http/1.1", ACME_TLS_ALPN, TURN_ALPN];

/// Everything that can go wrong loading or creating certificates.
///
/// `what` names the input (`SSL_CERT`, `SSL_KEY`, `SSL_CA`, or the
/// self-signed files) so the message tells the operator which setting to fix.
/// No variant ever carries key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what}: cannot read {}: {message}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{what}: no certificate found (expected a \"-----BEGIN CERTIFICATE-----\" PEM block)")]
    NoCertificate { what: &'static str },
    #[error(
        "{what}: no private key found (expected a \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" PEM block)"
    )]
    NoKey { what: &'static str },
    #[error("{what}: {message}")]
    BadPem { what: &'static str, message: String },
    #[error("{key} does not belong to the certificate in {cert}")]
    KeyMismatch {
        cert: &'static str,
        key: &'static str,
    },
    #[error("{what}: the certificate expired on {not_after}")]
    Expired {
        what: &'static str,
        not_after: String,
    },
    #[error("{what}: the certificate is not valid before {not_before}")]
    NotYetValid {
        what: &'static str,
        not_before: String,
    },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    #[error("{0}")]
    Acme(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How an instance gets its certificate, as `/ping` and the logs name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    SelfSigned,
    Acme,
    Files,
    Proxy,
    LocalCa,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::SelfSigned => "self-signed",
            Mode::Acme => "acme",
            Mode::Files => "files",
            Mode::Proxy => "proxy",
            Mode::LocalCa => "local-ca",
        }
    }
}

/// The crypto provider used for every TLS configuration in invigil.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Builds the server configuration: TLS 1.2 and 1.3, ALPN `h2` then
/// `http/1.1`, certificates chosen by `resolver`.
///
/// `acme-tls/1` is also advertised, but the resolver only completes such
/// handshakes with a challenge certificate; the HTTP layer must close a
/// connection that negotiated it (see [`is_acme_challenge`]).
pub fn server_config(resolver: Arc<CertResolver>) -> Arc<ServerConfig> {
    // The ring provider always supports both protocol versions, so this
    // cannot fail; the unit tests exercise it.
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.2 and 1.3");
    let mut config = builder.with_no_client_auth().with_cert_resolver(resolver);
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// True when a connection negotiated the ACME challenge protocol and must be
/// closed after the handshake instead of being served HTTP.
pub fn is_acme_challenge(negotiated_alpn: Option<&[u8]>) -> bool {
    negotiated_alpn == Some(ACME_TLS_ALPN)
}

#[cfg(test)]
mod tests {
    use rustls::ProtocolVersion;
    use rustls::SupportedProtocolVersion;
    use rustls::version::{TLS12, TLS13};

    use super::*;
    use crate::tls::testutil::{connect_versions, echo, rcgen_self_signed, spawn_echo_server};

    type Case = (
        &'static SupportedProtocolVersion,
        ProtocolVersion,
        &'static [&'static [u8]],
        Option<&'static [u8]>,
    );

    #[tokio::test]
    async fn server_speaks_tls12_and_tls13_with_http_alpn() {
        let (key, der) = rcgen_self_signed(&["localhost"]);
        let addr = spawn_echo_server(server_config(Arc::new(CertResolver::new(key)))).await;
        let roots = [der];
        let cases: [Case; 3] = [
            (
                &TLS13,
                ProtocolVersion::TLSv1_3,
                &[b"h2", b"http/1.1"],
                Some(b"h2"),
            ),
            (
                &TLS12,
                ProtocolVersion::TLSv1_2,
                &[b"http/1.1"],
                Some(b"http/1.1"),
            ),
            (&TLS12, ProtocolVersion::TLSv1_2, &[], None),
        ];
        for (version, expected, alpn, negotiated) in cases {
            let mut conn = connect_versions(addr, &roots, "localhost", alpn, &[version])
                .await
                .expect("handshake");
            let session = conn.get_ref().1;
            assert_eq!(session.protocol_version(), Some(expected));
            assert_eq!(session.alpn_protocol(), negotiated);
            assert!(!is_acme_challenge(session.alpn_protocol()));
            echo(&mut conn, b"hello").await;
        }
        // An ALPN offer sharing nothing with ours is refused outright.
        let other: &[&[u8]] = &[b"spdy/3"];
        assert!(
            connect_versions(addr, &roots, "localhost", other, &[&TLS13])
                .await
                .is_err()
        );
    }
}
