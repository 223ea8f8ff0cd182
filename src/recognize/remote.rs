//! Recognition on other machines: the `invigil recognizer` hosts (or the
//! seed's recognizer containers) that `RECOGNIZER_URI` names. Jobs are spread
//! by [`Balancer`] (least in flight, round robin among equals); a host that
//! fails a job (connection error, timeout, 5xx) or is full (429, whose
//! `Retry-After` is respected) hands the job to the next host, and a health
//! check brings failed hosts back. When no host can take a job the caller
//! hears [`RemoteError::NoHost`] at once and decides: the daemon then
//! recognises locally on its bounded pool, or defers.
//!
//! Requests go only to the configured hosts: redirects are never followed.

use super::remote_balancer::{Balancer, HostStatus, Outcome};
use crate::config::{MultiHostUri, parse_multi_host};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Giving up on connecting to a host (it is then failed over).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Giving up on one recognition job on one host.
const JOB_TIMEOUT: Duration = Duration::from_secs(30);
/// Giving up on one health check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How often every host's `/ping` is checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// The longest `Retry-After` honoured, so a confused host cannot take
/// itself out of the rotation for long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The default port of a recognizer in `RECOGNIZER_URI`.
pub const DEFAULT_PORT: u16 = 8080;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// Every host is down, busy or already failed this job.
    #[error("no recognizer host can take the job now: {0}")]
    NoHost(String),
    /// The host answered, but not with a face list (e.g. 422 for an image
    /// it refused); the message is the host's.
    #[error("recognizer {host} answered {status}: {message}")]
    Refused {
        host: String,
        status: u16,
        message: String,
    },
    #[error("recognizer client: {0}")]
    Client(String),
}

/// A host's answer to a job.
#[derive(Debug)]
pub struct Reply {
    /// `host:port` of the host that answered.
    pub host: String,
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    /// What the host's `Retry-After` asks for (meaningful on 429).
    pub retry_after: Duration,
    pub body: Bytes,
}

pub struct Remote {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `scheme://host:port` per host, in the order of the balancer.
    bases: Vec<String>,
    /// The endpoint path (`/recognize` unless the URI names another).
    path: String,
    /// The URI's own query, kept on every job.
    query: Option<String>,
    authorization: Option<HeaderValue>,
    balancer: Mutex<Balancer>,
}

/// Parses `RECOGNIZER_URI`: one URI with several hosts
/// (`http://KEY@h1:8080,h2:8080/recognize`), or several URIs, separated by
/// commas or white space. All hosts share one scheme, key and path.
/// Errors never contain the key.
pub fn parse_uri_list(raw: &str) -> Result<MultiHostUri, String> {
    let schemes = ["http", "https"];
    let mut merged: Option<MultiHostUri> = None;
    let tokens = raw
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty());
    for token in tokens {
        let uri = if token.contains("://") {
            parse_multi_host(token, &schemes, DEFAULT_PORT)?
        } else {
            // A further host of the URI before it: `h2:8080[/path]`.
            let Some(first) = &merged else {
                return Err(format!(
                    "{token:?} needs a scheme: http://key@{token} or https://key@{token}"
                ));
            };
            let mut more = parse_multi_host(
                &format!("{}://{token}", first.scheme),
                &schemes,
                DEFAULT_PORT,
            )?;
            more.credentials = first.credentials.clone();
            if more.path.is_empty() {
                more.path = first.path.clone();
            }
            more.query = more.query.or_else(|| first.query.clone());
            more
        };
        match &mut merged {
            None => merged = Some(uri),
            Some(all) => {
                if all.path.is_empty() {
                    all.path = uri.path.clone();
                }
                let same = all.scheme == uri.scheme
                    && all.credentials.as_ref().map(|s| s.expose())
                        == uri.credentials.as_ref().map(|s| s.expose())
                    && (uri.path.is_empty() || all.path == uri.path)
                    && all.query == uri.query;
                if !same {
                    return Err("every host must share one scheme, key and path; \
                         write one URI: http://key@host1:8080,host2:8080/recognize"
                        .into());
                }
                for host in uri.hosts {
                    if !all.hosts.contains(&host) {
                        all.hosts.push(host);
                    }
                }
            }
        }
    }
    merged.ok_or_else(|| "no host given".to_string())
}

/// `host:port`, with brackets around an IPv6 address.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Seconds of a `Retry-After` header (a date or nothing counts as one
/// second), capped at [`MAX_RETRY_AFTER`].
fn retry_after(value: Option<&HeaderValue>) -> Duration {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(1), Duration::from_secs)
        .min(MAX_RETRY_AFTER)
}

/// How an attempt on one host ended, for the balancer.
fn outcome(result: &Result<Reply, String>) -> Outcome {
    match result {
        Err(why) => Outcome::Failed(why.clone()),
        Ok(r) if r.status == StatusCode::TOO_MANY_REQUESTS => Outcome::Busy {
            retry_after: r.retry_after,
        },
        Ok(r) if r.status.is_server_error() => Outcome::Failed(format!("answered {}", r.status)),
        Ok(r) if r.status.is_redirection() => Outcome::Failed(format!(
            "answered {} (a redirect, not followed: RECOGNIZER_URI must name the recognizer itself)",
            r.status
        )),
        Ok(_) => Outcome::Answered,
    }
}

/// Marks a job done on its host however the caller's future ends, so an
/// abandoned request does not leave the host looking loaded.
struct InFlight<'a> {
    remote: &'a Remote,
    host: usize,
    outcome: Option<Outcome>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let outcome = self.outcome.take().unwrap_or(Outcome::Answered);
        self.remote
            .balancer()
            .finish(self.host, outcome, Instant::now());
    }
}

impl Remote {
    /// A client for the hosts of `uri`. `https://` hosts must present a
    /// certificate the system trusts (for instance one from the exam
    /// centre's CA, `invigil ca`, installed into the system store).
    pub fn new(uri: &MultiHostUri) -> Result<Self, RemoteError> {
        let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| RemoteError::Client(e.to_string()))?;
        let tls = {
            use hyper_rustls::ConfigBuilderExt;
            tls.try_with_platform_verifier()
                .map_err(|e| RemoteError::Client(e.to_string()))?
                .with_no_client_auth()
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let authorization = uri.credentials.as_ref().map(|key| {
            // The seed's form: the key is the user part of the URI.
            let key = key.expose();
            let pair = if key.contains(':') {
                key.to_string()
            } else {
                format!("{key}:")
            };
            let mut value = HeaderValue::try_from(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
            .expect("base64 is a valid header value");
            value.set_sensitive(true);
            value
        });
        let names: Vec<String> = uri.hosts.iter().map(|(h, p)| authority(h, *p)).collect();
        Ok(Remote {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            bases: names
                .iter()
                .map(|a| format!("{}://{a}", uri.scheme))
                .collect(),
            path: if uri.path.is_empty() {
                "/recognize".into()
            } else {
                uri.path.clone()
            },
            query: uri.query.clone(),
            authorization,
            balancer: Mutex::new(Balancer::new(names)),
        })
    }

    fn balancer(&self) -> MutexGuard<'_, Balancer> {
        // The balancer is plain bookkeeping; a panic elsewhere leaves it usable.
        self.balancer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every host's health and load now.
    pub fn status(&self) -> Vec<HostStatus> {
        self.balancer().status(Instant::now())
    }

    /// Sends one job (`body` of type `content_type`, `query` added to the
    /// endpoint's) to the best host, then to the next while hosts fail or are
    /// busy. Any answer that is not the host's own failure is returned as it
    /// is, a 4xx included.
    pub async fn call(
        &self,
        content_type: &HeaderValue,
        body: Bytes,
        query: Option<&str>,
    ) -> Result<Reply, RemoteError> {
        let mut tried = Vec::new();
        let mut failures = Vec::new();
        loop {
            let picked = self.balancer().pick(Instant::now(), &tried);
            let Some(host) = picked else {
                let why = if failures.is_empty() {
                    "every host is down or busy".to_string()
                } else {
                    failures.join("; ")
                };
                return Err(RemoteError::NoHost(why));
            };
            tried.push(host);
            let mut guard = InFlight {
                remote: self,
                host,
                outcome: None,
            };
            let result = self.send(host, content_type, body.clone(), query).await;
            let outcome = outcome(&result);
            if let Ok(reply) = result
                && outcome == Outcome::Answered
            {
                if matches!(reply.status.as_u16(), 401 | 403) {
                    tracing::warn!(
                        host = reply.host,
                        "the recognizer refused the key of RECOGNIZER_URI; it must be the host's API_KEY"
                    );
                }
                guard.outcome = Some(outcome);
                return Ok(reply);
            }
            let name = self.balancer().name(host).to_string();
            match &outcome {
                Outcome::Busy { retry_after } => {
                    tracing::debug!(
                        host = name,
                        ?retry_after,
                        "recognizer busy; trying the next host"
                    );
                    failures.push(format!("{name} is busy"));
                }
                Outcome::Failed(why) => {
                    tracing::warn!(
                        host = name,
                        "recognizer failed: {why}; trying the next host"
                    );
                    failures.push(format!("{name}: {why}"));
                }
                Outcome::Answered => {}
            }
            guard.outcome = Some(outcome);
        }
    }

    async fn send(
        &self,
        host: usize,
        content_type: &HeaderValue,
        body: Bytes,
        query: Option<&str>,
    ) -> Result<Reply, String> {
        let query: Vec<&str> = self.query.as_deref().into_iter().chain(query).collect();
        let uri = if query.is_empty() {
            format!("{}{}", self.bases[host], self.path)
        } else {
            format!("{}{}?{}", self.bases[host], self.path, query.join("&"))
        };
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, content_type);
        if let Some(auth) = &self.authorization {
            request = request.header(header::AUTHORIZATION, auth);
        }
        let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(error_chain)?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(error_chain)?.to_bytes();
            Ok::<_, String>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(JOB_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no answer within {} s", JOB_TIMEOUT.as_secs()))??;
        Ok(Reply {
            host: self.balancer().name(host).to_string(),
            status: parts.status,
            content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
            retry_after: retry_after(parts.headers.get(header::RETRY_AFTER)),
            body,
        })
    }

    /// Counts the faces of a webcam snapshot on a host (the near-range
    /// detector, as for local snapshots).
    pub async fn count_faces(&self, image: Bytes) -> Result<usize, RemoteError> {
        #[derive(serde::Deserialize)]
        struct Faces {
            faces: Vec<serde::de::IgnoredAny>,
        }
        let reply = self
            .call(
                &HeaderValue::from_static("application/octet-stream"),
                image,
                Some("range=near"),
            )
            .await?;
        let refused = |message: String| RemoteError::Refused {
            host: reply.host.clone(),
            status: reply.status.as_u16(),
            message,
        };
        if !reply.status.is_success() {
            let text = String::from_utf8_lossy(&reply.body);
            return Err(refused(text.chars().take(300).collect()));
        }
        serde_json::from_slice::<Faces>(&reply.body)
            .map(|f| f.faces.len())
            .map_err(|e| refused(format!("not a face list: {e}")))
    }

    /// Checks every host's `/ping` once, all at the same time.
    pub async fn check(&self) {
        let checks = (0..self.bases.len()).map(|host| async move {
            let result = self.ping(host).await;
            let changed = self.balancer().checked(host, result.clone());
            if changed {
                let name = self.balancer().name(host).to_string();
                match result {
                    Ok(()) => tracing::info!(host = name, "recognizer is up again"),
                    Err(why) => tracing::warn!(host = name, "recognizer is down: {why}"),
                }
            }
        });
        futures::future::join_all(checks).await;
    }

    async fn ping(&self, host: usize) -> Result<(), String> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(format!("{}/ping", self.bases[host]))
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(CHECK_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| format!("no answer to /ping within {} s", CHECK_TIMEOUT.as_secs()))?
            .map_err(error_chain)?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("/ping answered {}", response.status()))
        }
    }

    /// The health checks, every `every` until `stop` resolves.
    pub async fn run_checks(
        self: Arc<Self>,
        every: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.check().await,
                () = &mut stop => return,
            }
        }
    }
}

/// An error with its causes on one line ("client error (Connect): tcp
/// connect error: Connection refused").
fn error_chain(e: impl std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_uri_with_several_hosts_or_several_uris() {
        for raw in [
            "http://KEY@h1:8080,h2:8081/recognize",
            "http://KEY@h1:8080, h2:8081/recognize",
            "http://KEY@h1:8080 h2:8081/recognize",
            "http://KEY@h1:8080/recognize http://KEY@h2:8081/recognize",
            "http://KEY@h1:8080/recognize,http://KEY@h2:8081/recognize",
            "http://KEY@h1:8080/recognize h2:8081",
        ] {
            let uri = parse_uri_list(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(
                uri.hosts,
                [("h1".to_string(), 8080), ("h2".to_string(), 8081)],
                "{raw}"
            );
            assert_eq!(uri.path, "/recognize", "{raw}");
            assert_eq!(uri.credentials.expect("key").expose(), "KEY", "{raw}");
        }
        let uri = parse_uri_list("http://K@[::1]:9000").unwrap();
        assert_eq!(authority(&uri.hosts[0].0, uri.hosts[0].1), "[::1]:9000");
    }

    #[test]
    fn mixed_or_broken_lists_are_refused_without_the_key() {
        for (raw, says) in [
            ("http://KEY1@h1/recognize http://KEY2@h2/recognize", "share"),
            ("http://KEY@h1/recognize https://KEY@h2/recognize", "share"),
            ("h1:8080", "needs a scheme"),
            ("ftp://KEY@h1", "scheme"),
            ("http://KEY@h1:0", "port"),
            ("  ", "no host"),
        ] {
            let err = parse_uri_list(raw).expect_err(raw);
            assert!(err.contains(says), "{raw}: {err}");
            assert!(!err.contains("KEY"), "{raw}: {err}");
        }
    }

    #[test]
    fn retry_after_is_read_and_capped() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(retry_after(Some(&v("3"))), Duration::from_secs(3));
        assert_eq!(retry_after(Some(&v("86400"))), MAX_RETRY_AFTER);
        assert_eq!(
            retry_after(Some(&v("Wed, 21 Oct 2015 07:28:00 GMT"))),
            Duration::from_secs(1)
        );
        assert_eq!(retry_after(None), Duration::from_secs(1));
    }

    #[test]
    fn failures_and_answers_are_told_apart() {
        let reply = |status: u16| {
            Ok(Reply {
                host: "h:1".into(),
                status: StatusCode::from_u16(status).unwrap(),
                content_type: None,
                retry_after: Duration::from_secs(4),
                body: Bytes::new(),
            })
        };
        assert_eq!(outcome(&reply(200)), Outcome::Answered);
        // The image's fault, not the host's: no failover.
        assert_eq!(outcome(&reply(422)), Outcome::Answered);
        assert!(matches!(outcome(&reply(503)), Outcome::Failed(_)));
        assert_eq!(
            outcome(&reply(429)),
            Outcome::Busy {
                retry_after: Duration::from_secs(4)
            }
        );
        assert!(matches!(outcome(&reply(302)), Outcome::Failed(w) if w.contains("not followed")));
        assert!(matches!(
            outcome(&Err("refused".into())),
            Outcome::Failed(_)
        ));
    }
}
