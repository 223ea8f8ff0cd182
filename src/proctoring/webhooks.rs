//! Webhooks: when a session stops or is concluded, its result is POSTed to
//! the session's callback URL (else the host's), signed per the Standard
//! Webhooks scheme. Messages go through a durable outbox written in the same
//! transaction as the status change, so a crash cannot lose one; the
//! delivery task (outside the domain) drains it with exponential backoff.
//! Which addresses may be reached is decided here, as a pure function.

use super::ProctoringError;
use super::metrics::{self, Score};
use super::sessions::{self, Session};
use super::templates;
use crate::auth::hosts;
use crate::store::{Scan, Store, StoreError, WriteTx, catalog};
use crate::turn::policy::{self, Denied};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

/// After this many failed attempts a message is given up (kept as dead).
pub const MAX_ATTEMPTS: u32 = 12;
/// The longest wait between two attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(10 * 60 * 60);

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The events sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Stopped,
    Concluded,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Stopped => "session.stopped",
            Event::Concluded => "session.concluded",
        }
    }
}

/// One message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `webhook-id`: the same on every retry, so receivers can deduplicate.
    pub id: String,
    pub host_id: String,
    pub session_id: String,
    pub event: String,
    pub url: String,
    /// The exact body sent on every attempt.
    pub body: String,
    pub created_at: u64,
    pub attempts: u32,
    /// When the next attempt is due, Unix milliseconds.
    pub next_at_ms: u64,
    pub last_error: Option<String>,
}

/// Why a webhook cannot be signed or sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the webhook secret is not whsec_ and base64")]
    Secret,
    #[error("{0}: not an http(s) URL")]
    Url(String),
    #[error(
        "{address} is refused: {why:?} address (allow private targets for this host to reach it)"
    )]
    Refused { address: IpAddr, why: Denied },
}

fn pending_key(id: &str) -> Vec<u8> {
    format!("o/{id}").into_bytes()
}

fn dead_key(id: &str) -> Vec<u8> {
    format!("d/{id}").into_bytes()
}

/// Deletes the outbox messages, pending or given up, about one session (erasure:
/// their bodies carry the session's result); returns how many.
pub fn remove_session_in(
    tx: &mut dyn WriteTx,
    host_id: &str,
    session: &str,
) -> Result<u64, StoreError> {
    let mut removed = 0;
    for prefix in [&b"o/"[..], &b"d/"[..]] {
        for (k, v) in tx.scan(catalog::WEBHOOKS, &Scan::prefix(prefix))? {
            let ours = serde_json::from_slice::<Message>(&v)
                .is_ok_and(|m| m.host_id == host_id && m.session_id == session);
            if ours {
                tx.delete(catalog::WEBHOOKS, &k)?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// The body: Standard Webhooks' `{type, timestamp, data}` with the result.
pub fn payload(s: &Session, score: Option<&Score>, event: Event, at: u64) -> serde_json::Value {
    let timestamp = time::OffsetDateTime::from_unix_timestamp(at as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    serde_json::json!({
        "type": event.as_str(),
        "timestamp": timestamp,
        "data": {
            "session": s.id,
            "host": s.host_id,
            "identifier": s.identifier,
            "student": s.student,
            "subject": s.subject,
            "tags": s.tags,
            "status": s.status.as_str(),
            "started_at": s.started_at,
            "stopped_at": s.stopped_at,
            "score": score.map(|x| x.score),
            "threshold": score.map(|x| x.threshold),
            "review": s.review,
            "terms": score.map(|x| &x.terms),
            "conclusion": s.conclusion,
        }
    })
}

/// Puts the message for `event` of `s` into the outbox, inside the
/// transaction that made the change. Sessions without a callback URL (their
/// own or their host's) send nothing.
pub fn enqueue(
    tx: &mut dyn WriteTx,
    s: &Session,
    event: Event,
    at: u64,
) -> Result<Option<Message>, ProctoringError> {
    let Some(mut host) = hosts::load(tx, &s.host_id)? else {
        return Ok(None);
    };
    let Some(url) = s.callback_url.clone().or(host.webhook_url.clone()) else {
        return Ok(None);
    };
    hosts::webhook_secret(tx, &mut host)?;
    let score = templates::version(tx, &s.host_id, &s.template_id, s.template_version)?.map(|t| {
        metrics::score(
            &s.averages,
            &sessions::effective_weights(&t, s),
            t.threshold,
        )
    });
    let body = payload(s, score.as_ref(), event, at).to_string();
    let message = Message {
        id: format!("msg_{}", crate::auth::random_token(15)),
        host_id: s.host_id.clone(),
        session_id: s.id.clone(),
        event: event.as_str().to_string(),
        url,
        body,
        created_at: at,
        attempts: 0,
        next_at_ms: 0,
        last_error: None,
    };
    tx.put_json(catalog::WEBHOOKS, &pending_key(&message.id), &message)?;
    Ok(Some(message))
}

/// Messages waiting for delivery, due ones first.
pub fn pending(store: &dyn Store) -> Result<Vec<Message>, StoreError> {
    let mut all: Vec<Message> = store
        .scan(catalog::WEBHOOKS, &Scan::prefix(b"o/"))?
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
        .collect();
    all.sort_by_key(|m| (m.next_at_ms, m.created_at));
    Ok(all)
}

/// Messages given up after [`MAX_ATTEMPTS`].
pub fn dead(store: &dyn Store) -> Result<Vec<Message>, StoreError> {
    Ok(store
        .scan(catalog::WEBHOOKS, &Scan::prefix(b"d/"))?
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
        .collect())
}

/// Removes a delivered message.
pub fn delivered(store: &dyn Store, id: &str) -> Result<(), StoreError> {
    store
        .delete(catalog::WEBHOOKS, &pending_key(id))
        .map(|_| ())
}

/// Records a failed attempt: schedules the next one, or gives the message up
/// after [`MAX_ATTEMPTS`]. Returns the updated message and whether it will
/// be retried.
pub fn failed(
    store: &dyn Store,
    id: &str,
    error: &str,
    now_ms: u64,
    first_retry: Duration,
) -> Result<Option<(Message, bool)>, StoreError> {
    store.write(|tx| {
        let Some(mut m) = tx.get_json::<Message>(catalog::WEBHOOKS, &pending_key(id))? else {
            return Ok(None);
        };
        m.attempts += 1;
        m.last_error = Some(error.chars().take(500).collect());
        match retry_delay(m.attempts, first_retry) {
            Some(delay) => {
                m.next_at_ms = now_ms + delay.as_millis() as u64;
                tx.put_json(catalog::WEBHOOKS, &pending_key(id), &m)?;
                Ok(Some((m, true)))
            }
            None => {
                tx.delete(catalog::WEBHOOKS, &pending_key(id))?;
                tx.put_json(catalog::WEBHOOKS, &dead_key(id), &m)?;
                Ok(Some((m, false)))
            }
        }
    })
}

/// The wait after the `attempts`-th failure: `first`, then four times
/// longer each time, at most [`MAX_DELAY`]; `None` once it is time to give up.
pub fn retry_delay(attempts: u32, first: Duration) -> Option<Duration> {
    if attempts == 0 || attempts >= MAX_ATTEMPTS {
        return None;
    }
    let factor = 4u32.saturating_pow(attempts - 1);
    Some(first.saturating_mul(factor).min(MAX_DELAY))
}

/// A new host secret: `whsec_` and 24 random bytes in base64.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    format!("whsec_{}", B64.encode(bytes))
}

/// `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of
/// `id.timestamp.body` under the secret's bytes.
pub fn sign(secret: &str, id: &str, timestamp: u64, body: &[u8]) -> Result<String, WebhookError> {
    let key = B64
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| WebhookError::Secret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| WebhookError::Secret)?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Ok(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
}

/// AWS's IPv6 instance metadata address, inside a private range.
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254);

/// Whether a webhook may connect to `ip`. Public addresses always; loopback,
/// private, link-local and CGNAT ones only when the host allows private
/// targets; metadata, unspecified, multicast, broadcast, documentation and
/// reserved ones never. Embedded IPv4 forms (mapped, NAT64, 6to4, Teredo)
/// are judged by the IPv4 address inside.
pub fn check_address(ip: IpAddr, allow_private: bool) -> Result<(), WebhookError> {
    let refused = |why| WebhookError::Refused { address: ip, why };
    if ip == IpAddr::V6(METADATA_V6) {
        return Err(refused(Denied::Metadata));
    }
    match policy::classify(ip) {
        None => Ok(()),
        Some(Denied::Loopback | Denied::Private | Denied::LinkLocal | Denied::Cgnat)
            if allow_private =>
        {
            Ok(())
        }
        Some(why) => Err(refused(why)),
    }
}

/// A parsed target: `http` or `https`, host name, port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query.
    pub path: String,
}

/// Parses a callback URL; only http(s) with a host.
pub fn target(url: &str) -> Result<Target, WebhookError> {
    let bad = || WebhookError::Url(url.chars().take(200).collect());
    let parsed = url::Url::parse(url).map_err(|_| bad())?;
    let https = match parsed.scheme() {
        "https" => true,
        "http" => false,
        _ => return Err(bad()),
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad());
    }
    let host = match parsed.host().ok_or_else(bad)? {
        url::Host::Domain(d) => d.to_string(),
        url::Host::Ipv4(a) => a.to_string(),
        url::Host::Ipv6(a) => a.to_string(),
    };
    let mut path = parsed.path().to_string();
    if let Some(q) = parsed.query() {
        path = format!("{path}?{q}");
    }
    Ok(Target {
        https,
        host,
        port: parsed.port_or_known_default().ok_or_else(bad)?,
        path,
    })
}

#[cfg(test)]
mod tests;
