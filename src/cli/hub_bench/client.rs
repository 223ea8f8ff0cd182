//! The bench's side of the wire: the server as a child process on a temporary
//! data directory, HTTPS calls for the set-up, and WebSocket clients of the
//! hub, all over real TLS to loopback.

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub type Ws = WebSocketStream<TlsStream<TcpStream>>;

/// `invigil serve` started from this binary on a fresh data directory.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub password: String,
    exe: PathBuf,
    vars: Vec<(String, String)>,
}

impl Server {
    pub fn start() -> anyhow::Result<Server> {
        Self::start_from(&std::env::current_exe()?, &[])
    }

    /// `exe serve` with `vars` added to the environment.
    pub fn start_from(exe: &std::path::Path, vars: &[(&str, &str)]) -> anyhow::Result<Server> {
        let data_dir = std::env::temp_dir().join(format!(
            "invigil-bench-hub-{}-{}",
            std::process::id(),
            crate::auth::random_token(4)
        ));
        std::fs::create_dir_all(&data_dir)?;
        // Upper and lower case, a digit and a space, whatever the token holds.
        let password = format!("Bench 9a {}", crate::auth::random_token(12));
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (child, addr) = spawn(exe, &data_dir, &password, 0, &vars)?;
        Ok(Server {
            child,
            addr,
            data_dir,
            password,
            exe: exe.to_path_buf(),
            vars,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`, then the same server again on the same data directory and
    /// port; returns once it listens.
    pub fn crash_and_restart(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        let (child, addr) = spawn(
            &self.exe,
            &self.data_dir,
            &self.password,
            self.addr.port(),
            &self.vars,
        )?;
        anyhow::ensure!(
            addr == self.addr,
            "the server came back on {addr}, not {}",
            self.addr
        );
        self.child = child;
        Ok(())
    }

    /// Stops the server with SIGTERM and removes its data directory.
    pub fn stop(mut self) {
        // SAFETY: a signal to our own child process has no memory effects.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Starts `exe serve` and reads its address from what it prints.
fn spawn(
    exe: &std::path::Path,
    data_dir: &std::path::Path,
    password: &str,
    port: u16,
    vars: &[(String, String)],
) -> anyhow::Result<(Child, SocketAddr)> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("server.log"))?;
    let mut child = Command::new(exe)
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", data_dir)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("HTTP_PORT", "off")
        .env("TURN_PORT", "0")
        .env("MANAGER_PASSWORD", password)
        .env("RUST_LOG", "warn")
        // The recognition engine the caller chose, as the installed server has it.
        .envs(
            ["ORT_DYLIB_PATH", "RECOGNIZER_BACKEND"]
                .into_iter()
                .filter_map(|k| Some((k, std::env::var(k).ok()?))),
        )
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("starting invigil serve")?;
    let stdout = child.stdout.take().context("server stdout")?;
    let mut addr = None;
    let mut lines = std::io::BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line?;
        let line = line.trim_start();
        if let Some(rest) = line.strip_prefix("listening") {
            addr = rest.split_whitespace().next().and_then(|a| a.parse().ok());
        }
        if line.starts_with("data") {
            break;
        }
    }
    // The rest of what it prints is not needed, but must not block it.
    std::thread::spawn(move || lines.for_each(drop));
    let Some(addr) = addr else {
        let _ = child.kill();
        bail!(
            "the server did not print its address; see {}",
            data_dir.join("server.log").display()
        );
    };
    Ok((child, addr))
}

/// Resident and peak memory (bytes) and CPU seconds of a process, from /proc.
pub fn usage(pid: u32) -> (u64, u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime, stime are
    // the 12th and 13th after the closing parenthesis.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, r)| r.split_whitespace().collect());
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (kb("VmRSS:"), kb("VmHWM:"), ticks as f64 / hz)
}

/// A TLS client configuration that trusts only the server's self-signed
/// certificate.
pub fn trusting(server: &Server) -> anyhow::Result<rustls::ClientConfig> {
    let pem = std::fs::read(server.data_dir.join("tls/self-signed.crt"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert?)?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// Opens TLS connections to the server, trusting only its certificate.
#[derive(Clone)]
pub struct Dialer {
    addr: SocketAddr,
    tls: TlsConnector,
    pub origin: String,
}

impl Dialer {
    pub fn new(server: &Server) -> anyhow::Result<Dialer> {
        let config = trusting(server)?;
        Ok(Dialer {
            addr: server.addr,
            tls: TlsConnector::from(Arc::new(config)),
            origin: format!("https://localhost:{}", server.addr.port()),
        })
    }

    /// The same trust and host name, another address: a peer server using
    /// this server's certificate.
    pub fn at(&self, addr: SocketAddr) -> Dialer {
        Dialer {
            addr,
            tls: self.tls.clone(),
            origin: format!("https://localhost:{}", addr.port()),
        }
    }

    async fn tls(&self) -> anyhow::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        Ok(self
            .tls
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?)
    }

    /// An HTTP/1.1 connection for REST calls.
    pub async fn http(&self) -> anyhow::Result<Http> {
        let (send, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(self.tls().await?)).await?;
        tokio::spawn(conn);
        Ok(Http {
            send,
            origin: self.origin.clone(),
        })
    }

    /// A WebSocket to the hub, signed in by `cookie`.
    pub async fn ws(&self, cookie: &str) -> anyhow::Result<Ws> {
        let mut request =
            format!("wss://localhost:{}/api/v1/ws", self.addr.port()).into_client_request()?;
        let h = request.headers_mut();
        h.insert("cookie", format!("__Host-invigil={cookie}").parse()?);
        h.insert("origin", self.origin.parse()?);
        let (ws, _) = tokio_tungstenite::client_async(request, self.tls().await?).await?;
        Ok(ws)
    }
}

/// One kept-alive HTTPS connection.
pub struct Http {
    send: SendRequest<Full<Bytes>>,
    origin: String,
}

/// A REST answer: status, the session cookie if one was set, the JSON body.
pub struct Answer {
    pub status: u16,
    pub cookie: Option<String>,
    pub body: Value,
}

/// A raw answer: status, headers, body bytes.
pub struct RawAnswer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Http {
    /// Any request: extra headers and a body of bytes (tus chunks).
    pub async fn raw(
        &mut self,
        method: http::Method,
        path: &str,
        cookie: Option<&str>,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> anyhow::Result<RawAnswer> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.origin.trim_start_matches("https://"))
            .header("origin", &self.origin);
        if let Some(c) = cookie {
            req = req.header("cookie", format!("__Host-invigil={c}"));
        }
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        self.send.ready().await?;
        let response = self.send.send_request(req.body(Full::new(body))?).await?;
        let status = response.status().as_u16();
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(RawAnswer {
            status,
            headers: parts.headers,
            body,
        })
    }

    /// A GET answered with its status and raw body.
    pub async fn get(&mut self, path: &str, cookie: Option<&str>) -> anyhow::Result<(u16, Bytes)> {
        let a = self
            .raw(http::Method::GET, path, cookie, &[], Bytes::new())
            .await?;
        Ok((a.status, a.body))
    }

    pub async fn call(
        &mut self,
        method: http::Method,
        path: &str,
        cookie: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let (headers, payload) = match body {
            Some(b) => (
                vec![("content-type", "application/json".to_string())],
                Bytes::from(b.to_string()),
            ),
            None => (Vec::new(), Bytes::new()),
        };
        let a = self.raw(method, path, cookie, &headers, payload).await?;
        let cookie = a
            .headers
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("__Host-invigil="))
            .map(|v| v.split(';').next().unwrap_or_default().to_string());
        Ok(Answer {
            status: a.status,
            cookie,
            body: serde_json::from_slice(&a.body).unwrap_or(Value::Null),
        })
    }

    /// A call that must answer `want`; returns the answer.
    pub async fn expect(
        &mut self,
        want: u16,
        method: http::Method,
        path: &str,
        cookie: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let a = self.call(method.clone(), path, cookie, body).await?;
        if a.status != want {
            bail!("{method} {path}: {} {}", a.status, a.body);
        }
        Ok(a)
    }
}
