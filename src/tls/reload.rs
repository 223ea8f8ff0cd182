//! Hot reload of the operator's own certificate (`SSL_CERT`, `SSL_KEY`,
//! `SSL_CA`): on SIGHUP and when the files change.
//!
//! Files are polled by content rather than watched with inotify: certbot,
//! acme.sh and configuration management replace them by rename, often in a
//! directory of symlinks, and a content digest sees every such change. A new
//! certificate that does not load (unreadable, garbage, key mismatch, expired)
//! is refused with an error and the one in service keeps serving.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use super::files::{load_pair, read_input};
use super::metrics::TlsMetrics;
use super::{CertInfo, CertResolver, TlsError};

const SOURCE: &str = "files";

/// The three inputs as configured: PEM content or file paths.
#[derive(Clone)]
pub struct OwnCertificate {
    pub cert: String,
    /// Never logged: may be the key itself.
    pub key: String,
    pub ca: Option<String>,
}

/// What one check found.
#[derive(Debug)]
pub enum Reloaded {
    /// The inputs are what is already in service.
    Unchanged,
    /// A new certificate is now served.
    Swapped(CertInfo),
}

/// Reloads [`OwnCertificate`] into a resolver.
pub struct Reloader {
    inputs: OwnCertificate,
    resolver: Arc<CertResolver>,
    metrics: TlsMetrics,
    /// Digest of the inputs last tried, so a refused file is reported once
    /// per change instead of on every poll.
    last_seen: Mutex<Option<[u8; 32]>>,
}

impl Reloader {
    /// `resolver` must already serve the certificate from `inputs`.
    pub fn new(inputs: OwnCertificate, resolver: Arc<CertResolver>, metrics: TlsMetrics) -> Self {
        let reloader = Reloader {
            inputs,
            resolver,
            metrics,
            last_seen: Mutex::new(None),
        };
        let digest = reloader.digest().ok();
        *reloader.last() = digest;
        reloader
    }

    fn last(&self) -> std::sync::MutexGuard<'_, Option<[u8; 32]>> {
        self.last_seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn digest(&self) -> Result<[u8; 32], TlsError> {
        let mut hash = Sha256::new();
        hash.update(read_input("SSL_CERT", &self.inputs.cert, false)?);
        hash.update([0]);
        hash.update(read_input("SSL_KEY", &self.inputs.key, true)?);
        hash.update([0]);
        if let Some(ca) = self.inputs.ca.as_deref().filter(|c| !c.trim().is_empty()) {
            hash.update(read_input("SSL_CA", ca, false)?);
        }
        Ok(hash.finalize().into())
    }

    /// Loads the inputs and swaps them in when they changed since the last
    /// check, or always when `force` (SIGHUP). On error nothing is swapped.
    pub fn check(&self, force: bool) -> Result<Reloaded, TlsError> {
        let digest = match self.digest() {
            Ok(d) => d,
            Err(e) => {
                // A missing file (mid-rotation) is retried on the next poll.
                self.metrics.failure(SOURCE);
                return Err(e);
            }
        };
        {
            let mut last = self.last();
            if !force && *last == Some(digest) {
                return Ok(Reloaded::Unchanged);
            }
            *last = Some(digest);
        }
        let loaded = load_pair(
            &self.inputs.cert,
            &self.inputs.key,
            self.inputs.ca.as_deref(),
        );
        match loaded {
            Ok((certified, info)) => {
                self.resolver.swap(certified);
                self.metrics.success(SOURCE);
                self.metrics.set_expiry(info.not_after);
                Ok(Reloaded::Swapped(info))
            }
            Err(e) => {
                self.metrics.failure(SOURCE);
                Err(e)
            }
        }
    }

    /// Checks every `interval` (never when `None`) and whenever `hup` is
    /// notified, until `shutdown` resolves.
    pub async fn run(
        self: Arc<Self>,
        interval: Option<Duration>,
        hup: Arc<Notify>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            let poll = async {
                match interval {
                    Some(every) => tokio::time::sleep(every).await,
                    None => std::future::pending().await,
                }
            };
            let force = tokio::select! {
                () = &mut shutdown => return,
                () = hup.notified() => true,
                () = poll => false,
            };
            match self.check(force) {
                Ok(Reloaded::Unchanged) => {}
                Ok(Reloaded::Swapped(info)) => tracing::info!(
                    fingerprint = %info.sha256_fingerprint,
                    expires = %super::info::format_time(info.not_after),
                    "serving the new certificate from SSL_CERT ({})",
                    info.names.join(", ")
                ),
                Err(e) => tracing::error!(
                    "certificate not reloaded, the previous one stays in service: {e}"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::info::fingerprint;

    fn write_pem(dir: &std::path::Path, names: &[&str]) -> String {
        let made = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        std::fs::write(dir.join("cert.pem"), made.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()).unwrap();
        fingerprint(made.cert.der())
    }

    #[test]
    fn changed_files_swap_and_broken_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = write_pem(dir.path(), &["localhost"]);
        let inputs = OwnCertificate {
            cert: dir.path().join("cert.pem").display().to_string(),
            key: dir.path().join("key.pem").display().to_string(),
            ca: None,
        };
        let (initial, _) = load_pair(&inputs.cert, &inputs.key, None).unwrap();
        let resolver = Arc::new(CertResolver::new(initial));
        let metrics = TlsMetrics::new();
        let reloader = Reloader::new(inputs, resolver.clone(), metrics.clone());
        let served = || fingerprint(&resolver.current().cert[0]);
        assert_eq!(served(), first);
        assert!(matches!(reloader.check(false), Ok(Reloaded::Unchanged)));

        let second = write_pem(dir.path(), &["localhost"]);
        assert!(matches!(reloader.check(false), Ok(Reloaded::Swapped(_))));
        assert_eq!(served(), second);

        // A key from another certificate: refused, the second one stays.
        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(
            dir.path().join("key.pem"),
            other.signing_key.serialize_pem(),
        )
        .unwrap();
        assert!(matches!(
            reloader.check(false),
            Err(TlsError::KeyMismatch { .. })
        ));
        assert_eq!(served(), second);
        // Reported once per change, not on every poll.
        assert!(matches!(reloader.check(false), Ok(Reloaded::Unchanged)));
        assert_eq!(metrics.failures(SOURCE), 1);

        std::fs::write(dir.path().join("cert.pem"), "garbage").unwrap();
        assert!(matches!(
            reloader.check(false),
            Err(TlsError::NoCertificate { .. })
        ));
        assert_eq!(served(), second);
    }
}
