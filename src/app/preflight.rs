//! Checks that need the file system or other modules (the data directory,
//! certificates, the object storage URI), run after the configuration is read
//! and before any socket opens, reporting every problem together.

use super::datadir::{self, DataDirLock};
use crate::config::{Config, ConfigError, ConfigErrors};
use crate::tls::{self, CertResolver, CertifiedKey, TlsError};
use std::sync::Arc;

/// What the checks produced for starting up.
pub(super) struct Checked {
    pub tls_mode: &'static str,
    pub resolver: Arc<CertResolver>,
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
    let certificate = match own_certificate(config, &mut errors) {
        Some(certified) => Some((certified, "files")),
        None if config.ssl_cert.is_some() => None,
        _ if !data_ok => None,
        _ => {
            let names = tls::self_signed::default_names(
                Some(&config.host.to_string()),
                config.domain_name.as_deref(),
            );
            match tls::self_signed::load_or_create(&config.data_dir.join("tls"), &names) {
                Ok((certified, info)) => {
                    tracing::info!(
                        fingerprint = %info.sha256_fingerprint,
                        "serving a self-signed certificate for {}",
                        info.names.join(", ")
                    );
                    Some((certified, "self-signed"))
                }
                Err(e) => {
                    push(&mut errors, "DATA_DIR", e.to_string());
                    None
                }
            }
        }
    };

    match (lock, certificate) {
        (Some(lock), Some((certified, tls_mode))) if errors.is_empty() => Ok(Checked {
            tls_mode,
            resolver: Arc::new(CertResolver::new(certified)),
            lock,
        }),
        _ => Err(ConfigErrors(errors)),
    }
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
        TlsError::Generate(_) | TlsError::Io { .. } => "SSL_CERT",
    };
    let text = e.to_string();
    let message = text
        .strip_prefix(var)
        .and_then(|rest| rest.strip_prefix(": "))
        .map_or(text.clone(), str::to_string);
    (var, message)
}
