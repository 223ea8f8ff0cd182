//! Delivers the webhook outbox: every due message is POSTed with its
//! Standard Webhooks headers; failures are rescheduled with backoff. The
//! target's name is resolved here and every address checked against the
//! host's delivery policy before connecting, and the connection goes to the
//! checked address itself, so DNS cannot swap in another one in between.

use super::tasks::Shutdown;
use crate::auth::hosts;
use crate::proctoring::webhooks::{self, Message, WebhookError};
use crate::store::Store;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// How often the outbox is looked at when nothing is due sooner.
const POLL: Duration = Duration::from_millis(500);
/// Connecting, the TLS handshake and the answer together.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The `webhook-delivery` task.
pub async fn run(store: Arc<dyn Store>, first_retry: Duration, signal: Shutdown) {
    let tls = match tls_config() {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!("webhooks to https URLs cannot be sent: {e}");
            None
        }
    };
    let stop = signal.requested();
    tokio::pin!(stop);
    loop {
        let s = store.clone();
        let pending = tokio::task::spawn_blocking(move || webhooks::pending(s.as_ref())).await;
        let pending = match pending {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::warn!("reading the webhook outbox failed: {e}");
                Vec::new()
            }
            Err(_) => Vec::new(),
        };
        let mut wait = POLL;
        for m in pending {
            let now = now_ms();
            if m.next_at_ms > now {
                wait = wait.min(Duration::from_millis(m.next_at_ms - now));
                continue;
            }
            let outcome = tokio::select! {
                r = tokio::time::timeout(ATTEMPT_TIMEOUT, attempt(&store, tls.clone(), &m)) => {
                    r.unwrap_or_else(|_| Err("no answer in time".to_string()))
                }
                () = &mut stop => return,
            };
            record(&store, &m, outcome, first_retry).await;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = &mut stop => return,
        }
    }
}

async fn record(
    store: &Arc<dyn Store>,
    m: &Message,
    outcome: Result<u16, String>,
    first_retry: Duration,
) {
    let s = store.clone();
    let id = m.id.clone();
    let done = tokio::task::spawn_blocking(move || match outcome {
        Ok(status) => {
            webhooks::delivered(s.as_ref(), &id).map(|()| format!("delivered ({status})"))
        }
        Err(e) => webhooks::failed(s.as_ref(), &id, &e, now_ms(), first_retry).map(|r| match r {
            Some((m, true)) => format!(
                "failed ({e}); attempt {} of {}",
                m.attempts,
                webhooks::MAX_ATTEMPTS
            ),
            Some((_, false)) => format!("failed ({e}); given up"),
            None => "gone".to_string(),
        }),
    })
    .await;
    match done {
        Ok(Ok(what)) => tracing::info!(
            webhook = %m.id,
            session = %m.session_id,
            event = %m.event,
            "webhook {what}"
        ),
        Ok(Err(e)) => tracing::warn!(webhook = %m.id, "recording the webhook outcome failed: {e}"),
        Err(_) => {}
    }
}

/// One attempt: the HTTP status on a 2xx answer, else why not.
async fn attempt(
    store: &Arc<dyn Store>,
    tls: Option<Arc<rustls::ClientConfig>>,
    m: &Message,
) -> Result<u16, String> {
    let s = store.clone();
    let host_id = m.host_id.clone();
    let host = tokio::task::spawn_blocking(move || hosts::get(s.as_ref(), &host_id))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let secret = host
        .webhook_secret
        .ok_or_else(|| "the host has no webhook secret".to_string())?;
    let target = webhooks::target(&m.url).map_err(|e| e.to_string())?;
    let addr = resolve(&target, host.webhook_allow_private).await?;
    let timestamp = now_ms() / 1000;
    let signature =
        webhooks::sign(&secret, &m.id, timestamp, m.body.as_bytes()).map_err(|e| e.to_string())?;
    let authority = if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let request = http::Request::post(target.path.as_str())
        .header(http::header::HOST, authority)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            format!("invigil/{}", crate::VERSION),
        )
        .header("webhook-id", &m.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(Full::new(Bytes::from(m.body.clone())))
        .map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let status = if target.https {
        let config = tls.ok_or_else(|| "no TLS client configuration".to_string())?;
        let name = rustls_pki_types::ServerName::try_from(target.host.clone())
            .map_err(|e| e.to_string())?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {}: {e}", target.host))?;
        send(stream, request).await?
    } else {
        send(tcp, request).await?
    };
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(format!("HTTP {status}"))
    }
}

/// The first resolved address the host's policy allows.
async fn resolve(target: &webhooks::Target, allow_private: bool) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("resolving {}: {e}", target.host))?
        .collect();
    let mut refusal: Option<WebhookError> = None;
    for addr in &addrs {
        match webhooks::check_address(addr.ip(), allow_private) {
            Ok(()) => return Ok(*addr),
            Err(e) => refusal = refusal.or(Some(e)),
        }
    }
    Err(refusal.map_or_else(
        || format!("{} has no address", target.host),
        |e| e.to_string(),
    ))
}

async fn send<S>(io: S, request: http::Request<Full<Bytes>>) -> Result<u16, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string());
    driver.abort();
    Ok(response?.status().as_u16())
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    use hyper_rustls::ConfigBuilderExt;
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .try_with_platform_verifier()
        .map_err(|e| e.to_string())?
        .with_no_client_auth();
    Ok(Arc::new(config))
}
