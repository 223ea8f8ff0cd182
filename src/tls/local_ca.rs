//! A certificate authority of the exam centre's own, for networks without
//! internet access.
//!
//! `invigil ca init` makes a root whose name constraints permit only the
//! centre's DNS names and IP networks, so installing it on exam PCs cannot
//! let it vouch for any other site, even if its key were stolen. The server
//! certificate is issued from it and reissued well before it expires.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints, SanType,
};
use rustls::pki_types::CertificateDer;
use rustls::sign::CertifiedKey;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::files::{certified_key, parse_certs, parse_key};
use super::metrics::TlsMetrics;
use super::self_signed::{normalize_name, parse_ip, read_if_exists, write_pair};
use super::{CertInfo, CertResolver, TlsError};

pub const CA_DIR: &str = "ca";
pub const ROOT_CERT: &str = "root.crt";
pub const ROOT_KEY: &str = "root.key";
const SERVER_CERT: &str = "local-ca.crt";
const SERVER_KEY: &str = "local-ca.key";
const DAY: Duration = Duration::from_secs(24 * 60 * 60);
const ROOT_VALIDITY: Duration = Duration::from_secs(10 * 365 * DAY.as_secs());
/// Short enough that a leaked server key soon stops mattering, long enough
/// that an exam week never sees a renewal fail for lack of anything.
const SERVER_VALIDITY: Duration = Duration::from_secs(90 * DAY.as_secs());
const RENEW_BEFORE: Duration = Duration::from_secs(30 * DAY.as_secs());
/// Exam PCs with a clock a little behind still accept a fresh certificate.
const BACKDATE: Duration = Duration::from_secs(60 * 60);
const SOURCE: &str = "local-ca";
const WHAT: &str = "local CA";

/// The centre's CA, loaded from `DATA_DIR/ca`.
pub struct LocalCa {
    root_pem: String,
    root_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    permitted_dns: Vec<String>,
    permitted_ip: Vec<IpNet>,
}

/// Where the CA of a data directory lives.
pub fn ca_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(CA_DIR)
}

/// Whether `ca init` was run for this data directory.
pub fn exists(data_dir: &Path) -> bool {
    ca_dir(data_dir).join(ROOT_CERT).exists()
}

/// Creates the root. Refuses to replace an existing one unless `force`,
/// because every exam PC that trusts it would have to be visited again.
pub fn init(
    data_dir: &Path,
    names: &[String],
    networks: &[IpNet],
    force: bool,
) -> Result<LocalCa, TlsError> {
    let dir = ca_dir(data_dir);
    if !force && dir.join(ROOT_CERT).exists() {
        return Err(TlsError::Generate(format!(
            "a local CA already exists in {}; exam PCs trust it. Use --force to replace it",
            dir.display()
        )));
    }
    let mut dns = Vec::new();
    for name in names {
        match normalize_name(name) {
            Some(n) if parse_ip(&n).is_none() => dns.push(n),
            _ => {
                return Err(TlsError::Generate(format!(
                    "{name:?} is not a DNS name (give addresses as --ip)"
                )));
            }
        }
    }
    if dns.is_empty() && networks.is_empty() {
        return Err(TlsError::Generate(
            "the CA needs at least one name (--name or DOMAIN_NAME) or network (--ip)".into(),
        ));
    }
    let gen_err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    let label = dns
        .first()
        .cloned()
        .unwrap_or_else(|| networks[0].to_string());
    dn.push(DnType::CommonName, format!("invigil local CA ({label})"));
    dn.push(DnType::OrganizationName, "invigil exam centre");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = SystemTime::now();
    params.not_before = time::OffsetDateTime::from(now - BACKDATE);
    params.not_after = time::OffsetDateTime::from(now + ROOT_VALIDITY);
    params.name_constraints = Some(constraints(&dns, networks));
    let cert = params.self_signed(&key).map_err(gen_err)?;
    std::fs::create_dir_all(&dir).map_err(|e| super::self_signed::io_error(&dir, e))?;
    write_pair(
        &dir,
        (ROOT_CERT, &cert.pem()),
        (ROOT_KEY, &key.serialize_pem()),
    )?;
    // A new root invalidates the server certificate issued by the old one.
    let _ = std::fs::remove_file(data_dir.join("tls").join(SERVER_CERT));
    load(data_dir)
}

/// Permitted subtrees for the names and networks. A name type with no entry
/// is excluded entirely: RFC 5280 leaves a type without permitted subtrees
/// unconstrained, which would let the root vouch for any IP address.
fn constraints(dns: &[String], networks: &[IpNet]) -> NameConstraints {
    let mut permitted: Vec<GeneralSubtree> = dns
        .iter()
        .map(|n| GeneralSubtree::DnsName(n.clone()))
        .collect();
    permitted.extend(networks.iter().map(|n| {
        GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(n.addr(), n.prefix_len()))
    }));
    let mut excluded = Vec::new();
    if networks.is_empty() {
        excluded.push(GeneralSubtree::IpAddress(CidrSubnet::from_v4_prefix(
            [0; 4], 0,
        )));
        excluded.push(GeneralSubtree::IpAddress(CidrSubnet::from_v6_prefix(
            [0; 16], 0,
        )));
    }
    if dns.is_empty() {
        // An empty DNS subtree covers every name (RFC 5280 §4.2.1.10).
        excluded.push(GeneralSubtree::DnsName(String::new()));
    }
    NameConstraints {
        permitted_subtrees: permitted,
        excluded_subtrees: excluded,
    }
}

/// Loads the CA of `data_dir`.
pub fn load(data_dir: &Path) -> Result<LocalCa, TlsError> {
    let dir = ca_dir(data_dir);
    let cert_path = dir.join(ROOT_CERT);
    let key_path = dir.join(ROOT_KEY);
    let missing = |p: &Path| TlsError::Read {
        what: WHAT,
        path: p.to_path_buf(),
        message: "missing; run `invigil ca init`".into(),
    };
    let root_pem = read_if_exists(&cert_path)?.ok_or_else(|| missing(&cert_path))?;
    let key_pem = read_if_exists(&key_path)?.ok_or_else(|| missing(&key_path))?;
    let root_der = parse_certs(WHAT, &root_pem)?.remove(0);
    let key = KeyPair::from_pem(&key_pem).map_err(|_| TlsError::NoKey { what: WHAT })?;
    let issuer = Issuer::from_ca_cert_der(&root_der, key).map_err(|e| TlsError::BadPem {
        what: WHAT,
        message: format!("unusable root certificate: {e}"),
    })?;
    let (permitted_dns, permitted_ip) = permitted(&root_der)?;
    Ok(LocalCa {
        root_pem,
        root_der,
        issuer,
        permitted_dns,
        permitted_ip,
    })
}

fn permitted(root: &CertificateDer<'_>) -> Result<(Vec<String>, Vec<IpNet>), TlsError> {
    let (_, cert) = X509Certificate::from_der(root.as_ref()).map_err(|e| TlsError::BadPem {
        what: WHAT,
        message: format!("not a valid X.509 certificate: {e}"),
    })?;
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(nc)) = cert.name_constraints() {
        for subtree in nc.value.permitted_subtrees.iter().flatten() {
            match &subtree.base {
                x509_parser::extensions::GeneralName::DNSName(n) => {
                    dns.push(n.to_ascii_lowercase())
                }
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    if let Some(net) = net_from_bytes(bytes) {
                        ips.push(net);
                    }
                }
                _ => {}
            }
        }
    }
    Ok((dns, ips))
}

/// Address followed by mask, as name constraints encode a network.
fn net_from_bytes(bytes: &[u8]) -> Option<IpNet> {
    let (addr, mask): (IpAddr, &[u8]) = match bytes.len() {
        8 => (
            IpAddr::from(<[u8; 4]>::try_from(&bytes[..4]).ok()?),
            &bytes[4..],
        ),
        32 => (
            IpAddr::from(<[u8; 16]>::try_from(&bytes[..16]).ok()?),
            &bytes[16..],
        ),
        _ => return None,
    };
    let prefix = mask.iter().map(|b| b.count_ones()).sum::<u32>();
    IpNet::new(addr, u8::try_from(prefix).ok()?).ok()
}

impl LocalCa {
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    pub fn root_der(&self) -> &CertificateDer<'static> {
        &self.root_der
    }

    /// The DNS names and networks the root may vouch for.
    pub fn scope(&self) -> (Vec<String>, Vec<IpNet>) {
        (self.permitted_dns.clone(), self.permitted_ip.clone())
    }

    /// Whether a certificate for `name` would be accepted by clients.
    pub fn permits(&self, name: &str) -> bool {
        let Some(name) = normalize_name(name) else {
            return false;
        };
        match parse_ip(&name) {
            Some(ip) => self.permitted_ip.iter().any(|n| n.contains(&ip)),
            None => self
                .permitted_dns
                .iter()
                .any(|p| name == *p || name.ends_with(&format!(".{p}"))),
        }
    }

    /// A server certificate for `names` valid from now for `validity`. Names
    /// are not checked against the constraints here; clients do that.
    pub fn issue(
        &self,
        names: &[String],
        validity: Duration,
    ) -> Result<(String, String, CertifiedKey, CertInfo), TlsError> {
        let gen_err = |e: rcgen::Error| TlsError::Generate(e.to_string());
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().map_or("invigil", String::as_str),
        );
        params.distinguished_name = dn;
        params.subject_alt_names = names
            .iter()
            .map(|n| match parse_ip(n) {
                Some(ip) => Ok(SanType::IpAddress(ip)),
                None => n.as_str().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()
            .map_err(gen_err)?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = SystemTime::now();
        params.not_before = time::OffsetDateTime::from(now - BACKDATE);
        params.not_after = time::OffsetDateTime::from(now + validity);
        let cert = params.signed_by(&key, &self.issuer).map_err(gen_err)?;
        // The file keeps the root after the leaf so a reissue is noticed when
        // the root changes; the handshake sends the leaf only.
        let cert_pem = format!("{}{}", cert.pem(), self.root_pem);
        let key_pem = key.serialize_pem();
        let chain = vec![cert.der().clone()];
        let private = parse_key("local CA server key", &key_pem)?;
        let certified = certified_key(
            chain,
            private,
            "local CA server certificate",
            "local CA server key",
        )?;
        let info = CertInfo::from_der(cert.der(), "local CA server certificate")?;
        Ok((cert_pem, key_pem, certified, info))
    }

    /// The names of the server certificate: those of `wanted` the root may
    /// vouch for. Errors when none is left.
    pub fn server_names(&self, wanted: &[String]) -> Result<Vec<String>, TlsError> {
        let names: Vec<String> = wanted.iter().filter(|n| self.permits(n)).cloned().collect();
        if names.is_empty() {
            let (dns, ips) = self.scope();
            let scope: Vec<String> = dns
                .into_iter()
                .chain(ips.iter().map(IpNet::to_string))
                .collect();
            return Err(TlsError::Generate(format!(
                "none of {} is within the local CA's names ({}); set DOMAIN_NAME or HOST to one of them",
                wanted.join(", "),
                scope.join(", ")
            )));
        }
        Ok(names)
    }
}

/// The server certificate kept in `DATA_DIR/tls`, reissued when missing,
/// unreadable, due for renewal, not covering `names`, or from another root.
pub fn server_certificate(
    data_dir: &Path,
    ca: &LocalCa,
    names: &[String],
) -> Result<(CertifiedKey, CertInfo, bool), TlsError> {
    let dir = data_dir.join("tls");
    if let (Some(cert_pem), Some(key_pem)) = (
        read_if_exists(&dir.join(SERVER_CERT))?,
        read_if_exists(&dir.join(SERVER_KEY))?,
    ) && let Ok(chain) = parse_certs(WHAT, &cert_pem)
        && chain.get(1) == Some(&ca.root_der)
        && let Ok(info) = CertInfo::from_der(&chain[0], WHAT)
        && !info.expires_within(RENEW_BEFORE, SystemTime::now())
        && names.iter().all(|n| info.covers(n))
        && let Ok(key) = parse_key(WHAT, &key_pem)
        && let Ok(certified) = certified_key(vec![chain[0].clone()], key, WHAT, WHAT)
    {
        return Ok((certified, info, false));
    }
    let (cert_pem, key_pem, certified, info) = ca.issue(names, SERVER_VALIDITY)?;
    write_pair(&dir, (SERVER_CERT, &cert_pem), (SERVER_KEY, &key_pem))?;
    Ok((certified, info, true))
}

/// Reissues the server certificate when it is due, checking every `every`.
pub async fn run_renewal(
    data_dir: PathBuf,
    names: Vec<String>,
    resolver: Arc<CertResolver>,
    metrics: TlsMetrics,
    every: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(every) => {}
        }
        let renewed = load(&data_dir).and_then(|ca| server_certificate(&data_dir, &ca, &names));
        match renewed {
            Ok((_, _, false)) => {}
            Ok((certified, info, true)) => {
                resolver.swap(certified);
                metrics.success(SOURCE);
                metrics.set_expiry(info.not_after);
                tracing::info!(
                    fingerprint = %info.sha256_fingerprint,
                    "renewed the server certificate from the local CA"
                );
            }
            Err(e) => {
                metrics.failure(SOURCE);
                tracing::error!(
                    "local CA: cannot renew the server certificate, the current one stays: {e}"
                );
            }
        }
    }
}

/// Writes the root for exam PCs: PEM, or DER with `der`.
pub fn export(data_dir: &Path, der: bool) -> Result<Vec<u8>, TlsError> {
    let ca = load(data_dir)?;
    Ok(if der {
        ca.root_der().to_vec()
    } else {
        ca.root_pem().as_bytes().to_vec()
    })
}
