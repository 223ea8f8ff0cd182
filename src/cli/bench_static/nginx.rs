//! nginx as the peer: Debian's binary on its own prefix in a temporary
//! directory, serving given files over TLS with invigil's certificate.

use anyhow::{Context, bail};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long nginx may take to start listening, and to leave after SIGQUIT.
const PATIENCE: Duration = Duration::from_secs(10);

/// Where Debian's package puts the binary, for users whose PATH lacks sbin.
const DEBIAN_BIN: &str = "/usr/sbin/nginx";

/// A file nginx serves: its URL path and its bytes.
pub struct File<'a> {
    pub path: &'a str,
    pub body: &'a [u8],
}

/// A running nginx master process (with its workers); stopped on drop.
pub struct Nginx {
    child: Child,
    prefix: PathBuf,
    pub addr: SocketAddr,
    pub version: String,
    pub workers: usize,
}

/// The nginx binary: on PATH, else where Debian installs it.
pub fn find() -> anyhow::Result<PathBuf> {
    find_in(std::env::var_os("PATH"), Path::new(DEBIAN_BIN))
}

fn find_in(path: Option<std::ffi::OsString>, fallback: &Path) -> anyhow::Result<PathBuf> {
    let on_path = path
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file());
    match on_path {
        Some(p) => Ok(p),
        None if fallback.is_file() => Ok(fallback.to_path_buf()),
        None => bail!(
            "nginx was not found on PATH nor at {}; \
             install Debian's `nginx` package (apt install nginx)",
            fallback.display()
        ),
    }
}

impl Nginx {
    /// Starts `bin` with `workers` worker processes on a free loopback port,
    /// with the certificate and key files given, serving `files`.
    pub fn start(
        bin: &Path,
        cert: &Path,
        key: &Path,
        files: &[File<'_>],
        workers: usize,
        connections: usize,
    ) -> anyhow::Result<Nginx> {
        let version = version(bin)?;
        let prefix = std::env::temp_dir().join(format!(
            "invigil-bench-nginx-{}-{}",
            std::process::id(),
            crate::auth::random_token(4)
        ));
        let root = prefix.join("html");
        std::fs::create_dir_all(prefix.join("run/tmp"))?;
        for f in files {
            let rel = match f.path.trim_start_matches('/') {
                "" => "index.html",
                rel => rel,
            };
            let file = root.join(rel);
            std::fs::create_dir_all(file.parent().context("file in the root")?)?;
            std::fs::write(&file, f.body)?;
        }
        let port = free_port()?;
        let conf = config(port, cert, key, workers, connections);
        std::fs::write(prefix.join("nginx.conf"), conf)?;
        let error_log = prefix.join("run/error.log");
        let child = Command::new(bin)
            .arg("-p")
            // nginx joins relative paths to the prefix as strings.
            .arg(format!("{}/", prefix.display()))
            .args(["-c", "nginx.conf", "-e"])
            .arg(&error_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut nginx = Nginx {
            child,
            prefix,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            version,
            workers,
        };
        nginx.wait_listening()?;
        Ok(nginx)
    }

    fn wait_listening(&mut self) -> anyhow::Result<()> {
        let until = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("nginx exited ({status}): {}", self.errors());
            }
            if TcpStream::connect(self.addr).is_ok() {
                return Ok(());
            }
            if Instant::now() > until {
                bail!("nginx did not listen on {}: {}", self.addr, self.errors());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn errors(&self) -> String {
        std::fs::read_to_string(self.prefix.join("run/error.log"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// CPU seconds of the master and its workers so far.
    pub fn cpu(&self) -> f64 {
        let master = self.child.id();
        let workers: f64 = children(master)
            .into_iter()
            .map(|pid| crate::cli::hub_bench::client::usage(pid).2)
            .sum();
        crate::cli::hub_bench::client::usage(master).2 + workers
    }
}

impl Drop for Nginx {
    /// SIGQUIT: nginx's graceful stop.
    fn drop(&mut self) {
        // SAFETY: a signal to our own child process has no memory effects.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGQUIT) };
        let until = Instant::now() + PATIENCE;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.prefix);
    }
}

/// `nginx/1.22.1` from `nginx -v`.
fn version(bin: &Path) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .arg("-v")
        .output()
        .with_context(|| format!("running {} -v", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stderr);
    Ok(text
        .split_whitespace()
        .find(|w| w.starts_with("nginx/"))
        .unwrap_or("nginx")
        .to_string())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Process ids whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // After the command name: state, then the parent's id.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(parent)
        })
        .collect()
}

/// Static files over TLS with kept-alive connections and no access log, as
/// a tuned production nginx would serve them. Files under `/api/` have no
/// extension and are JSON.
fn config(port: u16, cert: &Path, key: &Path, workers: usize, connections: usize) -> String {
    let worker_connections = (connections + 64).max(512);
    format!(
        r#"daemon off;
worker_processes {workers};
pid run/nginx.pid;
error_log run/error.log;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log off;
    client_body_temp_path run/tmp/body;
    proxy_temp_path run/tmp/proxy;
    fastcgi_temp_path run/tmp/fastcgi;
    uwsgi_temp_path run/tmp/uwsgi;
    scgi_temp_path run/tmp/scgi;
    types {{
        text/html html;
        text/css css;
        text/javascript js;
        application/json json;
    }}
    default_type application/octet-stream;
    charset utf-8;
    charset_types text/css text/javascript application/json;
    keepalive_timeout 75s;
    keepalive_requests 1000000000;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate "{cert}";
        ssl_certificate_key "{key}";
        root html;
        index index.html;
        location /api/ {{
            default_type application/json;
        }}
    }}
}}
"#,
        cert = cert.display(),
        key = key.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_is_found_on_path_else_at_the_fallback_else_the_package_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (empty, bin) = (dir.path().join("empty"), dir.path().join("bin"));
        std::fs::create_dir_all(&empty).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        let fallback = dir.path().join("sbin-nginx");
        let path = |dirs: &[&Path]| Some(std::env::join_paths(dirs).unwrap());

        let e = find_in(path(&[&empty]), &fallback).unwrap_err().to_string();
        assert!(e.contains("Debian's `nginx` package"), "{e}");
        assert!(e.contains(&fallback.display().to_string()), "{e}");

        std::fs::write(&fallback, "").unwrap();
        assert_eq!(find_in(path(&[&empty]), &fallback).unwrap(), fallback);

        std::fs::write(bin.join("nginx"), "").unwrap();
        let found = find_in(path(&[&empty, &bin]), &fallback).unwrap();
        assert_eq!(found, bin.join("nginx"));
    }

    #[test]
    fn the_children_of_a_process_are_read_from_proc() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let found = children(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&child.id()), "{found:?}");
    }
}
