//! Test support: a loopback TLS echo server and a real rustls client.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::info::fingerprint;
use super::{CertifiedKey, provider};

/// A throwaway self-signed certificate made with rcgen's defaults.
pub fn rcgen_self_signed(names: &[&str]) -> (CertifiedKey, CertificateDer<'static>) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let made = rcgen::generate_simple_self_signed(names).expect("rcgen");
    let der = made.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    let certified =
        CertifiedKey::from_der(vec![der.clone()], key, &provider()).expect("certified key");
    (certified, der)
}

/// Accepts TLS connections on 127.0.0.1 and echoes whatever arrives.
pub async fn spawn_echo_server(config: Arc<ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                loop {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if tls.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                            let _ = tls.flush().await;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Completes a handshake trusting only `roots`, offering `alpn`.
pub async fn connect(
    addr: SocketAddr,
    roots: &[CertificateDer<'static>],
    server_name: &str,
    alpn: &[&[u8]],
) -> io::Result<TlsStream<TcpStream>> {
    connect_versions(addr, roots, server_name, alpn, rustls::DEFAULT_VERSIONS).await
}

/// Like [`connect`], limited to the given protocol versions.
pub async fn connect_versions(
    addr: SocketAddr,
    roots: &[CertificateDer<'static>],
    server_name: &str,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> io::Result<TlsStream<TcpStream>> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).map_err(io::Error::other)?;
    }
    // A fresh config per connection: no session resumption, so every
    // connection shows the certificate the server serves right now.
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(io::Error::other)?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = ServerName::try_from(server_name.to_string()).map_err(io::Error::other)?;
    let tcp = TcpStream::connect(addr).await?;
    let handshake = TlsConnector::from(Arc::new(config)).connect(name, tcp);
    tokio::time::timeout(Duration::from_secs(10), handshake)
        .await
        .map_err(io::Error::other)?
}

/// Fingerprint of the leaf certificate the server presented.
pub fn peer_fingerprint(stream: &TlsStream<TcpStream>) -> String {
    let certs = stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("peer certificates");
    fingerprint(&certs[0])
}

/// Sends a line and expects it back, proving the session carries data.
pub async fn echo(stream: &mut TlsStream<TcpStream>, msg: &[u8]) {
    stream.write_all(msg).await.expect("write");
    let mut buf = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut buf))
        .await
        .expect("echo timed out")
        .expect("read");
    assert_eq!(buf, msg);
}
