//! Checks that need the file system or other modules (the data directory,
//! certificates, the object storage URI), run after the configuration is read
//! and before any socket opens, reporting every problem together.

use super::datadir::{self, DataDirLock};
use crate::config::{Config, ConfigError, ConfigErrors};
use crate::tls::acme::AcmeSettings;
use crate::tls::reload::OwnCertificate;
use crate::tls::{self, CertResolver, CertifiedKey, TlsError};
use std::sync::Arc;

/// What the checks produced for starting up.
pub(super) struct Checked {
    pub tls_mode: &'static str,
    /// `None` behind a reverse proxy, which terminates TLS.
    pub resolver: Option<Arc<CertResolver>>,
    pub renewal: Renewal,
    pub lock: DataDirLock,
}

pub(super) fn run(config: &Config) -> Result<Checked, ConfigErrors> {
    let mut errors = Vec::new();

    let data_ok = match datadir::prepare(&config.data_dir) {
        Ok(()) => true,
        Err(e) => {
            push(&mut errors, "DATA_DIR", e);
            false
        }
    };
    let lock = if data_ok {
        datadir::lock(&config.data_dir)
            .map_err(|e| push(&mut errors, "DATA_DIR", e))
            .ok()
    } else {
        None
    };

    check_minio(config, &mut errors);
    let certificate = if config.reverse_proxy {
        Some(None)
    } else {
        choose_certificate(config, data_ok, &mut errors).map(Some)
    };

    match (lock, certificate) {
        (Some(lock), Some(chosen)) if errors.is_empty() => {
            let (tls_mode, resolver, renewal) = match chosen {
                None => (tls::Mode::Proxy, None, Renewal::None),
                Some((certified, mode, renewal)) => {
                    (mode, Some(Arc::new(CertResolver::new(certified))), renewal)
                }
            };
            Ok(Checked {
                tls_mode: tls_mode.as_str(),
                resolver,
                renewal,
                lock,
            })
        }
        _ => Err(ConfigErrors(errors)),
    }
}

/// What keeps the certificate current after start-up.
pub(super) enum Renewal {
    None,
    Files(OwnCertificate),
    Acme(AcmeSettings),
    LocalCa(Vec<String>),
}

/// First match wins: own files, the local CA once `ca init` ran, ACME for a
/// public `DOMAIN_NAME` (or any name with `ACME_DIRECTORY`), self-signed.
fn choose_certificate(
    config: &Config,
    data_ok: bool,
    errors: &mut Vec<ConfigError>,
) -> Option<(CertifiedKey, tls::Mode, Renewal)> {
    if let Some(certified) = own_certificate(config, errors) {
        let (Some(cert), Some(key)) = (&config.ssl_cert, &config.ssl_key) else {
            return None;
        };
        let own = OwnCertificate {
            cert: cert.clone(),
            key: key.expose().to_string(),
            ca: config.ssl_ca.clone(),
        };
        return Some((certified, tls::Mode::Files, Renewal::Files(own)));
    }
    if config.ssl_cert.is_some() || !data_ok {
        return None;
    }
    let names = tls::self_signed::default_names(
        Some(&config.host.to_string()),
        config.domain_name.as_deref(),
    );
    if tls::local_ca::exists(&config.data_dir) {
        let issued = tls::local_ca::load(&config.data_dir).and_then(|ca| {
            let names = ca.server_names(&names)?;
            let (certified, info, _) =
                tls::local_ca::server_certificate(&config.data_dir, &ca, &names)?;
            Ok((certified, info, names))
        });
        return match issued {
            Ok((certified, info, names)) => {
                tracing::info!(
                    fingerprint = %info.sha256_fingerprint,
                    "serving a certificate from the local CA for {}",
                    info.names.join(", ")
                );
                Some((certified, tls::Mode::LocalCa, Renewal::LocalCa(names)))
            }
            Err(e) => {
                push(errors, "DATA_DIR", format!("local CA: {e}"));
                None
            }
        };
    }
    let acme_domain = config
        .domain_name
        .clone()
        .filter(|d| config.acme_directory_set || tls::acme::is_public_name(d));
    if let Some(domain) = &acme_domain
        && let Some((certified, info)) = tls::acme::load_saved(&config.data_dir, domain)
    {
        tracing::info!(
            fingerprint = %info.sha256_fingerprint,
            "serving the ACME certificate obtained earlier for {domain}"
        );
        return Some((certified, tls::Mode::Acme, acme_renewal(config, domain)));
    }
    // Until ACME delivers, the self-signed certificate keeps the server usable.
    match tls::self_signed::load_or_create(&config.data_dir.join("tls"), &names) {
        Ok((certified, info)) => {
            tracing::info!(
                fingerprint = %info.sha256_fingerprint,
                "serving a self-signed certificate for {}",
                info.names.join(", ")
            );
            Some(match &acme_domain {
                Some(domain) => (certified, tls::Mode::Acme, acme_renewal(config, domain)),
                None => (certified, tls::Mode::SelfSigned, Renewal::None),
            })
        }
        Err(e) => {
            push(errors, "DATA_DIR", e.to_string());
            None
        }
    }
}

fn acme_renewal(config: &Config, domain: &str) -> Renewal {
    Renewal::Acme(AcmeSettings {
        directory: config.acme_directory.clone(),
        ca_root: config.acme_ca_root.clone(),
        email: config.acme_email.clone(),
        domain: domain.to_string(),
        challenge: config.acme_challenge,
        renew_before: config.acme_renew_before,
        data_dir: config.data_dir.clone(),
        retry_after: config.acme_retry_after,
    })
}

/// The checks `check-config` runs: like start-up, but without creating,
/// locking or generating anything.
pub fn check(config: &Config) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if let Err(e) = datadir::check(&config.data_dir) {
        push(&mut errors, "DATA_DIR", e);
    }
    check_minio(config, &mut errors);
    own_certificate(config, &mut errors);
    if let Some(root) = &config.acme_ca_root
        && let Err(e) = tls::files::read_input("ACME_CA_ROOT", root, false)
            .and_then(|pem| tls::files::parse_certs("ACME_CA_ROOT", &pem))
    {
        let (_, message) = split_tls_error(&e);
        push(&mut errors, "ACME_CA_ROOT", message);
    }
    errors
}

fn push(errors: &mut Vec<ConfigError>, var: &str, message: String) {
    errors.push(ConfigError {
        var: var.into(),
        message,
    });
}

fn check_minio(config: &Config, errors: &mut Vec<ConfigError>) {
    if let Some(uri) = &config.minio_uri
        && let Err(e) = crate::objects::parse_minio_uri(uri.expose())
    {
        push(errors, "MINIO_URI", e.to_string());
    }
    if let Some(crate::config::ColdTier::Uri(uri)) = &config.cold
        && let Err(e) = crate::objects::parse_minio_uri(uri.expose())
    {
        push(errors, "COLD_URI", e.to_string());
    }
}

/// Loads `SSL_CERT`/`SSL_KEY`/`SSL_CA` when they are set.
fn own_certificate(config: &Config, errors: &mut Vec<ConfigError>) -> Option<CertifiedKey> {
    let (Some(cert), Some(key)) = (&config.ssl_cert, &config.ssl_key) else {
        return None;
    };
    match tls::files::load_pair(cert, key.expose(), config.ssl_ca.as_deref()) {
        Ok((certified, info)) => {
            if let Some(domain) = &config.domain_name
                && !info.covers(domain)
            {
                tracing::warn!(
                    "SSL_CERT does not cover DOMAIN_NAME {domain} (it names {})",
                    info.names.join(", ")
                );
            }
            Some(certified)
        }
        Err(e) => {
            let (var, message) = split_tls_error(&e);
            push(errors, var, message);
            None
        }
    }
}

/// The variable a certificate error is about, and the message without the
/// variable name that the error text already starts with.
fn split_tls_error(e: &TlsError) -> (&'static str, String) {
    let var = match e {
        TlsError::Read { what, .. }
        | TlsError::NoCertificate { what }
        | TlsError::NoKey { what }
        | TlsError::BadPem { what, .. }
        | TlsError::Expired { what, .. }
        | TlsError::NotYetValid { what, .. } => what,
        TlsError::KeyMismatch { key, .. } => key,
        TlsError::Generate(_) | TlsError::Io { .. } | TlsError::Acme(_) => "SSL_CERT",
    };
    let text = e.to_string();
    let message = text
        .strip_prefix(var)
        .and_then(|rest| rest.strip_prefix(": "))
        .map_or(text.clone(), str::to_string);
    (var, message)
}
