//! `invigil recognizer`: a recognition node that serves only `POST
//! /recognize` and `/ping`, for other daemons' `RECOGNIZER_URI`.

use super::tasks::Tasks;
use super::{AppError, GRACE, bind_error, certificate_tasks, datadir, port_error, preflight};
use crate::VERSION;
use crate::config::{Config, ConfigError, ConfigErrors};
use crate::tls::TlsMetrics;
use crate::tls::acme::Http01Tokens;
use crate::web;
use crate::web::forwarded::TrustedProxies;
use crate::web::serve::{self, ConnLimits};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// A started `invigil recognizer`: only `POST /recognize` and `/ping`.
pub struct RecognizerNode {
    pub addr: SocketAddr,
    pub tls_mode: &'static str,
    tasks: Tasks,
    _lock: datadir::DataDirLock,
}

/// Starts `invigil recognizer` on `HOST:PORT`, with the daemon's TLS
/// (own certificate, local CA, ACME or self-signed from `DATA_DIR`). It opens
/// no store and no accounts and needs `API_KEY`. Plain HTTP only when asked
/// for (`REVERSE_PROXY=on`) and only on a loopback `HOST`.
pub async fn start_recognizer(config: Config) -> Result<RecognizerNode, AppError> {
    let mut errors = Vec::new();
    if config.api_key.is_none() {
        errors.push(ConfigError {
            var: "API_KEY".into(),
            message: "`invigil recognizer` serves only with a key: set API_KEY".into(),
        });
    }
    if config.reverse_proxy && !config.host.is_loopback() {
        errors.push(ConfigError {
            var: "REVERSE_PROXY".into(),
            message: format!(
                "`invigil recognizer` serves plain HTTP only on a loopback HOST, not {}; \
                 remove REVERSE_PROXY to serve HTTPS",
                config.host
            ),
        });
    }
    if !errors.is_empty() {
        return Err(AppError::Preflight(ConfigErrors(errors)));
    }
    let checked = preflight::run(&config).map_err(AppError::Preflight)?;
    let at = SocketAddr::new(config.host, config.port);
    let listener = TcpListener::bind(at)
        .await
        .map_err(|e| AppError::Preflight(ConfigErrors(vec![port_error("PORT", at, &e)])))?;
    let addr = listener.local_addr().map_err(bind_error("PORT"))?;
    let endpoint = Arc::new(web::recognize::Endpoint {
        service: Arc::new(crate::recognize::Service::new(
            config.recognizer_backend,
            config.ort_library.as_deref(),
            config.threads,
            config.recognizer_queue,
        )?),
        api_key: config.api_key.clone(),
        // A recognizer recognises itself: it never passes work on.
        remote: None,
        upload_limit_bytes: config.upload_limit_bytes,
    });
    let router = web::recognize::node_router(endpoint, checked.tls_mode);
    let limits = ConnLimits {
        timeout: config.http_timeout,
        grace: GRACE,
    };
    let proxies = Arc::new(TrustedProxies(config.trusted_proxies.clone()));
    let mut tasks = Tasks::new();
    let signal = tasks.shutdown_signal();
    match &checked.resolver {
        Some(resolver) => {
            let acceptor =
                tokio_rustls::TlsAcceptor::from(crate::tls::server_config(resolver.clone()));
            tasks.spawn(
                "recognizer-https",
                serve::serve_https(
                    listener,
                    acceptor,
                    router,
                    limits,
                    proxies,
                    None,
                    signal.requested(),
                ),
            );
            certificate_tasks(
                &mut tasks,
                &config,
                checked.renewal,
                resolver.clone(),
                Arc::new(Http01Tokens::new()),
                TlsMetrics::new(),
                Arc::new(Notify::new()),
            );
        }
        None => tasks.spawn(
            "recognizer-http",
            serve::serve_plain(listener, router, limits, proxies, signal.requested()),
        ),
    }
    tracing::info!(%addr, tls = checked.tls_mode, "invigil {VERSION} recognizer ready");
    Ok(RecognizerNode {
        addr,
        tls_mode: checked.tls_mode,
        tasks,
        _lock: checked.lock,
    })
}

impl RecognizerNode {
    /// Stops accepting and lets jobs in flight finish within [`GRACE`].
    pub async fn stop(self) {
        let stuck = self.tasks.stop(GRACE + Duration::from_millis(500)).await;
        if !stuck.is_empty() {
            tracing::warn!(?stuck, "tasks aborted at shutdown");
        }
    }
}
