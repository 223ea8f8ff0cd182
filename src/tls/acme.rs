//! Certificates from an ACME CA (Let's Encrypt by default, or the exam
//! centre's own ACME server): account, order, http-01 or tls-alpn-01
//! validation, renewal before expiry or when the CA's renewal information
//! (ARI, RFC 9773) says so, retries with backoff, and a live swap of the
//! served certificate.
//!
//! Nothing here knows about HTTP frameworks: http-01 answers are shared with
//! the web layer through [`Http01Tokens`], tls-alpn-01 answers through the
//! [`CertResolver`]. A failure is logged and counted and never replaces a
//! working certificate.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, CertificateIdentifier,
    ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};

use super::files::{certified_key, parse_certs, parse_key, read_input};
use super::metrics::TlsMetrics;
use super::self_signed::{read_if_exists, write_atomic, write_pair};
use super::{CertInfo, CertResolver, TlsError, provider};
use crate::config::AcmeChallenge;

const SOURCE: &str = "acme";
const CERT_FILE: &str = "acme.crt";
const KEY_FILE: &str = "acme.key";
const ACCOUNT_FILE: &str = "account.json";
const WHAT: &str = "ACME certificate";
/// ARI windows can move (a CA revoking early), so a far-off renewal is
/// re-evaluated at least this often.
const RECHECK: Duration = Duration::from_secs(6 * 60 * 60);
/// Retries back off from the first delay up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(60 * 60);

/// http-01 key authorizations by token, read by the plain HTTP listener.
#[derive(Debug, Default)]
pub struct Http01Tokens {
    map: RwLock<HashMap<String, String>>,
}

impl Http01Tokens {
    pub fn new() -> Self {
        Self::default()
    }

    /// The body to answer `GET /.well-known/acme-challenge/{token}` with.
    pub fn get(&self, token: &str) -> Option<String> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(token).cloned()
    }

    fn set(&self, token: &str, key_authorization: &str) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        map.insert(token.to_string(), key_authorization.to_string());
    }

    fn remove(&self, token: &str) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        map.remove(token);
    }
}

/// What the ACME client needs from the configuration.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub directory: String,
    /// PEM content or path of a root to trust for the directory; the
    /// system's roots when `None`.
    pub ca_root: Option<String>,
    pub email: Option<String>,
    pub domain: String,
    pub challenge: AcmeChallenge,
    pub renew_before: Duration,
    pub data_dir: PathBuf,
    /// First retry delay after a failure; doubles up to an hour.
    pub retry_after: Duration,
}

/// Whether `name` can get a certificate from a public CA: a dotted DNS name
/// outside the reserved and local-only suffixes.
pub fn is_public_name(name: &str) -> bool {
    const LOCAL: [&str; 9] = [
        ".local",
        ".lan",
        ".home",
        ".internal",
        ".localhost",
        ".test",
        ".example",
        ".invalid",
        ".home.arpa",
    ];
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.contains('.')
        && name.parse::<std::net::IpAddr>().is_err()
        && !LOCAL.iter().any(|s| name.ends_with(s))
}

/// The certificate obtained earlier, if it is still usable for `domain`, so
/// a restart serves it at once and does not order again.
pub fn load_saved(data_dir: &Path, domain: &str) -> Option<(CertifiedKey, CertInfo)> {
    let dir = data_dir.join("tls");
    let cert_pem = read_if_exists(&dir.join(CERT_FILE)).ok()??;
    let key_pem = read_if_exists(&dir.join(KEY_FILE)).ok()??;
    match parse_pair(&cert_pem, &key_pem) {
        Ok((certified, info))
            if info.covers(domain) && info.check_validity(WHAT, SystemTime::now()).is_ok() =>
        {
            Some((certified, info))
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!("ignoring the saved ACME certificate: {e}");
            None
        }
    }
}

fn parse_pair(cert_pem: &str, key_pem: &str) -> Result<(CertifiedKey, CertInfo), TlsError> {
    let chain = parse_certs(WHAT, cert_pem)?;
    let info = CertInfo::from_der(&chain[0], WHAT)?;
    let key = parse_key("ACME key", key_pem)?;
    Ok((certified_key(chain, key, WHAT, "ACME key")?, info))
}

fn acme_error(context: &str, e: impl std::fmt::Display) -> TlsError {
    TlsError::Acme(format!("{context}: {e}"))
}

/// The ACME client of one instance.
pub struct Acme {
    settings: AcmeSettings,
    resolver: Arc<CertResolver>,
    tokens: Arc<Http01Tokens>,
    metrics: TlsMetrics,
    account: tokio::sync::Mutex<Option<Account>>,
    /// The ACME certificate in service, `None` while the self-signed one is.
    served: std::sync::Mutex<Option<CertificateDer<'static>>>,
}

impl Acme {
    pub fn new(
        settings: AcmeSettings,
        resolver: Arc<CertResolver>,
        tokens: Arc<Http01Tokens>,
        metrics: TlsMetrics,
    ) -> Self {
        let served = load_saved(&settings.data_dir, &settings.domain)
            .and_then(|(certified, _)| certified.cert.first().cloned());
        Acme {
            settings,
            resolver,
            tokens,
            metrics,
            account: tokio::sync::Mutex::new(None),
            served: std::sync::Mutex::new(served),
        }
    }

    fn served(&self) -> Option<CertificateDer<'static>> {
        self.served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Obtains and renews until `shutdown` resolves.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut failures: u32 = 0;
        loop {
            let wait = if failures > 0 {
                backoff(self.settings.retry_after, failures)
            } else {
                self.until_renewal().await
            };
            if !wait.is_zero() {
                tracing::debug!(?wait, "next ACME check");
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(wait) => {}
            }
            // Only a certificate actually due gets renewed; waking up early
            // (the RECHECK cap) just re-evaluates.
            if failures == 0 && !self.until_renewal().await.is_zero() {
                continue;
            }
            let attempt = tokio::select! {
                () = &mut shutdown => return,
                result = self.renew_once() => result,
            };
            match attempt {
                Ok(info) => {
                    failures = 0;
                    tracing::info!(
                        fingerprint = %info.sha256_fingerprint,
                        expires = %super::info::format_time(info.not_after),
                        "serving a new certificate for {} from {}",
                        self.settings.domain,
                        self.settings.directory
                    );
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    self.metrics.failure(SOURCE);
                    tracing::error!(
                        retry_in = ?backoff(self.settings.retry_after, failures),
                        "ACME: no certificate for {} this time; the current one stays in service: {e}",
                        self.settings.domain
                    );
                }
            }
        }
    }

    /// Time until the served certificate should be renewed: `ACME_DAYS`
    /// before expiry, or earlier inside the CA's ARI window. Zero when no
    /// ACME certificate is served yet.
    async fn until_renewal(&self) -> Duration {
        let Some(der) = self.served() else {
            return Duration::ZERO;
        };
        let Ok(info) = CertInfo::from_der(&der, WHAT) else {
            return Duration::ZERO;
        };
        let now = SystemTime::now();
        let mut due = info
            .not_after
            .checked_sub(renewal_margin(&info, self.settings.renew_before))
            .unwrap_or(now);
        if let Some(suggested) = self.ari_time(&der).await {
            due = due.min(suggested);
        }
        due.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(RECHECK)
    }

    /// A moment inside the CA's suggested renewal window, when it has one.
    async fn ari_time(&self, der: &CertificateDer<'static>) -> Option<SystemTime> {
        let id = CertificateIdentifier::try_from(der).ok()?;
        let account = self.account().await.ok()?;
        match account.renewal_info(&id).await {
            Ok((info, _)) => {
                let start = SystemTime::from(info.suggested_window.start);
                let end = SystemTime::from(info.suggested_window.end);
                let span = end.duration_since(start).unwrap_or(Duration::ZERO);
                // RFC 9773 §4.2: a random point spreads renewals out.
                Some(start + span.mul_f64(rand::random::<f64>()))
            }
            Err(e) => {
                tracing::debug!("ACME renewal information unavailable: {e}");
                None
            }
        }
    }

    /// The account, loaded from `DATA_DIR/acme/account.json` or created.
    async fn account(&self) -> Result<Account, TlsError> {
        let mut slot = self.account.lock().await;
        if let Some(account) = slot.as_ref() {
            return Ok(account.clone());
        }
        let dir = self.settings.data_dir.join("acme");
        let path = dir.join(ACCOUNT_FILE);
        let saved: Option<SavedAccount> = read_if_exists(&path)?
            .and_then(|json| serde_json::from_str(&json).ok())
            .filter(|s: &SavedAccount| s.directory == self.settings.directory);
        let builder =
            || Ok::<_, TlsError>(Account::builder_with_http(http_client(&self.settings)?));
        let account = match saved {
            Some(saved) => builder()?
                .from_credentials(saved.credentials)
                .await
                .map_err(|e| acme_error("cannot restore the ACME account", e))?,
            None => {
                let contact = self.settings.email.as_ref().map(|m| format!("mailto:{m}"));
                let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                let (account, credentials) = builder()?
                    .create(
                        &NewAccount {
                            contact: &contacts,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        self.settings.directory.clone(),
                        None,
                    )
                    .await
                    .map_err(|e| acme_error("cannot create an ACME account", e))?;
                let json = serde_json::to_string(&SavedAccount {
                    directory: self.settings.directory.clone(),
                    credentials,
                })
                .map_err(|e| acme_error("cannot save the ACME account", e))?;
                std::fs::create_dir_all(&dir).map_err(|e| super::self_signed::io_error(&dir, e))?;
                // The credentials hold the account key.
                write_atomic(&dir, ACCOUNT_FILE, json.as_bytes(), 0o600)?;
                tracing::info!(id = account.id(), "created an ACME account");
                account
            }
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    /// One order from start to the swapped-in certificate.
    pub async fn renew_once(&self) -> Result<CertInfo, TlsError> {
        let account = self.account().await?;
        let domain = self.settings.domain.clone();
        let identifiers = [Identifier::Dns(domain.clone())];
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(|e| acme_error("cannot place the order", e))?;
        let mut answers = Answers {
            tokens: &self.tokens,
            resolver: &self.resolver,
            http: Vec::new(),
            alpn: Vec::new(),
        };
        let wanted = match self.settings.challenge {
            AcmeChallenge::Http01 => ChallengeType::Http01,
            AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        };
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| acme_error("cannot read an authorization", e))?;
            match authz.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(TlsError::Acme(format!("authorization is {other:?}")));
                }
            }
            let mut challenge = authz.challenge(wanted.clone()).ok_or_else(|| {
                TlsError::Acme(format!(
                    "the CA offers no {wanted:?} challenge for {domain}"
                ))
            })?;
            let key_auth = challenge.key_authorization();
            match wanted {
                ChallengeType::TlsAlpn01 => {
                    let name = challenge.identifier().to_string();
                    answers.alpn(&name, alpn_certificate(&name, key_auth.digest().as_ref())?);
                }
                _ => answers.http(&challenge.token, key_auth.as_str()),
            }
            challenge
                .set_ready()
                .await
                .map_err(|e| acme_error("cannot start the validation", e))?;
        }
        let retries = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .timeout(Duration::from_secs(90));
        let status = order
            .poll_ready(&retries)
            .await
            .map_err(|e| acme_error("validation did not finish", e))?;
        if status != OrderStatus::Ready {
            let why = order
                .state()
                .error
                .as_ref()
                .map_or_else(|| format!("{status:?}"), ToString::to_string);
            return Err(TlsError::Acme(format!("the order failed: {why}")));
        }
        drop(answers);
        let key_pem = order
            .finalize()
            .await
            .map_err(|e| acme_error("cannot finalize the order", e))?;
        let chain_pem = order
            .poll_certificate(&retries)
            .await
            .map_err(|e| acme_error("cannot download the certificate", e))?;
        let (certified, info) = parse_pair(&chain_pem, &key_pem)?;
        if !info.covers(&domain) {
            return Err(TlsError::Acme(format!(
                "the CA issued a certificate for {} instead of {domain}",
                info.names.join(", ")
            )));
        }
        // Persist first: a crash right after the swap must not order again.
        write_pair(
            &self.settings.data_dir.join("tls"),
            (CERT_FILE, &chain_pem),
            (KEY_FILE, &key_pem),
        )?;
        let leaf = certified.cert.first().cloned();
        self.resolver.swap(certified);
        *self.served.lock().unwrap_or_else(|p| p.into_inner()) = leaf;
        self.metrics.success(SOURCE);
        self.metrics.set_expiry(info.not_after);
        Ok(info)
    }
}

#[derive(Serialize, Deserialize)]
struct SavedAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// Challenge answers of one order, withdrawn when it ends however it ends.
struct Answers<'a> {
    tokens: &'a Http01Tokens,
    resolver: &'a CertResolver,
    http: Vec<String>,
    alpn: Vec<String>,
}

impl Answers<'_> {
    fn http(&mut self, token: &str, key_authorization: &str) {
        self.tokens.set(token, key_authorization);
        self.http.push(token.to_string());
    }

    fn alpn(&mut self, name: &str, cert: CertifiedKey) {
        self.resolver.set_challenge(name, cert);
        self.alpn.push(name.to_string());
    }
}

impl Drop for Answers<'_> {
    fn drop(&mut self) {
        for token in &self.http {
            self.tokens.remove(token);
        }
        for name in &self.alpn {
            self.resolver.clear_challenge(name);
        }
    }
}

/// The RFC 8737 validation certificate: self-signed for `name` with the
/// critical acmeIdentifier extension holding SHA-256 of the key authorization.
fn alpn_certificate(name: &str, digest: &[u8]) -> Result<CertifiedKey, TlsError> {
    let gen_err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
    let mut params = CertificateParams::new(vec![name.to_string()]).map_err(gen_err)?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(gen_err)?;
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // Not through `certified_key`: its key check parses the certificate with
    // webpki, which rightly refuses the critical acmeIdentifier extension.
    let signing = provider()
        .key_provider
        .load_private_key(private)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
}

/// The HTTPS client for the directory, trusting `ca_root` only when given.
fn http_client(settings: &AcmeSettings) -> Result<Box<dyn instant_acme::HttpClient>, TlsError> {
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match &settings.ca_root {
        Some(root) => {
            let pem = read_input("ACME_CA_ROOT", root, false)?;
            let mut roots = RootCertStore::empty();
            for cert in parse_certs("ACME_CA_ROOT", &pem)? {
                roots.add(cert).map_err(|e| TlsError::BadPem {
                    what: "ACME_CA_ROOT",
                    message: format!("unusable root certificate: {e}"),
                })?;
            }
            let config = rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| acme_error("TLS client", e))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            builder.with_tls_config(config)
        }
        None => builder
            .with_provider_and_platform_verifier(provider())
            .map_err(|e| acme_error("cannot load the system's root certificates", e))?,
    };
    let connector = builder.https_only().enable_http1().enable_http2().build();
    let client: HyperClient<_, BodyWrapper<Bytes>> =
        HyperClient::builder(TokioExecutor::new()).build(connector);
    Ok(Box::new(client))
}

/// `ACME_DAYS` longer than the certificate lives (short-lived profiles)
/// would renew in a loop; such a certificate is renewed after two thirds of
/// its life instead.
fn renewal_margin(info: &CertInfo, renew_before: Duration) -> Duration {
    let lifetime = info
        .not_after
        .duration_since(info.not_before)
        .unwrap_or(Duration::ZERO);
    if renew_before >= lifetime {
        lifetime / 3
    } else {
        renew_before
    }
}

fn backoff(first: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    first.saturating_mul(factor).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_names() {
        assert!(is_public_name("exam.school.org"));
        assert!(!is_public_name("localhost"));
        assert!(!is_public_name("exam.lan"));
        assert!(!is_public_name("invigil.test"));
        assert!(!is_public_name("10.0.0.1"));
    }

    #[test]
    fn margin_longer_than_the_lifetime_renews_after_two_thirds() {
        let day = Duration::from_secs(86_400);
        let start = SystemTime::UNIX_EPOCH + day * 20_000;
        let info = CertInfo {
            names: vec![],
            not_before: start,
            not_after: start + day * 6,
            sha256_fingerprint: String::new(),
        };
        assert_eq!(renewal_margin(&info, day * 15), day * 2);
        assert_eq!(renewal_margin(&info, day), day);
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let s = Duration::from_secs(10);
        assert_eq!(backoff(s, 1), s);
        assert_eq!(backoff(s, 2), Duration::from_secs(20));
        assert_eq!(backoff(s, 4), Duration::from_secs(80));
        assert_eq!(backoff(s, 40), MAX_BACKOFF);
    }

    #[test]
    fn alpn_certificate_carries_the_critical_acme_identifier() {
        let digest = [7u8; 32];
        let cert = alpn_certificate("exam.example.org", &digest).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.cert[0].as_ref()).unwrap();
        let ext = parsed
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(ext.critical);
        // OCTET STRING (0x04), length 32, then the digest.
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], &digest);
    }
}
