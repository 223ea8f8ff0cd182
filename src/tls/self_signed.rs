//! A self-signed certificate for running invigil without a public domain,
//! typically on an evaluator's laptop.
//!
//! The certificate and key are kept in the data directory so browsers that
//! were told to trust the certificate keep trusting it across restarts; a
//! new one is made only when the old one is unusable, close to expiry, or
//! does not cover a name the server is now reached by.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{DnsName, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::time::ASN1Time;

use super::files::{certified_key, parse_certs, parse_key};
use super::info::format_time;
use super::{CertInfo, TlsError};

pub const CERT_FILE: &str = "self-signed.crt";
pub const KEY_FILE: &str = "self-signed.key";
const COMMON_NAME: &str = "invigil self-signed";
const CERT_WHAT: &str = "self-signed certificate";
const KEY_WHAT: &str = "self-signed key";
const DAY: Duration = Duration::from_secs(24 * 60 * 60);
const VALIDITY: Duration = Duration::from_secs(365 * DAY.as_secs());
/// Replaced this long before expiry so an exam never runs into it.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * DAY.as_secs());
/// Backdated so a client whose clock is slightly behind still accepts it.
const BACKDATE: Duration = Duration::from_secs(60 * 60);

/// Names a self-signed certificate should cover: `localhost`, `127.0.0.1`,
/// `::1`, this machine's hostname, `host` when it is an IP address other
/// than a wildcard bind address, and `domain`. Normalised and deduplicated;
/// names that are neither an IP address nor a valid DNS name are skipped.
pub fn default_names(host: Option<&str>, domain: Option<&str>) -> Vec<String> {
    let hostname = gethostname::gethostname();
    let host_ip = host
        .and_then(parse_ip)
        .filter(|ip| !ip.is_unspecified())
        .map(|ip| ip.to_string());
    let candidates = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(str::to_string)
        .chain(hostname.to_str().map(str::to_string))
        .chain(host_ip)
        .chain(domain.map(str::to_string));
    let mut names: Vec<String> = Vec::new();
    for candidate in candidates {
        match normalize_name(&candidate) {
            Some(name) if !names.contains(&name) => names.push(name),
            Some(_) => {}
            None => tracing::warn!(
                "not adding {candidate:?} to the self-signed certificate: \
                 neither an IP address nor a valid DNS name"
            ),
        }
    }
    names
}

/// Returns the self-signed certificate kept in `dir`, creating or replacing
/// it when needed. `names` are DNS names or IP addresses; all must be covered.
pub fn load_or_create(dir: &Path, names: &[String]) -> Result<(CertifiedKey, CertInfo), TlsError> {
    let names = normalize_all(names)?;
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    let now = SystemTime::now();
    match load_existing(&cert_path, &key_path, &names, now)? {
        Existing::Usable(certified, info) => {
            tracing::info!(
                fingerprint = %info.sha256_fingerprint,
                "using the self-signed certificate in {}",
                cert_path.display()
            );
            return Ok((certified, info));
        }
        Existing::Missing => {}
        Existing::Unusable(reason) => tracing::warn!(
            "replacing the self-signed certificate in {}: {reason}",
            cert_path.display()
        ),
    }
    let made = generate(&names, now - BACKDATE, now + VALIDITY)?;
    write_files(dir, &made)?;
    tracing::info!(
        fingerprint = %made.info.sha256_fingerprint,
        names = %names.join(", "),
        "created a self-signed certificate in {}",
        cert_path.display()
    );
    Ok((made.certified, made.info))
}

enum Existing {
    Missing,
    Unusable(String),
    Usable(CertifiedKey, CertInfo),
}

fn load_existing(
    cert_path: &Path,
    key_path: &Path,
    names: &[String],
    now: SystemTime,
) -> Result<Existing, TlsError> {
    let (Some(cert_pem), Some(key_pem)) = (read_if_exists(cert_path)?, read_if_exists(key_path)?)
    else {
        return Ok(Existing::Missing);
    };
    tighten_key_mode(key_path)?;
    let parsed = parse_certs(CERT_WHAT, &cert_pem).and_then(|chain| {
        let info = CertInfo::from_der(&chain[0], CERT_WHAT)?;
        let key = parse_key(KEY_WHAT, &key_pem)?;
        Ok((certified_key(chain, key, CERT_WHAT, KEY_WHAT)?, info))
    });
    let (certified, info) = match parsed {
        Ok(pair) => pair,
        Err(err) => return Ok(Existing::Unusable(err.to_string())),
    };
    if info.expires_within(RENEW_BEFORE, now) {
        return Ok(Existing::Unusable(format!(
            "it is valid only from {} to {}",
            format_time(info.not_before),
            format_time(info.not_after)
        )));
    }
    let missing: Vec<&str> = names
        .iter()
        .filter(|n| !info.covers(n))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Ok(Existing::Unusable(format!(
            "it does not cover {}",
            missing.join(", ")
        )));
    }
    Ok(Existing::Usable(certified, info))
}

/// `None` when the file does not exist; other errors (permissions) are not
/// papered over by silently replacing a file we cannot read.
pub(crate) fn read_if_exists(path: &Path) -> Result<Option<String>, TlsError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(io_error(path, source)),
    }
}

/// A key copied around with default permissions is readable by every local
/// user; restore 0600 rather than refusing to start.
fn tighten_key_mode(key_path: &Path) -> Result<(), TlsError> {
    let meta = fs::metadata(key_path).map_err(|e| io_error(key_path, e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "{} was readable by other users; setting mode 0600",
            key_path.display()
        );
        fs::set_permissions(key_path, Permissions::from_mode(0o600))
            .map_err(|e| io_error(key_path, e))?;
    }
    Ok(())
}

struct Generated {
    cert_pem: String,
    key_pem: String,
    certified: CertifiedKey,
    info: CertInfo,
}

/// An ECDSA P-256 certificate for `names`, valid from `not_before` to
/// `not_after`. P-256 is what every browser and TLS stack accepts.
fn generate(
    names: &[String],
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<Generated, TlsError> {
    let gen_err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, COMMON_NAME);
    params.distinguished_name = dn;
    params.subject_alt_names = names
        .iter()
        .map(|name| match parse_ip(name) {
            Some(ip) => Ok(SanType::IpAddress(ip)),
            None => name.as_str().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()
        .map_err(gen_err)?;
    params.not_before = asn1_time(not_before)?.to_datetime();
    params.not_after = asn1_time(not_after)?.to_datetime();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key).map_err(gen_err)?;
    let der = cert.der().clone();
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let certified = certified_key(vec![der.clone()], key_der, CERT_WHAT, KEY_WHAT)?;
    let info = CertInfo::from_der(&der, CERT_WHAT)?;
    Ok(Generated {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        certified,
        info,
    })
}

pub(crate) fn asn1_time(t: SystemTime) -> Result<ASN1Time, TlsError> {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| TlsError::Generate("the system clock is before 1970".to_string()))?
        .as_secs();
    i64::try_from(secs)
        .ok()
        .and_then(|s| ASN1Time::from_timestamp(s).ok())
        .ok_or_else(|| TlsError::Generate("the system clock is out of range".to_string()))
}

/// Key first: a crash between the two renames leaves a new key with the old
/// certificate, which fails the key check and is simply regenerated.
fn write_files(dir: &Path, made: &Generated) -> Result<(), TlsError> {
    write_pair(dir, (CERT_FILE, &made.cert_pem), (KEY_FILE, &made.key_pem))
}

/// Writes a certificate and its key (mode 0600) durably into `dir`, key first.
pub(crate) fn write_pair(
    dir: &Path,
    (cert_file, cert_pem): (&str, &str),
    (key_file, key_pem): (&str, &str),
) -> Result<(), TlsError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_error(dir, e))?;
    write_atomic(dir, key_file, key_pem.as_bytes(), 0o600)?;
    write_atomic(dir, cert_file, cert_pem.as_bytes(), 0o644)?;
    // Make both renames durable before the certificate is handed out.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

/// Temp file (created with `mode`, so a key is never readable by others even
/// briefly), fsync, rename over the final name.
pub(crate) fn write_atomic(
    dir: &Path,
    name: &str,
    contents: &[u8],
    mode: u32,
) -> Result<(), TlsError> {
    let final_path = dir.join(name);
    let tmp_path = dir.join(format!(
        ".{name}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| -> std::io::Result<()> {
        // create_new: never follow a planted symlink or reuse a stale file.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp_path)?;
        // The umask may have removed bits (0644 → 0600); set them exactly.
        file.set_permissions(Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp_path, &final_path)
    })();
    result.map_err(|source| {
        let _ = fs::remove_file(&tmp_path);
        io_error(&final_path, source)
    })
}

pub(crate) fn io_error(path: &Path, source: std::io::Error) -> TlsError {
    TlsError::Io {
        path: PathBuf::from(path),
        source,
    }
}

fn normalize_all(names: &[String]) -> Result<Vec<String>, TlsError> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let normalized = normalize_name(name).ok_or_else(|| {
            TlsError::Generate(format!(
                "{name:?} is neither an IP address nor a valid DNS name"
            ))
        })?;
        if !out.contains(&normalized) {
            out.push(normalized);
        }
    }
    if out.is_empty() {
        return Err(TlsError::Generate(
            "no names to put in the certificate".to_string(),
        ));
    }
    Ok(out)
}

/// IP addresses in canonical form; DNS names lower-case without a trailing
/// dot, and only if they are valid (no wildcards, spaces or non-ASCII).
pub(crate) fn normalize_name(name: &str) -> Option<String> {
    if let Some(ip) = parse_ip(name) {
        return Some(ip.to_string());
    }
    let dns = name.trim().trim_end_matches('.').to_ascii_lowercase();
    DnsName::try_from(dns.as_str()).ok()?;
    Some(dns)
}

/// Accepts `[::1]` as well, the form IPv6 addresses take in URLs and HOST.
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let s = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::tls::testutil::{connect, echo, peer_fingerprint, spawn_echo_server};
    use crate::tls::{CertResolver, server_config};

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut list: Vec<String> = fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        list.sort();
        list
    }

    #[tokio::test]
    async fn create_handshake_and_reuse() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        let base = names(&["localhost", "127.0.0.1", "::1"]);

        let (certified, info) = load_or_create(&dir, &base).expect("create");
        assert_eq!(info.names, base);
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&dir.join(CERT_FILE)), 0o644);
        assert_eq!(files_in(&dir), [CERT_FILE, KEY_FILE], "no temp files left");

        // The file on disk is what clients are asked to trust.
        let pem = fs::read_to_string(dir.join(CERT_FILE)).expect("read cert");
        let roots = parse_certs("test", &pem).expect("parse cert");
        let addr = spawn_echo_server(server_config(Arc::new(CertResolver::new(certified)))).await;
        for name in ["localhost", "127.0.0.1"] {
            let mut conn = connect(addr, &roots, name, &[b"http/1.1"])
                .await
                .unwrap_or_else(|e| panic!("handshake for {name}: {e}"));
            echo(&mut conn, name.as_bytes()).await;
            assert_eq!(peer_fingerprint(&conn), info.sha256_fingerprint);
        }
        assert!(
            connect(addr, &roots, "exam.example.org", &[])
                .await
                .is_err()
        );

        let (_, again) = load_or_create(&dir, &base).expect("reuse");
        assert_eq!(again.sha256_fingerprint, info.sha256_fingerprint);

        // A new name (DOMAIN_NAME set later) needs a new certificate…
        let wider = names(&["localhost", "127.0.0.1", "::1", "Exam.Example.org."]);
        let (_, widened) = load_or_create(&dir, &wider).expect("regenerate");
        assert_ne!(widened.sha256_fingerprint, info.sha256_fingerprint);
        assert!(widened.covers("exam.example.org"));
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);

        // …but dropping a name keeps the wider one.
        let (_, narrower) = load_or_create(&dir, &base).expect("reuse wider");
        assert_eq!(narrower.sha256_fingerprint, widened.sha256_fingerprint);
        assert_eq!(files_in(&dir), [CERT_FILE, KEY_FILE]);
    }

    #[test]
    fn replaces_unusable_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let base = names(&["localhost"]);
        let (_, first) = load_or_create(dir, &base).expect("create");

        // Garbage key.
        fs::write(dir.join(KEY_FILE), "not a key").expect("write");
        let (_, second) = load_or_create(dir, &base).expect("replace garbage");
        assert_ne!(second.sha256_fingerprint, first.sha256_fingerprint);
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);

        // Key of another certificate.
        let now = SystemTime::now();
        let other = generate(&base, now, now + VALIDITY).expect("generate");
        fs::write(dir.join(KEY_FILE), &other.key_pem).expect("write");
        let (_, third) = load_or_create(dir, &base).expect("replace mismatch");
        assert_ne!(third.sha256_fingerprint, second.sha256_fingerprint);

        // Expiring within 30 days.
        let soon = generate(&base, now - DAY, now + 10 * DAY).expect("generate");
        write_files(dir, &soon).expect("write");
        let (_, fourth) = load_or_create(dir, &base).expect("replace expiring");
        assert_ne!(fourth.sha256_fingerprint, soon.info.sha256_fingerprint);
        assert!(fourth.not_after > now + 300 * DAY);

        // A usable pair with a loose key mode is kept, and the mode fixed.
        fs::set_permissions(dir.join(KEY_FILE), Permissions::from_mode(0o644)).expect("chmod");
        let (_, fifth) = load_or_create(dir, &base).expect("reuse");
        assert_eq!(fifth.sha256_fingerprint, fourth.sha256_fingerprint);
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
    }

    #[test]
    fn refuses_invalid_names() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let err = load_or_create(tmp.path(), &names(&["bad name"])).expect_err("invalid");
        assert!(matches!(err, TlsError::Generate(_)), "{err:?}");
        let err = load_or_create(tmp.path(), &[]).expect_err("empty");
        assert!(matches!(err, TlsError::Generate(_)), "{err:?}");
        assert!(files_in(tmp.path()).is_empty());
    }

    #[test]
    fn default_names_cover_loopback_host_and_domain() {
        let list = default_names(Some("192.168.1.20"), Some("Exam.Example.org"));
        assert_eq!(list[..3], ["localhost", "127.0.0.1", "::1"]);
        assert!(list.contains(&"192.168.1.20".to_string()));
        assert_eq!(list.last().map(String::as_str), Some("exam.example.org"));
        let unique: std::collections::HashSet<&String> = list.iter().collect();
        assert_eq!(unique.len(), list.len());

        let list = default_names(Some("0.0.0.0"), None);
        assert!(
            !list.contains(&"0.0.0.0".to_string()),
            "wildcard bind address"
        );
        let list = default_names(Some("[::1]"), Some("localhost"));
        assert_eq!(list.iter().filter(|n| *n == "::1").count(), 1);
        assert_eq!(list.iter().filter(|n| *n == "localhost").count(), 1);
        let list = default_names(Some("exam-host"), None);
        assert!(!list.contains(&"exam-host".to_string()) || hostname_is("exam-host"));
    }

    fn hostname_is(name: &str) -> bool {
        gethostname::gethostname().to_str() == Some(name)
    }
}
