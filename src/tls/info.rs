//! What the rest of invigil needs to know about a certificate: the names it
//! is valid for, its validity window and a fingerprint to show to people.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::time::ASN1Time;

use super::TlsError;

/// Summary of a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject alternative names: DNS names as written in the certificate,
    /// IP addresses in their canonical text form. The subject CN is not
    /// included because browsers ignore it.
    pub names: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// SHA-256 of the DER certificate, upper-case hex pairs separated by
    /// colons, as browsers and `openssl x509 -fingerprint -sha256` show it.
    pub sha256_fingerprint: String,
}

impl CertInfo {
    /// Parses the leaf certificate; `what` names the input for errors.
    pub fn from_der(der: &CertificateDer<'_>, what: &'static str) -> Result<Self, TlsError> {
        let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| TlsError::BadPem {
            what,
            message: format!("not a valid X.509 certificate: {e}"),
        })?;
        let mut names = Vec::new();
        let san = cert
            .subject_alternative_name()
            .map_err(|e| TlsError::BadPem {
                what,
                message: format!("bad subjectAltName extension: {e}"),
            })?;
        if let Some(san) = san {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => names.push((*dns).to_string()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            names.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        let validity = cert.validity();
        Ok(CertInfo {
            names,
            not_before: system_time(validity.not_before),
            not_after: system_time(validity.not_after),
            sha256_fingerprint: fingerprint(der),
        })
    }

    /// Whether the certificate is valid for `name` (a DNS name or an IP
    /// address). A wildcard `*.example.org` covers exactly one extra label.
    pub fn covers(&self, name: &str) -> bool {
        let wanted = normalize_dns(name);
        if wanted.is_empty() {
            return false;
        }
        if let Ok(ip) = wanted.parse::<IpAddr>() {
            return self
                .names
                .iter()
                .any(|n| n.parse::<IpAddr>().is_ok_and(|have| have == ip));
        }
        self.names.iter().any(|have| {
            let have = normalize_dns(have);
            if have.parse::<IpAddr>().is_ok() {
                return false;
            }
            match have.strip_prefix("*.") {
                Some(suffix) => wanted
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
                None => have == wanted,
            }
        })
    }

    /// Whether `now` lies outside the validity window or the certificate
    /// expires within `margin` of it.
    pub fn expires_within(&self, margin: Duration, now: SystemTime) -> bool {
        now < self.not_before || now + margin >= self.not_after
    }

    /// Refuses a certificate that is expired or not yet valid at `now`.
    pub fn check_validity(&self, what: &'static str, now: SystemTime) -> Result<(), TlsError> {
        if now < self.not_before {
            return Err(TlsError::NotYetValid {
                what,
                not_before: format_time(self.not_before),
            });
        }
        if now > self.not_after {
            return Err(TlsError::Expired {
                what,
                not_after: format_time(self.not_after),
            });
        }
        Ok(())
    }
}

/// SHA-256 fingerprint of a DER certificate in the `AB:CD:…` form.
pub fn fingerprint(der: &CertificateDer<'_>) -> String {
    let digest = Sha256::digest(der.as_ref());
    let hex = hex::encode_upper(digest);
    let pairs: Vec<&str> = hex
        .as_bytes()
        .chunks(2)
        .filter_map(|p| std::str::from_utf8(p).ok())
        .collect();
    pairs.join(":")
}

/// Human-readable UTC time for error messages and logs.
pub fn format_time(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

/// Lower-case, without a trailing dot: DNS names compare case-insensitively
/// and `example.org.` is the same host as `example.org`.
fn normalize_dns(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn system_time(t: ASN1Time) -> SystemTime {
    let secs = t.timestamp();
    match u64::try_from(secs) {
        Ok(s) => UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(names: &[&str]) -> CertInfo {
        CertInfo {
            names: names.iter().map(|s| s.to_string()).collect(),
            not_before: UNIX_EPOCH,
            not_after: UNIX_EPOCH + Duration::from_secs(1000),
            sha256_fingerprint: String::new(),
        }
    }

    #[test]
    fn covers_exact_wildcard_and_ip() {
        let i = info(&["exam.example.org", "*.Example.ORG", "10.0.0.1", "::1"]);
        assert!(i.covers("exam.example.org"));
        assert!(i.covers("EXAM.example.org."));
        assert!(i.covers("www.example.org"));
        assert!(
            !i.covers("example.org"),
            "a wildcard does not cover the bare domain"
        );
        assert!(
            !i.covers("a.b.example.org"),
            "a wildcard covers one label only"
        );
        assert!(!i.covers("www.example.com"));
        assert!(i.covers("10.0.0.1"));
        assert!(i.covers("0:0:0:0:0:0:0:1"));
        assert!(!i.covers("10.0.0.2"));
        assert!(!i.covers(""));
        assert!(!info(&["*.example.org"]).covers(".example.org"));
    }

    #[test]
    fn validity_window() {
        let i = info(&[]);
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert!(i.check_validity("SSL_CERT", at(500)).is_ok());
        assert!(matches!(
            i.check_validity("SSL_CERT", at(2000)),
            Err(TlsError::Expired {
                what: "SSL_CERT",
                ..
            })
        ));
        assert!(!i.expires_within(Duration::from_secs(100), at(500)));
        assert!(i.expires_within(Duration::from_secs(600), at(500)));
    }
}
