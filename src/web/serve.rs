//! The listeners: HTTPS (rustls + hyper, HTTP/1.1 and HTTP/2) and the plain
//! HTTP port that redirects to it. Both stop accepting on the shutdown signal
//! and give in-flight requests a grace period before connections are dropped.

use super::PeerAddr;
use super::error::ApiError;
use super::forwarded::TrustedProxies;
use super::headers::{HEADERS, PARSER_MAX_HEADER_BYTES, PARSER_MAX_HEADERS, header_limit_broken};
use super::prefixed::{Prefixed, read_up_to};
use crate::tls::acme::Http01Tokens;
use crate::turn::server::TurnServer;
use axum::Router;
use axum::response::IntoResponse;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// How connections are handled.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Bounds the TLS handshake, reading request headers, and idle keep-alive.
    pub timeout: Duration,
    /// How long in-flight requests may take to finish after shutdown begins.
    pub grace: Duration,
}

fn builder(limits: ConnLimits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.timeout)
        .max_headers(PARSER_MAX_HEADERS)
        .max_buf_size(PARSER_MAX_HEADER_BYTES);
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.timeout / 2)
        .keep_alive_timeout(limits.timeout / 2)
        .max_header_list_size(PARSER_MAX_HEADER_BYTES as u32);
    b
}

/// File descriptors kept free of connections, for the database, objects,
/// logs and the TURN relay's sockets.
const FD_RESERVE: u64 = 256;

/// Raises the soft limit on open files to the hard one (thousands of
/// connections each take one) and returns how many connections may be open
/// at once on every listener together.
pub fn connection_cap() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    let open_files = limit.rlim_cur.min(1 << 20);
    usize::try_from(open_files.saturating_sub(FD_RESERVE).max(64)).unwrap_or(64)
}

/// Buffers of 1 MiB and more (decoded images, request bodies) are mapped
/// for themselves and unmapped when freed. glibc's default raises that
/// threshold to 32 MiB after the first large free, after which each thread's
/// arena keeps the pages of the largest image it ever decoded: a few
/// concurrent bomb uploads then held hundreds of MB for good.
fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; a fixed value also
    // turns the dynamic threshold off.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// The open connections of all listeners, against [`connection_cap`].
fn open_connections() -> &'static Arc<tokio::sync::Semaphore> {
    static OPEN: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    OPEN.get_or_init(|| Arc::new(tokio::sync::Semaphore::new(connection_cap())))
}

/// Accepts connections until `shutdown` resolves and hands each to `serve`
/// on its own task; then waits up to `grace` for the connections it watched.
/// The one accept loop behind every listener here.
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
    mut serve: F,
) where
    F: FnMut(TcpStream, SocketAddr, Watcher) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    return_large_buffers_to_the_system();
    let graceful = GracefulShutdown::new();
    let open = open_connections().clone();
    let mut refused_since_warning = 0u64;
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly
                    // instead of spinning, and keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // At the cap a new connection is closed at once: the descriptors
        // left stay for the database and the connections being served,
        // and the accept loop never spins on "too many open files".
        let Ok(slot) = open.clone().try_acquire_owned() else {
            refused_since_warning += 1;
            if refused_since_warning.is_power_of_two() {
                tracing::warn!(
                    "{refused_since_warning} connections refused: all {} connection slots are open",
                    connection_cap()
                );
            }
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let served = serve(tcp, peer, graceful.watcher());
        tokio::spawn(async move {
            served.await;
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still busy after {grace:?} and were closed");
    }
}

/// Serves the router on one connection (TLS or plain), watched for shutdown.
async fn serve_router<I>(
    io: I,
    builder: auto::Builder<TokioExecutor>,
    router: Router,
    peer: SocketAddr,
    proxies: Arc<TrustedProxies>,
    scheme: &'static str,
    watcher: Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let router = router.clone();
        let proxies = proxies.clone();
        async move { Ok::<_, Infallible>(handle(router, request, peer, &proxies, scheme).await) }
    });
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}

/// Serves `router` over TLS on `listener` until `shutdown` resolves, then waits
/// up to `limits.grace` for open requests.
pub async fn serve_https(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    limits: ConnLimits,
    proxies: Arc<TrustedProxies>,
    turn: Option<TurnServer>,
    shutdown: impl Future<Output = ()>,
) {
    let builder = builder(limits);
    accept_loop(
        listener,
        limits.grace,
        shutdown,
        move |tcp, peer, watcher| {
            let (acceptor, router, builder) = (acceptor.clone(), router.clone(), builder.clone());
            let (turn, proxies) = (turn.clone(), proxies.clone());
            async move {
                // Plain TURN-over-TCP on the HTTPS port: anything that does not
                // open with a TLS handshake record (0x16).
                if let Some(turn) = &turn {
                    let mut first = [0u8; 1];
                    match tokio::time::timeout(limits.timeout, tcp.peek(&mut first)).await {
                        Ok(Ok(1)) if first[0] != 0x16 => {
                            turn.clone().serve_stream(tcp, peer).await;
                            return;
                        }
                        Ok(Ok(1)) => {}
                        _ => return,
                    }
                }
                let tls = match tokio::time::timeout(limits.timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                let alpn = tls.get_ref().1.alpn_protocol();
                // An ACME validation handshake carries no HTTP; it ends here.
                if crate::tls::is_acme_challenge(alpn) {
                    return;
                }
                let Some(turn) = &turn else {
                    serve_router(tls, builder, router, peer, proxies, "https", watcher).await;
                    return;
                };
                // TURN over TLS (RFC 7443 ALPN `stun.turn`).
                if alpn == Some(crate::tls::TURN_ALPN) {
                    turn.clone().serve_stream(tls, peer).await;
                    return;
                }
                if alpn.is_some() {
                    serve_router(tls, builder, router, peer, proxies, "https", watcher).await;
                    return;
                }
                // No ALPN: the first decrypted bytes tell TURN from HTTP.
                let mut tls = tls;
                let first =
                    match tokio::time::timeout(limits.timeout, read_up_to(&mut tls, 8)).await {
                        Ok(Ok(first)) => first,
                        _ => return,
                    };
                if crate::turn::message::opens_stun(&first) {
                    turn.clone().serve_stream_with(tls, peer, &first).await;
                    return;
                }
                let tls = Prefixed::new(first, tls);
                serve_router(tls, builder, router, peer, proxies, "https", watcher).await;
            }
        },
    )
    .await;
}

async fn handle(
    router: Router,
    mut request: Request<Incoming>,
    peer: SocketAddr,
    proxies: &TrustedProxies,
    scheme: &'static str,
) -> axum::response::Response {
    if let Some(message) = header_limit_broken(request.headers()) {
        let mut response = ApiError::new("headers_too_large", message).into_response();
        for (name, value) in HEADERS {
            response
                .headers_mut()
                .insert(*name, header::HeaderValue::from_static(value));
        }
        return response;
    }
    let (client, scheme) = proxies.client(peer, request.headers(), scheme);
    request.extensions_mut().insert(PeerAddr(client));
    request.extensions_mut().insert(scheme);
    let request = request.map(axum::body::Body::new);
    match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Serves `router` over plain HTTP, for reverse-proxy mode: the proxy in
/// front terminates TLS and passes WebSocket upgrades through.
pub async fn serve_plain(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    proxies: Arc<TrustedProxies>,
    shutdown: impl Future<Output = ()>,
) {
    let builder = builder(limits);
    accept_loop(
        listener,
        limits.grace,
        shutdown,
        move |tcp, peer, watcher| {
            serve_router(
                tcp,
                builder.clone(),
                router.clone(),
                peer,
                proxies.clone(),
                "http",
                watcher,
            )
        },
    )
    .await;
}

/// Answers every request on the plain HTTP port with a permanent redirect to
/// the same host, path and query on the HTTPS port, except ACME http-01
/// validations, which get their key authorization.
pub async fn serve_redirect(
    listener: TcpListener,
    https_port: u16,
    limits: ConnLimits,
    challenges: Arc<Http01Tokens>,
    shutdown: impl Future<Output = ()>,
) {
    let builder = builder(limits);
    accept_loop(listener, limits.grace, shutdown, move |tcp, _, watcher| {
        let (builder, challenges) = (builder.clone(), challenges.clone());
        async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let answer = acme_answer(&request, &challenges)
                    .unwrap_or_else(|| redirect(&request, https_port));
                async move { Ok::<_, Infallible>(answer) }
            });
            let conn = builder.serve_connection(TokioIo::new(tcp), service);
            let _ = watcher.watch(conn.into_owned()).await;
        }
    })
    .await;
}

/// The answer to `GET /.well-known/acme-challenge/{token}`, when the path
/// is one: the key authorization for a pending token, 404 for any other.
pub fn acme_answer<B>(request: &Request<B>, challenges: &Http01Tokens) -> Option<Response<String>> {
    let token = request
        .uri()
        .path()
        .strip_prefix("/.well-known/acme-challenge/")?;
    Some(match challenges.get(token) {
        Some(key_authorization) => {
            let mut response = plain(StatusCode::OK, key_authorization);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/octet-stream"),
            );
            response
        }
        None => plain(
            StatusCode::NOT_FOUND,
            "{\"error\":\"not_found\",\"message\":\"no such ACME challenge\"}".into(),
        ),
    })
}

/// The redirect answer; pure so that it can be tested without sockets.
pub fn redirect<B>(request: &Request<B>, https_port: u16) -> Response<String> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())
        .map(strip_port)
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        });
    let Some(host) = host else {
        return plain(
            StatusCode::BAD_REQUEST,
            "{\"error\":\"bad_request\",\"message\":\"a Host header is required\"}".into(),
        );
    };
    let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = if https_port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{https_port}{path}")
    };
    let mut response = plain(StatusCode::PERMANENT_REDIRECT, String::new());
    if let Ok(value) = header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn plain(status: StatusCode, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if status.is_client_error() {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
    }
    response
}

/// `host:port` → `host`, keeping IPv6 literals in brackets intact.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(host: Option<&str>, uri: &str, port: u16) -> (StatusCode, Option<String>) {
        let mut b = Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header(header::HOST, h);
        }
        let r = redirect(&b.body(()).unwrap(), port);
        let loc = r
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_string());
        (r.status(), loc)
    }

    #[test]
    fn redirect_keeps_host_path_and_query() {
        assert_eq!(
            location(Some("exam.example.org:8080"), "/a/b?c=d&e", 8443),
            (
                StatusCode::PERMANENT_REDIRECT,
                Some("https://exam.example.org:8443/a/b?c=d&e".into())
            )
        );
        assert_eq!(
            location(Some("exam.example.org"), "/", 443).1.as_deref(),
            Some("https://exam.example.org/")
        );
        assert_eq!(
            location(Some("[::1]:80"), "/x", 8443).1.as_deref(),
            Some("https://[::1]:8443/x")
        );
    }

    #[test]
    fn redirect_refuses_missing_or_hostile_host() {
        assert_eq!(location(None, "/", 443).0, StatusCode::BAD_REQUEST);
        assert_eq!(
            location(Some("evil.example/x?y"), "/", 443).0,
            StatusCode::BAD_REQUEST
        );
    }
}
