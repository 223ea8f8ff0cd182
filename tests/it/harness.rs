//! Starts the whole daemon in-process on free loopback ports with a temporary
//! data directory, and gives tests a real TLS client that trusts its certificate.

use invigil::app::{self, AppError, Running};
use invigil::config::Config;
use invigil::web::WebState;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A running in-process daemon.
pub struct Daemon {
    pub running: Running,
    pub data_dir: PathBuf,
    pub client: reqwest::Client,
    /// Keeps a temporary data directory alive as long as the daemon.
    _temp: Option<tempfile::TempDir>,
}

/// Variables every test daemon gets: loopback only, any free ports, quiet.
/// The recognition engine is fixed for the whole test process: ONNX Runtime
/// from `ORT_DYLIB_PATH` when `tests/run` provides it, else tract — never
/// the packaged library, which the package test installs and removes while
/// other tests run (and a process loads ONNX Runtime from one path only).
fn base_vars(data_dir: &Path) -> Vec<(String, String)> {
    let engine = match std::env::var("ORT_DYLIB_PATH") {
        Ok(path) if !path.is_empty() => ("ORT_DYLIB_PATH", path),
        _ => ("RECOGNIZER_BACKEND", "tract".to_string()),
    };
    [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("HTTP_PORT", "0"),
        ("TURN_PORT", "0"),
        ("DATA_DIR", data_dir.to_str().expect("utf-8 temp path")),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([(engine.0.to_string(), engine.1)])
    .collect()
}

/// The configuration a test daemon runs with; `vars` override the base.
pub fn config(data_dir: &Path, vars: &[(&str, &str)]) -> Config {
    let mut all = base_vars(data_dir);
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::load(None, all)
        .expect("test configuration is valid")
        .config
}

impl Daemon {
    /// Starts with a fresh temporary data directory.
    pub async fn start(vars: &[(&str, &str)]) -> Daemon {
        let temp = tempfile::tempdir().expect("temp dir");
        let path = temp.path().to_path_buf();
        let mut d = Self::start_in(&path, vars, axum::Router::new())
            .await
            .expect("daemon starts");
        d._temp = Some(temp);
        d
    }

    /// Starts on an existing data directory with extra routes.
    pub async fn start_in(
        data_dir: &Path,
        vars: &[(&str, &str)],
        extra: axum::Router<Arc<WebState>>,
    ) -> Result<Daemon, AppError> {
        let running = app::start(config(data_dir, vars), extra).await?;
        Ok(Self::wrap(data_dir, running))
    }

    /// Starts with a configuration the test adjusted (settings that are not
    /// variables, such as ACME's renewal margin).
    pub async fn start_config(data_dir: &Path, config: Config) -> Result<Daemon, AppError> {
        let running = app::start(config, axum::Router::new()).await?;
        Ok(Self::wrap(data_dir, running))
    }

    fn wrap(data_dir: &Path, running: Running) -> Daemon {
        let client = client_for(data_dir, running.https_addr);
        Daemon {
            running,
            data_dir: data_dir.to_path_buf(),
            client,
            _temp: None,
        }
    }

    /// `https://localhost:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.running.https_addr.port())
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}

/// The certificate a daemon serves, from its data directory.
pub fn self_signed_pem(data_dir: &Path) -> Vec<u8> {
    std::fs::read(data_dir.join("tls/self-signed.crt")).expect("self-signed certificate")
}

/// A client that trusts only the daemon's self-signed certificate and resolves
/// `localhost` to the daemon's loopback address.
/// Without a self-signed certificate (own files, reverse proxy) it trusts
/// nothing, and tests build their own client.
pub fn client_for(data_dir: &Path, addr: SocketAddr) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().tls_built_in_root_certs(false);
    if data_dir.join("tls/self-signed.crt").exists() {
        let root = reqwest::Certificate::from_pem(&self_signed_pem(data_dir)).expect("PEM");
        builder = builder.add_root_certificate(root);
    }
    builder
        .resolve("localhost", addr)
        .redirect(reqwest::redirect::Policy::none())
        .tls_info(true)
        .build()
        .expect("client")
}

/// Reads a JSON error body and checks its shape.
pub async fn error_code(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let ct = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(ct.as_deref(), Some("application/json"), "status {status}");
    let v: serde_json::Value = response.json().await.expect("JSON error body");
    (
        status,
        v["error"].as_str().expect("error code").to_string(),
        v["message"].as_str().expect("message").to_string(),
    )
}
