//! The shared object suite against a real S3-compatible server (moto) on loopback.
//!
//! moto comes from the test venv that `tests/run` installs; without it this test
//! fails rather than skips, so a missing install never passes as green.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use invigil::objects::{Objects, ObjectsError, suite};

/// A moto server child process, killed when dropped (also when a test panics).
pub struct MotoServer {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl MotoServer {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

fn venv() -> PathBuf {
    match std::env::var_os("INVIGIL_TEST_VENV") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/venv"),
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client")
}

pub async fn start_moto() -> MotoServer {
    let bin = venv().join("bin/moto_server");
    assert!(
        bin.is_file(),
        "moto_server not found at {}: run tests/run, which installs moto into target/venv \
         (or set INVIGIL_TEST_VENV to a venv that has moto[server])",
        bin.display()
    );
    let log_dir = tempfile::tempdir().expect("tempdir");
    let log = log_dir.path().join("moto.log");
    let log_file = std::fs::File::create(&log).expect("moto log file");
    let port = free_port();
    let child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log handle"))
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    let mut server = MotoServer {
        child,
        port,
        log,
        _log_dir: log_dir,
    };

    let client = http_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("moto_server exited with {status}:\n{}", server.log_tail());
        }
        if let Ok(resp) = client.get(server.url("/moto-api/")).send().await
            && resp.status().is_success()
        {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "moto_server did not answer on port {port} within 30 s:\n{}",
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn create_bucket(server: &MotoServer, bucket: &str) {
    // moto accepts unsigned requests; the store itself always signs.
    let resp = http_client()
        .put(server.url(&format!("/{bucket}")))
        .send()
        .await
        .expect("create bucket");
    assert!(
        resp.status().is_success(),
        "creating bucket {bucket}: {}",
        resp.status()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_suite_against_moto() {
    let server = start_moto().await;
    create_bucket(&server, "invigil-test").await;
    let uri = format!(
        "http://testing:testing@127.0.0.1:{}/invigil-test",
        server.port
    );
    let objects = Objects::from_minio_uri(&uri).expect("S3 handle from MINIO_URI");
    suite::run(&objects, "suite").await;

    // Large bodies really go up as 5 MiB parts: S3 marks a multipart e-tag `-<parts>`.
    let body = suite::pattern(11 * 1024 * 1024, 1);
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = body
        .chunks(1024 * 1024)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let info = objects
        .put_stream("multipart/parts", futures::stream::iter(chunks))
        .await
        .expect("put_stream");
    let e_tag = info.e_tag.unwrap_or_default();
    assert!(
        e_tag.ends_with("-3\""),
        "e-tag {e_tag} is not a 3-part upload"
    );
    objects.delete("multipart/parts").await.expect("delete");

    // A bucket that does not exist: the error names the key, not the credentials.
    let missing = Objects::from_minio_uri(&format!(
        "http://testing:testing@127.0.0.1:{}/no-such-bucket",
        server.port
    ))
    .expect("S3 handle");
    match missing.put("a/b", bytes::Bytes::from_static(b"x")).await {
        Err(ObjectsError::Backend(message)) => {
            assert!(message.contains("`a/b`"), "{message}");
            assert!(!message.contains("testing:testing"), "{message}");
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
}
