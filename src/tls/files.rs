//! Operator-supplied certificates: `SSL_CERT`, `SSL_KEY` and `SSL_CA`.
//!
//! Each value is either PEM content or a path to a PEM file. Env files often
//! carry PEM on one line with literal `\n` escapes, so those are turned back
//! into newlines before parsing.

use std::path::PathBuf;
use std::time::SystemTime;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{Error as RustlsError, InconsistentKeys};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{CertInfo, TlsError, provider};

const CERT: &str = "SSL_CERT";
const KEY: &str = "SSL_KEY";
const CA: &str = "SSL_CA";

/// Loads the server certificate (`cert`, possibly a full chain), its private
/// key (`key`) and an optional CA bundle (`ca`) appended to the chain.
///
/// Refuses a key that does not belong to the certificate and a certificate
/// outside its validity window. Whether the certificate covers the public
/// domain name is for the caller to check with [`CertInfo::covers`].
pub fn load_pair(
    cert: &str,
    key: &str,
    ca: Option<&str>,
) -> Result<(CertifiedKey, CertInfo), TlsError> {
    let cert_pem = read_input(CERT, cert, false)?;
    let key_pem = read_input(KEY, key, true)?;
    let mut chain = parse_certs(CERT, &cert_pem)?;
    if let Some(ca) = ca.filter(|v| !v.trim().is_empty()) {
        let ca_pem = read_input(CA, ca, false)?;
        for extra in parse_certs(CA, &ca_pem)? {
            // A full-chain SSL_CERT plus the same intermediates in SSL_CA
            // must not send them twice.
            if !chain.contains(&extra) {
                chain.push(extra);
            }
        }
    }
    let key = parse_key(KEY, &key_pem)?;
    let info = CertInfo::from_der(&chain[0], CERT)?;
    warn_about_chain(&chain);
    let certified = certified_key(chain, key, CERT, KEY)?;
    info.check_validity(CERT, SystemTime::now())?;
    Ok((certified, info))
}

/// Reads `value` as PEM content when it contains a PEM header, otherwise as
/// a file path. `secret` keeps a mistyped key value out of error messages.
pub fn read_input(what: &'static str, value: &str, secret: bool) -> Result<String, TlsError> {
    let value = value.trim();
    if value.contains("-----BEGIN") {
        // Quotes survive some env-file loaders; PEM never contains them.
        let content = value.trim_matches(|c| c == '"' || c == '\'');
        return Ok(unescape_newlines(content));
    }
    if value.is_empty() {
        return Ok(String::new());
    }
    match std::fs::read(value) {
        Ok(bytes) => Ok(unescape_newlines(&String::from_utf8_lossy(&bytes))),
        Err(err) => {
            let mut message = err.to_string();
            if err.kind() == std::io::ErrorKind::NotFound {
                message.push_str(" (the value is neither PEM content nor an existing file)");
            }
            let path = if secret && !looks_like_path(value) {
                PathBuf::from("<value not shown>")
            } else {
                PathBuf::from(value)
            };
            Err(TlsError::Read {
                what,
                path,
                message,
            })
        }
    }
}

/// A base64 key body pasted without its PEM header must not be echoed in an
/// error. Base64 of a DER key starts with `M` and only uses `A-Za-z0-9+/=`,
/// so anything starting with `/` or using another character is a path.
fn looks_like_path(value: &str) -> bool {
    value.starts_with('/')
        || value
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '='))
}

fn unescape_newlines(s: &str) -> String {
    s.replace("\\r\\n", "\n").replace("\\n", "\n")
}

/// All certificates in `pem`, in order.
pub fn parse_certs(
    what: &'static str,
    pem: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = item.map_err(|e| TlsError::BadPem {
            what,
            message: pem_message(&e),
        })?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}

/// The first private key in `pem`: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
pub(crate) fn parse_key(what: &'static str, pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    // Header lines only: these strings cannot occur inside base64.
    if pem.contains("ENCRYPTED PRIVATE KEY") || pem.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(TlsError::BadPem {
            what,
            message: "the private key is encrypted; store it decrypted \
                      (`openssl pkey -in key.pem -out plain.pem`) with mode 0600"
                .to_string(),
        });
    }
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey { what },
        other => TlsError::BadPem {
            what,
            message: pem_message(&other),
        },
    })
}

/// Pairs `chain` with `key`, refusing a key that belongs to another
/// certificate so a misconfiguration fails at startup, not per handshake.
pub(crate) fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_what: &'static str,
    key_what: &'static str,
) -> Result<CertifiedKey, TlsError> {
    // The provider's own message names no key bytes, but ours is clearer.
    let unsupported = || TlsError::BadPem {
        what: key_what,
        message: "unsupported private key (RSA, ECDSA P-256/P-384 and Ed25519 are supported)"
            .to_string(),
    };
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|_| unsupported())?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(RustlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                cert: cert_what,
                key: key_what,
            })
        }
        // The ring keys all expose their public key, so this is not expected;
        // a wrong key would still fail every handshake visibly.
        Err(RustlsError::InconsistentKeys(InconsistentKeys::Unknown)) => {
            tracing::warn!("{key_what}: cannot confirm that the key matches {cert_what}");
            Ok(certified)
        }
        Err(other) => Err(TlsError::BadPem {
            what: cert_what,
            message: format!("unusable certificate: {other}"),
        }),
    }
}

/// Messages for PEM errors that never quote the input, which may be a key.
fn pem_message(err: &pem::Error) -> String {
    match err {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "PEM block has no \"-----END {}-----\" line",
            String::from_utf8_lossy(end_marker)
        ),
        pem::Error::IllegalSectionStart { .. } => "malformed \"-----BEGIN\" line".to_string(),
        pem::Error::Base64Decode(_) => "PEM block is not valid base64".to_string(),
        pem::Error::NoItemsFound => "no PEM blocks found".to_string(),
        pem::Error::SectionTooLarge => "PEM block is too large".to_string(),
        _ => "unreadable PEM".to_string(),
    }
}

/// Browsers refuse chains with gaps or expired intermediates, but some
/// clients cope, so these are warnings rather than startup failures.
fn warn_about_chain(chain: &[CertificateDer<'_>]) {
    let parsed: Vec<Option<X509Certificate<'_>>> = chain
        .iter()
        .map(|der| X509Certificate::from_der(der.as_ref()).ok().map(|(_, c)| c))
        .collect();
    for (i, pair) in parsed.windows(2).enumerate() {
        if let [Some(child), Some(parent)] = pair
            && child.issuer() != parent.subject()
        {
            tracing::warn!(
                "{CERT}/{CA}: certificate {} in the chain was not issued by certificate {}; \
                 clients may reject the chain",
                i + 1,
                i + 2
            );
        }
    }
    for (i, cert) in parsed.iter().enumerate().skip(1) {
        if let Some(cert) = cert
            && !cert.validity().is_valid()
        {
            tracing::warn!(
                "{CERT}/{CA}: chain certificate {} ({}) is outside its validity period",
                i + 1,
                cert.subject()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };

    use super::*;
    use crate::tls::testutil::{connect, echo, peer_fingerprint, spawn_echo_server};
    use crate::tls::{CertResolver, server_config};

    struct TestCa {
        issuer: Issuer<'static, KeyPair>,
        cert_pem: String,
        key_pem: String,
        der: CertificateDer<'static>,
    }

    fn test_ca() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(DnType::CommonName, "invigil test CA");
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca cert");
        TestCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf_params(names: &[&str]) -> CertificateParams {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2090, 1, 1);
        params
    }

    /// Leaf signed by `ca` with `key`, as (certificate PEM, key PEM).
    fn leaf(ca: &TestCa, params: &CertificateParams, key: &KeyPair) -> (String, String) {
        let cert = params.signed_by(key, &ca.issuer).expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    }

    fn write(dir: &Path, name: &str, content: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, content).expect("write test file");
        path.to_string_lossy().into_owned()
    }

    /// Serves `certified` and completes a real handshake for `name`,
    /// trusting only the test CA.
    async fn handshake(certified: CertifiedKey, ca: &TestCa, name: &str) -> String {
        let addr = spawn_echo_server(server_config(std::sync::Arc::new(CertResolver::new(
            certified,
        ))))
        .await;
        let mut conn = connect(addr, std::slice::from_ref(&ca.der), name, &[])
            .await
            .expect("handshake");
        echo(&mut conn, b"ping").await;
        peer_fingerprint(&conn)
    }

    #[tokio::test]
    async fn loads_files_content_and_escaped_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = test_ca();
        let key = KeyPair::generate().expect("key");
        let (cert_pem, key_pem) = leaf(
            &ca,
            &leaf_params(&["exam.example.org", "*.exam.example.org"]),
            &key,
        );

        let cert_path = write(dir.path(), "leaf.crt", &cert_pem);
        let key_path = write(dir.path(), "leaf.key", &key_pem);
        let ca_path = write(dir.path(), "ca.crt", &ca.cert_pem);
        let (from_files, info) =
            load_pair(&cert_path, &key_path, Some(&ca_path)).expect("load from files");
        assert_eq!(from_files.cert.len(), 2, "leaf followed by the CA");
        assert_eq!(info.names, ["exam.example.org", "*.exam.example.org"]);
        assert!(info.covers("exam.example.org"));
        assert!(info.covers("www.exam.example.org"));
        assert!(!info.covers("example.org"));

        let (from_content, info2) =
            load_pair(&cert_pem, &key_pem, Some(&ca.cert_pem)).expect("load from content");
        assert_eq!(info2, info);
        assert_eq!(from_content.cert, from_files.cert);

        let one_line = |s: &str| s.replace('\n', "\\n");
        assert!(!one_line(&key_pem).contains('\n'));
        let (escaped, info3) = load_pair(
            &one_line(&cert_pem),
            &format!("\"{}\"", one_line(&key_pem)),
            Some(&one_line(&ca.cert_pem)),
        )
        .expect("load one-line escaped content");
        assert_eq!(info3, info);

        // No CA: the chain is just the leaf.
        let (alone, _) = load_pair(&cert_pem, &key_pem, Some("  ")).expect("no CA");
        assert_eq!(alone.cert.len(), 1);

        for (certified, name) in [
            (from_files, "exam.example.org"),
            (from_content, "www.exam.example.org"),
            (escaped, "exam.example.org"),
        ] {
            assert_eq!(
                handshake(certified, &ca, name).await,
                info.sha256_fingerprint
            );
        }
    }

    #[tokio::test]
    async fn ed25519_and_p384_keys() {
        let ca = test_ca();
        for alg in [&rcgen::PKCS_ED25519, &rcgen::PKCS_ECDSA_P384_SHA384] {
            let key = KeyPair::generate_for(alg).expect("key");
            let (cert_pem, key_pem) = leaf(&ca, &leaf_params(&["exam.example.org"]), &key);
            let (certified, info) = load_pair(&cert_pem, &key_pem, None).expect("load");
            assert_eq!(
                handshake(certified, &ca, "exam.example.org").await,
                info.sha256_fingerprint
            );
        }
    }

    /// RSA PKCS#1 and EC SEC1 keys, which rcgen cannot write, made by openssl
    /// and signed by the test CA.
    #[tokio::test]
    async fn openssl_rsa_pkcs1_and_ec_sec1_keys() {
        if Command::new("openssl").arg("version").output().is_err() {
            eprintln!("openssl not installed; skipping PKCS#1/SEC1 key test");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = test_ca();
        let ca_cert = write(dir.path(), "ca.crt", &ca.cert_pem);
        let ca_key = write(dir.path(), "ca.key", &ca.key_pem);
        let ext = write(
            dir.path(),
            "ext.cnf",
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=DNS:exam.example.org\n",
        );
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&["genrsa", "-traditional", "-out", "rsa.key", "2048"]);
        openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ec.key",
        ]);
        for (name, marker) in [("rsa", "RSA PRIVATE KEY"), ("ec", "EC PRIVATE KEY")] {
            let key_file = format!("{name}.key");
            let key_pem = std::fs::read_to_string(dir.path().join(&key_file)).expect("key");
            assert!(
                key_pem.contains(marker),
                "{name} key is not in {marker} form"
            );
            openssl(&[
                "req",
                "-new",
                "-key",
                &key_file,
                "-subj",
                "/CN=exam.example.org",
                "-out",
                "leaf.csr",
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                &ca_cert,
                "-CAkey",
                &ca_key,
                "-set_serial",
                "7",
                "-days",
                "30",
                "-extfile",
                &ext,
                "-out",
                "leaf.crt",
            ]);
            let cert_path = dir.path().join("leaf.crt").to_string_lossy().into_owned();
            let key_path = dir.path().join(&key_file).to_string_lossy().into_owned();
            let (certified, info) =
                load_pair(&cert_path, &key_path, Some(&ca_cert)).expect("load openssl pair");
            assert_eq!(
                handshake(certified, &ca, "exam.example.org").await,
                info.sha256_fingerprint
            );
        }
    }

    #[test]
    fn refuses_key_of_another_certificate() {
        let ca = test_ca();
        let key = KeyPair::generate().expect("key");
        let other = KeyPair::generate().expect("other key");
        let (cert_pem, _) = leaf(&ca, &leaf_params(&["exam.example.org"]), &key);
        let other_pem = other.serialize_pem();
        let err = load_pair(&cert_pem, &other_pem, None).expect_err("mismatch");
        assert!(
            matches!(
                err,
                TlsError::KeyMismatch {
                    cert: "SSL_CERT",
                    key: "SSL_KEY"
                }
            ),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("SSL_KEY") && message.contains("SSL_CERT"));
        assert_no_key_material(&message, &other_pem);
    }

    #[test]
    fn refuses_expired_and_not_yet_valid() {
        let ca = test_ca();
        let key = KeyPair::generate().expect("key");
        let mut params = leaf_params(&["exam.example.org"]);
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        let (cert_pem, key_pem) = leaf(&ca, &params, &key);
        let err = load_pair(&cert_pem, &key_pem, None).expect_err("expired");
        assert!(
            matches!(
                err,
                TlsError::Expired {
                    what: "SSL_CERT",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("2020"), "{err}");

        params.not_before = rcgen::date_time_ymd(2090, 1, 1);
        params.not_after = rcgen::date_time_ymd(2091, 1, 1);
        let (cert_pem, key_pem) = leaf(&ca, &params, &key);
        let err = load_pair(&cert_pem, &key_pem, None).expect_err("not yet valid");
        assert!(
            matches!(
                err,
                TlsError::NotYetValid {
                    what: "SSL_CERT",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn garbage_is_refused_naming_the_variable() {
        let ca = test_ca();
        let key = KeyPair::generate().expect("key");
        let (cert_pem, key_pem) = leaf(&ca, &leaf_params(&["exam.example.org"]), &key);
        let bad_base64 =
            "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n";

        let err = load_pair("/nonexistent/invigil.crt", &key_pem, None).expect_err("no file");
        assert!(
            matches!(
                err,
                TlsError::Read {
                    what: "SSL_CERT",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("/nonexistent/invigil.crt"));

        let err = load_pair(bad_base64, &key_pem, None).expect_err("bad base64");
        assert!(
            matches!(
                err,
                TlsError::BadPem {
                    what: "SSL_CERT",
                    ..
                }
            ),
            "{err:?}"
        );

        let err = load_pair("", &key_pem, None).expect_err("empty");
        assert!(
            matches!(err, TlsError::NoCertificate { what: "SSL_CERT" }),
            "{err:?}"
        );

        let err = load_pair(&cert_pem, &cert_pem, None).expect_err("certificate as key");
        assert!(
            matches!(err, TlsError::NoKey { what: "SSL_KEY" }),
            "{err:?}"
        );

        let not_a_key = "-----BEGIN PRIVATE KEY-----\nAAAAAAAA\n-----END PRIVATE KEY-----\n";
        let err = load_pair(&cert_pem, not_a_key, None).expect_err("junk key");
        assert!(
            matches!(
                err,
                TlsError::BadPem {
                    what: "SSL_KEY",
                    ..
                }
            ),
            "{err:?}"
        );

        let err = load_pair(&cert_pem, &key_pem, Some(bad_base64)).expect_err("bad CA");
        assert!(
            matches!(err, TlsError::BadPem { what: "SSL_CA", .. }),
            "{err:?}"
        );
        let err = load_pair(&cert_pem, &key_pem, Some("/nonexistent/ca.pem")).expect_err("CA");
        assert!(
            matches!(err, TlsError::Read { what: "SSL_CA", .. }),
            "{err:?}"
        );

        // A key body pasted without its PEM lines is taken for a path; the
        // error must not repeat it.
        let body: String = key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let err = load_pair(&cert_pem, &body, None).expect_err("bare base64 key");
        assert!(
            matches!(
                err,
                TlsError::Read {
                    what: "SSL_KEY",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_no_key_material(&err.to_string(), &key_pem);
        assert_no_key_material(&format!("{err:?}"), &key_pem);

        let truncated = &key_pem[..key_pem.len() - 30];
        let err = load_pair(&cert_pem, truncated, None).expect_err("truncated key");
        assert!(
            matches!(
                err,
                TlsError::BadPem {
                    what: "SSL_KEY",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_no_key_material(&err.to_string(), &key_pem);
    }

    fn assert_no_key_material(message: &str, key_pem: &str) {
        for line in key_pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 8)
        {
            assert!(!message.contains(&line[..8]), "key material in {message:?}");
        }
    }
}
