//! `invigil doctor`: one line per check (ok, warn, FAIL or skip, and what to
//! do), exit 1 when anything FAILs.

use crate::app::admin;
use crate::config::Config;
use crate::objects::Objects;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Skip,
    Ok,
    Warn,
    Fail,
}

struct Report {
    worst: Level,
}

impl Report {
    fn line(&mut self, level: Level, what: &str, text: impl AsRef<str>) {
        let tag = match level {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
            Level::Skip => "skip",
        };
        println!("{tag:<5} {what:<14} {}", text.as_ref());
        self.worst = self.worst.max(level);
    }
}

/// Free space below which the data directory fails the check.
const MIN_FREE: u64 = 1 << 30;
/// Backups older than this warn; older than `BACKUP_FAIL` fail.
const BACKUP_WARN: Duration = Duration::from_secs(36 * 3600);
const BACKUP_FAIL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Certificates closer to expiry than this warn (renewal should have run).
const CERT_WARN: Duration = Duration::from_secs(14 * 24 * 3600);

pub fn run(config: Config, warnings: usize) -> ExitCode {
    let mut r = Report { worst: Level::Skip };
    let problems = crate::app::check(&config);
    if problems.is_empty() {
        let extra = if warnings == 0 {
            String::new()
        } else {
            format!(" ({warnings} warnings: see check-config)")
        };
        r.line(Level::Ok, "configuration", format!("valid{extra}"));
    } else {
        for p in &problems {
            r.line(Level::Fail, "configuration", p.to_string());
        }
    }
    let runtime = match super::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(checks(&config, &mut r));
    match r.worst {
        Level::Fail => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    }
}

async fn checks(config: &Config, r: &mut Report) {
    let dir = &config.data_dir;
    let status = tokio::time::timeout(
        Duration::from_secs(5),
        admin::ask(dir, &admin::Request::Status),
    )
    .await
    .unwrap_or_else(|_| Err("no answer within 5 s".into()));
    let running = match &status {
        Ok(Some(s)) => {
            r.line(
                Level::Ok,
                "daemon",
                format!("invigil {} is running on {}", s.version, dir.display()),
            );
            true
        }
        Ok(None) => {
            r.line(
                Level::Warn,
                "daemon",
                format!("no invigil is running on {}", dir.display()),
            );
            false
        }
        Err(e) => {
            r.line(
                Level::Fail,
                "daemon",
                format!("the admin socket does not answer: {e}"),
            );
            false
        }
    };
    data_dir(config, r);
    ports(config, running, r);
    disk(config, r).await;
    clock(dir, r);
    certificates(config, r);
    turn(config, running, r).await;
    models(config, r);
    let last = match status {
        Ok(Some(s)) => Ok(s.last_backup),
        _ => offline_last_backup(dir),
    };
    backup_age(last, r);
    permissions(dir, r);
}

fn data_dir(config: &Config, r: &mut Report) {
    let dir = &config.data_dir;
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) => {
            r.line(
                Level::Fail,
                "data directory",
                format!("{}: {e}", dir.display()),
            );
            return;
        }
    };
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    if let Err(e) = std::fs::write(&probe, b"ok") {
        r.line(
            Level::Fail,
            "data directory",
            format!("{} is not writable: {e}", dir.display()),
        );
        return;
    }
    let _ = std::fs::remove_file(&probe);
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if me != 0 && meta.uid() != me {
        r.line(
            Level::Fail,
            "data directory",
            format!(
                "{} belongs to uid {}, not to you (uid {me}): run invigil as its owner",
                dir.display(),
                meta.uid()
            ),
        );
    } else {
        r.line(
            Level::Ok,
            "data directory",
            format!("{} is writable (owner uid {})", dir.display(), meta.uid()),
        );
    }
}

fn ports(config: &Config, running: bool, r: &mut Report) {
    let mut tcp = vec![("PORT", config.port)];
    if let Some(p) = config.http_port.filter(|_| !config.reverse_proxy) {
        tcp.push(("HTTP_PORT", p));
    }
    for (var, port) in tcp {
        let at = SocketAddr::new(config.host, port);
        match TcpListener::bind(at) {
            Ok(_) => r.line(Level::Ok, "ports", format!("{var} {at} is free")),
            Err(e) => port_taken(var, at, &e, running, r),
        }
    }
    if config.turn_uri.is_none() {
        let at = SocketAddr::new(config.host, config.turn_port);
        match UdpSocket::bind(at) {
            Ok(_) => r.line(Level::Ok, "ports", format!("TURN_PORT {at}/udp is free")),
            Err(e) => port_taken("TURN_PORT", at, &e, running, r),
        }
    }
}

fn port_taken(var: &str, at: SocketAddr, e: &std::io::Error, running: bool, r: &mut Report) {
    match e.kind() {
        std::io::ErrorKind::AddrInUse if running => r.line(
            Level::Ok,
            "ports",
            format!("{var} {at} is held by the running invigil"),
        ),
        std::io::ErrorKind::AddrInUse => r.line(
            Level::Fail,
            "ports",
            format!("{var} {at} is used by another program: stop it or change {var}"),
        ),
        std::io::ErrorKind::PermissionDenied => r.line(
            Level::Ok,
            "ports",
            format!("{var} {at} needs CAP_NET_BIND_SERVICE (the packaged service has it)"),
        ),
        _ => r.line(Level::Fail, "ports", format!("{var} {at}: {e}")),
    }
}

async fn disk(config: &Config, r: &mut Report) {
    free_space(&config.data_dir, "data directory", r);
    match &config.minio_uri {
        Some(uri) => match Objects::from_minio_uri(uri.expose()) {
            Ok(o) => match tokio::time::timeout(Duration::from_secs(10), o.exists("doctor-probe"))
                .await
            {
                Ok(Ok(_)) => r.line(Level::Ok, "objects", "the S3 bucket (MINIO_URI) answers"),
                Ok(Err(e)) => r.line(Level::Fail, "objects", format!("MINIO_URI: {e}")),
                Err(_) => r.line(Level::Fail, "objects", "MINIO_URI: no answer within 10 s"),
            },
            Err(e) => r.line(Level::Fail, "objects", format!("MINIO_URI: {e}")),
        },
        None => {
            let objects = config.data_dir.join("objects");
            if objects.is_dir() {
                free_space(&objects, "objects", r);
            } else {
                r.line(Level::Skip, "objects", "no objects stored yet");
            }
        }
    }
    cold_tier(config, r).await;
}

/// The cold tier: free space of its directory, or whether its bucket answers.
async fn cold_tier(config: &Config, r: &mut Report) {
    match &config.cold {
        None => r.line(
            Level::Skip,
            "cold tier",
            "none (COLD_DIR or COLD_URI not set)",
        ),
        Some(crate::config::ColdTier::Dir(dir)) if dir.is_dir() => free_space(dir, "cold tier", r),
        Some(crate::config::ColdTier::Dir(dir)) => r.line(
            Level::Fail,
            "cold tier",
            format!("COLD_DIR {} is not a directory", dir.display()),
        ),
        Some(crate::config::ColdTier::Uri(uri)) => match Objects::from_minio_uri(uri.expose()) {
            Ok(o) => match tokio::time::timeout(Duration::from_secs(10), o.exists("doctor-probe"))
                .await
            {
                Ok(Ok(_)) => r.line(Level::Ok, "cold tier", "the S3 bucket (COLD_URI) answers"),
                Ok(Err(e)) => r.line(Level::Fail, "cold tier", format!("COLD_URI: {e}")),
                Err(_) => r.line(Level::Fail, "cold tier", "COLD_URI: no answer within 10 s"),
            },
            Err(e) => r.line(Level::Fail, "cold tier", format!("COLD_URI: {e}")),
        },
    }
}

fn free_space(path: &Path, what: &str, r: &mut Report) {
    let space = match crate::diskspace::disk_space(path) {
        Ok(space) => space,
        Err(e) => {
            r.line(Level::Fail, what, format!("{}: {e}", path.display()));
            return;
        }
    };
    let free = space.free_bytes;
    let total = space.total_bytes.max(1);
    let pct = free * 100 / total;
    let text = format!(
        "{} GiB free of {} GiB ({pct}%) at {}",
        free >> 30,
        total >> 30,
        path.display()
    );
    let level = if free < MIN_FREE {
        Level::Fail
    } else if pct < 10 {
        Level::Warn
    } else {
        Level::Ok
    };
    r.line(level, what, text);
}

/// A clock behind the data directory's own files means it jumped back.
fn clock(dir: &Path, r: &mut Report) {
    let now = SystemTime::now();
    let shown = crate::tls::info::format_time(now);
    let newest = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max();
    match newest {
        Some(t) if t > now + Duration::from_secs(300) => r.line(
            Level::Fail,
            "clock",
            format!(
                "{shown}, but files in {} were written at {}: the clock is behind (check NTP)",
                dir.display(),
                crate::tls::info::format_time(t)
            ),
        ),
        _ => r.line(
            Level::Ok,
            "clock",
            format!("{shown}; compare with a trusted clock"),
        ),
    }
}

fn certificates(config: &Config, r: &mut Report) {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(config.data_dir.join("tls"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    if let Some(own) = &config.ssl_cert
        && !own.contains("-----BEGIN")
    {
        files.push(own.into());
    }
    if files.is_empty() {
        r.line(
            Level::Skip,
            "certificate",
            "none yet (made at the first start)",
        );
    }
    let now = SystemTime::now();
    for file in files {
        let parsed = std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|pem| {
                crate::tls::files::parse_certs("certificate", &pem).map_err(|e| e.to_string())
            })
            .and_then(|certs| {
                let first = certs.first().ok_or("no certificate in the file")?;
                crate::tls::info::CertInfo::from_der(first, "certificate")
                    .map_err(|e| e.to_string())
            });
        match parsed {
            Ok(info) => {
                let until = crate::tls::info::format_time(info.not_after);
                let level = if info.not_after <= now {
                    Level::Fail
                } else if info.expires_within(CERT_WARN, now) {
                    Level::Warn
                } else {
                    Level::Ok
                };
                r.line(
                    level,
                    "certificate",
                    format!("{} valid until {until}", file.display()),
                );
            }
            Err(e) => r.line(
                Level::Fail,
                "certificate",
                format!("{}: {e}", file.display()),
            ),
        }
    }
}

async fn turn(config: &Config, running: bool, r: &mut Report) {
    if config.turn_uri.is_none() && !running {
        r.line(
            Level::Skip,
            "turn",
            "the embedded relay runs with invigil; start it to check",
        );
        return;
    }
    let secret = crate::app::secrets::turn_secret(config).ok();
    let target = match crate::turn::check::Target::resolve(config, None, secret.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            r.line(Level::Fail, "turn", e.to_string());
            return;
        }
    };
    let mut sink = Vec::new();
    match tokio::time::timeout(
        Duration::from_secs(10),
        crate::turn::check::run(&target, &mut sink),
    )
    .await
    {
        Ok(Ok(report)) => r.line(
            Level::Ok,
            "turn",
            format!(
                "{} relays (allocations at {} and {})",
                target.server, report.relayed[0], report.relayed[1]
            ),
        ),
        Ok(Err(e)) => r.line(Level::Fail, "turn", format!("{}: {e}", target.server)),
        Err(_) => r.line(
            Level::Fail,
            "turn",
            format!("{}: no answer within 10 s", target.server),
        ),
    }
}

/// The models on the engine the daemon would use (ONNX Runtime when its
/// library is configured or installed), so a broken library shows here.
fn models(config: &Config, r: &mut Report) {
    let result = crate::recognize::Recognizer::with_backend(
        config.recognizer_backend,
        config.ort_library.as_deref(),
        1,
    )
    .and_then(|rec| {
        let engine = rec.engine();
        rec.presence(&image::RgbImage::new(160, 120))
            .map(|_| engine)
    });
    match result {
        Ok(engine) => r.line(
            Level::Ok,
            "models",
            format!("face models load and run ({engine})"),
        ),
        Err(e) => r.line(Level::Fail, "models", e.to_string()),
    }
}

fn offline_last_backup(dir: &Path) -> Result<Option<crate::backup::LastBackup>, String> {
    let db = dir.join(crate::store::DATABASE_FILE);
    if !db.exists() {
        return Ok(None);
    }
    let store = crate::store::RedbStore::open(&db).map_err(|e| e.to_string())?;
    crate::backup::last(&store).map_err(|e| e.to_string())
}

fn backup_age(last: Result<Option<crate::backup::LastBackup>, String>, r: &mut Report) {
    match last {
        Err(e) => r.line(Level::Fail, "backup", e),
        Ok(None) => r.line(
            Level::Warn,
            "backup",
            "no backup taken yet: invigil backup --to DIR (the package's timer runs nightly)",
        ),
        Ok(Some(b)) => {
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(b.created_unix);
            let age = SystemTime::now().duration_since(at).unwrap_or_default();
            let text = format!(
                "last backup {} into {}, {} h ago",
                b.stamp,
                b.target,
                age.as_secs() / 3600
            );
            let level = if age > BACKUP_FAIL {
                Level::Fail
            } else if age > BACKUP_WARN {
                Level::Warn
            } else {
                Level::Ok
            };
            r.line(level, "backup", text);
        }
    }
}

/// Keys must be readable by invigil's user only.
fn permissions(dir: &Path, r: &mut Report) {
    let mut keys = vec![
        dir.join("session.key"),
        dir.join("turn.secret"),
        dir.join("ca/root.key"),
        dir.join("acme/account.json"),
    ];
    keys.extend(
        std::fs::read_dir(dir.join("tls"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "key")),
    );
    let mut bad = Vec::new();
    let mut checked = 0;
    for key in keys {
        let Ok(meta) = std::fs::metadata(&key) else {
            continue;
        };
        checked += 1;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bad.push(format!("{} has mode {mode:o}", key.display()));
        }
    }
    if bad.is_empty() {
        r.line(
            Level::Ok,
            "permissions",
            format!("{checked} key files are readable by their owner only"),
        );
    } else {
        for b in bad {
            r.line(Level::Fail, "permissions", format!("{b}: chmod 600 it"));
        }
    }
    if let Ok(meta) = std::fs::metadata(dir) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o007 != 0 {
            r.line(
                Level::Warn,
                "permissions",
                format!(
                    "{} has mode {mode:o}: other users can look inside; chmod 700 it",
                    dir.display()
                ),
            );
        }
    }
}
