//! The attacker's side of the wire: TLS connections that present ALPN
//! `http/1.1` as a browser would, and single HTTP/1.1 requests with any
//! headers and body on a fresh connection each.

use super::super::hub_bench::client::{Dialer, Server};
use anyhow::Context;
use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub type Body = BoxBody<Bytes, std::io::Error>;

/// A whole body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An answer: status, headers and the body (JSON when it parses).
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub json: Value,
}

pub struct Wire {
    addr: SocketAddr,
    tls: TlsConnector,
    pub dialer: Dialer,
    pub password: String,
    pub authority: String,
}

impl Wire {
    pub fn new(server: &Server) -> anyhow::Result<Wire> {
        let mut config = crate::cli::hub_bench::client::trusting(server)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Wire {
            addr: server.addr,
            tls: TlsConnector::from(Arc::new(config)),
            dialer: Dialer::new(server)?,
            password: server.password.clone(),
            authority: format!("localhost:{}", server.addr.port()),
        })
    }

    /// A TCP connection with a finished TLS handshake.
    pub async fn connect(&self) -> anyhow::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        Ok(self
            .tls
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?)
    }

    /// One request on a fresh connection; the answer comes as soon as its
    /// head and body are in, even while the request body is still going.
    pub async fn request(
        &self,
        method: http::Method,
        path: &str,
        headers: &[(String, String)],
        body: Body,
    ) -> anyhow::Result<Answer> {
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(self.connect().await?)).await?;
        let driver = tokio::spawn(conn);
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority)
            .header("origin", format!("https://{}", self.authority));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = send
            .send_request(request.body(body)?)
            .await
            .context("sending the request")?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await?.to_bytes();
        driver.abort();
        Ok(Answer {
            status,
            headers,
            json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        })
    }
}
